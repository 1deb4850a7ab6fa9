#include "workflow/path_map.h"

#include "base/error.h"

#include <stdlib.h>
#include <string.h>

void wf_path_map_free(path_map *map)
{
    for (size_t i = 0; i < map->count; i++) {
        free(map->items[i].from);
        free(map->items[i].to);
    }
    free(map->items);
    memset(map, 0, sizeof *map);
}

int wf_path_map_add(path_map *map, const char *from, const char *to, bool exact)
{
    path_mapping *items = realloc(map->items, (map->count + 1) * sizeof *items);
    if (items == NULL)
        return dm_fail("out of memory");
    map->items = items;
    items[map->count].from = strdup(from);
    items[map->count].to = strdup(to);
    items[map->count].exact = exact;
    map->count++;
    return 0;
}

static bool path_boundary(char c)
{
    return c == '\0' || c == ' ' || c == '\t' || c == '\n' || c == '\'' || c == '"' || c == '=' ||
           c == ':' || c == ',' || c == ';' || c == '(' || c == ')' || c == '|' || c == '&' ||
           c == '<' || c == '>' || c == '`' || c == '$' || c == '{' || c == '}';
}

char *wf_path_map_apply(const path_map *map, const char *text)
{
    size_t capacity = strlen(text) + 1, size = 0;
    char *out = malloc(capacity);
    if (out == NULL)
        return NULL;
    const char *s = text;
    while (*s != '\0') {
        const path_mapping *best = NULL;
        size_t best_len = 0;
        for (size_t i = 0; i < map->count; i++) {
            const path_mapping *m = &map->items[i];
            size_t n = strlen(m->from);
            if (n <= best_len || strncmp(s, m->from, n) != 0)
                continue;
            bool starts = s == text || path_boundary(s[-1]);
            bool ends = s[n] == '/' || path_boundary(s[n]);
            if (m->exact || (starts && ends)) {
                best = m;
                best_len = n;
            }
        }
        const char *piece = best != NULL ? best->to : s;
        size_t piece_len = best != NULL ? strlen(best->to) : 1;
        if (size + piece_len + 1 > capacity) {
            capacity = (size + piece_len + 1) * 2;
            char *grown = realloc(out, capacity);
            if (grown == NULL) {
                free(out);
                return NULL;
            }
            out = grown;
        }
        memcpy(out + size, piece, piece_len);
        size += piece_len;
        s += best != NULL ? best_len : 1;
    }
    out[size] = '\0';
    return out;
}
