/* The ViT's attention kernels (kernels/cuda_vit_attn.h): the Hopper kernel
 * (mvl_cuda_vit_attn_sm90, each variant) and the FlashAttention-2 fallback
 * against a plain fp32 reference kernel written here (one thread per
 * (query, head), exact two-pass softmax) that reads the same random bf16 qkv:
 *   - ||out - ref|| / ||ref|| <= 5e-3 over every output (bf16 output and bf16
 *     probabilities in P.V: ~2e-3 expected), and over the rows of the last
 *     query block alone (the resident kernel computes them apart, with
 *     mma.sync, when that block holds at most 16 rows; among 577 rows one
 *     wrong row would hardly move the first figure), max |out - ref| printed;
 *   - every output written (the buffer is poisoned with NaN first) and the
 *     guard elements after it untouched;
 *   - controls: the reference at a 1.02x scale must miss the bar, and so must
 *     the reference with only the last query block's rows at that scale (a
 *     tail computed wrong); a skipped tail leaves NaN poison: "MISSING".
 * Cases: the full-size ViT shape (577 tokens = 9 x 64 + 1 keys, 16 heads)
 * with logits of std 1 and 4, 1 token, and sizes whose last key block holds
 * 36, 16, 64, 44, 64 and 1 keys (stage ring wrapped or not, idle consumer
 * warpgroups, several work units per CTA, 1153 tokens past the resident
 * kernel's reach), 65 tokens (one key after a full block: the folded first
 * step is the only one), then last blocks of 2, 8, 16 and 17 rows (either
 * side of the resident kernel's 16-row limit) with more (tile, head) units
 * than SMs, so that the producer's core-row warps run several units, with
 * and without a consumer pass in the unit. Then the time per call at 64
 * tiles of the full size (577 tokens, and 576: no tail), every kernel in
 * interleaved rounds (each round times a batch of calls of each kernel, so
 * that clock drift hits them alike; medians over the rounds, and the median
 * of each round's ratio to the default kernel), the default kernel at 576 to
 * 593 tokens, and the streaming 2-warpgroup kernel (what
 * mvl_cuda_vit_attn_sm90 runs for few tiles) at 1 and 8 tiles (--timing: the
 * times only; --time K: kernel K only at 577 tokens, 3 calls, for a
 * profiler). Exits 77 without a GPU with wgmma (compute capability 9.0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "gpu_test_util.cuh"
#include "test_util.h"
#include "kernels/cuda_vit_attn.h"
#include "kernels/cuda_wgmma.cuh"
extern "C" {
#include "bench_util.h"
#include "kernels/gpu.h"
}

static const int HD = 64;

// out[row, h*64 + d] in fp32: exact maximum first, then the exponentials.
__global__ void k_ref_attn(const bf16 *qkv, float *out, int ntok, int heads, int64_t tiles, float scale) {
    const int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= tiles * ntok * heads) return;
    const int h = (int)(idx % heads);
    const int64_t row = idx / heads, tile = row / ntok, ld = 3 * (int64_t)heads * HD;
    const bf16 *kb = qkv + tile * ntok * ld + (heads + h) * HD, *vb = qkv + tile * ntok * ld + (2 * heads + h) * HD;
    float q[HD], acc[HD];
    for (int d = 0; d < HD; d++) q[d] = __bfloat162float(qkv[row * ld + h * HD + d]), acc[d] = 0.f;
    float mx = -INFINITY;
    for (int j = 0; j < ntok; j++) {
        float s = 0.f;
        for (int d = 0; d < HD; d++) s = fmaf(q[d], __bfloat162float(kb[j * ld + d]), s);
        mx = fmaxf(mx, s * scale);
    }
    float l = 0.f;
    for (int j = 0; j < ntok; j++) {
        float s = 0.f;
        for (int d = 0; d < HD; d++) s = fmaf(q[d], __bfloat162float(kb[j * ld + d]), s);
        const float p = expf(s * scale - mx);
        l += p;
        for (int d = 0; d < HD; d++) acc[d] = fmaf(p, __bfloat162float(vb[j * ld + d]), acc[d]);
    }
    for (int d = 0; d < HD; d++) out[row * heads * HD + h * HD + d] = acc[d] / l;
}

// Host random numbers: splitmix64 and Box-Muller.
static uint64_t rng_state;
static double rng_u01(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((z >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}
static float rng_normal(void) {
    return (float)(sqrt(-2.0 * log(rng_u01())) * cos(6.283185307179586 * rng_u01()));
}

struct Case {
    const char *name;
    int tiles, ntok, heads;
    float qk_std; // q and k ~ N(0, qk_std^2): logits of std qk_std^2 at scale 1/8
};

struct Err {
    double rel, rel_tail, max_abs; // rel_tail: over the rows of the last query block of each tile
    bool written, guard_ok;
};
static bool meets_bar(const Err &e) { return e.rel <= 5e-3 && e.rel_tail <= 5e-3 && e.written && e.guard_ok; }

static const int GUARD = 4096;
static const uint16_t POISON = 0xFFFF; // a NaN

// Whether output element i ([tiles*ntok, heads*64]) is in a row of the last
// query block of its tile.
static bool in_tail(size_t i, const Case &c) {
    return (int)(i / ((size_t)c.heads * HD) % c.ntok) >= (c.ntok - 1) / 64 * 64;
}

static Err compare(const std::vector<uint16_t> &got, const std::vector<float> &ref, size_t n, const Case &c) {
    Err e = {0, 0, 0, true, true};
    double num = 0, den = 0, num_t = 0, den_t = 0;
    for (size_t i = 0; i < n; i++) {
        const float g = mvl_bf16_bits_to_f32(got[i]);
        if (got[i] == POISON || !isfinite(g)) {
            e.written = false;
            continue;
        }
        const double d = (double)g - ref[i], d2 = d * d, r2 = (double)ref[i] * ref[i];
        num += d2, den += r2;
        if (in_tail(i, c)) num_t += d2, den_t += r2;
        e.max_abs = std::max(e.max_abs, fabs(d));
    }
    for (size_t i = n; i < got.size(); i++) e.guard_ok &= got[i] == POISON;
    e.rel = sqrt(num / std::max(den, 1e-300));
    e.rel_tail = sqrt(num_t / std::max(den_t, 1e-300));
    return e;
}

static void print_row(const Case &c, const char *kernel, const Err &e, const char *verdict) {
    printf("%-22s %-17s %9.2e %9.2e %10.3e %8s %6s %s\n", c.name, kernel, e.rel, e.rel_tail, e.max_abs,
           e.written ? "all" : "MISSING", e.guard_ok ? "ok" : "HIT", verdict);
}

typedef mvl_status (*attn_fn)(cudaStream_t, const bf16 *, bf16 *, int64_t, int, int, float, int, mvl_error *);
static mvl_status run_fa2(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads, float scale,
                          int, mvl_error *err) {
    return mvl_cuda_vit_attn_fa2(s, qkv, out, tiles, ntok, heads, scale, err);
}
struct Kernel {
    const char *name;
    attn_fn fn;
    int variant;
    bool gated; // must meet the bar (the FlashAttention-2 kernel is shown for comparison)
};
static const Kernel kernels[] = {
    {"sm90 stream 2wg", mvl_cuda_vit_attn_sm90_variant, 0, true},
    {"sm90 stream 3wg", mvl_cuda_vit_attn_sm90_variant, 1, true},
    {"sm90 resident 2wg", mvl_cuda_vit_attn_sm90_variant, 2, true},
    {"sm90 resident 3wg", mvl_cuda_vit_attn_sm90_variant, 3, true},
    {"fa2", run_fa2, 0, false},
};
static const int NK = sizeof kernels / sizeof kernels[0];

static int run_case(const Case &c, cudaStream_t st, uint64_t seed, bool control) {
    mvl_error err = {};
    const int64_t rows = (int64_t)c.tiles * c.ntok, W = 3 * (int64_t)c.heads * HD, n_out = rows * c.heads * HD;
    const float scale = 1.0f / sqrtf((float)HD);
    rng_state = seed;
    std::vector<uint16_t> h((size_t)(rows * W));
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < W; i++)
            h[r * W + i] = mvl_f32_to_bf16_bits(rng_normal() * (i < 2 * c.heads * HD ? c.qk_std : 1.0f));
    bf16 *dqkv, *dout;
    float *dref;
    CK(cudaMalloc(&dqkv, h.size() * 2));
    CK(cudaMalloc(&dout, (n_out + GUARD) * 2));
    CK(cudaMalloc(&dref, n_out * 4));
    CK(cudaMemcpy(dqkv, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    const int blocks = (int)((rows * c.heads + 127) / 128);
    k_ref_attn<<<blocks, 128, 0, st>>>(dqkv, dref, c.ntok, c.heads, c.tiles, scale);
    CK(cudaGetLastError());
    std::vector<float> ref((size_t)n_out), ctl((size_t)n_out);
    CK(cudaMemcpyAsync(ref.data(), dref, n_out * 4, cudaMemcpyDeviceToHost, st));
    CK(cudaStreamSynchronize(st));
    int fails = 0;
    std::vector<uint16_t> got((size_t)(n_out + GUARD));
    if (control) { // the bar must reject a 2% scale error, everywhere or in the last query block's rows only
        k_ref_attn<<<blocks, 128, 0, st>>>(dqkv, dref, c.ntok, c.heads, c.tiles, scale * 1.02f);
        CK(cudaGetLastError());
        CK(cudaMemcpyAsync(ctl.data(), dref, n_out * 4, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        for (int tail_only = 0; tail_only < 2; tail_only++) {
            for (int64_t i = 0; i < n_out; i++)
                got[i] = mvl_f32_to_bf16_bits(tail_only && !in_tail((size_t)i, c) ? ref[i] : ctl[i]);
            std::fill(got.begin() + n_out, got.end(), POISON);
            const Err e = compare(got, ref, (size_t)n_out, c);
            print_row(c, tail_only ? "ctl1.02 tail" : "ctl1.02", e,
                      meets_bar(e) ? "FAIL (bar too loose)" : "PASS (rejected)");
            fails += meets_bar(e);
        }
    }
    for (int k = 0; k < NK; k++) {
        CK(cudaMemsetAsync(dout, 0xFF, (n_out + GUARD) * 2, st));
        if (kernels[k].fn(st, dqkv, dout, c.tiles, c.ntok, c.heads, scale, kernels[k].variant, &err) != MVL_OK) {
            printf("%-22s %-17s launch failed: %s\n", c.name, kernels[k].name, err.msg);
            fails += kernels[k].gated;
            continue;
        }
        CK(cudaMemcpyAsync(got.data(), dout, got.size() * 2, cudaMemcpyDeviceToHost, st));
        CK(cudaStreamSynchronize(st));
        const Err e = compare(got, ref, (size_t)n_out, c);
        const bool ok = meets_bar(e);
        if (kernels[k].gated) fails += !ok;
        print_row(c, kernels[k].name, e, ok ? "PASS" : kernels[k].gated ? "FAIL" : "(info)");
        fflush(stdout);
    }
    CK(cudaFree(dqkv));
    CK(cudaFree(dout));
    CK(cudaFree(dref));
    return fails;
}

// Median time per call of kernel kn at `tiles` tiles x ntok tokens x 16
// heads (after 3 untimed calls), in ms; negative when it does not launch.
static double time_kernel(cudaStream_t st, const Kernel &kn, const bf16 *dqkv, bf16 *dout, int tiles, int ntok,
                          int reps) {
    mvl_error err = {};
    const int heads = 16;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t(reps);
    double med = -1;
    if (kn.fn(st, dqkv, dout, tiles, ntok, heads, 0.125f, kn.variant, &err) != MVL_OK) {
        printf("%-17s launch failed: %s\n", kn.name, err.msg);
    } else {
        for (int i = 0; i < 2; i++) MV(kn.fn(st, dqkv, dout, tiles, ntok, heads, 0.125f, kn.variant, &err));
        for (int i = 0; i < reps; i++) {
            CK(cudaEventRecord(e0, st));
            MV(kn.fn(st, dqkv, dout, tiles, ntok, heads, 0.125f, kn.variant, &err));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            t[i] = ms;
        }
        med = mvl_bench_median(t.data(), reps);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return med;
}

// Interleaved timing at `tiles` x ntok x 16 heads of the nk kernels ks[]:
// `rounds` rounds, each timing a batch of `batch` calls of every kernel in
// turn (after 3 untimed calls each); med[i]: the median ms/call of ks[i],
// ratio[i]: the median over the rounds of its time over ks[0]'s in the same
// round. False when a kernel does not launch.
static bool time_interleaved(cudaStream_t st, const int *ks, int nk, const bf16 *dqkv, bf16 *dout, int tiles,
                             int ntok, int rounds, int batch, double *med, double *ratio) {
    mvl_error err = {};
    const int heads = 16;
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t((size_t)nk * rounds), r(rounds);
    bool ok = true;
    for (int i = 0; i < nk && ok; i++)
        for (int c = 0; c < 3 && ok; c++)
            if (kernels[ks[i]].fn(st, dqkv, dout, tiles, ntok, heads, 0.125f, kernels[ks[i]].variant, &err) !=
                MVL_OK) {
                printf("%-17s launch failed: %s\n", kernels[ks[i]].name, err.msg);
                ok = false;
            }
    for (int rd = 0; rd < rounds && ok; rd++)
        for (int i = 0; i < nk; i++) {
            const Kernel &kn = kernels[ks[i]];
            CK(cudaEventRecord(e0, st));
            for (int c = 0; c < batch; c++) MV(kn.fn(st, dqkv, dout, tiles, ntok, heads, 0.125f, kn.variant, &err));
            CK(cudaEventRecord(e1, st));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            t[(size_t)i * rounds + rd] = ms / batch;
        }
    for (int i = 0; i < nk && ok; i++) {
        for (int rd = 0; rd < rounds; rd++) r[rd] = t[(size_t)i * rounds + rd] / t[rd];
        med[i] = mvl_bench_median(&t[(size_t)i * rounds], rounds);
        ratio[i] = mvl_bench_median(r.data(), rounds);
    }
    CK(cudaEventDestroy(e0));
    CK(cudaEventDestroy(e1));
    return ok;
}

// Time per call at the full ViT size (64 tiles) and at 576 tokens (no tail),
// every kernel interleaved on the same random input; then the default kernel
// where the last query block holds 0 to 17 rows (at most 16: the resident
// kernel's mma.sync rows; 17: a pass), and the kernel that
// mvl_cuda_vit_attn_sm90 runs below 132 / 16 tiles (streaming, 2
// warpgroups) next to the default at 1 to 8 tiles. only >= 0: that kernel
// alone, 3 calls at 577 tokens (for a profiler).
static void timing(cudaStream_t st, int only) {
    mvl_error err = {};
    const int tiles = 64, ntok = 577, heads = 16, reps = 30, max_tok = 593;
    const int def = MVL_VIT_ATTN_SM90_DEFAULT; // kernels[] lists the sm90 variants first, in order
    const int64_t rows = (int64_t)tiles * max_tok, W = 3 * (int64_t)heads * HD;
    bf16 *dqkv, *dout;
    CK(cudaMalloc(&dqkv, rows * W * 2));
    CK(cudaMalloc(&dout, rows * heads * HD * 2));
    MV(mvl_cuda_fill_random_bf16(st, dqkv, rows * W, 7u, 1.7f, &err)); // uniform, std ~1
    auto tflops = [&](int n, double ms) { return 4.0 * n * (double)n * HD * heads * tiles / (ms * 1e-3) / 1e12; };
    if (only >= 0) {
        const double med = only < NK ? time_kernel(st, kernels[only], dqkv, dout, tiles, ntok, 3) : -1;
        if (med >= 0) printf("%-17s %6d %10.4f\n", kernels[only].name, ntok, med);
    } else {
        int ks[NK], nk = 0;
        ks[nk++] = def;
        for (int k = 0; k < NK; k++)
            if (k != def) ks[nk++] = k;
        const int rounds = 30, batch = 10;
        printf("\ntiming: %d tiles x %d heads, %d interleaved rounds of %d calls per kernel\n", tiles, heads, rounds,
               batch);
        printf("%-17s %6s %10s %12s %10s %8s\n", "kernel", "tokens", "ms/call", "ms/24 calls", "TFLOP/s", "/default");
        for (int n : {ntok, ntok - 1}) {
            double med[NK] = {}, ratio[NK] = {};
            if (!time_interleaved(st, ks, nk, dqkv, dout, tiles, n, rounds, batch, med, ratio)) continue;
            for (int i = 0; i < nk; i++)
                printf("%-17s %6d %10.4f %12.2f %10.1f %8.4f\n", kernels[ks[i]].name, n, med[i], 24 * med[i],
                       tflops(n, med[i]), ratio[i]);
        }
        printf("\n%s at %d tiles by tokens (last query block: 0, 1, 2, 8, 16, 17 rows)\n", kernels[def].name, tiles);
        printf("%-17s %10s %12s %10s\n", "tokens", "ms/call", "ms/24 calls", "TFLOP/s");
        const int toks[] = {576, 577, 578, 584, 592, 593};
        for (int n : toks) {
            const double med = time_kernel(st, kernels[def], dqkv, dout, tiles, n, reps);
            if (med >= 0) printf("%-17d %10.4f %12.2f %10.1f\n", n, med, 24 * med, tflops(n, med));
        }
        const int few[] = {0, def}; // the streaming 2-warpgroup kernel, the default
        const int nf = sizeof few / sizeof few[0];
        printf("\nat 1 to 8 tiles (interleaved)\n%-17s %6s %6s %10s %8s\n", "kernel", "tiles", "tokens", "ms/call",
               "/first");
        for (int nt : {1, 2, 3, 4, 8})
            for (int n : {576, 577}) {
                double med[nf] = {}, ratio[nf] = {};
                if (!time_interleaved(st, few, nf, dqkv, dout, nt, n, 30, 10, med, ratio)) continue;
                for (int i = 0; i < nf; i++)
                    printf("%-17s %6d %6d %10.4f %8.4f\n", kernels[few[i]].name, nt, n, med[i], ratio[i]);
            }
    }
    CK(cudaFree(dqkv));
    CK(cudaFree(dout));
}

int main(int argc, char **argv) {
    int ngpu, wgmma = 0;
    char name[256];
    mvl_error err = {};
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    MV(mvl_cuda_has_wgmma(0, &wgmma, &err));
    if (!wgmma) {
        printf("skipped: %s has no wgmma (compute capability 9.0 only)\n", name);
        return 77;
    }
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    if (argc == 3 && !strcmp(argv[1], "--time")) { // one kernel's timing only (for a profiler)
        timing(st, atoi(argv[2]));
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--timing")) {
        timing(st, -1);
        return 0;
    }
    printf("device 0: %s\n", name);
    const Case cases[] = {
        {"vit 19x577x16", 19, 577, 16, 1.0f}, {"vit sharp 19x577x16", 19, 577, 16, 2.0f},
        {"one token 7x1x16", 7, 1, 16, 1.0f}, {"tail36 5x100x16", 5, 100, 16, 1.0f},
        {"tail16 3x80x4", 3, 80, 4, 1.0f},    {"tail64 3x64x4", 3, 64, 4, 1.0f},
        {"tail44 2x300x12", 2, 300, 12, 1.5f}, {"tail64 3x640x16", 3, 640, 16, 1.0f},
        {"tail1 2x1153x16", 2, 1153, 16, 1.0f}, {"tail2 20x130x16", 20, 130, 16, 1.0f},
        {"tail8 20x200x16", 20, 200, 16, 1.5f},  {"tail16 20x208x16", 20, 208, 16, 2.0f},
        {"tail17 20x337x16", 20, 337, 16, 1.0f}, {"tail1 4x65x8", 4, 65, 8, 1.0f},
    };
    int fails = 0;
    printf("%-22s %-17s %9s %9s %10s %8s %6s\n", "case", "kernel", "rel_err", "tail_err", "max_abs", "written",
           "guard");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        fails += run_case(cases[i], st, 1000u + 17u * i, i == 0);
    printf("%d failures (bar: rel_err and tail_err <= 5e-3, every output written, guard untouched)\n", fails);
    if (!(argc > 1 && !strcmp(argv[1], "--no-timing"))) timing(st, -1);
    CK(cudaStreamDestroy(st));
    return fails ? 1 : 0;
}
