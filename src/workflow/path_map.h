/*
 * Path mappings for running a pod's commands on this machine: each
 * mountPath (or other container path) in commands, arguments and
 * environment values is replaced by the local folder that backs it.
 */
#ifndef DISTML_WORKFLOW_PATH_MAP_H
#define DISTML_WORKFLOW_PATH_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *from;
    char *to;
    bool exact; /* replace every occurrence, not only at path boundaries */
} path_mapping;

typedef struct {
    path_mapping *items;
    size_t count;
} path_map;

/* Free MAP's entries and leave it empty. */
void wf_path_map_free(path_map *map);

/* Add FROM -> TO to MAP, copying both strings. */
int wf_path_map_add(path_map *map, const char *from, const char *to, bool exact);

/* Replace mapped paths in TEXT and return a malloc'd string (NULL when out
 * of memory). Longer source paths are tried first, so /data/models wins
 * over /data. */
char *wf_path_map_apply(const path_map *map, const char *text);

#endif
