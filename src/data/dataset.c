/*
 * Ingest and load of the prepared Fashion-MNIST dataset. The .u8 files hold
 * the IDX payloads without headers, so loading only reads and hashes them.
 * All format validation happens once, at ingest.
 */
#include "data/dataset.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "base/sha256.h"
#include "data/idx.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const ds_class_names[DS_NUM_CLASSES] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

#define DS_MANIFEST_NAME "manifest.json"
#define DS_RERUN_HINT "run `distml ingest` again"

/* One of the four files: where it comes from and where it goes. */
typedef struct {
    const char *split; /* "train" or "test" */
    idx_kind kind;
    const char *source_name; /* standard IDX name without .gz */
    const char *output_name; /* file in the dataset directory */
    const char *source_key;  /* key under "sources" in the manifest */
} ds_file_spec;

enum { DS_TRAIN_IMAGES, DS_TRAIN_LABELS, DS_TEST_IMAGES, DS_TEST_LABELS, DS_FILE_COUNT };

static const ds_file_spec ds_files[DS_FILE_COUNT] = {
    {"train", IDX_IMAGES, "train-images-idx3-ubyte", "train-images.u8", "train_images"},
    {"train", IDX_LABELS, "train-labels-idx1-ubyte", "train-labels.u8", "train_labels"},
    {"test", IDX_IMAGES, "t10k-images-idx3-ubyte", "test-images.u8", "test_images"},
    {"test", IDX_LABELS, "t10k-labels-idx1-ubyte", "test-labels.u8", "test_labels"},
};

/* A validated source file and the facts the manifest records about it. */
typedef struct {
    char path[DS_PATH_MAX];
    size_t source_bytes;
    char source_sha256[SHA256_HEX_SIZE];
    idx_array array;
    size_t output_bytes;
    char output_sha256[SHA256_HEX_SIZE];
} ds_ingest_file;

const char *ds_default_data_root(void)
{
    const char *root = getenv(DS_DATA_ROOT_ENV);
    return root != NULL && root[0] != '\0' ? root : DS_DEFAULT_DATA_ROOT;
}

int ds_dataset_dir(const char *data_root, char *out, size_t capacity)
{
    return fs_join(out, capacity, data_root, DS_DATASET_SUBDIR);
}

/* Finds NAME.gz in DIR, or NAME when the .gz file is absent. */
static int find_source(const char *dir, const char *name, char *out, size_t capacity)
{
    char gz_name[256];
    snprintf(gz_name, sizeof gz_name, "%s.gz", name);
    if (fs_join(out, capacity, dir, gz_name) != 0)
        return -1;
    if (fs_exists(out))
        return 0;
    if (fs_join(out, capacity, dir, name) != 0)
        return -1;
    if (fs_exists(out))
        return 0;
    return dm_fail("%s not found in %s (nor %s without .gz); pass the directory that contains the "
                   "Fashion-MNIST IDX files with --source_dir",
                   gz_name, dir, name);
}

/* Reads, hashes and validates one source file into FILE. */
static int read_source(const char *source_dir, const ds_file_spec *spec, ds_ingest_file *file)
{
    unsigned char *bytes = NULL;
    struct stat st;

    if (find_source(source_dir, spec->source_name, file->path, sizeof file->path) != 0)
        return -1;
    if (stat(file->path, &st) != 0)
        return dm_fail("cannot open %s: %s", file->path, strerror(errno));
    if ((uint64_t)st.st_size > IDX_MAX_BYTES)
        return dm_fail("%s: file size expected at most %llu bytes (1 GiB), found %lld", file->path,
                       (unsigned long long)IDX_MAX_BYTES, (long long)st.st_size);
    if (fs_read_file(file->path, &bytes, &file->source_bytes) != 0)
        return -1;
    int rc = sha256_hex(bytes, file->source_bytes, file->source_sha256);
    if (rc == 0)
        rc = idx_parse(file->path, bytes, file->source_bytes, spec->kind, DS_ROWS, DS_COLS,
                       &file->array);
    free(bytes);
    return rc;
}

static int check_split_counts(const ds_ingest_file *images, const ds_ingest_file *labels,
                              const char *split)
{
    if (images->array.count != labels->array.count)
        return dm_fail("%s: %u images but %u labels (%s, %s)", split, images->array.count,
                       labels->array.count, images->path, labels->path);
    if (images->array.count == 0)
        return dm_fail("%s: %s contains 0 images", split, images->path);
    return 0;
}

static cJSON *manifest_file_entry(const char *name, size_t bytes, const char *sha256)
{
    cJSON *entry = cJSON_CreateObject();
    if (entry == NULL)
        return NULL;
    if (cJSON_AddStringToObject(entry, "file", name) == NULL ||
        cJSON_AddNumberToObject(entry, "bytes", (double)bytes) == NULL ||
        cJSON_AddStringToObject(entry, "sha256", sha256) == NULL) {
        cJSON_Delete(entry);
        return NULL;
    }
    return entry;
}

/* Adds "train"/"test" with count and the images and labels entries to SPLITS. */
static bool manifest_add_split(cJSON *splits, const char *split, const ds_ingest_file *images,
                               const ds_ingest_file *labels, const ds_file_spec *image_spec,
                               const ds_file_spec *label_spec)
{
    cJSON *obj = cJSON_AddObjectToObject(splits, split);
    if (obj == NULL || cJSON_AddNumberToObject(obj, "count", images->array.count) == NULL)
        return false;
    cJSON *image_entry =
        manifest_file_entry(image_spec->output_name, images->output_bytes, images->output_sha256);
    if (image_entry == NULL)
        return false;
    cJSON_AddItemToObject(obj, "images", image_entry);
    cJSON *label_entry =
        manifest_file_entry(label_spec->output_name, labels->output_bytes, labels->output_sha256);
    if (label_entry == NULL)
        return false;
    cJSON_AddItemToObject(obj, "labels", label_entry);
    return true;
}

static char *manifest_build(const ds_ingest_file files[DS_FILE_COUNT])
{
    cJSON *root = cJSON_CreateObject();
    bool ok = root != NULL;

    ok = ok && cJSON_AddStringToObject(root, "format", DS_FORMAT_NAME) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "format_version", DS_FORMAT_VERSION) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "rows", DS_ROWS) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "cols", DS_COLS) != NULL;
    ok = ok && cJSON_AddNumberToObject(root, "num_classes", DS_NUM_CLASSES) != NULL;
    if (ok) {
        cJSON *names = cJSON_CreateStringArray(ds_class_names, DS_NUM_CLASSES);
        ok = names != NULL;
        if (ok)
            cJSON_AddItemToObject(root, "class_names", names);
    }
    cJSON *splits = ok ? cJSON_AddObjectToObject(root, "splits") : NULL;
    ok = ok && splits != NULL;
    ok = ok && manifest_add_split(splits, "train", &files[DS_TRAIN_IMAGES], &files[DS_TRAIN_LABELS],
                                  &ds_files[DS_TRAIN_IMAGES], &ds_files[DS_TRAIN_LABELS]);
    ok = ok && manifest_add_split(splits, "test", &files[DS_TEST_IMAGES], &files[DS_TEST_LABELS],
                                  &ds_files[DS_TEST_IMAGES], &ds_files[DS_TEST_LABELS]);
    cJSON *sources = ok ? cJSON_AddObjectToObject(root, "sources") : NULL;
    ok = ok && sources != NULL;
    for (int i = 0; ok && i < DS_FILE_COUNT; i++) {
        cJSON *entry = cJSON_CreateObject();
        ok = entry != NULL && cJSON_AddStringToObject(entry, "path", files[i].path) != NULL &&
             cJSON_AddNumberToObject(entry, "bytes", (double)files[i].source_bytes) != NULL &&
             cJSON_AddStringToObject(entry, "sha256", files[i].source_sha256) != NULL;
        if (entry != NULL)
            cJSON_AddItemToObject(sources, ds_files[i].source_key, entry);
    }

    char *text = ok ? cJSON_Print(root) : NULL;
    cJSON_Delete(root);
    if (text == NULL)
        dm_fail("out of memory building %s", DS_MANIFEST_NAME);
    return text;
}

/* Writes the four payloads and the manifest into TEMP_DIR. */
static int write_dataset(const char *temp_dir, ds_ingest_file files[DS_FILE_COUNT])
{
    char path[DS_PATH_MAX];

    for (int i = 0; i < DS_FILE_COUNT; i++) {
        const idx_array *a = &files[i].array;
        size_t bytes = (size_t)a->count * a->rows * a->cols;
        if (fs_join(path, sizeof path, temp_dir, ds_files[i].output_name) != 0)
            return -1;
        if (fs_write_file_atomic(path, a->data, bytes) != 0)
            return -1;
        if (sha256_hex(a->data, bytes, files[i].output_sha256) != 0)
            return -1;
        files[i].output_bytes = bytes;
    }

    char *manifest = manifest_build(files);
    if (manifest == NULL)
        return -1;
    int rc = fs_join(path, sizeof path, temp_dir, DS_MANIFEST_NAME);
    if (rc == 0)
        rc = fs_write_file_atomic(path, manifest, strlen(manifest));
    cJSON_free(manifest);
    return rc;
}

/* Writes the dataset into a temporary sibling of its final directory and
 * renames it into place. On failure the temporary directory is removed.
 * NOTE: a crash leaves fashion_mnist.tmp.<pid> (or .old.<pid>) behind. ds_load
 * ignores it, and only an ingest that runs under the same pid removes it. */
static int commit_dataset(const char *data_root, ds_ingest_file files[DS_FILE_COUNT],
                          char *final_dir, size_t capacity)
{
    char parent[DS_PATH_MAX];
    char temp_dir[DS_PATH_MAX];

    if (ds_dataset_dir(data_root, final_dir, capacity) != 0)
        return -1;
    if (fs_join(parent, sizeof parent, data_root, "datasets") != 0)
        return -1;
    if (fs_mkdir_p(parent) != 0)
        return -1;
    if (fs_temp_dir(final_dir, temp_dir, sizeof temp_dir) != 0)
        return -1;
    if (write_dataset(temp_dir, files) == 0 && fs_commit_dir(temp_dir, final_dir, true) == 0)
        return 0;

    /* Keep the first error, not one from the cleanup. */
    char message[1024];
    snprintf(message, sizeof message, "%s", dm_error());
    if (fs_remove_tree(temp_dir) != 0)
        DM_WARN("cannot remove the temporary dataset directory %s: %s", temp_dir, dm_error());
    return dm_fail("%s", message);
}

int ds_ingest(const char *source_dir, const char *data_root, ds_ingest_report *report)
{
    ds_ingest_file *files = dm_calloc(DS_FILE_COUNT, sizeof *files);
    char final_dir[DS_PATH_MAX];
    int rc = -1;

    if (files == NULL)
        return -1;
    for (int i = 0; i < DS_FILE_COUNT; i++) {
        if (read_source(source_dir, &ds_files[i], &files[i]) != 0)
            goto out;
    }
    if (check_split_counts(&files[DS_TRAIN_IMAGES], &files[DS_TRAIN_LABELS], "train") != 0 ||
        check_split_counts(&files[DS_TEST_IMAGES], &files[DS_TEST_LABELS], "test") != 0)
        goto out;
    if (commit_dataset(data_root, files, final_dir, sizeof final_dir) != 0)
        goto out;

    if (report != NULL) {
        memset(report, 0, sizeof *report);
        report->train_count = files[DS_TRAIN_IMAGES].array.count;
        report->test_count = files[DS_TEST_IMAGES].array.count;
        report->rows = DS_ROWS;
        report->cols = DS_COLS;
        snprintf(report->dataset_dir, sizeof report->dataset_dir, "%s", final_dir);
        for (int i = 0; i < DS_FILE_COUNT; i++)
            snprintf(report->sources[i], sizeof report->sources[i], "%s", files[i].path);
    }
    rc = 0;
out:
    for (int i = 0; i < DS_FILE_COUNT; i++)
        idx_free(&files[i].array);
    free(files);
    return rc;
}

/* Reads a non-negative integer member KEY of OBJ that is at most MAX. */
static int json_get_uint(const cJSON *obj, const char *key, double max, const char *where,
                         uint64_t *out)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsNumber(item))
        return dm_fail("%s: \"%s\" expected a number, found %s; " DS_RERUN_HINT, where, key,
                       item == NULL ? "nothing" : "another JSON type");
    double v = item->valuedouble;
    if (v < 0 || v > max || v != (double)(uint64_t)v)
        return dm_fail("%s: \"%s\" expected an integer in 0..%.0f, found %g; " DS_RERUN_HINT, where,
                       key, max, v);
    *out = (uint64_t)v;
    return 0;
}

static const char *json_get_string(const cJSON *obj, const char *key, const char *where)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(item) || item->valuestring == NULL) {
        dm_fail("%s: \"%s\" expected a string; " DS_RERUN_HINT, where, key);
        return NULL;
    }
    return item->valuestring;
}

/* Reads one dataset file named by ENTRY, checking it is EXPECTED_BYTES long
 * and matches the manifest's size and SHA-256. *DATA is malloc'd. */
static int load_file(const char *dataset_dir, const char *manifest_path, const cJSON *entry,
                     const char *expected_name, uint64_t expected_bytes, uint8_t **data)
{
    char path[DS_PATH_MAX];
    char found_sha[SHA256_HEX_SIZE];
    unsigned char *bytes = NULL;
    size_t size = 0;
    uint64_t manifest_bytes = 0;
    struct stat st;

    *data = NULL;
    if (!cJSON_IsObject(entry))
        return dm_fail("%s: entry for %s is missing; " DS_RERUN_HINT, manifest_path, expected_name);
    const char *name = json_get_string(entry, "file", manifest_path);
    const char *sha = json_get_string(entry, "sha256", manifest_path);
    if (name == NULL || sha == NULL)
        return -1;
    if (json_get_uint(entry, "bytes", (double)IDX_MAX_BYTES, manifest_path, &manifest_bytes) != 0)
        return -1;
    /* The file names are fixed, so a manifest cannot point outside the dataset directory. */
    if (strcmp(name, expected_name) != 0)
        return dm_fail("%s: file expected \"%s\", found \"%s\"; " DS_RERUN_HINT, manifest_path,
                       expected_name, name);
    if (manifest_bytes != expected_bytes)
        return dm_fail(
            "%s: %s size expected %llu bytes from the counts, found %llu; " DS_RERUN_HINT,
            manifest_path, name, (unsigned long long)expected_bytes,
            (unsigned long long)manifest_bytes);

    if (fs_join(path, sizeof path, dataset_dir, name) != 0)
        return -1;
    if (stat(path, &st) != 0)
        return dm_fail("cannot open %s: %s; " DS_RERUN_HINT, path, strerror(errno));
    if ((uint64_t)st.st_size != expected_bytes)
        return dm_fail(
            "%s: size expected %llu bytes, found %lld; the dataset is damaged, " DS_RERUN_HINT,
            path, (unsigned long long)expected_bytes, (long long)st.st_size);
    if (fs_read_file(path, &bytes, &size) != 0)
        return -1;
    if (size != expected_bytes) {
        free(bytes);
        return dm_fail(
            "%s: size expected %llu bytes, found %zu; the dataset is damaged, " DS_RERUN_HINT, path,
            (unsigned long long)expected_bytes, size);
    }
    if (sha256_hex(bytes, size, found_sha) != 0) {
        free(bytes);
        return -1;
    }
    if (strcmp(found_sha, sha) != 0) {
        free(bytes);
        return dm_fail("%s: SHA-256 expected %s, found %s; the dataset is damaged, " DS_RERUN_HINT,
                       path, sha, found_sha);
    }
    *data = bytes;
    return 0;
}

static int load_split(const char *dataset_dir, const char *manifest_path, const cJSON *splits,
                      const char *split_name, const ds_file_spec *image_spec,
                      const ds_file_spec *label_spec, uint32_t rows, uint32_t cols, ds_split *out)
{
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(splits, split_name);
    uint64_t count = 0;

    if (!cJSON_IsObject(obj))
        return dm_fail("%s: split \"%s\" is missing; " DS_RERUN_HINT, manifest_path, split_name);
    if (json_get_uint(obj, "count", (double)UINT32_MAX, manifest_path, &count) != 0)
        return -1;
    out->count = (uint32_t)count;
    out->rows = rows;
    out->cols = cols;
    if (load_file(dataset_dir, manifest_path, cJSON_GetObjectItemCaseSensitive(obj, "images"),
                  image_spec->output_name, count * rows * cols, &out->images) != 0)
        return -1;
    return load_file(dataset_dir, manifest_path, cJSON_GetObjectItemCaseSensitive(obj, "labels"),
                     label_spec->output_name, count, &out->labels);
}

/* Checks the manifest's format, version and shape fields. */
static int check_manifest_header(const cJSON *root, const char *manifest_path)
{
    uint64_t version = 0, rows = 0, cols = 0, classes = 0;
    const char *format = json_get_string(root, "format", manifest_path);

    if (format == NULL)
        return -1;
    if (strcmp(format, DS_FORMAT_NAME) != 0)
        return dm_fail("%s: format expected \"%s\", found \"%s\"; " DS_RERUN_HINT, manifest_path,
                       DS_FORMAT_NAME, format);
    if (json_get_uint(root, "format_version", 1e9, manifest_path, &version) != 0)
        return -1;
    if (version != DS_FORMAT_VERSION)
        return dm_fail("%s: format_version expected %d, found %llu; " DS_RERUN_HINT, manifest_path,
                       DS_FORMAT_VERSION, (unsigned long long)version);
    if (json_get_uint(root, "rows", 1e9, manifest_path, &rows) != 0 ||
        json_get_uint(root, "cols", 1e9, manifest_path, &cols) != 0 ||
        json_get_uint(root, "num_classes", 1e9, manifest_path, &classes) != 0)
        return -1;
    if (rows != DS_ROWS || cols != DS_COLS)
        return dm_fail("%s: image size expected %dx%d, found %llux%llu; " DS_RERUN_HINT,
                       manifest_path, DS_ROWS, DS_COLS, (unsigned long long)rows,
                       (unsigned long long)cols);
    if (classes != DS_NUM_CLASSES)
        return dm_fail("%s: num_classes expected %d, found %llu; " DS_RERUN_HINT, manifest_path,
                       DS_NUM_CLASSES, (unsigned long long)classes);
    return 0;
}

int ds_load(const char *data_root, ds_dataset *out)
{
    char dataset_dir[DS_PATH_MAX];
    char manifest_path[DS_PATH_MAX];
    unsigned char *text = NULL;
    size_t size = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    if (ds_dataset_dir(data_root, dataset_dir, sizeof dataset_dir) != 0 ||
        fs_join(manifest_path, sizeof manifest_path, dataset_dir, DS_MANIFEST_NAME) != 0)
        return -1;
    if (!fs_is_dir(dataset_dir))
        return dm_fail("no prepared dataset at %s; run `distml ingest` first", dataset_dir);
    if (!fs_exists(manifest_path))
        return dm_fail("%s is missing; " DS_RERUN_HINT, manifest_path);
    if (fs_read_file(manifest_path, &text, &size) != 0)
        return -1;
    cJSON *root = cJSON_ParseWithLength((const char *)text, size);
    free(text);
    if (root == NULL)
        return dm_fail("%s: invalid JSON; " DS_RERUN_HINT, manifest_path);

    if (check_manifest_header(root, manifest_path) != 0)
        goto out;
    const cJSON *splits = cJSON_GetObjectItemCaseSensitive(root, "splits");
    if (load_split(dataset_dir, manifest_path, splits, "train", &ds_files[DS_TRAIN_IMAGES],
                   &ds_files[DS_TRAIN_LABELS], DS_ROWS, DS_COLS, &out->train) != 0 ||
        load_split(dataset_dir, manifest_path, splits, "test", &ds_files[DS_TEST_IMAGES],
                   &ds_files[DS_TEST_LABELS], DS_ROWS, DS_COLS, &out->test) != 0)
        goto out;
    rc = 0;
out:
    cJSON_Delete(root);
    if (rc != 0)
        ds_free(out);
    return rc;
}

void ds_free(ds_dataset *d)
{
    if (d == NULL)
        return;
    free(d->train.images);
    free(d->train.labels);
    free(d->test.images);
    free(d->test.labels);
    memset(d, 0, sizeof *d);
}

void ds_fill_batch(const ds_split *split, const uint32_t *indices, size_t n, float *x, int32_t *y)
{
    const size_t pixels = (size_t)split->rows * split->cols;

    for (size_t i = 0; i < n; i++) {
        uint32_t index = indices[i];
        if (index >= split->count) {
            DM_ERROR("ds_fill_batch: index %u at batch position %zu is out of range for a split "
                     "of %u examples",
                     index, i, split->count);
            abort();
        }
        const uint8_t *src = split->images + (size_t)index * pixels;
        float *dst = x + i * pixels;
        /* Divide rather than multiply by a rounded 1/255, so every value equals
         * pixel / 255.0f exactly. */
        for (size_t p = 0; p < pixels; p++)
            dst[p] = (float)src[p] / 255.0f;
        if (y != NULL)
            y[i] = split->labels[index];
    }
}
