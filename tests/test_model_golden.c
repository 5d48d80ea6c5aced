/* The CPU model against goldens from the independent reference
 * (tests/reference/make_goldens.py: transformers CLIPVisionModel and
 * MiniMaxForCausalLM, Pillow preprocessing). Stage by stage, so a failure
 * names its stage: pixels, ViT features, projector output, packed
 * embeddings, decoder input and every layer's hidden state, logits, 32
 * greedy tokens. argv[1]: the model directory name under testdata/.
 * Exits 77 when the goldens have not been generated. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"
#include "text/generate.h"
#include "test_util.h"

#define NSAMPLE 4096

static const mvl_st_set *gold;
static int failures;

static const float *get(const char *name, size_t *n) {
    const mvl_st_tensor *t = mvl_st_find(gold, name);
    if (!t) return NULL;
    mvl_tensor_view v;
    mvl_st_view(gold, t, &v);
    *n = (size_t)mvl_st_numel(t);
    return v.data;
}

static const float *need(const char *name, size_t *n) {
    const float *p = get(name, n);
    if (!p) {
        fprintf(stderr, "goldens lack %s\n", name);
        exit(1);
    }
    return p;
}


static void check(const char *stage, double err, double bar) {
    int ok = err <= bar;
    printf("  %-44s rel err %.3e  (bar %.0e) %s\n", stage, err, bar, ok ? "ok" : "FAIL");
    failures += !ok;
}

/* The golden's samples: flat indices (k*7919 + 13) mod size. */
static double sample_err(const float *x, size_t size, const char *name) {
    size_t n;
    const float *g = need(name, &n);
    float s[NSAMPLE];
    for (size_t k = 0; k < NSAMPLE; k++) s[k] = x[(k * 7919 + 13) % size];
    return mvl_test_rel_err(s, g, NSAMPLE);
}

typedef struct image {
    float *pixels;
    mvl_image_input in;
} image;

static const char *cases[] = {"text", "image1", "image2", "long"};

/* A golden case: its ids (malloc'd), its images (from imgs), the compared positions. */
static int32_t *load_case(const char *name, const image *imgs, size_t *n, mvl_image_input *in, size_t *ni,
                          const float **fpos, size_t *npos) {
    char key[128];
    size_t nimg;
    snprintf(key, sizeof key, "case.%s.ids", name);
    const float *fid = need(key, n);
    snprintf(key, sizeof key, "case.%s.images", name);
    const float *fim = need(key, &nimg);
    snprintf(key, sizeof key, "case.%s.positions", name);
    *fpos = need(key, npos);
    int32_t *ids = malloc(*n * sizeof *ids);
    for (size_t i = 0; i < *n; i++) ids[i] = (int32_t)fid[i];
    *ni = 0;
    for (size_t k = 0; k < nimg; k++)
        if (fim[k] >= 0) in[(*ni)++] = imgs[(int)fim[k]].in;
    printf(" case %s: %zu tokens, %zu image(s)\n", name, *n, *ni);
    return ids;
}

/* The BF16 model with MVL_COMPUTE_BF16 against the reference run in bf16 as HF
 * runs it (bf16compute.*): logits at the 2e-2, gated for the text
 * cases, reported for the image cases; greedy reported. Through the public
 * API: prefill with the images, then decode steps. */
static void run_bf16_compute(const char *dir, const image *imgs) {
    mvl_error err = {0};
    mvl_model *m;
    mvl_model_opts mo = {.compute = MVL_COMPUTE_BF16};
    if (mvl_model_load(dir, &mo, &m, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        failures++;
        return;
    }
    size_t V = (size_t)mvl_model_vocab_size(m);
    printf("bf16 compute (MVL_COMPUTE_BF16) vs the reference run in bf16\n");
    for (int c = 0; c < 4; c++) {
        char key[128];
        size_t n, npos, ni, ng;
        const float *fpos;
        mvl_image_input in[2];
        int32_t *ids = load_case(cases[c], imgs, &n, in, &ni, &fpos, &npos);
        float *logits = malloc(n * V * sizeof(float)), *sel = malloc(npos * V * sizeof(float));
        mvl_seq *s;
        int32_t out[32];
        size_t n_out = 0;
        mvl_stop_reason why;
        mvl_generate_opts o = {.sample = {.temperature = 0, .top_p = 1}, .max_tokens = 32};
        if (mvl_seq_init(m, &s, &err) != MVL_OK || mvl_seq_append(s, ids, n, in, ni, logits, &err) != MVL_OK ||
            mvl_seq_generate(s, &o, out, &n_out, &why, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            failures++;
        } else {
            for (size_t p = 0; p < npos; p++) memcpy(sel + p * V, logits + (size_t)fpos[p] * V, V * sizeof(float));
            snprintf(key, sizeof key, "case.%s.bf16compute.logits", cases[c]);
            double e = mvl_test_rel_err(sel, need(key, &ng), npos * V);
            if (ni == 0) {
                check("logits vs bf16-compute reference (HF as run)", e, 2e-2);
            } else { /* see tests/reference/README.md "bf16 compute": the ViT amplifies GEMM-order flips */
                printf("  %-44s rel err %.3e  (bar 2e-02) %s\n", "logits vs bf16-compute reference (HF as run)", e,
                       e <= 2e-2 ? "ok" : "NOT REACHED (image cases not gated)");
            }
            snprintf(key, sizeof key, "case.%s.logits", cases[c]);
            printf("  %-44s rel err %.3e  (not a bar)\n", "logits vs fp32-compute reference",
                   mvl_test_rel_err(sel, need(key, &ng), npos * V));
            snprintf(key, sizeof key, "case.%s.bf16compute.greedy", cases[c]);
            const float *gg = need(key, &ng);
            size_t same = 0;
            while (same < ng && same < n_out && out[same] == (int32_t)gg[same]) same++;
            printf("  %-44s %zu/%zu identical (not a bar)\n", "greedy vs bf16-compute reference", same, ng);
        }
        mvl_seq_free(s);
        free(sel);
        free(logits);
        free(ids);
    }
    mvl_model_free(m);
}

static int run(const char *src, const char *model_name) {
    char path[2048];
    snprintf(path, sizeof path, "%s/testdata/goldens/%s.safetensors", src, model_name);
    mvl_error err = {0};
    mvl_st_set *set;
    if (mvl_st_open_file(path, &set, &err) != MVL_OK) {
        printf("SKIP: no goldens (%s); generate them with tests/reference/make_goldens.py on a machine with torch\n", err.msg);
        return 77;
    }
    gold = set;
    int is_bf16 = strstr(model_name, "bf16") != NULL;
    double bar = 1e-4; /* every golden without "bf16compute" was computed in fp32 */
    snprintf(path, sizeof path, "%s/testdata/%s", src, model_name);
    mvl_model *m;
    if (mvl_model_load(path, NULL, &m, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const mvl_vit *vit = mvl_model_vit(m);
    const mvl_projector *proj = mvl_model_projector(m);
    const mvl_decoder *dec = mvl_model_decoder(m);
    int64_t H = dec->cfg.hidden_size, V = dec->cfg.vocab_size, VH = vit->cfg.hidden_size;
    int64_t per = (int64_t)vit->grid * vit->grid;
    static const char *names[] = {"img_200x150.png", "img_300x500.png"};
    image imgs[2] = {0};
    printf("%s\n", model_name);
    for (int k = 0; k < 2; k++) {
        char key[128];
        size_t n;
        snprintf(key, sizeof key, "image.%d.geom", k);
        const float *geom = need(key, &n);
        snprintf(path, sizeof path, "%s/testdata/goldens/%s", src, names[k]);
        mvl_image *img;
        mvl_preproc_result r;
        if (mvl_image_load(path, NULL, &img, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        mvl_status st = mvl_preprocess(img, mvl_model_preproc(m), &r, &err);
        mvl_image_free(img);
        if (st != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        printf(" image %s: %dx%d tiles, %lld tokens\n", names[k], r.cols, r.rows, (long long)r.image_tokens);
        if (r.width != geom[0] || r.height != geom[1] || r.cols != geom[2] || r.rows != geom[3] || r.image_tokens != geom[4]) {
            printf("  FAIL geometry: got %dx%d px, %dx%d tiles, %lld tokens; reference %g %g %g %g %g\n", r.width, r.height,
                   r.cols, r.rows, (long long)r.image_tokens, geom[0], geom[1], geom[2], geom[3], geom[4]);
            failures++;
        }
        size_t npx = (size_t)r.n_patches * 3 * 336 * 336;
        imgs[k].pixels = malloc(npx * sizeof(float));
        mvl_preproc_normalize(mvl_model_preproc(m), r.tiles, r.n_patches, imgs[k].pixels);
        imgs[k].in = (mvl_image_input){.pixels = imgs[k].pixels, .cols = r.cols, .rows = r.rows, .width = r.width,
                                        .height = r.height};
        snprintf(key, sizeof key, "image.%d.pixels", k);
        check("pixels (Pillow preprocessing)", sample_err(imgs[k].pixels, npx, key), 1e-6);
        int np = r.n_patches;
        mvl_preproc_result_free(&r);
        float *feats = malloc((size_t)(np * per * VH) * sizeof(float));
        float *pr = malloc((size_t)(np * per * H) * sizeof(float));
        if (mvl_vit_forward(vit, imgs[k].pixels, np, feats, &err) != MVL_OK ||
            mvl_projector_forward(proj, feats, np * per, pr, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        snprintf(key, sizeof key, "image.%d.vit", k);
        check("ViT features (last layer, no CLS)", sample_err(feats, (size_t)(np * per * VH), key), bar);
        snprintf(key, sizeof key, "image.%d.proj", k);
        check("projector output", sample_err(pr, (size_t)(np * per * H), key), bar);
        float *packed;
        int64_t cnt;
        if (mvl_model_embed_image(m, &imgs[k].in, &packed, &cnt, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        snprintf(key, sizeof key, "image.%d.packed", k);
        check("packed embeddings (unpad + newline)", sample_err(packed, (size_t)(cnt * H), key), bar);
        free(packed);
        free(feats);
        free(pr);
    }
    for (int c = 0; c < 4; c++) {
        char key[128];
        size_t n, npos, ng, ni;
        const float *fpos;
        mvl_image_input in[2];
        int32_t *ids = load_case(cases[c], imgs, &n, in, &ni, &fpos, &npos);
        /* decoder input: token embeddings with the images merged (§4.4), through the internal decoder */
        float *x = malloc(n * (size_t)H * sizeof(float));
        float *hidden = malloc((size_t)(dec->cfg.num_layers + 1) * n * (size_t)H * sizeof(float));
        float *logits = malloc(n * (size_t)V * sizeof(float));
        mvl_dec_state ds;
        if (mvl_decoder_embed(dec, ids, (int64_t)n, x, &err) != MVL_OK || mvl_dec_state_init(dec, &ds, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        size_t row = 0;
        for (size_t k = 0; k < ni; k++) {
            float *e;
            int64_t cnt;
            if (mvl_model_embed_image(m, &in[k], &e, &cnt, &err) != MVL_OK) return 1;
            for (int64_t j = 0; j < cnt; j++) {
                while (ids[row] != mvl_model_image_token_id(m)) row++;
                memcpy(x + row++ * H, e + j * H, (size_t)H * sizeof(float));
            }
            free(e);
        }
        if (mvl_decoder_forward(dec, &ds, x, (int64_t)n, logits, NULL, hidden, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        mvl_dec_state_free(&ds);
        snprintf(key, sizeof key, "case.%s.hidden", cases[c]);
        size_t nh;
        const float *gh = need(key, &nh);
        float *sel = malloc(npos * (size_t)(H > V ? H : V) * sizeof(float));
        for (int l = 0; l <= dec->cfg.num_layers; l++) {
            for (size_t p = 0; p < npos; p++)
                memcpy(sel + p * H, hidden + ((size_t)l * n + (size_t)fpos[p]) * H, (size_t)H * sizeof(float));
            char stage[64];
            if (l == 0) snprintf(stage, sizeof stage, "decoder input (embeddings + images)");
            else snprintf(stage, sizeof stage, "hidden state after layer %d (%s)", l - 1,
                          dec->cfg.layer_types[l - 1] == MVL_LAYER_LIGHTNING ? "lightning" : "softmax");
            check(stage, mvl_test_rel_err(sel, gh + (size_t)l * npos * H, npos * (size_t)H), bar);
        }
        for (size_t p = 0; p < npos; p++)
            memcpy(sel + p * V, logits + (size_t)fpos[p] * V, (size_t)V * sizeof(float));
        snprintf(key, sizeof key, "case.%s.logits", cases[c]);
        check(is_bf16 ? "logits vs fp32-compute reference" : "logits", mvl_test_rel_err(sel, need(key, &ng), npos * (size_t)V), bar);
        snprintf(key, sizeof key, "case.%s.bf16compute.logits", cases[c]);
        const float *gb = get(key, &ng);
        if (gb) /* reported: fp32 compute cannot follow the reference's bf16 rounding noise */
            printf("  %-44s rel err %.3e  (not a bar: see the bf16-compute run)\n",
                   "logits vs bf16-compute reference (HF as run)", mvl_test_rel_err(sel, gb, npos * (size_t)V));
        /* greedy through the public API: prefill, then decode steps on the kept state */
        mvl_seq *s;
        int32_t out[32];
        size_t n_out;
        mvl_stop_reason why;
        mvl_generate_opts o = {.sample = {.temperature = 0, .top_p = 1}, .max_tokens = 32};
        if (mvl_seq_init(m, &s, &err) != MVL_OK || mvl_seq_append(s, ids, n, in, ni, NULL, &err) != MVL_OK ||
            mvl_seq_generate(s, &o, out, &n_out, &why, &err) != MVL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        mvl_seq_free(s);
        snprintf(key, sizeof key, "case.%s.greedy", cases[c]);
        const float *gg = need(key, &ng);
        size_t same = 0;
        while (same < ng && same < n_out && out[same] == (int32_t)gg[same]) same++;
        printf("  %-44s %zu/%zu identical %s\n", "32 greedy tokens", same, ng, same == ng ? "ok" : "FAIL");
        failures += same != ng;
        free(sel);
        free(x);
        free(hidden);
        free(logits);
        free(ids);
    }
    mvl_model_free(m);
    if (is_bf16) {
        snprintf(path, sizeof path, "%s/testdata/%s", src, model_name);
        run_bf16_compute(path, imgs);
    }
    for (int k = 0; k < 2; k++) free(imgs[k].pixels);
    mvl_st_close(set);
    printf("%s: %d failure(s)\n", model_name, failures);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *src = getenv("MVL_SOURCE_DIR");
    if (argc != 2) {
        fprintf(stderr, "usage: test_model_golden MODEL_NAME\n");
        return 2;
    }
    return run(src ? src : ".", argv[1]);
}
