/*
 * util/proc.c - running short commands, and inspecting processes via /proc.
 */
#include "util/proc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

extern char **environ;

/* Appends what fits under the ceiling and silently drops the rest, so a
 * chatty command can neither block on a full pipe nor grow us without bound. */
static void
append_capped(struct buf *b, const char *data, size_t n)
{
    size_t room = b->max_bytes - b->len;

    buf_append(b, data, n < room ? n : room);
}

int
proc_run(const char *const argv[], const char *cwd, char *const envp[], int64_t timeout_ms,
         size_t max_output_bytes, struct proc_result *res)
{
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    struct buf out, err;
    pid_t pid = -1;
    int rc;
    int64_t deadline = time_mono_ms() + timeout_ms;

    memset(res, 0, sizeof(*res));
    buf_init(&out, max_output_bytes);
    buf_init(&err, max_output_bytes);
    if (pipe2(out_pipe, O_CLOEXEC) < 0 || pipe2(err_pipe, O_CLOEXEC) < 0) {
        rc = -errno;
        goto out;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    if (cwd)
        posix_spawn_file_actions_addchdir_np(&fa, cwd);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr, 0);
    {
        sigset_t none, all;
        sigemptyset(&none);
        sigfillset(&all);
        posix_spawnattr_setsigmask(&attr, &none);
        posix_spawnattr_setsigdefault(&attr, &all);
    }
    rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(out_pipe[1]);
    close(err_pipe[1]);
    out_pipe[1] = err_pipe[1] = -1;
    if (rc != 0) {
        rc = -rc;
        goto out;
    }

    struct pollfd pfd[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int open_fds = 2;
    while (open_fds > 0) {
        int64_t left = deadline - time_mono_ms();
        if (left <= 0) {
            res->timed_out = true;
            kill(-pid, SIGKILL);
            break;
        }
        int n = poll(pfd, 2, left > 1000 ? 1000 : (int)left);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; i++) {
            char chunk[4096];
            if (pfd[i].fd < 0 || !(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(pfd[i].fd, chunk, sizeof(chunk));
            if (got > 0) {
                append_capped(i == 0 ? &out : &err, chunk, (size_t)got);
            } else if (got == 0 || errno != EINTR) {
                /* Forget the descriptor everywhere: the cleanup below must not
                 * close a number that another thread may have been given. */
                close(pfd[i].fd);
                pfd[i].fd = -1;
                if (i == 0)
                    out_pipe[0] = -1;
                else
                    err_pipe[0] = -1;
                open_fds--;
            }
        }
    }
    /* The pipes are closed, but the command may still run (it closed its
     * outputs, or poll failed): keep the deadline while waiting for it. */
    int status = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid || (got < 0 && errno != EINTR))
            break;
        if (got == 0 && time_mono_ms() >= deadline) {
            res->timed_out = true;
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        if (got == 0)
            usleep(2000);
    }
    if (WIFEXITED(status)) {
        res->exit_code = WEXITSTATUS(status);
    } else {
        res->exit_code = -1;
        res->term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    }
    rc = 0;
out:
    for (int i = 0; i < 2; i++) {
        if (out_pipe[i] >= 0)
            close(out_pipe[i]);
        if (err_pipe[i] >= 0)
            close(err_pipe[i]);
    }
    res->out_len = out.len;
    res->out = buf_steal(&out);
    res->err_len = err.len;
    res->err = buf_steal(&err);
    return rc;
}

void
proc_result_release(struct proc_result *res)
{
    free(res->out);
    free(res->err);
    res->out = res->err = NULL;
}

/* Reads /proc/PID/stat's state, pgid and start time. 0 or -errno. */
static int
read_stat(pid_t pid, char *state, pid_t *pgid, uint64_t *start_ticks)
{
    char path[64], data[1024];
    int fd;
    ssize_t n;
    char *p;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    n = read(fd, data, sizeof(data) - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    data[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: fields
     * resume after the last ')'. */
    p = strrchr(data, ')');
    if (p == NULL)
        return -EIO;
    p += 2; /* field 3: state */
    if (state)
        *state = *p;
    /* fields: 3 state, 4 ppid, 5 pgrp, ..., 22 starttime */
    int field = 3;
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save), field++) {
        if (field == 5 && pgid)
            *pgid = (pid_t)atoi(tok);
        if (field == 22) {
            if (start_ticks)
                *start_ticks = strtoull(tok, NULL, 10);
            return 0;
        }
    }
    return -EIO;
}

bool
proc_is_alive(pid_t pid)
{
    char state = 0;

    if (pid <= 0 || read_stat(pid, &state, NULL, NULL) < 0)
        return false;
    return state != 'Z' && state != 'X';
}

int
proc_start_ticks(pid_t pid, uint64_t *out)
{
    return read_stat(pid, NULL, NULL, out);
}

/* Calls fn for each numeric entry of /proc. */
static int
for_each_pid(void (*fn)(pid_t pid, void *arg), void *arg)
{
    DIR *d = opendir("/proc");
    struct dirent *de;

    if (d == NULL)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end == '\0' && pid > 0)
            fn((pid_t)pid, arg);
    }
    closedir(d);
    return 0;
}

struct group_walk {
    pid_t pgid;
    int count;
};

static void
visit_group_member(pid_t pid, void *arg)
{
    struct group_walk *w = arg;
    char state = 0;
    pid_t pgid = 0;

    if (read_stat(pid, &state, &pgid, NULL) < 0 || pgid != w->pgid)
        return;
    if (state == 'Z' || state == 'X')
        return;
    w->count++;
}

int
proc_group_live_count(pid_t pgid)
{
    struct group_walk w = {.pgid = pgid};
    int rc = for_each_pid(visit_group_member, &w);

    return rc < 0 ? rc : w.count;
}

int
proc_group_signal(pid_t pgid, int sig)
{
    /* kill(-pgid) reaches every member at once, and exactly once: signalling
     * them again one by one would turn one SIGTERM into two, which many
     * programs take as "quit now, skip the clean shutdown". */
    if (kill(-pgid, sig) < 0 && errno != ESRCH)
        return -errno;
    return 0;
}

struct marker_walk {
    const char *var;
    size_t var_len;
    proc_marker_cb *cb;
    void *arg;
    int matches;
};

static void
visit_marker(pid_t pid, void *arg)
{
    struct marker_walk *w = arg;
    char path[64];
    char *env = NULL;
    size_t len = 0;
    char state = 0;
    pid_t pgid = 0;

    if (read_stat(pid, &state, &pgid, NULL) < 0 || state == 'Z' || state == 'X')
        return;
    snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
    if (fs_read_all(path, 1 << 20, &env, &len) < 0)
        return;
    for (size_t i = 0; i < len;) {
        const char *entry = env + i;
        size_t n = strnlen(entry, len - i);
        if (n > w->var_len && memcmp(entry, w->var, w->var_len) == 0 &&
            entry[w->var_len] == '=') {
            w->cb(pid, pgid, entry + w->var_len + 1, w->arg);
            w->matches++;
            break;
        }
        i += n + 1;
    }
    free(env);
}

int
proc_scan_marker(const char *var, proc_marker_cb *cb, void *arg)
{
    struct marker_walk w = {.var = var, .var_len = strlen(var), .cb = cb, .arg = arg};
    int rc = for_each_pid(visit_marker, &w);

    return rc < 0 ? rc : w.matches;
}

struct groups_walk {
    const pid_t *pgids;
    int *counts;
    size_t n;
};

static void
visit_groups_member(pid_t pid, void *arg)
{
    struct groups_walk *w = arg;
    char state = 0;
    pid_t pgid = 0;

    if (read_stat(pid, &state, &pgid, NULL) < 0 || state == 'Z' || state == 'X')
        return;
    for (size_t i = 0; i < w->n; i++) {
        if (w->pgids[i] == pgid)
            w->counts[i]++;
    }
}

int
proc_groups_live_counts(const pid_t *pgids, int *counts, size_t n)
{
    struct groups_walk w = {.pgids = pgids, .counts = counts, .n = n};
    int rc;

    memset(counts, 0, n * sizeof(*counts));
    if (n == 0)
        return 0;
    rc = for_each_pid(visit_groups_member, &w);
    if (rc < 0)
        memset(counts, 0, n * sizeof(*counts));
    return rc;
}
