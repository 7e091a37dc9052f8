/*
 * gateway/http_request.c - bytes in, one HTTP/1.1 request out: drives
 * http-parser, keeps the head and body in buffers with ceilings, and turns
 * every way a request can be wrong into the status that says so (400, 413,
 * 431). No sockets here: the connection code and the fuzz target share it.
 */
#include "gateway/gateway_int.h"

#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "util/url.h"
#include "util/xmalloc.h"

/* Which callback appended the last bytes to r->head. */
enum { LAST_NONE, LAST_URL, LAST_FIELD, LAST_VALUE };

static struct gw_req *
req_of(http_parser *p)
{
    return container_of(p, struct gw_req, parser);
}

/* Refuses the request; a non-zero return makes http-parser stop. */
static int
refuse(struct gw_req *r, int status, const char *reason)
{
    if (r->error_status == 0) {
        r->error_status = status;
        r->error_reason = reason;
    }
    return -1;
}

static int
head_append(struct gw_req *r, const char *at, size_t len)
{
    if (buf_append(&r->head, at, len) < 0)
        return refuse(r, 431, "request head too large");
    return 0;
}

/* Ends the text the last callback was adding to: the URL, a name or a value. */
static int
end_token(struct gw_req *r)
{
    switch (r->last) {
    case LAST_URL: r->url_len = r->head.len; break;
    case LAST_FIELD:
        /* A name without a value ("X-Empty:"): its value is "". */
        if (head_append(r, "", 1) < 0)
            return -1;
        r->headers[r->n_headers - 1].value_off = r->head.len;
        break;
    case LAST_VALUE:
        while (r->head.len > r->headers[r->n_headers - 1].value_off &&
               (r->head.data[r->head.len - 1] == ' ' || r->head.data[r->head.len - 1] == '\t'))
            r->head.len--;
        break;
    default: return 0;
    }
    return head_append(r, "", 1);
}

static int
on_message_begin(http_parser *p)
{
    req_of(p)->started = true;
    return 0;
}

static int
on_url(http_parser *p, const char *at, size_t len)
{
    struct gw_req *r = req_of(p);

    r->last = LAST_URL;
    return head_append(r, at, len);
}

static int
on_header_field(http_parser *p, const char *at, size_t len)
{
    struct gw_req *r = req_of(p);

    /* After the head, fields are trailers of a chunked body. They are dropped:
     * merged into the headers they could add what the head never said
     * (Authorization) after whoever checked the head had looked. */
    if (r->headers_done)
        return 0;
    if (r->last != LAST_FIELD) {
        if (end_token(r) < 0)
            return -1;
        if (r->n_headers == GW_MAX_HEADERS)
            return refuse(r, 431, "too many header lines");
        r->headers[r->n_headers].name_off = r->head.len;
        r->headers[r->n_headers].value_off = r->head.len;
        r->n_headers++;
        r->last = LAST_FIELD;
    }
    return head_append(r, at, len);
}

static int
on_header_value(http_parser *p, const char *at, size_t len)
{
    struct gw_req *r = req_of(p);

    if (r->headers_done)
        return 0; /* a trailer's value: dropped with its name */
    if (r->last == LAST_FIELD) {
        if (head_append(r, "", 1) < 0)
            return -1;
        r->headers[r->n_headers - 1].value_off = r->head.len;
        r->last = LAST_VALUE;
    }
    return head_append(r, at, len);
}

static const char *
find_header(const char *head, const struct gw_header *hs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(head + hs[i].name_off, name) == 0)
            return head + hs[i].value_off;
    }
    return NULL;
}

/* Splits the URL into the decoded path and the raw query; 0 or -1 (400). */
static int
parse_target(struct gw_req *r)
{
    struct http_parser_url u;
    const char *url = r->head.data;

    http_parser_url_init(&u);
    if (r->url_len == 0 || r->parser.method == HTTP_CONNECT ||
        http_parser_parse_url(url, r->url_len, 0, &u) != 0 || !(u.field_set & (1 << UF_PATH)))
        return refuse(r, 400, "bad request target");
    r->path = url_decode(url + u.field_data[UF_PATH].off, u.field_data[UF_PATH].len, false);
    if (r->path == NULL || r->path[0] != '/')
        return refuse(r, 400, "bad request path");
    if (u.field_set & (1 << UF_QUERY))
        r->query = xstrndup(url + u.field_data[UF_QUERY].off, u.field_data[UF_QUERY].len);
    else
        r->query = xstrdup("");
    return 0;
}

static int
on_headers_complete(http_parser *p)
{
    struct gw_req *r = req_of(p);
    const char *expect;

    if (end_token(r) < 0)
        return -1;
    if (r->last == LAST_NONE || r->url_len == 0)
        return refuse(r, 400, "no request target");
    r->last = LAST_NONE;
    r->headers_done = true;
    r->method = http_method_str((enum http_method)p->method);
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    r->keep_alive = http_should_keep_alive(p) != 0;
    /* RFC 7230 3.3.3: both framings at once is how requests are smuggled. */
    if (find_header(r->head.data, r->headers, r->n_headers, "Transfer-Encoding") &&
        find_header(r->head.data, r->headers, r->n_headers, "Content-Length"))
        return refuse(r, 400, "both content-length and transfer-encoding");
    if (parse_target(r) < 0)
        return -1;
    if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body_bytes)
        return refuse(r, 413, "request body too large");
    expect = find_header(r->head.data, r->headers, r->n_headers, "Expect");
    r->expect_continue = expect && strcasecmp(expect, "100-continue") == 0;
    return 0;
}

static int
on_body(http_parser *p, const char *at, size_t len)
{
    struct gw_req *r = req_of(p);

    if (buf_append(&r->body, at, len) < 0)
        return refuse(r, 413, "request body too large");
    return 0;
}

static int
on_message_complete(http_parser *p)
{
    struct gw_req *r = req_of(p);

    r->complete = true;
    /* Requests are handled one at a time: what follows waits in the parser's
     * caller until this one is answered. */
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* Forgets the current request (keeping the parser's position in the stream). */
static void
req_clear(struct gw_req *r)
{
    buf_reset(&r->head);
    buf_reset(&r->body);
    free(r->path);
    free(r->query);
    r->path = NULL;
    r->query = NULL;
    r->url_len = 0;
    r->n_headers = 0;
    r->last = LAST_NONE;
    r->started = false;
    r->headers_done = false;
    r->complete = false;
    r->expect_continue = false;
    r->method = NULL;
    r->keep_alive = false;
}

void
gw__req_init(struct gw_req *r, size_t max_header_bytes, size_t max_body_bytes)
{
    memset(r, 0, sizeof(*r));
    http_parser_init(&r->parser, HTTP_REQUEST);
    r->max_body_bytes = max_body_bytes;
    buf_init(&r->head, max_header_bytes);
    buf_init(&r->body, max_body_bytes);
}

void
gw__req_release(struct gw_req *r)
{
    req_clear(r);
    buf_release(&r->head);
    buf_release(&r->body);
}

size_t
gw__req_feed(struct gw_req *r, const char *data, size_t len)
{
    size_t n;
    enum http_errno e;

    EPH_ASSERT(len > 0);
    if (r->error_status != 0 || r->complete)
        return 0;
    n = http_parser_execute(&r->parser, &settings, data, len);
    e = HTTP_PARSER_ERRNO(&r->parser);
    if (r->error_status != 0 || e == HPE_OK || e == HPE_PAUSED)
        return n;
    if (e == HPE_HEADER_OVERFLOW)
        refuse(r, 431, "request head too large");
    else
        refuse(r, 400, http_errno_description(e));
    return n;
}

void
gw__req_take(struct gw_req *r, struct gw_request *out)
{
    EPH_ASSERT(r->complete);
    memset(out, 0, sizeof(*out));
    out->method = r->method;
    out->http_major = r->http_major;
    out->http_minor = r->http_minor;
    out->keep_alive = r->keep_alive && !r->parser.upgrade;
    out->upgrade = r->parser.upgrade;
    out->n_headers = r->n_headers;
    out->headers = xmalloc((r->n_headers ? r->n_headers : 1) * sizeof(struct gw_header));
    if (r->n_headers)
        memcpy(out->headers, r->headers, r->n_headers * sizeof(struct gw_header));
    out->head = buf_steal(&r->head);
    out->path = r->path;
    out->query = r->query;
    r->path = NULL;
    r->query = NULL;
    out->body_len = r->body.len;
    out->body = buf_steal(&r->body);
    req_clear(r);
    http_parser_pause(&r->parser, 0);
}

void
gw__request_release(struct gw_request *req)
{
    free(req->head);
    free(req->headers);
    free(req->path);
    free(req->query);
    free(req->body);
    memset(req, 0, sizeof(*req));
}

const char *
gw__request_header(const struct gw_request *req, const char *name)
{
    return find_header(req->head, req->headers, req->n_headers, name);
}

char *
gw__query_param(const char *query, const char *name)
{
    const char *p = query;

    while (p && *p) {
        const char *end = strchr(p, '&');
        const char *eq;
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *key;

        eq = memchr(p, '=', len);
        key = url_decode(p, eq ? (size_t)(eq - p) : len, true);
        if (key && strcmp(key, name) == 0) {
            free(key);
            if (eq == NULL)
                return xstrdup("");
            return url_decode(eq + 1, len - (size_t)(eq + 1 - p), true);
        }
        free(key);
        p = end ? end + 1 : NULL;
    }
    return NULL;
}
