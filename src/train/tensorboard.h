/*
 * TensorBoard event files: TFRecord-framed tensorflow.Event protobufs,
 * hand-encoded. Only scalar summaries are written, as Summary.Value with
 * simple_value, which TensorBoard's scalars dashboard reads.
 *
 * Each record is flushed as it is written, so a reader sees only complete
 * records and a crash leaves at most a truncated last record, which
 * TensorBoard's reader skips. A writer is not thread-safe.
 */
#ifndef DISTML_TRAIN_TENSORBOARD_H
#define DISTML_TRAIN_TENSORBOARD_H

#include <stdint.h>

typedef struct tb_writer tb_writer;

/*
 * Creates LOG_DIR and its parents, then the event file
 * "events.out.tfevents.<%010lld seconds>.<hostname>.<pid>.v2" (with a
 * counter before ".v2" when that name is taken), and writes the first
 * record, Event{wall_time, file_version = "brain.Event:2"}. Returns NULL
 * with dm_error() set on failure.
 */
tb_writer *tb_open(const char *log_dir);

/* Appends Event{wall_time, step, summary = {value = [{tag, simple_value}]}}
 * and flushes it to the kernel. */
int tb_scalar(tb_writer *writer, const char *tag, int64_t step, float value);

/* Flushes buffered records and fsyncs the file. */
int tb_flush(tb_writer *writer);

/* Closes the file and frees WRITER (NULL is ignored). A close error is
 * logged with DM_WARN. */
void tb_close(tb_writer *writer);

/* Path of the event file. */
const char *tb_path(const tb_writer *writer);

#endif
