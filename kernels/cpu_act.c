/* Element-wise ops and MoE routing on the CPU (kernels/). */
#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "kernels/route_topk.h"

void mvl_op_gelu(float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * M_SQRT1_2)));
}

static inline float silu(float v) { return (float)(v / (1.0 + exp(-(double)v))); }

void mvl_op_silu(float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] = silu(x[i]);
}

void mvl_op_round_bf16(float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) x[i] = mvl_bf16_round(x[i]);
}

void mvl_op_swiglu(float *gate, const float *up, int64_t count, bool bf16) {
    if (!bf16) {
        for (int64_t i = 0; i < count; i++) gate[i] = silu(gate[i]) * up[i];
        return;
    }
    for (int64_t i = 0; i < count; i++) gate[i] = mvl_bf16_round(mvl_bf16_round(silu(gate[i])) * up[i]);
}

void mvl_op_sigmoid_mul(float *y, const float *g, int64_t count, bool bf16) {
    if (!bf16) {
        for (int64_t i = 0; i < count; i++) y[i] = (float)(y[i] / (1.0 + exp(-(double)g[i])));
        return;
    }
    for (int64_t i = 0; i < count; i++) y[i] = mvl_bf16_round(mvl_bf16_round((float)(1.0 / (1.0 + exp(-(double)g[i])))) * y[i]);
}

void mvl_op_axpby(float a, const float *x, float b, float *y, int64_t count, bool bf16) {
    if (!bf16) {
        for (int64_t i = 0; i < count; i++) y[i] = a * x[i] + b * y[i];
        return;
    }
    for (int64_t i = 0; i < count; i++) y[i] = mvl_bf16_round(mvl_bf16_round(a * x[i]) + mvl_bf16_round(b * y[i]));
}

void mvl_op_add(float *y, const float *x, int64_t count) {
    for (int64_t i = 0; i < count; i++) y[i] += x[i];
}

void mvl_op_route_topk(const float *logits, int n_experts, int k, bool torch_ties, int *idx, float *weight) {
    float mx = logits[0];
    for (int e = 1; e < n_experts; e++) mx = fmaxf(mx, logits[e]);
    double sum = 0;
    for (int e = 0; e < n_experts; e++) sum += exp((double)logits[e] - mx);
    if (torch_ties && k * 64 > n_experts && n_experts <= MVL_TOPK_TORCH_MAX) {
        float p[MVL_TOPK_TORCH_MAX];
        int a[MVL_TOPK_TORCH_MAX];
        for (int e = 0; e < n_experts; e++) p[e] = (float)(exp((double)logits[e] - mx) / sum);
        mvl_topk_torch_order(p, n_experts, k, a);
        double total = 0;
        for (int j = 0; j < k; j++) total += p[a[j]];
        for (int j = 0; j < k; j++) {
            idx[j] = a[j];
            weight[j] = (float)(p[a[j]] / total);
        }
        return;
    }
    double total = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < n_experts; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= idx[i] == e;
            if (!taken && (best < 0 || logits[e] > logits[best])) best = e;
        }
        idx[j] = best;
        weight[j] = (float)(exp((double)logits[best] - mx) / sum); /* fp32 softmax probability */
        total += weight[j];
    }
    for (int j = 0; j < k; j++) weight[j] = (float)(weight[j] / total);
}
