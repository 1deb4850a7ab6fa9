#include "serve/base64.h"

/* The 6-bit value of C in either alphabet, or -1. */
static int symbol_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

size_t srv_base64_decoded_max(size_t length)
{
    return length / 4 * 3 + 3;
}

int srv_base64_decode(const char *text, size_t length, uint8_t *out, size_t *decoded,
                      size_t *error_position)
{
    /* Up to two '=' may end the text, and only where they complete a
     * 4-symbol group. */
    size_t symbols = length;
    size_t padding = 0;
    while (symbols > 0 && text[symbols - 1] == '=' && padding < 2) {
        symbols--;
        padding++;
    }
    if (padding > 0 && (symbols + padding) % 4 != 0) {
        size_t first = 0;
        while (text[first] != '=')
            first++;
        *error_position = first;
        return -1;
    }

    uint32_t group = 0;
    int filled = 0;
    size_t n = 0;
    for (size_t i = 0; i < symbols; i++) {
        int value = symbol_value((unsigned char)text[i]);
        if (value < 0) {
            *error_position = i;
            return -1;
        }
        group = group << 6 | (uint32_t)value;
        if (++filled == 4) {
            out[n++] = (uint8_t)(group >> 16);
            out[n++] = (uint8_t)(group >> 8);
            out[n++] = (uint8_t)group;
            group = 0;
            filled = 0;
        }
    }
    if (filled == 1) {
        *error_position = symbols - 1;
        return -1;
    }
    if (filled == 2) {
        out[n++] = (uint8_t)(group >> 4);
    } else if (filled == 3) {
        out[n++] = (uint8_t)(group >> 10);
        out[n++] = (uint8_t)(group >> 2);
    }
    *decoded = n;
    return 0;
}
