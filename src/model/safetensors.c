#include "model/safetensors.h"

#include "base/error.h"
#include "base/fsutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Headers larger than this are rejected before they are allocated, so a
 * corrupt length field cannot request gigabytes. */
#define ST_MAX_HEADER_SIZE (100u * 1000u * 1000u)

/* cJSON stores numbers as doubles, which hold every integer up to 2^53. */
#define ST_MAX_JSON_INTEGER 9007199254740992.0

static const char METADATA_KEY[] = "__metadata__";

static size_t dtype_size(st_dtype dtype)
{
    return dtype == ST_I64 ? sizeof(int64_t) : sizeof(float);
}

static const char *dtype_name(st_dtype dtype)
{
    return dtype == ST_I64 ? "I64" : "F32";
}

static bool host_is_little_endian(void)
{
    uint16_t probe = 1;
    unsigned char first;
    memcpy(&first, &probe, 1);
    return first == 1;
}

/* Reverse the bytes of each of COUNT elements of ELEM_SIZE bytes. */
static void swap_bytes(void *data, size_t count, size_t elem_size)
{
    unsigned char *p = data;
    for (size_t i = 0; i < count; i++, p += elem_size) {
        for (size_t a = 0, b = elem_size - 1; a < b; a++, b--) {
            unsigned char tmp = p[a];
            p[a] = p[b];
            p[b] = tmp;
        }
    }
}

int64_t st_element_count(const st_tensor *t)
{
    int64_t count = 1;
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return -1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return -1;
        if (t->shape[d] != 0 && count > INT64_MAX / t->shape[d])
            return -1;
        count *= t->shape[d];
    }
    return count;
}

/* ---- Writing ---- */

typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} strbuf;

static void sb_append(strbuf *sb, const char *text, size_t len)
{
    if (sb->failed || len == 0)
        return;
    if (sb->len + len + 1 > sb->cap) {
        size_t next = sb->cap ? sb->cap : 256;
        while (next < sb->len + len + 1)
            next *= 2;
        char *grown = realloc(sb->data, next);
        if (grown == NULL) {
            sb->failed = true;
            return;
        }
        sb->data = grown;
        sb->cap = next;
    }
    memcpy(sb->data + sb->len, text, len);
    sb->len += len;
    sb->data[sb->len] = '\0';
}

static void sb_puts(strbuf *sb, const char *text)
{
    sb_append(sb, text, strlen(text));
}

static void sb_printf_int(strbuf *sb, long long value)
{
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", value);
    sb_append(sb, digits, (size_t)n);
}

/* Append TEXT as a JSON string literal. */
static void sb_put_json_string(strbuf *sb, const char *text)
{
    sb_puts(sb, "\"");
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char escaped[8];
        if (*p == '"' || *p == '\\') {
            escaped[0] = '\\';
            escaped[1] = (char)*p;
            sb_append(sb, escaped, 2);
        } else if (*p < 0x20) {
            snprintf(escaped, sizeof escaped, "\\u%04x", *p);
            sb_append(sb, escaped, 6);
        } else {
            sb_append(sb, (const char *)p, 1);
        }
    }
    sb_puts(sb, "\"");
}

static int check_tensor_for_write(const char *path, const st_tensor *tensors, size_t index)
{
    const st_tensor *t = &tensors[index];
    size_t name_len = strnlen(t->name, ST_NAME_CAPACITY);

    if (name_len == 0)
        return dm_fail("cannot write %s: tensor %zu has an empty name", path, index);
    if (name_len == ST_NAME_CAPACITY)
        return dm_fail("cannot write %s: tensor %zu has a name that is not NUL-terminated", path,
                       index);
    if (strcmp(t->name, METADATA_KEY) == 0)
        return dm_fail("cannot write %s: '%s' is reserved and cannot name a tensor", path,
                       METADATA_KEY);
    if (t->dtype != ST_F32 && t->dtype != ST_I64)
        return dm_fail("cannot write %s: tensor '%s' has invalid dtype %d", path, t->name,
                       (int)t->dtype);
    if (t->ndim < 0 || t->ndim > ST_MAX_DIMS)
        return dm_fail("cannot write %s: tensor '%s' has %d dimensions (maximum %d)", path, t->name,
                       t->ndim, ST_MAX_DIMS);
    int64_t count = st_element_count(t);
    if (count < 0 || count > INT64_MAX / 8)
        return dm_fail("cannot write %s: tensor '%s' has a negative or too large shape", path,
                       t->name);
    if (count > 0 && t->data == NULL)
        return dm_fail("cannot write %s: tensor '%s' has no data", path, t->name);
    for (size_t j = 0; j < index; j++) {
        if (strcmp(tensors[j].name, t->name) == 0)
            return dm_fail("cannot write %s: duplicate tensor name '%s'", path, t->name);
    }
    return 0;
}

static int check_metadata_for_write(const char *path, const char *const *metadata_kv)
{
    if (metadata_kv == NULL)
        return 0;
    for (size_t i = 0; metadata_kv[i] != NULL; i += 2) {
        if (metadata_kv[i + 1] == NULL)
            return dm_fail("cannot write %s: metadata key '%s' has no value", path, metadata_kv[i]);
        for (size_t j = 0; j < i; j += 2) {
            if (strcmp(metadata_kv[j], metadata_kv[i]) == 0)
                return dm_fail("cannot write %s: duplicate metadata key '%s'", path,
                               metadata_kv[i]);
        }
    }
    return 0;
}

/* Build the header JSON, padded with spaces to a multiple of 8 bytes. */
static int build_header(const char *path, const st_tensor *tensors, size_t count,
                        const char *const *metadata_kv, strbuf *sb)
{
    int64_t offset = 0;
    bool first = true;

    sb_puts(sb, "{");
    if (metadata_kv != NULL && metadata_kv[0] != NULL) {
        sb_put_json_string(sb, METADATA_KEY);
        sb_puts(sb, ":{");
        for (size_t i = 0; metadata_kv[i] != NULL; i += 2) {
            if (i > 0)
                sb_puts(sb, ",");
            sb_put_json_string(sb, metadata_kv[i]);
            sb_puts(sb, ":");
            sb_put_json_string(sb, metadata_kv[i + 1]);
        }
        sb_puts(sb, "}");
        first = false;
    }
    for (size_t i = 0; i < count; i++) {
        const st_tensor *t = &tensors[i];
        int64_t size = st_element_count(t) * (int64_t)dtype_size(t->dtype);
        if (offset > INT64_MAX - size)
            return dm_fail("cannot write %s: total tensor size overflows", path);
        if (!first)
            sb_puts(sb, ",");
        first = false;
        sb_put_json_string(sb, t->name);
        sb_puts(sb, ":{\"dtype\":\"");
        sb_puts(sb, dtype_name(t->dtype));
        sb_puts(sb, "\",\"shape\":[");
        for (int d = 0; d < t->ndim; d++) {
            if (d > 0)
                sb_puts(sb, ",");
            sb_printf_int(sb, (long long)t->shape[d]);
        }
        sb_puts(sb, "],\"data_offsets\":[");
        sb_printf_int(sb, (long long)offset);
        sb_puts(sb, ",");
        sb_printf_int(sb, (long long)(offset + size));
        sb_puts(sb, "]}");
        offset += size;
    }
    sb_puts(sb, "}");
    while (!sb->failed && sb->len % 8 != 0)
        sb_puts(sb, " ");
    if (sb->failed)
        return dm_fail("cannot write %s: out of memory building the header", path);
    return 0;
}

/* Write one tensor's elements little-endian, converting in chunks on a
 * big-endian host.
 * NOTE: the big-endian branches here and in load_tensors have not been run,
 * because no big-endian machine was available to test them. */
static int write_tensor_data(fs_temp_file *file, const st_tensor *t)
{
    size_t elem_size = dtype_size(t->dtype);
    size_t count = (size_t)st_element_count(t);
    const unsigned char *src = (const unsigned char *)t->data;

    if (count == 0)
        return 0;
    if (host_is_little_endian())
        return fs_temp_write(file, src, count * elem_size);

    unsigned char chunk[1 << 16];
    size_t per_chunk = sizeof chunk / elem_size;
    for (size_t done = 0; done < count;) {
        size_t n = count - done < per_chunk ? count - done : per_chunk;
        memcpy(chunk, src + done * elem_size, n * elem_size);
        swap_bytes(chunk, n, elem_size);
        if (fs_temp_write(file, chunk, n * elem_size) != 0)
            return -1;
        done += n;
    }
    return 0;
}

int st_write(const char *path, const st_tensor *tensors, size_t count,
             const char *const *metadata_kv)
{
    strbuf header = {0};
    fs_temp_file file;
    unsigned char length_bytes[8];

    for (size_t i = 0; i < count; i++) {
        if (check_tensor_for_write(path, tensors, i) != 0)
            return -1;
    }
    if (check_metadata_for_write(path, metadata_kv) != 0)
        return -1;
    if (build_header(path, tensors, count, metadata_kv, &header) != 0) {
        free(header.data);
        return -1;
    }

    uint64_t header_len = header.len;
    for (int b = 0; b < 8; b++)
        length_bytes[b] = (unsigned char)(header_len >> (8 * b));

    if (fs_temp_open(&file, path) != 0) {
        free(header.data);
        return -1;
    }
    int rc = fs_temp_write(&file, length_bytes, sizeof length_bytes);
    if (rc == 0)
        rc = fs_temp_write(&file, header.data, header.len);
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = write_tensor_data(&file, &tensors[i]);
    free(header.data);
    if (rc != 0) {
        fs_temp_abandon(&file);
        return -1;
    }
    return fs_temp_commit(&file);
}

/* ---- Reading ---- */

/* A header entry while the file is validated. */
typedef struct {
    const char *name; /* points into the parsed JSON */
    size_t header_index;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t begin;
    int64_t end;
} st_entry;

static bool json_to_int64(const cJSON *item, int64_t *out)
{
    if (!cJSON_IsNumber(item))
        return false;
    double v = item->valuedouble;
    if (!(v >= 0.0 && v <= ST_MAX_JSON_INTEGER) || v != (double)(int64_t)v)
        return false;
    *out = (int64_t)v;
    return true;
}

static int parse_dtype(const char *path, const char *name, const cJSON *item, st_dtype *dtype)
{
    static const char *const known_unsupported[] = {"F64",  "F16",     "BF16",   "I32", "I16",
                                                    "I8",   "U8",      "U16",    "U32", "U64",
                                                    "BOOL", "F8_E4M3", "F8_E5M2"};
    if (!cJSON_IsString(item))
        return dm_fail("invalid safetensors file %s: tensor '%s': dtype is missing or not a "
                       "string",
                       path, name);
    if (strcmp(item->valuestring, "F32") == 0) {
        *dtype = ST_F32;
        return 0;
    }
    if (strcmp(item->valuestring, "I64") == 0) {
        *dtype = ST_I64;
        return 0;
    }
    for (size_t i = 0; i < sizeof known_unsupported / sizeof known_unsupported[0]; i++) {
        if (strcmp(item->valuestring, known_unsupported[i]) == 0)
            return dm_fail("unsupported safetensors file %s: tensor '%s' has dtype %s, but "
                           "only F32 and I64 are supported",
                           path, name, item->valuestring);
    }
    return dm_fail("invalid safetensors file %s: tensor '%s' has unknown dtype '%s'", path, name,
                   item->valuestring);
}

static int parse_shape(const char *path, st_entry *e, const cJSON *item)
{
    if (!cJSON_IsArray(item))
        return dm_fail("invalid safetensors file %s: tensor '%s': shape is missing or not an "
                       "array",
                       path, e->name);
    int ndim = cJSON_GetArraySize(item);
    if (ndim > ST_MAX_DIMS)
        return dm_fail("unsupported safetensors file %s: tensor '%s' has %d dimensions "
                       "(maximum %d)",
                       path, e->name, ndim, ST_MAX_DIMS);
    e->ndim = ndim;
    int d = 0;
    for (const cJSON *dim = item->child; dim != NULL; dim = dim->next, d++) {
        if (!json_to_int64(dim, &e->shape[d]))
            return dm_fail("invalid safetensors file %s: tensor '%s': shape[%d] is not a "
                           "non-negative integer",
                           path, e->name, d);
    }
    return 0;
}

static int parse_offsets(const char *path, st_entry *e, const cJSON *item)
{
    if (!cJSON_IsArray(item) || cJSON_GetArraySize(item) != 2)
        return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets is missing or "
                       "not an array of 2 numbers",
                       path, e->name);
    if (!json_to_int64(item->child, &e->begin) || !json_to_int64(item->child->next, &e->end))
        return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets are not "
                       "non-negative integers",
                       path, e->name);
    if (e->begin > e->end)
        return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets [%lld, %lld] "
                       "end before they begin",
                       path, e->name, (long long)e->begin, (long long)e->end);
    return 0;
}

/* Check that the shape's byte size equals the span of the data offsets. */
static int check_entry_size(const char *path, const st_entry *e)
{
    st_tensor probe = {.dtype = e->dtype, .ndim = e->ndim};
    memcpy(probe.shape, e->shape, sizeof probe.shape);
    int64_t count = st_element_count(&probe);
    int64_t elem_size = (int64_t)dtype_size(e->dtype);
    if (count < 0 || count > INT64_MAX / elem_size)
        return dm_fail("invalid safetensors file %s: tensor '%s': shape product overflows", path,
                       e->name);
    if (count * elem_size != e->end - e->begin)
        return dm_fail("invalid safetensors file %s: tensor '%s': shape needs %lld bytes of "
                       "%s but data_offsets [%lld, %lld] span %lld bytes",
                       path, e->name, (long long)(count * elem_size), dtype_name(e->dtype),
                       (long long)e->begin, (long long)e->end, (long long)(e->end - e->begin));
    return 0;
}

static int parse_entry(const char *path, const cJSON *item, size_t index, st_entry *e)
{
    e->name = item->string;
    e->header_index = index;
    if (e->name[0] == '\0')
        return dm_fail("invalid safetensors file %s: tensor %zu has an empty name", path, index);
    if (strlen(e->name) >= ST_NAME_CAPACITY)
        return dm_fail("unsupported safetensors file %s: tensor name '%.40s...' is longer "
                       "than %d bytes",
                       path, e->name, ST_NAME_CAPACITY - 1);
    if (!cJSON_IsObject(item))
        return dm_fail("invalid safetensors file %s: tensor '%s' is not a JSON object", path,
                       e->name);
    if (parse_dtype(path, e->name, cJSON_GetObjectItemCaseSensitive(item, "dtype"), &e->dtype) != 0)
        return -1;
    if (parse_shape(path, e, cJSON_GetObjectItemCaseSensitive(item, "shape")) != 0)
        return -1;
    if (parse_offsets(path, e, cJSON_GetObjectItemCaseSensitive(item, "data_offsets")) != 0)
        return -1;
    return check_entry_size(path, e);
}

static int compare_entries_by_offset(const void *a, const void *b)
{
    const st_entry *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return x->header_index < y->header_index ? -1 : (x->header_index > y->header_index);
}

static int compare_entry_names(const void *a, const void *b)
{
    const st_entry *const *x = a, *const *y = b;
    return strcmp((*x)->name, (*y)->name);
}

static int check_unique_names(const char *path, st_entry *entries, size_t count)
{
    if (count < 2)
        return 0;
    const st_entry **sorted = dm_malloc(count * sizeof *sorted);
    if (sorted == NULL)
        return -1;
    for (size_t i = 0; i < count; i++)
        sorted[i] = &entries[i];
    qsort(sorted, count, sizeof *sorted, compare_entry_names);
    for (size_t i = 1; i < count; i++) {
        if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0) {
            dm_fail("invalid safetensors file %s: duplicate tensor name '%s'", path,
                    sorted[i]->name);
            free(sorted);
            return -1;
        }
    }
    free(sorted);
    return 0;
}

/* Sort ENTRIES by offset and check that they tile [0, DATA_SIZE) exactly. */
static int check_layout(const char *path, st_entry *entries, size_t count, int64_t data_size)
{
    int64_t expected = 0;
    qsort(entries, count, sizeof *entries, compare_entries_by_offset);
    for (size_t i = 0; i < count; i++) {
        const st_entry *e = &entries[i];
        if (e->end > data_size)
            return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets [%lld, %lld] "
                           "run past the %lld-byte data section",
                           path, e->name, (long long)e->begin, (long long)e->end,
                           (long long)data_size);
        if (e->begin < expected)
            return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets [%lld, %lld] "
                           "overlap the previous tensor, which ends at %lld",
                           path, e->name, (long long)e->begin, (long long)e->end,
                           (long long)expected);
        if (e->begin > expected)
            return dm_fail("invalid safetensors file %s: tensor '%s': data_offsets [%lld, %lld] "
                           "leave a gap after byte %lld",
                           path, e->name, (long long)e->begin, (long long)e->end,
                           (long long)expected);
        expected = e->end;
    }
    if (expected != data_size)
        return dm_fail("invalid safetensors file %s: tensors cover %lld bytes but the data "
                       "section is %lld bytes",
                       path, (long long)expected, (long long)data_size);
    return 0;
}

static int parse_metadata(const char *path, const cJSON *item, char ***metadata_kv)
{
    size_t pairs = 0;
    if (item != NULL && !cJSON_IsObject(item))
        return dm_fail("invalid safetensors file %s: %s is not a JSON object", path, METADATA_KEY);
    for (const cJSON *kv = item ? item->child : NULL; kv != NULL; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return dm_fail("invalid safetensors file %s: %s value of '%s' is not a string", path,
                           METADATA_KEY, kv->string);
        pairs++;
    }
    if (metadata_kv == NULL)
        return 0;

    char **list = dm_calloc(2 * pairs + 1, sizeof *list);
    if (list == NULL)
        return -1;
    size_t i = 0;
    for (const cJSON *kv = item ? item->child : NULL; kv != NULL; kv = kv->next) {
        list[i] = strdup(kv->string);
        list[i + 1] = strdup(kv->valuestring);
        if (list[i] == NULL || list[i + 1] == NULL) {
            for (size_t j = 0; j <= i + 1; j++)
                free(list[j]);
            free(list);
            return dm_fail("out of memory reading metadata of %s", path);
        }
        i += 2;
    }
    *metadata_kv = list;
    return 0;
}

static int read_exact(int fd, void *buf, size_t size, off_t offset, const char *path)
{
    unsigned char *p = buf;
    while (size > 0) {
        ssize_t n = pread(fd, p, size, offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dm_fail("cannot read %s: %s", path, strerror(errno));
        if (n == 0)
            return dm_fail("cannot read %s: file ended early", path);
        p += n;
        size -= (size_t)n;
        offset += n;
    }
    return 0;
}

/* Read and parse the header. On success *ROOT owns the JSON and
 * *DATA_START is the file offset of the data section. */
static int read_header(int fd, const char *path, int64_t file_size, cJSON **root,
                       int64_t *data_start)
{
    unsigned char length_bytes[8];
    uint64_t header_len = 0;

    if (file_size < 8)
        return dm_fail("invalid safetensors file %s: %lld bytes is too short for the 8-byte "
                       "header length",
                       path, (long long)file_size);
    if (read_exact(fd, length_bytes, 8, 0, path) != 0)
        return -1;
    for (int b = 0; b < 8; b++)
        header_len |= (uint64_t)length_bytes[b] << (8 * b);
    if (header_len < 2)
        return dm_fail("invalid safetensors file %s: header length %llu is too small", path,
                       (unsigned long long)header_len);
    if (header_len > (uint64_t)(file_size - 8))
        return dm_fail("invalid safetensors file %s: header length %llu exceeds the %lld bytes "
                       "after the length field",
                       path, (unsigned long long)header_len, (long long)(file_size - 8));
    if (header_len > ST_MAX_HEADER_SIZE)
        return dm_fail("unsupported safetensors file %s: header length %llu exceeds the "
                       "maximum of %u bytes",
                       path, (unsigned long long)header_len, ST_MAX_HEADER_SIZE);

    char *text = dm_malloc((size_t)header_len + 1);
    if (text == NULL)
        return -1;
    if (read_exact(fd, text, (size_t)header_len, 8, path) != 0) {
        free(text);
        return -1;
    }
    text[header_len] = '\0';

    int rc = 0;
    const char *end = NULL;
    if (text[0] != '{') {
        rc = dm_fail("invalid safetensors file %s: header does not start with '{'", path);
    } else if (strlen(text) != header_len) {
        rc = dm_fail("invalid safetensors file %s: header contains a NUL byte", path);
    } else if ((*root = cJSON_ParseWithLengthOpts(text, (size_t)header_len, &end, 0)) == NULL) {
        rc = dm_fail("invalid safetensors file %s: header is not valid JSON (near byte %lld)", path,
                     (long long)(cJSON_GetErrorPtr() - text));
    } else {
        for (const char *p = end; *p; p++) {
            if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
                rc = dm_fail("invalid safetensors file %s: unexpected bytes after the header "
                             "JSON at byte %lld",
                             path, (long long)(p - text));
                break;
            }
        }
        if (rc == 0 && !cJSON_IsObject(*root))
            rc = dm_fail("invalid safetensors file %s: header is not a JSON object", path);
        if (rc != 0) {
            cJSON_Delete(*root);
            *root = NULL;
        }
    }
    free(text);
    *data_start = 8 + (int64_t)header_len;
    return rc;
}

/* Parse and validate every tensor entry of ROOT into a malloc'd array sorted
 * by data offset. */
static int parse_entries(const char *path, const cJSON *root, int64_t data_size,
                         st_entry **entries_out, size_t *count_out)
{
    size_t count = 0;
    for (const cJSON *item = root->child; item != NULL; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) != 0)
            count++;
    }
    st_entry *entries = dm_calloc(count, sizeof *entries);
    if (entries == NULL)
        return -1;

    size_t n = 0;
    for (const cJSON *item = root->child; item != NULL; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) == 0)
            continue;
        if (parse_entry(path, item, n, &entries[n]) != 0) {
            free(entries);
            return -1;
        }
        n++;
    }
    if (check_unique_names(path, entries, count) != 0 ||
        check_layout(path, entries, count, data_size) != 0) {
        free(entries);
        return -1;
    }
    *entries_out = entries;
    *count_out = count;
    return 0;
}

static int load_tensors(int fd, const char *path, const st_entry *entries, size_t count,
                        int64_t data_start, st_tensor **tensors_out)
{
    st_tensor *tensors = dm_calloc(count, sizeof *tensors);
    if (tensors == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        const st_entry *e = &entries[i];
        st_tensor *t = &tensors[i];
        size_t size = (size_t)(e->end - e->begin);

        snprintf(t->name, sizeof t->name, "%s", e->name);
        t->dtype = e->dtype;
        t->ndim = e->ndim;
        memcpy(t->shape, e->shape, sizeof t->shape);
        t->data = dm_malloc(size);
        if (t->data == NULL ||
            read_exact(fd, t->data, size, (off_t)(data_start + e->begin), path) != 0) {
            dm_fail_context("cannot load tensor '%s'", e->name);
            st_free(tensors, count);
            return -1;
        }
        if (!host_is_little_endian())
            swap_bytes(t->data, size / dtype_size(t->dtype), dtype_size(t->dtype));
    }
    *tensors_out = tensors;
    return 0;
}

int st_read_with_metadata(const char *path, st_tensor **tensors, size_t *count, char ***metadata_kv)
{
    struct stat st;
    cJSON *root = NULL;
    st_entry *entries = NULL;
    size_t n = 0;
    int64_t data_start = 0;
    char **metadata = NULL;
    int rc = -1;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_fail("cannot open %s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        dm_fail("cannot stat %s: %s", path, strerror(errno));
        goto out;
    }
    if (!S_ISREG(st.st_mode)) {
        dm_fail("invalid safetensors file %s: not a regular file", path);
        goto out;
    }
    if (read_header(fd, path, (int64_t)st.st_size, &root, &data_start) != 0)
        goto out;
    if (parse_metadata(path, cJSON_GetObjectItemCaseSensitive(root, METADATA_KEY),
                       metadata_kv ? &metadata : NULL) != 0)
        goto out;
    if (parse_entries(path, root, (int64_t)st.st_size - data_start, &entries, &n) != 0)
        goto out;
    if (load_tensors(fd, path, entries, n, data_start, tensors) != 0)
        goto out;
    *count = n;
    if (metadata_kv != NULL) {
        *metadata_kv = metadata;
        metadata = NULL;
    }
    rc = 0;
out:
    st_metadata_free(metadata);
    free(entries);
    cJSON_Delete(root);
    close(fd);
    return rc;
}

int st_read(const char *path, st_tensor **tensors, size_t *count)
{
    return st_read_with_metadata(path, tensors, count, NULL);
}

void st_free(st_tensor *tensors, size_t count)
{
    if (tensors == NULL)
        return;
    for (size_t i = 0; i < count; i++)
        free(tensors[i].data);
    free(tensors);
}

void st_metadata_free(char **metadata_kv)
{
    if (metadata_kv == NULL)
        return;
    for (size_t i = 0; metadata_kv[i] != NULL; i++)
        free(metadata_kv[i]);
    free(metadata_kv);
}

const st_tensor *st_find(const st_tensor *tensors, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(tensors[i].name, name) == 0)
            return &tensors[i];
    }
    return NULL;
}
