/* SHA-256 digests through OpenSSL's EVP interface, as lowercase hex. */
#ifndef DISTML_BASE_SHA256_H
#define DISTML_BASE_SHA256_H

#include <stddef.h>

#define SHA256_HEX_SIZE 65 /* 64 hex digits and a NUL */

typedef struct sha256_ctx sha256_ctx;

sha256_ctx *sha256_begin(void);
int sha256_update(sha256_ctx *ctx, const void *data, size_t size);
/* Write the hex digest into HEX and free CTX. */
int sha256_finish(sha256_ctx *ctx, char hex[SHA256_HEX_SIZE]);
void sha256_free(sha256_ctx *ctx);

int sha256_hex(const void *data, size_t size, char hex[SHA256_HEX_SIZE]);
int sha256_file_hex(const char *path, char hex[SHA256_HEX_SIZE]);

#endif
