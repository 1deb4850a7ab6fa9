/*
 * Image preprocessing of the serving signature. An encoded JPEG or PNG is
 * decoded to 8-bit grayscale and resized to the model's input size with
 * TensorFlow 2's tf.image.resize defaults (bilinear, half-pixel centres,
 * no antialiasing). Pixels are then scaled to [0, 1], as in training.
 *
 * JPEG goes through libjpeg-turbo's TurboJPEG API with the accurate
 * integer IDCT (tf.io.decode_jpeg's "INTEGER_ACCURATE"; its default is the
 * fast one); a grayscale request makes libjpeg copy the luma plane of a
 * YCbCr image. PNG goes
 * through libspng; colour PNGs are converted with libjpeg's luma weights
 * (0.299 R + 0.587 G + 0.114 B) and alpha is dropped.
 */
#ifndef DISTML_SERVE_IMAGE_H
#define DISTML_SERVE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

/* Largest decoded image accepted, in pixels (one byte each in grayscale),
 * so a small compressed file cannot make the server allocate gigabytes. */
#define SRV_IMAGE_MAX_PIXELS (64u * 1024 * 1024)

typedef enum {
    SRV_IMAGE_UNKNOWN,
    SRV_IMAGE_JPEG,
    SRV_IMAGE_PNG,
    SRV_IMAGE_GIF,
    SRV_IMAGE_BMP,
    SRV_IMAGE_WEBP,
} srv_image_format;

/* The format named by the first bytes of DATA. */
srv_image_format srv_image_sniff(const uint8_t *data, size_t size);

/*
 * Decodes the JPEG or PNG in DATA to grayscale into *PIXELS (malloc'd,
 * WIDTH * HEIGHT bytes, row-major). On failure returns -1 with a message
 * in ERROR that starts with "Unable to decode image: ".
 */
int srv_image_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *width, int *height,
                     char *error, size_t capacity);

/*
 * Resizes the WIDTH x HEIGHT image SRC to OUT_WIDTH x OUT_HEIGHT floats in
 * DST, as TensorFlow's ResizeBilinear with half_pixel_centers = true does
 * in float32: source x = (i + 0.5) * (WIDTH / OUT_WIDTH) - 0.5, clamped
 * neighbours, and linear weights. Values stay in [0, 255]. Equal sizes
 * copy the pixels unchanged. Returns -1 only when memory runs out.
 */
int srv_resize_bilinear(const uint8_t *src, int width, int height, float *dst, int out_width,
                        int out_height);

/*
 * The whole preprocessing: decodes DATA, resizes it to OUT_WIDTH x
 * OUT_HEIGHT and writes pixel / 255 into DST (one channel). Errors as in
 * srv_image_decode.
 */
int srv_image_to_input(const uint8_t *data, size_t size, float *dst, int out_width,
                       int out_height, char *error, size_t capacity);

#endif
