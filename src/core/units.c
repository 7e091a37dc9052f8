/*
 * core/units.c - sizes and CPU amounts: text <-> integers, exactly.
 *
 * Integer arithmetic throughout (no strtod): "0.1Gi" is 107374182 bytes on
 * every machine, and a fraction finer than the unit is either rounded down
 * (bytes) or refused (CPU), never silently drifted.
 */
#include "core/units.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"

/* Digits before and after an optional '.', into *whole and *frac (frac
 * scaled to `frac_digits` digits); *end: the first byte after the number. */
static int
parse_decimal(const char *s, int frac_digits, int64_t *whole, int64_t *frac, const char **end)
{
    const char *p = s;
    int64_t w = 0, f = 0;
    int nw = 0, nf = 0;

    while (*p >= '0' && *p <= '9') {
        if (w > (INT64_MAX - 9) / 10)
            return EPH_EINVAL;
        w = w * 10 + (*p++ - '0');
        nw++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (nf < frac_digits)
                f = f * 10 + (*p - '0');
            else if (*p != '0')
                return EPH_EINVAL; /* finer than can be kept */
            p++;
            nf++;
        }
        if (nf == 0)
            return EPH_EINVAL; /* "1." */
    }
    if (nw == 0)
        return EPH_EINVAL; /* ".5" or nothing */
    for (int i = nf; i < frac_digits; i++)
        f *= 10;
    *whole = w;
    *frac = f;
    *end = p;
    return 0;
}

int
parse_size_bytes(const char *s, int64_t *out)
{
    static const struct {
        const char *suffix;
        int64_t mult;
    } units[] = {
        {"", 1},
        {"k", 1000LL},
        {"K", 1000LL},
        {"M", 1000LL * 1000},
        {"G", 1000LL * 1000 * 1000},
        {"T", 1000LL * 1000 * 1000 * 1000},
        {"P", 1000LL * 1000 * 1000 * 1000 * 1000},
        {"E", 1000LL * 1000 * 1000 * 1000 * 1000 * 1000},
        {"Ki", 1LL << 10},
        {"Mi", 1LL << 20},
        {"Gi", 1LL << 30},
        {"Ti", 1LL << 40},
        {"Pi", 1LL << 50},
        {"Ei", 1LL << 60},
    };
    /* Nine fraction digits: exact for every unit up to E/Ei (10^9 * 2^60 fits
     * in 128 bits, and is split below so that it fits in 64). */
    enum { FRAC_DIGITS = 9 };
    const int64_t frac_scale = 1000000000;
    int64_t whole, frac, mult = 0;
    const char *end;

    if (s == NULL || parse_decimal(s, FRAC_DIGITS, &whole, &frac, &end) < 0)
        return EPH_EINVAL;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].suffix) == 0) {
            mult = units[i].mult;
            break;
        }
    }
    if (mult == 0 || whole > UNITS_MAX_BYTES / mult)
        return EPH_EINVAL;
    whole *= mult;
    if (frac != 0) {
        /* frac * mult / 10^9 without overflow: mult = q * 10^9 + r. */
        int64_t q = mult / frac_scale, r = mult % frac_scale;
        __int128 part = (__int128)frac * q + (__int128)frac * r / frac_scale;

        if (part > UNITS_MAX_BYTES - whole)
            return EPH_EINVAL;
        whole += (int64_t)part;
    }
    if (whole > UNITS_MAX_BYTES)
        return EPH_EINVAL;
    *out = whole;
    return 0;
}

int
parse_cpu_millis(const char *s, int64_t *out)
{
    int64_t whole, frac, v;
    const char *end;

    if (s == NULL)
        return EPH_EINVAL;
    if (strchr(s, 'm') != NULL) {
        /* "250m": whole millicores */
        if (parse_decimal(s, 0, &whole, &frac, &end) < 0 || strcmp(end, "m") != 0 ||
            strchr(s, '.') != NULL || whole > UNITS_MAX_CPU_MILLIS)
            return EPH_EINVAL;
        *out = whole;
        return 0;
    }
    if (parse_decimal(s, 3, &whole, &frac, &end) < 0 || *end != '\0' ||
        whole > UNITS_MAX_CPU_MILLIS / 1000)
        return EPH_EINVAL;
    v = whole * 1000 + frac;
    if (v > UNITS_MAX_CPU_MILLIS)
        return EPH_EINVAL;
    *out = v;
    return 0;
}

void
format_size_bytes(int64_t bytes, char *out, size_t out_size)
{
    static const char *const suffix[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int unit = -1;

    if (bytes > 0) {
        while (unit < 5 && bytes % 1024 == 0) {
            bytes /= 1024;
            unit++;
        }
    }
    snprintf(out, out_size, "%lld%s", (long long)bytes, unit >= 0 ? suffix[unit] : "");
}

void
format_cpu_millis(int64_t millis, char *out, size_t out_size)
{
    int64_t frac = millis % 1000;
    char digits[24]; /* three digits; sized for any long long */
    int n = 3;

    if (millis < 0 || frac == 0) {
        snprintf(out, out_size, "%lld", (long long)(millis / 1000));
        return;
    }
    snprintf(digits, sizeof(digits), "%03lld", (long long)frac);
    while (n > 1 && digits[n - 1] == '0')
        n--;
    snprintf(out, out_size, "%lld.%.*s", (long long)(millis / 1000), n, digits);
}
