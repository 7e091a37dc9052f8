/*
 * api/api_int.h - what only the API's own files share: the api object, one
 * authenticated call, replies (JSON and errors), and the JSON renderings of
 * the model (api_json.c, pure functions).
 *
 * Files: api.c (routing, authentication, replies), api_json.c (records ->
 * JSON), api_request.c (request bodies -> structs, pure functions),
 * api_projects.c, api_envs.c (list, get, create, extend, delete),
 * api_logs.c (tail and follow), api_events.c, api_metrics.c (GET /metrics),
 * api_authdb.c (users, sessions, tokens: store and index in step),
 * api_signin.c and api_pages.c (the sign-in pages of the control host),
 * api_users.c, api_tokens.c, api_links.c (users, tokens, share links).
 *
 * Control loop only, except the work functions run by uv_queue_work (they
 * touch nothing but their own job).
 */
#ifndef EPH_API_API_INT_H
#define EPH_API_API_INT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/api.h"
#include "auth/auth.h"
#include "auth/index.h"
#include "auth/signed.h"
#include "core/access.h"
#include "core/env.h"
#include "core/spec.h"
#include "util/buf.h"

#ifndef EPH_VERSION
#define EPH_VERSION "0.1.0" /* the Makefile may pass -DEPH_VERSION=... */
#endif

/* The control host's session cookie: "<id>.<secret>" (auth/index.h). */
#define API_SESSION_COOKIE "eph_session"
/* A browser's API call that changes something must carry this header (set by
 * our own pages' scripts): another origin cannot send it without a CORS
 * preflight, which the API never grants, so a page of a preview environment
 * cannot act with a viewer's session cookie. Tokens need no such header. */
#define API_CSRF_HEADER "X-Requested-With"

/* A project being registered (its cache is being mirrored): a second
 * registration of the same name waits for no one and gets 409. */
struct api_pending {
    char *name;
    struct api_pending *next;
};

struct api {
    uv_loop_t *loop;
    struct store *st;
    struct reconciler *rec;
    const struct config *cfg;
    struct api_hooks hooks;
    struct api_pending *pending_projects;
    /* sign-in (api_set_auth) */
    struct auth_index *ix;
    struct auth_key key;
    const struct auth_config *ac;
    char *public_base;
    struct api_signin *signin; /* api_signin.c's state: pending logins, rate limits */
};

/* One authenticated request, alive until its reply; owned by the handler
 * that got it (api__call_free after the reply). */
struct api_call {
    struct api *api;
    struct http_exchange *x;
    char *actor_name;         /* the user's name ("admin") */
    char *role;               /* the effective role's name */
    char *source;             /* the client's address (api.c: client_address) */
    struct store_actor actor; /* name and source borrowed from this call */
    struct auth_who who;      /* the user, and the session or token used */
    struct principal principal; /* for core/access.h; user points into who */
};

void api__call_free(struct api_call *call);
bool api__is_admin(const struct api_call *call);

/* ------------------------------------------------------------- sign-in (api_signin.c) */

/* State of the sign-in pages; created by api_set_auth, freed by api_free. */
struct api_signin;
struct api_signin *api__signin_new(struct api *api);
void api__signin_free(struct api_signin *s);

/*
 * The control host's pages for people, outside /api/v1: GET/POST /login,
 * POST /logout, /auth/ticket, /auth/oidc/<name>/{start,callback},
 * /auth/github/{start,callback}, /auth/cli. True if `path` is one of them
 * (answered, now or later); false: not a sign-in path, nothing sent.
 */
bool api__signin_handle(struct api *api, struct http_exchange *x, const char *path);

/* ------------------------------------------------------------- auth records (api_authdb.c) */

/*
 * Every change to users, sessions and tokens goes to the store first and to
 * the shared index right after, here, so that the two never disagree for
 * longer than one call on the control loop.
 */

/* Puts a stored user into the index (role parsed; an unknown role: viewer). */
void api__index_put_user(struct api *api, const struct user *u);

/* Starts a session for `user` (who must exist): stores it (event
 * "user.signin"), indexes it, and writes the cookie value "<id>.<secret>"
 * into cookie and its absolute end into *expires_ms. */
int api__session_create(struct api *api, const char *user, const char *source,
                        char cookie[AUTH_SESSION_COOKIE_MAX], int64_t *expires_ms,
                        struct eph_err *err);
/* Ends a session (store and index); action "user.signout" or similar. */
int api__session_end(struct api *api, const char *id, const struct store_actor *actor,
                     const char *action, struct eph_err *err);
/* The Set-Cookie value for the control host's session cookie; max_age_s 0
 * clears it. Secure when public_base is https. Into out (>= 256 bytes). */
void api__session_set_cookie(struct api *api, const char *value, int64_t max_age_s, char *out,
                             size_t out_size);

/* Creates a token for `user` acting with at most `role_cap`: stores its hash
 * (event "token.create"), indexes it, and writes the token (shown once) into
 * token. expires_ms 0: never. */
int api__token_create(struct api *api, const char *name, const char *user, enum role role_cap,
                      int64_t expires_ms, const struct store_actor *actor,
                      char token[AUTH_TOKEN_MAX], int64_t *id_out, struct eph_err *err);
/* Revokes a token (store and index). */
int api__token_revoke(struct api *api, int64_t id, const struct store_actor *actor,
                      struct eph_err *err);
/* Removes a user with their sessions and tokens (store and index). */
int api__user_remove(struct api *api, const char *name, const struct store_actor *actor,
                     struct eph_err *err);

/* The value of cookie `name` in the request's Cookie header(s), into out
 * (at most out_size - 1 bytes); false if absent or too long. */
bool api__cookie(struct http_exchange *x, const char *name, char *out, size_t out_size);

/* ------------------------------------------------------------- replies (api.c) */

/* Sends `body` (taken: decref'd here) as JSON and finishes the exchange. */
void api__reply_json(struct http_exchange *x, int status, json_t *body);

/*
 * Sends {"error": {"code": ..., "message": ...}} with the code that belongs to
 * `status` (400 invalid, 401 unauthorized, 403 forbidden, 404 not_found, 405
 * method_not_allowed, 409 conflict, 413 too_large, 422 unprocessable, 500
 * internal, 503 unavailable) and finishes the exchange.
 */
void api__reply_error(struct http_exchange *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The status for an error code of ours: EPH_EINVAL 400, EPH_ENOTFOUND 404, ... 500. */
int api__status_of(int rc);

/*
 * Replies to a failed call with the status api__status_of(rc) and err->msg.
 * Server-side failures (500) are logged with their message and answered
 * with a generic one: the details stay in the server log.
 */
void api__reply_failure(struct http_exchange *x, int rc, const struct eph_err *err);

/* ------------------------------------------------------------- request bodies (api_request.c) */

/*
 * Pure functions of their arguments: no exchange, store or loop, so any
 * thread may call them. Each parses a body of `len` bytes (not
 * NUL-terminated; 0 means none was sent) and checks what can be checked
 * without the store. They return 0 and fill *out, which the caller then
 * owns and empties with the matching _release(); or EPH_EINVAL with the
 * message for a 400 in *err, and *out left zeroed (releasing it is
 * harmless). Checks run in a fixed order: a body with several faults
 * always gets the same message.
 */

/*
 * The body as a JSON object (duplicate keys refused). 0 and *out
 * (json_decref), or EPH_EINVAL: "a JSON object body is required" (empty),
 * "invalid JSON body: <jansson's text> at line L column C", "the body must
 * be a JSON object".
 */
int api__parse_json_object(const char *body, size_t len, json_t **out, struct eph_err *err);

/* POST /api/v1/envs, as asked; the store checks the project and the name. */
struct api_env_create {
    char *project;          /* required, not yet known to exist */
    char *ref;              /* non-empty; NULL: the repository's default branch */
    char *name;             /* a valid env name; NULL: api__derive_env_name() */
    int64_t ttl_s;          /* in (0, max_ttl_s]; 0: the template's, else the server's default */
    struct spec_kv *params; /* {"name": "value"} in the body's order, checked against the
                               template later; NULL when absent or null */
    size_t n_params;        /* at most SPEC_MAX_PARAMS */
    enum visibility visibility; /* "visibility"; VIS_TEAM when absent or null */
    /* sleep and limits (docs/sleep.md); absent or null: the template's, else the server's */
    int64_t sleep_after_s;      /* "sleep_after": 0 absent, -1 "never", else > 0 */
    bool keep;                  /* "keep": true; false when absent or null */
    char *schedule_awake;       /* "schedule.awake", checked with schedule_parse; NULL absent */
    char *schedule_tz;          /* "schedule.timezone", a zone that loads; NULL absent */
    int wake_outside_hours;     /* "schedule.wake_outside_hours": -1 absent, 0, 1 */
    int64_t limit_memory_bytes; /* "limits.memory" ("512Mi" or bytes) > 0; 0 absent */
    int64_t limit_cpu_millis;   /* "limits.cpu" ("1.0", "250m" or a number) > 0; 0 absent */
    int64_t limit_pids;         /* "limits.pids" > 0; 0 absent */
};

/* Parses {"project", "ref", "name", "ttl", "params", "visibility", "sleep_after", "keep",
 * "schedule", "limits"}; a ttl above max_ttl_s (the server's max_ttl) is refused. The
 * limits are not measured against the server's caps here: api__check_limit_caps(). */
int api__parse_env_create(const char *body, size_t len, int64_t max_ttl_s,
                          struct api_env_create *out, struct eph_err *err);
void api__env_create_release(struct api_env_create *req);

/* The server's caps on limits (limit_memory_max, limit_cpu_max, limit_pids_max; 0 none). */
struct api_limit_caps {
    int64_t memory_bytes;
    int64_t cpu_millis;
    int64_t pids;
};

/* Checks the limits asked in *req against the caps: 0, or EPH_EINVAL "limits.memory 4Gi
 * exceeds the server maximum of 2Gi" (memory, cpu, pids in that order). Pure. */
int api__check_limit_caps(const struct api_env_create *req, const struct api_limit_caps *caps,
                          struct eph_err *err);

/* POST /envs/{name}/keep: {"keep": true|false}. */
int api__parse_keep(const char *body, size_t len, bool *out, struct eph_err *err);

/*
 * The default environment name: "<project>-<ref>" as a DNS label (lower
 * case, each run of other characters one '-', none at either end, cut to
 * ENV_NAME_MAX), or "env" if nothing is left. Always env_name_valid();
 * the caller frees it.
 */
char *api__derive_env_name(const char *project, const char *ref);

/* POST /api/v1/projects; allowed_repos and the store are checked later. */
struct api_project_add {
    char *name; /* a DNS label of at most ENV_NAME_MAX characters */
    char *repo; /* as given: a path or URL, not yet checked */
};

int api__parse_project_add(const char *body, size_t len, struct api_project_add *out,
                           struct eph_err *err);
void api__project_add_release(struct api_project_add *req);

/* POST /api/v1/envs/{name}/extend */
struct api_extend {
    char *by;     /* as given ("1h"), for the event's detail */
    int64_t by_s; /* > 0 */
};

int api__parse_extend(const char *body, size_t len, struct api_extend *out, struct eph_err *err);
void api__extend_release(struct api_extend *req);

/* ------------------------------------------------------------- JSON (api_json.c) */

/* Sets key (RFC 3339 text, null for 0) and key_ms (0 for unset). */
void api__json_set_time(json_t *obj, const char *key, int64_t wall_ms);

json_t *api__project_json(const struct project *p);
json_t *api__event_json(const struct event *ev);

/*
 * An environment as docs/api.md shows it (without "events"). `spec` is the
 * environment's parsed template, or NULL when it could not be parsed: it
 * says which services have expose: false (url null) and what an upstream's
 * URL is (internal_url). `hooks` (may be NULL) formats the gateway URLs and
 * gives the "sleep" object its timers (sleep_info) and "usage" its numbers
 * (usage): without them those members are left out.
 */
json_t *api__env_json(const struct env *env, const struct spec *spec,
                      const struct api_hooks *hooks);

/* Same, parsing env->template_yaml first. */
json_t *api__env_json_parsed(const struct env *env, const struct api_hooks *hooks);

/*
 * The client address a request carries in X-Forwarded-For (`xff`, NULL if
 * absent): its last entry, which the gateway appended, trimmed; "" when that
 * entry is empty or holds anything but an IPv4 or IPv6 address (a client's
 * own header passed on by another proxy). Writes into out.
 */
void api__forwarded_client(const char *xff, char *out, size_t out_size);

/* The Prometheus text of GET /metrics: the environments of each phase (from
 * the store), then `extra` (the gateway's), into out. 0 or a store error. */
int api__metrics_text(struct store *st, api_metrics_cb *extra, void *arg, struct buf *out,
                      struct eph_err *err);

/* ------------------------------------------------------------- handlers */

/* Route parameters: at most two ({name}, {service}). */
struct api_params {
    const char *name;
    const char *service;
};

/*
 * A handler takes ownership of `call`: it answers (now or after work on the
 * thread pool) and then frees it with api__call_free. `params` are borrowed
 * for the duration of the call only: copy what an answer given later needs.
 */
typedef void api_handler_fn(struct api_call *call, const struct api_params *params);

api_handler_fn api__projects_list;
api_handler_fn api__projects_create;
api_handler_fn api__projects_get;
api_handler_fn api__envs_list;
api_handler_fn api__envs_create;
api_handler_fn api__envs_get;
api_handler_fn api__envs_extend;
api_handler_fn api__envs_delete;
api_handler_fn api__envs_logs;
api_handler_fn api__events_list;

/*
 * Parses a query parameter as an integer in [lo, hi]: 0 and *out (def when
 * absent), or -1 after answering 400 naming the parameter.
 */
int api__query_int(struct http_exchange *x, const char *name, int64_t def, int64_t lo, int64_t hi,
                   int64_t *out);

/* True if query parameter `name` is "1", "true" or "yes". */
bool api__query_flag(struct http_exchange *x, const char *name);

/* ------------------------------------------------------------- users, tokens, links, visibility */

/*
 * Environments as the caller may see them (api_envs.c). The live environment
 * `name` if the caller may see it (access_env_visible); else NULL after
 * answering 404 "environment 'x' not found", the same answer as for one that
 * does not exist, or after a 500.
 */
struct env *api__env_visible(struct api_call *call, const char *name);
/* Same, and the caller may change it (access_env_manage): else NULL after
 * 404 as above, or 403 "only the owner or an admin can change environment 'x'". */
struct env *api__env_changeable(struct api_call *call, const char *name);

api_handler_fn api__envs_visibility; /* POST /envs/{name}/visibility */
api_handler_fn api__envs_sleep;      /* POST /envs/{name}/sleep */
api_handler_fn api__envs_wake;       /* POST /envs/{name}/wake */
api_handler_fn api__envs_keep;       /* POST /envs/{name}/keep */

/* Tells the reconciler (hooks.note_activity, if set) that an API call named
 * environment env_id: `what` is "api get", "api logs", "api extend". */
void api__note_activity(struct api *api, int64_t env_id, const char *what);
api_handler_fn api__links_create;    /* POST /envs/{name}/links (api_links.c) */
api_handler_fn api__users_list;      /* api_users.c */
api_handler_fn api__users_create;
api_handler_fn api__users_delete;
api_handler_fn api__users_role;
api_handler_fn api__users_password;
api_handler_fn api__tokens_list;     /* api_tokens.c */
api_handler_fn api__tokens_create;
api_handler_fn api__tokens_delete;

/* Users and tokens as docs/api.md shows them (api_json.c): never a hash. */
json_t *api__user_json(const struct user *u);
json_t *api__token_json(const struct store_token *t);

/* Bodies of these endpoints (api_request.c): pure, with the conventions of
 * the request-bodies section above. */

#define API_USER_NAME_MAX 32                     /* user names: [a-z0-9-], '-' inside */
#define API_EMAIL_MAX 254                        /* the longest address SMTP carries */
#define API_TOKEN_NAME_MAX 63                    /* fits auth_who.token_name */
#define API_TOKEN_TTL_DEFAULT_S (90LL * 86400)   /* a token without "ttl" */
#define API_TOKEN_TTL_MAX_S (365LL * 86400)      /* no token lives longer */
#define API_LINK_TTL_DEFAULT_S (24LL * 3600)     /* a share link without "ttl" */

/* True for 1 to API_USER_NAME_MAX characters of a-z, 0-9 and '-', with no
 * '-' first or last. */
bool api__user_name_valid(const char *name);

/* POST /envs/{name}/visibility: {"visibility": "team"|"private"|"link"}. */
int api__parse_visibility(const char *body, size_t len, enum visibility *out,
                          struct eph_err *err);

/* POST /users */
struct api_user_add {
    char *name;     /* api__user_name_valid(), not "system" */
    enum role role; /* ROLE_MEMBER when absent or null */
    char *email;    /* NULL when absent, null or ""; else looks like an address */
    char *password; /* NULL: the handler makes one; else of an acceptable length */
};

int api__parse_user_add(const char *body, size_t len, struct api_user_add *out,
                        struct eph_err *err);
/* Frees the members, wiping the password first. */
void api__user_add_release(struct api_user_add *req);

/* POST /users/{name}/role: {"role": "viewer"|"member"|"admin"}. */
int api__parse_role(const char *body, size_t len, enum role *out, struct eph_err *err);

/* POST /users/{name}/password: {"password": "..."} of AUTH_PASSWORD_MIN
 * characters to AUTH_PASSWORD_MAX bytes. *out: free with api__secret_free. */
int api__parse_password(const char *body, size_t len, char **out, struct eph_err *err);
/* Wipes and frees a secret string; NULL is fine. */
void api__secret_free(char *secret);

/* POST /tokens */
struct api_token_create {
    char *name;       /* 1 to API_TOKEN_NAME_MAX of [A-Za-z0-9._-] */
    int64_t ttl_s;    /* in (0, API_TOKEN_TTL_MAX_S]; API_TOKEN_TTL_DEFAULT_S when absent */
    enum role scope;  /* ROLE_NONE when absent: the caller's role */
};

int api__parse_token_create(const char *body, size_t len, struct api_token_create *out,
                            struct eph_err *err);
void api__token_create_release(struct api_token_create *req);

/* POST /envs/{name}/links; an empty body takes every default. */
struct api_link_create {
    char *ttl;       /* as given, or the default's text ("24h"), for the event */
    int64_t ttl_s;   /* in (0, max_ttl_s]; the default is capped at max_ttl_s */
    char *service;   /* non-empty; NULL: the first service with a URL */
};

int api__parse_link_create(const char *body, size_t len, int64_t max_ttl_s,
                           struct api_link_create *out, struct eph_err *err);
void api__link_create_release(struct api_link_create *req);

#endif
