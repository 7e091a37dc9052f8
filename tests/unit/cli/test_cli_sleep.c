/*
 * tests/unit/cli/test_cli_sleep.c - how the CLI shows sleep (cli/cli_envs.c):
 * the NEXT column of `eph ls` for each state an environment can be in,
 * sizes and CPU amounts, `--limit KEY=VALUE`, and the new verbs' usage
 * errors (no server needed).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_int.h"
#include "util/xmalloc.h"

#define NOW_MS 1795341600000LL /* 2026-11-22T10:00:00Z */
#define MIN_MS (60 * 1000LL)
#define HOUR_MS (60 * MIN_MS)

/* NEXT for an environment given as JSON text. */
static void
next_of(const char *json_text, char *out, size_t out_size)
{
    json_error_t jerr;
    json_t *env = json_loads(json_text, 0, &jerr);

    cr_assert_not_null(env, "bad test JSON: %s", jerr.text);
    cli__format_next(env, NOW_MS, out, out_size);
    json_decref(env);
}

Test(cli_sleep, says_when_a_ready_environment_will_sleep)
{
    char out[96], text[512];

    snprintf(text, sizeof(text),
             "{\"phase\": \"ready\", \"desired\": \"running\", \"sleep\": {\"keep\": false, "
             "\"idle_ms\": 180000, \"next_sleep_at_ms\": %lld}}",
             NOW_MS + 12 * MIN_MS);
    next_of(text, out, sizeof(out));
    cr_expect_str_eq(out, "sleeps in 12m");
    snprintf(text, sizeof(text),
             "{\"phase\": \"ready\", \"desired\": \"running\", \"sleep\": {\"keep\": false, "
             "\"next_sleep_at_ms\": %lld}}",
             NOW_MS - 1000);
    next_of(text, out, sizeof(out));
    cr_expect_str_eq(out, "sleeps now");
    next_of("{\"phase\": \"ready\", \"desired\": \"running\", \"sleep\": {\"keep\": false, "
            "\"next_sleep_at_ms\": 0}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "-", "sleep_after never and no schedule: nothing due");
}

Test(cli_sleep, says_how_long_and_why_an_environment_sleeps)
{
    char out[96], text[512];

    snprintf(text, sizeof(text),
             "{\"phase\": \"sleeping\", \"desired\": \"asleep\", \"sleep\": {\"cause\": \"idle\", "
             "\"last_transition\": {\"kind\": \"sleep\", \"reason\": \"idle for 30m\", "
             "\"at_ms\": %lld}}}",
             NOW_MS - 3 * HOUR_MS);
    next_of(text, out, sizeof(out));
    cr_expect_str_eq(out, "asleep 3h: idle");
    snprintf(text, sizeof(text),
             "{\"phase\": \"sleeping\", \"desired\": \"asleep\", \"sleep\": {\"cause\": "
             "\"schedule\", \"next_wake_at_ms\": %lld, \"last_transition\": {\"kind\": "
             "\"sleep\", \"at_ms\": %lld}}}",
             NOW_MS + 9 * HOUR_MS, NOW_MS - 2 * HOUR_MS);
    next_of(text, out, sizeof(out));
    cr_expect_str_eq(out, "asleep 2h: schedule, wakes in 9h");
    next_of("{\"phase\": \"sleeping\", \"desired\": \"asleep\", \"sleep\": {\"cause\": null, "
            "\"last_transition\": null}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "asleep");
}

Test(cli_sleep, names_the_states_in_between_and_keep)
{
    char out[96];

    next_of("{\"phase\": \"ready\", \"desired\": \"asleep\", \"sleep\": {\"cause\": \"manual\"}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "going to sleep");
    next_of("{\"phase\": \"starting\", \"desired\": \"running\", \"sleep\": {\"last_transition\": "
            "{\"kind\": \"wake\", \"reason\": \"request web\", \"at_ms\": 0}}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "waking");
    next_of("{\"phase\": \"sleeping\", \"desired\": \"running\", \"sleep\": {}}", out, sizeof(out));
    cr_expect_str_eq(out, "waking", "woken, not started yet");
    next_of("{\"phase\": \"starting\", \"desired\": \"running\", \"sleep\": {\"last_transition\": "
            "null}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "-", "a first start is no wake");
    next_of("{\"phase\": \"ready\", \"desired\": \"running\", \"sleep\": {\"keep\": true, "
            "\"next_sleep_at_ms\": 0}}",
            out, sizeof(out));
    cr_expect_str_eq(out, "kept awake");
    next_of("{\"phase\": \"failed\", \"desired\": \"running\", \"sleep\": {\"keep\": true}}", out,
            sizeof(out));
    cr_expect_str_eq(out, "-");
    next_of("{\"phase\": \"deleting\", \"desired\": \"deleted\", \"sleep\": {\"keep\": true}}", out,
            sizeof(out));
    cr_expect_str_eq(out, "-");
    next_of("{\"phase\": \"ready\", \"desired\": \"running\"}", out, sizeof(out));
    cr_expect_str_eq(out, "-", "a server that says nothing of sleep");
}

Test(cli_sleep, formats_sizes_and_cpu)
{
    static const struct {
        long long bytes;
        const char *want;
    } sizes[] = {
        {0, "0B"},
        {900, "900B"},
        {1024, "1Ki"},
        {512LL << 20, "512Mi"},
        {(long long)(34.2 * (1 << 20)), "34.2Mi"},
        {3LL << 29, "1.5Gi"},
        {200LL << 20, "200Mi"},
    };
    static const struct {
        long long millis;
        const char *want;
    } cpus[] = {{1000, "1"}, {500, "0.5"}, {250, "0.25"}, {2500, "2.5"}, {1, "0.001"}};
    char out[32];

    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        cli__format_bytes(sizes[i].bytes, out, sizeof(out));
        cr_expect_str_eq(out, sizes[i].want, "size case %zu", i);
    }
    for (size_t i = 0; i < ARRAY_LEN(cpus); i++) {
        cli__format_cpu(cpus[i].millis, out, sizeof(out));
        cr_expect_str_eq(out, cpus[i].want, "cpu case %zu", i);
    }
}

Test(cli_sleep, reads_limit_flags)
{
    json_t *limits = json_object();
    struct eph_err err = {0};

    cr_expect_eq(cli__limit_add(limits, "memory=512Mi", &err), 0, "%s", err.msg);
    cr_expect_eq(cli__limit_add(limits, "cpu=0.5", &err), 0, "%s", err.msg);
    cr_expect_eq(cli__limit_add(limits, "pids=64", &err), 0, "%s", err.msg);
    cr_expect_str_eq(json_string_value(json_object_get(limits, "memory")), "512Mi");
    cr_expect_str_eq(json_string_value(json_object_get(limits, "cpu")), "0.5");
    cr_expect_str_eq(json_string_value(json_object_get(limits, "pids")), "64");
    cr_expect_eq(cli__limit_add(limits, "memory", &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg,
                     "invalid --limit 'memory', expected memory=SIZE, cpu=CORES or pids=N");
    cr_expect_eq(cli__limit_add(limits, "memory=", &err), EPH_EINVAL);
    cr_expect_eq(cli__limit_add(limits, "=1", &err), EPH_EINVAL);
    cr_expect_eq(cli__limit_add(limits, "disk=1G", &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "invalid --limit 'disk', expected memory, cpu or pids");
    json_decref(limits);
}

/* Runs `eph ARGS...` with no server configured; returns the exit code. */
static int
run(int argc, char **argv)
{
    setenv("EPH_CONFIG", "/nonexistent/eph-test-config", 1);
    unsetenv("EPH_SERVER");
    unsetenv("EPH_TOKEN");
    return cli_main(argc, argv);
}

Test(cli_sleep, refuses_bad_sleep_flags_before_connecting, .init = cr_redirect_stderr)
{
    char *bad_after[] = {"eph", "up", "shop", "--sleep-after", "soon"};
    char *tz_alone[] = {"eph", "up", "shop", "--timezone", "Europe/Madrid"};
    char *woh_alone[] = {"eph", "up", "shop", "--wake-outside-hours"};
    char *bad_limit[] = {"eph", "up", "shop", "--limit", "disk=1G"};
    char *timeout_alone[] = {"eph", "wake", "fx", "--timeout", "1m"};
    char *no_name[] = {"eph", "keep"};

    cr_expect_eq(run(ARRAY_LEN(bad_after), bad_after), CLI_EXIT_USAGE);
    cr_expect_eq(run(ARRAY_LEN(tz_alone), tz_alone), CLI_EXIT_USAGE);
    cr_expect_eq(run(ARRAY_LEN(woh_alone), woh_alone), CLI_EXIT_USAGE);
    cr_expect_eq(run(ARRAY_LEN(bad_limit), bad_limit), CLI_EXIT_USAGE);
    cr_expect_eq(run(ARRAY_LEN(timeout_alone), timeout_alone), CLI_EXIT_USAGE);
    cr_expect_eq(run(ARRAY_LEN(no_name), no_name), CLI_EXIT_USAGE);
    fflush(stderr);
    cr_expect_stderr_eq_str(
        "eph: --sleep-after: invalid duration 'soon', expected e.g. 30m, 2h or 1h30m, or never\n"
        "run 'eph up --help' for usage\n"
        "eph: --timezone only applies with --schedule\n"
        "run 'eph up --help' for usage\n"
        "eph: --wake-outside-hours only applies with --schedule\n"
        "run 'eph up --help' for usage\n"
        "eph: invalid --limit 'disk', expected memory, cpu or pids\n"
        "run 'eph up --help' for usage\n"
        "eph: --timeout only applies with --wait\n"
        "run 'eph wake --help' for usage\n"
        "eph: missing NAME\n"
        "run 'eph keep --help' for usage\n");
}
