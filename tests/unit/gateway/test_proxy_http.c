/*
 * tests/unit/gateway/test_proxy_http.c - the proxy's pure HTTP code: request
 * heads in streaming mode, the refusals that stop smuggling, the head sent
 * upstream, response framing for the client, and the pages of our own.
 */
#include "gateway/proxy_int.h"

#include <criterion/criterion.h>
#include <string.h>

#include "util/xmalloc.h"

/* ------------------------------------------------------------- helpers */

/* Collects body bytes handed out by a parser. */
struct sink {
    char data[8192];
    size_t len;
    int calls;
};

static void
on_body(void *arg, const char *at, size_t len)
{
    struct sink *s = arg;

    cr_assert_leq(s->len + len, sizeof(s->data));
    memcpy(s->data + s->len, at, len);
    s->len += len;
    s->calls++;
}

/* Feeds a whole request in pieces of `step` bytes until DONE or ERROR;
 * returns the last event. *used is the bytes consumed. */
static enum gw_feed_event
feed_request(struct gw_reqp *p, const char *raw, size_t len, size_t step, size_t *used,
             bool *saw_head)
{
    size_t off = 0;
    enum gw_feed_event ev = GW_FEED_MORE;

    while (off < len) {
        size_t piece = len - off < step ? len - off : step;
        size_t n = gw__reqp_feed(p, raw + off, piece, &ev);

        off += n;
        if (ev == GW_FEED_HEAD) {
            if (saw_head)
                *saw_head = true;
            continue;
        }
        if (ev == GW_FEED_DONE || ev == GW_FEED_ERROR)
            break;
    }
    if (used)
        *used = off;
    return ev;
}

static const char *
find_line(const char *text, const char *line)
{
    return strstr(text, line);
}

/* ------------------------------------------------------------- requests */

Test(proxy_http, pauses_at_the_head_then_at_the_end_of_the_request)
{
    static const char raw[] = "GET /a/b?x=1 HTTP/1.1\r\nHost: web.fx.localhost:8080\r\n"
                              "Accept: */*\r\n\r\n";
    struct gw_reqp p;
    enum gw_feed_event ev;
    size_t n, total = 0, host_len, path_len;
    const char *host, *path;

    gw__reqp_init(&p, 16384);
    n = gw__reqp_feed(&p, raw, sizeof(raw) - 1, &ev);
    cr_assert_eq(ev, GW_FEED_HEAD);
    cr_expect_lt(n, sizeof(raw) - 1, "the head's last LF is left for the next call");
    total += n;
    host = gw__reqp_host(&p, &host_len);
    cr_expect_eq(host_len, strlen("web.fx.localhost:8080"));
    cr_expect(strncmp(host, "web.fx.localhost:8080", host_len) == 0);
    path = gw__reqp_path(&p, &path_len);
    cr_expect(path_len == 4 && strncmp(path, "/a/b", 4) == 0);
    cr_expect(p.keep_alive);
    cr_expect_eq(p.framing, GW_FRAME_NONE);
    n = gw__reqp_feed(&p, raw + total, sizeof(raw) - 1 - total, &ev);
    cr_expect_eq(ev, GW_FEED_DONE);
    total += n;
    cr_expect_eq(total, sizeof(raw) - 1);
    /* Paused: nothing more until the next request is wanted. */
    cr_expect_eq(gw__reqp_feed(&p, "G", 1, &ev), 0);
    cr_expect_eq(ev, GW_FEED_DONE);
    gw__reqp_release(&p);
}

Test(proxy_http, parses_the_same_whether_fed_whole_or_byte_by_byte)
{
    static const char raw[] = "POST /up HTTP/1.1\r\nHost: a.b.localhost\r\n"
                              "Transfer-Encoding: chunked\r\nX-Long: v\r\n  folded\r\n\r\n"
                              "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer-X: t\r\n\r\n";

    for (size_t step = 1; step <= sizeof(raw); step += 7) {
        struct gw_reqp p;
        struct sink s = {0};
        bool head = false;
        size_t used = 0, len;
        const char *v;

        gw__reqp_init(&p, 16384);
        p.on_body = on_body;
        p.body_arg = &s;
        cr_assert_eq(feed_request(&p, raw, sizeof(raw) - 1, step, &used, &head), GW_FEED_DONE,
                     "step %zu", step);
        cr_expect(head);
        cr_expect_eq(used, sizeof(raw) - 1, "step %zu", step);
        cr_expect_eq(p.framing, GW_FRAME_CHUNKED);
        cr_expect_eq(s.len, 11);
        cr_expect(memcmp(s.data, "hello world", 11) == 0, "step %zu", step);
        v = gw__head_find(&p.head, "x-long", &len);
        cr_expect_str_eq(v, "v  folded", "obs-fold is joined, step %zu", step);
        cr_expect_null(gw__head_find(&p.head, "trailer-x", NULL), "trailers are dropped");
        gw__reqp_release(&p);
    }
}

Test(proxy_http, answers_pipelined_requests_one_at_a_time)
{
    static const char raw[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
                              "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                              "GET /3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const char *expect[] = {"/1", "/2", "/3"};
    struct gw_reqp p;
    struct sink s = {0};
    size_t off = 0;

    gw__reqp_init(&p, 16384);
    p.on_body = on_body;
    p.body_arg = &s;
    for (int i = 0; i < 3; i++) {
        size_t used = 0, plen;
        const char *path;

        cr_assert_eq(feed_request(&p, raw + off, sizeof(raw) - 1 - off, 4096, &used, NULL),
                     GW_FEED_DONE);
        path = gw__reqp_path(&p, &plen);
        cr_expect(plen == 2 && strncmp(path, expect[i], 2) == 0, "request %d", i);
        cr_expect_eq(p.keep_alive, i < 2, "request %d", i);
        off += used;
        gw__reqp_next(&p);
    }
    cr_expect_eq(off, sizeof(raw) - 1);
    cr_expect_eq(s.len, 3);
    gw__reqp_release(&p);
}

static const struct {
    const char *raw;
    int status;
    const char *reason;
} bad_requests[] = {
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400,
     "both content-length and transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400,
     "both content-length and transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400,
     "duplicate content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc", 400,
     "duplicate content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n", 400, "invalid content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n", 400, "invalid content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400, "invalid content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n", 400, "invalid content-length"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 400,
     "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity, chunked\r\n\r\n", 400,
     "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: xchunked\r\n\r\n", 400,
     "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  chunked\t\r\n\r\n", 400,
     "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 400,
     "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
     "\r\n",
     400, "unsupported transfer-encoding"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", 400,
     "invalid header name"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400,
     "bad chunk size"},
    {"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n", 400,
     "bad chunk size"},
    {"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, "unsupported http version"},
    {"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n", 405, "connect is not supported"},
    {"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400, "missing host header"},
    {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "duplicate host header"},
    {"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", 400, "invalid host header"},
    {"GET foo HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad request target"},
    {"GET ftp://x/ HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bad request target"},
};

Test(proxy_http, refuses_smuggling_and_malformed_requests_with_the_right_status)
{
    for (size_t i = 0; i < ARRAY_LEN(bad_requests); i++) {
        for (size_t step = 1; step <= 4096; step *= 4096) {
            struct gw_reqp p;
            enum gw_feed_event ev;

            gw__reqp_init(&p, 16384);
            ev = feed_request(&p, bad_requests[i].raw, strlen(bad_requests[i].raw), step, NULL,
                              NULL);
            cr_expect_eq(ev, GW_FEED_ERROR, "case %zu step %zu", i, step);
            cr_expect_eq(p.error_status, bad_requests[i].status, "case %zu step %zu", i, step);
            cr_expect_str_eq(p.error_reason ? p.error_reason : "(none)", bad_requests[i].reason,
                             "case %zu step %zu", i, step);
            gw__reqp_release(&p);
        }
    }
}

Test(proxy_http, accepts_chunked_with_blanks_and_any_case)
{
    static const char *const ok[] = {
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked \r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\tCHUNKED\r\n\r\n0\r\n\r\n",
    };

    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        struct gw_reqp p;

        gw__reqp_init(&p, 16384);
        cr_expect_eq(feed_request(&p, ok[i], strlen(ok[i]), 4096, NULL, NULL), GW_FEED_DONE,
                     "case %zu: %s", i, p.error_reason ? p.error_reason : "");
        cr_expect_eq(p.framing, GW_FRAME_CHUNKED, "case %zu", i);
        gw__reqp_release(&p);
    }
}

Test(proxy_http, refuses_heads_over_the_limit_with_431)
{
    struct buf big;
    struct gw_reqp p;

    buf_init(&big, 1 << 20);
    buf_puts(&big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < 40; i++)
        buf_printf(&big, "X-Pad-%d: %0100d\r\n", i, 0);
    buf_puts(&big, "\r\n");
    for (size_t step = 1; step <= 65536; step *= 256) {
        gw__reqp_init(&p, 2048);
        cr_expect_eq(feed_request(&p, big.data, big.len, step, NULL, NULL), GW_FEED_ERROR);
        cr_expect_eq(p.error_status, 431, "step %zu", step);
        cr_expect_str_eq(p.error_reason, "request head too large");
        gw__reqp_release(&p);
    }
    buf_reset(&big);
    buf_puts(&big, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < GW_PROXY_MAX_HEADERS + 1; i++)
        buf_printf(&big, "X%d: 1\r\n", i);
    buf_puts(&big, "\r\n");
    gw__reqp_init(&p, 1 << 20);
    cr_expect_eq(feed_request(&p, big.data, big.len, 4096, NULL, NULL), GW_FEED_ERROR);
    cr_expect_eq(p.error_status, 431);
    cr_expect_str_eq(p.error_reason, "too many header lines");
    gw__reqp_release(&p);
    buf_release(&big);
}

/* ------------------------------------------------------------- the head sent upstream */

static void
upstream_head_of(const char *raw, const char *client, struct buf *out)
{
    struct gw_reqp p;
    bool head = false;

    gw__reqp_init(&p, 16384);
    cr_assert_neq(feed_request(&p, raw, strlen(raw), 4096, NULL, &head), GW_FEED_ERROR, "%s",
                  p.error_reason ? p.error_reason : "");
    cr_assert(head);
    cr_assert_eq(gw__build_upstream_head(&p, client, false, NULL, out), 0);
    gw__reqp_release(&p);
}

Test(proxy_http, removes_hop_by_hop_headers_and_adds_forwarding_ones)
{
    struct buf out;

    buf_init(&out, 65536);
    upstream_head_of("GET /p?q=1 HTTP/1.1\r\nHost: web.fx.localhost:8080\r\n"
                     "Connection: keep-alive, X-Secret\r\nKeep-Alive: timeout=5\r\n"
                     "Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X\r\n"
                     "Upgrade: h2c\r\nX-Secret: s\r\nX-Forwarded-For: 10.0.0.1\r\n"
                     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil\r\n"
                     "Forwarded: for=10.0.0.1\r\nAccept: text/plain\r\n\r\n",
                     "127.0.0.1", &out);
    cr_expect(strncmp(out.data, "GET /p?q=1 HTTP/1.1\r\n", 21) == 0, "%s", out.data);
    cr_expect(find_line(out.data, "\r\nHost: web.fx.localhost:8080\r\n"), "%s", out.data);
    cr_expect(find_line(out.data, "\r\nAccept: text/plain\r\n"));
    cr_expect(find_line(out.data, "\r\nX-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n"), "%s", out.data);
    cr_expect(find_line(out.data, "\r\nX-Forwarded-Proto: http\r\n"));
    cr_expect(find_line(out.data, "\r\nX-Forwarded-Host: web.fx.localhost:8080\r\n"));
    cr_expect(find_line(out.data, "\r\nForwarded: for=10.0.0.1\r\n"));
    cr_expect(
        find_line(out.data,
                  "\r\nForwarded: for=127.0.0.1;host=\"web.fx.localhost:8080\";proto=http\r\n"),
        "%s", out.data);
    cr_expect_null(strcasestr(out.data, "connection:"), "%s", out.data);
    cr_expect_null(strcasestr(out.data, "keep-alive"));
    cr_expect_null(strcasestr(out.data, "\r\nTE:"));
    cr_expect_null(strcasestr(out.data, "trailer:"));
    cr_expect_null(strcasestr(out.data, "upgrade:"));
    cr_expect_null(strcasestr(out.data, "x-secret"));
    cr_expect_null(strstr(out.data, "https"));
    cr_expect_null(strstr(out.data, "evil"));
    cr_expect(strcmp(out.data + out.len - 4, "\r\n\r\n") == 0);
    buf_release(&out);
}

Test(proxy_http, writes_its_own_framing_upstream)
{
    struct buf out;

    buf_init(&out, 65536);
    upstream_head_of("POST / HTTP/1.1\r\nHost: h\r\ntransfer-encoding: Chunked\r\n\r\n", "::1",
                     &out);
    cr_expect(find_line(out.data, "\r\nTransfer-Encoding: chunked\r\n"), "%s", out.data);
    cr_expect_null(strstr(out.data, "Chunked"));
    cr_expect(find_line(out.data, "\r\nForwarded: for=\"[::1]\";host=\"h\";proto=http\r\n"), "%s",
              out.data);
    upstream_head_of("PUT / HTTP/1.0\r\ncontent-length: 12\r\nConnection: keep-alive\r\n\r\n",
                     "10.1.2.3", &out);
    cr_expect(strncmp(out.data, "PUT / HTTP/1.1\r\n", 16) == 0);
    cr_expect(find_line(out.data, "\r\nContent-Length: 12\r\n"), "%s", out.data);
    cr_expect_null(strstr(out.data, "content-length"));
    cr_expect_null(strstr(out.data, "X-Forwarded-Host"), "no Host, no X-Forwarded-Host");
    upstream_head_of("GET http://web.fx.localhost:8080/x?y HTTP/1.1\r\nHost: other\r\n\r\n",
                     "1.2.3.4", &out);
    cr_expect(strncmp(out.data, "GET /x?y HTTP/1.1\r\n", 19) == 0, "%s", out.data);
    cr_expect(find_line(out.data, "\r\nX-Forwarded-Host: web.fx.localhost:8080\r\n"));
    buf_release(&out);
}

Test(proxy_http, keeps_upgrade_headers_for_an_upgrade)
{
    struct buf out;

    buf_init(&out, 65536);
    upstream_head_of("GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     "Sec-WebSocket-Key: abc\r\n\r\n",
                     "127.0.0.1", &out);
    cr_expect(find_line(out.data, "\r\nUpgrade: websocket\r\n"), "%s", out.data);
    cr_expect(find_line(out.data, "\r\nConnection: upgrade\r\n"));
    cr_expect(find_line(out.data, "\r\nSec-WebSocket-Key: abc\r\n"));
    buf_release(&out);
}

/* ------------------------------------------------------------- responses */

struct resp_result {
    enum gw_feed_event ev;
    int status;
    enum gw_framing framing;
    bool keep_alive;
    int heads;
    struct sink body;
    char head[2048];
};

/* Parses a response, relaying interim heads, with EOF at the end if asked. */
static void
parse_response(const char *raw, bool head_request, bool upgrade_request, bool eof, size_t step,
               struct resp_result *r)
{
    struct gw_respp p;
    size_t off = 0, len = strlen(raw);

    memset(r, 0, sizeof(*r));
    gw__respp_init(&p, 65536);
    gw__respp_start(&p, head_request, upgrade_request);
    p.on_body = on_body;
    p.body_arg = &r->body;
    r->ev = GW_FEED_MORE;
    while (off < len) {
        size_t piece = len - off < step ? len - off : step;
        size_t n = gw__respp_feed(&p, raw + off, piece, &r->ev);

        off += n;
        if (r->ev == GW_FEED_HEAD) {
            r->heads++;
            continue;
        }
        if (r->ev == GW_FEED_DONE && p.interim) {
            gw__respp_continue(&p);
            continue;
        }
        if (r->ev != GW_FEED_MORE)
            break;
    }
    if (eof && r->ev == GW_FEED_MORE)
        r->ev = gw__respp_eof(&p);
    r->status = p.status;
    r->framing = p.framing;
    r->keep_alive = p.keep_alive;
    if (p.head_done && !p.error_reason) {
        struct gw_resp_plan plan;
        struct buf out;

        buf_init(&out, 65536);
        gw__plan_response(&p, 1, 1, true, &plan);
        gw__build_client_head(&p, &plan, false, &out);
        snprintf(r->head, sizeof(r->head), "%s", out.data);
        buf_release(&out);
    }
    gw__respp_release(&p);
}

Test(proxy_http, frames_responses_by_length_chunks_or_close)
{
    struct resp_result r;

    for (size_t step = 1; step <= 4096; step *= 8) {
        parse_response("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, false, false,
                       step, &r);
        cr_expect_eq(r.ev, GW_FEED_DONE);
        cr_expect_eq(r.framing, GW_FRAME_LENGTH);
        cr_expect(r.keep_alive);
        cr_expect(r.body.len == 5 && memcmp(r.body.data, "hello", 5) == 0);
        cr_expect(find_line(r.head, "\r\nContent-Length: 5\r\n"), "%s", r.head);

        parse_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                       "3\r\nabc\r\n0\r\n\r\n",
                       false, false, false, step, &r);
        cr_expect_eq(r.ev, GW_FEED_DONE);
        cr_expect_eq(r.framing, GW_FRAME_CHUNKED);
        cr_expect_not(r.keep_alive, "Connection: close: not reused");
        cr_expect(find_line(r.head, "\r\nTransfer-Encoding: chunked\r\n"));
        cr_expect_null(strstr(r.head, "Connection: close"), "the client's connection is ours");

        parse_response("HTTP/1.0 200 OK\r\nX: y\r\n\r\nuntil the end", false, false, true, step,
                       &r);
        cr_expect_eq(r.ev, GW_FEED_DONE);
        cr_expect_eq(r.framing, GW_FRAME_CLOSE);
        cr_expect_eq(r.body.len, 13);
        cr_expect(find_line(r.head, "\r\nTransfer-Encoding: chunked\r\n"), "re-chunked: %s",
                  r.head);
    }
}

Test(proxy_http, has_no_body_for_head_204_304_and_relays_1xx)
{
    struct resp_result r;

    parse_response("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, false, false, 4096, &r);
    cr_expect_eq(r.ev, GW_FEED_DONE);
    cr_expect_eq(r.framing, GW_FRAME_NONE);
    cr_expect(find_line(r.head, "\r\nContent-Length: 100\r\n"), "HEAD keeps the length: %s",
              r.head);
    parse_response("HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n", false, false, false, 4096, &r);
    cr_expect_eq(r.ev, GW_FEED_DONE);
    cr_expect_eq(r.status, 304);
    cr_expect_null(strstr(r.head, "Transfer-Encoding"));
    parse_response("HTTP/1.1 204 No Content\r\n\r\n", false, false, false, 4096, &r);
    cr_expect_eq(r.ev, GW_FEED_DONE);
    cr_expect_eq(r.body.len, 0);
    parse_response("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                   "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
                   false, false, false, 3, &r);
    cr_expect_eq(r.ev, GW_FEED_DONE);
    cr_expect_eq(r.heads, 3);
    cr_expect_eq(r.status, 201);
    cr_expect(r.body.len == 2);
}

Test(proxy_http, switches_protocols_only_for_an_upgrade_request)
{
    static const char raw[] = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\n\r\nRAW";
    struct gw_respp p;
    enum gw_feed_event ev;
    size_t n = 0;
    struct buf out;
    struct resp_result r;

    gw__respp_init(&p, 65536);
    gw__respp_start(&p, false, true);
    n += gw__respp_feed(&p, raw, sizeof(raw) - 1, &ev);
    cr_assert_eq(ev, GW_FEED_HEAD);
    cr_expect(p.switched);
    buf_init(&out, 4096);
    gw__build_client_head(&p, NULL, false, &out);
    cr_expect(find_line(out.data, "\r\nUpgrade: websocket\r\n"), "%s", out.data);
    cr_expect(find_line(out.data, "\r\nConnection: upgrade\r\n"));
    n += gw__respp_feed(&p, raw + n, sizeof(raw) - 1 - n, &ev);
    cr_expect_eq(ev, GW_FEED_DONE);
    cr_expect_str_eq(raw + n, "RAW", "the rest is the other protocol");
    buf_release(&out);
    gw__respp_release(&p);
    parse_response(raw, false, false, false, 4096, &r);
    cr_expect_eq(r.ev, GW_FEED_ERROR);
}

Test(proxy_http, refuses_ambiguous_or_cut_responses)
{
    static const char *const bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding : chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        "garbage\r\n\r\n",
    };
    struct resp_result r;

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        parse_response(bad[i], false, false, false, 4096, &r);
        cr_expect_eq(r.ev, GW_FEED_ERROR, "case %zu", i);
    }
    parse_response("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, false, true, 4096,
                   &r);
    cr_expect_eq(r.ev, GW_FEED_ERROR, "EOF inside a Content-Length body");
    parse_response("", false, false, true, 4096, &r);
    cr_expect_eq(r.ev, GW_FEED_ERROR, "EOF before any byte");
}

Test(proxy_http, plans_close_delimited_bodies_for_http10_clients)
{
    struct gw_respp p;
    struct gw_resp_plan plan;
    struct buf out;
    enum gw_feed_event ev;
    static const char raw[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                              "Connection: x-hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\n";

    gw__respp_init(&p, 65536);
    gw__respp_start(&p, false, false);
    gw__respp_feed(&p, raw, sizeof(raw) - 1, &ev);
    cr_assert_eq(ev, GW_FEED_HEAD);
    gw__plan_response(&p, 1, 0, true, &plan);
    cr_expect_eq(plan.framing, GW_FRAME_CLOSE);
    cr_expect(plan.close);
    buf_init(&out, 4096);
    gw__build_client_head(&p, &plan, true, &out);
    cr_expect(find_line(out.data, "\r\nConnection: close\r\n"), "%s", out.data);
    cr_expect_null(strstr(out.data, "Transfer-Encoding"));
    cr_expect_null(strstr(out.data, "X-Hop"));
    cr_expect_null(strstr(out.data, "Keep-Alive"));
    gw__plan_response(&p, 1, 1, true, &plan);
    cr_expect_eq(plan.framing, GW_FRAME_CHUNKED);
    cr_expect_not(plan.close);
    buf_release(&out);
    gw__respp_release(&p);
}

Test(proxy_http, formats_chunk_size_lines)
{
    char line[24];

    cr_expect_eq(gw__chunk_line(line, 1), 3);
    cr_expect(memcmp(line, "1\r\n", 3) == 0);
    cr_expect_eq(gw__chunk_line(line, 65536), 7);
    cr_expect(memcmp(line, "10000\r\n", 7) == 0);
    cr_expect_eq(gw__chunk_line(line, 0xabc), 5);
    cr_expect(memcmp(line, "abc\r\n", 5) == 0);
}

/* ------------------------------------------------------------- pages */

static struct gw_routes *
sample_routes(void)
{
    static const struct gw_route_service_in fx[] = {
        {"web", "127.0.0.1", 5001, true, SVC_STATE_HEALTHY},
        {"api", "127.0.0.1", 5002, true, SVC_STATE_STARTING},
        {"db", "127.0.0.1", 5003, false, SVC_STATE_HEALTHY},
    };
    static const struct gw_route_env_in envs[] = {
        {.name = "fx",
         .phase = ENV_PHASE_STARTING,
         .reason = "waiting for <api>",
         .services = fx,
         .n_services = 3},
        {.name = "empty", .phase = ENV_PHASE_READY},
    };

    return gw_routes_build(envs, 2, 1);
}

Test(proxy_http, lists_environments_or_services_on_404)
{
    struct gw_routes *routes = sample_routes();
    struct gw_host_pattern pat;
    struct gw_page_req pr = {.html = false, .keep_alive = true, .port = 8080};
    struct buf out;

    cr_assert_eq(gw_host_pattern_init(&pat, "{service}.{env}.{domain}", "localhost", NULL), 0);
    pr.pattern = &pat;
    buf_init(&out, 1 << 20);
    gw__page_not_found(&out, &pr, routes, NULL, "x.localhost", 11);
    cr_expect(strncmp(out.data, "HTTP/1.1 404 Not Found\r\n", 24) == 0, "%s", out.data);
    cr_expect(strstr(out.data, "Content-Type: application/json"));
    cr_expect(strstr(out.data, "\"environments\": [{\"name\": \"empty\""), "%s", out.data);
    cr_expect(strstr(out.data, "\"url\": \"http://web.fx.localhost:8080/\""), "%s", out.data);
    cr_expect_null(strstr(out.data, "\"db\""), "unexposed services are not listed");
    cr_expect_null(strstr(out.data, "Connection: close"));

    pr.html = true;
    pr.keep_alive = false;
    gw__page_not_found(&out, &pr, routes, gw_routes_find_env(routes, "fx", 2), "nope.fx.localhost",
                       17);
    cr_expect(strstr(out.data, "Content-Type: text/html"));
    cr_expect(strstr(out.data, "Connection: close\r\n"));
    cr_expect(strstr(out.data, "<a href=\"http://api.fx.localhost:8080/\">api</a>"), "%s",
              out.data);

    pr.head_only = true;
    gw__page_not_found(&out, &pr, routes, NULL, NULL, 0);
    cr_expect(strcmp(out.data + out.len - 4, "\r\n\r\n") == 0, "HEAD: no body");
    cr_expect_null(strstr(out.data, "Content-Length: 0\r\n"), "the length of the body not sent");
    buf_release(&out);
    gw_host_pattern_release(&pat);
    gw_routes_unref(routes);
}

Test(proxy_http, shows_phase_and_state_on_503)
{
    struct gw_routes *routes = sample_routes();
    const struct gw_route_service *api = gw_routes_find(routes, "api", 3, "fx", 2);
    struct gw_page_req pr = {.keep_alive = true};
    struct buf out;

    cr_assert_not_null(api);
    buf_init(&out, 1 << 20);
    gw__page_unavailable(&out, &pr, api);
    cr_expect(strncmp(out.data, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0);
    cr_expect(strstr(out.data, "\r\nRetry-After: 2\r\n"));
    cr_expect(strstr(out.data, "\"phase\": \"starting\""), "%s", out.data);
    cr_expect(strstr(out.data, "\"state\": \"starting\""));
    cr_expect(strstr(out.data, "\"reason\": \"waiting for <api>\""));
    pr.html = true;
    gw__page_unavailable(&out, &pr, api);
    cr_expect(strstr(out.data, "waiting for &lt;api&gt;"), "%s", out.data);
    gw__page_error(&out, &pr, 502, "the upstream refused the connection");
    cr_expect(strncmp(out.data, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    pr.html = false;
    gw__page_error(&out, &pr, 504, "slow");
    cr_expect(
        strstr(out.data, "{\"error\": {\"code\": \"gateway_timeout\", \"message\": \"slow\"}}"),
        "%s", out.data);
    cr_expect(gw__accepts_html("text/html,application/xhtml+xml", 31));
    cr_expect_not(gw__accepts_html("application/json", 16));
    buf_release(&out);
    gw_routes_unref(routes);
}
