/* Decoding and anyres preprocessing against Pillow goldens
 * (testdata/images/goldens.json from scripts/make_image_goldens.py).
 *
 * Strict-reference mode: decoded pixels, uint8 patches and the float32
 * tensor must match Pillow bit for bit (CRC32 of the whole arrays), every
 * normalised value must agree with the float32 reference table to 1e-6, and
 * canvas, tiles and token count must agree. Default mode (EXIF applied,
 * alpha over white) is checked on the images that have a "default" entry.
 * Every image is checked before failing so one run shows every mismatch. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#include "mvl.h"

static json_t *goldens;

static const char *img_path(const char *name) {
    static char buf[1024];
    const char *src = getenv("MVL_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/testdata/images/%s", src ? src : ".", name);
    return buf;
}

static int setup(void **state) {
    (void)state;
    json_error_t je;
    goldens = json_load_file(img_path("goldens.json"), 0, &je);
    if (!goldens) fprintf(stderr, "goldens.json: %s\n", je.text);
    return goldens ? 0 : -1;
}

static int teardown(void **state) {
    (void)state;
    json_decref(goldens);
    return 0;
}

static uint32_t crc(const void *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const Bytef *b = p;
    while (n > 0) { /* crc32 takes a uInt length */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}

static uint32_t jcrc(json_t *o, const char *key) { return (uint32_t)json_integer_value(json_object_get(o, key)); }

static int report(const char *file, const char *what, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "MISMATCH %s: %s: ", file, what);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    return 1;
}

static size_t image_bytes(const mvl_image *im) {
    return (size_t)im->width * im->height * im->channels * (im->mode == MVL_PIXEL_I16 ? 2 : 1);
}

/* Returns the number of mismatches for one strict-mode entry. */
static int check_strict(json_t *e, const float lut[3][256]) {
    const char *file = json_string_value(json_object_get(e, "file"));
    mvl_image_opts o = {.strict_reference = 1};
    mvl_image *img;
    mvl_error err = {0};
    if (mvl_image_load(img_path(file), &o, &img, &err) != MVL_OK) return report(file, "load", "%s", err.msg);
    int bad = 0;
    if (img->width != json_integer_value(json_object_get(e, "width")) ||
        img->height != json_integer_value(json_object_get(e, "height")))
        bad += report(file, "size", "%dx%d", img->width, img->height);
    else if (crc(img->data, image_bytes(img)) != jcrc(e, "decoded_crc"))
        bad += report(file, "decoded pixels", "differ from Pillow (%s)",
                      json_string_value(json_object_get(e, "pil_mode")));
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    mvl_preproc_result r;
    if (mvl_preprocess(img, &cfg, &r, &err) != MVL_OK) {
        mvl_image_free(img);
        return bad + report(file, "preprocess", "%s", err.msg);
    }
    json_t *canvas = json_object_get(e, "canvas"), *tiles = json_object_get(e, "tiles");
    if (r.canvas_w != json_integer_value(json_array_get(canvas, 0)) ||
        r.canvas_h != json_integer_value(json_array_get(canvas, 1)))
        bad += report(file, "canvas", "%dx%d", r.canvas_w, r.canvas_h);
    if (r.cols != json_integer_value(json_array_get(tiles, 0)) || r.rows != json_integer_value(json_array_get(tiles, 1)))
        bad += report(file, "tiles", "%dx%d", r.cols, r.rows);
    if (r.image_tokens != json_integer_value(json_object_get(e, "image_tokens")))
        bad += report(file, "image_tokens", "%lld", (long long)r.image_tokens);
    size_t n = (size_t)r.n_patches * 336 * 336 * 3;
    if (crc(r.tiles, n) != jcrc(e, "tiles_u8_crc")) bad += report(file, "uint8 patches", "differ from Pillow");
    float *f = malloc(n * sizeof(float));
    assert_non_null(f);
    mvl_preproc_normalize(&cfg, r.tiles, r.n_patches, f);
    if (crc(f, n * sizeof(float)) != jcrc(e, "tiles_f32_crc")) bad += report(file, "float32 tensor", "not bit-identical");
    /* [n,3,S,S] vs the reference value of each uint8 input: <= 1e-6 */
    size_t plane = 336 * 336;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        size_t patch = i / (3 * plane), c = i / plane % 3, p = i % plane;
        float want = lut[c][r.tiles[(patch * plane + p) * 3 + c]];
        double d = fabs((double)f[i] - want);
        if (d > worst) worst = d;
    }
    if (worst > 1e-6) bad += report(file, "normalised floats", "max error %g", worst);
    free(f);
    mvl_preproc_result_free(&r);
    mvl_image_free(img);

    json_t *def = json_object_get(e, "default");
    if (def) {
        if (mvl_image_load(img_path(file), NULL, &img, &err) != MVL_OK) return bad + report(file, "default load", "%s", err.msg);
        if (img->width != json_integer_value(json_object_get(def, "width")) ||
            img->height != json_integer_value(json_object_get(def, "height")) || img->mode != MVL_PIXEL_RGB)
            bad += report(file, "default mode", "%dx%d mode %d", img->width, img->height, (int)img->mode);
        else if (mvl_preprocess(img, &cfg, &r, &err) != MVL_OK)
            bad += report(file, "default preprocess", "%s", err.msg);
        else {
            if (crc(r.tiles, (size_t)r.n_patches * 336 * 336 * 3) != jcrc(def, "tiles_u8_crc"))
                bad += report(file, "default-mode patches", "differ from EXIF-transposed, white-composited Pillow");
            mvl_preproc_result_free(&r);
        }
        mvl_image_free(img);
    }
    return bad;
}

static void test_goldens(void **state) {
    (void)state;
    json_t *lutj = json_object_get(goldens, "normalize_lut_f32_hex");
    float lut[3][256];
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            const char *h = json_string_value(json_array_get(json_array_get(lutj, c), v));
            assert_non_null(h);
            uint8_t b[4];
            for (int k = 0; k < 4; k++) sscanf(h + 2 * k, "%2hhx", &b[k]);
            memcpy(&lut[c][v], b, 4); /* little-endian hex */
        }
    json_t *images = json_object_get(goldens, "images");
    assert_true(json_array_size(images) >= 25);
    int bad = 0;
    size_t i;
    json_t *e;
    json_array_foreach(images, i, e) bad += check_strict(e, lut);
    fprintf(stderr, "%zu images checked against Pillow %s (libjpeg-turbo %s), %d mismatches\n",
            json_array_size(images), json_string_value(json_object_get(goldens, "pillow")),
            json_string_value(json_object_get(goldens, "libjpeg_turbo")), bad);
    assert_int_equal(bad, 0);
}

/* Our normalisation table equals the reference float32 arithmetic exactly. */
static void test_normalize_table(void **state) {
    (void)state;
    json_t *lutj = json_object_get(goldens, "normalize_lut_f32_hex");
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    uint8_t tile[336 * 336 * 3];
    for (size_t p = 0; p < 336 * 336; p++)
        for (int c = 0; c < 3; c++) tile[p * 3 + c] = (uint8_t)(p % 256);
    float *f = malloc(sizeof(float) * 3 * 336 * 336);
    assert_non_null(f);
    mvl_preproc_normalize(&cfg, tile, 1, f);
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            char hex[9];
            uint8_t b[4];
            memcpy(b, &f[(size_t)c * 336 * 336 + v], 4);
            snprintf(hex, sizeof hex, "%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
            assert_string_equal(hex, json_string_value(json_array_get(json_array_get(lutj, c), v)));
        }
    free(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_normalize_table),
        cmocka_unit_test(test_goldens),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
