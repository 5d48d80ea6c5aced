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

#include "common/mvl_common.h"

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
 * statistics in double, at least the reference's fp32). x and y may alias. */
void mvl_op_rmsnorm(const float *x, int64_t n, int64_t dim, const float *w, float eps, float *y);

/* ---- element-wise (cpu_act.c) ------------------------------------------------ */

void mvl_op_gelu(float *x, int64_t count); /* exact erf GELU, in place */
void mvl_op_silu(float *x, int64_t count); /* x * sigmoid(x), in place */
/* gate[i] = silu(gate[i]) * up[i] (SwiGLU expert, decoder.md §6). */
void mvl_op_swiglu(float *gate, const float *up, int64_t count);
/* y[i] *= sigmoid(g[i]) (lightning output gate, decoder.md §4.6). */
void mvl_op_sigmoid_mul(float *y, const float *g, int64_t count);
/* y[i] = a * x[i] + b * y[i] (post-norm residual, decoder.md §3). */
void mvl_op_axpby(float a, const float *x, float b, float *y, int64_t count);
/* y[i] += x[i]. */
void mvl_op_add(float *y, const float *x, int64_t count);

/* ---- attention (cpu_attention.c) -------------------------------------------- */

/* NeoX RoPE on the first rot_dim dims of every head, in place: x is
 * [n, heads, head_dim] with row stride ld; row i has position pos0 + i.
 * Angles as the reference builds them: fp32 position x fp32 inv_freq, fp32
 * cos/sin (decoder.md §5, §8.4). */
void mvl_op_rope_neox(float *x, int64_t n, int64_t ld, int heads, int head_dim, int rot_dim,
                      int64_t pos0, double theta);

/* Multi-head attention with GQA. q: [n, heads, d] (row stride ldq); k, v:
 * [t, kv_heads, d] (row stride ldkv); out: [n, heads, d] dense. Query head h
 * reads kv head h / (heads / kv_heads). causal: query i sees keys
 * 0..(t - n + i), i.e. the queries are the last n positions. Scores scaled by
 * `scale`, softmax in fp32 with max subtraction. */
mvl_status mvl_op_attention(const float *q, int64_t ldq, int64_t n, const float *k, const float *v,
                            int64_t ldkv, int64_t t, int heads, int kv_heads, int d, float scale,
                            bool causal, float *out, mvl_error *err);

/* Lightning attention over n tokens (decoder.md §4.3-4.4). qkv: [n, heads,
 * 3, d] (q | k | v per head, activation already applied), row stride
 * heads*3*d. slopes: [heads]. state: [heads, d, d] fp32 (index [k][v]),
 * updated in place. out: [n, heads*d]. Processes blocks of `block` tokens
 * with the HF block algebra, which equals the recurrence
 * S_t = lambda*S_{t-1} + k_t^T v_t, o_t = q_t S_t. Scratch is allocated
 * inside (MVL_ERR_NOMEM when that fails), as in mvl_op_attention. */
mvl_status mvl_op_lightning(const float *qkv, int64_t n, int heads, int d, const float *slopes,
                            int block, float *state, float *out, mvl_error *err);

/* ---- routing (cpu_act.c) ------------------------------------------------------ */

/* MoE routing for one token (decoder.md §6): softmax of logits[n_experts] in
 * fp32, top k (ties to the lower index), renormalised. Writes idx[k] and
 * weight[k], largest first. */
void mvl_op_route_topk(const float *logits, int n_experts, int k, int *idx, float *weight);

#endif
