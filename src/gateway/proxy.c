/*
 * gateway/proxy.c - one client connection of the reverse proxy, as a state
 * machine on its worker's loop:
 *
 *   IDLE -> HEAD -> (route) -> CONNECT -> PROXY -> IDLE ...   keep-alive
 *                      \-> a page of our own (404, 503 ...) -> DISCARD -> IDLE
 *                      \-> HOLD (its environment wakes up) -> CONNECT or a page
 *                                            PROXY -> TUNNEL  on a 101
 *                                      any -> LINGER -> closed
 *
 * Requests are answered one at a time and in order: the parser pauses at
 * the end of each request and what follows (pipelined requests) waits in
 * the one read block, with reading stopped, until the response is done.
 *
 * Bodies stream both ways out of the block they were read into: http-parser
 * hands decoded slices to a callback that gathers them (with chunk framing
 * we write ourselves) into one writev; uv_try_write sends what the socket
 * takes, and a uv_write with a reference to the block carries the rest.
 * Past GW_HIGH_WATER_BYTES unwritten towards one side, the other side stops
 * reading until GW_LOW_WATER_BYTES.
 *
 * Errors met inside parser callbacks (a failed write) are only recorded
 * there, and handled once the parser has returned.
 *
 * Held requests: a request for a service of an environment that is asleep
 * (and may be woken) or waking is parked in HOLD with the client's reads
 * stopped, on the worker's list, until a table the worker picks up makes
 * the service routable (then it goes on as if it had just arrived), says
 * the environment failed (503), is gone (404) or may not be woken (503), or
 * until wake_timeout passes (503). A browser navigation gets the "waking
 * up" page after a second instead: it reloads itself, and so shows that
 * something happens. Each environment holds at most wake_queue requests
 * per worker; beyond, 503 at once.
 *
 * Activity: every request to a service stamps its environment's slot
 * (activity.c) with the coarse wall clock and the service, and an exchange
 * proxied to a service counts in the slot's `open` until it ends, tunnels
 * and streamed responses included.
 */
#include "gateway/proxy_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "auth/signed.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "gateway"
#include "util/log.h"

/* Free write requests a worker keeps for reuse. */
#define GW_FREE_WREQS_MAX 256
/* A write request keeps a copy buffer up to this size for its next use. */
#define GW_WREQ_KEEP_COPY 4096
/* How long a closing connection may take to flush its last response. */
#define GW_FLUSH_MS 30000
/* A request body up to this size is read and dropped after a page of our
 * own, keeping the connection; a larger one closes it. */
#define GW_DISCARD_MAX_BYTES (64 * 1024)

enum cstate {
    CS_IDLE,    /* keep-alive: waiting for the first byte of a request */
    CS_HEAD,    /* reading a request head */
    CS_CONNECT, /* head parsed, waiting for the upstream connection */
    CS_PROXY,   /* exchange with the upstream */
    CS_DISCARD, /* answered ourselves; reading the rest of the request body */
    CS_TUNNEL,  /* upgraded: raw bytes both ways */
    CS_LINGER,  /* last response queued: flush, FIN, drop input, close */
    CS_HOLD,    /* head parsed, held until its environment is awake (reads stopped) */
};

enum ctimer {
    CT_NONE,
    CT_HEAD,   /* the whole request head: 408 */
    CT_IDLE,   /* keep-alive without a request: close */
    CT_FLUSH,  /* the last response is still being written: close */
    CT_STALL,  /* an exchange: the client must keep sending its body or reading
                  ours (idle_timeout_ms without progress: 408 or close) */
    CT_LINGER, /* FIN sent, dropping input: close */
    CT_HOLD,   /* held: wake_timeout (503), or a browser's "waking up" page */
};

struct gw_client {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct gw_worker *w;
    struct gw_client *prev, *next; /* the worker's list */
    struct gw_client *failed_next; /* the worker's list of failed writes */
    struct gw_routes *routes;      /* the table of the current request (a reference) */
    struct gw_reqp rp;
    struct gw_respp sp;
    struct buf up_head; /* the request head sent upstream (kept for a retry) */
    struct buf out;     /* a response head or a page for the client */
    struct gw_batch to_client;
    struct gw_batch to_up;
    struct gw_block *in; /* read, not parsed yet (a reference), or NULL */
    size_t in_off, in_len;
    struct gw_block *up_blk; /* the upstream block being parsed (for body slices) */
    struct gw_upstream *up;  /* the upstream of the exchange, or NULL */
    struct gw_activity *act; /* the env whose `open` counts this exchange, or NULL */
    /* While held (CS_HOLD): */
    struct gw_client *held_prev, *held_next; /* the worker's list */
    struct gw_activity *held_in;             /* whose n_held counts it; NULL: not held */
    const struct gw_route_service *held_r;   /* its service in c->routes */
    uint64_t hold_until;                     /* loop time wake_timeout passes */
    uint64_t hold_page_at;                   /* a browser's "waking up" page; or never */
    enum cstate state;
    enum ctimer timer_mode;
    uint64_t deadline;        /* loop time the current timer mode expires */
    uint64_t timer_due;       /* loop time the armed uv timer fires */
    struct gw_series *series; /* the last metrics series counted (a cache) */
    uint64_t progress;        /* bumped by every read from and write to the client */
    uint64_t progress_at_arm; /* `progress` when CT_STALL was armed */
    size_t pending;           /* bytes queued to the client, not yet written */
    int handles_open;         /* 2 until both close callbacks ran */
    int client_err;           /* a write to the client failed (handled later) */
    int up_err;               /* a write to the upstream failed (handled later) */
    bool reading;
    bool closing;
    bool failed;      /* on the worker's list of failed writes */
    bool processing;  /* inside client_process (guards reentry) */
    bool eof;         /* the client sent its FIN */
    bool counted;     /* counted in the gateway's open connections */
    bool in_exchange; /* a request is being answered (logged when it ends) */
    bool close_after; /* no keep-alive after this exchange */
    bool req_done;    /* the whole request went upstream (or was read) */
    bool resp_started;
    bool resp_done;
    bool retried;  /* a stale pooled connection was replaced once */
    bool up_dirty; /* the upstream sent more than its response */
    struct gw_resp_plan plan;
    struct gw_guard_pass pass; /* who the current request to a service comes from */
    bool to_service;           /* the current request goes to a service host */
    const char *env_name;      /* of the exchange: borrowed from routes, or static */
    const char *svc_name;
    const char *up_key; /* the upstream address, borrowed like the names */
    const char *up_host;
    int up_port;
    int status;           /* sent to the client; 0 before the response */
    uint64_t resp_bytes;  /* response body bytes */
    uint64_t t_start_ns;  /* the request's first byte (uv_hrtime) */
    uint64_t t_up_ns;     /* the upstream was asked for, 0 if never (a real
                             time only with an access log: clocks cost) */
    uint64_t t_up_end_ns; /* the response was complete (access log only) */
    char remote[64];      /* the client's address */
};

static void client_process(struct gw_client *c);
static void client_close(struct gw_client *c);
static void client_shutdown(struct gw_client *c);
static void client_update_reading(struct gw_client *c);
static void finish_exchange(struct gw_client *c);
static void upstream_failed(struct gw_client *c, int status);
static void refuse(struct gw_client *c, int status, const char *reason);
static void on_hold_timer(struct gw_client *c);

/* ------------------------------------------------------------- blocks */

struct gw_block *
gw__block_get(struct gw_worker *w)
{
    struct gw_block *b = w->free_blocks;

    if (b) {
        w->free_blocks = b->next_free;
        w->n_free_blocks--;
    } else {
        b = xmalloc(offsetof(struct gw_block, data) + GW_BLOCK_BYTES);
        b->cap = GW_BLOCK_BYTES;
    }
    b->next_free = NULL;
    b->refs = 1;
    return b;
}

/* A block of exactly len bytes holding a copy of p (never reused). */
static struct gw_block *
block_copy(const char *p, size_t len)
{
    struct gw_block *b = xmalloc(offsetof(struct gw_block, data) + len);

    b->next_free = NULL;
    b->refs = 1;
    b->cap = (uint32_t)len;
    memcpy(b->data, p, len);
    return b;
}

void
gw__block_unref(struct gw_worker *w, struct gw_block *b)
{
    if (--b->refs > 0)
        return;
    if (b->cap == GW_BLOCK_BYTES && w->n_free_blocks < GW_FREE_BLOCKS_MAX) {
        b->next_free = w->free_blocks;
        w->free_blocks = b;
        w->n_free_blocks++;
        return;
    }
    free(b);
}

struct gw_block *
gw__block_of(const char *base)
{
    return (struct gw_block *)(uintptr_t)(base - offsetof(struct gw_block, data));
}

void
gw__worker_release_buffers(struct gw_worker *w)
{
    while (w->free_blocks) {
        struct gw_block *b = w->free_blocks;

        w->free_blocks = b->next_free;
        free(b);
    }
    w->n_free_blocks = 0;
    while (w->free_wreqs) {
        struct gw_wreq *r = w->free_wreqs;

        w->free_wreqs = r->next_free;
        free(r->copy);
        free(r);
    }
    w->n_free_wreqs = 0;
}

/* ------------------------------------------------------------- writing */

static struct gw_worker *
worker_of_loop(uv_loop_t *loop)
{
    return container_of(loop, struct gw_worker, loop);
}

static struct gw_wreq *
wreq_get(struct gw_worker *w)
{
    struct gw_wreq *r = w->free_wreqs;

    if (r) {
        w->free_wreqs = r->next_free;
        w->n_free_wreqs--;
        return r;
    }
    return xcalloc(1, sizeof(*r));
}

static void
wreq_put(struct gw_worker *w, struct gw_wreq *r)
{
    if (r->blk) {
        gw__block_unref(w, r->blk);
        r->blk = NULL;
    }
    if (r->copy_cap > GW_WREQ_KEEP_COPY) {
        free(r->copy);
        r->copy = NULL;
        r->copy_cap = 0;
    }
    if (w->n_free_wreqs >= GW_FREE_WREQS_MAX) {
        free(r->copy);
        free(r);
        return;
    }
    r->next_free = w->free_wreqs;
    w->free_wreqs = r;
    w->n_free_wreqs++;
}

static void
batch_reset(struct gw_worker *w, struct gw_batch *b)
{
    if (b->blk) {
        gw__block_unref(w, b->blk);
        b->blk = NULL;
    }
    b->n = 0;
    b->bytes = 0;
    b->scratch_len = 0;
}

static bool
in_block(const struct gw_block *blk, const char *p)
{
    return blk && p >= blk->data && p < blk->data + blk->cap;
}

static void on_wreq_done(uv_write_t *req, int status);

int
gw__batch_flush(struct gw_worker *w, struct gw_batch *b, uv_tcp_t *dst, size_t *pending,
                bool to_client)
{
    struct gw_wreq *r;
    size_t total = b->bytes;
    size_t skip, copy_len = 0, off = 0;
    unsigned i = 0, n = 0;
    int rc;

    if (b->n == 0)
        return 0;
    rc = uv_try_write((uv_stream_t *)dst, b->bufs, b->n);
    if (rc == UV_EAGAIN || rc == UV_ENOSYS)
        rc = 0;
    if (rc < 0) {
        batch_reset(w, b);
        return rc;
    }
    if ((size_t)rc == total) {
        batch_reset(w, b);
        return 0;
    }
    /* The socket took `rc` bytes; the rest waits in a write request. */
    skip = (size_t)rc;
    while (skip >= b->bufs[i].len) {
        skip -= b->bufs[i].len;
        i++;
    }
    b->bufs[i].base += skip;
    b->bufs[i].len -= skip;
    for (unsigned k = i; k < b->n; k++) {
        if (!in_block(b->blk, b->bufs[k].base))
            copy_len += b->bufs[k].len;
    }
    r = wreq_get(w);
    if (copy_len > r->copy_cap) {
        free(r->copy);
        r->copy = xmalloc(copy_len);
        r->copy_cap = copy_len;
    }
    for (unsigned k = i; k < b->n; k++) {
        if (in_block(b->blk, b->bufs[k].base)) {
            r->bufs[n++] = b->bufs[k];
            if (r->blk == NULL) {
                r->blk = b->blk;
                r->blk->refs++;
            }
        } else {
            memcpy(r->copy + off, b->bufs[k].base, b->bufs[k].len);
            r->bufs[n++] = uv_buf_init(r->copy + off, (unsigned int)b->bufs[k].len);
            off += b->bufs[k].len;
        }
    }
    r->len = total - (size_t)rc;
    r->to_client = to_client;
    batch_reset(w, b);
    rc = uv_write(&r->req, (uv_stream_t *)dst, r->bufs, n, on_wreq_done);
    if (rc < 0) {
        wreq_put(w, r);
        return rc;
    }
    *pending += r->len;
    return 0;
}

/* ------------------------------------------------------------- sending */

/*
 * A batch goes out as soon as the event that filled it has been handled:
 * the peers see requests and responses at once (gathering them until the
 * end of the loop's turn was measured slower at high concurrency). A write
 * that fails inside a parser callback is only recorded; the client is put
 * on the worker's list and handled at the end of the turn
 * (gw__on_failed_writes), where nothing is half done.
 */
static void
defer_failure(struct gw_client *c)
{
    if (c->failed || c->closing)
        return;
    c->failed = true;
    c->failed_next = c->w->failed;
    c->w->failed = c;
}

static void
flush_client(struct gw_client *c)
{
    int rc;

    if (c->closing || c->client_err) {
        batch_reset(c->w, &c->to_client);
        return;
    }
    rc = gw__batch_flush(c->w, &c->to_client, &c->tcp, &c->pending, true);
    if (rc < 0) {
        c->client_err = rc;
        defer_failure(c);
    }
}

static void
flush_up(struct gw_client *c)
{
    int rc;

    if (c->up == NULL || c->up->closing || c->up_err) {
        batch_reset(c->w, &c->to_up);
        return;
    }
    rc = gw__batch_flush(c->w, &c->to_up, &c->up->tcp, &c->up->pending, false);
    if (rc < 0) {
        c->up_err = rc;
        defer_failure(c);
    }
}

/* c->out, ready to be written again: what the batch still points at goes first. */
static struct buf *
client_out(struct gw_client *c)
{
    if (c->to_client.n > 0)
        flush_client(c);
    return &c->out;
}

/* Closes the exchange's upstream connection (never reused) and drops what
 * was gathered for it. */
static void
drop_upstream(struct gw_client *c)
{
    if (c->up) {
        gw__upstream_abort(c->up);
        c->up = NULL;
    }
    batch_reset(c->w, &c->to_up);
}

/* Adds bytes to a batch; `blk` is the block they live in, NULL if they are
 * ours (a head, a page: copied should the write have to wait). */
static void
batch_add(struct gw_client *c, bool to_client, const char *p, size_t len, struct gw_block *blk)
{
    struct gw_batch *b = to_client ? &c->to_client : &c->to_up;

    if (len == 0)
        return;
    if (b->n == GW_BATCH_BUFS || (blk && b->blk && b->blk != blk)) {
        if (to_client)
            flush_client(c);
        else
            flush_up(c);
    }
    if (blk && b->blk == NULL) {
        b->blk = blk;
        blk->refs++; /* the batch's own, until it is sent */
    }
    b->bufs[b->n++] = uv_buf_init((char *)(uintptr_t)p, (unsigned int)len);
    b->bytes += len;
}

/* Adds a body slice with chunk framing: size line, data, CRLF. */
static void
batch_add_chunk(struct gw_client *c, bool to_client, const char *p, size_t len,
                struct gw_block *blk)
{
    struct gw_batch *b = to_client ? &c->to_client : &c->to_up;
    char *line;
    size_t n;

    if (len == 0)
        return;
    if (b->n + 3 > GW_BATCH_BUFS || b->scratch_len + 24 > sizeof(b->scratch) ||
        (b->blk && b->blk != blk)) {
        if (to_client)
            flush_client(c);
        else
            flush_up(c);
    }
    line = b->scratch + b->scratch_len;
    n = gw__chunk_line(line, len);
    b->scratch_len += n;
    batch_add(c, to_client, line, n, NULL);
    batch_add(c, to_client, p, len, blk);
    batch_add(c, to_client, "\r\n", 2, NULL);
}

static void
client_drained(struct gw_client *c)
{
    if (c->up && (c->state == CS_PROXY || c->state == CS_TUNNEL))
        gw__upstream_reading(c->up, true);
    client_update_reading(c);
}

static void
on_wreq_done(uv_write_t *req, int status)
{
    struct gw_wreq *r = container_of(req, struct gw_wreq, req);
    struct gw_worker *w = worker_of_loop(req->handle->loop);
    size_t len = r->len;

    if (r->to_client) {
        struct gw_client *c = container_of((uv_tcp_t *)req->handle, struct gw_client, tcp);

        c->pending -= len;
        c->progress++;
        wreq_put(w, r);
        if (c->closing)
            return;
        if (status < 0) {
            log_debug("client write failed", "remote=%s error=%s", c->remote, uv_strerror(status));
            client_close(c);
            return;
        }
        if (c->pending <= GW_LOW_WATER_BYTES)
            client_drained(c);
    } else {
        struct gw_upstream *u = container_of((uv_tcp_t *)req->handle, struct gw_upstream, tcp);

        u->pending -= len;
        wreq_put(w, r);
        if (u->closing)
            return;
        if (status < 0) {
            if (u->client)
                upstream_failed(u->client, status);
            else
                gw__upstream_abort(u);
            return;
        }
        if (u->client && u->pending <= GW_LOW_WATER_BYTES)
            gw__proxy_upstream_drained(u->client, u);
    }
}

/* ------------------------------------------------------------- timers and reading */

static void on_client_timer(uv_timer_t *t);

/*
 * Timers are lazy: a mode and a deadline are set per request without
 * touching the loop's timer heap unless the new deadline comes before the
 * armed one; a timer that fires early re-arms itself for what is left.
 */
static void
timer_set(struct gw_client *c, enum ctimer mode, int64_t ms)
{
    uint64_t now;

    if (c->closing)
        return;
    c->timer_mode = mode;
    if (mode == CT_NONE)
        return; /* an armed timer finds nothing to do */
    if (ms <= 0)
        ms = 1;
    now = uv_now(&c->w->loop);
    c->deadline = now + (uint64_t)ms;
    if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > c->deadline) {
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_client_timer, (uint64_t)ms, 0);
    }
}

static void
stall_timer(struct gw_client *c)
{
    c->progress_at_arm = c->progress;
    timer_set(c, CT_STALL, c->w->cfg->idle_timeout_ms);
}

static void
on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct gw_client *c = container_of((uv_tcp_t *)h, struct gw_client, tcp);
    struct gw_block *b = gw__block_get(c->w);

    (void)suggested;
    *out = uv_buf_init(b->data, GW_BLOCK_BYTES);
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void
client_update_reading(struct gw_client *c)
{
    bool want = false;

    if (c->closing)
        return;
    if (!c->eof && c->in == NULL) {
        switch (c->state) {
        case CS_IDLE: want = c->pending <= GW_HIGH_WATER_BYTES; break;
        case CS_HEAD:
        case CS_DISCARD:
        case CS_LINGER: want = true; break;
        case CS_HOLD: want = false; break;          /* TCP holds the rest for us */
        case CS_CONNECT: want = c->req_done; break; /* what comes waits in c->in */
        case CS_PROXY:
        case CS_TUNNEL:
            want = (c->state == CS_PROXY && c->req_done) ||
                   (c->up && c->up->pending <= GW_HIGH_WATER_BYTES);
            break;
        }
    }
    if (want == c->reading)
        return;
    if (want) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_client_alloc, on_client_read) < 0) {
            client_close(c);
            return;
        }
    } else {
        uv_read_stop((uv_stream_t *)&c->tcp);
    }
    c->reading = want;
}

/* ------------------------------------------------------------- logging and metrics */

static const char *
or_dash(const char *s)
{
    return s && *s ? s : "-";
}

static void
access_log(struct gw_client *c, uint64_t now_ns)
{
    struct gw_worker *w = c->w;
    int64_t wall = time_wall_ms();
    size_t path_len;
    const char *path = gw__reqp_path(&c->rp, &path_len);
    char path_z[512];
    char up_ms[32];
    int n;

    if (wall / 1000 != w->log_sec) {
        time_t s = (time_t)(wall / 1000);
        struct tm tm;

        gmtime_r(&s, &tm);
        strftime(w->log_ts, sizeof(w->log_ts), "%Y-%m-%dT%H:%M:%S", &tm);
        w->log_sec = wall / 1000;
    }
    if (path_len >= sizeof(path_z))
        path_len = sizeof(path_z) - 1;
    memcpy(path_z, path, path_len);
    path_z[path_len] = '\0';
    if (c->t_up_ns)
        snprintf(up_ms, sizeof(up_ms), "%.3f",
                 (double)((c->t_up_end_ns ? c->t_up_end_ns : now_ns) - c->t_up_ns) / 1e6);
    else
        snprintf(up_ms, sizeof(up_ms), "-");
    n = snprintf(
        w->log_line, sizeof(w->log_line),
        "ts=%s.%03dZ env=%s service=%s method=%s path=%s status=%d bytes=%" PRIu64
        " duration_ms=%.3f upstream_ms=%s\n",
        w->log_ts, (int)(wall % 1000), or_dash(c->env_name), or_dash(c->svc_name),
        c->rp.head.first_len ? http_method_str((enum http_method)c->rp.parser.method) : "-",
        log_q(path_z), c->status, c->resp_bytes, (double)(now_ns - c->t_start_ns) / 1e6, up_ms);
    if (n <= 0)
        return;
    if ((size_t)n >= sizeof(w->log_line)) {
        n = (int)sizeof(w->log_line) - 1;
        w->log_line[n - 1] = '\n';
    }
    /* One fwrite per line: stdio locks the stream, so lines of several
     * workers never interleave. */
    fwrite(w->log_line, 1, (size_t)n, w->cfg->access_log);
}

/* The exchange ended (answered, aborted or upgraded): count and log it once. */
static void
exchange_end(struct gw_client *c)
{
    uint64_t now;

    if (!c->in_exchange)
        return;
    c->in_exchange = false;
    now = uv_hrtime();
    if (c->status == 0)
        c->status = 499; /* the client left before an answer (as nginx says) */
    gw__metrics_request(c->w, c->env_name, c->svc_name, c->status,
                        (double)(now - c->t_start_ns) / 1e9, &c->series);
    if (c->w->cfg->access_log)
        access_log(c, now);
}

/* ------------------------------------------------------------- activity */

/* The exchange goes to service r: counted open until it ends. */
static void
activity_open(struct gw_client *c, const struct gw_route_service *r)
{
    struct gw_activity *a = r->env->activity;

    if (a == NULL || c->act != NULL)
        return;
    atomic_fetch_add_explicit(&a->open, 1, memory_order_relaxed);
    c->act = a;
}

/* The exchange with a service ended (answered, cut or a tunnel closed): its
 * end is the environment's latest activity. */
static void
activity_close(struct gw_client *c)
{
    struct gw_activity *a = c->act;
    int64_t now;

    if (a == NULL)
        return;
    c->act = NULL;
    now = gw__coarse_wall_ms();
    if (atomic_load_explicit(&a->last_ms, memory_order_relaxed) != now)
        atomic_store_explicit(&a->last_ms, now, memory_order_relaxed);
    /* Release: whoever sees the count drop sees the time above. */
    atomic_fetch_sub_explicit(&a->open, 1, memory_order_release);
}

/* ------------------------------------------------------------- held list */

static void
held_link(struct gw_client *c, const struct gw_route_service *r)
{
    struct gw_worker *w = c->w;

    c->held_r = r;
    c->held_in = r->env->activity;
    c->held_in->per_worker[w->index].n_held++;
    c->held_next = NULL;
    c->held_prev = w->held_tail;
    if (w->held_tail)
        w->held_tail->held_next = c;
    else
        w->held_head = c;
    w->held_tail = c;
    w->n_held++;
    atomic_fetch_add_explicit(gw__held_requests(w->gw), 1, memory_order_relaxed);
}

static void
held_unlink(struct gw_client *c)
{
    struct gw_worker *w = c->w;

    if (c->held_in == NULL)
        return;
    c->held_in->per_worker[w->index].n_held--;
    c->held_in = NULL;
    c->held_r = NULL;
    if (c->held_prev)
        c->held_prev->held_next = c->held_next;
    else
        w->held_head = c->held_next;
    if (c->held_next)
        c->held_next->held_prev = c->held_prev;
    else
        w->held_tail = c->held_prev;
    c->held_prev = c->held_next = NULL;
    w->n_held--;
    atomic_fetch_sub_explicit(gw__held_requests(w->gw), 1, memory_order_relaxed);
}

/* ------------------------------------------------------------- closing */

static void
client_handle_closed(struct gw_client *c)
{
    struct gw_worker *w = c->w;

    if (--c->handles_open > 0)
        return;
    EPH_ASSERT(!c->failed); /* the check phase comes before the close callbacks */
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_clients--;
    if (c->counted)
        atomic_fetch_sub(gw__open_connections(w->gw), 1);
    if (c->in)
        gw__block_unref(w, c->in);
    gw__reqp_release(&c->rp);
    gw__respp_release(&c->sp);
    buf_release(&c->up_head);
    buf_release(&c->out);
    gw_routes_unref(c->routes);
    free(c);
    gw__worker_maybe_exit(w);
}

static void
on_client_tcp_closed(uv_handle_t *h)
{
    client_handle_closed(container_of((uv_tcp_t *)h, struct gw_client, tcp));
}

static void
on_client_timer_closed(uv_handle_t *h)
{
    client_handle_closed(container_of((uv_timer_t *)h, struct gw_client, timer));
}

static void
client_close(struct gw_client *c)
{
    if (c->closing)
        return;
    exchange_end(c);
    activity_close(c);
    held_unlink(c);
    drop_upstream(c);
    batch_reset(c->w, &c->to_client);
    c->closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_client_tcp_closed);
    uv_close((uv_handle_t *)&c->timer, on_client_timer_closed);
}

static void
on_client_shutdown(uv_shutdown_t *req, int status)
{
    struct gw_client *c = container_of(req, struct gw_client, shutdown_req);

    if (c->closing)
        return;
    if (status < 0 || c->eof) {
        client_close(c);
        return;
    }
    timer_set(c, CT_LINGER, GW_LINGER_MS);
}

/* Flushes what is queued, sends a FIN, drops input for a moment, closes. */
static void
client_shutdown(struct gw_client *c)
{
    if (c->closing || c->state == CS_LINGER)
        return;
    exchange_end(c);
    activity_close(c);
    held_unlink(c);
    c->state = CS_LINGER;
    drop_upstream(c);
    flush_client(c); /* uv_shutdown waits for queued writes only */
    if (c->client_err) {
        client_close(c);
        return;
    }
    if (c->in) {
        gw__block_unref(c->w, c->in);
        c->in = NULL;
    }
    timer_set(c, CT_FLUSH, GW_FLUSH_MS);
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_client_shutdown) < 0) {
        client_close(c);
        return;
    }
    client_update_reading(c);
}

static void
on_client_timer(uv_timer_t *t)
{
    struct gw_client *c = container_of(t, struct gw_client, timer);
    enum ctimer mode = c->timer_mode;
    uint64_t now = uv_now(&c->w->loop);

    if (mode == CT_NONE)
        return;
    if (now < c->deadline) {
        c->timer_due = c->deadline;
        uv_timer_start(&c->timer, on_client_timer, c->deadline - now, 0);
        return;
    }
    c->timer_mode = CT_NONE;
    switch (mode) {
    case CT_HEAD: {
        struct gw_page_req pr = {.keep_alive = false};

        /* Logged and counted only if a request had begun; a connection
         * that never sent a byte just gets the answer. */
        log_debug("request refused", "remote=%s status=408", c->remote);
        c->status = 408;
        gw__page_error(client_out(c), &pr, 408, "timed out waiting for the request head");
        batch_add(c, true, c->out.data, c->out.len, NULL);
        client_shutdown(c);
        break;
    }
    case CT_IDLE:
        if (c->pending > 0) {
            /* Still writing a response to a slow reader: not idle. */
            timer_set(c, CT_IDLE, c->w->cfg->idle_timeout_ms);
            break;
        }
        client_close(c);
        break;
    case CT_STALL:
        /* Waiting for the upstream (or an idle tunnel) is not a stall: the
         * upstream's timers judge that. A client that neither sends the
         * rest of its body nor reads what we send is cut off. */
        if (c->progress != c->progress_at_arm ||
            (c->pending == 0 && (c->req_done || c->state == CS_TUNNEL))) {
            stall_timer(c);
            break;
        }
        log_debug("client stalled", "remote=%s", c->remote);
        if (!c->resp_started && !c->req_done) {
            drop_upstream(c);
            refuse(c, 408, "timed out waiting for the request body");
        } else {
            client_close(c);
        }
        break;
    case CT_FLUSH:
    case CT_LINGER: client_close(c); break;
    case CT_HOLD: on_hold_timer(c); break;
    case CT_NONE: break;
    }
}

/* ------------------------------------------------------------- pages of our own */

static int
request_port(struct gw_client *c)
{
    size_t len;
    const char *host = gw__reqp_host(&c->rp, &len);
    int port = 0;
    size_t i = len;

    while (i > 0 && host[i - 1] >= '0' && host[i - 1] <= '9')
        i--;
    if (host && i > 0 && i < len && host[i - 1] == ':' && len - i <= 5) {
        for (size_t k = i; k < len; k++)
            port = port * 10 + (host[k] - '0');
        return port;
    }
    return host ? 80 : gw_port(c->w->gw);
}

static void
page_req(struct gw_client *c, struct gw_page_req *pr, bool keep_alive)
{
    size_t len = 0;
    const char *accept = c->rp.head_done ? gw__head_find(&c->rp.head, "accept", &len) : NULL;

    pr->html = gw__accepts_html(accept, len);
    pr->head_only = c->rp.head_done && c->rp.method == HTTP_HEAD;
    pr->keep_alive = keep_alive;
    pr->pattern = c->w->pattern;
    pr->port = c->rp.head_done ? request_port(c) : 0;
}

/* Whether the connection can go on after a page of our own: the rest of
 * the request can be read and dropped cheaply. */
static bool
can_keep_after_page(struct gw_client *c)
{
    if (c->close_after || c->eof || c->rp.upgrade || c->w->stopping)
        return false;
    if (c->req_done)
        return true;
    return c->rp.framing == GW_FRAME_NONE ||
           (c->rp.framing == GW_FRAME_LENGTH && c->rp.content_length <= GW_DISCARD_MAX_BYTES);
}

/* Sends the page in c->out and finishes the exchange (or drops the rest of
 * the request body first). */
static void
send_page(struct gw_client *c, int status, bool keep)
{
    const char *end = memmem(c->out.data, c->out.len, "\r\n\r\n", 4);

    c->status = status;
    c->resp_started = true;
    c->resp_done = true;
    c->resp_bytes = end ? c->out.len - (size_t)(end + 4 - c->out.data) : 0;
    c->t_up_end_ns = c->t_up_ns && c->w->cfg->access_log ? uv_hrtime() : 0;
    batch_add(c, true, c->out.data, c->out.len, NULL);
    flush_client(c);
    if (!keep) {
        c->close_after = true;
        client_shutdown(c);
        return;
    }
    if (c->req_done) {
        finish_exchange(c);
        return;
    }
    c->state = CS_DISCARD; /* client_process reads the rest, then finishes */
    stall_timer(c);
    client_update_reading(c);
}

static void
page_error(struct gw_client *c, int status, const char *message)
{
    struct gw_page_req pr;
    bool keep = can_keep_after_page(c);

    page_req(c, &pr, keep);
    gw__page_error(client_out(c), &pr, status, message);
    send_page(c, status, keep);
}

/* Refuses a request the parser rejected: answer, then close. */
static void
refuse(struct gw_client *c, int status, const char *reason)
{
    struct gw_page_req pr;

    log_debug("request refused", "remote=%s status=%d reason=%s", c->remote, status, log_q(reason));
    if (!c->in_exchange) {
        c->in_exchange = true;
        if (c->t_start_ns == 0)
            c->t_start_ns = uv_hrtime();
    }
    page_req(c, &pr, false);
    gw__page_error(client_out(c), &pr, status, reason);
    send_page(c, status, false);
}

/* ------------------------------------------------------------- the exchange */

static bool
retryable(const struct gw_client *c)
{
    switch (c->rp.method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE: return c->rp.framing == GW_FRAME_NONE && !c->rp.upgrade;
    default: return false;
    }
}

static void
on_request_body(void *arg, const char *at, size_t len)
{
    struct gw_client *c = arg;

    if (c->state != CS_PROXY || c->up == NULL)
        return; /* dropped (CS_DISCARD) */
    if (c->rp.framing == GW_FRAME_CHUNKED)
        batch_add_chunk(c, false, at, len, c->in);
    else
        batch_add(c, false, at, len, c->in);
}

static void
on_response_body(void *arg, const char *at, size_t len)
{
    struct gw_client *c = arg;

    c->resp_bytes += len;
    if (c->plan.framing == GW_FRAME_CHUNKED)
        batch_add_chunk(c, true, at, len, c->up_blk);
    else
        batch_add(c, true, at, len, c->up_blk);
}

/* Sends the head upstream; the body (if any) follows from client_process. */
static void
start_exchange(struct gw_client *c)
{
    c->state = CS_PROXY;
    c->up_dirty = false;
    stall_timer(c);
    gw__respp_start(&c->sp, c->rp.method == HTTP_HEAD, c->rp.upgrade);
    batch_add(c, false, c->up_head.data, c->up_head.len, NULL);
    if (c->req_done || c->in == NULL) {
        flush_up(c);
        if (c->req_done && c->up)
            gw__upstream_first_byte_timer(c->up, true);
    }
    gw__upstream_reading(c->up, true);
}

static void
request_complete(struct gw_client *c)
{
    c->req_done = true;
    if (c->state == CS_DISCARD) {
        finish_exchange(c);
        return;
    }
    if (c->up && !c->resp_started)
        gw__upstream_first_byte_timer(c->up, true);
    if (c->resp_done)
        finish_exchange(c);
}

/* Asks for an upstream connection: an idle one now, or a new one later. */
static void
get_upstream(struct gw_client *c, bool fresh)
{
    struct gw_upstream *u = fresh ? NULL : gw__upstream_take(c->w, c->up_key, c);

    if (c->t_up_ns == 0)
        c->t_up_ns = c->w->cfg->access_log ? uv_hrtime() : 1;
    if (u) {
        c->up = u;
        start_exchange(c);
        return;
    }
    c->state = CS_CONNECT;
    c->up = gw__upstream_connect(c->w, c->up_key, c->up_host, c->up_port, c);
}

/* The guard's gw_guard_req.page_req: how its page would go to client c. */
static void
guard_page_req(void *c, struct gw_page_req *pr)
{
    page_req(c, pr, can_keep_after_page(c));
}

/*
 * Sign-in on a service host (guard.c): true to go on with c->pass filled;
 * false after answering (a redirect to sign in, 401, 404, a ticket exchange).
 */
static bool
guard_passes(struct gw_client *c, const char *host, size_t host_len, const struct gw_route_env *env)
{
    struct gw_worker *w = c->w;
    struct gw_guard_req gr = {0};
    int status = 0;

    gr.head = &c->rp.head;
    gr.host = host;
    gr.host_len = host_len;
    gr.target = gw__reqp_target(&c->rp, &gr.target_len);
    if (gr.target_len > 0 && gr.target[0] == '/' &&
        (gr.target_len < 6 || memcmp(gr.target, "/_eph/", 6) != 0))
        gr.path = ""; /* an origin-form target not under /_eph/: not the guard's */
    else
        gr.path = gw__reqp_path(&c->rp, &gr.path_len);
    gr.env = env;
    gr.page_req = guard_page_req;
    gr.page_ctx = c;
    gr.safe_method = c->rp.method == HTTP_GET || c->rp.method == HTTP_HEAD;
    if (gw__guard(w, &gr, client_out(c), &status, &c->pass) == GW_GUARD_PASS)
        return true;
    send_page(c, status, can_keep_after_page(c)); /* as the page said */
    return false;
}

/* The head for the upstream: a service never sees the platform's
 * credentials, and learns who is asking from our X-Ephemera-* headers. */
static int
build_upstream_head(struct gw_client *c)
{
    struct gw_identity id = {0};
    bool signed_in = c->to_service && c->w->cfg->auth_ix;

    if (signed_in && c->pass.link) {
        id.role = "link";
    } else if (signed_in) {
        id.user = c->pass.user;
        id.user_len = c->pass.user_len;
        id.email = c->pass.email;
        id.email_len = c->pass.email_len;
        id.role = role_name(c->pass.principal.role);
    }
    id.role_len = id.role ? strlen(id.role) : 0;
    return gw__build_upstream_head(&c->rp, c->remote, c->to_service, signed_in ? &id : NULL,
                                   &c->up_head);
}

/* Sends the request on to c->up_key: the head for the upstream, then a
 * connection from the pool or a new one. */
static void
proxy_request(struct gw_client *c)
{
    if (c->to_up.n > 0)
        flush_up(c); /* c->up_head is about to change */
    if (build_upstream_head(c) < 0) {
        refuse(c, 431, "request head too large");
        return;
    }
    if (c->rp.framing == GW_FRAME_NONE && !c->rp.upgrade) {
        /* Without a body the request ends with its head's last LF, which
         * the parser left for now: take it, so that reading goes on (and
         * notices a client that leaves) while an upstream connects. */
        enum gw_feed_event ev;

        c->in_off += gw__reqp_feed(&c->rp, c->in->data + c->in_off, c->in_len - c->in_off, &ev);
        c->req_done = ev == GW_FEED_DONE;
    }
    get_upstream(c, false);
}

/* The request goes to service r, which is routable. */
static void
route_to_service(struct gw_client *c, const struct gw_route_service *r)
{
    c->up_key = r->upstream_key;
    c->up_host = r->upstream_host;
    c->up_port = r->upstream_port;
    activity_open(c, r);
}

/* Held, or to be: the environment is asleep (and may be woken) or waking,
 * and the service is not routable yet. */
static bool
must_hold(const struct gw_route_service *r)
{
    const struct gw_route_env *e = r->env;

    return e->hold_requests && e->asleep_message == NULL &&
           (!r->routable || e->phase == ENV_PHASE_SLEEPING);
}

/* Tells the control loop a request wants r's environment awake; at most
 * every GW_WAKE_TELL_MS per environment on this worker and route table. A
 * new table (the environment went to sleep again, say) may be told at once:
 * otherwise a request right after a sleep that followed a wake within
 * GW_WAKE_TELL_MS would be held with nobody waking the environment. */
static void
tell_wake(struct gw_client *c, const struct gw_route_service *r)
{
    struct gw_worker *w = c->w;
    struct gw_activity *a = r->env->activity;
    struct gw_hold_env *he;
    uint64_t now;

    if (w->cfg->on_wake == NULL || a == NULL)
        return;
    he = &a->per_worker[w->index];
    now = uv_now(&w->loop);
    if (he->told && he->told_version == c->routes->version && now - he->told_ms < GW_WAKE_TELL_MS)
        return;
    he->told = true;
    he->told_ms = now;
    he->told_version = c->routes->version;
    w->cfg->on_wake(w->cfg->on_wake_arg, r->env->id, r->name);
}

/* The next look at held request c: its deadline, a browser's page, or the
 * next reminder to the control loop (a wake request it never got, say from
 * a full mailbox, would otherwise leave c waiting out wake_timeout). */
static void
hold_timer_set(struct gw_client *c)
{
    uint64_t now = uv_now(&c->w->loop);
    uint64_t at = now + GW_HOLD_RETELL_MS;

    if (c->hold_until < at)
        at = c->hold_until;
    if (c->hold_page_at < at)
        at = c->hold_page_at;
    timer_set(c, CT_HOLD, at > now ? (int64_t)(at - now) : 0);
}

/* Parks the request until r's environment is awake (or a page says why not). */
static void
hold(struct gw_client *c, const struct gw_route_service *r)
{
    struct gw_worker *w = c->w;
    struct gw_activity *a = r->env->activity;
    int64_t ms = w->cfg->wake_timeout_ms;
    const char *accept;
    size_t len = 0;

    if (a == NULL || w->stopping || a->per_worker[w->index].n_held >= w->cfg->wake_queue) {
        char message[300];

        log_debug("request not held", "env=%s service=%s reason=%s", r->env_name, r->name,
                  a && !w->stopping ? "\"queue full\"" : "stopping");
        snprintf(message, sizeof(message), "too many requests are waiting for %s to wake up",
                 r->env_name);
        page_error(c, 503, message);
        return;
    }
    held_link(c, r);
    c->state = CS_HOLD;
    if (c->in && c->in_off < c->in_len) {
        /* What was read after the head (its last LF, maybe some body or a
         * pipelined request) waits in a block of its own size, not in a
         * 64 KiB read block: a thousand held requests cost kilobytes. */
        struct gw_block *small = block_copy(c->in->data + c->in_off, c->in_len - c->in_off);

        gw__block_unref(w, c->in);
        c->in = small;
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    c->hold_until = uv_now(&w->loop) + (uint64_t)ms;
    c->hold_page_at = UINT64_MAX;
    accept = gw__head_find(&c->rp.head, "accept", &len);
    if (c->rp.method == HTTP_GET && gw__accepts_html(accept, len) && ms > GW_HOLD_BROWSER_MS)
        c->hold_page_at = uv_now(&w->loop) + GW_HOLD_BROWSER_MS;
    hold_timer_set(c);
    log_debug("request held", "env=%s service=%s held=%d", r->env_name, r->name,
              a->per_worker[w->index].n_held);
}

/*
 * A request to service r (of c->routes): true to proxy it (c->up_* set and
 * counted open); false once it is answered here or held.
 */
static bool
service_request(struct gw_client *c, const struct gw_route_service *r)
{
    const struct gw_route_env *e = r->env;
    struct gw_page_req pr;

    c->env_name = r->env_name;
    c->svc_name = r->name;
    if (e->activity)
        gw__activity_touch(e->activity, r->activity_idx, c->rp.upgrade, gw__coarse_wall_ms());
    if (e->asleep_message) {
        page_error(c, 503, e->asleep_message);
        return false;
    }
    if (e->hold_requests) {
        tell_wake(c, r);
        if (must_hold(r)) {
            hold(c, r);
            return false;
        }
    }
    if (!r->routable) {
        bool keep = can_keep_after_page(c);

        page_req(c, &pr, keep);
        gw__page_unavailable(client_out(c), &pr, r);
        send_page(c, 503, keep);
        return false;
    }
    route_to_service(c, r);
    return true;
}

static void
on_request_head(struct gw_client *c)
{
    struct gw_worker *w = c->w;
    const char *host, *svc = NULL, *env = NULL;
    size_t host_len = 0, svc_len = 0, env_len = 0;
    enum gw_host_kind kind;
    struct gw_page_req pr;

    timer_set(c, CT_NONE, 0);
    if (c->routes != w->routes) {
        gw_routes_unref(c->routes);
        c->routes = gw_routes_ref(w->routes);
    }
    c->close_after = !c->rp.keep_alive || w->stopping || c->eof;
    c->env_name = "";
    c->svc_name = "";
    host = gw__reqp_host(&c->rp, &host_len);
    kind = host ? gw_host_classify(w->pattern, host, host_len, &svc, &svc_len, &env, &env_len)
                : GW_HOST_UNKNOWN;
    c->to_service = kind == GW_HOST_SERVICE;
    if (kind == GW_HOST_SERVICE) {
        const struct gw_route_service *r = gw_routes_find(c->routes, svc, svc_len, env, env_len);

        /* The service's environment, or (no such service) the environment
         * looked up by name: the guard decides who may learn which. */
        if (w->cfg->auth_ix &&
            !guard_passes(c, host, host_len,
                          r ? r->env : gw_routes_find_env(c->routes, env, env_len)))
            return;
        if (r == NULL) {
            bool keep = can_keep_after_page(c);

            page_req(c, &pr, keep);
            gw__page_not_found(client_out(c), &pr, c->routes,
                               gw_routes_find_env(c->routes, env, env_len), host, host_len);
            send_page(c, 404, keep);
            return;
        }
        if (!service_request(c, r))
            return;
    } else if (kind == GW_HOST_CONTROL) {
        c->svc_name = "control";
        c->up_key = gw__control_key(w->gw, &c->up_host, &c->up_port);
    } else {
        bool keep = can_keep_after_page(c);

        page_req(c, &pr, keep);
        gw__page_not_found(client_out(c), &pr, c->routes, NULL, host, host_len);
        send_page(c, 404, keep);
        return;
    }
    proxy_request(c);
}

/* ------------------------------------------------------------- held requests */

/* Takes c out of HOLD, back where a request whose head was just read is. */
static void
leave_hold(struct gw_client *c)
{
    held_unlink(c);
    c->state = CS_HEAD;
    timer_set(c, CT_NONE, 0);
}

/* wake_timeout passed: 503 saying how far the environment got. */
static void
hold_timed_out(struct gw_client *c, const struct gw_route_service *r)
{
    const struct gw_route_env *e = r->env;
    int64_t ms = c->w->cfg->wake_timeout_ms;
    char within[32], why[300], message[512];

    if (ms % 1000 == 0)
        snprintf(within, sizeof(within), "%llds", (long long)(ms / 1000));
    else
        snprintf(within, sizeof(within), "%lldms", (long long)ms);
    if (e->reason && *e->reason)
        snprintf(why, sizeof(why), "%s", e->reason);
    else
        snprintf(why, sizeof(why), "environment is %s, service '%s' is %s",
                 env_phase_name(e->phase), r->name, svc_state_name(r->state));
    snprintf(message, sizeof(message), "%s did not wake up within %s: %s", e->name, within, why);
    log_info("held request timed out", "env=%s service=%s waited_ms=%lld", e->name, r->name,
             (long long)ms);
    page_error(c, 503, message);
}

static void
on_hold_timer(struct gw_client *c)
{
    const struct gw_route_service *r = c->held_r;
    uint64_t now = uv_now(&c->w->loop);
    bool expired = now >= c->hold_until;

    if (!expired && now < c->hold_page_at) {
        tell_wake(c, r); /* a reminder: still waiting */
        hold_timer_set(c);
        return;
    }
    leave_hold(c);
    if (expired) {
        hold_timed_out(c, r);
    } else {
        /* A browser: the page reloads itself, and comes back here. */
        struct gw_page_req pr;
        bool keep = can_keep_after_page(c);

        page_req(c, &pr, keep);
        gw__page_waking(client_out(c), &pr, r);
        send_page(c, 503, keep);
    }
    client_process(c); /* the rest of the request (its last LF, a body) */
}

/* Looks at held request c again in the worker's new table. */
static void
hold_recheck(struct gw_client *c)
{
    struct gw_worker *w = c->w;
    const struct gw_route_service *r = gw_routes_find(w->routes, c->svc_name, strlen(c->svc_name),
                                                      c->env_name, strlen(c->env_name));
    struct gw_page_req pr;
    bool keep;

    if (r == NULL) {
        /* The environment (or the service) is gone. The old table stays
         * with c for this exchange: the names point into it. */
        size_t host_len = 0;
        const char *host = gw__reqp_host(&c->rp, &host_len);

        leave_hold(c);
        keep = can_keep_after_page(c);
        page_req(c, &pr, keep);
        gw__page_not_found(client_out(c), &pr, w->routes,
                           gw_routes_find_env(w->routes, c->env_name, strlen(c->env_name)), host,
                           host_len);
        send_page(c, 404, keep);
        client_process(c);
        return;
    }
    held_unlink(c);
    gw_routes_unref(c->routes);
    c->routes = gw_routes_ref(w->routes);
    c->env_name = r->env_name;
    c->svc_name = r->name;
    if (must_hold(r)) {
        held_link(c, r); /* at the back, with the deadline it had */
        return;
    }
    leave_hold(c);
    if (c->w->cfg->auth_ix != NULL &&
        !access_env_visible(&c->pass.principal, r->env->id, r->env->owner, r->env->visibility)) {
        /* Made private (or its links withdrawn) while the request waited:
         * the sign-in check of its head no longer holds. */
        page_error(c, 404, "no such environment here");
    } else if (r->env->asleep_message) {
        page_error(c, 503, r->env->asleep_message);
    } else if (!r->routable) {
        /* It failed, or went back to sleep for good: why, in the page. */
        keep = can_keep_after_page(c);
        page_req(c, &pr, keep);
        gw__page_unavailable(client_out(c), &pr, r);
        send_page(c, 503, keep);
    } else {
        log_debug("held request goes on", "env=%s service=%s", r->env_name, r->name);
        route_to_service(c, r);
        proxy_request(c);
    }
    client_process(c);
}

void
gw__hold_recheck(struct gw_worker *w)
{
    size_t n = w->n_held;

    /* Each is looked at once: those still held go to the back. */
    for (size_t i = 0; i < n && w->held_head != NULL; i++)
        hold_recheck(w->held_head);
}

void
gw__proxy_upstream_ready(struct gw_client *c, struct gw_upstream *u, int status)
{
    EPH_ASSERT(c->up == u);
    if (status < 0) {
        c->up = NULL; /* upstream.c closes it */
        batch_reset(c->w, &c->to_up);
        if (status == UV_ETIMEDOUT)
            page_error(c, 504, "the upstream did not accept the connection in time");
        else
            page_error(c, 502, "the upstream refused the connection");
    } else {
        start_exchange(c);
    }
    client_process(c);
}

/* A reused connection failed before answering: once, on a fresh one. */
static bool
maybe_retry(struct gw_client *c, struct gw_upstream *u)
{
    if (!u->reused || u->got_bytes || c->resp_started || c->retried || !retryable(c))
        return false;
    log_debug("stale upstream connection, retrying", "upstream=%s", c->up_key);
    drop_upstream(c);
    c->retried = true;
    get_upstream(c, true);
    return true;
}

/* The upstream failed (write error, reset, EOF out of place). */
static void
upstream_failed(struct gw_client *c, int status)
{
    struct gw_upstream *u = c->up;

    c->up_err = 0;
    if (u == NULL)
        return;
    if (c->state == CS_TUNNEL) {
        client_shutdown(c);
        return;
    }
    if (maybe_retry(c, u))
        return;
    gw__metrics_upstream_error(c->w, GW_UPERR_RESET);
    log_debug("upstream failed", "upstream=%s error=%s", c->up_key, uv_strerror(status));
    drop_upstream(c);
    if (!c->resp_started) {
        page_error(c, 502, "the upstream closed the connection");
        client_process(c);
        return;
    }
    client_close(c); /* in the middle of a response: the client must see it cut */
}

static void
response_complete(struct gw_client *c)
{
    c->resp_done = true;
    if (c->w->cfg->access_log)
        c->t_up_end_ns = uv_hrtime();
    if (!c->req_done) {
        /* Answered before the request was over: the connection cannot be
         * kept in step (the plan already said Connection: close). */
        c->close_after = true;
        finish_exchange(c);
        return;
    }
    finish_exchange(c);
}

static void
finish_exchange(struct gw_client *c)
{
    activity_close(c);
    if (c->up) {
        bool reusable = c->req_done && c->sp.done && c->sp.keep_alive && !c->up_dirty &&
                        c->sp.framing != GW_FRAME_CLOSE && !c->rp.upgrade && !c->up_err;

        flush_up(c); /* before the connection goes back to the pool */
        gw__upstream_release(c->up, reusable);
        c->up = NULL;
        batch_reset(c->w, &c->to_up);
    }
    if (c->close_after || c->plan.close || c->eof || !c->req_done) {
        client_shutdown(c);
        return;
    }
    exchange_end(c);
    c->state = CS_IDLE;
    c->t_up_ns = 0;
    c->t_up_end_ns = 0;
    gw__reqp_next(&c->rp);
    timer_set(c, CT_IDLE, c->w->cfg->idle_timeout_ms);
    client_process(c);
}

static void
on_response_head(struct gw_client *c)
{
    struct gw_respp *sp = &c->sp;
    bool http10 = c->rp.http_minor == 0;

    if (sp->interim) {
        if (http10)
            return; /* HTTP/1.0 knows no interim responses */
        if (gw__build_client_head(sp, NULL, false, client_out(c)) == 0) {
            batch_add(c, true, c->out.data, c->out.len, NULL);
            flush_client(c); /* c->out is reused for the final head */
        }
        return;
    }
    if (gw__build_client_head(sp, &c->plan, http10, client_out(c)) < 0) {
        c->up_dirty = true;
        sp->error_reason = "response head too large";
        return;
    }
    c->status = sp->status;
    c->resp_started = true;
    batch_add(c, true, c->out.data, c->out.len, NULL);
}

static void
plan_response(struct gw_client *c)
{
    struct gw_respp *sp = &c->sp;

    if (sp->interim || sp->switched)
        return;
    gw__plan_response(sp, c->rp.http_major, c->rp.http_minor, !c->close_after, &c->plan);
    /* Answered before the request was over, or a refused upgrade: the
     * client's next bytes may not be a request. */
    if (!c->req_done || c->rp.upgrade)
        c->plan.close = true;
}

static void
tunnel_start(struct gw_client *c, const char *rest, size_t rest_len, struct gw_block *blk)
{
    c->state = CS_TUNNEL;
    c->resp_done = true;
    if (c->w->cfg->access_log)
        c->t_up_end_ns = uv_hrtime();
    gw__upstream_first_byte_timer(c->up, false);
    if (rest_len)
        batch_add(c, true, rest, rest_len, blk);
    exchange_end(c); /* logged as 101 now; the tunnel is not a request */
    stall_timer(c);  /* cuts a peer that stops reading what we send it */
}

void
gw__proxy_upstream_read(struct gw_client *c, struct gw_upstream *u, ssize_t nread,
                        struct gw_block *blk)
{
    size_t off = 0;
    bool done = false;

    if (nread < 0) {
        enum gw_feed_event ev;

        if (c->state == CS_TUNNEL) {
            client_shutdown(c);
            return;
        }
        if (nread == UV_EOF && c->sp.head_done && !c->sp.head_event && !c->resp_done) {
            ev = gw__respp_eof(&c->sp);
            if (ev == GW_FEED_DONE) {
                if (c->plan.framing == GW_FRAME_CHUNKED)
                    batch_add(c, true, "0\r\n\r\n", 5, NULL);
                flush_client(c);
                c->up_dirty = true;
                if (c->client_err) {
                    client_close(c);
                    return;
                }
                response_complete(c);
                return;
            }
        }
        upstream_failed(c, (int)nread);
        return;
    }
    if (c->state == CS_TUNNEL) {
        batch_add(c, true, blk->data, (size_t)nread, blk);
        flush_client(c);
        gw__block_unref(c->w, blk);
        if (c->client_err)
            client_close(c);
        else if (c->pending > GW_HIGH_WATER_BYTES)
            gw__upstream_reading(u, false);
        return;
    }
    c->up_blk = blk;
    while (off < (size_t)nread && !c->closing && c->up == u) {
        enum gw_feed_event ev;
        size_t n = gw__respp_feed(&c->sp, blk->data + off, (size_t)nread - off, &ev);

        off += n;
        if (ev == GW_FEED_HEAD) {
            plan_response(c);
            on_response_head(c);
            if (c->sp.error_reason)
                break;
            continue;
        }
        if (ev == GW_FEED_DONE) {
            if (c->sp.interim) {
                gw__respp_continue(&c->sp);
                continue;
            }
            if (c->sp.switched) {
                tunnel_start(c, blk->data + off, (size_t)nread - off, blk);
                off = (size_t)nread;
                break;
            }
            if (c->plan.framing == GW_FRAME_CHUNKED)
                batch_add(c, true, "0\r\n\r\n", 5, NULL);
            if (off < (size_t)nread)
                c->up_dirty = true; /* bytes after the response: do not reuse */
            done = true;
            break;
        }
        if (ev == GW_FEED_ERROR)
            break;
    }
    flush_client(c);
    c->up_blk = NULL;
    gw__block_unref(c->w, blk);
    if (c->closing || c->up != u)
        return;
    if (c->client_err) {
        client_close(c);
        return;
    }
    if (c->sp.error_reason && !done) {
        log_debug("bad upstream response", "upstream=%s reason=%s", c->up_key,
                  log_q(c->sp.error_reason));
        gw__metrics_upstream_error(c->w, GW_UPERR_BAD_RESPONSE);
        drop_upstream(c);
        if (!c->resp_started) {
            page_error(c, 502, "the upstream sent an invalid response");
            client_process(c);
        } else {
            client_close(c);
        }
        return;
    }
    if (c->state == CS_TUNNEL) {
        client_process(c); /* bytes the client sent after its request */
        return;
    }
    if (done) {
        response_complete(c);
        return;
    }
    if (c->pending > GW_HIGH_WATER_BYTES)
        gw__upstream_reading(u, false);
}

void
gw__proxy_upstream_timeout(struct gw_client *c, struct gw_upstream *u)
{
    EPH_ASSERT(c->up == u);
    log_debug("upstream timed out", "upstream=%s", c->up_key);
    drop_upstream(c);
    if (c->resp_started) {
        client_close(c);
        return;
    }
    page_error(c, 504, "the upstream did not answer in time");
    client_process(c);
}

void
gw__proxy_upstream_drained(struct gw_client *c, struct gw_upstream *u)
{
    (void)u;
    client_update_reading(c);
    if (c->in && !c->processing)
        client_process(c);
}

/* ------------------------------------------------------------- reading requests */

static void
begin_request(struct gw_client *c)
{
    c->state = CS_HEAD;
    c->in_exchange = true;
    c->t_start_ns = uv_hrtime();
    c->status = 0;
    c->resp_bytes = 0;
    c->req_done = false;
    c->resp_started = false;
    c->resp_done = false;
    c->retried = false;
    c->up_dirty = false;
    c->t_up_ns = 0;
    c->t_up_end_ns = 0;
    c->plan.framing = GW_FRAME_NONE;
    c->plan.close = false;
    c->env_name = "";
    c->svc_name = "";
    if (c->timer_mode == CT_IDLE || c->timer_mode == CT_NONE)
        timer_set(c, CT_HEAD, c->w->cfg->header_timeout_ms);
}

/*
 * Parses what has been read, as far as the state allows. Safe to call at
 * any point: it does nothing while already running further up the stack.
 */
static void
client_process(struct gw_client *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (!c->closing && c->in != NULL && c->in_off < c->in_len) {
        const char *data = c->in->data + c->in_off;
        size_t len = c->in_len - c->in_off;
        enum gw_feed_event ev;
        size_t n;

        if (c->state == CS_IDLE)
            begin_request(c);
        if (c->state == CS_HEAD) {
            n = gw__reqp_feed(&c->rp, data, len, &ev);
            c->in_off += n;
            if (ev == GW_FEED_ERROR)
                refuse(c, c->rp.error_status, c->rp.error_reason);
            else if (ev == GW_FEED_HEAD)
                on_request_head(c);
            continue;
        }
        if ((c->state == CS_PROXY && !c->req_done) || c->state == CS_DISCARD) {
            n = gw__reqp_feed(&c->rp, data, len, &ev);
            c->in_off += n;
            if (ev == GW_FEED_DONE && c->state == CS_PROXY && c->rp.framing == GW_FRAME_CHUNKED)
                batch_add(c, false, "0\r\n\r\n", 5, NULL);
            flush_up(c);
            if (c->up_err) {
                upstream_failed(c, c->up_err);
                continue;
            }
            if (ev == GW_FEED_ERROR) {
                /* A bad chunk in the middle of a body. */
                drop_upstream(c);
                if (c->resp_started)
                    client_close(c);
                else
                    refuse(c, c->rp.error_status, c->rp.error_reason);
            } else if (ev == GW_FEED_DONE) {
                request_complete(c);
            }
            continue;
        }
        if (c->state == CS_TUNNEL) {
            batch_add(c, false, data, len, c->in);
            c->in_off = c->in_len;
            flush_up(c);
            if (c->up_err)
                client_close(c);
            continue;
        }
        break; /* CONNECT, or PROXY with the request done: the rest waits */
    }
    if (c->in && c->in_off >= c->in_len) {
        gw__block_unref(c->w, c->in);
        c->in = NULL;
    }
    c->processing = false;
    if (c->closing)
        return;
    if (c->client_err) {
        client_close(c);
        return;
    }
    client_update_reading(c);
}

static void
on_client_eof(struct gw_client *c)
{
    c->eof = true;
    c->reading = false; /* libuv stops reading at EOF */
    switch (c->state) {
    case CS_PROXY:
    case CS_CONNECT:
        /* A client may half-close after a whole request and still read
         * the answer; one that leaves in the middle of its request is gone. */
        if (c->req_done || (c->rp.framing == GW_FRAME_NONE && !c->rp.upgrade)) {
            c->close_after = true;
            return;
        }
        client_close(c);
        return;
    default: client_close(c); return;
    }
}

static void
on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct gw_client *c = container_of((uv_tcp_t *)s, struct gw_client, tcp);
    struct gw_block *blk = buf->base ? gw__block_of(buf->base) : NULL;

    if (nread <= 0 || c->closing || c->state == CS_LINGER) {
        if (blk)
            gw__block_unref(c->w, blk);
        if (c->closing || nread == 0)
            return;
        if (nread == UV_EOF) {
            if (c->state == CS_LINGER)
                client_close(c);
            else
                on_client_eof(c);
        } else if (nread < 0) {
            client_close(c);
        }
        return;
    }
    EPH_ASSERT(c->in == NULL);
    c->progress++;
    c->in = blk;
    c->in_off = 0;
    c->in_len = (size_t)nread;
    client_process(c);
}

/* ------------------------------------------------------------- failed writes */

/* End of the loop's turn: handles the write errors recorded in callbacks. */
void
gw__on_failed_writes(uv_check_t *h)
{
    struct gw_worker *w = container_of(h, struct gw_worker, failed_check);
    struct gw_client *c;

    while ((c = w->failed) != NULL) {
        w->failed = c->failed_next;
        c->failed_next = NULL;
        c->failed = false;
        if (c->closing)
            continue;
        if (c->client_err) {
            client_close(c);
            continue;
        }
        if (c->up_err) {
            upstream_failed(c, c->up_err);
            if (!c->closing && c->client_err)
                client_close(c);
        }
    }
}

/* ------------------------------------------------------------- accepting */

static void
client_init(struct gw_worker *w, struct gw_client *c)
{
    size_t resp_max = w->cfg->max_header_bytes > GW_RESPONSE_HEAD_MIN_BYTES
                          ? w->cfg->max_header_bytes
                          : GW_RESPONSE_HEAD_MIN_BYTES;

    c->w = w;
    gw__reqp_init(&c->rp, w->cfg->max_header_bytes);
    c->rp.on_body = on_request_body;
    c->rp.body_arg = c;
    gw__respp_init(&c->sp, resp_max);
    c->sp.on_body = on_response_body;
    c->sp.body_arg = c;
    /* The head sent upstream adds forwarding headers to the client's. */
    /* Ceilings above what proxy_http.c's bounds can ask for (twice the head
     * text and then some); pages get up to 1 MiB more. */
    buf_init(&c->up_head, 2 * w->cfg->max_header_bytes + 4 * GW_PROXY_MAX_HEADERS + 2048);
    buf_init(&c->out, 2 * resp_max + 4 * GW_PROXY_MAX_HEADERS + 1024 + 1024 * 1024);
    c->state = CS_IDLE;
    c->env_name = "";
    c->svc_name = "";
    snprintf(c->remote, sizeof(c->remote), "unknown");
}

void
gw__on_connection(uv_stream_t *ls, int status)
{
    struct gw_worker *w = container_of((uv_tcp_t *)ls, struct gw_worker, listener);
    struct gw_client *c;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    int open;

    if (status < 0) {
        log_warn("accept failed", "error=%s", uv_strerror(status));
        return;
    }
    c = xcalloc(1, sizeof(*c));
    client_init(w, c);
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->handles_open = 2;
    c->next = w->clients;
    if (w->clients)
        w->clients->prev = c;
    w->clients = c;
    w->n_clients++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        client_close(c);
        return;
    }
    open = atomic_fetch_add(gw__open_connections(w->gw), 1) + 1;
    c->counted = true;
    uv_tcp_nodelay(&c->tcp, 1);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof(c->remote));
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof(c->remote));
    }
    if (w->cfg->max_connections > 0 && open > w->cfg->max_connections) {
        struct gw_page_req pr = {.keep_alive = false};

        log_debug("connection refused", "remote=%s reason=\"too many connections\"", c->remote);
        c->in_exchange = true;
        c->t_start_ns = uv_hrtime();
        c->status = 503;
        gw__page_error(client_out(c), &pr, 503, "too many connections");
        batch_add(c, true, c->out.data, c->out.len, NULL);
        client_shutdown(c);
        return;
    }
    timer_set(c, CT_HEAD, w->cfg->header_timeout_ms);
    client_update_reading(c);
}

void
gw__close_clients(struct gw_worker *w, bool idle_only)
{
    struct gw_client *c = w->clients;

    while (c) {
        struct gw_client *next = c->next;

        if (c->closing) {
            c = next;
            continue;
        }
        if (!idle_only) {
            client_close(c);
        } else if (c->state == CS_HOLD) {
            leave_hold(c);
            page_error(c, 503, "the gateway is shutting down"); /* and closes */
        } else if (c->state == CS_IDLE && c->in == NULL) {
            if (c->pending > 0)
                client_shutdown(c);
            else
                client_close(c);
        } else {
            c->close_after = true; /* answers what is in flight, then closes */
        }
        c = next;
    }
}
