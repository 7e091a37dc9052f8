/*
 * store/store_int.h - what the store's own files share, and nothing outside
 * src/store/ includes: the schema migrator (schema.c) that store.c runs at
 * open, and the statement cache, transactions and row helpers of store.c
 * that store_users.c (users and sessions) uses too.
 */
#ifndef EPH_STORE_STORE_INT_H
#define EPH_STORE_STORE_INT_H

#include <sqlite3.h>
#include <stddef.h>

#include "store/store.h"
#include "util/err.h"

/* ------------------------------------------------------------- schema.c */

/* The schema version this build writes: the last migration step's. */
int store__schema_latest(void);

/*
 * Brings the database `db` (opened from `path`, named in messages) to the
 * latest schema version, one step per transaction, each step bumping
 * PRAGMA user_version in its own transaction. Sets *version_out to the
 * version reached. Returns 0, or EPH_ESTORE (also for a database written by
 * a newer eph, which is left untouched).
 */
int store__migrate(sqlite3 *db, const char *path, int *version_out, struct eph_err *err);

/* ------------------------------------------------------------- store.c, for store_users.c */

/*
 * The statements of store_users.c. The handle caches them beside store.c's
 * own (prepared on first use, finalized by store_close()); their SQL is in
 * store_users.c, next to the code that binds them.
 */
enum store__users_stmt {
    SU_USER_INSERT,
    SU_USER_GET,
    SU_USER_BY_IDENTITY,
    SU_USER_LIST,
    SU_USER_SET_ROLE,
    SU_USER_SET_EMAIL,
    SU_USER_SET_PASSWORD,
    SU_USER_TOUCH_LOGIN,
    SU_USER_DELETE,
    SU_SESSIONS_DELETE_OF_USER,
    SU_TOKENS_REVOKE_OF_USER,
    SU_SESSION_INSERT,
    SU_SESSION_USER,
    SU_SESSION_DELETE,
    SU_SESSION_LIST,
    SU_SESSION_TOUCH,
    SU_COUNT
};

/* The handle's connection (for sqlite3_changes() and the last rowid). */
sqlite3 *store__db(struct store *st);

/*
 * Statement `id` of store_users.c: prepared from `sql` on first use, then the
 * same one until store_close(). NULL with *err set if preparing fails.
 * Release it with store__release() before returning.
 */
sqlite3_stmt *store__users_stmt(struct store *st, enum store__users_stmt id, const char *sql,
                                struct eph_err *err);

/* Resets a statement and drops its bindings; NULL is fine. A statement left
 * unreset holds a read transaction open and stalls WAL checkpoints. */
void store__release(sqlite3_stmt *s);

/* Binds a string without copying (it must live until store__release()); NULL
 * binds SQL NULL. Returns the SQLite result code. */
int store__bind_str(sqlite3_stmt *s, int i, const char *v);

/* A copy of a text column (free()), NULL for SQL NULL. */
char *store__col_str(sqlite3_stmt *s, int i);

/* A text column that is never NULL in our schema, or "" if it is anyway;
 * borrowed until the statement steps or is released. */
const char *store__col_text(sqlite3_stmt *s, int i);

/* Makes room for element `n` of an array that grows by doubling (the
 * capacity is implied by n). Returns the array, perhaps moved. */
void *store__grow(void *arr, size_t n, size_t elem_size);

/* Turns the connection's last SQLite error into EPH_ESTORE "store: <what>: <why>". */
int store__db_error(struct store *st, const char *what, struct eph_err *err);

/* BEGIN IMMEDIATE and COMMIT; 0 or EPH_ESTORE. rollback undoes the open
 * transaction if there is one (a failed COMMIT can leave one open). */
int store__tx_begin(struct store *st, struct eph_err *err);
int store__tx_commit(struct store *st, struct eph_err *err);
void store__tx_rollback(struct store *st);

/* Appends an event inside the caller's transaction. NULL actor: the system. */
int store__event_insert(struct store *st, const struct store_actor *actor, const char *action,
                        const char *target, const char *detail, struct eph_err *err);

#endif
