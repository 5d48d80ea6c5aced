// Anyres preprocessing on the GPU (see cuda_preprocess.h; vision.md §3).
//
// Each resize is Pillow's separable bicubic in integers (§3.6, and the
// comment at the top of vision/resample.c): a horizontal pass into a uint8
// intermediate, then a vertical pass, each sample accumulated from 2^21 with
// the int32 weights of mvl_resample_coeffs_init, >> 22 and clipped to
// 0..255; only the passes whose size changes run. Integer sums do not depend
// on their order, so one thread per output pixel gives the CPU's bytes.
// The vertical pass writes the tiles directly: each tile pixel maps to a
// canvas pixel, which is either black padding or a sample of the resized
// image, so no canvas is ever stored.
//
// With nvJPEG (MVL_HAVE_NVJPEG), baseline JPEGs can also be decoded here:
// nvJPEG's Y/Cb/Cr planes matched libjpeg-turbo's islow IDCT exactly on the
// files measured (its own RGB output of 4:4:4 and gray files was identical
// too), but its chroma upsampling is not libjpeg's "fancy" triangle filter
// (4:2:0 differed by up to 92 on 75% of the pixels of the benchmark image),
// so the planes are taken as they are and the upsampling and the integer
// YCbCr -> RGB of libjpeg(-turbo) are done below.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>
#include <string>
#include <thread>

#include <cuda_runtime.h>
#ifdef MVL_HAVE_NVJPEG
#include <jpeglib.h>
#include <nvjpeg.h>
#endif

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_preprocess.h"
extern "C" {
#include "vision/resample.h"
#include "vision/vision.h"
}

namespace {

const int kBands = 8; // upload bands of mvl_cuda_preprocess: the copy of band i+1 overlaps the DMA of band i

__device__ __forceinline__ uint8_t clip8(int32_t s) {
    int32_t v = s >> MVL_RESAMPLE_PRECISION_BITS; // arithmetic shift, as Pillow
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// One resampling axis on the device: bounds [out, 2] (first tap, count) and
// weights [out, ksize], as mvl_resample_coeffs.
struct Axis {
    const int *bounds;
    const int32_t *w;
    int ksize;
};

// Horizontal pass: rows [y0, y0 + rows) of a sw-wide RGB image into
// dw-wide rows of dst. One thread per output pixel.
__global__ void k_hpass(const uint8_t *__restrict__ src, int sw, int y0, int rows, int dw, Axis ax,
                        uint8_t *__restrict__ dst) {
    const int64_t n = (int64_t)rows * dw;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int r = (int)(i / dw), xx = (int)(i % dw);
        const int xmin = ax.bounds[2 * xx], taps = ax.bounds[2 * xx + 1];
        const int32_t *w = ax.w + (int64_t)xx * ax.ksize;
        const uint8_t *p = src + ((int64_t)(y0 + r) * sw + xmin) * 3;
        int32_t a0 = 1 << (MVL_RESAMPLE_PRECISION_BITS - 1), a1 = a0, a2 = a0;
        for (int t = 0; t < taps; t++, p += 3) {
            const int32_t wt = w[t];
            a0 += p[0] * wt;
            a1 += p[1] * wt;
            a2 += p[2] * wt;
        }
        uint8_t *o = dst + i * 3;
        o[0] = clip8(a0);
        o[1] = clip8(a1);
        o[2] = clip8(a2);
    }
}

// Where a resized image lands: nw x nh pixels at (x0, y0) of a canvas cut
// into `cols` tiles across (vision.md §3.3); outside it the canvas is black.
struct Place {
    int nw, nh, x0, y0, cols, S;
};

// Vertical pass (when vert.bounds is set; else a copy of rows) of src, an
// nw-wide RGB image holding the rows from row_off on, written as S x S tiles
// [ntiles, S, S, 3]. One thread per tile pixel.
__global__ void k_place(const uint8_t *__restrict__ src, int row_off, Axis vert, Place pl, int ntiles,
                        uint8_t *__restrict__ dst) {
    const int64_t per_tile = (int64_t)pl.S * pl.S, n = per_tile * ntiles;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int t = (int)(i / per_tile), yx = (int)(i % per_tile);
        const int X = (t % pl.cols) * pl.S + yx % pl.S - pl.x0, Y = (t / pl.cols) * pl.S + yx / pl.S - pl.y0;
        uint8_t *o = dst + i * 3;
        if (X < 0 || X >= pl.nw || Y < 0 || Y >= pl.nh) {
            o[0] = o[1] = o[2] = 0;
            continue;
        }
        const size_t stride = (size_t)pl.nw * 3;
        if (!vert.bounds) {
            const uint8_t *p = src + (size_t)(Y - row_off) * stride + (size_t)X * 3;
            o[0] = p[0], o[1] = p[1], o[2] = p[2];
            continue;
        }
        const int ymin = vert.bounds[2 * Y] - row_off, taps = vert.bounds[2 * Y + 1];
        const int32_t *w = vert.w + (int64_t)Y * vert.ksize;
        const uint8_t *p = src + (size_t)ymin * stride + (size_t)X * 3;
        int32_t a0 = 1 << (MVL_RESAMPLE_PRECISION_BITS - 1), a1 = a0, a2 = a0;
        for (int k = 0; k < taps; k++, p += stride) {
            const int32_t wt = w[k];
            a0 += p[0] * wt;
            a1 += p[1] * wt;
            a2 += p[2] * wt;
        }
        o[0] = clip8(a0);
        o[1] = clip8(a1);
        o[2] = clip8(a2);
    }
}

#ifdef MVL_HAVE_NVJPEG
// libjpeg's YCbCr -> RGB (jdcolor.c, 16-bit fixed point, tables rounded
// half up) and its h2v1 / h2v2 "fancy" chroma upsampling (jdsample.c):
// each output sample is 3/4 of the nearer chroma sample plus 1/4 of the
// next one out, per axis, with libjpeg's alternating rounding biases, and
// the edge samples replicated. One thread per pixel; hs, vs: the luma's
// sampling factors over the chroma's (1 or 2).
__global__ void k_ycc_rgb(const uint8_t *__restrict__ Y, const uint8_t *__restrict__ Cb,
                          const uint8_t *__restrict__ Cr, int W, int H, int cw, int ch, int hs, int vs, int gray,
                          uint8_t *__restrict__ dst) {
    const int64_t n = (int64_t)W * H;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int x = (int)(i % W), y = (int)(i / W);
        const int yv = Y[i];
        uint8_t *o = dst + i * 3;
        if (gray) {
            o[0] = o[1] = o[2] = (uint8_t)yv;
            continue;
        }
        int cb, cr;
        const int j = x / hs, r = y / vs;
        if (hs == 1 && vs == 1) {
            cb = Cb[(int64_t)r * cw + j], cr = Cr[(int64_t)r * cw + j];
        } else {
            const int jn = min(max(x % 2 ? j + 1 : j - 1, 0), cw - 1); // horizontal neighbour
            if (vs == 1) { // h2v1: (3 * near + far + 1 or 2) >> 2
                const int64_t row = (int64_t)r * cw, bias = x % 2 ? 2 : 1;
                cb = (int)((3 * Cb[row + j] + Cb[row + jn] + bias) >> 2);
                cr = (int)((3 * Cr[row + j] + Cr[row + jn] + bias) >> 2);
            } else { // h2v2: column sums 3 * near row + far row, then (3 * near + far + 8 or 7) >> 4
                const int rn = min(max(y % 2 ? r + 1 : r - 1, 0), ch - 1);
                const int64_t a = (int64_t)r * cw, b = (int64_t)rn * cw;
                const int bias = x % 2 ? 7 : 8;
                cb = (3 * (3 * Cb[a + j] + Cb[b + j]) + 3 * Cb[a + jn] + Cb[b + jn] + bias) >> 4;
                cr = (3 * (3 * Cr[a + j] + Cr[b + j]) + 3 * Cr[a + jn] + Cr[b + jn] + bias) >> 4;
            }
        }
        const int32_t half = 1 << 15, dcb = cb - 128, dcr = cr - 128;
        const int rr = yv + ((91881 * dcr + half) >> 16);            // FIX(1.40200)
        const int gg = yv + ((-22554 * dcb + half - 46802 * dcr) >> 16); // FIX(0.34414), FIX(0.71414)
        const int bb = yv + ((116130 * dcb + half) >> 16);           // FIX(1.77200)
        o[0] = (uint8_t)min(max(rr, 0), 255);
        o[1] = (uint8_t)min(max(gg, 0), 255);
        o[2] = (uint8_t)min(max(bb, 0), 255);
    }
}
#endif

// A buffer that only grows; device or pinned host memory.
struct Buf {
    void *p = nullptr;
    size_t cap = 0;
};

} // namespace

struct mvl_cuda_prep {
    uint8_t *tiles = nullptr; // device [capacity, S, S, 3], not owned
    int capacity = 0, S = 0;
    cudaStream_t stream = nullptr;
    Buf host_img, dev_img; // the source image [h, w, 3]: pinned host and device
    Buf host_coef, dev_coef; // the weights of one image's resizes (int32)
    Buf dev_tmp;             // horizontal-pass outputs
    cudaEvent_t host_free = nullptr; // recorded after the last copy out of the pinned buffers
#ifdef MVL_HAVE_NVJPEG
    nvjpegHandle_t nvj = nullptr; // created at the first JPEG
    nvjpegJpegState_t nvj_state = nullptr;
    Buf dev_planes; // nvJPEG's output: Y [H, W], then Cb and Cr [ch, cw]
    // libjpeg's decode of the last file nvJPEG decoded, running on the CPU
    // while the GPU works; mvl_cuda_prep_wait joins it, reports its verdict
    // and compares the pixels.
    std::thread check;
    mvl_status check_st = MVL_OK;
    mvl_error check_err = {};
    mvl_image *check_img = nullptr;
    const mvl_preproc_config *check_cfg = nullptr;
    int check_first = 0;
#endif
    int width = 0, height = 0;       // the image between _begin and _end
    int64_t rows_sent = 0;           // rows uploaded since _begin
};

namespace {

mvl_status grow(Buf *b, size_t n, bool host, mvl_error *err) {
    if (n <= b->cap) return MVL_OK;
    if (b->p) {
        if (host) CUDA_CHECK(cudaFreeHost(b->p));
        else CUDA_CHECK(cudaFree(b->p));
    }
    b->p = nullptr;
    b->cap = 0;
    n += n / 4; // room for a slightly larger next image
    if (host) CUDA_CHECK(cudaMallocHost(&b->p, n));
    else CUDA_CHECK(cudaMalloc(&b->p, n));
    b->cap = n;
    return MVL_OK;
}

// One resize of the sw x sh source to dw x dh and where it lands: its two
// axes' weights (offsets into the coefficient buffer, in int32 units) and
// the horizontal pass's rows.
struct Resize {
    int dw, dh;
    mvl_resample_coeffs h, v;
    size_t h_off, v_off; // bounds at off, weights at off + 2 * out
    int y_first, y_last; // source rows the vertical pass reads
    size_t tmp_off;      // byte offset of its horizontal-pass output
    Place pl;
};

size_t axis_ints(const mvl_resample_coeffs *c, int out) { return (size_t)2 * out + (size_t)c->ksize * out; }

void axis_pack(const mvl_resample_coeffs *c, int out, int32_t *dst) {
    memcpy(dst, c->bounds, sizeof(int) * 2 * (size_t)out);
    memcpy(dst + 2 * (size_t)out, c->ki, sizeof(int32_t) * (size_t)c->ksize * out);
}

Axis axis_at(const mvl_cuda_prep *p, const mvl_resample_coeffs *c, size_t off, int out) {
    const int32_t *base = (const int32_t *)p->dev_coef.p + off;
    return Axis{base, base + 2 * (size_t)out, c->ksize};
}

mvl_status enqueue_resize(mvl_cuda_prep *p, const Resize &r, int ntiles, uint8_t *dst, mvl_error *err) {
    const int sw = p->width, sh = p->height;
    const uint8_t *src = (const uint8_t *)p->dev_img.p;
    int row_off = 0;
    if (r.dw != sw) { // horizontal pass over the rows the vertical one reads (all when it does not run)
        const int y0 = r.dh != sh ? r.y_first : 0, rows = r.dh != sh ? r.y_last - r.y_first : sh;
        uint8_t *tmp = (uint8_t *)p->dev_tmp.p + r.tmp_off;
        k_hpass<<<mvl_grid_for((int64_t)rows * r.dw, 256), 256, 0, p->stream>>>(src, sw, y0, rows, r.dw,
                                                                         axis_at(p, &r.h, r.h_off, r.dw), tmp);
        LAUNCH_CHECK();
        src = tmp;
        row_off = y0;
    }
    Axis vert = r.dh != sh ? axis_at(p, &r.v, r.v_off, r.dh) : Axis{nullptr, nullptr, 0};
    k_place<<<mvl_grid_for((int64_t)ntiles * p->S * p->S, 256), 256, 0, p->stream>>>(src, row_off, vert, r.pl,
                                                                                      ntiles, dst);
    LAUNCH_CHECK();
    return MVL_OK;
}

mvl_status check_fit(const mvl_cuda_prep *p, const mvl_preproc_config *cfg, int first, int n, mvl_error *err) {
    if (cfg->size != p->S)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: tile size %d, the tile buffer holds %d-pixel tiles",
                        cfg->size, p->S);
    if (first < 0 || n > p->capacity - first)
        return mvl_fail(err, MVL_ERR_LIMIT, "CUDA preprocessing: tiles %d..%d do not fit the %d-tile buffer", first,
                        first + n - 1, p->capacity);
    return MVL_OK;
}

// CPU preprocessing and an upload of the tiles: modes other than RGB.
mvl_status fallback(mvl_cuda_prep *p, const mvl_image *img, const mvl_preproc_config *cfg, int first,
                    mvl_cuda_image *im, int *n_tiles, mvl_error *err) {
    mvl_preproc_result pr;
    TRY(mvl_preprocess(img, cfg, &pr, err));
    mvl_status st = check_fit(p, cfg, first, pr.n_patches, err);
    cudaError_t e = cudaEventSynchronize(p->host_free); // the pinned buffer is free again
    if (st == MVL_OK && e != cudaSuccess)
        st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: %s", cudaGetErrorString(e));
    size_t bytes = (size_t)pr.n_patches * p->S * p->S * 3;
    if (st == MVL_OK) st = grow(&p->host_img, bytes, true, err);
    if (st == MVL_OK) {
        memcpy(p->host_img.p, pr.tiles, bytes);
        e = cudaMemcpyAsync(p->tiles + (size_t)first * p->S * p->S * 3, p->host_img.p, bytes,
                                        cudaMemcpyHostToDevice, p->stream);
        if (e == cudaSuccess) e = cudaEventRecord(p->host_free, p->stream);
        if (e != cudaSuccess)
            st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: tile upload failed: %s", cudaGetErrorString(e));
    }
    if (st == MVL_OK) {
        *im = mvl_cuda_image{pr.width, pr.height, pr.cols, pr.rows};
        *n_tiles = pr.n_patches;
    }
    mvl_preproc_result_free(&pr);
    return st;
}

} // namespace

extern "C" mvl_status mvl_cuda_prep_init(uint8_t *tiles, int capacity, int tile_side, void *stream,
                                         mvl_cuda_prep **out, mvl_error *err) {
    *out = nullptr;
    if (!tiles || capacity < 1 || tile_side < 1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: needs a device tile buffer of at least one tile");
    mvl_cuda_prep *p = new (std::nothrow) mvl_cuda_prep();
    if (!p) return mvl_fail(err, MVL_ERR_NOMEM, "CUDA preprocessing: out of host memory");
    p->tiles = tiles;
    p->capacity = capacity;
    p->S = tile_side;
    p->stream = (cudaStream_t)stream;
    cudaError_t e = cudaEventCreateWithFlags(&p->host_free, cudaEventDisableTiming);
    if (e != cudaSuccess) {
        delete p;
        return mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: cudaEventCreate failed: %s", cudaGetErrorString(e));
    }
    *out = p;
    return MVL_OK;
}

extern "C" void mvl_cuda_prep_free(mvl_cuda_prep *p) {
    if (!p) return;
#ifdef MVL_HAVE_NVJPEG
    if (p->check.joinable()) p->check.join();
    mvl_image_free(p->check_img);
#endif
    cudaStreamSynchronize(p->stream);
    cudaFreeHost(p->host_img.p);
    cudaFreeHost(p->host_coef.p);
    cudaFree(p->dev_img.p);
    cudaFree(p->dev_coef.p);
    cudaFree(p->dev_tmp.p);
    cudaEventDestroy(p->host_free);
#ifdef MVL_HAVE_NVJPEG
    if (p->nvj_state) nvjpegJpegStateDestroy(p->nvj_state);
    if (p->nvj) nvjpegDestroy(p->nvj);
    cudaFree(p->dev_planes.p);
#endif
    delete p;
}

extern "C" mvl_status mvl_cuda_prep_begin(mvl_cuda_prep *p, int width, int height, uint8_t **rows, mvl_error *err) {
    *rows = nullptr;
#ifdef MVL_HAVE_NVJPEG
    if (p->check.joinable() || p->check_img)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: a file's check is pending: mvl_cuda_prep_wait first");
#endif
    if (width < 1 || height < 1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: empty image %dx%d", width, height);
    // The previous image's copies out of the pinned buffers must be done
    // before they are written again (and before a device buffer moves).
    CUDA_CHECK(cudaEventSynchronize(p->host_free));
    const size_t bytes = (size_t)width * height * 3;
    if (bytes > p->dev_img.cap) CUDA_CHECK(cudaStreamSynchronize(p->stream));
    TRY(grow(&p->host_img, bytes, true, err));
    TRY(grow(&p->dev_img, bytes, false, err));
    p->width = width;
    p->height = height;
    p->rows_sent = 0;
    *rows = (uint8_t *)p->host_img.p;
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_prep_rows(mvl_cuda_prep *p, int y0, int y1, mvl_error *err) {
    if (y0 < 0 || y1 > p->height || y0 >= y1)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: rows %d..%d of a %d-row image", y0, y1, p->height);
    const size_t row = (size_t)p->width * 3;
    CUDA_CHECK(cudaMemcpyAsync((uint8_t *)p->dev_img.p + y0 * row, (uint8_t *)p->host_img.p + y0 * row,
                               (size_t)(y1 - y0) * row, cudaMemcpyHostToDevice, p->stream));
    p->rows_sent += y1 - y0;
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_prep_end(mvl_cuda_prep *p, const mvl_preproc_config *cfg, int first,
                                        mvl_cuda_image *im, int *n_tiles, mvl_error *err) {
    const int S = cfg->size, W = p->width, H = p->height;
    if (W < 1 || p->rows_sent < H)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: %lld of the image's %d rows were uploaded",
                        (long long)p->rows_sent, H);
    p->rows_sent = 0;
    int cw, ch;
    mvl_select_canvas(cfg, W, H, &cw, &ch);
    const int cols = cw / S, rows = ch / S, n = 1 + cols * rows;
    TRY(check_fit(p, cfg, first, n, err));
    // §3.3 as mvl_preprocess (mvl_letterbox); §3.4: the thumbnail squashed to S x S.
    Resize rs[2];
    memset(rs, 0, sizeof rs);
    rs[0].dw = rs[0].dh = S;
    rs[0].pl = Place{S, S, 0, 0, 1, S};
    Resize &c = rs[1];
    c.pl.cols = cols;
    c.pl.S = S;
    mvl_letterbox(W, H, cw, ch, &c.dw, &c.dh, &c.pl.x0, &c.pl.y0);
    c.pl.nw = c.dw;
    c.pl.nh = c.dh;

    mvl_status st = MVL_OK;
    size_t ints = 0, tmp_bytes = 0;
    for (int i = 0; i < 2 && st == MVL_OK; i++) {
        Resize &r = rs[i];
        st = mvl_resample_coeffs_init(&r.h, W, r.dw, 1, err);
        if (st == MVL_OK) st = mvl_resample_coeffs_init(&r.v, H, r.dh, 1, err);
        if (st != MVL_OK) break;
        r.h_off = ints;
        ints += axis_ints(&r.h, r.dw);
        r.v_off = ints;
        ints += axis_ints(&r.v, r.dh);
        r.y_first = r.v.bounds[0];
        r.y_last = r.v.bounds[2 * r.dh - 2] + r.v.bounds[2 * r.dh - 1];
        r.tmp_off = tmp_bytes;
        const int hrows = r.dh != H ? r.y_last - r.y_first : H;
        if (r.dw != W) tmp_bytes += ((size_t)hrows * r.dw * 3 + 255) & ~(size_t)255;
    }
    if (st == MVL_OK && (ints * 4 > p->dev_coef.cap || tmp_bytes > p->dev_tmp.cap)) {
        cudaError_t e = cudaStreamSynchronize(p->stream); // the buffers may be in use
        if (e != cudaSuccess) st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: %s", cudaGetErrorString(e));
    }
    if (st == MVL_OK) st = grow(&p->host_coef, ints * 4, true, err);
    if (st == MVL_OK) st = grow(&p->dev_coef, ints * 4, false, err);
    if (st == MVL_OK && tmp_bytes) st = grow(&p->dev_tmp, tmp_bytes, false, err);
    if (st == MVL_OK) {
        int32_t *hc = (int32_t *)p->host_coef.p;
        for (int i = 0; i < 2; i++) {
            axis_pack(&rs[i].h, rs[i].dw, hc + rs[i].h_off);
            axis_pack(&rs[i].v, rs[i].dh, hc + rs[i].v_off);
        }
        cudaError_t e = cudaMemcpyAsync(p->dev_coef.p, hc, ints * 4, cudaMemcpyHostToDevice, p->stream);
        if (e == cudaSuccess) e = cudaEventRecord(p->host_free, p->stream);
        if (e != cudaSuccess)
            st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: weight upload failed: %s", cudaGetErrorString(e));
    }
    uint8_t *dst = p->tiles + (size_t)first * S * S * 3;
    if (st == MVL_OK) st = enqueue_resize(p, rs[0], 1, dst, err);
    if (st == MVL_OK) st = enqueue_resize(p, rs[1], cols * rows, dst + (size_t)S * S * 3, err);
    for (int i = 0; i < 2; i++) {
        mvl_resample_coeffs_free(&rs[i].h);
        mvl_resample_coeffs_free(&rs[i].v);
    }
    if (st != MVL_OK) return st;
    *im = mvl_cuda_image{W, H, cols, rows};
    *n_tiles = n;
    return MVL_OK;
}

extern "C" mvl_status mvl_cuda_preprocess(mvl_cuda_prep *p, const mvl_image *img, const mvl_preproc_config *cfg,
                                          int first, mvl_cuda_image *im, int *n_tiles, mvl_error *err) {
    *n_tiles = 0;
    if (img->mode != MVL_PIXEL_RGB || img->nearest) return fallback(p, img, cfg, first, im, n_tiles, err);
    uint8_t *rows;
    TRY(mvl_cuda_prep_begin(p, img->width, img->height, &rows, err));
    const size_t row = (size_t)img->width * 3;
    const int band = (img->height + kBands - 1) / kBands;
    for (int y0 = 0; y0 < img->height; y0 += band) {
        const int y1 = y0 + band < img->height ? y0 + band : img->height;
        memcpy(rows + y0 * row, (const uint8_t *)img->data + y0 * row, (size_t)(y1 - y0) * row);
        TRY(mvl_cuda_prep_rows(p, y0, y1, err));
    }
    return mvl_cuda_prep_end(p, cfg, first, im, n_tiles, err);
}

extern "C" mvl_status mvl_cuda_prep_download(mvl_cuda_prep *p, int first, int n, uint8_t *out, mvl_error *err) {
    if (first < 0 || n < 0 || n > p->capacity - first)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: tiles %d..%d are outside the %d-tile buffer", first,
                        first + n - 1, p->capacity);
    const size_t tile = (size_t)p->S * p->S * 3;
    CUDA_CHECK(cudaMemcpyAsync(out, p->tiles + first * tile, n * tile, cudaMemcpyDeviceToHost, p->stream));
    CUDA_CHECK(cudaStreamSynchronize(p->stream));
    return MVL_OK;
}

#ifdef MVL_HAVE_NVJPEG
namespace {

struct jpeg_probe_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
};

void probe_on_error(j_common_ptr cinfo) { longjmp(((jpeg_probe_err *)cinfo->err)->jb, 1); }

// What libjpeg's header parse says of buf: 1 when the GPU decodes it as
// mvl_image_decode would (8-bit baseline Huffman, gray or YCbCr with the luma
// at 1x1, 2x1 or 2x2 over 1x1 chroma, EXIF orientation 1, within the default
// pixel limit); then *hs, *vs are the luma's sampling factors. Progressive
// files stay on the CPU: nvJPEG's planes differed from libjpeg-turbo's there
// (by up to 3 on 1.4% of the samples of testdata's progressive JPEG, H100,
// CUDA 13) and it decoded them no faster than the CPU. Anything else, bad
// files included, goes to the CPU decoder, whose messages name the problem.
int jpeg_gpu_ok(const uint8_t *buf, size_t len, int *gray, int *hs, int *vs) {
    struct jpeg_decompress_struct cinfo;
    jpeg_probe_err jerr;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&jerr.pub);
    jerr.pub.error_exit = probe_on_error;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_decompress(&cinfo);
        return 0;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next)
        if (m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            orientation = mvl_exif_orientation(m->data + 6, m->data_length - 6);
            break;
        }
    const jpeg_component_info *c = cinfo.comp_info;
    int ok = cinfo.data_precision == 8 && !cinfo.arith_code && !cinfo.progressive_mode && orientation == 1 &&
             (uint64_t)cinfo.image_width * cinfo.image_height <= MVL_IMAGE_DEFAULT_MAX_PIXELS;
    *gray = cinfo.num_components == 1 && cinfo.jpeg_color_space == JCS_GRAYSCALE;
    *hs = *vs = 1;
    if (ok && !*gray) {
        ok = cinfo.num_components == 3 && cinfo.jpeg_color_space == JCS_YCbCr && c[1].h_samp_factor == 1 &&
             c[1].v_samp_factor == 1 && c[2].h_samp_factor == 1 && c[2].v_samp_factor == 1 &&
             ((c[0].h_samp_factor == 1 && c[0].v_samp_factor == 1) || (c[0].h_samp_factor == 2 &&
                                                                        c[0].v_samp_factor <= 2));
        *hs = c[0].h_samp_factor;
        *vs = c[0].v_samp_factor;
    }
    jpeg_destroy_decompress(&cinfo);
    return ok && (*gray || cinfo.num_components == 3);
}

#define NVJ_CHECK(call)                                                                                            \
    do {                                                                                                           \
        nvjpegStatus_t s_ = (call);                                                                                \
        if (s_ != NVJPEG_STATUS_SUCCESS)                                                                           \
            return mvl_fail(err, MVL_ERR_DEVICE, "%s: %s failed (nvJPEG status %d)", name, #call, (int)s_);       \
    } while (0)

// Decodes an eligible JPEG into the device source image; *done = 0 (and
// nothing enqueued) when nvJPEG sees it otherwise than libjpeg did.
mvl_status gpu_decode(mvl_cuda_prep *p, const uint8_t *buf, size_t len, const char *name, int gray, int hs, int vs,
                      int *done, mvl_error *err) {
    *done = 0;
    if (!p->nvj) {
        NVJ_CHECK(nvjpegCreateSimple(&p->nvj));
        NVJ_CHECK(nvjpegJpegStateCreate(p->nvj, &p->nvj_state));
    }
    int nc, w[NVJPEG_MAX_COMPONENT], h[NVJPEG_MAX_COMPONENT];
    nvjpegChromaSubsampling_t css;
    // nvJPEG refusing a file libjpeg takes leaves it to the CPU decoder
    if (nvjpegGetImageInfo(p->nvj, buf, len, &nc, &css, w, h) != NVJPEG_STATUS_SUCCESS) return MVL_OK;
    const int W = w[0], H = h[0];
    const nvjpegChromaSubsampling_t want = gray ? NVJPEG_CSS_GRAY
                                           : hs == 1 ? NVJPEG_CSS_444
                                           : vs == 1 ? NVJPEG_CSS_422
                                                     : NVJPEG_CSS_420;
    if (css != want || nc != (gray ? 1 : 3) || W < 1 || H < 1) return MVL_OK;
    const int cw = gray ? 0 : (W + hs - 1) / hs, ch = gray ? 0 : (H + vs - 1) / vs;
    if (!gray && (w[1] != cw || h[1] != ch || w[2] != cw || h[2] != ch)) return MVL_OK;
    const size_t ybytes = (size_t)W * H, cbytes = (size_t)cw * ch;
    if (ybytes + 2 * cbytes > p->dev_planes.cap) CUDA_CHECK(cudaStreamSynchronize(p->stream));
    TRY(grow(&p->dev_planes, ybytes + 2 * cbytes, false, err));
    uint8_t *rows;
    TRY(mvl_cuda_prep_begin(p, W, H, &rows, err));
    uint8_t *planes = (uint8_t *)p->dev_planes.p;
    nvjpegImage_t out;
    memset(&out, 0, sizeof out);
    out.channel[0] = planes;
    out.pitch[0] = (size_t)W;
    if (!gray) {
        out.channel[1] = planes + ybytes;
        out.channel[2] = planes + ybytes + cbytes;
        out.pitch[1] = out.pitch[2] = (size_t)cw;
    }
    nvjpegStatus_t ds = nvjpegDecode(p->nvj, p->nvj_state, buf, len, gray ? NVJPEG_OUTPUT_Y : NVJPEG_OUTPUT_YUV,
                                     &out, p->stream);
    if (ds == NVJPEG_STATUS_BAD_JPEG || ds == NVJPEG_STATUS_JPEG_NOT_SUPPORTED) return MVL_OK;
    if (ds != NVJPEG_STATUS_SUCCESS)
        return mvl_fail(err, MVL_ERR_DEVICE, "%s: nvjpegDecode failed (nvJPEG status %d)", name, (int)ds);
    k_ycc_rgb<<<mvl_grid_for((int64_t)W * H, 256), 256, 0, p->stream>>>(planes, out.channel[1], out.channel[2], W,
                                                                        H, cw, ch, hs, vs, gray,
                                                                        (uint8_t *)p->dev_img.p);
    LAUNCH_CHECK();
    p->rows_sent = H;
    *done = 1;
    return MVL_OK;
}

} // namespace
#endif

extern "C" mvl_status mvl_cuda_prep_file(mvl_cuda_prep *p, const void *buf, size_t len, const char *name,
                                         const mvl_preproc_config *cfg, int first, mvl_cuda_image *im, int *n_tiles,
                                         int *on_gpu, mvl_error *err) {
    *n_tiles = 0;
    *on_gpu = 0;
    int restaged;
    TRY(mvl_cuda_prep_wait(p, &restaged, err)); // the previous file's verdict first
#ifdef MVL_HAVE_NVJPEG
    const uint8_t *b = (const uint8_t *)buf;
    int gray, hs, vs;
    if (len >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF && jpeg_gpu_ok(b, len, &gray, &hs, &vs)) {
        TRY(gpu_decode(p, b, len, name, gray, hs, vs, on_gpu, err));
        if (*on_gpu) {
            // nvJPEG decodes truncated or corrupt data that libjpeg refuses,
            // and damaged files that both decode can come out differently
            // (test_gpu_preprocess's damaged copies): libjpeg decodes the file
            // on the CPU meanwhile, for mvl_cuda_prep_wait's verdict and check.
            TRY(mvl_cuda_prep_end(p, cfg, first, im, n_tiles, err));
            p->check_cfg = cfg;
            p->check_first = first;
            std::string who(name);
            auto job = [p, b, len, who]() {
                p->check_st = mvl_image_decode(b, len, who.c_str(), NULL, &p->check_img, &p->check_err);
            };
            try {
                p->check = std::thread(job);
            } catch (...) { // no thread to be had: decode here instead
                job();
            }
            return MVL_OK;
        }
    }
#endif
    mvl_image *img;
    TRY(mvl_image_decode(buf, len, name, NULL, &img, err));
    mvl_status st = mvl_cuda_preprocess(p, img, cfg, first, im, n_tiles, err);
    mvl_image_free(img);
    return st;
}

extern "C" mvl_status mvl_cuda_prep_wait(mvl_cuda_prep *p, int *restaged, mvl_error *err) {
    *restaged = 0;
#ifdef MVL_HAVE_NVJPEG
    if (p->check.joinable()) p->check.join();
    mvl_status st = p->check_st;
    mvl_image *img = p->check_img;
    p->check_st = MVL_OK;
    p->check_img = nullptr;
    if (st != MVL_OK) {
        *err = p->check_err;
        return st;
    }
    if (!img) return MVL_OK; // nothing pending
    // nvJPEG's RGB against libjpeg's, through the pinned buffer (unused by a
    // GPU decode); on any difference the tiles are made again from libjpeg's.
    const size_t bytes = (size_t)img->width * img->height * 3;
    st = img->width == p->width && img->height == p->height ? MVL_OK
         : mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: the checked image is %dx%d, the GPU's %dx%d (internal)",
                    img->width, img->height, p->width, p->height);
    if (st == MVL_OK) st = grow(&p->host_img, bytes, true, err);
    if (st == MVL_OK && cudaMemcpyAsync(p->host_img.p, p->dev_img.p, bytes, cudaMemcpyDeviceToHost, p->stream) !=
                            cudaSuccess)
        st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: copying the decoded image back failed");
    if (st == MVL_OK && cudaStreamSynchronize(p->stream) != cudaSuccess)
        st = mvl_fail(err, MVL_ERR_DEVICE, "CUDA preprocessing: the stream failed");
    if (st == MVL_OK && memcmp(p->host_img.p, img->data, bytes)) {
        mvl_cuda_image im;
        int n;
        st = mvl_cuda_preprocess(p, img, p->check_cfg, p->check_first, &im, &n, err);
        *restaged = st == MVL_OK;
    }
    mvl_image_free(img);
    return st;
#else
    (void)p, (void)err;
    return MVL_OK;
#endif
}

extern "C" mvl_status mvl_cuda_prep_source(mvl_cuda_prep *p, int width, int height, uint8_t *out, mvl_error *err) {
    if (width != p->width || height != p->height)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA preprocessing: the last image is %dx%d, not %dx%d", p->width,
                        p->height, width, height);
    CUDA_CHECK(cudaMemcpyAsync(out, p->dev_img.p, (size_t)width * height * 3, cudaMemcpyDeviceToHost, p->stream));
    CUDA_CHECK(cudaStreamSynchronize(p->stream));
    return MVL_OK;
}
