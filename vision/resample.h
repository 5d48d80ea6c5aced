/* Pillow's resampling coefficients (vision.md §3.6), shared by the CPU
 * resize (vision/resample.c) and the GPU preprocessing
 * (kernels/cuda_preprocess.cu), so that both apply the very same int32
 * weights and so give the same bytes. */
#ifndef MVL_RESAMPLE_H
#define MVL_RESAMPLE_H

#include <stdint.h>

#include "mvl.h"

#define MVL_RESAMPLE_PRECISION_BITS 22 /* Pillow: 32 - 8 - 2 */

typedef struct mvl_resample_coeffs {
    int ksize;      /* taps per output sample (window upper bound) */
    int *bounds;    /* [out, 2] first tap, tap count */
    double *kd;     /* [out, ksize] normalised weights (16-bit path) */
    int32_t *ki;    /* [out, ksize] fixed-point weights (8-bit path; NULL unless fixed) */
} mvl_resample_coeffs;

/* Pillow precompute_coeffs for the box (0, in_size) -> out_size samples
 * (bicubic, a = -0.5), then, when fixed is set, the 8-bit path's 22-bit
 * fixed-point weights. A uint8 sample is then clip((2^21 + sum w*x) >> 22). */
mvl_status mvl_resample_coeffs_init(mvl_resample_coeffs *c, int in_size, int out_size, int fixed, mvl_error *err);
void mvl_resample_coeffs_free(mvl_resample_coeffs *c);

#endif
