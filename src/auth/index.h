/*
 * auth/index.h - the in-memory picture of who is signed in, shared by the
 * control loop and every gateway worker: users (name, email, role), live
 * sessions and API tokens, and the tickets already used.
 *
 * The store (SQLite) is the record; the control loop loads the index from
 * it at start and changes both together (store first, index after), so a
 * revoked session or a removed user stops working on the very next
 * request, on every worker. Readers take a read lock for a hash lookup and
 * a SHA-256: cheap enough for every proxied request.
 *
 * Sessions: the browser holds "<id>.<secret>" (AUTH_SESSION_COOKIE_MAX):
 * id is 32 hex digits (public, names the session in the store, in host
 * cookies and in events), secret is 43 base64url characters; only
 * SHA-256(secret) in hex is kept. A session ends at its absolute expiry,
 * after `idle_ms` without use, or when revoked. Tokens ("eph_...", see
 * auth.h) are found by the SHA-256 of the whole token.
 *
 * Thread safety: every function may be called from any thread; the
 * put/remove ones are called by the control loop only, in practice.
 */
#ifndef EPH_AUTH_INDEX_H
#define EPH_AUTH_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/access.h"

#define AUTH_SESSION_ID_HEX 33      /* 32 hex digits and a NUL */
#define AUTH_SESSION_COOKIE_MAX 80  /* "<id>.<secret>" and a NUL */
#define AUTH_USER_MAX 64            /* user name, NUL included */
#define AUTH_EMAIL_MAX 256          /* NUL included */

struct auth_index;

/* idle_ms: a session unused this long is refused (and reported by
 * auth_index_expired()). */
struct auth_index *auth_index_new(int64_t idle_ms);
void auth_index_free(struct auth_index *ix); /* NULL is fine */

/* ---- what the control loop puts in (strings are copied) ---- */

struct auth_user_rec {
    const char *name;
    const char *email; /* "" if unknown */
    enum role role;
};

struct auth_session_rec {
    const char *id;          /* 32 hex digits */
    const char *secret_hash; /* hex SHA-256 of the secret */
    const char *user;        /* must name a user put before */
    int64_t created_ms;
    int64_t last_seen_ms;
    int64_t expires_ms;      /* absolute end */
};

struct auth_token_rec {
    int64_t id;
    const char *name;     /* "ci" */
    const char *hash;     /* hex SHA-256 of the token */
    const char *user;     /* the user it acts for; must be put before */
    enum role role_cap;   /* acts with min(user's role, role_cap) */
    int64_t expires_ms;   /* 0: never */
};

/* Inserts or replaces (by name). A changed role applies at once to the
 * user's sessions and tokens. */
void auth_index_put_user(struct auth_index *ix, const struct auth_user_rec *u);
/* Removes the user with every session and token of theirs. */
void auth_index_remove_user(struct auth_index *ix, const char *name);
void auth_index_put_session(struct auth_index *ix, const struct auth_session_rec *s);
void auth_index_remove_session(struct auth_index *ix, const char *id);
void auth_index_put_token(struct auth_index *ix, const struct auth_token_rec *t);
void auth_index_remove_token(struct auth_index *ix, int64_t id);

/* ---- what requests ask ---- */

/* The one a request comes from, by value (no pointers into the index). */
struct auth_who {
    char user[AUTH_USER_MAX];
    char email[AUTH_EMAIL_MAX];
    enum role role;                       /* effective: a token's cap applied */
    char session_id[AUTH_SESSION_ID_HEX]; /* "" unless through a session */
    int64_t session_expires_ms;           /* absolute end of that session */
    int64_t token_id;                     /* 0 unless through a token */
    char token_name[AUTH_USER_MAX];       /* "" unless through a token */
};

/* A control-host session cookie value ("<id>.<secret>", len bytes): true and
 * *out if it names a live session whose secret matches (constant time);
 * marks it used at now_ms. */
bool auth_index_check_session_cookie(struct auth_index *ix, const char *value, size_t len,
                                     int64_t now_ms, struct auth_who *out);
/*
 * A number that moves on at the end of every change to the users, sessions
 * and tokens (put, removed, expired). A caller that read it before a check
 * that found a session live may take the session as still live, without the
 * lock, while the number stays the same and for at most
 * auth_index_recheck_ms: a sign-out, a removed user or a changed role moves
 * it on, so they apply from the next request.
 */
uint64_t auth_index_version(struct auth_index *ix);
/* How long a remembered session check may stand in for a lookup: a second,
 * or a quarter of the idle limit if that is shorter (0: always look up). */
int64_t auth_index_recheck_ms(const struct auth_index *ix);
/* A session by id alone, for a host cookie whose signature was checked:
 * true and *out if live; marks it used at now_ms. */
bool auth_index_check_session_id(struct auth_index *ix, const char *id, int64_t now_ms,
                                 struct auth_who *out);
/* A bearer token: true and *out if known and not expired; records its use
 * at now_ms (see auth_index_take_usage). */
bool auth_index_check_token(struct auth_index *ix, const char *token, int64_t now_ms,
                            struct auth_who *out);

/* Claims a ticket's nonce: true the first time, false after (until
 * expires_ms has passed, when the nonce is forgotten). */
bool auth_index_ticket_claim(struct auth_index *ix, const char *nonce, int64_t expires_ms,
                             int64_t now_ms);

/* ---- for the control loop's periodic upkeep ---- */

/* Calls fn for every session or token whose last use changed since the last
 * call (kind 's' with the session id, or 't' with the token id as decimal),
 * to write it to the store. */
typedef void auth_usage_fn(void *arg, char kind, const char *id, int64_t last_used_ms);
void auth_index_take_usage(struct auth_index *ix, auth_usage_fn *fn, void *arg);

/* Removes sessions past their absolute end or idle at now_ms, calling fn
 * (may be NULL) with each id removed, so that the store forgets them too;
 * also forgets claimed nonces that have expired. */
typedef void auth_expired_fn(void *arg, const char *session_id);
void auth_index_expire(struct auth_index *ix, int64_t now_ms, auth_expired_fn *fn, void *arg);

/* Counts, for /metrics and tests. */
size_t auth_index_sessions(struct auth_index *ix);
size_t auth_index_tokens(struct auth_index *ix);

#endif
