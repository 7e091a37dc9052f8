/*
 * tests/unit/gateway/test_proxy.c - the reverse proxy end to end, inside one
 * process: gw_start() with one worker on 127.0.0.1:0, a published route
 * table pointing at small upstream servers that run in threads with
 * blocking sockets, and clients with blocking sockets on the test's thread.
 *
 * Every test stops the gateway through gw_stop() on a control loop of its
 * own and checks that done ran and that the loop closes with no handle left.
 */
#include "gateway/gateway.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/xmalloc.h"

/* One timeout for every test: Criterion's runner (BoxFort 2.4) loses track
 * of a timeout pushed with an earlier deadline than one already pending
 * when tests run in parallel, and LeakSanitizer then fails the run. */
#define TEST_TIMEOUT_S 60

/* ------------------------------------------------------------- upstream servers */

#define SRV_MAX_CONNS 512

struct srv {
    int lfd;
    int port;
    pthread_t accept_thread;
    atomic_int conns;    /* connections accepted */
    atomic_int requests; /* requests answered */
    atomic_int closing;
    atomic_llong big_sent; /* body bytes of /big written so far */
    pthread_mutex_t lock;
    int fds[SRV_MAX_CONNS];
    pthread_t threads[SRV_MAX_CONNS];
    int n;
};

/* One request as the upstream saw it. */
struct sreq {
    char url[1024];
    size_t url_len;
    char head[16384]; /* "Name: value\n" lines as received */
    size_t head_len;
    int last; /* 1 field, 2 value */
    char *body;
    size_t body_len;
    uint64_t body_total;
    bool complete;
    bool headers_done;
    bool expect_continue;
    int fd;
};

struct sconn {
    struct srv *srv;
    int fd;
    int id;
    int served;
};

static void
write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void
write_str(int fd, const char *s)
{
    write_all(fd, s, strlen(s));
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int
s_on_url(http_parser *p, const char *at, size_t len)
{
    struct sreq *r = p->data;

    if (r->url_len + len < sizeof(r->url)) {
        memcpy(r->url + r->url_len, at, len);
        r->url_len += len;
        r->url[r->url_len] = '\0';
    }
    return 0;
}

static void
s_head_add(struct sreq *r, const char *s, size_t len)
{
    if (r->head_len + len + 1 < sizeof(r->head)) {
        memcpy(r->head + r->head_len, s, len);
        r->head_len += len;
        r->head[r->head_len] = '\0';
    }
}

static int
s_on_field(http_parser *p, const char *at, size_t len)
{
    struct sreq *r = p->data;

    if (r->headers_done)
        return 0;
    if (r->last == 2)
        s_head_add(r, "\n", 1);
    r->last = 1;
    s_head_add(r, at, len);
    return 0;
}

static int
s_on_value(http_parser *p, const char *at, size_t len)
{
    struct sreq *r = p->data;

    if (r->headers_done)
        return 0;
    if (r->last == 1)
        s_head_add(r, ": ", 2);
    r->last = 2;
    s_head_add(r, at, len);
    return 0;
}

static int
s_on_headers_complete(http_parser *p)
{
    struct sreq *r = p->data;

    if (r->last == 2)
        s_head_add(r, "\n", 1);
    r->headers_done = true;
    r->expect_continue = strcasestr(r->head, "expect: 100-continue") != NULL;
    if (r->expect_continue && strncmp(r->url, "/continue", 9) == 0)
        write_str(r->fd, "HTTP/1.1 100 Continue\r\n\r\n");
    return 0;
}

static int
s_on_body(http_parser *p, const char *at, size_t len)
{
    struct sreq *r = p->data;

    r->body_total += len;
    if (r->body_len + len <= 1 << 20) {
        r->body = xrealloc(r->body, r->body_len + len + 1);
        memcpy(r->body + r->body_len, at, len);
        r->body_len += len;
        r->body[r->body_len] = '\0';
    }
    return 0;
}

static int
s_on_complete(http_parser *p)
{
    struct sreq *r = p->data;

    r->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings s_settings = {
    .on_url = s_on_url,
    .on_header_field = s_on_field,
    .on_header_value = s_on_value,
    .on_headers_complete = s_on_headers_complete,
    .on_body = s_on_body,
    .on_message_complete = s_on_complete,
};

static long
query_num(const char *url, const char *name, long dflt)
{
    const char *q = strstr(url, name);

    if (q == NULL || q[strlen(name)] != '=')
        return dflt;
    return strtol(q + strlen(name) + 1, NULL, 10);
}

static void
respond_body(int fd, int status, const char *extra, const char *body, size_t len)
{
    char head[512];

    snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len,
             extra ? extra : "");
    write_str(fd, head);
    write_all(fd, body, len);
}

/* Answers one request; false: close the connection. */
static bool
serve(struct sconn *sc, struct sreq *r, http_parser *p)
{
    int fd = sc->fd;
    char buf[20000];
    char path[1024];

    snprintf(path, sizeof(path), "%.*s", (int)strcspn(r->url, "?"), r->url);

    if (strcmp(path, "/hello") == 0) {
        respond_body(fd, 200, "X-Up: 1\r\n", "hello", 5);
    } else if (strcmp(path, "/echo") == 0 || strncmp(r->url, "/continue", 9) == 0) {
        respond_body(fd, 200, NULL, r->body ? r->body : "", r->body_len);
    } else if (strcmp(path, "/headers") == 0 || strncmp(r->url, "/api/", 5) == 0) {
        snprintf(buf, sizeof(buf), "%s %s\n%s", http_method_str(p->method), r->url, r->head);
        respond_body(fd, 200, NULL, buf, strlen(buf));
    } else if (strcmp(path, "/conn") == 0) {
        snprintf(buf, sizeof(buf), "conn=%d", sc->id);
        respond_body(fd, 200, NULL, buf, strlen(buf));
    } else if (strcmp(path, "/count") == 0) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)r->body_total);
        respond_body(fd, 200, NULL, buf, strlen(buf));
    } else if (strcmp(path, "/chunked") == 0) {
        write_str(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "6\r\nhello \r\n5;x=y\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n");
    } else if (strcmp(path, "/close") == 0) {
        write_str(fd, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
        return false;
    } else if (strcmp(path, "/304") == 0) {
        write_str(fd, "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n");
    } else if (strcmp(path, "/204") == 0) {
        write_str(fd, "HTTP/1.1 204 No Content\r\n\r\n");
    } else if (strcmp(path, "/head") == 0) {
        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
        if (p->method != HTTP_HEAD)
            write_all(fd, memset(buf, 'h', 1000), 1000);
    } else if (strncmp(r->url, "/slow", 5) == 0) {
        sleep_ms((int)query_num(r->url, "ms", 1000));
        respond_body(fd, 200, NULL, "slow", 4);
    } else if (strcmp(path, "/die") == 0) {
        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
        return false;
    } else if (strcmp(path, "/drop-second") == 0) {
        if (sc->served > 0)
            return false; /* as a server whose keep-alive ran out just then */
        respond_body(fd, 200, NULL, "first", 5);
    } else if (strncmp(r->url, "/big", 4) == 0) {
        long n = query_num(r->url, "n", 1 << 20);

        snprintf(buf, sizeof(buf), "HTTP/1.1 200 OK\r\nContent-Length: %ld\r\n\r\n", n);
        write_str(fd, buf);
        memset(buf, 'b', sizeof(buf));
        while (n > 0) {
            size_t k = n < (long)sizeof(buf) ? (size_t)n : sizeof(buf);

            write_all(fd, buf, k);
            atomic_fetch_add(&sc->srv->big_sent, (long long)k);
            n -= (long)k;
        }
    } else if (strcmp(path, "/sse") == 0) {
        write_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n");
        write_str(fd, "e\r\ndata: first\n\n\r\n");
        sleep_ms(400);
        write_str(fd, "f\r\ndata: second\n\n\r\n0\r\n\r\n");
    } else if (strcmp(path, "/ws") == 0) {
        ssize_t n;

        write_str(fd, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      "Connection: Upgrade\r\n\r\nhi");
        while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
            write_all(fd, buf, (size_t)n);
        return false;
    } else {
        respond_body(fd, 404, NULL, "no", 2);
    }
    return http_should_keep_alive(p) != 0;
}

static void *
conn_main(void *arg)
{
    struct sconn *sc = arg;
    http_parser p;
    struct sreq r;
    char buf[65536];
    size_t off = 0, len = 0;
    bool open = true;

    http_parser_init(&p, HTTP_REQUEST);
    memset(&r, 0, sizeof(r));
    r.fd = sc->fd;
    p.data = &r;
    while (open) {
        size_t n;

        if (off == len) {
            ssize_t got = recv(sc->fd, buf, sizeof(buf), 0);

            if (got <= 0)
                break;
            off = 0;
            len = (size_t)got;
        }
        n = http_parser_execute(&p, &s_settings, buf + off, len - off);
        off += n;
        if (HTTP_PARSER_ERRNO(&p) != HPE_OK && HTTP_PARSER_ERRNO(&p) != HPE_PAUSED)
            break;
        if (r.complete) {
            open = serve(sc, &r, &p);
            atomic_fetch_add(&sc->srv->requests, 1);
            sc->served++;
            free(r.body);
            memset(&r, 0, sizeof(r));
            r.fd = sc->fd;
            http_parser_pause(&p, 0);
        }
    }
    shutdown(sc->fd, SHUT_WR);
    free(r.body); /* a request cut in the middle */
    free(sc);
    return NULL;
}

static void *
accept_main(void *arg)
{
    struct srv *s = arg;

    for (;;) {
        int fd = accept(s->lfd, NULL, NULL);
        struct sconn *sc;
        int one = 1;

        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (atomic_load(&s->closing)) {
            close(fd);
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        sc = xcalloc(1, sizeof(*sc));
        sc->srv = s;
        sc->fd = fd;
        sc->id = atomic_fetch_add(&s->conns, 1) + 1;
        pthread_mutex_lock(&s->lock);
        /* Criterion's assertions are for the test's own thread only. */
        if (s->n >= SRV_MAX_CONNS)
            abort();
        s->fds[s->n] = fd;
        pthread_create(&s->threads[s->n], NULL, conn_main, sc);
        s->n++;
        pthread_mutex_unlock(&s->lock);
    }
    return NULL;
}

/* A listening socket on 127.0.0.1, any port; backlog as given. */
static int
listen_any(int backlog, int *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;

    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(fd, backlog), 0);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port = ntohs(a.sin_port);
    return fd;
}

static void
srv_start(struct srv *s)
{
    memset(s, 0, sizeof(*s));
    pthread_mutex_init(&s->lock, NULL);
    s->lfd = listen_any(128, &s->port);
    pthread_create(&s->accept_thread, NULL, accept_main, s);
}

static void
srv_stop(struct srv *s)
{
    atomic_store(&s->closing, 1);
    shutdown(s->lfd, SHUT_RDWR);
    pthread_join(s->accept_thread, NULL);
    close(s->lfd);
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n; i++)
        shutdown(s->fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->n; i++) {
        pthread_join(s->threads[i], NULL);
        close(s->fds[i]);
    }
    pthread_mutex_destroy(&s->lock);
}

/* ------------------------------------------------------------- the gateway */

static struct {
    struct srv up; /* services of env fx, and the API */
    int dead_port; /* nothing listens there: refused */
    int hole_fd;   /* a listener whose accept queue is full: connects hang */
    int hole_port;
    int hole_client;
    struct gateway *gw;
    int port;
    uv_loop_t loop;
    int done_calls;
} T;

static void
publish_routes(uint64_t version)
{
    struct gw_route_service_in fx[] = {
        {"web", "127.0.0.1", T.up.port, true, SVC_STATE_HEALTHY},
        {"api", "localhost", T.up.port, true, SVC_STATE_HEALTHY},
        {"down", "127.0.0.1", T.dead_port, true, SVC_STATE_HEALTHY},
        {"hole", "127.0.0.1", T.hole_port, true, SVC_STATE_HEALTHY},
        {"worker", "127.0.0.1", T.up.port, false, SVC_STATE_HEALTHY},
    };
    struct gw_route_service_in boot[] = {
        {"web", "127.0.0.1", T.up.port, true, SVC_STATE_STARTING},
    };
    struct gw_route_env_in envs[] = {
        {.name = "fx", .phase = ENV_PHASE_READY, .services = fx, .n_services = ARRAY_LEN(fx)},
        {.name = "boot",
         .phase = ENV_PHASE_STARTING,
         .reason = "starting web",
         .services = boot,
         .n_services = ARRAY_LEN(boot)},
    };

    gw_publish(T.gw, gw_routes_build(envs, ARRAY_LEN(envs), version));
}

static void
start_with(struct gw_config *cfg)
{
    struct eph_err err = {0};
    int dead;

    signal(SIGPIPE, SIG_IGN);
    srv_start(&T.up);
    dead = listen_any(1, &T.dead_port);
    close(dead);
    T.hole_fd = listen_any(0, &T.hole_port);
    {
        /* One connection fills the accept queue of a backlog-0 listener;
         * the kernel then drops further SYNs and connects hang. */
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.hole_port)};

        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        T.hole_client = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_eq(connect(T.hole_client, (struct sockaddr *)&a, sizeof(a)), 0);
    }
    cfg->listen_host = "127.0.0.1";
    cfg->listen_port = 0;
    if (cfg->workers == 0)
        cfg->workers = 1;
    cfg->host_pattern = "{service}.{env}.{domain}";
    cfg->domain = "localhost";
    cfg->control_host = "127.0.0.1";
    cfg->control_port = T.up.port;
    if (cfg->max_header_bytes == 0)
        cfg->max_header_bytes = 4096;
    if (cfg->header_timeout_ms == 0)
        cfg->header_timeout_ms = 1000;
    if (cfg->idle_timeout_ms == 0)
        cfg->idle_timeout_ms = 2000;
    if (cfg->connect_timeout_ms == 0)
        cfg->connect_timeout_ms = 300;
    if (cfg->first_byte_timeout_ms == 0)
        cfg->first_byte_timeout_ms = 2000;
    if (cfg->upstream_idle_ms == 0)
        cfg->upstream_idle_ms = 5000;
    cr_assert_eq(gw_start(cfg, &T.gw, &err), 0, "%s", err.msg);
    T.port = gw_port(T.gw);
    cr_assert_gt(T.port, 0);
    publish_routes(1);
    cr_assert_eq(uv_loop_init(&T.loop), 0);
}

static void
start(void)
{
    struct gw_config cfg = {0};

    start_with(&cfg);
}

static void
on_gw_done(void *arg)
{
    (*(int *)arg)++;
}

static void
stop_gateway(int64_t deadline_ms)
{
    gw_stop(T.gw, &T.loop, deadline_ms, on_gw_done, &T.done_calls);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    cr_assert_eq(T.done_calls, 1);
    cr_assert_eq(uv_loop_close(&T.loop), 0);
    T.gw = NULL;
}

static void
stop(void)
{
    if (T.gw)
        stop_gateway(1000);
    close(T.hole_client);
    close(T.hole_fd);
    srv_stop(&T.up);
}

/* ------------------------------------------------------------- the client */

struct resp {
    int status;
    int interim[4];
    int n_interim;
    char head[8192]; /* "name: value\n" lines of the final response */
    size_t head_len;
    int last;
    struct buf body;
    uint64_t body_total;
    bool complete;
    bool head_request;
};

struct client {
    int fd;
    http_parser p;
    char buf[65536];
    size_t off, len;
    struct resp *r;
};

static int
c_on_status(http_parser *p, const char *at, size_t len)
{
    return 0;
}

static int
c_on_field(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    struct resp *r = c->r;

    if (r->last == 2 && r->head_len + 1 < sizeof(r->head))
        r->head[r->head_len++] = '\n';
    r->last = 1;
    if (r->head_len + len + 1 < sizeof(r->head)) {
        memcpy(r->head + r->head_len, at, len);
        r->head_len += len;
    }
    r->head[r->head_len] = '\0';
    return 0;
}

static int
c_on_value(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    struct resp *r = c->r;

    if (r->last == 1 && r->head_len + 2 < sizeof(r->head)) {
        memcpy(r->head + r->head_len, ": ", 2);
        r->head_len += 2;
    }
    r->last = 2;
    if (r->head_len + len + 1 < sizeof(r->head)) {
        memcpy(r->head + r->head_len, at, len);
        r->head_len += len;
    }
    r->head[r->head_len] = '\0';
    return 0;
}

static int
c_on_headers_complete(http_parser *p)
{
    struct client *c = p->data;
    struct resp *r = c->r;

    if (r->last == 2 && r->head_len + 1 < sizeof(r->head)) {
        r->head[r->head_len++] = '\n';
        r->head[r->head_len] = '\0';
    }
    r->last = 0;
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
        if (r->n_interim < 4)
            r->interim[r->n_interim++] = p->status_code;
        r->head_len = 0;
        r->head[0] = '\0';
        return 0;
    }
    r->status = p->status_code;
    if (p->status_code == 101)
        return 2;
    return r->head_request ? 1 : 0;
}

static int
c_on_body(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;

    c->r->body_total += len;
    buf_append(&c->r->body, at, len);
    return 0;
}

static int
c_on_complete(http_parser *p)
{
    struct client *c = p->data;

    if (c->r->status == 0)
        return 0; /* an interim response */
    c->r->complete = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings c_settings = {
    .on_status = c_on_status,
    .on_header_field = c_on_field,
    .on_header_value = c_on_value,
    .on_headers_complete = c_on_headers_complete,
    .on_body = c_on_body,
    .on_message_complete = c_on_complete,
};

static void
client_open(struct client *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    struct timeval tv = {5, 0};

    memset(c, 0, sizeof(*c));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
}

static void
client_close(struct client *c)
{
    close(c->fd);
}

static void
resp_init(struct resp *r, bool head_request)
{
    memset(r, 0, sizeof(*r));
    buf_init(&r->body, 300 << 20);
    r->head_request = head_request;
}

static void
resp_release(struct resp *r)
{
    buf_release(&r->body);
}

/* Reads one response (after any interim ones); false if the connection
 * ended (or timed out) first. */
static bool
read_response(struct client *c, struct resp *r)
{
    c->r = r;
    http_parser_pause(&c->p, 0);
    for (;;) {
        size_t n;

        if (c->off == c->len) {
            ssize_t got = recv(c->fd, c->buf, sizeof(c->buf), 0);

            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                if (got == 0)
                    http_parser_execute(&c->p, &c_settings, NULL, 0);
                return r->complete;
            }
            c->off = 0;
            c->len = (size_t)got;
        }
        n = http_parser_execute(&c->p, &c_settings, c->buf + c->off, c->len - c->off);
        c->off += n;
        if (r->complete)
            return true;
        if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK)
            return false;
    }
}

/* True if the server closed the connection (EOF or reset) within 3 s. */
static bool
closed_by_server(struct client *c)
{
    char b[4096];
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

    if (c->off < c->len)
        return false;
    for (;;) {
        ssize_t n;

        if (poll(&pfd, 1, 3000) <= 0)
            return false;
        n = recv(c->fd, b, sizeof(b), 0);
        if (n <= 0)
            return true;
    }
}

static void
send_str(struct client *c, const char *s)
{
    write_all(c->fd, s, strlen(s));
}

/* One request on a fresh connection. */
static void
exchange(const char *request, struct resp *r)
{
    struct client c;

    client_open(&c);
    send_str(&c, request);
    cr_assert(read_response(&c, r), "no response to: %s", request);
    client_close(&c);
}

static bool
has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

static uint64_t
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------- routing */

Test(proxy, routes_a_service_host_to_its_upstream, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;

    start();
    resp_init(&r, false);
    exchange("GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(buf_cstr(&r.body), "hello");
    cr_expect(has_header(&r, "X-Up: 1"));
    resp_release(&r);
    /* An upstream named "localhost", and a port in the Host header. */
    resp_init(&r, false);
    exchange("GET /hello HTTP/1.1\r\nHost: API.fx.localhost:8080\r\n\r\n", &r);
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    stop();
}

Test(proxy, proxies_the_control_host_to_the_api, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;
    char req[256];

    start();
    resp_init(&r, false);
    exchange("GET /api/v1/envs HTTP/1.1\r\nHost: localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 200);
    cr_expect(strstr(buf_cstr(&r.body), "GET /api/v1/envs"), "%s", buf_cstr(&r.body));
    resp_release(&r);
    resp_init(&r, false);
    snprintf(req, sizeof(req), "GET /api/x HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", T.port);
    exchange(req, &r);
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    stop();
}

Test(proxy, answers_404_listing_environments_or_services, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;

    start();
    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: nothing.example.org\r\n\r\n", &r);
    cr_expect_eq(r.status, 404);
    cr_expect(has_header(&r, "Content-Type: application/json"));
    cr_expect(strstr(buf_cstr(&r.body), "\"environments\": [{\"name\": \"boot\""), "%s",
              buf_cstr(&r.body));
    resp_release(&r);

    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: nope.fx.localhost\r\nAccept: text/html\r\n\r\n", &r);
    cr_expect_eq(r.status, 404);
    cr_expect(has_header(&r, "Content-Type: text/html"));
    cr_expect(strstr(buf_cstr(&r.body), "http://web.fx.localhost:80/") ||
                  strstr(buf_cstr(&r.body), "http://web.fx.localhost/"),
              "%s", buf_cstr(&r.body));
    resp_release(&r);

    /* An unexposed service is absent; so is an unknown environment. */
    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: worker.fx.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 404);
    cr_expect(strstr(buf_cstr(&r.body), "\"environment\": \"fx\""));
    resp_release(&r);
    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: web.gone.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 404);
    cr_expect(strstr(buf_cstr(&r.body), "\"environments\""));
    resp_release(&r);
    stop();
}

Test(proxy, answers_503_with_retry_after_while_a_service_starts, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;

    start();
    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: web.boot.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 503);
    cr_expect(has_header(&r, "Retry-After: 2"));
    cr_expect(strstr(buf_cstr(&r.body), "\"phase\": \"starting\""), "%s", buf_cstr(&r.body));
    cr_expect(strstr(buf_cstr(&r.body), "\"state\": \"starting\""));
    resp_release(&r);
    stop();
}

Test(proxy, switches_to_a_newly_published_table, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;
    struct gw_route_service_in boot[] = {
        {"web", "127.0.0.1", 0, true, SVC_STATE_HEALTHY},
    };
    struct gw_route_env_in envs[] = {
        {.name = "boot", .phase = ENV_PHASE_READY, .services = boot, .n_services = 1}};

    start();
    boot[0].upstream_port = T.up.port;
    gw_publish(T.gw, gw_routes_build(envs, 1, 2));
    cr_expect_eq(gw_current_routes(T.gw)->version, 2);
    for (int i = 0; i < 100; i++) {
        resp_init(&r, false);
        exchange("GET /hello HTTP/1.1\r\nHost: web.boot.localhost\r\n\r\n", &r);
        if (r.status == 200) {
            resp_release(&r);
            break;
        }
        resp_release(&r);
        sleep_ms(5);
    }
    resp_init(&r, false);
    exchange("GET /hello HTTP/1.1\r\nHost: web.boot.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    resp_init(&r, false);
    exchange("GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 404, "fx is gone from the new table");
    resp_release(&r);
    stop();
}

/* ------------------------------------------------------------- keep-alive and pipelining */

Test(proxy, reuses_few_upstream_connections_for_many_requests, .timeout = TEST_TIMEOUT_S)
{
    struct client c[4];

    start();
    for (int k = 0; k < 4; k++)
        client_open(&c[k]);
    for (int i = 0; i < 200; i++) {
        struct resp r;

        resp_init(&r, false);
        send_str(&c[i % 4], "GET /conn HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
        cr_assert(read_response(&c[i % 4], &r), "request %d", i);
        cr_assert_eq(r.status, 200);
        resp_release(&r);
    }
    for (int k = 0; k < 4; k++)
        client_close(&c[k]);
    cr_expect_leq(atomic_load(&T.up.conns), 2, "upstream connections: %d",
                  atomic_load(&T.up.conns));
    cr_expect_eq(atomic_load(&T.up.requests), 200);
    stop();
}

Test(proxy, keeps_no_idle_upstream_connection_when_told_none, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.upstream_keepalive = -1};
    struct client c;

    start_with(&cfg);
    client_open(&c);
    for (int i = 0; i < 5; i++) {
        struct resp r;

        resp_init(&r, false);
        send_str(&c, "GET /conn HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
        cr_assert(read_response(&c, &r), "request %d", i);
        cr_assert_eq(r.status, 200);
        resp_release(&r);
    }
    client_close(&c);
    cr_expect_eq(atomic_load(&T.up.conns), 5, "upstream connections: %d",
                 atomic_load(&T.up.conns));
    stop();
}

Test(proxy, answers_pipelined_requests_in_order, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    const char *paths[] = {"/conn", "/hello", "/chunked", "/nope", "/hello"};

    start();
    client_open(&c);
    send_str(&c, "GET /conn HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n"
                 "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n"
                 "GET /chunked HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n"
                 "GET /x HTTP/1.1\r\nHost: zzz.fx.localhost\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 5\r\n\r\nhello");
    for (size_t i = 0; i < ARRAY_LEN(paths); i++) {
        struct resp r;

        resp_init(&r, false);
        cr_assert(read_response(&c, &r), "response %zu", i);
        switch (i) {
        case 0: cr_expect(strncmp(buf_cstr(&r.body), "conn=", 5) == 0); break;
        case 1: cr_expect_str_eq(buf_cstr(&r.body), "hello"); break;
        case 2: cr_expect_str_eq(buf_cstr(&r.body), "hello world"); break;
        case 3: cr_expect_eq(r.status, 404); break;
        case 4: cr_expect_str_eq(buf_cstr(&r.body), "hello"); break;
        }
        resp_release(&r);
    }
    client_close(&c);
    stop();
}

Test(proxy, closes_idle_keep_alive_connections, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.idle_timeout_ms = 200};
    struct client c;
    struct resp r;
    uint64_t t0;

    start_with(&cfg);
    client_open(&c);
    resp_init(&r, false);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    t0 = now_ms();
    cr_expect(closed_by_server(&c));
    cr_expect_geq(now_ms() - t0, 150);
    resp_release(&r);
    client_close(&c);
    stop();
}

/* ------------------------------------------------------------- bodies */

Test(proxy, streams_request_bodies_with_length_or_chunks, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;
    struct client c;

    start();
    resp_init(&r, false);
    exchange("POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 11\r\n\r\n"
             "hello world",
             &r);
    cr_expect_str_eq(buf_cstr(&r.body), "hello world");
    resp_release(&r);

    /* Chunks are decoded and written again by the gateway, never passed on. */
    client_open(&c);
    send_str(&c, "POST /headers HTTP/1.1\r\nHost: web.fx.localhost\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5;ext=x\r\nhello\r\n0\r\nX-T: 1\r\n\r\n");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect(strstr(buf_cstr(&r.body), "Transfer-Encoding: chunked"), "%s", buf_cstr(&r.body));
    resp_release(&r);
    send_str(&c, "POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n3\r\nabc\r\n");
    sleep_ms(50);
    send_str(&c, "4\r\ndefg\r\n0\r\n\r\n");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_str_eq(buf_cstr(&r.body), "abcdefg");
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, streams_large_uploads_and_downloads, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 24 << 20 };
    struct client c;
    struct resp r;
    char *chunk = xmalloc(1 << 16);
    char head[256];
    size_t sent = 0;

    memset(chunk, 'u', 1 << 16);
    start();
    client_open(&c);
    snprintf(head, sizeof(head),
             "POST /count HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: %d\r\n\r\n", N);
    send_str(&c, head);
    while (sent < N) {
        write_all(c.fd, chunk, 1 << 16);
        sent += 1 << 16;
    }
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(strtoull(buf_cstr(&r.body), NULL, 10), (unsigned long long)N);
    resp_release(&r);

    snprintf(head, sizeof(head), "GET /big?n=%d HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", N);
    send_str(&c, head);
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.body_total, (uint64_t)N);
    resp_release(&r);

    /* Chunked upload of the same size. */
    send_str(&c, "POST /count HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding: chunked\r\n"
                 "\r\n");
    for (sent = 0; sent < N; sent += 1 << 16) {
        send_str(&c, "10000\r\n");
        write_all(c.fd, chunk, 1 << 16);
        send_str(&c, "\r\n");
    }
    send_str(&c, "0\r\n\r\n");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(strtoull(buf_cstr(&r.body), NULL, 10), (unsigned long long)N);
    resp_release(&r);
    client_close(&c);
    free(chunk);
    stop();
}

Test(proxy, stops_reading_the_upstream_while_the_client_does_not_read, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 256 << 20 };
    struct client c;
    char head[128];
    long long sent;

    start();
    client_open(&c);
    snprintf(head, sizeof(head), "GET /big?n=%d HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", N);
    send_str(&c, head);
    sleep_ms(800);
    sent = atomic_load(&T.up.big_sent);
    /* What is in flight: socket buffers on both sides and our high-water
     * mark; the gateway holds no more than that. */
    cr_expect_lt(sent, 64 << 20, "the upstream wrote %lld bytes to a client reading none", sent);
    cr_expect_gt(sent, 0);
    client_close(&c);
    stop();
}

Test(proxy, rechunks_chunked_and_close_delimited_responses, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;

    start();
    resp_init(&r, false);
    exchange("GET /chunked HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_str_eq(buf_cstr(&r.body), "hello world");
    cr_expect(has_header(&r, "Transfer-Encoding: chunked"));
    cr_expect_not(has_header(&r, "X-Trailer"));
    resp_release(&r);

    resp_init(&r, false);
    exchange("GET /close HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_str_eq(buf_cstr(&r.body), "until the end");
    cr_expect(has_header(&r, "Transfer-Encoding: chunked"), "%s", r.head);
    cr_expect_not(has_header(&r, "Connection: close"), "the client keeps its connection");
    resp_release(&r);

    /* An HTTP/1.0 client gets the body delimited by the end of the connection. */
    resp_init(&r, false);
    exchange("GET /chunked HTTP/1.0\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_str_eq(buf_cstr(&r.body), "hello world");
    cr_expect_not(has_header(&r, "Transfer-Encoding"));
    cr_expect(has_header(&r, "Connection: close"));
    resp_release(&r);
    stop();
}

Test(proxy, sends_no_body_for_head_204_and_304, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;

    start();
    client_open(&c);
    resp_init(&r, true);
    send_str(&c, "HEAD /head HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect(has_header(&r, "Content-Length: 1000"));
    resp_release(&r);
    resp_init(&r, false);
    send_str(&c, "GET /304 HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 304);
    resp_release(&r);
    resp_init(&r, false);
    send_str(&c, "GET /204 HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 204);
    resp_release(&r);
    /* Still in step: the next response is the right one. */
    resp_init(&r, false);
    send_str(&c, "GET /head HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.body_total, 1000);
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, relays_100_continue_then_the_response, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;
    char b[256];
    ssize_t n;

    start();
    client_open(&c);
    send_str(&c, "POST /continue HTTP/1.1\r\nHost: web.fx.localhost\r\nExpect: 100-continue\r\n"
                 "Content-Length: 4\r\n\r\n");
    n = recv(c.fd, b, sizeof(b) - 1, 0);
    cr_assert_gt(n, 0);
    b[n] = '\0';
    cr_expect(strncmp(b, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0, "%s", b);
    send_str(&c, "body");
    resp_init(&r, false);
    if (n > 25) {
        memcpy(c.buf, b + 25, (size_t)n - 25);
        c.len = (size_t)n - 25;
    }
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(buf_cstr(&r.body), "body");
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, delivers_server_sent_events_as_they_are_sent, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    char b[4096] = "";
    size_t got = 0;
    uint64_t t0;

    start();
    client_open(&c);
    t0 = now_ms();
    send_str(&c, "GET /sse HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    while (strstr(b, "data: first") == NULL) {
        ssize_t n = recv(c.fd, b + got, sizeof(b) - 1 - got, 0);

        cr_assert_gt(n, 0);
        got += (size_t)n;
        b[got] = '\0';
    }
    cr_expect_lt(now_ms() - t0, 350, "the first event came before the second was sent");
    cr_expect_null(strstr(b, "second"));
    client_close(&c);
    stop();
}

/* ------------------------------------------------------------- upgrades */

Test(proxy, passes_websocket_upgrades_through_as_raw_streams, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;
    char b[64];
    size_t got = 0;

    start();
    client_open(&c);
    send_str(&c, "GET /ws HTTP/1.1\r\nHost: web.fx.localhost\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 101);
    cr_expect(has_header(&r, "Upgrade: websocket"));
    cr_expect(has_header(&r, "Connection: upgrade"));
    resp_release(&r);
    /* "hi" came right after the head; then an echo. */
    memcpy(b, c.buf + c.off, c.len - c.off);
    got = c.len - c.off;
    c.off = c.len;
    send_str(&c, "ping-1");
    while (got < 8) {
        ssize_t n = recv(c.fd, b + got, sizeof(b) - got, 0);

        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    cr_expect(memcmp(b, "hiping-1", 8) == 0);
    shutdown(c.fd, SHUT_WR);
    cr_expect(closed_by_server(&c));
    client_close(&c);
    cr_expect_eq(atomic_load(&T.up.conns), 1);
    stop();
}

/* ------------------------------------------------------------- headers */

Test(proxy, removes_hop_by_hop_headers_and_adds_forwarded_ones, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;
    const char *b;

    start();
    resp_init(&r, false);
    exchange("GET /headers HTTP/1.1\r\nHost: web.fx.localhost:8080\r\nConnection: X-Drop\r\n"
             "X-Drop: 1\r\nKeep-Alive: 1\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
             "X-Forwarded-For: 10.9.8.7\r\nX-Keep: yes\r\n\r\n",
             &r);
    b = buf_cstr(&r.body);
    cr_expect(strstr(b, "Host: web.fx.localhost:8080\n"), "%s", b);
    cr_expect(strstr(b, "X-Keep: yes\n"));
    cr_expect(strstr(b, "X-Forwarded-For: 10.9.8.7, 127.0.0.1\n"), "%s", b);
    cr_expect(strstr(b, "X-Forwarded-Proto: http\n"));
    cr_expect(strstr(b, "X-Forwarded-Host: web.fx.localhost:8080\n"));
    cr_expect(strstr(b, "Forwarded: for=127.0.0.1;host=\"web.fx.localhost:8080\";proto=http\n"));
    cr_expect_null(strstr(b, "X-Drop"));
    cr_expect_null(strcasestr(b, "keep-alive"));
    cr_expect_null(strstr(b, "TE:"));
    cr_expect_null(strstr(b, "Connection"));
    resp_release(&r);
    stop();
}

/* ------------------------------------------------------------- defenses */

static const struct {
    const char *request;
    int status;
} smuggling[] = {
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 4\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
     400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 4\r\nContent-Length: 5\r\n"
     "\r\nabcde",
     400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 4, 4\r\n\r\nabcd", 400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding: xchunked\r\n\r\n", 400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding: chunked, identity\r\n"
     "\r\n",
     400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding:  chunked\t\r\n\r\n", 400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
    {"POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
     "zz\r\nabc\r\n0\r\n\r\n",
     400},
};

Test(proxy, refuses_smuggling_attempts_and_closes, .timeout = TEST_TIMEOUT_S)
{
    start();
    for (size_t i = 0; i < ARRAY_LEN(smuggling); i++) {
        struct client c;
        struct resp r;

        client_open(&c);
        send_str(&c, smuggling[i].request);
        resp_init(&r, false);
        cr_assert(read_response(&c, &r), "case %zu", i);
        cr_expect_eq(r.status, smuggling[i].status, "case %zu", i);
        cr_expect(has_header(&r, "Connection: close"), "case %zu", i);
        cr_expect(closed_by_server(&c), "case %zu", i);
        resp_release(&r);
        client_close(&c);
    }
    cr_expect_eq(atomic_load(&T.up.requests), 0, "nothing reached the upstream");
    stop();
}

Test(proxy, refuses_oversized_heads_with_431, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;
    char pad[6000];

    start();
    memset(pad, 'a', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    client_open(&c);
    send_str(&c, "GET / HTTP/1.1\r\nHost: web.fx.localhost\r\nX-Pad: ");
    send_str(&c, pad);
    send_str(&c, "\r\n\r\n");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 431);
    cr_expect(closed_by_server(&c));
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, cuts_off_a_slowloris_client_after_the_header_timeout, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.header_timeout_ms = 300};
    struct client c;
    struct resp r;
    uint64_t t0 = now_ms();

    start_with(&cfg);
    client_open(&c);
    send_str(&c, "GET / HTTP/1.1\r\n");
    for (int i = 0; i < 3; i++) {
        sleep_ms(50);
        send_str(&c, "X-A: b\r\n");
    }
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 408);
    cr_expect_geq(now_ms() - t0, 280);
    cr_expect_lt(now_ms() - t0, 2000);
    cr_expect(closed_by_server(&c));
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, cuts_off_a_client_that_stalls_in_its_body, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.idle_timeout_ms = 300};
    struct client c;
    struct resp r;
    uint64_t t0 = now_ms();

    start_with(&cfg);
    client_open(&c);
    send_str(&c, "POST /count HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 100\r\n\r\n"
                 "only ten..");
    resp_init(&r, false);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 408);
    cr_expect_geq(now_ms() - t0, 280);
    cr_expect(closed_by_server(&c));
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, refuses_connections_beyond_the_cap, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.max_connections = 2};
    struct client a, b, c;
    struct resp r;

    start_with(&cfg);
    client_open(&a);
    client_open(&b);
    client_open(&c);
    resp_init(&r, false);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 503);
    cr_expect(closed_by_server(&c));
    resp_release(&r);
    client_close(&c);
    resp_init(&r, false);
    send_str(&a, "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&a, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    client_close(&a);
    client_close(&b);
    stop();
}

/* ------------------------------------------------------------- upstream failures */

Test(proxy, answers_502_when_the_upstream_refuses, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;
    struct buf m;

    start();
    client_open(&c);
    resp_init(&r, false);
    send_str(&c, "GET / HTTP/1.1\r\nHost: down.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 502);
    resp_release(&r);
    /* The connection stays usable. */
    resp_init(&r, false);
    send_str(&c, "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    client_close(&c);
    buf_init(&m, 1 << 20);
    gw_metrics(T.gw, &m);
    cr_expect(strstr(m.data, "eph_gateway_upstream_errors_total{kind=\"connect_refused\"} 1\n"),
              "%s", m.data);
    buf_release(&m);
    stop();
}

Test(proxy, answers_504_on_connect_and_first_byte_timeouts, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.connect_timeout_ms = 200, .first_byte_timeout_ms = 300};
    struct resp r;
    uint64_t t0;

    start_with(&cfg);
    resp_init(&r, false);
    t0 = now_ms();
    exchange("GET / HTTP/1.1\r\nHost: hole.fx.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 504);
    cr_expect_geq(now_ms() - t0, 180);
    resp_release(&r);
    resp_init(&r, false);
    t0 = now_ms();
    exchange("GET /slow?ms=1500 HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    cr_expect_eq(r.status, 504);
    cr_expect_geq(now_ms() - t0, 280);
    cr_expect_lt(now_ms() - t0, 1400);
    resp_release(&r);
    stop();
}

Test(proxy, cuts_the_client_when_the_upstream_dies_mid_body, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;

    start();
    client_open(&c);
    resp_init(&r, false);
    send_str(&c, "GET /die HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_expect_not(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_eq(r.body_total, 10);
    resp_release(&r);
    client_close(&c);
    stop();
}

Test(proxy, retries_a_stale_pooled_connection_once, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    struct resp r;

    start();
    client_open(&c);
    resp_init(&r, false);
    send_str(&c, "GET /drop-second HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_str_eq(buf_cstr(&r.body), "first");
    resp_release(&r);
    /* The pooled connection dies on its second request: a fresh one answers. */
    resp_init(&r, false);
    send_str(&c, "GET /drop-second HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(buf_cstr(&r.body), "first");
    resp_release(&r);
    cr_expect_eq(atomic_load(&T.up.conns), 2);
    /* A request with a body is not retried. */
    resp_init(&r, false);
    send_str(&c, "POST /drop-second HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 1\r\n"
                 "\r\nx");
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 502);
    resp_release(&r);
    client_close(&c);
    stop();
}

/* ------------------------------------------------------------- logs, metrics, stop */

Test(proxy, writes_an_access_log_line_per_request, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct resp r;
    char line[1024];
    int lines = 0;
    FILE *f = tmpfile();

    cr_assert_not_null(f);
    cfg.access_log = f;
    start_with(&cfg);
    resp_init(&r, false);
    exchange("GET /hello?token=secret HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
    resp_release(&r);
    resp_init(&r, false);
    exchange("GET /x HTTP/1.1\r\nHost: other.localhost.example\r\n\r\n", &r);
    resp_release(&r);
    stop_gateway(1000);
    rewind(f);
    while (fgets(line, sizeof(line), f)) {
        lines++;
        cr_expect(strncmp(line, "ts=", 3) == 0, "%s", line);
        if (lines == 1) {
            cr_expect(strstr(line, " env=fx service=web method=GET path=\"/hello\" status=200 "
                                   "bytes=5 duration_ms="),
                      "%s", line);
            cr_expect(strstr(line, " upstream_ms="));
            cr_expect_null(strstr(line, "secret"), "query strings are not logged");
        } else {
            cr_expect(strstr(line, " env=- service=- method=GET path=\"/x\" status=404 "), "%s",
                      line);
        }
    }
    cr_expect_eq(lines, 2);
    fclose(f);
    stop();
}

Test(proxy, counts_requests_latency_connections_and_routes, .timeout = TEST_TIMEOUT_S)
{
    struct resp r;
    struct buf m;

    start();
    for (int i = 0; i < 3; i++) {
        resp_init(&r, false);
        exchange("GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
        resp_release(&r);
    }
    resp_init(&r, false);
    exchange("GET / HTTP/1.1\r\nHost: web.boot.localhost\r\n\r\n", &r);
    resp_release(&r);
    sleep_ms(50); /* the last exchange is counted once its response is written */
    buf_init(&m, 1 << 20);
    gw_metrics(T.gw, &m);
    cr_expect(
        strstr(m.data, "eph_gateway_requests_total{env=\"fx\",service=\"web\",code=\"200\"} 3\n"),
        "%s", m.data);
    cr_expect(strstr(m.data,
                     "eph_gateway_requests_total{env=\"boot\",service=\"web\",code=\"503\"} 1\n"));
    cr_expect(strstr(m.data, "eph_gateway_request_duration_seconds_bucket{le=\"+Inf\"} 4\n"));
    cr_expect(strstr(m.data, "eph_gateway_request_duration_seconds_count 4\n"));
    cr_expect(strstr(m.data, "# TYPE eph_gateway_open_connections gauge\n"));
    cr_expect(strstr(m.data, "eph_gateway_routes 5\n"), "4 exposed in fx, 1 in boot");
    buf_release(&m);
    stop();
}

struct slow_call {
    pthread_t thread;
    struct resp r;
    bool ok;
};

static void *
slow_main(void *arg)
{
    struct slow_call *s = arg;
    struct client c;

    client_open(&c);
    send_str(&c, "GET /slow?ms=400 HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    s->ok = read_response(&c, &s->r);
    client_close(&c);
    return NULL;
}

Test(proxy, stops_gracefully_finishing_requests_in_flight, .timeout = TEST_TIMEOUT_S)
{
    struct slow_call s;
    struct client idle;
    struct sockaddr_in a = {.sin_family = AF_INET};
    int fd;

    start();
    client_open(&idle); /* an idle keep-alive connection is closed at once */
    resp_init(&s.r, false);
    pthread_create(&s.thread, NULL, slow_main, &s);
    sleep_ms(150);
    stop_gateway(3000);
    pthread_join(s.thread, NULL);
    cr_expect(s.ok);
    cr_expect_eq(s.r.status, 200);
    cr_expect_str_eq(buf_cstr(&s.r.body), "slow");
    cr_expect(has_header(&s.r, "Connection: close"));
    cr_expect(closed_by_server(&idle));
    client_close(&idle);
    resp_release(&s.r);
    /* Nothing listens any more. */
    a.sin_port = htons((uint16_t)T.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_expect_neq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    stop();
}

Test(proxy, stops_at_the_deadline_whatever_is_in_flight, .timeout = TEST_TIMEOUT_S)
{
    struct client c;
    uint64_t t0;

    start();
    client_open(&c);
    send_str(&c, "GET /slow?ms=3000 HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n");
    sleep_ms(100);
    t0 = now_ms();
    stop_gateway(200);
    cr_expect_lt(now_ms() - t0, 1500);
    cr_expect(closed_by_server(&c));
    client_close(&c);
    stop();
}

Test(proxy, runs_several_workers_on_one_port, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.workers = 3};

    start_with(&cfg);
    for (int i = 0; i < 60; i++) {
        struct resp r;

        resp_init(&r, false);
        exchange("GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n", &r);
        cr_assert_eq(r.status, 200);
        resp_release(&r);
    }
    stop();
}
