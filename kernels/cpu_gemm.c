/* GEMMs and weights on the CPU (kernels/): OpenBLAS cblas_sgemm only; there is
 * no hand-written matrix multiply.
 *
 * BF16/F16 weights are converted to float32 once, at load, and kept. The
 * alternative, converting per call, moves as many bytes as the GEMM itself
 * reads, which would halve decode speed (a GEMV is bandwidth bound); the price
 * is twice the memory of a 16-bit checkpoint. The CPU backend is the reference
 * and serves test and mid-size models, where that is the right trade. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/ops.h"

static double g_gemm_seconds;

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mvl_ops_gemm_seconds(void) { return g_gemm_seconds; }
void mvl_ops_reset_timers(void) { g_gemm_seconds = 0; }

void mvl_ops_set_threads(int n) {
    if (n > 0) openblas_set_num_threads(n);
}

static float half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

mvl_status mvl_weight_init(const mvl_tensor_view *tv, mvl_weight *w, mvl_error *err) {
    memset(w, 0, sizeof *w);
    int64_t rows = tv->ndim >= 1 ? tv->shape[0] : 1, cols = 1;
    for (int i = 1; i < tv->ndim; i++) cols *= tv->shape[i];
    if (tv->ndim == 1) {
        cols = rows;
        rows = 1;
    }
    size_t count = (size_t)(rows * cols);
    w->rows = rows;
    w->cols = cols;
    if (tv->dtype == MVL_DTYPE_F32) {
        w->data = tv->data;
        return MVL_OK;
    }
    if (tv->dtype != MVL_DTYPE_BF16 && tv->dtype != MVL_DTYPE_F16)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; the CPU backend takes F32, BF16 or F16",
                        tv->file, tv->name, mvl_dtype_name(tv->dtype));
    size_t bytes;
    if (!mvl_mul_ok(count, sizeof(float), &bytes)) return mvl_fail(err, MVL_ERR_LIMIT, "%s: tensor %s too large", tv->file, tv->name);
    float *f = mvl_malloc(bytes ? bytes : 1, err);
    if (!f) return MVL_ERR_NOMEM;
    const uint16_t *src = tv->data; /* 2-byte aligned: safetensors data offsets of 16-bit tensors */
    for (size_t i = 0; i < count; i++) {
        uint16_t h;
        memcpy(&h, src + i, 2);
        if (tv->dtype == MVL_DTYPE_BF16) {
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&f[i], &bits, 4);
        } else {
            f[i] = half_to_f32(h);
        }
    }
    w->owned = f;
    w->data = f;
    return MVL_OK;
}

void mvl_weight_free(mvl_weight *w) {
    if (!w) return;
    free(w->owned);
    memset(w, 0, sizeof *w);
}

void mvl_op_gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                 const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
                 int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
    g_gemm_seconds += now_seconds() - t0;
}

void mvl_op_linear(const float *x, int64_t n, const mvl_weight *w, const float *bias, float *y) {
    if (n <= 0) return;
    if (bias) {
        for (int64_t i = 0; i < n; i++) memcpy(y + i * w->rows, bias, (size_t)w->rows * sizeof(float));
    }
    mvl_op_gemm(false, true, n, w->rows, w->cols, 1.0f, x, w->cols, w->data, w->cols, bias ? 1.0f : 0.0f, y,
                w->rows);
}

mvl_status mvl_weight_load(const mvl_model_dir *md, const char *name, int ndim, const int64_t *shape,
                           mvl_weight *w, mvl_error *err) {
    mvl_tensor_view tv;
    mvl_status st = mvl_model_dir_tensor(md, name, MVL_DTYPE_COUNT, ndim, shape, &tv, err);
    if (st != MVL_OK) return st;
    return mvl_weight_init(&tv, w, err);
}
