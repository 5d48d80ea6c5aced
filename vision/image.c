/* Image decoding: JPEG (libjpeg-turbo) and PNG (libpng) into mvl_image.
 *
 * Two policies (mvl_image_opts.strict_reference):
 * - strict: reproduce what Pillow's Image.open gives the reference processor
 *   (vision.md §3.6, §7 item 7): keep Pillow's mode, ignore EXIF, ignore tRNS,
 *   keep alpha (dropped later without compositing).
 * - default: apply EXIF orientation (unless no_exif), composite transparency
 *   onto white, RGB.
 *
 * Both decoders report errors through their library's hooks back to us with
 * longjmp, and nothing is handed out unless the whole image decoded. */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h> /* needs stdio.h first */
#include <jerror.h>
#include <png.h>

#include "common/mvl_common.h"
#include "vision/vision.h"

#define MVL_IMAGE_MAX_FILE_BYTES ((size_t)1 << 30)
/* Progressive JPEGs with absurd scan counts cost CPU without pixels. */
#define MVL_JPEG_MAX_SCANS 1000

void mvl_image_free(mvl_image *img) {
    if (!img) return;
    free(img->data);
    free(img);
}

int mvl_pixel_mode_channels(mvl_pixel_mode m) {
    switch (m) {
    case MVL_PIXEL_L: case MVL_PIXEL_I16: return 1;
    case MVL_PIXEL_LA: return 2;
    case MVL_PIXEL_RGB: return 3;
    case MVL_PIXEL_RGBA: case MVL_PIXEL_CMYK: return 4;
    }
    return 0;
}

mvl_status mvl_image_new(int w, int h, mvl_pixel_mode mode, mvl_image **out, mvl_error *err) {
    size_t bytes;
    int ch = mvl_pixel_mode_channels(mode);
    size_t sample = mode == MVL_PIXEL_I16 ? 2 : 1;
    *out = NULL;
    if (w <= 0 || h <= 0 || !mvl_mul_ok((size_t)w * (size_t)h, (size_t)ch * sample, &bytes))
        return mvl_fail(err, MVL_ERR_LIMIT, "image of %dx%d is too large", w, h);
    mvl_image *img = mvl_calloc(1, sizeof *img, err);
    if (!img) return MVL_ERR_NOMEM;
    img->data = mvl_malloc(bytes, err);
    if (!img->data) {
        free(img);
        return MVL_ERR_NOMEM;
    }
    img->width = w;
    img->height = h;
    img->mode = mode;
    img->channels = ch;
    *out = img;
    return MVL_OK;
}

static mvl_status check_dims(const char *name, uint64_t w, uint64_t h, uint64_t max_pixels,
                             mvl_error *err) {
    if (w == 0 || h == 0)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: image has zero width or height (%llux%llu)", name,
                        (unsigned long long)w, (unsigned long long)h);
    if (w * h > max_pixels)
        return mvl_fail(err, MVL_ERR_LIMIT,
                        "%s: image is %llux%llu = %llu pixels, over the limit of %llu pixels", name,
                        (unsigned long long)w, (unsigned long long)h, (unsigned long long)(w * h),
                        (unsigned long long)max_pixels);
    return MVL_OK;
}

/* ---- EXIF orientation (default mode only) ---------------------------------- */

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | p[1] << 8 : p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le) {
    return le ? (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Orientation (1..8) from a TIFF structure (EXIF without the "Exif\0\0"
 * prefix); 1 when absent or malformed. Every read is bounds-checked. */
int mvl_exif_orientation(const uint8_t *t, size_t n) {
    if (n < 8) return 1;
    int le;
    if (t[0] == 'I' && t[1] == 'I') le = 1;
    else if (t[0] == 'M' && t[1] == 'M') le = 0;
    else return 1;
    if (rd16(t + 2, le) != 42) return 1;
    uint32_t ifd = rd32(t + 4, le);
    if (ifd > n || n - ifd < 2) return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + (size_t)i * 12;
        if (e + 12 > n) return 1;
        if (rd16(t + e, le) != 0x0112) continue;
        if (rd16(t + e + 2, le) != 3 || rd32(t + e + 4, le) < 1) return 1; /* SHORT, count >= 1 */
        unsigned v = rd16(t + e + 8, le);
        return v >= 1 && v <= 8 ? (int)v : 1;
    }
    return 1;
}

/* Applies EXIF orientation o (2..8) so the image displays upright, as
 * ImageOps.exif_transpose does. Replaces img->data. */
static mvl_status apply_orientation(mvl_image *img, int o, mvl_error *err) {
    if (o <= 1 || o > 8) return MVL_OK;
    int W = img->width, H = img->height, c = img->channels;
    int swap = o >= 5;
    int ow = swap ? H : W, oh = swap ? W : H;
    const uint8_t *s = img->data;
    uint8_t *d = mvl_malloc((size_t)W * H * c, err);
    if (!d) return MVL_ERR_NOMEM;
    for (int y = 0; y < oh; y++) {
        for (int x = 0; x < ow; x++) {
            int sx, sy;
            switch (o) {
            case 2: sx = W - 1 - x; sy = y; break;
            case 3: sx = W - 1 - x; sy = H - 1 - y; break;
            case 4: sx = x; sy = H - 1 - y; break;
            case 5: sx = y; sy = x; break;
            case 6: sx = y; sy = H - 1 - x; break;
            case 7: sx = W - 1 - y; sy = H - 1 - x; break;
            default: sx = W - 1 - y; sy = x; break; /* 8 */
            }
            memcpy(d + ((size_t)y * ow + x) * c, s + ((size_t)sy * W + sx) * c, (size_t)c);
        }
    }
    free(img->data);
    img->data = d;
    img->width = ow;
    img->height = oh;
    return MVL_OK;
}

/* Straight alpha over white, rounded: what users expect from a transparent
 * PNG (default mode only). Returns a new RGB buffer via img. */
static mvl_status composite_white(mvl_image *img, mvl_error *err) {
    size_t n = (size_t)img->width * img->height;
    const uint8_t *s = img->data;
    uint8_t *d = mvl_malloc(n * 3, err);
    if (!d) return MVL_ERR_NOMEM;
    int gray = img->mode == MVL_PIXEL_LA;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = s + i * (gray ? 2 : 4);
        unsigned a = p[gray ? 1 : 3];
        for (int k = 0; k < 3; k++) {
            unsigned v = p[gray ? 0 : k];
            d[i * 3 + k] = (uint8_t)((v * a + 255u * (255u - a) + 127u) / 255u);
        }
    }
    free(img->data);
    img->data = d;
    img->mode = MVL_PIXEL_RGB;
    img->channels = 3;
    return MVL_OK;
}

/* Any 8-bit mode -> RGB (default mode only; strict keeps the mode). */
static mvl_status to_rgb(mvl_image *img, mvl_error *err) {
    if (img->mode == MVL_PIXEL_RGB) return MVL_OK;
    if (img->mode == MVL_PIXEL_LA || img->mode == MVL_PIXEL_RGBA) return composite_white(img, err);
    size_t n = (size_t)img->width * img->height;
    uint8_t *d = mvl_malloc(n * 3, err);
    if (!d) return MVL_ERR_NOMEM;
    mvl_convert_row_to_rgb(img, img->data, n, d);
    free(img->data);
    img->data = d;
    img->mode = MVL_PIXEL_RGB;
    img->channels = 3;
    img->nearest = 0;
    return MVL_OK;
}

/* ---- JPEG ------------------------------------------------------------------ */

typedef struct jpeg_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    c->pub.format_message(cinfo, c->msg);
    longjmp(c->jb, 1);
}

/* Warnings mean corrupt or missing data, after which libjpeg would hand out
 * a partly grey image: turn them into errors, except for a few benign ones. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
    if (level >= 0) return; /* trace messages */
    int code = c->pub.msg_code;
    if (code == JWRN_EXTRANEOUS_DATA || code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM ||
        code == JWRN_BOGUS_ICC)
        return;
    c->pub.format_message(cinfo, c->msg);
    longjmp(c->jb, 1);
}

static void jpeg_on_progress(j_common_ptr cinfo) {
    if (cinfo->is_decompressor &&
        ((j_decompress_ptr)cinfo)->input_scan_number > MVL_JPEG_MAX_SCANS) {
        jpeg_ctx *c = (jpeg_ctx *)cinfo->err;
        snprintf(c->msg, sizeof c->msg, "more than %d progressive scans", MVL_JPEG_MAX_SCANS);
        longjmp(c->jb, 1);
    }
}

/* Default mode turns every decoded image into upright RGB (EXIF applied,
 * alpha over white); strict mode keeps Pillow's mode as decoded. Takes img. */
static mvl_status finish_decode(mvl_image *img, int orientation, const mvl_image_opts *o, mvl_image **out,
                                mvl_error *err) {
    if (!o->strict_reference) {
        mvl_status st = to_rgb(img, err);
        if (st == MVL_OK) st = apply_orientation(img, orientation, err);
        if (st != MVL_OK) {
            mvl_image_free(img);
            return st;
        }
    }
    *out = img;
    return MVL_OK;
}

static mvl_status decode_jpeg(const uint8_t *buf, size_t len, const char *name,
                              const mvl_image_opts *o, mvl_image **out, mvl_error *err) {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_progress_mgr progress = {.progress_monitor = jpeg_on_progress};
    jpeg_ctx ctx;
    /* volatile: modified between setjmp and a possible longjmp */
    mvl_image *volatile img = NULL;
    uint8_t *volatile rowbuf = NULL;
    mvl_status volatile st = MVL_OK;
    memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&ctx.pub);
    ctx.pub.error_exit = jpeg_on_error;
    ctx.pub.emit_message = jpeg_on_message;
    ctx.msg[0] = '\0';
    if (setjmp(ctx.jb)) {
        jpeg_destroy_decompress(&cinfo);
        mvl_image_free(img);
        free(rowbuf);
        if (st != MVL_OK) return st;
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: bad JPEG: %s", name, ctx.msg);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.progress = &progress;
    jpeg_mem_src(&cinfo, buf, (unsigned long)len);
    if (!o->strict_reference && !o->no_exif) jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);
    /* Saved markers live until jpeg_finish_decompress frees them: read now. */
    int orientation = 1;
    for (jpeg_saved_marker_ptr m = cinfo.marker_list; m; m = m->next) {
        if (m->marker == JPEG_APP0 + 1 && m->data_length >= 6 && !memcmp(m->data, "Exif\0\0", 6)) {
            orientation = mvl_exif_orientation(m->data + 6, m->data_length - 6);
            break;
        }
    }

    /* Pillow decodes 1 component as L, 3 as RGB, 4 as CMYK (Adobe polarity:
     * its raw mode "CMYK;I" inverts what libjpeg returns). */
    mvl_pixel_mode mode;
    int comps = cinfo.num_components;
    if (comps == 1) {
        cinfo.out_color_space = JCS_GRAYSCALE;
        mode = MVL_PIXEL_L;
    } else if (comps == 3) {
        cinfo.out_color_space = JCS_RGB;
        mode = MVL_PIXEL_RGB;
    } else if (comps == 4) {
        cinfo.out_color_space = JCS_CMYK; /* libjpeg converts YCCK to CMYK */
        mode = MVL_PIXEL_CMYK;
    } else {
        st = mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: JPEG with %d components is not supported",
                      name, comps);
        longjmp(ctx.jb, 1);
    }
    /* Defaults kept on purpose: islow IDCT and fancy upsampling, as Pillow. */
    st = check_dims(name, cinfo.image_width, cinfo.image_height, o->max_pixels, err);
    if (st != MVL_OK) longjmp(ctx.jb, 1);
    mvl_image *fresh;
    st = mvl_image_new((int)cinfo.image_width, (int)cinfo.image_height, mode, &fresh, err);
    if (st != MVL_OK) longjmp(ctx.jb, 1);
    img = fresh;
    jpeg_start_decompress(&cinfo);
    size_t stride = (size_t)img->width * img->channels;
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = (uint8_t *)img->data + (size_t)cinfo.output_scanline * stride;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);

    if (mode == MVL_PIXEL_CMYK) {
        uint8_t *p = img->data;
        for (size_t i = 0, n = stride * img->height; i < n; i++) p[i] = (uint8_t)(255 - p[i]);
    }
    jpeg_destroy_decompress(&cinfo);
    return finish_decode(img, orientation, o, out, err);
}

/* ---- PNG ------------------------------------------------------------------- */

typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[256];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg) {
    png_ctx *c = png_get_error_ptr(png);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg) {
    (void)png; /* ancillary-chunk trouble: libpng carries on, so do we */
    (void)msg;
}

static void png_on_read(png_structp png, png_bytep data, size_t n) {
    png_ctx *c = png_get_io_ptr(png);
    if (c->len - c->pos < n) png_error(png, "file is truncated");
    memcpy(data, c->buf + c->pos, n);
    c->pos += n;
}

/* EXIF orientation from the eXIf chunk, walking the chunk list ourselves:
 * libpng drops eXIf data that starts with JPEG's "Exif\0\0" prefix, which
 * some writers (Pillow among them) keep. */
static int png_exif_orientation(const uint8_t *buf, size_t len) {
    size_t pos = 8;
    while (len - pos >= 12) {
        uint32_t n = rd32(buf + pos, 0);
        if (n > len - pos - 12) return 1;
        const uint8_t *type = buf + pos + 4, *data = buf + pos + 8;
        if (!memcmp(type, "IEND", 4)) return 1;
        if (!memcmp(type, "eXIf", 4)) {
            if (n >= 6 && !memcmp(data, "Exif\0\0", 6)) return mvl_exif_orientation(data + 6, n - 6);
            return mvl_exif_orientation(data, n);
        }
        pos += 12 + (size_t)n;
    }
    return 1;
}

static mvl_status decode_png(const uint8_t *buf, size_t len, const char *name,
                             const mvl_image_opts *o, mvl_image **out, mvl_error *err) {
    png_ctx ctx = {.buf = buf, .len = len};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return mvl_fail(err, MVL_ERR_NOMEM, "%s: cannot create PNG decoder", name);
    }
    mvl_image *volatile img = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile idx = NULL;
    mvl_status volatile st = MVL_OK;
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        mvl_image_free(img);
        free(rows);
        free(idx);
        if (st != MVL_OK) return st;
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: bad PNG: %s", name, ctx.msg);
    }
    png_set_read_fn(png, &ctx, png_on_read);
    /* Header fields are checked by us against max_pixels; these are libpng's
     * own guards against huge dimensions and ancillary chunks. */
    png_set_user_limits(png, 1u << 24, 1u << 24);
    png_set_chunk_malloc_max(png, 64u << 20);
    png_read_info(png, info);

    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    st = check_dims(name, w, h, o->max_pixels, err);
    if (st != MVL_OK) png_longjmp(png, 1);

    mvl_pixel_mode mode;
    int palette = 0, nearest = 0;
    if (o->strict_reference) {
        /* Pillow's PNG modes (PngImagePlugin _MODES); tRNS is ignored since
         * convert("RGB") and paste drop it. */
        switch (ctype) {
        case PNG_COLOR_TYPE_GRAY:
            if (depth == 16) {
                mode = MVL_PIXEL_I16;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
                png_set_swap(png);
#endif
            } else {
                mode = MVL_PIXEL_L;
                nearest = depth == 1; /* Pillow mode "1" */
                if (depth < 8) png_set_expand_gray_1_2_4_to_8(png);
            }
            break;
        case PNG_COLOR_TYPE_GRAY_ALPHA:
            /* 16-bit LA opens as RGBA in Pillow (raw mode LA;16B). */
            mode = depth == 16 ? MVL_PIXEL_RGBA : MVL_PIXEL_LA;
            if (depth == 16) png_set_gray_to_rgb(png);
            break;
        case PNG_COLOR_TYPE_RGB: mode = MVL_PIXEL_RGB; break;
        case PNG_COLOR_TYPE_RGB_ALPHA: mode = MVL_PIXEL_RGBA; break;
        case PNG_COLOR_TYPE_PALETTE:
            mode = MVL_PIXEL_RGB; /* "P": NEAREST on indices == NEAREST on colours */
            palette = nearest = 1;
            if (depth < 8) png_set_packing(png);
            break;
        default: png_error(png, "unknown colour type");
        }
        if (depth == 16 && mode != MVL_PIXEL_I16) png_set_strip_16(png); /* Pillow keeps the high byte */
    } else {
        png_set_expand(png); /* palette -> RGB, tRNS -> alpha, low-bit gray -> 8 bit */
        if (depth == 16) png_set_strip_16(png);
        png_set_gray_to_rgb(png);
        int alpha = (ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
        mode = alpha ? MVL_PIXEL_RGBA : MVL_PIXEL_RGB;
    }
    int passes = png_set_interlace_handling(png);
    (void)passes;
    png_read_update_info(png, info);

    mvl_image *fresh;
    st = mvl_image_new((int)w, (int)h, mode, &fresh, err);
    if (st != MVL_OK) png_longjmp(png, 1);
    img = fresh;
    img->nearest = nearest;
    size_t stride = (size_t)w * img->channels * (mode == MVL_PIXEL_I16 ? 2 : 1);
    if (png_get_rowbytes(png, info) != (palette ? (size_t)w : stride)) png_error(png, "unexpected row size");
    rows = mvl_malloc(sizeof(png_bytep) * h, err);
    if (palette) idx = mvl_malloc((size_t)w * h, err);
    if (!rows || (palette && !idx)) {
        st = MVL_ERR_NOMEM;
        png_longjmp(png, 1);
    }
    uint8_t *base = palette ? idx : (uint8_t *)img->data;
    for (png_uint_32 y = 0; y < h; y++) rows[y] = base + (size_t)y * (palette ? (size_t)w : stride);
    png_read_image(png, rows);
    png_read_end(png, NULL);

    if (palette) {
        png_colorp pal = NULL;
        int npal = 0;
        png_get_PLTE(png, info, &pal, &npal);
        uint8_t lut[256][3] = {{0}}; /* indices past the palette read as black */
        for (int i = 0; i < npal && i < 256; i++) {
            lut[i][0] = pal[i].red;
            lut[i][1] = pal[i].green;
            lut[i][2] = pal[i].blue;
        }
        uint8_t *d = img->data;
        for (size_t i = 0, n = (size_t)w * h; i < n; i++) memcpy(d + i * 3, lut[idx[i]], 3);
    }
    int orientation = 1;
    if (!o->strict_reference && !o->no_exif) orientation = png_exif_orientation(buf, len);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    free(idx);
    return finish_decode(img, orientation, o, out, err);
}

/* ---- entry points ----------------------------------------------------------- */

mvl_status mvl_image_decode(const void *buf, size_t len, const char *name,
                            const mvl_image_opts *opts, mvl_image **out, mvl_error *err) {
    *out = NULL;
    mvl_image_opts o = {0};
    if (opts) o = *opts;
    if (o.max_pixels == 0) o.max_pixels = MVL_IMAGE_DEFAULT_MAX_PIXELS;
    const uint8_t *p = buf;
    if (len == 0) return mvl_fail(err, MVL_ERR_FORMAT, "%s: file is empty", name);
    if (len >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
        return decode_jpeg(p, len, name, &o, out, err);
    if (len >= 8 && !png_sig_cmp(p, 0, 8)) return decode_png(p, len, name, &o, out, err);
    return mvl_fail(err, MVL_ERR_UNSUPPORTED,
                    "%s: not a JPEG or PNG file (unrecognised magic bytes)", name);
}

mvl_status mvl_image_load(const char *path, const mvl_image_opts *opts, mvl_image **out,
                          mvl_error *err) {
    *out = NULL;
    char *buf;
    size_t len;
    mvl_status st = mvl_read_file(path, MVL_IMAGE_MAX_FILE_BYTES, &buf, &len, err);
    if (st != MVL_OK) return st;
    st = mvl_image_decode(buf, len, path, opts, out, err);
    free(buf);
    return st;
}
