/*
 * Reader for one IDX file (the MNIST and Fashion-MNIST container), raw or
 * gzip-compressed. Gzip is detected by its first two bytes (1F 8B), never by
 * the file name, and exactly one layer is decompressed. Only the two layouts
 * distml uses are accepted: unsigned-byte images (magic 0x00000803, dims
 * count x rows x cols) and unsigned-byte labels (magic 0x00000801, dim count)
 * with values 0..IDX_NUM_CLASSES-1. Every error message names the file, the
 * expected value and the value found.
 */
#ifndef DISTML_DATA_IDX_H
#define DISTML_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

#define IDX_MAGIC_IMAGES 0x00000803u /* type 0x08 (unsigned byte), 3 dimensions */
#define IDX_MAGIC_LABELS 0x00000801u /* type 0x08 (unsigned byte), 1 dimension */
#define IDX_NUM_CLASSES 10

/* Maximum size of an IDX file after decompression (1 GiB), so that a gzip
 * bomb is an error instead of an out-of-memory kill. Fashion-MNIST's largest
 * file is 47,040,016 bytes. The compressed file has the same limit. */
#define IDX_MAX_BYTES ((uint64_t)1 << 30)

typedef enum {
    IDX_IMAGES,
    IDX_LABELS,
} idx_kind;

/* One IDX payload. Images: data is count x rows x cols bytes, row-major.
 * Labels: data is count bytes, and rows and cols are 1. */
typedef struct {
    idx_kind kind;
    uint32_t count, rows, cols;
    uint8_t *data;
} idx_array;

/*
 * Reads and validates the IDX file at PATH. For IDX_IMAGES every image must
 * be ROWS x COLS, and for IDX_LABELS, ROWS and COLS are ignored. Returns 0
 * and fills OUT, or returns -1 with the message in dm_error() and OUT zeroed.
 */
int idx_read(const char *path, idx_kind kind, uint32_t rows, uint32_t cols, idx_array *out);

/*
 * Validates SIZE bytes of IDX file contents already in memory, decompressing
 * them first when they start with the gzip magic. NAME labels the error
 * messages. The payload is copied into OUT, so BYTES stays the caller's.
 */
int idx_parse(const char *name, const void *bytes, size_t size, idx_kind kind, uint32_t rows,
              uint32_t cols, idx_array *out);

/* Frees A's data and zeroes A. A may be NULL. */
void idx_free(idx_array *a);

/* Returns "images" or "labels". */
const char *idx_kind_name(idx_kind kind);

#endif
