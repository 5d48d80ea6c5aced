// Hopper GEMM for the ViT's Linear layers (mvl_cuda_linear_sm90): y = epi(x . w^T + bias), bf16 in and
// out, fp32 accumulation. TMA loads 64-wide K slices of x and w into 128-byte-swizzled shared-memory stages
// (the wgmma K-major layout), one producer thread feeds them through full/empty mbarriers, two consumer
// warpgroups run wgmma from shared memory. Persistent: one CTA per SM walks a static tile list (n fastest,
// so the CTAs in flight share a few row blocks of x and all of w in L2). Schedules:
// - cooperative (COOP*): CTA tile 128 x 256, consumer warpgroup c takes rows 64c.. (one m64n256 wgmma per
//   k16); the epilogue either stores straight from the accumulators (COOP) or through swizzled shared
//   memory and TMA stores (COOP_TMA), and COOP_CLUSTER pairs two CTAs (tiles m, m+1 of one column block)
//   in a cluster: each loads half of the shared w tile and multicasts it to both;
// - ping-pong: each consumer warpgroup its own 128 x 128 tile (two m64n128 per k16), alternate tiles, so one
//   warpgroup's epilogue (the erf GELU is ALU work) runs while the other's MMAs keep the tensor cores busy.
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int BM = 128;       // rows of x per tile
constexpr int BK = 64;        // K per stage: one 128-byte swizzle row of bf16
constexpr int THREADS = 384;  // producer warpgroup + 2 consumer warpgroups
constexpr int PRODUCER_REGS = 24, CONSUMER_REGS = 240;
constexpr uint32_t OUT_SLOT = 64 * 128; // one 64 x 64 bf16 output block staged for a TMA store

// TN: tile columns; STAGES: shared-memory stages (x tile then w tile); CL: CTAs per cluster; ARRIVALS:
// consumer warps (of every CTA of the cluster) that hand a stage back; OUT: output staging (2 slots per
// consumer warpgroup); SMEM: all of it, the mbarriers, and slack to align the stages to 1024 bytes.
template <int SCHED> struct Sched {
    static constexpr bool PING = SCHED == MVL_SM90_PINGPONG;
    // OVERLAP: a tile's bf16 outputs wait in registers and get their epilogue (GELU, shared memory, TMA
    // store) in slices between the next tile's MMAs.
    static constexpr bool OVERLAP = SCHED == MVL_SM90_COOP_TMA_OVERLAP || SCHED == MVL_SM90_COOP_CLUSTER_OVERLAP;
    static constexpr bool TMA_STORE = OVERLAP || SCHED == MVL_SM90_COOP_TMA || SCHED == MVL_SM90_COOP_CLUSTER;
    static constexpr int CL = SCHED == MVL_SM90_COOP_CLUSTER || SCHED == MVL_SM90_COOP_CLUSTER_OVERLAP ? 2 : 1;
    static constexpr int TN = PING ? 128 : 256, STAGES = PING ? 6 : 4, ARRIVALS = (PING ? 4 : 8) * CL;
    static constexpr uint32_t STAGE = (BM + TN) * BK * 2, OUT = TMA_STORE ? 4 * OUT_SLOT : 0;
    static constexpr uint32_t SMEM = 1024 + STAGES * STAGE + OUT + STAGES * 16;
};

// ---- cluster, multicast and TMA-store pieces (sm_90) ------------------------------------

__device__ __forceinline__ uint32_t cluster_ctarank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
// Every thread of every CTA of the cluster; also orders the barrier inits before the peers' use.
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}
// Arrives on the mbarrier at the same shared-memory offset in cluster CTA `rank` (default .release.cta
// semantics, as a local arrive: a .cluster-scope release here measured ~2x slower main loops).
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t *bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(smem_u32(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}
// tma_load_2d into the same offset of every CTA in `mask`, completing on each one's mbarrier there
// (sm_90a: ptxas warns that other targets may run it slowly).
__device__ __forceinline__ void tma_load_2d_multicast(void *dst, const CUtensorMap *map, uint64_t *bar, int c0, int c1,
                                                      uint16_t mask) {
    MVL_SM90A_ASM("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster "
                 "[%0], [%1, {%3, %4}], [%2], %5;\n" ::"r"(smem_u32(dst)),
                 "l"((uint64_t)map), "r"(smem_u32(bar)), "r"(c0), "r"(c1), "h"(mask)
                 : "memory");
}
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
// Named barriers (barrier 0 is __syncthreads').
__device__ __forceinline__ void named_bar_sync(int id, int threads) {
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_bar_arrive(int id, int threads) {
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// ---- epilogue ----------------------------------------------------------------------------

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
__device__ __forceinline__ float2 bias_pair(const bf16 *bias, int64_t col) {
    return bias ? __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(bias + col)) : make_float2(0.f, 0.f);
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
        const float2 b = bias_pair(bias, c + 8 * j);
        const uint32_t v0 = epi_pair<EPI>(d[4 * j] + b.x, d[4 * j + 1] + b.y);
        const uint32_t v1 = epi_pair<EPI>(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
        if (ok0) y0[4 * j] = v0;
        if (ok1) y1[4 * j] = v1;
    }
}

// The same for an m64n256 accumulator through shared memory: four 64 x 64 blocks, each written into one
// of the warpgroup's two slots in the 128-byte swizzle layout (16-byte chunk c of row r at chunk c ^ (r % 8):
// a warp's stores hit 32 distinct banks) and sent by one TMA store, which also drops the rows past m.
template <int EPI>
__device__ __forceinline__ void store_acc_tma(const float (&d)[128], uint8_t *slots, const CUtensorMap *ty,
                                              const bf16 *bias, int row0, int col0, int bar_id) {
    const int t = threadIdx.x % 128, w = t / 32, l = t % 32, r = 16 * w + l / 4;
    const int64_t c = col0 + 2 * (l % 4);
#pragma unroll
    for (int q = 0; q < 4; q++) {
        uint8_t *buf = slots + (q & 1) * OUT_SLOT;
        if (t == 0) bulk_wait_read<1>(); // the store that used this slot two blocks ago has read it
        named_bar_sync(bar_id, 128);
#pragma unroll
        for (int jj = 0; jj < 8; jj++) {
            const int j = q * 8 + jj;
            const float2 b = bias_pair(bias, c + 8 * j);
            const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (l % 4) * 4;
            *reinterpret_cast<uint32_t *>(buf + off) = epi_pair<EPI>(d[4 * j] + b.x, d[4 * j + 1] + b.y);
            *reinterpret_cast<uint32_t *>(buf + off + 8 * 128) = epi_pair<EPI>(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
        }
        fence_proxy_async();
        named_bar_sync(bar_id, 128);
        if (t == 0) {
            tma_store_2d(ty, buf, col0 + q * 64, row0);
            bulk_commit();
        }
    }
}

// Overlapped epilogue (OVERLAP): after a tile's main loop, each thread packs its 128 accumulators + bias
// into 64 bf16 pairs (the Linear's rounded output), p[2j] = row r, p[2j + 1] = row r + 8, columns
// 8j + 2(l % 4) (+1). Slice i (0..15) of the epilogue then takes pairs j = 2i, 2i + 1: epi, into the 64 x 64
// block i / 4 staged in slot (i / 4) % 2 (swizzled as in store_acc_tma), one TMA store per block.
__device__ __forceinline__ void pack_acc(const float (&d)[128], uint32_t (&p)[64], const bf16 *bias, int col0) {
    const int64_t c = col0 + 2 * (threadIdx.x % 4);
#pragma unroll
    for (int j = 0; j < 32; j++) {
        const float2 b = bias_pair(bias, c + 8 * j);
        p[2 * j] = pack_bf16(d[4 * j] + b.x, d[4 * j + 1] + b.y);
        p[2 * j + 1] = pack_bf16(d[4 * j + 2] + b.x, d[4 * j + 3] + b.y);
    }
}
template <int EPI> __device__ __forceinline__ uint32_t epi_packed(uint32_t v) {
    if (EPI == MVL_EPI_NONE) return v;
    __nv_bfloat162 h;
    memcpy(&h, &v, 4);
    const float2 f = __bfloat1622float2(h);
    return epi_pair<EPI>(f.x, f.y); // bf16 -> fp32 -> bf16 is exact: only the GELU rounds
}
template <int EPI>
__device__ __forceinline__ void epi_slice(const uint32_t (&p)[64], int i, uint8_t *slots, const CUtensorMap *ty,
                                          int row0, int col0, int bar_id) {
    const int t = threadIdx.x % 128, w = t / 32, l = t % 32, r = 16 * w + l / 4, q = i / 4;
    uint8_t *buf = slots + (q & 1) * OUT_SLOT;
    if (i % 4 == 0) {
        if (t == 0) bulk_wait_read<1>(); // the store that used this slot two blocks ago has read it
        named_bar_sync(bar_id, 128);
    }
    // One pair at a time (a rolled loop; constant register indices through selects): the GELU's
    // temporaries stay few next to the 128 accumulators and 64 pairs.
#pragma unroll 1
    for (int e = 0; e < 4; e++) {
        const int jj = (2 * i + e / 2) % 8;
        const uint32_t v = e == 0 ? p[4 * i] : e == 1 ? p[4 * i + 1] : e == 2 ? p[4 * i + 2] : p[4 * i + 3];
        const uint32_t off = r * 128 + ((jj ^ (r & 7)) << 4) + (l % 4) * 4 + (e % 2) * 8 * 128;
        *reinterpret_cast<uint32_t *>(buf + off) = epi_packed<EPI>(v);
    }
    if (i % 4 == 3) {
        fence_proxy_async();
        named_bar_sync(bar_id, 128);
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
                const __grid_constant__ CUtensorMap ty, const bf16 *__restrict__ bias, bf16 *__restrict__ y, int m,
                int n, int k) {
    using S = Sched<SCHED>;
    constexpr int TN = S::TN, STAGES = S::STAGES, CL = S::CL;
    constexpr uint32_t A_BYTES = BM * BK * 2, STAGE = S::STAGE;
    extern __shared__ uint8_t smem_raw[];
    // Swizzled tiles need 1024-byte-aligned atoms; the cluster's CTAs get the same offsets (multicast).
    uint8_t *smem = smem_raw + ((1024 - (smem_u32(smem_raw) & 1023)) & 1023);
    uint8_t *out_slots = smem + STAGES * STAGE;
    uint64_t *full = reinterpret_cast<uint64_t *>(out_slots + S::OUT), *empty = full + STAGES;
    // Work units: one tile, or with CL = 2 the tiles (2i, 2i + 1) of one column block (cluster rank r takes
    // 2i + r).
    const int n_tiles = n / TN, units = ((m + BM - 1) / BM + CL - 1) / CL * n_tiles, kblocks = k / BK;
    const int rank = CL > 1 ? (int)cluster_ctarank() : 0, unit0 = blockIdx.x / CL, step = gridDim.x / CL;
    const int wg = threadIdx.x / 128, lane = threadIdx.x % 32;

    if (threadIdx.x == 0) {
        for (int s = 0; s < STAGES; s++) mbar_init(&full[s], 1), mbar_init(&empty[s], S::ARRIVALS);
        mbar_fence_init();
    }
    if (CL > 1) cluster_sync();
    else __syncthreads();

    if (wg == 0) { // producer: one thread issues every TMA load, stages in order over the CTA's tiles
        warpgroup_reg_dealloc<PRODUCER_REGS>();
        if (threadIdx.x == 0) {
            int s = 0;
            uint32_t ph = 0;
            const int m_last = (m - 1) / BM * BM;
            for (int u = unit0; u < units; u += step) {
                // a cluster's tile past the last row block loads the last one (its stores are dropped)
                const int m0 = min((u / n_tiles * CL + rank) * BM, m_last), n0 = u % n_tiles * TN;
                for (int kb = 0; kb < kblocks; kb++) {
                    mbar_wait(&empty[s], ph ^ 1); // a fresh barrier passes parity 1 at once
                    uint8_t *st = smem + s * STAGE;
                    mbar_arrive_expect_tx(&full[s], STAGE); // rows past m arrive zero-filled, still counted
                    tma_load_2d(st, &tx, &full[s], kb * BK, m0);
                    if (CL == 1) tma_load_2d(st + A_BYTES, &tw, &full[s], kb * BK, n0);
                    else // this CTA's half of the w tile, to both CTAs (the peer's half arrives likewise)
                        tma_load_2d_multicast(st + A_BYTES + rank * (TN / 2) * 128, &tw, &full[s], kb * BK,
                                              n0 + rank * (TN / 2), (uint16_t)3);
                    if (++s == STAGES) s = 0, ph ^= 1;
                }
            }
        }
    } else {
        warpgroup_reg_alloc<CONSUMER_REGS>();
        const int c = wg - 1;
        if (!S::PING) {
            float acc[128];
            uint32_t p[64]; // OVERLAP: the previous tile's bf16 outputs (unused otherwise)
#pragma unroll
            for (int i = 0; i < 128; i++) acc[i] = 0.f;
            int s = 0, prev = 0, pend_m0 = -1, pend_n0 = 0;
            uint32_t ph = 0;
            uint8_t *slots = out_slots + c * 2 * OUT_SLOT;
            // hands a consumed stage back to every CTA that loads into it
            auto release = [&](int st) {
                if (lane == 0) {
                    mbar_arrive(&empty[st]);
                    if (CL > 1) mbar_arrive_cluster(&empty[st], rank ^ 1);
                }
            };
            for (int u = unit0; u < units; u += step) {
                const int m0 = (u / n_tiles * CL + rank) * BM + c * 64, n0 = u % n_tiles * TN;
                // k blocks in groups of 16 so that the epilogue slice i of the previous tile, interleaved with
                // k block i, indexes p with constants
                for (int kb0 = 0; kb0 < kblocks; kb0 += 16) {
#pragma unroll
                    for (int i = 0; i < 16; i++) {
                        const int kb = kb0 + i;
                        if (kb < kblocks) {
                            mbar_wait(&full[s], ph);
                            const uint8_t *st = smem + s * STAGE;
                            const uint64_t da = wgmma_desc(st + c * 64 * 128, 16, 1024),
                                           db = wgmma_desc(st + A_BYTES, 16, 1024);
                            wgmma_fence();
#pragma unroll
                            for (int kk = 0; kk < BK / 16; kk++)
                                wgmma_m64n256k16_ss<0, 0>(acc, da + 2 * kk, db + 2 * kk, kb > 0 || kk > 0);
                            wgmma_commit();
                        }
                        if (kb < kblocks) {
                            wgmma_wait<1>(); // the previous stage's MMAs are done: hand it back
                            if (kb > 0) release(prev);
                            prev = s;
                            if (++s == STAGES) s = 0, ph ^= 1;
                        }
                        // runs while the tensor cores work on this k block
                        if (S::OVERLAP && kb0 == 0 && pend_m0 >= 0) epi_slice<EPI>(p, i, slots, &ty, pend_m0, pend_n0, 3 + c);
                    }
                }
                wgmma_wait<0>();
                wgmma_fence_regs(acc);
                release(prev);
                if (S::OVERLAP) {
                    pack_acc(acc, p, bias, n0);
                    pend_m0 = m0, pend_n0 = n0;
                } else if (S::TMA_STORE) store_acc_tma<EPI>(acc, slots, &ty, bias, m0, n0, 3 + c);
                else store_acc<256, EPI>(acc, y, bias, m, n, m0, n0);
            }
            if (S::OVERLAP && pend_m0 >= 0) {
#pragma unroll
                for (int i = 0; i < 16; i++) epi_slice<EPI>(p, i, slots, &ty, pend_m0, pend_n0, 3 + c);
            }
            if (S::TMA_STORE && threadIdx.x % 128 == 0) bulk_wait_all(); // shared memory stays until read
        } else {
            float acc0[64], acc1[64];
#pragma unroll
            for (int i = 0; i < 64; i++) acc0[i] = acc1[i] = 0.f;
            // Warpgroup c takes the CTA's tiles c, c+2, ...; the producer fills stages in tile order, so tile j
            // starts at stage iteration j * kblocks. The main loops take turns (barrier 1 + c: "warpgroup c
            // may start"): besides keeping one warpgroup's MMAs on the tensor cores while the other runs its
            // epilogue, this keeps a warpgroup's parity waits within one phase of each stage's barrier (every
            // load of the tiles before j has completed when tile j's main loop starts).
            const int ctiles = (units - (int)blockIdx.x + (int)gridDim.x - 1) / (int)gridDim.x;
            for (int j = c, t = blockIdx.x + c * gridDim.x; t < units; j += 2, t += 2 * gridDim.x) {
                if (j > 0) named_bar_sync(1 + c, 256);
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
                if (j + 1 < ctiles) named_bar_arrive(2 - c, 256); // the other warpgroup's next tile may start
                const int64_t m0 = (int64_t)(t / n_tiles) * BM, n0 = (int64_t)(t % n_tiles) * TN;
                store_acc<128, EPI>(acc0, y, bias, m, n, m0, n0);
                store_acc<128, EPI>(acc1, y, bias, m, n, m0 + 64, n0);
            }
        }
    }
    if (CL > 1) cluster_sync(); // no CTA leaves while its peer may still multicast into it or signal it
}

template <int SCHED, int EPI>
mvl_status launch(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n, const bf16 *bias,
                  bf16 *y, mvl_error *err) {
    using S = Sched<SCHED>;
    CUtensorMap tx, tw, ty;
    const uint64_t dx[2] = {(uint64_t)k, (uint64_t)m}, dw[2] = {(uint64_t)k, (uint64_t)n}, row[1] = {(uint64_t)k * 2};
    const uint64_t dy[2] = {(uint64_t)n, (uint64_t)m}, yrow[1] = {(uint64_t)n * 2};
    const uint32_t bx[2] = {BK, BM}, bw[2] = {BK, S::TN / S::CL}, by[2] = {64, 64};
    TRY(mvl_cuda_tensor_map_bf16(&tx, x, 2, dx, row, bx, err));
    TRY(mvl_cuda_tensor_map_bf16(&tw, w, 2, dw, row, bw, err));
    if (S::TMA_STORE) TRY(mvl_cuda_tensor_map_bf16(&ty, y, 2, dy, yrow, by, err));
    else memset(&ty, 0, sizeof ty);
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = S::CL, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = S::SMEM;
    cfg.stream = s;
    cfg.attrs = attr;
    cfg.numAttrs = S::CL > 1 ? 1 : 0;
    // Once per kernel: the dynamic shared-memory limit, and how many CTAs (clusters) fit at a time.
    static int resident = 0;
    if (!resident) {
        int dev = 0, sms = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(cudaFuncSetAttribute(k_gemm_sm90<SCHED, EPI>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)S::SMEM));
        if (S::CL > 1) {
            cfg.gridDim = dim3(sms / S::CL * S::CL);
            int clusters = 0;
            CUDA_CHECK(cudaOccupancyMaxActiveClusters(&clusters, k_gemm_sm90<SCHED, EPI>, &cfg));
            if (clusters < 1)
                return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: no cluster of %d CTAs of the GEMM fits the GPU",
                                __FILE__, __LINE__, S::CL);
            resident = clusters * S::CL;
        } else resident = sms;
    }
    const int64_t units = ((m + BM - 1) / BM + S::CL - 1) / S::CL * (n / S::TN);
    cfg.gridDim = dim3((unsigned)(std::min<int64_t>(units, resident / S::CL) * S::CL));
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, k_gemm_sm90<SCHED, EPI>, tx, tw, ty, bias, y, (int)m, (int)n, (int)k));
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
    const bool gelu = epi == MVL_EPI_GELU;
    if (sched == MVL_SM90_AUTO) sched = MVL_SM90_COOP_CLUSTER_OVERLAP;
    switch (sched) {
    case MVL_SM90_COOP:
        return gelu ? launch<MVL_SM90_COOP, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    case MVL_SM90_PINGPONG:
        return gelu ? launch<MVL_SM90_PINGPONG, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_PINGPONG, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    case MVL_SM90_COOP_TMA:
        return gelu ? launch<MVL_SM90_COOP_TMA, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP_TMA, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    case MVL_SM90_COOP_CLUSTER:
        return gelu ? launch<MVL_SM90_COOP_CLUSTER, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP_CLUSTER, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    case MVL_SM90_COOP_TMA_OVERLAP:
        return gelu ? launch<MVL_SM90_COOP_TMA_OVERLAP, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP_TMA_OVERLAP, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    default:
        return gelu ? launch<MVL_SM90_COOP_CLUSTER_OVERLAP, MVL_EPI_GELU>(s, x, m, k, w, n, bias, y, err)
                    : launch<MVL_SM90_COOP_CLUSTER_OVERLAP, MVL_EPI_NONE>(s, x, m, k, w, n, bias, y, err);
    }
}
