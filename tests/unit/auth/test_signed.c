/*
 * tests/unit/auth/test_signed.c - host cookies, tickets and share links: they
 * round-trip, and any change, truncation, other key, other host, other kind
 * or passed expiry is refused. Payloads signed with the right key but
 * holding bad fields (forged here with the module's own helpers) are
 * refused too: the checks after the MAC are not left to the MAC. Links and
 * link cookies carry the time the link was made; those of the format
 * before, without it, are refused, while session cookies of that format
 * still work.
 */
#include "auth/signed.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

#define NOW 1700000000000LL
#define LATER (NOW + 60000)
#define ISSUED (NOW - 5000) /* when the test's links were made */

static struct auth_key key;
static struct auth_key other_key; /* differs from key in its last byte */

static void
set_keys(void)
{
    for (size_t i = 0; i < AUTH_KEY_BYTES; i++)
        key.bytes[i] = other_key.bytes[i] = (unsigned char)(i * 7 + 1);
    other_key.bytes[AUTH_KEY_BYTES - 1] ^= 1;
}

TestSuite(signed, .init = set_keys);

#define SID "0123456789abcdef0123456789abcdef"
#define NONCE "00112233445566778899aabbccddeeff"

/* Signs `payload` for `purpose` as the module does, with any content. */
static void
forge(const struct auth_key *k, char purpose, const char *payload, char *out)
{
    char data[2048];
    unsigned char mac[32];
    size_t n = strlen(payload);
    size_t o;

    data[0] = purpose;
    data[1] = '\n';
    memcpy(data + 2, payload, n);
    auth_hmac_sha256(k->bytes, sizeof(k->bytes), data, n + 2, mac);
    out[0] = purpose;
    out[1] = '1';
    out[2] = '.';
    o = 3 + auth_b64url_encode(payload, n, out + 3);
    out[o++] = '.';
    auth_b64url_encode(mac, sizeof(mac), out + o);
}

static void
make_cookie(char out[AUTH_SIGNED_MAX])
{
    struct auth_grant g = {.kind = AUTH_GRANT_SESSION, .subject = SID, .expires_ms = LATER};

    cr_assert_eq(auth_host_cookie_make(&key, &g, "Shop-1.Preview.Example.com:8443", out), 0);
}

static void
make_ticket(char out[AUTH_SIGNED_MAX], struct auth_ticket *t)
{
    memset(t, 0, sizeof(*t));
    strcpy(t->session_id, SID);
    strcpy(t->host, "shop-1.preview.example.com");
    strcpy(t->rd, "/cart?item=3&x=%2F");
    t->expires_ms = LATER;
    cr_assert_eq(auth_ticket_make(&key, t, out), 0);
}

static void
make_link(char out[AUTH_SIGNED_MAX])
{
    struct auth_link l = {
        .env_id = 42, .env_name = "shop-1", .expires_ms = LATER, .issued_ms = ISSUED};

    cr_assert_eq(auth_link_make(&key, &l, out), 0);
}

static bool
cookie_ok(const char *s, size_t len)
{
    struct auth_grant g;

    return auth_host_cookie_verify(&key, s, len, "shop-1.preview.example.com", 26, NOW, &g);
}

static bool
ticket_ok(const char *s, size_t len)
{
    struct auth_ticket t;

    return auth_ticket_verify(&key, s, len, "shop-1.preview.example.com", 26, NOW, &t);
}

static bool
link_ok(const char *s, size_t len)
{
    struct auth_link l;

    return auth_link_verify(&key, s, len, NOW, &l);
}

/* ------------------------------------------------------------- round trips */

Test(signed, host_cookie_round_trips_for_the_normalized_host)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g;

    make_cookie(s);
    cr_expect_eq(strncmp(s, "c1.", 3), 0, "%s", s);
    cr_assert(
        auth_host_cookie_verify(&key, s, strlen(s), "SHOP-1.preview.example.com:443", 30, NOW, &g));
    cr_expect_eq(g.kind, AUTH_GRANT_SESSION);
    cr_expect_str_eq(g.subject, SID);
    cr_expect_eq(g.expires_ms, LATER);
    cr_expect_eq(g.issued_ms, 0, "a session's cookie carries no link time");
}

Test(signed, link_grant_cookie_round_trips)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g = {
        .kind = AUTH_GRANT_LINK, .subject = "42", .expires_ms = LATER, .issued_ms = ISSUED};

    cr_assert_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), 0);
    memset(&g, 0, sizeof(g));
    cr_assert(auth_host_cookie_verify(&key, s, strlen(s), "a.example.com", 13, NOW, &g));
    cr_expect_eq(g.kind, AUTH_GRANT_LINK);
    cr_expect_str_eq(g.subject, "42");
    cr_expect_eq(g.expires_ms, LATER);
    cr_expect_eq(g.issued_ms, ISSUED, "the link's time, for withdrawals");

    /* A link grant's subject is an environment id: decimal only. */
    strcpy(g.subject, "4x");
    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), EPH_EINVAL);
    strcpy(g.subject, "42");
    g.issued_ms = -1;
    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), EPH_EINVAL);
}

Test(signed, ticket_round_trips_with_a_fresh_nonce)
{
    char s[AUTH_SIGNED_MAX];
    char s2[AUTH_SIGNED_MAX];
    struct auth_ticket t;
    struct auth_ticket t2;
    struct auth_ticket got;

    make_ticket(s, &t);
    make_ticket(s2, &t2);
    cr_expect_eq(strlen(t.nonce), 32);
    cr_expect_str_neq(t.nonce, t2.nonce);
    cr_expect_str_neq(s, s2);
    cr_assert(
        auth_ticket_verify(&key, s, strlen(s), "shop-1.preview.example.com:80", 29, NOW, &got));
    cr_expect_str_eq(got.session_id, SID);
    cr_expect_str_eq(got.host, "shop-1.preview.example.com");
    cr_expect_str_eq(got.rd, "/cart?item=3&x=%2F");
    cr_expect_str_eq(got.nonce, t.nonce);
    cr_expect_eq(got.expires_ms, LATER);
}

Test(signed, ticket_make_normalizes_the_host_it_is_given)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_ticket t = {.session_id = SID, .host = "A.Example.COM:8080", .rd = "/"};

    t.expires_ms = LATER;
    cr_assert_eq(auth_ticket_make(&key, &t, s), 0);
    cr_expect_str_eq(t.host, "a.example.com");
}

Test(signed, link_round_trips)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_link l;

    make_link(s);
    cr_expect_eq(strncmp(s, "l1.", 3), 0, "%s", s);
    cr_assert(auth_link_verify(&key, s, strlen(s), NOW, &l));
    cr_expect_eq(l.env_id, 42);
    cr_expect_str_eq(l.env_name, "shop-1");
    cr_expect_eq(l.expires_ms, LATER);
    cr_expect_eq(l.issued_ms, ISSUED);
}

Test(signed, refuses_links_and_link_cookies_without_their_time_but_not_old_session_cookies)
{
    char s[4096];
    struct auth_grant g;
    struct auth_link l;

    /* As the format before withdrawals were kept wrote them. */
    forge(&key, 'l', "42\nshop-1\n1700000060000", s);
    cr_expect_not(auth_link_verify(&key, s, strlen(s), NOW, &l), "an old link");
    forge(&key, 'c', "l\n42\n1700000060000\nshop-1.preview.example.com", s);
    cr_expect_not(cookie_ok(s, strlen(s)), "an old link cookie");
    forge(&key, 'c', "s\n" SID "\n1700000060000\nshop-1.preview.example.com", s);
    cr_assert(
        auth_host_cookie_verify(&key, s, strlen(s), "shop-1.preview.example.com", 26, NOW, &g),
        "a session cookie is unchanged");
    cr_expect_eq(g.kind, AUTH_GRANT_SESSION);
    cr_expect_str_eq(g.subject, SID);
}

/* ------------------------------------------------------------- refusals */

Test(signed, refuses_every_single_character_change)
{
    char s[3][AUTH_SIGNED_MAX];
    struct auth_ticket t;
    bool (*ok[3])(const char *, size_t) = {cookie_ok, ticket_ok, link_ok};

    make_cookie(s[0]);
    make_ticket(s[1], &t);
    make_link(s[2]);
    for (int k = 0; k < 3; k++) {
        size_t len = strlen(s[k]);
        char m[AUTH_SIGNED_MAX + 1];

        cr_assert(ok[k](s[k], len), "kind %d", k);
        for (size_t i = 0; i < len; i++) {
            /* Substitutions with every other byte value. */
            for (int c = 0; c < 256; c++) {
                if (c == (unsigned char)s[k][i])
                    continue;
                memcpy(m, s[k], len);
                m[i] = (char)c;
                cr_assert_not(ok[k](m, len), "kind %d pos %zu byte %d", k, i, c);
            }
            /* Deletion. */
            memcpy(m, s[k], i);
            memcpy(m + i, s[k] + i + 1, len - i - 1);
            cr_assert_not(ok[k](m, len - 1), "kind %d deleted %zu", k, i);
            /* Insertion. */
            memcpy(m, s[k], i);
            m[i] = 'A';
            memcpy(m + i + 1, s[k] + i, len - i);
            cr_assert_not(ok[k](m, len + 1), "kind %d inserted at %zu", k, i);
        }
    }
}

Test(signed, refuses_every_truncation)
{
    char s[3][AUTH_SIGNED_MAX];
    struct auth_ticket t;
    bool (*ok[3])(const char *, size_t) = {cookie_ok, ticket_ok, link_ok};

    make_cookie(s[0]);
    make_ticket(s[1], &t);
    make_link(s[2]);
    for (int k = 0; k < 3; k++) {
        for (size_t n = 0; n < strlen(s[k]); n++)
            cr_expect_not(ok[k](s[k], n), "kind %d length %zu", k, n);
    }
    cr_expect_not(cookie_ok(NULL, 0));
    cr_expect_not(ticket_ok(NULL, 0));
    cr_expect_not(link_ok(NULL, 0));
}

Test(signed, refuses_another_key)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g;
    struct auth_ticket t;
    struct auth_link l;

    make_cookie(s);
    cr_expect_not(auth_host_cookie_verify(&other_key, s, strlen(s), "shop-1.preview.example.com",
                                          26, NOW, &g));
    make_ticket(s, &t);
    cr_expect_not(
        auth_ticket_verify(&other_key, s, strlen(s), "shop-1.preview.example.com", 26, NOW, &t));
    make_link(s);
    cr_expect_not(auth_link_verify(&other_key, s, strlen(s), NOW, &l));
}

Test(signed, refuses_another_host)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g;
    struct auth_ticket t;

    make_cookie(s);
    cr_expect_not(
        auth_host_cookie_verify(&key, s, strlen(s), "shop-2.preview.example.com", 26, NOW, &g));
    cr_expect_not(
        auth_host_cookie_verify(&key, s, strlen(s), "shop-1.preview.example.co", 25, NOW, &g));
    cr_expect_not(auth_host_cookie_verify(&key, s, strlen(s), "", 0, NOW, &g));
    make_ticket(s, &t);
    cr_expect_not(auth_ticket_verify(&key, s, strlen(s), "evil.example.com", 16, NOW, &t));
}

Test(signed, refuses_at_and_after_expiry)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g;
    struct auth_ticket t;
    struct auth_link l;
    const char *h = "shop-1.preview.example.com";

    make_cookie(s);
    cr_expect(auth_host_cookie_verify(&key, s, strlen(s), h, 26, LATER - 1, &g));
    cr_expect_not(auth_host_cookie_verify(&key, s, strlen(s), h, 26, LATER, &g));
    cr_expect_not(auth_host_cookie_verify(&key, s, strlen(s), h, 26, LATER + 1, &g));
    make_ticket(s, &t);
    cr_expect(auth_ticket_verify(&key, s, strlen(s), h, 26, LATER - 1, &t));
    cr_expect_not(auth_ticket_verify(&key, s, strlen(s), h, 26, LATER, &t));
    make_link(s);
    cr_expect(auth_link_verify(&key, s, strlen(s), LATER - 1, &l));
    cr_expect_not(auth_link_verify(&key, s, strlen(s), LATER, &l));
}

Test(signed, refuses_one_kind_for_another)
{
    char c[AUTH_SIGNED_MAX];
    char t_s[AUTH_SIGNED_MAX];
    char l_s[AUTH_SIGNED_MAX];
    struct auth_ticket t;

    make_cookie(c);
    make_ticket(t_s, &t);
    make_link(l_s);
    cr_expect_not(ticket_ok(c, strlen(c)));
    cr_expect_not(link_ok(c, strlen(c)));
    cr_expect_not(cookie_ok(t_s, strlen(t_s)));
    cr_expect_not(link_ok(t_s, strlen(t_s)));
    cr_expect_not(cookie_ok(l_s, strlen(l_s)));
    cr_expect_not(ticket_ok(l_s, strlen(l_s)));

    /* Relabelled: the purpose is under the MAC too. */
    t_s[0] = 'c';
    cr_expect_not(cookie_ok(t_s, strlen(t_s)));
}

Test(signed, refuses_return_paths_that_leave_the_host)
{
    static const char *bad[] = {
        "//evil.example/x",
        "http://evil",
        "https://evil.example/",
        "/\\evil.example",
        "",
        "cart",
        "/a\nb",
        "/a\rb",
        "/a\tb",
        "/a\\b",
        "/a\x7f",
    };
    char s[AUTH_SIGNED_MAX];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct auth_ticket t = {.session_id = SID, .host = "a.example.com"};

        t.expires_ms = LATER;
        strcpy(t.rd, bad[i]);
        cr_expect_eq(auth_ticket_make(&key, &t, s), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(s, "", "case %zu", i);
    }
}

Test(signed, refuses_fields_with_newlines_or_controls_at_make_time)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_grant g = {.kind = AUTH_GRANT_SESSION, .subject = "ab\ncd", .expires_ms = LATER};
    struct auth_link l = {.env_id = 1, .env_name = "a\x01", .expires_ms = LATER, .issued_ms = NOW};
    struct auth_ticket t = {.session_id = "a\nb", .host = "a.example.com", .rd = "/"};

    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), EPH_EINVAL);
    strcpy(g.subject, "");
    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), EPH_EINVAL);
    strcpy(g.subject, SID);
    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com/x", s), EPH_EINVAL);
    cr_expect_eq(auth_host_cookie_make(&key, &g, "", s), EPH_EINVAL);
    g.kind = (enum auth_grant_kind)'x';
    cr_expect_eq(auth_host_cookie_make(&key, &g, "a.example.com", s), EPH_EINVAL);
    cr_expect_eq(auth_link_make(&key, &l, s), EPH_EINVAL);
    strcpy(l.env_name, "shop");
    l.env_id = -1;
    cr_expect_eq(auth_link_make(&key, &l, s), EPH_EINVAL);
    l.env_id = 1;
    l.issued_ms = -1;
    cr_expect_eq(auth_link_make(&key, &l, s), EPH_EINVAL);
    t.expires_ms = LATER;
    cr_expect_eq(auth_ticket_make(&key, &t, s), EPH_EINVAL);
}

Test(signed, refuses_a_ticket_that_would_not_fit)
{
    char s[AUTH_SIGNED_MAX];
    struct auth_ticket t = {.session_id = SID};
    struct auth_ticket got;

    /* A 200-byte host and a 511-byte path: 800 bytes of payload, more than
     * 1023 characters once encoded. */
    memset(t.host, 'h', 200);
    t.expires_ms = LATER;
    t.rd[0] = '/';
    memset(t.rd + 1, 'x', AUTH_RD_MAX - 2);
    t.rd[AUTH_RD_MAX - 1] = '\0';
    cr_expect_eq(auth_ticket_make(&key, &t, s), EPH_EINVAL);
    cr_expect_str_eq(s, "");
    /* A shorter path fits, and comes back whole. */
    t.rd[400] = '\0';
    cr_assert_eq(auth_ticket_make(&key, &t, s), 0);
    cr_expect_lt(strlen(s), AUTH_SIGNED_MAX);
    cr_assert(auth_ticket_verify(&key, s, strlen(s), t.host, 200, NOW, &got));
    cr_expect_str_eq(got.rd, t.rd);
}

/* Signed with the right key, but with fields the make functions never write. */
static const struct {
    char purpose;
    const char *payload;
} forged_bad[] = {
    {'c', "s\n" SID "\n1700000060000"},                                    /* three fields */
    {'c', "s\n" SID "\n1700000060000\nshop-1.preview.example.com\nx"},     /* five */
    {'c', "x\n" SID "\n1700000060000\nshop-1.preview.example.com"},        /* kind */
    {'c', "ss\n" SID "\n1700000060000\nshop-1.preview.example.com"},       /* kind */
    {'c', "s\n\n1700000060000\nshop-1.preview.example.com"},               /* no subject */
    {'c', "l\n4x\n1700000060000\nshop-1.preview.example.com"},             /* link subject */
    {'c', "s\n" SID "\n+1700000060000\nshop-1.preview.example.com"},       /* sign */
    {'c', "s\n" SID "\n01700000060000\nshop-1.preview.example.com"},       /* leading zero */
    {'c', "s\n" SID "\n1700000060000 \nshop-1.preview.example.com"},       /* blank */
    {'c', "s\n" SID "\n99999999999999999999\nshop-1.preview.example.com"}, /* overflow */
    {'c', "s\n" SID "\n9223372036854775808\nshop-1.preview.example.com"},  /* INT64_MAX+1 */
    {'c', "s\n" SID "\n\nshop-1.preview.example.com"},                     /* no expiry */
    {'c', "s\n" SID "\n1700000060000\nSHOP-1.preview.example.com"},        /* not normalized */
    {'c', "s\n" SID "\t\n1700000060000\nshop-1.preview.example.com"},      /* control */
    {'c', "s\n" SID "\n1700000060000\nshop-1.preview.example.com\n1"},     /* session, 5 */
    {'c', "l\n42\n1700000060000\nshop-1.preview.example.com"},             /* link, 4 */
    {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n"},           /* no issued */
    {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n-1"},         /* issued < 0 */
    {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n01"},         /* leading 0 */
    {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n1\nx"},       /* six */
    {'t', SID "\nshop-1.preview.example.com\n//evil.example/x\n" NONCE "\n1700000060000"},
    {'t', SID "\nshop-1.preview.example.com\n/\\evil\n" NONCE "\n1700000060000"},
    {'t', SID "\nshop-1.preview.example.com\nhttp://evil\n" NONCE "\n1700000060000"},
    {'t', SID "\nshop-1.preview.example.com\n\n" NONCE "\n1700000060000"},
    {'t', SID "\nshop-1.preview.example.com\n/\n0011\n1700000060000"}, /* short nonce */
    {'t', SID "\nshop-1.preview.example.com\n/\n"
              "00112233445566778899AABBCCDDEEFF"
              "\n1700000060000"},                                       /* upper hex */
    {'t', SID "\nshop-1.preview.example.com\n/\n" NONCE},               /* four fields */
    {'t', "\nshop-1.preview.example.com\n/\n" NONCE "\n1700000060000"}, /* no session */
    {'l', "42\nshop-1"},
    {'l', "42\nshop-1\n1700000060000"}, /* no issued: a link from before it was kept */
    {'l', "-42\nshop-1\n1700000060000\n1699999995000"},
    {'l', "42\n\n1700000060000\n1699999995000"},
    {'l', "42\nshop-1\n1700000060000\n"},
    {'l', "42\nshop-1\n1700000060000\n-1"},
    {'l', "42\nshop-1\n1700000060000\n+1"},
    {'l', "42\nshop-1\n1700000060000\n1699999995000\n"},
    {'l', "0x2a\nshop-1\n1700000060000\n1699999995000"},
    {'l', "42\n"
          "0123456789012345678901234567890123456789012345678901234567890123"
          "\n1700000060000\n1699999995000"}, /* name of 64 bytes: no room for the NUL */
};

Test(signed, refuses_signed_payloads_with_bad_fields)
{
    static const struct {
        char purpose;
        const char *payload;
    } good[] = {
        {'c', "s\n" SID "\n1700000060000\nshop-1.preview.example.com"},
        {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n1699999995000"},
        {'c', "l\n42\n1700000060000\nshop-1.preview.example.com\n0"},
        {'t', SID "\nshop-1.preview.example.com\n/\n" NONCE "\n1700000060000"},
        {'l', "42\nshop-1\n1700000060000\n1699999995000"},
        {'l', "0\n"
              "012345678901234567890123456789012345678901234567890123456789012"
              "\n9223372036854775807\n9223372036854775807"},
    };
    char s[4096];

    /* The forger writes what the module writes: these pass. */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        forge(&key, good[i].purpose, good[i].payload, s);
        cr_expect((good[i].purpose == 'c'   ? cookie_ok
                   : good[i].purpose == 't' ? ticket_ok
                                            : link_ok)(s, strlen(s)),
                  "good case %zu", i);
    }
    for (size_t i = 0; i < sizeof(forged_bad) / sizeof(forged_bad[0]); i++) {
        char p = forged_bad[i].purpose;

        forge(&key, p, forged_bad[i].payload, s);
        cr_expect_not((p == 'c'   ? cookie_ok
                       : p == 't' ? ticket_ok
                                  : link_ok)(s, strlen(s)),
                      "bad case %zu", i);
    }
}

Test(signed, refuses_envelope_junk)
{
    static const char *junk[] = {
        "",
        "c1",
        "c1.",
        "c1..",
        "c2.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.YQ=.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.Y.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1..AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "c1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.",
        "c1.YQ.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA+",
    };
    char big[AUTH_SIGNED_MAX + 10];

    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        cr_expect_not(cookie_ok(junk[i], strlen(junk[i])), "case %zu", i);
    memset(big, 'A', sizeof(big));
    memcpy(big, "c1.", 3);
    cr_expect_not(cookie_ok(big, sizeof(big)));
}

/* ------------------------------------------------------------- hosts */

static const struct {
    const char *in;
    const char *want; /* NULL: refused */
} hosts[] = {
    {"Example.COM", "example.com"},
    {"example.com:8080", "example.com"},
    {"example.com:", "example.com"},
    {"a-b.c-d.example", "a-b.c-d.example"},
    {"127.0.0.1:80", "127.0.0.1"},
    {"[::1]", "[::1]"},
    {"[::1]:8443", "[::1]"},
    {"[FE80::1]:1", "[fe80::1]"},
    {"", NULL},
    {":80", NULL},
    {"[]", NULL},
    {"[]:80", NULL},
    {"[::1", NULL},
    {"[::1]x", NULL},
    {"::1", NULL},
    {"example.com:80:90", NULL},
    {"example.com:http", NULL},
    {"example.com:123456", NULL},
    {"exa mple.com", NULL},
    {"example.com/", NULL},
    {"exa_mple.com", NULL},
    {"ex[ample.com", NULL},
    {"user@example.com", NULL},
    {"example.com\n", NULL},
    {"[::1]]", NULL},
    {"[a[b]", NULL},
};

Test(signed, normalizes_hosts)
{
    for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++) {
        char out[AUTH_HOST_MAX];
        bool ok = auth_host_normalize(hosts[i].in, strlen(hosts[i].in), out);

        if (hosts[i].want == NULL) {
            cr_expect_not(ok, "case %zu: '%s' gave '%s'", i, hosts[i].in, out);
        } else {
            cr_expect(ok, "case %zu: '%s'", i, hosts[i].in);
            cr_expect_str_eq(out, hosts[i].want, "case %zu", i);
        }
    }
}

Test(signed, refuses_hosts_that_do_not_fit)
{
    char in[AUTH_HOST_MAX + 8];
    char out[AUTH_HOST_MAX];

    memset(in, 'a', sizeof(in));
    cr_expect(auth_host_normalize(in, AUTH_HOST_MAX - 1, out));
    cr_expect_eq(strlen(out), AUTH_HOST_MAX - 1);
    cr_expect_not(auth_host_normalize(in, AUTH_HOST_MAX, out));
    memcpy(in + AUTH_HOST_MAX - 1, ":80", 3);
    cr_expect(auth_host_normalize(in, AUTH_HOST_MAX + 2, out), "the port does not count");
    cr_expect_not(auth_host_normalize(NULL, 0, out));
}

/* ------------------------------------------------------------- base64url */

Test(signed, base64url_round_trips_and_refuses_non_canonical_input)
{
    static const char *vectors[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"},
    };
    char enc[64];
    char dec[64];

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        size_t n = strlen(vectors[i][0]);
        long got;

        cr_expect_eq(auth_b64url_encode(vectors[i][0], n, enc), strlen(vectors[i][1]));
        cr_expect_str_eq(enc, vectors[i][1], "case %zu", i);
        got = auth_b64url_decode(vectors[i][1], strlen(vectors[i][1]), dec, sizeof(dec));
        cr_expect_eq(got, (long)n, "case %zu", i);
        cr_expect_eq(memcmp(dec, vectors[i][0], n), 0, "case %zu", i);
    }
    cr_expect_eq(auth_b64url_decode("Zh", 2, dec, sizeof(dec)), -1, "unused bits set");
    cr_expect_eq(auth_b64url_decode("Zm9", 3, dec, sizeof(dec)), -1, "unused bits set");
    cr_expect_eq(auth_b64url_decode("Z", 1, dec, sizeof(dec)), -1, "bad length");
    cr_expect_eq(auth_b64url_decode("Zg==", 4, dec, sizeof(dec)), -1, "padding");
    cr_expect_eq(auth_b64url_decode("Zm+v", 4, dec, sizeof(dec)), -1, "standard alphabet");
    cr_expect_eq(auth_b64url_decode("Zm9v", 4, dec, 2), -1, "no room");
    cr_expect_eq(auth_b64url_decode("Zm9v", 4, dec, 3), 3);
}

Test(signed, hmac_matches_rfc_4231_case_2)
{
    unsigned char mac[32];
    static const unsigned char want[32] = {
        0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
        0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
        0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
    };

    auth_hmac_sha256("Jefe", 4, "what do ya want for nothing?", 28, mac);
    cr_expect_eq(memcmp(mac, want, 32), 0);
}
