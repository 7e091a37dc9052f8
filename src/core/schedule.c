/*
 * core/schedule.c - awake windows ("Mon-Fri 08:00-20:00") in a time zone,
 * and where an instant falls among them.
 *
 * Evaluation works on the wall clock first: the windows of the days around
 * now are laid out in local seconds, merged where they touch, and only the
 * merged edges are turned into UTC instants (tz_local_to_utc), so a change
 * of clocks moves an edge but never splits or loses a window. Fifteen days
 * either side hold at least one change of state for any schedule that is
 * not awake all the time (a weekly schedule has a sleeping moment every
 * week: it can vanish into a skipped hour once, not in two weeks running).
 */
#include "core/schedule.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/tz.h"
#include "util/xmalloc.h"

#define DAYS_AROUND 15 /* days either side of now laid out by schedule_eval() */
#define WEEK_MIN (7 * 1440)
/* Evaluated instants are kept within +-10^15 ms (31,000 years). */
#define NOW_LIMIT_MS 1000000000000000LL

struct window {
    int first_day, last_day; /* 0 Monday .. 6 Sunday; last < first wraps over Sunday */
    int start_min, end_min;  /* minutes after local midnight, 0..1439 and 0..1440;
                                end <= start: the window ends the next day */
};

struct schedule {
    struct window windows[SCHEDULE_MAX_WINDOWS];
    size_t n;
    bool always;      /* the windows cover the whole week (or "always") */
    bool always_word; /* written as "always" */
    struct tz *tz;
};

static const char *const day_names[7] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};

/* --------------------------------------------------------------- parse */

static bool
is_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* "Mon" (any case) -> 0..6, or -1. */
static int
day_index(const char *p, size_t len)
{
    if (len != 3)
        return -1;
    for (int i = 0; i < 7; i++) {
        if (strncasecmp(p, day_names[i], 3) == 0)
            return i;
    }
    return -1;
}

/* "8:00", "08:00", "24:00" -> minutes, or -1. */
static int
parse_hhmm(const char *p, size_t len)
{
    int h = 0, m;
    size_t i = 0;

    while (i < len && i < 2 && p[i] >= '0' && p[i] <= '9') {
        h = h * 10 + (p[i] - '0');
        i++;
    }
    if (i == 0 || len != i + 3 || p[i] != ':' || p[i + 1] < '0' || p[i + 1] > '5' ||
        p[i + 2] < '0' || p[i + 2] > '9')
        return -1;
    m = (p[i + 1] - '0') * 10 + (p[i + 2] - '0');
    if (h > 24 || (h == 24 && m != 0))
        return -1;
    return h * 60 + m;
}

/* Quotes untrusted text for a message: at most 60 bytes, control bytes as '?'. */
static const char *
show(const char *p, size_t len, char *buf, size_t size)
{
    size_t n = len < size - 4 ? len : size - 4;

    if (n > 60)
        n = 60;
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)p[i] < 0x20 || p[i] == 0x7F ? '?' : p[i];
    if (n < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* One window, p[0..len) trimmed and non-empty. */
static int
parse_window(const char *p, size_t len, struct window *w, struct eph_err *err)
{
    char whole[72], part[72];
    size_t days_len = 0, t = 0, dash;
    const char *times;
    int a, b;

    show(p, len, whole, sizeof(whole));
    while (days_len < len && !is_space(p[days_len]))
        days_len++;
    t = days_len;
    while (t < len && is_space(p[t]))
        t++;
    if (t == days_len || t == len)
        return eph_err_set(err, EPH_EINVAL,
                           "invalid window '%s', expected days and hours such as "
                           "'Mon-Fri 08:00-20:00'",
                           whole);
    /* Days: "Mon" or "Mon-Fri". */
    dash = 0;
    while (dash < days_len && p[dash] != '-')
        dash++;
    a = day_index(p, dash);
    b = dash < days_len ? day_index(p + dash + 1, days_len - dash - 1) : a;
    if (a < 0 || b < 0) {
        const char *bad = a < 0 ? p : p + dash + 1;
        size_t bad_len = a < 0 ? dash : days_len - dash - 1;

        return eph_err_set(err, EPH_EINVAL,
                           "unknown day '%s' in window '%s', expected Mon, Tue, Wed, Thu, Fri, "
                           "Sat or Sun",
                           show(bad, bad_len, part, sizeof(part)), whole);
    }
    w->first_day = a;
    w->last_day = b;
    /* Hours: "08:00-20:00". */
    times = p + t;
    len -= t;
    dash = 0;
    while (dash < len && times[dash] != '-')
        dash++;
    if (dash == len)
        return eph_err_set(err, EPH_EINVAL,
                           "invalid hours '%s' in window '%s', expected e.g. 08:00-20:00",
                           show(times, len, part, sizeof(part)), whole);
    w->start_min = parse_hhmm(times, dash);
    w->end_min = parse_hhmm(times + dash + 1, len - dash - 1);
    if (w->start_min < 0 || w->end_min < 0) {
        const char *bad = w->start_min < 0 ? times : times + dash + 1;
        size_t bad_len = w->start_min < 0 ? dash : len - dash - 1;

        return eph_err_set(err, EPH_EINVAL,
                           "invalid time '%s' in window '%s', expected HH:MM from 00:00 to 24:00",
                           show(bad, bad_len, part, sizeof(part)), whole);
    }
    if (w->start_min == 1440)
        return eph_err_set(err, EPH_EINVAL, "window '%s' cannot start at 24:00, write 00:00",
                           whole);
    return 0;
}

/* Does the week, minute by minute, lie inside some window? */
static bool
covers_week(const struct schedule *s)
{
    _Static_assert(WEEK_MIN % 8 == 0, "a whole number of bytes");
    unsigned char seen[WEEK_MIN / 8] = {0};

    for (size_t i = 0; i < s->n; i++) {
        const struct window *w = &s->windows[i];
        int len = w->end_min > w->start_min ? w->end_min - w->start_min
                                            : w->end_min + 1440 - w->start_min;

        for (int d = w->first_day;; d = (d + 1) % 7) {
            for (int m = 0; m < len; m++) {
                int at = (d * 1440 + w->start_min + m) % WEEK_MIN;

                seen[at / 8] |= (unsigned char)(1u << (at % 8));
            }
            if (d == w->last_day)
                break;
        }
    }
    for (size_t i = 0; i < sizeof(seen); i++) {
        if (seen[i] != 0xFF)
            return false;
    }
    return true;
}

int
schedule_new(const char *awake, struct tz *tz, struct schedule **out, struct eph_err *err)
{
    struct schedule *s;
    const char *p, *end;
    size_t len;
    int rc = 0;

    *out = NULL;
    len = awake ? strlen(awake) : 0;
    if (len > SCHEDULE_MAX_TEXT) {
        tz_free(tz);
        return eph_err_set(err, EPH_EINVAL, "awake schedule is longer than %d characters",
                           SCHEDULE_MAX_TEXT);
    }
    p = awake ? awake : "";
    end = p + len;
    while (p < end && is_space(*p))
        p++;
    while (end > p && is_space(end[-1]))
        end--;
    if (p == end) {
        tz_free(tz);
        return eph_err_set(err, EPH_EINVAL,
                           "empty awake schedule, expected e.g. 'Mon-Fri 08:00-20:00'");
    }
    s = xcalloc(1, sizeof(*s));
    s->tz = tz;
    if ((size_t)(end - p) == 6 && strncasecmp(p, "always", 6) == 0) {
        s->always = s->always_word = true;
        *out = s;
        return 0;
    }
    while (rc == 0) {
        const char *comma = memchr(p, ',', (size_t)(end - p)), *q;
        const char *stop = comma ? comma : end;

        q = stop;
        while (p < q && is_space(*p))
            p++;
        while (q > p && is_space(q[-1]))
            q--;
        if (p == q)
            rc = eph_err_set(err, EPH_EINVAL,
                             "empty window in the awake schedule, expected windows such as "
                             "'Mon-Fri 08:00-20:00' joined by ', '");
        else if (s->n == SCHEDULE_MAX_WINDOWS)
            rc = eph_err_set(err, EPH_EINVAL, "too many awake windows, at most %d",
                             SCHEDULE_MAX_WINDOWS);
        else
            rc = parse_window(p, (size_t)(q - p), &s->windows[s->n++], err);
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (rc < 0) {
        schedule_free(s);
        return rc;
    }
    s->always = covers_week(s);
    *out = s;
    return 0;
}

int
schedule_parse(const char *awake, const char *timezone, struct schedule **out, struct eph_err *err)
{
    struct tz *tz = NULL;
    int rc;

    *out = NULL;
    rc = tz_load(timezone, &tz, err);
    if (rc < 0)
        return rc;
    return schedule_new(awake, tz, out, err);
}

void
schedule_free(struct schedule *s)
{
    if (s == NULL)
        return;
    tz_free(s->tz);
    free(s);
}

/* ---------------------------------------------------------------- eval */

struct span {
    int64_t start, end; /* seconds: local, then UTC */
};

static int64_t
floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static int
cmp_span(const void *a, const void *b)
{
    const struct span *x = a, *y = b;

    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* Sorts and merges spans that overlap or touch, dropping empty ones; returns the count. */
static size_t
merge(struct span *v, size_t n)
{
    size_t out = 0;

    qsort(v, n, sizeof(*v), cmp_span);
    for (size_t i = 0; i < n; i++) {
        if (v[i].end <= v[i].start)
            continue;
        if (out > 0 && v[i].start <= v[out - 1].end) {
            if (v[i].end > v[out - 1].end)
                v[out - 1].end = v[i].end;
        } else {
            v[out++] = v[i];
        }
    }
    return out;
}

static bool
window_on(const struct window *w, int wday)
{
    if (w->first_day <= w->last_day)
        return wday >= w->first_day && wday <= w->last_day;
    return wday >= w->first_day || wday <= w->last_day;
}

void
schedule_eval(const struct schedule *s, int64_t now_ms, struct schedule_state *out)
{
    const size_t max = (2 * DAYS_AROUND + 1) * SCHEDULE_MAX_WINDOWS;
    struct span *v;
    int64_t now_s, day0, ms;
    size_t n = 0;

    out->awake = true;
    out->since_ms = 0;
    out->next_change_ms = INT64_MAX;
    if (s->always)
        return;
    ms = now_ms < -NOW_LIMIT_MS ? -NOW_LIMIT_MS : now_ms > NOW_LIMIT_MS ? NOW_LIMIT_MS : now_ms;
    now_s = floor_div(ms, 1000);
    day0 = floor_div(now_s + tz_offset_at(s->tz, now_s), 86400);
    v = xcalloc(max, sizeof(*v));
    for (int64_t d = day0 - DAYS_AROUND; d <= day0 + DAYS_AROUND; d++) {
        int wday = (int)(((d + 3) % 7 + 7) % 7); /* 1970-01-01 was a Thursday; 0 is Monday */

        for (size_t i = 0; i < s->n; i++) {
            const struct window *w = &s->windows[i];

            if (!window_on(w, wday))
                continue;
            v[n].start = d * 86400 + w->start_min * 60;
            v[n].end = d * 86400 + w->end_min * 60 + (w->end_min <= w->start_min ? 86400 : 0);
            n++;
        }
    }
    n = merge(v, n);
    for (size_t i = 0; i < n; i++) {
        v[i].start = tz_local_to_utc(s->tz, v[i].start);
        v[i].end = tz_local_to_utc(s->tz, v[i].end);
    }
    n = merge(v, n); /* an edge in a skipped hour may meet the next window */

    out->awake = false;
    for (size_t i = 0; i < n; i++) {
        if (v[i].start * 1000 <= ms && ms < v[i].end * 1000) {
            out->awake = true;
            out->since_ms = v[i].start * 1000;
            out->next_change_ms = v[i].end * 1000;
            break;
        }
        if (v[i].end * 1000 <= ms)
            out->since_ms = v[i].end * 1000;
        if (v[i].start * 1000 > ms) {
            out->next_change_ms = v[i].start * 1000;
            break;
        }
    }
    free(v);
}

/* ------------------------------------------------------------ describe */

void
schedule_describe(const struct schedule *s, char *out, size_t out_size)
{
    char text[SCHEDULE_MAX_WINDOWS * 24 + TZ_MAX_NAME + 16];
    size_t used = 0;

    if (out_size == 0)
        return;
    if (s->always_word) {
        used += (size_t)snprintf(text, sizeof(text), "always");
    } else {
        for (size_t i = 0; i < s->n; i++) {
            const struct window *w = &s->windows[i];
            char days[8];

            if (w->first_day == w->last_day)
                snprintf(days, sizeof(days), "%s", day_names[w->first_day]);
            else
                snprintf(days, sizeof(days), "%s-%s", day_names[w->first_day],
                         day_names[w->last_day]);
            used += (size_t)snprintf(text + used, sizeof(text) - used, "%s%s %02d:%02d-%02d:%02d",
                                     i ? ", " : "", days, w->start_min / 60, w->start_min % 60,
                                     w->end_min / 60, w->end_min % 60);
        }
    }
    snprintf(text + used, sizeof(text) - used, " %s", tz_name(s->tz));
    if (strlen(text) < out_size) {
        memcpy(out, text, strlen(text) + 1);
    } else if (out_size > 3) {
        memcpy(out, text, out_size - 4);
        memcpy(out + out_size - 4, "...", 4);
    } else {
        out[0] = '\0';
    }
}
