#include "train/tensorboard.h"

#include "base/clock.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TB_PATH_CAPACITY 4096
#define TB_FILE_VERSION "brain.Event:2"

/* Field numbers from tensorflow/core/util/event.proto and
 * tensorflow/core/framework/summary.proto. */
enum {
    EVENT_WALL_TIME = 1,    /* double */
    EVENT_STEP = 2,         /* int64 */
    EVENT_FILE_VERSION = 3, /* string, in oneof "what" */
    EVENT_SUMMARY = 5,      /* Summary, in oneof "what" */
    SUMMARY_VALUE = 1,      /* repeated Summary.Value */
    VALUE_TAG = 1,          /* string */
    VALUE_SIMPLE_VALUE = 2, /* float, in oneof "value" */
};

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LENGTH_DELIMITED = 2, WIRE_FIXED32 = 5 };

struct tb_writer {
    FILE *file;
    char path[TB_PATH_CAPACITY];
};

/* ---- Protobuf encoding ---- */

/* A growable byte buffer. After an allocation failure it ignores further
 * appends and keeps FAILED set. */
typedef struct {
    unsigned char *data;
    size_t len;
    size_t cap;
    bool failed;
} pb_buffer;

static void pb_append(pb_buffer *buf, const void *bytes, size_t size)
{
    if (buf->failed || size == 0)
        return;
    if (buf->len + size > buf->cap) {
        size_t next = buf->cap ? buf->cap : 64;
        while (next < buf->len + size)
            next *= 2;
        unsigned char *grown = realloc(buf->data, next);
        if (grown == NULL) {
            buf->failed = true;
            return;
        }
        buf->data = grown;
        buf->cap = next;
    }
    memcpy(buf->data + buf->len, bytes, size);
    buf->len += size;
}

static void pb_put_varint(pb_buffer *buf, uint64_t value)
{
    unsigned char bytes[10];
    size_t n = 0;
    do {
        bytes[n] = (unsigned char)(value & 0x7f);
        value >>= 7;
        if (value != 0)
            bytes[n] |= 0x80;
        n++;
    } while (value != 0);
    pb_append(buf, bytes, n);
}

static void pb_put_key(pb_buffer *buf, unsigned field, unsigned wire_type)
{
    pb_put_varint(buf, ((uint64_t)field << 3) | wire_type);
}

static void pb_put_fixed_le(pb_buffer *buf, uint64_t bits, size_t size)
{
    unsigned char bytes[8];
    for (size_t i = 0; i < size; i++)
        bytes[i] = (unsigned char)(bits >> (8 * i));
    pb_append(buf, bytes, size);
}

static void pb_put_double(pb_buffer *buf, unsigned field, double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    pb_put_key(buf, field, WIRE_FIXED64);
    pb_put_fixed_le(buf, bits, 8);
}

static void pb_put_float(pb_buffer *buf, unsigned field, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    pb_put_key(buf, field, WIRE_FIXED32);
    pb_put_fixed_le(buf, bits, 4);
}

/* int64 fields are varints of the two's-complement value, so a negative
 * step takes 10 bytes. */
static void pb_put_int64(pb_buffer *buf, unsigned field, int64_t value)
{
    pb_put_key(buf, field, WIRE_VARINT);
    pb_put_varint(buf, (uint64_t)value);
}

static void pb_put_bytes(pb_buffer *buf, unsigned field, const void *data, size_t size)
{
    pb_put_key(buf, field, WIRE_LENGTH_DELIMITED);
    pb_put_varint(buf, size);
    pb_append(buf, data, size);
}

/* ---- TFRecord framing ---- */

/* Writes one TFRecord: uint64 length, masked CRC-32C of the length bytes,
 * payload, masked CRC-32C of the payload, all little-endian. */
static int write_record(tb_writer *writer, const pb_buffer *payload)
{
    unsigned char header[12];
    unsigned char footer[4];
    uint64_t len = payload->len;

    if (payload->failed)
        return dm_fail("cannot write to %s: out of memory encoding an event", writer->path);
    for (int i = 0; i < 8; i++)
        header[i] = (unsigned char)(len >> (8 * i));
    uint32_t length_crc = crc32c_masked(header, 8);
    uint32_t data_crc = crc32c_masked(payload->data, payload->len);
    for (int i = 0; i < 4; i++) {
        header[8 + i] = (unsigned char)(length_crc >> (8 * i));
        footer[i] = (unsigned char)(data_crc >> (8 * i));
    }
    if (fwrite(header, 1, sizeof header, writer->file) != sizeof header ||
        fwrite(payload->data, 1, payload->len, writer->file) != payload->len ||
        fwrite(footer, 1, sizeof footer, writer->file) != sizeof footer ||
        fflush(writer->file) != 0)
        return dm_fail("cannot write to %s: %s", writer->path, strerror(errno));
    return 0;
}

/* ---- Writer ---- */

/* Opens a new event file in LOG_DIR, never truncating an existing one. */
static FILE *create_event_file(const char *log_dir, char *path, size_t capacity)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';
    for (char *p = host; *p; p++) {
        if (*p == '/')
            *p = '_';
    }
    long long seconds = (long long)dm_wall_seconds();
    int pid = (int)getpid();

    for (int attempt = 0; attempt < 1000; attempt++) {
        char name[512];
        if (attempt == 0)
            snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.v2", seconds, host, pid);
        else
            snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.%d.v2", seconds, host,
                     pid, attempt);
        if (fs_join(path, capacity, log_dir, name) != 0)
            return NULL;
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno == EEXIST)
            continue;
        if (fd < 0) {
            dm_fail("cannot create %s: %s", path, strerror(errno));
            return NULL;
        }
        FILE *file = fdopen(fd, "wb");
        if (file == NULL) {
            dm_fail("cannot open %s: %s", path, strerror(errno));
            close(fd);
        }
        return file;
    }
    dm_fail("cannot create an event file in %s: 1000 names are already taken; remove old "
            "event files or use another log directory",
            log_dir);
    return NULL;
}

tb_writer *tb_open(const char *log_dir)
{
    if (fs_mkdir_p(log_dir) != 0)
        return NULL;
    tb_writer *writer = dm_calloc(1, sizeof *writer);
    if (writer == NULL)
        return NULL;
    writer->file = create_event_file(log_dir, writer->path, sizeof writer->path);
    if (writer->file == NULL) {
        free(writer);
        return NULL;
    }

    pb_buffer event = {0};
    pb_put_double(&event, EVENT_WALL_TIME, dm_wall_seconds());
    pb_put_bytes(&event, EVENT_FILE_VERSION, TB_FILE_VERSION, strlen(TB_FILE_VERSION));
    int rc = write_record(writer, &event);
    free(event.data);
    if (rc != 0) {
        tb_close(writer);
        return NULL;
    }
    return writer;
}

int tb_scalar(tb_writer *writer, const char *tag, int64_t step, float value)
{
    pb_buffer summary_value = {0};
    pb_buffer summary = {0};
    pb_buffer event = {0};

    pb_put_bytes(&summary_value, VALUE_TAG, tag, strlen(tag));
    pb_put_float(&summary_value, VALUE_SIMPLE_VALUE, value);
    pb_put_bytes(&summary, SUMMARY_VALUE, summary_value.data, summary_value.len);
    summary.failed |= summary_value.failed;

    pb_put_double(&event, EVENT_WALL_TIME, dm_wall_seconds());
    /* proto3 leaves a zero step out, as TensorFlow's serializer does. */
    if (step != 0)
        pb_put_int64(&event, EVENT_STEP, step);
    pb_put_bytes(&event, EVENT_SUMMARY, summary.data, summary.len);
    event.failed |= summary.failed;

    int rc = write_record(writer, &event);
    free(summary_value.data);
    free(summary.data);
    free(event.data);
    return rc;
}

int tb_flush(tb_writer *writer)
{
    if (fflush(writer->file) != 0 || fsync(fileno(writer->file)) != 0)
        return dm_fail("cannot flush %s: %s", writer->path, strerror(errno));
    return 0;
}

void tb_close(tb_writer *writer)
{
    if (writer == NULL)
        return;
    if (fclose(writer->file) != 0)
        DM_WARN("closing event file %s failed: %s", writer->path, strerror(errno));
    free(writer);
}

const char *tb_path(const tb_writer *writer)
{
    return writer->path;
}
