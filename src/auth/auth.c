/*
 * auth/auth.c - API tokens: 256 random bits from OpenSSL shown once as
 * "eph_" + base64url, stored only as their hex SHA-256, compared in constant
 * time. Nothing here logs: tokens never reach a log line.
 */
#include "auth/auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

#include "util/err.h"
#include "util/xmalloc.h"

#define TOKEN_PREFIX "eph_"
#define TOKEN_RANDOM_BYTES 32     /* 256 bits: 43 base64url characters */
#define RANDOM_HEX_MAX_BYTES 1024 /* ids, not keys: anything above is a bug */

static const char hex_digits[] = "0123456789abcdef";

static void
to_hex(const unsigned char *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex_digits[in[i] >> 4];
        out[2 * i + 1] = hex_digits[in[i] & 0xf];
    }
    out[2 * n] = '\0';
}

/* Base64url without padding (RFC 4648 section 5); out holds 4*ceil(n/3)+1. */
static void
base64url(const unsigned char *in, size_t n, char *out)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned v = (unsigned)in[i] << 16;

        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
}

int
auth_token_generate(char out[AUTH_TOKEN_MAX])
{
    unsigned char raw[TOKEN_RANDOM_BYTES];
    char enc[(TOKEN_RANDOM_BYTES + 2) / 3 * 4 + 1];

    out[0] = '\0';
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        return EPH_EINTERNAL;
    base64url(raw, sizeof(raw), enc);
    OPENSSL_cleanse(raw, sizeof(raw));
    memcpy(out, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1);
    memcpy(out + sizeof(TOKEN_PREFIX) - 1, enc, strlen(enc) + 1);
    OPENSSL_cleanse(enc, sizeof(enc));
    return 0;
}

void
auth_token_hash(const char *token, char out[AUTH_HASH_HEX])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;

    /* SHA-256 cannot fail on memory we own; a failing OpenSSL is our bug. */
    EPH_ASSERT(EVP_Digest(token, strlen(token), md, &md_len, EVP_sha256(), NULL) == 1);
    EPH_ASSERT(md_len == 32);
    to_hex(md, md_len, out);
}

int
auth_random_hex(size_t bytes, char *out)
{
    unsigned char *raw;
    int rc = 0;

    EPH_ASSERT(bytes > 0 && bytes <= RANDOM_HEX_MAX_BYTES);
    raw = xmalloc(bytes);
    if (RAND_bytes(raw, (int)bytes) != 1) {
        out[0] = '\0';
        rc = EPH_EINTERNAL;
    } else {
        to_hex(raw, bytes, out);
    }
    free(raw);
    return rc;
}

bool
auth_equal_ct(const void *a, size_t a_len, const void *b, size_t b_len)
{
    /* Different lengths still cost one comparison of a's length, so the time
     * says nothing about where the contents differ. */
    if (a_len != b_len) {
        (void)CRYPTO_memcmp(a, a, a_len);
        return false;
    }
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

const char *
auth_bearer_token(const char *header)
{
    static const char scheme[] = "bearer";
    const char *p = header;
    const char *tok;

    if (header == NULL)
        return NULL;
    while (*p == ' ' || *p == '\t')
        p++;
    for (size_t i = 0; i < sizeof(scheme) - 1; i++, p++) {
        char c = *p;

        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != scheme[i])
            return NULL;
    }
    if (*p != ' ' && *p != '\t')
        return NULL; /* "Bearerx" or no token at all */
    while (*p == ' ' || *p == '\t')
        p++;
    tok = p;
    if (*tok == '\0')
        return NULL;
    /* RFC 6750 b64token characters only: anything else is not one token. */
    for (; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("-._~+/=", c) != NULL;

        if (!ok)
            return NULL;
    }
    return tok;
}
