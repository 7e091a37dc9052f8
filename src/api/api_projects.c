/*
 * api/api_projects.c - /api/v1/projects: list, get, and register (admin).
 *
 * Registering mirrors the repository into the server's git cache first, on
 * the thread pool, so that a project that cannot be read is never recorded.
 * The body is parsed and checked by api__parse_project_add (api_request.c).
 */
#include "api/api_int.h"

#include <string.h>

#include "sources/git.h"
#include "util/redact.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

void
api__projects_list(struct api_call *call, const struct api_params *params)
{
    struct project **ps = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    json_t *arr;
    int rc;

    (void)params;
    rc = store_project_list(call->api->st, &ps, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api__project_json(ps[i]));
    api__reply_json(call->x, 200, json_pack("{s:o}", "projects", arr));
out:
    project_list_free(ps, n);
    api__call_free(call);
}

void
api__projects_get(struct api_call *call, const struct api_params *params)
{
    struct project *p = NULL;
    struct eph_err err = {0};
    int rc = store_project_get(call->api->st, params->name, &p, &err);

    if (rc == EPH_ENOTFOUND)
        api__reply_error(call->x, 404, "project '%s' not found", params->name);
    else if (rc < 0)
        api__reply_failure(call->x, rc, &err);
    else
        api__reply_json(call->x, 200, api__project_json(p));
    project_free(p);
    api__call_free(call);
}

/* ------------------------------------------------------------- register */

struct project_job {
    uv_work_t work;
    struct api_call *call;
    char *name;
    char *repo;
    char *cache_dir;
    int rc; /* of git_cache_sync */
    struct eph_err err;
};

static bool
pending_has(struct api *api, const char *name)
{
    for (struct api_pending *p = api->pending_projects; p; p = p->next) {
        if (strcmp(p->name, name) == 0)
            return true;
    }
    return false;
}

static void
pending_add(struct api *api, const char *name)
{
    struct api_pending *p = xcalloc(1, sizeof(*p));

    p->name = xstrdup(name);
    p->next = api->pending_projects;
    api->pending_projects = p;
}

static void
pending_remove(struct api *api, const char *name)
{
    for (struct api_pending **pp = &api->pending_projects; *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            struct api_pending *p = *pp;

            *pp = p->next;
            free(p->name);
            free(p);
            return;
        }
    }
}

/* Thread pool: mirrors the repository (blocking git). */
static void
sync_work(uv_work_t *w)
{
    struct project_job *job = container_of(w, struct project_job, work);

    job->rc = git_cache_sync(job->repo, job->cache_dir, &job->err);
}

static void
sync_done(uv_work_t *w, int status)
{
    struct project_job *job = container_of(w, struct project_job, work);
    struct api_call *call = job->call;
    struct api *api = call->api;
    struct project *p = NULL;
    struct eph_err err = {0};
    int rc;

    pending_remove(api, job->name);
    if (status < 0 || job->rc < 0) {
        const char *why = status < 0 ? uv_strerror(status) : job->err.msg;

        char *logged = redact_credentials(why);
        log_info("project add refused", "project=%s reason=%s", job->name, log_q(logged));
        free(logged);
        api__reply_error(call->x, job->rc == EPH_EINVAL ? 400 : 422, "%s", why);
        goto out;
    }
    rc = store_project_add(api->st, job->name, job->repo, &call->actor, &p, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    char *repo = redact_credentials(job->repo);
    log_info("project added", "project=%s repo=%s by=%s", job->name, log_q(repo),
             call->actor_name);
    free(repo);
    rec_kick(api->rec);
    api__reply_json(call->x, 201, api__project_json(p));
out:
    project_free(p);
    free(job->name);
    free(job->repo);
    free(job->cache_dir);
    free(job);
    api__call_free(call);
}

void
api__projects_create(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    struct api_project_add req = {0};
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct project *p = NULL;
    struct eph_err err = {0};
    struct project_job *job;
    int rc;

    (void)params;
    if (!api__is_admin(call)) {
        api__reply_error(x, 403, "only admins can register projects");
        goto fail;
    }
    rc = api__parse_project_add(body, len, &req, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    if (!config_repo_allowed(api->cfg, req.repo)) {
        api__reply_error(x, 403, "repository '%.256s' is not in the server's allowed_repos",
                         req.repo);
        goto fail;
    }
    rc = store_project_get(api->st, req.name, &p, &err);
    project_free(p);
    if (rc == 0 || pending_has(api, req.name)) {
        api__reply_error(x, 409, "project '%s' already exists", req.name);
        goto fail;
    }
    if (rc != EPH_ENOTFOUND) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    job = xcalloc(1, sizeof(*job));
    job->call = call;
    job->name = xstrdup(req.name);
    job->repo = xstrdup(req.repo);
    job->cache_dir = config_git_cache_path(api->cfg, req.name);
    rc = uv_queue_work(api->loop, &job->work, sync_work, sync_done);
    if (rc < 0) {
        api__reply_error(x, 500, "cannot queue work: %s", uv_strerror(rc));
        free(job->name);
        free(job->repo);
        free(job->cache_dir);
        free(job);
        goto fail;
    }
    /* A second registration of the name gets 409 until this one is done. */
    pending_add(api, req.name);
    api__project_add_release(&req);
    return;
fail:
    api__project_add_release(&req);
    api__call_free(call);
}
