/* The decoder's CUDA softmax attention (kernels/cuda_attention.cu) against
 * the CPU ops in fp32 (mvl_op_rope_neox, then mvl_op_attention with
 * causal=true, bf16=false) on random bf16 inputs that both sides read:
 *   - output: ||out - ref|| / ||ref|| <= 1e-2 per case (bf16 output);
 *   - RoPE: every rotated q (in place) and k (in the cache) within one bf16
 *     ulp of the CPU's fp32 value (exact rounding gives <= 0.5; fp32 sin/cos
 *     may differ in the last bit; the share equal to the CPU value rounded
 *     is printed), v copied exactly, and every other cache row left as it was.
 * Cases: full (64/8/128, rot 64), demo (4/2/64, rot 32) and tiny (4/2/32,
 * rot 16) dims; prefill from an empty cache and onto a cache holding earlier
 * tokens; several sequences of different lengths in non-identity slots;
 * decode (one token per sequence) at contexts 1 .. 32768 for batch 1 and 8;
 * positions 1e5 and 1e6 (the fp32 angle rule, decoder.md §8.4). Prints a
 * table; exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "gpu_test_util.cuh"
#include "test_util.h"
extern "C" {
#include "kernels/gpu.h"
#include "kernels/ops.h"
}


struct Dims {
    const char *name;
    int heads, kv, d, rot;
    double theta;
};
struct Seq {
    int len, pos0, slot;
};
struct Case {
    char name[64];
    Dims dm;
    std::vector<Seq> seqs;
    int n_slots, max_ctx; // max_ctx 0: the largest pos0 + len
};

static float bf(uint16_t b) { return mvl_bf16_bits_to_f32(b); }

// |y - x| in units of the bf16 spacing at x (8 significant bits), taken no
// finer than at 2^-10: a rotated value that nearly cancels (|x| << inputs ~ 1)
// carries the last-bit difference of fp32 sin/cos between the GPU and libm.
static double ulps(float y, float x) {
    int e;
    frexpf(fmaxf(fabsf(x), 0x1p-10f), &e);
    return fabs((double)y - (double)x) / ldexp(1.0, e - 8);
}

struct Result {
    double rel, max_ulp, exact_frac;
    bool cache_ok;
};

static Result run_case(const Case &c, cudaStream_t st, uint32_t seed) {
    mvl_error err = {};
    const Dims &dm = c.dm;
    const int H = dm.heads, KV = dm.kv, d = dm.d, B = (int)c.seqs.size(), W = (H + 2 * KV) * d;
    std::vector<int> cu(B + 1, 0), pos0(B), slot(B);
    int max_len = 0, max_ctx = 0;
    int64_t cap = 1;
    for (int b = 0; b < B; b++) {
        const Seq &s = c.seqs[b];
        cu[b + 1] = cu[b] + s.len;
        pos0[b] = s.pos0;
        slot[b] = s.slot;
        max_len = std::max(max_len, s.len);
        max_ctx = std::max(max_ctx, s.pos0 + s.len);
        cap = std::max<int64_t>(cap, s.pos0 + s.len);
    }
    if (c.max_ctx) max_ctx = c.max_ctx;
    const int T = cu[B];
    const int64_t ncache = (int64_t)c.n_slots * cap * KV * d;

    bf16 *dqkv, *dk, *dv, *dout;
    int *dcu, *dpos, *dslot;
    float *dscr = nullptr;
    const size_t nscr = mvl_cuda_attention_scratch(B, max_ctx, H, d);
    CK(cudaMalloc(&dqkv, (size_t)T * W * 2));
    CK(cudaMalloc(&dk, ncache * 2));
    CK(cudaMalloc(&dv, ncache * 2));
    CK(cudaMalloc(&dout, (size_t)T * H * d * 2));
    CK(cudaMalloc(&dcu, (B + 1) * sizeof(int)));
    CK(cudaMalloc(&dpos, B * sizeof(int)));
    CK(cudaMalloc(&dslot, B * sizeof(int)));
    if (nscr) CK(cudaMalloc(&dscr, nscr * sizeof(float)));
    CK(cudaMemcpy(dcu, cu.data(), (B + 1) * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dpos, pos0.data(), B * sizeof(int), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dslot, slot.data(), B * sizeof(int), cudaMemcpyHostToDevice));
    // q, k scaled by 2 so that the softmax is neither flat nor one-hot
    MV(mvl_cuda_fill_random_bf16(st, dqkv, (int64_t)T * W, seed, 2.0f, &err));
    MV(mvl_cuda_fill_random_bf16(st, dk, ncache, seed + 1, 2.0f, &err));
    MV(mvl_cuda_fill_random_bf16(st, dv, ncache, seed + 2, 1.0f, &err));
    CK(cudaMemsetAsync(dout, 0xff, (size_t)T * H * d * 2, st)); // NaN: rows left unwritten show
    std::vector<uint16_t> qkv0((size_t)T * W), k0(ncache), v0(ncache);
    CK(cudaMemcpyAsync(qkv0.data(), dqkv, qkv0.size() * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaMemcpyAsync(k0.data(), dk, ncache * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaMemcpyAsync(v0.data(), dv, ncache * 2, cudaMemcpyDeviceToHost, st));

    const float scale = 1.0f / sqrtf((float)d);
    MV(mvl_cuda_rope_append_kv(st, dqkv, T, dcu, B, dpos, dslot, H, KV, d, dm.rot, (float)dm.theta, dk, dv, cap,
                               &err));
    MV(mvl_cuda_attention(st, dqkv, T, dcu, B, max_len, dpos, max_ctx, dslot, H, KV, d, scale, dk, dv, cap, dout,
                          dscr, &err));
    std::vector<uint16_t> qkv1((size_t)T * W), k1(ncache), v1(ncache), out((size_t)T * H * d);
    CK(cudaMemcpyAsync(qkv1.data(), dqkv, qkv1.size() * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaMemcpyAsync(k1.data(), dk, ncache * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaMemcpyAsync(v1.data(), dv, ncache * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaMemcpyAsync(out.data(), dout, out.size() * 2, cudaMemcpyDeviceToHost, st));
    CK(cudaStreamSynchronize(st));

    Result r = {0, 0, 0, true};
    double e2 = 0, r2 = 0;
    int64_t n_exact = 0, n_rot = 0;
    std::vector<char> written((size_t)c.n_slots * cap, 0);
    for (int b = 0; b < B; b++) {
        const int len = c.seqs[b].len, p0 = pos0[b], t = p0 + len;
        const int64_t sbase = (int64_t)slot[b] * cap;
        std::vector<float> q((size_t)len * H * d), K((size_t)t * KV * d), V((size_t)t * KV * d), ref((size_t)len * H * d);
        for (int i = 0; i < len; i++) {
            const uint16_t *row = &qkv0[(size_t)(cu[b] + i) * W];
            for (int j = 0; j < H * d; j++) q[(size_t)i * H * d + j] = bf(row[j]);
            for (int j = 0; j < KV * d; j++) {
                K[(size_t)(p0 + i) * KV * d + j] = bf(row[H * d + j]);
                V[(size_t)(p0 + i) * KV * d + j] = bf(row[(H + KV) * d + j]);
            }
        }
        for (size_t j = 0; j < (size_t)p0 * KV * d; j++) {
            K[j] = bf(k0[sbase * KV * d + j]);
            V[j] = bf(v0[sbase * KV * d + j]);
        }
        mvl_op_rope_neox(q.data(), len, (int64_t)H * d, H, d, dm.rot, p0, dm.theta, false);
        mvl_op_rope_neox(&K[(size_t)p0 * KV * d], len, (int64_t)KV * d, KV, d, dm.rot, p0, dm.theta, false);
        MV(mvl_op_attention(q.data(), (int64_t)H * d, len, K.data(), V.data(), (int64_t)KV * d, t, H, KV, d, scale,
                            true, false, ref.data(), &err));
        for (int i = 0; i < len; i++) {
            written[sbase + p0 + i] = 1;
            for (int j = 0; j < H * d; j++) { // output, and q rotated in place
                const float y = bf(out[(size_t)(cu[b] + i) * H * d + j]), x = ref[(size_t)i * H * d + j];
                e2 += ((double)y - x) * ((double)y - x);
                r2 += (double)x * x;
                const float qg = bf(qkv1[(size_t)(cu[b] + i) * W + j]), qc = q[(size_t)i * H * d + j];
                r.max_ulp = std::max(r.max_ulp, ulps(qg, qc));
                n_exact += qg == mvl_bf16_round(qc);
                n_rot++;
            }
            const size_t crow = (size_t)(sbase + p0 + i) * KV * d;
            for (int j = 0; j < KV * d; j++) { // k in the cache, v copied
                const float kg = bf(k1[crow + j]), kc = K[(size_t)(p0 + i) * KV * d + j];
                r.max_ulp = std::max(r.max_ulp, ulps(kg, kc));
                n_exact += kg == mvl_bf16_round(kc);
                n_rot++;
                if (v1[crow + j] != qkv0[(size_t)(cu[b] + i) * W + (H + KV) * d + j]) r.cache_ok = false;
            }
        }
    }
    for (size_t p = 0; p < written.size(); p++) // no other cache row changed
        if (!written[p] && (memcmp(&k0[p * KV * d], &k1[p * KV * d], (size_t)KV * d * 2) ||
                            memcmp(&v0[p * KV * d], &v1[p * KV * d], (size_t)KV * d * 2)))
            r.cache_ok = false;
    r.rel = r2 > 0 ? sqrt(e2 / r2) : (e2 > 0 ? 1.0 : 0.0);
    if (r.rel != r.rel) r.rel = 1e9; // NaN
    r.exact_frac = n_rot ? (double)n_exact / n_rot : 1.0;
    CK(cudaFree(dqkv));
    CK(cudaFree(dk));
    CK(cudaFree(dv));
    CK(cudaFree(dout));
    CK(cudaFree(dcu));
    CK(cudaFree(dpos));
    CK(cudaFree(dslot));
    if (dscr) CK(cudaFree(dscr));
    return r;
}

int main(void) {
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    printf("device 0: %s\n", name);
    const Dims full = {"64/8/128", 64, 8, 128, 64, 1e7}, demo = {"4/2/64", 4, 2, 64, 32, 1e7},
               tiny = {"4/2/32", 4, 2, 32, 16, 1e7};
    std::vector<Case> cases;
    auto add = [&](const Dims &dm, std::vector<Seq> seqs, int n_slots, int max_ctx, const char *fmt, int a, int b) {
        Case c;
        snprintf(c.name, sizeof c.name, fmt, a, b);
        c.dm = dm;
        c.seqs = seqs;
        c.n_slots = n_slots;
        c.max_ctx = max_ctx;
        cases.push_back(c);
    };
    const std::vector<Seq> multi = {{1, 0, 3}, {17, 50, 0}, {128, 0, 6}, {1000, 700, 2}, {300, 4000, 5}, {64, 129, 1}};
    for (const Dims *dm : {&full, &tiny}) {
        for (int L : {1, 17, 128, 1000, 4096}) add(*dm, {{L, 0, 1}}, 2, 0, "prefill len %d pos0 %d", L, 0);
        for (int L : {1, 17, 128, 1000}) add(*dm, {{L, 2500, 0}}, 1, 0, "prefill len %d pos0 %d", L, 2500);
        add(*dm, {{4096, 1000, 0}}, 1, 0, "prefill len %d pos0 %d", 4096, 1000);
        add(*dm, multi, 7, 0, "prefill %d seqs, slots permuted%.0d", 6, 0);
        for (int ctx : {1, 100, 4096, 32768})
            for (int B : {1, 8}) {
                std::vector<Seq> s;
                for (int i = 0; i < B; i++) { // contexts ctx, ctx-37, ...; slots a permutation
                    const int c = std::max(1, ctx - 37 * i);
                    s.push_back({1, c - 1, (3 * i + 1) % B});
                }
                add(*dm, s, B, 0, "decode ctx %d batch %d", ctx, B);
            }
        add(*dm, {{1, 4999, 2}, {1, 16, 0}, {1, 2999, 3}, {1, 0, 1}}, 4, 8192, "decode mixed, max_ctx %d%.0d", 8192, 0);
    }
    add(full, {{64, 100000, 0}}, 1, 0, "prefill len %d pos0 %d", 64, 100000);
    add(full, {{1, 100000, 0}}, 1, 0, "decode len %d pos0 %d", 1, 100000);
    add(tiny, {{16, 1000000, 0}}, 1, 0, "prefill len %d pos0 %d", 16, 1000000);
    add(demo, {{1000, 0, 0}}, 1, 0, "prefill len %d pos0 %d", 1000, 0);
    add(demo, multi, 7, 0, "prefill %d seqs, slots permuted%.0d", 6, 0);
    add(demo, {{1, 4095, 0}, {1, 4000, 1}}, 2, 0, "decode ctx %d batch %d", 4096, 2);

    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    int fails = 0;
    printf("%-36s %-9s %9s %12s %10s %9s %6s\n", "case", "dims", "rel_err", "rope_maxulp", "rope_exact", "cache", "ok");
    for (size_t i = 0; i < cases.size(); i++) {
        const Result r = run_case(cases[i], st, 1000u + 17u * (uint32_t)i);
        const bool ok = r.rel <= 1e-2 && r.max_ulp <= 1.0 && r.cache_ok;
        fails += !ok;
        printf("%-36s %-9s %9.2e %12.3f %9.4f%% %9s %6s\n", cases[i].name, cases[i].dm.name, r.rel, r.max_ulp,
               100.0 * r.exact_frac, r.cache_ok ? "ok" : "CHANGED", ok ? "PASS" : "FAIL");
        fflush(stdout);
    }
    CK(cudaStreamDestroy(st));
    printf("%d of %zu cases failed (bars: rel_err <= 1e-2, rope within 1 bf16 ulp, cache rows exact)\n", fails,
           cases.size());
    return fails ? 1 : 0;
}
