#include "workflow/selector.h"

#include "base/error.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    SEL_EQUALS,
    SEL_NOT_EQUALS,
    SEL_IN,
    SEL_NOT_IN,
    SEL_EXISTS,
    SEL_NOT_EXISTS,
    SEL_GREATER,
    SEL_LESS,
} selector_op;

#define SEL_MAX_VALUES 16

typedef struct {
    char text[256];
    char key[256];
    selector_op op;
    char values[SEL_MAX_VALUES][64];
    size_t value_count;
    long long number; /* the integer operand of > and < */
} selector_requirement;

struct wf_selector {
    selector_requirement *items;
    size_t count;
};

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* A key or value: a run of characters that are not operators,
 * separators or spaces, as the Kubernetes selector lexer reads it. */
static size_t scan_word(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0' && !is_space(s[n]) && strchr(",=!()<>", s[n]) == NULL)
        n++;
    return n;
}

static const char *skip_spaces(const char *s)
{
    while (is_space(*s))
        s++;
    return s;
}

static int copy_word(char *out, size_t capacity, const char *s, size_t n, const char *what,
                     const char *requirement)
{
    if (n == 0)
        return dm_fail("invalid condition '%s': missing %s", requirement, what);
    if (n >= capacity)
        return dm_fail("invalid condition '%s': %s is longer than %zu characters", requirement,
                       what, capacity - 1);
    memcpy(out, s, n);
    out[n] = '\0';
    return 0;
}

/* A label value: at most 63 characters of [A-Za-z0-9._-], starting and
 * ending with a letter or digit; the empty value is allowed. */
static bool label_value_valid(const char *v)
{
    size_t n = strlen(v);
    if (n > 63)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (i == 0 || i == n - 1 || strchr("._-", c) == NULL))
            return false;
    }
    return true;
}

static int parse_value_list(selector_requirement *req, const char *s, const char **end)
{
    s = skip_spaces(s);
    if (*s != '(')
        return dm_fail("invalid condition '%s': expected '(' after in or notin", req->text);
    s++;
    for (;;) {
        s = skip_spaces(s);
        size_t n = scan_word(s);
        if (req->value_count == SEL_MAX_VALUES)
            return dm_fail("invalid condition '%s': more than %d values", req->text,
                           SEL_MAX_VALUES);
        if (n > 0 && copy_word(req->values[req->value_count], sizeof req->values[0], s, n,
                               "value", req->text) != 0)
            return -1;
        if (n == 0)
            req->values[req->value_count][0] = '\0';
        req->value_count++;
        s = skip_spaces(s + n);
        if (*s == ')') {
            *end = s + 1;
            return 0;
        }
        if (*s != ',')
            return dm_fail("invalid condition '%s': expected ',' or ')' in the value list",
                           req->text);
        s++;
    }
}

static int parse_requirement(selector_requirement *req, const char *s, const char **end)
{
    s = skip_spaces(s);
    const char *start = s;
    /* The requirement's text runs to the next comma outside brackets. */
    int depth = 0;
    const char *stop = s;
    while (*stop != '\0' && (*stop != ',' || depth > 0)) {
        if (*stop == '(')
            depth++;
        else if (*stop == ')')
            depth--;
        stop++;
    }
    size_t text_len = (size_t)(stop - start);
    while (text_len > 0 && is_space(start[text_len - 1]))
        text_len--;
    snprintf(req->text, sizeof req->text, "%.*s", (int)text_len, start);

    if (*s == '!') {
        s = skip_spaces(s + 1);
        size_t n = scan_word(s);
        if (copy_word(req->key, sizeof req->key, s, n, "path", req->text) != 0)
            return -1;
        req->op = SEL_NOT_EXISTS;
        *end = s + n;
        return 0;
    }
    size_t n = scan_word(s);
    if (copy_word(req->key, sizeof req->key, s, n, "path", req->text) != 0)
        return -1;
    s = skip_spaces(s + n);
    if (*s == '\0' || *s == ',') {
        req->op = SEL_EXISTS;
        *end = s;
        return 0;
    }
    if (strncmp(s, "==", 2) == 0 || strncmp(s, "!=", 2) == 0) {
        req->op = s[0] == '=' ? SEL_EQUALS : SEL_NOT_EQUALS;
        s += 2;
    } else if (*s == '=' || *s == '>' || *s == '<') {
        if (*s == '=')
            req->op = SEL_EQUALS;
        else if (*s == '>')
            req->op = SEL_GREATER;
        else
            req->op = SEL_LESS;
        s++;
    } else {
        size_t w = scan_word(s);
        if (w == 2 && strncmp(s, "in", 2) == 0)
            req->op = SEL_IN;
        else if (w == 5 && strncmp(s, "notin", 5) == 0)
            req->op = SEL_NOT_IN;
        else
            return dm_fail("invalid condition '%s': expected an operator (=, ==, !=, in, notin, "
                           ">, <) after '%s'",
                           req->text, req->key);
        return parse_value_list(req, s + w, end);
    }
    s = skip_spaces(s);
    size_t v = scan_word(s);
    if (v > 0 && copy_word(req->values[0], sizeof req->values[0], s, v, "value", req->text))
        return -1;
    req->value_count = 1;
    if (req->op == SEL_GREATER || req->op == SEL_LESS) {
        char *num_end = NULL;
        errno = 0;
        req->number = strtoll(req->values[0], &num_end, 10);
        if (v == 0 || errno != 0 || *num_end != '\0')
            return dm_fail("invalid condition '%s': > and < need an integer value", req->text);
    } else if (!label_value_valid(req->values[0])) {
        return dm_fail("invalid condition '%s': invalid value '%s' (at most 63 letters, digits, "
                       "'-', '_' and '.')",
                       req->text, req->values[0]);
    }
    *end = s + v;
    return 0;
}

int wf_selector_parse(const char *text, wf_selector **out)
{
    wf_selector *sel = dm_calloc(1, sizeof *sel);
    *out = NULL;
    if (sel == NULL)
        return -1;
    const char *s = skip_spaces(text);
    while (*s != '\0') {
        selector_requirement *items = realloc(sel->items, (sel->count + 1) * sizeof *items);
        if (items == NULL) {
            wf_selector_free(sel);
            return dm_fail("out of memory");
        }
        sel->items = items;
        selector_requirement *req = &items[sel->count];
        memset(req, 0, sizeof *req);
        const char *end = s;
        if (parse_requirement(req, s, &end) != 0) {
            wf_selector_free(sel);
            return -1;
        }
        sel->count++;
        s = skip_spaces(end);
        if (*s == ',') {
            s = skip_spaces(s + 1);
            if (*s == '\0') {
                wf_selector_free(sel);
                return dm_fail("invalid condition '%s': trailing ','", text);
            }
        } else if (*s != '\0') {
            int rc = dm_fail("invalid condition '%s': unexpected '%s'", req->text, s);
            wf_selector_free(sel);
            return rc;
        }
    }
    if (sel->count == 0) {
        wf_selector_free(sel);
        return dm_fail("invalid condition: it is empty");
    }
    *out = sel;
    return 0;
}

void wf_selector_free(wf_selector *selector)
{
    if (selector == NULL)
        return;
    free(selector->items);
    free(selector);
}

size_t wf_selector_count(const wf_selector *selector)
{
    return selector->count;
}

const char *wf_selector_text(const wf_selector *selector, size_t i)
{
    return selector->items[i].text;
}

const cJSON *wf_json_path(const cJSON *object, const char *path)
{
    const cJSON *node = object;
    const char *s = path;
    while (node != NULL && *s != '\0') {
        const char *dot = strchr(s, '.');
        size_t n = dot != NULL ? (size_t)(dot - s) : strlen(s);
        char part[256];
        if (n == 0 || n >= sizeof part)
            return NULL;
        memcpy(part, s, n);
        part[n] = '\0';
        if (cJSON_IsArray(node)) {
            char *end = NULL;
            long index = strtol(part, &end, 10);
            node = (*end == '\0' && index >= 0) ? cJSON_GetArrayItem(node, (int)index) : NULL;
        } else if (cJSON_IsObject(node)) {
            node = cJSON_GetObjectItemCaseSensitive(node, part);
        } else {
            node = NULL;
        }
        s += n;
        if (*s == '.')
            s++;
    }
    return node;
}

/* The value as gjson's String() gives it: strings as they are, numbers
 * in their shortest form, null as "", objects and arrays as JSON. */
static void json_value_text(const cJSON *value, char *out, size_t capacity)
{
    if (cJSON_IsString(value)) {
        snprintf(out, capacity, "%s", value->valuestring);
    } else if (cJSON_IsNumber(value)) {
        double d = value->valuedouble;
        if (d == floor(d) && fabs(d) < 9.0e15)
            snprintf(out, capacity, "%.0f", d);
        else
            snprintf(out, capacity, "%.17g", d);
    } else if (cJSON_IsBool(value)) {
        snprintf(out, capacity, "%s", cJSON_IsTrue(value) ? "true" : "false");
    } else if (cJSON_IsNull(value)) {
        out[0] = '\0';
    } else {
        char *json = cJSON_PrintUnformatted(value);
        snprintf(out, capacity, "%s", json != NULL ? json : "");
        free(json);
    }
}

bool wf_selector_matches(const wf_selector *selector, size_t i, const cJSON *object)
{
    const selector_requirement *req = &selector->items[i];
    const cJSON *value = wf_json_path(object, req->key);
    char text[512];
    if (value != NULL)
        json_value_text(value, text, sizeof text);
    switch (req->op) {
    case SEL_EXISTS:
        return value != NULL;
    case SEL_NOT_EXISTS:
        return value == NULL;
    case SEL_EQUALS:
    case SEL_IN:
        if (value == NULL)
            return false;
        for (size_t k = 0; k < req->value_count; k++) {
            if (strcmp(text, req->values[k]) == 0)
                return true;
        }
        return false;
    case SEL_NOT_EQUALS:
    case SEL_NOT_IN:
        if (value == NULL)
            return true;
        for (size_t k = 0; k < req->value_count; k++) {
            if (strcmp(text, req->values[k]) == 0)
                return false;
        }
        return true;
    case SEL_GREATER:
    case SEL_LESS: {
        if (value == NULL)
            return false;
        char *end = NULL;
        errno = 0;
        long long actual = strtoll(text, &end, 10);
        if (end == text || *end != '\0' || errno != 0)
            return false;
        return req->op == SEL_GREATER ? actual > req->number : actual < req->number;
    }
    }
    return false;
}
