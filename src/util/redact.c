/*
 * util/redact.c - removes credentials from text before it is logged or shown.
 */
#include "util/redact.h"

#include <stdbool.h>
#include <string.h>

#include "util/buf.h"
#include "util/xmalloc.h"

/* Characters that end the authority part of a URL before any '@'. */
static bool
ends_authority(char c)
{
    return c == '\0' || c == '/' || c == ' ' || c == '\'' || c == '"' || c == '\n' ||
           c == '\t' || c == '?' || c == '#';
}

char *
redact_credentials(const char *text)
{
    struct buf out;
    const char *p;

    if (text == NULL)
        return NULL;
    buf_init(&out, strlen(text) + 64);
    p = text;
    for (;;) {
        const char *scheme_end = strstr(p, "://");
        const char *q, *at = NULL;

        if (scheme_end == NULL)
            break;
        q = scheme_end + 3;
        for (const char *r = q; !ends_authority(*r); r++) {
            if (*r == '@')
                at = r; /* the last '@' of the authority ends the user info */
        }
        buf_append(&out, p, (size_t)(q - p));
        if (at) {
            buf_puts(&out, "***");
            p = at;
        } else {
            p = q;
        }
    }
    buf_puts(&out, p);
    return buf_steal(&out);
}
