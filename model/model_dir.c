/* A Hugging Face MiniMax-VL-01 directory opened in place (model/):
 * config.json plus the safetensors, headers only. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/config.h"
#include "model/model_dir.h"
#include "model/safetensors.h"

struct mvl_model_dir {
    char *path;
    mvl_model_config cfg;
    mvl_preproc_config preproc;
    bool preproc_from_file; /* false: released defaults */
    mvl_st_set *st;
};

const mvl_preproc_config *mvl_model_dir_preproc(const mvl_model_dir *md) { return &md->preproc; }

const mvl_model_config *mvl_model_dir_config(const mvl_model_dir *md) { return &md->cfg; }
const char *mvl_model_dir_path(const mvl_model_dir *md) { return md->path; }

void mvl_model_dir_close(mvl_model_dir *md) {
    if (!md) return;
    mvl_st_close(md->st);
    free(md->path);
    free(md);
}

/* Tiles must be what the ViT was built for, or every feature is wrong. */
static mvl_status load_preproc(mvl_model_dir *md, const char *path, mvl_error *err) {
    md->preproc_from_file = access(path, F_OK) == 0;
    if (!md->preproc_from_file) {
        mvl_preproc_config_default(&md->preproc);
    } else {
        mvl_status st = mvl_preproc_config_load(path, &md->preproc, err);
        if (st != MVL_OK) return st;
    }
    const mvl_vision_config *v = &md->cfg.vision;
    const char *src = md->preproc_from_file ? path : md->path;
    const char *what = md->preproc_from_file ? "" : " (no preprocessor_config.json: the released defaults)";
    if (md->preproc.size != v->image_size)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: size %d%s disagrees with vision_config.image_size %d in config.json",
                        src, md->preproc.size, what, v->image_size);
    if (md->preproc.patch_size != v->patch_size)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: patch_size %d%s disagrees with vision_config.patch_size %d in config.json",
                        src, md->preproc.patch_size, what, v->patch_size);
    return MVL_OK;
}

mvl_status mvl_model_dir_open(const char *dir, mvl_model_dir **out, mvl_error *err) {
    *out = NULL;
    mvl_model_dir *md = mvl_calloc(1, sizeof *md, err);
    if (!md) return MVL_ERR_NOMEM;
    char *cfg_path = mvl_path_join(dir, "config.json");
    char *pre_path = mvl_path_join(dir, "preprocessor_config.json");
    md->path = strdup(dir);
    mvl_status st;
    if (!cfg_path || !pre_path || !md->path)
        st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    else if ((st = mvl_config_load(cfg_path, &md->cfg, err)) == MVL_OK &&
             (st = load_preproc(md, pre_path, err)) == MVL_OK)
        st = mvl_st_open_dir(dir, &md->st, err);
    free(cfg_path);
    free(pre_path);
    if (st != MVL_OK) {
        mvl_model_dir_close(md);
        return st;
    }
    *out = md;
    return MVL_OK;
}

static void format_shape(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%" PRId64, i ? ", " : "", shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
}

mvl_status mvl_model_dir_tensor(const mvl_model_dir *md, const char *name, mvl_dtype dtype, int ndim,
                                const int64_t *shape, mvl_tensor_view *out, mvl_error *err) {
    const mvl_st_tensor *t = mvl_st_find(md->st, name);
    if (!t) return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is missing", md->path, name);
    const char *file = md->st->files[t->file].path;
    if (dtype != MVL_DTYPE_COUNT && t->dtype != dtype)
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", file, name,
                        mvl_dtype_name(t->dtype), mvl_dtype_name(dtype));
    if (ndim >= 0 && (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof *shape))) {
        char have[160], want[160];
        format_shape(have, sizeof have, t->ndim, t->shape);
        format_shape(want, sizeof want, ndim, shape);
        return mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' has shape %s, the config needs %s", file, name, have,
                        want);
    }
    if (out) mvl_st_view(md->st, t, out);
    return MVL_OK;
}

/* ---- the expected tensor manifest (vision.md §6, decoder.md §2) ------------ */

mvl_status mvl_model_manifest(const mvl_model_config *c, mvl_manifest_fn fn, void *ctx) {
    char n[256];
    mvl_status st = MVL_OK;
#define EMIT(part, ...)                                                                       \
    do {                                                                                      \
        const int64_t shp_[] = {__VA_ARGS__};                                                 \
        if ((st = fn(ctx, n, part, (int)(sizeof shp_ / sizeof shp_[0]), shp_)) != MVL_OK) return st; \
    } while (0)
#define NAME(...) snprintf(n, sizeof n, __VA_ARGS__)
    const mvl_vision_config *v = &c->vision;
    const int64_t V = v->hidden_size, VI = v->intermediate_size, P = v->patch_size;
    const int64_t npos = (int64_t)(v->image_size / v->patch_size) * (v->image_size / v->patch_size) + 1;
    const char *vp = "vision_tower.vision_model.";
    NAME("%sembeddings.class_embedding", vp); EMIT(MVL_PART_VISION, V);
    NAME("%sembeddings.patch_embedding.weight", vp); EMIT(MVL_PART_VISION, V, v->num_channels, P, P);
    NAME("%sembeddings.position_embedding.weight", vp); EMIT(MVL_PART_VISION, npos, V);
    NAME("%spre_layrnorm.weight", vp); EMIT(MVL_PART_VISION, V);
    NAME("%spre_layrnorm.bias", vp); EMIT(MVL_PART_VISION, V);
    for (int l = 0; l < v->num_layers; l++) {
        static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
        for (int i = 0; i < 4; i++) {
            NAME("%sencoder.layers.%d.self_attn.%s.weight", vp, l, proj[i]); EMIT(MVL_PART_VISION, V, V);
            NAME("%sencoder.layers.%d.self_attn.%s.bias", vp, l, proj[i]); EMIT(MVL_PART_VISION, V);
        }
        for (int i = 1; i <= 2; i++) {
            NAME("%sencoder.layers.%d.layer_norm%d.weight", vp, l, i); EMIT(MVL_PART_VISION, V);
            NAME("%sencoder.layers.%d.layer_norm%d.bias", vp, l, i); EMIT(MVL_PART_VISION, V);
        }
        NAME("%sencoder.layers.%d.mlp.fc1.weight", vp, l); EMIT(MVL_PART_VISION, VI, V);
        NAME("%sencoder.layers.%d.mlp.fc1.bias", vp, l); EMIT(MVL_PART_VISION, VI);
        NAME("%sencoder.layers.%d.mlp.fc2.weight", vp, l); EMIT(MVL_PART_VISION, V, VI);
        NAME("%sencoder.layers.%d.mlp.fc2.bias", vp, l); EMIT(MVL_PART_VISION, V);
    }
    const mvl_text_config *t = &c->text;
    const int64_t H = t->hidden_size, D = t->head_dim, NH = t->num_heads, KV = t->num_kv_heads,
                  I = t->intermediate_size;
    NAME("multi_modal_projector.linear_1.weight"); EMIT(MVL_PART_PROJECTOR, H, V);
    NAME("multi_modal_projector.linear_1.bias"); EMIT(MVL_PART_PROJECTOR, H);
    NAME("multi_modal_projector.linear_2.weight"); EMIT(MVL_PART_PROJECTOR, H, H);
    NAME("multi_modal_projector.linear_2.bias"); EMIT(MVL_PART_PROJECTOR, H);
    NAME("image_newline"); EMIT(MVL_PART_NEWLINE, H);
    const char *tp = "language_model.model.";
    NAME("%sembed_tokens.weight", tp); EMIT(MVL_PART_EMBED, t->vocab_size, H);
    for (int l = 0; l < t->num_layers; l++) {
        NAME("%slayers.%d.input_layernorm.weight", tp, l); EMIT(MVL_PART_TEXT, H);
        NAME("%slayers.%d.post_attention_layernorm.weight", tp, l); EMIT(MVL_PART_TEXT, H);
        if (t->layer_types[l] == MVL_LAYER_SOFTMAX) {
            NAME("%slayers.%d.self_attn.q_proj.weight", tp, l); EMIT(MVL_PART_TEXT, NH * D, H);
            NAME("%slayers.%d.self_attn.k_proj.weight", tp, l); EMIT(MVL_PART_TEXT, KV * D, H);
            NAME("%slayers.%d.self_attn.v_proj.weight", tp, l); EMIT(MVL_PART_TEXT, KV * D, H);
            NAME("%slayers.%d.self_attn.o_proj.weight", tp, l); EMIT(MVL_PART_TEXT, H, NH * D);
        } else {
            NAME("%slayers.%d.self_attn.qkv_proj.weight", tp, l); EMIT(MVL_PART_TEXT, 3 * NH * D, H);
            NAME("%slayers.%d.self_attn.output_gate.weight", tp, l); EMIT(MVL_PART_TEXT, NH * D, H);
            NAME("%slayers.%d.self_attn.norm.weight", tp, l); EMIT(MVL_PART_TEXT, NH * D);
            NAME("%slayers.%d.self_attn.out_proj.weight", tp, l); EMIT(MVL_PART_TEXT, H, NH * D);
        }
        NAME("%slayers.%d.block_sparse_moe.gate.weight", tp, l); EMIT(MVL_PART_TEXT, t->num_experts, H);
        for (int e = 0; e < t->num_experts; e++) {
            NAME("%slayers.%d.block_sparse_moe.experts.%d.w1.weight", tp, l, e); EMIT(MVL_PART_EXPERT, I, H);
            NAME("%slayers.%d.block_sparse_moe.experts.%d.w3.weight", tp, l, e); EMIT(MVL_PART_EXPERT, I, H);
            NAME("%slayers.%d.block_sparse_moe.experts.%d.w2.weight", tp, l, e); EMIT(MVL_PART_EXPERT, H, I);
        }
    }
    NAME("%snorm.weight", tp); EMIT(MVL_PART_TEXT, H);
    if (!t->tie_word_embeddings) {
        NAME("language_model.lm_head.weight");
        EMIT(MVL_PART_LM_HEAD, t->vocab_size, H);
    }
#undef EMIT
#undef NAME
    return st;
}

/* ---- validation and the `info` summary -------------------------------------- */

typedef struct {
    const mvl_model_dir *md;
    mvl_error *err;
    unsigned char *seen;                /* [ntensors] matched by the manifest */
    uint64_t params[MVL_PART_COUNT];
    uint64_t bytes[MVL_PART_COUNT];
    uint64_t by_dtype[MVL_DTYPE_COUNT]; /* element counts */
} survey;

static mvl_status survey_one(void *ctx, const char *name, mvl_part part, int ndim, const int64_t *shape) {
    survey *s = ctx;
    mvl_tensor_view tv;
    mvl_status st = mvl_model_dir_tensor(s->md, name, MVL_DTYPE_COUNT, ndim, shape, &tv, s->err);
    if (st != MVL_OK) return st;
    if (tv.dtype == MVL_DTYPE_I8 || tv.dtype == MVL_DTYPE_F8_E4M3)
        return mvl_fail(s->err, MVL_ERR_UNSUPPORTED, "%s: tensor '%s' is %s; quantized weights are not supported yet",
                        tv.file, name, mvl_dtype_name(tv.dtype));
    s->seen[mvl_st_find(s->md->st, name) - s->md->st->tensors] = 1;
    uint64_t numel = tv.nbytes / mvl_dtype_size(tv.dtype);
    s->params[part] += numel;
    s->bytes[part] += tv.nbytes;
    s->by_dtype[tv.dtype] += numel;
    return MVL_OK;
}

/* Checks every tensor the config implies (name, shape, float dtype) and
 * that nothing else is stored, tallying parameters per part. */
static mvl_status run_survey(const mvl_model_dir *md, survey *s, mvl_error *err) {
    memset(s, 0, sizeof *s);
    s->md = md;
    s->err = err;
    s->seen = mvl_calloc(md->st->ntensors, 1, err);
    if (!s->seen) return MVL_ERR_NOMEM;
    mvl_status st = mvl_model_manifest(&md->cfg, survey_one, s);
    for (size_t i = 0; st == MVL_OK && i < md->st->ntensors; i++) {
        const mvl_st_tensor *t = &md->st->tensors[i];
        /* vision.md §1.2: post_layernorm is never applied; tolerate it if a
         * CLIP export carries it. */
        if (!s->seen[i] && strncmp(t->name, "vision_tower.vision_model.post_layernorm.", 41))
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: tensor '%s' is not part of MiniMax-VL-01 as config.json describes it",
                          md->st->files[t->file].path, t->name);
    }
    free(s->seen);
    s->seen = NULL;
    return st;
}

mvl_status mvl_model_dir_validate(const mvl_model_dir *md, mvl_error *err) {
    survey s;
    return run_survey(md, &s, err);
}

/* 456089655296 -> "456,089,655,296 (456.09B)" */
static void sb_count(mvl_strbuf *b, uint64_t n) {
    char digits[32], grouped[48];
    int len = snprintf(digits, sizeof digits, "%" PRIu64, n), o = 0;
    for (int i = 0; i < len; i++) {
        if (i && (len - i) % 3 == 0) grouped[o++] = ',';
        grouped[o++] = digits[i];
    }
    grouped[o] = '\0';
    double x = (double)n;
    if (x >= 1e9)
        mvl_strbuf_printf(b, "%s (%.2fB)", grouped, x / 1e9);
    else if (x >= 1e6)
        mvl_strbuf_printf(b, "%s (%.2fM)", grouped, x / 1e6);
    else
        mvl_strbuf_printf(b, "%s", grouped);
}

static void sb_bytes(mvl_strbuf *b, double x) {
    if (x >= 1e9)
        mvl_strbuf_printf(b, "%.1f GB", x / 1e9);
    else if (x >= 1e6)
        mvl_strbuf_printf(b, "%.1f MB", x / 1e6);
    else
        mvl_strbuf_printf(b, "%.1f kB", x / 1e3);
}

static int max_side(const mvl_preproc_config *pp) {
    int m = 0;
    for (int i = 0; i < pp->n_pinpoints; i++)
        for (int a = 0; a < 2; a++) m = pp->pinpoints[i][a] > m ? pp->pinpoints[i][a] : m;
    return m;
}

mvl_status mvl_model_dir_describe(const mvl_model_dir *md, char **out_text, mvl_error *err) {
    *out_text = NULL;
    survey s;
    mvl_status st = run_survey(md, &s, err);
    if (st != MVL_OK) return st;
    const mvl_model_config *c = &md->cfg;
    const mvl_text_config *t = &c->text;
    uint64_t text = s.params[MVL_PART_EMBED] + s.params[MVL_PART_TEXT] + s.params[MVL_PART_EXPERT] +
                    s.params[MVL_PART_LM_HEAD];
    /* decoder.md §1.2: "active" counts attention, norms, router and top-k of
     * the experts per token, without the embedding and the lm_head. */
    uint64_t active = s.params[MVL_PART_TEXT] + s.params[MVL_PART_EXPERT] / (uint64_t)t->num_experts *
                                                    (uint64_t)t->experts_per_tok;
    uint64_t vis_bytes = s.bytes[MVL_PART_VISION] + s.bytes[MVL_PART_PROJECTOR] + s.bytes[MVL_PART_NEWLINE];
    uint64_t text_bytes = s.bytes[MVL_PART_EMBED] + s.bytes[MVL_PART_TEXT] + s.bytes[MVL_PART_EXPERT] +
                          s.bytes[MVL_PART_LM_HEAD];
    int nsoft = 0;
    for (int l = 0; l < t->num_layers; l++) nsoft += t->layer_types[l] == MVL_LAYER_SOFTMAX;

    mvl_strbuf b = {0};
    mvl_strbuf_printf(&b, "model: %s (%s config layout, %d shard%s, %zu tensors)\n", md->path,
              c->native_layout ? "transformers-native" : "released remote-code", md->st->nfiles,
              md->st->nfiles == 1 ? "" : "s", md->st->ntensors);
    mvl_strbuf_printf(&b, "parameters:\n  vision:     ");
    sb_count(&b, s.params[MVL_PART_VISION]);
    mvl_strbuf_printf(&b, "\n  projector:  ");
    sb_count(&b, s.params[MVL_PART_PROJECTOR]);
    mvl_strbuf_printf(&b, "  (+ image_newline %" PRIu64 ")\n  text:       ", s.params[MVL_PART_NEWLINE]);
    sb_count(&b, text);
    mvl_strbuf_printf(&b, "\n    embedding %" PRIu64 ", lm_head %" PRIu64 ", experts %" PRIu64 "\n",
              s.params[MVL_PART_EMBED], s.params[MVL_PART_LM_HEAD], s.params[MVL_PART_EXPERT]);
    mvl_strbuf_printf(&b, "  total:      ");
    sb_count(&b, text + s.params[MVL_PART_VISION] + s.params[MVL_PART_PROJECTOR] + s.params[MVL_PART_NEWLINE]);
    mvl_strbuf_printf(&b, "\n  active per token (text, %d of %d experts, without embedding and lm_head): ", t->experts_per_tok,
              t->num_experts);
    sb_count(&b, active);
    mvl_strbuf_printf(&b, "\ndtypes:");
    for (int d = 0; d < MVL_DTYPE_COUNT; d++)
        if (s.by_dtype[d]) {
            mvl_strbuf_printf(&b, " %s ", mvl_dtype_name((mvl_dtype)d));
            sb_count(&b, s.by_dtype[d]);
        }
    mvl_strbuf_printf(&b, "\nvision: %d layers, hidden %d, %d heads, mlp %d, %dpx tiles of %dpx patches, feature layer %d\n",
              c->vision.num_layers, c->vision.hidden_size, c->vision.num_heads, c->vision.intermediate_size,
              c->vision.image_size, c->vision.patch_size, c->vision_feature_layer);
    const mvl_preproc_config *pp = &md->preproc;
    mvl_strbuf_printf(&b, "preprocessing: %d canvases from %s (sides up to %d px, at most %d tiles of %d px + "
                          "thumbnail); mean [%g, %g, %g], std [%g, %g, %g]\n",
                      pp->n_pinpoints, md->preproc_from_file ? "preprocessor_config.json" : "the released defaults",
                      max_side(pp), mvl_preproc_max_tiles(pp), pp->size, pp->mean[0], pp->mean[1], pp->mean[2], pp->std[0], pp->std[1],
                      pp->std[2]);
    mvl_strbuf_printf(&b, "text: %d layers, hidden %d, %d heads x %d (kv %d, rotary %d), %d experts top-%d of %d, vocab %d\n",
              t->num_layers, t->hidden_size, t->num_heads, t->head_dim, t->num_kv_heads, t->rotary_dim, t->num_experts,
              t->experts_per_tok, t->intermediate_size, t->vocab_size);
    mvl_strbuf_printf(&b, "layer types (L lightning, S softmax): %d lightning, %d softmax\n  ", t->num_layers - nsoft, nsoft);
    for (int l = 0; l < t->num_layers; l++) mvl_strbuf_printf(&b, "%c", t->layer_types[l] == MVL_LAYER_SOFTMAX ? 'S' : 'L');
    /* decoder.md §10: fp32 lightning state per sequence, bf16 KV per token. */
    double state = (double)(t->num_layers - nsoft) * t->num_heads * t->head_dim * t->head_dim * 4.0;
    double kv = (double)nsoft * 2.0 * t->num_kv_heads * t->head_dim * 2.0;
    mvl_strbuf_printf(&b, "\nmemory (weights as stored):\n  vision + projector: ");
    sb_bytes(&b, (double)vis_bytes);
    mvl_strbuf_printf(&b, "\n  text decoder:       ");
    sb_bytes(&b, (double)text_bytes);
    mvl_strbuf_printf(&b, "\n  per sequence: lightning state ");
    sb_bytes(&b, state);
    mvl_strbuf_printf(&b, " (fp32) + KV cache ");
    sb_bytes(&b, kv);
    mvl_strbuf_printf(&b, " per token (bf16)\n  per device (text split evenly, vision on device 0):\n");
    for (int n = 1; n <= 8; n *= 2) {
        mvl_strbuf_printf(&b, "    %d GPU%s: ", n, n == 1 ? " " : "s");
        sb_bytes(&b, (double)text_bytes / n + (double)vis_bytes);
        mvl_strbuf_printf(&b, " on device 0 before state and KV\n");
    }
    mvl_strbuf_printf(&b, "  cpu: weights are memory-mapped; ");
    sb_bytes(&b, (double)(vis_bytes + text_bytes));
    mvl_strbuf_printf(&b, " of page cache to run without re-reading the disk\n");
    if (b.oom) {
        free(b.p);
        return mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    }
    *out_text = b.p;
    return MVL_OK;
}
