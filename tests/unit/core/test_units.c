/*
 * tests/unit/core/test_units.c - sizes and CPU amounts (core/units.c): the
 * notations read, the ones refused, and formatting that reads back.
 */
#include "core/units.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/err.h"
#include "util/xmalloc.h"

Test(units, reads_sizes_in_bytes_and_both_kinds_of_suffix)
{
    static const struct {
        const char *text;
        int64_t want;
    } ok[] = {
        {"0", 0},
        {"1048576", 1048576},
        {"512Mi", 512LL << 20},
        {"1Gi", 1LL << 30},
        {"2Ki", 2048},
        {"1G", 1000000000},
        {"1k", 1000},
        {"1K", 1000},
        {"3M", 3000000},
        {"1Ti", 1LL << 40},
        {"1.5Gi", 3LL << 29},
        {"0.5Ki", 512},
        {"0.1Gi", 107374182}, /* rounded down to whole bytes */
        {"1.5", 1},
        {"1Ei", 1LL << 60},
        {"007", 7},
    };

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        int64_t v = -1;

        cr_expect_eq(parse_size_bytes(ok[i].text, &v), 0, "'%s' refused", ok[i].text);
        cr_expect_eq(v, ok[i].want, "'%s': got %lld, want %lld", ok[i].text, (long long)v,
                     (long long)ok[i].want);
    }
}

Test(units, refuses_sizes_it_cannot_read_exactly)
{
    static const char *bad[] = {
        "",
        "Mi",
        "512MB",
        "512 Mi",
        " 512",
        "-1",
        "+1",
        "1.",
        ".5",
        "1..5",
        "1e3",
        "1mi",
        "1Gib",
        "0x10",
        "2Ei",
        "1.5Ei0",
        "9223372036854775807",
        "99999999999999999999999",
        "1.0000000001Ki",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t v = 42;

        cr_expect_eq(parse_size_bytes(bad[i], &v), EPH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_eq(v, 42, "'%s' changed the output", bad[i]);
    }
    cr_expect_eq(parse_size_bytes(NULL, &(int64_t){0}), EPH_EINVAL);
}

Test(units, reads_cpu_in_cores_and_millicores)
{
    static const struct {
        const char *text;
        int64_t want;
    } ok
        [] =
            {
                {"1", 1000},     {"1.0", 1000}, {"0.5", 500},     {"2.25", 2250},
                {"250m", 250},   {"0", 0},      {"0m", 0},        {"0.001", 1},
                {"1.500", 1500}, {"16", 16000}, {"1.5000", 1500}, /* zeros past the third decimal
                                                                     change nothing */
            };

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        int64_t v = -1;

        cr_expect_eq(parse_cpu_millis(ok[i].text, &v), 0, "'%s' refused", ok[i].text);
        cr_expect_eq(v, ok[i].want, "'%s': got %lld", ok[i].text, (long long)v);
    }
}

Test(units, refuses_cpu_amounts_finer_than_a_millicore_or_malformed)
{
    static const char *bad[] = {
        "",    "m",  "0.0005", "1.5m", "250 m",  "-1",  "1 core",
        "1,5", ".5", "1.",     "mm",   "100001", "2m5", "999999999999999999999m",
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t v = 42;

        cr_expect_eq(parse_cpu_millis(bad[i], &v), EPH_EINVAL, "'%s' accepted", bad[i]);
        cr_expect_eq(v, 42, "'%s' changed the output", bad[i]);
    }
}

Test(units, formats_what_it_reads_back)
{
    static const int64_t sizes[] = {0,           1,         1000,      1024,      1536,
                                    512LL << 20, 1LL << 30, 3LL << 29, 123456789, 1LL << 60};
    static const int64_t cpus[] = {0, 1, 10, 250, 500, 1000, 1500, 2250, 16000, 1001};
    char buf[64];

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        int64_t back = -1;

        format_size_bytes(sizes[i], buf, sizeof(buf));
        cr_expect_eq(parse_size_bytes(buf, &back), 0, "'%s' unreadable", buf);
        cr_expect_eq(back, sizes[i], "'%s' read back as %lld", buf, (long long)back);
    }
    for (size_t i = 0; i < ARRAY_LEN(cpus); i++) {
        int64_t back = -1;

        format_cpu_millis(cpus[i], buf, sizeof(buf));
        cr_expect_eq(parse_cpu_millis(buf, &back), 0, "'%s' unreadable", buf);
        cr_expect_eq(back, cpus[i], "'%s' read back as %lld", buf, (long long)back);
    }
    format_size_bytes(512LL << 20, buf, sizeof(buf));
    cr_expect_str_eq(buf, "512Mi");
    format_size_bytes(1500, buf, sizeof(buf));
    cr_expect_str_eq(buf, "1500");
    format_cpu_millis(2000, buf, sizeof(buf));
    cr_expect_str_eq(buf, "2");
    format_cpu_millis(250, buf, sizeof(buf));
    cr_expect_str_eq(buf, "0.25");
    format_cpu_millis(1500, buf, sizeof(buf));
    cr_expect_str_eq(buf, "1.5");
}
