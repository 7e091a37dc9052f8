/*
 * api/api.c - the front of the REST API: routes /api/v1 paths to their
 * handlers, authenticates bearer tokens against the store, and formats
 * every reply (JSON bodies and the error shape of docs/api.md). Also
 * GET /metrics, which needs no token.
 *
 * Handlers live beside this file by resource (api_projects.c, api_envs.c,
 * api_logs.c, api_events.c); JSON renderings of records in api_json.c.
 */
#include "api/api.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "api/api_int.h"
#include "auth/auth.h"
#include "util/cookie.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"
#include "util/redact.h"

#define API_PREFIX "/api/v1/"
#define API_MAX_SEGMENTS 4 /* envs/{name}/logs/{service} */
/* A scrape of 10,000 environments' request series fits with room. */
#define API_METRICS_MAX_BYTES (64 * 1024 * 1024)

/* ------------------------------------------------------------- replies */

void
api__reply_json(struct http_exchange *x, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    size_t len;

    json_decref(body);
    if (text == NULL) {
        static const char oops[] =
            "{\"error\": {\"code\": \"internal\", \"message\": \"cannot encode the reply\"}}\n";

        log_error("cannot encode a reply", "path=%s", log_q(http_path(x)));
        http_respond(x, 500, "application/json", oops, sizeof(oops) - 1);
        return;
    }
    len = strlen(text);
    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    text[len] = '\0';
    http_respond(x, status, "application/json", text, len);
    free(text);
}

static const char *
code_of(int status)
{
    switch (status) {
    case 400: return "invalid";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 409: return "conflict";
    case 413: return "too_large";
    case 422: return "unprocessable";
    case 429: return "too_many_requests";
    case 503: return "unavailable";
    default: return status >= 500 ? "internal" : "invalid";
    }
}

/*
 * Replaces what is not valid UTF-8 with '?', in place: messages quote what
 * clients sent (a decoded path, a name cut at a byte count), and JSON
 * strings must be valid. Overlong forms, surrogates and code points past
 * U+10FFFF count as invalid, as jansson counts them.
 */
static void
utf8_sanitize(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p) {
        unsigned c = *p;
        size_t need = c < 0x80             ? 0
                      : (c & 0xE0) == 0xC0 ? 1
                      : (c & 0xF0) == 0xE0 ? 2
                      : (c & 0xF8) == 0xF0 ? 3
                                           : 4;
        unsigned cp = need == 1 ? (c & 0x1F) : need == 2 ? (c & 0x0F) : (c & 0x07);
        size_t i;

        if (need == 0) {
            p++;
            continue;
        }
        for (i = 1; need < 4 && i <= need; i++) {
            if ((p[i] & 0xC0) != 0x80)
                break;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        if (need == 4 || i <= need || (need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
            (need == 3 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) {
            *p++ = '?';
            continue;
        }
        p += need + 1;
    }
}

void
api__reply_error(struct http_exchange *x, int status, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    char *shown;
    json_t *body;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    utf8_sanitize(msg);
    /* Messages quote repository URLs and git's words about them: never a
     * password or token a URL carried. */
    shown = redact_credentials(msg);
    body = json_pack("{s:{s:s, s:s}}", "error", "code", code_of(status), "message", shown);
    free(shown);
    api__reply_json(x, status, body);
}

int
api__status_of(int rc)
{
    switch (rc) {
    case EPH_EINVAL: return 400;
    case EPH_EUNAUTH: return 401;
    case EPH_EPERM: return 403;
    case EPH_ENOTFOUND: return 404;
    case EPH_ECONFLICT: return 409;
    case EPH_ETOOBIG: return 413;
    case EPH_EPARSE: return 422;
    case EPH_EQUOTA: return 403;
    case EPH_EAGAIN: return 503;
    default: return 500;
    }
}

void
api__reply_failure(struct http_exchange *x, int rc, const struct eph_err *err)
{
    int status = api__status_of(rc);
    const char *msg = err && err->msg[0] ? err->msg : eph_strerror(rc);

    if (status >= 500) {
        char *logged = redact_credentials(msg);
        log_error("request failed", "method=%s path=%s error=%s", http_method(x),
                  log_q(http_path(x)), log_q(logged));
        free(logged);
        api__reply_error(x, 500, "internal error: see the server log");
        return;
    }
    api__reply_error(x, status, "%s", msg);
}

int
api__query_int(struct http_exchange *x, const char *name, int64_t def, int64_t lo, int64_t hi,
               int64_t *out)
{
    char *text = http_query_param(x, name);
    char *end = NULL;
    long long v;

    *out = def;
    if (text == NULL)
        return 0;
    errno = 0;
    v = strtoll(text, &end, 10);
    if (text[0] == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
        api__reply_error(x, 400, "'%s' must be an integer from %lld to %lld", name, (long long)lo,
                         (long long)hi);
        free(text);
        return -1;
    }
    free(text);
    *out = v;
    return 0;
}

bool
api__query_flag(struct http_exchange *x, const char *name)
{
    char *text = http_query_param(x, name);
    bool on =
        text && (strcmp(text, "1") == 0 || strcmp(text, "true") == 0 || strcmp(text, "yes") == 0);

    free(text);
    return on;
}

/* ------------------------------------------------------------- calls */

void
api__call_free(struct api_call *call)
{
    if (call == NULL)
        return;
    free(call->actor_name);
    free(call->role);
    free(call->source);
    free(call);
}

bool
api__is_admin(const struct api_call *call)
{
    return access_admin(&call->principal);
}

void
api__forwarded_client(const char *xff, char *out, size_t out_size)
{
    const char *start, *end;
    size_t len;

    out[0] = '\0';
    if (xff == NULL || out_size == 0)
        return;
    start = strrchr(xff, ',');
    start = start ? start + 1 : xff;
    end = start + strlen(start);
    while (*start == ' ' || *start == '\t')
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    len = (size_t)(end - start);
    if (len == 0 || len >= out_size || len > 45) /* INET6_ADDRSTRLEN - 1 */
        return;
    for (const char *c = start; c < end; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F') ||
              *c == '.' || *c == ':'))
            return;
    }
    memcpy(out, start, len);
    out[len] = '\0';
}

/*
 * The client's address for events: behind the gateway, the entry it appended
 * to X-Forwarded-For (the address it accepted the connection from), else the
 * peer of this connection (free()).
 */
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

bool
api__cookie(struct http_exchange *x, const char *name, char *out, size_t out_size)
{
    const char *h = http_header(x, "Cookie");
    size_t len = 0;
    const char *v = h ? cookie_find(h, strlen(h), name, strlen(name), &len) : NULL;

    if (v == NULL || len >= out_size)
        return false;
    memcpy(out, v, len);
    out[len] = '\0';
    return true;
}

static bool
method_is_safe(const char *method)
{
    return strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
}

/*
 * Authenticates the request: a bearer token, else the control host's session
 * cookie (which, for a request that changes something, must come with
 * API_CSRF_HEADER). Returns a call, or NULL after answering 401/403.
 */
static struct api_call *
authenticate(struct api *api, struct http_exchange *x)
{
    const char *authz = http_header(x, "Authorization");
    const char *token = auth_bearer_token(authz);
    char cookie[AUTH_SESSION_COOKIE_MAX];
    struct auth_who who;
    struct api_call *call;
    int64_t now = time_wall_ms();

    if (token) {
        if (!auth_index_check_token(api->ix, token, now, &who)) {
            api__reply_error(x, 401, "unknown, expired or revoked token");
            return NULL;
        }
    } else if (authz == NULL && api__cookie(x, API_SESSION_COOKIE, cookie, sizeof(cookie))) {
        if (!auth_index_check_session_cookie(api->ix, cookie, strlen(cookie), now, &who)) {
            api__reply_error(x, 401, "your session has ended: sign in again");
            return NULL;
        }
        if (!method_is_safe(http_method(x)) && http_header(x, API_CSRF_HEADER) == NULL) {
            api__reply_error(x, 403, "a browser request that changes something needs the %s header",
                             API_CSRF_HEADER);
            return NULL;
        }
    } else {
        api__reply_error(x, 401, "a token is required: send 'Authorization: Bearer <token>'");
        return NULL;
    }
    call = xcalloc(1, sizeof(*call));
    call->api = api;
    call->x = x;
    call->who = who;
    call->actor_name = xstrdup(who.user);
    call->role = xstrdup(role_name(who.role));
    call->principal.kind = PRINCIPAL_USER;
    call->principal.user = call->who.user;
    call->principal.role = who.role;
    call->actor.name = call->actor_name;
    call->source = client_address(api, x);
    call->actor.source = call->source;
    return call;
}

/* ------------------------------------------------------------- routing */

static void
healthz(struct http_exchange *x)
{
    api__reply_json(x, 200, json_pack("{s:b, s:s}", "ok", 1, "version", EPH_VERSION));
}

static void
whoami(struct api_call *call, const struct api_params *params)
{
    (void)params;
    api__reply_json(call->x, 200,
                    json_pack("{s:s, s:s, s:s, s:s, s:s?}", "name", call->actor_name, "role",
                              call->role, "email", call->who.email, "via",
                              call->who.token_id ? "token" : "session", "token",
                              call->who.token_id ? call->who.token_name : NULL));
    api__call_free(call);
}

/* A route: segments after /api/v1/, "*" matching one parameter segment. */
struct route {
    const char *pattern[API_MAX_SEGMENTS];
    const char *method;
    api_handler_fn *fn;
};

static const struct route routes[] = {
    {{"whoami"}, "GET", whoami},
    {{"projects"}, "GET", api__projects_list},
    {{"projects"}, "POST", api__projects_create},
    {{"projects", "*"}, "GET", api__projects_get},
    {{"envs"}, "GET", api__envs_list},
    {{"envs"}, "POST", api__envs_create},
    {{"envs", "*"}, "GET", api__envs_get},
    {{"envs", "*"}, "DELETE", api__envs_delete},
    {{"envs", "*", "extend"}, "POST", api__envs_extend},
    {{"envs", "*", "visibility"}, "POST", api__envs_visibility},
    {{"envs", "*", "sleep"}, "POST", api__envs_sleep},
    {{"envs", "*", "wake"}, "POST", api__envs_wake},
    {{"envs", "*", "keep"}, "POST", api__envs_keep},
    {{"envs", "*", "links"}, "POST", api__links_create},
    {{"envs", "*", "logs", "*"}, "GET", api__envs_logs},
    {{"events"}, "GET", api__events_list},
    {{"users"}, "GET", api__users_list},
    {{"users"}, "POST", api__users_create},
    {{"users", "*"}, "DELETE", api__users_delete},
    {{"users", "*", "role"}, "POST", api__users_role},
    {{"users", "*", "password"}, "POST", api__users_password},
    {{"tokens"}, "GET", api__tokens_list},
    {{"tokens"}, "POST", api__tokens_create},
    {{"tokens", "*"}, "DELETE", api__tokens_delete},
};

/* Splits "a/b/c" in place into at most max segments; -1 if more or empty ones. */
static int
split_path(char *rest, char **segs, int max)
{
    int n = 0;

    if (*rest == '\0')
        return 0;
    for (;;) {
        char *slash = strchr(rest, '/');

        if (n == max)
            return -1;
        segs[n++] = rest;
        if (slash == NULL)
            break;
        *slash = '\0';
        rest = slash + 1;
    }
    for (int i = 0; i < n; i++) {
        if (segs[i][0] == '\0')
            return -1;
    }
    return n;
}

static bool
route_matches(const struct route *r, char **segs, int n, struct api_params *params)
{
    int len = 0;
    int wild = 0;

    while (len < API_MAX_SEGMENTS && r->pattern[len])
        len++;
    if (len != n)
        return false;
    memset(params, 0, sizeof(*params));
    for (int i = 0; i < n; i++) {
        if (strcmp(r->pattern[i], "*") == 0) {
            if (wild++ == 0)
                params->name = segs[i];
            else
                params->service = segs[i];
        } else if (strcmp(r->pattern[i], segs[i]) != 0) {
            return false;
        }
    }
    return true;
}

/* GET /metrics: Prometheus text, without a token, as scrapers expect. */
static void
metrics(struct api *api, struct http_exchange *x)
{
    struct buf out;
    struct eph_err err = {0};
    int rc;

    buf_init(&out, API_METRICS_MAX_BYTES);
    rc = api__metrics_text(api->st, api->hooks.metrics, api->hooks.arg, &out, &err);
    if (rc < 0)
        api__reply_failure(x, rc, &err);
    else
        http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", buf_cstr(&out), out.len);
    buf_release(&out);
}

void
api_handle(struct http_exchange *x, void *arg)
{
    struct api *api = arg;
    const char *path = http_path(x);
    const char *method = http_method(x);
    char *rest;
    char *segs[API_MAX_SEGMENTS];
    char allow[64] = "";
    const struct route *found = NULL;
    struct api_params params;
    struct api_call *call;
    int n;

    if (strcmp(path, "/api/v1/healthz") == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            healthz(x);
        else
            api__reply_error(x, 405, "method %s not allowed on %s", method, path);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
            metrics(api, x);
        else
            api__reply_error(x, 405, "method %s not allowed on %s", method, path);
        return;
    }
    if (strncmp(path, API_PREFIX, strlen(API_PREFIX)) != 0) {
        if (api->signin && api__signin_handle(api, x, path))
            return;
        api__reply_error(x, 404, "no such path '%s'", path);
        return;
    }
    call = authenticate(api, x);
    if (call == NULL)
        return;
    rest = xstrdup(path + strlen(API_PREFIX));
    n = split_path(rest, segs, API_MAX_SEGMENTS);
    for (size_t i = 0; n > 0 && i < ARRAY_LEN(routes); i++) {
        struct api_params p;

        if (!route_matches(&routes[i], segs, n, &p))
            continue;
        if (strcmp(routes[i].method, method) == 0 && found == NULL) {
            found = &routes[i];
            params = p;
        }
        if (!strstr(allow, routes[i].method)) {
            size_t used = strlen(allow);

            snprintf(allow + used, sizeof(allow) - used, "%s%s", used ? ", " : "",
                     routes[i].method);
        }
    }
    if (found) {
        found->fn(call, &params); /* params point into `rest`: borrowed for the call */
        free(rest);
        return;
    }
    if (allow[0] != '\0') {
        http_add_header(x, "Allow", allow);
        api__reply_error(x, 405, "method %s not allowed on %s (allowed: %s)", method, path, allow);
    } else {
        api__reply_error(x, 404, "no such path '%s'", path);
    }
    free(rest);
    api__call_free(call);
}

/* ------------------------------------------------------------- lifecycle */

int
api_new(uv_loop_t *loop, struct store *st, struct reconciler *rec, const struct config *cfg,
        struct api **out, struct eph_err *err)
{
    struct api *api = xcalloc(1, sizeof(*api));

    (void)err;
    api->loop = loop;
    api->st = st;
    api->rec = rec;
    api->cfg = cfg;
    *out = api;
    return 0;
}

void
api_set_hooks(struct api *api, const struct api_hooks *hooks)
{
    api->hooks = *hooks;
}

void
api_set_auth(struct api *api, const struct api_auth *auth)
{
    api->ix = auth->ix;
    memcpy(api->key.bytes, auth->key, AUTH_KEY_BYTES);
    api->ac = auth->ac;
    free(api->public_base);
    api->public_base = xstrdup(auth->public_base ? auth->public_base : "");
    if (api->signin == NULL)
        api->signin = api__signin_new(api);
}

void
api_free(struct api *api)
{
    if (api == NULL)
        return;
    EPH_ASSERT(api->pending_projects == NULL); /* requests in flight are finished first */
    api__signin_free(api->signin);
    OPENSSL_cleanse(api->key.bytes, sizeof(api->key.bytes));
    free(api->public_base);
    free(api);
}
