/*
 * tests/unit/util/test_url.c - percent-decoding and -encoding (util/url.h).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/url.h"
#include "util/xmalloc.h"

Test(url_decode, decodes_percent_in_either_case_and_plus_only_when_asked)
{
    static const struct {
        const char *in;
        bool plus;
        const char *want;
    } ok[] = {
        {"", true, ""},          {"abc", true, "abc"},           {"a+b", true, "a b"},
        {"a+b", false, "a+b"},   {"p%40ss%2Bw", true, "p@ss+w"}, {"%c3%A9", false, "\xc3\xa9"},
        {"%2F%3f", false, "/?"},
    };

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        char *got = url_decode(ok[i].in, strlen(ok[i].in), ok[i].plus);

        cr_expect_not_null(got, "case %zu: '%s'", i, ok[i].in);
        if (got)
            cr_expect_str_eq(got, ok[i].want, "case %zu: '%s'", i, ok[i].in);
        free(got);
    }
}

Test(url_decode, refuses_stray_percent_nul_and_bad_digits)
{
    static const char *const bad[] = {"%", "%4", "a%", "%zz", "%4g", "x%00y"};

    for (size_t i = 0; i < ARRAY_LEN(bad); i++)
        cr_expect_null(url_decode(bad[i], strlen(bad[i]), true), "case %zu: '%s'", i, bad[i]);
    /* A NUL byte inside the given length is refused like %00. */
    cr_expect_null(url_decode("a\0b", 3, true));
}

Test(url_decode, reads_only_len_bytes)
{
    char *got = url_decode("%41%42", 3, false);

    cr_expect_str_eq(got, "A");
    free(got);
}

Test(url_encode, escapes_all_but_unreserved_in_upper_case)
{
    struct buf b;

    buf_init(&b, 4096);
    cr_expect_eq(url_encode(&b, "a b/~_.-\xc3\xa9&", strlen("a b/~_.-\xc3\xa9&")), 0);
    cr_expect_str_eq(buf_cstr(&b), "a%20b%2F~_.-%C3%A9%26");
    buf_release(&b);
}

Test(url_encode, stops_at_the_buffer_ceiling)
{
    struct buf b;

    buf_init(&b, 4);
    cr_expect_lt(url_encode(&b, "ab cd", 5), 0);
    cr_expect_str_eq(buf_cstr(&b), "ab");
    buf_release(&b);
}
