/* Small helpers the C tests share. */
#ifndef MVL_TEST_UTIL_H
#define MVL_TEST_UTIL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/gpu.h"
#include "kernels/ops.h"

/* The opening of every GPU test and benchmark: 1 with the device count and device 0's name when a CUDA GPU
 * answers; otherwise prints "skipped: <why>" and returns 0, and the caller exits 77 (CTest's skip code). */
static inline int mvl_test_gpu(int *count, char *name, size_t cap) {
    mvl_error err;
    if (mvl_gpu_probe(count, name, cap, &err) == MVL_OK) return 1;
    printf("skipped: %s\n", err.msg);
    return 0;
}

/* max |a - b| / max |b|: the relative error the issue bars are stated in. */
static inline double mvl_test_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return num / den;
}

/* ||a - b|| / ||b|| (Euclidean, over n values): the kernels' parity measure;
 * ||a - b|| when b is all zero. */
static inline double mvl_test_norm_rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d, den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Index of the largest of l[0..n) (the first on ties); *margin (if not NULL)
 * gets its lead over the runner-up. */
static inline int mvl_test_argmax(const float *l, int n, double *margin) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (l[i] > l[best]) best = i;
    double second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != best && l[i] > second) second = l[i];
    if (margin) *margin = l[best] - second;
    return best;
}

/* w's values rounded to bf16 in an owned copy: a CPU reference on the
 * weights the GPU uploads (as bf16). 1 when out of memory. */
static inline int mvl_test_round_weight(mvl_weight *w) {
    if (!w->data) return 0;
    size_t n = (size_t)(w->rows * w->cols);
    float *c = (float *)malloc(n * sizeof(float));
    if (!c) return 1;
    for (size_t i = 0; i < n; i++) c[i] = mvl_bf16_round(w->data[i]);
    free(w->owned);
    w->owned = c, w->data = c;
    return 0;
}

/* One damaged copy of orig[0..n) in buf (n bytes of room), for the
 * malformed-input tests: a few byte flips biased to the first 600 bytes (the
 * headers), a truncation, or a run of 0xFF (which looks like markers and
 * length fields). Returns the damaged length; *rng is an LCG state. */
static inline size_t mvl_test_mutate(const uint8_t *orig, size_t n, uint8_t *buf, uint64_t *rng) {
    memcpy(buf, orig, n);
    size_t len = n;
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    int kind = (int)(*rng >> 60) % 3;
    if (kind == 0) {
        for (int k = 0; k < 4; k++) {
            *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (*rng >> 33) % (k < 2 && n > 600 ? 600 : n);
            buf[at] ^= (uint8_t)(*rng >> 20 | 1);
        }
    } else if (kind == 1) {
        len = (size_t)((*rng >> 33) % n);
    } else {
        size_t at = (*rng >> 33) % n;
        for (size_t k = at; k < at + 4 && k < n; k++) buf[k] = 0xFF;
    }
    return len;
}

#endif
