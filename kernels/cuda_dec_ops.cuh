// The decoder's CUDA op families (decoder.md §3-7), one .cu each, called by
// kernels/cuda_decoder.cu. Every op enqueues on the given stream, takes
// device pointers, allocates nothing (scratch comes in from the caller's
// arena) and returns an mvl_status (launch errors through CUDA_CHECK).
//
// Layouts: activations are row-major bf16 [T, width], the T rows of a step
// being the new tokens of B sequences one after another; cu_seqlens[B + 1]
// (int32, device) gives sequence b the rows cu_seqlens[b] .. cu_seqlens[b+1]-1.
// Per-sequence state (lightning state, KV cache) lives in slots: slot[b]
// (int32, device) says which slot sequence b uses. A sequence that starts
// has its slot cleared by the caller (lightning state zeroed, length 0).
#ifndef MVL_CUDA_DEC_OPS_CUH
#define MVL_CUDA_DEC_OPS_CUH

#include "kernels/cuda_common.cuh"

// ---- lightning attention (cuda_lightning.cu; decoder.md §4) -------------------------
//
// qkv: [T, heads, 3, d] bf16, the raw qkv_proj output (head-major interleaved
// q | k | v, §4.1); the kernels apply SiLU on load (in fp32, then rounded to
// bf16 as the reference's bf16 SiLU output). slopes: [heads] fp32 (§4.2).
// state: [n_slots, heads, d, d] fp32, index [k][v] (§4.3), read and updated
// in place. out: [T, heads * d] bf16, the attention output before the
// output RMSNorm. Both equal the exact recurrence S_t = l*S_{t-1} + k_t^T v_t,
// o_t = q_t S_t with l = exp(-slope), the current token with weight 1
// (§4.3-4.4; not vLLM's l^c inter-block weighting, §8.1).

// Prefill: B sequences of lengths cu_seqlens[b+1]-cu_seqlens[b] >= 1 (max
// max_len), each continuing from its slot's state (zero for a new sequence).
mvl_status mvl_cuda_lightning_prefill(cudaStream_t s, const bf16 *qkv, const int *cu_seqlens, int B, int max_len,
                                      const int *slot, int heads, int d, const float *slopes, float *state,
                                      bf16 *out, mvl_error *err);
// Decode: one token for each of B sequences (qkv row b belongs to sequence b):
// the fused state update and output.
mvl_status mvl_cuda_lightning_decode(cudaStream_t s, const bf16 *qkv, int B, const int *slot, int heads, int d,
                                     const float *slopes, float *state, bf16 *out, mvl_error *err);

// ---- softmax attention (cuda_attention.cu; decoder.md §5) --------------------------
//
// qkv: [T, (heads + 2 * kv_heads) * d] bf16, the fused q_proj | k_proj | v_proj
// output (q heads first, then k heads, then v heads). pos0[b] (int32, device):
// the absolute position of sequence b's first new token = tokens already in
// its cache. KV cache: k_cache, v_cache [n_slots, cap, kv_heads, d] bf16,
// post-RoPE keys (§5). RoPE: partial NeoX on the first rot_dim dims of every
// q and k head, angles fp32 position x fp32 inv_freq, fp32 cos/sin (§5, §8.4).

// Rotates q in place and k, and appends k and v of every new token to its
// slot's cache at positions pos0[b] ... (caller guarantees pos0 + len <= cap).
mvl_status mvl_cuda_rope_append_kv(cudaStream_t s, bf16 *qkv, int T, const int *cu_seqlens, int B,
                                   const int *pos0, const int *slot, int heads, int kv_heads, int d, int rot_dim,
                                   float theta, bf16 *k_cache, bf16 *v_cache, int64_t cap, mvl_error *err);
// Causal attention of the new tokens over their sequence's cache (positions
// 0 .. pos0[b] + i for new token i), GQA (query head h reads kv head
// h / (heads / kv_heads)), scores scaled by `scale`, softmax in fp32.
// q: rotated, inside qkv (row stride (heads + 2 kv_heads) d). out: [T, heads * d].
// Prefill uses a fused flash kernel; rows of one token per sequence (decode)
// take a split-K decode kernel when max_len == 1.
mvl_status mvl_cuda_attention(cudaStream_t s, const bf16 *qkv, int T, const int *cu_seqlens, int B, int max_len,
                              const int *pos0, int max_ctx, const int *slot, int heads, int kv_heads, int d,
                              float scale, const bf16 *k_cache, const bf16 *v_cache, int64_t cap, bf16 *out,
                              float *scratch, mvl_error *err);
// Floats of `scratch` mvl_cuda_attention needs for B sequences of up to
// max_ctx positions.
size_t mvl_cuda_attention_scratch(int B, int max_ctx, int heads, int d);

// ---- MoE (cuda_moe.cu; decoder.md §6) --------------------------------------------------
//
// One layer's experts, packed at upload: w13[e] = [w1[e]; w3[e]] ([2I, H]:
// gate rows then up rows), w2[e] = [H, I]; router [E, H].
struct mvl_cuda_moe_weights {
    const bf16 *router; // [E, H]
    const bf16 *w13;    // [E, 2I, H]
    const bf16 *w2;     // [E, H, I]
};
// y[n, H] = sum_k w_k E_{i_k}(u[n, H]): router logits as a bf16 GEMM, softmax
// in fp32, top-k (ties to the lower index), renormalised; experts SwiGLU
// (silu(w1 u) * (w3 u)), down projection, weighted sum in fp32, one rounding
// to bf16. Small n (decode) takes the memory-bound path that reads each
// chosen expert once; larger n permutes tokens by expert and runs grouped
// GEMMs. expert_count: NULL or [E] int32 (device) receiving how many tokens
// chose each expert (for the benchmark's byte count). Limits: H, I multiples
// of 8, k <= E <= 64, k <= 8, 16-byte aligned buffers. Afterwards scratch
// begins with the chosen experts [n, k] int32 (tests compare them). The
// prefill path (n > mvl_cuda_moe_small_max) reads the expert counts on the
// host (a stream sync) and needs g; the decode path needs neither and can be
// captured in a graph.
mvl_status mvl_cuda_moe(mvl_cuda_gemm *g, cudaStream_t s, const mvl_cuda_moe_weights *w, const bf16 *u, int n, int H,
                        int I, int E, int k, bf16 *y, void *scratch, int *expert_count, mvl_error *err);
// Bytes of `scratch` mvl_cuda_moe needs for up to n tokens.
size_t mvl_cuda_moe_scratch(int n, int H, int I, int E, int k);
// Largest n that takes the decode path (64 at most; default 64: at full size
// the decode path is faster at every n <= 64, tests/bench_moe_cuda.cu); tests
// move it to run both paths.
extern int mvl_cuda_moe_small_max;

// ---- small-batch Linear (cuda_moe.cu) ----------------------------------------------------
//
// y[n, R] = x[n, C] . w[R, C]^T for n <= 64 rows: a memory-bound kernel that
// streams w once at full bandwidth. out_f32: y is fp32, else bf16. C a
// multiple of 8, x and w 16-byte aligned. Measured on the H100 at the
// decoder's shapes (tests/bench_moe_cuda.cu): 87-102% of copy bandwidth at
// n <= 8 (0.95-1.12x cuBLASLt), on par at n = 16, but 0.87-0.92x cuBLASLt at
// n = 32 and 0.5-0.7x at n = 64 (activation rereads): above 16 rows,
// mvl_cuda_linear is the faster choice.
mvl_status mvl_cuda_linear_small(cudaStream_t s, const bf16 *x, int n, int C, const bf16 *w, int R, void *y,
                                 int out_f32, mvl_error *err);

// ---- norms, residual, sampling (cuda_decoder.cu) --------------------------------------------
// (internal to the decoder file)

#endif
