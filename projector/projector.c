/* Projector MLP and anyres packing (vision.md §2, §4.1). */
#include <stdlib.h>
#include <string.h>

#include "projector/projector.h"

mvl_status mvl_projector_init(const mvl_model_dir *md, mvl_projector *p, mvl_error *err) {
    memset(p, 0, sizeof *p);
    const mvl_model_config *cfg = mvl_model_dir_config(md);
    p->in_dim = cfg->vision.hidden_size;
    p->out_dim = cfg->text.hidden_size;
    int64_t s1[2] = {p->out_dim, p->in_dim}, s2[2] = {p->out_dim, p->out_dim}, sb[1] = {p->out_dim};
    mvl_status st;
    if ((st = mvl_weight_load(md, "multi_modal_projector.linear_1.weight", 2, s1, &p->l1, err)) ||
        (st = mvl_weight_load(md, "multi_modal_projector.linear_1.bias", 1, sb, &p->b1, err)) ||
        (st = mvl_weight_load(md, "multi_modal_projector.linear_2.weight", 2, s2, &p->l2, err)) ||
        (st = mvl_weight_load(md, "multi_modal_projector.linear_2.bias", 1, sb, &p->b2, err)) ||
        (st = mvl_weight_load(md, "image_newline", 1, sb, &p->newline, err))) {
        mvl_projector_free(p);
        return st;
    }
    return MVL_OK;
}

void mvl_projector_free(mvl_projector *p) {
    if (!p) return;
    mvl_weight_free(&p->l1);
    mvl_weight_free(&p->b1);
    mvl_weight_free(&p->l2);
    mvl_weight_free(&p->b2);
    mvl_weight_free(&p->newline);
}

mvl_status mvl_projector_forward(const mvl_projector *p, const float *x, int64_t n, float *out, mvl_error *err) {
    float *mid = mvl_malloc((size_t)(n * p->out_dim) * sizeof(float) + 1, err);
    if (!mid) return MVL_ERR_NOMEM;
    /* bf16: linear_1 reads the ViT output without CLS, a non-contiguous slice, for which torch's
     * Linear runs matmul and then adds the bias: two roundings (checked on the reference); linear_2
     * gets a contiguous input, a fused addmm: one */
    mvl_op_linear(x, n, &p->l1, p->bf16 ? NULL : p->b1.data, mid);
    if (p->bf16) {
        mvl_op_round_bf16(mid, n * p->out_dim);
        for (int64_t i = 0; i < n; i++) mvl_op_add(mid + i * p->out_dim, p->b1.data, p->out_dim);
    }
    mvl_op_round_if(p->bf16, mid, n * p->out_dim);
    mvl_op_gelu(mid, n * p->out_dim); /* exact erf GELU (§2) */
    mvl_op_round_if(p->bf16, mid, n * p->out_dim);
    mvl_op_linear(mid, n, &p->l2, p->b2.data, out);
    mvl_op_round_if(p->bf16, out, n * p->out_dim);
    free(mid);
    return MVL_OK;
}

void mvl_pack_geometry(int64_t width, int64_t height, int cols, int rows, int grid, mvl_pack_geom *g) {
    int64_t fh = (int64_t)grid * rows, fw = (int64_t)grid * cols;
    g->row0 = 0;
    g->row1 = fh;
    g->col0 = 0;
    g->col1 = fw;
    /* W/H > FW/FH, compared exactly in integers (§4.1 step 5, §4.2) */
    if (width * fh > height * fw) {
        int64_t nh = height * fw / width, pad = (fh - nh) / 2;
        g->row0 = pad;
        g->row1 = fh - pad;
    } else {
        int64_t nw = width * fh / height, pad = (fw - nw) / 2;
        g->col0 = pad;
        g->col1 = fw - pad;
    }
}

int64_t mvl_pack_count(const mvl_pack_geom *g, int grid) {
    return (int64_t)grid * grid + (g->row1 - g->row0) * (g->col1 - g->col0 + 1);
}

void mvl_pack_image(const float *feats, int64_t dim, int grid, int cols, int rows, const mvl_pack_geom *g,
                    const float *newline, float *out) {
    (void)rows;
    int64_t per_tile = (int64_t)grid * grid * dim;
    memcpy(out, feats, (size_t)per_tile * sizeof(float)); /* thumbnail: no newlines (§4.1 step 3) */
    out += per_tile;
    const float *tiles = feats + per_tile;
    for (int64_t y = g->row0; y < g->row1; y++) {
        for (int64_t x = g->col0; x < g->col1; x++) {
            /* F[24i + a, 24j + b] = tile(i, j)[a, b] */
            int64_t ti = y / grid, a = y % grid, tj = x / grid, b = x % grid;
            const float *src = tiles + (ti * cols + tj) * per_tile + (a * grid + b) * dim;
            memcpy(out, src, (size_t)dim * sizeof(float));
            out += dim;
        }
        memcpy(out, newline, (size_t)dim * sizeof(float));
        out += dim;
    }
}
