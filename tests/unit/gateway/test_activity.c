/*
 * tests/unit/gateway/test_activity.c - the per-environment activity slots
 * (gateway/activity.c): made on first sight, stable across growth and
 * tables, service names interned so an index means the same service in
 * every table, and read back as gw_activity() reports it.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "gateway/proxy_int.h"
#include "util/xmalloc.h"

static struct gw_routes *
table(const char *first_service, const char *second_service, int64_t first_id)
{
    const struct gw_route_service_in svcs[] = {
        {.name = first_service, .upstream_port = 1, .expose = true, .state = SVC_STATE_HEALTHY},
        {.name = second_service, .upstream_port = 2, .expose = true, .state = SVC_STATE_HEALTHY},
    };
    const struct gw_route_env_in envs[] = {
        {.id = first_id, .name = "fx", .phase = ENV_PHASE_READY, .services = svcs, .n_services = 2},
        {.id = 99, .name = "ab", .phase = ENV_PHASE_READY, .services = svcs, .n_services = 1},
    };

    return gw_routes_build(envs, 2, 1);
}

Test(activity, a_slot_is_made_once_per_environment_and_keeps_its_address)
{
    struct gw_activity_set set;
    struct gw_activity *first;

    gw__activity_set_init(&set, 3);
    cr_expect_null(gw__activity_get(&set, 7, false));
    first = gw__activity_get(&set, 7, true);
    cr_assert_not_null(first);
    cr_expect_eq(first->env_id, 7);
    cr_expect_eq((uintptr_t)first % 64, 0, "cache-line aligned");
    for (int64_t id = 100; id < 1100; id++) /* grows the hash several times */
        cr_assert_not_null(gw__activity_get(&set, id, true));
    cr_expect_eq(gw__activity_get(&set, 7, true), first);
    cr_expect_eq(gw__activity_get(&set, 7, false), first);
    cr_expect_eq(set.n, 1001);
    for (int w = 0; w < 3; w++)
        cr_expect_eq(first->per_worker[w].n_held, 0);
    gw__activity_set_release(&set);
}

Test(activity, attach_points_tables_at_slots_with_stable_service_indexes)
{
    struct gw_activity_set set;
    struct gw_routes *a = table("web", "api", 1);
    struct gw_routes *b = table("api", "web", 1); /* the template reordered them */
    const struct gw_route_service *web_a, *web_b, *api_b;

    gw__activity_set_init(&set, 1);
    gw__activity_attach(&set, a);
    gw__activity_attach(&set, b);
    web_a = gw_routes_find(a, "web", 3, "fx", 2);
    web_b = gw_routes_find(b, "web", 3, "fx", 2);
    api_b = gw_routes_find(b, "api", 3, "fx", 2);
    cr_assert(web_a && web_b && api_b);
    cr_expect_eq(web_a->env->activity, web_b->env->activity, "one slot per env id");
    cr_expect_eq(web_a->env->activity, gw__activity_get(&set, 1, false));
    cr_expect_neq(gw_routes_find_env(a, "ab", 2)->activity, web_a->env->activity);
    cr_expect_eq(web_a->activity_idx, web_b->activity_idx, "same name, same index");
    cr_expect_neq(api_b->activity_idx, web_b->activity_idx);
    gw_routes_unref(a);
    gw_routes_unref(b);
    gw__activity_set_release(&set);
}

Test(activity, reads_back_the_last_request_open_exchanges_and_what)
{
    struct gw_activity_set set;
    struct gw_routes *r = table("web", "api", 5);
    const struct gw_route_service *api = gw_routes_find(r, "api", 3, "fx", 2);
    struct gw_activity *slot;
    int64_t last = -1;
    int open = -1;
    char what[32] = "";

    gw__activity_set_init(&set, 2);
    gw__activity_attach(&set, r);
    slot = api->env->activity;
    cr_expect(!gw__activity_read(&set, 5, &last, &open, what, sizeof(what)), "no request seen yet");
    cr_expect(!gw__activity_read(&set, 12345, &last, &open, what, sizeof(what)), "unknown env");
    cr_expect_eq(last, -1, "nothing written when false");

    gw__activity_touch(slot, api->activity_idx, false, 1700000000123);
    cr_assert(gw__activity_read(&set, 5, &last, &open, what, sizeof(what)));
    cr_expect_eq(last, 1700000000123);
    cr_expect_eq(open, 0);
    cr_expect_str_eq(what, "request api");

    gw__activity_touch(slot, gw_routes_find(r, "web", 3, "fx", 2)->activity_idx, true,
                       1700000000500);
    atomic_fetch_add(&slot->open, 2);
    cr_assert(gw__activity_read(&set, 5, &last, &open, what, sizeof(what)));
    cr_expect_eq(last, 1700000000500);
    cr_expect_eq(open, 2);
    cr_expect_str_eq(what, "websocket web");
    /* A short buffer is cut, not overrun; none at all is fine. */
    cr_assert(gw__activity_read(&set, 5, &last, &open, what, 4));
    cr_expect_str_eq(what, "web");
    cr_expect(gw__activity_read(&set, 5, &last, &open, NULL, 0));
    gw_routes_unref(r);
    gw__activity_set_release(&set);
}

Test(activity, the_coarse_clock_is_the_wall_clock)
{
    struct timespec ts;
    int64_t coarse = gw__coarse_wall_ms();
    int64_t fine;

    clock_gettime(CLOCK_REALTIME, &ts);
    fine = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    cr_expect(fine - coarse >= -50 && fine - coarse < 1000, "coarse %lld, fine %lld",
              (long long)coarse, (long long)fine);
}
