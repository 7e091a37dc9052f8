/*
 * tests/unit/reconciler/test_reconciler.c - phase transitions, crash events,
 * expiry and deletion, sleep (idle, schedule, manual, on request), wake and
 * reclaim, driven through a scripted driver and a real store. Schedules run
 * on the test clock (EPH_TEST_CLOCK_FILE); idleness on the wall clock, with
 * sleep_after 1s.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
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
    int suspends;
    int suspend_rc;    /* what suspend returns */
    struct drv_limits last_limits;
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
    f->last_limits = plan->limits;
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

static int
fake_suspend(struct driver *d, int64_t env_id, const char *name, struct eph_err *err)
{
    struct fake_driver *f = (struct fake_driver *)d;

    f->suspends++;
    if (f->suspend_rc == EPH_EAGAIN)
        return eph_err_set(err, EPH_EAGAIN, "environment '%s' is still stopping", name);
    return f->suspend_rc;
}

static void
fake_usage(struct driver *d, int64_t env_id, struct drv_usage *out)
{
    memset(out, 0, sizeof(*out));
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
    .suspend = fake_suspend,
    .usage = fake_usage,
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
    unsetenv("EPH_TEST_CLOCK_FILE");
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

/* ------------------------------------------------------------- sleep */

/* A new reconciler with settings changed (NULL-terminated key, value pairs),
 * as a server started with them would have. */
static void
reconfigure(const char *const *kv)
{
    struct eph_err err = {0};
    bool closed = false;

    rec_close(fx.rec, on_closed, &closed);
    uv_run(&fx.loop, UV_RUN_DEFAULT);
    cr_assert(closed);
    for (; *kv != NULL; kv += 2)
        cr_assert_eq(config_set(&fx.cfg, kv[0], kv[1], &err), 0, "%s: %s", kv[0], err.msg);
    cr_assert_eq(config_validate(&fx.cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(rec_new(&fx.loop, fx.st, &fx.drv.base, &fx.cfg, &fx.rec, &err), 0);
}

/* The schedule clock of the reconciler, through EPH_TEST_CLOCK_FILE. */
static void
set_clock(int64_t ms)
{
    char path[128], text[32];
    int n = snprintf(text, sizeof(text), "%" PRId64 "\n", ms);

    snprintf(path, sizeof(path), "%s/clock", fx.dir);
    cr_assert_eq(fs_write_atomic(path, text, (size_t)n, 0644), 0);
    setenv("EPH_TEST_CLOCK_FILE", path, 1);
}

#define SAT_2030_01_05_MS ((int64_t)1893801600000) /* 00:00 UTC, a Saturday */
#define HOUR_MS ((int64_t)3600000)
#define DAY_MS (24 * HOUR_MS)

/* Both services healthy, as the fake driver reports them. */
static void
all_healthy(void)
{
    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    fx.drv.svc[1].state = SVC_STATE_HEALTHY;
}

static enum env_desired
desired_of(int64_t id)
{
    struct env *env = load(id);
    enum env_desired d = env->desired;

    env_free(env);
    return d;
}

/* Ticks until the environment's desired state is `want`, for at most 5 s. */
static bool
tick_until_desired(int64_t id, enum env_desired want)
{
    int64_t deadline = time_mono_ms() + 5000;

    while (time_mono_ms() < deadline) {
        tick();
        if (desired_of(id) == want)
            return true;
        usleep(20000);
    }
    return false;
}

/* The detail of the last event with `action`, "" if none (a copy to free()). */
static char *
last_detail(const char *action, char *actor, size_t actor_size)
{
    struct event **evs = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    char *found = xstrdup("");

    cr_assert_eq(store_event_list(fx.st, NULL, 0, 1000, &evs, &n, &err), 0);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(evs[i]->action, action) == 0) {
            free(found);
            found = xstrdup(evs[i]->detail);
            if (actor)
                snprintf(actor, actor_size, "%s", evs[i]->actor);
        }
    }
    event_list_free(evs, n);
    return found;
}

static void
expect_last_event(const char *action, const char *actor, const char *detail)
{
    char who[64] = "";
    char *got = last_detail(action, who, sizeof(who));

    cr_expect_str_eq(got, detail, "%s detail", action);
    cr_expect_str_eq(who, actor, "%s actor", action);
    free(got);
}

/* The sleep fields of the view of the first environment, as last observed. */
static bool view_hold;
static char view_message[256];
static int view_calls;

static void
remember_sleep_view(void *arg, const struct rec_env_view *envs, size_t n)
{
    (void)arg;
    view_calls++;
    view_hold = n > 0 && envs[0].hold_requests;
    snprintf(view_message, sizeof(view_message), "%s",
             n > 0 && envs[0].asleep_message ? envs[0].asleep_message : "");
}

Test(reconciler, an_idle_environment_sleeps_suspended_and_a_request_wakes_it)
{
    int64_t id;
    struct env *env;

    reconfigure((const char *const[]){"sleep_after", "1s", NULL});
    rec_set_observer(fx.rec, remember_sleep_view, NULL);
    id = create_env("fx", template_two, time_wall_ms() + 3600000);
    all_healthy();
    fx.drv.svc[1].pid = 4242;
    tick();
    cr_assert_eq(phase_of(id), ENV_PHASE_READY);
    cr_expect_not(view_hold);

    /* Suspending takes a while: desired asleep, phase still ready. */
    fx.drv.suspend_rc = EPH_EAGAIN;
    cr_assert(tick_until_desired(id, ENV_WANT_ASLEEP), "never went to sleep");
    expect_last_event("env.sleep", "system", "idle for 1s (no activity seen)");
    env = load(id);
    cr_expect_str_eq(env->sleep_cause, "idle");
    cr_expect_eq(env->phase, ENV_PHASE_READY);
    env_free(env);
    cr_expect_gt(fx.drv.suspends, 0);
    cr_expect(view_hold, "a request may wake it: held");

    int applies = fx.drv.applies;
    fx.drv.suspend_rc = 0;
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_SLEEPING);
    cr_expect_str_eq(env->reason, "idle for 1s (no activity seen)");
    cr_expect_gt(env->slept_at_ms, 0);
    cr_expect_eq(env_svc_find(env, "api")->state, SVC_STATE_STOPPED);
    cr_expect_eq(env_svc_find(env, "api")->pid, 0);
    env_free(env);
    cr_expect_eq(fx.drv.applies, applies, "an asleep environment is not applied");
    cr_expect(view_hold);
    cr_expect_str_eq(view_message, "");

    /* A request wakes it: starting (even if the driver says healthy at once), then ready. */
    fx.drv.svc[0].state = SVC_STATE_STARTING;
    fx.drv.svc[1].state = SVC_STATE_PENDING;
    rec_wake_on_request(fx.rec, id, "api");
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    expect_last_event("env.wake", "system", "request api");
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_STARTING);
    cr_expect_gt(env->woke_at_ms, 0);
    env_free(env);
    cr_expect(view_hold, "waking: held until ready");
    all_healthy();
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
    cr_expect_not(view_hold);
    cr_expect_eq(count_events("env.sleep"), 1);
    cr_expect_eq(count_events("env.wake"), 1);

    /* A second request for an awake environment changes nothing. */
    rec_wake_on_request(fx.rec, id, "api");
    cr_expect_eq(count_events("env.wake"), 1);
}

/* The activity the fake gateway reports. */
static struct rec_activity fake_act;
static char fake_act_what[64];

static bool
fake_activity(void *arg, int64_t env_id, struct rec_activity *out)
{
    (void)arg;
    (void)env_id;
    if (fake_act.last_ms == 0 && fake_act.open == 0)
        return false;
    *out = fake_act;
    out->what = fake_act_what;
    return true;
}

Test(reconciler, an_open_exchange_keeps_it_awake_and_the_last_activity_names_the_sleep)
{
    int64_t id, deadline;
    struct env *env;

    reconfigure((const char *const[]){"sleep_after", "1s", NULL});
    rec_set_activity_source(fx.rec, fake_activity, NULL);
    memset(&fake_act, 0, sizeof(fake_act));
    snprintf(fake_act_what, sizeof(fake_act_what), "websocket web");
    fake_act.open = 1;
    fake_act.last_ms = time_wall_ms();
    id = create_env("fx", template_two, time_wall_ms() + 3600000);
    all_healthy();
    deadline = time_mono_ms() + 1500;
    while (time_mono_ms() < deadline) {
        tick();
        usleep(50000);
    }
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "open for 1.5s: still awake");
    env = load(id);
    cr_expect_str_eq(env->last_activity, "websocket web", "persisted at the first sight");
    cr_expect_gt(env->last_activity_ms, 0);
    env_free(env);

    fake_act.open = 0;
    fake_act.last_ms = time_wall_ms();
    rec_note_activity(fx.rec, id, time_wall_ms() - 500, "api get"); /* older: ignored */
    cr_assert(tick_until_desired(id, ENV_WANT_ASLEEP));
    expect_last_event("env.sleep", "system", "idle for 1s (last: websocket web)");
    rec_set_activity_source(fx.rec, NULL, NULL);
}

Test(reconciler, schedules_sleep_outside_hours_keep_a_manual_wake_and_wake_when_hours_begin)
{
    int64_t id;
    struct env *env;
    struct rec_sleep_info info;
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};

    /* Created inside the hours (creation counts as a wake: one created
     * outside them stays up until idle), then Saturday noon. */
    set_clock(SAT_2030_01_05_MS - 12 * HOUR_MS);
    reconfigure((const char *const[]){"schedule_awake", "Mon-Fri 08:00-20:00", "sleep_after",
                                      "never", NULL});
    rec_set_observer(fx.rec, remember_sleep_view, NULL);
    id = create_env("fx", template_two, time_wall_ms() + 30 * DAY_MS);
    all_healthy();
    tick(); /* ready */
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "inside hours: awake");
    set_clock(SAT_2030_01_05_MS + 12 * HOUR_MS);
    tick(); /* the rules see it outside hours */
    tick(); /* suspended */
    cr_expect_eq(desired_of(id), ENV_WANT_ASLEEP, "outside hours: asleep");
    expect_last_event("env.sleep", "system", "outside office hours (Mon-Fri 08:00-20:00 UTC)");
    env = load(id);
    cr_expect_str_eq(env->sleep_cause, "schedule");
    cr_expect_eq(env->phase, ENV_PHASE_SLEEPING);
    env_free(env);
    cr_expect_not(view_hold);
    cr_expect_str_eq(view_message,
                     "fx is asleep outside office hours (awake Mon-Fri 08:00-20:00 UTC)");
    cr_assert(rec_sleep_info(fx.rec, id, &info));
    cr_expect_not(info.wake_allowed);
    cr_expect_str_eq(info.schedule, "Mon-Fri 08:00-20:00 UTC");
    cr_expect_eq(info.next_wake_ms - time_wall_ms() > 2 * DAY_MS - 5 * HOUR_MS, true,
                 "Monday 08:00 is 44 hours away");

    /* A request does not wake it outside hours. */
    rec_wake_on_request(fx.rec, id, "api");
    cr_expect_eq(desired_of(id), ENV_WANT_ASLEEP);
    cr_expect_eq(count_events("env.wake"), 0);

    /* By hand it does, and the schedule leaves it awake until the hours end again. */
    cr_assert_eq(rec_wake(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    expect_last_event("env.wake", "alice", "woken by alice");
    tick();
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
    set_clock(SAT_2030_01_05_MS + 2 * DAY_MS + 9 * HOUR_MS); /* Monday 09:00 */
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    cr_assert(rec_sleep_info(fx.rec, id, &info));
    cr_expect(info.wake_allowed);
    cr_expect_gt(info.next_sleep_ms, time_wall_ms() + 10 * HOUR_MS);
    cr_expect_lt(info.next_sleep_ms, time_wall_ms() + 11 * HOUR_MS + 1000, "Monday 20:00");
    set_clock(SAT_2030_01_05_MS + 2 * DAY_MS + 20 * HOUR_MS + 30 * 60000); /* Monday 20:30 */
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_ASLEEP, "the hours ended after the wake");
    cr_expect_eq(count_events("env.sleep"), 2);

    /* Tuesday 08:30: the hours began after it slept. */
    set_clock(SAT_2030_01_05_MS + 3 * DAY_MS + 8 * HOUR_MS + 30 * 60000);
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    expect_last_event("env.wake", "system", "office hours began");
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
}

Test(reconciler, keeping_an_environment_asleep_outside_its_hours_wakes_it)
{
    int64_t id;
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};

    set_clock(SAT_2030_01_05_MS - 12 * HOUR_MS); /* Friday noon */
    reconfigure((const char *const[]){"schedule_awake", "Mon-Fri 08:00-20:00", NULL});
    id = create_env("fx", template_two, time_wall_ms() + 3 * DAY_MS);
    all_healthy();
    tick();
    tick();
    set_clock(SAT_2030_01_05_MS + 12 * HOUR_MS);
    tick();
    tick();
    cr_assert_eq(desired_of(id), ENV_WANT_ASLEEP, "outside hours: asleep");
    cr_assert_eq(store_env_set_keep(fx.st, id, true, &alice, &err), 0, "%s", err.msg);
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "kept: awake again");
    expect_last_event("env.wake", "system", "kept awake");
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);
}

Test(reconciler, a_kept_environment_ignores_the_schedule_and_may_be_woken_by_a_request)
{
    int64_t id;
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};

    set_clock(SAT_2030_01_05_MS + 12 * HOUR_MS);
    reconfigure((const char *const[]){"schedule_awake", "Mon-Fri 08:00-20:00", NULL});
    id = create_env("fx", template_two, time_wall_ms() + 3600000);
    cr_assert_eq(store_env_set_keep(fx.st, id, true, &alice, &err), 0);
    all_healthy();
    tick();
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    cr_expect_eq(phase_of(id), ENV_PHASE_READY);

    cr_assert_eq(rec_sleep(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    expect_last_event("env.sleep", "alice", "put to sleep by alice");
    cr_assert_eq(rec_sleep(fx.rec, id, &alice, &err), 0, "asleep already: fine");
    cr_expect_eq(count_events("env.sleep"), 1, "and no second event");
    tick();
    cr_expect_eq(phase_of(id), ENV_PHASE_SLEEPING);
    rec_wake_on_request(fx.rec, id, "api");
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "kept: wakeable outside hours");
}

Test(reconciler, wake_outside_hours_lets_a_request_wake_it)
{
    int64_t id;

    set_clock(SAT_2030_01_05_MS - 12 * HOUR_MS); /* Friday noon */
    reconfigure((const char *const[]){"schedule_awake", "Mon-Fri 08:00-20:00",
                                      "wake_outside_hours", "true", NULL});
    rec_set_observer(fx.rec, remember_sleep_view, NULL);
    id = create_env("fx", template_two, time_wall_ms() + 3 * DAY_MS);
    all_healthy();
    tick();
    tick();
    set_clock(SAT_2030_01_05_MS + 12 * HOUR_MS);
    tick();
    tick();
    cr_assert_eq(desired_of(id), ENV_WANT_ASLEEP);
    cr_expect(view_hold);
    cr_expect_str_eq(view_message, "");
    rec_wake_on_request(fx.rec, id, "web");
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING);
    expect_last_event("env.wake", "system", "request web");
    tick();
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "a wake after the hours ended holds");
}

Test(reconciler, the_environment_and_template_settings_win_over_the_server)
{
    static const char *tpl = "version: 1\n"
                             "defaults:\n"
                             "  schedule: { awake: \"Sat 10:00-14:00\", timezone: Europe/Madrid }\n"
                             "  limits: { memory: 512Mi, cpu: 1.5, pids: 512 }\n"
                             "services:\n"
                             "  api:\n"
                             "    run: ./api\n";
    struct rec_sleep_info info;
    struct env *env = env_new();
    struct eph_err err = {0};
    int64_t id;

    set_clock(SAT_2030_01_05_MS + 12 * HOUR_MS); /* 13:00 in Madrid */
    reconfigure((const char *const[]){"schedule_awake", "Mon-Fri 08:00-20:00",
                                      "limit_memory_max", "256Mi", "limit_pids_max", "1000",
                                      NULL});
    env->name = xstrdup("fx");
    env->project = xstrdup("shop");
    env->commit = xstrdup("0123456789012345678901234567890123456789");
    env->template_yaml = xstrdup(tpl);
    env->expires_at_ms = time_wall_ms() + 3600000;
    env->limit_pids = 100;
    env->sleep_after_s = -1;
    env->n_services = 1;
    env->services = xcalloc(1, sizeof(struct env_svc));
    env->services[0].name = xstrdup("api");
    env->services[0].port = 21001;
    cr_assert_eq(store_env_create(fx.st, env, NULL, &err), 0, "%s", err.msg);
    id = env->id;
    env_free(env);
    fx.drv.prep = DRV_PREP_DONE;
    fx.drv.svc[0].state = SVC_STATE_HEALTHY;
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_RUNNING, "inside the template's hours");
    cr_expect_eq(fx.drv.last_limits.memory_bytes, (int64_t)256 << 20, "capped by the server");
    cr_expect_eq(fx.drv.last_limits.cpu_millis, 1500);
    cr_expect_eq(fx.drv.last_limits.pids, 100, "the environment's own");
    cr_assert(rec_sleep_info(fx.rec, id, &info));
    cr_expect_eq(info.sleep_after_s, -1);
    cr_expect_str_eq(info.schedule, "Sat 10:00-14:00 Europe/Madrid");
    cr_expect_eq(info.idle_ms >= 0, true);
    cr_expect_gt(info.next_sleep_ms, 0, "at 14:00 Madrid");
    cr_expect_lt(info.next_sleep_ms, time_wall_ms() + HOUR_MS + 1000);
}

Test(reconciler, manual_sleep_is_refused_before_start_and_during_deletion)
{
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);

    cr_expect_eq(rec_sleep(fx.rec, id, &alice, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "fx is not running yet (pending)");
    cr_assert_eq(store_env_set_desired(fx.st, id, ENV_WANT_DELETED, &alice, "env.delete", "",
                                       &err), 0);
    cr_expect_eq(rec_sleep(fx.rec, id, &alice, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "fx is being deleted");
    cr_expect_eq(rec_wake(fx.rec, id, &alice, &err), EPH_EINVAL);
    cr_expect_eq(rec_sleep(fx.rec, 999, &alice, &err), EPH_ENOTFOUND);
    cr_expect_not(rec_sleep_info(fx.rec, 999, &(struct rec_sleep_info){0}));
}

Test(reconciler, a_wake_whose_service_never_gets_healthy_fails_with_its_reason)
{
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    struct env *env;

    rec_set_observer(fx.rec, remember_sleep_view, NULL);
    all_healthy();
    tick();
    cr_assert_eq(rec_sleep(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    tick();
    cr_assert_eq(phase_of(id), ENV_PHASE_SLEEPING);
    cr_assert_eq(rec_wake(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    fx.drv.svc[1].state = SVC_STATE_FAILED;
    snprintf(fx.drv.svc[1].reason, sizeof(fx.drv.svc[1].reason),
             "service 'api' did not become healthy within 60s");
    tick();
    env = load(id);
    cr_expect_eq(env->phase, ENV_PHASE_FAILED);
    cr_expect_str_eq(env->reason, "service 'api' did not become healthy within 60s");
    env_free(env);
    cr_expect_not(view_hold, "failed: no longer held");
}

Test(reconciler, an_environment_asleep_for_delete_after_sleeping_is_reclaimed)
{
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};
    sqlite3 *db = NULL;
    char *path, *sql;
    int64_t id;

    reconfigure((const char *const[]){"delete_after_sleeping", "7d", NULL});
    id = create_env("fx", template_two, time_wall_ms() + 30 * DAY_MS);
    all_healthy();
    tick();
    cr_assert_eq(rec_sleep(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    fx.drv.teardown_rc = EPH_EAGAIN;
    tick();
    cr_assert_eq(phase_of(id), ENV_PHASE_SLEEPING);
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_ASLEEP, "asleep for moments only");

    /* Eight days ago, as far as the record knows. */
    path = config_store_path(&fx.cfg);
    sql = xasprintf("UPDATE envs SET slept_at_ms = %" PRId64 " WHERE id = %" PRId64,
                    time_wall_ms() - 8 * DAY_MS, id);
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
    free(sql);
    free(path);
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_DELETED);
    expect_last_event("env.reclaim", "system", "asleep for 7d");
    cr_expect_eq(phase_of(id), ENV_PHASE_DELETING);
    cr_expect_gt(fx.drv.teardowns, 0);
}

Test(reconciler, an_asleep_environment_still_expires)
{
    struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};
    struct eph_err err = {0};
    int64_t id = create_env("fx", template_two, time_wall_ms() + 3600000);
    sqlite3 *db = NULL;
    char *path = config_store_path(&fx.cfg);

    all_healthy();
    tick();
    cr_assert_eq(rec_sleep(fx.rec, id, &alice, &err), 0, "%s", err.msg);
    tick();
    cr_assert_eq(sqlite3_open(path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, "UPDATE envs SET expires_at_ms = 1", NULL, NULL, NULL),
                 SQLITE_OK);
    sqlite3_close(db);
    free(path);
    tick();
    cr_expect_eq(desired_of(id), ENV_WANT_DELETED);
    cr_expect_eq(count_events("env.expire"), 1);
}
