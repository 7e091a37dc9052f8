/*
 * tests/unit/auth/test_github.c - GitHub sign-in: the authorization URL,
 * the parsers of GitHub's answers, and the network calls against a small
 * HTTP server run in a thread of this test (127.0.0.1, a port the kernel
 * picks) that answers like GitHub's OAuth and REST endpoints: the code
 * exchange, /user, /user/emails, org and team memberships (active,
 * pending, 404, 403), and an answer above the size limit.
 */
#include "auth/github.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/err.h"
#include "util/xmalloc.h"

#define TOKEN "gho_16C7e42F292c6912E7710c838347Ae178B4a" /* GitHub's documented shape */
#define PUBLIC_TOKEN "gho_public"                        /* a user with a public email */

/* ------------------------------------------------------------- the fake GitHub */

#define MAX_SEEN 32

static struct fake {
    int fd;
    int port;
    pthread_t thread;
    atomic_bool stop;
    /* what the requests carried, in order; written by the server thread
     * before it answers, read by the test after the answer came */
    int n_seen;
    char seen[MAX_SEEN][256]; /* "GET /user" */
    char auth[256], accept[128], agent[128], content_type[128];
    char body[2048];
} fake;

struct reply {
    int status;
    const char *body;
};

/* The canned answer to `method path` with the given Authorization. */
static struct reply
route(const char *method, const char *path, const char *auth, const char *body)
{
    static const struct {
        const char *path;
        struct reply r;
    } gets[] = {
        {"/user/emails",
         {200, "[{\"email\": \"old@example.com\", \"primary\": false, \"verified\": true},"
               " {\"email\": \"new@example.com\", \"primary\": true, \"verified\": false},"
               " {\"email\": \"octo@example.com\", \"primary\": true, \"verified\": true,"
               " \"visibility\": \"private\"}]"}},
        {"/user/memberships/orgs/acme",
         {200, "{\"state\": \"active\", \"role\": \"member\", "
               "\"organization\": {\"login\": \"acme\"}}"}},
        {"/user/memberships/orgs/pending-org",
         {200, "{\"state\": \"pending\", \"role\": \"member\"}"}},
        {"/user/memberships/orgs/locked",
         {403, "{\"message\": \"Although you appear to have the correct authorization "
               "credentials, the `locked` organization has enabled OAuth App access "
               "restrictions.\"}"}},
        {"/orgs/acme/teams/dev/memberships/octocat",
         {200, "{\"state\": \"active\", \"role\": \"maintainer\"}"}},
        {"/orgs/acme/teams/ops/memberships/octocat",
         {404, "{\"message\": \"Not Found\", \"documentation_url\": \"https://docs.github.com\"}"}},
    };
    static char big[1100 * 1024 + 1];

    if (strcmp(method, "POST") == 0 && strcmp(path, "/login/oauth/access_token") == 0) {
        if (strstr(body, "code=good-code") != NULL)
            return (struct reply){200, "{\"access_token\": \"" TOKEN "\", "
                                       "\"scope\": \"read:org,user:email\", "
                                       "\"token_type\": \"bearer\"}"};
        return (struct reply){200, "{\"error\": \"bad_verification_code\", "
                                   "\"error_description\": \"The code passed is incorrect or "
                                   "expired.\", \"error_uri\": \"https://docs.github.com\"}"};
    }
    if (strcmp(method, "GET") != 0)
        return (struct reply){405, "{}"};
    if (strcmp(path, "/big/user") == 0) {
        memset(big, ' ', sizeof(big) - 1);
        big[0] = '{';
        big[sizeof(big) - 2] = '}';
        return (struct reply){200, big};
    }
    if (strcmp(auth, "Bearer " TOKEN) != 0 && strcmp(auth, "Bearer " PUBLIC_TOKEN) != 0)
        return (struct reply){401, "{\"message\": \"Bad credentials\"}"};
    if (strcmp(path, "/user") == 0 && strcmp(auth, "Bearer " PUBLIC_TOKEN) == 0)
        return (struct reply){200, "{\"login\": \"octocat\", \"id\": 583231, "
                                   "\"name\": \"The Octocat\", \"email\": \"public@example.com\"}"};
    if (strcmp(path, "/user") == 0)
        return (struct reply){200, "{\"login\": \"octocat\", \"id\": 583231, \"node_id\": \"x\", "
                                   "\"name\": null, \"email\": null, \"site_admin\": false}"};
    for (size_t i = 0; i < ARRAY_LEN(gets); i++) {
        if (strcmp(path, gets[i].path) == 0)
            return gets[i].r;
    }
    return (struct reply){404, "{\"message\": \"Not Found\"}"};
}

/* Copies the value of header `name` from the head (CRLF lines) into out. */
static void
header_value(const char *head, const char *name, char *out, size_t out_size)
{
    size_t n = strlen(name);

    out[0] = '\0';
    for (const char *l = strstr(head, "\r\n"); l; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, n) == 0 && l[2 + n] == ':') {
            const char *v = l + 3 + n;
            const char *end = strstr(v, "\r\n");

            while (*v == ' ')
                v++;
            snprintf(out, out_size, "%.*s", (int)(end - v), v);
            return;
        }
    }
}

static void
serve_one(int c)
{
    char req[8192];
    size_t len = 0;
    char *end = NULL;
    char method[16], path[200], clen[32];
    size_t body_len = 0;
    struct reply r;
    char *resp;

    while (end == NULL && len < sizeof(req) - 1) {
        ssize_t n = read(c, req + len, sizeof(req) - 1 - len);

        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
        end = strstr(req, "\r\n\r\n");
    }
    if (end == NULL || sscanf(req, "%15s %199s", method, path) != 2)
        return;
    header_value(req, "Content-Length", clen, sizeof(clen));
    body_len = (size_t)atoi(clen);
    while ((size_t)(len - (size_t)(end + 4 - req)) < body_len && len < sizeof(req) - 1) {
        ssize_t n = read(c, req + len, sizeof(req) - 1 - len);

        if (n <= 0)
            return;
        len += (size_t)n;
        req[len] = '\0';
    }
    *end = '\0';
    header_value(req, "Authorization", fake.auth, sizeof(fake.auth));
    header_value(req, "Accept", fake.accept, sizeof(fake.accept));
    header_value(req, "User-Agent", fake.agent, sizeof(fake.agent));
    header_value(req, "Content-Type", fake.content_type, sizeof(fake.content_type));
    snprintf(fake.body, sizeof(fake.body), "%s", end + 4);
    if (fake.n_seen < MAX_SEEN)
        snprintf(fake.seen[fake.n_seen++], sizeof(fake.seen[0]), "%s %s", method, path);

    r = route(method, path, fake.auth, fake.body);
    resp = xasprintf("HTTP/1.1 %d X\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     r.status, strlen(r.body), r.body);
    for (size_t off = 0, n = strlen(resp); off < n;) {
        ssize_t w = write(c, resp + off, n - off);

        if (w <= 0)
            break;
        off += (size_t)w;
    }
    free(resp);
}

static void *
serve(void *arg)
{
    (void)arg;
    while (!atomic_load(&fake.stop)) {
        struct pollfd p = {.fd = fake.fd, .events = POLLIN};
        int c;

        if (poll(&p, 1, 50) <= 0)
            continue;
        c = accept(fake.fd, NULL, NULL);
        if (c < 0)
            continue;
        serve_one(c);
        close(c);
    }
    return NULL;
}

static void
start_fake(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t alen = sizeof(a);

    memset(&fake, 0, sizeof(fake));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fake.fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fake.fd, 0);
    cr_assert_eq(bind(fake.fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fake.fd, 16), 0);
    cr_assert_eq(getsockname(fake.fd, (struct sockaddr *)&a, &alen), 0);
    fake.port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&fake.thread, NULL, serve, NULL), 0);
}

static void
stop_fake(void)
{
    atomic_store(&fake.stop, true);
    pthread_join(fake.thread, NULL);
    close(fake.fd);
}

TestSuite(github, .init = start_fake, .fini = stop_fake, .timeout = 30);

static char *
url(const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", fake.port, path);
}

/* ------------------------------------------------------------- the authorization URL */

Test(github, builds_the_authorization_url)
{
    char *u = github_authorize_url(NULL, "Iv1.abc", "https://eph.example.com/auth/github/callback",
                                   "s t&");

    cr_expect_str_eq(u, "https://github.com/login/oauth/authorize?client_id=Iv1.abc"
                        "&redirect_uri=https%3A%2F%2Feph.example.com%2Fauth%2Fgithub%2Fcallback"
                        "&state=s%20t%26&scope=read:org%20user:email");
    free(u);
    u = github_authorize_url("https://ghe.example.com/", "id", "http://x/cb", "s");
    cr_expect_str_eq(u, "https://ghe.example.com/login/oauth/authorize?client_id=id"
                        "&redirect_uri=http%3A%2F%2Fx%2Fcb&state=s&scope=read:org%20user:email");
    free(u);
}

/* ------------------------------------------------------------- parsers */

Test(github, parses_the_token_answer)
{
    char *t = NULL;
    struct eph_err err = {0};
    const char *ok = "{\"access_token\": \"gho_x\", \"token_type\": \"bearer\"}";
    const char *refused = "{\"error\": \"bad_verification_code\", "
                          "\"error_description\": \"The code passed is incorrect or expired.\"}";
    const char *weird = "{\"access_token\": \"a\\r\\nX-Evil: 1\"}";

    cr_assert_eq(github_parse_token(ok, strlen(ok), &t, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t, "gho_x");
    free(t);
    cr_expect_eq(github_parse_token(refused, strlen(refused), &t, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "GitHub refused the code: bad_verification_code (The code passed "
                              "is incorrect or expired.)");
    cr_expect_null(t);
    cr_expect_eq(github_parse_token(weird, strlen(weird), &t, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "GitHub's answer to the code holds no access token");
    cr_expect_eq(github_parse_token("x", 1, &t, &err), EPH_EPARSE);
    cr_expect_str_eq(err.msg, "GitHub's answer to the code is not a JSON object");
}

Test(github, parses_a_user)
{
    const char *json = "{\"login\": \"octo-cat_1\", \"id\": 42, \"name\": \"Octo\", "
                       "\"email\": \"o@example.com\"}";
    struct github_user u;
    struct eph_err err = {0};

    cr_assert_eq(github_parse_user(json, strlen(json), &u, &err), 0, "%s", err.msg);
    cr_expect_str_eq(u.login, "octo-cat_1");
    cr_expect_eq(u.id, 42);
    cr_expect_str_eq(u.name, "Octo");
    cr_expect_str_eq(u.email, "o@example.com");
    github_user_release(&u);
    cr_expect_null(u.login);
}

Test(github, refuses_users_it_cannot_trust)
{
    static const struct {
        const char *json;
        int rc;
        const char *want;
    } bad[] = {
        {"{\"login\": \"../admin\", \"id\": 1}", EPH_EINVAL,
         "GitHub's /user has no valid login: '../admin'"},
        {"{\"login\": \"a/b\", \"id\": 1}", EPH_EINVAL, "GitHub's /user has no valid login: 'a/b'"},
        {"{\"login\": \"\", \"id\": 1}", EPH_EINVAL, "GitHub's /user has no valid login: ''"},
        {"{\"id\": 1}", EPH_EINVAL, "GitHub's /user has no valid login: ''"},
        {"{\"login\": \"octocat\", \"id\": \"1\"}", EPH_EINVAL, "GitHub's /user has no valid id"},
        {"{\"login\": \"octocat\", \"id\": 0}", EPH_EINVAL, "GitHub's /user has no valid id"},
        {"[]", EPH_EPARSE, "GitHub's /user is not a JSON object"},
    };

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct github_user u;
        struct eph_err err = {0};

        cr_expect_eq(github_parse_user(bad[i].json, strlen(bad[i].json), &u, &err), bad[i].rc,
                     "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_null(u.login, "case %zu", i);
    }
}

Test(github, picks_the_primary_verified_email)
{
    const char *json = "[{\"email\": \"a@x\", \"primary\": true, \"verified\": false},"
                       " {\"email\": \"b@x\", \"primary\": false, \"verified\": true},"
                       " {\"email\": \"c@x\", \"primary\": true, \"verified\": true}]";
    const char *none = "[{\"email\": \"a@x\", \"primary\": true, \"verified\": \"true\"}, 7]";
    char *e = NULL;
    struct eph_err err = {0};

    cr_assert_eq(github_parse_emails(json, strlen(json), &e, &err), 0);
    cr_expect_str_eq(e, "c@x");
    free(e);
    cr_assert_eq(github_parse_emails(none, strlen(none), &e, &err), 0);
    cr_expect_null(e);
    cr_expect_eq(github_parse_emails("{}", 2, &e, &err), EPH_EPARSE);
    cr_expect_str_eq(err.msg, "GitHub's /user/emails is not a JSON array");
}

Test(github, reads_a_membership_state)
{
    bool active = true;
    struct eph_err err = {0};

    cr_expect_eq(github_parse_membership("{\"state\": \"active\"}", 19, &active, &err), 0);
    cr_expect(active);
    cr_expect_eq(github_parse_membership("{\"state\": \"pending\"}", 20, &active, &err), 0);
    cr_expect_not(active);
    cr_expect_eq(github_parse_membership("{\"role\": \"admin\"}", 17, &active, &err), EPH_EPARSE);
    cr_expect_str_eq(err.msg, "GitHub's membership answer has no 'state'");
    cr_expect_not(active);
}

/* ------------------------------------------------------------- network */

Test(github, exchanges_a_code_for_a_token)
{
    char *base = url("");
    char *t = NULL;
    struct eph_err err = {0};

    cr_assert_eq(github_exchange_code(base, "cid", "s3cr&t", "good-code", "http://e/cb", &t, &err),
                 0, "%s", err.msg);
    cr_expect_str_eq(t, TOKEN);
    cr_expect_str_eq(fake.seen[0], "POST /login/oauth/access_token");
    cr_expect_str_eq(fake.accept, "application/json");
    cr_expect_str_eq(fake.agent, "ephemera");
    cr_expect_str_eq(fake.content_type, "application/x-www-form-urlencoded");
    cr_expect_str_eq(fake.body, "client_id=cid&client_secret=s3cr%26t&code=good-code"
                                "&redirect_uri=http%3A%2F%2Fe%2Fcb");
    free(t);

    cr_expect_eq(github_exchange_code(base, "cid", "s", "stale", "http://e/cb", &t, &err),
                 EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "GitHub refused the code: bad_verification_code (The code passed "
                              "is incorrect or expired.)");
    cr_expect_null(t);
    free(base);
}

Test(github, fetches_the_user_and_the_primary_email)
{
    char *api = url("");
    struct github_user u;
    struct eph_err err = {0};

    cr_assert_eq(github_fetch_user(api, TOKEN, &u, &err), 0, "%s", err.msg);
    cr_expect_str_eq(u.login, "octocat");
    cr_expect_eq(u.id, 583231);
    cr_expect_null(u.name);
    cr_expect_str_eq(u.email, "octo@example.com");
    cr_expect_eq(fake.n_seen, 2);
    cr_expect_str_eq(fake.seen[0], "GET /user");
    cr_expect_str_eq(fake.seen[1], "GET /user/emails");
    cr_expect_str_eq(fake.auth, "Bearer " TOKEN);
    cr_expect_str_eq(fake.accept, "application/vnd.github+json");
    cr_expect_str_eq(fake.agent, "ephemera");
    github_user_release(&u);

    /* a public email on /user: no second request */
    cr_assert_eq(github_fetch_user(api, PUBLIC_TOKEN, &u, &err), 0, "%s", err.msg);
    cr_expect_str_eq(u.email, "public@example.com");
    cr_expect_str_eq(u.name, "The Octocat");
    cr_expect_eq(fake.n_seen, 3);
    github_user_release(&u);
    free(api);
}

Test(github, reports_a_refused_token)
{
    char *api = url("/");
    struct github_user u;
    struct eph_err err = {0};

    cr_expect_eq(github_fetch_user(api, "gho_revoked", &u, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "GitHub API refused the token for /user: Bad credentials");
    cr_expect_null(u.login);
    cr_expect_eq(github_fetch_user(api, "bad token\r\nX: y", &u, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "GitHub access token holds characters it cannot have");
    free(api);
}

Test(github, checks_org_and_team_membership)
{
    static const struct {
        const char *orgs[3];
        size_t n_orgs;
        const char *teams[3];
        size_t n_teams;
        int rc;
        bool ok;
        const char *want; /* the error message, when rc < 0 */
    } cases[] = {
        {{NULL}, 0, {NULL}, 0, 0, true, NULL},
        {{"other", "acme"}, 2, {NULL}, 0, 0, true, NULL},
        {{"other"}, 1, {NULL}, 0, 0, false, NULL},
        {{"pending-org"}, 1, {NULL}, 0, 0, false, NULL},
        {{NULL}, 0, {"acme/dev"}, 1, 0, true, NULL},
        {{NULL}, 0, {"acme/ops"}, 1, 0, false, NULL},
        {{"other"}, 1, {"acme/ops", "acme/dev"}, 2, 0, true, NULL},
        {{"locked", "acme"}, 2, {NULL}, 0, 0, true, NULL},
        {{"locked"},
         1,
         {NULL},
         0,
         EPH_EPERM,
         false,
         "GitHub API refused to answer /user/memberships/orgs/locked (HTTP 403): Although you "
         "appear to have the correct authorization credentials, the `locked` organization has "
         "enabled OAuth App a..."},
        {{NULL}, 0, {"acme"}, 1, EPH_EINVAL, false, "GitHub team 'acme' is not written 'org/team'"},
    };
    char *api = url("");

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct eph_err err = {0};
        bool ok = !cases[i].ok;
        int rc = github_check_membership(api, TOKEN, "octocat", cases[i].orgs, cases[i].n_orgs,
                                         cases[i].teams, cases[i].n_teams, &ok, &err);

        cr_expect_eq(rc, cases[i].rc, "case %zu: %s", i, err.msg);
        cr_expect_eq(ok, cases[i].ok, "case %zu", i);
        if (cases[i].want)
            cr_expect_str_eq(err.msg, cases[i].want, "case %zu", i);
    }
    cr_expect_str_eq(fake.auth, "Bearer " TOKEN);
    free(api);
}

Test(github, refuses_an_answer_above_the_size_limit)
{
    char *api = url("/big");
    struct github_user u;
    struct eph_err err = {0};
    char *want = xasprintf("GitHub API at 'http://127.0.0.1:%d/big/user' answered more than "
                           "1048576 bytes",
                           fake.port);

    cr_expect_eq(github_fetch_user(api, TOKEN, &u, &err), EPH_ETOOBIG);
    cr_expect_str_eq(err.msg, want);
    free(want);
    free(api);
}

Test(github, reports_a_peer_that_cannot_be_reached)
{
    /* a port that was free a moment ago: nothing listens there */
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char *api, *prefix;
    struct github_user u;
    struct eph_err err = {0};

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    api = xasprintf("http://127.0.0.1:%d", ntohs(a.sin_port));
    prefix = xasprintf("cannot reach the GitHub API at '%s/user': ", api);
    cr_expect_eq(github_fetch_user(api, TOKEN, &u, &err), -EIO);
    cr_expect_eq(strncmp(err.msg, prefix, strlen(prefix)), 0, "%s", err.msg);
    free(prefix);
    free(api);
}
