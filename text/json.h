/* A small, strict, read-only JSON reader for tokenizer files (text/).
 *
 * Why not jansson: parsing a 200k-entry tokenizer.json with jansson took
 * ~340 ms here (a hash table and an allocation per key), over the 300 ms load
 * budget of issue 4. This reader builds a flat tree in two arenas in one pass
 * (~10x faster). It is strict RFC 8259: no comments, no trailing commas, valid
 * UTF-8 only, no lone surrogates, depth at most 128. */
#ifndef MVL_TEXT_JSON_H
#define MVL_TEXT_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "mvl.h"

typedef enum mvl_json_type {
    MVL_JSON_NULL = 0,
    MVL_JSON_FALSE,
    MVL_JSON_TRUE,
    MVL_JSON_NUMBER,
    MVL_JSON_STRING,
    MVL_JSON_ARRAY,
    MVL_JSON_OBJECT,
} mvl_json_type;

typedef struct mvl_json {
    mvl_json_type type;
    uint32_t n;               /* string: bytes; array/object: number of children */
    const char *key;          /* member name when the parent is an object (NUL-terminated) */
    uint32_t key_len;
    union {
        const char *str;      /* decoded string, NUL-terminated (may hold NULs: use n) */
        double num;
        struct mvl_json *kids; /* [n] children in document order */
    } u;
} mvl_json;

typedef struct mvl_json_block mvl_json_block;

typedef struct mvl_json_doc {
    mvl_json *root;
    char *strings;            /* arena holding every decoded string and key */
    mvl_json_block *blocks;   /* node arena */
} mvl_json_doc;

/* Parses buf[0..len) (buf[len] must be '\0'). Errors name `path` with the
 * line and column. On failure doc is left empty. */
mvl_status mvl_json_parse(const char *path, const char *buf, size_t len, mvl_json_doc *doc,
                          mvl_error *err);
void mvl_json_doc_free(mvl_json_doc *doc);

/* First member named key of an object, or NULL (also when obj is not an object). */
const mvl_json *mvl_json_get(const mvl_json *obj, const char *key);

/* Convenience type tests. */
static inline int mvl_json_is(const mvl_json *v, mvl_json_type t) { return v && v->type == t; }
static inline int mvl_json_is_bool(const mvl_json *v) {
    return v && (v->type == MVL_JSON_TRUE || v->type == MVL_JSON_FALSE);
}

/* True when v is an integer-valued number in [lo, hi]; stores it in *out. */
int mvl_json_int(const mvl_json *v, int64_t lo, int64_t hi, int64_t *out);

#endif
