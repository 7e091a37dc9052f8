/*
 * tests/unit/reconciler/test_reconciler.c - phase transitions, crash events,
 * expiry and deletion, driven through a scripted driver and a real store.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "reconciler/reconciler.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* A driver whose observations the test sets by hand. */
struct fake_driver {
    struct driver base;
    enum drv_prep prep;
    char prep_reason[256];
    struct drv_svc_status svc[4];
    int applies;
    int teardowns;
    int teardown_rc;   /* what teardown returns */
    int sweeps;
    size_t last_plan_services;
    char last_plan_order[64]; /* service names in plan order, comma-separated */
    char last_api_envp_port[64];
    char last_health[128];    /* "name=host:port" of services with a health host */
};

static int
fake_apply(struct driver *d, const struct drv_plan *plan, struct eph_err *err)
{
    struct fake_driver *f = (struct fake_driver *)d;

    f->applies++;
    f->last_plan_services = plan->n_services;
    f->last_plan_order[0] = '\0';
    f->last_health[0] = '\0';
    for (size_t i = 0; i < plan->n_services; i++) {
        strcat(f->last_plan_order, plan->services[i].name);
        if (i + 1 < plan->n_services)
            strcat(f->last_plan_order, ",");
        if (plan->services[i].health_host) {
            size_t used = strlen(f->last_health);
            snprintf(f->last_health + used, sizeof(f->last_health) - used, "%s=%s:%d ",
                     plan->services[i].name, plan->services[i].health_host,
                     plan->services[i].port);
        }
        if (strcmp(plan->services[i].name, "api") == 0) {
            for (char *const *e = plan->services[i].envp; *e; e++) {
                if (strncmp(*e, "DB_PORT=", 8) == 0)
                    snprintf(f->last_api_envp_port, sizeof(f->last_api_envp_port), "%s", *e);
            }
        }
    }
    return 0;
}

static void
fake_observe(struct driver *d, const struct drv_plan *plan, struct drv_status *st)
{
    struct fake_driver *f = (struct fake_driver *)d;

    st->prep = f->prep;
    snprintf(st->reason, sizeof(st->reason), "%s", f->prep_reason);
    for (size_t i = 0; i < plan->n_services && i < 4; i++)
        st->services[i] = f->svc[i];
}

static int
fake_teardown(struct driver *d, int64_t env_id, const char *name, struct eph_err *err)
{
    struct fake_driver *f = (struct fake_driver *)d;

    f->teardowns++;
    return f->teardown_rc;
}

static void
fake_sweep(struct driver *d)
{
    ((struct fake_driver *)d)->sweeps++;
}

static char *
fake_log_path(struct driver *d, int64_t env_id, const char *env_name, const char *service)
{
    return xasprintf("/logs/%s/%s.log", env_name, service);
}

static void
fake_close(struct driver *d, void (*done)(void *), void *arg)
{
    done(arg);
}

static const struct driver_ops fake_ops = {
    .name = "fake",
    .apply = fake_apply,
    .observe = fake_observe,
    .teardown = fake_teardown,
    .sweep = fake_sweep,
    .log_path = fake_log_path,
    .close = fake_close,
};

static const char *template_two =
    "version: 1\n"
    "services:\n"
    "  api:\n"
    "    run: ./api --db $DB_PORT\n"
    "    depends_on: [db]\n"
    "  db:\n"
    "    run: ./db\n";

struct fixture {
    char dir[64];
    struct config cfg;
    struct store *st;
    struct fake_driver drv;
    uv_loop_t loop;
    struct reconciler *rec;
};

static struct fixture fx;

static void
setup(void)
{
    struct eph_err err = {0};
    char *db;

    memset(&fx, 0, sizeof(fx));
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/eph-test-rec-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.dir));
    config_init(&fx.cfg);
    config_set(&fx.cfg, "data_dir", fx.dir, &err);
    cr_assert_eq(config_validate(&fx.cfg, &err), 0, "%s", err.msg);
    db = config_store_path(&fx.cfg);
    cr_assert_eq(store_open(db, &fx.st, &err), 0, "%s", err.msg);
    free(db);
    fx.drv.base.ops = &fake_ops;
    fx.drv.teardown_rc = 0;
    uv_loop_init(&fx.loop);
    cr_assert_eq(rec_new(&fx.loop, fx.st, &fx.drv.base, &fx.cfg, &fx.rec, &err), 0);
}

static void
on_closed(void *arg)
{
    *(bool *)arg = true;
}

static void
teardown(void)
{
    bool closed = false;

    rec_close(fx.rec, on_closed, &closed);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_expect(closed);
    cr_expect_eq(uv_loop_close(&fx.loop), 0);
    store_close(fx.st);
    config_release(&fx.cfg);
    fs_rm_rf(fx.dir);
}

/* Creates an environment whose services (NULL-terminated names) get ports
 * 21001, 21002, ... in that order; a name ending in '*' gets none (an upstream). */
static int64_t
create_env_with(const char *name, const char *yaml, int64_t expires_at_ms,
                const char *const *services)
{
    struct env *env = env_new();
    struct eph_err err = {0};
    struct store_actor actor = {.name = "tester", .source = "127.0.0.1"};
    int64_t id;
    size_t n = 0;

    while (services[n])
        n++;
    env->name = xstrdup(name);
    env->project = xstrdup("shop");
    env->ref = xstrdup("main");
    env->commit = xstrdup("0123456789012345678901234567890123456789");
    env->owner = xstrdup("tester");
    env->template_yaml = xstrdup(yaml);
    env->expires_at_ms = expires_at_ms;
    env->n_services = n;
    env->services = xcalloc(n, sizeof(struct env_svc));
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(services[i]);
        bool upstream = services[i][len - 1] == '*';

        env->services[i].name = xstrndup(services[i], upstream ? len - 1 : len);
        env->services[i].port = upstream ? 0 : 21001 + (int)i;
    }
    cr_assert_eq(store_env_create(fx.st, env, &actor, &err), 0, "%s", err.msg);
    id = env->id;
    env_free(env);
    return id;
}

static int64_t
create_env(const char *name, const char *yaml, int64_t expires_at_ms)
{
    struct env *env = env_new();
    struct eph_err err = {0};
    struct store_actor actor = {.name = "tester", .source = "127.0.0.1"};
    int64_t id;

    env->name = xstrdup(name);
    env->project = xstrdup("shop");
    env->ref = xstrdup("main");
    env->commit = xstrdup("0123456789012345678901234567890123456789");
    env->owner = xstrdup("tester");
    env->template_yaml = xstrdup(yaml);
    env->expires_at_ms = expires_at_ms;
    env->n_services = 2;
    env->services = xcalloc(2, sizeof(struct env_svc));
    env->services[0].name = xstrdup("api");
    env->services[0].port = 21001;
    env->services[1].name = xstrdup("db");
    env->services[1].port = 21002;
    cr_assert_eq(store_env_create(fx.st, env, &actor, &err), 0, "%s", err.msg);
    id = env->id;
    env_free(env);
    return id;
}

/* Runs one reconciler pass. */
static void
tick(void)
{
    rec_kick(fx.rec);
    uv_run(&fx.loop, UV_RUN_NOWAIT);
}

static struct env *
load(int64_t id)
{
    struct env *env = NULL;
    struct eph_err err = {0};

    cr_assert_eq(store_env_get_by_id(fx.st, id, &env, &err), 0, "%s", err.msg);
    return env;
}

static enum env_phase
phase_of(int64_t id)
{
    struct env *env = load(id);
    enum env_phase p = env->phase;

    env_free(env);
    return p;
}

static size_t
count_events(const char *action)
{
    struct event **evs = NULL;
    size_t n = 0, count = 0;
    struct eph_err err = {0};

    cr_assert_eq(store_event_list(fx.st, NULL, 0, 1000, &evs, &n, &err), 0);
    for (size_t i = 0; i < n; i++)
        count += strcmp(evs[i]->action, action) == 0;
    event_list_free(evs, n);
    return count;
}

TestSuite(reconciler, .init = setup, .fini = teardown, .timeout = 20);

Test(reconciler, walks_pending_preparing_starting_ready_with_an_event_per_change)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);

    cr_expect_eq(phase_of(id), ENV_PHASE_PENDING);
    fx.drv.prep = DRV_PREP_CHECKOUT;
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_PREPARING);
    cr_expect_eq(fx.drv.sweeps, 1, "the start-up sweep follows the first pass");

    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;   /* db comes first in the plan */
    fx.drv.svc[1].state = SVC_STATE_STARTING;
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_STARTING);

    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].pid = 4242;
    tick();
    struct env *env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_READY);
    cr_expect_gt(env->ready_at_ms, 0);
    cr_expect_eq(env_svc_find(env, "api")->pid, 4242);
    cr_expect_eq(env_svc_find(env, "api")->state, SVC_STATE_HEALTHY);
    env_free(env);

    tick();
    cr_expect_eq(count_events("env.phase"), 3, "pending->preparing->starting->ready");
    cr_expect_eq(fx.drv.sweeps, 1, "the sweep happens once");
}

Test(reconciler, plans_services_in_dependency_order_with_expanded_variables)
{
    create_env("fx", template_two, time_wall_ms() + 3600000);
    fx.drv.prep = DRV_PREP_CHECKOUT;
    tick();
    cr_expect_eq(fx.drv.last_plan_services, 2);
    cr_expect_str_eq(fx.drv.last_plan_order, "db,api");
    cr_expect_str_eq(fx.drv.last_api_envp_port, "DB_PORT=21002");
}

Test(reconciler, a_failed_service_fails_the_environment_with_its_reason)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct env *env;

    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_FAILED;
    snprintf(fx.drv.svc[1].reason, sizeof(fx.drv.svc[1].reason),
             "did not become healthy within 30s");
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_FAILED);
    cr_expect_str_eq(env->reason, "service 'api': did not become healthy within 30s");
    env_free(env);
}

Test(reconciler, a_failed_checkout_fails_the_environment)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct env *env;

    fx.drv.prep = DRV_PREP_FAILED;
    snprintf(fx.drv.prep_reason, sizeof(fx.drv.prep_reason), "checkout failed: disk full");
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_FAILED);
    cr_expect_str_eq(env->reason, "checkout failed: disk full");
    env_free(env);
}

Test(reconciler, a_crash_is_an_event_and_a_ready_environment_stays_ready)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);

    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
    fx.drv.svc[1].state = SVC_STATE_RESTARTING;
    fx.drv.svc[1].restarts = 1;
    snprintf(fx.drv.svc[1].reason, sizeof(fx.drv.svc[1].reason), "exited with status 1");
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
    cr_expect_eq(count_events("service.crash"), 1);
    struct env *env = load(id);
    cr_expect_eq(env_svc_find(env, "api")->restarts, 1);
    cr_expect_str_eq(env_svc_find(env, "api")->reason, "exited with status 1");
    env_free(env);
    tick();
    cr_expect_eq(count_events("service.crash"), 1, "the same crash is recorded once");
}

Test(reconciler, a_bad_stored_template_fails_the_environment_without_calling_the_driver)
{
    int64_t id = create_env("fx", "version: 1\nservices: {}\n", time_wall_ms() + 3600000);
    struct env *env;

    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_FAILED);
    cr_expect_not_null(env->reason);
    cr_expect_eq(fx.drv.applies, 0);
    env_free(env);
}

Test(reconciler, expires_an_environment_past_its_ttl_and_tears_it_down)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() - 1000);
    struct env *env;

    fx.drv.teardown_rc = EPH_EAGAIN;
    tick();
    env = load(id);
    cr_expect_eq(env->desired, ENV_WANT_DELETED);
    cr_expect_eq(env->phase, ENV_PHASE_DELETING);
    env_free(env);
    cr_expect_eq(count_events("env.expire"), 1);
    cr_expect_eq(fx.drv.applies, 0, "an expired environment is not started");

    fx.drv.teardown_rc = 0;
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_DELETED);
    env_free(env);
    int teardowns = fx.drv.teardowns;
    tick();
    cr_expect_eq(fx.drv.teardowns, teardowns, "a deleted environment is left alone");
}

Test(reconciler, deletes_on_request_and_frees_the_name)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct eph_err err = {0};
    struct store_actor actor = {.name = "tester", .source = "127.0.0.1"};

    cr_assert_eq(store_env_set_desired(fx.st, id, ENV_WANT_DELETED, &actor, "env.delete",
                                       "deleted by tester", &err), 0);
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_DELETED);
    create_env("fx", template_two, time_wall_ms() + 3600000);
}

Test(reconciler, gives_the_driver_log_path)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct env *env = load(id);
    char *path = rec_log_path(fx.rec, env, "api");

    cr_expect_str_eq(path, "/logs/fx/api.log");
    free(path);
    env_free(env);
}

Test(reconciler, keeps_counting_restarts_across_a_server_restart)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct eph_err err = {0};

    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].restarts = 2;
    tick();
    cr_expect_eq(count_events("service.crash"), 1, "two crashes between ticks: one event");

    /* A new server: a new reconciler and a driver counting from 0 again. */
    bool closed = false;
    rec_close(fx.rec, on_closed, &closed);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_assert(closed);
    cr_assert_eq(rec_new(&fx.loop, fx.st, &fx.drv.base, &fx.cfg, &fx.rec, &err), 0);
    fx.drv.svc[1].restarts = 0;
    tick();
    struct env *env = load(id);
    cr_expect_eq(env_svc_find(env, "api")->restarts, 2, "the stored count is kept");
    env_free(env);
    fx.drv.svc[1].restarts = 1;
    tick();
    env = load(id);
    cr_expect_eq(env_svc_find(env, "api")->restarts, 3);
    env_free(env);
    cr_expect_eq(count_events("service.crash"), 2);
}

/* ------------------------------------------------------------- the observer */

/* What the observer was last told, flattened to text, and how often. */
static int observed_calls;
static char observed[1024];

/* "fx:ready[web=127.0.0.1:21001/healthy ext=10.0.0.7:8081/pending db(hidden)...] ..." */
static void
remember_view(void *arg, const struct rec_env_view *envs, size_t n)
{
    size_t used = 0;

    (void)arg;
    observed_calls++;
    observed[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        used += (size_t)snprintf(observed + used, sizeof(observed) - used, "%s%s:%s%s%s[",
                                 i ? " " : "", envs[i].name, env_phase_name(envs[i].phase),
                                 envs[i].reason ? ":" : "",
                                 envs[i].reason ? envs[i].reason : "");
        for (size_t j = 0; j < envs[i].n_services; j++) {
            const struct rec_svc_view *v = &envs[i].services[j];
            used += (size_t)snprintf(observed + used, sizeof(observed) - used, "%s%s%s=%s:%d/%s",
                                     j ? " " : "", v->name, v->expose ? "" : "(hidden)",
                                     v->upstream_host, v->upstream_port,
                                     svc_state_name(v->state));
        }
        used += (size_t)snprintf(observed + used, sizeof(observed) - used, "]");
    }
}

static const char *template_routes =
    "version: 1\n"
    "params:\n"
    "  backend_port: { default: \"8081\" }\n"
    "services:\n"
    "  web:\n"
    "    run: ./web\n"
    "  db:\n"
    "    run: ./db\n"
    "    expose: false\n"
    "  ext:\n"
    "    upstream: http://10.0.0.7:${params.backend_port}\n"
    "    health: { http: /up }\n";

Test(reconciler, tells_the_observer_what_runs_where_at_the_end_of_every_tick)
{
    int64_t id;

    rec_set_observer(fx.rec, remember_view, NULL);
    id = create_env_with("fx", template_routes, time_wall_ms() + 3600000,
                         (const char *const[]){"web", "db", "ext*", NULL});
    fx.drv.prep = DRV_PREP_CHECKOUT;
    tick();
    cr_expect_eq(observed_calls, 1);
    cr_expect_str_eq(observed, "fx:preparing[web=127.0.0.1:21001/pending "
                               "db(hidden)=127.0.0.1:21002/pending ext=10.0.0.7:8081/pending]");
    cr_expect_str_eq(fx.drv.last_health, "ext=10.0.0.7:8081 ",
                     "the upstream is probed on its own host");

    /* Plan order is web, db, ext: file order, as nothing depends on anything. */
    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
    fx.drv.svc[2].state = SVC_STATE_HEALTHY;
    tick();
    cr_expect_eq(observed_calls, 2);
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
    cr_expect_str_eq(observed, "fx:ready[web=127.0.0.1:21001/healthy "
                               "db(hidden)=127.0.0.1:21002/healthy ext=10.0.0.7:8081/healthy]",
                     "the tick that makes it ready shows it ready");
}

Test(reconciler, routes_an_upstream_to_its_url_after_expanding_params)
{
    static const char *good = "version: 1\n"
                              "params:\n"
                              "  backend: { default: \"localhost:9000\" }\n"
                              "services:\n"
                              "  ext:\n"
                              "    upstream: http://${params.backend}/\n";
    static const char *bad = "version: 1\n"
                             "params:\n"
                             "  backend: { default: \"nope\" }\n"
                             "services:\n"
                             "  ext:\n"
                             "    upstream: http://${params.backend}\n";
    struct env *env;
    int64_t id;

    rec_set_observer(fx.rec, remember_view, NULL);
    create_env_with("fx", good, time_wall_ms() + 3600000, (const char *const[]){"ext*", NULL});
    id = create_env_with("fy", bad, time_wall_ms() + 3600000, (const char *const[]){"ext*", NULL});
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_FAILED);
    cr_expect_str_eq(env->reason, "service 'ext': upstream 'http://nope' must look like "
                                  "http://HOST:PORT");
    env_free(env);
    cr_expect_str_eq(observed,
                     "fx:preparing[ext=localhost:9000/pending] "
                     "fy:failed:service 'ext': upstream 'http://nope' must look like "
                     "http://HOST:PORT[ext=127.0.0.1:0/pending]");
}

Test(reconciler, shows_an_environment_being_deleted_as_stopped_then_not_at_all)
{
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct eph_err err = {0};
    struct store_actor actor = {.name = "tester", .source = "127.0.0.1"};

    rec_set_observer(fx.rec, remember_view, NULL);
    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
    tick();
    cr_expect_str_eq(observed, "fx:ready[api=127.0.0.1:21001/healthy db=127.0.0.1:21002/healthy]");

    cr_assert_eq(store_env_set_desired(fx.st, id, ENV_WANT_DELETED, &actor, "env.delete",
                                       "deleted by tester", &err), 0);
    fx.drv.teardown_rc = EPH_EAGAIN;
    tick();
    cr_expect_str_eq(observed,
                     "fx:deleting[api=127.0.0.1:21001/stopped db=127.0.0.1:21002/stopped]");
    fx.drv.teardown_rc = 0;
    tick();
    cr_expect_str_eq(observed, "", "a deleted environment has no routes");
    int calls = observed_calls;
    rec_set_observer(fx.rec, NULL, NULL);
    tick();
    cr_expect_eq(observed_calls, calls, "no observer, no calls");
}
