// Shared host helpers and the cuBLASLt Linear of the CUDA backend (see
// cuda_common.cuh).
#include "kernels/cuda_common.cuh"
#include "kernels/cuda_wgmma.cuh"

#include <cudaTypedefs.h>

float mvl_half_bits_to_f32(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 0) {
        if (m == 0) u = s;
        else { // subnormal: renormalise
            int sh = 0;
            while (!(m & 1024)) m <<= 1, sh++;
            u = s | ((uint32_t)(113 - sh) << 23) | ((m & 1023) << 13);
        }
    } else if (e == 31) u = s | 0x7f800000u | (m << 13);
    else u = s | ((e + 112) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float mvl_view_get(const mvl_tensor_view *tv, int64_t i) {
    uint16_t b;
    switch (tv->dtype) {
    case MVL_DTYPE_F32: {
        float f;
        memcpy(&f, (const char *)tv->data + 4 * i, 4);
        return f;
    }
    case MVL_DTYPE_BF16: memcpy(&b, (const char *)tv->data + 2 * i, 2); return mvl_bf16_bits_to_f32(b);
    default: memcpy(&b, (const char *)tv->data + 2 * i, 2); return mvl_half_bits_to_f32(b);
    }
}

mvl_status mvl_cuda_tensor_get(const mvl_model_dir *md, const char *what, const char *name, int ndim,
                               const int64_t *shape, mvl_tensor_view *tv, mvl_error *err) {
    mvl_status st = mvl_model_dir_tensor(md, name, MVL_DTYPE_COUNT, ndim, shape, tv, err);
    if (st != MVL_OK) return st;
    if (tv->dtype != MVL_DTYPE_F32 && tv->dtype != MVL_DTYPE_BF16 && tv->dtype != MVL_DTYPE_F16)
        return mvl_fail(err, MVL_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s; the %s takes F32, BF16 or F16", tv->file,
                        name, mvl_dtype_name(tv->dtype), what);
    return MVL_OK;
}

mvl_status mvl_cuda_gemm_init(mvl_cuda_gemm *g, void *workspace, size_t workspace_size, mvl_error *err) {
    CUBLAS_CHECK(cublasLtCreate(&g->lt));
    g->workspace = workspace;
    g->workspace_size = workspace_size;
    return MVL_OK;
}

void mvl_cuda_gemm_free(mvl_cuda_gemm *g) {
    for (auto &p : g->plans) {
        cublasLtMatrixLayoutDestroy(p.a);
        cublasLtMatrixLayoutDestroy(p.b);
        cublasLtMatrixLayoutDestroy(p.c);
        cublasLtMatmulDescDestroy(p.op);
    }
    g->plans.clear();
    if (g->lt) cublasLtDestroy(g->lt);
    g->lt = nullptr;
}

// y (+)= x . w^T (+ bias) through plan p with algorithm algo, beta = 1 where the plan accumulates.
static cublasStatus_t lt_matmul(mvl_cuda_gemm *g, cudaStream_t s, const mvl_gemm_plan *p,
                                const cublasLtMatmulAlgo_t *algo, const bf16 *x, const bf16 *w, void *y) {
    const float one = 1.f, beta = p->accumulate ? 1.f : 0.f;
    return cublasLtMatmul(g->lt, p->op, &one, w, p->a, x, p->b, &beta, y, p->c, y, p->c, algo, g->workspace,
                          g->workspace_size, s);
}

// Times each of the n candidate algorithms of p on the call's operands, writing into out, and sets p->algo
// to the fastest if it beats res[0] by 3% (else res[0]: timing noise should not flip the choice). res[0] is
// timed first and again last, its better time counting, so that warm-up drift favours no candidate.
static mvl_status plan_tune(mvl_cuda_gemm *g, cudaStream_t s, mvl_gemm_plan *p,
                            const cublasLtMatmulHeuristicResult_t *res, int n, const bf16 *x, const bf16 *w,
                            void *out, mvl_error *err) {
    constexpr int REPS = 5;
    cudaEvent_t ev[2];
    CUDA_CHECK(cudaEventCreate(&ev[0]));
    if (cudaEventCreate(&ev[1]) != cudaSuccess) {
        cudaEventDestroy(ev[0]);
        return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: cudaEventCreate failed", __FILE__, __LINE__);
    }
    float best = INFINITY, first = INFINITY;
    int pick = 0;
    cudaError_t ce = cudaSuccess;
    for (int v = 0; v <= n && ce == cudaSuccess; v++) {
        const int i = v % n;
        auto run = [&] { return lt_matmul(g, s, p, &res[i].algo, x, w, out); }; // the call's own beta
        if (run() != CUBLAS_STATUS_SUCCESS) continue; // this algorithm cannot run here after all: not a candidate
        bool ran = (ce = cudaEventRecord(ev[0], s)) == cudaSuccess;
        for (int r = 0; r < REPS && ran; r++) ran = run() == CUBLAS_STATUS_SUCCESS;
        float ms = INFINITY;
        if (ran && (ce = cudaEventRecord(ev[1], s)) == cudaSuccess && (ce = cudaEventSynchronize(ev[1])) == cudaSuccess)
            ce = cudaEventElapsedTime(&ms, ev[0], ev[1]);
        if (ce != cudaSuccess) break;
        if (i == 0) first = fminf(first, ms);
        else if (ms < best) best = ms, pick = i;
    }
    cudaEventDestroy(ev[0]);
    cudaEventDestroy(ev[1]);
    if (ce != cudaSuccess)
        return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: timing cuBLASLt algorithms: %s", __FILE__, __LINE__,
                        cudaGetErrorString(ce));
    p->algo = res[pick > 0 && best < 0.97f * first ? pick : 0].algo;
    return MVL_OK;
}

static mvl_status plan_get(mvl_cuda_gemm *g, cudaStream_t s, int64_t m, int64_t n, int64_t k, int out_f32,
                           const void *bias, int accumulate, const bf16 *x, const bf16 *w, void *y, mvl_gemm_plan **out,
                           mvl_error *err) {
    const int has_bias = bias != nullptr;
    for (auto &p : g->plans)
        if (p.m == m && p.n == n && p.k == k && p.out_f32 == out_f32 && p.has_bias == has_bias &&
            p.accumulate == accumulate) {
            *out = &p;
            return MVL_OK;
        }
    // the handle owns the plan's descriptors from the start (freed with it, null or not); m stays -1, so that
    // no call finds the plan, until it is complete
    g->plans.push_back(mvl_gemm_plan{});
    mvl_gemm_plan *p = &g->plans.back();
    p->m = -1, p->n = n, p->k = k, p->out_f32 = out_f32, p->has_bias = has_bias, p->accumulate = accumulate;
    // Column-major view: C^T[n_out, m] = W[n_out, k] (as T of col-major [k, n_out]) x X^T (col-major [k, m]).
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtEpilogue_t epi = has_bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (has_bias) {
        cudaDataType_t bt = out_f32 ? CUDA_R_32F : CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    cudaDataType_t ct = out_f32 ? CUDA_R_32F : CUDA_R_16BF;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, k, n, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, k, m, k));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p->c, ct, n, m, n));
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    cublasStatus_t st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                             &g->workspace_size, sizeof g->workspace_size);
    cublasLtMatmulHeuristicResult_t res[8];
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = cublasLtMatmulAlgoGetHeuristic(g->lt, p->op, p->a, p->b, p->c, p->c, pref, 8, res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    CUBLAS_CHECK(st);
    if (found < 1)
        return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: cuBLASLt has no algorithm for a %lld x %lld x %lld bf16 GEMM",
                        __FILE__, __LINE__, (long long)m, (long long)n, (long long)k);
    p->algo = res[0].algo;
    // large enough that a few calls of each candidate cost little against the time a better one saves
    const size_t y_bytes = (size_t)m * n * (out_f32 ? 4 : 2);
    void *trial = accumulate ? (g->tune_size >= y_bytes ? g->tune_y : nullptr) : y;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone; // no timing inside a graph capture
    CUDA_CHECK(cudaStreamIsCapturing(s, &cap));
    if (found > 1 && trial && 2.0 * m * n * k >= 8e9 && cap == cudaStreamCaptureStatusNone)
        TRY(plan_tune(g, s, p, res, found, x, w, trial, err));
    p->m = m;
    *out = p;
    return MVL_OK;
}

mvl_status mvl_cuda_linear(mvl_cuda_gemm *g, cudaStream_t s, const bf16 *x, int64_t m, int64_t k, const bf16 *w,
                           int64_t n, const void *bias, void *y, int out_f32, int accumulate, mvl_error *err) {
    mvl_gemm_plan *p;
    TRY(plan_get(g, s, m, n, k, out_f32, bias, accumulate, x, w, y, &p, err));
    if (bias) CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    CUBLAS_CHECK(lt_matmul(g, s, p, &p->algo, x, w, y));
    return MVL_OK;
}

__device__ __forceinline__ uint32_t hash_u32(int64_t i, uint32_t seed) {
    uint32_t x = (uint32_t)i * 2654435761u ^ (uint32_t)(i >> 32) * 40503u ^ seed;
    x ^= x >> 15, x *= 2246822519u, x ^= x >> 13, x *= 3266489917u, x ^= x >> 16;
    return x;
}
__global__ void k_fill_random_bf16(bf16 *p, int64_t n, uint32_t seed, float scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = __float2bfloat16_rn(((float)(hash_u32(i, seed) >> 8) / 8388608.0f - 1.0f) * scale);
}
__global__ void k_fill_random_u8(uint8_t *p, int64_t n, uint32_t seed) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        p[i] = (uint8_t)hash_u32(i, seed);
}

mvl_status mvl_cuda_fill_random_bf16(cudaStream_t s, bf16 *p, int64_t n, uint32_t seed, float scale, mvl_error *err) {
    k_fill_random_bf16<<<mvl_grid_for(n, 256), 256, 0, s>>>(p, n, seed, scale);
    LAUNCH_CHECK();
    return MVL_OK;
}
mvl_status mvl_cuda_fill_random_u8(cudaStream_t s, uint8_t *p, int64_t n, uint32_t seed, mvl_error *err) {
    k_fill_random_u8<<<mvl_grid_for(n, 256), 256, 0, s>>>(p, n, seed);
    LAUNCH_CHECK();
    return MVL_OK;
}

// The GELU pass: 8 values per thread through 16-byte accesses where the
// count and the address allow, else one at a time.
__global__ void k_gelu8(bf16 *x, int64_t n8) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
        uint4 v = reinterpret_cast<uint4 *>(x)[i];
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&v);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 f = __bfloat1622float2(h[k]);
            h[k] = __floats2bfloat162_rn(mvl_gelu_erf(f.x), mvl_gelu_erf(f.y));
        }
        reinterpret_cast<uint4 *>(x)[i] = v;
    }
}
__global__ void k_gelu1(bf16 *x, int64_t n) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        x[i] = __float2bfloat16_rn(mvl_gelu_erf(__bfloat162float(x[i])));
}

mvl_status mvl_cuda_sm_count(int *sms, mvl_error *err) {
    int dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev));
    return MVL_OK;
}

mvl_status mvl_cuda_gelu(cudaStream_t s, bf16 *x, int64_t n, mvl_error *err) {
    if (n % 8 == 0 && (uintptr_t)x % 16 == 0) k_gelu8<<<mvl_grid_for(n / 8, 256), 256, 0, s>>>(x, n / 8);
    else k_gelu1<<<mvl_grid_for(n, 256), 256, 0, s>>>(x, n);
    LAUNCH_CHECK();
    return MVL_OK;
}

mvl_status mvl_cuda_tensor_map_bf16(CUtensorMap *map, const void *base, int rank, const uint64_t *dims,
                                    const uint64_t *strides, const uint32_t *box, mvl_error *err) {
    // The driver call comes through the runtime's entry-point lookup, so the
    // library needs no link against libcuda.
    static PFN_cuTensorMapEncodeTiled_v12000 encode = nullptr;
    if (!encode) {
        cudaDriverEntryPointQueryResult q;
        void *fn = nullptr;
        CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q));
        if (q != cudaDriverEntryPointSuccess || !fn)
            return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: the CUDA driver has no cuTensorMapEncodeTiled", __FILE__,
                            __LINE__);
        encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
    }
    cuuint64_t d[3], st[2];
    cuuint32_t b[3], one[3] = {1, 1, 1};
    for (int i = 0; i < rank; i++) d[i] = dims[i], b[i] = box[i];
    for (int i = 0; i + 1 < rank; i++) st[i] = strides[i];
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, (cuuint32_t)rank, (void *)base, d, st, b, one,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS)
        return mvl_fail(err, MVL_ERR_DEVICE, "%s:%d: cuTensorMapEncodeTiled failed (CUresult %d, rank %d)", __FILE__,
                        __LINE__, (int)r, rank);
    return MVL_OK;
}

mvl_status mvl_cuda_has_wgmma(int device, int *yes, mvl_error *err) {
    int major = 0, minor = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device));
    *yes = major == 9 && minor == 0;
    return MVL_OK;
}
