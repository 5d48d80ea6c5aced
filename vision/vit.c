/* CLIP ViT forward (vision.md §1.2-1.3): conv patch embedding as an
 * im2col GEMM, CLS, learned positions, pre-LN, pre-LN encoder layers with
 * exact erf GELU, selected layer without CLS and without post-LN. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vision/vit.h"

static mvl_status load(const mvl_model_dir *md, const char *fmt, int layer, int ndim, int64_t d0, int64_t d1,
                       mvl_weight *w, mvl_error *err) {
    char name[256];
    snprintf(name, sizeof name, fmt, layer);
    int64_t shape[2] = {d0, d1};
    return mvl_weight_load(md, name, ndim, shape, w, err);
}

#define VP "vision_tower.vision_model."

mvl_status mvl_vit_init(const mvl_model_dir *md, mvl_vit *vit, mvl_error *err) {
    memset(vit, 0, sizeof *vit);
    const mvl_model_config *cfg = mvl_model_dir_config(md);
    vit->cfg = cfg->vision;
    int64_t V = vit->cfg.hidden_size, I = vit->cfg.intermediate_size, P = vit->cfg.patch_size;
    vit->grid = vit->cfg.image_size / vit->cfg.patch_size;
    vit->n_run = cfg->vision_feature_layer + 1;
    int64_t npos = 1 + (int64_t)vit->grid * vit->grid;
    mvl_status st;
    int64_t pshape[4] = {V, vit->cfg.num_channels, P, P};
    if ((st = mvl_weight_load(md, VP "embeddings.patch_embedding.weight", 4, pshape, &vit->patch, err)) ||
        (st = load(md, VP "embeddings.class_embedding", 0, 1, V, 0, &vit->cls, err)) ||
        (st = load(md, VP "embeddings.position_embedding.weight", 0, 2, npos, V, &vit->pos, err)) ||
        (st = load(md, VP "pre_layrnorm.weight", 0, 1, V, 0, &vit->pre_w, err)) ||
        (st = load(md, VP "pre_layrnorm.bias", 0, 1, V, 0, &vit->pre_b, err)))
        goto fail;
    vit->layers = mvl_calloc((size_t)vit->n_run, sizeof *vit->layers, err);
    if (!vit->layers) {
        st = MVL_ERR_NOMEM;
        goto fail;
    }
    for (int l = 0; l < vit->n_run; l++) {
        mvl_vit_layer *L = &vit->layers[l];
#define LP VP "encoder.layers.%d."
        if ((st = load(md, LP "layer_norm1.weight", l, 1, V, 0, &L->ln1_w, err)) ||
            (st = load(md, LP "layer_norm1.bias", l, 1, V, 0, &L->ln1_b, err)) ||
            (st = load(md, LP "layer_norm2.weight", l, 1, V, 0, &L->ln2_w, err)) ||
            (st = load(md, LP "layer_norm2.bias", l, 1, V, 0, &L->ln2_b, err)) ||
            (st = load(md, LP "self_attn.q_proj.weight", l, 2, V, V, &L->q, err)) ||
            (st = load(md, LP "self_attn.k_proj.weight", l, 2, V, V, &L->k, err)) ||
            (st = load(md, LP "self_attn.v_proj.weight", l, 2, V, V, &L->v, err)) ||
            (st = load(md, LP "self_attn.out_proj.weight", l, 2, V, V, &L->o, err)) ||
            (st = load(md, LP "self_attn.q_proj.bias", l, 1, V, 0, &L->q_b, err)) ||
            (st = load(md, LP "self_attn.k_proj.bias", l, 1, V, 0, &L->k_b, err)) ||
            (st = load(md, LP "self_attn.v_proj.bias", l, 1, V, 0, &L->v_b, err)) ||
            (st = load(md, LP "self_attn.out_proj.bias", l, 1, V, 0, &L->o_b, err)) ||
            (st = load(md, LP "mlp.fc1.weight", l, 2, I, V, &L->fc1, err)) ||
            (st = load(md, LP "mlp.fc1.bias", l, 1, I, 0, &L->fc1_b, err)) ||
            (st = load(md, LP "mlp.fc2.weight", l, 2, V, I, &L->fc2, err)) ||
            (st = load(md, LP "mlp.fc2.bias", l, 1, V, 0, &L->fc2_b, err)))
            goto fail;
#undef LP
    }
    return MVL_OK;
fail:
    mvl_vit_free(vit);
    return st;
}

void mvl_vit_free(mvl_vit *vit) {
    if (!vit) return;
    mvl_weight *singles[] = {&vit->patch, &vit->cls, &vit->pos, &vit->pre_w, &vit->pre_b};
    for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++) mvl_weight_free(singles[i]);
    if (vit->layers) {
        for (int l = 0; l < vit->n_run; l++) {
            mvl_weight *w = &vit->layers[l].ln1_w;
            for (size_t i = 0; i < sizeof(mvl_vit_layer) / sizeof(mvl_weight); i++) mvl_weight_free(&w[i]);
        }
    }
    free(vit->layers);
    memset(vit, 0, sizeof *vit);
}

/* One tile: h [T, V] with T = 1 + grid^2, updated through all layers. */
static mvl_status vit_tile(const mvl_vit *vit, const float *px, float *h, float *buf, mvl_error *err) {
    int64_t V = vit->cfg.hidden_size, I = vit->cfg.intermediate_size, P = vit->cfg.patch_size;
    int64_t C = vit->cfg.num_channels, S = vit->cfg.image_size, G = vit->grid, T = 1 + G * G, K = C * P * P;
    float *col = buf;                /* [G*G, K] im2col, then reused */
    float *u = buf;                  /* [T, V] */
    float *q = u + T * V, *k = q + T * V, *v = k + T * V, *att = v + T * V; /* [T, V] each */
    float *mlp = q;                  /* [T, I] from q on: the caller sizes buf for it */
    for (int64_t py = 0; py < G; py++)
        for (int64_t pxi = 0; pxi < G; pxi++) {
            float *dst = col + (py * G + pxi) * K;
            for (int64_t c = 0; c < C; c++)
                for (int64_t y = 0; y < P; y++)
                    memcpy(dst + (c * P + y) * P, px + (c * S + py * P + y) * S + pxi * P, (size_t)P * sizeof(float));
        }
    bool bf = vit->bf16;
    mvl_op_round_if(bf, col, G * G * K); /* the pixels cast to bf16 (vision.md §7.8) */
    mvl_op_linear(col, G * G, &vit->patch, NULL, h + V); /* no conv bias (§1.2) */
    memcpy(h, vit->cls.data, (size_t)V * sizeof(float));
    mvl_op_round_if(bf, h + V, G * G * V);
    mvl_op_add(h, vit->pos.data, T * V);
    mvl_op_round_if(bf, h, T * V);
    float eps = (float)vit->cfg.layer_norm_eps;
    mvl_op_layernorm(h, T, V, vit->pre_w.data, vit->pre_b.data, eps, h);
    mvl_op_round_if(bf, h, T * V); /* bf16 LayerNorm: fp32 inside, one rounding */
    int heads = vit->cfg.num_heads, hd = (int)(V / heads);
    for (int l = 0; l < vit->n_run; l++) {
        const mvl_vit_layer *L = &vit->layers[l];
        mvl_op_layernorm(h, T, V, L->ln1_w.data, L->ln1_b.data, eps, u);
        mvl_op_round_if(bf, u, T * V);
        mvl_op_linear(u, T, &L->q, L->q_b.data, q);
        mvl_op_linear(u, T, &L->k, L->k_b.data, k);
        mvl_op_linear(u, T, &L->v, L->v_b.data, v);
        mvl_op_round_if(bf, q, 3 * T * V); /* q, k, v are adjacent */
        mvl_status st = mvl_op_attention(q, V, T, k, v, V, T, heads, heads, hd, 1.0f / sqrtf((float)hd), false, bf, att, err);
        if (st != MVL_OK) return st;
        mvl_op_linear(att, T, &L->o, L->o_b.data, u);
        mvl_op_round_if(bf, u, T * V);
        mvl_op_add(h, u, T * V);
        mvl_op_round_if(bf, h, T * V);
        mvl_op_layernorm(h, T, V, L->ln2_w.data, L->ln2_b.data, eps, u);
        mvl_op_round_if(bf, u, T * V);
        mvl_op_linear(u, T, &L->fc1, L->fc1_b.data, mlp);
        mvl_op_round_if(bf, mlp, T * I);
        mvl_op_gelu(mlp, T * I);
        mvl_op_round_if(bf, mlp, T * I);
        mvl_op_linear(mlp, T, &L->fc2, L->fc2_b.data, u);
        mvl_op_round_if(bf, u, T * V);
        mvl_op_add(h, u, T * V);
        mvl_op_round_if(bf, h, T * V);
    }
    return MVL_OK;
}

mvl_status mvl_vit_forward(const mvl_vit *vit, const float *pixels, int n, float *features, mvl_error *err) {
    int64_t V = vit->cfg.hidden_size, I = vit->cfg.intermediate_size, P = vit->cfg.patch_size;
    int64_t C = vit->cfg.num_channels, S = vit->cfg.image_size, G = vit->grid, T = 1 + G * G;
    int64_t need = 5 * T * V;
    if (T * I + T * V > need) need = T * I + T * V;
    if (G * G * C * P * P > need) need = G * G * C * P * P;
    float *h = mvl_malloc((size_t)(T * V) * sizeof(float), err);
    float *buf = h ? mvl_malloc((size_t)need * sizeof(float), err) : NULL;
    mvl_status st = buf ? MVL_OK : MVL_ERR_NOMEM;
    for (int i = 0; i < n && st == MVL_OK; i++) {
        st = vit_tile(vit, pixels + (int64_t)i * C * S * S, h, buf, err);
        if (st == MVL_OK) memcpy(features + (int64_t)i * (T - 1) * V, h + V, (size_t)((T - 1) * V) * sizeof(float));
    }
    free(buf);
    free(h);
    return st;
}
