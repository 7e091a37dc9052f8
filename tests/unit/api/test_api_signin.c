/*
 * tests/unit/api/test_api_signin.c - the pure helpers of the sign-in pages
 * (api/api_pages.c): where a browser may be sent back to, the origin check
 * of form posts, form bodies, percent-encoding, Accept, HTML escaping, user
 * names derived from identities, and the CLI's parameters.
 */
#include "api/api_pages.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/xmalloc.h"

#define BASE "http://localhost:8080"

/* The gateway's hook as serve.c would give it: the control host, and any
 * host under ".localhost:8080" (service hosts). */
static bool
fake_host_ours(void *arg, const char *host, size_t len)
{
    static const char suffix[] = ".localhost:8080";
    size_t n = sizeof(suffix) - 1;

    (void)arg;
    if (len == strlen("localhost:8080") && strncmp(host, "localhost:8080", len) == 0)
        return true;
    return len > n && strncmp(host + len - n, suffix, n) == 0;
}

/* ------------------------------------------------------------- rd */

static const char *const bad_rd[] = {
    "https://evil.example",
    "https://evil.example/",
    "http://evil.example/login",
    "//evil.example",
    "//evil.example/x",
    "///evil.example",
    "/\\evil.example",
    "\\\\evil.example",
    "/ok\\..\\x",
    "javascript:alert(1)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://localhost.evil.example/",
    "http://localhost:8080.evil.example/",
    "http://localhost:8080@evil.example/",
    "http://user:pw@localhost:8080/",
    "http://evil.example#@localhost:8080",
    "http://evil.example?@localhost:8080",
    "http://localhost:8080:80/",
    "http://localhost:99999/",
    "http://localhost:0/",
    "http://localhost:/",
    "http:/localhost:8080/",
    "http:localhost:8080",
    "http://",
    "http:///x",
    "https:///evil.example",
    "ftp://localhost:8080/",
    "localhost:8080/x",
    "evil.example",
    "web.fx.localhost:8080",
    "/a b",
    "/a\tb",
    "/a\r\nSet-Cookie: x=1",
    "/caf\xc3\xa9",
    "http://web.fx.localhost:8080//evil.example/",
    "http://web.fx.localhost:8080/\\evil",
    "http://web.fx.localhost:8080\\@evil.example",
    "http://[::1/",
    "http://[]:8080/",
    "http://exa mple.localhost:8080/",
    "http://web.fx.localhost:8080\x01/",
};

Test(api_rd, refuses_every_target_that_leaves_this_server)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_rd); i++) {
        struct api_rd rd;

        cr_expect_eq(api__rd_check(bad_rd[i], BASE, fake_host_ours, NULL, &rd), API_RD_BAD,
                     "case %zu: %s", i, bad_rd[i]);
        cr_expect_eq(rd.kind, API_RD_BAD, "case %zu", i);
        cr_expect_str_empty(rd.url, "case %zu", i);
    }
}

Test(api_rd, refuses_service_hosts_without_the_hook)
{
    struct api_rd rd;

    cr_expect_eq(api__rd_check("http://web.fx.localhost:8080/", BASE, NULL, NULL, &rd), API_RD_BAD);
    cr_expect_eq(api__rd_check("http://localhost.evil.example/", BASE, NULL, NULL, &rd),
                 API_RD_BAD);
    cr_expect_eq(api__rd_check("http://localhost:8081/", BASE, NULL, NULL, &rd), API_RD_BAD);
    cr_expect_eq(api__rd_check("http://localhost/", BASE, NULL, NULL, &rd), API_RD_BAD);
    cr_expect_eq(api__rd_check("http://localhost:8080/envs", BASE, NULL, NULL, &rd),
                 API_RD_CONTROL);
}

Test(api_rd, refuses_overlong_targets)
{
    char long_path[API_RD_MAX + 2];
    char service[AUTH_RD_MAX + 64];
    struct api_rd rd;

    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    cr_expect_eq(api__rd_check(long_path, BASE, fake_host_ours, NULL, &rd), API_RD_BAD);
    long_path[API_RD_MAX] = '\0'; /* exactly the maximum */
    cr_expect_eq(api__rd_check(long_path, BASE, fake_host_ours, NULL, &rd), API_RD_PATH);

    /* A service host's path must fit in a ticket. */
    snprintf(service, sizeof(service), "http://web.fx.localhost:8080/");
    memset(service + strlen(service), 'b', AUTH_RD_MAX - 1);
    service[strlen("http://web.fx.localhost:8080/") + AUTH_RD_MAX - 1] = '\0';
    cr_expect_eq(api__rd_check(service, BASE, fake_host_ours, NULL, &rd), API_RD_BAD);
    service[strlen("http://web.fx.localhost:8080/") + AUTH_RD_MAX - 2] = '\0';
    cr_expect_eq(api__rd_check(service, BASE, fake_host_ours, NULL, &rd), API_RD_SERVICE);
    cr_expect_eq(strlen(rd.path), AUTH_RD_MAX - 1);
}

Test(api_rd, takes_paths_on_the_control_host)
{
    static const char *const good[] = {
        "/",         "/envs",    "/envs?all=1&x=%2F%2Fevil", "/auth/cli?port=4000&state=abc",
        "/a/b#frag", "/%5Cevil",
    };

    for (size_t i = 0; i < ARRAY_LEN(good); i++) {
        struct api_rd rd;

        cr_expect_eq(api__rd_check(good[i], BASE, fake_host_ours, NULL, &rd), API_RD_PATH,
                     "case %zu: %s", i, good[i]);
        cr_expect_str_eq(rd.url, good[i]);
    }
}

Test(api_rd, defaults_to_the_front_page)
{
    struct api_rd rd;

    cr_expect_eq(api__rd_check(NULL, BASE, NULL, NULL, &rd), API_RD_PATH);
    cr_expect_str_eq(rd.url, "/");
    cr_expect_eq(api__rd_check("", BASE, NULL, NULL, &rd), API_RD_PATH);
    cr_expect_str_eq(rd.url, "/");
}

Test(api_rd, tells_the_control_host_from_service_hosts)
{
    struct api_rd rd;

    cr_expect_eq(api__rd_check("HTTP://LocalHost:8080/x?y=1", BASE, fake_host_ours, NULL, &rd),
                 API_RD_CONTROL);
    cr_expect_str_eq(rd.url, "http://LocalHost:8080/x?y=1");
    cr_expect_str_eq(rd.authority, "LocalHost:8080");
    cr_expect_str_eq(rd.path, "/x?y=1");
    cr_expect_not(rd.https);

    cr_expect_eq(api__rd_check("http://web.fx.localhost:8080/cart?id=7#top", BASE, fake_host_ours,
                               NULL, &rd),
                 API_RD_SERVICE);
    cr_expect_str_eq(rd.url, "http://web.fx.localhost:8080/cart?id=7#top");
    cr_expect_str_eq(rd.authority, "web.fx.localhost:8080");
    cr_expect_str_eq(rd.path, "/cart?id=7");

    cr_expect_eq(api__rd_check("https://web.fx.localhost:8080", BASE, fake_host_ours, NULL, &rd),
                 API_RD_SERVICE);
    cr_expect(rd.https);
    cr_expect_str_eq(rd.path, "/");

    cr_expect_eq(api__rd_check("http://web.fx.localhost:8080?q=1", BASE, fake_host_ours, NULL, &rd),
                 API_RD_SERVICE);
    cr_expect_str_eq(rd.path, "/?q=1");
}

Test(api_rd, knows_a_bracketed_control_host)
{
    struct api_rd rd;

    cr_expect_eq(api__rd_check("http://[::1]:8080/x", "http://[::1]:8080", NULL, NULL, &rd),
                 API_RD_CONTROL);
    cr_expect_str_eq(rd.authority, "[::1]:8080");
}

/* ------------------------------------------------------------- origins */

Test(api_origin, is_scheme_and_authority_lower_cased)
{
    char out[128];

    cr_assert(api__origin_of("HTTPS://Eph.Example.com:8443/base/", out, sizeof(out)));
    cr_expect_str_eq(out, "https://eph.example.com:8443");
    cr_assert(api__origin_of("http://localhost:8080", out, sizeof(out)));
    cr_expect_str_eq(out, BASE);
    cr_expect_not(api__origin_of("localhost:8080", out, sizeof(out)));
    cr_expect_not(api__origin_of("", out, sizeof(out)));
    cr_expect_not(api__origin_of(NULL, out, sizeof(out)));
    cr_expect_not(api__origin_of("http://localhost:8080", out, 10));
}

Test(api_origin, lets_only_our_own_pages_post)
{
    cr_expect(api__same_origin_post(BASE, NULL, BASE));
    cr_expect(api__same_origin_post(BASE, "https://evil.example/", BASE));
    cr_expect(api__same_origin_post(NULL, BASE "/login?rd=%2F", BASE));
    cr_expect(api__same_origin_post(NULL, BASE "/", BASE "/"));

    cr_expect_not(api__same_origin_post(NULL, NULL, BASE));
    cr_expect_not(api__same_origin_post("null", BASE "/login", BASE));
    cr_expect_not(api__same_origin_post("http://web.fx.localhost:8080", NULL, BASE));
    cr_expect_not(api__same_origin_post("http://localhost:8081", NULL, BASE));
    cr_expect_not(api__same_origin_post("https://localhost:8080", NULL, BASE));
    cr_expect_not(api__same_origin_post(BASE ".evil.example", NULL, BASE));
    cr_expect_not(api__same_origin_post(NULL, BASE ".evil.example/", BASE));
    cr_expect_not(api__same_origin_post(NULL, BASE "@evil.example/", BASE));
    cr_expect_not(api__same_origin_post(NULL, BASE, BASE)); /* no '/' after it */
    cr_expect_not(api__same_origin_post(NULL, "http://web.fx.localhost:8080/", BASE));
    cr_expect_not(api__same_origin_post(BASE, NULL, "not a url"));
}

/* ------------------------------------------------------------- forms */

static void
expect_field(const char *body, const char *name, const char *want)
{
    char *got = api__form_value(body, strlen(body), name);

    if (want == NULL) {
        cr_expect_null(got, "%s in '%s'", name, body);
    } else {
        cr_expect_not_null(got, "%s in '%s'", name, body);
        if (got)
            cr_expect_str_eq(got, want, "%s in '%s'", name, body);
    }
    free(got);
}

Test(api_form, decodes_plus_and_percent)
{
    const char *body = "user=ann+lee&password=p%40ss+w%2Bord%26%3D&rd=%2Fenvs%3Fall%3D1";

    expect_field(body, "user", "ann lee");
    expect_field(body, "password", "p@ss w+ord&=");
    expect_field(body, "rd", "/envs?all=1");
    expect_field(body, "missing", NULL);
    expect_field(body, "use", NULL);
}

Test(api_form, takes_the_first_of_repeated_fields_and_empty_ones)
{
    expect_field("a=1&a=2", "a", "1");
    expect_field("a=&b=2", "a", "");
    expect_field("a&b=2", "a", "");
    expect_field("&&a=3&", "a", "3");
    expect_field("x%3Dy=z", "x=y", "z");
    expect_field("a=%c3%A9", "a", "\xc3\xa9");
}

Test(api_form, refuses_bad_encodings)
{
    expect_field("a=%", "a", NULL);
    expect_field("a=%4", "a", NULL);
    expect_field("a=%zz", "a", NULL);
    expect_field("a=x%00y", "a", NULL);
    cr_expect_null(api__form_value(NULL, 0, "a"));
    cr_expect_null(api__form_value("", 0, "a"));
    /* Only len bytes count: the rest of the buffer is not the body. */
    {
        char *got = api__form_value("a=12&b=3", 3, "a");

        cr_expect_str_eq(got, "1");
        free(got);
    }
}

Test(api_form, url_encodes_all_but_unreserved)
{
    struct buf b;

    buf_init(&b, 4096);
    api__url_encode(&b, "http://web.fx.localhost:8080/a b?x=1&y=~_.-\xc3\xa9");
    cr_expect_str_eq(buf_cstr(&b), "http%3A%2F%2Fweb.fx.localhost%3A8080%2Fa%20b%3Fx%3D1%26y%3D"
                                   "~_.-%C3%A9");
    buf_release(&b);
}

Test(api_form, accept_prefers_json_only_when_asked)
{
    cr_expect(api__accept_json("application/json"));
    cr_expect(api__accept_json("application/json, */*;q=0.5"));
    cr_expect(api__accept_json("text/html;q=0.5, application/json"));
    cr_expect(api__accept_json("application/*"));
    cr_expect_not(api__accept_json(NULL));
    cr_expect_not(api__accept_json("*/*"));
    cr_expect_not(api__accept_json(""));
    cr_expect_not(api__accept_json("text/html,application/xhtml+xml,application/xml;q=0.9,"
                                   "*/*;q=0.8"));
    cr_expect_not(api__accept_json("application/json, text/html"));
    cr_expect_not(api__accept_json("application/json;q=0.4, text/*"));
    cr_expect_not(api__accept_json("application/json;q=0"));
}

/* ------------------------------------------------------------- HTML */

Test(api_html, escapes_what_could_break_out)
{
    struct buf b;

    buf_init(&b, 4096);
    api__html_escape(&b, "<script>alert('x' & \"y\")</script>");
    cr_expect_str_eq(buf_cstr(&b),
                     "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;");
    buf_reset(&b);
    api__html_escape(&b, NULL);
    api__html_escape(&b, "plain caf\xc3\xa9");
    cr_expect_str_eq(buf_cstr(&b), "plain caf\xc3\xa9");
    buf_release(&b);
}

/* ------------------------------------------------------------- identities */

static const struct {
    const char *preferred, *email, *want;
} names[] = {
    {"Alice", "alice@example.com", "alice"},
    {NULL, "Bob.Smith@example.com", "bob-smith"},
    {"", "carol+tag@example.com", "carol-tag"},
    {"...", "dave@example.com", "dave"},
    {"  Émile Zola ", NULL, "mile-zola"},
    {"__x__y__", NULL, "x-y"},
    {"octo-cat", NULL, "octo-cat"},
    {"a--b", NULL, "a-b"},
    {NULL, NULL, "user"},
    {"!!!", "@example.com", "user"},
    {"ÄÖÜ", "", "user"},
    {"abcdefghijklmnopqrstuvwxyz0123456789", NULL, "abcdefghijklmnopqrstuvwxyz012345"},
    {"abcdefghijklmnopqrstuvwxyz01234-6789", NULL, "abcdefghijklmnopqrstuvwxyz01234"},
    {"abcdefghijklmnopqrstuvwxyz0123.56789", NULL, "abcdefghijklmnopqrstuvwxyz0123-5"},
};

Test(api_names, derives_user_names_from_identities)
{
    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        char out[API_USER_NAME_MAX + 1];

        api__derive_user_name(names[i].preferred, names[i].email, out);
        cr_expect_str_eq(out, names[i].want, "case %zu", i);
        cr_expect_leq(strlen(out), API_USER_NAME_MAX, "case %zu", i);
    }
}

Test(api_names, makes_names_unique_within_the_length)
{
    char out[API_USER_NAME_MAX + 1];

    api__user_name_candidate("bob", 1, out);
    cr_expect_str_eq(out, "bob");
    api__user_name_candidate("bob", 2, out);
    cr_expect_str_eq(out, "bob-2");
    api__user_name_candidate("bob", 1000, out);
    cr_expect_str_eq(out, "bob-1000");
    api__user_name_candidate("abcdefghijklmnopqrstuvwxyz012345", 3, out);
    cr_expect_str_eq(out, "abcdefghijklmnopqrstuvwxyz0123-3");
    api__user_name_candidate("abcdefghijklmnopqrstuvwxyz012-45", 12, out);
    cr_expect_str_eq(out, "abcdefghijklmnopqrstuvwxyz012-12");
    api__user_name_candidate("abcdefghijklmnopqrstuvwxyz01-345", 12, out);
    cr_expect_str_eq(out, "abcdefghijklmnopqrstuvwxyz01-12"); /* no "--" */
}

/* ------------------------------------------------------------- the CLI */

Test(api_cli, checks_port_and_state)
{
    int port = 0;

    cr_expect(api__cli_params_valid("4711", "abcdefghijklmnop", &port));
    cr_expect_eq(port, 4711);
    cr_expect(api__cli_params_valid("65535", "A-_0123456789abcdefg", NULL));
    cr_expect(api__cli_params_valid("1024", "0123456789012345", NULL));

    cr_expect_not(api__cli_params_valid(NULL, "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("4711", NULL, NULL));
    cr_expect_not(api__cli_params_valid("1023", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("65536", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("+4711", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("4711 ", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("000004711", "abcdefghijklmnop", NULL));
    cr_expect_not(api__cli_params_valid("4711", "short", NULL));
    cr_expect_not(api__cli_params_valid("4711", "abcdefghijklmno", NULL)); /* 15 */
    cr_expect_not(api__cli_params_valid("4711", "abcdefghijklmnop&x=1", NULL));
    cr_expect_not(api__cli_params_valid("4711", "abcdefghijklmnop\"<", NULL));
    {
        char longest[130];

        memset(longest, 'a', 128);
        longest[128] = '\0';
        cr_expect(api__cli_params_valid("4711", longest, NULL));
        longest[128] = 'a';
        longest[129] = '\0';
        cr_expect_not(api__cli_params_valid("4711", longest, NULL));
    }
}
