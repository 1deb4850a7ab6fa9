/*
 * base64 decoding for the "b64" values of predict requests. Both the
 * standard alphabet (RFC 4648 section 4, "+/") and the URL-safe one
 * (section 5, "-_") are accepted, even mixed, and the "=" padding is
 * optional. TensorFlow Serving accepts only the standard alphabet; clients
 * that encode with the URL-safe one are common enough to accept it too.
 */
#ifndef DISTML_SERVE_BASE64_H
#define DISTML_SERVE_BASE64_H

#include <stddef.h>
#include <stdint.h>

/* The largest decoded size of LENGTH characters of base64. */
size_t srv_base64_decoded_max(size_t length);

/*
 * Decodes TEXT (LENGTH characters) into OUT, which has room for at least
 * srv_base64_decoded_max(LENGTH) bytes, and returns 0 with the byte count in
 * *DECODED. On invalid input returns -1 and sets *ERROR_POSITION to the
 * index of the first offending character: one outside both alphabets, a
 * '=' that is not trailing padding, or a lone last character (a length of
 * 4k+1 symbols encodes no whole byte).
 */
int srv_base64_decode(const char *text, size_t length, uint8_t *out, size_t *decoded,
                      size_t *error_position);

#endif
