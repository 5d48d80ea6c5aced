/* config.json in both layouts, unsupported values by key, and model
 * directories whose tensors disagree with their config. */
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

#include "model/config.h"
#include "model/model_dir.h"

static char *testdata(const char *rel) {
    static char buf[1024];
    const char *src = getenv("MVL_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/testdata/%s", src ? src : ".", rel);
    return buf;
}

static void load_ok(const char *rel, mvl_model_config *c) {
    mvl_error err = {0};
    if (mvl_config_load(testdata(rel), c, &err) != MVL_OK) fail_msg("%s", err.msg);
}

static void test_both_layouts_agree(void **state) {
    (void)state;
    mvl_model_config a, b;
    load_ok("configs/released.json", &a);
    load_ok("configs/native.json", &b);
    assert_false(a.native_layout);
    assert_true(b.native_layout);
    b.native_layout = a.native_layout;
    /* the structs are memset before parsing, so padding compares equal */
    assert_memory_equal(&a, &b, sizeof a);
    /* and the values are the released ones */
    assert_int_equal(a.text.num_layers, 80);
    assert_int_equal(a.text.rotary_dim, 64);
    assert_int_equal(a.text.head_dim, 128);
    assert_int_equal(a.text.num_kv_heads, 8);
    assert_true(a.text.rope_theta == 1e7);
    assert_true(a.text.mlp_alpha == 3.5565588200778455);
    assert_true(a.text.attn_alpha[MVL_LAYER_LIGHTNING] == 3.5565588200778455);
    for (int l = 0; l < 80; l++) assert_int_equal(a.text.layer_types[l], (l + 1) % 8 == 0);
    assert_int_equal(a.vision.num_layers, 24);
    assert_int_equal(a.vision_feature_layer, 23);
    assert_int_equal(a.image_token_index, 200025);
}

/* Applies a JSON merge patch to released.json and expects a failure that
 * names the key. */
static void expect_patch_fails(const char *patch, mvl_status st, const char *want) {
    json_error_t je;
    json_t *root = json_load_file(testdata("configs/released.json"), 0, &je);
    json_t *p = json_loads(patch, 0, &je);
    assert_non_null(root);
    if (!p) fail_msg("bad patch %s", patch);
    /* shallow merge per top-level key, one level into sub-objects */
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
        json_t *cur = json_object_get(root, k);
        if (json_is_object(cur) && json_is_object(v)) {
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2) {
                if (json_is_null(v2)) json_object_del(cur, k2);
                else json_object_set(cur, k2, v2);
            }
        } else if (json_is_null(v)) {
            json_object_del(root, k);
        } else {
            json_object_set(root, k, v);
        }
    }
    char *text = json_dumps(root, 0);
    mvl_model_config c;
    mvl_error err = {0};
    mvl_status got = mvl_config_parse("patched/config.json", text, strlen(text), &c, &err);
    if (got != st || !strstr(err.msg, want) || !strstr(err.msg, "patched/config.json"))
        fail_msg("patch %s: expected %d '%s', got %d: %s", patch, st, want, got, err.msg);
    free(text);
    json_decref(p);
    json_decref(root);
}

static void test_unsupported_values(void **state) {
    (void)state;
    expect_patch_fails("{\"text_config\":{\"postnorm\":false}}", MVL_ERR_UNSUPPORTED, "text_config.postnorm");
    expect_patch_fails("{\"vision_config\":{\"hidden_act\":\"quick_gelu\"}}", MVL_ERR_UNSUPPORTED,
                       "vision_config.hidden_act = \"quick_gelu\"");
    expect_patch_fails("{\"vision_config\":{\"hidden_act\":null}}", MVL_ERR_UNSUPPORTED, "vision_config.hidden_act");
    expect_patch_fails("{\"projector_hidden_act\":\"relu\"}", MVL_ERR_UNSUPPORTED, "projector_hidden_act");
    expect_patch_fails("{\"vision_feature_select_strategy\":\"full\"}", MVL_ERR_UNSUPPORTED,
                       "vision_feature_select_strategy");
    expect_patch_fails("{\"vision_feature_layer\":-30}", MVL_ERR_UNSUPPORTED, "vision_feature_layer = -30");
    expect_patch_fails("{\"text_config\":{\"shared_intermediate_size\":[1024]}}", MVL_ERR_UNSUPPORTED,
                       "text_config.shared_intermediate_size");
    expect_patch_fails("{\"text_config\":{\"hidden_act\":\"gelu\"}}", MVL_ERR_UNSUPPORTED, "text_config.hidden_act");
    expect_patch_fails("{\"text_config\":{\"attn_type_list\":[0,1]}}", MVL_ERR_FORMAT, "text_config.attn_type_list");
    expect_patch_fails("{\"text_config\":{\"attn_type_list\":null}}", MVL_ERR_FORMAT, "text_config.attn_type_list");
    expect_patch_fails("{\"text_config\":{\"hidden_size\":\"6144\"}}", MVL_ERR_FORMAT,
                       "text_config.hidden_size must be an integer");
    expect_patch_fails("{\"text_config\":{\"vocab_size\":null}}", MVL_ERR_FORMAT, "text_config.vocab_size is missing");
    expect_patch_fails("{\"text_config\":{\"num_key_value_heads\":7}}", MVL_ERR_FORMAT, "text_config.num_key_value_heads");
    expect_patch_fails("{\"text_config\":{\"rotary_dim\":63}}", MVL_ERR_FORMAT, "text_config.rotary_dim must be even");
    expect_patch_fails("{\"text_config\":{\"partial_rotary_factor\":0.25}}", MVL_ERR_FORMAT,
                       "rotary_dim disagrees with partial_rotary_factor");
    expect_patch_fails("{\"text_config\":{\"layer_types\":[\"linear_attention\"]}}", MVL_ERR_FORMAT, "text_config.layer_types");
    expect_patch_fails("{\"text_config\":{\"layernorm_mlp_alpha\":2.0,\"mlp_alpha_factor\":3.0}}", MVL_ERR_FORMAT,
                       "layernorm_mlp_alpha disagrees");
    expect_patch_fails("{\"text_config\":{\"rope_theta\":null}}", MVL_ERR_FORMAT, "text_config.rope_theta is missing");
    expect_patch_fails("{\"model_type\":\"llava_next\"}", MVL_ERR_UNSUPPORTED, "model_type = \"llava_next\"");
    expect_patch_fails("{\"text_config\":null}", MVL_ERR_FORMAT, "text_config is missing");
    expect_patch_fails("{\"image_token_index\":300000}", MVL_ERR_FORMAT, "image_token_index is not below");
    expect_patch_fails("{\"text_config\":{\"num_hidden_layers\":1000}}", MVL_ERR_UNSUPPORTED, "num_hidden_layers = 1000");

    mvl_model_config c;
    mvl_error err = {0};
    assert_int_equal(mvl_config_parse("x/config.json", "{\"a\":", 5, &c, &err), MVL_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "x/config.json: not valid JSON (line 1"));
    assert_int_equal(mvl_config_load("/nonexistent/config.json", &c, &err), MVL_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/config.json"));
}

/* ---- model directories built from a tiny config ---------------------------- */

static char dir[256];
static const char *tiny_config =
    "{\"model_type\":\"minimax_vl_01\",\"image_token_index\":60,"
    "\"vision_config\":{\"hidden_act\":\"gelu\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
    "\"intermediate_size\":16,\"image_size\":28,\"patch_size\":14},"
    "\"text_config\":{\"hidden_size\":16,\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"head_dim\":8,\"vocab_size\":64,\"intermediate_size\":8,\"num_local_experts\":2,\"num_experts_per_tok\":1,"
    "\"attn_type_list\":[0,1],\"rope_theta\":10000,\"rotary_dim\":4,\"postnorm\":true}}";

typedef struct {
    FILE *hdr;        /* JSON header being written */
    uint64_t off;
    int n;
    const char *skip; /* tensor to leave out */
    const char *bend; /* tensor whose first dim gets +1 */
} writer;

static mvl_status emit(void *ctx, const char *name, mvl_part part, int ndim, const int64_t *shape) {
    (void)part;
    writer *w = ctx;
    if (w->skip && !strcmp(name, w->skip)) return MVL_OK;
    uint64_t numel = 1;
    fprintf(w->hdr, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[", w->n++ ? "," : "", name);
    for (int i = 0; i < ndim; i++) {
        int64_t d = shape[i] + (i == 0 && w->bend && !strcmp(name, w->bend));
        fprintf(w->hdr, "%s%lld", i ? "," : "", (long long)d);
        numel *= (uint64_t)d;
    }
    fprintf(w->hdr, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)w->off,
            (unsigned long long)(w->off + numel * 4));
    w->off += numel * 4;
    return MVL_OK;
}

/* Writes DIR/config.json and DIR/model.safetensors from the manifest. */
static void make_dir(const char *skip, const char *bend, const char *extra) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(tiny_config, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    f = fopen(path, "w");
    fputs("{\"size\": [28, 28], \"patch_size\": 14, \"image_grid_pinpoints\": [[28, 28]]}", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/config.json", dir);
    mvl_model_config c;
    mvl_error err = {0};
    assert_int_equal(mvl_config_parse(path, tiny_config, strlen(tiny_config), &c, &err), MVL_OK);
    char *hb = NULL;
    size_t hl = 0;
    writer w = {open_memstream(&hb, &hl), 0, 0, skip, bend};
    fputc('{', w.hdr);
    mvl_model_manifest(&c, emit, &w);
    if (extra) emit(&w, extra, MVL_PART_TEXT, 1, (const int64_t[]){4});
    fputc('}', w.hdr);
    fclose(w.hdr);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    uint64_t n = hl;
    fwrite(&n, 8, 1, f);
    fwrite(hb, 1, hl, f);
    assert_int_equal(ftruncate(fileno(f), (off_t)(8 + hl + w.off)), 0);
    fclose(f);
    free(hb);
}

static void expect_dir(mvl_status want_st, const char *want) {
    mvl_model_dir *md = NULL;
    mvl_error err = {0};
    mvl_status st = mvl_model_dir_open(dir, &md, &err);
    if (st == MVL_OK) st = mvl_model_dir_validate(md, &err);
    mvl_model_dir_close(md);
    if (st != want_st || (want && !strstr(err.msg, want)))
        fail_msg("expected %d '%s', got %d: %s", want_st, want ? want : "", st, err.msg);
}

static void test_model_dir_manifest(void **state) {
    (void)state;
    make_dir(NULL, NULL, NULL);
    expect_dir(MVL_OK, NULL);
    /* typed lookups name the file and the mismatch */
    mvl_model_dir *md;
    mvl_error err = {0};
    assert_int_equal(mvl_model_dir_open(dir, &md, &err), MVL_OK);
    mvl_tensor_view v;
    assert_int_equal(mvl_model_dir_tensor(md, "image_newline", MVL_DTYPE_F32, 1, (const int64_t[]){16}, &v, &err),
                     MVL_OK);
    assert_int_equal(v.nbytes, 64);
    assert_int_equal(mvl_model_dir_tensor(md, "image_newline", MVL_DTYPE_BF16, -1, NULL, &v, &err), MVL_ERR_FORMAT);
    assert_non_null(strstr(err.msg, "model.safetensors: tensor 'image_newline' is F32, expected BF16"));
    char *text = NULL;
    assert_int_equal(mvl_model_dir_describe(md, &text, &err), MVL_OK);
    assert_non_null(strstr(text, "LS"));
    free(text);
    mvl_model_dir_close(md);

    make_dir("language_model.model.layers.1.self_attn.k_proj.weight", NULL, NULL);
    expect_dir(MVL_ERR_FORMAT, "tensor 'language_model.model.layers.1.self_attn.k_proj.weight' is missing");
    make_dir(NULL, "language_model.model.layers.0.self_attn.qkv_proj.weight", NULL);
    expect_dir(MVL_ERR_FORMAT, "has shape [49, 16], the config needs [48, 16]");
    make_dir(NULL, NULL, "language_model.model.layers.0.coefficient.weight");
    expect_dir(MVL_ERR_FORMAT, "'language_model.model.layers.0.coefficient.weight' is not part of MiniMax-VL-01");
    make_dir(NULL, NULL, "vision_tower.vision_model.post_layernorm.weight");
    expect_dir(MVL_OK, NULL); /* vision.md §1.2: present in CLIP exports, never applied */

    /* preprocessor_config.json must fit the ViT; without one, the released
     * defaults (336 px tiles) apply, which this tiny ViT does not take */
    make_dir(NULL, NULL, NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"size\": [224, 224]}", f);
    fclose(f);
    expect_dir(MVL_ERR_FORMAT, "preprocessor_config.json: size 224 disagrees with vision_config.image_size 28");
    f = fopen(path, "w");
    fputs("{\"size\": [28, 28], \"patch_size\": 14, \"image_grid_pinpoints\": [[28, 56], [56, 28]]}", f);
    fclose(f);
    assert_int_equal(mvl_model_dir_open(dir, &md, &err), MVL_OK);
    assert_int_equal(mvl_model_dir_preproc(md)->n_pinpoints, 2);
    mvl_model_dir_close(md);
    f = fopen(path, "w");
    fputs("{\"size\": ", f);
    fclose(f);
    expect_dir(MVL_ERR_FORMAT, "preprocessor_config.json");
    unlink(path);
    assert_int_equal(mvl_model_dir_open(dir, &md, &err), MVL_ERR_FORMAT); /* defaults are 336 px tiles */
    assert_non_null(strstr(err.msg, "the released defaults"));
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/mvl-cfg-test-XXXXXX");
    if (!mkdtemp(dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_layouts_agree),
        cmocka_unit_test(test_unsupported_values),
        cmocka_unit_test(test_model_dir_manifest),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) rc = 1;
    return rc;
}
