/*
 * gateway/upstream.c - connections to upstreams and the per-worker pool of
 * idle keep-alive ones, keyed by "host:port" (route->upstream_key).
 *
 * A connection is RESOLVING (a host name, through getaddrinfo on the thread
 * pool; IP literals skip it), CONNECTING (connect_timeout_ms), BUSY with one
 * client, or IDLE in its key's list (most recently used first, at most
 * upstream_keepalive in the config, closed after upstream_idle_ms). Idle ones keep
 * reading: an upstream that closes or talks out of turn is dropped at once,
 * so a stale connection is rarely handed out (proxy.c retries the rare one
 * once, on a fresh connection).
 *
 * One timer per connection serves connect, first-byte and idle timeouts.
 * Memory: freed when both handles have closed and no getaddrinfo is pending.
 */
#include "gateway/proxy_int.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"

#define LOG_MOD "gateway"
#include "util/log.h"

enum { UT_NONE, UT_CONNECT, UT_FIRST_BYTE, UT_IDLE, UT_FAIL };

static void upstream_close(struct gw_upstream *u);
static void on_upstream_timer(uv_timer_t *t);

/* ------------------------------------------------------------- pool keys */

static uint64_t
key_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;

    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ULL;
    }
    return h;
}

void
gw__pool_init(struct gw_pool *pool)
{
    pool->n_slots = 64;
    pool->n_keys = 0;
    pool->slots = xcalloc(pool->n_slots, sizeof(*pool->slots));
}

void
gw__pool_release(struct gw_pool *pool)
{
    for (size_t i = 0; i < pool->n_slots; i++) {
        struct gw_pool_key *k = pool->slots[i];

        while (k) {
            struct gw_pool_key *next = k->next;

            EPH_ASSERT(k->idle == NULL);
            free(k->host);
            free(k);
            k = next;
        }
    }
    free(pool->slots);
    memset(pool, 0, sizeof(*pool));
}

static struct gw_pool_key *
pool_find(struct gw_pool *pool, const char *key, uint64_t h)
{
    for (struct gw_pool_key *k = pool->slots[h & (pool->n_slots - 1)]; k; k = k->next) {
        if (k->hash == h && strcmp(k->key, key) == 0)
            return k;
    }
    return NULL;
}

static void
pool_grow(struct gw_pool *pool)
{
    size_t n = pool->n_slots * 2;
    struct gw_pool_key **slots = xcalloc(n, sizeof(*slots));

    for (size_t i = 0; i < pool->n_slots; i++) {
        struct gw_pool_key *k = pool->slots[i];

        while (k) {
            struct gw_pool_key *next = k->next;

            k->next = slots[k->hash & (n - 1)];
            slots[k->hash & (n - 1)] = k;
            k = next;
        }
    }
    free(pool->slots);
    pool->slots = slots;
    pool->n_slots = n;
}

/* Parses an IP literal (or "localhost") into addr; false for a host name. */
static bool
literal_addr(const char *host, int port, struct sockaddr_storage *addr)
{
    memset(addr, 0, sizeof(*addr));
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) == 0)
        return true;
    if (host[0] == '[') {
        char tmp[64];
        size_t n = strlen(host);

        if (n < 3 || n - 2 >= sizeof(tmp) || host[n - 1] != ']')
            return false;
        memcpy(tmp, host + 1, n - 2);
        tmp[n - 2] = '\0';
        return uv_ip6_addr(tmp, port, (struct sockaddr_in6 *)addr) == 0;
    }
    return uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) == 0;
}

static struct gw_pool_key *
pool_get(struct gw_worker *w, const char *key, const char *host, int port)
{
    struct gw_pool *pool = &w->pool;
    uint64_t h = key_hash(key);
    struct gw_pool_key *k = pool_find(pool, key, h);

    if (k)
        return k;
    if (pool->n_keys >= pool->n_slots)
        pool_grow(pool);
    k = xcalloc(1, sizeof(*k));
    k->hash = h;
    snprintf(k->key, sizeof(k->key), "%s", key);
    k->host = xstrdup(host);
    k->port = port;
    k->addr_ok = literal_addr(host, port, &k->addr);
    k->resolved_ms = 0; /* a literal never expires: see needs_resolve() */
    k->next = pool->slots[h & (pool->n_slots - 1)];
    pool->slots[h & (pool->n_slots - 1)] = k;
    pool->n_keys++;
    return k;
}

static bool
needs_resolve(struct gw_worker *w, const struct gw_pool_key *k)
{
    if (!k->addr_ok)
        return true;
    if (k->resolved_ms == 0)
        return false; /* an IP literal */
    return uv_now(&w->loop) - k->resolved_ms > GW_RESOLVE_TTL_MS;
}

static void
idle_unlink(struct gw_upstream *u)
{
    struct gw_pool_key *k = u->pk;

    if (u->idle_prev)
        u->idle_prev->idle_next = u->idle_next;
    else
        k->idle = u->idle_next;
    if (u->idle_next)
        u->idle_next->idle_prev = u->idle_prev;
    u->idle_prev = u->idle_next = NULL;
    k->n_idle--;
}

/* ------------------------------------------------------------- timers and reading */

/* Lazy, like the client's: see proxy.c. */
static void
timer_set(struct gw_upstream *u, int mode, int64_t ms)
{
    uint64_t now;

    if (u->closing)
        return;
    u->timer_mode = mode;
    if (mode == UT_NONE)
        return; /* an armed timer finds nothing to do */
    if (ms < 0)
        ms = 0;
    now = uv_now(&u->w->loop);
    u->deadline = now + (uint64_t)ms;
    if (!uv_is_active((uv_handle_t *)&u->timer) || u->timer_due > u->deadline) {
        u->timer_due = u->deadline;
        uv_timer_start(&u->timer, on_upstream_timer, (uint64_t)ms, 0);
    }
}

static void
on_upstream_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct gw_upstream *u = container_of((uv_tcp_t *)h, struct gw_upstream, tcp);
    struct gw_block *b = gw__block_get(u->w);

    (void)suggested;
    *out = uv_buf_init(b->data, GW_BLOCK_BYTES);
}

static void
on_upstream_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gw_upstream *u = container_of((uv_tcp_t *)s, struct gw_upstream, tcp);
    struct gw_block *blk = buf->base ? gw__block_of(buf->base) : NULL;
    struct gw_client *c = u->client;

    if (nread == 0 || u->closing) {
        if (blk)
            gw__block_unref(u->w, blk);
        return;
    }
    if (nread < 0) {
        if (blk)
            gw__block_unref(u->w, blk);
        u->reading = false; /* libuv stops reading at EOF and on errors */
        if (c == NULL || u->state != GW_US_BUSY) {
            upstream_close(u); /* an idle one closed: fine */
            return;
        }
        gw__proxy_upstream_read(c, u, nread, NULL);
        return;
    }
    if (c == NULL || u->state != GW_US_BUSY) {
        /* An idle upstream talking out of turn is not to be trusted. */
        gw__block_unref(u->w, blk);
        upstream_close(u);
        return;
    }
    if (!u->got_bytes) {
        u->got_bytes = true;
        if (u->timer_mode == UT_FIRST_BYTE)
            timer_set(u, UT_NONE, 0);
    }
    /* The block's reference passes to the client. */
    gw__proxy_upstream_read(c, u, nread, blk);
}

static void
set_reading(struct gw_upstream *u, bool on)
{
    if (u->closing || on == u->reading)
        return;
    if (on) {
        if (uv_read_start((uv_stream_t *)&u->tcp, on_upstream_alloc, on_upstream_read) < 0)
            return; /* the next write fails and tells the client */
    } else {
        uv_read_stop((uv_stream_t *)&u->tcp);
    }
    u->reading = on;
}

void
gw__upstream_reading(struct gw_upstream *u, bool on)
{
    if (u->state == GW_US_BUSY)
        set_reading(u, on);
}

void
gw__upstream_first_byte_timer(struct gw_upstream *u, bool on)
{
    if (on) {
        if (!u->got_bytes)
            timer_set(u, UT_FIRST_BYTE, u->w->cfg->first_byte_timeout_ms);
    } else if (u->timer_mode == UT_FIRST_BYTE) {
        timer_set(u, UT_NONE, 0);
    }
}

/* ------------------------------------------------------------- closing */

static void
upstream_maybe_free(struct gw_upstream *u)
{
    struct gw_worker *w = u->w;

    if (u->handles_open > 0 || u->gai_pending)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        w->upstreams = u->next;
    if (u->next)
        u->next->prev = u->prev;
    w->n_upstreams--;
    free(u);
    gw__worker_maybe_exit(w);
}

static void
on_upstream_handle_closed(uv_handle_t *h)
{
    struct gw_upstream *u;

    if (h->type == UV_TCP)
        u = container_of((uv_tcp_t *)h, struct gw_upstream, tcp);
    else
        u = container_of((uv_timer_t *)h, struct gw_upstream, timer);
    u->handles_open--;
    upstream_maybe_free(u);
}

static void
upstream_close(struct gw_upstream *u)
{
    if (u->closing)
        return;
    if (u->state == GW_US_IDLE)
        idle_unlink(u);
    u->closing = true;
    u->client = NULL;
    u->reading = false;
    if (u->gai_pending)
        uv_cancel((uv_req_t *)&u->gai); /* its callback still runs, with an error */
    uv_close((uv_handle_t *)&u->tcp, on_upstream_handle_closed);
    uv_close((uv_handle_t *)&u->timer, on_upstream_handle_closed);
}

void
gw__upstream_abort(struct gw_upstream *u)
{
    upstream_close(u);
}

void
gw__close_upstreams(struct gw_worker *w, bool idle_only)
{
    struct gw_upstream *u = w->upstreams;

    while (u) {
        struct gw_upstream *next = u->next;

        if (!u->closing && (!idle_only || u->state == GW_US_IDLE || u->client == NULL))
            upstream_close(u);
        u = next;
    }
}

/* ------------------------------------------------------------- connecting */

/* Tells the client how the connection went; on failure u closes. */
static void
report(struct gw_upstream *u, int status)
{
    struct gw_client *c = u->client;

    if (status < 0) {
        enum gw_uperr kind = status == UV_ETIMEDOUT        ? GW_UPERR_CONNECT_TIMEOUT
                             : u->state == GW_US_RESOLVING ? GW_UPERR_RESOLVE
                                                           : GW_UPERR_REFUSED;

        gw__metrics_upstream_error(u->w, kind);
        log_debug("upstream connect failed", "upstream=%s error=%s", u->pk->key,
                  uv_strerror(status));
        upstream_close(u);
    } else {
        u->state = GW_US_BUSY;
    }
    if (c)
        gw__proxy_upstream_ready(c, u, status);
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct gw_upstream *u = container_of(req, struct gw_upstream, connect_req);

    if (u->closing || status == UV_ECANCELED)
        return;
    timer_set(u, UT_NONE, 0);
    if (status == 0) {
        uv_tcp_nodelay(&u->tcp, 1);
        u->state = GW_US_BUSY;
        set_reading(u, true);
    }
    report(u, status);
}

static void
start_connect(struct gw_upstream *u)
{
    int rc;

    u->state = GW_US_CONNECTING;
    rc = uv_tcp_connect(&u->connect_req, &u->tcp, (const struct sockaddr *)&u->pk->addr,
                        on_connected);
    if (rc < 0) {
        /* Never call the client back from inside gw__upstream_connect(). */
        u->fail_status = rc;
        timer_set(u, UT_FAIL, 0);
        return;
    }
    if (u->timer_mode != UT_CONNECT)
        timer_set(u, UT_CONNECT, u->w->cfg->connect_timeout_ms);
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct gw_upstream *u = container_of(req, struct gw_upstream, gai);
    struct gw_pool_key *k = u->pk;

    u->gai_pending = false;
    if (u->closing) {
        uv_freeaddrinfo(res);
        upstream_maybe_free(u);
        return;
    }
    if (status < 0 || res == NULL) {
        uv_freeaddrinfo(res);
        timer_set(u, UT_NONE, 0);
        report(u, status < 0 ? status : UV_EAI_NONAME);
        return;
    }
    memset(&k->addr, 0, sizeof(k->addr));
    memcpy(&k->addr, res->ai_addr, res->ai_addrlen);
    if (k->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&k->addr)->sin_port = htons((uint16_t)k->port);
    else
        ((struct sockaddr_in6 *)&k->addr)->sin6_port = htons((uint16_t)k->port);
    k->addr_ok = true;
    k->resolved_ms = uv_now(&u->w->loop) ? uv_now(&u->w->loop) : 1;
    uv_freeaddrinfo(res);
    start_connect(u);
}

static void
on_upstream_timer(uv_timer_t *t)
{
    struct gw_upstream *u = container_of(t, struct gw_upstream, timer);
    int mode = u->timer_mode;
    uint64_t now = uv_now(&u->w->loop);

    if (mode == UT_NONE)
        return;
    if (now < u->deadline) {
        u->timer_due = u->deadline;
        uv_timer_start(&u->timer, on_upstream_timer, u->deadline - now, 0);
        return;
    }
    u->timer_mode = UT_NONE;
    switch (mode) {
    case UT_CONNECT: report(u, UV_ETIMEDOUT); break;
    case UT_FAIL: report(u, u->fail_status); break;
    case UT_FIRST_BYTE:
        gw__metrics_upstream_error(u->w, GW_UPERR_FIRST_BYTE_TIMEOUT);
        if (u->client)
            gw__proxy_upstream_timeout(u->client, u);
        else
            upstream_close(u);
        break;
    case UT_IDLE: upstream_close(u); break;
    default: break;
    }
}

struct gw_upstream *
gw__upstream_connect(struct gw_worker *w, const char *key, const char *host, int port,
                     struct gw_client *c)
{
    struct gw_pool_key *k = pool_get(w, key, host, port);
    struct gw_upstream *u = xcalloc(1, sizeof(*u));

    u->w = w;
    u->pk = k;
    u->client = c;
    uv_tcp_init(&w->loop, &u->tcp);
    uv_timer_init(&w->loop, &u->timer);
    u->handles_open = 2;
    u->next = w->upstreams;
    if (w->upstreams)
        w->upstreams->prev = u;
    w->upstreams = u;
    w->n_upstreams++;
    if (!needs_resolve(w, k)) {
        start_connect(u);
        return u;
    }
    {
        struct addrinfo hints;
        char port_s[8];
        int rc;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        snprintf(port_s, sizeof(port_s), "%d", port);
        u->state = GW_US_RESOLVING;
        /* The connect timeout covers the resolution too. */
        timer_set(u, UT_CONNECT, w->cfg->connect_timeout_ms);
        rc = uv_getaddrinfo(&w->loop, &u->gai, on_resolved, k->host, port_s, &hints);
        if (rc < 0) {
            u->fail_status = rc;
            timer_set(u, UT_FAIL, 0);
        } else {
            u->gai_pending = true;
        }
    }
    return u;
}

/* ------------------------------------------------------------- the pool */

struct gw_upstream *
gw__upstream_take(struct gw_worker *w, const char *key, struct gw_client *c)
{
    struct gw_pool *pool = &w->pool;
    struct gw_pool_key *k = pool_find(pool, key, key_hash(key));
    struct gw_upstream *u;

    if (k == NULL || k->idle == NULL)
        return NULL;
    u = k->idle;
    idle_unlink(u);
    timer_set(u, UT_NONE, 0);
    u->state = GW_US_BUSY;
    u->client = c;
    u->reused = true;
    u->got_bytes = false;
    return u;
}

void
gw__upstream_release(struct gw_upstream *u, bool reusable)
{
    struct gw_worker *w = u->w;
    struct gw_pool_key *k = u->pk;

    u->client = NULL;
    if (!reusable || u->closing || w->stopping || u->state != GW_US_BUSY ||
        k->n_idle >= (size_t)w->cfg->upstream_keepalive) {
        upstream_close(u);
        return;
    }
    u->state = GW_US_IDLE;
    u->got_bytes = false;
    u->idle_prev = NULL;
    u->idle_next = k->idle;
    if (k->idle)
        k->idle->idle_prev = u;
    k->idle = u;
    k->n_idle++;
    /* Reading goes on while idle: a close or stray bytes drop it. */
    set_reading(u, true);
    timer_set(u, UT_IDLE, w->cfg->upstream_idle_ms);
}
