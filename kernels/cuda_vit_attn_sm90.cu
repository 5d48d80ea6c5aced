// The ViT's attention on Hopper (head size 64): see cuda_vit_attn.h.
// Persistent CTAs, one per SM: a producer warpgroup (one thread issues TMA
// loads; it gives spare registers to the consumers with setmaxnreg) and NWG
// consumer warpgroups of 64 queries each. Per key block of 64 keys:
//   S = Q K^T   wgmma, both operands from shared memory, K-major, in the
//               128-byte swizzle the TMA writes (rows of 64 bf16 = 128 B);
//   softmax     online, fp32 in registers, exp2 with the scale folded in;
//   O += P V    wgmma with P from registers (the m64nN accumulator layout of
//               S is, per warp, the m16n8k16 A-fragment layout, so P is packed
//               to bf16 in place) and V from shared memory read N-major;
// in FlashAttention-3's order: the PV of block k-1 and the QK^T of block k
// run on the tensor cores while the softmax of block k runs.
// Two kernels:
//   streaming  a work unit is NWG*64 queries of one (tile, head); its K/V
//              blocks stream through AT_NST stages (full/empty mbarriers),
//              the producer running ahead into the next unit;
//   resident   a work unit is a whole (tile, head) (at most AT_RES_NKB key
//              blocks): its K/V are loaded once and every query block of it
//              reads them from shared memory.
// Tails (577 = 9 x 64 + 1 tokens at full size): the TMA zero-fills rows past
// ntok; the last key block (the only partial one) is loaded and processed
// first, its keys past ntok masked to -inf, so the other steps are all
// alike; holding at most 16 keys after another block, it is folded into
// block 0 as one step of 80 keys (at_pass): a one-key tail costs a few
// softmax columns and one k-step of PV instead of a pipeline step of its
// own. A warpgroup without real queries only keeps the barrier counts, and
// rows past ntok are not stored. In the resident kernel a last query block
// of at most AT_CORE_ROWS real rows gets no 64-row wgmma pass (at 577 tokens
// that pass would hold one real row and make one warpgroup run 4 passes
// while the others run 3): the producer warpgroup's 3 idle warps compute
// those rows as one 16-row mma.sync tile from the resident K/V
// (at_core_rows), off the consumers' path. Bidirectional: no other mask
// (vision.md §1.2 step 5).
// Measured slower on an H100 (BENCHMARKS.md, session 10; 64 tiles, ms per call against 0.247-0.251): P packed
// to bf16 by integer instructions instead of cvt (+4%), a quarter of the exponentials as a polynomial on the FMA
// pipe (+2.3%), the running maximum moved only when it grows by more than 8 (+2.6%), the next block's QK^T issued
// before the wait for the previous P V and the rescale (+4.7%); session 11: the warpgroups' wgmma issued in turns
// through named barriers (FlashAttention-3's ping-pong, +3.1%). The kernel is bound by each warpgroup's wgmma ->
// softmax -> wgmma chain, not by the exponential unit, by issue or by the warpgroups' order on the tensor cores.
// Note (SASS, session 11): ptxas puts the P V's wait (wgmma_wait<0> in at_pass) before the softmax's first
// exponential, so a warpgroup's softmax does not overlap its own P V; the other warpgroups keep the tensor cores
// busy. Packing P after that wait, behind a warpgroup barrier that takes the row sums as input, did move all the
// exponentials before the wait, and was 6% slower (7.69-7.80 ms against 7.26-7.27 for 24 calls at 64 tiles); so
// was the folded tail's P V left to the next step's wait (+1.7%).
#include <math.h>
#include <stdlib.h>

#include <algorithm>

#include "kernels/cuda_vit_attn.h"
#include "kernels/cuda_wgmma.cuh"

namespace {

constexpr int AT_D = 64, AT_BN = 64, AT_NST = 4, AT_RES_NKB = 10;
// MVL_VIT_ATTN_SM90_DEFAULT (variant 3) is the resident kernel with this many consumer warpgroups.
constexpr int AT_DEFAULT_NWG = 3;
// Resident kernel: a last query block of at most AT_CORE_ROWS real rows (one
// mma.sync m-tile) runs on the warp-level tensor-core path (at_core_rows).
constexpr int AT_CORE_ROWS = 16;
constexpr int AT_TILE = 64 * AT_D * 2; // bytes of one 64-row bf16 tile (8 KB), 1024-byte aligned
// Key blocks of ntok tokens, and the real keys of the last one (1..AT_BN).
__host__ __device__ constexpr int at_nkb(int ntok) { return (ntok + AT_BN - 1) / AT_BN; }
__host__ __device__ constexpr int at_tail(int ntok) { return ntok - (at_nkb(ntok) - 1) * AT_BN; }

// Launch shape: NWG consumer warpgroups and the producer warpgroup; the
// setmaxnreg budgets share the registers the warpgroups start with (the
// entry cap 65536 / THREADS, rounded down to 8, each): the producer keeps
// 24, or 104 when it computes the core rows (PCORE: as many as still leave
// the 3-warpgroup kernel's consumers 136, where ptxas -v shows no spills),
// the consumers get the rest (at most 240).
// Shared memory: Q double-buffered per consumer warpgroup, then NKV K/V
// tiles each.
template <int NWG, int NKV, bool PCORE = false> struct AtShape {
    static constexpr int THREADS = NWG * 128 + 128;
    static constexpr int SMEM = 1024 + (2 * NWG + 2 * NKV) * AT_TILE; // + slack for the 1024-byte alignment
    static constexpr int POOL = (65536 / THREADS) / 8 * 8 * (NWG + 1); // registers per thread, over the warpgroups
    static constexpr int PROD_REG = PCORE ? 104 : 24, CONS_REG = std::min(240, (POOL - PROD_REG) / NWG / 8 * 8);
};

// One online-softmax step on a key block held as NT n-tiles of the m64nN
// accumulator layout (s[4j], s[4j+1]: row g, keys 8j + 2*t4 + {0, 1};
// s[4j+2], s[4j+3]: row g+8), keys >= kvalid masked when MASK: updates the
// running maximum m (times scale_log2) and this thread's partial row sums l,
// returns the factors a0, a1 that rescale o's rows, and packs P to bf16 as
// the A fragments of the NT/2 k-steps of P V. Every block holds a real key,
// so the maxima stay finite.
template <int NT, bool MASK>
__device__ __forceinline__ void at_softmax(const float (&s)[4 * NT], int kvalid, int t4, float scale_log2,
                                           float (&m)[2], float (&l)[2], uint32_t (&pa)[NT / 2][4], float &a0,
                                           float &a1) {
    float v[4 * NT]; // s, masked (s itself is a wgmma accumulator: left alone)
#pragma unroll
    for (int j = 0; j < 4 * NT; j++) v[j] = MASK && 8 * (j / 4) + 2 * t4 + (j & 1) >= kvalid ? -INFINITY : s[j];
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        mx0 = fmaxf(mx0, fmaxf(v[4 * j], v[4 * j + 1]));
        mx1 = fmaxf(mx1, fmaxf(v[4 * j + 2], v[4 * j + 3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    mx0 = fmaxf(m[0], mx0 * scale_log2), mx1 = fmaxf(m[1], mx1 * scale_log2);
    a0 = ex2_ftz(m[0] - mx0), a1 = ex2_ftz(m[1] - mx1);
    m[0] = mx0, m[1] = mx1;
    float l0 = 0.f, l1 = 0.f;
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float p0 = ex2_ftz(fmaf(v[4 * j], scale_log2, -mx0)), p1 = ex2_ftz(fmaf(v[4 * j + 1], scale_log2, -mx0));
        const float p2 = ex2_ftz(fmaf(v[4 * j + 2], scale_log2, -mx1)),
                    p3 = ex2_ftz(fmaf(v[4 * j + 3], scale_log2, -mx1));
        l0 += p0 + p1, l1 += p2 + p3;
        // n-tiles 2kk (keys 0-7 of k-step kk) and 2kk+1 (keys 8-15)
        pa[j >> 1][(j & 1) * 2 + 0] = pack_bf16(p0, p1);
        pa[j >> 1][(j & 1) * 2 + 1] = pack_bf16(p2, p3);
    }
    l[0] = l[0] * a0 + l0, l[1] = l[1] * a1 + l1;
}

// o's rows g (a0) and g + 8 (a1) times the online-softmax factors.
__device__ __forceinline__ void rescale(float (&o)[32], float a0, float a1) {
#pragma unroll
    for (int j = 0; j < 8; j++) o[4 * j] *= a0, o[4 * j + 1] *= a0, o[4 * j + 2] *= a1, o[4 * j + 3] *= a1;
}

// Arrives on `bar` when sel == 0 (lane 0 of a warp), as a predicated
// instruction: a branch here would make ptxas serialize the wgmma in flight
// around it.
__device__ __forceinline__ void mbar_arrive_if0(uint64_t *bar, int sel) {
    asm volatile("{\n.reg .pred p;\nsetp.eq.u32 p, %1, 0;\n@p mbarrier.arrive.shared::cta.b64 _, [%0];\n}\n" ::"r"(
                     smem_u32(bar)),
                 "r"(sel)
                 : "memory");
}

// The last key block of a (tile, head): AT_TAIL_NONE 64 keys (nothing to
// mask), AT_TAIL_MASK 1..63 (alone or at most 16 with no block before it),
// AT_TAIL_16 at most 16 after another block.
enum AtTail { AT_TAIL_NONE, AT_TAIL_MASK, AT_TAIL_16 };

// One pass of a warpgroup's 64 queries (Q tile at descriptor dq) over the
// nkb key blocks of a (tile, head), accumulating o (zero on entry), the
// running maxima m and the partial row sums l. slot(i) gives the K/V tile
// index and the parity of the full barrier of the i-th block in load order:
// the last block (its keys past tail masked) first, then blocks 0, 1, ...
// Step 0 takes that block alone (m64n64) or, AT_TAIL_16, folded into block 0
// as one step of 80 keys: S by an m64n64 and an m64n16 product, one
// online-softmax step, the tail's k-step of P V at once (its tile released
// as soon as that is done), block 0's 4 with the next step as usual. The
// steps after the first are all alike, unmasked. Each step's tiles are
// released on `empty` once its P V is done unless keep (lane 0 of each
// warp), the Q tile on qempty after the last QK^T.
template <AtTail TAIL, class Slot>
__device__ __forceinline__ void at_pass(uint64_t dq, uint64_t dk0, uint64_t dv0, int nkb, int tail, float scale_log2,
                                        int lane, uint64_t *full, uint64_t *empty, uint64_t *qempty, int keep,
                                        Slot slot, float (&o)[32], float (&m)[2], float (&l)[2]) {
    // K-major operands: 8-row atoms 1024 B apart, k-step kk at +32*kk bytes
    // (+2 in the descriptor's 16-byte units). V, N-major: one 64-wide atom
    // along N, 8-key groups 1024 B apart, k-step kk at +2048*kk bytes.
    constexpr uint64_t TILE16 = AT_TILE >> 4, VSTEP = 2048 >> 4;
    constexpr bool T16 = TAIL == AT_TAIL_16;
    const int t4 = lane & 3, rel = lane | keep; // rel == 0: this thread releases K/V tiles
    const int nst = nkb - T16;                  // steps; step k's 64-key block is slot(k + T16)
    auto pv = [&](int k, const uint32_t(&pa)[4][4]) {
        const uint64_t dv = dv0 + slot(k + T16).x * TILE16;
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_m64n64k16_rs<1>(o, pa[kk], dv + kk * VSTEP, 1);
        wgmma_commit();
    };
    uint32_t pa0[4][4], pa1[4][4]; // P of the steps, alternating
    {                              // step 0 (o is still 0: nothing to rescale)
        constexpr int NT = T16 ? 10 : 8;
        float sf[4 * NT], a0, a1;
        uint32_t pf[NT / 2][4];
        const int2 sp = slot(T16);
        mbar_wait(&full[sp.x], sp.y);
        if constexpr (T16) mbar_wait(&full[slot(0).x], slot(0).y);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) {
            wgmma_m64n64k16_ss<0, 0>(*reinterpret_cast<float(*)[32]>(sf), dq + 2 * kk, dk0 + sp.x * TILE16 + 2 * kk,
                                     kk);
            if constexpr (T16)
                wgmma_m64n16k16_ss<0, 0>(*reinterpret_cast<float(*)[8]>(sf + 32), dq + 2 * kk,
                                         dk0 + slot(0).x * TILE16 + 2 * kk, kk);
        }
        wgmma_commit();
        wgmma_wait<0>();
        wgmma_fence_regs(sf);
        at_softmax<NT, TAIL != AT_TAIL_NONE>(sf, T16 ? AT_BN + tail : tail, t4, scale_log2, m, l, pf, a0, a1);
#pragma unroll
        for (int i = 0; i < 16; i++) pa0[i / 4][i % 4] = pf[i / 4][i % 4];
        if constexpr (T16) { // the tail's P V (keys past ntok: P = 0, V rows zero-filled)
            wgmma_fence();
            wgmma_m64n64k16_rs<1>(o, pf[4], dv0 + slot(0).x * TILE16, 1);
            wgmma_commit();
            wgmma_wait<0>();
            wgmma_fence_regs(o);
            mbar_arrive_if0(&empty[slot(0).x], rel);
        }
    }
    // Step k with the previous step's P in pprev; the new P goes to pnew.
    auto step = [&](int k, uint32_t(&pprev)[4][4], uint32_t(&pnew)[4][4]) {
        float s[32], a0, a1;
        const int2 sp = slot(k + T16);
        mbar_wait(&full[sp.x], sp.y);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < 4; kk++) wgmma_m64n64k16_ss<0, 0>(s, dq + 2 * kk, dk0 + sp.x * TILE16 + 2 * kk, kk);
        wgmma_commit();
        pv(k - 1, pprev);
        wgmma_wait<1>(); // this step's S
        wgmma_fence_regs(s);
        at_softmax<8, false>(s, AT_BN, t4, scale_log2, m, l, pnew, a0, a1);
        wgmma_wait<0>(); // the previous step's P V
        wgmma_fence_regs(o);
        mbar_arrive_if0(&empty[slot(k - 1 + T16).x], rel);
        rescale(o, a0, a1);
    };
    auto finish = [&](const uint32_t(&plast)[4][4]) { // the last step's P V
        mbar_arrive_if0(qempty, lane);
        pv(nst - 1, plast);
        wgmma_wait<0>();
        wgmma_fence_regs(o);
        mbar_arrive_if0(&empty[slot(nst - 1 + T16).x], rel);
    };
    int k = 1;
    for (; k + 1 < nst; k += 2) { // P alternates between the buffers
        step(k, pa0, pa1);
        step(k + 1, pa1, pa0);
    }
    if (k < nst) {
        step(k, pa0, pa1);
        finish(pa1);
    } else {
        finish(pa0);
    }
}

// Stores o / l (the row sums reduced over the quad) for the rows q0 +
// 16 * (warp in warpgroup) + lane / 4 and 8 below that are under ntok.
__device__ __forceinline__ void at_store(const float (&o)[32], const float (&l)[2], bf16 *out, int64_t tile, int h,
                                         int q0, int ntok, int heads, int warp, int lane) {
    float l0 = l[0], l1 = l[1];
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float i0 = 1.f / l0, i1 = 1.f / l1;
    const int r0 = q0 + (warp & 3) * 16 + (lane >> 2), r1 = r0 + 8;
    const int64_t ld = (int64_t)heads * AT_D;
    bf16 *ob = out + tile * ntok * ld + h * AT_D + 2 * (lane & 3);
#pragma unroll
    for (int j = 0; j < 8; j++) {
        if (r0 < ntok)
            *reinterpret_cast<__nv_bfloat162 *>(ob + r0 * ld + 8 * j) =
                __floats2bfloat162_rn(o[4 * j] * i0, o[4 * j + 1] * i0);
        if (r1 < ntok)
            *reinterpret_cast<__nv_bfloat162 *>(ob + r1 * ld + 8 * j) =
                __floats2bfloat162_rn(o[4 * j + 2] * i1, o[4 * j + 3] * i1);
    }
}

// Real rows of the resident kernel's last query block when they go to
// at_core_rows (at most AT_CORE_ROWS of them), else 0.
__host__ __device__ __forceinline__ int at_core_nrows(int ntok) {
    const int t = at_tail(ntok);
    return t <= AT_CORE_ROWS ? t : 0;
}

// The warps of the resident kernel's producer warpgroup that compute the
// core rows: the 3 after the TMA warp.
constexpr int AT_PCW = 3;

// Scratch of the core-row warps.
struct AtCoreScratch {
    alignas(16) bf16 q[AT_CORE_ROWS][AT_D];                 // the q rows (at_core_q_fetch)
    float m[AT_PCW][AT_CORE_ROWS], l[AT_PCW][AT_CORE_ROWS]; // per warp and row: running maximum (x scale), row sum
    float o[AT_PCW][AT_D];                                  // per warp: its partial P.V of one row, rescaled
};

// Named barrier 1 over the core-row warps (the consumers use none).
__device__ __forceinline__ void at_core_bar() { asm volatile("bar.sync 1, %0;\n" ::"n"(AT_PCW * 32) : "memory"); }

// Starts copying the nr q rows q0.. of (tile, h) into scr.q (cp.async, one
// 16-byte chunk per thread of the core-row warps from warp w0 on, in turn;
// at_core_rows waits for them): the global memory latency passes while the
// unit's K/V land.
__device__ __forceinline__ void at_core_q_fetch(const bf16 *qkv, int64_t tile, int h, int q0, int nr, int ntok,
                                                int heads, int w0, AtCoreScratch &scr) {
    for (int i = threadIdx.x - 32 * w0; i < 8 * nr; i += 32 * AT_PCW)
        cp_async16(&scr.q[i >> 3][8 * (i & 7)],
                   qkv + ((tile * ntok + q0 + (i >> 3)) * 3 * heads + h) * AT_D + 8 * (i & 7), 16);
    cp_async_commit();
}

// Address of the 16-byte chunk c of key row j in the resident K or V tiles
// (consecutive 64-row tiles, so row j sits j * 128 bytes in; 128-byte
// swizzle: chunk c of row j at chunk c ^ (j % 8)).
__device__ __forceinline__ const uint8_t *at_swz(const uint8_t *base, int j, int c) {
    return base + j * 128 + ((c ^ (j & 7)) << 4);
}

// The nr (<= AT_CORE_ROWS = 16) query rows q0.. of (tile, h), computed by the
// AT_PCW core-row warps (w0, w0 + 1, ...) with warp-level mma.sync
// (m16n8k16) from the unit's resident K/V and the q rows of at_core_q_fetch
// (these threads' last cp.async group): the rows are one 16-row m-tile (rows
// past nr repeat row nr - 1), warp w takes the key tiles w, w + AT_PCW, ...
// with the online softmax of the wgmma passes (at_softmax: fp32 scores, P
// rounded to bf16, fp32 accumulation) over 32 keys at a time (the
// producer's 104 registers), and the warps' results are merged through
// `scr`. Every warp waits for each tile's full barrier (parity par) and,
// done with it, arrives on its empty one (lane 0), so the tiles are
// refilled only once the core rows have read them too. Compact code (key
// tiles not unrolled): it shares the instruction cache with the passes.
__device__ __forceinline__ void at_core_rows(bf16 *__restrict__ out, const uint8_t *sK, const uint8_t *sV,
                                             int64_t tile, int h, int q0, int nr, int ntok, int heads,
                                             float scale_log2, int w0, uint64_t *full, uint64_t *empty, int par,
                                             AtCoreScratch &scr) {
    constexpr int NT = 4; // n-tiles (8 keys) per online-softmax step
    uint32_t tx;          // (through a volatile asm: nothing derived from it is hoisted out of the unit loop)
    asm volatile("mov.u32 %0, %%tid.x;" : "=r"(tx));
    const int lane = tx & 31, w = (int)(tx >> 5) - w0, g = lane >> 2, t4 = lane & 3;
    const int nkb = at_nkb(ntok), tail = at_tail(ntok);
    float o[32], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}; // rows g and g + 8, as in at_pass
#pragma unroll
    for (int i = 0; i < 32; i++) o[i] = 0.f;
    cp_async_wait<0>();
    at_core_bar(); // every thread's q chunk has landed
    const bf16 *qa = &scr.q[min(lane & 15, nr - 1)][8 * (lane >> 4)]; // this lane's ldmatrix row of the A fragments
#pragma unroll 1
    for (int b = 0; b < nkb; b++) {
        mbar_wait(&full[b], par);
        if (b % AT_PCW == w) {
            const uint8_t *tk = sK + b * AT_TILE, *tv = sV + b * AT_TILE;
            const int kv = b == nkb - 1 ? tail : AT_BN; // real keys of the tile (zero-filled past them)
#pragma unroll 1
            for (int k0 = 0; k0 < kv; k0 += 8 * NT) { // keys k0..k0 + 8 NT - 1: n-tile j = keys k0 + 8j..
                float s[4 * NT];
#pragma unroll
                for (int ks = 0; ks < 4; ks++) { // k-step ks: dimensions 16 ks..
                    uint32_t a0, a1, a2, a3;
                    ldsm_x4(a0, a1, a2, a3, qa + 16 * ks);
#pragma unroll
                    for (int j = 0; j < NT; j += 2) { // n-tiles j, j + 1: keys k0 + 8j + lane % 8 (+ 8 for lanes 16..)
                        uint32_t b0, b1, b2, b3;
                        ldsm_x4(b0, b1, b2, b3,
                                at_swz(tk, k0 + 8 * j + (lane & 7) + ((lane >> 4) << 3), 2 * ks + ((lane >> 3) & 1)));
                        if (ks == 0) {
                            mma_bf16_zero(&s[4 * j], a0, a1, a2, a3, b0, b1);
                            mma_bf16_zero(&s[4 * j + 4], a0, a1, a2, a3, b2, b3);
                        } else {
                            mma_bf16(&s[4 * j], a0, a1, a2, a3, b0, b1);
                            mma_bf16(&s[4 * j + 4], a0, a1, a2, a3, b2, b3);
                        }
                    }
                }
                uint32_t pa[NT / 2][4];
                float a0, a1;
                if (kv - k0 < 8 * NT) at_softmax<NT, true>(s, kv - k0, t4, scale_log2, m, l, pa, a0, a1);
                else at_softmax<NT, false>(s, 8 * NT, t4, scale_log2, m, l, pa, a0, a1);
                rescale(o, a0, a1);
#pragma unroll
                for (int kk = 0; kk < NT / 2; kk++) // O += P V, k-step kk = keys k0 + 16kk.. (P = 0 past ntok)
#pragma unroll
                    for (int dj = 0; dj < 8; dj += 2) {
                        uint32_t b0, b1, b2, b3;
                        ldsm_x4_t(b0, b1, b2, b3, at_swz(tv, k0 + 16 * kk + (lane & 15), dj + (lane >> 4)));
                        mma_bf16(&o[4 * dj], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], b0, b1);
                        mma_bf16(&o[4 * dj + 4], pa[kk][0], pa[kk][1], pa[kk][2], pa[kk][3], b2, b3);
                    }
            }
        }
        mbar_arrive_if0(&empty[b], lane);
    }
    // Merge: warp w's rows scale by 2^(m_w - max over warps); a warp without
    // key tiles has m = -inf, l = 0 (factor 0); warp 0 has key 0, so the
    // maximum is finite.
#pragma unroll
    for (int i = 0; i < 2; i++) {
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 1);
        l[i] += __shfl_xor_sync(0xffffffffu, l[i], 2);
    }
    if (t4 == 0) scr.m[w][g] = m[0], scr.m[w][g + 8] = m[1], scr.l[w][g] = l[0], scr.l[w][g + 8] = l[1];
    at_core_bar();
    auto row_max = [&](int r) {
        float mr = scr.m[0][r];
#pragma unroll
        for (int i = 1; i < AT_PCW; i++) mr = fmaxf(mr, scr.m[i][r]);
        return mr;
    };
    const float f[2] = {ex2_ftz(m[0] - row_max(g)), ex2_ftz(m[1] - row_max(g + 8))};
    const int64_t ldo = (int64_t)heads * AT_D;
#pragma unroll 1
    for (int r = 0; r < nr; r++) {
        if ((r & 7) == g) { // this lane holds 2 columns of row r in each n-tile (selects: o stays in registers)
            const bool hi = r >= 8;
            const float fr = hi ? f[1] : f[0];
#pragma unroll
            for (int j = 0; j < 8; j++)
                *reinterpret_cast<float2 *>(&scr.o[w][8 * j + 2 * t4]) =
                    make_float2((hi ? o[4 * j + 2] : o[4 * j]) * fr, (hi ? o[4 * j + 3] : o[4 * j + 1]) * fr);
        }
        at_core_bar();
        if (w == 0) {
            const float mr = row_max(r);
            float a0 = 0.f, a1 = 0.f, ls = 0.f;
#pragma unroll
            for (int i = 0; i < AT_PCW; i++)
                a0 += scr.o[i][2 * lane], a1 += scr.o[i][2 * lane + 1], ls += scr.l[i][r] * ex2_ftz(scr.m[i][r] - mr);
            *reinterpret_cast<__nv_bfloat162 *>(out + (tile * ntok + q0 + r) * ldo + h * AT_D + 2 * lane) =
                __floats2bfloat162_rn(a0 / ls, a1 / ls);
        }
        at_core_bar(); // scr.o is rewritten for the next row
    }
}

// qkv_map: the 3-D tensor map [tiles][ntok][3*heads*64] bf16 of qkv, box
// {64, 64, 1}, 128-byte swizzle; qkv itself (the resident kernel's
// at_core_rows reads q rows through it). out: [tiles*ntok, heads*64] bf16.

// Streaming kernel: work unit w = (query block of NWG*64, head, tile), query
// block fastest.
template <int NWG, AtTail TAIL>
__global__ void __launch_bounds__(AtShape<NWG, AT_NST>::THREADS, 1)
    k_vit_attn_stream(const __grid_constant__ CUtensorMap qkv_map, const bf16 *__restrict__ /* qkv: unused */,
                      bf16 *__restrict__ out, int ntok, int heads, int tiles, float scale_log2, int /* nwhole */,
                      int /* nparts */) {
    typedef AtShape<NWG, AT_NST> SH;
    constexpr int BM = 64 * NWG;
    extern __shared__ uint8_t at_smem_raw[];
    __shared__ uint64_t full[AT_NST], empty[AT_NST], qfull[2], qempty[2];
    uint8_t *sQ = smem_align1024(at_smem_raw); // [2][NWG] tiles
    uint8_t *sK = sQ + 2 * NWG * AT_TILE, *sV = sK + AT_NST * AT_TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nqb = (ntok + BM - 1) / BM, nkb = at_nkb(ntok);
    const int64_t nwork = (int64_t)nqb * heads * tiles;
    if (threadIdx.x == 0) {
        for (int st = 0; st < AT_NST; st++) {
            mbar_init(&full[st], 1);
            mbar_init(&empty[st], 4 * NWG); // lane 0 of every consumer warp
        }
        for (int i = 0; i < 2; i++) {
            mbar_init(&qfull[i], 1);
            mbar_init(&qempty[i], 4 * NWG);
        }
        mbar_fence_init();
    }
    __syncthreads();
    pdl_wait();
    pdl_trigger();

    if (warp >= 4 * NWG) { // producer warpgroup: per unit its Q tiles, then its K/V blocks
        warpgroup_reg_dealloc<SH::PROD_REG>();
        if (warp == 4 * NWG && lane == 0) {
            int it = 0, u = 0; // K/V blocks and units so far
            for (int64_t w = blockIdx.x; w < nwork; w += gridDim.x, u++) {
                const int h = (int)(w / nqb % heads), tile = (int)(w / ((int64_t)nqb * heads));
                const int q0 = (int)(w % nqb) * BM, nwg = min(NWG, (ntok - q0 + 63) / 64), qs = u & 1;
                if (u >= 2) mbar_wait(&qempty[qs], ((u >> 1) - 1) & 1);
                mbar_arrive_expect_tx(&qfull[qs], nwg * AT_TILE);
                for (int g = 0; g < nwg; g++)
                    tma_load_3d(sQ + (qs * NWG + g) * AT_TILE, &qkv_map, &qfull[qs], h * AT_D, q0 + 64 * g, tile);
                for (int i = 0; i < nkb; i++, it++) { // at_pass's order: the last block first
                    const int st = it % AT_NST, kb = i == 0 ? nkb - 1 : i - 1;
                    if (it >= AT_NST) mbar_wait(&empty[st], (it / AT_NST - 1) & 1);
                    mbar_arrive_expect_tx(&full[st], 2 * AT_TILE); // out-of-range rows count too (zero-filled)
                    tma_load_3d(sK + st * AT_TILE, &qkv_map, &full[st], (heads + h) * AT_D, kb * AT_BN, tile);
                    tma_load_3d(sV + st * AT_TILE, &qkv_map, &full[st], (2 * heads + h) * AT_D, kb * AT_BN, tile);
                }
            }
        }
        return;
    }
    warpgroup_reg_alloc<SH::CONS_REG>();
    const int wg = warp >> 2, tail = at_tail(ntok);
    const uint64_t dk0 = wgmma_desc(sK, 0, 1024), dv0 = wgmma_desc(sV, 1024, 1024);
    int it = 0, u = 0;
    for (int64_t w = blockIdx.x; w < nwork; w += gridDim.x, u++) {
        const int h = (int)(w / nqb % heads), tile = (int)(w / ((int64_t)nqb * heads));
        const int q0 = (int)(w % nqb) * BM + 64 * wg, qs = u & 1, ib0 = it;
        it += nkb;
        auto slot = [&](int k) { return make_int2((ib0 + k) % AT_NST, ((ib0 + k) / AT_NST) & 1); };
        if (q0 >= ntok) { // no real query: keep the barrier counts
            for (int k = 0; k < nkb; k++) {
                mbar_wait(&full[slot(k).x], slot(k).y);
                mbar_arrive_if0(&empty[slot(k).x], lane);
            }
            mbar_arrive_if0(&qempty[qs], lane);
            continue;
        }
        float o[32], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
        for (int i = 0; i < 32; i++) o[i] = 0.f;
        mbar_wait(&qfull[qs], (u >> 1) & 1);
        at_pass<TAIL>(wgmma_desc(sQ + (qs * NWG + wg) * AT_TILE, 0, 1024), dk0, dv0, nkb, tail, scale_log2, lane,
                      full, empty, &qempty[qs], 0, slot, o, m, l);
        at_store(o, l, out, tile, h, q0, ntok, heads, warp, lane);
    }
}

// Whether the resident kernel holds all key blocks of ntok tokens.
inline bool at_res_fits(int ntok) { return at_nkb(ntok) <= AT_RES_NKB; }
// Work units of the streaming kernel per (tile, head): 64 NWG queries each.
inline int at_stream_units(int ntok, int nwg) { return (ntok + 64 * nwg - 1) / (64 * nwg); }
// Passes per warpgroup of a whole (tile, head) pair in the resident kernel: its query blocks but a last one of
// core rows (at_core_nrows), nwg at a time.
__host__ __device__ __forceinline__ int at_res_passes(int ntok, int nwg) {
    return (at_nkb(ntok) - (at_core_nrows(ntok) > 0) + nwg - 1) / nwg;
}
struct AtUnit {
    int h, tile, p0, p1; // passes p0 .. p1 - 1 of (head, tile)
    bool core;           // with the core rows (the pair's last unit)
};
__device__ __forceinline__ AtUnit at_unit(int w, int heads, int nwhole, int nparts, int passes) {
    if (w < nwhole) return AtUnit{w % heads, w / heads, 0, passes, true};
    const int pair = nwhole + (w - nwhole) / nparts, part = (w - nwhole) % nparts;
    return AtUnit{pair % heads, pair / heads, part * passes / nparts, (part + 1) * passes / nparts, part == nparts - 1};
}

// Resident kernel: work unit = (head, tile), nkb <= AT_RES_NKB. The nqp
// query blocks that run as wgmma passes (all nkb, or nkb - 1 when the last
// one goes to at_core_rows): consumer warpgroup g takes the blocks g, g +
// NWG, ... (pass p: block NWG p + g; its Q tiles double-buffered) and
// releases each K/V tile on its last pass, so the producer refills it with
// the next unit's block while that pass runs. PCORE (the unit has core rows):
// the producer warpgroup's AT_PCW spare warps compute them from each tile as
// it lands, and the tiles wait for their arrivals too. The CTAs take the
// first nwhole (head, tile) pairs whole; each later one comes as nparts units
// of consecutive passes (at_unit), so that a last round of few pairs still
// fills the SMs (19 tiles: 304 pairs = 2 rounds of 132 and 40 left, which
// as 120 one-pass units take a third of a round). Every unit loads its K/V.
template <int NWG, AtTail TAIL, bool PCORE>
__global__ void __launch_bounds__(AtShape<NWG, AT_RES_NKB, PCORE>::THREADS, 1)
    k_vit_attn_resident(const __grid_constant__ CUtensorMap qkv_map, const bf16 *__restrict__ qkv,
                        bf16 *__restrict__ out, int ntok, int heads, int tiles, float scale_log2, int nwhole,
                        int nparts) {
    typedef AtShape<NWG, AT_RES_NKB, PCORE> SH;
    extern __shared__ uint8_t at_smem_raw[];
    __shared__ uint64_t full[AT_RES_NKB], empty[AT_RES_NKB], qfull[NWG][2], qempty[NWG][2];
    __shared__ AtCoreScratch core_scr;
    uint8_t *sQ = smem_align1024(at_smem_raw); // [NWG][2] tiles
    uint8_t *sK = sQ + 2 * NWG * AT_TILE, *sV = sK + AT_RES_NKB * AT_TILE;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nkb = at_nkb(ntok), ncore = at_core_nrows(ntok), nqp = nkb - (ncore > 0);
    const int passes = at_res_passes(ntok, NWG);
    const int nwork = nwhole + (heads * tiles - nwhole) * nparts; // (< 2^31: at_launch)
    if (threadIdx.x == 0) {
        for (int b = 0; b < AT_RES_NKB; b++) {
            mbar_init(&full[b], 1);
            // lane 0 of every consumer warp, on its last pass, and of every core-row warp
            mbar_init(&empty[b], 4 * NWG + (PCORE ? AT_PCW : 0));
        }
        for (int g = 0; g < NWG; g++)
            for (int i = 0; i < 2; i++) {
                mbar_init(&qfull[g][i], 1);
                mbar_init(&qempty[g][i], 4);
            }
        mbar_fence_init();
    }
    __syncthreads();
    pdl_wait();
    pdl_trigger();

    if (warp >= 4 * NWG) { // producer warpgroup: per unit the first Q tiles, the K/V, the other Q tiles
        warpgroup_reg_dealloc<SH::PROD_REG>();
        if (warp == 4 * NWG) {
            if (lane != 0) return;
            int npass[NWG] = {}; // Q tiles loaded so far, per consumer warpgroup
            auto load_q = [&](int g, int qb, int h, int tile) {
                const int qs = npass[g] & 1, n = npass[g] >> 1;
                if (n >= 1) mbar_wait(&qempty[g][qs], (n - 1) & 1);
                mbar_arrive_expect_tx(&qfull[g][qs], AT_TILE);
                tma_load_3d(sQ + (g * 2 + qs) * AT_TILE, &qkv_map, &qfull[g][qs], h * AT_D, qb * 64, tile);
                npass[g]++;
            };
            int u = 0;
            for (int w = blockIdx.x; w < nwork; w += gridDim.x, u++) {
                const AtUnit un = at_unit(w, heads, nwhole, nparts, passes);
                const int qb0 = NWG * un.p0, qb1 = min(nqp, NWG * un.p1); // the unit's query blocks
                for (int qb = qb0; qb < qb1 && qb < qb0 + NWG; qb++) load_q(qb % NWG, qb, un.h, un.tile);
                for (int i = 0; i < nkb; i++) { // at_pass's order: the last block first
                    const int b = i == 0 ? nkb - 1 : i - 1;
                    if (u >= 1) mbar_wait(&empty[b], (u - 1) & 1);
                    mbar_arrive_expect_tx(&full[b], 2 * AT_TILE); // out-of-range rows count too (zero-filled)
                    tma_load_3d(sK + b * AT_TILE, &qkv_map, &full[b], (heads + un.h) * AT_D, b * AT_BN, un.tile);
                    tma_load_3d(sV + b * AT_TILE, &qkv_map, &full[b], (2 * heads + un.h) * AT_D, b * AT_BN, un.tile);
                }
                for (int qb = qb0 + NWG; qb < qb1; qb++) load_q(qb % NWG, qb, un.h, un.tile);
            }
        } else if (PCORE && warp <= 4 * NWG + AT_PCW) { // the core rows of every unit
            int u = 0;
            for (int w = blockIdx.x; w < nwork; w += gridDim.x, u++) {
                const AtUnit un = at_unit(w, heads, nwhole, nparts, passes);
                if (!un.core) { // keep the barrier counts
                    for (int b = 0; b < nkb; b++) {
                        mbar_wait(&full[b], u & 1);
                        mbar_arrive_if0(&empty[b], lane);
                    }
                    continue;
                }
                at_core_q_fetch(qkv, un.tile, un.h, nqp * 64, ncore, ntok, heads, 4 * NWG + 1, core_scr);
                at_core_rows(out, sK, sV, un.tile, un.h, nqp * 64, ncore, ntok, heads, scale_log2, 4 * NWG + 1, full,
                             empty, u & 1, core_scr);
            }
        }
        return;
    }
    warpgroup_reg_alloc<SH::CONS_REG>();
    const int wg = warp >> 2, tail = at_tail(ntok);
    const uint64_t dk0 = wgmma_desc(sK, 0, 1024), dv0 = wgmma_desc(sV, 1024, 1024);
    int np = 0, u = 0; // passes and units so far
    for (int w = blockIdx.x; w < nwork; w += gridDim.x, u++) {
        const AtUnit un = at_unit(w, heads, nwhole, nparts, passes);
        const int h = un.h, tile = un.tile, qb1 = min(nqp, NWG * un.p1);
        auto slot = [&](int i) { return make_int2(i == 0 ? nkb - 1 : i - 1, u & 1); }; // tile b holds block b
        if (NWG * un.p0 + wg >= qb1) { // no wgmma pass in this unit: keep the barrier counts
            for (int b = 0; b < nkb; b++) {
                mbar_wait(&full[b], u & 1);
                mbar_arrive_if0(&empty[b], lane);
            }
            continue;
        }
        for (int qb = NWG * un.p0 + wg; qb < qb1; qb += NWG) {
            const bool last = qb + NWG >= qb1; // the last pass releases the K/V tiles
            const int qs = np & 1;
            float o[32], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
#pragma unroll
            for (int i = 0; i < 32; i++) o[i] = 0.f;
            mbar_wait(&qfull[wg][qs], (np >> 1) & 1);
            at_pass<TAIL>(wgmma_desc(sQ + (wg * 2 + qs) * AT_TILE, 0, 1024), dk0, dv0, nkb, tail, scale_log2, lane,
                          full, empty, &qempty[wg][qs], !last, slot, o, m, l);
            at_store(o, l, out, tile, h, qb * 64, ntok, heads, warp, lane);
            np++;
        }
    }
}

// The resident kernel's split of a last, partial round (k_vit_attn_resident)
// for `pairs` (tile, head) pairs of `passes` passes per warpgroup: the first
// nwhole whole, each later one as nparts units of consecutive passes.
// Returns the passes of the busiest CTA.
int at_res_split(int64_t pairs, int sms, int passes, int64_t *nwhole, int *nparts) {
    const int64_t left = pairs % sms;
    *nwhole = pairs - left;
    *nparts = left > 0 ? (int)std::max<int64_t>(1, std::min<int64_t>(passes, sms / left)) : 1;
    return (int)(*nwhole / sms * passes + (left > 0 ? (passes + *nparts - 1) / *nparts : 0));
}

// The kernels of mvl_cuda_vit_attn_sm90_variant; grid: one CTA per SM (at
// most one per work unit).
template <int NWG, bool RESIDENT>
mvl_status at_launch(cudaStream_t s, const CUtensorMap &map, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok,
                     int heads, float scale, int sms, mvl_error *err) {
    const int tail = at_tail(ntok);
    const AtTail tk = tail == AT_BN ? AT_TAIL_NONE : tail <= 16 && ntok > AT_BN ? AT_TAIL_16 : AT_TAIL_MASK;
    void (*k)(const CUtensorMap, const bf16 *, bf16 *, int, int, int, float, int, int);
    int threads, smem;
    if (RESIDENT && at_core_nrows(ntok) > 0) { // (then tail <= 16: AT_TAIL_16, or AT_TAIL_MASK in one block)
        typedef AtShape<NWG, AT_RES_NKB, true> S;
        k = tk == AT_TAIL_16 ? k_vit_attn_resident<NWG, AT_TAIL_16, true>
                             : k_vit_attn_resident<NWG, AT_TAIL_MASK, true>;
        threads = S::THREADS, smem = S::SMEM;
    } else if (RESIDENT) { // tail > 16
        typedef AtShape<NWG, AT_RES_NKB> S;
        k = tk == AT_TAIL_NONE ? k_vit_attn_resident<NWG, AT_TAIL_NONE, false>
                               : k_vit_attn_resident<NWG, AT_TAIL_MASK, false>;
        threads = S::THREADS, smem = S::SMEM;
    } else {
        typedef AtShape<NWG, AT_NST> S;
        k = tk == AT_TAIL_NONE   ? k_vit_attn_stream<NWG, AT_TAIL_NONE>
            : tk == AT_TAIL_16   ? k_vit_attn_stream<NWG, AT_TAIL_16>
                                 : k_vit_attn_stream<NWG, AT_TAIL_MASK>;
        threads = S::THREADS, smem = S::SMEM;
    }
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const int64_t units = RESIDENT ? 1 : at_stream_units(ntok, NWG), pairs = units * heads * tiles;
    int64_t nwhole = pairs;
    int nparts = 1;
    if (RESIDENT) at_res_split(pairs, sms, at_res_passes(ntok, NWG), &nwhole, &nparts);
    const int64_t work = nwhole + (pairs - nwhole) * nparts;
    if (RESIDENT && work >= (int64_t)1 << 31) // the resident kernel's int unit indices
        return mvl_fail(err, MVL_ERR_ARG, "CUDA ViT attention: %lld tiles x %d heads is past the kernels' indices",
                        (long long)tiles, heads);
    return mvl_cuda_launch_pdl(k, dim3((unsigned)std::min<int64_t>(work, sms)), dim3(threads), smem, s, err, map, qkv,
                               out, ntok, heads, (int)tiles, scale * 1.4426950408889634f, (int)nwhole, nparts);
}

// mvl_cuda_vit_attn_sm90_variant on a device of `sms` SMs.
mvl_status attn_run(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads, float scale,
                    int variant, int sms, mvl_error *err) {
    if (tiles < 1 || tiles > 65535 || ntok < 1 || heads < 1 || heads > 65535)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA ViT attention: %lld tiles x %d tokens x %d heads out of range",
                        (long long)tiles, ntok, heads);
    if (variant < 0 || variant >= MVL_VIT_ATTN_SM90_VARIANTS)
        return mvl_fail(err, MVL_ERR_ARG, "CUDA ViT attention: no kernel variant %d", variant);
    const uint64_t w = 3ull * heads * AT_D;
    const uint64_t dims[3] = {w, (uint64_t)ntok, (uint64_t)tiles}, strides[2] = {w * 2, w * 2 * ntok};
    const uint32_t box[3] = {AT_D, 64, 1};
    CUtensorMap map;
    TRY(mvl_cuda_tensor_map_bf16(&map, qkv, 3, dims, strides, box, err));
    const bool fits = at_res_fits(ntok);
    switch (variant) {
    case 0: return at_launch<2, false>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err);
    case 1: return at_launch<3, false>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err);
    case 2:
        return fits ? at_launch<2, true>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err)
                    : at_launch<2, false>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err);
    default:
        return fits ? at_launch<AT_DEFAULT_NWG, true>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err)
                    : at_launch<AT_DEFAULT_NWG, false>(s, map, qkv, out, tiles, ntok, heads, scale, sms, err);
    }
}

} // namespace

mvl_status mvl_cuda_vit_attn_sm90_variant(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok,
                                          int heads, float scale, int variant, mvl_error *err) {
    int sms;
    TRY(mvl_cuda_sm_count(&sms, err));
    return attn_run(s, qkv, out, tiles, ntok, heads, scale, variant, sms, err);
}

mvl_status mvl_cuda_vit_attn_sm90(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads,
                                  float scale, mvl_error *err) {
    // The resident kernel (the default) or the streaming one with 2 consumer
    // warpgroups, by rounds: the busiest resident CTA runs `res` passes of 64
    // queries per warpgroup (at_res_split), the busiest streaming CTA `str`
    // units of 128 queries, and the two take about as long (H100, 577 tokens,
    // test_gpu_vit_attn, ms per call, streaming / resident: 1 tile 0.0125 /
    // 0.0155 (1 round / 1 pass), 2 tiles 0.0204 / 0.0161 (2 / 1), 3 tiles
    // 0.0204 / 0.0245 (2 / 2), 4 tiles 0.0277 / 0.0248 (3 / 2), 8 tiles
    // 0.0437 / 0.0353 (5 / 3)). Streaming where it needs no more rounds.
    int sms;
    TRY(mvl_cuda_sm_count(&sms, err));
    // (Past AT_RES_NKB key blocks the default streams too, with 3 warpgroups: then the 2-warpgroup one below one
    // pair per SM.)
    int variant = tiles * heads >= sms ? MVL_VIT_ATTN_SM90_DEFAULT : 0;
    if (at_res_fits(ntok)) {
        int64_t nwhole;
        int nparts;
        const int res = at_res_split(tiles * heads, sms, at_res_passes(ntok, AT_DEFAULT_NWG), &nwhole, &nparts);
        const int64_t str = (tiles * heads * at_stream_units(ntok, 2) + sms - 1) / sms;
        variant = str <= res ? 0 : MVL_VIT_ATTN_SM90_DEFAULT;
    }
    return attn_run(s, qkv, out, tiles, ntok, heads, scale, variant, sms, err);
}
