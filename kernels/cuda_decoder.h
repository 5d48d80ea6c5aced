/* The text decoder on the GPU (kernels/cuda_decoder.cu): MiniMax-Text-01's
 * layers (decoder.md §3-7) with bf16 weights and activations, fp32 lightning
 * states and bf16 KV caches held in per-sequence slots, so one forward step
 * runs the new tokens of several sequences at once (varlen, no padding).
 * Weights, activations and slot state come from one device arena sized at
 * init; a step allocates nothing on the device. Decode steps (one token per
 * sequence) replay a CUDA graph captured per batch size. Sampling (greedy,
 * temperature / top-k / top-p / min-p) runs on the GPU too.
 *
 * Rounding follows the reference run in bf16 (text/decoder.c with bf16
 * compute): RMSNorm y = bf16(w * bf16(x * r)) with fp32 statistics, the
 * post-norm residual h = bf16(bf16(alpha * u) + bf16(beta * a)), every GEMM
 * output rounded once; logits are fp32 (the lm_head accumulates in fp32 and
 * is not rounded). In a build without CUDA every function reports "built
 * without CUDA" (gpu_none.c). Not thread-safe: one caller at a time. */
#ifndef MVL_CUDA_DECODER_H
#define MVL_CUDA_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "model/model_dir.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mvl_cuda_dec mvl_cuda_dec;

typedef struct mvl_cuda_dec_opts {
    int max_slots;  /* concurrent sequences (slots 0 .. max_slots-1) */
    int max_ctx;    /* positions each slot's KV cache holds */
    int max_tokens; /* rows (new tokens of all sequences) per forward step */
} mvl_cuda_dec_opts;

/* Uploads the text decoder of md (embed_tokens, layers, norm, lm_head;
 * F32/BF16/F16 stored, rounded to bf16 to nearest even) to device 0 and
 * sizes the arena for opts. MVL_ERR_DEVICE naming the sizes when there is no
 * GPU or it lacks the memory; MVL_ERR_UNSUPPORTED for shapes the kernels do
 * not take. */
mvl_status mvl_cuda_dec_init(const mvl_model_dir *md, const mvl_cuda_dec_opts *opts, mvl_cuda_dec **out,
                             mvl_error *err);
/* Same structure for cfg with random bf16 weights made on the device
 * (uniform, variance 1/fan_in; norm weights 1): benchmarks at full width. */
mvl_status mvl_cuda_dec_init_random(const mvl_text_config *cfg, const mvl_cuda_dec_opts *opts, uint32_t seed,
                                    mvl_cuda_dec **out, mvl_error *err);
void mvl_cuda_dec_free(mvl_cuda_dec *d);

const mvl_text_config *mvl_cuda_dec_config(const mvl_cuda_dec *d);
/* Device bytes of the arena's three parts. */
void mvl_cuda_dec_memory(const mvl_cuda_dec *d, size_t *weights, size_t *activations, size_t *state);

/* Empties a slot: lightning states zeroed, length 0. Slots start empty. */
mvl_status mvl_cuda_dec_reset(mvl_cuda_dec *d, int slot, mvl_error *err);
/* Positions the slot has consumed. */
int64_t mvl_cuda_dec_length(const mvl_cuda_dec *d, int slot);

/* One forward step over n_seq sequences: sequence b runs n_new[b] >= 1 new
 * positions on top of slot slot[b] (distinct slots). Its rows are
 * consecutive, sequences in order, T = sum n_new <= max_tokens rows. Row i
 * takes the embedding of ids[i] when ids is non-NULL and ids[i] >= 0, else
 * an image row: from image_rows (device), the rows without an id taking them
 * in order, or from the host embeds (row i of embeds). At most one of the
 * two is given. */
typedef struct mvl_cuda_dec_step {
    int n_seq;
    const int *slot;      /* [n_seq] */
    const int *n_new;     /* [n_seq] */
    const int32_t *ids;   /* [T] token ids (< 0: take embeds), or NULL */
    const float *embeds;  /* [T, hidden] float32 input embeddings (host; tests feeding a reference's
                             residual stream), or NULL */
    const void *image_rows; /* NULL or [n_image_rows, hidden] bf16 on the device (e.g. mvl_cuda_vit_packed):
                               the k-th row without an id takes row k (masked_scatter, vision.md §4.4), copied
                               on the device; read by the time the step's logits are on the host, or after
                               mvl_cuda_dec_sync */
    int64_t n_image_rows;   /* rows image_rows holds: at least the rows without an id */
    float *last_logits;   /* NULL or [n_seq, vocab]: each sequence's last position (host) */
    float *logits;        /* NULL or [T, vocab]: every position (host; parity tests) */
    float *hidden;        /* NULL or [n_run + 1, T, hidden]: the input, then each run layer's output
                             (host; stage comparison as mvl_decoder_forward's) */
    /* Stage tests: run layers [first_layer, last_layer) only (last_layer 0 = num_layers), the rows
     * entering first_layer as given (a reference's residual stream through embeds); first_layer =
     * num_layers runs only the final norm and lm_head. Logits only when the range reaches the end. */
    int first_layer, last_layer;
} mvl_cuda_dec_step;

/* Runs a step and advances the slots. Bad arguments (slot out of range or
 * repeated, n_new < 1, too many rows, a context past max_ctx, an id outside
 * the vocabulary): MVL_ERR_ARG / MVL_ERR_LIMIT with nothing run. The last
 * logits stay on the device for mvl_cuda_dec_sample either way. */
mvl_status mvl_cuda_dec_forward(mvl_cuda_dec *d, const mvl_cuda_dec_step *step, mvl_error *err);

/* A decode step: one token ids[b] for each of n slots, replaying the CUDA
 * graph captured for batch size n (captured on the first step of that size;
 * batches past the MoE's decode path, mvl_cuda_moe_small_max, run without a
 * graph). last_logits: NULL or [n, vocab] (host). */
mvl_status mvl_cuda_dec_decode(mvl_cuda_dec *d, int n, const int *slot, const int32_t *ids, float *last_logits,
                               mvl_error *err);

/* Draws one id for each of the first n sequences of the last step from its
 * last logits, on the GPU, with the CPU sampler's semantics
 * (mvl_sampler_sample, text/generate_sample.c): temperature <= 0 is greedy
 * (lowest id on ties); else logits / temperature, then top_k, top_p, min_p
 * in that order over the ids sorted by logit (ties: lower id first). The
 * uniform draw of sequence b is a hash of (opts[b].seed, counter[b]) alone,
 * so an id does not depend on the batch. opts, counter, ids: [n]. */
mvl_status mvl_cuda_dec_sample(mvl_cuda_dec *d, int n, const mvl_sample_opts *opts, const uint64_t *counter,
                               int32_t *ids, mvl_error *err);

/* How many tokens of the last step chose each expert (the MoE's count): counts
 * [num_layers, num_experts] (host). */
mvl_status mvl_cuda_dec_expert_counts(mvl_cuda_dec *d, int *counts, mvl_error *err);

/* Stage times of later non-graph steps (mvl_cuda_dec_forward): when on,
 * each step records device events around its stages; mvl_cuda_dec_stage_ms
 * fills ms[num_layers + 2] with the last step's milliseconds: the embedding
 * and first norm, each layer, then the final norm and lm_head. */
void mvl_cuda_dec_set_profiling(mvl_cuda_dec *d, int on);
mvl_status mvl_cuda_dec_stage_ms(mvl_cuda_dec *d, double *ms, mvl_error *err);

mvl_status mvl_cuda_dec_sync(mvl_cuda_dec *d, mvl_error *err);

/* The HBM copy bandwidth: median GB/s (read + write bytes) of a
 * device-to-device cudaMemcpy of `bytes` bytes (benchmarks). */
mvl_status mvl_cuda_copy_bandwidth(size_t bytes, int iters, double *gbps, mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
