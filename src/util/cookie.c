/*
 * util/cookie.c - one cookie out of a Cookie header (see cookie.h): pairs
 * split at ';', blanks around each pair dropped, the name compared exactly.
 */
#include "util/cookie.h"

#include <stdbool.h>
#include <string.h>

static bool
is_blank(char c)
{
    return c == ' ' || c == '\t';
}

const char *
cookie_find(const char *header, size_t len, const char *name, size_t name_len, size_t *value_len)
{
    const char *v = header, *end = header + len;

    while (v < end) {
        const char *semi = memchr(v, ';', (size_t)(end - v));
        const char *stop = semi ? semi : end;

        while (v < stop && is_blank(*v))
            v++;
        if ((size_t)(stop - v) > name_len && memcmp(v, name, name_len) == 0 && v[name_len] == '=') {
            const char *value = v + name_len + 1;
            size_t n = (size_t)(stop - value);

            while (n > 0 && is_blank(value[n - 1]))
                n--;
            *value_len = n;
            return value;
        }
        v = semi ? semi + 1 : end;
    }
    return NULL;
}
