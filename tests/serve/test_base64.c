/*
 * base64 decoding of "b64" values: the standard and URL-safe alphabets,
 * optional padding, and the position reported for invalid input.
 */
#include "check.h"

#include "serve/base64.h"

#include <stdint.h>

/* Decodes TEXT and checks the result against EXPECTED (LENGTH bytes). */
static void expect_decoded(const char *text, const char *expected, size_t length)
{
    uint8_t out[64];
    size_t decoded = 0, position = 0;
    int rc = srv_base64_decode(text, strlen(text), out, &decoded, &position);
    CHECK_MSG(rc == 0, "'%s' was rejected at position %zu", text, position);
    CHECK_MSG(decoded == length, "'%s' decoded to %zu bytes, expected %zu", text, decoded, length);
    CHECK_MSG(rc != 0 || memcmp(out, expected, length) == 0, "'%s' decoded to other bytes", text);
}

static void expect_rejected(const char *text, size_t position)
{
    uint8_t out[64];
    size_t decoded = 0, found = 999;
    int rc = srv_base64_decode(text, strlen(text), out, &decoded, &found);
    CHECK_MSG(rc != 0, "'%s' was accepted", text);
    CHECK_MSG(found == position, "'%s' rejected at %zu, expected %zu", text, found, position);
}

static void test_base64_standard_alphabet(void)
{
    expect_decoded("", "", 0);
    expect_decoded("TWFu", "Man", 3);
    expect_decoded("TWE=", "Ma", 2);
    expect_decoded("TQ==", "M", 1);
    expect_decoded("+/+/", "\xfb\xff\xbf", 3);
}

static void test_base64_url_safe_alphabet(void)
{
    expect_decoded("-_-_", "\xfb\xff\xbf", 3);
    /* The two alphabets may even be mixed. */
    expect_decoded("+_-/", "\xfb\xff\xbf", 3);
}

static void test_base64_padding_optional(void)
{
    expect_decoded("QQ", "A", 1);
    expect_decoded("QUI", "AB", 2);
    expect_decoded("QUI=", "AB", 2);
    expect_decoded("QQ==", "A", 1);
}

static void test_base64_invalid_input(void)
{
    expect_rejected("abc$", 3);
    expect_rejected("\x01\n", 0);
    expect_rejected("ab cd", 2);
    expect_rejected("QQ=A", 2);   /* '=' inside the text */
    expect_rejected("QQ=", 2);    /* padding that does not complete a group */
    expect_rejected("QUJDR", 4);  /* 5 symbols: the last encodes no whole byte */
    expect_rejected("QQ===", 2);  /* three '=' */
}

int main(void)
{
    RUN_TEST(test_base64_standard_alphabet);
    RUN_TEST(test_base64_url_safe_alphabet);
    RUN_TEST(test_base64_padding_optional);
    RUN_TEST(test_base64_invalid_input);
    return check_finish();
}
