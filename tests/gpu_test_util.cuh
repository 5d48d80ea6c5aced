/* Shared by the CUDA op tests and benchmarks (tests/gpu_*.cu, tests/bench_*_cuda.cu): a failing CUDA
 * call (CK) or mvl call (MV, reading the mvl_error `err` in scope) prints
 * FAILED with the file, line and call, and exits 1. */
#ifndef MVL_GPU_TEST_UTIL_CUH
#define MVL_GPU_TEST_UTIL_CUH

#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime.h>

#define CK(call)                                                                                                       \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                       \
            printf("FAILED: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));                      \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)
#define MV(call)                                                                                                       \
    do {                                                                                                               \
        if ((call) != MVL_OK) {                                                                                        \
            printf("FAILED: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, err.msg);                                     \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
