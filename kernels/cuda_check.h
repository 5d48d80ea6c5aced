/* Checked CUDA, cuBLAS and NCCL calls (kernels/). Each macro turns a failing
 * call into an mvl_status with the file, line, call and the library's own
 * message, recorded in `err` (an mvl_error * in scope), and returns it from
 * the enclosing function. No call into these libraries goes unchecked. */
#ifndef MVL_CUDA_CHECK_H
#define MVL_CUDA_CHECK_H

#include <cuda_runtime.h>
#include <cublas_v2.h>

#include "common/mvl_common.h"

#define CUDA_CHECK(call)                                                                       \
    do {                                                                                       \
        cudaError_t e_ = (call);                                                               \
        if (e_ != cudaSuccess)                                                                 \
            return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: %s failed: %s (%s)", __FILE__, __LINE__, \
                            #call, cudaGetErrorString(e_), cudaGetErrorName(e_));              \
    } while (0)

#define CUBLAS_CHECK(call)                                                                     \
    do {                                                                                       \
        cublasStatus_t s_ = (call);                                                            \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                       \
            return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: %s failed: %s", __FILE__, __LINE__, #call, \
                            cublasGetStatusString(s_));                                        \
    } while (0)

#endif
