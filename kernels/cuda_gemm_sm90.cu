// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation, the exact erf GELU fused (issue 7's fc1 and the projector's linear_1).
// Roles of the 384 threads (one CTA per SM, persistent over a static tile list, n fastest, so the CTAs in
// flight share a few row blocks of x and all of w in L2):
// - warp 0, one thread: TMA loads of 64-wide K slices of x and w into 3 shared-memory stages (128-byte
//   swizzle, the wgmma K-major layout), through full/empty mbarriers;
// - warpgroups 1 and 2 (consumers): wgmma from shared memory on a 128 x 256 CTA tile (warpgroup c: rows
//   64c.., one m64n256 wgmma per k16); after a tile's main loop each thread writes acc + bias, rounded to
//   bf16, into 4 staging slots (its warpgroup's 64 x 256 tile as 64 x 64 blocks) and starts the next tile;
// - warps 1..3 (out warps): during the next main loop, each takes whole staged blocks, applies the GELU in
//   place and TMA-stores them.
// The GELU comes from a shared-memory table of its bf16 results (built with the same arithmetic, so the
// same bits; erff for inputs outside 2^-20 <= |x| < 16). Measured on an H100 at the fc1 shape for 64 tiles
// (M 36928, N 4096, K 1024; tests/gpu_gemm_sm90.cu bench), ms per call, cuBLASLt + the GELU pass 0.64-0.68:
// - GELU by the consumers between their wgmma issues (git 7db17ac): 0.68-0.78 (it delayed the next issue);
// - out warps with erff, p[64] held in registers and written in slices during the next main loop: 0.80
//   (3 out warps latency-bound on erff's ~28 instructions a value);
// - this layout with erff: 0.64; with the table: 0.479 (no GELU 0.438-0.449, cuBLASLt 0.423-0.427);
// - 4 stages with one staging slot per warpgroup, written a block every 4 k blocks (the out warps then
//   had 4 k blocks per block): 0.584-0.597.
// The staging slots cost the fourth stage (227 KB of shared memory), so each stage goes back to the
// producer as soon as the warpgroup's own MMAs on it are done.
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int BM = 128, TN = 256; // CTA tile
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
// GELU table: the bf16 results for the bf16 inputs with exponent field TAB_EXP0 .. TAB_EXP0 + TAB_EXPS - 1
// (2^-20 <= |x| < 16), both signs; erff for the rest.
constexpr int TAB_EXP0 = 107, TAB_EXPS = 24, TAB_HALF = TAB_EXPS * 128;
constexpr uint32_t TAB_BYTES = 2 * TAB_HALF * 2;
// the tile's bias pairs per consumer warpgroup, two tiles' worth
constexpr uint32_t BIAS_BYTES = 2 * 2 * (TN / 2) * 4;
// stages, staging slots, table, bias, mbarriers (stage full/empty, slot full/empty), slack to align to 1024
constexpr uint32_t SMEM =
    1024 + STAGES * STAGE + 2 * SLOTS * OUT_SLOT + TAB_BYTES + BIAS_BYTES + (2 * STAGES + 4 * SLOTS) * 8;
static_assert(SMEM <= 227 * 1024, "over the sm_90 shared-memory limit per block");

// ---- epilogue arithmetic -------------------------------------------------------------------

// GELU as the separate pass computes it (mvl_gelu_erf on the bf16 value, rounded to bf16); two bf16 values
// packed in a word, low half first.
__device__ __forceinline__ uint32_t gelu_pair(uint32_t v) {
    return pack_bf16(mvl_gelu_erf(__uint_as_float(v << 16)), mvl_gelu_erf(__uint_as_float(v & 0xFFFF0000u)));
}
// Fills the table with the same arithmetic, so it holds the same bits: entry sign * TAB_HALF + (e -
// TAB_EXP0) * 128 + mantissa for the input of that sign, exponent field e and mantissa.
__device__ __forceinline__ void gelu_table_fill(uint16_t *tab, int tid, int nthreads) {
    for (int i = tid; i < 2 * TAB_HALF; i += nthreads) {
        const uint32_t sign = i >= TAB_HALF, r = i - sign * TAB_HALF;
        const uint32_t b = sign << 15 | (uint32_t)(r / 128 + TAB_EXP0) << 7 | (r % 128);
        tab[i] = (uint16_t)pack_bf16(mvl_gelu_erf(__uint_as_float(b << 16)), 0.f);
    }
}
// One bf16 value through the table; `slow` set when the input is outside it.
__device__ __forceinline__ uint32_t gelu_tab(uint32_t b, const uint16_t *tab, bool &slow) {
    const uint32_t t = (b & 0x7FFFu) - (uint32_t)(TAB_EXP0 << 7);
    slow |= t >= (uint32_t)TAB_HALF;
    return tab[(b >> 15) * TAB_HALF + (t < (uint32_t)TAB_HALF ? t : 0)];
}
__device__ __forceinline__ uint32_t gelu_pair_tab(uint32_t v, const uint16_t *tab, bool &slow) {
    return gelu_tab(v & 0xFFFFu, tab, slow) | gelu_tab(v >> 16, tab, slow) << 16;
}
// CHUNKS 16-byte chunks of bf16 through the GELU in place, by a whole warp: the table, and erff for a lane
// with an input outside it, in a branch the warp takes together (so the compiler cannot predicate erff into
// every lookup).
__device__ __forceinline__ void gelu_chunks(uint4 (&v)[CHUNKS], const uint16_t *tab) {
    bool slow = false;
    uint4 r[CHUNKS];
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) {
        r[i].x = gelu_pair_tab(v[i].x, tab, slow), r[i].y = gelu_pair_tab(v[i].y, tab, slow);
        r[i].z = gelu_pair_tab(v[i].z, tab, slow), r[i].w = gelu_pair_tab(v[i].w, tab, slow);
    }
    if (__any_sync(~0u, slow) && slow) {
#pragma unroll
        for (int i = 0; i < CHUNKS; i++)
            r[i] = make_uint4(gelu_pair(v[i].x), gelu_pair(v[i].y), gelu_pair(v[i].z), gelu_pair(v[i].w));
    }
#pragma unroll
    for (int i = 0; i < CHUNKS; i++) v[i] = r[i];
}

__device__ __forceinline__ float2 bf16x2_f2(uint32_t v) {
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
}

// ---- the kernel --------------------------------------------------------------------------

template <int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_gemm_sm90(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                const __grid_constant__ CUtensorMap ty, const bf16 *__restrict__ bias, int m, int n, int k) {
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = smem_align1024(smem_raw);
    uint8_t *out_slots = smem + STAGES * STAGE; // consumer warpgroup c, block q: slot c * SLOTS + q
    uint16_t *tab = reinterpret_cast<uint16_t *>(out_slots + 2 * SLOTS * OUT_SLOT);
    // bias pairs [c][tile parity][128]: each consumer thread puts one during the main loop, so the epilogue
    // reads none from global memory
    uint32_t *bias_sm = reinterpret_cast<uint32_t *>(out_slots + 2 * SLOTS * OUT_SLOT + TAB_BYTES);
    uint64_t *full = reinterpret_cast<uint64_t *>(out_slots + 2 * SLOTS * OUT_SLOT + TAB_BYTES + BIAS_BYTES),
             *empty = full + STAGES;
    uint64_t *slot_full = empty + STAGES, *slot_empty = slot_full + 2 * SLOTS;
    const int n_tiles = n / TN, tiles = (m + BM - 1) / BM * n_tiles, kblocks = k / BK;
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 8); // 8 consumer warps
        for (int o = 0; o < 2 * SLOTS; o++) mbar_init(&slot_full[o], 4), mbar_init(&slot_empty[o], 1);
        mbar_fence_init();
    }
    if (EPI == MVL_EPI_GELU) gelu_table_fill(tab, threadIdx.x, THREADS);
    __syncthreads();

    if (wg == 0) {
        if (warp == 0) {
            if (lane != 0) return;
            // one thread issues every TMA load, stages in order over the CTA's tiles
            int s = 0;
            uint32_t ph = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
                const int m0 = t / n_tiles * BM, n0 = t % n_tiles * TN;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&empty[s], ph ^ 1); // a fresh barrier passes parity 1 at once
                    uint8_t *st = smem + s * STAGE;
                    mbar_arrive_expect_tx(&full[s], STAGE); // rows past m arrive zero-filled, still counted
                    tma_load_2d(st, &tx, &full[s], kb * BK, m0);
                    tma_load_2d(st + A_BYTES, &tw, &full[s], kb * BK, n0);
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
            }
            return;
        }
        // out warps: the 8 blocks of each tile round-robin; each applies the GELU to a whole block, then one
        // lane TMA-stores it and hands the slot back once the store has read it
        const int ow = warp - 1;
        int it = 0;
        for (int t = blockIdx.x; t < tiles; t += gridDim.x, it++) {
            const int m0 = t / n_tiles * BM, n0 = t % n_tiles * TN;
            for (int b = 0; b < 2 * SLOTS; b++) {
                const int c = b % 2, q = b / 2, o = c * SLOTS + q;
                // the consumers skip a warpgroup tile wholly past m; it is in the CTA's last tile, so the slot
                // parities below stay right
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
                        gelu_chunks(v, tab);
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
    const int ct = threadIdx.x % 128, r = 16 * (ct / 32) + lane / 4; // row r (and r + 8) of the warpgroup tile
    for (int t = blockIdx.x; t < tiles; t += gridDim.x, it++) {
        const int m0 = t / n_tiles * BM + c * 64, n0 = t % n_tiles * TN;
        // a warpgroup tile wholly past m (the last row block of the fc1 at 64 tiles: 36928 = 288.5 * 128)
        // leaves the tensor cores to the other warpgroup
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
            // in flight behind the next stage's MMAs would leave the producer a single stage of lead; the
            // other warpgroup's MMAs keep the tensor cores busy meanwhile
            wgmma_wait<0>();
            if (lane == 0) mbar_arrive(&empty[s]);
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
        // chunk j of row r at chunk j ^ (r % 8): a warp's stores hit 32 distinct banks). Thread (w, l) holds
        // rows r, r + 8 and columns 8j + 2(l % 4) (+1) in acc[4j..4j+3] (the m64nN accumulator layout).
#pragma unroll
        for (int q = 0; q < SLOTS; q++) {
            uint8_t *buf = out_slots + (c * SLOTS + q) * OUT_SLOT;
            mbar_wait(&slot_empty[c * SLOTS + q], (it & 1) ^ 1); // a fresh barrier passes parity 1
#pragma unroll
            for (int jj = 0; jj < 8; jj++) {
                const int j = 8 * q + jj;
                const float2 b = bf16x2_f2(bsm[4 * j + lane % 4]);
                const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (lane % 4) * 4;
                *reinterpret_cast<uint32_t *>(buf + off) = pack_bf16(acc[4 * j] + b.x, acc[4 * j + 1] + b.y);
                *reinterpret_cast<uint32_t *>(buf + off + 8 * 128) =
                    pack_bf16(acc[4 * j + 2] + b.x, acc[4 * j + 3] + b.y);
            }
            // with no GELU the out warps only store, so the writers fence for the TMA themselves
            if (EPI == MVL_EPI_NONE) fence_proxy_async();
            __syncwarp();
            if (lane == 0) mbar_arrive(&slot_full[c * SLOTS + q]);
        }
    }
}

template <int EPI>
mvl_status launch(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, const bf16 *bias,
                  bf16 *y, mvl_error *err) {
    CUtensorMap tx, tw, ty;
    const uint64_t dx[2] = {(uint64_t)k, (uint64_t)m}, dw[2] = {(uint64_t)k, (uint64_t)n}, row[1] = {(uint64_t)k * 2};
    const uint64_t dy[2] = {(uint64_t)n, (uint64_t)m}, yrow[1] = {(uint64_t)n * 2};
    const uint32_t bx[2] = {BK, BM}, bw[2] = {BK, TN}, by[2] = {64, 64};
    TRY(mvl_cuda_tensor_map_bf16(&tx, x, 2, dx, row, bx, err));
    TRY(mvl_cuda_tensor_map_bf16(&tw, w, 2, dw, row, bw, err));
    TRY(mvl_cuda_tensor_map_bf16(&ty, y, 2, dy, yrow, by, err));
    int sms; // of the current device, as the shared-memory limit below
    TRY(mvl_cuda_sm_count(&sms, err));
    CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    const int64_t tiles = (m + BM - 1) / BM * (n / TN);
    k_gemm_sm90<EPI><<<(unsigned)std::min<int64_t>(tiles, sms), THREADS, SMEM, s>>>(tx, tw, ty, bias, (int)m, (int)n,
                                                                                   (int)k);
    LAUNCH_CHECK();
    return MVL_OK;
}

// The fused epilogue's GELU on n8 16-byte chunks, CHUNKS per thread and step, whole warps throughout.
__global__ void k_gelu_chunks(const uint4 *x, uint4 *y, int64_t n8) {
    __shared__ uint16_t tab[2 * TAB_HALF];
    gelu_table_fill(tab, threadIdx.x, blockDim.x);
    __syncthreads();
    const int64_t stride = CHUNKS * (int64_t)gridDim.x * blockDim.x;
    for (int64_t i0 = 0; i0 < n8; i0 += stride) {
        const int64_t i = i0 + CHUNKS * (blockIdx.x * (int64_t)blockDim.x + threadIdx.x);
        uint4 v[CHUNKS];
#pragma unroll
        for (int j = 0; j < CHUNKS; j++) v[j] = i + j < n8 ? x[i + j] : make_uint4(0, 0, 0, 0);
        gelu_chunks(v, tab);
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
    k_gelu_chunks<<<mvl_grid_for(n / 8 / CHUNKS, 256), 256, 0, s>>>(reinterpret_cast<const uint4 *>(x),
                                                                     reinterpret_cast<uint4 *>(y), n / 8);
    LAUNCH_CHECK();
    return MVL_OK;
}
