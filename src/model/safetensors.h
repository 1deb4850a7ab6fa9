/*
 * The safetensors file format: an 8-byte little-endian header length N, N
 * bytes of JSON header padded with spaces to a multiple of 8, then the raw
 * little-endian tensor data. The header maps each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]}, with offsets relative
 * to the start of the data section, and may hold a "__metadata__" object
 * of string values.
 *
 * Only the F32 and I64 dtypes are supported. Files with other dtypes (F16,
 * BF16, ...) are rejected with a message that names the dtype.
 */
#ifndef DISTML_MODEL_SAFETENSORS_H
#define DISTML_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_NAME_CAPACITY 128 /* bytes for a tensor name, NUL included */
#define ST_MAX_DIMS 8

typedef enum {
    ST_F32 = 0, /* float, the zero value so that zero-initialised tensors are F32 */
    ST_I64 = 1, /* int64_t */
} st_dtype;

/* One named tensor, row-major. DATA points to the product of SHAPE
 * elements (1 when NDIM is 0) of type DTYPE, read through the union member
 * that matches DTYPE. */
typedef struct {
    char name[ST_NAME_CAPACITY];
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    union {
        float *data;       /* ST_F32 */
        int64_t *data_i64; /* ST_I64 */
    };
} st_tensor;

/* Element count of T (1 for a scalar), or -1 when a dimension is negative
 * or the product overflows int64_t. */
int64_t st_element_count(const st_tensor *t);

/*
 * Writes COUNT tensors to PATH atomically (a temporary file, fsync, rename),
 * in the order given. METADATA_KV is NULL or a NULL-terminated list of
 * alternating keys and values stored as "__metadata__". Names must be
 * non-empty, unique and not "__metadata__". Returns 0, or -1 with dm_error()
 * naming the file and the tensor.
 */
int st_write(const char *path, const st_tensor *tensors, size_t count,
             const char *const *metadata_kv);

/*
 * Reads every tensor of PATH into a malloc'd array, ordered by data offset,
 * with each tensor's data malloc'd separately; free it with st_free. The
 * whole file is validated first: header length against file size, JSON,
 * dtypes, shapes against offsets, and offsets that cover the data section
 * exactly once without gaps, overlaps or duplicate names. Returns 0, or -1
 * with dm_error() naming the file and, where one is at fault, the tensor.
 */
int st_read(const char *path, st_tensor **tensors, size_t *count);

/* Same as st_read, and also returns "__metadata__" in *METADATA_KV as a
 * malloc'd NULL-terminated key, value, ... list (just the NULL when the file
 * has none); free it with st_metadata_free. */
int st_read_with_metadata(const char *path, st_tensor **tensors, size_t *count,
                          char ***metadata_kv);

void st_free(st_tensor *tensors, size_t count);
void st_metadata_free(char **metadata_kv);

/* The tensor called NAME, or NULL when there is none. */
const st_tensor *st_find(const st_tensor *tensors, size_t count, const char *name);

#endif
