/* mvl_cuda_linear (kernels/cuda_common.cu), the cuBLASLt Linear, where its
 * plan times cuBLASLt's candidate algorithms (large GEMMs): against a plain
 * fp32 kernel written here, on random bf16 x, w, bias and residual y.
 *   - accumulate with room in tune_y: the trials run there (its poison is
 *     overwritten), y gets exactly one x.w^T + bias added;
 *   - the same shape again: the plan is reused, tune_y untouched;
 *   - accumulate without room in tune_y: no trials, tune_y untouched;
 *   - no accumulate: the trials write y itself, then the call overwrites it;
 *   - a small GEMM: no trials.
 * Bar: ||y - ref|| / ||ref|| <= 5e-3 (bf16 output: ~2e-3). Controls: the
 * reference without the residual, and with the product added twice (what a
 * trial writing y of an accumulating call would leave), must miss the bar.
 * Exits 77 without a GPU. */
#include <math.h>
#include <stdio.h>

#include <vector>

#include "gpu_test_util.cuh"
#include "test_util.h"
#include "kernels/cuda_common.cuh"

static mvl_error err;

// ref[i, j] = (x[i] . w[j] + bias[j]) * times + y0[i, j] in fp32
__global__ void k_ref(const bf16 *x, const bf16 *w, const bf16 *bias, const bf16 *y0, int m, int n, int k,
                      float times, float *ref) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y;
    if (j >= n) return;
    float acc = 0.f;
    for (int t = 0; t < k; t++) acc += __bfloat162float(x[(size_t)i * k + t]) * __bfloat162float(w[(size_t)j * k + t]);
    ref[(size_t)i * n + j] = (acc + __bfloat162float(bias[j])) * times + (y0 ? __bfloat162float(y0[(size_t)i * n + j]) : 0.f);
}

static std::vector<float> download_bf16(const bf16 *d, size_t n) {
    std::vector<bf16> h(n);
    CK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
    std::vector<float> f(n);
    for (size_t i = 0; i < n; i++) f[i] = __bfloat162float(h[i]);
    return f;
}

static std::vector<float> reference(cudaStream_t s, const bf16 *x, const bf16 *w, const bf16 *bias, const bf16 *y0,
                                    int m, int n, int k, float times) {
    float *d;
    CK(cudaMalloc(&d, (size_t)m * n * 4));
    k_ref<<<dim3((n + 127) / 128, m), 128, 0, s>>>(x, w, bias, y0, m, n, k, times, d);
    CK(cudaGetLastError());
    std::vector<float> h((size_t)m * n);
    CK(cudaMemcpyAsync(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost, s));
    CK(cudaStreamSynchronize(s));
    cudaFree(d);
    return h;
}

static const uint32_t POISON = 0x7FC17FC1u; // two bf16 NaNs

// 1 when every word of d[0..bytes) still holds POISON
static bool poisoned(const void *d, size_t bytes) {
    std::vector<uint32_t> h(bytes / 4);
    CK(cudaMemcpy(h.data(), d, bytes, cudaMemcpyDeviceToHost));
    for (uint32_t v : h)
        if (v != POISON) return false;
    return true;
}

static void poison(void *d, size_t bytes) {
    std::vector<uint32_t> h(bytes / 4, POISON);
    CK(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice));
}

int main(void) {
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    printf("device 0: %s\n", name);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    const size_t ws_size = 32u << 20;
    void *ws;
    CK(cudaMalloc(&ws, ws_size));
    int failures = 0;
    printf("%-34s %6s %5s %5s %10s %10s %10s %8s %s\n", "case", "m", "n", "k", "rel err", "no resid", "twice",
           "tune_y", "result");
    struct Case {
        const char *what;
        int m, n, k, accumulate;
        bool room, tuned; // tune_y large enough; trials expected in tune_y
    } cases[] = {{"accumulate, trials in tune_y", 8192, 1024, 1024, 1, true, true},
                 {"accumulate, no room in tune_y", 8192, 1024, 1024, 1, false, false},
                 {"no accumulate, trials in y", 8192, 1536, 1024, 0, true, false},
                 {"small accumulate, no trials", 300, 256, 512, 1, true, false}};
    for (const Case &c : cases) {
        mvl_cuda_gemm g;
        MV(mvl_cuda_gemm_init(&g, ws, ws_size, &err));
        const size_t xn = (size_t)c.m * c.k, wn = (size_t)c.n * c.k, yn = (size_t)c.m * c.n;
        bf16 *x, *w, *bias, *y, *y0, *tune;
        CK(cudaMalloc(&x, xn * 2));
        CK(cudaMalloc(&w, wn * 2));
        CK(cudaMalloc(&bias, c.n * 2));
        CK(cudaMalloc(&y, yn * 2));
        CK(cudaMalloc(&y0, yn * 2));
        CK(cudaMalloc(&tune, yn * 2));
        MV(mvl_cuda_fill_random_bf16(s, x, xn, 1, 1.f, &err));
        MV(mvl_cuda_fill_random_bf16(s, w, wn, 2, 0.05f, &err));
        MV(mvl_cuda_fill_random_bf16(s, bias, c.n, 3, 0.5f, &err));
        MV(mvl_cuda_fill_random_bf16(s, y0, yn, 4, 1.f, &err));
        CK(cudaStreamSynchronize(s));
        g.tune_y = tune, g.tune_size = c.room ? yn * 2 : yn * 2 - 2;
        bool tune_ok = true;
        double e = 0, e_nores = 0, e_twice = 0;
        for (int call = 0; call < 2; call++) { // the second call reuses the plan: no more trials
            poison(tune, yn * 2);
            if (c.accumulate) CK(cudaMemcpy(y, y0, yn * 2, cudaMemcpyDeviceToDevice));
            else poison(y, yn * 2);
            MV(mvl_cuda_linear(&g, s, x, c.m, c.k, w, c.n, bias, y, 0, c.accumulate, &err));
            CK(cudaStreamSynchronize(s));
            tune_ok &= poisoned(tune, yn * 2) == !(c.tuned && call == 0);
            const std::vector<float> got = download_bf16(y, yn);
            const bf16 *res = c.accumulate ? y0 : nullptr;
            e = fmax(e, mvl_test_norm_rel_err(got.data(), reference(s, x, w, bias, res, c.m, c.n, c.k, 1.f).data(), yn));
            if (call == 0) {
                e_nores = mvl_test_norm_rel_err(got.data(), reference(s, x, w, bias, nullptr, c.m, c.n, c.k, 1.f).data(), yn);
                e_twice = mvl_test_norm_rel_err(got.data(), reference(s, x, w, bias, res, c.m, c.n, c.k, 2.f).data(), yn);
            }
        }
        // the controls: a lost residual, or a product added twice, must be seen (where there is a residual)
        const bool controls = e_twice > 5e-3 && (!c.accumulate || e_nores > 5e-3);
        const bool ok = e <= 5e-3 && controls && tune_ok;
        failures += !ok;
        printf("%-34s %6d %5d %5d %10.3e %10.3e %10.3e %8s %s\n", c.what, c.m, c.n, c.k, e, e_nores, e_twice,
               tune_ok ? "ok" : "WRONG", ok ? "ok" : "FAIL");
        mvl_cuda_gemm_free(&g);
        cudaFree(x), cudaFree(w), cudaFree(bias), cudaFree(y), cudaFree(y0), cudaFree(tune);
    }
    cudaFree(ws);
    cudaStreamDestroy(s);
    printf(failures ? "FAILED: %d case(s)\n" : "all cases passed\n", failures);
    return failures != 0;
}
