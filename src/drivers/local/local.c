/*
 * drivers/local/local.c - the local driver: environments as directories and
 * supervised process groups on this machine (layout in local.h).
 *
 * apply() is called every tick with an environment's plan. The first call
 * creates the environment's in-memory state and starts the checkout in a
 * worker; later calls start services whose dependencies are healthy. The rest
 * (setup, health checks, restarts) happens on events, in local_svc.c, and
 * each change asks the reconciler for an early tick through cfg->kick.
 *
 * suspend() (an environment going to sleep) stops every group but keeps the
 * directory with its checkout, data and state/ marks (checkout and setup
 * done); the next apply() after it, once every group is gone, starts the
 * services again in dependency order as if for the first time, minus the
 * checkout and setup their marks say are done.
 *
 * A server that restarts finds the groups its predecessor left running by
 * their EPH_OWNER marker and by the records in each environment's state/
 * (local_proc.c). A plan that names a service adopts its
 * group instead of starting a second copy; sweep() stops the groups no plan
 * claimed.
 */
#define LOG_MOD "local"

#include "drivers/local/local.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "drivers/local/local_int.h"
#include "sources/git.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* Longest service name we accept in a plan: it becomes file names. */
#define LOCAL_SVC_NAME_MAX 63

/* ---------------------------------------------------------------- driver */

static void
finish_close_if_idle(struct local_driver *drv)
{
    if (!drv->closing || drv->open_handles > 0 || drv->pending_work > 0)
        return;
    void (*done)(void *) = drv->done;
    void *arg = drv->done_arg;

    local_cgroup_free(drv->cgroup);
    free(drv->envs_dir);
    free(drv->instance_id);
    free(drv->owner_prefix);
    local_run_as_release(&drv->run_as);
    free(drv);
    if (done)
        done(arg);
}

void
local__handle_opened(struct local_driver *drv)
{
    drv->open_handles++;
}

void
local__handle_closed(struct local_driver *drv)
{
    EPH_ASSERT(drv->open_handles > 0);
    drv->open_handles--;
    finish_close_if_idle(drv);
}

static void
on_kick_timer(uv_timer_t *t)
{
    struct local_driver *drv = container_of(t, struct local_driver, kick_timer);

    if (drv->kick)
        drv->kick(drv->kick_arg);
}

void
local__kick(struct local_driver *drv)
{
    if (drv->closing || drv->kick == NULL || uv_is_active((uv_handle_t *)&drv->kick_timer))
        return;
    uv_timer_start(&drv->kick_timer, on_kick_timer, 0, 0);
}

/* A kick after `delay_ms`, unless one is due already: while a sleeping
 * environment's groups stop, the reconciler looks again as often as the
 * reaper counts them, rather than at its next period. */
static void
kick_later(struct local_driver *drv, uint64_t delay_ms)
{
    if (drv->closing || drv->kick == NULL || uv_is_active((uv_handle_t *)&drv->kick_timer))
        return;
    uv_timer_start(&drv->kick_timer, on_kick_timer, delay_ms, 0);
}

/* ---------------------------------------------------------------- plans */

static bool
svc_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > LOCAL_SVC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.'))
            return false;
    }
    return true;
}

/* Relative, without "..": a service cannot run outside its checkout. */
static bool
svc_dir_valid(const char *dir)
{
    const char *p = dir;

    if (*p == '/' || *p == '\0')
        return false;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += n;
        while (*p == '/')
            p++;
    }
    return true;
}

static int
plan_check(const struct drv_plan *plan, struct eph_err *err)
{
    if (plan->env_id <= 0)
        return eph_err_set(err, EPH_EINVAL, "invalid environment id %" PRId64, plan->env_id);
    if (plan->env_name == NULL || !env_name_valid(plan->env_name))
        return eph_err_set(err, EPH_EINVAL, "invalid environment name '%s'",
                           plan->env_name ? plan->env_name : "");
    if (plan->repo_cache == NULL || plan->commit == NULL)
        return eph_err_set(err, EPH_EINVAL, "environment '%s': no source in the plan",
                           plan->env_name);
    if (plan->n_services > SPEC_MAX_SERVICES || (plan->n_services && plan->services == NULL))
        return eph_err_set(err, EPH_EINVAL, "environment '%s': bad service list", plan->env_name);
    for (size_t i = 0; i < plan->n_services; i++) {
        const struct drv_service *s = &plan->services[i];
        if (s->name == NULL || !svc_name_valid(s->name))
            return eph_err_set(err, EPH_EINVAL, "invalid service name '%s'",
                               s->name ? s->name : "");
        for (size_t j = 0; j < i; j++) {
            if (strcmp(plan->services[j].name, s->name) == 0)
                return eph_err_set(err, EPH_EINVAL, "service '%s' is listed twice", s->name);
        }
        if (s->dir != NULL && !svc_dir_valid(s->dir))
            return eph_err_set(err, EPH_EINVAL, "service '%s': invalid dir '%s'", s->name, s->dir);
        if (s->health_kind != SPEC_HEALTH_NONE && (s->port <= 0 || s->port > 65535))
            return eph_err_set(err, EPH_EINVAL, "service '%s' has a health check but no port",
                               s->name);
        if (s->health_kind == SPEC_HEALTH_HTTP && s->health_path &&
            (s->health_path[0] != '/' || strpbrk(s->health_path, " \r\n") != NULL))
            return eph_err_set(err, EPH_EINVAL, "service '%s': invalid health path '%s'", s->name,
                               s->health_path);
        for (size_t d = 0; d < s->n_deps; d++) {
            if (s->deps[d] >= plan->n_services || s->deps[d] == i)
                return eph_err_set(err, EPH_EINVAL, "service '%s': invalid dependency", s->name);
        }
    }
    return 0;
}

static bool
plan_has_service(const struct drv_plan *plan, const char *name)
{
    for (size_t i = 0; i < plan->n_services; i++) {
        if (strcmp(plan->services[i].name, name) == 0)
            return true;
    }
    return false;
}

/* ---------------------------------------------------------------- workers */

enum local_work_kind {
    LOCAL_WORK_CHECKOUT, /* a fresh checkout (handed to run_as, if any) */
    LOCAL_WORK_OWN,      /* a checkout and data an earlier server made for
                            another user, handed to run_as */
    LOCAL_WORK_REMOVE,
};

/* A checkout or a removal in a worker thread. The worker touches only what it
 * owns; the result is applied on the loop, if env still exists. */
struct local_work {
    struct local_env *env; /* NULL once the environment is gone */
    struct local_driver *drv;
    enum local_work_kind kind;
    uv_work_t req;
    char *cache, *commit, *dir;
    bool drop; /* give src/ and data/ to uid:gid (run_as) */
    uid_t uid;
    gid_t gid;
    char *user;         /* run_as, for messages; NULL unless drop */
    int64_t started_ms; /* monotonic */
    int rc;
    struct eph_err err;
};

/* ---------------------------------------------------------------- environments */

static struct local_env *
env_lookup(struct local_driver *drv, int64_t id)
{
    for (struct local_env *env = drv->envs; env != NULL; env = env->next) {
        if (env->id == id)
            return env;
    }
    return NULL;
}

static struct local_svc *
svc_find(struct local_env *env, const char *name)
{
    for (size_t i = 0; i < env->n_svcs; i++) {
        if (strcmp(env->svcs[i]->name, name) == 0)
            return env->svcs[i];
    }
    return NULL;
}

/* Takes ownership of dir. */
static struct local_env *
env_create(struct local_driver *drv, int64_t id, const char *name, char *dir)
{
    struct local_env *env = xcalloc(1, sizeof(*env));

    env->drv = drv;
    env->id = id;
    env->name = xstrdup(name);
    env->dir = dir;
    env->prep = DRV_PREP_NONE;
    env->next = drv->envs;
    drv->envs = env;
    return env;
}

/* Unlinks and frees env; its processes keep running, its handles close. */
static void
env_destroy(struct local_env *env)
{
    struct local_driver *drv = env->drv;

    for (struct local_env **pp = &drv->envs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == env) {
            *pp = env->next;
            break;
        }
    }
    for (size_t i = 0; i < env->n_svcs; i++)
        local__svc_free(env->svcs[i]);
    free(env->svcs);
    while (env->groups != NULL) {
        struct local_group *g = env->groups;
        local__group_unlink(&env->groups, g);
        local__group_release(g);
    }
    if (env->work != NULL)
        env->work->env = NULL; /* the worker finishes on its own copies */
    free(env->name);
    free(env->dir);
    free(env);
}

/* Moves env's groups from the list at *head into env->groups. */
static void
claim_from(struct local_env *env, struct local_group **head, const struct drv_plan *plan)
{
    struct local_group *g = *head, *next;

    for (; g != NULL; g = next) {
        next = g->next;
        if (g->env_id != env->id)
            continue;
        local__group_unlink(head, g);
        g->next = env->groups;
        g->linked = true;
        env->groups = g;
        if (plan != NULL && !plan_has_service(plan, g->svc_name))
            local__group_stop(g);
    }
}

/* Moves the groups found at start-up for env into it. With a plan, those of
 * services the plan no longer names are stopped. Without one (teardown), the
 * env's groups that sweep() is stopping come too, so that its directory (and
 * their records) is removed only once they are gone. */
static void
claim_orphans(struct local_env *env, const struct drv_plan *plan)
{
    claim_from(env, &env->drv->orphans, plan);
    if (plan == NULL)
        claim_from(env, &env->drv->swept, NULL);
}

/* The directory of environment id: <id>-<name> if it exists, else the first
 * entry named "<id>-..." (the name is fixed for an id, but be lenient).
 * NULL if there is none. */
static char *
find_env_dir(struct local_driver *drv, int64_t id, const char *name)
{
    char *path = xasprintf("%s/%" PRId64 "-%s", drv->envs_dir, id, name ? name : "");
    char prefix[32];
    size_t pl;
    DIR *d;
    struct dirent *de;

    if (name != NULL && fs_exists(path))
        return path;
    free(path);
    path = NULL;
    pl = (size_t)snprintf(prefix, sizeof(prefix), "%" PRId64 "-", id);
    d = opendir(drv->envs_dir);
    if (d == NULL)
        return NULL;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, pl) == 0) {
            path = xasprintf("%s/%s", drv->envs_dir, de->d_name);
            break;
        }
    }
    closedir(d);
    return path;
}

/* Gives what the processes of w's environment write to run_as: src/ with
 * everything in it, and each data/<service>/ (data/ itself stays ours). */
static int
hand_over(struct local_work *w, const char *src)
{
    char *data = xasprintf("%s/data", w->dir);
    int rc = local__chown_tree(src, w->uid, w->gid, true);

    if (rc < 0) {
        eph_err_set(&w->err, rc, "cannot give '%s' to user '%s': %s", src, w->user,
                    eph_strerror(rc));
    } else if (fs_exists(data)) {
        rc = local__chown_tree(data, w->uid, w->gid, false);
        if (rc < 0)
            eph_err_set(&w->err, rc, "cannot give '%s' to user '%s': %s", data, w->user,
                        eph_strerror(rc));
    }
    free(data);
    return rc;
}

static void
run_work(uv_work_t *req)
{
    struct local_work *w = container_of(req, struct local_work, req);

    if (w->kind == LOCAL_WORK_REMOVE) {
        w->rc = fs_rm_rf(w->dir);
        return;
    }
    char *src = xasprintf("%s/src", w->dir);
    char *marker = xasprintf("%s/state/checkout.done", w->dir);
    char *content = xasprintf("%s\n", w->commit);

    if (w->kind == LOCAL_WORK_OWN) {
        w->rc = hand_over(w, src);
        goto out;
    }
    /* A checkout that a crash interrupted is started over. */
    w->rc = fs_rm_rf(src);
    if (w->rc < 0)
        eph_err_set(&w->err, w->rc, "cannot remove '%s': %s", src, eph_strerror(w->rc));
    if (w->rc == 0)
        w->rc = git_checkout(w->cache, w->commit, src, &w->err);
    /* Before the marker: a checkout is done only once run_as can write it. */
    if (w->rc == 0 && w->drop)
        w->rc = hand_over(w, src);
    if (w->rc == 0) {
        w->rc = fs_write_atomic(marker, content, strlen(content), 0644);
        if (w->rc < 0)
            eph_err_set(&w->err, w->rc, "cannot write '%s': %s", marker, eph_strerror(w->rc));
    }
out:
    free(src);
    free(marker);
    free(content);
}

static void
after_work(uv_work_t *req, int status)
{
    struct local_work *w = container_of(req, struct local_work, req);
    struct local_driver *drv = w->drv;
    struct local_env *env = w->env;

    if (status == UV_ECANCELED) {
        w->rc = EPH_EAGAIN;
        eph_err_set(&w->err, w->rc, "cancelled");
    }
    if (env != NULL) {
        env->work = NULL;
        if (w->kind == LOCAL_WORK_REMOVE) {
            env->removed = w->rc == 0;
            env->remove_rc = w->rc;
            if (w->rc < 0)
                log_warn("cannot remove environment", "env=%s dir=%s error=%s", env->name,
                         log_q(w->dir), log_q(eph_strerror(w->rc)));
            local__kick(drv);
        } else if (!env->tearing_down) {
            int64_t took = time_mono_ms() - w->started_ms;
            if (w->rc == 0 && w->kind == LOCAL_WORK_OWN) {
                env->prep = DRV_PREP_DONE;
                log_info("checkout handed over", "env=%s user=%s took_ms=%" PRId64, env->name,
                         w->user, took);
            } else if (w->rc == 0) {
                env->prep = DRV_PREP_DONE;
                log_info("checkout done", "env=%s commit=%.7s took_ms=%" PRId64, env->name,
                         w->commit, took);
            } else {
                env->prep = DRV_PREP_FAILED;
                local__set_reason(env->reason, w->err.msg);
                log_warn("checkout failed", "env=%s commit=%.7s error=%s", env->name, w->commit,
                         log_q(w->err.msg));
            }
            local__kick(drv);
        } else {
            local__env_progress(env);
        }
    }
    free(w->cache);
    free(w->commit);
    free(w->dir);
    free(w->user);
    free(w);
    drv->pending_work--;
    finish_close_if_idle(drv);
}

static void
queue_work(struct local_env *env, enum local_work_kind kind, const struct drv_plan *plan)
{
    struct local_driver *drv = env->drv;
    struct local_work *w = xcalloc(1, sizeof(*w));

    w->env = env;
    w->drv = drv;
    w->kind = kind;
    w->dir = xstrdup(env->dir);
    w->started_ms = time_mono_ms();
    if (drv->drop && kind != LOCAL_WORK_REMOVE) {
        w->drop = true;
        w->uid = drv->run_as.uid;
        w->gid = drv->run_as.gid;
        w->user = xstrdup(drv->run_as.name);
    }
    if (plan != NULL) {
        w->cache = xstrdup(plan->repo_cache);
        w->commit = xstrdup(plan->commit);
    }
    EPH_ASSERT(uv_queue_work(drv->loop, &w->req, run_work, after_work) == 0);
    env->work = w;
    drv->pending_work++;
}

/* Adds search permission for group and others to directory `path`: run_as
 * must pass through it. 0 or -errno. */
static int
make_enterable(const char *path)
{
    struct stat st;

    if (stat(path, &st) < 0)
        return -errno;
    if ((st.st_mode & 0011) == 0011)
        return 0;
    return chmod(path, (st.st_mode & 07777) | 0011) < 0 ? -errno : 0;
}

/* The directories run_as passes through on the way to src/ and data/<service>/,
 * which the server makes (whatever its umask). */
static int
open_env_dirs(struct local_env *env)
{
    char *data = xasprintf("%s/data", env->dir);
    int rc = make_enterable(env->dir);

    if (rc == 0)
        rc = make_enterable(data);
    if (rc < 0) {
        env->prep = DRV_PREP_FAILED;
        snprintf(env->reason, sizeof(env->reason), "cannot open '%s' to user '%s': %s", env->dir,
                 env->drv->run_as.name, eph_strerror(rc));
    }
    free(data);
    return rc;
}

/* True if run_as owns path (an earlier server may have run as someone else). */
static bool
owned_by_run_as(const struct local_driver *drv, const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0 && st.st_uid == drv->run_as.uid;
}

/* First step of an environment: its directories and its checkout (unless a
 * marker says an earlier server finished it for this very commit; then only
 * handed to run_as if an earlier server made it for another user). */
static void
env_prepare(struct local_env *env, const struct drv_plan *plan)
{
    static const char *const subdirs[] = {"state", "logs", "data"};
    struct local_driver *drv = env->drv;
    char *marker = xasprintf("%s/state/checkout.done", env->dir);
    char *src = xasprintf("%s/src", env->dir);
    char *done = NULL;

    if (fs_read_all(marker, 256, &done, NULL) == 0 && strcspn(done, "\n") == strlen(plan->commit) &&
        memcmp(done, plan->commit, strlen(plan->commit)) == 0 && fs_exists(src)) {
        if (!drv->drop) {
            env->prep = DRV_PREP_DONE;
        } else if (open_env_dirs(env) < 0) {
            /* env->prep is FAILED */
        } else if (owned_by_run_as(drv, src)) {
            env->prep = DRV_PREP_DONE;
        } else {
            log_info("checkout handover started", "env=%s user=%s", env->name, drv->run_as.name);
            env->prep = DRV_PREP_CHECKOUT;
            queue_work(env, LOCAL_WORK_OWN, plan);
        }
        goto out;
    }
    for (size_t i = 0; i < ARRAY_LEN(subdirs); i++) {
        char *path = xasprintf("%s/%s", env->dir, subdirs[i]);
        int rc = fs_mkdir_p(path, 0755);
        if (rc < 0) {
            env->prep = DRV_PREP_FAILED;
            snprintf(env->reason, sizeof(env->reason), "cannot create '%s': %s", path,
                     eph_strerror(rc));
            free(path);
            goto out;
        }
        free(path);
    }
    if (drv->drop && open_env_dirs(env) < 0)
        goto out;
    log_info("checkout started", "env=%s commit=%.7s", env->name, plan->commit);
    env->prep = DRV_PREP_CHECKOUT;
    queue_work(env, LOCAL_WORK_CHECKOUT, plan);
out:
    free(done);
    free(marker);
    free(src);
}

void
local__env_progress(struct local_env *env)
{
    if (!env->tearing_down || env->work != NULL || env->groups != NULL || env->removed ||
        env->remove_rc < 0)
        return;
    /* Its cgroup first: what escaped the groups dies with it (teardown()
     * calls again on every tick while it is EPH_EAGAIN). */
    if (local_cgroup_env_remove(env) == EPH_EAGAIN)
        return;
    if (env->dir == NULL) {
        env->removed = true;
        local__kick(env->drv);
        return;
    }
    queue_work(env, LOCAL_WORK_REMOVE, NULL);
}

/* ---------------------------------------------------------------- operations */

/* Waking: once no group of a suspended environment is left, its services are
 * PENDING again and apply() goes on as usual. False while groups remain. */
static bool
resume(struct local_env *env)
{
    local__reap(env->drv); /* count now rather than at the next timer */
    if (env->groups != NULL) {
        kick_later(env->drv, LOCAL_REAP_INTERVAL_MS);
        return false;
    }
    /* Woken before the suspend got as far as its sweep: what left its
     * process group must not live on beside the new start. */
    if (!env->suspend_swept)
        local_cgroup_env_kill(env);
    env->suspend_swept = true;
    env->suspended = false;
    for (size_t i = 0; i < env->n_svcs; i++)
        local__svc_resume(env->svcs[i]);
    log_info("environment resuming", "env=%s id=%" PRId64, env->name, env->id);
    return true;
}

static int
local_apply(struct driver *d, const struct drv_plan *plan, struct eph_err *err)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);
    struct local_env *env;
    int rc = plan_check(plan, err);

    if (rc < 0)
        return rc;
    if (drv->closing)
        return eph_err_set(err, EPH_ECONFLICT, "the local driver is closing");
    env = env_lookup(drv, plan->env_id);
    if (env == NULL) {
        env =
            env_create(drv, plan->env_id, plan->env_name,
                       xasprintf("%s/%" PRId64 "-%s", drv->envs_dir, plan->env_id, plan->env_name));
    }
    if (env->tearing_down)
        return eph_err_set(err, EPH_ECONFLICT, "environment '%s' is being deleted", plan->env_name);
    claim_orphans(env, plan);
    if (env->suspended && !resume(env))
        return 0; /* a wake right after a sleep: its groups are still stopping */
    for (size_t i = 0; i < plan->n_services; i++) {
        if (svc_find(env, plan->services[i].name) == NULL) {
            env->svcs = xrealloc(env->svcs, (env->n_svcs + 1) * sizeof(*env->svcs));
            env->svcs[env->n_svcs++] = local__svc_new(env, &plan->services[i]);
        }
    }
    if (env->prep == DRV_PREP_NONE)
        env_prepare(env, plan);
    if (env->prep != DRV_PREP_DONE)
        return 0;
    /* Before any service starts; cheap when the limits did not change. */
    local_cgroup_env_setup(env, &plan->limits);
    for (size_t i = 0; i < plan->n_services; i++) {
        const struct drv_service *ps = &plan->services[i];
        struct local_svc *s = svc_find(env, ps->name);
        bool deps_healthy = true;

        if (s->state != SVC_STATE_PENDING)
            continue;
        for (size_t k = 0; k < ps->n_deps && deps_healthy; k++) {
            struct local_svc *dep = svc_find(env, plan->services[ps->deps[k]].name);
            deps_healthy = dep->state == SVC_STATE_HEALTHY;
        }
        if (deps_healthy)
            local__svc_begin(s);
    }
    return 0;
}

static void
local_observe(struct driver *d, const struct drv_plan *plan, struct drv_status *st)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);
    struct local_env *env = env_lookup(drv, plan->env_id);

    st->prep = env ? env->prep : DRV_PREP_NONE;
    snprintf(st->reason, sizeof(st->reason), "%s", env ? env->reason : "");
    st->n_services = plan->n_services;
    for (size_t i = 0; i < plan->n_services; i++) {
        struct drv_svc_status *out = &st->services[i];
        struct local_svc *s = env ? svc_find(env, plan->services[i].name) : NULL;

        memset(out, 0, sizeof(*out));
        out->state = env && env->tearing_down ? SVC_STATE_STOPPED : SVC_STATE_PENDING;
        if (s == NULL)
            continue;
        out->state = s->state;
        out->restarts = s->restarts;
        out->started_at_ms = s->started_at_ms;
        if (s->run_group)
            out->pid = (int)s->run_group->pgid;
        else if (s->setup_group)
            out->pid = (int)s->setup_group->pgid;
        snprintf(out->reason, sizeof(out->reason), "%s", s->reason);
    }
}

static void
begin_teardown(struct local_env *env)
{
    int n = 0;

    env->tearing_down = true;
    claim_orphans(env, NULL);
    if (env->work != NULL && env->work->kind == LOCAL_WORK_CHECKOUT)
        uv_cancel((uv_req_t *)&env->work->req); /* fails harmlessly once running */
    for (size_t i = 0; i < env->n_svcs; i++)
        local__svc_stop(env->svcs[i]);
    for (struct local_group *g = env->groups; g != NULL; g = g->next) {
        local__group_stop(g);
        n++;
    }
    log_info("environment stopping", "env=%s id=%" PRId64 " groups=%d", env->name, env->id, n);
}

static int
local_teardown(struct driver *d, int64_t env_id, const char *env_name, struct eph_err *err)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);
    struct local_env *env = env_lookup(drv, env_id);
    int rc;

    if (drv->closing)
        return eph_err_set(err, EPH_ECONFLICT, "the local driver is closing");
    if (env == NULL) {
        /* Not applied by this process: what an earlier one left, if anything.
         * Its records are read again, in case a group lost its marker. */
        char *dir = find_env_dir(drv, env_id, env_name);
        bool has_orphans = false;
        if (dir != NULL)
            local__scan_env_records(drv, dir, env_id);
        for (struct local_group *g = drv->orphans; g != NULL && !has_orphans; g = g->next)
            has_orphans = g->env_id == env_id;
        for (struct local_group *g = drv->swept; g != NULL && !has_orphans; g = g->next)
            has_orphans = g->env_id == env_id;
        if (dir == NULL && !has_orphans)
            return 0;
        env = env_create(drv, env_id, env_name ? env_name : "", dir);
    }
    if (!env->tearing_down)
        begin_teardown(env);
    local__reap(drv); /* count now rather than at the next timer */
    local__env_progress(env);
    if (env->remove_rc < 0) {
        rc = env->remove_rc;
        env->remove_rc = 0; /* the next call tries again */
        return eph_err_set(err, rc, "cannot remove '%s': %s", env->dir, eph_strerror(rc));
    }
    if (!env->removed)
        return eph_err_set(err, EPH_EAGAIN, "environment '%s' is still stopping", env->name);
    log_info("environment removed", "env=%s id=%" PRId64, env->name, env->id);
    env_destroy(env);
    return 0;
}

static void
begin_suspend(struct local_env *env)
{
    int n = 0;

    env->suspended = true;
    env->suspend_swept = false;
    claim_orphans(env, NULL);
    for (size_t i = 0; i < env->n_svcs; i++)
        local__svc_stop(env->svcs[i]);
    for (struct local_group *g = env->groups; g != NULL; g = g->next) {
        if (!g->stopping)
            local__group_stop(g);
        n++;
    }
    log_info("environment suspending", "env=%s id=%" PRId64 " groups=%d", env->name, env->id, n);
}

static int
local_suspend(struct driver *d, int64_t env_id, const char *env_name, struct eph_err *err)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);
    struct local_env *env = env_lookup(drv, env_id);

    if (drv->closing)
        return eph_err_set(err, EPH_ECONFLICT, "the local driver is closing");
    if (env == NULL) {
        /* Not applied by this process (a server started while it slept):
         * nothing to do unless an earlier server left processes of it. */
        bool has_orphans = false;
        char *dir;

        for (struct local_group *g = drv->orphans; g != NULL && !has_orphans; g = g->next)
            has_orphans = g->env_id == env_id;
        for (struct local_group *g = drv->swept; g != NULL && !has_orphans; g = g->next)
            has_orphans = g->env_id == env_id;
        if (!has_orphans) {
            /* A server killed halfway through a suspend may have left a
             * daemon that had left its process group in the cgroup. */
            local_cgroup_kill_id(drv->cgroup, env_id);
            return 0;
        }
        if (env_name == NULL || !env_name_valid(env_name))
            return eph_err_set(err, EPH_EINVAL, "invalid environment name '%s'",
                               env_name ? env_name : "");
        dir = find_env_dir(drv, env_id, env_name);
        if (dir == NULL)
            dir = xasprintf("%s/%" PRId64 "-%s", drv->envs_dir, env_id, env_name);
        env = env_create(drv, env_id, env_name, dir);
    }
    if (env->tearing_down)
        return eph_err_set(err, EPH_ECONFLICT, "environment '%s' is being deleted", env->name);
    if (!env->suspended)
        begin_suspend(env);
    local__reap(drv); /* count now rather than at the next timer */
    if (env->groups != NULL) {
        kick_later(drv, LOCAL_REAP_INTERVAL_MS);
        return eph_err_set(err, EPH_EAGAIN, "environment '%s' is still stopping", env->name);
    }
    /* Daemons that left their process group would live on otherwise. */
    if (!env->suspend_swept)
        local_cgroup_env_kill(env);
    env->suspend_swept = true;
    return 0;
}

static void
local_sweep(struct driver *d)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);

    while (drv->orphans != NULL) {
        struct local_group *g = drv->orphans;
        local__group_unlink(&drv->orphans, g);
        g->next = drv->swept;
        g->linked = true;
        drv->swept = g;
        log_info("orphan stopped", "env_id=%" PRId64 " service=%s pgid=%d", g->env_id, g->svc_name,
                 (int)g->pgid);
        local__group_stop(g);
    }
}

static char *
local_log_path(struct driver *d, int64_t env_id, const char *env_name, const char *service)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);

    return xasprintf("%s/%" PRId64 "-%s/logs/%s.log", drv->envs_dir, env_id, env_name, service);
}

static void
on_driver_timer_closed(uv_handle_t *h)
{
    local__handle_closed(h->data);
}

static void
free_group_list(struct local_group **head)
{
    while (*head != NULL) {
        struct local_group *g = *head;
        local__group_unlink(head, g);
        local__group_release(g);
    }
}

static void
local_close(struct driver *d, void (*done)(void *arg), void *arg)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);

    EPH_ASSERT(!drv->closing);
    drv->closing = true;
    drv->done = done;
    drv->done_arg = arg;
    while (drv->envs != NULL)
        env_destroy(drv->envs);
    free_group_list(&drv->orphans);
    free_group_list(&drv->swept);
    drv->kick_timer.data = drv;
    drv->reap_timer.data = drv;
    uv_close((uv_handle_t *)&drv->kick_timer, on_driver_timer_closed);
    uv_close((uv_handle_t *)&drv->reap_timer, on_driver_timer_closed);
}

static const struct driver_ops local_ops = {
    .name = "local",
    .apply = local_apply,
    .observe = local_observe,
    .teardown = local_teardown,
    .suspend = local_suspend,
    .usage = local_usage,
    .sweep = local_sweep,
    .log_path = local_log_path,
    .close = local_close,
};

int
local_driver_new(const struct local_config *cfg, struct driver **out, struct eph_err *err)
{
    struct local_driver *drv;
    char real[PATH_MAX];
    int rc;

    *out = NULL;
    if (cfg->loop == NULL || cfg->envs_dir == NULL || cfg->envs_dir[0] == '\0' ||
        cfg->instance_id == NULL || cfg->instance_id[0] == '\0' ||
        strchr(cfg->instance_id, '/') != NULL || cfg->stop_grace_ms < 0)
        return eph_err_set(err, EPH_EINVAL, "invalid local driver configuration");
    if (cfg->run_as != NULL && (cfg->run_as->name == NULL || cfg->run_as->uid == 0))
        return eph_err_set(err, EPH_EINVAL, "invalid local driver configuration");
    if (cfg->run_as != NULL && geteuid() != 0)
        return eph_err_set(err, EPH_EINVAL,
                           "run_as: only a server running as root can run processes as '%s'",
                           cfg->run_as->name);
    rc = fs_mkdir_p(cfg->envs_dir, 0755);
    if (rc < 0)
        return eph_err_set(err, rc, "cannot create '%s': %s", cfg->envs_dir, eph_strerror(rc));
    if (realpath(cfg->envs_dir, real) == NULL) {
        rc = -errno;
        return eph_err_set(err, rc, "cannot resolve '%s': %s", cfg->envs_dir, eph_strerror(rc));
    }
    if (cfg->run_as != NULL) {
        /* Every environment directory is reached through it. */
        rc = make_enterable(real);
        if (rc < 0)
            return eph_err_set(err, rc, "cannot open '%s' to user '%s': %s", real,
                               cfg->run_as->name, eph_strerror(rc));
        rc = local__check_reach("the environments directory", real, cfg->run_as, err);
        if (rc < 0)
            return rc;
    }
    drv = xcalloc(1, sizeof(*drv));
    drv->base.ops = &local_ops;
    drv->loop = cfg->loop;
    drv->envs_dir = xstrdup(real);
    drv->instance_id = xstrdup(cfg->instance_id);
    drv->owner_prefix = xasprintf("%s/", cfg->instance_id);
    drv->stop_grace_ms = cfg->stop_grace_ms;
    drv->kick = cfg->kick;
    drv->kick_arg = cfg->kick_arg;
    if (cfg->run_as != NULL) {
        drv->drop = true;
        drv->run_as.name = xstrdup(cfg->run_as->name);
        drv->run_as.home = xstrdup(cfg->run_as->home ? cfg->run_as->home : "/");
        drv->run_as.uid = cfg->run_as->uid;
        drv->run_as.gid = cfg->run_as->gid;
    }
    /* 0 also when limits cannot be enforced (usage() then says why); an
     * error only for an explicit cgroup_root that cannot be used. */
    rc = local_cgroup_new(cfg->cgroup_root, cfg->instance_id, &drv->cgroup, err);
    if (rc == 0) {
        rc = local__scan(drv);
        if (rc < 0)
            eph_err_set(err, rc, "cannot scan /proc for processes: %s", eph_strerror(rc));
    }
    if (rc < 0) {
        free_group_list(&drv->orphans);
        local_cgroup_free(drv->cgroup);
        free(drv->envs_dir);
        free(drv->instance_id);
        free(drv->owner_prefix);
        local_run_as_release(&drv->run_as);
        free(drv);
        return rc;
    }
    uv_timer_init(drv->loop, &drv->kick_timer);
    uv_timer_init(drv->loop, &drv->reap_timer);
    drv->open_handles = 2;
    *out = &drv->base;
    return 0;
}
