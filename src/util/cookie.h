/*
 * util/cookie.h - reading one cookie out of a Cookie request header
 * (RFC 6265: "name=value; name2=value2"). One reader for the control API's
 * sign-in cookie (api/api.c) and the gateway's host cookie
 * (gateway/guard.c).
 */
#ifndef EPH_UTIL_COOKIE_H
#define EPH_UTIL_COOKIE_H

#include <stddef.h>

/*
 * The value of the first cookie called `name` (name_len bytes) in the
 * Cookie header value `header` (len bytes, NUL not needed), without the
 * blanks around it; *value_len its length. NULL if there is none. Borrowed
 * from header; names are compared exactly, as browsers send them.
 */
const char *cookie_find(const char *header, size_t len, const char *name, size_t name_len,
                        size_t *value_len);

#endif
