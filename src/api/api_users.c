/*
 * api/api_users.c - /api/v1/users: list, add, remove, change a role (admins)
 * and set a password (admins, or the user themself).
 *
 * Every change goes through the store first and the shared auth index right
 * after (api_authdb.c), so a removed user or a lowered role takes effect on
 * the very next request. Passwords are hashed with argon2id on the thread
 * pool (tens of milliseconds on purpose), never logged, and wiped from
 * memory once hashed. A user made without a password gets a random one,
 * shown once in the answer.
 *
 * The server keeps at least one admin: the last one can be neither removed
 * nor given a lower role (409).
 */
#include "api/api_int.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <string.h>

#include "auth/password.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

/* A made-up password: 15 random bytes, 20 base64url characters. */
#define GENERATED_PASSWORD_BYTES 15
#define GENERATED_PASSWORD_LEN 20

/* ------------------------------------------------------------- helpers */

/* True after answering 403 if the caller is not an admin: managing users is theirs. */
static bool
refuse_non_admin(struct api_call *call)
{
    if (api__is_admin(call))
        return false;
    api__reply_error(call->x, 403, "only admins can manage users");
    return true;
}

/* Loads user `name`; NULL after answering 404 "user 'x' not found" or 500. */
static struct user *
load_user(struct api_call *call, const char *name)
{
    struct user *u = NULL;
    struct eph_err err = {0};
    int rc = store_user_get(call->api->st, name, &u, &err);

    if (rc == EPH_ENOTFOUND) {
        api__reply_error(call->x, 404, "user '%s' not found", name);
        return NULL;
    }
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        return NULL;
    }
    return u;
}

/*
 * Whether taking admin away from `u` (removal or a lower role) would leave
 * the server without an admin: answers 409 and returns true, or answers 500
 * and returns true; false if it may go ahead.
 */
static bool
refuse_last_admin(struct api_call *call, const struct user *u, const char *what)
{
    struct user **us = NULL;
    size_t n = 0;
    size_t admins = 0;
    struct eph_err err = {0};
    int rc;

    if (u->role == NULL || strcmp(u->role, role_name(ROLE_ADMIN)) != 0)
        return false;
    rc = store_user_list(call->api->st, &us, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        return true;
    }
    for (size_t i = 0; i < n; i++)
        admins += us[i]->role && strcmp(us[i]->role, role_name(ROLE_ADMIN)) == 0;
    user_list_free(us, n);
    if (admins > 1)
        return false;
    api__reply_error(call->x, 409, "cannot %s '%s': it is the last admin", what, u->name);
    return true;
}

/* ------------------------------------------------------------- hashing on the thread pool */

/* A password being hashed; what to do with the hash is the `done` callback's. */
struct hash_job {
    uv_work_t work;
    struct api_call *call;
    char *name;              /* the user */
    struct api_user_add add; /* POST /users only */
    char *password;          /* wiped and freed once hashed */
    bool generated;          /* made here: shown once in the answer */
    char hash[AUTH_PASSWORD_HASH_MAX];
    int rc; /* of auth_password_hash */
};

static void
hash_job_free(struct hash_job *job)
{
    free(job->name);
    api__user_add_release(&job->add);
    api__secret_free(job->password);
    OPENSSL_cleanse(job->hash, sizeof(job->hash));
    free(job);
}

/* Thread pool: argon2id. Touches nothing but the job. */
static void
hash_work(uv_work_t *w)
{
    struct hash_job *job = container_of(w, struct hash_job, work);

    job->rc = auth_password_hash(job->password, job->hash);
}

/* Queues the job; on failure answers 500 and frees it (and the call). */
static void
hash_queue(struct hash_job *job, uv_after_work_cb done)
{
    struct api_call *call = job->call;
    int rc = uv_queue_work(call->api->loop, &job->work, hash_work, done);

    if (rc < 0) {
        api__reply_error(call->x, 500, "cannot queue work: %s", uv_strerror(rc));
        hash_job_free(job);
        api__call_free(call);
    }
}

/* True after answering if the hashing failed. */
static bool
hash_failed(struct hash_job *job, int status)
{
    if (status < 0) {
        api__reply_error(job->call->x, 500, "password hashing cancelled: %s", uv_strerror(status));
        return true;
    }
    if (job->rc < 0) {
        struct eph_err err = {0};

        /* The parser checked the length already: this is our own failure. */
        eph_err_set(&err, job->rc, "cannot hash the password of user '%s'", job->name);
        api__reply_failure(job->call->x, job->rc == EPH_EINVAL ? EPH_EINTERNAL : job->rc, &err);
        return true;
    }
    return false;
}

/* ------------------------------------------------------------- GET /users */

void
api__users_list(struct api_call *call, const struct api_params *params)
{
    struct user **us = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    json_t *arr;
    int rc;

    (void)params;
    if (refuse_non_admin(call))
        goto out;
    rc = store_user_list(call->api->st, &us, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api__user_json(us[i]));
    api__reply_json(call->x, 200, json_pack("{s:o}", "users", arr));
out:
    user_list_free(us, n);
    api__call_free(call);
}

/* ------------------------------------------------------------- POST /users */

static void
create_done(uv_work_t *w, int status)
{
    struct hash_job *job = container_of(w, struct hash_job, work);
    struct api_call *call = job->call;
    struct api *api = call->api;
    struct user u = {0};
    struct user *stored = NULL;
    struct eph_err err = {0};
    json_t *o;
    int rc;

    if (hash_failed(job, status))
        goto out;
    u.name = job->add.name;
    u.email = job->add.email ? job->add.email : "";
    u.role = (char *)role_name(job->add.role);
    u.provider = "local";
    u.subject = "";
    u.password_hash = job->hash;
    rc = store_user_add(api->st, &u, &call->actor, &err);
    if (rc == 0)
        rc = store_user_get(api->st, job->add.name, &stored, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    api__index_put_user(api, stored);
    log_info("user added", "user=%s role=%s by=%s", stored->name, stored->role, call->actor_name);
    o = api__user_json(stored);
    if (job->generated)
        json_object_set_new(o, "password", json_string(job->password));
    api__reply_json(call->x, 201, o);
out:
    user_free(stored);
    hash_job_free(job);
    api__call_free(call);
}

void
api__users_create(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct api_user_add req = {0};
    struct user *other = NULL;
    struct eph_err err = {0};
    struct hash_job *job;
    int rc;

    (void)params;
    if (refuse_non_admin(call))
        goto fail;
    rc = api__parse_user_add(body, len, &req, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    /* Taken names are refused before 50 ms of hashing; the store checks
     * again when recording (a concurrent add of the name gets 409 there). */
    rc = store_user_get(call->api->st, req.name, &other, &err);
    user_free(other);
    if (rc == 0) {
        api__reply_error(x, 409, "user '%s' already exists", req.name);
        goto fail;
    }
    if (rc != EPH_ENOTFOUND) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    job = xcalloc(1, sizeof(*job));
    job->call = call;
    job->name = xstrdup(req.name);
    if (req.password) {
        job->password = req.password;
        req.password = NULL;
    } else {
        unsigned char raw[GENERATED_PASSWORD_BYTES];

        if (RAND_bytes(raw, sizeof(raw)) != 1) {
            api__reply_error(x, 500, "no randomness for a password");
            hash_job_free(job);
            goto fail;
        }
        job->password = xmalloc(GENERATED_PASSWORD_LEN + 1);
        auth_b64url_encode(raw, sizeof(raw), job->password);
        OPENSSL_cleanse(raw, sizeof(raw));
        job->generated = true;
    }
    job->add = req; /* the job owns the request now */
    hash_queue(job, create_done);
    return;
fail:
    api__user_add_release(&req);
    api__call_free(call);
}

/* ------------------------------------------------------------- DELETE /users/{name} */

void
api__users_delete(struct api_call *call, const struct api_params *params)
{
    struct user *u = NULL;
    struct eph_err err = {0};
    int rc;

    if (refuse_non_admin(call))
        goto out;
    u = load_user(call, params->name);
    if (u == NULL || refuse_last_admin(call, u, "delete user"))
        goto out;
    rc = api__user_remove(call->api, u->name, &call->actor, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    log_info("user removed", "user=%s by=%s", u->name, call->actor_name);
    api__reply_json(call->x, 200, api__user_json(u));
out:
    user_free(u);
    api__call_free(call);
}

/* ------------------------------------------------------------- POST /users/{name}/role */

void
api__users_role(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    enum role role = ROLE_NONE;
    struct user *u = NULL;
    struct user *fresh = NULL;
    struct eph_err err = {0};
    int rc;

    if (refuse_non_admin(call))
        goto out;
    rc = api__parse_role(body, len, &role, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    u = load_user(call, params->name);
    if (u == NULL)
        goto out;
    if (role != ROLE_ADMIN && refuse_last_admin(call, u, "change the role of"))
        goto out;
    rc = store_user_set_role(api->st, u->name, role_name(role), &call->actor, &err);
    if (rc == 0)
        rc = store_user_get(api->st, u->name, &fresh, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    api__index_put_user(api, fresh); /* applies at once to their sessions and tokens */
    if (strcmp(u->role ? u->role : "", fresh->role ? fresh->role : "") != 0)
        log_info("user role changed", "user=%s from=%s to=%s by=%s", fresh->name, u->role,
                 fresh->role, call->actor_name);
    api__reply_json(x, 200, api__user_json(fresh));
out:
    user_free(fresh);
    user_free(u);
    api__call_free(call);
}

/* ------------------------------------------------------------- POST /users/{name}/password */

static void
password_done(uv_work_t *w, int status)
{
    struct hash_job *job = container_of(w, struct hash_job, work);
    struct api_call *call = job->call;
    struct api *api = call->api;
    struct user *u = NULL;
    struct eph_err err = {0};
    int rc;

    if (hash_failed(job, status))
        goto out;
    rc = store_user_set_password(api->st, job->name, job->hash, &call->actor, &err);
    if (rc == 0)
        rc = store_user_get(api->st, job->name, &u, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    log_info("user password changed", "user=%s by=%s", u->name, call->actor_name);
    api__reply_json(call->x, 200, api__user_json(u));
out:
    user_free(u);
    hash_job_free(job);
    api__call_free(call);
}

void
api__users_password(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    char *password = NULL;
    struct user *u = NULL;
    struct eph_err err = {0};
    struct hash_job *job;
    int rc;

    if (!api__is_admin(call) && strcmp(params->name, call->who.user) != 0) {
        api__reply_error(x, 403, "only admins can change another user's password");
        goto fail;
    }
    rc = api__parse_password(body, len, &password, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    u = load_user(call, params->name);
    if (u == NULL)
        goto fail;
    /* A password would open a second way in, past the provider's checks. */
    if (u->provider == NULL || strcmp(u->provider, "local") != 0) {
        api__reply_error(x, 409, "user '%s' signs in with %s: it has no password to set", u->name,
                         u->provider ? u->provider : "another provider");
        goto fail;
    }
    job = xcalloc(1, sizeof(*job));
    job->call = call;
    job->name = xstrdup(u->name);
    job->password = password;
    user_free(u);
    hash_queue(job, password_done);
    return;
fail:
    api__secret_free(password);
    user_free(u);
    api__call_free(call);
}
