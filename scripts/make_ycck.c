/* Test-data helper for scripts/make_image_goldens.py: writes a YCCK JPEG
 * (Adobe transform 2), which Pillow cannot save. Reads raw CMYK (ink
 * amounts, Pillow polarity) from stdin as W*H*4 bytes.
 * usage: make_ycck W H OUT.jpg < pixels.cmyk */
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    int w = atoi(argv[1]), h = atoi(argv[2]);
    unsigned char *px = malloc((size_t)w * h * 4);
    if (!px || fread(px, 4, (size_t)w * h, stdin) != (size_t)w * h) return 1;
    /* Adobe files store inverted CMYK; Pillow inverts again on reading. */
    for (size_t i = 0; i < (size_t)w * h * 4; i++) px[i] = (unsigned char)(255 - px[i]);
    FILE *f = fopen(argv[3], "wb");
    if (!f) return 1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 4;
    c.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&c);
    jpeg_set_colorspace(&c, JCS_YCCK);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = px + (size_t)c.next_scanline * w * 4;
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    fclose(f);
    free(px);
    return 0;
}
