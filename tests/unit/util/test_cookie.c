/*
 * tests/unit/util/test_cookie.c - reading one cookie out of a Cookie
 * header (util/cookie.c): the first of its name, exactly that name, blanks
 * around a pair dropped, and nothing read past the header's length.
 */
#include "util/cookie.h"

#include <criterion/criterion.h>
#include <string.h>

/* The value of `name` in header h as a string, or NULL. */
static char *
find(const char *h, const char *name)
{
    static char out[256];
    size_t len = 0;
    const char *v = cookie_find(h, strlen(h), name, strlen(name), &len);

    if (v == NULL)
        return NULL;
    cr_assert_lt(len, sizeof(out));
    memcpy(out, v, len);
    out[len] = '\0';
    return out;
}

Test(cookie, finds_a_cookie_among_others)
{
    cr_expect_str_eq(find("eph_host=abc", "eph_host"), "abc");
    cr_expect_str_eq(find("theme=dark; eph_host=abc", "eph_host"), "abc");
    cr_expect_str_eq(find("theme=dark;eph_host=abc;x=1", "eph_host"), "abc");
    cr_expect_str_eq(find(" \teph_host=a.b-c_d \t; x=1", "eph_host"), "a.b-c_d");
    cr_expect_str_eq(find("eph_host=; x=1", "x"), "1");
    cr_expect_str_eq(find("eph_host=", "eph_host"), "");
    cr_expect_str_eq(find("a=1; a=2", "a"), "1", "the first of a name");
    cr_expect_str_eq(find("a=b=c", "a"), "b=c", "an '=' in a value is the value's");
}

Test(cookie, the_name_must_match_exactly)
{
    cr_expect_null(find("", "eph_host"));
    cr_expect_null(find("x_eph_host=abc", "eph_host"));
    cr_expect_null(find("eph_hostx=abc", "eph_host"));
    cr_expect_null(find("EPH_HOST=abc", "eph_host"));
    cr_expect_null(find("eph_host", "eph_host"), "a name without '='");
    cr_expect_null(find("x=eph_host=abc", "eph_host"), "inside another's value");
    cr_expect_null(find(";;; ;", "eph_host"));
}

Test(cookie, reads_no_further_than_the_length)
{
    const char h[] = "a=1; eph_host=secret";
    size_t len = 0;

    /* Only "a=1; eph_h" is the header: no cookie eph_host in it. */
    cr_expect_null(cookie_find(h, 10, "eph_host", 8, &len));
    cr_expect_not_null(cookie_find(h, 3, "a", 1, &len));
    cr_expect_eq(len, 1);
    /* A value cut by the length ends there. */
    cr_assert_not_null(cookie_find(h, sizeof(h) - 4, "eph_host", 8, &len));
    cr_expect_eq(len, 3);
}
