/*
 * util/err.c - error codes and human-readable error messages.
 */
#include "util/err.h"

#include <stdarg.h>
#include <string.h>

int
eph_err_set(struct eph_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL)
        return code;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int
eph_err_prefix(struct eph_err *err, int code, const char *fmt, ...)
{
    char old[EPH_ERR_MSG_MAX];
    char prefix[EPH_ERR_MSG_MAX];
    va_list ap;

    if (err == NULL)
        return code;
    if (code != 0)
        err->code = code;
    memcpy(old, err->msg, sizeof(old));
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    /* Truncation is fine: a message is for people, and cut long ones. */
    size_t n = strnlen(prefix, sizeof(err->msg) - 1);
    memcpy(err->msg, prefix, n);
    size_t room = sizeof(err->msg) - 1 - n;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n, old, m);
    err->msg[n + m] = '\0';
    return err->code;
}

void
eph_err_clear(struct eph_err *err)
{
    if (err == NULL)
        return;
    err->code = 0;
    err->msg[0] = '\0';
}

const char *
eph_strerror(int rc)
{
    switch (rc) {
    case 0: return "success";
    case EPH_EINVAL: return "invalid argument";
    case EPH_ENOTFOUND: return "not found";
    case EPH_ECONFLICT: return "conflict";
    case EPH_EPARSE: return "parse error";
    case EPH_ESTORE: return "store error";
    case EPH_EPERM: return "permission denied";
    case EPH_EUNAUTH: return "not authenticated";
    case EPH_ETOOBIG: return "too large";
    case EPH_EAGAIN: return "in progress";
    case EPH_EQUOTA: return "quota exceeded";
    case EPH_EGIT: return "git error";
    case EPH_EINTERNAL: return "internal error";
    case EPH_ETIMEDOUT: return "timed out";
    case EPH_EPROCESS: return "process failed";
    default: break;
    }
    if (rc < 0 && rc > -4000)
        return strerror(-rc);
    return "unknown error";
}

void
fatal(const char *fmt, ...)
{
    va_list ap;

    fputs("eph: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}
