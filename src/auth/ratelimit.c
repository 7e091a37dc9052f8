/*
 * auth/ratelimit.c - failed sign-ins per key, in memory. Each key keeps the
 * times of its last `max_failures` failures in a ring, so "N failures within
 * the window" is exact (a sliding window, not buckets that reset). Keys sit
 * in a hash table and in a list ordered by their last failure; when the
 * table is full the stalest key that is not locked makes room, so a flood
 * of fresh keys cannot unlock a key under attack (only when every key is
 * locked does the stalest locked one go).
 */
#include "auth/ratelimit.h"

#include <string.h>

#include "util/err.h"
#include "util/xmalloc.h"

#define KEY_MAX 256           /* longer keys are cut: they share fate, which fails closed */
#define MAX_FAILURES_MAX 1000 /* the ring is this many timestamps per key at most */
#define MIN_SLOTS 16

struct entry {
    struct entry *chain; /* next in the hash slot */
    struct entry *newer; /* towards the most recent failure */
    struct entry *older; /* towards the stalest */
    uint64_t hash;
    char *key;
    int64_t locked_until_ms; /* 0: not locked */
    int n_times;             /* failures held in the ring, up to max_failures */
    int head;                /* where the next failure's time goes */
    int64_t times[];         /* max_failures slots, wall clock ms */
};

struct auth_limiter {
    int max_failures;
    int64_t window_ms;
    int64_t lock_ms;
    size_t max_keys;

    struct entry **slots; /* n_slots, a power of two */
    size_t n_slots;
    size_t count;
    struct entry *newest; /* the list by last failure */
    struct entry *oldest;
};

static uint64_t
hash_key(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return h;
}

struct auth_limiter *
auth_limiter_new(int max_failures, int64_t window_ms, int64_t lock_ms, size_t max_keys)
{
    struct auth_limiter *l;

    /* Settings are validated where they are read; out of range here is our bug. */
    EPH_ASSERT(max_failures >= 1 && max_failures <= MAX_FAILURES_MAX);
    EPH_ASSERT(window_ms > 0 && lock_ms >= 0 && max_keys >= 1);
    l = xcalloc(1, sizeof(*l));
    l->max_failures = max_failures;
    l->window_ms = window_ms;
    l->lock_ms = lock_ms;
    l->max_keys = max_keys;
    l->n_slots = MIN_SLOTS;
    l->slots = xcalloc(l->n_slots, sizeof(*l->slots));
    return l;
}

void
auth_limiter_free(struct auth_limiter *l)
{
    struct entry *e;

    if (l == NULL)
        return;
    e = l->newest;
    while (e != NULL) {
        struct entry *older = e->older;

        free(e->key);
        free(e);
        e = older;
    }
    free(l->slots);
    free(l);
}

/* The key as stored: at most KEY_MAX bytes. */
static void
cut_key(const char *key, char out[KEY_MAX + 1])
{
    size_t n = strnlen(key, KEY_MAX);

    memcpy(out, key, n);
    out[n] = '\0';
}

static struct entry *
find(struct auth_limiter *l, const char *key)
{
    uint64_t h = hash_key(key);

    for (struct entry *e = l->slots[h & (l->n_slots - 1)]; e != NULL; e = e->chain) {
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

static void
list_unlink(struct auth_limiter *l, struct entry *e)
{
    if (e->newer != NULL)
        e->newer->older = e->older;
    else
        l->newest = e->older;
    if (e->older != NULL)
        e->older->newer = e->newer;
    else
        l->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void
list_push_newest(struct auth_limiter *l, struct entry *e)
{
    e->newer = NULL;
    e->older = l->newest;
    if (l->newest != NULL)
        l->newest->newer = e;
    else
        l->oldest = e;
    l->newest = e;
}

static void
remove_entry(struct auth_limiter *l, struct entry *e)
{
    struct entry **pp = &l->slots[e->hash & (l->n_slots - 1)];

    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    list_unlink(l, e);
    l->count--;
    free(e->key);
    free(e);
}

static void
grow(struct auth_limiter *l)
{
    size_t n_slots = l->n_slots * 2;
    struct entry **slots = xcalloc(n_slots, sizeof(*slots));

    for (size_t i = 0; i < l->n_slots; i++) {
        struct entry *e = l->slots[i];

        while (e != NULL) {
            struct entry *chain = e->chain;
            size_t at = e->hash & (n_slots - 1);

            e->chain = slots[at];
            slots[at] = e;
            e = chain;
        }
    }
    free(l->slots);
    l->slots = slots;
    l->n_slots = n_slots;
}

/* Makes room for one more key: the stalest unlocked key goes, or, if every
 * key is locked, the stalest of all. */
static void
evict_one(struct auth_limiter *l, int64_t now_ms)
{
    struct entry *victim = l->oldest;

    for (struct entry *e = l->oldest; e != NULL; e = e->newer) {
        if (e->locked_until_ms <= now_ms) {
            victim = e;
            break;
        }
    }
    if (victim != NULL)
        remove_entry(l, victim);
}

static struct entry *
add(struct auth_limiter *l, const char *key, int64_t now_ms)
{
    struct entry *e;
    size_t at;

    while (l->count >= l->max_keys)
        evict_one(l, now_ms);
    if (l->count + 1 > l->n_slots)
        grow(l);
    e = xcalloc(1, sizeof(*e) + (size_t)l->max_failures * sizeof(e->times[0]));
    e->key = xstrdup(key);
    e->hash = hash_key(key);
    at = e->hash & (l->n_slots - 1);
    e->chain = l->slots[at];
    l->slots[at] = e;
    list_push_newest(l, e);
    l->count++;
    return e;
}

bool
auth_limiter_locked(struct auth_limiter *l, const char *key, int64_t now_ms,
                    int64_t *retry_after_ms)
{
    char k[KEY_MAX + 1];
    struct entry *e;

    cut_key(key, k);
    e = find(l, k);
    if (e != NULL && e->locked_until_ms > now_ms) {
        if (retry_after_ms != NULL)
            *retry_after_ms = e->locked_until_ms - now_ms;
        return true;
    }
    if (retry_after_ms != NULL)
        *retry_after_ms = 0;
    return false;
}

bool
auth_limiter_fail(struct auth_limiter *l, const char *key, int64_t now_ms)
{
    char k[KEY_MAX + 1];
    struct entry *e;
    int64_t oldest;

    cut_key(key, k);
    e = find(l, k);
    if (e == NULL) {
        e = add(l, k, now_ms);
    } else {
        list_unlink(l, e);
        list_push_newest(l, e);
    }
    if (e->locked_until_ms > now_ms)
        return false; /* locked already: the caller should not have tried */
    e->locked_until_ms = 0;
    e->times[e->head] = now_ms;
    e->head = (e->head + 1) % l->max_failures;
    if (e->n_times < l->max_failures)
        e->n_times++;
    if (e->n_times < l->max_failures)
        return false;
    oldest = e->times[e->head]; /* the ring is full: the next slot is the oldest */
    if (now_ms - oldest >= l->window_ms)
        return false;
    /* Locking also forgets the failures: after the lock, a fresh count. */
    e->locked_until_ms = now_ms + l->lock_ms;
    e->n_times = 0;
    e->head = 0;
    return true;
}

void
auth_limiter_success(struct auth_limiter *l, const char *key)
{
    char k[KEY_MAX + 1];
    struct entry *e;

    cut_key(key, k);
    e = find(l, k);
    if (e != NULL)
        remove_entry(l, e);
}
