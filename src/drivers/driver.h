/*
 * drivers/driver.h - the one interface the reconciler uses to run
 * environments: the local driver (process groups on this machine) today,
 * Kubernetes later.
 *
 * The reconciler is level-triggered: each tick it hands every live
 * environment's plan to apply(), which takes the next idempotent steps
 * without blocking, and reads back what is observed with observe(). A driver
 * never calls the reconciler; it only asks for an early tick through the
 * `kick` hook it was created with, when something it watches changed.
 *
 * All functions run on the control loop.
 */
#ifndef EPH_DRIVERS_DRIVER_H
#define EPH_DRIVERS_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/env.h"
#include "core/spec.h"
#include "util/err.h"

/* One service of a plan: what to run, fully expanded. Borrowed from the plan. */
struct drv_service {
    const char *name;
    const char *run;          /* shell command; NULL: nothing to run (upstream) */
    const char *setup;        /* shell command run once per environment; NULL: none */
    const char *dir;          /* relative to the checkout; NULL: its root */
    char *const *envp;        /* NAME=VALUE, NULL-terminated; the driver adds EPH_DATA */
    int port;                 /* where the health check looks; 0: none */
    const char *health_host;  /* ... on this host (an upstream's, name or IP literal);
                                 NULL: 127.0.0.1 */
    enum spec_health_kind health_kind;
    const char *health_path;  /* for HTTP health */
    int64_t health_timeout_ms;
    const size_t *deps;       /* indexes into plan->services that must be healthy first */
    size_t n_deps;
};

/* Resource limits of a whole environment (every process of it together). */
struct drv_limits {
    int64_t memory_bytes; /* 0: none */
    int64_t cpu_millis;   /* 1000 = one core; 0: none */
    int64_t pids;         /* processes and threads; 0: none */
};

/* What an environment should be running. Built by the reconciler, immutable. */
struct drv_plan {
    int64_t env_id;             /* unique forever */
    const char *env_name;
    const char *repo_cache;     /* bare git cache to check out from */
    const char *commit;         /* full sha */
    struct drv_service *services;
    size_t n_services;          /* in dependency order */
    struct drv_limits limits;   /* effective: env, template, server cap */
};

/* What an environment uses now (drivers' usage()). */
struct drv_usage {
    int64_t memory_bytes;  /* cgroup memory.current, else the RSS of its processes */
    int64_t cpu_usec;      /* CPU time used so far (cgroup usage_usec, else utime+stime) */
    bool limits_enforced;  /* the limits of its plan hold (a cgroup of its own) */
    char note[160];        /* why not, when not: "cgroup v2 memory controller not
                              available at ..."; "" otherwise */
};

/* The environment as a whole. */
enum drv_prep {
    DRV_PREP_NONE,      /* nothing done yet */
    DRV_PREP_CHECKOUT,  /* source checkout in progress */
    DRV_PREP_DONE,      /* source in place; services proceed on their own */
    DRV_PREP_FAILED,    /* see reason */
};

struct drv_svc_status {
    enum svc_state state;
    int pid;                 /* process group leader, 0 if none */
    int restarts;            /* crashes restarted since the environment was created here */
    int64_t started_at_ms;   /* wall clock of the current process start, 0 if none */
    char reason[256];        /* why FAILED / RESTARTING, "" otherwise */
};

struct drv_status {
    enum drv_prep prep;
    char reason[256];                /* why FAILED */
    size_t n_services;               /* == plan->n_services */
    struct drv_svc_status *services; /* caller-provided array of plan->n_services */
};

struct driver;

struct driver_ops {
    const char *name; /* "local" */

    /*
     * Takes the next steps toward running the plan: checkout, then for each
     * service in order, once its deps are healthy: setup (once), start, health
     * checks, restarts with back-off after a crash. Idempotent and
     * non-blocking; call it every tick. Adopts processes of this environment
     * left running by an earlier server instead of starting duplicates.
     * Returns 0, or an error for a plan it cannot accept.
     */
    int (*apply)(struct driver *drv, const struct drv_plan *plan, struct eph_err *err);

    /* Fills *st (whose services array the caller sized) with what is observed. */
    void (*observe)(struct driver *drv, const struct drv_plan *plan, struct drv_status *st);

    /*
     * Stops every process of environment env_id (SIGTERM to each group, SIGKILL
     * after the grace period) and removes its directory. Idempotent; returns
     * EPH_EAGAIN while still in progress, 0 once nothing is left.
     */
    int (*teardown)(struct driver *drv, int64_t env_id, const char *env_name,
                    struct eph_err *err);

    /*
     * Stops every process of env_id (SIGTERM, grace, SIGKILL), keeping its
     * directories, data, setup-done marks and ports: the environment sleeps.
     * EPH_EAGAIN while stopping, 0 once nothing runs (also for an environment
     * the driver does not know, after stopping what an earlier server left of
     * it). A process stopped so is no crash. A later apply() with the plan
     * starts the services again in dependency order, without running setup
     * again, probing health at short intervals (first probe after ~5 ms,
     * backing off to <= 100 ms, so a service that can answer is seen within a
     * few ms).
     */
    int (*suspend)(struct driver *drv, int64_t env_id, const char *env_name,
                   struct eph_err *err);

    /*
     * Current use of env_id (memory: cgroup memory.current, else the sum of RSS
     * of its process groups from /proc; cpu: cgroup cpu.stat usage_usec, else
     * utime+stime of its groups' processes), and whether limits are enforced
     * (note says why not). Zeroes for an environment that runs nothing.
     */
    void (*usage)(struct driver *drv, int64_t env_id, struct drv_usage *out);

    /*
     * Called once after the first pass over every live environment following
     * start-up: stops processes found at start-up that no plan claimed
     * (orphans of a crash, environments deleted meanwhile).
     */
    void (*sweep)(struct driver *drv);

    /* Path of a service's log file (free()); the file may not exist yet. */
    char *(*log_path)(struct driver *drv, int64_t env_id, const char *env_name,
                      const char *service);

    /*
     * Closes the driver's handles without stopping any environment (their
     * processes keep running and are adopted by the next server), then calls
     * done(arg) once and frees the driver.
     */
    void (*close)(struct driver *drv, void (*done)(void *arg), void *arg);
};

struct driver {
    const struct driver_ops *ops;
};

#endif
