/*
 * api/api_json.c - records as docs/api.md shows them: projects, events,
 * environments with their services, users and API tokens (never a password
 * hash, never a token's hash). Pure functions of their arguments
 * (api__env_json_parsed also parses the template it is given), but for the
 * URL formatter they are handed.
 */
#include "api/api_int.h"

#include <stdio.h>
#include <string.h>

#include "core/units.h"
#include "util/redact.h"
#include "util/time.h"
#include "util/xmalloc.h"

void
api__json_set_time(json_t *obj, const char *key, int64_t wall_ms)
{
    char text[40];
    char key_ms[64];

    snprintf(key_ms, sizeof(key_ms), "%s_ms", key);
    if (wall_ms > 0) {
        time_format_rfc3339(wall_ms, text, sizeof(text));
        json_object_set_new(obj, key, json_string(text));
    } else {
        json_object_set_new(obj, key, json_null());
    }
    json_object_set_new(obj, key_ms, json_integer(wall_ms > 0 ? wall_ms : 0));
}

/* A string, or null for NULL. */
static json_t *
str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

json_t *
api__project_json(const struct project *p)
{
    json_t *o = json_object();

    json_object_set_new(o, "name", str_or_null(p->name));
    char *repo = redact_credentials(p->repo); /* a URL may carry a token */
    json_object_set_new(o, "repo", str_or_null(repo));
    free(repo);
    json_object_set_new(o, "created_by", str_or_null(p->created_by));
    api__json_set_time(o, "created_at", p->created_at_ms);
    return o;
}

json_t *
api__event_json(const struct event *ev)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(ev->id));
    api__json_set_time(o, "at", ev->at_ms);
    json_object_set_new(o, "actor", str_or_null(ev->actor));
    json_object_set_new(o, "source", json_string(ev->source ? ev->source : ""));
    json_object_set_new(o, "action", str_or_null(ev->action));
    json_object_set_new(o, "target", str_or_null(ev->target));
    char *detail = redact_credentials(ev->detail ? ev->detail : "");
    json_object_set_new(o, "detail", json_string(detail));
    free(detail);
    return o;
}

/* True unless the template says `expose: false` for service `name`. */
static bool
exposed(const struct spec *spec, const char *name)
{
    int i = spec ? spec_service_index(spec, name) : -1;

    return i < 0 || spec->services[i].expose;
}

/*
 * The URL an `upstream:` service names, expanded with the environment's
 * params as the reconciler expands it (free()); NULL if the template does
 * not say or the expansion fails.
 */
static char *
upstream_url(const struct env *env, const struct spec *spec, const char *name)
{
    int idx = spec ? spec_service_index(spec, name) : -1;
    size_t n = spec ? spec->n_services : 0;
    char **params, **hosts, **urls;
    int *ports;
    char *out = NULL;
    struct eph_err err = {0};

    if (idx < 0 || spec->services[idx].upstream == NULL)
        return NULL;
    params = xcalloc(spec->n_params + 1, sizeof(char *));
    for (size_t i = 0; i < spec->n_params; i++) {
        const char *value = spec->params[i].default_value;
        for (size_t j = 0; j < env->n_params; j++) {
            if (env->params[j].name && strcmp(env->params[j].name, spec->params[i].name) == 0)
                value = env->params[j].value;
        }
        params[i] = (char *)(value ? value : "");
    }
    ports = xcalloc(n + 1, sizeof(int));
    hosts = xcalloc(n + 1, sizeof(char *));
    urls = xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const struct env_svc *svc = env_svc_find(env, spec->services[i].name);
        ports[i] = svc ? svc->port : 0;
        hosts[i] = "127.0.0.1";
        urls[i] = xasprintf("http://127.0.0.1:%d", ports[i]);
    }
    struct spec_vars vars = {
        .env_name = env->name,
        .param_values = params,
        .ports = ports,
        .hosts = hosts,
        .urls = urls,
    };
    if (spec_expand(spec, &vars, spec->services[idx].upstream, &out, &err) < 0)
        out = NULL;
    for (size_t i = 0; i < n; i++)
        free(urls[i]);
    free(urls);
    free(hosts);
    free(ports);
    free(params);
    return out;
}

static json_t *
service_json(const struct env *env, const struct env_svc *svc, const struct spec *spec,
             const struct api_hooks *hooks)
{
    json_t *o = json_object();
    char *internal = NULL;

    json_object_set_new(o, "name", str_or_null(svc->name));
    json_object_set_new(o, "port", json_integer(svc->port));
    /* The gateway's URL, for browsers and people; services among themselves
     * use internal_url (docs/gateway.md says why). */
    if (hooks && hooks->service_url && exposed(spec, svc->name)) {
        char url[512];

        hooks->service_url(hooks->arg, svc->name, env->name, url, sizeof(url));
        json_object_set_new(o, "url", json_string(url));
    } else {
        json_object_set_new(o, "url", json_null());
    }
    if (svc->port > 0) {
        internal = xasprintf("http://127.0.0.1:%d", svc->port);
    } else {
        char *raw = upstream_url(env, spec, svc->name);
        internal = raw ? redact_credentials(raw) : NULL;
        free(raw);
    }
    json_object_set_new(o, "internal_url", str_or_null(internal));
    free(internal);
    json_object_set_new(o, "state", json_string(svc_state_name(svc->state)));
    json_object_set_new(o, "pid", json_integer(svc->pid));
    json_object_set_new(o, "restarts", json_integer(svc->restarts));
    json_object_set_new(o, "reason", str_or_null(svc->reason));
    api__json_set_time(o, "started_at", svc->started_at_ms);
    return o;
}

/* ------------------------------------------------------------- sleep, usage, limits */

/* Which of sleep and wake came last, why and when: {kind, reason, at, at_ms}, or null. */
static json_t *
last_transition_json(const struct env *env)
{
    const char *reason = env->transition_reason ? env->transition_reason : "";
    bool asleep = env->desired == ENV_WANT_ASLEEP;
    json_t *o;
    int64_t at_ms;

    if (!asleep && env->slept_at_ms == 0 && env->woke_at_ms == 0 && reason[0] == '\0')
        return json_null();
    /* Asked but not done yet (the processes are stopping, or starting): no time. */
    if (asleep)
        at_ms = env->slept_at_ms >= env->woke_at_ms ? env->slept_at_ms : 0;
    else
        at_ms = env->woke_at_ms >= env->slept_at_ms ? env->woke_at_ms : 0;
    o = json_object();
    json_object_set_new(o, "kind", json_string(asleep ? "sleep" : "wake"));
    json_object_set_new(o, "reason", reason[0] ? json_string(reason) : json_null());
    api__json_set_time(o, "at", at_ms);
    return o;
}

static json_t *
sleep_json(const struct env *env, const struct api_hooks *hooks)
{
    json_t *o = json_object();
    struct rec_sleep_info info;
    bool live = env->phase != ENV_PHASE_DELETED && env->desired != ENV_WANT_DELETED;
    const char *cause = env->sleep_cause ? env->sleep_cause : "";

    memset(&info, 0, sizeof(info));
    if (live && hooks && hooks->sleep_info && hooks->sleep_info(hooks->arg, env->id, &info)) {
        char after[32] = "never";

        if (info.sleep_after_s > 0)
            duration_format(info.sleep_after_s, after, sizeof(after));
        json_object_set_new(o, "sleep_after", json_string(after));
        json_object_set_new(o, "sleep_after_s", json_integer(info.sleep_after_s));
        json_object_set_new(o, "idle_ms", json_integer(info.idle_ms));
        api__json_set_time(o, "next_sleep_at", info.next_sleep_ms);
        api__json_set_time(o, "next_wake_at", info.next_wake_ms);
        json_object_set_new(o, "schedule",
                            info.schedule[0] ? json_string(info.schedule) : json_null());
        json_object_set_new(o, "wake_allowed", json_boolean(info.wake_allowed));
    }
    json_object_set_new(o, "keep", json_boolean(env->keep));
    json_object_set_new(
        o, "cause", env->desired == ENV_WANT_ASLEEP && cause[0] ? json_string(cause) : json_null());
    if (env->last_activity_ms > 0) {
        json_t *a = json_object();

        api__json_set_time(a, "at", env->last_activity_ms);
        json_object_set_new(a, "what", json_string(env->last_activity ? env->last_activity : ""));
        json_object_set_new(o, "last_activity", a);
    } else {
        json_object_set_new(o, "last_activity", json_null());
    }
    json_object_set_new(o, "last_transition", last_transition_json(env));
    return o;
}

static json_t *
usage_json(const struct drv_usage *u)
{
    json_t *o = json_object();

    json_object_set_new(o, "memory_bytes", json_integer(u->memory_bytes));
    json_object_set_new(o, "cpu_seconds", json_real((double)u->cpu_usec / 1e6));
    json_object_set_new(o, "limits_enforced", json_boolean(u->limits_enforced));
    json_object_set_new(o, "note", u->note[0] ? json_string(u->note) : json_null());
    return o;
}

/* The limits that apply: as recorded at creation (asked, else the template's, capped by
 * the server), else, for records older than limits, the template's. */
static json_t *
limits_json(const struct env *env, const struct spec *spec)
{
    int64_t mem = env->limit_memory_bytes, cpu = env->limit_cpu_millis, pids = env->limit_pids;
    json_t *o = json_object();
    char text[32];

    if (spec && mem == 0 && cpu == 0 && pids == 0) {
        mem = spec->default_limit_memory_bytes;
        cpu = spec->default_limit_cpu_millis;
        pids = spec->default_limit_pids;
    }
    format_size_bytes(mem, text, sizeof(text));
    json_object_set_new(o, "memory", mem > 0 ? json_string(text) : json_null());
    json_object_set_new(o, "memory_bytes", mem > 0 ? json_integer(mem) : json_null());
    format_cpu_millis(cpu, text, sizeof(text));
    json_object_set_new(o, "cpu", cpu > 0 ? json_string(text) : json_null());
    json_object_set_new(o, "cpu_millis", cpu > 0 ? json_integer(cpu) : json_null());
    json_object_set_new(o, "pids", pids > 0 ? json_integer(pids) : json_null());
    return o;
}

json_t *
api__env_json(const struct env *env, const struct spec *spec, const struct api_hooks *hooks)
{
    json_t *o = json_object();
    json_t *params = json_object();
    json_t *services = json_array();

    json_object_set_new(o, "name", str_or_null(env->name));
    json_object_set_new(o, "project", str_or_null(env->project));
    json_object_set_new(o, "ref", str_or_null(env->ref));
    json_object_set_new(o, "commit", str_or_null(env->commit));
    json_object_set_new(o, "owner", str_or_null(env->owner));
    json_object_set_new(o, "visibility", json_string(visibility_name(env->visibility)));
    json_object_set_new(o, "desired", json_string(env_desired_name(env->desired)));
    json_object_set_new(o, "phase", json_string(env_phase_name(env->phase)));
    json_object_set_new(o, "reason", str_or_null(env->reason));
    for (size_t i = 0; i < env->n_params; i++) {
        if (env->params[i].name)
            json_object_set_new(params, env->params[i].name, str_or_null(env->params[i].value));
    }
    json_object_set_new(o, "params", params);
    api__json_set_time(o, "created_at", env->created_at_ms);
    api__json_set_time(o, "expires_at", env->expires_at_ms);
    api__json_set_time(o, "phase_at", env->phase_at_ms);
    api__json_set_time(o, "ready_at", env->ready_at_ms);
    for (size_t i = 0; i < env->n_services; i++)
        json_array_append_new(services, service_json(env, &env->services[i], spec, hooks));
    json_object_set_new(o, "services", services);
    json_object_set_new(o, "sleep", sleep_json(env, hooks));
    if (hooks && hooks->usage && env->phase != ENV_PHASE_DELETED) {
        struct drv_usage u;

        memset(&u, 0, sizeof(u));
        hooks->usage(hooks->arg, env->id, &u);
        json_object_set_new(o, "usage", usage_json(&u));
    }
    json_object_set_new(o, "limits", limits_json(env, spec));
    return o;
}

json_t *
api__env_json_parsed(const struct env *env, const struct api_hooks *hooks)
{
    struct spec *spec = NULL;
    struct eph_err err = {0};
    json_t *o;

    /* A template that no longer parses (a newer server's keys, say) only
     * costs the expose: false hints and the upstreams' internal URLs. */
    if (env->template_yaml)
        spec_parse(env->template_yaml, strlen(env->template_yaml), "ephemera.yaml", &spec, &err);
    o = api__env_json(env, spec, hooks);
    spec_free(spec);
    return o;
}

json_t *
api__user_json(const struct user *u)
{
    json_t *o = json_object();

    json_object_set_new(o, "name", str_or_null(u->name));
    json_object_set_new(o, "email", json_string(u->email ? u->email : ""));
    json_object_set_new(o, "role", str_or_null(u->role));
    json_object_set_new(o, "provider", str_or_null(u->provider));
    api__json_set_time(o, "created_at", u->created_at_ms);
    api__json_set_time(o, "last_login_at", u->last_login_ms);
    return o;
}

json_t *
api__token_json(const struct store_token *t)
{
    json_t *o = json_object();

    json_object_set_new(o, "id", json_integer(t->id));
    json_object_set_new(o, "name", str_or_null(t->name));
    json_object_set_new(o, "user", str_or_null(t->user));
    json_object_set_new(o, "scope", str_or_null(t->role));
    api__json_set_time(o, "created_at", t->created_at_ms);
    api__json_set_time(o, "expires_at", t->expires_at_ms);
    api__json_set_time(o, "last_used_at", t->last_used_ms);
    return o;
}
