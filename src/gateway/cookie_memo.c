/*
 * gateway/cookie_memo.c - a gateway worker's memo of verified host cookies
 * (see cookie_memo.h): a keyed hash picks a set of four places, a tag per
 * place rules out most of them without touching the entries, and the one
 * whose tag matches is compared whole, in constant time.
 */
#include "gateway/cookie_memo.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MEMO_SETS 1024 /* a power of two */
#define MEMO_WAYS 4

struct gw_cookie_memo {
    uint64_t seed;                                       /* the hash's key */
    uint64_t tags[MEMO_SETS][MEMO_WAYS];                 /* 0: an empty place */
    struct gw_memo_entry *entries[MEMO_SETS][MEMO_WAYS]; /* made when first used */
    uint8_t next[MEMO_SETS];                             /* the place a full set gives up next */
};

static uint64_t
load64(const char *p)
{
    uint64_t w;

    memcpy(&w, p, sizeof(w));
    return w;
}

static uint64_t
mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/* Eight bytes at a time: a cookie is hashed on every request. */
static uint64_t
hash_bytes(uint64_t h, const char *p, size_t n)
{
    uint64_t tail = 0;

    for (; n >= 8; p += 8, n -= 8)
        h = mix(h, load64(p));
    memcpy(&tail, p, n);
    return mix(h, tail ^ ((uint64_t)n << 56));
}

/* The tag of a cookie and host: never 0, which marks an empty place. */
static uint64_t
tag_of(const struct gw_cookie_memo *m, const char *value, size_t len, const char *host,
       size_t host_len)
{
    uint64_t h = hash_bytes(m->seed, value, len);

    h = hash_bytes(mix(h, len), host, host_len);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h | 1;
}

/* a and b (n bytes each) are the same; the time taken depends on n only. */
static bool
same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t diff = 0;
    size_t i = 0;

    for (; i + 8 <= n; i += 8) {
        diff |= load64(a + i) ^ load64(b + i);
        __asm__("" : "+r"(diff)); /* no early way out: the compiler cannot see diff */
    }
    for (; i < n; i++) {
        diff |= (uint64_t)((unsigned char)a[i] ^ (unsigned char)b[i]);
        __asm__("" : "+r"(diff));
    }
    return diff == 0;
}

/* Entry e holds exactly this cookie and host. */
static bool
holds(const struct gw_memo_entry *e, const char *value, size_t len, const char *host,
      size_t host_len)
{
    return e->value_len == len && e->host_len == host_len && same_bytes(e->value, value, len) &&
           same_bytes(e->host, host, host_len);
}

struct gw_cookie_memo *
gw_cookie_memo_new(void)
{
    struct gw_cookie_memo *m = calloc(1, sizeof(*m));

    if (m == NULL)
        return NULL;
    if (RAND_bytes((unsigned char *)&m->seed, sizeof(m->seed)) != 1) {
        free(m);
        return NULL;
    }
    return m;
}

void
gw_cookie_memo_free(struct gw_cookie_memo *m)
{
    if (m == NULL)
        return;
    for (size_t s = 0; s < MEMO_SETS; s++) {
        for (size_t i = 0; i < MEMO_WAYS; i++) {
            if (m->entries[s][i] != NULL) {
                OPENSSL_cleanse(m->entries[s][i], sizeof(*m->entries[s][i]));
                free(m->entries[s][i]);
            }
        }
    }
    OPENSSL_cleanse(&m->seed, sizeof(m->seed));
    free(m);
}

struct gw_memo_entry *
gw_cookie_memo_find(struct gw_cookie_memo *m, const char *value, size_t len, const char *host,
                    size_t host_len)
{
    uint64_t tag;
    size_t set;

    if (len > GW_MEMO_VALUE_MAX || host_len > GW_MEMO_HOST_MAX)
        return NULL;
    tag = tag_of(m, value, len, host, host_len);
    set = (size_t)(tag >> 32) & (MEMO_SETS - 1);
    for (size_t i = 0; i < MEMO_WAYS; i++) {
        if (m->tags[set][i] == tag && holds(m->entries[set][i], value, len, host, host_len))
            return m->entries[set][i];
    }
    return NULL;
}

struct gw_memo_entry *
gw_cookie_memo_put(struct gw_cookie_memo *m, const char *value, size_t len, const char *host,
                   size_t host_len, const struct auth_grant *g)
{
    uint64_t tag;
    size_t set, way = MEMO_WAYS;
    struct gw_memo_entry *e;

    if (len > GW_MEMO_VALUE_MAX || host_len > GW_MEMO_HOST_MAX)
        return NULL;
    tag = tag_of(m, value, len, host, host_len);
    set = (size_t)(tag >> 32) & (MEMO_SETS - 1);
    /* The place of the same cookie if it is here, else an empty one. */
    for (size_t i = 0; i < MEMO_WAYS; i++) {
        if (m->tags[set][i] == tag && holds(m->entries[set][i], value, len, host, host_len)) {
            way = i;
            break;
        }
        if (m->tags[set][i] == 0 && way == MEMO_WAYS)
            way = i;
    }
    if (way == MEMO_WAYS) {
        way = m->next[set];
        m->next[set] = (uint8_t)((way + 1) % MEMO_WAYS);
    }
    if (m->entries[set][way] == NULL) {
        m->entries[set][way] = malloc(sizeof(struct gw_memo_entry));
        if (m->entries[set][way] == NULL)
            return NULL;
    }
    e = m->entries[set][way];
    m->tags[set][way] = tag;
    memset(e, 0, offsetof(struct gw_memo_entry, value));
    e->grant = *g;
    e->value_len = (uint16_t)len;
    e->host_len = (uint16_t)host_len;
    memcpy(e->value, value, len);
    memcpy(e->host, host, host_len);
    return e;
}
