/*
 * store/store.h - the only SQL in the tree: projects, environments (spec and
 * status apart), their services, API tokens and the event log, in one SQLite
 * database in WAL mode.
 *
 * Every mutation is one transaction and appends its event in the same
 * transaction, so a crash loses either both or neither. The schema is
 * versioned (PRAGMA user_version) and migrated forward at open.
 *
 * Control loop only: a store handle is used by one thread. Calls are short
 * (indexed lookups on a local file); nothing here waits on the network.
 * Every function that returns records gives the caller ownership.
 */
#ifndef EPH_STORE_STORE_H
#define EPH_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/env.h"
#include "util/err.h"

struct store;

/* Who did something, for the event log. */
struct store_actor {
    const char *name;   /* user or token name, "system" for automatic changes */
    const char *source; /* client address ("127.0.0.1"), "" for the system */
};

/*
 * Opens (creating if needed) the database at `path`, sets WAL mode, a busy
 * timeout and foreign keys, and migrates the schema to the latest version.
 * Returns 0 and *out, or EPH_ESTORE with a message naming the path.
 */
int store_open(const char *path, struct store **out, struct eph_err *err);
void store_close(struct store *st); /* NULL is fine */

/* The schema version after migration (for tests and `eph serve --check`). */
int store_schema_version(struct store *st);

/* ------------------------------------------------------------- meta */

/* Small server-wide values ("instance_id"). *out NULL and EPH_ENOTFOUND if unset.
 * Setting one appends no event. */
int store_meta_get(struct store *st, const char *key, char **out, struct eph_err *err);
int store_meta_set(struct store *st, const char *key, const char *value, struct eph_err *err);

/* ------------------------------------------------------------- projects */

/* Registers a project; EPH_ECONFLICT if the name is taken. Event "project.add"
 * (detail: the repo), created_by is the actor's name. `out` may be NULL. */
int store_project_add(struct store *st, const char *name, const char *repo,
                      const struct store_actor *actor, struct project **out,
                      struct eph_err *err);
/* EPH_ENOTFOUND: "project 'x' not found". */
int store_project_get(struct store *st, const char *name, struct project **out,
                      struct eph_err *err);
/* By name. *out is an array of *n records (project_list_free). */
int store_project_list(struct store *st, struct project ***out, size_t *n, struct eph_err *err);

/* ------------------------------------------------------------- environments */

/*
 * Records a new environment from env's spec fields: name, project, ref,
 * commit, owner, template_yaml, params, expires_at_ms, and its services with
 * their names and ports. Sets env->id, created_at_ms, phase (pending),
 * desired (running), phase_at_ms, and clears reason, ready_at_ms and the
 * services' observed fields (state pending), as recorded; on failure env is
 * left unchanged. EPH_ECONFLICT "environment 'fx' already exists" if a
 * not-deleted environment has the name; EPH_EINVAL for a service or parameter
 * without a name or named twice. Event "env.create" ("project shop, ref main").
 */
int store_env_create(struct store *st, struct env *env, const struct store_actor *actor,
                     struct eph_err *err);

/* The not-deleted environment named `name` with its services; EPH_ENOTFOUND
 * "environment 'fx' not found". By id, deleted ones too ("environment 42 not found"). */
int store_env_get(struct store *st, const char *name, struct env **out, struct eph_err *err);
int store_env_get_by_id(struct store *st, int64_t id, struct env **out, struct eph_err *err);

/* Environments (with services) by creation time (id order); deleted ones only if
 * asked. *out is an array of *n records (env_list_free). */
int store_env_list(struct store *st, bool include_deleted, struct env ***out, size_t *n,
                   struct eph_err *err);

/*
 * Changes what is wanted: ENV_WANT_DELETED for `eph rm` and expiry. `action`
 * and `detail` name the event ("env.delete", "env.expire"). Recorded, with its
 * event, even if unchanged. EPH_ENOTFOUND if no environment has that id.
 */
int store_env_set_desired(struct store *st, int64_t id, enum env_desired desired,
                          const struct store_actor *actor, const char *action,
                          const char *detail, struct eph_err *err);

/* Sets the expiry (extend). Event "env.extend" with `detail`. */
int store_env_set_expiry(struct store *st, int64_t id, int64_t expires_at_ms,
                         const struct store_actor *actor, const char *detail,
                         struct eph_err *err);

/*
 * Records an observed phase and reason (NULL: none). A no-op without event if
 * both are unchanged; otherwise event "env.phase" by "system", detail
 * "starting -> ready" (plus ": reason"). Sets ready_at_ms on the first ready.
 */
int store_env_set_phase(struct store *st, int64_t id, enum env_phase phase, const char *reason,
                        struct eph_err *err);

/* Records the observed fields of one service (state, pid, restarts, reason,
 * started_at_ms) by env id and svc->name. No event (callers add their own).
 * EPH_ENOTFOUND if the environment has no such service. */
int store_svc_update(struct store *st, int64_t env_id, const struct env_svc *svc,
                     struct eph_err *err);

/* Ports held by services of environments that are not deleted (any order; 0s
 * left out). *ports is malloc'd: free() it. */
int store_ports_in_use(struct store *st, int **ports, size_t *n, struct eph_err *err);

/* ------------------------------------------------------------- events */

/* Appends an event in its own transaction. */
int store_event_append(struct store *st, const struct store_actor *actor, const char *action,
                       const char *target, const char *detail, struct eph_err *err);

/*
 * Events with id > after_id, oldest first, at most `limit` (<= 1000), only
 * those of `target` if not NULL. For "the last N", pass after_id -1 and
 * limit N: the newest N are returned, still oldest first. Any negative
 * after_id means "the newest"; a limit above 1000 is cut to 1000, a negative
 * one is EPH_EINVAL. *out is an array of *n records (event_list_free).
 */
int store_event_list(struct store *st, const char *target, int64_t after_id, int limit,
                     struct event ***out, size_t *n, struct eph_err *err);

/* ------------------------------------------------------------- API tokens */

struct store_token {
    int64_t id;
    char *name;            /* "admin", "ci" */
    char *role;            /* "admin", "member", "viewer" */
    int64_t created_at_ms;
    int64_t expires_at_ms; /* 0: never */
    int64_t last_used_ms;  /* 0: never used */
};
void store_token_free(struct store_token *t);

/* Stores a token by its hash (hex SHA-256); the token itself is never stored.
 * Event "token.create" on "token/<name>". EPH_ECONFLICT if the hash is stored
 * already. `id_out` may be NULL. */
int store_token_add(struct store *st, const char *name, const char *hash_hex, const char *role,
                    int64_t expires_at_ms, const struct store_actor *actor, int64_t *id_out,
                    struct eph_err *err);
/* Finds a token by hash; EPH_ENOTFOUND (expired ones too). The caller frees
 * *out with store_token_free(). */
int store_token_find(struct store *st, const char *hash_hex, struct store_token **out,
                     struct eph_err *err);
/* Records use; written at most once a minute per token by the caller. No event.
 * EPH_ENOTFOUND if no token has that id. */
int store_token_touch(struct store *st, int64_t id, int64_t at_ms, struct eph_err *err);
/* Number of tokens (0 at first start). */
int store_token_count(struct store *st, int64_t *n, struct eph_err *err);

#endif
