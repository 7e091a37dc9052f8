/*
 * drivers/local/local_health.c - one health probe of a service: TCP (the port
 * accepts a connection) or HTTP (GET path answers 2xx/3xx), bounded by its
 * own timeout. Services we run are probed on 127.0.0.1; an `upstream:`
 * service on the host of its URL, resolved on the thread pool when it is a
 * name. The service paces probes and decides; a probe only reports healthy
 * or not, once, unless abandoned first.
 */
#define LOG_MOD "local"

#include "drivers/local/local_int.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "util/xmalloc.h"

/* The status line is all we read: "HTTP/1.1 200 OK\r\n" fits with room. */
#define PROBE_RESPONSE_MAX 64

struct local_probe {
    struct local_driver *drv;
    struct local_svc *svc; /* NULL once abandoned or finished */
    uv_tcp_t tcp;
    uv_timer_t timer; /* LOCAL_PROBE_TIMEOUT_MS for the whole probe */
    uv_connect_t connect;
    uv_getaddrinfo_t resolve; /* a host name only */
    uv_write_t write;
    char *request; /* HTTP only */
    char resp[PROBE_RESPONSE_MAX + 1];
    size_t resp_len;
    bool http;
    bool finished;    /* handles closing; late callbacks do nothing */
    bool resolving;   /* the getaddrinfo callback has yet to run */
    int open_handles; /* freed when both have closed and no resolution is pending */
};

static void
on_probe_closed(uv_handle_t *h)
{
    struct local_probe *p = h->data;
    struct local_driver *drv = p->drv;

    if (--p->open_handles == 0 && !p->resolving) {
        free(p->request);
        free(p);
    }
    local__handle_closed(drv);
}

/* Closes the handles and reports `healthy` to the service, if any is left. */
static void
probe_finish(struct local_probe *p, bool healthy)
{
    struct local_svc *s = p->svc;

    if (p->finished)
        return;
    p->finished = true;
    p->svc = NULL;
    if (p->resolving)
        uv_cancel((uv_req_t *)&p->resolve); /* its callback still runs, with UV_ECANCELED */
    p->tcp.data = p;
    p->timer.data = p;
    uv_close((uv_handle_t *)&p->tcp, on_probe_closed);
    uv_close((uv_handle_t *)&p->timer, on_probe_closed);
    if (s != NULL) {
        s->probe = NULL;
        local__svc_on_probe(s, healthy);
    }
}

void
local__probe_abandon(struct local_probe *p)
{
    if (p->svc)
        p->svc->probe = NULL;
    p->svc = NULL;
    probe_finish(p, false);
}

/* "HTTP/1.x NNN" with NNN in 200..399. */
static bool
status_ok(const char *resp, size_t len)
{
    int code;

    if (len < 12 || strncmp(resp, "HTTP/1.", 7) != 0 || resp[8] != ' ')
        return false;
    for (int i = 9; i < 12; i++) {
        if (resp[i] < '0' || resp[i] > '9')
            return false;
    }
    code = (resp[9] - '0') * 100 + (resp[10] - '0') * 10 + (resp[11] - '0');
    return code >= 200 && code < 400;
}

static void
on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct local_probe *p = container_of((uv_tcp_t *)h, struct local_probe, tcp);

    buf->base = p->resp + p->resp_len;
    buf->len = PROBE_RESPONSE_MAX - p->resp_len;
}

static void
on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct local_probe *p = container_of((uv_tcp_t *)stream, struct local_probe, tcp);

    if (p->finished)
        return;
    if (nread > 0)
        p->resp_len += (size_t)nread;
    /* Decide once the status line is complete, the buffer full, or the
     * server has hung up. */
    if (nread < 0 || p->resp_len == PROBE_RESPONSE_MAX ||
        memchr(p->resp, '\n', p->resp_len) != NULL)
        probe_finish(p, status_ok(p->resp, p->resp_len));
}

static void
on_written(uv_write_t *req, int status)
{
    struct local_probe *p = container_of(req, struct local_probe, write);

    if (status < 0 && !p->finished)
        probe_finish(p, false);
}

static void
on_connected(uv_connect_t *req, int status)
{
    struct local_probe *p = container_of(req, struct local_probe, connect);
    uv_buf_t b;

    if (p->finished)
        return; /* UV_ECANCELED after an abandon or the timeout */
    if (status < 0 || !p->http) {
        probe_finish(p, status == 0);
        return;
    }
    b = uv_buf_init(p->request, (unsigned int)strlen(p->request));
    if (uv_write(&p->write, (uv_stream_t *)&p->tcp, &b, 1, on_written) < 0 ||
        uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read) < 0)
        probe_finish(p, false);
}

static void
on_probe_timeout(uv_timer_t *t)
{
    probe_finish(container_of(t, struct local_probe, timer), false);
}

static void
connect_to(struct local_probe *p, const struct sockaddr *addr)
{
    if (uv_tcp_connect(&p->connect, &p->tcp, addr, on_connected) < 0)
        probe_finish(p, false);
}

static void
on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct local_probe *p = container_of(req, struct local_probe, resolve);
    struct local_driver *drv = p->drv;

    p->resolving = false;
    if (p->finished) {
        /* Abandoned or timed out meanwhile: the handles may be closed already. */
        if (p->open_handles == 0) {
            free(p->request);
            free(p);
        }
    } else if (status < 0 || res == NULL) {
        probe_finish(p, false);
    } else {
        /* IPv4 first: "localhost" often names ::1 too, where few servers listen. */
        const struct addrinfo *ai = res;
        for (const struct addrinfo *a = res; a; a = a->ai_next) {
            if (a->ai_family == AF_INET) {
                ai = a;
                break;
            }
        }
        connect_to(p, ai->ai_addr);
    }
    uv_freeaddrinfo(res);
    local__handle_closed(drv); /* the resolution counts as a handle of the driver */
}

int
local__probe_start(struct local_svc *s)
{
    struct local_driver *drv = s->env->drv;
    struct local_probe *p = xcalloc(1, sizeof(*p));
    const char *host = s->health_host ? s->health_host : "127.0.0.1";
    bool v6 = strchr(host, ':') != NULL;
    struct sockaddr_storage addr;
    int rc;

    p->drv = drv;
    p->http = s->health_kind == SPEC_HEALTH_HTTP;
    if (p->http) {
        p->request = xasprintf("GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nConnection: close\r\n"
                               "User-Agent: ephemera-health\r\n\r\n",
                               s->health_path ? s->health_path : "/", v6 ? "[" : "", host,
                               v6 ? "]" : "", s->port);
    }
    uv_tcp_init(drv->loop, &p->tcp);
    uv_timer_init(drv->loop, &p->timer);
    p->open_handles = 2;
    local__handle_opened(drv);
    local__handle_opened(drv);
    if (uv_ip4_addr(host, s->port, (struct sockaddr_in *)&addr) == 0 ||
        uv_ip6_addr(host, s->port, (struct sockaddr_in6 *)&addr) == 0) {
        rc = uv_tcp_connect(&p->connect, &p->tcp, (const struct sockaddr *)&addr, on_connected);
    } else {
        /* A host name: resolved on the thread pool, never on the loop. */
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        char port[8];

        snprintf(port, sizeof(port), "%d", s->port);
        rc = uv_getaddrinfo(drv->loop, &p->resolve, on_resolved, host, port, &hints);
        if (rc == 0) {
            p->resolving = true;
            local__handle_opened(drv);
        }
    }
    if (rc < 0) {
        probe_finish(p, false); /* no service attached yet: reports nothing */
        return rc;
    }
    uv_timer_start(&p->timer, on_probe_timeout, LOCAL_PROBE_TIMEOUT_MS, 0);
    p->svc = s;
    s->probe = p;
    return 0;
}
