/*
 * api/api_links.c - POST /api/v1/envs/{name}/links: a share link, a signed
 * and expiring URL that opens one environment without signing in.
 *
 * The link is not stored: it is auth_link_make()'s string (environment id,
 * name, expiry and the time it was made under the server's key), and the
 * gateway honours it on that environment's service hosts (/_eph/link?t=...)
 * only while the environment's visibility is `link`. So sharing a `team`
 * environment makes it `link` (its own "env.visibility" event), a `private`
 * one is refused, and setting the visibility back to team or private
 * withdraws every link at once: the store records when (links_since_ms), and
 * the gateway refuses links made at or before that time even once the
 * environment is `link` again. Each link made is recorded as an "env.share"
 * event.
 */
#include "api/api_int.h"

#include <stdio.h>
#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

#define LINK_PATH "_eph/link?t=" /* after the service URL, which ends with '/' */

/*
 * The service whose URL the link opens: `wanted`, or the first one with a
 * URL. NULL after answering 404 (no such service) or 409 (no URL).
 */
static const struct env_svc *
pick_service(struct api_call *call, const struct env *env, const char *wanted)
{
    struct spec *spec = NULL;
    struct eph_err err = {0};
    const struct env_svc *found = NULL;

    /* A template that no longer parses: every service counts as exposed, as
     * in the environment's JSON. */
    if (env->template_yaml)
        spec_parse(env->template_yaml, strlen(env->template_yaml), "ephemera.yaml", &spec, &err);
    for (size_t i = 0; i < env->n_services && found == NULL; i++) {
        const struct env_svc *svc = &env->services[i];
        int idx = spec ? spec_service_index(spec, svc->name) : -1;
        bool exposed = idx < 0 || spec->services[idx].expose;

        if (wanted && strcmp(svc->name, wanted) != 0)
            continue;
        if (exposed)
            found = svc;
        else if (wanted)
            api__reply_error(call->x, 409,
                             "service '%s' of environment '%s' has no URL (expose: false)",
                             svc->name, env->name);
        if (wanted)
            break;
    }
    spec_free(spec);
    if (found == NULL && wanted && env_svc_find(env, wanted) == NULL)
        api__reply_error(call->x, 404, "service '%.64s' not found in environment '%s'", wanted,
                         env->name);
    else if (found == NULL && wanted == NULL)
        api__reply_error(call->x, 409, "environment '%s' has no service with a URL to share",
                         env->name);
    return found;
}

void
api__links_create(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    size_t len = 0;
    const char *body = http_body(x, &len);
    struct api_link_create req = {0};
    struct env *env = NULL;
    const struct env_svc *svc;
    struct eph_err err = {0};
    struct auth_link link = {0};
    char value[AUTH_SIGNED_MAX] = "";
    char url[512];
    char *target = NULL;
    char *detail = NULL;
    char *full = NULL;
    json_t *o;
    int rc;

    rc = api__parse_link_create(body, len, api->cfg->max_ttl_s, &req, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    env = api__env_changeable(call, params->name);
    if (env == NULL)
        goto out;
    if (env->desired == ENV_WANT_DELETED || env->phase == ENV_PHASE_DELETING ||
        env->phase == ENV_PHASE_DELETED) {
        api__reply_error(x, 409, "environment '%s' is being deleted", env->name);
        goto out;
    }
    if (env->visibility == VIS_PRIVATE) {
        api__reply_error(x, 409, "environment '%s' is private: make it team or link first",
                         env->name);
        goto out;
    }
    svc = pick_service(call, env, req.service);
    if (svc == NULL)
        goto out;
    if (api->hooks.service_url == NULL) {
        api__reply_error(x, 503, "this server has no gateway URLs to share");
        goto out;
    }
    api->hooks.service_url(api->hooks.arg, svc->name, env->name, url, sizeof(url));
    link.env_id = env->id;
    snprintf(link.env_name, sizeof(link.env_name), "%s", env->name);
    link.issued_ms = time_wall_ms();
    /* After the last withdrawal, even in the millisecond it happened or with
     * a wall clock set back since: a new link must not be born withdrawn. */
    if (link.issued_ms <= env->links_since_ms)
        link.issued_ms = env->links_since_ms + 1;
    link.expires_ms = time_wall_ms() + req.ttl_s * 1000;
    rc = auth_link_make(&api->key, &link, value);
    if (rc < 0) {
        eph_err_set(&err, EPH_EINTERNAL, "cannot sign a link for environment '%s'", env->name);
        api__reply_failure(x, EPH_EINTERNAL, &err);
        goto out;
    }
    if (env->visibility == VIS_TEAM) {
        rc = store_env_set_visibility(api->st, env->id, VIS_LINK, &call->actor, &err);
        if (rc < 0) {
            api__reply_failure(x, rc, &err);
            goto out;
        }
        log_info("env visibility changed", "env=%s from=team to=link by=%s", env->name,
                 call->actor_name);
        rec_kick(api->rec); /* the gateway honours links only on `link` environments */
    }
    /* Recorded before it is handed out: no link exists that the log lacks. */
    target = xasprintf("env/%s", env->name);
    detail = xasprintf("link for %s", req.ttl);
    rc = store_event_append(api->st, &call->actor, "env.share", target, detail, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    log_info("env shared", "env=%s service=%s ttl_s=%lld by=%s", env->name, svc->name,
             (long long)req.ttl_s, call->actor_name);
    full = xasprintf("%s%s%s", url, url[0] && url[strlen(url) - 1] == '/' ? "" : "/", LINK_PATH);
    o = json_pack("{s:s+, s:s, s:s, s:s}", "url", full, value, "env", env->name, "service",
                  svc->name, "visibility", visibility_name(VIS_LINK));
    api__json_set_time(o, "expires_at", link.expires_ms);
    api__reply_json(x, 201, o);
out:
    free(full);
    free(target);
    free(detail);
    env_free(env);
    api__link_create_release(&req);
    api__call_free(call);
}
