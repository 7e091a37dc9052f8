/*
 * tests/unit/util/test_util.c - durations, bounded buffers, logfmt quoting,
 * atomic files and the process helpers.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/time.h"
#include "util/xmalloc.h"

Test(duration, parses_each_unit_and_combinations)
{
    static const struct { const char *text; int64_t s; } ok[] = {
        {"45s", 45}, {"30m", 1800}, {"2h", 7200}, {"7d", 604800}, {"1h30m", 5400},
        {"1d2h3m4s", 93784}, {"0s", 0},
    };
    for (size_t i = 0; i < ARRAY_LEN(ok); i++) {
        int64_t s = -1;
        struct eph_err err = {0};
        cr_expect_eq(duration_parse(ok[i].text, &s, &err), 0, "%s", ok[i].text);
        cr_expect_eq(s, ok[i].s, "%s", ok[i].text);
    }
}

Test(duration, refuses_bad_text_with_a_message)
{
    static const char *bad[] = {"", "2", "h", "2x", "-1h", "1.5h", "2h 3m", "99999999999999d"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        int64_t s = 0;
        struct eph_err err = {0};
        cr_expect_eq(duration_parse(bad[i], &s, &err), EPH_EINVAL, "'%s'", bad[i]);
        cr_expect_neq(err.msg[0], '\0');
    }
    struct eph_err err = {0};
    int64_t s;
    duration_parse("2x", &s, &err);
    cr_expect_str_eq(err.msg, "invalid duration '2x', expected e.g. 30m, 2h or 1h30m");
}

Test(duration, formats_the_way_people_read_them)
{
    static const struct { int64_t s; const char *text; } cases[] = {
        {0, "0s"}, {45, "45s"}, {300, "5m"}, {7200, "2h"}, {5400, "1h30m"},
        {86400 + 4 * 3600, "1d4h"}, {3 * 86400, "3d"}, {-5, "0s"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[32];
        duration_format(cases[i].s, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].text);
    }
}

Test(buf, refuses_to_grow_past_its_ceiling)
{
    struct buf b;

    buf_init(&b, 8);
    cr_expect_eq(buf_puts(&b, "12345"), 0);
    cr_expect_eq(buf_puts(&b, "6789"), EPH_ETOOBIG);
    cr_expect_str_eq(buf_cstr(&b), "12345");
    cr_expect_eq(buf_printf(&b, "%d", 678), 0);
    cr_expect_str_eq(buf_cstr(&b), "12345678");
    buf_consume(&b, 3);
    cr_expect_str_eq(buf_cstr(&b), "45678");
    char *s = buf_steal(&b);
    cr_expect_str_eq(s, "45678");
    cr_expect_eq(b.len, 0);
    free(s);
    buf_release(&b);
}

Test(log, quotes_values_for_logfmt)
{
    cr_expect_str_eq(log_q("a b"), "\"a b\"");
    cr_expect_str_eq(log_q("say \"hi\"\n"), "\"say \\\"hi\\\"\\n\"");
    cr_expect_str_eq(log_q(NULL), "\"\"");
}

Test(err, prefix_keeps_the_message_it_reads_from)
{
    struct eph_err err = {0};

    eph_err_set(&err, EPH_EINVAL, "bad value");
    cr_expect_eq(eph_err_prefix(&err, 0, "%s:%d:%d: ", "f.yaml", 2, 3), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "f.yaml:2:3: bad value");
}

Test(fs, writes_atomically_reads_back_and_removes_trees)
{
    char dir[] = "/tmp/eph-test-fs-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char *sub = xasprintf("%s/a/b/c", dir);
    char *file = xasprintf("%s/file", sub);
    char *data = NULL;
    size_t len = 0;
    struct stat st;

    cr_expect_eq(fs_mkdir_p(sub, 0700), 0);
    cr_expect_eq(fs_write_atomic(file, "hello", 5, 0600), 0);
    cr_expect_eq(stat(file, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    cr_expect_eq(fs_read_all(file, 100, &data, &len), 0);
    cr_expect_str_eq(data, "hello");
    cr_expect_eq(len, 5);
    free(data);
    cr_expect_eq(fs_read_all(file, 4, &data, &len), EPH_ETOOBIG);
    cr_expect_eq(fs_read_all(file, 5, &data, &len), 0, "exactly the ceiling is fine");
    cr_expect_str_eq(data, "hello");
    free(data);
    cr_expect_eq(fs_rm_rf(dir), 0);
    cr_expect(!fs_exists(dir));
    cr_expect_eq(fs_rm_rf(dir), 0, "a missing path is success");
    free(sub);
    free(file);
}

Test(proc, runs_a_command_and_captures_its_output)
{
    const char *argv[] = {"sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    struct proc_result res;

    cr_assert_eq(proc_run(argv, NULL, NULL, 5000, 1024, &res), 0);
    cr_expect_eq(res.exit_code, 3);
    cr_expect_str_eq(res.out, "out\n");
    cr_expect_str_eq(res.err, "err\n");
    proc_result_release(&res);
}

Test(proc, kills_a_command_past_its_deadline)
{
    const char *argv[] = {"sleep", "30", NULL};
    struct proc_result res;
    int64_t start = time_mono_ms();

    cr_assert_eq(proc_run(argv, NULL, NULL, 200, 1024, &res), 0);
    cr_expect(res.timed_out);
    cr_expect_eq(res.term_signal, SIGKILL);
    cr_expect_lt(time_mono_ms() - start, 5000);
    proc_result_release(&res);
}

Test(proc, a_missing_program_is_an_error_or_exit_127)
{
    const char *argv[] = {"/nonexistent/program", NULL};
    struct proc_result res;
    int rc = proc_run(argv, NULL, NULL, 2000, 1024, &res);

    cr_expect(rc < 0 || res.exit_code == 127);
    proc_result_release(&res);
}

struct marker_seen {
    pid_t pid;
    char value[64];
};

static void
on_marker(pid_t pid, pid_t pgid, const char *value, void *arg)
{
    struct marker_seen *seen = arg;

    (void)pgid;
    seen->pid = pid;
    snprintf(seen->value, sizeof(seen->value), "%s", value);
}

Test(proc, finds_processes_by_their_environment_marker_and_stops_their_group)
{
    char marker[64];
    snprintf(marker, sizeof(marker), "EPH_TEST_MARK_%d", (int)getpid());
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        char *env[] = {xasprintf("%s=hello", marker), NULL};
        execle("/bin/sleep", "sleep", "30", (char *)NULL, env);
        _exit(127);
    }
    struct marker_seen seen = {0};
    int64_t deadline = time_mono_ms() + 5000;
    while (seen.pid == 0 && time_mono_ms() < deadline)
        proc_scan_marker(marker, on_marker, &seen);
    cr_expect_eq(seen.pid, child);
    cr_expect_str_eq(seen.value, "hello");
    cr_expect(proc_is_alive(child));
    cr_expect_eq(proc_group_live_count(child), 1);
    uint64_t ticks = 0;
    cr_expect_eq(proc_start_ticks(child, &ticks), 0);
    cr_expect_gt(ticks, 0);
    cr_expect_eq(proc_group_signal(child, SIGKILL), 0);
    deadline = time_mono_ms() + 5000;
    while (proc_is_alive(child) && time_mono_ms() < deadline)
        ;
    cr_expect(!proc_is_alive(child), "a zombie does not count as alive");
    waitpid(child, NULL, 0);
}

static volatile sig_atomic_t terms_seen;

static void
count_term(int sig)
{
    (void)sig;
    terms_seen++;
}

Test(proc, signals_each_member_of_a_group_exactly_once)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    if (child == 0) {
        setpgid(0, 0);
        signal(SIGTERM, count_term);
        char ready = 'r';
        write(fds[1], &ready, 1);
        while (terms_seen == 0)
            pause();
        usleep(200 * 1000); /* time for a second signal to arrive, if one is sent */
        char n = (char)('0' + terms_seen);
        write(fds[1], &n, 1);
        _exit(0);
    }
    char got = 0;
    cr_assert_eq(read(fds[0], &got, 1), 1);
    cr_expect_eq(proc_group_signal(child, SIGTERM), 0);
    cr_assert_eq(read(fds[0], &got, 1), 1);
    cr_expect_eq(got, '1', "one SIGTERM, not %c", got);
    waitpid(child, NULL, 0);
    close(fds[0]);
    close(fds[1]);
}

#include "util/redact.h"

Test(redact, removes_user_info_from_every_url_in_a_text)
{
    static const struct { const char *in, *want; } cases[] = {
        {"https://user:ghp_secret@git.example.com/shop.git",
         "https://***@git.example.com/shop.git"},
        {"fatal: unable to access 'https://tok@h.example/r/': 403",
         "fatal: unable to access 'https://***@h.example/r/': 403"},
        {"/srv/git/shop.git", "/srv/git/shop.git"},
        {"https://git.example.com/a@b", "https://git.example.com/a@b"},
        {"a http://x:y@h1/ and ssh://u@h2:22/r", "a http://***@h1/ and ssh://***@h2:22/r"},
        {"https://u:p@ss@host/", "https://***@host/"},
        {"", ""},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char *got = redact_credentials(cases[i].in);
        cr_expect_str_eq(got, cases[i].want, "case %zu", i);
        free(got);
    }
    cr_expect_null(redact_credentials(NULL));
}
