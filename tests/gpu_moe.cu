// CUDA MoE and small-batch Linear (kernels/cuda_moe.cu) against the CPU ops
// of kernels/ops.h in fp32 on the same bf16 weights and inputs, with the
// reference's bf16 rounding points (text/decoder.c moe(), decoder.md §6).
// mvl_cuda_linear_small for n = 1..64 at several shapes (tails in rows and in
// the reduction, both tilings); mvl_cuda_moe on both paths at a mid size and
// the tiny and demo models' sizes, n = 1 .. 2048 and the path boundary; the
// decode path once more through a captured graph. Routing: the chosen experts
// must equal the reference's except where its k-th and (k+1)-th probabilities
// are within 1e-3 (such tokens are counted and left out of the error norm).
// Outputs are poisoned (NaN) before each call. Skipped (77) without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_dec_ops.cuh"
#include "gpu_test_util.cuh"
#include "test_util.h"
#include "kernels/gpu.h"
extern "C" {
#include "kernels/ops.h"
}


static mvl_error err;
static int failures;

// bf16 values from a seeded generator: bits for the device, floats for the CPU.
struct bf16_buf {
    std::vector<uint16_t> bits;
    std::vector<float> f;
    bf16 *dev = nullptr;
    void fill(size_t n, uint64_t seed, float scale) {
        bits.resize(n);
        f.resize(n);
        uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            float v = ((float)(s >> 40) / 8388608.0f - 1.0f) * scale;
            bits[i] = mvl_f32_to_bf16_bits(v);
            f[i] = mvl_bf16_bits_to_f32(bits[i]);
        }
        if (dev) cudaFree(dev);
        CK(cudaMalloc(&dev, n * 2));
        CK(cudaMemcpy(dev, bits.data(), n * 2, cudaMemcpyHostToDevice));
    }
    // Row dst := row src of a [rows, cols] matrix, host and device.
    void copy_row(size_t dst, size_t src, size_t cols) {
        for (size_t c = 0; c < cols; c++)
            bits[dst * cols + c] = bits[src * cols + c], f[dst * cols + c] = f[src * cols + c];
        CK(cudaMemcpy(dev + dst * cols, dev + src * cols, cols * 2, cudaMemcpyDeviceToDevice));
    }
    ~bf16_buf() {
        if (dev) cudaFree(dev);
    }
};

static mvl_weight weight_of(const float *data, int64_t rows, int64_t cols) {
    mvl_weight w = {rows, cols, data, NULL};
    return w;
}

static void download_bf16(const bf16 *dev, size_t n, std::vector<float> &out) {
    std::vector<uint16_t> b(n);
    CK(cudaMemcpy(b.data(), dev, n * 2, cudaMemcpyDeviceToHost));
    out.resize(n);
    for (size_t i = 0; i < n; i++) out[i] = mvl_bf16_bits_to_f32(b[i]);
}

// ---- small-batch Linear ----------------------------------------------------------------

static void test_linear(cudaStream_t s) {
    // (C, R): tails in the reduction (C % 32 != 0) and in the rows (R % 16 != 0);
    // R >= 2 x 32 x SMs takes the two-m-tile tiling for n > 8.
    const int shapes[][2] = {{256, 512}, {1000, 77}, {40, 24}, {6144, 1024}, {264, 8456}};
    const int ns[] = {1, 3, 8, 32, 64};
    printf("\nmvl_cuda_linear_small vs mvl_op_linear (fp32 on the bf16 values); bars: bf16 out 1e-2, fp32 out 1e-4\n");
    printf("%6s %6s %4s %12s %12s\n", "C", "R", "n", "rel bf16", "rel fp32");
    for (auto &sh : shapes) {
        const int C = sh[0], R = sh[1];
        bf16_buf w, x;
        w.fill((size_t)R * C, 11 + C + R, 3.0f / sqrtf((float)C));
        x.fill((size_t)64 * C, 17 + C, 1.0f);
        mvl_weight wt = weight_of(w.f.data(), R, C);
        void *y;
        CK(cudaMalloc(&y, (size_t)64 * R * 4));
        for (int n : ns) {
            std::vector<float> ref((size_t)n * R), got;
            mvl_op_linear(x.f.data(), n, &wt, NULL, ref.data());
            double e[2];
            for (int f32 = 0; f32 < 2; f32++) {
                CK(cudaMemset(y, 0xff, (size_t)64 * R * 4));
                MV(mvl_cuda_linear_small(s, x.dev, n, C, w.dev, R, y, f32, &err));
                CK(cudaStreamSynchronize(s));
                if (f32) {
                    got.resize((size_t)n * R);
                    CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost));
                } else download_bf16((const bf16 *)y, (size_t)n * R, got);
                e[f32] = mvl_test_norm_rel_err(got.data(), ref.data(), got.size());
            }
            bool ok = e[0] <= 1e-2 && e[1] <= 1e-4; // NaN (an unwritten element) fails
            failures += !ok;
            printf("%6d %6d %4d %12.3e %12.3e %s\n", C, R, n, e[0], e[1], ok ? "ok" : "FAIL");
        }
        cudaFree(y);
    }
    // Refused shapes: a status, no launch.
    bool refused = mvl_cuda_linear_small(s, nullptr, 65, 64, nullptr, 16, nullptr, 0, &err) == MVL_ERR_ARG &&
                   mvl_cuda_linear_small(s, nullptr, 1, 12, nullptr, 16, nullptr, 0, &err) == MVL_ERR_ARG;
    printf("n = 65 and C = 12 refused: %s\n", refused ? "ok" : "FAIL");
    failures += !refused;
}

// ---- MoE -------------------------------------------------------------------------------

struct moe_model {
    int H, I, E, k;
    const char *name;
    bool dup = false; // router row 2 = row 1: exact logit ties at the top-k boundary
    bf16_buf router, w13, w2;
    mvl_cuda_moe_weights dev;
    void init(int seed) {
        router.fill((size_t)E * H, seed, 0.05f);
        if (dup) router.copy_row(2, 1, H);
        w13.fill((size_t)E * 2 * I * H, seed + 1, 3.0f / sqrtf((float)H));
        w2.fill((size_t)E * H * I, seed + 2, 3.0f / sqrtf((float)I));
        dev.router = router.dev, dev.w13 = w13.dev, dev.w2 = w2.dev;
    }
};

// The reference MoE of text/decoder.c in bf16 compute, routing ties as
// torch.topk does (route_topk.h): idx/gap per token (gap = p_k - p_(k+1) of the reference).
static void moe_ref(const moe_model &m, const float *u, int n, std::vector<float> &y, std::vector<int> &idx,
                    std::vector<double> &gap) {
    const int H = m.H, I = m.I, E = m.E, k = m.k;
    std::vector<float> lg((size_t)n * E), wt((size_t)n * k);
    mvl_weight rw = weight_of(m.router.f.data(), E, H);
    mvl_op_linear(u, n, &rw, NULL, lg.data());
    mvl_op_round_bf16(lg.data(), lg.size());
    idx.resize((size_t)n * k);
    gap.resize(n);
    for (int t = 0; t < n; t++) {
        const float *l = &lg[(size_t)t * E];
        mvl_op_route_topk(l, E, k, true, &idx[(size_t)t * k], &wt[(size_t)t * k]);
        double mx = l[0], sum = 0;
        for (int e = 0; e < E; e++) mx = std::max(mx, (double)l[e]);
        std::vector<double> p(E);
        for (int e = 0; e < E; e++) sum += p[e] = exp(l[e] - mx);
        for (int e = 0; e < E; e++) p[e] /= sum;
        std::sort(p.begin(), p.end(), [](double a, double b) { return a > b; });
        gap[t] = k < E ? p[k - 1] - p[k] : 1.0;
    }
    y.assign((size_t)n * H, 0.f);
    std::vector<float> xs, g1, g3, ys, rwt;
    std::vector<int> rows;
    for (int e = 0; e < E; e++) {
        rows.clear(), rwt.clear();
        for (int t = 0; t < n; t++)
            for (int j = 0; j < k; j++)
                if (idx[(size_t)t * k + j] == e) rows.push_back(t), rwt.push_back(wt[(size_t)t * k + j]);
        const int c = (int)rows.size();
        if (!c) continue;
        xs.resize((size_t)c * H), g1.resize((size_t)c * I), g3.resize((size_t)c * I), ys.resize((size_t)c * H);
        for (int r = 0; r < c; r++) memcpy(&xs[(size_t)r * H], u + (size_t)rows[r] * H, (size_t)H * 4);
        const float *w13 = m.w13.f.data() + (size_t)e * 2 * I * H;
        mvl_weight w1 = weight_of(w13, I, H), w3 = weight_of(w13 + (size_t)I * H, I, H),
                   w2 = weight_of(m.w2.f.data() + (size_t)e * H * I, H, I);
        mvl_op_linear(xs.data(), c, &w1, NULL, g1.data());
        mvl_op_linear(xs.data(), c, &w3, NULL, g3.data());
        mvl_op_round_bf16(g1.data(), g1.size());
        mvl_op_round_bf16(g3.data(), g3.size());
        mvl_op_swiglu(g1.data(), g3.data(), g1.size(), true);
        mvl_op_linear(g1.data(), c, &w2, NULL, ys.data());
        mvl_op_round_bf16(ys.data(), ys.size());
        for (int r = 0; r < c; r++) mvl_op_axpby(rwt[r], &ys[(size_t)r * H], 1.0f, &y[(size_t)rows[r] * H], H, false);
    }
    mvl_op_round_bf16(y.data(), y.size());
}

static void test_moe_case(mvl_cuda_gemm *g, cudaStream_t s, moe_model &m, int n, bool small, bool graph) {
    const int H = m.H, E = m.E, k = m.k;
    bf16_buf u;
    u.fill((size_t)n * H, 1000 + n * 7 + H, 1.0f);
    std::vector<float> ref, got;
    std::vector<int> ridx, gidx((size_t)n * k), count(E);
    std::vector<double> gap;
    moe_ref(m, u.f.data(), n, ref, ridx, gap);

    const size_t sbytes = mvl_cuda_moe_scratch(n, H, m.I, E, k);
    void *scratch;
    bf16 *y;
    int *ecount;
    CK(cudaMalloc(&scratch, sbytes));
    CK(cudaMalloc(&y, (size_t)n * H * 2));
    CK(cudaMalloc(&ecount, E * sizeof(int)));
    CK(cudaMemset(y, 0xff, (size_t)n * H * 2));
    CK(cudaMemset(ecount, 0xff, E * sizeof(int)));
    mvl_cuda_moe_small_max = small ? 64 : 0;
    MV(mvl_cuda_moe(g, s, &m.dev, u.dev, n, H, m.I, E, k, y, scratch, ecount, &err));
    CK(cudaStreamSynchronize(s));
    download_bf16(y, (size_t)n * H, got);
    CK(cudaMemcpy(gidx.data(), scratch, gidx.size() * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(count.data(), ecount, E * 4, cudaMemcpyDeviceToHost));

    // Routing: the same set of experts per token, unless the reference's
    // k-th and (k+1)-th probabilities are within 1e-3. Where they are equal
    // (equal bf16 logits), both follow torch.topk's rule: the same experts.
    int near = 0, hard = 0, ties = 0, tie_diff = 0;
    std::vector<int> own(E, 0);
    std::vector<char> keep(n, 1);
    for (int t = 0; t < n; t++) {
        bool same = true;
        for (int j = 0; j < k; j++) {
            const int e = gidx[(size_t)t * k + j];
            if (e >= 0 && e < E) own[e]++;
            bool found = false;
            for (int q = 0; q < k; q++) found |= ridx[(size_t)t * k + q] == e;
            same &= found;
        }
        ties += gap[t] == 0.0;
        tie_diff += gap[t] == 0.0 && !same;
        if (same) continue;
        keep[t] = 0;
        if (gap[t] < 1e-3) near++;
        else hard++;
    }
    bool counts_ok = own == count;
    std::vector<float> a, b;
    for (int t = 0; t < n; t++)
        if (keep[t]) {
            a.insert(a.end(), got.begin() + (size_t)t * H, got.begin() + (size_t)(t + 1) * H);
            b.insert(b.end(), ref.begin() + (size_t)t * H, ref.begin() + (size_t)(t + 1) * H);
        }
    const double e = mvl_test_norm_rel_err(a.data(), b.data(), a.size());

    // The decode path again, captured in a graph: bit-identical output.
    const char *gres = "-";
    if (graph) {
        std::vector<float> again;
        cudaGraph_t gr;
        cudaGraphExec_t ge;
        CK(cudaMemset(y, 0xff, (size_t)n * H * 2));
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
        mvl_status st = mvl_cuda_moe(g, s, &m.dev, u.dev, n, H, m.I, E, k, y, scratch, ecount, &err);
        CK(cudaStreamEndCapture(s, &gr));
        MV(st);
        CK(cudaGraphInstantiate(&ge, gr, 0));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaStreamSynchronize(s));
        download_bf16(y, (size_t)n * H, again);
        gres = memcmp(again.data(), got.data(), got.size() * 4) == 0 ? "same" : "DIFFERS";
        cudaGraphExecDestroy(ge);
        cudaGraphDestroy(gr);
    }
    const bool ok = e <= 1e-2 && hard == 0 && tie_diff == 0 && (!m.dup || n < 8 || ties > 0) && counts_ok &&
                    (!graph || gres[0] == 's');
    failures += !ok;
    printf("%-6s %5d %-7s %6d %6d %5d/%-5d %7s %10.3e %7s %s\n", m.name, n, small ? "decode" : "prefill", near, hard,
           tie_diff, ties, counts_ok ? "ok" : "WRONG", e, gres, ok ? "ok" : "FAIL");
    cudaFree(scratch), cudaFree(y), cudaFree(ecount);
}

static void test_moe(cudaStream_t s) {
    mvl_cuda_gemm g;
    void *ws;
    const size_t ws_size = 32u << 20;
    CK(cudaMalloc(&ws, ws_size));
    MV(mvl_cuda_gemm_init(&g, ws, ws_size, &err));
    moe_model models[4];
    models[0].H = 512, models[0].I = 768, models[0].E = 32, models[0].k = 2, models[0].name = "mid";
    models[1].H = 128, models[1].I = 32, models[1].E = 4, models[1].k = 2, models[1].name = "tiny";
    models[2].H = 256, models[2].I = 192, models[2].E = 4, models[2].k = 2, models[2].name = "demo";
    models[3].H = 128, models[3].I = 32, models[3].E = 4, models[3].k = 2, models[3].name = "ties";
    models[3].dup = true;
    printf("\nmvl_cuda_moe vs the CPU reference (bf16 rounding points of text/decoder.c); bar 1e-2\n");
    printf("near: routing differs where the reference's p_k - p_(k+1) < 1e-3 (allowed, token left out); hard: "
           "differs elsewhere\n");
    printf("ties: tokens whose k-th and (k+1)-th logits are equal, and how many of them chose other experts (bar 0)\n");
    printf("%-6s %5s %-7s %6s %6s %11s %7s %10s %7s\n", "model", "n", "path", "near", "hard", "tiediff/ties",
           "counts", "rel err", "graph");
    const int ns[] = {1, 2, 8, 32, 64, 65, 300, 2048};
    for (int mi = 0; mi < 4; mi++) {
        moe_model &m = models[mi];
        m.init(100 + 10 * mi);
        for (int n : ns) {
            if (mi >= 2 && n > 300) continue; // the demo size adds nothing at 2048
            if (n <= 64) test_moe_case(&g, s, m, n, true, n == 8 || n == 64);
            test_moe_case(&g, s, m, n, false, false);
        }
    }
    mvl_cuda_moe_small_max = 64;
    mvl_cuda_gemm_free(&g);
    cudaFree(ws);
}

int main(void) {
    int ngpu;
    char name[256];
    if (!mvl_test_gpu(&ngpu, name, sizeof name)) return 77;
    printf("device 0: %s\n", name);
    cudaStream_t s;
    CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    test_linear(s);
    test_moe(s);
    cudaStreamDestroy(s);
    printf("\n%s (%d failures)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
