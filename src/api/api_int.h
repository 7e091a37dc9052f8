/*
 * api/api_int.h - what only the API's own files share: the api object, one
 * authenticated call, replies (JSON and errors), and the JSON renderings of
 * the model (api_json.c, pure functions).
 *
 * Files: api.c (routing, authentication, replies), api_json.c (records ->
 * JSON), api_request.c (request bodies -> structs, pure functions),
 * api_projects.c, api_envs.c (list, get, create, extend, delete),
 * api_logs.c (tail and follow), api_events.c, api_metrics.c (GET /metrics).
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
#include "core/env.h"
#include "core/spec.h"
#include "util/buf.h"

#ifndef EPH_VERSION
#define EPH_VERSION "0.1.0" /* the Makefile may pass -DEPH_VERSION=... */
#endif

/* Token uses remembered to write store_token_touch at most once a minute. */
#define API_TOUCH_SLOTS 64
#define API_TOUCH_INTERVAL_MS 60000

struct api_touch {
    int64_t token_id;   /* 0: free slot */
    int64_t touched_ms; /* wall clock of the last write to the store */
};

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
    struct api_touch touches[API_TOUCH_SLOTS];
    struct api_pending *pending_projects;
};

/* One authenticated request, alive until its reply; owned by the handler
 * that got it (api__call_free after the reply). */
struct api_call {
    struct api *api;
    struct http_exchange *x;
    char *actor_name;         /* the token's name ("admin") */
    char *role;               /* the token's role */
    char *source;             /* the client's address (api.c: client_address) */
    struct store_actor actor; /* name and source borrowed from this call */
};

void api__call_free(struct api_call *call);
bool api__is_admin(const struct api_call *call);

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
};

/* Parses {"project", "ref", "name", "ttl", "params"}; a ttl above max_ttl_s
 * (the server's max_ttl) is refused. */
int api__parse_env_create(const char *body, size_t len, int64_t max_ttl_s,
                          struct api_env_create *out, struct eph_err *err);
void api__env_create_release(struct api_env_create *req);

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
 * URL is (internal_url). `hooks` (may be NULL) formats the gateway URLs.
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

#endif
