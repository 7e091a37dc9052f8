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
 *
 * Sleep rides on the same loop: the activity seen (gateway, API) and the
 * schedule decide, per tick, whether desired flips between running and
 * asleep; an asleep environment is suspended by the driver, a running one
 * applied as always. Each plan caches what sleep needs: the effective
 * settings, the parsed schedule, the activity known and when it was last
 * persisted.
 */
#include "reconciler/reconciler.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOG_MOD "reconciler"
#include "core/schedule.h"
#include "core/spec.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* Activity is written to the store at most this often per environment: a
 * busy environment would otherwise cost a write per tick. */
#define REC_ACTIVITY_PERSIST_MS 10000
/* Longest "what" of an activity kept ("websocket some-service-name"). */
#define REC_ACTIVITY_WHAT_MAX 80
/* A schedule described for people: == sizeof(rec_sleep_info.schedule). */
#define REC_SCHEDULE_TEXT_MAX 160
/* The 503 text of an environment asleep and not wakeable. */
#define REC_ASLEEP_MESSAGE_MAX 320

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
    /* effective sleep settings: the environment's, its template's, the server's */
    int64_t sleep_after_s;   /* -1 never, 0 none (a server setting of 0), > 0 */
    bool wake_outside_hours;
    struct schedule *sched;  /* NULL: no schedule (always office hours) */
    char sched_text[REC_SCHEDULE_TEXT_MAX]; /* schedule_describe(), "" none */
    /* activity: the latest known, and what of it is in the store */
    bool act_loaded;         /* seeded from the record */
    int64_t act_ms;          /* wall clock, 0 none */
    char act_what[REC_ACTIVITY_WHAT_MAX];
    int64_t act_saved_ms;    /* the activity time the store has */
    int64_t act_saved_at_ms; /* wall clock of that write */
    /* Transitions decided by this server, on the schedule clock (which tests
     * may move): what the schedule rules compare with, since the stored
     * slept_at/woke_at are wall clock. 0: none yet, use the stored ones. */
    int64_t sched_slept_at_ms;
    int64_t sched_woke_at_ms;
    int64_t sched_created_at_ms; /* creation on the schedule clock, as of the plan's making */
    bool waking;             /* woken here and not yet ready (or failed) */
    int64_t woke_wall_ms;    /* wall clock of the last wake decided here: not idle before */
    bool suspend_warned;     /* a suspend error was logged (once per sleep) */
    char asleep_message[REC_ASLEEP_MESSAGE_MAX]; /* the view's, for one observer call */
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
    rec_activity_cb *activity; /* polled each tick for each environment */
    void *activity_arg;
    int64_t started_ms;        /* wall clock of rec_new(): nothing was idle before */
    int64_t now_ms;            /* wall clock of the current tick */
    int64_t sched_now_ms;      /* the schedule clock of the current tick (see sched_clock) */
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
    schedule_free(p->sched);
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

/* The first of three text settings that is set (not NULL, not ""). */
static const char *
first_text(const char *env_v, const char *template_v, const char *server_v)
{
    if (env_v && *env_v)
        return env_v;
    if (template_v && *template_v)
        return template_v;
    return server_v;
}

/* A limit: the environment's, else its template's, capped by the server's
 * maximum (0: none), which also applies when neither asks for one. */
static int64_t
limit_of(int64_t env_v, int64_t template_v, int64_t cap)
{
    int64_t v = env_v > 0 ? env_v : template_v > 0 ? template_v : 0;

    if (cap > 0 && (v == 0 || v > cap))
        v = cap;
    return v;
}

/* The effective sleep settings and limits of `env`, first set wins: the
 * environment's, its template's (p->spec, NULL when it cannot be parsed),
 * the server's. The schedule is parsed here, once per plan: it reads a time
 * zone file. */
static void
plan_settings(const struct reconciler *rec, const struct env *env, struct rec_plan *p)
{
    const struct spec *s = p->spec;
    const struct config *cfg = rec->cfg;
    struct eph_err err = {0};
    const char *awake, *tz;

    if (env->sleep_after_s != 0)
        p->sleep_after_s = env->sleep_after_s;
    else if (s && s->default_sleep_after_s != 0)
        p->sleep_after_s = s->default_sleep_after_s;
    else
        p->sleep_after_s = cfg->sleep_after_s;
    if (env->wake_outside_hours >= 0)
        p->wake_outside_hours = env->wake_outside_hours == 1;
    else if (s && s->default_wake_outside_hours >= 0)
        p->wake_outside_hours = s->default_wake_outside_hours == 1;
    else
        p->wake_outside_hours = cfg->wake_outside_hours;
    awake = first_text(env->schedule_awake, s ? s->default_schedule_awake : NULL,
                       cfg->schedule_awake);
    tz = first_text(env->schedule_tz, s ? s->default_schedule_tz : NULL, cfg->schedule_timezone);
    if (awake && *awake) {
        if (schedule_parse(awake, tz, &p->sched, &err) < 0) {
            /* Checked when it was given; a zone file removed since, say. */
            log_warn("schedule ignored", "env=%s awake=%s tz=%s error=%s", env->name,
                     log_q(awake), log_q(tz ? tz : ""), log_q(err.msg));
            p->sched = NULL;
        } else {
            schedule_describe(p->sched, p->sched_text, sizeof(p->sched_text));
        }
    }
    p->plan.limits.memory_bytes =
        limit_of(env->limit_memory_bytes, s ? s->default_limit_memory_bytes : 0,
                 cfg->limit_memory_max_bytes);
    p->plan.limits.cpu_millis = limit_of(env->limit_cpu_millis,
                                         s ? s->default_limit_cpu_millis : 0,
                                         cfg->limit_cpu_max_millis);
    p->plan.limits.pids =
        limit_of(env->limit_pids, s ? s->default_limit_pids : 0, cfg->limit_pids_max);
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
    plan_settings(rec, env, p);
    p->sched_created_at_ms = env->created_at_ms - rec->now_ms + rec->sched_now_ms;
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

/* The phase that what the driver observed amounts to, and why. `waking`:
 * woken and not yet ready, so not yet ready again whatever the phase says. */
static enum env_phase
derive_phase(const struct env *env, const struct drv_plan *plan, const struct drv_status *st,
             bool waking, char *reason, size_t reason_size)
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
    if (env->phase == ENV_PHASE_READY && !waking)
        return ENV_PHASE_READY;
    return ENV_PHASE_STARTING;
}

static void
reconcile_running(struct reconciler *rec, struct env *env, struct rec_plan *p)
{
    struct eph_err err = {0};
    struct drv_status st = {0};
    char reason[512];
    enum env_phase phase;

    /* A wake: starting (which stamps woke_at), whatever the driver says next. */
    if (env->phase == ENV_PHASE_SLEEPING) {
        p->waking = true;
        set_phase(rec, env, ENV_PHASE_STARTING, NULL);
    }
    if (p->error) {
        p->waking = false;
        set_phase(rec, env, ENV_PHASE_FAILED, p->error);
        return;
    }
    if (rec->drv->ops->apply(rec->drv, &p->plan, &err) < 0) {
        p->waking = false;
        set_phase(rec, env, ENV_PHASE_FAILED, err.msg);
        return;
    }
    st.n_services = p->plan.n_services;
    st.services = xcalloc(st.n_services + 1, sizeof(*st.services));
    rec->drv->ops->observe(rec->drv, &p->plan, &st);
    record_services(rec, env, p, &st);
    phase = derive_phase(env, &p->plan, &st, p->waking, reason, sizeof(reason));
    if (phase == ENV_PHASE_READY || phase == ENV_PHASE_FAILED)
        p->waking = false; /* woke up, or failed to: the reason says why */
    set_phase(rec, env, phase, reason[0] ? reason : NULL);
    free(st.services);
}

/* Records every service of an environment that went to sleep as stopped. */
static void
record_stopped(struct reconciler *rec, struct env *env)
{
    for (size_t i = 0; i < env->n_services; i++) {
        struct env_svc *svc = &env->services[i];
        struct eph_err err = {0};

        if (svc->state == SVC_STATE_STOPPED && svc->pid == 0 && svc->started_at_ms == 0 &&
            svc->reason == NULL)
            continue;
        svc->state = SVC_STATE_STOPPED;
        svc->pid = 0;
        svc->started_at_ms = 0;
        free(svc->reason);
        svc->reason = NULL;
        if (store_svc_update(rec->st, env->id, svc, &err) < 0)
            log_error("cannot record service", "env=%s service=%s error=%s", env->name,
                      svc->name, log_q(err.msg));
    }
}

/* Desired asleep: the driver stops everything, then the phase is sleeping
 * (which stamps slept_at), its reason the sleep's. */
static void
reconcile_asleep(struct reconciler *rec, struct env *env, struct rec_plan *p)
{
    struct eph_err err = {0};
    int rc = 0;

    p->waking = false;
    if (rec->drv->ops->suspend != NULL)
        rc = rec->drv->ops->suspend(rec->drv, env->id, env->name, &err);
    if (rc == EPH_EAGAIN)
        return;
    if (rc < 0) {
        if (!p->suspend_warned)
            log_warn("suspend failed, will retry", "env=%s error=%s", env->name, log_q(err.msg));
        p->suspend_warned = true;
        return;
    }
    p->suspend_warned = false;
    record_stopped(rec, env);
    set_phase(rec, env, ENV_PHASE_SLEEPING,
              env->transition_reason && *env->transition_reason ? env->transition_reason : NULL);
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

    /* Asleep or not: a time to live is a time to live. */
    if (env->desired == ENV_WANT_DELETED || env->expires_at_ms <= 0 || env->expires_at_ms > now_ms)
        return;
    if (store_env_set_desired(rec->st, env->id, ENV_WANT_DELETED, &system_actor, "env.expire",
                              "time to live expired", &err) < 0) {
        log_error("cannot expire", "env=%s error=%s", env->name, log_q(err.msg));
        return;
    }
    log_info("environment expired", "env=%s", env->name);
    env->desired = ENV_WANT_DELETED;
}

/* ------------------------------------------------------------- sleep */

/*
 * The clock schedules are evaluated with: the wall clock, or, in debug
 * builds, the wall time (ms since the epoch) in the file EPH_TEST_CLOCK_FILE
 * names, read again each tick, so that tests can move an environment across
 * office hours. Idle times always use the wall clock.
 */
static int64_t
sched_clock(int64_t wall_ms)
{
#ifndef NDEBUG
    const char *path = getenv("EPH_TEST_CLOCK_FILE");
    char *text = NULL;
    int64_t v = 0;

    if (path && *path && fs_read_all(path, 64, &text, NULL) == 0) {
        char *end;
        long long x = strtoll(text, &end, 10);

        if (end != text && x > 0)
            v = x;
    }
    free(text);
    if (v > 0)
        return v;
#endif
    return wall_ms;
}

/* Sets the clocks of "now" for a tick or an API call between ticks. */
static void
clocks_now(struct reconciler *rec)
{
    rec->now_ms = time_wall_ms();
    rec->sched_now_ms = sched_clock(rec->now_ms);
}

/* A schedule time as wall clock (they differ only under a test clock); 0 for never. */
static int64_t
sched_to_wall(const struct reconciler *rec, int64_t sched_ms)
{
    if (sched_ms == INT64_MAX)
        return 0;
    return sched_ms - rec->sched_now_ms + rec->now_ms;
}

/* When it last went to sleep and woke, on the schedule clock. */
static int64_t
last_sleep_at(const struct env *env, const struct rec_plan *p)
{
    return p->sched_slept_at_ms ? p->sched_slept_at_ms : env->slept_at_ms;
}

/* Creation counts as a wake: one created outside office hours stays up
 * until it is idle, it is not put to sleep the moment it is ready. */
static int64_t
last_wake_at(const struct env *env, const struct rec_plan *p)
{
    int64_t woke = p->sched_woke_at_ms ? p->sched_woke_at_ms : env->woke_at_ms;
    return woke > p->sched_created_at_ms ? woke : p->sched_created_at_ms;
}

static void
set_str(char **field, const char *value)
{
    free(*field);
    *field = xstrdup(value ? value : "");
}

/* Activity at at_ms, unless newer is known. */
static void
note_activity(struct rec_plan *p, int64_t at_ms, const char *what)
{
    if (at_ms <= p->act_ms)
        return;
    p->act_ms = at_ms;
    snprintf(p->act_what, sizeof(p->act_what), "%s", what ? what : "");
}

/* The first time: the activity the store has. */
static void
seed_activity(struct rec_plan *p, const struct env *env)
{
    if (p->act_loaded)
        return;
    p->act_loaded = true;
    note_activity(p, env->last_activity_ms, env->last_activity);
    p->act_saved_ms = env->last_activity_ms;
}

/* Writes the activity known unless the store has it, at most every
 * REC_ACTIVITY_PERSIST_MS unless `now`. */
static void
persist_activity(struct reconciler *rec, const struct env *env, struct rec_plan *p, bool now)
{
    struct eph_err err = {0};

    if (p->act_ms <= p->act_saved_ms ||
        (!now && rec->now_ms - p->act_saved_at_ms < REC_ACTIVITY_PERSIST_MS))
        return;
    if (store_env_set_activity(rec->st, env->id, p->act_ms, p->act_what, &err) < 0) {
        log_warn("cannot record activity", "env=%s error=%s", env->name, log_q(err.msg));
        return;
    }
    p->act_saved_ms = p->act_ms;
    p->act_saved_at_ms = rec->now_ms;
}

/* What the activity source saw since the last tick; an exchange open now is
 * activity now. */
static void
intake_activity(struct reconciler *rec, const struct env *env, struct rec_plan *p)
{
    struct rec_activity a = {0};

    seed_activity(p, env);
    if (rec->activity && rec->activity(rec->activity_arg, env->id, &a))
        note_activity(p, a.open > 0 ? rec->now_ms : a.last_ms, a.what);
    persist_activity(rec, env, p, false);
}

/* How long nothing happened: since the last activity, wake, readiness or
 * server start, whichever is latest. */
static int64_t
idle_ms_of(const struct reconciler *rec, const struct env *env, const struct rec_plan *p)
{
    int64_t base = rec->started_ms;
    const int64_t since[] = {p->act_ms, env->woke_at_ms, env->ready_at_ms, p->woke_wall_ms,
                             env->phase == ENV_PHASE_READY ? env->phase_at_ms : 0};

    for (size_t i = 0; i < ARRAY_LEN(since); i++) {
        if (since[i] > base)
            base = since[i];
    }
    return rec->now_ms > base ? rec->now_ms - base : 0;
}

/* Whether a request may wake it now: kept, no schedule, inside its hours, or
 * allowed to wake outside them. */
static bool
wake_allowed(const struct reconciler *rec, const struct env *env, const struct rec_plan *p)
{
    struct schedule_state ss;

    if (env->keep || p->sched == NULL || p->wake_outside_hours)
        return true;
    schedule_eval(p->sched, rec->sched_now_ms, &ss);
    return ss.awake;
}

/* desired asleep, with cause, reason and event; env follows. */
static int
go_to_sleep(struct reconciler *rec, struct env *env, struct rec_plan *p, const char *cause,
            const char *reason, const struct store_actor *who, struct eph_err *err)
{
    int rc;

    persist_activity(rec, env, p, true); /* what the reason names is in the store too */
    rc = store_env_set_sleep(rec->st, env->id, true, cause, reason, who, err);
    if (rc < 0)
        return rc;
    log_info("environment going to sleep", "env=%s cause=%s reason=%s by=%s", env->name, cause,
             log_q(reason), who && who->name ? who->name : "system");
    env->desired = ENV_WANT_ASLEEP;
    set_str(&env->sleep_cause, cause);
    set_str(&env->transition_reason, reason);
    p->sched_slept_at_ms = rec->sched_now_ms;
    p->waking = false;
    return 0;
}

/* desired running, with reason and event; env follows. */
static int
wake_up(struct reconciler *rec, struct env *env, struct rec_plan *p, const char *reason,
        const struct store_actor *who, struct eph_err *err)
{
    int rc = store_env_set_sleep(rec->st, env->id, false, NULL, reason, who, err);

    if (rc < 0)
        return rc;
    log_info("environment waking", "env=%s reason=%s by=%s", env->name, log_q(reason),
             who && who->name ? who->name : "system");
    env->desired = ENV_WANT_RUNNING;
    set_str(&env->sleep_cause, "");
    set_str(&env->transition_reason, reason);
    p->sched_woke_at_ms = rec->sched_now_ms;
    p->woke_wall_ms = rec->now_ms;
    p->waking = true;
    return 0;
}

/* Deleted, or on its way. */
static bool
being_deleted(const struct env *env)
{
    return env->desired == ENV_WANT_DELETED || env->phase == ENV_PHASE_DELETING;
}

/*
 * The automatic rules, for an environment that is neither kept nor being
 * deleted: (1) ready outside office hours, the hours having ended after its
 * last wake: sleep; (2) ready and idle for sleep_after: sleep; (3) asleep by
 * schedule, inside hours that began after it slept: wake; (4) sleeping for
 * delete_after_sleeping: delete.
 */
static void
sleep_rules(struct reconciler *rec, struct env *env, struct rec_plan *p)
{
    struct schedule_state ss = {0};
    struct eph_err err = {0};
    char reason[256], dur[32];
    int rc = 0;

    if (being_deleted(env))
        return;
    if (env->keep) {
        /* Kept from now on: asleep because idle or outside its hours, it
         * wakes; put to sleep by hand, it stays so. */
        if (env->desired == ENV_WANT_ASLEEP && env->sleep_cause &&
            (strcmp(env->sleep_cause, "idle") == 0 || strcmp(env->sleep_cause, "schedule") == 0))
            rc = wake_up(rec, env, p, "kept awake", &system_actor, &err);
        goto out;
    }
    if (p->sched)
        schedule_eval(p->sched, rec->sched_now_ms, &ss);
    if (env->desired == ENV_WANT_RUNNING) {
        if (env->phase != ENV_PHASE_READY || p->waking)
            return;
        if (p->sched && !ss.awake && ss.since_ms > last_wake_at(env, p)) {
            snprintf(reason, sizeof(reason), "outside office hours (%s)", p->sched_text);
            rc = go_to_sleep(rec, env, p, "schedule", reason, &system_actor, &err);
        } else if (p->sleep_after_s > 0 && idle_ms_of(rec, env, p) >= p->sleep_after_s * 1000) {
            duration_format(p->sleep_after_s, dur, sizeof(dur));
            if (p->act_what[0])
                snprintf(reason, sizeof(reason), "idle for %s (last: %s)", dur, p->act_what);
            else
                snprintf(reason, sizeof(reason), "idle for %s (no activity seen)", dur);
            rc = go_to_sleep(rec, env, p, "idle", reason, &system_actor, &err);
        }
    } else if (p->sched && ss.awake && env->sleep_cause &&
               strcmp(env->sleep_cause, "schedule") == 0 &&
               ss.since_ms > last_sleep_at(env, p)) {
        rc = wake_up(rec, env, p, "office hours began", &system_actor, &err);
    } else if (env->phase == ENV_PHASE_SLEEPING && rec->cfg->delete_after_sleeping_s > 0 &&
               env->slept_at_ms > 0 &&
               rec->now_ms - env->slept_at_ms >= rec->cfg->delete_after_sleeping_s * 1000) {
        duration_format(rec->cfg->delete_after_sleeping_s, dur, sizeof(dur));
        snprintf(reason, sizeof(reason), "asleep for %s", dur);
        rc = store_env_set_desired(rec->st, env->id, ENV_WANT_DELETED, &system_actor,
                                   "env.reclaim", reason, &err);
        if (rc == 0) {
            log_info("environment reclaimed", "env=%s reason=%s", env->name, log_q(reason));
            env->desired = ENV_WANT_DELETED;
        }
    }
out:
    if (rc < 0)
        log_error("cannot record sleep or wake", "env=%s error=%s", env->name, log_q(err.msg));
}

/* Loads a live environment by id: EPH_ENOTFOUND for a deleted one too. */
static int
load_live(struct reconciler *rec, int64_t env_id, struct env **out, struct eph_err *err)
{
    int rc = store_env_get_by_id(rec->st, env_id, out, err);

    if (rc == 0 && (*out)->phase == ENV_PHASE_DELETED) {
        env_free(*out);
        *out = NULL;
        rc = eph_err_set(err, EPH_ENOTFOUND, "environment %" PRId64 " not found", env_id);
    }
    return rc;
}

int
rec_sleep(struct reconciler *rec, int64_t env_id, const struct store_actor *who,
          struct eph_err *err)
{
    struct env *env = NULL;
    char *reason = NULL;
    int rc = load_live(rec, env_id, &env, err);

    if (rc < 0)
        return rc;
    clocks_now(rec);
    if (being_deleted(env)) {
        rc = eph_err_set(err, EPH_EINVAL, "%s is being deleted", env->name);
    } else if (env->desired == ENV_WANT_ASLEEP) {
        rc = 0; /* asleep already: nothing new to record */
    } else if (env->phase == ENV_PHASE_PENDING || env->phase == ENV_PHASE_PREPARING) {
        rc = eph_err_set(err, EPH_EINVAL, "%s is not running yet (%s)", env->name,
                         env_phase_name(env->phase));
    } else {
        reason = xasprintf("put to sleep by %s", who && who->name ? who->name : "system");
        rc = go_to_sleep(rec, env, plan_get(rec, env), "manual", reason, who, err);
        if (rc == 0)
            rec_kick(rec);
    }
    free(reason);
    env_free(env);
    return rc;
}

int
rec_wake(struct reconciler *rec, int64_t env_id, const struct store_actor *who,
         struct eph_err *err)
{
    struct env *env = NULL;
    char *reason = NULL;
    int rc = load_live(rec, env_id, &env, err);

    if (rc < 0)
        return rc;
    clocks_now(rec);
    if (being_deleted(env)) {
        rc = eph_err_set(err, EPH_EINVAL, "%s is being deleted", env->name);
    } else if (env->desired == ENV_WANT_ASLEEP) {
        reason = xasprintf("woken by %s", who && who->name ? who->name : "system");
        rc = wake_up(rec, env, plan_get(rec, env), reason, who, err);
        if (rc == 0)
            rec_kick(rec);
    }
    free(reason);
    env_free(env);
    return rc;
}

void
rec_wake_on_request(struct reconciler *rec, int64_t env_id, const char *service)
{
    struct eph_err err = {0};
    struct env *env = NULL;
    struct rec_plan *p;
    char reason[REC_ACTIVITY_WHAT_MAX];

    if (load_live(rec, env_id, &env, &err) < 0)
        return;
    if (env->desired != ENV_WANT_ASLEEP || being_deleted(env))
        goto out; /* awake or waking already */
    clocks_now(rec);
    p = plan_get(rec, env);
    if (!wake_allowed(rec, env, p)) {
        log_debug("request does not wake", "env=%s service=%s", env->name,
                  service ? service : "-");
        goto out;
    }
    snprintf(reason, sizeof(reason), "request %s", service && *service ? service : "-");
    seed_activity(p, env);
    note_activity(p, rec->now_ms, reason);
    if (wake_up(rec, env, p, reason, &system_actor, &err) < 0)
        log_error("cannot record wake", "env=%s error=%s", env->name, log_q(err.msg));
    else
        rec_kick(rec);
out:
    env_free(env);
}

void
rec_note_activity(struct reconciler *rec, int64_t env_id, int64_t at_ms, const char *what)
{
    struct rec_plan *p = plan_find(rec, env_id);

    if (p != NULL)
        note_activity(p, at_ms, what);
}

void
rec_set_activity_source(struct reconciler *rec, rec_activity_cb *cb, void *arg)
{
    rec->activity = cb;
    rec->activity_arg = arg;
}

bool
rec_sleep_info(struct reconciler *rec, int64_t env_id, struct rec_sleep_info *out)
{
    struct eph_err err = {0};
    struct env *env = NULL;
    struct rec_plan *p;
    struct schedule_state ss = {0};

    memset(out, 0, sizeof(*out));
    if (load_live(rec, env_id, &env, &err) < 0)
        return false;
    clocks_now(rec);
    p = plan_get(rec, env);
    seed_activity(p, env);
    if (p->sched)
        schedule_eval(p->sched, rec->sched_now_ms, &ss);
    out->sleep_after_s = p->sleep_after_s;
    out->keep = env->keep;
    out->wake_allowed = wake_allowed(rec, env, p);
    snprintf(out->schedule, sizeof(out->schedule), "%s", p->sched_text);
    if (env->phase == ENV_PHASE_READY)
        out->idle_ms = idle_ms_of(rec, env, p);
    if (env->keep || being_deleted(env))
        goto out;
    if (env->desired == ENV_WANT_RUNNING && env->phase == ENV_PHASE_READY) {
        int64_t next = 0;

        if (p->sleep_after_s > 0)
            next = rec->now_ms - out->idle_ms + p->sleep_after_s * 1000;
        if (p->sched && ss.awake) {
            int64_t end = sched_to_wall(rec, ss.next_change_ms);
            if (end > 0 && (next == 0 || end < next))
                next = end;
        } else if (p->sched && ss.since_ms > last_wake_at(env, p)) {
            next = rec->now_ms; /* outside hours: at the next tick */
        }
        out->next_sleep_ms = next;
    } else if (env->desired == ENV_WANT_ASLEEP && p->sched && env->sleep_cause &&
               strcmp(env->sleep_cause, "schedule") == 0) {
        out->next_wake_ms = ss.awake ? rec->now_ms : sched_to_wall(rec, ss.next_change_ms);
    }
out:
    env_free(env);
    return true;
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
        bool deleting = being_deleted(env);
        struct rec_plan *p = deleting ? NULL : plan_find(rec, env->id);
        struct rec_env_view *v;
        struct rec_svc_view *svcs;

        if (env->phase == ENV_PHASE_DELETED)
            continue;
        v = &views[n_views++];
        v->id = env->id;
        v->name = env->name;
        v->owner = env->owner;
        v->visibility = env->visibility;
        v->links_since_ms = env->links_since_ms;
        v->phase = env->phase;
        v->reason = env->reason;
        if (p != NULL && env->desired == ENV_WANT_ASLEEP) {
            if (wake_allowed(rec, env, p)) {
                v->hold_requests = true;
            } else {
                snprintf(p->asleep_message, sizeof(p->asleep_message),
                         "%s is asleep outside office hours (awake %s)", env->name,
                         p->sched_text);
                v->asleep_message = p->asleep_message;
            }
        } else if (p != NULL && env->desired == ENV_WANT_RUNNING &&
                   (env->phase == ENV_PHASE_SLEEPING || p->waking ||
                    (env->phase == ENV_PHASE_STARTING && env->woke_at_ms > 0))) {
            v->hold_requests = true;
        }
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
        /* Going to sleep: nothing is routed to processes being stopped; a
         * request is held and wakes it again. */
        if (env->desired == ENV_WANT_ASLEEP) {
            for (size_t j = 0; j < v->n_services; j++)
                svcs[j].state = SVC_STATE_STOPPED;
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
    int64_t now_ms;

    if (rec->in_tick)
        return;
    rec->in_tick = true;
    clocks_now(rec);
    now_ms = rec->now_ms;
    if (store_env_list(rec->st, false, &envs, &n, &err) < 0) {
        log_error("cannot list environments", "error=%s", log_q(err.msg));
        rec->in_tick = false;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct env *env = envs[i];
        struct rec_plan *p = NULL;

        expire_if_due(rec, env, now_ms);
        if (env->desired != ENV_WANT_DELETED) {
            p = plan_get(rec, env);
            p->seen = true;
            intake_activity(rec, env, p);
            sleep_rules(rec, env, p);
        }
        if (env->desired == ENV_WANT_DELETED)
            reconcile_deleting(rec, env);
        else if (env->desired == ENV_WANT_ASLEEP)
            reconcile_asleep(rec, env, p);
        else
            reconcile_running(rec, env, p);
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
    rec->started_ms = time_wall_ms();
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
