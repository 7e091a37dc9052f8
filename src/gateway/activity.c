/*
 * gateway/activity.c - what the gateway saw of each environment, for the
 * reconciler's idle timer: the last request, the exchanges open now and
 * what the last one was ("request web", "websocket web").
 *
 * One slot per environment id, made by the control loop when a table
 * naming the environment is published and kept until the gateway stops:
 * tables, requests in flight and held requests point at it directly, so the
 * hot path is one relaxed load (and a store when the coarse clock moved) and
 * an atomic increment and decrement per exchange: no lock, no lookup, no
 * allocation. A slot of an environment deleted long ago stays (a few dozen
 * bytes each); ids are never reused, so it is only ever read as "gone".
 *
 * Service names are interned per slot by the control loop (append only), so
 * a request stores a small index, not a string, and the index means the same
 * service in every table.
 */
#include "gateway/proxy_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/xmalloc.h"

/* Slots are cache-line aligned: workers write them from several cores. */
#define GW_ACTIVITY_ALIGN 64

int64_t
gw__coarse_wall_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t
id_hash(int64_t id, size_t n_slots)
{
    uint64_t h = (uint64_t)id * 0x9E3779B97F4A7C15ULL;

    return (size_t)(h >> 17) & (n_slots - 1);
}

void
gw__activity_set_init(struct gw_activity_set *set, int n_workers)
{
    memset(set, 0, sizeof(*set));
    set->n_workers = n_workers > 0 ? n_workers : 1;
    set->n_slots = 64;
    set->slots = xcalloc(set->n_slots, sizeof(*set->slots));
}

static void
slot_free(struct gw_activity *a)
{
    for (size_t i = 0; i < a->n_names; i++)
        free(a->names[i]);
    free(a->names);
    free(a);
}

void
gw__activity_set_release(struct gw_activity_set *set)
{
    for (size_t i = 0; set->slots && i < set->n_slots; i++) {
        if (set->slots[i])
            slot_free(set->slots[i]);
    }
    free(set->slots);
    memset(set, 0, sizeof(*set));
}

static void
set_insert(struct gw_activity **slots, size_t n_slots, struct gw_activity *a)
{
    size_t i = id_hash(a->env_id, n_slots);

    while (slots[i] != NULL)
        i = (i + 1) & (n_slots - 1);
    slots[i] = a;
}

static void
set_grow(struct gw_activity_set *set)
{
    size_t n = set->n_slots * 2;
    struct gw_activity **fresh = xcalloc(n, sizeof(*fresh));

    for (size_t i = 0; i < set->n_slots; i++) {
        if (set->slots[i])
            set_insert(fresh, n, set->slots[i]);
    }
    free(set->slots);
    set->slots = fresh;
    set->n_slots = n;
}

static struct gw_activity *
slot_new(int64_t env_id, int n_workers)
{
    size_t size = sizeof(struct gw_activity) + (size_t)n_workers * sizeof(struct gw_hold_env);
    struct gw_activity *a;

    size = (size + GW_ACTIVITY_ALIGN - 1) / GW_ACTIVITY_ALIGN * GW_ACTIVITY_ALIGN;
    a = aligned_alloc(GW_ACTIVITY_ALIGN, size);
    EPH_ASSERT(a != NULL); /* as xmalloc: out of memory is not handled */
    memset(a, 0, size);
    atomic_init(&a->last_ms, 0);
    atomic_init(&a->open, 0);
    atomic_init(&a->what, 0);
    a->env_id = env_id;
    return a;
}

struct gw_activity *
gw__activity_get(struct gw_activity_set *set, int64_t env_id, bool create)
{
    struct gw_activity *a;

    for (size_t i = id_hash(env_id, set->n_slots); (a = set->slots[i]) != NULL;
         i = (i + 1) & (set->n_slots - 1)) {
        if (a->env_id == env_id)
            return a;
    }
    if (!create)
        return NULL;
    if ((set->n + 1) * 2 > set->n_slots)
        set_grow(set);
    a = slot_new(env_id, set->n_workers);
    set_insert(set->slots, set->n_slots, a);
    set->n++;
    return a;
}

/* The index of a service name in a's list, added if new. */
static int
name_index(struct gw_activity *a, const char *name)
{
    for (size_t i = 0; i < a->n_names; i++) {
        if (strcmp(a->names[i], name) == 0)
            return (int)i;
    }
    a->names = xrealloc(a->names, (a->n_names + 1) * sizeof(*a->names));
    a->names[a->n_names] = xstrdup(name);
    return (int)a->n_names++;
}

void
gw__activity_attach(struct gw_activity_set *set, struct gw_routes *r)
{
    for (size_t i = 0; r && i < r->n_envs; i++) {
        struct gw_route_env *e = &r->envs[i];

        e->activity = gw__activity_get(set, e->id, true);
        for (size_t j = 0; j < e->n_services; j++)
            e->services[j].activity_idx = name_index(e->activity, e->services[j].name);
    }
}

bool
gw__activity_read(struct gw_activity_set *set, int64_t env_id, int64_t *last_ms, int *open,
                  char *what, size_t what_size)
{
    struct gw_activity *a = gw__activity_get(set, env_id, false);
    int64_t last;
    int n, w;
    size_t idx;

    if (a == NULL)
        return false;
    last = atomic_load_explicit(&a->last_ms, memory_order_relaxed);
    n = atomic_load_explicit(&a->open, memory_order_relaxed);
    w = atomic_load_explicit(&a->what, memory_order_relaxed);
    if (last == 0 && n == 0)
        return false;
    *last_ms = last;
    *open = n > 0 ? n : 0;
    if (what_size > 0) {
        idx = w > 0 ? (size_t)(w >> 1) - 1 : a->n_names;
        snprintf(what, what_size, "%s%s%s", (w & 1) ? "websocket" : "request",
                 idx < a->n_names ? " " : "", idx < a->n_names ? a->names[idx] : "");
    }
    return true;
}
