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
    mvl_op_rmsnorm(x, n, d, w, 1e-6f, false, y);
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
    mvl_op_swiglu(y, g, N, false);
    for (int i = 0; i < N; i++) want[i] = x[i] / (1 + exp(-(double)x[i])) * g[i];
    assert_close(y, want, N, 1e-6);
    memcpy(y, x, sizeof y);
    mvl_op_sigmoid_mul(y, g, N, false);
    for (int i = 0; i < N; i++) want[i] = x[i] / (1 + exp(-(double)g[i]));
    assert_close(y, want, N, 1e-6);
    memcpy(z, g, sizeof z);
    mvl_op_axpby(2.5f, x, -0.5f, z, N, false);
    for (int i = 0; i < N; i++) want[i] = 2.5 * x[i] - 0.5 * g[i];
    assert_close(z, want, N, 1e-6);
    free(x), free(g);
}

static void test_route(void **state) {
    (void)state;
    float logits[6] = {0.3f, 2.0f, -1.0f, 2.0f, 1.5f, 0.0f};
    int idx[2];
    float w[2];
    mvl_op_route_topk(logits, 6, 2, false, idx, w);
    assert_int_equal(idx[0], 1); /* tie: lower index first */
    assert_int_equal(idx[1], 3);
    assert_true(fabsf(w[0] - 0.5f) < 1e-7f && fabsf(w[1] - 0.5f) < 1e-7f);
    mvl_op_route_topk(logits, 3, 2, false, idx, w);
    double p1 = exp(2.0), p0 = exp(0.3);
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 0);
    assert_true(fabs(w[0] - p1 / (p1 + p0)) < 1e-6 && fabs(w[1] - p0 / (p1 + p0)) < 1e-6);
    /* torch_ties: among equal values, torch.topk's nth_element keeps by position, not
     * always the lower index (the bf16 long golden case hits one such tie) */
    static const struct { float l[4]; int want[2]; } ties[] = {
        {{3, 2, 2, 2}, {0, 2}}, {{1, 3, 1, 0}, {1, 2}}, {{0, 1, 3, 1}, {2, 3}}, {{1, 2, 2, 0}, {1, 2}},
    };
    for (size_t i = 0; i < sizeof ties / sizeof ties[0]; i++) {
        mvl_op_route_topk(ties[i].l, 4, 2, true, idx, w);
        int lo = idx[0] < idx[1] ? idx[0] : idx[1], hi = idx[0] ^ idx[1] ^ lo;
        if (lo != ties[i].want[0] || hi != ties[i].want[1])
            fail_msg("tie case %zu: experts {%d, %d}, want {%d, %d}", i, lo, hi, ties[i].want[0], ties[i].want[1]);
        assert_true(ties[i].l[idx[0]] >= ties[i].l[idx[1]] && fabsf(w[0] + w[1] - 1) < 1e-6f);
    }
    mvl_op_route_topk(logits, 3, 2, true, idx, w); /* no ties: the same as without */
    assert_int_equal(idx[0], 1);
    assert_int_equal(idx[1], 0);
}

static void test_rope(void **state) {
    (void)state;
    int n = 3, heads = 2, hd = 8, rot = 4;
    int64_t ld = heads * hd + 3; /* padded rows */
    float *x = rnd((size_t)(n * ld), 1), *y = malloc((size_t)(n * ld) * sizeof(float));
    memcpy(y, x, (size_t)(n * ld) * sizeof(float));
    mvl_op_rope_neox(y, n, ld, heads, hd, rot, 1000, 1e7, false);
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
        assert_int_equal(mvl_op_attention(q, ldq, n, k, v, ldkv, t, heads, kvh, d, 0.35f, causal, false, out, NULL), MVL_OK);
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
        assert_int_equal(mvl_op_lightning(qkv, n, heads, d, slopes, blocks[b], false, st, out, NULL), MVL_OK);
        assert_close(out, want, (size_t)(n * heads * d), 1e-5);
        double Sd[75];
        for (int i = 0; i < 75; i++) Sd[i] = S[i];
        assert_close(st, Sd, 75, 1e-5);
    }
    /* chunked: 10 tokens, then 1, then 12, carrying the state */
    float st[3 * 25] = {0};
    int64_t ld = heads * 3 * d;
    assert_int_equal(mvl_op_lightning(qkv, 10, heads, d, slopes, 4, false, st, out, NULL), MVL_OK);
    assert_int_equal(mvl_op_lightning(qkv + 10 * ld, 1, heads, d, slopes, 4, false, st, out + 10 * heads * d, NULL), MVL_OK);
    assert_int_equal(mvl_op_lightning(qkv + 11 * ld, 12, heads, d, slopes, 4, false, st, out + 11 * heads * d, NULL), MVL_OK);
    assert_close(out, want, (size_t)(n * heads * d), 1e-5);
    free(qkv);
}

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t bits_of(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* Round to nearest even on the bf16 grid (the top 16 bits of a float). */
static void test_round_bf16(void **state) {
    (void)state;
    static const struct { uint32_t in, want; } cases[] = {
        {0x3f800000, 0x3f800000}, /* 1.0 exact */
        {0x3f808000, 0x3f800000}, /* 1 + 2^-8: tie, to the even 1.0 */
        {0x3f818000, 0x3f820000}, /* 1 + 3*2^-8: tie, to the even 1 + 2^-6 */
        {0x3f808001, 0x3f810000}, /* just above the tie: up */
        {0x3f807fff, 0x3f800000}, /* just below the tie: down */
        {0xbf808000, 0xbf800000}, /* negative tie: to even, sign kept */
        {0xbf818000, 0xbf820000},
        {0x80000000, 0x80000000}, /* -0 */
        {0x7f800000, 0x7f800000}, /* +inf */
        {0xff800000, 0xff800000}, /* -inf */
        {0x7f7fffff, 0x7f800000}, /* FLT_MAX rounds past the largest bf16: +inf */
        {0x7f7f7fff, 0x7f7f0000}, /* below that tie: the largest bf16 */
        {0x7f7f8000, 0x7f800000}, /* the tie above the largest bf16 (odd): +inf */
        {0x00008000, 0x00000000}, /* subnormal tie to the even 0 */
        {0x00018000, 0x00020000}, /* subnormal tie to the even 2 */
        {0x00010001, 0x00010000}, /* subnormal down */
        {0x007fffff, 0x00800000}, /* largest subnormal up to the smallest normal */
        {0x80018000, 0x80020000}, /* negative subnormal tie */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t got = bits_of(mvl_bf16_round(from_bits(cases[i].in)));
        if (got != cases[i].want) fail_msg("case %zu: 0x%08x -> 0x%08x, want 0x%08x", i, cases[i].in, got, cases[i].want);
    }
    /* NaN stays NaN, quiet, sign kept, even when its payload is only in the low bits */
    uint32_t nans[] = {0x7fc00000, 0x7f800001, 0xff800001, 0x7fbfffff, 0xffffffff};
    for (size_t i = 0; i < sizeof nans / sizeof nans[0]; i++) {
        float r = mvl_bf16_round(from_bits(nans[i]));
        assert_true(isnan(r));
        assert_int_equal(bits_of(r) & 0xffff, 0);
        assert_int_equal(bits_of(r) >> 31, nans[i] >> 31);
    }
    /* the array op, and mvl_op_round_if: a no-op in float32 compute */
    float x[4] = {1.00390625f, 3.14159265f, -2.71828183f, 1e-3f}, y[4];
    memcpy(y, x, sizeof x);
    mvl_op_round_if(false, y, 4);
    assert_memory_equal(x, y, sizeof x);
    mvl_op_round_if(true, y, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(bits_of(y[i]) & 0xffff, 0);
        assert_true(fabsf(y[i] - x[i]) <= fabsf(x[i]) * (1.0f / 256)); /* within half a bf16 ulp */
        assert_true(y[i] == mvl_bf16_round(x[i]));
    }
    assert_true(y[0] == 1.0f); /* 1 + 2^-8 is a tie: to even */
}

static bool on_bf16_grid(const float *x, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (bits_of(x[i]) & 0xffff) return false;
    return true;
}

/* The bf16 variants: outputs on the bf16 grid, the order of the roundings as
 * the reference (checked on values where it shows), close to float32. */
static void test_bf16_ops(void **state) {
    (void)state;
    enum { N = 64 };
    float *x = rnd(N, 4), *g = rnd(N, 4), y[N], z[N];
    mvl_op_round_bf16(x, N);
    mvl_op_round_bf16(g, N);
    /* axpby: a*x rounded, b*y rounded, then the sum rounded */
    memcpy(y, g, sizeof y);
    mvl_op_axpby(1.5f, x, 1.0f, y, N, true);
    for (int i = 0; i < N; i++) assert_true(y[i] == mvl_bf16_round(mvl_bf16_round(1.5f * x[i]) + g[i]));
    float one = 1.0f, tiny = from_bits(0x3b800000); /* 2^-8: 1 + 2^-8 is a tie, so rounding a*x first matters */
    mvl_op_axpby(1.0f, &tiny, 1.0f, &one, 1, true);
    assert_true(one == 1.0f);
    memcpy(y, x, sizeof y);
    mvl_op_swiglu(y, g, N, true);
    memcpy(z, x, sizeof z);
    mvl_op_swiglu(z, g, N, false);
    assert_true(on_bf16_grid(y, N));
    for (int i = 0; i < N; i++) assert_true(fabsf(y[i] - z[i]) <= 0.02f * (fabsf(z[i]) + 1e-3f));
    memcpy(y, x, sizeof y);
    mvl_op_sigmoid_mul(y, g, N, true);
    assert_true(on_bf16_grid(y, N));
    /* rmsnorm: bf16(w * bf16(x * r)) */
    float w[N], out[N];
    for (int i = 0; i < N; i++) w[i] = mvl_bf16_round(0.5f + 0.01f * (float)i);
    mvl_op_rmsnorm(x, 1, N, w, 1e-5f, true, out);
    double ss = 0;
    for (int i = 0; i < N; i++) ss += (double)x[i] * x[i];
    float r = 1.0f / sqrtf((float)(ss / N) + 1e-5f);
    for (int i = 0; i < N; i++) assert_true(out[i] == mvl_bf16_round(w[i] * mvl_bf16_round(x[i] * r)));
    /* rope at position 0 is the identity on bf16 input (cos 1, sin 0) */
    memcpy(y, x, sizeof y);
    mvl_op_rope_neox(y, 1, N, 2, 32, 16, 0, 1e7, true);
    assert_memory_equal(x, y, sizeof y);
    mvl_op_rope_neox(y, 1, N, 2, 32, 16, 7, 1e7, true);
    assert_true(on_bf16_grid(y, N));
    free(x), free(g);
}

/* bf16 attention and lightning: outputs on the bf16 grid and within bf16
 * noise of the float32 ops; a decode step equals a one-token block. */
static void test_bf16_attention_lightning(void **state) {
    (void)state;
    int heads = 2, kvh = 1, d = 8;
    int64_t n = 20, ldq = heads * d, ldkv = kvh * d;
    float *q = rnd((size_t)(n * ldq), 1), *k = rnd((size_t)(n * ldkv), 1), *v = rnd((size_t)(n * ldkv), 1);
    mvl_op_round_bf16(q, n * ldq), mvl_op_round_bf16(k, n * ldkv), mvl_op_round_bf16(v, n * ldkv);
    float a32[20 * 16], a16[20 * 16];
    assert_int_equal(mvl_op_attention(q, ldq, n, k, v, ldkv, n, heads, kvh, d, 0.35f, true, false, a32, NULL), MVL_OK);
    assert_int_equal(mvl_op_attention(q, ldq, n, k, v, ldkv, n, heads, kvh, d, 0.35f, true, true, a16, NULL), MVL_OK);
    assert_true(on_bf16_grid(a16, (size_t)(n * ldq)));
    double want[20 * 16];
    for (int i = 0; i < n * ldq; i++) want[i] = a32[i];
    assert_close(a16, want, (size_t)(n * ldq), 2e-2);
    int lh = 2, ld = 4;
    int64_t m = 9, row = lh * 3 * ld;
    float slopes[2] = {0.5f, 0.01f};
    float *qkv = rnd((size_t)(m * row), 1);
    mvl_op_round_bf16(qkv, m * row);
    float s32[2 * 16] = {0}, s16[2 * 16] = {0}, s1[2 * 16] = {0}, o32[9 * 8], o16[9 * 8], o1[9 * 8];
    assert_int_equal(mvl_op_lightning(qkv, m, lh, ld, slopes, 4, false, s32, o32, NULL), MVL_OK);
    assert_int_equal(mvl_op_lightning(qkv, m, lh, ld, slopes, 4, true, s16, o16, NULL), MVL_OK);
    assert_true(on_bf16_grid(o16, (size_t)(m * lh * ld)));
    double w32[9 * 8], ws[2 * 16];
    for (int i = 0; i < m * lh * ld; i++) w32[i] = o32[i];
    for (int i = 0; i < 2 * 16; i++) ws[i] = s32[i];
    assert_close(o16, w32, (size_t)(m * lh * ld), 2e-2);
    assert_close(s16, ws, 2 * 16, 2e-2);
    /* token by token with block 1 is the same arithmetic as block size 1 in one call */
    float s1b[2 * 16] = {0}, o1b[9 * 8];
    assert_int_equal(mvl_op_lightning(qkv, m, lh, ld, slopes, 1, true, s1b, o1b, NULL), MVL_OK);
    for (int64_t t = 0; t < m; t++)
        assert_int_equal(mvl_op_lightning(qkv + t * row, 1, lh, ld, slopes, 4, true, s1, o1 + t * lh * ld, NULL), MVL_OK);
    assert_memory_equal(o1, o1b, sizeof o1);
    assert_memory_equal(s1, s1b, sizeof s1);
    free(q), free(k), free(v), free(qkv);
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
        cmocka_unit_test(test_round_bf16), cmocka_unit_test(test_bf16_ops),
        cmocka_unit_test(test_bf16_attention_lightning),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
