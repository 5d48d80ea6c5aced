/* Benchmark of the decoder's CUDA softmax attention at the full model's dims
 * (64 query heads, 8 kv heads, head_dim 128, rot 64; decoder.md §5):
 *   bench_attention_cuda [N [CTX]]
 *   - prefill of one N-token sequence (default 32768) from an empty cache:
 *     RoPE + cache append, then causal attention; TFLOP/s counts the causal
 *     FLOPs 2 * 2 * heads * d * N^2 / 2;
 *   - decode of one token per sequence at context CTX (default 32768) for
 *     batch 1, 8, 32, launched on a stream and replayed from a CUDA graph
 *     (checked equal); GB/s counts the KV bytes B * CTX * kv_heads * d * 2 * 2.
 * Prints one "key=value" line per measurement (tests/reference/
 * attention_bench.py reads them and runs torch beside). Exits 77 without a GPU. */
#include <algorithm>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "gpu_test_util.cuh"
#include "test_util.h"
extern "C" {
#include "kernels/gpu.h"
}


enum { H = 64, KV = 8, D = 128, ROT = 64, W = (H + 2 * KV) * D };
static const float THETA = 1e7f;

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv) {
    const int N = argc > 1 ? atoi(argv[1]) : 32768, CTX = argc > 2 ? atoi(argv[2]) : 32768;
    if (N < 1 || CTX < 1) {
        fprintf(stderr, "usage: bench_attention_cuda [N [CTX]]\n");
        return 2;
    }
    mvl_error err = {};
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    printf("device=%s\n", name);
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    const float scale = 1.0f / sqrtf((float)D);
    auto elapsed = [&]() {
        float ms;
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        return (double)ms;
    };

    { // prefill
        bf16 *qkv, *kc, *vc, *out;
        int *ip; // cu[2] | pos0 | slot
        CK(cudaMalloc(&qkv, (size_t)N * W * 2));
        CK(cudaMalloc(&kc, (size_t)N * KV * D * 2));
        CK(cudaMalloc(&vc, (size_t)N * KV * D * 2));
        CK(cudaMalloc(&out, (size_t)N * H * D * 2));
        CK(cudaMalloc(&ip, 4 * sizeof(int)));
        const int hip[4] = {0, N, 0, 0};
        CK(cudaMemcpy(ip, hip, sizeof hip, cudaMemcpyHostToDevice));
        MV(mvl_cuda_fill_random_bf16(st, qkv, (int64_t)N * W, 1, 2.0f, &err));
        std::vector<double> tr, ta;
        for (int it = 0; it < 7; it++) {
            CK(cudaEventRecord(e0, st));
            MV(mvl_cuda_rope_append_kv(st, qkv, N, ip, 1, ip + 2, ip + 3, H, KV, D, ROT, THETA, kc, vc, N, &err));
            CK(cudaEventRecord(e1, st));
            if (it >= 2) tr.push_back(elapsed());
            CK(cudaEventRecord(e0, st));
            MV(mvl_cuda_attention(st, qkv, N, ip, 1, N, ip + 2, N, ip + 3, H, KV, D, scale, kc, vc, N, out, nullptr,
                                  &err));
            CK(cudaEventRecord(e1, st));
            if (it >= 2) ta.push_back(elapsed());
        }
        const double ms = median(ta), flops = 4.0 * H * D * (double)N * N / 2;
        printf("prefill N=%d attn_ms=%.3f tflops=%.1f rope_append_ms=%.3f\n", N, ms, flops / ms / 1e9, median(tr));
        CK(cudaFree(qkv));
        CK(cudaFree(kc));
        CK(cudaFree(vc));
        CK(cudaFree(out));
        CK(cudaFree(ip));
    }

    { // decode
        const int BMAX = 32;
        const size_t ncache = (size_t)BMAX * CTX * KV * D;
        bf16 *qkv, *kc, *vc, *out, *out2;
        int *ip; // cu[BMAX+1] | pos0[BMAX] | slot[BMAX]
        float *scr;
        CK(cudaMalloc(&qkv, (size_t)BMAX * W * 2));
        CK(cudaMalloc(&kc, ncache * 2));
        CK(cudaMalloc(&vc, ncache * 2));
        CK(cudaMalloc(&out, (size_t)BMAX * H * D * 2));
        CK(cudaMalloc(&out2, (size_t)BMAX * H * D * 2));
        CK(cudaMalloc(&ip, (3 * BMAX + 1) * sizeof(int)));
        CK(cudaMalloc(&scr, mvl_cuda_attention_scratch(BMAX, CTX, H, D) * sizeof(float)));
        std::vector<int> hip(3 * BMAX + 1);
        for (int b = 0; b <= BMAX; b++) hip[b] = b;
        for (int b = 0; b < BMAX; b++) hip[BMAX + 1 + b] = CTX - 1, hip[2 * BMAX + 1 + b] = b;
        CK(cudaMemcpy(ip, hip.data(), hip.size() * sizeof(int), cudaMemcpyHostToDevice));
        const int *cu = ip, *pos0 = ip + BMAX + 1, *slot = ip + 2 * BMAX + 1;
        MV(mvl_cuda_fill_random_bf16(st, qkv, (int64_t)BMAX * W, 2, 2.0f, &err));
        MV(mvl_cuda_fill_random_bf16(st, kc, (int64_t)ncache, 3, 2.0f, &err));
        MV(mvl_cuda_fill_random_bf16(st, vc, (int64_t)ncache, 4, 1.0f, &err));
        for (int B : {1, 8, 32}) {
            const size_t nscr = mvl_cuda_attention_scratch(B, CTX, H, D);
            auto step = [&](bf16 *o) {
                return mvl_cuda_attention(st, qkv, B, cu, B, 1, pos0, CTX, slot, H, KV, D, scale, kc, vc, CTX, o, scr,
                                          &err);
            };
            const int reps = 20;
            std::vector<double> ts, tg;
            for (int it = 0; it < 7; it++) {
                CK(cudaEventRecord(e0, st));
                for (int r = 0; r < reps; r++) MV(step(out));
                CK(cudaEventRecord(e1, st));
                if (it >= 2) ts.push_back(elapsed() / reps);
            }
            cudaGraph_t graph;
            cudaGraphExec_t exec;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
            MV(step(out2));
            CK(cudaStreamEndCapture(st, &graph));
            CK(cudaGraphInstantiate(&exec, graph, 0));
            for (int it = 0; it < 7; it++) {
                CK(cudaEventRecord(e0, st));
                for (int r = 0; r < reps; r++) CK(cudaGraphLaunch(exec, st));
                CK(cudaEventRecord(e1, st));
                if (it >= 2) tg.push_back(elapsed() / reps);
            }
            std::vector<uint16_t> a((size_t)B * H * D), g((size_t)B * H * D);
            CK(cudaMemcpy(a.data(), out, a.size() * 2, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(g.data(), out2, g.size() * 2, cudaMemcpyDeviceToHost));
            const bool same = memcmp(a.data(), g.data(), a.size() * 2) == 0;
            CK(cudaGraphExecDestroy(exec));
            CK(cudaGraphDestroy(graph));
            const double bytes = (double)B * CTX * KV * D * 2 * 2, ms = median(ts), msg = median(tg);
            printf("decode B=%d ctx=%d attn_ms=%.4f gbs=%.0f graph_ms=%.4f graph_gbs=%.0f graph_equal=%d "
                   "scratch_mb=%.2f\n",
                   B, CTX, ms, bytes / ms / 1e6, msg, bytes / msg / 1e6, same ? 1 : 0, nscr * 4 / 1e6);
            if (!same) {
                fprintf(stderr, "bench_attention_cuda: the graph replay differs from the stream launch\n");
                return 1;
            }
        }
        CK(cudaFree(qkv));
        CK(cudaFree(kc));
        CK(cudaFree(vc));
        CK(cudaFree(out));
        CK(cudaFree(out2));
        CK(cudaFree(ip));
        CK(cudaFree(scr));
    }
    CK(cudaStreamDestroy(st));
    return 0;
}
