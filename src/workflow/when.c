#include "workflow/when.h"

#include "base/error.h"

#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { VALUE_BOOL, VALUE_NUMBER, VALUE_STRING } value_type;

typedef struct {
    value_type type;
    bool flag;
    double number;
    char text[1024];
} when_value;

typedef struct {
    const char *expression;
    const char *s;
} when_parser;

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_spaces(when_parser *p)
{
    while (is_space(*p->s))
        p->s++;
}

static int syntax_error(when_parser *p, const char *what)
{
    return dm_fail("Invalid 'when' expression '%s': %s at '%s'", p->expression, what, p->s);
}

static bool is_word_char(char c)
{
    return c != '\0' && !is_space(c) && strchr("()!=<>&|'\"", c) == NULL;
}

static int parse_or(when_parser *p, when_value *out);

static int parse_operand(when_parser *p, when_value *out)
{
    skip_spaces(p);
    memset(out, 0, sizeof *out);
    char c = *p->s;
    if (c == '(') {
        p->s++;
        if (parse_or(p, out) != 0)
            return -1;
        skip_spaces(p);
        if (*p->s != ')')
            return syntax_error(p, "expected ')'");
        p->s++;
        return 0;
    }
    if (c == '\'' || c == '"') {
        const char *end = strchr(p->s + 1, c);
        if (end == NULL)
            return syntax_error(p, "unterminated string");
        size_t n = (size_t)(end - p->s - 1);
        if (n >= sizeof out->text)
            return syntax_error(p, "string too long");
        out->type = VALUE_STRING;
        memcpy(out->text, p->s + 1, n);
        out->text[n] = '\0';
        p->s = end + 1;
        return 0;
    }
    const char *start = p->s;
    while (is_word_char(*p->s))
        p->s++;
    size_t n = (size_t)(p->s - start);
    if (n == 0)
        return syntax_error(p, "expected a value");
    if (n >= sizeof out->text)
        return syntax_error(p, "value too long");
    memcpy(out->text, start, n);
    out->text[n] = '\0';
    if (strcmp(out->text, "true") == 0 || strcmp(out->text, "false") == 0) {
        out->type = VALUE_BOOL;
        out->flag = out->text[0] == 't';
        return 0;
    }
    char *end = NULL;
    errno = 0;
    double d = strtod(out->text, &end);
    if (*end == '\0' && errno == 0 && isfinite(d) && strchr("0123456789.-+", out->text[0])) {
        out->type = VALUE_NUMBER;
        out->number = d;
        return 0;
    }
    out->type = VALUE_STRING;
    return 0;
}

static const char *type_name(value_type t)
{
    if (t == VALUE_BOOL)
        return "bool";
    if (t == VALUE_NUMBER)
        return "number";
    return "string";
}

static int compare(when_parser *p, const char *op, const when_value *a, const when_value *b,
                   bool *result)
{
    if (strcmp(op, "=~") == 0 || strcmp(op, "!~") == 0) {
        if (a->type != VALUE_STRING || b->type != VALUE_STRING)
            return dm_fail("Invalid 'when' expression '%s': %s needs strings", p->expression, op);
        regex_t re;
        if (regcomp(&re, b->text, REG_EXTENDED | REG_NOSUB) != 0)
            return dm_fail("Invalid 'when' expression '%s': invalid regular expression '%s'",
                           p->expression, b->text);
        bool matched = regexec(&re, a->text, 0, NULL, 0) == 0;
        regfree(&re);
        *result = op[0] == '=' ? matched : !matched;
        return 0;
    }
    bool equality = strcmp(op, "==") == 0 || strcmp(op, "!=") == 0;
    if (equality) {
        bool equal = false;
        if (a->type == b->type) {
            if (a->type == VALUE_NUMBER)
                equal = a->number == b->number;
            else if (a->type == VALUE_BOOL)
                equal = a->flag == b->flag;
            else
                equal = strcmp(a->text, b->text) == 0;
        }
        *result = op[0] == '=' ? equal : !equal;
        return 0;
    }
    int order;
    if (a->type == VALUE_NUMBER && b->type == VALUE_NUMBER)
        order = a->number < b->number ? -1 : a->number > b->number ? 1 : 0;
    else if (a->type == VALUE_STRING && b->type == VALUE_STRING)
        order = strcmp(a->text, b->text);
    else
        return dm_fail("Invalid 'when' expression '%s': cannot compare %s '%s' with %s '%s' using "
                       "%s",
                       p->expression, type_name(a->type), a->text, type_name(b->type), b->text,
                       op);
    if (strcmp(op, "<") == 0)
        *result = order < 0;
    else if (strcmp(op, "<=") == 0)
        *result = order <= 0;
    else if (strcmp(op, ">") == 0)
        *result = order > 0;
    else
        *result = order >= 0;
    return 0;
}

static int parse_comparison(when_parser *p, when_value *out)
{
    if (parse_operand(p, out) != 0)
        return -1;
    skip_spaces(p);
    static const char *const ops[] = {"==", "!=", "<=", ">=", "=~", "!~", "<", ">"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t n = strlen(ops[i]);
        if (strncmp(p->s, ops[i], n) != 0)
            continue;
        p->s += n;
        when_value right;
        if (parse_operand(p, &right) != 0)
            return -1;
        bool result = false;
        if (compare(p, ops[i], out, &right, &result) != 0)
            return -1;
        memset(out, 0, sizeof *out);
        out->type = VALUE_BOOL;
        out->flag = result;
        return 0;
    }
    return 0;
}

static int need_bool(when_parser *p, const when_value *v, const char *op)
{
    if (v->type != VALUE_BOOL)
        return dm_fail("Invalid 'when' expression '%s': %s needs true or false, got '%s'",
                       p->expression, op, v->text);
    return 0;
}

static int parse_unary(when_parser *p, when_value *out)
{
    skip_spaces(p);
    if (p->s[0] == '!' && p->s[1] != '=' && p->s[1] != '~') {
        p->s++;
        if (parse_unary(p, out) != 0 || need_bool(p, out, "!") != 0)
            return -1;
        out->flag = !out->flag;
        return 0;
    }
    return parse_comparison(p, out);
}

static int parse_and(when_parser *p, when_value *out)
{
    if (parse_unary(p, out) != 0)
        return -1;
    for (;;) {
        skip_spaces(p);
        if (strncmp(p->s, "&&", 2) != 0)
            return 0;
        p->s += 2;
        when_value right;
        if (parse_unary(p, &right) != 0 || need_bool(p, out, "&&") != 0 ||
            need_bool(p, &right, "&&") != 0)
            return -1;
        out->flag = out->flag && right.flag;
    }
}

static int parse_or(when_parser *p, when_value *out)
{
    if (parse_and(p, out) != 0)
        return -1;
    for (;;) {
        skip_spaces(p);
        if (strncmp(p->s, "||", 2) != 0)
            return 0;
        p->s += 2;
        when_value right;
        if (parse_and(p, &right) != 0 || need_bool(p, out, "||") != 0 ||
            need_bool(p, &right, "||") != 0)
            return -1;
        out->flag = out->flag || right.flag;
    }
}

int wf_when_evaluate(const char *expression, bool *result)
{
    when_parser p = {.expression = expression, .s = expression};
    when_value value;
    skip_spaces(&p);
    if (*p.s == '\0') {
        *result = true;
        return 0;
    }
    if (parse_or(&p, &value) != 0)
        return -1;
    skip_spaces(&p);
    if (*p.s != '\0')
        return syntax_error(&p, "unexpected text");
    if (value.type != VALUE_BOOL)
        return dm_fail("Expected boolean evaluation for '%s'. Got %s", expression, value.text);
    *result = value.flag;
    return 0;
}
