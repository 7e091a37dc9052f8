/*
 * core/tz.h - time zones: the offset from UTC at any instant, from the
 * system's tz database (TZif files, RFC 8536) and POSIX TZ rules.
 *
 * A schedule ("Mon-Fri 08:00-20:00 Europe/Madrid") is written in local
 * time; the reconciler compares it with UTC clocks. This module turns one
 * into the other. It reads TZif versions 1 to 4 (the 64-bit data of
 * version 2 and later when present) and the POSIX TZ string at the end of
 * a version 2+ file ("CET-1CEST,M3.5.0,M10.5.0/3"), which says what
 * happens after the last listed transition. Leap-second records ("right/"
 * zones) are checked and ignored: offsets are what a wall clock shows.
 *
 * Input is validated strictly, since the fuzz target feeds it arbitrary
 * bytes: a bad file gives EPH_EPARSE with a message, never a crash.
 *
 * A struct tz is immutable once made: any thread may read it.
 */
#ifndef EPH_CORE_TZ_H
#define EPH_CORE_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define TZ_DIR "/usr/share/zoneinfo"
#define TZ_MAX_FILE_BYTES (256 * 1024) /* real zone files are under 4 KiB */
#define TZ_MAX_NAME 128                /* the longest IANA name has 32 characters */

struct tz; /* opaque */

/*
 * Loads time zone `name` (an IANA name such as "Europe/Madrid") from
 * TZ_DIR/<name>. NULL, "" and "UTC" give UTC without reading a file. The
 * name is checked first (tz_name_valid). Returns 0 and *out (free with
 * tz_free), or EPH_EINVAL ("unknown time zone 'Europe/Madird'", "invalid
 * time zone name '../x', ..."), EPH_EPARSE (a file that is not valid TZif
 * data), or -errno for a file that cannot be read. Blocking: reads a small
 * file.
 */
int tz_load(const char *name, struct tz **out, struct eph_err *err);

/*
 * Parses TZif data (`len` bytes, any content). `name` is what messages and
 * tz_name() call it (NULL: "TZif data"). Returns 0 and *out, or EPH_EPARSE
 * naming what is wrong ("time zone 'X': transition times are not in
 * ascending order").
 */
int tz_parse_tzif(const void *data, size_t len, const char *name, struct tz **out,
                  struct eph_err *err);

/*
 * Parses a POSIX TZ rule as found at the end of TZif files, with the
 * RFC 8536 extensions (transition hours from -167 to 167):
 * "CET-1CEST,M3.5.0,M10.5.0/3", "<-03>3", "EST5EDT,M3.2.0,M11.1.0",
 * "<+0330>-3:30", "IST-1GMT0,M10.5.0,M3.5.0/1". A daylight-saving name
 * must come with its rules. Returns 0 and *out, or EPH_EPARSE.
 */
int tz_parse_posix(const char *rule, struct tz **out, struct eph_err *err);

/* tz_free(NULL) does nothing. */
void tz_free(struct tz *tz);

/* The name given when it was made ("UTC" for UTC). Borrowed, lives as long as tz. */
const char *tz_name(const struct tz *tz);

/* True for a UTC zone made without a file (tz NULL counts as UTC too). */
bool tz_is_utc(const struct tz *tz);

/* Seconds east of UTC at the instant utc_s (seconds since the epoch). NULL: UTC, 0. */
int32_t tz_offset_at(const struct tz *tz, int64_t utc_s);

/*
 * The instant (seconds since the epoch) at which wall clocks of tz show
 * local_s (local seconds counted from 1970-01-01 00:00 local). A time that
 * happens twice (clocks going back) gives the earlier instant; a time that
 * never happens (clocks going forward) gives the instant of the jump, so
 * "02:30" on the day Madrid skips 02:00-03:00 is when clocks show 03:00.
 * Non-decreasing in local_s.
 */
int64_t tz_local_to_utc(const struct tz *tz, int64_t local_s);

/*
 * True if `name` could be an IANA zone name: 1 to TZ_MAX_NAME characters
 * from A-Z a-z 0-9 _ + - /, not starting or ending with '/', no empty part.
 * Nothing like "../" can get through ('.' is not allowed at all).
 */
bool tz_name_valid(const char *name);

#endif
