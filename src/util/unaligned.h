/*
 * util/unaligned.h - loading a word from any address, for code that reads
 * bytes a word at a time (the gateway's cookie memo and header names). The
 * copy compiles to one load.
 */
#ifndef EPH_UTIL_UNALIGNED_H
#define EPH_UTIL_UNALIGNED_H

#include <stdint.h>
#include <string.h>

static inline uint64_t
load_u64(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return w;
}

static inline uint32_t
load_u32(const char *p)
{
    uint32_t w;

    memcpy(&w, p, sizeof(w));
    return w;
}

#endif
