/*
 * tests/unit/gateway/test_http_server.c - the HTTP/1.1 server against a
 * plain blocking-socket client.
 *
 * The server's loop runs on the test's own thread; the client runs in a
 * second thread, records what it saw, and stops the server through an async
 * handle when it is done. Assertions run after both have finished, and every
 * test checks that the loop closes with no handle left.
 */
#include "gateway/http_server.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "util/xmalloc.h"

/* ------------------------------------------------------------- server side */

struct harness {
    uv_loop_t loop;
    struct http_server *srv;
    uv_async_t stop;
    int port;
    int done_calls; /* http_server_close's callback */
    int gone_calls; /* http_on_gone callbacks */
    int handled;    /* requests the handler saw */
    void (*client)(struct harness *h);
    bool stop_sent; /* the client stopped the server itself */
    /* what the client saw, checked on the test thread */
    char out[8][4096];
};

static struct harness H;

/* A timer that answers an exchange later (async responses and streams). */
struct later {
    uv_timer_t timer;
    struct http_exchange *x;
    int ticks;
};

static void
on_later_closed(uv_handle_t *h)
{
    free(container_of((uv_timer_t *)h, struct later, timer));
}

static void
on_async_answer(uv_timer_t *t)
{
    struct later *l = container_of(t, struct later, timer);

    http_respond(l->x, 200, "text/plain", "async", 5);
    uv_close((uv_handle_t *)t, on_later_closed);
}

static void
on_stream_tick(uv_timer_t *t)
{
    struct later *l = container_of(t, struct later, timer);
    char chunk[32];
    int n;

    l->ticks++;
    n = snprintf(chunk, sizeof(chunk), "chunk%d\n", l->ticks);
    http_stream_write(l->x, chunk, (size_t)n);
    if (l->ticks == 3) {
        http_stream_end(l->x);
        uv_close((uv_handle_t *)t, on_later_closed);
    }
}

static void
on_client_gone(struct http_exchange *x, void *arg)
{
    struct harness *h = arg;

    h->gone_calls++;
    if (http_client_gone(x))
        cr_expect_eq(http_stream_write(x, "x", 1), EPH_ECONFLICT);
    http_stream_end(x);
}

/* Registers the gone callback only now, as a handler does that first
 * finishes work on another thread (a log follow). */
static void
on_late_register(uv_timer_t *t)
{
    struct later *l = container_of(t, struct later, timer);

    http_on_gone(l->x, on_client_gone, &H);
    uv_close((uv_handle_t *)t, on_later_closed);
}

static void
handler(struct http_exchange *x, void *arg)
{
    struct harness *h = arg;
    const char *path = http_path(x);

    h->handled++;
    if (strncmp(path, "/echo", 5) == 0) {
        char *q = http_query_param(x, "q");
        const char *hdr = http_header(x, "x-test");
        size_t len = 0;
        const char *body = http_body(x, &len);
        char *text = xasprintf("method=%s path=%s query=%s q=%s hdr=%s body=%.*s", http_method(x),
                               path, http_query(x), q ? q : "-", hdr ? hdr : "-", (int)len, body);

        http_add_header(x, "X-Echo", "yes");
        http_respond(x, 200, "text/plain", text, strlen(text));
        free(text);
        free(q);
    } else if (strcmp(path, "/close") == 0) {
        http_add_header(x, "Connection", "close");
        http_respond(x, 200, "text/plain", "bye", 3);
    } else if (strcmp(path, "/auth") == 0) {
        const char *auth = http_header(x, "authorization");

        http_respond(x, 200, "text/plain", auth ? auth : "-", auth ? strlen(auth) : 1);
    } else if (strcmp(path, "/async") == 0 || strcmp(path, "/slow") == 0 ||
               strcmp(path, "/stream") == 0 || strcmp(path, "/late-gone") == 0) {
        struct later *l = xcalloc(1, sizeof(*l));

        l->x = x;
        uv_timer_init(&h->loop, &l->timer);
        if (strcmp(path, "/stream") == 0) {
            http_stream_start(x, 200, "text/plain");
            uv_timer_start(&l->timer, on_stream_tick, 20, 20);
        } else if (strcmp(path, "/late-gone") == 0) {
            http_stream_start(x, 200, "text/plain");
            http_stream_write(x, "started\n", 8);
            uv_timer_start(&l->timer, on_late_register, 200, 0);
        } else {
            uv_timer_start(&l->timer, on_async_answer, strcmp(path, "/slow") == 0 ? 100 : 50, 0);
        }
    } else if (strcmp(path, "/hang") == 0) {
        http_stream_start(x, 200, "text/plain");
        http_stream_write(x, "started\n", 8);
        http_on_gone(x, on_client_gone, h);
    } else {
        http_respond(x, 404, "text/plain", "nope", 4);
    }
}

static void
on_server_done(void *arg)
{
    struct harness *h = arg;

    h->done_calls++;
}

static void
on_stop(uv_async_t *a)
{
    struct harness *h = container_of(a, struct harness, stop);

    uv_close((uv_handle_t *)a, NULL);
    http_server_close(h->srv, on_server_done, h);
}

static void *
client_main(void *arg)
{
    struct harness *h = arg;

    h->client(h);
    if (!h->stop_sent)
        uv_async_send(&h->stop);
    return NULL;
}

/* Runs the server until `client` is done, then checks the loop closes
 * cleanly. Non-zero fields of `over` replace the defaults below. */
static void
run_with(void (*client)(struct harness *h), const struct http_server_config *over)
{
    struct http_server_config cfg = {
        .host = "127.0.0.1",
        .port = 0,
        .max_header_bytes = over->max_header_bytes ? over->max_header_bytes : 8192,
        .max_body_bytes = over->max_body_bytes ? over->max_body_bytes : 65536,
        .header_timeout_ms = over->header_timeout_ms ? over->header_timeout_ms : 5000,
        .idle_timeout_ms = over->idle_timeout_ms ? over->idle_timeout_ms : 5000,
        .body_timeout_ms = over->body_timeout_ms,
        .max_connections = over->max_connections,
        .handler = handler,
        .handler_arg = &H,
    };
    struct eph_err err = {0};
    pthread_t t;

    signal(SIGPIPE, SIG_IGN); /* as the daemon does: writes to a gone client fail */
    memset(&H, 0, sizeof(H));
    H.client = client;
    cr_assert_eq(uv_loop_init(&H.loop), 0);
    cfg.loop = &H.loop;
    cr_assert_eq(http_server_start(&cfg, &H.srv, &err), 0, "%s", err.msg);
    H.port = http_server_port(H.srv);
    cr_assert_gt(H.port, 0);
    uv_async_init(&H.loop, &H.stop, on_stop);
    cr_assert_eq(pthread_create(&t, NULL, client_main, &H), 0);
    uv_run(&H.loop, UV_RUN_DEFAULT);
    pthread_join(t, NULL);
    cr_expect_eq(H.done_calls, 1);
    cr_expect_eq(uv_loop_close(&H.loop), 0);
}

static void
run(void (*client)(struct harness *h), size_t max_header_bytes, size_t max_body_bytes,
    int64_t header_timeout_ms)
{
    struct http_server_config over = {
        .max_header_bytes = max_header_bytes,
        .max_body_bytes = max_body_bytes,
        .header_timeout_ms = header_timeout_ms,
    };

    run_with(client, &over);
}

/* ------------------------------------------------------------- client side */

struct client {
    int fd;
    http_parser p;
    char rest[16384]; /* bytes read beyond the last response */
    size_t rest_len;
    /* the response being read */
    int status;
    char headers[4096]; /* "name: value\n" lines, names lower-cased */
    char body[2048];
    size_t body_len;
    bool done;
    bool in_value;
};

static int
c_on_header_field(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    size_t n = strlen(c->headers);

    if (c->in_value)
        n += (size_t)snprintf(c->headers + n, sizeof(c->headers) - n, "\n");
    c->in_value = false;
    for (size_t i = 0; i < len && n + 1 < sizeof(c->headers); i++)
        c->headers[n++] = (char)(at[i] >= 'A' && at[i] <= 'Z' ? at[i] + 32 : at[i]);
    c->headers[n] = '\0';
    return 0;
}

static int
c_on_header_value(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;
    size_t n = strlen(c->headers);

    if (!c->in_value)
        n += (size_t)snprintf(c->headers + n, sizeof(c->headers) - n, ": ");
    c->in_value = true;
    snprintf(c->headers + n, sizeof(c->headers) - n, "%.*s", (int)len, at);
    return 0;
}

static int
c_on_body(http_parser *p, const char *at, size_t len)
{
    struct client *c = p->data;

    if (c->body_len + len < sizeof(c->body)) {
        memcpy(c->body + c->body_len, at, len);
        c->body_len += len;
        c->body[c->body_len] = '\0';
    }
    return 0;
}

static int
c_on_complete(http_parser *p)
{
    struct client *c = p->data;

    c->done = true;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings client_settings = {
    .on_header_field = c_on_header_field,
    .on_header_value = c_on_header_value,
    .on_body = c_on_body,
    .on_message_complete = c_on_complete,
};

static struct client *
c_connect(int port)
{
    struct client *c = xcalloc(1, sizeof(*c));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct timeval tv = {.tv_sec = 5};

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(c->fd);
        c->fd = -1;
    }
    http_parser_init(&c->p, HTTP_RESPONSE);
    c->p.data = c;
    return c;
}

static void
c_send(struct client *c, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);

        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static void
c_sends(struct client *c, const char *s)
{
    c_send(c, s, strlen(s));
}

/* Reads one response; returns its status, or -1 (EOF or timeout first). */
static int
c_read(struct client *c)
{
    c->status = 0;
    c->headers[0] = '\0';
    c->body[0] = '\0';
    c->body_len = 0;
    c->done = false;
    c->in_value = false;
    http_parser_pause(&c->p, 0);
    for (;;) {
        if (c->rest_len > 0) {
            size_t n = http_parser_execute(&c->p, &client_settings, c->rest, c->rest_len);

            memmove(c->rest, c->rest + n, c->rest_len - n);
            c->rest_len -= n;
            if (c->done) {
                c->status = (int)c->p.status_code;
                return c->status;
            }
            if (HTTP_PARSER_ERRNO(&c->p) != HPE_OK)
                return -1;
        }
        ssize_t got = recv(c->fd, c->rest + c->rest_len, sizeof(c->rest) - c->rest_len, 0);
        if (got <= 0) {
            /* A body that ends with the connection (HTTP/1.0 streams). */
            http_parser_execute(&c->p, &client_settings, NULL, 0);
            if (c->done) {
                c->status = (int)c->p.status_code;
                return c->status;
            }
            return -1;
        }
        c->rest_len += (size_t)got;
    }
}

/* True once the server has closed the connection (EOF within the timeout). */
static bool
c_sees_eof(struct client *c)
{
    char b[256];
    ssize_t n;

    if (c->rest_len > 0)
        return false;
    do {
        n = recv(c->fd, b, sizeof(b), 0);
    } while (n > 0);
    return n == 0;
}

static void
c_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static bool
has_header(const struct client *c, const char *line)
{
    return strstr(c->headers, line) != NULL;
}

/* ------------------------------------------------------------- tests */

/* What a client function saw, read in order (arguments are evaluated in no
 * particular order, so reads never go inside one snprintf). Client thread only. */
static int st;
static int v[4];

static void
client_simple_get(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    v[0] = has_header(c, "content-length: ");
    v[1] = has_header(c, "x-echo: yes");
    snprintf(h->out[1], sizeof(h->out[1]), "%d%d", v[0], v[1]);
    c_close(c);
}

Test(http_server, answers_a_simple_get, .timeout = 20)
{
    run(client_simple_get, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|method=GET path=/echo query= q=- hdr=- body=");
    cr_expect_str_eq(H.out[1], "11");
}

static void
client_query(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo/a%20b%2Fc?q=x+y%26z&r=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_sends(c, "GET /echo/%zz HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d", st);
    c_close(c);
}

Test(http_server, decodes_the_path_and_query_parameters, .timeout = 20)
{
    run(client_query, 0, 0, 0);
    cr_expect_str_eq(H.out[0],
                     "200|method=GET path=/echo/a b/c query=q=x+y%26z&r=1 q=x y&z hdr=- body=");
    cr_expect_str_eq(H.out[1], "400", "a bad escape is a bad request");
}

static void
client_headers(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\nX-TEST:   Hello there  \r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_close(c);
}

Test(http_server, finds_headers_by_case_insensitive_name, .timeout = 20)
{
    run(client_headers, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|method=GET path=/echo query= q=- hdr=Hello there body=");
}

static void
client_post(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello");
    usleep(50 * 1000);
    c_sends(c, " world");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%s", st, c->body);
    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "2\r\nok\r\n0\r\nX-Trailer: t\r\nX-Empty:\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d|%s", st, c->body);
    c_close(c);
}

Test(http_server, reads_content_length_and_chunked_bodies, .timeout = 20)
{
    run(client_post, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|method=POST path=/echo query= q=- hdr=- body=hello world");
    cr_expect_str_eq(H.out[1], "200|method=POST path=/echo query= q=- hdr=- body=hello world");
    cr_expect_str_eq(H.out[2], "200|method=POST path=/echo query= q=- hdr=- body=ok", "trailers");
}

static void
client_keep_alive(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo?q=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_sends(c, "GET /echo?q=2 HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%s", st, c->body);
    /* Pipelined: the async one is answered before the one sent after it. */
    c_sends(c, "GET /async HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?q=3 HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d|%s", st, c->body);
    st = c_read(c);
    snprintf(h->out[3], sizeof(h->out[3]), "%d|%s", st, c->body);
    c_close(c);
}

Test(http_server, keeps_a_connection_alive_and_answers_in_order, .timeout = 20)
{
    run(client_keep_alive, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|method=GET path=/echo query=q=1 q=1 hdr=- body=");
    cr_expect_str_eq(H.out[1], "200|method=GET path=/echo query=q=2 q=2 hdr=- body=");
    cr_expect_str_eq(H.out[2], "200|async");
    cr_expect_str_eq(H.out[3], "200|method=GET path=/echo query=q=3 q=3 hdr=- body=");
}

static void
client_too_large(struct harness *h)
{
    struct client *c = c_connect(h->port);
    char big[3000];

    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d|%d", st, v[0], v[1]);
    c_close(c);

    memset(big, 'a', sizeof(big));
    c = c_connect(h->port);
    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (int i = 0; i < 3; i++) {
        c_sends(c, "bb8\r\n");
        c_send(c, big, sizeof(big));
        c_sends(c, "\r\n");
    }
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d|%s", st, v[0], c->body);
    c_close(c);
}

Test(http_server, refuses_bodies_over_the_ceiling_with_413, .timeout = 20)
{
    run(client_too_large, 0, 4096, 0);
    cr_expect_str_eq(H.out[0], "413|1|1");
    cr_expect_str_eq(H.out[1], "413|1|{\"error\": {\"code\": \"too_large\", "
                               "\"message\": \"request body too large\"}}\n");
    cr_expect_eq(H.handled, 0);
}

static void
client_head_too_large(struct harness *h)
{
    struct client *c = c_connect(h->port);
    char line[2100];

    memset(line, 'v', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ");
    c_sends(c, line);
    c_sends(c, "\r\n\r\n");
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d", st, v[0]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "GET /echo HTTP/1.1\r\n");
    for (int i = 0; i < 150; i++)
        c_sends(c, "A: b\r\n");
    c_sends(c, "\r\n");
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d", st);
    c_close(c);
}

Test(http_server, refuses_heads_over_the_ceiling_with_431, .timeout = 20)
{
    run(client_head_too_large, 1024, 0, 0);
    cr_expect_str_eq(H.out[0], "431|1");
    cr_expect_str_eq(H.out[1], "431", "too many header lines");
    cr_expect_eq(H.handled, 0);
}

static void
client_bad(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d", st, v[0]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
               "Content-Length: 5\r\n\r\nhello");
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d", st, v[0]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "\x01\x02 garbage \xff\r\n\r\n");
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d|%d|%s", st, v[0], c->body);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab");
    st = c_read(c);
    snprintf(h->out[3], sizeof(h->out[3]), "%d", st);
    c_close(c);
}

Test(http_server, refuses_bad_requests_with_400_and_closes, .timeout = 20)
{
    run(client_bad, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "400|1", "content-length and chunked");
    cr_expect_str_eq(H.out[1], "400|1", "content-length and another transfer-encoding");
    cr_expect_eq(strncmp(H.out[2], "400|1|{\"error\": {\"code\": \"invalid\"", 33), 0, "%s",
                 H.out[2]);
    cr_expect_str_eq(H.out[3], "400", "two content-lengths");
    cr_expect_eq(H.handled, 0);
}

static void
client_async_and_stream(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /async HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_sends(c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "transfer-encoding: chunked");
    v[1] = has_header(c, "content-length");
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d|%d|%s", st, v[0], v[1], c->body);
    /* The connection is still usable after a stream. */
    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d", st);
    c_close(c);

    /* An HTTP/1.0 client gets the stream unchunked, ended by the close. */
    c = c_connect(h->port);
    c_sends(c, "GET /stream HTTP/1.0\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "transfer-encoding");
    v[1] = has_header(c, "connection: close");
    snprintf(h->out[3], sizeof(h->out[3]), "%d|%d|%d|%s", st, v[0], v[1], c->body);
    c_close(c);
}

Test(http_server, answers_later_and_streams_chunks, .timeout = 20)
{
    run(client_async_and_stream, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|async");
    cr_expect_str_eq(H.out[1], "200|1|0|chunk1\nchunk2\nchunk3\n");
    cr_expect_str_eq(H.out[2], "200");
    cr_expect_str_eq(H.out[3], "200|0|1|chunk1\nchunk2\nchunk3\n");
}

static void
client_gone(struct harness *h)
{
    struct client *c = c_connect(h->port);
    char b[64];

    c_sends(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    recv(c->fd, b, sizeof(b), 0); /* the stream has started */
    c_close(c);
    usleep(200 * 1000);
}

Test(http_server, tells_the_handler_when_the_client_has_gone, .timeout = 20)
{
    run(client_gone, 0, 0, 0);
    cr_expect_eq(H.gone_calls, 1);
}

static void
client_close_semantics(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d|%d", st, v[0], v[1]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "GET /echo HTTP/1.0\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d|%d", st, v[0], v[1]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "GET /close HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d|%d|%d", st, v[0], v[1]);
    c_close(c);

    c = c_connect(h->port);
    c_sends(c, "HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    {
        char b[1024];
        ssize_t n = recv(c->fd, b, sizeof(b) - 1, 0);
        char *end;

        b[n > 0 ? n : 0] = '\0';
        end = strstr(b, "\r\n\r\n");
        snprintf(h->out[3], sizeof(h->out[3]), "%d|%d", strncmp(b, "HTTP/1.1 200 OK\r\n", 17),
                 end != NULL && end + 4 == b + n);
    }
    c_close(c);
}

Test(http_server, honours_connection_close_and_http_1_0, .timeout = 20)
{
    run(client_close_semantics, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|1|1");
    cr_expect_str_eq(H.out[1], "200|1|1");
    cr_expect_str_eq(H.out[2], "200|1|1", "the handler asked for the close");
    cr_expect_str_eq(H.out[3], "0|1", "a HEAD answer ends with its head");
}

static void
client_slow_head(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n");
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d", st, v[0]);
    c_close(c);

    /* Nothing at all is a timeout too. */
    c = c_connect(h->port);
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d", st);
    c_close(c);
}

Test(http_server, times_out_a_slow_request_head_with_408, .timeout = 20)
{
    run(client_slow_head, 0, 0, 200);
    cr_expect_str_eq(H.out[0], "408|1");
    cr_expect_str_eq(H.out[1], "408");
}

static void
client_idle_at_close(struct harness *h)
{
    struct client *c = c_connect(h->port);
    struct client *d = c_connect(h->port);

    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d", st);
    c_sends(d, "GET /echo HTTP/1.1\r\n"); /* half a request */
    usleep(50 * 1000);
    h->stop_sent = true;
    uv_async_send(&h->stop); /* the server closes with both open */
    v[0] = c_sees_eof(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d", v[0], c_sees_eof(d));
    c_close(c);
    c_close(d);
}

Test(http_server, closes_idle_connections_when_closed, .timeout = 20)
{
    run(client_idle_at_close, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200");
    cr_expect_str_eq(H.out[1], "1|1");
}

static void
client_stream_at_close(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /hang HTTP/1.1\r\nHost: x\r\n\r\n");
    usleep(100 * 1000);
    h->stop_sent = true;
    uv_async_send(&h->stop); /* the stream has no end of its own */
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d|%s", st, v[0], c->body);
    c_close(c);
}

Test(http_server, ends_streams_cleanly_when_closed, .timeout = 20)
{
    run(client_stream_at_close, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|1|started\n");
    cr_expect_eq(H.gone_calls, 1, "the handler heard of the close");
}

static void
client_late_gone_at_close(struct harness *h)
{
    struct client *c = c_connect(h->port);
    char b[256];

    c_sends(c, "GET /late-gone HTTP/1.1\r\nHost: x\r\n\r\n");
    /* The stream has started: the handler ran, with no gone callback yet. */
    recv(c->fd, b, sizeof(b), MSG_PEEK);
    h->stop_sent = true;
    uv_async_send(&h->stop); /* closes before the handler registers (200 ms) */
    st = c_read(c);          /* still connected: only the server can end this */
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d|%s", st, v[0], c->body);
    c_close(c);
}

Test(http_server, tells_a_handler_that_registers_late_of_the_close, .timeout = 20)
{
    run(client_late_gone_at_close, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|1|started\n");
    cr_expect_eq(H.gone_calls, 1, "the gone callback ran though registered after the close");
}

static void
client_half_close(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n");
    shutdown(c->fd, SHUT_WR); /* all it will send; it still reads */
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d|%d|%s", st, v[0], v[1], c->body);
    c_close(c);
}

Test(http_server, answers_a_client_that_half_closed_after_its_request, .timeout = 20)
{
    run(client_half_close, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|1|1|async");
    cr_expect_eq(H.handled, 1);
}

static void
client_trailer(struct harness *h)
{
    struct client *c = c_connect(h->port);

    c_sends(c, "POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               "2\r\nok\r\n0\r\nAuthorization: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%s", st, c->body);
    c_sends(c, "GET /auth HTTP/1.1\r\nHost: x\r\nAuthorization: real\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%s", st, c->body);
    c_close(c);
}

Test(http_server, never_takes_trailers_for_headers, .timeout = 20)
{
    run(client_trailer, 0, 0, 0);
    cr_expect_str_eq(H.out[0], "200|-", "a trailer cannot add Authorization");
    cr_expect_str_eq(H.out[1], "200|real");
}

static void
client_over_the_limit(struct harness *h)
{
    struct client *a = c_connect(h->port);
    struct client *b = c_connect(h->port);
    struct client *c;

    /* Two kept-alive connections: the limit is reached. */
    c_sends(a, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(a);
    v[0] = st;
    c_sends(b, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(b);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d", v[0], st);

    c = c_connect(h->port);
    st = c_read(c);
    v[0] = has_header(c, "connection: close");
    v[1] = c_sees_eof(c);
    snprintf(h->out[1], sizeof(h->out[1]), "%d|%d|%d|%s", st, v[0], v[1], c->body);
    c_close(c);

    /* One leaves: there is room again. */
    c_close(a);
    usleep(100 * 1000);
    c = c_connect(h->port);
    c_sends(c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
    st = c_read(c);
    snprintf(h->out[2], sizeof(h->out[2]), "%d", st);
    c_close(c);
    c_close(b);
}

Test(http_server, refuses_connections_over_the_limit_with_503, .timeout = 20)
{
    struct http_server_config over = {.max_connections = 2, .header_timeout_ms = 1000};

    run_with(client_over_the_limit, &over);
    cr_expect_str_eq(H.out[0], "200|200");
    cr_expect_str_eq(H.out[1], "503|1|1|{\"error\": {\"code\": \"unavailable\", "
                               "\"message\": \"too many connections\"}}\n");
    cr_expect_str_eq(H.out[2], "200");
}

static void
client_trickle_body(struct harness *h)
{
    struct client *c = c_connect(h->port);
    char rest[100];

    /* One byte every 50 ms keeps each wait short, never the whole. */
    c_sends(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n");
    for (int i = 0; i < 12; i++) {
        c_sends(c, "a");
        usleep(50 * 1000);
    }
    memset(rest, 'a', sizeof(rest));
    c_send(c, rest, sizeof(rest) - 12);
    st = c_read(c);
    v[0] = c_sees_eof(c);
    snprintf(h->out[0], sizeof(h->out[0]), "%d|%d", st, v[0]);
    c_close(c);
}

Test(http_server, times_out_a_trickled_body_with_408, .timeout = 20)
{
    struct http_server_config over = {.body_timeout_ms = 300, .idle_timeout_ms = 5000};

    run_with(client_trickle_body, &over);
    cr_expect_str_eq(H.out[0], "408|1");
    cr_expect_eq(H.handled, 0);
}
