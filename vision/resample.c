/* Pillow-compatible resizing (vision.md §3.6).
 *
 * Why not stb_image_resize: its Catmull-Rom is the same kernel, but it works
 * in float, does both passes without rounding to uint8 in between and picks
 * its own window, so it lands one or more units away from Pillow on many
 * pixels. The reference resizes with Pillow, so this file reproduces
 * Pillow's Resample.c arithmetic: double-precision Keys cubic (a = -0.5) with
 * the support widened by the downscale factor, weights normalised then
 * turned into 22-bit fixed point (rounded half away from zero), a horizontal
 * pass into a uint8 intermediate, then a vertical pass, each accumulating
 * from 2^21 and clipping to 0..255. I;16 uses Pillow's double 16-bit path.
 * The mode rules of Image.resize (NEAREST for P/1, premultiplied RGBA/LA, a
 * copy at the same size) live in mvl_image_resize. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"
#include "vision/resample.h"
#include "vision/vision.h"

#define PRECISION_BITS MVL_RESAMPLE_PRECISION_BITS

static double bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

void mvl_resample_coeffs_free(mvl_resample_coeffs *c) {
    free(c->bounds);
    free(c->kd);
    free(c->ki);
}

/* Declared in vision/resample.h. */
mvl_status mvl_resample_coeffs_init(mvl_resample_coeffs *c, int in_size, int out_size, int fixed, mvl_error *err) {
    memset(c, 0, sizeof *c);
    double scale = (double)(float)in_size / out_size; /* Pillow: (double)(in1 - in0) in float */
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 2.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    c->ksize = ksize;
    c->bounds = mvl_malloc(sizeof(int) * 2 * (size_t)out_size, err);
    c->kd = mvl_malloc(sizeof(double) * (size_t)ksize * (size_t)out_size, err);
    if (!c->bounds || !c->kd) {
        mvl_resample_coeffs_free(c);
        return MVL_ERR_NOMEM;
    }
    double inv = 1.0 / filterscale;
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale;
        double ww = 0.0;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double *k = c->kd + (size_t)xx * ksize;
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bicubic((x + xmin - center + 0.5) * inv);
            k[x] = w;
            ww += w;
        }
        if (ww != 0.0)
            for (x = 0; x < xmax; x++) k[x] /= ww;
        for (; x < ksize; x++) k[x] = 0;
        c->bounds[xx * 2] = xmin;
        c->bounds[xx * 2 + 1] = xmax;
    }
    if (fixed) {
        size_t n = (size_t)ksize * out_size;
        c->ki = mvl_malloc(sizeof(int32_t) * n, err);
        if (!c->ki) {
            mvl_resample_coeffs_free(c);
            return MVL_ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            double v = c->kd[i] * (1 << PRECISION_BITS);
            c->ki[i] = (int32_t)(c->kd[i] < 0 ? -0.5 + v : 0.5 + v);
        }
    }
    return MVL_OK;
}

static inline uint8_t clip8(int32_t s) {
    int32_t v = s >> PRECISION_BITS; /* arithmetic shift, as Pillow's lookup table assumes */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Integer sums are exact in any order, so the passes are free to be
 * restructured for speed without leaving Pillow's results: the horizontal
 * pass splits each row into channel planes so every output sample is a
 * contiguous dot product, and the hot loops are built for AVX2 as well as
 * the baseline (picked at run time). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MVL_HOT __attribute__((target_clones("avx2", "default")))
#else
#define MVL_HOT
#endif

/* Horizontal pass: rows [y0, y0+rows) of a C-channel image. Rows go in
 * groups of HROWS: the group is transposed so that the HROWS*C samples of
 * one source column lie side by side, and each output pixel is then a short
 * loop over taps whose inner loop runs across those lanes, which vectorises
 * (one multiply-add per lane and tap). The integer sums are exact, so the
 * order changes nothing: the result is Pillow's to the bit. plane is scratch
 * [in_w, HROWS*C]. */
#define HROWS 8

/* One output column of a group: L lanes (a compile-time constant in the
 * callers below, so the lane loop becomes whole vectors). */
static inline __attribute__((always_inline)) void hcol(const uint8_t *plane, const int32_t *w, int xmin, int n,
                                                       int L, int32_t *acc) {
    for (int l = 0; l < L; l++) acc[l] = 1 << (PRECISION_BITS - 1);
    for (int t = 0; t < n; t++) {
        const uint8_t *col = plane + (size_t)(xmin + t) * L;
        const int32_t wt = w[t];
        for (int l = 0; l < L; l++) acc[l] += col[l] * wt;
    }
}

MVL_HOT static void hpass8(const uint8_t *in, int in_w, int y0, int rows, uint8_t *out, int ow,
                           const mvl_resample_coeffs *k, int C, uint8_t *plane) {
    for (int r0 = 0; r0 < rows; r0 += HROWS) {
        const int R = rows - r0 < HROWS ? rows - r0 : HROWS, L = R * C;
        for (int r = 0; r < R; r++) {
            const uint8_t *line = in + (size_t)(y0 + r0 + r) * in_w * C;
            uint8_t *dst = plane + (size_t)r * C;
            if (C == 3) /* constant sizes, so the copies inline */
                for (int x = 0; x < in_w; x++, dst += L, line += 3) memcpy(dst, line, 3);
            else
                for (int x = 0; x < in_w; x++, dst += L, line += C)
                    for (int ch = 0; ch < C; ch++) dst[ch] = line[ch];
        }
        for (int xx = 0; xx < ow; xx++) {
            const int xmin = k->bounds[xx * 2], n = k->bounds[xx * 2 + 1];
            const int32_t *w = k->ki + (size_t)xx * k->ksize;
            int32_t acc[HROWS * 4];
            if (L == HROWS * 3)
                hcol(plane, w, xmin, n, HROWS * 3, acc);
            else if (L == HROWS)
                hcol(plane, w, xmin, n, HROWS, acc);
            else if (L == HROWS * 4)
                hcol(plane, w, xmin, n, HROWS * 4, acc);
            else
                hcol(plane, w, xmin, n, L, acc);
            for (int r = 0; r < R; r++)
                for (int ch = 0; ch < C; ch++)
                    out[((size_t)(r0 + r) * ow + xx) * C + ch] = clip8(acc[r * C + ch]);
        }
    }
}

/* Vertical pass over rows of n samples; bounds are relative to in. acc is
 * scratch [n]. Row-at-a-time so the inner loop vectorises. */
MVL_HOT static void vpass8(const uint8_t *in, size_t n, int oh, const mvl_resample_coeffs *k, int row_offset,
                   int32_t *acc, uint8_t *out) {
    for (int yy = 0; yy < oh; yy++) {
        int ymin = k->bounds[yy * 2] - row_offset, ymax = k->bounds[yy * 2 + 1];
        const int32_t *w = k->ki + (size_t)yy * k->ksize;
        for (size_t i = 0; i < n; i++) acc[i] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *line = in + (size_t)(ymin + y) * n;
            int32_t wy = w[y];
            for (size_t i = 0; i < n; i++) acc[i] += line[i] * wy;
        }
        uint8_t *o = out + (size_t)yy * n;
        for (size_t i = 0; i < n; i++) o[i] = clip8(acc[i]);
    }
}

static inline uint16_t round16(double ss) {
    int v = (int)(ss >= 0.0 ? ss + 0.5F : ss - 0.5F); /* Pillow ROUND_UP then CLIP16 */
    return (uint16_t)(v <= 0 ? 0 : v < 65536 ? v : 65535);
}

/* One horizontal pass: rows [y0, y0+rows) of a sw-wide source into dw-wide
 * rows of dst. */
static mvl_status pass_h(const void *src, int sw, int y0, int rows, void *dst, int dw,
                         const mvl_resample_coeffs *k, int C, int wide) {
    if (!wide) {
        uint8_t *plane = malloc((size_t)sw * C * HROWS);
        if (!plane) return MVL_ERR_NOMEM;
        hpass8(src, sw, y0, rows, dst, dw, k, C, plane);
        free(plane);
        return MVL_OK;
    }
    const uint16_t *in = src;
    uint16_t *o = dst;
    for (int yy = 0; yy < rows; yy++)
        for (int xx = 0; xx < dw; xx++) {
            int xmin = k->bounds[xx * 2], xmax = k->bounds[xx * 2 + 1];
            const double *w = k->kd + (size_t)xx * k->ksize;
            const uint16_t *p = in + (size_t)(y0 + yy) * sw + xmin;
            double ss = 0.0;
            for (int x = 0; x < xmax; x++) ss += p[x] * w[x];
            o[(size_t)yy * dw + xx] = round16(ss);
        }
    return MVL_OK;
}

/* One vertical pass over rows of n samples; the source holds the rows from
 * row_offset on. */
static mvl_status pass_v(const void *src, size_t n, int row_offset, void *dst, int dh, const mvl_resample_coeffs *k,
                         int wide, mvl_error *err) {
    if (!wide) {
        int32_t *acc = mvl_malloc(sizeof(int32_t) * n, err);
        if (!acc) return MVL_ERR_NOMEM;
        vpass8(src, n, dh, k, row_offset, acc, dst);
        free(acc);
        return MVL_OK;
    }
    const uint16_t *in = src;
    uint16_t *o = dst;
    for (int yy = 0; yy < dh; yy++) {
        int ymin = k->bounds[yy * 2] - row_offset, ymax = k->bounds[yy * 2 + 1];
        const double *w = k->kd + (size_t)yy * k->ksize;
        for (size_t i = 0; i < n; i++) {
            double ss = 0.0;
            for (int y = 0; y < ymax; y++) ss += in[(size_t)(ymin + y) * n + i] * w[y];
            o[(size_t)yy * n + i] = round16(ss);
        }
    }
    return MVL_OK;
}

/* Pillow's separable two-pass resize: only the passes whose size changes;
 * the first pass rounds to the sample type. Horizontal pass first, always
 * (vision.md §3.6): that is what Pillow did up to 12.1, and so what the
 * reference stack (transformers 4.47.1, Dec 2024, with Pillow 11) computed.
 * Newer Pillow may go vertical first (12.2-12.3 for H > 100 W; 13.0 when the
 * height loses more than twice the pixels the width does), which changes some
 * portrait resizes by a unit; the goldens pin Pillow 11.0.0 for that reason
 * (scripts/setup-python.sh). */
static mvl_status resample(const mvl_image *img, int dw, int dh, mvl_image *dst, mvl_error *err) {
    int sw = img->width, sh = img->height, C = img->channels;
    int wide = img->mode == MVL_PIXEL_I16;
    size_t sample = wide ? 2 : 1;
    int need_h = dw != sw, need_v = dh != sh;
    mvl_resample_coeffs kh = {0}, kv = {0};
    void *tmp = NULL;
    mvl_status st = mvl_resample_coeffs_init(&kh, sw, dw, !wide, err);
    if (st == MVL_OK) st = mvl_resample_coeffs_init(&kv, sh, dh, !wide, err);
    if (st != MVL_OK) goto done;
    if (need_h && need_v) {
        /* horizontal pass only over the rows the vertical pass reads */
        int y_first = kv.bounds[0];
        int y_last = kv.bounds[dh * 2 - 2] + kv.bounds[dh * 2 - 1];
        tmp = mvl_malloc((size_t)(y_last - y_first) * dw * C * sample, err);
        if (!tmp) {
            st = MVL_ERR_NOMEM;
            goto done;
        }
        st = pass_h(img->data, sw, y_first, y_last - y_first, tmp, dw, &kh, C, wide);
        if (st == MVL_OK) st = pass_v(tmp, (size_t)dw * C, y_first, dst->data, dh, &kv, wide, err);
    } else if (need_h) {
        st = pass_h(img->data, sw, 0, sh, dst->data, dw, &kh, C, wide);
    } else {
        st = pass_v(img->data, (size_t)sw * C, 0, dst->data, dh, &kv, wide, err);
    }
done:
    mvl_resample_coeffs_free(&kh);
    mvl_resample_coeffs_free(&kv);
    free(tmp);
    return st;
}

/* Pillow ImagingScaleAffine: nearest neighbour with the source position
 * accumulated in double, as Image.resize does for modes P and 1. */
static void resize_nearest(const mvl_image *img, int dw, int dh, mvl_image *dst) {
    int C = img->channels, sw = img->width, sh = img->height;
    size_t px = (size_t)C * (img->mode == MVL_PIXEL_I16 ? 2 : 1);
    double ax = (double)(float)sw / dw, ay = (double)(float)sh / dh;
    const uint8_t *in = img->data;
    uint8_t *out = dst->data;
    double yo = ay * 0.5;
    for (int y = 0; y < dh; y++, yo += ay) {
        int yi = yo < 0.0 ? -1 : (int)yo;
        uint8_t *o = out + (size_t)y * dw * px;
        memset(o, 0, (size_t)dw * px); /* Pillow fills what maps outside */
        if (yi < 0 || yi >= sh) continue;
        double xo = ax * 0.5;
        for (int x = 0; x < dw; x++, xo += ax) {
            int xi = xo < 0.0 ? -1 : (int)xo;
            if (xi >= 0 && xi < sw) memcpy(o + x * px, in + ((size_t)yi * sw + xi) * px, px);
        }
    }
}

#define MULDIV255(a, b) (((((a) * (b) + 128) >> 8) + (a) * (b) + 128) >> 8) /* Pillow */

mvl_status mvl_image_resize(const mvl_image *img, int dw, int dh, mvl_image **out, mvl_error *err) {
    mvl_image *dst;
    *out = NULL;
    mvl_status st = mvl_image_new(dw, dh, img->mode, &dst, err);
    if (st != MVL_OK) return st;
    dst->nearest = img->nearest;
    size_t bytes = (size_t)dw * dh * img->channels * (img->mode == MVL_PIXEL_I16 ? 2 : 1);
    if (dw == img->width && dh == img->height) {
        memcpy(dst->data, img->data, bytes); /* Image.resize returns a copy */
    } else if (img->nearest) {
        resize_nearest(img, dw, dh, dst);
    } else if (img->mode == MVL_PIXEL_RGBA || img->mode == MVL_PIXEL_LA) {
        /* Pillow converts to RGBa/La (premultiplied), resizes, converts back. */
        int C = img->channels;
        size_t n = (size_t)img->width * img->height;
        mvl_image pre = *img;
        pre.data = mvl_malloc(n * C, err);
        if (!pre.data) {
            mvl_image_free(dst);
            return MVL_ERR_NOMEM;
        }
        const uint8_t *s = img->data;
        uint8_t *p = pre.data;
        for (size_t i = 0; i < n; i++, s += C, p += C) {
            unsigned a = s[C - 1];
            for (int ch = 0; ch < C - 1; ch++) p[ch] = (uint8_t)(MULDIV255(s[ch], a));
            p[C - 1] = (uint8_t)a;
        }
        st = resample(&pre, dw, dh, dst, err);
        free(pre.data);
        uint8_t *d = dst->data;
        for (size_t i = 0, m = (size_t)dw * dh; st == MVL_OK && i < m; i++, d += C) {
            unsigned a = d[C - 1];
            if (a == 0 || a == 255) continue;
            for (int ch = 0; ch < C - 1; ch++) {
                unsigned v = 255u * d[ch] / a;
                d[ch] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    } else {
        st = resample(img, dw, dh, dst, err);
    }
    if (st != MVL_OK) {
        mvl_image_free(dst);
        return st;
    }
    *out = dst;
    return MVL_OK;
}

void mvl_convert_row_to_rgb(const mvl_image *img, const void *src, size_t n, uint8_t *d) {
    const uint8_t *s = src;
    switch (img->mode) {
    case MVL_PIXEL_RGB: memcpy(d, s, n * 3); break;
    case MVL_PIXEL_L:
        for (size_t i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
        break;
    case MVL_PIXEL_LA: /* la2rgb: gray, alpha dropped */
        for (size_t i = 0; i < n; i++) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[2 * i];
        break;
    case MVL_PIXEL_RGBA: /* rgba2rgb / RGBA paste into RGB: alpha dropped */
        for (size_t i = 0; i < n; i++) memcpy(d + 3 * i, s + 4 * i, 3);
        break;
    case MVL_PIXEL_CMYK: /* Pillow cmyk2rgb */
        for (size_t i = 0; i < n; i++) {
            int nk = 255 - s[4 * i + 3];
            for (int ch = 0; ch < 3; ch++) {
                int v = nk - (int)(MULDIV255(s[4 * i + ch], nk));
                d[3 * i + ch] = (uint8_t)(v < 0 ? 0 : v);
            }
        }
        break;
    case MVL_PIXEL_I16: { /* I16_RGB: values above 255 saturate */
        const uint16_t *w = src;
        for (size_t i = 0; i < n; i++) {
            uint8_t v = w[i] > 255 ? 255 : (uint8_t)w[i];
            d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = v;
        }
        break;
    }
    }
}
