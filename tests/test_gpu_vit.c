/* The CUDA vision path (kernels/cuda_vit.h) against the CPU reference
 * (vision/vit.c, projector/projector.c) on the small models of testdata/,
 * stage by stage: ViT features (selected layer, CLS dropped, §1.3) and the
 * packed embeddings (projector + packing + image_newline, §2, §4.1), for
 * images of several tile grids and for a batch of two images. The CPU runs
 * from the same uint8 tiles twice: in float32 on the checkpoint's weights, and
 * in its bf16 compute mode (MVL_COMPUTE_BF16: rounded where CLIPVisionModel in
 * bf16 rounds, the points the GPU path follows too) on the weights rounded to
 * bf16 as the GPU holds them. Bar: a relative error
 * ||gpu - cpu|| / ||cpu|| of at most 1e-2 per stage against both (issue 7).
 * Skipped (77) without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "mvl.h"
#include "projector/projector.h"
#include "test_util.h"
#include "vision/vit.h"

#define BAR 1e-2

static int failures;

static void report(const char *model, const char *what, double e) {
    int ok = e <= BAR && !isnan(e);
    printf("| %s | %s | %.3e | %s |\n", model, what, e, ok ? "ok" : "FAIL");
    if (!ok) failures++;
}

typedef struct cpu_ref {
    mvl_vit vit;
    mvl_projector proj;
} cpu_ref;

/* The bf16 reference: every weight rounded to bf16, bf16 compute. */
static int cpu_ref_bf16(cpu_ref *r) {
    mvl_vit *v = &r->vit;
    int bad = mvl_test_round_weight(&v->patch) | mvl_test_round_weight(&v->cls) | mvl_test_round_weight(&v->pos) |
              mvl_test_round_weight(&v->pre_w) | mvl_test_round_weight(&v->pre_b);
    for (int l = 0; l < v->n_run; l++) {
        mvl_vit_layer *L = &v->layers[l];
        mvl_weight *ws[] = {&L->ln1_w, &L->ln1_b, &L->ln2_w, &L->ln2_b, &L->q,   &L->k,     &L->v,
                            &L->o,     &L->q_b,   &L->k_b,   &L->v_b,   &L->o_b, &L->fc1,   &L->fc1_b,
                            &L->fc2,   &L->fc2_b};
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) bad |= mvl_test_round_weight(ws[i]);
    }
    mvl_projector *p = &r->proj;
    bad |= mvl_test_round_weight(&p->l1) | mvl_test_round_weight(&p->b1) | mvl_test_round_weight(&p->l2) |
           mvl_test_round_weight(&p->b2) | mvl_test_round_weight(&p->newline);
    v->bf16 = p->bf16 = true;
    return bad;
}

/* One image through the CPU path: features [n, g*g, V] and packed [*cnt, D]. */
static int cpu_image(cpu_ref *r, const mvl_preproc_config *pc, const mvl_preproc_result *pr, float **feats,
                     float **packed, int64_t *cnt, mvl_error *err) {
    const int S = pc->size, g = r->vit.grid, n = pr->n_patches;
    const int64_t V = r->vit.cfg.hidden_size, D = r->proj.out_dim;
    float *px = malloc((size_t)n * 3 * S * S * sizeof(float));
    *feats = malloc((size_t)n * g * g * V * sizeof(float));
    float *pf = malloc((size_t)n * g * g * D * sizeof(float));
    mvl_pack_geom geom;
    mvl_pack_geometry(pr->width, pr->height, pr->cols, pr->rows, g, &geom);
    *cnt = mvl_pack_count(&geom, g);
    *packed = malloc((size_t)*cnt * D * sizeof(float));
    int rc = !px || !*feats || !pf || !*packed;
    if (!rc) {
        mvl_preproc_normalize(pc, pr->tiles, n, px);
        rc = mvl_vit_forward(&r->vit, px, n, *feats, err) != MVL_OK ||
             mvl_projector_forward(&r->proj, *feats, (int64_t)n * g * g, pf, err) != MVL_OK;
    }
    if (!rc) mvl_pack_image(pf, D, g, pr->cols, pr->rows, &geom, r->proj.newline.data, *packed);
    free(px);
    free(pf);
    return rc;
}

static int run_model(const char *dir, const char *name, const char *img_dir) {
    mvl_error err = {0};
    mvl_model_dir *md = NULL;
    if (mvl_model_dir_open(dir, &md, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    const mvl_preproc_config *pc = mvl_model_dir_preproc(md);
    cpu_ref r, rb; /* fp32 as stored; bf16 (cpu_ref_bf16) */
    memset(&r, 0, sizeof r);
    memset(&rb, 0, sizeof rb);
    mvl_cuda_vit *v = NULL;
    int rc = mvl_vit_init(md, &r.vit, &err) != MVL_OK || mvl_projector_init(md, &r.proj, &err) != MVL_OK ||
             mvl_vit_init(md, &rb.vit, &err) != MVL_OK || mvl_projector_init(md, &rb.proj, &err) != MVL_OK ||
             cpu_ref_bf16(&rb) ||
             mvl_cuda_vit_init(md, 24, pc->mean, pc->std, &v, &err) != MVL_OK;
    /* 1 tile + thumbnail, a 2x1 canvas, a 3x3-ish photo-size canvas, a tall one */
    const char *images[] = {"rgb_336x336.png", "jpeg_1000x700.jpg", "png_rgba8_500x320.png", "rgb_700x1000.png"};
    const int n_img = (int)(sizeof images / sizeof images[0]);
    mvl_preproc_result pr[4];
    memset(pr, 0, sizeof pr);
    float *cf[4] = {0}, *cp[4] = {0}, *bf[4] = {0}, *bp[4] = {0}; /* CPU fp32 / bf16 compute */
    int64_t ccnt[4] = {0}, bcnt[4] = {0};
    const int g = r.vit.grid;
    const int64_t V = r.vit.cfg.hidden_size, D = r.proj.out_dim;
    for (int i = 0; i < n_img && !rc; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", img_dir, images[i]);
        mvl_image *img = NULL;
        mvl_image_opts io = {0};
        rc = mvl_image_load(path, &io, &img, &err) != MVL_OK || mvl_preprocess(img, pc, &pr[i], &err) != MVL_OK ||
             cpu_image(&r, pc, &pr[i], &cf[i], &cp[i], &ccnt[i], &err);
        rc = rc || cpu_image(&rb, pc, &pr[i], &bf[i], &bp[i], &bcnt[i], &err);
        mvl_image_free(img);
        if (rc) break;
        /* ViT features: the GPU's hidden state without the CLS row */
        const int n = pr[i].n_patches, ntok = g * g + 1;
        float *hid = malloc((size_t)n * ntok * V * sizeof(float)), *gf = malloc((size_t)n * g * g * V * sizeof(float));
        rc = !hid || !gf || mvl_cuda_vit_forward_u8(v, pr[i].tiles, n, &err) != MVL_OK ||
             mvl_cuda_vit_hidden(v, hid, &err) != MVL_OK;
        if (!rc) {
            for (int t = 0; t < n; t++)
                memcpy(gf + (size_t)t * g * g * V, hid + ((size_t)t * ntok + 1) * V, (size_t)g * g * V * sizeof(float));
            char what[160];
            snprintf(what, sizeof what, "ViT features, %s (%d tiles), vs CPU fp32", images[i], n);
            report(name, what, mvl_test_norm_rel_err(gf, cf[i], (size_t)n * g * g * V));
            snprintf(what, sizeof what, "ViT features, %s (%d tiles), vs CPU bf16", images[i], n);
            report(name, what, mvl_test_norm_rel_err(gf, bf[i], (size_t)n * g * g * V));
        }
        free(hid);
        free(gf);
        if (rc) break;
        /* packed embeddings of this image alone */
        mvl_cuda_image im = {pr[i].width, pr[i].height, pr[i].cols, pr[i].rows};
        int64_t cnt = 0;
        rc = mvl_cuda_vit_encode(v, pr[i].tiles, 1, &im, &cnt, &err) != MVL_OK;
        if (!rc && cnt != ccnt[i]) {
            printf("FAILED: %s: %lld packed tokens on the GPU, %lld on the CPU\n", images[i], (long long)cnt,
                   (long long)ccnt[i]);
            failures++;
            continue;
        }
        float *gp = rc ? NULL : malloc((size_t)cnt * D * sizeof(float));
        if (!rc && (!gp || mvl_cuda_vit_packed_download(v, cnt, gp, &err) != MVL_OK)) rc = 1;
        if (!rc) {
            char what[160];
            snprintf(what, sizeof what, "packed embeddings, %s (%lld tokens), vs CPU fp32", images[i], (long long)cnt);
            report(name, what, mvl_test_norm_rel_err(gp, cp[i], (size_t)cnt * D));
            snprintf(what, sizeof what, "packed embeddings, %s (%lld tokens), vs CPU bf16", images[i], (long long)cnt);
            report(name, what, mvl_test_norm_rel_err(gp, bp[i], (size_t)cnt * D));
        }
        free(gp);
    }
    /* a batch of two images in one call: the same rows as each alone */
    if (!rc) {
        const int a = 1, b = 2, na = pr[a].n_patches, nb = pr[b].n_patches;
        size_t tb = (size_t)pc->size * pc->size * 3;
        uint8_t *tiles = malloc((size_t)(na + nb) * tb);
        mvl_cuda_image ims[2] = {{pr[a].width, pr[a].height, pr[a].cols, pr[a].rows},
                                 {pr[b].width, pr[b].height, pr[b].cols, pr[b].rows}};
        int64_t cnt = 0;
        rc = !tiles;
        if (!rc) {
            memcpy(tiles, pr[a].tiles, (size_t)na * tb);
            memcpy(tiles + (size_t)na * tb, pr[b].tiles, (size_t)nb * tb);
            rc = mvl_cuda_vit_encode(v, tiles, 2, ims, &cnt, &err) != MVL_OK;
        }
        if (!rc && cnt != ccnt[a] + ccnt[b]) {
            printf("FAILED: batch of two: %lld packed tokens, expected %lld\n", (long long)cnt,
                   (long long)(ccnt[a] + ccnt[b]));
            failures++;
        } else if (!rc) {
            float *gp = malloc((size_t)cnt * D * sizeof(float)), *ref = malloc((size_t)cnt * D * sizeof(float));
            rc = !gp || !ref || mvl_cuda_vit_packed_download(v, cnt, gp, &err) != MVL_OK;
            if (!rc) {
                memcpy(ref, cp[a], (size_t)ccnt[a] * D * sizeof(float));
                memcpy(ref + (size_t)ccnt[a] * D, cp[b], (size_t)ccnt[b] * D * sizeof(float));
                report(name, "packed embeddings, batch of two images", mvl_test_norm_rel_err(gp, ref, (size_t)cnt * D));
            }
            free(gp);
            free(ref);
        }
        free(tiles);
    }
    if (rc) {
        printf("FAILED: %s: %s\n", name, err.msg);
        failures++;
    }
    for (int i = 0; i < n_img; i++) {
        mvl_preproc_result_free(&pr[i]);
        free(cf[i]), free(cp[i]), free(bf[i]), free(bp[i]);
    }
    mvl_cuda_vit_free(v);
    mvl_projector_free(&r.proj), mvl_projector_free(&rb.proj);
    mvl_vit_free(&r.vit), mvl_vit_free(&rb.vit);
    mvl_model_dir_close(md);
    return 0;
}

int main(void) {
    int n;
    char gname[256];
    if (!mvl_test_gpu(&n, gname, sizeof gname)) return 77;
    const char *src = getenv("MVL_SOURCE_DIR");
    if (!src) src = ".";
    char dir[1024], img_dir[1024];
    snprintf(img_dir, sizeof img_dir, "%s/testdata/images", src);
    printf("device: %s\n| model | stage | rel. error | bar %.0e |\n|---|---|---|---|\n", gname, BAR);
    const char *models[] = {"tiny-random", "tiny-random-bf16", "demo-model"};
    for (int i = 0; i < 3; i++) {
        snprintf(dir, sizeof dir, "%s/testdata/%s", src, models[i]);
        run_model(dir, models[i], img_dir);
    }
    printf(failures ? "FAILED: %d checks\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
