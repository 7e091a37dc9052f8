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
