// Softmax attention of the decoder on the GPU (decoder.md §5): partial NeoX
// RoPE fused with the KV-cache append, a causal GQA flash kernel for prefill
// and a split-K (flash-decoding) kernel with a combine pass for one-token
// steps. Both attention kernels run QK^T and PV on the bf16 tensor cores
// (mma.sync m16n8k16, fp32 accumulate) with the online softmax in fp32.
#include <math.h>

#include "kernels/cuda_dec_ops.cuh"

namespace {

constexpr float LOG2E = 1.4426950408889634f;

// ---- RoPE + KV append -------------------------------------------------------------

constexpr int ROPE_THREADS = 256, ROPE_MAX_HALF = 128;

// Sequence owning activation row t: the largest b with cu[b] <= t.
__device__ __forceinline__ int seq_of_row(const int *cu, int B, int t) {
    int lo = 0, hi = B - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (cu[mid] <= t)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

// One block per token row: cos/sin of its position once in shared memory,
// then every q and k head rotated, and k, v written to the slot's cache.
__global__ void __launch_bounds__(ROPE_THREADS)
    k_rope_append(bf16 *__restrict__ qkv, const int *__restrict__ cu, int B, const int *__restrict__ pos0,
                  const int *__restrict__ slot, int heads, int kv_heads, int d, int rot_dim, float theta,
                  bf16 *__restrict__ kc, bf16 *__restrict__ vc, int64_t cap) {
    __shared__ float s_cos[ROPE_MAX_HALF], s_sin[ROPE_MAX_HALF];
    const int t = blockIdx.x, b = seq_of_row(cu, B, t);
    const int pos = pos0[b] + (t - cu[b]), half = rot_dim / 2;
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        // inv_freq rounded to fp32 from double as mvl_op_rope_neox builds it;
        // the angle is the fp32 product (decoder.md §8.4), cos/sin in fp32.
        float inv = (float)(1.0 / pow((double)theta, (double)(2 * i) / (double)rot_dim));
        sincosf(__fmul_rn((float)pos, inv), &s_sin[i], &s_cos[i]);
    }
    __syncthreads();
    const int ld = (heads + 2 * kv_heads) * d;
    bf16 *row = qkv + (int64_t)t * ld;
    const int64_t crow = ((int64_t)slot[b] * cap + pos) * kv_heads * d;
    for (int idx = threadIdx.x; idx < (heads + kv_heads) * half; idx += blockDim.x) {
        const int hh = idx / half, i = idx - hh * half; // q heads, then k heads
        bf16 *x = row + hh * d;
        const float a = __bfloat162float(x[i]), c = __bfloat162float(x[i + half]);
        // separate roundings (no FMA contraction): the CPU op's fp32 products
        const bf16 r0 = __float2bfloat16_rn(__fsub_rn(__fmul_rn(a, s_cos[i]), __fmul_rn(c, s_sin[i])));
        const bf16 r1 = __float2bfloat16_rn(__fadd_rn(__fmul_rn(c, s_cos[i]), __fmul_rn(a, s_sin[i])));
        x[i] = r0;
        x[i + half] = r1;
        if (hh >= heads) {
            bf16 *kd = kc + crow + (int64_t)(hh - heads) * d;
            kd[i] = r0;
            kd[i + half] = r1;
        }
    }
    const int pass = d - rot_dim; // k dims past rot_dim go to the cache unrotated
    for (int idx = threadIdx.x; idx < kv_heads * pass; idx += blockDim.x) {
        const int h = idx / pass, j = rot_dim + idx - h * pass;
        kc[crow + h * d + j] = row[(heads + h) * d + j];
    }
    const bf16 *v = row + (heads + kv_heads) * d;
    for (int idx = threadIdx.x; idx < kv_heads * d; idx += blockDim.x) vc[crow + idx] = v[idx];
}

// ---- shared pieces of the two attention kernels ---------------------------------------

// Online softmax of one 16-row m-tile over NJ key tiles of 8 (accumulators s,
// already scaled to the log2 domain, -inf where masked): updates the row max
// m[2] and partial row sums l[2] (rows g and g+8; l summed over the quad only
// at the end), rescales the NO output tiles o, and packs P as the A fragments
// of the NJ/2 k-steps of PV.
template <int NJ, int NO>
__device__ __forceinline__ void online_softmax(float (&s)[NJ][4], float (&m)[2], float (&l)[2], float (&o)[NO][4],
                                               uint32_t (&pa)[NJ / 2][4]) {
    float mx0 = m[0], mx1 = m[1];
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    // A row with no visible key yet keeps max -inf: subtract 0 so that its
    // p and rescale factor come out 0 rather than NaN.
    const float b0 = mx0 == -INFINITY ? 0.f : mx0, b1 = mx1 == -INFINITY ? 0.f : mx1;
    const float a0 = exp2f(m[0] - b0), a1 = exp2f(m[1] - b1);
    m[0] = mx0, m[1] = mx1;
    float l0 = l[0] * a0, l1 = l[1] * a1;
#pragma unroll
    for (int j = 0; j < NO; j++) o[j][0] *= a0, o[j][1] *= a0, o[j][2] *= a1, o[j][3] *= a1;
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        const float p0 = exp2f(s[j][0] - b0), p1 = exp2f(s[j][1] - b0);
        const float p2 = exp2f(s[j][2] - b1), p3 = exp2f(s[j][3] - b1);
        l0 += p0 + p1, l1 += p2 + p3;
        // the accumulators of key tiles 2kk, 2kk+1 are the A fragment of k-step kk
        pa[j >> 1][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
        pa[j >> 1][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
    }
    l[0] = l0, l[1] = l1;
}

// o[D/8] += P (16 x 16 keys, A fragment pa) . V (16 key rows at bV, row stride LDS).
template <int D, int LDS>
__device__ __forceinline__ void pv_step(float (&o)[D / 8][4], const uint32_t (&pa)[4], const bf16 *bV, int lane) {
#pragma unroll
    for (int dj = 0; dj < D / 8; dj += 2) {
        uint32_t b0, b1, b2, b3;
        ldsm_x4_t(b0, b1, b2, b3, &bV[(lane & 15) * LDS + dj * 8 + (lane >> 4) * 8]);
        mma_bf16(o[dj], pa[0], pa[1], pa[2], pa[3], b0, b1);
        mma_bf16(o[dj + 1], pa[0], pa[1], pa[2], pa[3], b2, b3);
    }
}

// ---- prefill: causal GQA flash attention ------------------------------------------------
//
// The G = heads / kv_heads query heads of one kv head are packed into the rows
// of one tile (packed row p = token * G + head-in-group), so a CTA's K/V tiles
// feed all G heads, and a short chunk of new tokens still fills the MMA rows.
// A CTA of 4 warps takes BM = 128 packed rows of one (sequence, kv head), each
// warp MT = 2 m-tiles of 16 rows, so every K/V fragment read from shared
// memory feeds two MMAs; K/V blocks of BN = 64 cache positions stream through
// shared memory with cp.async double buffering. Row (token i, head) sees the
// cache positions 0 .. pos0 + i; blocks wholly visible to every row of the
// CTA skip the mask. Q stays in registers for d <= 64; for d = 128 it is
// re-read from shared memory per key block, which keeps the kernel within the
// register file without spills.
template <int D> struct Pre {
    static constexpr int MT = 2, WARPS = 4, BM = 16 * MT * WARPS, BN = 64, LDS = D + 8; // +16 B: no ldmatrix conflicts
    static constexpr int SMEM = (BM + 4 * BN) * LDS * 2;
    static constexpr bool QREG = D <= 64;
};

template <int D>
__global__ void __launch_bounds__(128)
    k_attn_prefill(const bf16 *__restrict__ qkv, const int *__restrict__ cu, const int *__restrict__ pos0,
                   const int *__restrict__ slot, int heads, int kv_heads, const bf16 *__restrict__ kc,
                   const bf16 *__restrict__ vc, int64_t cap, bf16 *__restrict__ out, float sl2) {
    using C = Pre<D>;
    constexpr int MT = C::MT, BM = C::BM, BN = C::BN, LDS = C::LDS, NJ = BN / 8, NO = D / 8, CH = D / 8;
    extern __shared__ __align__(16) bf16 sm_pre[];
    bf16 *sQ = sm_pre, *sK = sQ + BM * LDS, *sV = sK + 2 * BN * LDS; // [BM][LDS], [2][BN][LDS] x 2

    const int b = blockIdx.z, kvh = blockIdx.y, G = heads / kv_heads;
    const int cs = cu[b], len = cu[b + 1] - cs;
    const int p0 = (gridDim.x - 1 - blockIdx.x) * BM; // the longest rows first: the causal tail balances
    if (p0 >= len * G) return;
    const int P0 = pos0[b], ld = (heads + 2 * kv_heads) * D;
    const int64_t kvld = (int64_t)kv_heads * D;
    const bf16 *Kg = kc + (int64_t)slot[b] * cap * kvld + kvh * D, *Vg = vc + (Kg - kc);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;

    for (int c = tid; c < BM * CH; c += 128) {
        const int r = c / CH, col = (c % CH) * 8, p = p0 + r, tk = p / G;
        const bool ok = tk < len;
        const bf16 *src = qkv + (int64_t)(cs + (ok ? tk : 0)) * ld + (ok ? kvh * G + p - tk * G : 0) * D + col;
        cp_async16(&sQ[r * LDS + col], src, ok ? 16 : 0);
    }
    // Visible positions: row limits lie in [kmin, kmax].
    const int kmin = P0 + p0 / G, kmax = P0 + min((p0 + BM - 1) / G, len - 1);
    const int nkb = kmax / BN + 1;
    auto load_kv = [&](int kb, int buf) {
        for (int c = tid; c < BN * CH; c += 128) {
            const int r = c / CH, col = (c % CH) * 8, key = kb * BN + r;
            const int64_t off = (int64_t)(key <= kmax ? key : 0) * kvld + col;
            const int bytes = key <= kmax ? 16 : 0; // zero-fill: P is 0 there and V must not be NaN
            cp_async16(&sK[(buf * BN + r) * LDS + col], Kg + off, bytes);
            cp_async16(&sV[(buf * BN + r) * LDS + col], Vg + off, bytes);
        }
    };
    load_kv(0, 0);
    cp_async_commit();

    int lim[MT][2]; // last visible position of rows g and g+8 of each m-tile
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) lim[mt][hf] = P0 + min((p0 + (warp * MT + mt) * 16 + g + 8 * hf) / G, len - 1);

    uint32_t qf[C::QREG ? MT : 1][C::QREG ? D / 16 : 1][4];
    float o[MT][NO][4], m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int j = 0; j < NO; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
        m[mt][0] = m[mt][1] = -INFINITY;
        l[mt][0] = l[mt][1] = 0.f;
    }
    const bf16 *qrow = &sQ[(warp * MT * 16 + (lane & 15)) * LDS + (lane >> 4) * 8]; // A-fragment address, m-tile 0

    for (int kb = 0; kb < nkb; kb++) {
        const int buf = kb & 1;
        if (kb + 1 < nkb) {
            load_kv(kb + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *bK = sK + buf * BN * LDS, *bV = sV + buf * BN * LDS;
        if constexpr (C::QREG) {
            if (kb == 0)
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int kk = 0; kk < D / 16; kk++)
                        ldsm_x4(qf[mt][kk][0], qf[mt][kk][1], qf[mt][kk][2], qf[mt][kk][3],
                                qrow + mt * 16 * LDS + kk * 16);
        }
        // S = Q K^T: this warp's 2 m-tiles x BN keys, two k-steps per K fragment load.
        float s[MT][NJ][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
#pragma unroll
            for (int j = 0; j < NJ; j++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = 0.f;
#pragma unroll
        for (int kp = 0; kp < D / 32; kp++) {
            uint32_t qa[MT][2][4];
#pragma unroll
            for (int mt = 0; mt < MT; mt++)
#pragma unroll
                for (int h2 = 0; h2 < 2; h2++) {
                    if constexpr (C::QREG) {
#pragma unroll
                        for (int e = 0; e < 4; e++) qa[mt][h2][e] = qf[mt][2 * kp + h2][e];
                    } else {
                        ldsm_x4(qa[mt][h2][0], qa[mt][h2][1], qa[mt][h2][2], qa[mt][h2][3],
                                qrow + mt * 16 * LDS + (2 * kp + h2) * 16);
                    }
                }
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                uint32_t b0, b1, b2, b3;
                ldsm_x4(b0, b1, b2, b3, &bK[(j * 8 + (lane & 7)) * LDS + kp * 32 + (lane >> 3) * 8]);
#pragma unroll
                for (int mt = 0; mt < MT; mt++) {
                    mma_bf16(s[mt][j], qa[mt][0][0], qa[mt][0][1], qa[mt][0][2], qa[mt][0][3], b0, b1);
                    mma_bf16(s[mt][j], qa[mt][1][0], qa[mt][1][1], qa[mt][1][2], qa[mt][1][3], b2, b3);
                }
            }
        }
        const bool masked = kb * BN + BN - 1 > kmin;
        uint32_t pa[MT][NJ / 2][4];
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int j = 0; j < NJ; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int key = kb * BN + j * 8 + 2 * t4 + (e & 1);
                    s[mt][j][e] = !masked || key <= lim[mt][e >> 1] ? s[mt][j][e] * sl2 : -INFINITY;
                }
            online_softmax<NJ, NO>(s[mt], m[mt], l[mt], o[mt], pa[mt]);
        }
        // O += P V
#pragma unroll
        for (int kk = 0; kk < BN / 16; kk++)
#pragma unroll
            for (int mt = 0; mt < MT; mt++) pv_step<D, LDS>(o[mt], pa[mt][kk], bV + kk * 16 * LDS, lane);
        __syncthreads(); // this buffer is refilled next iteration
    }

    const int ldo = heads * D;
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int hf = 0; hf < 2; hf++) {
            float li = l[mt][hf];
            li += __shfl_xor_sync(0xffffffffu, li, 1);
            li += __shfl_xor_sync(0xffffffffu, li, 2);
            const float inv = 1.f / li;
            const int p = p0 + (warp * MT + mt) * 16 + g + 8 * hf, tk = p / G;
            if (tk >= len) continue;
            bf16 *ob = out + (int64_t)(cs + tk) * ldo + (kvh * G + p - tk * G) * D + 2 * t4;
#pragma unroll
            for (int dj = 0; dj < NO; dj++)
                *reinterpret_cast<__nv_bfloat162 *>(ob + dj * 8) =
                    __floats2bfloat162_rn(o[mt][dj][2 * hf] * inv, o[mt][dj][2 * hf + 1] * inv);
        }
}

// ---- decode: split-K flash decoding ------------------------------------------------------
//
// One query token per sequence. A CTA takes one (split of the cache
// positions, kv head, sequence): its G <= 16 query heads are the rows of one
// m-tile (the rest zero), so K/V are read once for all G heads. Blocks of
// BN = 64 positions stream through a 3-stage cp.async pipeline; each of the 4
// warps takes 16 positions of every block with its own online softmax, and
// the warps merge through shared memory at the end. The split's normalised
// output and its (max, sum) go to the scratch; k_attn_combine merges the
// splits. The grid is sized from the host bound max_ctx, each CTA reads its
// sequence's length on the device and leaves at once past it: no host sync,
// so a CUDA graph can capture the step.
template <int D> struct Dec {
    static constexpr int WARPS = 4, BN = 16 * WARPS, STAGES = 3, LDS = D + 8;
    static constexpr int SMEM = (16 + STAGES * 2 * BN) * LDS * 2;
    static_assert(WARPS * 16 * (D + 2) * 4 <= SMEM, "merge buffers fit in the pipeline's shared memory");
};

struct DecPlan {
    int nsplit, chunk;
};
// Splits per sequence: about DEC_SPLITS / B, at least 256 positions each, so
// that B x kv_heads x nsplit CTAs (256 for the full model's 8 kv heads) make
// about one wave of 2 CTAs per SM, each streaming a long run of positions.
// Measured on an H100 at 32k context (GB/s for B = 1, 8, 32): 32 splits
// 2270 / 2843 / 2923, 64: 2007 / 2816 / 2878, 128: 1774 / 2761 / 2858. A
// function of (B, max_ctx) alone, as the scratch size is.
constexpr int DEC_SPLITS = 32;
DecPlan dec_plan(int B, int max_ctx) {
    const int mc = std::max(max_ctx, 1), want = std::max(1, (DEC_SPLITS + B - 1) / B);
    int chunk = (mc + want - 1) / want;
    chunk = std::max(256, (chunk + 63) / 64 * 64);
    return {(mc + chunk - 1) / chunk, chunk};
}

template <int D>
__global__ void __launch_bounds__(128)
    k_attn_decode(const bf16 *__restrict__ qkv, const int *__restrict__ cu, const int *__restrict__ pos0,
                  const int *__restrict__ slot, int heads, int kv_heads, const bf16 *__restrict__ kc,
                  const bf16 *__restrict__ vc, int64_t cap, int chunk, int nsplit, float sl2,
                  float *__restrict__ part_o, float *__restrict__ part_ml) {
    using C = Dec<D>;
    constexpr int BN = C::BN, LDS = C::LDS, ST = C::STAGES, CH = D / 8, NO = D / 8;
    extern __shared__ __align__(16) bf16 sm_dec[];
    bf16 *sQ = sm_dec, *sK = sQ + 16 * LDS, *sV = sK + ST * BN * LDS; // [16][LDS], [ST][BN][LDS] x 2

    const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, G = heads / kv_heads;
    const int ctx = pos0[b] + 1, start = split * chunk;
    if (start >= ctx) return;
    const int end = min(ctx, start + chunk), nblk = (end - start + BN - 1) / BN;
    const int ld = (heads + 2 * kv_heads) * D;
    const int64_t kvld = (int64_t)kv_heads * D;
    const bf16 *Kg = kc + ((int64_t)slot[b] * cap + start) * kvld + kvh * D, *Vg = vc + (Kg - kc);
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;

    const bf16 *qsrc = qkv + (int64_t)cu[b] * ld + kvh * G * D;
    for (int c = tid; c < 16 * CH; c += 128) {
        const int r = c / CH, col = (c % CH) * 8;
        cp_async16(&sQ[r * LDS + col], qsrc + (r < G ? r * D + col : 0), r < G ? 16 : 0);
    }
    const int n_in = end - start;
    auto load_kv = [&](int i, int buf) {
        for (int c = tid; c < BN * CH; c += 128) {
            const int r = c / CH, col = (c % CH) * 8, key = i * BN + r;
            const int64_t off = (int64_t)(key < n_in ? key : 0) * kvld + col;
            const int bytes = key < n_in ? 16 : 0;
            cp_async16(&sK[(buf * BN + r) * LDS + col], Kg + off, bytes);
            cp_async16(&sV[(buf * BN + r) * LDS + col], Vg + off, bytes);
        }
    };
#pragma unroll
    for (int st = 0; st < ST - 1; st++) {
        if (st < nblk) load_kv(st, st);
        cp_async_commit(); // empty groups keep the wait counts uniform
    }

    uint32_t qf[D / 16][4];
    float o[NO][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
    for (int j = 0; j < NO; j++) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;

    for (int i = 0; i < nblk; i++) {
        cp_async_wait<ST - 2>();
        __syncthreads(); // block i is in; every warp is done with block i - 1
        if (i == 0)
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                ldsm_x4(qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3],
                        &sQ[(lane & 15) * LDS + kk * 16 + (lane >> 4) * 8]);
        if (i + ST - 1 < nblk) load_kv(i + ST - 1, (i + ST - 1) % ST);
        cp_async_commit();
        const bf16 *bK = sK + ((i % ST) * BN + warp * 16) * LDS, *bV = sV + ((i % ST) * BN + warp * 16) * LDS;
        float s[2][4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
#pragma unroll
        for (int kp = 0; kp < D / 32; kp++)
#pragma unroll
            for (int j = 0; j < 2; j++) {
                uint32_t b0, b1, b2, b3;
                ldsm_x4(b0, b1, b2, b3, &bK[(j * 8 + (lane & 7)) * LDS + kp * 32 + (lane >> 3) * 8]);
                mma_bf16(s[j], qf[2 * kp][0], qf[2 * kp][1], qf[2 * kp][2], qf[2 * kp][3], b0, b1);
                mma_bf16(s[j], qf[2 * kp + 1][0], qf[2 * kp + 1][1], qf[2 * kp + 1][2], qf[2 * kp + 1][3], b2, b3);
            }
        const int key0 = i * BN + warp * 16; // relative to start
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                s[j][e] = key0 + j * 8 + 2 * t4 + (e & 1) < n_in ? s[j][e] * sl2 : -INFINITY;
        uint32_t pa[1][4];
        online_softmax<2, NO>(s, m, l, o, pa);
        pv_step<D, LDS>(o, pa[0], bV, lane);
    }
    cp_async_wait<0>();
    __syncthreads(); // the pipeline buffers become the merge buffers

    float *sO = reinterpret_cast<float *>(sm_dec); // [WARPS][16][D]
    float *sM = sO + C::WARPS * 16 * D, *sL = sM + C::WARPS * 16; // [WARPS][16] each
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
        float li = l[hf];
        li += __shfl_xor_sync(0xffffffffu, li, 1);
        li += __shfl_xor_sync(0xffffffffu, li, 2);
        const int r = g + 8 * hf;
        if (t4 == 0) sM[warp * 16 + r] = m[hf], sL[warp * 16 + r] = li;
#pragma unroll
        for (int dj = 0; dj < NO; dj++) {
            sO[(warp * 16 + r) * D + dj * 8 + 2 * t4] = o[dj][2 * hf];
            sO[(warp * 16 + r) * D + dj * 8 + 2 * t4 + 1] = o[dj][2 * hf + 1];
        }
    }
    __syncthreads();
    // Warp 0 saw position `start`, so every row's max over the warps is finite.
    for (int idx = tid; idx < G * D; idx += 128) {
        const int r = idx / D, c = idx - r * D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < C::WARPS; w++) M = fmaxf(M, sM[w * 16 + r]);
        float sum = 0.f, acc = 0.f;
#pragma unroll
        for (int w = 0; w < C::WARPS; w++) {
            const float f = exp2f(sM[w * 16 + r] - M);
            sum += sL[w * 16 + r] * f;
            acc += sO[(w * 16 + r) * D + c] * f;
        }
        const int64_t part = ((int64_t)b * nsplit + split) * heads + kvh * G + r;
        part_o[part * D + c] = acc / sum;
        if (c == 0) part_ml[2 * part] = M, part_ml[2 * part + 1] = sum;
    }
}

// Merges the splits of one (query head, sequence): blockDim.x = d threads.
// The split weights l_s 2^(m_s - M) are computed once, one split per thread,
// then each thread sums one output column over the splits.
__global__ void k_attn_combine(const int *__restrict__ cu, const int *__restrict__ pos0, int heads, int d, int chunk,
                               int nsplit, const float *__restrict__ part_o, const float *__restrict__ part_ml,
                               bf16 *__restrict__ out) {
    __shared__ float s_w[DEC_SPLITS], s_red[32]; // nsplit <= DEC_SPLITS
    const int h = blockIdx.x, b = blockIdx.y, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int n = min((pos0[b] + chunk) / chunk, nsplit); // splits holding positions 0 .. pos0[b]
    const int64_t base = (int64_t)b * nsplit * heads + h; // split sp: base + sp * heads
    float mx = -INFINITY;
    for (int sp = tid; sp < n; sp += blockDim.x) mx = fmaxf(mx, part_ml[2 * (base + (int64_t)sp * heads)]);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0) s_red[warp] = mx;
    __syncthreads();
    float M = s_red[0];
    for (int w = 1; w < (int)(blockDim.x >> 5); w++) M = fmaxf(M, s_red[w]);
    for (int sp = tid; sp < n; sp += blockDim.x) {
        const int64_t part = base + (int64_t)sp * heads;
        s_w[sp] = part_ml[2 * part + 1] * exp2f(part_ml[2 * part] - M);
    }
    __syncthreads();
    float sum = 0.f, acc = 0.f;
#pragma unroll 8
    for (int sp = 0; sp < n; sp++) {
        sum += s_w[sp];
        acc += s_w[sp] * part_o[(base + (int64_t)sp * heads) * d + tid];
    }
    out[(int64_t)cu[b] * heads * d + h * d + tid] = __float2bfloat16_rn(acc / sum);
}

template <int D>
mvl_status prefill(cudaStream_t s, const bf16 *qkv, const int *cu, int B, int max_len, const int *pos0, const int *slot,
                   int heads, int kv_heads, float sl2, const bf16 *kc, const bf16 *vc, int64_t cap, bf16 *out,
                   mvl_error *err) {
    using C = Pre<D>;
    CUDA_CHECK(cudaFuncSetAttribute(k_attn_prefill<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM));
    const int64_t rows = (int64_t)max_len * (heads / kv_heads), nx = (rows + C::BM - 1) / C::BM;
    if (nx > INT32_MAX) return mvl_fail(err, MVL_ERR_LIMIT, "CUDA attention: %d tokens are too many", max_len);
    k_attn_prefill<D><<<dim3((unsigned)nx, kv_heads, B), 128, C::SMEM, s>>>(qkv, cu, pos0, slot, heads, kv_heads,
                                                                                kc, vc, cap, out, sl2);
    LAUNCH_CHECK();
    return MVL_OK;
}

template <int D>
mvl_status attention_d(cudaStream_t s, const bf16 *qkv, const int *cu, int B, int max_len, const int *pos0,
                       int max_ctx, const int *slot, int heads, int kv_heads, float sl2, const bf16 *kc,
                       const bf16 *vc, int64_t cap, bf16 *out, float *scratch, mvl_error *err) {
    const int G = heads / kv_heads;
    if (max_len == 1 && G <= 16) {
        if (!scratch) return mvl_fail(err, MVL_ERR_ARG, "CUDA attention: decode needs scratch");
        const DecPlan pl = dec_plan(B, max_ctx);
        float *part_o = scratch, *part_ml = scratch + (size_t)B * pl.nsplit * heads * D;
        // set per call (not once): the limit is per device, and the call is legal under graph capture
        CUDA_CHECK(cudaFuncSetAttribute(k_attn_decode<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, Dec<D>::SMEM));
        k_attn_decode<D><<<dim3(pl.nsplit, kv_heads, B), 128, Dec<D>::SMEM, s>>>(
            qkv, cu, pos0, slot, heads, kv_heads, kc, vc, cap, pl.chunk, pl.nsplit, sl2, part_o, part_ml);
        LAUNCH_CHECK();
        k_attn_combine<<<dim3(heads, B), D, 0, s>>>(cu, pos0, heads, D, pl.chunk, pl.nsplit, part_o, part_ml, out);
        LAUNCH_CHECK();
        return MVL_OK;
    }
    return prefill<D>(s, qkv, cu, B, max_len, pos0, slot, heads, kv_heads, sl2, kc, vc, cap, out, err);
}

mvl_status check_dims(const char *what, int B, int heads, int kv_heads, int d, mvl_error *err) {
    if (B < 0 || heads <= 0 || kv_heads <= 0 || heads % kv_heads != 0 || B > 65535 || kv_heads > 65535)
        return mvl_fail(err, MVL_ERR_ARG, "%s: bad shape (B %d, heads %d, kv_heads %d)", what, B, heads, kv_heads);
    if (d != 32 && d != 64 && d != 128)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: head_dim %d (supported: 32, 64, 128)", what, d);
    return MVL_OK;
}

} // namespace

mvl_status mvl_cuda_rope_append_kv(cudaStream_t s, bf16 *qkv, int T, const int *cu_seqlens, int B, const int *pos0,
                                   const int *slot, int heads, int kv_heads, int d, int rot_dim, float theta,
                                   bf16 *k_cache, bf16 *v_cache, int64_t cap, mvl_error *err) {
    if (B < 0 || T < 0 || heads <= 0 || kv_heads <= 0 || d <= 0 || rot_dim < 0 || rot_dim % 2 != 0 ||
        rot_dim > d || rot_dim / 2 > ROPE_MAX_HALF || !(theta > 0.f))
        return mvl_fail(err, MVL_ERR_ARG, "CUDA RoPE: bad shape (T %d, heads %d, kv_heads %d, d %d, rot_dim %d)", T,
                        heads, kv_heads, d, rot_dim);
    if (T == 0 || B == 0) return MVL_OK;
    k_rope_append<<<T, ROPE_THREADS, 0, s>>>(qkv, cu_seqlens, B, pos0, slot, heads, kv_heads, d, rot_dim, theta,
                                             k_cache, v_cache, cap);
    LAUNCH_CHECK();
    return MVL_OK;
}

mvl_status mvl_cuda_attention(cudaStream_t s, const bf16 *qkv, int T, const int *cu_seqlens, int B, int max_len,
                              const int *pos0, int max_ctx, const int *slot, int heads, int kv_heads, int d,
                              float scale, const bf16 *k_cache, const bf16 *v_cache, int64_t cap, bf16 *out,
                              float *scratch, mvl_error *err) {
    TRY(check_dims("CUDA attention", B, heads, kv_heads, d, err));
    if (T <= 0 || B == 0 || max_len <= 0) return MVL_OK;
    const float sl2 = scale * LOG2E; // softmax as exp2 with the scale folded in
    switch (d) {
    case 32:
        return attention_d<32>(s, qkv, cu_seqlens, B, max_len, pos0, max_ctx, slot, heads, kv_heads, sl2, k_cache,
                               v_cache, cap, out, scratch, err);
    case 64:
        return attention_d<64>(s, qkv, cu_seqlens, B, max_len, pos0, max_ctx, slot, heads, kv_heads, sl2, k_cache,
                               v_cache, cap, out, scratch, err);
    default:
        return attention_d<128>(s, qkv, cu_seqlens, B, max_len, pos0, max_ctx, slot, heads, kv_heads, sl2, k_cache,
                                v_cache, cap, out, scratch, err);
    }
}

size_t mvl_cuda_attention_scratch(int B, int max_ctx, int heads, int d) {
    if (B <= 0) return 0;
    const DecPlan pl = dec_plan(B, max_ctx);
    return (size_t)B * pl.nsplit * heads * (d + 2);
}
