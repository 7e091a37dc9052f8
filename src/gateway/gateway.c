/*
 * gateway/gateway.c - the gateway's workers: N threads, each with its own
 * libuv loop and its own listening socket on the same host:port
 * (SO_REUSEPORT: the kernel spreads connections over them), route tables
 * handed over from the control loop, metrics summed over the workers, and
 * the graceful stop.
 *
 * Publishing: the control loop puts a reference to the new table in each
 * worker's slot (a mutex-guarded pointer) and wakes it with uv_async_send();
 * the worker swaps at once and drops its old reference. Requests in flight
 * hold references of their own, so a swap never tears one in half.
 *
 * Metrics: each worker counts into its own struct under its own mutex, which
 * only scrapes contend for; gw_metrics() sums them.
 *
 * Activity: gw_publish() points each environment of a table at its slot
 * (activity.c) before any worker sees the table; workers write the slots,
 * gw_activity() reads them. Held requests are looked at again by each
 * worker when it takes a new table (proxy.c).
 *
 * Stop: every worker closes its listener and its idle connections, answers
 * its held requests 503, lets what is in flight finish (Connection: close)
 * until the deadline, then closes the rest; its loop ends when no handle is left. The last worker
 * to end wakes the control loop, which joins the threads and calls done.
 */
#include "gateway/gateway.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway/proxy_int.h"
#include "util/xmalloc.h"

#define LOG_MOD "gateway"
#include "util/log.h"

/* Defaults for settings left at 0. */
#define GW_DEFAULT_MAX_HEADER_BYTES (16 * 1024)
#define GW_DEFAULT_HEADER_TIMEOUT_MS 10000
#define GW_DEFAULT_IDLE_TIMEOUT_MS 60000
#define GW_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define GW_DEFAULT_FIRST_BYTE_TIMEOUT_MS 60000
#define GW_DEFAULT_UPSTREAM_IDLE_MS 30000
#define GW_DEFAULT_UPSTREAM_KEEPALIVE 256
#define GW_DEFAULT_WAKE_TIMEOUT_MS 60000
#define GW_DEFAULT_WAKE_QUEUE 1024
/* More workers than this is a configuration mistake. */
#define GW_MAX_WORKERS 256
/* Accept queue of each listening socket. */
#define GW_LISTEN_BACKLOG 511
/* Series of eph_gateway_requests_total per worker; beyond, new ones are
 * counted under env="_other" (a bound on memory whatever comes in). */
#define GW_MAX_SERIES 50000

/* Upper bounds of the duration histogram, seconds. */
static const double hist_le[GW_HIST_N] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                          0.25,  0.5,    1,     2.5,  5,     10};

static const char *const uperr_names[GW_UPERR_N] = {
    [GW_UPERR_REFUSED] = "connect_refused",
    [GW_UPERR_CONNECT_TIMEOUT] = "connect_timeout",
    [GW_UPERR_FIRST_BYTE_TIMEOUT] = "first_byte_timeout",
    [GW_UPERR_RESET] = "reset",
    [GW_UPERR_BAD_RESPONSE] = "bad_response",
    [GW_UPERR_RESOLVE] = "resolve",
};

struct gateway {
    struct gw_config cfg; /* strings point at the copies below */
    char *listen_host, *host_pattern, *domain, *control_host, *signin_base;
    unsigned char auth_key[32]; /* AUTH_KEY_BYTES */
    struct gw_host_pattern pattern;
    char control_key[96];
    int port;
    struct gw_worker *workers;
    int n_workers;
    atomic_int open_connections;
    atomic_int held_requests; /* held for waking environments, all workers */
    atomic_int workers_running;
    atomic_size_t n_routes;    /* size of the current table, for scrapes */
    struct gw_routes *current; /* control loop's reference */
    struct gw_activity_set activity; /* per environment; control loop (slots: shared) */
    bool stopping;
    uv_async_t done_async; /* on the control loop, from the last worker */
    void (*done)(void *arg);
    void *done_arg;
};

/* ------------------------------------------------------------- shared with the workers */

const char *
gw__control_key(const struct gateway *gw, const char **host, int *port)
{
    *host = gw->cfg.control_host;
    *port = gw->cfg.control_port;
    return gw->control_key;
}

atomic_int *
gw__open_connections(struct gateway *gw)
{
    return &gw->open_connections;
}

atomic_int *
gw__held_requests(struct gateway *gw)
{
    return &gw->held_requests;
}

static uint64_t
series_hash(const char *env, const char *service, int code)
{
    uint64_t h = 1469598103934665603ULL;

    for (const char *p = env; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (const char *p = service; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return (h ^ (uint64_t)code) * 1099511628211ULL;
}

static struct gw_series *
series_find(struct gw_series **slots, size_t n_slots, uint64_t h, const char *env,
            const char *service, int code)
{
    for (struct gw_series *s = slots[h & (n_slots - 1)]; s; s = s->next) {
        if (s->hash == h && s->code == code && strcmp(s->env, env) == 0 &&
            strcmp(s->service, service) == 0)
            return s;
    }
    return NULL;
}

static void
series_grow(struct gw_series ***slots, size_t *n_slots)
{
    size_t n = *n_slots * 2;
    struct gw_series **fresh = xcalloc(n, sizeof(*fresh));

    for (size_t i = 0; i < *n_slots; i++) {
        struct gw_series *s = (*slots)[i];

        while (s) {
            struct gw_series *next = s->next;

            s->next = fresh[s->hash & (n - 1)];
            fresh[s->hash & (n - 1)] = s;
            s = next;
        }
    }
    free(*slots);
    *slots = fresh;
    *n_slots = n;
}

/* Finds or adds a series; names are copied. */
static struct gw_series *
series_get(struct gw_series ***slots, size_t *n_slots, size_t *n_series, const char *env,
           const char *service, int code)
{
    uint64_t h = series_hash(env, service, code);
    struct gw_series *s = series_find(*slots, *n_slots, h, env, service, code);

    if (s)
        return s;
    if (*n_series >= *n_slots)
        series_grow(slots, n_slots);
    s = xcalloc(1, sizeof(*s));
    s->hash = h;
    s->env = xstrdup(env);
    s->service = xstrdup(service);
    s->code = code;
    s->next = (*slots)[h & (*n_slots - 1)];
    (*slots)[h & (*n_slots - 1)] = s;
    (*n_series)++;
    return s;
}

static void
series_free_all(struct gw_series **slots, size_t n_slots)
{
    for (size_t i = 0; i < n_slots; i++) {
        struct gw_series *s = slots[i];

        while (s) {
            struct gw_series *next = s->next;

            free(s->env);
            free(s->service);
            free(s);
            s = next;
        }
    }
    free(slots);
}

void
gw__metrics_request(struct gw_worker *w, const char *env, const char *service, int code,
                    double seconds, struct gw_series **cache)
{
    struct gw_wmetrics *m = &w->metrics;
    struct gw_series *s = cache ? *cache : NULL;
    size_t b = 0;

    while (b < GW_HIST_N && seconds > hist_le[b])
        b++;
    uv_mutex_lock(&w->metrics_lock);
    /* Series live as long as the worker: a cached one only needs its
     * labels compared. */
    if (s && s->code == code && strcmp(s->env, env) == 0 && strcmp(s->service, service) == 0)
        goto count;
    if (m->n_series >= GW_MAX_SERIES) {
        uint64_t h = series_hash(env, service, code);

        if (series_find(m->slots, m->n_slots, h, env, service, code) == NULL) {
            env = "_other";
            service = "_other";
        }
    }
    s = series_get(&m->slots, &m->n_slots, &m->n_series, env, service, code);
    if (cache)
        *cache = s;
count:
    s->count++;
    m->hist[b]++;
    m->hist_sum_s += seconds;
    m->hist_count++;
    uv_mutex_unlock(&w->metrics_lock);
}

void
gw__metrics_upstream_error(struct gw_worker *w, enum gw_uperr kind)
{
    uv_mutex_lock(&w->metrics_lock);
    w->metrics.upstream_errors[kind]++;
    uv_mutex_unlock(&w->metrics_lock);
}

/* ------------------------------------------------------------- workers */

void
gw__worker_maybe_exit(struct gw_worker *w)
{
    if (!w->stopping || w->exiting || w->n_clients > 0 || w->n_upstreams > 0)
        return;
    w->exiting = true;
    uv_close((uv_handle_t *)&w->failed_check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->stop_timer, NULL);
}

static void
on_stop_deadline(uv_timer_t *t)
{
    struct gw_worker *w = container_of(t, struct gw_worker, stop_timer);

    if (w->n_clients > 0)
        log_info("gateway stop deadline reached", "worker=%d closing=%zu", w->index, w->n_clients);
    gw__close_clients(w, false);
    gw__close_upstreams(w, false);
    gw__worker_maybe_exit(w);
}

static void
worker_begin_stop(struct gw_worker *w, int64_t deadline_ms)
{
    w->stopping = true;
    uv_close((uv_handle_t *)&w->listener, NULL);
    gw__close_upstreams(w, true);
    gw__close_clients(w, true);
    uv_timer_start(&w->stop_timer, on_stop_deadline, deadline_ms > 0 ? (uint64_t)deadline_ms : 0,
                   0);
    gw__worker_maybe_exit(w);
}

static void
on_wake(uv_async_t *a)
{
    struct gw_worker *w = container_of(a, struct gw_worker, wake);
    struct gw_routes *fresh;
    bool stop;
    int64_t deadline;

    uv_mutex_lock(&w->slot_lock);
    fresh = w->slot;
    w->slot = NULL;
    stop = w->stop_requested;
    deadline = w->stop_deadline_ms;
    uv_mutex_unlock(&w->slot_lock);
    if (fresh) {
        struct gw_routes *old = w->routes;

        w->routes = fresh; /* the publisher's reference is ours now */
        gw_routes_unref(old);
        gw__hold_recheck(w); /* held requests may go on, or be answered */
    }
    if (stop && !w->stopping)
        worker_begin_stop(w, deadline);
}

static void
worker_main(void *arg)
{
    struct gw_worker *w = arg;
    struct gateway *gw = w->gw;
    int rc;

    uv_run(&w->loop, UV_RUN_DEFAULT);
    gw__worker_release_buffers(w);
    gw__guard_release(w);
    gw__pool_release(&w->pool);
    rc = uv_loop_close(&w->loop);
    if (rc != 0)
        log_error("gateway loop left handles open", "worker=%d error=%s", w->index,
                  uv_strerror(rc));
    gw_routes_unref(w->routes);
    w->routes = NULL;
    uv_mutex_lock(&w->slot_lock);
    gw_routes_unref(w->slot);
    w->slot = NULL;
    uv_mutex_unlock(&w->slot_lock);
    if (atomic_fetch_sub(&gw->workers_running, 1) == 1)
        uv_async_send(&gw->done_async);
}

/* ------------------------------------------------------------- start */

/* A listening socket on addr with SO_REUSEPORT; the fd or -errno. */
static int
listen_socket(const struct sockaddr_storage *addr)
{
    int one = 1;
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t len =
        addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int rc;

    if (fd < 0)
        return -errno;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)addr, len) < 0 || listen(fd, GW_LISTEN_BACKLOG) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/* Closes the handles of a worker whose thread never ran. */
static void
loop_unwind(struct gw_worker *w)
{
    uv_close((uv_handle_t *)&w->failed_check, NULL);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->stop_timer, NULL);
    uv_close((uv_handle_t *)&w->listener, NULL);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    uv_loop_close(&w->loop);
}

/* Frees the gateway; worker loops and pools are gone already. */
static void
gateway_free(struct gateway *gw)
{
    if (gw == NULL)
        return;
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];

        series_free_all(w->metrics.slots, w->metrics.n_slots);
        uv_mutex_destroy(&w->slot_lock);
        uv_mutex_destroy(&w->metrics_lock);
    }
    free(gw->workers);
    gw_routes_unref(gw->current);
    gw__activity_set_release(&gw->activity);
    gw_host_pattern_release(&gw->pattern);
    free(gw->listen_host);
    free(gw->host_pattern);
    free(gw->domain);
    free(gw->control_host);
    free(gw->signin_base);
    free(gw);
}

static void
config_defaults(struct gw_config *c)
{
    if (c->workers < 1)
        c->workers = 1;
    if (c->workers > GW_MAX_WORKERS)
        c->workers = GW_MAX_WORKERS;
    if (c->max_header_bytes == 0)
        c->max_header_bytes = GW_DEFAULT_MAX_HEADER_BYTES;
    if (c->header_timeout_ms <= 0)
        c->header_timeout_ms = GW_DEFAULT_HEADER_TIMEOUT_MS;
    if (c->idle_timeout_ms <= 0)
        c->idle_timeout_ms = GW_DEFAULT_IDLE_TIMEOUT_MS;
    if (c->connect_timeout_ms <= 0)
        c->connect_timeout_ms = GW_DEFAULT_CONNECT_TIMEOUT_MS;
    if (c->first_byte_timeout_ms <= 0)
        c->first_byte_timeout_ms = GW_DEFAULT_FIRST_BYTE_TIMEOUT_MS;
    if (c->upstream_idle_ms <= 0)
        c->upstream_idle_ms = GW_DEFAULT_UPSTREAM_IDLE_MS;
    if (c->upstream_keepalive == 0)
        c->upstream_keepalive = GW_DEFAULT_UPSTREAM_KEEPALIVE;
    else if (c->upstream_keepalive < 0)
        c->upstream_keepalive = 0; /* none */
    if (c->wake_timeout_ms <= 0)
        c->wake_timeout_ms = GW_DEFAULT_WAKE_TIMEOUT_MS;
    if (c->wake_queue <= 0)
        c->wake_queue = GW_DEFAULT_WAKE_QUEUE;
}

int
gw_start(const struct gw_config *cfg, struct gateway **out, struct eph_err *err)
{
    struct gateway *gw = xcalloc(1, sizeof(*gw));
    struct sockaddr_storage addr;
    int *fds = NULL;
    int rc = 0;
    int n;

    *out = NULL;
    gw->cfg = *cfg;
    config_defaults(&gw->cfg);
    gw->listen_host = xstrdup(cfg->listen_host ? cfg->listen_host : "127.0.0.1");
    gw->host_pattern = xstrdup(cfg->host_pattern ? cfg->host_pattern : "{service}.{env}.{domain}");
    gw->domain = xstrdup(cfg->domain ? cfg->domain : "localhost");
    gw->control_host = xstrdup(cfg->control_host ? cfg->control_host : "127.0.0.1");
    gw->cfg.listen_host = gw->listen_host;
    gw->cfg.host_pattern = gw->host_pattern;
    gw->cfg.domain = gw->domain;
    gw->cfg.control_host = gw->control_host;
    if (cfg->auth_key)
        memcpy(gw->auth_key, cfg->auth_key, sizeof(gw->auth_key));
    gw->cfg.auth_key = gw->auth_key;
    snprintf(gw->control_key, sizeof(gw->control_key), "%s:%d", gw->control_host,
             gw->cfg.control_port);
    atomic_init(&gw->open_connections, 0);
    atomic_init(&gw->held_requests, 0);
    atomic_init(&gw->workers_running, 0);
    atomic_init(&gw->n_routes, 0);
    n = gw->cfg.workers;
    gw__activity_set_init(&gw->activity, n);
    rc = gw_host_pattern_init(&gw->pattern, gw->host_pattern, gw->domain, err);
    if (rc < 0)
        goto fail;
    if (gw->cfg.max_header_bytes > UINT32_MAX / 2) {
        rc = eph_err_set(err, EPH_EINVAL, "max_header_bytes: %zu is too large",
                         gw->cfg.max_header_bytes);
        goto fail;
    }
    memset(&addr, 0, sizeof(addr));
    if (uv_ip4_addr(gw->listen_host, cfg->listen_port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(gw->listen_host, cfg->listen_port, (struct sockaddr_in6 *)&addr) != 0) {
        rc = eph_err_set(err, EPH_EINVAL, "invalid listen address '%s'", gw->listen_host);
        goto fail;
    }
    /* Every socket is bound and listening before gw_start returns; with
     * port 0 the first one picks the port and the others join it. */
    fds = xcalloc((size_t)n, sizeof(*fds));
    for (int i = 0; i < n; i++)
        fds[i] = -1;
    for (int i = 0; i < n; i++) {
        fds[i] = listen_socket(&addr);
        if (fds[i] < 0) {
            int e = fds[i];

            fds[i] = -1;
            rc = eph_err_set(err, e == -EADDRINUSE ? EPH_ECONFLICT : EPH_EINVAL,
                             "cannot listen on %s:%d: %s", gw->listen_host,
                             i == 0 ? cfg->listen_port : gw->port, strerror(-e));
            goto fail;
        }
        if (i == 0) {
            struct sockaddr_storage bound;
            socklen_t len = sizeof(bound);

            getsockname(fds[0], (struct sockaddr *)&bound, &len);
            gw->port =
                ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
            if (addr.ss_family == AF_INET6)
                ((struct sockaddr_in6 *)&addr)->sin6_port = htons((uint16_t)gw->port);
            else
                ((struct sockaddr_in *)&addr)->sin_port = htons((uint16_t)gw->port);
        }
    }
    if (cfg->signin_base) {
        gw->signin_base = xstrdup(cfg->signin_base);
    } else {
        char base[320];

        snprintf(base, sizeof(base), "http://%s:%d", gw->domain, gw->port);
        gw->signin_base = xstrdup(base);
    }
    gw->cfg.signin_base = gw->signin_base;
    gw->workers = xcalloc((size_t)n, sizeof(*gw->workers));
    gw->n_workers = n;
    for (int i = 0; i < n; i++) {
        struct gw_worker *w = &gw->workers[i];

        w->gw = gw;
        w->cfg = &gw->cfg;
        w->pattern = &gw->pattern;
        w->index = i;
        w->log_sec = -1;
        uv_mutex_init(&w->slot_lock);
        uv_mutex_init(&w->metrics_lock);
        w->metrics.n_slots = 64;
        w->metrics.slots = xcalloc(w->metrics.n_slots, sizeof(*w->metrics.slots));
        gw__pool_init(&w->pool);
    }
    for (int i = 0; i < n; i++) {
        struct gw_worker *w = &gw->workers[i];

        /* Set up here, before the thread runs the loop: the thread start
         * orders these writes before anything the loop does. */
        uv_loop_init(&w->loop);
        uv_async_init(&w->loop, &w->wake, on_wake);
        uv_check_init(&w->loop, &w->failed_check);
        uv_check_start(&w->failed_check, gw__on_failed_writes);
        uv_timer_init(&w->loop, &w->stop_timer);
        uv_tcp_init(&w->loop, &w->listener);
        rc = uv_tcp_open(&w->listener, fds[i]);
        if (rc == 0) {
            fds[i] = -1; /* the handle owns it now */
            rc = uv_listen((uv_stream_t *)&w->listener, GW_LISTEN_BACKLOG, gw__on_connection);
        }
        if (rc < 0) {
            /* Nothing has run yet: unwind the loops made so far. */
            for (int k = 0; k <= i; k++)
                loop_unwind(&gw->workers[k]);
            for (int k = 0; k < n; k++)
                gw__pool_release(&gw->workers[k].pool);
            rc = eph_err_set(err, EPH_EINVAL, "cannot listen on %s:%d: %s", gw->listen_host,
                             gw->port, uv_strerror(rc));
            goto fail;
        }
    }
    atomic_store(&gw->workers_running, n);
    for (int i = 0; i < n; i++) {
        rc = uv_thread_create(&gw->workers[i].thread, worker_main, &gw->workers[i]);
        EPH_ASSERT(rc == 0); /* no thread for the gateway: nothing sensible is left */
    }
    free(fds);
    log_info("gateway listening", "addr=%s port=%d workers=%d", gw->listen_host, gw->port, n);
    *out = gw;
    return 0;
fail:
    if (fds) {
        for (int i = 0; i < n; i++) {
            if (fds[i] >= 0)
                close(fds[i]);
        }
    }
    free(fds);
    gateway_free(gw);
    return rc;
}

const char *
gw_signin_base(const struct gateway *gw)
{
    return gw->signin_base;
}

int
gw_port(const struct gateway *gw)
{
    return gw->port;
}

/* ------------------------------------------------------------- routes */

void
gw_publish(struct gateway *gw, struct gw_routes *routes)
{
    struct gw_routes *old = gw->current;
    size_t n = 0;

    EPH_ASSERT(!gw->stopping);
    for (size_t i = 0; routes && i < routes->n_envs; i++)
        n += routes->envs[i].n_services;
    gw__activity_attach(&gw->activity, routes); /* before any worker sees it */
    gw->current = routes;
    atomic_store(&gw->n_routes, n);
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];
        struct gw_routes *prev;

        uv_mutex_lock(&w->slot_lock);
        prev = w->slot;
        w->slot = gw_routes_ref(routes);
        uv_mutex_unlock(&w->slot_lock);
        gw_routes_unref(prev); /* never taken: a newer table came first */
        uv_async_send(&w->wake);
    }
    gw_routes_unref(old);
}

const struct gw_routes *
gw_current_routes(const struct gateway *gw)
{
    return gw->current;
}

bool
gw_activity(struct gateway *gw, int64_t env_id, int64_t *last_ms, int *open, char *what,
            size_t what_size)
{
    return gw__activity_read(&gw->activity, env_id, last_ms, open, what, what_size);
}

/* ------------------------------------------------------------- metrics */

static int
compare_series(const void *a, const void *b)
{
    const struct gw_series *x = *(const struct gw_series *const *)a;
    const struct gw_series *y = *(const struct gw_series *const *)b;
    int c = strcmp(x->env, y->env);

    if (c == 0)
        c = strcmp(x->service, y->service);
    if (c == 0)
        c = x->code - y->code;
    return c;
}

/* A label value: backslash, quote and newline escaped. */
static void
label_value(struct buf *out, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            buf_printf(out, "\\%c", *s);
        else if (*s == '\n')
            buf_puts(out, "\\n");
        else
            buf_append(out, s, 1);
    }
}

void
gw_metrics(struct gateway *gw, struct buf *out)
{
    size_t n_slots = 64, n_series = 0;
    struct gw_series **slots = xcalloc(n_slots, sizeof(*slots));
    struct gw_series **list;
    uint64_t hist[GW_HIST_N + 1] = {0};
    uint64_t errors[GW_UPERR_N] = {0};
    uint64_t count = 0, cumulative = 0;
    double sum = 0;
    size_t k = 0;

    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];
        struct gw_wmetrics *m = &w->metrics;

        uv_mutex_lock(&w->metrics_lock);
        for (size_t j = 0; j < m->n_slots; j++) {
            for (struct gw_series *s = m->slots[j]; s; s = s->next)
                series_get(&slots, &n_slots, &n_series, s->env, s->service, s->code)->count +=
                    s->count;
        }
        for (int b = 0; b <= GW_HIST_N; b++)
            hist[b] += m->hist[b];
        sum += m->hist_sum_s;
        count += m->hist_count;
        for (int e = 0; e < GW_UPERR_N; e++)
            errors[e] += m->upstream_errors[e];
        uv_mutex_unlock(&w->metrics_lock);
    }
    list = xcalloc(n_series + 1, sizeof(*list));
    for (size_t j = 0; j < n_slots; j++) {
        for (struct gw_series *s = slots[j]; s; s = s->next)
            list[k++] = s;
    }
    qsort(list, n_series, sizeof(*list), compare_series);
    buf_puts(out, "# HELP eph_gateway_requests_total Requests answered by the gateway.\n"
                  "# TYPE eph_gateway_requests_total counter\n");
    for (size_t j = 0; j < n_series; j++) {
        buf_puts(out, "eph_gateway_requests_total{env=\"");
        label_value(out, list[j]->env);
        buf_puts(out, "\",service=\"");
        label_value(out, list[j]->service);
        buf_printf(out, "\",code=\"%d\"} %llu\n", list[j]->code,
                   (unsigned long long)list[j]->count);
    }
    buf_puts(out, "# HELP eph_gateway_request_duration_seconds Time from the first byte of a "
                  "request to the end of its response.\n"
                  "# TYPE eph_gateway_request_duration_seconds histogram\n");
    for (int b = 0; b < GW_HIST_N; b++) {
        cumulative += hist[b];
        buf_printf(out, "eph_gateway_request_duration_seconds_bucket{le=\"%g\"} %llu\n", hist_le[b],
                   (unsigned long long)cumulative);
    }
    buf_printf(out,
               "eph_gateway_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n"
               "eph_gateway_request_duration_seconds_sum %.6f\n"
               "eph_gateway_request_duration_seconds_count %llu\n",
               (unsigned long long)count, sum, (unsigned long long)count);
    buf_printf(out,
               "# HELP eph_gateway_open_connections Client connections open now.\n"
               "# TYPE eph_gateway_open_connections gauge\n"
               "eph_gateway_open_connections %d\n",
               atomic_load(&gw->open_connections));
    buf_printf(out,
               "# HELP eph_gateway_held_requests Requests held until their environment wakes up.\n"
               "# TYPE eph_gateway_held_requests gauge\n"
               "eph_gateway_held_requests %d\n",
               atomic_load(&gw->held_requests));
    buf_puts(out, "# HELP eph_gateway_upstream_errors_total Failed upstream connections and "
                  "responses.\n"
                  "# TYPE eph_gateway_upstream_errors_total counter\n");
    for (int e = 0; e < GW_UPERR_N; e++)
        buf_printf(out, "eph_gateway_upstream_errors_total{kind=\"%s\"} %llu\n", uperr_names[e],
                   (unsigned long long)errors[e]);
    buf_printf(out,
               "# HELP eph_gateway_routes Service routes in the current table.\n"
               "# TYPE eph_gateway_routes gauge\n"
               "eph_gateway_routes %zu\n",
               atomic_load(&gw->n_routes));
    free(list);
    series_free_all(slots, n_slots);
}

/* ------------------------------------------------------------- stop */

static void
on_done_closed(uv_handle_t *h)
{
    struct gateway *gw = container_of((uv_async_t *)h, struct gateway, done_async);
    void (*done)(void *) = gw->done;
    void *arg = gw->done_arg;

    if (done)
        done(arg);
    gateway_free(gw);
}

static void
on_workers_done(uv_async_t *a)
{
    struct gateway *gw = container_of(a, struct gateway, done_async);

    for (int i = 0; i < gw->n_workers; i++)
        uv_thread_join(&gw->workers[i].thread);
    log_info("gateway stopped", "port=%d", gw->port);
    uv_close((uv_handle_t *)a, on_done_closed);
}

void
gw_stop(struct gateway *gw, uv_loop_t *loop, int64_t deadline_ms, void (*done)(void *arg),
        void *arg)
{
    EPH_ASSERT(!gw->stopping);
    gw->stopping = true;
    gw->done = done;
    gw->done_arg = arg;
    uv_async_init(loop, &gw->done_async, on_workers_done);
    for (int i = 0; i < gw->n_workers; i++) {
        struct gw_worker *w = &gw->workers[i];

        uv_mutex_lock(&w->slot_lock);
        w->stop_requested = true;
        w->stop_deadline_ms = deadline_ms;
        uv_mutex_unlock(&w->slot_lock);
        uv_async_send(&w->wake);
    }
}
