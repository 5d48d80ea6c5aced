/* Element-wise ops and MoE routing on the CPU (kernels/). */
#include <math.h>
#include <string.h>

#include "kernels/ops.h"

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

/* ---- torch.topk's choice among equal values --------------------------------
 * bf16 router logits tie often. torch.topk on the CPU (k * 64 > n) runs
 * std::nth_element (libstdc++ introselect) on (value, index) pairs ordered by
 * value only, so which of equal values it keeps depends on their positions.
 * These helpers redo that selection step by step on indices. */
typedef struct sel_ctx {
    const float *v;
    int *a; /* the index array being permuted */
} sel_ctx;

static bool sel_gt(const sel_ctx *c, int i, int j) { return c->v[c->a[i]] > c->v[c->a[j]]; }
static void sel_swap(sel_ctx *c, int i, int j) {
    int t = c->a[i];
    c->a[i] = c->a[j];
    c->a[j] = t;
}

static void sel_median_to_first(sel_ctx *c, int r, int i, int j, int k) {
    if (sel_gt(c, i, j)) {
        if (sel_gt(c, j, k)) sel_swap(c, r, j);
        else if (sel_gt(c, i, k)) sel_swap(c, r, k);
        else sel_swap(c, r, i);
    } else if (sel_gt(c, i, k)) sel_swap(c, r, i);
    else if (sel_gt(c, j, k)) sel_swap(c, r, k);
    else sel_swap(c, r, j);
}

static int sel_partition(sel_ctx *c, int f, int l, int pivot) {
    for (;;) {
        while (sel_gt(c, f, pivot)) f++;
        l--;
        while (sel_gt(c, pivot, l)) l--;
        if (!(f < l)) return f;
        sel_swap(c, f, l);
        f++;
    }
}

static void sel_insertion_sort(sel_ctx *c, int f, int l) {
    for (int i = f + 1; i < l; i++) {
        int x = c->a[i];
        if (c->v[x] > c->v[c->a[f]]) {
            memmove(c->a + f + 1, c->a + f, (size_t)(i - f) * sizeof(int));
            c->a[f] = x;
        } else {
            int j = i;
            while (c->v[x] > c->v[c->a[j - 1]]) {
                c->a[j] = c->a[j - 1];
                j--;
            }
            c->a[j] = x;
        }
    }
}

/* The k largest of v[0..n) in a[0..k), in the order torch.topk returns them
 * (n <= 256; for k * 64 > n, the only case torch runs nth_element). */
static void topk_torch_order(const float *v, int n, int k, int *a) {
    sel_ctx c = {v, a};
    for (int i = 0; i < n; i++) a[i] = i;
    int f = 0, l = n, nth = k - 1;
    while (l - f > 3) { /* the depth limit (2 log2 n) is never reached for n this small */
        int mid = f + (l - f) / 2;
        sel_median_to_first(&c, f, f + 1, mid, l - 1);
        int cut = sel_partition(&c, f + 1, l, f);
        if (cut <= nth) f = cut;
        else l = cut;
    }
    sel_insertion_sort(&c, f, l);
    sel_insertion_sort(&c, 0, k - 1); /* torch sorts the first k - 1 (std::sort: insertion sort when short) */
}

void mvl_op_route_topk(const float *logits, int n_experts, int k, bool torch_ties, int *idx, float *weight) {
    float mx = logits[0];
    for (int e = 1; e < n_experts; e++) mx = fmaxf(mx, logits[e]);
    double sum = 0;
    for (int e = 0; e < n_experts; e++) sum += exp((double)logits[e] - mx);
    if (torch_ties && k * 64 > n_experts && n_experts <= 256) {
        float p[256];
        int a[256];
        for (int e = 0; e < n_experts; e++) p[e] = (float)(exp((double)logits[e] - mx) / sum);
        topk_torch_order(p, n_experts, k, a);
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
