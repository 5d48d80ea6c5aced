// Finding the GPU and a self-test of the toolchain (kernels/): one kernel
// and one cuBLAS GEMM checked against the host, so a broken driver, a wrong
// architecture or a missing library shows up as a clear error.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda_check.h"
#include "kernels/gpu.h"

extern "C" mvl_status mvl_gpu_probe(int *count, char *name, size_t name_len, mvl_error *err) {
    *count = 0;
    if (name_len) name[0] = '\0';
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0)
        return mvl_fail(err, MVL_ERR_DEVICE, "no CUDA GPU available: %s",
                        e != cudaSuccess ? cudaGetErrorString(e) : "the driver reports 0 devices");
    cudaDeviceProp p;
    CUDA_CHECK(cudaGetDeviceProperties(&p, 0));
    *count = n;
    snprintf(name, name_len, "%s (sm_%d%d, %.0f GiB)", p.name, p.major, p.minor,
             (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
    return MVL_OK;
}

__global__ static void scale_add(float *y, const float *x, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

// Runs the checks with device buffers owned by the caller so that every
// exit path frees them.
static mvl_status selftest_run(float *dx, float *dy, float *da, float *db, float *dc, float *max_err,
                               mvl_error *err) {
    enum { N = 1024, M = 64 };
    static float x[N], y[N], a[M * M], b[M * M], c[M * M];
    for (int i = 0; i < N; i++) x[i] = (float)i, y[i] = 1.0f;
    for (int i = 0; i < M * M; i++) a[i] = (float)(i % 7) - 3.0f, b[i] = (float)(i % 5) - 2.0f;
    CUDA_CHECK(cudaMemcpy(dx, x, sizeof x, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(dy, y, sizeof y, cudaMemcpyHostToDevice));
    scale_add<<<(N + 255) / 256, 256>>>(dy, dx, 2.0f, N);
    CUDA_CHECK(cudaGetLastError());
    CUDA_CHECK(cudaMemcpy(y, dy, sizeof y, cudaMemcpyDeviceToHost));
    float worst = 0;
    for (int i = 0; i < N; i++) worst = fmaxf(worst, fabsf(y[i] - (2.0f * i + 1.0f)));

    CUDA_CHECK(cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice));
    cublasHandle_t h;
    CUBLAS_CHECK(cublasCreate(&h));
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s = cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, M, M, M, &one, da, M, db, M, &zero, dc, M);
    cublasDestroy(h);
    CUBLAS_CHECK(s);
    CUDA_CHECK(cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost));
    for (int i = 0; i < M; i++)       // column-major: c[i + j*M] = sum_k a[i + k*M] b[k + j*M]
        for (int j = 0; j < M; j++) {
            double ref = 0;
            for (int k = 0; k < M; k++) ref += (double)a[i + k * M] * b[k + j * M];
            worst = fmaxf(worst, (float)fabs(c[i + j * M] - ref));
        }
    *max_err = worst;
    return MVL_OK;
}

extern "C" mvl_status mvl_gpu_selftest(float *max_err, mvl_error *err) {
    float *buf[5] = {0};
    const size_t sizes[5] = {1024, 1024, 64 * 64, 64 * 64, 64 * 64};
    mvl_status st = MVL_OK;
    for (int i = 0; i < 5 && st == MVL_OK; i++) {
        cudaError_t e = cudaMalloc(&buf[i], sizes[i] * sizeof(float));
        if (e != cudaSuccess)
            st = mvl_fail(err, MVL_ERR_DEVICE, "cudaMalloc of %zu bytes failed: %s", sizes[i] * sizeof(float),
                          cudaGetErrorString(e));
    }
    if (st == MVL_OK) st = selftest_run(buf[0], buf[1], buf[2], buf[3], buf[4], max_err, err);
    for (int i = 0; i < 5; i++) cudaFree(buf[i]);
    return st;
}
