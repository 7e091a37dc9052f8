/*
 * tests/unit/cli/test_cli_table.c - the CLI's pure parts: tables, AGE and
 * EXPIRES, argument parsing, --param, the client config, help, and the
 * exit codes of usage errors (no server needed).
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "cli/cli_int.h"
#include "util/fs.h"

/* Prints the table into a string; returns it (free() it). */
static char *
capture_table(struct cli_table *t)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    cli__table_print(t, mem);
    fclose(mem);
    return text;
}

/* ------------------------------------------------------------- tables */

Test(cli_table, pads_each_column_to_its_widest_cell_and_leaves_the_last_unpadded)
{
    static const char *const headers[] = {"NAME", "PHASE", "AGE"};
    struct cli_table t;
    char *out;

    cli__table_init(&t, 3, headers);
    cli__table_add(&t, (const char *const[]){"fx", "ready", "5m"});
    cli__table_add(&t, (const char *const[]){"shop-feature-x", "starting", "2h"});
    out = capture_table(&t);
    cr_expect_str_eq(out, "NAME             PHASE      AGE\n"
                          "fx               ready      5m\n"
                          "shop-feature-x   starting   2h\n");
    cr_expect_eq(t.widths[0], 14);
    cr_expect_eq(t.widths[1], 8);
    cr_expect_eq(t.widths[2], 3);
    free(out);
    cli__table_release(&t);
}

Test(cli_table, shows_missing_cells_as_a_dash_and_hides_control_characters)
{
    static const char *const headers[] = {"A", "B", "C"};
    struct cli_table t;
    char *out;

    cli__table_init(&t, 3, headers);
    cli__table_add(&t, (const char *const[]){NULL, "", "two\nlines\033[2J"});
    out = capture_table(&t);
    cr_expect_str_eq(out, "A   B   C\n"
                          "-   -   two lines [2J\n");
    free(out);
    cli__table_release(&t);
}

Test(cli_table, measures_utf8_by_code_points)
{
    static const char *const headers[] = {"WHO", "X"};
    struct cli_table t;
    char *out;

    cr_expect_eq(cli__display_width("héllo"), 5);
    cr_expect_eq(cli__display_width(""), 0);
    cli__table_init(&t, 2, headers);
    cli__table_add(&t, (const char *const[]){"zoë", "1"});
    out = capture_table(&t);
    cr_expect_str_eq(out, "WHO   X\nzoë   1\n");
    free(out);
    cli__table_release(&t);
}

Test(cli_table, keeps_its_widths_across_prints_so_followed_rows_line_up)
{
    static const char *const headers[] = {"ID", "WHAT"};
    struct cli_table t;
    char *first, *second;

    cli__table_init(&t, 2, headers);
    cli__table_add(&t, (const char *const[]){"1234567", "a"});
    first = capture_table(&t);
    cli__table_add(&t, (const char *const[]){"8", "b"});
    second = capture_table(&t);
    cr_expect_str_eq(first, "ID        WHAT\n1234567   a\n");
    cr_expect_str_eq(second, "8         b\n", "no header again, same column");
    free(first);
    free(second);
    cli__table_release(&t);
}

Test(cli_table, indents_headerless_tables)
{
    struct cli_table t;
    char *out;

    cli__table_init(&t, 2, NULL);
    t.indent = "  ";
    cli__table_add(&t, (const char *const[]){"api", "healthy"});
    cli__table_add(&t, (const char *const[]){"db", "starting"});
    out = capture_table(&t);
    cr_expect_str_eq(out, "  api   healthy\n  db    starting\n");
    free(out);
    cli__table_release(&t);
}

/* ------------------------------------------------------------- AGE and EXPIRES */

#define NOW 1795341600000LL /* 2026-11-22T10:00:00Z */
#define S 1000LL
#define M (60 * S)
#define H (60 * M)
#define D (24 * H)

static const struct {
    int64_t then_ms;
    const char *want;
} ages[] = {
    {NOW, "0s"},
    {NOW - 45 * S, "45s"},
    {NOW - 5 * M, "5m"},
    {NOW - 5 * M - 20 * S, "5m"},
    {NOW - 5 * M - 40 * S, "6m"},
    {NOW - 2 * H, "2h"},
    {NOW - 2 * H - 30 * M, "2h30m"},
    {NOW - D - 3 * H, "1d3h"},
    {NOW - D - 3 * H - 10 * M, "1d3h"},
    {NOW + 5 * S, "0s"}, /* a server clock ahead of ours */
    {0, "-"},            /* unset */
};

Test(cli_time, formats_age_as_the_largest_two_units_rounded)
{
    for (size_t i = 0; i < sizeof(ages) / sizeof(ages[0]); i++) {
        char out[32];

        cli__format_age(NOW, ages[i].then_ms, out, sizeof(out));
        cr_expect_str_eq(out, ages[i].want, "case %zu", i);
    }
}

static const struct {
    int64_t expires_ms;
    const char *want;
} expiries[] = {
    {NOW + 5 * M, "5m"},
    {NOW + 2 * H, "2h"},
    {NOW + 3 * H - 1500, "3h"}, /* "now expires in 3h", not "2h59m" */
    {NOW + D + 3 * H, "1d3h"},
    {NOW + 300, "1s"},
    {NOW, "expired"},
    {NOW - 10 * M, "expired"},
    {0, "-"},
};

Test(cli_time, formats_expiry_as_time_left_or_expired)
{
    for (size_t i = 0; i < sizeof(expiries) / sizeof(expiries[0]); i++) {
        char out[32];

        cli__format_expires(NOW, expiries[i].expires_ms, out, sizeof(out));
        cr_expect_str_eq(out, expiries[i].want, "case %zu", i);
    }
}

/* ------------------------------------------------------------- arguments */

static const struct cli_verb *
verb_named(const char *name)
{
    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        if (strcmp(v->name, name) == 0)
            return v;
    }
    cr_assert_fail("no verb '%s'", name);
    return NULL;
}

Test(cli_args, parses_flags_in_every_spelling_and_keeps_repeated_params)
{
    char *argv[] = {"eph",     "--server", "http://s:1", "up",      "shop", "--branch=feature-x",
                    "-ojson",  "--param",  "a=1",        "--param", "b=2",  "--wait",
                    "--token", "-",        NULL};
    int argc = 14, i = 1;
    struct cli_args args = {0};
    struct eph_err err = {0};
    const struct cli_verb *verb;
    size_t params = 0;

    cr_assert_eq(cli__args_parse(NULL, argc, argv, &i, true, &args, &err), 0, "%s", err.msg);
    cr_assert_eq(i, 3);
    verb = cli__verb_find(argc, argv, &i, &err);
    cr_assert_not_null(verb);
    cr_assert_str_eq(verb->name, "up");
    cr_assert_eq(cli__args_parse(verb, argc, argv, &i, false, &args, &err), 0, "%s", err.msg);
    cr_expect_eq(args.n_pos, 1);
    cr_expect_str_eq(args.pos[0], "shop");
    cr_expect_str_eq(cli__arg(&args, "server"), "http://s:1");
    cr_expect_str_eq(cli__arg(&args, "branch"), "feature-x");
    cr_expect_str_eq(cli__arg(&args, "output"), "json");
    cr_expect_str_eq(cli__arg(&args, "token"), "-", "a value may start with a dash");
    cr_expect(cli__has(&args, "wait"));
    cr_expect_not(cli__has(&args, "ttl"));
    for (size_t k = 0; k < args.n_opts; k++)
        params += strcmp(args.opts[k].flag->name, "param") == 0;
    cr_expect_eq(params, 2);
}

Test(cli_args, takes_everything_after_a_double_dash_as_positional)
{
    char *argv[] = {"eph", "logs", "--", "fx", "--weird"};
    int i = 1;
    struct cli_args args = {0};
    struct eph_err err = {0};
    const struct cli_verb *verb = cli__verb_find(5, argv, &i, &err);

    cr_assert_eq(cli__args_parse(verb, 5, argv, &i, false, &args, &err), 0, "%s", err.msg);
    cr_expect_eq(args.n_pos, 2);
    cr_expect_str_eq(args.pos[1], "--weird");
}

static const struct {
    const char *verb;
    const char *args[4];
    const char *want;
} bad_args[] = {
    {"ls", {"--bogus"}, "unknown flag '--bogus'"},
    {"ls", {"--bogus=1"}, "unknown flag '--bogus'"},
    {"ls", {"-x"}, "unknown flag '-x'"},
    {"ls", {"-Ax"}, "unknown flag '-Ax'"},
    {"ls", {"--all=yes"}, "flag --all takes no value"},
    {"up", {"shop", "--ttl"}, "flag --ttl needs a value (DURATION)"},
    {"get", {"fx", "extra"}, "unexpected argument 'extra'"},
    {"ls", {"fx"}, "unexpected argument 'fx'"},
    {"logs", {"fx", "--ttl", "1h"}, "unknown flag '--ttl'"},
    {"token ls", {"--name", "x"}, "unknown flag '--name'"},
    {"user passwd", {"alice", "--password", "x"}, "unknown flag '--password'"},
    {"user role", {"alice", "admin", "x"}, "unexpected argument 'x'"},
};

Test(cli_args, rejects_bad_flags_with_a_message_naming_them)
{
    for (size_t k = 0; k < sizeof(bad_args) / sizeof(bad_args[0]); k++) {
        char *argv[8] = {"eph"};
        int argc = 1, i = 1;
        struct cli_args args = {0};
        struct eph_err err = {0};

        for (size_t a = 0; a < 4 && bad_args[k].args[a]; a++)
            argv[argc++] = (char *)bad_args[k].args[a];
        cr_expect_eq(
            cli__args_parse(verb_named(bad_args[k].verb), argc, argv, &i, false, &args, &err),
            EPH_EINVAL, "case %zu", k);
        cr_expect_str_eq(err.msg, bad_args[k].want, "case %zu", k);
    }
}

Test(cli_args, finds_two_word_verbs_and_names_unknown_ones)
{
    char *add[] = {"eph", "project", "add", "shop"};
    char *alone[] = {"eph", "project"};
    char *wrong[] = {"eph", "project", "rm"};
    char *nope[] = {"eph", "nope"};
    struct eph_err err = {0};
    int i = 1;

    cr_expect_str_eq(cli__verb_find(4, add, &i, &err)->name, "project add");
    cr_expect_eq(i, 3);
    i = 1;
    cr_expect_null(cli__verb_find(2, alone, &i, &err));
    cr_expect_str_eq(err.msg, "'project' needs a subverb, e.g. 'project add'");
    i = 1;
    cr_expect_null(cli__verb_find(3, wrong, &i, &err));
    cr_expect_str_eq(err.msg, "unknown verb 'project rm', expected 'project add'");
    i = 1;
    cr_expect_null(cli__verb_find(2, nope, &i, &err));
    cr_expect_str_eq(err.msg, "unknown verb 'nope'");
}

Test(cli_args, splits_params_at_the_first_equals_sign)
{
    json_t *params = json_object();
    struct eph_err err = {0};

    cr_expect_eq(cli__param_add(params, "dataset=edge-cases", &err), 0);
    cr_expect_eq(cli__param_add(params, "url=http://x/?a=b", &err), 0);
    cr_expect_eq(cli__param_add(params, "empty=", &err), 0);
    cr_expect_eq(cli__param_add(params, "dataset=natural", &err), 0, "the last one wins");
    cr_expect_str_eq(json_string_value(json_object_get(params, "dataset")), "natural");
    cr_expect_str_eq(json_string_value(json_object_get(params, "url")), "http://x/?a=b");
    cr_expect_str_eq(json_string_value(json_object_get(params, "empty")), "");
    cr_expect_eq(json_object_size(params), 3);
    json_decref(params);
}

static const struct {
    const char *kv, *want;
} bad_params[] = {
    {"dataset", "invalid --param 'dataset', expected KEY=VALUE"},
    {"=x", "invalid --param '=x', expected KEY=VALUE"},
    {"", "invalid --param '', expected KEY=VALUE"},
};

Test(cli_args, rejects_params_without_a_key)
{
    for (size_t k = 0; k < sizeof(bad_params) / sizeof(bad_params[0]); k++) {
        json_t *params = json_object();
        struct eph_err err = {0};

        cr_expect_eq(cli__param_add(params, bad_params[k].kv, &err), EPH_EINVAL, "case %zu", k);
        cr_expect_str_eq(err.msg, bad_params[k].want, "case %zu", k);
        cr_expect_eq(json_object_size(params), 0);
        json_decref(params);
    }
}

Test(cli_args, tells_relative_paths_from_urls)
{
    cr_expect(cli__repo_is_relative_path("shop"));
    cr_expect(cli__repo_is_relative_path("./shop"));
    cr_expect(cli__repo_is_relative_path("../git/shop.git"));
    cr_expect(cli__repo_is_relative_path("./a:b"));
    cr_expect_not(cli__repo_is_relative_path("/srv/git/shop.git"));
    cr_expect_not(cli__repo_is_relative_path("https://git.example.com/shop.git"));
    cr_expect_not(cli__repo_is_relative_path("file:///srv/git/shop.git"));
    cr_expect_not(cli__repo_is_relative_path("git@github.com:team/shop.git"));
    cr_expect_not(cli__repo_is_relative_path(""));
}

/* ------------------------------------------------------------- HTTP helpers */

Test(cli_http, takes_the_message_of_an_api_error_else_names_the_status)
{
    const char *body = "{\"error\": {\"code\": \"unprocessable\", "
                       "\"message\": \"unknown branch 'nope'\"}}";
    char msg[256];

    cli__error_message(422, body, strlen(body), msg, sizeof(msg));
    cr_expect_str_eq(msg, "unknown branch 'nope'");
    cli__error_message(502, "<html>bad gateway</html>", 24, msg, sizeof(msg));
    cr_expect_str_eq(msg, "server answered HTTP 502");
    cli__error_message(500, NULL, 0, msg, sizeof(msg));
    cr_expect_str_eq(msg, "server answered HTTP 500");
    cr_expect_eq(cli__status_error(404), EPH_ENOTFOUND);
    cr_expect_eq(cli__status_error(409), EPH_ECONFLICT);
    cr_expect_eq(cli__status_error(401), EPH_EUNAUTH);
    cr_expect_eq(cli__status_error(503), EPH_EINTERNAL);
}

Test(cli_http, escapes_path_segments_and_query_values)
{
    char *a = cli__url_escape("fx", false);
    char *b = cli__url_escape("a b/c?d", false);
    char *c = cli__url_escape("env/fx", true);

    cr_expect_str_eq(a, "fx");
    cr_expect_str_eq(b, "a%20b%2Fc%3Fd");
    cr_expect_str_eq(c, "env/fx");
    free(a);
    free(b);
    free(c);
}

/* ------------------------------------------------------------- client config */

static char *
temp_dir(void)
{
    char tmpl[] = "/tmp/eph-cli-test-XXXXXX";

    cr_assert_not_null(mkdtemp(tmpl));
    return strdup(tmpl);
}

Test(cli_config, writes_mode_0600_in_a_0700_directory_and_reads_it_back)
{
    char *dir = temp_dir();
    char *path, *sub;
    struct cli_config in = {.server = "http://127.0.0.1:8080", .token = "eph_secret"};
    struct cli_config out = {0};
    struct eph_err err = {0};
    struct stat st;

    cr_assert(asprintf(&path, "%s/nested/ephemera/config", dir) > 0);
    cr_assert(asprintf(&sub, "%s/nested/ephemera", dir) > 0);
    cr_assert_eq(cli__config_write(path, &in, &err), 0, "%s", err.msg);
    cr_assert_eq(stat(path, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    cr_assert_eq(stat(sub, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(cli__config_read(path, &out, &err), 0, "%s", err.msg);
    cr_expect_str_eq(out.server, "http://127.0.0.1:8080");
    cr_expect_str_eq(out.token, "eph_secret");
    cli__config_release(&out);
    fs_rm_rf(dir);
    free(path);
    free(sub);
    free(dir);
}

Test(cli_config, keeps_keys_it_does_not_know_when_rewriting)
{
    char *dir = temp_dir();
    char *path, *text = NULL;
    const char *old = "{\"server\": \"http://old:1\", \"token\": \"t1\", \"extra\": 7}";
    struct cli_config in = {.server = "http://new:2", .token = "t2"};
    struct eph_err err = {0};
    json_t *root;

    cr_assert(asprintf(&path, "%s/config", dir) > 0);
    cr_assert_eq(fs_write_atomic(path, old, strlen(old), 0600), 0);
    cr_assert_eq(cli__config_write(path, &in, &err), 0, "%s", err.msg);
    cr_assert_eq(fs_read_all(path, 4096, &text, NULL), 0);
    root = json_loads(text, 0, NULL);
    cr_assert_not_null(root);
    cr_expect_str_eq(json_string_value(json_object_get(root, "server")), "http://new:2");
    cr_expect_str_eq(json_string_value(json_object_get(root, "token")), "t2");
    cr_expect_eq(json_integer_value(json_object_get(root, "extra")), 7);
    json_decref(root);
    free(text);
    fs_rm_rf(dir);
    free(path);
    free(dir);
}

Test(cli_config, reports_a_missing_file_quietly_and_a_bad_one_with_its_position)
{
    char *dir = temp_dir();
    char *path;
    struct cli_config cfg = {0};
    struct eph_err err = {0};
    char want[512];

    cr_assert(asprintf(&path, "%s/config", dir) > 0);
    cr_expect_eq(cli__config_read(path, &cfg, &err), -ENOENT);
    cr_expect_null(cfg.server);
    cr_assert_eq(fs_write_atomic(path, "{\"server\": ", 11, 0600), 0);
    cr_expect_eq(cli__config_read(path, &cfg, &err), EPH_EPARSE);
    snprintf(want, sizeof(want), "invalid config '%s': 1:11: ", path);
    cr_expect(strncmp(err.msg, want, strlen(want)) == 0, "%s", err.msg);
    cr_assert_eq(fs_write_atomic(path, "{\"server\": \"ftp://x\"}", 21, 0600), 0);
    cr_expect_eq(cli__config_read(path, &cfg, &err), EPH_EINVAL);
    snprintf(want, sizeof(want),
             "config '%s': invalid server URL 'ftp://x', expected http://HOST:PORT or "
             "https://HOST",
             path);
    cr_expect_str_eq(err.msg, want);
    cli__config_release(&cfg);
    fs_rm_rf(dir);
    free(path);
    free(dir);
}

Test(cli_config, prefers_flags_then_environment_then_the_file)
{
    char *dir = temp_dir();
    char *path;
    const char *file = "{\"server\": \"http://file:1/\", \"token\": \"file-token\"}";
    struct cli_config cfg = {0};
    struct eph_err err = {0};

    cr_assert(asprintf(&path, "%s/config", dir) > 0);
    cr_assert_eq(fs_write_atomic(path, file, strlen(file), 0600), 0);
    setenv("EPH_CONFIG", path, 1);
    unsetenv("EPH_SERVER");
    unsetenv("EPH_TOKEN");

    cr_assert_eq(cli__config_resolve(NULL, NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.server, "http://file:1", "trailing slash dropped");
    cr_expect_str_eq(cfg.token, "file-token");
    cli__config_release(&cfg);

    setenv("EPH_SERVER", "http://env:2", 1);
    setenv("EPH_TOKEN", "env-token", 1);
    cr_assert_eq(cli__config_resolve(NULL, NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.server, "http://env:2");
    cr_expect_str_eq(cfg.token, "env-token");
    cli__config_release(&cfg);

    cr_assert_eq(cli__config_resolve("https://flag:3", "flag-token", &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.server, "https://flag:3");
    cr_expect_str_eq(cfg.token, "flag-token");
    cli__config_release(&cfg);

    unsetenv("EPH_TOKEN");
    cr_assert_eq(cli__config_resolve(NULL, NULL, &cfg, &err), 0, "%s", err.msg);
    cr_expect_str_eq(cfg.server, "http://env:2", "each field on its own");
    cr_expect_str_eq(cfg.token, "file-token");
    cli__config_release(&cfg);

    fs_rm_rf(dir);
    free(path);
    free(dir);
}

Test(cli_config, says_how_to_log_in_when_there_is_nothing)
{
    struct cli_config cfg = {0};
    struct eph_err err = {0};

    setenv("EPH_CONFIG", "/nonexistent/eph/config", 1);
    unsetenv("EPH_SERVER");
    unsetenv("EPH_TOKEN");
    cr_expect_eq(cli__config_resolve(NULL, NULL, &cfg, &err), EPH_EUNAUTH);
    cr_expect_str_eq(err.msg, "not logged in: run 'eph login --server URL'");
    cr_expect_eq(cli__config_resolve("http://s:1", NULL, &cfg, &err), EPH_EUNAUTH);
    cr_expect_null(cfg.server);
}

Test(cli_config, refuses_tokens_that_would_break_a_header_without_quoting_them)
{
    struct cli_config cfg = {0};
    struct eph_err err = {0};

    cr_expect_eq(cli__config_resolve("http://s:1", "abc\r\nX-Evil: 1", &cfg, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "the token in --token has a space or control character");
    cr_expect_null(strstr(err.msg, "abc"));
}

/* ------------------------------------------------------------- help */

static char *
capture_help(const struct cli_verb *verb)
{
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);

    if (verb)
        cli__print_verb_help(verb, mem);
    else
        cli__print_help(mem);
    fclose(mem);
    return text;
}

Test(cli_help, lists_every_verb_with_its_help_line)
{
    char *help = capture_help(NULL);

    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        char *line;

        cr_assert(asprintf(&line, "  %s ", v->name) > 0);
        cr_expect_not_null(strstr(help, line), "verb '%s' missing", v->name);
        cr_expect_not_null(strstr(help, v->help), "help of '%s' missing", v->name);
        free(line);
    }
    cr_expect_not_null(strstr(help, "run the server (API, reconciler, local driver)"));
    cr_expect_not_null(strstr(help, "--server URL"));
    free(help);
}

Test(cli_help, shows_usage_and_every_flag_of_each_verb)
{
    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        char *help = capture_help(v);
        char *usage;

        cr_assert(asprintf(&usage, "usage: eph %s", v->name) > 0);
        cr_expect(strncmp(help, usage, strlen(usage)) == 0, "%s", help);
        for (const struct cli_flag *f = v->flags; f && f->name; f++) {
            char *flag;

            cr_assert(asprintf(&flag, "--%s", f->name) > 0);
            cr_expect_not_null(strstr(help, flag), "verb '%s' lacks %s", v->name, flag);
            cr_expect_not_null(strstr(help, f->help));
            free(flag);
        }
        cr_expect_not_null(strstr(help, "--token TOKEN"));
        free(usage);
        free(help);
    }
}

Test(cli_help, marks_optional_positionals)
{
    char *logs = capture_help(verb_named("logs"));
    char *help = capture_help(verb_named("help"));

    cr_expect(strncmp(logs, "usage: eph logs NAME SERVICE [flags]\n", 37) == 0, "%s", logs);
    cr_expect(strncmp(help, "usage: eph help [VERB] [SUBVERB]\n", 33) == 0, "%s", help);
    free(logs);
    free(help);
}

/* ------------------------------------------------------------- exit codes */

static int
run(int argc, char **argv)
{
    return cli_main(argc, argv);
}

Test(cli_main, exits_2_on_usage_errors, .init = cr_redirect_stderr)
{
    char *unknown[] = {"eph", "frobnicate"};
    char *missing[] = {"eph", "get"};
    char *flag[] = {"eph", "ls", "--nope"};
    char *output[] = {"eph", "ls", "-o", "yaml"};
    char *ttl[] = {"eph", "up", "shop", "--ttl", "soon"};
    char *param[] = {"eph", "up", "shop", "--param", "oops"};
    char *role[] = {"eph", "user", "role", "alice", "boss"};
    char *scope[] = {"eph", "token", "create", "--name", "ci", "--scope", "root"};
    char *no_name[] = {"eph", "token", "create", "--ttl", "30d"};
    char *vis[] = {"eph", "visibility", "fx", "public"};
    char *up_vis[] = {"eph", "up", "shop", "--visibility", "world"};
    char *link_ttl[] = {"eph", "link", "fx", "--ttl", "forever"};
    char *add_role[] = {"eph", "user", "add", "bob", "--role", "owner"};
    char *serve[] = {"eph", "--server", "http://x:1", "serve"};
    char *nothing[] = {"eph"};

    cr_expect_eq(run(2, unknown), 2);
    cr_expect_eq(run(2, missing), 2);
    cr_expect_eq(run(3, flag), 2);
    cr_expect_eq(run(4, output), 2);
    cr_expect_eq(run(5, ttl), 2);
    cr_expect_eq(run(5, param), 2);
    cr_expect_eq(run(5, role), 2);
    cr_expect_eq(run(7, scope), 2);
    cr_expect_eq(run(5, no_name), 2);
    cr_expect_eq(run(4, vis), 2);
    cr_expect_eq(run(5, up_vis), 2);
    cr_expect_eq(run(5, link_ttl), 2);
    cr_expect_eq(run(6, add_role), 2);
    cr_expect_eq(run(4, serve), 2);
    cr_expect_eq(run(1, nothing), 2);
}

Test(cli_main, prints_usage_errors_with_a_pointer_to_help, .init = cr_redirect_stderr)
{
    char *missing[] = {"eph", "logs", "fx"};

    cr_expect_eq(run(3, missing), 2);
    fflush(stderr);
    cr_expect_stderr_eq_str("eph: missing SERVICE\nrun 'eph logs --help' for usage\n");
}

Test(cli_main, exits_1_when_not_logged_in, .init = cr_redirect_stderr)
{
    char *ls[] = {"eph", "ls"};

    setenv("EPH_CONFIG", "/nonexistent/eph/config", 1);
    unsetenv("EPH_SERVER");
    unsetenv("EPH_TOKEN");
    cr_expect_eq(run(2, ls), 1);
    fflush(stderr);
    cr_expect_stderr_eq_str("eph: not logged in: run 'eph login --server URL'\n");
}

Test(cli_main, exits_1_when_the_server_cannot_be_reached, .init = cr_redirect_stderr)
{
    /* Port 1 on loopback: nothing listens there, the kernel refuses at once. */
    char *ls[] = {"eph", "ls", "--server", "http://127.0.0.1:1", "--token", "t"};

    cr_expect_eq(run(6, ls), 1);
    fflush(stderr);
    cr_expect_stderr_eq_str("eph: cannot reach server http://127.0.0.1:1: Connection refused\n");
}

Test(cli_main, exits_0_for_help_and_version, .init = cr_redirect_stdout)
{
    char *help[] = {"eph", "--help"};
    char *verb_help[] = {"eph", "up", "--help"};
    char *help_verb[] = {"eph", "help", "project", "add"};
    char *version[] = {"eph", "version"};

    cr_expect_eq(run(2, help), 0);
    cr_expect_eq(run(3, verb_help), 0);
    cr_expect_eq(run(4, help_verb), 0);
    cr_expect_eq(run(2, version), 0);
}
