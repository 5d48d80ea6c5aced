/* Driver for the CUDA vision path (kernels/cuda_vit.h), used by
 * tests/reference/vit_parity_bench.py on the GPU machine:
 *   bench_vit_cuda hidden MODEL_DIR TILES.u8 N OUT.npy
 *       ViT final hidden state [N, 1+g*g, V] (float32 .npy) of N uint8 tiles
 *       [N, S, S, 3] read from a raw file.
 *   bench_vit_cuda encode MODEL_DIR TILES.u8 W H COLS ROWS OUT.npy
 *       ViT + projector + packing of one image's 1+COLS*ROWS tiles: the
 *       packed embeddings [tokens, D] as float32 .npy.
 *   bench_vit_cuda bench MODEL_DIR N...
 *       ViT time per batch of N random tiles, and the GEMM ceiling.
 *   bench_vit_cuda e2e MODEL_DIR IMAGE REPS
 *       file -> packed embeddings: decode, preprocess, ViT, projector, pack.
 * Exits 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "mvl.h"
#include "bench_util.h"

static int fail(const mvl_error *err) {
    fprintf(stderr, "bench_vit_cuda: %s\n", err->msg);
    return 1;
}

static uint8_t *read_tiles(const char *path, size_t want, mvl_error *err) {
    char *buf = NULL;
    size_t len = 0;
    if (mvl_read_file(path, want + 1, &buf, &len, err) != MVL_OK) return NULL;
    if (len != want) {
        mvl_fail(err, MVL_ERR_FORMAT, "%s: %zu bytes, expected %zu", path, len, want);
        free(buf);
        return NULL;
    }
    return (uint8_t *)buf;
}

/* ViT FLOPs of one tile, counting a multiply-add as 2 (vision.md §1). */
static double vit_flops_per_tile(const mvl_vision_config *c, int layers) {
    double g = c->image_size / c->patch_size, n = g * g + 1, V = c->hidden_size, I = c->intermediate_size;
    double patch = 2.0 * g * g * 3 * c->patch_size * c->patch_size * V;
    double layer = 2.0 * n * (4 * V * V + 2 * V * I) + 4.0 * n * n * V;
    return patch + layers * layer;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_vit_cuda hidden|encode|bench|e2e MODEL_DIR ...\n");
        return 2;
    }
    mvl_error err = {0};
    const char *mode = argv[1];
    mvl_model_dir *md = NULL;
    if (mvl_model_dir_open(argv[2], &md, &err) != MVL_OK) return fail(&err);
    int ngpu;
    char gname[256];
    if (mvl_gpu_probe(&ngpu, gname, sizeof gname, &err) != MVL_OK) {
        printf("skipped: %s\n", err.msg);
        mvl_model_dir_close(md);
        return 77;
    }
    const mvl_model_config *cfg = mvl_model_dir_config(md);
    const int S = cfg->vision.image_size, g = S / cfg->vision.patch_size, ntok = g * g + 1;
    const int V = cfg->vision.hidden_size;
    mvl_preproc_config pc;
    mvl_preproc_config_default(&pc);
    int max_tiles = 64;
    if (!strcmp(mode, "hidden") && argc == 6) max_tiles = atoi(argv[4]);
    mvl_cuda_vit *v = NULL;
    if (mvl_cuda_vit_init(md, max_tiles, pc.mean, pc.std, &v, &err) != MVL_OK) return fail(&err);
    int rc = 0;
    const size_t tile_bytes = (size_t)S * S * 3;

    if (!strcmp(mode, "hidden") && argc == 6) {
        int n = atoi(argv[4]);
        uint8_t *tiles = read_tiles(argv[3], (size_t)n * tile_bytes, &err);
        float *out = tiles ? malloc((size_t)n * ntok * V * sizeof(float)) : NULL;
        int64_t shape[3] = {n, ntok, V};
        if (!tiles || !out || mvl_cuda_vit_forward_u8(v, tiles, n, &err) != MVL_OK ||
            mvl_cuda_vit_hidden(v, out, &err) != MVL_OK || mvl_npy_write_f32(argv[5], out, 3, shape, &err) != MVL_OK)
            rc = fail(&err);
        free(tiles);
        free(out);
    } else if (!strcmp(mode, "encode") && argc == 9) {
        mvl_cuda_image im = {atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), atoi(argv[7])};
        int n = 1 + im.cols * im.rows;
        uint8_t *tiles = read_tiles(argv[3], (size_t)n * tile_bytes, &err);
        int64_t cnt = 0;
        int dim = 0;
        float *out = NULL;
        if (!tiles || mvl_cuda_vit_encode(v, tiles, 1, &im, &cnt, &err) != MVL_OK) rc = fail(&err);
        else {
            mvl_cuda_vit_packed(v, &dim);
            out = malloc((size_t)cnt * dim * sizeof(float));
            int64_t shape[2] = {cnt, dim};
            if (!out || mvl_cuda_vit_packed_download(v, cnt, out, &err) != MVL_OK ||
                mvl_npy_write_f32(argv[8], out, 2, shape, &err) != MVL_OK)
                rc = fail(&err);
        }
        free(tiles);
        free(out);
    } else if (!strcmp(mode, "bench") && argc >= 4) {
        printf("device: %s\n", gname);
        double per_tile = vit_flops_per_tile(&cfg->vision, cfg->vision_feature_layer + 1);
        for (int i = 3; i < argc && !rc; i++) {
            int n = atoi(argv[i]);
            double ms;
            if (mvl_cuda_vit_time(v, n, 20, &ms, &err) != MVL_OK) rc = fail(&err);
            else
                printf("vit tiles=%d ms=%.3f tiles_per_s=%.1f tflops=%.1f\n", n, ms, n / ms * 1e3,
                       per_tile * n / (ms * 1e-3) / 1e12);
        }
        double tf;
        if (!rc && mvl_cuda_gemm_ceiling(8192, 8192, 8192, 20, &tf, &err) != MVL_OK) rc = fail(&err);
        else if (!rc) printf("gemm_ceiling m=n=k=8192 bf16 tflops=%.1f\n", tf);
    } else if (!strcmp(mode, "e2e") && argc == 5) {
        int reps = atoi(argv[4]);
        if (reps < 1 || reps > 1000) reps = 10;
        double *t_dec = calloc((size_t)reps, sizeof(double)), *t_pre = calloc((size_t)reps, sizeof(double));
        double *t_gpu = calloc((size_t)reps, sizeof(double)), *t_all = calloc((size_t)reps, sizeof(double));
        int64_t cnt = 0;
        int tiles_used = 0;
        for (int r = 0; r < reps + 2 && !rc; r++) { /* 2 warm-up runs */
            double t0 = mvl_bench_now_ms();
            mvl_image *img = NULL;
            mvl_preproc_result pr = {0};
            if (mvl_image_load(argv[3], NULL, &img, &err) != MVL_OK) { rc = fail(&err); break; }
            double t1 = mvl_bench_now_ms();
            if (mvl_preprocess(img, &pc, &pr, &err) != MVL_OK) {
                rc = fail(&err);
                mvl_image_free(img);
                break;
            }
            double t2 = mvl_bench_now_ms();
            mvl_cuda_image im = {pr.width, pr.height, pr.cols, pr.rows};
            if (mvl_cuda_vit_encode(v, pr.tiles, 1, &im, &cnt, &err) != MVL_OK) rc = fail(&err);
            double t3 = mvl_bench_now_ms();
            tiles_used = pr.n_patches;
            if (r >= 2) {
                t_dec[r - 2] = t1 - t0, t_pre[r - 2] = t2 - t1, t_gpu[r - 2] = t3 - t2, t_all[r - 2] = t3 - t0;
            }
            mvl_preproc_result_free(&pr);
            mvl_image_free(img);
        }
        if (!rc)
            printf("e2e image=%s tiles=%d tokens=%lld decode_ms=%.2f preprocess_ms=%.2f gpu_ms=%.2f total_ms=%.2f\n",
                   argv[3], tiles_used, (long long)cnt, mvl_bench_median(t_dec, reps), mvl_bench_median(t_pre, reps),
                   mvl_bench_median(t_gpu, reps), mvl_bench_median(t_all, reps));
        free(t_dec), free(t_pre), free(t_gpu), free(t_all);
    } else {
        fprintf(stderr, "bench_vit_cuda: bad arguments for mode '%s'\n", mode);
        rc = 2;
    }
    mvl_cuda_vit_free(v);
    mvl_model_dir_close(md);
    return rc;
}
