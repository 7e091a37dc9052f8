/*
 * tests/unit/auth/test_auth.c - tokens, their hashes, bearer headers and the
 * constant-time comparison.
 */
#include "auth/auth.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/err.h"

Test(auth, generates_eph_tokens_of_43_base64url_characters)
{
    char tok[AUTH_TOKEN_MAX];

    cr_assert_eq(auth_token_generate(tok), 0);
    cr_expect_eq(strlen(tok), 4 + 43);
    cr_expect_eq(strncmp(tok, "eph_", 4), 0, "%s", tok);
    for (size_t i = 4; tok[i]; i++) {
        char c = tok[i];

        cr_expect((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '_',
                  "character %zu of %s", i, tok);
    }
}

Test(auth, generates_a_different_token_every_time)
{
    enum { N = 200 };
    static char toks[N][AUTH_TOKEN_MAX];

    for (int i = 0; i < N; i++) {
        cr_assert_eq(auth_token_generate(toks[i]), 0);
        for (int j = 0; j < i; j++)
            cr_assert_str_neq(toks[i], toks[j]);
    }
}

Test(auth, hashes_with_sha256_in_lower_case_hex)
{
    char hex[AUTH_HASH_HEX];

    auth_token_hash("abc", hex);
    cr_expect_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    auth_token_hash("", hex);
    cr_expect_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

Test(auth, makes_random_hex_ids)
{
    char a[33];
    char b[33];

    cr_assert_eq(auth_random_hex(16, a), 0);
    cr_assert_eq(auth_random_hex(16, b), 0);
    cr_expect_eq(strlen(a), 32);
    cr_expect_eq(strspn(a, "0123456789abcdef"), 32);
    cr_expect_str_neq(a, b);
}

static const struct {
    const char *header;
    const char *want; /* NULL: no token */
} bearer_cases[] = {
    {"Bearer eph_abc", "eph_abc"},
    {"bearer eph_abc", "eph_abc"},
    {"BEARER eph_abc", "eph_abc"},
    {"  Bearer    eph_abc", "eph_abc"},
    {"Bearer\teph_abc", "eph_abc"},
    {"Bearer eph_a-b_c.d~e+f/g=", "eph_a-b_c.d~e+f/g="},
    {"Basic dXNlcjpwYXNz", NULL},
    {"Bearereph_abc", NULL},
    {"Bearer", NULL},
    {"Bearer   ", NULL},
    {"Bear eph_abc", NULL},
    {"Bearer eph_abc extra", NULL},
    {"", NULL},
    {"Token eph_abc", NULL},
};

Test(auth, parses_bearer_headers)
{
    for (size_t i = 0; i < sizeof(bearer_cases) / sizeof(bearer_cases[0]); i++) {
        const char *got = auth_bearer_token(bearer_cases[i].header);

        if (bearer_cases[i].want == NULL)
            cr_expect_null(got, "case %zu: '%s'", i, bearer_cases[i].header);
        else
            cr_expect_str_eq(got ? got : "(null)", bearer_cases[i].want, "case %zu", i);
    }
    cr_expect_null(auth_bearer_token(NULL));
}

Test(auth, compares_in_constant_time_with_the_right_result)
{
    cr_expect(auth_equal_ct("abc", 3, "abc", 3));
    cr_expect_not(auth_equal_ct("abc", 3, "abd", 3));
    cr_expect_not(auth_equal_ct("abc", 3, "abcd", 4));
    cr_expect_not(auth_equal_ct("abcd", 4, "abc", 3));
    cr_expect(auth_equal_ct("", 0, "", 0));
    cr_expect_not(auth_equal_ct("x", 1, "", 0));
    cr_expect(auth_equal_ct("a\0b", 3, "a\0b", 3), "embedded NUL bytes are compared too");
    cr_expect_not(auth_equal_ct("a\0b", 3, "a\0c", 3));
}
