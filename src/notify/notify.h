/*
 * notify/notify.h - event notifications: every event the store records is
 * POSTed to each configured sink (core/auth_config.h, `notify:`), at least
 * once, in id order, without ever blocking the control loop.
 *
 * Delivery. Each sink has a cursor: the id of the last event delivered to
 * it (or skipped because its patterns do not want it), kept in the store's
 * meta table under "notify.<sink name>.cursor". The cursor moves only after
 * the receiver answered 2xx, so a crash, a restart or a receiver that is
 * down means a later delivery, never a lost one; a receiver may see an
 * event twice (X-Ephemera-Delivery tells it which). A failed POST
 * (connection error, timeout, non-2xx) is retried, for the same event, after
 * 1 s, 2 s, 4 s ... at most 60 s apart, for as long as it takes: events
 * behind it wait, so each sink sees them in order.
 *
 * First start with a sink: when it has no cursor yet, its cursor is set to
 * the newest event id at that moment. Events from before are not replayed;
 * everything recorded afterwards is delivered. (A sink renamed gets a new
 * cursor; a sink removed from the config and added back later resumes from
 * its old cursor and delivers what happened meanwhile.)
 *
 * Bodies. slack: {"text": "alice created environment fx (project shop at
 * main (abc1234)) from 127.0.0.1"}, one sentence per event. webhook: the
 * event as JSON, {"id": 42, "at": "2026-11-22T10:04:05Z", "at_ms": ...,
 * "actor", "source", "action", "target", "detail"}, with the headers
 *   Content-Type: application/json
 *   X-Ephemera-Event: env.create
 *   X-Ephemera-Delivery: 42                (the event id)
 *   X-Ephemera-Signature: sha256=<lower-case hex HMAC-SHA256(secret, body)>
 * computed over the exact bytes of the body.
 *
 * Threads. All calls are made on the control loop, which owns the store.
 * Each sink has at most one POST in flight; it runs on a thread of the
 * sink's own with libcurl: 5 s to connect, 10 s in all, no proxy, no
 * redirects followed. Not on libuv's shared pool: receivers that accept and
 * never answer would hold its threads, and the API's work there (creating
 * environments, sign-ins) would wait behind them.
 * Failures are logged (warn) with the sink's name, the status or curl's
 * error and the scheme, host and port of its URL only: a URL's path or
 * query may itself be the secret (Slack's are), and secrets are never logged.
 */
#ifndef EPH_NOTIFY_NOTIFY_H
#define EPH_NOTIFY_NOTIFY_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/auth_config.h"
#include "store/store.h"
#include "util/err.h"

/* How many events one store read returns; a sink skips unwanted ones a batch at a time. */
#define NOTIFY_BATCH 50
/* The periodic look at the event log, besides notifier_kick(). */
#define NOTIFY_TICK_MS 1000
/* Backoff after a failed POST: doubles from the base to the ceiling. */
#define NOTIFY_BACKOFF_BASE_MS 1000
#define NOTIFY_BACKOFF_MAX_MS 60000
/* libcurl's limits for one POST. */
#define NOTIFY_CONNECT_TIMEOUT_MS 5000
#define NOTIFY_TIMEOUT_MS 10000

struct notifier;

/*
 * Starts delivering events to `sinks` (n_sinks of them; 0 is fine and does
 * nothing): reads or creates each sink's cursor, starts the periodic timer
 * and looks at once. The sinks are copied: the caller may release its
 * auth_config afterwards. `loop` is the control loop; `st` is used on it
 * only and must stay open until notifier_close() has called back. Returns
 * 0 and *out, or EPH_ESTORE (a cursor that cannot be read or created, or
 * holds something other than an event id) or EPH_EINTERNAL (a sink's
 * thread cannot be started) with a message in *err.
 */
int notifier_new(uv_loop_t *loop, struct store *st, const struct notify_sink_cfg *sinks,
                 size_t n_sinks, struct notifier **out, struct eph_err *err);

/*
 * Events were appended: look soon (on the next loop turn; calls before then
 * are coalesced into one look). Without kicks the notifier still looks every
 * NOTIFY_TICK_MS. A sink waiting out a backoff is not hurried by a kick.
 */
void notifier_kick(struct notifier *n);

/*
 * For tests: the backoff after a failed POST starts at base_ms and doubles up
 * to max_ms (defaults NOTIFY_BACKOFF_BASE_MS, NOTIFY_BACKOFF_MAX_MS). Applies
 * to the failures that follow.
 */
void notifier_set_backoff(struct notifier *n, int64_t base_ms, int64_t max_ms);

/*
 * Stops the timers, waits for the POSTs in flight to end (each has its
 * NOTIFY_TIMEOUT_MS; one answered 2xx still moves its cursor), joins the
 * sinks' threads, closes the handles, frees the notifier and then calls
 * done(arg) on the loop. Call it once; `n` is invalid once done is called.
 * done may be NULL.
 */
void notifier_close(struct notifier *n, void (*done)(void *arg), void *arg);

#endif
