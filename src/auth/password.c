/*
 * auth/password.c - local users' passwords: argon2id through libargon2 with
 * OWASP's minimum parameters (19 MiB, two passes, one lane), a 16-byte salt
 * from OpenSSL and a 32-byte hash, kept as the PHC string argon2 encodes.
 * Nothing here logs: passwords never reach a log line.
 */
#include "auth/password.h"

#include <argon2.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "util/err.h"

#define M_COST_KIB 19456 /* 19 MiB: OWASP's argon2id minimum */
#define T_COST 2         /* passes over that memory */
#define PARALLELISM 1    /* one lane: no threads of libargon2's own */
#define SALT_BYTES 16
#define HASH_BYTES 32
#define ENCODED_PREFIX "$argon2id$"

/* Counts UTF-8 characters (bytes that do not continue a sequence) of the first
 * `len` bytes, so that "ééééé" is five characters, not ten. */
static size_t
utf8_chars(const char *s, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    }
    return n;
}

int
auth_password_hash(const char *password, char out[AUTH_PASSWORD_HASH_MAX])
{
    unsigned char salt[SALT_BYTES];
    size_t len;
    int rc;

    out[0] = '\0';
    if (password == NULL)
        return EPH_EINVAL;
    /* strnlen: a megabyte of password is refused without reading all of it. */
    len = strnlen(password, AUTH_PASSWORD_MAX + 1);
    if (len > AUTH_PASSWORD_MAX || utf8_chars(password, len) < AUTH_PASSWORD_MIN)
        return EPH_EINVAL;
    EPH_ASSERT(argon2_encodedlen(T_COST, M_COST_KIB, PARALLELISM, SALT_BYTES, HASH_BYTES,
                                 Argon2_id) <= AUTH_PASSWORD_HASH_MAX);
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return EPH_EINTERNAL;
    rc = argon2id_hash_encoded(T_COST, M_COST_KIB, PARALLELISM, password, len, salt, sizeof(salt),
                               HASH_BYTES, out, AUTH_PASSWORD_HASH_MAX);
    if (rc != ARGON2_OK) {
        out[0] = '\0';
        return EPH_EINTERNAL; /* only memory running out gets here */
    }
    return 0;
}

bool
auth_password_verify(const char *encoded, const char *password)
{
    size_t len;

    if (encoded == NULL || password == NULL)
        return false;
    /* Only strings we made: argon2id, and short enough to be ours. The
     * parameters come from the string, so an old hash still verifies after
     * the constants above change. */
    if (strncmp(encoded, ENCODED_PREFIX, sizeof(ENCODED_PREFIX) - 1) != 0 ||
        strnlen(encoded, AUTH_PASSWORD_HASH_MAX) >= AUTH_PASSWORD_HASH_MAX)
        return false;
    len = strnlen(password, AUTH_PASSWORD_MAX + 1);
    if (len > AUTH_PASSWORD_MAX)
        return false; /* could never have been hashed; length is no secret */
    return argon2id_verify(encoded, password, len) == ARGON2_OK;
}

/* ------------------------------------------------------------- dummy */

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char dummy_encoded[AUTH_PASSWORD_HASH_MAX];

/* Made once, with the same parameters as real hashes so that a verification
 * against it costs what a real one does. Password and salt are fixed: the
 * result only has to be well-formed, never to match. */
static void
make_dummy(void)
{
    static const char pw[] = "ephemera dummy password";
    static const unsigned char salt[SALT_BYTES] = "eph-dummy-salt!";
    int rc = argon2id_hash_encoded(T_COST, M_COST_KIB, PARALLELISM, pw, sizeof(pw) - 1, salt,
                                   sizeof(salt), HASH_BYTES, dummy_encoded, sizeof(dummy_encoded));

    if (rc != ARGON2_OK)
        dummy_encoded[0] = '\0'; /* verify_dummy then spends less time: still false */
}

bool
auth_password_verify_dummy(const char *password)
{
    size_t len;

    pthread_once(&dummy_once, make_dummy);
    if (dummy_encoded[0] == '\0')
        return false;
    if (password == NULL)
        password = "";
    len = strnlen(password, AUTH_PASSWORD_MAX + 1);
    if (len > AUTH_PASSWORD_MAX)
        return false; /* as auth_password_verify does */
    (void)argon2id_verify(dummy_encoded, password, len);
    return false;
}
