/* config.json of a MiniMax-VL-01 directory, in either layout (model/):
 *  - released remote-code layout: text_config with attn_type_list,
 *    layernorm_{full_attention,linear_attention,mlp}_{alpha,beta}, rotary_dim,
 *    postnorm, shared_intermediate_size;
 *  - transformers-native layout: text_config with layer_types,
 *    {full_attn,linear_attn,mlp}_{alpha,beta}_factor, partial_rotary_factor
 *    (top level or inside rope_parameters).
 * Both parse to the same mvl_model_config. */
#ifndef MVL_CONFIG_H
#define MVL_CONFIG_H

#include "common/mvl_common.h"

#define MVL_MAX_LAYERS 256

typedef enum { MVL_LAYER_LIGHTNING = 0, MVL_LAYER_SOFTMAX = 1 } mvl_layer_type;

typedef struct mvl_vision_config {
    int hidden_size;        /* 1024 */
    int num_layers;         /* 24 */
    int num_heads;          /* 16 */
    int intermediate_size;  /* 4096 */
    int image_size;         /* 336 */
    int patch_size;         /* 14 */
    int num_channels;       /* 3 */
    double layer_norm_eps;  /* 1e-5 */
} mvl_vision_config;

typedef struct mvl_text_config {
    int hidden_size;        /* 6144 */
    int num_layers;         /* 80 */
    int num_heads;          /* 64, lightning and softmax layers alike */
    int num_kv_heads;       /* 8, softmax layers */
    int head_dim;           /* 128 */
    int rotary_dim;         /* 64: NeoX RoPE on the first rotary_dim dims only */
    int vocab_size;         /* 200064 */
    int intermediate_size;  /* 9216 per expert */
    int num_experts;        /* 32 */
    int experts_per_tok;    /* 2 */
    int block_size;         /* 256, lightning prefill block */
    int64_t max_position_embeddings;
    double rope_theta;      /* 1e7 */
    double rms_norm_eps;    /* 1e-5 */
    /* post-norm residual weights (decoder.md §3): h = alpha*norm(x) + beta*sublayer */
    double attn_alpha[2], attn_beta[2]; /* indexed by mvl_layer_type */
    double mlp_alpha, mlp_beta;
    bool tie_word_embeddings;
    unsigned char layer_types[MVL_MAX_LAYERS]; /* [num_layers] mvl_layer_type */
} mvl_text_config;

typedef struct mvl_model_config {
    mvl_vision_config vision;
    mvl_text_config text;
    int image_token_index;          /* 200025 */
    int vision_feature_layer;       /* normalised to 0..num_layers-1 (-1 -> last) */
    bool native_layout;             /* which layout the file used */
} mvl_model_config;

/* Parses a config.json text; path is only used in messages. */
mvl_status mvl_config_parse(const char *path, const char *text, size_t len, mvl_model_config *cfg,
                            mvl_error *err);
mvl_status mvl_config_load(const char *path, mvl_model_config *cfg, mvl_error *err);

#endif
