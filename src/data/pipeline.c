/*
 * The index pipeline. Each epoch's order is computed whole when the epoch
 * starts: the buffer shuffle over all num_examples indices, then this
 * shard's positions compacted to the front of the same array. That costs
 * O(num_examples) time and 4 bytes per example of memory per epoch, and it
 * makes skipping cheap, because an epoch's order depends only on
 * (seed, epoch) and no state carries over from the epochs before it.
 */
#include "data/pipeline.h"

#include "base/error.h"
#include "base/rng.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

struct pipe_iter {
    pipe_config config;
    uint32_t shard_size;
    uint64_t batches_per_epoch;
    uint32_t *order;         /* (num_examples); this shard's elements come first */
    uint32_t *buffer;        /* (min(shuffle_buffer, num_examples)) */
    uint64_t epoch;          /* epoch of the next batch */
    uint64_t batch_in_epoch; /* batches of EPOCH already returned or skipped */
    bool loaded;             /* ORDER contains EPOCH's order */
    uint64_t batch_count;
    uint64_t last_epoch;
};

void pipe_config_default(pipe_config *config)
{
    memset(config, 0, sizeof *config);
    config->shuffle_buffer = PIPE_DEFAULT_SHUFFLE_BUFFER;
    config->seed = 0;
    config->reshuffle_each_iteration = true;
    config->num_shards = 1;
    config->shard_index = 0;
    config->batch_size = PIPE_DEFAULT_BATCH_SIZE;
    config->drop_remainder = false;
    config->repeat_count = 1;
}

static int validate_config(const pipe_config *c)
{
    if (c->num_examples == 0)
        return dm_fail("pipeline: num_examples must be at least 1, found 0");
    if (c->num_shards == 0)
        return dm_fail("pipeline: num_shards must be at least 1, found 0");
    if (c->shard_index >= c->num_shards)
        return dm_fail("pipeline: shard_index expected 0..%u for num_shards %u, found %u",
                       c->num_shards - 1, c->num_shards, c->shard_index);
    if (c->shard_index >= c->num_examples)
        return dm_fail("pipeline: shard %u of %u would be empty because num_examples is only %u",
                       c->shard_index, c->num_shards, c->num_examples);
    if (c->batch_size == 0)
        return dm_fail("pipeline: batch_size must be at least 1, found 0");
    if (c->repeat_count < -1)
        return dm_fail("pipeline: repeat_count expected -1 (forever) or >= 0, found %" PRId64,
                       c->repeat_count);
    return 0;
}

pipe_iter *pipe_open(const pipe_config *config)
{
    if (validate_config(config) != 0)
        return NULL;

    const pipe_config *c = config;
    /* Positions shard_index, shard_index + N, ... below num_examples. */
    uint32_t shard_size = (c->num_examples - c->shard_index - 1) / c->num_shards + 1;
    uint64_t batches = shard_size / c->batch_size;
    if (!c->drop_remainder && shard_size % c->batch_size != 0)
        batches++;
    if (batches == 0) {
        dm_fail("pipeline: batch_size %u is larger than shard %u's %u elements, so "
                "drop_remainder would drop every batch",
                c->batch_size, c->shard_index, shard_size);
        return NULL;
    }

    pipe_iter *it = dm_calloc(1, sizeof *it);
    if (it == NULL)
        return NULL;
    it->config = *c;
    it->shard_size = shard_size;
    it->batches_per_epoch = batches;
    uint32_t buffer_size =
        c->shuffle_buffer < c->num_examples ? c->shuffle_buffer : c->num_examples;
    it->order = dm_malloc((size_t)c->num_examples * sizeof *it->order);
    it->buffer = dm_malloc((size_t)(buffer_size > 0 ? buffer_size : 1) * sizeof *it->buffer);
    if (it->order == NULL || it->buffer == NULL) {
        pipe_close(it);
        return NULL;
    }
    return it;
}

/*
 * Fills it->order with EPOCH's order for this shard. The shuffle keeps a
 * buffer of up to B inputs. Each output takes a uniformly random buffered
 * element, and the next input, if any, fills its slot. So output i is one
 * of inputs 0..i+B-1.
 */
static void load_epoch(pipe_iter *it, uint64_t epoch)
{
    const pipe_config *c = &it->config;
    uint32_t n = c->num_examples;
    uint32_t *order = it->order;

    if (c->shuffle_buffer <= 1) {
        for (uint32_t i = 0; i < n; i++)
            order[i] = i;
    } else {
        uint32_t *buffer = it->buffer;
        uint32_t filled = c->shuffle_buffer < n ? c->shuffle_buffer : n;
        uint32_t next_input = filled;
        uint64_t stream = PIPE_SHUFFLE_STREAM + (c->reshuffle_each_iteration ? epoch : 0);
        dm_rng rng;

        dm_rng_seed(&rng, c->seed, stream);
        for (uint32_t i = 0; i < filled; i++)
            buffer[i] = i;
        for (uint32_t out = 0; out < n; out++) {
            uint32_t slot = (uint32_t)dm_rng_below(&rng, filled);
            order[out] = buffer[slot];
            if (next_input < n)
                buffer[slot] = next_input++;
            else
                buffer[slot] = buffer[--filled];
        }
    }

    /* Keep positions shard_index, shard_index + N, and so on. Position k + j*N
     * is >= j, so compacting forward in place never overwrites an unread one. */
    if (c->num_shards > 1) {
        for (uint32_t j = 0; j < it->shard_size; j++)
            order[j] = order[c->shard_index + (uint64_t)j * c->num_shards];
    }
    it->loaded = true;
}

static bool epochs_done(const pipe_iter *it, uint64_t epoch)
{
    return it->config.repeat_count >= 0 && epoch >= (uint64_t)it->config.repeat_count;
}

size_t pipe_next(pipe_iter *it, uint32_t *indices)
{
    if (it->batch_in_epoch == it->batches_per_epoch) {
        if (epochs_done(it, it->epoch + 1))
            return 0;
        it->epoch++;
        it->batch_in_epoch = 0;
        it->loaded = false;
    }
    if (epochs_done(it, it->epoch))
        return 0;
    if (!it->loaded)
        load_epoch(it, it->epoch);

    uint64_t start = it->batch_in_epoch * it->config.batch_size;
    uint64_t left = it->shard_size - start;
    size_t length = left < it->config.batch_size ? (size_t)left : it->config.batch_size;
    memcpy(indices, it->order + start, length * sizeof *indices);
    it->batch_in_epoch++;
    it->batch_count++;
    it->last_epoch = it->epoch;
    return length;
}

uint64_t pipe_epoch(const pipe_iter *it)
{
    return it->last_epoch;
}

uint64_t pipe_batch_count(const pipe_iter *it)
{
    return it->batch_count;
}

uint64_t pipe_batches_per_epoch(const pipe_iter *it)
{
    return it->batches_per_epoch;
}

uint32_t pipe_shard_size(const pipe_iter *it)
{
    return it->shard_size;
}

int pipe_skip_batches(pipe_iter *it, uint64_t n)
{
    uint64_t per_epoch = it->batches_per_epoch;

    if (n > UINT64_MAX - it->batch_count)
        return dm_fail("pipeline: cannot skip %" PRIu64 " batches: the batch count would overflow",
                       n);
    uint64_t target = it->batch_count + n;
    if (it->config.repeat_count >= 0) {
        uint64_t epochs = (uint64_t)it->config.repeat_count;
        uint64_t total = epochs > UINT64_MAX / per_epoch ? UINT64_MAX : epochs * per_epoch;
        if (target > total)
            return dm_fail("pipeline: cannot skip %" PRIu64 " batches: only %" PRIu64
                           " of the %" PRIu64 " batches in %" PRIu64 " epochs remain",
                           n, total - it->batch_count, total, epochs);
    }
    if (n == 0)
        return 0;

    uint64_t epoch = target / per_epoch;
    uint64_t batch = target % per_epoch;
    /* Stay at the end of the last epoch reached rather than at batch 0 of the
     * next, so pipe_epoch keeps naming the epoch of the last batch skipped. */
    if (batch == 0) {
        epoch--;
        batch = per_epoch;
    }
    if (epoch != it->epoch)
        it->loaded = false;
    it->epoch = epoch;
    it->batch_in_epoch = batch;
    it->batch_count = target;
    it->last_epoch = epoch;
    return 0;
}

int pipe_skip_epochs(pipe_iter *it, uint64_t n)
{
    if (n > UINT64_MAX / it->batches_per_epoch)
        return dm_fail("pipeline: cannot skip %" PRIu64 " epochs: the batch count would overflow",
                       n);
    return pipe_skip_batches(it, n * it->batches_per_epoch);
}

void pipe_close(pipe_iter *it)
{
    if (it == NULL)
        return;
    free(it->order);
    free(it->buffer);
    free(it);
}
