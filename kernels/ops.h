/* The compute ops the model code calls (kernels/). The model code (vision/vit.c,
 * projector/, text/decoder.c) only calls these, never BLAS or a device API, so
 * a CUDA backend can sit behind the same names. This build implements them on
 * the CPU: GEMMs through OpenBLAS (cblas_sgemm, threaded by OpenBLAS), the
 * element-wise ops as plain loops.
 *
 * Activations are float32, row-major. Weights are mvl_weight: float32 copies
 * made at load time (see cpu_gemm.c for why). */
#ifndef MVL_OPS_H
#define MVL_OPS_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/mvl_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A stored tensor as the ops use it: [rows, cols] float32, where rows is
 * shape[0] and cols the product of the other dims (a 1-D tensor is 1 x n). */
typedef struct mvl_weight {
    int64_t rows, cols;
    const float *data; /* [rows, cols] f32: the mapping itself for F32, else `owned` */
    float *owned;      /* converted copy of a BF16/F16 tensor, NULL for F32 */
} mvl_weight;

/* Makes w from a view (F32, BF16 or F16). Other dtypes: MVL_ERR_UNSUPPORTED
 * naming the tensor and its file. */
mvl_status mvl_weight_init(const mvl_tensor_view *tv, mvl_weight *w, mvl_error *err);
void mvl_weight_free(mvl_weight *w);
/* Looks `name` up in md (checking ndim/shape as mvl_model_dir_tensor does)
 * and makes a weight from it. */
mvl_status mvl_weight_load(const mvl_model_dir *md, const char *name, int ndim, const int64_t *shape,
                           mvl_weight *w, mvl_error *err);

/* ---- bf16 compute (cpu_act.c) ----------------------------------------------
 * MVL_COMPUTE_BF16 emulates a bf16 model as HF runs it: activations live in
 * float32 buffers but are rounded to bf16 (round to nearest even) wherever
 * the reference rounds: every GEMM output (fp32 accumulate, one rounding,
 * as a bf16 cuBLAS/oneDNN GEMM), every element-wise op's output. Ops with
 * rounding points inside take `bool bf16`; the model rounds the rest through
 * mvl_op_round_if. With bf16 false every op is the float32 op. */

/* x rounded to the nearest bf16 (ties to even), widened back to float. NaN
 * stays NaN (quiet, sign kept), +-inf stay, finite values past the largest
 * bf16 become +-inf, subnormals round on the same grid. */
static inline float mvl_bf16_round(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u; /* NaN: keep it NaN after the cut */
    else u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}
/* x[i] = mvl_bf16_round(x[i]). */
void mvl_op_round_bf16(float *x, int64_t count);
/* The model's rounding point: a no-op in float32 compute. */
static inline void mvl_op_round_if(bool bf16, float *x, int64_t count) {
    if (bf16) mvl_op_round_bf16(x, count);
}

/* Sets how many threads the GEMMs use (0 leaves the library default). */
void mvl_ops_set_threads(int n);

/* ---- GEMM (cpu_gemm.c) ---------------------------------------------------- */

/* y[n, w->rows] = x[n, w->cols] . w^T (+ bias[w->rows] when non-NULL): a
 * PyTorch Linear. x and y are dense. */
void mvl_op_linear(const float *x, int64_t n, const mvl_weight *w, const float *bias, float *y);

/* C[m, n] = alpha * op(A) . op(B) + beta * C, row-major with leading
 * dimensions; op(X) = X^T when the flag is set. */
void mvl_op_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc);

/* Seconds spent inside GEMMs since the last reset (for the benchmarks). */
double mvl_ops_gemm_seconds(void);
void mvl_ops_reset_timers(void);

/* ---- norms (cpu_norm.c) ------------------------------------------------------ */

/* LayerNorm over rows of dim: y = (x - mean)/sqrt(var + eps) * w + b; the
 * statistics are accumulated in double. x and y may alias. */
void mvl_op_layernorm(const float *x, int64_t n, int64_t dim, const float *w, const float *b,
                      float eps, float *y);
/* RMSNorm over rows of dim: y = x * rsqrt(mean(x^2) + eps) * w (decoder.md §3;
 * statistics in double, at least the reference's fp32). x and y may alias.
 * bf16: the reference's order, y = bf16(w * bf16(x * r)) with r = rsqrt in
 * fp32 (decoder.md §3). */
void mvl_op_rmsnorm(const float *x, int64_t n, int64_t dim, const float *w, float eps, bool bf16, float *y);

/* ---- element-wise (cpu_act.c) ------------------------------------------------ */

void mvl_op_gelu(float *x, int64_t count); /* exact erf GELU, in place */
void mvl_op_silu(float *x, int64_t count); /* x * sigmoid(x), in place */
/* gate[i] = silu(gate[i]) * up[i] (SwiGLU expert, decoder.md §6); bf16:
 * silu rounded, then the product rounded. */
void mvl_op_swiglu(float *gate, const float *up, int64_t count, bool bf16);
/* y[i] *= sigmoid(g[i]) (lightning output gate, decoder.md §4.6); bf16:
 * sigmoid rounded, then the product rounded. */
void mvl_op_sigmoid_mul(float *y, const float *g, int64_t count, bool bf16);
/* y[i] = a * x[i] + b * y[i] (post-norm residual, decoder.md §3; MoE
 * accumulation); bf16: a*x and b*y each rounded, then the sum rounded. */
void mvl_op_axpby(float a, const float *x, float b, float *y, int64_t count, bool bf16);
/* y[i] += x[i]. */
void mvl_op_add(float *y, const float *x, int64_t count);

/* ---- attention (cpu_attention.c) -------------------------------------------- */

/* NeoX RoPE on the first rot_dim dims of every head, in place: x is
 * [n, heads, head_dim] with row stride ld; row i has position pos0 + i.
 * Angles as the reference builds them: fp32 position x fp32 inv_freq, fp32
 * cos/sin (decoder.md §5, §8.4). bf16: cos/sin rounded to bf16 (transformers
 * casts them to the model dtype), then x*cos and rot(x)*sin each rounded and
 * their sum rounded. */
void mvl_op_rope_neox(float *x, int64_t n, int64_t ld, int heads, int head_dim, int rot_dim,
                      int64_t pos0, double theta, bool bf16);

/* Multi-head attention with GQA. q: [n, heads, d] (row stride ldq); k, v:
 * [t, kv_heads, d] (row stride ldkv); out: [n, heads, d] dense. Query head h
 * reads kv head h / (heads / kv_heads). causal: query i sees keys
 * 0..(t - n + i), i.e. the queries are the last n positions. Scores scaled by
 * `scale`, softmax in fp32 with max subtraction. bf16: eager attention as
 * transformers runs it in bf16: q k^T rounded, times scale rounded, softmax
 * in fp32 rounded, probs . v rounded. */
mvl_status mvl_op_attention(const float *q, int64_t ldq, int64_t n, const float *k, const float *v,
                            int64_t ldkv, int64_t t, int heads, int kv_heads, int d, float scale,
                            bool causal, bool bf16, float *out, mvl_error *err);

/* Lightning attention over n tokens (decoder.md §4.3-4.4). qkv: [n, heads,
 * 3, d] (q | k | v per head, activation already applied), row stride
 * heads*3*d. slopes: [heads]. state: [heads, d, d] fp32 (index [k][v]),
 * updated in place. out: [n, heads*d]. Processes blocks of `block` tokens
 * with the HF block algebra, which equals the recurrence
 * S_t = lambda*S_{t-1} + k_t^T v_t, o_t = q_t S_t. Scratch is allocated
 * inside (MVL_ERR_NOMEM when that fails), as in mvl_op_attention. bf16: the
 * remote code's dtypes (decoder.md §4.4): fp32 state and decays; q k^T
 * rounded; the block output rounded; k*k_decay rounded and its product with
 * v rounded before it is added to the fp32 state. A decode step is a block
 * of one token with the same roundings. */
mvl_status mvl_op_lightning(const float *qkv, int64_t n, int heads, int d, const float *slopes,
                            int block, bool bf16, float *state, float *out, mvl_error *err);

/* ---- routing (cpu_act.c) ------------------------------------------------------ */

/* MoE routing for one token (decoder.md §6): softmax of logits[n_experts] in
 * fp32, top k (ties to the lower index), renormalised. Writes idx[k] and
 * weight[k], largest first. torch_ties (bf16 compute, where equal bf16 logits
 * are common): among equal probabilities keep the ones torch.topk on the CPU
 * keeps (its std::nth_element selection, for k * 64 > n_experts <= 256). */
void mvl_op_route_topk(const float *logits, int n_experts, int k, bool torch_ties, int *idx, float *weight);

#ifdef __cplusplus
}
#endif
#endif
