/*
 * gateway/proxy_int.h - what the reverse proxy's own files share: the pure
 * HTTP head and framing code (proxy_http.c), the pages the gateway answers
 * itself (pages.c), and the objects of one worker loop: the worker
 * (gateway.c), client connections (proxy.c) and upstream connections with
 * their keep-alive pool (upstream.c).
 *
 * Threads: the pure functions run anywhere; everything holding a uv handle
 * belongs to one worker loop and is touched only from it, except the
 * worker's route slot and metrics, which carry their own mutexes, and the
 * environments' activity slots (activity.c), shared through relaxed atomics.
 *
 * Buffers: every read lands in a fixed-size block from the worker's free
 * list. Body bytes are forwarded straight out of the block they were read
 * into: a write that cannot finish at once keeps a reference to the block,
 * which returns to the free list when the last reference goes. No body is
 * ever copied or held whole.
 */
#ifndef EPH_GATEWAY_PROXY_INT_H
#define EPH_GATEWAY_PROXY_INT_H

#include <http_parser.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "auth/index.h"
#include "core/access.h"
#include "gateway/gateway.h"
#include "gateway/routes.h"
#include "util/buf.h"

/* One read lands in one block; 64 KiB matches what a socket read usually
 * returns under load and keeps a pipelined backlog small. */
#define GW_BLOCK_BYTES (64 * 1024)
/* Free blocks a worker keeps for reuse (4 MiB); beyond, they are freed. */
#define GW_FREE_BLOCKS_MAX 64
/* Unwritten bytes towards one peer above which its source stops reading. */
#define GW_HIGH_WATER_BYTES (256 * 1024)
/* ... and at or below which the source reads again. */
#define GW_LOW_WATER_BYTES (64 * 1024)
/* Header lines of one head; more is an attack or a bug: 431 (502 upstream). */
#define GW_PROXY_MAX_HEADERS 100
/* A response head may carry large cookies; it gets at least this ceiling. */
#define GW_RESPONSE_HEAD_MIN_BYTES (64 * 1024)
/* Buffers of one gathered write; beyond, the batch is flushed early. */
#define GW_BATCH_BUFS 16
/* Chunk-size lines and CRLFs of one gathered write. */
#define GW_BATCH_SCRATCH 320
/* A host name of an upstream is resolved again after this long. */
#define GW_RESOLVE_TTL_MS 30000
/* After a last response and a FIN, how long input is read and dropped so
 * that closing does not reset the connection before the client has read it. */
#define GW_LINGER_MS 1000
/* Duration histogram: upper bounds in seconds (Prometheus "le"). */
#define GW_HIST_N 13
/* A held browser navigation gets the "waking up" page after this long (it
 * reloads itself, so the browser shows progress rather than a spinner). */
#define GW_HOLD_BROWSER_MS 1000
#define GW_HOLD_RETELL_MS 1000 /* a held request reminds the control loop this often */
/* cfg->on_wake is called at most this often per environment and worker. */
#define GW_WAKE_TELL_MS 100

/* ------------------------------------------------------------- pure HTTP (proxy_http.c) */

/* What one call of a feed function stopped at. */
enum gw_feed_event {
    GW_FEED_MORE,  /* every byte used; give more */
    GW_FEED_HEAD,  /* a head is complete (parser paused: act on it, then feed on) */
    GW_FEED_DONE,  /* a message is complete (paused until the next one is wanted) */
    GW_FEED_ERROR, /* refused: error_status and error_reason say why */
};

/* How a body is delimited. */
enum gw_framing {
    GW_FRAME_NONE,    /* no body */
    GW_FRAME_LENGTH,  /* Content-Length bytes */
    GW_FRAME_CHUNKED, /* chunked transfer coding */
    GW_FRAME_CLOSE,   /* until the connection closes (responses only) */
};

/* Receives body bytes, decoded from any chunked framing; `at` is borrowed
 * from the fed buffer and valid until the feed call returns. */
typedef void gw_body_cb(void *arg, const char *at, size_t len);

/* One header: offsets into gw_head.text, which also NUL-terminates both. */
struct gw_hdr {
    uint32_t name_off, name_len;
    uint32_t value_off, value_len; /* surrounding blanks removed */
};

/* The text of one head, reused from message to message. */
struct gw_head {
    struct buf text; /* first token, NUL, then name NUL value NUL ...; ceiling max_bytes */
    struct gw_hdr hdrs[GW_PROXY_MAX_HEADERS];
    size_t n_hdrs;
    uint32_t first_len; /* the URL (requests) or the reason phrase (responses) */
    int last;           /* which callback added the last bytes (private) */
    size_t bytes;       /* raw bytes of the head so far (request line and CRLFs too) */
    size_t max_bytes;   /* ceiling of `bytes` */
};

/* The streaming parser of the requests of one client connection. */
struct gw_reqp {
    http_parser parser;
    struct gw_head head;
    gw_body_cb *on_body; /* may be NULL: body bytes are dropped */
    void *body_arg;
    int error_status;         /* 400, 405, 431, 505 once refused */
    const char *error_reason; /* static text */
    bool in_message;          /* the first byte of the current request arrived */
    bool head_done;           /* HEAD was reported for the current request */
    bool done;                /* DONE was reported: paused until gw__reqp_next() */
    bool head_event;          /* private: paused at the head */
    /* of the current request, valid from HEAD on: */
    enum http_method method;
    int http_major, http_minor;
    bool keep_alive;      /* the client allows another request after this one */
    bool upgrade;         /* Upgrade + Connection: upgrade (never CONNECT: refused) */
    bool expect_continue; /* Expect: 100-continue */
    enum gw_framing framing;
    uint64_t content_length; /* GW_FRAME_LENGTH only */
    int host_idx;            /* the Host header's index, -1 if none */
};

void gw__reqp_init(struct gw_reqp *p, size_t max_head_bytes);
void gw__reqp_release(struct gw_reqp *p);
/* Forgets the finished request and lets the parser go on with the next one. */
void gw__reqp_next(struct gw_reqp *p);
/*
 * Parses bytes and returns how many it used; stops at a complete head, a
 * complete request, or a refusal (*ev). Body bytes go to p->on_body. Call it
 * again after HEAD to go on; after DONE it uses nothing until gw__reqp_next().
 * Never call it with len 0.
 */
size_t gw__reqp_feed(struct gw_reqp *p, const char *data, size_t len, enum gw_feed_event *ev);
/* The request target as sent (borrowed from the head). */
const char *gw__reqp_target(const struct gw_reqp *p, size_t *len);
/* The host to route by: the authority of an absolute-form target, else the
 * Host header; NULL if neither. */
const char *gw__reqp_host(const struct gw_reqp *p, size_t *len);
/* The path of the target without its query, for the access log (borrowed
 * from the head; *len bytes, not NUL-terminated). */
const char *gw__reqp_path(const struct gw_reqp *p, size_t *len);
/* A header's value by case-insensitive name (the first), or NULL. */
const char *gw__head_find(const struct gw_head *h, const char *name, size_t *len);

/* The cookies of the platform, never passed to a service. */
#define GW_HOST_COOKIE "eph_host"
#define GW_SESSION_COOKIE "eph_session"

/* Who a forwarded request comes from, as the service is told. The values
 * are written as they are, so they must hold no control character: the
 * guard's names (struct gw_guard_pass) have each replaced by '?'. */
struct gw_identity {
    const char *user;  /* X-Ephemera-User; NULL or "": not sent */
    const char *email; /* X-Ephemera-Email; NULL or "": not sent */
    const char *role;  /* X-Ephemera-Role; NULL or "": not sent */
    size_t user_len, email_len, role_len;
};

/*
 * Writes the request head for the upstream into out (reset first): the
 * request line in origin form with HTTP/1.1, the client's headers without
 * the hop-by-hop ones (and those its Connection header names), framing
 * headers of our own (the body is re-encoded, never passed through raw),
 * X-Forwarded-For (appended to), X-Forwarded-Proto, X-Forwarded-Host and a
 * Forwarded element. The Host header goes as sent.
 *
 * With strip_credentials (every service host), the platform's credentials
 * never reach the service: the GW_HOST_COOKIE and GW_SESSION_COOKIE pairs are
 * cut out of Cookie headers (a header left empty is dropped) and an
 * "Authorization: Bearer eph_..." header is dropped. X-Ephemera-* headers
 * from the client are always dropped; `id` (may be NULL) adds ours.
 * 0 or EPH_ETOOBIG.
 */
int gw__build_upstream_head(const struct gw_reqp *p, const char *client_addr,
                            bool strip_credentials, const struct gw_identity *id, struct buf *out);

/* The parser of one response from an upstream. */
struct gw_respp {
    http_parser parser;
    struct gw_head head;
    gw_body_cb *on_body;
    void *body_arg;
    bool head_request;    /* the request was HEAD: no body follows */
    bool upgrade_request; /* the request asked for an Upgrade: 101 allowed */
    bool head_done, done, head_event;
    const char *error_reason; /* static text once refused */
    /* of the current response, valid from HEAD on: */
    int status;
    bool interim;  /* 1xx other than 101: a final response follows */
    bool switched; /* 101 to an upgrade request: raw bytes follow */
    enum gw_framing framing;
    uint64_t content_length;
    bool keep_alive; /* at DONE: the upstream connection may be reused */
};

void gw__respp_init(struct gw_respp *p, size_t max_head_bytes);
void gw__respp_release(struct gw_respp *p);
/* Readies the parser for the response to a new request. */
void gw__respp_start(struct gw_respp *p, bool head_request, bool upgrade_request);
/* After the DONE of an interim (1xx) response: parse the next head. */
void gw__respp_continue(struct gw_respp *p);
/* Like gw__reqp_feed, for a response. ERROR means the upstream misbehaved. */
size_t gw__respp_feed(struct gw_respp *p, const char *data, size_t len, enum gw_feed_event *ev);
/* The upstream closed: DONE if that ends a close-delimited body, else ERROR. */
enum gw_feed_event gw__respp_eof(struct gw_respp *p);

/* How a response goes to the client. */
struct gw_resp_plan {
    enum gw_framing framing; /* to the client: NONE, LENGTH, CHUNKED or CLOSE */
    bool close;              /* close the client connection after it */
};

/* Decides the client framing of a parsed response head. */
void gw__plan_response(const struct gw_respp *sp, int client_major, int client_minor,
                       bool client_keep_alive, struct gw_resp_plan *out);
/*
 * Writes the response head for the client into out (reset first): the
 * upstream's status and reason, its headers without the hop-by-hop ones,
 * framing headers per plan, and Connection: close / keep-alive / upgrade.
 * For interim and 101 heads, plan may be NULL. 0 or EPH_ETOOBIG.
 */
int gw__build_client_head(const struct gw_respp *sp, const struct gw_resp_plan *plan,
                          bool client_http10, struct buf *out);
/* Formats a chunk-size line ("1f4\r\n") into out (>= 20 bytes); returns its length. */
size_t gw__chunk_line(char *out, size_t len);

/* ------------------------------------------------------------- pages (pages.c) */

/* What a page needs to know about the request it answers. */
struct gw_page_req {
    bool html;       /* the client accepts text/html (a browser) */
    bool head_only;  /* a HEAD request: the head without the body */
    bool keep_alive; /* the connection stays open after the page */
    const struct gw_host_pattern *pattern;
    int port; /* for the URLs on listings: the port the client used */
};

/* True if an Accept header value asks for HTML. */
bool gw__accepts_html(const char *accept, size_t len);
/* 404 listing env's services, or (env NULL) every environment of routes. */
void gw__page_not_found(struct buf *out, const struct gw_page_req *pr,
                        const struct gw_routes *routes, const struct gw_route_env *env,
                        const char *host, size_t host_len);
/* 503 with Retry-After: 2, the environment's phase and the service's state. */
void gw__page_unavailable(struct buf *out, const struct gw_page_req *pr,
                          const struct gw_route_service *svc);
/* Any other status the gateway answers itself (400, 408, 431, 502, 504 ...). */
void gw__page_error(struct buf *out, const struct gw_page_req *pr, int status, const char *message);
/* 503 "waking up fx…" for a held browser navigation: Retry-After: 1, and
 * the page reloads itself every second. */
void gw__page_waking(struct buf *out, const struct gw_page_req *pr,
                     const struct gw_route_service *svc);

/* ------------------------------------------------------------- activity (activity.c) */

/* What one worker keeps about one environment; only that worker's loop
 * touches it. */
struct gw_hold_env {
    int n_held;            /* requests for the env parked on this worker */
    bool told;             /* cfg->on_wake was called (at told_ms) */
    uint64_t told_ms;      /* loop time of that call */
    uint64_t told_version; /* version of the route table the request had */
};

/*
 * The activity of one environment: one per environment id for the
 * gateway's lifetime, so its address is stable and route tables, requests
 * in flight and held requests may point at it whatever table is current.
 * Workers write the atomics relaxed (a reader wants a recent value, not an
 * ordering) and only when the value changes, so a busy environment costs
 * one store per clock tick, not per request. Aligned to a cache line:
 * slots of different environments never share one.
 */
struct gw_activity {
    _Atomic int64_t last_ms; /* wall ms (coarse clock) of the last request to a service
                                or of the end of the last exchange; 0: none yet */
    atomic_int open;         /* exchanges with its services open now (incl. tunnels) */
    atomic_int what;         /* (service index + 1) << 1 | 1 if a WebSocket; 0: none */
    int64_t env_id;
    char **names; /* control loop: service names by index, append only */
    size_t n_names;
    struct gw_hold_env per_worker[]; /* by worker index */
};

/* Every slot, by environment id; the control loop's alone. */
struct gw_activity_set {
    struct gw_activity **slots; /* open addressing, at most half full */
    size_t n_slots, n;
    int n_workers;
};

void gw__activity_set_init(struct gw_activity_set *set, int n_workers);
/* Frees every slot: no worker may run any more. */
void gw__activity_set_release(struct gw_activity_set *set);
/* The slot of env_id; made (zeroed) if create, else NULL if none. Control loop. */
struct gw_activity *gw__activity_get(struct gw_activity_set *set, int64_t env_id, bool create);
/* Points each environment of r at its slot and each service at its name's
 * index. Control loop, before r is shared. */
void gw__activity_attach(struct gw_activity_set *set, struct gw_routes *r);
/* gw_activity() over a set. Control loop. */
bool gw__activity_read(struct gw_activity_set *set, int64_t env_id, int64_t *last_ms, int *open,
                       char *what, size_t what_size);
/* The wall clock in ms at the kernel's tick (CLOCK_REALTIME_COARSE): a
 * few ns, a few ms coarse. */
int64_t gw__coarse_wall_ms(void);

/* Records a request to service `idx` (a WebSocket if ws) of a. Any worker. */
static inline void
gw__activity_touch(struct gw_activity *a, int idx, bool ws, int64_t now_ms)
{
    int what = ((idx + 1) << 1) | (ws ? 1 : 0);

    if (atomic_load_explicit(&a->last_ms, memory_order_relaxed) != now_ms)
        atomic_store_explicit(&a->last_ms, now_ms, memory_order_relaxed);
    if (atomic_load_explicit(&a->what, memory_order_relaxed) != what)
        atomic_store_explicit(&a->what, what, memory_order_relaxed);
}

/* ------------------------------------------------------------- sign-in guard (guard.c) */

/* One request to a service host, as the guard sees it (all borrowed). */
struct gw_guard_req {
    const struct gw_head *head;
    const char *host; /* as sent, port included */
    size_t host_len;
    const char *target; /* the request target */
    size_t target_len;
    const char *path; /* the target without its query; may be "" if not under /_eph/ */
    size_t path_len;
    const struct gw_route_env *env; /* NULL: no such environment */
    /* Fills in how a page of ours is sent to this client: asked only when
     * the guard answers, which a signed-in request never has it do. */
    void (*page_req)(void *page_ctx, struct gw_page_req *pr);
    void *page_ctx;
    bool safe_method; /* GET or HEAD: a browser may be redirected */
};

/* Who passed: a user (principal, whose user is `user`) or a share link
 * (link); what the service is told of them (X-Ephemera-*). */
struct gw_guard_pass {
    struct principal principal;
    bool link;
    /* control characters made '?': they go to the service as header values */
    char user[AUTH_USER_MAX];   /* "" for a link */
    char email[AUTH_EMAIL_MAX]; /* "" if unknown */
    size_t user_len, email_len;
};

enum gw_guard_step {
    GW_GUARD_PASS,     /* *out filled: proxy the request */
    GW_GUARD_ANSWERED, /* `page` holds a whole response with *status */
};

struct gw_worker;
/* Checks a request to a service host when sign-in is on (w->cfg->auth_ix). */
enum gw_guard_step gw__guard(struct gw_worker *w, const struct gw_guard_req *gr, struct buf *page,
                             int *status, struct gw_guard_pass *out);

/* ------------------------------------------------------------- loop objects */

/* A read buffer, reference counted within one worker. */
struct gw_block {
    struct gw_block *next_free;
    int refs;
    uint32_t cap; /* bytes in data: GW_BLOCK_BYTES, fewer for a held request's copy */
    char data[];
};

/* Bytes gathered for one writev while an event is handled: heads and
 * scratch copied only if the write must wait; body slices point into `blk`,
 * of which the batch holds a reference. */
struct gw_batch {
    uv_buf_t bufs[GW_BATCH_BUFS];
    unsigned n;
    size_t bytes;
    struct gw_block *blk; /* the block body slices point into (a reference), or NULL */
    size_t scratch_len;
    char scratch[GW_BATCH_SCRATCH];
};

/* A write that could not finish at once. */
struct gw_wreq {
    uv_write_t req;
    struct gw_wreq *next_free;
    struct gw_block *blk; /* a reference, or NULL */
    size_t len;           /* bytes it carries, for the pending counts */
    bool to_client;       /* whose pending count it is in */
    size_t copy_cap;      /* size of copy */
    char *copy;           /* bytes not in blk */
    uv_buf_t bufs[GW_BATCH_BUFS];
};

enum gw_uperr {
    GW_UPERR_REFUSED, /* connect refused or unreachable: 502 */
    GW_UPERR_CONNECT_TIMEOUT,
    GW_UPERR_FIRST_BYTE_TIMEOUT,
    GW_UPERR_RESET, /* closed or reset before the response was complete */
    GW_UPERR_BAD_RESPONSE,
    GW_UPERR_RESOLVE,
    GW_UPERR_N
};

/* One series of eph_gateway_requests_total in a worker. */
struct gw_series {
    struct gw_series *next;
    uint64_t hash;
    char *env, *service;
    int code;
    uint64_t count;
};

/* A worker's counters; guarded by the worker's metrics_lock. */
struct gw_wmetrics {
    struct gw_series **slots; /* chained hash of series */
    size_t n_slots, n_series;
    uint64_t hist[GW_HIST_N + 1]; /* per bucket (not cumulative); last: +Inf */
    double hist_sum_s;
    uint64_t hist_count;
    uint64_t upstream_errors[GW_UPERR_N];
};

/* An upstream address and its idle connections (upstream.c). */
struct gw_pool_key {
    struct gw_pool_key *next; /* hash chain */
    uint64_t hash;
    char key[96]; /* "host:port" */
    char *host;
    int port;
    struct gw_upstream *idle; /* most recently used first */
    size_t n_idle;
    struct sockaddr_storage addr;
    bool addr_ok;
    uint64_t resolved_ms; /* loop time of the last resolution */
};

struct gw_pool {
    struct gw_pool_key **slots;
    size_t n_slots, n_keys;
};

struct gw_client;
struct gw_upstream;

struct gw_worker {
    struct gateway *gw;
    const struct gw_config *cfg;
    const struct gw_host_pattern *pattern;
    int index;
    uv_loop_t loop;
    uv_thread_t thread;
    uv_tcp_t listener;
    uv_async_t wake;          /* a table was published, or stop was asked */
    uv_check_t failed_check;  /* handles writes that failed in callbacks (proxy.c) */
    struct gw_client *failed; /* clients with such a failure */
    uv_timer_t stop_timer;
    uv_mutex_t slot_lock; /* guards slot, stop_requested, stop_deadline_ms */
    struct gw_routes *slot;
    bool stop_requested;
    int64_t stop_deadline_ms;
    struct gw_routes *routes; /* current table; this loop only */
    bool stopping;            /* listener closed, finishing what is in flight */
    bool exiting;             /* the worker's own handles are closing */
    struct gw_client *clients;
    size_t n_clients;
    struct gw_client *held_head, *held_tail; /* requests held for waking envs, oldest first */
    size_t n_held;
    struct gw_upstream *upstreams; /* every upstream connection of this loop */
    size_t n_upstreams;
    struct gw_pool pool;
    struct gw_block *free_blocks;
    size_t n_free_blocks;
    struct gw_wreq *free_wreqs;
    size_t n_free_wreqs;
    struct gw_cookie_memo
        *cookie_memo;        /* host cookies verified here (cookie_memo.h); lazily made */
    uv_mutex_t metrics_lock; /* taken only by this loop and by scrapes */
    struct gw_wmetrics metrics;
    int64_t log_sec; /* wall second of log_ts */
    char log_ts[32]; /* "2026-11-22T10:04:05" */
    char log_line[2048];
};

/* Frees what the guard keeps per worker (its memo of verified cookies). */
void gw__guard_release(struct gw_worker *w);

/* ---- gateway.c ---- */
struct sockaddr;
/* The control host's upstream address ("host:port") and its parts. */
const char *gw__control_key(const struct gateway *gw, const char **host, int *port);
atomic_int *gw__open_connections(struct gateway *gw);
atomic_int *gw__held_requests(struct gateway *gw);
/* Counts a finished request (any status). *cache (may be NULL) remembers
 * the series for the next request of the same connection. Loop of w. */
void gw__metrics_request(struct gw_worker *w, const char *env, const char *service, int code,
                         double seconds, struct gw_series **cache);
void gw__metrics_upstream_error(struct gw_worker *w, enum gw_uperr kind);
/* Called when a client or upstream connection of a stopping worker closed. */
void gw__worker_maybe_exit(struct gw_worker *w);

/* ---- proxy.c ---- */
struct gw_block *gw__block_get(struct gw_worker *w);
void gw__block_unref(struct gw_worker *w, struct gw_block *b);
/* The block a buffer handed out by gw__block_get() belongs to. */
struct gw_block *gw__block_of(const char *base);
void gw__on_connection(uv_stream_t *listener, int status);
/* At the end of each turn: handles the failed writes recorded meanwhile. */
void gw__on_failed_writes(uv_check_t *h);
/* Closes every client connection (stop: deadline or idle ones only; held
 * requests are answered 503 first). */
void gw__close_clients(struct gw_worker *w, bool idle_only);
/* The worker took a new table: each held request goes on if its service is
 * routable now, is answered if its environment failed, went or fell asleep
 * for good, or goes on waiting. */
void gw__hold_recheck(struct gw_worker *w);
void gw__worker_release_buffers(struct gw_worker *w);
/* Sends the batch to dst: writes what it can now, queues the rest with a
 * reference to the batch's block. 0 or a libuv error (the caller closes). */
int gw__batch_flush(struct gw_worker *w, struct gw_batch *b, uv_tcp_t *dst, size_t *pending,
                    bool to_client);

/* From upstream.c to the client that owns an upstream connection: */
void gw__proxy_upstream_ready(struct gw_client *c, struct gw_upstream *u, int status);
void gw__proxy_upstream_read(struct gw_client *c, struct gw_upstream *u, ssize_t nread,
                             struct gw_block *blk);
void gw__proxy_upstream_timeout(struct gw_client *c, struct gw_upstream *u);
void gw__proxy_upstream_drained(struct gw_client *c, struct gw_upstream *u);

/* ---- upstream.c ---- */
enum gw_ustate {
    GW_US_RESOLVING, /* waiting for getaddrinfo */
    GW_US_CONNECTING,
    GW_US_BUSY, /* serving its client */
    GW_US_IDLE, /* in the pool */
};

struct gw_upstream {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t connect_req;
    uv_getaddrinfo_t gai;
    struct gw_worker *w;
    struct gw_pool_key *pk;
    struct gw_client *client;                  /* while busy or being set up, else NULL */
    struct gw_upstream *prev, *next;           /* the worker's list */
    struct gw_upstream *idle_prev, *idle_next; /* the key's idle list */
    size_t pending;                            /* bytes queued to the upstream, not yet written */
    int handles_open;                          /* 2 until both close callbacks ran */
    enum gw_ustate state;
    int timer_mode;
    uint64_t deadline;  /* loop time the current timer mode expires */
    uint64_t timer_due; /* loop time the armed uv timer fires */
    int fail_status;    /* a connect that failed at once, reported from the timer */
    bool gai_pending;   /* the getaddrinfo callback has yet to run */
    bool reading;
    bool closing;
    bool reused;    /* taken from the pool (a stale one may fail at once) */
    bool got_bytes; /* a response byte arrived for the current request */
};

void gw__pool_init(struct gw_pool *pool);
void gw__pool_release(struct gw_pool *pool);
/* An idle connection to key, or NULL. Attaches it to c (state BUSY). */
struct gw_upstream *gw__upstream_take(struct gw_worker *w, const char *key, struct gw_client *c);
/*
 * Opens a new connection to host:port for c. Returns it (state RESOLVING or
 * CONNECTING) and calls gw__proxy_upstream_ready(c, u, status) once it is
 * connected or has failed (UV_ETIMEDOUT after connect_timeout_ms), never
 * from inside this call.
 */
struct gw_upstream *gw__upstream_connect(struct gw_worker *w, const char *key, const char *host,
                                         int port, struct gw_client *c);
/* The client is done with u: back to the pool if reusable, else closed. */
void gw__upstream_release(struct gw_upstream *u, bool reusable);
/* Closes u, whatever it was doing; its client is not called again. */
void gw__upstream_abort(struct gw_upstream *u);
/* Arms the first-byte timer (first_byte_timeout_ms), or stops it. */
void gw__upstream_first_byte_timer(struct gw_upstream *u, bool on);
/* Starts or stops reading a busy connection (backpressure from its client). */
void gw__upstream_reading(struct gw_upstream *u, bool on);
/* Closes every upstream connection (deadline) or only the idle ones. */
void gw__close_upstreams(struct gw_worker *w, bool idle_only);

#endif
