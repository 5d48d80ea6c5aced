/* Internal access to the stages of a loaded mvl_model, for stage-by-stage
 * tests and benchmarks (text/generate.c). */
#ifndef MVL_GENERATE_H
#define MVL_GENERATE_H

#include "projector/projector.h"
#include "text/decoder.h"
#include "vision/vit.h"

const mvl_vit *mvl_model_vit(const mvl_model *m);
const mvl_projector *mvl_model_projector(const mvl_model *m);
const mvl_decoder *mvl_model_decoder(const mvl_model *m);

#endif
