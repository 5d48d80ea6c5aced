/* Timing helpers the benchmark drivers share (tests/bench_*.c): a monotonic
 * clock in milliseconds (POSIX clock_gettime) and the median of a sample. */
#ifndef MVL_BENCH_UTIL_H
#define MVL_BENCH_UTIL_H

#include <stdlib.h>
#include <time.h>

static inline double mvl_bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* qsort comparator for doubles, ascending. */
static inline int mvl_bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts t[0..n) in place and returns t[n / 2]. */
static inline double mvl_bench_median(double *t, int n) {
    qsort(t, (size_t)n, sizeof *t, mvl_bench_cmp_double);
    return t[n / 2];
}

#endif
