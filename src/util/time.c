/*
 * util/time.c - clocks, durations and timestamps.
 */
#include "util/time.h"

#include <ctype.h>
#include <stdio.h>
#include <time.h>

int64_t
time_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t
time_mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
duration_parse(const char *text, int64_t *out_s, struct eph_err *err)
{
    /* A hundred years in seconds: anything above is a typo, and it keeps the
     * arithmetic far from overflow. */
    const int64_t max_s = 100LL * 365 * 86400;
    const char *p = text;
    int64_t total = 0;
    int parts = 0;

    if (text == NULL || *text == '\0')
        return eph_err_set(err, EPH_EINVAL, "empty duration, expected e.g. 30m, 2h or 1h30m");
    while (*p) {
        int64_t n = 0;
        int digits = 0;
        int64_t unit;

        while (isdigit((unsigned char)*p)) {
            n = n * 10 + (*p - '0');
            digits++;
            p++;
            if (n > max_s)
                return eph_err_set(err, EPH_EINVAL, "duration '%s' is too long", text);
        }
        switch (*p) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        default: unit = 0; break;
        }
        if (digits == 0 || unit == 0)
            return eph_err_set(err, EPH_EINVAL,
                               "invalid duration '%s', expected e.g. 30m, 2h or 1h30m", text);
        p++;
        total += n * unit;
        if (total > max_s)
            return eph_err_set(err, EPH_EINVAL, "duration '%s' is too long", text);
        parts++;
    }
    *out_s = total;
    return 0;
}

void
duration_format(int64_t s, char *out, size_t out_size)
{
    if (s < 0)
        s = 0;
    if (s < 60)
        snprintf(out, out_size, "%llds", (long long)s);
    else if (s < 3600)
        snprintf(out, out_size, "%lldm", (long long)(s / 60));
    else if (s < 86400) {
        if ((s % 3600) / 60)
            snprintf(out, out_size, "%lldh%lldm", (long long)(s / 3600),
                     (long long)((s % 3600) / 60));
        else
            snprintf(out, out_size, "%lldh", (long long)(s / 3600));
    } else if ((s % 86400) / 3600)
        snprintf(out, out_size, "%lldd%lldh", (long long)(s / 86400),
                 (long long)((s % 86400) / 3600));
    else
        snprintf(out, out_size, "%lldd", (long long)(s / 86400));
}

void
time_format_rfc3339(int64_t wall_ms, char *out, size_t out_size)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, out_size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
