/*
 * fuzz/fuzz_schedule.c - libFuzzer target for office hours (core/schedule.c)
 * and time zones (core/tz.c).
 *
 * The first byte picks what the rest is:
 *   'a'  an awake text ("Mon-Fri 08:00-20:00, Sat 10:00-14:00"), parsed,
 *        then evaluated in UTC and in Europe/Madrid at instants around clock
 *        changes, checking that since and next change are real changes;
 *   't'  TZif data (a zone file), parsed, then offsets and local-to-UTC
 *        conversions at instants over +-35,000 years, and a schedule
 *        evaluated in the zone;
 *   'p'  a POSIX TZ rule ("CET-1CEST,M3.5.0,M10.5.0/3"), likewise;
 * any other byte picks one of the three by its value.
 *
 *   make fuzz && build/fuzz/fuzz_schedule fuzz/corpus/schedule -max_total_time=60
 */
#include "core/schedule.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tz.h"
#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A broken promise of the module, as a crash the fuzzer reports. */
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_schedule: %s:%d: %s\n", __FILE__, __LINE__, #cond);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Wall-clock ms: around Madrid's and New York's changes of 2024, a Monday,
 * the epoch, and the extremes. */
static const int64_t instants_ms[] = {
    1711846800000LL, /* 2024-03-31T01:00Z, Madrid springs forward */
    1711846799999LL,
    1730001600000LL, /* 2024-10-27T04:00Z */
    1710054000000LL, /* 2024-03-10T07:00Z, New York springs forward */
    1717416000000LL, /* 2024-06-03T12:00Z, a Monday */
    1717452000000LL, /* 2024-06-03T22:00Z */
    0,
    -1,
    INT64_MIN,
    INT64_MAX,
};

/* Checks what any schedule promises at now. */
static void
eval_checked(const struct schedule *s, int64_t now, bool strict)
{
    struct schedule_state st, at;

    schedule_eval(s, now, &st);
    CHECK(st.since_ms <= st.next_change_ms);
    if (now < 0 || now > 100000000000000LL) /* within 5,000 years of the epoch */
        return;
    CHECK(now < st.next_change_ms);
    CHECK(st.since_ms <= now || st.since_ms == 0);
    if (!strict || st.next_change_ms == INT64_MAX)
        return;
    /* In a real zone, the state holds until next change and flips there. */
    schedule_eval(s, st.next_change_ms - 1, &at);
    CHECK(at.awake == st.awake);
    schedule_eval(s, st.next_change_ms, &at);
    CHECK(at.awake != st.awake);
    if (st.since_ms > 0) {
        schedule_eval(s, st.since_ms, &at);
        CHECK(at.awake == st.awake);
    }
}

/* Queries tz; `own` (the same zone parsed again) goes to a schedule. */
static void
use_zone(const struct tz *tz, struct tz *own)
{
    struct eph_err err = {0};
    struct schedule *s = NULL;

    for (int64_t t = -(1LL << 40); t <= (1LL << 40); t += 1LL << 36) {
        int32_t off = tz_offset_at(tz, t);

        CHECK(off >= -89999 && off <= 93599);
        (void)tz_local_to_utc(tz, t);
    }
    for (size_t i = 0; i < sizeof(instants_ms) / sizeof(instants_ms[0]); i++) {
        int64_t s_at = instants_ms[i] / 1000;

        (void)tz_offset_at(tz, s_at);
        CHECK(tz_local_to_utc(tz, s_at) <= tz_local_to_utc(tz, s_at + 3600));
    }
    if (schedule_new("Mon-Fri 08:00-20:00, Sat 22:00-02:00", own, &s, &err) == 0) {
        for (size_t i = 0; i < sizeof(instants_ms) / sizeof(instants_ms[0]); i++)
            eval_checked(s, instants_ms[i], false);
    }
    schedule_free(s);
}

static struct tz *madrid; /* loaded once: files are not the input here */

static void
use_awake(const char *text)
{
    struct eph_err err = {0};
    struct schedule *s = NULL;
    char desc[160];

    if (madrid == NULL && tz_load("Europe/Madrid", &madrid, &err) != 0)
        madrid = NULL; /* no tz database: UTC only */
    if (schedule_new(text, NULL, &s, &err) == 0) {
        schedule_describe(s, desc, sizeof(desc));
        CHECK(strlen(desc) < sizeof(desc));
        for (size_t i = 0; i < sizeof(instants_ms) / sizeof(instants_ms[0]); i++)
            eval_checked(s, instants_ms[i], true);
        schedule_free(s);
        s = NULL;
    } else {
        CHECK(err.msg[0] != '\0');
    }
    if (madrid == NULL)
        return;
    /* The same in Madrid: a zone of its own per schedule (schedule_new takes it). */
    {
        struct tz *tz = NULL;

        CHECK(tz_load("Europe/Madrid", &tz, &err) == 0);
        if (schedule_new(text, tz, &s, &err) == 0) {
            for (size_t i = 0; i < sizeof(instants_ms) / sizeof(instants_ms[0]); i++)
                eval_checked(s, instants_ms[i], true);
        }
        schedule_free(s);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct eph_err err = {0};
    struct tz *tz = NULL;
    char *text;
    int mode;

    if (size == 0)
        return 0;
    mode = data[0] == 'a' ? 0 : data[0] == 't' ? 1 : data[0] == 'p' ? 2 : data[0] % 3;
    data++;
    size--;
    if (mode == 1) {
        struct tz *own = NULL;

        if (tz_parse_tzif(data, size, "fuzz", &tz, &err) == 0) {
            CHECK(tz_parse_tzif(data, size, "fuzz", &own, &err) == 0);
            use_zone(tz, own);
        } else {
            CHECK(err.msg[0] != '\0');
        }
        tz_free(tz);
        return 0;
    }
    if (size > 4096)
        return 0; /* both refuse long texts at once; nothing to learn there */
    text = xmalloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    if (mode == 0) {
        use_awake(text);
    } else if (tz_parse_posix(text, &tz, &err) == 0) {
        struct tz *own = NULL;

        CHECK(tz_parse_posix(text, &own, &err) == 0);
        use_zone(tz, own);
        tz_free(tz);
    } else {
        CHECK(err.msg[0] != '\0');
    }
    free(text);
    return 0;
}
