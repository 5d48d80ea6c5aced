/* Internal pieces of vision/ shared between decoding, resizing and tests. */
#ifndef MVL_VISION_H
#define MVL_VISION_H

#include <stddef.h>
#include <stdint.h>

#include "mvl.h"

/* Samples per pixel of a mode (1..4). */
int mvl_pixel_mode_channels(mvl_pixel_mode m);

/* Allocates a w x h image of the given mode (data uninitialised). */
mvl_status mvl_image_new(int w, int h, mvl_pixel_mode mode, mvl_image **out, mvl_error *err);

/* EXIF orientation 1..8 from a TIFF block ("II*\0..." or "MM\0*..."); 1 when
 * absent or malformed. Safe on any input. */
int mvl_exif_orientation(const uint8_t *tiff, size_t n);

/* Converts n pixels of img's mode (read from src, laid out as img->data is)
 * to RGB the way Pillow's convert("RGB") / paste onto an RGB canvas does:
 * alpha dropped without compositing, CMYK by Pillow's cmyk2rgb, I;16 clipped
 * at 255 (vision.md §3.6). */
void mvl_convert_row_to_rgb(const mvl_image *img, const void *src, size_t n, uint8_t *dst);

/* Where a W x H image lands on a cw x ch canvas (vision.md §3.3): resized to
 * *nw x *nh at (*x0, *y0). */
void mvl_letterbox(int64_t W, int64_t H, int cw, int ch, int *nw, int *nh, int *x0, int *y0);

/* Resizes img to dw x dh in its own mode exactly as Pillow's
 * Image.resize(size, BICUBIC) does, including its mode rules: NEAREST for
 * "P"/"1", premultiplied alpha for RGBA/LA, a plain copy at the same size. */
mvl_status mvl_image_resize(const mvl_image *img, int dw, int dh, mvl_image **out, mvl_error *err);

#endif
