/* Tokenizer benchmark (not a test; driven by scripts/bench_tokenizer.sh).
 *
 *   bench_tokenizer load DIR            median load time of DIR over 5 loads
 *   bench_tokenizer synth DIR           writes the synthetic 200,064-id
 *                                       tokenizer into DIR (for HF to time too)
 *   bench_tokenizer encode DIR CORPUS   single-threaded encode MB/s, best of 3
 *
 * The corpus is cut into documents of >= 10,000 bytes at newline boundaries
 * (the same rule as the HF side of the script) and each is encoded with one
 * call. Prints the id count and an FNV-1a hash of all ids so the script can
 * check that both sides produced the same ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/mvl_common.h"
#include "tok_testutil.h"
#include "bench_util.h"

static int bench_load(const char *dir) {
    double t[5];
    mvl_error err;
    size_t n_ids = 0;
    for (int i = 0; i < 5; i++) {
        mvl_tokenizer *tok;
        double t0 = mvl_bench_now_ms();
        if (mvl_tokenizer_load(dir, &tok, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        t[i] = mvl_bench_now_ms() - t0;
        n_ids = mvl_tokenizer_n_ids(tok);
        mvl_tokenizer_free(tok);
    }
    qsort(t, 5, sizeof *t, mvl_bench_cmp_double);
    printf("load %s: %zu ids, median %.1f ms (min %.1f, max %.1f)\n", dir, n_ids, t[2], t[0], t[4]);
    return 0;
}

static int bench_encode(const char *dir, const char *corpus) {
    mvl_error err;
    mvl_tokenizer *tok;
    char *text;
    size_t len;
    if (mvl_tokenizer_load(dir, &tok, &err) != MVL_OK || mvl_read_file(corpus, 1u << 30, &text, &len, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double best = 1e30;
    size_t total = 0;
    uint64_t h = TOK_FNV0;
    for (int rep = 0; rep < 3; rep++) {
        total = 0;
        h = TOK_FNV0;
        double t0 = mvl_bench_now_ms();
        for (size_t pos = 0; pos < len;) {
            size_t end = pos + 10000 < len ? pos + 10000 : len;
            const char *nl = memchr(text + end, '\n', len - end);
            end = nl ? (size_t)(nl - text) + 1 : len;
            int32_t *ids;
            size_t n;
            if (mvl_tokenizer_encode(tok, text + pos, end - pos, &ids, &n, &err) != MVL_OK) {
                fprintf(stderr, "%s\n", err.msg);
                return 1;
            }
            h = tok_fnv(h, ids, n * sizeof *ids);
            total += n;
            free(ids);
            pos = end;
        }
        double t = mvl_bench_now_ms() - t0;
        if (t < best) best = t;
    }
    printf("encode %s: %zu bytes, %zu ids, hash %016llx, best %.1f ms, %.2f MB/s\n", dir, len, total,
           (unsigned long long)h, best, len / 1e6 / (best / 1e3));
    free(text);
    mvl_tokenizer_free(tok);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "load")) return bench_load(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "synth")) {
        if (tok_write_synthetic(argv[2], 200000) != 0) {
            fprintf(stderr, "cannot write the synthetic tokenizer into %s\n", argv[2]);
            return 1;
        }
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "encode")) return bench_encode(argv[2], argv[3]);
    fprintf(stderr, "usage: bench_tokenizer load DIR | synth DIR | encode DIR CORPUS\n");
    return 2;
}
