/*
 * tests/unit/auth/test_index.c - the sign-in index: session cookies and ids,
 * tokens and their role caps, users removed or changed, ticket nonces,
 * usage reports, expiry, and readers on several threads while the control
 * loop changes the tables.
 */
#include "auth/index.h"

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "auth/auth.h"

#define NOW 1700000000000LL
#define HOUR 3600000LL
#define IDLE (2 * HOUR)

#define SID "0123456789abcdef0123456789abcdef"
#define SECRET "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 43 characters */
#define COOKIE SID "." SECRET
#define NONCE "00112233445566778899aabbccddeeff"

static struct auth_index *ix;

static void
put_user(const char *name, enum role role)
{
    struct auth_user_rec u = {.name = name, .email = "x@example.com", .role = role};

    auth_index_put_user(ix, &u);
}

/* A session of `user` whose secret is `secret`, last seen at NOW. */
static void
put_session(const char *id, const char *secret, const char *user, int64_t expires_ms)
{
    char hash[AUTH_HASH_HEX];
    struct auth_session_rec s = {
        .id = id,
        .secret_hash = hash,
        .user = user,
        .created_ms = NOW - HOUR,
        .last_seen_ms = NOW,
        .expires_ms = expires_ms,
    };

    auth_token_hash(secret, hash);
    auth_index_put_session(ix, &s);
}

static void
put_token(int64_t id, const char *token, const char *user, enum role cap, int64_t expires_ms)
{
    char hash[AUTH_HASH_HEX];
    struct auth_token_rec t = {
        .id = id,
        .name = "ci",
        .hash = hash,
        .user = user,
        .role_cap = cap,
        .expires_ms = expires_ms,
    };

    auth_token_hash(token, hash);
    auth_index_put_token(ix, &t);
}

static bool
check_cookie(const char *value, int64_t now_ms, struct auth_who *who)
{
    return auth_index_check_session_cookie(ix, value, strlen(value), now_ms, who);
}

static void
setup(void)
{
    ix = auth_index_new(IDLE);
    put_user("alice", ROLE_MEMBER);
}

static void
teardown(void)
{
    auth_index_free(ix);
    ix = NULL;
}

TestSuite(index, .init = setup, .fini = teardown);

/* ------------------------------------------------------------- sessions */

Test(index, session_cookie_with_the_right_secret_names_its_user)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_expect_eq(auth_index_sessions(ix), 1);
    cr_assert(check_cookie(COOKIE, NOW + 1000, &who));
    cr_expect_str_eq(who.user, "alice");
    cr_expect_str_eq(who.email, "x@example.com");
    cr_expect_eq(who.role, ROLE_MEMBER);
    cr_expect_str_eq(who.session_id, SID);
    cr_expect_eq(who.session_expires_ms, NOW + 24 * HOUR);
    cr_expect_eq(who.token_id, 0);
    cr_expect_str_eq(who.token_name, "");
}

static const char *bad_cookies[] = {
    SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB", /* wrong secret */
    "0123456789abcdef0123456789abcdee." SECRET,         /* unknown id */
    "0123456789ABCDEF0123456789ABCDEF." SECRET,         /* upper-case id */
    SID "." SECRET "A",                                 /* secret too long */
    SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  /* too short */
    SID "-" SECRET,                                     /* separator */
    SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", /* padding */
    SID ".AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+", /* standard alphabet */
    "0123456789abcdef0123456789abcdef0." SECRET,        /* id too long */
    "",
    SID,
    SID ".",
};

Test(index, refuses_wrong_secrets_unknown_ids_and_malformed_cookies)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    for (size_t i = 0; i < sizeof(bad_cookies) / sizeof(bad_cookies[0]); i++) {
        cr_expect_not(check_cookie(bad_cookies[i], NOW, &who), "case %zu", i);
        cr_expect_str_eq(who.user, "", "case %zu", i);
    }
    cr_expect_not(auth_index_check_session_cookie(ix, NULL, 0, NOW, &who));
    /* Only the first len bytes count: a right cookie cut short is wrong. */
    cr_expect_not(auth_index_check_session_cookie(ix, COOKIE, strlen(COOKIE) - 1, NOW, &who));
    cr_expect(check_cookie(COOKIE, NOW, &who));
}

Test(index, refuses_sessions_at_their_end)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + HOUR);
    cr_expect(check_cookie(COOKIE, NOW + HOUR - 1, &who));
    cr_expect_not(check_cookie(COOKIE, NOW + HOUR, &who));
    cr_expect_not(auth_index_check_session_id(ix, SID, NOW + HOUR, &who));
}

Test(index, refuses_idle_sessions_and_use_keeps_them_alive)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_expect(check_cookie(COOKIE, NOW + IDLE - 1, &who), "used just in time");
    cr_expect(check_cookie(COOKIE, NOW + 2 * IDLE - 2, &who), "idle counts from the last use");
    cr_expect_not(check_cookie(COOKIE, NOW + 3 * IDLE, &who));
    cr_expect_not(auth_index_check_session_id(ix, SID, NOW + 3 * IDLE, &who));
}

Test(index, idle_limit_is_exact)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_expect_not(check_cookie(COOKIE, NOW + IDLE, &who));
}

Test(index, removing_a_user_ends_their_sessions_and_tokens)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    put_token(7, "eph_alice", "alice", ROLE_ADMIN, 0);
    put_user("bob", ROLE_VIEWER);
    auth_index_remove_user(ix, "alice");
    cr_expect_not(check_cookie(COOKIE, NOW, &who));
    cr_expect_not(auth_index_check_token(ix, "eph_alice", NOW, &who));
    cr_expect_eq(auth_index_sessions(ix), 0);
    cr_expect_eq(auth_index_tokens(ix), 0);

    /* A session for a user who is not there is not taken in. */
    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_expect_eq(auth_index_sessions(ix), 0);
    /* And a user coming back does not revive old sessions. */
    put_user("alice", ROLE_MEMBER);
    cr_expect_not(check_cookie(COOKIE, NOW, &who));
}

Test(index, a_changed_role_applies_at_once)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    put_token(7, "eph_alice", "alice", ROLE_ADMIN, 0);
    put_user("alice", ROLE_ADMIN);
    cr_assert(check_cookie(COOKIE, NOW, &who));
    cr_expect_eq(who.role, ROLE_ADMIN);
    cr_assert(auth_index_check_token(ix, "eph_alice", NOW, &who));
    cr_expect_eq(who.role, ROLE_ADMIN);
    put_user("alice", ROLE_VIEWER);
    cr_assert(check_cookie(COOKIE, NOW, &who));
    cr_expect_eq(who.role, ROLE_VIEWER);
    cr_assert(auth_index_check_token(ix, "eph_alice", NOW, &who));
    cr_expect_eq(who.role, ROLE_VIEWER);
}

Test(index, session_id_alone_is_checked_for_liveness)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_assert(auth_index_check_session_id(ix, SID, NOW, &who));
    cr_expect_str_eq(who.user, "alice");
    cr_expect_str_eq(who.session_id, SID);
    cr_expect_not(auth_index_check_session_id(ix, "0123456789abcdef0123456789abcdee", NOW, &who));
    cr_expect_not(auth_index_check_session_id(ix, SID "0", NOW, &who));
    cr_expect_not(auth_index_check_session_id(ix, "", NOW, &who));
    cr_expect_not(auth_index_check_session_id(ix, NULL, NOW, &who));
    auth_index_remove_session(ix, SID);
    cr_expect_not(auth_index_check_session_id(ix, SID, NOW, &who));
    cr_expect_eq(auth_index_sessions(ix), 0);
}

/* The version lets the gateway remember a session check: every change
 * moves it on, a check does not. */
Test(index, version_moves_on_with_every_change_and_not_with_checks)
{
    struct auth_who who;
    uint64_t v = auth_index_version(ix);

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    cr_assert_neq(auth_index_version(ix), v);
    v = auth_index_version(ix);
    cr_assert(auth_index_check_session_id(ix, SID, NOW, &who));
    cr_assert(check_cookie(COOKIE, NOW, &who));
    cr_expect_not(auth_index_check_session_id(ix, "0123456789abcdef0123456789abcdee", NOW, &who));
    cr_expect_eq(auth_index_version(ix), v, "a check changed the version");

    put_user("alice", ROLE_VIEWER); /* a role change */
    cr_assert_neq(auth_index_version(ix), v);
    v = auth_index_version(ix);
    put_token(7, "eph_alice", "alice", ROLE_ADMIN, 0);
    cr_assert_neq(auth_index_version(ix), v);
    v = auth_index_version(ix);
    auth_index_remove_token(ix, 7);
    cr_assert_neq(auth_index_version(ix), v);
    v = auth_index_version(ix);
    auth_index_remove_session(ix, SID); /* a sign-out */
    cr_assert_neq(auth_index_version(ix), v);
    v = auth_index_version(ix);
    auth_index_remove_user(ix, "alice");
    cr_assert_neq(auth_index_version(ix), v);
}

Test(index, recheck_interval_is_a_second_or_a_quarter_of_the_idle_limit)
{
    struct auth_index *other;

    cr_expect_eq(auth_index_recheck_ms(ix), 1000); /* idle 2 h */
    other = auth_index_new(0);
    cr_expect_eq(auth_index_recheck_ms(other), 1000);
    auth_index_free(other);
    other = auth_index_new(2000);
    cr_expect_eq(auth_index_recheck_ms(other), 500);
    auth_index_free(other);
    other = auth_index_new(3);
    cr_expect_eq(auth_index_recheck_ms(other), 0);
    auth_index_free(other);
}

Test(index, putting_a_session_again_replaces_it)
{
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    put_session(SID, "BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", "alice", NOW + 24 * HOUR);
    cr_expect_eq(auth_index_sessions(ix), 1);
    cr_expect_not(check_cookie(COOKIE, NOW, &who));
    cr_expect(check_cookie(SID ".BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB", NOW, &who));
}

/* ------------------------------------------------------------- tokens */

Test(index, tokens_act_with_the_lower_of_user_role_and_cap)
{
    struct auth_who who;

    put_user("root", ROLE_ADMIN);
    put_token(1, "eph_capped", "root", ROLE_VIEWER, 0);
    put_token(2, "eph_full", "root", ROLE_ADMIN, 0);
    put_token(3, "eph_member_cap_admin", "alice", ROLE_ADMIN, 0);
    cr_expect_eq(auth_index_tokens(ix), 3);

    cr_assert(auth_index_check_token(ix, "eph_capped", NOW, &who));
    cr_expect_str_eq(who.user, "root");
    cr_expect_eq(who.role, ROLE_VIEWER);
    cr_expect_eq(who.token_id, 1);
    cr_expect_str_eq(who.token_name, "ci");
    cr_expect_str_eq(who.session_id, "");
    cr_assert(auth_index_check_token(ix, "eph_full", NOW, &who));
    cr_expect_eq(who.role, ROLE_ADMIN);
    cr_assert(auth_index_check_token(ix, "eph_member_cap_admin", NOW, &who));
    cr_expect_eq(who.role, ROLE_MEMBER);
}

Test(index, refuses_unknown_expired_and_removed_tokens)
{
    struct auth_who who;
    char huge[1000];

    put_token(1, "eph_a", "alice", ROLE_ADMIN, NOW + HOUR);
    cr_expect(auth_index_check_token(ix, "eph_a", NOW + HOUR - 1, &who));
    cr_expect_not(auth_index_check_token(ix, "eph_a", NOW + HOUR, &who));
    cr_expect_not(auth_index_check_token(ix, "eph_b", NOW, &who));
    cr_expect_not(auth_index_check_token(ix, "", NOW, &who));
    cr_expect_not(auth_index_check_token(ix, NULL, NOW, &who));
    memset(huge, 'a', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    cr_expect_not(auth_index_check_token(ix, huge, NOW, &who));
    auth_index_remove_token(ix, 1);
    cr_expect_not(auth_index_check_token(ix, "eph_a", NOW, &who));
    cr_expect_eq(auth_index_tokens(ix), 0);
}

Test(index, putting_a_token_again_replaces_it_by_id)
{
    struct auth_who who;

    put_token(1, "eph_old", "alice", ROLE_ADMIN, 0);
    put_token(1, "eph_new", "alice", ROLE_VIEWER, 0);
    cr_expect_eq(auth_index_tokens(ix), 1);
    cr_expect_not(auth_index_check_token(ix, "eph_old", NOW, &who));
    cr_assert(auth_index_check_token(ix, "eph_new", NOW, &who));
    cr_expect_eq(who.role, ROLE_VIEWER);
}

/* ------------------------------------------------------------- tickets */

Test(index, claims_a_nonce_once)
{
    cr_expect(auth_index_ticket_claim(ix, NONCE, NOW + 60000, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, NONCE, NOW + 60000, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, NONCE, NOW + 60000, NOW + 1000));
    cr_expect(auth_index_ticket_claim(ix, "00112233445566778899aabbccddeef0", NOW + 60000, NOW));
}

Test(index, refuses_expired_and_malformed_nonces)
{
    cr_expect_not(auth_index_ticket_claim(ix, NONCE, NOW, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, "0011", NOW + 60000, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, NONCE "0", NOW + 60000, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, "00112233445566778899AABBCCDDEEFF", NOW + 1, NOW));
    cr_expect_not(auth_index_ticket_claim(ix, NULL, NOW + 60000, NOW));
}

Test(index, expire_forgets_claimed_nonces_after_their_ticket_ends)
{
    cr_expect(auth_index_ticket_claim(ix, NONCE, NOW + 60000, NOW));
    auth_index_expire(ix, NOW + 60000, NULL, NULL);
    /* Forgotten, but the ticket is expired by then and refused anyway. */
    cr_expect_not(auth_index_ticket_claim(ix, NONCE, NOW + 60000, NOW + 60000));
    cr_expect(auth_index_ticket_claim(ix, NONCE, NOW + 120000, NOW + 60000));
}

Test(index, nonce_set_is_bounded_and_fails_closed, .timeout = 60)
{
    char nonce[33];
    int i;

    for (i = 0; i < 100000; i++) {
        snprintf(nonce, sizeof(nonce), "%032x", i);
        cr_assert(auth_index_ticket_claim(ix, nonce, NOW + 60000, NOW), "nonce %d", i);
    }
    snprintf(nonce, sizeof(nonce), "%032x", i);
    cr_expect_not(auth_index_ticket_claim(ix, nonce, NOW + 60000, NOW), "full");
    /* Once the claimed tickets have expired, they make room. */
    cr_expect(auth_index_ticket_claim(ix, nonce, NOW + 120000, NOW + 60000));
    cr_expect_not(auth_index_ticket_claim(ix, nonce, NOW + 120000, NOW + 60000));
}

/* ------------------------------------------------------------- upkeep */

struct seen {
    int n;
    char kind[8];
    char id[8][AUTH_SESSION_ID_HEX];
    int64_t at[8];
};

static void
on_usage(void *arg, char kind, const char *id, int64_t last_used_ms)
{
    struct seen *s = arg;

    cr_assert_lt(s->n, 8);
    s->kind[s->n] = kind;
    snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
    s->at[s->n] = last_used_ms;
    s->n++;
}

Test(index, take_usage_reports_only_what_was_used_since_last_time)
{
    struct seen seen = {0};
    struct auth_who who;

    put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
    put_token(9, "eph_a", "alice", ROLE_ADMIN, 0);
    auth_index_take_usage(ix, on_usage, &seen);
    cr_expect_eq(seen.n, 0, "fresh from the store: nothing to write back");

    cr_assert(check_cookie(COOKIE, NOW + 5000, &who));
    cr_assert(auth_index_check_token(ix, "eph_a", NOW + 6000, &who));
    auth_index_take_usage(ix, on_usage, &seen);
    cr_assert_eq(seen.n, 2);
    for (int i = 0; i < 2; i++) {
        if (seen.kind[i] == 's') {
            cr_expect_str_eq(seen.id[i], SID);
            cr_expect_eq(seen.at[i], NOW + 5000);
        } else {
            cr_expect_eq(seen.kind[i], 't');
            cr_expect_str_eq(seen.id[i], "9");
            cr_expect_eq(seen.at[i], NOW + 6000);
        }
    }

    seen.n = 0;
    auth_index_take_usage(ix, on_usage, &seen);
    cr_expect_eq(seen.n, 0, "nothing new");

    /* An older clock reading never moves the use back. */
    cr_assert(check_cookie(COOKIE, NOW + 4000, &who));
    auth_index_take_usage(ix, on_usage, &seen);
    cr_expect_eq(seen.n, 0);
    cr_assert(check_cookie(COOKIE, NOW + 7000, &who));
    auth_index_take_usage(ix, on_usage, &seen);
    cr_assert_eq(seen.n, 1);
    cr_expect_eq(seen.kind[0], 's');
    cr_expect_eq(seen.at[0], NOW + 7000);
}

static void
on_expired(void *arg, const char *session_id)
{
    on_usage(arg, 's', session_id, 0);
}

Test(index, expire_removes_ended_and_idle_sessions_and_names_them)
{
    struct seen seen = {0};
    struct auth_who who;
    const char *ended = "00000000000000000000000000000001";
    const char *idle = "00000000000000000000000000000002";
    const char *live = "00000000000000000000000000000003";

    put_session(ended, SECRET, "alice", NOW + HOUR);
    put_session(idle, SECRET, "alice", NOW + 24 * HOUR);
    put_session(live, SECRET, "alice", NOW + 24 * HOUR);
    cr_assert(auth_index_check_session_id(ix, live, NOW + IDLE - 1, &who));
    auth_index_expire(ix, NOW + IDLE, on_expired, &seen);
    cr_assert_eq(seen.n, 2);
    cr_expect((strcmp(seen.id[0], ended) == 0 && strcmp(seen.id[1], idle) == 0) ||
              (strcmp(seen.id[0], idle) == 0 && strcmp(seen.id[1], ended) == 0));
    cr_expect_eq(auth_index_sessions(ix), 1);
    cr_expect(auth_index_check_session_id(ix, live, NOW + IDLE, &who));

    seen.n = 0;
    auth_index_expire(ix, NOW + IDLE, on_expired, &seen);
    cr_expect_eq(seen.n, 0);
    auth_index_expire(ix, NOW + 30 * HOUR, NULL, NULL);
    cr_expect_eq(auth_index_sessions(ix), 0);
}

Test(index, holds_many_sessions)
{
    char id[AUTH_SESSION_ID_HEX];
    struct auth_who who;

    for (int i = 0; i < 5000; i++) {
        snprintf(id, sizeof(id), "%032x", i);
        put_session(id, SECRET, "alice", NOW + HOUR);
    }
    cr_expect_eq(auth_index_sessions(ix), 5000);
    for (int i = 0; i < 5000; i += 97) {
        snprintf(id, sizeof(id), "%032x", i);
        cr_expect(auth_index_check_session_id(ix, id, NOW, &who), "%s", id);
    }
    for (int i = 0; i < 5000; i += 2) {
        snprintf(id, sizeof(id), "%032x", i);
        auth_index_remove_session(ix, id);
    }
    cr_expect_eq(auth_index_sessions(ix), 2500);
}

/* ------------------------------------------------------------- threads */

struct reader {
    atomic_bool *stop;
    int hits;
    int torn; /* answers that mixed two states: asserted on the main thread */
};

static void *
read_loop(void *arg)
{
    struct reader *r = arg;
    struct auth_who who;
    int64_t now = NOW;

    while (!atomic_load(r->stop)) {
        now++;
        if (check_cookie(COOKIE, now, &who)) {
            /* Whatever the writer is doing, an answer is whole. */
            if (strcmp(who.user, "alice") != 0 || strcmp(who.session_id, SID) != 0 ||
                (who.role != ROLE_MEMBER && who.role != ROLE_ADMIN))
                r->torn++;
            r->hits++;
        }
        (void)auth_index_check_token(ix, "eph_t", now, &who);
        (void)auth_index_check_session_id(ix, SID, now, &who);
    }
    return NULL;
}

Test(index, readers_on_four_threads_while_the_control_loop_writes, .timeout = 60)
{
    enum { READERS = 4, ROUNDS = 2000 };
    pthread_t th[READERS];
    struct reader r[READERS];
    atomic_bool stop = false;
    struct seen seen;

    for (int i = 0; i < READERS; i++) {
        r[i] = (struct reader){.stop = &stop};
        cr_assert_eq(pthread_create(&th[i], NULL, read_loop, &r[i]), 0);
    }
    for (int round = 0; round < ROUNDS; round++) {
        put_session(SID, SECRET, "alice", NOW + 24 * HOUR);
        put_token(1, "eph_t", "alice", ROLE_VIEWER, 0);
        put_user("alice", round % 2 ? ROLE_ADMIN : ROLE_MEMBER);
        seen.n = 0;
        auth_index_take_usage(ix, on_usage, &seen);
        auth_index_remove_session(ix, SID);
        if (round % 10 == 0) {
            auth_index_remove_user(ix, "alice");
            put_user("alice", ROLE_MEMBER);
        }
        auth_index_expire(ix, NOW, NULL, NULL);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < READERS; i++) {
        cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_expect_eq(r[i].torn, 0, "reader %d", i);
    }
}
