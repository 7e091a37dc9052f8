/*
 * api/api_pages.h - what the control host's HTML pages share (api_pages.c):
 * the page frame with its security headers, HTML escaping, and the pure
 * helpers of sign-in (api_signin.c): checking where a browser may be sent
 * back to, reading form bodies, percent-encoding, the origin check that
 * stops cross-site form posts, and deriving a user name from what an
 * identity provider says.
 *
 * The pure helpers touch no exchange, store or loop (any thread); the page
 * functions answer an exchange (control loop only).
 */
#ifndef EPH_API_API_PAGES_H
#define EPH_API_API_PAGES_H

#include <stdbool.h>
#include <stddef.h>

#include "auth/signed.h"
#include "gateway/http_server.h"
#include "util/buf.h"

/* ------------------------------------------------------------- redirect targets */

/* The longest `rd` accepted (bytes, NUL excluded): a link somebody followed,
 * not a document. */
#define API_RD_MAX 2048

enum api_rd_kind {
    API_RD_BAD = 0, /* refused: would leave this server, or is malformed */
    API_RD_PATH,    /* "/envs?x=1": a path on the control host */
    API_RD_CONTROL, /* "http://localhost:8080/x": an absolute URL on the control host */
    API_RD_SERVICE, /* "http://web.fx.localhost:8080/x": a service host (needs a ticket) */
};

/* Says whether `host` (len bytes, with its port) names this server: the hook
 * of api.h (struct api_hooks.host_ours). */
typedef bool api_host_ours_fn(void *arg, const char *host, size_t len);

struct api_rd {
    enum api_rd_kind kind;
    char url[API_RD_MAX + 1];      /* the target as checked, scheme lower-cased; "/" by default */
    bool https;                    /* absolute ones: the scheme is https */
    char authority[AUTH_HOST_MAX]; /* absolute ones: "web.fx.localhost:8080" as given */
    char path[AUTH_RD_MAX];        /* absolute ones: path and query ("/" at least), no fragment */
};

/*
 * Checks a redirect target `rd` (decoded; NULL or "" mean "/") against this
 * server: a path on the control host ("/..." but not "//..."), or an
 * absolute http(s) URL without user info whose host (with its port) the
 * hook accepts, or, when `host_ours` is NULL, that is public_base's own
 * host. Control characters, blanks, backslashes and bytes outside ASCII are
 * refused anywhere (a browser reads "/\evil" as "//evil"); so is a path
 * and query on a service host too long for a ticket. Fills *out (kind
 * API_RD_BAD and nothing else when refused) and returns out->kind.
 */
enum api_rd_kind api__rd_check(const char *rd, const char *public_base, api_host_ours_fn *host_ours,
                               void *arg, struct api_rd *out);

/*
 * The origin of a base URL ("https://Eph.Example.com:8443/x" ->
 * "https://eph.example.com:8443"): scheme and authority, lower-cased, into
 * out. False if `base` is not an absolute http(s) URL or does not fit.
 */
bool api__origin_of(const char *base, char *out, size_t out_size);

/*
 * The check that stops another site (a preview environment is same-site
 * with the control host) from posting our forms: true if `origin` (the
 * request's Origin header) equals public_base's origin, or, when no Origin
 * was sent, `referer` starts with public_base's origin and a '/'. NULL
 * headers are absent; "null" matches nothing.
 */
bool api__same_origin_post(const char *origin, const char *referer, const char *public_base);

/* ------------------------------------------------------------- forms and URLs */

/*
 * The value of field `name` in an application/x-www-form-urlencoded body of
 * len bytes ('+' is a blank, %XX a byte), the first if repeated: a string
 * to free(), or NULL when absent or badly encoded (a stray '%', or %00).
 */
char *api__form_value(const char *body, size_t len, const char *name);

/* Appends `s` percent-encoded for a query value (all but A-Z a-z 0-9 - . _ ~). */
void api__url_encode(struct buf *out, const char *s);

/* True if Accept prefers application/json to text/html (q-values counted;
 * NULL, wildcards alone or a tie mean HTML). */
bool api__accept_json(const char *accept);

/* ------------------------------------------------------------- identities */

#define API_USER_NAME_MAX 32 /* derived user names: [a-z0-9-], at most this long */

/*
 * A user name for someone an identity provider vouches for: the first of
 * `preferred` (preferred_username, a GitHub login) and the local part of
 * `email` that leaves anything, lower-cased, each run of other characters
 * one '-', none at either end, cut to API_USER_NAME_MAX; else "user".
 * Either may be NULL. Into out (API_USER_NAME_MAX + 1 bytes).
 */
void api__derive_user_name(const char *preferred, const char *email,
                           char out[API_USER_NAME_MAX + 1]);

/*
 * The n-th candidate for a unique name from `base` (n >= 1): base itself
 * for 1, else base cut so that "-<n>" fits in API_USER_NAME_MAX ("bob-2").
 */
void api__user_name_candidate(const char *base, unsigned n, char out[API_USER_NAME_MAX + 1]);

/* True if the CLI's sign-in parameters are acceptable: port 1024..65535 in
 * decimal, state 16..128 characters of [A-Za-z0-9_-]. */
bool api__cli_params_valid(const char *port, const char *state, int *port_out);

/* ------------------------------------------------------------- HTML */

/* Appends `s` with & < > " ' escaped; NULL appends nothing. */
void api__html_escape(struct buf *out, const char *s);

/*
 * Sends a whole page: the frame (doctype, title, a small inline style) around
 * `body_html` (already escaped), with Content-Type text/html; charset=utf-8,
 * Cache-Control: no-store, X-Frame-Options: DENY, nosniff, Referrer-Policy
 * same-origin and a Content-Security-Policy that allows inline style only
 * and forms posting to this origin, plus `form_origin` (NULL: none), where
 * a form's answer redirects the browser (browsers check form-action on
 * every redirect of a form post). `title` is escaped here. Finishes the
 * exchange.
 */
void api__page_send(struct http_exchange *x, int status, const char *title, const char *body_html,
                    const char *form_origin);

/* Adds the headers every answer of sign-in carries (no-store, nosniff,
 * Referrer-Policy); api__page_send adds them itself. */
void api__page_headers(struct http_exchange *x);

/* Sends a redirect (302, 303) to `location` with the headers above and a
 * tiny body; finishes the exchange. */
void api__page_redirect(struct http_exchange *x, int status, const char *location);

#endif
