/*
 * api/api_events.c - GET /api/v1/events: the audit log, oldest first.
 *
 * ?target=env/fx keeps one target's events; ?after=ID returns only newer
 * ones (for polling); ?limit=N caps the count (default 50, at most 1000) and,
 * without after, picks the newest N.
 *
 * Admins see every event. Everyone else sees the events of environments
 * visible to them (core/access.h; an environment's name is judged by the
 * latest environment that bore it), of their own user ("user/<me>") and of
 * their own tokens ("token/<name>" events whose detail names them as the
 * user). The store cannot ask that in one query, so the log is read in pages
 * and filtered here; a request reads at most EVENTS_SCAN_MAX events.
 * ?target=env/x of an environment the caller may not see is 404 like one
 * that never existed.
 */
#include "api/api_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/xmalloc.h"

#define EVENTS_LIMIT_DEFAULT 50
#define EVENTS_LIMIT_MAX 1000
#define EVENTS_PAGE 1000       /* the most the store returns at once */
#define EVENTS_SCAN_MAX 100000 /* event ids one filtered request looks through */

/* ------------------------------------------------------------- who sees what */

/* What one request learned about environment names, so that each name costs
 * one store lookup at most. */
struct name_seen {
    char *name;
    bool exists;  /* some environment, deleted or not, bore this name */
    bool visible; /* the latest of them is visible to the caller */
};

struct event_filter {
    struct api_call *call;
    bool admin; /* sees everything: no lookups at all */
    struct name_seen *seen;
    size_t n_seen, cap_seen;
    struct env **all; /* every environment ever, loaded once if needed */
    size_t n_all;
    bool all_loaded;
};

static void
filter_release(struct event_filter *f)
{
    for (size_t i = 0; i < f->n_seen; i++)
        free(f->seen[i].name);
    free(f->seen);
    env_list_free(f->all, f->n_all);
    memset(f, 0, sizeof(*f));
}

/*
 * Whether an environment named `name` ever existed and whether the caller may
 * see it: the live one decides; a name no live environment has is judged by
 * the latest deleted one. 0, or a store error in *err.
 */
static int
env_name_seen(struct event_filter *f, const char *name, struct name_seen **out, struct eph_err *err)
{
    const struct principal *p = &f->call->principal;
    struct env *env = NULL;
    struct name_seen ns = {0};
    int rc;

    for (size_t i = 0; i < f->n_seen; i++) {
        if (strcmp(f->seen[i].name, name) == 0) {
            *out = &f->seen[i];
            return 0;
        }
    }
    rc = store_env_get(f->call->api->st, name, &env, err);
    if (rc == 0) {
        ns.exists = true;
        ns.visible = access_env_visible(p, env->id, env->owner, env->visibility);
        env_free(env);
    } else if (rc == EPH_ENOTFOUND) {
        if (!f->all_loaded) {
            rc = store_env_list(f->call->api->st, true, &f->all, &f->n_all, err);
            if (rc < 0)
                return rc;
            f->all_loaded = true;
        }
        for (size_t i = f->n_all; i-- > 0;) { /* id order: the latest is last */
            const struct env *e = f->all[i];

            if (e->name && strcmp(e->name, name) == 0) {
                ns.exists = true;
                ns.visible = access_env_visible(p, e->id, e->owner, e->visibility);
                break;
            }
        }
    } else {
        return rc;
    }
    if (f->n_seen == f->cap_seen) {
        f->cap_seen = f->cap_seen ? 2 * f->cap_seen : 16;
        f->seen = xrealloc(f->seen, f->cap_seen * sizeof(*f->seen));
    }
    ns.name = xstrdup(name);
    f->seen[f->n_seen] = ns;
    *out = &f->seen[f->n_seen++];
    return 0;
}

/* True if a token event's detail ("user alice, role member", "user alice")
 * names `user` as the token's owner. */
static bool
detail_names_user(const char *detail, const char *user)
{
    size_t n = strlen(user);

    return detail && strncmp(detail, "user ", 5) == 0 && strncmp(detail + 5, user, n) == 0 &&
           (detail[5 + n] == '\0' || detail[5 + n] == ',');
}

/* Whether the caller may see `ev`: 0 and *out, or a store error. */
static int
may_see(struct event_filter *f, const struct event *ev, bool *out, struct eph_err *err)
{
    const char *target = ev->target ? ev->target : "";
    const char *me = f->call->who.user;
    struct name_seen *ns = NULL;
    int rc;

    *out = false;
    if (f->admin) {
        *out = true;
    } else if (strncmp(target, "env/", 4) == 0) {
        rc = env_name_seen(f, target + 4, &ns, err);
        if (rc < 0)
            return rc;
        *out = ns->visible;
    } else if (strncmp(target, "user/", 5) == 0) {
        *out = strcmp(target + 5, me) == 0;
    } else if (strncmp(target, "token/", 6) == 0) {
        *out = detail_names_user(ev->detail, me);
    }
    return 0;
}

/* ------------------------------------------------------------- reading */

/*
 * Appends to `arr` the events of `target` (NULL: all) with id > after that
 * the caller may see, oldest first, at most `limit`, reading page by page.
 */
static int
collect_forward(struct event_filter *f, const char *target, int64_t after, int64_t limit,
                json_t *arr, struct eph_err *err)
{
    struct store *st = f->call->api->st;
    int64_t cursor = after;
    int64_t scanned = 0;
    int rc = 0;

    while ((int64_t)json_array_size(arr) < limit && scanned < EVENTS_SCAN_MAX) {
        struct event **evs = NULL;
        size_t n = 0;

        rc = store_event_list(st, target, cursor, EVENTS_PAGE, &evs, &n, err);
        for (size_t i = 0; rc == 0 && i < n && (int64_t)json_array_size(arr) < limit; i++) {
            bool ok = false;

            rc = may_see(f, evs[i], &ok, err);
            if (rc == 0 && ok)
                json_array_append_new(arr, api__event_json(evs[i]));
        }
        scanned += (int64_t)n;
        if (n > 0)
            cursor = evs[n - 1]->id;
        event_list_free(evs, n);
        if (rc < 0 || n < EVENTS_PAGE)
            break;
    }
    return rc;
}

/* Appends the newest event first, keeping to the window (lo, hi] of ids. */
static int
filter_page(struct event_filter *f, struct event **evs, size_t n, int64_t hi, int64_t limit,
            json_t *newest_first, struct eph_err *err)
{
    int rc = 0;

    for (size_t i = n; rc == 0 && i-- > 0 && (int64_t)json_array_size(newest_first) < limit;) {
        bool ok = false;

        if (evs[i]->id > hi)
            continue; /* beyond the window: a later window had it */
        rc = may_see(f, evs[i], &ok, err);
        if (rc == 0 && ok)
            json_array_append_new(newest_first, api__event_json(evs[i]));
    }
    return rc;
}

/*
 * Appends to `arr` the newest `limit` events the caller may see, oldest
 * first. The whole log is read in windows of EVENTS_PAGE ids from the newest
 * backwards (ids increase by one per event); one target's events, which are
 * few, as its newest EVENTS_PAGE.
 */
static int
collect_newest(struct event_filter *f, const char *target, int64_t limit, json_t *arr,
               struct eph_err *err)
{
    struct store *st = f->call->api->st;
    json_t *newest_first = json_array();
    struct event **evs = NULL;
    size_t n = 0;
    int64_t hi;
    int rc;

    if (target != NULL) {
        rc = store_event_list(st, target, -1, EVENTS_PAGE, &evs, &n, err);
        if (rc == 0)
            rc = filter_page(f, evs, n, INT64_MAX, limit, newest_first, err);
        event_list_free(evs, n);
        goto out;
    }
    rc = store_event_list(st, NULL, -1, 1, &evs, &n, err);
    hi = rc == 0 && n == 1 ? evs[0]->id : 0;
    event_list_free(evs, n);
    for (int64_t scanned = 0; rc == 0 && hi > 0 && scanned < EVENTS_SCAN_MAX &&
                              (int64_t)json_array_size(newest_first) < limit;
         scanned += EVENTS_PAGE) {
        int64_t lo = hi > EVENTS_PAGE ? hi - EVENTS_PAGE : 0;

        evs = NULL;
        n = 0;
        rc = store_event_list(st, NULL, lo, EVENTS_PAGE, &evs, &n, err);
        if (rc == 0)
            rc = filter_page(f, evs, n, hi, limit, newest_first, err);
        event_list_free(evs, n);
        hi = lo;
    }
out:
    for (size_t i = json_array_size(newest_first); rc == 0 && i-- > 0;)
        json_array_append(arr, json_array_get(newest_first, i));
    json_decref(newest_first);
    return rc;
}

void
api__events_list(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    struct event_filter f = {.call = call, .admin = api__is_admin(call)};
    struct eph_err err = {0};
    char *target = http_query_param(x, "target");
    int64_t after;
    int64_t limit;
    json_t *arr = NULL;
    int rc;

    (void)params;
    if (api__query_int(x, "after", -1, 0, INT64_MAX, &after) < 0 ||
        api__query_int(x, "limit", EVENTS_LIMIT_DEFAULT, 1, EVENTS_LIMIT_MAX, &limit) < 0)
        goto out;
    if (target && target[0] == '\0') {
        free(target);
        target = NULL;
    }
    if (target && strncmp(target, "env/", 4) == 0) {
        struct event_filter look = {.call = call};
        struct name_seen *ns = NULL;

        /* Judged even for admins (who see every environment there is), so
         * that an unknown name gets one answer whoever asks. */
        rc = env_name_seen(&look, target + 4, &ns, &err);
        if (rc == 0 && (!ns->exists || !ns->visible)) {
            api__reply_error(x, 404, "environment '%s' not found", target + 4);
            filter_release(&look);
            goto out;
        }
        filter_release(&look);
        if (rc < 0) {
            api__reply_failure(x, rc, &err);
            goto out;
        }
        f.admin = true; /* every event of a visible environment is visible */
    }
    arr = json_array();
    if (f.admin) {
        struct event **evs = NULL;
        size_t n = 0;

        rc = store_event_list(call->api->st, target, after, (int)limit, &evs, &n, &err);
        for (size_t i = 0; rc == 0 && i < n; i++)
            json_array_append_new(arr, api__event_json(evs[i]));
        event_list_free(evs, n);
    } else if (after >= 0) {
        rc = collect_forward(&f, target, after, limit, arr, &err);
    } else {
        rc = collect_newest(&f, target, limit, arr, &err);
    }
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    api__reply_json(x, 200, json_pack("{s:O}", "events", arr));
out:
    json_decref(arr);
    filter_release(&f);
    free(target);
    api__call_free(call);
}
