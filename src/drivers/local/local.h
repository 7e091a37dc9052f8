/*
 * drivers/local/local.h - the local driver: every service of every
 * environment as a supervised process group on this machine.
 *
 * Layout, per environment, under envs_dir/<id>-<name>/:
 *   src/                 the checkout
 *   data/<service>/      EPH_DATA, kept across restarts
 *   logs/<service>.log   setup and run output, appended
 *   state/               what the driver must remember across its own restarts
 *                        (checkout done, setup done, and each live process group
 *                        as <service>.<run|setup>.<pgid>), written atomically
 *
 * Each process it starts carries EPH_OWNER=<instance>/<env id>/<service>[/setup]
 * in its environment, and each group is recorded in state/ right after its
 * spawn, so a new server can find, adopt or stop the processes of an earlier
 * one: by the marker even those spawned a moment before a crash and never
 * recorded, by the record those whose programs overwrote their environment
 * (process titles) so that no member shows the marker.
 *
 * A service's processes get PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE,
 * LC_*, TZ, TMPDIR and TERM from the server's environment (nothing else, so the
 * server's secrets stay with it), then the plan's envp, then EPH_DATA and
 * EPH_OWNER (which the plan cannot override).
 *
 * With cfg->run_as (a server running as root), every run and setup command
 * runs as that user and its primary group, without supplementary groups, and
 * gets the user's HOME, USER and LOGNAME instead of the server's. What it must
 * write is given to it before anything runs: the checkout (src/, recursively,
 * right after it is made) and its data/<service>/. The rest stays the
 * server's: state/ (records an environment must not forge), logs/ (the server
 * opens the log files and hands the processes their descriptors), the
 * environment directory and envs_dir (mode 0711 or more: enterable, not
 * listable). Files of the checkout with other hard links (git's objects,
 * shared with the cache) keep their owner and stay read-only.
 *
 * Resource limits (the plan's memory, cpu and pids) hold through one cgroup v2
 * per environment, <root>/ephemera/<instance>/env-<id>, which every process
 * of it joins before it runs anything of the service; without a usable
 * cgroup v2 root they are not enforced, and usage() says why.
 *
 * cfg->kick is called from a timer callback on the loop, never from inside a
 * driver call; changes within one loop iteration make one kick. Health probes
 * write to sockets: the process must ignore SIGPIPE (the daemon does).
 */
#ifndef EPH_DRIVERS_LOCAL_LOCAL_H
#define EPH_DRIVERS_LOCAL_LOCAL_H

#include <sys/types.h>
#include <uv.h>

#include "drivers/driver.h"

/* The user environment processes run as (the `run_as` setting), resolved once
 * at start-up by local_run_as_resolve(). */
struct local_run_as {
    char *name; /* as configured */
    char *home; /* its home directory, from the password database */
    uid_t uid;  /* never 0 */
    gid_t gid;  /* its primary group */
};

struct local_config {
    uv_loop_t *loop;         /* the control loop */
    const char *envs_dir;    /* where environment directories live */
    const char *instance_id; /* this data directory's id, in EPH_OWNER */
    int64_t stop_grace_ms;   /* SIGTERM -> SIGKILL */
    void (*kick)(void *arg); /* asks the reconciler for an early tick */
    void *kick_arg;
    /* Who runs environment processes: NULL, the server's own user (a server
     * not running as root); else this user, which only root can switch to.
     * Borrowed: the driver copies it. */
    const struct local_run_as *run_as;
    /* Where environments' cgroups go (the `cgroup_root` setting): "auto" (or
     * NULL): the server's own cgroup v2 directory if children with the memory,
     * cpu and pids controllers can be made there; "off"; or an absolute path
     * of a cgroup v2 directory, which must work (local_cgroup.h). Borrowed. */
    const char *cgroup_root;
};

/*
 * Creates the driver and scans /proc for processes of an earlier server. With
 * cfg->run_as it makes envs_dir enterable by others (adds mode 0011) and
 * refuses to start unless the server runs as root. Finds the cgroup root per
 * cfg->cgroup_root (an explicit path that cannot be used is an error).
 */
int local_driver_new(const struct local_config *cfg, struct driver **out, struct eph_err *err);

/*
 * Looks user `name` up in the password database: its uid, primary group and
 * home into *out (release it with local_run_as_release()). Returns 0, or
 * EPH_EINVAL "run_as: no user named 'x'" (also for root, which would defeat
 * the setting). Blocking (NSS): call at start-up, before the loop runs.
 */
int local_run_as_resolve(const char *name, struct local_run_as *out, struct eph_err *err);
void local_run_as_release(struct local_run_as *ra);

/*
 * Checks that ra's user can reach data_dir (its real path): every directory
 * from / down to data_dir itself must be searchable by the user's uid or
 * primary group (mode bits against owner and group; ACLs are not consulted,
 * and the processes have no supplementary groups). Environment directories
 * live below data_dir, so a service could not even reach its checkout
 * otherwise. Returns 0, EPH_EINVAL "run_as: user 'nobody' cannot reach
 * data_dir '/tmp/x/data' ('/tmp/x' is not searchable by it); ...", or -errno
 * if data_dir cannot be resolved. Call after data_dir exists.
 */
int local_check_run_as_access(const char *data_dir, const struct local_run_as *ra,
                              struct eph_err *err);

#endif
