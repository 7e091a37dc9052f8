/*
 * util/buf.h - a growable byte buffer with a ceiling.
 *
 * Every buffer gets its maximum size when it is created; crossing it is an
 * error (EPH_ETOOBIG) that the caller turns into a precise status, never a
 * bigger allocation. The data is always NUL-terminated for convenience.
 */
#ifndef EPH_UTIL_BUF_H
#define EPH_UTIL_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;       /* NULL until the first append; NUL-terminated after */
    size_t len;       /* bytes used, excluding the terminating NUL */
    size_t cap;       /* bytes allocated */
    size_t max_bytes; /* ceiling for len */
};

void buf_init(struct buf *b, size_t max_bytes);
void buf_release(struct buf *b);
void buf_reset(struct buf *b); /* len = 0, keeps the memory */

/* Appends; returns 0 or EPH_ETOOBIG (and appends nothing). */
int buf_append(struct buf *b, const void *data, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);

/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);

/* Hands the data to the caller (free() it) and resets the buffer. */
char *buf_steal(struct buf *b);

/* The data as a string: "" when empty. Borrowed, valid until the next change. */
const char *buf_cstr(const struct buf *b);

#endif
