/* CPU ops (kernels/ops.h) against naive double-precision references, the
 * lightning block prefill against the exact recurrence, the decay slopes and
 * the packing geometry of vision.md §4.3. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kernels/ops.h"
#include "projector/projector.h"
#include "text/decoder.h"

static uint64_t rng_state = 42;
static float frand(void) { /* uniform in [-1, 1) */
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static float *rnd(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = frand() * scale;
    return x;
}
static void assert_close(const float *got, const double *want, size_t n, double tol) {
    double scale = 1e-30;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > tol * scale) fail_msg("element %zu: got %.9g want %.9g (tol %g)", i, got[i], want[i], tol * scale);
}

static mvl_weight weight_f32(const float *data, int64_t rows, int64_t cols) {
    mvl_tensor_view tv = {.name = "w", .dtype = MVL_DTYPE_F32, .ndim = 2, .shape = {rows, cols}, .data = data, .file = "mem"};
    mvl_weight w;
    assert_int_equal(mvl_weight_init(&tv, &w, NULL), MVL_OK);
    return w;
}

static void test_linear(void **state) {
    (void)state;
    int64_t n = 7, in = 33, out = 19;
    float *x = rnd(n * in, 1), *w = rnd(out * in, 1), *b = rnd(out, 1), y[7 * 19];
    mvl_weight W = weight_f32(w, out, in);
    mvl_op_linear(x, n, &W, b, y);
    double want[7 * 19];
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t k = 0; k < in; k++) s += (double)x[i * in + k] * w[o * in + k];
            want[i * out + o] = s;
        }
    assert_close(y, want, (size_t)(n * out), 1e-6);
    mvl_weight_free(&W);
    free(x), free(w), free(b);
}

static void test_weight_16bit(void **state) {
    (void)state;
    /* bf16 1.5 = 0x3FC0, -2 = 0xC000; f16 1.5 = 0x3E00, -2 = 0xC000, 2^-24 = 0x0001 (subnormal) */
    uint16_t bf[2] = {0x3FC0, 0xC000}, hf[3] = {0x3E00, 0xC000, 0x0001};
    mvl_tensor_view tv = {.name = "b", .dtype = MVL_DTYPE_BF16, .ndim = 1, .shape = {2}, .data = bf, .file = "mem"};
    mvl_weight w;
    assert_int_equal(mvl_weight_init(&tv, &w, NULL), MVL_OK);
    assert_true(w.data[0] == 1.5f && w.data[1] == -2.0f && w.rows == 1 && w.cols == 2);
    mvl_weight_free(&w);
    tv.dtype = MVL_DTYPE_F16;
    tv.shape[0] = 3;
    tv.data = hf;
    assert_int_equal(mvl_weight_init(&tv, &w, NULL), MVL_OK);
    assert_true(w.data[0] == 1.5f && w.data[1] == -2.0f && w.data[2] == ldexpf(1.0f, -24));
    mvl_weight_free(&w);
    mvl_error err = {0};
    tv.dtype = MVL_DTYPE_I8;
    assert_int_equal(mvl_weight_init(&tv, &w, &err), MVL_ERR_UNSUPPORTED);
    assert_non_null(strstr(err.msg, "mem"));
}

static void test_norms(void **state) {
    (void)state;
    int64_t n = 5, d = 37;
    float *x = rnd(n * d, 3), *w = rnd(d, 1), *b = rnd(d, 1), y[5 * 37];
    double want[5 * 37];
    mvl_op_layernorm(x, n, d, w, b, 1e-5f, y);
    for (int64_t i = 0; i < n; i++) {
        double m = 0, v = 0;
        for (int64_t j = 0; j < d; j++) m += x[i * d + j];
        m /= d;
        for (int64_t j = 0; j < d; j++) v += (x[i * d + j] - m) * (x[i * d + j] - m);
        v /= d;
        for (int64_t j = 0; j < d; j++) want[i * d + j] = (x[i * d + j] - m) / sqrt(v + 1e-5) * w[j] + b[j];
    }
    assert_close(y, want, (size_t)(n * d), 1e-6);
    mvl_op_rmsnorm(x, n, d, w, 1e-6f, y);
    for (int64_t i = 0; i < n; i++) {
        double ss = 0;
        for (int64_t j = 0; j < d; j++) ss += (double)x[i * d + j] * x[i * d + j];
        for (int64_t j = 0; j < d; j++) want[i * d + j] = x[i * d + j] / sqrt(ss / d + 1e-6) * w[j];
    }
    assert_close(y, want, (size_t)(n * d), 1e-6);
    free(x), free(w), free(b);
}

static void test_activations(void **state) {
    (void)state;
    enum { N = 64 };
    float *x = rnd(N, 6), *g = rnd(N, 6), y[N], z[N];
    double want[N];
    memcpy(y, x, sizeof y);
    mvl_op_gelu(y, N);
    for (int i = 0; i < N; i++) want[i] = 0.5 * x[i] * (1 + erf(x[i] / sqrt(2.0)));
    assert_close(y, want, N, 1e-6);
    memcpy(y, x, sizeof y);
    mvl_op_silu(y, N);
    for (int i = 0; i < N; i++) want[i] = x[i] / (1 + exp(-(double)x[i]));
    assert_close(y, want, N, 1e-6);
    memcpy(y, x, sizeof y);
    mvl_op_swiglu(y, g, N);
    for (int i = 0; i < N; i++) want[i] = x[i] / (1 + exp(-(double)x[i])) * g[i];
    assert_close(y, want, N, 1e-6);
    memcpy(y, x, sizeof y);
    mvl_op_sigmoid_mul(y, g, N);
    for (int i = 0; i < N; i++) want[i] = x[i] / (1 + exp(-(double)g[i]));
    assert_close(y, want, N, 1e-6);
    memcpy(z, g, sizeof z);
    mvl_op_axpby(2.5f, x, -0.5f, z, N);
    for (int i = 0; i < N; i++) want[i] = 2.5 * x[i] - 0.5 * g[i];
    assert_close(z, want, N, 1e-6);
    free(x), free(g);
}

static void test_route(void **state) {
    (void)state;
    float logits[6] = {0.3f, 2.0f, -1.0f, 2.0f, 1.5f, 0.0f};
    int idx[2];
    float w[2];
    mvl_op_route_topk(logits, 6, 2, idx, w);
    assert_int_equal(idx[0], 1); /* tie: lower index first */
    assert_int_equal(idx[1], 3);
    assert_true(fabsf(w[0] - 0.5f) < 1e-7f && fabsf(w[1] - 0.5f) < 1e-7f);
    mvl_op_route_topk(logits, 3, 2, idx, w);
    double p1 = exp(2.0), p0 = exp(0.3);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 0);
    assert_true(fabs(w[0] - p1 / (p1 + p0)) < 1e-6 && fabs(w[1] - p0 / (p1 + p0)) < 1e-6);
}

static void test_rope(void **state) {
    (void)state;
    int n = 3, heads = 2, hd = 8, rot = 4;
    int64_t ld = heads * hd + 3; /* padded rows */
    float *x = rnd((size_t)(n * ld), 1), *y = malloc((size_t)(n * ld) * sizeof(float));
    memcpy(y, x, (size_t)(n * ld) * sizeof(float));
    mvl_op_rope_neox(y, n, ld, heads, hd, rot, 1000, 1e7);
    double want[3 * 19];
    for (int r = 0; r < n; r++)
        for (int j = 0; j < ld; j++) want[r * ld + j] = x[r * ld + j];
    for (int r = 0; r < n; r++)
        for (int h = 0; h < heads; h++)
            for (int i = 0; i < rot / 2; i++) {
                double ang = (1000.0 + r) / pow(1e7, 2.0 * i / rot);
                const float *xh = x + r * ld + h * hd;
                want[r * ld + h * hd + i] = xh[i] * cos(ang) - xh[i + rot / 2] * sin(ang);
                want[r * ld + h * hd + i + rot / 2] = xh[i + rot / 2] * cos(ang) + xh[i] * sin(ang);
            }
    assert_close(y, want, (size_t)(n * ld), 2e-5); /* fp32 angle at position 1000 */
    free(x), free(y);
}

static void naive_attention(const float *q, int64_t ldq, int64_t n, const float *k, const float *v, int64_t ldkv,
                            int64_t t, int heads, int kvh, int d, double scale, int causal, double *out) {
    double *p = malloc((size_t)t * sizeof(double));
    for (int h = 0; h < heads; h++) {
        int g = h / (heads / kvh);
        for (int64_t i = 0; i < n; i++) {
            int64_t vis = causal ? t - n + i + 1 : t;
            double mx = -1e300, sum = 0;
            for (int64_t j = 0; j < vis; j++) {
                double s = 0;
                for (int c = 0; c < d; c++) s += (double)q[i * ldq + h * d + c] * k[j * ldkv + g * d + c];
                p[j] = s * scale;
                mx = fmax(mx, p[j]);
            }
            for (int64_t j = 0; j < vis; j++) sum += (p[j] = exp(p[j] - mx));
            for (int c = 0; c < d; c++) {
                double o = 0;
                for (int64_t j = 0; j < vis; j++) o += p[j] / sum * v[j * ldkv + g * d + c];
                out[i * heads * d + h * d + c] = o;
            }
        }
    }
    free(p);
}

static void test_attention(void **state) {
    (void)state;
    int heads = 4, kvh = 2, d = 8;
    int64_t n = 150, t = 170, ldq = heads * d, ldkv = kvh * d; /* n > the 128-query tile */
    float *q = rnd((size_t)(n * ldq), 1), *k = rnd((size_t)(t * ldkv), 1), *v = rnd((size_t)(t * ldkv), 1);
    float *out = malloc((size_t)(n * ldq) * sizeof(float));
    double *want = malloc((size_t)(n * ldq) * sizeof(double));
    for (int causal = 0; causal < 2; causal++) {
        assert_int_equal(mvl_op_attention(q, ldq, n, k, v, ldkv, t, heads, kvh, d, 0.35f, causal, out, NULL), MVL_OK);
        naive_attention(q, ldq, n, k, v, ldkv, t, heads, kvh, d, 0.35f, causal, want);
        assert_close(out, want, (size_t)(n * ldq), 1e-5);
    }
    free(q), free(k), free(v), free(out), free(want);
}

/* S_t = lambda S_{t-1} + k_t^T v_t; o_t = q_t S_t (decoder.md §4.3), in double. */
static void recurrence(const float *qkv, int64_t n, int heads, int d, const float *slopes, double *S, double *out) {
    int64_t ld = (int64_t)heads * 3 * d;
    for (int h = 0; h < heads; h++) {
        double lam = exp(-(double)slopes[h]), *Sh = S + (int64_t)h * d * d;
        for (int64_t t = 0; t < n; t++) {
            const float *q = qkv + t * ld + h * 3 * d, *k = q + d, *v = k + d;
            for (int i = 0; i < d; i++)
                for (int j = 0; j < d; j++) Sh[i * d + j] = lam * Sh[i * d + j] + (double)k[i] * v[j];
            for (int j = 0; j < d; j++) {
                double o = 0;
                for (int i = 0; i < d; i++) o += q[i] * Sh[i * d + j];
                out[t * heads * d + h * d + j] = o;
            }
        }
    }
}

static void test_lightning_blocks_equal_recurrence(void **state) {
    (void)state;
    int heads = 3, d = 5;
    int64_t n = 23;
    float slopes[3] = {0.9f, 0.25f, 0.004f};
    float *qkv = rnd((size_t)(n * heads * 3 * d), 1), out[23 * 15];
    double S[3 * 25] = {0}, want[23 * 15];
    recurrence(qkv, n, heads, d, slopes, S, want);
    int blocks[] = {1, 4, 7, 23, 256};
    for (size_t b = 0; b < sizeof blocks / sizeof blocks[0]; b++) {
        float st[3 * 25] = {0};
        assert_int_equal(mvl_op_lightning(qkv, n, heads, d, slopes, blocks[b], st, out, NULL), MVL_OK);
        assert_close(out, want, (size_t)(n * heads * d), 1e-5);
        double Sd[75];
        for (int i = 0; i < 75; i++) Sd[i] = S[i];
        assert_close(st, Sd, 75, 1e-5);
    }
    /* chunked: 10 tokens, then 1, then 12, carrying the state */
    float st[3 * 25] = {0};
    int64_t ld = heads * 3 * d;
    assert_int_equal(mvl_op_lightning(qkv, 10, heads, d, slopes, 4, st, out, NULL), MVL_OK);
    assert_int_equal(mvl_op_lightning(qkv + 10 * ld, 1, heads, d, slopes, 4, st, out + 10 * heads * d, NULL), MVL_OK);
    assert_int_equal(mvl_op_lightning(qkv + 11 * ld, 12, heads, d, slopes, 4, st, out + 11 * heads * d, NULL), MVL_OK);
    assert_close(out, want, (size_t)(n * heads * d), 1e-5);
    free(qkv);
}

static void test_slopes(void **state) {
    (void)state;
    float s[64];
    mvl_lightning_slopes(4, 0, 8, s);
    for (int h = 0; h < 4; h++) assert_true(fabs(s[h] - pow(0.25, h + 1) * (1 + 1e-5)) < 1e-7 * pow(0.25, h + 1));
    mvl_lightning_slopes(4, 7, 8, s); /* last layer: factor 1e-5 */
    assert_true(fabs(s[0] - 0.25e-5) < 1e-11);
    /* decoder.md §4.2 sample values at full size */
    mvl_lightning_slopes(64, 0, 80, s);
    assert_true(fabs(s[0] - 0.9170132) < 1e-6 && fabs(s[63] - 0.0039063) < 1e-7);
    mvl_lightning_slopes(64, 40, 80, s);
    assert_true(fabs(s[0] - 0.4527074) < 1e-6 && fabs(s[63] - 0.0019284) < 1e-7);
    mvl_lightning_slopes(64, 78, 80, s);
    assert_true(fabs(s[0] - 0.0116168) < 1e-6 && fabs(s[63] - 4.9485e-5) < 1e-9);
    /* 6 heads (not a power of two): slopes of 4, then every other one of 8 */
    mvl_lightning_slopes(6, 0, 1, s);
    assert_true(fabs(s[4] - pow(2, -1.0) * (1 + 1e-5)) < 1e-7 && fabs(s[5] - pow(2, -3.0) * (1 + 1e-5)) < 1e-7);
}

static void test_pack_geometry(void **state) {
    (void)state;
    /* vision.md §4.3: W, H, tiles C x R, kept cols x rows, tokens */
    static const struct { int64_t w, h; int c, r; int64_t kc, kr, tokens; } ex[] = {
        {336, 336, 1, 1, 24, 24, 1176},   {1000, 700, 3, 3, 72, 50, 4226}, {2016, 2016, 4, 4, 96, 96, 9888},
        {700, 1000, 3, 3, 50, 72, 4248},  {1920, 1080, 6, 3, 128, 72, 9864}, {640, 480, 2, 2, 48, 36, 2340},
        {1024, 768, 4, 3, 96, 72, 7560},  {337, 336, 2, 1, 24, 24, 1176},
    };
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        mvl_pack_geom g;
        mvl_pack_geometry(ex[i].w, ex[i].h, ex[i].c, ex[i].r, 24, &g);
        assert_int_equal(g.col1 - g.col0, ex[i].kc);
        assert_int_equal(g.row1 - g.row0, ex[i].kr);
        assert_int_equal(mvl_pack_count(&g, 24), ex[i].tokens);
    }
    mvl_pack_geom g;
    mvl_pack_geometry(1000, 700, 3, 3, 24, &g);
    assert_int_equal(g.row0, 11); /* rows 11..60 kept */
    assert_int_equal(g.row1, 61);
}

static void test_pack_layout(void **state) {
    (void)state;
    /* grid 2, 2 tiles across, 1 down, D = 1; tile t, patch (a, b) holds 100t + 10a + b */
    float feats[3 * 4], out[4 + 2 * 5], nl = -1;
    for (int t = 0; t < 3; t++)
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) feats[t * 4 + a * 2 + b] = (float)(100 * t + 10 * a + b);
    mvl_pack_geom g = {0, 2, 0, 4};
    assert_int_equal(mvl_pack_count(&g, 2), 14);
    mvl_pack_image(feats, 1, 2, 2, 1, &g, &nl, out);
    float want[14] = {0, 1, 10, 11, 100, 101, 200, 201, -1, 110, 111, 210, 211, -1};
    assert_memory_equal(out, want, sizeof want);
    /* a wide image: drop one column each side */
    g = (mvl_pack_geom){0, 2, 1, 3};
    mvl_pack_image(feats, 1, 2, 2, 1, &g, &nl, out);
    float want2[10] = {0, 1, 10, 11, 101, 200, -1, 111, 210, -1};
    assert_memory_equal(out, want2, sizeof want2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_linear),     cmocka_unit_test(test_weight_16bit),
        cmocka_unit_test(test_norms),      cmocka_unit_test(test_activations),
        cmocka_unit_test(test_route),      cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),  cmocka_unit_test(test_lightning_blocks_equal_recurrence),
        cmocka_unit_test(test_slopes),     cmocka_unit_test(test_pack_geometry),
        cmocka_unit_test(test_pack_layout),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
