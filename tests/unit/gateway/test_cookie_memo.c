/*
 * tests/unit/gateway/test_cookie_memo.c - the gateway's memo of verified
 * host cookies (gateway/cookie_memo.c): found only for the very same bytes
 * of cookie and Host, bounded in size with the newest entry of each set
 * kept, and a reused place never carries an older session check.
 */
#include "gateway/cookie_memo.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#define COOKIE "c2Vzc2lvbi1ncmFudC1mb3ItdGVzdA.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo"
#define HOST "web.fx.localhost:8080"

static struct gw_cookie_memo *memo;

static void
setup(void)
{
    memo = gw_cookie_memo_new();
    cr_assert_not_null(memo);
}

static void
teardown(void)
{
    gw_cookie_memo_free(memo);
    memo = NULL;
}

TestSuite(cookie_memo, .init = setup, .fini = teardown);

static struct auth_grant
grant(const char *subject, int64_t expires_ms)
{
    struct auth_grant g = {.kind = AUTH_GRANT_SESSION, .expires_ms = expires_ms};

    snprintf(g.subject, sizeof(g.subject), "%s", subject);
    return g;
}

static struct gw_memo_entry *
find(const char *value, const char *host)
{
    return gw_cookie_memo_find(memo, value, strlen(value), host, strlen(host));
}

static struct gw_memo_entry *
put(const char *value, const char *host, const struct auth_grant *g)
{
    return gw_cookie_memo_put(memo, value, strlen(value), host, strlen(host), g);
}

Test(cookie_memo, finds_what_was_put_for_the_same_bytes_only)
{
    struct auth_grant g = grant("0123456789abcdef0123456789abcdef", 5000);
    struct gw_memo_entry *e;
    char changed[] = COOKIE;

    cr_expect_null(find(COOKIE, HOST));
    e = put(COOKIE, HOST, &g);
    cr_assert_not_null(e);
    cr_expect_eq(e->checked_ms, 0, "no session lookup yet");
    cr_assert_eq(find(COOKIE, HOST), e);
    cr_expect_str_eq(e->grant.subject, g.subject);
    cr_expect_eq(e->grant.expires_ms, 5000);

    /* One byte anywhere, a prefix, a longer value, another host or port. */
    for (size_t i = 0; i < sizeof(changed) - 1; i++) {
        changed[i] ^= 1;
        cr_expect_null(find(changed, HOST), "byte %zu changed", i);
        changed[i] ^= 1;
    }
    cr_expect_null(gw_cookie_memo_find(memo, COOKIE, strlen(COOKIE) - 1, HOST, strlen(HOST)));
    cr_expect_null(find(COOKIE "A", HOST));
    cr_expect_null(find(COOKIE, "web.fx.localhost:8081"));
    cr_expect_null(find(COOKIE, "api.fx.localhost:8080"));
    cr_expect_null(find(COOKIE, "web.fx.localhost"));
    cr_expect_null(find("", ""));
}

Test(cookie_memo, does_not_keep_values_or_hosts_too_long)
{
    char value[GW_MEMO_VALUE_MAX + 2];
    char host[GW_MEMO_HOST_MAX + 2];
    struct auth_grant g = grant("s", 5000);

    memset(value, 'v', sizeof(value) - 1);
    value[sizeof(value) - 1] = '\0';
    memset(host, 'h', sizeof(host) - 1);
    host[sizeof(host) - 1] = '\0';
    cr_expect_null(put(value, HOST, &g));
    cr_expect_null(find(value, HOST));
    cr_expect_null(put(COOKIE, host, &g));
    cr_expect_null(find(COOKIE, host));
    /* At the limits exactly: kept. */
    value[GW_MEMO_VALUE_MAX] = '\0';
    host[GW_MEMO_HOST_MAX] = '\0';
    cr_expect_not_null(put(value, host, &g));
    cr_expect_not_null(find(value, host));
}

Test(cookie_memo, keeps_what_a_session_lookup_said)
{
    struct auth_grant g = grant("0123456789abcdef0123456789abcdef", 5000);
    struct gw_memo_entry *e = put(COOKIE, HOST, &g);
    char long_email[AUTH_EMAIL_MAX + 10];

    cr_assert_not_null(e);
    gw_memo_note_session(e, 3, 1234, "alice", "alice@example.com", ROLE_ADMIN, 9999);
    e = find(COOKIE, HOST);
    cr_assert_not_null(e);
    cr_expect_str_eq(gw_memo_user(e), "alice");
    cr_expect_str_eq(gw_memo_email(e), "alice@example.com");
    cr_expect_eq(e->session_role, ROLE_ADMIN);
    cr_expect_eq(e->session_expires_ms, 9999);
    cr_expect_eq(e->ix_version, 3);
    cr_expect_eq(e->checked_ms, 1234);
    cr_expect_str_eq(e->grant.subject, g.subject, "the cookie's grant is kept");

    /* A later lookup replaces it whole; names never run past their room. */
    memset(long_email, 'e', sizeof(long_email) - 1);
    long_email[sizeof(long_email) - 1] = '\0';
    gw_memo_note_session(e, 4, 2000, "b", long_email, ROLE_VIEWER, 8888);
    cr_expect_str_eq(gw_memo_user(e), "b");
    cr_expect_eq(strlen(gw_memo_email(e)), AUTH_EMAIL_MAX - 1);
    cr_expect_eq(e->session_role, ROLE_VIEWER);
    cr_assert_eq(find(COOKIE, HOST), e, "the key is untouched");
}

Test(cookie_memo, putting_the_same_cookie_again_replaces_its_entry)
{
    struct auth_grant first = grant("first", 5000), second = grant("second", 6000);
    struct gw_memo_entry *e = put(COOKIE, HOST, &first);

    cr_assert_not_null(e);
    e->checked_ms = 42;
    e = put(COOKIE, HOST, &second);
    cr_assert_not_null(e);
    cr_expect_str_eq(find(COOKIE, HOST)->grant.subject, "second");
    cr_expect_eq(e->checked_ms, 0);
}

/* 40,000 cookies: the memo holds 4,096 of them at most, the newest is
 * always found, and no entry handed out carries an older check. */
Test(cookie_memo, is_bounded_and_keeps_the_newest)
{
    enum { N = 40000 };
    char value[64];
    size_t found = 0;

    for (int i = 0; i < N; i++) {
        struct auth_grant g = grant("s", 1000 + i);
        struct gw_memo_entry *e;

        snprintf(value, sizeof(value), "cookie-%d", i);
        e = put(value, HOST, &g);
        cr_assert_not_null(e);
        cr_assert_eq(e->checked_ms, 0, "entry %d reused with an older check", i);
        cr_assert_str_empty(gw_memo_user(e));
        cr_assert_str_empty(gw_memo_email(e));
        gw_memo_note_session(e, 7, 1, "someone", "someone@example.com", ROLE_MEMBER, 9);
        cr_assert_eq(find(value, HOST), e, "the newest entry, %d, is not found", i);
    }
    for (int i = 0; i < N; i++) {
        struct gw_memo_entry *e;

        snprintf(value, sizeof(value), "cookie-%d", i);
        e = find(value, HOST);
        if (e != NULL) {
            cr_assert_eq(e->grant.expires_ms, 1000 + i);
            found++;
        }
    }
    cr_expect_eq(found, 4096, "%zu found", found);
}

Test(cookie_memo, memos_are_apart)
{
    /* One worker's memo never answers for another's. */
    struct gw_cookie_memo *other = gw_cookie_memo_new();
    char value[64];
    struct auth_grant g = grant("s", 5000);

    cr_assert_not_null(other);
    for (int i = 0; i < 64; i++) {
        snprintf(value, sizeof(value), "cookie-%d", i);
        cr_assert_not_null(gw_cookie_memo_put(other, value, strlen(value), HOST, strlen(HOST), &g));
    }
    for (int i = 0; i < 64; i++) {
        snprintf(value, sizeof(value), "cookie-%d", i);
        cr_expect_null(find(value, HOST));
        cr_expect_not_null(gw_cookie_memo_find(other, value, strlen(value), HOST, strlen(HOST)));
    }
    gw_cookie_memo_free(other);
    gw_cookie_memo_free(NULL);
}

/* The hash sees a cookie's last 16 bytes and the lengths only: cookies that
 * share those (and a host of the same length) land in one set, and are
 * still told apart, whole, as are hosts of the same length. */
Test(cookie_memo, cookies_alike_at_the_end_are_told_apart)
{
    const char *tail = ".QUJDREVGR0hJSktMTU5PUFFS";
    char a[96], b[96];
    struct auth_grant ga = grant("a", 5000), gb = grant("b", 6000);

    snprintf(a, sizeof(a), "first-payload%s", tail);
    snprintf(b, sizeof(b), "other-payload%s", tail);
    cr_assert_eq(strlen(a), strlen(b));
    cr_assert_not_null(put(a, HOST, &ga));
    cr_assert_not_null(put(b, HOST, &gb));
    cr_assert_not_null(find(a, HOST));
    cr_assert_not_null(find(b, HOST));
    cr_expect_str_eq(find(a, HOST)->grant.subject, "a");
    cr_expect_str_eq(find(b, HOST)->grant.subject, "b");
    cr_expect_null(find(a, "web.fx.localhost:8081"), "a host of the same length");
    cr_expect_null(find(tail, HOST));
}
