/* The public model and sequence API (include/mvl.h "model and generation"):
 * loading, images to embeddings, prefill with images merged at the image
 * token id (vision.md §4.4), and token-by-token generation on a kept state. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cuda_decoder.h"
#include "kernels/cuda_vit.h"
#include "text/generate.h"

/* MVL_DEVICE_CUDA (include/mvl.h): sequences per model, positions per
 * sequence (the KV caches of all slots are sized up front, so the released
 * model's 10M positions would not fit), rows per forward step. */
enum { GPU_SLOTS = 8, GPU_MAX_CTX = 32768, GPU_STEP_ROWS = 2048 };
/* Tiles one image may have (check_image), and images per GPU ViT batch
 * (a bound on gpu_encode's host array; every image has 2 tiles or more). */
enum { MAX_IMAGE_TILES = 64, GPU_BATCH_IMAGES = 32 };

struct mvl_model {
    mvl_model_dir *md;
    mvl_preproc_config pp;
    mvl_vit vit;              /* on cuda only cfg and grid are set, and */
    mvl_projector proj;       /* nothing of the projector: the GPU holds them */
    mvl_decoder dec;          /* on cuda only its cfg is set: the weights live on the GPU */
    mvl_cuda_dec *gpu;        /* the decoder on GPU 0 (MVL_DEVICE_CUDA), else NULL */
    mvl_cuda_dec_opts gpu_opts;
    mvl_cuda_vit *gpu_vit;    /* the vision path on GPU 0 (MVL_DEVICE_CUDA), else NULL */
    int gpu_tiles;            /* tiles per GPU ViT batch: the largest canvas plus its thumbnail */
    bool *slot_used;          /* [GPU_SLOTS] on cuda: slots held by a mvl_seq */
    int32_t image_token_id;
};

struct mvl_seq {
    const mvl_model *m;
    mvl_dec_state st;   /* the CPU decoder's state (empty on cuda) */
    int slot;           /* the GPU slot on cuda, else -1 */
    float *last_logits; /* [vocab] */
    int has_logits;
    int32_t pending;    /* sampled but not yet run; -1 when none */
};

/* The vision path and the decoder on GPU 0: the CPU stages keep only the
 * configs (the sizes the API and the sequences read). The ViT batch holds
 * the largest canvas any image can get (vision.md §3.2) and its thumbnail;
 * mean/std are the preprocessing's (§3.5). */
static mvl_status gpu_init(mvl_model *m, mvl_error *err) {
    const mvl_model_config *cfg = mvl_model_dir_config(m->md);
    m->dec.cfg = cfg->text;
    m->vit.cfg = cfg->vision;
    m->vit.grid = cfg->vision.image_size / cfg->vision.patch_size;
    int most = mvl_preproc_max_tiles(&m->pp);
    most = most > 1 ? most : 1;
    m->gpu_tiles = 1 + (most < MAX_IMAGE_TILES ? most : MAX_IMAGE_TILES);
    int64_t ctx = m->dec.cfg.max_position_embeddings;
    m->gpu_opts = (mvl_cuda_dec_opts){.max_slots = GPU_SLOTS, .max_ctx = (int)(ctx < GPU_MAX_CTX ? ctx : GPU_MAX_CTX),
                                      .max_tokens = GPU_STEP_ROWS};
    m->slot_used = mvl_calloc(GPU_SLOTS, sizeof *m->slot_used, err);
    mvl_status st = m->slot_used ? mvl_cuda_dec_init(m->md, &m->gpu_opts, &m->gpu, err) : MVL_ERR_NOMEM;
    if (st == MVL_OK) st = mvl_cuda_vit_init(m->md, m->gpu_tiles, m->pp.mean, m->pp.std, &m->gpu_vit, err);
    return st;
}

mvl_status mvl_model_load(const char *dir, const mvl_model_opts *opts, mvl_model **out, mvl_error *err) {
    *out = NULL;
    mvl_model_opts o = opts ? *opts : (mvl_model_opts){0};
    if (o.compute != MVL_COMPUTE_F32 && o.compute != MVL_COMPUTE_BF16)
        return mvl_fail(err, MVL_ERR_ARG, "%s: unknown compute mode %d (MVL_COMPUTE_F32 or MVL_COMPUTE_BF16)", dir,
                        (int)o.compute);
    if (o.device != MVL_DEVICE_CPU && o.device != MVL_DEVICE_CUDA)
        return mvl_fail(err, MVL_ERR_ARG, "%s: unknown device %d (MVL_DEVICE_CPU or MVL_DEVICE_CUDA)", dir,
                        (int)o.device);
    if (o.device == MVL_DEVICE_CUDA && o.compute != MVL_COMPUTE_F32)
        return mvl_fail(err, MVL_ERR_ARG,
                        "%s: the CUDA decoder always computes in bf16; the compute mode applies to the CPU only",
                        dir);
    mvl_model *m = mvl_calloc(1, sizeof *m, err);
    if (!m) return MVL_ERR_NOMEM;
    if (opts) mvl_ops_set_threads(o.n_threads);
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
    if (st == MVL_OK && o.device == MVL_DEVICE_CUDA) {
        st = gpu_init(m, err);
    } else if (st == MVL_OK) {
        st = mvl_vit_init(m->md, &m->vit, err);
        if (st == MVL_OK) st = mvl_projector_init(m->md, &m->proj, err);
        if (st == MVL_OK) st = mvl_decoder_init(m->md, &m->dec, err);
    }
    if (st == MVL_OK) /* the one place the compute mode is read; the stages round through it */
        m->vit.bf16 = m->proj.bf16 = m->dec.bf16 = o.compute == MVL_COMPUTE_BF16;
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
    mvl_cuda_dec_free(m->gpu);
    mvl_cuda_vit_free(m->gpu_vit);
    free(m->slot_used);
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
    if ((!img->pixels && !img->tiles) || img->cols < 1 || img->rows < 1 || img->cols * img->rows > MAX_IMAGE_TILES ||
        img->width < 1 || img->height < 1)
        return mvl_fail(err, MVL_ERR_ARG,
                        "image input: need pixels or tiles, a tile grid of 1..%d tiles and a positive size (got %dx%d "
                        "tiles, %dx%d px)",
                        MAX_IMAGE_TILES, img->cols, img->rows, img->width, img->height);
    if (m->gpu_vit && !img->tiles)
        return mvl_fail(err, MVL_ERR_ARG,
                        "image input: the CUDA vision path takes the uint8 tiles (mvl_image_input.tiles)");
    if (m->gpu_vit && 1 + img->cols * img->rows > m->gpu_tiles)
        return mvl_fail(err, MVL_ERR_LIMIT,
                        "image input: %dx%d tiles and the thumbnail exceed the %d tiles of the largest canvas the "
                        "preprocessing allows, the most the CUDA vision path takes per image",
                        img->cols, img->rows, m->gpu_tiles);
    return MVL_OK;
}

int64_t mvl_model_image_tokens(const mvl_model *m, const mvl_image_input *img) {
    mvl_pack_geom g;
    mvl_pack_geometry(img->width, img->height, img->cols, img->rows, m->vit.grid, &g);
    return mvl_pack_count(&g, m->vit.grid);
}

/* Runs images[*next ..) through the GPU vision path, as many as one batch of
 * m->gpu_tiles tiles holds (at least one; check_image bounds each), and
 * advances *next past them. Their packed embeddings [*n_rows, hidden] bf16
 * stay on the device (mvl_cuda_vit_packed), images in order (§4.1 step 8). */
static mvl_status gpu_encode(const mvl_model *m, const mvl_image_input *images, size_t n_images, size_t *next,
                             int64_t *n_rows, mvl_error *err) {
    mvl_cuda_image ims[GPU_BATCH_IMAGES];
    size_t first = *next, k = first;
    int tiles = 0, n = 0;
    for (; k < n_images && n < GPU_BATCH_IMAGES; k++, n++) {
        const mvl_image_input *im = &images[k];
        if (n > 0 && tiles + 1 + im->cols * im->rows > m->gpu_tiles) break;
        tiles += 1 + im->cols * im->rows;
        ims[n] = (mvl_cuda_image){im->width, im->height, im->cols, im->rows};
    }
    if (n == 0) return mvl_fail(err, MVL_ERR_ARG, "image rows without an image left to fill them (internal)");
    const uint8_t *src = images[first].tiles;
    uint8_t *joined = NULL; /* the batch's tiles side by side, when it holds several images */
    if (n > 1) {
        size_t tile = (size_t)m->pp.size * (size_t)m->pp.size * 3, off = 0;
        if (!(joined = mvl_malloc((size_t)tiles * tile, err))) return MVL_ERR_NOMEM;
        for (size_t j = first; j < k; j++) {
            size_t bytes = (size_t)(1 + images[j].cols * images[j].rows) * tile;
            memcpy(joined + off, images[j].tiles, bytes);
            off += bytes;
        }
        src = joined;
    }
    mvl_status st = mvl_cuda_vit_encode(m->gpu_vit, src, n, ims, n_rows, err);
    free(joined);
    if (st == MVL_OK) *next = k;
    return st;
}

mvl_status mvl_model_embed_image(const mvl_model *m, const mvl_image_input *img, float **out, int64_t *n_tokens,
                                 mvl_error *err) {
    *out = NULL;
    *n_tokens = 0;
    mvl_status st = check_image(m, img, err);
    if (st != MVL_OK) return st;
    int n = 1 + img->cols * img->rows, grid = m->vit.grid;
    int64_t per = (int64_t)grid * grid, V = m->vit.cfg.hidden_size, H = m->dec.cfg.hidden_size;
    mvl_pack_geom g;
    mvl_pack_geometry(img->width, img->height, img->cols, img->rows, grid, &g);
    int64_t count = mvl_pack_count(&g, grid);
    float *packed = mvl_malloc((size_t)(count * H) * sizeof(float), err);
    if (!packed) return MVL_ERR_NOMEM;
    if (m->gpu_vit) {
        size_t next = 0;
        int64_t rows = 0;
        st = gpu_encode(m, img, 1, &next, &rows, err);
        if (st == MVL_OK) st = mvl_cuda_vit_packed_download(m->gpu_vit, rows, packed, err);
    } else {
        /* pixels: the caller's, or normalised here from the tiles (§3.5) */
        size_t px_count = (size_t)n * 3 * (size_t)m->pp.size * (size_t)m->pp.size;
        float *own = img->pixels ? NULL : mvl_malloc(px_count * sizeof(float), err);
        float *feats = img->pixels || own ? mvl_malloc((size_t)(n * per * V) * sizeof(float), err) : NULL;
        float *proj = feats ? mvl_malloc((size_t)(n * per * H) * sizeof(float), err) : NULL;
        st = proj ? MVL_OK : MVL_ERR_NOMEM;
        if (st == MVL_OK && own) mvl_preproc_normalize(&m->pp, img->tiles, n, own);
        if (st == MVL_OK) st = mvl_vit_forward(&m->vit, own ? own : img->pixels, n, feats, err);
        if (st == MVL_OK) st = mvl_projector_forward(&m->proj, feats, n * per, proj, err); /* before packing (§2) */
        if (st == MVL_OK) mvl_pack_image(proj, H, grid, img->cols, img->rows, &g, m->proj.newline.data, packed);
        free(own);
        free(feats);
        free(proj);
    }
    if (st != MVL_OK) {
        free(packed);
        return st;
    }
    *out = packed;
    *n_tokens = count;
    return MVL_OK;
}

/* A free GPU slot for s, emptied (a freed sequence leaves its state behind). */
static mvl_status slot_take(mvl_seq *s, mvl_error *err) {
    const mvl_model *m = s->m;
    for (int i = 0; i < m->gpu_opts.max_slots; i++)
        if (!m->slot_used[i]) {
            mvl_status st = mvl_cuda_dec_reset(m->gpu, i, err);
            if (st == MVL_OK) {
                m->slot_used[i] = true;
                s->slot = i;
            }
            return st;
        }
    return mvl_fail(err, MVL_ERR_LIMIT, "all %d sequences the CUDA decoder holds per model are in use; free one first",
                    m->gpu_opts.max_slots);
}

mvl_status mvl_seq_init(const mvl_model *m, mvl_seq **out, mvl_error *err) {
    *out = NULL;
    mvl_seq *s = mvl_calloc(1, sizeof *s, err);
    if (!s) return MVL_ERR_NOMEM;
    s->m = m;
    s->slot = -1;
    s->pending = -1;
    s->last_logits = mvl_malloc((size_t)m->dec.cfg.vocab_size * sizeof(float), err);
    mvl_status st = !s->last_logits ? MVL_ERR_NOMEM
                    : m->gpu        ? slot_take(s, err)
                                    : mvl_dec_state_init(&m->dec, &s->st, err);
    if (st != MVL_OK) {
        mvl_seq_free(s);
        return st;
    }
    *out = s;
    return MVL_OK;
}

void mvl_seq_free(mvl_seq *s) {
    if (!s) return;
    if (s->slot >= 0) s->m->slot_used[s->slot] = false;
    mvl_dec_state_free(&s->st);
    free(s->last_logits);
    free(s);
}

int64_t mvl_seq_length(const mvl_seq *s) { return s->slot >= 0 ? mvl_cuda_dec_length(s->m->gpu, s->slot) : s->st.len; }

void mvl_seq_reset(mvl_seq *s) {
    mvl_error ignored; /* a device error here comes back from the next step */
    if (s->slot >= 0) (void)mvl_cuda_dec_reset(s->m->gpu, s->slot, &ignored);
    else mvl_dec_state_reset(&s->m->dec, &s->st);
    s->has_logits = 0;
    s->pending = -1;
}

const float *mvl_seq_last_logits(const mvl_seq *s) { return s->has_logits ? s->last_logits : NULL; }

/* The CPU side of run_rows: image embeddings on the host, merged into the
 * rows of ids. */
static mvl_status cpu_rows(mvl_seq *s, const int32_t *ids, int64_t n, const mvl_image_input *images,
                           size_t n_images, float *logits, mvl_error *err) {
    const mvl_model *m = s->m;
    int64_t H = m->dec.cfg.hidden_size;
    float *x = mvl_malloc((size_t)(n * H) * sizeof(float), err);
    if (!x) return MVL_ERR_NOMEM;
    mvl_status st = MVL_OK;
    int64_t row = 0;
    for (size_t k = 0; k < n_images && st == MVL_OK; k++) {
        float *emb;
        int64_t cnt;
        st = mvl_model_embed_image(m, &images[k], &emb, &cnt, err);
        for (int64_t j = 0; j < cnt && st == MVL_OK; j++) {
            while (ids[row] >= 0) row++;
            memcpy(x + row++ * H, emb + j * H, (size_t)H * sizeof(float));
        }
        free(emb);
    }
    for (int64_t r = 0, e; r < n && st == MVL_OK; r = e + 1) { /* each run of ids, up to an image row */
        for (e = r; e < n && ids[e] >= 0; e++) {}
        if (e > r) st = mvl_decoder_embed(&m->dec, ids + r, e - r, x + r * H, err);
    }
    if (st == MVL_OK) {
        st = mvl_decoder_forward(&m->dec, &s->st, x, n, logits, s->last_logits, NULL, err);
        if (st != MVL_OK) mvl_seq_reset(s);
    }
    free(x);
    return st;
}

/* The GPU side of run_rows: the images go through the GPU vision path in
 * batches (gpu_encode) and each forward step takes its image rows from the
 * packed embeddings on the device. A step ends where the rows of the batch
 * encoded last do, and the next batch is encoded once the decoder has read
 * them. */
static mvl_status gpu_rows(mvl_seq *s, const int32_t *ids, int64_t n, const mvl_image_input *images,
                           size_t n_images, float *logits, mvl_error *err) {
    const mvl_model *m = s->m;
    int64_t H = m->dec.cfg.hidden_size, V = m->dec.cfg.vocab_size;
    int64_t len = mvl_cuda_dec_length(m->gpu, s->slot);
    if (len + n > m->gpu_opts.max_ctx)
        return mvl_fail(err, MVL_ERR_LIMIT, "%lld positions after %lld exceed the %d a CUDA decoder sequence holds",
                        (long long)n, (long long)len, m->gpu_opts.max_ctx);
    mvl_status st = MVL_OK;
    if (n == 1 && ids[0] >= 0 && !logits) { /* a decode step: the captured graph */
        st = mvl_cuda_dec_decode(m->gpu, 1, &s->slot, ids, s->last_logits, err);
        if (st != MVL_OK) mvl_seq_reset(s);
        return st;
    }
    int dim; /* the text hidden size H (mvl_cuda_vit_init) */
    const uint16_t *packed = mvl_cuda_vit_packed(m->gpu_vit, &dim); /* [avail, H] bf16 on the device */
    size_t next = 0;               /* the first image not encoded yet */
    int64_t avail = 0, used = 0;   /* rows of the last batch: encoded, taken by the steps so far */
    bool ran = false;
    for (int64_t r = 0; r < n && st == MVL_OK;) {
        int rows = (int)(n - r < m->gpu_opts.max_tokens ? n - r : m->gpu_opts.max_tokens), take = 0;
        for (int i = 0; i < rows && st == MVL_OK; i++) {
            if (ids[r + i] >= 0) continue;
            if (used + take == avail) {
                if (take) { /* the step ends with the batch; the next one starts here */
                    rows = i;
                    break;
                }
                if (ran) st = mvl_cuda_dec_sync(m->gpu, err); /* the steps before have read the batch */
                if (st == MVL_OK) st = gpu_encode(m, images, n_images, &next, &avail, err);
                used = 0;
            }
            take++;
        }
        if (st != MVL_OK) break;
        mvl_cuda_dec_step step = {.n_seq = 1, .slot = &s->slot, .n_new = &rows, .ids = ids + r,
                                  .image_rows = take ? packed + used * H : NULL, .n_image_rows = take,
                                  .last_logits = r + rows == n ? s->last_logits : NULL,
                                  .logits = logits ? logits + r * V : NULL};
        ran = true;
        st = mvl_cuda_dec_forward(m->gpu, &step, err);
        used += take;
        r += rows;
    }
    if (st != MVL_OK && ran) mvl_seq_reset(s);
    return st;
}

/* Runs n rows on the sequence's decoder, the one place the devices differ.
 * Row i is token ids[i] (in the vocabulary), or where ids[i] < 0 the next
 * row of the packed embeddings of images[0..n_images) (masked_scatter,
 * vision.md §4.4; the counts match). logits: NULL or [n, vocab]; the last
 * row's go to s->last_logits. A failure once something ran resets the
 * sequence. */
static mvl_status run_rows(mvl_seq *s, const int32_t *ids, int64_t n, const mvl_image_input *images,
                           size_t n_images, float *logits, mvl_error *err) {
    return s->m->gpu ? gpu_rows(s, ids, n, images, n_images, logits, err)
                     : cpu_rows(s, ids, n, images, n_images, logits, err);
}

mvl_status mvl_seq_append(mvl_seq *s, const int32_t *ids, size_t n, const mvl_image_input *images, size_t n_images,
                          float *logits, mvl_error *err) {
    const mvl_model *m = s->m;
    int64_t V = m->dec.cfg.vocab_size;
    size_t lead = s->pending >= 0 ? 1 : 0, total = n + lead;
    if (total == 0) return MVL_OK;
    int64_t want = 0, have = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= V)
            return mvl_fail(err, MVL_ERR_ARG, "token id %d at position %zu is outside the vocabulary (0..%lld)", ids[i],
                            i, (long long)V - 1);
        have += ids[i] == m->image_token_id;
    }
    for (size_t k = 0; k < n_images; k++) {
        mvl_status st = check_image(m, &images[k], err);
        if (st != MVL_OK) return st;
        want += mvl_model_image_tokens(m, &images[k]);
    }
    if (have != want)
        return mvl_fail(err, MVL_ERR_ARG, "the prompt holds %lld image tokens (id %d) but the %zu image(s) need %lld",
                        (long long)have, m->image_token_id, n_images, (long long)want);
    int32_t *all = mvl_malloc(total * sizeof(int32_t), err);
    float *lg = NULL;
    mvl_status st = all ? MVL_OK : MVL_ERR_NOMEM;
    if (st == MVL_OK) { /* -1 marks the image rows (the pending id goes first, never one) */
        if (lead) all[0] = s->pending;
        for (size_t i = 0; i < n; i++) all[lead + i] = ids[i] == m->image_token_id ? -1 : ids[i];
    }
    if (st == MVL_OK && logits && lead) {
        lg = mvl_malloc(total * (size_t)V * sizeof(float), err);
        if (!lg) st = MVL_ERR_NOMEM;
    }
    if (st == MVL_OK) st = run_rows(s, all, (int64_t)total, images, n_images, lead ? lg : logits, err);
    if (st == MVL_OK) {
        if (lg) memcpy(logits, lg + V, n * (size_t)V * sizeof(float));
        s->has_logits = 1;
        s->pending = -1;
    }
    free(lg);
    free(all);
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
        /* decode step: one position on the kept state; pending until it ran (a context
         * limit leaves it for the next append, a failure resets the sequence) */
        s->pending = id;
        st = run_rows(s, &id, 1, NULL, 0, NULL, err);
        if (st == MVL_OK) s->pending = -1;
    }
    mvl_sampler_free(smp);
    return st;
}
