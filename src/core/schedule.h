/*
 * core/schedule.h - office hours: when environments are awake.
 *
 * A schedule is a set of weekly windows in a time zone's wall-clock time,
 * "Mon-Fri 08:00-20:00" in Europe/Madrid. The reconciler asks, for an
 * instant, whether it lies inside a window, since when that has been so and
 * when it changes next. Windows follow the wall clock across daylight
 * saving changes: 08:00-20:00 starts when local clocks show 08:00 on every
 * day, and a window the change falls into (22:00-06:00 on that night) is
 * an hour shorter or longer.
 *
 * Parsing reads the time zone file (blocking, small); evaluating is pure
 * arithmetic. A parsed schedule is immutable: any thread may read it.
 */
#ifndef EPH_CORE_SCHEDULE_H
#define EPH_CORE_SCHEDULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define SCHEDULE_MAX_WINDOWS 32 /* more is a mistake, not a timetable */
#define SCHEDULE_MAX_TEXT 1024  /* longer awake texts are refused */

struct schedule; /* opaque: parsed awake windows + time zone */
struct tz;

/*
 * awake: "Mon-Fri 08:00-20:00" or several windows joined by ", "
 * ("Mon-Fri 08:00-20:00, Sat 10:00-14:00"); days Mon..Sun (any case), a
 * day alone or a range, ranges may wrap (Fri-Mon); times HH:MM (H:MM too),
 * end 24:00 allowed, end <= start means the window ends the next day
 * (22:00-06:00; 08:00-08:00 is 24 hours). "always" is awake all the time.
 * timezone: IANA name read from /usr/share/zoneinfo (TZif v2+, including
 * the POSIX TZ footer for times after the last transition), NULL/"" = UTC.
 * Returns 0 and *out (free with schedule_free), or EPH_EINVAL with a clear
 * message ("unknown day 'Mox' in window 'Mox-Fri 08:00-20:00', expected Mon, Tue,
 * Wed, Thu, Fri, Sat or Sun", "unknown time zone 'Europe/Madird' (not in
 * /usr/share/zoneinfo)"); a damaged zone file gives EPH_EPARSE.
 */
int schedule_parse(const char *awake, const char *timezone, struct schedule **out,
                   struct eph_err *err);

/* Same with a zone already made: takes ownership of tz (NULL: UTC), also on failure. */
int schedule_new(const char *awake, struct tz *tz, struct schedule **out, struct eph_err *err);

/* schedule_free(NULL) does nothing. */
void schedule_free(struct schedule *s);

struct schedule_state {
    bool awake;             /* inside a window at now */
    int64_t since_ms;       /* start of the current state (window start or last window end);
                               0 if it never changes ("always") */
    int64_t next_change_ms; /* when it changes next (INT64_MAX if never) */
};

/*
 * The state at now_ms (wall clock, ms since the epoch). Windows that touch
 * or overlap count as one ("Mon-Sun 00:00-24:00" never changes), so since
 * and next_change are real changes of state. Exact for instants within
 * a few thousand years of now.
 */
void schedule_eval(const struct schedule *s, int64_t now_ms, struct schedule_state *out);

/*
 * "Mon-Fri 08:00-20:00 Europe/Madrid" for messages, into out ("... UTC"
 * without a zone; "always ..." for always). Windows are written as parsed,
 * in canonical form (days capitalised, HH:MM); text that does not fit ends
 * in "..." (160 bytes hold three windows and any real zone name).
 */
void schedule_describe(const struct schedule *s, char *out, size_t out_size);

#endif
