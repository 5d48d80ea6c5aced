// Shared pieces of the CUDA backend (kernels/*.cu): bf16 conversion on the
// host, stored-tensor access, a device arena, the mma/ldmatrix/cp.async PTX
// wrappers the fused kernels use, and a cuBLASLt Linear with a plan cache.
// C++ (CUDA) only; the C side sees each stage's own header.
#ifndef MVL_CUDA_COMMON_CUH
#define MVL_CUDA_COMMON_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>
#include <vector>

#include "kernels/cuda_check.h"
extern "C" {
#include "model/model_dir.h"
}

typedef __nv_bfloat16 bf16;

#define TRY(x)                                                                                                         \
    do {                                                                                                               \
        mvl_status st_ = (x);                                                                                          \
        if (st_ != MVL_OK) return st_;                                                                                 \
    } while (0)
#define LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

// ---- host-side conversion ------------------------------------------------------

// float -> bf16 bits, round to nearest even (as torch's .to(bfloat16)); NaN stays NaN.
static inline uint16_t mvl_f32_to_bf16_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
static inline float mvl_bf16_bits_to_f32(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
float mvl_half_bits_to_f32(uint16_t h);
// Element i of a F32, BF16 or F16 tensor view as float.
float mvl_view_get(const mvl_tensor_view *tv, int64_t i);
// Looks `name` up with its exact shape and accepts F32/BF16/F16 only; `what`
// names the stage in the message ("CUDA vision").
mvl_status mvl_cuda_tensor_get(const mvl_model_dir *md, const char *what, const char *name, int ndim,
                               const int64_t *shape, mvl_tensor_view *tv, mvl_error *err);

// ---- device arena ------------------------------------------------------------------

static inline size_t mvl_align256(size_t n) { return (n + 255) & ~(size_t)255; }

struct mvl_arena {
    char *base = nullptr;
    size_t size = 0, used = 0;
    void *take(size_t n) { // 256-byte aligned slices; sizes were summed up front
        size_t off = mvl_align256(used);
        if (off + n > size) return nullptr;
        used = off + n;
        return base + off;
    }
};

// The SM count of the current device: persistent kernels size their grids by it, and some launch choices
// depend on it.
mvl_status mvl_cuda_sm_count(int *sms, mvl_error *err);

// Blocks for a grid-stride loop over n items.
static inline int mvl_grid_for(int64_t n, int block) {
    int64_t b = (n + block - 1) / block;
    return (int)std::min<int64_t>(std::max<int64_t>(b, 1), 132 * 32);
}

// ---- programmatic dependent launch (sm_90) --------------------------------------------
// A kernel launched by mvl_cuda_launch_pdl may start while the stream's previous kernel finishes: its CTAs take
// SMs that kernel has left and do their set-up (barriers, descriptors), then wait in pdl_wait until it has
// completed and its memory is visible. Such a kernel calls pdl_wait in every thread before it touches memory an
// earlier kernel writes or reads (then its completion also implies theirs, which the next kernel relies on), and
// pdl_trigger to let the next one start early. Both are no-ops in a kernel launched plainly.
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;\n" ::: "memory"); }
__device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory"); }
// The launch configuration for cudaLaunchKernelEx (or an occupancy query): programmatic dependent launch allowed,
// in clusters of `cluster` CTAs along x when cluster > 1. attr holds the attributes cfg points to.
inline void mvl_cuda_pdl_config(cudaLaunchConfig_t *cfg, cudaLaunchAttribute (&attr)[2], dim3 grid, dim3 block,
                                size_t smem, cudaStream_t s, unsigned cluster = 1) {
    *cfg = cudaLaunchConfig_t{};
    cfg->gridDim = grid, cfg->blockDim = block, cfg->dynamicSmemBytes = smem, cfg->stream = s;
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    attr[1].id = cudaLaunchAttributeClusterDimension;
    attr[1].val.clusterDim.x = cluster, attr[1].val.clusterDim.y = 1, attr[1].val.clusterDim.z = 1;
    cfg->attrs = attr, cfg->numAttrs = cluster > 1 ? 2 : 1;
}
template <typename... KArgs, typename... Args>
mvl_status mvl_cuda_launch_pdl(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                               mvl_error *err, Args... args) {
    cudaLaunchConfig_t cfg;
    cudaLaunchAttribute attr[2];
    mvl_cuda_pdl_config(&cfg, attr, grid, block, smem, s);
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, static_cast<KArgs>(args)...));
    return MVL_OK;
}

// ---- PTX helpers (sm_80+ instructions, used on sm_90) ---------------------------------

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }
__device__ __forceinline__ void ldsm_x4(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t &r0, uint32_t &r1, uint32_t &r2, uint32_t &r3, const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(smem_u32(p)));
}
// d[4] += A(16x16, row) . B(16x8, col), bf16 in, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
// d[4] = A . B (accumulator starts at zero: no zeroing moves).
__device__ __forceinline__ void mma_bf16_zero(float *d, uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                              uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%10,%10,%10,%10};\n"
                 : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "f"(0.f));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &v, 4);
    return u;
}
// 2^x on the special-function unit (denormal results flush to 0, 2^-inf = 0):
// the softmax exponent of the attention kernels.
__device__ __forceinline__ float ex2_ftz(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

// ---- exact GELU -----------------------------------------------------------------------

// 0.5 x (1 + erf(x / sqrt 2)) in fp32, as torch computes GELU on a bf16 tensor (vision.md: the exact erf form,
// not the tanh one); callers round the result to bf16 once. The pass below and the fused GEMM epilogue both
// use it, so they give the same bits.
__device__ __forceinline__ float mvl_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
// x[0..n) = GELU(x) in place on bf16, on stream s.
mvl_status mvl_cuda_gelu(cudaStream_t s, bf16 *x, int64_t n, mvl_error *err);

// ---- cuBLASLt Linear ----------------------------------------------------------------

struct mvl_gemm_plan {
    int64_t m, n, k;
    int out_f32, has_bias, accumulate;
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
    cublasLtMatmulAlgo_t algo;
};

// A cuBLASLt handle, its workspace (device memory owned by the caller) and the
// plans made so far; one per stream of work.
struct mvl_cuda_gemm {
    cublasLtHandle_t lt = nullptr;
    void *workspace = nullptr;
    size_t workspace_size = 0;
    // Optional: device memory holding nothing live whenever an accumulating
    // Linear runs on this handle; see mvl_cuda_linear.
    void *tune_y = nullptr;
    size_t tune_size = 0;
    std::vector<mvl_gemm_plan> plans;
};

mvl_status mvl_cuda_gemm_init(mvl_cuda_gemm *g, void *workspace, size_t workspace_size, mvl_error *err);
void mvl_cuda_gemm_free(mvl_cuda_gemm *g);
// y[m, n] (+)= x[m, k] . w[n, k]^T (+ bias[n]), a PyTorch Linear on row-major
// bf16 x and w, fp32 accumulate; y is fp32 (out_f32) or bf16, and so is bias.
// The first call of a shape makes its plan. For a large GEMM the plan times
// cuBLASLt's candidate algorithms on the call's operands (output into y, or
// into tune_y when accumulating; without room there it takes the first) and
// keeps the fastest if it beats the first by 3%: cuBLASLt's first pick ran
// the ViT's out_proj 13% slower than its sixth (H100, 64 tiles).
mvl_status mvl_cuda_linear(mvl_cuda_gemm *g, cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w,
                           int64_t n, const void *bias, void *y, int out_f32, int accumulate, mvl_error *err);

// Enqueues p[0..n) = bf16 values uniform in [-scale, scale) from a counter
// hash of (i, seed): benchmark weights and inputs.
mvl_status mvl_cuda_fill_random_bf16(cudaStream_t s, bf16 *p, int64_t n, uint32_t seed, float scale, mvl_error *err);
// Same for uint8 in [0, 255].
mvl_status mvl_cuda_fill_random_u8(cudaStream_t s, uint8_t *p, int64_t n, uint32_t seed, mvl_error *err);

// ---- sm_90a GEMM (kernels/cuda_gemm_sm90.cu) ------------------------------------------

// y[m, n] = epi(x[m, k] . w[n, k]^T + bias[n]) on row-major bf16 x, w, y and bf16 bias (or none), fp32
// accumulate, by a TMA + wgmma kernel. MVL_EPI_NONE rounds once; MVL_EPI_GELU rounds acc + bias to bf16
// first (torch rounds the Linear's output), then 0.5 x (1 + erf(x / sqrt 2)) in fp32 on that bf16 value,
// rounded to bf16 (vision.md: exact erf GELU), the arithmetic of cuda_vit.cu's GELU pass. Launch only where
// mvl_cuda_has_wgmma says yes and mvl_cuda_linear_sm90_ok takes the shape (k % 64 == 0, n % 256 == 0);
// x, w, y 16-byte aligned, bias 4-byte aligned. The first MVL_EPI_GELU call (or mvl_cuda_sm90_gelu) on a
// device makes the epilogue's GELU table there (128 KB, kept for the process) and synchronizes its stream
// once, so it must not be inside a graph capture.
enum { MVL_EPI_NONE = 0, MVL_EPI_GELU = 1 };
bool mvl_cuda_linear_sm90_ok(int64_t m, int64_t k, int64_t n);
// The share of the persistent kernel's tile slots (its rounds x the sms / 2 clusters of 2 CTAs) that the
// tiles of an m x n output fill: 1 when they make whole rounds.
double mvl_cuda_linear_sm90_fill(int64_t m, int64_t n, int sms);
mvl_status mvl_cuda_linear_sm90(cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w, int64_t n,
                                const bf16 *bias, bf16 *y, int epi, mvl_error *err);
// y[i] = the fused epilogue's GELU of x[i] for i < n (n % 8 == 0; the same device code), for the tests.
mvl_status mvl_cuda_sm90_gelu(cudaStream_t s, const bf16 *x, bf16 *y, int64_t n, mvl_error *err);

#endif
