/* Anyres preprocessing (vision.md §3) and the visual-token count (§4.2). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"
#include "vision/vision.h"

void mvl_preproc_config_default(mvl_preproc_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->size = 336;
    cfg->patch_size = 14;
    /* §3.1: every (a*336, b*336) with a, b in 1..6 and a*b <= 18, in file order. */
    for (int a = 1; a <= 6; a++)
        for (int b = 1; b <= 6; b++)
            if (a * b <= 18) {
                cfg->pinpoints[cfg->n_pinpoints][0] = a * 336;
                cfg->pinpoints[cfg->n_pinpoints][1] = b * 336;
                cfg->n_pinpoints++;
            }
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    memcpy(cfg->mean, mean, sizeof mean);
    memcpy(cfg->std, std, sizeof std);
}

static mvl_status bad_key(mvl_error *err, const char *path, const char *key, const char *what) {
    return mvl_fail(err, MVL_ERR_FORMAT, "%s: %s %s", path, key, what);
}

static mvl_status read_triple(json_t *root, const char *path, const char *key, int positive,
                              float out[3], mvl_error *err) {
    json_t *v = json_object_get(root, key);
    if (!v) return MVL_OK;
    if (!json_is_array(v) || json_array_size(v) != 3)
        return bad_key(err, path, key, "must be an array of 3 numbers");
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(v, i);
        double d = json_is_number(e) ? json_number_value(e) : NAN;
        if (!isfinite(d) || (positive && d <= 0))
            return bad_key(err, path, key, positive ? "must hold 3 positive numbers" : "must hold 3 numbers");
        out[i] = (float)d; /* torch.as_tensor(mean) is float32 */
    }
    return MVL_OK;
}

/* "size" is 336, [336, 336] or {"height": 336, "width": 336}; only square tiles. */
static mvl_status read_size(json_t *root, const char *path, int *size, mvl_error *err) {
    json_t *v = json_object_get(root, "size");
    if (!v) return MVL_OK;
    json_int_t w = -1, h = -1;
    if (json_is_integer(v)) {
        w = h = json_integer_value(v);
    } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_integer(json_array_get(v, 0)) &&
               json_is_integer(json_array_get(v, 1))) {
        w = json_integer_value(json_array_get(v, 0));
        h = json_integer_value(json_array_get(v, 1));
    } else if (json_is_object(v) && json_is_integer(json_object_get(v, "height")) &&
               json_is_integer(json_object_get(v, "width"))) {
        w = json_integer_value(json_object_get(v, "width"));
        h = json_integer_value(json_object_get(v, "height"));
    } else {
        return bad_key(err, path, "size", "must be an integer, [w, h] or {\"height\", \"width\"}");
    }
    if (w != h || w < 14 || w > 4096)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: size %lldx%lld: only square tiles of 14..4096 are supported",
                        path, (long long)w, (long long)h);
    *size = (int)w;
    return MVL_OK;
}

mvl_status mvl_preproc_config_load(const char *path, mvl_preproc_config *cfg, mvl_error *err) {
    mvl_preproc_config_default(cfg);
    char *text;
    size_t len;
    mvl_status st = mvl_read_file(path, 1 << 20, &text, &len, err);
    if (st != MVL_OK) return st;
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    if (!root) return mvl_fail(err, MVL_ERR_FORMAT, "%s: line %d column %d: %s", path, je.line, je.column, je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: top level must be a JSON object", path);
    }
    json_t *mode = json_object_get(root, "process_image_mode");
    if (mode && !(json_is_string(mode) && !strcmp(json_string_value(mode), "anyres"))) {
        st = mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: process_image_mode must be \"anyres\"", path);
        goto out;
    }
    if ((st = read_size(root, path, &cfg->size, err)) != MVL_OK) goto out;
    json_t *ps = json_object_get(root, "patch_size");
    if (ps) {
        if (!json_is_integer(ps) || json_integer_value(ps) <= 0 || json_integer_value(ps) > cfg->size ||
            cfg->size % json_integer_value(ps) != 0) {
            st = bad_key(err, path, "patch_size", "must be a positive integer dividing size");
            goto out;
        }
        cfg->patch_size = (int)json_integer_value(ps);
    } else if (cfg->size % cfg->patch_size != 0) {
        st = bad_key(err, path, "size", "must be a multiple of the patch size 14");
        goto out;
    }
    if ((st = read_triple(root, path, "image_mean", 0, cfg->mean, err)) != MVL_OK) goto out;
    if ((st = read_triple(root, path, "image_std", 1, cfg->std, err)) != MVL_OK) goto out;
    json_t *pp = json_object_get(root, "image_grid_pinpoints");
    if (pp) {
        size_t n = json_is_array(pp) ? json_array_size(pp) : 0;
        if (n == 0 || n > MVL_PREPROC_MAX_PINPOINTS) {
            st = bad_key(err, path, "image_grid_pinpoints", "must be a non-empty array of at most 64 [w, h] pairs");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(pp, i);
            json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            json_int_t w = json_is_integer(a) ? json_integer_value(a) : -1;
            json_int_t h = json_is_integer(b) ? json_integer_value(b) : -1;
            if (!json_is_array(e) || json_array_size(e) != 2 || w <= 0 || h <= 0 || w % cfg->size ||
                h % cfg->size || w / cfg->size > 64 || h / cfg->size > 64) {
                st = mvl_fail(err, MVL_ERR_FORMAT,
                              "%s: image_grid_pinpoints[%zu] must be [w, h] with positive multiples of %d (up to 64 tiles a side)",
                              path, i, cfg->size);
                goto out;
            }
            cfg->pinpoints[i][0] = (int)w;
            cfg->pinpoints[i][1] = (int)h;
        }
        cfg->n_pinpoints = (int)n;
    }
out:
    json_decref(root);
    return st;
}

void mvl_select_canvas(const mvl_preproc_config *cfg, int64_t W, int64_t H, int *cw, int *ch) {
    /* §3.2, in IEEE double exactly as written: trunc() sees values like 1007.9999. */
    int64_t best_eff = -1, best_waste = INT64_MAX;
    *cw = cfg->pinpoints[0][0];
    *ch = cfg->pinpoints[0][1];
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int w = cfg->pinpoints[i][0], h = cfg->pinpoints[i][1];
        double sx = (double)w / (double)W, sy = (double)h / (double)H;
        double scale = sx < sy ? sx : sy;
        int64_t dw = (int64_t)((double)W * scale), dh = (int64_t)((double)H * scale);
        int64_t eff = dw * dh < W * H ? dw * dh : W * H;
        int64_t waste = (int64_t)w * h - eff;
        if (eff > best_eff || (eff == best_eff && waste < best_waste)) {
            best_eff = eff;
            best_waste = waste;
            *cw = w;
            *ch = h;
        }
    }
}

/* Visual tokens of a W x H image on a cw x ch canvas (§4.2). */
static int64_t canvas_tokens(const mvl_preproc_config *cfg, int64_t W, int64_t H, int cw, int ch) {
    int64_t fw = cw / cfg->patch_size, fh = ch / cfg->patch_size;
    int64_t per_tile = (int64_t)(cfg->size / cfg->patch_size) * (cfg->size / cfg->patch_size);
    int64_t rows, cols;
    /* §4.2 and §7 item 4: integer floor, not the float variant. */
    if (W * fh > H * fw) {
        cols = fw;
        rows = fh - 2 * ((fh - H * fw / W) / 2);
    } else {
        rows = fh;
        cols = fw - 2 * ((fw - W * fh / H) / 2);
    }
    return per_tile + rows * (cols + 1);
}

int64_t mvl_image_token_count(const mvl_preproc_config *cfg, int64_t W, int64_t H) {
    int cw, ch;
    mvl_select_canvas(cfg, W, H, &cw, &ch);
    return canvas_tokens(cfg, W, H, cw, ch);
}

int mvl_preproc_max_tiles(const mvl_preproc_config *cfg) {
    int most = 0;
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int t = (cfg->pinpoints[i][0] / cfg->size) * (cfg->pinpoints[i][1] / cfg->size);
        most = t > most ? t : most;
    }
    return most;
}

void mvl_preproc_config_cap(mvl_preproc_config *cfg, int64_t W, int64_t H, int64_t max_tiles, int64_t max_tokens) {
    int kept = 0, S = cfg->size;
    for (int i = 0; i < cfg->n_pinpoints; i++) {
        int w = cfg->pinpoints[i][0], h = cfg->pinpoints[i][1];
        if (max_tiles > 0 && (int64_t)(w / S) * (h / S) > max_tiles) continue;
        if (max_tokens > 0 && canvas_tokens(cfg, W, H, w, h) > max_tokens) continue;
        cfg->pinpoints[kept][0] = w;
        cfg->pinpoints[kept][1] = h;
        kept++;
    }
    if (kept == 0) {
        cfg->pinpoints[0][0] = S;
        cfg->pinpoints[0][1] = S;
        kept = 1;
    }
    cfg->n_pinpoints = kept;
}

void mvl_preproc_result_free(mvl_preproc_result *r) {
    if (!r) return;
    free(r->tiles);
    memset(r, 0, sizeof *r);
}

/* Resizes img to dw x dh in its own mode, converts to RGB and writes it into
 * an RGB raster at (x0, y0) with row stride `stride` bytes: Pillow's
 * resize-then-paste (§3.3) and resize-then-convert (§3.4). */
static mvl_status resize_into(const mvl_image *img, int dw, int dh, uint8_t *dst, size_t stride, int x0,
                              int y0, mvl_error *err) {
    mvl_image *r;
    mvl_status st = mvl_image_resize(img, dw, dh, &r, err);
    if (st != MVL_OK) return st;
    size_t row_bytes = (size_t)dw * r->channels * (r->mode == MVL_PIXEL_I16 ? 2 : 1);
    for (int y = 0; y < dh; y++)
        mvl_convert_row_to_rgb(r, (const uint8_t *)r->data + (size_t)y * row_bytes, (size_t)dw,
                               dst + (size_t)(y0 + y) * stride + (size_t)x0 * 3);
    mvl_image_free(r);
    return MVL_OK;
}

/* §3.3: fill one canvas side, floor the other, centre, odd pixel of
 * padding bottom/right. The reference cannot resize to 0 pixels (Pillow
 * raises); extreme aspect ratios get 1 pixel instead of failing. */
void mvl_letterbox(int64_t W, int64_t H, int cw, int ch, int *nw, int *nh, int *x0, int *y0) {
    *x0 = *y0 = 0;
    if (W * ch > H * cw) {
        *nw = cw;
        *nh = (int)((int64_t)cw * H / W);
        if (*nh < 1) *nh = 1;
        *y0 = (ch - *nh) / 2;
    } else {
        *nh = ch;
        *nw = (int)((int64_t)ch * W / H);
        if (*nw < 1) *nw = 1;
        *x0 = (cw - *nw) / 2;
    }
}

mvl_status mvl_preprocess(const mvl_image *img, const mvl_preproc_config *cfg, mvl_preproc_result *out,
                          mvl_error *err) {
    memset(out, 0, sizeof *out);
    int64_t W = img->width, H = img->height;
    int S = cfg->size;
    int cw, ch;
    mvl_select_canvas(cfg, W, H, &cw, &ch);
    int cols = cw / S, rows = ch / S;
    int n = 1 + rows * cols;
    size_t tile_bytes = (size_t)S * S * 3;
    uint8_t *tiles = mvl_malloc(tile_bytes * n, err);
    uint8_t *canvas = mvl_calloc((size_t)cw * ch, 3, err); /* black, §3.3 */
    mvl_status st = tiles && canvas ? MVL_OK : MVL_ERR_NOMEM;

    int nw, nh, x0, y0;
    mvl_letterbox(W, H, cw, ch, &nw, &nh, &x0, &y0);
    /* §3.4: thumbnail squashed to S x S, first. */
    if (st == MVL_OK) st = resize_into(img, S, S, tiles, (size_t)S * 3, 0, 0, err);
    if (st == MVL_OK) st = resize_into(img, nw, nh, canvas, (size_t)cw * 3, x0, y0, err);
    if (st == MVL_OK) {
        /* §3.3: row-major S x S crops. */
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++) {
                uint8_t *t = tiles + tile_bytes * (size_t)(1 + r * cols + c);
                for (int y = 0; y < S; y++)
                    memcpy(t + (size_t)y * S * 3, canvas + ((size_t)(r * S + y) * cw + (size_t)c * S) * 3,
                           (size_t)S * 3);
            }
        out->width = (int)W;
        out->height = (int)H;
        out->canvas_w = cw;
        out->canvas_h = ch;
        out->cols = cols;
        out->rows = rows;
        out->n_patches = n;
        out->image_tokens = mvl_image_token_count(cfg, W, H);
        out->tiles = tiles;
        tiles = NULL;
    }
    free(tiles);
    free(canvas);
    return st;
}

void mvl_preproc_normalize(const mvl_preproc_config *cfg, const uint8_t *tiles, int n_patches, float *out) {
    /* 768-entry table computed with the reference's float32 operations:
     * ToTensor's u8/255, then Normalize's (x - mean)/std. */
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            lut[c][v] = (x - cfg->mean[c]) / cfg->std[c];
        }
    size_t plane = (size_t)cfg->size * cfg->size;
    for (int i = 0; i < n_patches; i++) {
        const uint8_t *t = tiles + plane * 3 * i;
        float *o = out + plane * 3 * i;
        for (size_t p = 0; p < plane; p++) {
            o[p] = lut[0][t[3 * p]];
            o[plane + p] = lut[1][t[3 * p + 1]];
            o[2 * plane + p] = lut[2][t[3 * p + 2]];
        }
    }
}

uint16_t mvl_f32_to_bf16(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40); /* quiet NaN */
    b += 0x7fffu + ((b >> 16) & 1u);
    return (uint16_t)(b >> 16);
}

void mvl_round_bf16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t b = (uint32_t)mvl_f32_to_bf16(x[i]) << 16;
        memcpy(&x[i], &b, 4);
    }
}
