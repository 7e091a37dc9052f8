/*
 * gateway/gateway.h - the single HTTP entry point: one port, a URL per
 * service, the control host behind it.
 *
 * `workers` threads each run their own libuv loop and accept on the same
 * port (SO_REUSEPORT). Each request is routed by its Host header through the
 * current route snapshot: service hosts are reverse-proxied to their
 * upstream (keep-alive pools, bodies streamed both ways with backpressure,
 * WebSocket and other Upgrades passed through as raw streams); the control
 * host is proxied the same way to the API server that listens on an internal
 * address of the control loop. Unknown hosts get a 404 page (JSON for API
 * clients), services not ready a 503 with Retry-After, refused upstreams 502.
 * Requests for an environment that is asleep (and may be woken) or waking
 * are held until it is up (docs/gateway.md "Sleeping environments").
 *
 * The control loop is never blocked by proxy traffic and vice versa: the only
 * shared state is the immutable route table, atomic counters and each
 * environment's activity (gw_activity()).
 */
#ifndef EPH_GATEWAY_GATEWAY_H
#define EPH_GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>

#include "gateway/routes.h"
#include "util/buf.h"
#include "util/err.h"

struct gateway;
struct auth_index;

struct gw_config {
    const char *listen_host;       /* "127.0.0.1" */
    int listen_port;               /* 0: any free port (see gw_port) */
    int workers;                   /* event loops; >= 1 */
    const char *host_pattern;      /* "{service}.{env}.{domain}" */
    const char *domain;            /* "localhost" */
    const char *control_host;      /* internal API address "127.0.0.1" */
    int control_port;              /* internal API port */
    size_t max_header_bytes;       /* request line + headers: 431 beyond; default 16 KiB */
    int64_t header_timeout_ms;     /* whole request head (slowloris): 408 and close */
    int64_t idle_timeout_ms;       /* keep-alive client connection without a request */
    int64_t connect_timeout_ms;    /* upstream connect: 504 beyond */
    int64_t first_byte_timeout_ms; /* upstream response head after the request: 504 */
    int64_t upstream_idle_ms;      /* pooled upstream connection kept this long */
    int upstream_keepalive;        /* idle connections kept per address and worker; 0: default, <0: none */
    int max_connections;           /* client connections over all workers; 503 beyond */
    FILE *access_log;              /* one logfmt line per request; NULL: none */
    /* Sign-in (docs/auth.md). auth_ix NULL: service URLs are open to all. */
    struct auth_index *auth_ix;    /* shared with the API; outlives the gateway */
    const unsigned char *auth_key; /* AUTH_KEY_BYTES; copied by gw_start */
    const char *signin_base;       /* the control host for browsers; NULL: http://<domain>:<port> */
    /* Sleeping environments (docs/gateway.md "Sleeping environments"). */
    int64_t wake_timeout_ms;       /* a held request's deadline: 503 beyond; 0: 60 s */
    int wake_queue;                /* held requests per env and worker: 503 beyond; 0: 1024 */
    /*
     * Called on a worker thread when a request arrives for an environment
     * with hold_requests, at most once per environment per 100 ms per
     * worker; `service` is borrowed for the call. Must not block (serve.c
     * posts it to the control loop). NULL: nobody is told.
     */
    void (*on_wake)(void *arg, int64_t env_id, const char *service);
    void *on_wake_arg;
};

/* Binds and starts the worker threads. Control loop, once. */
int gw_start(const struct gw_config *cfg, struct gateway **out, struct eph_err *err);

/* The port actually bound. */
int gw_port(const struct gateway *gw);

/* The control host's URL for browsers: cfg->signin_base, or by default
 * "http://<domain>:<bound port>". */
const char *gw_signin_base(const struct gateway *gw);

/*
 * Hands a new route table to every worker; takes over the caller's reference.
 * Workers switch at their next loop iteration; in-flight requests keep the
 * table they started with, and held requests are looked at again in the new
 * one. Before sharing the table, fills in each environment's activity slot
 * (found by id, made on first sight; slots live until the gateway stops), so
 * the caller must not have handed the table to anyone else. Control loop.
 */
void gw_publish(struct gateway *gw, struct gw_routes *routes);

/* The route table workers will use next (borrowed, for the control loop). */
const struct gw_routes *gw_current_routes(const struct gateway *gw);

/*
 * What the gateway saw of environment env_id since it started: the wall
 * time (ms) of the last request to one of its services, or of the end of
 * the last exchange (request, streamed response, WebSocket) with one;
 * the exchanges open now; and what the last one was, "request web" or
 * "websocket web", into what (what_size bytes, may be 0). False, and
 * nothing written, if no request reached it yet. Reads a few relaxed
 * atomics: the values may lag by a request. Control loop.
 */
bool gw_activity(struct gateway *gw, int64_t env_id, int64_t *last_ms, int *open, char *what,
                 size_t what_size);

/*
 * Appends the gateway's metrics in Prometheus text format: requests by
 * env/service/code, a latency histogram, open connections, upstream errors,
 * route-table size. Any thread.
 */
void gw_metrics(struct gateway *gw, struct buf *out);

/*
 * Stops accepting, answers held requests 503, lets in-flight requests
 * finish until deadline_ms (from now), closes what is left, joins the workers, then calls done(arg) on the
 * control loop `loop` and frees the gateway.
 */
void gw_stop(struct gateway *gw, uv_loop_t *loop, int64_t deadline_ms, void (*done)(void *arg),
             void *arg);

#endif
