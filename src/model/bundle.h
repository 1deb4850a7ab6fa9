/*
 * Bundles: a directory of files plus manifest.json, which records a format
 * string and each file's name, byte size and SHA-256. Model versions and
 * checkpoints are stored as bundles.
 *
 * A writer fills a temporary directory next to the final path and, on
 * commit, writes manifest.json last, fsyncs it and renames the directory
 * into place. A reader therefore sees no bundle, a leftover temporary
 * directory or a complete bundle. A directory without manifest.json is
 * incomplete, and one whose files disagree with it is corrupt.
 *
 * File names inside a bundle are restricted to [A-Za-z0-9._-], must not
 * start with '.', and "manifest.json" is reserved, so a name can never
 * leave the directory.
 *
 * manifest.json:
 *   {"format": "distml-checkpoint",
 *    "files": [{"name": "state.json", "size": 42, "sha256": "<64 hex>"}, ...]}
 */
#ifndef DISTML_MODEL_BUNDLE_H
#define DISTML_MODEL_BUNDLE_H

#include "model/safetensors.h"

#include <stdbool.h>
#include <stddef.h>

#define BUNDLE_MANIFEST "manifest.json"
#define BUNDLE_NAME_MAX 128 /* maximum length of a file name inside a bundle */

/* Results of bundle_verify. Every failure is negative, so `rc != 0` and
 * `rc < 0` both test for "not usable". */
enum {
    BUNDLE_OK = 0,
    BUNDLE_INVALID = -1,    /* corrupt, unreadable or not found */
    BUNDLE_INCOMPLETE = -2, /* the directory exists but has no manifest.json */
};

typedef struct bundle_writer bundle_writer;

/* Starts a bundle of FORMAT that bundle_commit will move to FINAL_DIR,
 * creating the temporary directory "<FINAL_DIR>.tmp.<pid>" and any missing
 * parents. Returns NULL with dm_error() set on failure. */
bundle_writer *bundle_begin(const char *final_dir, const char *format);

/* Writes NAME into the bundle with SIZE bytes from DATA. */
int bundle_add_file(bundle_writer *writer, const char *name, const void *data, size_t size);

/* Writes a safetensors file NAME into the bundle (see st_write). */
int bundle_add_safetensors(bundle_writer *writer, const char *name, const st_tensor *tensors,
                           size_t count, const char *const *metadata_kv);

/* Records NAME, which the caller has already written (and closed) inside
 * bundle_writer_dir(WRITER); its size and SHA-256 are read from disk. */
int bundle_add_existing(bundle_writer *writer, const char *name);

/* The temporary directory that the bundle's files are written into. */
const char *bundle_writer_dir(const bundle_writer *writer);

/*
 * Writes manifest.json, fsyncs it and renames the directory to the final
 * path. An existing final directory is replaced when REPLACE is true and
 * is an error otherwise. WRITER is freed either way, and on failure its
 * temporary directory is removed.
 */
int bundle_commit(bundle_writer *writer, bool replace);

/* Removes the temporary directory and frees WRITER (NULL is ignored). */
void bundle_abort(bundle_writer *writer);

/*
 * Checks that DIR contains a parseable manifest.json and every listed file
 * with the listed size and SHA-256, and no unlisted file. On BUNDLE_OK the
 * format string is copied into FORMAT_OUT (which may be NULL). Returns
 * BUNDLE_OK, BUNDLE_INCOMPLETE or BUNDLE_INVALID, with dm_error() naming
 * the file and what differs.
 */
int bundle_verify(const char *dir, char *format_out, size_t capacity);

/* Reads file NAME of the bundle in DIR into a malloc'd, NUL-terminated
 * buffer (the NUL is not counted in *SIZE). It does not verify the bundle. */
int bundle_read_file(const char *dir, const char *name, unsigned char **data, size_t *size);

/* Whether NAME is allowed as a file name inside a bundle. */
bool bundle_name_valid(const char *name);

#endif
