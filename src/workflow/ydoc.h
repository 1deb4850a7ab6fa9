/*
 * A YAML document as a tree of maps, sequences and scalars, read with
 * libyaml, with the line and column of every node so that validation
 * errors can point into the file. Anchors and aliases are rejected, and
 * so is a file of more than one document.
 */
#ifndef DISTML_WORKFLOW_YDOC_H
#define DISTML_WORKFLOW_YDOC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    YDOC_SCALAR,
    YDOC_MAP,
    YDOC_SEQ,
} ydoc_kind;

typedef struct ydoc_node {
    ydoc_kind kind;
    char *value;     /* scalar text, "" for an empty scalar */
    bool plain;      /* an unquoted scalar, so null, true or 12 may be typed */
    int line;        /* 1-based position of the node in the file */
    int column;
    size_t count;    /* map entries or sequence items */
    char **keys;     /* map keys, in file order */
    struct ydoc_node **items; /* map values or sequence items */
} ydoc_node;

/* Parse TEXT (SIZE bytes) into *ROOT; NAME appears in error messages. An
 * empty document gives an empty map. */
int ydoc_parse(const char *text, size_t size, const char *name, ydoc_node **root);

/* Read and parse the file at PATH. */
int ydoc_load_file(const char *path, ydoc_node **root);

void ydoc_free(ydoc_node *node);

/* The value under KEY in MAP, or NULL when MAP is not a map or lacks KEY. */
ydoc_node *ydoc_get(const ydoc_node *map, const char *key);

/* True for a plain scalar that YAML reads as null: "", "~", "null". */
bool ydoc_is_null(const ydoc_node *node);

/* Convert NODE to JSON the way Kubernetes reads YAML: plain scalars that
 * look like integers, floats, booleans or null get those types, other
 * scalars become strings. Returns NULL on allocation failure. */
cJSON *ydoc_to_json(const ydoc_node *node);

/* Write JSON as a YAML document into a malloc'd string (NULL on failure),
 * with block style and the quoting that keeps every string a string. */
char *ydoc_emit_json(const cJSON *json);

#endif
