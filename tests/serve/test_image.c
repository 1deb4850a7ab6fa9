/*
 * Image preprocessing: JPEG and PNG decoding to grayscale, and the
 * bilinear resize against TensorFlow 2's tf.image.resize (half-pixel
 * centres, no antialiasing). The stripe fixtures tell the conventions
 * apart: corner-aligned resizing turns F3 into all 0, and an antialiased
 * filter turns F4 into about 63.75 and 191.25.
 */
#include "check.h"
#include "fixture.h"

#include "serve/image.h"

#include <spng.h>
#include <stdint.h>

static int decode_fixture(const char *name, uint8_t **pixels, int *width, int *height)
{
    size_t size = 0;
    unsigned char *data = fixture_read(name, &size);
    char error[256] = "";
    int rc = srv_image_decode(data, size, pixels, width, height, error, sizeof error);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", name, error);
    free(data);
    return rc;
}

static void test_decode_uniform_jpegs(void)
{
    const char *names[] = {"F1-gray128-baseline-28.jpg", "F2-gray128-progressive-28.jpg"};
    for (int f = 0; f < 2; f++) {
        uint8_t *pixels = NULL;
        int width = 0, height = 0;
        CHECK_INT_EQ(decode_fixture(names[f], &pixels, &width, &height), 0);
        CHECK_INT_EQ(width, 28);
        CHECK_INT_EQ(height, 28);
        int off = 0;
        for (int i = 0; pixels != NULL && i < 28 * 28; i++)
            off += pixels[i] != 128;
        CHECK_MSG(off == 0, "%s: %d pixels are not 128", names[f], off);
        free(pixels);
    }
}

static void test_resize_one_pixel_stripes(void)
{
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    CHECK_INT_EQ(decode_fixture("F3-stripes1px-56.jpg", &pixels, &width, &height), 0);
    CHECK_INT_EQ(width, 56);
    CHECK_INT_EQ(height, 56);
    CHECK_INT_EQ(pixels[0], 0);
    CHECK_INT_EQ(pixels[1], 255);
    float out[28 * 28];
    CHECK_INT_EQ(srv_resize_bilinear(pixels, width, height, out, 28, 28), 0);
    int off = 0;
    for (int i = 0; i < 28 * 28; i++)
        off += out[i] != 127.5f;
    CHECK_MSG(off == 0, "%d of 784 pixels differ from 127.5 (first: %g)", off, (double)out[0]);
    free(pixels);
}

static void test_resize_two_pixel_stripes(void)
{
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    CHECK_INT_EQ(decode_fixture("F4-stripes2px-56.jpg", &pixels, &width, &height), 0);
    float out[28 * 28];
    CHECK_INT_EQ(srv_resize_bilinear(pixels, width, height, out, 28, 28), 0);
    int off = 0;
    for (int y = 0; y < 28; y++)
        for (int x = 0; x < 28; x++)
            off += out[y * 28 + x] != (x % 2 == 0 ? 0.0f : 255.0f);
    CHECK_MSG(off == 0, "%d of 784 pixels do not alternate 0, 255 (row 0: %g %g)", off,
              (double)out[0], (double)out[1]);
    free(pixels);
}

static void test_resize_same_size_passthrough(void)
{
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    CHECK_INT_EQ(decode_fixture("F5-nonuniform-28.jpg", &pixels, &width, &height), 0);
    float out[28 * 28];
    CHECK_INT_EQ(srv_resize_bilinear(pixels, width, height, out, 28, 28), 0);
    int off = 0, distinct = 0;
    for (int i = 0; i < 28 * 28; i++) {
        off += out[i] != (float)pixels[i];
        distinct += pixels[i] != pixels[0];
    }
    CHECK_MSG(off == 0, "%d pixels changed", off);
    CHECK_MSG(distinct > 0, "F5 decoded to a uniform image");
    free(pixels);
}

/* Upscaling 2 -> 4 samples at -0.25, 0.25, 0.75 and 1.25, clamped at the
 * edges: [0, 255] becomes [0, 63.75, 191.25, 255] on each row. */
static void test_resize_upscale_weights(void)
{
    const uint8_t src[4] = {0, 255, 0, 255};
    const float expected[4] = {0.0f, 63.75f, 191.25f, 255.0f};
    float out[16];
    CHECK_INT_EQ(srv_resize_bilinear(src, 2, 2, out, 4, 4), 0);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            CHECK_NEAR(out[y * 4 + x], expected[x], 0.0);
}

static void test_input_scaled_to_unit_range(void)
{
    size_t size = 0;
    unsigned char *data = fixture_read("F1-gray128-baseline-28.jpg", &size);
    float x[28 * 28];
    char error[256];
    CHECK_INT_EQ(srv_image_to_input(data, size, x, 28, 28, error, sizeof error), 0);
    CHECK_NEAR(x[0], 128.0f / 255.0f, 0.0);
    CHECK_NEAR(x[783], 128.0f / 255.0f, 0.0);
    free(data);
}

static void expect_decode_error(const char *what, const uint8_t *data, size_t size,
                                const char *text)
{
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    char error[256] = "";
    int rc = srv_image_decode(data, size, &pixels, &width, &height, error, sizeof error);
    CHECK_MSG(rc != 0, "%s decoded", what);
    CHECK_STR_CONTAINS(error, "Unable to decode image: ");
    CHECK_STR_CONTAINS(error, text);
    CHECK(pixels == NULL);
}

static void test_decode_rejects_other_bytes(void)
{
    size_t size = 0;
    unsigned char *f1 = fixture_read("F1-gray128-baseline-28.jpg", &size);
    expect_decode_error("F1 cut after 200 bytes", f1, 200, "invalid JPEG data");
    free(f1);
    /* A JPEG signature with no frame header has no size, which is not a
     * size over the maximum. */
    expect_decode_error("JPEG signature and garbage",
                        (const uint8_t *)"\xff\xd8\xff\xe0garbage", 11,
                        "invalid JPEG data: the header gives a size of 0x0 pixels");
    const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    expect_decode_error("PNG signature only", png_signature, 8, "invalid PNG data");
    expect_decode_error("GIF header", (const uint8_t *)"GIF89a", 6,
                        "unsupported image format GIF");
    expect_decode_error("hello world", (const uint8_t *)"hello world", 11,
                        "unsupported image format");
    uint8_t raw[784];
    memset(raw, 7, sizeof raw);
    expect_decode_error("raw pixels", raw, sizeof raw, "unsupported image format");
    expect_decode_error("empty", raw, 0, "unsupported image format");
}

/* Encodes W x H pixels of COLOR_TYPE (1 or 3 bytes each) as a PNG. */
static unsigned char *encode_png(const uint8_t *pixels, int w, int h, int color_type,
                                 size_t *size)
{
    spng_ctx *enc = spng_ctx_new(SPNG_CTX_ENCODER);
    spng_set_option(enc, SPNG_ENCODE_TO_BUFFER, 1);
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8,
                             .color_type = (uint8_t)color_type};
    spng_set_ihdr(enc, &ihdr);
    size_t length = (size_t)w * (size_t)h * (color_type == SPNG_COLOR_TYPE_TRUECOLOR ? 3 : 1);
    int err = spng_encode_image(enc, pixels, length, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    unsigned char *png = err == 0 ? spng_get_png_buffer(enc, size, &err) : NULL;
    spng_ctx_free(enc);
    if (png == NULL) {
        fprintf(stderr, "cannot encode a PNG: %s\n", spng_strerror(err));
        exit(2);
    }
    return png;
}

static void test_decode_png(void)
{
    const uint8_t gray[6] = {0, 50, 100, 150, 200, 255};
    size_t size = 0;
    unsigned char *png = encode_png(gray, 3, 2, SPNG_COLOR_TYPE_GRAYSCALE, &size);
    uint8_t *pixels = NULL;
    int width = 0, height = 0;
    char error[256] = "";
    CHECK_INT_EQ(srv_image_decode(png, size, &pixels, &width, &height, error, sizeof error), 0);
    CHECK_INT_EQ(width, 3);
    CHECK_INT_EQ(height, 2);
    for (int i = 0; pixels != NULL && i < 6; i++)
        CHECK_INT_EQ(pixels[i], gray[i]);
    free(pixels);
    free(png);

    /* Pure red, green and blue, then white: libjpeg's luma weights. */
    const uint8_t rgb[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    png = encode_png(rgb, 2, 2, SPNG_COLOR_TYPE_TRUECOLOR, &size);
    pixels = NULL;
    CHECK_INT_EQ(srv_image_decode(png, size, &pixels, &width, &height, error, sizeof error), 0);
    if (pixels != NULL) {
        CHECK_INT_EQ(pixels[0], 76);
        CHECK_INT_EQ(pixels[1], 150);
        CHECK_INT_EQ(pixels[2], 29);
        CHECK_INT_EQ(pixels[3], 255);
    }
    free(pixels);
    expect_decode_error("PNG cut in half", png, size / 2, "invalid PNG data");
    free(png);
}

int main(void)
{
    RUN_TEST(test_decode_uniform_jpegs);
    RUN_TEST(test_resize_one_pixel_stripes);
    RUN_TEST(test_resize_two_pixel_stripes);
    RUN_TEST(test_resize_same_size_passthrough);
    RUN_TEST(test_resize_upscale_weights);
    RUN_TEST(test_input_scaled_to_unit_range);
    RUN_TEST(test_decode_rejects_other_bytes);
    RUN_TEST(test_decode_png);
    return check_finish();
}
