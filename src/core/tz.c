/*
 * core/tz.c - TZif files (RFC 8536) and POSIX TZ rules -> UTC offsets.
 *
 * A zone is a sorted list of transitions (instant -> offset from then on),
 * the offset before the first one, and optionally a POSIX rule for the
 * instants after the last one. Lookups are a binary search, or the rule's
 * two transitions of the year worked out on the fly.
 *
 * Dates use days since 1970-01-01 in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil), so no libc time function, no TZ
 * environment variable and no global state is involved.
 */
#include "core/tz.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/xmalloc.h"

/* RFC 8536: offsets should lie in [-89999, 93599] (about -25h to +26h). */
#define UTOFF_MIN (-89999)
#define UTOFF_MAX 93599
/* Instants beyond +-10^13 s (300,000 years) are evaluated as at the bound:
 * it keeps every sum below far from overflow, whatever a caller passes. */
#define TIME_LIMIT_S 10000000000000LL
#define TZIF_HEADER_BYTES 44

enum rule_date_kind {
    DATE_JULIAN_NO_LEAP, /* Jn: 1..365, February 29 never counted */
    DATE_ZERO_BASED,     /* n: 0..365, February 29 counted */
    DATE_MONTH_WEEK_DAY, /* Mm.w.d: day d (0 Sunday) of week w (5: last) of month m */
};

struct rule_date {
    enum rule_date_kind kind;
    int n;          /* for the first two kinds */
    int m, w, d;    /* for Mm.w.d */
    int32_t time_s; /* local time of day of the change, -167h..167h; default 02:00 */
};

struct rule {
    int32_t std_off; /* seconds east of UTC */
    int32_t dst_off;
    bool has_dst;
    struct rule_date start, end; /* to daylight saving time, and back */
};

struct tz {
    char *name;
    int64_t *times;   /* transition instants, strictly ascending */
    int32_t *offsets; /* offset from times[i] on */
    size_t n;
    int32_t first_off; /* before times[0], or always when n == 0 and no rule */
    bool has_rule;     /* rule applies after times[n - 1] (always when n == 0) */
    struct rule rule;
    bool utc; /* made by tz_load without a file */
};

/* ------------------------------------------------------------- calendar */

static int64_t
floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of y-m-d (m 1..12, d 1..31). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = floor_div(y, 400);
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* The year of day `z` (days since 1970-01-01). */
static int64_t
year_of_day(int64_t z)
{
    int64_t era, doe, yoe, y, doy, mp;

    z += 719468;
    era = floor_div(z, 146097);
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    return mp >= 10 ? y + 1 : y; /* months from March: January and February are next year's */
}

static bool
is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int
month_days(int64_t y, int m)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Day (since the epoch) on which rule date r falls in year y. */
static int64_t
rule_day(const struct rule_date *r, int64_t y)
{
    int64_t jan1 = days_from_civil(y, 1, 1), first, day;
    int wday;

    switch (r->kind) {
    case DATE_JULIAN_NO_LEAP: return jan1 + r->n - 1 + (is_leap(y) && r->n >= 60 ? 1 : 0);
    case DATE_ZERO_BASED: return jan1 + r->n;
    case DATE_MONTH_WEEK_DAY: break;
    }
    first = days_from_civil(y, r->m, 1);
    wday = (int)(((first + 4) % 7 + 7) % 7); /* 1970-01-01 was a Thursday; 0 is Sunday */
    day = first + (r->d - wday + 7) % 7 + 7 * (r->w - 1);
    while (day >= first + month_days(y, r->m))
        day -= 7; /* week 5 means the last such day */
    return day;
}

static int64_t
clamp_time(int64_t t)
{
    return t < -TIME_LIMIT_S ? -TIME_LIMIT_S : t > TIME_LIMIT_S ? TIME_LIMIT_S : t;
}

/* ---------------------------------------------------------- POSIX rules */

static int32_t
rule_offset_at(const struct rule *r, int64_t t)
{
    int64_t y, best_t = 0;
    bool found = false, best_dst = false;

    if (!r->has_dst)
        return r->std_off;
    t = clamp_time(t);
    y = year_of_day(floor_div(t + r->std_off, 86400));
    /* The latest change at or before t among those of three years (a rule's
     * change may fall outside its own year by up to a week: hours to 167).
     * On a tie the change to daylight time wins: "J1/0,J365/25", permanent
     * daylight time, ends a year exactly when it starts the next. */
    for (int64_t yy = y - 1; yy <= y + 1; yy++) {
        int64_t start = rule_day(&r->start, yy) * 86400 + r->start.time_s - r->std_off;
        int64_t end = rule_day(&r->end, yy) * 86400 + r->end.time_s - r->dst_off;

        if (end <= t && (!found || end > best_t)) {
            best_t = end;
            best_dst = false;
            found = true;
        }
        if (start <= t && (!found || start >= best_t)) {
            best_t = start;
            best_dst = true;
            found = true;
        }
    }
    return found && best_dst ? r->dst_off : r->std_off;
}

struct pparse {
    const char *p;
    const char *what; /* set on failure: what was expected */
};

static bool
is_alpha(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z');
}

static bool
is_digit(char ch)
{
    return ch >= '0' && ch <= '9';
}

/* A zone abbreviation: 3+ letters, or <...> of 3+ letters, digits, '+', '-'. */
static bool
parse_abbr(struct pparse *pp)
{
    const char *p = pp->p;
    size_t n = 0;

    if (*p == '<') {
        p++;
        while (is_alpha(p[n]) || is_digit(p[n]) || p[n] == '+' || p[n] == '-')
            n++;
        if (n < 3 || p[n] != '>') {
            pp->what = "a zone abbreviation such as <-03>";
            return false;
        }
        pp->p = p + n + 1;
        return true;
    }
    while (is_alpha(p[n]))
        n++;
    if (n < 3) {
        pp->what = "a zone abbreviation of at least 3 letters";
        return false;
    }
    pp->p = p + n;
    return true;
}

/* At most `max_digits` digits into *out. */
static bool
parse_num(struct pparse *pp, int max_digits, int *out)
{
    int v = 0, n = 0;

    while (is_digit(*pp->p) && n < max_digits) {
        v = v * 10 + (*pp->p - '0');
        pp->p++;
        n++;
    }
    if (n == 0 || is_digit(*pp->p))
        return false;
    *out = v;
    return true;
}

/* [+-]hh[:mm[:ss]] with hh up to max_hours, as seconds (positive: as written). */
static bool
parse_hms(struct pparse *pp, int max_hours, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;

    if (*pp->p == '+' || *pp->p == '-') {
        sign = *pp->p == '-' ? -1 : 1;
        pp->p++;
    }
    if (!parse_num(pp, 3, &h) || h > max_hours)
        return false;
    if (*pp->p == ':') {
        pp->p++;
        if (!parse_num(pp, 2, &m) || m > 59)
            return false;
        if (*pp->p == ':') {
            pp->p++;
            if (!parse_num(pp, 2, &s) || s > 59)
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

/* A UTC offset as POSIX writes it (positive west), stored east-positive. */
static bool
parse_offset(struct pparse *pp, int32_t *out)
{
    const char *start = pp->p;
    int32_t v;

    if (!parse_hms(pp, 24, &v)) {
        pp->what = "an offset such as 5, -1 or 3:30";
        pp->p = start; /* messages point at the start of what is wrong */
        return false;
    }
    *out = -v;
    return true;
}

/* Jn, n or Mm.w.d; pp->p is left anywhere on failure. */
static bool
parse_date_part(struct pparse *pp, struct rule_date *r)
{
    if (*pp->p == 'J') {
        pp->p++;
        r->kind = DATE_JULIAN_NO_LEAP;
        if (!parse_num(pp, 3, &r->n) || r->n < 1 || r->n > 365)
            return false;
    } else if (*pp->p == 'M') {
        pp->p++;
        r->kind = DATE_MONTH_WEEK_DAY;
        if (!parse_num(pp, 2, &r->m) || r->m < 1 || r->m > 12 || *pp->p++ != '.')
            return false;
        if (!parse_num(pp, 1, &r->w) || r->w < 1 || r->w > 5 || *pp->p++ != '.')
            return false;
        if (!parse_num(pp, 1, &r->d) || r->d > 6)
            return false;
    } else {
        r->kind = DATE_ZERO_BASED;
        if (!parse_num(pp, 3, &r->n) || r->n > 365)
            return false;
    }
    return true;
}

static bool
parse_rule_date(struct pparse *pp, struct rule_date *r)
{
    const char *start = pp->p;

    if (!parse_date_part(pp, r)) {
        pp->what = "a date such as M3.5.0, J60 or 59";
        pp->p = start;
        return false;
    }
    r->time_s = 2 * 3600;
    if (*pp->p == '/') {
        pp->p++;
        start = pp->p;
        if (!parse_hms(pp, 167, &r->time_s)) {
            pp->what = "a time of day such as 2, 02:00 or 25";
            pp->p = start;
            return false;
        }
    }
    return true;
}

static bool
parse_rule(struct pparse *pp, struct rule *r)
{
    memset(r, 0, sizeof(*r));
    if (!parse_abbr(pp) || !parse_offset(pp, &r->std_off))
        return false;
    if (*pp->p == '\0')
        return true;
    if (!parse_abbr(pp))
        return false;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*pp->p != ',' && *pp->p != '\0' && !parse_offset(pp, &r->dst_off))
        return false;
    if (*pp->p != ',') {
        pp->what = *pp->p == '\0' ? "the rules of daylight saving time (,start,end)" : "','";
        return false;
    }
    pp->p++;
    if (!parse_rule_date(pp, &r->start))
        return false;
    if (*pp->p != ',') {
        pp->what = "','";
        return false;
    }
    pp->p++;
    if (!parse_rule_date(pp, &r->end))
        return false;
    if (*pp->p != '\0') {
        pp->what = "the end of the rule";
        return false;
    }
    return true;
}

/* Quotes at most 60 characters of untrusted text, control bytes as '?'. */
static const char *
show(const char *s, size_t len, char *buf, size_t size)
{
    size_t n = len < size - 4 ? len : size - 4;

    if (n > 60)
        n = 60;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];

        buf[i] = ch < 0x20 || ch >= 0x7F ? '?' : (char)ch;
    }
    if (n < len) {
        memcpy(buf + n, "...", 3);
        n += 3;
    }
    buf[n] = '\0';
    return buf;
}

/* Checks the rule in text[0..len) and fills *r; message without position prefix. */
static int
rule_from_text(const char *text, size_t len, struct rule *r, struct eph_err *err)
{
    char copy[256], shown[72], at[72];
    struct pparse pp = {.p = copy, .what = NULL};
    bool ok;

    show(text, len, shown, sizeof(shown));
    if (len >= sizeof(copy))
        return eph_err_set(err, EPH_EPARSE, "invalid TZ rule '%s': longer than %zu characters",
                           shown, sizeof(copy) - 1);
    if (memchr(text, '\0', len) != NULL)
        return eph_err_set(err, EPH_EPARSE, "invalid TZ rule '%s': NUL byte in it", shown);
    memcpy(copy, text, len);
    copy[len] = '\0';
    ok = parse_rule(&pp, r);
    if (!ok)
        return eph_err_set(err, EPH_EPARSE, "invalid TZ rule '%s': expected %s at '%s'", shown,
                           pp.what ? pp.what : "an offset",
                           show(pp.p, strlen(pp.p), at, sizeof(at)));
    return 0;
}

int
tz_parse_posix(const char *rule, struct tz **out, struct eph_err *err)
{
    struct tz *tz;
    struct rule r;
    int rc;

    *out = NULL;
    if (rule == NULL)
        return eph_err_set(err, EPH_EPARSE, "invalid TZ rule: none given");
    rc = rule_from_text(rule, strlen(rule), &r, err);
    if (rc < 0)
        return rc;
    tz = xcalloc(1, sizeof(*tz));
    tz->name = xstrdup(rule);
    tz->has_rule = true;
    tz->rule = r;
    tz->first_off = r.std_off;
    *out = tz;
    return 0;
}

/* ----------------------------------------------------------------- TZif */

struct tzif_header {
    int version; /* 0 for version 1, else the digit */
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t
be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t
be64(const uint8_t *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

struct tzif_ctx {
    const uint8_t *data;
    size_t len;
    const char *name;
    struct eph_err *err;
};

static int tzif_fail(struct tzif_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
tzif_fail(struct tzif_ctx *c, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    return eph_err_set(c->err, EPH_EPARSE, "time zone '%s': %s", c->name, msg);
}

static int
read_header(struct tzif_ctx *c, size_t off, struct tzif_header *h)
{
    const uint8_t *p = c->data + off;

    if (c->len - off < TZIF_HEADER_BYTES)
        return tzif_fail(c, "not a TZif file (%s header)", off ? "truncated second" : "no");
    if (memcmp(p, "TZif", 4) != 0)
        return tzif_fail(c, "not a TZif file (no 'TZif' %s)",
                         off ? "in the second header" : "at the start");
    if (p[4] == 0)
        h->version = 0;
    else if (p[4] >= '2' && p[4] <= '9')
        h->version = p[4] - '0'; /* later versions only add to what version 2 means */
    else
        return tzif_fail(c, "unsupported TZif version byte 0x%02x", p[4]);
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return 0;
}

/* Bytes of the data block that follows header h, for times of `tsize` bytes. */
static uint64_t
block_bytes(const struct tzif_header *h, unsigned tsize)
{
    return (uint64_t)h->timecnt * tsize + h->timecnt + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (tsize + 4) + h->isstdcnt + h->isutcnt;
}

/* Reads and checks the data block at off into tz; *end_out: just past it. */
static int
read_block(struct tzif_ctx *c, size_t off, const struct tzif_header *h, unsigned tsize,
           struct tz *tz, size_t *end_out)
{
    const uint8_t *times, *idx, *types, *chars, *leaps, *isstd, *isut;
    int32_t *type_off;
    int64_t prev_leap = 0;

    if (block_bytes(h, tsize) > c->len - off)
        return tzif_fail(c, "truncated data (%zu bytes, the header announces more)", c->len);
    /* Every part lies inside the data now. */
    times = c->data + off;
    idx = times + (size_t)h->timecnt * tsize;
    types = idx + h->timecnt;
    chars = types + (size_t)h->typecnt * 6;
    leaps = chars + h->charcnt;
    isstd = leaps + (size_t)h->leapcnt * (tsize + 4);
    isut = isstd + h->isstdcnt;
    if (h->typecnt == 0)
        return tzif_fail(c, "no local time types");
    if (h->typecnt > 256)
        return tzif_fail(c, "%u local time types, at most 256", h->typecnt);
    if (h->charcnt == 0)
        return tzif_fail(c, "no time zone designations");
    if (chars[h->charcnt - 1] != '\0')
        return tzif_fail(c, "time zone designations do not end with a NUL byte");
    if (h->isutcnt != 0 && h->isutcnt != h->typecnt)
        return tzif_fail(c, "%u UT/local indicators for %u types", h->isutcnt, h->typecnt);
    if (h->isstdcnt != 0 && h->isstdcnt != h->typecnt)
        return tzif_fail(c, "%u standard/wall indicators for %u types", h->isstdcnt, h->typecnt);

    type_off = xcalloc(h->typecnt, sizeof(*type_off));
    for (uint32_t i = 0; i < h->typecnt; i++) {
        const uint8_t *t = types + (size_t)i * 6;
        int32_t utoff = (int32_t)be32(t);

        if (utoff < UTOFF_MIN || utoff > UTOFF_MAX) {
            free(type_off);
            return tzif_fail(c, "type %u has offset %d s, outside -25h to +26h", i, utoff);
        }
        if (t[4] > 1) {
            free(type_off);
            return tzif_fail(c, "type %u has a daylight flag of %u, expected 0 or 1", i, t[4]);
        }
        if (t[5] >= h->charcnt) {
            free(type_off);
            return tzif_fail(c, "type %u names designation %u of %u", i, t[5], h->charcnt);
        }
        if ((h->isstdcnt && isstd[i] > 1) || (h->isutcnt && isut[i] > 1) ||
            (h->isutcnt && isut[i] && !(h->isstdcnt && isstd[i]))) {
            free(type_off);
            return tzif_fail(c, "type %u has bad standard/UT indicators", i);
        }
        type_off[i] = utoff;
    }
    for (uint32_t i = 0; i < h->leapcnt; i++) {
        const uint8_t *l = leaps + (size_t)i * (tsize + 4);
        int64_t at = tsize == 8 ? be64(l) : (int64_t)(int32_t)be32(l);

        if (i > 0 && at <= prev_leap) {
            free(type_off);
            return tzif_fail(c, "leap second records are not in ascending order");
        }
        prev_leap = at;
    }

    tz->n = h->timecnt;
    tz->times = xcalloc(h->timecnt ? h->timecnt : 1, sizeof(*tz->times));
    tz->offsets = xcalloc(h->timecnt ? h->timecnt : 1, sizeof(*tz->offsets));
    for (uint32_t i = 0; i < h->timecnt; i++) {
        int64_t at = tsize == 8 ? be64(times + (size_t)i * 8)
                                : (int64_t)(int32_t)be32(times + (size_t)i * 4);

        if (i > 0 && at <= tz->times[i - 1]) {
            free(type_off);
            return tzif_fail(c, "transition times are not in ascending order");
        }
        if (idx[i] >= h->typecnt) {
            free(type_off);
            return tzif_fail(c, "transition %u uses type %u of %u", i, idx[i], h->typecnt);
        }
        tz->times[i] = at;
        tz->offsets[i] = type_off[idx[i]];
    }
    tz->first_off = type_off[0]; /* RFC 8536: type 0 before the first transition */
    free(type_off);
    *end_out = off + (size_t)block_bytes(h, tsize);
    return 0;
}

/* The "\nRULE\n" after a version 2+ block, which must end the data. */
static int
read_footer(struct tzif_ctx *c, size_t off, struct tz *tz)
{
    const uint8_t *p = c->data + off, *nl;
    size_t rest = c->len - off, n;
    struct eph_err rerr = {0};

    if (rest < 2 || p[0] != '\n')
        return tzif_fail(c, "missing TZ rule footer after the version 2 data");
    nl = memchr(p + 1, '\n', rest - 1);
    if (nl == NULL)
        return tzif_fail(c, "unterminated TZ rule footer");
    n = (size_t)(nl - (p + 1));
    if ((size_t)(nl - p) + 1 != rest)
        return tzif_fail(c, "%zu unexpected bytes after the TZ rule footer",
                         rest - (size_t)(nl - p) - 1);
    if (n == 0)
        return 0; /* no rule: the last transition's offset stays */
    if (rule_from_text((const char *)p + 1, n, &tz->rule, &rerr) < 0)
        return tzif_fail(c, "%s", rerr.msg);
    tz->has_rule = true;
    return 0;
}

void
tz_free(struct tz *tz)
{
    if (tz == NULL)
        return;
    free(tz->name);
    free(tz->times);
    free(tz->offsets);
    free(tz);
}

int
tz_parse_tzif(const void *data, size_t len, const char *name, struct tz **out, struct eph_err *err)
{
    struct tzif_ctx c = {.data = data, .len = len, .name = name ? name : "TZif data", .err = err};
    struct tzif_header h1, h2;
    struct tz *tz = NULL;
    size_t end = 0;
    int rc;

    *out = NULL;
    if (data == NULL)
        len = c.len = 0;
    if (len > TZ_MAX_FILE_BYTES)
        return tzif_fail(&c, "larger than %d bytes", TZ_MAX_FILE_BYTES);
    rc = read_header(&c, 0, &h1);
    if (rc < 0)
        return rc;
    tz = xcalloc(1, sizeof(*tz));
    tz->name = xstrdup(c.name);
    if (h1.version == 0) {
        rc = read_block(&c, TZIF_HEADER_BYTES, &h1, 4, tz, &end);
        if (rc == 0 && end != len)
            rc = tzif_fail(&c, "%zu unexpected bytes after the data", len - end);
    } else {
        /* The version 1 block is skipped whole: only its size matters (zic's
         * "slim" files leave it nearly empty). */
        uint64_t skip = block_bytes(&h1, 4);

        if (skip > len - TZIF_HEADER_BYTES)
            rc = tzif_fail(&c, "truncated data (%zu bytes, the header announces more)", len);
        if (rc == 0)
            rc = read_header(&c, TZIF_HEADER_BYTES + (size_t)skip, &h2);
        if (rc == 0 && h2.version == 0)
            rc = tzif_fail(&c, "second header of version 1 in a version %d file", h1.version);
        if (rc == 0)
            rc = read_block(&c, 2 * TZIF_HEADER_BYTES + (size_t)skip, &h2, 8, tz, &end);
        if (rc == 0)
            rc = read_footer(&c, end, tz);
    }
    if (rc < 0) {
        tz_free(tz);
        return rc;
    }
    *out = tz;
    return 0;
}

/* -------------------------------------------------------------- loading */

bool
tz_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > TZ_MAX_NAME || name[0] == '/' || name[len - 1] == '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];

        if (!(is_alpha(ch) || is_digit(ch) || ch == '_' || ch == '+' || ch == '-' || ch == '/'))
            return false;
        if (ch == '/' && name[i + 1] == '/')
            return false;
    }
    return true;
}

int
tz_load(const char *name, struct tz **out, struct eph_err *err)
{
    char *path, *data = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    if (name == NULL || name[0] == '\0' || strcmp(name, "UTC") == 0) {
        struct tz *tz = xcalloc(1, sizeof(*tz));

        tz->name = xstrdup("UTC");
        tz->utc = true;
        *out = tz;
        return 0;
    }
    if (!tz_name_valid(name)) {
        char shown[72];

        return eph_err_set(err, EPH_EINVAL,
                           "invalid time zone name '%s', expected an IANA name such as "
                           "Europe/Madrid",
                           show(name, strlen(name), shown, sizeof(shown)));
    }
    path = xasprintf("%s/%s", TZ_DIR, name);
    rc = fs_read_all(path, TZ_MAX_FILE_BYTES, &data, &len);
    if (rc == -ENOENT || rc == -ENOTDIR || rc == -EISDIR)
        rc = eph_err_set(err, EPH_EINVAL, "unknown time zone '%s' (not in %s)", name, TZ_DIR);
    else if (rc == EPH_ETOOBIG)
        rc = eph_err_set(err, EPH_EPARSE, "time zone '%s': %s is larger than %d bytes", name, path,
                         TZ_MAX_FILE_BYTES);
    else if (rc < 0)
        rc = eph_err_set(err, rc, "cannot read time zone '%s': %s: %s", name, path,
                         eph_strerror(rc));
    else
        rc = tz_parse_tzif(data, len, name, out, err);
    free(data);
    free(path);
    return rc;
}

/* -------------------------------------------------------------- lookups */

const char *
tz_name(const struct tz *tz)
{
    return tz ? tz->name : "UTC";
}

bool
tz_is_utc(const struct tz *tz)
{
    return tz == NULL || tz->utc;
}

int32_t
tz_offset_at(const struct tz *tz, int64_t utc_s)
{
    size_t lo = 0, hi;

    if (tz == NULL)
        return 0;
    if (tz->n == 0)
        return tz->has_rule ? rule_offset_at(&tz->rule, utc_s) : tz->first_off;
    if (utc_s < tz->times[0])
        return tz->first_off;
    if (utc_s > tz->times[tz->n - 1] && tz->has_rule)
        return rule_offset_at(&tz->rule, utc_s);
    /* The last transition at or before utc_s: times[lo] <= utc_s < times[hi]. */
    hi = tz->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;

        if (tz->times[mid] <= utc_s)
            lo = mid;
        else
            hi = mid;
    }
    return tz->offsets[lo];
}

static bool
shows(const struct tz *tz, int64_t u, int64_t local_s)
{
    return u + tz_offset_at(tz, u) == local_s;
}

int64_t
tz_local_to_utc(const struct tz *tz, int64_t local_s)
{
    /* Offsets a day (and a bit, 25 h) either side: before and after any
     * change near local_s, since real zones change at most a few times a
     * year. Pathological data (changes every few seconds) gets an answer,
     * not necessarily the best one. */
    const int64_t span = 90000;
    int64_t l = clamp_time(local_s), ua, ub, lo, hi;
    bool va, vb;
    int32_t off;

    if (tz == NULL)
        return l;
    ua = l - tz_offset_at(tz, l - span); /* with the offset before */
    ub = l - tz_offset_at(tz, l + span); /* with the offset after */
    va = shows(tz, ua, l);
    vb = shows(tz, ub, l);
    if (va && vb)
        return ua < ub ? ua : ub; /* shown twice: the first time */
    if (va)
        return ua;
    if (vb)
        return ub;
    off = tz_offset_at(tz, l);
    if (shows(tz, l - off, l))
        return l - off;
    off = tz_offset_at(tz, l - off);
    if (shows(tz, l - off, l))
        return l - off;
    /* Never shown: clocks jumped over it. The jump lies between the two
     * candidates; find the first instant whose offset differs from the
     * earlier candidate's. */
    lo = ua < ub ? ua : ub;
    hi = ua < ub ? ub : ua;
    off = tz_offset_at(tz, lo);
    if (tz_offset_at(tz, hi) == off)
        return l - tz_offset_at(tz, l);
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;

        if (tz_offset_at(tz, mid) == off)
            lo = mid;
        else
            hi = mid;
    }
    return hi;
}
