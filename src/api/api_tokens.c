/*
 * api/api_tokens.c - /api/v1/tokens: the caller's API tokens (admins: with
 * ?all=1, everyone's), creating one for oneself, and revoking.
 *
 * A token acts for the user who made it, with at most its scope: a lower
 * role, never a higher one than the user's (creating one above is 403). Its
 * value is in the answer to its creation and nowhere else: only its SHA-256
 * is stored (api__token_create keeps the store and the auth index in step).
 * Someone else's token is, to a non-admin, a token that does not exist (404).
 */
#include "api/api_int.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

void
api__tokens_list(struct api_call *call, const struct api_params *params)
{
    struct store_token **ts = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    bool all = api__query_flag(call->x, "all");
    json_t *arr;
    int rc;

    (void)params;
    if (all && !api__is_admin(call)) {
        api__reply_error(call->x, 403, "only admins can list every user's tokens");
        goto out;
    }
    rc = store_token_list(call->api->st, all ? NULL : call->who.user, &ts, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api__token_json(ts[i]));
    api__reply_json(call->x, 200, json_pack("{s:o}", "tokens", arr));
out:
    store_token_list_free(ts, n);
    api__call_free(call);
}

void
api__tokens_create(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct api_token_create req = {0};
    struct eph_err err = {0};
    char token[AUTH_TOKEN_MAX] = "";
    enum role mine = call->principal.role;
    enum role scope;
    int64_t expires_ms;
    int64_t id = 0;
    json_t *o;
    int rc;

    (void)params;
    rc = api__parse_token_create(body, len, &req, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    scope = req.scope == ROLE_NONE ? mine : req.scope;
    if (scope > mine) {
        api__reply_error(x, 403, "a token's scope cannot be above your role (%s)", role_name(mine));
        goto out;
    }
    expires_ms = time_wall_ms() + req.ttl_s * 1000;
    rc = api__token_create(call->api, req.name, call->who.user, scope, expires_ms, &call->actor,
                           token, &id, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("token created", "id=%" PRId64 " name=%s user=%s scope=%s by=%s", id, req.name,
             call->who.user, role_name(scope), call->actor_name);
    o = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)id, "name", req.name, "user",
                  call->who.user, "token", token, "scope", role_name(scope));
    api__json_set_time(o, "expires_at", expires_ms);
    api__reply_json(x, 201, o);
out:
    OPENSSL_cleanse(token, sizeof(token));
    api__token_create_release(&req);
    api__call_free(call);
}

void
api__tokens_delete(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    struct store_token *t = NULL;
    struct eph_err err = {0};
    char *end = NULL;
    long long id;
    int rc;

    errno = 0;
    id = strtoll(params->name, &end, 10);
    if (params->name[0] < '0' || params->name[0] > '9' || *end != '\0' || errno != 0 || id <= 0) {
        api__reply_error(x, 400, "invalid token id '%.64s': expected a number (eph token ls)",
                         params->name);
        goto out;
    }
    rc = store_token_get(call->api->st, id, &t, &err);
    /* Revoked, or someone else's to a non-admin: as if it did not exist. */
    if (rc == 0 && (t->revoked_at_ms != 0 ||
                    (!api__is_admin(call) && strcmp(t->user ? t->user : "", call->who.user) != 0)))
        rc = EPH_ENOTFOUND;
    if (rc == EPH_ENOTFOUND) {
        api__reply_error(x, 404, "token %lld not found", id);
        goto out;
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    rc = api__token_revoke(call->api, t->id, &call->actor, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("token revoked", "id=%" PRId64 " name=%s user=%s by=%s", t->id, t->name, t->user,
             call->actor_name);
    api__reply_json(x, 200, api__token_json(t));
out:
    store_token_free(t);
    api__call_free(call);
}
