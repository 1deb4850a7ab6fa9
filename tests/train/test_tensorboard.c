/*
 * TensorBoard event writer: file name, TFRecord framing and the exact bytes
 * of the hand-encoded Event protobufs. Also leaves a known event file and
 * prints "event file: <path>" for test_tensorboard_events.py, which decodes
 * it with the protobuf library:
 *   epoch_loss           steps 0, 1, 2  values 0.5, 0.25, 0.125
 *   epoch_learning_rate  steps 0, 1, 2  values 0.001, 0.0005, 0.00025
 *   epoch_loss           step -3        value -1.5
 */
#include "base/crc32c.h"
#include "base/error.h"
#include "base/fsutil.h"
#include "check.h"
#include "train/tensorboard.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    const unsigned char *payload;
    size_t size;
} record;

static uint64_t load_le(const unsigned char *p, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Split DATA into TFRecords and check both CRCs of each. Returns the record
 * count, or -1 at the first framing or CRC error. */
static int split_records(const unsigned char *data, size_t size, record *out, int capacity)
{
    int count = 0;
    size_t pos = 0;
    while (pos < size) {
        if (size - pos < 12 || count == capacity)
            return -1;
        uint64_t len = load_le(data + pos, 8);
        if (load_le(data + pos + 8, 4) != crc32c_masked(data + pos, 8))
            return -1;
        if (size - pos - 12 < len + 4)
            return -1;
        const unsigned char *payload = data + pos + 12;
        if (load_le(payload + len, 4) != crc32c_masked(payload, (size_t)len))
            return -1;
        out[count].payload = payload;
        out[count].size = (size_t)len;
        count++;
        pos += 12 + (size_t)len + 4;
    }
    return count;
}

static bool name_matches_pattern(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *prefix = "events.out.tfevents.";
    if (strncmp(base, prefix, strlen(prefix)) != 0)
        return false;
    const char *p = base + strlen(prefix);
    for (int i = 0; i < 10; i++, p++) {
        if (*p < '0' || *p > '9')
            return false;
    }
    if (*p != '.')
        return false;
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".%d.v2", (int)getpid());
    size_t len = strlen(base), suffix_len = strlen(suffix);
    return len > suffix_len && strcmp(base + len - suffix_len, suffix) == 0;
}

static void test_event_file(void)
{
    char log_dir[4096];
    fs_join(log_dir, sizeof log_dir, check_tmpdir("tensorboard"), "logs/train");

    tb_writer *writer = tb_open(log_dir);
    CHECK_MSG(writer != NULL, "%s", dm_error());
    if (writer == NULL)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s", tb_path(writer));
    CHECK_MSG(name_matches_pattern(path), "unexpected event file name %s", path);

    const float losses[3] = {0.5f, 0.25f, 0.125f};
    const float rates[3] = {0.001f, 0.0005f, 0.00025f};
    for (int step = 0; step < 3; step++) {
        CHECK_INT_EQ(tb_scalar(writer, "epoch_loss", step, losses[step]), 0);
        CHECK_INT_EQ(tb_scalar(writer, "epoch_learning_rate", step, rates[step]), 0);
    }
    CHECK_INT_EQ(tb_scalar(writer, "epoch_loss", -3, -1.5f), 0);

    /* Records are flushed one by one, so the file is complete before close. */
    unsigned char *data = NULL;
    size_t size = 0;
    CHECK_INT_EQ(fs_read_file(path, &data, &size), 0);
    record records[16];
    int count = data ? split_records(data, size, records, 16) : -1;
    CHECK_INT_EQ(count, 8);
    free(data);

    CHECK_INT_EQ(tb_flush(writer), 0);
    tb_close(writer);

    data = NULL;
    CHECK_INT_EQ(fs_read_file(path, &data, &size), 0);
    count = data ? split_records(data, size, records, 16) : -1;
    CHECK_INT_EQ(count, 8);
    if (count != 8) {
        free(data);
        return;
    }

    /* Event{wall_time (field 1, fixed64), file_version (field 3) = "brain.Event:2"} */
    static const unsigned char version_tail[] = {0x1a, 0x0d, 'b', 'r', 'a', 'i', 'n', '.',
                                                 'E',  'v',  'e', 'n', 't', ':', '2'};
    CHECK_INT_EQ(records[0].size, 9 + sizeof version_tail);
    CHECK(records[0].payload[0] == 0x09);
    if (records[0].size == 9 + sizeof version_tail)
        CHECK(memcmp(records[0].payload + 9, version_tail, sizeof version_tail) == 0);

    /* Step 0 is left out, as proto3 does with zero values:
     * 2a 13 = summary (field 5), 19 bytes; 0a 11 = value (field 1), 17 bytes;
     * 0a 0a "epoch_loss" = tag; 15 00 00 00 3f = simple_value 0.5f. */
    static const unsigned char loss0_tail[] = {0x2a, 0x13, 0x0a, 0x11, 0x0a, 0x0a, 'e',
                                               'p',  'o',  'c',  'h',  '_',  'l',  'o',
                                               's',  's',  0x15, 0x00, 0x00, 0x00, 0x3f};
    CHECK_INT_EQ(records[1].size, 9 + sizeof loss0_tail);
    CHECK(records[1].payload[0] == 0x09);
    if (records[1].size == 9 + sizeof loss0_tail)
        CHECK(memcmp(records[1].payload + 9, loss0_tail, sizeof loss0_tail) == 0);

    /* Step 1: 10 01 = step (field 2, varint 1) before the summary. */
    static const unsigned char step1[] = {0x10, 0x01, 0x2a};
    CHECK(records[3].size > 9 + sizeof step1);
    if (records[3].size > 9 + sizeof step1)
        CHECK(memcmp(records[3].payload + 9, step1, sizeof step1) == 0);

    /* Step -3: a 10-byte two's-complement varint. */
    static const unsigned char step_minus3[] = {0x10, 0xfd, 0xff, 0xff, 0xff, 0xff,
                                                0xff, 0xff, 0xff, 0xff, 0x01, 0x2a};
    CHECK(records[7].size > 9 + sizeof step_minus3);
    if (records[7].size > 9 + sizeof step_minus3)
        CHECK(memcmp(records[7].payload + 9, step_minus3, sizeof step_minus3) == 0);

    /* wall_time is a current Unix time in seconds. */
    double wall_time;
    uint64_t bits = load_le(records[1].payload + 1, 8);
    memcpy(&wall_time, &bits, sizeof wall_time);
    CHECK(wall_time > 1.6e9);
    CHECK(wall_time < 4.0e9);
    free(data);

    printf("event file: %s\n", path);
}

static void test_second_writer(void)
{
    char log_dir[4096];
    fs_join(log_dir, sizeof log_dir, check_tmpdir("tensorboard_two"), "run");
    tb_writer *first = tb_open(log_dir);
    tb_writer *second = tb_open(log_dir);
    CHECK(first != NULL);
    CHECK(second != NULL);
    if (first != NULL && second != NULL) {
        CHECK(strcmp(tb_path(first), tb_path(second)) != 0);
        CHECK(fs_exists(tb_path(first)));
        CHECK(fs_exists(tb_path(second)));
    }
    tb_close(first);
    tb_close(second);
}

static void test_open_fails(void)
{
    char blocker[4096];
    fs_join(blocker, sizeof blocker, check_tmpdir("tensorboard_fail"), "file");
    FILE *f = fopen(blocker, "w");
    fclose(f);
    CHECK(tb_open(blocker) == NULL);
    CHECK_STR_CONTAINS(dm_error(), blocker);
}

int main(void)
{
    RUN_TEST(test_event_file);
    RUN_TEST(test_second_writer);
    RUN_TEST(test_open_fails);
    return check_finish();
}
