/*
 * gateway/cookie_memo.h - a gateway worker's memo of the host cookies it has
 * verified, so that a browser's cookie, sent again with every request, is
 * not checked again each time (docs/auth.md, "What sign-in costs a request").
 *
 * An entry holds a cookie and the Host it came with, byte for byte, the
 * grant they proved, and, for a session's grant, what the auth index said
 * of the session at its last lookup. Entries are found by a hash keyed with
 * a random number per memo, so nobody can aim at one, and compared in
 * constant time. The hash covers a cookie's last 16 bytes and the lengths
 * only: the signed cookies memoed end in a MAC, which tells any two apart. 4,096 entries at most,
 * in sets of 4: a new entry takes an empty place of its set or the place of the one put there
 * longest ago.
 *
 * One memo per worker loop: no locks.
 */
#ifndef EPH_GATEWAY_COOKIE_MEMO_H
#define EPH_GATEWAY_COOKIE_MEMO_H

#include <stddef.h>
#include <stdint.h>

#include "auth/index.h"
#include "auth/signed.h"
#include "core/access.h"

#define GW_MEMO_VALUE_MAX 256 /* longer cookies are checked each time */
#define GW_MEMO_HOST_MAX 128  /* so are cookies for longer hosts */

/*
 * Laid out so that a hit reads few cache lines: the fixed fields it needs
 * first, then the cookie, the Host, the user name and the email one after
 * the other in `text`, each read only as far as its length.
 */
struct gw_memo_entry {
    uint16_t value_len, host_len;
    uint16_t user_len, email_len; /* of the names in text: gw_memo_user/email */
    /* A session grant's last lookup in the auth index (guard.c): the
     * index's version before it, when (0: not yet), and what it said. */
    enum role session_role;
    uint64_t ix_version;
    int64_t checked_ms;
    int64_t session_expires_ms;
    struct auth_grant grant; /* what the cookie proved */
    char text[GW_MEMO_VALUE_MAX + GW_MEMO_HOST_MAX + AUTH_USER_MAX + AUTH_EMAIL_MAX];
};

struct gw_cookie_memo;

/* A new, empty memo; NULL if no random key could be had. */
struct gw_cookie_memo *gw_cookie_memo_new(void);
/* Frees m and wipes the cookies it held; NULL is fine. */
void gw_cookie_memo_free(struct gw_cookie_memo *m);

/* The entry for exactly this cookie value and Host, or NULL. */
struct gw_memo_entry *gw_cookie_memo_find(struct gw_cookie_memo *m, const char *value, size_t len,
                                          const char *host, size_t host_len);

/* Remembers a cookie value and Host that proved grant g (checked by the
 * caller), with no session lookup yet; returns its entry, or NULL if they
 * are too long to keep (or memory is short). */
struct gw_memo_entry *gw_cookie_memo_put(struct gw_cookie_memo *m, const char *value, size_t len,
                                         const char *host, size_t host_len,
                                         const struct auth_grant *g);

/* Records in e what a session lookup at now_ms, made when the index was at
 * `version`, said (names too long are cut, as the index never makes). */
void gw_memo_note_session(struct gw_memo_entry *e, uint64_t version, int64_t now_ms,
                          const char *user, const char *email, enum role role, int64_t expires_ms);
/* The user name and email of e's last session lookup ("" before one). */
const char *gw_memo_user(const struct gw_memo_entry *e);
const char *gw_memo_email(const struct gw_memo_entry *e);

#endif
