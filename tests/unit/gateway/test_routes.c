/*
 * tests/unit/gateway/test_routes.c - route snapshots and host patterns.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "gateway/routes.h"
#include "util/xmalloc.h"

static struct gw_routes *
sample_table(void)
{
    static const struct gw_route_service_in fx_services[] = {
        {.name = "web", .upstream_port = 21002, .expose = true, .state = SVC_STATE_HEALTHY},
        {.name = "api", .upstream_port = 21001, .expose = true, .state = SVC_STATE_STARTING},
        {.name = "db", .upstream_port = 21000, .expose = false, .state = SVC_STATE_HEALTHY},
    };
    static const struct gw_route_service_in pr_services[] = {
        {.name = "web", .upstream_host = "10.0.0.5", .upstream_port = 80, .expose = true,
         .state = SVC_STATE_HEALTHY},
    };
    const struct gw_route_env_in envs[] = {
        {.name = "pr-42", .phase = ENV_PHASE_READY, .services = pr_services, .n_services = 1},
        {.name = "fx", .phase = ENV_PHASE_STARTING, .reason = NULL, .services = fx_services,
         .n_services = 3},
    };
    return gw_routes_build(envs, 2, 7);
}

Test(routes, finds_services_by_name_ignoring_case)
{
    struct gw_routes *r = sample_table();
    const struct gw_route_service *s = gw_routes_find(r, "WEB", 3, "Fx", 2);

    cr_assert_not_null(s);
    cr_expect_str_eq(s->name, "web");
    cr_expect_str_eq(s->env_name, "fx");
    cr_expect_str_eq(s->upstream_key, "127.0.0.1:21002");
    cr_expect(s->routable);
    cr_expect_eq(s->env->phase, ENV_PHASE_STARTING);
    s = gw_routes_find(r, "web", 3, "pr-42", 5);
    cr_assert_not_null(s);
    cr_expect_str_eq(s->upstream_key, "10.0.0.5:80");
    cr_expect_eq(r->version, 7);
    gw_routes_unref(r);
}

Test(routes, an_unhealthy_service_is_known_but_not_routable)
{
    struct gw_routes *r = sample_table();
    const struct gw_route_service *s = gw_routes_find(r, "api", 3, "fx", 2);

    cr_assert_not_null(s);
    cr_expect(!s->routable);
    cr_expect_eq(s->state, SVC_STATE_STARTING);
    gw_routes_unref(r);
}

Test(routes, unexposed_and_unknown_services_are_absent)
{
    struct gw_routes *r = sample_table();

    cr_expect_null(gw_routes_find(r, "db", 2, "fx", 2));
    cr_expect_null(gw_routes_find(r, "web", 3, "nope", 4));
    cr_expect_null(gw_routes_find(r, "we", 2, "bfx", 3), "names do not run together");
    cr_expect_null(gw_routes_find(NULL, "web", 3, "fx", 2));
    gw_routes_unref(r);
}

Test(routes, copies_the_sleep_fields_of_each_environment)
{
    static const struct gw_route_service_in web[] = {
        {.name = "web", .upstream_port = 21002, .expose = true, .state = SVC_STATE_STOPPED},
    };
    char message[] = "fx is asleep outside office hours (awake Mon-Fri 08:00-20:00 UTC)";
    struct gw_route_env_in envs[] = {
        {.id = 1, .name = "fx", .phase = ENV_PHASE_SLEEPING, .services = web, .n_services = 1,
         .hold_requests = true},
        {.id = 2, .name = "night", .phase = ENV_PHASE_SLEEPING, .services = web, .n_services = 1,
         .asleep_message = message},
        {.id = 3, .name = "up", .phase = ENV_PHASE_READY, .services = web, .n_services = 1},
    };
    struct gw_routes *r = gw_routes_build(envs, 3, 1);
    const struct gw_route_env *fx = gw_routes_find_env(r, "fx", 2);
    const struct gw_route_env *night = gw_routes_find_env(r, "night", 5);
    const struct gw_route_env *up = gw_routes_find_env(r, "up", 2);

    message[0] = 'X'; /* the table holds a copy */
    cr_assert(fx && night && up);
    cr_expect(fx->hold_requests);
    cr_expect_null(fx->asleep_message);
    cr_expect(!night->hold_requests);
    cr_assert_not_null(night->asleep_message);
    cr_expect_str_eq(night->asleep_message,
                     "fx is asleep outside office hours (awake Mon-Fri 08:00-20:00 UTC)");
    cr_expect(!up->hold_requests);
    cr_expect_null(up->asleep_message);
    cr_expect_null(fx->activity, "slots are filled in by gw_publish only");
    gw_routes_unref(r);
}

Test(routes, copies_who_may_see_each_environment)
{
    static const struct gw_route_service_in web[] = {
        {.name = "web", .upstream_port = 21002, .expose = true, .state = SVC_STATE_HEALTHY},
    };
    char owner[] = "alice";
    struct gw_route_env_in envs[] = {
        {.id = 7,
         .name = "shared",
         .owner = owner,
         .visibility = VIS_LINK,
         .links_since_ms = 1700000000000,
         .phase = ENV_PHASE_READY,
         .services = web,
         .n_services = 1},
        {.id = 8, .name = "plain", .phase = ENV_PHASE_READY, .services = web, .n_services = 1},
    };
    struct gw_routes *r = gw_routes_build(envs, 2, 1);
    const struct gw_route_env *shared = gw_routes_find_env(r, "shared", 6);
    const struct gw_route_env *plain = gw_routes_find_env(r, "plain", 5);

    owner[0] = 'X'; /* the table holds a copy */
    cr_assert(shared && plain);
    cr_expect_eq(shared->id, 7);
    cr_expect_str_eq(shared->owner, "alice");
    cr_expect_eq(shared->visibility, VIS_LINK);
    cr_expect_eq(shared->links_since_ms, 1700000000000, "links made before it are withdrawn");
    cr_expect_str_eq(plain->owner, "", "no owner");
    cr_expect_eq(plain->visibility, VIS_TEAM);
    cr_expect_eq(plain->links_since_ms, 0);
    gw_routes_unref(r);
}

Test(routes, lists_environments_by_name)
{
    struct gw_routes *r = sample_table();
    const struct gw_route_env *e;

    cr_assert_eq(r->n_envs, 2);
    cr_expect_str_eq(r->envs[0].name, "fx");
    cr_expect_str_eq(r->envs[1].name, "pr-42");
    e = gw_routes_find_env(r, "PR-42", 5);
    cr_assert_not_null(e);
    cr_expect_eq(e->n_services, 1);
    cr_expect_null(gw_routes_find_env(r, "zz", 2));
    gw_routes_unref(r);
}

Test(routes, references_keep_a_table_alive)
{
    struct gw_routes *r = sample_table();

    cr_expect_eq(gw_routes_ref(r), r);
    gw_routes_unref(r);
    cr_expect_not_null(gw_routes_find(r, "web", 3, "fx", 2));
    gw_routes_unref(r); /* LeakSanitizer checks that this one frees */
}

Test(routes, ten_thousand_routes_are_all_found)
{
    enum { N = 10000 };
    struct gw_route_env_in *envs = xcalloc(N, sizeof(*envs));
    struct gw_route_service_in *svcs = xcalloc(N, sizeof(*svcs));
    char (*names)[16] = xcalloc(N, 16);

    for (int i = 0; i < N; i++) {
        snprintf(names[i], 16, "env%d", i);
        svcs[i] = (struct gw_route_service_in){.name = "svc", .upstream_port = 9000,
                                               .expose = true, .state = SVC_STATE_HEALTHY};
        envs[i] = (struct gw_route_env_in){.name = names[i], .services = &svcs[i],
                                           .n_services = 1};
    }
    struct gw_routes *r = gw_routes_build(envs, N, 1);
    for (int i = 0; i < N; i++)
        cr_assert_not_null(gw_routes_find(r, "svc", 3, names[i], strlen(names[i])), "%d", i);
    gw_routes_unref(r);
    free(envs);
    free(svcs);
    free(names);
}

struct classified {
    enum gw_host_kind kind;
    char service[64];
    char env[64];
};

static struct classified
classify(const struct gw_host_pattern *p, const char *host)
{
    struct classified c = {0};
    const char *s = NULL, *e = NULL;
    size_t sl = 0, el = 0;

    c.kind = gw_host_classify(p, host, strlen(host), &s, &sl, &e, &el);
    if (c.kind == GW_HOST_SERVICE) {
        snprintf(c.service, sizeof(c.service), "%.*s", (int)sl, s);
        snprintf(c.env, sizeof(c.env), "%.*s", (int)el, e);
    }
    return c;
}

Test(host_pattern, classifies_the_default_pattern)
{
    struct gw_host_pattern p;
    struct eph_err err = {0};

    cr_assert_eq(gw_host_pattern_init(&p, "{service}.{env}.{domain}", "localhost", &err), 0,
                 "%s", err.msg);
    struct classified c = classify(&p, "web.fx.localhost:8080");
    cr_expect_eq(c.kind, GW_HOST_SERVICE);
    cr_expect_str_eq(c.service, "web");
    cr_expect_str_eq(c.env, "fx");
    c = classify(&p, "Web.PR-42.LocalHost");
    cr_expect_eq(c.kind, GW_HOST_SERVICE);
    cr_expect_str_eq(c.env, "PR-42");
    cr_expect_eq(classify(&p, "localhost:8080").kind, GW_HOST_CONTROL);
    cr_expect_eq(classify(&p, "127.0.0.1:8080").kind, GW_HOST_CONTROL);
    cr_expect_eq(classify(&p, "[::1]:8080").kind, GW_HOST_CONTROL);
    cr_expect_eq(classify(&p, "fx.localhost").kind, GW_HOST_UNKNOWN);
    cr_expect_eq(classify(&p, "a.b.c.localhost").kind, GW_HOST_UNKNOWN);
    cr_expect_eq(classify(&p, "web.fx.example.com").kind, GW_HOST_UNKNOWN);
    cr_expect_eq(classify(&p, "-web.fx.localhost").kind, GW_HOST_UNKNOWN);
    cr_expect_eq(classify(&p, "we_b.fx.localhost").kind, GW_HOST_UNKNOWN);
    cr_expect_eq(classify(&p, "").kind, GW_HOST_UNKNOWN);
    gw_host_pattern_release(&p);
}

Test(host_pattern, classifies_a_one_level_wildcard_pattern)
{
    struct gw_host_pattern p;
    struct eph_err err = {0};
    char url[128];

    cr_assert_eq(gw_host_pattern_init(&p, "{service}--{env}.{domain}", "preview.example.com",
                                      &err),
                 0, "%s", err.msg);
    struct classified c = classify(&p, "web--pr-42.preview.example.com");
    cr_expect_eq(c.kind, GW_HOST_SERVICE);
    cr_expect_str_eq(c.service, "web");
    cr_expect_str_eq(c.env, "pr-42");
    cr_expect_eq(classify(&p, "preview.example.com").kind, GW_HOST_CONTROL);
    cr_expect_eq(classify(&p, "web.pr-42.preview.example.com").kind, GW_HOST_UNKNOWN);
    gw_host_url(&p, "web", "pr-42", 443, url, sizeof(url));
    cr_expect_str_eq(url, "http://web--pr-42.preview.example.com:443/");
    gw_host_url(&p, "web", "pr-42", 80, url, sizeof(url));
    cr_expect_str_eq(url, "http://web--pr-42.preview.example.com/");
    gw_host_pattern_release(&p);
}

Test(host_pattern, env_first_patterns_work_too)
{
    struct gw_host_pattern p;
    struct eph_err err = {0};

    cr_assert_eq(gw_host_pattern_init(&p, "{env}-x-{service}.{domain}", "dev.test", &err), 0);
    struct classified c = classify(&p, "fx-x-web.dev.test");
    cr_expect_eq(c.kind, GW_HOST_SERVICE);
    cr_expect_str_eq(c.service, "web");
    cr_expect_str_eq(c.env, "fx");
    gw_host_pattern_release(&p);
}

Test(host_pattern, refuses_bad_patterns)
{
    static const struct { const char *pattern, *want; } bad[] = {
        {"{service}.{domain}",
         "host_pattern: '{service}.{domain}' must hold {service} and {env} once each (and may "
         "hold {domain})"},
        {"{service}{env}.{domain}",
         "host_pattern: '{service}{env}.{domain}' needs a separator between {service} and {env}"},
        {"{service}.{env}.{zone}", "host_pattern: '{service}.{env}.{zone}' holds an unknown "
                                   "{placeholder}"},
        {"{service}.{env}.{service}", "host_pattern: '{service}.{env}.{service}' must hold "
                                      "{service} and {env} once each (and may hold {domain})"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct gw_host_pattern p;
        struct eph_err err = {0};
        cr_expect_eq(gw_host_pattern_init(&p, bad[i].pattern, "localhost", &err), EPH_EINVAL);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
}
