/*
 * notify/notify.c - delivers the event log to Slack-compatible and signed
 * webhook sinks (notify/notify.h): per sink a cursor in the store's meta
 * table, one POST at a time on the sink's own thread, exponential backoff.
 *
 * Everything but the POST itself runs on the control loop: reading events,
 * building bodies and signatures, moving cursors. The sink's thread gets a
 * body and headers that nobody touches while it runs, and leaves the status
 * in the sink for post_done() to act on. Not libuv's shared pool: a
 * receiver that never answers holds its thread for NOTIFY_TIMEOUT_MS at a
 * time, again and again, and four such sinks would hold the whole pool,
 * which creating environments, checkouts and sign-ins wait on.
 */
#include "notify/notify.h"

#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "notify"
#include "util/buf.h"
#include "util/log.h"
#include "util/redact.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* A look at the log stops after this many batches of unwanted events and
 * resumes on the next loop turn, so one look never holds the loop long. */
#define PUMP_MAX_BATCHES 20
/* The longest Slack sentence and webhook body we build; events are short,
 * a longer one is cut (sentence) or sent anyway (JSON is not cut). */
#define SENTENCE_MAX_BYTES 4096

struct notify_sink {
    struct notifier *n;
    struct notify_sink_cfg cfg; /* a deep copy: name, type, url, secret, events */
    char *url_for_logs;         /* scheme://host[:port] only: paths may be secrets */
    char *cursor_key;           /* "notify.<name>.cursor" in the meta table */
    int64_t cursor;             /* last event id delivered or skipped */
    uv_timer_t retry;           /* armed while waiting out a backoff */
    int failures;               /* in a row, for the event being delivered */
    bool read_failing;          /* the event log could not be read: logged once */
    /* The POST in flight (busy), set on the loop before the thread is woken. */
    bool busy;
    int64_t post_event_id;
    char *post_body;
    struct curl_slist *post_headers;
    /* Written by the thread, read by post_done() once it has finished. */
    long post_status; /* HTTP status; 0 if there was no answer */
    int post_curl_rc; /* CURLcode */
    char post_error[CURL_ERROR_SIZE];
    /* The sink's thread, which makes its POSTs, and how the loop and it talk.
     * job, finished and quit are read and written under lock only. */
    uv_thread_t thread;
    bool thread_started;
    uv_mutex_t lock;
    uv_cond_t wake;            /* the thread waits on it for job or quit */
    bool job;                  /* loop -> thread: post_* is set, POST it */
    bool finished;             /* thread -> loop: the POST ended, post_status etc. set */
    bool quit;                 /* loop -> thread: return (never while busy) */
    uv_async_t finished_async; /* the thread wakes the loop with it after finished */
};

struct notifier {
    uv_loop_t *loop;
    struct store *st;
    uv_timer_t tick; /* every NOTIFY_TICK_MS */
    uv_timer_t soon; /* notifier_kick(): 0 ms, coalesced */
    struct notify_sink *sinks;
    size_t n_sinks;
    int64_t backoff_base_ms;
    int64_t backoff_max_ms;
    bool closing;         /* notifier_close() was called */
    bool handles_closing; /* uv_close() was called on every handle */
    int open_handles;     /* handles whose close callback has not run */
    void (*done)(void *arg);
    void *done_arg;
};

static void sink_pump(struct notify_sink *s);

/* ------------------------------------------------------------- bodies */

/* "env/fx" -> "fx"; other targets as they are. */
static const char *
env_name_of(const char *target)
{
    return strncmp(target, "env/", 4) == 0 && target[4] ? target + 4 : target;
}

/* What a phase reads like after "environment fx ". */
static const char *
phase_sentence(const char *phase)
{
    static const struct {
        const char *phase, *words;
    } words[] = {
        {"pending", "is waiting to start"}, {"preparing", "is being prepared"},
        {"starting", "is starting"},        {"ready", "is ready"},
        {"sleeping", "went to sleep"},      {"failed", "failed"},
        {"deleting", "is being deleted"},   {"deleted", "was deleted"},
    };

    for (size_t i = 0; i < ARRAY_LEN(words); i++) {
        if (strcmp(words[i].phase, phase) == 0)
            return words[i].words;
    }
    return NULL;
}

/* env.phase: detail "starting -> ready" or "starting -> failed: reason". */
static void
phase_text(struct buf *b, const char *name, const char *detail)
{
    const char *arrow = strstr(detail, " -> ");
    const char *to, *colon, *words;
    char phase[32];
    size_t len;

    if (arrow == NULL) {
        buf_printf(b, "environment %s changed phase: %s", name, detail);
        return;
    }
    to = arrow + 4;
    colon = strstr(to, ": ");
    len = colon ? (size_t)(colon - to) : strlen(to);
    if (len >= sizeof(phase)) {
        buf_printf(b, "environment %s changed phase: %s", name, detail);
        return;
    }
    memcpy(phase, to, len);
    phase[len] = '\0';
    words = phase_sentence(phase);
    if (words != NULL)
        buf_printf(b, "environment %s %s (was %.*s)", name, words, (int)(arrow - detail), detail);
    else
        buf_printf(b, "environment %s is now %s (was %.*s)", name, phase, (int)(arrow - detail),
                   detail);
    if (colon != NULL)
        buf_printf(b, ": %s", colon + 2);
}

/*
 * The sentence a Slack message shows: "alice created environment fx
 * (project shop at main (abc1234)) from 127.0.0.1". Known actions read as
 * English; the rest as "<actor> <action> <target>: <detail> from <source>".
 */
static char *
event_sentence(const struct event *ev)
{
    const char *name = env_name_of(ev->target);
    const char *detail = ev->detail ? ev->detail : "";
    bool has_detail = detail[0] != '\0';
    struct buf b;

    buf_init(&b, SENTENCE_MAX_BYTES);
    if (strcmp(ev->action, "env.create") == 0) {
        buf_printf(&b, "%s created environment %s", ev->actor, name);
        if (has_detail)
            buf_printf(&b, " (%s)", detail);
    } else if (strcmp(ev->action, "env.delete") == 0) {
        buf_printf(&b, "%s deleted environment %s", ev->actor, name);
        if (has_detail)
            buf_printf(&b, " (%s)", detail);
    } else if (strcmp(ev->action, "env.expire") == 0) {
        buf_printf(&b, "environment %s expired and is being deleted", name);
        if (has_detail)
            buf_printf(&b, " (%s)", detail);
    } else if (strcmp(ev->action, "env.phase") == 0) {
        phase_text(&b, name, detail);
    } else if (strcmp(ev->action, "env.extend") == 0) {
        buf_printf(&b, "%s extended environment %s", ev->actor, name);
        if (has_detail)
            buf_printf(&b, " (%s)", detail);
    } else if (strcmp(ev->action, "env.visibility") == 0) {
        buf_printf(&b, "%s changed who sees environment %s", ev->actor, name);
        if (has_detail)
            buf_printf(&b, " (%s)", detail);
    } else {
        buf_printf(&b, "%s %s %s", ev->actor, ev->action, ev->target);
        if (has_detail)
            buf_printf(&b, ": %s", detail);
    }
    if (ev->source && ev->source[0])
        buf_printf(&b, " from %s", ev->source);
    if (b.len == 0) /* past the ceiling at once: say at least what happened */
        buf_printf(&b, "%.100s %.100s", ev->action, ev->target);
    return buf_steal(&b);
}

/* Slack reads &, < and > as markup; everything else is text. */
static char *
slack_escape(const char *s)
{
    struct buf b;

    buf_init(&b, strlen(s) * 5 + 1);
    for (; *s; s++) {
        if (*s == '&')
            buf_puts(&b, "&amp;");
        else if (*s == '<')
            buf_puts(&b, "&lt;");
        else if (*s == '>')
            buf_puts(&b, "&gt;");
        else
            buf_append(&b, s, 1);
    }
    return buf_steal(&b);
}

/* The length of the valid UTF-8 sequence at p (1 to 4), or 0 if it is not one. */
static size_t
utf8_seq_len(const unsigned char *p)
{
    unsigned lo = 0x80, hi = 0xBF; /* bounds of the second byte */
    size_t extra;

    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF) {
        extra = 1;
    } else if (p[0] >= 0xE0 && p[0] <= 0xEF) {
        extra = 2;
        lo = p[0] == 0xE0 ? 0xA0 : lo;
        hi = p[0] == 0xED ? 0x9F : hi;
    } else if (p[0] >= 0xF0 && p[0] <= 0xF4) {
        extra = 3;
        lo = p[0] == 0xF0 ? 0x90 : lo;
        hi = p[0] == 0xF4 ? 0x8F : hi;
    } else {
        return 0;
    }
    if (p[1] < lo || p[1] > hi) /* also stops at the NUL */
        return 0;
    for (size_t k = 2; k <= extra; k++) {
        if ((p[k] & 0xC0) != 0x80)
            return 0;
    }
    return extra + 1;
}

/*
 * A copy of s (NULL: "") that JSON can carry: each byte that is not part of
 * valid UTF-8 becomes '?'. The store holds whatever it was given (a git ref,
 * a reason from a process), and jansson refuses invalid UTF-8: without this
 * one odd event would block its sink forever.
 */
static char *
utf8_clean(const char *s)
{
    char *out = xstrdup(s ? s : "");

    for (unsigned char *p = (unsigned char *)out; *p;) {
        size_t n = utf8_seq_len(p);

        if (n == 0) {
            *p++ = '?';
            continue;
        }
        p += n;
    }
    return out;
}

static char *
slack_body(const struct event *ev)
{
    char *sentence = event_sentence(ev);
    char *clean = utf8_clean(sentence);
    char *text = slack_escape(clean);
    json_t *o = json_pack("{s:s}", "text", text);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;

    json_decref(o);
    free(text);
    free(clean);
    free(sentence);
    return body;
}

static char *
webhook_body(const struct event *ev)
{
    char *actor = utf8_clean(ev->actor), *source = utf8_clean(ev->source);
    char *action = utf8_clean(ev->action), *target = utf8_clean(ev->target);
    char *detail = utf8_clean(ev->detail);
    char at[40];
    json_t *o;
    char *body;

    time_format_rfc3339(ev->at_ms, at, sizeof(at));
    o = json_pack("{s:I,s:s,s:I,s:s,s:s,s:s,s:s,s:s}", "id", (json_int_t)ev->id, "at", at, "at_ms",
                  (json_int_t)ev->at_ms, "actor", actor, "source", source, "action", action,
                  "target", target, "detail", detail);
    body = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    free(actor);
    free(source);
    free(action);
    free(target);
    free(detail);
    return body;
}

/* "sha256=" and the lower-case hex HMAC-SHA256 of body under secret. */
static char *
signature(const char *secret, const char *body, size_t len)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    char *out;

    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)body, len, md,
             &md_len) == NULL)
        return NULL;
    out = xmalloc(7 + 2 * (size_t)md_len + 1);
    memcpy(out, "sha256=", 7);
    for (unsigned int i = 0; i < md_len; i++)
        snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
    return out;
}

/* A header line whose value comes from the event log: control characters
 * become '?', so a value cannot end the header early. */
static struct curl_slist *
add_header(struct curl_slist *list, const char *name, const char *value)
{
    char *line = xasprintf("%s: %s", name, value);
    struct curl_slist *grown;

    for (char *p = line; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = '?';
    }
    grown = curl_slist_append(list, line);
    free(line);
    if (grown == NULL) {
        curl_slist_free_all(list);
        return NULL;
    }
    return grown;
}

/* Body and headers of the POST for ev into s->post_*. 0 or -ENOMEM. */
static int
build_post(struct notify_sink *s, const struct event *ev)
{
    struct curl_slist *h = NULL;
    char id[32];
    char *sig = NULL;

    s->post_body = s->cfg.type == NOTIFY_SLACK ? slack_body(ev) : webhook_body(ev);
    if (s->post_body == NULL)
        return -ENOMEM;
    h = add_header(h, "Content-Type", "application/json");
    if (h)
        h = add_header(h, "User-Agent", "ephemera-notify");
    if (h)
        h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    if (h && s->cfg.type == NOTIFY_WEBHOOK) {
        snprintf(id, sizeof(id), "%" PRId64, ev->id);
        sig = signature(s->cfg.secret, s->post_body, strlen(s->post_body));
        h = add_header(h, "X-Ephemera-Event", ev->action);
        if (h)
            h = add_header(h, "X-Ephemera-Delivery", id);
        if (h && sig)
            h = add_header(h, "X-Ephemera-Signature", sig);
        if (sig == NULL) {
            curl_slist_free_all(h);
            h = NULL;
        }
        free(sig);
    }
    if (h == NULL)
        return -ENOMEM;
    s->post_headers = h;
    s->post_event_id = ev->id;
    return 0;
}

static void
post_clear(struct notify_sink *s)
{
    free(s->post_body);
    s->post_body = NULL;
    curl_slist_free_all(s->post_headers);
    s->post_headers = NULL;
    s->post_status = 0;
    s->post_curl_rc = CURLE_OK;
    s->post_error[0] = '\0';
}

/* ------------------------------------------------------------- the POST */

static size_t
discard_body(char *data, size_t size, size_t nmemb, void *arg)
{
    return size * nmemb;
}

/* On the sink's thread: the POST, blocking, within NOTIFY_TIMEOUT_MS. */
static void
post_work(struct notify_sink *s)
{
    CURL *curl = curl_easy_init();
    CURLcode rc;

    s->post_status = 0;
    s->post_error[0] = '\0';
    if (curl == NULL) {
        s->post_curl_rc = CURLE_FAILED_INIT;
        return;
    }
    curl_easy_setopt(curl, CURLOPT_URL, s->cfg.url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, s->post_body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(s->post_body));
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, s->post_headers);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)NOTIFY_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)NOTIFY_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* required on threads */
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, s->post_error);
    rc = curl_easy_perform(curl);
    s->post_curl_rc = (int)rc;
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &s->post_status);
    else if (s->post_error[0] == '\0')
        snprintf(s->post_error, sizeof(s->post_error), "%s", curl_easy_strerror(rc));
    curl_easy_cleanup(curl);
}

/* ------------------------------------------------------------- cursors */

static void
save_cursor(struct notify_sink *s)
{
    struct eph_err err = {0};
    char value[32];

    snprintf(value, sizeof(value), "%" PRId64, s->cursor);
    /* Not saved: the next start redelivers from the old cursor, which is
     * what at least once allows. */
    if (store_meta_set(s->n->st, s->cursor_key, value, &err) < 0)
        log_warn("cannot save cursor", "sink=%s event=%" PRId64 " error=%s", s->cfg.name, s->cursor,
                 log_q(err.msg));
}

/* The newest event id, 0 for an empty log. */
static int
newest_event_id(struct store *st, int64_t *out, struct eph_err *err)
{
    struct event **evs = NULL;
    size_t n = 0;
    int rc = store_event_list(st, NULL, -1, 1, &evs, &n, err);

    if (rc < 0)
        return rc;
    *out = n > 0 ? evs[n - 1]->id : 0;
    event_list_free(evs, n);
    return 0;
}

/* Reads the sink's cursor, or sets it to the newest event on its first start. */
static int
load_cursor(struct notify_sink *s, struct eph_err *err)
{
    char *value = NULL, *end;
    long long v;
    int rc = store_meta_get(s->n->st, s->cursor_key, &value, err);

    if (rc == EPH_ENOTFOUND) {
        char text[32];

        eph_err_clear(err);
        rc = newest_event_id(s->n->st, &s->cursor, err);
        if (rc == 0) {
            snprintf(text, sizeof(text), "%" PRId64, s->cursor);
            rc = store_meta_set(s->n->st, s->cursor_key, text, err);
        }
        if (rc == 0)
            log_info("sink starts", "sink=%s type=%s url=%s after_event=%" PRId64, s->cfg.name,
                     notify_sink_type_name(s->cfg.type), s->url_for_logs, s->cursor);
        return rc;
    }
    if (rc < 0)
        return rc;
    errno = 0;
    v = strtoll(value, &end, 10);
    if (value[0] == '\0' || *end != '\0' || errno != 0 || v < 0) {
        rc = eph_err_set(err, EPH_ESTORE, "meta '%s' holds '%.40s', not an event id", s->cursor_key,
                         value);
    } else {
        s->cursor = v;
        log_info("sink resumes", "sink=%s type=%s url=%s after_event=%" PRId64, s->cfg.name,
                 notify_sink_type_name(s->cfg.type), s->url_for_logs, s->cursor);
    }
    free(value);
    return rc;
}

/* ------------------------------------------------------------- delivery */

static int64_t
backoff_ms(const struct notifier *n, int failures)
{
    int64_t ms = n->backoff_base_ms;

    for (int i = 1; i < failures && ms < n->backoff_max_ms; i++)
        ms *= 2;
    return ms < n->backoff_max_ms ? ms : n->backoff_max_ms;
}

static void
on_retry_due(uv_timer_t *t)
{
    sink_pump(container_of(t, struct notify_sink, retry));
}

/* The POST of s failed (or never started): try the same event later. */
static void
post_failed(struct notify_sink *s, long status, const char *error)
{
    int64_t delay;

    s->failures++;
    delay = backoff_ms(s->n, s->failures);
    log_warn("delivery failed",
             "sink=%s url=%s event=%" PRId64 " status=%ld error=%s "
             "attempt=%d retry_in_ms=%" PRId64,
             s->cfg.name, s->url_for_logs, s->post_event_id, status, log_q(error), s->failures,
             delay);
    if (!s->n->closing)
        uv_timer_start(&s->retry, on_retry_due, (uint64_t)delay, 0);
}

static void maybe_finish(struct notifier *n);

/* Back on the loop after post_work(). */
static void
post_done(struct notify_sink *s)
{
    struct notifier *n = s->n;
    char reason[CURL_ERROR_SIZE + 32];

    s->busy = false;
    if (s->post_curl_rc == CURLE_OK && s->post_status >= 200 && s->post_status < 300) {
        if (s->failures > 0)
            log_info("delivery recovered", "sink=%s event=%" PRId64 " failed_attempts=%d",
                     s->cfg.name, s->post_event_id, s->failures);
        s->failures = 0;
        s->cursor = s->post_event_id;
        save_cursor(s);
        post_clear(s);
        sink_pump(s); /* the next one, if any (not while closing) */
    } else {
        if (s->post_curl_rc != CURLE_OK)
            snprintf(reason, sizeof(reason), "%s", s->post_error);
        else
            snprintf(reason, sizeof(reason), "answered %ld", s->post_status);
        post_failed(s, s->post_status, reason);
        post_clear(s);
    }
    if (n->closing)
        maybe_finish(n);
}

/* The sink's thread: waits for a job, POSTs, tells the loop; until quit. */
static void
sink_thread(void *arg)
{
    struct notify_sink *s = arg;

    uv_mutex_lock(&s->lock);
    for (;;) {
        while (!s->job && !s->quit)
            uv_cond_wait(&s->wake, &s->lock);
        if (s->quit)
            break;
        s->job = false;
        uv_mutex_unlock(&s->lock);
        post_work(s);
        uv_mutex_lock(&s->lock);
        s->finished = true;
        uv_async_send(&s->finished_async);
    }
    uv_mutex_unlock(&s->lock);
}

/* On the loop: the sink's thread finished a POST (sends coalesce: look at
 * the flag). */
static void
on_post_finished(uv_async_t *a)
{
    struct notify_sink *s = container_of(a, struct notify_sink, finished_async);
    bool finished;

    uv_mutex_lock(&s->lock);
    finished = s->finished;
    s->finished = false;
    uv_mutex_unlock(&s->lock);
    if (finished)
        post_done(s);
}

/* Starts the POST of ev on the sink's thread; if it cannot be built,
 * schedules a retry. */
static void
post_start(struct notify_sink *s, const struct event *ev)
{
    int rc = build_post(s, ev);

    if (rc != 0) {
        s->post_event_id = ev->id;
        post_failed(s, 0, "cannot build the request");
        post_clear(s);
        return;
    }
    s->busy = true;
    uv_mutex_lock(&s->lock);
    s->job = true;
    uv_cond_signal(&s->wake);
    uv_mutex_unlock(&s->lock);
}

/*
 * Looks at the events after s's cursor: skips (and records) those its
 * patterns do not want, and starts the POST of the first one it wants.
 * Does nothing while a POST is in flight or a backoff runs.
 */
static void
sink_pump(struct notify_sink *s)
{
    struct notifier *n = s->n;

    for (int batch = 0; batch < PUMP_MAX_BATCHES; batch++) {
        struct eph_err err = {0};
        struct event **evs = NULL;
        const struct event *wanted = NULL;
        int64_t before = s->cursor;
        size_t count = 0;

        if (n->closing || s->busy || uv_is_active((uv_handle_t *)&s->retry))
            return;
        if (store_event_list(n->st, NULL, s->cursor, NOTIFY_BATCH, &evs, &count, &err) < 0) {
            if (!s->read_failing)
                log_warn("cannot read events", "sink=%s error=%s", s->cfg.name, log_q(err.msg));
            s->read_failing = true;
            return;
        }
        s->read_failing = false;
        for (size_t i = 0; i < count && wanted == NULL; i++) {
            if (notify_event_wanted(&s->cfg, evs[i]->action))
                wanted = evs[i];
            else
                s->cursor = evs[i]->id;
        }
        if (s->cursor != before)
            save_cursor(s);
        if (wanted != NULL)
            post_start(s, wanted);
        event_list_free(evs, count);
        if (wanted != NULL || count < NOTIFY_BATCH)
            return;
    }
    notifier_kick(n); /* more to skip: on the next turn */
}

static void
pump_all(struct notifier *n)
{
    for (size_t i = 0; i < n->n_sinks; i++)
        sink_pump(&n->sinks[i]);
}

static void
on_tick(uv_timer_t *t)
{
    pump_all(container_of(t, struct notifier, tick));
}

static void
on_kicked(uv_timer_t *t)
{
    pump_all(container_of(t, struct notifier, soon));
}

void
notifier_kick(struct notifier *n)
{
    if (n->closing || uv_is_active((uv_handle_t *)&n->soon))
        return;
    uv_timer_start(&n->soon, on_kicked, 0, 0);
}

void
notifier_set_backoff(struct notifier *n, int64_t base_ms, int64_t max_ms)
{
    n->backoff_base_ms = base_ms > 0 ? base_ms : 1;
    n->backoff_max_ms = max_ms >= n->backoff_base_ms ? max_ms : n->backoff_base_ms;
}

/* ------------------------------------------------------------- life */

/* scheme://host[:port] of url, without user info: what logs may show. */
static char *
url_origin(const char *url)
{
    char *clean = redact_credentials(url);
    char *rest = strstr(clean, "://");

    if (rest != NULL) {
        rest += 3;
        rest += strcspn(rest, "/?#");
        *rest = '\0';
    }
    return clean;
}

static void
sink_cfg_copy(struct notify_sink_cfg *dst, const struct notify_sink_cfg *src)
{
    dst->name = xstrdup(src->name);
    dst->type = src->type;
    dst->url = xstrdup(src->url);
    dst->secret = xstrdup(src->secret);
    dst->n_events = src->n_events;
    dst->events = xcalloc(src->n_events ? src->n_events : 1, sizeof(*dst->events));
    for (size_t i = 0; i < src->n_events; i++)
        dst->events[i] = xstrdup(src->events[i]);
}

static void
notifier_free(struct notifier *n)
{
    for (size_t i = 0; i < n->n_sinks; i++) {
        struct notify_sink *s = &n->sinks[i];

        post_clear(s);
        free(s->cfg.name);
        free(s->cfg.url);
        if (s->cfg.secret != NULL)
            explicit_bzero(s->cfg.secret, strlen(s->cfg.secret));
        free(s->cfg.secret);
        for (size_t j = 0; j < s->cfg.n_events; j++)
            free(s->cfg.events[j]);
        free(s->cfg.events);
        free(s->url_for_logs);
        free(s->cursor_key);
        uv_cond_destroy(&s->wake);
        uv_mutex_destroy(&s->lock);
    }
    free(n->sinks);
    free(n);
    curl_global_cleanup(); /* balances notifier_new()'s curl_global_init() */
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct notifier *n = h->data;
    void (*done)(void *) = n->done;
    void *arg = n->done_arg;

    if (--n->open_handles > 0)
        return;
    notifier_free(n);
    if (done != NULL)
        done(arg);
}

/* Tells the sinks' threads to return and joins them. Only while no POST is
 * in flight: each thread is then waiting for a job, so the joins are quick. */
static void
stop_threads(struct notifier *n)
{
    for (size_t i = 0; i < n->n_sinks; i++) {
        struct notify_sink *s = &n->sinks[i];

        if (!s->thread_started)
            continue;
        EPH_ASSERT(!s->busy);
        uv_mutex_lock(&s->lock);
        s->quit = true;
        uv_cond_signal(&s->wake);
        uv_mutex_unlock(&s->lock);
        uv_thread_join(&s->thread);
        s->thread_started = false;
    }
}

static void
close_handles(struct notifier *n)
{
    n->handles_closing = true;
    stop_threads(n);
    n->tick.data = n;
    n->soon.data = n;
    uv_close((uv_handle_t *)&n->tick, on_handle_closed);
    uv_close((uv_handle_t *)&n->soon, on_handle_closed);
    for (size_t i = 0; i < n->n_sinks; i++) {
        n->sinks[i].retry.data = n;
        n->sinks[i].finished_async.data = n;
        uv_close((uv_handle_t *)&n->sinks[i].retry, on_handle_closed);
        uv_close((uv_handle_t *)&n->sinks[i].finished_async, on_handle_closed);
    }
}

/* Closing: once no POST is in flight, close the handles. */
static void
maybe_finish(struct notifier *n)
{
    if (n->handles_closing)
        return;
    for (size_t i = 0; i < n->n_sinks; i++) {
        if (n->sinks[i].busy)
            return; /* post_done() calls again */
    }
    close_handles(n);
}

int
notifier_new(uv_loop_t *loop, struct store *st, const struct notify_sink_cfg *sinks, size_t n_sinks,
             struct notifier **out, struct eph_err *err)
{
    struct notifier *n = xcalloc(1, sizeof(*n));
    int rc = 0;

    *out = NULL;
    /* Reference-counted; before the first worker thread can use curl. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        free(n);
        return eph_err_set(err, EPH_EINTERNAL, "cannot initialise libcurl");
    }
    n->loop = loop;
    n->st = st;
    n->backoff_base_ms = NOTIFY_BACKOFF_BASE_MS;
    n->backoff_max_ms = NOTIFY_BACKOFF_MAX_MS;
    n->n_sinks = n_sinks;
    n->sinks = xcalloc(n_sinks ? n_sinks : 1, sizeof(*n->sinks));
    for (size_t i = 0; i < n_sinks; i++) {
        struct notify_sink *s = &n->sinks[i];

        s->n = n;
        sink_cfg_copy(&s->cfg, &sinks[i]);
        s->url_for_logs = url_origin(s->cfg.url);
        s->cursor_key = xasprintf("notify.%s.cursor", s->cfg.name);
        EPH_ASSERT(uv_mutex_init(&s->lock) == 0 && uv_cond_init(&s->wake) == 0);
    }
    /* Cursors before handles: a failure here frees at once. */
    for (size_t i = 0; i < n_sinks && rc == 0; i++) {
        rc = load_cursor(&n->sinks[i], err);
        if (rc < 0)
            eph_err_prefix(err, EPH_ESTORE, "notify sink '%s': ", n->sinks[i].cfg.name);
    }
    /* Threads before handles too: they touch finished_async only after a
     * job, which no one gives them before we return. */
    for (size_t i = 0; i < n_sinks && rc == 0; i++) {
        struct notify_sink *s = &n->sinks[i];
        int urc = uv_thread_create(&s->thread, sink_thread, s);

        if (urc != 0)
            rc = eph_err_set(err, EPH_EINTERNAL, "notify sink '%s': cannot start its thread: %s",
                             s->cfg.name, uv_strerror(urc));
        else
            s->thread_started = true;
    }
    if (rc < 0) {
        stop_threads(n);
        notifier_free(n);
        return rc;
    }
    uv_timer_init(loop, &n->tick);
    uv_timer_init(loop, &n->soon);
    for (size_t i = 0; i < n_sinks; i++) {
        uv_timer_init(loop, &n->sinks[i].retry);
        uv_async_init(loop, &n->sinks[i].finished_async, on_post_finished);
    }
    n->open_handles = 2 + 2 * (int)n_sinks;
    if (n_sinks > 0) {
        uv_timer_start(&n->tick, on_tick, NOTIFY_TICK_MS, NOTIFY_TICK_MS);
        notifier_kick(n); /* what was recorded while we were down */
    }
    *out = n;
    return 0;
}

void
notifier_close(struct notifier *n, void (*done)(void *arg), void *arg)
{
    EPH_ASSERT(!n->closing);
    n->closing = true;
    n->done = done;
    n->done_arg = arg;
    uv_timer_stop(&n->tick);
    uv_timer_stop(&n->soon);
    for (size_t i = 0; i < n->n_sinks; i++)
        uv_timer_stop(&n->sinks[i].retry);
    maybe_finish(n);
}
