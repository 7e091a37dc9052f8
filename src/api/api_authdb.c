/*
 * api/api_authdb.c - users, sessions and tokens kept in step between the
 * store (the record, which survives restarts) and the auth index (what every
 * request is checked against, shared with the gateway's workers).
 *
 * The store is written first: if it fails, the index is left alone and the
 * caller answers the error, so nothing is granted that is not recorded.
 */
#include "api/api_int.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth/signed.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

/* Session ids: 16 random bytes in hex; secrets: 32 random bytes, base64url. */
#define SESSION_ID_BYTES 16
#define SESSION_SECRET_BYTES 32

static enum role
role_or_viewer(const char *name)
{
    enum role r = ROLE_VIEWER;

    if (name == NULL || role_parse(name, &r) < 0)
        return ROLE_VIEWER;
    return r;
}

void
api__index_put_user(struct api *api, const struct user *u)
{
    struct auth_user_rec rec = {
        .name = u->name,
        .email = u->email ? u->email : "",
        .role = role_or_viewer(u->role),
    };

    auth_index_put_user(api->ix, &rec);
}

int
api__session_create(struct api *api, const char *user, const char *source,
                    char cookie[AUTH_SESSION_COOKIE_MAX], int64_t *expires_ms,
                    struct eph_err *err)
{
    char id[AUTH_SESSION_ID_HEX];
    unsigned char raw[SESSION_SECRET_BYTES];
    char secret[48]; /* 43 base64url characters */
    char hash[AUTH_HASH_HEX];
    int64_t now = time_wall_ms();
    struct store_session s = {0};
    struct auth_session_rec rec;
    int rc;

    if (auth_random_hex(SESSION_ID_BYTES, id) < 0 || RAND_bytes(raw, sizeof(raw)) != 1)
        return eph_err_set(err, EPH_EINTERNAL, "no randomness for a session");
    auth_b64url_encode(raw, sizeof(raw), secret);
    OPENSSL_cleanse(raw, sizeof(raw));
    auth_token_hash(secret, hash);
    s.id = id;
    s.secret_hash = hash;
    s.user = (char *)user;
    s.created_at_ms = now;
    s.last_seen_ms = now;
    s.expires_at_ms = now + api->cfg->session_max_s * 1000;
    s.source = (char *)(source ? source : "");
    {
        struct store_actor actor = {.name = user, .source = s.source};

        rc = store_session_add(api->st, &s, &actor, err);
    }
    if (rc < 0) {
        OPENSSL_cleanse(secret, sizeof(secret));
        return rc;
    }
    rec = (struct auth_session_rec){
        .id = id,
        .secret_hash = hash,
        .user = user,
        .created_ms = now,
        .last_seen_ms = now,
        .expires_ms = s.expires_at_ms,
    };
    auth_index_put_session(api->ix, &rec);
    snprintf(cookie, AUTH_SESSION_COOKIE_MAX, "%.32s.%.43s", id, secret);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (expires_ms)
        *expires_ms = s.expires_at_ms;
    return 0;
}

int
api__session_end(struct api *api, const char *id, const struct store_actor *actor,
                 const char *action, struct eph_err *err)
{
    int rc = store_session_remove(api->st, id, actor, action, err);

    /* Gone from the index whatever the store said: a session that cannot be
     * found in the store must not go on working either. */
    auth_index_remove_session(api->ix, id);
    return rc == EPH_ENOTFOUND ? 0 : rc;
}

void
api__session_set_cookie(struct api *api, const char *value, int64_t max_age_s, char *out,
                        size_t out_size)
{
    bool secure = strncmp(api->public_base ? api->public_base : "", "https://", 8) == 0;

    snprintf(out, out_size, "%s=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Lax%s",
             API_SESSION_COOKIE, max_age_s > 0 ? value : "", (long long)max_age_s,
             secure ? "; Secure" : "");
}

int
api__token_create(struct api *api, const char *name, const char *user, enum role role_cap,
                  int64_t expires_ms, const struct store_actor *actor, char token[AUTH_TOKEN_MAX],
                  int64_t *id_out, struct eph_err *err)
{
    char hash[AUTH_HASH_HEX];
    int64_t id = 0;
    struct auth_token_rec rec;
    int rc;

    if (auth_token_generate(token) < 0)
        return eph_err_set(err, EPH_EINTERNAL, "no randomness for a token");
    auth_token_hash(token, hash);
    rc = store_token_add(api->st, name, hash, role_name(role_cap), user, expires_ms, actor, &id,
                         err);
    if (rc < 0) {
        OPENSSL_cleanse(token, AUTH_TOKEN_MAX);
        return rc;
    }
    rec = (struct auth_token_rec){
        .id = id,
        .name = name,
        .hash = hash,
        .user = user,
        .role_cap = role_cap,
        .expires_ms = expires_ms,
    };
    auth_index_put_token(api->ix, &rec);
    if (id_out)
        *id_out = id;
    return 0;
}

int
api__token_revoke(struct api *api, int64_t id, const struct store_actor *actor,
                  struct eph_err *err)
{
    int rc = store_token_revoke(api->st, id, actor, err);

    if (rc == 0 || rc == EPH_ENOTFOUND)
        auth_index_remove_token(api->ix, id);
    return rc;
}

int
api__user_remove(struct api *api, const char *name, const struct store_actor *actor,
                 struct eph_err *err)
{
    int rc = store_user_remove(api->st, name, actor, err);

    if (rc == 0)
        auth_index_remove_user(api->ix, name);
    return rc;
}

/* ------------------------------------------------------------- start and upkeep */

int
api_auth_load(struct api *api, struct eph_err *err)
{
    struct user **users = NULL;
    struct store_session **sessions = NULL;
    struct store_token **tokens = NULL;
    size_t n_users = 0, n_sessions = 0, n_tokens = 0;
    int64_t now = time_wall_ms();
    int rc;

    rc = store_user_list(api->st, &users, &n_users, err);
    if (rc == 0)
        rc = store_session_list(api->st, &sessions, &n_sessions, err);
    if (rc == 0)
        rc = store_token_list(api->st, NULL, &tokens, &n_tokens, err);
    if (rc < 0)
        goto out;
    for (size_t i = 0; i < n_users; i++)
        api__index_put_user(api, users[i]);
    for (size_t i = 0; i < n_sessions; i++) {
        struct store_session *s = sessions[i];
        struct auth_session_rec rec = {
            .id = s->id,
            .secret_hash = s->secret_hash,
            .user = s->user,
            .created_ms = s->created_at_ms,
            .last_seen_ms = s->last_seen_ms,
            .expires_ms = s->expires_at_ms,
        };

        if (s->expires_at_ms > now)
            auth_index_put_session(api->ix, &rec);
    }
    for (size_t i = 0; i < n_tokens; i++) {
        struct store_token *t = tokens[i];
        struct auth_token_rec rec = {
            .id = t->id,
            .name = t->name,
            .hash = t->hash,
            .user = t->user,
            .role_cap = role_or_viewer(t->role),
            .expires_ms = t->expires_at_ms,
        };

        auth_index_put_token(api->ix, &rec);
    }
    log_info("auth loaded", "users=%zu sessions=%zu tokens=%zu", n_users,
             auth_index_sessions(api->ix), auth_index_tokens(api->ix));
out:
    user_list_free(users, n_users);
    store_session_list_free(sessions, n_sessions);
    store_token_list_free(tokens, n_tokens);
    return rc;
}

static void
on_usage(void *arg, char kind, const char *id, int64_t last_used_ms)
{
    struct api *api = arg;
    struct eph_err err = {0};
    int rc;

    if (kind == 's')
        rc = store_session_touch(api->st, id, last_used_ms, &err);
    else
        rc = store_token_touch(api->st, strtoll(id, NULL, 10), last_used_ms, &err);
    if (rc < 0 && rc != EPH_ENOTFOUND)
        log_warn("cannot record a last use", "error=%s", log_q(err.msg));
}

static void
on_expired(void *arg, const char *session_id)
{
    struct api *api = arg;
    struct eph_err err = {0};
    int rc = store_session_remove(api->st, session_id, NULL, "session.expire", &err);

    if (rc < 0 && rc != EPH_ENOTFOUND)
        log_warn("cannot forget an expired session", "error=%s", log_q(err.msg));
}

void
api_auth_upkeep(struct api *api)
{
    if (api->ix == NULL)
        return;
    auth_index_take_usage(api->ix, on_usage, api);
    auth_index_expire(api->ix, time_wall_ms(), on_expired, api);
}
