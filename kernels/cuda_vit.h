/* The vision path on the GPU (kernels/cuda_vit.cu): CLIP ViT (vision.md §1),
 * projector (§2) and packing with image_newline (§4.1), bf16 weights uploaded
 * once, bf16 activations and residual stream rounded where transformers'
 * bf16 CLIPEncoderLayer rounds, GEMMs through cuBLASLt with fused bias (and
 * residual) epilogues, a fused flash-attention kernel, and the uint8 ->
 * normalised bf16 step done on the GPU so the host sends bytes. All device memory comes from one arena sized at init for
 * max_tiles; the forward pass allocates nothing.
 *
 * kernels/ops.h works on host float32 arrays, so this backend sits beside it
 * as a whole-stage entry point rather than behind the per-op names. In a build
 * without CUDA every function reports "built without CUDA" (gpu_none.c). */
#ifndef MVL_CUDA_VIT_H
#define MVL_CUDA_VIT_H

#include <stdint.h>

#include "model/model_dir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mvl_cuda_vit mvl_cuda_vit;

/* One image of a batch: its decoded size and tile grid (vision.md §3); its
 * 1 + cols*rows tiles are consecutive in the batch (thumbnail first). */
typedef struct mvl_cuda_image {
    int width, height; /* original size, for the unpad (§4.1 step 5) */
    int cols, rows;    /* tiles across and down */
} mvl_cuda_image;

/* Uploads the vision tower, projector and image_newline of md to device 0
 * and sizes the arena for batches of up to max_tiles tiles. mean/std: the
 * preprocessing constants (§3.5). MVL_ERR_DEVICE when there is no GPU or it
 * lacks the memory (the message says how much was asked for). */
mvl_status mvl_cuda_vit_init(const mvl_model_dir *md, int max_tiles, const float mean[3],
                             const float std[3], mvl_cuda_vit **out, mvl_error *err);
void mvl_cuda_vit_free(mvl_cuda_vit *v);

/* Enqueues the ViT over n uint8 tiles [n, S, S, 3] (host memory) on the
 * backend's stream; returns before the GPU is done. */
mvl_status mvl_cuda_vit_forward_u8(mvl_cuda_vit *v, const uint8_t *tiles, int n, mvl_error *err);
/* Same with the tiles already in the device staging buffer (benchmarks). */
mvl_status mvl_cuda_vit_forward_staged(mvl_cuda_vit *v, int n, mvl_error *err);
/* Copies the last forward's final hidden state [n, 1 + grid^2, V] as float32
 * into out (host), waiting for the GPU. */
mvl_status mvl_cuda_vit_hidden(mvl_cuda_vit *v, float *out, mvl_error *err);

/* The device staging buffer the ViT reads its uint8 tiles from
 * [max_tiles, S, S, 3], and the backend's stream (a cudaStream_t) in *stream:
 * for producers that build the tiles on the GPU. Work they enqueue on that
 * stream is ordered before the next forward or encode. */
uint8_t *mvl_cuda_vit_staging(mvl_cuda_vit *v, void **stream);

/* ViT + projector + packing for n_images images whose tiles are
 * concatenated in `tiles` (host uint8; NULL: already in the device staging
 * buffer, see mvl_cuda_vit_staging). The packed embeddings [*n_tokens, D]
 * bf16 stay on the device (mvl_cuda_vit_packed); images follow each other in
 * order (§4.1 step 8). Waits for the GPU before returning. */
mvl_status mvl_cuda_vit_encode(mvl_cuda_vit *v, const uint8_t *tiles, int n_images,
                               const mvl_cuda_image *images, int64_t *n_tokens, mvl_error *err);
/* Device pointer to the packed bf16 embeddings of the last encode, and their
 * width D (the text hidden size). */
const void *mvl_cuda_vit_packed(const mvl_cuda_vit *v, int *dim);
/* Copies the first n_tokens packed rows to out [n_tokens, D] as float32. */
mvl_status mvl_cuda_vit_packed_download(mvl_cuda_vit *v, int64_t n_tokens, float *out, mvl_error *err);

mvl_status mvl_cuda_vit_sync(mvl_cuda_vit *v, mvl_error *err);
/* Times the enqueued work of fn-less forwards: runs `iters` forwards of n
 * staged tiles between device events and returns the median milliseconds. */
mvl_status mvl_cuda_vit_time(mvl_cuda_vit *v, int n, int iters, double *median_ms, mvl_error *err);

/* One stage of a forward as mvl_cuda_vit_profile measures it. */
typedef struct mvl_cuda_vit_stage {
    const char *name; /* "qkv_gemm", "attention", "add_ln", ... */
    double ms;        /* device time per forward (median over the iterations) */
    int calls;        /* launches per forward */
    double flops;     /* per forward, a multiply-add counted as 2 (0: not arithmetic-bound) */
    double bytes;     /* fewest bytes moved per forward (elementwise stages; 0 for the others) */
} mvl_cuda_vit_stage;
/* Runs `iters` forwards of n staged random tiles with a device event after
 * every launch and fills stages[0..*count) (at most cap) with the time per
 * stage; also the whole forward's median in *total_ms (events included). */
mvl_status mvl_cuda_vit_profile(mvl_cuda_vit *v, int n, int iters, mvl_cuda_vit_stage *stages, int cap, int *count,
                                double *total_ms, mvl_error *err);

/* The GEMM ceiling: median TFLOP/s of a bf16 m x n x k cuBLASLt GEMM (fp32
 * accumulate) on random data. */
mvl_status mvl_cuda_gemm_ceiling(int m, int n, int k, int iters, double *tflops, mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
