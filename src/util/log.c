/*
 * util/log.c - logfmt logging.
 */
#include "util/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include "util/err.h"

static enum log_level min_level = LOG_LEVEL_INFO;
static FILE *log_stream;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void
log_set_level(enum log_level level)
{
    min_level = level;
}

void
log_set_stream(FILE *stream)
{
    log_stream = stream;
}

bool
log_enabled(enum log_level level)
{
    return level >= min_level;
}

int
log_level_parse(const char *s, enum log_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};

    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return EPH_EINVAL;
}

static const char *
level_name(enum log_level level)
{
    switch (level) {
    case LOG_LEVEL_DEBUG: return "debug";
    case LOG_LEVEL_INFO: return "info";
    case LOG_LEVEL_WARN: return "warn";
    case LOG_LEVEL_ERROR: return "error";
    }
    return "?";
}

void
log_write(enum log_level level, const char *mod, const char *msg, const char *fmt, ...)
{
    char ts[96];
    char pairs[2048];
    struct timespec now;
    struct tm tm;
    va_list ap;
    FILE *out;

    if (!log_enabled(level))
        return;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             now.tv_nsec / 1000000);
    va_start(ap, fmt);
    vsnprintf(pairs, sizeof(pairs), fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    out = log_stream ? log_stream : stderr;
    fprintf(out, "ts=%s level=%s mod=%s msg=%s%s%s\n", ts, level_name(level), mod, log_q(msg),
            pairs[0] ? " " : "", pairs);
    fflush(out);
    pthread_mutex_unlock(&log_lock);
}

const char *
log_q(const char *s)
{
    enum { RING = 8, CUT = 400 };
    static _Thread_local char ring[RING][CUT * 2 + 8];
    static _Thread_local unsigned next;
    char *out = ring[next++ % RING];
    size_t o = 0;

    if (s == NULL)
        s = "";
    out[o++] = '"';
    for (size_t i = 0; s[i] && i < CUT; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else if (c < 0x20 || c == 0x7f) {
            out[o++] = '?';
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
