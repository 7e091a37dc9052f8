/*
 * util/buf.c - a growable byte buffer with a ceiling.
 */
#include "util/buf.h"

#include <stdio.h>
#include <string.h>

#include "util/err.h"
#include "util/xmalloc.h"

void
buf_init(struct buf *b, size_t max_bytes)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max_bytes = max_bytes;
}

void
buf_release(struct buf *b)
{
    free(b->data);
    buf_init(b, b->max_bytes);
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

static int
reserve(struct buf *b, size_t extra)
{
    size_t want;

    if (extra > b->max_bytes || b->len > b->max_bytes - extra)
        return EPH_ETOOBIG;
    want = b->len + extra + 1;
    if (want <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < want)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
    int rc = reserve(b, n);

    if (rc < 0)
        return rc;
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int
buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;
    int rc;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return EPH_EINVAL;
    rc = reserve(b, (size_t)n);
    if (rc < 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void
buf_consume(struct buf *b, size_t n)
{
    if (n >= b->len) {
        buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *
buf_steal(struct buf *b)
{
    char *p = b->data ? b->data : xstrdup("");

    buf_init(b, b->max_bytes);
    return p;
}

const char *
buf_cstr(const struct buf *b)
{
    return b->data ? b->data : "";
}
