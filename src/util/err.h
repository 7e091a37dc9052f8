/*
 * util/err.h - error codes and human-readable error messages.
 *
 * Functions return int: 0 on success, -errno for system errors, or one of the
 * EPH_E* codes below (all below -4000) for ours. Where a person will read the
 * message, the caller passes a struct eph_err that eph_err_set() fills.
 */
#ifndef EPH_UTIL_ERR_H
#define EPH_UTIL_ERR_H

#include <stdio.h>
#include <stdlib.h>

enum {
    EPH_EINVAL = -4001,    /* bad input from a user or a file */
    EPH_ENOTFOUND = -4002, /* the named thing does not exist */
    EPH_ECONFLICT = -4003, /* it exists already, or is in the wrong state */
    EPH_EPARSE = -4004,    /* a document could not be parsed */
    EPH_ESTORE = -4005,    /* the database failed */
    EPH_EPERM = -4006,     /* authenticated but not allowed */
    EPH_EUNAUTH = -4007,   /* not authenticated */
    EPH_ETOOBIG = -4008,   /* a size limit was crossed */
    EPH_EAGAIN = -4009,    /* still in progress: call again later */
    EPH_EQUOTA = -4010,    /* a quota would be exceeded */
    EPH_EGIT = -4011,      /* a git operation failed */
    EPH_EINTERNAL = -4012, /* our own bug */
    EPH_ETIMEDOUT = -4013, /* a deadline passed */
    EPH_EPROCESS = -4014,  /* a child process failed */
};

#define EPH_ERR_MSG_MAX 512

struct eph_err {
    int code;                  /* the code last set, 0 if none */
    char msg[EPH_ERR_MSG_MAX]; /* lower-case message, no trailing period */
};

/*
 * Formats a message into *err (which may be NULL) and returns `code`, so that
 * `return eph_err_set(err, EPH_EINVAL, "bad '%s'", x);` reads as one step.
 */
int eph_err_set(struct eph_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Puts `fmt` (e.g. "%s:%d:%d: ") in front of the message already in *err,
 * keeping its code unless `code` is non-zero. Returns the code. Safe where a
 * plain eph_err_set(err, rc, "...%s", err->msg) would read what it writes.
 */
int eph_err_prefix(struct eph_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Resets *err to "no error". */
void eph_err_clear(struct eph_err *err);

/* Names an error code: strerror(-rc) for system errors, a phrase for ours. */
const char *eph_strerror(int rc);

/* For our own bugs, never for input: prints where and aborts. */
#define EPH_ASSERT(cond)                                                                   \
    do {                                                                                   \
        if (!(cond)) {                                                                     \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #cond);   \
            abort();                                                                       \
        }                                                                                  \
    } while (0)

/* Start-up only: prints the message to stderr and exits with status 1. */
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
