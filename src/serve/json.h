/*
 * JSON for the model server: a reader for request bodies and a growable
 * output buffer with the writers for replies.
 *
 * The reader follows the RapidJSON options TensorFlow Serving parses
 * requests with. The tokens NaN, Inf, Infinity, -Inf and -Infinity are
 * numbers, and parsing stops after the first complete value, so trailing
 * bytes are ignored. Error messages are RapidJSON's English texts with the
 * byte offset. cJSON, used elsewhere in distml, rejects the non-finite tokens,
 * which is why requests get their own reader. Strings are not checked for
 * valid UTF-8, as RapidJSON does not check by default; the writer replaces
 * invalid UTF-8 when it echoes request text, so every reply is valid JSON.
 *
 * Numbers are converted with strtod and printed with snprintf, which use
 * '.' only in the "C" locale; distml never calls setlocale, so the program
 * stays in it.
 */
#ifndef DISTML_SERVE_JSON_H
#define DISTML_SERVE_JSON_H

#include <stdbool.h>
#include <stddef.h>

/* Maximum nesting of arrays and objects in a request: a batch of 28x28x1
 * pixel instances needs 5 levels. */
#define SRV_JSON_MAX_DEPTH 64

typedef enum {
    SRV_JSON_NULL,
    SRV_JSON_FALSE,
    SRV_JSON_TRUE,
    SRV_JSON_NUMBER,
    SRV_JSON_STRING,
    SRV_JSON_ARRAY,
    SRV_JSON_OBJECT,
} srv_json_type;

typedef struct srv_json srv_json;

/* One parsed value. Arrays and objects keep their children in document
 * order; an object's children carry their member names in KEY. */
struct srv_json {
    srv_json_type type;
    double number;          /* SRV_JSON_NUMBER */
    const char *string;     /* SRV_JSON_STRING: decoded bytes, NUL-terminated */
    size_t length;          /* bytes in STRING, which may contain NUL */
    const char *key;        /* member name when the parent is an object */
    size_t key_length;
    srv_json **items;       /* SRV_JSON_ARRAY elements or SRV_JSON_OBJECT members */
    size_t count;
    size_t offset;          /* byte offset of the value in the document */
    size_t end;             /* byte offset just past the value */
};

typedef struct srv_json_doc srv_json_doc;

/*
 * Parses the first JSON value in TEXT (SIZE bytes, not necessarily
 * NUL-terminated). Returns the document, whose root is srv_json_root(),
 * or NULL with ERROR set to "JSON Parse error: <reason> at offset: N" (or
 * "JSON Parse error: The document is empty").
 */
srv_json_doc *srv_json_parse(const char *text, size_t size, char *error, size_t capacity);

const srv_json *srv_json_root(const srv_json_doc *doc);

/* Frees DOC and every value in it (NULL is ignored). */
void srv_json_free(srv_json_doc *doc);

/* The first member of OBJECT named KEY, or NULL (also when OBJECT is not
 * an object). */
const srv_json *srv_json_get(const srv_json *object, const char *key);

/* The name of TYPE for error messages ("Number", "Array"). */
const char *srv_json_type_name(srv_json_type type);

/* A growable byte buffer. Appends after an allocation failure do nothing
 * and leave FAILED set, so a writer checks once at the end. */
typedef struct {
    char *data;
    size_t length;
    size_t capacity;
    bool failed;
} srv_buf;

void srv_buf_init(srv_buf *buf);
void srv_buf_free(srv_buf *buf);
void srv_buf_append(srv_buf *buf, const char *data, size_t length);
void srv_buf_puts(srv_buf *buf, const char *text);
void srv_buf_printf(srv_buf *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the NUL-terminated contents to the caller (malloc'd) and empties
 * BUF; returns NULL when an append failed. */
char *srv_buf_take(srv_buf *buf, size_t *length);

/*
 * Appends TEXT as a quoted JSON string: '"', '\\' and control characters
 * are escaped (\n, \t, ... or \u00XX), and bytes that are not valid UTF-8
 * become \ufffd, so the result is valid JSON whatever TEXT contains.
 */
void srv_buf_json_string(srv_buf *buf, const char *text, size_t length);

/*
 * Appends VALUE as TensorFlow Serving writes a float: the shortest of
 * "%.6g" and "%.9g" that reads back as the same float, ".0" added to whole
 * numbers, and NaN, Infinity and -Infinity as bare tokens.
 */
void srv_buf_json_float(srv_buf *buf, float value);

/* Appends the value V in a compact form, cut after MAX_BYTES bytes with
 * "..." appended, for quoting request values in error messages. */
void srv_buf_json_excerpt(srv_buf *buf, const srv_json *value, size_t max_bytes);

/* The TensorFlow Serving error body {"error": MESSAGE}, malloc'd. */
char *srv_json_error_body(const char *message, size_t *length);

#endif
