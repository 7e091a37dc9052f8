/*
 * auth/password.h - passwords of local users: argon2id (libargon2), in the
 * PHC string form ("$argon2id$v=19$m=19456,t=2,p=1$salt$hash") with a
 * random 16-byte salt. Only that string is stored; a password is never
 * logged. Any thread; each call takes tens of milliseconds on purpose.
 */
#ifndef EPH_AUTH_PASSWORD_H
#define EPH_AUTH_PASSWORD_H

#include <stdbool.h>

#define AUTH_PASSWORD_HASH_MAX 160 /* bytes including the NUL */
#define AUTH_PASSWORD_MIN 8        /* characters a new password needs at least */
#define AUTH_PASSWORD_MAX 1024     /* longer ones are refused, not hashed */

/* Hashes a password into out. 0, EPH_EINVAL (shorter than AUTH_PASSWORD_MIN
 * or longer than AUTH_PASSWORD_MAX), or EPH_EINTERNAL. */
int auth_password_hash(const char *password, char out[AUTH_PASSWORD_HASH_MAX]);

/* True if `password` matches `encoded` (a string auth_password_hash made).
 * A malformed `encoded` is false. */
bool auth_password_verify(const char *encoded, const char *password);

/* Spends the time of one verification and returns false: for unknown user
 * names, so that timing does not tell which names exist. */
bool auth_password_verify_dummy(const char *password);

#endif
