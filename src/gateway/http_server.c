/*
 * gateway/http_server.c - HTTP/1.1 connections on a libuv loop: accept,
 * read, parse (http_request.c), hand each complete request to the handler
 * as an exchange, write its answer, and keep the connection alive or close
 * it.
 *
 * One request at a time per connection: bytes that arrive while an exchange
 * is in flight wait in a bounded input buffer (reading stops when it is
 * full), so pipelined requests are answered in order. Reading goes on while
 * an exchange is in flight only to notice a client that leaves: a read error
 * (a reset) means it has gone; an end of input (FIN) before the answer has
 * started is a half-close, so reading stops and the answer is still sent,
 * then the connection closes. Once a stream has started, an end of input
 * means the client has gone: a stream has no end of its own and may write
 * nothing for a long time, so it would otherwise never find out.
 *
 * Bounds: at most max_connections connections (and exchanges that outlived
 * theirs); one more is accepted, told 503 and closed at once. A request head
 * must arrive within header_timeout_ms, its body within body_timeout_ms of
 * the head however it is trickled, each at 408.
 *
 * Lifetimes: a connection owns two handles (socket and timer) and is freed
 * when both close callbacks have run. An exchange still in flight at that
 * point is detached (its writes are dropped from then on), told through its
 * gone callback, and freed when its handler finishes it. The server counts
 * connections and detached exchanges, and calls its done callback when
 * closing and both counts have reached zero.
 */
#include "gateway/http_server.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "gateway/gateway_int.h"
#include "util/buf.h"
#include "util/xmalloc.h"

#define LOG_MOD "http"
#include "util/log.h"

/* Bytes read but not parsed yet (pipelined requests); reading pauses beyond. */
#define HTTP_IN_MAX (64 * 1024)
/* Response headers added by a handler: far more than an API ever sets. */
#define HTTP_RESP_HEADERS_MAX (16 * 1024)
/* Unwritten response bytes above which the next request waits for the client. */
#define HTTP_WRITE_HIGH_WATER (1024 * 1024)
/* After our last response and a FIN, how long we read and discard what the
 * client still sends, so that closing does not reset the connection before
 * the client has read our answer (a 413 sent before the body was read). */
#define HTTP_LINGER_MS 2000
/* How long a closing connection may take to flush its last response. */
#define HTTP_FLUSH_MS 30000
/* Defaults of the config's zero fields: a control host has few clients, and a
 * request body of the API's size needs seconds, not minutes, on any link. */
#define HTTP_MAX_CONNECTIONS_DEFAULT 1024
#define HTTP_BODY_TIMEOUT_MS_DEFAULT 60000

enum timer_mode {
    TM_NONE,
    TM_IDLE,   /* keep-alive connection between requests: close quietly */
    TM_HEAD,   /* waiting for a whole request head: 408 */
    TM_BODY,   /* waiting for more of the body (body_deadline_ms at most): 408 */
    TM_FLUSH,  /* last response queued, FIN pending: close */
    TM_LINGER, /* FIN sent, discarding input: close */
    TM_NOTIFY, /* the server is closing: tell the exchange in flight (gone callback);
                  armed again if its handler registers the callback only later */
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct http_server *srv;
    struct http_conn *prev, *next; /* the server's list */
    struct gw_req req;             /* parser state of the current request */
    struct buf in;                 /* read, not parsed yet; ceiling HTTP_IN_MAX */
    struct http_exchange *x;       /* in flight, or NULL */
    size_t write_pending;          /* bytes handed to uv_write, not yet written */
    uint64_t written;              /* bytes written so far (progress for the timers) */
    uint64_t written_at_arm;       /* `written` when the timer was last armed */
    int64_t body_deadline_ms;      /* loop time by which the current body must be in */
    int handles_open;              /* 2 until the close callbacks ran */
    enum timer_mode timer_mode;
    bool reading;       /* uv_read_start is in effect */
    bool closing;       /* uv_close was called */
    bool shutting;      /* last response queued: flush, FIN, linger */
    bool processing;    /* inside conn_process (guards reentry) */
    bool sent_continue; /* "100 Continue" sent for the current request */
    bool read_eof;      /* the client sent all it will (FIN): never read again */
    char remote[64];    /* client address */
};

struct http_exchange {
    struct http_server *srv;
    struct http_conn *conn; /* NULL once the connection has closed */
    struct gw_request req;
    char remote[64];
    struct buf resp_headers; /* "Name: value\r\n" lines added by the handler */
    bool head_only;          /* a HEAD request: headers, no body */
    bool close_after;        /* close the connection after this response */
    bool started;            /* the response head was sent */
    bool chunked;            /* the stream uses chunked encoding (HTTP/1.1) */
    bool gone_fired;
    http_gone_cb *gone_cb;
    void *gone_arg;
    void *data;         /* the handler's */
    int status;         /* for the log */
    int64_t started_ms; /* loop time the request was complete */
};

struct http_server {
    uv_tcp_t listener;
    uv_loop_t *loop;
    struct http_server_config cfg; /* host not kept: used at start only */
    int port;
    struct http_conn *conns;
    size_t n_live;  /* connections (refused ones until closed) + exchanges that outlived theirs */
    size_t refused; /* connections refused at max_connections since the last log line */
    bool closing;
    bool listener_closed;
    void (*done)(void *arg);
    void *done_arg;
    char rbuf[64 * 1024]; /* every read lands here first (one loop) */
};

/* A write request with its bytes. */
struct http_write {
    uv_write_t req;
    size_t len;
    char data[];
};

static void conn_process(struct http_conn *c);
static void conn_close(struct http_conn *c);
static void conn_shutdown(struct http_conn *c);

/* ------------------------------------------------------------- server */

static void
server_maybe_done(struct http_server *srv)
{
    if (!srv->closing || !srv->listener_closed || srv->n_live > 0)
        return;
    if (srv->done)
        srv->done(srv->done_arg);
    free(srv);
}

/* A connection, a refused one, or an exchange that outlived its connection
 * has ended. May free the server. */
static void
server_unlive(struct http_server *srv)
{
    srv->n_live--;
    if (srv->refused > 0 && srv->n_live < (size_t)srv->cfg.max_connections) {
        log_warn("connections refused at the limit", "count=%zu max=%d", srv->refused,
                 srv->cfg.max_connections);
        srv->refused = 0;
    }
    server_maybe_done(srv);
}

static void
on_listener_closed(uv_handle_t *h)
{
    struct http_server *srv = container_of((uv_tcp_t *)h, struct http_server, listener);

    srv->listener_closed = true;
    server_maybe_done(srv);
}

static void
on_listener_failed_closed(uv_handle_t *h)
{
    free(container_of((uv_tcp_t *)h, struct http_server, listener));
}

/* ------------------------------------------------------------- timers and reading */

static void on_timer(uv_timer_t *t);

static void
timer_arm(struct http_conn *c, enum timer_mode mode, int64_t ms)
{
    if (c->closing)
        return;
    /* 0 ms is "off" for the configured timeouts; a notice is due at once. */
    if (mode == TM_NONE || (ms <= 0 && mode != TM_NOTIFY)) {
        c->timer_mode = TM_NONE;
        uv_timer_stop(&c->timer);
        return;
    }
    c->timer_mode = mode;
    c->written_at_arm = c->written;
    uv_timer_start(&c->timer, on_timer, ms > 0 ? (uint64_t)ms : 0, 0);
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *out)
{
    struct http_conn *c = container_of((uv_tcp_t *)h, struct http_conn, tcp);
    size_t room = c->in.max_bytes - c->in.len;

    (void)suggested;
    if (c->shutting)
        room = sizeof(c->srv->rbuf); /* discarded anyway */
    if (room > sizeof(c->srv->rbuf))
        room = sizeof(c->srv->rbuf);
    *out = uv_buf_init(c->srv->rbuf, (unsigned int)room);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b);

/* Reads while there is room for input, or while lingering to discard it;
 * never after the client's end of input (the socket would only say it again). */
static void
conn_update_reading(struct http_conn *c)
{
    bool want = !c->closing && !c->read_eof && (c->shutting || c->in.len < c->in.max_bytes);

    if (want == c->reading)
        return;
    if (want && uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) {
        conn_close(c);
        return;
    }
    if (!want)
        uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = want;
}

/* ------------------------------------------------------------- writing */

static void
on_write(uv_write_t *req, int status)
{
    struct http_write *w = container_of(req, struct http_write, req);
    struct http_conn *c = container_of((uv_tcp_t *)req->handle, struct http_conn, tcp);
    bool was_high = c->write_pending > HTTP_WRITE_HIGH_WATER;

    c->write_pending -= w->len;
    if (status == 0)
        c->written += w->len;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        log_debug("write failed", "remote=%s error=%s", c->remote, uv_strerror(status));
        conn_close(c);
        return;
    }
    /* The next request waited for the client to read what we had sent. */
    if (was_high && c->write_pending <= HTTP_WRITE_HIGH_WATER && c->x == NULL)
        conn_process(c);
}

/* Queues bytes for the client; dropped if the connection is closing. */
static void
conn_write(struct http_conn *c, const void *a, size_t a_len, const void *b, size_t b_len,
           const void *t, size_t t_len)
{
    struct http_write *w;
    uv_buf_t ub;
    int rc;

    if (c->closing)
        return;
    w = xmalloc(sizeof(*w) + a_len + b_len + t_len);
    w->len = a_len + b_len + t_len;
    if (a_len)
        memcpy(w->data, a, a_len);
    if (b_len)
        memcpy(w->data + a_len, b, b_len);
    if (t_len)
        memcpy(w->data + a_len + b_len, t, t_len);
    ub = uv_buf_init(w->data, (unsigned int)w->len);
    rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rc < 0) {
        free(w);
        conn_close(c);
        return;
    }
    c->write_pending += w->len;
}

/* ------------------------------------------------------------- closing */

static void
conn_handle_closed(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct http_exchange *x = c->x;

    if (--c->handles_open > 0)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    gw__req_release(&c->req);
    buf_release(&c->in);
    free(c);
    if (x == NULL) {
        server_unlive(srv);
        return;
    }
    /* The exchange outlives its connection and inherits its place in n_live;
     * its handler finishes it, perhaps right inside the gone callback. */
    x->conn = NULL;
    if (x->gone_cb && !x->gone_fired) {
        x->gone_fired = true;
        x->gone_cb(x, x->gone_arg);
    }
}

static void
on_tcp_closed(uv_handle_t *h)
{
    conn_handle_closed(container_of((uv_tcp_t *)h, struct http_conn, tcp));
}

static void
on_timer_closed(uv_handle_t *h)
{
    conn_handle_closed(container_of((uv_timer_t *)h, struct http_conn, timer));
}

static void
conn_close(struct http_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->reading = false;
    uv_close((uv_handle_t *)&c->tcp, on_tcp_closed);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

static void
on_shutdown(uv_shutdown_t *req, int status)
{
    struct http_conn *c = container_of(req, struct http_conn, shutdown_req);

    if (c->closing)
        return;
    if (status < 0 || c->read_eof) {
        conn_close(c); /* after its FIN the client sends nothing to discard */
        return;
    }
    timer_arm(c, TM_LINGER, HTTP_LINGER_MS);
}

/* Flushes what is queued, sends a FIN, discards input for a moment, closes. */
static void
conn_shutdown(struct http_conn *c)
{
    if (c->closing || c->shutting)
        return;
    c->shutting = true;
    buf_reset(&c->in);
    timer_arm(c, TM_FLUSH, HTTP_FLUSH_MS);
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) < 0) {
        conn_close(c);
        return;
    }
    conn_update_reading(c);
}

/* Answers a request the server refuses itself, and closes. */
static void
conn_refuse(struct http_conn *c, int status, const char *reason)
{
    const char *code = status == 413   ? "too_large"
                       : status == 408 ? "timeout"
                       : status == 431 ? "too_large"
                                       : "invalid";
    char msg[128];
    char body[256];
    char head[256];
    size_t m = 0;
    int blen;
    int hlen;

    log_debug("request refused", "remote=%s status=%d reason=%s", c->remote, status, log_q(reason));
    /* Our reasons are fixed phrases; keep them valid JSON strings regardless. */
    for (const char *p = reason; *p && m + 1 < sizeof(msg); p++)
        msg[m++] = (*p == '"' || *p == '\\' || (unsigned char)*p < 0x20) ? '\'' : *p;
    msg[m] = '\0';
    blen = snprintf(body, sizeof(body), "{\"error\": {\"code\": \"%s\", \"message\": \"%s\"}}\n",
                    code, msg);
    hlen = snprintf(head, sizeof(head),
                    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n",
                    status, http_status_str((enum http_status)status), blen);
    conn_write(c, head, (size_t)hlen, body, (size_t)blen, NULL, 0);
    conn_shutdown(c);
}

static void
on_timer(uv_timer_t *t)
{
    struct http_conn *c = container_of(t, struct http_conn, timer);
    enum timer_mode mode = c->timer_mode;

    /* A slow client still reading a large response is not idle. */
    if ((mode == TM_IDLE || mode == TM_FLUSH) && c->write_pending > 0 &&
        c->written != c->written_at_arm) {
        timer_arm(c, mode, mode == TM_IDLE ? c->srv->cfg.idle_timeout_ms : HTTP_FLUSH_MS);
        return;
    }
    c->timer_mode = TM_NONE;
    switch (mode) {
    case TM_HEAD: conn_refuse(c, 408, "timed out waiting for the request head"); break;
    case TM_BODY: conn_refuse(c, 408, "timed out waiting for the request body"); break;
    case TM_NOTIFY:
        if (c->x && c->x->gone_cb && !c->x->gone_fired) {
            c->x->gone_fired = true;
            c->x->gone_cb(c->x, c->x->gone_arg); /* may finish the exchange */
        }
        break;
    case TM_IDLE:
    case TM_FLUSH:
    case TM_LINGER: conn_close(c); break;
    case TM_NONE: break;
    }
}

/* ------------------------------------------------------------- requests */

/* Waits for more of the body: at most idle_timeout_ms for the next bytes, and
 * never past the deadline set when the head was complete, so that a body
 * trickled a byte at a time still ends. */
static void
conn_wait_body(struct http_conn *c)
{
    const struct http_server_config *cfg = &c->srv->cfg;
    int64_t now = (int64_t)uv_now(c->srv->loop);
    int64_t ms;

    if (c->timer_mode != TM_BODY)
        c->body_deadline_ms = now + cfg->body_timeout_ms; /* the head just completed */
    ms = c->body_deadline_ms - now;
    if (cfg->idle_timeout_ms > 0 && cfg->idle_timeout_ms < ms)
        ms = cfg->idle_timeout_ms;
    timer_arm(c, TM_BODY, ms > 0 ? ms : 1);
}

static void
dispatch(struct http_conn *c)
{
    struct http_server *srv = c->srv;
    struct http_exchange *x = xcalloc(1, sizeof(*x));

    x->srv = srv;
    x->conn = c;
    gw__req_take(&c->req, &x->req);
    memcpy(x->remote, c->remote, sizeof(x->remote));
    buf_init(&x->resp_headers, HTTP_RESP_HEADERS_MAX);
    x->head_only = strcmp(x->req.method, "HEAD") == 0;
    /* HTTP/1.0 clients get one request per connection. */
    x->close_after =
        !x->req.keep_alive || x->req.http_major != 1 || x->req.http_minor == 0 || srv->closing;
    x->started_ms = (int64_t)uv_now(srv->loop);
    c->x = x;
    c->sent_continue = false;
    timer_arm(c, TM_NONE, 0);
    srv->cfg.handler(x, srv->cfg.handler_arg);
}

/*
 * Parses what has been read and dispatches complete requests, one at a time.
 * Safe to call at any point: it does nothing while an exchange is in flight,
 * and a handler that answers at once simply lets the loop go on.
 */
static void
conn_process(struct http_conn *c)
{
    if (c->processing)
        return;
    c->processing = true;
    while (!c->closing && !c->shutting && c->x == NULL && c->in.len > 0 &&
           c->write_pending <= HTTP_WRITE_HIGH_WATER) {
        size_t n;

        if (c->timer_mode == TM_IDLE)
            timer_arm(c, TM_HEAD, c->srv->cfg.header_timeout_ms);
        n = gw__req_feed(&c->req, c->in.data, c->in.len);
        buf_consume(&c->in, n);
        if (c->req.error_status) {
            conn_refuse(c, c->req.error_status, c->req.error_reason);
            break;
        }
        if (c->req.complete) {
            dispatch(c);
            continue;
        }
        if (c->req.headers_done) {
            conn_wait_body(c);
            if (c->req.expect_continue && !c->sent_continue) {
                static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

                c->sent_continue = true;
                conn_write(c, cont, sizeof(cont) - 1, NULL, 0, NULL, 0);
            }
        }
        if (n == 0)
            break; /* cannot happen: the parser uses all bytes unless it stops */
    }
    c->processing = false;
    conn_update_reading(c);
}

/*
 * The client has sent all it will (FIN) but may still be reading: a request
 * in flight is answered, then the connection closes; so is a response still
 * being written. Returns false when nothing is owed to it, or when a stream
 * has already started (see the top of the file): then the client has gone.
 */
static bool
conn_half_closed(struct http_conn *c)
{
    c->read_eof = true;
    conn_update_reading(c);
    if (c->x != NULL && !c->x->started) {
        c->x->close_after = true; /* the response says "Connection: close" */
        return true;
    }
    if (c->x == NULL && c->write_pending > 0) {
        conn_shutdown(c); /* a partial request in c->in is dropped with it */
        return true;
    }
    return false;
}

static void
on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *c = container_of((uv_tcp_t *)s, struct http_conn, tcp);

    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS) {
            conn_update_reading(c);
            return;
        }
        if (nread == UV_EOF && !c->shutting && conn_half_closed(c))
            return;
        /* A reset, or an end of input nothing waits for: the client has gone
         * (an exchange in flight learns it from its gone callback once the
         * handles are closed). */
        conn_close(c);
        return;
    }
    if (c->shutting)
        return; /* lingering: discard */
    if (buf_append(&c->in, b->base, (size_t)nread) < 0) {
        conn_close(c); /* on_alloc never offers more than the room left */
        return;
    }
    if (c->x == NULL)
        conn_process(c);
    else
        conn_update_reading(c);
}

/* A connection over max_connections: accepted only to be told so and
 * closed, which costs its few bytes for one loop iteration. */
struct http_reject {
    uv_tcp_t tcp;
    struct http_server *srv;
};

static void
on_reject_closed(uv_handle_t *h)
{
    struct http_reject *r = container_of((uv_tcp_t *)h, struct http_reject, tcp);
    struct http_server *srv = r->srv;

    free(r);
    server_unlive(srv);
}

/* Accepts (leaving it in the backlog would stop libuv accepting at all),
 * answers 503 if the socket takes it at once, and closes. */
static void
refuse_connection(struct http_server *srv)
{
    static const char body[] =
        "{\"error\": {\"code\": \"unavailable\", \"message\": \"too many connections\"}}\n";
    struct http_reject *r = xcalloc(1, sizeof(*r));
    char msg[512];
    int n;

    if (srv->refused++ == 0)
        log_warn("connection limit reached", "max=%d", srv->cfg.max_connections);
    r->srv = srv;
    srv->n_live++; /* until its close callback, so that close waits for it */
    uv_tcp_init(srv->loop, &r->tcp);
    if (uv_accept((uv_stream_t *)&srv->listener, (uv_stream_t *)&r->tcp) == 0) {
        uv_buf_t ub;

        n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s",
                     sizeof(body) - 1, body);
        ub = uv_buf_init(msg, (unsigned int)n);
        (void)uv_try_write((uv_stream_t *)&r->tcp, &ub, 1); /* a new socket takes it whole */
    }
    uv_close((uv_handle_t *)&r->tcp, on_reject_closed);
}

static void
on_connection(uv_stream_t *ls, int status)
{
    struct http_server *srv = container_of((uv_tcp_t *)ls, struct http_server, listener);
    struct http_conn *c;
    struct sockaddr_storage ss;
    int len = sizeof(ss);

    if (status < 0) {
        log_warn("accept failed", "error=%s", uv_strerror(status));
        return;
    }
    if (srv->n_live >= (size_t)srv->cfg.max_connections) {
        refuse_connection(srv);
        return;
    }
    c = xcalloc(1, sizeof(*c));
    c->srv = srv;
    gw__req_init(&c->req, srv->cfg.max_header_bytes, srv->cfg.max_body_bytes);
    buf_init(&c->in, HTTP_IN_MAX);
    uv_tcp_init(srv->loop, &c->tcp);
    uv_timer_init(srv->loop, &c->timer);
    c->handles_open = 2;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_live++;
    if (uv_accept(ls, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    snprintf(c->remote, sizeof(c->remote), "unknown");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, c->remote, sizeof(c->remote));
        else if (ss.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&ss, c->remote, sizeof(c->remote));
    }
    timer_arm(c, TM_HEAD, srv->cfg.header_timeout_ms);
    conn_update_reading(c);
}

/* ------------------------------------------------------------- public: server */

int
http_server_start(const struct http_server_config *cfg, struct http_server **out,
                  struct eph_err *err)
{
    struct http_server *srv;
    struct sockaddr_storage addr;
    struct sockaddr_storage bound;
    int len = sizeof(bound);
    int rc;

    *out = NULL;
    EPH_ASSERT(cfg->loop && cfg->handler && cfg->host);
    if (uv_ip4_addr(cfg->host, cfg->port, (struct sockaddr_in *)&addr) != 0 &&
        uv_ip6_addr(cfg->host, cfg->port, (struct sockaddr_in6 *)&addr) != 0)
        return eph_err_set(err, EPH_EINVAL, "invalid listen address '%s'", cfg->host);
    srv = xcalloc(1, sizeof(*srv));
    srv->loop = cfg->loop;
    srv->cfg = *cfg;
    srv->cfg.host = NULL;
    if (srv->cfg.max_connections <= 0)
        srv->cfg.max_connections = HTTP_MAX_CONNECTIONS_DEFAULT;
    if (srv->cfg.body_timeout_ms <= 0)
        srv->cfg.body_timeout_ms = HTTP_BODY_TIMEOUT_MS_DEFAULT;
    uv_tcp_init(cfg->loop, &srv->listener);
    rc = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&srv->listener, 128, on_connection);
    if (rc == 0)
        rc = uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &len);
    if (rc < 0) {
        uv_close((uv_handle_t *)&srv->listener, on_listener_failed_closed);
        return eph_err_set(err, rc == UV_EADDRINUSE ? EPH_ECONFLICT : EPH_EINVAL,
                           "cannot listen on %s:%d: %s", cfg->host, cfg->port, uv_strerror(rc));
    }
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    *out = srv;
    return 0;
}

int
http_server_port(const struct http_server *srv)
{
    return srv->port;
}

void
http_server_close(struct http_server *srv, void (*done)(void *arg), void *arg)
{
    struct http_conn *c;
    struct http_conn *next;

    EPH_ASSERT(!srv->closing);
    srv->closing = true;
    srv->done = done;
    srv->done_arg = arg;
    uv_close((uv_handle_t *)&srv->listener, on_listener_closed);
    for (c = srv->conns; c; c = next) {
        next = c->next;
        if (c->x != NULL) {
            /* Finishes its exchange, then closes. A stream has no end of its
             * own: its handler learns of the close through the gone callback,
             * from the loop rather than from inside this call (and later, if
             * it registers the callback later: see http_on_gone). */
            timer_arm(c, TM_NOTIFY, 0);
            continue;
        }
        if (c->shutting)
            continue; /* flushing its last response, then it closes */
        if (c->write_pending > 0)
            conn_shutdown(c);
        else
            conn_close(c);
    }
}

/* ------------------------------------------------------------- public: the request */

const char *
http_method(const struct http_exchange *x)
{
    return x->req.method;
}

const char *
http_path(const struct http_exchange *x)
{
    return x->req.path;
}

const char *
http_query(const struct http_exchange *x)
{
    return x->req.query;
}

char *
http_query_param(const struct http_exchange *x, const char *name)
{
    return gw__query_param(x->req.query, name);
}

const char *
http_header(const struct http_exchange *x, const char *name)
{
    return gw__request_header(&x->req, name);
}

const char *
http_body(const struct http_exchange *x, size_t *len)
{
    if (len)
        *len = x->req.body_len;
    return x->req.body;
}

const char *
http_remote_addr(const struct http_exchange *x)
{
    return x->remote;
}

/* ------------------------------------------------------------- public: the response */

static bool
header_text_ok(const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n')
            return false;
    }
    return true;
}

void
http_add_header(struct http_exchange *x, const char *name, const char *value)
{
    EPH_ASSERT(!x->started);
    if (!header_text_ok(name) || !header_text_ok(value)) {
        log_warn("response header dropped", "name=%s reason=\"line break\"", log_q(name));
        return;
    }
    if (strcasecmp(name, "Connection") == 0) {
        if (strcasestr(value, "close"))
            x->close_after = true;
        return; /* we say it ourselves */
    }
    if (buf_printf(&x->resp_headers, "%s: %s\r\n", name, value) < 0)
        log_warn("response header dropped", "name=%s reason=\"too many headers\"", log_q(name));
}

/* Formats the status line and headers; content_length < 0: a stream. */
static void
format_head(struct http_exchange *x, struct buf *h, int status, const char *content_type,
            long long content_length)
{
    const char *reason = http_status_str((enum http_status)status);

    if (strcmp(reason, "<unknown>") == 0)
        reason = "Status";
    buf_printf(h, "HTTP/1.1 %d %s\r\n", status, reason);
    if (content_type)
        buf_printf(h, "Content-Type: %s\r\n", content_type);
    if (content_length >= 0) {
        if (status != 204 && status != 304)
            buf_printf(h, "Content-Length: %lld\r\n", content_length);
    } else if (x->chunked) {
        buf_puts(h, "Transfer-Encoding: chunked\r\n");
    }
    buf_append(h, buf_cstr(&x->resp_headers), x->resp_headers.len);
    if (x->close_after)
        buf_puts(h, "Connection: close\r\n");
    buf_puts(h, "\r\n");
}

/* Frees the exchange and lets its connection go on (or close). */
static void
finish(struct http_exchange *x)
{
    struct http_server *srv = x->srv;
    struct http_conn *c = x->conn;
    bool close_after = x->close_after;

    log_debug("request", "method=%s path=%s status=%d remote=%s took_ms=%lld", x->req.method,
              log_q(x->req.path), x->status, x->remote,
              (long long)((int64_t)uv_now(srv->loop) - x->started_ms));
    gw__request_release(&x->req);
    buf_release(&x->resp_headers);
    free(x);
    if (c == NULL) {
        server_unlive(srv);
        return;
    }
    c->x = NULL;
    if (c->closing)
        return; /* its close callbacks count it out */
    if (close_after || srv->closing) {
        conn_shutdown(c);
        return;
    }
    timer_arm(c, TM_IDLE, srv->cfg.idle_timeout_ms);
    conn_process(c);
}

void
http_respond(struct http_exchange *x, int status, const char *content_type, const char *body,
             size_t len)
{
    struct http_conn *c = x->conn;

    EPH_ASSERT(!x->started);
    x->started = true;
    x->status = status;
    if (c && !c->closing) {
        struct buf h;

        buf_init(&h, HTTP_RESP_HEADERS_MAX + 1024);
        format_head(x, &h, status, content_type, (long long)len);
        if (x->head_only || status == 204 || status == 304)
            len = 0;
        conn_write(c, h.data, h.len, body, len, NULL, 0);
        buf_release(&h);
    }
    finish(x);
}

void
http_stream_start(struct http_exchange *x, int status, const char *content_type)
{
    struct http_conn *c = x->conn;

    EPH_ASSERT(!x->started);
    x->started = true;
    x->status = status;
    /* HTTP/1.0 has no chunks: the body ends when the connection does. */
    x->chunked = x->req.http_major == 1 && x->req.http_minor >= 1;
    if (!x->chunked)
        x->close_after = true;
    if (c && !c->closing) {
        struct buf h;

        buf_init(&h, HTTP_RESP_HEADERS_MAX + 1024);
        format_head(x, &h, status, content_type, -1);
        conn_write(c, h.data, h.len, NULL, 0, NULL, 0);
        buf_release(&h);
    }
}

int
http_stream_write(struct http_exchange *x, const void *data, size_t len)
{
    struct http_conn *c = x->conn;
    char size_line[32];
    int n;

    EPH_ASSERT(x->started);
    if (c == NULL || c->closing)
        return EPH_ECONFLICT;
    if (len == 0 || x->head_only)
        return 0; /* a zero-length chunk would end the stream */
    if (!x->chunked) {
        conn_write(c, data, len, NULL, 0, NULL, 0);
        return 0;
    }
    n = snprintf(size_line, sizeof(size_line), "%zx\r\n", len);
    conn_write(c, size_line, (size_t)n, data, len, "\r\n", 2);
    return 0;
}

size_t
http_stream_pending(const struct http_exchange *x)
{
    return x->conn ? x->conn->write_pending : 0;
}

void
http_stream_end(struct http_exchange *x)
{
    struct http_conn *c = x->conn;

    EPH_ASSERT(x->started);
    if (c && !c->closing && x->chunked && !x->head_only)
        conn_write(c, "0\r\n\r\n", 5, NULL, 0, NULL, 0);
    finish(x);
}

bool
http_client_gone(const struct http_exchange *x)
{
    return x->conn == NULL || x->conn->closing;
}

void
http_on_gone(struct http_exchange *x, http_gone_cb *cb, void *arg)
{
    struct http_conn *c = x->conn;

    x->gone_cb = cb;
    x->gone_arg = arg;
    /* The server's close notice went out before there was a callback to hear
     * it (a handler that registers after work on another thread): deliver it
     * from the loop now, or close would wait for this client forever. A
     * closing connection delivers its own from its close callbacks. */
    if (x->srv->closing && !x->gone_fired && c != NULL && !c->closing)
        timer_arm(c, TM_NOTIFY, 0);
}

void
http_set_data(struct http_exchange *x, void *data)
{
    x->data = data;
}

void *
http_get_data(const struct http_exchange *x)
{
    return x->data;
}
