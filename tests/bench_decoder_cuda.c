/* Full-width benchmark of the CUDA decoder (kernels/cuda_decoder.h) at
 * reduced depth, random bf16 weights: hidden 6144, 64 heads of 128, 8 kv
 * heads, rotary 64, 32 experts of 9216 (top-2), vocab 200064, 4 layers with
 * layer 3 softmax (decoder.md §1). In one run:
 *  - the HBM copy bandwidth (device-to-device cudaMemcpy of 2 GiB, read +
 *    write bytes) and the cuBLAS bf16 GEMM ceiling (8192^3);
 *  - decode steps of batch 1, 8, 32 replaying the CUDA graph on contexts of
 *    about 1k tokens: time per step, per layer (from an event-timed eager
 *    step), bytes actually read (attention weights, router, the distinct
 *    experts the MoE chose, embedding rows, lm_head, lightning state read +
 *    write, KV read) and that rate as a share of the copy bandwidth;
 *  - prefill of 1k, 8k and 32k tokens: tokens/s per layer and FLOP/s as a
 *    share of the GEMM ceiling (FLOPs as decoder.md §10 counts them);
 *  - the extrapolation to 80 layers (70 lightning + 10 softmax).
 * Usage: bench_decoder_cuda [--out FILE.md] [--max-prefill N]
 * Prints a markdown table (and writes it to FILE). Exits 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda_decoder.h"
#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "test_util.h"
#include "bench_util.h"

#define LAYERS 4
#define SLOTS 32
#define CTX 1024

static FILE *out_file;

/* printf to stdout and to the --out file */
static void say(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (out_file) {
        va_start(ap, fmt);
        vfprintf(out_file, fmt, ap);
        va_end(ap);
    }
}

static int fail(const mvl_error *err) {
    fprintf(stderr, "bench_decoder_cuda: %s\n", err->msg);
    return 1;
}

static uint32_t rng = 12345u;
static void random_ids(int32_t *ids, int64_t n, int vocab) {
    for (int64_t i = 0; i < n; i++) {
        rng = rng * 1664525u + 1013904223u;
        ids[i] = (int32_t)((rng >> 8) % (uint32_t)vocab);
    }
}

/* Median stage times of `reps` profiled steps (after one warm-up). */
typedef struct stages {
    /* ms: embedding + first norm, one lightning / softmax layer, final norm + lm_head, the step */
    double emb, lin, soft, head, total;
} stages;

static void stage_split(const mvl_text_config *c, const double *ms, stages *s) {
    int nl = 0, ns = 0;
    s->lin = s->soft = 0;
    s->emb = ms[0], s->head = ms[c->num_layers + 1];
    for (int l = 0; l < c->num_layers; l++) {
        if (c->layer_types[l] == MVL_LAYER_LIGHTNING) s->lin += ms[1 + l], nl++;
        else s->soft += ms[1 + l], ns++;
    }
    s->lin /= nl ? nl : 1, s->soft /= ns ? ns : 1;
    s->total = 0;
    for (int i = 0; i < c->num_layers + 2; i++) s->total += ms[i];
}

/* Runs step() reps + 1 times with profiling on and takes each stage's median. */
typedef mvl_status (*step_fn)(mvl_cuda_dec *g, void *ctx, mvl_error *err);
static mvl_status profile(mvl_cuda_dec *g, step_fn step, void *ctx, int reps, stages *out, mvl_error *err) {
    const mvl_text_config *c = mvl_cuda_dec_config(g);
    int ns = c->num_layers + 2;
    double *all = malloc((size_t)reps * ns * sizeof(double)), ms[MVL_MAX_LAYERS + 2], col[64];
    if (!all || reps > 64) {
        free(all);
        return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    }
    mvl_cuda_dec_set_profiling(g, 1);
    mvl_status st = MVL_OK;
    for (int r = 0; r <= reps && st == MVL_OK; r++) {
        st = step(g, ctx, err);
        if (st == MVL_OK) st = mvl_cuda_dec_stage_ms(g, ms, err);
        if (st == MVL_OK && r > 0) memcpy(all + (size_t)(r - 1) * ns, ms, (size_t)ns * sizeof(double));
    }
    mvl_cuda_dec_set_profiling(g, 0);
    if (st == MVL_OK) {
        for (int i = 0; i < ns; i++) {
            for (int r = 0; r < reps; r++) col[r] = all[(size_t)r * ns + i];
            ms[i] = mvl_bench_median(col, reps);
        }
        stage_split(c, ms, out);
    }
    free(all);
    return st;
}

/* A prefill of n tokens on a fresh slot 0. */
typedef struct prefill_ctx {
    int n;
    int32_t *ids;
} prefill_ctx;
static mvl_status prefill_step(mvl_cuda_dec *g, void *vctx, mvl_error *err) {
    prefill_ctx *p = vctx;
    int slot = 0;
    mvl_status st = mvl_cuda_dec_reset(g, 0, err);
    mvl_cuda_dec_step s = {.n_seq = 1, .slot = &slot, .n_new = &p->n, .ids = p->ids};
    return st == MVL_OK ? mvl_cuda_dec_forward(g, &s, err) : st;
}

/* An eager (non-graph) decode step of b sequences in slots 0..b-1. */
typedef struct decode_ctx {
    int b;
    int *slots, *ones;
    int32_t *ids;
    int vocab;
} decode_ctx;
static mvl_status eager_decode_step(mvl_cuda_dec *g, void *vctx, mvl_error *err) {
    decode_ctx *p = vctx;
    random_ids(p->ids, p->b, p->vocab);
    mvl_cuda_dec_step s = {.n_seq = p->b, .slot = p->slots, .n_new = p->ones, .ids = p->ids};
    return mvl_cuda_dec_forward(g, &s, err);
}

int main(int argc, char **argv) {
    const char *out_path = NULL;
    int max_prefill = 32768;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--max-prefill") && i + 1 < argc) max_prefill = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_decoder_cuda [--out FILE.md] [--max-prefill N]\n");
            return 2;
        }
    }
    mvl_error err = {0};
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines survive a kill */
    int ngpu;
    char gname[256];
    if (!mvl_test_gpu(&ngpu, gname, sizeof gname)) return 77;
    if (out_path && !(out_file = fopen(out_path, "w"))) {
        fprintf(stderr, "bench_decoder_cuda: cannot write %s\n", out_path);
        return 1;
    }

    /* full width, 4 layers, layer 3 softmax (the full model's pattern, decoder.md §1.1) */
    mvl_text_config c;
    memset(&c, 0, sizeof c);
    c.hidden_size = 6144, c.num_layers = LAYERS, c.num_heads = 64, c.num_kv_heads = 8, c.head_dim = 128;
    c.rotary_dim = 64, c.vocab_size = 200064, c.intermediate_size = 9216, c.num_experts = 32;
    c.experts_per_tok = 2, c.block_size = 256, c.max_position_embeddings = 10240000, c.rope_theta = 1e7;
    c.rms_norm_eps = 1e-5;
    c.attn_alpha[0] = c.attn_alpha[1] = c.mlp_alpha = 3.5565588200778455;
    c.attn_beta[0] = c.attn_beta[1] = c.mlp_beta = 1.0;
    for (int l = 0; l < LAYERS; l++) c.layer_types[l] = (l % 8 == 3) ? MVL_LAYER_SOFTMAX : MVL_LAYER_LIGHTNING;
    const double H = c.hidden_size, A = (double)c.num_heads * c.head_dim, KV = (double)c.num_kv_heads * c.head_dim;
    const double I = c.intermediate_size, E = c.num_experts, K = c.experts_per_tok, V = c.vocab_size;
    const double heads = c.num_heads, d = c.head_dim;

    double bw, ceiling;
    if (mvl_cuda_copy_bandwidth((size_t)2 << 30, 10, &bw, &err) != MVL_OK) return fail(&err);
    if (mvl_cuda_gemm_ceiling(8192, 8192, 8192, 10, &ceiling, &err) != MVL_OK) return fail(&err);

    const int max_tokens = SLOTS * CTX > max_prefill ? SLOTS * CTX : max_prefill;
    mvl_cuda_dec_opts opts = {SLOTS, max_tokens + 256, max_tokens};
    mvl_cuda_dec *g;
    double t0 = mvl_bench_now_ms();
    if (mvl_cuda_dec_init_random(&c, &opts, 1u, &g, &err) != MVL_OK) return fail(&err);
    size_t wb, ab, sb;
    mvl_cuda_dec_memory(g, &wb, &ab, &sb);

    say("## CUDA decoder, full width (hidden 6144, 64x128 heads, 8 kv, 32 experts of 9216 top-2, vocab 200064), "
        "%d layers (layer 3 softmax), random bf16 weights\n\n",
        LAYERS);
    say("| item | value |\n|---|---|\n");
    say("| device | %s |\n", gname);
    say("| HBM copy bandwidth (D2D cudaMemcpy 2 GiB, read+write) | %.0f GB/s |\n", bw);
    say("| cuBLAS bf16 GEMM ceiling (8192^3) | %.0f TFLOP/s |\n", ceiling);
    say("| arena: weights / activations (%d rows) / state (%d slots x %d positions) | %.2f / %.2f / %.2f GiB |\n",
        max_tokens, SLOTS, opts.max_ctx, wb / 1073741824.0, ab / 1073741824.0, sb / 1073741824.0);
    say("| init (random weights on the device) | %.1f s |\n\n", (mvl_bench_now_ms() - t0) / 1e3);

    /* ---- prefill ---- */
    static const int prefill_n[] = {1024, 8192, 32768};
    stages pf[3];
    int n_pf = 0;
    int32_t *ids = malloc((size_t)max_tokens * sizeof(int32_t));
    if (!ids) return 1;
    for (int i = 0; i < 3 && prefill_n[i] <= max_prefill; i++, n_pf++) {
        prefill_ctx p = {prefill_n[i], ids};
        fprintf(stderr, "prefill %d\n", p.n);
        random_ids(ids, p.n, c.vocab_size);
        if (profile(g, prefill_step, &p, p.n >= 32768 ? 3 : 5, &pf[i], &err) != MVL_OK) return fail(&err);
    }
    /* per-token FLOPs of one layer (decoder.md §10): dense GEMMs, experts and
     * router; lightning blocks of 256 (intra 2x2*d*256, inter and update
     * 2*d^2 each, per head); causal softmax attention 4*heads*d*N/2 on average */
    const double moe_fl = 2 * K * 3 * I * H + 2 * E * H;
    const double lin_fl = 2 * (3 * A * H + A * H + H * A) + moe_fl + heads * (4 * d * 256 + 4 * d * d);
    const double soft_fl0 = 2 * ((A + 2 * KV) * H + H * A) + moe_fl;
    say("### Prefill (one sequence, event-timed stages, median)\n\n");
    say("| tokens | step ms | tok/s (%d layers) | lightning layer ms | tok/s per lightning layer | TFLOP/s | share "
        "of ceiling | softmax layer ms | tok/s per softmax layer | TFLOP/s | share of ceiling | embed+head ms |\n",
        LAYERS);
    say("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_pf; i++) {
        double N = prefill_n[i], sfl = soft_fl0 + 2 * heads * d * N;
        double tl = N * lin_fl / (pf[i].lin * 1e-3) / 1e12, ts = N * sfl / (pf[i].soft * 1e-3) / 1e12;
        say("| %d | %.1f | %.0f | %.2f | %.0f | %.0f | %.0f%% | %.2f | %.0f | %.0f | %.0f%% | %.2f |\n", prefill_n[i],
            pf[i].total, N / (pf[i].total * 1e-3), pf[i].lin, N / (pf[i].lin * 1e-3), tl, 100 * tl / ceiling,
            pf[i].soft, N / (pf[i].soft * 1e-3), ts, 100 * ts / ceiling, pf[i].emb + pf[i].head);
    }
    say("\n");

    /* ---- decode: fill 32 slots with CTX tokens each, then graph steps ---- */
    int slots[SLOTS], ones[SLOTS], ctxs[SLOTS];
    for (int b = 0; b < SLOTS; b++) slots[b] = b, ones[b] = 1, ctxs[b] = CTX;
    for (int b = 0; b < SLOTS; b++)
        if (mvl_cuda_dec_reset(g, b, &err) != MVL_OK) return fail(&err);
    random_ids(ids, (int64_t)SLOTS * CTX, c.vocab_size);
    {
        int per_step = max_tokens / CTX; /* sequences per prefill step */
        for (int b0 = 0; b0 < SLOTS; b0 += per_step) {
            int nb = SLOTS - b0 < per_step ? SLOTS - b0 : per_step;
            mvl_cuda_dec_step s = {.n_seq = nb, .slot = slots + b0, .n_new = ctxs, .ids = ids + (size_t)b0 * CTX};
            if (mvl_cuda_dec_forward(g, &s, &err) != MVL_OK) return fail(&err);
        }
    }
    static const int batches[] = {1, 8, 32};
    enum { STEPS = 20 };
    double dec_ms[3], dec_bytes[3], dec_experts[3];
    stages ds[3];
    int *counts = malloc((size_t)LAYERS * c.num_experts * sizeof(int));
    if (!counts) return 1;
    /* weight bytes read by every step whatever the batch */
    double w_lin = 2 * (3 * A * H + A * H + A + H * A + 2 * H + E * H);
    double w_soft = 2 * ((A + 2 * KV) * H + H * A + 2 * H + E * H);
    double w_fixed = 2 * (V * H + H), expert_b = 2 * 3 * I * H;
    int n_lin = 0, n_soft = 0;
    for (int l = 0; l < LAYERS; l++) {
        if (c.layer_types[l] == MVL_LAYER_LIGHTNING) n_lin++;
        else n_soft++;
    }
    for (int i = 0; i < 3; i++) {
        int B = batches[i];
        int32_t step_ids[SLOTS];
        fprintf(stderr, "decode batch %d\n", B);
        for (int w = 0; w < 3; w++) { /* warm-up; the first captures the graph */
            random_ids(step_ids, B, c.vocab_size);
            if (mvl_cuda_dec_decode(g, B, slots, step_ids, NULL, &err) != MVL_OK) return fail(&err);
        }
        double t[STEPS], distinct = 0, bytes = 0;
        for (int s = 0; s < STEPS; s++) {
            double kv_rows = 0; /* positions each sequence's attention reads after this step's append */
            for (int b = 0; b < B; b++) kv_rows += (double)mvl_cuda_dec_length(g, b) + 1;
            random_ids(step_ids, B, c.vocab_size);
            double a = mvl_bench_now_ms();
            if (mvl_cuda_dec_decode(g, B, slots, step_ids, NULL, &err) != MVL_OK || mvl_cuda_dec_sync(g, &err))
                return fail(&err);
            t[s] = mvl_bench_now_ms() - a;
            if (mvl_cuda_dec_expert_counts(g, counts, &err) != MVL_OK) return fail(&err);
            double step_experts = 0;
            for (int l = 0; l < LAYERS; l++)
                for (int e = 0; e < c.num_experts; e++) step_experts += counts[l * c.num_experts + e] > 0;
            distinct += step_experts / LAYERS;
            bytes += n_lin * w_lin + n_soft * w_soft + w_fixed + 2 * B * H + step_experts * expert_b +
                     n_lin * (double)B * heads * d * d * 4 * 2 + n_soft * kv_rows * KV * 2 * 2;
        }
        dec_ms[i] = mvl_bench_median(t, STEPS);
        dec_experts[i] = distinct / STEPS;
        dec_bytes[i] = bytes / STEPS;
        decode_ctx dc = {B, slots, ones, step_ids, c.vocab_size};
        if (profile(g, eager_decode_step, &dc, 5, &ds[i], &err) != MVL_OK) return fail(&err);
    }
    say("### Decode (graph replay, contexts ~%d tokens; per-layer times from an event-timed eager step)\n\n", CTX);
    say("| batch | step ms (graph) | eager step ms | lightning layer ms | softmax layer ms | embed+head ms | distinct "
        "experts/layer | GB read/step | GB/s | share of copy BW |\n");
    say("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++) {
        double gbs = dec_bytes[i] / (dec_ms[i] * 1e-3) / 1e9;
        say("| %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.1f | %.2f | %.0f | %.0f%% |\n", batches[i], dec_ms[i],
            ds[i].total, ds[i].lin, ds[i].soft, ds[i].emb + ds[i].head, dec_experts[i], dec_bytes[i] / 1e9, gbs,
            100 * gbs / bw);
    }
    say("\n");

    /* ---- 80 layers ---- */
    say("### Extrapolation to 80 layers (70 lightning + 10 softmax)\n\n");
    say("decode: t80 = f * (t_embed+head + 70 t_lightning + 10 t_softmax), f = graph step / eager step (launch gaps "
        "the graph removes); per-token latency = t80, throughput = batch / t80\n\n");
    say("prefill: t80(N) = t_embed+head + 70 t_lightning(N) + 10 t_softmax(N); rate = N / t80(N)\n\n");
    say("| case | f | t80 ms | per-token latency ms | tokens/s |\n|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++) {
        double f = dec_ms[i] / ds[i].total, t80 = f * (ds[i].emb + ds[i].head + 70 * ds[i].lin + 10 * ds[i].soft);
        say("| decode batch %d | %.2f | %.2f | %.2f | %.0f |\n", batches[i], f, t80, t80, batches[i] / (t80 * 1e-3));
    }
    for (int i = 0; i < n_pf; i++) {
        double t80 = pf[i].emb + pf[i].head + 70 * pf[i].lin + 10 * pf[i].soft;
        say("| prefill %d | 1 | %.1f | - | %.0f |\n", prefill_n[i], t80, prefill_n[i] / (t80 * 1e-3));
    }
    say("\n");
    free(counts);
    free(ids);
    mvl_cuda_dec_free(g);
    if (out_file) fclose(out_file);
    return 0;
}
