/*
 * drivers/local/local_cgroup.h - resource limits of the local driver's
 * environments through cgroup v2, and what they use (the driver's usage()).
 * Shared by the local driver's files only, like local_int.h; the parsers are
 * declared here for the unit tests.
 *
 * Layout: <root>/ephemera/<instance>/env-<id>, one cgroup per environment
 * holding every process of it, with memory.max, cpu.max ("<quota> 100000")
 * and pids.max from the plan's limits. <instance> keeps two servers that
 * share a root (tests, several data directories) out of each other's way.
 *
 * <root> is the `cgroup_root` setting: a path, "off", or "auto" (default): the
 * cgroup v2 directory the server runs in, found from /proc/self/cgroup
 * ("0::/path") and the cgroup2 mount in /proc/self/mountinfo. Nothing of the
 * server moves: it only creates children. cgroup v2 lets a cgroup hand
 * controllers to its children only while no process lives in it (except the
 * hierarchy's root), so "auto" takes
 *   - the server's own cgroup if it is the hierarchy's root,
 *   - its parent if that is delegated (systemd marks a delegated cgroup with
 *     the xattr trusted.delegate or user.delegate; with `Delegate=yes` and
 *     `DelegateSubgroup=server` the server runs in <unit>/server and <unit> is
 *     free of processes: ephemera/ becomes a sibling of server/),
 *   - else its own cgroup, which works only if memory, cpu and pids are
 *     enabled in its subtree_control already (they cannot be while the
 *     server is in it: the kernel refuses with EBUSY, and the note says so).
 * Without a usable root nothing fails: limits are not enforced and every
 * usage() says why in its note ("cgroup v2 memory, cpu, pids controllers are
 * not available at /sys/fs/cgroup/unified (available: hugetlb)"). An explicit
 * path that cannot be used stops the driver's creation instead.
 *
 * A process joins its environment's cgroup before it runs anything of the
 * service: local__spawn() starts `/bin/sh -c 'read -r go <&3 && exec /bin/sh
 * -c "$1" 3<&-' sh <cmd>`, which waits on a pipe; the server (which may
 * write cgroup.procs, even when the process already runs as `run_as`) writes
 * the new pid into the environment's cgroup.procs, and only then writes the
 * "go" line. Children forked later inherit the cgroup. If the move fails the
 * pipe closes unread, the shell exits 1 without running the command, and the
 * start fails. (A shell prefix writing `echo $$ > cgroup.procs` cannot work
 * once run_as dropped privileges, and clone3(CLONE_INTO_CGROUP) would mean
 * forking outside libuv.)
 *
 * Everything here runs on the control loop; the /proc and cgroup files read
 * are small. Without a cgroup, usage() sums the processes of the
 * environment's process groups from one walk of /proc, shared by every
 * environment and cached for LOCAL_USAGE_CACHE_MS.
 */
#ifndef EPH_DRIVERS_LOCAL_LOCAL_CGROUP_H
#define EPH_DRIVERS_LOCAL_LOCAL_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "drivers/driver.h"
#include "util/err.h"

struct local_cgroup; /* per driver: the root found, per-environment state, the usage cache */
struct local_env;

#define LOCAL_CGROUP_NOTE_MAX 160  /* == sizeof(drv_usage.note) */
#define LOCAL_USAGE_CACHE_MS 1000  /* a /proc walk serves every environment this long */
#define LOCAL_USAGE_MAX_PIDS 32768 /* /proc entries one walk reads at most */

/* ---------------------------------------------------------- the driver's */

/*
 * Finds and prepares the cgroup root per `cgroup_root` ("auto", NULL or "":
 * auto; "off"; or an absolute path), creating <root>/ephemera/<instance_id>
 * with the memory, cpu and pids controllers enabled for its children.
 * Returns 0 with *out set whether or not limits can be enforced (see
 * local_cgroup_note()); EPH_EINVAL for an explicit path that cannot be used
 * or a bad setting, described in *err. Free *out with local_cgroup_free().
 */
int local_cgroup_new(const char *cgroup_root, const char *instance_id, struct local_cgroup **out,
                     struct eph_err *err);
void local_cgroup_free(struct local_cgroup *cg);

/* Whether environments get cgroups; if not, local_cgroup_note() says why. */
bool local_cgroup_enabled(const struct local_cgroup *cg);
const char *local_cgroup_note(const struct local_cgroup *cg);
/* <root>/ephemera/<instance>, or NULL unless enabled. */
const char *local_cgroup_base(const struct local_cgroup *cg);

/* -------------------------------------------------------- per environment */

/*
 * Creates (once) env's cgroup and writes its limits when they changed since
 * the last call: call it from apply() on every call, before any service of
 * env starts. Cheap when nothing changed. Does nothing without cgroups. A
 * failure does not fail the environment: it runs without limits, logged once,
 * and usage() reports limits_enforced false with the reason.
 */
void local_cgroup_env_setup(struct local_env *env, const struct drv_limits *limits);

/*
 * Teardown, once env has no process group left: kills whatever still lives
 * in its cgroup (processes that left their group; cgroup.kill) and removes
 * the cgroup. 0 once it is gone (or there was none), EPH_EAGAIN while
 * processes are still dying (call again). Other failures are logged and give
 * up (0): a leaked empty cgroup must not block a teardown.
 */
int local_cgroup_env_remove(struct local_env *env);

/* Kills every process in env's cgroup (escaped daemons), keeping the cgroup
 * (made by this server or an earlier one): for suspend() once env's groups
 * are gone. Does nothing without one. */
void local_cgroup_env_kill(struct local_env *env);
/* The same for environment env_id known only by id (not applied by this
 * server: it slept across a restart). */
void local_cgroup_kill_id(struct local_cgroup *cg, int64_t env_id);

/*
 * Called when a service's process (leader) of env exited: true if the memory
 * limit killed it (memory.events oom_kill rose since the last call, and the
 * exit looks like a SIGKILL: the signal, or status 137 from a shell whose
 * child was killed); then `reason` holds "killed by the memory limit
 * (512Mi)". Each kill is reported once.
 */
bool local_cgroup_oom_killed(struct local_env *env, bool known, int exit_status, int term_signal,
                             char *reason, size_t reason_size);

/* The cgroup directory env's processes join, NULL if none (local_proc.c). */
const char *local_cgroup_env_dir(struct local_env *env);

/* Moves process `pid` into env's cgroup. 0, or -errno described in *err. */
int local_cgroup_attach(struct local_env *env, pid_t pid, struct eph_err *err);

/* A group started: the next usage() walks /proc again rather than answer
 * from a walk that did not know it. */
void local_cgroup_forget_usage(struct local_cgroup *cg);

/* The driver's usage() op (driver.h). */
void local_usage(struct driver *drv, int64_t env_id, struct drv_usage *out);

/* ------------------------------------------------- parsers (for the tests) */

/* Controller bits. */
#define LOCAL_CG_MEMORY 1u
#define LOCAL_CG_CPU 2u
#define LOCAL_CG_PIDS 4u
#define LOCAL_CG_NEEDED (LOCAL_CG_MEMORY | LOCAL_CG_CPU | LOCAL_CG_PIDS)

/* /proc/self/cgroup text -> the cgroup v2 path ("0::/a/b" -> "/a/b"). 0,
 * EPH_ENOTFOUND (no v2 line), EPH_EINVAL (outside our cgroup namespace:
 * "/../x", or "(deleted)"), EPH_ETOOBIG. */
int local_cgroup_parse_self(const char *text, char *path, size_t size);

/* /proc/self/mountinfo text and a cgroup v2 path -> its directory: the first
 * cgroup2 mount whose root contains the path, joined with the rest
 * ("/sys/fs/cgroup" + "/a/b"). Octal escapes (\040) are decoded. 0,
 * EPH_ENOTFOUND, EPH_ETOOBIG. */
int local_cgroup_parse_mountinfo(const char *text, const char *cgpath, char *dir, size_t size);

/* A controller list ("cpuset cpu io memory pids") -> LOCAL_CG_* bits. */
unsigned local_cgroup_controllers(const char *list);

/* The note for controllers `missing` (LOCAL_CG_*) of directory `dir` whose
 * cgroup.controllers reads `available`: "cgroup v2 memory, cpu, pids
 * controllers are not available at DIR (available: hugetlb)". */
void local_cgroup_missing_note(unsigned missing, const char *dir, const char *available, char *out,
                               size_t size);

/* The value of `key` in a flat-keyed file ("oom_kill 3\n", "usage_usec 12\n"),
 * or -1 if absent or malformed. */
int64_t local_cgroup_keyed(const char *text, const char *key);

/* cpu.max for `millis` (1000 = one core): "50000 100000", "max 100000" for 0. */
void local_cgroup_cpu_max(int64_t millis, char *out, size_t size);

/* 536870912 -> "512Mi", 1073741824 -> "1Gi", 1000 -> "1000" (bytes). */
void local_cgroup_format_bytes(int64_t bytes, char *out, size_t size);

/* What usage() needs of one /proc/PID/stat. */
struct local_pstat {
    pid_t pgid;
    uint64_t cpu_ticks; /* utime + stime + cutime + cstime */
    int64_t rss_pages;
    char state; /* 'R', 'S', 'Z', ... */
};
/* Parses a /proc/PID/stat line (the command may hold spaces and ')'). 0 or
 * EPH_EPARSE. */
int local_cgroup_parse_stat(const char *text, struct local_pstat *out);

/*
 * For the tests: local_cgroup_new()'s work on `root_dir` as given, without
 * checking that it is a cgroup2 file system. `self_dir`, the server's own
 * cgroup directory, decides where the permission to move processes is
 * checked (NULL: not checked). 0 with *out (enabled), or EPH_EINVAL with the
 * reason in note.
 */
int local_cgroup_new_at(const char *root_dir, const char *self_dir, const char *instance_id,
                        struct local_cgroup **out, char *note, size_t note_size);

#endif
