/* GPU discovery (kernels/). In a build without CUDA these report
 * MVL_ERR_DEVICE "built without CUDA", so callers need no #ifdef. */
#ifndef MVL_GPU_H
#define MVL_GPU_H

#include "common/mvl_common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices and a description of device 0; MVL_ERR_DEVICE with
 * the reason when there is none. */
mvl_status mvl_gpu_probe(int *count, char *name, size_t name_len, mvl_error *err);
/* Runs a kernel and a cuBLAS GEMM against host results; *max_err is the
 * largest absolute difference (0 expected: the inputs are small integers). */
mvl_status mvl_gpu_selftest(float *max_err, mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
