/* The public model API on the tiny model: prefill-then-decode equals one full
 * prefill, generation continues the kept state, sampling, and bad inputs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mvl.h"
#include "test_util.h"

static mvl_model *model;
static int32_t V;

static char *testdata(const char *rel) {
    static char buf[1024];
    const char *src = getenv("MVL_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/testdata/%s", src ? src : ".", rel);
    return buf;
}

static int setup(void **state) {
    (void)state;
    mvl_error err = {0};
    if (mvl_model_load(testdata("tiny-random"), NULL, &model, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    V = mvl_model_vocab_size(model);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mvl_model_free(model);
    return 0;
}

static int32_t *random_ids(size_t n, uint64_t seed) {
    int32_t *ids = malloc(n * sizeof *ids);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)(V - 1)); /* never the image id (the last) */
    }
    return ids;
}


static mvl_seq *new_seq(void) {
    mvl_seq *s;
    assert_int_equal(mvl_seq_init(model, &s, NULL), MVL_OK);
    return s;
}

/* 300 positions cross the 256 lightning block; split prefill, then one at a time. */
static void test_decode_equals_prefill(void **state) {
    (void)state;
    size_t n = 300;
    int32_t *ids = random_ids(n, 1);
    float *full = malloc(n * (size_t)V * sizeof(float)), *part = malloc(n * (size_t)V * sizeof(float));
    mvl_seq *s = new_seq();
    assert_int_equal(mvl_seq_append(s, ids, n, NULL, 0, full, NULL), MVL_OK);
    assert_int_equal(mvl_seq_length(s), 300);
    assert_memory_equal(mvl_seq_last_logits(s), full + (n - 1) * V, (size_t)V * sizeof(float));
    mvl_seq_reset(s);
    size_t cuts[] = {0, 200, 257, 258, 259, 300};
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
        size_t a = cuts[c], b = cuts[c + 1];
        assert_int_equal(mvl_seq_append(s, ids + a, b - a, NULL, 0, part + a * V, NULL), MVL_OK);
    }
    double e = mvl_test_rel_err(part, full, n * (size_t)V);
    printf("prefill-then-decode vs full prefill: max rel err %.3g\n", e);
    assert_true(e <= 1e-5);
    mvl_seq_free(s);
    free(ids), free(full), free(part);
}

static void test_generate_and_follow_up(void **state) {
    (void)state;
    size_t n = 40, g = 12, m = 9;
    int32_t *ids = random_ids(n + g + m, 2);
    mvl_seq *s = new_seq();
    assert_int_equal(mvl_seq_append(s, ids, n, NULL, 0, NULL, NULL), MVL_OK);
    mvl_generate_opts o = {.sample = {.temperature = 0, .top_p = 1}, .max_tokens = g};
    int32_t out[12];
    size_t n_out;
    mvl_stop_reason why;
    assert_int_equal(mvl_seq_generate(s, &o, out, &n_out, &why, NULL), MVL_OK);
    assert_int_equal(n_out, g);
    assert_int_equal(why, MVL_STOP_LENGTH);
    assert_int_equal(mvl_seq_length(s), n + g - 1); /* the last id waits for the next append */
    /* follow-up turn on the kept state */
    float *follow = malloc(m * (size_t)V * sizeof(float));
    assert_int_equal(mvl_seq_append(s, ids + n + g, m, NULL, 0, follow, NULL), MVL_OK);
    /* the same conversation in one prefill */
    memcpy(ids + n, out, g * sizeof(int32_t));
    float *full = malloc((n + g + m) * (size_t)V * sizeof(float));
    mvl_seq *t = new_seq();
    assert_int_equal(mvl_seq_append(t, ids, n + g + m, NULL, 0, full, NULL), MVL_OK);
    for (size_t i = 0; i < g; i++) { /* each generated id is the argmax of the position before it */
        const float *row = full + (n - 1 + i) * V;
        int32_t best = 0;
        for (int32_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        assert_int_equal(out[i], best);
    }
    double e = mvl_test_rel_err(follow, full + (n + g) * V, m * (size_t)V);
    printf("follow-up turn vs full prefill: max rel err %.3g\n", e);
    assert_true(e <= 1e-5);
    /* stop ids: the first generated id stops at once */
    mvl_seq_reset(s);
    assert_int_equal(mvl_seq_append(s, ids, n, NULL, 0, NULL, NULL), MVL_OK);
    o.stop_ids = out;
    o.n_stop = 1;
    assert_int_equal(mvl_seq_generate(s, &o, out + 1, &n_out, &why, NULL), MVL_OK);
    assert_int_equal(n_out, 1);
    assert_int_equal(why, MVL_STOP_ID);
    assert_int_equal(out[1], out[0]);
    mvl_seq_free(s);
    mvl_seq_free(t);
    free(ids), free(follow), free(full);
}

static void test_sampler(void **state) {
    (void)state;
    float logits[8] = {0.1f, 2.0f, 1.9f, -3.0f, 0.5f, 1.0f, 1.95f, -1.0f};
    mvl_sampler *a, *b;
    mvl_sample_opts o = {.temperature = 0, .top_p = 1};
    assert_int_equal(mvl_sampler_init(&o, &a, NULL), MVL_OK);
    assert_int_equal(mvl_sampler_sample(a, logits, 8), 1);
    mvl_sampler_free(a);
    o = (mvl_sample_opts){.temperature = 1, .top_k = 1, .top_p = 1, .seed = 3};
    assert_int_equal(mvl_sampler_init(&o, &a, NULL), MVL_OK);
    for (int i = 0; i < 20; i++) assert_int_equal(mvl_sampler_sample(a, logits, 8), 1);
    mvl_sampler_free(a);
    /* same seed, same draws; top_k 3 keeps ids 1, 6, 2 only */
    o = (mvl_sample_opts){.temperature = 1.5f, .top_k = 3, .top_p = 1, .seed = 99};
    assert_int_equal(mvl_sampler_init(&o, &a, NULL), MVL_OK);
    assert_int_equal(mvl_sampler_init(&o, &b, NULL), MVL_OK);
    int seen[8] = {0};
    for (int i = 0; i < 300; i++) {
        int32_t x = mvl_sampler_sample(a, logits, 8);
        assert_int_equal(x, mvl_sampler_sample(b, logits, 8));
        seen[x]++;
    }
    assert_true(seen[1] > 0 && seen[6] > 0 && seen[2] > 0);
    assert_int_equal(seen[1] + seen[6] + seen[2], 300);
    mvl_sampler_free(a);
    mvl_sampler_free(b);
    /* top_p: p(1) alone is below 0.5 at T=1 (three near-equal logits), so 1 and 6 survive 0.5 */
    o = (mvl_sample_opts){.temperature = 1, .top_p = 0.5f, .seed = 1};
    assert_int_equal(mvl_sampler_init(&o, &a, NULL), MVL_OK);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 300; i++) seen[mvl_sampler_sample(a, logits, 8)]++;
    assert_int_equal(seen[1] + seen[6], 300);
    mvl_sampler_free(a);
    /* min_p 0.92: only logits within ln(1/0.92) of the top (ids 1 and 6) */
    o = (mvl_sample_opts){.temperature = 1, .top_p = 1, .min_p = 0.92f, .seed = 1};
    assert_int_equal(mvl_sampler_init(&o, &a, NULL), MVL_OK);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 300; i++) seen[mvl_sampler_sample(a, logits, 8)]++;
    assert_int_equal(seen[1] + seen[6], 300);
    mvl_sampler_free(a);
    mvl_error err = {0};
    o = (mvl_sample_opts){.temperature = 1, .top_p = 0};
    assert_int_equal(mvl_sampler_init(&o, &a, &err), MVL_ERR_ARG);
}

static void test_images_and_bad_input(void **state) {
    (void)state;
    mvl_error err = {0};
    const mvl_preproc_config *pp = mvl_model_preproc(model);
    size_t per = 3 * (size_t)pp->size * pp->size;
    float *px = calloc(3 * per, sizeof(float));
    for (size_t i = 0; i < 3 * per; i++) px[i] = (float)sin((double)i * 0.001);
    /* 1 x 2 tiles: 1576 tokens (tests/reference) */
    mvl_image_input img = {.pixels = px, .cols = 1, .rows = 2, .width = 300, .height = 500};
    assert_int_equal(mvl_model_image_tokens(model, &img), 1576);
    float *emb;
    int64_t cnt;
    assert_int_equal(mvl_model_embed_image(model, &img, &emb, &cnt, NULL), MVL_OK);
    assert_int_equal(cnt, 1576);
    free(emb);
    /* uint8 tiles alone: normalised inside, the same embeddings as from the pixels of those tiles */
    uint8_t *tiles = malloc(3 * per);
    for (size_t i = 0; i < 3 * per; i++) tiles[i] = (uint8_t)(i * 7 + i / 1000);
    mvl_preproc_normalize(pp, tiles, 3, px);
    float *from_px, *from_u8;
    int64_t c1, c2;
    mvl_image_input by_u8 = {.cols = 1, .rows = 2, .width = 300, .height = 500, .tiles = tiles};
    assert_int_equal(mvl_model_embed_image(model, &img, &from_px, &c1, NULL), MVL_OK);
    assert_int_equal(mvl_model_embed_image(model, &by_u8, &from_u8, &c2, NULL), MVL_OK);
    assert_int_equal(c1, c2);
    assert_memory_equal(from_px, from_u8, (size_t)c1 * mvl_model_hidden_size(model) * sizeof(float));
    free(from_px);
    free(from_u8);
    /* neither pixels nor tiles */
    by_u8.tiles = NULL;
    assert_int_equal(mvl_model_embed_image(model, &by_u8, &emb, &cnt, &err), MVL_ERR_ARG);
    assert_non_null(strstr(err.msg, "pixels or tiles"));
    int32_t img_id = mvl_model_image_token_id(model);
    int32_t *ids = random_ids(1580, 3);
    for (int i = 2; i < 2 + 1576; i++) ids[i] = img_id;
    mvl_seq *s = new_seq();
    assert_int_equal(mvl_seq_append(s, ids, 1580, &img, 1, NULL, &err), MVL_OK);
    /* invalid input leaves a non-empty sequence as it was */
    int32_t oov = V + 5;
    assert_int_equal(mvl_seq_append(s, &oov, 1, NULL, 0, NULL, &err), MVL_ERR_ARG);
    assert_int_equal(mvl_seq_length(s), 1580);
    assert_non_null(mvl_seq_last_logits(s));
    mvl_seq_reset(s);
    /* one image token short */
    assert_int_equal(mvl_seq_append(s, ids, 1577, &img, 1, NULL, &err), MVL_ERR_ARG);
    assert_non_null(strstr(err.msg, "image"));
    assert_int_equal(mvl_seq_length(s), 0);
    /* an id outside the vocabulary */
    int32_t bad[2] = {1, V};
    assert_int_equal(mvl_seq_append(s, bad, 2, NULL, 0, NULL, &err), MVL_ERR_ARG);
    assert_non_null(strstr(err.msg, "vocabulary"));
    /* a bad grid */
    mvl_image_input no = {.pixels = px, .cols = 0, .rows = 1, .width = 10, .height = 10};
    assert_int_equal(mvl_seq_append(s, ids, 0, &no, 1, NULL, &err), MVL_OK); /* nothing to run */
    assert_int_equal(mvl_model_embed_image(model, &no, &emb, &cnt, &err), MVL_ERR_ARG);
    /* generate on an empty sequence */
    int32_t out[2];
    size_t n_out;
    mvl_stop_reason why;
    mvl_generate_opts o = {.sample = {.top_p = 1}, .max_tokens = 2};
    assert_int_equal(mvl_seq_generate(s, &o, out, &n_out, &why, &err), MVL_ERR_ARG);
    mvl_seq_free(s);
    /* a directory that is not a model */
    mvl_model *m2;
    assert_int_not_equal(mvl_model_load(testdata("goldens"), NULL, &m2, &err), MVL_OK);
    assert_non_null(strstr(err.msg, "goldens"));
    free(ids);
    free(px);
    free(tiles);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_equals_prefill),
        cmocka_unit_test(test_generate_and_follow_up),
        cmocka_unit_test(test_sampler),
        cmocka_unit_test(test_images_and_bad_input),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
