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

#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "bench_util.h"
#include "gpu_test_util.cuh"
#include "test_util.h"
extern "C" {
#include "kernels/gpu.h"
#include "text/decoder.h"
}

static const int H = 64, D = 128, REPS = 10;

int main(int argc, char **argv) {
    mvl_error err = {};
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    const int T = argc > 1 ? atoi(argv[1]) : 32768;
    if (T < 1) {
        fprintf(stderr, "usage: bench_lightning_cuda [TOKENS]\n");
        return 2;
    }
    const char *wenv = getenv("MVL_LIGHTNING_W");
    printf("device: %s; prefill v-slice width: %s\n", name, wenv ? wenv : "default");
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));

    std::vector<float> slopes(H);
    mvl_lightning_slopes(H, 40, 80, slopes.data());
    float *d_slopes;
    CK(cudaMalloc(&d_slopes, H * sizeof(float)));
    CK(cudaMemcpy(d_slopes, slopes.data(), H * sizeof(float), cudaMemcpyHostToDevice));

    /* state slots: random fp32 in [-1, 1), enough of them to exceed L2 */
    const int NSLOT = 64;
    const size_t ssz = (size_t)H * D * D;
    float *d_state;
    CK(cudaMalloc(&d_state, NSLOT * ssz * sizeof(float)));
    {
        std::vector<float> h(NSLOT * ssz);
        uint32_t x = 12345;
        for (auto &v : h) {
            x = x * 1664525u + 1013904223u;
            v = (float)(x >> 8) * (2.0f / 16777216.0f) - 1.0f;
        }
        CK(cudaMemcpy(d_state, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
    }

    /* ---- prefill: 1 sequence of T tokens ---- */
    bf16 *d_qkv, *d_out;
    int *d_cu, *d_slot;
    CK(cudaMalloc(&d_qkv, (size_t)T * H * 3 * D * sizeof(bf16)));
    CK(cudaMalloc(&d_out, (size_t)T * H * D * sizeof(bf16)));
    CK(cudaMalloc(&d_cu, 2 * sizeof(int)));
    CK(cudaMalloc(&d_slot, 32 * 64 * sizeof(int)));
    MV(mvl_cuda_fill_random_bf16(s, d_qkv, (int64_t)T * H * 3 * D, 7, 3.0f, &err));
    const int cu[2] = {0, T}, zero = 0;
    CK(cudaMemcpy(d_cu, cu, sizeof cu, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(d_slot, &zero, sizeof zero, cudaMemcpyHostToDevice));
    std::vector<double> t;
    for (int r = 0; r < REPS + 2; r++) {
        CK(cudaEventRecord(e0, s));
        MV(mvl_cuda_lightning_prefill(s, d_qkv, d_cu, 1, T, d_slot, H, D, d_slopes, d_state, d_out, &err));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2) t.push_back(ms);
    }
    const double pre_ms = mvl_bench_median(t.data(), (int)t.size());
    const double pre_bytes = (double)T * H * (3 * D + D) * 2; /* qkv read + out written */
    printf("prefill tokens=%d heads=%d d=%d: %.3f ms (%.0f GB/s of qkv+out, %.1f Mtok/s)\n", T, H, D, pre_ms,
           pre_bytes / (pre_ms * 1e-3) / 1e9, T / (pre_ms * 1e-3) / 1e6);
    CK(cudaFree(d_out));

    /* ---- decode: one step at batch B, graph of 32 steps over rotating slots ---- */
    const int batches[3] = {1, 8, 32}, STEPS = 32;
    double dec_ms[3];
    for (int bi = 0; bi < 3; bi++) {
        const int B = batches[bi];
        std::vector<int> slots((size_t)STEPS * B);
        for (int k = 0; k < STEPS; k++)
            for (int b = 0; b < B; b++) slots[(size_t)k * B + b] = (k * B + b) % NSLOT;
        CK(cudaMemcpy(d_slot, slots.data(), slots.size() * sizeof(int), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&d_out, (size_t)B * H * D * sizeof(bf16)));
        cudaGraph_t graph;
        cudaGraphExec_t exec;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        for (int k = 0; k < STEPS; k++)
            MV(mvl_cuda_lightning_decode(s, d_qkv + (size_t)k * B * H * 3 * D, B, d_slot + k * B, H, D, d_slopes,
                                         d_state, d_out, &err));
        CK(cudaStreamEndCapture(s, &graph));
        CK(cudaGraphInstantiate(&exec, graph, 0));
        t.clear();
        for (int r = 0; r < REPS + 2; r++) {
            CK(cudaEventRecord(e0, s));
            CK(cudaGraphLaunch(exec, s));
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            float ms;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            if (r >= 2) t.push_back(ms / STEPS);
        }
        dec_ms[bi] = mvl_bench_median(t.data(), (int)t.size());
        const double bytes = (double)B * ssz * 4 * 2;
        printf("decode batch=%d: %.4f ms per step (%.0f GB/s of state read+write)\n", B, dec_ms[bi],
               bytes / (dec_ms[bi] * 1e-3) / 1e9);
        CK(cudaGraphExecDestroy(exec));
        CK(cudaGraphDestroy(graph));
        CK(cudaFree(d_out));
    }
    printf("json: {\"tokens\": %d, \"w\": \"%s\", \"prefill_ms\": %.5f, \"decode_ms\": {\"1\": %.6f, \"8\": %.6f, "
           "\"32\": %.6f}}\n",
           T, wenv ? wenv : "default", pre_ms, dec_ms[0], dec_ms[1], dec_ms[2]);
    CK(cudaFree(d_qkv));
    CK(cudaFree(d_cu));
    CK(cudaFree(d_slot));
    CK(cudaFree(d_state));
    CK(cudaFree(d_slopes));
    return 0;
}
