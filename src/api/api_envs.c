/*
 * api/api_envs.c - /api/v1/envs: list, get, create, extend, delete,
 * visibility, and sleep: sleep, wake, keep (docs/sleep.md).
 *
 * Who sees and who changes what is core/access.h's to say: an environment
 * the caller may not see is answered exactly like one that does not exist
 * (404), one the caller sees but may not change is 403. Creating checks the
 * role, then the quotas, before any git work.
 *
 * Creating reads the repository (mirror, resolve the ref, read ephemera.yaml)
 * on the thread pool; everything after that runs on the loop in one go
 * (parse and check the template and params, pick ports, record), so that two
 * creations never pick the same port or name. Nothing is recorded unless the
 * whole request is good. Every change kicks the reconciler.
 *
 * Bodies are parsed and checked by api_request.c (pure functions); the
 * handlers add what needs the store or the configuration.
 *
 * Sleeping and waking are the reconciler's (through the api hooks serve.c
 * sets): the handlers check access and hand over. Calls that name an
 * environment (get, extend, logs) count as its activity, so reading an
 * environment keeps it awake as using it does.
 */
#include "api/api_int.h"

#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sources/git.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

#define ENV_EVENTS_SHOWN 20 /* GET /envs/{name} shows the last 20 events */

static void
reply_env(struct api_call *call, int status, const struct env *env)
{
    api__reply_json(call->x, status, api__env_json_parsed(env, &call->api->hooks));
}

/* Answers with the environment as it is now: 0, or < 0 after a 500. */
static int
reply_fresh(struct api_call *call, int status, int64_t id)
{
    struct env *fresh = NULL;
    struct eph_err err = {0};
    int rc = store_env_get_by_id(call->api->st, id, &fresh, &err);

    if (rc < 0)
        api__reply_failure(call->x, rc, &err);
    else
        reply_env(call, status, fresh);
    env_free(fresh);
    return rc;
}

static bool
visible(const struct api_call *call, const struct env *env)
{
    return access_env_visible(&call->principal, env->id, env->owner, env->visibility);
}

struct env *
api__env_visible(struct api_call *call, const char *name)
{
    struct env *env = NULL;
    struct eph_err err = {0};
    int rc = store_env_get(call->api->st, name, &env, &err);

    if (rc == 0 && !visible(call, env)) {
        env_free(env);
        env = NULL;
        rc = EPH_ENOTFOUND;
    }
    if (rc == EPH_ENOTFOUND) {
        /* The very same answer as for a name nobody uses: nothing to learn. */
        api__reply_error(call->x, 404, "environment '%s' not found", name);
        return NULL;
    }
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        return NULL;
    }
    return env;
}

struct env *
api__env_changeable(struct api_call *call, const char *name)
{
    struct env *env = api__env_visible(call, name);

    if (env != NULL && !access_env_manage(&call->principal, env->owner)) {
        api__reply_error(call->x, 403, "only the owner or an admin can change environment '%s'",
                         env->name);
        env_free(env);
        return NULL;
    }
    return env;
}

/*
 * api__env_changeable() for the changes that make no sense once an
 * environment is being deleted (extend, visibility, sleep, wake, keep):
 * NULL after answering 404, 403 or 409. The caller frees it.
 */
static struct env *
env_to_change(struct api_call *call, const char *name)
{
    struct env *env = api__env_changeable(call, name);

    if (env != NULL && (env->desired == ENV_WANT_DELETED || env->phase == ENV_PHASE_DELETING ||
                        env->phase == ENV_PHASE_DELETED)) {
        api__reply_error(call->x, 409, "environment '%s' is being deleted", env->name);
        env_free(env);
        return NULL;
    }
    return env;
}

/* ------------------------------------------------------------- list and get */

void
api__envs_list(struct api_call *call, const struct api_params *params)
{
    struct env **envs = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    json_t *arr;
    int rc;

    (void)params;
    rc = store_env_list(call->api->st, api__query_flag(call->x, "all"), &envs, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (visible(call, envs[i]))
            json_array_append_new(arr, api__env_json_parsed(envs[i], &call->api->hooks));
    }
    api__reply_json(call->x, 200, json_pack("{s:o}", "envs", arr));
out:
    env_list_free(envs, n);
    api__call_free(call);
}

void
api__envs_get(struct api_call *call, const struct api_params *params)
{
    struct env *env = api__env_visible(call, params->name);
    struct event **evs = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    char *target = NULL;
    json_t *o;
    json_t *arr;
    int rc;

    if (env == NULL)
        goto out;
    target = xasprintf("env/%s", env->name);
    rc = store_event_list(call->api->st, target, -1, ENV_EVENTS_SHOWN, &evs, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        goto out;
    }
    o = api__env_json_parsed(env, &call->api->hooks);
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api__event_json(evs[i]));
    json_object_set_new(o, "events", arr);
    api__reply_json(call->x, 200, o);
    /* After the answer, which shows the idle time as it was before this look. */
    api__note_activity(call->api, env->id, "api get");
out:
    event_list_free(evs, n);
    free(target);
    env_free(env);
    api__call_free(call);
}

/* ------------------------------------------------------------- create */

/* The caps of limits from the configuration. */
static struct api_limit_caps
limit_caps(const struct config *cfg)
{
    struct api_limit_caps caps = {
        .memory_bytes = cfg->limit_memory_max_bytes,
        .cpu_millis = cfg->limit_cpu_max_millis,
        .pids = cfg->limit_pids_max,
    };

    return caps;
}

/*
 * Answers 403 with the code "quota" rather than "forbidden": the caller may
 * create environments, just not one more now, and a client can tell the two
 * apart (docs/api.md).
 */
static void __attribute__((format(printf, 2, 3)))
reply_quota(struct http_exchange *x, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    api__reply_json(x, 403, json_pack("{s:{s:s, s:s}}", "error", "code", "quota", "message", msg));
}

/*
 * Whether the caller may keep one environment more awake (`name`, NULL for a
 * new one, only for the log): 0, or a negative code after answering (403
 * "quota", or a store failure). Admins keep what they like; others at most
 * quota_keep_per_user live environments (0: no limit).
 */
static int
check_keep_quota(struct api_call *call, const char *name)
{
    int64_t limit = call->api->cfg->quota_keep_per_user;
    struct eph_err err = {0};
    int64_t n = 0;
    int rc;

    if (api__is_admin(call) || limit <= 0)
        return 0;
    rc = store_env_count_kept(call->api->st, call->who.user, &n, &err);
    if (rc < 0) {
        api__reply_failure(call->x, rc, &err);
        return rc;
    }
    if (n < limit)
        return 0;
    log_info("keep refused", "user=%s env=%s reason=quota kept=%" PRId64 " limit=%" PRId64,
             call->who.user, name ? name : "(new)", n, limit);
    reply_quota(call->x,
                "quota reached: you keep %" PRId64 " environment%s awake and the limit is "
                "%" PRId64 "; release one first (eph keep NAME --off)",
                n, n == 1 ? "" : "s", limit);
    return EPH_EQUOTA;
}

/*
 * Whether the caller may have one live environment more (kept awake if
 * `keep`): 0, or a negative code after answering (403 "quota", or a store
 * failure). Non-admins count against quota_envs_per_user, everyone against
 * quota_envs_total; 0 means no limit. Environments being deleted no longer
 * count. Then the keep quota (check_keep_quota).
 */
static int
check_quotas(struct api_call *call, bool keep)
{
    const struct config *cfg = call->api->cfg;
    struct eph_err err = {0};
    int64_t n = 0;
    int rc;

    if (cfg->quota_envs_per_user > 0 && !api__is_admin(call)) {
        rc = store_env_count_live(call->api->st, call->who.user, &n, &err);
        if (rc < 0) {
            api__reply_failure(call->x, rc, &err);
            return rc;
        }
        if (n >= cfg->quota_envs_per_user) {
            log_info("env create refused", "user=%s reason=quota live=%" PRId64 " limit=%" PRId64,
                     call->who.user, n, cfg->quota_envs_per_user);
            reply_quota(call->x,
                        "quota reached: you have %" PRId64 " environment%s and the limit is "
                        "%" PRId64 "; delete one first (eph rm NAME)",
                        n, n == 1 ? "" : "s", cfg->quota_envs_per_user);
            return EPH_EQUOTA;
        }
    }
    if (cfg->quota_envs_total > 0) {
        rc = store_env_count_live(call->api->st, NULL, &n, &err);
        if (rc < 0) {
            api__reply_failure(call->x, rc, &err);
            return rc;
        }
        if (n >= cfg->quota_envs_total) {
            log_info("env create refused",
                     "user=%s reason=quota_total live=%" PRId64 " limit=%" PRId64, call->who.user,
                     n, cfg->quota_envs_total);
            reply_quota(call->x, "this server's limit of %" PRId64 " environments is reached",
                        cfg->quota_envs_total);
            return EPH_EQUOTA;
        }
    }
    return keep ? check_keep_quota(call, NULL) : 0;
}

struct create_job {
    uv_work_t work;
    struct api_call *call;
    struct api_env_create req; /* the body, checked on the loop */
    char *project;             /* the project's record */
    char *repo;
    char *cache_dir;
    /* what the work found out */
    char *branch; /* the default branch when ref was NULL (NULL if unknown) */
    char sha[GIT_SHA_HEX + 1];
    char *yaml; /* ephemera.yaml at sha */
    size_t yaml_len;
    int rc;
    struct eph_err err;
};

static void
create_job_free(struct create_job *job)
{
    api__env_create_release(&job->req);
    free(job->project);
    free(job->repo);
    free(job->cache_dir);
    free(job->branch);
    free(job->yaml);
    free(job);
}

/*
 * The branch a bare mirror's HEAD names ("ref: refs/heads/main" -> "main"),
 * or NULL. A plain file read: the mirror's HEAD is the remote's default.
 */
static char *
default_branch(const char *cache_dir)
{
    static const char prefix[] = "ref: refs/heads/";
    char *path = xasprintf("%s/HEAD", cache_dir);
    char *text = NULL;
    char *branch = NULL;
    size_t len = 0;

    if (fs_read_all(path, 4096, &text, &len) == 0 &&
        strncmp(text, prefix, sizeof(prefix) - 1) == 0) {
        size_t n = strcspn(text + sizeof(prefix) - 1, "\r\n");

        if (n > 0)
            branch = xstrndup(text + sizeof(prefix) - 1, n);
    }
    free(text);
    free(path);
    return branch;
}

/* Thread pool: everything git (blocking). Touches nothing but the job. */
static void
create_work(uv_work_t *w)
{
    struct create_job *job = container_of(w, struct create_job, work);
    const char *ref = job->req.ref;

    job->rc = git_cache_sync(job->repo, job->cache_dir, &job->err);
    if (job->rc < 0)
        return;
    if (ref == NULL) {
        job->branch = default_branch(job->cache_dir);
        ref = job->branch ? job->branch : "HEAD";
    }
    job->rc = git_resolve_ref(job->cache_dir, ref, job->sha, &job->err);
    if (job->rc < 0)
        return;
    job->rc = git_read_file(job->cache_dir, job->sha, "ephemera.yaml", SPEC_MAX_BYTES, &job->yaml,
                            &job->yaml_len, &job->err);
}

/* True if nothing listens on 127.0.0.1:port right now (bind, then close). */
static bool
port_free(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;

    if (fd < 0)
        return false;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Ports in TIME_WAIT are fine: services bind with SO_REUSEADDR too. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/*
 * Picks the n lowest ports of the configured range that no environment holds
 * and that can be bound now. EPH_EAGAIN when the range is exhausted.
 */
static int
alloc_ports(struct api *api, size_t n, int *out, struct eph_err *err)
{
    unsigned char *used = xcalloc(65536 / 8, 1);
    int *held = NULL;
    size_t n_held = 0;
    size_t got = 0;
    int rc = store_ports_in_use(api->st, &held, &n_held, err);

    if (rc < 0)
        goto out;
    for (size_t i = 0; i < n_held; i++) {
        if (held[i] > 0 && held[i] < 65536)
            used[held[i] / 8] |= (unsigned char)(1u << (held[i] % 8));
    }
    for (int p = api->cfg->port_lo; p <= api->cfg->port_hi && got < n; p++) {
        if (p <= 0 || p >= 65536 || (used[p / 8] & (1u << (p % 8))))
            continue;
        if (port_free(p))
            out[got++] = p;
    }
    if (got < n)
        rc = eph_err_set(err, EPH_EAGAIN, "no free port left in %d-%d for %zu services",
                         api->cfg->port_lo, api->cfg->port_hi, n);
out:
    free(held);
    free(used);
    return rc;
}

/* Refuses a creation after the git work: answers and says why in the log. */
static void __attribute__((format(printf, 4, 5)))
refuse(struct create_job *job, const char *name, int status, const char *fmt, ...)
{
    char msg[EPH_ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_info("env create refused", "env=%s project=%s status=%d reason=%s", name, job->project,
             status, log_q(msg));
    api__reply_error(job->call->x, status, "%s", msg);
}

/* The status for a failure of the git work. */
static int
git_status(int rc)
{
    switch (rc) {
    case EPH_EINVAL: return 400; /* a ref that is not a ref name */
    case EPH_ENOTFOUND:          /* unknown branch, no ephemera.yaml */
    case EPH_ETOOBIG:            /* ephemera.yaml too large */
    case EPH_EGIT: return 422;   /* the repository cannot be read */
    default: return 500;
    }
}

/* Builds the record: params resolved, services with their ports, sleep as asked, the
 * limits that apply. */
static struct env *
build_env(struct create_job *job, const char *name, const char *ref, const struct spec *spec,
          char **values, const int *ports, int64_t ttl_s, const struct drv_limits *limits)
{
    struct env *env = env_new();
    size_t k = 0;

    env->name = xstrdup(name);
    env->project = xstrdup(job->project);
    env->ref = xstrdup(ref);
    env->commit = xstrdup(job->sha);
    env->owner = xstrdup(job->call->who.user);
    env->visibility = job->req.visibility;
    env->template_yaml = xstrndup(job->yaml, job->yaml_len);
    env->n_params = spec->n_params;
    env->params = xcalloc(spec->n_params ? spec->n_params : 1, sizeof(struct env_param));
    for (size_t i = 0; i < spec->n_params; i++) {
        env->params[i].name = xstrdup(spec->params[i].name);
        env->params[i].value = xstrdup(values[i]);
    }
    env->expires_at_ms = time_wall_ms() + ttl_s * 1000;
    env->sleep_after_s = job->req.sleep_after_s;
    env->keep = job->req.keep;
    env->schedule_awake = job->req.schedule_awake ? xstrdup(job->req.schedule_awake) : NULL;
    env->schedule_tz = job->req.schedule_tz ? xstrdup(job->req.schedule_tz) : NULL;
    env->wake_outside_hours = job->req.wake_outside_hours;
    env->limit_memory_bytes = limits->memory_bytes;
    env->limit_cpu_millis = limits->cpu_millis;
    env->limit_pids = limits->pids;
    env->n_services = spec->n_services;
    env->services = xcalloc(spec->n_services ? spec->n_services : 1, sizeof(struct env_svc));
    for (size_t i = 0; i < spec->n_services; i++) {
        env->services[i].name = xstrdup(spec->services[i].name);
        /* Upstream services run elsewhere and get no port of ours. */
        env->services[i].port = spec->services[i].run ? ports[k++] : 0;
    }
    return env;
}

/*
 * The limits an environment gets, recorded with it so that what it runs
 * under never changes behind its back: each one asked (checked against the
 * caps already), else the template's. A template's above a cap refuses the
 * creation (422: the repository asks what this server does not give), with
 * the message in *err.
 */
static int
effective_limits(const struct api_env_create *req, const struct spec *spec,
                 const struct api_limit_caps *caps, struct drv_limits *out, struct eph_err *err)
{
    struct api_env_create from_template = {
        .limit_memory_bytes = req->limit_memory_bytes ? 0 : spec->default_limit_memory_bytes,
        .limit_cpu_millis = req->limit_cpu_millis ? 0 : spec->default_limit_cpu_millis,
        .limit_pids = req->limit_pids ? 0 : spec->default_limit_pids,
    };
    int rc = api__check_limit_caps(&from_template, caps, err);

    if (rc < 0)
        return eph_err_prefix(err, EPH_EPARSE, "ephemera.yaml defaults: ");
    out->memory_bytes =
        req->limit_memory_bytes ? req->limit_memory_bytes : spec->default_limit_memory_bytes;
    out->cpu_millis =
        req->limit_cpu_millis ? req->limit_cpu_millis : spec->default_limit_cpu_millis;
    out->pids = req->limit_pids ? req->limit_pids : spec->default_limit_pids;
    return 0;
}

/* Loop: the git work is done; check everything else, then record. */
static void
create_done(uv_work_t *w, int status)
{
    struct create_job *job = container_of(w, struct create_job, work);
    struct api_call *call = job->call;
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    const char *ref = job->req.ref ? job->req.ref : job->branch ? job->branch : "HEAD";
    char *name = job->req.name ? xstrdup(job->req.name) : api__derive_env_name(job->project, ref);
    struct spec *spec = NULL;
    char **values = NULL;
    int *ports = NULL;
    size_t n_run = 0;
    struct env *env = NULL;
    struct env *other = NULL;
    struct eph_err err = {0};
    int64_t ttl_s = job->req.ttl_s;
    struct api_limit_caps caps;
    struct drv_limits limits = {0};
    int rc;

    if (status < 0) {
        api__reply_error(x, 500, "git work cancelled: %s", uv_strerror(status));
        goto out;
    }
    if (job->rc < 0) {
        int st = git_status(job->rc);

        if (st >= 500)
            api__reply_failure(x, job->rc, &job->err);
        else
            refuse(job, name, st, "%s", job->err.msg);
        goto out;
    }
    rc = spec_parse(job->yaml, job->yaml_len, "ephemera.yaml", &spec, &err);
    if (rc < 0) {
        refuse(job, name, 422, "%s", err.msg);
        goto out;
    }
    rc = spec_resolve_params(spec, job->req.params, job->req.n_params, &values, &err);
    if (rc < 0) {
        refuse(job, name, 422, "%s", err.msg);
        goto out;
    }
    caps = limit_caps(api->cfg);
    rc = effective_limits(&job->req, spec, &caps, &limits, &err);
    if (rc < 0) {
        refuse(job, name, 422, "%s", err.msg);
        goto out;
    }
    if (ttl_s == 0)
        ttl_s = spec->default_ttl_s > 0 ? spec->default_ttl_s : api->cfg->default_ttl_s;
    if (ttl_s > api->cfg->max_ttl_s)
        ttl_s = api->cfg->max_ttl_s; /* a template's default is capped, not refused */
    if (!env_name_valid(name)) {
        refuse(job, name, 400, "the derived name '%s' is not a DNS label: give a name", name);
        goto out;
    }
    rc = store_env_get(api->st, name, &other, &err);
    if (rc == 0) {
        refuse(job, name, 409, "environment '%s' already exists", name);
        goto out;
    }
    if (rc != EPH_ENOTFOUND) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    /* Again: another creation may have taken the last place meanwhile. */
    if (check_quotas(call, job->req.keep) < 0)
        goto out;
    for (size_t i = 0; i < spec->n_services; i++)
        n_run += spec->services[i].run != NULL;
    ports = xcalloc(n_run + 1, sizeof(int));
    rc = alloc_ports(api, n_run, ports, &err);
    if (rc == EPH_EAGAIN) {
        log_warn("env create refused", "env=%s reason=%s", name, log_q(err.msg));
        api__reply_error(x, 503, "%s", err.msg);
        goto out;
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    env = build_env(job, name, ref, spec, values, ports, ttl_s, &limits);
    rc = store_env_create(api->st, env, &call->actor, &err);
    if (rc < 0) {
        if (rc == EPH_ECONFLICT)
            refuse(job, name, 409, "%s", err.msg);
        else
            api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("env created",
             "env=%s project=%s ref=%s commit=%.7s visibility=%s keep=%d sleep_after_s=%" PRId64
             " by=%s",
             env->name, env->project, log_q(env->ref), env->commit,
             visibility_name(env->visibility), env->keep, env->sleep_after_s, call->actor_name);
    rec_kick(api->rec);
    api__reply_json(x, 201, api__env_json(env, spec, &api->hooks));
out:
    if (values)
        spec_strv_free(values, spec->n_params);
    spec_free(spec);
    free(ports);
    env_free(env);
    env_free(other);
    free(name);
    create_job_free(job);
    api__call_free(call);
}

void
api__envs_create(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    struct api_env_create req;
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct project *p = NULL;
    struct env *env = NULL;
    struct eph_err err = {0};
    struct create_job *job = NULL;
    int rc;

    (void)params;
    memset(&req, 0, sizeof(req));
    if (!access_env_create(&call->principal)) {
        api__reply_error(x, 403, "viewers cannot create environments");
        goto fail;
    }
    rc = api__parse_env_create(body, len, api->cfg->max_ttl_s, &req, &err);
    if (rc == 0) {
        struct api_limit_caps caps = limit_caps(api->cfg);

        rc = api__check_limit_caps(&req, &caps, &err);
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    if (check_quotas(call, req.keep) < 0)
        goto fail;
    rc = store_project_get(api->st, req.project, &p, &err);
    if (rc == EPH_ENOTFOUND) {
        api__reply_error(x, 404, "project '%.64s' not found", req.project);
        goto fail;
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto fail;
    }
    if (req.name != NULL) {
        rc = store_env_get(api->st, req.name, &env, &err);
        if (rc == 0) {
            api__reply_error(x, 409, "environment '%s' already exists", req.name);
            goto fail;
        }
        if (rc != EPH_ENOTFOUND) {
            api__reply_failure(x, rc, &err);
            goto fail;
        }
    }
    job = xcalloc(1, sizeof(*job));
    job->call = call;
    job->req = req;
    memset(&req, 0, sizeof(req)); /* the job owns the request now */
    job->project = xstrdup(p->name);
    job->repo = xstrdup(p->repo);
    job->cache_dir = config_git_cache_path(api->cfg, p->name);
    rc = uv_queue_work(api->loop, &job->work, create_work, create_done);
    if (rc < 0) {
        api__reply_error(x, 500, "cannot queue work: %s", uv_strerror(rc));
        create_job_free(job);
        goto fail;
    }
    project_free(p);
    return;
fail:
    api__env_create_release(&req);
    project_free(p);
    env_free(env);
    api__call_free(call);
}

/* ------------------------------------------------------------- extend and delete */

void
api__envs_extend(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    struct api_extend req;
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct env *env = NULL;
    struct eph_err err = {0};
    int64_t now = time_wall_ms();
    int64_t base;
    int64_t cap;
    int64_t want;
    char max[32];
    char at[40];
    char *detail;
    int rc;

    rc = api__parse_extend(body, len, &req, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    env = env_to_change(call, params->name);
    if (env == NULL)
        goto out;
    api__note_activity(api, env->id, "api extend");
    base = env->expires_at_ms > now ? env->expires_at_ms : now;
    cap = now + api->cfg->max_ttl_s * 1000;
    want = base + req.by_s * 1000;
    /* Capped to (almost) nothing: a few milliseconds of "extension" is a no. */
    if (want > cap && cap - env->expires_at_ms < 1000) {
        duration_format(api->cfg->max_ttl_s, max, sizeof(max));
        api__reply_error(x, 400,
                         "environment '%s' already expires at the server maximum of %s from now",
                         env->name, max);
        goto out;
    }
    if (want > cap)
        want = cap;
    time_format_rfc3339(want, at, sizeof(at));
    detail = xasprintf("by %s, until %s", req.by, at);
    rc = store_env_set_expiry(api->st, env->id, want, &call->actor, detail, &err);
    free(detail);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("env extended", "env=%s until=%s by=%s", env->name, at, call->actor_name);
    rec_kick(api->rec);
    reply_fresh(call, 200, env->id);
out:
    api__extend_release(&req);
    env_free(env);
    api__call_free(call);
}

void
api__envs_delete(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    struct env *env = api__env_changeable(call, params->name);
    struct eph_err err = {0};
    int rc;

    if (env == NULL)
        goto out;
    if (env->desired == ENV_WANT_DELETED) {
        reply_env(call, 202, env); /* already on its way out */
        goto out;
    }
    rc = store_env_set_desired(api->st, env->id, ENV_WANT_DELETED, &call->actor, "env.delete", NULL,
                               &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("env delete requested", "env=%s by=%s", env->name, call->actor_name);
    rec_kick(api->rec);
    reply_fresh(call, 202, env->id);
out:
    env_free(env);
    api__call_free(call);
}

/* ------------------------------------------------------------- visibility */

void
api__envs_visibility(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    enum visibility vis = VIS_TEAM;
    struct env *env = NULL;
    struct eph_err err = {0};
    int rc;

    rc = api__parse_visibility(body, len, &vis, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    env = env_to_change(call, params->name);
    if (env == NULL)
        goto out;
    rc = store_env_set_visibility(api->st, env->id, vis, &call->actor, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    if (env->visibility != vis) {
        log_info("env visibility changed", "env=%s from=%s to=%s by=%s", env->name,
                 visibility_name(env->visibility), visibility_name(vis), call->actor_name);
        rec_kick(api->rec); /* the gateway's routes carry the visibility */
    }
    reply_fresh(call, 200, env->id);
out:
    env_free(env);
    api__call_free(call);
}

/* ------------------------------------------------------------- sleep, wake, keep */

void
api__note_activity(struct api *api, int64_t env_id, const char *what)
{
    if (api->hooks.note_activity)
        api->hooks.note_activity(api->hooks.arg, env_id, what);
}

/*
 * POST /envs/{name}/sleep and /wake: owner or admin, not while being
 * deleted; the reconciler's hook does it. Its EPH_EINVAL ("fx is not
 * running") is about the environment's state, not the request: 409.
 */
static void
sleep_or_wake(struct api_call *call, const struct api_params *params, bool to_sleep)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    int (*hook)(void *, int64_t, const struct store_actor *, struct eph_err *) =
        to_sleep ? api->hooks.sleep : api->hooks.wake;
    const char *verb = to_sleep ? "sleep" : "wake";
    struct env *env = env_to_change(call, params->name);
    struct eph_err err = {0};
    int rc;

    if (env == NULL)
        goto out;
    if (hook == NULL) {
        api__reply_error(x, 503, "%s is not available on this server", verb);
        goto out;
    }
    rc = hook(api->hooks.arg, env->id, &call->actor, &err);
    if (rc == EPH_EINVAL) {
        api__reply_error(x, 409, "%s", err.msg);
        goto out;
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info(to_sleep ? "env sleep requested" : "env wake requested", "env=%s by=%s", env->name,
             call->actor_name);
    rec_kick(api->rec);
    reply_fresh(call, 202, env->id);
out:
    env_free(env);
    api__call_free(call);
}

void
api__envs_sleep(struct api_call *call, const struct api_params *params)
{
    sleep_or_wake(call, params, true);
}

void
api__envs_wake(struct api_call *call, const struct api_params *params)
{
    sleep_or_wake(call, params, false);
}

void
api__envs_keep(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    bool keep = false;
    struct env *env = NULL;
    struct eph_err err = {0};
    int rc;

    rc = api__parse_keep(body, len, &keep, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    env = env_to_change(call, params->name);
    if (env == NULL)
        goto out;
    if (keep && !env->keep && check_keep_quota(call, env->name) < 0)
        goto out;
    rc = store_env_set_keep(api->st, env->id, keep, &call->actor, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    if (keep != env->keep) {
        log_info("env keep changed", "env=%s keep=%d by=%s", env->name, keep, call->actor_name);
        rec_kick(api->rec);
    }
    reply_fresh(call, 200, env->id);
out:
    env_free(env);
    api__call_free(call);
}
