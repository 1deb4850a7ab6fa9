#include "workflow/ydoc.h"

#include "base/error.h"
#include "base/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

/* Nesting beyond this is rejected, so a hostile file cannot exhaust the
 * stack of the recursive builder. */
#define YDOC_MAX_DEPTH 64

typedef struct {
    yaml_parser_t parser;
    const char *name;
} ydoc_reader;

static ydoc_node *node_new(ydoc_kind kind, const yaml_mark_t *mark)
{
    ydoc_node *node = dm_calloc(1, sizeof *node);
    if (node == NULL)
        return NULL;
    node->kind = kind;
    node->line = (int)mark->line + 1;
    node->column = (int)mark->column + 1;
    return node;
}

static int node_append(ydoc_node *parent, char *key, ydoc_node *child)
{
    size_t n = parent->count + 1;
    ydoc_node **items = realloc(parent->items, n * sizeof *items);
    if (items == NULL)
        return dm_fail("out of memory");
    parent->items = items;
    if (parent->kind == YDOC_MAP) {
        char **keys = realloc(parent->keys, n * sizeof *keys);
        if (keys == NULL)
            return dm_fail("out of memory");
        parent->keys = keys;
        keys[n - 1] = key;
    }
    items[n - 1] = child;
    parent->count = n;
    return 0;
}

static int reader_fail(ydoc_reader *r)
{
    const yaml_parser_t *p = &r->parser;
    return dm_fail("%s:%d:%d: invalid YAML: %s%s%s", r->name, (int)p->problem_mark.line + 1,
                   (int)p->problem_mark.column + 1, p->problem ? p->problem : "parse error",
                   p->context ? " " : "", p->context ? p->context : "");
}

static int next_event(ydoc_reader *r, yaml_event_t *event)
{
    if (!yaml_parser_parse(&r->parser, event))
        return reader_fail(r);
    return 0;
}

static int build_node(ydoc_reader *r, yaml_event_t *event, int depth, ydoc_node **out);

/* Read the children of a map or sequence whose start event was consumed. */
static int build_children(ydoc_reader *r, ydoc_node *node, int depth)
{
    const yaml_event_type_t end =
        node->kind == YDOC_MAP ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
    for (;;) {
        yaml_event_t event;
        if (next_event(r, &event) != 0)
            return -1;
        if (event.type == end) {
            yaml_event_delete(&event);
            return 0;
        }
        char *key = NULL;
        if (node->kind == YDOC_MAP) {
            if (event.type != YAML_SCALAR_EVENT) {
                int line = (int)event.start_mark.line + 1, col = (int)event.start_mark.column + 1;
                yaml_event_delete(&event);
                return dm_fail("%s:%d:%d: a map key must be a scalar", r->name, line, col);
            }
            key = strdup((const char *)event.data.scalar.value);
            yaml_event_delete(&event);
            if (key == NULL)
                return dm_fail("out of memory");
            for (size_t i = 0; i < node->count; i++) {
                if (strcmp(node->keys[i], key) == 0) {
                    int rc = dm_fail("%s:%d:%d: duplicate key '%s'", r->name, node->line,
                                     node->column, key);
                    free(key);
                    return rc;
                }
            }
            if (next_event(r, &event) != 0) {
                free(key);
                return -1;
            }
        }
        ydoc_node *child = NULL;
        int rc = build_node(r, &event, depth + 1, &child);
        yaml_event_delete(&event);
        if (rc != 0 || node_append(node, key, child) != 0) {
            free(key);
            ydoc_free(child);
            return -1;
        }
    }
}

/* Build the node that starts with EVENT; the caller deletes EVENT. */
static int build_node(ydoc_reader *r, yaml_event_t *event, int depth, ydoc_node **out)
{
    const int line = (int)event->start_mark.line + 1, col = (int)event->start_mark.column + 1;
    *out = NULL;
    if (depth > YDOC_MAX_DEPTH)
        return dm_fail("%s:%d:%d: nesting deeper than %d levels", r->name, line, col,
                       YDOC_MAX_DEPTH);
    switch (event->type) {
    case YAML_SCALAR_EVENT: {
        ydoc_node *node = node_new(YDOC_SCALAR, &event->start_mark);
        if (node == NULL)
            return -1;
        node->value = strdup((const char *)event->data.scalar.value);
        node->plain = event->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                      event->data.scalar.tag == NULL;
        if (node->value == NULL) {
            ydoc_free(node);
            return dm_fail("out of memory");
        }
        *out = node;
        return 0;
    }
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        ydoc_node *node =
            node_new(event->type == YAML_MAPPING_START_EVENT ? YDOC_MAP : YDOC_SEQ,
                     &event->start_mark);
        if (node == NULL)
            return -1;
        if (build_children(r, node, depth) != 0) {
            ydoc_free(node);
            return -1;
        }
        *out = node;
        return 0;
    }
    case YAML_ALIAS_EVENT:
        return dm_fail("%s:%d:%d: YAML aliases (*name) are not supported; write the value out",
                       r->name, line, col);
    default:
        return dm_fail("%s:%d:%d: unexpected YAML event", r->name, line, col);
    }
}

int ydoc_parse(const char *text, size_t size, const char *name, ydoc_node **root)
{
    ydoc_reader r = {.name = name};
    ydoc_node *doc = NULL;
    int rc = -1;
    bool done = false;

    *root = NULL;
    if (!yaml_parser_initialize(&r.parser))
        return dm_fail("out of memory");
    yaml_parser_set_input_string(&r.parser, (const unsigned char *)text, size);
    while (!done) {
        yaml_event_t event;
        if (next_event(&r, &event) != 0)
            goto out;
        switch (event.type) {
        case YAML_STREAM_END_EVENT:
            done = true;
            break;
        case YAML_STREAM_START_EVENT:
        case YAML_DOCUMENT_START_EVENT:
        case YAML_DOCUMENT_END_EVENT:
            break;
        default:
            if (doc != NULL) {
                dm_fail("%s:%d:%d: more than one YAML document; put one workflow in a file", name,
                        (int)event.start_mark.line + 1, (int)event.start_mark.column + 1);
                yaml_event_delete(&event);
                goto out;
            }
            if (build_node(&r, &event, 0, &doc) != 0) {
                yaml_event_delete(&event);
                goto out;
            }
            break;
        }
        yaml_event_delete(&event);
    }
    if (doc == NULL || ydoc_is_null(doc)) {
        yaml_mark_t start = {0};
        ydoc_free(doc);
        doc = node_new(YDOC_MAP, &start);
        if (doc == NULL)
            goto out;
    }
    *root = doc;
    doc = NULL;
    rc = 0;
out:
    ydoc_free(doc);
    yaml_parser_delete(&r.parser);
    return rc;
}

int ydoc_load_file(const char *path, ydoc_node **root)
{
    unsigned char *data = NULL;
    size_t size = 0;
    if (fs_read_file(path, &data, &size) != 0)
        return -1;
    int rc = ydoc_parse((const char *)data, size, path, root);
    free(data);
    return rc;
}

void ydoc_free(ydoc_node *node)
{
    if (node == NULL)
        return;
    for (size_t i = 0; i < node->count; i++) {
        ydoc_free(node->items[i]);
        if (node->keys != NULL)
            free(node->keys[i]);
    }
    free(node->items);
    free(node->keys);
    free(node->value);
    free(node);
}

ydoc_node *ydoc_get(const ydoc_node *map, const char *key)
{
    if (map == NULL || map->kind != YDOC_MAP)
        return NULL;
    for (size_t i = 0; i < map->count; i++) {
        if (strcmp(map->keys[i], key) == 0)
            return map->items[i];
    }
    return NULL;
}

bool ydoc_is_null(const ydoc_node *node)
{
    if (node == NULL || node->kind != YDOC_SCALAR || !node->plain)
        return false;
    const char *v = node->value;
    return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static bool is_bool_text(const char *v, bool *value)
{
    static const char *const truths[] = {"true", "True", "TRUE"};
    static const char *const falses[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(v, truths[i]) == 0) {
            *value = true;
            return true;
        }
        if (strcmp(v, falses[i]) == 0) {
            *value = false;
            return true;
        }
    }
    return false;
}

/* A decimal integer or float in the YAML 1.2 core schema's syntax. */
static bool is_number_text(const char *v, double *value)
{
    if (v[0] == '\0')
        return false;
    const char *p = v;
    if (*p == '-' || *p == '+')
        p++;
    if (*p == '\0' || (!(*p >= '0' && *p <= '9') && *p != '.'))
        return false;
    for (const char *q = p; *q; q++) {
        if (!strchr("0123456789.eE+-", *q))
            return false;
    }
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !isfinite(d))
        return false;
    *value = d;
    return true;
}

cJSON *ydoc_to_json(const ydoc_node *node)
{
    switch (node->kind) {
    case YDOC_SCALAR: {
        bool flag;
        double number;
        if (!node->plain)
            return cJSON_CreateString(node->value);
        if (ydoc_is_null(node))
            return cJSON_CreateNull();
        if (is_bool_text(node->value, &flag))
            return cJSON_CreateBool(flag);
        if (is_number_text(node->value, &number))
            return cJSON_CreateNumber(number);
        return cJSON_CreateString(node->value);
    }
    case YDOC_MAP:
    case YDOC_SEQ: {
        cJSON *out = node->kind == YDOC_MAP ? cJSON_CreateObject() : cJSON_CreateArray();
        if (out == NULL)
            return NULL;
        for (size_t i = 0; i < node->count; i++) {
            cJSON *child = ydoc_to_json(node->items[i]);
            if (child == NULL) {
                cJSON_Delete(out);
                return NULL;
            }
            if (node->kind == YDOC_MAP)
                cJSON_AddItemToObject(out, node->keys[i], child);
            else
                cJSON_AddItemToArray(out, child);
        }
        return out;
    }
    }
    return NULL;
}

/* ---- emitting ---- */

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    bool failed;
} emit_buffer;

static int emit_write(void *context, unsigned char *bytes, size_t size)
{
    emit_buffer *b = context;
    if (b->size + size + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (capacity < b->size + size + 1)
            capacity *= 2;
        char *data = realloc(b->data, capacity);
        if (data == NULL) {
            b->failed = true;
            return 0;
        }
        b->data = data;
        b->capacity = capacity;
    }
    memcpy(b->data + b->size, bytes, size);
    b->size += size;
    b->data[b->size] = '\0';
    return 1;
}

/* A string that a YAML reader would type as something else unless it is
 * quoted: empty, null, a boolean or a number. */
static bool needs_quotes(const char *s)
{
    bool flag;
    double number;
    static const char *const yaml11_words[] = {"y", "Y", "yes", "Yes", "YES", "n", "N", "no",
                                               "No", "NO", "on", "On", "ON", "off", "Off", "OFF"};
    if (s[0] == '\0' || strcmp(s, "~") == 0 || strcasecmp(s, "null") == 0)
        return true;
    if (is_bool_text(s, &flag) || is_number_text(s, &number))
        return true;
    /* YAML 1.1 readers type a date or timestamp such as
     * "2024-05-01T12:00:00Z"; kubectl quotes them. */
    if (strlen(s) >= 10 && s[4] == '-' && s[7] == '-' && strspn(s, "0123456789") == 4)
        return true;
    /* Go's YAML 1.1 reader, which kubectl uses, types these as booleans. */
    for (size_t i = 0; i < sizeof yaml11_words / sizeof yaml11_words[0]; i++) {
        if (strcmp(s, yaml11_words[i]) == 0)
            return true;
    }
    return false;
}

static int emit_scalar(yaml_emitter_t *e, const char *text, bool is_string)
{
    yaml_event_t event;
    yaml_scalar_style_t style = YAML_ANY_SCALAR_STYLE;
    int plain_implicit = 1;
    if (is_string && needs_quotes(text)) {
        style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        plain_implicit = 0;
    } else if (is_string && strchr(text, '\n') != NULL) {
        style = YAML_LITERAL_SCALAR_STYLE;
    }
    if (!yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)text, (int)strlen(text),
                                      plain_implicit, 1, style))
        return -1;
    return yaml_emitter_emit(e, &event) ? 0 : -1;
}

static int emit_value(yaml_emitter_t *e, const cJSON *json)
{
    yaml_event_t event;
    char number[64];
    if (cJSON_IsObject(json)) {
        if (!yaml_mapping_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE) ||
            !yaml_emitter_emit(e, &event))
            return -1;
        for (const cJSON *child = json->child; child != NULL; child = child->next) {
            if (emit_scalar(e, child->string, true) != 0 || emit_value(e, child) != 0)
                return -1;
        }
        if (!yaml_mapping_end_event_initialize(&event) || !yaml_emitter_emit(e, &event))
            return -1;
        return 0;
    }
    if (cJSON_IsArray(json)) {
        if (!yaml_sequence_start_event_initialize(&event, NULL, NULL, 1,
                                                  YAML_BLOCK_SEQUENCE_STYLE) ||
            !yaml_emitter_emit(e, &event))
            return -1;
        for (const cJSON *child = json->child; child != NULL; child = child->next) {
            if (emit_value(e, child) != 0)
                return -1;
        }
        if (!yaml_sequence_end_event_initialize(&event) || !yaml_emitter_emit(e, &event))
            return -1;
        return 0;
    }
    if (cJSON_IsString(json))
        return emit_scalar(e, json->valuestring, true);
    if (cJSON_IsBool(json))
        return emit_scalar(e, cJSON_IsTrue(json) ? "true" : "false", false);
    if (cJSON_IsNumber(json)) {
        double d = json->valuedouble;
        if (d == floor(d) && fabs(d) < 9.0e15)
            snprintf(number, sizeof number, "%.0f", d);
        else
            snprintf(number, sizeof number, "%.17g", d);
        return emit_scalar(e, number, false);
    }
    return emit_scalar(e, "null", false);
}

char *ydoc_emit_json(const cJSON *json)
{
    yaml_emitter_t e;
    yaml_event_t event;
    emit_buffer buffer = {0};
    bool ok = false;

    if (!yaml_emitter_initialize(&e)) {
        dm_fail("out of memory");
        return NULL;
    }
    yaml_emitter_set_output(&e, emit_write, &buffer);
    yaml_emitter_set_unicode(&e, 1);
    yaml_emitter_set_width(&e, -1);
    if (yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING) &&
        yaml_emitter_emit(&e, &event) &&
        yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1) &&
        yaml_emitter_emit(&e, &event) && emit_value(&e, json) == 0 &&
        yaml_document_end_event_initialize(&event, 1) && yaml_emitter_emit(&e, &event) &&
        yaml_stream_end_event_initialize(&event) && yaml_emitter_emit(&e, &event))
        ok = !buffer.failed;
    if (!ok) {
        dm_fail("cannot write YAML: %s", e.problem ? e.problem : "out of memory");
        free(buffer.data);
        buffer.data = NULL;
    }
    yaml_emitter_delete(&e);
    return buffer.data;
}
