/*
 * util/log.h - logfmt logging: one line per event.
 *
 * A file defines LOG_MOD before including this header. The message is a short
 * fixed phrase; context goes in key=value pairs; free text goes through
 * log_q() to be quoted:
 *
 *   log_info("phase changed", "env=%s from=%s to=%s", name, a, b);
 *   -> ts=2026-11-22T10:04:05.123Z level=info mod=reconciler msg="phase changed" env=fx ...
 *
 * Thread-safe: lines from several threads never interleave. Secrets are never
 * passed to these functions.
 */
#ifndef EPH_UTIL_LOG_H
#define EPH_UTIL_LOG_H

#include <stdbool.h>
#include <stdio.h>

#ifndef LOG_MOD
#define LOG_MOD "eph"
#endif

enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

void log_set_level(enum log_level level);
/* Where lines go; default stderr. The stream is borrowed and must outlive logging. */
void log_set_stream(FILE *stream);
bool log_enabled(enum log_level level);
/* Parses "debug", "info", "warn", "error"; returns 0 or EPH_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);

/* `fmt` formats the key=value pairs that follow msg; it may be "". */
void log_write(enum log_level level, const char *mod, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Quotes `s` for a logfmt value: "..." with \" \\ \n escaped, cut at 400 bytes.
 * Returns a thread-local buffer, one of 8 in rotation: use the result within
 * the same log call.
 */
const char *log_q(const char *s);

#define log_debug(msg, ...)                                                                \
    do {                                                                                   \
        if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
            log_write(LOG_LEVEL_DEBUG, LOG_MOD, msg, "" __VA_ARGS__);                      \
    } while (0)
#define log_info(msg, ...) log_write(LOG_LEVEL_INFO, LOG_MOD, msg, "" __VA_ARGS__)
#define log_warn(msg, ...) log_write(LOG_LEVEL_WARN, LOG_MOD, msg, "" __VA_ARGS__)
#define log_error(msg, ...) log_write(LOG_LEVEL_ERROR, LOG_MOD, msg, "" __VA_ARGS__)

#endif
