/*
 * gateway/proxy_http.c - the proxy's HTTP/1.1 heads and framing, with no
 * I/O: request heads parsed in streaming mode (http-parser, paused at the
 * end of the head and of the message), the checks that keep requests from
 * being smuggled, the head sent upstream (hop-by-hop headers out, forwarding
 * headers in, our own framing), response heads, and how a response is framed
 * for the client.
 *
 * Bodies never pass through here whole: http-parser hands decoded body
 * slices of the caller's buffer to a callback, and the caller forwards them
 * (re-encoding chunks itself). The fuzz targets drive these functions
 * exactly as the connections do.
 */
#include "gateway/proxy_int.h"

#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "util/xmalloc.h"

/* Which callback added the last bytes to a head. */
enum { LAST_NONE, LAST_FIRST, LAST_FIELD, LAST_VALUE };

/* Connection header tokens honoured per head; a client naming more is odd
 * but harmless: the rest are ignored (and never forwarded: the Connection
 * header itself is hop-by-hop). */
#define GW_MAX_CONN_TOKENS 16

/* ------------------------------------------------------------- head text */

static void
head_init(struct gw_head *h, size_t max_bytes)
{
    memset(h, 0, sizeof(*h));
    h->max_bytes = max_bytes;
    buf_init(&h->text, max_bytes);
}

static void
head_reset(struct gw_head *h)
{
    buf_reset(&h->text);
    h->n_hdrs = 0;
    h->first_len = 0;
    h->last = LAST_NONE;
    h->bytes = 0;
}

static int
head_append(struct gw_head *h, const char *at, size_t len)
{
    return buf_append(&h->text, at, len) < 0 ? -1 : 0;
}

/* Ends the token the last callback was adding to: first token, name or value. */
static int
head_end_token(struct gw_head *h)
{
    struct gw_hdr *hd = h->n_hdrs ? &h->hdrs[h->n_hdrs - 1] : NULL;

    switch (h->last) {
    case LAST_FIRST: h->first_len = (uint32_t)h->text.len; break;
    case LAST_FIELD:
        /* A name without a value ("X-Empty:"): its value is "". */
        hd->name_len = (uint32_t)(h->text.len - hd->name_off);
        if (head_append(h, "", 1) < 0)
            return -1;
        hd->value_off = (uint32_t)h->text.len;
        hd->value_len = 0;
        break;
    case LAST_VALUE:
        while (h->text.len > hd->value_off &&
               (h->text.data[h->text.len - 1] == ' ' || h->text.data[h->text.len - 1] == '\t'))
            h->text.len--;
        hd->value_len = (uint32_t)(h->text.len - hd->value_off);
        break;
    default: return 0;
    }
    h->last = LAST_NONE;
    return head_append(h, "", 1);
}

static int
head_first(struct gw_head *h, const char *at, size_t len)
{
    h->last = LAST_FIRST;
    return head_append(h, at, len);
}

/* -1: too large; -2: too many header lines. */
static int
head_field(struct gw_head *h, const char *at, size_t len)
{
    if (h->last != LAST_FIELD) {
        if (head_end_token(h) < 0)
            return -1;
        if (h->n_hdrs == GW_PROXY_MAX_HEADERS)
            return -2;
        h->hdrs[h->n_hdrs].name_off = (uint32_t)h->text.len;
        h->hdrs[h->n_hdrs].name_len = 0;
        h->hdrs[h->n_hdrs].value_off = (uint32_t)h->text.len;
        h->hdrs[h->n_hdrs].value_len = 0;
        h->n_hdrs++;
        h->last = LAST_FIELD;
    }
    return head_append(h, at, len);
}

static int
head_value(struct gw_head *h, const char *at, size_t len)
{
    if (h->last == LAST_FIELD) {
        struct gw_hdr *hd = &h->hdrs[h->n_hdrs - 1];

        hd->name_len = (uint32_t)(h->text.len - hd->name_off);
        if (head_append(h, "", 1) < 0)
            return -1;
        hd->value_off = (uint32_t)h->text.len;
        h->last = LAST_VALUE;
    }
    /* An obs-fold continuation arrives as more value bytes (with its leading
     * blank): the value is kept joined, as RFC 7230 3.2.4 allows. */
    return head_append(h, at, len);
}

static const char *
hdr_name(const struct gw_head *h, size_t i)
{
    return h->text.data + h->hdrs[i].name_off;
}

static const char *
hdr_value(const struct gw_head *h, size_t i)
{
    return h->text.data + h->hdrs[i].value_off;
}

static bool
name_is(const struct gw_head *h, size_t i, const char *lit, size_t lit_len)
{
    return h->hdrs[i].name_len == lit_len && strncasecmp(hdr_name(h, i), lit, lit_len) == 0;
}

#define NAME_IS(h, i, lit) name_is((h), (i), (lit), sizeof(lit) - 1)

const char *
gw__head_find(const struct gw_head *h, const char *name, size_t *len)
{
    size_t n = strlen(name);

    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (name_is(h, i, name, n)) {
            if (len)
                *len = h->hdrs[i].value_len;
            return hdr_value(h, i);
        }
    }
    return NULL;
}

/* RFC 7230 tchar. */
static bool
is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Names are tokens ("Transfer-Encoding :" is not one); values hold no
 * control bytes but HTAB. Returns NULL or the reason. */
static const char *
head_check(const struct gw_head *h)
{
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const unsigned char *name = (const unsigned char *)hdr_name(h, i);
        const unsigned char *value = (const unsigned char *)hdr_value(h, i);

        if (h->hdrs[i].name_len == 0)
            return "invalid header name";
        for (size_t k = 0; k < h->hdrs[i].name_len; k++) {
            if (!is_tchar(name[k]))
                return "invalid header name";
        }
        for (size_t k = 0; k < h->hdrs[i].value_len; k++) {
            if ((value[k] < 0x20 && value[k] != '\t') || value[k] == 0x7f)
                return "invalid header value";
        }
    }
    return NULL;
}

/* True if value is exactly "chunked", ignoring case and surrounding blanks. */
static bool
is_chunked(const char *v, size_t len)
{
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    while (len > 0 && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    return len == 7 && strncasecmp(v, "chunked", 7) == 0;
}

/* Framing headers of a head: counts and the last index of each. */
struct framing_hdrs {
    int n_cl, n_te, n_host;
    int cl, te, host;
};

static void
find_framing(const struct gw_head *h, struct framing_hdrs *f)
{
    memset(f, 0, sizeof(*f));
    f->cl = f->te = f->host = -1;
    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (NAME_IS(h, i, "content-length")) {
            f->n_cl++;
            f->cl = (int)i;
        } else if (NAME_IS(h, i, "transfer-encoding")) {
            f->n_te++;
            f->te = (int)i;
        } else if (NAME_IS(h, i, "host")) {
            f->n_host++;
            f->host = (int)i;
        }
    }
}

/* Content-Length: 1 to 19 digits, nothing else. */
static bool
parse_length(const char *v, size_t len, uint64_t *out)
{
    uint64_t n = 0;

    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (uint64_t)(v[i] - '0');
    }
    *out = n;
    return true;
}

/* Host values become parts of X-Forwarded-Host and a quoted Forwarded
 * parameter: names, IP literals and a port only. */
static bool
host_ok(const char *v, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.' || c == '_' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

/* ------------------------------------------------------------- requests */

static struct gw_reqp *
reqp_of(http_parser *hp)
{
    return container_of(hp, struct gw_reqp, parser);
}

static int
req_refuse(struct gw_reqp *p, int status, const char *reason)
{
    if (p->error_status == 0) {
        p->error_status = status;
        p->error_reason = reason;
    }
    return -1;
}

static int
head_rc(struct gw_reqp *p, int rc)
{
    if (rc == -1)
        return req_refuse(p, 431, "request head too large");
    if (rc == -2)
        return req_refuse(p, 431, "too many header lines");
    return 0;
}

static int
on_req_begin(http_parser *hp)
{
    reqp_of(hp)->in_message = true;
    return 0;
}

static int
on_req_url(http_parser *hp, const char *at, size_t len)
{
    struct gw_reqp *p = reqp_of(hp);

    return head_rc(p, head_first(&p->head, at, len));
}

static int
on_req_field(http_parser *hp, const char *at, size_t len)
{
    struct gw_reqp *p = reqp_of(hp);

    if (p->head_done)
        return 0; /* a trailer of a chunked body: dropped */
    return head_rc(p, head_field(&p->head, at, len));
}

static int
on_req_value(http_parser *hp, const char *at, size_t len)
{
    struct gw_reqp *p = reqp_of(hp);

    if (p->head_done)
        return 0;
    return head_rc(p, head_value(&p->head, at, len));
}

/* The authority of an absolute-form target ("http://host:port/path"). */
static const char *
absolute_authority(const char *t, size_t len, size_t *a_len, size_t *rest_off)
{
    size_t skip;
    size_t i;

    if (len >= 7 && strncasecmp(t, "http://", 7) == 0)
        skip = 7;
    else if (len >= 8 && strncasecmp(t, "https://", 8) == 0)
        skip = 8;
    else
        return NULL;
    for (i = skip; i < len && t[i] != '/' && t[i] != '?'; i++)
        ;
    *a_len = i - skip;
    *rest_off = i;
    return t + skip;
}

static int
check_target(struct gw_reqp *p)
{
    const char *t = p->head.text.data;
    size_t len = p->head.first_len;
    size_t a_len, rest;

    if (len == 0)
        return req_refuse(p, 400, "bad request target");
    if (t[0] == '/')
        return 0;
    if (len == 1 && t[0] == '*' && p->method == HTTP_OPTIONS)
        return 0;
    if (absolute_authority(t, len, &a_len, &rest) != NULL) {
        if (!host_ok(t + (rest - a_len), a_len))
            return req_refuse(p, 400, "bad request target");
        return 0;
    }
    return req_refuse(p, 400, "bad request target");
}

static int
on_req_headers_complete(http_parser *hp)
{
    struct gw_reqp *p = reqp_of(hp);
    struct gw_head *h = &p->head;
    struct framing_hdrs f;
    const char *why;
    const char *expect;
    size_t expect_len = 0;

    if (head_rc(p, head_end_token(h)) < 0)
        return -1;
    if (h->first_len == 0)
        return req_refuse(p, 400, "no request target");
    p->method = (enum http_method)hp->method;
    p->http_major = hp->http_major;
    p->http_minor = hp->http_minor;
    if (hp->http_major != 1)
        return req_refuse(p, 505, "unsupported http version");
    if (hp->method == HTTP_CONNECT)
        return req_refuse(p, 405, "connect is not supported");
    why = head_check(h);
    if (why)
        return req_refuse(p, 400, why);
    if (check_target(p) < 0)
        return -1;
    find_framing(h, &f);
    /* RFC 7230 3.3.3: both framings at once is how requests are smuggled. */
    if (f.n_cl > 0 && f.n_te > 0)
        return req_refuse(p, 400, "both content-length and transfer-encoding");
    if (f.n_cl > 1)
        return req_refuse(p, 400, "duplicate content-length");
    if (f.n_host > 1)
        return req_refuse(p, 400, "duplicate host header");
    if (f.n_host == 1 && !host_ok(hdr_value(h, (size_t)f.host), h->hdrs[f.host].value_len))
        return req_refuse(p, 400, "invalid host header");
    if (f.n_host == 0 && hp->http_minor >= 1)
        return req_refuse(p, 400, "missing host header");
    p->host_idx = f.host;
    p->framing = GW_FRAME_NONE;
    p->content_length = 0;
    if (f.n_te > 0) {
        /* Exactly "chunked", and http-parser must agree, or the two of us
         * could read the body differently. */
        if (f.n_te > 1 || !is_chunked(hdr_value(h, (size_t)f.te), h->hdrs[f.te].value_len) ||
            !(hp->flags & F_CHUNKED))
            return req_refuse(p, 400, "unsupported transfer-encoding");
        p->framing = GW_FRAME_CHUNKED;
    } else if (f.n_cl == 1) {
        if (!parse_length(hdr_value(h, (size_t)f.cl), h->hdrs[f.cl].value_len,
                          &p->content_length) ||
            p->content_length != hp->content_length)
            return req_refuse(p, 400, "invalid content-length");
        if (p->content_length > 0)
            p->framing = GW_FRAME_LENGTH;
    }
    p->keep_alive = http_should_keep_alive(hp) != 0;
    p->upgrade = hp->upgrade != 0;
    expect = gw__head_find(h, "expect", &expect_len);
    p->expect_continue = expect && expect_len == 12 && strncasecmp(expect, "100-continue", 12) == 0;
    p->head_done = true;
    p->head_event = true;
    http_parser_pause(hp, 1);
    return 0;
}

static int
on_req_body(http_parser *hp, const char *at, size_t len)
{
    struct gw_reqp *p = reqp_of(hp);

    if (p->on_body)
        p->on_body(p->body_arg, at, len);
    return 0;
}

static int
on_req_complete(http_parser *hp)
{
    struct gw_reqp *p = reqp_of(hp);

    p->done = true;
    /* The next request waits until this one has been answered. */
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings req_settings = {
    .on_message_begin = on_req_begin,
    .on_url = on_req_url,
    .on_header_field = on_req_field,
    .on_header_value = on_req_value,
    .on_headers_complete = on_req_headers_complete,
    .on_body = on_req_body,
    .on_message_complete = on_req_complete,
};

void
gw__reqp_init(struct gw_reqp *p, size_t max_head_bytes)
{
    memset(p, 0, sizeof(*p));
    http_parser_init(&p->parser, HTTP_REQUEST);
    head_init(&p->head, max_head_bytes);
    p->host_idx = -1;
}

void
gw__reqp_release(struct gw_reqp *p)
{
    buf_release(&p->head.text);
}

void
gw__reqp_next(struct gw_reqp *p)
{
    head_reset(&p->head);
    p->in_message = false;
    p->head_done = false;
    p->done = false;
    p->head_event = false;
    p->keep_alive = false;
    p->upgrade = false;
    p->expect_continue = false;
    p->framing = GW_FRAME_NONE;
    p->content_length = 0;
    p->host_idx = -1;
    http_parser_pause(&p->parser, 0);
}

static void
req_map_error(struct gw_reqp *p, enum http_errno e)
{
    switch (e) {
    case HPE_HEADER_OVERFLOW: req_refuse(p, 431, "request head too large"); break;
    case HPE_INVALID_CHUNK_SIZE: req_refuse(p, 400, "bad chunk size"); break;
    case HPE_UNEXPECTED_CONTENT_LENGTH:
        req_refuse(p, 400,
                   p->parser.uses_transfer_encoding ? "both content-length and transfer-encoding"
                                                    : "duplicate content-length");
        break;
    case HPE_INVALID_CONTENT_LENGTH: req_refuse(p, 400, "invalid content-length"); break;
    case HPE_INVALID_TRANSFER_ENCODING: req_refuse(p, 400, "unsupported transfer-encoding"); break;
    case HPE_INVALID_URL: req_refuse(p, 400, "bad request target"); break;
    case HPE_INVALID_VERSION: req_refuse(p, 400, "bad http version"); break;
    case HPE_INVALID_METHOD: req_refuse(p, 400, "bad method"); break;
    default: req_refuse(p, 400, http_errno_description(e)); break;
    }
}

size_t
gw__reqp_feed(struct gw_reqp *p, const char *data, size_t len, enum gw_feed_event *ev)
{
    bool in_head = !p->head_done;
    enum http_errno e;
    size_t n;

    EPH_ASSERT(len > 0);
    if (p->error_status != 0) {
        *ev = GW_FEED_ERROR;
        return 0;
    }
    if (p->done) {
        *ev = GW_FEED_DONE;
        return 0;
    }
    if (p->head_event) {
        p->head_event = false;
        http_parser_pause(&p->parser, 0);
    }
    n = http_parser_execute(&p->parser, &req_settings, data, len);
    e = HTTP_PARSER_ERRNO(&p->parser);
    if (in_head) {
        p->head.bytes += n;
        if (p->head.bytes > p->head.max_bytes)
            req_refuse(p, 431, "request head too large");
    }
    if (p->error_status == 0 && e != HPE_OK && e != HPE_PAUSED)
        req_map_error(p, e);
    if (p->error_status != 0)
        *ev = GW_FEED_ERROR;
    else if (e == HPE_PAUSED)
        *ev = p->head_event ? GW_FEED_HEAD : GW_FEED_DONE;
    else
        *ev = GW_FEED_MORE;
    return n;
}

const char *
gw__reqp_target(const struct gw_reqp *p, size_t *len)
{
    *len = p->head.first_len;
    return p->head.text.data ? p->head.text.data : "";
}

const char *
gw__reqp_host(const struct gw_reqp *p, size_t *len)
{
    size_t a_len, rest;
    const char *a = absolute_authority(p->head.text.data ? p->head.text.data : "",
                                       p->head.first_len, &a_len, &rest);

    if (a) {
        *len = a_len;
        return a;
    }
    if (p->host_idx < 0) {
        *len = 0;
        return NULL;
    }
    *len = p->head.hdrs[p->host_idx].value_len;
    return hdr_value(&p->head, (size_t)p->host_idx);
}

/* The origin-form part of the target (path and query). */
static const char *
origin_target(const struct gw_reqp *p, size_t *len)
{
    const char *t = p->head.text.data;
    size_t a_len, rest;

    if (absolute_authority(t, p->head.first_len, &a_len, &rest) != NULL) {
        if (rest == p->head.first_len) {
            *len = 1;
            return "/";
        }
        if (t[rest] == '?') {
            /* "http://h?q": the path is empty; the caller prefixes '/'. */
            *len = p->head.first_len - rest;
            return t + rest;
        }
        *len = p->head.first_len - rest;
        return t + rest;
    }
    *len = p->head.first_len;
    return t;
}

const char *
gw__reqp_path(const struct gw_reqp *p, size_t *len)
{
    size_t tl;
    const char *t;
    const char *q;

    if (p->head.text.data == NULL || p->head.first_len == 0) {
        *len = 0;
        return "";
    }
    t = origin_target(p, &tl);
    q = memchr(t, '?', tl);

    *len = q ? (size_t)(q - t) : tl;
    return t;
}

/* ------------------------------------------------------------- upstream head */

/* Tokens of the Connection headers of h (lower-case comparison later). */
struct conn_tokens {
    const char *tok[GW_MAX_CONN_TOKENS];
    size_t len[GW_MAX_CONN_TOKENS];
    size_t n;
};

static void
collect_tokens(const struct gw_head *h, struct conn_tokens *ct)
{
    ct->n = 0;
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const char *v, *end;

        if (!NAME_IS(h, i, "connection"))
            continue;
        v = hdr_value(h, i);
        end = v + h->hdrs[i].value_len;
        while (v < end && ct->n < GW_MAX_CONN_TOKENS) {
            const char *s = v;
            const char *e;

            while (s < end && (*s == ' ' || *s == '\t' || *s == ','))
                s++;
            e = s;
            while (e < end && *e != ',')
                e++;
            v = e;
            while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
                e--;
            if (e > s) {
                ct->tok[ct->n] = s;
                ct->len[ct->n] = (size_t)(e - s);
                ct->n++;
            }
        }
    }
}

static bool
named_by_connection(const struct gw_head *h, size_t i, const struct conn_tokens *ct)
{
    for (size_t k = 0; k < ct->n; k++) {
        if (name_is(h, i, ct->tok[k], ct->len[k]))
            return true;
    }
    return false;
}

/* Hop-by-hop headers (RFC 7230 6.1 and the usual extras), plus the framing
 * headers, which we always write ourselves. */
static bool
is_hop_by_hop(const struct gw_head *h, size_t i, bool keep_upgrade)
{
    switch (h->hdrs[i].name_len) {
    case 2: return NAME_IS(h, i, "te");
    case 7: return NAME_IS(h, i, "trailer") || (!keep_upgrade && NAME_IS(h, i, "upgrade"));
    case 10: return NAME_IS(h, i, "connection") || NAME_IS(h, i, "keep-alive");
    case 14: return NAME_IS(h, i, "content-length");
    case 16: return NAME_IS(h, i, "proxy-connection");
    case 17: return NAME_IS(h, i, "transfer-encoding");
    default: return false;
    }
}

/*
 * Heads are written with one capacity check up front: the bound is computed
 * from the parsed head, the buffer grown once (it keeps its memory from
 * request to request), then every piece is a plain copy.
 */
struct hw {
    char *p, *end;
    bool over; /* the bound was wrong or the ceiling too low: EPH_ETOOBIG */
};

static int
hw_begin(struct buf *b, size_t bound, struct hw *w)
{
    buf_reset(b);
    if (bound > b->max_bytes)
        bound = b->max_bytes;
    if (b->cap < bound + 1) {
        /* Grows the buffer to the bound (any bytes will do), keeping it. */
        if (buf_printf(b, "%*s", (int)bound, "") < 0)
            return -1;
        buf_reset(b);
    }
    w->p = b->data;
    w->end = b->data + bound;
    w->over = false;
    return 0;
}

static int
hw_end(struct buf *b, struct hw *w)
{
    if (w->over) {
        buf_reset(b);
        return EPH_ETOOBIG;
    }
    b->len = (size_t)(w->p - b->data);
    b->data[b->len] = '\0';
    return 0;
}

static inline void
put(struct hw *w, const char *s, size_t n)
{
    if ((size_t)(w->end - w->p) < n) {
        w->over = true;
        return;
    }
    memcpy(w->p, s, n);
    w->p += n;
}

#define PUTS(w, lit) put((w), (lit), sizeof(lit) - 1)

static void
put_header(struct hw *w, const struct gw_head *h, size_t i)
{
    size_t nl = h->hdrs[i].name_len, vl = h->hdrs[i].value_len;

    if ((size_t)(w->end - w->p) < nl + vl + 4) {
        w->over = true;
        return;
    }
    memcpy(w->p, hdr_name(h, i), nl);
    w->p[nl] = ':';
    w->p[nl + 1] = ' ';
    memcpy(w->p + nl + 2, hdr_value(h, i), vl);
    w->p[nl + 2 + vl] = '\r';
    w->p[nl + 3 + vl] = '\n';
    w->p += nl + vl + 4;
}

static void
put_u64(struct hw *w, uint64_t v)
{
    char tmp[24];
    size_t n = sizeof(tmp);

    do {
        tmp[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(w, tmp + n, sizeof(tmp) - n);
}

/* Enough room for any head built from h: each header line costs at most its
 * text (names and values with their NULs) plus ": " and CRLF; forwarding
 * headers repeat the host and X-Forwarded-For values once more. */
static size_t
head_bound(const struct gw_head *h, size_t extra)
{
    return 2 * h->text.len + 4 * h->n_hdrs + extra;
}

/* True for a Cookie pair (trimmed, len bytes) of the platform's own. */
static bool
platform_cookie(const char *pair, size_t len)
{
    static const char *const names[] = {GW_HOST_COOKIE "=", GW_SESSION_COOKIE "="};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        size_t n = strlen(names[i]);

        if (len >= n && memcmp(pair, names[i], n) == 0)
            return true;
    }
    return false;
}

/* Writes a Cookie header without the platform's pairs; nothing if none is left. */
static void
put_cookie_filtered(struct hw *w, const struct gw_head *h, size_t i)
{
    const char *v = hdr_value(h, i), *end = v + h->hdrs[i].value_len;
    bool any = false;

    while (v < end) {
        const char *semi = memchr(v, ';', (size_t)(end - v));
        const char *stop = semi ? semi : end;
        const char *a = v, *b = stop;

        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a && !platform_cookie(a, (size_t)(b - a))) {
            if (!any)
                PUTS(w, "Cookie: ");
            else
                PUTS(w, "; ");
            put(w, a, (size_t)(b - a));
            any = true;
        }
        v = semi ? semi + 1 : end;
    }
    if (any)
        PUTS(w, "\r\n");
}

/* True for "Authorization: Bearer eph_...": a token of ours. */
static bool
platform_bearer(const struct gw_head *h, size_t i)
{
    const char *v = hdr_value(h, i);
    size_t len = h->hdrs[i].value_len;

    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    if (len < 7 || strncasecmp(v, "bearer ", 7) != 0)
        return false;
    v += 7;
    len -= 7;
    while (len > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        len--;
    }
    return len >= 4 && memcmp(v, "eph_", 4) == 0;
}

/* One identity header; `head` is its name and ": ", and value holds no
 * control character (see struct gw_identity). */
#define PUT_IDENTITY(w, name, value, len)                                                          \
    do {                                                                                           \
        if ((value) != NULL && (len) > 0) {                                                        \
            PUTS((w), name ": ");                                                                  \
            put((w), (value), (len));                                                              \
            PUTS((w), "\r\n");                                                                     \
        }                                                                                          \
    } while (0)

int
gw__build_upstream_head(const struct gw_reqp *p, const char *client_addr, bool strip_credentials,
                        const struct gw_identity *id, struct buf *out)
{
    const struct gw_head *h = &p->head;
    const char *method = http_method_str(p->method);
    size_t client_len = strlen(client_addr);
    struct conn_tokens ct;
    const char *target, *host;
    size_t target_len, host_len = 0;
    bool had_xff = false;
    struct hw w;

    /* hosts: <= 255; identity: user, email and role, each bounded */
    if (hw_begin(out, head_bound(h, 2 * client_len + 1024 + 1024), &w) < 0)
        return EPH_ETOOBIG;
    collect_tokens(h, &ct);
    target = origin_target(p, &target_len);
    host = gw__reqp_host(p, &host_len);
    put(&w, method, strlen(method));
    PUTS(&w, " ");
    if (target[0] == '?')
        PUTS(&w, "/");
    put(&w, target, target_len);
    PUTS(&w, " HTTP/1.1\r\n");
    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (is_hop_by_hop(h, i, p->upgrade))
            continue;
        if (h->hdrs[i].name_len >= 15 && h->hdrs[i].name_len <= 17 &&
            (NAME_IS(h, i, "x-forwarded-proto") || NAME_IS(h, i, "x-forwarded-host") ||
             NAME_IS(h, i, "x-forwarded-for")))
            continue; /* ours replace them (X-Forwarded-For is joined below) */
        if (ct.n > 0 && !NAME_IS(h, i, "host") && named_by_connection(h, i, &ct) &&
            !(p->upgrade && NAME_IS(h, i, "upgrade")))
            continue;
        if (h->hdrs[i].name_len > 12 && strncasecmp(hdr_name(h, i), "x-ephemera-", 11) == 0)
            continue; /* never trusted from a client: ours follow */
        if (strip_credentials && NAME_IS(h, i, "cookie")) {
            put_cookie_filtered(&w, h, i);
            continue;
        }
        if (strip_credentials && NAME_IS(h, i, "authorization") && platform_bearer(h, i))
            continue;
        put_header(&w, h, i);
    }
    if (id) {
        PUT_IDENTITY(&w, "X-Ephemera-User", id->user, id->user_len);
        PUT_IDENTITY(&w, "X-Ephemera-Email", id->email, id->email_len);
        PUT_IDENTITY(&w, "X-Ephemera-Role", id->role, id->role_len);
    }
    /* X-Forwarded-For: what earlier proxies said, then the client. A
     * Connection-named X-Forwarded-For is dropped, not joined. */
    PUTS(&w, "X-Forwarded-For: ");
    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (!NAME_IS(h, i, "x-forwarded-for") || named_by_connection(h, i, &ct) ||
            h->hdrs[i].value_len == 0)
            continue;
        if (had_xff)
            PUTS(&w, ", ");
        put(&w, hdr_value(h, i), h->hdrs[i].value_len);
        had_xff = true;
    }
    if (had_xff)
        PUTS(&w, ", ");
    put(&w, client_addr, client_len);
    PUTS(&w, "\r\nX-Forwarded-Proto: http\r\n");
    if (host) {
        PUTS(&w, "X-Forwarded-Host: ");
        put(&w, host, host_len);
        PUTS(&w, "\r\n");
    }
    /* RFC 7239: IPv6 nodes are quoted and bracketed; the host is quoted
     * because a port's ':' is not a token character. */
    PUTS(&w, "Forwarded: for=");
    if (memchr(client_addr, ':', client_len)) {
        PUTS(&w, "\"[");
        put(&w, client_addr, client_len);
        PUTS(&w, "]\"");
    } else {
        put(&w, client_addr, client_len);
    }
    if (host) {
        PUTS(&w, ";host=\"");
        put(&w, host, host_len);
        PUTS(&w, "\"");
    }
    PUTS(&w, ";proto=http\r\n");
    if (p->framing == GW_FRAME_LENGTH) {
        PUTS(&w, "Content-Length: ");
        put_u64(&w, p->content_length);
        PUTS(&w, "\r\n");
    } else if (p->framing == GW_FRAME_CHUNKED) {
        PUTS(&w, "Transfer-Encoding: chunked\r\n");
    }
    if (p->upgrade)
        PUTS(&w, "Connection: upgrade\r\n");
    PUTS(&w, "\r\n");
    return hw_end(out, &w);
}

/* ------------------------------------------------------------- responses */

static struct gw_respp *
respp_of(http_parser *hp)
{
    return container_of(hp, struct gw_respp, parser);
}

static int
resp_fail(struct gw_respp *p, const char *reason)
{
    if (p->error_reason == NULL)
        p->error_reason = reason;
    return -1;
}

static int
resp_head_rc(struct gw_respp *p, int rc)
{
    if (rc == -1)
        return resp_fail(p, "response head too large");
    if (rc == -2)
        return resp_fail(p, "too many response header lines");
    return 0;
}

static int
on_resp_status(http_parser *hp, const char *at, size_t len)
{
    struct gw_respp *p = respp_of(hp);

    return resp_head_rc(p, head_first(&p->head, at, len));
}

static int
on_resp_field(http_parser *hp, const char *at, size_t len)
{
    struct gw_respp *p = respp_of(hp);

    if (p->head_done)
        return 0; /* trailers are dropped */
    return resp_head_rc(p, head_field(&p->head, at, len));
}

static int
on_resp_value(http_parser *hp, const char *at, size_t len)
{
    struct gw_respp *p = respp_of(hp);

    if (p->head_done)
        return 0;
    return resp_head_rc(p, head_value(&p->head, at, len));
}

static int
on_resp_headers_complete(http_parser *hp)
{
    struct gw_respp *p = respp_of(hp);
    struct gw_head *h = &p->head;
    struct framing_hdrs f;
    const char *why;
    int skip = 0;

    if (resp_head_rc(p, head_end_token(h)) < 0)
        return -1;
    why = head_check(h);
    if (why)
        return resp_fail(p, why);
    if (hp->http_major != 1)
        return resp_fail(p, "unsupported http version");
    find_framing(h, &f);
    if (f.n_te > 0 && f.n_cl > 0)
        return resp_fail(p, "both content-length and transfer-encoding");
    if (f.n_cl > 1)
        return resp_fail(p, "duplicate content-length");
    if (f.n_te > 0 &&
        (f.n_te > 1 || !is_chunked(hdr_value(h, (size_t)f.te), h->hdrs[f.te].value_len) ||
         !(hp->flags & F_CHUNKED)))
        return resp_fail(p, "unsupported transfer-encoding");
    p->status = hp->status_code;
    p->interim = false;
    p->switched = false;
    p->content_length = 0;
    if (p->status < 100 || p->status > 999)
        return resp_fail(p, "bad status code");
    if (p->status == 101) {
        if (!p->upgrade_request)
            return resp_fail(p, "101 response to a request without upgrade");
        p->switched = true;
        p->framing = GW_FRAME_NONE;
        skip = 2; /* http-parser: the rest is another protocol */
    } else if (p->status < 200) {
        p->interim = true;
        p->framing = GW_FRAME_NONE;
        skip = 1;
    } else if (p->head_request || p->status == 204 || p->status == 304) {
        p->framing = GW_FRAME_NONE;
        skip = 1;
    } else if (hp->flags & F_CHUNKED) {
        p->framing = GW_FRAME_CHUNKED;
    } else if (f.n_cl == 1) {
        if (!parse_length(hdr_value(h, (size_t)f.cl), h->hdrs[f.cl].value_len, &p->content_length))
            return resp_fail(p, "invalid content-length");
        p->framing = GW_FRAME_LENGTH;
    } else {
        p->framing = GW_FRAME_CLOSE;
    }
    p->head_done = true;
    p->head_event = true;
    http_parser_pause(hp, 1);
    return skip;
}

static int
on_resp_body(http_parser *hp, const char *at, size_t len)
{
    struct gw_respp *p = respp_of(hp);

    if (p->on_body)
        p->on_body(p->body_arg, at, len);
    return 0;
}

static int
on_resp_complete(http_parser *hp)
{
    struct gw_respp *p = respp_of(hp);

    p->keep_alive = !p->switched && http_should_keep_alive(hp) != 0;
    p->done = true;
    http_parser_pause(hp, 1);
    return 0;
}

static const http_parser_settings resp_settings = {
    .on_status = on_resp_status,
    .on_header_field = on_resp_field,
    .on_header_value = on_resp_value,
    .on_headers_complete = on_resp_headers_complete,
    .on_body = on_resp_body,
    .on_message_complete = on_resp_complete,
};

void
gw__respp_init(struct gw_respp *p, size_t max_head_bytes)
{
    memset(p, 0, sizeof(*p));
    head_init(&p->head, max_head_bytes);
    http_parser_init(&p->parser, HTTP_RESPONSE);
}

void
gw__respp_release(struct gw_respp *p)
{
    buf_release(&p->head.text);
}

static void
respp_clear(struct gw_respp *p)
{
    head_reset(&p->head);
    p->head_done = false;
    p->done = false;
    p->head_event = false;
    p->status = 0;
    p->interim = false;
    p->switched = false;
    p->framing = GW_FRAME_NONE;
    p->content_length = 0;
    p->keep_alive = false;
}

void
gw__respp_start(struct gw_respp *p, bool head_request, bool upgrade_request)
{
    respp_clear(p);
    p->error_reason = NULL;
    p->head_request = head_request;
    p->upgrade_request = upgrade_request;
    http_parser_init(&p->parser, HTTP_RESPONSE);
}

void
gw__respp_continue(struct gw_respp *p)
{
    EPH_ASSERT(p->done && p->interim);
    respp_clear(p);
    http_parser_pause(&p->parser, 0);
}

size_t
gw__respp_feed(struct gw_respp *p, const char *data, size_t len, enum gw_feed_event *ev)
{
    bool in_head = !p->head_done;
    enum http_errno e;
    size_t n;

    EPH_ASSERT(len > 0);
    if (p->error_reason) {
        *ev = GW_FEED_ERROR;
        return 0;
    }
    if (p->done) {
        *ev = GW_FEED_DONE;
        return 0;
    }
    if (p->head_event) {
        p->head_event = false;
        http_parser_pause(&p->parser, 0);
    }
    n = http_parser_execute(&p->parser, &resp_settings, data, len);
    e = HTTP_PARSER_ERRNO(&p->parser);
    if (in_head) {
        p->head.bytes += n;
        if (p->head.bytes > p->head.max_bytes)
            resp_fail(p, "response head too large");
    }
    if (p->error_reason == NULL && e != HPE_OK && e != HPE_PAUSED)
        resp_fail(p, http_errno_description(e));
    if (p->error_reason)
        *ev = GW_FEED_ERROR;
    else if (e == HPE_PAUSED)
        *ev = p->head_event ? GW_FEED_HEAD : GW_FEED_DONE;
    else
        *ev = GW_FEED_MORE;
    return n;
}

enum gw_feed_event
gw__respp_eof(struct gw_respp *p)
{
    if (p->error_reason)
        return GW_FEED_ERROR;
    if (p->done)
        return GW_FEED_DONE;
    if (p->head_done && !p->head_event && p->framing == GW_FRAME_CLOSE) {
        http_parser_execute(&p->parser, &resp_settings, NULL, 0);
        if (p->done)
            return GW_FEED_DONE;
    }
    resp_fail(p, p->head_done ? "upstream closed in the middle of the body"
                              : "upstream closed before the response head");
    return GW_FEED_ERROR;
}

void
gw__plan_response(const struct gw_respp *sp, int client_major, int client_minor,
                  bool client_keep_alive, struct gw_resp_plan *out)
{
    bool http11 = client_major == 1 && client_minor >= 1;

    out->close = !client_keep_alive;
    switch (sp->framing) {
    case GW_FRAME_NONE: out->framing = GW_FRAME_NONE; break;
    case GW_FRAME_LENGTH: out->framing = GW_FRAME_LENGTH; break;
    case GW_FRAME_CHUNKED:
    case GW_FRAME_CLOSE:
        /* An HTTP/1.0 client knows no chunks: the end of the connection ends
         * the body. */
        if (http11) {
            out->framing = GW_FRAME_CHUNKED;
        } else {
            out->framing = GW_FRAME_CLOSE;
            out->close = true;
        }
        break;
    }
}

int
gw__build_client_head(const struct gw_respp *sp, const struct gw_resp_plan *plan,
                      bool client_http10, struct buf *out)
{
    const struct gw_head *h = &sp->head;
    struct conn_tokens ct;
    const char *reason = h->text.data ? h->text.data : "";
    size_t reason_len = h->first_len;
    bool final = !sp->interim && !sp->switched;
    /* A body-less response keeps the upstream's Content-Length (of HEAD and
     * 304 it describes the representation); others get ours. */
    bool keep_cl = final && sp->framing == GW_FRAME_NONE && sp->status != 204;
    struct hw w;

    if (hw_begin(out, head_bound(h, 256), &w) < 0)
        return EPH_ETOOBIG;
    collect_tokens(h, &ct);
    if (reason_len == 0) {
        reason = http_status_str((enum http_status)sp->status);
        reason_len = strcmp(reason, "<unknown>") == 0 ? 0 : strlen(reason);
    }
    PUTS(&w, "HTTP/1.1 ");
    put_u64(&w, (uint64_t)sp->status);
    PUTS(&w, " ");
    put(&w, reason, reason_len);
    PUTS(&w, "\r\n");
    for (size_t i = 0; i < h->n_hdrs; i++) {
        if (keep_cl && NAME_IS(h, i, "content-length")) {
            put_header(&w, h, i);
            continue;
        }
        if (is_hop_by_hop(h, i, sp->switched))
            continue;
        if (ct.n > 0 && named_by_connection(h, i, &ct) &&
            !(sp->switched && NAME_IS(h, i, "upgrade")))
            continue;
        put_header(&w, h, i);
    }
    if (sp->switched) {
        PUTS(&w, "Connection: upgrade\r\n");
    } else if (final && plan) {
        if (plan->framing == GW_FRAME_LENGTH) {
            PUTS(&w, "Content-Length: ");
            put_u64(&w, sp->content_length);
            PUTS(&w, "\r\n");
        } else if (plan->framing == GW_FRAME_CHUNKED) {
            PUTS(&w, "Transfer-Encoding: chunked\r\n");
        }
        if (plan->close)
            PUTS(&w, "Connection: close\r\n");
        else if (client_http10)
            PUTS(&w, "Connection: keep-alive\r\n");
    }
    PUTS(&w, "\r\n");
    return hw_end(out, &w);
}

size_t
gw__chunk_line(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t n = 0;
    size_t o = 0;

    do {
        tmp[n++] = hex[len & 15];
        len >>= 4;
    } while (len);
    while (n)
        out[o++] = tmp[--n];
    out[o++] = '\r';
    out[o++] = '\n';
    return o;
}
