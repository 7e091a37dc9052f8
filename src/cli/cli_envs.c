/*
 * cli/cli_envs.c - the verbs of environments: `eph up` (and its --wait
 * progress view), `eph ls`, `eph get`, `eph logs`, `eph extend`,
 * `eph visibility`, `eph link`, `eph rm`, and sleep: `eph sleep`,
 * `eph wake`, `eph keep` (docs/sleep.md).
 *
 * Waiting is polling: GET /envs/NAME every WAIT_POLL_MS until a terminal
 * phase or the deadline. The server's reconciler is level-triggered, so
 * there is nothing to subscribe to, and polling survives a server restart
 * as well as anything would.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define WAIT_POLL_MS 200                 /* between two GETs while waiting */
#define WAIT_DEFAULT_TIMEOUT_S (10 * 60) /* --wait without --timeout */
#define COMMIT_SHORT_LEN 7               /* as git shows commits */

/* "/envs/NAME" + suffix, the name escaped. */
static char *
env_path(const char *name, const char *suffix)
{
    char *escaped = cli__url_escape(name, false);
    char *path = xasprintf("/envs/%s%s", escaped, suffix);

    free(escaped);
    return path;
}

static void
format_time(int64_t wall_ms, char *out, size_t out_size)
{
    if (wall_ms <= 0)
        snprintf(out, out_size, "-");
    else
        time_format_rfc3339(wall_ms, out, out_size);
}

/* Parses --timeout (default 10m) into *out_ms; a usage error has been printed if < 0. */
static int
parse_timeout(struct cli_ctx *ctx, const struct cli_args *args, int64_t *out_ms)
{
    const char *text = cli__arg(args, "timeout");
    struct eph_err err = {0};
    int64_t s = WAIT_DEFAULT_TIMEOUT_S;

    if (text && !cli__has(args, "wait")) {
        cli__usage(ctx, "--timeout only applies with --wait");
        return EPH_EINVAL;
    }
    if (text && duration_parse(text, &s, &err) < 0) {
        cli__usage(ctx, "--timeout: %s", err.msg);
        return EPH_EINVAL;
    }
    *out_ms = s * 1000;
    return 0;
}

/* ------------------------------------------------------------- progress while waiting */

struct progress {
    struct cli_ctx *ctx;
    const char *name;   /* the environment's */
    bool tty;           /* stderr is a terminal: redraw one view in place */
    int64_t started_ms; /* monotonic, for the elapsed time shown */
    size_t lines_drawn; /* tty: height of the last drawing, to move back over it */
    char *last_drawing; /* tty: the last drawing, to skip identical redraws */
    json_t *last;       /* otherwise: the last environment seen, to print only changes */
};

/* Columns of the terminal on stderr; 0 when unknown. */
static size_t
terminal_columns(void)
{
    struct winsize ws;

    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 0;
}

/* Cuts each line of `text` to fit `cols` (a wrapped line would break the cursor-up count). */
static char *
fit_lines(const char *text, size_t cols, size_t *n_lines)
{
    char *out = xmalloc(strlen(text) + 1);
    char *w = out;
    size_t col = 0;

    *n_lines = 0;
    for (const char *r = text; *r; r++) {
        if (*r == '\n') {
            *w++ = '\n';
            col = 0;
            (*n_lines)++;
            continue;
        }
        if ((*r & 0xc0) != 0x80)
            col++;
        if (cols == 0 || col < cols)
            *w++ = *r;
    }
    *w = '\0';
    return out;
}

static void
draw_tty(struct progress *pg, const json_t *env)
{
    const json_t *services = json_object_get(env, "services");
    struct cli_table t;
    char elapsed[32];
    char *text = NULL, *fitted;
    size_t len = 0, n_lines;
    FILE *mem = open_memstream(&text, &len);

    if (mem == NULL)
        return;
    cli__format_span(time_mono_ms() - pg->started_ms, elapsed, sizeof(elapsed));
    fprintf(mem, "%s: %s (%s)\n", pg->name, cli__jstr(env, "phase", "?"), elapsed);
    cli__table_init(&t, 4, NULL);
    t.indent = "  ";
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        char port[24] = "";
        int64_t p = cli__jint(svc, "port");

        if (p > 0)
            snprintf(port, sizeof(port), ":%" PRId64, p);
        cli__table_add(&t, (const char *const[]){cli__jstr(svc, "name", NULL),
                                                 cli__jstr(svc, "state", NULL), port,
                                                 cli__jstr(svc, "url", NULL)});
    }
    cli__table_print(&t, mem);
    cli__table_release(&t);
    fclose(mem);
    fitted = fit_lines(text, terminal_columns() > 0 ? terminal_columns() - 1 : 0, &n_lines);
    free(text);
    if (pg->last_drawing && strcmp(pg->last_drawing, fitted) == 0) {
        free(fitted);
        return;
    }
    if (pg->lines_drawn > 0)
        fprintf(pg->ctx->err, "\033[%zuA\r\033[J", pg->lines_drawn); /* up, clear below */
    fputs(fitted, pg->ctx->err);
    fflush(pg->ctx->err);
    pg->lines_drawn = n_lines;
    free(pg->last_drawing);
    pg->last_drawing = fitted;
}

static const json_t *
service_named(const json_t *env, const char *name)
{
    const json_t *services = json_object_get(env, "services");

    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);

        if (name && strcmp(cli__jstr(svc, "name", ""), name) == 0)
            return svc;
    }
    return NULL;
}

/* One line per change, for logs and pipes: "fx: api healthy http://...". */
static void
print_changes(struct progress *pg, const json_t *env)
{
    const char *phase = cli__jstr(env, "phase", "?");
    const char *old_phase = cli__jstr(pg->last, "phase", NULL);
    bool phase_changed = old_phase == NULL || strcmp(old_phase, phase) != 0;
    /* The phase that follows the services (ready, failed) reads best after them. */
    bool phase_last = strcmp(phase, "ready") == 0 || strcmp(phase, "failed") == 0;
    const json_t *services = json_object_get(env, "services");

    if (phase_changed && !phase_last)
        fprintf(pg->ctx->err, "%s: phase %s\n", pg->name, phase);
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        const char *name = cli__jstr(svc, "name", "?");
        const char *state = cli__jstr(svc, "state", "?");
        const json_t *old = service_named(pg->last, name);
        const char *url = cli__jstr(svc, "url", NULL);
        const char *reason = cli__jstr(svc, "reason", NULL);
        bool show_url = url && strcmp(state, "healthy") == 0;
        char *line, *clean;

        if (old && strcmp(cli__jstr(old, "state", ""), state) == 0)
            continue;
        line = xasprintf("%s: %s %s%s%s%s%s", pg->name, name, state, show_url ? " " : "",
                         show_url ? url : "", reason ? ": " : "", reason ? reason : "");
        clean = cli__sanitize(line);

        fprintf(pg->ctx->err, "%s\n", clean);
        free(clean);
        free(line);
    }
    if (phase_changed && phase_last)
        fprintf(pg->ctx->err, "%s: phase %s\n", pg->name, phase);
    fflush(pg->ctx->err);
    json_decref(pg->last);
    pg->last = json_deep_copy(env);
}

static void
progress_update(struct progress *pg, const json_t *env)
{
    if (pg->tty)
        draw_tty(pg, env);
    else
        print_changes(pg, env);
}

static void
progress_release(struct progress *pg)
{
    free(pg->last_drawing);
    json_decref(pg->last);
}

/* After a failure: the reason, and that of each failed service. */
static void
print_failure(struct cli_ctx *ctx, const json_t *env)
{
    char *reason = cli__sanitize(cli__jstr(env, "reason", "no reason given"));
    const json_t *services = json_object_get(env, "services");

    fprintf(ctx->err, "eph: environment %s failed: %s\n", cli__jstr(env, "name", "?"), reason);
    free(reason);
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        const char *why = cli__jstr(svc, "reason", NULL);

        if (why && strcmp(cli__jstr(svc, "state", ""), "failed") == 0) {
            char *clean = cli__sanitize(why);

            fprintf(ctx->err, "  %s: %s\n", cli__jstr(svc, "name", "?"), clean);
            free(clean);
        }
    }
}

static void
print_urls(struct cli_ctx *ctx, const json_t *env)
{
    static const char *const headers[] = {"SERVICE", "URL"};
    const json_t *services = json_object_get(env, "services");
    struct cli_table t;

    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        const char *url = cli__jstr(svc, "url", NULL);

        if (url)
            cli__table_add(&t, (const char *const[]){cli__jstr(svc, "name", NULL), url});
    }
    if (t.n_rows > 0)
        cli__table_print(&t, ctx->out);
    cli__table_release(&t);
}

/*
 * Polls environment `name` until ready (0), failed, deleted or the deadline
 * (an error printed, CLI_EXIT_FAILED). *final gets the last environment seen.
 */
static int
wait_until_ready(struct cli_ctx *ctx, const char *name, int64_t timeout_ms, json_t **final)
{
    struct progress pg = {.ctx = ctx, .name = name, .tty = isatty(STDERR_FILENO) == 1};
    char *path = env_path(name, "");
    int64_t deadline_ms;
    int rc;

    pg.started_ms = time_mono_ms();
    deadline_ms = pg.started_ms + timeout_ms;
    *final = NULL;
    for (;;) {
        struct eph_err err = {0};
        json_t *env = NULL;
        const char *phase;
        int64_t left_ms;

        if (cli__http_json(ctx, "GET", path, NULL, &env, &err) < 0) {
            rc = cli__fail(ctx, &err);
            break;
        }
        json_decref(*final);
        *final = env;
        progress_update(&pg, env);
        phase = cli__jstr(env, "phase", "");
        if (strcmp(phase, "ready") == 0) {
            rc = CLI_EXIT_OK;
            break;
        }
        if (strcmp(phase, "failed") == 0) {
            print_failure(ctx, env);
            rc = CLI_EXIT_FAILED;
            break;
        }
        if (strcmp(phase, "deleting") == 0 || strcmp(phase, "deleted") == 0) {
            fprintf(ctx->err, "eph: environment %s is being deleted\n", name);
            rc = CLI_EXIT_FAILED;
            break;
        }
        left_ms = deadline_ms - time_mono_ms();
        if (left_ms <= 0) {
            char span[32];

            cli__format_span(timeout_ms, span, sizeof(span));
            fprintf(ctx->err, "eph: environment %s is not ready after %s (phase %s)\n", name, span,
                    phase);
            rc = CLI_EXIT_FAILED;
            break;
        }
        cli__sleep_ms(left_ms < WAIT_POLL_MS ? left_ms : WAIT_POLL_MS);
    }
    if (rc == CLI_EXIT_OK && !ctx->json) {
        char took[32];

        cli__format_span(time_mono_ms() - pg.started_ms, took, sizeof(took));
        fprintf(ctx->out, "environment %s is ready (%s)\n", name, took);
        print_urls(ctx, *final);
    }
    progress_release(&pg);
    free(path);
    return rc;
}

/* ------------------------------------------------------------- eph up */

int
cli__cmd_up(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *branch = cli__arg(args, "branch");
    const char *ref = cli__arg(args, "ref");
    const char *name = cli__arg(args, "name");
    const char *ttl = cli__arg(args, "ttl");
    const char *visibility = cli__arg(args, "visibility");
    const char *sleep_after = cli__arg(args, "sleep-after");
    const char *schedule = cli__arg(args, "schedule");
    const char *timezone = cli__arg(args, "timezone");
    bool wait = cli__has(args, "wait");
    struct eph_err err = {0};
    json_t *body = NULL, *params = json_object(), *limits = json_object(), *resp = NULL,
           *final = NULL;
    int64_t ttl_s, sleep_s, timeout_ms;
    int rc;

    if (branch && ref) {
        rc = cli__usage(ctx, "--branch and --ref mean the same: give one");
        goto out;
    }
    if (ttl && duration_parse(ttl, &ttl_s, &err) < 0) {
        rc = cli__usage(ctx, "--ttl: %s", err.msg);
        goto out;
    }
    if (visibility && cli__one_of(visibility, cli__visibilities, "visibility", &err) < 0) {
        rc = cli__usage(ctx, "--visibility: %s", err.msg);
        goto out;
    }
    if (sleep_after && strcmp(sleep_after, "never") != 0 &&
        duration_parse(sleep_after, &sleep_s, &err) < 0) {
        rc = cli__usage(ctx, "--sleep-after: %s, or never", err.msg);
        goto out;
    }
    if (schedule && *schedule == '\0') {
        rc = cli__usage(ctx, "--schedule: empty, expected hours like \"Mon-Fri 08:00-20:00\"");
        goto out;
    }
    if (!schedule && (timezone || cli__has(args, "wake-outside-hours"))) {
        rc = cli__usage(ctx, "--%s only applies with --schedule",
                        timezone ? "timezone" : "wake-outside-hours");
        goto out;
    }
    if (parse_timeout(ctx, args, &timeout_ms) < 0) {
        rc = CLI_EXIT_USAGE;
        goto out;
    }
    for (size_t i = 0; i < args->n_opts; i++) {
        const char *flag = args->opts[i].flag->name;

        if ((strcmp(flag, "param") == 0 && cli__param_add(params, args->opts[i].value, &err) < 0) ||
            (strcmp(flag, "limit") == 0 && cli__limit_add(limits, args->opts[i].value, &err) < 0)) {
            rc = cli__usage(ctx, "%s", err.msg);
            goto out;
        }
    }
    body = json_pack("{s:s}", "project", args->pos[0]);
    if (branch || ref)
        json_object_set_new(body, "ref", json_string(branch ? branch : ref));
    if (name)
        json_object_set_new(body, "name", json_string(name));
    if (ttl)
        json_object_set_new(body, "ttl", json_string(ttl));
    if (visibility)
        json_object_set_new(body, "visibility", json_string(visibility));
    if (json_object_size(params) > 0)
        json_object_set(body, "params", params);
    if (sleep_after)
        json_object_set_new(body, "sleep_after", json_string(sleep_after));
    if (cli__has(args, "keep"))
        json_object_set_new(body, "keep", json_true());
    if (json_object_size(limits) > 0)
        json_object_set(body, "limits", limits);
    if (schedule) {
        json_t *sch = json_pack("{s:s}", "awake", schedule);

        if (timezone)
            json_object_set_new(sch, "timezone", json_string(timezone));
        if (cli__has(args, "wake-outside-hours"))
            json_object_set_new(sch, "wake_outside_hours", json_true());
        json_object_set_new(body, "schedule", sch);
    }
    if (cli__connect(ctx, &err) < 0 ||
        cli__http_json(ctx, "POST", "/envs", body, &resp, &err) < 0) {
        rc = cli__fail(ctx, &err);
        goto out;
    }
    name = cli__jstr(resp, "name", name ? name : "?");
    if (!ctx->json)
        fprintf(ctx->out, "environment %s created (phase %s)\n", name,
                cli__jstr(resp, "phase", "pending"));
    if (!wait) {
        if (ctx->json)
            cli__print_json(ctx, resp);
        rc = CLI_EXIT_OK;
        goto out;
    }
    fflush(ctx->out);
    rc = wait_until_ready(ctx, name, timeout_ms, &final);
    if (ctx->json && final)
        cli__print_json(ctx, final);
out:
    json_decref(final);
    json_decref(resp);
    json_decref(body);
    json_decref(params);
    json_decref(limits);
    return rc;
}

/* ------------------------------------------------------------- sleep, usage, limits: formatting */

void
cli__format_bytes(int64_t bytes, char *out, size_t out_size)
{
    static const char *const units[] = {"Ki", "Mi", "Gi", "Ti"};
    double v = (double)bytes;
    size_t u = 0;

    if (bytes < 1024) {
        snprintf(out, out_size, "%" PRId64 "B", bytes < 0 ? 0 : bytes);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < ARRAY_LEN(units)) {
        v /= 1024;
        u++;
    }
    /* Whole numbers as they were written ("512Mi"), the rest to a tenth. */
    if (v == (double)(int64_t)v || v >= 100)
        snprintf(out, out_size, "%.0f%s", v, units[u]);
    else
        snprintf(out, out_size, "%.1f%s", v, units[u]);
}

void
cli__format_cpu(int64_t millis, char *out, size_t out_size)
{
    if (millis < 0)
        millis = 0;
    if (millis % 1000 == 0)
        snprintf(out, out_size, "%" PRId64, millis / 1000);
    else if (millis % 100 == 0)
        snprintf(out, out_size, "%" PRId64 ".%" PRId64, millis / 1000, millis % 1000 / 100);
    else if (millis % 10 == 0)
        snprintf(out, out_size, "%" PRId64 ".%02" PRId64, millis / 1000, millis % 1000 / 10);
    else
        snprintf(out, out_size, "%" PRId64 ".%03" PRId64, millis / 1000, millis % 1000);
}

int
cli__limit_add(json_t *limits, const char *kv, struct eph_err *err)
{
    static const char *const keys[] = {"memory", "cpu", "pids", NULL};
    const char *eq = strchr(kv, '=');
    char *key;
    int rc = 0;

    if (eq == NULL || eq == kv || eq[1] == '\0')
        return eph_err_set(err, EPH_EINVAL,
                           "invalid --limit '%s', expected memory=SIZE, cpu=CORES or pids=N", kv);
    key = xstrndup(kv, (size_t)(eq - kv));
    if (cli__one_of(key, keys, "--limit", err) < 0)
        rc = EPH_EINVAL;
    else
        json_object_set_new(limits, key, json_string(eq + 1));
    free(key);
    return rc;
}

static bool
str_is(const char *s, const char *want)
{
    return s != NULL && strcmp(s, want) == 0;
}

void
cli__format_next(const json_t *env, int64_t now_ms, char *out, size_t out_size)
{
    const json_t *sleep = json_object_get(env, "sleep");
    const json_t *last = json_object_get(sleep, "last_transition");
    const char *phase = cli__jstr(env, "phase", "");
    const char *desired = cli__jstr(env, "desired", "");
    const char *cause = cli__jstr(sleep, "cause", NULL);
    int64_t next_sleep_ms = cli__jint(sleep, "next_sleep_at_ms");
    int64_t next_wake_ms = cli__jint(sleep, "next_wake_at_ms");
    char span[32], wake[48] = "";

    snprintf(out, out_size, "-");
    if (!json_is_object(sleep) || str_is(phase, "deleting") || str_is(phase, "deleted") ||
        str_is(desired, "deleted"))
        return;
    if (str_is(desired, "asleep") && !str_is(phase, "sleeping")) {
        snprintf(out, out_size, "going to sleep");
        return;
    }
    if (str_is(desired, "running") && str_is(phase, "sleeping")) {
        snprintf(out, out_size, "waking"); /* asked to, not started yet */
        return;
    }
    if (str_is(phase, "sleeping")) {
        int64_t since_ms =
            str_is(cli__jstr(last, "kind", NULL), "sleep") ? cli__jtime_ms(last, "at") : 0;

        if (next_wake_ms > 0) {
            cli__format_expires(now_ms, next_wake_ms, span, sizeof(span));
            snprintf(wake, sizeof(wake), ", wakes in %s",
                     strcmp(span, "expired") == 0 ? "a moment" : span);
        }
        if (since_ms > 0)
            cli__format_age(now_ms, since_ms, span, sizeof(span));
        snprintf(out, out_size, "asleep%s%s%s%s%s", since_ms > 0 ? " " : "",
                 since_ms > 0 ? span : "", cause && *cause ? ": " : "",
                 cause && *cause ? cause : "", wake);
        return;
    }
    if (str_is(phase, "failed"))
        return;
    if (json_is_true(json_object_get(sleep, "keep"))) {
        snprintf(out, out_size, "kept awake");
        return;
    }
    if ((str_is(phase, "starting") || str_is(phase, "preparing")) &&
        str_is(cli__jstr(last, "kind", NULL), "wake")) {
        snprintf(out, out_size, "waking");
        return;
    }
    if (str_is(phase, "ready") && next_sleep_ms > 0) {
        if (next_sleep_ms <= now_ms) {
            snprintf(out, out_size, "sleeps now");
        } else {
            cli__format_expires(now_ms, next_sleep_ms, span, sizeof(span));
            snprintf(out, out_size, "sleeps in %s", span);
        }
    }
}

/* ------------------------------------------------------------- eph ls */

int
cli__cmd_ls(struct cli_ctx *ctx, const struct cli_args *args)
{
    static const char *const headers[] = {"NAME", "PROJECT", "REF", "OWNER",  "PHASE",
                                          "IDLE", "NEXT",    "AGE", "EXPIRES"};
    struct eph_err err = {0};
    json_t *resp = NULL;
    const json_t *envs;
    struct cli_table t;
    int64_t now_ms = time_wall_ms();

    if (cli__connect(ctx, &err) < 0 ||
        cli__http_json(ctx, "GET", cli__has(args, "all") ? "/envs?all=1" : "/envs", NULL, &resp,
                       &err) < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, resp);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    envs = json_object_get(resp, "envs");
    if (json_array_size(envs) == 0) {
        fputs("no environments (create one with 'eph up PROJECT')\n", ctx->err);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(envs); i++) {
        const json_t *env = json_array_get(envs, i);
        const char *phase = cli__jstr(env, "phase", NULL);
        const json_t *sleep = json_object_get(env, "sleep");
        char age[32], expires[32] = "-", idle[32] = "-", next[96];

        cli__format_age(now_ms, cli__jint(env, "created_at_ms"), age, sizeof(age));
        /* Idle time counts while it runs; asleep, NEXT says for how long. */
        if (str_is(phase, "ready") && json_is_integer(json_object_get(sleep, "idle_ms")))
            cli__format_span(cli__jint(sleep, "idle_ms"), idle, sizeof(idle));
        cli__format_next(env, now_ms, next, sizeof(next));
        /* A deleted environment's expiry means nothing any more. */
        if (phase == NULL || strcmp(phase, "deleted") != 0)
            cli__format_expires(now_ms, cli__jint(env, "expires_at_ms"), expires, sizeof(expires));
        cli__table_add(
            &t, (const char *const[]){cli__jstr(env, "name", NULL), cli__jstr(env, "project", NULL),
                                      cli__jstr(env, "ref", NULL), cli__jstr(env, "owner", NULL),
                                      phase, idle, next, age, expires});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    json_decref(resp);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph get */

/* "<what>, 3m ago (2026-11-22T10:00:00Z)"-like text of a time: "-" when 0. */
static void
format_when(int64_t now_ms, int64_t at_ms, char *out, size_t out_size)
{
    char when[32], ago[32];

    if (at_ms <= 0) {
        snprintf(out, out_size, "-");
        return;
    }
    format_time(at_ms, when, sizeof(when));
    cli__format_age(now_ms, at_ms, ago, sizeof(ago));
    snprintf(out, out_size, "%s ago (%s)", ago, when);
}

/* The sleep block of `eph get`: nothing when the server says nothing of it. */
static void
add_sleep_rows(struct cli_table *t, const json_t *env, int64_t now_ms)
{
    const json_t *sleep = json_object_get(env, "sleep");
    const json_t *activity = json_object_get(sleep, "last_activity");
    const json_t *last = json_object_get(sleep, "last_transition");
    const char *after = cli__jstr(sleep, "sleep_after", NULL);
    const char *schedule = cli__jstr(sleep, "schedule", NULL);
    bool keep = json_is_true(json_object_get(sleep, "keep"));
    char text[512], when[96], next[96];

    if (!json_is_object(sleep))
        return;
    if (after == NULL)
        snprintf(text, sizeof(text), "%s", keep ? "never: kept awake" : "-");
    else if (strcmp(after, "never") == 0)
        snprintf(text, sizeof(text), "never%s", keep ? " (kept awake)" : "");
    else
        snprintf(text, sizeof(text), "%s idle%s", after, keep ? " (kept awake: not now)" : "");
    cli__table_add(t, (const char *const[]){"sleep after:", text});
    cli__table_add(t, (const char *const[]){"keep:", keep ? "yes" : "no"});
    if (schedule && *schedule) {
        bool allowed = json_is_true(json_object_get(sleep, "wake_allowed"));

        /* Whether a request would wake it matters while it is asleep. */
        if (json_is_boolean(json_object_get(sleep, "wake_allowed")) &&
            str_is(cli__jstr(env, "phase", NULL), "sleeping"))
            snprintf(text, sizeof(text), "%s (a request %s)", schedule,
                     allowed ? "wakes it now" : "does not wake it now: 503");
        else
            snprintf(text, sizeof(text), "%s", schedule);
        cli__table_add(t, (const char *const[]){"schedule:", text});
    } else if (json_object_get(sleep, "schedule") != NULL) {
        cli__table_add(t, (const char *const[]){"schedule:", "none (awake at any hour)"});
    }
    if (str_is(cli__jstr(env, "phase", NULL), "ready") &&
        json_is_integer(json_object_get(sleep, "idle_ms"))) {
        cli__format_span(cli__jint(sleep, "idle_ms"), text, sizeof(text));
        cli__table_add(t, (const char *const[]){"idle:", text});
    }
    cli__format_next(env, now_ms, next, sizeof(next));
    cli__table_add(t, (const char *const[]){"next:", next});
    if (json_is_object(activity)) {
        format_when(now_ms, cli__jtime_ms(activity, "at"), when, sizeof(when));
        snprintf(text, sizeof(text), "%s, %s", cli__jstr(activity, "what", "?"), when);
    } else {
        snprintf(text, sizeof(text), "none yet");
    }
    cli__table_add(t, (const char *const[]){"activity:", text});
    if (json_is_object(last)) {
        format_when(now_ms, cli__jtime_ms(last, "at"), when, sizeof(when));
        snprintf(text, sizeof(text), "%s %s: %s", cli__jstr(last, "kind", "?"),
                 strcmp(when, "-") == 0 ? "(under way)" : when,
                 cli__jstr(last, "reason", "no reason given"));
        cli__table_add(t, (const char *const[]){"transition:", text});
    }
}

/* usage and limits of `eph get`. */
static void
add_usage_rows(struct cli_table *t, const json_t *env)
{
    const json_t *usage = json_object_get(env, "usage");
    const json_t *limits = json_object_get(env, "limits");
    const char *note = cli__jstr(usage, "note", NULL);
    char text[512], part[64];
    size_t used = 0;

    if (json_is_object(usage)) {
        const json_t *cpu = json_object_get(usage, "cpu_seconds");

        cli__format_bytes(cli__jint(usage, "memory_bytes"), part, sizeof(part));
        snprintf(text, sizeof(text), "memory %s, cpu %.1fs", part,
                 json_is_number(cpu) ? json_number_value(cpu) : 0.0);
        cli__table_add(t, (const char *const[]){"usage:", text});
    }
    if (!json_is_object(limits))
        return;
    text[0] = '\0';
    if (cli__jint(limits, "memory_bytes") > 0) {
        cli__format_bytes(cli__jint(limits, "memory_bytes"), part, sizeof(part));
        used += (size_t)snprintf(text + used, sizeof(text) - used, "memory %s", part);
    }
    if (cli__jint(limits, "cpu_millis") > 0 && used < sizeof(text)) {
        cli__format_cpu(cli__jint(limits, "cpu_millis"), part, sizeof(part));
        used +=
            (size_t)snprintf(text + used, sizeof(text) - used, "%scpu %s", used ? ", " : "", part);
    }
    if (cli__jint(limits, "pids") > 0 && used < sizeof(text))
        used += (size_t)snprintf(text + used, sizeof(text) - used, "%spids %" PRId64,
                                 used ? ", " : "", cli__jint(limits, "pids"));
    /* Limits the server cannot hold are worth saying, with the reason. */
    if (used > 0 && used < sizeof(text) && json_is_false(json_object_get(usage, "limits_enforced")))
        snprintf(text + used, sizeof(text) - used, " (not enforced%s%s)", note && *note ? ": " : "",
                 note && *note ? note : "");
    cli__table_add(t, (const char *const[]){"limits:", used ? text : "none"});
}

static void
print_env_fields(struct cli_ctx *ctx, const json_t *env, int64_t now_ms)
{
    struct cli_table t;
    char commit[COMMIT_SHORT_LEN + 1], created[64], expires[80], when[32], left[32];
    json_t *params = json_object_get(env, "params");
    char *param_text = xstrdup("");
    int64_t created_ms = cli__jint(env, "created_at_ms");
    int64_t expires_ms = cli__jint(env, "expires_at_ms");

    snprintf(commit, sizeof(commit), "%s", cli__jstr(env, "commit", ""));
    for (void *it = json_object_iter(params); it; it = json_object_iter_next(params, it)) {
        const json_t *value = json_object_iter_value(it);
        char *next =
            xasprintf("%s%s%s=%s", param_text, *param_text ? ", " : "", json_object_iter_key(it),
                      json_is_string(value) ? json_string_value(value) : "?");

        free(param_text);
        param_text = next;
    }
    format_time(created_ms, when, sizeof(when));
    cli__format_age(now_ms, created_ms, left, sizeof(left));
    snprintf(created, sizeof(created), created_ms > 0 ? "%s (%s ago)" : "%s", when, left);
    format_time(expires_ms, when, sizeof(when));
    cli__format_expires(now_ms, expires_ms, left, sizeof(left));
    if (expires_ms <= 0)
        snprintf(expires, sizeof(expires), "-");
    else if (strcmp(left, "expired") == 0)
        snprintf(expires, sizeof(expires), "%s (expired)", when);
    else
        snprintf(expires, sizeof(expires), "%s (in %s)", when, left);

    cli__table_init(&t, 2, NULL);
    cli__table_add(&t, (const char *const[]){"name:", cli__jstr(env, "name", NULL)});
    cli__table_add(&t, (const char *const[]){"project:", cli__jstr(env, "project", NULL)});
    cli__table_add(&t, (const char *const[]){"ref:", cli__jstr(env, "ref", NULL)});
    cli__table_add(&t, (const char *const[]){"commit:", commit});
    cli__table_add(&t, (const char *const[]){"owner:", cli__jstr(env, "owner", NULL)});
    cli__table_add(&t, (const char *const[]){"visibility:", cli__jstr(env, "visibility", NULL)});
    cli__table_add(&t, (const char *const[]){"phase:", cli__jstr(env, "phase", NULL)});
    cli__table_add(&t, (const char *const[]){"reason:", cli__jstr(env, "reason", NULL)});
    if (*param_text)
        cli__table_add(&t, (const char *const[]){"params:", param_text});
    cli__table_add(&t, (const char *const[]){"created:", created});
    cli__table_add(&t, (const char *const[]){"expires:", expires});
    add_sleep_rows(&t, env, now_ms);
    add_usage_rows(&t, env);
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    free(param_text);
}

static void
print_env_services(struct cli_ctx *ctx, const json_t *env)
{
    static const char *const headers[] = {"NAME", "STATE", "PORT", "URL", "RESTARTS", "PID"};
    const json_t *services = json_object_get(env, "services");
    struct cli_table t;

    if (json_array_size(services) == 0)
        return;
    fputs("\nSERVICES\n", ctx->out);
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        char port[24] = "", restarts[24], pid[24] = "";

        if (cli__jint(svc, "port") > 0)
            snprintf(port, sizeof(port), "%" PRId64, cli__jint(svc, "port"));
        snprintf(restarts, sizeof(restarts), "%" PRId64, cli__jint(svc, "restarts"));
        if (cli__jint(svc, "pid") > 0)
            snprintf(pid, sizeof(pid), "%" PRId64, cli__jint(svc, "pid"));
        cli__table_add(&t, (const char *const[]){cli__jstr(svc, "name", NULL),
                                                 cli__jstr(svc, "state", NULL), port,
                                                 cli__jstr(svc, "url", NULL), restarts, pid});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    /* Why a service failed or restarts does not fit a column: one line each. */
    for (size_t i = 0; i < json_array_size(services); i++) {
        const json_t *svc = json_array_get(services, i);
        const char *why = cli__jstr(svc, "reason", NULL);

        if (why) {
            char *clean = cli__sanitize(why);

            fprintf(ctx->out, "  %s: %s\n", cli__jstr(svc, "name", "?"), clean);
            free(clean);
        }
    }
}

static void
print_env_events(struct cli_ctx *ctx, const json_t *env)
{
    static const char *const headers[] = {"TIME", "ACTOR", "ACTION", "DETAIL"};
    const json_t *events = json_object_get(env, "events");
    struct cli_table t;

    if (json_array_size(events) == 0)
        return;
    fputs("\nEVENTS\n", ctx->out);
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(events); i++) {
        const json_t *ev = json_array_get(events, i);
        char at[32];

        format_time(cli__jint(ev, "at_ms"), at, sizeof(at));
        cli__table_add(&t, (const char *const[]){at, cli__jstr(ev, "actor", NULL),
                                                 cli__jstr(ev, "action", NULL),
                                                 cli__jstr(ev, "detail", NULL)});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
}

int
cli__cmd_get(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct eph_err err = {0};
    char *path = env_path(args->pos[0], "");
    json_t *env = NULL;
    int rc = cli__connect(ctx, &err);

    if (rc == 0)
        rc = cli__http_json(ctx, "GET", path, NULL, &env, &err);
    free(path);
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, env);
    } else {
        print_env_fields(ctx, env, time_wall_ms());
        print_env_services(ctx, env);
        print_env_events(ctx, env);
    }
    json_decref(env);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph logs */

int
cli__cmd_logs(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *tail = cli__arg(args, "tail");
    bool follow = cli__has(args, "follow");
    struct eph_err err = {0};
    char *svc, *suffix, *path;
    char sep = '?';
    int rc;

    if (tail) {
        char *end;
        long n;

        errno = 0;
        n = strtol(tail, &end, 10);
        if (*tail == '\0' || *end != '\0' || n < 0 || errno == ERANGE || n > INT_MAX)
            return cli__usage(ctx, "invalid --tail '%s', expected a number of lines", tail);
    }
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    svc = cli__url_escape(args->pos[1], false);
    suffix = xasprintf("/logs/%s", svc);
    free(svc);
    if (tail) {
        char *next = xasprintf("%s%ctail=%s", suffix, sep, tail);

        free(suffix);
        suffix = next;
        sep = '&';
    }
    if (follow) {
        char *next = xasprintf("%s%cfollow=1", suffix, sep);

        free(suffix);
        suffix = next;
    }
    path = env_path(args->pos[0], suffix);
    free(suffix);
    fflush(ctx->out);
    rc = cli__http_stream(ctx, path, ctx->out, follow, &err);
    free(path);
    return rc < 0 ? cli__fail(ctx, &err) : CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph extend */

int
cli__cmd_extend(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *by = args->pos[1];
    struct eph_err err = {0};
    json_t *body, *env = NULL;
    char *path;
    int64_t by_s;
    int rc;

    if (duration_parse(by, &by_s, &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_pack("{s:s}", "by", by);
    path = env_path(args->pos[0], "/extend");
    rc = cli__http_json(ctx, "POST", path, body, &env, &err);
    json_decref(body);
    free(path);
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, env);
    } else {
        int64_t expires_ms = cli__jint(env, "expires_at_ms");
        char left[32], when[32];

        cli__format_expires(time_wall_ms(), expires_ms, left, sizeof(left));
        format_time(expires_ms, when, sizeof(when));
        fprintf(ctx->out, "environment %s now expires in %s (%s)\n",
                cli__jstr(env, "name", args->pos[0]), left, when);
    }
    json_decref(env);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph visibility */

int
cli__cmd_visibility(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *visibility = args->pos[1];
    struct eph_err err = {0};
    json_t *body, *env = NULL;
    char *path;
    int rc;

    if (cli__one_of(visibility, cli__visibilities, "visibility", &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_pack("{s:s}", "visibility", visibility);
    path = env_path(args->pos[0], "/visibility");
    rc = cli__http_json(ctx, "POST", path, body, &env, &err);
    json_decref(body);
    free(path);
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->json && env)
        cli__print_json(ctx, env);
    else
        fprintf(ctx->out, "environment %s is now %s\n", cli__jstr(env, "name", args->pos[0]),
                cli__jstr(env, "visibility", visibility));
    json_decref(env);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph link */

int
cli__cmd_link(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    const char *ttl = cli__arg(args, "ttl");
    const char *service = cli__arg(args, "service");
    struct eph_err err = {0};
    json_t *body, *link = NULL;
    const char *url;
    char *path;
    int64_t ttl_s;
    int rc;

    if (ttl && duration_parse(ttl, &ttl_s, &err) < 0)
        return cli__usage(ctx, "--ttl: %s", err.msg);
    if (service && *service == '\0')
        return cli__usage(ctx, "--service: empty name");
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_object();
    if (ttl)
        json_object_set_new(body, "ttl", json_string(ttl));
    if (service)
        json_object_set_new(body, "service", json_string(service));
    path = env_path(name, "/links");
    rc = cli__http_json(ctx, "POST", path, body, &link, &err);
    json_decref(body);
    free(path);
    if (rc < 0)
        return cli__fail(ctx, &err);
    url = cli__jstr(link, "url", NULL);
    rc = CLI_EXIT_OK;
    if (ctx->json) {
        cli__print_json(ctx, link);
    } else if (url == NULL) {
        fputs("eph: the server's answer has no url\n", ctx->err);
        rc = CLI_EXIT_FAILED;
    } else {
        int64_t expires_ms = cli__jtime_ms(link, "expires_at");
        char *clean = cli__sanitize(url);
        char when[32] = "-", left[32];

        format_time(expires_ms, when, sizeof(when));
        cli__format_expires(time_wall_ms(), expires_ms, left, sizeof(left));
        fprintf(ctx->out, "%s\n", clean);
        fflush(ctx->out);
        /* Who holds the URL gets in without signing in: say until when. */
        fprintf(ctx->err, "anyone with this link can open %s%s%s until %s (in %s)\n", name,
                service ? " " : "", service ? service : "", when, left);
        free(clean);
    }
    json_decref(link);
    return rc;
}

/* ------------------------------------------------------------- eph rm */

/* Polls until GET answers 404 or phase deleted. */
static int
wait_until_deleted(struct cli_ctx *ctx, const char *name, int64_t timeout_ms)
{
    char *path = env_path(name, "");
    int64_t deadline_ms = time_mono_ms() + timeout_ms;
    int rc;

    for (;;) {
        struct eph_err err = {0};
        json_t *env = NULL;
        char phase[32];
        int64_t left_ms;

        rc = cli__http_json(ctx, "GET", path, NULL, &env, &err);
        if (rc == EPH_ENOTFOUND) {
            rc = CLI_EXIT_OK;
            break;
        }
        if (rc < 0) {
            rc = cli__fail(ctx, &err);
            break;
        }
        snprintf(phase, sizeof(phase), "%s", cli__jstr(env, "phase", "?"));
        json_decref(env);
        if (strcmp(phase, "deleted") == 0) {
            rc = CLI_EXIT_OK;
            break;
        }
        left_ms = deadline_ms - time_mono_ms();
        if (left_ms <= 0) {
            char span[32];

            cli__format_span(timeout_ms, span, sizeof(span));
            fprintf(ctx->err, "eph: environment %s is not deleted after %s (phase %s)\n", name,
                    span, phase);
            rc = CLI_EXIT_FAILED;
            break;
        }
        cli__sleep_ms(left_ms < WAIT_POLL_MS ? left_ms : WAIT_POLL_MS);
    }
    free(path);
    return rc;
}

int
cli__cmd_rm(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    struct eph_err err = {0};
    json_t *env = NULL;
    char *path;
    int64_t timeout_ms;
    int rc;

    if (parse_timeout(ctx, args, &timeout_ms) < 0)
        return CLI_EXIT_USAGE;
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    path = env_path(name, "");
    rc = cli__http_json(ctx, "DELETE", path, NULL, &env, &err);
    free(path);
    json_decref(env);
    if (rc < 0)
        return cli__fail(ctx, &err);
    fprintf(ctx->out, "environment %s is being deleted\n", name);
    if (!cli__has(args, "wait"))
        return CLI_EXIT_OK;
    fflush(ctx->out);
    rc = wait_until_deleted(ctx, name, timeout_ms);
    if (rc == CLI_EXIT_OK)
        fprintf(ctx->out, "environment %s deleted\n", name);
    return rc;
}

/* ------------------------------------------------------------- eph sleep, wake, keep */

/* POST /envs/NAME/<action> with `body` (borrowed, may be NULL); the answer in *env. */
static int
post_env(struct cli_ctx *ctx, const char *name, const char *action, const json_t *body,
         json_t **env)
{
    struct eph_err err = {0};
    char *suffix = xasprintf("/%s", action);
    char *path = env_path(name, suffix);
    int rc = cli__connect(ctx, &err);

    *env = NULL;
    if (rc == 0)
        rc = cli__http_json(ctx, "POST", path, body, env, &err);
    free(path);
    free(suffix);
    return rc < 0 ? cli__fail(ctx, &err) : CLI_EXIT_OK;
}

int
cli__cmd_sleep(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    json_t *env = NULL;
    int rc = post_env(ctx, name, "sleep", NULL, &env);

    if (rc != CLI_EXIT_OK)
        return rc;
    if (ctx->json && env)
        cli__print_json(ctx, env);
    else if (str_is(cli__jstr(env, "phase", NULL), "sleeping"))
        fprintf(ctx->out, "environment %s is asleep\n", cli__jstr(env, "name", name));
    else
        fprintf(ctx->out,
                "environment %s is going to sleep: a request to it or 'eph wake %s' wakes it\n",
                cli__jstr(env, "name", name), cli__jstr(env, "name", name));
    json_decref(env);
    return CLI_EXIT_OK;
}

int
cli__cmd_wake(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    json_t *env = NULL, *final = NULL;
    int64_t timeout_ms;
    int rc;

    if (parse_timeout(ctx, args, &timeout_ms) < 0)
        return CLI_EXIT_USAGE;
    rc = post_env(ctx, name, "wake", NULL, &env);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (!cli__has(args, "wait")) {
        if (ctx->json && env)
            cli__print_json(ctx, env);
        else if (str_is(cli__jstr(env, "phase", NULL), "ready"))
            fprintf(ctx->out, "environment %s is awake\n", cli__jstr(env, "name", name));
        else
            fprintf(ctx->out, "environment %s is waking up\n", cli__jstr(env, "name", name));
        json_decref(env);
        return CLI_EXIT_OK;
    }
    if (!ctx->json)
        fprintf(ctx->out, "environment %s is waking up\n", cli__jstr(env, "name", name));
    fflush(ctx->out);
    rc = wait_until_ready(ctx, cli__jstr(env, "name", name), timeout_ms, &final);
    if (ctx->json && final)
        cli__print_json(ctx, final);
    json_decref(final);
    json_decref(env);
    return rc;
}

int
cli__cmd_keep(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    bool keep = !cli__has(args, "off");
    json_t *body = json_pack("{s:b}", "keep", keep);
    json_t *env = NULL;
    int rc = post_env(ctx, name, "keep", body, &env);

    json_decref(body);
    if (rc != CLI_EXIT_OK)
        return rc;
    name = cli__jstr(env, "name", name);
    if (ctx->json && env) {
        cli__print_json(ctx, env);
    } else if (keep) {
        fprintf(ctx->out, "environment %s is kept awake: no idle sleep, no schedule\n", name);
    } else {
        const json_t *sleep = json_object_get(env, "sleep");
        const char *after = cli__jstr(sleep, "sleep_after", NULL);

        if (after && strcmp(after, "never") != 0)
            fprintf(ctx->out, "environment %s is no longer kept awake: it sleeps after %s idle\n",
                    name, after);
        else
            fprintf(ctx->out, "environment %s is no longer kept awake\n", name);
    }
    json_decref(env);
    return CLI_EXIT_OK;
}
