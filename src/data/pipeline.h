/*
 * Index pipeline with tf.data semantics over the element indices
 * 0..num_examples-1, in this order:
 *
 *   source -> shuffle(buffer, seed, reshuffle) -> shard(num_shards, index)
 *          -> batch(batch_size, drop_remainder) -> repeat(count)
 *
 * The examples themselves stay in memory as uint8; the caller turns each
 * batch of indices into float32 with ds_fill_batch. Every rank shuffles the
 * whole epoch with the same seed, so all ranks agree on one order, and shard
 * k keeps positions k, k+N, k+2N, ... of it. The shards of an epoch are
 * therefore disjoint and together contain every element once.
 */
#ifndef DISTML_DATA_PIPELINE_H
#define DISTML_DATA_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PIPE_DEFAULT_SHUFFLE_BUFFER 10000
#define PIPE_DEFAULT_BATCH_SIZE 32
/* Epoch E shuffles with dm_rng stream PIPE_SHUFFLE_STREAM + E of the seed
 * (stream PIPE_SHUFFLE_STREAM for every epoch when reshuffling is off).
 * Other users of the same seed should draw from other streams. */
#define PIPE_SHUFFLE_STREAM 0x7368756600000000ull /* "shuf" */

typedef struct {
    uint32_t num_examples;
    /* Size of the tf.data shuffle buffer. Each output is a uniformly random
     * element of the buffer, and the next input takes its slot. 0 or 1 keeps
     * the input order, and a buffer >= num_examples gives a uniform
     * permutation. */
    uint32_t shuffle_buffer;
    uint64_t seed;
    bool reshuffle_each_iteration; /* a new order every epoch, else the same one */
    uint32_t num_shards, shard_index;
    uint32_t batch_size;
    bool drop_remainder;  /* drop each epoch's last batch when it is partial */
    int64_t repeat_count; /* epochs to produce; -1 repeats forever */
} pipe_config;

typedef struct pipe_iter pipe_iter;

/* Sets shuffle_buffer 10000, seed 0, reshuffle_each_iteration true, one
 * shard, batch_size 32, drop_remainder false, repeat_count 1, and
 * num_examples 0, which the caller must set. */
void pipe_config_default(pipe_config *config);

/* Validates CONFIG and returns a new iterator, or NULL with the reason in
 * dm_error(). CONFIG is copied. */
pipe_iter *pipe_open(const pipe_config *config);

/* Writes the next batch's element indices to INDICES (room for batch_size)
 * and returns the batch length, or 0 when all epochs are done. */
size_t pipe_next(pipe_iter *it, uint32_t *indices);

/* Returns the 0-based epoch of the batch returned (or skipped) last, or 0
 * before the first one. */
uint64_t pipe_epoch(const pipe_iter *it);

/* Returns the number of batches returned or skipped so far. Opening a new
 * iterator with the same config and skipping that many batches resumes the
 * same sequence. */
uint64_t pipe_batch_count(const pipe_iter *it);

/* Returns the number of batches in one epoch of this shard. */
uint64_t pipe_batches_per_epoch(const pipe_iter *it);

/* Returns the number of elements in this shard per epoch. */
uint32_t pipe_shard_size(const pipe_iter *it);

/* Advances past N batches as if pipe_next had been called N times, without
 * shuffling the epochs skipped over. Fails, leaving IT unchanged, when fewer
 * than N batches remain. */
int pipe_skip_batches(pipe_iter *it, uint64_t n);

/* Skips N * pipe_batches_per_epoch batches, so that from the start of
 * epoch E the next batch is the first of epoch E + N. */
int pipe_skip_epochs(pipe_iter *it, uint64_t n);

/* Frees IT. IT may be NULL. */
void pipe_close(pipe_iter *it);

#endif
