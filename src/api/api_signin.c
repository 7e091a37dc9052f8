/*
 * api/api_signin.c - the control host's pages for people (docs/auth.md,
 * "Signing in"): the sign-in form and local passwords, OpenID Connect and
 * GitHub sign-in, sign-out, tickets that carry a session over to a service
 * host, and the browser half of `eph login`.
 *
 * What blocks runs on the libuv thread pool: verifying a password (argon2id,
 * tens of milliseconds on purpose) and every call to an identity provider
 * (libcurl). The exchange waits meanwhile and is answered on the loop when
 * the work is done; the store and the index are only touched on the loop.
 *
 * Every page goes out through api_pages.c (escaping, security headers).
 * Every POST must come from one of our own pages (api__same_origin_post):
 * preview environments are same-site with the control host, so SameSite
 * cookies alone would not stop them. Redirect targets (`rd`) are checked
 * by api__rd_check before anything else happens, so no path here sends a
 * browser off this server.
 *
 * Control loop only, except the *_work functions, which touch nothing but
 * their own job.
 */
#include "api/api_int.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_pages.h"
#include "auth/github.h"
#include "auth/oidc.h"
#include "auth/password.h"
#include "auth/ratelimit.h"
#include "core/auth_config.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

/* Failed passwords: 5 per user name or 20 per address within 15 minutes
 * lock that key for 15 minutes. */
#define LIMIT_USER_FAILURES 5
#define LIMIT_ADDR_FAILURES 20
#define LIMIT_WINDOW_MS (15 * 60 * 1000LL)
#define LIMIT_LOCK_MS (15 * 60 * 1000LL)
#define LIMIT_MAX_KEYS 10000

/* A ticket is used within seconds of being made (one redirect). */
#define TICKET_TTL_MS (60 * 1000LL)
/* A person has this long at the identity provider. */
#define PENDING_TTL_MS (10 * 60 * 1000LL)
/* Sign-ins started and not finished; the oldest make room. */
#define PENDING_MAX 10000
/* Tokens `eph login` gets from the browser. */
#define CLI_TOKEN_TTL_MS (30 * 24 * 3600 * 1000LL)
/* An ID token's times are checked with this much slack for clocks. */
#define ID_TOKEN_LEEWAY_S 60
/* Made-unique user names: bob, bob-2, ... bob-<this>. */
#define USER_NAME_TRIES 1000

#define MSG_RD_REFUSED "this sign-in link points outside this server"
#define MSG_BAD_LOGIN "wrong user name or password"
#define MSG_CSRF "cross-site request refused"
#define MSG_STATE "this sign-in attempt is unknown or was already used"

/* ------------------------------------------------------------- state */

enum pending_kind {
    PENDING_OIDC,
    PENDING_GITHUB,
};

/* A sign-in sent to an identity provider and not yet back: found by its
 * state (the CSRF token of OAuth), used once. */
struct pending {
    struct pending *older, *newer;
    enum pending_kind kind;
    char state[33];               /* 32 hex digits */
    char nonce[33];               /* OIDC: the ID token must carry it */
    char verifier[OIDC_PKCE_MAX]; /* PKCE code verifier (OIDC) */
    char *provider;               /* the provider's name in the config */
    char *rd;                     /* checked already */
    int64_t expires_ms;           /* wall clock */
};

struct api_signin {
    struct api *api;
    struct auth_limiter *by_user; /* keys "user:<name>" */
    struct auth_limiter *by_addr; /* keys "addr:<address>" */
    struct pending *oldest, *newest;
    size_t n_pending;
    struct oidc_cache *oidc; /* one per OIDC provider used so far */
    unsigned jobs;           /* thread-pool jobs in flight */
};

/* ------------------------------------------------------------- small helpers */

/* The client's address as api.c finds it: behind the gateway, the entry it
 * appended to X-Forwarded-For; else the peer. free(). */
static char *
client_address(const struct api *api, struct http_exchange *x)
{
    char forwarded[64];

    if (api->hooks.behind_gateway) {
        api__forwarded_client(http_header(x, "X-Forwarded-For"), forwarded, sizeof(forwarded));
        if (forwarded[0])
            return xstrdup(forwarded);
    }
    return xstrdup(http_remote_addr(x));
}

/* True and *who if the request carries a live session cookie. */
static bool
signed_in(struct api *api, struct http_exchange *x, struct auth_who *who)
{
    char cookie[AUTH_SESSION_COOKIE_MAX];

    if (!api__cookie(x, API_SESSION_COOKIE, cookie, sizeof(cookie)))
        return false;
    return auth_index_check_session_cookie(api->ix, cookie, strlen(cookie), time_wall_ms(), who);
}

static enum api_rd_kind
check_rd(struct api *api, const char *rd, struct api_rd *out)
{
    return api__rd_check(rd, api->public_base, api->hooks.host_ours, api->hooks.arg, out);
}

static bool
wants_json(struct http_exchange *x)
{
    return api__accept_json(http_header(x, "Accept"));
}

/*
 * Answers a refusal: {"error": ...} for API clients, else a page titled
 * `title` with the message and a way back to the sign-in page.
 */
static void
error_page(struct http_exchange *x, int status, const char *title, const char *msg)
{
    struct buf body;

    if (wants_json(x)) {
        api__page_headers(x);
        api__reply_error(x, status, "%s", msg);
        return;
    }
    buf_init(&body, 64 * 1024);
    buf_puts(&body, "<p class=\"error\">");
    api__html_escape(&body, msg);
    buf_puts(&body, "</p>\n<p><a href=\"/login\">Back to sign-in</a></p>");
    api__page_send(x, status, title, buf_cstr(&body), NULL);
    buf_release(&body);
}

static void
refuse_rd(struct http_exchange *x)
{
    error_page(x, 400, "Sign-in link refused", MSG_RD_REFUSED);
}

static void
not_allowed(struct http_exchange *x, const char *allow)
{
    http_add_header(x, "Allow", allow);
    error_page(x, 405, "Not allowed", "this method is not allowed here");
}

static bool
is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

/* POSTs only from our own pages: false after answering 403. */
static bool
post_allowed(struct api *api, struct http_exchange *x)
{
    if (api__same_origin_post(http_header(x, "Origin"), http_header(x, "Referer"),
                              api->public_base))
        return true;
    log_warn("cross-site post refused", "path=%s origin=%s", log_q(http_path(x)),
             log_q(http_header(x, "Origin") ? http_header(x, "Origin") : ""));
    error_page(x, 403, "Request refused", MSG_CSRF);
    return false;
}

static char *
form_field(struct http_exchange *x, const char *name)
{
    size_t len = 0;
    const char *body = http_body(x, &len);

    return api__form_value(body, len, name);
}

/* "scheme://authority" of an absolute rd, for form-action. */
static void
rd_origin(const struct api_rd *rd, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s://%s", rd->https ? "https" : "http", rd->authority);
}

/* Where the browser goes once signed in: a control-host target directly, a
 * service host through /auth/ticket (which hands the session over). */
static void
redirect_after_signin(struct http_exchange *x, const struct api_rd *rd)
{
    struct buf loc;

    if (rd->kind != API_RD_SERVICE) {
        api__page_redirect(x, 303, rd->url);
        return;
    }
    buf_init(&loc, 8 * 1024);
    buf_puts(&loc, "/auth/ticket?rd=");
    api__url_encode(&loc, rd->url);
    api__page_redirect(x, 303, buf_cstr(&loc));
    buf_release(&loc);
}

/* 303 to the sign-in page, coming back to `rd` afterwards. */
static void
redirect_to_login(struct http_exchange *x, const char *rd)
{
    struct buf loc;

    buf_init(&loc, 8 * 1024);
    buf_puts(&loc, "/login");
    if (rd && strcmp(rd, "/") != 0) {
        buf_puts(&loc, "?rd=");
        api__url_encode(&loc, rd);
    }
    api__page_redirect(x, 303, buf_cstr(&loc));
    buf_release(&loc);
}

/*
 * Starts a session for `user`, sets its cookie and sends the browser on to
 * rd. Every way of signing in ends here.
 */
static void
finish_signin(struct api *api, struct http_exchange *x, const char *user, const char *source,
              const struct api_rd *rd)
{
    char cookie[AUTH_SESSION_COOKIE_MAX];
    char set_cookie[512];
    int64_t expires_ms = 0;
    struct eph_err err = {0};
    int rc = api__session_create(api, user, source, cookie, &expires_ms, &err);

    if (rc < 0) {
        log_error("cannot start a session", "user=%s error=%s", log_q(user), log_q(err.msg));
        error_page(x, 500, "Sign-in failed", "cannot start a session: see the server log");
        return;
    }
    if (store_user_touch_login(api->st, user, time_wall_ms(), &err) < 0)
        log_warn("cannot record a sign-in time", "user=%s error=%s", log_q(user), log_q(err.msg));
    api__session_set_cookie(api, cookie, api->cfg->session_max_s, set_cookie, sizeof(set_cookie));
    OPENSSL_cleanse(cookie, sizeof(cookie));
    http_add_header(x, "Set-Cookie", set_cookie);
    OPENSSL_cleanse(set_cookie, sizeof(set_cookie));
    log_info("signed in", "user=%s addr=%s", log_q(user), log_q(source ? source : ""));
    redirect_after_signin(x, rd);
}

/* ------------------------------------------------------------- GET / */

static void
home_page(struct api *api, struct http_exchange *x)
{
    struct auth_who who;
    struct buf body;

    if (!signed_in(api, x, &who)) {
        api__page_redirect(x, 303, "/login");
        return;
    }
    buf_init(&body, 64 * 1024);
    buf_puts(&body, "<p>Signed in as <strong>");
    api__html_escape(&body, who.user);
    buf_puts(&body, "</strong> (");
    api__html_escape(&body, role_name(who.role));
    buf_puts(&body, ")</p>\n");
    if (who.email[0]) {
        buf_puts(&body, "<p class=\"small\">");
        api__html_escape(&body, who.email);
        buf_puts(&body, "</p>\n");
    }
    buf_puts(&body, "<form method=\"post\" action=\"/logout\">"
                    "<button type=\"submit\">Sign out</button></form>");
    api__page_send(x, 200, "Signed in", buf_cstr(&body), NULL);
    buf_release(&body);
}

/* ------------------------------------------------------------- the sign-in page */

/*
 * The sign-in page: the local form (when local users may sign in) and one
 * button per provider, each carrying rd. `error` (may be NULL) is shown
 * above; `user` fills the name field again.
 */
static void
login_page(struct api *api, struct http_exchange *x, int status, const struct api_rd *rd,
           const char *error, const char *user)
{
    const struct auth_config *ac = api->ac;
    struct buf body, enc_rd;
    char origin[AUTH_HOST_MAX + 16] = "";
    size_t n_providers = ac ? ac->n_providers : 0;
    bool local = ac == NULL || ac->local;

    buf_init(&body, 256 * 1024);
    buf_init(&enc_rd, 8 * 1024);
    api__url_encode(&enc_rd, rd->url);
    if (error) {
        buf_puts(&body, "<p class=\"error\">");
        api__html_escape(&body, error);
        buf_puts(&body, "</p>\n");
    }
    if (local) {
        buf_puts(&body, "<form method=\"post\" action=\"/login\">\n"
                        "<input type=\"hidden\" name=\"rd\" value=\"");
        api__html_escape(&body, rd->url);
        buf_puts(&body, "\">\n<label for=\"user\">User name</label>"
                        "<input type=\"text\" id=\"user\" name=\"user\" value=\"");
        api__html_escape(&body, user ? user : "");
        buf_puts(&body, "\" autocomplete=\"username\" autocapitalize=\"none\" required"
                        " autofocus>\n<label for=\"password\">Password</label>"
                        "<input type=\"password\" id=\"password\" name=\"password\""
                        " autocomplete=\"current-password\" required>\n"
                        "<button type=\"submit\">Sign in</button>\n</form>\n");
    }
    if (local && n_providers > 0)
        buf_puts(&body, "<p class=\"or\">or</p>\n");
    for (size_t i = 0; i < n_providers; i++) {
        const struct auth_provider_cfg *p = &ac->providers[i];
        bool github = p->type == AUTH_PROVIDER_GITHUB;

        buf_puts(&body, "<a class=\"button alt\" href=\"");
        if (github) {
            buf_puts(&body, "/auth/github/start?rd=");
        } else {
            struct buf enc_name;

            buf_init(&enc_name, 1024);
            api__url_encode(&enc_name, p->name);
            buf_puts(&body, "/auth/oidc/");
            api__html_escape(&body, buf_cstr(&enc_name));
            buf_puts(&body, "/start?rd=");
            buf_release(&enc_name);
        }
        api__html_escape(&body, buf_cstr(&enc_rd));
        buf_puts(&body, "\">Sign in with ");
        api__html_escape(&body, github ? "GitHub" : p->name);
        buf_puts(&body, "</a>\n");
    }
    if (!local && n_providers == 0)
        buf_puts(&body, "<p>No way of signing in is configured on this server.</p>\n");
    /* The form's answer redirects to a service host through /auth/ticket:
     * browsers check every redirect of a form post against form-action. */
    if (rd->kind == API_RD_SERVICE)
        rd_origin(rd, origin, sizeof(origin));
    api__page_send(x, status, "Sign in", buf_cstr(&body), origin[0] ? origin : NULL);
    buf_release(&enc_rd);
    buf_release(&body);
}

static void
login_get(struct api *api, struct http_exchange *x)
{
    char *rd_text = http_query_param(x, "rd");
    struct api_rd rd;

    if (check_rd(api, rd_text, &rd) == API_RD_BAD)
        refuse_rd(x);
    else
        login_page(api, x, 200, &rd, NULL, NULL);
    free(rd_text);
}

/* ------------------------------------------------------------- POST /login */

/* A password being checked on the thread pool. */
struct login_job {
    uv_work_t work;
    struct api_signin *s;
    struct http_exchange *x;
    char *user;     /* as typed */
    char *password; /* wiped and freed once checked */
    char *hash;     /* the stored hash; NULL: no such user or no password */
    char *source;   /* the client's address */
    struct api_rd rd;
    bool ok; /* the work's answer */
};

static void
login_job_free(struct login_job *job)
{
    if (job->password) {
        OPENSSL_cleanse(job->password, strlen(job->password));
        free(job->password);
    }
    free(job->user);
    free(job->hash);
    free(job->source);
    free(job);
}

/* Thread pool: argon2id. Touches nothing but the job. */
static void
login_work(uv_work_t *w)
{
    struct login_job *job = container_of(w, struct login_job, work);

    if (job->hash)
        job->ok = auth_password_verify(job->hash, job->password);
    else
        job->ok = auth_password_verify_dummy(job->password);
}

static void
limiter_keys(const char *user, const char *source, char *ukey, size_t usize, char *akey,
             size_t asize)
{
    snprintf(ukey, usize, "user:%s", user);
    snprintf(akey, asize, "addr:%s", source);
}

static void
login_after(uv_work_t *w, int status)
{
    struct login_job *job = container_of(w, struct login_job, work);
    struct api_signin *s = job->s;
    struct api *api = s->api;
    char ukey[AUTH_USER_MAX + 8], akey[80];
    int64_t now = time_wall_ms();

    s->jobs--;
    OPENSSL_cleanse(job->password, strlen(job->password));
    limiter_keys(job->user, job->source, ukey, sizeof(ukey), akey, sizeof(akey));
    if (status < 0 || !job->ok) {
        bool locked_user = auth_limiter_fail(s->by_user, ukey, now);
        bool locked_addr = auth_limiter_fail(s->by_addr, akey, now);

        log_warn("sign-in failed", "user=%s addr=%s%s%s", log_q(job->user), log_q(job->source),
                 locked_user ? " locked=user" : "", locked_addr ? " locked=addr" : "");
        if (wants_json(job->x)) {
            api__page_headers(job->x);
            api__reply_error(job->x, 401, MSG_BAD_LOGIN);
        } else {
            login_page(api, job->x, 401, &job->rd, MSG_BAD_LOGIN, job->user);
        }
        login_job_free(job);
        return;
    }
    auth_limiter_success(s->by_user, ukey);
    finish_signin(api, job->x, job->user, job->source, &job->rd);
    login_job_free(job);
}

static void
login_post(struct api *api, struct http_exchange *x)
{
    struct api_signin *s = api->signin;
    struct login_job *job = NULL;
    char *user = NULL, *password = NULL, *rd_text = NULL;
    char ukey[AUTH_USER_MAX + 8], akey[80];
    int64_t now = time_wall_ms();
    int64_t wait_user = 0, wait_addr = 0;
    struct user *u = NULL;
    struct eph_err err = {0};
    struct api_rd rd;
    char *source;
    int rc;

    if (!post_allowed(api, x))
        return;
    source = client_address(api, x);
    user = form_field(x, "user");
    password = form_field(x, "password");
    rd_text = form_field(x, "rd");
    if (check_rd(api, rd_text, &rd) == API_RD_BAD) {
        refuse_rd(x);
        goto out;
    }
    if (api->ac && !api->ac->local) {
        error_page(x, 403, "Sign-in refused", "signing in with a password is turned off here");
        goto out;
    }
    if (user == NULL || user[0] == '\0' || password == NULL || password[0] == '\0') {
        if (wants_json(x)) {
            api__page_headers(x);
            api__reply_error(x, 400, "a user name and a password are required");
        } else {
            login_page(api, x, 400, &rd, "enter your user name and password", NULL);
        }
        goto out;
    }
    limiter_keys(user, source, ukey, sizeof(ukey), akey, sizeof(akey));
    if (auth_limiter_locked(s->by_user, ukey, now, &wait_user) ||
        auth_limiter_locked(s->by_addr, akey, now, &wait_addr)) {
        int64_t wait_ms = wait_user > wait_addr ? wait_user : wait_addr;
        char retry[32];

        snprintf(retry, sizeof(retry), "%lld", (long long)((wait_ms + 999) / 1000));
        log_warn("sign-in refused while locked", "user=%s addr=%s retry_after_s=%s", log_q(user),
                 log_q(source), retry);
        http_add_header(x, "Retry-After", retry);
        error_page(x, 429, "Too many attempts",
                   "too many failed sign-ins: wait a few minutes and try again");
        goto out;
    }
    rc = store_user_get(api->st, user, &u, &err);
    if (rc < 0 && rc != EPH_ENOTFOUND) {
        log_error("cannot look up a user", "user=%s error=%s", log_q(user), log_q(err.msg));
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        goto out;
    }
    job = xcalloc(1, sizeof(*job));
    job->s = s;
    job->x = x;
    job->user = user;
    job->password = password;
    job->source = source;
    job->rd = rd;
    user = password = source = NULL; /* the job's now */
    if (u && u->password_hash && u->password_hash[0])
        job->hash = xstrdup(u->password_hash);
    rc = uv_queue_work(api->loop, &job->work, login_work, login_after);
    if (rc < 0) {
        log_error("cannot queue a password check", "error=%s", log_q(uv_strerror(rc)));
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        login_job_free(job);
        goto out;
    }
    s->jobs++;
out:
    user_free(u);
    if (password) {
        OPENSSL_cleanse(password, strlen(password));
        free(password);
    }
    free(user);
    free(rd_text);
    free(source);
}

/* ------------------------------------------------------------- POST /logout */

static void
logout_post(struct api *api, struct http_exchange *x)
{
    struct auth_who who;
    char set_cookie[512];

    if (!post_allowed(api, x))
        return;
    if (signed_in(api, x, &who)) {
        char *source = client_address(api, x);
        struct store_actor actor = {.name = who.user, .source = source};
        struct eph_err err = {0};

        if (api__session_end(api, who.session_id, &actor, "user.signout", &err) < 0)
            log_warn("cannot record a sign-out", "user=%s error=%s", log_q(who.user),
                     log_q(err.msg));
        else
            log_info("signed out", "user=%s addr=%s", log_q(who.user), log_q(source));
        free(source);
    }
    api__session_set_cookie(api, "", 0, set_cookie, sizeof(set_cookie));
    http_add_header(x, "Set-Cookie", set_cookie);
    api__page_redirect(x, 303, "/login");
}

/* ------------------------------------------------------------- GET /auth/ticket */

static void
ticket_get(struct api *api, struct http_exchange *x)
{
    char *rd_text = http_query_param(x, "rd");
    struct api_rd rd;
    struct auth_who who;
    struct auth_ticket t;
    char ticket[AUTH_SIGNED_MAX];
    struct buf loc;

    if (rd_text == NULL || check_rd(api, rd_text, &rd) == API_RD_BAD) {
        refuse_rd(x);
        goto out;
    }
    if (!signed_in(api, x, &who)) {
        redirect_to_login(x, rd.url);
        goto out;
    }
    if (rd.kind != API_RD_SERVICE) { /* the control host needs no ticket */
        api__page_redirect(x, 303, rd.url);
        goto out;
    }
    memset(&t, 0, sizeof(t));
    snprintf(t.session_id, sizeof(t.session_id), "%s", who.session_id);
    snprintf(t.host, sizeof(t.host), "%s", rd.authority); /* normalized by auth_ticket_make */
    snprintf(t.rd, sizeof(t.rd), "%s", rd.path);
    t.expires_ms = time_wall_ms() + TICKET_TTL_MS;
    if (auth_ticket_make(&api->key, &t, ticket) < 0) {
        error_page(x, 400, "Sign-in link refused", "this sign-in link cannot be handed over");
        goto out;
    }
    buf_init(&loc, 8 * 1024);
    buf_printf(&loc, "%s://%s/_eph/auth?ticket=", rd.https ? "https" : "http", rd.authority);
    api__url_encode(&loc, ticket);
    api__page_redirect(x, 303, buf_cstr(&loc));
    buf_release(&loc);
    OPENSSL_cleanse(ticket, sizeof(ticket));
out:
    free(rd_text);
}

/* ------------------------------------------------------------- /auth/cli */

/* The path and query that bring the browser back to the CLI page. */
static char *
cli_path(const char *port, const char *state)
{
    return xasprintf("/auth/cli?port=%s&state=%s", port, state);
}

static void
cli_get(struct api *api, struct http_exchange *x)
{
    char *port = http_query_param(x, "port");
    char *state = http_query_param(x, "state");
    char *back = NULL;
    char origin[64];
    struct auth_who who;
    struct buf body;
    int port_n = 0;

    if (!api__cli_params_valid(port, state, &port_n)) {
        error_page(x, 400, "Sign-in link refused", "this command-line sign-in link is malformed");
        goto out;
    }
    back = cli_path(port, state);
    if (!signed_in(api, x, &who)) {
        redirect_to_login(x, back);
        goto out;
    }
    buf_init(&body, 64 * 1024);
    buf_puts(&body,
             "<p>Allow the <code>eph</code> command line on this computer to act as <strong>");
    api__html_escape(&body, who.user);
    buf_puts(&body,
             "</strong>?</p>\n<p class=\"small\">It gets a token for 30 days with your role (");
    api__html_escape(&body, role_name(who.role));
    buf_puts(&body, "). Only allow this if you just ran <code>eph login</code>.</p>\n"
                    "<form method=\"post\" action=\"/auth/cli\">"
                    "<input type=\"hidden\" name=\"port\" value=\"");
    api__html_escape(&body, port);
    buf_puts(&body, "\"><input type=\"hidden\" name=\"state\" value=\"");
    api__html_escape(&body, state);
    buf_puts(&body, "\"><button type=\"submit\">Allow</button></form>\n"
                    "<a class=\"button alt\" href=\"/\">Cancel</a>");
    /* The form's answer redirects to the CLI's listener on this computer. */
    snprintf(origin, sizeof(origin), "http://127.0.0.1:%d", port_n);
    api__page_send(x, 200, "Command-line sign-in", buf_cstr(&body), origin);
    buf_release(&body);
out:
    free(back);
    free(port);
    free(state);
}

static void
cli_post(struct api *api, struct http_exchange *x)
{
    char *port = NULL, *state = NULL, *source = NULL, *back = NULL;
    char name[16], hex[9];
    char token[AUTH_TOKEN_MAX];
    struct auth_who who;
    struct eph_err err = {0};
    struct store_actor actor;
    struct buf loc;
    int port_n = 0;
    int rc;

    if (!post_allowed(api, x))
        return;
    port = form_field(x, "port");
    state = form_field(x, "state");
    if (!api__cli_params_valid(port, state, &port_n)) {
        error_page(x, 400, "Sign-in link refused", "this command-line sign-in link is malformed");
        goto out;
    }
    if (!signed_in(api, x, &who)) {
        back = cli_path(port, state);
        redirect_to_login(x, back);
        goto out;
    }
    if (auth_random_hex(4, hex) < 0) {
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        goto out;
    }
    snprintf(name, sizeof(name), "cli-%s", hex);
    source = client_address(api, x);
    actor = (struct store_actor){.name = who.user, .source = source};
    rc = api__token_create(api, name, who.user, who.role, time_wall_ms() + CLI_TOKEN_TTL_MS, &actor,
                           token, NULL, &err);
    if (rc < 0) {
        log_error("cannot create a command-line token", "user=%s error=%s", log_q(who.user),
                  log_q(err.msg));
        error_page(x, 500, "Sign-in failed", "cannot create a token: see the server log");
        goto out;
    }
    log_info("command-line sign-in", "user=%s token=%s addr=%s", log_q(who.user), name,
             log_q(source));
    buf_init(&loc, 8 * 1024);
    buf_printf(&loc, "http://127.0.0.1:%d/callback?token=", port_n);
    api__url_encode(&loc, token);
    buf_puts(&loc, "&state=");
    api__url_encode(&loc, state);
    OPENSSL_cleanse(token, sizeof(token));
    api__page_redirect(x, 303, buf_cstr(&loc));
    OPENSSL_cleanse(loc.data, loc.len);
    buf_release(&loc);
out:
    free(back);
    free(source);
    free(port);
    free(state);
}

/* ------------------------------------------------------------- pending sign-ins */

static void
pending_unlink(struct api_signin *s, struct pending *p)
{
    if (p->older)
        p->older->newer = p->newer;
    else
        s->oldest = p->newer;
    if (p->newer)
        p->newer->older = p->older;
    else
        s->newest = p->older;
    s->n_pending--;
}

static void
pending_free(struct pending *p)
{
    if (p == NULL)
        return;
    free(p->provider);
    free(p->rd);
    OPENSSL_cleanse(p, sizeof(*p));
    free(p);
}

/* Keeps a new pending sign-in, dropping expired ones and, past
 * PENDING_MAX, the oldest. */
static void
pending_add(struct api_signin *s, struct pending *p, int64_t now)
{
    while (s->oldest && (s->oldest->expires_ms <= now || s->n_pending >= PENDING_MAX)) {
        struct pending *old = s->oldest;

        pending_unlink(s, old);
        pending_free(old);
    }
    p->older = s->newest;
    p->newer = NULL;
    if (s->newest)
        s->newest->newer = p;
    else
        s->oldest = p;
    s->newest = p;
    s->n_pending++;
}

/* Takes the pending sign-in with `state` for provider `provider` of `kind`
 * out of the list (used once); NULL if unknown or expired. */
static struct pending *
pending_take(struct api_signin *s, enum pending_kind kind, const char *provider, const char *state,
             int64_t now)
{
    if (state == NULL || strlen(state) != 32)
        return NULL;
    for (struct pending *p = s->newest; p; p = p->older) {
        if (!auth_equal_ct(p->state, 32, state, 32))
            continue;
        pending_unlink(s, p);
        if (p->kind != kind || strcmp(p->provider, provider) != 0 || p->expires_ms <= now) {
            pending_free(p);
            return NULL;
        }
        return p;
    }
    return NULL;
}

/* ------------------------------------------------------------- identities */

/* What an identity provider vouched for, handed to sign_in_identity. */
struct identity {
    const char *provider;  /* "oidc:<name>" or "github" (the store's provider) */
    const char *subject;   /* the provider's id of the person */
    const char *preferred; /* a name to derive the user's from; may be NULL */
    const char *email;     /* may be NULL */
    bool email_verified;
};

/*
 * Finds the user an identity belongs to, or creates one (a unique name
 * derived from the identity, the role the config gives the email), keeps
 * the email current, and signs them in. The allowlist was checked before.
 */
static void
sign_in_identity(struct api *api, struct http_exchange *x, const struct identity *id,
                 const struct api_rd *rd)
{
    struct user *u = NULL;
    struct eph_err err = {0};
    char *source = client_address(api, x);
    const char *email = id->email ? id->email : "";
    int rc = store_user_find_identity(api->st, id->provider, id->subject, &u, &err);

    if (rc == EPH_ENOTFOUND) {
        char base[API_USER_NAME_MAX + 1], name[API_USER_NAME_MAX + 1];
        struct store_actor actor = {.name = "system", .source = source};
        struct user nu = {0};
        const char *role =
            role_name(auth_config_role_for(api->ac, id->email_verified ? email : ""));

        api__derive_user_name(id->preferred, email, base);
        rc = EPH_ECONFLICT;
        for (unsigned n = 1; n <= USER_NAME_TRIES && rc == EPH_ECONFLICT; n++) {
            struct user *taken = NULL;

            api__user_name_candidate(base, n, name);
            if (store_user_get(api->st, name, &taken, NULL) == 0) {
                user_free(taken);
                continue;
            }
            nu = (struct user){
                .name = name,
                .email = (char *)email,
                .role = (char *)role,
                .provider = (char *)id->provider,
                .subject = (char *)id->subject,
            };
            eph_err_clear(&err);
            rc = store_user_add(api->st, &nu, &actor, &err);
            if (rc == EPH_ECONFLICT && strstr(err.msg, "identity") != NULL)
                break; /* the identity itself is taken: not a name clash */
        }
        if (rc == 0) {
            api__index_put_user(api, &nu);
            log_info("user created at sign-in", "user=%s provider=%s role=%s", log_q(name),
                     log_q(id->provider), role);
            rc = store_user_get(api->st, name, &u, &err);
        }
    } else if (rc == 0 && strcmp(u->email ? u->email : "", email) != 0 && email[0]) {
        if (store_user_set_email(api->st, u->name, email, &err) == 0) {
            free(u->email);
            u->email = xstrdup(email);
            api__index_put_user(api, u);
        } else {
            log_warn("cannot record a changed email", "user=%s error=%s", log_q(u->name),
                     log_q(err.msg));
        }
    }
    if (rc < 0) {
        log_error("cannot sign in an identity", "provider=%s error=%s", log_q(id->provider),
                  log_q(err.msg));
        error_page(x, 500, "Sign-in failed", "cannot record who you are: see the server log");
        goto out;
    }
    finish_signin(api, x, u->name, source, rd);
out:
    user_free(u);
    free(source);
}

/* True if the config lets this email in; else answers 403 naming it. */
static bool
email_admitted(struct api *api, struct http_exchange *x, const char *email, bool verified)
{
    const char *checked = email && verified ? email : "";
    char msg[AUTH_EMAIL_MAX + 64];

    if (auth_config_email_allowed(api->ac, checked))
        return true;
    if (checked[0])
        snprintf(msg, sizeof(msg), "%s may not sign in here", checked);
    else
        snprintf(msg, sizeof(msg), "a verified email address is required to sign in here");
    log_warn("sign-in refused by the allowlist", "email=%s verified=%s", log_q(email ? email : ""),
             verified ? "true" : "false");
    error_page(x, 403, "Sign-in refused", msg);
    return false;
}

/*
 * Answers a sign-in the provider's side of which failed: refused
 * (EPH_EUNAUTH: a code used twice, an ID token that did not pass) 403; our
 * own failure 500; the provider unreachable or making no sense 502. The
 * details are in the log, not on the page.
 */
static void
provider_failed(struct http_exchange *x, int rc)
{
    if (rc == EPH_EUNAUTH)
        error_page(x, 403, "Sign-in refused",
                   "the sign-in provider's answer was not accepted: start again");
    else if (rc == EPH_EINTERNAL)
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
    else
        error_page(x, 502, "Sign-in failed",
                   "cannot complete the sign-in with the provider: try again later");
}

/* ------------------------------------------------------------- OpenID Connect */

/*
 * A JWKS shared by the cache and the callbacks verifying with it: the loop
 * counts references (taken when a job is queued, dropped in its after
 * callback), so a key rotation never frees a set a worker still reads.
 */
struct jwks_ref {
    unsigned refs;
    struct oidc_jwks *jwks;
};

static struct jwks_ref *
jwks_ref_new(struct oidc_jwks *jwks)
{
    struct jwks_ref *r = xcalloc(1, sizeof(*r));

    r->refs = 1;
    r->jwks = jwks;
    return r;
}

static void
jwks_unref(struct jwks_ref *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    oidc_jwks_free(r->jwks);
    free(r);
}

/* A request waiting for its provider's discovery and keys. */
struct oidc_waiter {
    struct oidc_waiter *next;
    struct http_exchange *x;
    char *rd; /* checked already */
};

/* What is known of one OIDC provider: fetched once, on first use. */
struct oidc_cache {
    struct oidc_cache *next;
    char *name;
    struct oidc_discovery *disc; /* NULL until fetched; then kept for the process */
    struct jwks_ref *jwks;       /* NULL until fetched; replaced on key rotation */
    bool fetching;               /* a fetch job is queued */
    struct oidc_waiter *waiters; /* starts waiting for that job */
};

static void
discovery_free(struct oidc_discovery *d)
{
    if (d == NULL)
        return;
    oidc_discovery_release(d);
    free(d);
}

static struct oidc_cache *
oidc_cache_get(struct api_signin *s, const char *name)
{
    struct oidc_cache *c;

    for (c = s->oidc; c; c = c->next) {
        if (strcmp(c->name, name) == 0)
            return c;
    }
    c = xcalloc(1, sizeof(*c));
    c->name = xstrdup(name);
    c->next = s->oidc;
    s->oidc = c;
    return c;
}

static void
oidc_caches_free(struct api_signin *s)
{
    while (s->oidc) {
        struct oidc_cache *c = s->oidc;

        s->oidc = c->next;
        EPH_ASSERT(c->waiters == NULL);
        discovery_free(c->disc);
        jwks_unref(c->jwks);
        free(c->name);
        free(c);
    }
}

/* The provider `name` of `type`, or NULL after answering 404. */
static const struct auth_provider_cfg *
provider_or_404(struct api *api, struct http_exchange *x, const char *name,
                enum auth_provider_type type)
{
    const struct auth_provider_cfg *p = api->ac ? auth_config_provider(api->ac, name) : NULL;

    if (p == NULL || p->type != type) {
        char msg[256];

        snprintf(msg, sizeof(msg), "there is no sign-in provider named '%.100s'", name);
        error_page(x, 404, "Unknown provider", msg);
        return NULL;
    }
    return p;
}

static char *
callback_uri(struct api *api, const char *kind, const char *name)
{
    size_t n = strlen(api->public_base);

    while (n > 0 && api->public_base[n - 1] == '/')
        n--;
    if (name)
        return xasprintf("%.*s/auth/%s/%s/callback", (int)n, api->public_base, kind, name);
    return xasprintf("%.*s/auth/%s/callback", (int)n, api->public_base, kind);
}

/* A fresh pending sign-in for provider `name`, with random state and nonce
 * and a PKCE verifier; NULL if there is no randomness. */
static struct pending *
pending_new(enum pending_kind kind, const char *name, const char *rd)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    char challenge[OIDC_PKCE_MAX];

    if (auth_random_hex(16, p->state) < 0 || auth_random_hex(16, p->nonce) < 0 ||
        (kind == PENDING_OIDC && oidc_pkce_make(p->verifier, challenge) < 0)) {
        free(p);
        return NULL;
    }
    p->kind = kind;
    p->provider = xstrdup(name);
    p->rd = xstrdup(rd);
    p->expires_ms = time_wall_ms() + PENDING_TTL_MS;
    return p;
}

/* Discovery and keys are known: remembers the attempt and sends the browser
 * to the provider. */
static void
oidc_redirect(struct api *api, struct http_exchange *x, struct oidc_cache *c, const char *rd)
{
    const struct auth_provider_cfg *prov = auth_config_provider(api->ac, c->name);
    struct pending *p;
    char *redirect_uri = NULL, *url = NULL;
    char challenge[OIDC_PKCE_MAX];

    if (prov == NULL || prov->type != AUTH_PROVIDER_OIDC) { /* the config changed meanwhile */
        error_page(x, 404, "Unknown provider", "this sign-in provider is gone");
        return;
    }
    p = pending_new(PENDING_OIDC, c->name, rd);
    if (p == NULL) {
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        return;
    }
    redirect_uri = callback_uri(api, "oidc", c->name);
    oidc_pkce_challenge(p->verifier, challenge);
    url = oidc_authorize_url(c->disc, prov->client_id, redirect_uri, prov->scopes, p->state,
                             p->nonce, challenge);
    pending_add(api->signin, p, time_wall_ms());
    api__page_redirect(x, 302, url);
    free(url);
    free(redirect_uri);
}

/* Fetching discovery and keys on the thread pool. */
struct oidc_fetch_job {
    uv_work_t work;
    struct api_signin *s;
    struct oidc_cache *c;
    char *issuer;
    struct oidc_discovery *disc; /* the work's results */
    struct oidc_jwks *jwks;
    int rc;
    struct eph_err err;
};

static void
oidc_fetch_work(uv_work_t *w)
{
    struct oidc_fetch_job *job = container_of(w, struct oidc_fetch_job, work);

    job->disc = xcalloc(1, sizeof(*job->disc));
    job->rc = oidc_fetch_discovery(job->issuer, job->disc, &job->err);
    if (job->rc == 0)
        job->rc = oidc_fetch_jwks(job->disc->jwks_uri, &job->jwks, &job->err);
}

static void
oidc_fetch_after(uv_work_t *w, int status)
{
    struct oidc_fetch_job *job = container_of(w, struct oidc_fetch_job, work);
    struct oidc_cache *c = job->c;
    struct oidc_waiter *waiters = c->waiters;
    struct api *api = job->s->api;

    job->s->jobs--;
    c->fetching = false;
    c->waiters = NULL;
    if (status < 0 && job->rc == 0)
        job->rc = eph_err_set(&job->err, EPH_EINTERNAL, "cancelled");
    if (job->rc == 0) {
        if (c->disc == NULL) {
            c->disc = job->disc;
            job->disc = NULL;
        }
        jwks_unref(c->jwks);
        c->jwks = jwks_ref_new(job->jwks);
        job->jwks = NULL;
        log_info("sign-in provider ready", "provider=%s", log_q(c->name));
    } else {
        log_warn("cannot reach a sign-in provider", "provider=%s error=%s", log_q(c->name),
                 log_q(job->err.msg));
    }
    while (waiters) {
        struct oidc_waiter *wt = waiters;

        waiters = wt->next;
        if (job->rc == 0)
            oidc_redirect(api, wt->x, c, wt->rd);
        else
            error_page(wt->x, 502, "Sign-in failed",
                       "cannot reach the sign-in provider: try again later");
        free(wt->rd);
        free(wt);
    }
    discovery_free(job->disc);
    oidc_jwks_free(job->jwks);
    free(job->issuer);
    free(job);
}

static void
oidc_start(struct api *api, struct http_exchange *x, const char *name)
{
    const struct auth_provider_cfg *prov = provider_or_404(api, x, name, AUTH_PROVIDER_OIDC);
    char *rd_text = NULL;
    struct api_rd rd;
    struct oidc_cache *c;
    struct oidc_waiter *wt;

    if (prov == NULL)
        return;
    rd_text = http_query_param(x, "rd");
    if (check_rd(api, rd_text, &rd) == API_RD_BAD) {
        refuse_rd(x);
        goto out;
    }
    c = oidc_cache_get(api->signin, prov->name);
    if (c->disc && c->jwks) {
        oidc_redirect(api, x, c, rd.url);
        goto out;
    }
    if (!c->fetching) {
        struct oidc_fetch_job *job = xcalloc(1, sizeof(*job));
        int rc;

        job->s = api->signin;
        job->c = c;
        job->issuer = xstrdup(prov->issuer);
        rc = uv_queue_work(api->loop, &job->work, oidc_fetch_work, oidc_fetch_after);
        if (rc < 0) {
            log_error("cannot queue a provider fetch", "error=%s", log_q(uv_strerror(rc)));
            free(job->issuer);
            free(job);
            error_page(x, 500, "Sign-in failed", "internal error: see the server log");
            goto out;
        }
        api->signin->jobs++;
        c->fetching = true;
    }
    wt = xcalloc(1, sizeof(*wt));
    wt->x = x;
    wt->rd = xstrdup(rd.url);
    wt->next = c->waiters;
    c->waiters = wt;
out:
    free(rd_text);
}

/* A provider's answer (?code=...&state=...) being checked on the thread pool. */
struct oidc_cb_job {
    uv_work_t work;
    struct api_signin *s;
    struct http_exchange *x;
    struct oidc_cache *c;
    struct jwks_ref *jwks; /* a reference of the job's own */
    struct pending *p;
    char *issuer, *client_id, *client_secret, *redirect_uri;
    char *code;
    /* the work's results */
    struct oidc_jwks *fresh_jwks; /* fetched again after an unknown key id */
    struct oidc_claims claims;
    int rc;
    struct eph_err err;
};

static void
oidc_cb_work(uv_work_t *w)
{
    struct oidc_cb_job *job = container_of(w, struct oidc_cb_job, work);
    char *id_token = NULL;
    int64_t now_s = time_wall_ms() / 1000;

    job->rc = oidc_exchange_code(job->c->disc, job->client_id, job->client_secret, job->code,
                                 job->redirect_uri, job->p->verifier, &id_token, &job->err);
    if (job->rc < 0)
        goto out;
    job->rc = oidc_id_token_verify(id_token, strlen(id_token), job->jwks->jwks, job->issuer,
                                   job->client_id, job->p->nonce, now_s, ID_TOKEN_LEEWAY_S,
                                   &job->claims, &job->err);
    if (job->rc == EPH_ENOTFOUND) { /* a key id we do not know: the keys rotated */
        eph_err_clear(&job->err);
        job->rc = oidc_fetch_jwks(job->c->disc->jwks_uri, &job->fresh_jwks, &job->err);
        if (job->rc == 0)
            job->rc = oidc_id_token_verify(id_token, strlen(id_token), job->fresh_jwks, job->issuer,
                                           job->client_id, job->p->nonce, now_s, ID_TOKEN_LEEWAY_S,
                                           &job->claims, &job->err);
        /* Not in the provider's keys as they are now either: a token no key
         * of the provider signed is refused like a bad signature (403), not
         * taken for a provider out of order (502). */
        if (job->rc == EPH_ENOTFOUND)
            job->rc = eph_err_set(&job->err, EPH_EUNAUTH,
                                  "ID token signed by a key the provider does not publish");
    }
out:
    if (id_token) {
        OPENSSL_cleanse(id_token, strlen(id_token));
        free(id_token);
    }
}

static void
oidc_cb_job_free(struct oidc_cb_job *job)
{
    jwks_unref(job->jwks);
    oidc_jwks_free(job->fresh_jwks);
    oidc_claims_release(&job->claims);
    pending_free(job->p);
    free(job->issuer);
    free(job->client_id);
    if (job->client_secret) {
        OPENSSL_cleanse(job->client_secret, strlen(job->client_secret));
        free(job->client_secret);
    }
    free(job->redirect_uri);
    if (job->code) {
        OPENSSL_cleanse(job->code, strlen(job->code));
        free(job->code);
    }
    free(job);
}

static void
oidc_cb_after(uv_work_t *w, int status)
{
    struct oidc_cb_job *job = container_of(w, struct oidc_cb_job, work);
    struct api *api = job->s->api;
    struct oidc_cache *c = job->c;
    struct api_rd rd;
    char provider[AUTH_USER_MAX + 8];

    job->s->jobs--;
    if (job->fresh_jwks) {
        jwks_unref(c->jwks);
        c->jwks = jwks_ref_new(job->fresh_jwks);
        job->fresh_jwks = NULL;
        log_info("sign-in provider keys refreshed", "provider=%s", log_q(c->name));
    }
    if (status < 0 && job->rc == 0)
        job->rc = eph_err_set(&job->err, EPH_EINTERNAL, "cancelled");
    if (job->rc < 0) {
        log_warn("sign-in failed at the provider", "provider=%s error=%s", log_q(c->name),
                 log_q(job->err.msg));
        provider_failed(job->x, job->rc);
        goto out;
    }
    if (check_rd(api, job->p->rd, &rd) == API_RD_BAD) { /* checked at start; hosts may change */
        refuse_rd(job->x);
        goto out;
    }
    if (!email_admitted(api, job->x, job->claims.email, job->claims.email_verified))
        goto out;
    snprintf(provider, sizeof(provider), "oidc:%s", c->name);
    {
        struct identity id = {
            .provider = provider,
            .subject = job->claims.sub,
            .preferred = job->claims.preferred_username,
            .email = job->claims.email,
            .email_verified = job->claims.email_verified,
        };

        sign_in_identity(api, job->x, &id, &rd);
    }
out:
    oidc_cb_job_free(job);
}

/* The provider's error parameter, or NULL after answering: false if answered. */
static bool
provider_error(struct http_exchange *x, const char *provider)
{
    char *error = http_query_param(x, "error");
    char msg[256];

    if (error == NULL)
        return false;
    log_warn("sign-in refused by the provider", "provider=%s error=%s", log_q(provider),
             log_q(error));
    snprintf(msg, sizeof(msg), "the sign-in provider refused: %.120s", error);
    error_page(x, 403, "Sign-in refused", msg);
    free(error);
    return true;
}

static void
oidc_callback(struct api *api, struct http_exchange *x, const char *name)
{
    const struct auth_provider_cfg *prov = provider_or_404(api, x, name, AUTH_PROVIDER_OIDC);
    char *state = NULL, *code = NULL;
    struct pending *p = NULL;
    struct oidc_cache *c;
    struct oidc_cb_job *job;
    int rc;

    if (prov == NULL)
        return;
    state = http_query_param(x, "state");
    p = pending_take(api->signin, PENDING_OIDC, prov->name, state, time_wall_ms());
    if (p == NULL) {
        error_page(x, 400, "Sign-in failed", MSG_STATE);
        goto out;
    }
    if (provider_error(x, prov->name))
        goto out;
    code = http_query_param(x, "code");
    c = oidc_cache_get(api->signin, prov->name);
    if (code == NULL || code[0] == '\0' || c->disc == NULL || c->jwks == NULL) {
        error_page(x, 400, "Sign-in failed", "the sign-in provider sent no code: start again");
        goto out;
    }
    job = xcalloc(1, sizeof(*job));
    job->s = api->signin;
    job->x = x;
    job->c = c;
    job->jwks = c->jwks;
    job->jwks->refs++;
    job->p = p;
    job->code = code;
    p = NULL;
    code = NULL;
    job->issuer = xstrdup(prov->issuer);
    job->client_id = xstrdup(prov->client_id);
    job->client_secret = xstrdup(prov->client_secret);
    job->redirect_uri = callback_uri(api, "oidc", prov->name);
    rc = uv_queue_work(api->loop, &job->work, oidc_cb_work, oidc_cb_after);
    if (rc < 0) {
        log_error("cannot queue a sign-in check", "error=%s", log_q(uv_strerror(rc)));
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        oidc_cb_job_free(job);
        goto out;
    }
    api->signin->jobs++;
out:
    pending_free(p);
    free(code);
    free(state);
}

/* ------------------------------------------------------------- GitHub */

/* The GitHub provider (the first of type github), or NULL after answering 404. */
static const struct auth_provider_cfg *
github_provider_or_404(struct api *api, struct http_exchange *x)
{
    for (size_t i = 0; api->ac && i < api->ac->n_providers; i++) {
        if (api->ac->providers[i].type == AUTH_PROVIDER_GITHUB)
            return &api->ac->providers[i];
    }
    error_page(x, 404, "Unknown provider", "sign-in with GitHub is not configured here");
    return NULL;
}

static void
github_start(struct api *api, struct http_exchange *x)
{
    const struct auth_provider_cfg *prov = github_provider_or_404(api, x);
    char *rd_text = NULL, *redirect_uri = NULL, *url = NULL;
    struct api_rd rd;
    struct pending *p;

    if (prov == NULL)
        return;
    rd_text = http_query_param(x, "rd");
    if (check_rd(api, rd_text, &rd) == API_RD_BAD) {
        refuse_rd(x);
        goto out;
    }
    p = pending_new(PENDING_GITHUB, prov->name, rd.url);
    if (p == NULL) {
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        goto out;
    }
    redirect_uri = callback_uri(api, "github", NULL);
    url = github_authorize_url(prov->web_url, prov->client_id, redirect_uri, p->state);
    pending_add(api->signin, p, time_wall_ms());
    api__page_redirect(x, 302, url);
out:
    free(url);
    free(redirect_uri);
    free(rd_text);
}

/* A GitHub answer being checked on the thread pool. */
struct github_job {
    uv_work_t work;
    struct api_signin *s;
    struct http_exchange *x;
    struct pending *p;
    char *provider; /* the provider's name in the config */
    char *web_url, *api_url, *client_id, *client_secret, *redirect_uri, *code;
    char **orgs, **teams;
    size_t n_orgs, n_teams;
    /* the work's results */
    struct github_user user;
    bool member;
    int rc;
    struct eph_err err;
};

static char **
strv_dup(char *const *v, size_t n)
{
    char **out = n ? xcalloc(n, sizeof(*out)) : NULL;

    for (size_t i = 0; i < n; i++)
        out[i] = xstrdup(v[i]);
    return out;
}

static void
strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void
wipe_free(char *s)
{
    if (s) {
        OPENSSL_cleanse(s, strlen(s));
        free(s);
    }
}

static void
github_job_free(struct github_job *job)
{
    pending_free(job->p);
    github_user_release(&job->user);
    free(job->provider);
    free(job->web_url);
    free(job->api_url);
    free(job->client_id);
    wipe_free(job->client_secret);
    free(job->redirect_uri);
    wipe_free(job->code);
    strv_free(job->orgs, job->n_orgs);
    strv_free(job->teams, job->n_teams);
    free(job);
}

static void
github_work(uv_work_t *w)
{
    struct github_job *job = container_of(w, struct github_job, work);
    char *access_token = NULL;

    job->rc = github_exchange_code(job->web_url, job->client_id, job->client_secret, job->code,
                                   job->redirect_uri, &access_token, &job->err);
    if (job->rc == 0)
        job->rc = github_fetch_user(job->api_url, access_token, &job->user, &job->err);
    if (job->rc == 0)
        job->rc = github_check_membership(
            job->api_url, access_token, job->user.login, (const char *const *)job->orgs,
            job->n_orgs, (const char *const *)job->teams, job->n_teams, &job->member, &job->err);
    wipe_free(access_token);
}

static void
github_after(uv_work_t *w, int status)
{
    struct github_job *job = container_of(w, struct github_job, work);
    struct api *api = job->s->api;
    struct api_rd rd;
    char subject[32];
    char msg[256];

    job->s->jobs--;
    if (status < 0 && job->rc == 0)
        job->rc = eph_err_set(&job->err, EPH_EINTERNAL, "cancelled");
    if (job->rc < 0) {
        log_warn("sign-in failed at the provider", "provider=github error=%s", log_q(job->err.msg));
        provider_failed(job->x, job->rc);
        goto out;
    }
    if (!job->member) {
        log_warn("sign-in refused: not a member", "provider=github login=%s",
                 log_q(job->user.login));
        snprintf(msg, sizeof(msg), "%.100s is not a member of an organization or team allowed here",
                 job->user.login);
        error_page(job->x, 403, "Sign-in refused", msg);
        goto out;
    }
    if (check_rd(api, job->p->rd, &rd) == API_RD_BAD) {
        refuse_rd(job->x);
        goto out;
    }
    /* GitHub shows a public email only if verified, else the primary verified one. */
    if (!email_admitted(api, job->x, job->user.email, job->user.email != NULL))
        goto out;
    snprintf(subject, sizeof(subject), "%lld", (long long)job->user.id);
    {
        struct identity id = {
            .provider = "github",
            .subject = subject,
            .preferred = job->user.login,
            .email = job->user.email,
            .email_verified = job->user.email != NULL,
        };

        sign_in_identity(api, job->x, &id, &rd);
    }
out:
    github_job_free(job);
}

static void
github_callback(struct api *api, struct http_exchange *x)
{
    const struct auth_provider_cfg *prov = github_provider_or_404(api, x);
    char *state = NULL, *code = NULL;
    struct pending *p = NULL;
    struct github_job *job;
    int rc;

    if (prov == NULL)
        return;
    state = http_query_param(x, "state");
    p = pending_take(api->signin, PENDING_GITHUB, prov->name, state, time_wall_ms());
    if (p == NULL) {
        error_page(x, 400, "Sign-in failed", MSG_STATE);
        goto out;
    }
    if (provider_error(x, "github"))
        goto out;
    code = http_query_param(x, "code");
    if (code == NULL || code[0] == '\0') {
        error_page(x, 400, "Sign-in failed", "GitHub sent no code: start again");
        goto out;
    }
    job = xcalloc(1, sizeof(*job));
    job->s = api->signin;
    job->x = x;
    job->p = p;
    job->code = code;
    p = NULL;
    code = NULL;
    job->provider = xstrdup(prov->name);
    job->web_url = xstrdup(prov->web_url);
    job->api_url = xstrdup(prov->api_url);
    job->client_id = xstrdup(prov->client_id);
    job->client_secret = xstrdup(prov->client_secret);
    job->redirect_uri = callback_uri(api, "github", NULL);
    job->orgs = strv_dup(prov->orgs, prov->n_orgs);
    job->n_orgs = prov->n_orgs;
    job->teams = strv_dup(prov->teams, prov->n_teams);
    job->n_teams = prov->n_teams;
    rc = uv_queue_work(api->loop, &job->work, github_work, github_after);
    if (rc < 0) {
        log_error("cannot queue a sign-in check", "error=%s", log_q(uv_strerror(rc)));
        error_page(x, 500, "Sign-in failed", "internal error: see the server log");
        github_job_free(job);
        goto out;
    }
    api->signin->jobs++;
out:
    pending_free(p);
    free(code);
    free(state);
}

/* ------------------------------------------------------------- provider routes */

/* /auth/oidc/<name>/{start,callback}, /auth/github/{start,callback}: true if
 * `path` is one of them (answered). */
static bool
providers_route(struct api *api, struct http_exchange *x, const char *path, const char *m)
{
    static const char oidc[] = "/auth/oidc/";
    char name[128];
    const char *rest, *slash;
    bool start;

    if (strcmp(path, "/auth/github/start") == 0 || strcmp(path, "/auth/github/callback") == 0) {
        if (!is_get(m))
            not_allowed(x, "GET, HEAD");
        else if (strcmp(path, "/auth/github/start") == 0)
            github_start(api, x);
        else
            github_callback(api, x);
        return true;
    }
    if (strncmp(path, oidc, sizeof(oidc) - 1) != 0)
        return false;
    rest = path + sizeof(oidc) - 1;
    slash = strchr(rest, '/');
    if (slash == NULL || slash == rest || (size_t)(slash - rest) >= sizeof(name))
        return false;
    if (strcmp(slash, "/start") == 0)
        start = true;
    else if (strcmp(slash, "/callback") == 0)
        start = false;
    else
        return false;
    memcpy(name, rest, (size_t)(slash - rest));
    name[slash - rest] = '\0';
    if (!is_get(m))
        not_allowed(x, "GET, HEAD");
    else if (start)
        oidc_start(api, x, name);
    else
        oidc_callback(api, x, name);
    return true;
}

/* ------------------------------------------------------------- routing */

bool
api__signin_handle(struct api *api, struct http_exchange *x, const char *path)
{
    const char *m = http_method(x);
    bool post = strcmp(m, "POST") == 0;

    if (api->ix == NULL) /* sign-in was never set up (api_set_auth) */
        return false;
    if (strcmp(path, "/") == 0) {
        if (is_get(m))
            home_page(api, x);
        else
            not_allowed(x, "GET, HEAD");
    } else if (strcmp(path, "/login") == 0) {
        if (is_get(m))
            login_get(api, x);
        else if (post)
            login_post(api, x);
        else
            not_allowed(x, "GET, HEAD, POST");
    } else if (strcmp(path, "/logout") == 0) {
        if (post)
            logout_post(api, x);
        else
            not_allowed(x, "POST");
    } else if (strcmp(path, "/auth/ticket") == 0) {
        if (is_get(m))
            ticket_get(api, x);
        else
            not_allowed(x, "GET, HEAD");
    } else if (strcmp(path, "/auth/cli") == 0) {
        if (is_get(m))
            cli_get(api, x);
        else if (post)
            cli_post(api, x);
        else
            not_allowed(x, "GET, HEAD, POST");
    } else if (!providers_route(api, x, path, m)) {
        return false;
    }
    return true;
}

/* ------------------------------------------------------------- lifecycle */

struct api_signin *
api__signin_new(struct api *api)
{
    struct api_signin *s = xcalloc(1, sizeof(*s));

    s->api = api;
    s->by_user =
        auth_limiter_new(LIMIT_USER_FAILURES, LIMIT_WINDOW_MS, LIMIT_LOCK_MS, LIMIT_MAX_KEYS);
    s->by_addr =
        auth_limiter_new(LIMIT_ADDR_FAILURES, LIMIT_WINDOW_MS, LIMIT_LOCK_MS, LIMIT_MAX_KEYS);
    return s;
}

void
api__signin_free(struct api_signin *s)
{
    if (s == NULL)
        return;
    EPH_ASSERT(s->jobs == 0); /* requests in flight are finished first */
    while (s->oldest) {
        struct pending *p = s->oldest;

        pending_unlink(s, p);
        pending_free(p);
    }
    oidc_caches_free(s);
    auth_limiter_free(s->by_user);
    auth_limiter_free(s->by_addr);
    free(s);
}
