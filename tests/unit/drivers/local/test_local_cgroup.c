/*
 * tests/unit/drivers/local/test_local_cgroup.c - the local driver's resource
 * limits and usage (local_cgroup.c).
 *
 * The kernel's files are parsed from strings. The cgroup steps (making the
 * levels, writing limits, moving a process, the OOM reason, removal) run
 * against a fake tree in a temporary directory whose files the test makes
 * as the kernel would: writes land in plain files the test reads back.
 * Machines without a usable cgroup v2 (hybrid hosts, containers) cannot show
 * a limit being enforced, so no test needs one. The usage fallback walks the
 * real /proc for a child process of the test.
 */
#include "drivers/local/local_cgroup.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "drivers/local/local_int.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* ---------------------------------------------------------------- helpers */

static char root[64];

static void
sh(const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
    free(cmd);
}

static void
make_root(void)
{
    snprintf(root, sizeof(root), "/tmp/eph-test-cgroup-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
}

static void
remove_root(void)
{
    if (root[0] != '\0')
        fs_rm_rf(root);
}

static void
put(const char *path, const char *content)
{
    cr_assert_eq(fs_write_atomic(path, content, strlen(content), 0644), 0, "cannot write %s", path);
}

/* The content of path ("" if missing), into a static buffer. */
static const char *
get(const char *path)
{
    static char buf[4096];
    char *text = NULL;

    buf[0] = '\0';
    if (fs_read_all(path, sizeof(buf) - 1, &text, NULL) == 0)
        snprintf(buf, sizeof(buf), "%s", text);
    free(text);
    return buf;
}

/* A fake cgroup directory with the files the kernel would give it. */
static void
fake_cgroup(const char *dir, const char *controllers)
{
    static const char *const files[] = {
        "cgroup.subtree_control",
        "cgroup.procs",
        "cgroup.kill",
        "memory.max",
        "cpu.max",
        "pids.max",
        "cpu.stat",
        "memory.current",
    };

    sh("mkdir -p '%s'", dir);
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        char *p = xasprintf("%s/%s", dir, files[i]);
        put(p, "");
        free(p);
    }
    char *p = xasprintf("%s/cgroup.controllers", dir);
    put(p, controllers);
    free(p);
    p = xasprintf("%s/memory.events", dir);
    put(p, "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
    free(p);
}

/* root/<fmt...>, in one of a ring of static buffers (so that calls can be
 * nested in arguments without anything to free). */
static char *
at(const char *fmt, ...)
{
    static char ring[16][512];
    static unsigned next;
    char *out = ring[next++ % ARRAY_LEN(ring)];
    va_list ap;
    int n = snprintf(out, sizeof(ring[0]), "%s/", root);

    va_start(ap, fmt);
    vsnprintf(out + n, sizeof(ring[0]) - (size_t)n, fmt, ap);
    va_end(ap);
    return out;
}

/* A fake root with ephemera/<inst>/ already there, opened. */
static struct local_cgroup *
open_fake(const char *inst)
{
    struct local_cgroup *cg = NULL;
    char note[LOCAL_CGROUP_NOTE_MAX];
    char *r = at("cg"), *eph = at("cg/ephemera"), *base = at("cg/ephemera/%s", inst);

    fake_cgroup(r, "cpuset cpu io memory hugetlb pids rdma misc\n");
    fake_cgroup(eph, "cpu memory pids\n");
    fake_cgroup(base, "cpu memory pids\n");
    cr_assert_eq(local_cgroup_new_at(r, NULL, inst, &cg, note, sizeof(note)), 0, "%s", note);
    return cg;
}

/* ---------------------------------------------------------------- parsers */

Test(local_cgroup, finds_the_v2_path_in_proc_self_cgroup)
{
    static const struct {
        const char *text;
        int rc;
        const char *want;
    } cases[] = {
        {"12:pids:/\n4:memory:/x\n0::/user.slice/session-1.scope\n", 0,
         "/user.slice/session-1.scope"},
        {"0::/\n", 0, "/"},
        {"0::/system.slice/eph.service/server", 0, "/system.slice/eph.service/server"},
        {"9:name=systemd:/\n4:memory:/\n", EPH_ENOTFOUND, NULL},
        {"", EPH_ENOTFOUND, NULL},
        {"0::/../../outside\n", EPH_EINVAL, NULL},
        {"0::/..\n", EPH_EINVAL, NULL},
        {"0::/a/b (deleted)\n", EPH_EINVAL, NULL},
        {"0::\n", EPH_EINVAL, NULL},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char path[256] = "";
        int rc = local_cgroup_parse_self(cases[i].text, path, sizeof(path));
        cr_expect_eq(rc, cases[i].rc, "case %zu: rc %d", i, rc);
        if (cases[i].want)
            cr_expect_str_eq(path, cases[i].want, "case %zu", i);
    }
    char tiny[4];
    cr_expect_eq(local_cgroup_parse_self("0::/abcdef\n", tiny, sizeof(tiny)), EPH_ETOOBIG);
}

/* Lines as on a hybrid host (this project's CI), a pure v2 host, and in a
 * container whose cgroup2 mount shows a subtree. */
static const char hybrid[] =
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
static const char pure[] = "22 1 0:20 / / rw - ext4 /dev/sda1 rw\n"
                           "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - "
                           "cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";
static const char subtree[] =
    "700 650 0:30 /docker/abc /sys/fs/cgroup ro,nosuid master:9 - cgroup2 cgroup rw\n";
static const char escaped[] = "50 31 0:40 / /mnt/my\\040cgroups rw - cgroup2 none rw\n";

Test(local_cgroup, finds_the_directory_of_a_cgroup_in_mountinfo)
{
    static const struct {
        const char *text, *cgpath;
        int rc;
        const char *want;
    } cases[] = {
        {hybrid, "/", 0, "/sys/fs/cgroup/unified"},
        {hybrid, "/a/b", 0, "/sys/fs/cgroup/unified/a/b"},
        {pure, "/system.slice/eph.service", 0, "/sys/fs/cgroup/system.slice/eph.service"},
        {subtree, "/docker/abc", 0, "/sys/fs/cgroup"},
        {subtree, "/docker/abc/x", 0, "/sys/fs/cgroup/x"},
        {subtree, "/docker/abcd", EPH_ENOTFOUND, NULL},
        {subtree, "/other", EPH_ENOTFOUND, NULL},
        {escaped, "/s", 0, "/mnt/my cgroups/s"},
        {"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n", "/", EPH_ENOTFOUND,
         NULL},
        {"", "/", EPH_ENOTFOUND, NULL},
        {"garbage\n\n - cgroup2\n", "/", EPH_ENOTFOUND, NULL},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char dir[256] = "";
        int rc = local_cgroup_parse_mountinfo(cases[i].text, cases[i].cgpath, dir, sizeof(dir));
        cr_expect_eq(rc, cases[i].rc, "case %zu: rc %d", i, rc);
        if (cases[i].want)
            cr_expect_str_eq(dir, cases[i].want, "case %zu", i);
    }
}

Test(local_cgroup, reads_controller_lists)
{
    cr_expect_eq(local_cgroup_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
                 LOCAL_CG_NEEDED);
    cr_expect_eq(local_cgroup_controllers("hugetlb\n"), 0u);
    cr_expect_eq(local_cgroup_controllers(""), 0u);
    cr_expect_eq(local_cgroup_controllers("cpuset io"), 0u, "cpuset is not cpu");
    cr_expect_eq(local_cgroup_controllers("memory pids"), LOCAL_CG_MEMORY | LOCAL_CG_PIDS);
    cr_expect_eq(local_cgroup_controllers("+cpu"), 0u);
}

Test(local_cgroup, says_which_controllers_are_missing)
{
    static const struct {
        unsigned missing;
        const char *available, *want;
    } cases[] = {
        {LOCAL_CG_NEEDED, "hugetlb\n",
         "cgroup v2 memory, cpu, pids controllers are not available at /sys/fs/cgroup/unified "
         "(available: hugetlb)"},
        {LOCAL_CG_PIDS, "cpu memory",
         "cgroup v2 pids controller is not available at /sys/fs/cgroup/unified (available: cpu, "
         "memory)"},
        {LOCAL_CG_MEMORY | LOCAL_CG_CPU, "",
         "cgroup v2 memory, cpu controllers are not available at /sys/fs/cgroup/unified "
         "(available: none)"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char note[LOCAL_CGROUP_NOTE_MAX];
        local_cgroup_missing_note(cases[i].missing, "/sys/fs/cgroup/unified", cases[i].available,
                                  note, sizeof(note));
        cr_expect_str_eq(note, cases[i].want, "case %zu", i);
    }
}

Test(local_cgroup, reads_keyed_files)
{
    const char events[] = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 3\noom_group_kill 0\n";
    const char stat[] = "usage_usec 912207517\nuser_usec 747059545\nsystem_usec 165147972\n";

    cr_expect_eq(local_cgroup_keyed(events, "oom_kill"), 3);
    cr_expect_eq(local_cgroup_keyed(events, "oom"), 2, "a key is a whole word");
    cr_expect_eq(local_cgroup_keyed(events, "kill"), -1);
    cr_expect_eq(local_cgroup_keyed(stat, "usage_usec"), INT64_C(912207517));
    cr_expect_eq(local_cgroup_keyed(stat, "system_usec"), INT64_C(165147972));
    cr_expect_eq(local_cgroup_keyed("usage_usec x\n", "usage_usec"), -1);
    cr_expect_eq(local_cgroup_keyed("usage_usec 5", "usage_usec"), 5, "no final newline");
    cr_expect_eq(local_cgroup_keyed("", "usage_usec"), -1);
}

Test(local_cgroup, writes_cpu_max_from_millis)
{
    static const struct {
        int64_t millis;
        const char *want;
    } cases[] = {
        {1000, "100000 100000"}, {500, "50000 100000"}, {250, "25000 100000"},
        {2500, "250000 100000"}, {0, "max 100000"},     {1, "1000 100000"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[48];
        local_cgroup_cpu_max(cases[i].millis, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].want, "case %zu", i);
    }
}

Test(local_cgroup, formats_sizes_as_given)
{
    static const struct {
        int64_t bytes;
        const char *want;
    } cases[] = {
        {INT64_C(536870912), "512Mi"},
        {INT64_C(1073741824), "1Gi"},
        {INT64_C(1536) << 20, "1536Mi"},
        {4096, "4Ki"},
        {1000, "1000"},
        {0, "0"},
    };

    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char out[32];
        local_cgroup_format_bytes(cases[i].bytes, out, sizeof(out));
        cr_expect_str_eq(out, cases[i].want, "case %zu", i);
    }
}

Test(local_cgroup, parses_proc_stat_lines)
{
    struct local_pstat ps;
    /* comm with spaces and parentheses; fields after it as in proc(5) */
    const char line[] = "4242 (a) (b c) S 1 4240 4240 0 -1 4194560 100 0 0 0 "
                        "7 3 20 10 20 0 1 0 12345 1000000 250 18446744073709551615 1 1 0\n";
    char *self = NULL;

    cr_assert_eq(local_cgroup_parse_stat(line, &ps), 0);
    cr_expect_eq(ps.state, 'S');
    cr_expect_eq(ps.pgid, 4240);
    cr_expect_eq(ps.cpu_ticks, 7u + 3u + 20u + 10u);
    cr_expect_eq(ps.rss_pages, 250);
    cr_expect_eq(local_cgroup_parse_stat("4242 (x) S 1 2 3\n", &ps), EPH_EPARSE);
    cr_expect_eq(local_cgroup_parse_stat("no paren", &ps), EPH_EPARSE);
    cr_assert_eq(fs_read_all("/proc/self/stat", 4096, &self, NULL), 0);
    cr_assert_eq(local_cgroup_parse_stat(self, &ps), 0);
    cr_expect_eq(ps.pgid, getpgrp());
    cr_expect_gt(ps.rss_pages, 0);
    free(self);
}

/* ---------------------------------------------------------------- the root */

Test(local_cgroup, off_and_bad_settings, .init = make_root, .fini = remove_root)
{
    struct local_cgroup *cg = NULL;
    struct eph_err err = {0};

    cr_assert_eq(local_cgroup_new("off", "inst", &cg, &err), 0, "%s", err.msg);
    cr_expect_not(local_cgroup_enabled(cg));
    cr_expect_str_eq(local_cgroup_note(cg), "resource limits are off (cgroup_root: off)");
    cr_expect_null(local_cgroup_base(cg));
    local_cgroup_free(cg);

    cr_expect_eq(local_cgroup_new("relative/x", "inst", &cg, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "cgroup_root 'relative/x' must be auto, off or an absolute path");
    cr_expect_eq(local_cgroup_new(root, "inst", &cg, &err), EPH_EINVAL);
    char *want = xasprintf("cgroup_root '%s' is not in a cgroup v2 file system", root);
    cr_expect_str_eq(err.msg, want);
    free(want);
    cr_expect_eq(local_cgroup_new("/nonexistent/cg", "inst", &cg, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "cgroup_root '/nonexistent/cg': No such file or directory");
}

/* Whatever this machine offers, "auto" never fails, and says why when it
 * cannot enforce limits. */
Test(local_cgroup, auto_never_fails_and_explains_itself)
{
    struct local_cgroup *cg = NULL;
    struct eph_err err = {0};
    char inst[32];

    snprintf(inst, sizeof(inst), "test-auto-%d", (int)getpid());
    cr_assert_eq(local_cgroup_new("auto", inst, &cg, &err), 0, "%s", err.msg);
    if (local_cgroup_enabled(cg)) {
        char *base = xstrdup(local_cgroup_base(cg));
        cr_expect(fs_exists(base), "%s", base);
        rmdir(base); /* empty: this test's instance only */
        free(base);
    } else {
        cr_expect_neq(local_cgroup_note(cg)[0], '\0', "no note");
    }
    local_cgroup_free(cg);
}

Test(local_cgroup, a_root_without_the_controllers_is_refused_with_a_note, .init = make_root,
     .fini = remove_root)
{
    struct local_cgroup *cg = NULL;
    char note[LOCAL_CGROUP_NOTE_MAX];
    char *r = at("cg");

    fake_cgroup(r, "hugetlb\n");
    cr_expect_eq(local_cgroup_new_at(r, NULL, "inst", &cg, note, sizeof(note)), EPH_EINVAL);
    cr_expect_null(cg);
    char *want = xasprintf(
        "cgroup v2 memory, cpu, pids controllers are not available at %s (available: hugetlb)", r);
    cr_expect_str_eq(note, want);
    free(want);
    cr_expect_not(fs_exists(at("cg/ephemera")), "nothing made");
}

Test(local_cgroup, enables_the_controllers_down_to_the_instance, .init = make_root,
     .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");

    cr_expect(local_cgroup_enabled(cg));
    cr_expect_str_eq(local_cgroup_base(cg), at("cg/ephemera/inst"));
    cr_expect_str_eq(local_cgroup_note(cg), "");
    cr_expect_str_eq(get(at("cg/cgroup.subtree_control")), "+memory +cpu +pids");
    cr_expect_str_eq(get(at("cg/ephemera/cgroup.subtree_control")), "+memory +cpu +pids");
    cr_expect_str_eq(get(at("cg/ephemera/inst/cgroup.subtree_control")), "+memory +cpu +pids");
    local_cgroup_free(cg);

    /* already enabled: nothing is written; one missing: only it */
    put(at("cg/cgroup.subtree_control"), "cpu memory pids\n");
    put(at("cg/ephemera/cgroup.subtree_control"), "cpu memory\n");
    cg = NULL;
    char note[LOCAL_CGROUP_NOTE_MAX];
    cr_assert_eq(local_cgroup_new_at(at("cg"), NULL, "inst", &cg, note, sizeof(note)), 0, "%s",
                 note);
    cr_expect_str_eq(get(at("cg/cgroup.subtree_control")), "cpu memory pids\n");
    cr_expect_str_eq(get(at("cg/ephemera/cgroup.subtree_control")), "+pids");
    local_cgroup_free(cg);
}

Test(local_cgroup, a_level_that_cannot_be_made_is_explained, .init = make_root, .fini = remove_root)
{
    struct local_cgroup *cg = NULL;
    char note[LOCAL_CGROUP_NOTE_MAX];

    fake_cgroup(at("cg"), "cpu memory pids\n");
    put(at("cg/ephemera"), "a file, not a cgroup");
    cr_expect_eq(local_cgroup_new_at(at("cg"), NULL, "inst", &cg, note, sizeof(note)), EPH_EINVAL);
    char *want =
        xasprintf("cannot read %s/cg/ephemera/cgroup.subtree_control: Not a directory", root);
    cr_expect_str_eq(note, want);
    free(want);
}

/* ---------------------------------------------------------------- environments */

/* A driver and an environment, only as far as local_cgroup.c looks. */
struct fake {
    struct local_driver drv;
    struct local_env env;
};

static void
fake_init(struct fake *f, struct local_cgroup *cg, int64_t id)
{
    memset(f, 0, sizeof(*f));
    f->drv.cgroup = cg;
    f->env.drv = &f->drv;
    f->env.id = id;
    f->env.name = "fx";
}

Test(local_cgroup, an_environment_gets_its_limits_and_processes, .init = make_root,
     .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;
    struct drv_limits lim = {.memory_bytes = INT64_C(512) << 20, .cpu_millis = 500, .pids = 100};
    struct eph_err err = {0};
    char *dir = at("cg/ephemera/inst/env-7");

    fake_init(&f, cg, 7);
    fake_cgroup(dir, "cpu memory pids\n");
    local_cgroup_env_setup(&f.env, &lim);
    cr_assert_str_eq(local_cgroup_env_dir(&f.env), dir);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/memory.max")), "536870912");
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/cpu.max")), "50000 100000");
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/pids.max")), "100");

    /* unchanged limits are not written again; changed ones are */
    put(at("cg/ephemera/inst/env-7/memory.max"), "untouched");
    local_cgroup_env_setup(&f.env, &lim);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/memory.max")), "untouched");
    lim = (struct drv_limits){0};
    local_cgroup_env_setup(&f.env, &lim);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/memory.max")), "max");
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/cpu.max")), "max 100000");
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/pids.max")), "max");

    cr_expect_eq(local_cgroup_attach(&f.env, 4321, &err), 0, "%s", err.msg);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-7/cgroup.procs")), "4321");
    local_cgroup_free(cg);
}

Test(local_cgroup, an_oom_kill_names_the_memory_limit_once, .init = make_root, .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;
    struct drv_limits lim = {.memory_bytes = INT64_C(512) << 20};
    char reason[LOCAL_REASON_MAX] = "exited";
    char *events = at("cg/ephemera/inst/env-3/memory.events");

    fake_init(&f, cg, 3);
    fake_cgroup(at("cg/ephemera/inst/env-3"), "cpu memory pids\n");
    /* kills before this server knew the environment are no news */
    put(events, "oom 1\noom_kill 1\n");
    local_cgroup_env_setup(&f.env, &lim);
    cr_expect_not(local_cgroup_oom_killed(&f.env, true, 0, SIGKILL, reason, sizeof(reason)));
    put(events, "oom 2\noom_kill 2\n");
    cr_expect(local_cgroup_oom_killed(&f.env, true, 0, SIGKILL, reason, sizeof(reason)));
    cr_expect_str_eq(reason, "killed by the memory limit (512Mi)");
    snprintf(reason, sizeof(reason), "killed by signal 9");
    cr_expect_not(local_cgroup_oom_killed(&f.env, true, 0, SIGKILL, reason, sizeof(reason)),
                  "reported once");
    cr_expect_str_eq(reason, "killed by signal 9");
    /* a shell whose child the kernel killed exits 137 */
    put(events, "oom_kill 3\n");
    cr_expect(local_cgroup_oom_killed(&f.env, true, 137, 0, reason, sizeof(reason)));
    /* an ordinary failure is not blamed on an earlier kill */
    put(events, "oom_kill 4\n");
    snprintf(reason, sizeof(reason), "exited with status 1");
    cr_expect_not(local_cgroup_oom_killed(&f.env, true, 1, 0, reason, sizeof(reason)));
    cr_expect_str_eq(reason, "exited with status 1");
    local_cgroup_free(cg);
}

Test(local_cgroup, usage_comes_from_the_cgroup, .init = make_root, .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;
    struct drv_usage u;

    fake_init(&f, cg, 5);
    fake_cgroup(at("cg/ephemera/inst/env-5"), "cpu memory pids\n");
    put(at("cg/ephemera/inst/env-5/memory.current"), "1048576\n");
    put(at("cg/ephemera/inst/env-5/cpu.stat"), "usage_usec 2500\nuser_usec 2000\n");
    /* before any apply(): an earlier server's cgroup is read all the same */
    local_usage(&f.drv.base, 5, &u);
    cr_expect_eq(u.memory_bytes, 1048576);
    cr_expect_eq(u.cpu_usec, 2500);
    cr_expect(u.limits_enforced);
    cr_expect_str_eq(u.note, "");
    local_cgroup_env_setup(&f.env, NULL);
    local_usage(&f.drv.base, 5, &u);
    cr_expect_eq(u.memory_bytes, 1048576);
    cr_expect(u.limits_enforced);
    /* no cgroup for it and nothing running */
    local_usage(&f.drv.base, 6, &u);
    cr_expect_eq(u.memory_bytes, 0);
    cr_expect_not(u.limits_enforced);
    cr_expect_str_eq(u.note, "the environment has no cgroup yet");
    local_cgroup_free(cg);
}

Test(local_cgroup, an_environment_whose_limits_cannot_be_written_runs_without, .init = make_root,
     .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;
    struct drv_limits lim = {.pids = 10};
    struct drv_usage u;
    struct eph_err err = {0};

    fake_init(&f, cg, 8);
    local_cgroup_env_setup(&f.env, &lim); /* a plain directory: no memory.max */
    cr_expect_null(local_cgroup_env_dir(&f.env));
    cr_expect_eq(local_cgroup_attach(&f.env, 1234, &err), 0, "nothing to join");
    local_usage(&f.drv.base, 8, &u);
    cr_expect_not(u.limits_enforced);
    char *want = xasprintf("cannot write %s/cg/ephemera/inst/env-8/memory.max: No such file or "
                           "directory",
                           root);
    char cut[LOCAL_CGROUP_NOTE_MAX];
    snprintf(cut, sizeof(cut), "%s", want);
    cr_expect_str_eq(u.note, cut);
    free(want);
    cr_expect_eq(local_cgroup_env_remove(&f.env), 0);
    cr_expect_not(fs_exists(at("cg/ephemera/inst/env-8")), "removed");
    local_cgroup_free(cg);
}

Test(local_cgroup, removal_kills_what_is_left_and_waits, .init = make_root, .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;

    fake_init(&f, cg, 9);
    fake_cgroup(at("cg/ephemera/inst/env-9"), "cpu memory pids\n");
    local_cgroup_env_setup(&f.env, NULL);
    /* A fake cgroup with files cannot be removed, as a real one with
     * processes cannot: it is killed, and asked for again. */
    cr_expect_eq(local_cgroup_env_remove(&f.env), EPH_EAGAIN);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-9/cgroup.kill")), "1");
    sh("rm -f %s/cg/ephemera/inst/env-9/*", root);
    cr_expect_eq(local_cgroup_env_remove(&f.env), 0);
    cr_expect_not(fs_exists(at("cg/ephemera/inst/env-9")));
    cr_expect_null(local_cgroup_env_dir(&f.env));
    cr_expect_eq(local_cgroup_env_remove(&f.env), 0, "gone is gone");
    local_cgroup_free(cg);
}

Test(local_cgroup, a_sleep_kills_what_left_the_groups_and_keeps_the_cgroup, .init = make_root,
     .fini = remove_root)
{
    struct local_cgroup *cg = open_fake("inst");
    struct fake f;

    fake_init(&f, cg, 11);
    local_cgroup_env_kill(&f.env); /* none: nothing to do */
    cr_expect_not(fs_exists(at("cg/ephemera/inst/env-11")));
    /* made by an earlier server, not yet set up by this one */
    fake_cgroup(at("cg/ephemera/inst/env-11"), "cpu memory pids\n");
    local_cgroup_env_kill(&f.env);
    cr_expect_str_eq(get(at("cg/ephemera/inst/env-11/cgroup.kill")), "1");
    cr_expect(fs_exists(at("cg/ephemera/inst/env-11/memory.max")), "kept");
    local_cgroup_free(cg);
}

/* ---------------------------------------------------------------- usage from /proc */

/* VmRSS of pid in bytes, from /proc/PID/status. */
static int64_t
vm_rss(pid_t pid)
{
    char path[64], *text = NULL;
    long long kb = -1;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    cr_assert_eq(fs_read_all(path, 1 << 16, &text, NULL), 0);
    const char *p = strstr(text, "\nVmRSS:");
    cr_assert_not_null(p);
    cr_assert_eq(sscanf(p + 8, "%lld", &kb), 1);
    free(text);
    return (int64_t)kb * 1024;
}

/* Without a cgroup, usage() sums the members of the environment's process
 * groups: here a child in a group of its own holding 32 MiB. */
Test(local_cgroup, usage_without_a_cgroup_sums_the_groups_processes, .timeout = 30)
{
    struct local_cgroup *cg = NULL;
    struct eph_err err = {0};
    struct fake f;
    struct local_group g;
    struct drv_usage u;
    int ready[2];
    char c;
    pid_t pid;

    cr_assert_eq(local_cgroup_new("off", "inst", &cg, &err), 0);
    cr_assert_eq(pipe(ready), 0);
    pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        size_t n = 32u << 20;
        char *mem = malloc(n);
        setpgid(0, 0);
        memset(mem, 1, n);
        for (volatile int i = 0; i < 20000000; i++) /* some CPU time */
            ;
        if (write(ready[1], "r", 1) != 1)
            _exit(1);
        pause();
        _exit(0);
    }
    cr_assert_eq(read(ready[0], &c, 1), 1);
    fake_init(&f, cg, 4);
    memset(&g, 0, sizeof(g));
    g.pgid = pid;
    g.env_id = 4;
    /* a walk before the group was known answers for a second ... */
    local_usage(&f.drv.base, 4, &u);
    cr_expect_eq(u.memory_bytes, 0);
    f.env.groups = &g;
    f.drv.envs = &f.env;
    local_usage(&f.drv.base, 4, &u);
    cr_expect_eq(u.memory_bytes, 0, "cached");
    /* ... unless a start made it forget */
    local_cgroup_forget_usage(cg);
    local_usage(&f.drv.base, 4, &u);
    int64_t rss = vm_rss(pid);
    /* a group found at start-up and not yet claimed counts for its env */
    struct drv_usage orphan;
    f.env.groups = NULL;
    f.drv.orphans = &g;
    local_cgroup_forget_usage(cg);
    local_usage(&f.drv.base, 4, &orphan);
    cr_expect_gt(orphan.memory_bytes, 0);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(ready[0]);
    close(ready[1]);
    cr_expect_geq(u.memory_bytes, INT64_C(32) << 20, "memory %" PRId64, u.memory_bytes);
    /* the same pages VmRSS counts (it may move a little between the reads) */
    cr_expect_lt(llabs(u.memory_bytes - rss), rss / 10, "memory %" PRId64 ", VmRSS %" PRId64,
                 u.memory_bytes, rss);
    cr_expect_gt(u.cpu_usec, 0);
    cr_expect_not(u.limits_enforced);
    cr_expect_str_eq(u.note, "resource limits are off (cgroup_root: off)");
    /* another environment's share is its own: none here */
    local_usage(&f.drv.base, 99, &u);
    cr_expect_eq(u.memory_bytes, 0);
    local_cgroup_free(cg);
}

/* ---------------------------------------------------------------- spawning */

struct spawn_fx {
    uv_loop_t loop;
    struct driver *drv;
    bool closed;
};

static void
on_closed(void *arg)
{
    ((struct spawn_fx *)arg)->closed = true;
}

/* Runs the loop until cond(arg) or the deadline. */
static bool
run_until(uv_loop_t *loop, bool (*cond)(void *), void *arg, int64_t timeout_ms)
{
    int64_t deadline = time_mono_ms() + timeout_ms;

    while (!cond(arg) && time_mono_ms() < deadline) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return cond(arg);
}

static bool
file_exists_cond(void *path)
{
    return fs_exists(path);
}

static bool
env_groups_gone(void *env)
{
    return ((struct local_env *)env)->groups == NULL;
}

static bool
closed_cond(void *f)
{
    return ((struct spawn_fx *)f)->closed;
}

/* A driver whose environment 1 has a fake cgroup; returns its env. */
static struct local_env *
spawn_setup(struct spawn_fx *sf, struct local_svc **svc, const char *run)
{
    struct eph_err err = {0};
    char inst[32];
    struct local_config cfg = {0};
    struct local_driver *drv;
    struct local_env *env;
    struct drv_service ds = {.name = "web", .run = run};

    signal(SIGPIPE, SIG_IGN);
    snprintf(inst, sizeof(inst), "cgtest%d", (int)getpid());
    cr_assert_eq(uv_loop_init(&sf->loop), 0);
    cfg.loop = &sf->loop;
    cfg.envs_dir = at("envs");
    cfg.instance_id = inst;
    cfg.stop_grace_ms = 200;
    cfg.cgroup_root = "off";
    cr_assert_eq(local_driver_new(&cfg, &sf->drv, &err), 0, "%s", err.msg);
    drv = container_of(sf->drv, struct local_driver, base);
    local_cgroup_free(drv->cgroup);
    drv->cgroup = open_fake(inst);
    fake_cgroup(at("cg/ephemera/%s/env-1", inst), "cpu memory pids\n");
    /* the environment as apply() would have made it */
    env = xcalloc(1, sizeof(*env));
    env->drv = drv;
    env->id = 1;
    env->name = xstrdup("fx");
    env->dir = xstrdup(at("envs/1-fx"));
    env->prep = DRV_PREP_DONE;
    env->next = drv->envs;
    drv->envs = env;
    sh("mkdir -p %s/src", env->dir);
    *svc = local__svc_new(env, &ds);
    env->svcs = xcalloc(1, sizeof(*env->svcs));
    env->svcs[0] = *svc;
    env->n_svcs = 1;
    local_cgroup_env_setup(env, &(struct drv_limits){.pids = 50});
    return env;
}

static void
spawn_teardown(struct spawn_fx *sf)
{
    struct local_driver *drv = container_of(sf->drv, struct local_driver, base);

    /* the fake is ours to free, whether or not close() frees a cgroup */
    local_cgroup_free(drv->cgroup);
    drv->cgroup = NULL;
    sf->drv->ops->close(sf->drv, on_closed, sf);
    cr_assert(run_until(&sf->loop, closed_cond, sf, 5000), "driver close never finished");
    cr_expect_eq(uv_loop_close(&sf->loop), 0, "handles left open");
}

/* The other side of a FIFO standing in for cgroup.procs: it makes the
 * server's write wait, looks whether the service ran meanwhile, and reads the
 * pid written. */
struct procs_reader {
    const char *fifo, *ran;
    bool ran_early;
    char got[32];
};

static void *
read_procs(void *arg)
{
    struct procs_reader *r = arg;
    ssize_t n;
    int fd;

    usleep(300 * 1000); /* the service would have run by now if it could */
    r->ran_early = fs_exists(r->ran);
    fd = open(r->fifo, O_RDONLY);
    if (fd < 0)
        return NULL;
    n = read(fd, r->got, sizeof(r->got) - 1);
    r->got[n > 0 ? n : 0] = '\0';
    close(fd);
    return NULL;
}

Test(local_cgroup, a_process_joins_the_cgroup_before_the_service_runs, .init = make_root,
     .fini = remove_root, .timeout = 30)
{
    struct spawn_fx sf = {0};
    struct local_svc *s;
    struct local_group *g = NULL;
    struct eph_err err = {0};
    struct local_env *env = spawn_setup(&sf, &s, "touch ran");
    char *procs = xasprintf("%s/cgroup.procs", local_cgroup_env_dir(env));
    char *ran = xasprintf("%s/src/ran", env->dir);
    struct procs_reader r = {.fifo = procs, .ran = ran};
    pthread_t t;

    cr_assert_eq(unlink(procs), 0);
    cr_assert_eq(mkfifo(procs, 0600), 0);
    cr_assert_eq(pthread_create(&t, NULL, read_procs, &r), 0);
    /* blocks in the write to cgroup.procs until the reader opens it */
    int rc = local__spawn(s, LOCAL_KIND_RUN, &g, &err);
    pthread_join(t, NULL);
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_not_null(g);
    cr_expect_not(r.ran_early, "the service ran before its process joined the cgroup");
    cr_expect_eq(strtol(r.got, NULL, 10), (long)g->pgid, "cgroup.procs got '%s', leader %d", r.got,
                 (int)g->pgid);
    cr_expect(run_until(&sf.loop, file_exists_cond, ran, 10000), "the service never ran");
    cr_expect(run_until(&sf.loop, env_groups_gone, env, 10000), "the group never ended");
    free(procs);
    free(ran);
    spawn_teardown(&sf);
}

Test(local_cgroup, a_process_that_cannot_join_never_runs_the_service, .init = make_root,
     .fini = remove_root, .timeout = 30)
{
    struct spawn_fx sf = {0};
    struct local_svc *s;
    struct local_group *g = NULL;
    struct eph_err err = {0};
    struct local_env *env = spawn_setup(&sf, &s, "touch ran");
    char *procs = xasprintf("%s/cgroup.procs", local_cgroup_env_dir(env));
    char *ran = xasprintf("%s/src/ran", env->dir);

    /* cgroup.procs that cannot be written */
    cr_assert_eq(unlink(procs), 0);
    cr_assert_eq(mkdir(procs, 0755), 0);
    cr_expect_lt(local__spawn(s, LOCAL_KIND_RUN, &g, &err), 0);
    cr_expect_null(g);
    cr_expect(strstr(err.msg, "cannot move process ") != NULL, "%s", err.msg);
    cr_expect(strstr(err.msg, "Is a directory") != NULL, "%s", err.msg);
    cr_assert(run_until(&sf.loop, env_groups_gone, env, 10000), "the group never ended");
    cr_expect_not(fs_exists(ran), "the command ran");
    free(procs);
    free(ran);
    spawn_teardown(&sf);
}
