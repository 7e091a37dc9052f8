/*
 * util/proc.h - running short commands to completion, and inspecting
 * processes through /proc.
 *
 * proc_run() blocks: call it from a worker thread (uv_queue_work), never from
 * a loop. The /proc readers are cheap and may run anywhere.
 */
#ifndef EPH_UTIL_PROC_H
#define EPH_UTIL_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct proc_result {
    int exit_code;   /* exit status, or -1 when killed by a signal */
    int term_signal; /* the signal that ended it, 0 if it exited */
    bool timed_out;  /* killed because the deadline passed */
    char *out;       /* captured stdout, NUL-terminated; free with proc_result_release */
    size_t out_len;
    char *err;       /* captured stderr, NUL-terminated */
    size_t err_len;
};

/*
 * Runs argv[0] (looked up in PATH) with argv in `cwd` (NULL: ours), in its own
 * process group, with stdin from /dev/null, capturing stdout and stderr up to
 * max_output_bytes each (the rest is read and dropped). `envp` NULL inherits
 * our environment. The whole group is killed with SIGKILL after timeout_ms.
 * Returns 0 when the command ran (whatever its exit code; see *res), or -errno
 * when it could not be started. Release *res in either case.
 */
int proc_run(const char *const argv[], const char *cwd, char *const envp[], int64_t timeout_ms,
             size_t max_output_bytes, struct proc_result *res);
void proc_result_release(struct proc_result *res);

/* True if `pid` exists and is not a zombie. */
bool proc_is_alive(pid_t pid);

/*
 * Start time of `pid` in clock ticks since boot (field 22 of /proc/PID/stat):
 * with the pid, it names a process uniquely across pid reuse. 0 or -errno.
 */
int proc_start_ticks(pid_t pid, uint64_t *out);

/* Number of live (non-zombie) processes whose process group is `pgid`. */
int proc_group_live_count(pid_t pgid);

/* Sends `sig` to every live process of group `pgid`. 0, or -errno of kill(). */
int proc_group_signal(pid_t pgid, int sig);

/*
 * Calls cb for every live process whose environment holds `var`=VALUE, with
 * its pid, process group and VALUE (borrowed for the call). Processes we may
 * not read are skipped. Returns the number of matches or -errno.
 */
typedef void proc_marker_cb(pid_t pid, pid_t pgid, const char *value, void *arg);
int proc_scan_marker(const char *var, proc_marker_cb *cb, void *arg);

/*
 * Counts, in one pass over /proc, the live (non-zombie) members of each of
 * the n groups pgids[0..n-1] into counts[0..n-1] (a pgid listed twice gets
 * the same count twice). Cheaper than n calls of proc_group_live_count() when
 * several groups are watched at once. 0, or -errno with counts all 0.
 */
int proc_groups_live_counts(const pid_t *pgids, int *counts, size_t n);

#endif
