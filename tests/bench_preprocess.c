/* Image preprocessing benchmark (not a test; scripts/bench_preprocess.py
 * drives it and times Pillow + numpy side by side).
 *
 *   bench_preprocess FILE ITERS THREADS
 *
 * One image = load + decode + anyres preprocess + float32 normalisation, in
 * strict-reference mode (the reference path). THREADS == 1 prints the median
 * ms per image over ITERS runs; THREADS > 1 runs ITERS images on each of
 * THREADS threads and prints images/s. Both print the peak RSS in MiB. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "mvl.h"
#include "bench_util.h"

static const char *g_file;
static int g_iters;

static int one_image(void) {
    mvl_image_opts o = {.strict_reference = 1};
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    mvl_image *img;
    mvl_error err = {0};
    if (mvl_image_load(g_file, &o, &img, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    mvl_preproc_result r;
    mvl_status st = mvl_preprocess(img, &cfg, &r, &err);
    mvl_image_free(img);
    if (st != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    float *f = malloc((size_t)r.n_patches * 3 * cfg.size * cfg.size * sizeof(float));
    if (!f) return -1;
    mvl_preproc_normalize(&cfg, r.tiles, r.n_patches, f);
    int n = r.n_patches;
    free(f);
    mvl_preproc_result_free(&r);
    return n;
}

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < g_iters; i++)
        if (one_image() < 0) return (void *)1;
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: bench_preprocess FILE ITERS THREADS\n");
        return 2;
    }
    g_file = argv[1];
    g_iters = atoi(argv[2]);
    int threads = atoi(argv[3]);
    if (g_iters < 1 || threads < 1) return 2;
    if (threads == 1) {
        double *t = malloc(sizeof(double) * g_iters);
        if (!t || one_image() < 0) return 1; /* warm-up */
        for (int i = 0; i < g_iters; i++) {
            double t0 = mvl_bench_now_ms();
            if (one_image() < 0) return 1;
            t[i] = mvl_bench_now_ms() - t0;
        }
        printf("ms_per_image %.3f\n", mvl_bench_median(t, g_iters));
        free(t);
    } else {
        pthread_t *th = malloc(sizeof(pthread_t) * threads);
        if (!th) return 1;
        double t0 = mvl_bench_now_ms();
        for (int i = 0; i < threads; i++) pthread_create(&th[i], NULL, worker, NULL);
        int bad = 0;
        for (int i = 0; i < threads; i++) {
            void *rv;
            pthread_join(th[i], &rv);
            bad |= rv != NULL;
        }
        if (bad) return 1;
        printf("images_per_s %.2f\n", threads * g_iters / ((mvl_bench_now_ms() - t0) / 1e3));
        free(th);
    }
    /* VmHWM, not getrusage: ru_maxrss survives exec and would report the
     * parent Python process. */
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    if (f) fclose(f);
    printf("peak_rss_mib %.1f\n", kb / 1024.0);
    return 0;
}
