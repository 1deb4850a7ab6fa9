/*
 * IDX reader. A gzip file is decompressed twice: the first pass only counts
 * the bytes and keeps the header, so that the header and the exact size are
 * validated (and a gzip bomb rejected) before any large allocation. The
 * second pass writes into a buffer of exactly that size.
 */
#include "data/idx.h"

#include "base/error.h"
#include "base/fsutil.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_HEADER_MAX 16 /* magic and three dimensions, 4 bytes each */

typedef struct {
    uint32_t count, rows, cols;
    size_t header_size;
    size_t payload_size;
} idx_shape;

const char *idx_kind_name(idx_kind kind)
{
    return kind == IDX_IMAGES ? "images" : "labels";
}

static uint32_t read_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static bool is_gzip(const uint8_t *bytes, size_t size)
{
    return size >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b;
}

/*
 * Inflates every gzip member in IN. With OUT NULL the output is discarded
 * and only counted, up to IDX_MAX_BYTES. Otherwise it is written to OUT,
 * which must have room for OUT_CAPACITY bytes. The first IDX_HEADER_MAX output bytes
 * are copied to HEAD in both modes. *TOTAL receives the output size.
 */
static int inflate_gzip(const char *name, const uint8_t *in, size_t in_size, uint8_t *out,
                        size_t out_capacity, uint8_t head[IDX_HEADER_MAX], uint64_t *total)
{
    static const char *const bomb_hint = "the file is not Fashion-MNIST, or is a gzip bomb";
    uint8_t scratch[1 << 16];
    uint64_t limit = out != NULL ? out_capacity : IDX_MAX_BYTES;
    uint64_t produced = 0;
    z_stream zs;

    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return dm_fail("%s: cannot initialise zlib", name);
    /* The cast is safe because zlib only reads next_in, which is non-const without ZLIB_CONST. */
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)in_size; /* in_size <= IDX_MAX_BYTES, checked by the caller */

    for (;;) {
        uint8_t *dest = scratch;
        size_t room = sizeof scratch;
        if (out != NULL && produced < out_capacity) {
            dest = out + produced;
            room = out_capacity - (size_t)produced;
        }
        zs.next_out = dest;
        zs.avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
        uInt avail_before = zs.avail_out;
        int rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = avail_before - zs.avail_out;

        if (produced < IDX_HEADER_MAX) {
            size_t want = IDX_HEADER_MAX - (size_t)produced;
            memcpy(head + produced, dest, got < want ? got : want);
        }
        produced += got;
        if (produced > limit) {
            inflateEnd(&zs);
            if (out != NULL)
                return dm_fail(
                    "%s: gzip data inflated to more than the %zu bytes of the first pass", name,
                    out_capacity);
            return dm_fail("%s: decompressed size expected at most %llu bytes (1 GiB), found more; "
                           "%s",
                           name, (unsigned long long)IDX_MAX_BYTES, bomb_hint);
        }
        if (rc == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            if (is_gzip(zs.next_in, zs.avail_in)) {
                /* Another gzip member follows, as `cat a.gz b.gz` produces. */
                inflateReset(&zs);
                continue;
            }
            unsigned long long extra = zs.avail_in;
            inflateEnd(&zs);
            return dm_fail("%s: %llu bytes after the end of the gzip data are not a gzip member",
                           name, extra);
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) {
            inflateEnd(&zs);
            return dm_fail("%s: gzip data is truncated: the %zu compressed bytes end before "
                           "the end of the stream",
                           name, in_size);
        }
        if (rc != Z_OK) {
            const char *reason = zs.msg != NULL ? zs.msg : zError(rc);
            inflateEnd(&zs);
            return dm_fail("%s: invalid gzip data: %s", name, reason);
        }
    }
    inflateEnd(&zs);
    *total = produced;
    return 0;
}

/* Writes a short description of a found magic number for error messages. */
static void describe_magic(uint32_t magic, char *buf, size_t capacity)
{
    if (magic == IDX_MAGIC_IMAGES) {
        snprintf(buf, capacity, "%u, images", magic);
    } else if (magic == IDX_MAGIC_LABELS) {
        snprintf(buf, capacity, "%u, labels", magic);
    } else if (magic >> 16 == 0x1f8b) {
        /* The decimal value is left out on purpose: it only misleads. */
        snprintf(buf, capacity, "a gzip header: the file is compressed twice, so gunzip it once");
    } else if (magic >> 16 != 0) {
        snprintf(buf, capacity, "not an IDX file");
    } else {
        snprintf(buf, capacity, "%u, IDX type 0x%02X with %u dimensions", magic,
                 (magic >> 8) & 0xffu, magic & 0xffu);
    }
}

/*
 * Validates the header in HEAD (HEAD_SIZE of its bytes are valid) against
 * KIND and the full content size, and fills SHAPE. GZIPPED only changes the
 * wording of the messages.
 */
static int validate_header(const char *name, const uint8_t *head, uint64_t content_size,
                           bool gzipped, idx_kind kind, uint32_t rows, uint32_t cols,
                           idx_shape *shape)
{
    const char *found_how = gzipped ? " after gzip decompression" : "";
    const char *kind_name = idx_kind_name(kind);
    uint32_t expected_magic = kind == IDX_IMAGES ? IDX_MAGIC_IMAGES : IDX_MAGIC_LABELS;
    size_t header_size = kind == IDX_IMAGES ? 16 : 8;
    char found[160];

    if (content_size == 0)
        return dm_fail("%s: file is empty%s, expected an IDX %s header of %zu bytes", name,
                       found_how, kind_name, header_size);
    if (content_size < 4)
        return dm_fail("%s: IDX %s header expected %zu bytes, found %llu%s", name, kind_name,
                       header_size, (unsigned long long)content_size, found_how);

    uint32_t magic = read_be32(head);
    if (magic != expected_magic) {
        describe_magic(magic, found, sizeof found);
        return dm_fail("%s: IDX magic expected 0x%08X (%u, %s), found 0x%08X (%s)", name,
                       expected_magic, expected_magic, kind_name, magic, found);
    }
    if (content_size < header_size)
        return dm_fail("%s: IDX %s header expected %zu bytes, found %llu%s", name, kind_name,
                       header_size, (unsigned long long)content_size, found_how);

    shape->header_size = header_size;
    shape->count = read_be32(head + 4);
    shape->rows = 1;
    shape->cols = 1;
    if (kind == IDX_IMAGES) {
        shape->rows = read_be32(head + 8);
        shape->cols = read_be32(head + 12);
        if (shape->rows != rows || shape->cols != cols)
            return dm_fail("%s: image size expected %ux%u, found %ux%u", name, rows, cols,
                           shape->rows, shape->cols);
    }

    uint64_t per_item = (uint64_t)shape->rows * shape->cols;
    if (shape->count > 0 && per_item > (IDX_MAX_BYTES - header_size) / shape->count)
        return dm_fail("%s: header declares %u %s of %llu bytes each, over the 1 GiB limit", name,
                       shape->count, kind_name, (unsigned long long)per_item);
    uint64_t payload = (uint64_t)shape->count * per_item;
    uint64_t expected = header_size + payload;
    if (content_size != expected) {
        char layout[96];
        if (kind == IDX_IMAGES)
            snprintf(layout, sizeof layout, "%zu-byte header and %u images of %ux%u", header_size,
                     shape->count, shape->rows, shape->cols);
        else
            snprintf(layout, sizeof layout, "%zu-byte header and %u labels", header_size,
                     shape->count);
        if (content_size < expected)
            return dm_fail("%s: IDX size expected %llu bytes (%s), found %llu bytes%s, so the "
                           "payload is truncated by %llu bytes",
                           name, (unsigned long long)expected, layout,
                           (unsigned long long)content_size, found_how,
                           (unsigned long long)(expected - content_size));
        return dm_fail("%s: IDX size expected %llu bytes (%s), found %llu bytes%s, so %llu "
                       "trailing bytes follow the payload",
                       name, (unsigned long long)expected, layout, (unsigned long long)content_size,
                       found_how, (unsigned long long)(content_size - expected));
    }
    shape->payload_size = (size_t)payload;
    return 0;
}

static int validate_labels(const char *name, const uint8_t *labels, uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        if (labels[i] >= IDX_NUM_CLASSES)
            return dm_fail("%s: label at index %u expected 0..%d, found %u", name, i,
                           IDX_NUM_CLASSES - 1, labels[i]);
    }
    return 0;
}

/* Decompresses BYTES and returns the payload in *PAYLOAD (malloc'd). */
static int parse_gzip(const char *name, const uint8_t *bytes, size_t size, idx_kind kind,
                      uint32_t rows, uint32_t cols, idx_shape *shape, uint8_t **payload)
{
    uint8_t head[IDX_HEADER_MAX] = {0};
    uint64_t total = 0;

    if (inflate_gzip(name, bytes, size, NULL, 0, head, &total) != 0)
        return -1;
    if (validate_header(name, head, total, true, kind, rows, cols, shape) != 0)
        return -1;

    uint8_t *buf = dm_malloc((size_t)total);
    if (buf == NULL)
        return dm_fail_context("%s", name);
    uint64_t second_total = 0;
    if (inflate_gzip(name, bytes, size, buf, (size_t)total, head, &second_total) != 0) {
        free(buf);
        return -1;
    }
    if (second_total != total) {
        free(buf);
        return dm_fail("%s: gzip data inflated to %llu bytes, then to %llu", name,
                       (unsigned long long)total, (unsigned long long)second_total);
    }
    memmove(buf, buf + shape->header_size, shape->payload_size);
    *payload = buf;
    return 0;
}

int idx_parse(const char *name, const void *bytes, size_t size, idx_kind kind, uint32_t rows,
              uint32_t cols, idx_array *out)
{
    const uint8_t *in = bytes;
    idx_shape shape = {0};
    uint8_t *payload = NULL;

    memset(out, 0, sizeof *out);
    if ((uint64_t)size > IDX_MAX_BYTES)
        return dm_fail("%s: file size expected at most %llu bytes (1 GiB), found %zu", name,
                       (unsigned long long)IDX_MAX_BYTES, size);

    if (is_gzip(in, size)) {
        if (parse_gzip(name, in, size, kind, rows, cols, &shape, &payload) != 0)
            return -1;
    } else {
        uint8_t head[IDX_HEADER_MAX] = {0};
        memcpy(head, in, size < sizeof head ? size : sizeof head);
        if (validate_header(name, head, size, false, kind, rows, cols, &shape) != 0)
            return -1;
        payload = dm_malloc(shape.payload_size);
        if (payload == NULL)
            return dm_fail_context("%s", name);
        memcpy(payload, in + shape.header_size, shape.payload_size);
    }

    if (kind == IDX_LABELS && validate_labels(name, payload, shape.count) != 0) {
        free(payload);
        return -1;
    }
    out->kind = kind;
    out->count = shape.count;
    out->rows = shape.rows;
    out->cols = shape.cols;
    out->data = payload;
    return 0;
}

int idx_read(const char *path, idx_kind kind, uint32_t rows, uint32_t cols, idx_array *out)
{
    struct stat st;
    unsigned char *bytes = NULL;
    size_t size = 0;

    memset(out, 0, sizeof *out);
    if (stat(path, &st) != 0)
        return dm_fail("cannot open %s: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return dm_fail("%s: expected an IDX %s file, found a directory", path, idx_kind_name(kind));
    if (!S_ISREG(st.st_mode))
        return dm_fail("%s: expected a regular IDX %s file, found a device, FIFO or socket", path,
                       idx_kind_name(kind));
    if ((uint64_t)st.st_size > IDX_MAX_BYTES)
        return dm_fail("%s: file size expected at most %llu bytes (1 GiB), found %lld", path,
                       (unsigned long long)IDX_MAX_BYTES, (long long)st.st_size);
    if (fs_read_file(path, &bytes, &size) != 0)
        return -1;
    int rc = idx_parse(path, bytes, size, kind, rows, cols, out);
    free(bytes);
    return rc;
}

void idx_free(idx_array *a)
{
    if (a == NULL)
        return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
