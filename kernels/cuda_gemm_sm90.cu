// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation. TMA loads 64-wide K slices of x and w into 128-byte-swizzled shared-memory stages
// (the wgmma K-major layout), one producer thread feeds them through full/empty mbarriers, two consumer
// warpgroups run wgmma from shared memory and write the epilogue straight from their accumulators.
// Persistent: one CTA per SM walks a static tile list (n fastest, so the CTAs in flight share a few row
// blocks of x and all of w in L2). Two schedules:
// - cooperative: CTA tile 128 x 256, consumer warpgroup c takes rows 64c.. (one m64n256 wgmma per k16);
// - ping-pong: each consumer warpgroup its own 128 x 128 tile (two m64n128 per k16), alternate tiles, so one
//   warpgroup's epilogue (the erf GELU is ALU work) runs while the other's MMAs keep the tensor cores busy.
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int BM = 128;       // rows of x per tile
constexpr int BK = 64;        // K per stage: one 128-byte swizzle row of bf16
constexpr int THREADS = 384;  // producer warpgroup + 2 consumer warpgroups
constexpr int PRODUCER_REGS = 40, CONSUMER_REGS = 232;

// TN: tile columns; STAGES: shared-memory stages (x tile then w tile); ARRIVALS: consumer warps that hand a
// stage back; SMEM: stages, their two mbarriers, and slack to align the stages to 1024 bytes.
template <int SCHED> struct Sched;
template <> struct Sched<MVL_SM90_COOP> {
    static constexpr int TN = 256, STAGES = 4, ARRIVALS = 8; // both consumer warpgroups read a stage
    static constexpr uint32_t STAGE = (BM + TN) * BK * 2, SMEM = 1024 + STAGES * (STAGE + 16);
};
template <> struct Sched<MVL_SM90_PINGPONG> {
    static constexpr int TN = 128, STAGES = 6, ARRIVALS = 4; // one consumer warpgroup reads a stage
    static constexpr uint32_t STAGE = (BM + TN) * BK * 2, SMEM = 1024 + STAGES * (STAGE + 16);
};

// One epilogue value pair: acc + bias rounded to bf16 (the Linear's output); GELU then runs in fp32 on that
// bf16 value and rounds again, the same arithmetic as the separate pass (k_gelu8 in cuda_vit.cu;
// vision.md: exact erf GELU).
template <int EPI> __device__ __forceinline__ uint32_t epi_pair(float a, float b) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    if (EPI == MVL_EPI_GELU) {
        float2 f = __bfloat1622float2(h);
        f.x = 0.5f * f.x * (1.0f + erff(f.x * 0.70710678118654752f));
        f.y = 0.5f * f.y * (1.0f + erff(f.y * 0.70710678118654752f));
        h = __floats2bfloat162_rn(f.x, f.y);
    }
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}

// Writes one warpgroup's m64nN accumulator (rows row0.., columns col0..) of y [m, ldy]. Fragment layout:
// thread (warp w, lane l) holds rows 16w + l/4 (+8) and columns 8j + 2(l%4) (+1) in d[4j..4j+3].
template <int N, int EPI>
__device__ __forceinline__ void store_acc(const float (&d)[N / 2], bf16 *y, const bf16 *bias, int64_t m, int64_t ldy,
                                          int64_t row0, int64_t col0) {
    const int t = threadIdx.x % 128, w = t / 32, l = t % 32;
    const int64_t r0 = row0 + 16 * w + l / 4;
    const bool ok0 = r0 < m, ok1 = r0 + 8 < m;
    const int64_t c = col0 + 2 * (l % 4);
    uint32_t *y0 = reinterpret_cast<uint32_t *>(y + r0 * ldy + c), *y1 = y0 + 4 * ldy;
#pragma unroll
    for (int j = 0; j < N / 8; j++) {
        float2 b = make_float2(0.f, 0.f);
        if (bias) b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + c + 8 * j));
        const uint32_t v0 = epi_pair<EPI>(d[4 * j] + b.x, d[4 * j + 1] + b.y);
        const uint32_t v1 = epi_pair<EPI>(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
        if (ok0) y0[4 * j] = v0;
        if (ok1) y1[4 * j] = v1;
    }
}

// Named barriers between the two consumer warpgroups (256 threads; barrier 0 is __syncthreads').
__device__ __forceinline__ void wg_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void wg_bar_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

template <int SCHED, int EPI>
__global__ void __launch_bounds__(THREADS, 1)
    k_gemm_sm90(const __grid_constant__ CUtensorMap tx, const __grid_constant__ CUtensorMap tw,
                const bf16 *__restrict__ bias, bf16 *__restrict__ y, int m, int n, int k) {
    using S = Sched<SCHED>;
    constexpr int TN = S::TN, STAGES = S::STAGES;
    constexpr uint32_t A_BYTES = BM * BK * 2, STAGE = S::STAGE;
    extern __shared__ uint8_t smem_raw[];
    // Swizzled tiles need 1024-byte-aligned atoms.
    uint8_t *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    uint64_t *full = reinterpret_cast<uint64_t *>(smem + STAGES * STAGE), *empty = full + STAGES;
    const int n_tiles = n / TN, tiles = (m + BM - 1) / BM * n_tiles, kblocks = k / BK;
    const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], S::ARRIVALS);
        mbar_fence_init();
    }
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
    } else {
        warpgroup_reg_alloc<CONSUMER_REGS>();
        const int c = wg - 1;
        if (SCHED == MVL_SM90_COOP) {
            float acc[128];
#pragma unroll
            for (int i = 0; i < 128; i++) acc[i] = 0.f;
            int s = 0, prev = 0;
            uint32_t ph = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
                for (int kb = 0; kb < kblocks; kb++) {
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
                wgmma_wait<0>();
                wgmma_fence_regs(acc);
                if (lane == 0) mbar_arrive(&empty[prev]);
                store_acc<256, EPI>(acc, y, bias, m, n, (int64_t)(t / n_tiles) * BM + c * 64, (int64_t)(t % n_tiles) * TN);
            }
        } else {
            float acc0[64], acc1[64];
#pragma unroll
            for (int i = 0; i < 64; i++) acc0[i] = acc1[i] = 0.f;
            // Warpgroup c takes the CTA's tiles c, c+2, ...; the producer fills stages in tile order, so tile j
            // starts at stage iteration j * kblocks. The main loops take turns (barrier 1 + c: "warpgroup c
            // may start"): besides keeping one warpgroup's MMAs on the tensor cores while the other runs its
            // epilogue, this keeps a warpgroup's parity waits within one phase of each stage's barrier (every
            // load of the tiles before j has completed when tile j's main loop starts).
            const int ctiles = (tiles - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
            for (int j = c, t = blockIdx.x + c * gridDim.x; t < tiles; j += 2, t += 2 * gridDim.x) {
                if (j > 0) wg_bar_sync(1 + c);
                const uint32_t it = (uint32_t)j * kblocks;
                int s = it % STAGES, prev = 0;
                uint32_t ph = (it / STAGES) & 1;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&full[s], ph);
                    const uint8_t *st = smem + s * STAGE;
                    const uint64_t da = wgmma_desc(st, 16, 1024), db = wgmma_desc(st + A_BYTES, 16, 1024);
                    wgmma_fence();
#pragma unroll
                    for (int kk = 0; kk < BK / 16; kk++) {
                        // rows 64.. of the A stage start 64 * 128 bytes on (>> 4 in the descriptor)
                        wgmma_m64n128k16_ss<0, 0>(acc0, da + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                        wgmma_m64n128k16_ss<0, 0>(acc1, da + 512 + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                    }
                    wgmma_commit();
                    wgmma_wait<1>();
                    if (kb > 0 && lane == 0) mbar_arrive(&empty[prev]);
                    prev = s;
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
                wgmma_wait<0>();
                wgmma_fence_regs(acc0);
                wgmma_fence_regs(acc1);
                if (lane == 0) mbar_arrive(&empty[prev]);
                if (j + 1 < ctiles) wg_bar_arrive(2 - c); // the other warpgroup's next tile may start
                const int64_t m0 = (int64_t)(t / n_tiles) * BM, n0 = (int64_t)(t % n_tiles) * TN;
                store_acc<128, EPI>(acc0, y, bias, m, n, m0, n0);
                store_acc<128, EPI>(acc1, y, bias, m, n, m0 + 64, n0);
            }
        }
    }
}

template <int SCHED, int EPI>
mvl_status launch(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, const bf16 *bias,
                  bf16 *y, mvl_error *err) {
    constexpr int TN = Sched<SCHED>::TN;
    CUtensorMap tx, tw;
    const uint64_t dx[2] = {(uint64_t)k, (uint64_t)m}, dw[2] = {(uint64_t)k, (uint64_t)n}, row[1] = {(uint64_t)k * 2};
    const uint32_t bx[2] = {BK, BM}, bw[2] = {BK, TN};
    TRY(mvl_cuda_tensor_map_bf16(&tx, x, 2, dx, row, bx, err));
    TRY(mvl_cuda_tensor_map_bf16(&tw, w, 2, dw, row, bw, err));
    static bool attr_set = false; // the kernel's dynamic shared-memory limit, raised once
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<SCHED, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)Sched<SCHED>::SMEM));
        attr_set = true;
    }
    int dev = 0, sms = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    const int64_t tiles = (m + BM - 1) / BM * (n / TN);
    const int grid = (int)std::min<int64_t>(tiles, sms);
    k_gemm_sm90<SCHED, EPI><<<grid, THREADS, Sched<SCHED>::SMEM, s>>>(tx, tw, bias, y, (int)m, (int)n, (int)k);
    LAUNCH_CHECK();
    return MVL_OK;
}

} // namespace

bool mvl_cuda_linear_sm90_ok(int64_t m, int64_t k, int64_t n) {
    return m >= 1 && m < (int64_t)1 << 31 && k >= BK && k % BK == 0 && k < (int64_t)1 << 31 && n >= 256 &&
           n % 256 == 0 && n < (int64_t)1 << 31 && (m / BM + 1) * (n / 128) < (int64_t)1 << 31; // int tile ids
}

mvl_status mvl_cuda_linear_sm90(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                                const bf16 *bias, bf16 *y, int epi, int sched, mvl_error *err) {
    if (!mvl_cuda_linear_sm90_ok(m, k, n))
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 does not take a %lld x %lld x %lld GEMM",
                        __FILE__, __LINE__, (long long)m, (long long)n, (long long)k);
    if (((uintptr_t)x | (uintptr_t)w | (uintptr_t)y) % 16 || (uintptr_t)bias % 4)
        return mvl_fail(err, MVL_ERR_ARG, "%s:%d: mvl_cuda_linear_sm90 needs 16-byte aligned x, w, y", __FILE__,
                        __LINE__);
    if (sched == MVL_SM90_AUTO) sched = MVL_SM90_PINGPONG;
    const bool gelu = epi == MVL_EPI_GELU;
    if (sched == MVL_SM90_COOP)
        return gelu ? launch<MVL_SM90_COOP, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    return gelu ? launch<MVL_SM90_PINGPONG, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                : launch<MVL_SM90_PINGPONG, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
}
