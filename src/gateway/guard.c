/*
 * gateway/guard.c - who may pass to a service host: the sign-in check the
 * gateway makes on every request for <service>.<env>.<domain> before it is
 * proxied (docs/auth.md).
 *
 * Credentials, in this order:
 *   1. "Authorization: Bearer eph_..." (CLI, CI): a token of the auth index;
 *      a bad one is 401 at once, it never falls through to a cookie;
 *   2. the host cookie GW_HOST_COOKIE, signed for this very host
 *      (auth/signed.h): a session's (which must still be live in the index)
 *      or a share link's (which lets in to its one environment only).
 * Without either, a browser asking for a page is sent to the control host's
 * /auth/ticket, which signs it in if needed and sends it back with a
 * one-time ticket to /_eph/auth on this host; that exchange, and the share
 * link's /_eph/link, are answered here. Other clients get 401 in JSON.
 *
 * The environment must then be visible to whoever it is (core/access.h);
 * one that is not, or does not exist, is a plain 404 that lists nothing.
 * A share link, and its cookie, also carry the time the link was made: one
 * made at or before the environment's links_since_ms (when its visibility
 * last left `link`) was withdrawn, and stays so when the environment is
 * shared again.
 *
 * Runs on the gateway's worker loops; reads the shared index (locks inside).
 */
#include "gateway/proxy_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "auth/auth.h"
#include "auth/index.h"
#include "auth/signed.h"
#include "core/access.h"
#include "gateway/cookie_memo.h"
#include "util/cookie.h"
#include "util/unaligned.h"
#include "util/url.h"

#define EPH_PATH_AUTH "/_eph/auth"
#define EPH_PATH_LINK "/_eph/link"

/* The wall clock to a few milliseconds (a tick): the coarse clock costs a
 * fraction of the precise one, and is read on every request. */
static int64_t
wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Browsers reach the gateway over HTTPS (the sign-in base URL says so): its
 * cookies are Secure, and its redirects name https. */
static bool
reached_over_https(const struct gw_worker *w)
{
    return strncmp(w->cfg->signin_base, "https://", 8) == 0;
}

static const struct auth_key *
key_of(const struct gw_worker *w)
{
    return (const struct auth_key *)w->cfg->auth_key;
}

/* The value of query parameter `name` of target, percent-decoded (util/url),
 * into out; false if absent, empty, badly encoded (or holding %00) or too
 * long. */
static bool
query_param(const char *target, size_t len, const char *name, char *out, size_t out_size)
{
    const char *q = memchr(target, '?', len);
    const char *end = target + len;
    size_t name_len = strlen(name);

    if (q == NULL)
        return false;
    for (const char *p = q + 1; p < end;) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;

        if ((size_t)(stop - p) > name_len && memcmp(p, name, name_len) == 0 && p[name_len] == '=') {
            const char *v = p + name_len + 1;
            char *value = url_decode(v, (size_t)(stop - v), true);
            size_t n = value ? strlen(value) : 0;
            bool ok = n > 0 && n < out_size;

            if (ok)
                memcpy(out, value, n + 1);
            free(value);
            return ok;
        }
        p = amp ? amp + 1 : end;
    }
    return false;
}

/*
 * Header i of h is Cookie, or Authorization, in any case. Setting bit 5 of
 * each byte of a name makes a letter lowercase, and for letters only the
 * same letter in either case gives the one wanted, so comparing a word at
 * a time (the last one overlapping) is exact: these two names are looked
 * for in every header of every signed-in request.
 */
static bool
is_cookie_header(const struct gw_head *h, size_t i)
{
    const char *n = h->text.data + h->hdrs[i].name_off;

    return h->hdrs[i].name_len == 6 && (load_u32(n) | 0x20202020u) == load_u32("cook") &&
           (load_u32(n + 2) | 0x20202020u) == load_u32("okie");
}

static bool
is_authorization_header(const struct gw_head *h, size_t i)
{
    const char *n = h->text.data + h->hdrs[i].name_off;
    const uint64_t bit5 = 0x2020202020202020ull;

    return h->hdrs[i].name_len == 13 && (load_u64(n) | bit5) == load_u64("authoriz") &&
           (load_u64(n + 5) | bit5) == load_u64("rization");
}

/* What a request may prove who it is with (borrowed from its head). */
struct credentials {
    const char *authz; /* the first Authorization header's value, or NULL */
    size_t authz_len;
    const char *cookie; /* the first GW_HOST_COOKIE of its Cookie headers, or NULL */
    size_t cookie_len;
};

/* Both credentials, in one pass over the headers. */
static void
find_credentials(const struct gw_head *h, struct credentials *cr)
{
    memset(cr, 0, sizeof(*cr));
    for (size_t i = 0; i < h->n_hdrs; i++) {
        const char *v = h->text.data + h->hdrs[i].value_off;

        if (cr->cookie == NULL && is_cookie_header(h, i))
            cr->cookie = cookie_find(v, h->hdrs[i].value_len, GW_HOST_COOKIE,
                                     sizeof(GW_HOST_COOKIE) - 1, &cr->cookie_len);
        else if (cr->authz == NULL && is_authorization_header(h, i)) {
            cr->authz = v;
            cr->authz_len = h->hdrs[i].value_len;
        }
    }
}

/* How a page of ours goes to this client: asked of the proxy only when the
 * guard answers, which a signed-in request never has it do. */
static struct gw_page_req
page_req_of(const struct gw_guard_req *gr)
{
    struct gw_page_req pr;

    gr->page_req(gr->page_ctx, &pr);
    return pr;
}

/* Answers with an error page of ours. */
static enum gw_guard_step
answer_error(const struct gw_guard_req *gr, struct buf *page, int *status, int code,
             const char *message)
{
    struct gw_page_req pr = page_req_of(gr);

    gw__page_error(page, &pr, code, message);
    *status = code;
    return GW_GUARD_ANSWERED;
}

/* Answers with a redirect of our own, with an optional Set-Cookie. */
static enum gw_guard_step
answer_redirect(const struct gw_guard_req *gr, struct buf *out, int *status, const char *location,
                size_t location_len, const char *set_cookie)
{
    struct gw_page_req pr = page_req_of(gr);

    buf_reset(out);
    buf_puts(out, "HTTP/1.1 302 Found\r\nLocation: ");
    buf_append(out, location, location_len);
    buf_puts(out, "\r\nContent-Length: 0\r\nCache-Control: no-store\r\n");
    if (set_cookie) {
        buf_puts(out, "Set-Cookie: ");
        buf_puts(out, set_cookie);
        buf_puts(out, "\r\n");
    }
    if (!pr.keep_alive)
        buf_puts(out, "Connection: close\r\n");
    buf_puts(out, "\r\n");
    *status = 302;
    return GW_GUARD_ANSWERED;
}

/* Sets the host cookie for grant g on the request's host and sends the
 * browser to rd. */
static enum gw_guard_step
grant_and_redirect(struct gw_worker *w, const struct gw_guard_req *gr, const struct auth_grant *g,
                   const char *rd, struct buf *page, int *status)
{
    char host[AUTH_HOST_MAX];
    char value[AUTH_SIGNED_MAX];
    char cookie[AUTH_SIGNED_MAX + 160];
    int64_t max_age = (g->expires_ms - wall_ms()) / 1000;

    if (!auth_host_normalize(gr->host, gr->host_len, host))
        return answer_error(gr, page, status, 400, "bad Host header");
    if (auth_host_cookie_make(key_of(w), g, host, value) < 0 || max_age <= 0)
        return answer_error(gr, page, status, 403, "this sign-in link cannot be used here");
    snprintf(cookie, sizeof(cookie), "%s=%s; Path=/; Max-Age=%" PRId64 "; HttpOnly; SameSite=Lax%s",
             GW_HOST_COOKIE, value, max_age, reached_over_https(w) ? "; Secure" : "");
    return answer_redirect(gr, page, status, rd, strlen(rd), cookie);
}

/* /_eph/auth?ticket=T: the control host vouches for a session on this host. */
static enum gw_guard_step
exchange_ticket(struct gw_worker *w, const struct gw_guard_req *gr, struct buf *page, int *status)
{
    char value[AUTH_SIGNED_MAX];
    struct auth_ticket t;
    struct auth_who who;
    int64_t now = wall_ms();
    struct auth_grant g = {.kind = AUTH_GRANT_SESSION};

    if (!query_param(gr->target, gr->target_len, "ticket", value, sizeof(value)) ||
        !auth_ticket_verify(key_of(w), value, strlen(value), gr->host, gr->host_len, now, &t) ||
        !auth_index_ticket_claim(w->cfg->auth_ix, t.nonce, t.expires_ms, now) ||
        !auth_index_check_session_id(w->cfg->auth_ix, t.session_id, now, &who))
        return answer_error(gr, page, status, 403,
                            "this sign-in link is invalid, has expired or was already used: "
                            "open the page again to sign in");
    snprintf(g.subject, sizeof(g.subject), "%s", t.session_id);
    g.expires_ms = who.session_expires_ms;
    return grant_and_redirect(w, gr, &g, t.rd, page, status);
}

/* A share link made at `issued_ms` was withdrawn from environment e: its
 * visibility left `link` at or after that time. */
static bool
link_withdrawn(const struct gw_route_env *e, int64_t issued_ms)
{
    return issued_ms <= e->links_since_ms;
}

/* /_eph/link?t=L: a share link of this environment. */
static enum gw_guard_step
exchange_link(struct gw_worker *w, const struct gw_guard_req *gr, struct buf *page, int *status)
{
    char value[AUTH_SIGNED_MAX];
    struct auth_link l;
    struct auth_grant g = {.kind = AUTH_GRANT_LINK};
    const struct gw_route_env *e = gr->env;

    if (!query_param(gr->target, gr->target_len, "t", value, sizeof(value)) ||
        !auth_link_verify(key_of(w), value, strlen(value), wall_ms(), &l) || e == NULL ||
        l.env_id != e->id || e->visibility != VIS_LINK || link_withdrawn(e, l.issued_ms))
        return answer_error(gr, page, status, 403,
                            "this share link has expired, was withdrawn, or is not for this "
                            "environment");
    snprintf(g.subject, sizeof(g.subject), "%" PRId64, l.env_id);
    g.expires_ms = l.expires_ms;
    g.issued_ms = l.issued_ms; /* the link's time, not the cookie's: withdrawn together */
    return grant_and_redirect(w, gr, &g, "/", page, status);
}

/* The grant of a host cookie for this Host, or NULL: the worker's memo's,
 * or checked now into *fresh (and then remembered). *entry: its memo entry,
 * or NULL. */
static const struct auth_grant *
host_cookie_grant(struct gw_worker *w, const char *value, size_t len, const char *host,
                  size_t host_len, int64_t now, struct auth_grant *fresh,
                  struct gw_memo_entry **entry)
{
    struct gw_memo_entry *e = NULL;

    if (w->cookie_memo == NULL)
        w->cookie_memo = gw_cookie_memo_new();
    if (w->cookie_memo != NULL)
        e = gw_cookie_memo_find(w->cookie_memo, value, len, host, host_len);
    *entry = e;
    if (e != NULL)
        return e->grant.expires_ms > now ? &e->grant : NULL;
    if (!auth_host_cookie_verify(key_of(w), value, len, host, host_len, now, fresh))
        return NULL;
    if (w->cookie_memo != NULL) {
        *entry = gw_cookie_memo_put(w->cookie_memo, value, len, host, host_len, fresh);
        if (*entry != NULL)
            return &(*entry)->grant;
    }
    return fresh;
}

/* Copies the string src of n bytes (cut to max - 1) and its NUL; returns
 * the length copied. */
static size_t
copy_name(char *dst, const char *src, size_t n, size_t max)
{
    if (n > max - 1)
        n = max - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

/* The principal for access checks of a user who passes, named out->user. */
static void
pass_principal(struct gw_guard_pass *out, enum role role)
{
    out->principal.kind = PRINCIPAL_USER;
    out->principal.user = out->user;
    out->principal.role = role;
}

/* A user of a memo entry passes, with the names for the service
 * (user_len and email_len bytes long, as pass_who made them). */
static void
pass_user(struct gw_guard_pass *out, const char *user, size_t user_len, const char *email,
          size_t email_len, enum role role)
{
    out->user_len = copy_name(out->user, user, user_len, sizeof(out->user));
    out->email_len = copy_name(out->email, email, email_len, sizeof(out->email));
    pass_principal(out, role);
}

/* Copies the index's name src (of room max) to dst (as big), each control
 * character made '?': names go to the service as header values, and an
 * email from a provider could hold anything. Returns the length. */
static size_t
copy_header_safe(char *dst, const char *src, size_t max)
{
    size_t n = strnlen(src, max - 1);

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];

        dst[i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    dst[n] = '\0';
    return n;
}

/* A user the auth index vouched for passes (once per memo entry and
 * recheck interval, or for a bearer token). */
static void
pass_who(struct gw_guard_pass *out, const struct auth_who *who)
{
    out->user_len = copy_header_safe(out->user, who->user, sizeof(out->user));
    out->email_len = copy_header_safe(out->email, who->email, sizeof(out->email));
    pass_principal(out, who->role);
}

/*
 * The session of a host cookie's grant, if still live: its user passes.
 * The index is asked once per auth_index_recheck_ms per memo entry; between,
 * the entry's answer stands while the index's version has not moved (any
 * sign-out, removed user or changed role moves it).
 */
static bool
session_passes(struct gw_worker *w, const struct auth_grant *g, struct gw_memo_entry *e,
               int64_t now, struct gw_guard_pass *out)
{
    struct auth_index *ix = w->cfg->auth_ix;
    uint64_t version = auth_index_version(ix);
    struct auth_who who;

    if (e != NULL && e->checked_ms > 0 && e->ix_version == version && now >= e->checked_ms &&
        now - e->checked_ms < auth_index_recheck_ms(ix) && e->session_expires_ms > now) {
        pass_user(out, gw_memo_user(e), e->user_len, gw_memo_email(e), e->email_len,
                  e->session_role);
        return true;
    }
    if (!auth_index_check_session_id(ix, g->subject, now, &who)) {
        if (e != NULL)
            e->checked_ms = 0;
        return false;
    }
    pass_who(out, &who);
    if (e != NULL)
        gw_memo_note_session(e, version, now, out->user, out->email, who.role,
                             who.session_expires_ms);
    return true;
}

void
gw__guard_release(struct gw_worker *w)
{
    gw_cookie_memo_free(w->cookie_memo);
    w->cookie_memo = NULL;
}

/* No credentials: a browser goes to sign in, anyone else gets 401. */
static enum gw_guard_step
ask_to_sign_in(struct gw_worker *w, const struct gw_guard_req *gr, struct buf *page, int *status)
{
    if (gr->safe_method && page_req_of(gr).html) {
        bool https = reached_over_https(w);
        struct buf loc;

        buf_init(&loc, 16 * 1024);
        /* A URL too long for the buffer is not cut short: 401 instead. */
        if (buf_puts(&loc, w->cfg->signin_base) == 0 && buf_puts(&loc, "/auth/ticket?rd=") == 0 &&
            url_encode(&loc, https ? "https://" : "http://", https ? 8 : 7) == 0 &&
            url_encode(&loc, gr->host, gr->host_len) == 0 &&
            url_encode(&loc, gr->target, gr->target_len) == 0) {
            enum gw_guard_step step = answer_redirect(gr, page, status, loc.data, loc.len, NULL);

            buf_release(&loc);
            return step;
        }
        buf_release(&loc);
    }
    return answer_error(gr, page, status, 401,
                        "sign in first: open this URL in a browser, or send 'Authorization: Bearer "
                        "<token>' (eph token create)");
}

enum gw_guard_step
gw__guard(struct gw_worker *w, const struct gw_guard_req *gr, struct buf *page, int *status,
          struct gw_guard_pass *out)
{
    int64_t now;
    struct credentials cr;
    int64_t link_issued_ms = 0; /* a link cookie's: when its link was made */

    out->user[0] = out->email[0] = '\0';
    out->user_len = out->email_len = 0;
    out->principal = (struct principal){.kind = PRINCIPAL_USER, .role = ROLE_NONE};
    out->link = false;
    if (gr->path_len >= sizeof(EPH_PATH_AUTH) - 1 && memcmp(gr->path, "/_eph/", 6) == 0) {
        if (gr->path_len == sizeof(EPH_PATH_AUTH) - 1 &&
            memcmp(gr->path, EPH_PATH_AUTH, gr->path_len) == 0)
            return exchange_ticket(w, gr, page, status);
        if (gr->path_len == sizeof(EPH_PATH_LINK) - 1 &&
            memcmp(gr->path, EPH_PATH_LINK, gr->path_len) == 0)
            return exchange_link(w, gr, page, status);
    }
    now = wall_ms();
    find_credentials(gr->head, &cr);
    if (cr.authz && cr.authz_len >= 7 && strncasecmp(cr.authz, "bearer", 6) == 0) {
        char token[AUTH_TOKEN_MAX + 16];
        const char *t;
        struct auth_who who;

        if (cr.authz_len >= sizeof(token))
            goto bad_token;
        memcpy(token, cr.authz, cr.authz_len);
        token[cr.authz_len] = '\0';
        t = auth_bearer_token(token);
        if (t == NULL || !auth_index_check_token(w->cfg->auth_ix, t, now, &who))
            goto bad_token;
        pass_who(out, &who);
    } else if (cr.cookie != NULL) {
        struct auth_grant fresh;
        struct gw_memo_entry *memo;
        const struct auth_grant *g = host_cookie_grant(w, cr.cookie, cr.cookie_len, gr->host,
                                                       gr->host_len, now, &fresh, &memo);

        if (g == NULL)
            return ask_to_sign_in(w, gr, page, status);
        if (g->kind == AUTH_GRANT_SESSION) {
            if (!session_passes(w, g, memo, now, out))
                return ask_to_sign_in(w, gr, page, status);
        } else {
            out->principal.kind = PRINCIPAL_LINK;
            out->principal.role = ROLE_NONE;
            out->principal.link_env_id = strtoll(g->subject, NULL, 10);
            out->link = true;
            link_issued_ms = g->issued_ms;
        }
    } else {
        return ask_to_sign_in(w, gr, page, status);
    }
    if (gr->env == NULL ||
        !access_env_visible(&out->principal, gr->env->id, gr->env->owner, gr->env->visibility) ||
        (out->link && link_withdrawn(gr->env, link_issued_ms)))
        return answer_error(gr, page, status, 404, "no such environment here");
    return GW_GUARD_PASS;

bad_token:
    return answer_error(gr, page, status, 401, "unknown, expired or revoked token");
}
