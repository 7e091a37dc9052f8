/*
 * api/api.h - the REST API under /api/v1 (docs/api.md): JSON in, store and
 * reconciler calls, JSON out; and GET /metrics (Prometheus text).
 *
 * Every request but /api/v1/healthz and /metrics carries "Authorization:
 * Bearer <token>" or a signed-in browser's session cookie; both are checked
 * against the shared auth index (auth/index.h), and what the caller may do
 * is decided by core/access.h. The control host's sign-in pages (/login,
 * /logout, /auth/...) are served here too (api_signin.c). Validation errors are 4xx with
 * {"error": {"code": ..., "message": ...}}. Work that blocks (git) runs on
 * the libuv thread pool and the answer follows when it is done.
 *
 * Control loop only.
 */
#ifndef EPH_API_API_H
#define EPH_API_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "gateway/http_server.h"
#include "reconciler/reconciler.h"
#include "store/store.h"

struct api;
struct buf;
struct auth_index;
struct auth_config;
struct rec_sleep_info; /* reconciler/reconciler.h */
struct drv_usage;      /* drivers/driver.h */

/* Formats the public URL of a service ("http://web.fx.localhost:8080/") into out. */
typedef void api_service_url_cb(void *arg, const char *service, const char *env, char *out,
                                size_t out_size);
/* Appends metrics in Prometheus text format (the gateway's) to out. */
typedef void api_metrics_cb(void *arg, struct buf *out);

/*
 * What the API learns from the composition root (server/serve.c) about the
 * gateway in front of it, which the API does not include. Every part is
 * optional; `arg` goes to both callbacks, which run on the control loop.
 */
struct api_hooks {
    api_service_url_cb *service_url; /* NULL: every service's url is null */
    api_metrics_cb *metrics;         /* NULL: GET /metrics has the server's own gauges only */
    void *arg;
    /*
     * Every request arrives through the gateway, which appends the address it
     * accepted the connection from to X-Forwarded-For: events then record the
     * last entry of that header as their source. Only for a listener that
     * nothing but the gateway can reach (loopback, port 0).
     */
    bool behind_gateway;
    /*
     * True if `host` (len bytes, a port allowed) names this server: the
     * control host or a service host of the gateway's pattern. Sign-in only
     * ever sends a browser back to such a host (no open redirect). NULL: only
     * the control host (public_base's host) is ours.
     */
    bool (*host_ours)(void *arg, const char *host, size_t len);
    /*
     * Sleep and wake (docs/sleep.md), wired by serve.c to the reconciler and
     * the driver; all run on the control loop with `arg`. Each may be NULL:
     * POST /envs/{name}/sleep and /wake then answer 503 "not available", and
     * the environment's JSON goes without the fields they would give.
     *
     * sleep, wake: rec_sleep() / rec_wake(): 0, or EPH_EINVAL with a message
     * for people ("fx is not running"), or a store error.
     */
    int (*sleep)(void *arg, int64_t env_id, const struct store_actor *who, struct eph_err *err);
    int (*wake)(void *arg, int64_t env_id, const struct store_actor *who, struct eph_err *err);
    /* rec_sleep_info(): the effective settings and timers; false if unknown. */
    bool (*sleep_info)(void *arg, int64_t env_id, struct rec_sleep_info *out);
    /* The driver's usage(): memory and CPU used now, and whether limits hold. */
    void (*usage)(void *arg, int64_t env_id, struct drv_usage *out);
    /* rec_note_activity() with now: an API call named the environment
     * ("api get", "api logs", "api extend"). */
    void (*note_activity)(void *arg, int64_t env_id, const char *what);
};

/* Sign-in: what the API shares with the gateway. */
struct api_auth {
    struct auth_index *ix;        /* sessions, tokens, users; shared with the gateway */
    const unsigned char *key;     /* AUTH_KEY_BYTES: signs tickets, host cookies, links */
    const struct auth_config *ac; /* providers, allowlists, default role */
    const char *public_base;      /* the control host as browsers reach it: "http://localhost:8080" */
};

/* Borrows everything; they must outlive the api. */
int api_new(uv_loop_t *loop, struct store *st, struct reconciler *rec, const struct config *cfg,
            struct api **out, struct eph_err *err);

/* Copies *hooks into the api; before the first request. */
void api_set_hooks(struct api *api, const struct api_hooks *hooks);

/* Copies *auth (pointers borrowed); before the first request. */
void api_set_auth(struct api *api, const struct api_auth *auth);

/* Loads users, live sessions and tokens from the store into the auth index;
 * once at start, after api_set_auth. */
int api_auth_load(struct api *api, struct eph_err *err);

/* Periodic upkeep (every few seconds): writes last-use times of sessions and
 * tokens to the store, and ends sessions past their lifetimes. */
void api_auth_upkeep(struct api *api);

/* The http_handler_cb to give the HTTP server, with the api as its arg. */
void api_handle(struct http_exchange *x, void *api);

/* Frees the api; requests in flight must be finished first (http_server_close). */
void api_free(struct api *api);

#endif
