/*
 * fuzz/fuzz_proxy_request.c - the proxy's streaming request parser
 * (gateway/proxy_http.c) on arbitrary bytes, fed in pieces the way reads
 * deliver them, exactly as proxy.c drives it: heads, bodies, pipelined
 * requests one at a time.
 *
 * Beyond "never crash or leak", it checks what makes smuggling impossible:
 * every accepted request is written again the way the gateway sends it
 * upstream (our head, the body re-encoded with our own framing), and a
 * plain http-parser reading that must see one well-formed request carrying
 * exactly the body bytes the gateway forwarded. Nothing else may follow.
 *
 *   make fuzz && mkdir -p /tmp/pr && \
 *   build/fuzz/fuzz_proxy_request -max_total_time=60 /tmp/pr fuzz/corpus/proxy_request
 *
 * (The first byte of an input is the read size minus one.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/proxy_int.h"
#include "gateway/routes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Body bytes kept for the check; the rest is only counted. */
#define KEEP_BYTES 65536

struct fwd {
    struct buf wire; /* what the gateway would send upstream for one request */
    char body[KEEP_BYTES];
    size_t body_len;
    size_t body_total;
    bool chunked;
    bool overflow;
};

static void
on_body(void *arg, const char *at, size_t len)
{
    struct fwd *f = arg;
    char line[24];

    if (len == 0)
        __builtin_trap(); /* http-parser never hands out empty slices */
    f->body_total += len;
    if (f->body_len + len > KEEP_BYTES) {
        f->overflow = true;
        return;
    }
    memcpy(f->body + f->body_len, at, len);
    f->body_len += len;
    if (f->chunked) {
        size_t n = gw__chunk_line(line, len);

        buf_append(&f->wire, line, n);
    }
    buf_append(&f->wire, at, len);
    if (f->chunked)
        buf_append(&f->wire, "\r\n", 2);
}

/* ---- the upstream's view: a plain http-parser ---- */

struct check {
    char body[KEEP_BYTES];
    size_t body_len;
    int messages;
    bool head_done;
};

static int
chk_headers_complete(http_parser *p)
{
    struct check *c = p->data;

    c->head_done = true;
    return 0;
}

static int
chk_body(http_parser *p, const char *at, size_t len)
{
    struct check *c = p->data;

    if (c->body_len + len > KEEP_BYTES)
        __builtin_trap();
    memcpy(c->body + c->body_len, at, len);
    c->body_len += len;
    return 0;
}

static int
chk_complete(http_parser *p)
{
    struct check *c = p->data;

    c->messages++;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings chk_settings = {
    .on_headers_complete = chk_headers_complete,
    .on_body = chk_body,
    .on_message_complete = chk_complete,
};

static struct check chk;

/* The upstream must read one request with exactly the forwarded body. */
static void
check_forwarded(const struct gw_reqp *p, struct fwd *f)
{
    http_parser hp;
    size_t n;

    if (f->overflow || p->upgrade)
        return; /* an upgrade's body is another protocol */
    if (f->chunked)
        buf_append(&f->wire, "0\r\n\r\n", 5);
    memset(&chk, 0, sizeof(chk));
    http_parser_init(&hp, HTTP_REQUEST);
    hp.data = &chk;
    n = http_parser_execute(&hp, &chk_settings, f->wire.data, f->wire.len);
    if (HTTP_PARSER_ERRNO(&hp) != HPE_PAUSED || chk.messages != 1 || n != f->wire.len)
        __builtin_trap();
    if (chk.body_len != f->body_len || memcmp(chk.body, f->body, f->body_len) != 0)
        __builtin_trap();
}

static void
use_head(const struct gw_reqp *p, struct fwd *f)
{
    static struct gw_host_pattern pattern;
    static bool pattern_ok;
    const char *host, *svc, *env;
    size_t host_len, svc_len, env_len, path_len, target_len;

    if (!pattern_ok)
        pattern_ok =
            gw_host_pattern_init(&pattern, "{service}.{env}.{domain}", "localhost", NULL) == 0;
    host = gw__reqp_host(p, &host_len);
    if (host && pattern_ok)
        (void)gw_host_classify(&pattern, host, host_len, &svc, &svc_len, &env, &env_len);
    (void)gw__reqp_path(p, &path_len);
    (void)gw__reqp_target(p, &target_len);
    (void)gw__head_find(&p->head, "accept", NULL);
    /* Any head the parser accepts fits (the bounds are computed), with the
     * platform's credentials cut out and an identity added. */
    {
        static const struct gw_identity id = {
            .user = "alice", .email = "alice@example.com", .role = "member"};

        if (gw__build_upstream_head(p, "2001:db8::1", true, &id, &f->wire) < 0)
            __builtin_trap();
    }
    f->chunked = p->framing == GW_FRAME_CHUNKED;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fwd f;
    struct gw_reqp p;
    size_t step;

    if (size == 0)
        return 0;
    /* The first byte picks the read size: 1..256 bytes at a time. */
    step = (size_t)data[0] + 1;
    data++;
    size--;
    gw__reqp_init(&p, 2048);
    p.on_body = on_body;
    p.body_arg = &f;
    buf_init(&f.wire, 1 << 20);
    f.body_len = f.body_total = 0;
    f.overflow = false;
    f.chunked = false;
    while (size > 0) {
        size_t piece = size < step ? size : step;
        enum gw_feed_event ev;
        size_t used = gw__reqp_feed(&p, (const char *)data, piece, &ev);

        if (used > piece)
            __builtin_trap();
        data += used;
        size -= used;
        if (ev == GW_FEED_ERROR) {
            if (p.error_status < 400 || p.error_status > 599 || p.error_reason == NULL)
                __builtin_trap();
            break;
        }
        if (ev == GW_FEED_HEAD) {
            use_head(&p, &f);
            continue;
        }
        if (ev == GW_FEED_DONE) {
            check_forwarded(&p, &f);
            if (p.upgrade)
                break; /* the rest is another protocol */
            gw__reqp_next(&p);
            buf_reset(&f.wire);
            f.body_len = f.body_total = 0;
            f.overflow = false;
            f.chunked = false;
            continue;
        }
        if (used == 0)
            break;
    }
    gw__reqp_release(&p);
    buf_release(&f.wire);
    return 0;
}
