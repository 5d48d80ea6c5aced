#include <jansson.h>
#include <math.h>
#include <string.h>

#include "model/config.h"

/* Key lookups that name the file and the dotted key in every message. */
typedef struct {
    const char *path;   /* config.json path, for messages */
    const char *prefix; /* "text_config." etc. */
    json_t *obj;
    mvl_error *err;
} cfg_ctx;

static mvl_status bad(cfg_ctx *c, const char *key, const char *what) {
    return mvl_fail(c->err, MVL_ERR_FORMAT, "%s: %s%s %s", c->path, c->prefix, key, what);
}

/* Integer key; when required is false a missing key gives def. */
static mvl_status get_int(cfg_ctx *c, const char *key, bool required, int64_t def, int64_t lo, int64_t hi,
                          int64_t *out) {
    json_t *v = json_object_get(c->obj, key);
    if (!v || json_is_null(v)) {
        if (required) return bad(c, key, "is missing");
        *out = def;
        return MVL_OK;
    }
    if (!json_is_integer(v)) return bad(c, key, "must be an integer");
    int64_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return mvl_fail(c->err, MVL_ERR_UNSUPPORTED, "%s: %s%s = %lld is outside the supported range [%lld, %lld]",
                        c->path, c->prefix, key, (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return MVL_OK;
}

static mvl_status get_i32(cfg_ctx *c, const char *key, bool required, int def, int lo, int hi, int *out) {
    int64_t x = 0;
    mvl_status st = get_int(c, key, required, def, lo, hi, &x);
    if (st == MVL_OK) *out = (int)x;
    return st;
}

static mvl_status get_num(cfg_ctx *c, json_t *obj, const char *key, bool required, double def, double *out) {
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    if (!v || json_is_null(v)) {
        if (required) return bad(c, key, "is missing");
        *out = def;
        return MVL_OK;
    }
    if (!json_is_number(v)) return bad(c, key, "must be a number");
    *out = json_number_value(v);
    if (!isfinite(*out)) return bad(c, key, "must be finite");
    return MVL_OK;
}

/* A string key that must equal want when present (missing -> def_ok). */
static mvl_status expect_str(cfg_ctx *c, const char *key, const char *def, const char *want) {
    json_t *v = json_object_get(c->obj, key);
    const char *s = def;
    if (v && !json_is_null(v)) {
        if (!json_is_string(v)) return bad(c, key, "must be a string");
        s = json_string_value(v);
    }
    if (strcmp(s, want))
        return mvl_fail(c->err, MVL_ERR_UNSUPPORTED, "%s: %s%s = \"%s\" is not supported (only \"%s\")", c->path,
                        c->prefix, key, s, want);
    return MVL_OK;
}

static mvl_status parse_vision(cfg_ctx *c, mvl_vision_config *v) {
    mvl_status st;
    /* Missing keys take CLIPVisionConfig's defaults, as transformers would. */
    if ((st = get_i32(c, "hidden_size", false, 768, 1, 1 << 16, &v->hidden_size)) ||
        (st = get_i32(c, "num_hidden_layers", false, 12, 1, 1024, &v->num_layers)) ||
        (st = get_i32(c, "num_attention_heads", false, 12, 1, 1024, &v->num_heads)) ||
        (st = get_i32(c, "intermediate_size", false, 3072, 1, 1 << 20, &v->intermediate_size)) ||
        (st = get_i32(c, "image_size", false, 224, 1, 1 << 14, &v->image_size)) ||
        (st = get_i32(c, "patch_size", false, 32, 1, 1 << 14, &v->patch_size)) ||
        (st = get_i32(c, "num_channels", false, 3, 3, 3, &v->num_channels)) ||
        (st = get_num(c, c->obj, "layer_norm_eps", false, 1e-5, &v->layer_norm_eps)))
        return st;
    /* vision.md §7.1: exact erf GELU; CLIP's own default is quick_gelu. */
    if ((st = expect_str(c, "hidden_act", "quick_gelu", "gelu"))) return st;
    if (v->hidden_size % v->num_heads) return bad(c, "num_attention_heads", "does not divide hidden_size");
    if (v->image_size % v->patch_size) return bad(c, "patch_size", "does not divide image_size");
    return MVL_OK;
}

static mvl_status parse_layer_types(cfg_ctx *c, mvl_text_config *t, bool *native) {
    json_t *legacy = json_object_get(c->obj, "attn_type_list");
    json_t *names = json_object_get(c->obj, "layer_types");
    if (!legacy && !names) return bad(c, "attn_type_list", "(or layer_types) is missing");
    *native = legacy == NULL;
    unsigned char from_legacy[MVL_MAX_LAYERS];
    if (legacy) {
        if (!json_is_array(legacy) || json_array_size(legacy) != (size_t)t->num_layers)
            return bad(c, "attn_type_list", "must be a list with one entry per layer");
        for (int i = 0; i < t->num_layers; i++) {
            json_t *x = json_array_get(legacy, (size_t)i);
            if (!json_is_integer(x) || (json_integer_value(x) != 0 && json_integer_value(x) != 1))
                return bad(c, "attn_type_list", "entries must be 0 (lightning) or 1 (softmax)");
            from_legacy[i] = (unsigned char)json_integer_value(x);
        }
        memcpy(t->layer_types, from_legacy, (size_t)t->num_layers);
    }
    if (names) {
        if (!json_is_array(names) || json_array_size(names) != (size_t)t->num_layers)
            return bad(c, "layer_types", "must be a list with one entry per layer");
        for (int i = 0; i < t->num_layers; i++) {
            const char *s = json_string_value(json_array_get(names, (size_t)i));
            unsigned char ty;
            if (s && !strcmp(s, "linear_attention"))
                ty = MVL_LAYER_LIGHTNING;
            else if (s && !strcmp(s, "full_attention"))
                ty = MVL_LAYER_SOFTMAX;
            else
                return mvl_fail(c->err, MVL_ERR_UNSUPPORTED,
                                "%s: %slayer_types[%d] = \"%s\" is not supported (linear_attention, full_attention)",
                                c->path, c->prefix, i, s ? s : "(not a string)");
            if (legacy && ty != from_legacy[i])
                return bad(c, "layer_types", "disagrees with attn_type_list");
            t->layer_types[i] = ty;
        }
    }
    return MVL_OK;
}

/* alpha/beta of the post-norm residual under either layout's key. */
static mvl_status get_residual(cfg_ctx *c, const char *legacy, const char *native, double *out) {
    json_t *a = json_object_get(c->obj, legacy), *b = json_object_get(c->obj, native);
    double x = 0, y = 0;
    mvl_status st;
    if ((st = get_num(c, c->obj, legacy, false, 1.0, &x)) || (st = get_num(c, c->obj, native, false, 1.0, &y)))
        return st;
    if (a && b && x != y) return bad(c, legacy, "disagrees with its native-layout twin");
    *out = a ? x : y;
    return MVL_OK;
}

static mvl_status parse_text(cfg_ctx *c, mvl_text_config *t, bool *native) {
    mvl_status st;
    int64_t maxpos;
    if ((st = get_i32(c, "hidden_size", true, 0, 1, 1 << 16, &t->hidden_size)) ||
        (st = get_i32(c, "num_hidden_layers", true, 0, 1, MVL_MAX_LAYERS, &t->num_layers)) ||
        (st = get_i32(c, "num_attention_heads", true, 0, 1, 4096, &t->num_heads)) ||
        (st = get_i32(c, "num_key_value_heads", true, 0, 1, 4096, &t->num_kv_heads)) ||
        (st = get_i32(c, "head_dim", false, t->hidden_size / t->num_heads, 1, 4096, &t->head_dim)) ||
        (st = get_i32(c, "vocab_size", true, 0, 1, 1 << 24, &t->vocab_size)) ||
        (st = get_i32(c, "intermediate_size", true, 0, 1, 1 << 20, &t->intermediate_size)) ||
        (st = get_i32(c, "num_local_experts", true, 0, 1, 4096, &t->num_experts)) ||
        (st = get_i32(c, "num_experts_per_tok", true, 0, 1, 4096, &t->experts_per_tok)) ||
        (st = get_i32(c, "block_size", false, 256, 1, 1 << 16, &t->block_size)) ||
        (st = get_int(c, "max_position_embeddings", false, 8192, 1, INT64_MAX, &maxpos)) ||
        (st = get_num(c, c->obj, "rms_norm_eps", false, 1e-5, &t->rms_norm_eps)))
        return st;
    t->max_position_embeddings = maxpos;
    if (t->num_heads % t->num_kv_heads) return bad(c, "num_key_value_heads", "does not divide num_attention_heads");
    if (t->experts_per_tok > t->num_experts) return bad(c, "num_experts_per_tok", "exceeds num_local_experts");
    if ((st = parse_layer_types(c, t, native))) return st;

    /* RoPE: rope_theta and the rotary share, top level or in rope_parameters. */
    json_t *rp = json_object_get(c->obj, "rope_parameters");
    if (rp && !json_is_object(rp)) return bad(c, "rope_parameters", "must be an object");
    double theta, theta2, factor = 0, factor2 = 0;
    if ((st = get_num(c, c->obj, "rope_theta", false, NAN, &theta)) ||
        (st = get_num(c, rp, "rope_theta", false, NAN, &theta2)) ||
        (st = get_num(c, c->obj, "partial_rotary_factor", false, 0, &factor)) ||
        (st = get_num(c, rp, "partial_rotary_factor", false, 0, &factor2)))
        return st;
    if (isnan(theta)) theta = theta2;
    if (isnan(theta)) return bad(c, "rope_theta", "is missing");
    t->rope_theta = theta;
    if (rp) {
        json_t *ty = json_object_get(rp, "rope_type");
        if (ty && (!json_is_string(ty) || strcmp(json_string_value(ty), "default")))
            return mvl_fail(c->err, MVL_ERR_UNSUPPORTED, "%s: %srope_parameters.rope_type is not supported (only \"default\")",
                            c->path, c->prefix);
    }
    if (factor == 0) factor = factor2;
    int64_t rot;
    if ((st = get_int(c, "rotary_dim", false, -1, 0, t->head_dim, &rot))) return st;
    if (rot < 0) {
        double r = (factor == 0 ? 1.0 : factor) * t->head_dim; /* native default: the full head */
        if (r != floor(r) || r < 0 || r > t->head_dim)
            return bad(c, "partial_rotary_factor", "does not give a whole rotary dimension");
        rot = (int64_t)r;
    } else if (factor != 0 && factor * t->head_dim != (double)rot) {
        return bad(c, "rotary_dim", "disagrees with partial_rotary_factor");
    }
    if (rot % 2) return bad(c, "rotary_dim", "must be even");
    t->rotary_dim = (int)rot;

    if ((st = get_residual(c, "layernorm_full_attention_alpha", "full_attn_alpha_factor", &t->attn_alpha[MVL_LAYER_SOFTMAX])) ||
        (st = get_residual(c, "layernorm_full_attention_beta", "full_attn_beta_factor", &t->attn_beta[MVL_LAYER_SOFTMAX])) ||
        (st = get_residual(c, "layernorm_linear_attention_alpha", "linear_attn_alpha_factor", &t->attn_alpha[MVL_LAYER_LIGHTNING])) ||
        (st = get_residual(c, "layernorm_linear_attention_beta", "linear_attn_beta_factor", &t->attn_beta[MVL_LAYER_LIGHTNING])) ||
        (st = get_residual(c, "layernorm_mlp_alpha", "mlp_alpha_factor", &t->mlp_alpha)) ||
        (st = get_residual(c, "layernorm_mlp_beta", "mlp_beta_factor", &t->mlp_beta)))
        return st;

    /* decoder.md §3: only the post-norm residual form exists for this model. */
    json_t *pn = json_object_get(c->obj, "postnorm");
    if (pn && !json_is_boolean(pn)) return bad(c, "postnorm", "must be true or false");
    if (pn && !json_is_true(pn))
        return mvl_fail(c->err, MVL_ERR_UNSUPPORTED, "%s: %spostnorm = false is not supported", c->path, c->prefix);
    json_t *sh = json_object_get(c->obj, "shared_intermediate_size");
    if (json_is_array(sh)) sh = json_array_size(sh) == 1 ? json_array_get(sh, 0) : NULL;
    if (json_object_get(c->obj, "shared_intermediate_size") && !(json_is_integer(sh) && json_integer_value(sh) == 0))
        return mvl_fail(c->err, MVL_ERR_UNSUPPORTED, "%s: %sshared_intermediate_size: shared experts are not supported",
                        c->path, c->prefix);
    if ((st = expect_str(c, "hidden_act", "silu", "silu"))) return st;
    json_t *tie = json_object_get(c->obj, "tie_word_embeddings");
    if (tie && !json_is_boolean(tie)) return bad(c, "tie_word_embeddings", "must be true or false");
    t->tie_word_embeddings = tie && json_is_true(tie);
    return MVL_OK;
}

mvl_status mvl_config_parse(const char *path, const char *text, size_t len, mvl_model_config *cfg,
                            mvl_error *err) {
    memset(cfg, 0, sizeof *cfg);
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: not valid JSON (line %d, column %d): %s", path, je.line, je.column,
                        je.text);
    cfg_ctx top = {path, "", root, err};
    mvl_status st = MVL_OK;
    json_t *tc = json_object_get(root, "text_config"), *vc = json_object_get(root, "vision_config");
    int64_t fl;
    if (!json_is_object(root))
        st = mvl_fail(err, MVL_ERR_FORMAT, "%s: not a JSON object", path);
    else if ((st = expect_str(&top, "model_type", "minimax_vl_01", "minimax_vl_01")))
        ;
    else if (!json_is_object(tc))
        st = bad(&top, "text_config", "is missing or not an object");
    else if (!json_is_object(vc))
        st = bad(&top, "vision_config", "is missing or not an object");
    else if ((st = get_i32(&top, "image_token_index", false, 200025, 0, INT32_MAX, &cfg->image_token_index)) ||
             (st = expect_str(&top, "projector_hidden_act", "gelu", "gelu")) ||
             (st = expect_str(&top, "vision_feature_select_strategy", "default", "default")))
        ;
    else {
        cfg_ctx tctx = {path, "text_config.", tc, err}, vctx = {path, "vision_config.", vc, err};
        if (!(st = parse_vision(&vctx, &cfg->vision)) && !(st = parse_text(&tctx, &cfg->text, &cfg->native_layout))) {
            int nl = cfg->vision.num_layers;
            if (!(st = get_int(&top, "vision_feature_layer", false, -1, -nl, nl - 1, &fl)))
                cfg->vision_feature_layer = (int)(fl < 0 ? fl + nl : fl);
        }
        if (!st && cfg->image_token_index >= cfg->text.vocab_size)
            st = bad(&top, "image_token_index", "is not below text_config.vocab_size");
    }
    json_decref(root);
    return st;
}

mvl_status mvl_config_load(const char *path, mvl_model_config *cfg, mvl_error *err) {
    char *text;
    size_t len;
    mvl_status st = mvl_read_file(path, 16u << 20, &text, &len, err);
    if (st != MVL_OK) return st;
    st = mvl_config_parse(path, text, len, cfg, err);
    free(text);
    return st;
}
