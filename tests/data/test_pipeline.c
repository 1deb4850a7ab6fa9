/* Tests for the index pipeline: shuffle, shard, batch, repeat and skip. */
#include "check.h"

#include "base/error.h"
#include "data/pipeline.h"

#include <stdbool.h>
#include <stdint.h>

/* Every element index the iterator returns, with each batch's length and epoch. */
typedef struct {
    uint32_t *indices;
    size_t count;
    size_t *batch_lengths;
    uint64_t *batch_epochs;
    size_t batches;
} sequence;

static pipe_config make_config(uint32_t n, uint32_t buffer, uint64_t seed, uint32_t batch)
{
    pipe_config c;
    pipe_config_default(&c);
    c.num_examples = n;
    c.shuffle_buffer = buffer;
    c.seed = seed;
    c.batch_size = batch;
    return c;
}

/* Runs CONFIG to its end, or for MAX_BATCHES batches. */
static sequence collect(const pipe_config *config, size_t max_batches)
{
    sequence s = {0};
    pipe_iter *it = pipe_open(config);
    if (it == NULL) {
        fprintf(stderr, "pipe_open failed: %s\n", dm_error());
        exit(2);
    }
    uint32_t *batch = malloc(config->batch_size * sizeof *batch);
    size_t capacity = 0, batch_capacity = 0, length;
    while (s.batches < max_batches && (length = pipe_next(it, batch)) > 0) {
        if (s.count + length > capacity) {
            capacity = (s.count + length) * 2;
            s.indices = realloc(s.indices, capacity * sizeof *s.indices);
        }
        if (s.batches == batch_capacity) {
            batch_capacity = batch_capacity ? batch_capacity * 2 : 16;
            s.batch_lengths = realloc(s.batch_lengths, batch_capacity * sizeof *s.batch_lengths);
            s.batch_epochs = realloc(s.batch_epochs, batch_capacity * sizeof *s.batch_epochs);
        }
        memcpy(s.indices + s.count, batch, length * sizeof *batch);
        s.count += length;
        s.batch_lengths[s.batches] = length;
        s.batch_epochs[s.batches] = pipe_epoch(it);
        s.batches++;
    }
    free(batch);
    pipe_close(it);
    return s;
}

static void sequence_free(sequence *s)
{
    free(s->indices);
    free(s->batch_lengths);
    free(s->batch_epochs);
    memset(s, 0, sizeof *s);
}

/* True when VALUES contains each of 0..n-1 exactly once. */
static bool is_permutation(const uint32_t *values, size_t count, uint32_t n)
{
    if (count != n)
        return false;
    uint8_t *seen = calloc(n, 1);
    bool ok = true;
    for (size_t i = 0; ok && i < count; i++) {
        ok = values[i] < n && !seen[values[i]];
        if (ok)
            seen[values[i]] = 1;
    }
    free(seen);
    return ok;
}

static bool is_identity(const uint32_t *values, size_t count)
{
    for (size_t i = 0; i < count; i++)
        if (values[i] != i)
            return false;
    return true;
}

static void check_open_fails(const pipe_config *c, const char *message)
{
    pipe_iter *it = pipe_open(c);
    CHECK_MSG(it == NULL, "expected failure containing '%s'", message);
    CHECK_STR_CONTAINS(dm_error(), message);
    pipe_close(it);
}

static void test_config_defaults(void)
{
    pipe_config c;
    pipe_config_default(&c);
    CHECK_INT_EQ(c.shuffle_buffer, 10000);
    CHECK(c.reshuffle_each_iteration);
    CHECK_INT_EQ(c.num_shards, 1);
    CHECK_INT_EQ(c.shard_index, 0);
    CHECK_INT_EQ(c.batch_size, 32);
    CHECK(!c.drop_remainder);
    CHECK_INT_EQ(c.repeat_count, 1);
    CHECK_INT_EQ(c.num_examples, 0);
}

static void test_config_rejects_invalid(void)
{
    pipe_config c = make_config(0, 10, 1, 4);
    check_open_fails(&c, "num_examples must be at least 1");

    c = make_config(10, 10, 1, 4);
    c.num_shards = 0;
    check_open_fails(&c, "num_shards must be at least 1");

    c = make_config(10, 10, 1, 4);
    c.num_shards = 4;
    c.shard_index = 4;
    check_open_fails(&c, "shard_index expected 0..3 for num_shards 4, found 4");

    c = make_config(10, 10, 1, 0);
    check_open_fails(&c, "batch_size must be at least 1");

    c = make_config(10, 10, 1, 4);
    c.repeat_count = -2;
    check_open_fails(&c, "repeat_count expected -1 (forever) or >= 0, found -2");

    c = make_config(3, 10, 1, 1);
    c.num_shards = 4;
    c.shard_index = 3;
    check_open_fails(&c, "shard 3 of 4 would be empty");

    c = make_config(10, 10, 1, 6);
    c.num_shards = 2;
    c.drop_remainder = true;
    check_open_fails(&c, "drop_remainder would drop every batch");
}

/* For each (n, num_shards), the shards of one epoch are disjoint, cover
 * 0..n-1, and shard k contains positions k, k+N, ... of the unsharded order. */
static void test_shard_disjoint_complete(void)
{
    static const uint32_t cases[][2] = {{10, 1}, {10, 3},   {11, 4},   {97, 7},
                                        {5, 5},  {1000, 8}, {1001, 16}};
    static const uint32_t buffers[] = {1, 16, 10000};

    for (size_t b = 0; b < sizeof buffers / sizeof buffers[0]; b++) {
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            uint32_t n = cases[k][0], shards = cases[k][1];
            pipe_config c = make_config(n, buffers[b], 42, 3);
            sequence whole = collect(&c, SIZE_MAX);
            uint32_t *seen = calloc(n, sizeof *seen);
            bool positions_match = true;

            for (uint32_t shard = 0; shard < shards; shard++) {
                c.num_shards = shards;
                c.shard_index = shard;
                sequence part = collect(&c, SIZE_MAX);
                CHECK_INT_EQ(part.count, (n - shard + shards - 1) / shards);
                for (size_t i = 0; i < part.count; i++) {
                    if (part.indices[i] < n)
                        seen[part.indices[i]]++;
                    positions_match =
                        positions_match && part.indices[i] == whole.indices[shard + i * shards];
                }
                sequence_free(&part);
            }
            bool each_once = true;
            for (uint32_t i = 0; i < n; i++)
                each_once = each_once && seen[i] == 1;
            CHECK_MSG(each_once, "n %u, num_shards %u, buffer %u", n, shards, buffers[b]);
            CHECK_MSG(positions_match, "n %u, num_shards %u, buffer %u", n, shards, buffers[b]);
            free(seen);
            sequence_free(&whole);
        }
    }
}

static void test_shard_size_reported(void)
{
    pipe_config c = make_config(11, 1, 0, 2);
    c.num_shards = 4;
    c.shard_index = 2;
    pipe_iter *it = pipe_open(&c);
    CHECK(it != NULL);
    if (it == NULL)
        return;
    CHECK_INT_EQ(pipe_shard_size(it), 3); /* positions 2, 6, 10 */
    CHECK_INT_EQ(pipe_batches_per_epoch(it), 2);
    pipe_close(it);
}

static void test_shuffle_buffer_one_identity(void)
{
    for (uint32_t buffer = 0; buffer <= 1; buffer++) {
        pipe_config c = make_config(50, buffer, 7, 8);
        c.repeat_count = 2;
        sequence s = collect(&c, SIZE_MAX);
        CHECK_INT_EQ(s.count, 100);
        CHECK(is_identity(s.indices, 50));
        CHECK(is_identity(s.indices + 50, 50));
        sequence_free(&s);
    }
}

static void test_shuffle_full_buffer_permutation(void)
{
    static const uint32_t buffers[] = {100, 101, 10000};
    for (size_t b = 0; b < sizeof buffers / sizeof buffers[0]; b++) {
        pipe_config c = make_config(100, buffers[b], 11, 7);
        sequence s = collect(&c, SIZE_MAX);
        CHECK(is_permutation(s.indices, s.count, 100));
        CHECK(!is_identity(s.indices, s.count));
        sequence_free(&s);
    }
}

/* With buffer B, output i is one of inputs 0..i+B-1, and output 0 is one of
 * the first B; over many seeds every one of those B is drawn. */
static void test_shuffle_window_bound(void)
{
    static const uint32_t buffers[] = {2, 5, 32};
    for (size_t b = 0; b < sizeof buffers / sizeof buffers[0]; b++) {
        uint32_t buffer = buffers[b];
        bool first_drawn[32] = {false};
        bool within_window = true, first_within = true, permutation = true;

        for (uint64_t seed = 0; seed < 300; seed++) {
            pipe_config c = make_config(500, buffer, seed, 64);
            sequence s = collect(&c, SIZE_MAX);
            for (size_t i = 0; i < s.count; i++)
                within_window = within_window && s.indices[i] <= i + buffer - 1;
            first_within = first_within && s.indices[0] < buffer;
            if (s.indices[0] < buffer)
                first_drawn[s.indices[0]] = true;
            permutation = permutation && is_permutation(s.indices, s.count, 500);
            sequence_free(&s);
        }
        bool all_drawn = true;
        for (uint32_t i = 0; i < buffer; i++)
            all_drawn = all_drawn && first_drawn[i];
        CHECK_MSG(within_window, "buffer %u", buffer);
        CHECK_MSG(first_within, "buffer %u", buffer);
        CHECK_MSG(permutation, "buffer %u", buffer);
        CHECK_MSG(all_drawn, "buffer %u", buffer);
    }
}

static void test_shuffle_seed_determinism(void)
{
    pipe_config c = make_config(200, 64, 1234, 10);
    sequence a = collect(&c, SIZE_MAX);
    sequence b = collect(&c, SIZE_MAX);
    c.seed = 1235;
    sequence other = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(a.count, 200);
    CHECK_INT_EQ(b.count, 200);
    CHECK(memcmp(a.indices, b.indices, 200 * sizeof *a.indices) == 0);
    CHECK_INT_EQ(other.count, 200);
    CHECK(memcmp(a.indices, other.indices, 200 * sizeof *a.indices) != 0);
    sequence_free(&a);
    sequence_free(&b);
    sequence_free(&other);
}

static void test_reshuffle_each_epoch(void)
{
    pipe_config c = make_config(100, 1000, 5, 9);
    c.repeat_count = 3;
    sequence s = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(s.count, 300);
    CHECK(is_permutation(s.indices, 100, 100));
    CHECK(is_permutation(s.indices + 100, 100, 100));
    CHECK(is_permutation(s.indices + 200, 100, 100));
    CHECK(memcmp(s.indices, s.indices + 100, 100 * sizeof *s.indices) != 0);
    CHECK(memcmp(s.indices + 100, s.indices + 200, 100 * sizeof *s.indices) != 0);

    c.reshuffle_each_iteration = false;
    sequence same = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(same.count, 300);
    CHECK(!is_identity(same.indices, 100));
    CHECK(memcmp(same.indices, same.indices + 100, 100 * sizeof *same.indices) == 0);
    CHECK(memcmp(same.indices, same.indices + 200, 100 * sizeof *same.indices) == 0);
    /* Epoch 0 does not depend on the reshuffle setting. */
    CHECK(memcmp(same.indices, s.indices, 100 * sizeof *s.indices) == 0);
    sequence_free(&s);
    sequence_free(&same);
}

static void test_batch_remainder(void)
{
    pipe_config c = make_config(10, 1, 0, 4);
    c.repeat_count = 2;
    sequence s = collect(&c, SIZE_MAX);
    static const size_t lengths[] = {4, 4, 2, 4, 4, 2};
    static const uint64_t epochs[] = {0, 0, 0, 1, 1, 1};
    CHECK_INT_EQ(s.batches, 6);
    for (size_t i = 0; i < 6 && i < s.batches; i++) {
        CHECK_INT_EQ(s.batch_lengths[i], lengths[i]);
        CHECK_INT_EQ(s.batch_epochs[i], epochs[i]);
    }
    /* The second epoch starts a fresh batch with elements 0..3. */
    CHECK_INT_EQ(s.indices[10], 0);
    CHECK_INT_EQ(s.indices[13], 3);
    CHECK_INT_EQ(s.indices[9], 9);
    sequence_free(&s);
}

static void test_batch_drop_remainder(void)
{
    pipe_config c = make_config(10, 1, 0, 4);
    c.repeat_count = 2;
    c.drop_remainder = true;
    sequence s = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(s.batches, 4);
    for (size_t i = 0; i < s.batches; i++)
        CHECK_INT_EQ(s.batch_lengths[i], 4);
    CHECK_INT_EQ(s.count, 16);
    bool dropped_absent = true;
    for (size_t i = 0; i < s.count; i++)
        dropped_absent = dropped_absent && s.indices[i] < 8;
    CHECK(dropped_absent);
    CHECK_INT_EQ(s.indices[8], 0);
    sequence_free(&s);
}

static void test_repeat_count(void)
{
    pipe_config c = make_config(30, 8, 3, 7);
    c.repeat_count = 3;
    sequence s = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(s.batches, 15); /* 7, 7, 7, 7, 2 per epoch */
    CHECK_INT_EQ(s.count, 90);
    uint32_t counts[30] = {0};
    for (size_t i = 0; i < s.count; i++)
        counts[s.indices[i] % 30]++;
    bool three_each = true;
    for (int i = 0; i < 30; i++)
        three_each = three_each && counts[i] == 3;
    CHECK(three_each);
    CHECK_INT_EQ(s.batch_epochs[14], 2);
    sequence_free(&s);

    c.repeat_count = 0;
    s = collect(&c, SIZE_MAX);
    CHECK_INT_EQ(s.batches, 0);
    sequence_free(&s);

    c.repeat_count = -1;
    s = collect(&c, 1000);
    CHECK_INT_EQ(s.batches, 1000);
    CHECK_INT_EQ(s.batch_epochs[999], 199); /* 5 batches per epoch */
    CHECK(is_permutation(s.indices + 199 * 30, 30, 30));
    sequence_free(&s);
}

static void test_next_after_end_returns_zero(void)
{
    pipe_config c = make_config(5, 1, 0, 5);
    pipe_iter *it = pipe_open(&c);
    uint32_t batch[5];
    CHECK(it != NULL);
    if (it == NULL)
        return;
    CHECK_INT_EQ(pipe_next(it, batch), 5);
    CHECK_INT_EQ(pipe_next(it, batch), 0);
    CHECK_INT_EQ(pipe_next(it, batch), 0);
    CHECK_INT_EQ(pipe_epoch(it), 0);
    CHECK_INT_EQ(pipe_batch_count(it), 1);
    pipe_close(it);
}

/* Skipping K batches on a fresh iterator, then iterating, gives batches
 * K, K+1, ... of an uninterrupted run. */
static void check_skip_matches(const pipe_config *c, size_t reference_batches)
{
    sequence ref = collect(c, reference_batches);
    uint32_t *batch = malloc(c->batch_size * sizeof *batch);
    size_t *offsets = malloc((ref.batches + 1) * sizeof *offsets);
    offsets[0] = 0;
    for (size_t i = 0; i < ref.batches; i++)
        offsets[i + 1] = offsets[i] + ref.batch_lengths[i];

    bool all_match = true, epochs_match = true, counts_match = true;
    for (size_t skip = 0; skip <= ref.batches; skip++) {
        pipe_iter *it = pipe_open(c);
        if (it == NULL || pipe_skip_batches(it, skip) != 0) {
            CHECK_MSG(false, "skip %zu: %s", skip, dm_error());
            pipe_close(it);
            break;
        }
        counts_match = counts_match && pipe_batch_count(it) == skip;
        if (skip > 0)
            epochs_match = epochs_match && pipe_epoch(it) == ref.batch_epochs[skip - 1];
        for (size_t i = skip; i < ref.batches; i++) {
            size_t length = pipe_next(it, batch);
            all_match = all_match && length == ref.batch_lengths[i] &&
                        memcmp(batch, ref.indices + offsets[i], length * sizeof *batch) == 0 &&
                        pipe_epoch(it) == ref.batch_epochs[i];
        }
        if (reference_batches == SIZE_MAX)
            all_match = all_match && pipe_next(it, batch) == 0;
        pipe_close(it);
    }
    CHECK(all_match);
    CHECK(epochs_match);
    CHECK(counts_match);
    free(offsets);
    free(batch);
    sequence_free(&ref);
}

static void test_skip_batches_matches_iteration(void)
{
    pipe_config c = make_config(23, 8, 99, 4);
    c.num_shards = 3;
    c.shard_index = 1;
    c.repeat_count = 3;
    check_skip_matches(&c, SIZE_MAX);

    c.drop_remainder = true;
    check_skip_matches(&c, SIZE_MAX);

    c.drop_remainder = false;
    c.reshuffle_each_iteration = false;
    check_skip_matches(&c, SIZE_MAX);

    c.reshuffle_each_iteration = true;
    c.repeat_count = -1;
    check_skip_matches(&c, 40);
}

static void test_skip_after_iterating(void)
{
    pipe_config c = make_config(40, 16, 8, 6);
    c.repeat_count = 4;
    sequence ref = collect(&c, SIZE_MAX); /* 7 batches per epoch, 28 in all */
    pipe_iter *it = pipe_open(&c);
    uint32_t batch[6];
    CHECK(it != NULL);
    if (it == NULL)
        return;
    CHECK_INT_EQ(pipe_next(it, batch), 6);
    CHECK_INT_EQ(pipe_next(it, batch), 6);
    CHECK_INT_EQ(pipe_skip_batches(it, 10), 0); /* now at batch 12: epoch 1, batch 5 */
    CHECK_INT_EQ(pipe_epoch(it), 1);
    size_t length = pipe_next(it, batch);
    CHECK_INT_EQ(length, 6);
    CHECK(memcmp(batch, ref.indices + 40 + 5 * 6, 6 * sizeof *batch) == 0);
    CHECK_INT_EQ(pipe_next(it, batch), 4);
    CHECK(memcmp(batch, ref.indices + 40 + 6 * 6, 4 * sizeof *batch) == 0);
    CHECK_INT_EQ(pipe_epoch(it), 1);
    pipe_close(it);
    sequence_free(&ref);
}

static void test_skip_epochs_matches_iteration(void)
{
    pipe_config c = make_config(40, 16, 8, 6);
    c.num_shards = 2;
    c.shard_index = 0;
    c.repeat_count = 5;
    sequence ref = collect(&c, SIZE_MAX); /* 20 per shard epoch: 4 batches */
    pipe_iter *it = pipe_open(&c);
    uint32_t batch[6];
    CHECK(it != NULL);
    if (it == NULL)
        return;
    CHECK_INT_EQ(pipe_batches_per_epoch(it), 4);
    CHECK_INT_EQ(pipe_skip_epochs(it, 3), 0);
    CHECK_INT_EQ(pipe_batch_count(it), 12);
    CHECK_INT_EQ(pipe_epoch(it), 2);
    CHECK_INT_EQ(pipe_next(it, batch), 6);
    CHECK_INT_EQ(pipe_epoch(it), 3);
    CHECK(memcmp(batch, ref.indices + 3 * 20, 6 * sizeof *batch) == 0);
    pipe_close(it);
    sequence_free(&ref);
}

static void test_skip_past_end_fails(void)
{
    pipe_config c = make_config(9, 4, 2, 3);
    c.repeat_count = 2; /* 3 batches per epoch, 6 in all */
    pipe_iter *it = pipe_open(&c);
    uint32_t batch[3];
    CHECK(it != NULL);
    if (it == NULL)
        return;
    CHECK_INT_EQ(pipe_next(it, batch), 3);
    CHECK_INT_EQ(pipe_skip_batches(it, 6), -1);
    CHECK_STR_CONTAINS(dm_error(), "cannot skip 6 batches: only 5 of the 6 batches");
    CHECK_INT_EQ(pipe_batch_count(it), 1);
    CHECK_INT_EQ(pipe_skip_epochs(it, 2), -1);
    CHECK_INT_EQ(pipe_skip_batches(it, 5), 0);
    CHECK_INT_EQ(pipe_epoch(it), 1);
    CHECK_INT_EQ(pipe_next(it, batch), 0);
    pipe_close(it);
}

int main(void)
{
    RUN_TEST(test_config_defaults);
    RUN_TEST(test_config_rejects_invalid);
    RUN_TEST(test_shard_disjoint_complete);
    RUN_TEST(test_shard_size_reported);
    RUN_TEST(test_shuffle_buffer_one_identity);
    RUN_TEST(test_shuffle_full_buffer_permutation);
    RUN_TEST(test_shuffle_window_bound);
    RUN_TEST(test_shuffle_seed_determinism);
    RUN_TEST(test_reshuffle_each_epoch);
    RUN_TEST(test_batch_remainder);
    RUN_TEST(test_batch_drop_remainder);
    RUN_TEST(test_repeat_count);
    RUN_TEST(test_next_after_end_returns_zero);
    RUN_TEST(test_skip_batches_matches_iteration);
    RUN_TEST(test_skip_after_iterating);
    RUN_TEST(test_skip_epochs_matches_iteration);
    RUN_TEST(test_skip_past_end_fails);
    return check_finish();
}
