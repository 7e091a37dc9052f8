/*
 * drivers/local/local_proc.c - the local driver's process groups: spawning a
 * service's command in a session of its own, learning when its leader exits
 * (our child through libuv, an adopted one through a pidfd), stopping a group
 * with a grace period, and finding an earlier server's groups again.
 *
 * A group's liveness is always counted in /proc (proc_groups_live_counts): PID
 * 1 on these machines may not reap orphans, so a dead member can linger as a
 * zombie that kill(pid, 0) would call alive.
 *
 * An earlier server's groups are found two ways, and the union counts. Each
 * process carries the EPH_OWNER marker in its environment from the first
 * instant; but programs that rewrite their process title (redis, nginx,
 * postgres) overwrite the memory /proc/PID/environ shows, and when such a
 * program is the group's leader (`exec redis-server`) no member may show the
 * marker any more. So each group is also recorded, right after its spawn, in
 * its environment's state/ as <service>.<run|setup>.<pgid> holding
 * "<pgid> <start ticks>"; the start time tells the leader from a later process
 * given the same pid. The record is removed once the group is counted empty.
 */
#define LOG_MOD "local"

#include "drivers/local/local_int.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

/* Longest record file we read: "<pgid> <start ticks>\n" needs well under this. */
#define RECORD_MAX_BYTES 64

/*
 * With a cgroup, the group's leader first waits on fd 3 until the server has
 * moved it into the environment's cgroup and written "go", and only then
 * becomes the service's shell (the same pid: exec), with fd 3 closed. Closed
 * unwritten, the pipe gives EOF: `read` fails and nothing of the service
 * runs. The command comes as $1, so it needs no quoting.
 */
#define GATE_FD 3
static const char gate_script[] = "read -r go <&3 && exec /bin/sh -c \"$1\" 3<&-";

static const char *
kind_name(enum local_kind kind)
{
    return kind == LOCAL_KIND_RUN ? "run" : "setup";
}

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
    free(g->record); /* the file stays: the group may outlive us */
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

/*
 * The group was counted empty: nothing is left to find after a restart, so
 * its record goes. `counted` false: /proc could not be read; the group was
 * signalled, so stop counting it, but leave the record for the next start-up
 * to judge.
 */
static void
group_gone(struct local_group *g, bool counted)
{
    g->gone = true;
    if (g->record == NULL || !counted)
        return;
    if (unlink(g->record) < 0 && errno != ENOENT)
        log_warn("cannot remove group record", "pgid=%d path=%s error=%s", (int)g->pgid,
                 log_q(g->record), log_q(strerror(errno)));
    free(g->record);
    g->record = NULL;
}

/* Counts in *n the groups of a list that still need counting, and stores
 * them at gs[*n...] unless gs is NULL. */
static void
collect_counting(struct local_group *head, struct local_group **gs, size_t *n)
{
    for (struct local_group *g = head; g != NULL; g = g->next) {
        if (!g->stopping || g->gone)
            continue;
        if (gs != NULL)
            gs[*n] = g;
        (*n)++;
    }
}

/* Counts every stopping group in one walk of /proc (a walk per group would
 * cost a teardown of many services dozens of walks per tick), marks the empty
 * ones gone and SIGKILLs those past their grace period. */
static void
count_stopping(struct local_driver *drv, int64_t now)
{
    struct local_group **gs;
    pid_t *pgids;
    int *counts;
    size_t n = 0, k = 0;
    int rc;

    for (struct local_env *env = drv->envs; env != NULL; env = env->next)
        collect_counting(env->groups, NULL, &n);
    collect_counting(drv->swept, NULL, &n);
    if (n == 0)
        return;
    gs = xcalloc(n, sizeof(*gs));
    pgids = xcalloc(n, sizeof(*pgids));
    counts = xcalloc(n, sizeof(*counts));
    for (struct local_env *env = drv->envs; env != NULL; env = env->next)
        collect_counting(env->groups, gs, &k);
    collect_counting(drv->swept, gs, &k);
    EPH_ASSERT(k == n);
    for (size_t i = 0; i < n; i++)
        pgids[i] = gs[i]->pgid;
    rc = proc_groups_live_counts(pgids, counts, n);
    for (size_t i = 0; i < n; i++) {
        struct local_group *g = gs[i];
        /* An error reading /proc would keep us counting for ever: treat it
         * as empty; the group was signalled already. */
        if (rc < 0 || counts[i] <= 0) {
            group_gone(g, rc == 0);
        } else if (!g->killed && now >= g->kill_at_ms) {
            log_info("group killed", "pgid=%d service=%s", (int)g->pgid, g->svc_name);
            g->killed = true;
            proc_group_signal(g->pgid, SIGKILL);
        }
    }
    free(gs);
    free(pgids);
    free(counts);
}

/* Drops a list's counted-out groups. True if any remain to be watched. */
static bool
reap_list(struct local_group **head)
{
    bool busy = false;
    struct local_group *g = *head, *next;

    for (; g != NULL; g = next) {
        next = g->next;
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
    bool busy = false;
    struct local_env *env, *next;

    count_stopping(drv, time_mono_ms());
    for (env = drv->envs; env != NULL; env = next) {
        next = env->next; /* env_progress never frees, but stay safe */
        bool had = env->groups != NULL;
        if (reap_list(&env->groups))
            busy = true;
        if (env->tearing_down && had && env->groups == NULL)
            local__env_progress(env);
    }
    if (reap_list(&drv->swept))
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

/* Variables that name the user: run_as's own replace the server's. */
static bool
names_user(const char *entry)
{
    return env_name_is(entry, "HOME", 4) || env_name_is(entry, "USER", 4) ||
           env_name_is(entry, "LOGNAME", 7);
}

/* The child's environment: passed-through variables (run_as's HOME, USER and
 * LOGNAME instead of ours if it has them), the plan's, then ours. Free with
 * free_strv(). */
static char **
child_environ(const struct local_svc *s, const char *data_dir, const char *owner)
{
    const struct local_driver *drv = s->drv;
    size_t n_plan = 0, n_ours = 0, o = 0;
    char **envp;

    while (s->envp && s->envp[n_plan])
        n_plan++;
    while (environ[n_ours])
        n_ours++;
    envp = xcalloc(n_plan + n_ours + 6, sizeof(*envp));
    for (size_t i = 0; i < n_ours; i++) {
        const char *e = environ[i];
        bool pass = strncmp(e, "LC_", 3) == 0;
        for (size_t k = 0; k < ARRAY_LEN(passed_vars) && !pass; k++)
            pass = env_name_is(e, passed_vars[k], strlen(passed_vars[k]));
        if (pass && drv->drop && names_user(e))
            pass = false;
        if (pass && !envp_sets(s->envp, e))
            envp[o++] = xstrdup(e);
    }
    if (drv->drop) {
        char *user[] = {
            xasprintf("HOME=%s", drv->run_as.home),
            xasprintf("USER=%s", drv->run_as.name),
            xasprintf("LOGNAME=%s", drv->run_as.name),
        };
        for (size_t k = 0; k < ARRAY_LEN(user); k++) {
            if (envp_sets(s->envp, user[k]))
                free(user[k]);
            else
                envp[o++] = user[k];
        }
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
    char *state_dir = xasprintf("%s/state", env->dir);
    char *log_path = xasprintf("%s/%s.log", logs_dir, s->name);
    char *owner = xasprintf("%s%" PRId64 "/%s%s", drv->owner_prefix, env->id, s->name,
                            kind == LOCAL_KIND_SETUP ? "/setup" : "");
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    char *gated_args[] = {"/bin/sh", "-c", (char *)gate_script, "sh", (char *)cmd, NULL};
    /* The cgroup its processes join, NULL if none (local_cgroup.h). */
    const char *cgroup = local_cgroup_env_dir(env);
    char **envp = NULL;
    int null_fd = -1, log_fd = -1, gate[2] = {-1, -1};
    struct local_group *g = NULL;
    uv_process_options_t opts;
    uv_stdio_container_t stdio[GATE_FD + 1];
    int rc;

    *out = NULL;
    const char *dirs[] = {data_dir, logs_dir, state_dir};
    for (size_t i = 0; i < ARRAY_LEN(dirs); i++) {
        rc = fs_mkdir_p(dirs[i], 0755);
        if (rc < 0) {
            rc = eph_err_set(err, rc, "cannot create '%s': %s", dirs[i], eph_strerror(rc));
            goto out;
        }
    }
    /* EPH_DATA is the service's to write. Only the directory itself: what is
     * in it was made by the service (or handed over with the checkout), and
     * data/ above it is ours, so its name cannot be swapped under us. */
    if (drv->drop) {
        struct stat st;
        if (lstat(data_dir, &st) < 0 ||
            ((st.st_uid != drv->run_as.uid || st.st_gid != drv->run_as.gid) &&
             lchown(data_dir, drv->run_as.uid, drv->run_as.gid) < 0)) {
            rc = -errno;
            rc = eph_err_set(err, rc, "cannot give '%s' to user '%s': %s", data_dir,
                             drv->run_as.name, eph_strerror(rc));
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
    /* Both ends close-on-exec: only this child gets the read end, as fd 3. */
    if (cgroup != NULL && pipe2(gate, O_CLOEXEC) < 0) {
        rc = -errno;
        rc = eph_err_set(err, rc, "cannot create a pipe: %s", eph_strerror(rc));
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
    if (drv->drop) {
        /* In the child, after chdir(cwd) and before exec, libuv calls
         * setgroups(0, NULL) (dropping root's supplementary groups), then
         * setgid(), then setuid(); a failure of either fails the spawn. As
         * root we can still signal the group and read its /proc entries. */
        opts.flags |= UV_PROCESS_SETUID | UV_PROCESS_SETGID;
        opts.uid = drv->run_as.uid;
        opts.gid = drv->run_as.gid;
    }
    opts.stdio_count = 3;
    opts.stdio = stdio;
    if (cgroup != NULL) {
        stdio[GATE_FD].flags = UV_INHERIT_FD;
        stdio[GATE_FD].data.fd = gate[0];
        opts.stdio_count = GATE_FD + 1;
        opts.args = gated_args;
    }

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
    if (cgroup != NULL) {
        close(gate[0]);
        gate[0] = -1;
        rc = local_cgroup_attach(env, g->pgid, err);
        if (rc == 0 && write(gate[1], "go\n", 3) != 3) {
            rc = -errno;
            rc = eph_err_set(err, rc, "cannot start %s of '%s': %s", kind_name(kind), s->name,
                             eph_strerror(rc));
        }
        close(gate[1]); /* unwritten: the shell exits without running the command */
        gate[1] = -1;
        if (rc < 0) {
            /* It never ran the command; its exit is expected, and the reaper
             * drops the group once it is gone. */
            g->svc = NULL;
            local__group_kill(g);
            goto out;
        }
    }
    /* uv_spawn() returns once the child has exec'd /bin/sh: its start time is
     * final, and it cannot have been reaped yet (that happens on this loop). */
    if (proc_start_ticks(g->pgid, &g->start_ticks) < 0)
        g->start_ticks = 0;
    local__group_record(g, env->dir);
    local_cgroup_forget_usage(drv->cgroup);
    *out = g;
    rc = 0;
out:
    if (null_fd >= 0)
        close(null_fd);
    if (log_fd >= 0)
        close(log_fd);
    for (size_t i = 0; i < ARRAY_LEN(gate); i++) {
        if (gate[i] >= 0)
            close(gate[i]);
    }
    free_strv(envp);
    free(cwd);
    free(data_dir);
    free(logs_dir);
    free(state_dir);
    free(log_path);
    free(owner);
    return rc;
}

/* ---------------------------------------------------------------- records */

void
local__group_record(struct local_group *g, const char *env_dir)
{
    char content[RECORD_MAX_BYTES];
    char *path;
    int n, rc;

    if (g->record != NULL || env_dir == NULL)
        return;
    path = xasprintf("%s/state/%s.%s.%d", env_dir, g->svc_name, kind_name(g->kind), (int)g->pgid);
    n = snprintf(content, sizeof(content), "%d %" PRIu64 "\n", (int)g->pgid, g->start_ticks);
    rc = fs_write_atomic(path, content, (size_t)n, 0644);
    if (rc < 0) {
        log_warn("cannot record process group", "pgid=%d service=%s path=%s error=%s", (int)g->pgid,
                 g->svc_name, log_q(path), log_q(eph_strerror(rc)));
        free(path);
        return;
    }
    g->record = path;
}

/* ---------------------------------------------------------------- scanning */

/* A group already known, found at start-up or being swept, by what names it. */
static struct local_group *
known_group(struct local_driver *drv, int64_t env_id, const char *svc, enum local_kind kind,
            pid_t pgid)
{
    struct local_group *lists[] = {drv->orphans, drv->swept};

    for (size_t i = 0; i < ARRAY_LEN(lists); i++) {
        for (struct local_group *g = lists[i]; g != NULL; g = g->next) {
            if (g->pgid == pgid && g->env_id == env_id && g->kind == kind &&
                strcmp(g->svc_name, svc) == 0)
                return g;
        }
    }
    return NULL;
}

static struct local_group *
add_orphan(struct local_driver *drv, int64_t env_id, const char *svc, enum local_kind kind,
           pid_t pgid)
{
    struct local_group *g = group_new(drv, env_id, svc, kind, pgid);

    g->adopted = true;
    g->linked = true;
    g->next = drv->orphans;
    drv->orphans = g;
    return g;
}

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
    g = known_group(drv, env_id, svc, kind, pgid);
    if (g == NULL) {
        g = add_orphan(drv, env_id, svc, kind, pgid);
        sc->found++;
    }
    if (pid == pgid) {
        g->leader_seen = true;
        if (g->start_ticks == 0 && proc_start_ticks(pid, &g->start_ticks) < 0)
            g->start_ticks = 0;
    }
}

/* One record read from an environment's state/. */
struct record {
    char *path;
    int64_t env_id;
    char *svc;
    enum local_kind kind;
    pid_t pgid;
    uint64_t start_ticks;
};

struct records {
    struct record *v;
    size_t n, cap;
};

/* "<service>.<run|setup>.<pgid>" -> its parts; false for any other file
 * (checkout.done, setup-<service>.done, a temporary file of fs_write_atomic). */
static bool
parse_record_name(const char *name, char *svc, size_t svc_size, enum local_kind *kind, pid_t *pgid)
{
    const char *dot = strrchr(name, '.');
    char *end;
    long pid;
    size_t n;

    if (dot == NULL || !isdigit((unsigned char)dot[1]))
        return false;
    errno = 0;
    pid = strtol(dot + 1, &end, 10);
    if (errno != 0 || *end != '\0' || pid <= 1 || pid > INT_MAX)
        return false;
    n = (size_t)(dot - name);
    if (n > 4 && memcmp(dot - 4, ".run", 4) == 0) {
        *kind = LOCAL_KIND_RUN;
        n -= 4;
    } else if (n > 6 && memcmp(dot - 6, ".setup", 6) == 0) {
        *kind = LOCAL_KIND_SETUP;
        n -= 6;
    } else {
        return false;
    }
    if (n == 0 || n >= svc_size)
        return false;
    memcpy(svc, name, n);
    svc[n] = '\0';
    *pgid = (pid_t)pid;
    return true;
}

/* Adds the records in env_dir/state/ to rs. A record that cannot be read
 * names nothing we could check: it is removed. */
static void
records_read(struct records *rs, const char *env_dir, int64_t env_id)
{
    char *state = xasprintf("%s/state", env_dir);
    DIR *d = opendir(state);
    struct dirent *de;

    while (d != NULL && (de = readdir(d)) != NULL) {
        char svc[256], *path, *data = NULL;
        enum local_kind kind;
        pid_t pgid;
        long long recorded_pgid = 0;
        unsigned long long ticks = 0;

        if (!parse_record_name(de->d_name, svc, sizeof(svc), &kind, &pgid))
            continue;
        path = xasprintf("%s/%s", state, de->d_name);
        if (fs_read_all(path, RECORD_MAX_BYTES, &data, NULL) < 0 ||
            sscanf(data, "%lld %llu", &recorded_pgid, &ticks) != 2 || recorded_pgid != pgid) {
            log_warn("bad group record removed", "path=%s", log_q(path));
            unlink(path);
            free(path);
            free(data);
            continue;
        }
        free(data);
        if (rs->n == rs->cap) {
            rs->cap = rs->cap ? rs->cap * 2 : 8;
            rs->v = xrealloc(rs->v, rs->cap * sizeof(*rs->v));
        }
        rs->v[rs->n++] = (struct record){
            .path = path,
            .env_id = env_id,
            .svc = xstrdup(svc),
            .kind = kind,
            .pgid = pgid,
            .start_ticks = ticks,
        };
    }
    if (d != NULL)
        closedir(d);
    free(state);
}

/*
 * Judges the records read, counting all their groups in one walk of /proc. A
 * group is alive if it has members and its leader is the recorded process
 * (same start time) or is gone: the kernel gives no new process a pid still
 * in use as a group id, so then the members are the recorded group's. A live
 * group joins drv->orphans unless already known; a dead one's record is
 * removed. Empties rs.
 */
static void
records_resolve(struct local_driver *drv, struct records *rs)
{
    pid_t *pgids = xcalloc(rs->n + 1, sizeof(*pgids));
    int *counts = xcalloc(rs->n + 1, sizeof(*counts));
    int rc;

    for (size_t i = 0; i < rs->n; i++)
        pgids[i] = rs->v[i].pgid;
    rc = proc_groups_live_counts(pgids, counts, rs->n);
    for (size_t i = 0; i < rs->n; i++) {
        struct record *r = &rs->v[i];
        struct local_group *g;
        uint64_t ticks = 0;
        int trc = proc_start_ticks(r->pgid, &ticks);
        bool leader = trc == 0 && ticks == r->start_ticks;

        if (rc < 0)
            goto next; /* cannot tell: keep the record for a later look */
        if (counts[i] <= 0 || !(leader || trc < 0) || r->pgid == getpgrp()) {
            log_debug("stale group record removed", "path=%s", log_q(r->path));
            unlink(r->path);
            goto next;
        }
        g = known_group(drv, r->env_id, r->svc, r->kind, r->pgid);
        if (g == NULL)
            g = add_orphan(drv, r->env_id, r->svc, r->kind, r->pgid);
        if (g->record == NULL) {
            g->record = r->path;
            r->path = NULL;
        }
        if (leader && proc_is_alive(r->pgid))
            g->leader_seen = true;
        if (g->start_ticks == 0)
            g->start_ticks = r->start_ticks;
    next:
        free(r->path);
        free(r->svc);
    }
    free(rs->v);
    memset(rs, 0, sizeof(*rs));
    free(pgids);
    free(counts);
}

void
local__scan_env_records(struct local_driver *drv, const char *env_dir, int64_t env_id)
{
    struct records rs = {0};

    records_read(&rs, env_dir, env_id);
    records_resolve(drv, &rs);
}

/* The id of an environment directory, "<id>-<name>"; 0 if it is not one. */
static int64_t
env_dir_id(const char *name)
{
    char *end;
    long long id;

    if (!isdigit((unsigned char)name[0]))
        return 0;
    errno = 0;
    id = strtoll(name, &end, 10);
    return errno == 0 && id > 0 && *end == '-' ? id : 0;
}

int
local__scan(struct local_driver *drv)
{
    struct scan sc = {.drv = drv};
    struct records rs = {0};
    DIR *d;
    struct dirent *de;
    int rc = 0;

    /* Twice: a process caught in the middle of an execve() shows an empty
     * environment for an instant (a service's `sh -c` exec'ing its server),
     * and a group missed here would run on unwatched next to a second copy.
     * The second pass only adds what the first missed. */
    for (int pass = 0; pass < 2 && rc >= 0; pass++)
        rc = proc_scan_marker("EPH_OWNER", on_marked_process, &sc);
    if (rc < 0)
        return rc;
    /* Then the records: they find the groups whose members all lost the
     * marker, and confirm leaders the marker scan could not see. */
    d = opendir(drv->envs_dir);
    while (d != NULL && (de = readdir(d)) != NULL) {
        int64_t id = env_dir_id(de->d_name);
        if (id <= 0)
            continue;
        char *dir = xasprintf("%s/%s", drv->envs_dir, de->d_name);
        records_read(&rs, dir, id);
        free(dir);
    }
    if (d != NULL)
        closedir(d);
    records_resolve(drv, &rs);
    for (struct local_group *g = drv->orphans; g != NULL; g = g->next) {
        log_info("process group found",
                 "env_id=%" PRId64 " service=%s kind=%s pgid=%d leader=%s recorded=%s", g->env_id,
                 g->svc_name, kind_name(g->kind), (int)g->pgid, g->leader_seen ? "yes" : "no",
                 g->record ? "yes" : "no");
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
