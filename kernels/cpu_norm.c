/* LayerNorm and RMSNorm on the CPU (kernels/). Statistics in double: at least
 * as precise as the fp32 statistics the references use. */
#include <math.h>

#include "kernels/ops.h"

void mvl_op_layernorm(const float *x, int64_t n, int64_t dim, const float *w, const float *b,
                      float eps, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * dim;
        float *yr = y + i * dim;
        double mean = 0, var = 0;
        for (int64_t j = 0; j < dim; j++) mean += xr[j];
        mean /= (double)dim;
        for (int64_t j = 0; j < dim; j++) var += ((double)xr[j] - mean) * ((double)xr[j] - mean);
        double inv = 1.0 / sqrt(var / (double)dim + eps);
        for (int64_t j = 0; j < dim; j++) yr[j] = (float)(((double)xr[j] - mean) * inv) * w[j] + b[j];
    }
}

void mvl_op_rmsnorm(const float *x, int64_t n, int64_t dim, const float *w, float eps, bool bf16, float *y) {
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * dim;
        float *yr = y + i * dim;
        double ss = 0;
        for (int64_t j = 0; j < dim; j++) ss += (double)xr[j] * xr[j];
        /* normalise, then multiply by the weight, in the reference's order */
        if (bf16) { /* fp32 rsqrt and product, cast to bf16, bf16 product with the weight */
            float inv = 1.0f / sqrtf((float)(ss / (double)dim) + eps);
            for (int64_t j = 0; j < dim; j++) yr[j] = mvl_bf16_round(mvl_bf16_round(xr[j] * inv) * w[j]);
        } else {
            double inv = 1.0 / sqrt(ss / (double)dim + eps);
            for (int64_t j = 0; j < dim; j++) yr[j] = (float)(xr[j] * inv) * w[j];
        }
    }
}
