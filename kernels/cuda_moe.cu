// The decoder's MoE block (decoder.md §6) and the small-batch Linear on the
// GPU; see cuda_dec_ops.cuh.
//
// Small-batch kernel ("skinny"): y = x W^T with few rows of x is bound by
// the bytes of W. Each warp takes 16 weight rows (one m16n8k16 m-tile; MT of
// them) and a slice of the reduction; the 8 warps of a block split the
// reduction of the same rows and add their partial sums in shared memory in a
// fixed order. A lane loads 16 bytes of each of its two rows (row g and g+8)
// straight from global memory into the mma A fragment and 16 bytes of its
// token's x row into the B fragment: the mma's k order is free as long as A and
// B agree, so lane (g, t) feeds elements 8t..8t+7 of a 32-wide chunk as the
// k-slots {2t, 2t+1, 2t+8, 2t+9} of two mma steps. Tokens are the mma's n
// dimension (8 per n-tile, NT n-tiles), so the weights are read once for up
// to 8 NT tokens and tensor cores do the arithmetic. Decode MoE runs the same
// kernel over token groups: grid row y is the y-th expert that has tokens.
#include <math.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "kernels/route_topk.h"

int mvl_cuda_moe_small_max = 64;

namespace {

constexpr int kWarps = 8, kThreads = kWarps * 32;
constexpr int kMaxSmallN = 64; // 8 n-tiles of 8 tokens
constexpr int kMaxE = 64, kMaxK = 8;
// The prefill GEMMs round each expert's row count up to a multiple of this
// (fewer cuBLASLt plans); the extra rows belong to later experts (whose GEMMs
// run afterwards and overwrite them) or to a pad at the end of the buffers.
constexpr int kPadRows = 16;

enum { EPI_STORE = 0, EPI_SWIGLU = 1 };

__device__ __forceinline__ float bf16r(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// 16 bytes, or zeros where `pred` is false (p is then not read). Predicated
// inside one asm block, so no branch keeps the compiler from issuing every
// load of a step before the first mma. Weights are read once: not kept in L1,
// 256-byte L2 fetches; activations are reread by other blocks: cached.
#define MVL_LD16_PRED(op)                                                                                              \
    "{\n .reg .pred q;\n setp.ne.b32 q, %5, 0;\n mov.b32 %0, 0;\n mov.b32 %1, 0;\n mov.b32 %2, 0;\n mov.b32 %3, 0;\n" \
    " @q " op " {%0, %1, %2, %3}, [%4];\n}\n"
__device__ __forceinline__ uint4 ld_weight(const bf16 *p, bool pred) {
    uint4 v;
    asm(MVL_LD16_PRED("ld.global.nc.L1::no_allocate.L2::256B.v4.u32")
        : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
        : "l"(p), "r"((int)pred));
    return v;
}
__device__ __forceinline__ uint4 ld_act(const bf16 *p, bool pred) {
    uint4 v;
    asm(MVL_LD16_PRED("ld.global.nc.v4.u32") : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p), "r"((int)pred));
    return v;
}
__device__ __forceinline__ uint4 ld_act(const bf16 *p) { return __ldg(reinterpret_cast<const uint4 *>(p)); }

// SwiGLU as the reference rounds it (ops.h mvl_op_swiglu with bf16): gate and
// up are bf16 GEMM outputs, silu(gate) is rounded, then the product.
__device__ __forceinline__ bf16 swiglu(float gate, float up) {
    gate = bf16r(gate);
    up = bf16r(up);
    return __float2bfloat16_rn(bf16r(gate / (1.0f + expf(-gate))) * up);
}

struct skinny_args {
    const bf16 *x;    // activations, rows of ldx elements
    int64_t ldx;
    const bf16 *w;    // weights [., C] (expert 0's when grouped)
    int64_t w_expert; // elements from one expert's weights to the next
    int C;            // reduction length, a multiple of 8
    int rows;         // output columns: R, or I for the gate/up row pairs of EPI_SWIGLU
    int n;            // plain: rows of x (tokens)
    // token groups (decode MoE): grid row y is the y-th expert with tokens;
    // NULL active: a plain Linear over n tokens, grid rows split the reduction
    const int *active, *n_active, *offsets, *perm;
    int x_div;      // grouped: x row of group position p is perm[p] / x_div, or p when 0
    void *y;        // output rows of ldy elements: token (plain) or group position (grouped)
    int64_t ldy;
    int out_f32;
    float *part;    // plain with gridDim.y > 1: fp32 partial sums [gridDim.y, n, rows]
};

// U chunks of 32 along the reduction: load everything first (U * (2 MT + NT)
// 16-byte loads in flight per lane), then the mma steps. klim = C - 8 tig:
// chunk offsets at or past it are outside the row (C is a multiple of 8, so a
// lane's 16 bytes are all in or all out).
template <int MT, int NT, int U>
__device__ __forceinline__ void mma_chunks(float (&acc)[MT][NT][4], const bf16 *const (&wr)[MT][2],
                                           const bf16 *const (&xr)[NT], int k, int klim, int ntiles) {
    uint4 wv[U][MT][2], xv[U][NT];
#pragma unroll
    for (int u = 0; u < U; u++) {
        const int kk = k + 32 * u;
        const bool in = kk < klim;
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int h = 0; h < 2; h++) wv[u][m][h] = ld_weight(wr[m][h] + kk, in && wr[m][h]);
#pragma unroll
        for (int t = 0; t < NT; t++) xv[u][t] = ld_act(xr[t] + kk, in && t < ntiles && xr[t]);
    }
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= ntiles) continue; // warp-uniform: n-tiles without tokens cost nothing
#pragma unroll
            for (int m = 0; m < MT; m++) {
                mma_bf16(acc[m][t], wv[u][m][0].x, wv[u][m][1].x, wv[u][m][0].y, wv[u][m][1].y, xv[u][t].x,
                         xv[u][t].y);
                mma_bf16(acc[m][t], wv[u][m][0].z, wv[u][m][1].z, wv[u][m][0].w, wv[u][m][1].w, xv[u][t].z,
                         xv[u][t].w);
            }
        }
}

// Block: 16 MT weight rows (EPI_SWIGLU: 16 gate rows and the 16 matching up
// rows) x all tokens of its group, 8 warps splitting the reduction.
template <int MT, int NT, int EPI>
__global__ void __launch_bounds__(kThreads, MT * NT >= 8 ? 1 : 2) k_skinny(const skinny_args a) {
    static_assert(EPI != EPI_SWIGLU || MT == 2, "SwiGLU pairs a gate and an up m-tile");
    constexpr int U = 12 / (2 * MT + NT) > 1 ? 12 / (2 * MT + NT) : 1;
    constexpr int VALS = NT * 128;                         // sums of one m-tile: 16 rows x 8 NT tokens
    constexpr int PER = (VALS + kThreads - 1) / kThreads; // of them per thread
    __shared__ __align__(16) float red[kWarps * VALS];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const bf16 *w = a.w;
    int base = 0, count = a.n;
    if (a.active) {
        if ((int)blockIdx.y >= *a.n_active) return; // experts nobody chose: no block, no bytes
        const int e = a.active[blockIdx.y];
        base = a.offsets[e];
        count = a.offsets[e + 1] - base;
        w += (int64_t)e * a.w_expert;
    }
    const int col0 = blockIdx.x * (EPI == EPI_SWIGLU ? 16 : 16 * MT);
    const bf16 *wr[MT][2];
#pragma unroll
    for (int m = 0; m < MT; m++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int col = col0 + (EPI == EPI_SWIGLU ? 0 : 16 * m) + g + 8 * h;
            const int64_t row = col + (EPI == EPI_SWIGLU ? (int64_t)m * a.rows : 0); // up rows follow the I gate rows
            wr[m][h] = col < a.rows ? w + row * a.C + 8 * tig : nullptr;
        }
    const int nc = (a.C + 31) >> 5;
    const int ks = a.active ? 1 : gridDim.y, kb = a.active ? 0 : blockIdx.y;
    const int cb0 = (int)((int64_t)nc * kb / ks), cb1 = (int)((int64_t)nc * (kb + 1) / ks);
    const int c0 = cb0 + (cb1 - cb0) * warp / kWarps, c1 = cb0 + (cb1 - cb0) * (warp + 1) / kWarps;
    const int klim = a.C - 8 * tig;

    for (int t0 = 0; t0 < count; t0 += 8 * NT) { // more tokens than 8 NT reread the weights
        const int ntiles = min(NT, (count - t0 + 7) >> 3);
        const bf16 *xr[NT];
#pragma unroll
        for (int t = 0; t < NT; t++) {
            const int j = t0 + 8 * t + g;
            const bf16 *p = nullptr;
            if (j < count) {
                const int64_t row = !a.active ? j : a.x_div ? a.perm[base + j] / a.x_div : base + j;
                p = a.x + row * a.ldx + 8 * tig;
            }
            xr[t] = p;
        }
        float acc[MT][NT][4];
#pragma unroll
        for (int m = 0; m < MT; m++)
#pragma unroll
            for (int t = 0; t < NT; t++)
#pragma unroll
                for (int i = 0; i < 4; i++) acc[m][t][i] = 0.f;
        int c = c0;
        for (; c + U <= c1; c += U) mma_chunks<MT, NT, U>(acc, wr, xr, 32 * c, klim, ntiles);
        for (; c < c1; c++) mma_chunks<MT, NT, 1>(acc, wr, xr, 32 * c, klim, ntiles);

        // Sum the warps' partials, in warp order (deterministic).
        float sum[MT][PER];
#pragma unroll
        for (int m = 0; m < MT; m++) {
#pragma unroll
            for (int t = 0; t < NT; t++)
                *reinterpret_cast<float4 *>(&red[warp * VALS + t * 128 + lane * 4]) =
                    make_float4(acc[m][t][0], acc[m][t][1], acc[m][t][2], acc[m][t][3]);
            __syncthreads();
#pragma unroll
            for (int q = 0; q < PER; q++) {
                const int i = threadIdx.x + q * kThreads;
                float s = 0.f;
                if (i < VALS)
#pragma unroll
                    for (int v = 0; v < kWarps; v++) s += red[v * VALS + i];
                sum[m][q] = s;
            }
            __syncthreads();
        }
        // Value i of an m-tile is the mma accumulator (n-tile i/128, lane, slot):
        // row g (+8 for slots 2, 3), token 2 tig (+1 for slots 1, 3).
#pragma unroll
        for (int q = 0; q < PER; q++) {
            const int i = threadIdx.x + q * kThreads;
            const int l = (i >> 2) & 31, j = i & 3;
            const int tok = t0 + 8 * (i >> 7) + 2 * (l & 3) + (j & 1);
            const int rin = (l >> 2) + 8 * (j >> 1);
            if (i >= VALS || tok >= count) continue;
            const int64_t orow = base + tok;
            if constexpr (EPI == EPI_SWIGLU) {
                const int col = col0 + rin;
                if (col < a.rows) static_cast<bf16 *>(a.y)[orow * a.ldy + col] = swiglu(sum[0][q], sum[MT - 1][q]);
            } else {
#pragma unroll
                for (int m = 0; m < MT; m++) {
                    const int col = col0 + 16 * m + rin;
                    if (col >= a.rows) continue;
                    if (a.part) a.part[((int64_t)kb * a.n + tok) * a.rows + col] = sum[m][q];
                    else if (a.out_f32) static_cast<float *>(a.y)[orow * a.ldy + col] = sum[m][q];
                    else static_cast<bf16 *>(a.y)[orow * a.ldy + col] = __float2bfloat16_rn(sum[m][q]);
                }
            }
        }
    }
}

int ntiles_for(int n) { return n <= 8 ? 1 : n <= 16 ? 2 : n <= 32 ? 4 : 8; }

template <int MT, int EPI>
mvl_status launch_skinny(int nt, dim3 grid, cudaStream_t s, const skinny_args &a, mvl_error *err) {
    switch (nt) {
    case 1: k_skinny<MT, 1, EPI><<<grid, kThreads, 0, s>>>(a); break;
    case 2: k_skinny<MT, 2, EPI><<<grid, kThreads, 0, s>>>(a); break;
    case 4: k_skinny<MT, 4, EPI><<<grid, kThreads, 0, s>>>(a); break;
    default: k_skinny<MT, 8, EPI><<<grid, kThreads, 0, s>>>(a); break;
    }
    LAUNCH_CHECK();
    return MVL_OK;
}

// Cached: the small-n Linear runs per decode step; an H100's count if the runtime cannot tell.
int sm_count() {
    static int sms = 0;
    mvl_error e;
    if (!sms && mvl_cuda_sm_count(&sms, &e) != MVL_OK) sms = 132;
    return sms;
}

// ---- routing (decoder.md §6) ---------------------------------------------------------

// Device views of the routing part of the scratch.
struct moe_route {
    int *idx;     // [n, k] chosen experts, largest probability first
    float *wt;    // [n, k] renormalised weights
    int *pos_of;  // [n, k] position of assignment t*k+j in the expert-sorted order
    int *perm;    // [n k] assignment at each sorted position
    int *counts;  // [E] tokens per expert
    int *cursor;  // [E] placement counters (prefill)
    int *offsets; // [E + 1] first sorted position of each expert
    int *active;  // [E] experts with tokens, ascending; n_active of them
    int *n_active;
    int *expert_count; // caller's [E] or NULL
};

// One token: logits (fp32 GEMM sums) rounded to bf16 as the reference's bf16
// Linear, softmax in fp32 (from double sums, as the CPU ops), the top k as
// torch.topk keeps them among equal probabilities (route_topk.h: the rule the
// CPU's bf16 mode follows, so both choose the same experts at ties), weights
// renormalised over the k.
__device__ void route_one(const float *lg, int E, int k, int *idx, float *wt) {
    float p[kMaxE];
    int a[kMaxE];
    float mx = -INFINITY;
    for (int e = 0; e < E; e++) mx = fmaxf(mx, bf16r(lg[e]));
    double sum = 0.0, total = 0.0;
    for (int e = 0; e < E; e++) sum += exp((double)bf16r(lg[e]) - mx);
    for (int e = 0; e < E; e++) p[e] = (float)(exp((double)bf16r(lg[e]) - mx) / sum);
    mvl_topk_torch_order(p, E, k, a);
    for (int j = 0; j < k; j++) total += p[a[j]];
    for (int j = 0; j < k; j++) idx[j] = a[j], wt[j] = (float)(p[a[j]] / total);
}

// Decode (n <= 64, E <= 64): the router's split sums, routing, per-expert
// counts and the expert-sorted order (tokens ascending within an expert) in
// one block.
__global__ void __launch_bounds__(kThreads) k_route_small(const float *part, int ks, int n, int E, int k,
                                                          moe_route r) {
    __shared__ float lg[kMaxSmallN * kMaxE];
    __shared__ int sidx[kMaxSmallN * kMaxK], cnt[kMaxE], off[kMaxE + 1];
    const int nk = n * k, tid = threadIdx.x;
    for (int i = tid; i < n * E; i += blockDim.x) {
        float s = 0.f;
        for (int q = 0; q < ks; q++) s += part[(int64_t)q * n * E + i];
        lg[i] = s;
    }
    __syncthreads();
    if (tid < n) {
        route_one(lg + tid * E, E, k, r.idx + tid * k, r.wt + tid * k);
        for (int j = 0; j < k; j++) sidx[tid * k + j] = r.idx[tid * k + j];
    }
    __syncthreads();
    if (tid < E) {
        int c = 0;
        for (int i = 0; i < nk; i++) c += sidx[i] == tid;
        cnt[tid] = c;
    }
    __syncthreads();
    if (tid == 0) {
        int o = 0, na = 0;
        for (int e = 0; e < E; e++) {
            off[e] = o;
            r.offsets[e] = o;
            if (cnt[e]) r.active[na++] = e;
            o += cnt[e];
        }
        off[E] = o;
        r.offsets[E] = o;
        *r.n_active = na;
    }
    __syncthreads();
    if (tid < E) {
        int p = off[tid];
        for (int i = 0; i < nk; i++)
            if (sidx[i] == tid) r.perm[p] = i, r.pos_of[i] = p++;
        r.counts[tid] = cnt[tid];
        if (r.expert_count) r.expert_count[tid] = cnt[tid];
    }
}

// Prefill: one thread per token; counts must be zero before.
__global__ void k_route_topk(const float *logits, int n, int E, int k, moe_route r) {
    for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < n; t += gridDim.x * blockDim.x) {
        route_one(logits + (int64_t)t * E, E, k, r.idx + (int64_t)t * k, r.wt + (int64_t)t * k);
        for (int j = 0; j < k; j++) atomicAdd(&r.counts[r.idx[(int64_t)t * k + j]], 1);
    }
}

__global__ void k_route_scan(int E, moe_route r) {
    int o = 0, na = 0;
    for (int e = 0; e < E; e++) {
        r.offsets[e] = o;
        r.cursor[e] = 0;
        if (r.counts[e]) r.active[na++] = e;
        if (r.expert_count) r.expert_count[e] = r.counts[e];
        o += r.counts[e];
    }
    r.offsets[E] = o;
    *r.n_active = na;
}

// Order within an expert follows the atomics; each row's result does not
// depend on where in its group it sits.
__global__ void k_route_place(int nk, moe_route r) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < nk; i += gridDim.x * blockDim.x) {
        const int e = r.idx[i], p = r.offsets[e] + atomicAdd(&r.cursor[e], 1);
        r.perm[p] = i;
        r.pos_of[i] = p;
    }
}

// xs[p] = u[token of sorted position p], 8 elements per step.
__global__ void k_gather(const bf16 *u, const int *perm, int64_t nk, int k, int H, bf16 *xs) {
    const int hv = H / 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nk * hv; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t p = i / hv, v = i % hv;
        reinterpret_cast<uint4 *>(xs)[p * hv + v] = ld_act(u + (int64_t)(perm[p] / k) * H + 8 * v);
    }
}

// act[r] = SwiGLU(h13[r, :I], h13[r, I:]).
__global__ void k_swiglu(const bf16 *h13, int64_t rows, int I, bf16 *act) {
    const int iv = I / 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * iv; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / iv, c = 8 * (i % iv);
        uint4 gv = ld_act(h13 + r * 2 * I + c), uv = ld_act(h13 + r * 2 * I + I + c), ov;
        const bf16 *gp = reinterpret_cast<const bf16 *>(&gv), *up = reinterpret_cast<const bf16 *>(&uv);
        bf16 *op = reinterpret_cast<bf16 *>(&ov);
#pragma unroll
        for (int j = 0; j < 8; j++) op[j] = swiglu(__bfloat162float(gp[j]), __bfloat162float(up[j]));
        *reinterpret_cast<uint4 *>(act + r * I + c) = ov;
    }
}

// y[t] = sum_j w_j o[pos_of[t k + j]]: bf16 expert outputs times fp32 weights,
// summed in fp32 in ascending expert order as the reference's index_add loop
// (no fused multiply-add: the reference rounds the product), one rounding.
__global__ void k_combine(const bf16 *o, moe_route r, int n, int k, int H, bf16 *y) {
    const int hv = H / 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < (int64_t)n * hv; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t t = i / hv, v = i % hv;
        float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
        int prev = -1;
        for (int step = 0; step < k; step++) {
            int j = -1;
            for (int q = 0; q < k; q++) {
                const int e = r.idx[t * k + q];
                if (e > prev && (j < 0 || e < r.idx[t * k + j])) j = q;
            }
            prev = r.idx[t * k + j];
            const float wj = r.wt[t * k + j];
            uint4 ov = ld_act(o + (int64_t)r.pos_of[t * k + j] * H + 8 * v);
            const bf16 *op = reinterpret_cast<const bf16 *>(&ov);
#pragma unroll
            for (int q = 0; q < 8; q++) acc[q] = __fadd_rn(acc[q], __fmul_rn(wj, __bfloat162float(op[q])));
        }
        uint4 yv;
        bf16 *yp = reinterpret_cast<bf16 *>(&yv);
#pragma unroll
        for (int q = 0; q < 8; q++) yp[q] = __float2bfloat16_rn(acc[q]);
        reinterpret_cast<uint4 *>(y)[t * hv + v] = yv;
    }
}

// ---- scratch -----------------------------------------------------------------------

// Router reduction split of the decode path: 8 chunks of 32 per block.
int router_splits(int H) { return std::min(32, std::max(1, ((H + 31) / 32 + kWarps - 1) / kWarps)); }

struct moe_layout {
    size_t idx, wt, pos_of, perm, meta, logits, buf_a, buf_b, total;
};

// idx first (tests read the chosen experts there). buf_a: the gathered rows
// (prefill), then the SwiGLU output; buf_b: the w13 output (prefill), then
// the expert outputs. Both have kPadRows rows past n k.
moe_layout moe_layout_for(int n, int H, int I, int E, int k) {
    moe_layout L;
    size_t off = 0;
    auto take = [&](size_t bytes) {
        size_t o = off;
        off = mvl_align256(off + bytes);
        return o;
    };
    const size_t nk = (size_t)n * k, rows = nk + kPadRows;
    L.idx = take(nk * 4);
    L.wt = take(nk * 4);
    L.pos_of = take(nk * 4);
    L.perm = take(nk * 4);
    L.meta = take((size_t)(4 * E + 2) * 4);
    L.logits = take(std::max((size_t)router_splits(H) * std::min(n, kMaxSmallN), (size_t)n) * E * 4);
    L.buf_a = take(rows * std::max(H, I) * 2);
    L.buf_b = take(rows * std::max(2 * I, H) * 2);
    L.total = off;
    return L;
}

} // namespace

size_t mvl_cuda_moe_scratch(int n, int H, int I, int E, int k) { return moe_layout_for(std::max(n, 1), H, I, E, k).total; }

mvl_status mvl_cuda_linear_small(cudaStream_t s, const bf16 *x, int n, int C, const bf16 *w, int R, void *y,
                                 int out_f32, mvl_error *err) {
    if (n < 0 || n > kMaxSmallN || C <= 0 || C % 8 || R <= 0 || ((uintptr_t)x | (uintptr_t)w) % 16)
        return mvl_fail(err, MVL_ERR_ARG,
                        "mvl_cuda_linear_small: n=%d C=%d R=%d: needs n <= %d, C a multiple of 8 and 16-byte aligned "
                        "x and w",
                        n, C, R, kMaxSmallN);
    if (n == 0) return MVL_OK;
    skinny_args a = {};
    a.x = x, a.ldx = C, a.w = w, a.C = C, a.rows = R, a.n = n, a.y = y, a.ldy = R, a.out_f32 = out_f32;
    const int nt = ntiles_for(n);
    // Two m-tiles per warp halve the activation reads once there are several
    // n-tiles, where the grid stays at two blocks per multiprocessor.
    if (nt >= 2 && R / 32 >= 2 * sm_count()) return launch_skinny<2, EPI_STORE>(nt, dim3((R + 31) / 32), s, a, err);
    return launch_skinny<1, EPI_STORE>(nt, dim3((R + 15) / 16), s, a, err);
}

mvl_status mvl_cuda_moe(mvl_cuda_gemm *g, cudaStream_t s, const mvl_cuda_moe_weights *w, const bf16 *u, int n, int H,
                        int I, int E, int k, bf16 *y, void *scratch, int *expert_count, mvl_error *err) {
    if (n < 0 || H <= 0 || I <= 0 || H % 8 || I % 8 || E < 1 || E > kMaxE || k < 1 || k > kMaxK || k > E ||
        k * 64 <= E) // route_one follows torch.topk's rule for k * 64 > E only
        return mvl_fail(err, MVL_ERR_ARG,
                        "mvl_cuda_moe: n=%d H=%d I=%d E=%d k=%d: needs H and I multiples of 8 and 1 <= k <= %d, "
                        "k <= E <= %d, k * 64 > E",
                        n, H, I, E, k, kMaxK, kMaxE);
    if (((uintptr_t)u | (uintptr_t)y | (uintptr_t)scratch | (uintptr_t)w->w13 | (uintptr_t)w->w2 |
         (uintptr_t)w->router) % 16)
        return mvl_fail(err, MVL_ERR_ARG, "mvl_cuda_moe: buffers must be 16-byte aligned");
    if (n == 0) return MVL_OK;
    const moe_layout L = moe_layout_for(n, H, I, E, k);
    char *sb = static_cast<char *>(scratch);
    int *meta = reinterpret_cast<int *>(sb + L.meta);
    moe_route r;
    r.idx = reinterpret_cast<int *>(sb + L.idx);
    r.wt = reinterpret_cast<float *>(sb + L.wt);
    r.pos_of = reinterpret_cast<int *>(sb + L.pos_of);
    r.perm = reinterpret_cast<int *>(sb + L.perm);
    r.counts = meta, r.cursor = meta + E, r.offsets = meta + 2 * E, r.active = meta + 3 * E + 1;
    r.n_active = meta + 4 * E + 1;
    r.expert_count = expert_count;
    float *logits = reinterpret_cast<float *>(sb + L.logits);
    bf16 *buf_a = reinterpret_cast<bf16 *>(sb + L.buf_a), *buf_b = reinterpret_cast<bf16 *>(sb + L.buf_b);
    const int64_t nk = (int64_t)n * k;

    if (n <= std::min(mvl_cuda_moe_small_max, kMaxSmallN)) {
        // Decode: router, routing, then each chosen expert's w13 (SwiGLU fused)
        // and w2 read once for all its tokens; no host sync, graph-capturable.
        // Experts get n k / E tokens on average: the grouped kernels take 32
        // tokens per pass (a larger group rereads its expert once per 32),
        // since 8 n-tiles cost registers and occupancy that 4 do not (n = 64,
        // full size: 4.7 ms with 8 n-tiles, slower than the prefill path).
        const int nt = ntiles_for(n), ntg = ntiles_for(std::min(n, 32)), ks = router_splits(H),
                  groups = (int)std::min<int64_t>(E, nk);
        skinny_args ra = {};
        ra.x = u, ra.ldx = H, ra.w = w->router, ra.C = H, ra.rows = E, ra.n = n, ra.part = logits;
        TRY((launch_skinny<1, EPI_STORE>(nt, dim3((E + 15) / 16, ks), s, ra, err)));
        k_route_small<<<1, kThreads, 0, s>>>(logits, ks, n, E, k, r);
        LAUNCH_CHECK();
        skinny_args ga = {};
        ga.x = u, ga.ldx = H, ga.w = w->w13, ga.w_expert = (int64_t)2 * I * H, ga.C = H, ga.rows = I;
        ga.active = r.active, ga.n_active = r.n_active, ga.offsets = r.offsets, ga.perm = r.perm, ga.x_div = k;
        ga.y = buf_a, ga.ldy = I;
        TRY((launch_skinny<2, EPI_SWIGLU>(ntg, dim3((I + 15) / 16, groups), s, ga, err)));
        skinny_args da = ga;
        da.x = buf_a, da.ldx = I, da.w = w->w2, da.w_expert = (int64_t)H * I, da.C = I, da.rows = H, da.x_div = 0;
        da.y = buf_b, da.ldy = H;
        TRY((launch_skinny<1, EPI_STORE>(ntg, dim3((H + 15) / 16, groups), s, da, err)));
    } else {
        // Prefill: sort the tokens by expert, one cuBLASLt GEMM per expert.
        if (!g) return mvl_fail(err, MVL_ERR_ARG, "mvl_cuda_moe: %d tokens take the GEMM path, which needs a cuBLASLt handle", n);
        cudaStreamCaptureStatus cs;
        CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
        if (cs != cudaStreamCaptureStatusNone)
            return mvl_fail(err, MVL_ERR_ARG,
                            "mvl_cuda_moe: %d tokens take the prefill path, which reads the expert counts on the host "
                            "and cannot be captured in a graph (at most %d tokens can)",
                            n, std::min(mvl_cuda_moe_small_max, kMaxSmallN));
        CUDA_CHECK(cudaMemsetAsync(r.counts, 0, (size_t)E * sizeof(int), s));
        TRY(mvl_cuda_linear(g, s, u, n, H, w->router, E, nullptr, logits, 1, 0, err));
        k_route_topk<<<mvl_grid_for(n, 128), 128, 0, s>>>(logits, n, E, k, r);
        LAUNCH_CHECK();
        k_route_scan<<<1, 1, 0, s>>>(E, r);
        LAUNCH_CHECK();
        k_route_place<<<mvl_grid_for(nk, 256), 256, 0, s>>>((int)nk, r);
        LAUNCH_CHECK();
        k_gather<<<mvl_grid_for(nk * H / 8, 256), 256, 0, s>>>(u, r.perm, nk, k, H, buf_a);
        LAUNCH_CHECK();
        std::vector<int> off(E + 1);
        CUDA_CHECK(cudaMemcpyAsync(off.data(), r.offsets, (E + 1) * sizeof(int), cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaStreamSynchronize(s));
        for (int e = 0; e < E; e++) {
            const int c = off[e + 1] - off[e], m = (c + kPadRows - 1) / kPadRows * kPadRows;
            if (c)
                TRY(mvl_cuda_linear(g, s, buf_a + (int64_t)off[e] * H, m, H, w->w13 + (int64_t)e * 2 * I * H, 2 * I,
                                    nullptr, buf_b + (int64_t)off[e] * 2 * I, 0, 0, err));
        }
        k_swiglu<<<mvl_grid_for(nk * I / 8, 256), 256, 0, s>>>(buf_b, nk, I, buf_a);
        LAUNCH_CHECK();
        for (int e = 0; e < E; e++) {
            const int c = off[e + 1] - off[e], m = (c + kPadRows - 1) / kPadRows * kPadRows;
            if (c)
                TRY(mvl_cuda_linear(g, s, buf_a + (int64_t)off[e] * I, m, I, w->w2 + (int64_t)e * H * I, H, nullptr,
                                    buf_b + (int64_t)off[e] * H, 0, 0, err));
        }
    }
    k_combine<<<mvl_grid_for((int64_t)n * H / 8, 256), 256, 0, s>>>(buf_b, r, n, k, H, y);
    LAUNCH_CHECK();
    return MVL_OK;
}
