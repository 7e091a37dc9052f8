/*
 * api/api_events.c - GET /api/v1/events: the audit log, oldest first.
 *
 * ?target=env/fx keeps one target's events; ?after=ID returns only newer
 * ones (for polling); ?limit=N caps the count (default 50, at most 1000) and,
 * without after, picks the newest N.
 */
#include "api/api_int.h"

#define EVENTS_LIMIT_DEFAULT 50
#define EVENTS_LIMIT_MAX 1000

void
api__events_list(struct api_call *call, const struct api_params *params)
{
    struct http_exchange *x = call->x;
    struct event **evs = NULL;
    size_t n = 0;
    struct eph_err err = {0};
    char *target = http_query_param(x, "target");
    int64_t after;
    int64_t limit;
    json_t *arr;
    int rc;

    (void)params;
    if (api__query_int(x, "after", -1, 0, INT64_MAX, &after) < 0 ||
        api__query_int(x, "limit", EVENTS_LIMIT_DEFAULT, 1, EVENTS_LIMIT_MAX, &limit) < 0)
        goto out;
    rc = store_event_list(call->api->st, target && target[0] ? target : NULL, after, (int)limit,
                          &evs, &n, &err);
    if (rc < 0) {
        api__reply_failure(x, rc, &err);
        goto out;
    }
    arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, api__event_json(evs[i]));
    api__reply_json(x, 200, json_pack("{s:o}", "events", arr));
out:
    event_list_free(evs, n);
    free(target);
    api__call_free(call);
}
