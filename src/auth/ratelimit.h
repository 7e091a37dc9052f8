/*
 * auth/ratelimit.h - failed sign-in attempts, counted per key ("user:alice",
 * "addr:10.0.0.7"): after `max_failures` failures within `window_ms` the key
 * is locked for `lock_ms`; a success clears the key. Memory is bounded: at
 * most `max_keys` keys, the stalest dropped first. In memory only (a
 * restart forgets). Not thread-safe: the control loop owns it.
 */
#ifndef EPH_AUTH_RATELIMIT_H
#define EPH_AUTH_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct auth_limiter;

struct auth_limiter *auth_limiter_new(int max_failures, int64_t window_ms, int64_t lock_ms,
                                      size_t max_keys);
void auth_limiter_free(struct auth_limiter *l); /* NULL is fine */

/* True if `key` is locked at now_ms; *retry_after_ms (may be NULL) then
 * tells how long still. */
bool auth_limiter_locked(struct auth_limiter *l, const char *key, int64_t now_ms,
                         int64_t *retry_after_ms);
/* Counts a failure; true if this one locked the key. */
bool auth_limiter_fail(struct auth_limiter *l, const char *key, int64_t now_ms);
/* Forgets the key's failures (a successful sign-in). */
void auth_limiter_success(struct auth_limiter *l, const char *key);

#endif
