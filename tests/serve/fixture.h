/* Reads the image fixtures in tests/serve/fixtures, found next to this
 * file through __FILE__ (CMake compiles the tests with absolute paths). */
#ifndef DISTML_TESTS_SERVE_FIXTURE_H
#define DISTML_TESTS_SERVE_FIXTURE_H

#include "base/fsutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returns the malloc'd bytes of fixture NAME, exiting when it is missing. */
static inline unsigned char *fixture_read(const char *name, size_t *size)
{
    char path[4096];
    const char *slash = strrchr(__FILE__, '/');
    int dir_length = slash != NULL ? (int)(slash - __FILE__) : 1;
    snprintf(path, sizeof path, "%.*s/fixtures/%s", dir_length, slash != NULL ? __FILE__ : ".",
             name);
    unsigned char *data = NULL;
    if (fs_read_file(path, &data, size) != 0) {
        fprintf(stderr, "cannot read fixture %s\n", path);
        exit(2);
    }
    return data;
}

#endif
