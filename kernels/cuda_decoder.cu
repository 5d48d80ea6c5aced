// The text decoder on the GPU (kernels/): see cuda_decoder.h. This file holds
// the layer sequence, the weight upload, the slot bookkeeping, the graphs and
// the decoder's own small kernels (embedding, the fused residual + RMSNorm,
// the lightning output norm and gate, the sampler); the op families live in
// cuda_lightning.cu, cuda_attention.cu and cuda_moe.cu (cuda_dec_ops.cuh).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <new>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
extern "C" {
#include "text/decoder.h"
}
#include "kernels/cuda_decoder.h"

namespace {

constexpr float LIGHTNING_NORM_EPS = 1e-6f; // the remote code's default-eps RMSNorm (decoder.md §4.6)
// Up to this many rows a Linear takes mvl_cuda_linear_small; cuBLASLt is the
// faster one above (measured crossover, cuda_dec_ops.cuh).
constexpr int SMALL_ROWS = 16;
constexpr int LOGIT_CHUNK = 64;             // rows per lm_head call when every position's logits are asked for
constexpr int SAMPLE_THREADS = 1024;
constexpr size_t GEMM_WORKSPACE = 32u << 20;

// ---- kernels --------------------------------------------------------------------

__device__ __forceinline__ float bf(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it.
__device__ float block_sum(float v) {
    __shared__ float red[32];
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < (int)(blockDim.x >> 5) ? red[lane] : 0.f;
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Rows whose id is >= 0 take their embedding row; with img, a row whose id
// is -(k+1) takes image row k (the step's k-th row without an id: the
// masked_scatter of vision.md §4.4); without img the other rows were filled
// from the caller's host embeddings before. H % 8 == 0, rows 16-byte aligned.
__global__ void k_embed(const int *ids, const bf16 *embed, const bf16 *img, int H, int64_t n8, bf16 *h) {
    const int w8 = H / 8;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t row = i / w8;
        int id = ids[row];
        const bf16 *src = id >= 0 ? embed + (int64_t)id * H : img ? img + (int64_t)(-id - 1) * H : nullptr;
        if (src) reinterpret_cast<uint4 *>(h)[i] = reinterpret_cast<const uint4 *>(src)[i % w8];
    }
}

// The post-norm residual and the next RMSNorm in one pass (decoder.md §3):
// hs = bf16(bf16(alpha * res) + bf16(beta * a)) (hs = a when res is null: the
// first layer's input), then u = bf16(w * bf16(hs * r)) with
// r = 1 / sqrt(mean(hs^2) + eps) from fp32 statistics. One block per row;
// u may alias res (each element is read before it is written, by the same
// thread), hs may alias a.
__global__ void k_resid_norm(const bf16 *res, const bf16 *a, float alpha, float beta, const bf16 *w, float eps,
                             int H, bf16 *hs, bf16 *u) {
    const int64_t off = (int64_t)blockIdx.x * H;
    const int w8 = H / 8;
    float ss = 0.f;
    for (int c = threadIdx.x; c < w8; c += blockDim.x) {
        uint4 av = reinterpret_cast<const uint4 *>(a + off)[c], hv = av;
        const __nv_bfloat162 *ap = reinterpret_cast<const __nv_bfloat162 *>(&av);
        __nv_bfloat162 *hp = reinterpret_cast<__nv_bfloat162 *>(&hv);
        if (res) {
            uint4 rv = reinterpret_cast<const uint4 *>(res + off)[c];
            const __nv_bfloat162 *rp = reinterpret_cast<const __nv_bfloat162 *>(&rv);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 r = __bfloat1622float2(rp[k]), x = __bfloat1622float2(ap[k]);
                hp[k] = __floats2bfloat162_rn(bf(alpha * r.x) + bf(beta * x.x), bf(alpha * r.y) + bf(beta * x.y));
            }
        }
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 x = __bfloat1622float2(hp[k]);
            ss += x.x * x.x + x.y * x.y;
        }
        reinterpret_cast<uint4 *>(hs + off)[c] = hv;
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)H + eps);
    for (int c = threadIdx.x; c < w8; c += blockDim.x) {
        uint4 hv = reinterpret_cast<const uint4 *>(hs + off)[c], wv = reinterpret_cast<const uint4 *>(w)[c], uv;
        const __nv_bfloat162 *hp = reinterpret_cast<const __nv_bfloat162 *>(&hv);
        const __nv_bfloat162 *wp = reinterpret_cast<const __nv_bfloat162 *>(&wv);
        __nv_bfloat162 *up = reinterpret_cast<__nv_bfloat162 *>(&uv);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 x = __bfloat1622float2(hp[k]), g = __bfloat1622float2(wp[k]);
            up[k] = __floats2bfloat162_rn(bf(x.x * inv) * g.x, bf(x.y * inv) * g.y);
        }
        reinterpret_cast<uint4 *>(u + off)[c] = uv;
    }
}

// Lightning output (decoder.md §4.6), in place on x [rows, A]: one RMSNorm
// over all heads (eps 1e-6), y = bf16(w * bf16(x * r)), then the gate
// x = bf16(bf16(sigmoid(g)) * y) with g the bf16 output_gate GEMM.
__global__ void k_norm_gate(bf16 *x, const bf16 *w, const bf16 *g, float eps, int A) {
    const int64_t off = (int64_t)blockIdx.x * A;
    const int w8 = A / 8;
    float ss = 0.f;
    for (int c = threadIdx.x; c < w8; c += blockDim.x) {
        uint4 xv = reinterpret_cast<const uint4 *>(x + off)[c];
        const __nv_bfloat162 *xp = reinterpret_cast<const __nv_bfloat162 *>(&xv);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __bfloat1622float2(xp[k]);
            ss += f.x * f.x + f.y * f.y;
        }
    }
    ss = block_sum(ss);
    const float inv = 1.0f / sqrtf(ss / (float)A + eps);
    for (int c = threadIdx.x; c < w8; c += blockDim.x) {
        uint4 xv = reinterpret_cast<const uint4 *>(x + off)[c], wv = reinterpret_cast<const uint4 *>(w)[c];
        uint4 gv = reinterpret_cast<const uint4 *>(g + off)[c];
        __nv_bfloat162 *xp = reinterpret_cast<__nv_bfloat162 *>(&xv);
        const __nv_bfloat162 *wp = reinterpret_cast<const __nv_bfloat162 *>(&wv);
        const __nv_bfloat162 *gp = reinterpret_cast<const __nv_bfloat162 *>(&gv);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            float2 f = __bfloat1622float2(xp[k]), ww = __bfloat1622float2(wp[k]), gg = __bfloat1622float2(gp[k]);
            float y0 = bf(bf(f.x * inv) * ww.x), y1 = bf(bf(f.y * inv) * ww.y);
            float s0 = bf(1.0f / (1.0f + expf(-gg.x))), s1 = bf(1.0f / (1.0f + expf(-gg.y)));
            xp[k] = __floats2bfloat162_rn(s0 * y0, s1 * y1);
        }
        reinterpret_cast<uint4 *>(x + off)[c] = xv;
    }
}

// out[b] = rows[cu[b + 1] - 1]: each sequence's last position.
__global__ void k_gather_last(const bf16 *rows, const int *cu, int H, bf16 *out) {
    const int b = blockIdx.x;
    const uint4 *src = reinterpret_cast<const uint4 *>(rows + (int64_t)(cu[b + 1] - 1) * H);
    uint4 *dst = reinterpret_cast<uint4 *>(out + (int64_t)b * H);
    for (int c = threadIdx.x; c < H / 8; c += blockDim.x) dst[c] = src[c];
}

__global__ void k_fill_bf16(bf16 *p, int64_t n, float v) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16_rn(v);
}

// ---- sampling ---------------------------------------------------------------------
//
// One block per sequence over its V logits, without sorting: every cut the
// CPU sampler makes on the sorted list is a threshold on a 64-bit key that
// orders ids as its sort does (logit descending, then id ascending), found
// by a radix select (8 passes of a 256-bin histogram). Probabilities are
// exp(l/T - max/T) in 2^-40 fixed point, so the sums are exact integers and
// do not depend on the order of the atomics (decoder-independent results).

struct SampleParam {
    float temperature, top_p, min_p;
    int top_k;
    unsigned long long seed, counter;
};

__device__ __forceinline__ uint64_t sort_key(float l, int i) {
    uint32_t u = __float_as_uint(l);
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); // monotone in the float value
    return ((uint64_t)u << 32) | (uint32_t)~(uint32_t)i;
}
__device__ __forceinline__ uint64_t mix64(uint64_t z) { // splitmix64's finaliser
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

template <bool MAX> __device__ uint64_t block_reduce_u64(uint64_t v, uint64_t *sh) {
#pragma unroll
    for (int o = 16; o; o >>= 1) {
        uint64_t x = __shfl_xor_sync(0xffffffffu, (unsigned long long)v, o);
        v = MAX ? (x > v ? x : v) : v + x;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (threadIdx.x == 0) {
        uint64_t r = sh[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) r = MAX ? (sh[w] > r ? sh[w] : r) : r + sh[w];
        sh[32] = r;
    }
    __syncthreads();
    return sh[32];
}

// The largest key K such that the weights wf(i, key) of the ids with
// key >= K sum to at least need (the caller makes sure the total does).
template <class Wf>
__device__ uint64_t radix_select(const float *lg, int V, uint64_t need, Wf wf, unsigned long long *hist,
                                 uint64_t *sh) {
    uint64_t prefix = 0, mask = 0, above = 0;
    for (int shift = 56; shift >= 0; shift -= 8) {
        for (int i = threadIdx.x; i < 256; i += blockDim.x) hist[i] = 0;
        __syncthreads();
        for (int i = threadIdx.x; i < V; i += blockDim.x) {
            uint64_t key = sort_key(lg[i], i);
            if ((key & mask) != prefix) continue;
            uint64_t w = wf(i, key);
            if (w) atomicAdd(&hist[(key >> shift) & 255], (unsigned long long)w);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            uint64_t acc = above;
            int dg = 255;
            for (; dg > 0; dg--) {
                if (acc + hist[dg] >= need) break;
                acc += hist[dg];
            }
            sh[0] = prefix | ((uint64_t)dg << shift);
            sh[1] = acc;
        }
        __syncthreads();
        prefix = sh[0], above = sh[1];
        mask |= (uint64_t)255 << shift;
        __syncthreads();
    }
    return prefix;
}

__global__ void __launch_bounds__(SAMPLE_THREADS) k_sample(const float *logits, int V, const SampleParam *params,
                                                           int *out) {
    __shared__ unsigned long long hist[256];
    __shared__ uint64_t sh[33];
    const int b = blockIdx.x;
    const float *lg = logits + (int64_t)b * V;
    const SampleParam p = params[b];
    uint64_t mk = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
        uint64_t k = sort_key(lg[i], i);
        mk = k > mk ? k : mk;
    }
    mk = block_reduce_u64<true>(mk, sh);
    const int arg = (int)~(uint32_t)mk;
    if (!(p.temperature > 0.f)) { // greedy: the first maximum
        if (threadIdx.x == 0) out[b] = arg;
        return;
    }
    const float T = p.temperature, mT = lg[arg] / T;
    const double ONE = 1099511627776.0; // 2^40
    auto q_of = [&](int i) -> uint64_t { return (uint64_t)__double2ull_rn((double)expf(lg[i] / T - mT) * ONE); };
    // top-k: the k-th key in sorted order (ids past it are cut)
    uint64_t kk = 0;
    if (p.top_k > 0 && p.top_k < V)
        kk = radix_select(lg, V, (uint64_t)p.top_k, [&](int, uint64_t) -> uint64_t { return 1; }, hist, sh);
    uint64_t q = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x)
        if (sort_key(lg[i], i) >= kk) q += q_of(i);
    const uint64_t Q = block_reduce_u64<false>(q, sh);
    // top-p: the shortest prefix whose mass reaches top_p
    uint64_t kp = 0;
    if (p.top_p < 1.f) {
        uint64_t need = (uint64_t)ceil((double)p.top_p * (double)Q);
        need = need < 1 ? 1 : need > Q ? Q : need;
        kp = radix_select(lg, V, need, [&](int i, uint64_t key) -> uint64_t { return key >= kk ? q_of(i) : 0; },
                          hist, sh);
    }
    // min-p: p_i >= min_p * p_max, i.e. exp(l_i/T - max/T) >= min_p (the maximum always stays)
    const uint64_t lo = kk > kp ? kk : kp;
    const double minq = (double)p.min_p * ONE;
    auto kept = [&](int i, uint64_t key) -> uint64_t {
        if (key < lo) return 0;
        uint64_t w = q_of(i);
        return (i == arg || (double)w >= minq) ? w : 0;
    };
    uint64_t s = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) s += kept(i, sort_key(lg[i], i));
    const uint64_t S = block_reduce_u64<false>(s, sh);
    // the draw: the first id in sorted order whose running mass exceeds u * S
    const double u = (double)(mix64(p.seed ^ mix64(p.counter)) >> 11) * (1.0 / 9007199254740992.0);
    uint64_t t = (uint64_t)(u * (double)S);
    if (t >= S) t = S - 1;
    uint64_t pick = radix_select(lg, V, t + 1, kept, hist, sh);
    if (threadIdx.x == 0) out[b] = (int)~(uint32_t)pick;
}

// ---- layout -------------------------------------------------------------------------

// Lays the arena out twice: once with no base to size it, once for real.
struct Layout {
    char *base = nullptr;
    size_t used = 0;
    template <class T> T *take(size_t count) {
        size_t off = mvl_align256(used);
        used = off + count * sizeof(T);
        return base ? reinterpret_cast<T *>(base + off) : nullptr;
    }
};

} // namespace

struct mvl_cuda_dec {
    mvl_text_config cfg;
    mvl_cuda_dec_opts opts;
    int64_t H, A, KV, V, I, QKV; // hidden, heads*d, kv*d, vocab, expert width, widest qkv row
    int E, K, L, heads, kvh, d, max_b, logit_rows;
    cudaStream_t stream = nullptr;
    mvl_cuda_gemm gemm;
    char *mem = nullptr;
    size_t weight_bytes = 0, act_bytes = 0, state_bytes = 0;
    // weights (device, bf16 unless said)
    bf16 *embed, *lm_head, *final_norm; // [V, H], [V, H], [H]
    struct Layer {
        int type;
        float attn_alpha, attn_beta;
        bf16 *in_norm, *post_norm; // [H] each
        bf16 *qkv;                 // lightning [3A, H] (head-major q|k|v, §4.1); softmax [A + 2KV, H] (q | k | v)
        bf16 *gate, *norm, *out;   // lightning: [A, H], [A], [H, A]
        float *slopes;             // lightning: [heads] fp32 (§4.2)
        bf16 *o;                   // softmax: [H, A]
        bf16 *router, *w13, *w2;   // [E, H], [E, 2I, H] (w1 rows then w3 rows), [E, H, I]
        float *state;              // lightning: [slots, heads, d, d] fp32
        bf16 *k_cache, *v_cache;   // softmax: [slots, max_ctx, kv, d] each, post-RoPE keys
    };
    std::vector<Layer> layers;
    // activations (device)
    bf16 *h, *u, *a;     // [max_tokens, H]: residual stream, normed input, sublayer output
    bf16 *big;           // [max_tokens, QKV] qkv projection
    bf16 *att, *gate_y;  // [max_tokens, A]: attention output, output_gate GEMM
    bf16 *last_rows;     // [max_b, H] final-normed last rows
    float *logits;       // [logit_rows, V] fp32
    void *moe_scratch;
    float *attn_scratch; // [attn_scratch_floats]
    size_t attn_scratch_floats;
    int *meta;           // [3 * max_b + 1 + max_tokens]: cu_seqlens, pos0, slot, ids
    int *expert_count;   // [L, E]
    SampleParam *sample_params; // [max_b]
    int *sample_ids;            // [max_b]
    void *gemm_ws;              // cuBLASLt workspace
    // host
    int *hmeta = nullptr;             // pinned mirror of meta
    SampleParam *hparams = nullptr;   // pinned [max_b]
    int *hids = nullptr;              // pinned [max_b]
    cudaEvent_t meta_done = nullptr;  // the last meta upload has left hmeta
    std::vector<int64_t> len;         // [max_slots] positions consumed
    std::vector<char> seen;           // [max_slots] step validation scratch
    std::vector<int> ones;            // [max_b] all 1: a decode step's n_new
    std::vector<uint16_t> stage;      // embeddings converted to bf16
    std::vector<cudaGraphExec_t> graphs; // [max_b + 1] decode step per batch size
    int last_b = 0;
    bool profiling = false;
    std::vector<cudaEvent_t> ev;      // [L + 3] stage boundaries
    int *cu() const { return meta; }
    int *pos0() const { return meta + max_b + 1; }
    int *slot() const { return meta + 2 * max_b + 1; }
    int *ids() const { return meta + 3 * max_b + 1; }
};

namespace {

typedef mvl_cuda_dec Dec;

static void carve(Dec *d, Layout &lo) {
    const int64_t H = d->H, A = d->A, KV = d->KV, V = d->V, I = d->I, E = d->E, T = d->opts.max_tokens;
    const int64_t slots = d->opts.max_slots, cap = d->opts.max_ctx;
    d->embed = lo.take<bf16>(V * H);
    d->lm_head = lo.take<bf16>(V * H);
    d->final_norm = lo.take<bf16>(H);
    for (auto &L : d->layers) {
        L.in_norm = lo.take<bf16>(H);
        L.post_norm = lo.take<bf16>(H);
        L.router = lo.take<bf16>(E * H);
        L.w13 = lo.take<bf16>(E * 2 * I * H);
        L.w2 = lo.take<bf16>(E * H * I);
        if (L.type == MVL_LAYER_LIGHTNING) {
            L.qkv = lo.take<bf16>(3 * A * H);
            L.gate = lo.take<bf16>(A * H);
            L.norm = lo.take<bf16>(A);
            L.out = lo.take<bf16>(H * A);
            L.slopes = lo.take<float>(d->heads);
        } else {
            L.qkv = lo.take<bf16>((A + 2 * KV) * H);
            L.o = lo.take<bf16>(H * A);
        }
    }
    d->weight_bytes = mvl_align256(lo.used);
    d->h = lo.take<bf16>(T * H);
    d->u = lo.take<bf16>(T * H);
    d->a = lo.take<bf16>(T * H);
    d->big = lo.take<bf16>(T * d->QKV);
    d->att = lo.take<bf16>(T * A);
    d->gate_y = lo.take<bf16>(T * A);
    d->last_rows = lo.take<bf16>(d->max_b * H);
    d->logits = lo.take<float>((size_t)d->logit_rows * V);
    d->moe_scratch = lo.take<char>(mvl_cuda_moe_scratch((int)T, (int)H, (int)I, d->E, d->K));
    d->attn_scratch = lo.take<float>(d->attn_scratch_floats);
    d->meta = lo.take<int>(3 * d->max_b + 1 + T);
    d->expert_count = lo.take<int>((size_t)d->L * E);
    d->sample_params = lo.take<SampleParam>(d->max_b);
    d->sample_ids = lo.take<int>(d->max_b);
    d->gemm_ws = lo.take<char>(GEMM_WORKSPACE);
    d->act_bytes = mvl_align256(lo.used) - d->weight_bytes;
    for (auto &L : d->layers) {
        if (L.type == MVL_LAYER_LIGHTNING) {
            L.state = lo.take<float>(slots * d->heads * d->d * d->d);
        } else {
            L.k_cache = lo.take<bf16>(slots * cap * KV);
            L.v_cache = lo.take<bf16>(slots * cap * KV);
        }
    }
    d->state_bytes = mvl_align256(lo.used) - d->weight_bytes - d->act_bytes;
}

// Checks the config against what the kernels take and allocates everything.
static mvl_status dec_create(const mvl_text_config *c, const mvl_cuda_dec_opts *opts, const char *what, Dec **out,
                             mvl_error *err) {
    *out = nullptr;
    if (!opts || opts->max_slots < 1 || opts->max_ctx < 1 || opts->max_tokens < 1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: max_slots, max_ctx and max_tokens must be at least 1");
    if (c->num_layers < 1 || c->num_layers > MVL_MAX_LAYERS || c->hidden_size % 8 || c->head_dim % 8 ||
        c->num_heads < 1 || c->num_kv_heads < 1 || c->num_heads % c->num_kv_heads || c->intermediate_size % 8 ||
        c->experts_per_tok < 1 || c->experts_per_tok > c->num_experts || c->rotary_dim % 2 ||
        c->rotary_dim > c->head_dim || c->vocab_size < 1)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED,
                        "%s: text config (hidden %d, heads %d/%d of %d, experts %d top-%d of width %d, rotary %d) is "
                        "outside what the CUDA decoder takes (hidden, head_dim and expert width multiples of 8, heads "
                        "a multiple of kv heads, even rotary_dim <= head_dim)",
                        what, c->hidden_size, c->num_heads, c->num_kv_heads, c->head_dim, c->num_experts,
                        c->experts_per_tok, c->intermediate_size, c->rotary_dim);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0)
        return mvl_fail(err, MVL_ERR_DEVICE, "CUDA decoder: no CUDA GPU available: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    Dec *d = new (std::nothrow) Dec();
    if (!d) return mvl_fail(err, MVL_ERR_NOMEM, "CUDA decoder: out of host memory");
    *out = d;
    d->cfg = *c;
    d->opts = *opts;
    d->H = c->hidden_size, d->heads = c->num_heads, d->kvh = c->num_kv_heads, d->d = c->head_dim;
    d->A = (int64_t)d->heads * d->d, d->KV = (int64_t)d->kvh * d->d, d->V = c->vocab_size;
    d->I = c->intermediate_size, d->E = c->num_experts, d->K = c->experts_per_tok, d->L = c->num_layers;
    d->QKV = std::max(3 * d->A, d->A + 2 * d->KV);
    d->max_b = std::min(opts->max_slots, opts->max_tokens);
    d->logit_rows = std::max(d->max_b, LOGIT_CHUNK);
    d->attn_scratch_floats = 0; // the split plan depends on the batch: the most any batch size needs
    for (int b = 1; b <= d->max_b; b++)
        d->attn_scratch_floats =
            std::max(d->attn_scratch_floats, mvl_cuda_attention_scratch(b, opts->max_ctx, d->heads, d->d));
    d->layers.resize(d->L);
    for (int l = 0; l < d->L; l++) {
        Dec::Layer &L = d->layers[l];
        L = Dec::Layer{};
        L.type = c->layer_types[l];
        L.attn_alpha = (float)c->attn_alpha[L.type];
        L.attn_beta = (float)c->attn_beta[L.type];
    }
    d->len.assign(opts->max_slots, 0);
    d->seen.assign(opts->max_slots, 0);
    d->ones.assign(d->max_b, 1);
    d->graphs.assign(d->max_b + 1, nullptr);

    CUDA_CHECK(cudaSetDevice(0));
    CUDA_CHECK(cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaEventCreateWithFlags(&d->meta_done, cudaEventDisableTiming));
    d->ev.assign(d->L + 3, nullptr);
    for (auto &x : d->ev) CUDA_CHECK(cudaEventCreate(&x));
    Layout lo;
    carve(d, lo);
    const size_t total = mvl_align256(lo.used);
    e = cudaMalloc((void **)&d->mem, total);
    if (e != cudaSuccess) {
        d->mem = nullptr;
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return mvl_fail(err, MVL_ERR_DEVICE,
                        "CUDA decoder: cannot allocate %.2f GiB on the GPU (weights %.2f GiB, activations for %d rows "
                        "%.2f GiB, %d slots of %d positions %.2f GiB; %.2f GiB free of %.2f): %s",
                        total / 1073741824.0, d->weight_bytes / 1073741824.0, opts->max_tokens,
                        d->act_bytes / 1073741824.0, opts->max_slots, opts->max_ctx, d->state_bytes / 1073741824.0,
                        fr / 1073741824.0, tot / 1073741824.0, cudaGetErrorString(e));
    }
    lo = Layout{};
    lo.base = d->mem;
    carve(d, lo);
    TRY(mvl_cuda_gemm_init(&d->gemm, d->gemm_ws, GEMM_WORKSPACE, err));
    CUDA_CHECK(cudaMemset(d->mem + d->weight_bytes + d->act_bytes, 0, d->state_bytes));
    const size_t meta_n = 3 * (size_t)d->max_b + 1 + opts->max_tokens;
    CUDA_CHECK(cudaMallocHost((void **)&d->hmeta, meta_n * sizeof(int)));
    CUDA_CHECK(cudaMallocHost((void **)&d->hparams, d->max_b * sizeof(SampleParam)));
    CUDA_CHECK(cudaMallocHost((void **)&d->hids, d->max_b * sizeof(int)));
    return MVL_OK;
}

// ---- weight upload ----------------------------------------------------------------------

struct Uploader {
    Dec *d;
    const mvl_model_dir *md;
    mvl_error *err;
    std::vector<uint16_t> hb;

    // Tensor `name` of shape [d0] or [d0, d1] as bf16 at dst.
    mvl_status put(bf16 *dst, int ndim, int64_t d0, int64_t d1, const char *fmt, int a = 0, int b = 0) {
        char name[256];
        snprintf(name, sizeof name, fmt, a, b);
        int64_t shape[2] = {d0, d1};
        mvl_tensor_view tv;
        TRY(mvl_cuda_tensor_get(md, "CUDA decoder", name, ndim, shape, &tv, err));
        const int64_t n = ndim == 1 ? d0 : d0 * d1;
        hb.resize((size_t)n);
        if (tv.dtype == MVL_DTYPE_BF16) memcpy(hb.data(), tv.data, (size_t)n * 2);
        else
            for (int64_t i = 0; i < n; i++) hb[i] = mvl_f32_to_bf16_bits(mvl_view_get(&tv, i));
        CUDA_CHECK(cudaMemcpy(dst, hb.data(), (size_t)n * 2, cudaMemcpyHostToDevice));
        return MVL_OK;
    }
};

#define TP "language_model.model."
#define LP TP "layers.%d."

static mvl_status upload(Dec *d, const mvl_model_dir *md, mvl_error *err) {
    Uploader up{d, md, err, {}};
    const int64_t H = d->H, A = d->A, KV = d->KV, V = d->V, I = d->I;
    TRY(up.put(d->embed, 2, V, H, TP "embed_tokens.weight"));
    TRY(up.put(d->final_norm, 1, H, 0, TP "norm.weight"));
    TRY(up.put(d->lm_head, 2, V, H, "language_model.lm_head.weight"));
    std::vector<float> slopes(d->heads);
    for (int l = 0; l < d->L; l++) {
        Dec::Layer &L = d->layers[l];
        TRY(up.put(L.in_norm, 1, H, 0, LP "input_layernorm.weight", l));
        TRY(up.put(L.post_norm, 1, H, 0, LP "post_attention_layernorm.weight", l));
        TRY(up.put(L.router, 2, d->E, H, LP "block_sparse_moe.gate.weight", l));
        if (L.type == MVL_LAYER_LIGHTNING) {
            TRY(up.put(L.qkv, 2, 3 * A, H, LP "self_attn.qkv_proj.weight", l));
            TRY(up.put(L.gate, 2, A, H, LP "self_attn.output_gate.weight", l));
            TRY(up.put(L.norm, 1, A, 0, LP "self_attn.norm.weight", l));
            TRY(up.put(L.out, 2, H, A, LP "self_attn.out_proj.weight", l));
            mvl_lightning_slopes(d->heads, l, d->L, slopes.data());
            CUDA_CHECK(cudaMemcpy(L.slopes, slopes.data(), slopes.size() * 4, cudaMemcpyHostToDevice));
        } else { // q | k | v stacked into one [A + 2KV, H] GEMM
            TRY(up.put(L.qkv, 2, A, H, LP "self_attn.q_proj.weight", l));
            TRY(up.put(L.qkv + A * H, 2, KV, H, LP "self_attn.k_proj.weight", l));
            TRY(up.put(L.qkv + (A + KV) * H, 2, KV, H, LP "self_attn.v_proj.weight", l));
            TRY(up.put(L.o, 2, H, A, LP "self_attn.o_proj.weight", l));
        }
        for (int e = 0; e < d->E; e++) { // w13[e] = [w1; w3]
            bf16 *w13 = L.w13 + (int64_t)e * 2 * I * H;
            TRY(up.put(w13, 2, I, H, LP "block_sparse_moe.experts.%d.w1.weight", l, e));
            TRY(up.put(w13 + I * H, 2, I, H, LP "block_sparse_moe.experts.%d.w3.weight", l, e));
            TRY(up.put(L.w2 + (int64_t)e * H * I, 2, H, I, LP "block_sparse_moe.experts.%d.w2.weight", l, e));
        }
    }
    return MVL_OK;
}

#undef LP
#undef TP

static mvl_status fill_random(Dec *d, uint32_t seed, mvl_error *err) {
    cudaStream_t s = d->stream;
    const int64_t H = d->H, A = d->A, KV = d->KV, V = d->V, I = d->I, E = d->E;
    uint32_t k = seed * 7919u;
    auto rnd = [&](bf16 *p, int64_t n, int64_t fan_in) {
        return mvl_cuda_fill_random_bf16(s, p, n, k++, sqrtf(3.0f / (float)fan_in), err); // variance 1/fan_in
    };
    auto ones = [&](bf16 *p, int64_t n) -> mvl_status {
        k_fill_bf16<<<mvl_grid_for(n, 256), 256, 0, s>>>(p, n, 1.0f);
        LAUNCH_CHECK();
        return MVL_OK;
    };
    TRY(rnd(d->embed, V * H, 3)); // uniform in [-1, 1)
    TRY(rnd(d->lm_head, V * H, H));
    TRY(ones(d->final_norm, H));
    std::vector<float> slopes(d->heads);
    for (int l = 0; l < d->L; l++) {
        Dec::Layer &L = d->layers[l];
        TRY(ones(L.in_norm, H));
        TRY(ones(L.post_norm, H));
        TRY(rnd(L.router, E * H, H));
        TRY(rnd(L.w13, E * 2 * I * H, H));
        TRY(rnd(L.w2, E * H * I, I));
        if (L.type == MVL_LAYER_LIGHTNING) {
            TRY(rnd(L.qkv, 3 * A * H, H));
            TRY(rnd(L.gate, A * H, H));
            TRY(ones(L.norm, A));
            TRY(rnd(L.out, H * A, A));
            mvl_lightning_slopes(d->heads, l, d->L, slopes.data());
            CUDA_CHECK(cudaMemcpy(L.slopes, slopes.data(), slopes.size() * 4, cudaMemcpyHostToDevice));
        } else {
            TRY(rnd(L.qkv, (A + 2 * KV) * H, H));
            TRY(rnd(L.o, H * A, A));
        }
    }
    CUDA_CHECK(cudaStreamSynchronize(s));
    return MVL_OK;
}

// ---- the step ---------------------------------------------------------------------------

// y[m, n] = x[m, k] . w[n, k]^T: the bandwidth-bound kernel for few rows, cuBLASLt otherwise.
static mvl_status linear(Dec *d, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, void *y, int out_f32,
                         mvl_error *err) {
    if (m <= SMALL_ROWS) return mvl_cuda_linear_small(d->stream, x, (int)m, (int)k, w, (int)n, y, out_f32, err);
    return mvl_cuda_linear(&d->gemm, d->stream, x, m, k, w, n, nullptr, y, out_f32, 0, err);
}

static int row_threads(int64_t width) { // threads for a one-row-per-block kernel over width/8 vectors
    int64_t t = (width / 8 + 31) / 32 * 32;
    return (int)std::min<int64_t>(std::max<int64_t>(t, 32), 256);
}

static mvl_status resid_norm(Dec *d, const bf16 *res, const bf16 *a, float alpha, float beta, const bf16 *w, int T,
                             mvl_error *err) {
    k_resid_norm<<<T, row_threads(d->H), 0, d->stream>>>(res, a, alpha, beta, w, (float)d->cfg.rms_norm_eps,
                                                         (int)d->H, d->h, d->u);
    LAUNCH_CHECK();
    return MVL_OK;
}

// Copies the residual stream rows [T, H] into out (host float32).
static mvl_status download_rows(Dec *d, const bf16 *src, int64_t T, float *out, mvl_error *err) {
    const size_t n = (size_t)(T * d->H);
    std::vector<uint16_t> tmp(n);
    CUDA_CHECK(cudaMemcpyAsync(tmp.data(), src, n * 2, cudaMemcpyDeviceToHost, d->stream));
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    for (size_t i = 0; i < n; i++) out[i] = mvl_bf16_bits_to_f32(tmp[i]);
    return MVL_OK;
}

// Enqueues layers [first, last) and, when last is the end, the last-row
// logits of a step whose meta is on the device. max_ctx bounds every
// sequence's context (its cache length after the step); graph: being
// captured (no events, no host copies).
static mvl_status enqueue_step(Dec *d, int B, int T, int max_len, int max_ctx, int first, int last, const bf16 *img,
                               float *hidden, bool graph, mvl_error *err) {
    cudaStream_t s = d->stream;
    const int64_t H = d->H, A = d->A;
    const bool prof = d->profiling && !graph;
    if (prof) CUDA_CHECK(cudaEventRecord(d->ev[0], s));
    k_embed<<<mvl_grid_for((int64_t)T * H / 8, 256), 256, 0, s>>>(d->ids(), d->embed, img, (int)H,
                                                                   (int64_t)T * H / 8, d->h);
    LAUNCH_CHECK();
    if (hidden) TRY(download_rows(d, d->h, T, hidden, err));
    TRY(resid_norm(d, nullptr, d->h, 0.f, 1.f, first < d->L ? d->layers[first].in_norm : d->final_norm, T, err));
    if (prof) CUDA_CHECK(cudaEventRecord(d->ev[1], s));
    for (int l = first; l < last; l++) {
        const Dec::Layer &L = d->layers[l];
        if (L.type == MVL_LAYER_LIGHTNING) { // §4
            TRY(linear(d, d->u, T, H, L.qkv, 3 * A, d->big, 0, err)); // raw; the kernels apply SiLU (§4.1)
            if (max_len == 1)
                TRY(mvl_cuda_lightning_decode(s, d->big, B, d->slot(), d->heads, d->d, L.slopes, L.state, d->att,
                                              err));
            else
                TRY(mvl_cuda_lightning_prefill(s, d->big, d->cu(), B, max_len, d->slot(), d->heads, d->d, L.slopes,
                                               L.state, d->att, err));
            TRY(linear(d, d->u, T, H, L.gate, A, d->gate_y, 0, err)); // the gate reads u, not the attention (§4.6)
            k_norm_gate<<<T, row_threads(A), 0, s>>>(d->att, L.norm, d->gate_y, LIGHTNING_NORM_EPS, (int)A);
            LAUNCH_CHECK();
            TRY(linear(d, d->att, T, A, L.out, H, d->a, 0, err));
        } else { // §5
            TRY(linear(d, d->u, T, H, L.qkv, A + 2 * d->KV, d->big, 0, err));
            TRY(mvl_cuda_rope_append_kv(s, d->big, T, d->cu(), B, d->pos0(), d->slot(), d->heads, d->kvh, d->d,
                                        d->cfg.rotary_dim, (float)d->cfg.rope_theta, L.k_cache, L.v_cache,
                                        d->opts.max_ctx, err));
            TRY(mvl_cuda_attention(s, d->big, T, d->cu(), B, max_len, d->pos0(), max_ctx, d->slot(), d->heads,
                                   d->kvh, d->d, 1.0f / sqrtf((float)d->d), L.k_cache, L.v_cache, d->opts.max_ctx,
                                   d->att, d->attn_scratch, err));
            TRY(linear(d, d->att, T, A, L.o, H, d->a, 0, err));
        }
        // post-norm: the residual is the normed input u (§3)
        TRY(resid_norm(d, d->u, d->a, L.attn_alpha, L.attn_beta, L.post_norm, T, err));
        mvl_cuda_moe_weights mw = {L.router, L.w13, L.w2};
        TRY(mvl_cuda_moe(&d->gemm, s, &mw, d->u, T, (int)H, (int)d->I, d->E, d->K, d->a, d->moe_scratch,
                         d->expert_count + (size_t)l * d->E, err));
        const bf16 *next = l + 1 < d->L ? d->layers[l + 1].in_norm : d->final_norm;
        TRY(resid_norm(d, d->u, d->a, (float)d->cfg.mlp_alpha, (float)d->cfg.mlp_beta, next, T, err));
        if (hidden) TRY(download_rows(d, d->h, T, hidden + (size_t)(l - first + 1) * T * H, err));
        if (prof) CUDA_CHECK(cudaEventRecord(d->ev[2 + l], s));
    }
    if (last < d->L) return MVL_OK;
    // d->u now holds the final-normed rows (§7)
    const bf16 *z = d->u;
    if (T != B) {
        k_gather_last<<<B, row_threads(H), 0, s>>>(d->u, d->cu(), (int)H, d->last_rows);
        LAUNCH_CHECK();
        z = d->last_rows;
    }
    TRY(linear(d, z, B, H, d->lm_head, d->V, d->logits, 1, err));
    if (prof) CUDA_CHECK(cudaEventRecord(d->ev[d->L + 2], s));
    return MVL_OK;
}

// Validates a step, fills the pinned meta and uploads it. Returns the row
// count, the longest new run and the longest context after the step. Rows
// without an id take host embeddings (have_embeds), or with image_rows >= 0
// the next of that many device image rows: their meta id is -(k+1) for the
// k-th (k_embed).
static mvl_status prepare(Dec *d, int B, const int *slot, const int *n_new, const int32_t *ids, bool have_embeds,
                          int64_t image_rows, int *T_out, int *max_len_out, int *max_ctx_out, mvl_error *err) {
    if (B < 1 || B > d->max_b)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: %d sequences in a step; this decoder takes 1..%d", B,
                        d->max_b);
    std::vector<char> &seen = d->seen;
    std::fill(seen.begin(), seen.end(), 0);
    int64_t T = 0;
    int max_len = 0, max_ctx = 0;
    for (int b = 0; b < B; b++) {
        if (slot[b] < 0 || slot[b] >= d->opts.max_slots || seen[slot[b]])
            return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: sequence %d: slot %d is out of range (0..%d) or repeated",
                            b, slot[b], d->opts.max_slots - 1);
        seen[slot[b]] = 1;
        if (n_new[b] < 1)
            return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: sequence %d has %d new positions", b, n_new[b]);
        if (d->len[slot[b]] + n_new[b] > d->opts.max_ctx)
            return mvl_fail(err, MVL_ERR_LIMIT, "CUDA decoder: slot %d would hold %lld positions; max_ctx is %d",
                            slot[b], (long long)(d->len[slot[b]] + n_new[b]), d->opts.max_ctx);
        T += n_new[b];
        if (T > d->opts.max_tokens)
            return mvl_fail(err, MVL_ERR_LIMIT, "CUDA decoder: the step has more than max_tokens = %d rows",
                            d->opts.max_tokens);
        max_len = std::max(max_len, n_new[b]);
        max_ctx = std::max(max_ctx, (int)d->len[slot[b]] + n_new[b]);
    }
    int64_t no_id = 0;
    for (int64_t i = 0; i < T; i++) {
        int id = ids ? ids[i] : -1;
        if (id >= d->V)
            return mvl_fail(err, MVL_ERR_ARG,
                            "CUDA decoder: token id %d at row %lld is outside the vocabulary (0..%lld)", id,
                            (long long)i, (long long)d->V - 1);
        if (id < 0 && !have_embeds && ++no_id > image_rows)
            return mvl_fail(err, MVL_ERR_ARG,
                            "CUDA decoder: row %lld has no token id and no embedding (%lld image rows given)",
                            (long long)i, (long long)(image_rows > 0 ? image_rows : 0));
    }
    CUDA_CHECK(cudaEventSynchronize(d->meta_done)); // the previous upload has read hmeta
    int *cu = d->hmeta, *pos0 = cu + d->max_b + 1, *sl = cu + 2 * d->max_b + 1, *hid = cu + 3 * d->max_b + 1;
    cu[0] = 0;
    for (int b = 0; b < B; b++) {
        cu[b + 1] = cu[b] + n_new[b];
        pos0[b] = (int)d->len[slot[b]];
        sl[b] = slot[b];
    }
    for (int64_t i = 0, k = 0; i < T; i++) {
        int id = ids ? ids[i] : -1;
        hid[i] = id >= 0 || image_rows < 0 ? id : (int)-(++k);
    }
    CUDA_CHECK(cudaMemcpyAsync(d->meta, d->hmeta, (size_t)(3 * d->max_b + 1 + T) * sizeof(int), cudaMemcpyHostToDevice,
                               d->stream));
    CUDA_CHECK(cudaEventRecord(d->meta_done, d->stream));
    *T_out = (int)T, *max_len_out = max_len, *max_ctx_out = max_ctx;
    return MVL_OK;
}

static mvl_status download_last(Dec *d, int B, float *out, mvl_error *err) {
    CUDA_CHECK(cudaMemcpyAsync(out, d->logits, (size_t)B * d->V * sizeof(float), cudaMemcpyDeviceToHost, d->stream));
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    return MVL_OK;
}

} // namespace

extern "C" mvl_status mvl_cuda_dec_init(const mvl_model_dir *md, const mvl_cuda_dec_opts *opts, mvl_cuda_dec **out,
                                        mvl_error *err) {
    *out = nullptr;
    Dec *d = nullptr;
    mvl_status st = dec_create(&mvl_model_dir_config(md)->text, opts, mvl_model_dir_path(md), &d, err);
    if (st == MVL_OK) st = upload(d, md, err);
    if (st != MVL_OK) {
        mvl_cuda_dec_free(d);
        return st;
    }
    *out = d;
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_dec_init_random(const mvl_text_config *cfg, const mvl_cuda_dec_opts *opts,
                                               uint32_t seed, mvl_cuda_dec **out, mvl_error *err) {
    *out = nullptr;
    Dec *d = nullptr;
    mvl_status st = dec_create(cfg, opts, "random decoder", &d, err);
    if (st == MVL_OK) st = fill_random(d, seed, err);
    if (st != MVL_OK) {
        mvl_cuda_dec_free(d);
        return st;
    }
    *out = d;
    return MVL_OK;
}

extern "C" void mvl_cuda_dec_free(mvl_cuda_dec *d) {
    if (!d) return;
    if (d->stream) cudaStreamSynchronize(d->stream);
    for (auto g : d->graphs)
        if (g) cudaGraphExecDestroy(g);
    mvl_cuda_gemm_free(&d->gemm);
    for (auto e : d->ev)
        if (e) cudaEventDestroy(e);
    if (d->meta_done) cudaEventDestroy(d->meta_done);
    if (d->stream) cudaStreamDestroy(d->stream);
    cudaFree(d->mem);
    cudaFreeHost(d->hmeta);
    cudaFreeHost(d->hparams);
    cudaFreeHost(d->hids);
    delete d;
}

extern "C" const mvl_text_config *mvl_cuda_dec_config(const mvl_cuda_dec *d) { return &d->cfg; }

extern "C" void mvl_cuda_dec_memory(const mvl_cuda_dec *d, size_t *weights, size_t *activations, size_t *state) {
    *weights = d->weight_bytes, *activations = d->act_bytes, *state = d->state_bytes;
}

extern "C" mvl_status mvl_cuda_dec_reset(mvl_cuda_dec *d, int slot, mvl_error *err) {
    if (slot < 0 || slot >= d->opts.max_slots)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: slot %d is out of range (0..%d)", slot, d->opts.max_slots - 1);
    const size_t dd = (size_t)d->heads * d->d * d->d;
    for (auto &L : d->layers)
        if (L.type == MVL_LAYER_LIGHTNING)
            CUDA_CHECK(cudaMemsetAsync(L.state + (size_t)slot * dd, 0, dd * sizeof(float), d->stream));
    d->len[slot] = 0; // the KV rows past the length are never read
    return MVL_OK;
}

extern "C" int64_t mvl_cuda_dec_length(const mvl_cuda_dec *d, int slot) {
    return slot >= 0 && slot < d->opts.max_slots ? d->len[slot] : -1;
}

extern "C" mvl_status mvl_cuda_dec_forward(mvl_cuda_dec *d, const mvl_cuda_dec_step *step, mvl_error *err) {
    const int first = step->first_layer, last = step->last_layer ? step->last_layer : d->L;
    if (first < 0 || first > last || last > d->L || (first == last && last < d->L) ||
        (last < d->L && (step->logits || step->last_logits)) || (d->profiling && (first || last < d->L)))
        return mvl_fail(err, MVL_ERR_ARG,
                        "CUDA decoder: layer range %d..%d of %d (logits and profiling need the whole range)",
                        step->first_layer, step->last_layer, d->L);
    if (step->embeds && step->image_rows)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: a step takes host embeds or device image rows, not both");
    if (step->image_rows && step->n_image_rows < 1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: image_rows given with n_image_rows = %lld",
                        (long long)step->n_image_rows);
    int T, max_len, max_ctx;
    TRY(prepare(d, step->n_seq, step->slot, step->n_new, step->ids, step->embeds != nullptr,
                step->image_rows ? step->n_image_rows : -1, &T, &max_len, &max_ctx, err));
    const int B = step->n_seq;
    if (step->embeds) { // rows without an id: the caller's embeddings in bf16 (inputs_embeds in the model dtype)
        const int64_t H = d->H;
        d->stage.resize((size_t)T * H);
        for (int64_t i = 0; i < T; i++)
            if (!step->ids || step->ids[i] < 0)
                for (int64_t c = 0; c < H; c++) d->stage[i * H + c] = mvl_f32_to_bf16_bits(step->embeds[i * H + c]);
        CUDA_CHECK(cudaMemcpyAsync(d->h, d->stage.data(), (size_t)T * H * 2, cudaMemcpyHostToDevice, d->stream));
    }
    TRY(enqueue_step(d, B, T, max_len, max_ctx, first, last, static_cast<const bf16 *>(step->image_rows),
                     step->hidden, false, err));
    for (int b = 0; b < B; b++) d->len[step->slot[b]] += step->n_new[b];
    d->last_b = last == d->L ? B : 0;
    if (step->logits) { // every position, LOGIT_CHUNK rows at a time, before the last rows take the buffer back
        for (int r0 = 0; r0 < T; r0 += LOGIT_CHUNK) {
            int n = std::min(LOGIT_CHUNK, T - r0);
            TRY(linear(d, d->u + (int64_t)r0 * d->H, n, d->H, d->lm_head, d->V, d->logits, 1, err));
            CUDA_CHECK(cudaMemcpyAsync(step->logits + (size_t)r0 * d->V, d->logits, (size_t)n * d->V * sizeof(float),
                                       cudaMemcpyDeviceToHost, d->stream));
            CUDA_CHECK(cudaStreamSynchronize(d->stream));
        }
        const bf16 *z = T == B ? d->u : d->last_rows;
        TRY(linear(d, z, B, d->H, d->lm_head, d->V, d->logits, 1, err));
    }
    if (step->last_logits) TRY(download_last(d, B, step->last_logits, err));
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_dec_decode(mvl_cuda_dec *d, int n, const int *slot, const int32_t *ids,
                                          float *last_logits, mvl_error *err) {
    if (!ids) return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: a decode step needs token ids");
    int T, max_len, max_ctx;
    TRY(prepare(d, n, slot, d->ones.data(), ids, false, -1, &T, &max_len, &max_ctx, err));
    if (n > mvl_cuda_moe_small_max) { // the MoE's many-token path syncs with the host: no graph
        TRY(enqueue_step(d, n, n, 1, max_ctx, 0, d->L, nullptr, nullptr, false, err));
        for (int b = 0; b < n; b++) d->len[slot[b]] += 1;
        d->last_b = n;
        return last_logits ? download_last(d, n, last_logits, err) : MVL_OK;
    }
    cudaGraphExec_t &exec = d->graphs[n];
    if (!exec) {
        // Captured with the cache capacity as the context bound, so one graph
        // serves every length; the kernels read the real lengths from pos0.
        cudaGraph_t g = nullptr;
        CUDA_CHECK(cudaStreamBeginCapture(d->stream, cudaStreamCaptureModeRelaxed));
        mvl_status st = enqueue_step(d, n, n, 1, d->opts.max_ctx, 0, d->L, nullptr, nullptr, true, err);
        cudaError_t e = cudaStreamEndCapture(d->stream, &g);
        if (st != MVL_OK) {
            if (g) cudaGraphDestroy(g);
            return st;
        }
        if (e != cudaSuccess)
            return mvl_fail(err, MVL_ERR_DEVICE, "CUDA decoder: capturing the decode step of %d sequences failed: %s",
                            n, cudaGetErrorString(e));
        e = cudaGraphInstantiate(&exec, g, 0);
        cudaGraphDestroy(g);
        if (e != cudaSuccess) {
            exec = nullptr;
            return mvl_fail(err, MVL_ERR_DEVICE, "CUDA decoder: instantiating the decode graph failed: %s",
                            cudaGetErrorString(e));
        }
    }
    CUDA_CHECK(cudaGraphLaunch(exec, d->stream));
    for (int b = 0; b < n; b++) d->len[slot[b]] += 1;
    d->last_b = n;
    if (last_logits) TRY(download_last(d, n, last_logits, err));
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_dec_sample(mvl_cuda_dec *d, int n, const mvl_sample_opts *opts,
                                          const uint64_t *counter, int32_t *ids, mvl_error *err) {
    if (n < 1 || n > d->last_b)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA decoder: sampling %d sequences, the last step ran %d", n, d->last_b);
    for (int b = 0; b < n; b++) {
        const mvl_sample_opts *o = &opts[b];
        if (!(o->temperature >= 0) || o->top_k < 0 || !(o->top_p > 0 && o->top_p <= 1) ||
            !(o->min_p >= 0 && o->min_p <= 1))
            return mvl_fail(err, MVL_ERR_ARG,
                            "sampling: need temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1");
    }
    CUDA_CHECK(cudaStreamSynchronize(d->stream)); // hparams / hids free to reuse
    for (int b = 0; b < n; b++)
        d->hparams[b] = SampleParam{opts[b].temperature, opts[b].top_p, opts[b].min_p, opts[b].top_k, opts[b].seed,
                                    counter[b]};
    CUDA_CHECK(cudaMemcpyAsync(d->sample_params, d->hparams, n * sizeof(SampleParam), cudaMemcpyHostToDevice,
                               d->stream));
    k_sample<<<n, SAMPLE_THREADS, 0, d->stream>>>(d->logits, (int)d->V, d->sample_params, d->sample_ids);
    LAUNCH_CHECK();
    CUDA_CHECK(cudaMemcpyAsync(d->hids, d->sample_ids, n * sizeof(int), cudaMemcpyDeviceToHost, d->stream));
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    for (int b = 0; b < n; b++) ids[b] = d->hids[b];
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_dec_expert_counts(mvl_cuda_dec *d, int *counts, mvl_error *err) {
    CUDA_CHECK(cudaMemcpyAsync(counts, d->expert_count, (size_t)d->L * d->E * sizeof(int), cudaMemcpyDeviceToHost,
                               d->stream));
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    return MVL_OK;
}

extern "C" void mvl_cuda_dec_set_profiling(mvl_cuda_dec *d, int on) { d->profiling = on != 0; }

extern "C" mvl_status mvl_cuda_dec_stage_ms(mvl_cuda_dec *d, double *ms, mvl_error *err) {
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    for (int i = 0; i < d->L + 2; i++) {
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, d->ev[i], d->ev[i + 1]));
        ms[i] = t;
    }
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_dec_sync(mvl_cuda_dec *d, mvl_error *err) {
    CUDA_CHECK(cudaStreamSynchronize(d->stream));
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_copy_bandwidth(size_t bytes, int iters, double *gbps, mvl_error *err) {
    *gbps = 0;
    char *buf = nullptr;
    cudaStream_t s = nullptr;
    cudaEvent_t e0 = nullptr, e1 = nullptr;
    std::vector<float> t;
    mvl_status st = MVL_OK;
    cudaError_t e = cudaMalloc((void **)&buf, 2 * bytes);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreate(&e0);
    if (e == cudaSuccess) e = cudaEventCreate(&e1);
    if (e == cudaSuccess) e = cudaMemsetAsync(buf, 1, 2 * bytes, s);
    for (int i = 0; i < iters + 1 && e == cudaSuccess; i++) { // the first copy is a warm-up
        e = cudaEventRecord(e0, s);
        if (e == cudaSuccess) e = cudaMemcpyAsync(buf + bytes, buf, bytes, cudaMemcpyDeviceToDevice, s);
        if (e == cudaSuccess) e = cudaEventRecord(e1, s);
        if (e == cudaSuccess) e = cudaEventSynchronize(e1);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, e0, e1);
        if (i > 0) t.push_back(ms);
    }
    if (e != cudaSuccess)
        st = mvl_fail(err, MVL_ERR_DEVICE, "copy bandwidth: %zu bytes: %s", bytes, cudaGetErrorString(e));
    if (e1) cudaEventDestroy(e1);
    if (e0) cudaEventDestroy(e0);
    if (s) cudaStreamDestroy(s);
    cudaFree(buf);
    if (st != MVL_OK) return st;
    if (t.empty()) return mvl_fail(err, MVL_ERR_ARG, "copy bandwidth: iters must be at least 1");
    std::sort(t.begin(), t.end());
    *gbps = 2.0 * (double)bytes / (t[t.size() / 2] * 1e-3) / 1e9;
    return MVL_OK;
}
