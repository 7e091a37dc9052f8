/*
 * drivers/local/local_svc.c - one service's life under the local driver:
 *
 *   PENDING --deps healthy--> [adopt an earlier server's group]
 *                             SETUP (once: marker state/setup-<svc>.done)
 *                             STARTING --probe ok--> HEALTHY
 *   STARTING --health_timeout--> FAILED (group stopped)
 *   STARTING|HEALTHY --exit--> RESTARTING --back-off--> STARTING
 *   RESTARTING --health_timeout, never healthy yet--> FAILED
 *   SETUP --non-zero exit--> FAILED
 *   any --teardown or suspend--> STOPPED
 *   STOPPED --apply after a suspend, once every group is gone--> PENDING
 *
 * The health timeout of a service that has not been healthy since it was
 * begun (created, or woken) runs from its first start: restarts do not move
 * it, so a `run` that keeps exiting fails the start rather than keeping its
 * environment starting for ever. Once it has been healthy, a crash is
 * restarted with back-off for as long as it takes (its state says why), and
 * each restart gets the whole timeout again.
 *
 * apply() only moves PENDING services on; everything after is driven by
 * events: exits, probe results and the service's timer. Every change asks the
 * reconciler for an early tick.
 */
#define LOG_MOD "local"

#include "drivers/local/local_int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/time.h"
#include "util/xmalloc.h"

static void start_run(struct local_svc *s);

static void
set_state(struct local_svc *s, enum svc_state state)
{
    if (s->state == state)
        return;
    s->state = state;
    if (state != SVC_STATE_FAILED && state != SVC_STATE_RESTARTING)
        s->reason[0] = '\0';
    local__kick(s->env->drv);
}

static void
fail(struct local_svc *s, const char *reason)
{
    local__set_reason(s->reason, reason);
    s->started_at_ms = 0;
    s->healthy_since_ms = 0;
    log_warn("service failed", "env=%s service=%s reason=%s", s->env->name, s->name, log_q(reason));
    set_state(s, SVC_STATE_FAILED);
}

/* "30s", "1m30s" would read badly as "1m": whole units only, else seconds or ms. */
static void
format_timeout(int64_t ms, char *out, size_t size)
{
    int64_t sec = ms / 1000;

    if (ms % 1000 != 0)
        snprintf(out, size, "%" PRId64 "ms", ms);
    else if (sec < 60 || sec % 60 != 0)
        snprintf(out, size, "%" PRId64 "s", sec);
    else
        duration_format(sec, out, size);
}

static char *
setup_marker_path(const struct local_svc *s)
{
    return xasprintf("%s/state/setup-%s.done", s->env->dir, s->name);
}

/* ---------------------------------------------------------------- lifecycle */

static void
on_svc_closed(uv_handle_t *h)
{
    struct local_svc *s = container_of((uv_timer_t *)h, struct local_svc, timer);
    struct local_driver *drv = s->drv;

    free(s->name);
    free(s->run);
    free(s->setup);
    free(s->dir);
    for (size_t i = 0; s->envp && s->envp[i]; i++)
        free(s->envp[i]);
    free(s->envp);
    free(s->health_path);
    free(s->health_host);
    free(s);
    local__handle_closed(drv);
}

struct local_svc *
local__svc_new(struct local_env *env, const struct drv_service *svc)
{
    struct local_svc *s = xcalloc(1, sizeof(*s));
    size_t n = 0;

    s->env = env;
    s->drv = env->drv;
    s->name = xstrdup(svc->name);
    s->run = xstrdup(svc->run);
    s->setup = xstrdup(svc->setup);
    s->dir = xstrdup(svc->dir);
    while (svc->envp && svc->envp[n])
        n++;
    s->envp = xcalloc(n + 1, sizeof(*s->envp));
    for (size_t i = 0; i < n; i++)
        s->envp[i] = xstrdup(svc->envp[i]);
    s->port = svc->port;
    s->health_host = xstrdup(svc->health_host);
    s->health_kind = svc->health_kind;
    s->health_path = xstrdup(svc->health_path);
    s->health_timeout_ms =
        svc->health_timeout_ms > 0 ? svc->health_timeout_ms : SPEC_DEFAULT_HEALTH_TIMEOUT_MS;
    s->state = SVC_STATE_PENDING;
    s->backoff_ms = LOCAL_BACKOFF_FIRST_MS;
    uv_timer_init(env->drv->loop, &s->timer);
    local__handle_opened(env->drv);
    return s;
}

void
local__svc_free(struct local_svc *s)
{
    if (s->probe)
        local__probe_abandon(s->probe);
    if (s->run_group)
        s->run_group->svc = NULL;
    if (s->setup_group)
        s->setup_group->svc = NULL;
    s->run_group = s->setup_group = NULL;
    uv_close((uv_handle_t *)&s->timer, on_svc_closed);
}

void
local__svc_stop(struct local_svc *s)
{
    struct local_group *groups[2] = {s->run_group, s->setup_group};

    uv_timer_stop(&s->timer);
    if (s->probe)
        local__probe_abandon(s->probe);
    s->run_group = s->setup_group = NULL;
    for (size_t i = 0; i < 2; i++) {
        if (groups[i] == NULL)
            continue;
        groups[i]->svc = NULL;
        local__group_stop(groups[i]);
    }
    s->started_at_ms = 0;
    s->healthy_since_ms = 0;
    set_state(s, SVC_STATE_STOPPED);
}

void
local__svc_resume(struct local_svc *s)
{
    if (s->state != SVC_STATE_STOPPED)
        return;
    s->backoff_ms = LOCAL_BACKOFF_FIRST_MS;
    s->started_at_ms = 0;
    s->healthy_since_ms = 0;
    s->reason[0] = '\0';
    set_state(s, SVC_STATE_PENDING);
}

/* ---------------------------------------------------------------- health */

static void on_svc_timer(uv_timer_t *t);

static void
schedule_probe(struct local_svc *s)
{
    uv_timer_start(&s->timer, on_svc_timer, (uint64_t)s->probe_delay_ms, 0);
}

static void
became_healthy(struct local_svc *s)
{
    s->healthy_since_ms = time_mono_ms();
    s->been_healthy = true;
    log_info("service healthy", "env=%s service=%s pid=%d took_ms=%" PRId64, s->env->name, s->name,
             s->run_group ? (int)s->run_group->pgid : 0,
             s->started_at_ms ? time_wall_ms() - s->started_at_ms : 0);
    set_state(s, SVC_STATE_HEALTHY);
}

/* Not healthy by its deadline: stops what runs. Before its first healthy,
 * the reason counts the exits that came first, if any: "... within 30s
 * (exited 3 times; last: exited with status 1)". */
static void
health_failed(struct local_svc *s)
{
    char timeout[32], exits[128], reason[LOCAL_REASON_MAX];
    struct local_group *g = s->run_group;

    format_timeout(s->health_timeout_ms, timeout, sizeof(timeout));
    exits[0] = '\0';
    /* Once it has been healthy, earlier exits were crashes restarted as usual. */
    if (!s->been_healthy && s->early_exits == 1)
        snprintf(exits, sizeof(exits), " (exited once: %s)", s->last_exit);
    else if (!s->been_healthy && s->early_exits > 1)
        snprintf(exits, sizeof(exits), " (exited %d times; last: %s)", s->early_exits,
                 s->last_exit);
    snprintf(reason, sizeof(reason), "service '%s' did not become healthy within %s%s", s->name,
             timeout, exits);
    if (g != NULL) {
        s->run_group = NULL;
        g->svc = NULL; /* its exit is expected now */
        local__group_stop(g);
    }
    fail(s, reason);
}

/* Starting (again): healthy at once without a check, else probe from soon,
 * until the first start's deadline if it has not been healthy yet in this
 * attempt, else for a whole timeout from now. */
static void
begin_health(struct local_svc *s)
{
    int64_t now = time_mono_ms();

    set_state(s, SVC_STATE_STARTING);
    if (s->health_kind == SPEC_HEALTH_NONE) {
        became_healthy(s);
        return;
    }
    if (s->been_healthy) {
        s->health_deadline_ms = now + s->health_timeout_ms;
    } else {
        if (s->first_deadline_ms == 0)
            s->first_deadline_ms = now + s->health_timeout_ms;
        s->health_deadline_ms = s->first_deadline_ms;
    }
    s->probe_delay_ms = LOCAL_PROBE_FIRST_MS;
    schedule_probe(s);
}

void
local__svc_on_probe(struct local_svc *s, bool healthy)
{
    if (s->state != SVC_STATE_STARTING)
        return;
    if (healthy) {
        became_healthy(s);
        return;
    }
    if (time_mono_ms() >= s->health_deadline_ms) {
        health_failed(s);
        return;
    }
    s->probe_delay_ms = s->probe_delay_ms * 3 / 2;
    if (s->probe_delay_ms > LOCAL_PROBE_MAX_MS)
        s->probe_delay_ms = LOCAL_PROBE_MAX_MS;
    schedule_probe(s);
}

/* The service's one timer: the next probe while STARTING, the restart (or
 * the first start's deadline, if that comes first) while RESTARTING. */
static void
on_svc_timer(uv_timer_t *t)
{
    struct local_svc *s = container_of(t, struct local_svc, timer);

    if (s->state == SVC_STATE_RESTARTING && s->timer_is_deadline) {
        s->timer_is_deadline = false;
        health_failed(s);
    } else if (s->state == SVC_STATE_RESTARTING) {
        start_run(s);
    } else if (s->state == SVC_STATE_STARTING && s->probe == NULL) {
        if (local__probe_start(s) < 0)
            local__svc_on_probe(s, false);
    }
}

/* ---------------------------------------------------------------- starting */

static void
start_run(struct local_svc *s)
{
    struct eph_err err = {0};
    struct local_group *g;

    s->started_at_ms = time_wall_ms();
    s->healthy_since_ms = 0;
    if (s->run == NULL) {
        begin_health(s); /* upstream: nothing of ours to run */
        return;
    }
    if (local__spawn(s, LOCAL_KIND_RUN, &g, &err) < 0) {
        fail(s, err.msg);
        return;
    }
    s->run_group = g;
    log_info("service started", "env=%s service=%s pid=%d", s->env->name, s->name, (int)g->pgid);
    begin_health(s);
}

static void
start_setup(struct local_svc *s)
{
    struct eph_err err = {0};
    struct local_group *g;

    if (local__spawn(s, LOCAL_KIND_SETUP, &g, &err) < 0) {
        fail(s, err.msg);
        return;
    }
    s->setup_group = g;
    log_info("setup started", "env=%s service=%s pid=%d", s->env->name, s->name, (int)g->pgid);
    set_state(s, SVC_STATE_SETUP);
}

/*
 * Takes over a run group an earlier server left running for this service,
 * if there is a live one, and stops the rest of what it left: setup groups
 * (their work is redone), extra run groups (one copy of a service at a time).
 */
static bool
adopt(struct local_svc *s)
{
    struct local_env *env = s->env;
    struct local_group *keep = NULL;
    uint64_t keep_ticks = 0;

    for (struct local_group *g = env->groups; g != NULL; g = g->next) {
        uint64_t ticks = 0;
        if (!g->adopted || g->svc != NULL || g->stopping || strcmp(g->svc_name, s->name) != 0 ||
            g->kind != LOCAL_KIND_RUN || !g->leader_seen || !proc_is_alive(g->pgid) ||
            proc_start_ticks(g->pgid, &ticks) < 0)
            continue;
        if (g->start_ticks != 0 && ticks != g->start_ticks)
            continue; /* the leader died since the scan and its pid was given again */
        /* The oldest is the one we started; a younger one is a daemon that
         * escaped into a session of its own. */
        if (keep == NULL || ticks < keep_ticks) {
            keep = g;
            keep_ticks = ticks;
        }
    }
    if (keep != NULL && local__group_watch(keep) < 0)
        keep = NULL;
    for (struct local_group *g = env->groups; g != NULL; g = g->next) {
        if (g == keep || !g->adopted || g->svc != NULL || strcmp(g->svc_name, s->name) != 0)
            continue;
        if (g->kind == LOCAL_KIND_SETUP)
            local__group_kill(g);
        else
            local__group_stop(g);
    }
    if (keep == NULL)
        return false;
    keep->svc = s;
    s->run_group = keep;
    local__group_record(keep, env->dir); /* found by its marker only: record it now */
    s->started_at_ms = local__proc_started_ms(keep->pgid);
    if (s->started_at_ms == 0)
        s->started_at_ms = time_wall_ms();
    log_info("service adopted", "env=%s service=%s pid=%d", env->name, s->name, (int)keep->pgid);
    begin_health(s);
    return true;
}

void
local__svc_begin(struct local_svc *s)
{
    char *marker;

    if (s->state != SVC_STATE_PENDING)
        return;
    /* A new attempt: its health timeout runs from its first start below. */
    s->been_healthy = false;
    s->first_deadline_ms = 0;
    s->early_exits = 0;
    s->last_exit[0] = '\0';
    s->timer_is_deadline = false;
    if (adopt(s))
        return;
    marker = setup_marker_path(s);
    if (s->setup != NULL && !fs_exists(marker))
        start_setup(s);
    else
        start_run(s);
    free(marker);
}

/* ---------------------------------------------------------------- exits */

static void
describe_exit(bool known, int exit_status, int term_signal, char *out, size_t size)
{
    if (!known)
        snprintf(out, size, "exited");
    else if (term_signal)
        snprintf(out, size, "killed by signal %d", term_signal);
    else
        snprintf(out, size, "exited with status %d", exit_status);
}

static void
setup_exited(struct local_svc *s, bool known, int exit_status, int term_signal)
{
    char how[64], reason[LOCAL_REASON_MAX];
    char *marker;
    int rc;

    if (s->state != SVC_STATE_SETUP)
        return;
    if (!known || term_signal || exit_status != 0) {
        describe_exit(known, exit_status, term_signal, how, sizeof(how));
        /* "killed by the memory limit (512Mi)" rather than "killed by signal 9" */
        local_cgroup_oom_killed(s->env, known, exit_status, term_signal, how, sizeof(how));
        snprintf(reason, sizeof(reason), "setup of '%s' %s", s->name, how);
        fail(s, reason);
        return;
    }
    marker = setup_marker_path(s);
    rc = fs_write_atomic(marker, "done\n", 5, 0644);
    if (rc < 0) {
        snprintf(reason, sizeof(reason), "cannot write '%s': %s", marker, eph_strerror(rc));
        fail(s, reason);
    } else {
        log_info("setup done", "env=%s service=%s", s->env->name, s->name);
        start_run(s);
    }
    free(marker);
}

void
local__svc_on_exit(struct local_svc *s, struct local_group *g, bool known, int exit_status,
                   int term_signal)
{
    int64_t now = time_mono_ms(), delay;

    if (g->kind == LOCAL_KIND_SETUP) {
        setup_exited(s, known, exit_status, term_signal);
        return;
    }
    if (s->state != SVC_STATE_STARTING && s->state != SVC_STATE_HEALTHY)
        return;
    uv_timer_stop(&s->timer);
    if (s->probe)
        local__probe_abandon(s->probe);
    /* Stable for long enough: this crash is a new story. */
    if (s->healthy_since_ms && now - s->healthy_since_ms >= LOCAL_BACKOFF_RESET_MS)
        s->backoff_ms = LOCAL_BACKOFF_FIRST_MS;
    delay = s->backoff_ms;
    s->backoff_ms = delay * 2 > LOCAL_BACKOFF_MAX_MS ? LOCAL_BACKOFF_MAX_MS : delay * 2;
    describe_exit(known, exit_status, term_signal, s->last_exit, sizeof(s->last_exit));
    local_cgroup_oom_killed(s->env, known, exit_status, term_signal, s->last_exit,
                            sizeof(s->last_exit));
    local__set_reason(s->reason, s->last_exit);
    s->started_at_ms = 0;
    s->healthy_since_ms = 0;
    s->timer_is_deadline = false;
    if (!s->been_healthy) {
        /* Within its first start's health timeout, which no restart moves: at
         * its end, FAILED, without a restart that could not make it. */
        s->early_exits++;
        if (now >= s->first_deadline_ms) {
            log_warn("service exited", "env=%s service=%s pid=%d reason=%s", s->env->name, s->name,
                     (int)g->pgid, log_q(s->reason));
            health_failed(s);
            return;
        }
        if (s->first_deadline_ms - now <= delay) {
            s->timer_is_deadline = true;
            delay = s->first_deadline_ms - now;
        }
    }
    if (!s->timer_is_deadline)
        s->restarts++;
    log_warn("service crashed", "env=%s service=%s pid=%d reason=%s restarts=%d %s=%" PRId64,
             s->env->name, s->name, (int)g->pgid, log_q(s->reason), s->restarts,
             s->timer_is_deadline ? "fail_in_ms" : "restart_in_ms", delay);
    set_state(s, SVC_STATE_RESTARTING);
    uv_timer_start(&s->timer, on_svc_timer, (uint64_t)delay, 0);
}
