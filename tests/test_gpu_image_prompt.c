/* Image prompts with --device cuda (issues 7 and 8): the GPU vision path
 * (uint8 tiles in, packed bf16 embeddings left on the device) feeding the GPU
 * decoder, against the CPU model (float32 throughout) on the demo model:
 *  (1) each image's embeddings (mvl_model_embed_image, copied back from the
 *      GPU) within 1e-2 of the CPU's, ||gpu - cpu|| / ||cpu|| (the bar of
 *      tests/test_gpu_vit.c);
 *  (2) the logits at every position of one prompt of four images:
 *      testdata/demo.png, then three made-up tile sets: 6x3 tiles (the
 *      largest canvas: a ViT batch of its own), then 1x1 and 2x1 side by side
 *      (one batch together), so the prefill runs three ViT batches and its
 *      2048-row steps end where a batch's rows do. The median position's
 *      relative error max|gpu - cpu| / max|cpu| within 2e-2 (the bar of the
 *      decoder's parity test, tests/gpu_decoder.c), over the whole prompt and
 *      over each step's rows (a misplaced batch would show in its step); the
 *      argmax equal wherever the CPU's top-2 margin exceeds 0.05 at all but
 *      1% of the positions: bf16 rounding through 4k positions flips some
 *      (printed beside the flips of the CPU's own bf16 compute against its
 *      float32). Exact: the same rows run as three appends of one ViT batch
 *      each, cut where the steps end, give the same logits bit for bit. The
 *      worst position and ||gpu - cpu|| / ||cpu|| are printed;
 *  (3) bad input on cuda leaves the sequence as it was: an image without its
 *      uint8 tiles (MVL_ERR_ARG), one with more tiles than the largest canvas
 *      (MVL_ERR_LIMIT);
 *  (4) the decoder alone (kernels/cuda_decoder.h): a step taking the packed
 *      rows from the device (image_rows) gives the same logits, bit for bit,
 *      as the same rows given as host floats (embeds); too few image rows or
 *      both sources are MVL_ERR_ARG with nothing run.
 * Exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_decoder.h"
#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "bench_util.h"
#include "mvl.h"
#include "test_util.h"

#define EMBED_BAR 1e-2
#define LOGIT_BAR 2e-2
#define MARGIN 0.05
#define N_IMAGES 4

static int failures;

static void report(const char *what, double value, double bar) {
    int ok = bar <= 0 || (value <= bar && !isnan(value));
    if (!ok) failures++;
    if (bar > 0) printf("| %-58s | %10.3e | %8.0e | %-4s |\n", what, value, bar, ok ? "ok" : "FAIL");
    else printf("| %-58s | %10.3e | %8s | info |\n", what, value, "-");
}

/* Made-up tiles [n, S, S, 3]: smooth gradients with some noise. */
static uint8_t *synthetic_tiles(int n, int S, uint32_t seed) {
    uint8_t *t = malloc((size_t)n * S * S * 3);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; t && i < (size_t)n * S * S * 3; i++) {
        x = x * 1664525u + 1013904223u;
        size_t p = i / 3 % ((size_t)S * S);
        t[i] = (uint8_t)((p % (size_t)S) * (i % 3 + 1) / 3 + (p / (size_t)S) / 2 + (x >> 27));
    }
    return t;
}

/* Logits [n, V] a against the reference ref, position by position. */
typedef struct cmp {
    double median, worst, norm; /* per-position max|a - ref| / max|ref|; whole-tensor norm ratio */
    int hard, big, soft, nan;   /* argmax differs where ref's top-2 margin is > MARGIN, > 0.5, <= MARGIN */
} cmp;

static cmp compare(const float *a, const float *ref, size_t n, int V) {
    cmp c = {0};
    double *e = malloc(n * sizeof *e);
    for (size_t i = 0; e && i < n; i++) {
        const float *g = a + i * (size_t)V, *r = ref + i * (size_t)V;
        for (int j = 0; j < V; j++) c.nan += isnan(g[j]);
        e[i] = mvl_test_rel_err(g, r, (size_t)V);
        c.worst = fmax(c.worst, e[i]);
        double m;
        if (mvl_test_argmax(g, V, NULL) != mvl_test_argmax(r, V, &m)) {
            c.hard += m > MARGIN;
            c.big += m > 0.5;
            c.soft += m <= MARGIN;
        }
    }
    c.median = e ? mvl_bench_median(e, (int)n) : INFINITY;
    c.norm = mvl_test_norm_rel_err(a, ref, n * (size_t)V);
    free(e);
    return c;
}

static void report_count(const char *what, int count, const char *bar, int ok) {
    printf("| %-58s | %10d | %8s | %-4s |\n", what, count, bar, ok < 0 ? "info" : ok ? "ok" : "FAIL");
    failures += ok == 0;
}

/* (4) on one image: device rows against host rows through a decoder step. */
static int check_device_rows(const char *dir, const mvl_preproc_config *pp, const mvl_image_input *im) {
    mvl_error err = {0};
    mvl_model_dir *md = NULL;
    mvl_cuda_vit *v = NULL;
    mvl_cuda_dec *d = NULL;
    const int tiles = 1 + im->cols * im->rows;
    mvl_cuda_image ci = {im->width, im->height, im->cols, im->rows};
    int64_t cnt = 0;
    if (mvl_model_dir_open(dir, &md, &err) != MVL_OK ||
        mvl_cuda_vit_init(md, tiles, pp->mean, pp->std, &v, &err) != MVL_OK ||
        mvl_cuda_vit_encode(v, im->tiles, 1, &ci, &cnt, &err) != MVL_OK) {
        printf("FAILED: (4): %s\n", err.msg);
        return 1;
    }
    const mvl_text_config *tc = &mvl_model_dir_config(md)->text;
    const int H = tc->hidden_size, V = tc->vocab_size, n = (int)cnt + 10;
    mvl_cuda_dec_opts o = {.max_slots = 2, .max_ctx = n, .max_tokens = n};
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    float *x = calloc((size_t)n * H, sizeof *x), *la = malloc((size_t)n * V * sizeof *la);
    float *lb = malloc((size_t)n * V * sizeof *lb);
    int dim = 0;
    const void *rows = mvl_cuda_vit_packed(v, &dim);
    if (!ids || !x || !la || !lb || mvl_cuda_dec_init(md, &o, &d, &err) != MVL_OK ||
        mvl_cuda_vit_packed_download(v, cnt, x + (size_t)5 * H, &err) != MVL_OK) {
        printf("FAILED: (4): %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < n; i++) ids[i] = i >= 5 && i < 5 + cnt ? -1 : (int32_t)(i * 37 % V);
    int s0 = 0, s1 = 1;
    mvl_cuda_dec_step host = {.n_seq = 1, .slot = &s0, .n_new = &n, .ids = ids, .embeds = x, .logits = la};
    mvl_cuda_dec_step dev = {.n_seq = 1, .slot = &s1, .n_new = &n, .ids = ids, .image_rows = rows,
                             .n_image_rows = cnt - 1, .logits = lb};
    mvl_status few = mvl_cuda_dec_forward(d, &dev, &err); /* one row short */
    dev.embeds = x;
    dev.n_image_rows = cnt;
    mvl_status both = mvl_cuda_dec_forward(d, &dev, &err);
    dev.embeds = NULL;
    int bad_ok = few == MVL_ERR_ARG && both == MVL_ERR_ARG && mvl_cuda_dec_length(d, s1) == 0;
    if (mvl_cuda_dec_forward(d, &host, &err) != MVL_OK || mvl_cuda_dec_forward(d, &dev, &err) != MVL_OK) {
        printf("FAILED: (4): %s\n", err.msg);
        return 1;
    }
    size_t differ = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) differ += memcmp(&la[i], &lb[i], sizeof(float)) != 0;
    char what[96];
    snprintf(what, sizeof what, "(4) decoder: device rows vs host rows (%lld rows), logits differ", (long long)cnt);
    printf("| %-58s | %10zu | %8s | %-4s |\n", what, differ, "0", differ ? "FAIL" : "ok");
    printf("| %-58s | %10d | %8s | %-4s |\n", "(4) decoder: too few image rows, both sources: MVL_ERR_ARG", (int)few,
           "-", bad_ok ? "ok" : "FAIL");
    failures += (differ > 0) + !bad_ok;
    free(ids);
    free(x);
    free(la);
    free(lb);
    mvl_cuda_dec_free(d);
    mvl_cuda_vit_free(v);
    mvl_model_dir_close(md);
    return 0;
}

int main(void) {
    mvl_error err = {0};
    int count = 0;
    char gpu_name[256];
    if (!mvl_test_gpu(&count, gpu_name, sizeof gpu_name)) return 77;
    const char *src = getenv("MVL_SOURCE_DIR");
    char dir[1024], png[1024];
    snprintf(dir, sizeof dir, "%s/testdata/demo-model", src ? src : ".");
    snprintf(png, sizeof png, "%s/testdata/demo.png", src ? src : ".");
    mvl_model *cpu = NULL, *gpu = NULL;
    mvl_model_opts on_gpu = {.device = MVL_DEVICE_CUDA};
    if (mvl_model_load(dir, NULL, &cpu, &err) != MVL_OK || mvl_model_load(dir, &on_gpu, &gpu, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    printf("GPU: %s\n", gpu_name);
    const mvl_preproc_config *pp = mvl_model_preproc(cpu);
    const int S = pp->size, V = mvl_model_vocab_size(cpu), H = mvl_model_hidden_size(cpu);
    const int32_t img_id = mvl_model_image_token_id(cpu);

    /* the images: demo.png as the preprocessor gives it, then made-up tile sets
     * as (cols, rows, width, height): flat originals keep the packed counts small */
    mvl_image_input in[N_IMAGES];
    uint8_t *own[N_IMAGES] = {0};
    mvl_image *img = NULL;
    mvl_preproc_result r = {0};
    if (mvl_image_load(png, NULL, &img, &err) != MVL_OK || mvl_preprocess(img, pp, &r, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    mvl_image_free(img);
    own[0] = r.tiles;
    in[0] = (mvl_image_input){.cols = r.cols, .rows = r.rows, .width = r.width, .height = r.height, .tiles = r.tiles};
    static const int geo[N_IMAGES - 1][4] = {{6, 3, 2016, 60}, {1, 1, 336, 336}, {2, 1, 672, 40}};
    for (int k = 1; k < N_IMAGES; k++) {
        const int *g = geo[k - 1];
        own[k] = synthetic_tiles(1 + g[0] * g[1], S, (uint32_t)k);
        if (!own[k]) return 1;
        in[k] = (mvl_image_input){.cols = g[0], .rows = g[1], .width = g[2], .height = g[3], .tiles = own[k]};
    }

    /* (1) embeddings of each image */
    int64_t tokens[N_IMAGES];
    for (int k = 0; k < N_IMAGES; k++) {
        float *ge = NULL, *ce = NULL;
        int64_t gn = 0, cn = 0;
        if (mvl_model_embed_image(gpu, &in[k], &ge, &gn, &err) != MVL_OK ||
            mvl_model_embed_image(cpu, &in[k], &ce, &cn, &err) != MVL_OK) {
            printf("FAILED: image %d: %s\n", k, err.msg);
            return 1;
        }
        char what[96];
        snprintf(what, sizeof what, "(1) embeddings, image %d: %dx%d tiles, %lld tokens", k, in[k].cols, in[k].rows,
                 (long long)cn);
        if (gn != cn) {
            printf("FAIL: %s: %lld tokens on the GPU\n", what, (long long)gn);
            failures++;
        } else {
            report(what, mvl_test_norm_rel_err(ge, ce, (size_t)cn * H), EMBED_BAR);
        }
        tokens[k] = cn;
        free(ge);
        free(ce);
    }

    /* (2) one prompt: text, image 0, text, image 1, text, images 2 and 3 side by side, text */
    static const int text_before[N_IMAGES + 1] = {10, 5, 3, 0, 20};
    size_t n = 0;
    for (int k = 0; k <= N_IMAGES; k++) n += (size_t)text_before[k] + (k < N_IMAGES ? (size_t)tokens[k] : 0);
    /* where the rows of image 1 and of images 2-3 start: the ends of the first two steps */
    const size_t cut[2] = {(size_t)(text_before[0] + tokens[0] + text_before[1]),
                           (size_t)(text_before[0] + tokens[0] + text_before[1] + tokens[1] + text_before[2])};
    int32_t *ids = malloc(n * sizeof *ids);
    size_t lbytes = n * (size_t)V * sizeof(float);
    float *gl = malloc(lbytes), *cl = malloc(lbytes), *bl = malloc(lbytes), *pl = malloc(lbytes);
    mvl_model *cpu_bf16 = NULL;
    mvl_model_opts bf16 = {.compute = MVL_COMPUTE_BF16};
    if (!ids || !gl || !cl || !bl || !pl || mvl_model_load(dir, &bf16, &cpu_bf16, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    size_t j = 0;
    uint32_t x = 12345;
    for (int k = 0; k <= N_IMAGES; k++) {
        for (int t = 0; t < text_before[k]; t++) {
            x = x * 1664525u + 1013904223u;
            int32_t id = (int32_t)((x >> 8) % (uint32_t)(V - 1));
            ids[j++] = id + (id >= img_id); /* any id but the image token's */
        }
        for (int64_t t = 0; k < N_IMAGES && t < tokens[k]; t++) ids[j++] = img_id;
    }
    mvl_seq *gs = NULL, *cs = NULL, *bs = NULL, *ps = NULL;
    if (mvl_seq_init(gpu, &gs, &err) != MVL_OK || mvl_seq_init(cpu, &cs, &err) != MVL_OK ||
        mvl_seq_init(cpu_bf16, &bs, &err) != MVL_OK || mvl_seq_init(gpu, &ps, &err) != MVL_OK ||
        mvl_seq_append(gs, ids, n, in, N_IMAGES, gl, &err) != MVL_OK ||
        mvl_seq_append(cs, ids, n, in, N_IMAGES, cl, &err) != MVL_OK ||
        mvl_seq_append(bs, ids, n, in, N_IMAGES, bl, &err) != MVL_OK ||
        /* the same rows in three appends of one ViT batch each, cut where the steps above end */
        mvl_seq_append(ps, ids, cut[0], in, 1, pl, &err) != MVL_OK ||
        mvl_seq_append(ps, ids + cut[0], cut[1] - cut[0], in + 1, 1, pl + cut[0] * V, &err) != MVL_OK ||
        mvl_seq_append(ps, ids + cut[1], n - cut[1], in + 2, 2, pl + cut[1] * V, &err) != MVL_OK) {
        printf("FAILED: the prompt: %s\n", err.msg);
        return 1;
    }
    cmp g = compare(gl, cl, n, V), b = compare(bl, cl, n, V);
    char what[96];
    snprintf(what, sizeof what, "(2) logits, median position (%zu positions)", n);
    report(what, g.median, LOGIT_BAR);
    const size_t from[3] = {0, cut[0], cut[1]}, to[3] = {cut[0], cut[1], n};
    for (int k = 0; k < 3; k++) {
        cmp part = compare(gl + from[k] * V, cl + from[k] * V, to[k] - from[k], V);
        snprintf(what, sizeof what, "(2) logits, median position of rows %zu..%zu", from[k], to[k]);
        report(what, part.median, LOGIT_BAR);
    }
    report("(2) logits, worst position", g.worst, 0);
    report("(2) logits, ||gpu - cpu|| / ||cpu||, whole tensor", g.norm, 0);
    report_count("(2) NaN logits", g.nan, "0", g.nan == 0);
    /* bf16 rounding flips near ties; the CPU's own bf16 compute shows how many */
    report_count("(2) argmax differs, CPU margin > 0.05 (1% allowed)", g.hard, "1%", g.hard <= (int)(n / 100));
    report_count("(2) argmax differs, CPU margin > 0.5", g.big, "-", -1);
    report_count("(2) argmax differs, near ties", g.soft, "-", -1);
    report_count("(2) CPU bf16 compute vs f32: argmax differs, margin > 0.05", b.hard, "-", -1);
    report_count("(2) CPU bf16 compute vs f32: argmax differs, margin > 0.5", b.big, "-", -1);
    report("(2) CPU bf16 compute vs f32: median position", b.median, 0);
    size_t differ = 0;
    for (size_t i = 0; i < n * (size_t)V; i++) differ += memcmp(&gl[i], &pl[i], sizeof(float)) != 0;
    report_count("(2) one append vs three (same steps): logits differ", (int)differ, "0", differ == 0);

    /* (3) bad input on cuda; the sequence keeps its n positions */
    const float *px = gl; /* any floats: refused before they are read */
    mvl_image_input no_tiles = {.pixels = px, .cols = 1, .rows = 1, .width = 336, .height = 336};
    mvl_image_input too_big = {.cols = 8, .rows = 8, .width = 2688, .height = 2688, .tiles = own[1]};
    int32_t one = img_id;
    mvl_status st1 = mvl_seq_append(gs, &one, 1, &no_tiles, 1, NULL, &err);
    int ok1 = st1 == MVL_ERR_ARG && strstr(err.msg, "tiles") && mvl_seq_length(gs) == (int64_t)n;
    mvl_status st2 = mvl_seq_append(gs, &one, 1, &too_big, 1, NULL, &err);
    int ok2 = st2 == MVL_ERR_LIMIT && mvl_seq_length(gs) == (int64_t)n;
    printf("| %-58s | %10d | %8s | %-4s |\n", "(3) image without tiles: MVL_ERR_ARG, sequence kept", (int)st1, "-",
           ok1 ? "ok" : "FAIL");
    printf("| %-58s | %10d | %8s | %-4s |\n", "(3) 8x8 tiles: MVL_ERR_LIMIT, sequence kept", (int)st2, "-",
           ok2 ? "ok" : "FAIL");
    failures += !ok1 + !ok2;

    if (check_device_rows(dir, pp, &in[0])) return 1;

    mvl_seq_free(gs);
    mvl_seq_free(cs);
    mvl_seq_free(bs);
    mvl_seq_free(ps);
    mvl_model_free(cpu_bf16);
    free(ids);
    free(gl);
    free(cl);
    free(bl);
    free(pl);
    for (int k = 0; k < N_IMAGES; k++) free(own[k]);
    mvl_model_free(gpu);
    mvl_model_free(cpu);
    printf("%s\n", failures ? "FAILED" : "all passed");
    return failures ? 1 : 0;
}
