// The vision path on the GPU (kernels/): see cuda_vit.h. Row-major
// activations; a Linear y = x W^T + b is one cuBLASLt call with W as the
// transposed column-major operand, so nothing is transposed at load time.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"
extern "C" {
#include "projector/projector.h"
}
#include "kernels/cuda_vit.h"
#include "kernels/cuda_vit_attn.h"

namespace {

// ---- kernels --------------------------------------------------------------------

// uint8 HWC tiles -> bf16 patch rows [n*g*g, kpad], column (c, ky, kx) as the
// conv weight [V, 3, P, P] flattens; columns past 3*P*P are zero. The value is
// torchvision's (u8/255 - mean)/std in float32, then rounded to bf16 as the
// reference's .to(torch.bfloat16) does (vision.md §3.5): a function of (c, u8)
// only, so each block tabulates its 3 x 256 results first. A thread writes 8
// columns as one 16-byte store (kpad % 8 == 0).
__global__ void k_patchify(const uint8_t *tiles, int n, int S, int P, int kpad, float3 mean, float3 stdv,
                           bf16 *out) {
    __shared__ bf16 lut[3][256];
    for (int i = threadIdx.x; i < 3 * 256; i += blockDim.x) {
        const int c = i / 256;
        const float m = c == 0 ? mean.x : c == 1 ? mean.y : mean.z, sd = c == 0 ? stdv.x : c == 1 ? stdv.y : stdv.z;
        lut[c][i % 256] = __float2bfloat16_rn(((float)(i % 256) / 255.0f - m) / sd);
    }
    __syncthreads();
    const int g = S / P, chunks = kpad / 8;
    const int64_t total = (int64_t)n * g * g * chunks;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = i / chunks, t = row / (g * g);
        const int p = (int)(row % (g * g)), col = 8 * (int)(i % chunks);
        const uint8_t *patch = tiles + ((t * S + (p / g) * P) * S + (p % g) * P) * 3; // its top-left pixel
        int c = col / (P * P), ky = col % (P * P) / P, kx = col % P;
        __align__(16) bf16 v[8];
#pragma unroll
        for (int e = 0; e < 8; e++) {
            v[e] = c < 3 ? lut[c][patch[(ky * S + kx) * 3 + c]] : __float2bfloat16_rn(0.f);
            if (++kx == P) kx = 0, ky = ky + 1 == P ? (c++, 0) : ky + 1;
        }
        reinterpret_cast<uint4 *>(out)[i] = *reinterpret_cast<const uint4 *>(v);
    }
}

// Row kernels: one warp per row of dim bf16 values (dim % 8 == 0, dim <=
// 1024), lane l holding the 8-wide vectors l, l+32, ... in fp32 registers;
// 16-byte loads and stores. The residual stream is bf16 and every rounding
// point is the one of transformers' CLIPEncoderLayer run in bf16 (vision.md
// §1.2): sums of two bf16 tensors and LayerNorm outputs are rounded to bf16.
constexpr int ROW_VECS = 4; // 4 x 32 lanes x 8 = 1024 columns

__device__ __forceinline__ void row_unpack(uint4 u, float *f) {
    const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) {
        float2 t = __bfloat1622float2(h[k]);
        f[2 * k] = t.x, f[2 * k + 1] = t.y;
    }
}
__device__ __forceinline__ uint4 row_pack(const float *f) {
    uint4 u;
    uint32_t *w = reinterpret_cast<uint32_t *>(&u);
#pragma unroll
    for (int k = 0; k < 4; k++) w[k] = pack_bf16(f[2 * k], f[2 * k + 1]);
    return u;
}
__device__ __forceinline__ void row_load(const bf16 *src, int nvec, int lane, float (&x)[ROW_VECS][8]) {
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++) {
        int vi = i * 32 + lane;
        if (vi < nvec) row_unpack(reinterpret_cast<const uint4 *>(src)[vi], x[i]);
        else
#pragma unroll
            for (int e = 0; e < 8; e++) x[i][e] = 0.f;
    }
}
// x := bf16(x) in registers, stored to dst when dst != nullptr.
__device__ __forceinline__ void row_round_store(float (&x)[ROW_VECS][8], int nvec, int lane, bf16 *dst) {
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++) {
        int vi = i * 32 + lane;
        if (vi >= nvec) continue;
        uint4 u = row_pack(x[i]);
        row_unpack(u, x[i]);
        if (dst) reinterpret_cast<uint4 *>(dst)[vi] = u;
    }
}
// LayerNorm (fp32 statistics, two passes over registers) -> bf16 y; with
// keep, x becomes the stored (rounded) output.
__device__ __forceinline__ void row_ln_store(float (&x)[ROW_VECS][8], int dim, int nvec, int lane, const float *w,
                                             const float *b, float eps, bf16 *y, bool keep = false) {
    float s = 0.f;
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++)
#pragma unroll
        for (int e = 0; e < 8; e++) s += x[i][e]; // zero past nvec
#pragma unroll
    for (int o = 16; o; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    const float mean = s / dim;
    float var = 0.f;
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++)
        if (i * 32 + lane < nvec)
#pragma unroll
            for (int e = 0; e < 8; e++) { float d = x[i][e] - mean; var += d * d; }
#pragma unroll
    for (int o = 16; o; o >>= 1) var += __shfl_xor_sync(0xffffffffu, var, o);
    const float rstd = rsqrtf(var / dim + eps);
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++) {
        int vi = i * 32 + lane;
        if (vi >= nvec) continue;
        float o[8];
        const float4 *w4 = reinterpret_cast<const float4 *>(w + vi * 8), *b4 = reinterpret_cast<const float4 *>(b + vi * 8);
        float4 wa = w4[0], wb = w4[1], ba = b4[0], bb = b4[1];
        const float wv[8] = {wa.x, wa.y, wa.z, wa.w, wb.x, wb.y, wb.z, wb.w};
        const float bv[8] = {ba.x, ba.y, ba.z, ba.w, bb.x, bb.y, bb.z, bb.w};
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = (x[i][e] - mean) * rstd * wv[e] + bv[e];
        uint4 u = row_pack(o);
        reinterpret_cast<uint4 *>(y)[vi] = u;
        if (keep) row_unpack(u, x[i]);
    }
}

// Embeddings + pre_layrnorm (vision.md §1.2 steps 1-4) and layer 0's
// layer_norm1: token 0 of a tile is the class embedding, token j the patch
// GEMM row j-1 (bf16, as the reference's conv output); plus the position
// embedding, rounded to bf16; pre_layrnorm's bf16 output starts the residual
// stream and its LayerNorm feeds layer 0's q/k/v.
__global__ void k_embed_ln(const bf16 *patch_out, const bf16 *cls, const bf16 *pos, const float *pre_w,
                           const float *pre_b, const float *ln_w, const float *ln_b, float eps, int n_tok, int dim,
                           int64_t rows, bf16 *resid, bf16 *xn) {
    const int lane = threadIdx.x & 31, nvec = dim / 8;
    const int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const int64_t t = row / n_tok;
    const int j = (int)(row % n_tok);
    float x[ROW_VECS][8], p[ROW_VECS][8];
    row_load(j == 0 ? cls : patch_out + (t * (n_tok - 1) + j - 1) * dim, nvec, lane, x);
    row_load(pos + (int64_t)j * dim, nvec, lane, p);
#pragma unroll
    for (int i = 0; i < ROW_VECS; i++)
#pragma unroll
        for (int e = 0; e < 8; e++) x[i][e] += p[i][e];
    row_round_store(x, nvec, lane, nullptr);
    row_ln_store(x, dim, nvec, lane, pre_w, pre_b, eps, resid + row * dim, true);
    row_ln_store(x, dim, nvec, lane, ln_w, ln_b, eps, xn + row * dim);
}

// bf16 residual -> LayerNorm -> bf16. The residual add itself is the GEMM's
// beta = 1 epilogue: cuBLASLt rounds out_proj/fc2 (+ bias) to bf16 before it
// adds the bf16 residual, so the sum is rounded twice as in the reference's
// `residual + hidden_states` (measured: the same bits as a separate add).
__global__ void k_layernorm(const bf16 *x_in, const float *w, const float *b, float eps, int dim, int64_t rows,
                            bf16 *y) {
    const int lane = threadIdx.x & 31, nvec = dim / 8;
    const int64_t row = blockIdx.x * (int64_t)(blockDim.x / 32) + threadIdx.x / 32;
    pdl_wait();
    pdl_trigger();
    if (row >= rows) return;
    float x[ROW_VECS][8];
    row_load(x_in + row * dim, nvec, lane, x);
    row_ln_store(x, dim, nvec, lane, w, b, eps, y + row * dim);
}

// Fused attention for head_dim 64 (FlashAttention-2 scheme): one CTA of NW
// warps takes BM = 16*MT*NW queries of one (tile, head), each warp MT m-tiles
// of 16 rows, so every K/V fragment read from shared memory feeds MT MMAs;
// K/V blocks of BN keys stream through NBUF shared-memory buffers with
// cp.async (with 3, one barrier per block: a buffer is refilled only after
// every warp has passed the barrier that follows its last use); QK^T and PV
// on the bf16 tensor cores (mma.sync m16n8k16) with fp32 accumulators; online
// softmax in fp32 (exp2 with the scale folded in). Only the last key block
// is partial, so only it pays for the key mask (TAIL).
// qkv: [tiles*ntok, 3*H*64] bf16 (q | k | v); out: [tiles*ntok, H*64] bf16.
// Bidirectional, no mask except the keys past ntok (vision.md §1.2 step 5).
constexpr int FA_D = 64, FA_LDS = FA_D + 8; // +16 B per row: no ldmatrix bank conflicts
template <int MT, int NW, int BN, int NBUF> constexpr int fa_smem() {
    return (16 * MT * NW + 2 * NBUF * BN) * FA_LDS * 2;
}

// One key block of BN keys (kvalid of them real) for MT m-tiles of one warp.
template <int MT, int BN, bool TAIL>
__device__ __forceinline__ void fa_block(const bf16 *bK, const bf16 *bV, int kvalid, int lane, float scale_log2,
                                         const uint32_t (&qf)[MT][4][4], float (&o)[MT][8][4], float (&mrow)[MT][2],
                                         float (&lrow)[MT][2]) {
    constexpr int NJ = BN / 8, NK = BN / 16;
    // S = Q K^T for this warp's rows x BN keys.
    float s[MT][NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; j++) {
        if (TAIL && j * 8 >= kvalid) {
#pragma unroll
            for (int mt = 0; mt < MT; mt++) s[mt][j][0] = s[mt][j][1] = s[mt][j][2] = s[mt][j][3] = -INFINITY;
            continue;
        }
#pragma unroll
        for (int half = 0; half < 2; half++) {
            uint32_t b0, b1, b2, b3;
            ldsm_x4(b0, b1, b2, b3, &bK[(j * 8 + (lane & 7)) * FA_LDS + half * 32 + (lane >> 3) * 8]);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint32_t *qa = qf[mt][2 * half], *qb = qf[mt][2 * half + 1];
                if (half == 0) mma_bf16_zero(s[mt][j], qa[0], qa[1], qa[2], qa[3], b0, b1);
                else mma_bf16(s[mt][j], qa[0], qa[1], qa[2], qa[3], b0, b1);
                mma_bf16(s[mt][j], qb[0], qb[1], qb[2], qb[3], b2, b3);
            }
        }
    }
    // Online softmax (log2 domain; the scale folded into the exponent).
    const int t4 = lane & 3;
    uint32_t pa[MT][NK][4]; // P as the A fragments of the k-steps of PV
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float mx0 = -INFINITY, mx1 = -INFINITY; // of the raw scores
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            if (TAIL)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    if (j * 8 + 2 * t4 + (e & 1) >= kvalid) s[mt][j][e] = -INFINITY;
            mx0 = fmaxf(mx0, fmaxf(s[mt][j][0], s[mt][j][1]));
            mx1 = fmaxf(mx1, fmaxf(s[mt][j][2], s[mt][j][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        // Every key block holds at least one real key, so mx is finite; mrow
        // holds the running maximum times the scale.
        mx0 = fmaxf(mrow[mt][0], mx0 * scale_log2), mx1 = fmaxf(mrow[mt][1], mx1 * scale_log2);
        const float a0 = ex2_ftz(mrow[mt][0] - mx0), a1 = ex2_ftz(mrow[mt][1] - mx1);
        mrow[mt][0] = mx0, mrow[mt][1] = mx1;
        float l0 = lrow[mt][0] * a0, l1 = lrow[mt][1] * a1;
#pragma unroll
        for (int j = 0; j < 8; j++) o[mt][j][0] *= a0, o[mt][j][1] *= a0, o[mt][j][2] *= a1, o[mt][j][3] *= a1;
#pragma unroll
        for (int j = 0; j < NJ; j++) {
            float p0 = ex2_ftz(fmaf(s[mt][j][0], scale_log2, -mx0)), p1 = ex2_ftz(fmaf(s[mt][j][1], scale_log2, -mx0));
            float p2 = ex2_ftz(fmaf(s[mt][j][2], scale_log2, -mx1)), p3 = ex2_ftz(fmaf(s[mt][j][3], scale_log2, -mx1));
            l0 += p0 + p1, l1 += p2 + p3;
            // the S accumulators of key tiles 2kk, 2kk+1 are the A fragment of k-step kk
            pa[mt][j >> 1][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
            pa[mt][j >> 1][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
        }
        lrow[mt][0] = l0, lrow[mt][1] = l1;
    }
    // O += P V
#pragma unroll
    for (int kk = 0; kk < NK; kk++) {
        if (TAIL && kk * 16 >= kvalid) continue;
#pragma unroll
        for (int dj = 0; dj < 8; dj += 2) {
            uint32_t b0, b1, b2, b3;
            ldsm_x4_t(b0, b1, b2, b3, &bV[(kk * 16 + (lane & 15)) * FA_LDS + dj * 8 + (lane >> 4) * 8]);
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                const uint32_t *a = pa[mt][kk];
                mma_bf16(o[mt][dj], a[0], a[1], a[2], a[3], b0, b1);
                mma_bf16(o[mt][dj + 1], a[0], a[1], a[2], a[3], b2, b3);
            }
        }
    }
}

template <int MT, int NW, int BN, int NBUF>
__global__ void __launch_bounds__(NW * 32, 2) k_flash_attn64(const bf16 *__restrict__ qkv, bf16 *__restrict__ out,
                                                          int ntok, int heads, float scale_log2) {
    static_assert(NBUF == 2 || NBUF == 3, "double or triple buffering");
    constexpr int BM = 16 * MT * NW, NTH = NW * 32;
    extern __shared__ __align__(16) bf16 fa_smem_buf[];
    bf16 *sQ = fa_smem_buf;                                      // [BM][FA_LDS]
    bf16 *sK = sQ + BM * FA_LDS, *sV = sK + NBUF * BN * FA_LDS; // [NBUF][BN][FA_LDS] each
    const int tile = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * BM;
    const int ld = 3 * heads * FA_D;
    const bf16 *base = qkv + (int64_t)tile * ntok * ld;
    const bf16 *Qg = base + h * FA_D, *Kg = base + (heads + h) * FA_D, *Vg = base + (2 * heads + h) * FA_D;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;

    for (int c = tid; c < BM * 8; c += NTH) {
        int r = c >> 3, col = (c & 7) * 8, gr = q0 + r;
        cp_async16(&sQ[r * FA_LDS + col], Qg + (int64_t)min(gr, ntok - 1) * ld + col, gr < ntok ? 16 : 0);
    }
    auto load_kv = [&](int kb, int buf) {
        for (int c = tid; c < BN * 8; c += NTH) {
            int r = c >> 3, col = (c & 7) * 8, gr = kb * BN + r;
            int64_t off = (int64_t)min(gr, ntok - 1) * ld + col;
            int bytes = gr < ntok ? 16 : 0; // zero-fill past the end: P is 0 there and V must not be NaN
            cp_async16(&sK[(buf * BN + r) * FA_LDS + col], Kg + off, bytes);
            cp_async16(&sV[(buf * BN + r) * FA_LDS + col], Vg + off, bytes);
        }
    };
    load_kv(0, 0);
    cp_async_commit();

    const int nkb = (ntok + BN - 1) / BN;
    uint32_t qf[MT][4][4];
    float o[MT][8][4];
    float mrow[MT][2], lrow[MT][2]; // rows g and g+8 of each m-tile
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
#pragma unroll
        for (int j = 0; j < 8; j++) o[mt][j][0] = o[mt][j][1] = o[mt][j][2] = o[mt][j][3] = 0.f;
        mrow[mt][0] = mrow[mt][1] = -INFINITY;
        lrow[mt][0] = lrow[mt][1] = 0.f;
    }
    // A warp whose rows all lie past ntok (577 = 4 x 128 + 65 queries at full
    // size) only loads.
    const bool idle = q0 + warp * MT * 16 >= ntok;
    for (int kb = 0; kb < nkb; kb++) {
        const int buf = kb % NBUF;
        if (kb + 1 < nkb) {
            load_kv(kb + 1, (kb + 1) % NBUF);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (!idle) {
            if (kb == 0) {
#pragma unroll
                for (int mt = 0; mt < MT; mt++)
#pragma unroll
                    for (int kk = 0; kk < 4; kk++)
                        ldsm_x4(qf[mt][kk][0], qf[mt][kk][1], qf[mt][kk][2], qf[mt][kk][3],
                                &sQ[((warp * MT + mt) * 16 + (lane & 15)) * FA_LDS + kk * 16 + (lane >> 4) * 8]);
            }
            const bf16 *bK = sK + buf * BN * FA_LDS, *bV = sV + buf * BN * FA_LDS;
            if (kb + 1 < nkb) fa_block<MT, BN, false>(bK, bV, BN, lane, scale_log2, qf, o, mrow, lrow);
            else fa_block<MT, BN, true>(bK, bV, ntok - kb * BN, lane, scale_log2, qf, o, mrow, lrow);
        }
        if (NBUF == 2) __syncthreads(); // this buffer is refilled by the next iteration's load
    }
    const int g = lane >> 2, t4 = lane & 3;
    bf16 *ob = out + (int64_t)tile * ntok * heads * FA_D + h * FA_D;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float l0 = lrow[mt][0], l1 = lrow[mt][1];
        l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
        l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
        l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
        const float i0 = 1.f / l0, i1 = 1.f / l1;
        const int r0 = q0 + (warp * MT + mt) * 16 + g, r1 = r0 + 8;
#pragma unroll
        for (int dj = 0; dj < 8; dj++) {
            int col = dj * 8 + 2 * t4;
            if (r0 < ntok)
                *reinterpret_cast<__nv_bfloat162 *>(ob + (int64_t)r0 * heads * FA_D + col) =
                    __floats2bfloat162_rn(o[mt][dj][0] * i0, o[mt][dj][1] * i0);
            if (r1 < ntok)
                *reinterpret_cast<__nv_bfloat162 *>(ob + (int64_t)r1 * heads * FA_D + col) =
                    __floats2bfloat162_rn(o[mt][dj][2] * i1, o[mt][dj][3] * i1);
        }
    }
}

// The shape in use (measured on an H100 at 64 tiles: 11.2 ms for the 24 layers
// against 11.6 with two buffers, 12.5 with 8 warps of one m-tile and 12.8
// with 128-key blocks).
constexpr int FA_MT = 2, FA_NW = 4, FA_BN = 64, FA_NBUF = 3, FA_BM = 16 * FA_MT * FA_NW;
constexpr int FA_SMEM = fa_smem<FA_MT, FA_NW, FA_BN, FA_NBUF>();

// Plain attention for other head sizes (the tiny test models): one thread
// per (query, head), fp32 online softmax over all keys.
__global__ void k_attn_generic(const bf16 *qkv, bf16 *out, int ntok, int heads, int d, int64_t tiles, float scale) {
    int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
    if (idx >= tiles * ntok * heads) return;
    int h = (int)(idx % heads);
    int64_t row = idx / heads, tile = row / ntok;
    const int ld = 3 * heads * d;
    const bf16 *q = qkv + row * ld + h * d;
    const bf16 *kbase = qkv + tile * ntok * ld + (heads + h) * d, *vbase = qkv + tile * ntok * ld + (2 * heads + h) * d;
    float acc[128], m = -INFINITY, l = 0.f;
    for (int e = 0; e < d; e++) acc[e] = 0.f;
    for (int j = 0; j < ntok; j++) {
        float s = 0.f;
        for (int e = 0; e < d; e++) s += __bfloat162float(q[e]) * __bfloat162float(kbase[(int64_t)j * ld + e]);
        s *= scale;
        float mn = fmaxf(m, s), a = expf(m - mn), p = expf(s - mn);
        l = l * a + p;
        for (int e = 0; e < d; e++) acc[e] = acc[e] * a + p * __bfloat162float(vbase[(int64_t)j * ld + e]);
        m = mn;
    }
    bf16 *o = out + row * heads * d + h * d;
    for (int e = 0; e < d; e++) o[e] = __float2bfloat16_rn(acc[e] / l);
}

// Final hidden state [n*ntok, V] -> features [n*(ntok-1), V] without the CLS
// token ("default" strategy, vision.md §1.3), as 16-byte vectors.
__global__ void k_select(const bf16 *resid, int ntok, int dim, int64_t total8, bf16 *feats) {
    const int d8 = dim / 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total8; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / d8;
        int c = (int)(i % d8);
        int64_t t = r / (ntok - 1), p = r % (ntok - 1);
        reinterpret_cast<uint4 *>(feats)[i] = reinterpret_cast<const uint4 *>(resid + (t * ntok + 1 + p) * dim)[c];
    }
}

// Packing of one image (vision.md §4.1): row q of the output is the
// thumbnail's q-th feature for q < g*g, then for each kept grid row its kept
// columns and image_newline. Rows copied as 16-byte vectors (D % 8 == 0).
__global__ void k_pack(const bf16 *proj, const bf16 *newline, int dim, int g, int cols, int64_t row0, int64_t col0,
                       int64_t kept_cols, int64_t n_out, bf16 *out) {
    int64_t q = blockIdx.x;
    if (q >= n_out) return;
    const bf16 *src;
    if (q < (int64_t)g * g) src = proj + q * dim;
    else {
        int64_t k = q - (int64_t)g * g, r = k / (kept_cols + 1), c = k % (kept_cols + 1);
        if (c == kept_cols) src = newline;
        else {
            int64_t y = row0 + r, x = col0 + c;
            int64_t tile = 1 + (y / g) * cols + x / g;
            src = proj + (tile * g * g + (y % g) * g + x % g) * dim;
        }
    }
    const uint4 *s4 = reinterpret_cast<const uint4 *>(src);
    uint4 *d4 = reinterpret_cast<uint4 *>(out + q * dim);
    for (int i = threadIdx.x; i < dim / 8; i += blockDim.x) d4[i] = s4[i];
}

} // namespace

mvl_status mvl_cuda_vit_attn_fa2(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads,
                                 float scale, mvl_error *err) {
    if (tiles < 1 || tiles > 65535 || ntok < 1 || heads < 1 || heads > 65535)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA ViT attention: %lld tiles x %d tokens x %d heads out of range",
                        (long long)tiles, ntok, heads);
    CUDA_CHECK(cudaFuncSetAttribute(k_flash_attn64<FA_MT, FA_NW, FA_BN, FA_NBUF>,
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, FA_SMEM));
    const dim3 grid((unsigned)((ntok + FA_BM - 1) / FA_BM), (unsigned)heads, (unsigned)tiles);
    k_flash_attn64<FA_MT, FA_NW, FA_BN, FA_NBUF><<<grid, FA_NW * 32, FA_SMEM, s>>>(qkv, out, ntok, heads,
                                                                                  scale * 1.4426950408889634f);
    LAUNCH_CHECK();
    return MVL_OK;
}

// Stages of a forward, as mvl_cuda_vit_profile reports them.
enum { ST_PATCHIFY, ST_PATCH_GEMM, ST_EMBED_LN, ST_QKV, ST_ATTN, ST_O, ST_LN, ST_FC1, ST_GELU, ST_FC2, ST_COUNT };
static const char *const stage_names[ST_COUNT] = {"patchify",  "patch_gemm", "embed_ln", "qkv_gemm", "attention",
                                                  "o_gemm",    "layernorm",  "fc1_gemm", "gelu",     "fc2_gemm"};

struct mvl_cuda_vit {
    mvl_vision_config cfg;
    int n_layers, grid, n_tok, kpad, max_tiles, dim_out;
    float eps;
    float3 mean, stdv;
    cudaStream_t stream = nullptr;
    mvl_cuda_gemm gemm;
    mvl_arena weights, act;
    uint8_t *host_tiles = nullptr; // pinned staging [max_tiles, S, S, 3]
    // weights (device)
    // Every parameter holds bf16 values, as the reference tower cast to bf16;
    // LayerNorm weights as fp32 copies of those values.
    bf16 *patch_w;       // [V, kpad]
    bf16 *cls, *pos;     // [V], [ntok, V]
    float *pre_w, *pre_b; // [V], [V]
    struct Layer {
        float *ln1_w, *ln1_b, *ln2_w, *ln2_b; // [V] each
        bf16 *qkv_w, *qkv_b;                  // [3V, V], [3V]
        bf16 *o_w, *o_b;                      // [V, V], [V]
        bf16 *fc1_w, *fc1_b;                  // [I, V], [I]
        bf16 *fc2_w, *fc2_b;                  // [V, I], [V]
    };
    std::vector<Layer> layers;
    bf16 *p1_w, *p1_b, *p2_w, *p2_b, *newline; // [D, V], [D], [D, D], [D], [D]
    // activations (device)
    uint8_t *tiles;   // [max_tiles, S, S, 3]
    bf16 *patches;    // [max_tiles*g*g, kpad]
    bf16 *resid;      // [max_tiles*ntok, V] residual stream
    bf16 *xn;         // [max_tiles*ntok, V] LayerNorm output; also the selected features
    bf16 *qkv;        // [max_tiles*ntok, 3V]
    bf16 *attn;       // [max_tiles*ntok, V]; also the patch GEMM's output
    bf16 *h1;         // [max_tiles*ntok, I]
    bf16 *proj1;      // [max_tiles*g*g, D]
    bf16 *proj2;      // [max_tiles*g*g, D]
    bf16 *packed;     // [max_tiles*(g*g+g), D]
    int64_t packed_cap;
    int last_n = 0;
    bool attn_sm90 = false; // head size 64 on the Hopper attention kernel (cuda_vit_attn_sm90.cu)
    bool gemm_sm90 = false; // q/k/v, fc1 and linear_1 (GELU fused) where the shape allows (cuda_gemm_sm90.cu)
    int sms = 0;            // the device's SMs
    // profiling: one event after each stage of a forward while prof_on
    bool prof_on = false;
    std::vector<cudaEvent_t> prof_ev;
    std::vector<int> prof_stage;
    size_t prof_n = 0;
};

namespace {

// y[m, n] (+)= x[m, k] . w[n, k]^T (+ bias[n]) on the backend's stream.
static mvl_status linear(mvl_cuda_vit *v, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                         const void *bias, void *y, int out_f32, int accumulate, mvl_error *err) {
    return mvl_cuda_linear(&v->gemm, v->stream, x, m, k, w, n, bias, y, out_f32, accumulate, err);
}

// ---- weight upload ---------------------------------------------------------------

struct Uploader {
    mvl_cuda_vit *v;
    const mvl_model_dir *md;
    std::vector<uint16_t> hb; // host staging
    std::vector<float> hf;
    mvl_error *err;

    mvl_status bf16_tensor(const char *name, int ndim, const int64_t *shape, int64_t pad_cols, bf16 **dst,
                           int64_t dst_off_elems, bf16 *into) {
        mvl_tensor_view tv;
        mvl_status st = mvl_cuda_tensor_get(md, "CUDA vision path", name, ndim, shape, &tv, err);
        if (st != MVL_OK) return st;
        int64_t rows = shape[0], cols = 1;
        for (int i = 1; i < ndim; i++) cols *= shape[i];
        if (ndim == 1) rows = 1, cols = shape[0];
        int64_t dcols = pad_cols > cols ? pad_cols : cols;
        hb.assign((size_t)(rows * dcols), 0);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                int64_t i = r * cols + c;
                uint16_t b;
                if (tv.dtype == MVL_DTYPE_BF16) memcpy(&b, (const char *)tv.data + 2 * i, 2);
                else b = mvl_f32_to_bf16_bits(mvl_view_get(&tv, i));
                hb[r * dcols + c] = b;
            }
        bf16 *d = into;
        if (!d) {
            d = (bf16 *)v->weights.take(hb.size() * 2);
            if (!d) return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: weight arena too small (internal)");
            *dst = d;
        }
        CUDA_CHECK(cudaMemcpy(d + dst_off_elems, hb.data(), hb.size() * 2, cudaMemcpyHostToDevice));
        return MVL_OK;
    }
    // fp32 copy of a tensor's values rounded to bf16.
    mvl_status f32_tensor(const char *name, int ndim, const int64_t *shape, float **dst) {
        mvl_tensor_view tv;
        mvl_status st = mvl_cuda_tensor_get(md, "CUDA vision path", name, ndim, shape, &tv, err);
        if (st != MVL_OK) return st;
        int64_t cnt = 1;
        for (int i = 0; i < ndim; i++) cnt *= shape[i];
        hf.resize((size_t)cnt);
        for (int64_t i = 0; i < cnt; i++) hf[i] = mvl_bf16_bits_to_f32(mvl_f32_to_bf16_bits(mvl_view_get(&tv, i)));
        float *d = (float *)v->weights.take(hf.size() * 4);
        if (!d) return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: weight arena too small (internal)");
        CUDA_CHECK(cudaMemcpy(d, hf.data(), hf.size() * 4, cudaMemcpyHostToDevice));
        *dst = d;
        return MVL_OK;
    }
};

static mvl_status upload(mvl_cuda_vit *v, const mvl_model_dir *md, mvl_error *err) {
    Uploader u{v, md, {}, {}, err};
    const int64_t V = v->cfg.hidden_size, I = v->cfg.intermediate_size, P = v->cfg.patch_size, D = v->dim_out;
    const char *vp = "vision_tower.vision_model.";
    char name[256];
    int64_t s1[1], s2[2], s4[4];
    s4[0] = V, s4[1] = 3, s4[2] = P, s4[3] = P;
    snprintf(name, sizeof name, "%sembeddings.patch_embedding.weight", vp);
    TRY(u.bf16_tensor(name, 4, s4, v->kpad, &v->patch_w, 0, nullptr));
    s1[0] = V;
    snprintf(name, sizeof name, "%sembeddings.class_embedding", vp);
    TRY(u.bf16_tensor(name, 1, s1, 0, &v->cls, 0, nullptr));
    s2[0] = v->n_tok, s2[1] = V;
    snprintf(name, sizeof name, "%sembeddings.position_embedding.weight", vp);
    TRY(u.bf16_tensor(name, 2, s2, 0, &v->pos, 0, nullptr));
    snprintf(name, sizeof name, "%spre_layrnorm.weight", vp);
    TRY(u.f32_tensor(name, 1, s1, &v->pre_w));
    snprintf(name, sizeof name, "%spre_layrnorm.bias", vp);
    TRY(u.f32_tensor(name, 1, s1, &v->pre_b));
    v->layers.resize(v->n_layers);
    for (int l = 0; l < v->n_layers; l++) {
        mvl_cuda_vit::Layer &L = v->layers[l];
        char p[160];
        snprintf(p, sizeof p, "%sencoder.layers.%d.", vp, l);
#define NM(suffix) (snprintf(name, sizeof name, "%s%s", p, suffix), name)
        s1[0] = V;
        TRY(u.f32_tensor(NM("layer_norm1.weight"), 1, s1, &L.ln1_w));
        TRY(u.f32_tensor(NM("layer_norm1.bias"), 1, s1, &L.ln1_b));
        TRY(u.f32_tensor(NM("layer_norm2.weight"), 1, s1, &L.ln2_w));
        TRY(u.f32_tensor(NM("layer_norm2.bias"), 1, s1, &L.ln2_b));
        // q, k, v stacked into one [3V, V] GEMM (and [3V] bias).
        L.qkv_w = (bf16 *)v->weights.take((size_t)3 * V * V * 2);
        L.qkv_b = (bf16 *)v->weights.take((size_t)3 * V * 2);
        if (!L.qkv_w || !L.qkv_b) return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: weight arena too small (internal)");
        const char *qkvn[3] = {"q_proj", "k_proj", "v_proj"};
        for (int i = 0; i < 3; i++) {
            char wn[64], bn[64];
            snprintf(wn, sizeof wn, "self_attn.%s.weight", qkvn[i]);
            snprintf(bn, sizeof bn, "self_attn.%s.bias", qkvn[i]);
            s2[0] = V, s2[1] = V;
            TRY(u.bf16_tensor(NM(wn), 2, s2, 0, nullptr, i * V * V, L.qkv_w));
            TRY(u.bf16_tensor(NM(bn), 1, s1, 0, nullptr, i * V, L.qkv_b));
        }
        s2[0] = V, s2[1] = V;
        TRY(u.bf16_tensor(NM("self_attn.out_proj.weight"), 2, s2, 0, &L.o_w, 0, nullptr));
        TRY(u.bf16_tensor(NM("self_attn.out_proj.bias"), 1, s1, 0, &L.o_b, 0, nullptr));
        s2[0] = I, s2[1] = V;
        TRY(u.bf16_tensor(NM("mlp.fc1.weight"), 2, s2, 0, &L.fc1_w, 0, nullptr));
        s1[0] = I;
        TRY(u.bf16_tensor(NM("mlp.fc1.bias"), 1, s1, 0, &L.fc1_b, 0, nullptr));
        s2[0] = V, s2[1] = I;
        TRY(u.bf16_tensor(NM("mlp.fc2.weight"), 2, s2, 0, &L.fc2_w, 0, nullptr));
        s1[0] = V;
        TRY(u.bf16_tensor(NM("mlp.fc2.bias"), 1, s1, 0, &L.fc2_b, 0, nullptr));
#undef NM
    }
    s2[0] = D, s2[1] = V;
    TRY(u.bf16_tensor("multi_modal_projector.linear_1.weight", 2, s2, 0, &v->p1_w, 0, nullptr));
    s1[0] = D;
    TRY(u.bf16_tensor("multi_modal_projector.linear_1.bias", 1, s1, 0, &v->p1_b, 0, nullptr));
    s2[0] = D, s2[1] = D;
    TRY(u.bf16_tensor("multi_modal_projector.linear_2.weight", 2, s2, 0, &v->p2_w, 0, nullptr));
    TRY(u.bf16_tensor("multi_modal_projector.linear_2.bias", 1, s1, 0, &v->p2_b, 0, nullptr));
    TRY(u.bf16_tensor("image_newline", 1, s1, 0, &v->newline, 0, nullptr));
    return MVL_OK;
}

static mvl_status init_run(mvl_cuda_vit *v, const mvl_model_dir *md, mvl_error *err) {
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: no CUDA GPU available: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&v->stream, cudaStreamNonBlocking));
    int wgmma = 0;
    TRY(mvl_cuda_has_wgmma(0, &wgmma, err));
    v->attn_sm90 = wgmma && v->cfg.hidden_size == FA_D * v->cfg.num_heads;
    v->gemm_sm90 = wgmma;
    TRY(mvl_cuda_sm_count(&v->sms, err));

    const int64_t V = v->cfg.hidden_size, I = v->cfg.intermediate_size, D = v->dim_out, P = v->cfg.patch_size;
    const int64_t S = v->cfg.image_size, G2 = (int64_t)v->grid * v->grid, NT = v->max_tiles;
    const int64_t T = NT * v->n_tok;
    // Weights: every tensor rounded up to the arena's alignment.
    size_t w = mvl_align256(V * v->kpad * 2) + mvl_align256(V * 2) + mvl_align256(v->n_tok * V * 2) + 2 * mvl_align256(V * 4);
    w += (size_t)v->n_layers * (4 * mvl_align256(V * 4) + mvl_align256(3 * V * V * 2) + mvl_align256(3 * V * 2) +
                                mvl_align256(V * V * 2) + mvl_align256(V * 2) + mvl_align256(I * V * 2) +
                                mvl_align256(I * 2) + mvl_align256(V * I * 2) + mvl_align256(V * 2));
    w += mvl_align256(D * V * 2) + mvl_align256(D * 2) + mvl_align256(D * D * 2) + 2 * mvl_align256(D * 2);
    v->packed_cap = NT * (G2 + v->grid);
    size_t a = mvl_align256(NT * S * S * 3) + mvl_align256(NT * G2 * v->kpad * 2) + 3 * mvl_align256(T * V * 2) +
               mvl_align256(T * 3 * V * 2) + mvl_align256(T * I * 2) + 2 * mvl_align256(NT * G2 * D * 2) +
               mvl_align256(v->packed_cap * D * 2);
    const size_t ws = 32u << 20; // cuBLASLt workspace
    size_t total = w + a + ws;
    e = cudaMalloc((void **)&v->weights.base, total);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaMemGetInfo(&fr, &tot);
        cudaGetLastError();
        return mvl_fail(err, MVL_ERR_DEVICE,
                        "CUDA vision: cannot allocate %.2f GiB on the GPU for %d tiles (%.2f GiB free of %.2f): %s",
                        total / 1073741824.0, v->max_tiles, fr / 1073741824.0, tot / 1073741824.0,
                        cudaGetErrorString(e));
    }
    v->weights.size = w;
    v->act.base = v->weights.base + w, v->act.size = a;
    TRY(mvl_cuda_gemm_init(&v->gemm, v->weights.base + w + a, ws, err));
    e = cudaMallocHost((void **)&v->host_tiles, (size_t)(NT * S * S * 3));
    if (e != cudaSuccess) {
        v->host_tiles = nullptr;
        return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: cannot pin %lld bytes of host memory: %s",
                        (long long)(NT * S * S * 3), cudaGetErrorString(e));
    }
    mvl_arena &A = v->act;
    v->tiles = (uint8_t *)A.take(NT * S * S * 3);
    v->patches = (bf16 *)A.take(NT * G2 * v->kpad * 2);
    v->resid = (bf16 *)A.take(T * V * 2);
    v->xn = (bf16 *)A.take(T * V * 2);
    v->qkv = (bf16 *)A.take(T * 3 * V * 2);
    // the accumulating Linears (out_proj, fc2) run after the attention has read qkv, so their plans time
    // cuBLASLt's candidates there (mvl_cuda_linear)
    v->gemm.tune_y = v->qkv, v->gemm.tune_size = (size_t)(T * 3 * V * 2);
    v->attn = (bf16 *)A.take(T * V * 2);
    v->h1 = (bf16 *)A.take(T * I * 2);
    v->proj1 = (bf16 *)A.take(NT * G2 * D * 2);
    v->proj2 = (bf16 *)A.take(NT * G2 * D * 2);
    v->packed = (bf16 *)A.take(v->packed_cap * D * 2);
    if (!v->packed) return mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: activation arena too small (internal)");
    (void)P;
    return upload(v, md, err);
}

// Stage boundaries of a profiled forward (mvl_cuda_vit_profile).
static mvl_status mark(mvl_cuda_vit *v, int stage, mvl_error *err) {
    if (!v->prof_on) return MVL_OK;
    if (v->prof_n == v->prof_ev.size()) {
        cudaEvent_t e;
        CUDA_CHECK(cudaEventCreate(&e));
        v->prof_ev.push_back(e);
        v->prof_stage.push_back(0);
    }
    CUDA_CHECK(cudaEventRecord(v->prof_ev[v->prof_n], v->stream));
    v->prof_stage[v->prof_n++] = stage;
    return MVL_OK;
}

// y = GELU(x . w^T + bias) with the Linear's output rounded to bf16 first:
// one kernel where the sm_90a GEMM takes the shape (the same bits as
// cuBLASLt + mvl_cuda_gelu: test_gpu_gemm_sm90), else those two. Profiled as
// ST_FC1 then ST_GELU.
static mvl_status linear_gelu(mvl_cuda_vit *v, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                              const bf16 *bias, bf16 *y, mvl_error *err) {
    if (v->gemm_sm90 && mvl_cuda_linear_sm90_ok(m, k, n)) {
        TRY(mvl_cuda_linear_sm90(v->stream, x, m, k, w, n, bias, y, MVL_EPI_GELU, err));
        return mark(v, ST_FC1, err);
    }
    TRY(linear(v, x, m, k, w, n, bias, y, 0, 0, err));
    TRY(mark(v, ST_FC1, err));
    TRY(mvl_cuda_gelu(v->stream, y, m * n, err));
    return mark(v, ST_GELU, err);
}

static mvl_status vit_enqueue(mvl_cuda_vit *v, int n, mvl_error *err) {
    if (n < 1 || n > v->max_tiles)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: %d tiles requested, the arena holds 1..%d", n, v->max_tiles);
    const int64_t V = v->cfg.hidden_size, I = v->cfg.intermediate_size, G2 = (int64_t)v->grid * v->grid;
    const int64_t T = (int64_t)n * v->n_tok, heads = v->cfg.num_heads, hd = V / heads;
    cudaStream_t s = v->stream;
    v->prof_n = 0;
    TRY(mark(v, -1, err));
    k_patchify<<<mvl_grid_for(n * G2 * v->kpad / 8, 256), 256, 0, s>>>(v->tiles, n, v->cfg.image_size, v->cfg.patch_size,
                                                                v->kpad, v->mean, v->stdv, v->patches);
    LAUNCH_CHECK();
    TRY(mark(v, ST_PATCHIFY, err));
    TRY(linear(v, v->patches, n * G2, v->kpad, v->patch_w, V, nullptr, v->attn, 0, 0, err));
    TRY(mark(v, ST_PATCH_GEMM, err));
    const int rows_per_block = 8, ln_blocks = (int)((T + rows_per_block - 1) / rows_per_block);
    k_embed_ln<<<ln_blocks, 32 * rows_per_block, 0, s>>>(v->attn, v->cls, v->pos, v->pre_w, v->pre_b,
                                                         v->layers[0].ln1_w, v->layers[0].ln1_b, v->eps, v->n_tok,
                                                         (int)V, T, v->resid, v->xn);
    LAUNCH_CHECK();
    TRY(mark(v, ST_EMBED_LN, err));
    const float scale = 1.0f / sqrtf((float)hd);
    auto layernorm = [&](const float *w, const float *b) { // resid -> xn
        return mvl_cuda_launch_pdl(k_layernorm, dim3(ln_blocks), dim3(32 * rows_per_block), 0, s, err, v->resid, w, b,
                                   v->eps, (int)V, T, v->xn);
    };
    for (int l = 0; l < v->n_layers; l++) {
        const mvl_cuda_vit::Layer &L = v->layers[l];
        // q, k, v: the sm_90a GEMM where it takes the shape and its persistent rounds are at least 90% full, else
        // cuBLASLt, which does better with a short last round (H100, BENCHMARKS.md session 11: alone, ms per call,
        // sm_90a against cuBLASLt at 8 tiles (rounds 86% full) 0.0495 against 0.0460, at 19 and 64 tiles (98%)
        // 0.0977 against 0.0994 and 0.320 against 0.328; in the forward, the 24 calls at 8 tiles 1.37-1.38 ms
        // against 1.24, at 1 tile (55%) 0.47-0.48 against 0.32)
        if (v->gemm_sm90 && mvl_cuda_linear_sm90_ok(T, V, 3 * V) &&
            mvl_cuda_linear_sm90_fill(T, 3 * V, v->sms) >= 0.9)
            TRY(mvl_cuda_linear_sm90(s, v->xn, T, V, L.qkv_w, 3 * V, L.qkv_b, v->qkv, MVL_EPI_NONE, err));
        else
            TRY(linear(v, v->xn, T, V, L.qkv_w, 3 * V, L.qkv_b, v->qkv, 0, 0, err));
        TRY(mark(v, ST_QKV, err));
        if (v->attn_sm90) {
            TRY(mvl_cuda_vit_attn_sm90(s, v->qkv, v->attn, n, v->n_tok, (int)heads, scale, err));
        } else if (hd == FA_D) {
            TRY(mvl_cuda_vit_attn_fa2(s, v->qkv, v->attn, n, v->n_tok, (int)heads, scale, err));
        } else {
            k_attn_generic<<<(int)((T * heads + 127) / 128), 128, 0, s>>>(v->qkv, v->attn, v->n_tok, (int)heads,
                                                                          (int)hd, n, scale);
        }
        LAUNCH_CHECK();
        TRY(mark(v, ST_ATTN, err));
        // out_proj + bias + residual (beta = 1), then layer_norm2
        TRY(linear(v, v->attn, T, V, L.o_w, V, L.o_b, v->resid, 0, 1, err));
        TRY(mark(v, ST_O, err));
        TRY(layernorm(L.ln2_w, L.ln2_b));
        TRY(mark(v, ST_LN, err));
        // fc1 + the exact GELU (vision.md §1.2): fused on Hopper, else a pass
        TRY(linear_gelu(v, v->xn, T, V, L.fc1_w, I, L.fc1_b, v->h1, err));
        // fc2 + bias + residual, then the next layer's layer_norm1
        TRY(linear(v, v->h1, T, I, L.fc2_w, V, L.fc2_b, v->resid, 0, 1, err));
        TRY(mark(v, ST_FC2, err));
        if (l + 1 < v->n_layers) {
            const mvl_cuda_vit::Layer &N = v->layers[l + 1];
            TRY(layernorm(N.ln1_w, N.ln1_b));
            TRY(mark(v, ST_LN, err));
        }
    }
    v->last_n = n;
    return MVL_OK;
}

static mvl_status stage_tiles(mvl_cuda_vit *v, const uint8_t *tiles, int n, mvl_error *err) {
    if (n < 1 || n > v->max_tiles)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: %d tiles requested, the arena holds 1..%d", n, v->max_tiles);
    size_t bytes = (size_t)n * v->cfg.image_size * v->cfg.image_size * 3;
    // Pinned staging so the copy runs at full PCIe speed.
    memcpy(v->host_tiles, tiles, bytes);
    CUDA_CHECK(cudaMemcpyAsync(v->tiles, v->host_tiles, bytes, cudaMemcpyHostToDevice, v->stream));
    return MVL_OK;
}

} // namespace

extern "C" mvl_status mvl_cuda_vit_init(const mvl_model_dir *md, int max_tiles, const float mean[3],
                                        const float std[3], mvl_cuda_vit **out, mvl_error *err) {
    *out = nullptr;
    const mvl_model_config *cfg = mvl_model_dir_config(md);
    const mvl_vision_config *vc = &cfg->vision;
    if (max_tiles < 1) return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: max_tiles must be at least 1");
    if (vc->hidden_size > 1024 || vc->hidden_size % 8 || vc->num_heads < 1 || vc->hidden_size % vc->num_heads ||
        vc->hidden_size / vc->num_heads > 128 || vc->image_size % vc->patch_size || vc->num_channels != 3)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED,
                        "%s: vision_config (hidden %d, heads %d, image %d, patch %d, channels %d) is outside what the "
                        "CUDA vision path supports (hidden <= 1024 and a multiple of 8, head_dim <= 128, 3 channels)",
                        mvl_model_dir_path(md), vc->hidden_size, vc->num_heads, vc->image_size, vc->patch_size,
                        vc->num_channels);
    if (cfg->text.hidden_size % 8)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: text hidden_size %d is not a multiple of 8",
                        mvl_model_dir_path(md), cfg->text.hidden_size);
    mvl_cuda_vit *v = new (std::nothrow) mvl_cuda_vit();
    if (!v) return mvl_fail(err, MVL_ERR_NOMEM, "CUDA vision: out of host memory");
    v->cfg = *vc;
    v->n_layers = cfg->vision_feature_layer + 1; // §1.3: layers after the selected one are not run
    v->grid = vc->image_size / vc->patch_size;
    v->n_tok = v->grid * v->grid + 1;
    v->kpad = (3 * vc->patch_size * vc->patch_size + 7) / 8 * 8; // 16-byte rows for cuBLASLt
    v->max_tiles = max_tiles;
    v->dim_out = cfg->text.hidden_size;
    v->eps = (float)vc->layer_norm_eps;
    v->mean = make_float3(mean[0], mean[1], mean[2]);
    v->stdv = make_float3(std[0], std[1], std[2]);
    mvl_status st = init_run(v, md, err);
    if (st != MVL_OK) {
        mvl_cuda_vit_free(v);
        return st;
    }
    *out = v;
    return MVL_OK;
}

extern "C" void mvl_cuda_vit_free(mvl_cuda_vit *v) {
    if (!v) return;
    if (v->stream) cudaStreamSynchronize(v->stream);
    mvl_cuda_gemm_free(&v->gemm);
    if (v->stream) cudaStreamDestroy(v->stream);
    cudaFree(v->weights.base);
    cudaFreeHost(v->host_tiles);
    for (cudaEvent_t e : v->prof_ev) cudaEventDestroy(e);
    delete v;
}

extern "C" mvl_status mvl_cuda_vit_forward_u8(mvl_cuda_vit *v, const uint8_t *tiles, int n, mvl_error *err) {
    TRY(stage_tiles(v, tiles, n, err));
    return vit_enqueue(v, n, err);
}

extern "C" mvl_status mvl_cuda_vit_forward_staged(mvl_cuda_vit *v, int n, mvl_error *err) {
    return vit_enqueue(v, n, err);
}

extern "C" mvl_status mvl_cuda_vit_hidden(mvl_cuda_vit *v, float *out, mvl_error *err) {
    size_t cnt = (size_t)v->last_n * v->n_tok * v->cfg.hidden_size;
    std::vector<uint16_t> h(cnt);
    CUDA_CHECK(cudaMemcpyAsync(h.data(), v->resid, cnt * 2, cudaMemcpyDeviceToHost, v->stream));
    CUDA_CHECK(cudaStreamSynchronize(v->stream));
    for (size_t i = 0; i < cnt; i++) out[i] = mvl_bf16_bits_to_f32(h[i]);
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_vit_encode(mvl_cuda_vit *v, const uint8_t *tiles, int n_images,
                                          const mvl_cuda_image *images, int64_t *n_tokens, mvl_error *err) {
    *n_tokens = 0;
    int n = 0;
    for (int i = 0; i < n_images; i++) {
        if (images[i].cols < 1 || images[i].rows < 1 || images[i].width < 1 || images[i].height < 1)
            return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: image %d has an empty size or tile grid", i);
        n += 1 + images[i].cols * images[i].rows;
        if (n > v->max_tiles)
            return mvl_fail(err, MVL_ERR_LIMIT, "CUDA vision: the batch needs more than the %d tiles the arena holds",
                            v->max_tiles);
    }
    if (tiles) TRY(stage_tiles(v, tiles, n, err));
    TRY(vit_enqueue(v, n, err));
    const int64_t V = v->cfg.hidden_size, G2 = (int64_t)v->grid * v->grid, D = v->dim_out, M = (int64_t)n * G2;
    k_select<<<mvl_grid_for(M * V / 8, 256), 256, 0, v->stream>>>(v->resid, v->n_tok, (int)V, M * V / 8, v->xn);
    LAUNCH_CHECK();
    // Projector (§2): token-wise on every tile, thumbnail included, before packing.
    TRY(linear_gelu(v, v->xn, M, V, v->p1_w, D, v->p1_b, v->proj1, err));
    TRY(linear(v, v->proj1, M, D, v->p2_w, D, v->p2_b, v->proj2, 0, 0, err));
    int64_t off = 0;
    int first = 0;
    for (int i = 0; i < n_images; i++) {
        const mvl_cuda_image *im = &images[i];
        mvl_pack_geom g;
        mvl_pack_geometry(im->width, im->height, im->cols, im->rows, v->grid, &g);
        int64_t cnt = mvl_pack_count(&g, v->grid);
        if (off + cnt > v->packed_cap)
            return mvl_fail(err, MVL_ERR_LIMIT, "CUDA vision: packed output exceeds its buffer (internal)");
        if (cnt > 0)
            k_pack<<<(unsigned)cnt, 128, 0, v->stream>>>(v->proj2 + (int64_t)first * G2 * D, v->newline, (int)D,
                                                         v->grid, im->cols, g.row0, g.col0, g.col1 - g.col0, cnt,
                                                         v->packed + off * D);
        LAUNCH_CHECK();
        off += cnt;
        first += 1 + im->cols * im->rows;
    }
    CUDA_CHECK(cudaStreamSynchronize(v->stream));
    *n_tokens = off;
    return MVL_OK;
}

extern "C" uint8_t *mvl_cuda_vit_staging(mvl_cuda_vit *v, void **stream) {
    *stream = v->stream;
    return v->tiles;
}

extern "C" const void *mvl_cuda_vit_packed(const mvl_cuda_vit *v, int *dim) {
    *dim = v->dim_out;
    return v->packed;
}

extern "C" mvl_status mvl_cuda_vit_packed_download(mvl_cuda_vit *v, int64_t n_tokens, float *out, mvl_error *err) {
    size_t cnt = (size_t)n_tokens * v->dim_out;
    std::vector<uint16_t> h(cnt);
    CUDA_CHECK(cudaMemcpyAsync(h.data(), v->packed, cnt * 2, cudaMemcpyDeviceToHost, v->stream));
    CUDA_CHECK(cudaStreamSynchronize(v->stream));
    for (size_t i = 0; i < cnt; i++) out[i] = mvl_bf16_bits_to_f32(h[i]);
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_vit_sync(mvl_cuda_vit *v, mvl_error *err) {
    CUDA_CHECK(cudaStreamSynchronize(v->stream));
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_vit_time(mvl_cuda_vit *v, int n, int iters, double *median_ms, mvl_error *err) {
    if (n < 1 || n > v->max_tiles)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: %d tiles requested, the arena holds 1..%d", n, v->max_tiles);
    TRY(mvl_cuda_fill_random_u8(v->stream, v->tiles, (int64_t)n * v->cfg.image_size * v->cfg.image_size * 3, 12345u,
                                err));
    for (int i = 0; i < 3; i++) TRY(vit_enqueue(v, n, err)); // warm-up: plans, module load
    cudaEvent_t e0, e1;
    CUDA_CHECK(cudaEventCreate(&e0));
    CUDA_CHECK(cudaEventCreate(&e1));
    std::vector<double> t;
    mvl_status st = MVL_OK;
    for (int i = 0; i < iters && st == MVL_OK; i++) {
        cudaEventRecord(e0, v->stream);
        st = vit_enqueue(v, n, err);
        cudaEventRecord(e1, v->stream);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        t.push_back(ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    if (st != MVL_OK) return st;
    CUDA_CHECK(cudaGetLastError());
    std::sort(t.begin(), t.end());
    *median_ms = t[t.size() / 2];
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_vit_profile(mvl_cuda_vit *v, int n, int iters, mvl_cuda_vit_stage *stages, int cap,
                                           int *count, double *total_ms, mvl_error *err) {
    *count = 0;
    if (n < 1 || n > v->max_tiles || iters < 1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA vision: %d tiles requested, the arena holds 1..%d", n, v->max_tiles);
    TRY(mvl_cuda_fill_random_u8(v->stream, v->tiles, (int64_t)n * v->cfg.image_size * v->cfg.image_size * 3, 12345u,
                                err));
    for (int i = 0; i < 3; i++) TRY(vit_enqueue(v, n, err));
    std::vector<std::vector<double>> per(ST_COUNT);
    std::vector<double> tot;
    int calls[ST_COUNT] = {0};
    v->prof_on = true;
    mvl_status st = MVL_OK;
    for (int it = 0; it < iters && st == MVL_OK; it++) {
        st = vit_enqueue(v, n, err);
        if (st != MVL_OK) break;
        cudaError_t e = cudaEventSynchronize(v->prof_ev[v->prof_n - 1]);
        if (e != cudaSuccess) {
            st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA vision: profiled forward failed: %s", cudaGetErrorString(e));
            break;
        }
        double sum[ST_COUNT] = {0};
        float all = 0;
        for (size_t i = 1; i < v->prof_n; i++) {
            float ms = 0;
            cudaEventElapsedTime(&ms, v->prof_ev[i - 1], v->prof_ev[i]);
            sum[v->prof_stage[i]] += ms;
            if (it == 0) calls[v->prof_stage[i]]++;
        }
        cudaEventElapsedTime(&all, v->prof_ev[0], v->prof_ev[v->prof_n - 1]);
        for (int c = 0; c < ST_COUNT; c++) per[c].push_back(sum[c]);
        tot.push_back(all);
    }
    v->prof_on = false;
    if (st != MVL_OK) return st;
    const double V = v->cfg.hidden_size, I = v->cfg.intermediate_size, G2 = (double)v->grid * v->grid;
    const double T = (double)n * v->n_tok, P = v->cfg.patch_size, S = v->cfg.image_size, L = v->n_layers;
    const double fl[ST_COUNT] = {0, 2 * n * G2 * 3 * P * P * V, 0, L * 2 * T * V * 3 * V,
                                 L * 4.0 * n * v->n_tok * v->n_tok * V, L * 2 * T * V * V, 0, L * 2 * T * V * I, 0,
                                 L * 2 * T * I * V};
    const double by[ST_COUNT] = {n * S * S * 3 + n * G2 * v->kpad * 2, 0, n * G2 * V * 2 + 2 * T * V * 2, 0, 0, 0,
                                 (2 * L - 1) * 2 * T * V * 2, 0, L * 2 * T * I * 2, 0};
    for (int c = 0; c < ST_COUNT && *count < cap; c++) {
        if (!calls[c]) continue;
        std::sort(per[c].begin(), per[c].end());
        stages[*count] = {stage_names[c], per[c][per[c].size() / 2], calls[c], fl[c], by[c]};
        ++*count;
    }
    std::sort(tot.begin(), tot.end());
    *total_ms = tot[tot.size() / 2];
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_gemm_ceiling(int m, int n, int k, int iters, double *tflops, mvl_error *err) {
    mvl_cuda_gemm g;
    cudaStream_t stream;
    mvl_status st = MVL_OK;
    bf16 *a = nullptr, *b = nullptr, *c = nullptr;
    void *ws = nullptr;
    const size_t ws_size = 32u << 20;
    CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMalloc(&ws, ws_size));
    CUDA_CHECK(cudaMalloc(&a, (size_t)m * k * 2));
    CUDA_CHECK(cudaMalloc(&b, (size_t)n * k * 2));
    CUDA_CHECK(cudaMalloc(&c, (size_t)m * n * 2));
    TRY(mvl_cuda_gemm_init(&g, ws, ws_size, err));
    TRY(mvl_cuda_fill_random_bf16(stream, a, (int64_t)m * k, 1u, 0.5f, err));
    TRY(mvl_cuda_fill_random_bf16(stream, b, (int64_t)n * k, 2u, 0.5f, err));
    std::vector<double> t;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < iters + 3 && st == MVL_OK; i++) {
        cudaEventRecord(e0, stream);
        st = mvl_cuda_linear(&g, stream, a, m, k, b, n, nullptr, c, 0, 0, err);
        cudaEventRecord(e1, stream);
        cudaEventSynchronize(e1);
        float ms = 0;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 3) t.push_back(ms);
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    mvl_cuda_gemm_free(&g);
    cudaFree(a), cudaFree(b), cudaFree(c), cudaFree(ws);
    cudaStreamDestroy(stream);
    if (st != MVL_OK) return st;
    std::sort(t.begin(), t.end());
    *tflops = 2.0 * m * n * k / (t[t.size() / 2] * 1e-3) / 1e12;
    return MVL_OK;
}
