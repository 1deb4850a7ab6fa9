/*
 * The request JSON reader (NaN and Infinity tokens, RapidJSON's error
 * messages and offsets, string escapes) and the reply writer (string
 * escaping of request text, TensorFlow Serving's float format).
 */
#include "check.h"

#include "serve/json.h"

#include <math.h>

static srv_json_doc *parse(const char *text, char *error)
{
    return srv_json_parse(text, strlen(text), error, 256);
}

static void test_json_non_finite_tokens(void)
{
    char error[256] = "";
    srv_json_doc *doc = parse("[NaN, Infinity, -Infinity, Inf, -Inf, 1.5e3, -0]", error);
    CHECK_MSG(doc != NULL, "rejected: %s", error);
    if (doc == NULL)
        return;
    const srv_json *root = srv_json_root(doc);
    CHECK_INT_EQ(root->count, 7);
    CHECK(isnan(root->items[0]->number));
    CHECK(isinf(root->items[1]->number));
    CHECK(root->items[1]->number > 0);
    CHECK(isinf(root->items[2]->number));
    CHECK(root->items[2]->number < 0);
    CHECK(isinf(root->items[3]->number));
    CHECK(root->items[3]->number > 0);
    CHECK(isinf(root->items[4]->number));
    CHECK(root->items[4]->number < 0);
    CHECK_NEAR(root->items[5]->number, 1500.0, 0.0);
    srv_json_free(doc);
}

static void expect_parse_error(const char *text, const char *message)
{
    char error[256] = "";
    srv_json_doc *doc = parse(text, error);
    CHECK_MSG(doc == NULL, "'%s' was accepted", text);
    CHECK_MSG(strcmp(error, message) == 0, "'%s': got \"%s\", expected \"%s\"", text, error,
              message);
    srv_json_free(doc);
}

static void test_json_parse_errors(void)
{
    expect_parse_error("", "JSON Parse error: The document is empty");
    expect_parse_error("  \n", "JSON Parse error: The document is empty");
    expect_parse_error("instances = [1, 2]", "JSON Parse error: Invalid value. at offset: 0");
    expect_parse_error("{\"a\" 1}",
                       "JSON Parse error: Missing a colon after a name of object member. at "
                       "offset: 5");
    expect_parse_error("{\"a\": 1 \"b\"}",
                       "JSON Parse error: Missing a comma or '}' after an object member. at "
                       "offset: 8");
    expect_parse_error("[1 2]",
                       "JSON Parse error: Missing a comma or ']' after an array element. at "
                       "offset: 3");
    expect_parse_error("{1: 2}", "JSON Parse error: Missing a name for object member. at offset: 1");
    expect_parse_error("\"abc", "JSON Parse error: Missing a closing quotation mark in string. at "
                                "offset: 4");
    expect_parse_error("\"a\nb\"", "JSON Parse error: Invalid encoding in string. at offset: 2");
    expect_parse_error("\"\\q\"", "JSON Parse error: Invalid escape character in string. at "
                                  "offset: 1");
    expect_parse_error("[1.]", "JSON Parse error: Miss fraction part in number. at offset: 3");
    expect_parse_error("[1e]", "JSON Parse error: Miss exponent in number. at offset: 3");
    expect_parse_error("1e999", "JSON Parse error: Number too big to be stored in double. at "
                                "offset: 0");
    expect_parse_error("nan", "JSON Parse error: Invalid value. at offset: 0");
    expect_parse_error("\"\\ud800\"",
                       "JSON Parse error: The surrogate pair in string is invalid. at offset: 7");
    char deep[200];
    memset(deep, '[', 100);
    deep[100] = '\0';
    expect_parse_error(deep, "JSON Parse error: Nesting is deeper than 64 levels. at offset: 64");
}

static void test_json_strings_and_members(void)
{
    char error[256] = "";
    srv_json_doc *doc =
        parse("{\"k\": \"a\\\"b\\\\c\\n\\u00e9\\ud83d\\ude00\", \"k\": 2, \"z\\u0000\": null} trailing",
              error);
    CHECK_MSG(doc != NULL, "rejected: %s", error);
    if (doc == NULL)
        return;
    const srv_json *root = srv_json_root(doc);
    const srv_json *k = srv_json_get(root, "k");
    CHECK(k != NULL && k->type == SRV_JSON_STRING);
    CHECK(k != NULL && k->length == 12 && memcmp(k->string, "a\"b\\c\n\xc3\xa9\xf0\x9f\x98\x80", 12) == 0);
    CHECK_INT_EQ(root->count, 3);
    CHECK_INT_EQ(root->items[2]->key_length, 2);
    CHECK(srv_json_get(root, "missing") == NULL);
    srv_json_free(doc);
}

static void expect_escaped(const char *text, size_t length, const char *expected)
{
    srv_buf buf;
    srv_buf_init(&buf);
    srv_buf_json_string(&buf, text, length);
    CHECK_MSG(buf.data != NULL && strcmp(buf.data, expected) == 0, "got %s, expected %s",
              buf.data != NULL ? buf.data : "(null)", expected);
    CHECK(buf.data == NULL || strstr(buf.data, "\\'") == NULL);
    srv_buf_free(&buf);
}

static void test_json_string_escaping(void)
{
    expect_escaped("plain", 5, "\"plain\"");
    expect_escaped("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_escaped("it's", 4, "\"it's\"");
    expect_escaped("\x01\n\t\x1f", 4, "\"\\u0001\\n\\t\\u001f\"");
    expect_escaped("nul\0x", 5, "\"nul\\u0000x\"");
    expect_escaped("caf\xc3\xa9", 5, "\"caf\xc3\xa9\"");
    /* Invalid UTF-8: a lone continuation byte, a cut sequence, an overlong
     * encoding and a UTF-16 surrogate each become U+FFFD. */
    expect_escaped("\x80", 1, "\"\\ufffd\"");
    expect_escaped("\xc3", 1, "\"\\ufffd\"");
    expect_escaped("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");
    expect_escaped("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");
}

static void test_json_error_body(void)
{
    size_t length = 0;
    char *body = srv_json_error_body("Latest(a\"b\\c) \x01", &length);
    CHECK(body != NULL);
    if (body != NULL) {
        CHECK_MSG(strcmp(body, "{\n    \"error\": \"Latest(a\\\"b\\\\c) \\u0001\"\n}") == 0, "%s",
                  body);
        CHECK_INT_EQ(length, strlen(body));
        /* The body parses back to the original message. */
        char error[256] = "";
        srv_json_doc *doc = srv_json_parse(body, length, error, sizeof error);
        const srv_json *message = doc != NULL ? srv_json_get(srv_json_root(doc), "error") : NULL;
        CHECK(message != NULL && strcmp(message->string, "Latest(a\"b\\c) \x01") == 0);
        srv_json_free(doc);
    }
    free(body);
}

static void expect_float(float value, const char *expected)
{
    srv_buf buf;
    srv_buf_init(&buf);
    srv_buf_json_float(&buf, value);
    CHECK_MSG(buf.data != NULL && strcmp(buf.data, expected) == 0, "%.9g written as %s, expected %s",
              (double)value, buf.data != NULL ? buf.data : "(null)", expected);
    srv_buf_free(&buf);
}

static void test_json_float_format(void)
{
    expect_float(0.5f, "0.5");
    expect_float(1.0f, "1.0");
    expect_float(0.0f, "0.0");
    expect_float(-2.0f, "-2.0");
    expect_float(0.1f, "0.1");
    expect_float(1e-10f, "1e-10");
    expect_float(123456789.0f, "123456792.0");
    expect_float(0.101281904f, "0.101281904");
    expect_float(NAN, "NaN");
    expect_float(INFINITY, "Infinity");
    expect_float(-INFINITY, "-Infinity");
}

static void test_json_excerpt_cut(void)
{
    char error[256] = "";
    char text[300];
    snprintf(text, sizeof text, "\"%0200d\"", 0);
    srv_json_doc *doc = srv_json_parse(text, strlen(text), error, sizeof error);
    CHECK(doc != NULL);
    srv_buf buf;
    srv_buf_init(&buf);
    srv_buf_json_excerpt(&buf, srv_json_root(doc), 20);
    CHECK_MSG(buf.data != NULL && strlen(buf.data) == 23, "excerpt %s", buf.data);
    CHECK(buf.data != NULL && strcmp(buf.data + 20, "...") == 0);
    srv_buf_free(&buf);
    srv_json_free(doc);
}

int main(void)
{
    RUN_TEST(test_json_non_finite_tokens);
    RUN_TEST(test_json_parse_errors);
    RUN_TEST(test_json_strings_and_members);
    RUN_TEST(test_json_string_escaping);
    RUN_TEST(test_json_error_body);
    RUN_TEST(test_json_float_format);
    RUN_TEST(test_json_excerpt_cut);
    return check_finish();
}
