/* Time to embed an image and prefill its prompt with --device cuda
 * (BENCHMARKS.md, issues 7 and 8), the two paths side by side in one run:
 *   GPU vision: mvl_seq_append on a cuda model: the uint8 tiles go to the GPU
 *     ViT, projector and packing, whose bf16 rows stay on the device for the
 *     decoder;
 *   CPU vision (the path before): mvl_model_embed_image on a CPU model
 *     (float32 ViT and projector), then the same GPU decoder (its own
 *     mvl_cuda_dec on the same directory, the model's step size) fed those
 *     rows as host float32 embeddings (mvl_cuda_dec_step.embeds: converted to
 *     bf16 on the host and uploaded with the step);
 *   text only: a prompt of as many positions without images (the decoder's
 *     share of both).
 * Each prompt is 10 text ids, the image's tokens, 10 text ids; the last
 * position's logits come back to the host. Images: IMAGE as the preprocessor
 * gives it, and made-up tiles of a 3x3 canvas (10 tiles). Median of ITERS
 * (default 10) after a warm-up.
 *   bench_image_prefill_cuda MODEL_DIR IMAGE [ITERS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_util.h"
#include "kernels/cuda_decoder.h"
#include "mvl.h"

#define STEP_ROWS 2048 /* the model's prefill step on cuda (text/generate.c) */

static int die(const mvl_error *err) {
    fprintf(stderr, "bench_image_prefill_cuda: %s\n", err->msg);
    return 1;
}

/* The CPU-vision path: embeddings on the CPU, then steps fed host floats. */
static mvl_status cpu_vision_prefill(const mvl_model *cpu, mvl_cuda_dec *dec, const mvl_image_input *in,
                                     const int32_t *ids, int64_t n, float *x, float *last, double *embed_ms,
                                     mvl_error *err) {
    const int64_t H = mvl_model_hidden_size(cpu);
    const int32_t img_id = mvl_model_image_token_id(cpu);
    double t0 = mvl_bench_now_ms();
    float *emb;
    int64_t cnt;
    mvl_status st = mvl_model_embed_image(cpu, in, &emb, &cnt, err);
    if (st != MVL_OK) return st;
    *embed_ms = mvl_bench_now_ms() - t0;
    int32_t *rows = malloc((size_t)n * sizeof *rows);
    if (!rows) return MVL_ERR_NOMEM;
    for (int64_t i = 0, j = 0; i < n; i++) {
        rows[i] = ids[i] == img_id ? -1 : ids[i];
        if (rows[i] < 0) memcpy(x + i * H, emb + j++ * H, (size_t)H * sizeof(float));
    }
    free(emb);
    int slot = 0;
    st = mvl_cuda_dec_reset(dec, slot, err);
    for (int64_t r = 0; r < n && st == MVL_OK; r += STEP_ROWS) {
        int k = (int)(n - r < STEP_ROWS ? n - r : STEP_ROWS);
        mvl_cuda_dec_step step = {.n_seq = 1, .slot = &slot, .n_new = &k, .ids = rows + r, .embeds = x + r * H,
                                  .last_logits = r + k == n ? last : NULL};
        st = mvl_cuda_dec_forward(dec, &step, err);
    }
    free(rows);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_image_prefill_cuda MODEL_DIR IMAGE [ITERS]\n");
        return 2;
    }
    const int iters = argc > 3 ? atoi(argv[3]) : 10;
    if (iters < 1) return 2;
    mvl_error err = {0};
    mvl_model *cpu = NULL, *gpu = NULL;
    mvl_model_opts on_gpu = {.device = MVL_DEVICE_CUDA};
    if (mvl_model_load(argv[1], NULL, &cpu, &err) != MVL_OK || mvl_model_load(argv[1], &on_gpu, &gpu, &err) != MVL_OK)
        return die(&err);
    mvl_model_dir *md = NULL;
    mvl_cuda_dec *dec = NULL;
    if (mvl_model_dir_open(argv[1], &md, &err) != MVL_OK) return die(&err);
    int64_t ctx = mvl_model_dir_config(md)->text.max_position_embeddings;
    mvl_cuda_dec_opts o = {.max_slots = 1, .max_ctx = (int)(ctx < 32768 ? ctx : 32768), .max_tokens = STEP_ROWS};
    if (mvl_cuda_dec_init(md, &o, &dec, &err) != MVL_OK) return die(&err);

    const mvl_preproc_config *pp = mvl_model_preproc(cpu);
    const int S = pp->size, V = mvl_model_vocab_size(cpu);
    const int64_t H = mvl_model_hidden_size(cpu);
    const int32_t img_id = mvl_model_image_token_id(cpu);
    mvl_image *img = NULL;
    mvl_preproc_result r = {0};
    if (mvl_image_load(argv[2], NULL, &img, &err) != MVL_OK || mvl_preprocess(img, pp, &r, &err) != MVL_OK)
        return die(&err);
    mvl_image_free(img);
    uint8_t *made_up = malloc((size_t)10 * S * S * 3);
    if (!made_up) return 1;
    for (size_t i = 0; i < (size_t)10 * S * S * 3; i++) made_up[i] = (uint8_t)(i * 2654435761u >> 24);
    const mvl_image_input in[2] = {
        {.cols = r.cols, .rows = r.rows, .width = r.width, .height = r.height, .tiles = r.tiles},
        {.cols = 3, .rows = 3, .width = 3 * S, .height = 3 * S, .tiles = made_up}};
    const char *names[2] = {strrchr(argv[2], '/') ? strrchr(argv[2], '/') + 1 : argv[2], "made-up 3x3 canvas"};

    mvl_seq *gs = NULL;
    if (mvl_seq_init(gpu, &gs, &err) != MVL_OK) return die(&err);
    double *t = malloc((size_t)5 * iters * sizeof *t);
    float *last = malloc((size_t)V * sizeof *last);
    if (!t || !last) return 1;
    printf("| image | tiles | positions | GPU vision + prefill ms | CPU vision + prefill ms | of which CPU embed ms "
           "| text-only prefill ms | GPU embed_image ms | speed-up |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 2; k++) {
        int64_t tokens = mvl_model_image_tokens(gpu, &in[k]), n = tokens + 20;
        int32_t *ids = malloc((size_t)n * sizeof *ids), *text = malloc((size_t)n * sizeof *text);
        float *x = malloc((size_t)(n * H) * sizeof *x);
        if (!ids || !text || !x) return 1;
        for (int64_t i = 0; i < n; i++) {
            text[i] = (int32_t)((i * 7919 + 11) % (img_id > 0 ? img_id : 1));
            ids[i] = i >= 10 && i < 10 + tokens ? img_id : text[i];
        }
        double *tg = t, *tc = t + iters, *te = t + 2 * iters, *tt = t + 3 * iters, *tge = t + 4 * iters;
        for (int it = -1; it < iters; it++) { /* it = -1: warm-up (graphs, cuBLASLt plans, page faults) */
            int s = it < 0 ? 0 : it;
            float *emb;
            int64_t cnt;
            mvl_seq_reset(gs);
            double t0 = mvl_bench_now_ms();
            if (mvl_seq_append(gs, ids, (size_t)n, &in[k], 1, NULL, &err) != MVL_OK) return die(&err);
            tg[s] = mvl_bench_now_ms() - t0;
            t0 = mvl_bench_now_ms();
            if (cpu_vision_prefill(cpu, dec, &in[k], ids, n, x, last, &te[s], &err) != MVL_OK) return die(&err);
            tc[s] = mvl_bench_now_ms() - t0;
            mvl_seq_reset(gs);
            t0 = mvl_bench_now_ms();
            if (mvl_seq_append(gs, text, (size_t)n, NULL, 0, NULL, &err) != MVL_OK) return die(&err);
            tt[s] = mvl_bench_now_ms() - t0;
            t0 = mvl_bench_now_ms();
            if (mvl_model_embed_image(gpu, &in[k], &emb, &cnt, &err) != MVL_OK) return die(&err);
            tge[s] = mvl_bench_now_ms() - t0;
            free(emb);
        }
        double g = mvl_bench_median(tg, iters), c = mvl_bench_median(tc, iters);
        printf("| %s | %d | %lld | %.2f | %.2f | %.2f | %.2f | %.2f | %.1fx |\n", names[k], 1 + in[k].cols * in[k].rows,
               (long long)n, g, c, mvl_bench_median(te, iters), mvl_bench_median(tt, iters),
               mvl_bench_median(tge, iters), c / g);
        free(ids);
        free(text);
        free(x);
    }
    free(t);
    free(last);
    free(made_up);
    mvl_preproc_result_free(&r);
    mvl_seq_free(gs);
    mvl_cuda_dec_free(dec);
    mvl_model_dir_close(md);
    mvl_model_free(gpu);
    mvl_model_free(cpu);
    return 0;
}
