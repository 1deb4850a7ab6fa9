#include "model/versions.h"

#include "base/error.h"
#include "base/fsutil.h"
#include "base/log.h"
#include "model/bundle.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

bool versions_parse(const char *name, int64_t *version)
{
    int64_t value = 0;

    if (name[0] == '\0' || (name[0] == '0' && name[1] != '\0'))
        return false;
    for (const char *p = name; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        int digit = *p - '0';
        if (value > (INT64_MAX - digit) / 10)
            return false;
        value = value * 10 + digit;
    }
    *version = value;
    return true;
}

int versions_path(char *out, size_t capacity, const char *base, int64_t version)
{
    char name[32];
    snprintf(name, sizeof name, "%lld", (long long)version);
    return fs_join(out, capacity, base, name);
}

static int compare_versions(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int versions_list(const char *base, int64_t **versions, size_t *count)
{
    int64_t *list = NULL;
    size_t n = 0, capacity = 0;
    struct dirent *ent;

    DIR *d = opendir(base);
    if (d == NULL)
        return dm_fail("cannot list versions in %s: %s", base, strerror(errno));
    while ((ent = readdir(d)) != NULL) {
        char path[4096];
        int64_t version;
        if (!versions_parse(ent->d_name, &version))
            continue;
        if (fs_join(path, sizeof path, base, ent->d_name) != 0 || !fs_is_dir(path))
            continue;
        if (n == capacity) {
            size_t next = capacity ? capacity * 2 : 16;
            int64_t *grown = realloc(list, next * sizeof *grown);
            if (grown == NULL) {
                free(list);
                closedir(d);
                return dm_fail("out of memory listing versions in %s", base);
            }
            list = grown;
            capacity = next;
        }
        list[n++] = version;
    }
    closedir(d);
    if (n > 0)
        qsort(list, n, sizeof *list, compare_versions);
    *versions = list;
    *count = n;
    return 0;
}

int versions_latest_complete(const char *base, int64_t *version)
{
    int64_t *list = NULL;
    size_t count = 0;

    if (versions_list(base, &list, &count) != 0)
        return -1;
    *version = -1;
    for (size_t i = count; i-- > 0;) {
        char path[4096];
        if (versions_path(path, sizeof path, base, list[i]) != 0) {
            free(list);
            return -1;
        }
        if (bundle_verify(path, NULL, 0) == BUNDLE_OK) {
            *version = list[i];
            break;
        }
        DM_WARN("skipping version %lld: %s", (long long)list[i], dm_error());
    }
    free(list);
    return 0;
}

int versions_next(const char *base, int64_t *next)
{
    int64_t *list = NULL;
    size_t count = 0;

    if (!fs_exists(base)) {
        *next = 1;
        return 0;
    }
    if (versions_list(base, &list, &count) != 0)
        return -1;
    if (count == 0) {
        *next = 1;
    } else if (list[count - 1] == INT64_MAX) {
        free(list);
        return dm_fail("cannot pick the next version in %s: version %lld is the maximum", base,
                       (long long)INT64_MAX);
    } else {
        *next = list[count - 1] + 1;
    }
    free(list);
    return 0;
}
