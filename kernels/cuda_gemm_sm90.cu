// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation, the exact erf GELU fused (issue 7's fc1 and the projector's linear_1).
// Roles of the 384 threads (one CTA per SM, persistent over a static tile list, n fastest, so the CTAs in
// flight share a few row blocks of x and all of w in L2):
// - warp 0, one thread: TMA loads of 64-wide K slices of x and w into 3 shared-memory stages (128-byte
//   swizzle, the wgmma K-major layout), through full/empty mbarriers. The CTAs run in clusters of 2 over row
//   blocks 2t and 2t + 1 at one n0: each loads its own x and half of w, multicast into both, so a stage goes
//   back once the consumers of both CTAs are done with it (H100, in one run: the ViT at 64 tiles 44.05-44.42
//   ms against 44.60-44.73 without, 19 tiles 13.78-13.79 against 13.83-13.86; alone, fc1 + GELU 0.443-0.445
//   against 0.463, qkv 0.319-0.320 against 0.321-0.322);
// - warpgroups 1 and 2 (consumers): wgmma from shared memory on a 128 x 256 CTA tile (warpgroup c: rows
//   64c.., one m64n256 wgmma per k16); after a tile's main loop each thread writes acc + bias, rounded to
//   bf16, into 4 staging slots (its warpgroup's 64 x 256 tile as 64 x 64 blocks) and starts the next tile;
// - warps 1..3 (out warps): during the next main loop, each takes whole staged blocks, applies the GELU in
//   place and TMA-stores them.
// The GELU is a lookup in a table of its bf16 result for each of the 65536 bf16 inputs (made by
// mvl_gelu_erf, so the pass's bits), 128 KB of device memory read through the texture path: the entries in
// use (a few thousand) stay in the L1 cache beside the shared memory, and a value costs ~3.5 SASS
// instructions (its index, the fetch, a mask of the fetched half that ptxas keeps, half a byte permute),
// with no range test and no erff fallback.
// What the GELU costs is the out warps' work during the main loop (their instructions, a texture or global
// load more than an ALU one), not shared-memory traffic or bank conflicts (H100, fc1 at 64 tiles, one run:
// out warps loading and storing the blocks without a GELU 0.4330-0.4344 ms = no GELU 0.4335-0.4345; a second
// lookup per value at conflict-free addresses took the shared-memory table from 0.476-0.481 to 0.497-0.508;
// erff replayed op for op, ~30 instructions a value and no shared memory, 0.630).
// Measured on an H100 at the fc1 shape for 64 tiles (M 36928, N 4096, K 1024; tests/gpu_gemm_sm90.cu
// bench), ms per call:
// - GELU by the consumers between their wgmma issues (git 7db17ac): 0.68-0.78 (it delayed the next issue);
// - out warps with erff, p[64] held in registers and written in slices during the next main loop: 0.80;
// - 4 stages with one staging slot per warpgroup, written a block every 4 k blocks (the out warps then
//   had 4 k blocks per block): 0.584-0.597;
// - this layout: erff 0.64; a shared-memory table of 2^-20 <= |x| < 16 with erff outside it (git 1d6cf5c,
//   ~11 SASS instructions a value) 0.476-0.481 (no GELU 0.433-0.449, cuBLASLt 0.418-0.427);
// - one run (no GELU 0.4335-0.4345, cuBLASLt 0.418-0.424, shared-memory table 0.476-0.481): erff's small-|x|
//   polynomial replayed op for op (fma.rn ..., bit-identical) with the table for |x| >= 1.42 0.72-0.73,
//   erff replayed whole 0.630; the out warps storing to global memory themselves (16-byte stores) instead
//   of the TMA store: +0.02-0.05 with or without a GELU; wgmma_wait<1> with the stage released a k block
//   later: no GELU 0.438, table 0.479-0.485 (so not kept);
// - one run (no GELU 0.440-0.451, cuBLASLt 0.428-0.429, + pass 0.643-0.647): shared-memory table 0.4843,
//   this table 0.467-0.474, the same table through ld.global.nc (64-bit addresses, ~4 instructions a
//   value) 0.509-0.531, this table looked up by the consumers while staging 0.680; outputs 3x wider
//   (more inputs in use): 0.487-0.504, 0.469-0.481, 0.509, 0.680. All bit-identical to cuBLASLt + the pass.
// Tried on an H100 and dropped (bench 64, ms per call; BENCHMARKS.md, CUDA vision session 7): remote empty arrives with
// .release.cluster (2.5x slower; in session 7 the clusters measured on par alone, qkv 0.331 vs 0.328, and were not
// tried in the ViT, where the power cap makes less traffic count); ping-pong warpgroups on their own 128 x 128 tiles, 4
// stages of 32 KB, main loops alternating (a parity wait cannot tell stage phase u from u - 2): fc1 without GELU 0.50
// vs 0.43; the second warpgroup started 1-3 k blocks late so the epilogues overlap a main loop: no change; a LayerNorm
// folded into the epilogue (one more FMA per element): +4% at qkv and fc1; a TMA reduce-add residual store: out_proj
// 0.130 vs cuBLASLt 0.117; 32-bit table entries (no mask instruction per value): fc1 + GELU 0.472-0.491 vs 0.458-0.470,
// and in the ViT 12.21-12.25 vs 11.76-11.78 ms (twice the cache footprint). Session 8: the epilogue overlapped with the
// tensor cores (a tile's last k block and the next tile's first as m64n128 halves, one half staged while the other
// runs; ptxas serializes a kernel that mixes m64n256 and m64n128, so every k block ran as halves): fc1 without GELU
// 0.445-0.447 vs 0.431-0.432, qkv 0.333 vs 0.325 (halves without the overlap 0.435-0.443, 0.327); a LayerNorm folded in
// with its row statistics summed by the consumers from the stages during the MMAs (no LayerNorm pass): the ViT at 64
// tiles 45.5-45.9 vs 43.4-43.6 ms (qkv 10.7-11.0 vs 8.8, fc1 15.4-15.9 vs 11.6). Session 9 (BENCHMARKS.md): out_proj's
// and fc2's residual + the next LayerNorm in the out warps (row statistics exchanged between the CTAs of a row block
// through global memory): out_proj 0.31 vs cuBLASLt + residual 0.128 ms, the out warps latency-bound; the residual
// add alone in the out warps: out_proj on par alone (0.130), the ViT at 64 tiles 44.9-45.3 vs 43.6-43.9 ms.
// Session 10: clusters of 4 (w in quarters): only 30 of them are resident (120 SMs), fc1 0.457-0.481 vs 0.429-0.434,
// the ViT at 64 tiles 45.9 vs 44.5 ms.
// The staging slots cost the fourth stage (227 KB of shared memory), so each stage goes back to the
// producer as soon as the warpgroup's own MMAs on it are done.
#include <algorithm>
#include <atomic>
#include <mutex>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int BM = 128, TN = 256; // CTA tile
constexpr int CL = 2;             // CTAs per cluster: row blocks 2t and 2t + 1 at one n0, w's halves multicast
constexpr int BK = 64;            // K per stage: one 128-byte swizzle row of bf16
constexpr int STAGES = 3;
// warpgroup 0: producer warp + 3 out warps; 1, 2: consumers. 168 registers each: the m64n256 wgmma needs
// 154 at the kernel's register limit (setmaxnreg only moves registers between regions of it)
constexpr int THREADS = 384;
constexpr int OUT_WARPS = 3;
constexpr int CHUNKS = 4; // 16-byte chunks per out-warp lane and step: 32 GELUs in flight
constexpr uint32_t A_BYTES = BM * BK * 2, STAGE = (BM + TN) * BK * 2;
constexpr uint32_t OUT_SLOT = 64 * 128; // one 64 x 64 bf16 output block, staged for a TMA store
constexpr int SLOTS = 4;                // per consumer warpgroup: its whole 64 x 256 tile
// the tile's bias pairs per consumer warpgroup, two tiles' worth
constexpr uint32_t BIAS_BYTES = 2 * 2 * (TN / 2) * 4;
// stages, staging slots, bias, mbarriers (stage full/empty, slot full/empty), slack to align to 1024
constexpr uint32_t SMEM = 1024 + STAGES * STAGE + 2 * SLOTS * OUT_SLOT + BIAS_BYTES + (2 * STAGES + 4 * SLOTS) * 8;
static_assert(SMEM <= 227 * 1024, "over the sm_90 shared-memory limit per block");
constexpr int LUT_N = 65536; // GELU table entries: every bf16 input

// ---- epilogue arithmetic -------------------------------------------------------------------

// The GELU of two bf16 values packed in a word (low half first), from the table.
__device__ __forceinline__ uint32_t gelu_pair_lut(uint32_t v, cudaTextureObject_t lut) {
    return __byte_perm(tex1Dfetch<unsigned short>(lut, (int)(v & 0xFFFFu)),
                       tex1Dfetch<unsigned short>(lut, (int)(v >> 16)), 0x5410);
}
// CHUNKS 16-byte chunks of bf16 through the GELU in place (32 fetches in flight per lane).
__device__ __forceinline__ void gelu_chunks(uint4 (&v)[CHUNKS], cudaTextureObject_t lut) {
#pragma unroll
    for (int i = 0; i < CHUNKS; i++)
        v[i] = make_uint4(gelu_pair_lut(v[i].x, lut), gelu_pair_lut(v[i].y, lut), gelu_pair_lut(v[i].z, lut),
                          gelu_pair_lut(v[i].w, lut));
}

__device__ __forceinline__ float2 bf16x2_f2(uint32_t v) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
}

// lut[b] = the GELU pass's result (mvl_gelu_erf, rounded to bf16) for the bf16 input with bits b; LUT_N threads.
__global__ void k_gelu_lut_fill(uint16_t *lut) {
    const uint32_t b = blockIdx.x * blockDim.x + threadIdx.x;
    lut[b] = (uint16_t)pack_bf16(mvl_gelu_erf(__uint_as_float(b << 16)), 0.f);
}

// ---- the kernel --------------------------------------------------------------------------

// Cluster tiles of an m x n output (what the kernel's static list holds; on the host: the launch and
// mvl_cuda_linear_sm90_fill).
constexpr int64_t cluster_tiles(int64_t m, int64_t n) { return ((m + BM - 1) / BM + CL - 1) / CL * (n / TN); }

// The first row and column of tile t of the static list (n fastest) for the cluster's CTA `rank`: cluster tile
// t covers row blocks CL (t / n_tiles) .. + CL - 1 at one n0.
__device__ __forceinline__ int2 tile_origin(int t, int n_tiles, int rank) {
    return make_int2((t / n_tiles * CL + rank) * BM, t % n_tiles * TN);
}

template <int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_gemm_sm90(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                const __grid_constant__ CUtensorMap ty, const bf16 *__restrict__ bias, cudaTextureObject_t lut, int m,
                int n, int k) {
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_align1024(smem_raw);
    uint8_t *out_slots = smem + STAGES * STAGE; // consumer warpgroup c, block q: slot c * SLOTS + q
    // bias pairs [c][tile parity][128]: each consumer thread puts one during the main loop, so the epilogue
    // reads none from global memory
    uint32_t *bias_sm = reinterpret_cast<uint32_t *>(out_slots + 2 * SLOTS * OUT_SLOT);
    uint64_t *full = reinterpret_cast<uint64_t *>(out_slots + 2 * SLOTS * OUT_SLOT + BIAS_BYTES),
             *empty = full + STAGES;
    uint64_t *slot_full = empty + STAGES, *slot_empty = slot_full + 2 * SLOTS;
    const int n_tiles = n / TN, tiles = ((m + BM - 1) / BM + CL - 1) / CL * n_tiles, kblocks = k / BK;
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int rank = (int)cluster_ctarank(), cid = blockIdx.x / CL, clusters = gridDim.x / CL;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 8 * CL); // consumer warps
        for (int o = 0; o < 2 * SLOTS; o++) mbar_init(&slot_full[o], 4), mbar_init(&slot_empty[o], 1);
        mbar_fence_init();
    }
    cluster_sync(); // no multicast lands in a CTA before its barriers are made
    pdl_wait();
    pdl_trigger();

    if (wg == 0) {
        if (warp == 0) {
            if (lane != 0) return;
            // one thread issues every TMA load, stages in order over the CTA's tiles
            int s = 0;
            uint32_t ph = 0;
            for (int t = cid; t < tiles; t += clusters) {
                // a row block wholly past m: any x, for consumers that skip it
                const int2 org = tile_origin(t, n_tiles, rank);
                const int m0 = org.x < m ? org.x : 0, n0 = org.y;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&empty[s], ph ^ 1); // a fresh barrier passes parity 1 at once
                    uint8_t *st = smem + s * STAGE;
                    mbar_arrive_expect_tx(&full[s], STAGE); // rows past m arrive zero-filled, still counted
                    tma_load_2d(st, &tx, &full[s], kb * BK, m0);
                    // this CTA's share of w, into every CTA of the cluster (their shares may land first: the
                    // tx-count goes negative for a while, and the phase cannot complete before this arrive)
                    tma_load_2d_multicast(st + A_BYTES + rank * (TN / CL) * 128, &tw, &full[s], kb * BK,
                                          n0 + rank * (TN / CL), (1u << CL) - 1);
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
            }
            // the other CTAs' consumers arrive on this CTA's barriers until their last stage: the CTA (its
            // shared memory) stays until every stage has come back once more
            for (int i = 0; i < STAGES; i++) {
                mbar_wait(&empty[s], ph ^ 1);
                if (++s == STAGES) s = 0, ph ^= 1;
            }
            return;
        }
        // out warps: the 8 blocks of each tile round-robin; each applies the GELU to a whole block, then one
        // lane TMA-stores it and hands the slot back once the store has read it
        const int ow = warp - 1;
        int it = 0;
        for (int t = cid; t < tiles; t += clusters, it++) {
            const int2 org = tile_origin(t, n_tiles, rank);
            const int m0 = org.x, n0 = org.y;
            for (int b = 0; b < 2 * SLOTS; b++) {
                const int c = b % 2, q = b / 2, o = c * SLOTS + q;
                // the consumers skip a warpgroup tile wholly past m; such tiles are the CTA's last ones (the last
                // row of clusters), so the slot parities below stay right
                if ((it * 2 * SLOTS + b) % OUT_WARPS != ow || m0 + 64 * c >= m) continue;
                uint8_t *buf = out_slots + o * OUT_SLOT;
                mbar_wait(&slot_full[o], it & 1);
                if (EPI != MVL_EPI_NONE) {
                    // elementwise, so the staging layout does not matter: CHUNKS 16-byte chunks per lane and step
                    uint4 *b4 = reinterpret_cast<uint4 *>(buf) + lane;
#pragma unroll 1
                    for (int i0 = 0; i0 < (int)(OUT_SLOT / 16 / 32); i0 += CHUNKS) {
                        uint4 v[CHUNKS];
#pragma unroll
                        for (int i = 0; i < CHUNKS; i++) v[i] = b4[32 * (i0 + i)];
                        gelu_chunks(v, lut);
#pragma unroll
                        for (int i = 0; i < CHUNKS; i++) b4[32 * (i0 + i)] = v[i];
                    }
                    fence_proxy_async();
                }
                __syncwarp();
                if (lane == 0) {
                    tma_store_2d(&ty, buf, n0 + 64 * q, m0 + 64 * c);
                    bulk_commit();
                    bulk_wait_read<0>();
                    mbar_arrive(&slot_empty[o]);
                }
                __syncwarp();
            }
        }
        if (lane == 0) bulk_wait_all();
        return;
    }

    const int c = wg - 1;
    float acc[128];
#pragma unroll
    for (int i = 0; i < 128; i++) acc[i] = 0.f;
    int s = 0, it = 0;
    uint32_t ph = 0;
    const int ct = threadIdx.x % 128; // (w, l): rows r = 16w + l / 4 and r + 8 of the warpgroup tile
    for (int t = cid; t < tiles; t += clusters, it++) {
        const int2 org = tile_origin(t, n_tiles, rank);
        const int m0 = org.x + c * 64, n0 = org.y;
        // a warpgroup tile wholly past m (the fc1 at 64 tiles: 36928 = 288.5 * 128 rows, so in the last row of
        // clusters rank 0's second warpgroup and all of rank 1) skips its MMAs and staging, not the barriers
        const bool live = m0 < m;
        uint32_t *bsm = bias_sm + (c * 2 + (it & 1)) * (TN / 2);
        uint32_t bpair = 0; // this thread's bias pair of the tile, to shared memory after the first k block
        if (bias) bpair = reinterpret_cast<const uint32_t *>(bias + n0)[ct];
#pragma unroll 1
        for (int kb = 0; kb < kblocks; kb++) {
            mbar_wait(&full[s], ph);
            if (live) {
                const uint8_t *st = smem + s * STAGE;
                const uint64_t da = wgmma_desc(st + c * 64 * 128, 16, 1024), db = wgmma_desc(st + A_BYTES, 16, 1024);
                wgmma_fence();
#pragma unroll
                for (int kk = 0; kk < BK / 16; kk++)
                    wgmma_m64n256k16_ss<0, 0>(acc, da + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                wgmma_commit();
            }
            // the stage goes back as soon as this warpgroup's MMAs on it are done: with 3 stages, keeping one
            // in flight behind the next stage's MMAs would leave the producer a single stage of lead (measured
            // slower); the other warpgroup's MMAs keep the tensor cores busy meanwhile
            wgmma_wait<0>();
            if (lane == 0) // in every CTA of the cluster: each wrote a share of this stage here
                for (int r = 0; r < CL; r++) mbar_arrive_cluster(&empty[s], r);
            if (kb == 0) bsm[ct] = bpair;
            if (++s == STAGES) s = 0, ph ^= 1;
        }
        wgmma_fence_regs(acc);
        if (!live) continue;
        // the warpgroup's bias pairs are in shared memory (the buffer of tile it - 2 was read before the
        // barrier of tile it - 1)
        warpgroup_bar(2 + c); // consumer warpgroup c's barrier
        // Epilogue: acc + bias rounded to bf16 (the Linear's output; torch rounds it before the GELU) into the
        // 4 slots, 64 x 64 block q in slot q, in the 128-byte swizzle layout the TMA store reads (16-byte
        // chunk j of row r at chunk j ^ (r % 8): each 8 x 8 matrix's rows hit distinct banks). Thread (w, l)
        // holds rows r, r + 8 and columns 8j + 2(l % 4) (+1) in acc[4j..4j+3] (the m64nN accumulator layout),
        // which for columns 8j.. of rows r and r + 8 are the fragments of two 8 x 8 matrices: one stmatrix
        // stores two j. Both warpgroups reach this point together and the tensor cores idle meanwhile, so its
        // instructions count (H100, bench 64, two runs: with 4 plain stores per two j, fc1 + GELU 0.478-0.484 ms
        // per call and qkv 0.328; with stmatrix 0.456-0.459 and 0.319-0.320, cuBLASLt qkv 0.321-0.327).
#pragma unroll
        for (int q = 0; q < SLOTS; q++) {
            uint8_t *buf = out_slots + (c * SLOTS + q) * OUT_SLOT;
            mbar_wait(&slot_empty[c * SLOTS + q], (it & 1) ^ 1); // a fresh barrier passes parity 1
#pragma unroll
            for (int jj = 0; jj < 8; jj += 2) {
                uint32_t pk[4];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const int j = 8 * q + jj + h;
                    const float2 b = bf16x2_f2(bsm[4 * j + lane % 4]);
                    pk[2 * h] = pack_bf16(acc[4 * j] + b.x, acc[4 * j + 1] + b.y);
                    pk[2 * h + 1] = pack_bf16(acc[4 * j + 2] + b.x, acc[4 * j + 3] + b.y);
                }
                // lane l: row l % 8 of matrix l / 8 (rows + 8 for odd matrices, chunk jj + 1 for the last two)
                const int row = 16 * (ct / 32) + (lane & 8) + (lane & 7), chunk = jj + (lane >> 4);
                stsm_x4(buf + row * 128 + ((chunk ^ (lane & 7)) << 4), pk[0], pk[1], pk[2], pk[3]);
            }
            // with no GELU the out warps only store, so the writers fence for the TMA themselves
            if (EPI == MVL_EPI_NONE) fence_proxy_async();
            __syncwarp();
            if (lane == 0) mbar_arrive(&slot_full[c * SLOTS + q]);
        }
    }
}

// The GELU table and its texture object, made on a device's first GELU call and kept for the process.
struct GeluLut {
    bool ready;
    void *mem; // holds the LUT_N bf16 entries at the device's texture alignment
    cudaTextureObject_t tex;
};
constexpr int MAX_DEVICES = 64;
GeluLut g_luts[MAX_DEVICES];
std::mutex g_luts_mu;

mvl_status gelu_lut_make(GeluLut *l, int dev, cudaStream_t s, mvl_error *err) {
    int align;
    CUDA_CHECK(cudaDeviceGetAttribute(&align, cudaDevAttrTextureAlignment, dev));
    CUDA_CHECK(cudaMalloc(&l->mem, LUT_N * 2 + align));
    uint16_t *lut = reinterpret_cast<uint16_t *>(((uintptr_t)l->mem + align - 1) / align * align);
    k_gelu_lut_fill<<<LUT_N / 256, 256, 0, s>>>(lut);
    LAUNCH_CHECK();
    // once: GEMMs on other streams of the device read it too (so not inside a graph capture)
    CUDA_CHECK(cudaStreamSynchronize(s));
    cudaResourceDesc rd;
    memset(&rd, 0, sizeof rd);
    rd.resType = cudaResourceTypeLinear;
    rd.res.linear.devPtr = lut;
    rd.res.linear.desc = cudaCreateChannelDesc<unsigned short>();
    rd.res.linear.sizeInBytes = LUT_N * 2;
    cudaTextureDesc td;
    memset(&td, 0, sizeof td);
    td.readMode = cudaReadModeElementType;
    CUDA_CHECK(cudaCreateTextureObject(&l->tex, &rd, &td, nullptr));
    return MVL_OK;
}

// The current device, an index into the per-device state below (the GELU table, the resident clusters).
mvl_status current_device(int *dev, mvl_error *err) {
    CUDA_CHECK(cudaGetDevice(dev));
    if (*dev < 0 || *dev >= MAX_DEVICES)
        return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: device %d: the sm_90a GEMM keeps its state for devices 0..%d",
                        __FILE__, __LINE__, *dev, MAX_DEVICES - 1);
    return MVL_OK;
}

// The current device's table (made on `s` the first time).
mvl_status gelu_lut_get(cudaStream_t s, cudaTextureObject_t *tex, mvl_error *err) {
    int dev;
    TRY(current_device(&dev, err));
    std::lock_guard<std::mutex> lock(g_luts_mu);
    GeluLut *l = &g_luts[dev];
    if (!l->ready) {
        const mvl_status st = gelu_lut_make(l, dev, s, err);
        if (st != MVL_OK) {
            if (l->mem) cudaFree(l->mem);
            *l = GeluLut{};
            return st;
        }
        l->ready = true;
    }
    *tex = l->tex;
    return MVL_OK;
}

template <int EPI>
mvl_status launch(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, const bf16 *bias,
                  bf16 *y, mvl_error *err) {
    CUtensorMap tx, tw, ty;
    const uint64_t dx[2] = {(uint64_t)k, (uint64_t)m}, dw[2] = {(uint64_t)k, (uint64_t)n}, row[1] = {(uint64_t)k * 2};
    const uint64_t dy[2] = {(uint64_t)n, (uint64_t)m}, yrow[1] = {(uint64_t)n * 2};
    const uint32_t bx[2] = {BK, BM}, bw[2] = {BK, TN / CL}, by[2] = {64, 64};
    TRY(mvl_cuda_tensor_map_bf16(&tx, x, 2, dx, row, bx, err));
    TRY(mvl_cuda_tensor_map_bf16(&tw, w, 2, dw, row, bw, err));
    TRY(mvl_cuda_tensor_map_bf16(&ty, y, 2, dy, yrow, by, err));
    cudaTextureObject_t lut = 0;
    if (EPI == MVL_EPI_GELU) TRY(gelu_lut_get(s, &lut, err));
    int sms; // of the current device, as the shared-memory limit below
    TRY(mvl_cuda_sm_count(&sms, err));
    CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    const int64_t tiles = cluster_tiles(m, n);
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[2];
    mvl_cuda_pdl_config(&cfg, attr, dim3(sms / CL * CL), dim3(THREADS), SMEM, s, CL);
    // persistent: as many clusters as can be resident at once (a cluster's CTAs share a GPC), asked of the runtime
    // once per device
    int dev;
    TRY(current_device(&dev, err));
    static std::atomic<int> resident[MAX_DEVICES];
    int clusters = resident[dev].load(std::memory_order_relaxed);
    if (clusters == 0) {
        CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, k_gemm_sm90<EPI>, &cfg));
        if (clusters < 1)
            return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: no cluster of %d CTAs of the sm_90a GEMM fits device %d",
                            __FILE__, __LINE__, CL, dev);
        resident[dev].store(clusters, std::memory_order_relaxed);
    }
    cfg.gridDim = dim3((unsigned)(std::min<int64_t>(tiles, clusters) * CL));
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, k_gemm_sm90<EPI>, tx, tw, ty, bias, lut, (int)m, (int)n, (int)k));
    return MVL_OK;
}

// The fused epilogue's GELU on n8 16-byte chunks, CHUNKS per thread and step.
__global__ void k_gelu_chunks(const uint4 *x, uint4 *y, int64_t n8, cudaTextureObject_t lut) {
    const int64_t stride = CHUNKS * (int64_t)gridDim.x * blockDim.x;
    for (int64_t i0 = 0; i0 < n8; i0 += stride) {
        const int64_t i = i0 + CHUNKS * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);
        uint4 v[CHUNKS];
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) v[j] = i + j < n8 ? x[i + j] : make_uint4(0, 0, 0, 0);
        gelu_chunks(v, lut);
#pragma unroll
        for (int j = 0; j < CHUNKS; j++)
            if (i + j < n8) y[i + j] = v[j];
    }
}

} // namespace

bool mvl_cuda_linear_sm90_ok(int64_t m, int64_t k, int64_t n) {
    return m >= 1 && m < (int64_t)1 << 31 && k >= BK && k % BK == 0 && k < (int64_t)1 << 31 && n >= TN &&
           n % TN == 0 && n < (int64_t)1 << 31 && (m / BM + 1) * (n / TN) < (int64_t)1 << 31; // int tile ids
}

double mvl_cuda_linear_sm90_fill(int64_t m, int64_t n, int sms) {
    const int64_t clusters = std::max(1, sms / CL), tiles = cluster_tiles(m, n);
    return tiles < 1 ? 1.0 : (double)tiles / ((tiles + clusters - 1) / clusters * clusters);
}

mvl_status mvl_cuda_linear_sm90(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                                const bf16 *bias, bf16 *y, int epi, mvl_error *err) {
    if (!mvl_cuda_linear_sm90_ok(m, k, n))
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 does not take a %lld x %lld x %lld GEMM",
                        __FILE__, __LINE__, (long long)m, (long long)n, (long long)k);
    if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) % 16 || (uintptr_t)bias % 4)
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 needs 16-byte aligned x, w, y", __FILE__,
                        __LINE__);
    return epi == MVL_EPI_GELU ? launch<MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                               : launch<MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
}

mvl_status mvl_cuda_sm90_gelu(cudaStream_t s, const bf16 *x, bf16 *y, int64_t n, mvl_error *err) {
    if (n < 0 || n % 8 || ((uintptr_t)x | (uintptr_t)y) % 16)
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_sm90_gelu takes 16-byte aligned chunks of 8 bf16", __FILE__,
                        __LINE__);
    if (n == 0) return MVL_OK;
    cudaTextureObject_t lut;
    TRY(gelu_lut_get(s, &lut, err));
    k_gelu_chunks<<<mvl_grid_for(n / 8 / CHUNKS, 256), 256, 0, s>>>(reinterpret_cast<const uint4 *>(x),
                                                                     reinterpret_cast<uint4 *>(y), n / 8, lut);
    LAUNCH_CHECK();
    return MVL_OK;
}
