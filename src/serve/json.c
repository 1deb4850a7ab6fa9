#include "serve/json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- arena: every value and string of one document ---- */

enum { ARENA_CHUNK = 64 * 1024 };

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t used, size;
    _Alignas(max_align_t) unsigned char data[];
} arena_chunk;

struct srv_json_doc {
    arena_chunk *chunks;
    srv_json *root;
};

static void *arena_alloc(srv_json_doc *doc, size_t size)
{
    size = (size + 15) & ~(size_t)15;
    arena_chunk *c = doc->chunks;
    if (c == NULL || c->size - c->used < size) {
        size_t chunk_size = size > ARENA_CHUNK / 4 ? size : ARENA_CHUNK;
        arena_chunk *fresh = malloc(sizeof *fresh + chunk_size);
        if (fresh == NULL)
            return NULL;
        fresh->used = 0;
        fresh->size = chunk_size;
        /* A large block gets a chunk of its own behind the current one, so
         * the current chunk's free space stays usable. */
        if (c != NULL && chunk_size != ARENA_CHUNK) {
            fresh->next = c->next;
            c->next = fresh;
        } else {
            fresh->next = c;
            doc->chunks = fresh;
        }
        c = fresh;
    }
    void *p = c->data + c->used;
    c->used += size;
    return p;
}

void srv_json_free(srv_json_doc *doc)
{
    if (doc == NULL)
        return;
    for (arena_chunk *c = doc->chunks; c != NULL;) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(doc);
}

/* ---- parser ---- */

typedef struct {
    const char *start, *p, *end;
    srv_json_doc *doc;
    srv_json **stack; /* children of the open arrays and objects */
    size_t stack_count, stack_capacity;
    int depth;
    const char *error; /* RapidJSON's message; NULL while parsing succeeds */
    size_t error_offset;
} parser;

static void fail_at(parser *ps, const char *message, const char *where)
{
    if (ps->error == NULL) {
        ps->error = message;
        ps->error_offset = (size_t)(where - ps->start);
    }
}

static void skip_space(parser *ps)
{
    while (ps->p < ps->end &&
           (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static bool has_prefix(const parser *ps, const char *word)
{
    size_t n = strlen(word);
    return (size_t)(ps->end - ps->p) >= n && memcmp(ps->p, word, n) == 0;
}

static srv_json *new_value(parser *ps, srv_json_type type, const char *at)
{
    srv_json *v = arena_alloc(ps->doc, sizeof *v);
    if (v == NULL) {
        fail_at(ps, "Out of memory.", at);
        return NULL;
    }
    memset(v, 0, sizeof *v);
    v->type = type;
    v->offset = (size_t)(at - ps->start);
    return v;
}

static bool push_child(parser *ps, srv_json *child)
{
    if (ps->stack_count == ps->stack_capacity) {
        size_t next = ps->stack_capacity ? ps->stack_capacity * 2 : 256;
        srv_json **grown = realloc(ps->stack, next * sizeof *grown);
        if (grown == NULL) {
            fail_at(ps, "Out of memory.", ps->p);
            return false;
        }
        ps->stack = grown;
        ps->stack_capacity = next;
    }
    ps->stack[ps->stack_count++] = child;
    return true;
}

/* Moves the children pushed since FIRST into CONTAINER's items. */
static bool pop_children(parser *ps, srv_json *container, size_t first)
{
    size_t n = ps->stack_count - first;
    container->count = n;
    if (n > 0) {
        container->items = arena_alloc(ps->doc, n * sizeof *container->items);
        if (container->items == NULL) {
            fail_at(ps, "Out of memory.", ps->p);
            return false;
        }
        memcpy(container->items, ps->stack + first, n * sizeof *container->items);
    }
    ps->stack_count = first;
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool read_hex4(parser *ps, unsigned *out)
{
    if (ps->end - ps->p < 4) {
        fail_at(ps, "Incorrect hex digit after \\u escape in string.", ps->p);
        return false;
    }
    unsigned value = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(ps->p[i]);
        if (h < 0) {
            fail_at(ps, "Incorrect hex digit after \\u escape in string.", ps->p);
            return false;
        }
        value = value * 16 + (unsigned)h;
    }
    ps->p += 4;
    *out = value;
    return true;
}

static size_t put_utf8(char *out, unsigned code)
{
    if (code < 0x80) {
        out[0] = (char)code;
        return 1;
    }
    if (code < 0x800) {
        out[0] = (char)(0xC0 | (code >> 6));
        out[1] = (char)(0x80 | (code & 0x3F));
        return 2;
    }
    if (code < 0x10000) {
        out[0] = (char)(0xE0 | (code >> 12));
        out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (code >> 18));
    out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((code >> 6) & 0x3F));
    out[3] = (char)(0x80 | (code & 0x3F));
    return 4;
}

/* Decodes the escape after a backslash into OUT; returns the bytes written
 * or 0 on error. */
static size_t read_escape(parser *ps, char *out)
{
    const char *backslash = ps->p - 1;
    if (ps->p >= ps->end) {
        fail_at(ps, "Missing a closing quotation mark in string.", ps->p);
        return 0;
    }
    char c = *ps->p++;
    switch (c) {
    case '"': *out = '"'; return 1;
    case '\\': *out = '\\'; return 1;
    case '/': *out = '/'; return 1;
    case 'b': *out = '\b'; return 1;
    case 'f': *out = '\f'; return 1;
    case 'n': *out = '\n'; return 1;
    case 'r': *out = '\r'; return 1;
    case 't': *out = '\t'; return 1;
    case 'u': break;
    default:
        fail_at(ps, "Invalid escape character in string.", backslash);
        return 0;
    }
    unsigned code;
    if (!read_hex4(ps, &code))
        return 0;
    if (code >= 0xD800 && code <= 0xDBFF) {
        unsigned low;
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
            fail_at(ps, "The surrogate pair in string is invalid.", ps->p);
            return 0;
        }
        ps->p += 2;
        if (!read_hex4(ps, &low))
            return 0;
        if (low < 0xDC00 || low > 0xDFFF) {
            fail_at(ps, "The surrogate pair in string is invalid.", ps->p);
            return 0;
        }
        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
    } else if (code >= 0xDC00 && code <= 0xDFFF) {
        fail_at(ps, "The surrogate pair in string is invalid.", ps->p);
        return 0;
    }
    return put_utf8(out, code);
}

/* Reads a string whose opening quote is at ps->p into *OUT and *LENGTH. */
static bool read_string(parser *ps, const char **out, size_t *length)
{
    ps->p++;
    /* The decoded text is never longer than the raw text up to the closing
     * quote, so one allocation of that size is enough. */
    const char *q = ps->p;
    while (q < ps->end && *q != '"') {
        if (*q == '\\' && q + 1 < ps->end)
            q++;
        q++;
    }
    char *text = arena_alloc(ps->doc, (size_t)(q - ps->p) + 1);
    if (text == NULL) {
        fail_at(ps, "Out of memory.", ps->p);
        return false;
    }
    size_t n = 0;
    for (;;) {
        if (ps->p >= ps->end) {
            fail_at(ps, "Missing a closing quotation mark in string.", ps->p);
            return false;
        }
        unsigned char c = (unsigned char)*ps->p++;
        if (c == '"')
            break;
        if (c == '\\') {
            size_t written = read_escape(ps, text + n);
            if (written == 0)
                return false;
            n += written;
        } else if (c < 0x20) {
            fail_at(ps, "Invalid encoding in string.", ps->p - 1);
            return false;
        } else {
            text[n++] = (char)c;
        }
    }
    text[n] = '\0';
    *out = text;
    *length = n;
    return true;
}

static bool read_number(parser *ps, double *out)
{
    const char *s = ps->p;
    bool negative = false;
    if (ps->p < ps->end && *ps->p == '-') {
        negative = true;
        ps->p++;
    }
    /* RapidJSON's kParseNanAndInfFlag tokens. */
    if (!negative && has_prefix(ps, "NaN")) {
        ps->p += 3;
        *out = NAN;
        return true;
    }
    if (has_prefix(ps, "Inf")) {
        ps->p += has_prefix(ps, "Infinity") ? 8 : 3;
        *out = negative ? -INFINITY : INFINITY;
        return true;
    }
    if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
        fail_at(ps, "Invalid value.", s);
        return false;
    }
    if (*ps->p == '0') {
        ps->p++;
    } else {
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
            fail_at(ps, "Miss fraction part in number.", ps->p);
            return false;
        }
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-'))
            ps->p++;
        if (ps->p >= ps->end || *ps->p < '0' || *ps->p > '9') {
            fail_at(ps, "Miss exponent in number.", ps->p);
            return false;
        }
        while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
            ps->p++;
    }
    /* strtod needs a NUL-terminated copy, because the body need not end
     * with one. */
    char local[64];
    size_t n = (size_t)(ps->p - s);
    char *copy = n < sizeof local ? local : malloc(n + 1);
    if (copy == NULL) {
        fail_at(ps, "Out of memory.", s);
        return false;
    }
    memcpy(copy, s, n);
    copy[n] = '\0';
    errno = 0;
    double value = strtod(copy, NULL);
    int overflow = errno == ERANGE && isinf(value);
    if (copy != local)
        free(copy);
    if (overflow) {
        fail_at(ps, "Number too big to be stored in double.", s);
        return false;
    }
    *out = value;
    return true;
}

static srv_json *read_value(parser *ps);

static srv_json *read_array(parser *ps)
{
    srv_json *array = new_value(ps, SRV_JSON_ARRAY, ps->p);
    if (array == NULL)
        return NULL;
    size_t first = ps->stack_count;
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == ']') {
        ps->p++;
        return array;
    }
    for (;;) {
        srv_json *item = read_value(ps);
        if (item == NULL || !push_child(ps, item))
            return NULL;
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            break;
        }
        fail_at(ps, "Missing a comma or ']' after an array element.", ps->p);
        return NULL;
    }
    return pop_children(ps, array, first) ? array : NULL;
}

static srv_json *read_object(parser *ps)
{
    srv_json *object = new_value(ps, SRV_JSON_OBJECT, ps->p);
    if (object == NULL)
        return NULL;
    size_t first = ps->stack_count;
    ps->p++;
    skip_space(ps);
    if (ps->p < ps->end && *ps->p == '}') {
        ps->p++;
        return object;
    }
    for (;;) {
        const char *key;
        size_t key_length;
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p != '"') {
            fail_at(ps, "Missing a name for object member.", ps->p);
            return NULL;
        }
        if (!read_string(ps, &key, &key_length))
            return NULL;
        skip_space(ps);
        if (ps->p >= ps->end || *ps->p != ':') {
            fail_at(ps, "Missing a colon after a name of object member.", ps->p);
            return NULL;
        }
        ps->p++;
        srv_json *member = read_value(ps);
        if (member == NULL)
            return NULL;
        member->key = key;
        member->key_length = key_length;
        if (!push_child(ps, member))
            return NULL;
        skip_space(ps);
        if (ps->p < ps->end && *ps->p == ',') {
            ps->p++;
            continue;
        }
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            break;
        }
        fail_at(ps, "Missing a comma or '}' after an object member.", ps->p);
        return NULL;
    }
    return pop_children(ps, object, first) ? object : NULL;
}

static srv_json *read_value(parser *ps)
{
    skip_space(ps);
    if (ps->p >= ps->end) {
        fail_at(ps, "Invalid value.", ps->p);
        return NULL;
    }
    const char *at = ps->p;
    srv_json *v = NULL;
    switch (*ps->p) {
    case '{':
    case '[':
        if (++ps->depth > SRV_JSON_MAX_DEPTH) {
            fail_at(ps, "Nesting is deeper than 64 levels.", at);
            return NULL;
        }
        v = *ps->p == '{' ? read_object(ps) : read_array(ps);
        ps->depth--;
        break;
    case '"':
        v = new_value(ps, SRV_JSON_STRING, at);
        if (v != NULL && !read_string(ps, &v->string, &v->length))
            v = NULL;
        break;
    case 'n':
    case 't':
    case 'f': {
        static const char *const words[] = {"null", "true", "false"};
        static const srv_json_type types[] = {SRV_JSON_NULL, SRV_JSON_TRUE, SRV_JSON_FALSE};
        int i = 2;
        if (*ps->p == 'n')
            i = 0;
        else if (*ps->p == 't')
            i = 1;
        if (!has_prefix(ps, words[i])) {
            fail_at(ps, "Invalid value.", at);
            return NULL;
        }
        ps->p += strlen(words[i]);
        v = new_value(ps, types[i], at);
        break;
    }
    default:
        v = new_value(ps, SRV_JSON_NUMBER, at);
        if (v != NULL && !read_number(ps, &v->number))
            v = NULL;
        break;
    }
    if (v != NULL)
        v->end = (size_t)(ps->p - ps->start);
    return v;
}

srv_json_doc *srv_json_parse(const char *text, size_t size, char *error, size_t capacity)
{
    parser ps = {.start = text, .p = text, .end = text + size};
    ps.doc = calloc(1, sizeof *ps.doc);
    if (ps.doc == NULL) {
        snprintf(error, capacity, "JSON Parse error: Out of memory.");
        return NULL;
    }
    skip_space(&ps);
    if (ps.p == ps.end) {
        snprintf(error, capacity, "JSON Parse error: The document is empty");
        srv_json_free(ps.doc);
        return NULL;
    }
    ps.doc->root = read_value(&ps);
    free(ps.stack);
    if (ps.doc->root == NULL) {
        snprintf(error, capacity, "JSON Parse error: %s at offset: %zu",
                 ps.error != NULL ? ps.error : "Invalid value.", ps.error_offset);
        srv_json_free(ps.doc);
        return NULL;
    }
    return ps.doc;
}

const srv_json *srv_json_root(const srv_json_doc *doc)
{
    return doc->root;
}

const srv_json *srv_json_get(const srv_json *object, const char *key)
{
    if (object == NULL || object->type != SRV_JSON_OBJECT)
        return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < object->count; i++) {
        const srv_json *member = object->items[i];
        if (member->key_length == n && memcmp(member->key, key, n) == 0)
            return member;
    }
    return NULL;
}

const char *srv_json_type_name(srv_json_type type)
{
    switch (type) {
    case SRV_JSON_NULL: return "Null";
    case SRV_JSON_FALSE: return "False";
    case SRV_JSON_TRUE: return "True";
    case SRV_JSON_NUMBER: return "Number";
    case SRV_JSON_STRING: return "String";
    case SRV_JSON_ARRAY: return "Array";
    case SRV_JSON_OBJECT: return "Object";
    }
    return "Unknown";
}

/* ---- output buffer ---- */

void srv_buf_init(srv_buf *buf)
{
    memset(buf, 0, sizeof *buf);
}

void srv_buf_free(srv_buf *buf)
{
    free(buf->data);
    srv_buf_init(buf);
}

static bool buf_reserve(srv_buf *buf, size_t extra)
{
    if (buf->failed)
        return false;
    if (buf->length + extra + 1 <= buf->capacity)
        return true;
    size_t next = buf->capacity ? buf->capacity : 256;
    while (next < buf->length + extra + 1)
        next *= 2;
    char *grown = realloc(buf->data, next);
    if (grown == NULL) {
        buf->failed = true;
        return false;
    }
    buf->data = grown;
    buf->capacity = next;
    return true;
}

void srv_buf_append(srv_buf *buf, const char *data, size_t length)
{
    if (!buf_reserve(buf, length))
        return;
    memcpy(buf->data + buf->length, data, length);
    buf->length += length;
    buf->data[buf->length] = '\0';
}

void srv_buf_puts(srv_buf *buf, const char *text)
{
    srv_buf_append(buf, text, strlen(text));
}

void srv_buf_printf(srv_buf *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !buf_reserve(buf, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(buf->data + buf->length, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->length += (size_t)n;
}

char *srv_buf_take(srv_buf *buf, size_t *length)
{
    if (buf->failed || !buf_reserve(buf, 0)) {
        srv_buf_free(buf);
        return NULL;
    }
    char *data = buf->data;
    if (length != NULL)
        *length = buf->length;
    srv_buf_init(buf);
    return data;
}

/* Length of the valid UTF-8 sequence at S (at most N bytes), or 0. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned min;
    unsigned code;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, code = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, code = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, code = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        code = (code << 6) | (s[i] & 0x3F);
    }
    if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF))
        return 0;
    return len;
}

void srv_buf_json_string(srv_buf *buf, const char *text, size_t length)
{
    const unsigned char *s = (const unsigned char *)text;
    srv_buf_append(buf, "\"", 1);
    size_t i = 0;
    while (i < length) {
        /* Copy the longest run that needs no escaping in one append. */
        size_t run = i;
        while (run < length && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' &&
               s[run] != '\\')
            run++;
        if (run > i) {
            srv_buf_append(buf, text + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = s[i];
        char escape[8];
        switch (c) {
        case '"': srv_buf_append(buf, "\\\"", 2); i++; continue;
        case '\\': srv_buf_append(buf, "\\\\", 2); i++; continue;
        case '\n': srv_buf_append(buf, "\\n", 2); i++; continue;
        case '\r': srv_buf_append(buf, "\\r", 2); i++; continue;
        case '\t': srv_buf_append(buf, "\\t", 2); i++; continue;
        case '\b': srv_buf_append(buf, "\\b", 2); i++; continue;
        case '\f': srv_buf_append(buf, "\\f", 2); i++; continue;
        default: break;
        }
        if (c < 0x20) {
            snprintf(escape, sizeof escape, "\\u%04x", c);
            srv_buf_append(buf, escape, 6);
            i++;
            continue;
        }
        size_t len = utf8_sequence_length(s + i, length - i);
        if (len == 0) {
            srv_buf_append(buf, "\\ufffd", 6);
            i++;
        } else {
            srv_buf_append(buf, text + i, len);
            i += len;
        }
    }
    srv_buf_append(buf, "\"", 1);
}

void srv_buf_json_float(srv_buf *buf, float value)
{
    char text[32];
    if (isnan(value)) {
        srv_buf_puts(buf, "NaN");
        return;
    }
    if (isinf(value)) {
        srv_buf_puts(buf, value > 0 ? "Infinity" : "-Infinity");
        return;
    }
    snprintf(text, sizeof text, "%.6g", (double)value);
    if (strtof(text, NULL) != value)
        snprintf(text, sizeof text, "%.9g", (double)value);
    if (strpbrk(text, ".e") == NULL)
        strcat(text, ".0");
    srv_buf_puts(buf, text);
}

static void excerpt_value(srv_buf *buf, const srv_json *v, size_t limit)
{
    if (buf->length >= limit)
        return;
    switch (v->type) {
    case SRV_JSON_NULL: srv_buf_puts(buf, "null"); break;
    case SRV_JSON_FALSE: srv_buf_puts(buf, "false"); break;
    case SRV_JSON_TRUE: srv_buf_puts(buf, "true"); break;
    case SRV_JSON_NUMBER:
        if (isnan(v->number))
            srv_buf_puts(buf, "NaN");
        else if (isinf(v->number))
            srv_buf_puts(buf, v->number > 0 ? "Infinity" : "-Infinity");
        else
            srv_buf_printf(buf, "%.9g", v->number);
        break;
    case SRV_JSON_STRING: {
        size_t room = limit - buf->length;
        srv_buf_json_string(buf, v->string, v->length < room ? v->length : room);
        break;
    }
    case SRV_JSON_ARRAY:
    case SRV_JSON_OBJECT:
        srv_buf_puts(buf, v->type == SRV_JSON_ARRAY ? "[" : "{");
        for (size_t i = 0; i < v->count && buf->length < limit; i++) {
            if (i > 0)
                srv_buf_puts(buf, ",");
            if (v->type == SRV_JSON_OBJECT) {
                srv_buf_json_string(buf, v->items[i]->key, v->items[i]->key_length);
                srv_buf_puts(buf, ":");
            }
            excerpt_value(buf, v->items[i], limit);
        }
        if (buf->length < limit)
            srv_buf_puts(buf, v->type == SRV_JSON_ARRAY ? "]" : "}");
        break;
    }
}

void srv_buf_json_excerpt(srv_buf *buf, const srv_json *value, size_t max_bytes)
{
    srv_buf part;
    srv_buf_init(&part);
    excerpt_value(&part, value, max_bytes);
    if (part.length > max_bytes) {
        /* Cut at a UTF-8 boundary so the excerpt stays valid text. */
        size_t cut = max_bytes;
        while (cut > 0 && ((unsigned char)part.data[cut] & 0xC0) == 0x80)
            cut--;
        part.length = cut;
    }
    if (part.data != NULL)
        srv_buf_append(buf, part.data, part.length);
    if (part.length >= max_bytes || part.failed)
        srv_buf_puts(buf, "...");
    srv_buf_free(&part);
}

char *srv_json_error_body(const char *message, size_t *length)
{
    srv_buf buf;
    srv_buf_init(&buf);
    srv_buf_puts(&buf, "{\n    \"error\": ");
    srv_buf_json_string(&buf, message, strlen(message));
    srv_buf_puts(&buf, "\n}");
    return srv_buf_take(&buf, length);
}
