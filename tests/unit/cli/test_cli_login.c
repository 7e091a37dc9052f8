/*
 * tests/unit/cli/test_cli_login.c - signing in: the sign-in state, the
 * parsing of the browser's callback, the helpers the user, token and link
 * verbs share, and `eph login` / `eph logout` run whole against a fake API
 * server and a fake browser on 127.0.0.1.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_int.h"
#include "util/fs.h"

/* ------------------------------------------------------------- the state */

Test(cli_state, is_32_lower_case_hex_digits_and_differs_each_time)
{
    char a[CLI_STATE_HEX_LEN + 1], b[CLI_STATE_HEX_LEN + 1];
    struct eph_err err = {0};

    cr_assert_eq(cli__state_new(a, &err), 0);
    cr_assert_eq(cli__state_new(b, &err), 0);
    cr_expect_eq(strlen(a), 32);
    cr_expect_eq(strspn(a, "0123456789abcdef"), 32, "%s", a);
    cr_expect_str_neq(a, b);
}

Test(cli_state, matches_only_the_same_state)
{
    const char *want = "0123456789abcdef0123456789abcdef";

    cr_expect(cli__state_equal(want, "0123456789abcdef0123456789abcdef"));
    cr_expect_not(cli__state_equal(want, "0123456789abcdef0123456789abcdee"));
    cr_expect_not(cli__state_equal(want, "1123456789abcdef0123456789abcdef"));
    cr_expect_not(cli__state_equal(want, "0123456789abcdef0123456789abcde"));
    cr_expect_not(cli__state_equal(want, "0123456789abcdef0123456789abcdef0"));
    cr_expect_not(cli__state_equal(want, ""));
    cr_expect_not(cli__state_equal(want, NULL));
}

/* ------------------------------------------------------------- the callback */

static int
parse(const char *line, struct cli_callback *cb)
{
    return cli__callback_parse(line, strlen(line), cb);
}

Test(cli_callback, takes_token_and_state_from_get_callback)
{
    struct cli_callback cb;

    cr_assert_eq(parse("GET /callback?token=eph_abc&state=s1 HTTP/1.1", &cb), 0);
    cr_expect_str_eq(cb.token, "eph_abc");
    cr_expect_str_eq(cb.state, "s1");
    cr_expect_null(cb.error);
    cli__callback_release(&cb);

    cr_assert_eq(parse("GET /callback?state=s%2D1&x=y&token=a%2Bb+c&&error HTTP/1.0", &cb), 0);
    cr_expect_str_eq(cb.state, "s-1", "escapes decoded");
    cr_expect_str_eq(cb.token, "a+b+c", "'+' is not a space in a URL");
    cr_expect_str_eq(cb.error, "", "a key without '=' has an empty value");
    cli__callback_release(&cb);

    cr_assert_eq(parse("GET /callback HTTP/1.1", &cb), 0);
    cr_expect_null(cb.token);
    cr_expect_null(cb.state);
    cli__callback_release(&cb);
}

static const struct {
    const char *line;
    int want;
} bad_callbacks[] = {
    {"GET /favicon.ico HTTP/1.1", EPH_ENOTFOUND},
    {"GET /callbackx?state=s HTTP/1.1", EPH_ENOTFOUND},
    {"GET /call?back HTTP/1.1", EPH_ENOTFOUND},
    {"POST /callback?token=t&state=s HTTP/1.1", EPH_ENOTFOUND},
    {"get /callback HTTP/1.1", EPH_ENOTFOUND},
    {"GET /callback", EPH_EINVAL},
    {"GET /callback FTP/1.0", EPH_EINVAL},
    {"GET  HTTP/1.1", EPH_EINVAL},
    {" /callback HTTP/1.1", EPH_EINVAL},
    {"", EPH_EINVAL},
    {"GET /callback?state=a&state=b HTTP/1.1", EPH_EINVAL},
    {"GET /callback?token=a&token=a HTTP/1.1", EPH_EINVAL},
    {"GET /callback?state=%zz HTTP/1.1", EPH_EINVAL},
    {"GET /callback?state=%4 HTTP/1.1", EPH_EINVAL},
    {"GET /callback?token=a%00b HTTP/1.1", EPH_EINVAL},
};

Test(cli_callback, refuses_other_requests_and_malformed_ones)
{
    for (size_t i = 0; i < sizeof(bad_callbacks) / sizeof(bad_callbacks[0]); i++) {
        struct cli_callback cb;

        cr_expect_eq(parse(bad_callbacks[i].line, &cb), bad_callbacks[i].want, "case %zu: %s", i,
                     bad_callbacks[i].line);
        cli__callback_release(&cb);
    }
}

Test(cli_callback, reads_only_the_given_length)
{
    const char *line = "GET /callback?state=abc HTTP/1.1\r\nHost: x";
    struct cli_callback cb;

    cr_assert_eq(cli__callback_parse(line, strcspn(line, "\r"), &cb), 0);
    cr_expect_str_eq(cb.state, "abc");
    cli__callback_release(&cb);
}

Test(cli_callback, decodes_percent_escapes)
{
    char *out = NULL;

    cr_assert_eq(cli__percent_decode("a%20b%2fc", 9, &out), 0);
    cr_expect_str_eq(out, "a b/c");
    free(out);
    cr_assert_eq(cli__percent_decode("abc", 2, &out), 0);
    cr_expect_str_eq(out, "ab");
    free(out);
    cr_expect_eq(cli__percent_decode("%", 1, &out), EPH_EINVAL);
    cr_expect_eq(cli__percent_decode("%4", 2, &out), EPH_EINVAL);
    cr_expect_eq(cli__percent_decode("%4g", 3, &out), EPH_EINVAL);
    cr_expect_null(out);
}

/* ------------------------------------------------------------- shared helpers */

static const struct {
    const char *value;
    const char *const *allowed;
    const char *what, *want;
} bad_choices[] = {
    {"boss", cli__roles, "role", "invalid role 'boss', expected admin, member or viewer"},
    {"", cli__roles, "scope", "invalid scope '', expected admin, member or viewer"},
    {"public", cli__visibilities, "visibility",
     "invalid visibility 'public', expected team, private or link"},
    {"Team", cli__visibilities, "visibility",
     "invalid visibility 'Team', expected team, private or link"},
};

Test(cli_choices, accepts_known_values_and_names_the_others)
{
    struct eph_err err = {0};

    cr_expect_eq(cli__one_of("viewer", cli__roles, "role", &err), 0);
    cr_expect_eq(cli__one_of("link", cli__visibilities, "visibility", &err), 0);
    for (size_t i = 0; i < sizeof(bad_choices) / sizeof(bad_choices[0]); i++) {
        cr_expect_eq(
            cli__one_of(bad_choices[i].value, bad_choices[i].allowed, bad_choices[i].what, &err),
            EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad_choices[i].want, "case %zu", i);
    }
}

Test(cli_json, reads_times_as_ms_or_rfc3339)
{
    json_t *o =
        json_pack("{s:s, s:I, s:s, s:s, s:s, s:s, s:n}", "a", "2026-11-22T10:00:00Z", "b_ms",
                  (json_int_t)1795341600123, "b", "garbage", "c", "2026-11-22T10:00:00.25Z", "d",
                  "2026-11-22T12:30:00+02:30", "e", "2026-11-22T10:00:00", "f");

    cr_expect_eq(cli__jtime_ms(o, "a"), 1795341600000);
    cr_expect_eq(cli__jtime_ms(o, "b"), 1795341600123, "_ms wins");
    cr_expect_eq(cli__jtime_ms(o, "c"), 1795341600250);
    cr_expect_eq(cli__jtime_ms(o, "d"), 1795341600000);
    cr_expect_eq(cli__jtime_ms(o, "e"), 0, "no zone: unreadable");
    cr_expect_eq(cli__jtime_ms(o, "f"), 0, "null");
    cr_expect_eq(cli__jtime_ms(o, "missing"), 0);
    json_decref(o);
}

Test(cli_json, reads_ids_and_lists_of_either_shape)
{
    json_t *o = json_pack("{s:i, s:s, s:[i], s:b}", "n", 12, "s", "tok_1", "users", 1, "x", 1);
    json_t *arr = json_pack("[i, i]", 1, 2);
    char id[16];

    cli__jid(o, "n", id, sizeof(id));
    cr_expect_str_eq(id, "12");
    cli__jid(o, "s", id, sizeof(id));
    cr_expect_str_eq(id, "tok_1");
    cli__jid(o, "x", id, sizeof(id));
    cr_expect_str_eq(id, "");
    cr_expect_eq(json_array_size(cli__jlist(o, "users")), 1);
    cr_expect_eq(cli__jlist(arr, "users"), arr);
    cr_expect_null(cli__jlist(o, "x"));
    cr_expect_null(cli__jlist(o, "nope"));
    json_decref(o);
    json_decref(arr);
}

/* ------------------------------------------------------------- eph login, whole */

static char *
temp_dir(void)
{
    char tmpl[] = "/tmp/eph-cli-login-XXXXXX";

    cr_assert_not_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

/* A listening socket on 127.0.0.1 and a free port; returns the fd. */
static int
listen_loopback(int *port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

/* Reads a request or response head (and what follows in the same reads) into buf. */
static size_t
read_some(int fd, char *buf, size_t size, const char *until)
{
    size_t len = 0;

    while (len + 1 < size) {
        ssize_t n = read(fd, buf + len, size - 1 - len);

        if (n <= 0)
            break;
        len += (size_t)n;
        buf[len] = '\0';
        if (until && strstr(buf, until))
            break;
    }
    buf[len] = '\0';
    return len;
}

/* The fake API: answers every GET /api/v1/whoami with the bearer it expects. */
struct fake_api {
    int listen_fd;
    int requests;       /* whoami requests seen */
    bool token_matched; /* the last one carried "Bearer eph_from_browser" */
};

static void *
fake_api_main(void *arg)
{
    struct fake_api *api = arg;
    static const char who[] = "{\"name\": \"alice\", \"role\": \"member\", \"via\": \"token\"}";
    int fd = accept(api->listen_fd, NULL, NULL);
    char head[4096];
    char *resp = NULL;

    if (fd < 0)
        return NULL; /* the test shut the listener down: no request came */
    read_some(fd, head, sizeof(head), "\r\n\r\n");
    api->requests++;
    api->token_matched = strstr(head, "GET /api/v1/whoami ") == head &&
                         strstr(head, "\r\nAuthorization: Bearer eph_from_browser\r\n") != NULL;
    if (asprintf(&resp,
                 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                 "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                 strlen(who), who) > 0 &&
        write(fd, resp, strlen(resp)) != (ssize_t)strlen(resp))
        api->token_matched = false;
    free(resp);
    close(fd);
    return NULL;
}

/* The fake browser: reads the URL eph prints, then tries a few requests. */
struct fake_browser {
    int stderr_read_fd; /* what eph writes to stderr */
    int server_port;    /* the fake API's, which the printed URL must name */
    char printed[2048];
    char answers[3][2048]; /* the heads and pages eph answered */
};

static void
browser_get(int port, const char *target, char *answer, size_t size)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *req = NULL;

    /* No cr_assert here: this runs on a thread of its own. */
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        asprintf(&req, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", target, port) > 0 &&
        write(fd, req, strlen(req)) == (ssize_t)strlen(req))
        read_some(fd, answer, size, NULL); /* until eph closes */
    free(req);
    close(fd);
}

static void *
fake_browser_main(void *arg)
{
    struct fake_browser *b = arg;
    char *url, *target;
    int port = 0;
    char state[64] = "";

    size_t len = 0;

    /* Until the line with the state is complete, however the writes were cut. */
    for (;;) {
        ssize_t n;

        url = strstr(b->printed, "state=");
        if (url && strchr(url, '\n'))
            break;
        n = read(b->stderr_read_fd, b->printed + len, sizeof(b->printed) - 1 - len);
        if (n <= 0)
            return NULL;
        len += (size_t)n;
        b->printed[len] = '\0';
    }
    url = strstr(b->printed, "/auth/cli?port=");
    if (url == NULL || sscanf(url, "/auth/cli?port=%d&state=%63[0-9a-f]", &port, state) != 2)
        return NULL;
    browser_get(port, "/favicon.ico", b->answers[0], sizeof(b->answers[0]));
    browser_get(port, "/callback?token=eph_forged&state=0000", b->answers[1],
                sizeof(b->answers[1]));
    if (asprintf(&target, "/callback?token=eph_from_browser&state=%s", state) < 0)
        return NULL;
    browser_get(port, target, b->answers[2], sizeof(b->answers[2]));
    free(target);
    return NULL;
}

Test(cli_login, signs_in_through_the_browser_callback_and_saves_the_token, .timeout = 60,
     .init = cr_redirect_stdout)
{
    struct fake_api api = {0};
    struct fake_browser browser = {0};
    pthread_t api_thread, browser_thread;
    char *dir = temp_dir();
    char *path, *server, *text = NULL;
    int pipe_fds[2], saved_stderr, rc;
    char *argv[] = {"eph", "login", "--server", NULL};
    json_t *cfg;

    cr_assert(asprintf(&path, "%s/config", dir) > 0);
    setenv("EPH_CONFIG", path, 1);
    unsetenv("EPH_SERVER");
    unsetenv("EPH_TOKEN");
    unsetenv("DISPLAY"); /* no xdg-open in a test */
    unsetenv("WAYLAND_DISPLAY");
    api.listen_fd = listen_loopback(&browser.server_port);
    cr_assert(asprintf(&server, "http://127.0.0.1:%d", browser.server_port) > 0);
    argv[3] = server;
    cr_assert_eq(pipe(pipe_fds), 0);
    browser.stderr_read_fd = pipe_fds[0];
    saved_stderr = dup(STDERR_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    close(pipe_fds[1]);
    cr_assert_eq(pthread_create(&api_thread, NULL, fake_api_main, &api), 0);
    cr_assert_eq(pthread_create(&browser_thread, NULL, fake_browser_main, &browser), 0);

    rc = cli_main(4, argv);

    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    shutdown(api.listen_fd, SHUT_RDWR); /* wakes the fake API if no request came */
    pthread_join(browser_thread, NULL);
    pthread_join(api_thread, NULL);
    close(pipe_fds[0]);
    close(api.listen_fd);

    cr_expect_eq(rc, 0, "%s", browser.printed);
    cr_expect_not_null(strstr(browser.printed, "Open this URL in a browser to sign in:\n  "));
    cr_expect_not_null(strstr(browser.printed, server));
    cr_expect(strncmp(browser.answers[0], "HTTP/1.1 404 ", 13) == 0, "%s", browser.answers[0]);
    cr_expect(strncmp(browser.answers[1], "HTTP/1.1 400 ", 13) == 0, "%s", browser.answers[1]);
    cr_expect(strncmp(browser.answers[2], "HTTP/1.1 200 ", 13) == 0, "%s", browser.answers[2]);
    cr_expect_not_null(strstr(browser.answers[2], "signed in as <b>alice</b>"));
    cr_expect_not_null(strstr(browser.answers[2], "Referrer-Policy: no-referrer"));
    cr_expect_eq(api.requests, 1);
    cr_expect(api.token_matched, "the forged token was never sent, the right one was");

    cr_assert_eq(fs_read_all(path, 4096, &text, NULL), 0);
    cfg = json_loads(text, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_str_eq(json_string_value(json_object_get(cfg, "server")), server);
    cr_expect_str_eq(json_string_value(json_object_get(cfg, "token")), "eph_from_browser");
    json_decref(cfg);
    free(text);
    fs_rm_rf(dir);
    free(server);
    free(path);
    free(dir);
}

Test(cli_login, needs_a_server_when_the_config_has_none, .init = cr_redirect_stderr)
{
    char *argv[] = {"eph", "login"};

    setenv("EPH_CONFIG", "/nonexistent/eph/config", 1);
    unsetenv("EPH_SERVER");
    cr_expect_eq(cli_main(2, argv), 2);
    fflush(stderr);
    cr_expect_stderr_eq_str("eph: missing --server URL (the client config names no server)\n"
                            "run 'eph login --help' for usage\n");
}

Test(cli_logout, drops_the_token_and_keeps_the_server, .init = cr_redirect_stdout)
{
    char *dir = temp_dir();
    char *path, *text = NULL;
    const char *old = "{\"server\": \"http://s:1\", \"token\": \"eph_x\", \"extra\": true}";
    char *argv[] = {"eph", "logout"};
    json_t *cfg;

    cr_assert(asprintf(&path, "%s/config", dir) > 0);
    cr_assert_eq(fs_write_atomic(path, old, strlen(old), 0600), 0);
    setenv("EPH_CONFIG", path, 1);
    unsetenv("EPH_TOKEN");
    cr_expect_eq(cli_main(2, argv), 0);
    cr_assert_eq(fs_read_all(path, 4096, &text, NULL), 0);
    cfg = json_loads(text, 0, NULL);
    cr_assert_not_null(cfg);
    cr_expect_null(json_object_get(cfg, "token"));
    cr_expect_str_eq(json_string_value(json_object_get(cfg, "server")), "http://s:1");
    cr_expect(json_is_true(json_object_get(cfg, "extra")));
    cr_expect_eq(cli_main(2, argv), 0, "signing out twice is fine");
    json_decref(cfg);
    free(text);
    fs_rm_rf(dir);
    free(path);
    free(dir);
}
