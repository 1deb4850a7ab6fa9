#include "serve/image.h"

#include <math.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

srv_image_format srv_image_sniff(const uint8_t *data, size_t size)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF)
        return SRV_IMAGE_JPEG;
    if (size >= 8 && memcmp(data, png, 8) == 0)
        return SRV_IMAGE_PNG;
    if (size >= 4 && memcmp(data, "GIF8", 4) == 0)
        return SRV_IMAGE_GIF;
    if (size >= 2 && memcmp(data, "BM", 2) == 0)
        return SRV_IMAGE_BMP;
    if (size >= 12 && memcmp(data, "RIFF", 4) == 0 && memcmp(data + 8, "WEBP", 4) == 0)
        return SRV_IMAGE_WEBP;
    return SRV_IMAGE_UNKNOWN;
}

static int decode_jpeg(const uint8_t *data, size_t size, uint8_t **pixels, int *width,
                       int *height, char *error, size_t capacity)
{
    int rc = -1;
    int w = 0, h = 0, subsampling = 0, colorspace = 0;
    uint8_t *out = NULL;
    tjhandle tj = tjInitDecompress();
    if (tj == NULL) {
        snprintf(error, capacity, "Unable to decode image: cannot start the JPEG decoder: %s",
                 tjGetErrorStr2(NULL));
        return -1;
    }
    if (tjDecompressHeader3(tj, data, (unsigned long)size, &w, &h, &subsampling, &colorspace) !=
        0) {
        snprintf(error, capacity, "Unable to decode image: invalid JPEG data: %s",
                 tjGetErrorStr2(tj));
        goto out;
    }
    if (w <= 0 || h <= 0) {
        snprintf(error, capacity,
                 "Unable to decode image: invalid JPEG data: the header gives a size of %dx%d "
                 "pixels",
                 w, h);
        goto out;
    }
    if ((uint64_t)w * (uint64_t)h > SRV_IMAGE_MAX_PIXELS) {
        snprintf(error, capacity,
                 "Unable to decode image: JPEG of %dx%d pixels is larger than the maximum of "
                 "%u pixels",
                 w, h, SRV_IMAGE_MAX_PIXELS);
        goto out;
    }
    out = malloc((size_t)w * (size_t)h);
    if (out == NULL) {
        snprintf(error, capacity, "Unable to decode image: out of memory for %dx%d pixels", w, h);
        goto out;
    }
    /* TJFLAG_ACCURATEDCT selects libjpeg's JDCT_ISLOW, which is
     * tf.io.decode_jpeg's dct_method "INTEGER_ACCURATE". Its default, the
     * fast JDCT_IFAST, decodes the 0/255 stripe fixture F3 of the tests with
     * pixels 13 levels off, where ISLOW restores it exactly. A warning
     * such as a truncated file also fails here, because a prediction from
     * a partly decoded image would be garbage. */
    if (tjDecompress2(tj, data, (unsigned long)size, out, w, 0, h, TJPF_GRAY, TJFLAG_ACCURATEDCT) !=
        0) {
        snprintf(error, capacity, "Unable to decode image: invalid JPEG data: %s",
                 tjGetErrorStr2(tj));
        goto out;
    }
    *pixels = out;
    *width = w;
    *height = h;
    out = NULL;
    rc = 0;
out:
    free(out);
    tjDestroy(tj);
    return rc;
}

/* libjpeg's rgb_gray_convert: 16-bit fixed-point luma with rounding. */
static uint8_t luma(uint8_t r, uint8_t g, uint8_t b)
{
    return (uint8_t)((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
}

static int decode_png(const uint8_t *data, size_t size, uint8_t **pixels, int *width,
                      int *height, char *error, size_t capacity)
{
    int rc = -1, err;
    struct spng_ihdr ihdr;
    uint8_t *decoded = NULL, *gray = NULL;
    size_t decoded_size = 0;
    spng_ctx *ctx = spng_ctx_new(0);
    if (ctx == NULL) {
        snprintf(error, capacity, "Unable to decode image: cannot start the PNG decoder");
        return -1;
    }
    spng_set_crc_action(ctx, SPNG_CRC_ERROR, SPNG_CRC_ERROR);
    spng_set_image_limits(ctx, 1u << 24, 1u << 24);
    spng_set_chunk_limits(ctx, 1u << 24, 1u << 26);
    if ((err = spng_set_png_buffer(ctx, data, size)) != 0 ||
        (err = spng_get_ihdr(ctx, &ihdr)) != 0) {
        snprintf(error, capacity, "Unable to decode image: invalid PNG data: %s",
                 spng_strerror(err));
        goto out;
    }
    if ((uint64_t)ihdr.width * ihdr.height > SRV_IMAGE_MAX_PIXELS) {
        snprintf(error, capacity,
                 "Unable to decode image: PNG of %ux%u pixels is larger than the maximum of %u "
                 "pixels",
                 ihdr.width, ihdr.height, SRV_IMAGE_MAX_PIXELS);
        goto out;
    }
    /* libspng decodes to 8-bit gray only from 8-bit-or-less gray images;
     * everything else goes through RGBA8 and the luma conversion. */
    int fmt = ihdr.color_type == SPNG_COLOR_TYPE_GRAYSCALE && ihdr.bit_depth <= 8 ? SPNG_FMT_G8
                                                                                 : SPNG_FMT_RGBA8;
    if ((err = spng_decoded_image_size(ctx, fmt, &decoded_size)) != 0) {
        snprintf(error, capacity, "Unable to decode image: invalid PNG data: %s",
                 spng_strerror(err));
        goto out;
    }
    decoded = malloc(decoded_size);
    if (decoded == NULL) {
        snprintf(error, capacity, "Unable to decode image: out of memory for %ux%u pixels",
                 ihdr.width, ihdr.height);
        goto out;
    }
    if ((err = spng_decode_image(ctx, decoded, decoded_size, fmt, SPNG_DECODE_TRNS)) != 0) {
        snprintf(error, capacity, "Unable to decode image: invalid PNG data: %s",
                 spng_strerror(err));
        goto out;
    }
    const size_t count = (size_t)ihdr.width * ihdr.height;
    if (fmt == SPNG_FMT_G8) {
        gray = decoded;
        decoded = NULL;
    } else {
        gray = malloc(count);
        if (gray == NULL) {
            snprintf(error, capacity, "Unable to decode image: out of memory for %ux%u pixels",
                     ihdr.width, ihdr.height);
            goto out;
        }
        for (size_t i = 0; i < count; i++)
            gray[i] = luma(decoded[4 * i], decoded[4 * i + 1], decoded[4 * i + 2]);
    }
    *pixels = gray;
    *width = (int)ihdr.width;
    *height = (int)ihdr.height;
    gray = NULL;
    rc = 0;
out:
    free(decoded);
    free(gray);
    spng_ctx_free(ctx);
    return rc;
}

int srv_image_decode(const uint8_t *data, size_t size, uint8_t **pixels, int *width, int *height,
                     char *error, size_t capacity)
{
    static const char *const names[] = {"", "JPEG", "PNG", "GIF", "BMP", "WebP"};
    srv_image_format format = srv_image_sniff(data, size);
    switch (format) {
    case SRV_IMAGE_JPEG:
        return decode_jpeg(data, size, pixels, width, height, error, capacity);
    case SRV_IMAGE_PNG:
        return decode_png(data, size, pixels, width, height, error, capacity);
    case SRV_IMAGE_UNKNOWN:
        snprintf(error, capacity,
                 "Unable to decode image: unsupported image format (%zu byte%s that are neither "
                 "JPEG nor PNG)",
                 size, size == 1 ? "" : "s");
        return -1;
    default:
        snprintf(error, capacity,
                 "Unable to decode image: unsupported image format %s; send JPEG or PNG",
                 names[format]);
        return -1;
    }
}

/* Source position, neighbours and weight of output index I, as
 * TensorFlow's compute_interpolation_weights computes them in float. */
typedef struct {
    int lower, upper;
    float lerp;
} interpolation;

static void compute_interpolation(int out_size, int in_size, interpolation *w)
{
    const float scale = (float)in_size / (float)out_size;
    for (int i = 0; i < out_size; i++) {
        const float in = ((float)i + 0.5f) * scale - 0.5f;
        const float in_floor = floorf(in);
        w[i].lower = in_floor > 0.0f ? (int)in_floor : 0;
        w[i].upper = (int)ceilf(in) < in_size - 1 ? (int)ceilf(in) : in_size - 1;
        w[i].lerp = in - in_floor;
    }
}

int srv_resize_bilinear(const uint8_t *src, int width, int height, float *dst, int out_width,
                        int out_height)
{
    interpolation *xs = malloc((size_t)out_width * sizeof *xs);
    interpolation *ys = malloc((size_t)out_height * sizeof *ys);
    if (xs == NULL || ys == NULL) {
        free(xs);
        free(ys);
        return -1;
    }
    compute_interpolation(out_width, width, xs);
    compute_interpolation(out_height, height, ys);
    for (int y = 0; y < out_height; y++) {
        const uint8_t *top_row = src + (size_t)ys[y].lower * (size_t)width;
        const uint8_t *bottom_row = src + (size_t)ys[y].upper * (size_t)width;
        const float ylerp = ys[y].lerp;
        for (int x = 0; x < out_width; x++) {
            const float top_left = top_row[xs[x].lower], top_right = top_row[xs[x].upper];
            const float bottom_left = bottom_row[xs[x].lower];
            const float bottom_right = bottom_row[xs[x].upper];
            const float top = top_left + (top_right - top_left) * xs[x].lerp;
            const float bottom = bottom_left + (bottom_right - bottom_left) * xs[x].lerp;
            dst[(size_t)y * (size_t)out_width + (size_t)x] = top + (bottom - top) * ylerp;
        }
    }
    free(xs);
    free(ys);
    return 0;
}

int srv_image_to_input(const uint8_t *data, size_t size, float *dst, int out_width,
                       int out_height, char *error, size_t capacity)
{
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    if (srv_image_decode(data, size, &pixels, &width, &height, error, capacity) != 0)
        return -1;
    int rc = srv_resize_bilinear(pixels, width, height, dst, out_width, out_height);
    free(pixels);
    if (rc != 0) {
        snprintf(error, capacity, "Unable to decode image: out of memory while resizing");
        return -1;
    }
    const size_t count = (size_t)out_width * (size_t)out_height;
    for (size_t i = 0; i < count; i++)
        dst[i] /= 255.0f;
    return 0;
}
