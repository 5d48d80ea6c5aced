/* CPU throughput of the model (BENCHMARKS.md, issue 5): prefill and decode
 * tokens/s and the share of time in GEMMs.
 *   bench_model MODEL_DIR [PREFILL_TOKENS] [DECODE_TOKENS] [THREADS] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "kernels/ops.h"
#include "mvl.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_model MODEL_DIR [PREFILL_TOKENS] [DECODE_TOKENS] [THREADS]\n");
        return 2;
    }
    size_t np = argc > 2 ? (size_t)atol(argv[2]) : 512, nd = argc > 3 ? (size_t)atol(argv[3]) : 64;
    mvl_model_opts mo = {.n_threads = argc > 4 ? atoi(argv[4]) : 0};
    mvl_error err = {0};
    mvl_model *m;
    double t0 = now();
    if (mvl_model_load(argv[1], &mo, &m, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double tl = now() - t0;
    int32_t V = mvl_model_vocab_size(m), *ids = malloc(np * sizeof *ids), *out = malloc((nd + 1) * sizeof *out);
    for (size_t i = 0; i < np; i++) ids[i] = (int32_t)((i * 7919 + 11) % (size_t)(V - 1));
    mvl_seq *s;
    if (mvl_seq_init(m, &s, &err) != MVL_OK) return 1;
    /* warm-up: fault in every weight page (the F32 weights are the mapping itself) */
    if (mvl_seq_append(s, ids, np < 64 ? np : 64, NULL, 0, NULL, &err) != MVL_OK) return 1;
    mvl_seq_reset(s);
    mvl_ops_reset_timers();
    t0 = now();
    if (mvl_seq_append(s, ids, np, NULL, 0, NULL, &err) != MVL_OK) return 1;
    double tp = now() - t0, gp = mvl_ops_gemm_seconds();
    mvl_generate_opts o = {.sample = {.temperature = 0, .top_p = 1}, .max_tokens = nd + 1};
    size_t n_out;
    mvl_stop_reason why;
    mvl_ops_reset_timers();
    t0 = now();
    if (mvl_seq_generate(s, &o, out, &n_out, &why, &err) != MVL_OK) return 1;
    double td = now() - t0, gd = mvl_ops_gemm_seconds(); /* nd decode steps: the last id is not run */
    printf("%s: load %.2f s | prefill %zu tokens %.3f s = %.1f tok/s (GEMM %.0f%%) | decode %zu tokens %.3f s = %.1f tok/s (GEMM %.0f%%)\n",
           argv[1], tl, np, tp, (double)np / tp, 100 * gp / tp, nd, td, (double)nd / td, 100 * gd / td);
    mvl_seq_free(s);
    mvl_model_free(m);
    free(ids);
    free(out);
    return 0;
}
