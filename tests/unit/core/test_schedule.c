/*
 * tests/unit/core/test_schedule.c - office hours (core/schedule.c): the
 * awake notation and its refusals, the state at injected instants (end and
 * start of office hours, weekends, overnight and wrapping windows, the days
 * clocks change in Europe/Madrid and America/New_York), and since/next
 * change checked against the C library's local time at random instants.
 */
#include "core/schedule.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/tz.h"
#include "util/xmalloc.h"

/* Wall-clock ms of a UTC calendar time. */
static int64_t
utc_ms(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {
        .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};

    return (int64_t)timegm(&tm) * 1000;
}

static struct schedule *
parse_ok(const char *awake, const char *zone)
{
    struct eph_err err = {0};
    struct schedule *s = NULL;

    cr_assert_eq(schedule_parse(awake, zone, &s, &err), 0, "'%s' %s: %s", awake,
                 zone ? zone : "UTC", err.msg);
    cr_assert_not_null(s);
    return s;
}

struct want {
    const char *what;
    int64_t now, since, next; /* ms */
    bool awake;
};

static void
expect_states(const struct schedule *s, const struct want *w, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct schedule_state st;

        schedule_eval(s, w[i].now, &st);
        cr_expect_eq(st.awake, w[i].awake, "%s: awake %d", w[i].what, st.awake);
        cr_expect_eq(st.since_ms, w[i].since, "%s: since %lld, want %lld", w[i].what,
                     (long long)st.since_ms, (long long)w[i].since);
        cr_expect_eq(st.next_change_ms, w[i].next, "%s: next %lld, want %lld", w[i].what,
                     (long long)st.next_change_ms, (long long)w[i].next);
    }
}

/* ------------------------------------------------------------- parsing */

Test(schedule, describes_what_it_parsed_in_canonical_form)
{
    static const struct {
        const char *awake, *zone, *want;
    } cases[] = {
        {"Mon-Fri 08:00-20:00", "Europe/Madrid", "Mon-Fri 08:00-20:00 Europe/Madrid"},
        {"Mon-Fri 08:00-20:00", NULL, "Mon-Fri 08:00-20:00 UTC"},
        {"Mon-Fri 08:00-20:00", "", "Mon-Fri 08:00-20:00 UTC"},
        {"  mon-FRI   8:00-20:00 ,sat 10:00-14:00  ", "UTC",
         "Mon-Fri 08:00-20:00, Sat 10:00-14:00 UTC"},
        {"Fri-Mon 22:00-06:00", "America/New_York", "Fri-Mon 22:00-06:00 America/New_York"},
        {"Sun 00:00-24:00", NULL, "Sun 00:00-24:00 UTC"},
        {"always", "Europe/Madrid", "always Europe/Madrid"},
        {"Wed-Wed 09:00-10:00", NULL, "Wed 09:00-10:00 UTC"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct schedule *s = parse_ok(cases[i].awake, cases[i].zone);
        char out[160];

        schedule_describe(s, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].want, "case %zu", i);
        schedule_free(s);
    }
}

Test(schedule, cuts_a_long_description_with_dots)
{
    struct schedule *s = parse_ok("Mon 08:00-09:00, Tue 08:00-09:00, Wed 08:00-09:00", NULL);
    char out[20];

    schedule_describe(s, out, sizeof(out));
    cr_expect_str_eq(out, "Mon 08:00-09:00,...");
    schedule_free(s);
}

Test(schedule, refuses_bad_schedules_with_a_clear_message)
{
    static const struct {
        const char *awake, *zone, *want;
        int code;
    } bad[] = {
        {"", NULL, "empty awake schedule, expected e.g. 'Mon-Fri 08:00-20:00'", EPH_EINVAL},
        {"   ", NULL, "empty awake schedule, expected e.g. 'Mon-Fri 08:00-20:00'", EPH_EINVAL},
        {NULL, NULL, "empty awake schedule, expected e.g. 'Mon-Fri 08:00-20:00'", EPH_EINVAL},
        {"Mon-Fri", NULL,
         "invalid window 'Mon-Fri', expected days and hours such as 'Mon-Fri 08:00-20:00'",
         EPH_EINVAL},
        {"08:00-20:00", NULL,
         "invalid window '08:00-20:00', expected days and hours such as 'Mon-Fri 08:00-20:00'",
         EPH_EINVAL},
        {"Mon-Fry 08:00-20:00", NULL,
         "unknown day 'Fry' in window 'Mon-Fry 08:00-20:00', expected Mon, Tue, Wed, Thu, Fri, "
         "Sat or Sun",
         EPH_EINVAL},
        {"Monday 08:00-20:00", NULL,
         "unknown day 'Monday' in window 'Monday 08:00-20:00', expected Mon, Tue, Wed, Thu, Fri, "
         "Sat or Sun",
         EPH_EINVAL},
        {"Mon-Fri 08:00-25:00", NULL,
         "invalid time '25:00' in window 'Mon-Fri 08:00-25:00', expected HH:MM from 00:00 to "
         "24:00",
         EPH_EINVAL},
        {"Mon-Fri 8-20", NULL,
         "invalid time '8' in window 'Mon-Fri 8-20', expected HH:MM from 00:00 to 24:00",
         EPH_EINVAL},
        {"Mon-Fri 08:60-20:00", NULL,
         "invalid time '08:60' in window 'Mon-Fri 08:60-20:00', expected HH:MM from 00:00 to "
         "24:00",
         EPH_EINVAL},
        {"Mon-Fri 24:30-20:00", NULL,
         "invalid time '24:30' in window 'Mon-Fri 24:30-20:00', expected HH:MM from 00:00 to "
         "24:00",
         EPH_EINVAL},
        {"Mon-Fri 0800", NULL,
         "invalid hours '0800' in window 'Mon-Fri 0800', expected e.g. 08:00-20:00", EPH_EINVAL},
        {"Mon 24:00-08:00", NULL, "window 'Mon 24:00-08:00' cannot start at 24:00, write 00:00",
         EPH_EINVAL},
        {"Mon-Fri 08:00-20:00,", NULL,
         "empty window in the awake schedule, expected windows such as 'Mon-Fri 08:00-20:00' "
         "joined by ', '",
         EPH_EINVAL},
        {"Mon-Fri 08:00-20:00, , Sat 10:00-12:00", NULL,
         "empty window in the awake schedule, expected windows such as 'Mon-Fri 08:00-20:00' "
         "joined by ', '",
         EPH_EINVAL},
        {"Mon-Fri 08:00-20:00", "Europe/Madird",
         "unknown time zone 'Europe/Madird' (not in /usr/share/zoneinfo)", EPH_EINVAL},
        {"Mon-Fri 08:00-20:00", "../../etc/passwd",
         "invalid time zone name '../../etc/passwd', expected an IANA name such as Europe/Madrid",
         EPH_EINVAL},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct eph_err err = {0};
        struct schedule *s = NULL;

        cr_expect_eq(schedule_parse(bad[i].awake, bad[i].zone, &s, &err), bad[i].code, "case %zu",
                     i);
        cr_expect_null(s, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
}

Test(schedule, refuses_too_many_windows_and_too_long_a_text)
{
    char text[2048] = "";
    struct eph_err err = {0};
    struct schedule *s = NULL;

    for (int i = 0; i < SCHEDULE_MAX_WINDOWS + 1; i++)
        strcat(text, i ? ", Mon 08:00-09:00" : "Mon 08:00-09:00");
    cr_expect_eq(schedule_parse(text, NULL, &s, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "too many awake windows, at most 32");
    memset(text, ' ', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    cr_expect_eq(schedule_parse(text, NULL, &s, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "awake schedule is longer than 1024 characters");
    cr_expect_null(s);
}

/* ------------------------------------------------------------ in UTC */

/* 2024-06-03 is a Monday. */
Test(schedule, is_awake_in_office_hours_and_asleep_outside_them)
{
    struct schedule *s = parse_ok("Mon-Fri 08:00-20:00", NULL);
    const struct want w[] = {
        {"monday just before start", utc_ms(2024, 6, 3, 8, 0) - 1, utc_ms(2024, 5, 31, 20, 0),
         utc_ms(2024, 6, 3, 8, 0), false},
        {"monday start", utc_ms(2024, 6, 3, 8, 0), utc_ms(2024, 6, 3, 8, 0),
         utc_ms(2024, 6, 3, 20, 0), true},
        {"monday last ms", utc_ms(2024, 6, 3, 20, 0) - 1, utc_ms(2024, 6, 3, 8, 0),
         utc_ms(2024, 6, 3, 20, 0), true},
        {"monday end of office hours", utc_ms(2024, 6, 3, 20, 0), utc_ms(2024, 6, 3, 20, 0),
         utc_ms(2024, 6, 4, 8, 0), false},
        {"tuesday night", utc_ms(2024, 6, 4, 23, 30), utc_ms(2024, 6, 4, 20, 0),
         utc_ms(2024, 6, 5, 8, 0), false},
        {"friday end", utc_ms(2024, 6, 7, 20, 0), utc_ms(2024, 6, 7, 20, 0),
         utc_ms(2024, 6, 10, 8, 0), false},
        {"saturday", utc_ms(2024, 6, 8, 12, 0), utc_ms(2024, 6, 7, 20, 0),
         utc_ms(2024, 6, 10, 8, 0), false},
        {"sunday late", utc_ms(2024, 6, 9, 23, 59), utc_ms(2024, 6, 7, 20, 0),
         utc_ms(2024, 6, 10, 8, 0), false},
    };

    expect_states(s, w, ARRAY_LEN(w));
    schedule_free(s);
}

Test(schedule, handles_overnight_and_wrapping_windows)
{
    struct schedule *night = parse_ok("Sun 22:00-02:00", NULL);
    struct schedule *wrap = parse_ok("Fri-Mon 10:00-12:00", NULL);
    struct schedule *midnight = parse_ok("Mon-Fri 20:00-00:00", NULL);
    const struct want wn[] = {
        {"sunday night into monday", utc_ms(2024, 6, 3, 1, 0), utc_ms(2024, 6, 2, 22, 0),
         utc_ms(2024, 6, 3, 2, 0), true},
        {"monday 02:00", utc_ms(2024, 6, 3, 2, 0), utc_ms(2024, 6, 3, 2, 0),
         utc_ms(2024, 6, 9, 22, 0), false},
        {"wednesday", utc_ms(2024, 6, 5, 12, 0), utc_ms(2024, 6, 3, 2, 0),
         utc_ms(2024, 6, 9, 22, 0), false},
    };
    const struct want ww[] = {
        {"sunday 11:00", utc_ms(2024, 6, 9, 11, 0), utc_ms(2024, 6, 9, 10, 0),
         utc_ms(2024, 6, 9, 12, 0), true},
        {"monday 13:00", utc_ms(2024, 6, 10, 13, 0), utc_ms(2024, 6, 10, 12, 0),
         utc_ms(2024, 6, 14, 10, 0), false},
        {"tuesday", utc_ms(2024, 6, 4, 11, 0), utc_ms(2024, 6, 3, 12, 0), utc_ms(2024, 6, 7, 10, 0),
         false},
    };
    const struct want wm[] = {
        {"friday 23:00", utc_ms(2024, 6, 7, 23, 0), utc_ms(2024, 6, 7, 20, 0),
         utc_ms(2024, 6, 8, 0, 0), true},
        {"saturday 00:00", utc_ms(2024, 6, 8, 0, 0), utc_ms(2024, 6, 8, 0, 0),
         utc_ms(2024, 6, 10, 20, 0), false},
    };

    expect_states(night, wn, ARRAY_LEN(wn));
    expect_states(wrap, ww, ARRAY_LEN(ww));
    expect_states(midnight, wm, ARRAY_LEN(wm));
    schedule_free(night);
    schedule_free(wrap);
    schedule_free(midnight);
}

Test(schedule, merges_windows_that_touch_or_overlap)
{
    struct schedule *touch = parse_ok("Mon 08:00-12:00, Mon 12:00-18:00", NULL);
    struct schedule *overlap = parse_ok("Mon-Fri 08:00-20:00, Wed 18:00-23:00", NULL);
    struct schedule *nights = parse_ok("Mon-Sun 20:00-08:00", NULL);
    const struct want wt[] = {
        {"monday 10:00", utc_ms(2024, 6, 3, 10, 0), utc_ms(2024, 6, 3, 8, 0),
         utc_ms(2024, 6, 3, 18, 0), true},
    };
    const struct want wo[] = {
        {"wednesday 19:00", utc_ms(2024, 6, 5, 19, 0), utc_ms(2024, 6, 5, 8, 0),
         utc_ms(2024, 6, 5, 23, 0), true},
    };
    const struct want wn[] = {
        {"tuesday 07:00", utc_ms(2024, 6, 4, 7, 0), utc_ms(2024, 6, 3, 20, 0),
         utc_ms(2024, 6, 4, 8, 0), true},
        {"tuesday 12:00", utc_ms(2024, 6, 4, 12, 0), utc_ms(2024, 6, 4, 8, 0),
         utc_ms(2024, 6, 4, 20, 0), false},
    };

    expect_states(touch, wt, ARRAY_LEN(wt));
    expect_states(overlap, wo, ARRAY_LEN(wo));
    expect_states(nights, wn, ARRAY_LEN(wn));
    schedule_free(touch);
    schedule_free(overlap);
    schedule_free(nights);
}

Test(schedule, never_changes_when_awake_all_week)
{
    static const char *always[] = {"always", "Mon-Sun 00:00-24:00", "Mon-Sun 08:00-08:00",
                                   "Mon-Fri 00:00-00:00, Sat-Sun 00:00-24:00",
                                   "Mon-Sun 12:00-00:00, Mon-Sun 00:00-12:00"};
    static const char *zones[] = {"UTC", "Europe/Madrid", "America/New_York"};
    const int64_t at[] = {utc_ms(2024, 3, 31, 1, 30), utc_ms(2024, 11, 3, 6, 30),
                          utc_ms(2024, 6, 8, 12, 0)};

    for (size_t i = 0; i < ARRAY_LEN(always); i++) {
        for (size_t z = 0; z < ARRAY_LEN(zones); z++) {
            struct schedule *s = parse_ok(always[i], zones[z]);

            for (size_t k = 0; k < ARRAY_LEN(at); k++) {
                struct schedule_state st;

                schedule_eval(s, at[k], &st);
                cr_expect(st.awake, "%s %s", always[i], zones[z]);
                cr_expect_eq(st.since_ms, 0, "%s %s", always[i], zones[z]);
                cr_expect_eq(st.next_change_ms, INT64_MAX, "%s %s", always[i], zones[z]);
            }
            schedule_free(s);
        }
    }
}

/* ------------------------------------------------ days clocks change */

/* Madrid: +1 (CET) until 2024-03-31 01:00Z, +2 (CEST) until 2024-10-27 01:00Z. */
Test(schedule, follows_madrid_wall_clocks_across_daylight_saving_changes)
{
    struct schedule *s = parse_ok("Mon-Fri 08:00-20:00", "Europe/Madrid");
    const struct want w[] = {
        {"friday before spring change, 19:00 local", utc_ms(2024, 3, 29, 18, 0),
         utc_ms(2024, 3, 29, 7, 0), utc_ms(2024, 3, 29, 19, 0), true},
        {"weekend of the spring change", utc_ms(2024, 3, 30, 12, 0), utc_ms(2024, 3, 29, 19, 0),
         utc_ms(2024, 4, 1, 6, 0), false},
        {"sunday just after the change", utc_ms(2024, 3, 31, 1, 0), utc_ms(2024, 3, 29, 19, 0),
         utc_ms(2024, 4, 1, 6, 0), false},
        {"monday 08:00 summer time", utc_ms(2024, 4, 1, 6, 0), utc_ms(2024, 4, 1, 6, 0),
         utc_ms(2024, 4, 1, 18, 0), true},
        {"weekend of the autumn change", utc_ms(2024, 10, 26, 12, 0), utc_ms(2024, 10, 25, 18, 0),
         utc_ms(2024, 10, 28, 7, 0), false},
        {"monday 08:00 winter time", utc_ms(2024, 10, 28, 7, 0), utc_ms(2024, 10, 28, 7, 0),
         utc_ms(2024, 10, 28, 19, 0), true},
        {"monday 07:59 winter time", utc_ms(2024, 10, 28, 7, 0) - 1, utc_ms(2024, 10, 25, 18, 0),
         utc_ms(2024, 10, 28, 7, 0), false},
    };

    expect_states(s, w, ARRAY_LEN(w));
    schedule_free(s);
}

Test(schedule, shortens_and_lengthens_a_night_window_on_change_days_in_madrid)
{
    struct schedule *night = parse_ok("Sat 22:00-06:00", "Europe/Madrid");
    struct schedule *gap = parse_ok("Sun 02:30-04:00", "Europe/Madrid");
    const struct want wn[] = {
        /* 22:00 CET (21:00Z) to 06:00 CEST (04:00Z): seven hours */
        {"spring night", utc_ms(2024, 3, 30, 23, 0), utc_ms(2024, 3, 30, 21, 0),
         utc_ms(2024, 3, 31, 4, 0), true},
        /* 22:00 CEST (20:00Z) to 06:00 CET (05:00Z): nine hours */
        {"autumn night", utc_ms(2024, 10, 27, 4, 30), utc_ms(2024, 10, 26, 20, 0),
         utc_ms(2024, 10, 27, 5, 0), true},
    };
    const struct want wg[] = {
        /* 02:30 never shows: the window opens at the jump, 03:00 CEST. */
        {"window starting in the skipped hour", utc_ms(2024, 3, 31, 1, 30),
         utc_ms(2024, 3, 31, 1, 0), utc_ms(2024, 3, 31, 2, 0), true},
        {"just before the jump", utc_ms(2024, 3, 31, 1, 0) - 1, utc_ms(2024, 3, 24, 3, 0),
         utc_ms(2024, 3, 31, 1, 0), false},
        /* 02:30 shows twice: the window opens at the first. */
        {"window starting in the repeated hour", utc_ms(2024, 10, 27, 0, 30),
         utc_ms(2024, 10, 27, 0, 30), utc_ms(2024, 10, 27, 3, 0), true},
    };

    expect_states(night, wn, ARRAY_LEN(wn));
    expect_states(gap, wg, ARRAY_LEN(wg));
    schedule_free(night);
    schedule_free(gap);
}

/* New York: -5 (EST) until 2024-03-10 07:00Z, -4 (EDT) until 2024-11-03 06:00Z. */
Test(schedule, follows_new_york_wall_clocks_across_daylight_saving_changes)
{
    struct schedule *s = parse_ok("Mon-Fri 09:00-17:00", "America/New_York");
    struct schedule *sun = parse_ok("Sun 01:00-03:00", "America/New_York");
    const struct want w[] = {
        {"friday before spring change", utc_ms(2024, 3, 9, 12, 0), utc_ms(2024, 3, 8, 22, 0),
         utc_ms(2024, 3, 11, 13, 0), false},
        {"monday 09:00 EDT", utc_ms(2024, 3, 11, 13, 0), utc_ms(2024, 3, 11, 13, 0),
         utc_ms(2024, 3, 11, 21, 0), true},
        {"weekend of the autumn change", utc_ms(2024, 11, 3, 12, 0), utc_ms(2024, 11, 1, 21, 0),
         utc_ms(2024, 11, 4, 14, 0), false},
    };
    const struct want ws[] = {
        /* 01:00 EST (06:00Z) to 03:00 EDT (07:00Z): one hour */
        {"spring sunday", utc_ms(2024, 3, 10, 6, 30), utc_ms(2024, 3, 10, 6, 0),
         utc_ms(2024, 3, 10, 7, 0), true},
        /* 01:00 EDT (05:00Z) to 03:00 EST (08:00Z): three hours */
        {"autumn sunday", utc_ms(2024, 11, 3, 7, 30), utc_ms(2024, 11, 3, 5, 0),
         utc_ms(2024, 11, 3, 8, 0), true},
    };

    expect_states(s, w, ARRAY_LEN(w));
    expect_states(sun, ws, ARRAY_LEN(ws));
    schedule_free(s);
    schedule_free(sun);
}

/* ------------------------------------------ against the C library */

/* Awake by the wall clock at t, read with the C library: the oracle. */
struct oracle_window {
    int first, last, start, end; /* days 0 Monday; minutes */
};

static bool
on_day(const struct oracle_window *w, int day)
{
    return w->first <= w->last ? day >= w->first && day <= w->last
                               : day >= w->first || day <= w->last;
}

static bool
oracle_awake(const struct oracle_window *ws, size_t n, const char *zone, int64_t ms)
{
    char tzenv[64];
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    int day, min;

    snprintf(tzenv, sizeof(tzenv), ":%s", zone);
    setenv("TZ", tzenv, 1);
    tzset();
    localtime_r(&t, &tm);
    day = (tm.tm_wday + 6) % 7;
    min = tm.tm_hour * 60 + tm.tm_min;
    for (size_t i = 0; i < n; i++) {
        const struct oracle_window *w = &ws[i];

        if (w->end > w->start) {
            if (on_day(w, day) && min >= w->start && min < w->end)
                return true;
        } else if ((on_day(w, day) && min >= w->start) ||
                   (on_day(w, (day + 6) % 7) && min < w->end)) {
            return true;
        }
    }
    return false;
}

Test(schedule, agrees_with_the_c_library_and_since_and_next_are_real_changes)
{
    /* Edges away from 01:00-03:00, where clocks change in these zones. */
    static const struct {
        const char *awake;
        struct oracle_window w[3];
        size_t n;
    } cases[] = {
        {"Mon-Fri 08:00-20:00", {{0, 4, 480, 1200}}, 1},
        {"Fri-Mon 22:00-06:00", {{4, 0, 1320, 360}}, 1},
        {"Mon-Fri 08:00-12:00, Mon-Fri 13:00-18:00, Sat 10:00-14:00",
         {{0, 4, 480, 720}, {0, 4, 780, 1080}, {5, 5, 600, 840}},
         3},
        {"Sun 20:00-00:00", {{6, 6, 1200, 0}}, 1},
        {"Tue 00:00-24:00", {{1, 1, 0, 1440}}, 1},
    };
    static const char *zones[] = {"Europe/Madrid", "America/New_York", "Australia/Sydney",
                                  "Asia/Kolkata"};
    uint64_t x = 0x2545F4914F6CDD1DULL;
    const int64_t from = utc_ms(2023, 1, 1, 0, 0), to = utc_ms(2027, 1, 1, 0, 0);

    for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
        for (size_t z = 0; z < ARRAY_LEN(zones); z++) {
            struct schedule *s = parse_ok(cases[c].awake, zones[z]);

            for (int k = 0; k < 300; k++) {
                struct schedule_state st, at;
                int64_t now;
                bool want;

                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                now = from + (int64_t)(x % (uint64_t)(to - from));
                schedule_eval(s, now, &st);
                want = oracle_awake(cases[c].w, cases[c].n, zones[z], now);
                /* Only failures are reported (Criterion sends every assertion). */
                if (st.awake != want || !(st.since_ms <= now && now < st.next_change_ms)) {
                    cr_expect_fail("%s %s at %lld: awake %d (libc %d), since %lld, next %lld",
                                   cases[c].awake, zones[z], (long long)now, st.awake, want,
                                   (long long)st.since_ms, (long long)st.next_change_ms);
                    break;
                }
                /* The state holds from since to next change, and changes at both. */
                schedule_eval(s, st.since_ms, &at);
                if (at.awake != st.awake ||
                    oracle_awake(cases[c].w, cases[c].n, zones[z], st.since_ms - 1) == st.awake ||
                    oracle_awake(cases[c].w, cases[c].n, zones[z], st.next_change_ms - 1) !=
                        st.awake ||
                    oracle_awake(cases[c].w, cases[c].n, zones[z], st.next_change_ms) == st.awake) {
                    cr_expect_fail("%s %s at %lld: since %lld or next %lld is not a change",
                                   cases[c].awake, zones[z], (long long)now, (long long)st.since_ms,
                                   (long long)st.next_change_ms);
                    break;
                }
            }
            schedule_free(s);
        }
    }
}

Test(schedule, evaluates_a_schedule_with_a_zone_made_from_a_posix_rule)
{
    struct eph_err err = {0};
    struct tz *tz = NULL;
    struct schedule *s = NULL;
    struct schedule_state st;

    cr_assert_eq(tz_parse_posix("<-03>3", &tz, &err), 0, "%s", err.msg);
    cr_assert_eq(schedule_new("Mon-Fri 09:00-18:00", tz, &s, &err), 0, "%s", err.msg);
    schedule_eval(s, utc_ms(2024, 6, 3, 12, 0), &st); /* 09:00 at -3 */
    cr_expect(st.awake);
    cr_expect_eq(st.since_ms, utc_ms(2024, 6, 3, 12, 0));
    cr_expect_eq(st.next_change_ms, utc_ms(2024, 6, 3, 21, 0));
    schedule_free(s);
    /* schedule_new owns the zone even when it fails. */
    cr_assert_eq(tz_parse_posix("<-03>3", &tz, &err), 0, "%s", err.msg);
    cr_expect_eq(schedule_new("nope", tz, &s, &err), EPH_EINVAL);
    cr_expect_null(s);
}

Test(schedule, gives_an_answer_at_extreme_instants)
{
    struct schedule *s = parse_ok("Mon-Fri 08:00-20:00", "Europe/Madrid");
    const int64_t at[] = {INT64_MIN, INT64_MIN + 1, -1, 0, INT64_MAX - 1, INT64_MAX};

    for (size_t i = 0; i < ARRAY_LEN(at); i++) {
        struct schedule_state st;

        schedule_eval(s, at[i], &st);
        cr_expect(st.since_ms <= st.next_change_ms, "case %zu", i);
    }
    schedule_free(s);
}
