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

/* Path of a service's log file for the API (free()); the file may not exist. */
char *rec_log_path(struct reconciler *rec, const struct env *env, const char *service);

/* Stops the timer; calls done(arg) once its handles are closed, then frees. */
void rec_close(struct reconciler *rec, void (*done)(void *arg), void *arg);

#endif
