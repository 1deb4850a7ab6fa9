/*
 * File-system helpers. Writers that readers may race with go through a
 * temporary name in the same directory and rename(2), so a reader sees the
 * old file or the whole new one, never a part.
 */
#ifndef DISTML_BASE_FSUTIL_H
#define DISTML_BASE_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* Create PATH and its missing parents (mode 0755). */
int fs_mkdir_p(const char *path);

/* Remove PATH recursively; a missing PATH is not an error. */
int fs_remove_tree(const char *path);

bool fs_exists(const char *path);
bool fs_is_dir(const char *path);

/* Read a whole regular file; *data is malloc'd and NUL-terminated (not
 * counted in *size). Devices, FIFOs and sockets are rejected. */
int fs_read_file(const char *path, unsigned char **data, size_t *size);

/* Write DATA to PATH atomically: PATH.tmp.<pid>, fsync, rename. */
int fs_write_file_atomic(const char *path, const void *data, size_t size);

/* Write to an open temporary file created by fs_temp_open, then commit or
 * abandon it. */
typedef struct {
    char final_path[4096];
    char temp_path[4096];
    int fd;
} fs_temp_file;

int fs_temp_open(fs_temp_file *file, const char *final_path);
int fs_temp_write(fs_temp_file *file, const void *data, size_t size);
int fs_temp_commit(fs_temp_file *file);
void fs_temp_abandon(fs_temp_file *file);

/* Make a fresh temporary directory next to FINAL_DIR, named
 * "<FINAL_DIR>.tmp.<pid>", removing a stale one first. */
int fs_temp_dir(const char *final_dir, char *temp_dir, size_t capacity);

/* Move a finished temporary directory into place. When FINAL_DIR exists
 * and REPLACE is true it is moved aside and removed after the rename;
 * when REPLACE is false an existing FINAL_DIR is an error. */
int fs_commit_dir(const char *temp_dir, const char *final_dir, bool replace);

/* fsync the directory that contains PATH, so a rename survives a crash. */
int fs_sync_parent(const char *path);

/* Join A and B with one '/', writing into OUT; fails when it does not fit. */
int fs_join(char *out, size_t capacity, const char *a, const char *b);

#endif
