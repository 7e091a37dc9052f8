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
 * cfg->kick is called from a timer callback on the loop, never from inside a
 * driver call; changes within one loop iteration make one kick. Health probes
 * write to sockets: the process must ignore SIGPIPE (the daemon does).
 */
#ifndef EPH_DRIVERS_LOCAL_LOCAL_H
#define EPH_DRIVERS_LOCAL_LOCAL_H

#include <uv.h>

#include "drivers/driver.h"

struct local_config {
    uv_loop_t *loop;          /* the control loop */
    const char *envs_dir;     /* where environment directories live */
    const char *instance_id;  /* this data directory's id, in EPH_OWNER */
    int64_t stop_grace_ms;    /* SIGTERM -> SIGKILL */
    void (*kick)(void *arg);  /* asks the reconciler for an early tick */
    void *kick_arg;
};

/* Creates the driver and scans /proc for processes of an earlier server. */
int local_driver_new(const struct local_config *cfg, struct driver **out, struct eph_err *err);

#endif
