#include "base/sha256.h"

#include "base/error.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sha256_ctx {
    EVP_MD_CTX *md;
};

sha256_ctx *sha256_begin(void)
{
    sha256_ctx *ctx = dm_malloc(sizeof *ctx);
    if (ctx == NULL)
        return NULL;
    ctx->md = EVP_MD_CTX_new();
    if (ctx->md == NULL || EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL) != 1) {
        sha256_free(ctx);
        dm_fail("cannot initialise SHA-256");
        return NULL;
    }
    return ctx;
}

int sha256_update(sha256_ctx *ctx, const void *data, size_t size)
{
    if (EVP_DigestUpdate(ctx->md, data, size) != 1)
        return dm_fail("SHA-256 update failed");
    return 0;
}

int sha256_finish(sha256_ctx *ctx, char hex[SHA256_HEX_SIZE])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int rc = EVP_DigestFinal_ex(ctx->md, digest, &len);
    sha256_free(ctx);
    if (rc != 1 || len != 32)
        return dm_fail("SHA-256 finalisation failed");
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return 0;
}

void sha256_free(sha256_ctx *ctx)
{
    if (ctx == NULL)
        return;
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
}

int sha256_hex(const void *data, size_t size, char hex[SHA256_HEX_SIZE])
{
    sha256_ctx *ctx = sha256_begin();
    if (ctx == NULL)
        return -1;
    if (sha256_update(ctx, data, size) != 0) {
        sha256_free(ctx);
        return -1;
    }
    return sha256_finish(ctx, hex);
}

int sha256_file_hex(const char *path, char hex[SHA256_HEX_SIZE])
{
    unsigned char buf[1 << 16];
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return dm_fail("cannot open %s: %s", path, strerror(errno));
    sha256_ctx *ctx = sha256_begin();
    if (ctx == NULL) {
        fclose(f);
        return -1;
    }
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sha256_update(ctx, buf, n);
    int failed = ferror(f);
    fclose(f);
    if (failed) {
        sha256_free(ctx);
        return dm_fail("cannot read %s", path);
    }
    return sha256_finish(ctx, hex);
}
