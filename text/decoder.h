/* The MiniMax-Text-01 decoder (decoder.md §3-7) on kernels/ops.h, and its
 * per-sequence state. Internal; the public face is mvl_model / mvl_seq. */
#ifndef MVL_DECODER_H
#define MVL_DECODER_H

#include "kernels/ops.h"
#include "model/model_dir.h"

typedef struct mvl_dec_layer {
    mvl_layer_type type;
    mvl_weight in_norm, post_norm; /* [1, H] */
    /* lightning (§4) */
    mvl_weight qkv;                /* [heads*3*d, H], head-major interleaved q|k|v */
    mvl_weight gate;               /* [heads*d, H] output_gate */
    mvl_weight norm;               /* [1, heads*d] RMSNorm over all heads, eps 1e-6 */
    mvl_weight out;                /* [H, heads*d] */
    float *slopes;                 /* [heads] s_{l,h} (§4.2) */
    /* softmax (§5) */
    mvl_weight q, k, v, o;         /* [heads*d, H], [kv*d, H] x2, [H, heads*d] */
    /* MoE (§6) */
    mvl_weight router;             /* [E, H] */
    mvl_weight *w1, *w3, *w2;      /* [E] each: [I, H], [I, H], [H, I] */
} mvl_dec_layer;

typedef struct mvl_decoder {
    mvl_text_config cfg;
    mvl_weight embed;      /* [vocab, H] */
    mvl_weight final_norm; /* [1, H] */
    mvl_weight lm_head;    /* [vocab, H] */
    mvl_dec_layer *layers; /* [num_layers] */
    bool bf16;             /* MVL_COMPUTE_BF16: round as MiniMaxForCausalLM in bf16 (set after init) */
} mvl_decoder;

mvl_status mvl_decoder_init(const mvl_model_dir *md, mvl_decoder *dec, mvl_error *err);
void mvl_decoder_free(mvl_decoder *dec);

/* Per-sequence state: everything a later token needs from earlier ones. */
typedef struct mvl_dec_state {
    int64_t len;      /* tokens consumed so far (next position) */
    int64_t cap;      /* rows allocated in each KV cache */
    float **k_cache;  /* [num_layers]: softmax layers [cap, kv*d] post-RoPE keys, else NULL */
    float **v_cache;  /* [num_layers]: softmax layers [cap, kv*d], else NULL */
    float **lin;      /* [num_layers]: lightning layers [heads, d, d] fp32 state, else NULL */
    int n_layers;
} mvl_dec_state;

mvl_status mvl_dec_state_init(const mvl_decoder *dec, mvl_dec_state *s, mvl_error *err);
void mvl_dec_state_free(mvl_dec_state *s);
/* Back to an empty sequence, keeping the allocations. */
void mvl_dec_state_reset(const mvl_decoder *dec, mvl_dec_state *s);

/* Token embedding rows: out[n, H]. Ids outside the vocabulary: MVL_ERR_ARG. */
mvl_status mvl_decoder_embed(const mvl_decoder *dec, const int32_t *ids, int64_t n, float *out,
                             mvl_error *err);

/* Runs n new positions (x: [n, H] input embeddings) on top of s, advancing it.
 * logits: NULL or [n, vocab]; last_logits: NULL or [vocab] for the last
 * position; hidden: NULL or [num_layers + 1, n, H] (the input, then every
 * layer's output before the final norm) for stage-by-stage comparison. */
mvl_status mvl_decoder_forward(const mvl_decoder *dec, mvl_dec_state *s, const float *x, int64_t n,
                               float *logits, float *last_logits, float *hidden, mvl_error *err);

/* ALiBi-style slopes of the remote code (decoder.md §4.2): for heads a power
 * of two, 2^(-8(h+1)/heads) times (1 - l/(L-1) + 1e-5). */
void mvl_lightning_slopes(int heads, int layer, int n_layers, float *slopes);

#endif
