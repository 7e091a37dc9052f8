/*
 * core/env.c - names of phases and states, name validation, and freeing of
 * the model's records.
 */
#include "core/env.h"

#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"

static const char *const phase_names[] = {
    [ENV_PHASE_PENDING] = "pending",     [ENV_PHASE_PREPARING] = "preparing",
    [ENV_PHASE_STARTING] = "starting",   [ENV_PHASE_READY] = "ready",
    [ENV_PHASE_SLEEPING] = "sleeping",   [ENV_PHASE_FAILED] = "failed",
    [ENV_PHASE_DELETING] = "deleting",   [ENV_PHASE_DELETED] = "deleted",
};

static const char *const desired_names[] = {
    [ENV_WANT_RUNNING] = "running",
    [ENV_WANT_DELETED] = "deleted",
    [ENV_WANT_ASLEEP] = "asleep",
};

static const char *const svc_state_names[] = {
    [SVC_STATE_PENDING] = "pending",       [SVC_STATE_SETUP] = "setup",
    [SVC_STATE_STARTING] = "starting",     [SVC_STATE_HEALTHY] = "healthy",
    [SVC_STATE_RESTARTING] = "restarting", [SVC_STATE_FAILED] = "failed",
    [SVC_STATE_STOPPED] = "stopped",
};

/* Looks `name` up in a table of names indexed by enum value. */
static int
parse_name(const char *const *names, size_t n, const char *name, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (names[i] && strcmp(names[i], name) == 0) {
            *out = (int)i;
            return 0;
        }
    }
    return EPH_EINVAL;
}

const char *
env_phase_name(enum env_phase phase)
{
    return (size_t)phase < ARRAY_LEN(phase_names) ? phase_names[phase] : "unknown";
}

int
env_phase_parse(const char *name, enum env_phase *out)
{
    int v = 0;
    int rc = parse_name(phase_names, ARRAY_LEN(phase_names), name, &v);

    if (rc == 0)
        *out = (enum env_phase)v;
    return rc;
}

const char *
env_desired_name(enum env_desired desired)
{
    return (size_t)desired < ARRAY_LEN(desired_names) ? desired_names[desired] : "unknown";
}

int
env_desired_parse(const char *name, enum env_desired *out)
{
    int v = 0;
    int rc = parse_name(desired_names, ARRAY_LEN(desired_names), name, &v);

    if (rc == 0)
        *out = (enum env_desired)v;
    return rc;
}

const char *
svc_state_name(enum svc_state state)
{
    return (size_t)state < ARRAY_LEN(svc_state_names) ? svc_state_names[state] : "unknown";
}

int
svc_state_parse(const char *name, enum svc_state *out)
{
    int v = 0;
    int rc = parse_name(svc_state_names, ARRAY_LEN(svc_state_names), name, &v);

    if (rc == 0)
        *out = (enum svc_state)v;
    return rc;
}

bool
env_name_valid(const char *name)
{
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > ENV_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (!alnum && !(c == '-' && i > 0 && i < len - 1))
            return false;
    }
    return true;
}

struct env *
env_new(void)
{
    struct env *env = xcalloc(1, sizeof(struct env));

    env->wake_outside_hours = -1;
    return env;
}

void
env_free(struct env *env)
{
    if (env == NULL)
        return;
    free(env->name);
    free(env->project);
    free(env->ref);
    free(env->commit);
    free(env->owner);
    free(env->template_yaml);
    free(env->schedule_awake);
    free(env->schedule_tz);
    free(env->last_activity);
    free(env->sleep_cause);
    free(env->transition_reason);
    for (size_t i = 0; i < env->n_params; i++) {
        free(env->params[i].name);
        free(env->params[i].value);
    }
    free(env->params);
    free(env->reason);
    for (size_t i = 0; i < env->n_services; i++) {
        free(env->services[i].name);
        free(env->services[i].reason);
    }
    free(env->services);
    free(env);
}

void
env_list_free(struct env **envs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        env_free(envs[i]);
    free(envs);
}

struct env_svc *
env_svc_find(const struct env *env, const char *name)
{
    for (size_t i = 0; i < env->n_services; i++) {
        if (strcmp(env->services[i].name, name) == 0)
            return &env->services[i];
    }
    return NULL;
}

struct project *
project_new(void)
{
    return xcalloc(1, sizeof(struct project));
}

void
project_free(struct project *p)
{
    if (p == NULL)
        return;
    free(p->name);
    free(p->repo);
    free(p->created_by);
    free(p);
}

void
project_list_free(struct project **ps, size_t n)
{
    for (size_t i = 0; i < n; i++)
        project_free(ps[i]);
    free(ps);
}

void
event_free(struct event *ev)
{
    if (ev == NULL)
        return;
    free(ev->actor);
    free(ev->source);
    free(ev->action);
    free(ev->target);
    free(ev->detail);
    free(ev);
}

void
event_list_free(struct event **evs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        event_free(evs[i]);
    free(evs);
}
