// The ViT's bidirectional multi-head attention on the GPU (head size 64):
// out[t*ntok + i, h*64 + d] = softmax(q k^T * scale) v for every tile t, head
// h and query i, with qkv [tiles*ntok, 3*heads*64] bf16 laid out (q | k | v),
// each part head-major, and out [tiles*ntok, heads*64] bf16. fp32 scores,
// softmax and accumulators; the probabilities are rounded to bf16 before the
// P.V product, as FlashAttention does. C++ (CUDA) only.
#ifndef MVL_CUDA_VIT_ATTN_H
#define MVL_CUDA_VIT_ATTN_H

#include "kernels/cuda_common.cuh"

// Hopper kernels (kernels/cuda_vit_attn_sm90.cu: TMA loads, wgmma, a
// producer warpgroup and 2 or 3 consumer warpgroups of 64 queries each).
// Launch only where mvl_cuda_has_wgmma says yes; they trap elsewhere.
// mvl_cuda_vit_attn_sm90 runs MVL_VIT_ATTN_SM90_DEFAULT, the fastest measured
// at 64 tiles (test_gpu_vit_attn times them all), or variant 0 where that
// needs no more rounds of work per SM (1 and 3 tiles of 577 tokens).
// Variants: 0 streaming K/V, 2 consumer warpgroups; 1 the same with 3;
// 2 K/V of a (tile, head) resident in shared memory, 2 consumer warpgroups
// (streaming past 640 tokens); 3 the same with 3.
enum { MVL_VIT_ATTN_SM90_VARIANTS = 4, MVL_VIT_ATTN_SM90_DEFAULT = 3 };
mvl_status mvl_cuda_vit_attn_sm90(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads,
                                  float scale, mvl_error *err);
mvl_status mvl_cuda_vit_attn_sm90_variant(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok,
                                          int heads, float scale, int variant, mvl_error *err);

// The portable FlashAttention-2 kernel (mma.sync; kernels/cuda_vit.cu), the
// fallback off Hopper; same contract.
mvl_status mvl_cuda_vit_attn_fa2(cudaStream_t s, const bf16 *qkv, bf16 *out, int64_t tiles, int ntok, int heads,
                                 float scale, mvl_error *err);

#endif
