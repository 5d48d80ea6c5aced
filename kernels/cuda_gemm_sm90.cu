// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation, the exact erf GELU fused (issue 7's fc1 and the projector's linear_1).
// Roles of the 384 threads (one CTA per SM, persistent over a static tile list, n fastest, so the CTAs in
// flight share a few row blocks of x and all of w in L2):
// - warp 0, one thread: TMA loads of 64-wide K slices of x and w into 4 shared-memory stages (128-byte
//   swizzle, the wgmma K-major layout), through full/empty mbarriers;
// - warpgroups 1 and 2 (consumers): wgmma from shared memory on a 128 x 256 CTA tile (warpgroup c: rows
//   64c.., one m64n256 wgmma per k16). After a tile's main loop each thread packs acc + bias to 64 bf16
//   pairs, which wait in registers and go to shared memory in 16 slices between the next tile's k blocks
//   (its epilogue overlaps the next main loop), into two 64 x 64 staging slots per consumer warpgroup;
// - warps 1..3 (the "out" warps): take each staged 64 x 64 block, apply the GELU in place, and TMA-store it.
// Why the out warps: the GELU's ALU work done by the consumers between their wgmma issues delayed the
// next issue (0.75 ms per fc1 call at 64 tiles on an H100, against 0.415 without GELU; git 7db17ac); in
// warps of their own it fills issue slots the consumers leave idle. erff rather than a shared-memory table
// of the GELU's bf16 results: the main loop's wgmma operand reads and TMA writes already take most of the
// shared-memory bandwidth, and the table's gathers (bank conflicts) competed with them (0.68-0.73 ms).
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int BM = 128, TN = 256; // CTA tile
constexpr int BK = 64;            // K per stage: one 128-byte swizzle row of bf16
constexpr int STAGES = 4;
constexpr int THREADS = 384;                     // producer warpgroup + 2 consumer warpgroups
constexpr int PRODUCER_REGS = 56, CONSUMER_REGS = 224; // 128 * 56 + 256 * 224 <= 64K registers
constexpr int OUT_THREADS = 96;                  // warps 1..3
constexpr uint32_t A_BYTES = BM * BK * 2, STAGE = (BM + TN) * BK * 2;
constexpr uint32_t OUT_SLOT = 64 * 128; // one 64 x 64 bf16 output block, staged for a TMA store
constexpr int SLOTS = 2;                // per consumer warpgroup
// stages, staging slots, mbarriers (stage full/empty, slot full/empty), slack to align the stages to 1024
constexpr uint32_t SMEM = 1024 + STAGES * STAGE + 2 * SLOTS * OUT_SLOT + (2 * STAGES + 4 * SLOTS) * 8;
static_assert(SMEM <= 227 * 1024, "over the sm_90 shared-memory limit per block");
static_assert(4 % SLOTS == 0 && (4 / SLOTS) % 2 == 0, "a slot's mbarrier parity repeats from tile to tile");

// Barrier `id` (1..15; 0 is __syncthreads') over the out warps.
__device__ __forceinline__ void out_bar() { asm volatile("bar.sync 1, %0;\n" ::"n"(OUT_THREADS) : "memory"); }

// ---- epilogue arithmetic -------------------------------------------------------------------

// GELU as cuda_vit.cu's k_gelu8 computes it: 0.5 x (1 + erf(x / sqrt 2)) in fp32 on the bf16 value,
// rounded to bf16 (vision.md: exact erf GELU); two bf16 values packed in a word, low half first.
__device__ __forceinline__ float gelu_f32(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
__device__ __forceinline__ uint32_t gelu_pair(uint32_t v) {
    return pack_bf16(gelu_f32(__uint_as_float(v << 16)), gelu_f32(__uint_as_float(v & 0xFFFF0000u)));
}

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

// Epilogue slice i (0..15, a constant) of a packed 64 x 256 warpgroup tile: pairs j = 2i, 2i + 1 into
// 64 x 64 block q = i / 4, staged in slot q % SLOTS in the 128-byte swizzle layout (16-byte chunk c of row
// r at chunk c ^ (r % 8): a warp's stores hit 32 distinct banks). The block's first slice waits until the
// out warps have sent the slot's last block; its last slice hands the block to them (slot_full counts the
// warpgroup's 4 warps). With no GELU the out warps only store, so the writers fence for the TMA themselves.
template <int EPI>
__device__ __forceinline__ void epi_slice(const uint32_t (&p)[64], int i, uint8_t *slots, uint64_t *slot_full,
                                          uint64_t *slot_empty) {
    const int t = threadIdx.x % 128, w = t / 32, l = t % 32, r = 16 * w + l / 4, q = i / 4, o = q % SLOTS;
    uint8_t *buf = slots + o * OUT_SLOT;
    // each slot is used 4 / SLOTS times per tile, an even count: its phase parity depends on q alone
    if (i % 4 == 0) mbar_wait(&slot_empty[o], ((q / SLOTS) & 1) ^ 1); // a fresh barrier passes parity 1
#pragma unroll
    for (int e = 0; e < 4; e++) {
        const int jj = (2 * i + e / 2) % 8;
        const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (l % 4) * 4 + (e % 2) * 8 * 128;
        *reinterpret_cast<uint32_t *>(buf + off) = p[4 * i + e];
    }
    if (i % 4 == 3) {
        if (EPI != MVL_EPI_GELU) fence_proxy_async();
        __syncwarp();
        if (l == 0) mbar_arrive(&slot_full[o]);
    }
}

// ---- the kernel --------------------------------------------------------------------------

template <int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_gemm_sm90(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                const __grid_constant__ CUtensorMap ty, const bf16 *__restrict__ bias, int m, int n, int k) {
    extern __shared__ uint8_t smem_raw[];
    // Swizzled tiles need 1024-byte-aligned atoms.
    uint8_t *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    uint8_t *out_slots = smem + STAGES * STAGE; // consumer warpgroup c: slots c * SLOTS ..
    uint64_t *full = reinterpret_cast<uint64_t *>(out_slots + 2 * SLOTS * OUT_SLOT), *empty = full + STAGES;
    uint64_t *slot_full = empty + STAGES, *slot_empty = slot_full + 2 * SLOTS;
    const int n_tiles = n / TN, tiles = (m + BM - 1) / BM * n_tiles, kblocks = k / BK;
    const int wg = threadIdx.x / 128, warp = threadIdx.x / 32, lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], 8); // 8 consumer warps
        for (int o = 0; o < 2 * SLOTS; o++) mbar_init(&slot_full[o], 4), mbar_init(&slot_empty[o], 1);
        mbar_fence_init();
    }
    __syncthreads();

    if (wg == 0) {
        warpgroup_reg_dealloc<PRODUCER_REGS>();
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
        // out warps: blocks in the order the consumers fill them (block q of both warpgroups, q = 0..3)
        const int g = threadIdx.x - 32;
        if (EPI != MVL_EPI_GELU && g != 0) return;
        int pend = -1; // the slot whose TMA store may still read it
        for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
            const int m0 = t / n_tiles * BM, n0 = t % n_tiles * TN;
            for (int q = 0; q < 4; q++)
                for (int c = 0; c < 2; c++) {
                    if (m0 + 64 * c >= m) continue; // the consumers skip a warpgroup tile wholly past m
                    const int o = c * SLOTS + q % SLOTS;
                    uint8_t *buf = out_slots + o * OUT_SLOT;
                    mbar_wait(&slot_full[o], (q / SLOTS) & 1);
                    if (EPI == MVL_EPI_GELU) {
                        // elementwise, so the staging layout does not matter: 16-byte chunks, one at a time
                        // with the next one's load in flight
                        uint4 *b4 = reinterpret_cast<uint4 *>(buf);
                        uint4 v = b4[g];
#pragma unroll 1
                        for (int j = g; j < (int)(OUT_SLOT / 16); j += OUT_THREADS) {
                            uint4 nx = v;
                            if (j + OUT_THREADS < (int)(OUT_SLOT / 16)) nx = b4[j + OUT_THREADS];
                            v.x = gelu_pair(v.x), v.y = gelu_pair(v.y), v.z = gelu_pair(v.z), v.w = gelu_pair(v.w);
                            b4[j] = v;
                            v = nx;
                        }
                        fence_proxy_async();
                        out_bar();
                    }
                    if (g == 0) {
                        tma_store_2d(&ty, buf, n0 + 64 * q, m0 + 64 * c);
                        bulk_commit();
                        bulk_wait_read<1>(); // the previous block's store has read its slot: hand it back
                        if (pend >= 0) mbar_arrive(&slot_empty[pend]);
                        pend = o;
                    }
                }
        }
        if (g == 0) bulk_wait_all(); // shared memory stays until the stores have read it
        return;
    }

    warpgroup_reg_alloc<CONSUMER_REGS>();
    const int c = wg - 1;
    float acc[128];
    uint32_t p[64]; // a tile's packed bf16 outputs waiting for their epilogue
#pragma unroll
    for (int i = 0; i < 128; i++) acc[i] = 0.f;
    int s = 0, prev = 0;
    bool pend = false;
    uint32_t ph = 0;
    uint8_t *slots = out_slots + c * SLOTS * OUT_SLOT;
    uint64_t *my_full = slot_full + c * SLOTS, *my_empty = slot_empty + c * SLOTS;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int m0 = t / n_tiles * BM + c * 64, n0 = t % n_tiles * TN;
        // a warpgroup tile wholly past m (the last row block of the fc1 at 64 tiles: 36928 = 288.5 * 128)
        // leaves the tensor cores to the other warpgroup
        const bool live = m0 < m;
        // k blocks in groups of 16, so that epilogue slice i of the previous tile, run after k block i's
        // MMAs are issued, indexes p with constants
        for (int kb0 = 0; kb0 < kblocks; kb0 += 16) {
#pragma unroll
            for (int i = 0; i < 16; i++) {
                const int kb = kb0 + i;
                if (kb < kblocks) {
                    mbar_wait(&full[s], ph);
                    if (live) {
                        const uint8_t *st = smem + s * STAGE;
                        const uint64_t da = wgmma_desc(st + c * 64 * 128, 16, 1024),
                                       db = wgmma_desc(st + A_BYTES, 16, 1024);
                        wgmma_fence();
#pragma unroll
                        for (int kk = 0; kk < BK / 16; kk++)
                            wgmma_m64n256k16_ss<0, 0>(acc, da + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                        wgmma_commit();
                    }
                    wgmma_wait<1>(); // the previous stage's MMAs are done: hand it back
                    if (kb > 0 && lane == 0) mbar_arrive(&empty[prev]);
                    prev = s;
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
                if (kb0 == 0 && pend) epi_slice<EPI>(p, i, slots, my_full, my_empty);
            }
        }
        wgmma_wait<0>();
        wgmma_fence_regs(acc);
        if (lane == 0) mbar_arrive(&empty[prev]);
        pend = live;
        if (live) pack_acc(acc, p, bias, n0);
    }
    if (pend) {
#pragma unroll
        for (int i = 0; i < 16; i++) epi_slice<EPI>(p, i, slots, my_full, my_empty);
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
    static int sms = 0; // once per kernel: the SM count and the dynamic shared-memory limit
    if (!sms) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)SMEM));
    }
    const int64_t tiles = (m + BM - 1) / BM * (n / TN);
    k_gemm_sm90<EPI><<<(unsigned)std::min<int64_t>(tiles, sms), THREADS, SMEM, s>>>(tx, tw, ty, bias, (int)m, (int)n,
                                                                                   (int)k);
    LAUNCH_CHECK();
    return MVL_OK;
}

__global__ void k_gelu_pairs(const uint32_t *x, uint32_t *y, int64_t n2) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n2; i += (int64_t)gridDim.x * blockDim.x)
        y[i] = gelu_pair(x[i]);
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
    if (n < 0 || n % 2 || ((uintptr_t)x | (uintptr_t)y) % 4)
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_sm90_gelu takes an even count of 4-byte aligned bf16",
                        __FILE__, __LINE__);
    if (n == 0) return MVL_OK;
    k_gelu_pairs<<<mvl_grid_for(n / 2, 256), 256, 0, s>>>(reinterpret_cast<const uint32_t *>(x),
                                                           reinterpret_cast<uint32_t *>(y), n / 2);
    LAUNCH_CHECK();
    return MVL_OK;
}
