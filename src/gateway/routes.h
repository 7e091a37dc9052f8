/*
 * gateway/routes.h - the route snapshot: Host header -> environment, service
 * and upstream.
 *
 * The control loop builds a new table whenever environments change and
 * publishes it; gateway loops read it without locks. A table is immutable and
 * reference counted: a request keeps the table it started with, so a route
 * change never tears a request in half. Lookups are O(1) (a hash of the
 * service and environment names); 10,000 routes cost a few hundred KiB.
 *
 * Host names follow a pattern with {service}, {env} and {domain}, by default
 * "{service}.{env}.{domain}" (web.fx.localhost); "{service}--{env}.{domain}"
 * suits a one-level wildcard certificate. The control host is {domain}
 * itself, and any IP literal or "localhost" (so http://127.0.0.1:8080/api
 * works).
 */
#ifndef EPH_GATEWAY_ROUTES_H
#define EPH_GATEWAY_ROUTES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/env.h"
#include "util/err.h"

/* ---- input: what the control loop knows, borrowed for the build call ---- */
struct gw_route_service_in {
    const char *name;
    const char *upstream_host; /* "127.0.0.1", or the host of an upstream: URL */
    int upstream_port;         /* 0: nothing to route to yet */
    bool expose;               /* false: no URL (404 as if absent) */
    enum svc_state state;      /* HEALTHY: routable; otherwise 503 with the state */
};

struct gw_route_env_in {
    int64_t id;
    const char *name;
    const char *owner;         /* NULL if none */
    enum visibility visibility;
    int64_t links_since_ms; /* wall clock: share links made at or before it are withdrawn */
    enum env_phase phase;
    const char *reason;        /* NULL if none */
    const struct gw_route_service_in *services;
    size_t n_services;
    /* Sleep (docs/gateway.md "Sleeping environments"): requests for a
     * service that is not routable are held until it is (asleep and
     * wakeable, or waking). */
    bool hold_requests;
    const char *asleep_message; /* NULL; else asleep, not wakeable: 503 with this text */
};

/* ---- the snapshot ---- */
struct gw_route_service {
    char *name;
    char *env_name;
    char *upstream_host;
    int upstream_port;
    char upstream_key[80];     /* "host:port", key of the upstream connection pool */
    bool routable;             /* healthy and exposed, with an upstream */
    enum svc_state state;
    const struct gw_route_env *env; /* back pointer into the same table */
    int activity_idx;          /* the name's index in env->activity (gw_publish fills it) */
};

struct gw_activity; /* activity.c: one per environment, shared by the workers */

struct gw_route_env {
    int64_t id;
    char *name;
    char *owner;               /* "" if none */
    enum visibility visibility;
    int64_t links_since_ms; /* wall clock: share links made at or before it are withdrawn
                               (visibility left link then); 0 none */
    enum env_phase phase;
    char *reason;
    struct gw_route_service *services; /* exposed services only, in template order */
    size_t n_services;
    bool hold_requests;        /* hold requests until their service is routable */
    char *asleep_message;      /* NULL, or the 503 text of an env asleep and not wakeable */
    /* The environment's activity slot: NULL until gw_publish() fills it in,
     * before any worker sees the table; the slot outlives the table. */
    struct gw_activity *activity;
};

struct gw_routes {
    atomic_int refs;
    uint64_t version;          /* increases with every published table */
    struct gw_route_env *envs; /* by name */
    size_t n_envs;
    /* private: open-addressing hash of (service, env) -> gw_route_service */
    struct gw_route_service **slots;
    size_t n_slots;
};

/* Builds a table (refs = 1) from a copy of the input. Control loop. */
struct gw_routes *gw_routes_build(const struct gw_route_env_in *envs, size_t n_envs,
                                  uint64_t version);
struct gw_routes *gw_routes_ref(struct gw_routes *r);
void gw_routes_unref(struct gw_routes *r); /* frees at zero; NULL is fine */

/* Finds (service, env) by name; NULL if absent. Any thread holding a ref. */
const struct gw_route_service *gw_routes_find(const struct gw_routes *r, const char *service,
                                              size_t service_len, const char *env,
                                              size_t env_len);
const struct gw_route_env *gw_routes_find_env(const struct gw_routes *r, const char *env,
                                              size_t env_len);

/* ---- host patterns ---- */
struct gw_host_pattern {
    char *pattern;   /* as configured */
    char *domain;    /* "localhost" */
    /* private: the pattern split around {service} and {env} */
    char *prefix, *middle, *suffix;
    bool service_first;
};

/*
 * Compiles "{service}.{env}.{domain}"-like patterns: both {service} and {env}
 * exactly once, separated by a non-empty literal. EPH_EINVAL with a message.
 */
int gw_host_pattern_init(struct gw_host_pattern *p, const char *pattern, const char *domain,
                         struct eph_err *err);
void gw_host_pattern_release(struct gw_host_pattern *p);

enum gw_host_kind {
    GW_HOST_CONTROL, /* the control host: API, later dashboard and webhooks */
    GW_HOST_SERVICE, /* a service URL: *service and *env are set */
    GW_HOST_UNKNOWN, /* neither */
};

/*
 * Classifies a Host header value (case-insensitive, port ignored). For
 * GW_HOST_SERVICE, points service/env into `host` with their lengths.
 */
enum gw_host_kind gw_host_classify(const struct gw_host_pattern *p, const char *host,
                                   size_t host_len, const char **service, size_t *service_len,
                                   const char **env, size_t *env_len);

/* Formats the URL of a service: "http://web.fx.localhost:8080/" into out. */
void gw_host_url(const struct gw_host_pattern *p, const char *service, const char *env,
                 int port, char *out, size_t out_size);

#endif
