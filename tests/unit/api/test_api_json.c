/*
 * tests/unit/api/test_api_json.c - records rendered exactly as docs/api.md
 * shows them: environments with their services, sleep, usage and limits,
 * projects, events, users and tokens.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "api/api_int.h"
#include "util/xmalloc.h"

#define T0 1795341600000LL /* 2026-11-22T10:00:00Z */

static const char template_yaml[] = "version: 1\n"
                                    "services:\n"
                                    "  db:\n"
                                    "    run: redis-server --port $PORT\n"
                                    "    expose: false\n"
                                    "  api:\n"
                                    "    run: python3 app.py\n"
                                    "  ext:\n"
                                    "    upstream: http://${params.dataset}.internal:9/\n"
                                    "params:\n"
                                    "  dataset: { default: natural }\n";

/* The gateway's formatter, as serve.c hands it over. */
static void
fake_service_url(void *arg, const char *service, const char *env, char *out, size_t size)
{
    snprintf(out, size, "http://%s.%s.%s:8080/", service, env, (const char *)arg);
}

static const struct api_hooks hooks = {.service_url = fake_service_url, .arg = "localhost"};

static struct env *
sample_env(void)
{
    struct env *env = env_new();

    env->id = 7;
    env->name = xstrdup("fx");
    env->project = xstrdup("shop");
    env->ref = xstrdup("feature-x");
    env->commit = xstrdup("3f2c1d0aa1b2c3d4e5f60718293a4b5c6d7e8f90");
    env->owner = xstrdup("admin");
    env->template_yaml = xstrdup(template_yaml);
    env->n_params = 1;
    env->params = xcalloc(1, sizeof(struct env_param));
    env->params[0].name = xstrdup("dataset");
    env->params[0].value = xstrdup("edge-cases");
    env->created_at_ms = T0;
    env->expires_at_ms = T0 + 2 * 3600 * 1000;
    env->desired = ENV_WANT_RUNNING;
    env->phase = ENV_PHASE_READY;
    env->phase_at_ms = T0 + 5000;
    env->ready_at_ms = 0;
    env->n_services = 3;
    env->services = xcalloc(3, sizeof(struct env_svc));
    env->services[0].name = xstrdup("db");
    env->services[0].port = 20000;
    env->services[0].state = SVC_STATE_HEALTHY;
    env->services[0].pid = 4241;
    env->services[0].started_at_ms = T0 + 1000;
    env->services[1].name = xstrdup("api");
    env->services[1].port = 20001;
    env->services[1].state = SVC_STATE_RESTARTING;
    env->services[1].restarts = 2;
    env->services[1].reason = xstrdup("exited with status 1");
    env->services[2].name = xstrdup("ext");
    env->services[2].port = 0;
    env->services[2].state = SVC_STATE_HEALTHY;
    return env;
}

static const char want_env[] =
    "{\"name\": \"fx\", \"project\": \"shop\", \"ref\": \"feature-x\","
    " \"commit\": \"3f2c1d0aa1b2c3d4e5f60718293a4b5c6d7e8f90\", \"owner\": \"admin\","
    " \"visibility\": \"team\","
    " \"desired\": \"running\", \"phase\": \"ready\", \"reason\": null,"
    " \"params\": {\"dataset\": \"edge-cases\"},"
    " \"created_at\": \"2026-11-22T10:00:00Z\", \"created_at_ms\": 1795341600000,"
    " \"expires_at\": \"2026-11-22T12:00:00Z\", \"expires_at_ms\": 1795348800000,"
    " \"phase_at\": \"2026-11-22T10:00:05Z\", \"phase_at_ms\": 1795341605000,"
    " \"ready_at\": null, \"ready_at_ms\": 0,"
    " \"services\": ["
    "  {\"name\": \"db\", \"port\": 20000, \"url\": null,"
    "   \"internal_url\": \"http://127.0.0.1:20000\", \"state\": \"healthy\", \"pid\": 4241,"
    "   \"restarts\": 0, \"reason\": null,"
    "   \"started_at\": \"2026-11-22T10:00:01Z\", \"started_at_ms\": 1795341601000},"
    "  {\"name\": \"api\", \"port\": 20001, \"url\": \"http://api.fx.localhost:8080/\","
    "   \"internal_url\": \"http://127.0.0.1:20001\","
    "   \"state\": \"restarting\", \"pid\": 0, \"restarts\": 2,"
    "   \"reason\": \"exited with status 1\", \"started_at\": null, \"started_at_ms\": 0},"
    "  {\"name\": \"ext\", \"port\": 0, \"url\": \"http://ext.fx.localhost:8080/\","
    "   \"internal_url\": \"http://edge-cases.internal:9/\", \"state\": \"healthy\", \"pid\": 0,"
    "   \"restarts\": 0, \"reason\": null, \"started_at\": null, \"started_at_ms\": 0}"
    " ],"
    " \"sleep\": {\"keep\": false, \"cause\": null, \"last_activity\": null,"
    "   \"last_transition\": null},"
    " \"limits\": {\"memory\": null, \"memory_bytes\": null, \"cpu\": null,"
    "   \"cpu_millis\": null, \"pids\": null}}";

static void
expect_json(json_t *got, const char *want_text)
{
    json_error_t jerr;
    json_t *want = json_loads(want_text, 0, &jerr);
    char *got_text = json_dumps(got, JSON_SORT_KEYS);

    cr_assert_not_null(want, "bad expectation: %s", jerr.text);
    cr_expect(json_equal(got, want), "got %s", got_text);
    free(got_text);
    json_decref(want);
    json_decref(got);
}

Test(api_json, renders_an_environment_as_the_docs_show_it)
{
    struct env *env = sample_env();

    expect_json(api__env_json_parsed(env, &hooks), want_env);
    env_free(env);
}

Test(api_json, shows_gateway_urls_for_every_service_when_the_template_is_unreadable)
{
    struct env *env = sample_env();
    json_t *o;
    json_t *svcs;

    free(env->template_yaml);
    env->template_yaml = xstrdup("version: 99\n");
    o = api__env_json_parsed(env, &hooks);
    svcs = json_object_get(o, "services");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(svcs, 0), "url")),
                     "http://db.fx.localhost:8080/", "nothing says expose: false");
    cr_expect_str_eq(json_string_value(json_object_get(json_array_get(svcs, 0), "internal_url")),
                     "http://127.0.0.1:20000");
    cr_expect(json_is_null(json_object_get(json_array_get(svcs, 2), "internal_url")),
              "an upstream's URL is in the template");
    json_decref(o);
    env_free(env);
}

Test(api_json, has_no_gateway_urls_without_a_formatter)
{
    struct env *env = sample_env();
    json_t *o = api__env_json_parsed(env, NULL);
    json_t *api = json_array_get(json_object_get(o, "services"), 1);

    cr_expect(json_is_null(json_object_get(api, "url")));
    cr_expect_str_eq(json_string_value(json_object_get(api, "internal_url")),
                     "http://127.0.0.1:20001");
    json_decref(o);
    env_free(env);
}

Test(api_json, takes_the_client_address_the_gateway_appended_to_x_forwarded_for)
{
    static const struct { const char *xff, *want; } cases[] = {
        {"203.0.113.7", "203.0.113.7"},
        {"10.0.0.1, 203.0.113.7", "203.0.113.7"}, /* a client's own entry comes first */
        {"spoofed,  2001:db8::1 ", "2001:db8::1"},
        {"10.0.0.1,", ""},
        {"10.0.0.1, <script>", ""},
        {"", ""},
        {NULL, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];

        api__forwarded_client(cases[i].xff, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].want, "case %zu", i);
    }
}

Test(api_json, renders_a_deleting_environment_with_its_reason)
{
    struct env *env = sample_env();
    json_t *o;

    env->desired = ENV_WANT_DELETED;
    env->phase = ENV_PHASE_FAILED;
    env->reason = xstrdup("service 'api' failed");
    env->ready_at_ms = T0 + 3000;
    o = api__env_json(env, NULL, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(o, "desired")), "deleted");
    cr_expect_str_eq(json_string_value(json_object_get(o, "phase")), "failed");
    cr_expect_str_eq(json_string_value(json_object_get(o, "reason")), "service 'api' failed");
    cr_expect_str_eq(json_string_value(json_object_get(o, "ready_at")), "2026-11-22T10:00:03Z");
    cr_expect_eq(json_integer_value(json_object_get(o, "ready_at_ms")), T0 + 3000);
    json_decref(o);
    env_free(env);
}

Test(api_json, renders_projects_and_events)
{
    struct project p = {
        .id = 1,
        .name = "shop",
        .repo = "/srv/git/shop.git",
        .created_by = "admin",
        .created_at_ms = T0,
    };
    struct event ev = {
        .id = 17,
        .at_ms = T0,
        .actor = "admin",
        .source = "127.0.0.1",
        .action = "env.create",
        .target = "env/fx",
        .detail = "project shop at feature-x (3f2c1d0)",
    };

    expect_json(api__project_json(&p),
                "{\"name\": \"shop\", \"repo\": \"/srv/git/shop.git\", \"created_by\": \"admin\","
                " \"created_at\": \"2026-11-22T10:00:00Z\", \"created_at_ms\": 1795341600000}");
    expect_json(api__event_json(&ev),
                "{\"id\": 17, \"at\": \"2026-11-22T10:00:00Z\", \"at_ms\": 1795341600000,"
                " \"actor\": \"admin\", \"source\": \"127.0.0.1\", \"action\": \"env.create\","
                " \"target\": \"env/fx\", \"detail\": \"project shop at feature-x (3f2c1d0)\"}");
}

Test(api_json, names_the_visibility_of_an_environment)
{
    static const enum visibility vis[] = {VIS_TEAM, VIS_PRIVATE, VIS_LINK};
    static const char *const want[] = {"team", "private", "link"};

    for (size_t i = 0; i < ARRAY_LEN(vis); i++) {
        struct env *env = sample_env();
        json_t *o;

        env->visibility = vis[i];
        o = api__env_json(env, NULL, NULL);
        cr_expect_str_eq(json_string_value(json_object_get(o, "visibility")), want[i]);
        json_decref(o);
        env_free(env);
    }
}

Test(api_json, renders_users_without_their_password_hash)
{
    struct user u = {
        .id = 3,
        .name = "alice",
        .email = "alice@example.com",
        .role = "member",
        .provider = "local",
        .subject = "",
        .password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA",
        .created_at_ms = T0,
        .last_login_ms = 0,
    };
    struct user oidc = {
        .name = "bob",
        .email = NULL,
        .role = "viewer",
        .provider = "oidc:corp",
        .subject = "1234",
        .created_at_ms = T0,
        .last_login_ms = T0 + 60000,
    };

    expect_json(api__user_json(&u),
                "{\"name\": \"alice\", \"email\": \"alice@example.com\", \"role\": \"member\","
                " \"provider\": \"local\","
                " \"created_at\": \"2026-11-22T10:00:00Z\", \"created_at_ms\": 1795341600000,"
                " \"last_login_at\": null, \"last_login_at_ms\": 0}");
    expect_json(api__user_json(&oidc),
                "{\"name\": \"bob\", \"email\": \"\", \"role\": \"viewer\","
                " \"provider\": \"oidc:corp\","
                " \"created_at\": \"2026-11-22T10:00:00Z\", \"created_at_ms\": 1795341600000,"
                " \"last_login_at\": \"2026-11-22T10:01:00Z\","
                " \"last_login_at_ms\": 1795341660000}");
}

Test(api_json, renders_tokens_without_their_hash)
{
    struct store_token t = {
        .id = 7,
        .name = "ci",
        .hash = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        .role = "viewer",
        .user = "alice",
        .created_at_ms = T0,
        .expires_at_ms = T0 + 86400000,
        .last_used_ms = 0,
    };

    expect_json(api__token_json(&t),
                "{\"id\": 7, \"name\": \"ci\", \"user\": \"alice\", \"scope\": \"viewer\","
                " \"created_at\": \"2026-11-22T10:00:00Z\", \"created_at_ms\": 1795341600000,"
                " \"expires_at\": \"2026-11-23T10:00:00Z\", \"expires_at_ms\": 1795428000000,"
                " \"last_used_at\": null, \"last_used_at_ms\": 0}");
}

/* ------------------------------------------------------------- sleep, usage, limits */

/* The reconciler's and the driver's answers, as serve.c would wire them. */
static bool
fake_sleep_info(void *arg, int64_t env_id, struct rec_sleep_info *out)
{
    (void)arg;
    if (env_id != 7)
        return false;
    out->sleep_after_s = 1800;
    out->keep = false;
    out->idle_ms = 240000;
    out->next_sleep_ms = T0 + 26 * 60 * 1000;
    out->next_wake_ms = 0;
    out->wake_allowed = true;
    snprintf(out->schedule, sizeof(out->schedule), "Mon-Fri 08:00-20:00 Europe/Madrid");
    return true;
}

static void
fake_usage(void *arg, int64_t env_id, struct drv_usage *out)
{
    (void)arg;
    (void)env_id;
    out->memory_bytes = 35 * 1024 * 1024;
    out->cpu_usec = 1250000;
    out->limits_enforced = false;
    snprintf(out->note, sizeof(out->note), "cgroup v2 memory controller not available");
}

static const struct api_hooks sleep_hooks = {.sleep_info = fake_sleep_info, .usage = fake_usage};

Test(api_json, shows_sleep_usage_and_limits_of_an_awake_environment)
{
    struct env *env = sample_env();
    json_t *o;

    env->last_activity_ms = T0 + 60000;
    env->last_activity = xstrdup("request web");
    env->slept_at_ms = T0 - 3600000;
    env->woke_at_ms = T0 - 60000;
    env->transition_reason = xstrdup("request web");
    env->sleep_cause = xstrdup("");
    env->limit_memory_bytes = 512LL << 20;
    env->limit_cpu_millis = 500;
    env->limit_pids = 64;
    o = api__env_json_parsed(env, &sleep_hooks);
    expect_json(json_incref(json_object_get(o, "sleep")),
                "{\"sleep_after\": \"30m\", \"sleep_after_s\": 1800, \"keep\": false,"
                " \"cause\": null, \"idle_ms\": 240000,"
                " \"last_activity\": {\"at\": \"2026-11-22T10:01:00Z\", \"at_ms\": 1795341660000,"
                "   \"what\": \"request web\"},"
                " \"next_sleep_at\": \"2026-11-22T10:26:00Z\", \"next_sleep_at_ms\": 1795343160000,"
                " \"next_wake_at\": null, \"next_wake_at_ms\": 0,"
                " \"schedule\": \"Mon-Fri 08:00-20:00 Europe/Madrid\", \"wake_allowed\": true,"
                " \"last_transition\": {\"kind\": \"wake\", \"reason\": \"request web\","
                "   \"at\": \"2026-11-22T09:59:00Z\", \"at_ms\": 1795341540000}}");
    expect_json(json_incref(json_object_get(o, "usage")),
                "{\"memory_bytes\": 36700160, \"cpu_seconds\": 1.25, \"limits_enforced\": false,"
                " \"note\": \"cgroup v2 memory controller not available\"}");
    expect_json(json_incref(json_object_get(o, "limits")),
                "{\"memory\": \"512Mi\", \"memory_bytes\": 536870912, \"cpu\": \"0.5\","
                " \"cpu_millis\": 500, \"pids\": 64}");
    json_decref(o);
    env_free(env);
}

Test(api_json, shows_why_an_environment_sleeps_and_when_it_fell_asleep)
{
    struct env *env = sample_env();
    json_t *o, *last;

    env->desired = ENV_WANT_ASLEEP;
    env->phase = ENV_PHASE_SLEEPING;
    env->sleep_cause = xstrdup("idle");
    env->transition_reason = xstrdup("idle for 30m (last: request web)");
    env->slept_at_ms = T0;
    env->woke_at_ms = T0 - 7200000;
    o = api__env_json_parsed(env, NULL);
    cr_expect_str_eq(json_string_value(json_object_get(json_object_get(o, "sleep"), "cause")),
                     "idle");
    last = json_object_get(json_object_get(o, "sleep"), "last_transition");
    cr_expect_str_eq(json_string_value(json_object_get(last, "kind")), "sleep");
    cr_expect_str_eq(json_string_value(json_object_get(last, "reason")),
                     "idle for 30m (last: request web)");
    cr_expect_eq(json_integer_value(json_object_get(last, "at_ms")), T0);
    cr_expect_null(json_object_get(json_object_get(o, "sleep"), "idle_ms"),
                   "no reconciler: no timers");
    cr_expect_null(json_object_get(o, "usage"), "no driver: no usage");
    json_decref(o);

    /* Asked to sleep, processes still stopping: a sleep without a time yet. */
    env->phase = ENV_PHASE_READY;
    env->slept_at_ms = T0 - 86400000;
    env->woke_at_ms = T0 - 7200000;
    o = api__env_json_parsed(env, NULL);
    last = json_object_get(json_object_get(o, "sleep"), "last_transition");
    cr_expect_str_eq(json_string_value(json_object_get(last, "kind")), "sleep");
    cr_expect(json_is_null(json_object_get(last, "at")));
    json_decref(o);
    env_free(env);
}

Test(api_json, takes_the_templates_limits_for_records_without_their_own)
{
    struct env *env = sample_env();
    json_t *o;

    free(env->template_yaml);
    env->template_yaml = xstrdup("version: 1\n"
                                 "defaults:\n"
                                 "  limits: { memory: 256Mi, cpu: 1.5, pids: 100 }\n"
                                 "services:\n"
                                 "  api:\n"
                                 "    run: python3 app.py\n");
    o = api__env_json_parsed(env, NULL);
    expect_json(json_incref(json_object_get(o, "limits")),
                "{\"memory\": \"256Mi\", \"memory_bytes\": 268435456, \"cpu\": \"1.5\","
                " \"cpu_millis\": 1500, \"pids\": 100}");
    json_decref(o);
    env_free(env);
}
