/*
 * util/time.h - clocks, durations ("2h", "30m", "1h30m") and timestamps.
 */
#ifndef EPH_UTIL_TIME_H
#define EPH_UTIL_TIME_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Wall clock in milliseconds since the epoch (for records shown to people). */
int64_t time_wall_ms(void);
/* Monotonic clock in milliseconds (for timeouts and measurements). */
int64_t time_mono_ms(void);

/*
 * Parses a duration such as "45s", "30m", "2h", "7d" or "1h30m" (units s, m,
 * h, d; at least one part; no sign) into seconds. Returns 0, or EPH_EINVAL
 * with a message naming the text.
 */
int duration_parse(const char *text, int64_t *out_s, struct eph_err *err);

/* Formats seconds the way people read them: "45s", "5m", "2h", "1h30m", "3d4h". */
void duration_format(int64_t seconds, char *out, size_t out_size);

/* Formats a wall-clock time as RFC 3339 UTC: "2026-11-22T10:04:05Z". */
void time_format_rfc3339(int64_t wall_ms, char *out, size_t out_size);

#endif
