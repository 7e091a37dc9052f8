/*
 * tests/unit/core/test_tz.c - time zones (core/tz.c): TZif files of the
 * system's tz database against the C library's own reading of them, POSIX
 * TZ rules, local time to UTC around clock changes, names refused before
 * any file is opened, and damaged TZif data refused with a message.
 */
#include "core/tz.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/fs.h"
#include "util/xmalloc.h"

/* UTC seconds of a calendar time. */
static int64_t
utc(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};

    return (int64_t)timegm(&tm);
}

/* The C library's offset for instant t in zone `tzenv` (a TZ value). */
static int32_t
libc_offset(const char *tzenv, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;

    setenv("TZ", tzenv, 1);
    tzset();
    localtime_r(&tt, &tm);
    return (int32_t)tm.tm_gmtoff;
}

static struct tz *
load_ok(const char *name)
{
    struct eph_err err = {0};
    struct tz *tz = NULL;

    cr_assert_eq(tz_load(name, &tz, &err), 0, "%s: %s", name, err.msg);
    cr_assert_not_null(tz);
    return tz;
}

/* Compares offsets with the C library at instants spread over 1890-2150,
 * and a minute either side of every hour in the years around now. */
static void
expect_same_as_libc(const char *name)
{
    char tzenv[160];
    struct tz *tz = load_ok(name);
    uint64_t x = 88172645463325252ULL; /* xorshift: the same instants on every run */

    snprintf(tzenv, sizeof(tzenv), ":%s", name);
    for (int i = 0; i < 4000; i++) {
        int64_t t;

        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        t = utc(1890, 1, 1, 0, 0) +
            (int64_t)(x % (uint64_t)(utc(2150, 1, 1, 0, 0) - utc(1890, 1, 1, 0, 0)));
        /* Only failures are reported: Criterion sends every assertion to
         * its runner, and thousands of them slow it down and make it leak. */
        if (tz_offset_at(tz, t) != libc_offset(tzenv, t)) {
            cr_expect_fail("%s at %lld: %d, libc %d", name, (long long)t, tz_offset_at(tz, t),
                           libc_offset(tzenv, t));
            goto out;
        }
    }
    for (int64_t t = utc(2023, 1, 1, 0, 0); t < utc(2027, 1, 1, 0, 0); t += 3600) {
        for (int64_t d = -60; d <= 60; d += 60) {
            if (tz_offset_at(tz, t + d) != libc_offset(tzenv, t + d)) {
                cr_expect_fail("%s at %lld: %d, libc %d", name, (long long)(t + d),
                               tz_offset_at(tz, t + d), libc_offset(tzenv, t + d));
                goto out;
            }
        }
    }
out:
    tz_free(tz);
}

Test(tz, reads_europe_madrid_as_the_c_library_does)
{
    expect_same_as_libc("Europe/Madrid");
}

Test(tz, reads_zones_of_every_kind_as_the_c_library_does)
{
    /* North and south, negative DST (Dublin), half and quarter hours,
     * abolished DST, rules beyond 2037 from the footer. */
    static const char *zones[] = {
        "America/New_York", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kolkata",
        "Pacific/Chatham",  "Europe/Dublin",    "America/Santiago",  "Asia/Kathmandu",
        "Europe/London",    "Pacific/Auckland", "America/Godthab",   "Etc/GMT+5",
    };

    for (size_t i = 0; i < ARRAY_LEN(zones); i++)
        expect_same_as_libc(zones[i]);
}

Test(tz, knows_the_clock_changes_of_2024_to_the_second)
{
    struct tz *mad = load_ok("Europe/Madrid"), *ny = load_ok("America/New_York");

    cr_expect_eq(tz_offset_at(mad, utc(2024, 3, 31, 1, 0) - 1), 3600);
    cr_expect_eq(tz_offset_at(mad, utc(2024, 3, 31, 1, 0)), 7200);
    cr_expect_eq(tz_offset_at(mad, utc(2024, 10, 27, 1, 0) - 1), 7200);
    cr_expect_eq(tz_offset_at(mad, utc(2024, 10, 27, 1, 0)), 3600);
    cr_expect_eq(tz_offset_at(ny, utc(2024, 3, 10, 7, 0) - 1), -5 * 3600);
    cr_expect_eq(tz_offset_at(ny, utc(2024, 3, 10, 7, 0)), -4 * 3600);
    cr_expect_eq(tz_offset_at(ny, utc(2024, 11, 3, 6, 0) - 1), -4 * 3600);
    cr_expect_eq(tz_offset_at(ny, utc(2024, 11, 3, 6, 0)), -5 * 3600);
    /* Beyond the file's last transition (2037): the footer's rule. */
    cr_expect_eq(tz_offset_at(mad, utc(2100, 3, 28, 1, 0) - 1), 3600);
    cr_expect_eq(tz_offset_at(mad, utc(2100, 3, 28, 1, 0)), 7200);
    cr_expect_eq(tz_offset_at(ny, utc(2100, 11, 7, 6, 0)), -5 * 3600);
    tz_free(mad);
    tz_free(ny);
}

Test(tz, gives_utc_without_a_file_for_utc_empty_and_null)
{
    static const char *names[] = {"UTC", "", NULL};

    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        struct tz *tz = load_ok(names[i]);

        cr_expect_str_eq(tz_name(tz), "UTC");
        cr_expect(tz_is_utc(tz));
        cr_expect_eq(tz_offset_at(tz, utc(2024, 7, 1, 12, 0)), 0);
        cr_expect_eq(tz_local_to_utc(tz, 12345), 12345);
        tz_free(tz);
    }
    cr_expect_eq(tz_offset_at(NULL, 0), 0, "NULL is UTC");
    cr_expect_str_eq(tz_name(NULL), "UTC");
}

Test(tz, refuses_names_that_could_leave_the_zone_directory)
{
    static const struct {
        const char *name, *want;
    } bad[] = {
        {"../etc/passwd", "invalid time zone name '../etc/passwd', expected an IANA name such "
                          "as Europe/Madrid"},
        {"/etc/localtime", "invalid time zone name '/etc/localtime', expected an IANA name such "
                           "as Europe/Madrid"},
        {"Europe/../../x", "invalid time zone name 'Europe/../../x', expected an IANA name such "
                           "as Europe/Madrid"},
        {"Europe//Madrid", "invalid time zone name 'Europe//Madrid', expected an IANA name such "
                           "as Europe/Madrid"},
        {"Europe/", "invalid time zone name 'Europe/', expected an IANA name such as "
                    "Europe/Madrid"},
        {"Europe/Ma drid", "invalid time zone name 'Europe/Ma drid', expected an IANA name such "
                           "as Europe/Madrid"},
        {"Europe/Madird", "unknown time zone 'Europe/Madird' (not in /usr/share/zoneinfo)"},
        {"Europe", "unknown time zone 'Europe' (not in /usr/share/zoneinfo)"},
        {"Europe/Madrid/x", "unknown time zone 'Europe/Madrid/x' (not in /usr/share/zoneinfo)"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct eph_err err = {0};
        struct tz *tz = NULL;

        cr_expect_eq(tz_load(bad[i].name, &tz, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_null(tz, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
    cr_expect(tz_name_valid("America/Argentina/Buenos_Aires"));
    cr_expect(tz_name_valid("Etc/GMT-14"));
    cr_expect(tz_name_valid("Etc/GMT+5"));
    cr_expect(!tz_name_valid(NULL));
    cr_expect(!tz_name_valid("a.b"));
}

Test(tz, refuses_a_file_that_is_not_tzif_with_a_message)
{
    struct eph_err err = {0};
    struct tz *tz = NULL;

    /* A text file in the zone directory. */
    cr_expect_eq(tz_load("leapseconds", &tz, &err), EPH_EPARSE);
    cr_expect_str_eq(err.msg, "time zone 'leapseconds': not a TZif file (no 'TZif' at the start)");
    cr_expect_null(tz);
}

/* ------------------------------------------------------------ POSIX rules */

static struct tz *
posix_ok(const char *rule)
{
    struct eph_err err = {0};
    struct tz *tz = NULL;

    cr_assert_eq(tz_parse_posix(rule, &tz, &err), 0, "%s: %s", rule, err.msg);
    return tz;
}

Test(tz, follows_posix_rules_as_the_c_library_does)
{
    static const char *rules[] = {
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "EST5EDT,M3.2.0,M11.1.0",
        "AEST-10AEDT,M10.1.0,M4.1.0/3",
        "<-03>3",
        "<+0545>-5:45",
        "IST-1GMT0,M10.5.0,M3.5.0/1",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "<-04>4<-03>,M9.1.6/24,M4.1.6/24",
        "XXX3YYY,J60/1,J300",
        "XXX-2YYY-3,59/0:30,300/23:59:59",
        "GMT0BST,M3.5.0/1,M10.5.0",
    };

    for (size_t i = 0; i < ARRAY_LEN(rules); i++) {
        struct tz *tz = posix_ok(rules[i]);
        uint64_t x = 2463534242ULL;

        for (int k = 0; k < 3000; k++) {
            int64_t t;

            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t = utc(1971, 1, 1, 0, 0) +
                (int64_t)(x % (uint64_t)(utc(2100, 1, 1, 0, 0) - utc(1971, 1, 1, 0, 0)));
            if (tz_offset_at(tz, t) != libc_offset(rules[i], t)) {
                cr_expect_fail("%s at %lld: %d, libc %d", rules[i], (long long)t,
                               tz_offset_at(tz, t), libc_offset(rules[i], t));
                break;
            }
        }
        tz_free(tz);
    }
}

Test(tz, reads_the_rfc_8536_extensions_of_posix_rules)
{
    /* Permanent daylight time: all year at -4, even across New Year. */
    struct tz *tz = posix_ok("EST5EDT,0/0,J365/25");

    cr_expect_eq(tz_offset_at(tz, utc(2030, 1, 1, 5, 0)), -4 * 3600);
    cr_expect_eq(tz_offset_at(tz, utc(2030, 6, 1, 0, 0)), -4 * 3600);
    cr_expect_eq(tz_offset_at(tz, utc(2030, 12, 31, 23, 59)), -4 * 3600);
    tz_free(tz);
    /* Greenland: changes at -1:00 local on the last Sunday of March (Saturday 23:00). */
    tz = posix_ok("<-02>2<-01>,M3.5.0/-1,M10.5.0/0");
    cr_expect_eq(tz_offset_at(tz, utc(2025, 3, 30, 1, 0) - 1), -2 * 3600);
    cr_expect_eq(tz_offset_at(tz, utc(2025, 3, 30, 1, 0)), -1 * 3600);
    tz_free(tz);
    /* Hours up to 167. */
    tz = posix_ok("AAA0BBB,M3.1.0/167,M10.1.0/-167");
    tz_free(tz);
}

Test(tz, refuses_bad_posix_rules_with_what_was_expected)
{
    static const struct {
        const char *rule, *want;
    } bad[] = {
        {"", "invalid TZ rule '': expected a zone abbreviation of at least 3 letters at ''"},
        {"CE-1", "invalid TZ rule 'CE-1': expected a zone abbreviation of at least 3 letters at "
                 "'CE-1'"},
        {"CET", "invalid TZ rule 'CET': expected an offset such as 5, -1 or 3:30 at ''"},
        {"CET-25", "invalid TZ rule 'CET-25': expected an offset such as 5, -1 or 3:30 at '-25'"},
        {"CET-1CEST", "invalid TZ rule 'CET-1CEST': expected the rules of daylight saving time "
                      "(,start,end) at ''"},
        {"CET-1CEST,M3.5.0", "invalid TZ rule 'CET-1CEST,M3.5.0': expected ',' at ''"},
        {"CET-1CEST,M13.5.0,M10.5.0", "invalid TZ rule 'CET-1CEST,M13.5.0,M10.5.0': expected a "
                                      "date such as M3.5.0, J60 or 59 at 'M13.5.0,M10.5.0'"},
        {"CET-1CEST,M3.6.0,M10.5.0", "invalid TZ rule 'CET-1CEST,M3.6.0,M10.5.0': expected a "
                                     "date such as M3.5.0, J60 or 59 at 'M3.6.0,M10.5.0'"},
        {"CET-1CEST,J0,J365", "invalid TZ rule 'CET-1CEST,J0,J365': expected a date such as "
                              "M3.5.0, J60 or 59 at 'J0,J365'"},
        {"CET-1CEST,366,J365", "invalid TZ rule 'CET-1CEST,366,J365': expected a date such as "
                               "M3.5.0, J60 or 59 at '366,J365'"},
        {"CET-1CEST,M3.5.0/168,M10.5.0", "invalid TZ rule 'CET-1CEST,M3.5.0/168,M10.5.0': "
                                         "expected a time of day such as 2, 02:00 or 25 at "
                                         "'168,M10.5.0'"},
        {"CET-1CEST,M3.5.0,M10.5.0x", "invalid TZ rule 'CET-1CEST,M3.5.0,M10.5.0x': expected "
                                      "the end of the rule at 'x'"},
        {"<AB>3", "invalid TZ rule '<AB>3': expected a zone abbreviation such as <-03> at "
                  "'<AB>3'"},
        {"<-03", "invalid TZ rule '<-03': expected a zone abbreviation such as <-03> at '<-03'"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct eph_err err = {0};
        struct tz *tz = NULL;

        cr_expect_eq(tz_parse_posix(bad[i].rule, &tz, &err), EPH_EPARSE, "case %zu", i);
        cr_expect_null(tz, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
}

/* ------------------------------------------------- local time to UTC */

Test(tz, turns_local_times_into_instants_around_clock_changes)
{
    struct tz *mad = load_ok("Europe/Madrid"), *ny = load_ok("America/New_York");
    /* local seconds: the wall clock read as if it were UTC */
    int64_t l;

    l = utc(2024, 7, 1, 8, 0);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 7, 1, 6, 0), "summer: +2");
    l = utc(2024, 1, 15, 8, 0);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 1, 15, 7, 0), "winter: +1");
    /* 02:30 never happens on 2024-03-31 in Madrid: the instant of the jump. */
    l = utc(2024, 3, 31, 2, 30);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 3, 31, 1, 0));
    l = utc(2024, 3, 31, 2, 0);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 3, 31, 1, 0));
    l = utc(2024, 3, 31, 3, 0);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 3, 31, 1, 0));
    l = utc(2024, 3, 31, 1, 59);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 3, 31, 0, 59));
    /* 02:30 happens twice on 2024-10-27: the first time. */
    l = utc(2024, 10, 27, 2, 30);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 10, 27, 0, 30));
    l = utc(2024, 10, 27, 3, 0);
    cr_expect_eq(tz_local_to_utc(mad, l), utc(2024, 10, 27, 2, 0));
    /* New York: 02:30 skipped on 2024-03-10, 01:30 twice on 2024-11-03. */
    l = utc(2024, 3, 10, 2, 30);
    cr_expect_eq(tz_local_to_utc(ny, l), utc(2024, 3, 10, 7, 0));
    l = utc(2024, 11, 3, 1, 30);
    cr_expect_eq(tz_local_to_utc(ny, l), utc(2024, 11, 3, 5, 30));
    l = utc(2024, 11, 3, 2, 0);
    cr_expect_eq(tz_local_to_utc(ny, l), utc(2024, 11, 3, 7, 0));
    tz_free(mad);
    tz_free(ny);
}

Test(tz, local_to_utc_never_goes_backwards)
{
    static const char *zones[] = {"Europe/Madrid", "America/New_York", "Australia/Lord_Howe",
                                  "Europe/Dublin"};

    for (size_t z = 0; z < ARRAY_LEN(zones); z++) {
        struct tz *tz = load_ok(zones[z]);
        int64_t prev = INT64_MIN;

        for (int64_t l = utc(2024, 1, 1, 0, 0); l < utc(2025, 1, 1, 0, 0); l += 600) {
            int64_t u = tz_local_to_utc(tz, l);

            if (u < prev) {
                cr_expect_fail("%s: local %lld -> %lld, before %lld", zones[z], (long long)l,
                               (long long)u, (long long)prev);
                break;
            }
            prev = u;
        }
        tz_free(tz);
    }
}

/* ------------------------------------------------------------ TZif data */

static char *
read_zone(const char *name, size_t *len)
{
    char path[256], *data = NULL;

    snprintf(path, sizeof(path), "%s/%s", TZ_DIR, name);
    cr_assert_eq(fs_read_all(path, TZ_MAX_FILE_BYTES, &data, len), 0, "%s", path);
    return data;
}

static uint32_t
get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Bytes of the version 1 block after the header at p. */
static size_t
v1_block(const unsigned char *p)
{
    uint32_t isut = get32(p + 20), isstd = get32(p + 24), leap = get32(p + 28),
             timecnt = get32(p + 32), typecnt = get32(p + 36), charcnt = get32(p + 40);

    return (size_t)timecnt * 5 + typecnt * 6 + charcnt + leap * 8 + isstd + isut;
}

Test(tz, reads_a_version_1_file)
{
    size_t len = 0;
    char *data = read_zone("Europe/Madrid", &len);
    unsigned char *v1;
    size_t n = 44 + v1_block((unsigned char *)data);
    struct eph_err err = {0};
    struct tz *tz = NULL, *full = load_ok("Europe/Madrid");

    /* The version 1 part alone, marked as version 1. */
    v1 = xmalloc(n);
    memcpy(v1, data, n);
    v1[4] = 0;
    cr_assert_eq(tz_parse_tzif(v1, n, "v1", &tz, &err), 0, "%s", err.msg);
    cr_expect_eq(tz_offset_at(tz, utc(2024, 3, 31, 1, 0)), 7200);
    cr_expect_eq(tz_offset_at(tz, utc(1950, 1, 1, 0, 0)),
                 tz_offset_at(full, utc(1950, 1, 1, 0, 0)));
    cr_expect_eq(tz_offset_at(tz, utc(2030, 8, 1, 0, 0)), 7200);
    tz_free(tz);
    tz_free(full);
    free(v1);
    free(data);
}

/* Madrid's bytes with one change, expected to be refused with `want`. */
struct damage {
    const char *what;
    size_t at;         /* offset into the file; SIZE_MAX: none */
    int value;         /* the byte written there */
    size_t cut;        /* keep only this many bytes; 0: all */
    const char *extra; /* appended, NULL: nothing */
    const char *want;
};

Test(tz, refuses_damaged_tzif_data_with_a_message)
{
    size_t len = 0;
    char *data = read_zone("Europe/Madrid", &len);
    size_t v2 = 44 + v1_block((unsigned char *)data); /* the second header */
    size_t v2_times = v2 + 44;
    uint32_t timecnt2 = get32((unsigned char *)data + v2 + 32);
    size_t v2_idx = v2_times + (size_t)timecnt2 * 8;
    const struct damage cases[] = {
        {"empty", SIZE_MAX, 0, 1, NULL, "time zone 'x': not a TZif file (no header)"},
        {"magic", 0, 'X', 0, NULL, "time zone 'x': not a TZif file (no 'TZif' at the start)"},
        {"version", 4, '1', 0, NULL, "time zone 'x': unsupported TZif version byte 0x31"},
        {"cut in v1", SIZE_MAX, 0, 100, NULL,
         "time zone 'x': truncated data (100 bytes, the header announces more)"},
        {"cut in v2", SIZE_MAX, 0, v2_times + 10, NULL, NULL /* checked below */},
        {"second magic", v2, 'X', 0, NULL,
         "time zone 'x': not a TZif file (no 'TZif' in the second header)"},
        {"type index", v2_idx + 3, 200, 0, NULL, "time zone 'x': transition 3 uses type 200 of 11"},
        {"order", v2_times + 8 * 5, 0x7f, 0, NULL,
         "time zone 'x': transition times are not in ascending order"},
        {"trailing", SIZE_MAX, 0, 0, "junk",
         "time zone 'x': 4 unexpected bytes after the TZ rule footer"},
        {"no footer end", SIZE_MAX, 0, len - 1, NULL, "time zone 'x': unterminated TZ rule footer"},
        {"bad footer", len - 4, 'X', 0, NULL,
         "time zone 'x': invalid TZ rule 'CET-1CEST,M3.5.0,M10.5.X/3': expected a date such as "
         "M3.5.0, J60 or 59 at 'M10.5.X/3'"},
        {"typecnt 0", v2 + 39, 0, 0, NULL, NULL},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const struct damage *d = &cases[i];
        size_t n = d->cut ? d->cut : len;
        size_t extra = d->extra ? strlen(d->extra) : 0;
        char *copy = xmalloc(n + extra + 1);
        struct eph_err err = {0};
        struct tz *tz = NULL;

        if (strcmp(d->what, "empty") == 0)
            n = 0;
        memcpy(copy, data, n);
        if (d->at != SIZE_MAX)
            copy[d->at] = (char)d->value;
        if (extra)
            memcpy(copy + n, d->extra, extra);
        cr_expect_eq(tz_parse_tzif(copy, n + extra, "x", &tz, &err), EPH_EPARSE, "%s", d->what);
        cr_expect_null(tz, "%s", d->what);
        if (d->want)
            cr_expect_str_eq(err.msg, d->want, "%s", d->what);
        else
            cr_expect(strncmp(err.msg, "time zone 'x': ", 15) == 0, "%s: %s", d->what, err.msg);
        free(copy);
    }
    free(data);
}

Test(tz, survives_random_damage_to_a_real_file)
{
    size_t len = 0;
    char *data = read_zone("America/New_York", &len);
    char *copy = xmalloc(len);
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    int parsed = 0;

    for (int round = 0; round < 3000; round++) {
        struct eph_err err = {0};
        struct tz *tz = NULL;
        size_t n = len;

        memcpy(copy, data, len);
        for (int k = 0; k < 1 + round % 4; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            copy[x % len] = (char)(x >> 32);
        }
        if (round % 5 == 0)
            n = (size_t)(x >> 40) % len;
        if (tz_parse_tzif(copy, n, "x", &tz, &err) == 0) {
            parsed++;
            for (int64_t t = -(1LL << 40); t < (1LL << 40); t += 1LL << 35) {
                int32_t off = tz_offset_at(tz, t);

                if (off < -89999 || off > 93599)
                    cr_assert_fail("offset %d at %lld", off, (long long)t);
                (void)tz_local_to_utc(tz, t);
            }
        } else if (err.msg[0] == '\0') {
            cr_assert_fail("refused without a message");
        }
        tz_free(tz);
    }
    cr_expect_gt(parsed, 0, "some changes (in offsets or times) leave valid data");
    free(copy);
    free(data);
}
