/*
 * drivers/local/local_proc.c - the local driver's process groups: spawning a
 * service's command in a session of its own, learning when its leader exits
 * (our child through libuv, an adopted one through a pidfd), stopping a group
 * with a grace period, and finding an earlier server's groups in /proc.
 *
 * A group's liveness is always counted in /proc (proc_group_live_count): PID 1
 * on these machines may not reap orphans, so a dead member can linger as a
 * zombie that kill(pid, 0) would call alive.
 */
#define LOG_MOD "local"

#include "drivers/local/local_int.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/log.h"
#include "util/proc.h"
#include "util/time.h"
#include "util/xmalloc.h"

extern char **environ;

/* Variables of our own environment that a service inherits; the rest (the
 * server's secrets among them) stay with us. The plan's variables win. */
static const char *const passed_vars[] = {
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TERM",
};

/* ---------------------------------------------------------------- groups */

static struct local_group *
group_new(struct local_driver *drv, int64_t env_id, const char *svc_name, enum local_kind kind,
          pid_t pgid)
{
    struct local_group *g = xcalloc(1, sizeof(*g));

    g->drv = drv;
    g->env_id = env_id;
    g->svc_name = xstrdup(svc_name);
    g->kind = kind;
    g->pgid = pgid;
    g->pidfd = -1;
    return g;
}

static void
group_free(struct local_group *g)
{
    free(g->svc_name);
    free(g);
}

static void
on_group_closed(uv_handle_t *h)
{
    struct local_group *g = h->data;
    struct local_driver *drv = g->drv;

    if (g->pidfd >= 0)
        close(g->pidfd);
    g->pidfd = -1;
    g->handle_open = false;
    g->watch = LOCAL_WATCH_NONE;
    if (!g->linked)
        group_free(g);
    local__handle_closed(drv);
}

static void
group_close_handle(struct local_group *g)
{
    uv_handle_t *h =
        g->watch == LOCAL_WATCH_CHILD ? (uv_handle_t *)&g->h.proc : (uv_handle_t *)&g->h.poll;

    if (!g->handle_open || uv_is_closing(h))
        return;
    h->data = g;
    uv_close(h, on_group_closed);
}

void
local__group_release(struct local_group *g)
{
    EPH_ASSERT(!g->linked);
    if (g->svc && g->svc->run_group == g)
        g->svc->run_group = NULL;
    if (g->svc && g->svc->setup_group == g)
        g->svc->setup_group = NULL;
    g->svc = NULL;
    if (g->handle_open)
        group_close_handle(g);
    else
        group_free(g);
}

void
local__group_unlink(struct local_group **head, struct local_group *g)
{
    for (struct local_group **pp = head; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == g) {
            *pp = g->next;
            g->next = NULL;
            g->linked = false;
            return;
        }
    }
    EPH_ASSERT(!"group not in list");
}

static void
on_reap_timer(uv_timer_t *t)
{
    local__reap(container_of(t, struct local_driver, reap_timer));
}

static void
reap_soon(struct local_driver *drv)
{
    if (!drv->closing && !uv_is_active((uv_handle_t *)&drv->reap_timer))
        uv_timer_start(&drv->reap_timer, on_reap_timer, LOCAL_REAP_INTERVAL_MS,
                       LOCAL_REAP_INTERVAL_MS);
}

void
local__group_stop(struct local_group *g)
{
    struct local_driver *drv = g->drv;

    if (g->stopping)
        return;
    g->stopping = true;
    g->kill_at_ms = time_mono_ms() + drv->stop_grace_ms;
    proc_group_signal(g->pgid, SIGTERM);
    log_debug("group stopping", "pgid=%d service=%s", (int)g->pgid, g->svc_name);
    reap_soon(drv);
}

void
local__group_kill(struct local_group *g)
{
    if (g->killed)
        return;
    g->stopping = true;
    g->killed = true;
    g->kill_at_ms = time_mono_ms();
    proc_group_signal(g->pgid, SIGKILL);
    reap_soon(g->drv);
}

/*
 * The leader is gone. Whatever it left behind in its group goes too (at once,
 * unless a stop with its grace period is already under way); then the service
 * hears of it.
 */
static void
group_leader_exited(struct local_group *g, bool known, int exit_status, int term_signal)
{
    struct local_svc *s = g->svc;

    g->leader_exited = true;
    if (!g->stopping)
        local__group_kill(g);
    if (s != NULL) {
        if (s->run_group == g)
            s->run_group = NULL;
        if (s->setup_group == g)
            s->setup_group = NULL;
        g->svc = NULL;
        local__svc_on_exit(s, g, known, exit_status, term_signal);
    }
}

static void
on_child_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    struct local_group *g = container_of(p, struct local_group, h.proc);

    group_close_handle(g);
    group_leader_exited(g, true, (int)exit_status, term_signal);
}

static void
on_pidfd_readable(uv_poll_t *h, int status, int events)
{
    struct local_group *g = container_of(h, struct local_group, h.poll);
    siginfo_t si;
    bool known = false;
    int code = 0, sig = 0;

    /* Our child only when an earlier driver in this very process started it
     * (tests); then this reaps it and tells how it ended. */
    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)g->pidfd, &si, WEXITED | WNOHANG) == 0 && si.si_pid) {
        known = true;
        if (si.si_code == CLD_EXITED)
            code = si.si_status;
        else
            sig = si.si_status;
    }
    uv_poll_stop(h);
    group_close_handle(g);
    group_leader_exited(g, known, code, sig);
}

int
local__group_watch(struct local_group *g)
{
    struct local_driver *drv = g->drv;
    int fd = (int)syscall(SYS_pidfd_open, g->pgid, 0);
    int rc;

    if (fd < 0)
        return -errno;
    rc = uv_poll_init(drv->loop, &g->h.poll, fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    g->pidfd = fd;
    g->watch = LOCAL_WATCH_PIDFD;
    g->handle_open = true;
    local__handle_opened(drv);
    rc = uv_poll_start(&g->h.poll, UV_READABLE, on_pidfd_readable);
    if (rc < 0) {
        group_close_handle(g);
        return rc;
    }
    return 0;
}

/* Counts one list down; drops groups with nothing left. True if any remain
 * to be watched. */
static bool
reap_list(struct local_group **head, int64_t now)
{
    bool busy = false;
    struct local_group *g = *head, *next;

    for (; g != NULL; g = next) {
        next = g->next;
        if (g->stopping && !g->gone) {
            /* An error reading /proc would keep us counting for ever: treat
             * it as empty; the group was signalled already. */
            if (proc_group_live_count(g->pgid) <= 0) {
                g->gone = true;
            } else if (!g->killed && now >= g->kill_at_ms) {
                log_info("group killed", "pgid=%d service=%s", (int)g->pgid, g->svc_name);
                g->killed = true;
                proc_group_signal(g->pgid, SIGKILL);
            }
        }
        if (g->gone && !g->handle_open && g->svc == NULL) {
            local__group_unlink(head, g);
            local__group_release(g);
        } else if (g->stopping) {
            busy = true; /* still counting, or waiting for the leader's exit callback */
        }
    }
    return busy;
}

void
local__reap(struct local_driver *drv)
{
    int64_t now = time_mono_ms();
    bool busy = false;
    struct local_env *env, *next;

    for (env = drv->envs; env != NULL; env = next) {
        next = env->next; /* env_progress never frees, but stay safe */
        bool had = env->groups != NULL;
        if (reap_list(&env->groups, now))
            busy = true;
        if (env->tearing_down && had && env->groups == NULL)
            local__env_progress(env);
    }
    if (reap_list(&drv->swept, now))
        busy = true;
    if (!busy && !drv->closing)
        uv_timer_stop(&drv->reap_timer);
}

/* ---------------------------------------------------------------- spawning */

static bool
env_name_is(const char *entry, const char *name, size_t name_len)
{
    return strncmp(entry, name, name_len) == 0 && entry[name_len] == '=';
}

/* True if envp (NULL-terminated) sets the variable `entry` (NAME=...) names. */
static bool
envp_sets(char *const *envp, const char *entry)
{
    size_t n = strcspn(entry, "=");

    for (size_t i = 0; envp && envp[i]; i++) {
        if (env_name_is(envp[i], entry, n))
            return true;
    }
    return false;
}

/* The child's environment: passed-through variables, the plan's, then ours.
 * Free with free_strv(). */
static char **
child_environ(const struct local_svc *s, const char *data_dir, const char *owner)
{
    size_t n_plan = 0, n_ours = 0, o = 0;
    char **envp;

    while (s->envp && s->envp[n_plan])
        n_plan++;
    while (environ[n_ours])
        n_ours++;
    envp = xcalloc(n_plan + n_ours + 3, sizeof(*envp));
    for (size_t i = 0; i < n_ours; i++) {
        const char *e = environ[i];
        bool pass = strncmp(e, "LC_", 3) == 0;
        for (size_t k = 0; k < ARRAY_LEN(passed_vars) && !pass; k++)
            pass = env_name_is(e, passed_vars[k], strlen(passed_vars[k]));
        if (pass && !envp_sets(s->envp, e))
            envp[o++] = xstrdup(e);
    }
    for (size_t i = 0; i < n_plan; i++) {
        /* ours: a plan cannot move a service's data or disguise its owner */
        if (env_name_is(s->envp[i], "EPH_DATA", 8) || env_name_is(s->envp[i], "EPH_OWNER", 9))
            continue;
        envp[o++] = xstrdup(s->envp[i]);
    }
    envp[o++] = xasprintf("EPH_DATA=%s", data_dir);
    envp[o++] = xasprintf("EPH_OWNER=%s", owner);
    envp[o] = NULL;
    return envp;
}

static void
free_strv(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

int
local__spawn(struct local_svc *s, enum local_kind kind, struct local_group **out,
             struct eph_err *err)
{
    struct local_env *env = s->env;
    struct local_driver *drv = env->drv;
    const char *cmd = kind == LOCAL_KIND_RUN ? s->run : s->setup;
    char *cwd = s->dir ? xasprintf("%s/src/%s", env->dir, s->dir) : xasprintf("%s/src", env->dir);
    char *data_dir = xasprintf("%s/data/%s", env->dir, s->name);
    char *logs_dir = xasprintf("%s/logs", env->dir);
    char *log_path = xasprintf("%s/%s.log", logs_dir, s->name);
    char *owner = xasprintf("%s%" PRId64 "/%s%s", drv->owner_prefix, env->id, s->name,
                            kind == LOCAL_KIND_SETUP ? "/setup" : "");
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    char **envp = NULL;
    int null_fd = -1, log_fd = -1;
    struct local_group *g = NULL;
    uv_process_options_t opts;
    uv_stdio_container_t stdio[3];
    int rc;

    *out = NULL;
    const char *dirs[] = {data_dir, logs_dir};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        rc = fs_mkdir_p(dirs[i], 0755);
        if (rc < 0) {
            rc = eph_err_set(err, rc, "cannot create '%s': %s", dirs[i], eph_strerror(rc));
            goto out;
        }
    }
    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (null_fd < 0 || log_fd < 0) {
        rc = -errno;
        rc = eph_err_set(err, rc, "cannot open '%s': %s", null_fd < 0 ? "/dev/null" : log_path,
                         eph_strerror(rc));
        goto out;
    }
    envp = child_environ(s, data_dir, owner);
    memset(&opts, 0, sizeof(opts));
    memset(stdio, 0, sizeof(stdio));
    stdio[0].flags = UV_INHERIT_FD;
    stdio[0].data.fd = null_fd;
    stdio[1].flags = UV_INHERIT_FD;
    stdio[1].data.fd = log_fd;
    stdio[2].flags = UV_INHERIT_FD;
    stdio[2].data.fd = log_fd;
    opts.exit_cb = on_child_exit;
    opts.file = "/bin/sh";
    opts.args = args;
    opts.env = envp;
    opts.cwd = cwd;
    /* setsid(): a session and group of its own (pgid == pid) that we signal
     * whole, and no terminal of ours to read from or be stopped by. */
    opts.flags = UV_PROCESS_DETACHED;
    opts.stdio_count = 3;
    opts.stdio = stdio;

    g = group_new(drv, env->id, s->name, kind, 0);
    g->watch = LOCAL_WATCH_CHILD;
    rc = uv_spawn(drv->loop, &g->h.proc, &opts);
    /* uv_spawn initialises the handle even when it fails: it must be closed */
    g->handle_open = true;
    local__handle_opened(drv);
    if (rc < 0) {
        local__group_release(g);
        g = NULL;
        rc = eph_err_set(err, EPH_EPROCESS, "cannot start %s of '%s' in '%s': %s",
                         kind == LOCAL_KIND_RUN ? "run" : "setup", s->name, cwd, uv_strerror(rc));
        goto out;
    }
    g->pgid = g->h.proc.pid;
    g->svc = s;
    g->next = env->groups;
    g->linked = true;
    env->groups = g;
    *out = g;
    rc = 0;
out:
    if (null_fd >= 0)
        close(null_fd);
    if (log_fd >= 0)
        close(log_fd);
    free_strv(envp);
    free(cwd);
    free(data_dir);
    free(logs_dir);
    free(log_path);
    free(owner);
    return rc;
}

/* ---------------------------------------------------------------- scanning */

struct scan {
    struct local_driver *drv;
    int found;
};

/* "<instance>/<env id>/<service>[/setup]" -> its parts; false if not ours. */
static bool
parse_owner(const char *value, const char *prefix, int64_t *env_id, char *svc, size_t svc_size,
            enum local_kind *kind)
{
    size_t pl = strlen(prefix);
    const char *p, *slash;
    char *end;
    long long id;

    if (strncmp(value, prefix, pl) != 0)
        return false;
    p = value + pl;
    if (!isdigit((unsigned char)*p))
        return false;
    errno = 0;
    id = strtoll(p, &end, 10);
    if (errno != 0 || id <= 0 || *end != '/')
        return false;
    p = end + 1;
    slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || n >= svc_size)
        return false;
    if (slash && strcmp(slash, "/setup") != 0)
        return false;
    memcpy(svc, p, n);
    svc[n] = '\0';
    *env_id = id;
    *kind = slash ? LOCAL_KIND_SETUP : LOCAL_KIND_RUN;
    return true;
}

static void
on_marked_process(pid_t pid, pid_t pgid, const char *value, void *arg)
{
    struct scan *sc = arg;
    struct local_driver *drv = sc->drv;
    char svc[256];
    int64_t env_id;
    enum local_kind kind;
    struct local_group *g;

    if (!parse_owner(value, drv->owner_prefix, &env_id, svc, sizeof(svc), &kind))
        return;
    if (pgid <= 1 || pgid == getpgrp())
        return; /* never ours to signal */
    for (g = drv->orphans; g != NULL; g = g->next) {
        if (g->pgid == pgid && g->env_id == env_id && g->kind == kind &&
            strcmp(g->svc_name, svc) == 0)
            break;
    }
    if (g == NULL) {
        g = group_new(drv, env_id, svc, kind, pgid);
        g->adopted = true;
        g->linked = true;
        g->next = drv->orphans;
        drv->orphans = g;
        sc->found++;
    }
    if (pid == pgid)
        g->leader_seen = true;
}

int
local__scan(struct local_driver *drv)
{
    struct scan sc = {.drv = drv};
    int rc = 0;

    /* Twice: a process caught in the middle of an execve() shows an empty
     * environment for an instant (a service's `sh -c` exec'ing its server),
     * and a group missed here would run on unwatched next to a second copy.
     * The second pass only adds what the first missed. */
    for (int pass = 0; pass < 2 && rc >= 0; pass++)
        rc = proc_scan_marker("EPH_OWNER", on_marked_process, &sc);
    if (rc < 0)
        return rc;
    for (struct local_group *g = drv->orphans; g != NULL; g = g->next) {
        log_info("process group found", "env_id=%" PRId64 " service=%s kind=%s pgid=%d", g->env_id,
                 g->svc_name, g->kind == LOCAL_KIND_RUN ? "run" : "setup", (int)g->pgid);
    }
    return 0;
}

int64_t
local__proc_started_ms(pid_t pid)
{
    uint64_t ticks = 0;
    char *stat = NULL;
    long hz = sysconf(_SC_CLK_TCK);
    int64_t boot_s = 0;

    if (hz <= 0 || proc_start_ticks(pid, &ticks) < 0)
        return 0;
    if (fs_read_all("/proc/stat", 1 << 20, &stat, NULL) < 0)
        return 0;
    const char *b = strstr(stat, "\nbtime ");
    if (b != NULL)
        boot_s = strtoll(b + 7, NULL, 10);
    free(stat);
    if (boot_s <= 0)
        return 0;
    return boot_s * 1000 + (int64_t)(ticks * 1000 / (uint64_t)hz);
}
