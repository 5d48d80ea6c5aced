/* Token counts, canvas selection, preprocessor_config.json and bf16
 * rounding. Token counts are checked against an independent Python count
 * (scripts/make_image_goldens.py, LLaVA-NeXT style unpad) for 100,000 sizes
 * drawn from the same xorshift stream on both sides. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <zlib.h>

#include "mvl.h"

static json_t *load_goldens(void) {
    char path[1024];
    const char *src = getenv("MVL_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/testdata/images/goldens.json", src ? src : ".");
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je);
    if (!g) fail_msg("%s: %s", path, je.text);
    return g;
}

static void test_token_counts_100k(void **state) {
    (void)state;
    json_t *g = load_goldens();
    json_t *tc = json_object_get(g, "token_counts");
    size_t n = (size_t)json_integer_value(json_object_get(tc, "n"));
    assert_int_equal(n, 100000);
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    int64_t *counts = malloc(n * sizeof *counts);
    assert_non_null(counts);
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < n; i++) {
        int64_t wh[2];
        for (int k = 0; k < 2; k++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            wh[k] = 1 + (int64_t)((s >> 33) % 8000);
        }
        counts[i] = mvl_image_token_count(&cfg, wh[0], wh[1]);
        if (i < json_array_size(json_object_get(tc, "first"))) {
            json_t *e = json_array_get(json_object_get(tc, "first"), i);
            assert_int_equal(wh[0], json_integer_value(json_array_get(e, 0)));
            assert_int_equal(wh[1], json_integer_value(json_array_get(e, 1)));
            assert_int_equal(counts[i], json_integer_value(json_array_get(e, 2)));
        }
    }
    /* counts are little-endian int64 on both sides (x86-64 / aarch64 hosts) */
    uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), (const Bytef *)counts, (uInt)(n * sizeof *counts));
    assert_int_equal(c, (uint32_t)json_integer_value(json_object_get(tc, "crc_i64")));
    free(counts);
    json_decref(g);
}

static void test_worked_examples(void **state) {
    (void)state;
    /* vision.md §4.3, also recomputed by the golden script */
    static const int64_t ex[][5] = {
        {336, 336, 336, 336, 1176},    {1000, 700, 1008, 1008, 4226}, {2016, 2016, 1344, 1344, 9888},
        {700, 1000, 1008, 1008, 4248}, {1920, 1080, 2016, 1008, 9864}, {640, 480, 672, 672, 2340},
        {1024, 768, 1344, 1008, 7560}, {337, 336, 672, 336, 1176},
    };
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    json_t *g = load_goldens();
    json_t *worked = json_object_get(g, "worked_examples");
    assert_int_equal(json_array_size(worked), sizeof ex / sizeof ex[0]);
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
        int cw, ch;
        mvl_select_canvas(&cfg, ex[i][0], ex[i][1], &cw, &ch);
        assert_int_equal(cw, ex[i][2]);
        assert_int_equal(ch, ex[i][3]);
        assert_int_equal(mvl_image_token_count(&cfg, ex[i][0], ex[i][1]), ex[i][4]);
        assert_int_equal(ex[i][4], json_integer_value(json_array_get(json_array_get(worked, i), 2)));
    }
    json_decref(g);
    /* §4.2 range: 576 (extreme aspect) .. 11088 (1:2 portrait on 1008x2016) */
    assert_int_equal(mvl_image_token_count(&cfg, 10000, 10), 576);
    assert_int_equal(mvl_image_token_count(&cfg, 1008, 2016), 11088);
    assert_int_equal(mvl_image_token_count(&cfg, 2016, 1008), 11016);
}

static void test_default_config(void **state) {
    (void)state;
    mvl_preproc_config cfg;
    mvl_preproc_config_default(&cfg);
    assert_int_equal(cfg.n_pinpoints, 28);
    assert_int_equal(cfg.size, 336);
    assert_int_equal(cfg.patch_size, 14);
    /* §3.1 file order: first [336,336], last [2016,1008]; 2016x2016 absent */
    assert_int_equal(cfg.pinpoints[0][0], 336);
    assert_int_equal(cfg.pinpoints[1][1], 672);
    assert_int_equal(cfg.pinpoints[27][0], 2016);
    assert_int_equal(cfg.pinpoints[27][1], 1008);
    for (int i = 0; i < 28; i++) assert_true(cfg.pinpoints[i][0] * cfg.pinpoints[i][1] <= 18 * 336 * 336);
    assert_true(cfg.mean[0] == 0.48145466f && cfg.std[2] == 0.27577711f);
}

static const char *write_tmp(const char *text) {
    static char path[256];
    snprintf(path, sizeof path, "/tmp/mvl_preproc_%d.json", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_load(void **state) {
    (void)state;
    mvl_preproc_config def, cfg;
    mvl_preproc_config_default(&def);
    mvl_error err = {0};
    /* the expected released file: same values as the defaults */
    const char *good =
        "{\"process_image_mode\": \"anyres\", \"size\": [336, 336], \"patch_size\": 14,"
        " \"image_mean\": [0.48145466, 0.4578275, 0.40821073], \"image_std\": [0.26862954, 0.26130258, 0.27577711],"
        " \"image_grid_pinpoints\": [[336,336],[336,672],[336,1008],[336,1344],[336,1680],[336,2016],"
        "[672,336],[672,672],[672,1008],[672,1344],[672,1680],[672,2016],[1008,336],[1008,672],[1008,1008],"
        "[1008,1344],[1008,1680],[1008,2016],[1344,336],[1344,672],[1344,1008],[1344,1344],[1680,336],"
        "[1680,672],[1680,1008],[2016,336],[2016,672],[2016,1008]], \"processor_class\": \"x\"}";
    const char *p = write_tmp(good);
    assert_int_equal(mvl_preproc_config_load(p, &cfg, &err), MVL_OK);
    assert_memory_equal(&cfg, &def, sizeof cfg);
    p = write_tmp("{\"size\": {\"height\": 28, \"width\": 28}, \"image_grid_pinpoints\": [[28, 56], [56, 28]]}");
    assert_int_equal(mvl_preproc_config_load(p, &cfg, &err), MVL_OK);
    assert_int_equal(cfg.size, 28);
    assert_int_equal(cfg.n_pinpoints, 2);

    static const struct { const char *json, *needle; } bad[] = {
        {"{\"image_mean\": [0.5, 0.5]}", "image_mean"},
        {"{\"image_std\": [0.5, 0, 0.5]}", "image_std"},
        {"{\"image_std\": \"x\"}", "image_std"},
        {"{\"image_grid_pinpoints\": [[336, 300]]}", "image_grid_pinpoints[0]"},
        {"{\"image_grid_pinpoints\": []}", "image_grid_pinpoints"},
        {"{\"image_grid_pinpoints\": [[336, 336], 5]}", "image_grid_pinpoints[1]"},
        {"{\"size\": [336, 224]}", "size"},
        {"{\"size\": \"big\"}", "size"},
        {"{\"patch_size\": 15}", "patch_size"},
        {"{\"process_image_mode\": \"resize\"}", "process_image_mode"},
        {"[1, 2]", "JSON object"},
        {"{\"size\": 336,", "line"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        p = write_tmp(bad[i].json);
        memset(&err, 0, sizeof err);
        assert_int_not_equal(mvl_preproc_config_load(p, &cfg, &err), MVL_OK);
        if (!strstr(err.msg, bad[i].needle) || !strstr(err.msg, p))
            fail_msg("%s: message '%s' lacks '%s' or the path", bad[i].json, err.msg, bad[i].needle);
    }
    unlink(p);
    assert_int_equal(mvl_preproc_config_load("/nonexistent/preprocessor_config.json", &cfg, &err), MVL_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/preprocessor_config.json"));
}

static float from_bits(uint32_t b) {
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static void test_bf16(void **state) {
    (void)state;
    /* round to nearest, ties to even, as torch's float -> bfloat16 */
    assert_int_equal(mvl_f32_to_bf16(1.0f), 0x3f80);
    assert_int_equal(mvl_f32_to_bf16(from_bits(0x3f808000)), 0x3f80); /* tie, even stays */
    assert_int_equal(mvl_f32_to_bf16(from_bits(0x3f818000)), 0x3f82); /* tie, odd rounds up */
    assert_int_equal(mvl_f32_to_bf16(from_bits(0x3f808001)), 0x3f81);
    assert_int_equal(mvl_f32_to_bf16(-2.0f), 0xc000);
    assert_int_equal(mvl_f32_to_bf16(from_bits(0x7f7fffff)), 0x7f80); /* overflow -> inf */
    assert_true(isnan(from_bits((uint32_t)mvl_f32_to_bf16(from_bits(0x7f800001)) << 16)));
    float x[3] = {-1.7922626f, 2.145897f, 0.0f};
    mvl_round_bf16(x, 3);
    assert_true(x[0] == -1.7890625f && x[1] == 2.140625f && x[2] == 0.0f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_config), cmocka_unit_test(test_worked_examples),
        cmocka_unit_test(test_token_counts_100k), cmocka_unit_test(test_config_load),
        cmocka_unit_test(test_bf16),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
