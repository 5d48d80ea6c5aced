/* The public model and sequence API (include/mvl.h "model and generation"):
 * loading, images to embeddings, prefill with images merged at the image
 * token id (vision.md §4.4), and token-by-token generation on a kept state. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/generate.h"

struct mvl_model {
    mvl_model_dir *md;
    mvl_preproc_config pp;
    mvl_vit vit;
    mvl_projector proj;
    mvl_decoder dec;
    int32_t image_token_id;
};

struct mvl_seq {
    const mvl_model *m;
    mvl_dec_state st;
    float *last_logits; /* [vocab] */
    int has_logits;
    int32_t pending;    /* sampled but not yet run; -1 when none */
};

mvl_status mvl_model_load(const char *dir, const mvl_model_opts *opts, mvl_model **out, mvl_error *err) {
    *out = NULL;
    mvl_model *m = mvl_calloc(1, sizeof *m, err);
    if (!m) return MVL_ERR_NOMEM;
    if (opts && opts->compute != MVL_COMPUTE_F32 && opts->compute != MVL_COMPUTE_BF16) {
        free(m);
        return mvl_fail(err, MVL_ERR_ARG, "%s: unknown compute mode %d (MVL_COMPUTE_F32 or MVL_COMPUTE_BF16)", dir,
                        (int)opts->compute);
    }
    if (opts) mvl_ops_set_threads(opts->n_threads);
    mvl_status st = mvl_model_dir_open(dir, &m->md, err);
    if (st == MVL_OK) {
        mvl_preproc_config_default(&m->pp);
        char *pp = mvl_path_join(dir, "preprocessor_config.json");
        if (!pp) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
        else if (access(pp, F_OK) == 0) st = mvl_preproc_config_load(pp, &m->pp, err);
        free(pp);
    }
    if (st == MVL_OK) {
        const mvl_model_config *cfg = mvl_model_dir_config(m->md);
        m->image_token_id = cfg->image_token_index;
        if (m->pp.size != cfg->vision.image_size || m->pp.patch_size != cfg->vision.patch_size)
            st = mvl_fail(err, MVL_ERR_FORMAT, "%s: preprocessor tile %d px / patch %d px disagree with config.json (%d / %d)",
                          dir, m->pp.size, m->pp.patch_size, cfg->vision.image_size, cfg->vision.patch_size);
    }
    if (st == MVL_OK) st = mvl_vit_init(m->md, &m->vit, err);
    if (st == MVL_OK) st = mvl_projector_init(m->md, &m->proj, err);
    if (st == MVL_OK) st = mvl_decoder_init(m->md, &m->dec, err);
    if (st == MVL_OK) /* the one place the compute mode is read; the stages round through it */
        m->vit.bf16 = m->proj.bf16 = m->dec.bf16 = opts && opts->compute == MVL_COMPUTE_BF16;
    if (st != MVL_OK) {
        mvl_model_free(m);
        return st;
    }
    *out = m;
    return MVL_OK;
}

void mvl_model_free(mvl_model *m) {
    if (!m) return;
    mvl_vit_free(&m->vit);
    mvl_projector_free(&m->proj);
    mvl_decoder_free(&m->dec);
    mvl_model_dir_close(m->md);
    free(m);
}

const mvl_vit *mvl_model_vit(const mvl_model *m) { return &m->vit; }
const mvl_projector *mvl_model_projector(const mvl_model *m) { return &m->proj; }
const mvl_decoder *mvl_model_decoder(const mvl_model *m) { return &m->dec; }

int32_t mvl_model_vocab_size(const mvl_model *m) { return m->dec.cfg.vocab_size; }
int32_t mvl_model_hidden_size(const mvl_model *m) { return m->dec.cfg.hidden_size; }
int32_t mvl_model_image_token_id(const mvl_model *m) { return m->image_token_id; }
const mvl_preproc_config *mvl_model_preproc(const mvl_model *m) { return &m->pp; }

static mvl_status check_image(const mvl_model *m, const mvl_image_input *img, mvl_error *err) {
    if (!img->pixels || img->cols < 1 || img->rows < 1 || img->cols * img->rows > 64 || img->width < 1 || img->height < 1)
        return mvl_fail(err, MVL_ERR_ARG, "image input: need pixels, a tile grid of 1..64 tiles and a positive size (got %dx%d tiles, %dx%d px)",
                        img->cols, img->rows, img->width, img->height);
    (void)m;
    return MVL_OK;
}

int64_t mvl_model_image_tokens(const mvl_model *m, const mvl_image_input *img) {
    mvl_pack_geom g;
    mvl_pack_geometry(img->width, img->height, img->cols, img->rows, m->vit.grid, &g);
    return mvl_pack_count(&g, m->vit.grid);
}

mvl_status mvl_model_embed_image(const mvl_model *m, const mvl_image_input *img, float **out, int64_t *n_tokens,
                                 mvl_error *err) {
    *out = NULL;
    *n_tokens = 0;
    mvl_status st = check_image(m, img, err);
    if (st != MVL_OK) return st;
    int n = 1 + img->cols * img->rows, grid = m->vit.grid;
    int64_t per = (int64_t)grid * grid, V = m->vit.cfg.hidden_size, H = m->proj.out_dim;
    mvl_pack_geom g;
    mvl_pack_geometry(img->width, img->height, img->cols, img->rows, grid, &g);
    int64_t count = mvl_pack_count(&g, grid);
    float *feats = mvl_malloc((size_t)(n * per * V) * sizeof(float), err);
    float *proj = feats ? mvl_malloc((size_t)(n * per * H) * sizeof(float), err) : NULL;
    float *packed = proj ? mvl_malloc((size_t)(count * H) * sizeof(float), err) : NULL;
    st = packed ? MVL_OK : MVL_ERR_NOMEM;
    if (st == MVL_OK) st = mvl_vit_forward(&m->vit, img->pixels, n, feats, err);
    if (st == MVL_OK) st = mvl_projector_forward(&m->proj, feats, n * per, proj, err); /* before packing (§2) */
    if (st == MVL_OK) mvl_pack_image(proj, H, grid, img->cols, img->rows, &g, m->proj.newline.data, packed);
    free(feats);
    free(proj);
    if (st != MVL_OK) {
        free(packed);
        return st;
    }
    *out = packed;
    *n_tokens = count;
    return MVL_OK;
}

mvl_status mvl_seq_init(const mvl_model *m, mvl_seq **out, mvl_error *err) {
    *out = NULL;
    mvl_seq *s = mvl_calloc(1, sizeof *s, err);
    if (!s) return MVL_ERR_NOMEM;
    s->m = m;
    s->pending = -1;
    s->last_logits = mvl_malloc((size_t)m->dec.cfg.vocab_size * sizeof(float), err);
    mvl_status st = s->last_logits ? mvl_dec_state_init(&m->dec, &s->st, err) : MVL_ERR_NOMEM;
    if (st != MVL_OK) {
        mvl_seq_free(s);
        return st;
    }
    *out = s;
    return MVL_OK;
}

void mvl_seq_free(mvl_seq *s) {
    if (!s) return;
    mvl_dec_state_free(&s->st);
    free(s->last_logits);
    free(s);
}

int64_t mvl_seq_length(const mvl_seq *s) { return s->st.len; }

void mvl_seq_reset(mvl_seq *s) {
    mvl_dec_state_reset(&s->m->dec, &s->st);
    s->has_logits = 0;
    s->pending = -1;
}

const float *mvl_seq_last_logits(const mvl_seq *s) { return s->has_logits ? s->last_logits : NULL; }

mvl_status mvl_seq_append(mvl_seq *s, const int32_t *ids, size_t n, const mvl_image_input *images, size_t n_images,
                          float *logits, mvl_error *err) {
    const mvl_model *m = s->m;
    int64_t H = m->dec.cfg.hidden_size, V = m->dec.cfg.vocab_size;
    size_t lead = s->pending >= 0 ? 1 : 0, total = n + lead;
    if (total == 0) return MVL_OK;
    int64_t want = 0, have = 0;
    for (size_t i = 0; i < n; i++) have += ids[i] == m->image_token_id;
    for (size_t k = 0; k < n_images; k++) {
        mvl_status st = check_image(m, &images[k], err);
        if (st != MVL_OK) return st;
        want += mvl_model_image_tokens(m, &images[k]);
    }
    if (have != want)
        return mvl_fail(err, MVL_ERR_ARG, "the prompt holds %lld image tokens (id %d) but the %zu image(s) need %lld",
                        (long long)have, m->image_token_id, n_images, (long long)want);
    float *x = mvl_malloc(total * (size_t)H * sizeof(float), err);
    int32_t *all = x ? mvl_malloc(total * sizeof(int32_t), err) : NULL;
    float *lg = NULL;
    mvl_status st = all ? MVL_OK : MVL_ERR_NOMEM;
    if (st == MVL_OK) {
        if (lead) all[0] = s->pending;
        memcpy(all + lead, ids, n * sizeof(int32_t));
        st = mvl_decoder_embed(&m->dec, all, (int64_t)total, x, err);
    }
    /* image embeddings replace the image-token rows in order (masked_scatter, §4.4) */
    int64_t row = (int64_t)lead;
    for (size_t k = 0; k < n_images && st == MVL_OK; k++) {
        float *emb;
        int64_t cnt;
        st = mvl_model_embed_image(m, &images[k], &emb, &cnt, err);
        for (int64_t j = 0; j < cnt && st == MVL_OK; j++) {
            while (all[row] != m->image_token_id) row++;
            memcpy(x + row * H, emb + j * H, (size_t)H * sizeof(float));
            row++;
        }
        free(emb);
    }
    if (st == MVL_OK && logits && lead) {
        lg = mvl_malloc(total * (size_t)V * sizeof(float), err);
        if (!lg) st = MVL_ERR_NOMEM;
    }
    if (st == MVL_OK) {
        st = mvl_decoder_forward(&m->dec, &s->st, x, (int64_t)total, lead ? lg : logits, s->last_logits, NULL, err);
        if (st != MVL_OK) mvl_seq_reset(s); /* failed part-way: the state is no longer consistent */
    }
    if (st == MVL_OK) {
        if (lg) memcpy(logits, lg + V, n * (size_t)V * sizeof(float));
        s->has_logits = 1;
        s->pending = -1;
    }
    free(lg);
    free(all);
    free(x);
    return st;
}

mvl_status mvl_seq_generate(mvl_seq *s, const mvl_generate_opts *o, int32_t *out_ids, size_t *n_out,
                            mvl_stop_reason *reason, mvl_error *err) {
    *n_out = 0;
    *reason = MVL_STOP_LENGTH;
    if (s->pending >= 0) { /* a previous generate left one id to run */
        mvl_status st = mvl_seq_append(s, NULL, 0, NULL, 0, NULL, err);
        if (st != MVL_OK) return st;
    }
    if (!s->has_logits) return mvl_fail(err, MVL_ERR_ARG, "generate: the sequence is empty; append a prompt first");
    if (o->max_tokens == 0) return MVL_OK;
    mvl_sampler *smp;
    mvl_status st = mvl_sampler_init(&o->sample, &smp, err);
    if (st != MVL_OK) return st;
    int64_t H = s->m->dec.cfg.hidden_size;
    float *x = mvl_malloc((size_t)H * sizeof(float), err);
    if (!x) st = MVL_ERR_NOMEM;
    while (st == MVL_OK) {
        int32_t id = mvl_sampler_sample(smp, s->last_logits, (size_t)s->m->dec.cfg.vocab_size);
        out_ids[(*n_out)++] = id;
        int stop = 0;
        for (size_t i = 0; i < o->n_stop; i++) stop |= o->stop_ids[i] == id;
        if (stop) *reason = MVL_STOP_ID;
        else if (o->on_token && o->on_token(o->ctx, id)) {
            *reason = MVL_STOP_CALLBACK;
            stop = 1;
        } else if (*n_out == o->max_tokens) {
            *reason = MVL_STOP_LENGTH;
            stop = 1;
        }
        if (stop) {
            s->pending = id; /* run by the next append, so a follow-up turn sees it */
            break;
        }
        /* decode step: one position on the kept state */
        st = mvl_decoder_embed(&s->m->dec, &id, 1, x, err);
        if (st == MVL_OK) st = mvl_decoder_forward(&s->m->dec, &s->st, x, 1, NULL, s->last_logits, NULL, err);
        if (st != MVL_OK) mvl_seq_reset(s);
    }
    free(x);
    mvl_sampler_free(smp);
    return st;
}
