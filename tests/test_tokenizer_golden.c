/* Parity with Hugging Face `tokenizers` on the committed test tokenizers:
 * ids (count + hash) for every golden string and the generated 1 MB inputs,
 * HF decode output, round trip, and the streaming decoder. Goldens come from
 * scripts/make_tokenizer_goldens.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mvl.h"
#include "tok_testutil.h"

typedef struct {
    const char *name;
    int normalizes; /* NFC: decode(encode(x)) is NFC(x), checked against HF's decode instead */
} case_t;

static uint64_t ids_hash(const int32_t *ids, size_t n, const char *dec, size_t dec_len) {
    return tok_fnv(tok_fnv(TOK_FNV0, ids, n * sizeof *ids), dec, dec_len); /* host is little-endian */
}

static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, "%s%d", i ? "," : "", ids[i]);
    fprintf(stderr, "%s\n", n > 40 ? ",..." : "");
}

/* Checks one text against a "count hash" golden; returns 1 when it matches. */
static int check_text(mvl_tokenizer *tok, const char *label, const char *s, size_t len, size_t want_n,
                      uint64_t want_h, int round_trip) {
    mvl_error err = {0};
    int32_t *ids;
    size_t n;
    if (mvl_tokenizer_encode(tok, s, len, &ids, &n, &err) != MVL_OK) {
        fprintf(stderr, "%s: encode failed: %s\n", label, err.msg);
        return 0;
    }
    char *dec;
    size_t dec_len;
    assert_int_equal(mvl_tokenizer_decode(tok, ids, n, 0, &dec, &dec_len, &err), MVL_OK);
    int ok = n == want_n && ids_hash(ids, n, dec, dec_len) == want_h;
    if (!ok) {
        fprintf(stderr, "%s: ids differ from HF (%zu ids, HF %zu); ours: ", label, n, want_n);
        print_ids(ids, n);
    }
    if (round_trip && (dec_len != len || memcmp(dec, s, len))) {
        fprintf(stderr, "%s: decode(encode(x)) != x\n", label);
        ok = 0;
    }
    /* The streaming decoder must give the same bytes, one id at a time. */
    mvl_detok *d;
    assert_int_equal(mvl_detok_init(tok, 0, &d, &err), MVL_OK);
    size_t off = 0;
    int stream_ok = 1;
    for (size_t i = 0; i <= n; i++) {
        const char *piece;
        size_t plen;
        if (i < n)
            assert_int_equal(mvl_detok_push(d, ids[i], &piece, &plen, &err), MVL_OK);
        else
            mvl_detok_flush(d, &piece, &plen);
        if (off + plen > dec_len || memcmp(dec + off, piece, plen)) stream_ok = 0;
        off += plen;
    }
    if (!stream_ok || off != dec_len) {
        fprintf(stderr, "%s: streaming decode differs from decode\n", label);
        ok = 0;
    }
    mvl_detok_free(d);
    free(dec);
    free(ids);
    return ok;
}

static void run_case(void **state) {
    const case_t *c = *state;
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/tokenizers/%s", c->name);
    char *dir = tok_source_path(rel);
    mvl_tokenizer *tok;
    mvl_error err = {0};
    if (mvl_tokenizer_load(dir, &tok, &err) != MVL_OK) fail_msg("%s", err.msg);
    free(dir);

    char *spath = tok_source_path("testdata/tokenizers/golden_strings.bin");
    tok_strings strs;
    assert_int_equal(tok_strings_load(spath, &strs), 0);
    free(spath);
    assert_true(strs.n >= 3000);

    snprintf(rel, sizeof rel, "testdata/tokenizers/%s/golden.txt", c->name);
    char *gpath = tok_source_path(rel);
    FILE *g = fopen(gpath, "r");
    free(gpath);
    assert_non_null(g);

    size_t bad = 0, checked = 0;
    char label[64];
    for (size_t i = 0; i < strs.n; i++) {
        size_t want_n;
        unsigned long long want_h;
        assert_int_equal(fscanf(g, "%zu %llx", &want_n, &want_h), 2);
        snprintf(label, sizeof label, "%s string %zu", c->name, i);
        if (!check_text(tok, label, strs.s[i], strs.len[i], want_n, want_h, !c->normalizes)) bad++;
        checked++;
    }
    for (int k = 0; k < TOK_N_BIG; k++) {
        int got_k;
        size_t want_n, len;
        unsigned long long want_h;
        assert_int_equal(fscanf(g, " big%d %zu %llx", &got_k, &want_n, &want_h), 3);
        assert_int_equal(got_k, k);
        char *s = tok_big_input(k, &len);
        assert_non_null(s);
        snprintf(label, sizeof label, "%s big input %d", c->name, k);
        if (!check_text(tok, label, s, len, want_n, want_h, !c->normalizes)) bad++;
        free(s);
        checked++;
    }
    /* HF decode of pseudo-random id sequences: partial UTF-8 tokens -> U+FFFD. */
    tok_lcg r = {99};
    size_t total = mvl_tokenizer_n_ids(tok);
    for (int k = 0; k < 500; k++) {
        int got_k;
        size_t want_len;
        unsigned long long want_h;
        assert_int_equal(fscanf(g, " dec%d %zu %llx", &got_k, &want_len, &want_h), 3);
        int32_t ids[12];
        size_t n = 1 + tok_lcg_next(&r) % 12;
        for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(tok_lcg_next(&r) % total);
        char *dec;
        size_t dec_len;
        assert_int_equal(mvl_tokenizer_decode(tok, ids, n, 0, &dec, &dec_len, &err), MVL_OK);
        if (dec_len != want_len || tok_fnv(TOK_FNV0, dec, dec_len) != want_h) {
            fprintf(stderr, "%s decode sequence %d differs from HF\n", c->name, k);
            bad++;
        }
        free(dec);
        checked++;
    }
    fclose(g);
    fprintf(stderr, "%s: %zu of %zu checks match HF tokenizers\n", c->name, checked - bad, checked);
    assert_int_equal(bad, 0);
    tok_strings_free(&strs);
    mvl_tokenizer_free(tok);
}

int main(void) {
    static const case_t cases[] = {{"bpe8k-gpt2", 0}, {"bpe8k-cl100k", 0}, {"bpe8k-o200k", 1}};
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_prestate(run_case, (void *)&cases[0]),
        cmocka_unit_test_prestate(run_case, (void *)&cases[1]),
        cmocka_unit_test_prestate(run_case, (void *)&cases[2]),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
