/* minimax-vl public C API.
 *
 * Conventions: every public symbol starts with mvl_. Objects are opaque
 * handles made by mvl_<thing>_init/open and released by the matching
 * mvl_<thing>_free/close, which accept NULL. Functions that can fail on
 * outside data return an mvl_status and, when the caller passes a non-NULL
 * mvl_error, a message naming the file and the problem. Nothing in the
 * library exits or aborts on bad input. Strings returned as const char *
 * belong to the object they came from and live as long as it does. */
#ifndef MVL_H
#define MVL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ---------------------------------------------------- */

typedef enum mvl_status {
    MVL_OK = 0,
    MVL_ERR_ARG,         /* caller passed something invalid */
    MVL_ERR_IO,          /* a file could not be opened, read or written */
    MVL_ERR_FORMAT,      /* a file is malformed */
    MVL_ERR_UNSUPPORTED, /* well-formed but a feature we do not support */
    MVL_ERR_LIMIT,       /* a configured limit would be exceeded */
    MVL_ERR_NOMEM,       /* allocation failed */
    MVL_ERR_DEVICE,      /* GPU missing, out of memory, or a driver error */
} mvl_status;

typedef struct mvl_error {
    mvl_status status;
    char msg[1024];
} mvl_error;

const char *mvl_status_name(mvl_status st);

/* ---- tensors in a model directory (model/) --------------------------------- */

typedef enum mvl_dtype {
    MVL_DTYPE_F32 = 0,
    MVL_DTYPE_F16,
    MVL_DTYPE_BF16,
    MVL_DTYPE_I8,
    MVL_DTYPE_F8_E4M3,
    MVL_DTYPE_COUNT
} mvl_dtype;

#define MVL_MAX_DIMS 8

const char *mvl_dtype_name(mvl_dtype dt); /* safetensors spelling: "BF16", ... */
size_t mvl_dtype_size(mvl_dtype dt);      /* bytes per element */

/* A view of one stored tensor. data points into the read-only mapping of
 * its shard; the pages are only read when data is touched. */
typedef struct mvl_tensor_view {
    const char *name;
    mvl_dtype dtype;
    int ndim;
    int64_t shape[MVL_MAX_DIMS];
    const void *data;   /* [shape...] dtype, row-major, read-only */
    uint64_t nbytes;
    const char *file;   /* shard path */
} mvl_tensor_view;

/* ---- model directory (model/) ---------------------------------------------- */

typedef struct mvl_model_dir mvl_model_dir;

/* Opens a Hugging Face MiniMax-VL-01 directory in place: config.json,
 * preprocessor_config.json (checked against the ViT's tile and patch size)
 * and the safetensors (one file, or shards listed by
 * model.safetensors.index.json). Only headers are parsed. */
mvl_status mvl_model_dir_open(const char *dir, mvl_model_dir **out, mvl_error *err);
void mvl_model_dir_close(mvl_model_dir *md);

/* Looks up a tensor and checks its dtype and shape. ndim < 0 skips the shape
 * check; dtype MVL_DTYPE_COUNT accepts any dtype. */
mvl_status mvl_model_dir_tensor(const mvl_model_dir *md, const char *name, mvl_dtype dtype,
                                int ndim, const int64_t *shape, mvl_tensor_view *out,
                                mvl_error *err);

/* Writes the human-readable summary that `minimax-vl info` prints. */
mvl_status mvl_model_dir_describe(const mvl_model_dir *md, char **out_text, mvl_error *err);

/* ---- images and preprocessing (vision/) ------------------------------------- */

/* Pixel layouts of a decoded image. By default every image is decoded to
 * MVL_PIXEL_RGB. With strict_reference the image keeps the mode Pillow would
 * give it, because the reference resizes before converting to RGB
 * (vision.md §3.6). */
typedef enum mvl_pixel_mode {
    MVL_PIXEL_RGB = 0, /* 3 x uint8 */
    MVL_PIXEL_L,       /* 1 x uint8 gray */
    MVL_PIXEL_LA,      /* 2 x uint8 gray + alpha (straight) */
    MVL_PIXEL_RGBA,    /* 4 x uint8, straight alpha */
    MVL_PIXEL_CMYK,    /* 4 x uint8 ink amounts (Pillow "CMYK", Adobe polarity undone) */
    MVL_PIXEL_I16,     /* 1 x uint16 native-endian gray (Pillow "I;16") */
} mvl_pixel_mode;

typedef struct mvl_image {
    int width, height;
    mvl_pixel_mode mode;
    int channels;        /* samples per pixel for mode: 1..4 */
    int nearest;         /* 1: resize with NEAREST (Pillow modes "P" and "1", §3.6) */
    void *data;          /* [height, width, channels] uint8 (uint16 for I16), row-major, owned */
} mvl_image;

#define MVL_IMAGE_DEFAULT_MAX_PIXELS 100000000ull

typedef struct mvl_image_opts {
    uint64_t max_pixels;  /* refuse images with more pixels (checked from the header); 0 = default */
    int strict_reference; /* 1: reproduce the reference exactly: no EXIF orientation, keep the
                             Pillow mode (alpha dropped later, not composited). 0: apply EXIF
                             orientation and composite alpha onto white, giving RGB. */
    int no_exif;          /* 1 (default mode only): ignore EXIF orientation, still composite alpha
                             onto white and give RGB */
} mvl_image_opts;

/* Decodes a JPEG or PNG (chosen by magic bytes). opts may be NULL (defaults).
 * On error nothing is returned and err names the file and the reason. The
 * image is released with mvl_image_free. */
mvl_status mvl_image_load(const char *path, const mvl_image_opts *opts, mvl_image **out,
                          mvl_error *err);
/* Same from memory; name is only used in messages. */
mvl_status mvl_image_decode(const void *buf, size_t len, const char *name,
                            const mvl_image_opts *opts, mvl_image **out, mvl_error *err);
void mvl_image_free(mvl_image *img);

#define MVL_PREPROC_MAX_PINPOINTS 64

/* preprocessor_config.json values that matter to anyres (vision.md §3). */
typedef struct mvl_preproc_config {
    int size;                                    /* tile side in pixels (336) */
    int patch_size;                              /* ViT patch side (14) */
    int n_pinpoints;
    int pinpoints[MVL_PREPROC_MAX_PINPOINTS][2]; /* candidate canvases as (width, height) */
    float mean[3], std[3];                       /* per RGB channel, on the 0..1 scale */
} mvl_preproc_config;

/* The released MiniMax-VL-01 values: 336, 14, the 28 pinpoints, CLIP mean/std. */
void mvl_preproc_config_default(mvl_preproc_config *cfg);
/* Reads preprocessor_config.json: starts from the defaults and overrides
 * them with the keys present; a key of the wrong type or value is an error
 * naming the file and the key. */
mvl_status mvl_preproc_config_load(const char *path, mvl_preproc_config *cfg, mvl_error *err);
/* The preprocessing of an open model directory: its preprocessor_config.json,
 * or the released defaults when the directory has none. */
const mvl_preproc_config *mvl_model_dir_preproc(const mvl_model_dir *md);

/* Best canvas for a W x H image (§3.2), as (width, height) in pixels. */
void mvl_select_canvas(const mvl_preproc_config *cfg, int64_t width, int64_t height, int *canvas_w,
                       int *canvas_h);
/* Tiles of the largest canvas (thumbnail not counted): the most any image gets. */
int mvl_preproc_max_tiles(const mvl_preproc_config *cfg);
/* Visual tokens the LLM sees for a W x H image (§4.2). */
int64_t mvl_image_token_count(const mvl_preproc_config *cfg, int64_t width, int64_t height);
/* Caps the canvas of a W x H image, trading detail for speed: keeps only the
 * pinpoints with at most max_tiles tiles (thumbnail not counted) and giving
 * at most max_tokens visual tokens for this image (0 = no limit), so that
 * mvl_select_canvas then picks the best of those; when none fits, the single
 * 1x1-tile canvas is left. Works in place, on a copy of the model's config. */
void mvl_preproc_config_cap(mvl_preproc_config *cfg, int64_t width, int64_t height, int64_t max_tiles,
                            int64_t max_tokens);

typedef struct mvl_preproc_result {
    int width, height;      /* the image as decoded */
    int canvas_w, canvas_h; /* chosen canvas in pixels */
    int cols, rows;         /* tiles across and down */
    int n_patches;          /* 1 + rows*cols: the thumbnail then row-major tiles */
    int64_t image_tokens;
    uint8_t *tiles;         /* [n_patches, size, size, 3] uint8 RGB, owned */
} mvl_preproc_result;

/* Anyres preprocessing (§3.3-3.5) into uint8 patches. Free with
 * mvl_preproc_result_free (also after an error, which leaves it empty). */
mvl_status mvl_preprocess(const mvl_image *img, const mvl_preproc_config *cfg,
                          mvl_preproc_result *out, mvl_error *err);
void mvl_preproc_result_free(mvl_preproc_result *r);

/* uint8 patches [n, size, size, 3] -> float32 [n, 3, size, size] as the
 * reference computes it: (u8/255 - mean)/std in float32 (§3.5). */
void mvl_preproc_normalize(const mvl_preproc_config *cfg, const uint8_t *tiles, int n_patches,
                           float *out);
/* Rounds float32 values to bfloat16, nearest-even (NaN kept quiet), in place
 * as float32 (bf16 bits in the high half), as `.to(torch.bfloat16)` does. */
void mvl_round_bf16(float *x, size_t n);
uint16_t mvl_f32_to_bf16(float x);

/* ---- tokenizer and chat format (text/) --------------------------------------- */

/* A byte-level BPE tokenizer read from a Hugging Face model directory
 * (tokenizer.json + tokenizer_config.json, plus generation_config.json when
 * present). Ids match HF `tokenizers` encode(text, add_special_tokens=False):
 * the post-processor is not applied (the chat template writes every special
 * token itself, vision.md §5.1). A loaded tokenizer is read-only and may be
 * shared by threads; a small piece cache is used by one encode at a time. */
typedef struct mvl_tokenizer mvl_tokenizer;

mvl_status mvl_tokenizer_load(const char *dir, mvl_tokenizer **out, mvl_error *err);
void mvl_tokenizer_free(mvl_tokenizer *tok);

/* Number of id slots: the largest id + 1 (ids in gaps have no token). */
size_t mvl_tokenizer_n_ids(const mvl_tokenizer *tok);

/* Id of the token whose text is `text` (added tokens first, then the
 * vocabulary, compared as decoded bytes), or -1. */
int32_t mvl_tokenizer_token_id(const mvl_tokenizer *tok, const char *text);

/* Decoded bytes of one id (added tokens verbatim); NULL for an unknown id.
 * Owned by tok. *len gets the byte count (may be a partial UTF-8 character). */
const char *mvl_tokenizer_token_bytes(const mvl_tokenizer *tok, int32_t id, size_t *len);

/* Stop ids: the id of tokenizer_config.json's eos_token plus any
 * generation_config.json eos_token_id(s). Owned by tok. */
const int32_t *mvl_tokenizer_stop_ids(const mvl_tokenizer *tok, size_t *n);

/* Encodes text[0..len) (any bytes). Added tokens are split out first, then the
 * normalizer, the pre-tokenizer regex and BPE run on the rest. Invalid UTF-8
 * is kept, not replaced: the regex never matches across an invalid byte, so
 * such bytes end up in pieces of their own that BPE encodes byte by byte
 * (decode gives the same bytes back). A tokenizer with an NFC normalizer
 * rejects invalid UTF-8 with MVL_ERR_ARG. *ids is malloc'd; free() it. */
mvl_status mvl_tokenizer_encode(const mvl_tokenizer *tok, const char *text, size_t len,
                                int32_t **ids, size_t *n_ids, mvl_error *err);

/* Decodes ids to UTF-8 as HF decode() does: byte sequences that are not
 * valid UTF-8 become U+FFFD (one per maximal invalid subpart). skip_special
 * drops special added tokens. *out is malloc'd and NUL-terminated; free() it.
 * An id with no token is an MVL_ERR_ARG error. */
mvl_status mvl_tokenizer_decode(const mvl_tokenizer *tok, const int32_t *ids, size_t n,
                                int skip_special, char **out, size_t *out_len, mvl_error *err);

/* Streaming decoder for token-by-token output: never returns half a UTF-8
 * character; bytes that can no longer complete come out as U+FFFD. The
 * concatenation of all pushes and the final flush equals
 * mvl_tokenizer_decode of the same ids. */
typedef struct mvl_detok mvl_detok;

mvl_status mvl_detok_init(const mvl_tokenizer *tok, int skip_special, mvl_detok **out,
                          mvl_error *err);
void mvl_detok_free(mvl_detok *d);
/* Adds one id; *text (owned by d, valid until the next call) gets the bytes
 * that are now complete, possibly none (*len == 0). */
mvl_status mvl_detok_push(mvl_detok *d, int32_t id, const char **text, size_t *len,
                          mvl_error *err);
/* Ends the stream: returns what is still held (as U+FFFD) and resets d. */
void mvl_detok_flush(mvl_detok *d, const char **text, size_t *len);

/* Chat format of MiniMax-VL-01 (vision.md §5.1). A message is a role and a
 * list of content items; an image item renders as the `<image>` placeholder
 * with no separator. */
typedef enum mvl_chat_role {
    MVL_ROLE_SYSTEM = 0,
    MVL_ROLE_USER,
    MVL_ROLE_ASSISTANT,
} mvl_chat_role;

typedef struct mvl_chat_item {
    int is_image;        /* 1: an image placeholder; 0: text */
    const char *text;    /* text items: bytes (need not be NUL-terminated) */
    size_t len;
} mvl_chat_item;

typedef struct mvl_chat_message {
    mvl_chat_role role;
    const mvl_chat_item *items; /* [n_items] */
    size_t n_items;
} mvl_chat_message;

/* Renders messages as the template text (before image expansion), with the
 * generation prompt `<beginning_of_sentence>ai name=assistant\n` appended when
 * add_generation_prompt. *out is malloc'd and NUL-terminated; free() it. */
mvl_status mvl_chat_render(const mvl_chat_message *msgs, size_t n_msgs, int add_generation_prompt,
                           char **out, size_t *out_len, mvl_error *err);

/* Renders and tokenizes, then expands the k-th `<image>` placeholder of the
 * rendered text into image_tokens[k] copies of the `<image>` id
 * (vision.md §4.4); placeholders beyond n_images stay single ids, as in the
 * reference processor. image_tokens[k] is the preprocessing token count of
 * image k (vision.md §4.2). *ids is malloc'd; free() it. */
mvl_status mvl_chat_encode(const mvl_tokenizer *tok, const mvl_chat_message *msgs, size_t n_msgs,
                           int add_generation_prompt, const int32_t *image_tokens, size_t n_images,
                           int32_t **ids, size_t *n_ids, mvl_error *err);

/* Raw mode, no template: text as given. When the text holds fewer `<image>`
 * placeholders than images, the missing ones are placed before the text (as
 * an image item before a text item renders); then as mvl_chat_encode. */
mvl_status mvl_chat_encode_raw(const mvl_tokenizer *tok, const char *text, size_t len,
                               const int32_t *image_tokens, size_t n_images, int32_t **ids,
                               size_t *n_ids, mvl_error *err);

/* ---- model and generation ---- */

/* A loaded MiniMax-VL-01 (vision tower, projector, decoder) on the CPU
 * backend, or on the GPU (mvl_device). Read-only after load: several mvl_seq
 * may share one model, but calls that compute (and, on cuda,
 * mvl_seq_init/free) must not run concurrently (the backend is threaded
 * inside). BF16/F16 weights are widened to float32 at load (2x memory) for
 * the CPU stages. */
typedef struct mvl_model mvl_model;

/* How activations are computed. Weights are used as stored either way
 * (BF16/F16 widened exactly; an F32 checkpoint is not rounded to bf16). */
typedef enum mvl_compute {
    MVL_COMPUTE_F32 = 0, /* float32 activations (default): the most exact */
    MVL_COMPUTE_BF16,    /* round activations to bf16 where the reference does, as HF runs a bf16
                            checkpoint: every GEMM output (fp32 accumulate), norm, activation,
                            residual, RoPE and attention step (tests/reference/README.md) */
} mvl_compute;

/* Where the model runs. MVL_DEVICE_CUDA: on GPU 0 in bf16. The vision
 * tower, projector and packing (kernels/cuda_vit.h) take the uint8 tiles of
 * mvl_image_input and leave the packed embeddings on the device, where the
 * decoder (kernels/cuda_decoder.h: bf16 weights and activations, fp32
 * logits) takes them at the image-token rows; no CPU vision weights are
 * loaded. The images of one append go through the ViT together, in batches
 * of at most 1 + the tiles of the largest canvas of the preprocessing
 * config, which is also the most one image may have (MVL_ERR_LIMIT past it).
 * Sampling stays on the CPU sampler over the host copy of the logits, so its
 * semantics are the CPU's. The GPU holds up to 8 sequences of
 * min(max_position_embeddings, 32768) positions each per model
 * (MVL_ERR_LIMIT past either), prefill runs in steps of at most 2048 rows.
 * The GPU's rounding is fixed, so compute must stay MVL_COMPUTE_F32 (the
 * default): MVL_COMPUTE_BF16 with cuda is MVL_ERR_ARG. A build without CUDA
 * or a machine without a GPU fails at mvl_model_load with MVL_ERR_DEVICE. */
typedef enum mvl_device {
    MVL_DEVICE_CPU = 0,
    MVL_DEVICE_CUDA,
} mvl_device;

typedef struct mvl_model_opts {
    int n_threads;       /* GEMM threads; 0 = the OpenBLAS default */
    mvl_compute compute; /* MVL_COMPUTE_F32 (0) unless set */
    mvl_device device;   /* MVL_DEVICE_CPU (0) unless set */
} mvl_model_opts;

/* Opens DIR (see mvl_model_dir_open) and loads every weight. opts may be NULL
 * (float32 compute on the CPU, default threads); an unknown compute mode or
 * device is MVL_ERR_ARG. */
mvl_status mvl_model_load(const char *dir, const mvl_model_opts *opts, mvl_model **out, mvl_error *err);
void mvl_model_free(mvl_model *m);

int32_t mvl_model_vocab_size(const mvl_model *m);
int32_t mvl_model_hidden_size(const mvl_model *m);
int32_t mvl_model_image_token_id(const mvl_model *m);
/* The preprocessing values of the model directory (preprocessor_config.json,
 * or the released defaults when the file has none). */
const mvl_preproc_config *mvl_model_preproc(const mvl_model *m);

/* One preprocessed image, as the model takes it. Borrowed by the calls
 * below. The tiles are the thumbnail, then the grid row-major, as
 * mvl_preprocess gives them. Give tiles, pixels or both: the CPU path reads
 * pixels, or normalises tiles itself when pixels is NULL (so a caller need
 * keep only the bytes); the CUDA path needs tiles (the GPU normalises them),
 * MVL_ERR_ARG without. */
typedef struct mvl_image_input {
    const float *pixels;  /* [1 + cols*rows, 3, S, S] float32 (mvl_preproc_normalize), or NULL */
    int cols, rows;       /* tile grid of the chosen canvas */
    int width, height;    /* the original image size: the unpad uses it (vision.md §4.1) */
    const uint8_t *tiles; /* [1 + cols*rows, S, S, 3] uint8 RGB (mvl_preproc_result.tiles), or NULL */
} mvl_image_input;

/* Visual tokens of img (vision.md §4.2); the <image> id must occur exactly
 * this many times for it. */
int64_t mvl_model_image_tokens(const mvl_model *m, const mvl_image_input *img);

/* Runs the ViT, projector and packing for one image: *out (malloc'd; free())
 * gets [*n_tokens, hidden] float32 embeddings (on cuda the GPU's bf16
 * values, copied back). */
mvl_status mvl_model_embed_image(const mvl_model *m, const mvl_image_input *img, float **out,
                                 int64_t *n_tokens, mvl_error *err);

/* A sequence: the state a conversation leaves behind (KV cache of the
 * softmax layers, fp32 lightning states), so a follow-up turn only runs its
 * new tokens. Owned by the caller; it borrows its model, which must outlive it. */
typedef struct mvl_seq mvl_seq;

/* On cuda the sequence takes one of the model's GPU slots: MVL_ERR_LIMIT when
 * all are held (mvl_seq_free gives it back). */
mvl_status mvl_seq_init(const mvl_model *m, mvl_seq **out, mvl_error *err);
void mvl_seq_free(mvl_seq *s);
/* Positions consumed so far (a pending sampled token not included). */
int64_t mvl_seq_length(const mvl_seq *s);
/* Forgets everything; the allocations are kept. */
void mvl_seq_reset(mvl_seq *s);

/* Appends ids[0..n) (prefill). Positions holding the image token id take the
 * packed embeddings of images[0..n_images) in order; their total count must
 * match exactly (MVL_ERR_ARG otherwise). A token sampled by mvl_seq_generate
 * and not yet run goes first. logits: NULL or [n, vocab] float32, one row per
 * appended id. Invalid input (MVL_ERR_ARG; on cuda also MVL_ERR_LIMIT past
 * the context a slot holds) leaves the sequence as it was; a failure inside
 * the forward pass (out of memory) resets it. */
mvl_status mvl_seq_append(mvl_seq *s, const int32_t *ids, size_t n, const mvl_image_input *images,
                          size_t n_images, float *logits, mvl_error *err);
/* Logits [vocab] after the last position run; NULL before any. Owned by s. */
const float *mvl_seq_last_logits(const mvl_seq *s);

/* Sampling: temperature <= 0 is greedy (argmax, lowest id on ties). Else the
 * logits are divided by the temperature, then cut by top_k (0 = off), top_p
 * (1 = off) and min_p (0 = off), in that order, and one id is drawn with the
 * seeded generator. */
typedef struct mvl_sample_opts {
    float temperature;
    int top_k;
    float top_p;
    float min_p;
    uint64_t seed;
} mvl_sample_opts;

typedef struct mvl_sampler mvl_sampler;
mvl_status mvl_sampler_init(const mvl_sample_opts *opts, mvl_sampler **out, mvl_error *err);
void mvl_sampler_free(mvl_sampler *s);
int32_t mvl_sampler_sample(mvl_sampler *s, const float *logits, size_t vocab);

typedef enum mvl_stop_reason {
    MVL_STOP_ID = 0,     /* a stop id was sampled (it is the last id returned) */
    MVL_STOP_LENGTH,     /* max_tokens reached */
    MVL_STOP_CALLBACK,   /* on_token returned nonzero */
} mvl_stop_reason;

typedef struct mvl_generate_opts {
    mvl_sample_opts sample;
    size_t max_tokens;
    const int32_t *stop_ids; /* [n_stop] */
    size_t n_stop;
    /* Called for each sampled id; nonzero stops. May be NULL. */
    int (*on_token)(void *ctx, int32_t id);
    void *ctx;
} mvl_generate_opts;

/* Samples from the sequence's last logits, feeds the id, and repeats, up to
 * max_tokens ids (written to out_ids[max_tokens]; *n_out gets the count).
 * The last sampled id is not run (nothing needs its logits); the next
 * mvl_seq_append runs it first, so a follow-up turn continues the same state. */
mvl_status mvl_seq_generate(mvl_seq *s, const mvl_generate_opts *opts, int32_t *out_ids, size_t *n_out,
                            mvl_stop_reason *reason, mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
