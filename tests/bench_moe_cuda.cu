// Benchmark of the decoder's CUDA MoE and small-batch Linear at full size
// (H=6144, I=9216, E=32, k=2; random bf16 weights, 10.9 GB):
//   1. HBM copy bandwidth (device-to-device copy of 2 GiB, read + write);
//   2. mvl_cuda_linear_small vs cuBLASLt (mvl_cuda_linear) at n = 1, 8, 16, 32, 64;
//   3. MoE decode step n = 1, 8, 32 (and both paths at 8, 32, 64 to place the
//      path threshold): time, experts read, bytes, share of copy bandwidth;
//   4. MoE prefill n = 1024, 8192, 32768: TFLOP/s and share of the cuBLAS
//      bf16 GEMM ceiling measured in the same run.
// Times are per call with calls enqueued back to back (see time_ms).
// Usage: bench_moe_cuda [TABLE.md]   (the table also goes to stdout)
// Exits 77 without a GPU.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "gpu_test_util.cuh"
#include "test_util.h"
#include "kernels/cuda_vit.h"
#include "kernels/gpu.h"


static mvl_error err;
static FILE *table;

static void out(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (table) {
        va_start(ap, fmt);
        vfprintf(table, fmt, ap);
        va_end(ap);
    }
    fflush(stdout);
}

// Milliseconds per call of fn(rep), calls enqueued back to back as a decode
// step runs them (no host round trip between them; fn may still sync, as the
// prefill path does): the median over 3 batches of `reps`, after 3 warm-ups.
template <class F> static double time_ms(cudaStream_t s, int reps, F fn) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; i++) fn(i);
    std::vector<double> t;
    for (int batch = 0; batch < 3; batch++) {
        CK(cudaEventRecord(a, s));
        for (int i = 0; i < reps; i++) fn(i);
        CK(cudaEventRecord(b, s));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        t.push_back(ms / reps);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(t.begin(), t.end());
    return t[1];
}

int main(int argc, char **argv) {
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    if (argc > 1 && !(table = fopen(argv[1], "w"))) {
        perror(argv[1]);
        return 1;
    }
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    out("device: %s\n\n", name);

    // 1. copy bandwidth
    const size_t cbytes = (size_t)2 << 30;
    uint8_t *src, *dst;
    CK(cudaMalloc(&src, cbytes));
    CK(cudaMalloc(&dst, cbytes));
    MV(mvl_cuda_fill_random_u8(s, src, (int64_t)cbytes, 5u, &err));
    const double cms = time_ms(s, 10, [&](int) { CK(cudaMemcpyAsync(dst, src, cbytes, cudaMemcpyDeviceToDevice, s)); });
    const double copy_gbs = 2.0 * cbytes / (cms * 1e-3) / 1e9;
    out("## 1. HBM copy bandwidth\ncudaMemcpyAsync D2D 2 GiB: %.3f ms, %.0f GB/s (read + write)\n\n", cms, copy_gbs);
    cudaFree(src), cudaFree(dst);

    // 2. small-batch Linear. Weights rotate over copies in one 2.46 GB buffer
    // so no step finds them in L2.
    const int shapes[][2] = {{6144, 24576}, {6144, 8192}, {8192, 6144}, {6144, 200064}};
    const size_t wmax = (size_t)6144 * 200064;
    bf16 *wbuf, *xbuf, *ybuf;
    CK(cudaMalloc(&wbuf, wmax * 2));
    CK(cudaMalloc(&xbuf, (size_t)64 * 8192 * 2));
    CK(cudaMalloc(&ybuf, (size_t)64 * 200064 * 2));
    MV(mvl_cuda_fill_random_bf16(s, wbuf, (int64_t)wmax, 7u, 0.03f, &err));
    MV(mvl_cuda_fill_random_bf16(s, xbuf, (int64_t)64 * 8192, 8u, 1.0f, &err));
    mvl_cuda_gemm g;
    void *ws;
    const size_t ws_size = 32u << 20;
    CK(cudaMalloc(&ws, ws_size));
    MV(mvl_cuda_gemm_init(&g, ws, ws_size, &err));
    out("## 2. small-batch Linear y[n,R] = x[n,C] W^T, bf16 out (bytes: W + x + y)\n");
    out("| C -> R | n | skinny us | skinny GB/s | %% copy | cuBLASLt us | cuBLASLt GB/s | %% copy | speed-up |\n");
    out("|---|---|---|---|---|---|---|---|---|\n");
    for (auto &sh : shapes) {
        const int C = sh[0], R = sh[1];
        const size_t wel = (size_t)R * C;
        const int copies = (int)std::max<size_t>(1, wmax / wel);
        for (int n : {1, 8, 16, 32, 64}) {
            const double bytes = 2.0 * (wel + (double)n * C + (double)n * R);
            const double ts = time_ms(s, 20, [&](int i) {
                MV(mvl_cuda_linear_small(s, xbuf, n, C, wbuf + (size_t)(i % copies) * wel, R, ybuf, 0, &err));
            });
            const double tc = time_ms(s, 20, [&](int i) {
                MV(mvl_cuda_linear(&g, s, xbuf, n, C, wbuf + (size_t)(i % copies) * wel, R, nullptr, ybuf, 0, 0, &err));
            });
            const double gs = bytes / (ts * 1e-3) / 1e9, gc = bytes / (tc * 1e-3) / 1e9;
            out("| %d -> %d | %d | %.1f | %.0f | %.1f | %.1f | %.0f | %.1f | %.2fx |\n", C, R, n, ts * 1e3, gs,
                100 * gs / copy_gbs, tc * 1e3, gc, 100 * gc / copy_gbs, tc / ts);
        }
    }
    cudaFree(wbuf), cudaFree(xbuf), cudaFree(ybuf);

    // 3-4. MoE at full size.
    const int H = 6144, I = 9216, E = 32, k = 2, nmax = 32768;
    mvl_cuda_moe_weights w;
    bf16 *router, *w13, *w2, *u, *y;
    int *ecount;
    const size_t expert = (size_t)3 * H * I; // elements of one expert
    CK(cudaMalloc(&router, (size_t)E * H * 2));
    CK(cudaMalloc(&w13, (size_t)E * 2 * I * H * 2));
    CK(cudaMalloc(&w2, (size_t)E * H * I * 2));
    CK(cudaMalloc(&u, (size_t)nmax * H * 2));
    CK(cudaMalloc(&y, (size_t)nmax * H * 2));
    CK(cudaMalloc(&ecount, E * sizeof(int)));
    MV(mvl_cuda_fill_random_bf16(s, router, (int64_t)E * H, 21u, 0.02f, &err));
    MV(mvl_cuda_fill_random_bf16(s, w13, (int64_t)E * 2 * I * H, 22u, 0.038f, &err));
    MV(mvl_cuda_fill_random_bf16(s, w2, (int64_t)E * H * I, 23u, 0.031f, &err));
    MV(mvl_cuda_fill_random_bf16(s, u, (int64_t)nmax * H, 24u, 1.0f, &err));
    w.router = router, w.w13 = w13, w.w2 = w2;
    void *scratch;
    CK(cudaMalloc(&scratch, mvl_cuda_moe_scratch(nmax, H, I, E, k)));
    auto moe = [&](int n) { MV(mvl_cuda_moe(&g, s, &w, u, n, H, I, E, k, y, scratch, ecount, &err)); };
    auto distinct = [&]() {
        std::vector<int> c(E);
        CK(cudaMemcpy(c.data(), ecount, E * sizeof(int), cudaMemcpyDeviceToHost));
        int d = 0;
        for (int v : c) d += v > 0;
        return d;
    };

    out("\n## 3. MoE decode step (H=%d, I=%d, E=%d, k=%d; bytes = experts read x 3HI x 2 + router)\n", H, I, E, k);
    out("| n | path | experts | MB | stream us | GB/s | %% copy | graph us | GB/s | %% copy |\n");
    out("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int n : {1, 8, 32, 64}) {
        for (int small = 1; small >= 0; small--) {
            if (!small && n == 1) continue;
            mvl_cuda_moe_small_max = small ? 64 : 0;
            const double t = time_ms(s, 20, [&](int) { moe(n); });
            const int d = distinct();
            const double bytes = (double)d * expert * 2 + (double)E * H * 2;
            const double gbs = bytes / (t * 1e-3) / 1e9;
            if (small) {
                cudaGraph_t gr;
                cudaGraphExec_t ge;
                CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
                moe(n);
                CK(cudaStreamEndCapture(s, &gr));
                CK(cudaGraphInstantiate(&ge, gr, 0));
                const double tg = time_ms(s, 20, [&](int) { CK(cudaGraphLaunch(ge, s)); });
                const double gg = bytes / (tg * 1e-3) / 1e9;
                out("| %d | decode | %d | %.0f | %.1f | %.0f | %.1f | %.1f | %.0f | %.1f |\n", n, d, bytes / 1e6, t * 1e3,
                    gbs, 100 * gbs / copy_gbs, tg * 1e3, gg, 100 * gg / copy_gbs);
                cudaGraphExecDestroy(ge);
                cudaGraphDestroy(gr);
            } else {
                out("| %d | prefill | %d | %.0f | %.1f | %.0f | %.1f | - | - | - |\n", n, d, bytes / 1e6, t * 1e3, gbs,
                    100 * gbs / copy_gbs);
            }
        }
    }
    mvl_cuda_moe_small_max = 64;

    double ceiling;
    MV(mvl_cuda_gemm_ceiling(8192, 8192, 8192, 10, &ceiling, &err));
    out("\n## 4. MoE prefill (FLOPs = n k 3 2 H I); cuBLASLt bf16 8192^3 ceiling %.0f TFLOP/s\n", ceiling);
    out("| n | experts | ms | TFLOP/s | %% ceiling |\n|---|---|---|---|---|\n");
    for (int n : {1024, 8192, 32768}) {
        const double t = time_ms(s, 5, [&](int) { moe(n); });
        const double tf = (double)n * k * 3 * 2 * H * I / (t * 1e-3) / 1e12;
        out("| %d | %d | %.2f | %.0f | %.1f |\n", n, distinct(), t, tf, 100 * tf / ceiling);
    }
    mvl_cuda_gemm_free(&g);
    cudaFree(ws), cudaFree(scratch), cudaFree(router), cudaFree(w13), cudaFree(w2), cudaFree(u), cudaFree(y);
    cudaFree(ecount);
    cudaStreamDestroy(s);
    if (table) fclose(table);
    return 0;
}
