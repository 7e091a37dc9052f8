/*
 * tests/unit/api/test_api_metrics.c - the text of GET /metrics: the server's
 * gauges from a real store, then what the gateway appends.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "util/fs.h"
#include "util/xmalloc.h"

static void
add_env(struct store *st, const char *name, enum env_phase phase)
{
    struct env *env = env_new();
    struct eph_err err = {0};
    struct store_actor actor = {.name = "tester", .source = "127.0.0.1"};

    env->name = xstrdup(name);
    env->project = xstrdup("shop");
    env->ref = xstrdup("main");
    env->commit = xstrdup("0123456789012345678901234567890123456789");
    env->owner = xstrdup("tester");
    env->template_yaml = xstrdup("version: 1\n");
    cr_assert_eq(store_env_create(st, env, &actor, &err), 0, "%s", err.msg);
    if (phase != ENV_PHASE_PENDING)
        cr_assert_eq(store_env_set_phase(st, env->id, phase, NULL, &err), 0, "%s", err.msg);
    env_free(env);
}

static void
gateway_metrics(void *arg, struct buf *out)
{
    buf_printf(out, "eph_gateway_open_connections %d\n", *(int *)arg);
}

Test(api_metrics, counts_environments_by_phase_then_adds_the_gateways)
{
    char dir[] = "/tmp/eph-test-metrics-XXXXXX";
    struct store *st = NULL;
    struct eph_err err = {0};
    struct buf out;
    int open = 3;

    cr_assert_not_null(mkdtemp(dir));
    char *db = xasprintf("%s/eph.db", dir);
    cr_assert_eq(store_open(db, &st, &err), 0, "%s", err.msg);
    add_env(st, "a", ENV_PHASE_READY);
    add_env(st, "b", ENV_PHASE_READY);
    add_env(st, "c", ENV_PHASE_STARTING);
    add_env(st, "d", ENV_PHASE_DELETED); /* not counted: gone */
    buf_init(&out, 1 << 20);
    cr_assert_eq(api__metrics_text(st, gateway_metrics, &open, &out, &err), 0, "%s", err.msg);
    cr_expect_str_eq(buf_cstr(&out),
                     "# HELP eph_build_info The running server's version.\n"
                     "# TYPE eph_build_info gauge\n"
                     "eph_build_info{version=\"" EPH_VERSION "\"} 1\n"
                     "# HELP eph_environments Environments not yet deleted, by phase.\n"
                     "# TYPE eph_environments gauge\n"
                     "eph_environments{phase=\"pending\"} 0\n"
                     "eph_environments{phase=\"preparing\"} 0\n"
                     "eph_environments{phase=\"starting\"} 1\n"
                     "eph_environments{phase=\"ready\"} 2\n"
                     "eph_environments{phase=\"sleeping\"} 0\n"
                     "eph_environments{phase=\"failed\"} 0\n"
                     "eph_environments{phase=\"deleting\"} 0\n"
                     "eph_gateway_open_connections 3\n");
    buf_release(&out);
    store_close(st);
    free(db);
    fs_rm_rf(dir);
}
