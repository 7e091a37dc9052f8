/*
 * tests/unit/auth/test_password.c - argon2id password hashes: the right
 * password matches, a wrong one does not, too short and too long ones are
 * refused, and the dummy verification always says no.
 */
#include "auth/password.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/err.h"

Test(password, hashes_in_the_argon2id_phc_form_and_verifies)
{
    char enc[AUTH_PASSWORD_HASH_MAX];

    cr_assert_eq(auth_password_hash("correct horse battery", enc), 0);
    cr_expect_eq(strncmp(enc, "$argon2id$v=19$m=19456,t=2,p=1$", 31), 0, "%s", enc);
    cr_expect(auth_password_verify(enc, "correct horse battery"));
    cr_expect_not(auth_password_verify(enc, "correct horse batterY"));
    cr_expect_not(auth_password_verify(enc, ""));
}

Test(password, salts_every_hash_differently)
{
    char a[AUTH_PASSWORD_HASH_MAX];
    char b[AUTH_PASSWORD_HASH_MAX];

    cr_assert_eq(auth_password_hash("same password", a), 0);
    cr_assert_eq(auth_password_hash("same password", b), 0);
    cr_expect_str_neq(a, b);
}

Test(password, refuses_short_and_long_passwords)
{
    char enc[AUTH_PASSWORD_HASH_MAX];
    char long_pw[AUTH_PASSWORD_MAX + 2];

    cr_expect_eq(auth_password_hash("", enc), EPH_EINVAL);
    cr_expect_eq(auth_password_hash("1234567", enc), EPH_EINVAL);
    cr_expect_str_eq(enc, "");
    /* Seven characters in fourteen bytes: still too short. */
    cr_expect_eq(
        auth_password_hash("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", enc),
        EPH_EINVAL);
    cr_expect_eq(auth_password_hash(NULL, enc), EPH_EINVAL);

    memset(long_pw, 'x', AUTH_PASSWORD_MAX + 1);
    long_pw[AUTH_PASSWORD_MAX + 1] = '\0';
    cr_expect_eq(auth_password_hash(long_pw, enc), EPH_EINVAL);
    long_pw[AUTH_PASSWORD_MAX] = '\0'; /* exactly the maximum is fine */
    cr_expect_eq(auth_password_hash(long_pw, enc), 0);
    cr_expect(auth_password_verify(enc, long_pw));
}

Test(password, accepts_eight_characters)
{
    char enc[AUTH_PASSWORD_HASH_MAX];

    cr_expect_eq(auth_password_hash("12345678", enc), 0);
    cr_expect(auth_password_verify(enc, "12345678"));
}

Test(password, treats_malformed_hashes_as_no_match)
{
    cr_expect_not(auth_password_verify("", "whatever1"));
    cr_expect_not(
        auth_password_verify("$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA", "whatever1"));
    cr_expect_not(auth_password_verify("$argon2id$garbage", "whatever1"));
    cr_expect_not(auth_password_verify(NULL, "whatever1"));
}

Test(password, dummy_verification_is_always_false)
{
    cr_expect_not(auth_password_verify_dummy("ephemera dummy password"));
    cr_expect_not(auth_password_verify_dummy("anything"));
    cr_expect_not(auth_password_verify_dummy(NULL));
}
