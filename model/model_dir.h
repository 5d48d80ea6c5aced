/* Internal side of mvl_model_dir (model/): the parsed config and the
 * tensor manifest that a given config implies. */
#ifndef MVL_MODEL_DIR_H
#define MVL_MODEL_DIR_H

#include "model/config.h"

typedef enum mvl_part {
    MVL_PART_VISION,    /* vision_tower.* */
    MVL_PART_PROJECTOR, /* multi_modal_projector.* */
    MVL_PART_NEWLINE,   /* image_newline */
    MVL_PART_EMBED,     /* language_model.model.embed_tokens */
    MVL_PART_TEXT,      /* decoder weights read by every token: attention, norms, router */
    MVL_PART_EXPERT,    /* MoE experts, of which experts_per_tok are read per token */
    MVL_PART_LM_HEAD,   /* language_model.lm_head */
    MVL_PART_COUNT
} mvl_part;

const mvl_model_config *mvl_model_dir_config(const mvl_model_dir *md);
const char *mvl_model_dir_path(const mvl_model_dir *md);

/* Calls fn for every tensor the config implies, in checkpoint order. */
typedef mvl_status (*mvl_manifest_fn)(void *ctx, const char *name, mvl_part part, int ndim,
                                      const int64_t *shape);
mvl_status mvl_model_manifest(const mvl_model_config *cfg, mvl_manifest_fn fn, void *ctx);

/* Checks that the stored tensors are exactly the manifest, with its shapes. */
mvl_status mvl_model_dir_validate(const mvl_model_dir *md, mvl_error *err);

#endif
