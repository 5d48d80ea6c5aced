/* Internal helpers shared by every stage: errors, files, a string map, .npy. */
#ifndef MVL_COMMON_H
#define MVL_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mvl.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define MVL_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MVL_PRINTF(a, b)
#endif

/* Records st and a formatted message in err (when non-NULL); returns st so a
 * caller can write `return mvl_fail(err, MVL_ERR_FORMAT, "%s: ...", path);`. */
mvl_status mvl_fail(mvl_error *err, mvl_status st, const char *fmt, ...) MVL_PRINTF(3, 4);

/* Prefixes an existing message with context ("while loading X: ..."). */
void mvl_error_prefix(mvl_error *err, const char *fmt, ...) MVL_PRINTF(2, 3);

/* Reads a whole file into a NUL-terminated malloc'd buffer. Files larger
 * than max_bytes are refused with MVL_ERR_LIMIT before anything is read. */
mvl_status mvl_read_file(const char *path, size_t max_bytes, char **out, size_t *out_len,
                         mvl_error *err);

/* dir + "/" + name in a malloc'd string (NULL on allocation failure). */
char *mvl_path_join(const char *dir, const char *name);

/* Checked malloc/calloc that report MVL_ERR_NOMEM through err. */
void *mvl_malloc(size_t n, mvl_error *err);
void *mvl_calloc(size_t count, size_t size, mvl_error *err);

/* Multiplies a*b into *out; false on size_t overflow. */
static inline bool mvl_mul_ok(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

/* ---- string -> int64 map (open addressing, FNV-1a) -------------------------
 * Keys are (pointer, length) pairs that the caller keeps alive for the map's
 * lifetime; the map never copies or frees them. */
typedef struct mvl_strmap {
    const char **keys;   /* [cap] borrowed key pointers, NULL = empty slot */
    uint32_t *lens;      /* [cap] key lengths */
    int64_t *vals;       /* [cap] */
    size_t cap;          /* power of two */
    size_t count;
} mvl_strmap;

mvl_status mvl_strmap_init(mvl_strmap *m, size_t expected, mvl_error *err);
void mvl_strmap_free(mvl_strmap *m);
/* Inserts key -> val. Returns false in *inserted (without overwriting) when
 * the key is already present, so callers can report duplicates. */
mvl_status mvl_strmap_put(mvl_strmap *m, const char *key, size_t len, int64_t val, bool *inserted,
                          mvl_error *err);
/* Returns true and sets *val when key is present. */
bool mvl_strmap_get(const mvl_strmap *m, const char *key, size_t len, int64_t *val);

/* ---- growing string buffer -------------------------------------------------
 * Appends never fail loudly: the first allocation failure sets oom and later
 * appends do nothing, so a caller checks once at the end. p is always
 * NUL-terminated after the first append; the caller frees p. */
typedef struct mvl_strbuf {
    char *p;
    size_t len, cap;
    bool oom;
} mvl_strbuf;

void mvl_strbuf_add(mvl_strbuf *b, const char *s, size_t n);
void mvl_strbuf_puts(mvl_strbuf *b, const char *s);
void mvl_strbuf_printf(mvl_strbuf *b, const char *fmt, ...) MVL_PRINTF(2, 3);
/* Appends s[0..n) as a quoted JSON string (control characters escaped). */
void mvl_strbuf_json(mvl_strbuf *b, const char *s, size_t n);

/* ---- .npy output ------------------------------------------------------------ */

/* Writes a C-order little-endian float32 array as a NumPy .npy (format 1.0). */
mvl_status mvl_npy_write_f32(const char *path, const float *data, int ndim, const int64_t *shape,
                             mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
