/*
 * reconciler/reconciler.h - makes what runs follow what is wanted.
 *
 * Level-triggered: on every tick (a timer, or a kick after a change) it loads
 * the live environments from the store, builds each one's plan from its
 * template, lets the driver take the next idempotent steps, and records the
 * observed phase and services. It expires environments past their TTL and
 * finishes deletions. After a crash it simply starts over: the store says
 * what is wanted, the driver finds what still runs.
 *
 * Sleep (docs/sleep.md): each tick, an environment that is not kept goes to
 * sleep when idle for its sleep_after, or when outside its schedule's awake
 * hours (unless woken by hand after they ended); one asleep by schedule wakes
 * when the hours begin; one asleep for delete_after_sleeping is deleted. A
 * sleep suspends its processes (phase sleeping); a wake starts them again
 * (starting, then ready). The effective settings are the environment's, else
 * its template's defaults, else the server's.
 *
 * Control loop only.
 */
#ifndef EPH_RECONCILER_RECONCILER_H
#define EPH_RECONCILER_RECONCILER_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/env.h"
#include "drivers/driver.h"
#include "store/store.h"

struct reconciler;

/* Borrows store, driver and config; they must outlive the reconciler. */
int rec_new(uv_loop_t *loop, struct store *st, struct driver *drv, const struct config *cfg,
            struct reconciler **out, struct eph_err *err);

/* Starts the timer; the first tick runs at once. */
void rec_start(struct reconciler *rec);

/* Asks for a tick soon (coalesced); safe to call often. */
void rec_kick(struct reconciler *rec);

/* ---- sleep and wake ---- */

/* Activity from the API (an API call naming the environment: "api get", "api
 * logs"): counts against idleness like a request does. Persisted with the
 * next tick's (at most every 10 s). Unknown ids are ignored. */
void rec_note_activity(struct reconciler *rec, int64_t env_id, int64_t at_ms, const char *what);

/* The activity source polled every tick (the gateway, wired by serve.c):
 * fills *out and returns true if it has seen the environment. out->what is
 * borrowed until the next call. */
struct rec_activity {
    int64_t last_ms;  /* wall clock of the last request or end of an exchange */
    int open;         /* exchanges open now: active while > 0 */
    const char *what; /* "request web", "websocket web" */
};
typedef bool rec_activity_cb(void *arg, int64_t env_id, struct rec_activity *out);
void rec_set_activity_source(struct reconciler *rec, rec_activity_cb *cb, void *arg);

/* A request reached an asleep environment (serve.c posts it from a gateway
 * thread to the control loop): wakes it if allowed (its schedule's hours,
 * wake_outside_hours, keep), with event env.wake by "system", reason
 * "request <service>"; otherwise does nothing. */
void rec_wake_on_request(struct reconciler *rec, int64_t env_id, const char *service);

/* Manual sleep and wake for the API, events by `who`. rec_sleep: 0 (also
 * when asleep already, without a new event), EPH_EINVAL "fx is being
 * deleted" or "fx is not running yet (preparing)", EPH_ENOTFOUND, or a store
 * error. rec_wake: always allowed; 0 (also when awake or waking already),
 * EPH_EINVAL "fx is being deleted", EPH_ENOTFOUND, or a store error. */
int rec_sleep(struct reconciler *rec, int64_t env_id, const struct store_actor *who,
              struct eph_err *err);
int rec_wake(struct reconciler *rec, int64_t env_id, const struct store_actor *who,
             struct eph_err *err);

/* What the API shows about sleep. */
struct rec_sleep_info {
    int64_t sleep_after_s; /* effective; -1 never */
    bool keep;
    int64_t idle_ms;       /* 0 unless ready */
    int64_t next_sleep_ms; /* wall clock of the next sleep if nothing happens; 0 none */
    int64_t next_wake_ms;  /* wall clock of the next scheduled wake; 0 none */
    bool wake_allowed;     /* a request would wake it now (were it asleep) */
    char schedule[160];    /* schedule_describe(): "Mon-Fri 08:00-20:00 Europe/Madrid"; "" none */
};
/* Fills *out for environment env_id; false if no live environment has it. */
bool rec_sleep_info(struct reconciler *rec, int64_t env_id, struct rec_sleep_info *out);

/* ---- what runs where, for the gateway's route table ---- */

/* One service of a view: borrowed, valid during the observer call only. */
struct rec_svc_view {
    const char *name;
    const char *upstream_host; /* "127.0.0.1", or the host of an `upstream:` URL */
    int upstream_port;         /* the service's port, or the upstream URL's; 0: none */
    bool expose;               /* false: `expose: false` in the template, no URL */
    enum svc_state state;      /* as just observed; STOPPED while being deleted */
};

/* One environment of a view. */
struct rec_env_view {
    int64_t id;
    const char *name;
    const char *owner;                   /* NULL if none */
    enum visibility visibility;
    int64_t links_since_ms;              /* share links made at or before it are withdrawn */
    enum env_phase phase;                /* as just recorded */
    const char *reason;                  /* NULL if none */
    const struct rec_svc_view *services; /* in template order */
    size_t n_services;
    /* Hold requests for a service that is not routable until it is: asleep and
     * a request may wake it, or waking (desired running after a wake, not yet
     * ready). */
    bool hold_requests;
    /* Asleep and a request may not wake it: the 503 text ("fx is asleep outside
     * office hours (awake Mon-Fri 08:00-20:00 Europe/Madrid)"); NULL otherwise. */
    const char *asleep_message;
};

/*
 * Called at the end of every tick with every environment not yet deleted,
 * oldest first: those being deleted in phase DELETING with every service
 * STOPPED, one whose template cannot be planned with its services as stored.
 * An environment that became deleted in this tick is absent. The views are
 * borrowed for the call. It runs in the same tick as the observations it
 * shows, so a service that just became healthy is in it at once.
 */
typedef void rec_observer_cb(void *arg, const struct rec_env_view *envs, size_t n_envs);

/* Sets the observer (NULL: none). Before rec_start(), or any time after. */
void rec_set_observer(struct reconciler *rec, rec_observer_cb *cb, void *arg);

/* Path of a service's log file for the API (free()); the file may not exist. */
char *rec_log_path(struct reconciler *rec, const struct env *env, const char *service);

/* Stops the timer; calls done(arg) once its handles are closed, then frees. */
void rec_close(struct reconciler *rec, void (*done)(void *arg), void *arg);

#endif
