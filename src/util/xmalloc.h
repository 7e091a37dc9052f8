/*
 * util/xmalloc.h - allocation that cannot fail: aborts when memory runs out.
 *
 * For small, bounded allocations only; sizes that come from outside are
 * checked against a limit before they reach these.
 */
#ifndef EPH_UTIL_XMALLOC_H
#define EPH_UTIL_XMALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);          /* xstrdup(NULL) returns NULL */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Number of elements of a true array. */
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* The struct that holds `ptr` as its member `member`. */
#define container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#endif
