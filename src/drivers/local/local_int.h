/*
 * drivers/local/local_int.h - what the local driver's files share.
 *
 *   local.c         the driver: environments, checkout, apply/observe/teardown,
 *                   sweep, close, kicks
 *   local_svc.c     one service's state machine: setup, start, health pacing,
 *                   crash back-off, adoption
 *   local_proc.c    process groups: spawning, watching a leader's exit (our
 *                   child or, adopted, through a pidfd), stopping with a grace
 *                   period, the group records in state/, and finding an earlier
 *                   server's groups (markers in /proc plus those records)
 *   local_health.c  one TCP or HTTP health probe
 *   local_user.c    run_as: the user's lookup, the access check of data_dir,
 *                   and handing a tree over to the user (chown)
 *   local_cgroup.c  resource limits (cgroup v2) and usage(); its own header
 *                   local_cgroup.h says what local.c and local_svc.c call
 *
 * Everything runs on the control loop. Objects that hold libuv handles are
 * freed in the handles' close callbacks; the driver counts open handles and
 * queued work so that close() reports done only when none is left.
 */
#ifndef EPH_DRIVERS_LOCAL_LOCAL_INT_H
#define EPH_DRIVERS_LOCAL_LOCAL_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <uv.h>

#include "drivers/local/local.h"
#include "drivers/local/local_cgroup.h"

#define LOCAL_PROBE_FIRST_MS 5       /* first probe soon after start: a wake is waited for by
                                        requests, and most servers are quick */
#define LOCAL_PROBE_MAX_MS 100       /* probe pacing grows x1.5 up to this: a refused
                                        connection costs next to nothing */
#define LOCAL_PROBE_TIMEOUT_MS 1000  /* one probe; a local server answers well within it */
#define LOCAL_BACKOFF_FIRST_MS 1000  /* first restart after a crash */
#define LOCAL_BACKOFF_MAX_MS 30000   /* restart back-off doubles up to this */
#define LOCAL_BACKOFF_RESET_MS 60000 /* healthy this long: the next crash starts over at 1 s */
#define LOCAL_REAP_INTERVAL_MS 50    /* how often stopping groups are counted */
#define LOCAL_REASON_MAX 256         /* == sizeof(drv_svc_status.reason) */

enum local_kind {
    LOCAL_KIND_RUN,   /* the service's `run` command */
    LOCAL_KIND_SETUP, /* its `setup` command */
};

/* How the exit of a group's leader reaches us. */
enum local_watch {
    LOCAL_WATCH_NONE,  /* not watched (found at start-up, not adopted, or exited) */
    LOCAL_WATCH_CHILD, /* our child: uv_process_t */
    LOCAL_WATCH_PIDFD, /* adopted: pidfd_open(2) + uv_poll_t, readable once it exits */
};

/*
 * A process group we are responsible for: one start of a service's run or
 * setup command (the leader is /bin/sh, in a session of its own, so pgid ==
 * its pid), or one found at start-up. It stays listed after its leader exits
 * until no member is left alive, so teardown can wait for grandchildren too;
 * it is freed once it is neither listed nor holding an open handle.
 */
struct local_group {
    struct local_group *next; /* in env->groups, drv->orphans or drv->swept */
    struct local_driver *drv;
    struct local_svc *svc; /* the service it currently runs for; NULL: detached */
    int64_t env_id;
    char *svc_name;
    enum local_kind kind;
    pid_t pgid;           /* == its leader's pid */
    uint64_t start_ticks; /* the leader's start time (proc_start_ticks), 0 if unknown */
    bool leader_seen;     /* found at start-up: the leader itself is alive (it carries
                             the marker, or a record names it with its start time) */
    bool adopted;         /* started by an earlier server */
    enum local_watch watch;
    union {
        uv_process_t proc; /* LOCAL_WATCH_CHILD */
        uv_poll_t poll;    /* LOCAL_WATCH_PIDFD */
    } h;
    int pidfd;        /* LOCAL_WATCH_PIDFD: closed in the close callback; else -1 */
    bool handle_open; /* h initialised and its close callback not yet run */
    bool linked;      /* in one of the lists above */
    bool leader_exited;
    bool stopping;      /* SIGTERM sent (or SIGKILL at once); reaped by the timer */
    bool killed;        /* SIGKILL sent */
    bool gone;          /* no live member left */
    int64_t kill_at_ms; /* monotonic: SIGKILL after this while members live */
    char *record;       /* absolute path of the state file naming this group, NULL if
                           none; removed once the group is counted empty */
};

struct local_probe;

/* One service of one environment, as this process runs it. */
struct local_svc {
    struct local_env *env; /* not to be used in the close callback: env may be gone */
    struct local_driver *drv;
    /* copied from the plan at the first apply */
    char *name;
    char *run;   /* NULL: nothing to run (upstream) */
    char *setup; /* NULL: none */
    char *dir;   /* NULL: the checkout's root */
    char **envp; /* NULL-terminated */
    int port;
    char *health_host; /* NULL: 127.0.0.1; else an upstream's host, name or IP literal */
    enum spec_health_kind health_kind;
    char *health_path;
    int64_t health_timeout_ms;
    /* observed */
    enum svc_state state;
    int restarts;
    int64_t started_at_ms;      /* wall clock of the current start, 0 if none */
    int64_t healthy_since_ms;   /* monotonic, 0 unless healthy */
    int64_t health_deadline_ms; /* monotonic: FAILED if not healthy by then */
    int64_t probe_delay_ms;     /* next pause between probes */
    int64_t backoff_ms;         /* next pause before a restart */
    /* This attempt: from local__svc_begin() (creation, or a wake) on. Until the
     * service is first healthy, its health timeout runs from its first start
     * and restarts do not move it, so a crash loop fails the start; once it has
     * been healthy, each restart gets the whole timeout again. */
    bool been_healthy;         /* healthy at least once in this attempt */
    int64_t first_deadline_ms; /* monotonic: first start + health timeout; 0: none yet */
    int early_exits;           /* exits of `run` before it was first healthy */
    char last_exit[64];        /* how `run` last ended: "exited with status 1", "killed
                                  by the memory limit (512Mi)" */
    bool timer_is_deadline;    /* RESTARTING: the timer fires at first_deadline_ms, which
                                  comes before the restart would: FAILED then */
    char reason[LOCAL_REASON_MAX];
    struct local_group *run_group;   /* the running `run`, NULL if none */
    struct local_group *setup_group; /* the running `setup`, NULL if none */
    struct local_probe *probe;       /* in flight, NULL if none */
    uv_timer_t timer;                /* probe pacing, restart back-off; svc freed on close */
};

struct local_work;

/* One environment as this process knows it. */
struct local_env {
    struct local_env *next;
    struct local_driver *drv;
    int64_t id;
    char *name;
    char *dir; /* absolute; NULL at teardown when none was found */
    enum drv_prep prep;
    char reason[LOCAL_REASON_MAX];
    struct local_svc **svcs;
    size_t n_svcs;
    struct local_group *groups; /* every group that may still have live members */
    struct local_work *work;    /* checkout or removal in a worker, NULL if none */
    bool tearing_down;
    bool suspended; /* asleep (suspend()): services STOPPED, groups stopping or gone; the
                       next apply() starts them again once every group is gone */
    bool suspend_swept; /* suspended and its cgroup emptied once (local_cgroup_env_kill) */
    bool removed;  /* its directory is gone */
    int remove_rc; /* of the last removal: 0 or -errno */
};

struct local_driver {
    struct driver base;
    uv_loop_t *loop;
    char *envs_dir; /* absolute */
    char *instance_id;
    char *owner_prefix; /* "<instance>/" */
    int64_t stop_grace_ms;
    void (*kick)(void *arg);
    void *kick_arg;
    bool drop;                  /* processes run as run_as, not as us (root) */
    struct local_run_as run_as; /* a copy of cfg->run_as when drop; else zero */
    struct local_env *envs;
    struct local_group *orphans; /* found at start-up, not yet claimed by a plan */
    struct local_group *swept;   /* being stopped by sweep() */
    struct local_cgroup *cgroup; /* limits and usage (local_cgroup.c); NULL until set up */
    uv_timer_t kick_timer;       /* coalesces kicks and never calls back from inside apply() */
    uv_timer_t reap_timer;       /* counts stopping groups while there are any */
    int open_handles;            /* initialised handles whose close callback has not run */
    int pending_work;            /* uv_queue_work requests not yet completed */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

/* Copies a reason, cut to LOCAL_REASON_MAX - 1 bytes. */
static inline void
local__set_reason(char dst[LOCAL_REASON_MAX], const char *src)
{
    size_t n = strnlen(src, LOCAL_REASON_MAX - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---------------------------------------------------------------- local.c */

/* Asks the reconciler for an early tick (soon, from a timer). */
void local__kick(struct local_driver *drv);
/* Accounting for close(): every handle init is paired with one close callback. */
void local__handle_opened(struct local_driver *drv);
void local__handle_closed(struct local_driver *drv);
/* After an environment being torn down lost its last group: go on removing it. */
void local__env_progress(struct local_env *env);

/* ------------------------------------------------------------ local_svc.c */

/* A service for the plan's `svc`, PENDING, with its timer open. */
struct local_svc *local__svc_new(struct local_env *env, const struct drv_service *svc);
/* Detaches its groups (leaving them running), closes its handles, frees it. */
void local__svc_free(struct local_svc *s);
/* Its deps are healthy: adopt an earlier server's process, or run setup, then start. */
void local__svc_begin(struct local_svc *s);
/* Teardown or suspend: detaches and stops its groups (their exits are no
 * crashes), cancels probes and timers: STOPPED. */
void local__svc_stop(struct local_svc *s);
/* After a suspend: STOPPED -> PENDING with a fresh back-off, to be begun again
 * (its setup-done mark keeps setup from running twice). */
void local__svc_resume(struct local_svc *s);
/* Its group `g` lost its leader (g already detached). `known`: status is real. */
void local__svc_on_exit(struct local_svc *s, struct local_group *g, bool known, int exit_status,
                        int term_signal);
/* A probe finished. */
void local__svc_on_probe(struct local_svc *s, bool healthy);

/* ----------------------------------------------------------- local_proc.c */

/*
 * Starts the service's run or setup command as a new group, listed in its
 * environment and attached to it. 0, or an error described in *err.
 */
int local__spawn(struct local_svc *s, enum local_kind kind, struct local_group **out,
                 struct eph_err *err);
/* Watches an adopted group's leader through a pidfd. 0 or -errno. */
int local__group_watch(struct local_group *g);
/* SIGTERM now, SIGKILL after the grace period; the reaper counts it down. */
void local__group_stop(struct local_group *g);
/* SIGKILL now. */
void local__group_kill(struct local_group *g);
/* Frees an unlinked group, or closes its handle and frees it in the callback. */
void local__group_release(struct local_group *g);
/* Removes g from the list at *head. */
void local__group_unlink(struct local_group **head, struct local_group *g);
/* One pass over stopping groups (one walk of /proc for all of them): count,
 * SIGKILL late ones, drop empty ones. */
void local__reap(struct local_driver *drv);
/*
 * Writes g's record, env_dir/state/<service>.<run|setup>.<pgid>, unless it has
 * one: what finds the group again after a restart when no member shows the
 * EPH_OWNER marker any more. A failure is logged; the marker remains.
 */
void local__group_record(struct local_group *g, const char *env_dir);
/*
 * Fills drv->orphans with the groups of an earlier server: those whose
 * processes carry our marker, and those named by a record in an environment's
 * state/ that are still alive with the recorded start time. 0 or -errno.
 */
int local__scan(struct local_driver *drv);
/* The records of one environment only (teardown of one not applied in this
 * process): live groups not yet known join drv->orphans, stale records go. */
void local__scan_env_records(struct local_driver *drv, const char *env_dir, int64_t env_id);
/* Wall clock at which `pid` started, from /proc; 0 if unknown. */
int64_t local__proc_started_ms(pid_t pid);

/* ----------------------------------------------------------- local_user.c */

/*
 * Gives the tree at `path` to uid:gid: every directory, file and symbolic link
 * in it (and `path` itself if give_top), without following links or crossing
 * into other file systems. A file with more than one hard link keeps its
 * owner: it is shared with something outside the tree (git's objects, linked
 * from the cache), or was linked in by someone who must not gain it.
 * Blocking: worker threads only. 0 or -errno (the first failure; the walk
 * goes on past it).
 */
int local__chown_tree(const char *path, uid_t uid, gid_t gid, bool give_top);
/* local_check_run_as_access() for any directory; `what` names it in messages. */
int local__check_reach(const char *what, const char *given, const struct local_run_as *ra,
                       struct eph_err *err);

/* --------------------------------------------------------- local_health.c */

/* Starts one probe of s's health check; s->probe is set. 0 or a libuv error. */
int local__probe_start(struct local_svc *s);
/* Forgets the service: the probe finishes quietly. */
void local__probe_abandon(struct local_probe *p);

/* --------------------------------------------------------- local_cgroup.c */
/*
 * Declared in local_cgroup.h (included above). Where the driver calls it:
 *   local_driver_new(), once drv is filled, before local__scan():
 *       rc = local_cgroup_new(cfg->cgroup_root, cfg->instance_id, &drv->cgroup, err);
 *     (0 also when limits cannot be enforced; < 0 only for a bad explicit
 *     cgroup_root: free drv as on a scan failure, with local_cgroup_free());
 *   finish_close_if_idle(), with the other frees: local_cgroup_free(drv->cgroup);
 *   local_apply(), every call, before any local__svc_begin():
 *       local_cgroup_env_setup(env, &plan->limits);
 *   local__env_progress(), once env->groups == NULL and before the directory
 *     is removed (queue_work REMOVE): if (local_cgroup_env_remove(env) ==
 *     EPH_EAGAIN) return; (teardown() calls progress again on every tick);
 *   suspend, optionally, once env->groups == NULL: local_cgroup_env_kill(env)
 *     (daemons that left their process group would live on otherwise);
 *   local_svc.c, local__svc_on_exit() after describe_exit() fills s->reason
 *     (and setup_exited() likewise for its reason):
 *       local_cgroup_oom_killed(s->env, known, exit_status, term_signal,
 *                               s->reason, sizeof(s->reason));
 *   the ops table: .usage = local_usage.
 * local__spawn() (local_proc.c) moves each new group into the env's cgroup.
 */

#endif
