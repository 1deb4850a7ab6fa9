/*
 * safetensors writer and reader: round trip, the exact byte layout of a tiny
 * file, and rejection of malformed headers. Also writes sample.safetensors
 * and prints "sample: <path>" for test_safetensors_layout.py to check with
 * an independent reader.
 */
#include "base/error.h"
#include "base/fsutil.h"
#include "check.h"
#include "model/safetensors.h"

#include <stdint.h>

static char tmp[4096];

static void path_in_tmp(char *out, size_t capacity, const char *name)
{
    if (fs_join(out, capacity, tmp, name) != 0) {
        fprintf(stderr, "%s\n", dm_error());
        exit(2);
    }
}

/* Write the 8-byte length of HEADER, HEADER itself and DATA_SIZE bytes of
 * data (0x11 each) to PATH. */
static void write_raw(const char *path, const char *header, size_t header_len, size_t data_size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        perror(path);
        exit(2);
    }
    unsigned char length[8];
    for (int i = 0; i < 8; i++)
        length[i] = (unsigned char)((uint64_t)header_len >> (8 * i));
    fwrite(length, 1, 8, f);
    fwrite(header, 1, header_len, f);
    for (size_t i = 0; i < data_size; i++)
        fputc(0x11, f);
    fclose(f);
}

static void test_round_trip(void)
{
    float kernel[6] = {0.5f, -1.25f, 3.0f, 1e-8f, -0.0f, 65504.0f};
    float bias[3] = {0.1f, 0.2f, 0.3f};
    int64_t counts[2] = {-7, INT64_MAX};
    float scalar = 42.0f;
    st_tensor in[] = {
        {.name = "dense/kernel", .ndim = 2, .shape = {2, 3}, .data = kernel},
        {.name = "dense/bias", .ndim = 1, .shape = {3}, .data = bias},
        {.name = "empty", .ndim = 2, .shape = {0, 4}, .data = NULL},
        {.name = "counts", .dtype = ST_I64, .ndim = 1, .shape = {2}, .data_i64 = counts},
        {.name = "scalar", .ndim = 0, .data = &scalar},
    };
    const char *metadata[] = {"format", "pt", "note", "quote \" and \\ and \n", NULL};
    char path[4096];
    path_in_tmp(path, sizeof path, "round_trip.safetensors");

    CHECK_INT_EQ(st_write(path, in, 5, metadata), 0);

    st_tensor *out = NULL;
    size_t count = 0;
    char **kv = NULL;
    int rc = st_read_with_metadata(path, &out, &count, &kv);
    CHECK_MSG(rc == 0, "%s", dm_error());
    if (rc != 0)
        return;
    CHECK_INT_EQ(count, 5);
    for (size_t i = 0; i < 5 && i < count; i++) {
        CHECK_MSG(strcmp(out[i].name, in[i].name) == 0, "tensor %zu is '%s', expected '%s'", i,
                  out[i].name, in[i].name);
        CHECK_INT_EQ(out[i].dtype, in[i].dtype);
        CHECK_INT_EQ(out[i].ndim, in[i].ndim);
        for (int d = 0; d < in[i].ndim; d++)
            CHECK_INT_EQ(out[i].shape[d], in[i].shape[d]);
        int64_t bytes = st_element_count(&in[i]) * (in[i].dtype == ST_I64 ? 8 : 4);
        if (bytes > 0)
            CHECK_MSG(memcmp(out[i].data, in[i].data, (size_t)bytes) == 0, "data of '%s' differs",
                      in[i].name);
    }
    size_t kv_count = 0;
    while (kv != NULL && kv[kv_count] != NULL)
        kv_count++;
    CHECK_INT_EQ(kv_count, 4);
    for (size_t i = 0; i < kv_count && i < 4; i++)
        CHECK_MSG(strcmp(kv[i], metadata[i]) == 0, "metadata[%zu] is '%s', expected '%s'", i, kv[i],
                  metadata[i]);

    const st_tensor *bias_out = st_find(out, count, "dense/bias");
    CHECK(bias_out != NULL);
    if (bias_out != NULL)
        CHECK(bias_out->data[2] == 0.3f);
    CHECK(st_find(out, count, "missing") == NULL);
    st_free(out, count);
    st_metadata_free(kv);
}

static void test_byte_layout(void)
{
    float values[2] = {1.0f, -2.0f};
    st_tensor t = {.name = "a", .ndim = 1, .shape = {2}, .data = values};
    char path[4096];
    path_in_tmp(path, sizeof path, "layout.safetensors");
    CHECK_INT_EQ(st_write(path, &t, 1, NULL), 0);

    /* 54 bytes of JSON padded with 2 spaces to 56 = 0x38. */
    static const char header[] = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                                 "\"data_offsets\":[0,8]}}  ";
    unsigned char expected[8 + 56 + 8] = {0x38, 0, 0, 0, 0, 0, 0, 0};
    memcpy(expected + 8, header, 56);
    static const unsigned char data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0xc0};
    memcpy(expected + 64, data, 8);

    unsigned char *actual = NULL;
    size_t size = 0;
    CHECK_INT_EQ(fs_read_file(path, &actual, &size), 0);
    CHECK_INT_EQ(size, sizeof expected);
    if (actual != NULL && size == sizeof expected) {
        CHECK(memcmp(actual, expected, sizeof expected) == 0);
        if (memcmp(actual, expected, size) != 0)
            fprintf(stderr, "layout.safetensors header: %.*s\n", 56, (const char *)actual + 8);
    }
    free(actual);
}

static void test_empty_file(void)
{
    char path[4096];
    path_in_tmp(path, sizeof path, "empty.safetensors");
    CHECK_INT_EQ(st_write(path, NULL, 0, NULL), 0);
    st_tensor *out = NULL;
    size_t count = 99;
    CHECK_INT_EQ(st_read(path, &out, &count), 0);
    CHECK_INT_EQ(count, 0);
    st_free(out, count);
}

typedef struct {
    const char *label;
    const char *header;   /* JSON header, written without padding */
    size_t data_size;     /* bytes of data after the header */
    const char *expected; /* substring of the error, besides the path */
} malformed_case;

static void test_malformed_headers(void)
{
    static const malformed_case cases[] = {
        {"bad json", "{\"a\":", 0, "not valid JSON"},
        {"not object", "[1,2]   ", 0, "does not start with '{'"},
        {"trailing bytes", "{}  x   ", 0, "unexpected bytes"},
        {"entry not object", "{\"a\":5}", 0, "tensor 'a' is not a JSON object"},
        {"unknown dtype", "{\"w\":{\"dtype\":\"Q8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
         "tensor 'w' has unknown dtype 'Q8'"},
        {"unsupported dtype", "{\"w\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2,
         "tensor 'w' has dtype F16"},
        {"missing dtype", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "tensor 'w': dtype is missing"},
        {"missing shape", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
         "tensor 'w': shape is missing"},
        {"negative dim", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
         "tensor 'w': shape[0] is not a non-negative integer"},
        {"too many dims",
         "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "tensor 'w' has 9 dimensions"},
        {"missing offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
         "tensor 'w': data_offsets is missing"},
        {"fractional offset", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.5]}}",
         4, "tensor 'w': data_offsets are not non-negative integers"},
        {"reversed offsets", "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4,
         "tensor 'w': data_offsets [4, 0] end before they begin"},
        {"shape mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         "tensor 'w': shape needs 12 bytes"},
        {"i64 shape mismatch", "{\"n\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, "tensor 'n': shape needs 16 bytes"},
        {"out of bounds", "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
         "tensor 'w': data_offsets [0, 16] run past the 8-byte data section"},
        {"overlap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensor 'b': data_offsets [4, 12] overlap"},
        {"gap",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
         12, "tensor 'b': data_offsets [8, 12] leave a gap"},
        {"not starting at zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "tensor 'a': data_offsets [4, 8] leave a gap after byte 0"},
        {"uncovered tail", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         "tensors cover 4 bytes but the data section is 8 bytes"},
        {"duplicate name",
         "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor name 'a'"},
        {"metadata not object", "{\"__metadata__\":[1]}", 0, "__metadata__ is not a JSON object"},
        {"metadata value", "{\"__metadata__\":{\"epoch\":3}}", 0,
         "__metadata__ value of 'epoch' is not a string"},
    };
    char path[4096];
    path_in_tmp(path, sizeof path, "malformed.safetensors");

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const malformed_case *c = &cases[i];
        st_tensor *out = NULL;
        size_t count = 0;
        write_raw(path, c->header, strlen(c->header), c->data_size);
        dm_error_clear();
        int rc = st_read(path, &out, &count);
        CHECK_MSG(rc == -1, "case '%s' was accepted", c->label);
        if (rc == 0) {
            st_free(out, count);
            continue;
        }
        CHECK_MSG(strstr(dm_error(), path) != NULL, "case '%s': '%s' does not name the file",
                  c->label, dm_error());
        CHECK_MSG(strstr(dm_error(), c->expected) != NULL, "case '%s': '%s' does not contain '%s'",
                  c->label, dm_error(), c->expected);
    }
}

static void test_malformed_length(void)
{
    char path[4096];
    st_tensor *out = NULL;
    size_t count = 0;
    path_in_tmp(path, sizeof path, "short.safetensors");

    FILE *f = fopen(path, "wb");
    fwrite("\x02\x00\x00", 1, 3, f);
    fclose(f);
    CHECK_INT_EQ(st_read(path, &out, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), path);
    CHECK_STR_CONTAINS(dm_error(), "too short for the 8-byte header length");

    /* The length field promises 100 header bytes, but only 2 follow. */
    f = fopen(path, "wb");
    fwrite("\x64\x00\x00\x00\x00\x00\x00\x00{}", 1, 10, f);
    fclose(f);
    CHECK_INT_EQ(st_read(path, &out, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), path);
    CHECK_STR_CONTAINS(dm_error(), "header length 100 exceeds the 2 bytes");

    /* A huge length must be rejected before anything is allocated. */
    f = fopen(path, "wb");
    fwrite("\xff\xff\xff\xff\xff\xff\xff\x7f{}", 1, 10, f);
    fclose(f);
    CHECK_INT_EQ(st_read(path, &out, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), "exceeds");

    write_raw(path, "{\"a\0\":1}", 8, 0);
    CHECK_INT_EQ(st_read(path, &out, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), "NUL byte");

    CHECK_INT_EQ(st_read("/nonexistent/x.safetensors", &out, &count), -1);
    CHECK_STR_CONTAINS(dm_error(), "cannot open /nonexistent/x.safetensors");
}

static void test_write_rejects(void)
{
    float v[1] = {1.0f};
    char path[4096];
    path_in_tmp(path, sizeof path, "rejected.safetensors");

    st_tensor duplicate[] = {{.name = "w", .ndim = 1, .shape = {1}, .data = v},
                             {.name = "w", .ndim = 1, .shape = {1}, .data = v}};
    CHECK_INT_EQ(st_write(path, duplicate, 2, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "duplicate tensor name 'w'");

    st_tensor unnamed = {.ndim = 1, .shape = {1}, .data = v};
    CHECK_INT_EQ(st_write(path, &unnamed, 1, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "empty name");

    st_tensor reserved = {.name = "__metadata__", .ndim = 1, .shape = {1}, .data = v};
    CHECK_INT_EQ(st_write(path, &reserved, 1, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "reserved");

    st_tensor no_data = {.name = "w", .ndim = 1, .shape = {1}};
    CHECK_INT_EQ(st_write(path, &no_data, 1, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "tensor 'w' has no data");

    st_tensor negative = {.name = "w", .ndim = 1, .shape = {-2}, .data = v};
    CHECK_INT_EQ(st_write(path, &negative, 1, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "negative or too large shape");

    const char *odd[] = {"key", NULL};
    st_tensor ok = {.name = "w", .ndim = 1, .shape = {1}, .data = v};
    CHECK_INT_EQ(st_write(path, &ok, 1, odd), -1);
    CHECK_STR_CONTAINS(dm_error(), "metadata key 'key' has no value");

    CHECK(!fs_exists(path));
}

/* The file that test_safetensors_layout.py reads with json and struct. */
static void test_write_sample(void)
{
    float weight[6];
    for (int i = 0; i < 6; i++)
        weight[i] = (float)i * 0.5f - 1.0f;
    int64_t ids[4] = {-1, 0, (int64_t)1 << 40, INT64_MAX};
    st_tensor tensors[] = {
        {.name = "weight", .ndim = 2, .shape = {2, 3}, .data = weight},
        {.name = "ids", .dtype = ST_I64, .ndim = 1, .shape = {4}, .data_i64 = ids},
        {.name = "empty", .ndim = 1, .shape = {0}},
    };
    const char *metadata[] = {"format", "pt", "note", "quote \" backslash \\", NULL};
    char path[4096];
    path_in_tmp(path, sizeof path, "sample.safetensors");
    int rc = st_write(path, tensors, 3, metadata);
    CHECK_MSG(rc == 0, "%s", dm_error());
    printf("sample: %s\n", path);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "%s", check_tmpdir("safetensors"));
    RUN_TEST(test_round_trip);
    RUN_TEST(test_byte_layout);
    RUN_TEST(test_empty_file);
    RUN_TEST(test_malformed_headers);
    RUN_TEST(test_malformed_length);
    RUN_TEST(test_write_rejects);
    RUN_TEST(test_write_sample);
    return check_finish();
}
