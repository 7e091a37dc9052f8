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

#include "util/unaligned.h"

#define MEMO_SETS 1024 /* a power of two */
#define MEMO_WAYS 4

/* One cache line: the tags rule out most places without touching entries. */
struct memo_set {
    _Alignas(64) uint64_t tags[MEMO_WAYS];    /* 0: an empty place */
    struct gw_memo_entry *entries[MEMO_WAYS]; /* made when first used */
};

struct gw_cookie_memo {
    struct memo_set sets[MEMO_SETS];
    uint64_t seed;           /* the hash's key */
    uint8_t next[MEMO_SETS]; /* the place a full set gives up next */
};

static uint64_t
mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x9e3779b97f4a7c15ull;
    return h ^ (h >> 29);
}

/*
 * The tag of a cookie and host: never 0, which marks an empty place. It is
 * keyed with the memo's seed and covers the value's last TAIL_BYTES, its
 * length and the host's length: the cookies memoed end in their MAC, which
 * differs between any two of them, and the whole cookie and host are
 * compared before an entry is used. Hashing all of them cost more than the
 * rest of a hit.
 */
#define TAIL_BYTES 16

static uint64_t
tag_of(const struct gw_cookie_memo *m, const char *value, size_t len, size_t host_len)
{
    uint64_t h = mix(m->seed, (uint64_t)len << 32 | host_len);

    if (len >= TAIL_BYTES) {
        h = mix(h, load_u64(value + len - TAIL_BYTES));
        h = mix(h, load_u64(value + len - TAIL_BYTES + 8));
    } else {
        for (size_t i = 0; i < len; i++)
            h = mix(h, (unsigned char)value[i]);
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h | 1;
}

/* a and b (n bytes each) are the same; the time taken depends on n only.
 * Four words at a time with four accumulators: compared on every hit. */
static bool
same_bytes(const char *a, const char *b, size_t n)
{
    uint64_t d0 = 0, d1 = 0, d2 = 0, d3 = 0;
    size_t i = 0;

    for (; i + 32 <= n; i += 32) {
        d0 |= load_u64(a + i) ^ load_u64(b + i);
        d1 |= load_u64(a + i + 8) ^ load_u64(b + i + 8);
        d2 |= load_u64(a + i + 16) ^ load_u64(b + i + 16);
        d3 |= load_u64(a + i + 24) ^ load_u64(b + i + 24);
        /* no early way out: the compiler cannot see the accumulators */
        __asm__("" : "+r"(d0), "+r"(d1), "+r"(d2), "+r"(d3));
    }
    for (; i + 8 <= n; i += 8) {
        d0 |= load_u64(a + i) ^ load_u64(b + i);
        __asm__("" : "+r"(d0));
    }
    if (i < n && n >= 8) {
        /* the last bytes, in a word that overlaps those compared */
        d1 |= load_u64(a + n - 8) ^ load_u64(b + n - 8);
        __asm__("" : "+r"(d1));
    } else {
        for (; i < n; i++) {
            d1 |= (uint64_t)((unsigned char)a[i] ^ (unsigned char)b[i]);
            __asm__("" : "+r"(d1));
        }
    }
    return (d0 | d1 | d2 | d3) == 0;
}

/* Entry e holds exactly this cookie and host. */
static bool
holds(const struct gw_memo_entry *e, const char *value, size_t len, const char *host,
      size_t host_len)
{
    return e->value_len == len && e->host_len == host_len && same_bytes(e->text, value, len) &&
           same_bytes(e->text + len, host, host_len);
}

struct gw_cookie_memo *
gw_cookie_memo_new(void)
{
    size_t size = (sizeof(struct gw_cookie_memo) + 63) / 64 * 64;
    struct gw_cookie_memo *m = aligned_alloc(64, size);

    if (m == NULL)
        return NULL;
    memset(m, 0, size);
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
            struct gw_memo_entry *e = m->sets[s].entries[i];

            if (e != NULL) {
                OPENSSL_cleanse(e, sizeof(*e));
                free(e);
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
    struct memo_set *set;

    if (len > GW_MEMO_VALUE_MAX || host_len > GW_MEMO_HOST_MAX)
        return NULL;
    tag = tag_of(m, value, len, host_len);
    set = &m->sets[(tag >> 32) & (MEMO_SETS - 1)];
    for (size_t i = 0; i < MEMO_WAYS; i++) {
        if (set->tags[i] == tag && holds(set->entries[i], value, len, host, host_len))
            return set->entries[i];
    }
    return NULL;
}

struct gw_memo_entry *
gw_cookie_memo_put(struct gw_cookie_memo *m, const char *value, size_t len, const char *host,
                   size_t host_len, const struct auth_grant *g)
{
    uint64_t tag;
    size_t index, way = MEMO_WAYS;
    struct memo_set *set;
    struct gw_memo_entry *e;

    if (len > GW_MEMO_VALUE_MAX || host_len > GW_MEMO_HOST_MAX)
        return NULL;
    tag = tag_of(m, value, len, host_len);
    index = (tag >> 32) & (MEMO_SETS - 1);
    set = &m->sets[index];
    /* The place of the same cookie if it is here, else an empty one. */
    for (size_t i = 0; i < MEMO_WAYS; i++) {
        if (set->tags[i] == tag && holds(set->entries[i], value, len, host, host_len)) {
            way = i;
            break;
        }
        if (set->tags[i] == 0 && way == MEMO_WAYS)
            way = i;
    }
    if (way == MEMO_WAYS) {
        way = m->next[index];
        m->next[index] = (uint8_t)((way + 1) % MEMO_WAYS);
    }
    if (set->entries[way] == NULL) {
        set->entries[way] = malloc(sizeof(struct gw_memo_entry));
        if (set->entries[way] == NULL)
            return NULL;
    }
    e = set->entries[way];
    set->tags[way] = tag;
    memset(e, 0, offsetof(struct gw_memo_entry, text));
    e->grant = *g;
    e->value_len = (uint16_t)len;
    e->host_len = (uint16_t)host_len;
    memcpy(e->text, value, len);
    memcpy(e->text + len, host, host_len);
    e->text[len + host_len] = '\0';     /* no user name yet */
    e->text[len + host_len + 1] = '\0'; /* nor email */
    return e;
}

/* Copies s, cut to max - 1 bytes, with its NUL to *at; moves *at past it.
 * Returns the length copied. */
static uint16_t
put_name(char **at, const char *s, size_t max)
{
    size_t n = strnlen(s, max - 1);

    memcpy(*at, s, n);
    (*at)[n] = '\0';
    *at += n + 1;
    return (uint16_t)n;
}

void
gw_memo_note_session(struct gw_memo_entry *e, uint64_t version, int64_t now_ms, const char *user,
                     const char *email, enum role role, int64_t expires_ms)
{
    char *at = e->text + e->value_len + e->host_len;

    e->user_len = put_name(&at, user, AUTH_USER_MAX);
    e->email_len = put_name(&at, email, AUTH_EMAIL_MAX);
    e->session_role = role;
    e->session_expires_ms = expires_ms;
    e->ix_version = version;
    e->checked_ms = now_ms;
}

const char *
gw_memo_user(const struct gw_memo_entry *e)
{
    return e->text + e->value_len + e->host_len;
}

const char *
gw_memo_email(const struct gw_memo_entry *e)
{
    return gw_memo_user(e) + e->user_len + 1;
}
