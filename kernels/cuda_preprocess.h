/* Anyres preprocessing on the GPU (kernels/cuda_preprocess.cu): the decoded
 * RGB image goes up as bytes and the GPU does what vision/preprocess.c
 * mvl_preprocess does on the CPU (vision.md §3): the squashed S x S
 * thumbnail first, then the resize onto the chosen canvas with centred black
 * padding and the row-major S x S tile cut, written straight into a device
 * tile buffer such as the ViT's staging buffer (mvl_cuda_vit_staging). The
 * resize is Pillow's integer arithmetic with the same int32 weights as the
 * CPU (vision/resample.h), so the tiles are the CPU's byte for byte.
 *
 * Only RGB images resized with BICUBIC take the GPU path; other modes
 * (strict_reference keeps L, RGBA, CMYK, I;16, P) are preprocessed on the
 * CPU and their tiles uploaded. In a build without CUDA every function
 * reports "built without CUDA" (gpu_none.c). */
#ifndef MVL_CUDA_PREPROCESS_H
#define MVL_CUDA_PREPROCESS_H

#include <stdint.h>

#include "kernels/cuda_vit.h"
#include "mvl.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mvl_cuda_prep mvl_cuda_prep;

/* Binds to a device tile buffer [capacity, S, S, 3] uint8 (S = tile_side)
 * and the stream (a cudaStream_t) that reads it, e.g. the ViT's staging
 * buffer and stream with the max_tiles the ViT was created with. Scratch
 * (pinned host and device) grows with the images seen. */
mvl_status mvl_cuda_prep_init(uint8_t *tiles, int capacity, int tile_side, void *stream, mvl_cuda_prep **out,
                              mvl_error *err);
void mvl_cuda_prep_free(mvl_cuda_prep *p);

/* Enqueues the preprocessing of img on the stream, its tiles (thumbnail
 * first) written from tile index `first` on; *im gets the image's size and
 * grid for mvl_cuda_vit_encode and *n_tiles its 1 + cols*rows tiles.
 * Returns once img has been copied out (img may then be freed), before the
 * GPU is done. MVL_ERR_LIMIT when the tiles do not fit the buffer. */
mvl_status mvl_cuda_preprocess(mvl_cuda_prep *p, const mvl_image *img, const mvl_preproc_config *cfg, int first,
                               mvl_cuda_image *im, int *n_tiles, mvl_error *err);

/* The same in steps, for a decoder that writes rows straight into pinned
 * memory and uploads bands while it decodes the next (RGB only):
 * _begin returns the host buffer for a width x height RGB image [height,
 * width, 3], _rows enqueues the upload of rows [y0, y1) once they are
 * written, and _end (after every row was sent) enqueues the rest. */
mvl_status mvl_cuda_prep_begin(mvl_cuda_prep *p, int width, int height, uint8_t **rows, mvl_error *err);
mvl_status mvl_cuda_prep_rows(mvl_cuda_prep *p, int y0, int y1, mvl_error *err);
mvl_status mvl_cuda_prep_end(mvl_cuda_prep *p, const mvl_preproc_config *cfg, int first, mvl_cuda_image *im,
                             int *n_tiles, mvl_error *err);

/* A JPEG or PNG file's bytes to tiles, as mvl_image_decode (default
 * options) then mvl_cuda_preprocess. Where nvJPEG was found at build time
 * (CMake option MVL_NVJPEG, AUTO by default) an 8-bit baseline JPEG, gray
 * or YCbCr 4:4:4/4:2:2/4:2:0, with no EXIF rotation is decoded on the GPU
 * instead (progressive ones are not: see jpeg_gpu_ok): nvJPEG's planes, then
 * libjpeg-turbo's fancy chroma upsampling and integer YCbCr -> RGB on the GPU
 * (*on_gpu = 1). That matched libjpeg-turbo byte for byte on every JPEG
 * measured (test_gpu_preprocess). But nvJPEG decodes truncated or corrupt
 * data that libjpeg refuses, and damaged files can decode differently, so
 * libjpeg decodes the file on a CPU thread meanwhile: mvl_cuda_prep_wait,
 * which the caller must call (after enqueueing the ViT, to overlap) before
 * using the tiles, gives its verdict. buf must stay valid until then, and
 * the next image on p must wait for it. name is for messages. */
mvl_status mvl_cuda_prep_file(mvl_cuda_prep *p, const void *buf, size_t len, const char *name,
                              const mvl_preproc_config *cfg, int first, mvl_cuda_image *im, int *n_tiles,
                              int *on_gpu, mvl_error *err);

/* The verdict of the last mvl_cuda_prep_file (MVL_OK when nothing is
 * pending), waiting for libjpeg's decode of it: on failure the file's
 * tiles are garbage and err names the file and the damage, as
 * mvl_image_decode would; when nvJPEG's pixels differ from libjpeg's the
 * tiles are staged again from libjpeg's and *restaged = 1: anything run on
 * the old ones (the ViT) must run again. */
mvl_status mvl_cuda_prep_wait(mvl_cuda_prep *p, int *restaged, mvl_error *err);

/* Copies tiles [first, first + n) of the tile buffer to out [n, S, S, 3]
 * (host), waiting for the stream. */
mvl_status mvl_cuda_prep_download(mvl_cuda_prep *p, int first, int n, uint8_t *out, mvl_error *err);
/* Copies the last RGB image the GPU preprocessed, as it holds it, to out
 * [height, width, 3] (tests: the GPU JPEG decode against libjpeg). */
mvl_status mvl_cuda_prep_source(mvl_cuda_prep *p, int width, int height, uint8_t *out, mvl_error *err);

#ifdef __cplusplus
}
#endif
#endif
