/*
 * reconciler/reconciler.c - the level-triggered loop that makes what runs
 * follow what is wanted.
 *
 * Each tick: load the live environments, expire those past their TTL, build
 * (once per environment and server run) the plan from the template kept with
 * the record, let the driver take its next steps, and write back what it
 * observes: service states, crash events, the phase. Deletions are driven to
 * the end the same way. Nothing here waits: every step is a call that
 * returns at once, and the next tick picks up where this one stopped.
 */
#include "reconciler/reconciler.h"

#include <stdlib.h>
#include <string.h>

#define LOG_MOD "reconciler"
#include "core/spec.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* A plan and everything it points into, for one environment. */
struct rec_plan {
    int64_t env_id;
    struct spec *spec;
    struct drv_plan plan;
    char *repo_cache;
    char **strings;        /* every string the plan borrows, freed together */
    size_t n_strings;
    char ***envps;         /* per plan service */
    size_t **deps;         /* per plan service */
    int *restart_base;     /* per plan service: restarts recorded before this server
                              started; the driver counts from 0 in each server */
    struct rec_svc_view *views; /* per template service, in template order: its route,
                                   without state (rec_env_view.services of a tick) */
    char *error;           /* set when the plan could not be built */
    bool seen;             /* visited by the current tick */
};

struct reconciler {
    uv_loop_t *loop;
    struct store *st;
    struct driver *drv;
    const struct config *cfg;
    uv_timer_t period_timer; /* the level-triggered pass */
    uv_timer_t kick_timer;   /* an early pass after a change */
    bool kick_pending;
    bool in_tick;
    bool swept;              /* the driver's start-up sweep is done */
    struct rec_plan **plans;
    size_t n_plans;
    rec_observer_cb *observer; /* told what runs where at the end of each tick */
    void *observer_arg;
    int closing_handles;
    void (*close_done)(void *arg);
    void *close_arg;
};

static const struct store_actor system_actor = {.name = "system", .source = ""};

/* ------------------------------------------------------------- plans */

static char *
keep(struct rec_plan *p, char *s)
{
    p->strings = xrealloc(p->strings, (p->n_strings + 1) * sizeof(char *));
    p->strings[p->n_strings++] = s;
    return s;
}

static void
plan_free(struct rec_plan *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->plan.n_services; i++) {
        if (p->envps && p->envps[i]) {
            for (char **e = p->envps[i]; *e; e++)
                free(*e);
            free(p->envps[i]);
        }
        if (p->deps)
            free(p->deps[i]);
    }
    free(p->envps);
    free(p->deps);
    free(p->restart_base);
    free(p->views);
    free(p->plan.services);
    for (size_t i = 0; i < p->n_strings; i++)
        free(p->strings[i]);
    free(p->strings);
    free(p->repo_cache);
    free(p->error);
    spec_free(p->spec);
    free(p);
}

/*
 * Splits an expanded upstream URL, "http://HOST:PORT" with an optional
 * trailing '/', into its host (free(); an IPv6 literal without its brackets)
 * and port. The parser checked the text already unless it held ${...}, so a
 * param can still make it wrong here: EPH_EINVAL.
 */
static int
upstream_split(const char *url, char **host, int *port, struct eph_err *err)
{
    const char *auth, *end, *colon = NULL, *h, *h_end;
    long n = 0;

    *host = NULL;
    *port = 0;
    if (strncmp(url, "http://", 7) != 0)
        goto bad;
    auth = h = url + 7;
    end = strchr(auth, '/');
    if (end == NULL)
        end = auth + strlen(auth);
    if (*end == '/' && end[1] != '\0')
        goto bad;
    for (const char *c = auth; c < end; c++) {
        if (*c == ':')
            colon = c;
    }
    if (colon == NULL || colon == auth || end - colon < 2 || end - colon > 6)
        goto bad;
    for (const char *c = colon + 1; c < end; c++) {
        if (*c < '0' || *c > '9')
            goto bad;
        n = n * 10 + (*c - '0');
    }
    if (n < 1 || n > 65535)
        goto bad;
    h_end = colon;
    if (*h == '[') {
        if (h_end[-1] != ']' || h_end - h < 3)
            goto bad;
        h++;
        h_end--;
    }
    for (const char *c = h; c < h_end; c++) {
        if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              *c == '.' || *c == '-' || (*c == ':' && auth[0] == '[')))
            goto bad;
    }
    *host = xstrndup(h, (size_t)(h_end - h));
    *port = (int)n;
    return 0;
bad:
    return eph_err_set(err, EPH_EINVAL, "upstream '%s' must look like http://HOST:PORT", url);
}

/* Builds the plan of `env` from its template, params and ports. */
static int
plan_build(const struct reconciler *rec, const struct env *env, struct rec_plan *p,
           struct eph_err *err)
{
    const struct spec *s;
    size_t n;
    size_t *order = NULL;
    size_t *pos_of = NULL; /* spec index -> plan index */
    char **params = NULL, **hosts = NULL, **urls = NULL;
    int *ports = NULL;
    int rc = spec_parse_string(env->template_yaml ? env->template_yaml : "", "ephemera.yaml",
                               &p->spec, err);

    if (rc < 0)
        return rc;
    s = p->spec;
    n = s->n_services;
    params = xcalloc(s->n_params + 1, sizeof(char *));
    for (size_t i = 0; i < s->n_params; i++) {
        const char *value = s->params[i].default_value;
        for (size_t j = 0; j < env->n_params; j++) {
            if (strcmp(env->params[j].name, s->params[i].name) == 0)
                value = env->params[j].value;
        }
        params[i] = keep(p, xstrdup(value ? value : ""));
    }
    ports = xcalloc(n + 1, sizeof(int));
    hosts = xcalloc(n + 1, sizeof(char *));
    urls = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const struct env_svc *svc = env_svc_find(env, s->services[i].name);
        ports[i] = svc ? svc->port : 0;
        hosts[i] = keep(p, xstrdup("127.0.0.1"));
        urls[i] = keep(p, xasprintf("http://127.0.0.1:%d", ports[i]));
    }
    struct spec_vars vars = {
        .env_name = env->name,
        .param_values = params,
        .ports = ports,
        .hosts = hosts,
        .urls = urls,
    };
    /* An upstream's URL may use params: expand it first, then take its host
     * and port, which the gateway routes to and the health check probes. */
    for (size_t i = 0; i < n; i++) {
        if (s->services[i].upstream == NULL)
            continue;
        char *url = NULL, *host = NULL;
        rc = spec_expand(s, &vars, s->services[i].upstream, &url, err);
        if (rc == 0)
            rc = upstream_split(url, &host, &ports[i], err);
        if (rc < 0) {
            free(url);
            eph_err_prefix(err, rc, "service '%s': ", s->services[i].name);
            goto out;
        }
        hosts[i] = keep(p, host);
        urls[i] = keep(p, url);
    }
    p->views = xcalloc(n + 1, sizeof(*p->views));
    for (size_t i = 0; i < n; i++) {
        p->views[i].name = s->services[i].name;
        p->views[i].upstream_host = hosts[i];
        p->views[i].upstream_port = ports[i];
        p->views[i].expose = s->services[i].expose;
    }

    order = xcalloc(n + 1, sizeof(size_t));
    pos_of = xcalloc(n + 1, sizeof(size_t));
    spec_order(s, order);
    for (size_t k = 0; k < n; k++)
        pos_of[order[k]] = k;
    p->plan.services = xcalloc(n + 1, sizeof(struct drv_service));
    p->envps = xcalloc(n + 1, sizeof(char **));
    p->deps = xcalloc(n + 1, sizeof(size_t *));
    p->restart_base = xcalloc(n + 1, sizeof(int));
    p->plan.n_services = n;
    for (size_t k = 0; k < n && rc == 0; k++) {
        const struct spec_service *ss = &s->services[order[k]];
        struct drv_service *ds = &p->plan.services[k];
        size_t count = 0;
        char *text = NULL;

        ds->name = ss->name;
        ds->dir = ss->dir;
        const struct env_svc *stored = env_svc_find(env, ss->name);
        p->restart_base[k] = stored ? stored->restarts : 0;
        ds->port = ports[order[k]];
        ds->health_host = ss->upstream ? hosts[order[k]] : NULL;
        ds->health_kind = ss->health_kind;
        ds->health_timeout_ms = ss->health_timeout_ms;
        rc = spec_service_environ(s, order[k], &vars, &p->envps[k], &count, err);
        if (rc < 0)
            break;
        ds->envp = p->envps[k];
        if (ss->run) {
            rc = spec_expand(s, &vars, ss->run, &text, err);
            ds->run = rc == 0 ? keep(p, text) : NULL;
        }
        if (rc == 0 && ss->setup) {
            rc = spec_expand(s, &vars, ss->setup, &text, err);
            ds->setup = rc == 0 ? keep(p, text) : NULL;
        }
        if (rc == 0 && ss->health_path) {
            rc = spec_expand(s, &vars, ss->health_path, &text, err);
            ds->health_path = rc == 0 ? keep(p, text) : NULL;
        }
        p->deps[k] = xcalloc(ss->n_depends_on + 1, sizeof(size_t));
        for (size_t d = 0; d < ss->n_depends_on; d++)
            p->deps[k][d] = pos_of[spec_service_index(s, ss->depends_on[d])];
        ds->deps = p->deps[k];
        ds->n_deps = ss->n_depends_on;
    }
    p->repo_cache = config_git_cache_path(rec->cfg, env->project);
    p->plan.env_id = env->id;
    p->plan.env_name = keep(p, xstrdup(env->name));
    p->plan.commit = keep(p, xstrdup(env->commit ? env->commit : ""));
    p->plan.repo_cache = p->repo_cache;
out:
    free(order);
    free(pos_of);
    free(params);
    free(ports);
    free(hosts);
    free(urls);
    return rc;
}

static struct rec_plan *
plan_find(struct reconciler *rec, int64_t env_id)
{
    for (size_t i = 0; i < rec->n_plans; i++) {
        if (rec->plans[i]->env_id == env_id)
            return rec->plans[i];
    }
    return NULL;
}

/* The plan of `env`, built on first use; p->error says why it could not be. */
static struct rec_plan *
plan_get(struct reconciler *rec, const struct env *env)
{
    struct rec_plan *p = plan_find(rec, env->id);
    struct eph_err err = {0};

    if (p)
        return p;
    p = xcalloc(1, sizeof(*p));
    p->env_id = env->id;
    if (plan_build(rec, env, p, &err) < 0) {
        /* Keep the failed plan (it says why) but none of its half-built parts. */
        struct rec_plan *failed = xcalloc(1, sizeof(*failed));
        failed->env_id = env->id;
        failed->error = xstrdup(err.msg);
        plan_free(p);
        p = failed;
    }
    rec->plans = xrealloc(rec->plans, (rec->n_plans + 1) * sizeof(*rec->plans));
    rec->plans[rec->n_plans++] = p;
    return p;
}

static void
plan_forget_unseen(struct reconciler *rec)
{
    size_t kept = 0;

    for (size_t i = 0; i < rec->n_plans; i++) {
        if (rec->plans[i]->seen) {
            rec->plans[i]->seen = false;
            rec->plans[kept++] = rec->plans[i];
        } else {
            plan_free(rec->plans[i]);
        }
    }
    rec->n_plans = kept;
}

/* ------------------------------------------------------------- one environment */

static void
set_phase(struct reconciler *rec, struct env *env, enum env_phase phase, const char *reason)
{
    struct eph_err err = {0};
    bool same_reason = (reason == NULL && env->reason == NULL) ||
                       (reason && env->reason && strcmp(reason, env->reason) == 0);

    if (env->phase == phase && same_reason)
        return;
    if (store_env_set_phase(rec->st, env->id, phase, reason, &err) < 0) {
        log_error("cannot record phase", "env=%s error=%s", env->name, log_q(err.msg));
        return;
    }
    if (env->phase != phase)
        log_info("phase changed", "env=%s from=%s to=%s%s%s", env->name,
                 env_phase_name(env->phase), env_phase_name(phase), reason ? " reason=" : "",
                 reason ? log_q(reason) : "");
    env->phase = phase;
    free(env->reason);
    env->reason = xstrdup(reason);
}

static bool
same_str(const char *a, const char *b)
{
    return (a == NULL || *a == '\0') ? (b == NULL || *b == '\0') : (b && strcmp(a, b) == 0);
}

/* Writes what the driver observed of each service back to the store. */
static void
record_services(struct reconciler *rec, struct env *env, const struct rec_plan *p,
                const struct drv_status *st)
{
    const struct drv_plan *plan = &p->plan;

    for (size_t k = 0; k < plan->n_services; k++) {
        const struct drv_svc_status *o = &st->services[k];
        struct env_svc *svc = env_svc_find(env, plan->services[k].name);
        struct eph_err err = {0};
        int restarts = p->restart_base[k] + o->restarts;

        if (svc == NULL)
            continue;
        if (restarts > svc->restarts) {
            /* One event per observation, naming how many crashes it covers:
             * two crashes between ticks are not silently merged. */
            int crashes = restarts - svc->restarts;
            const char *why = o->reason[0] ? o->reason : "exited";
            char *detail = crashes == 1
                               ? xasprintf("service '%s' %s; restart %d", svc->name, why,
                                           restarts)
                               : xasprintf("service '%s' %s; restart %d (%d crashes)",
                                           svc->name, why, restarts, crashes);
            char *target = xasprintf("env/%s", env->name);
            store_event_append(rec->st, &system_actor, "service.crash", target, detail, &err);
            free(detail);
            free(target);
        }
        if (svc->state == o->state && svc->pid == o->pid && svc->restarts == restarts &&
            svc->started_at_ms == o->started_at_ms && same_str(svc->reason, o->reason))
            continue;
        svc->state = o->state;
        svc->pid = o->pid;
        svc->restarts = restarts;
        svc->started_at_ms = o->started_at_ms;
        free(svc->reason);
        svc->reason = o->reason[0] ? xstrdup(o->reason) : NULL;
        if (store_svc_update(rec->st, env->id, svc, &err) < 0)
            log_error("cannot record service", "env=%s service=%s error=%s", env->name,
                      svc->name, log_q(err.msg));
    }
}

/* The phase that what the driver observed amounts to, and why. */
static enum env_phase
derive_phase(const struct env *env, const struct drv_plan *plan, const struct drv_status *st,
             char *reason, size_t reason_size)
{
    bool all_healthy = true;

    reason[0] = '\0';
    switch (st->prep) {
    case DRV_PREP_NONE:
    case DRV_PREP_CHECKOUT: return ENV_PHASE_PREPARING;
    case DRV_PREP_FAILED: snprintf(reason, reason_size, "%s", st->reason); return ENV_PHASE_FAILED;
    case DRV_PREP_DONE: break;
    }
    for (size_t k = 0; k < plan->n_services; k++) {
        const struct drv_svc_status *o = &st->services[k];
        if (o->state == SVC_STATE_FAILED) {
            const char *name = plan->services[k].name;
            char quoted[96];
            snprintf(quoted, sizeof(quoted), "'%s'", name);
            if (strstr(o->reason, quoted))
                snprintf(reason, reason_size, "%s", o->reason);
            else
                snprintf(reason, reason_size, "service '%s': %s", name,
                         o->reason[0] ? o->reason : "failed");
            return ENV_PHASE_FAILED;
        }
        if (o->state != SVC_STATE_HEALTHY)
            all_healthy = false;
    }
    if (all_healthy)
        return ENV_PHASE_READY;
    /* Once ready, a service that crashed and is being restarted does not take
     * the whole environment back to starting: its own state says so. */
    if (env->phase == ENV_PHASE_READY)
        return ENV_PHASE_READY;
    return ENV_PHASE_STARTING;
}

static void
reconcile_running(struct reconciler *rec, struct env *env)
{
    struct rec_plan *p = plan_get(rec, env);
    struct eph_err err = {0};
    struct drv_status st = {0};
    char reason[512];
    enum env_phase phase;

    p->seen = true;
    if (p->error) {
        set_phase(rec, env, ENV_PHASE_FAILED, p->error);
        return;
    }
    if (rec->drv->ops->apply(rec->drv, &p->plan, &err) < 0) {
        set_phase(rec, env, ENV_PHASE_FAILED, err.msg);
        return;
    }
    st.n_services = p->plan.n_services;
    st.services = xcalloc(st.n_services + 1, sizeof(*st.services));
    rec->drv->ops->observe(rec->drv, &p->plan, &st);
    record_services(rec, env, p, &st);
    phase = derive_phase(env, &p->plan, &st, reason, sizeof(reason));
    set_phase(rec, env, phase, reason[0] ? reason : NULL);
    free(st.services);
}

static void
reconcile_deleting(struct reconciler *rec, struct env *env)
{
    struct eph_err err = {0};
    int rc;

    if (env->phase != ENV_PHASE_DELETING)
        set_phase(rec, env, ENV_PHASE_DELETING, NULL);
    rc = rec->drv->ops->teardown(rec->drv, env->id, env->name, &err);
    if (rc == EPH_EAGAIN)
        return;
    if (rc < 0) {
        log_warn("teardown failed, will retry", "env=%s error=%s", env->name, log_q(err.msg));
        return;
    }
    set_phase(rec, env, ENV_PHASE_DELETED, NULL);
}

static void
expire_if_due(struct reconciler *rec, struct env *env, int64_t now_ms)
{
    struct eph_err err = {0};

    if (env->desired != ENV_WANT_RUNNING || env->expires_at_ms <= 0 || env->expires_at_ms > now_ms)
        return;
    if (store_env_set_desired(rec->st, env->id, ENV_WANT_DELETED, &system_actor, "env.expire",
                              "time to live expired", &err) < 0) {
        log_error("cannot expire", "env=%s error=%s", env->name, log_q(err.msg));
        return;
    }
    log_info("environment expired", "env=%s", env->name);
    env->desired = ENV_WANT_DELETED;
}

/* ------------------------------------------------------------- views */

/* The services of `env` as stored, for an environment without a plan. */
static void
view_from_record(const struct env *env, bool deleting, struct rec_svc_view *out)
{
    for (size_t j = 0; j < env->n_services; j++) {
        const struct env_svc *svc = &env->services[j];

        out[j].name = svc->name;
        out[j].upstream_host = "127.0.0.1";
        out[j].upstream_port = svc->port;
        /* Without the template nothing says `expose: false`: the gateway then
         * answers 503 with the phase, which is what there is to know. */
        out[j].expose = true;
        out[j].state = deleting ? SVC_STATE_STOPPED : svc->state;
    }
}

/* Tells the observer what runs where after this tick's observations. */
static void
notify_observer(struct reconciler *rec, struct env **envs, size_t n)
{
    struct rec_env_view *views;
    size_t n_views = 0;

    if (rec->observer == NULL)
        return;
    views = xcalloc(n + 1, sizeof(*views));
    for (size_t i = 0; i < n; i++) {
        const struct env *env = envs[i];
        bool deleting = env->desired == ENV_WANT_DELETED || env->phase == ENV_PHASE_DELETING;
        const struct rec_plan *p = deleting ? NULL : plan_find(rec, env->id);
        struct rec_env_view *v;
        struct rec_svc_view *svcs;

        if (env->phase == ENV_PHASE_DELETED)
            continue;
        v = &views[n_views++];
        v->id = env->id;
        v->name = env->name;
        v->owner = env->owner;
        v->visibility = env->visibility;
        v->phase = env->phase;
        v->reason = env->reason;
        if (p == NULL || p->error != NULL) {
            svcs = xcalloc(env->n_services + 1, sizeof(*svcs));
            view_from_record(env, deleting, svcs);
            v->n_services = env->n_services;
        } else {
            svcs = xcalloc(p->spec->n_services + 1, sizeof(*svcs));
            for (size_t j = 0; j < p->spec->n_services; j++) {
                const struct env_svc *stored = env_svc_find(env, p->views[j].name);

                svcs[j] = p->views[j];
                svcs[j].state = stored ? stored->state : SVC_STATE_PENDING;
                /* A run service's port is the one stored with the environment. */
                if (p->spec->services[j].run && stored)
                    svcs[j].upstream_port = stored->port;
            }
            v->n_services = p->spec->n_services;
        }
        v->services = svcs;
    }
    rec->observer(rec->observer_arg, views, n_views);
    for (size_t i = 0; i < n_views; i++)
        free((void *)views[i].services);
    free(views);
}

void
rec_set_observer(struct reconciler *rec, rec_observer_cb *cb, void *arg)
{
    rec->observer = cb;
    rec->observer_arg = arg;
}

/* ------------------------------------------------------------- ticks */

static void
tick(struct reconciler *rec)
{
    struct env **envs = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    int64_t now_ms = time_wall_ms();

    if (rec->in_tick)
        return;
    rec->in_tick = true;
    if (store_env_list(rec->st, false, &envs, &n, &err) < 0) {
        log_error("cannot list environments", "error=%s", log_q(err.msg));
        rec->in_tick = false;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct env *env = envs[i];
        expire_if_due(rec, env, now_ms);
        if (env->desired == ENV_WANT_DELETED)
            reconcile_deleting(rec, env);
        else
            reconcile_running(rec, env);
    }
    notify_observer(rec, envs, n);
    env_list_free(envs, n);
    plan_forget_unseen(rec);
    if (!rec->swept) {
        rec->drv->ops->sweep(rec->drv);
        rec->swept = true;
    }
    rec->in_tick = false;
}

static void
on_period(uv_timer_t *t)
{
    tick(container_of(t, struct reconciler, period_timer));
}

static void
on_kick(uv_timer_t *t)
{
    struct reconciler *rec = container_of(t, struct reconciler, kick_timer);

    rec->kick_pending = false;
    tick(rec);
}

void
rec_kick(struct reconciler *rec)
{
    if (rec->kick_pending || rec->close_done)
        return;
    rec->kick_pending = true;
    uv_timer_start(&rec->kick_timer, on_kick, 0, 0);
}

int
rec_new(uv_loop_t *loop, struct store *st, struct driver *drv, const struct config *cfg,
        struct reconciler **out, struct eph_err *err)
{
    struct reconciler *rec = xcalloc(1, sizeof(*rec));

    rec->loop = loop;
    rec->st = st;
    rec->drv = drv;
    rec->cfg = cfg;
    uv_timer_init(loop, &rec->period_timer);
    uv_timer_init(loop, &rec->kick_timer);
    *out = rec;
    return 0;
}

void
rec_start(struct reconciler *rec)
{
    uint64_t period = (uint64_t)rec->cfg->reconcile_interval_ms;

    uv_timer_start(&rec->period_timer, on_period, 0, period);
}

char *
rec_log_path(struct reconciler *rec, const struct env *env, const char *service)
{
    return rec->drv->ops->log_path(rec->drv, env->id, env->name, service);
}

static void
on_handle_closed(uv_handle_t *h)
{
    struct reconciler *rec = h->data;

    if (--rec->closing_handles > 0)
        return;
    for (size_t i = 0; i < rec->n_plans; i++)
        plan_free(rec->plans[i]);
    free(rec->plans);
    void (*done)(void *) = rec->close_done;
    void *arg = rec->close_arg;
    free(rec);
    done(arg);
}

void
rec_close(struct reconciler *rec, void (*done)(void *arg), void *arg)
{
    rec->close_done = done;
    rec->close_arg = arg;
    rec->closing_handles = 2;
    rec->period_timer.data = rec;
    rec->kick_timer.data = rec;
    uv_close((uv_handle_t *)&rec->period_timer, on_handle_closed);
    uv_close((uv_handle_t *)&rec->kick_timer, on_handle_closed);
}
