/* GPU preprocessing (kernels/cuda_preprocess.h) against the CPU's
 * mvl_preprocess (vision/preprocess.c, itself checked against Pillow by
 * test_image_golden): the tiles staged on the device for the ViT must be the
 * CPU tiles byte for byte (issue 7), for upscales, downscales, resizes of
 * one axis only, same-size copies, tall and wide letterboxes, 1x1, the
 * 2016x1008 benchmark case and a 4000x3000 photo size, for a decoded JPEG,
 * for two images staged one after the other, and for the CPU fallback of a
 * gray image. Then every JPEG of testdata/images through
 * mvl_cuda_prep_file: where nvJPEG decodes it on the GPU (baseline 4:2:0,
 * 4:2:2, 4:4:4, gray), the decoded image must equal libjpeg-turbo's and the
 * tiles the CPU's; the others (progressive, CMYK, YCCK, EXIF rotations, PNG)
 * take the CPU decoder, and the tiles must still be the CPU's. The staged region is poisoned before
 * every image so unwritten bytes show. Last, damaged copies of GPU-eligible
 * JPEGs (flips, truncations, 0xFF runs): mvl_cuda_prep_file +
 * mvl_cuda_prep_wait must refuse every file the CPU decoder refuses, naming
 * it, and give the CPU's tiles (restaged where nvJPEG's pixels differed) for
 * every file the CPU decodes (nvJPEG must not turn a corrupt file into a
 * silently different image). Skipped (77) without a GPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_preprocess.h"
#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"
#include "mvl.h"
#include "test_util.h"
#include "vision/vision.h"

static int failures;

/* Noise over a gradient with saturated blocks: every byte value occurs and
 * the bicubic overshoot gets clipped at both ends. */
static mvl_image *synth(int w, int h, mvl_pixel_mode mode, uint32_t seed) {
    mvl_image *img;
    mvl_error err = {0};
    if (mvl_image_new(w, h, mode, &img, &err) != MVL_OK) return NULL;
    uint8_t *d = img->data;
    uint32_t s = seed * 2654435761u + 1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < img->channels; c++) {
                s ^= s << 13, s ^= s >> 17, s ^= s << 5;
                int v = (x * 255 / w + y * 255 / h + c * 85) % 256 + (int)(s % 61) - 30;
                if (((x / 37) + (y / 29)) % 5 == 0) v = (x / 37) % 2 ? 255 : 0;
                *d++ = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return img;
}

/* Fills tiles [first, first + n) of the staging buffer with 0xA5 (through
 * the ViT's own upload, which also runs the small ViT over them). */
static int poison(mvl_cuda_vit *v, int first, int n, size_t tile, mvl_error *err) {
    uint8_t *p = malloc((size_t)(first + n) * tile);
    if (!p) return 1;
    memset(p, 0xA5, (size_t)(first + n) * tile);
    int rc = mvl_cuda_vit_forward_u8(v, p, first + n, err) != MVL_OK || mvl_cuda_vit_sync(v, err) != MVL_OK;
    free(p);
    return rc;
}

/* One image at tile index `first`: GPU tiles vs CPU tiles. */
static int check(mvl_cuda_vit *v, mvl_cuda_prep *p, const mvl_preproc_config *pc, const char *what,
                 const mvl_image *img, int first, mvl_error *err) {
    mvl_preproc_result pr;
    if (mvl_preprocess(img, pc, &pr, err) != MVL_OK) return 1;
    const size_t tile = (size_t)pc->size * pc->size * 3, bytes = (size_t)pr.n_patches * tile;
    mvl_cuda_image im = {0};
    int n = 0;
    uint8_t *got = malloc(bytes);
    int rc = !got || poison(v, first, pr.n_patches, tile, err) ||
             mvl_cuda_preprocess(p, img, pc, first, &im, &n, err) != MVL_OK ||
             mvl_cuda_prep_download(p, first, pr.n_patches, got, err) != MVL_OK;
    if (!rc) {
        size_t diff = 0, at = 0;
        for (size_t i = bytes; i-- > 0;)
            if (got[i] != pr.tiles[i]) diff++, at = i;
        int ok = diff == 0 && n == pr.n_patches && im.cols == pr.cols && im.rows == pr.rows &&
                 im.width == pr.width && im.height == pr.height;
        printf("| %s | %dx%d | %dx%d | %d | %zu | %s |", what, img->width, img->height, pr.canvas_w, pr.canvas_h,
               pr.n_patches, diff, ok ? "ok" : "FAIL");
        if (diff)
            printf(" first difference: tile %zu, y %zu, x %zu, channel %zu: %d, CPU %d", at / tile,
                   at % tile / (pc->size * 3), at % (pc->size * 3) / 3, at % 3, got[at], pr.tiles[at]);
        if (!ok && !diff) printf(" grid %dx%d of %d tiles, CPU %dx%d of %d", im.cols, im.rows, n, pr.cols, pr.rows,
                                 pr.n_patches);
        printf("\n");
        if (!ok) failures++;
    }
    free(got);
    mvl_preproc_result_free(&pr);
    return rc;
}

/* A file through mvl_cuda_prep_file against mvl_image_load + mvl_preprocess. */
static int check_file(mvl_cuda_vit *v, mvl_cuda_prep *p, const mvl_preproc_config *pc, const char *dir,
                      const char *file, mvl_error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *buf = NULL;
    size_t len = 0;
    mvl_image *img = NULL;
    mvl_preproc_result pr = {0};
    uint8_t *got = NULL, *src = NULL;
    int rc = mvl_read_file(path, 64u << 20, &buf, &len, err) != MVL_OK ||
             mvl_image_load(path, NULL, &img, err) != MVL_OK || mvl_preprocess(img, pc, &pr, err) != MVL_OK;
    const size_t tile = (size_t)pc->size * pc->size * 3, bytes = (size_t)pr.n_patches * tile;
    mvl_cuda_image im = {0};
    int n = 0, on_gpu = 0, redo = 0;
    if (!rc) {
        got = malloc(bytes);
        src = malloc((size_t)img->width * img->height * 3);
        rc = !got || !src || poison(v, 0, pr.n_patches, tile, err) ||
             mvl_cuda_prep_file(p, buf, len, path, pc, 0, &im, &n, &on_gpu, err) != MVL_OK ||
             mvl_cuda_prep_wait(p, &redo, err) != MVL_OK ||
             mvl_cuda_prep_download(p, 0, pr.n_patches, got, err) != MVL_OK;
    }
    size_t sdiff = 0, tdiff = 0;
    int smax = 0;
    if (!rc && on_gpu) { /* the decoded image itself, against libjpeg-turbo's */
        rc = mvl_cuda_prep_source(p, img->width, img->height, src, err) != MVL_OK;
        const uint8_t *ref = img->data;
        for (size_t i = 0, m = (size_t)img->width * img->height * 3; !rc && i < m; i++)
            if (src[i] != ref[i]) {
                sdiff++;
                int d = abs((int)src[i] - (int)ref[i]);
                smax = d > smax ? d : smax;
            }
    }
    if (!rc) {
        for (size_t i = 0; i < bytes; i++) tdiff += got[i] != pr.tiles[i];
        int ok = sdiff == 0 && tdiff == 0 && !redo && n == pr.n_patches && im.cols == pr.cols && im.rows == pr.rows;
        printf("| %s | %dx%d | %s | %zu (max %d) | %zu | %s |\n", file, img->width, img->height,
               on_gpu ? "GPU (nvJPEG)" : "CPU", sdiff, smax, tdiff, ok ? "ok" : "FAIL");
        if (!ok) failures++;
    }
    free(buf);
    free(got);
    free(src);
    mvl_preproc_result_free(&pr);
    mvl_image_free(img);
    return rc;
}

/* Damaged copies of one JPEG through mvl_cuda_prep_file against the CPU
 * decoder + mvl_preprocess; counts the disagreements into failures. */
static int check_mutations(mvl_cuda_prep *p, const mvl_preproc_config *pc, const char *dir, const char *file,
                           int count, uint64_t *rng, mvl_error *err) {
    char path[1200];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    char *orig = NULL;
    size_t n = 0;
    if (mvl_read_file(path, 64u << 20, &orig, &n, err) != MVL_OK) return 1;
    uint8_t *buf = malloc(n);
    int refused = 0, same = 0, on_gpu_n = 0, bad = 0, restaged = 0;
    const size_t tile = (size_t)pc->size * pc->size * 3;
    for (int t = 0; buf && t < count; t++) {
        size_t len = mvl_test_mutate((const uint8_t *)orig, n, buf, rng);
        mvl_error ec = {0}, eg = {0};
        mvl_image *img = NULL;
        mvl_preproc_result pr = {0};
        int cpu_ok = mvl_image_decode(buf, len, file, NULL, &img, &ec) == MVL_OK &&
                     mvl_preprocess(img, pc, &pr, &ec) == MVL_OK;
        mvl_cuda_image im = {0};
        int nt = 0, on_gpu = 0;
        int redo = 0;
        int gpu_ok = mvl_cuda_prep_file(p, buf, len, file, pc, 0, &im, &nt, &on_gpu, &eg) == MVL_OK &&
                     mvl_cuda_prep_wait(p, &redo, &eg) == MVL_OK;
        restaged += redo;
        on_gpu_n += on_gpu;
        const char *why = NULL;
        if (cpu_ok != gpu_ok)
            why = cpu_ok ? "GPU path refused a file the CPU decodes" : "GPU path accepted a file the CPU refuses";
        else if (!gpu_ok && !strstr(eg.msg, file)) why = "error does not name the file";
        else if (gpu_ok) {
            uint8_t *got = malloc((size_t)pr.n_patches * tile);
            if (!got || nt != pr.n_patches || mvl_cuda_prep_download(p, 0, nt, got, &eg) != MVL_OK ||
                memcmp(got, pr.tiles, (size_t)nt * tile))
                why = "tiles differ from the CPU's";
            free(got);
        }
        if (gpu_ok && !why) same++;
        if (!gpu_ok && !why) refused++;
        if (why) {
            bad++;
            if (bad <= 5)
                printf("  %s damage #%d (%zu of %zu bytes, %s): %s; CPU: %s; GPU: %s\n", file, t, len, n,
                       on_gpu ? "nvJPEG" : "CPU decoder", why, cpu_ok ? "ok" : ec.msg, gpu_ok ? "ok" : eg.msg);
        }
        mvl_preproc_result_free(&pr);
        mvl_image_free(img);
    }
    printf("| %s | %d | %d | %d | %d | %d | %d | %s |\n", file, count, on_gpu_n, refused, same, restaged, bad,
           bad ? "FAIL" : "ok");
    failures += bad;
    free(buf);
    free(orig);
    return !buf;
}

int main(void) {
    int ngpu;
    char gname[256], dir[1024], path[1100];
    mvl_error err = {0};
    if (!mvl_test_gpu(&ngpu, gname, sizeof gname)) return 77;
    const char *src = getenv("MVL_SOURCE_DIR");
    snprintf(dir, sizeof dir, "%s/testdata/tiny-random", src ? src : ".");
    mvl_model_dir *md = NULL;
    mvl_cuda_vit *v = NULL;
    mvl_cuda_prep *p = NULL;
    const int max_tiles = 40;
    if (mvl_model_dir_open(dir, &md, &err) != MVL_OK) {
        printf("FAILED: %s\n", err.msg);
        return 1;
    }
    const mvl_preproc_config *pc = mvl_model_dir_preproc(md);
    void *stream;
    int rc = mvl_cuda_vit_init(md, max_tiles, pc->mean, pc->std, &v, &err) != MVL_OK;
    if (!rc) {
        uint8_t *staging = mvl_cuda_vit_staging(v, &stream);
        rc = mvl_cuda_prep_init(staging, max_tiles, pc->size, stream, &p, &err) != MVL_OK;
    }
    printf("device: %s\n| image | size | canvas | tiles | bytes differing | |\n|---|---|---|---|---|---|\n", gname);
    /* sizes: what the canvas resize does (h/v = the horizontal/vertical pass
     * runs; the thumbnail is resized to 336x336 likewise) */
    static const struct {
        const char *what;
        int w, h;
    } cases[] = {
        {"1x1 (upscale)", 1, 1},
        {"upscale both axes", 200, 150},
        {"same size, no pass", 336, 336},
        {"benchmark case, canvas = image", 2016, 1008},
        {"photo, downscale both", 4000, 3000},
        {"tall letterbox", 300, 2000},
        {"wide letterbox", 2000, 300},
        {"canvas: vertical pass only", 300, 1675},
        {"canvas: horizontal pass only", 335, 50},
        {"thumbnail: horizontal only", 500, 336},
        {"thumbnail: vertical only", 336, 700},
        {"canvas copy, padded", 1008, 500},
        {"extreme wide (1-pixel rows)", 5000, 3},
    };
    for (size_t i = 0; !rc && i < sizeof cases / sizeof cases[0]; i++) {
        mvl_image *img = synth(cases[i].w, cases[i].h, MVL_PIXEL_RGB, (uint32_t)i + 1);
        rc = !img || check(v, p, pc, cases[i].what, img, 0, &err);
        mvl_image_free(img);
    }
    /* a decoded JPEG, then two images one after the other in the buffer */
    if (!rc) {
        snprintf(path, sizeof path, "%s/testdata/images/jpeg_1000x700.jpg", src ? src : ".");
        mvl_image *img = NULL;
        rc = mvl_image_load(path, NULL, &img, &err) != MVL_OK || check(v, p, pc, "decoded JPEG", img, 0, &err);
        if (!rc) {
            mvl_image *b = synth(700, 1000, MVL_PIXEL_RGB, 99);
            rc = !b || check(v, p, pc, "second image at tile 10, JPEG at 0", b, 10, &err);
            /* the first image's tiles must have stayed */
            rc = rc || check(v, p, pc, "decoded JPEG again at 0", img, 0, &err);
            mvl_image_free(b);
        }
        mvl_image_free(img);
    }
    /* a gray image takes the CPU fallback */
    if (!rc) {
        mvl_image *g = synth(640, 480, MVL_PIXEL_L, 7);
        rc = !g || check(v, p, pc, "gray (CPU fallback)", g, 3, &err);
        mvl_image_free(g);
    }
    /* too many tiles for the buffer: an error, not a write past it */
    if (!rc) {
        mvl_image *img = synth(2016, 1008, MVL_PIXEL_RGB, 5);
        mvl_cuda_image im;
        int n;
        mvl_status st = img ? mvl_cuda_preprocess(p, img, pc, max_tiles - 5, &im, &n, &err) : MVL_ERR_NOMEM;
        int ok = st == MVL_ERR_LIMIT;
        printf("| 19 tiles at tile %d of %d | 2016x1008 | | | | %s | %s\n", max_tiles - 5, max_tiles,
               ok ? "ok" : "FAIL", err.msg);
        if (!ok) failures++;
        mvl_image_free(img);
    }
    static const char *jpegs[] = {"jpeg_1000x700.jpg",   "jpeg_1920x1080.jpg",     "jpeg_2016x2016.jpg",
                                  "photo_4000x3000.jpg", "jpeg_1024x768_444.jpg",  "jpeg_333x251_422.jpg",
                                  "jpeg_640x480_progressive.jpg", "jpeg_gray_500x375.jpg", "jpeg_cmyk_400x300.jpg",
                                  "jpeg_ycck_301x203.jpg", "jpeg_exif6_600x400.jpg", "rgb_337x336.png"};
    if (!rc) printf("\n| file | size | decoded on | decoded bytes differing | tile bytes differing | |\n"
                    "|---|---|---|---|---|---|\n");
    snprintf(path, sizeof path, "%s/testdata/images", src ? src : ".");
    for (size_t i = 0; !rc && i < sizeof jpegs / sizeof jpegs[0]; i++) rc = check_file(v, p, pc, path, jpegs[i], &err);
    static const char *eligible[] = {"jpeg_1000x700.jpg", "jpeg_1024x768_444.jpg", "jpeg_333x251_422.jpg",
                                     "jpeg_gray_500x375.jpg"};
    uint64_t rng = 20261123;
    if (!rc) printf("\n| damaged file | copies | on GPU | refused | same tiles | of which restaged | disagree | |\n"
                    "|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; !rc && i < sizeof eligible / sizeof eligible[0]; i++)
        rc = check_mutations(p, pc, path, eligible[i], 60, &rng, &err);
    if (rc) {
        printf("FAILED: %s\n", err.msg);
        failures++;
    }
    mvl_cuda_prep_free(p);
    mvl_cuda_vit_free(v);
    mvl_model_dir_close(md);
    printf(failures ? "FAILED: %d checks\n" : "all checks passed\n", failures);
    return failures ? 1 : 0;
}
