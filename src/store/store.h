/*
 * store/store.h - the only SQL in the tree: projects, environments (spec and
 * status apart), their services, users, their sessions and API tokens, and
 * the event log, in one SQLite database in WAL mode.
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
 * commit, owner, visibility, template_yaml, params, expires_at_ms, what was
 * asked about sleep and limits (sleep_after_s, keep, schedule_awake,
 * schedule_tz, wake_outside_hours, limit_*; NULL text is ""), and its
 * services with their names and ports. Sets env->id, created_at_ms, phase
 * (pending), desired (running), phase_at_ms, and clears reason, ready_at_ms,
 * links_since_ms, the sleep state (last activity, slept/woke at, cause,
 * reason: 0 and "") and the services' observed fields (state pending), as
 * recorded; on failure env is left unchanged. EPH_ECONFLICT "environment 'fx' already exists" if a
 * not-deleted environment has the name; EPH_EINVAL for a service or parameter
 * without a name or named twice, a sleep_after_s below -1, a
 * wake_outside_hours other than -1, 0, 1, or a negative limit. Event
 * "env.create" ("project shop at main (0123abc)").
 */
int store_env_create(struct store *st, struct env *env, const struct store_actor *actor,
                     struct eph_err *err);

/* The not-deleted environment named `name` with its services; EPH_ENOTFOUND
 * "environment 'fx' not found". By id, deleted ones too ("environment 42 not found").
 * A record with a phase, desired state or visibility this build cannot name is
 * refused with EPH_ESTORE. */
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

/* Sets who sees it. Event "env.visibility", detail "team -> private"; setting
 * the visibility it has is a no-op without event. Leaving VIS_LINK withdraws
 * every share link made so far: links_since_ms becomes now (wall clock), and
 * stays when it becomes link again. EPH_ENOTFOUND. */
int store_env_set_visibility(struct store *st, int64_t id, enum visibility vis,
                             const struct store_actor *actor, struct eph_err *err);

/* Counts the environments that are live: neither deleted nor being deleted
 * (phase deleting, or desired deleted), of `owner` only unless it is NULL.
 * For quotas: an environment on its way out no longer counts. */
int store_env_count_live(struct store *st, const char *owner, int64_t *n, struct eph_err *err);

/*
 * Records an observed phase and reason (NULL: none). A no-op without event if
 * both are unchanged; otherwise event "env.phase" by "system", detail
 * "starting -> ready" (plus ": reason"). Sets ready_at_ms on the first ready,
 * slept_at_ms (now) on entering SLEEPING and woke_at_ms (now) on leaving it
 * for anything but deleting or deleted.
 */
int store_env_set_phase(struct store *st, int64_t id, enum env_phase phase, const char *reason,
                        struct eph_err *err);

/*
 * Sleep or wake: sets desired to ENV_WANT_ASLEEP (asleep) or ENV_WANT_RUNNING,
 * sleep_cause to `cause` ("idle", "schedule", "manual"; "" when waking
 * whatever is passed) and transition_reason to `reason`, with event
 * "env.sleep" or "env.wake" whose detail is `reason` ("idle for 30m (last:
 * request web)", "request web"). Recorded, with its event, even if unchanged:
 * callers decide. EPH_ECONFLICT "environment 'fx' is being deleted" once
 * desired is deleted (a wake never undoes a deletion); EPH_ENOTFOUND.
 */
int store_env_set_sleep(struct store *st, int64_t id, bool asleep, const char *cause,
                        const char *reason, const struct store_actor *actor, struct eph_err *err);

/* Sets keep. Event "env.keep", detail "keep on" / "keep off"; setting the
 * value it has is a no-op without event. EPH_ENOTFOUND. */
int store_env_set_keep(struct store *st, int64_t id, bool keep, const struct store_actor *actor,
                       struct eph_err *err);

/* Persists the last activity (wall clock, and what it was: "request web").
 * No event, one statement: cheap, but still a write; the reconciler calls it
 * at most every 10 s per environment. EPH_ENOTFOUND. */
int store_env_set_activity(struct store *st, int64_t id, int64_t at_ms, const char *what,
                           struct eph_err *err);

/* Counts the live environments (as store_env_count_live) that are kept, of
 * `owner` only unless it is NULL: for the keep quota. */
int store_env_count_kept(struct store *st, const char *owner, int64_t *n, struct eph_err *err);

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

/*
 * A token acts for a user with at most its own role (the lower of the two
 * counts). Revoked tokens keep their rows for the audit log but are never
 * found, listed or touched again.
 */
struct store_token {
    int64_t id;
    char *name;            /* "admin", "ci"; not unique */
    char *hash;            /* hex SHA-256 of the token (never the token) */
    char *role;            /* "admin", "member", "viewer": the most it may do */
    char *user;            /* the user it acts for */
    int64_t created_at_ms;
    int64_t expires_at_ms; /* 0: never */
    int64_t last_used_ms;  /* 0: never used */
    int64_t revoked_at_ms; /* 0: live */
};
void store_token_free(struct store_token *t);
void store_token_list_free(struct store_token **ts, size_t n);

/* Stores a token by its hash (hex SHA-256) for user `user`; the token itself
 * is never stored. Event "token.create" on "token/<name>", detail "user alice,
 * role member" (", expires <time>" if it does). EPH_ENOTFOUND "user 'x' not
 * found" if there is no such user, EPH_ECONFLICT if the hash is stored
 * already. `id_out` may be NULL. */
int store_token_add(struct store *st, const char *name, const char *hash_hex, const char *role,
                    const char *user, int64_t expires_at_ms, const struct store_actor *actor,
                    int64_t *id_out, struct eph_err *err);
/* Finds a live token by hash; EPH_ENOTFOUND for unknown, expired and revoked
 * ones alike. The caller frees *out with store_token_free(). */
int store_token_find(struct store *st, const char *hash_hex, struct store_token **out,
                     struct eph_err *err);
/* The token with id `id`, revoked or expired ones too (the record says so);
 * EPH_ENOTFOUND "token 7 not found". */
int store_token_get(struct store *st, int64_t id, struct store_token **out, struct eph_err *err);
/* The tokens not revoked (expired ones too), of `user` only unless it is
 * NULL, by id. *out is an array of *n records (store_token_list_free). */
int store_token_list(struct store *st, const char *user, struct store_token ***out, size_t *n,
                     struct eph_err *err);
/* Revokes a live token: it is kept, with revoked_at_ms now, and never found
 * again. Event "token.revoke" on "token/<name>", detail "user alice".
 * EPH_ENOTFOUND "token 7 not found" if no live token has that id. */
int store_token_revoke(struct store *st, int64_t id, const struct store_actor *actor,
                       struct eph_err *err);
/* Records use; written at most once a minute per token by the caller. No event.
 * EPH_ENOTFOUND if no token has that id. */
int store_token_touch(struct store *st, int64_t id, int64_t at_ms, struct eph_err *err);
/* Number of tokens ever stored, revoked ones too (0 only at first start). */
int store_token_count(struct store *st, int64_t *n, struct eph_err *err);

/* ------------------------------------------------------------- users */

struct user {
    int64_t id;
    char *name;            /* unique; what events, owners and tokens name */
    char *email;           /* "" if unknown */
    char *role;            /* "admin", "member", "viewer" (role_name()) */
    char *provider;        /* "local", or the name of an OIDC provider */
    char *subject;         /* the provider's id of the person; "" for local users */
    char *password_hash;   /* argon2id PHC string; NULL unless a local user has a password */
    int64_t created_at_ms;
    int64_t last_login_ms; /* 0: never signed in */
};
void user_free(struct user *u); /* NULL is fine */
void user_list_free(struct user **us, size_t n);

/*
 * Adds a user from u's name, email (NULL: ""), role, provider, subject
 * (NULL: "") and password_hash; sets u->id and u->created_at_ms (on failure
 * u is left unchanged). EPH_EINVAL for a missing name or provider or a role
 * role_parse() refuses; EPH_ECONFLICT "user 'x' already exists", or
 * "oidc identity '1234' already belongs to user 'x'" for a (provider,
 * subject) taken. Event "user.add" on "user/<name>", detail "role member,
 * provider local" (never the hash).
 */
int store_user_add(struct store *st, struct user *u, const struct store_actor *actor,
                   struct eph_err *err);
/* EPH_ENOTFOUND "user 'x' not found". The caller owns *out (user_free). */
int store_user_get(struct store *st, const char *name, struct user **out, struct eph_err *err);
/* The user a provider knows by `subject`; EPH_ENOTFOUND "no user has oidc
 * identity '1234'" (always for an empty subject). */
int store_user_find_identity(struct store *st, const char *provider, const char *subject,
                             struct user **out, struct eph_err *err);
/* By name. *out is an array of *n records (user_list_free). */
int store_user_list(struct store *st, struct user ***out, size_t *n, struct eph_err *err);
/* Changes the role (EPH_EINVAL if role_parse() refuses it). Event "user.role",
 * detail "member -> admin"; setting the role the user has is a no-op without
 * event. EPH_ENOTFOUND. */
int store_user_set_role(struct store *st, const char *name, const char *role,
                        const struct store_actor *actor, struct eph_err *err);
/* Records the email the provider gave (NULL: ""). No event. EPH_ENOTFOUND. */
int store_user_set_email(struct store *st, const char *name, const char *email,
                         struct eph_err *err);
/* Replaces the password hash; NULL removes the password. Event
 * "user.password", detail "password changed" ("password removed"), never the
 * hash. EPH_ENOTFOUND. */
int store_user_set_password(struct store *st, const char *name, const char *password_hash,
                            const struct store_actor *actor, struct eph_err *err);
/* Records a sign-in time. No event (sessions have their own). EPH_ENOTFOUND. */
int store_user_touch_login(struct store *st, const char *name, int64_t at_ms,
                           struct eph_err *err);
/* Removes a user in one transaction: deletes the user and its sessions and
 * revokes its live tokens (revoked_at_ms now; the rows stay). Event
 * "user.remove", detail "2 sessions ended, 1 token revoked". EPH_ENOTFOUND. */
int store_user_remove(struct store *st, const char *name, const struct store_actor *actor,
                      struct eph_err *err);

/* ------------------------------------------------------------- sessions */

/* A browser session. Expiry and idleness are the caller's to judge: a
 * session stays stored until removed. */
struct store_session {
    char *id;              /* 32 hex digits; public, names it in events */
    char *secret_hash;     /* hex SHA-256 of the cookie's secret half */
    char *user;            /* user name */
    int64_t created_at_ms;
    int64_t last_seen_ms;  /* written by the caller at most now and then */
    int64_t expires_at_ms; /* absolute end */
    char *source;          /* client address at sign-in, "" if unknown */
};
void store_session_free(struct store_session *s); /* NULL is fine */
void store_session_list_free(struct store_session **ss, size_t n);

/* Stores a session of user s->user (by name; EPH_ENOTFOUND "user 'x' not
 * found"). A NULL source is "". Event "user.signin" on "user/<name>", detail
 * "session 0123abcd" (the first 8 of the id). EPH_ECONFLICT if the id is taken. */
int store_session_add(struct store *st, const struct store_session *s,
                      const struct store_actor *actor, struct eph_err *err);
/* Deletes a session. `action` names the event ("user.signout",
 * "session.expire"; actor NULL for the system), on its user's target,
 * detail "session 0123abcd". EPH_ENOTFOUND "session 0123abcd not found". */
int store_session_remove(struct store *st, const char *id, const struct store_actor *actor,
                         const char *action, struct eph_err *err);
/* Every stored session with its user's name, oldest first. *out is an array of
 * *n records (store_session_list_free). */
int store_session_list(struct store *st, struct store_session ***out, size_t *n,
                       struct eph_err *err);
/* Records use. No event; an unknown id is not an error (a session removed
 * meanwhile), so this returns 0 or a store error. */
int store_session_touch(struct store *st, const char *id, int64_t last_seen_ms,
                        struct eph_err *err);

#endif
