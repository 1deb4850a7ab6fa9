/*
 * The prepared Fashion-MNIST dataset under <data_root>/datasets/fashion_mnist:
 *
 *   train-images.u8  uint8 (N_train, rows, cols), row-major
 *   train-labels.u8  uint8 (N_train), values 0..9
 *   test-images.u8   uint8 (N_test, rows, cols)
 *   test-labels.u8   uint8 (N_test)
 *   manifest.json    format, counts, shape, class names, and the byte size
 *                    and SHA-256 of every file above and of each source file
 *
 * ds_ingest builds it from the four IDX files; ds_load verifies and loads it.
 */
#ifndef DISTML_DATA_DATASET_H
#define DISTML_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#define DS_FORMAT_NAME "distml-fashion-mnist"
#define DS_FORMAT_VERSION 1
#define DS_NUM_CLASSES 10
#define DS_ROWS 28
#define DS_COLS 28
#define DS_DEFAULT_DATA_ROOT "./distml-data"
#define DS_DATA_ROOT_ENV "DISTML_DATA_ROOT"
#define DS_DATASET_SUBDIR "datasets/fashion_mnist"
#define DS_PATH_MAX 4096

/* Fashion-MNIST class names, indexed by label. */
extern const char *const ds_class_names[DS_NUM_CLASSES];

/* One split: IMAGES is (count, rows, cols) uint8, LABELS is (count) uint8. */
typedef struct {
    uint32_t count, rows, cols;
    uint8_t *images;
    uint8_t *labels;
} ds_split;

typedef struct {
    ds_split train;
    ds_split test;
} ds_dataset;

/* What ds_ingest read and wrote, for the summary the CLI prints. */
typedef struct {
    uint32_t train_count, test_count;
    uint32_t rows, cols;
    char dataset_dir[DS_PATH_MAX];
    /* The source files read: train images, train labels, test images, test labels. */
    char sources[4][DS_PATH_MAX];
} ds_ingest_report;

/* Returns $DISTML_DATA_ROOT when set and non-empty, else "./distml-data". */
const char *ds_default_data_root(void);

/* Writes <DATA_ROOT>/datasets/fashion_mnist into OUT. */
int ds_dataset_dir(const char *data_root, char *out, size_t capacity);

/*
 * Validates the four Fashion-MNIST IDX files in SOURCE_DIR and writes the
 * prepared dataset under DATA_ROOT. Each file is looked up by its standard
 * name with .gz (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
 * t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) and, when that is
 * absent, without it. The dataset is assembled in a temporary sibling
 * directory and renamed into place only when complete, so a failure leaves
 * an existing dataset as it was. REPORT may be NULL.
 */
int ds_ingest(const char *source_dir, const char *data_root, ds_ingest_report *report);

/*
 * Loads the dataset under DATA_ROOT, checking every file's size and SHA-256
 * against manifest.json. On a mismatch the message names the file and tells
 * the user to run `distml ingest` again. OUT is zeroed on failure.
 */
int ds_load(const char *data_root, ds_dataset *out);

/* Frees both splits and zeroes D. D may be NULL. */
void ds_free(ds_dataset *d);

/*
 * Gathers the N examples SPLIT[INDICES[i]] into X as float32 pixel / 255.0f,
 * laid out (n, rows, cols) with one channel (NHWC, C = 1), and their labels
 * into Y unless Y is NULL. An index >= split->count aborts, because it is a
 * programming error.
 */
void ds_fill_batch(const ds_split *split, const uint32_t *indices, size_t n, float *x, int32_t *y);

#endif
