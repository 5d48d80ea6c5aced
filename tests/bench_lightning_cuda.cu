/* Times the CUDA lightning-attention kernels (kernels/cuda_lightning.cu) at
 * the full model's shape (64 heads, d 128, decoder.md §4), used by
 * tests/reference/lightning_bench.py next to transformers on the same GPU:
 *   bench_lightning_cuda [TOKENS]
 * prefill: one sequence of TOKENS (default 32768) from a random state;
 * decode: one step at batch 1, 8 and 32, replayed from a CUDA graph of 32
 * steps that rotate over 256 MiB+ of slot states (so L2 holds none of them).
 * Random data throughout (never zeros). CUDA events, median of 10 runs.
 * Prints a table and one JSON line ("json: {...}") for the script.
 * MVL_LIGHTNING_W=32|64 forces the prefill's v-slice width. Exits 77
 * without a GPU. */
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
extern "C" {
#include "kernels/gpu.h"
#include "text/decoder.h"
}

#define CK(x)                                                                                                          \
    do {                                                                                                               \
        mvl_status s_ = (x);                                                                                           \
        if (s_ != MVL_OK) {                                                                                            \
            fprintf(stderr, "bench_lightning_cuda:%d: %s\n", __LINE__, err.msg);                                       \
            return 1;                                                                                                  \
        }                                                                                                              \
    } while (0)
#define CC(x) CK(mvl_cuda_check_(x, #x, __LINE__, &err))

static mvl_status mvl_cuda_check_(cudaError_t e, const char *what, int line, mvl_error *err) {
    if (e == cudaSuccess) return MVL_OK;
    return mvl_fail(err, MVL_ERR_DEVICE, "line %d: %s: %s", line, what, cudaGetErrorString(e));
}

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static const int H = 64, D = 128, REPS = 10;

int main(int argc, char **argv) {
    mvl_error err = {};
    int ngpu;
    char name[256];
    if (mvl_gpu_probe(&ngpu, name, sizeof name, &err) != MVL_OK) {
        printf("skipped: %s\n", err.msg);
        return 77;
    }
    const int T = argc > 1 ? atoi(argv[1]) : 32768;
    if (T < 1) {
        fprintf(stderr, "usage: bench_lightning_cuda [TOKENS]\n");
        return 2;
    }
    const char *wenv = getenv("MVL_LIGHTNING_W");
    printf("device: %s; prefill v-slice width: %s\n", name, wenv ? wenv : "default");
    cudaStream_t s;
    CC(cudaStreamCreate(&s));
    cudaEvent_t e0, e1;
    CC(cudaEventCreate(&e0));
    CC(cudaEventCreate(&e1));

    std::vector<float> slopes(H);
    mvl_lightning_slopes(H, 40, 80, slopes.data());
    float *d_slopes;
    CC(cudaMalloc(&d_slopes, H * sizeof(float)));
    CC(cudaMemcpy(d_slopes, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));

    /* state slots: random fp32 in [-1, 1), enough of them to exceed L2 */
    const int NSLOT = 64;
    const size_t ssz = (size_t)H * D * D;
    float *d_state;
    CC(cudaMalloc(&d_state, NSLOT * ssz * sizeof(float)));
    {
        std::vector<float> h(NSLOT * ssz);
        uint32_t x = 12345;
        for (auto &v : h) {
            x = x * 1664525u + 1013904223u;
            v = (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
        }
        CC(cudaMemcpy(d_state, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    }

    /* ---- prefill: 1 sequence of T tokens ---- */
    bf16 *d_qkv, *d_out;
    int *d_cu, *d_slot;
    CC(cudaMalloc(&d_qkv, (size_t)T * H * 3 * D * sizeof(bf16)));
    CC(cudaMalloc(&d_out, (size_t)T * H * D * sizeof(bf16)));
    CC(cudaMalloc(&d_cu, 2 * sizeof(int)));
    CC(cudaMalloc(&d_slot, 32 * 64 * sizeof(int)));
    CK(mvl_cuda_fill_random_bf16(s, d_qkv, (int64_t)T * H * 3 * D, 7, 3.0f, &err));
    const int cu[2] = {0, T}, zero = 0;
    CC(cudaMemcpy(d_cu, cu, sizeof cu, cudaMemcpyHostToDevice));
    CC(cudaMemcpy(d_slot, &zero, sizeof zero, cudaMemcpyHostToDevice));
    std::vector<double> t;
    for (int r = 0; r < REPS + 2; r++) {
        CC(cudaEventRecord(e0, s));
        CK(mvl_cuda_lightning_prefill(s, d_qkv, d_cu, 1, T, d_slot, H, D, d_slopes, d_state, d_out, &err));
        CC(cudaEventRecord(e1, s));
        CC(cudaEventSynchronize(e1));
        float ms;
        CC(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2) t.push_back(ms);
    }
    const double pre_ms = median(t);
    const double pre_bytes = (double)T * H * (3 * D + D) * 2; /* qkv read + out written */
    printf("prefill tokens=%d heads=%d d=%d: %.3f ms (%.0f GB/s of qkv+out, %.1f Mtok/s)\n", T, H, D, pre_ms,
           pre_bytes / (pre_ms * 1e-3) / 1e9, T / (pre_ms * 1e-3) / 1e6);
    CC(cudaFree(d_out));

    /* ---- decode: one step at batch B, graph of 32 steps over rotating slots ---- */
    const int batches[3] = {1, 8, 32}, STEPS = 32;
    double dec_ms[3];
    for (int bi = 0; bi < 3; bi++) {
        const int B = batches[bi];
        std::vector<int> slots((size_t)STEPS * B);
        for (int k = 0; k < STEPS; k++)
            for (int b = 0; b < B; b++) slots[(size_t)k * B + b] = (k * B + b) % NSLOT;
        CC(cudaMemcpy(d_slot, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice));
        CC(cudaMalloc(&d_out, (size_t)B * H * D * sizeof(bf16)));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CC(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int k = 0; k < STEPS; k++)
            CK(mvl_cuda_lightning_decode(s, d_qkv + (size_t)k * B * H * 3 * D, B, d_slot + k * B, H, D, d_slopes,
                                         d_state, d_out, &err));
        CC(cudaStreamEndCapture(s, &graph));
        CC(cudaGraphInstantiate(&exec, graph, 0));
        t.clear();
        for (int r = 0; r < REPS + 2; r++) {
            CC(cudaEventRecord(e0, s));
            CC(cudaGraphLaunch(exec, s));
            CC(cudaEventRecord(e1, s));
            CC(cudaEventSynchronize(e1));
            float ms;
            CC(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 2) t.push_back(ms / STEPS);
        }
        dec_ms[bi] = median(t);
        const double bytes = (double)B * ssz * 4 * 2;
        printf("decode batch=%d: %.4f ms per step (%.0f GB/s of state read+write)\n", B, dec_ms[bi],
               bytes / (dec_ms[bi] * 1e-3) / 1e9);
        CC(cudaGraphExecDestroy(exec));
        CC(cudaGraphDestroy(graph));
        CC(cudaFree(d_out));
    }
    printf("json: {\"tokens\": %d, \"w\": \"%s\", \"prefill_ms\": %.5f, \"decode_ms\": {\"1\": %.6f, \"8\": %.6f, "
           "\"32\": %.6f}}\n",
           T, wenv ? wenv : "default", pre_ms, dec_ms[0], dec_ms[1], dec_ms[2]);
    CC(cudaFree(d_qkv));
    CC(cudaFree(d_cu));
    CC(cudaFree(d_slot));
    CC(cudaFree(d_state));
    CC(cudaFree(d_slopes));
    return 0;
}
