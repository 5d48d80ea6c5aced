/* Helpers shared by the tokenizer tests and the tokenizer benchmark. */
#ifndef MVL_TOK_TESTUTIL_H
#define MVL_TOK_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "mvl.h"

/* 64-bit LCG, the same as Lcg in scripts/make_tokenizer_goldens.py. */
typedef struct { uint64_t s; } tok_lcg;
uint64_t tok_lcg_next(tok_lcg *r);

/* FNV-1a 64 continued from h (start with TOK_FNV0). */
#define TOK_FNV0 1469598103934665603ull
uint64_t tok_fnv(uint64_t h, const void *data, size_t n);

/* Generated input k (0..3) of the golden script's big_inputs(); malloc'd. */
char *tok_big_input(int k, size_t *len);
#define TOK_N_BIG 4

/* The strings of testdata/tokenizers/golden_strings.bin. */
typedef struct {
    char *data;          /* the whole file */
    const char **s;      /* [n] string starts (into data) */
    size_t *len;         /* [n] */
    size_t n;
} tok_strings;
int tok_strings_load(const char *path, tok_strings *out); /* 0 on success */
void tok_strings_free(tok_strings *t);

/* Path under $MVL_SOURCE_DIR (or the compile-time source dir); malloc'd. */
char *tok_source_path(const char *rel);

/* Writes a synthetic byte-level BPE tokenizer with n_vocab model tokens and
 * 64 added MiniMax-style special tokens at ids 200000..200063 (so
 * <end_of_sentence> = 200020, <image> = 200025, 200,064 ids in all, as the
 * released model) into dir (tokenizer.json + tokenizer_config.json).
 * Deterministic. Returns 0 on success. */
int tok_write_synthetic(const char *dir, size_t n_vocab);

#endif
