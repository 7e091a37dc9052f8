/*
 * fuzz/fuzz_proxy_response.c - the proxy's response parser and framing
 * (gateway/proxy_http.c) on arbitrary upstream bytes, fed in pieces, with
 * the end of the connection at the end of the input, as proxy.c drives them.
 *
 * Each accepted response is written again the way the gateway sends it to
 * the client (interim heads, our head, the body with the planned framing);
 * a plain http-parser reading that must see the same status and exactly the
 * body bytes forwarded, and nothing after it.
 *
 *   make fuzz && mkdir -p /tmp/ps && \
 *   build/fuzz/fuzz_proxy_response -max_total_time=60 /tmp/ps fuzz/corpus/proxy_response
 *
 * The first byte of an input holds flags (1: the request was HEAD, 2: it
 * asked for an upgrade, 4: the client speaks HTTP/1.0, 8: the client wants
 * to close), the second the read size minus one.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/proxy_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEEP_BYTES 65536

struct fwd {
    struct buf wire; /* what the client would receive */
    struct gw_resp_plan plan;
    char body[KEEP_BYTES];
    size_t body_len;
    bool overflow;
    int interims;
};

static void
on_body(void *arg, const char *at, size_t len)
{
    struct fwd *f = arg;
    char line[24];

    if (len == 0)
        __builtin_trap();
    if (f->body_len + len > KEEP_BYTES) {
        f->overflow = true;
        return;
    }
    memcpy(f->body + f->body_len, at, len);
    f->body_len += len;
    if (f->plan.framing == GW_FRAME_CHUNKED)
        buf_append(&f->wire, line, gw__chunk_line(line, len));
    buf_append(&f->wire, at, len);
    if (f->plan.framing == GW_FRAME_CHUNKED)
        buf_append(&f->wire, "\r\n", 2);
}

/* ---- the client's view ---- */

struct check {
    char body[KEEP_BYTES];
    size_t body_len;
    int finals, interims, status;
    bool head_request;
};

static int
chk_headers_complete(http_parser *p)
{
    struct check *c = p->data;

    if (p->status_code >= 100 && p->status_code < 200)
        return 0;
    c->status = p->status_code;
    /* Like every client: no body after HEAD, 204 or 304. */
    return c->head_request || p->status_code == 204 || p->status_code == 304 ? 1 : 0;
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

    if (c->status == 0) {
        c->interims++;
        return 0;
    }
    c->finals++;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings chk_settings = {
    .on_headers_complete = chk_headers_complete,
    .on_body = chk_body,
    .on_message_complete = chk_complete,
};

static struct check chk;

static void
check_forwarded(const struct gw_respp *p, struct fwd *f, bool head_request)
{
    http_parser hp;
    size_t n;

    if (f->overflow)
        return;
    memset(&chk, 0, sizeof(chk));
    chk.head_request = head_request;
    http_parser_init(&hp, HTTP_RESPONSE);
    hp.data = &chk;
    n = http_parser_execute(&hp, &chk_settings, f->wire.data, f->wire.len);
    if (chk.finals == 0 && f->plan.framing == GW_FRAME_CLOSE && HTTP_PARSER_ERRNO(&hp) == HPE_OK)
        http_parser_execute(&hp, &chk_settings, NULL, 0); /* the gateway closes */
    if (chk.finals != 1 || chk.interims != f->interims || chk.status != p->status)
        __builtin_trap();
    if (f->plan.framing != GW_FRAME_CLOSE && n != f->wire.len)
        __builtin_trap();
    if (chk.body_len != f->body_len || memcmp(chk.body, f->body, f->body_len) != 0)
        __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct fwd f;
    struct gw_respp p;
    struct buf head;
    bool head_request, upgrade_request, http10, keep_alive;
    bool finished = false;
    size_t step;

    if (size < 2)
        return 0;
    head_request = data[0] & 1;
    upgrade_request = data[0] & 2;
    http10 = data[0] & 4;
    keep_alive = !(data[0] & 8);
    step = (size_t)data[1] + 1;
    data += 2;
    size -= 2;
    gw__respp_init(&p, 4096);
    gw__respp_start(&p, head_request, upgrade_request);
    p.on_body = on_body;
    p.body_arg = &f;
    buf_init(&f.wire, 1 << 20);
    buf_init(&head, 1 << 20);
    f.body_len = 0;
    f.overflow = false;
    f.interims = 0;
    f.plan.framing = GW_FRAME_NONE;
    f.plan.close = false;
    while (size > 0 && !finished) {
        size_t piece = size < step ? size : step;
        enum gw_feed_event ev;
        size_t used = gw__respp_feed(&p, (const char *)data, piece, &ev);

        if (used > piece)
            __builtin_trap();
        data += used;
        size -= used;
        switch (ev) {
        case GW_FEED_HEAD:
            if (p.interim) {
                if (gw__build_client_head(&p, NULL, http10, &head) < 0)
                    __builtin_trap();
                if (!http10) {
                    buf_append(&f.wire, head.data, head.len);
                    f.interims++;
                }
                break;
            }
            if (!p.switched)
                gw__plan_response(&p, 1, http10 ? 0 : 1, keep_alive, &f.plan);
            if (gw__build_client_head(&p, p.switched ? NULL : &f.plan, http10, &head) < 0)
                __builtin_trap(); /* any head the parser accepts fits */
            buf_append(&f.wire, head.data, head.len);
            break;
        case GW_FEED_DONE:
            if (p.interim) {
                gw__respp_continue(&p);
                break;
            }
            finished = true;
            break;
        case GW_FEED_ERROR: goto out;
        case GW_FEED_MORE:
            if (used == 0)
                goto out;
            break;
        }
    }
    if (!finished && gw__respp_eof(&p) == GW_FEED_DONE)
        finished = true;
    if (finished && !p.switched) {
        if (f.plan.framing == GW_FRAME_CHUNKED)
            buf_append(&f.wire, "0\r\n\r\n", 5);
        check_forwarded(&p, &f, head_request);
    }
out:
    buf_release(&head);
    buf_release(&f.wire);
    gw__respp_release(&p);
    return 0;
}
