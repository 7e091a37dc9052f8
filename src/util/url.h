/*
 * util/url.h - percent-encoding (RFC 3986) of query values and form fields,
 * both ways. One decoder for every place that reads %XX from outside: the
 * sign-in forms (api/api_pages.c), query strings and paths.
 */
#ifndef EPH_UTIL_URL_H
#define EPH_UTIL_URL_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/*
 * Decodes len bytes of percent-encoded text (%XX, either case; with `plus`,
 * as in forms and query strings, '+' is a blank) into a new string to
 * free(). NULL when it is badly encoded or would hold a NUL: a '%' not
 * followed by two hex digits, %00, or a NUL byte in s.
 */
char *url_decode(const char *s, size_t len, bool plus);

/*
 * Appends len bytes of s to out, percent-encoded for a query value or a
 * path segment: all but A-Z a-z 0-9 - . _ ~ become %XX (upper case). Returns
 * 0, or EPH_ETOOBIG when out's ceiling is crossed (as buf_append()).
 */
int url_encode(struct buf *out, const char *s, size_t len);

#endif
