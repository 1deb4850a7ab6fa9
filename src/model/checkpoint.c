#include "model/checkpoint.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "model/bundle.h"
#include "model/versions.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#define CKPT_PREFIX "ckpt_"
#define CKPT_PATH_CAPACITY 4096

int ckpt_path(char *out, size_t capacity, const char *dir, int epoch)
{
    char name[32];
    snprintf(name, sizeof name, CKPT_PREFIX "%d", epoch);
    return fs_join(out, capacity, dir, name);
}

/* Parses "ckpt_<epoch>" with a canonical decimal epoch in [1, INT_MAX]. */
static bool parse_ckpt_name(const char *name, int *epoch)
{
    int64_t value;
    size_t prefix_len = strlen(CKPT_PREFIX);
    if (strncmp(name, CKPT_PREFIX, prefix_len) != 0)
        return false;
    if (!versions_parse(name + prefix_len, &value) || value < 1 || value > INT_MAX)
        return false;
    *epoch = (int)value;
    return true;
}

static int compare_descending(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* Removes NAME under DIR when it is "ckpt_<n>.tmp.<pid>" and no process
 * <pid> exists any more, i.e. a save that was killed; returns whether it
 * did. A live pid (even another user's, EPERM) keeps its folder. */
static bool remove_abandoned_save(const char *dir, const char *name)
{
    const char *tmp = strstr(name, ".tmp.");
    char path[CKPT_PATH_CAPACITY];
    char *end = NULL;
    if (tmp == NULL)
        return false;
    long pid = strtol(tmp + 5, &end, 10);
    if (end == tmp + 5 || *end != '\0' || pid <= 0 || pid == (long)getpid())
        return false;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
        return false;
    if (fs_join(path, sizeof path, dir, name) != 0 || fs_remove_tree(path) != 0)
        return false;
    DM_INFO("removed %s, left by an interrupted save of process %ld", path, pid);
    return true;
}

/*
 * Lists the epochs of the ckpt_<n> directories under DIR, newest first,
 * into a malloc'd array. A missing DIR gives an empty list. When WARN is
 * true, other entries whose names start with "ckpt_" get a DM_WARN line.
 */
static int list_epochs(const char *dir, bool warn, int **epochs, size_t *count)
{
    int *list = NULL;
    size_t n = 0, capacity = 0;
    struct dirent *ent;

    *epochs = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0;
        return dm_fail("cannot list checkpoints in %s: %s", dir, strerror(errno));
    }
    while ((ent = readdir(d)) != NULL) {
        char path[CKPT_PATH_CAPACITY];
        int epoch;
        if (strncmp(ent->d_name, CKPT_PREFIX, strlen(CKPT_PREFIX)) != 0)
            continue;
        if (!parse_ckpt_name(ent->d_name, &epoch)) {
            if (warn && !remove_abandoned_save(dir, ent->d_name))
                DM_WARN("ignoring %s/%s: not a checkpoint name, possibly left by an "
                        "interrupted save",
                        dir, ent->d_name);
            continue;
        }
        if (fs_join(path, sizeof path, dir, ent->d_name) != 0 || !fs_is_dir(path))
            continue;
        if (n == capacity) {
            size_t next = capacity ? capacity * 2 : 16;
            int *grown = realloc(list, next * sizeof *grown);
            if (grown == NULL) {
                free(list);
                closedir(d);
                return dm_fail("out of memory listing checkpoints in %s", dir);
            }
            list = grown;
            capacity = next;
        }
        list[n++] = epoch;
    }
    closedir(d);
    if (n > 0)
        qsort(list, n, sizeof *list, compare_descending);
    *epochs = list;
    *count = n;
    return 0;
}

/* Verifies the bundle at PATH and that it is a checkpoint with both files. */
static int verify_checkpoint(const char *path)
{
    char format[128];
    int rc = bundle_verify(path, format, sizeof format);
    if (rc != BUNDLE_OK)
        return rc;
    if (strcmp(format, CKPT_FORMAT) != 0)
        return dm_fail("corrupt checkpoint %s: bundle format is '%s', expected '%s'", path, format,
                       CKPT_FORMAT);
    const char *required[] = {CKPT_TENSORS_FILE, CKPT_STATE_FILE};
    for (size_t i = 0; i < 2; i++) {
        char file[CKPT_PATH_CAPACITY];
        if (fs_join(file, sizeof file, path, required[i]) != 0)
            return BUNDLE_INVALID;
        if (!fs_exists(file))
            return dm_fail("corrupt checkpoint %s: %s is missing", path, required[i]);
    }
    return BUNDLE_OK;
}

int ckpt_save(const char *dir, int epoch, const st_tensor *tensors, size_t count,
              const char *state_json)
{
    char path[CKPT_PATH_CAPACITY];

    if (epoch < 1)
        return dm_fail("cannot save checkpoint in %s: epoch %d is not >= 1", dir, epoch);
    cJSON *state = cJSON_Parse(state_json);
    bool state_ok = cJSON_IsObject(state);
    cJSON_Delete(state);
    if (!state_ok)
        return dm_fail("cannot save checkpoint %d in %s: state is not a JSON object", epoch, dir);
    if (fs_mkdir_p(dir) != 0 || ckpt_path(path, sizeof path, dir, epoch) != 0)
        return -1;

    bundle_writer *writer = bundle_begin(path, CKPT_FORMAT);
    if (writer == NULL)
        return -1;
    if (bundle_add_safetensors(writer, CKPT_TENSORS_FILE, tensors, count, NULL) != 0 ||
        bundle_add_file(writer, CKPT_STATE_FILE, state_json, strlen(state_json)) != 0) {
        bundle_abort(writer);
        return -1;
    }
    return bundle_commit(writer, true);
}

int ckpt_latest(const char *dir, int *epoch)
{
    int *epochs = NULL;
    size_t count = 0;

    *epoch = 0;
    if (list_epochs(dir, true, &epochs, &count) != 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        char path[CKPT_PATH_CAPACITY];
        if (ckpt_path(path, sizeof path, dir, epochs[i]) != 0) {
            free(epochs);
            return -1;
        }
        if (verify_checkpoint(path) == BUNDLE_OK) {
            *epoch = epochs[i];
            break;
        }
        DM_WARN("skipping checkpoint %d: %s", epochs[i], dm_error());
    }
    free(epochs);
    return 0;
}

int ckpt_load(const char *dir, int epoch, st_tensor **tensors, size_t *count, char **state_json)
{
    char path[CKPT_PATH_CAPACITY];
    char file[CKPT_PATH_CAPACITY];
    unsigned char *state = NULL;
    size_t state_size = 0;

    if (ckpt_path(path, sizeof path, dir, epoch) != 0)
        return -1;
    if (verify_checkpoint(path) != BUNDLE_OK)
        return dm_fail_context("cannot load checkpoint %d", epoch);
    if (state_json != NULL && bundle_read_file(path, CKPT_STATE_FILE, &state, &state_size) != 0)
        return dm_fail_context("cannot load checkpoint %d", epoch);
    if (fs_join(file, sizeof file, path, CKPT_TENSORS_FILE) != 0 ||
        st_read(file, tensors, count) != 0) {
        free(state);
        return dm_fail_context("cannot load checkpoint %d", epoch);
    }
    if (state_json != NULL)
        *state_json = (char *)state;
    return 0;
}

int ckpt_prune(const char *dir, int keep)
{
    int *epochs = NULL;
    size_t count = 0;
    int complete_kept = 0;
    int rc = 0;

    if (keep < 1)
        return dm_fail("cannot prune checkpoints in %s: keep is %d, expected >= 1", dir, keep);
    if (list_epochs(dir, false, &epochs, &count) != 0)
        return -1;
    for (size_t i = 0; i < count && rc == 0; i++) {
        char path[CKPT_PATH_CAPACITY];
        rc = ckpt_path(path, sizeof path, dir, epochs[i]);
        if (rc != 0)
            break;
        if (complete_kept < keep) {
            if (verify_checkpoint(path) == BUNDLE_OK)
                complete_kept++;
            continue;
        }
        DM_INFO("removing checkpoint %s (keeping the %d newest)", path, keep);
        rc = fs_remove_tree(path);
    }
    free(epochs);
    return rc;
}
