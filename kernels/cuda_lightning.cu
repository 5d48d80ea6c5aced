// Lightning attention on the GPU (decoder.md §4): the block-wise prefill over
// many sequences in one launch, and the fused one-token decode step. Both
// compute the exact recurrence S_t = l S_{t-1} + k_t^T v_t, o_t = q_t S_t
// (current token weight 1, §4.3; not vLLM's l^c inter-block weight, §8.1)
// with an fp32 state (§8.2). SiLU is applied on load to q, k and v in fp32 and
// rounded to bf16, the reference's bf16 activation (§4.1, §8.3).
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda_dec_ops.cuh"

namespace {

constexpr int LA_BT = 64;       // tokens per prefill block (only changes rounding, §4.4)
constexpr int LA_WARPS = 8, LA_THREADS = LA_WARPS * 32;

// SiLU in fp32: x / (1 + 2^(-x log2 e)) with the MUFU ex2 and rcp
// approximations (flush-to-zero forms, no range fix-ups): the prefill SiLUs
// ~1e9 values per 32k-token layer. Their few-ulp fp32 error changes the bf16
// result only for values within ~1e-6 relative of a rounding tie.
__device__ __forceinline__ float la_silu_f32(float x) {
    float e, r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(x * -1.4426950408889634f));
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.0f + e));
    return x * r;
}
// ... rounded to bf16: the reference's bf16 activation.
__device__ __forceinline__ float la_silu(float x) { return __bfloat162float(__float2bfloat16_rn(la_silu_f32(x))); }

__device__ __forceinline__ uint32_t la_silu2(uint32_t w) {
    __nv_bfloat162 h;
    memcpy(&h, &w, 4);
    float2 f = __bfloat1622float2(h);
    return pack_bf16(la_silu_f32(f.x), la_silu_f32(f.y));
}

// bf16 pair (low half = lower index) times (a, b), rounded back to bf16.
__device__ __forceinline__ uint32_t la_scale2(uint32_t w, float a, float b) {
    __nv_bfloat162 h;
    memcpy(&h, &w, 4);
    float2 f = __bfloat1622float2(h);
    return pack_bf16(f.x * a, f.y * b);
}

// The fp32 state as hi + lo bf16 (hi = bf16(x), lo = bf16(x - hi)): q S on the
// tensor cores as q S_hi + q S_lo keeps ~16 mantissa bits of the state (q is
// exactly bf16), i.e. fp32-grade for the inter-block term, for one extra MMA.
// A single bf16 copy of S would add a relative error ~2^-9 per state entry to
// every output, as large as the bf16 output rounding itself, and the state is
// the long-range memory (deep heads remember ~20k tokens, §4.2).
__device__ __forceinline__ void la_split(float x, float y, uint32_t &hi, uint32_t &lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    float2 hf = __bfloat1622float2(h);
    memcpy(&hi, &h, 4);
    lo = pack_bf16(x - hf.x, y - hf.y);
}

// Prefill geometry: one CTA per (v-column slice of width W, head, sequence).
// Each v slice of the state and output is independent of the others, so
// slices fill the GPU when few sequences and heads are given (1 sequence x 64
// heads x 2 slices of 64 = 128 CTAs). q and k are loaded (and SiLU'd) by
// every slice.
// 8 warps: in the output phase warp w owns block rows 16 (w % 4) .. +15 and
// v columns (w / 4) W/2 .. +W/2 (the pair of a row tile recomputes its q k^T);
// in the state update warp (wm, wn) owns state rows 16 wm .. +15 and NTW
// 8-column tiles. Two warps per scheduler (four with two CTAs per SM) hide
// the latencies one warp could not (measured: 1 warp per scheduler issued an
// instruction every 3.8 cycles).
template <int D, int W> struct LaCfg {
    static constexpr int LDQ = D + 8; // padded bf16 rows: ldmatrix rows land in distinct banks
    static constexpr int LDV = W + 8;
    static constexpr int WH = W / 2;                          // output columns per warp
    static constexpr int STAGE = LA_BT * (2 * LDQ + LDV);     // bf16 elements of one input stage
    static constexpr int WM = D / 16 < LA_WARPS ? D / 16 : LA_WARPS; // state update: warps along the state rows
    static constexpr int WN = LA_WARPS / WM;                  // ... and along its columns
    static constexpr int NTW = W / 8 / WN;                    // 8-column state tiles per warp
    static constexpr int MIN_CTAS = W == 32 ? 2 : 1;          // W 32: two CTAs per SM (<= 128 registers)
    static constexpr size_t SMEM = (size_t)(2 * STAGE + 2 * D * LDV) * sizeof(bf16) + (2 * LA_BT + 1) * sizeof(float);
    static_assert(D % 16 == 0 && W % 32 == 0 && W <= D && WM * 16 == D && NTW >= 1, "tile shapes");
};

// Rows of a block, 16-byte chunks, CPR chunks per row: thread -> (row r0 +
// RPP p, chunk c), the same mapping for the copy and the in-place SiLU so that
// each thread converts what its own cp.async wrote. Rows past `valid` are
// zero-filled (SiLU(0) = 0: they add nothing).
template <int CPR, int LD>
__device__ __forceinline__ void la_copy_rows(bf16 *dst, const bf16 *src, size_t stride, int valid, int tid) {
    constexpr int RPP = LA_THREADS / CPR;
    const int c = tid % CPR, r0 = tid / CPR;
#pragma unroll
    for (int p = 0; p < LA_BT / RPP; p++) {
        const int r = r0 + p * RPP;
        const bool ok = r < valid;
        cp_async16(dst + r * LD + c * 8, src + (size_t)(ok ? r : 0) * stride + c * 8, ok ? 16 : 0);
    }
}
template <int CPR, int LD> __device__ __forceinline__ void la_silu_rows(bf16 *buf, int tid) {
    constexpr int RPP = LA_THREADS / CPR;
    const int c = tid % CPR, r0 = tid / CPR;
#pragma unroll
    for (int p = 0; p < LA_BT / RPP; p++) {
        uint4 *q = reinterpret_cast<uint4 *>(buf + (r0 + p * RPP) * LD + c * 8);
        uint4 u = *q;
        u.x = la_silu2(u.x), u.y = la_silu2(u.y), u.z = la_silu2(u.z), u.w = la_silu2(u.w);
        *q = u;
    }
}

// Block algorithm of §4.4 with block size LA_BT, for rows c of a block of m
// tokens and incoming state S:
//   O[c]  = l^(c+1) q_c S  +  sum_{j<=c} l^(c-j) (q_c . k_j) v_j
//   S_new = l^m S + sum_j l^(m-1-j) k_j^T v_j
// All products on the tensor cores (bf16 in, fp32 accumulate). The state
// lives in fp32 registers (accumulator layout) across blocks; its hi/lo bf16
// copy in shared memory feeds q S. The two other bf16 roundings are those of
// the reference [S1]: the decayed scores (q k^T) l^(c-j) before (.)v, and the
// decayed keys k_j l^(m-1-j) before the state update.
template <int D, int W>
__global__ void __launch_bounds__(LA_THREADS, LaCfg<D, W>::MIN_CTAS)
    k_la_prefill(const bf16 *__restrict__ qkv, const int *__restrict__ cu, const int *__restrict__ slot, int heads,
                 const float *__restrict__ slopes, float *__restrict__ state, bf16 *__restrict__ out) {
    using C = LaCfg<D, W>;
    extern __shared__ __align__(16) unsigned char la_smem[];
    bf16 *stg = reinterpret_cast<bf16 *>(la_smem); // [2] x (Q [BT][LDQ], K [BT][LDQ], V [BT][LDV]), SiLU'd
    bf16 *sSh = stg + 2 * C::STAGE;                 // [D][LDV] state slice, bf16 hi part
    bf16 *sSl = sSh + D * C::LDV;                   // [D][LDV] lo part
    float *pw = reinterpret_cast<float *>(sSl + D * C::LDV); // [BT+1] l^n
    float *dk = pw + LA_BT + 1;                              // [BT] l^(m-1-j) for the block's keys, 0 past m

    const int v0 = blockIdx.x * W, h = blockIdx.y, b = blockIdx.z;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t4 = lane & 3;
    const int row0 = cu[b], len = cu[b + 1] - row0;
    const float s = slopes[h];
    const size_t tok_stride = (size_t)heads * 3 * D, out_stride = (size_t)heads * D;
    const bf16 *base = qkv + (size_t)row0 * tok_stride + (size_t)h * 3 * D;
    float *S = state + ((size_t)slot[b] * heads + h) * D * D + v0;

    // l^n as exp(-s n) (not repeated products): exact to fp32 rounding for every n.
    for (int n = tid; n <= LA_BT; n += LA_THREADS) pw[n] = expf(-s * (float)n);

    // State slice -> registers: warp (wm, wn) holds rows 16 wm + {g, g+8},
    // columns (wn*NTW + nt)*8 + 2*t4 + {0, 1}.
    const int wm = warp % C::WM, wn = warp / C::WM, sr = wm * 16 + g;
    float sacc[C::NTW][4];
#pragma unroll
    for (int nt = 0; nt < C::NTW; nt++) {
        const int c = (wn * C::NTW + nt) * 8 + 2 * t4;
        float2 a = *reinterpret_cast<const float2 *>(&S[(size_t)sr * D + c]);
        float2 e = *reinterpret_cast<const float2 *>(&S[(size_t)(sr + 8) * D + c]);
        sacc[nt][0] = a.x, sacc[nt][1] = a.y, sacc[nt][2] = e.x, sacc[nt][3] = e.y;
    }
    auto store_split = [&]() {
#pragma unroll
        for (int nt = 0; nt < C::NTW; nt++) {
            const int c = (wn * C::NTW + nt) * 8 + 2 * t4;
            uint32_t hi, lo;
            la_split(sacc[nt][0], sacc[nt][1], hi, lo);
            *reinterpret_cast<uint32_t *>(&sSh[sr * C::LDV + c]) = hi;
            *reinterpret_cast<uint32_t *>(&sSl[sr * C::LDV + c]) = lo;
            la_split(sacc[nt][2], sacc[nt][3], hi, lo);
            *reinterpret_cast<uint32_t *>(&sSh[(sr + 8) * C::LDV + c]) = hi;
            *reinterpret_cast<uint32_t *>(&sSl[(sr + 8) * C::LDV + c]) = lo;
        }
    };
    store_split();

    auto load_block = [&](int blk) {
        bf16 *sQ = stg + (blk & 1) * C::STAGE;
        const bf16 *src = base + (size_t)blk * LA_BT * tok_stride;
        const int valid = len - blk * LA_BT;
        la_copy_rows<D / 8, C::LDQ>(sQ, src, tok_stride, valid, tid);
        la_copy_rows<D / 8, C::LDQ>(sQ + LA_BT * C::LDQ, src + D, tok_stride, valid, tid);
        la_copy_rows<W / 8, C::LDV>(sQ + 2 * LA_BT * C::LDQ, src + 2 * D + v0, tok_stride, valid, tid);
    };

    const int nblk = (len + LA_BT - 1) / LA_BT;
    const int rt = warp & 3, r0 = rt * 16, c0 = (warp >> 2) * C::WH; // output tile of this warp
    if (nblk > 0) load_block(0);
    cp_async_commit();
    for (int blk = 0; blk < nblk; blk++) {
        const int t0 = blk * LA_BT, m = min(LA_BT, len - t0);
        bf16 *sQ = stg + (blk & 1) * C::STAGE, *sK = sQ + LA_BT * C::LDQ, *sV = sK + LA_BT * C::LDQ;
        if (blk + 1 < nblk) load_block(blk + 1);
        cp_async_commit();
        cp_async_wait<1>();
        la_silu_rows<D / 8, C::LDQ>(sQ, tid);
        la_silu_rows<D / 8, C::LDQ>(sK, tid);
        la_silu_rows<W / 8, C::LDV>(sV, tid);
        for (int j = tid; j < LA_BT; j += LA_THREADS) dk[j] = j < m ? pw[m - 1 - j] : 0.f;
        __syncthreads();

        if (r0 < m) {
            uint32_t qf[D / 16][4];
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
                ldsm_x4(qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3],
                        &sQ[(r0 + (lane & 15)) * C::LDQ + kk * 16 + (lane >> 4) * 8]);
            // inter-block: q S_prev (hi + lo), then the row decay l^(c+1)
            float o[C::WH / 8][4];
#pragma unroll
            for (int nt = 0; nt < C::WH / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++)
#pragma unroll
                for (int np = 0; np < C::WH / 16; np++) {
                    const int off = (kk * 16 + (lane & 15)) * C::LDV + c0 + np * 16 + (lane >> 4) * 8;
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4_t(b0, b1, b2, b3, &sSh[off]);
                    mma_bf16(o[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
                    mma_bf16(o[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b2, b3);
                    ldsm_x4_t(b0, b1, b2, b3, &sSl[off]);
                    mma_bf16(o[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
                    mma_bf16(o[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b2, b3);
                }
            const int ra = r0 + g, rb = ra + 8;
            const float qa = pw[ra + 1], qb = pw[rb + 1];
#pragma unroll
            for (int nt = 0; nt < C::WH / 8; nt++) o[nt][0] *= qa, o[nt][1] *= qa, o[nt][2] *= qb, o[nt][3] *= qb;

            // intra-block: q k^T on the key tiles up to the diagonal
            float p[LA_BT / 8][4];
#pragma unroll
            for (int nt = 0; nt < LA_BT / 8; nt++) p[nt][0] = p[nt][1] = p[nt][2] = p[nt][3] = 0.f;
#pragma unroll
            for (int np = 0; np < LA_BT / 16; np++) {
                if (np > rt) continue;
#pragma unroll
                for (int kk = 0; kk < D / 16; kk++) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4(b0, b1, b2, b3,
                            &sK[(np * 16 + (lane & 7) + ((lane >> 4) << 3)) * C::LDQ + kk * 16 + ((lane >> 3) & 1) * 8]);
                    mma_bf16(p[2 * np], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b0, b1);
                    mma_bf16(p[2 * np + 1], qf[kk][0], qf[kk][1], qf[kk][2], qf[kk][3], b2, b3);
                }
            }
            // decay mask l^(c-j) (0 above the diagonal), bf16, then (.) v
#pragma unroll
            for (int np = 0; np < LA_BT / 16; np++) {
                if (np > rt) continue;
                uint32_t a[4];
#pragma unroll
                for (int hf = 0; hf < 2; hf++) {
                    const int nt = 2 * np + hf, j = nt * 8 + 2 * t4;
                    const float d0 = j <= ra ? pw[ra - j] : 0.f, d1 = j + 1 <= ra ? pw[ra - j - 1] : 0.f;
                    const float d2 = j <= rb ? pw[rb - j] : 0.f, d3 = j + 1 <= rb ? pw[rb - j - 1] : 0.f;
                    a[2 * hf] = pack_bf16(p[nt][0] * d0, p[nt][1] * d1);
                    a[2 * hf + 1] = pack_bf16(p[nt][2] * d2, p[nt][3] * d3);
                }
#pragma unroll
                for (int vp = 0; vp < C::WH / 16; vp++) {
                    uint32_t b0, b1, b2, b3;
                    ldsm_x4_t(b0, b1, b2, b3, &sV[(np * 16 + (lane & 15)) * C::LDV + c0 + vp * 16 + (lane >> 4) * 8]);
                    mma_bf16(o[2 * vp], a[0], a[1], a[2], a[3], b0, b1);
                    mma_bf16(o[2 * vp + 1], a[0], a[1], a[2], a[3], b2, b3);
                }
            }
            bf16 *orow = out + (size_t)(row0 + t0) * out_stride + (size_t)h * D + v0 + c0 + 2 * t4;
#pragma unroll
            for (int nt = 0; nt < C::WH / 8; nt++) {
                if (ra < m)
                    *reinterpret_cast<uint32_t *>(&orow[(size_t)ra * out_stride + nt * 8]) = pack_bf16(o[nt][0], o[nt][1]);
                if (rb < m)
                    *reinterpret_cast<uint32_t *>(&orow[(size_t)rb * out_stride + nt * 8]) = pack_bf16(o[nt][2], o[nt][3]);
            }
        }

        // state update: S = l^m S + (K diag(l^(m-1-j)))^T V
        const float lm = pw[m];
#pragma unroll
        for (int nt = 0; nt < C::NTW; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) sacc[nt][e] *= lm;
#pragma unroll
        for (int kk = 0; kk < LA_BT / 16; kk++) {
            if (kk * 16 >= m) break;
            const int j = kk * 16 + 2 * t4;
            const float e0 = dk[j], e1 = dk[j + 1], e8 = dk[j + 8], e9 = dk[j + 9];
            uint32_t a0, a1, a2, a3;
            ldsm_x4_t(a0, a1, a2, a3,
                      &sK[(kk * 16 + (lane & 7) + ((lane >> 4) << 3)) * C::LDQ + wm * 16 + ((lane >> 3) & 1) * 8]);
            a0 = la_scale2(a0, e0, e1), a1 = la_scale2(a1, e0, e1);
            a2 = la_scale2(a2, e8, e9), a3 = la_scale2(a3, e8, e9);
            // NTW = 1 (d 32): the x4 load also reads the next 8 columns (the
            // neighbour's, or the row padding), unused.
#pragma unroll
            for (int np = 0; np < (C::NTW + 1) / 2; np++) {
                uint32_t b0, b1, b2, b3;
                ldsm_x4_t(b0, b1, b2, b3,
                          &sV[(kk * 16 + (lane & 15)) * C::LDV + (wn * C::NTW + 2 * np) * 8 + (lane >> 4) * 8]);
                mma_bf16(sacc[2 * np], a0, a1, a2, a3, b0, b1);
                if (2 * np + 1 < C::NTW) mma_bf16(sacc[2 * np + 1], a0, a1, a2, a3, b2, b3);
            }
        }
        __syncthreads(); // every read of this stage and of the old hi/lo state is done
        store_split();
    }
    cp_async_wait<0>();

#pragma unroll
    for (int nt = 0; nt < C::NTW; nt++) {
        const int c = (wn * C::NTW + nt) * 8 + 2 * t4;
        *reinterpret_cast<float2 *>(&S[(size_t)sr * D + c]) = make_float2(sacc[nt][0], sacc[nt][1]);
        *reinterpret_cast<float2 *>(&S[(size_t)(sr + 8) * D + c]) = make_float2(sacc[nt][2], sacc[nt][3]);
    }
}

// Decode: one CTA per (32-column slice of the state, head, sequence). Thread
// (row r = tid/8, column group cg = tid%8) owns columns v0 + 4cg .. +3 of rows
// r, r+16, ...: every state float is read once and written once with 16-byte
// accesses (a warp covers 4 consecutive 128-byte row pieces), all D/16 loads
// in flight before the first use. o = q S_new reduces over rows: shuffles
// inside the warp, then across the 4 warps in shared memory.
constexpr int LD_COLS = 32;

template <int D>
__global__ void __launch_bounds__(128) k_la_decode(const bf16 *__restrict__ qkv, const int *__restrict__ slot,
                                                   int heads, const float *__restrict__ slopes,
                                                   float *__restrict__ state, bf16 *__restrict__ out) {
    constexpr int PASSES = D / 16;
    __shared__ float sq[D], sk[D], sv[LD_COLS];
    __shared__ float4 red[4][8];
    const int v0 = blockIdx.x * LD_COLS, h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x;
    const int cg = tid & 7, r = tid >> 3;
    float *S = state + ((size_t)slot[b] * heads + h) * D * D + v0 + 4 * cg;
    float4 st[PASSES];
#pragma unroll
    for (int p = 0; p < PASSES; p++) st[p] = *reinterpret_cast<const float4 *>(&S[(size_t)(r + 16 * p) * D]);

    const bf16 *row = qkv + ((size_t)b * heads + h) * 3 * D;
    for (int i = tid; i < 2 * D + LD_COLS; i += 128) {
        const float y = la_silu(__bfloat162float(row[i < 2 * D ? i : v0 + i]));
        if (i < D) sq[i] = y;
        else if (i < 2 * D) sk[i - D] = y;
        else sv[i - 2 * D] = y;
    }
    const float l = expf(-slopes[h]);
    __syncthreads();

    const float4 v = *reinterpret_cast<const float4 *>(&sv[4 * cg]);
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
    for (int p = 0; p < PASSES; p++) {
        const int i = r + 16 * p;
        const float ki = sk[i], qi = sq[i];
        float4 x = st[p];
        x.x = fmaf(l, x.x, ki * v.x), x.y = fmaf(l, x.y, ki * v.y);
        x.z = fmaf(l, x.z, ki * v.z), x.w = fmaf(l, x.w, ki * v.w);
        *reinterpret_cast<float4 *>(&S[(size_t)i * D]) = x;
        acc.x = fmaf(qi, x.x, acc.x), acc.y = fmaf(qi, x.y, acc.y);
        acc.z = fmaf(qi, x.z, acc.z), acc.w = fmaf(qi, x.w, acc.w);
    }
#pragma unroll
    for (int o = 8; o < 32; o <<= 1) {
        acc.x += __shfl_xor_sync(0xffffffffu, acc.x, o);
        acc.y += __shfl_xor_sync(0xffffffffu, acc.y, o);
        acc.z += __shfl_xor_sync(0xffffffffu, acc.z, o);
        acc.w += __shfl_xor_sync(0xffffffffu, acc.w, o);
    }
    if ((tid & 31) < 8) red[tid >> 5][cg] = acc;
    __syncthreads();
    if (tid < 8) {
        float4 a = red[0][tid];
#pragma unroll
        for (int w = 1; w < 4; w++) a.x += red[w][tid].x, a.y += red[w][tid].y, a.z += red[w][tid].z, a.w += red[w][tid].w;
        uint2 u = make_uint2(pack_bf16(a.x, a.y), pack_bf16(a.z, a.w));
        *reinterpret_cast<uint2 *>(&out[((size_t)b * heads + h) * D + v0 + 4 * tid]) = u;
    }
}

template <int D, int W>
mvl_status la_prefill_launch(cudaStream_t s, const bf16 *qkv, const int *cu, int B, const int *slot, int heads,
                             const float *slopes, float *state, bf16 *out, mvl_error *err) {
    using C = LaCfg<D, W>;
    CUDA_CHECK(cudaFuncSetAttribute(k_la_prefill<D, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)C::SMEM));
    k_la_prefill<D, W><<<dim3(D / W, heads, B), LA_THREADS, C::SMEM, s>>>(qkv, cu, slot, heads, slopes, state, out);
    LAUNCH_CHECK();
    return MVL_OK;
}

// v-slice width: 64 halves the redundant q/k loads and SiLU of 32 (the SiLU
// is the larger cost: two MUFU ops per value) but needs 125 KB of shared
// memory at d = 128 (one CTA of 8 warps per SM; 32 fits two). Wide slices
// unless they would leave more than a tenth of the SMs idle.
// MVL_LIGHTNING_W=32|64 overrides (benchmarking).
int la_slice_width(int B, int heads, int d) {
    static int forced = -1, sms = 0;
    if (forced < 0) {
        const char *e = getenv("MVL_LIGHTNING_W");
        forced = e && (atoi(e) == 32 || atoi(e) == 64) ? atoi(e) : 0;
        mvl_error err;
        if (mvl_cuda_sm_count(&sms, &err) != MVL_OK) sms = 132;
    }
    if (d == 32) return 32;
    if (forced) return forced;
    return (int64_t)B * heads * (d / 64) * 10 >= (int64_t)sms * 9 ? 64 : 32;
}

} // namespace

mvl_status mvl_cuda_lightning_prefill(cudaStream_t s, const bf16 *qkv, const int *cu_seqlens, int B, int max_len,
                                      const int *slot, int heads, int d, const float *slopes, float *state,
                                      bf16 *out, mvl_error *err) {
    if (B <= 0 || max_len <= 0) return MVL_OK;
    if (heads <= 0 || B > 65535 || heads > 65535)
        return mvl_fail(err, MVL_ERR_ARG, "lightning prefill: %d sequences x %d heads out of range", B, heads);
    const int w = la_slice_width(B, heads, d);
    switch (d * 2 + (w == 64)) {
    case 64: return la_prefill_launch<32, 32>(s, qkv, cu_seqlens, B, slot, heads, slopes, state, out, err);
    case 128: return la_prefill_launch<64, 32>(s, qkv, cu_seqlens, B, slot, heads, slopes, state, out, err);
    case 129: return la_prefill_launch<64, 64>(s, qkv, cu_seqlens, B, slot, heads, slopes, state, out, err);
    case 256: return la_prefill_launch<128, 32>(s, qkv, cu_seqlens, B, slot, heads, slopes, state, out, err);
    case 257: return la_prefill_launch<128, 64>(s, qkv, cu_seqlens, B, slot, heads, slopes, state, out, err);
    default: return mvl_fail(err, MVL_ERR_UNSUPPORTED, "lightning prefill: head dim %d (supported: 32, 64, 128)", d);
    }
}

mvl_status mvl_cuda_lightning_decode(cudaStream_t s, const bf16 *qkv, int B, const int *slot, int heads, int d,
                                     const float *slopes, float *state, bf16 *out, mvl_error *err) {
    if (B <= 0) return MVL_OK;
    if (heads <= 0 || B > 65535 || heads > 65535)
        return mvl_fail(err, MVL_ERR_ARG, "lightning decode: %d sequences x %d heads out of range", B, heads);
    const dim3 grid(d / LD_COLS, heads, B);
    switch (d) {
    case 32: k_la_decode<32><<<grid, 128, 0, s>>>(qkv, slot, heads, slopes, state, out); break;
    case 64: k_la_decode<64><<<grid, 128, 0, s>>>(qkv, slot, heads, slopes, state, out); break;
    case 128: k_la_decode<128><<<grid, 128, 0, s>>>(qkv, slot, heads, slopes, state, out); break;
    default: return mvl_fail(err, MVL_ERR_UNSUPPORTED, "lightning decode: head dim %d (supported: 32, 64, 128)", d);
    }
    LAUNCH_CHECK();
    return MVL_OK;
}
