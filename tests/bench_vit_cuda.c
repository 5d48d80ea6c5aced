/* Driver for the CUDA vision path (kernels/cuda_vit.h), used by
 * tests/reference/vit_parity_bench.py on the GPU machine:
 *   bench_vit_cuda hidden MODEL_DIR TILES.u8 N OUT.npy
 *       ViT final hidden state [N, 1+g*g, V] (float32 .npy) of N uint8 tiles
 *       [N, S, S, 3] read from a raw file.
 *   bench_vit_cuda encode MODEL_DIR TILES.u8 W H COLS ROWS OUT.npy
 *       ViT + projector + packing of one image's 1+COLS*ROWS tiles: the
 *       packed embeddings [tokens, D] as float32 .npy.
 *   bench_vit_cuda bench MODEL_DIR N...
 *       ViT time per batch of N random tiles, each stage's share of it
 *       (device events after every launch), and the GEMM ceiling.
 *   bench_vit_cuda e2e MODEL_DIR IMAGE REPS
 *       file -> packed embeddings: decode, preprocess, ViT, projector, pack,
 *       with the preprocessing on the CPU and on the GPU (see e2e below).
 * Exits 77 without a GPU. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/cuda_preprocess.h"
#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "test_util.h"
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

/* One image file to packed embeddings, REPS times after 2 warm-ups, by three
 * paths in the same run: "cpu" decodes and preprocesses on the CPU and
 * uploads the tiles (before); "gpu" decodes on the CPU, uploads the image
 * and preprocesses on the GPU into the ViT's staging buffer
 * (kernels/cuda_preprocess.h); "file" hands the file's bytes to
 * mvl_cuda_prep_file, which decodes JPEGs with nvJPEG where the build has
 * it (gpu_decode=1) and is the "gpu" path otherwise. Prints the medians of
 * each stage: decode (for "file": reading the file and nvJPEG's host part),
 * preprocess (cpu: on the CPU; gpu/file: what is left of upload, GPU decode,
 * resize and tiles, waited for), gpu (cpu: tile upload + ViT + projector +
 * packing; gpu/file: ViT + projector + packing; file: and the wait for
 * libjpeg's decode of the file on the CPU), total. Also checks that
 * the paths staged the same tiles. */
static int e2e(mvl_cuda_vit *v, const mvl_preproc_config *pc, const char *path, int reps, int max_tiles,
               mvl_error *err) {
    void *stream;
    mvl_cuda_prep *prep = NULL;
    uint8_t *staging = mvl_cuda_vit_staging(v, &stream);
    if (mvl_cuda_prep_init(staging, max_tiles, pc->size, stream, &prep, err) != MVL_OK) return fail(err);
    static const char *names[] = {"cpu", "gpu", "file"};
    double *t = calloc((size_t)reps * 4, sizeof(double));
    int rc = !t, on_gpu = 0;
    for (int way = 0; way < 3 && !rc; way++) {
        int64_t cnt = 0;
        int tiles_used = 0;
        for (int r = 0; r < reps + 2 && !rc; r++) { /* 2 warm-up runs */
            double t0 = mvl_bench_now_ms();
            mvl_image *img = NULL;
            mvl_preproc_result pr = {0};
            mvl_cuda_image im;
            char *buf = NULL;
            size_t len = 0;
            mvl_status st = way < 2 ? mvl_image_load(path, NULL, &img, err)
                                    : mvl_read_file(path, 1u << 30, &buf, &len, err);
            if (st == MVL_OK && way == 2)
                st = mvl_cuda_prep_file(prep, buf, len, path, pc, 0, &im, &tiles_used, &on_gpu, err);
            double t1 = mvl_bench_now_ms();
            if (st == MVL_OK && way == 0) st = mvl_preprocess(img, pc, &pr, err);
            if (st == MVL_OK && way == 1) st = mvl_cuda_preprocess(prep, img, pc, 0, &im, &tiles_used, err);
            if (st == MVL_OK && way > 0) st = mvl_cuda_vit_sync(v, err);
            double t2 = mvl_bench_now_ms();
            if (st == MVL_OK && way == 0) {
                im = (mvl_cuda_image){pr.width, pr.height, pr.cols, pr.rows};
                tiles_used = pr.n_patches;
            }
            if (st == MVL_OK) st = mvl_cuda_vit_encode(v, way ? NULL : pr.tiles, 1, &im, &cnt, err);
            /* libjpeg decoded the file on the CPU meanwhile; the ViT runs
             * again where nvJPEG's pixels differed */
            int redo = 0;
            if (st == MVL_OK && way == 2) st = mvl_cuda_prep_wait(prep, &redo, err);
            if (st == MVL_OK && redo) st = mvl_cuda_vit_encode(v, NULL, 1, &im, &cnt, err);
            double t3 = mvl_bench_now_ms();
            if (st != MVL_OK) rc = fail(err);
            if (r >= 2) {
                double *row = t + (size_t)(r - 2);
                row[0] = t1 - t0, row[reps] = t2 - t1, row[2 * reps] = t3 - t2, row[3 * reps] = t3 - t0;
            }
            free(buf);
            mvl_preproc_result_free(&pr);
            mvl_image_free(img);
        }
        if (!rc)
            printf("e2e path=%s%s image=%s tiles=%d tokens=%lld decode_ms=%.2f preprocess_ms=%.2f gpu_ms=%.2f "
                   "total_ms=%.2f\n",
                   names[way], way == 2 ? (on_gpu ? " gpu_decode=1" : " gpu_decode=0") : "", path, tiles_used,
                   (long long)cnt, mvl_bench_median(t, reps), mvl_bench_median(t + reps, reps),
                   mvl_bench_median(t + 2 * reps, reps), mvl_bench_median(t + 3 * reps, reps));
    }
    /* the last staged tiles (path "file") against the CPU's */
    mvl_image *img = NULL;
    mvl_preproc_result pr = {0};
    uint8_t *got = NULL;
    const size_t tile = (size_t)pc->size * pc->size * 3;
    if (!rc && (mvl_image_load(path, NULL, &img, err) != MVL_OK || mvl_preprocess(img, pc, &pr, err) != MVL_OK ||
                !(got = malloc((size_t)pr.n_patches * tile)) ||
                mvl_cuda_prep_download(prep, 0, pr.n_patches, got, err) != MVL_OK))
        rc = fail(err);
    if (!rc) printf("e2e tiles_identical=%d\n", !memcmp(got, pr.tiles, (size_t)pr.n_patches * tile));
    free(got);
    mvl_preproc_result_free(&pr);
    mvl_image_free(img);
    free(t);
    mvl_cuda_prep_free(prep);
    return rc;
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
    if (!mvl_test_gpu(&ngpu, gname, sizeof gname)) {
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
        for (int i = 3; i < argc && !rc; i++) {
            int n = atoi(argv[i]), count = 0;
            mvl_cuda_vit_stage st[16];
            double total = 0;
            if (mvl_cuda_vit_profile(v, n, 10, st, 16, &count, &total, &err) != MVL_OK) {
                rc = fail(&err);
                break;
            }
            for (int k = 0; k < count; k++) {
                printf("stage tiles=%d name=%s calls=%d ms=%.3f share=%.1f%%", n, st[k].name, st[k].calls, st[k].ms,
                       100.0 * st[k].ms / total);
                if (st[k].flops > 0) printf(" tflops=%.1f", st[k].flops / (st[k].ms * 1e-3) / 1e12);
                if (st[k].bytes > 0) printf(" gb_s=%.0f", st[k].bytes / (st[k].ms * 1e-3) / 1e9);
                printf("\n");
            }
            printf("stage tiles=%d name=total ms=%.3f\n", n, total);
        }
        double tf;
        if (!rc && mvl_cuda_gemm_ceiling(8192, 8192, 8192, 20, &tf, &err) != MVL_OK) rc = fail(&err);
        else if (!rc) printf("gemm_ceiling m=n=k=8192 bf16 tflops=%.1f\n", tf);
    } else if (!strcmp(mode, "e2e") && argc == 5) {
        int reps = atoi(argv[4]);
        if (reps < 1 || reps > 1000) reps = 10;
        rc = e2e(v, &pc, argv[3], reps, max_tiles, &err);
    } else {
        fprintf(stderr, "bench_vit_cuda: bad arguments for mode '%s'\n", mode);
        rc = 2;
    }
    mvl_cuda_vit_free(v);
    mvl_model_dir_close(md);
    return rc;
}
