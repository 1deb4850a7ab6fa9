/* Tests for the IDX reader on small generated files, raw and gzip. */
#include "check.h"

#include "base/error.h"
#include "data/idx.h"

#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

typedef struct {
    uint8_t *data;
    size_t size;
} bytes;

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* An images file: COUNT images of ROWS x COLS, pixel (i, p) = (i * 7 + p) % 256. */
static bytes make_images(uint32_t count, uint32_t rows, uint32_t cols)
{
    size_t payload = (size_t)count * rows * cols;
    bytes b = {malloc(16 + payload), 16 + payload};
    put_be32(b.data, IDX_MAGIC_IMAGES);
    put_be32(b.data + 4, count);
    put_be32(b.data + 8, rows);
    put_be32(b.data + 12, cols);
    for (size_t i = 0; i < payload; i++)
        b.data[16 + i] = (uint8_t)((i / ((size_t)rows * cols)) * 7 + i % ((size_t)rows * cols));
    return b;
}

/* A labels file with label i = i % 10. */
static bytes make_labels(uint32_t count)
{
    bytes b = {malloc(8 + (size_t)count), 8 + (size_t)count};
    put_be32(b.data, IDX_MAGIC_LABELS);
    put_be32(b.data + 4, count);
    for (uint32_t i = 0; i < count; i++)
        b.data[8 + i] = (uint8_t)(i % 10);
    return b;
}

/* One gzip member holding IN. */
static bytes gzip_bytes(const uint8_t *in, size_t size)
{
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t capacity = deflateBound(&zs, (uLong)size) + 64;
    bytes out = {malloc(capacity), 0};
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)size;
    zs.next_out = out.data;
    zs.avail_out = (uInt)capacity;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    out.size = capacity - zs.avail_out;
    deflateEnd(&zs);
    return out;
}

/* True when A is non-NULL and its first SIZE bytes equal B's. */
static bool bytes_equal(const uint8_t *a, const uint8_t *b, size_t size)
{
    return a != NULL && memcmp(a, b, size) == 0;
}

static void append(bytes *b, const uint8_t *data, size_t size)
{
    b->data = realloc(b->data, b->size + size);
    memcpy(b->data + b->size, data, size);
    b->size += size;
}

static char scratch_dir[4096];

static const char *write_file(const char *name, const uint8_t *data, size_t size)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", scratch_dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
    return path;
}

static void test_images_raw_loads(void)
{
    bytes b = make_images(3, 28, 28);
    const char *path = write_file("images", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), 0);
    CHECK_INT_EQ(a.kind, IDX_IMAGES);
    CHECK_INT_EQ(a.count, 3);
    CHECK_INT_EQ(a.rows, 28);
    CHECK_INT_EQ(a.cols, 28);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 16, 3 * 784));
    CHECK_INT_EQ(a.data[784 + 5], 7 + 5);
    idx_free(&a);
    CHECK(a.data == NULL);
    free(b.data);
}

static void test_images_gzip_loads(void)
{
    bytes b = make_images(5, 28, 28);
    bytes gz = gzip_bytes(b.data, b.size);
    const char *path = write_file("images.gz", gz.data, gz.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), 0);
    CHECK_INT_EQ(a.count, 5);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 16, 5 * 784));
    idx_free(&a);
    free(b.data);
    free(gz.data);
}

static void test_labels_raw_and_gzip_load(void)
{
    bytes b = make_labels(25);
    bytes gz = gzip_bytes(b.data, b.size);
    idx_array a;

    const char *path = write_file("labels", b.data, b.size);
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), 0);
    CHECK_INT_EQ(a.kind, IDX_LABELS);
    CHECK_INT_EQ(a.count, 25);
    CHECK_INT_EQ(a.rows, 1);
    CHECK_INT_EQ(a.cols, 1);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 8, 25));
    idx_free(&a);

    path = write_file("labels.gz", gz.data, gz.size);
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), 0);
    CHECK_INT_EQ(a.count, 25);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 8, 25));
    idx_free(&a);
    free(b.data);
    free(gz.data);
}

/* Gzip is detected by content: a raw file named .gz and a gzip file named
 * without it both load. */
static void test_gzip_detected_by_content(void)
{
    bytes b = make_images(2, 28, 28);
    bytes gz = gzip_bytes(b.data, b.size);
    idx_array a;

    const char *path = write_file("raw-behind-gz-name.gz", b.data, b.size);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), 0);
    CHECK_INT_EQ(a.count, 2);
    idx_free(&a);

    path = write_file("gzip-without-gz-name", gz.data, gz.size);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), 0);
    CHECK_INT_EQ(a.count, 2);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 16, 2 * 784));
    idx_free(&a);
    free(b.data);
    free(gz.data);
}

static void test_double_gzip_rejected(void)
{
    bytes b = make_images(2, 28, 28);
    bytes gz = gzip_bytes(b.data, b.size);
    bytes gz2 = gzip_bytes(gz.data, gz.size);
    const char *path = write_file("double.gz", gz2.data, gz2.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK(a.data == NULL);
    CHECK_STR_CONTAINS(dm_error(), "double.gz: ");
    CHECK_STR_CONTAINS(dm_error(), "IDX magic expected 0x00000803");
    CHECK_STR_CONTAINS(dm_error(), "found 0x1F8B08");
    CHECK_MSG(strstr(dm_error(), "529205256") == NULL, "%s", dm_error());
    free(b.data);
    free(gz.data);
    free(gz2.data);
}

static void test_labels_as_images_rejected(void)
{
    bytes b = make_labels(10);
    bytes gz = gzip_bytes(b.data, b.size);
    const char *path = write_file("train-labels-idx1-ubyte.gz", gz.data, gz.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "train-labels-idx1-ubyte.gz: IDX magic expected");
    CHECK_STR_CONTAINS(dm_error(), "0x00000803 (2051, images)");
    CHECK_STR_CONTAINS(dm_error(), "found 0x00000801 (2049, labels)");
    free(b.data);
    free(gz.data);
}

static void test_images_as_labels_rejected(void)
{
    bytes b = make_images(1, 28, 28);
    const char *path = write_file("images-as-labels", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "IDX magic expected 0x00000801 (2049, labels)");
    CHECK_STR_CONTAINS(dm_error(), "found 0x00000803 (2051, images)");
    free(b.data);
}

static void test_non_byte_type_rejected(void)
{
    bytes b = make_images(1, 28, 28);
    b.data[2] = 0x0d; /* IDX float32 */
    const char *path = write_file("float-images", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "found 0x00000D03");
    CHECK_STR_CONTAINS(dm_error(), "IDX type 0x0D with 3 dimensions");
    free(b.data);
}

static void test_truncated_payload_rejected(void)
{
    bytes b = make_images(2, 28, 28);
    idx_array a;

    const char *path = write_file("truncated", b.data, b.size - 1);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "IDX size expected 1584 bytes");
    CHECK_STR_CONTAINS(dm_error(), "found 1583 bytes");
    CHECK_STR_CONTAINS(dm_error(), "truncated by 1 bytes");

    bytes gz = gzip_bytes(b.data, b.size - 100);
    path = write_file("truncated.gz", gz.data, gz.size);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "found 1484 bytes after gzip decompression");
    free(b.data);
    free(gz.data);
}

static void test_trailing_bytes_rejected(void)
{
    bytes b = make_labels(10);
    uint8_t extra[3] = {1, 2, 3};
    append(&b, extra, sizeof extra);
    const char *path = write_file("trailing", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "IDX size expected 18 bytes (8-byte header and 10 labels)");
    CHECK_STR_CONTAINS(dm_error(), "found 21 bytes");
    CHECK_STR_CONTAINS(dm_error(), "3 trailing bytes");
    free(b.data);
}

static void test_wrong_image_size_rejected(void)
{
    bytes b = make_images(2, 27, 28);
    const char *path = write_file("27x28", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "image size expected 28x28, found 27x28");
    /* The expected size is a parameter. */
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 27, 28, &a), 0);
    CHECK_INT_EQ(a.rows, 27);
    idx_free(&a);
    free(b.data);
}

static void test_label_out_of_range_rejected(void)
{
    bytes b = make_labels(8);
    b.data[8 + 5] = 10;
    const char *path = write_file("label10", b.data, b.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), -1);
    CHECK(a.data == NULL);
    CHECK_STR_CONTAINS(dm_error(), "label at index 5 expected 0..9, found 10");
    b.data[8 + 5] = 9;
    path = write_file("label9", b.data, b.size);
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), 0);
    idx_free(&a);
    free(b.data);
}

static void test_empty_file_rejected(void)
{
    const char *path = write_file("empty", (const uint8_t *)"", 0);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "empty: file is empty");
    CHECK_STR_CONTAINS(dm_error(), "header of 16 bytes");

    bytes gz = gzip_bytes((const uint8_t *)"", 0);
    path = write_file("empty.gz", gz.data, gz.size);
    CHECK_INT_EQ(idx_read(path, IDX_LABELS, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "file is empty after gzip decompression");
    free(gz.data);
}

static void test_short_header_rejected(void)
{
    bytes b = make_images(1, 28, 28);
    idx_array a;

    const char *path = write_file("short10", b.data, 10);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "IDX images header expected 16 bytes, found 10");

    path = write_file("short3", b.data, 3);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "IDX images header expected 16 bytes, found 3");
    free(b.data);
}

static void test_multi_member_gzip_loads(void)
{
    bytes b = make_images(4, 28, 28);
    size_t split = 16 + 784 + 100;
    bytes gz = gzip_bytes(b.data, split);
    bytes rest = gzip_bytes(b.data + split, b.size - split);
    append(&gz, rest.data, rest.size);
    const char *path = write_file("multi.gz", gz.data, gz.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), 0);
    CHECK_INT_EQ(a.count, 4);
    CHECK(a.data != NULL);
    CHECK(bytes_equal(a.data, b.data + 16, 4 * 784));
    idx_free(&a);
    free(b.data);
    free(gz.data);
    free(rest.data);
}

static void test_corrupt_gzip_rejected(void)
{
    bytes b = make_images(4, 28, 28);
    bytes gz = gzip_bytes(b.data, b.size);
    idx_array a;

    const char *path = write_file("cut.gz", gz.data, gz.size - 20);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "gzip data is truncated");

    uint8_t junk[5] = {'j', 'u', 'n', 'k', '!'};
    append(&gz, junk, sizeof junk);
    path = write_file("junk.gz", gz.data, gz.size);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "5 bytes after the end of the gzip data");

    gz.data[gz.size - 5 - 6] ^= 0xff; /* inside the CRC-32 trailer */
    path = write_file("crc.gz", gz.data, gz.size - 5);
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "invalid gzip data");
    free(b.data);
    free(gz.data);
}

/* A valid header followed by more than 1 GiB of zeros, as 17 gzip members
 * of 64 MiB each, must fail on the size limit. */
static void test_gzip_bomb_rejected(void)
{
    const size_t chunk = (size_t)64 << 20;
    uint8_t *zeros = calloc(1, chunk);
    bytes header = make_images(0, 28, 28);
    put_be32(header.data + 4, 60000);
    memcpy(zeros, header.data, 16);
    bytes file = gzip_bytes(zeros, chunk);
    memset(zeros, 0, 16);
    bytes member = gzip_bytes(zeros, chunk);
    for (int i = 0; i < 16; i++)
        append(&file, member.data, member.size);
    const char *path = write_file("bomb.gz", file.data, file.size);
    idx_array a;
    CHECK_INT_EQ(idx_read(path, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "decompressed size expected at most 1073741824 bytes");
    free(zeros);
    free(header.data);
    free(file.data);
    free(member.data);
}

static void test_missing_file_rejected(void)
{
    idx_array a;
    CHECK_INT_EQ(idx_read("/nonexistent/train-images-idx3-ubyte.gz", IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "cannot open /nonexistent/train-images-idx3-ubyte.gz");
    CHECK_INT_EQ(idx_read(scratch_dir, IDX_IMAGES, 28, 28, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "found a directory");
}

static void test_parse_in_memory(void)
{
    bytes b = make_labels(3);
    idx_array a;
    CHECK_INT_EQ(idx_parse("memory", b.data, b.size, IDX_LABELS, 0, 0, &a), 0);
    CHECK_INT_EQ(a.count, 3);
    CHECK_INT_EQ(a.data[2], 2);
    idx_free(&a);
    CHECK_INT_EQ(idx_parse("memory", b.data, b.size - 1, IDX_LABELS, 0, 0, &a), -1);
    CHECK_STR_CONTAINS(dm_error(), "memory: IDX size expected 11 bytes");
    free(b.data);
}

/* A device never ends, so reading one whole would exhaust memory. */
static void test_device_rejected(void)
{
    idx_array a;
    CHECK(idx_read("/dev/zero", IDX_IMAGES, 28, 28, &a) != 0);
    CHECK_STR_CONTAINS(dm_error(), "regular");
}

int main(void)
{
    snprintf(scratch_dir, sizeof scratch_dir, "%s", check_tmpdir("idx"));
    RUN_TEST(test_images_raw_loads);
    RUN_TEST(test_images_gzip_loads);
    RUN_TEST(test_labels_raw_and_gzip_load);
    RUN_TEST(test_gzip_detected_by_content);
    RUN_TEST(test_double_gzip_rejected);
    RUN_TEST(test_labels_as_images_rejected);
    RUN_TEST(test_images_as_labels_rejected);
    RUN_TEST(test_non_byte_type_rejected);
    RUN_TEST(test_truncated_payload_rejected);
    RUN_TEST(test_trailing_bytes_rejected);
    RUN_TEST(test_wrong_image_size_rejected);
    RUN_TEST(test_label_out_of_range_rejected);
    RUN_TEST(test_empty_file_rejected);
    RUN_TEST(test_short_header_rejected);
    RUN_TEST(test_multi_member_gzip_loads);
    RUN_TEST(test_corrupt_gzip_rejected);
    RUN_TEST(test_gzip_bomb_rejected);
    RUN_TEST(test_missing_file_rejected);
    RUN_TEST(test_device_rejected);
    RUN_TEST(test_parse_in_memory);
    return check_finish();
}
