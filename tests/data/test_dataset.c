/* Tests for ds_ingest, ds_load and ds_fill_batch on small generated IDX files. */
#include "check.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/sha256.h"
#include "data/dataset.h"
#include "data/idx.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <zlib.h>

#define TRAIN_COUNT 50
#define TEST_COUNT 20
#define PIXELS (28 * 28)

static char scratch_dir[4096];

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint8_t pixel_value(uint32_t image, uint32_t pixel, uint32_t salt)
{
    return (uint8_t)(image * 31 + pixel * 7 + salt);
}

static uint8_t label_value(uint32_t index, uint32_t salt)
{
    return (uint8_t)((index + salt) % 10);
}

static void write_bytes(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

/* Writes DATA to DIR/NAME, gzip-compressed when GZIP is true. */
static void write_source(const char *dir, const char *name, const uint8_t *data, size_t size,
                         bool gzip)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/%s%s", dir, name, gzip ? ".gz" : "");
    if (!gzip) {
        write_bytes(path, data, size);
        return;
    }
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    size_t capacity = deflateBound(&zs, (uLong)size) + 64;
    uint8_t *out = malloc(capacity);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = out;
    zs.avail_out = (uInt)capacity;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    write_bytes(path, out, capacity - zs.avail_out);
    deflateEnd(&zs);
    free(out);
}

static void write_images(const char *dir, const char *name, uint32_t count, uint32_t salt,
                         bool gzip)
{
    size_t size = 16 + (size_t)count * PIXELS;
    uint8_t *b = malloc(size);
    put_be32(b, IDX_MAGIC_IMAGES);
    put_be32(b + 4, count);
    put_be32(b + 8, 28);
    put_be32(b + 12, 28);
    for (uint32_t i = 0; i < count; i++)
        for (uint32_t p = 0; p < PIXELS; p++)
            b[16 + (size_t)i * PIXELS + p] = pixel_value(i, p, salt);
    write_source(dir, name, b, size, gzip);
    free(b);
}

static void write_labels(const char *dir, const char *name, uint32_t count, uint32_t salt,
                         bool gzip)
{
    uint8_t *b = malloc(8 + (size_t)count);
    put_be32(b, IDX_MAGIC_LABELS);
    put_be32(b + 4, count);
    for (uint32_t i = 0; i < count; i++)
        b[8 + i] = label_value(i, salt);
    write_source(dir, name, b, 8 + (size_t)count, gzip);
    free(b);
}

/* Makes a source directory NAME with the four standard files. */
static const char *make_sources(const char *name, uint32_t train_count, uint32_t test_count,
                                uint32_t salt, bool gzip)
{
    static char dir[4200];
    snprintf(dir, sizeof dir, "%s/%s", scratch_dir, name);
    if (fs_mkdir_p(dir) != 0)
        exit(2);
    write_images(dir, "train-images-idx3-ubyte", train_count, salt, gzip);
    write_labels(dir, "train-labels-idx1-ubyte", train_count, salt, gzip);
    write_images(dir, "t10k-images-idx3-ubyte", test_count, salt + 1, gzip);
    write_labels(dir, "t10k-labels-idx1-ubyte", test_count, salt + 1, gzip);
    return dir;
}

static const char *make_root(const char *name)
{
    static char root[4200];
    snprintf(root, sizeof root, "%s/%s", scratch_dir, name);
    fs_remove_tree(root);
    return root;
}

static void dataset_file(const char *root, const char *name, char *out, size_t capacity)
{
    snprintf(out, capacity, "%s/datasets/fashion_mnist/%s", root, name);
}

/* Counts the entries of ROOT/datasets other than "fashion_mnist". */
static int count_stray_entries(const char *root)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/datasets", root);
    DIR *dir = opendir(path);
    if (dir == NULL)
        return 0;
    int stray = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *n = entry->d_name;
        if (strcmp(n, ".") == 0 || strcmp(n, "..") == 0 || strcmp(n, "fashion_mnist") == 0)
            continue;
        fprintf(stderr, "stray entry %s/%s\n", path, n);
        stray++;
    }
    closedir(dir);
    return stray;
}

static bool read_whole(const char *path, unsigned char **data, size_t *size)
{
    return fs_read_file(path, data, size) == 0;
}

static const char *const output_names[5] = {"train-images.u8", "train-labels.u8", "test-images.u8",
                                            "test-labels.u8", "manifest.json"};

static void test_ingest_writes_dataset(void)
{
    const char *src = make_sources("src-gz", TRAIN_COUNT, TEST_COUNT, 0, true);
    const char *root = make_root("root-write");
    ds_ingest_report report;
    char path[4200];
    unsigned char *data = NULL;
    size_t size = 0;

    CHECK_MSG(ds_ingest(src, root, &report) == 0, "%s", dm_error());
    CHECK_INT_EQ(report.train_count, TRAIN_COUNT);
    CHECK_INT_EQ(report.test_count, TEST_COUNT);
    CHECK_INT_EQ(report.rows, 28);
    CHECK_INT_EQ(report.cols, 28);
    CHECK_STR_CONTAINS(report.dataset_dir, "/root-write/datasets/fashion_mnist");
    CHECK_STR_CONTAINS(report.sources[0], "train-images-idx3-ubyte.gz");
    CHECK_STR_CONTAINS(report.sources[3], "t10k-labels-idx1-ubyte.gz");
    CHECK_INT_EQ(count_stray_entries(root), 0);

    dataset_file(root, "train-images.u8", path, sizeof path);
    CHECK(read_whole(path, &data, &size));
    CHECK_INT_EQ(size, TRAIN_COUNT * PIXELS);
    CHECK(data != NULL);
    CHECK_INT_EQ(data != NULL ? data[3 * PIXELS + 10] : -1, pixel_value(3, 10, 0));
    free(data);
    dataset_file(root, "test-labels.u8", path, sizeof path);
    CHECK(read_whole(path, &data, &size));
    CHECK_INT_EQ(size, TEST_COUNT);
    CHECK(data != NULL);
    CHECK_INT_EQ(data != NULL ? data[7] : -1, label_value(7, 1));
    free(data);
    dataset_file(root, "train-labels.u8", path, sizeof path);
    char labels_sha[SHA256_HEX_SIZE] = "";
    CHECK_INT_EQ(sha256_file_hex(path, labels_sha), 0);

    dataset_file(root, "manifest.json", path, sizeof path);
    CHECK(read_whole(path, &data, &size));
    cJSON *m = cJSON_Parse((const char *)data);
    free(data);
    CHECK(m != NULL);
    if (m == NULL)
        return;
    cJSON *format = cJSON_GetObjectItem(m, "format");
    CHECK(cJSON_IsString(format));
    CHECK(strcmp(cJSON_IsString(format) ? format->valuestring : "", DS_FORMAT_NAME) == 0);
    CHECK_INT_EQ(cJSON_GetObjectItem(m, "format_version")->valueint, DS_FORMAT_VERSION);
    CHECK_INT_EQ(cJSON_GetObjectItem(m, "num_classes")->valueint, 10);
    CHECK_INT_EQ(cJSON_GetObjectItem(m, "rows")->valueint, 28);
    CHECK_INT_EQ(cJSON_GetObjectItem(m, "cols")->valueint, 28);
    cJSON *names = cJSON_GetObjectItem(m, "class_names");
    CHECK_INT_EQ(cJSON_GetArraySize(names), 10);
    CHECK(strcmp(cJSON_GetArrayItem(names, 0)->valuestring, "T-shirt/top") == 0);
    CHECK(strcmp(cJSON_GetArrayItem(names, 9)->valuestring, "Ankle boot") == 0);
    cJSON *train = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "splits"), "train");
    CHECK_INT_EQ(cJSON_GetObjectItem(train, "count")->valueint, TRAIN_COUNT);
    cJSON *images = cJSON_GetObjectItem(train, "images");
    CHECK(strcmp(cJSON_GetObjectItem(images, "file")->valuestring, "train-images.u8") == 0);
    CHECK_INT_EQ(cJSON_GetObjectItem(images, "bytes")->valuedouble, TRAIN_COUNT * PIXELS);
    cJSON *labels = cJSON_GetObjectItem(train, "labels");
    CHECK(strcmp(cJSON_GetObjectItem(labels, "sha256")->valuestring, labels_sha) == 0);

    char source_sha[SHA256_HEX_SIZE] = "";
    snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", src);
    CHECK_INT_EQ(sha256_file_hex(path, source_sha), 0);
    cJSON *source = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "sources"), "test_images");
    CHECK(strcmp(cJSON_GetObjectItem(source, "sha256")->valuestring, source_sha) == 0);
    CHECK_STR_CONTAINS(cJSON_GetObjectItem(source, "path")->valuestring,
                       "t10k-images-idx3-ubyte.gz");
    cJSON_Delete(m);
}

static void test_load_round_trip(void)
{
    const char *src = make_sources("src-load", TRAIN_COUNT, TEST_COUNT, 5, true);
    const char *root = make_root("root-load");
    ds_dataset d;

    CHECK_MSG(ds_ingest(src, root, NULL) == 0, "%s", dm_error());
    CHECK_MSG(ds_load(root, &d) == 0, "%s", dm_error());
    CHECK_INT_EQ(d.train.count, TRAIN_COUNT);
    CHECK_INT_EQ(d.train.rows, 28);
    CHECK_INT_EQ(d.train.cols, 28);
    CHECK_INT_EQ(d.test.count, TEST_COUNT);
    bool images_match = d.train.images != NULL && d.test.images != NULL;
    for (uint32_t i = 0; images_match && i < TRAIN_COUNT; i++)
        for (uint32_t p = 0; p < PIXELS; p++)
            images_match = images_match && d.train.images[i * PIXELS + p] == pixel_value(i, p, 5);
    for (uint32_t i = 0; images_match && i < TEST_COUNT; i++)
        for (uint32_t p = 0; p < PIXELS; p++)
            images_match = images_match && d.test.images[i * PIXELS + p] == pixel_value(i, p, 6);
    CHECK(images_match);
    bool labels_match = d.train.labels != NULL && d.test.labels != NULL;
    for (uint32_t i = 0; labels_match && i < TRAIN_COUNT; i++)
        labels_match = d.train.labels[i] == label_value(i, 5);
    for (uint32_t i = 0; labels_match && i < TEST_COUNT; i++)
        labels_match = d.test.labels[i] == label_value(i, 6);
    CHECK(labels_match);
    ds_free(&d);
    CHECK(d.train.images == NULL);
    CHECK_INT_EQ(d.train.count, 0);
}

static void test_ingest_accepts_raw_names(void)
{
    const char *src = make_sources("src-raw", 12, 8, 0, false);
    const char *root = make_root("root-raw");
    ds_ingest_report report;
    ds_dataset d;

    CHECK_MSG(ds_ingest(src, root, &report) == 0, "%s", dm_error());
    CHECK_INT_EQ(report.train_count, 12);
    CHECK_INT_EQ(report.test_count, 8);
    CHECK(strstr(report.sources[0], ".gz") == NULL);
    CHECK_MSG(ds_load(root, &d) == 0, "%s", dm_error());
    CHECK_INT_EQ(d.test.count, 8);
    ds_free(&d);
}

static void test_ingest_prefers_gz_name(void)
{
    const char *src = make_sources("src-both", 12, 8, 0, true);
    char path[4200];
    /* A broken raw file next to the good .gz one must not be read. */
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte", src);
    write_bytes(path, (const uint8_t *)"junk", 4);
    const char *root = make_root("root-both");
    ds_ingest_report report;
    CHECK_MSG(ds_ingest(src, root, &report) == 0, "%s", dm_error());
    CHECK_STR_CONTAINS(report.sources[0], "train-images-idx3-ubyte.gz");
}

static void test_ingest_count_mismatch_rejected(void)
{
    const char *src = make_sources("src-mismatch", TRAIN_COUNT, TEST_COUNT, 0, true);
    write_labels(src, "train-labels-idx1-ubyte", TRAIN_COUNT - 1, 0, true);
    const char *root = make_root("root-mismatch");
    char path[4200];

    CHECK_INT_EQ(ds_ingest(src, root, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "train: 50 images but 49 labels");
    snprintf(path, sizeof path, "%s/datasets/fashion_mnist", root);
    CHECK(!fs_exists(path));
    CHECK_INT_EQ(count_stray_entries(root), 0);

    src = make_sources("src-mismatch-test", TRAIN_COUNT, TEST_COUNT, 0, true);
    write_images(src, "t10k-images-idx3-ubyte", TEST_COUNT + 1, 0, true);
    CHECK_INT_EQ(ds_ingest(src, root, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "test: 21 images but 20 labels");
}

static void test_ingest_missing_source_rejected(void)
{
    const char *src = make_sources("src-missing", 5, 5, 0, true);
    char path[4200];
    snprintf(path, sizeof path, "%s/t10k-labels-idx1-ubyte.gz", src);
    remove(path);
    const char *root = make_root("root-missing");

    CHECK_INT_EQ(ds_ingest(src, root, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "t10k-labels-idx1-ubyte.gz not found in");
    CHECK_STR_CONTAINS(dm_error(), "src-missing");
    snprintf(path, sizeof path, "%s/datasets/fashion_mnist", root);
    CHECK(!fs_exists(path));
}

/* A failed ingest must leave the previous dataset byte for byte as it was. */
static void test_failed_ingest_keeps_previous(void)
{
    const char *src = make_sources("src-good", TRAIN_COUNT, TEST_COUNT, 3, true);
    const char *root = make_root("root-keep");
    unsigned char *before[5] = {0};
    size_t before_size[5] = {0};
    char path[4200];

    CHECK_MSG(ds_ingest(src, root, NULL) == 0, "%s", dm_error());
    for (int i = 0; i < 5; i++) {
        dataset_file(root, output_names[i], path, sizeof path);
        CHECK(read_whole(path, &before[i], &before_size[i]));
    }

    const char *bad = make_sources("src-bad", TRAIN_COUNT + 10, TEST_COUNT, 9, true);
    char bad_labels[4200];
    snprintf(bad_labels, sizeof bad_labels, "%s/t10k-labels-idx1-ubyte.gz", bad);
    static const char not_gzip[] = "\x1f\x8b not really gzip";
    write_bytes(bad_labels, (const uint8_t *)not_gzip, sizeof not_gzip - 1);
    CHECK_INT_EQ(ds_ingest(bad, root, NULL), -1);
    CHECK_STR_CONTAINS(dm_error(), "t10k-labels-idx1-ubyte.gz");

    for (int i = 0; i < 5; i++) {
        unsigned char *after = NULL;
        size_t after_size = 0;
        dataset_file(root, output_names[i], path, sizeof path);
        CHECK(read_whole(path, &after, &after_size));
        CHECK_MSG(after_size == before_size[i] && after != NULL && before[i] != NULL &&
                      memcmp(after, before[i], after_size) == 0,
                  "%s changed", output_names[i]);
        free(after);
        free(before[i]);
    }
    CHECK_INT_EQ(count_stray_entries(root), 0);
    ds_dataset d;
    CHECK_MSG(ds_load(root, &d) == 0, "%s", dm_error());
    CHECK_INT_EQ(d.train.count, TRAIN_COUNT);
    ds_free(&d);
}

static void test_reingest_replaces_dataset(void)
{
    const char *root = make_root("root-replace");
    const char *first = make_sources("src-first", 10, 4, 0, true);
    CHECK_MSG(ds_ingest(first, root, NULL) == 0, "%s", dm_error());
    const char *second = make_sources("src-second", 30, 6, 2, true);
    CHECK_MSG(ds_ingest(second, root, NULL) == 0, "%s", dm_error());
    CHECK_INT_EQ(count_stray_entries(root), 0);

    ds_dataset d;
    CHECK_MSG(ds_load(root, &d) == 0, "%s", dm_error());
    CHECK_INT_EQ(d.train.count, 30);
    CHECK_INT_EQ(d.test.count, 6);
    CHECK(d.train.images != NULL);
    CHECK_INT_EQ(d.train.images != NULL ? d.train.images[PIXELS + 1] : -1, pixel_value(1, 1, 2));
    ds_free(&d);
}

static void test_load_detects_flipped_byte(void)
{
    const char *src = make_sources("src-flip", TRAIN_COUNT, TEST_COUNT, 0, true);
    const char *root = make_root("root-flip");
    char path[4200];
    unsigned char *data = NULL;
    size_t size = 0;

    CHECK_MSG(ds_ingest(src, root, NULL) == 0, "%s", dm_error());
    dataset_file(root, "train-images.u8", path, sizeof path);
    CHECK(read_whole(path, &data, &size));
    if (data == NULL)
        return;
    data[size / 2] ^= 0x01;
    write_bytes(path, data, size);
    free(data);

    ds_dataset d;
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "train-images.u8: SHA-256 expected");
    CHECK_STR_CONTAINS(dm_error(), "run `distml ingest` again");
    CHECK(d.train.images == NULL);
    CHECK(d.test.images == NULL);
}

static void test_load_detects_truncated_file(void)
{
    const char *src = make_sources("src-trunc", TRAIN_COUNT, TEST_COUNT, 0, true);
    const char *root = make_root("root-trunc");
    char path[4200];
    unsigned char *data = NULL;
    size_t size = 0;

    CHECK_MSG(ds_ingest(src, root, NULL) == 0, "%s", dm_error());
    dataset_file(root, "test-labels.u8", path, sizeof path);
    CHECK(read_whole(path, &data, &size));
    write_bytes(path, data, size - 1);
    free(data);

    ds_dataset d;
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "test-labels.u8: size expected 20 bytes, found 19");
    CHECK_STR_CONTAINS(dm_error(), "run `distml ingest` again");
}

static void test_load_rejects_bad_manifest(void)
{
    const char *src = make_sources("src-manifest", 10, 4, 0, true);
    const char *root = make_root("root-manifest");
    char path[4200];
    unsigned char *text = NULL;
    size_t size = 0;
    ds_dataset d;

    CHECK_MSG(ds_ingest(src, root, NULL) == 0, "%s", dm_error());
    dataset_file(root, "manifest.json", path, sizeof path);
    CHECK(read_whole(path, &text, &size));
    if (text == NULL)
        return;

    /* A manifest that names a file outside the dataset directory. */
    cJSON *m = cJSON_Parse((const char *)text);
    cJSON *train = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "splits"), "train");
    cJSON *images = cJSON_GetObjectItem(train, "images");
    cJSON_ReplaceItemInObject(images, "file", cJSON_CreateString("../../escape.u8"));
    char *edited = cJSON_Print(m);
    write_bytes(path, (const uint8_t *)edited, strlen(edited));
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "file expected \"train-images.u8\", found \"../../escape.u8\"");
    cJSON_free(edited);
    cJSON_Delete(m);

    /* A count that disagrees with the recorded sizes. */
    m = cJSON_Parse((const char *)text);
    cJSON *test = cJSON_GetObjectItem(cJSON_GetObjectItem(m, "splits"), "test");
    cJSON_ReplaceItemInObject(test, "count", cJSON_CreateNumber(5));
    edited = cJSON_Print(m);
    write_bytes(path, (const uint8_t *)edited, strlen(edited));
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "test-images.u8 size expected 3920 bytes from the counts");
    cJSON_free(edited);
    cJSON_Delete(m);

    write_bytes(path, text, size / 2);
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "manifest.json: invalid JSON");

    remove(path);
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "manifest.json is missing");
    free(text);
}

static void test_load_missing_dataset(void)
{
    const char *root = make_root("root-none");
    ds_dataset d;
    CHECK_INT_EQ(ds_load(root, &d), -1);
    CHECK_STR_CONTAINS(dm_error(), "no prepared dataset at");
    CHECK_STR_CONTAINS(dm_error(), "run `distml ingest` first");
}

static void test_fill_batch_scales_and_gathers(void)
{
    enum { COUNT = 4 };
    uint8_t images[COUNT * PIXELS];
    uint8_t labels[COUNT] = {3, 1, 4, 9};
    for (int i = 0; i < COUNT * PIXELS; i++)
        images[i] = (uint8_t)(i * 13);
    images[2 * PIXELS] = 255;
    images[2 * PIXELS + 1] = 0;
    ds_split split = {COUNT, 28, 28, images, labels};
    uint32_t indices[3] = {2, 0, 2};
    float *x = malloc(3 * PIXELS * sizeof *x);
    int32_t y[3] = {-1, -1, -1};

    ds_fill_batch(&split, indices, 3, x, y);
    CHECK(x[0] == 1.0f);
    CHECK(x[1] == 0.0f);
    CHECK(x[PIXELS + 7] == (float)images[7] / 255.0f);
    CHECK(x[2 * PIXELS + 100] == (float)images[2 * PIXELS + 100] / 255.0f);
    bool in_range = true;
    for (int i = 0; i < 3 * PIXELS; i++)
        in_range = in_range && x[i] >= 0.0f && x[i] <= 1.0f;
    CHECK(in_range);
    CHECK_INT_EQ(y[0], 4);
    CHECK_INT_EQ(y[1], 3);
    CHECK_INT_EQ(y[2], 4);

    uint32_t one = 3;
    ds_fill_batch(&split, &one, 1, x, NULL);
    CHECK(x[5] == (float)images[3 * PIXELS + 5] / 255.0f);
    free(x);
}

static void test_default_data_root(void)
{
    unsetenv("DISTML_DATA_ROOT");
    CHECK(strcmp(ds_default_data_root(), "./distml-data") == 0);
    setenv("DISTML_DATA_ROOT", "", 1);
    CHECK(strcmp(ds_default_data_root(), "./distml-data") == 0);
    setenv("DISTML_DATA_ROOT", "/srv/distml", 1);
    CHECK(strcmp(ds_default_data_root(), "/srv/distml") == 0);
    unsetenv("DISTML_DATA_ROOT");

    char dir[256];
    CHECK_INT_EQ(ds_dataset_dir("/srv/distml/", dir, sizeof dir), 0);
    CHECK(strcmp(dir, "/srv/distml/datasets/fashion_mnist") == 0);
}

static void test_class_names(void)
{
    CHECK(strcmp(ds_class_names[0], "T-shirt/top") == 0);
    CHECK(strcmp(ds_class_names[1], "Trouser") == 0);
    CHECK(strcmp(ds_class_names[5], "Sandal") == 0);
    CHECK(strcmp(ds_class_names[9], "Ankle boot") == 0);
}

int main(void)
{
    snprintf(scratch_dir, sizeof scratch_dir, "%s", check_tmpdir("dataset"));
    RUN_TEST(test_ingest_writes_dataset);
    RUN_TEST(test_load_round_trip);
    RUN_TEST(test_ingest_accepts_raw_names);
    RUN_TEST(test_ingest_prefers_gz_name);
    RUN_TEST(test_ingest_count_mismatch_rejected);
    RUN_TEST(test_ingest_missing_source_rejected);
    RUN_TEST(test_failed_ingest_keeps_previous);
    RUN_TEST(test_reingest_replaces_dataset);
    RUN_TEST(test_load_detects_flipped_byte);
    RUN_TEST(test_load_detects_truncated_file);
    RUN_TEST(test_load_rejects_bad_manifest);
    RUN_TEST(test_load_missing_dataset);
    RUN_TEST(test_fill_batch_scales_and_gathers);
    RUN_TEST(test_default_data_root);
    RUN_TEST(test_class_names);
    return check_finish();
}
