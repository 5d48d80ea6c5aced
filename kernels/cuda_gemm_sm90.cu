// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation. TMA loads 64-wide K slices of x and w into 128-byte-swizzled shared-memory stages
// (the wgmma K-major layout); one producer thread feeds 4 stages through full/empty mbarriers; two consumer
// warpgroups run wgmma from shared memory on a 128 x 256 CTA tile (warpgroup c: rows 64c.., one m64n256
// wgmma per k16). Persistent: one CTA per SM walks a static tile list, n fastest, so the CTAs in flight share
// a few row blocks of x and all of w in L2. The epilogue goes through swizzled shared memory and TMA stores
// (64 x 64 blocks; stores straight from the accumulators were LSU-bound: 500 vs 640 TFLOP/s on an H100).
// Schedules, with ms per call on an H100 at the ViT's fc1 shape at 64 tiles (M 36928, N 4096, K 1024; one
// run of tests/gpu_gemm_sm90.cu bench, where cuBLASLt with its bias epilogue took 0.423):
// - EXPOSED: the epilogue after each tile's main loop (0.444; with GELU 0.780);
// - OVERLAP: a tile's bf16 outputs wait in registers and its epilogue runs in 16 slices between the next
//   tile's k blocks (0.415, 746 TFLOP/s; with GELU 0.750: the erf GELU's ALU work next to in-flight wgmma
//   ran ~3x slower than alone, so it hides nothing);
// - TABLE: as OVERLAP, the GELU read from a shared-memory table of its bf16 results for the bf16 inputs
//   with 2^-12 <= |x| < 16 (built per CTA with the same arithmetic, so the same bits; erff for the rest)
//   (0.678-0.725 with GELU). Looking the table up when the tile is packed instead measured 1.34.
// The fused GELU thus stays slower than cuBLASLt + the separate 16-byte GELU pass (~0.45 + 0.22 in the ViT).
// Earlier variants (stores from registers: LSU-bound, 0.62; ping-pong 128 x 128 warpgroup tiles, 0.65;
// 2-CTA clusters multicasting the w tile, 0.48) were dropped (git history: df19269).
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

#include <stdlib.h>

namespace {

constexpr int BM = 128, TN = 256; // CTA tile
constexpr int BK = 64;            // K per stage: one 128-byte swizzle row of bf16
constexpr int STAGES = 4;
constexpr int THREADS = 384;      // producer warpgroup + 2 consumer warpgroups
constexpr int PRODUCER_REGS = 24, CONSUMER_REGS = 240;
constexpr uint32_t A_BYTES = BM * BK * 2, STAGE = (BM + TN) * BK * 2;
constexpr uint32_t OUT_SLOT = 64 * 128; // one 64 x 64 bf16 output block staged for a TMA store
// GELU table: bf16 inputs with exponent field 115..130 (2^-12 <= |x| < 16), both signs.
constexpr int TAB_EXP0 = 115, TAB_SIZE = 2 * 16 * 128;

// SLOTS: output staging slots per consumer warpgroup (one when the table takes the room of the second);
// SMEM: stages, staging, table, mbarriers, and slack to align the stages to 1024 bytes.
template <int SCHED> struct Sched {
    static constexpr bool OVERLAP = SCHED != MVL_SM90_EXPOSED;
    static constexpr bool TABLE = SCHED == MVL_SM90_TABLE;
    static constexpr int SLOTS = TABLE ? 1 : 2;
    static constexpr uint32_t OUT = 2 * SLOTS * OUT_SLOT, TAB = TABLE ? TAB_SIZE * 2 : 0;
    static constexpr uint32_t SMEM = 1024 + STAGES * STAGE + OUT + TAB + STAGES * 16;
};

// ---- TMA stores and named barriers (sm_90) ----------------------------------------------

__device__ __forceinline__ void tma_store_2d(const CUtensorMap *map, const void *src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%2, %3}], [%1];\n" ::"l"((uint64_t)map),
                 "r"(smem_u32(src)), "r"(c0), "r"(c1)
                 : "memory");
}
__device__ __forceinline__ void bulk_commit() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }
// Until at most N committed stores still read shared memory / are still in flight.
template <int N> __device__ __forceinline__ void bulk_wait_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void bulk_wait_all() { asm volatile("cp.async.bulk.wait_group 0;\n" ::: "memory"); }
// Ordinary shared-memory stores before a TMA (async proxy) read of them.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
// Barrier `id` (1..15; 0 is __syncthreads') over one warpgroup.
__device__ __forceinline__ void warpgroup_bar(int id) { asm volatile("bar.sync %0, 128;\n" ::"r"(id) : "memory"); }

// ---- epilogue arithmetic -------------------------------------------------------------------

// GELU of a bf16 value (bits) as k_gelu8 in cuda_vit.cu computes it: 0.5 x (1 + erf(x / sqrt 2)) in fp32,
// rounded to bf16 (vision.md: exact erf GELU).
__device__ __forceinline__ uint32_t gelu_bits(uint32_t b) {
    const float x = __uint_as_float(b << 16);
    return __bfloat16_as_ushort(__float2bfloat16_rn(0.5f * x * (1.0f + erff(x * 0.70710678118654752f))));
}
// The same through the table where it holds the input.
__device__ __forceinline__ uint32_t gelu_bits_tab(uint32_t b, const uint16_t *tab) {
    const uint32_t e = ((b >> 7) & 0xFF) - TAB_EXP0; // wraps below the range
    if (__builtin_expect(e < 16, 1)) return tab[((b >> 4) & 0x800) | (e << 7) | (b & 0x7F)];
    return gelu_bits(b);
}
__device__ __forceinline__ uint32_t gelu_pair_tab(uint32_t v, const uint16_t *tab) {
    return gelu_bits_tab(v & 0xFFFF, tab) | gelu_bits_tab(v >> 16, tab) << 16;
}
__device__ __forceinline__ uint32_t gelu_pair(uint32_t v) { return gelu_bits(v & 0xFFFF) | gelu_bits(v >> 16) << 16; }

__device__ __forceinline__ float2 bias_pair(const bf16 *bias, int64_t col) {
    return bias ? __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + col)) : make_float2(0.f, 0.f);
}

// After a tile's main loop each thread packs its 128 accumulators + bias into 64 bf16 pairs (the Linear's
// rounded output; torch rounds it before the GELU): p[2j] = row r, p[2j + 1] = row r + 8, columns
// 8j + 2(l % 4) (+1), r = 16 w + l / 4 for warp w, lane l of the warpgroup (the m64nN accumulator layout).
__device__ __forceinline__ void pack_acc(const float (&d)[128], uint32_t (&p)[64], const bf16 *bias, int col0) {
    const int64_t c = col0 + 2 * (threadIdx.x % 4);
#pragma unroll
    for (int j = 0; j < 32; j++) {
        const float2 b = bias_pair(bias, c + 8 * j);
        p[2 * j] = pack_bf16(d[4 * j] + b.x, d[4 * j + 1] + b.y);
        p[2 * j + 1] = pack_bf16(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
    }
}

// Epilogue slice i (0..15) of a packed 64 x 256 warpgroup tile: pairs j = 2i, 2i + 1 (GELU'd when `gelu`)
// into 64 x 64 block i / 4, staged in the 128-byte swizzle layout (16-byte chunk c of row r at chunk
// c ^ (r % 8): a warp's stores hit 32 distinct banks); the block's last slice sends it by TMA store, which
// drops rows past m. Barrier `bar` is the warpgroup's.
template <int SLOTS>
__device__ __forceinline__ void epi_slice(const uint32_t (&p)[64], int i, int gelu, const uint16_t *tab,
                                          uint8_t *slots, const CUtensorMap *ty, int row0, int col0, int bar) {
    const int t = threadIdx.x % 128, w = t / 32, l = t % 32, r = 16 * w + l / 4, q = i / 4;
    uint8_t *buf = slots + (q % SLOTS) * OUT_SLOT;
    if (i % 4 == 0) {
        if (t == 0) bulk_wait_read<SLOTS - 1>(); // the store that last used this slot has read it
        warpgroup_bar(bar);
    }
    if (gelu) {
        // one pair at a time (a rolled loop, constant register indices through selects) keeps the GELU's
        // temporaries few next to the 128 accumulators and the 64 pairs
#pragma unroll 1
        for (int e = 0; e < 4; e++) {
            const int jj = (2 * i + e / 2) % 8;
            const uint32_t v = e == 0 ? p[4 * i] : e == 1 ? p[4 * i + 1] : e == 2 ? p[4 * i + 2] : p[4 * i + 3];
            const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (l % 4) * 4 + (e % 2) * 8 * 128;
            *reinterpret_cast<uint32_t *>(buf + off) = gelu == 2 ? gelu_pair_tab(v, tab) : gelu_pair(v);
        }
    } else {
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int jj = (2 * i + e / 2) % 8;
            const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (l % 4) * 4 + (e % 2) * 8 * 128;
            *reinterpret_cast<uint32_t *>(buf + off) = p[4 * i + e];
        }
    }
    if (i % 4 == 3) {
        fence_proxy_async();
        warpgroup_bar(bar);
        if (t == 0) {
            tma_store_2d(ty, buf, col0 + q * 64, row0);
            bulk_commit();
        }
    }
}

// ---- the kernel --------------------------------------------------------------------------

template <int SCHED, int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_gemm_sm90(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                const __grid_constant__ CUtensorMap ty, const bf16 *__restrict__ bias, int m, int n, int k) {
    using S = Sched<SCHED>;
    extern __shared__ uint8_t smem_raw[];
    // Swizzled tiles need 1024-byte-aligned atoms.
    uint8_t *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    uint8_t *out_slots = smem + STAGES * STAGE;
    uint16_t *tab = reinterpret_cast<uint16_t *>(out_slots + S::OUT);
    uint64_t *full = reinterpret_cast<uint64_t *>(out_slots + S::OUT + S::TAB), *empty = full + STAGES;
    const int n_tiles = n / TN, tiles = (m + BM - 1) / BM * n_tiles, kblocks = k / BK;
    const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;
    // How the epilogue slices apply the GELU: 0 none, 1 erff, 2 table.
    constexpr int SLICE_GELU = EPI != MVL_EPI_GELU ? 0 : S::TABLE ? 2 : 1;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 8); // 8 consumer warps
        mbar_fence_init();
    }
    if (S::TABLE && EPI == MVL_EPI_GELU)
        for (int i = threadIdx.x; i < TAB_SIZE; i += THREADS)
            tab[i] = (uint16_t)gelu_bits((uint32_t)(i & 0x800) << 4 | (uint32_t)(((i >> 7) & 15) + TAB_EXP0) << 7 |
                                         (uint32_t)(i & 0x7F));
    __syncthreads();

    if (wg == 0) { // producer: one thread issues every TMA load, stages in order over the CTA's tiles
        warpgroup_reg_dealloc<PRODUCER_REGS>();
        if (threadIdx.x == 0) {
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
        }
        return;
    }
    warpgroup_reg_alloc<CONSUMER_REGS>();
    const int c = wg - 1, bar = 1 + c;
    float acc[128];
    uint32_t p[64]; // a tile's packed bf16 outputs waiting for their epilogue
#pragma unroll
    for (int i = 0; i < 128; i++) acc[i] = 0.f;
    int s = 0, prev = 0, pend_m0 = -1, pend_n0 = 0;
    uint32_t ph = 0;
    uint8_t *slots = out_slots + c * S::SLOTS * OUT_SLOT;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int m0 = t / n_tiles * BM + c * 64, n0 = t % n_tiles * TN;
        // k blocks in groups of 16, so that epilogue slice i of the previous tile, run after k block i's
        // MMAs are issued, indexes p with constants
        for (int kb0 = 0; kb0 < kblocks; kb0 += 16) {
#pragma unroll
            for (int i = 0; i < 16; i++) {
                const int kb = kb0 + i;
                if (kb < kblocks) {
                    mbar_wait(&full[s], ph);
                    const uint8_t *st = smem + s * STAGE;
                    const uint64_t da = wgmma_desc(st + c * 64 * 128, 16, 1024), db = wgmma_desc(st + A_BYTES, 16, 1024);
                    wgmma_fence();
#pragma unroll
                    for (int kk = 0; kk < BK / 16; kk++)
                        wgmma_m64n256k16_ss<0, 0>(acc, da + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                    wgmma_commit();
                    wgmma_wait<1>(); // the previous stage's MMAs are done: hand it back
                    if (kb > 0 && lane == 0) mbar_arrive(&empty[prev]);
                    prev = s;
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
                if (S::OVERLAP && kb0 == 0 && pend_m0 >= 0)
                    epi_slice<S::SLOTS>(p, i, SLICE_GELU, tab, slots, &ty, pend_m0, pend_n0, bar);
            }
        }
        wgmma_wait<0>();
        wgmma_fence_regs(acc);
        if (lane == 0) mbar_arrive(&empty[prev]);
        pack_acc(acc, p, bias, n0);
        if (S::OVERLAP) pend_m0 = m0, pend_n0 = n0;
        else {
#pragma unroll
            for (int i = 0; i < 16; i++) epi_slice<S::SLOTS>(p, i, SLICE_GELU, tab, slots, &ty, m0, n0, bar);
        }
    }
    if (S::OVERLAP && pend_m0 >= 0) {
#pragma unroll
        for (int i = 0; i < 16; i++) epi_slice<S::SLOTS>(p, i, SLICE_GELU, tab, slots, &ty, pend_m0, pend_n0, bar);
    }
    if (threadIdx.x % 128 == 0) bulk_wait_all(); // shared memory stays until the stores have read it
}

template <int SCHED, int EPI>
mvl_status launch(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, const bf16 *bias,
                  bf16 *y, mvl_error *err) {
    using S = Sched<SCHED>;
    CUtensorMap tx, tw, ty;
    const uint64_t dx[2] = {(uint64_t)k, (uint64_t)m}, dw[2] = {(uint64_t)k, (uint64_t)n}, row[1] = {(uint64_t)k * 2};
    const uint64_t dy[2] = {(uint64_t)n, (uint64_t)m}, yrow[1] = {(uint64_t)n * 2};
    const uint32_t bx[2] = {BK, BM}, bw[2] = {BK, TN}, by[2] = {64, 64};
    TRY(mvl_cuda_tensor_map_bf16(&tx, x, 2, dx, row, bx, err));
    TRY(mvl_cuda_tensor_map_bf16(&tw, w, 2, dw, row, bw, err));
    TRY(mvl_cuda_tensor_map_bf16(&ty, y, 2, dy, yrow, by, err));
    static int sms = 0; // once per kernel: the SM count and the dynamic shared-memory limit
    if (!sms) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<SCHED, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)S::SMEM));
    }
    const int64_t tiles = (m + BM - 1) / BM * (n / TN);
    k_gemm_sm90<SCHED, EPI><<<(unsigned)std::min<int64_t>(tiles, sms), THREADS, S::SMEM, s>>>(tx, tw, ty, bias, (int)m,
                                                                                          (int)n, (int)k);
    LAUNCH_CHECK();
    return MVL_OK;
}

template <int SCHED>
mvl_status launch_epi(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                      const bf16 *bias, bf16 *y, int epi, mvl_error *err) {
    return epi == MVL_EPI_GELU ? launch<SCHED, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                               : launch<SCHED, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
}

} // namespace

bool mvl_cuda_linear_sm90_ok(int64_t m, int64_t k, int64_t n) {
    return m >= 1 && m < (int64_t)1 << 31 && k >= BK && k % BK == 0 && k < (int64_t)1 << 31 && n >= TN &&
           n % TN == 0 && n < (int64_t)1 << 31 && (m / BM + 1) * (n / TN) < (int64_t)1 << 31; // int tile ids
}

mvl_status mvl_cuda_linear_sm90(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                                const bf16 *bias, bf16 *y, int epi, int sched, mvl_error *err) {
    if (!mvl_cuda_linear_sm90_ok(m, k, n))
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 does not take a %lld x %lld x %lld GEMM",
                        __FILE__, __LINE__, (long long)m, (long long)n, (long long)k);
    if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) % 16 || (uintptr_t)bias % 4)
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 needs 16-byte aligned x, w, y", __FILE__,
                        __LINE__);
    if (sched == MVL_SM90_AUTO) {
        // MVL_SM90_SCHED=<schedule number> overrides (benchmarking)
        static int forced = -1;
        if (forced < 0) {
            const char *e = getenv("MVL_SM90_SCHED");
            forced = e && atoi(e) > MVL_SM90_AUTO && atoi(e) <= MVL_SM90_TABLE ? atoi(e) : 0;
        }
        sched = forced ? forced : epi == MVL_EPI_GELU ? MVL_SM90_TABLE : MVL_SM90_OVERLAP;
    }
    switch (sched) {
    case MVL_SM90_EXPOSED: return launch_epi<MVL_SM90_EXPOSED>(s, x, m, k, w, n, bias, y, epi, err);
    case MVL_SM90_OVERLAP: return launch_epi<MVL_SM90_OVERLAP>(s, x, m, k, w, n, bias, y, epi, err);
    default: return launch_epi<MVL_SM90_TABLE>(s, x, m, k, w, n, bias, y, epi, err);
    }
}
