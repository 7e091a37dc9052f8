/*
 * cli/cli_events.c - `eph events`: the audit log, once or followed.
 *
 * Following is polling with after=<last id seen> every FOLLOW_POLL_MS: ids
 * only grow, so no event is shown twice or skipped, and a restart of the
 * server loses nothing.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define FOLLOW_POLL_MS 500    /* between two polls of --follow */
#define FOLLOW_BATCH_MAX 1000 /* the server's largest limit: a full batch polls again at once */

static const char *const headers[] = {"TIME", "ACTOR", "ACTION", "TARGET", "DETAIL"};

/*
 * Prints the events of one answer (a table's rows, or one JSON line each when
 * following with -o json) and returns how many there were; *last_id follows.
 */
static size_t
print_batch(struct cli_ctx *ctx, struct cli_table *t, const json_t *resp, int64_t *last_id)
{
    const json_t *events = json_object_get(resp, "events");

    for (size_t i = 0; i < json_array_size(events); i++) {
        const json_t *ev = json_array_get(events, i);
        int64_t id = cli__jint(ev, "id");

        if (id > *last_id)
            *last_id = id;
        if (ctx->json) {
            json_dumpf(ev, ctx->out, JSON_COMPACT);
            fputc('\n', ctx->out);
        } else {
            char at[32] = "-";

            if (cli__jint(ev, "at_ms") > 0)
                time_format_rfc3339(cli__jint(ev, "at_ms"), at, sizeof(at));
            cli__table_add(t, (const char *const[]){
                                  at, cli__jstr(ev, "actor", NULL), cli__jstr(ev, "action", NULL),
                                  cli__jstr(ev, "target", NULL), cli__jstr(ev, "detail", NULL)});
        }
    }
    if (!ctx->json)
        cli__table_print(t, ctx->out);
    fflush(ctx->out);
    return json_array_size(events);
}

/* "/events?target=...&after=...&limit=..." with the parts that are set. */
static char *
events_path(const char *target, int64_t after, const char *limit)
{
    char *path = xstrdup("/events");
    char sep = '?';

    if (target) {
        char *escaped = cli__url_escape(target, true);
        char *next = xasprintf("%s%ctarget=%s", path, sep, escaped);

        free(escaped);
        free(path);
        path = next;
        sep = '&';
    }
    if (after > 0) {
        char *next = xasprintf("%s%cafter=%" PRId64, path, sep, after);

        free(path);
        path = next;
        sep = '&';
    }
    if (limit) {
        char *next = xasprintf("%s%climit=%s", path, sep, limit);

        free(path);
        path = next;
    }
    return path;
}

int
cli__cmd_events(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *env = cli__arg(args, "env");
    const char *limit = cli__arg(args, "limit");
    bool follow = cli__has(args, "follow");
    struct eph_err err = {0};
    struct cli_table t;
    char *target = env ? xasprintf("env/%s", env) : NULL;
    char batch_limit[16];
    json_t *resp = NULL;
    int64_t last_id = 0;
    char *path;
    size_t n;
    int rc;

    if (limit) {
        char *end;
        long v;

        errno = 0;
        v = strtol(limit, &end, 10);
        if (*limit == '\0' || *end != '\0' || v <= 0 || v > INT_MAX || errno == ERANGE) {
            free(target);
            return cli__usage(ctx, "invalid --limit '%s', expected a positive number", limit);
        }
    }
    if (cli__connect(ctx, &err) < 0) {
        free(target);
        return cli__fail(ctx, &err);
    }
    path = events_path(target, 0, limit);
    rc = cli__http_json(ctx, "GET", path, NULL, &resp, &err);
    free(path);
    if (rc < 0) {
        free(target);
        return cli__fail(ctx, &err);
    }
    if (ctx->json && !follow) {
        cli__print_json(ctx, resp);
        json_decref(resp);
        free(target);
        return CLI_EXIT_OK;
    }
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    if (follow) {
        /* Room for typical values from the start, so rows that come later line up. */
        static const size_t min_widths[] = {20, 8, 13, 16, 0};

        memcpy(t.widths, min_widths, sizeof(min_widths));
    }
    n = print_batch(ctx, &t, resp, &last_id);
    json_decref(resp);
    resp = NULL;
    if (n == 0 && !follow && !ctx->json)
        fputs("no events\n", ctx->err);
    snprintf(batch_limit, sizeof(batch_limit), "%d", FOLLOW_BATCH_MAX);
    rc = CLI_EXIT_OK;
    while (follow) {
        if (n < FOLLOW_BATCH_MAX)
            cli__sleep_ms(FOLLOW_POLL_MS);
        path = events_path(target, last_id, batch_limit);
        rc = cli__http_json(ctx, "GET", path, NULL, &resp, &err);
        free(path);
        if (rc < 0) {
            rc = cli__fail(ctx, &err);
            break;
        }
        n = print_batch(ctx, &t, resp, &last_id);
        json_decref(resp);
        resp = NULL;
    }
    cli__table_release(&t);
    free(target);
    return rc;
}
