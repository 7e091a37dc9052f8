/*
 * auth/auth.h - API tokens: generation, hashing, constant-time comparison.
 *
 * A token is "eph_" followed by 43 base64url characters (256 random bits from
 * OpenSSL). Only its SHA-256 (hex) is stored; a token is shown once.
 * Any thread.
 */
#ifndef EPH_AUTH_AUTH_H
#define EPH_AUTH_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_TOKEN_MAX 64   /* bytes including the NUL */
#define AUTH_HASH_HEX 65    /* 64 hex digits and a NUL */

/* Fills out with a new random token. 0, or EPH_EINTERNAL if randomness fails. */
int auth_token_generate(char out[AUTH_TOKEN_MAX]);

/* Hex SHA-256 of `token`. */
void auth_token_hash(const char *token, char out[AUTH_HASH_HEX]);

/* Random hex id of `bytes` random bytes into out (2*bytes+1). 0 or EPH_EINTERNAL. */
int auth_random_hex(size_t bytes, char *out);

/* Compares two byte strings in time that depends only on their lengths. */
bool auth_equal_ct(const void *a, size_t a_len, const void *b, size_t b_len);

/*
 * Extracts the token from an "Authorization: Bearer <token>" header value:
 * the scheme in any case, blanks before and after it skipped. Returns a
 * pointer into `header`, or NULL for another scheme, no token, or a token
 * holding characters outside RFC 6750's b64token set (blanks included).
 */
const char *auth_bearer_token(const char *header);

#endif
