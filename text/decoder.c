/* MiniMax-Text-01 decoder forward (decoder.md §3-7). Computes in float32 on
 * weights stored as F32/BF16/F16 (kernels/cpu_gemm.c widens them), or, with
 * dec->bf16, rounds to bf16 where transformers does running the model in bf16
 * (the lightning layers with the remote code's dtypes, §4.4). Where the
 * spec lists implementations that differ, this follows the HF remote code:
 * slopes with 1 - l/(L-1) + 1e-5 (§4.2, §8.4), lightning output-norm eps 1e-6
 * (§4.6), the exact-recurrence block prefill (§4.4, not vLLM's, §8.1), an
 * fp32 lightning state (§8.2), partial NeoX RoPE on rotary_dim dims (§5). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/decoder.h"

#define LIGHTNING_NORM_EPS 1e-6f /* HF remote code builds this RMSNorm with its default eps (§1.1) */

/* ALiBi start for n heads (n a power of two): 2^(-2^(-(log2 n - 3))) = 2^(-8/n). */
static double alibi_start(int n) { return pow(2.0, -pow(2.0, -(log2((double)n) - 3.0))); }

void mvl_lightning_slopes(int heads, int layer, int n_layers, float *slopes) {
    int cp = 1;
    while (cp * 2 <= heads) cp *= 2;
    double factor = 1.0 - (n_layers > 1 ? (double)layer / (double)(n_layers - 1) : 0.0) + 1e-5;
    for (int h = 0; h < heads; h++) {
        /* the first cp heads: start^(h+1); the rest (ALiBi rule for other head counts): every
         * other slope of 2*cp heads, i.e. start(2cp)^(2(h-cp)+1) */
        double base = h < cp ? pow(alibi_start(cp), h + 1) : pow(alibi_start(2 * cp), 2 * (h - cp) + 1);
        slopes[h] = (float)((float)base * factor); /* fp32 as the reference */
    }
}

static mvl_status load(const mvl_model_dir *md, const char *fmt, int a, int b, int ndim, int64_t d0, int64_t d1,
                       mvl_weight *w, mvl_error *err) {
    char name[256];
    snprintf(name, sizeof name, fmt, a, b);
    int64_t shape[2] = {d0, d1};
    return mvl_weight_load(md, name, ndim, shape, w, err);
}

#define TP "language_model.model."
#define LP TP "layers.%d."

mvl_status mvl_decoder_init(const mvl_model_dir *md, mvl_decoder *dec, mvl_error *err) {
    memset(dec, 0, sizeof *dec);
    const mvl_text_config *c = &mvl_model_dir_config(md)->text;
    dec->cfg = *c;
    int64_t H = c->hidden_size, V = c->vocab_size, A = (int64_t)c->num_heads * c->head_dim;
    int64_t KV = (int64_t)c->num_kv_heads * c->head_dim, E = c->num_experts, I = c->intermediate_size;
    mvl_status st;
    if ((st = load(md, TP "embed_tokens.weight", 0, 0, 2, V, H, &dec->embed, err)) ||
        (st = load(md, TP "norm.weight", 0, 0, 1, H, 0, &dec->final_norm, err)) ||
        (st = load(md, "language_model.lm_head.weight", 0, 0, 2, V, H, &dec->lm_head, err)))
        goto fail;
    dec->layers = mvl_calloc((size_t)c->num_layers, sizeof *dec->layers, err);
    if (!dec->layers) {
        st = MVL_ERR_NOMEM;
        goto fail;
    }
    for (int l = 0; l < c->num_layers; l++) {
        mvl_dec_layer *L = &dec->layers[l];
        L->type = (mvl_layer_type)c->layer_types[l];
        if ((st = load(md, LP "input_layernorm.weight", l, 0, 1, H, 0, &L->in_norm, err)) ||
            (st = load(md, LP "post_attention_layernorm.weight", l, 0, 1, H, 0, &L->post_norm, err)) ||
            (st = load(md, LP "block_sparse_moe.gate.weight", l, 0, 2, E, H, &L->router, err)))
            goto fail;
        if (L->type == MVL_LAYER_LIGHTNING) {
            if ((st = load(md, LP "self_attn.qkv_proj.weight", l, 0, 2, 3 * A, H, &L->qkv, err)) ||
                (st = load(md, LP "self_attn.output_gate.weight", l, 0, 2, A, H, &L->gate, err)) ||
                (st = load(md, LP "self_attn.norm.weight", l, 0, 1, A, 0, &L->norm, err)) ||
                (st = load(md, LP "self_attn.out_proj.weight", l, 0, 2, H, A, &L->out, err)))
                goto fail;
            L->slopes = mvl_malloc((size_t)c->num_heads * sizeof(float), err);
            if (!L->slopes) {
                st = MVL_ERR_NOMEM;
                goto fail;
            }
            mvl_lightning_slopes(c->num_heads, l, c->num_layers, L->slopes);
        } else {
            if ((st = load(md, LP "self_attn.q_proj.weight", l, 0, 2, A, H, &L->q, err)) ||
                (st = load(md, LP "self_attn.k_proj.weight", l, 0, 2, KV, H, &L->k, err)) ||
                (st = load(md, LP "self_attn.v_proj.weight", l, 0, 2, KV, H, &L->v, err)) ||
                (st = load(md, LP "self_attn.o_proj.weight", l, 0, 2, H, A, &L->o, err)))
                goto fail;
        }
        L->w1 = mvl_calloc((size_t)E * 3, sizeof(mvl_weight), err);
        if (!L->w1) {
            st = MVL_ERR_NOMEM;
            goto fail;
        }
        L->w3 = L->w1 + E;
        L->w2 = L->w3 + E;
        for (int e = 0; e < E; e++) {
            if ((st = load(md, LP "block_sparse_moe.experts.%d.w1.weight", l, e, 2, I, H, &L->w1[e], err)) ||
                (st = load(md, LP "block_sparse_moe.experts.%d.w3.weight", l, e, 2, I, H, &L->w3[e], err)) ||
                (st = load(md, LP "block_sparse_moe.experts.%d.w2.weight", l, e, 2, H, I, &L->w2[e], err)))
                goto fail;
        }
    }
    return MVL_OK;
fail:
    mvl_decoder_free(dec);
    return st;
}

void mvl_decoder_free(mvl_decoder *dec) {
    if (!dec) return;
    mvl_weight_free(&dec->embed);
    mvl_weight_free(&dec->final_norm);
    mvl_weight_free(&dec->lm_head);
    if (dec->layers) {
        for (int l = 0; l < dec->cfg.num_layers; l++) {
            mvl_dec_layer *L = &dec->layers[l];
            mvl_weight *ws[] = {&L->in_norm, &L->post_norm, &L->qkv, &L->gate, &L->norm, &L->out,
                                &L->q, &L->k, &L->v, &L->o, &L->router};
            for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) mvl_weight_free(ws[i]);
            if (L->w1)
                for (int i = 0; i < 3 * dec->cfg.num_experts; i++) mvl_weight_free(&L->w1[i]);
            free(L->w1);
            free(L->slopes);
        }
    }
    free(dec->layers);
    memset(dec, 0, sizeof *dec);
}

mvl_status mvl_dec_state_init(const mvl_decoder *dec, mvl_dec_state *s, mvl_error *err) {
    memset(s, 0, sizeof *s);
    const mvl_text_config *c = &dec->cfg;
    s->n_layers = c->num_layers;
    s->k_cache = mvl_calloc((size_t)c->num_layers * 3, sizeof(float *), err);
    if (!s->k_cache) return MVL_ERR_NOMEM;
    s->v_cache = s->k_cache + c->num_layers;
    s->lin = s->v_cache + c->num_layers;
    size_t dd = (size_t)c->num_heads * c->head_dim * c->head_dim;
    for (int l = 0; l < c->num_layers; l++) {
        if (c->layer_types[l] != MVL_LAYER_LIGHTNING) continue;
        s->lin[l] = mvl_calloc(dd, sizeof(float), err);
        if (!s->lin[l]) {
            mvl_dec_state_free(s);
            return MVL_ERR_NOMEM;
        }
    }
    return MVL_OK;
}

void mvl_dec_state_free(mvl_dec_state *s) {
    if (!s || !s->k_cache) return;
    for (int l = 0; l < s->n_layers; l++) {
        free(s->k_cache[l]);
        free(s->v_cache[l]);
        free(s->lin[l]);
    }
    free(s->k_cache);
    memset(s, 0, sizeof *s);
}

void mvl_dec_state_reset(const mvl_decoder *dec, mvl_dec_state *s) {
    const mvl_text_config *c = &dec->cfg;
    size_t dd = (size_t)c->num_heads * c->head_dim * c->head_dim;
    for (int l = 0; l < s->n_layers; l++)
        if (s->lin[l]) memset(s->lin[l], 0, dd * sizeof(float));
    s->len = 0;
}

/* Makes room for `need` rows in every KV cache (doubling). */
static mvl_status reserve(const mvl_decoder *dec, mvl_dec_state *s, int64_t need, mvl_error *err) {
    if (need <= s->cap) return MVL_OK;
    int64_t cap = s->cap ? s->cap : 64;
    while (cap < need) cap *= 2;
    size_t row = (size_t)dec->cfg.num_kv_heads * dec->cfg.head_dim * sizeof(float);
    for (int l = 0; l < s->n_layers; l++) {
        if (dec->cfg.layer_types[l] == MVL_LAYER_LIGHTNING) continue;
        float *k = realloc(s->k_cache[l], (size_t)cap * row);
        if (k) s->k_cache[l] = k;
        float *v = k ? realloc(s->v_cache[l], (size_t)cap * row) : NULL;
        if (v) s->v_cache[l] = v;
        if (!k || !v) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory growing the KV cache to %lld tokens", (long long)cap);
    }
    s->cap = cap;
    return MVL_OK;
}

mvl_status mvl_decoder_embed(const mvl_decoder *dec, const int32_t *ids, int64_t n, float *out, mvl_error *err) {
    int64_t H = dec->cfg.hidden_size;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= dec->cfg.vocab_size)
            return mvl_fail(err, MVL_ERR_ARG, "token id %d at position %lld is outside the vocabulary (0..%d)", ids[i],
                            (long long)i, dec->cfg.vocab_size - 1);
        memcpy(out + i * H, dec->embed.data + (int64_t)ids[i] * H, (size_t)H * sizeof(float));
    }
    return MVL_OK;
}

typedef struct scratch {
    float *a;    /* [n, H] sublayer output */
    float *u;    /* [n, H] normed input */
    float *big;  /* [n, 3A] qkv or q */
    float *att;  /* [n, A] */
    float *gate; /* [n, A] */
    float *rl;   /* [n, E] router logits */
    int *idx;    /* [n, k] */
    float *wt;   /* [n, k] */
    int *rows;   /* [n] tokens of one expert */
    float *rw;   /* [n] their weights */
    float *xs;   /* [n, H] gathered */
    float *g1, *g3; /* [n, I] */
    float *ys;   /* [n, H] */
} scratch;

static mvl_status lightning(const mvl_decoder *dec, const mvl_dec_layer *L, float *state, int64_t n, scratch *b,
                            mvl_error *err) {
    const mvl_text_config *c = &dec->cfg;
    int64_t A = (int64_t)c->num_heads * c->head_dim;
    bool bf = dec->bf16;
    mvl_op_linear(b->u, n, &L->qkv, NULL, b->big);
    mvl_op_round_if(bf, b->big, n * 3 * A);
    mvl_op_silu(b->big, n * 3 * A); /* on all of q, k, v (§4.1) */
    mvl_op_round_if(bf, b->big, n * 3 * A);
    mvl_status st =
        mvl_op_lightning(b->big, n, c->num_heads, c->head_dim, L->slopes, c->block_size, bf, state, b->att, err);
    if (st != MVL_OK) return st;
    mvl_op_rmsnorm(b->att, n, A, L->norm.data, LIGHTNING_NORM_EPS, bf, b->att); /* one norm over all heads (§4.6) */
    mvl_op_linear(b->u, n, &L->gate, NULL, b->gate);
    mvl_op_round_if(bf, b->gate, n * A);
    mvl_op_sigmoid_mul(b->att, b->gate, n * A, bf);
    mvl_op_linear(b->att, n, &L->out, NULL, b->a);
    mvl_op_round_if(bf, b->a, n * c->hidden_size);
    return MVL_OK;
}

static mvl_status softmax_attn(const mvl_decoder *dec, const mvl_dec_layer *L, mvl_dec_state *s, int l, int64_t n,
                               scratch *b, mvl_error *err) {
    const mvl_text_config *c = &dec->cfg;
    int64_t A = (int64_t)c->num_heads * c->head_dim, KV = (int64_t)c->num_kv_heads * c->head_dim;
    float *kc = s->k_cache[l] + s->len * KV, *vc = s->v_cache[l] + s->len * KV;
    bool bf = dec->bf16;
    mvl_op_linear(b->u, n, &L->q, NULL, b->big);
    mvl_op_linear(b->u, n, &L->k, NULL, kc);
    mvl_op_linear(b->u, n, &L->v, NULL, vc);
    mvl_op_round_if(bf, b->big, n * A);
    mvl_op_round_if(bf, kc, n * KV);
    mvl_op_round_if(bf, vc, n * KV);
    mvl_op_rope_neox(b->big, n, A, c->num_heads, c->head_dim, c->rotary_dim, s->len, c->rope_theta, bf);
    mvl_op_rope_neox(kc, n, KV, c->num_kv_heads, c->head_dim, c->rotary_dim, s->len, c->rope_theta, bf);
    mvl_status st = mvl_op_attention(b->big, A, n, s->k_cache[l], s->v_cache[l], KV, s->len + n, c->num_heads,
                                     c->num_kv_heads, c->head_dim, 1.0f / sqrtf((float)c->head_dim), true, bf, b->att,
                                     err);
    if (st != MVL_OK) return st;
    mvl_op_linear(b->att, n, &L->o, NULL, b->a);
    mvl_op_round_if(bf, b->a, n * c->hidden_size);
    return MVL_OK;
}

static void moe(const mvl_decoder *dec, const mvl_dec_layer *L, int64_t n, scratch *b) {
    const mvl_text_config *c = &dec->cfg;
    int64_t H = c->hidden_size, I = c->intermediate_size;
    int E = c->num_experts, K = c->experts_per_tok;
    bool bf = dec->bf16;
    mvl_op_linear(b->u, n, &L->router, NULL, b->rl);
    mvl_op_round_if(bf, b->rl, n * E); /* a bf16 GEMM; the softmax runs in fp32 on it (§6) */
    for (int64_t i = 0; i < n; i++) mvl_op_route_topk(b->rl + i * E, E, K, bf, b->idx + i * K, b->wt + i * K);
    memset(b->a, 0, (size_t)(n * H) * sizeof(float));
    for (int e = 0; e < E; e++) { /* experts in index order, as the reference accumulates */
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            for (int j = 0; j < K; j++)
                if (b->idx[i * K + j] == e) {
                    b->rows[cnt] = (int)i;
                    b->rw[cnt++] = b->wt[i * K + j];
                }
        if (!cnt) continue;
        for (int64_t r = 0; r < cnt; r++) memcpy(b->xs + r * H, b->u + (int64_t)b->rows[r] * H, (size_t)H * sizeof(float));
        mvl_op_linear(b->xs, cnt, &L->w1[e], NULL, b->g1);
        mvl_op_linear(b->xs, cnt, &L->w3[e], NULL, b->g3);
        mvl_op_round_if(bf, b->g1, cnt * I);
        mvl_op_round_if(bf, b->g3, cnt * I);
        mvl_op_swiglu(b->g1, b->g3, cnt * I, bf);
        mvl_op_linear(b->g1, cnt, &L->w2[e], NULL, b->ys);
        mvl_op_round_if(bf, b->ys, cnt * H);
        for (int64_t r = 0; r < cnt; r++)
            mvl_op_axpby(b->rw[r], b->ys + r * H, 1.0f, b->a + (int64_t)b->rows[r] * H, H, false);
    }
    /* bf16: transformers 5.x multiplies each bf16 expert output by its fp32 routing weight and
     * sums the top-k products in fp32, then casts once (checked bit-exact on the tiny model);
     * for k = 2 the fp32 sum does not depend on the order */
    mvl_op_round_if(bf, b->a, n * H);
}

mvl_status mvl_decoder_forward(const mvl_decoder *dec, mvl_dec_state *s, const float *x, int64_t n, float *logits,
                               float *last_logits, float *hidden, mvl_error *err) {
    const mvl_text_config *c = &dec->cfg;
    if (n <= 0) return mvl_fail(err, MVL_ERR_ARG, "decoder forward needs at least one position");
    int64_t H = c->hidden_size, A = (int64_t)c->num_heads * c->head_dim, I = c->intermediate_size;
    int E = c->num_experts, K = c->experts_per_tok;
    mvl_status st = reserve(dec, s, s->len + n, err);
    if (st != MVL_OK) return st;
    size_t floats = (size_t)n * (size_t)(4 * H + 3 * A + 2 * A + E + K + 1 + 2 * I + H) + 1;
    float *pool = mvl_malloc(floats * sizeof(float), err);
    int *ipool = pool ? mvl_malloc((size_t)n * (size_t)(K + 1) * sizeof(int) + 1, err) : NULL;
    if (!ipool) {
        free(pool);
        return MVL_ERR_NOMEM;
    }
    scratch b;
    float *h = pool, *p = pool + n * H;
    b.a = p; p += n * H;
    b.u = p; p += n * H;
    b.xs = p; p += n * H;
    b.big = p; p += n * 3 * A;
    b.att = p; p += n * A;
    b.gate = p; p += n * A;
    b.rl = p; p += n * E;
    b.wt = p; p += n * K;
    b.rw = p; p += n;
    b.g1 = p; p += n * I;
    b.g3 = p; p += n * I;
    b.ys = p;
    b.idx = ipool;
    b.rows = ipool + n * K;
    memcpy(h, x, (size_t)(n * H) * sizeof(float));
    mvl_op_round_if(dec->bf16, h, n * H); /* inputs_embeds in the model dtype */
    if (hidden) memcpy(hidden, x, (size_t)(n * H) * sizeof(float));
    float eps = (float)c->rms_norm_eps;
    for (int l = 0; l < c->num_layers && st == MVL_OK; l++) {
        const mvl_dec_layer *L = &dec->layers[l];
        mvl_op_rmsnorm(h, n, H, L->in_norm.data, eps, dec->bf16, b.u);
        st = L->type == MVL_LAYER_LIGHTNING ? lightning(dec, L, s->lin[l], n, &b, err)
                                            : softmax_attn(dec, L, s, l, n, &b, err);
        if (st != MVL_OK) break;
        /* post-norm: the residual is the normed input u (§3) */
        mvl_op_axpby((float)c->attn_alpha[L->type], b.u, (float)c->attn_beta[L->type], b.a, n * H, dec->bf16);
        mvl_op_rmsnorm(b.a, n, H, L->post_norm.data, eps, dec->bf16, b.u);
        moe(dec, L, n, &b);
        mvl_op_axpby((float)c->mlp_alpha, b.u, (float)c->mlp_beta, b.a, n * H, dec->bf16);
        memcpy(h, b.a, (size_t)(n * H) * sizeof(float));
        if (hidden) memcpy(hidden + (int64_t)(l + 1) * n * H, h, (size_t)(n * H) * sizeof(float));
    }
    if (st == MVL_OK) {
        s->len += n;
        mvl_op_rmsnorm(h, n, H, dec->final_norm.data, eps, dec->bf16, h);
        /* bf16: the lm_head is a bf16 GEMM, then .float() (§7) */
        if (logits) {
            mvl_op_linear(h, n, &dec->lm_head, NULL, logits);
            mvl_op_round_if(dec->bf16, logits, n * c->vocab_size);
        }
        if (last_logits) {
            mvl_op_linear(h + (n - 1) * H, 1, &dec->lm_head, NULL, last_logits);
            mvl_op_round_if(dec->bf16, last_logits, c->vocab_size);
        }
    }
    free(ipool);
    free(pool);
    return st;
}
