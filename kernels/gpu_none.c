/* GPU entry points of a build without CUDA (kernels/). */
#include "kernels/gpu.h"

mvl_status mvl_gpu_probe(int *count, char *name, size_t name_len, mvl_error *err) {
    *count = 0;
    if (name_len) name[0] = '\0';
    return mvl_fail(err, MVL_ERR_DEVICE, "minimax-vl was built without CUDA (configure with -DMVL_CUDA=ON)");
}

mvl_status mvl_gpu_selftest(float *max_err, mvl_error *err) {
    *max_err = 0;
    return mvl_fail(err, MVL_ERR_DEVICE, "minimax-vl was built without CUDA (configure with -DMVL_CUDA=ON)");
}

/* The CUDA vision path (kernels/cuda_vit.h) in a build without CUDA. */
#include "kernels/cuda_vit.h"

#define MVL_NO_CUDA(err) \
    mvl_fail(err, MVL_ERR_DEVICE, "minimax-vl was built without CUDA (configure with -DMVL_CUDA=ON)")

mvl_status mvl_cuda_vit_init(const mvl_model_dir *md, int max_tiles, const float mean[3], const float std[3],
                             mvl_cuda_vit **out, mvl_error *err) {
    (void)md, (void)max_tiles, (void)mean, (void)std;
    *out = NULL;
    return MVL_NO_CUDA(err);
}
void mvl_cuda_vit_free(mvl_cuda_vit *v) { (void)v; }
mvl_status mvl_cuda_vit_forward_u8(mvl_cuda_vit *v, const uint8_t *tiles, int n, mvl_error *err) {
    (void)v, (void)tiles, (void)n;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_forward_staged(mvl_cuda_vit *v, int n, mvl_error *err) {
    (void)v, (void)n;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_hidden(mvl_cuda_vit *v, float *out, mvl_error *err) {
    (void)v, (void)out;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_encode(mvl_cuda_vit *v, const uint8_t *tiles, int n_images, const mvl_cuda_image *images,
                               int64_t *n_tokens, mvl_error *err) {
    (void)v, (void)tiles, (void)n_images, (void)images;
    *n_tokens = 0;
    return MVL_NO_CUDA(err);
}
uint8_t *mvl_cuda_vit_staging(mvl_cuda_vit *v, void **stream) {
    (void)v;
    *stream = NULL;
    return NULL;
}
const void *mvl_cuda_vit_packed(const mvl_cuda_vit *v, int *dim) {
    (void)v;
    *dim = 0;
    return NULL;
}
mvl_status mvl_cuda_vit_packed_download(mvl_cuda_vit *v, int64_t n_tokens, float *out, mvl_error *err) {
    (void)v, (void)n_tokens, (void)out;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_sync(mvl_cuda_vit *v, mvl_error *err) {
    (void)v;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_time(mvl_cuda_vit *v, int n, int iters, double *median_ms, mvl_error *err) {
    (void)v, (void)n, (void)iters;
    *median_ms = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_vit_profile(mvl_cuda_vit *v, int n, int iters, mvl_cuda_vit_stage *stages, int cap, int *count,
                                double *total_ms, mvl_error *err) {
    (void)v, (void)n, (void)iters, (void)stages, (void)cap;
    *count = 0;
    *total_ms = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_gemm_ceiling(int m, int n, int k, int iters, double *tflops, mvl_error *err) {
    (void)m, (void)n, (void)k, (void)iters;
    *tflops = 0;
    return MVL_NO_CUDA(err);
}

/* The CUDA decoder (kernels/cuda_decoder.h) in a build without CUDA. */
#include "kernels/cuda_decoder.h"

mvl_status mvl_cuda_dec_init(const mvl_model_dir *md, const mvl_cuda_dec_opts *opts, mvl_cuda_dec **out,
                             mvl_error *err) {
    (void)md, (void)opts;
    *out = NULL;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_dec_init_random(const mvl_text_config *cfg, const mvl_cuda_dec_opts *opts, uint32_t seed,
                                    mvl_cuda_dec **out, mvl_error *err) {
    (void)cfg, (void)opts, (void)seed;
    *out = NULL;
    return MVL_NO_CUDA(err);
}
void mvl_cuda_dec_free(mvl_cuda_dec *d) { (void)d; }
const mvl_text_config *mvl_cuda_dec_config(const mvl_cuda_dec *d) {
    (void)d;
    return NULL;
}
void mvl_cuda_dec_memory(const mvl_cuda_dec *d, size_t *weights, size_t *activations, size_t *state) {
    (void)d;
    *weights = *activations = *state = 0;
}
mvl_status mvl_cuda_dec_reset(mvl_cuda_dec *d, int slot, mvl_error *err) {
    (void)d, (void)slot;
    return MVL_NO_CUDA(err);
}
int64_t mvl_cuda_dec_length(const mvl_cuda_dec *d, int slot) {
    (void)d, (void)slot;
    return -1;
}
mvl_status mvl_cuda_dec_forward(mvl_cuda_dec *d, const mvl_cuda_dec_step *step, mvl_error *err) {
    (void)d, (void)step;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_dec_decode(mvl_cuda_dec *d, int n, const int *slot, const int32_t *ids, float *last_logits,
                               mvl_error *err) {
    (void)d, (void)n, (void)slot, (void)ids, (void)last_logits;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_dec_sample(mvl_cuda_dec *d, int n, const mvl_sample_opts *opts, const uint64_t *counter,
                               int32_t *ids, mvl_error *err) {
    (void)d, (void)n, (void)opts, (void)counter, (void)ids;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_dec_expert_counts(mvl_cuda_dec *d, int *counts, mvl_error *err) {
    (void)d, (void)counts;
    return MVL_NO_CUDA(err);
}
void mvl_cuda_dec_set_profiling(mvl_cuda_dec *d, int on) { (void)d, (void)on; }
mvl_status mvl_cuda_dec_stage_ms(mvl_cuda_dec *d, double *ms, mvl_error *err) {
    (void)d, (void)ms;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_dec_sync(mvl_cuda_dec *d, mvl_error *err) {
    (void)d;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_copy_bandwidth(size_t bytes, int iters, double *gbps, mvl_error *err) {
    (void)bytes, (void)iters;
    *gbps = 0;
    return MVL_NO_CUDA(err);
}

/* GPU preprocessing (kernels/cuda_preprocess.h) in a build without CUDA. */
#include "kernels/cuda_preprocess.h"

mvl_status mvl_cuda_prep_init(uint8_t *tiles, int capacity, int tile_side, void *stream, mvl_cuda_prep **out,
                              mvl_error *err) {
    (void)tiles, (void)capacity, (void)tile_side, (void)stream;
    *out = NULL;
    return MVL_NO_CUDA(err);
}
void mvl_cuda_prep_free(mvl_cuda_prep *p) { (void)p; }
mvl_status mvl_cuda_preprocess(mvl_cuda_prep *p, const mvl_image *img, const mvl_preproc_config *cfg, int first,
                               mvl_cuda_image *im, int *n_tiles, mvl_error *err) {
    (void)p, (void)img, (void)cfg, (void)first, (void)im;
    *n_tiles = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_begin(mvl_cuda_prep *p, int width, int height, uint8_t **rows, mvl_error *err) {
    (void)p, (void)width, (void)height;
    *rows = NULL;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_rows(mvl_cuda_prep *p, int y0, int y1, mvl_error *err) {
    (void)p, (void)y0, (void)y1;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_end(mvl_cuda_prep *p, const mvl_preproc_config *cfg, int first, mvl_cuda_image *im,
                             int *n_tiles, mvl_error *err) {
    (void)p, (void)cfg, (void)first, (void)im;
    *n_tiles = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_download(mvl_cuda_prep *p, int first, int n, uint8_t *out, mvl_error *err) {
    (void)p, (void)first, (void)n, (void)out;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_file(mvl_cuda_prep *p, const void *buf, size_t len, const char *name,
                              const mvl_preproc_config *cfg, int first, mvl_cuda_image *im, int *n_tiles,
                              int *on_gpu, mvl_error *err) {
    (void)p, (void)buf, (void)len, (void)name, (void)cfg, (void)first, (void)im;
    *n_tiles = *on_gpu = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_wait(mvl_cuda_prep *p, int *restaged, mvl_error *err) {
    (void)p;
    *restaged = 0;
    return MVL_NO_CUDA(err);
}
mvl_status mvl_cuda_prep_source(mvl_cuda_prep *p, int width, int height, uint8_t *out, mvl_error *err) {
    (void)p, (void)width, (void)height, (void)out;
    return MVL_NO_CUDA(err);
}
