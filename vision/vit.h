/* The CLIP vision transformer of MiniMax-VL-01 (vision.md §1), on kernels/ops.h. */
#ifndef MVL_VIT_H
#define MVL_VIT_H

#include "kernels/ops.h"
#include "model/model_dir.h"

typedef struct mvl_vit_layer {
    mvl_weight ln1_w, ln1_b, ln2_w, ln2_b; /* [1, V] */
    mvl_weight q, k, v, o;                 /* [V, V] */
    mvl_weight q_b, k_b, v_b, o_b;         /* [1, V] */
    mvl_weight fc1, fc1_b, fc2, fc2_b;     /* [I, V], [1, I], [V, I], [1, V] */
} mvl_vit_layer;

typedef struct mvl_vit {
    mvl_vision_config cfg;
    int n_run;               /* layers run: vision_feature_layer + 1 (§1.3) */
    int grid;                /* patches per side: image_size / patch_size (24) */
    mvl_weight patch;        /* [V, 3*P*P] conv weight, (c, y, x) order */
    mvl_weight cls;          /* [1, V] */
    mvl_weight pos;          /* [1 + grid^2, V] */
    mvl_weight pre_w, pre_b; /* [1, V] pre_layrnorm */
    mvl_vit_layer *layers;   /* [n_run] */
    bool bf16;               /* MVL_COMPUTE_BF16: round as CLIPVisionModel in bf16 (set after init) */
} mvl_vit;

mvl_status mvl_vit_init(const mvl_model_dir *md, mvl_vit *vit, mvl_error *err);
void mvl_vit_free(mvl_vit *vit);

/* pixels: [n, 3, S, S] float32 normalised tiles. features: [n, grid^2, V]:
 * the selected layer's output without CLS and without post-LN (§1.3). */
mvl_status mvl_vit_forward(const mvl_vit *vit, const float *pixels, int n, float *features,
                           mvl_error *err);

#endif
