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
    enum env_phase phase;                /* as just recorded */
    const char *reason;                  /* NULL if none */
    const struct rec_svc_view *services; /* in template order */
    size_t n_services;
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
