/*
 * tests/unit/notify/test_notify.c - event notifications end to end inside
 * one process: a real libuv loop, a real store in a temporary directory and
 * a tiny HTTP receiver on 127.0.0.1 in a thread of the test, which can be
 * told to answer 500 or to stop listening. Waits poll with deadlines.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "notify/notify.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define DEADLINE_MS 15000
#define RX_MAX_REQUESTS 256

/* ------------------------------------------------------------- the receiver */

struct rx_request {
    char *head; /* request line and headers, NUL-terminated */
    char *body; /* NUL-terminated */
    size_t body_len;
};

struct receiver {
    pthread_t thread;
    pthread_mutex_t lock;
    int port;
    int listen_fd; /* -1 while not listening; the thread's */
    /* set by the test, under lock */
    int status; /* what to answer */
    bool want_listening;
    bool stop;
    /* set by the thread, under lock */
    bool listening;
    struct rx_request reqs[RX_MAX_REQUESTS];
    size_t n_reqs;
};

/* A listening socket on 127.0.0.1:port (0: any), or -1. Called on the
 * receiver's thread too, where Criterion's asserts must not be used. */
static int
rx_listen(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads one request from fd and records it; answers with the set status. */
static void
rx_serve_one(struct receiver *rx, int fd)
{
    struct timeval tv = {.tv_sec = 5};
    char buf[65536];
    size_t len = 0, head_len, want;
    const char *end, *cl;
    char reply[128];
    int status;

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    for (;;) {
        ssize_t got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);

        if (got <= 0)
            return;
        len += (size_t)got;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end != NULL)
            break;
    }
    head_len = (size_t)(end - buf) + 4;
    cl = strcasestr(buf, "\r\nContent-Length:");
    want = cl && cl < end ? (size_t)strtoul(cl + 17, NULL, 10) : 0;
    while (len < head_len + want && len < sizeof(buf) - 1) {
        ssize_t got = recv(fd, buf + len, sizeof(buf) - 1 - len, 0);

        if (got <= 0)
            return;
        len += (size_t)got;
    }
    pthread_mutex_lock(&rx->lock);
    if (rx->n_reqs < RX_MAX_REQUESTS) {
        struct rx_request *r = &rx->reqs[rx->n_reqs++];

        r->head = xstrndup(buf, head_len);
        r->body = xstrndup(buf + head_len, want);
        r->body_len = want;
    }
    status = rx->status;
    pthread_mutex_unlock(&rx->lock);
    snprintf(reply, sizeof(reply),
             "HTTP/1.1 %d X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", status);
    (void)!send(fd, reply, strlen(reply), MSG_NOSIGNAL);
}

static void *
rx_main(void *arg)
{
    struct receiver *rx = arg;

    for (;;) {
        struct pollfd p = {.fd = rx->listen_fd, .events = POLLIN};
        bool stop, want;

        pthread_mutex_lock(&rx->lock);
        stop = rx->stop;
        want = rx->want_listening;
        pthread_mutex_unlock(&rx->lock);
        if (stop)
            break;
        if (want && rx->listen_fd < 0)
            rx->listen_fd = rx_listen(rx->port); /* -1: tried again next time */
        else if (!want && rx->listen_fd >= 0) {
            close(rx->listen_fd);
            rx->listen_fd = -1;
        }
        pthread_mutex_lock(&rx->lock);
        rx->listening = rx->listen_fd >= 0;
        pthread_mutex_unlock(&rx->lock);
        p.fd = rx->listen_fd;
        if (poll(&p, p.fd >= 0 ? 1 : 0, 10) > 0 && (p.revents & POLLIN)) {
            int fd = accept4(rx->listen_fd, NULL, NULL, SOCK_CLOEXEC);

            if (fd >= 0) {
                rx_serve_one(rx, fd);
                close(fd);
            }
        }
    }
    if (rx->listen_fd >= 0)
        close(rx->listen_fd);
    return NULL;
}

static void
rx_start(struct receiver *rx)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);

    memset(rx, 0, sizeof(*rx));
    pthread_mutex_init(&rx->lock, NULL);
    rx->status = 200;
    rx->want_listening = true;
    rx->listening = true;
    rx->listen_fd = rx_listen(0);
    cr_assert_geq(rx->listen_fd, 0, "cannot listen: %s", strerror(errno));
    cr_assert_eq(getsockname(rx->listen_fd, (struct sockaddr *)&a, &alen), 0);
    rx->port = ntohs(a.sin_port);
    cr_assert_eq(pthread_create(&rx->thread, NULL, rx_main, rx), 0);
}

static void
rx_stop(struct receiver *rx)
{
    pthread_mutex_lock(&rx->lock);
    rx->stop = true;
    pthread_mutex_unlock(&rx->lock);
    pthread_join(rx->thread, NULL);
    for (size_t i = 0; i < rx->n_reqs; i++) {
        free(rx->reqs[i].head);
        free(rx->reqs[i].body);
    }
    pthread_mutex_destroy(&rx->lock);
}

static void
rx_set_status(struct receiver *rx, int status)
{
    pthread_mutex_lock(&rx->lock);
    rx->status = status;
    pthread_mutex_unlock(&rx->lock);
}

static size_t
rx_count(struct receiver *rx)
{
    size_t n;

    pthread_mutex_lock(&rx->lock);
    n = rx->n_reqs;
    pthread_mutex_unlock(&rx->lock);
    return n;
}

/* The value of header `name` in head, copied into out ("" if absent). */
static const char *
header(const char *head, const char *name, char *out, size_t size)
{
    char key[128];
    const char *p, *e;

    snprintf(key, sizeof(key), "\r\n%s:", name);
    out[0] = '\0';
    p = strcasestr(head, key);
    if (p == NULL)
        return out;
    p += strlen(key);
    while (*p == ' ')
        p++;
    e = strstr(p, "\r\n");
    snprintf(out, size, "%.*s", (int)(e ? e - p : (ptrdiff_t)strlen(p)), p);
    return out;
}

/* ------------------------------------------------------------- the fixture */

struct fixture {
    char dir[64];
    struct store *st;
    uv_loop_t loop;
    uv_timer_t poll; /* wakes the loop often, so that waits can look */
    struct receiver rx;
    char *log_text; /* what the notifier logged (open_memstream) */
    size_t log_len;
    FILE *log;
};

static void
on_poll(uv_timer_t *t)
{
}

static void
fx_init(struct fixture *f)
{
    struct eph_err err = {0};
    char *path;

    memset(f, 0, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/eph-notify-XXXXXX");
    cr_assert_not_null(mkdtemp(f->dir));
    path = xasprintf("%s/eph.db", f->dir);
    cr_assert_eq(store_open(path, &f->st, &err), 0, "%s", err.msg);
    free(path);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    uv_timer_init(&f->loop, &f->poll);
    uv_timer_start(&f->poll, on_poll, 5, 5);
    f->log = open_memstream(&f->log_text, &f->log_len);
    log_set_stream(f->log);
    rx_start(&f->rx);
}

static void
on_closed_noop(uv_handle_t *h)
{
}

static void
fx_release(struct fixture *f)
{
    rx_stop(&f->rx);
    uv_close((uv_handle_t *)&f->poll, on_closed_noop);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&f->loop), 0, "no handle left open");
    store_close(f->st);
    log_set_stream(stderr);
    fclose(f->log);
    free(f->log_text);
    fs_rm_rf(f->dir);
}

/* Runs the loop until cond(arg) or the deadline; returns cond's last answer. */
static bool
run_until(struct fixture *f, bool (*cond)(struct fixture *, const void *), const void *arg)
{
    int64_t deadline = time_mono_ms() + DEADLINE_MS;

    while (!cond(f, arg)) {
        if (time_mono_ms() > deadline)
            return false;
        uv_run(&f->loop, UV_RUN_ONCE);
    }
    return true;
}

static bool
received_at_least(struct fixture *f, const void *arg)
{
    return rx_count(&f->rx) >= *(const size_t *)arg;
}

static int64_t
cursor_of(struct fixture *f, const char *sink)
{
    struct eph_err err = {0};
    char key[128], *v = NULL;
    int64_t c = -1;

    snprintf(key, sizeof(key), "notify.%s.cursor", sink);
    if (store_meta_get(f->st, key, &v, &err) == 0)
        c = strtoll(v, NULL, 10);
    free(v);
    return c;
}

struct cursor_want {
    const char *sink;
    int64_t id;
};

static bool
cursor_reached(struct fixture *f, const void *arg)
{
    const struct cursor_want *w = arg;

    return cursor_of(f, w->sink) >= w->id;
}

static size_t
failures_logged(struct fixture *f)
{
    size_t n = 0;

    fflush(f->log);
    for (const char *p = f->log_text; p && (p = strstr(p, "msg=\"delivery failed\"")); p++)
        n++;
    return n;
}

static bool
failures_at_least(struct fixture *f, const void *arg)
{
    return failures_logged(f) >= *(const size_t *)arg;
}

static bool
listening_is(struct fixture *f, const void *arg)
{
    bool l;

    pthread_mutex_lock(&f->rx.lock);
    l = f->rx.listening;
    pthread_mutex_unlock(&f->rx.lock);
    return l == *(const bool *)arg;
}

static void
rx_set_listening(struct fixture *f, bool on)
{
    pthread_mutex_lock(&f->rx.lock);
    f->rx.want_listening = on;
    pthread_mutex_unlock(&f->rx.lock);
    cr_assert(run_until(f, listening_is, &on), "the receiver did not switch");
}

static int64_t
append(struct fixture *f, const char *actor, const char *source, const char *action,
       const char *target, const char *detail)
{
    struct store_actor a = {.name = actor, .source = source};
    struct eph_err err = {0};
    struct event **evs = NULL;
    size_t n = 0;
    int64_t id;

    cr_assert_eq(store_event_append(f->st, &a, action, target, detail, &err), 0, "%s", err.msg);
    cr_assert_eq(store_event_list(f->st, NULL, -1, 1, &evs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    id = evs[0]->id;
    event_list_free(evs, n);
    return id;
}

static int closes_done;

static void
on_notifier_closed(void *arg)
{
    closes_done++;
}

static bool
closed(struct fixture *f, const void *arg)
{
    return closes_done >= *(const int *)arg;
}

static void
close_notifier(struct fixture *f, struct notifier *n)
{
    int want = closes_done + 1;

    notifier_close(n, on_notifier_closed, NULL);
    cr_assert(run_until(f, closed, &want), "the notifier did not close");
}

static char *
url_for(struct fixture *f, const char *path)
{
    return xasprintf("http://127.0.0.1:%d%s", f->rx.port, path);
}

/* ------------------------------------------------------------- tests */

Test(notify, delivers_to_slack_and_webhook_sinks_with_body_headers_and_signature, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events_all[] = {"*"}, *events_env[] = {"env.*"};
    struct notify_sink_cfg sinks[2] = {
        {.name = "chat", .type = NOTIFY_SLACK, .events = events_env, .n_events = 1},
        {.name = "audit",
         .type = NOTIFY_WEBHOOK,
         .secret = "s3cret",
         .events = events_all,
         .n_events = 1},
    };
    const struct rx_request *slack = NULL, *hook = NULL;
    size_t two = 2;
    int64_t id;

    fx_init(&f);
    sinks[0].url = url_for(&f, "/slack");
    sinks[1].url = url_for(&f, "/hook?token=abc");
    cr_assert_eq(notifier_new(&f.loop, f.st, sinks, 2, &n, &err), 0, "%s", err.msg);
    id = append(&f, "alice", "127.0.0.1", "env.create", "env/fx", "project shop at main (abc1234)");
    notifier_kick(n);
    cr_assert(run_until(&f, received_at_least, &two), "got %zu requests", rx_count(&f.rx));
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"chat", id}));
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"audit", id}));

    for (size_t i = 0; i < 2; i++) {
        if (strncmp(f.rx.reqs[i].head, "POST /slack HTTP/1.1\r\n", 22) == 0)
            slack = &f.rx.reqs[i];
        else if (strncmp(f.rx.reqs[i].head, "POST /hook?token=abc HTTP/1.1\r\n", 31) == 0)
            hook = &f.rx.reqs[i];
    }
    cr_assert_not_null(slack);
    cr_assert_not_null(hook);
    {
        char v[256];

        cr_expect_str_eq(slack->body, "{\"text\":\"alice created environment fx (project shop "
                                      "at main (abc1234)) from 127.0.0.1\"}");
        cr_expect_str_eq(header(slack->head, "Content-Type", v, sizeof(v)), "application/json");
        cr_expect_str_eq(header(slack->head, "X-Ephemera-Signature", v, sizeof(v)), "",
                         "slack messages are not signed");
    }
    {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int md_len = 0;
        char v[256], want[160], at[40], idtext[32];
        json_error_t jerr;
        json_t *o;

        cr_expect_str_eq(header(hook->head, "Content-Type", v, sizeof(v)), "application/json");
        cr_expect_str_eq(header(hook->head, "X-Ephemera-Event", v, sizeof(v)), "env.create");
        snprintf(idtext, sizeof(idtext), "%" PRId64, id);
        cr_expect_str_eq(header(hook->head, "X-Ephemera-Delivery", v, sizeof(v)), idtext);
        HMAC(EVP_sha256(), "s3cret", 6, (const unsigned char *)hook->body, hook->body_len, md,
             &md_len);
        strcpy(want, "sha256=");
        for (unsigned int i = 0; i < md_len; i++)
            sprintf(want + 7 + 2 * i, "%02x", md[i]);
        cr_expect_str_eq(header(hook->head, "X-Ephemera-Signature", v, sizeof(v)), want);

        o = json_loadb(hook->body, hook->body_len, 0, &jerr);
        cr_assert_not_null(o, "%s", jerr.text);
        cr_expect_eq(json_integer_value(json_object_get(o, "id")), id);
        time_format_rfc3339(json_integer_value(json_object_get(o, "at_ms")), at, sizeof(at));
        cr_expect_str_eq(json_string_value(json_object_get(o, "at")), at);
        cr_expect_gt(json_integer_value(json_object_get(o, "at_ms")), 0);
        cr_expect_str_eq(json_string_value(json_object_get(o, "actor")), "alice");
        cr_expect_str_eq(json_string_value(json_object_get(o, "source")), "127.0.0.1");
        cr_expect_str_eq(json_string_value(json_object_get(o, "action")), "env.create");
        cr_expect_str_eq(json_string_value(json_object_get(o, "target")), "env/fx");
        cr_expect_str_eq(json_string_value(json_object_get(o, "detail")),
                         "project shop at main (abc1234)");
        cr_expect_eq(json_object_size(o), 8);
        json_decref(o);
    }
    close_notifier(&f, n);
    cr_expect_null(strstr(f.log_text ? f.log_text : "", "s3cret"), "secrets are never logged");
    free(sinks[0].url);
    free(sinks[1].url);
    fx_release(&f);
}

Test(notify, starts_a_new_sink_at_the_newest_event_without_replaying_history, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"*"};
    struct notify_sink_cfg sink = {
        .name = "chat", .type = NOTIFY_SLACK, .events = events, .n_events = 1};
    int64_t old, fresh;

    fx_init(&f);
    sink.url = url_for(&f, "/slack");
    append(&f, "alice", "", "project.add", "project/shop", "https://example.com/shop.git");
    old = append(&f, "alice", "", "env.create", "env/fx", "project shop at main (abc1234)");
    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(cursor_of(&f, "chat"), old, "the cursor is written at once");
    fresh = append(&f, "bob", "10.0.0.2", "env.delete", "env/fx", "");
    notifier_kick(n);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"chat", fresh}));
    cr_expect_eq(rx_count(&f.rx), 1, "only what came after the first start");
    cr_expect_str_eq(f.rx.reqs[0].body, "{\"text\":\"bob deleted environment fx from 10.0.0.2\"}");
    close_notifier(&f, n);
    free(sink.url);
    fx_release(&f);
}

Test(notify, retries_with_backoff_until_the_receiver_recovers, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"env.*"};
    struct notify_sink_cfg sink = {
        .name = "audit", .type = NOTIFY_WEBHOOK, .secret = "k", .events = events, .n_events = 1};
    size_t three = 3, five;
    int64_t start, id, id2;
    char v[64], idtext[32];

    fx_init(&f);
    sink.url = url_for(&f, "/hook");
    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    notifier_set_backoff(n, 10, 40);
    start = cursor_of(&f, "audit");

    /* Answers 500: the same event again and again, the cursor stays. */
    rx_set_status(&f.rx, 500);
    id = append(&f, "alice", "", "env.create", "env/fx", "project shop at main (abc1234)");
    notifier_kick(n);
    cr_assert(run_until(&f, received_at_least, &three));
    snprintf(idtext, sizeof(idtext), "%" PRId64, id);
    for (size_t i = 0; i < 3; i++)
        cr_expect_str_eq(header(f.rx.reqs[i].head, "X-Ephemera-Delivery", v, sizeof(v)), idtext);
    cr_expect_eq(cursor_of(&f, "audit"), start, "nothing acknowledged yet");
    cr_expect_geq(failures_logged(&f), 2);
    cr_expect_not_null(strstr(f.log_text, "status=500"), "%s", f.log_text);
    cr_expect_null(strstr(f.log_text, "/hook"), "only scheme, host and port are logged");

    /* Recovers: delivered, then the cursor moves. */
    rx_set_status(&f.rx, 200);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"audit", id}));

    /* Stops listening: connection refused, retried, delivered once it is back. */
    rx_set_listening(&f, false);
    five = failures_logged(&f) + 3;
    id2 = append(&f, "system", "", "env.expire", "env/fx", "time to live expired");
    notifier_kick(n);
    cr_assert(run_until(&f, failures_at_least, &five));
    cr_expect_lt(cursor_of(&f, "audit"), id2);
    rx_set_listening(&f, true);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"audit", id2}));
    snprintf(idtext, sizeof(idtext), "%" PRId64, id2);
    cr_expect_str_eq(
        header(f.rx.reqs[rx_count(&f.rx) - 1].head, "X-Ephemera-Delivery", v, sizeof(v)), idtext);

    /* Closing while a backoff runs. */
    rx_set_listening(&f, false);
    five = failures_logged(&f) + 1;
    append(&f, "system", "", "env.phase", "env/fx", "deleting -> deleted");
    notifier_kick(n);
    cr_assert(run_until(&f, failures_at_least, &five));
    close_notifier(&f, n);
    free(sink.url);
    fx_release(&f);
}

Test(notify, resumes_from_its_cursor_after_a_restart, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"*"};
    struct notify_sink_cfg sink = {
        .name = "audit", .type = NOTIFY_WEBHOOK, .secret = "k", .events = events, .n_events = 1};
    size_t one;
    int64_t a, b, c;
    char v[64], btext[32], ctext[32];

    fx_init(&f);
    sink.url = url_for(&f, "/hook");
    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    notifier_set_backoff(n, 10, 40);
    a = append(&f, "alice", "", "env.create", "env/a", "project shop at main (abc1234)");
    notifier_kick(n);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"audit", a}));

    /* b fails and is not acknowledged before the "crash". */
    rx_set_status(&f.rx, 500);
    b = append(&f, "alice", "", "env.create", "env/b", "project shop at main (abc1234)");
    one = rx_count(&f.rx) + 1;
    notifier_kick(n);
    cr_assert(run_until(&f, received_at_least, &one));
    close_notifier(&f, n);
    cr_expect_eq(cursor_of(&f, "audit"), a);

    /* Recorded while no notifier ran. */
    c = append(&f, "bob", "", "env.delete", "env/a", "");
    rx_set_status(&f.rx, 200);
    pthread_mutex_lock(&f.rx.lock);
    for (size_t i = 0; i < f.rx.n_reqs; i++) {
        free(f.rx.reqs[i].head);
        free(f.rx.reqs[i].body);
    }
    f.rx.n_reqs = 0;
    pthread_mutex_unlock(&f.rx.lock);

    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"audit", c}),
              "delivered without a kick: the new notifier looks at start");
    cr_assert_eq(rx_count(&f.rx), 2, "b and c, not a again");
    snprintf(btext, sizeof(btext), "%" PRId64, b);
    snprintf(ctext, sizeof(ctext), "%" PRId64, c);
    cr_expect_str_eq(header(f.rx.reqs[0].head, "X-Ephemera-Delivery", v, sizeof(v)), btext);
    cr_expect_str_eq(header(f.rx.reqs[1].head, "X-Ephemera-Delivery", v, sizeof(v)), ctext);
    close_notifier(&f, n);
    free(sink.url);
    fx_release(&f);
}

Test(notify, skips_events_the_sink_does_not_want, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"env.create", "service.*"};
    struct notify_sink_cfg sink = {
        .name = "chat", .type = NOTIFY_SLACK, .events = events, .n_events = 2};
    int64_t last = 0;
    char v[64];

    fx_init(&f);
    sink.url = url_for(&f, "/slack");
    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    /* More unwanted ones than a batch, around one wanted one. */
    for (int i = 0; i < NOTIFY_BATCH + 10; i++)
        append(&f, "alice", "", "user.add", "user/x", "role member, provider local");
    append(&f, "alice", "", "env.create", "env/fx", "project shop at main (abc1234)");
    for (int i = 0; i < NOTIFY_BATCH * 2 + 5; i++)
        last = append(&f, "alice", "", "env.delete", "env/fx", "");
    notifier_kick(n);
    cr_assert(run_until(&f, cursor_reached, &(struct cursor_want){"chat", last}));
    cr_expect_eq(rx_count(&f.rx), 1);
    cr_expect_str_eq(
        f.rx.reqs[0].body,
        "{\"text\":\"alice created environment fx (project shop at main (abc1234))\"}");
    cr_expect_str_eq(header(f.rx.reqs[0].head, "Content-Type", v, sizeof(v)), "application/json");
    close_notifier(&f, n);
    free(sink.url);
    fx_release(&f);
}

Test(notify, writes_slack_sentences_that_read_well, .timeout = 60)
{
    static const struct {
        const char *actor, *source, *action, *target, *detail, *want;
    } cases[] = {
        {"system", "", "env.phase", "env/fx", "starting -> ready",
         "environment fx is ready (was starting)"},
        {"system", "", "env.phase", "env/fx", "starting -> failed: setup exited with 1",
         "environment fx failed (was starting): setup exited with 1"},
        {"system", "", "env.phase", "env/fx", "odd", "environment fx changed phase: odd"},
        {"system", "", "env.expire", "env/fx", "time to live expired",
         "environment fx expired and is being deleted (time to live expired)"},
        {"bob", "10.0.0.2", "env.extend", "env/fx", "until 2026-11-22T18:00:00Z",
         "bob extended environment fx (until 2026-11-22T18:00:00Z) from 10.0.0.2"},
        {"system", "", "service.crash", "env/fx", "api exited <1> & restarted",
         "system service.crash env/fx: api exited &lt;1&gt; &amp; restarted"},
        {"alice", "", "user.add", "user/x", "caf\xc3 \xff ok \xc3\xa9",
         "alice user.add user/x: caf? ? ok \xc3\xa9"},
    };
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"*"};
    struct notify_sink_cfg sink = {
        .name = "chat", .type = NOTIFY_SLACK, .events = events, .n_events = 1};
    size_t want = sizeof(cases) / sizeof(cases[0]);

    fx_init(&f);
    sink.url = url_for(&f, "/slack");
    cr_assert_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < want; i++)
        append(&f, cases[i].actor, cases[i].source, cases[i].action, cases[i].target,
               cases[i].detail);
    notifier_kick(n);
    cr_assert(run_until(&f, received_at_least, &want));
    for (size_t i = 0; i < want; i++) {
        json_t *o = json_loads(f.rx.reqs[i].body, 0, NULL);

        cr_assert_not_null(o, "case %zu", i);
        cr_expect_str_eq(json_string_value(json_object_get(o, "text")), cases[i].want,
                         "case %zu: %s", i, f.rx.reqs[i].body);
        json_decref(o);
    }
    close_notifier(&f, n);
    free(sink.url);
    fx_release(&f);
}

Test(notify, refuses_a_cursor_that_is_not_an_event_id, .timeout = 60)
{
    struct fixture f;
    struct notifier *n = NULL;
    struct eph_err err = {0};
    char *events[] = {"*"};
    struct notify_sink_cfg sink = {
        .name = "chat", .type = NOTIFY_SLACK, .url = "http://x", .events = events, .n_events = 1};

    fx_init(&f);
    cr_assert_eq(store_meta_set(f.st, "notify.chat.cursor", "abc", &err), 0);
    cr_expect_eq(notifier_new(&f.loop, f.st, &sink, 1, &n, &err), EPH_ESTORE);
    cr_expect_null(n);
    cr_expect_str_eq(err.msg,
                     "notify sink 'chat': meta 'notify.chat.cursor' holds 'abc', not an event id");

    /* No sinks: nothing to do, and it still closes. */
    cr_assert_eq(notifier_new(&f.loop, f.st, NULL, 0, &n, &err), 0, "%s", err.msg);
    notifier_kick(n);
    close_notifier(&f, n);
    fx_release(&f);
}
