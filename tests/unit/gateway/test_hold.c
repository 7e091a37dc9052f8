/*
 * tests/unit/gateway/test_hold.c - requests held for sleeping environments,
 * and the activity the gateway reports, end to end inside one process:
 * gw_start() on 127.0.0.1:0, an upstream server in threads with blocking
 * sockets, and route tables published by the test as the control loop
 * would (asleep and wakeable, waking, awake, failed, gone, asleep for good).
 *
 * Waits are polls with deadlines on what the gateway exposes: its
 * eph_gateway_held_requests gauge, gw_activity(), and the responses.
 * Every test stops the gateway through gw_stop() and checks that the loop
 * closes with no handle left; LeakSanitizer checks nothing held leaks.
 */
#include "gateway/gateway.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
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

#include "util/buf.h"
#include "util/xmalloc.h"

/* One timeout for every test (see test_proxy.c: BoxFort and parallel runs). */
#define TEST_TIMEOUT_S 60
/* Generous: the machine is shared and the build has sanitizers. */
#define WAIT_MS 20000
#define FX_ID 41

/* ------------------------------------------------------------- clocks */

static int64_t
mono_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
pause_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------- the upstream */

#define UP_MAX_CONNS 1024

static struct {
    int lfd, port;
    pthread_t accept_thread;
    atomic_int closing;
    atomic_int requests;
    pthread_mutex_t lock;
    int fds[UP_MAX_CONNS];
    pthread_t threads[UP_MAX_CONNS];
    int n;
} U;

static void
send_all(int fd, const char *p, size_t len)
{
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

/* Serves one connection: GET /hello -> "hello", POST /echo -> the body,
 * GET /ws -> 101 then an echo of raw bytes. Keep-alive. */
static void *
up_conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    static const size_t cap = 128 * 1024;
    char *buf = xmalloc(cap);
    size_t len = 0;

    for (;;) {
        char *end = memmem(buf, len, "\r\n\r\n", 4);
        size_t head_len, body_len = 0;
        const char *cl;
        char out[256];

        if (end == NULL) {
            ssize_t n = len < cap ? recv(fd, buf + len, cap - len, 0) : 0;

            if (n <= 0)
                break;
            len += (size_t)n;
            continue;
        }
        head_len = (size_t)(end + 4 - buf);
        buf[head_len - 1] = '\0'; /* the last LF: the head is a string now */
        cl = strcasestr(buf, "\r\ncontent-length:");
        if (cl)
            body_len = strtoul(cl + 17, NULL, 10);
        while (len < head_len + body_len) {
            ssize_t n = len < cap ? recv(fd, buf + len, cap - len, 0) : 0;

            if (n <= 0)
                goto out;
            len += (size_t)n;
        }
        atomic_fetch_add(&U.requests, 1);
        if (strncmp(buf, "GET /ws ", 8) == 0) {
            ssize_t n;

            static const char switched[] = "HTTP/1.1 101 Switching Protocols\r\n"
                                           "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

            send_all(fd, switched, strlen(switched));
            while ((n = recv(fd, buf, cap, 0)) > 0)
                send_all(fd, buf, (size_t)n);
            break;
        }
        if (strncmp(buf, "POST /echo ", 11) == 0) {
            snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body_len);
            send_all(fd, out, strlen(out));
            send_all(fd, buf + head_len, body_len);
        } else {
            static const char hello[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

            send_all(fd, hello, strlen(hello));
        }
        memmove(buf, buf + head_len + body_len, len - head_len - body_len);
        len -= head_len + body_len;
    }
out:
    shutdown(fd, SHUT_WR);
    free(buf);
    return NULL;
}

static void *
up_accept_main(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(U.lfd, NULL, NULL);
        int one = 1;

        if (fd < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (atomic_load(&U.closing)) {
            close(fd);
            break;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        pthread_mutex_lock(&U.lock);
        if (U.n >= UP_MAX_CONNS)
            abort(); /* Criterion's assertions are for the test's thread only */
        U.fds[U.n] = fd;
        pthread_create(&U.threads[U.n], NULL, up_conn_main, (void *)(intptr_t)fd);
        U.n++;
        pthread_mutex_unlock(&U.lock);
    }
    return NULL;
}

static void
up_start(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    int one = 1;

    memset(&U, 0, sizeof(U));
    pthread_mutex_init(&U.lock, NULL);
    U.lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(U.lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(U.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(U.lfd, 512), 0);
    getsockname(U.lfd, (struct sockaddr *)&a, &alen);
    U.port = ntohs(a.sin_port);
    pthread_create(&U.accept_thread, NULL, up_accept_main, NULL);
}

static void
up_stop(void)
{
    atomic_store(&U.closing, 1);
    shutdown(U.lfd, SHUT_RDWR);
    pthread_join(U.accept_thread, NULL);
    close(U.lfd);
    pthread_mutex_lock(&U.lock);
    for (int i = 0; i < U.n; i++)
        shutdown(U.fds[i], SHUT_RDWR);
    pthread_mutex_unlock(&U.lock);
    for (int i = 0; i < U.n; i++) {
        pthread_join(U.threads[i], NULL);
        close(U.fds[i]);
    }
    pthread_mutex_destroy(&U.lock);
}

/* ------------------------------------------------------------- the gateway */

static struct {
    struct gateway *gw;
    int port;
    uv_loop_t loop;
    int done_calls;
    uint64_t version;
    atomic_int wake_calls;
    atomic_llong wake_env;
    char wake_service[32]; /* written by workers under wake_lock */
    pthread_mutex_t wake_lock;
} T;

static void
on_wake(void *arg, int64_t env_id, const char *service)
{
    (void)arg;
    pthread_mutex_lock(&T.wake_lock);
    snprintf(T.wake_service, sizeof(T.wake_service), "%s", service);
    pthread_mutex_unlock(&T.wake_lock);
    atomic_store(&T.wake_env, (long long)env_id);
    atomic_fetch_add(&T.wake_calls, 1);
}

/* What the control loop would say about environment fx (id FX_ID). */
enum fx_state {
    FX_ASLEEP, /* asleep, a request wakes it: held */
    FX_WAKING, /* starting again after a wake: held */
    FX_AWAKE,  /* ready: proxied */
    FX_FAILED, /* failed while waking */
    FX_GONE,   /* deleted: not in the table */
    FX_NIGHT,  /* asleep outside office hours: 503 at once */
};

static void
publish(enum fx_state st)
{
    struct gw_route_service_in web[] = {
        {"web", "127.0.0.1", U.port, true, SVC_STATE_STOPPED},
    };
    struct gw_route_service_in other_web[] = {
        {"web", "127.0.0.1", U.port, true, SVC_STATE_HEALTHY},
    };
    struct gw_route_env_in envs[2] = {
        {.id = 7,
         .name = "other",
         .phase = ENV_PHASE_READY,
         .services = other_web,
         .n_services = 1},
        {.id = FX_ID, .name = "fx", .services = web, .n_services = 1},
    };
    size_t n = 2;

    switch (st) {
    case FX_ASLEEP:
        envs[1].phase = ENV_PHASE_SLEEPING;
        envs[1].reason = "idle for 30m (last: request web)";
        envs[1].hold_requests = true;
        break;
    case FX_WAKING:
        envs[1].phase = ENV_PHASE_STARTING;
        envs[1].reason = "starting web";
        envs[1].hold_requests = true;
        web[0].state = SVC_STATE_STARTING;
        break;
    case FX_AWAKE:
        envs[1].phase = ENV_PHASE_READY;
        web[0].state = SVC_STATE_HEALTHY;
        break;
    case FX_FAILED:
        envs[1].phase = ENV_PHASE_FAILED;
        envs[1].reason = "web exited with status 1";
        web[0].state = SVC_STATE_FAILED;
        break;
    case FX_GONE: n = 1; break;
    case FX_NIGHT:
        envs[1].phase = ENV_PHASE_SLEEPING;
        envs[1].asleep_message =
            "fx is asleep outside office hours (awake Mon-Fri 08:00-20:00 Europe/Madrid)";
        break;
    }
    gw_publish(T.gw, gw_routes_build(envs, n, ++T.version));
}

static void
start_with(struct gw_config *cfg, enum fx_state st)
{
    struct eph_err err = {0};

    signal(SIGPIPE, SIG_IGN);
    up_start();
    pthread_mutex_init(&T.wake_lock, NULL);
    cfg->listen_host = "127.0.0.1";
    cfg->listen_port = 0;
    if (cfg->workers == 0)
        cfg->workers = 1;
    cfg->domain = "localhost";
    cfg->control_host = "127.0.0.1";
    cfg->control_port = U.port;
    cfg->on_wake = on_wake;
    cr_assert_eq(gw_start(cfg, &T.gw, &err), 0, "%s", err.msg);
    T.port = gw_port(T.gw);
    publish(st);
    cr_assert_eq(uv_loop_init(&T.loop), 0);
}

static void
on_gw_done(void *arg)
{
    (*(int *)arg)++;
}

static void
stop(void)
{
    if (T.gw) {
        gw_stop(T.gw, &T.loop, 1000, on_gw_done, &T.done_calls);
        uv_run(&T.loop, UV_RUN_DEFAULT);
        cr_assert_eq(T.done_calls, 1);
        cr_assert_eq(uv_loop_close(&T.loop), 0);
        T.gw = NULL;
    }
    up_stop();
    pthread_mutex_destroy(&T.wake_lock);
}

/* The gateway's eph_gateway_held_requests gauge. */
static int
held_now(void)
{
    struct buf m;
    const char *p;
    int n = -1;

    buf_init(&m, 1 << 20);
    gw_metrics(T.gw, &m);
    p = strstr(buf_cstr(&m), "\neph_gateway_held_requests ");
    if (p)
        n = atoi(p + 27);
    buf_release(&m);
    return n;
}

/* Polls until `want` requests are held; false at the deadline. */
static bool
wait_held(int want)
{
    int64_t until = mono_ms() + WAIT_MS;

    while (held_now() != want) {
        if (mono_ms() > until)
            return false;
        pause_ms(5);
    }
    return true;
}

/* ------------------------------------------------------------- clients */

struct client {
    int fd;
    char buf[65536];
    size_t len; /* bytes read and not yet consumed */
};

struct resp {
    int status;
    char head[8192];
    char *body; /* NUL-terminated */
    size_t body_len;
};

static void
client_open(struct client *c)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)T.port)};
    struct timeval tv = {WAIT_MS / 1000, 0};

    memset(c, 0, sizeof(*c));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0, "%s", strerror(errno));
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void
client_send(struct client *c, const char *s)
{
    send_all(c->fd, s, strlen(s));
}

/* True if a byte of an answer is waiting. */
static bool
client_has_answer(struct client *c)
{
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};

    return c->len > 0 || poll(&pfd, 1, 0) > 0;
}

/* Reads one response (Content-Length bodies, or none for a 101); false if
 * the connection ended or timed out first. */
static bool
read_response(struct client *c, struct resp *r)
{
    char *end;
    size_t head_len, body_len = 0;
    const char *cl;

    memset(r, 0, sizeof(*r));
    while ((end = memmem(c->buf, c->len, "\r\n\r\n", 4)) == NULL) {
        ssize_t n =
            c->len < sizeof(c->buf) ? recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0) : 0;

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false;
        c->len += (size_t)n;
    }
    head_len = (size_t)(end + 4 - c->buf);
    if (head_len >= sizeof(r->head))
        return false;
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    r->status = atoi(r->head + 9);
    cl = strcasestr(r->head, "\r\ncontent-length:");
    if (cl)
        body_len = strtoul(cl + 17, NULL, 10);
    r->body = xmalloc(body_len + 1);
    memmove(c->buf, c->buf + head_len, c->len - head_len);
    c->len -= head_len;
    while (r->body_len < body_len) {
        size_t take = c->len < body_len - r->body_len ? c->len : body_len - r->body_len;

        memcpy(r->body + r->body_len, c->buf, take);
        r->body_len += take;
        memmove(c->buf, c->buf + take, c->len - take);
        c->len -= take;
        if (r->body_len < body_len) {
            ssize_t n = recv(c->fd, c->buf, sizeof(c->buf), 0);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return false;
            c->len = (size_t)n;
        }
    }
    r->body[r->body_len] = '\0';
    return true;
}

static void
resp_release(struct resp *r)
{
    free(r->body);
    r->body = NULL;
}

static bool
has_header(const struct resp *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

static const char get_web[] = "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n";

/* ------------------------------------------------------------- holding */

Test(hold, holds_a_request_until_a_table_makes_its_service_routable, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;

    start_with(&cfg, FX_ASLEEP);
    client_open(&c);
    client_send(&c, get_web);
    cr_assert(wait_held(1), "held: %d", held_now());
    cr_expect_eq(atomic_load(&T.wake_calls), 1);
    cr_expect_eq(atomic_load(&T.wake_env), FX_ID);
    cr_expect_str_eq(T.wake_service, "web");
    cr_expect(!client_has_answer(&c));

    /* Waking: still not routable, still held (looked at again, not answered). */
    publish(FX_WAKING);
    publish(FX_WAKING);
    cr_expect(wait_held(1));
    cr_expect(!client_has_answer(&c));
    cr_expect_eq(atomic_load(&U.requests), 0);

    publish(FX_AWAKE);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200, "%s", r.head);
    cr_expect_str_eq(r.body, "hello");
    resp_release(&r);
    cr_expect_eq(held_now(), 0);
    /* The connection goes on as usual. */
    client_send(&c, get_web);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    close(c.fd);
    stop();
}

Test(hold, answers_every_one_of_many_held_requests_once_awake, .timeout = TEST_TIMEOUT_S)
{
    enum { N = 300 };
    struct gw_config cfg = {.workers = 2};
    struct client *cs = xcalloc(N, sizeof(*cs));
    int64_t t0, elapsed;
    int ok = 0, calls;

    start_with(&cfg, FX_ASLEEP);
    t0 = mono_ms();
    for (int i = 0; i < N; i++) {
        client_open(&cs[i]);
        client_send(&cs[i], i % 3 == 0 ? "POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\n"
                                         "Content-Length: 4\r\n\r\nbody"
                                       : get_web);
    }
    cr_assert(wait_held(N), "held: %d of %d", held_now(), N);
    elapsed = mono_ms() - t0;
    calls = atomic_load(&T.wake_calls);
    /* At most once per 100 ms per worker, and at least once. */
    cr_expect(calls >= 1 && calls <= 2 * (elapsed / 100 + 1), "%d calls in %lld ms", calls,
              (long long)elapsed);
    cr_expect_eq(atomic_load(&U.requests), 0);
    publish(FX_AWAKE);
    for (int i = 0; i < N; i++) {
        struct resp r;

        if (read_response(&cs[i], &r) && r.status == 200 &&
            strcmp(r.body, i % 3 == 0 ? "body" : "hello") == 0)
            ok++;
        else
            cr_expect_fail("request %d: status %d body '%s'", i, r.status, r.body ? r.body : "");
        resp_release(&r);
        close(cs[i].fd);
    }
    cr_expect_eq(ok, N);
    cr_expect_eq(atomic_load(&U.requests), N);
    cr_expect_eq(held_now(), 0);
    free(cs);
    stop();
}

Test(hold, passes_a_held_request_body_on_whole, .timeout = TEST_TIMEOUT_S)
{
    enum { BODY = 48 * 1024 };
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;
    char *req = xmalloc(BODY + 256);
    int n;

    start_with(&cfg, FX_ASLEEP);
    n = snprintf(req, 256,
                 "POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\n"
                 "Content-Length: %d\r\n\r\n",
                 BODY);
    for (int i = 0; i < BODY; i++)
        req[n + i] = (char)('a' + i % 26);
    req[n + BODY] = '\0';
    client_open(&c);
    client_send(&c, req); /* the kernel buffers what the gateway does not read */
    cr_assert(wait_held(1));
    publish(FX_AWAKE);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_eq(r.body_len, BODY);
    cr_expect(r.body_len == BODY && memcmp(r.body, req + n, BODY) == 0, "the body came through");
    resp_release(&r);
    close(c.fd);
    free(req);
    stop();
}

Test(hold, answers_pipelined_requests_behind_a_held_one_in_order, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;

    start_with(&cfg, FX_ASLEEP);
    client_open(&c);
    client_send(&c, "GET /hello HTTP/1.1\r\nHost: web.fx.localhost\r\n\r\n"
                    "POST /echo HTTP/1.1\r\nHost: web.fx.localhost\r\nContent-Length: 6\r\n\r\n"
                    "second"
                    "GET /hello HTTP/1.1\r\nHost: other.localhost\r\n\r\n");
    cr_assert(wait_held(1), "the first is held, the others wait behind it");
    cr_expect(!client_has_answer(&c));
    publish(FX_AWAKE);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "hello");
    resp_release(&r);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    cr_expect_str_eq(r.body, "second");
    resp_release(&r);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 404, "an unknown host, answered in its turn");
    resp_release(&r);
    close(c.fd);
    stop();
}

Test(hold, answers_503_at_once_beyond_the_wake_queue, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.wake_queue = 2};
    struct client c[3];
    struct resp r;

    start_with(&cfg, FX_ASLEEP);
    for (int i = 0; i < 2; i++) {
        client_open(&c[i]);
        client_send(&c[i], get_web);
    }
    cr_assert(wait_held(2));
    client_open(&c[2]);
    client_send(&c[2], get_web);
    cr_assert(read_response(&c[2], &r));
    cr_expect_eq(r.status, 503);
    cr_expect(strstr(r.body, "too many requests are waiting for fx to wake up"), "%s", r.body);
    resp_release(&r);
    cr_expect_eq(held_now(), 2);
    publish(FX_AWAKE);
    for (int i = 0; i < 2; i++) {
        cr_assert(read_response(&c[i], &r));
        cr_expect_eq(r.status, 200);
        resp_release(&r);
    }
    for (int i = 0; i < 3; i++)
        close(c[i].fd);
    stop();
}

Test(hold, answers_503_with_retry_after_when_the_env_does_not_wake_in_time,
     .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.wake_timeout_ms = 400};
    struct client c;
    struct resp r;
    int64_t t0;

    start_with(&cfg, FX_WAKING);
    client_open(&c);
    t0 = mono_ms();
    client_send(&c, get_web);
    cr_assert(read_response(&c, &r));
    cr_expect_geq(mono_ms() - t0, 390, "answered after the wake timeout");
    cr_expect_eq(r.status, 503);
    cr_expect(has_header(&r, "Retry-After: "), "%s", r.head);
    cr_expect(strstr(r.body, "fx did not wake up within 400ms: starting web"), "%s", r.body);
    resp_release(&r);
    cr_expect_eq(held_now(), 0);
    /* Kept alive: the next request is held again, and goes on once awake. */
    client_send(&c, get_web);
    cr_assert(wait_held(1));
    publish(FX_AWAKE);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    close(c.fd);
    stop();
}

Test(hold, shows_a_browser_a_waking_page_after_a_second, .timeout = TEST_TIMEOUT_S)
{
    static const char nav[] = "GET / HTTP/1.1\r\nHost: web.fx.localhost\r\n"
                              "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n\r\n";
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;
    int64_t t0;

    start_with(&cfg, FX_ASLEEP);
    client_open(&c);
    t0 = mono_ms();
    client_send(&c, nav);
    cr_assert(read_response(&c, &r));
    cr_expect_geq(mono_ms() - t0, 990, "held for a second first");
    cr_expect_eq(r.status, 503);
    cr_expect(has_header(&r, "Retry-After: 1\r\n"), "%s", r.head);
    cr_expect(has_header(&r, "Content-Type: text/html"), "%s", r.head);
    cr_expect(!has_header(&r, "Connection: close"), "%s", r.head);
    cr_expect(strstr(r.body, "<meta http-equiv=\"refresh\" content=\"1\">"), "%s", r.body);
    cr_expect(strstr(r.body, "waking up fx\u2026"), "%s", r.body);
    resp_release(&r);
    /* The page reloads on the same connection; by then fx is awake. */
    publish(FX_AWAKE);
    client_send(&c, nav);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    close(c.fd);
    stop();
}

Test(hold, answers_held_requests_when_the_env_fails_goes_or_may_not_wake, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;
    int calls;

    start_with(&cfg, FX_ASLEEP);
    client_open(&c);

    client_send(&c, get_web);
    cr_assert(wait_held(1));
    publish(FX_FAILED);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 503);
    cr_expect(strstr(r.body, "web exited with status 1"), "%s", r.body);
    resp_release(&r);

    publish(FX_ASLEEP);
    client_send(&c, get_web);
    cr_assert(wait_held(1));
    publish(FX_GONE);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 404);
    resp_release(&r);

    publish(FX_ASLEEP);
    client_send(&c, get_web);
    cr_assert(wait_held(1));
    publish(FX_NIGHT);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 503);
    cr_expect(strstr(r.body, "fx is asleep outside office hours (awake Mon-Fri 08:00-20:00 "
                             "Europe/Madrid)"),
              "%s", r.body);
    resp_release(&r);

    /* Asleep for good: 503 at once, and nobody is asked to wake it. */
    calls = atomic_load(&T.wake_calls);
    client_send(&c, get_web);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 503);
    cr_expect(strstr(r.body, "asleep outside office hours"), "%s", r.body);
    resp_release(&r);
    cr_expect_eq(atomic_load(&T.wake_calls), calls);
    cr_expect_eq(held_now(), 0);
    close(c.fd);
    stop();
}

Test(hold, answers_held_requests_503_when_the_gateway_stops, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {.workers = 2};
    struct client c[4];

    start_with(&cfg, FX_ASLEEP);
    for (int i = 0; i < 4; i++) {
        client_open(&c[i]);
        client_send(&c[i], get_web);
    }
    cr_assert(wait_held(4));
    gw_stop(T.gw, &T.loop, 5000, on_gw_done, &T.done_calls);
    for (int i = 0; i < 4; i++) {
        struct resp r;

        cr_assert(read_response(&c[i], &r), "request %d answered", i);
        cr_expect_eq(r.status, 503);
        cr_expect(strstr(r.body, "shutting down"), "%s", r.body);
        cr_expect(has_header(&r, "Connection: close"));
        resp_release(&r);
        close(c[i].fd);
    }
    uv_run(&T.loop, UV_RUN_DEFAULT);
    cr_assert_eq(T.done_calls, 1);
    cr_assert_eq(uv_loop_close(&T.loop), 0);
    T.gw = NULL;
    stop();
}

/* ------------------------------------------------------------- activity */

Test(hold, reports_requests_and_open_websockets_as_activity, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct client c, ws;
    struct resp r;
    int64_t last = 0, t0 = wall_ms(), until;
    int open = -1;
    char what[64] = "";

    start_with(&cfg, FX_AWAKE);
    cr_expect(!gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)), "nothing yet");
    client_open(&c);
    client_send(&c, get_web);
    cr_assert(read_response(&c, &r));
    cr_expect_eq(r.status, 200);
    resp_release(&r);
    /* The gateway may close the exchange just after we read the response:
     * poll for the count to drop. */
    until = mono_ms() + WAIT_MS;
    while (gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)) && open != 0 &&
           mono_ms() < until)
        pause_ms(5);
    cr_expect_eq(open, 0);
    cr_expect_geq(last, t0 - 20, "coarse clock: a tick early at most");
    cr_expect_leq(last, wall_ms() + 20);
    cr_expect_str_eq(what, "request web");
    cr_expect(!gw_activity(T.gw, 7, &last, &open, what, sizeof(what)), "other saw nothing");

    client_open(&ws);
    client_send(&ws, "GET /ws HTTP/1.1\r\nHost: web.fx.localhost\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n\r\n");
    cr_assert(read_response(&ws, &r));
    cr_expect_eq(r.status, 101);
    resp_release(&r);
    cr_assert(gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)));
    cr_expect_eq(open, 1, "an open tunnel is activity");
    cr_expect_str_eq(what, "websocket web");
    /* Long after, still open. */
    client_send(&c, get_web);
    cr_assert(read_response(&c, &r));
    resp_release(&r);
    cr_assert(gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)));
    cr_expect_geq(open, 1);
    t0 = wall_ms();
    close(ws.fd);
    until = mono_ms() + WAIT_MS;
    while (gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)) && open != 0 &&
           mono_ms() < until)
        pause_ms(5);
    cr_expect_eq(open, 0, "closed tunnels are not open");
    cr_expect_geq(last, t0 - 20, "the tunnel's end is the last activity");
    close(c.fd);
    stop();
}

Test(hold, held_requests_are_activity_but_not_open_exchanges, .timeout = TEST_TIMEOUT_S)
{
    struct gw_config cfg = {0};
    struct client c;
    struct resp r;
    int64_t last = 0;
    int open = -1;
    char what[64] = "";

    start_with(&cfg, FX_ASLEEP);
    client_open(&c);
    client_send(&c, get_web);
    cr_assert(wait_held(1));
    cr_assert(gw_activity(T.gw, FX_ID, &last, &open, what, sizeof(what)));
    cr_expect_eq(open, 0);
    cr_expect_str_eq(what, "request web");
    publish(FX_AWAKE);
    cr_assert(read_response(&c, &r));
    resp_release(&r);
    close(c.fd);
    stop();
}
