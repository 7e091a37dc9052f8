/*
 * api/api_pages.c - the control host's HTML pages: the frame and its
 * security headers, escaping, and the pure helpers of sign-in (where a
 * browser may be sent back to, form bodies, percent-encoding, the origin
 * check of form posts, user names derived from identities).
 *
 * The helpers are pure so that the unit tests can throw every bad input at
 * them (tests/unit/api/test_api_signin.c); api_signin.c does the talking.
 */
#include "api/api_pages.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/url.h"
#include "util/xmalloc.h"

/* ------------------------------------------------------------- small parsers */

static bool
is_alnum_ascii(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Printable ASCII but the blank and the backslash (which browsers read as '/'
 * in http(s) URLs: "/\evil.example" goes to evil.example). */
static bool
url_char_ok(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '\\';
}

/* The length of "http://" or "https://" at the start of s (any case), else 0;
 * *https says which. */
static size_t
scheme_len(const char *s, bool *https)
{
    if (strncasecmp(s, "http://", 7) == 0) {
        *https = false;
        return 7;
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        *https = true;
        return 8;
    }
    return 0;
}

/*
 * Checks an authority of len bytes: a DNS-ish host ([A-Za-z0-9.-]) or a
 * bracketed IPv6 literal, then at most one ":port" (1..65535). No user info:
 * '@' is not among the characters allowed.
 */
static bool
authority_ok(const char *a, size_t len)
{
    size_t i = 0;

    if (len == 0 || len >= AUTH_HOST_MAX)
        return false;
    if (a[0] == '[') {
        for (i = 1; i < len && a[i] != ']'; i++) {
            if (!isxdigit((unsigned char)a[i]) && a[i] != ':' && a[i] != '.')
                return false;
        }
        if (i == len || i == 1)
            return false;
        i++; /* the ']' */
    } else {
        for (; i < len && a[i] != ':'; i++) {
            if (!is_alnum_ascii((unsigned char)a[i]) && a[i] != '.' && a[i] != '-')
                return false;
        }
        if (i == 0)
            return false;
    }
    if (i == len)
        return true;
    if (a[i] != ':' || len - i - 1 == 0 || len - i - 1 > 5)
        return false;
    {
        long port = 0;

        for (size_t j = i + 1; j < len; j++) {
            if (a[j] < '0' || a[j] > '9')
                return false;
            port = port * 10 + (a[j] - '0');
        }
        return port >= 1 && port <= 65535;
    }
}

/* The authority of an absolute http(s) URL: *start and *len, or false. */
static bool
authority_of(const char *url, const char **start, size_t *len, bool *https)
{
    size_t skip = scheme_len(url, https);

    if (skip == 0)
        return false;
    *start = url + skip;
    *len = strcspn(*start, "/?#");
    return true;
}

bool
api__origin_of(const char *base, char *out, size_t out_size)
{
    const char *auth;
    size_t len;
    bool https;
    int n;

    if (base == NULL || !authority_of(base, &auth, &len, &https) || !authority_ok(auth, len))
        return false;
    n = snprintf(out, out_size, "%s://%.*s", https ? "https" : "http", (int)len, auth);
    if (n < 0 || (size_t)n >= out_size)
        return false;
    for (char *c = out; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    return true;
}

/* ------------------------------------------------------------- redirect targets */

enum api_rd_kind
api__rd_check(const char *rd, const char *public_base, api_host_ours_fn *host_ours, void *arg,
              struct api_rd *out)
{
    const char *auth, *rest;
    size_t len, rest_len;
    bool https = false;
    bool control;
    size_t rd_len;

    memset(out, 0, sizeof(*out));
    if (rd == NULL || rd[0] == '\0')
        rd = "/";
    rd_len = strlen(rd);
    if (rd_len > API_RD_MAX)
        return API_RD_BAD;
    for (size_t i = 0; i < rd_len; i++) {
        if (!url_char_ok((unsigned char)rd[i]))
            return API_RD_BAD;
    }
    if (rd[0] == '/') {
        if (rd[1] == '/')
            return API_RD_BAD; /* "//evil.example": another host, same scheme */
        memcpy(out->url, rd, rd_len + 1);
        out->kind = API_RD_PATH;
        return out->kind;
    }
    if (!authority_of(rd, &auth, &len, &https) || !authority_ok(auth, len))
        return API_RD_BAD;
    rest = auth + len;
    rest_len = strcspn(rest, "#"); /* browsers never send a fragment: none in a ticket */
    if (rest_len >= 2 && rest[0] == '/' && rest[1] == '/')
        return API_RD_BAD; /* a path the service host would read as another host */
    if (rest_len + (rest[0] != '/') >= AUTH_RD_MAX)
        return API_RD_BAD;
    {
        char base_origin[AUTH_HOST_MAX + 16];
        const char *base_auth = NULL;
        size_t base_len = 0;
        bool base_https;

        control = api__origin_of(public_base, base_origin, sizeof(base_origin)) &&
                  authority_of(base_origin, &base_auth, &base_len, &base_https) &&
                  base_len == len && strncasecmp(base_auth, auth, len) == 0;
    }
    if (!control && (host_ours == NULL || !host_ours(arg, auth, len)))
        return API_RD_BAD;
    out->https = https;
    memcpy(out->authority, auth, len);
    out->authority[len] = '\0';
    snprintf(out->path, sizeof(out->path), "%s%.*s", rest[0] == '/' ? "" : "/", (int)rest_len,
             rest);
    snprintf(out->url, sizeof(out->url), "%s://%s", https ? "https" : "http",
             rd + scheme_len(rd, &https));
    out->kind = control ? API_RD_CONTROL : API_RD_SERVICE;
    return out->kind;
}

bool
api__same_origin_post(const char *origin, const char *referer, const char *public_base)
{
    char want[AUTH_HOST_MAX + 16];
    size_t n;

    if (!api__origin_of(public_base, want, sizeof(want)))
        return false;
    if (origin != NULL)
        return strcasecmp(origin, want) == 0;
    if (referer == NULL)
        return false;
    n = strlen(want);
    return strncasecmp(referer, want, n) == 0 && referer[n] == '/';
}

/* ------------------------------------------------------------- forms and URLs */

char *
api__form_value(const char *body, size_t len, const char *name)
{
    const char *p = body;
    const char *end = body ? body + len : NULL;

    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        char *key = url_decode(p, (size_t)((eq ? eq : stop) - p), true);
        bool match = key && strcmp(key, name) == 0;

        free(key);
        if (match)
            return eq ? url_decode(eq + 1, (size_t)(stop - eq - 1), true) : xstrdup("");
        p = amp ? amp + 1 : NULL;
    }
    return NULL;
}

void
api__url_encode(struct buf *out, const char *s)
{
    (void)url_encode(out, s, strlen(s)); /* the callers size out for their URLs */
}

/*
 * The q-value Accept gives `type` ("application/json"): that of the most
 * specific range matching it (the type itself, then its major type with a
 * wildcard subtype, then the wildcard of all); 0 if none.
 */
static double
accept_q(const char *accept, const char *type)
{
    size_t major = strchr(type, '/') - type;
    double best_q = 0;
    int best_rank = 0; /* 3: exact, 2: major type and wildcard, 1: all */
    const char *p = accept;

    while (p && *p) {
        const char *comma = strchr(p, ',');
        const char *stop = comma ? comma : p + strlen(p);
        const char *semi = memchr(p, ';', (size_t)(stop - p));
        const char *tend = semi ? semi : stop;
        double q = 1;
        int rank = 0;

        while (p < tend && (*p == ' ' || *p == '\t'))
            p++;
        while (tend > p && (tend[-1] == ' ' || tend[-1] == '\t'))
            tend--;
        if ((size_t)(tend - p) == strlen(type) && strncasecmp(p, type, strlen(type)) == 0)
            rank = 3;
        else if ((size_t)(tend - p) == major + 2 && strncasecmp(p, type, major + 1) == 0 &&
                 p[major + 1] == '*')
            rank = 2;
        else if ((size_t)(tend - p) == 3 && strncmp(p, "*/*", 3) == 0)
            rank = 1;
        for (const char *s = semi; s && s < stop;) {
            const char *next = memchr(s + 1, ';', (size_t)(stop - s - 1));

            s++;
            while (s < stop && (*s == ' ' || *s == '\t'))
                s++;
            if (stop - s >= 2 && (s[0] == 'q' || s[0] == 'Q') && s[1] == '=')
                q = strtod(s + 2, NULL);
            s = next;
        }
        if (rank > best_rank) {
            best_rank = rank;
            best_q = q;
        }
        p = comma ? comma + 1 : NULL;
    }
    return best_q;
}

bool
api__accept_json(const char *accept)
{
    if (accept == NULL)
        return false;
    return accept_q(accept, "application/json") > accept_q(accept, "text/html");
}

/* ------------------------------------------------------------- identities */

/* The name `s` (n bytes) gives: see api__derive_user_name. */
static void
name_from(const char *s, size_t n, char out[API_USER_NAME_MAX + 1])
{
    size_t o = 0;
    bool dash = false;

    for (size_t i = 0; i < n && o < API_USER_NAME_MAX; i++) {
        unsigned char c = (unsigned char)s[i];

        if (is_alnum_ascii(c)) {
            if (dash && o > 0 && o + 1 < API_USER_NAME_MAX)
                out[o++] = '-';
            else if (dash && o > 0)
                break; /* no room for both: stop at the boundary */
            out[o++] = (char)tolower(c);
            dash = false;
        } else {
            dash = true;
        }
    }
    while (o > 0 && out[o - 1] == '-')
        o--;
    out[o] = '\0';
}

void
api__derive_user_name(const char *preferred, const char *email, char out[API_USER_NAME_MAX + 1])
{
    out[0] = '\0';
    if (preferred)
        name_from(preferred, strlen(preferred), out);
    if (out[0] == '\0' && email) {
        const char *at = strchr(email, '@');

        name_from(email, at ? (size_t)(at - email) : strlen(email), out);
    }
    if (out[0] == '\0')
        snprintf(out, API_USER_NAME_MAX + 1, "user");
}

void
api__user_name_candidate(const char *base, unsigned n, char out[API_USER_NAME_MAX + 1])
{
    char suffix[16] = "";
    size_t keep;

    if (n > 1)
        snprintf(suffix, sizeof(suffix), "-%u", n);
    keep = strlen(base);
    if (keep > API_USER_NAME_MAX - strlen(suffix))
        keep = API_USER_NAME_MAX - strlen(suffix);
    while (keep > 0 && base[keep - 1] == '-')
        keep--;
    if (keep == 0) {
        base = "user";
        keep = 4;
    }
    snprintf(out, API_USER_NAME_MAX + 1, "%.*s%s", (int)keep, base, suffix);
}

bool
api__cli_params_valid(const char *port, const char *state, int *port_out)
{
    size_t n;
    long p = 0;

    if (port == NULL || state == NULL)
        return false;
    n = strlen(port);
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (port[i] < '0' || port[i] > '9')
            return false;
        p = p * 10 + (port[i] - '0');
    }
    if (p < 1024 || p > 65535)
        return false;
    n = strlen(state);
    if (n < 16 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)state[i];

        if (!is_alnum_ascii(c) && c != '-' && c != '_')
            return false;
    }
    if (port_out)
        *port_out = (int)p;
    return true;
}

/* ------------------------------------------------------------- HTML */

void
api__html_escape(struct buf *out, const char *s)
{
    for (const char *c = s; c && *c; c++) {
        switch (*c) {
        case '&': buf_puts(out, "&amp;"); break;
        case '<': buf_puts(out, "&lt;"); break;
        case '>': buf_puts(out, "&gt;"); break;
        case '"': buf_puts(out, "&quot;"); break;
        case '\'': buf_puts(out, "&#39;"); break;
        default: buf_append(out, c, 1); break;
        }
    }
}

/* A page is a few kilobytes; user-controlled parts are bounded before. */
#define PAGE_MAX_BYTES (256 * 1024)

static const char page_style[] =
    "body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}"
    "main{max-width:26rem;margin:4rem auto;padding:2rem;background:#fff;border-radius:8px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.12)}"
    "h1{font-size:1.3rem;margin:0 0 1rem}"
    "label{display:block;margin:.6rem 0 .2rem}"
    "input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.45rem;"
    "border:1px solid #b8bfcc;border-radius:4px;font:inherit}"
    "button,.button{display:block;width:100%;box-sizing:border-box;margin:1rem 0 0;"
    "padding:.55rem;border:0;border-radius:4px;background:#2554c7;color:#fff;font:inherit;"
    "text-align:center;text-decoration:none;cursor:pointer}"
    ".button.alt{background:#e8ebf2;color:#1d2330}"
    ".error{padding:.5rem .7rem;background:#fdecec;color:#8a1c1c;border-radius:4px}"
    ".or{margin:1.2rem 0 0;text-align:center;color:#6b7385}"
    "p.small{font-size:.85rem;color:#6b7385}";

void
api__page_headers(struct http_exchange *x)
{
    http_add_header(x, "Cache-Control", "no-store");
    http_add_header(x, "X-Content-Type-Options", "nosniff");
    /* Not no-referrer: with it, browsers send "Origin: null" on our own
     * form posts, which the origin check then refuses. */
    http_add_header(x, "Referrer-Policy", "same-origin");
}

/* True if `origin` may go into the CSP as it is: scheme://authority only. */
static bool
csp_origin_ok(const char *origin)
{
    const char *auth;
    size_t len;
    bool https;

    return origin && authority_of(origin, &auth, &len, &https) && auth[len] == '\0' &&
           authority_ok(auth, len);
}

void
api__page_send(struct http_exchange *x, int status, const char *title, const char *body_html,
               const char *form_origin)
{
    struct buf page;
    char csp[AUTH_HOST_MAX + 256];

    buf_init(&page, PAGE_MAX_BYTES);
    buf_puts(&page, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                    "<title>");
    api__html_escape(&page, title);
    buf_printf(&page, " - ephemera</title><style>%s</style></head>\n<body><main><h1>", page_style);
    api__html_escape(&page, title);
    buf_puts(&page, "</h1>\n");
    buf_puts(&page, body_html ? body_html : "");
    buf_puts(&page, "\n</main></body></html>\n");
    snprintf(csp, sizeof(csp),
             "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'%s%s; "
             "frame-ancestors 'none'; base-uri 'none'",
             csp_origin_ok(form_origin) ? " " : "", csp_origin_ok(form_origin) ? form_origin : "");
    api__page_headers(x);
    http_add_header(x, "X-Frame-Options", "DENY");
    http_add_header(x, "Content-Security-Policy", csp);
    http_respond(x, status, "text/html; charset=utf-8", buf_cstr(&page), page.len);
    buf_release(&page);
}

void
api__page_redirect(struct http_exchange *x, int status, const char *location)
{
    static const char body[] = "<!doctype html>\n<title>Redirecting</title>\n";

    api__page_headers(x);
    http_add_header(x, "Location", location);
    http_respond(x, status, "text/html; charset=utf-8", body, sizeof(body) - 1);
}
