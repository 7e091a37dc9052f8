/*
 * tests/unit/auth/test_ratelimit.c - failed sign-ins: N failures within the
 * window lock a key for lock_ms, older failures do not count, a success
 * clears the key, and the number of keys stays bounded.
 */
#include "auth/ratelimit.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define NOW 1700000000000LL
#define WINDOW 60000LL
#define LOCK 300000LL

Test(ratelimit, locks_after_max_failures_within_the_window)
{
    struct auth_limiter *l = auth_limiter_new(3, WINDOW, LOCK, 100);
    int64_t retry = -1;

    cr_expect_not(auth_limiter_locked(l, "user:alice", NOW, &retry));
    cr_expect_eq(retry, 0);
    cr_expect_not(auth_limiter_fail(l, "user:alice", NOW));
    cr_expect_not(auth_limiter_fail(l, "user:alice", NOW + 1000));
    cr_expect_not(auth_limiter_locked(l, "user:alice", NOW + 1000, NULL));
    cr_expect(auth_limiter_fail(l, "user:alice", NOW + 2000), "the third one locks");
    cr_expect(auth_limiter_locked(l, "user:alice", NOW + 2000, &retry));
    cr_expect_eq(retry, LOCK);
    cr_expect(auth_limiter_locked(l, "user:alice", NOW + 3000, &retry));
    cr_expect_eq(retry, LOCK - 1000);
    cr_expect_not(auth_limiter_locked(l, "user:bob", NOW + 3000, NULL), "keys are separate");
    cr_expect_not(auth_limiter_fail(l, "user:alice", NOW + 4000), "locked already");
    auth_limiter_free(l);
}

Test(ratelimit, unlocks_after_lock_ms_with_a_fresh_count)
{
    struct auth_limiter *l = auth_limiter_new(2, WINDOW, LOCK, 100);
    int64_t retry = -1;

    auth_limiter_fail(l, "addr:10.0.0.7", NOW);
    cr_assert(auth_limiter_fail(l, "addr:10.0.0.7", NOW + 1));
    cr_expect(auth_limiter_locked(l, "addr:10.0.0.7", NOW + LOCK, &retry));
    cr_expect_eq(retry, 1);
    cr_expect_not(auth_limiter_locked(l, "addr:10.0.0.7", NOW + 1 + LOCK, &retry));
    cr_expect_eq(retry, 0);
    cr_expect_not(auth_limiter_fail(l, "addr:10.0.0.7", NOW + 2 + LOCK), "one failure again");
    cr_expect(auth_limiter_fail(l, "addr:10.0.0.7", NOW + 3 + LOCK));
    auth_limiter_free(l);
}

Test(ratelimit, failures_older_than_the_window_do_not_count)
{
    struct auth_limiter *l = auth_limiter_new(3, WINDOW, LOCK, 100);

    cr_expect_not(auth_limiter_fail(l, "k", NOW));
    cr_expect_not(auth_limiter_fail(l, "k", NOW + 30000));
    /* Three failures, but the first is a full window before this one. */
    cr_expect_not(auth_limiter_fail(l, "k", NOW + WINDOW));
    cr_expect_not(auth_limiter_locked(l, "k", NOW + WINDOW, NULL));
    /* The window slides: the last three are within 60 s. */
    cr_expect(auth_limiter_fail(l, "k", NOW + WINDOW + 1));
    auth_limiter_free(l);
}

Test(ratelimit, success_clears_the_failures)
{
    struct auth_limiter *l = auth_limiter_new(3, WINDOW, LOCK, 100);

    auth_limiter_fail(l, "user:alice", NOW);
    auth_limiter_fail(l, "user:alice", NOW + 1);
    auth_limiter_success(l, "user:alice");
    cr_expect_not(auth_limiter_fail(l, "user:alice", NOW + 2));
    cr_expect_not(auth_limiter_fail(l, "user:alice", NOW + 3));
    cr_expect(auth_limiter_fail(l, "user:alice", NOW + 4));
    auth_limiter_success(l, "user:nobody"); /* unknown keys are fine */
    auth_limiter_free(l);
}

Test(ratelimit, one_failure_locks_when_max_is_one)
{
    struct auth_limiter *l = auth_limiter_new(1, WINDOW, LOCK, 10);

    cr_expect(auth_limiter_fail(l, "k", NOW));
    cr_expect(auth_limiter_locked(l, "k", NOW, NULL));
    auth_limiter_free(l);
}

Test(ratelimit, keeps_at_most_max_keys_dropping_the_stalest_first)
{
    struct auth_limiter *l = auth_limiter_new(2, WINDOW, LOCK, 4);
    char key[32];

    /* "a" and "b" have one failure each, "a" the older. */
    auth_limiter_fail(l, "a", NOW);
    auth_limiter_fail(l, "b", NOW + 1);
    auth_limiter_fail(l, "c", NOW + 2);
    auth_limiter_fail(l, "d", NOW + 3);
    auth_limiter_fail(l, "e", NOW + 4); /* drops "a" */
    cr_expect_not(auth_limiter_fail(l, "a", NOW + 5), "a was forgotten: one failure");
    /* That dropped "b"; "c" still has its failure. */
    cr_expect(auth_limiter_fail(l, "c", NOW + 6));
    auth_limiter_free(l);

    /* Many keys: memory stays bounded, and the newest keys still count. */
    l = auth_limiter_new(2, WINDOW, LOCK, 100);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof(key), "addr:%d", i);
        auth_limiter_fail(l, key, NOW + i);
    }
    cr_expect(auth_limiter_fail(l, "addr:9999", NOW + 10000));
    cr_expect_not(auth_limiter_fail(l, "addr:0", NOW + 10000), "long forgotten");
    auth_limiter_free(l);
}

Test(ratelimit, a_flood_of_new_keys_does_not_unlock_a_locked_one)
{
    struct auth_limiter *l = auth_limiter_new(2, WINDOW, LOCK, 8);
    char key[32];

    auth_limiter_fail(l, "user:alice", NOW);
    cr_assert(auth_limiter_fail(l, "user:alice", NOW + 1));
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "user:x%d", i);
        auth_limiter_fail(l, key, NOW + 2 + i);
    }
    cr_expect(auth_limiter_locked(l, "user:alice", NOW + 2000, NULL));
    auth_limiter_free(l);
}

Test(ratelimit, cuts_very_long_keys)
{
    struct auth_limiter *l = auth_limiter_new(2, WINDOW, LOCK, 8);
    char a[2000];
    char b[2000];

    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[1500] = 'y';
    auth_limiter_fail(l, a, NOW);
    cr_expect(auth_limiter_fail(l, b, NOW + 1), "same first 256 bytes: same key");
    auth_limiter_free(l);
    auth_limiter_free(NULL);
}
