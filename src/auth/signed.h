/*
 * auth/signed.h - short, signed, expiring strings the server hands out and
 * later takes back without a lookup: host cookies, sign-in tickets and share
 * links. Pure functions of a key and their arguments; any thread.
 *
 * Every string is "<purpose>1.<payload>.<mac>": the purpose letter ('c'
 * host cookie, 't' ticket, 'l' link), the format version, the base64url
 * (no padding) payload, and the base64url HMAC-SHA256 under the server's
 * key of the purpose and the raw payload, so one kind can never pass for
 * another. The payload is text, fields separated by '\n':
 *
 *   host cookie, session  s, session id, expires_ms, host
 *   host cookie, link     l, environment id, expires_ms, host, issued_ms
 *   ticket                session id, host, rd, nonce, expires_ms
 *   share link            environment id, environment name, expires_ms, issued_ms
 *
 * (Links and link cookies without issued_ms, from before withdrawals were
 * kept, have one field fewer and are refused.) A string that
 * fails to parse, carries a wrong MAC (compared in constant time), has
 * expired or names another host is refused the same way: the verify
 * functions return false and say nothing about which check failed.
 *
 * Hosts are compared after auth_host_normalize(): lower case, port dropped.
 */
#ifndef EPH_AUTH_SIGNED_H
#define EPH_AUTH_SIGNED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_KEY_BYTES 32
#define AUTH_SIGNED_MAX 1024  /* longest string made or accepted, NUL included */
#define AUTH_HOST_MAX 256     /* a normalized host, NUL included */
#define AUTH_RD_MAX 512       /* a ticket's return path, NUL included */
#define AUTH_ID_MAX 65        /* a session id or decimal env id, NUL included */

struct auth_key {
    unsigned char bytes[AUTH_KEY_BYTES];
};

/* Lower-cases `host` (len bytes) and drops a ":port" (IPv6 "[::1]:8080" keeps
 * its brackets) into out. False if it does not fit or is empty. */
bool auth_host_normalize(const char *host, size_t len, char out[AUTH_HOST_MAX]);

/* ---- host cookies: the gateway's proof, on one host, of a session or a link ---- */

enum auth_grant_kind {
    AUTH_GRANT_SESSION = 's', /* subject: the session's public id */
    AUTH_GRANT_LINK = 'l',    /* subject: the environment id, decimal */
};

struct auth_grant {
    enum auth_grant_kind kind;
    int64_t expires_ms; /* wall clock */
    int64_t issued_ms;  /* AUTH_GRANT_LINK: when its link was made (wall clock), so that the
                           gateway can tell a withdrawn link's cookie; 0 for sessions */
    char subject[AUTH_ID_MAX]; /* last: the gateway's memo reads the fields above far more often */
};

/* Makes a cookie value for `host` (normalized here); issued_ms is written for
 * link grants only. 0, or EPH_EINVAL when a field is empty, holds '\n', is
 * negative, or the result would not fit. */
int auth_host_cookie_make(const struct auth_key *k, const struct auth_grant *g, const char *host,
                          char out[AUTH_SIGNED_MAX]);
/* Checks a cookie value (len bytes, not NUL-terminated) for the request's
 * `host` (len bytes, normalized here) at now_ms; fills *out if valid. */
bool auth_host_cookie_verify(const struct auth_key *k, const char *value, size_t len,
                             const char *host, size_t host_len, int64_t now_ms,
                             struct auth_grant *out);

/* ---- tickets: one-time hand-over of a session from the control host to a service host ---- */

struct auth_ticket {
    char session_id[AUTH_ID_MAX];
    char host[AUTH_HOST_MAX]; /* normalized */
    char rd[AUTH_RD_MAX];     /* path and query on that host, starts with '/' */
    char nonce[33];           /* 32 hex digits: claim it once (auth_index_ticket_claim) */
    int64_t expires_ms;
};

/* Makes a ticket; nonce and host are filled in here (t->nonce random,
 * t->host normalized). 0, EPH_EINVAL (rd not starting with '/' or holding
 * a control character, fields too long), EPH_EINTERNAL (no randomness). */
int auth_ticket_make(const struct auth_key *k, struct auth_ticket *t, char out[AUTH_SIGNED_MAX]);
/* Checks a ticket for `host` at now_ms; fills *out. The caller still claims
 * out->nonce so that it works once only. */
bool auth_ticket_verify(const struct auth_key *k, const char *value, size_t len, const char *host,
                        size_t host_len, int64_t now_ms, struct auth_ticket *out);

/* ---- share links: an expiring key to one environment ---- */

struct auth_link {
    int64_t env_id;
    char env_name[64];
    int64_t expires_ms; /* wall clock */
    int64_t issued_ms;  /* wall clock: when it was made. The gateway refuses a link made at
                           or before its environment's links_since_ms (withdrawn). */
};

/* 0, or EPH_EINVAL for a negative number or a name that is empty, holds a
 * control character or does not fit. */
int auth_link_make(const struct auth_key *k, const struct auth_link *l, char out[AUTH_SIGNED_MAX]);
bool auth_link_verify(const struct auth_key *k, const char *value, size_t len, int64_t now_ms,
                      struct auth_link *out);

/* ---- helpers shared with the rest of auth ---- */

/* HMAC-SHA256 of data under key into mac. */
void auth_hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                      unsigned char mac[32]);
/* base64url without padding; returns the length written (out needs
 * 4*ceil(len/3)+1 bytes), NUL-terminated. */
size_t auth_b64url_encode(const void *data, size_t len, char *out);
/* Decodes base64url without padding into out (at most out_size bytes);
 * returns the length, or -1 for a bad character, bad length or no room. */
long auth_b64url_decode(const char *in, size_t len, void *out, size_t out_size);

#endif
