/* minimax-vl preprocess: one image -> the ViT input tensor as .npy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

static const char usage[] =
    "minimax-vl preprocess IMAGE [-o OUT.npy] [-m DIR] [--strict-reference | --no-exif] [--bf16] [--max-pixels N]\n"
    "       [--max-tiles N] [--max-image-tokens N] [--log-file FILE]";

int mvl_cmd_preprocess(int argc, char **argv) {
    const char *out_path = NULL, *dir = NULL, *log_path = NULL;
    int strict = 0, bf16 = 0, no_exif = 0;
    long long max_pixels = 0, max_tiles = 0, max_tokens = 0;
    const mvl_cli_option opts[] = {
        {"-o", "--output", MVL_OPT_STR, &out_path, "OUT.npy  write float32 [1+rows*cols, 3, S, S], thumbnail first"},
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  take preprocessor_config.json from DIR (default: released values)"},
        {NULL, "--strict-reference", MVL_OPT_FLAG, &strict,
         "match the reference exactly: no EXIF orientation, alpha dropped as Pillow does\n"
         "                         (default: EXIF orientation applied, transparency over white)"},
        {NULL, "--no-exif", MVL_OPT_FLAG, &no_exif, "ignore EXIF orientation (alpha still composited on white)"},
        {NULL, "--max-tiles", MVL_OPT_INT, &max_tiles, "N  smaller canvas: at most N tiles (+ thumbnail)"},
        {NULL, "--max-image-tokens", MVL_OPT_INT, &max_tokens, "N  smaller canvas: at most N visual tokens"},
        {NULL, "--bf16", MVL_OPT_FLAG, &bf16, "round the output to bfloat16 values, as the ViT sees them"},
        {NULL, "--max-pixels", MVL_OPT_INT, &max_pixels, "N  refuse larger images (default 100000000)"},
        {NULL, "--log-file", MVL_OPT_STR, &log_path, "FILE  also append the log lines (stderr) to FILE"},
    };
    mvl_cli_list pos = {0};
    int rc = mvl_cli_parse("preprocess", usage,
                           "Decodes IMAGE (JPEG or PNG), runs anyres preprocessing and prints one JSON line:\n"
                           "{\"width\",\"height\",\"canvas\":[w,h],\"tiles\":[cols,rows],\"image_tokens\"}.",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, &pos);
    if (rc >= 0) return rc;
    if (pos.n != 1) return mvl_cli_usage_error("preprocess", usage, "expected exactly one IMAGE, got %d", pos.n);
    if (max_pixels < 0 || max_tiles < 0 || max_tokens < 0)
        return mvl_cli_usage_error("preprocess", usage, "--max-pixels, --max-tiles and --max-image-tokens must be positive");
    if (log_path && !mvl_cli_log_open(log_path)) return MVL_EXIT_ERROR; /* closed at exit */
    const char *image = pos.items[0];
    mvl_image_opts iopts = {.max_pixels = (uint64_t)max_pixels, .strict_reference = strict, .no_exif = no_exif};
    mvl_error err = {0};
    mvl_preproc_config cfg;
    if (dir) {
        char *p = mvl_path_join(dir, "preprocessor_config.json");
        if (!p) return mvl_cli_fail(&(mvl_error){MVL_ERR_NOMEM, "out of memory"});
        mvl_status st = mvl_preproc_config_load(p, &cfg, &err);
        free(p);
        if (st != MVL_OK) return mvl_cli_fail(&err);
    } else {
        mvl_preproc_config_default(&cfg);
    }
    mvl_image *img;
    if (mvl_image_load(image, &iopts, &img, &err) != MVL_OK) return mvl_cli_fail(&err);
    mvl_preproc_config_cap(&cfg, img->width, img->height, max_tiles, max_tokens);
    mvl_preproc_result res;
    mvl_status st = mvl_preprocess(img, &cfg, &res, &err);
    mvl_image_free(img);
    if (st != MVL_OK) {
        mvl_preproc_result_free(&res);
        return mvl_cli_fail(&err);
    }
    if (out_path) {
        size_t count = (size_t)res.n_patches * 3 * cfg.size * cfg.size;
        float *f = mvl_malloc(count * sizeof(float), &err);
        if (!f) st = MVL_ERR_NOMEM;
        if (f) {
            mvl_preproc_normalize(&cfg, res.tiles, res.n_patches, f);
            if (bf16) mvl_round_bf16(f, count);
            int64_t shape[4] = {res.n_patches, 3, cfg.size, cfg.size};
            st = mvl_npy_write_f32(out_path, f, 4, shape, &err);
            free(f);
        }
    }
    if (st == MVL_OK)
        printf("{\"width\":%d,\"height\":%d,\"canvas\":[%d,%d],\"tiles\":[%d,%d],\"image_tokens\":%lld}\n",
               res.width, res.height, res.canvas_w, res.canvas_h, res.cols, res.rows, (long long)res.image_tokens);
    mvl_preproc_result_free(&res);
    return st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
}
