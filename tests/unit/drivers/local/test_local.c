/*
 * tests/unit/drivers/local/test_local.c - the local driver on a real loop,
 * with real processes: a git repository made in a temporary directory and
 * mirrored with git_cache_sync(), services such as python3's http.server and
 * sleep. A timer calls apply() (or suspend() or teardown()) every few milliseconds, as the
 * reconciler would, until a condition holds or a deadline passes.
 *
 * Criterion runs each test in a forked child, several at once: every test has
 * its own directory and its own instance id, so /proc scans never see another
 * test's processes. Each test ends with nothing left: no process carrying its
 * instance's marker, no directory, and uv_loop_close() == 0.
 */
#include "drivers/local/local.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sources/git.h"
#include "util/fs.h"
#include "util/proc.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define MAX_SVCS 4
#define MAX_ENVP 8
#define GRACE_MS 300

#define GIT                                                                                        \
    "git -c user.name=t -c user.email=t@example.com -c commit.gpgsign=false "                      \
    "-c init.defaultBranch=main"

/* A TCP server on $PORT that accepts and never answers: enough for a TCP check. */
static const char tcp_py[] = "import os, socket, time\n"
                             "s = socket.socket()\n"
                             "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                             "s.bind(('127.0.0.1', int(os.environ['PORT'])))\n"
                             "s.listen(16)\n"
                             "time.sleep(1000)\n";

struct plan_env {
    struct drv_plan plan;
    struct drv_service svcs[MAX_SVCS];
    char *envp[MAX_SVCS][MAX_ENVP];
    size_t deps[MAX_SVCS][MAX_SVCS];
    struct drv_svc_status st[MAX_SVCS];
    struct drv_status status;
    int apply_rc;
    struct eph_err err;
};

struct fx {
    char root[64];
    char *repo, *cache, *envs;
    char sha[GIT_SHA_HEX + 1];
    char instance[64];
    uv_loop_t loop;
    struct driver *drv;
    int kicks;
    uv_timer_t tick;
    int ticks;
    /* what each tick does */
    struct plan_env *applying[2]; /* apply + observe these */
    struct plan_env *tearing;     /* teardown this one */
    int teardown_rc;
    int teardown_calls;
    struct plan_env *suspending; /* suspend this one (and observe it) */
    int suspend_rc;
    int suspend_calls;
    void (*on_tick)(struct fx *f); /* extra checks, after apply/observe */
    bool closed;
    const struct local_run_as *run_as; /* for the driver driver_open() makes */
};

static struct fx F;

/* ---------------------------------------------------------------- helpers */

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

static int
free_port(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert_geq(fd, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static void
on_kick(void *arg)
{
    ((struct fx *)arg)->kicks++;
}

static void
driver_open(struct fx *f)
{
    struct local_config cfg = {
        .loop = &f->loop,
        .envs_dir = f->envs,
        .instance_id = f->instance,
        .stop_grace_ms = GRACE_MS,
        .kick = on_kick,
        .kick_arg = f,
        .run_as = f->run_as,
    };
    struct eph_err err = {0};

    cr_assert_eq(local_driver_new(&cfg, &f->drv, &err), 0, "%s", err.msg);
    f->closed = false;
}

static void
on_closed(void *arg)
{
    ((struct fx *)arg)->closed = true;
}

static void
on_tick(uv_timer_t *t)
{
    struct fx *f = container_of(t, struct fx, tick);

    f->ticks++;
    for (size_t i = 0; i < ARRAY_LEN(f->applying); i++) {
        struct plan_env *pe = f->applying[i];
        if (pe == NULL)
            continue;
        pe->apply_rc = f->drv->ops->apply(f->drv, &pe->plan, &pe->err);
        f->drv->ops->observe(f->drv, &pe->plan, &pe->status);
    }
    if (f->suspending) {
        struct eph_err err = {0};
        struct plan_env *pe = f->suspending;
        f->suspend_rc = f->drv->ops->suspend(f->drv, pe->plan.env_id, pe->plan.env_name, &err);
        f->suspend_calls++;
        f->drv->ops->observe(f->drv, &pe->plan, &pe->status);
    }
    if (f->tearing) {
        struct eph_err err = {0};
        f->teardown_rc =
            f->drv->ops->teardown(f->drv, f->tearing->plan.env_id, f->tearing->plan.env_name, &err);
        f->teardown_calls++;
    }
    if (f->on_tick)
        f->on_tick(f);
}

/* Runs the loop, ticking every 10 ms, until cond() or timeout_ms; cond() is
 * first asked after one tick, so that it never judges stale observations. */
static bool
run_until(struct fx *f, bool (*cond)(struct fx *f), int64_t timeout_ms)
{
    int64_t deadline = time_mono_ms() + timeout_ms;
    int first = f->ticks;

    uv_timer_start(&f->tick, on_tick, 0, 10);
    while ((f->ticks == first || !cond(f)) && time_mono_ms() < deadline)
        uv_run(&f->loop, UV_RUN_ONCE);
    uv_timer_stop(&f->tick);
    return cond(f);
}

static bool
is_closed(struct fx *f)
{
    return f->closed;
}

static void
driver_close(struct fx *f)
{
    f->applying[0] = f->applying[1] = NULL;
    f->tearing = NULL;
    f->suspending = NULL;
    f->on_tick = NULL;
    f->drv->ops->close(f->drv, on_closed, f);
    f->drv = NULL;
    cr_assert(run_until(f, is_closed, 5000), "driver close never finished");
}

static void
fx_init(struct fx *f)
{
    struct eph_err err = {0};
    FILE *p;

    signal(SIGPIPE, SIG_IGN); /* as the daemon does */
    memset(f, 0, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/eph-test-local-XXXXXX");
    cr_assert_not_null(mkdtemp(f->root));
    f->repo = xasprintf("%s/repo", f->root);
    f->cache = xasprintf("%s/cache/app.git", f->root);
    f->envs = xasprintf("%s/envs", f->root);
    snprintf(f->instance, sizeof(f->instance), "test%d", (int)getpid());
    sh("mkdir -p %s/srv && cd %s && printf 'version: 1\\n' > ephemera.yaml && "
       "cat > srv/tcp.py <<'EOF'\n%sEOF\n" GIT " init -q . && " GIT " add -A && " GIT
       " commit -qm one",
       f->repo, f->repo, tcp_py);
    cr_assert_eq(git_cache_sync(f->repo, f->cache, &err), 0, "%s", err.msg);
    char *cmd = xasprintf("git -C %s rev-parse HEAD", f->repo);
    p = popen(cmd, "r");
    free(cmd);
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(f->sha, sizeof(f->sha), p));
    pclose(p);
    cr_assert_eq(strlen(f->sha), GIT_SHA_HEX);
    cr_assert_eq(uv_loop_init(&f->loop), 0);
    cr_assert_eq(uv_timer_init(&f->loop, &f->tick), 0);
    driver_open(f);
}

/* A plan of one environment; services are added with add_svc(). */
static void
plan_init(struct plan_env *pe, int64_t id, const char *name)
{
    memset(pe, 0, sizeof(*pe));
    pe->plan.env_id = id;
    pe->plan.env_name = name;
    pe->plan.repo_cache = F.cache;
    pe->plan.commit = F.sha;
    pe->plan.services = pe->svcs;
    pe->status.services = pe->st;
}

static struct drv_service *
add_svc(struct plan_env *pe, const char *name, const char *run, int port,
        enum spec_health_kind health, ...)
{
    size_t i = pe->plan.n_services++;
    struct drv_service *s = &pe->svcs[i];
    va_list ap;
    size_t n = 0;
    const char *e;

    cr_assert_lt(i, MAX_SVCS);
    s->name = name;
    s->run = run;
    s->port = port;
    s->health_kind = health;
    s->health_path = "/";
    s->health_timeout_ms = 10000;
    pe->envp[i][n++] = xasprintf("PORT=%d", port);
    va_start(ap, health);
    while ((e = va_arg(ap, const char *)) != NULL) {
        cr_assert_lt(n, MAX_ENVP - 1);
        pe->envp[i][n++] = xstrdup(e);
    }
    va_end(ap);
    pe->envp[i][n] = NULL;
    s->envp = pe->envp[i];
    pe->status.n_services = pe->plan.n_services;
    return s;
}

static void
add_dep(struct plan_env *pe, size_t svc, size_t dep)
{
    struct drv_service *s = &pe->svcs[svc];

    pe->deps[svc][s->n_deps++] = dep;
    s->deps = pe->deps[svc];
}

static void
plan_release(struct plan_env *pe)
{
    for (size_t i = 0; i < MAX_SVCS; i++) {
        for (size_t k = 0; pe->envp[i][k]; k++)
            free(pe->envp[i][k]);
    }
}

static char *
env_dir(const struct plan_env *pe)
{
    char real[PATH_MAX];

    cr_assert_not_null(realpath(F.envs, real));
    return xasprintf("%s/%" PRId64 "-%s", real, pe->plan.env_id, pe->plan.env_name);
}

/* ---------------------------------------------------------------- markers */

struct marker_count {
    const char *prefix;
    pid_t pgids[64];
    int n_groups;
    int n_procs;
};

static void
on_marker(pid_t pid, pid_t pgid, const char *value, void *arg)
{
    struct marker_count *mc = arg;

    if (strncmp(value, mc->prefix, strlen(mc->prefix)) != 0)
        return;
    mc->n_procs++;
    for (int i = 0; i < mc->n_groups; i++) {
        if (mc->pgids[i] == pgid)
            return;
    }
    if (mc->n_groups < 64)
        mc->pgids[mc->n_groups++] = pgid;
}

/* Distinct live process groups whose EPH_OWNER starts with `prefix`. */
static int
count_groups(const char *prefix)
{
    struct marker_count mc = {.prefix = prefix};

    cr_assert_geq(proc_scan_marker("EPH_OWNER", on_marker, &mc), 0);
    return mc.n_groups;
}

static int
count_instance_groups(void)
{
    char prefix[80];

    snprintf(prefix, sizeof(prefix), "%s/", F.instance);
    return count_groups(prefix);
}

/* ---------------------------------------------------------------- conditions */

static struct plan_env *cond_pe;
static size_t cond_svc;
static enum svc_state cond_state;

static bool
svc_in_state(struct fx *f)
{
    return cond_pe->st[cond_svc].state == cond_state;
}

static bool
wait_state(struct plan_env *pe, size_t svc, enum svc_state state, int64_t timeout_ms)
{
    F.applying[0] = pe;
    cond_pe = pe;
    cond_svc = svc;
    cond_state = state;
    return run_until(&F, svc_in_state, timeout_ms);
}

static bool
all_healthy(struct fx *f)
{
    for (size_t k = 0; k < ARRAY_LEN(f->applying); k++) {
        struct plan_env *pe = f->applying[k];
        for (size_t i = 0; pe && i < pe->plan.n_services; i++) {
            if (pe->st[i].state != SVC_STATE_HEALTHY)
                return false;
        }
    }
    return true;
}

static bool
torn_down(struct fx *f)
{
    return f->teardown_rc == 0 && f->teardown_calls > 0;
}

static void
teardown_env(struct plan_env *pe)
{
    char *dir = env_dir(pe);

    F.applying[0] = F.applying[1] = NULL;
    F.on_tick = NULL;
    F.tearing = pe;
    F.teardown_calls = 0;
    cr_assert(run_until(&F, torn_down, 10000), "teardown of '%s' never finished: rc=%d",
              pe->plan.env_name, F.teardown_rc);
    F.tearing = NULL;
    cr_expect(!fs_exists(dir), "'%s' is removed", dir);
    free(dir);
}

/* Counts (and with `kill`, SIGKILLs) the live groups that the driver's records
 * under envs/<id>-<name>/state/ name: they include those whose leaders lost the
 * marker. */
static int
recorded_live(const char *envs, bool kill_them)
{
    int n = 0;

    DIR *d = opendir(envs);
    struct dirent *de;

    while (d != NULL && (de = readdir(d)) != NULL) {
        char *state = xasprintf("%s/%s/state", envs, de->d_name);
        DIR *sd = de->d_name[0] == '.' ? NULL : opendir(state);
        struct dirent *se;

        while (sd != NULL && (se = readdir(sd)) != NULL) {
            char *path = xasprintf("%s/%s", state, se->d_name), *data = NULL;
            int pgid = 0;
            unsigned long long want = 0;
            uint64_t ticks = 0;

            if ((strstr(se->d_name, ".run.") || strstr(se->d_name, ".setup.")) &&
                fs_read_all(path, 64, &data, NULL) == 0 &&
                sscanf(data, "%d %llu", &pgid, &want) == 2 && pgid > 1 &&
                proc_start_ticks(pgid, &ticks) == 0 && ticks == want &&
                proc_group_live_count(pgid) > 0) {
                n++;
                if (kill_them)
                    kill(-pgid, SIGKILL);
            }
            free(data);
            free(path);
        }
        if (sd != NULL)
            closedir(sd);
        free(state);
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/* Everything of the test gone: processes, driver, loop, files. */
static void
fx_fini(struct fx *f)
{
    if (f->drv)
        driver_close(f);
    cr_expect_eq(count_instance_groups(), 0, "no process of this test is left");
    cr_expect_eq(recorded_live(f->envs, false), 0, "no recorded group is left");
    uv_close((uv_handle_t *)&f->tick, NULL);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    cr_expect_eq(uv_loop_close(&f->loop), 0, "every handle is closed");
    fs_rm_rf(f->root);
    free(f->repo);
    free(f->cache);
    free(f->envs);
    f->repo = f->cache = f->envs = NULL; /* kill_leftovers() runs after us */
}

static const char *http_run = "exec /usr/bin/python3 -m http.server $PORT --bind 127.0.0.1";
static const char *tcp_run = "exec /usr/bin/python3 tcp.py";

/* ---------------------------------------------------------------- tests */

/* Groups of a test that carry no marker, for kill_leftovers() to find. */
static pid_t unmarked[8];
static size_t n_unmarked;

static void
remember_unmarked(pid_t pgid)
{
    cr_assert_lt(n_unmarked, ARRAY_LEN(unmarked));
    unmarked[n_unmarked++] = pgid;
}

/* After a failed assertion: leave no process and no directory behind. */
static void
kill_leftovers(void)
{
    char prefix[80];
    struct marker_count mc = {.prefix = prefix};

    for (size_t i = 0; i < n_unmarked; i++) {
        if (proc_group_live_count(unmarked[i]) > 0)
            kill(-unmarked[i], SIGKILL);
    }
    if (F.envs != NULL)
        recorded_live(F.envs, true);
    if (F.instance[0] == '\0')
        return;
    snprintf(prefix, sizeof(prefix), "%s/", F.instance);
    proc_scan_marker("EPH_OWNER", on_marker, &mc);
    for (int i = 0; i < mc.n_groups; i++)
        kill(-mc.pgids[i], SIGKILL);
    if (F.root[0] != '\0')
        fs_rm_rf(F.root);
}

TestSuite(local, .timeout = 60, .fini = kill_leftovers);

Test(local, checks_out_starts_and_checks_http_and_tcp_health)
{
    struct plan_env pe;
    char *dir, *marker, *log, *data = NULL;

    fx_init(&F);
    plan_init(&pe, 1, "fx");
    add_svc(&pe, "web", http_run, free_port(), SPEC_HEALTH_HTTP, NULL);
    add_svc(&pe, "db", tcp_run, free_port(), SPEC_HEALTH_TCP, NULL)->dir = "srv";
    F.applying[0] = &pe;
    cr_assert(run_until(&F, all_healthy, 20000), "web=%d db=%d prep=%d %s", pe.st[0].state,
              pe.st[1].state, pe.status.prep, pe.status.reason);
    cr_expect_eq(pe.apply_rc, 0);
    cr_expect_eq(pe.status.prep, DRV_PREP_DONE);
    for (size_t i = 0; i < 2; i++) {
        cr_expect_gt(pe.st[i].pid, 0);
        cr_expect_eq(getpgid(pe.st[i].pid), pe.st[i].pid, "a group of its own");
        cr_expect_eq(pe.st[i].restarts, 0);
        cr_expect_gt(pe.st[i].started_at_ms, time_wall_ms() - 60000);
        cr_expect_str_eq(pe.st[i].reason, "");
    }
    cr_expect_gt(F.kicks, 0);
    dir = env_dir(&pe);
    marker = xasprintf("%s/state/checkout.done", dir);
    cr_assert_eq(fs_read_all(marker, 100, &data, NULL), 0);
    cr_expect_eq(strncmp(data, F.sha, GIT_SHA_HEX), 0);
    free(data);
    log = F.drv->ops->log_path(F.drv, 1, "fx", "web");
    char *want_log = xasprintf("%s/logs/web.log", dir);
    cr_expect_str_eq(log, want_log);
    free(want_log);
    free(log);
    teardown_env(&pe);
    fx_fini(&F);
    free(dir);
    free(marker);
    plan_release(&pe);
}

static bool dep_order_broken;

static void
check_dep_order(struct fx *f)
{
    struct plan_env *pe = f->applying[0];

    if (pe->st[1].state != SVC_STATE_PENDING && pe->st[0].state != SVC_STATE_HEALTHY)
        dep_order_broken = true;
}

Test(local, starts_a_service_once_its_dependencies_are_healthy)
{
    struct plan_env pe;
    int a_port = free_port();
    char *b_run = xasprintf("/usr/bin/python3 -c \"import socket; "
                            "socket.create_connection(('127.0.0.1', %d))\" && exec sleep 1000",
                            a_port);

    fx_init(&F);
    plan_init(&pe, 2, "deps");
    add_svc(&pe, "a", "sleep 0.5; exec /usr/bin/python3 tcp.py", a_port, SPEC_HEALTH_TCP, NULL)
        ->dir = "srv";
    add_svc(&pe, "b", b_run, 0, SPEC_HEALTH_NONE, NULL);
    add_dep(&pe, 1, 0);
    F.applying[0] = &pe;
    F.on_tick = check_dep_order;
    cr_assert(run_until(&F, all_healthy, 20000), "a=%d b=%d", pe.st[0].state, pe.st[1].state);
    cr_expect(!dep_order_broken, "b started before a was healthy");
    cr_expect_eq(pe.st[1].restarts, 0, "b found a listening");
    teardown_env(&pe);
    fx_fini(&F);
    free(b_run);
    plan_release(&pe);
}

static const char *cond_path;

static bool
seen_written(struct fx *f)
{
    return f->applying[0]->st[0].state == SVC_STATE_HEALTHY && fs_exists(cond_path);
}

Test(local, runs_setup_once_and_passes_the_environment)
{
    struct plan_env pe;
    char *dir, *seen, *want, *count, *marker, *log_path, *data = NULL;
    struct drv_service *s;
    int pid;

    fx_init(&F);
    plan_init(&pe, 3, "setup");
    s = add_svc(&pe, "api",
                "printf '%s|%s|%s|%s\\n' \"$PORT\" \"$EPH_DATA\" \"$CUSTOM\" \"$EPH_OWNER\" "
                "> \"$EPH_DATA/seen.tmp\" && mv \"$EPH_DATA/seen.tmp\" \"$EPH_DATA/seen\"; "
                "exec sleep 1000",
                1234, SPEC_HEALTH_NONE, "CUSTOM=hello world", "EPH_OWNER=someone-else", NULL);
    s->setup = "echo setup ran; echo ran >> \"$EPH_DATA/setup-count\"";
    dir = env_dir(&pe);
    seen = xasprintf("%s/data/api/seen", dir);
    count = xasprintf("%s/data/api/setup-count", dir);
    marker = xasprintf("%s/state/setup-api.done", dir);
    want = xasprintf("1234|%s/data/api|hello world|%s/3/api\n", dir, F.instance);
    F.applying[0] = &pe;
    cond_path = seen;
    cr_assert(run_until(&F, seen_written, 20000), "state=%d reason=%s", pe.st[0].state,
              pe.st[0].reason);
    cr_assert_eq(fs_read_all(seen, 4096, &data, NULL), 0);
    cr_expect_str_eq(data, want);
    free(data);
    cr_expect(fs_exists(marker));

    /* A crash restarts the service, not its setup. */
    pid = pe.st[0].pid;
    unlink(seen);
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_assert(run_until(&F, seen_written, 10000));
    cr_expect_neq(pe.st[0].pid, pid);
    cr_expect_eq(pe.st[0].restarts, 1);
    cr_assert_eq(fs_read_all(count, 4096, &data, NULL), 0);
    cr_expect_str_eq(data, "ran\n", "setup ran once");
    free(data);
    log_path = F.drv->ops->log_path(F.drv, 3, "setup", "api");
    cr_assert_eq(fs_read_all(log_path, 4096, &data, NULL), 0);
    cr_expect(strstr(data, "setup ran\n") != NULL, "setup output in the log: %s", data);
    free(data);
    teardown_env(&pe);
    fx_fini(&F);
    free(dir);
    free(seen);
    free(want);
    free(count);
    free(marker);
    free(log_path);
    plan_release(&pe);
}

Test(local, fails_a_service_whose_setup_fails)
{
    struct plan_env pe;

    fx_init(&F);
    plan_init(&pe, 4, "badsetup");
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL)->setup = "exit 3";
    cr_assert(wait_state(&pe, 0, SVC_STATE_FAILED, 20000), "state=%d", pe.st[0].state);
    cr_expect_str_eq(pe.st[0].reason, "setup of 'api' exited with status 3");
    cr_expect_eq(pe.st[0].pid, 0);
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, restarts_a_crashed_service_with_back_off)
{
    struct plan_env pe;
    int pid;
    int64_t crashed_at;

    fx_init(&F);
    plan_init(&pe, 5, "crash");
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    add_svc(&pe, "flaky", "sleep 0.2; exit 1", 0, SPEC_HEALTH_NONE, NULL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    pid = pe.st[0].pid;
    cr_assert_gt(pid, 0);
    kill(pid, SIGKILL);
    crashed_at = time_mono_ms();
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_expect_str_eq(pe.st[0].reason, "killed by signal 9");
    cr_expect_eq(pe.st[0].restarts, 1);
    cr_expect_eq(pe.st[0].pid, 0);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 5000));
    cr_expect_geq(time_mono_ms() - crashed_at, 900, "restarted after the 1 s back-off");
    cr_expect_neq(pe.st[0].pid, pid);
    cr_expect_gt(pe.st[0].pid, 0);
    cr_expect_str_eq(pe.st[0].reason, "");

    cr_assert(wait_state(&pe, 1, SVC_STATE_RESTARTING, 5000));
    cr_expect_str_eq(pe.st[1].reason, "exited with status 1");
    cr_expect_geq(pe.st[1].restarts, 1);
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, fails_a_service_that_never_becomes_healthy)
{
    struct plan_env pe;
    int pid = 0;

    fx_init(&F);
    plan_init(&pe, 6, "unhealthy");
    add_svc(&pe, "api", "exec sleep 1000", free_port(), SPEC_HEALTH_TCP, NULL)->health_timeout_ms =
        1000;
    cr_assert(wait_state(&pe, 0, SVC_STATE_STARTING, 20000));
    pid = pe.st[0].pid;
    cr_assert_gt(pid, 0);
    cr_assert(wait_state(&pe, 0, SVC_STATE_FAILED, 5000), "state=%d", pe.st[0].state);
    cr_expect_str_eq(pe.st[0].reason, "service 'api' did not become healthy within 1s");
    cr_expect_eq(pe.st[0].pid, 0);
    for (int i = 0; i < 200 && proc_group_live_count(pid) > 0; i++)
        uv_run(&F.loop, UV_RUN_ONCE);
    cr_expect_eq(proc_group_live_count(pid), 0, "its group is stopped");
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, probes_an_upstream_on_the_host_of_its_url)
{
    struct plan_env pe;
    int port = free_port();
    struct drv_service *ext, *ip, *gone;

    fx_init(&F);
    plan_init(&pe, 7, "upstreams");
    add_svc(&pe, "srv", http_run, port, SPEC_HEALTH_HTTP, NULL);
    ext = add_svc(&pe, "ext", NULL, port, SPEC_HEALTH_HTTP, NULL);
    ext->health_host = "localhost"; /* a name: resolved off the loop */
    add_dep(&pe, 1, 0);
    ip = add_svc(&pe, "ip", NULL, port, SPEC_HEALTH_TCP, NULL);
    ip->health_host = "127.0.0.1";
    add_dep(&pe, 2, 0);
    gone = add_svc(&pe, "gone", NULL, port, SPEC_HEALTH_TCP, NULL);
    gone->health_host = "nowhere.invalid";
    gone->health_timeout_ms = 1000;
    F.applying[0] = &pe;
    cr_assert(wait_state(&pe, 1, SVC_STATE_HEALTHY, 20000), "ext=%d %s", pe.st[1].state,
              pe.st[1].reason);
    cr_assert(wait_state(&pe, 2, SVC_STATE_HEALTHY, 5000), "ip=%d", pe.st[2].state);
    cr_expect_eq(pe.st[1].pid, 0, "nothing of ours runs for an upstream");
    cr_assert(wait_state(&pe, 3, SVC_STATE_FAILED, 10000), "gone=%d", pe.st[3].state);
    cr_expect_str_eq(pe.st[3].reason, "service 'gone' did not become healthy within 1s");
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, teardown_stops_the_whole_group_and_removes_the_directory)
{
    struct plan_env pe;
    int pid;
    int64_t started;

    fx_init(&F);
    plan_init(&pe, 7, "down");
    /* Ignores SIGTERM, like a stuck server, and leaves a grandchild. */
    add_svc(&pe, "api", "trap '' TERM; sleep 1000 & sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    pid = pe.st[0].pid;
    for (int i = 0; i < 100 && proc_group_live_count(pid) < 3; i++)
        usleep(10000);
    cr_assert_geq(proc_group_live_count(pid), 3, "sh and two sleeps");
    started = time_mono_ms();
    teardown_env(&pe);
    cr_expect_geq(time_mono_ms() - started, GRACE_MS, "SIGKILL only after the grace period");
    cr_expect_eq(proc_group_live_count(pid), 0);
    cr_expect_geq(F.teardown_calls, 2, "EPH_EAGAIN first");
    /* Idempotent: nothing left to do. */
    struct eph_err err = {0};
    cr_expect_eq(F.drv->ops->teardown(F.drv, 7, "down", &err), 0);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, adopts_the_processes_of_an_earlier_server)
{
    struct plan_env pe;
    char *extra;
    char owner[80];
    int pid;

    fx_init(&F);
    plan_init(&pe, 8, "adopt");
    add_svc(&pe, "web", http_run, free_port(), SPEC_HEALTH_HTTP, NULL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    pid = pe.st[0].pid;
    driver_close(&F); /* leaves web running */
    cr_assert_eq(proc_group_live_count(pid), 1);

    /* A file added to the checkout survives: no second checkout. */
    char *dir = env_dir(&pe);
    extra = xasprintf("%s/src/extra", dir);
    cr_assert_eq(fs_write_atomic(extra, "x", 1, 0644), 0);

    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d", pe.st[0].state);
    cr_expect_eq(pe.st[0].pid, pid, "the same process, adopted");
    cr_expect_eq(pe.st[0].restarts, 0);
    cr_expect(fs_exists(extra));
    snprintf(owner, sizeof(owner), "%s/8/web", F.instance);
    cr_expect_eq(count_groups(owner), 1, "no second copy");

    /* Its exit is watched although it is not the new driver's child. */
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_expect_str_eq(pe.st[0].reason, "killed by signal 9");
    cr_expect_eq(pe.st[0].restarts, 1);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 10000));
    cr_expect_neq(pe.st[0].pid, pid);
    cr_expect_eq(count_groups(owner), 1);
    teardown_env(&pe);
    fx_fini(&F);
    free(extra);
    free(dir);
    plan_release(&pe);
}

Test(local, reruns_a_setup_an_earlier_server_left_unfinished)
{
    struct plan_env pe;
    int setup_pid;

    fx_init(&F);
    plan_init(&pe, 9, "resetup");
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL)->setup = "sleep 1000";
    cr_assert(wait_state(&pe, 0, SVC_STATE_SETUP, 20000));
    setup_pid = pe.st[0].pid;
    cr_assert_gt(setup_pid, 0);
    driver_close(&F);

    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_SETUP, 20000));
    cr_expect_neq(pe.st[0].pid, setup_pid, "setup started again");
    for (int i = 0; i < 100 && proc_group_live_count(setup_pid) > 0; i++)
        usleep(10000);
    cr_expect_eq(proc_group_live_count(setup_pid), 0, "the old setup is killed");
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

static bool
suspended(struct fx *f)
{
    return f->suspend_rc == 0 && f->suspend_calls > 0;
}

/* suspend() until it reports nothing runs. */
static void
suspend_env(struct plan_env *pe)
{
    F.applying[0] = F.applying[1] = NULL;
    F.suspending = pe;
    F.suspend_calls = 0;
    cr_assert(run_until(&F, suspended, 10000), "suspend of '%s' never finished: rc=%d",
              pe->plan.env_name, F.suspend_rc);
    F.suspending = NULL;
}

static bool
healthy_pe(struct fx *f)
{
    return all_healthy(f);
}

Test(local, suspend_stops_everything_and_keeps_files_then_apply_resumes_without_setup)
{
    struct plan_env pe;
    struct drv_service *db;
    char *dir, *count, *marker, *data = NULL;
    int db_pid, web_pid;
    int64_t started;

    fx_init(&F);
    plan_init(&pe, 20, "nap");
    db = add_svc(&pe, "db", tcp_run, free_port(), SPEC_HEALTH_TCP, NULL);
    db->dir = "srv";
    db->setup = "echo ran >> \"$EPH_DATA/setup-count\"";
    add_svc(&pe, "web", http_run, free_port(), SPEC_HEALTH_HTTP, NULL);
    add_dep(&pe, 1, 0);
    dir = env_dir(&pe);
    count = xasprintf("%s/data/db/setup-count", dir);
    marker = xasprintf("%s/state/setup-db.done", dir);
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000), "db=%d web=%d", pe.st[0].state, pe.st[1].state);
    db_pid = pe.st[0].pid;
    web_pid = pe.st[1].pid;

    /* Asleep: nothing runs, every file stays, and no stop is a crash. */
    suspend_env(&pe);
    cr_expect_eq(count_instance_groups(), 0, "no process is left");
    cr_expect_eq(proc_group_live_count(db_pid), 0);
    cr_expect_eq(proc_group_live_count(web_pid), 0);
    cr_expect_eq(pe.st[0].state, SVC_STATE_STOPPED);
    cr_expect_eq(pe.st[1].state, SVC_STATE_STOPPED);
    cr_expect_eq(pe.st[0].restarts, 0);
    cr_expect_eq(pe.st[1].restarts, 0);
    cr_expect_eq(pe.st[0].pid, 0);
    cr_expect(fs_exists(marker), "the setup-done mark stays");
    cr_expect(fs_exists(count), "data stays");
    cr_expect_eq(recorded_live(F.envs, false), 0);

    /* Awake again: in order, without setup, no crash counted. */
    started = time_mono_ms();
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000), "db=%d web=%d", pe.st[0].state, pe.st[1].state);
    cr_log_info("woke in %" PRId64 " ms", time_mono_ms() - started);
    cr_expect_neq(pe.st[0].pid, db_pid);
    cr_expect_eq(pe.st[0].restarts, 0);
    cr_expect_eq(pe.st[1].restarts, 0);
    cr_assert_eq(fs_read_all(count, 4096, &data, NULL), 0);
    cr_expect_str_eq(data, "ran\n", "setup ran once");
    free(data);

    /* Asleep across a server restart: nothing starts it, and the wake after
     * it runs no setup either. */
    suspend_env(&pe);
    driver_close(&F);
    driver_open(&F);
    struct eph_err err = {0};
    cr_expect_eq(F.drv->ops->suspend(F.drv, pe.plan.env_id, pe.plan.env_name, &err), 0,
                 "nothing to stop: %s", err.msg);
    cr_expect_eq(count_instance_groups(), 0);
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000), "db=%d web=%d", pe.st[0].state, pe.st[1].state);
    cr_assert_eq(fs_read_all(count, 4096, &data, NULL), 0);
    cr_expect_str_eq(data, "ran\n", "setup ran once, across the restart too");
    free(data);

    /* A wake right after a sleep waits for the old processes to go. */
    cr_expect_eq(F.drv->ops->suspend(F.drv, pe.plan.env_id, pe.plan.env_name, &err), EPH_EAGAIN,
                 "stopping");
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000), "db=%d web=%d", pe.st[0].state, pe.st[1].state);
    cr_expect_eq(count_instance_groups(), 2, "one group per service");
    teardown_env(&pe);
    fx_fini(&F);
    free(dir);
    free(count);
    free(marker);
    plan_release(&pe);
}

Test(local, suspend_stops_what_an_earlier_server_left_of_an_asleep_environment)
{
    struct plan_env pe;
    int pid;

    fx_init(&F);
    plan_init(&pe, 21, "left");
    add_svc(&pe, "web", http_run, free_port(), SPEC_HEALTH_HTTP, NULL);
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000));
    pid = pe.st[0].pid;
    driver_close(&F); /* leaves web running; the next server finds it asleep */
    driver_open(&F);
    suspend_env(&pe);
    cr_expect_eq(proc_group_live_count(pid), 0, "stopped");
    cr_expect_eq(count_instance_groups(), 0);
    F.drv->ops->sweep(F.drv);
    F.applying[0] = &pe;
    cr_assert(run_until(&F, healthy_pe, 20000));
    cr_expect_neq(pe.st[0].pid, pid);
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

static bool
svc_failed(struct fx *f)
{
    return cond_pe->st[cond_svc].state == SVC_STATE_FAILED;
}

static bool
svc_not_failed(struct fx *f)
{
    return cond_pe->st[cond_svc].state != SVC_STATE_FAILED;
}

/* Applies pe for up to `ms`, until cond() holds for service `svc`: whether it did. */
static bool
within(struct plan_env *pe, size_t svc, bool (*cond)(struct fx *f), int64_t ms)
{
    F.applying[0] = pe;
    cond_pe = pe;
    cond_svc = svc;
    return run_until(&F, cond, ms);
}

Test(local, fails_a_service_that_keeps_exiting_before_it_was_ever_healthy)
{
    struct plan_env pe;
    int64_t first_exit, took;

    fx_init(&F);
    plan_init(&pe, 30, "loop");
    add_svc(&pe, "api", "echo starting; exit 1", free_port(), SPEC_HEALTH_TCP, NULL)
        ->health_timeout_ms = 2000;
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 20000), "state=%d", pe.st[0].state);
    first_exit = time_mono_ms();
    cr_expect_str_eq(pe.st[0].reason, "exited with status 1");
    /* Started at 0 and 1 s; the next restart (at 3 s) would come after the
     * deadline of the first start, which no restart moved. */
    cr_assert(wait_state(&pe, 0, SVC_STATE_FAILED, 10000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    took = time_mono_ms() - first_exit;
    cr_expect_str_eq(pe.st[0].reason, "service 'api' did not become healthy within 2s "
                                      "(exited 2 times; last: exited with status 1)");
    cr_expect_eq(pe.st[0].restarts, 1);
    cr_expect_eq(pe.st[0].pid, 0);
    cr_expect(took >= 1000 && took <= 4000, "failed %" PRId64 " ms after the first exit", took);
    /* Failed for good: no restart follows (one would have come at 3 s). */
    cr_expect(!within(&pe, 0, svc_not_failed, 2000), "state=%d", pe.st[0].state);
    cr_expect_eq(pe.st[0].restarts, 1);
    cr_expect_eq(count_instance_groups(), 0, "nothing runs");
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, keeps_restarting_a_service_that_was_healthy_and_fails_its_crash_loop_on_a_wake)
{
    struct plan_env pe;
    struct drv_service *api;
    char *dir, *broken;
    int pid;

    fx_init(&F);
    plan_init(&pe, 31, "relapse");
    /* Serves until $EPH_DATA/broken exists; exits at once from then on. */
    api =
        add_svc(&pe, "api", "test -e \"$EPH_DATA/broken\" && exit 1; exec /usr/bin/python3 tcp.py",
                free_port(), SPEC_HEALTH_TCP, NULL);
    api->dir = "srv";
    api->health_timeout_ms = 1000;
    dir = env_dir(&pe);
    broken = xasprintf("%s/data/api/broken", dir);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    pid = pe.st[0].pid;
    cr_assert_eq(fs_write_atomic(broken, "", 0, 0644), 0);
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_expect_str_eq(pe.st[0].reason, "killed by signal 9");

    /* Healthy once: its crash loop (restarts at 1 s and 3 s) outlasts the
     * health timeout without failing. */
    cr_expect(!within(&pe, 0, svc_failed, 4000), "failed: %s", pe.st[0].reason);
    cr_expect_geq(pe.st[0].restarts, 3, "restarts=%d", pe.st[0].restarts);
    cr_expect_eq(pe.st[0].state, SVC_STATE_RESTARTING);
    cr_expect_str_eq(pe.st[0].reason, "exited with status 1");

    /* A wake is a new start: not healthy within the timeout of its first
     * start, it fails (the restart at 1 s would come too late). */
    suspend_env(&pe);
    cr_expect_eq(pe.st[0].state, SVC_STATE_STOPPED);
    cr_assert(within(&pe, 0, svc_failed, 10000), "state=%d", pe.st[0].state);
    cr_expect_str_eq(pe.st[0].reason, "service 'api' did not become healthy within 1s "
                                      "(exited once: exited with status 1)");
    cr_expect_eq(count_instance_groups(), 0, "nothing runs");

    /* Repaired and woken again: healthy, the failure forgotten. */
    cr_assert_eq(unlink(broken), 0);
    suspend_env(&pe);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    cr_expect_str_eq(pe.st[0].reason, "");
    teardown_env(&pe);
    fx_fini(&F);
    free(broken);
    free(dir);
    plan_release(&pe);
}

Test(local, adopts_a_healthy_service_older_than_its_health_timeout)
{
    struct plan_env pe;
    struct drv_service *web;
    int pid;
    int64_t started_at;

    fx_init(&F);
    plan_init(&pe, 32, "elder");
    web = add_svc(&pe, "web", tcp_run, free_port(), SPEC_HEALTH_TCP, NULL);
    web->dir = "srv";
    web->health_timeout_ms = 1000;
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    pid = pe.st[0].pid;
    started_at = pe.st[0].started_at_ms;
    driver_close(&F); /* leaves web running */
    for (int i = 0; i < 300 && time_wall_ms() - started_at <= 1500; i++)
        usleep(10000);
    cr_assert_gt(time_wall_ms() - started_at, 1500, "older than its health timeout");

    /* Its deadline runs from the adoption, not from its start long ago. */
    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    cr_expect_eq(pe.st[0].pid, pid, "adopted");

    /* Healthy under this server: a crash is restarted as usual, its restart
     * (after 1 s) given a whole timeout of its own. */
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 10000), "state=%d %s", pe.st[0].state,
              pe.st[0].reason);
    cr_expect_neq(pe.st[0].pid, pid);
    cr_expect_eq(pe.st[0].restarts, 1);
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, sweep_stops_groups_no_plan_claimed)
{
    struct plan_env keep, drop;
    int keep_pid, drop_pid;
    char *drop_dir;

    fx_init(&F);
    plan_init(&keep, 10, "keep");
    add_svc(&keep, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    plan_init(&drop, 11, "drop");
    add_svc(&drop, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    F.applying[0] = &keep;
    F.applying[1] = &drop;
    cr_assert(run_until(&F, all_healthy, 20000));
    keep_pid = keep.st[0].pid;
    drop_pid = drop.st[0].pid;
    drop_dir = env_dir(&drop);
    driver_close(&F);

    driver_open(&F);
    cr_assert(wait_state(&keep, 0, SVC_STATE_HEALTHY, 20000));
    cr_expect_eq(keep.st[0].pid, keep_pid);
    F.drv->ops->sweep(F.drv);
    for (int i = 0; i < 500 && proc_group_live_count(drop_pid) > 0; i++)
        uv_run(&F.loop, UV_RUN_ONCE);
    cr_expect_eq(proc_group_live_count(drop_pid), 0, "the unclaimed group is stopped");
    cr_expect_eq(proc_group_live_count(keep_pid), 1, "the claimed one runs on");
    cr_expect(fs_exists(drop_dir), "sweep stops processes only");
    /* Closing with an adopted group watched through a pidfd leaves it running. */
    driver_close(&F);
    cr_expect_eq(proc_group_live_count(keep_pid), 1);
    driver_open(&F);
    teardown_env(&keep);
    teardown_env(&drop); /* never applied by this driver: found by its directory */
    fx_fini(&F);
    free(drop_dir);
    plan_release(&keep);
    plan_release(&drop);
}

Test(local, tears_down_an_environment_an_earlier_server_ran)
{
    struct plan_env pe;
    int pid;

    fx_init(&F);
    plan_init(&pe, 12, "orphan");
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    pid = pe.st[0].pid;
    driver_close(&F);
    driver_open(&F);
    teardown_env(&pe);
    cr_expect_eq(proc_group_live_count(pid), 0);
    fx_fini(&F);
    plan_release(&pe);
}

static bool
prep_failed(struct fx *f)
{
    return cond_pe->status.prep == DRV_PREP_FAILED;
}

Test(local, reports_a_checkout_that_fails)
{
    struct plan_env pe;

    fx_init(&F);
    plan_init(&pe, 13, "nocommit");
    pe.plan.commit = "0123456789012345678901234567890123456789";
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    F.applying[0] = &pe;
    cond_pe = &pe;
    cr_assert(run_until(&F, prep_failed, 20000), "prep=%d", pe.status.prep);
    cr_expect(strncmp(pe.status.reason, "cannot check out commit 0123456: ", 33) == 0, "%s",
              pe.status.reason);
    cr_expect_eq(pe.st[0].state, SVC_STATE_PENDING);
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, closes_while_a_checkout_is_running)
{
    struct plan_env pe;
    struct eph_err err = {0};

    fx_init(&F);
    plan_init(&pe, 15, "early");
    add_svc(&pe, "api", "exec sleep 1000", 0, SPEC_HEALTH_NONE, NULL);
    cr_assert_eq(F.drv->ops->apply(F.drv, &pe.plan, &err), 0);
    F.drv->ops->observe(F.drv, &pe.plan, &pe.status);
    cr_expect_eq(pe.status.prep, DRV_PREP_CHECKOUT);
    driver_close(&F); /* done only once the worker has finished */
    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    teardown_env(&pe);
    fx_fini(&F);
    plan_release(&pe);
}

Test(local, refuses_a_plan_it_cannot_run)
{
    static const struct {
        const char *name, *dir;
        int port;
        enum spec_health_kind health;
        const char *want;
    } bad[] = {
        {"../x", NULL, 0, SPEC_HEALTH_NONE, "invalid service name '../x'"},
        {"api", "../up", 0, SPEC_HEALTH_NONE, "service 'api': invalid dir '../up'"},
        {"api", "/abs", 0, SPEC_HEALTH_NONE, "service 'api': invalid dir '/abs'"},
        {"api", NULL, 0, SPEC_HEALTH_TCP, "service 'api' has a health check but no port"},
    };

    fx_init(&F);
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct plan_env pe;
        struct drv_service *s;
        struct eph_err err = {0};

        plan_init(&pe, 14, "bad");
        s = add_svc(&pe, bad[i].name, "true", bad[i].port, bad[i].health, NULL);
        s->dir = bad[i].dir;
        cr_expect_eq(F.drv->ops->apply(F.drv, &pe.plan, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        plan_release(&pe);
    }
    fx_fini(&F);
}

/* ---------------------------------------------------------------- records */

/* `env -i` execs sleep with an empty environment: like a server that rewrites
 * its process title, the group's only process no longer shows EPH_OWNER. */
static const char *unmarked_run = "exec env -i sleep 1000";

static char *
record_path(const struct plan_env *pe, const char *svc, const char *kind, int pgid)
{
    char *dir = env_dir(pe);
    char *path = xasprintf("%s/state/%s.%s.%d", dir, svc, kind, pgid);

    free(dir);
    return path;
}

/* Starts service 0 of pe (an unmarked_run), waits until its leader has lost
 * the marker, and returns its pid. */
static int
start_unmarked(struct plan_env *pe)
{
    char owner[80];

    cr_assert(wait_state(pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d", pe->st[0].state);
    int pid = pe->st[0].pid;
    cr_assert_gt(pid, 0);
    remember_unmarked(pid);
    snprintf(owner, sizeof(owner), "%s/%" PRId64 "/%s", F.instance, pe->plan.env_id,
             pe->svcs[0].name);
    for (int i = 0; i < 500 && count_groups(owner) > 0; i++)
        usleep(10000);
    cr_assert_eq(count_groups(owner), 0, "the leader exec'd with an empty environment");
    cr_assert_eq(proc_group_live_count(pid), 1);
    return pid;
}

/* Files in pe's state/ whose name starts with `prefix`. */
static int
count_state_files(const struct plan_env *pe, const char *prefix)
{
    char *dir = env_dir(pe), *cmd = xasprintf("ls %s/state", dir);
    char line[256];
    FILE *p = popen(cmd, "r");
    int n = 0;

    cr_assert_not_null(p);
    while (fgets(line, sizeof(line), p) != NULL)
        n += strncmp(line, prefix, strlen(prefix)) == 0;
    pclose(p);
    free(cmd);
    free(dir);
    return n;
}

Test(local, adopts_a_group_whose_leader_lost_the_marker)
{
    struct plan_env pe;
    char *record, *data = NULL, want[64];
    uint64_t ticks = 0;
    int pid;

    fx_init(&F);
    plan_init(&pe, 20, "unmarked");
    add_svc(&pe, "api", unmarked_run, 0, SPEC_HEALTH_NONE, NULL);
    pid = start_unmarked(&pe);
    record = record_path(&pe, "api", "run", pid);
    cr_assert_eq(fs_read_all(record, 64, &data, NULL), 0, "the group is recorded");
    cr_assert_eq(proc_start_ticks(pid, &ticks), 0);
    snprintf(want, sizeof(want), "%d %" PRIu64 "\n", pid, ticks);
    cr_expect_str_eq(data, want);
    free(data);
    driver_close(&F); /* leaves api running */

    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d", pe.st[0].state);
    cr_expect_eq(pe.st[0].pid, pid, "the same process, adopted");
    cr_expect_eq(pe.st[0].restarts, 0);
    cr_expect_eq(count_state_files(&pe, "api.run."), 1, "no second copy was started");
    cr_expect(fs_exists(record));

    /* Its exit is watched; the dead group's record goes, the new one's comes. */
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 10000));
    int pid2 = pe.st[0].pid;
    remember_unmarked(pid2);
    cr_expect_neq(pid2, pid);
    cr_expect(!fs_exists(record), "the dead group's record is removed");
    cr_expect_eq(count_state_files(&pe, "api.run."), 1);

    teardown_env(&pe);
    cr_expect_eq(proc_group_live_count(pid2), 0, "teardown stops it");
    fx_fini(&F);
    free(record);
    plan_release(&pe);
}

/* A group leader that is none of ours, for a record naming its pid with
 * another start time: what a recorded leader's pid given again looks like. */
static pid_t
start_stranger(void)
{
    pid_t pid = fork();

    cr_assert_geq(pid, 0);
    if (pid == 0) {
        setsid();
        execl("/bin/sleep", "sleep", "1000", (char *)NULL);
        _exit(127);
    }
    remember_unmarked(pid);
    for (int i = 0; i < 500 && getpgid(pid) != pid; i++)
        usleep(1000);
    return pid;
}

Test(local, sweeps_and_tears_down_unmarked_groups_of_an_earlier_server)
{
    struct plan_env swept, deleted;
    char *swept_record, *stale_record, *deleted_dir;
    int swept_pid, deleted_pid;
    pid_t stranger;
    uint64_t ticks = 0;
    char content[64];

    fx_init(&F);
    plan_init(&swept, 21, "swept");
    add_svc(&swept, "api", unmarked_run, 0, SPEC_HEALTH_NONE, NULL);
    plan_init(&deleted, 22, "deleted");
    add_svc(&deleted, "api", unmarked_run, 0, SPEC_HEALTH_NONE, NULL);
    swept_pid = start_unmarked(&swept);
    deleted_pid = start_unmarked(&deleted);
    swept_record = record_path(&swept, "api", "run", swept_pid);
    deleted_dir = env_dir(&deleted);
    driver_close(&F);

    /* A record whose pid now names another process: not ours to stop. */
    stranger = start_stranger();
    cr_assert_eq(proc_start_ticks(stranger, &ticks), 0);
    stale_record = record_path(&swept, "web", "run", (int)stranger);
    snprintf(content, sizeof(content), "%d %" PRIu64 "\n", (int)stranger, ticks + 1);
    cr_assert_eq(fs_write_atomic(stale_record, content, strlen(content), 0644), 0);

    driver_open(&F);
    cr_expect(!fs_exists(stale_record), "a stale record is removed at start-up");

    /* Deleted while no server ran: found by its record alone. */
    teardown_env(&deleted);
    cr_expect_eq(proc_group_live_count(deleted_pid), 0, "teardown stops it");
    cr_expect(!fs_exists(deleted_dir));

    F.drv->ops->sweep(F.drv);
    for (int i = 0; i < 500 && proc_group_live_count(swept_pid) > 0; i++)
        uv_run(&F.loop, UV_RUN_ONCE);
    cr_expect_eq(proc_group_live_count(swept_pid), 0, "sweep stops it");
    for (int64_t end = time_mono_ms() + 2000; fs_exists(swept_record) && time_mono_ms() < end;)
        uv_run(&F.loop, UV_RUN_ONCE); /* the reaper's next count */
    cr_expect(!fs_exists(swept_record), "its record goes with it");
    cr_expect_eq(proc_group_live_count(stranger), 1, "the stranger runs on");
    teardown_env(&swept);
    cr_expect_eq(proc_group_live_count(stranger), 1);
    kill(stranger, SIGKILL);
    waitpid(stranger, NULL, 0);
    fx_fini(&F);
    free(swept_record);
    free(stale_record);
    free(deleted_dir);
    plan_release(&swept);
    plan_release(&deleted);
}

/* ---------------------------------------------------------------- run_as */

/* The value of a "Name:\t..." line of /proc/PID/status with tabs as spaces;
 * "" if the line is empty or missing. */
static void
status_line(pid_t pid, const char *name, char *out, size_t size)
{
    char path[64], *data = NULL, *at, *key = xasprintf("\n%s:", name);
    size_t k = 0;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    cr_assert_eq(fs_read_all(path, 1 << 16, &data, NULL), 0, "cannot read %s", path);
    at = strstr(data, key);
    if (at != NULL) {
        at += strlen(key);
        at += strspn(at, "\t ");
        for (; *at && *at != '\n' && k + 1 < size; at++)
            out[k++] = *at == '\t' ? ' ' : *at;
        while (k > 0 && out[k - 1] == ' ')
            k--;
    }
    out[k] = '\0';
    free(key);
    free(data);
}

/* "uid uid uid uid", as the Uid and Gid lines of /proc/PID/status show one id. */
static char *
ids4(unsigned id)
{
    return xasprintf("%u %u %u %u", id, id, id, id);
}

static uid_t
owner_of(const char *path)
{
    struct stat st;

    cr_assert_eq(lstat(path, &st), 0, "cannot stat %s", path);
    return st.st_uid;
}

/* The first regular file under path (depth first), "" if none: git's objects. */
static void
first_file(const char *path, char *out, size_t size)
{
    DIR *d = opendir(path);
    struct dirent *de;

    out[0] = '\0';
    while (d != NULL && out[0] == '\0' && (de = readdir(d)) != NULL) {
        char *p;
        struct stat st;
        if (de->d_name[0] == '.')
            continue;
        p = xasprintf("%s/%s", path, de->d_name);
        if (lstat(p, &st) == 0 && S_ISREG(st.st_mode))
            snprintf(out, size, "%s", p);
        else if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            first_file(p, out, size);
        free(p);
    }
    if (d != NULL)
        closedir(d);
}

static bool
is_root(void)
{
    return geteuid() == 0;
}

/* `nobody`, as eph serve resolves run_as; the test is skipped without root. */
static void
run_as_nobody(struct local_run_as *ra)
{
    struct eph_err err = {0};

    if (!is_root())
        cr_skip_test("needs root: only root can run processes as another user");
    cr_assert_eq(local_run_as_resolve("nobody", ra, &err), 0, "%s", err.msg);
}

static const char *uid_run =
    "echo \"started as $(id -u):$(id -g) groups=$(id -G)\"; "
    "touch made-by-run \"$EPH_DATA/made-by-run\" && "
    "printf '%s|%s|%s' \"$HOME\" \"$USER\" \"$LOGNAME\" > \"$EPH_DATA/who\" && "
    "exec /usr/bin/python3 -m http.server $PORT --bind 127.0.0.1";

Test(local, runs_processes_as_the_run_as_user_and_gives_it_its_files)
{
    struct local_run_as ra;
    struct plan_env pe;
    struct eph_err err = {0};
    struct local_config cfg;
    struct driver *drv = NULL;
    char line[128], obj[PATH_MAX], *want, *dir, *path, *data = NULL;
    int pid;

    run_as_nobody(&ra);
    fx_init(&F);
    /* The test's root is a mkdtemp(), mode 0700: nobody cannot reach envs/. */
    cfg = (struct local_config){.loop = &F.loop,
                                .envs_dir = F.envs,
                                .instance_id = "other",
                                .stop_grace_ms = GRACE_MS,
                                .run_as = &ra};
    cr_expect_eq(local_driver_new(&cfg, &drv, &err), EPH_EINVAL);
    want = xasprintf("run_as: user 'nobody' cannot reach the environments directory '%s' ('%s' "
                     "is not searchable by it); choose a data_dir under a directory it can "
                     "enter, or set run_as",
                     F.envs, F.root);
    cr_expect_str_eq(err.msg, want);
    free(want);
    cr_expect_null(drv);

    cr_assert_eq(chmod(F.root, 0755), 0);
    cr_assert_eq(chmod(F.envs, 0700), 0);
    driver_close(&F);
    F.run_as = &ra;
    driver_open(&F);
    struct stat st;
    cr_assert_eq(stat(F.envs, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0711, "envs/ opened to others: %o", st.st_mode & 0777);

    plan_init(&pe, 30, "asnobody");
    add_svc(&pe, "web", uid_run, free_port(), SPEC_HEALTH_HTTP, NULL)->setup =
        "id -u > \"$EPH_DATA/setup-uid\" && touch made-by-setup";
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d reason=%s prep=%d %s",
              pe.st[0].state, pe.st[0].reason, pe.status.prep, pe.status.reason);
    pid = pe.st[0].pid;

    /* The process: run_as's uid and primary group, no supplementary groups. */
    want = ids4(ra.uid);
    status_line(pid, "Uid", line, sizeof(line));
    cr_expect_str_eq(line, want);
    free(want);
    want = ids4(ra.gid);
    status_line(pid, "Gid", line, sizeof(line));
    cr_expect_str_eq(line, want);
    free(want);
    status_line(pid, "Groups", line, sizeof(line));
    cr_expect_str_eq(line, "", "supplementary groups dropped");

    /* Its files: the checkout and its data are its own; the rest is ours. */
    dir = env_dir(&pe);
    path = xasprintf("%s/src", dir);
    cr_expect_eq(owner_of(path), ra.uid, "src/ belongs to run_as");
    free(path);
    path = xasprintf("%s/src/srv/tcp.py", dir);
    cr_expect_eq(owner_of(path), ra.uid, "the checkout's files belong to run_as");
    free(path);
    path = xasprintf("%s/src/made-by-setup", dir);
    cr_expect_eq(owner_of(path), ra.uid, "setup wrote into the checkout as run_as");
    free(path);
    path = xasprintf("%s/src/made-by-run", dir);
    cr_expect_eq(owner_of(path), ra.uid, "run wrote into the checkout as run_as");
    free(path);
    path = xasprintf("%s/data/web", dir);
    cr_expect_eq(owner_of(path), ra.uid, "EPH_DATA belongs to run_as");
    free(path);
    path = xasprintf("%s/data/web/setup-uid", dir);
    cr_assert_eq(fs_read_all(path, 64, &data, NULL), 0);
    want = xasprintf("%u\n", (unsigned)ra.uid);
    cr_expect_str_eq(data, want, "setup ran as run_as");
    free(want);
    free(data);
    free(path);
    path = xasprintf("%s/data/web/who", dir);
    cr_assert_eq(fs_read_all(path, 4096, &data, NULL), 0);
    want = xasprintf("%s|nobody|nobody", ra.home);
    cr_expect_str_eq(data, want, "HOME, USER and LOGNAME are run_as's");
    free(want);
    free(data);
    free(path);
    const char *ours[] = {"", "/data", "/state", "/logs", "/logs/web.log", "/state/checkout.done"};
    for (size_t i = 0; i < ARRAY_LEN(ours); i++) {
        path = xasprintf("%s%s", dir, ours[i]);
        cr_expect_eq(owner_of(path), 0, "%s stays the server's", path);
        free(path);
    }
    path = xasprintf("%s/src/.git/objects", dir);
    first_file(path, obj, sizeof(obj));
    free(path);
    cr_assert_neq(obj[0], '\0', "the checkout has git objects");
    cr_assert_eq(lstat(obj, &st), 0);
    cr_assert_gt(st.st_nlink, 1, "git links a local clone's objects to the cache's");
    cr_expect_eq(st.st_uid, 0, "%s, linked with the cache, stays the server's", obj);
    first_file(F.cache, obj, sizeof(obj));
    cr_expect_eq(owner_of(obj), 0, "the cache stays the server's: %s", obj);
    path = xasprintf("%s/logs/web.log", dir);
    cr_assert_eq(fs_read_all(path, 1 << 16, &data, NULL), 0);
    want = xasprintf("started as %u:%u groups=%u\n", (unsigned)ra.uid, (unsigned)ra.gid,
                     (unsigned)ra.gid);
    cr_expect(strstr(data, want) != NULL, "the log (opened by the server) has: %s", data);
    free(want);
    free(data);
    free(path);

    /* A new server adopts it, and (as root) stops it at teardown. */
    driver_close(&F);
    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d", pe.st[0].state);
    cr_expect_eq(pe.st[0].pid, pid, "the same process, adopted");
    kill(pid, SIGKILL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_RESTARTING, 5000));
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 10000));
    cr_expect_neq(pe.st[0].pid, pid);
    pid = pe.st[0].pid;
    want = ids4(ra.uid);
    status_line(pid, "Uid", line, sizeof(line));
    cr_expect_str_eq(line, want, "a restart runs as run_as too");
    free(want);
    teardown_env(&pe);
    cr_expect_eq(proc_group_live_count(pid), 0, "teardown stops it");
    fx_fini(&F);
    F.run_as = NULL;
    free(dir);
    plan_release(&pe);
    local_run_as_release(&ra);
}

Test(local, hands_an_earlier_servers_checkout_to_run_as)
{
    struct local_run_as ra;
    struct plan_env pe;
    char line[128], *dir, *path, *want;
    int pid;

    run_as_nobody(&ra);
    fx_init(&F);
    cr_assert_eq(chmod(F.root, 0755), 0);
    plan_init(&pe, 31, "handover");
    add_svc(&pe, "web", uid_run, free_port(), SPEC_HEALTH_HTTP, NULL);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000));
    dir = env_dir(&pe);
    path = xasprintf("%s/src/made-by-run", dir);
    cr_expect_eq(owner_of(path), 0, "without run_as, the server's own user");
    pid = pe.st[0].pid;
    driver_close(&F);
    kill(-pid, SIGKILL);
    for (int i = 0; i < 500 && proc_group_live_count(pid) > 0; i++)
        usleep(2000);

    F.run_as = &ra;
    driver_open(&F);
    cr_assert(wait_state(&pe, 0, SVC_STATE_HEALTHY, 20000), "state=%d reason=%s prep=%d %s",
              pe.st[0].state, pe.st[0].reason, pe.status.prep, pe.status.reason);
    cr_expect_eq(owner_of(path), ra.uid, "the earlier checkout is handed over");
    free(path);
    path = xasprintf("%s/data/web/made-by-run", dir);
    cr_expect_eq(owner_of(path), ra.uid, "and the earlier data");
    free(path);
    path = xasprintf("%s/data", dir);
    cr_expect_eq(owner_of(path), 0, "data/ itself stays the server's");
    free(path);
    want = ids4(ra.uid);
    status_line(pe.st[0].pid, "Uid", line, sizeof(line));
    cr_expect_str_eq(line, want);
    free(want);
    teardown_env(&pe);
    fx_fini(&F);
    F.run_as = NULL;
    free(dir);
    plan_release(&pe);
    local_run_as_release(&ra);
}

Test(local, resolves_run_as_and_refuses_unknown_users_and_root)
{
    struct local_run_as ra;
    struct eph_err err = {0};

    cr_expect_eq(local_run_as_resolve("no-such-user-eph", &ra, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "run_as: no user named 'no-such-user-eph'");
    cr_expect_null(ra.name);
    cr_expect_eq(local_run_as_resolve("root", &ra, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "run_as: 'root' is root; environment processes must run as an "
                              "unprivileged user");
    cr_expect_eq(local_run_as_resolve("", &ra, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "run_as: must name a user");
    if (local_run_as_resolve("nobody", &ra, &err) == 0) {
        cr_expect_str_eq(ra.name, "nobody");
        cr_expect_neq(ra.uid, 0);
        cr_expect_not_null(ra.home);
        local_run_as_release(&ra);
    }
}

Test(local, access_check_refuses_a_data_dir_under_a_directory_run_as_cannot_enter)
{
    /* Mode bits only: no process is started, so any user can run it, as long
     * as the user checked for is another (the owner of what the test makes). */
    struct local_run_as ra = {.name = "nobody",
                              .uid = getuid() == 65534 ? 65533 : 65534,
                              .gid = getgid() == 65534 ? 65533 : 65534};
    struct eph_err err = {0};
    char root[] = "/tmp/eph-test-runas-XXXXXX";
    char *data, *want;

    cr_assert_not_null(mkdtemp(root)); /* 0700 */
    data = xasprintf("%s/srv/data", root);
    cr_assert_eq(fs_mkdir_p(data, 0755), 0);
    cr_assert_eq(chmod(data, 0755), 0);
    cr_assert_eq(chmod(root, 0700), 0);

    cr_expect_eq(local_check_run_as_access(data, &ra, &err), EPH_EINVAL);
    want = xasprintf("run_as: user 'nobody' cannot reach data_dir '%s' ('%s' is not searchable "
                     "by it); choose a data_dir under a directory it can enter, or set run_as",
                     data, root);
    cr_expect_str_eq(err.msg, want);
    free(want);

    /* Search permission is enough (0711): listing is not needed. */
    cr_assert_eq(chmod(root, 0711), 0);
    cr_expect_eq(local_check_run_as_access(data, &ra, &err), 0, "%s", err.msg);

    /* The data_dir itself. */
    cr_assert_eq(chmod(data, 0700), 0);
    cr_expect_eq(local_check_run_as_access(data, &ra, &err), EPH_EINVAL);
    want = xasprintf("run_as: user 'nobody' cannot enter data_dir '%s' (mode 0700, owner %d); "
                     "make it searchable (chmod o+x) or set run_as",
                     data, (int)getuid());
    cr_expect_str_eq(err.msg, want);
    free(want);

    /* The group's bits count for the user's primary group, the owner's for its owner. */
    if (is_root()) {
        cr_assert_eq(chown(data, 0, ra.gid), 0);
        cr_assert_eq(chmod(data, 0710), 0);
        cr_expect_eq(local_check_run_as_access(data, &ra, &err), 0, "%s", err.msg);
        cr_assert_eq(chown(data, ra.uid, 0), 0);
        cr_assert_eq(chmod(data, 0601), 0);
        cr_expect_eq(local_check_run_as_access(data, &ra, &err), EPH_EINVAL,
                     "the owner's bits, not the others'");
    }

    /* A symbolic link is judged by where it leads. */
    char *link = xasprintf("%s/link", root);
    cr_assert_eq(chmod(data, 0755), 0);
    cr_assert_eq(chmod(root, 0755), 0);
    cr_assert_eq(symlink(data, link), 0);
    cr_expect_eq(local_check_run_as_access(link, &ra, &err), 0, "%s", err.msg);
    cr_expect_eq(local_check_run_as_access("/nonexistent-eph/data", &ra, &err), -ENOENT);
    cr_expect_str_eq(err.msg, "cannot resolve data_dir '/nonexistent-eph/data': No such file or "
                              "directory");
    fs_rm_rf(root);
    free(link);
    free(data);
}
