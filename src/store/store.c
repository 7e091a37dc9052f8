/*
 * store/store.c - the queries behind store.h: one SQLite connection per
 * handle, its prepared statements cached for the handle's life, and every
 * mutation in one transaction together with its event. Users and sessions
 * are in store_users.c, which shares the helpers here (store_int.h).
 *
 * Values only ever reach SQL through bound parameters. The literal 'deleted'
 * in the SQL below is the name of ENV_PHASE_DELETED (checked at open): it has
 * to be a literal so that queries by name can use the partial unique index
 * envs_live_name (WHERE phase != 'deleted').
 */
#include "store/store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/time.h"
#include "util/xmalloc.h"
#define LOG_MOD "store"
#include "util/log.h"

/* How long a statement waits for another connection's lock before failing
   with "database is locked": long enough for a checkpoint or a CLI reader,
   short enough not to stall the control loop noticeably. */
#define STORE_BUSY_TIMEOUT_MS 5000

/* The most events one store_event_list() returns; larger limits are cut. */
#define STORE_EVENT_LIST_MAX 1000

/* ------------------------------------------------------------- statements */

/* Column lists shared by the queries and the row readers below: keep in step. */
#define ENV_COLS                                                                                   \
    "id, name, project, ref, commit_sha, owner, template_yaml, params_json, "                      \
    "created_at_ms, expires_at_ms, desired, phase, reason, phase_at_ms, ready_at_ms, visibility, " \
    "sleep_after_s, keep, schedule_awake, schedule_tz, wake_outside_hours, limit_memory_bytes, "   \
    "limit_cpu_millis, limit_pids, last_activity_ms, last_activity, slept_at_ms, woke_at_ms, "     \
    "sleep_cause, transition_reason, links_since_ms"
#define SVC_COLS "env_id, name, port, state, pid, restarts, reason, started_at_ms"
#define EVENT_COLS "id, at_ms, actor, source, action, target, detail"
#define PROJECT_COLS "id, name, repo, created_by, created_at_ms"
#define TOKEN_COLS                                                                                 \
    "id, name, role, user_name, created_at_ms, expires_at_ms, last_used_ms, revoked_at_ms, hash"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_META_GET,
    ST_META_SET,
    ST_EVENT_INSERT,
    ST_EVENT_AFTER,
    ST_EVENT_AFTER_TARGET,
    ST_EVENT_NEWEST,
    ST_EVENT_NEWEST_TARGET,
    ST_PROJECT_INSERT,
    ST_PROJECT_GET,
    ST_PROJECT_LIST,
    ST_ENV_INSERT,
    ST_ENV_BY_NAME,
    ST_ENV_BY_ID,
    ST_ENV_LIST,
    ST_ENV_STATUS,
    ST_ENV_SET_DESIRED,
    ST_ENV_SET_EXPIRY,
    ST_ENV_SET_PHASE,
    ST_ENV_SET_VISIBILITY,
    ST_ENV_SET_SLEEP,
    ST_ENV_SET_KEEP,
    ST_ENV_SET_ACTIVITY,
    ST_ENV_COUNT_LIVE,
    ST_ENV_COUNT_LIVE_OWNER,
    ST_ENV_COUNT_KEPT,
    ST_ENV_COUNT_KEPT_OWNER,
    ST_SVC_INSERT,
    ST_SVC_OF_ENV,
    ST_SVC_LIST,
    ST_SVC_UPDATE,
    ST_PORTS_IN_USE,
    ST_TOKEN_USER_EXISTS,
    ST_TOKEN_INSERT,
    ST_TOKEN_FIND,
    ST_TOKEN_GET,
    ST_TOKEN_LIST,
    ST_TOKEN_LIST_USER,
    ST_TOKEN_REVOKE,
    ST_TOKEN_TOUCH,
    ST_TOKEN_COUNT,
    ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    /* IMMEDIATE takes the write lock at BEGIN: a deferred transaction that
       reads and then writes can fail with SQLITE_BUSY_SNAPSHOT in WAL mode,
       which the busy timeout does not retry. */
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [ST_META_SET] = "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    [ST_EVENT_INSERT] = "INSERT INTO events (at_ms, actor, source, action, target, detail) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_EVENT_AFTER] = "SELECT " EVENT_COLS " FROM events WHERE id > ?2 ORDER BY id LIMIT ?1",
    [ST_EVENT_AFTER_TARGET] = "SELECT " EVENT_COLS " FROM events "
                              "WHERE target = ?3 AND id > ?2 ORDER BY id LIMIT ?1",
    [ST_EVENT_NEWEST] = "SELECT * FROM (SELECT " EVENT_COLS " FROM events "
                        "ORDER BY id DESC LIMIT ?1) ORDER BY id",
    [ST_EVENT_NEWEST_TARGET] = "SELECT * FROM (SELECT " EVENT_COLS " FROM events "
                               "WHERE target = ?3 ORDER BY id DESC LIMIT ?1) ORDER BY id",
    [ST_PROJECT_INSERT] = "INSERT INTO projects (name, repo, created_by, created_at_ms) "
                          "VALUES (?1, ?2, ?3, ?4)",
    [ST_PROJECT_GET] = "SELECT " PROJECT_COLS " FROM projects WHERE name = ?1",
    [ST_PROJECT_LIST] = "SELECT " PROJECT_COLS " FROM projects ORDER BY name",
    [ST_ENV_INSERT] = "INSERT INTO envs (name, project, ref, commit_sha, owner, template_yaml, "
                      "params_json, created_at_ms, expires_at_ms, desired, phase, reason, "
                      "phase_at_ms, ready_at_ms, visibility, sleep_after_s, keep, "
                      "schedule_awake, schedule_tz, wake_outside_hours, limit_memory_bytes, "
                      "limit_cpu_millis, limit_pids) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?8, 0, ?12, "
                      "?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
    [ST_ENV_BY_NAME] = "SELECT " ENV_COLS " FROM envs WHERE name = ?1 AND phase != 'deleted'",
    [ST_ENV_BY_ID] = "SELECT " ENV_COLS " FROM envs WHERE id = ?1",
    /* Ids grow with creation and, unlike the wall clock, never go back. */
    [ST_ENV_LIST] = "SELECT " ENV_COLS " FROM envs WHERE ?1 OR phase != 'deleted' ORDER BY id",
    [ST_ENV_STATUS] = "SELECT name, phase, reason, ready_at_ms, phase_at_ms, visibility, "
                      "desired, slept_at_ms, woke_at_ms, keep FROM envs WHERE id = ?1",
    [ST_ENV_SET_DESIRED] = "UPDATE envs SET desired = ?2 WHERE id = ?1",
    [ST_ENV_SET_EXPIRY] = "UPDATE envs SET expires_at_ms = ?2 WHERE id = ?1",
    [ST_ENV_SET_PHASE] = "UPDATE envs SET phase = ?2, reason = ?3, phase_at_ms = ?4, "
                         "ready_at_ms = ?5, slept_at_ms = ?6, woke_at_ms = ?7 WHERE id = ?1",
    /* ?3: now when the visibility leaves 'link' (withdrawing its links), else
       0. Never moved back, not even by a wall clock that is: a link withdrawn
       stays withdrawn. */
    [ST_ENV_SET_VISIBILITY] = "UPDATE envs SET visibility = ?2, "
                              "links_since_ms = max(coalesce(links_since_ms, 0), ?3) "
                              "WHERE id = ?1",
    [ST_ENV_SET_SLEEP] = "UPDATE envs SET desired = ?2, sleep_cause = ?3, transition_reason = ?4 "
                         "WHERE id = ?1",
    [ST_ENV_SET_KEEP] = "UPDATE envs SET keep = ?2 WHERE id = ?1",
    [ST_ENV_SET_ACTIVITY] = "UPDATE envs SET last_activity_ms = ?2, last_activity = ?3 "
                            "WHERE id = ?1",
    /* Live: not deleted (the literal, for envs_live_name), not deleting (?1)
       and not wanted deleted (?2); an environment on its way out is no
       longer counted against a quota. */
    [ST_ENV_COUNT_LIVE] = "SELECT count(*) FROM envs WHERE phase != 'deleted' "
                          "AND phase != ?1 AND desired != ?2",
    [ST_ENV_COUNT_LIVE_OWNER] = "SELECT count(*) FROM envs WHERE phase != 'deleted' "
                                "AND phase != ?1 AND desired != ?2 AND owner = ?3",
    /* Kept ones among the live, for the keep quota. */
    [ST_ENV_COUNT_KEPT] = "SELECT count(*) FROM envs WHERE phase != 'deleted' "
                          "AND phase != ?1 AND desired != ?2 AND keep != 0",
    [ST_ENV_COUNT_KEPT_OWNER] = "SELECT count(*) FROM envs WHERE phase != 'deleted' "
                                "AND phase != ?1 AND desired != ?2 AND keep != 0 AND owner = ?3",
    [ST_SVC_INSERT] = "INSERT INTO services (env_id, name, ord, port, state) "
                      "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_SVC_OF_ENV] = "SELECT " SVC_COLS " FROM services WHERE env_id = ?1 ORDER BY ord",
    [ST_SVC_LIST] = "SELECT s.env_id, s.name, s.port, s.state, s.pid, s.restarts, s.reason, "
                    "s.started_at_ms FROM services s JOIN envs e ON e.id = s.env_id "
                    "WHERE ?1 OR e.phase != 'deleted' ORDER BY s.env_id, s.ord",
    [ST_SVC_UPDATE] = "UPDATE services SET state = ?3, pid = ?4, restarts = ?5, reason = ?6, "
                      "started_at_ms = ?7 WHERE env_id = ?1 AND name = ?2",
    [ST_PORTS_IN_USE] = "SELECT s.port FROM services s JOIN envs e ON e.id = s.env_id "
                        "WHERE e.phase != 'deleted' AND s.port != 0",
    [ST_TOKEN_USER_EXISTS] = "SELECT 1 FROM users WHERE name = ?1",
    [ST_TOKEN_INSERT] = "INSERT INTO tokens (name, hash, role, user_name, created_at_ms, "
                        "expires_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_TOKEN_FIND] = "SELECT " TOKEN_COLS " FROM tokens WHERE hash = ?1 AND revoked_at_ms = 0 "
                      "AND (expires_at_ms = 0 OR expires_at_ms >= ?2)",
    [ST_TOKEN_GET] = "SELECT " TOKEN_COLS " FROM tokens WHERE id = ?1",
    [ST_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM tokens WHERE revoked_at_ms = 0 ORDER BY id",
    [ST_TOKEN_LIST_USER] = "SELECT " TOKEN_COLS " FROM tokens "
                           "WHERE revoked_at_ms = 0 AND user_name = ?1 ORDER BY id",
    [ST_TOKEN_REVOKE] = "UPDATE tokens SET revoked_at_ms = ?2 WHERE id = ?1 AND revoked_at_ms = 0",
    [ST_TOKEN_TOUCH] = "UPDATE tokens SET last_used_ms = ?2 WHERE id = ?1",
    [ST_TOKEN_COUNT] = "SELECT count(*) FROM tokens",
};

struct store {
    sqlite3 *db;
    char *path;                          /* as opened, for messages */
    int schema_version;                  /* user_version after migration */
    sqlite3_stmt *stmts[ST_COUNT];       /* prepared on first use, finalized at close */
    sqlite3_stmt *users_stmts[SU_COUNT]; /* store_users.c's, likewise */
};

/* Turns the connection's last SQLite error into EPH_ESTORE "store: <what>: <why>". */
int
store__db_error(struct store *st, const char *what, struct eph_err *err)
{
    return eph_err_set(err, EPH_ESTORE, "store: %s: %s", what, sqlite3_errmsg(st->db));
}

/* The statement in *slot, prepared from `sql` if the slot is still empty. */
static sqlite3_stmt *
cached(struct store *st, sqlite3_stmt **slot, const char *sql, struct eph_err *err)
{
    if (*slot == NULL &&
        sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        eph_err_set(err, EPH_ESTORE, "store: prepare '%.40s': %s", sql, sqlite3_errmsg(st->db));
        return NULL;
    }
    return *slot;
}

/*
 * The cached statement `id`, prepared on first use; NULL with *err set if
 * preparing fails. Release it with store__release() before returning.
 */
static sqlite3_stmt *
stmt(struct store *st, enum stmt_id id, struct eph_err *err)
{
    return cached(st, &st->stmts[id], stmt_sql[id], err);
}

sqlite3_stmt *
store__users_stmt(struct store *st, enum store__users_stmt id, const char *sql, struct eph_err *err)
{
    return cached(st, &st->users_stmts[id], sql, err);
}

sqlite3 *
store__db(struct store *st)
{
    return st->db;
}

/*
 * Resets a statement for its next use and drops its bindings, which may point
 * at the caller's strings (SQLITE_STATIC). A statement left unreset would
 * hold a read transaction open and stall WAL checkpoints. NULL is fine.
 */
void
store__release(sqlite3_stmt *s)
{
    if (s != NULL) {
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
    }
}

/*
 * Binds a string without copying (it must live until store__release()); NULL binds
 * SQL NULL. Returns the SQLite result code.
 */
int
store__bind_str(sqlite3_stmt *s, int i, const char *v)
{
    return v ? sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(s, i);
}

/* A copy of a text column, NULL for SQL NULL. */
char *
store__col_str(sqlite3_stmt *s, int i)
{
    return xstrdup((const char *)sqlite3_column_text(s, i));
}

/* A text column that is never NULL in our schema, or "" if it is anyway. */
const char *
store__col_text(sqlite3_stmt *s, int i)
{
    const char *v = (const char *)sqlite3_column_text(s, i);

    return v ? v : "";
}

/* Runs a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK). */
static int
exec_stmt(struct store *st, enum stmt_id id, const char *what, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, id, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, what, err);
    store__release(s);
    return rc;
}

/*
 * Makes room for element `n` of an array that grows by doubling. The capacity
 * is implied by n (the next power of two), so no field has to remember it.
 */
void *
store__grow(void *arr, size_t n, size_t elem_size)
{
    if (n == 0 || (n & (n - 1)) == 0)
        return xrealloc(arr, (n ? n * 2 : 1) * elem_size);
    return arr;
}

/* Strings compare equal if both are NULL or both hold the same text. */
static bool
str_same(const char *a, const char *b)
{
    return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* ------------------------------------------------------------- transactions */

int
store__tx_begin(struct store *st, struct eph_err *err)
{
    return exec_stmt(st, ST_BEGIN, "begin transaction", err);
}

int
store__tx_commit(struct store *st, struct eph_err *err)
{
    return exec_stmt(st, ST_COMMIT, "commit", err);
}

/* Undoes the open transaction, if any: a failed COMMIT can leave one open. */
void
store__tx_rollback(struct store *st)
{
    if (!sqlite3_get_autocommit(st->db))
        exec_stmt(st, ST_ROLLBACK, "rollback", NULL);
}

/* Appends an event inside the caller's transaction. NULL actor: the system. */
int
store__event_insert(struct store *st, const struct store_actor *actor, const char *action,
                    const char *target, const char *detail, struct eph_err *err)
{
    const char *name = actor && actor->name ? actor->name : "system";
    const char *source = actor && actor->source ? actor->source : "";
    sqlite3_stmt *s = stmt(st, ST_EVENT_INSERT, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, time_wall_ms()) || store__bind_str(s, 2, name) ||
        store__bind_str(s, 3, source) || store__bind_str(s, 4, action ? action : "") ||
        store__bind_str(s, 5, target ? target : "") ||
        store__bind_str(s, 6, detail ? detail : "") || sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "append event", err);
    store__release(s);
    return rc;
}

/* ------------------------------------------------------------- open and close */

/*
 * Creates the database file with mode 0600 if it does not exist: it holds
 * token hashes and templates. SQLite gives its -wal and -shm files the
 * database's permissions. URIs and in-memory databases are left to SQLite.
 */
static int
create_private(const char *path, struct eph_err *err)
{
    int fd;

    if (path[0] == '\0' || strcmp(path, ":memory:") == 0 || strncmp(path, "file:", 5) == 0)
        return 0;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return eph_err_set(err, EPH_ESTORE, "store: cannot open '%s': %s", path, strerror(errno));
    close(fd);
    return 0;
}

/*
 * WAL lets readers (the CLI's sqlite3, backups) work beside the writer, and
 * with synchronous=NORMAL a commit does not fsync: a committed transaction
 * survives a crash of the process, and the last ones may be lost (never torn)
 * if the machine loses power. Foreign keys are off by default per connection.
 */
static int
set_pragmas(struct store *st, struct eph_err *err)
{
    sqlite3_stmt *s = NULL;
    const char *mode;
    int rc = 0;

    if (sqlite3_prepare_v2(st->db, "PRAGMA journal_mode = WAL", -1, &s, NULL) != SQLITE_OK ||
        sqlite3_step(s) != SQLITE_ROW) {
        rc = eph_err_set(err, EPH_ESTORE, "store: cannot open '%s': %s", st->path,
                         sqlite3_errmsg(st->db));
        goto out;
    }
    mode = store__col_text(s, 0);
    if (strcmp(mode, "wal") != 0 && strcmp(mode, "memory") != 0) {
        rc = eph_err_set(err, EPH_ESTORE, "store: '%s' cannot use WAL mode (journal mode is %s)",
                         st->path, mode);
        goto out;
    }
    if (sqlite3_exec(st->db, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON", NULL, NULL,
                     NULL) != SQLITE_OK)
        rc = eph_err_set(err, EPH_ESTORE, "store: cannot configure '%s': %s", st->path,
                         sqlite3_errmsg(st->db));
out:
    sqlite3_finalize(s);
    return rc;
}

int
store_open(const char *path, struct store **out, struct eph_err *err)
{
    struct store *st = xcalloc(1, sizeof(*st));
    int rc;

    /* The SQL compares phases with this literal (see the top of the file). */
    EPH_ASSERT(strcmp(env_phase_name(ENV_PHASE_DELETED), "deleted") == 0);
    *out = NULL;
    st->path = xstrdup(path);
    rc = create_private(path, err);
    if (rc < 0)
        goto out;
    if (sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        rc = eph_err_set(err, EPH_ESTORE, "store: cannot open '%s': %s", path,
                         sqlite3_errmsg(st->db));
        goto out;
    }
    /* Extended codes tell a unique-name conflict from other constraints. */
    sqlite3_extended_result_codes(st->db, 1);
    sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
    rc = set_pragmas(st, err);
    if (rc == 0)
        rc = store__migrate(st->db, path, &st->schema_version, err);
    if (rc < 0)
        goto out;
    log_debug("store opened", "path=%s schema=%d", log_q(path), st->schema_version);
    *out = st;
    st = NULL;
out:
    store_close(st);
    return rc;
}

void
store_close(struct store *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(st->stmts[i]);
    for (size_t i = 0; i < SU_COUNT; i++)
        sqlite3_finalize(st->users_stmts[i]);
    if (st->db != NULL) {
        /* Cheap, and keeps the planner's statistics fresh (SQLite's advice). */
        if (st->schema_version > 0)
            sqlite3_exec(st->db, "PRAGMA optimize", NULL, NULL, NULL);
        if (sqlite3_close(st->db) != SQLITE_OK)
            log_warn("close failed", "path=%s err=%s", log_q(st->path),
                     log_q(sqlite3_errmsg(st->db)));
    }
    free(st->path);
    free(st);
}

int
store_schema_version(struct store *st)
{
    return st->schema_version;
}

/* ------------------------------------------------------------- meta */

int
store_meta_get(struct store *st, const char *key, char **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_META_GET, err);
    int rc = 0;
    int step;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, key) != SQLITE_OK) {
        rc = store__db_error(st, "get meta", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        *out = store__col_str(s, 0);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "meta key '%s' not set", key);
    else
        rc = store__db_error(st, "get meta", err);
out:
    store__release(s);
    return rc;
}

int
store_meta_set(struct store *st, const char *key, const char *value, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_META_SET, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, key) || store__bind_str(s, 2, value) ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "set meta", err);
    store__release(s);
    return rc;
}

/* ------------------------------------------------------------- projects */

static struct project *
project_from_row(sqlite3_stmt *s)
{
    struct project *p = project_new();

    p->id = sqlite3_column_int64(s, 0);
    p->name = store__col_str(s, 1);
    p->repo = store__col_str(s, 2);
    p->created_by = store__col_str(s, 3);
    p->created_at_ms = sqlite3_column_int64(s, 4);
    return p;
}

int
store_project_add(struct store *st, const char *name, const char *repo,
                  const struct store_actor *actor, struct project **out, struct eph_err *err)
{
    const char *by = actor && actor->name ? actor->name : "system";
    int64_t now = time_wall_ms();
    char *target = xasprintf("project/%s", name ? name : "");
    sqlite3_stmt *s = NULL;
    struct project *p = NULL;
    int64_t id = 0;
    int rc;

    if (out != NULL)
        *out = NULL;
    rc = store__tx_begin(st, err);
    if (rc == 0) {
        int step;

        s = stmt(st, ST_PROJECT_INSERT, err);
        if (s == NULL) {
            rc = EPH_ESTORE;
        } else if (store__bind_str(s, 1, name) || store__bind_str(s, 2, repo) ||
                   store__bind_str(s, 3, by) || sqlite3_bind_int64(s, 4, now)) {
            rc = store__db_error(st, "add project", err);
        } else {
            step = sqlite3_step(s);
            if (step == SQLITE_CONSTRAINT_UNIQUE)
                rc = eph_err_set(err, EPH_ECONFLICT, "project '%s' already exists", name);
            else if (step != SQLITE_DONE)
                rc = store__db_error(st, "add project", err);
            id = sqlite3_last_insert_rowid(st->db);
        }
        store__release(s);
    }
    if (rc == 0)
        rc = store__event_insert(st, actor, "project.add", target, repo, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0) {
        store__tx_rollback(st);
        goto out;
    }
    if (out != NULL) {
        p = project_new();
        p->id = id;
        p->name = xstrdup(name);
        p->repo = xstrdup(repo);
        p->created_by = xstrdup(by);
        p->created_at_ms = now;
        *out = p;
    }
out:
    free(target);
    return rc;
}

int
store_project_get(struct store *st, const char *name, struct project **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_PROJECT_GET, err);
    int rc = 0;
    int step;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name) != SQLITE_OK) {
        rc = store__db_error(st, "get project", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        *out = project_from_row(s);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "project '%s' not found", name);
    else
        rc = store__db_error(st, "get project", err);
out:
    store__release(s);
    return rc;
}

int
store_project_list(struct store *st, struct project ***out, size_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_PROJECT_LIST, err);
    struct project **ps = NULL;
    size_t count = 0;
    int rc = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        ps = store__grow(ps, count, sizeof(*ps));
        ps[count++] = project_from_row(s);
    }
    store__release(s);
    if (step != SQLITE_DONE) {
        rc = store__db_error(st, "list projects", err);
        project_list_free(ps, count);
        return rc;
    }
    *out = ps;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------- environments */

/*
 * Encodes env->params as one JSON object {"name": "value"} (insertion order
 * kept; a NULL value as null) into *out (free()). EPH_EINVAL for a parameter
 * without a name, one given twice, or text that is not UTF-8.
 */
static int
params_to_json(const struct env *env, char **out, struct eph_err *err)
{
    json_t *obj = json_object();
    int rc = 0;

    *out = NULL;
    for (size_t i = 0; i < env->n_params && rc == 0; i++) {
        const struct env_param *p = &env->params[i];
        json_t *v;

        if (p->name == NULL) {
            rc = eph_err_set(err, EPH_EINVAL, "parameter %zu has no name", i + 1);
        } else if (json_object_get(obj, p->name) != NULL) {
            rc = eph_err_set(err, EPH_EINVAL, "parameter '%s' given twice", p->name);
        } else {
            v = p->value ? json_string(p->value) : json_null();
            if (v == NULL || json_object_set_new(obj, p->name, v) < 0)
                rc = eph_err_set(err, EPH_EINVAL, "parameter '%s' is not valid UTF-8", p->name);
        }
    }
    if (rc == 0)
        *out = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    return rc;
}

/* Decodes params_json into env->params; EPH_ESTORE if the column is damaged. */
static int
params_from_json(const char *text, struct env *env, struct eph_err *err)
{
    json_error_t jerr;
    json_t *obj = json_loads(text ? text : "{}", 0, &jerr);
    const char *key;
    json_t *v;
    int rc = 0;

    if (!json_is_object(obj)) {
        rc = eph_err_set(err, EPH_ESTORE, "store: environment %" PRId64 ": bad params_json",
                         env->id);
        goto out;
    }
    env->params = xcalloc(json_object_size(obj), sizeof(*env->params));
    json_object_foreach(obj, key, v)
    {
        struct env_param *p = &env->params[env->n_params];

        if (!json_is_string(v) && !json_is_null(v)) {
            rc = eph_err_set(err, EPH_ESTORE,
                             "store: environment %" PRId64 ": parameter '%s' is not a string",
                             env->id, key);
            goto out;
        }
        p->name = xstrdup(key);
        p->value = json_is_string(v) ? xstrdup(json_string_value(v)) : NULL;
        env->n_params++;
    }
out:
    json_decref(obj);
    return rc;
}

/* Reads one row of ENV_COLS (services are loaded apart). */
static int
env_from_row(sqlite3_stmt *s, struct env **out, struct eph_err *err)
{
    struct env *env = env_new();
    const char *desired = store__col_text(s, 10);
    const char *phase = store__col_text(s, 11);
    const char *visibility = store__col_text(s, 15);
    int rc = 0;

    *out = NULL;
    env->id = sqlite3_column_int64(s, 0);
    env->name = store__col_str(s, 1);
    env->project = store__col_str(s, 2);
    env->ref = store__col_str(s, 3);
    env->commit = store__col_str(s, 4);
    env->owner = store__col_str(s, 5);
    env->template_yaml = store__col_str(s, 6);
    env->created_at_ms = sqlite3_column_int64(s, 8);
    env->expires_at_ms = sqlite3_column_int64(s, 9);
    env->reason = store__col_str(s, 12);
    env->phase_at_ms = sqlite3_column_int64(s, 13);
    env->ready_at_ms = sqlite3_column_int64(s, 14);
    env->sleep_after_s = sqlite3_column_int64(s, 16);
    env->keep = sqlite3_column_int(s, 17) != 0;
    env->schedule_awake = xstrdup(store__col_text(s, 18));
    env->schedule_tz = xstrdup(store__col_text(s, 19));
    env->wake_outside_hours = sqlite3_column_int(s, 20);
    env->limit_memory_bytes = sqlite3_column_int64(s, 21);
    env->limit_cpu_millis = sqlite3_column_int64(s, 22);
    env->limit_pids = sqlite3_column_int64(s, 23);
    env->last_activity_ms = sqlite3_column_int64(s, 24);
    env->last_activity = xstrdup(store__col_text(s, 25));
    env->slept_at_ms = sqlite3_column_int64(s, 26);
    env->woke_at_ms = sqlite3_column_int64(s, 27);
    env->sleep_cause = xstrdup(store__col_text(s, 28));
    env->transition_reason = xstrdup(store__col_text(s, 29));
    env->links_since_ms = sqlite3_column_int64(s, 30); /* NULL (before step 4): 0 */
    if (env_desired_parse(desired, &env->desired) < 0) {
        rc = eph_err_set(err, EPH_ESTORE, "store: environment %" PRId64 ": unknown desired '%s'",
                         env->id, desired);
    } else if (env_phase_parse(phase, &env->phase) < 0) {
        rc = eph_err_set(err, EPH_ESTORE, "store: environment %" PRId64 ": unknown phase '%s'",
                         env->id, phase);
    } else if (visibility_parse(visibility, &env->visibility) < 0) {
        rc = eph_err_set(err, EPH_ESTORE, "store: environment %" PRId64 ": unknown visibility '%s'",
                         env->id, visibility);
    } else {
        rc = params_from_json((const char *)sqlite3_column_text(s, 7), env, err);
    }
    if (rc < 0) {
        env_free(env);
        return rc;
    }
    *out = env;
    return 0;
}

/* Appends one row of SVC_COLS to env->services. */
static int
svc_from_row(sqlite3_stmt *s, struct env *env, struct eph_err *err)
{
    const char *state = store__col_text(s, 3);
    struct env_svc *svc;

    env->services = store__grow(env->services, env->n_services, sizeof(*env->services));
    svc = &env->services[env->n_services];
    memset(svc, 0, sizeof(*svc));
    if (svc_state_parse(state, &svc->state) < 0) {
        return eph_err_set(err, EPH_ESTORE,
                           "store: environment %" PRId64 ": service '%s': unknown state '%s'",
                           env->id, store__col_text(s, 1), state);
    }
    svc->name = store__col_str(s, 1);
    svc->port = sqlite3_column_int(s, 2);
    svc->pid = sqlite3_column_int(s, 4);
    svc->restarts = sqlite3_column_int(s, 5);
    svc->reason = store__col_str(s, 6);
    svc->started_at_ms = sqlite3_column_int64(s, 7);
    env->n_services++;
    return 0;
}

static int
load_services(struct store *st, struct env *env, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_SVC_OF_ENV, err);
    int rc = 0;
    int step = SQLITE_DONE;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, env->id) != SQLITE_OK) {
        rc = store__db_error(st, "load services", err);
        goto out;
    }
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW)
        rc = svc_from_row(s, env, err);
    if (rc == 0 && step != SQLITE_DONE)
        rc = store__db_error(st, "load services", err);
out:
    store__release(s);
    return rc;
}

/*
 * Runs ST_ENV_BY_NAME or ST_ENV_BY_ID (already bound) and loads the services
 * of the environment found. `subject` names it in the not-found message.
 */
static int
load_env(struct store *st, sqlite3_stmt *s, const char *subject, struct env **out,
         struct eph_err *err)
{
    struct env *env = NULL;
    int step = sqlite3_step(s);
    int rc = 0;

    if (step == SQLITE_ROW)
        rc = env_from_row(s, &env, err);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "environment %s not found", subject);
    else
        rc = store__db_error(st, "get environment", err);
    store__release(s);
    if (rc == 0)
        rc = load_services(st, env, err);
    if (rc < 0) {
        env_free(env);
        return rc;
    }
    *out = env;
    return 0;
}

/* Inserts the envs row; *id_out is its new id. */
static int
insert_env_row(struct store *st, const struct env *env, const char *params, int64_t now,
               int64_t *id_out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_INSERT, err);
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, env->name) || store__bind_str(s, 2, env->project) ||
        store__bind_str(s, 3, env->ref) || store__bind_str(s, 4, env->commit) ||
        store__bind_str(s, 5, env->owner) || store__bind_str(s, 6, env->template_yaml) ||
        store__bind_str(s, 7, params) || sqlite3_bind_int64(s, 8, now) ||
        sqlite3_bind_int64(s, 9, env->expires_at_ms) ||
        store__bind_str(s, 10, env_desired_name(ENV_WANT_RUNNING)) ||
        store__bind_str(s, 11, env_phase_name(ENV_PHASE_PENDING)) ||
        store__bind_str(s, 12, visibility_name(env->visibility)) ||
        sqlite3_bind_int64(s, 13, env->sleep_after_s) || sqlite3_bind_int(s, 14, env->keep) ||
        store__bind_str(s, 15, env->schedule_awake ? env->schedule_awake : "") ||
        store__bind_str(s, 16, env->schedule_tz ? env->schedule_tz : "") ||
        sqlite3_bind_int(s, 17, env->wake_outside_hours) ||
        sqlite3_bind_int64(s, 18, env->limit_memory_bytes) ||
        sqlite3_bind_int64(s, 19, env->limit_cpu_millis) ||
        sqlite3_bind_int64(s, 20, env->limit_pids)) {
        rc = store__db_error(st, "create environment", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_CONSTRAINT_UNIQUE)
        rc = eph_err_set(err, EPH_ECONFLICT, "environment '%s' already exists", env->name);
    else if (step != SQLITE_DONE)
        rc = store__db_error(st, "create environment", err);
    *id_out = sqlite3_last_insert_rowid(st->db);
out:
    store__release(s);
    return rc;
}

/* Inserts the services rows of a new environment, in the template's order. */
static int
insert_services(struct store *st, const struct env *env, int64_t id, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_SVC_INSERT, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    for (size_t i = 0; i < env->n_services && rc == 0; i++) {
        const struct env_svc *svc = &env->services[i];
        int step;

        if (svc->name == NULL) {
            rc = eph_err_set(err, EPH_EINVAL, "service %zu of environment '%s' has no name", i + 1,
                             env->name);
            break;
        }
        if (sqlite3_bind_int64(s, 1, id) || store__bind_str(s, 2, svc->name) ||
            sqlite3_bind_int64(s, 3, (int64_t)i) || sqlite3_bind_int(s, 4, svc->port) ||
            store__bind_str(s, 5, svc_state_name(SVC_STATE_PENDING))) {
            rc = store__db_error(st, "create environment", err);
            break;
        }
        step = sqlite3_step(s);
        if (step == SQLITE_CONSTRAINT_PRIMARYKEY)
            rc = eph_err_set(err, EPH_EINVAL, "service '%s' appears twice in environment '%s'",
                             svc->name, env->name);
        else if (step != SQLITE_DONE)
            rc = store__db_error(st, "create environment", err);
        sqlite3_reset(s);
    }
    store__release(s);
    return rc;
}

int
store_env_create(struct store *st, struct env *env, const struct store_actor *actor,
                 struct eph_err *err)
{
    int64_t now = time_wall_ms();
    char *params = NULL;
    char *target = NULL;
    char *detail = NULL;
    enum visibility known;
    int64_t id = 0;
    int rc;

    if (env->name == NULL)
        return eph_err_set(err, EPH_EINVAL, "environment has no name");
    /* A value outside the enum would be stored as "unknown" and refused at load. */
    if (visibility_parse(visibility_name(env->visibility), &known) < 0)
        return eph_err_set(err, EPH_EINVAL, "environment '%s' has an unknown visibility (%d)",
                           env->name, (int)env->visibility);
    if (env->sleep_after_s < -1)
        return eph_err_set(err, EPH_EINVAL,
                           "environment '%s': sleep_after %" PRId64
                           " is neither a duration nor never (-1)",
                           env->name, env->sleep_after_s);
    if (env->wake_outside_hours < -1 || env->wake_outside_hours > 1)
        return eph_err_set(err, EPH_EINVAL,
                           "environment '%s': wake_outside_hours %d is not -1, 0 or 1", env->name,
                           env->wake_outside_hours);
    if (env->limit_memory_bytes < 0 || env->limit_cpu_millis < 0 || env->limit_pids < 0)
        return eph_err_set(err, EPH_EINVAL, "environment '%s': a limit is negative", env->name);
    rc = params_to_json(env, &params, err);
    if (rc < 0)
        return rc;
    target = xasprintf("env/%s", env->name);
    /* "project shop at feature-x (3f2c1d0)": the short commit says exactly
     * what was built, the ref what was asked for. */
    detail = xasprintf("project %s at %s (%.7s)", env->project ? env->project : "-",
                       env->ref ? env->ref : "-", env->commit ? env->commit : "-");
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = insert_env_row(st, env, params, now, &id, err);
    if (rc == 0)
        rc = insert_services(st, env, id, err);
    if (rc == 0)
        rc = store__event_insert(st, actor, "env.create", target, detail, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0) {
        store__tx_rollback(st);
        goto out;
    }
    /* Only now: a failed create leaves the caller's record as it was. */
    env->id = id;
    env->created_at_ms = now;
    env->desired = ENV_WANT_RUNNING;
    env->phase = ENV_PHASE_PENDING;
    env->phase_at_ms = now;
    env->ready_at_ms = 0;
    env->links_since_ms = 0; /* no link withdrawn yet */
    free(env->reason);
    env->reason = NULL;
    /* As a loaded record has them: text never NULL, no sleep state yet. */
    if (env->schedule_awake == NULL)
        env->schedule_awake = xstrdup("");
    if (env->schedule_tz == NULL)
        env->schedule_tz = xstrdup("");
    env->last_activity_ms = 0;
    env->slept_at_ms = 0;
    env->woke_at_ms = 0;
    free(env->last_activity);
    env->last_activity = xstrdup("");
    free(env->sleep_cause);
    env->sleep_cause = xstrdup("");
    free(env->transition_reason);
    env->transition_reason = xstrdup("");
    for (size_t i = 0; i < env->n_services; i++) {
        struct env_svc *svc = &env->services[i];

        svc->state = SVC_STATE_PENDING;
        svc->pid = 0;
        svc->restarts = 0;
        free(svc->reason);
        svc->reason = NULL;
        svc->started_at_ms = 0;
    }
out:
    free(params);
    free(target);
    free(detail);
    return rc;
}

int
store_env_get(struct store *st, const char *name, struct env **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_BY_NAME, err);
    char *subject;
    int rc;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name) != SQLITE_OK) {
        store__release(s);
        return store__db_error(st, "get environment", err);
    }
    subject = xasprintf("'%s'", name);
    rc = load_env(st, s, subject, out, err);
    free(subject);
    return rc;
}

int
store_env_get_by_id(struct store *st, int64_t id, struct env **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_BY_ID, err);
    char subject[32];

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        store__release(s);
        return store__db_error(st, "get environment", err);
    }
    snprintf(subject, sizeof(subject), "%" PRId64, id);
    return load_env(st, s, subject, out, err);
}

/*
 * Attaches services to envs, both in id order: one pass over one query, so a
 * list costs two statements whatever the number of environments.
 */
static int
attach_services(struct store *st, bool include_deleted, struct env **envs, size_t n,
                struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_SVC_LIST, err);
    size_t i = 0;
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int(s, 1, include_deleted) != SQLITE_OK) {
        rc = store__db_error(st, "list services", err);
        goto out;
    }
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        int64_t env_id = sqlite3_column_int64(s, 0);

        while (i < n && envs[i]->id < env_id)
            i++;
        if (i < n && envs[i]->id == env_id)
            rc = svc_from_row(s, envs[i], err);
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = store__db_error(st, "list services", err);
out:
    store__release(s);
    return rc;
}

int
store_env_list(struct store *st, bool include_deleted, struct env ***out, size_t *n,
               struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_LIST, err);
    struct env **envs = NULL;
    size_t count = 0;
    int rc = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int(s, 1, include_deleted) != SQLITE_OK) {
        rc = store__db_error(st, "list environments", err);
        goto out;
    }
    while (rc == 0 && (step = sqlite3_step(s)) == SQLITE_ROW) {
        envs = store__grow(envs, count, sizeof(*envs));
        rc = env_from_row(s, &envs[count], err);
        if (rc == 0)
            count++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = store__db_error(st, "list environments", err);
out:
    store__release(s);
    if (rc == 0)
        rc = attach_services(st, include_deleted, envs, count, err);
    if (rc < 0) {
        env_list_free(envs, count);
        return rc;
    }
    *out = envs;
    *n = count;
    return 0;
}

/* The status columns of environment `id`, read inside a transaction. */
struct env_status_row {
    char *name;
    enum env_phase phase;
    char *reason;
    int64_t ready_at_ms;
    int64_t phase_at_ms;
    enum visibility visibility;
    enum env_desired desired;
    int64_t slept_at_ms;
    int64_t woke_at_ms;
    bool keep;
};

/* Frees the row's strings and zeroes it, so releasing twice is harmless. */
static void
status_row_release(struct env_status_row *r)
{
    free(r->name);
    free(r->reason);
    memset(r, 0, sizeof(*r));
}

/* Reads ST_ENV_STATUS into *r (release it either way); EPH_ENOTFOUND. */
static int
read_status(struct store *st, int64_t id, struct env_status_row *r, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_STATUS, err);
    int rc = 0;
    int step;

    memset(r, 0, sizeof(*r));
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = store__db_error(st, "get environment", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
        const char *phase = store__col_text(s, 1);
        const char *visibility = store__col_text(s, 5);
        const char *desired = store__col_text(s, 6);

        r->name = store__col_str(s, 0);
        r->reason = store__col_str(s, 2);
        r->ready_at_ms = sqlite3_column_int64(s, 3);
        r->phase_at_ms = sqlite3_column_int64(s, 4);
        r->slept_at_ms = sqlite3_column_int64(s, 7);
        r->woke_at_ms = sqlite3_column_int64(s, 8);
        r->keep = sqlite3_column_int(s, 9) != 0;
        if (env_phase_parse(phase, &r->phase) < 0)
            rc = eph_err_set(err, EPH_ESTORE, "store: environment %" PRId64 ": unknown phase '%s'",
                             id, phase);
        else if (visibility_parse(visibility, &r->visibility) < 0)
            rc = eph_err_set(err, EPH_ESTORE,
                             "store: environment %" PRId64 ": unknown visibility '%s'", id,
                             visibility);
        else if (env_desired_parse(desired, &r->desired) < 0)
            rc = eph_err_set(err, EPH_ESTORE,
                             "store: environment %" PRId64 ": unknown desired '%s'", id, desired);
    } else if (step == SQLITE_DONE) {
        rc = eph_err_set(err, EPH_ENOTFOUND, "environment %" PRId64 " not found", id);
    } else {
        rc = store__db_error(st, "get environment", err);
    }
out:
    store__release(s);
    return rc;
}

/*
 * Ends a change to environment `row` begun with store__tx_begin: when rc is
 * 0 and action is not NULL, appends the event (target "env/<name>"), then
 * commits, or rolls back after any error; releases row. Returns rc.
 */
static int
end_env_change(struct store *st, struct env_status_row *row, int rc,
               const struct store_actor *actor, const char *action, const char *detail,
               struct eph_err *err)
{
    if (rc == 0 && action != NULL) {
        char *target = xasprintf("env/%s", row->name);

        rc = store__event_insert(st, actor, action, target, detail, err);
        free(target);
    }
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    status_row_release(row);
    return rc;
}

/*
 * One transaction: find environment `id` (for its name), run `which` with ?1
 * bound to id and ?2 to the text or integer value, and append the event.
 */
static int
update_env_with_event(struct store *st, int64_t id, enum stmt_id which, const char *text_value,
                      int64_t int_value, const struct store_actor *actor, const char *action,
                      const char *detail, struct eph_err *err)
{
    struct env_status_row row;
    sqlite3_stmt *s = NULL;
    int rc;

    rc = store__tx_begin(st, err);
    if (rc < 0)
        return rc;
    rc = read_status(st, id, &row, err);
    if (rc == 0) {
        s = stmt(st, which, err);
        if (s == NULL)
            rc = EPH_ESTORE;
        else if (sqlite3_bind_int64(s, 1, id) ||
                 (text_value ? store__bind_str(s, 2, text_value)
                             : sqlite3_bind_int64(s, 2, int_value)) ||
                 sqlite3_step(s) != SQLITE_DONE)
            rc = store__db_error(st, "update environment", err);
        store__release(s);
    }
    return end_env_change(st, &row, rc, actor, action, detail, err);
}

int
store_env_set_desired(struct store *st, int64_t id, enum env_desired desired,
                      const struct store_actor *actor, const char *action, const char *detail,
                      struct eph_err *err)
{
    return update_env_with_event(st, id, ST_ENV_SET_DESIRED, env_desired_name(desired), 0, actor,
                                 action ? action : "env.desired", detail, err);
}

int
store_env_set_expiry(struct store *st, int64_t id, int64_t expires_at_ms,
                     const struct store_actor *actor, const char *detail, struct eph_err *err)
{
    return update_env_with_event(st, id, ST_ENV_SET_EXPIRY, NULL, expires_at_ms, actor,
                                 "env.extend", detail, err);
}

int
store_env_set_visibility(struct store *st, int64_t id, enum visibility vis,
                         const struct store_actor *actor, struct eph_err *err)
{
    struct env_status_row row;
    enum visibility known;
    sqlite3_stmt *s = NULL;
    char *detail = NULL;
    int rc;

    if (visibility_parse(visibility_name(vis), &known) < 0)
        return eph_err_set(err, EPH_EINVAL, "unknown visibility (%d)", (int)vis);
    rc = store__tx_begin(st, err);
    if (rc < 0)
        return rc;
    rc = read_status(st, id, &row, err);
    if (rc < 0 || row.visibility == vis) /* unchanged: nothing to record */
        return end_env_change(st, &row, rc, actor, NULL, NULL, err);
    s = stmt(st, ST_ENV_SET_VISIBILITY, err);
    if (s == NULL)
        rc = EPH_ESTORE;
    else if (sqlite3_bind_int64(s, 1, id) || store__bind_str(s, 2, visibility_name(vis)) ||
             sqlite3_bind_int64(s, 3, row.visibility == VIS_LINK ? time_wall_ms() : 0) ||
             sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "set visibility", err);
    store__release(s);
    detail = xasprintf("%s -> %s", visibility_name(row.visibility), visibility_name(vis));
    rc = end_env_change(st, &row, rc, actor, "env.visibility", detail, err);
    free(detail);
    return rc;
}

/* Counts live environments with statement `all` or, for one owner, `mine`
 * (both bind the deleting phase, the deleted desire, then the owner). */
static int
count_live(struct store *st, enum stmt_id all, enum stmt_id mine, const char *owner,
           const char *what, int64_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, owner ? mine : all, err);
    int rc = 0;

    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, env_phase_name(ENV_PHASE_DELETING)) ||
        store__bind_str(s, 2, env_desired_name(ENV_WANT_DELETED)) ||
        (owner && store__bind_str(s, 3, owner)) || sqlite3_step(s) != SQLITE_ROW)
        rc = store__db_error(st, what, err);
    else
        *n = sqlite3_column_int64(s, 0);
    store__release(s);
    return rc;
}

int
store_env_count_live(struct store *st, const char *owner, int64_t *n, struct eph_err *err)
{
    return count_live(st, ST_ENV_COUNT_LIVE, ST_ENV_COUNT_LIVE_OWNER, owner,
                      "count environments", n, err);
}

int
store_env_count_kept(struct store *st, const char *owner, int64_t *n, struct eph_err *err)
{
    return count_live(st, ST_ENV_COUNT_KEPT, ST_ENV_COUNT_KEPT_OWNER, owner,
                      "count kept environments", n, err);
}

int
store_env_set_sleep(struct store *st, int64_t id, bool asleep, const char *cause,
                    const char *reason, const struct store_actor *actor, struct eph_err *err)
{
    enum env_desired want = asleep ? ENV_WANT_ASLEEP : ENV_WANT_RUNNING;
    struct env_status_row row;
    sqlite3_stmt *s = NULL;
    int rc;

    rc = store__tx_begin(st, err);
    if (rc < 0)
        return rc;
    rc = read_status(st, id, &row, err);
    /* Checked under the write lock: a deletion is never undone by a wake. */
    if (rc == 0 && (row.desired == ENV_WANT_DELETED || row.phase == ENV_PHASE_DELETING ||
                    row.phase == ENV_PHASE_DELETED))
        rc = eph_err_set(err, EPH_ECONFLICT, "environment '%s' is being deleted", row.name);
    if (rc == 0) {
        s = stmt(st, ST_ENV_SET_SLEEP, err);
        if (s == NULL)
            rc = EPH_ESTORE;
        else if (sqlite3_bind_int64(s, 1, id) || store__bind_str(s, 2, env_desired_name(want)) ||
                 store__bind_str(s, 3, asleep && cause ? cause : "") ||
                 store__bind_str(s, 4, reason ? reason : "") || sqlite3_step(s) != SQLITE_DONE)
            rc = store__db_error(st, asleep ? "put environment to sleep" : "wake environment", err);
        store__release(s);
    }
    return end_env_change(st, &row, rc, actor, asleep ? "env.sleep" : "env.wake", reason, err);
}

int
store_env_set_keep(struct store *st, int64_t id, bool keep, const struct store_actor *actor,
                   struct eph_err *err)
{
    struct env_status_row row;
    sqlite3_stmt *s = NULL;
    int rc;

    rc = store__tx_begin(st, err);
    if (rc < 0)
        return rc;
    rc = read_status(st, id, &row, err);
    if (rc < 0 || row.keep == keep) /* unchanged: nothing to record */
        return end_env_change(st, &row, rc, actor, NULL, NULL, err);
    s = stmt(st, ST_ENV_SET_KEEP, err);
    if (s == NULL)
        rc = EPH_ESTORE;
    else if (sqlite3_bind_int64(s, 1, id) || sqlite3_bind_int(s, 2, keep) ||
             sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "set keep", err);
    store__release(s);
    return end_env_change(st, &row, rc, actor, "env.keep", keep ? "keep on" : "keep off", err);
}

int
store_env_set_activity(struct store *st, int64_t id, int64_t at_ms, const char *what,
                       struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_ENV_SET_ACTIVITY, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, id) || sqlite3_bind_int64(s, 2, at_ms) ||
        store__bind_str(s, 3, what ? what : "") || sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "record activity", err);
    else if (sqlite3_changes(st->db) == 0)
        rc = eph_err_set(err, EPH_ENOTFOUND, "environment %" PRId64 " not found", id);
    store__release(s);
    return rc;
}

/*
 * Inside set_phase's transaction: records `phase` and `reason` over the
 * current status `row`, and appends the "env.phase" event.
 */
static int
write_phase(struct store *st, int64_t id, const struct env_status_row *row, enum env_phase phase,
            const char *reason, struct eph_err *err)
{
    static const struct store_actor system_actor = {.name = "system", .source = ""};
    int64_t now = time_wall_ms();
    /* A reason change alone is no phase change: phase_at_ms stays. */
    int64_t phase_at_ms = row->phase == phase ? row->phase_at_ms : now;
    int64_t ready_at_ms = row->ready_at_ms;
    int64_t slept_at_ms = row->slept_at_ms;
    int64_t woke_at_ms = row->woke_at_ms;
    sqlite3_stmt *s = stmt(st, ST_ENV_SET_PHASE, err);
    char *target;
    char *detail;
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (phase == ENV_PHASE_READY && ready_at_ms == 0)
        ready_at_ms = now;
    if (phase == ENV_PHASE_SLEEPING && row->phase != ENV_PHASE_SLEEPING)
        slept_at_ms = now;
    /* Leaving for deleting or deleted is no wake. */
    if (row->phase == ENV_PHASE_SLEEPING && phase != ENV_PHASE_SLEEPING &&
        phase != ENV_PHASE_DELETING && phase != ENV_PHASE_DELETED)
        woke_at_ms = now;
    if (sqlite3_bind_int64(s, 1, id) || store__bind_str(s, 2, env_phase_name(phase)) ||
        store__bind_str(s, 3, reason) || sqlite3_bind_int64(s, 4, phase_at_ms) ||
        sqlite3_bind_int64(s, 5, ready_at_ms) || sqlite3_bind_int64(s, 6, slept_at_ms) ||
        sqlite3_bind_int64(s, 7, woke_at_ms)) {
        rc = store__db_error(st, "set phase", err);
    } else {
        step = sqlite3_step(s);
        /* Leaving `deleted` while another live environment took the name. */
        if (step == SQLITE_CONSTRAINT_UNIQUE)
            rc = eph_err_set(err, EPH_ECONFLICT, "environment '%s' already exists", row->name);
        else if (step != SQLITE_DONE)
            rc = store__db_error(st, "set phase", err);
    }
    store__release(s);
    if (rc < 0)
        return rc;
    target = xasprintf("env/%s", row->name);
    detail = xasprintf("%s -> %s%s%s", env_phase_name(row->phase), env_phase_name(phase),
                       reason ? ": " : "", reason ? reason : "");
    rc = store__event_insert(st, &system_actor, "env.phase", target, detail, err);
    free(target);
    free(detail);
    return rc;
}

int
store_env_set_phase(struct store *st, int64_t id, enum env_phase phase, const char *reason,
                    struct eph_err *err)
{
    struct env_status_row row;
    int rc;

    /* Checked first without the write lock: most calls (one per reconciler
       tick) change nothing and should cost one indexed read. */
    rc = read_status(st, id, &row, err);
    if (rc < 0 || (row.phase == phase && str_same(row.reason, reason))) {
        status_row_release(&row);
        return rc;
    }
    status_row_release(&row);

    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = read_status(st, id, &row, err); /* again, under the write lock */
    if (rc == 0 && !(row.phase == phase && str_same(row.reason, reason)))
        rc = write_phase(st, id, &row, phase, reason, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    status_row_release(&row);
    return rc;
}

int
store_svc_update(struct store *st, int64_t env_id, const struct env_svc *svc, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_SVC_UPDATE, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, env_id) || store__bind_str(s, 2, svc->name) ||
        store__bind_str(s, 3, svc_state_name(svc->state)) || sqlite3_bind_int(s, 4, svc->pid) ||
        sqlite3_bind_int(s, 5, svc->restarts) || store__bind_str(s, 6, svc->reason) ||
        sqlite3_bind_int64(s, 7, svc->started_at_ms) || sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "update service", err);
    else if (sqlite3_changes(st->db) == 0)
        rc = eph_err_set(err, EPH_ENOTFOUND, "service '%s' of environment %" PRId64 " not found",
                         svc->name, env_id);
    store__release(s);
    return rc;
}

int
store_ports_in_use(struct store *st, int **ports, size_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_PORTS_IN_USE, err);
    int *out = NULL;
    size_t count = 0;
    int step;

    *ports = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        out = store__grow(out, count, sizeof(*out));
        out[count++] = sqlite3_column_int(s, 0);
    }
    store__release(s);
    if (step != SQLITE_DONE) {
        free(out);
        return store__db_error(st, "list ports", err);
    }
    *ports = out;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------- events */

int
store_event_append(struct store *st, const struct store_actor *actor, const char *action,
                   const char *target, const char *detail, struct eph_err *err)
{
    int rc = store__tx_begin(st, err);

    if (rc == 0)
        rc = store__event_insert(st, actor, action, target, detail, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    return rc;
}

static struct event *
event_from_row(sqlite3_stmt *s)
{
    struct event *ev = xcalloc(1, sizeof(*ev));

    ev->id = sqlite3_column_int64(s, 0);
    ev->at_ms = sqlite3_column_int64(s, 1);
    ev->actor = xstrdup(store__col_text(s, 2));
    ev->source = xstrdup(store__col_text(s, 3));
    ev->action = xstrdup(store__col_text(s, 4));
    ev->target = xstrdup(store__col_text(s, 5));
    ev->detail = xstrdup(store__col_text(s, 6));
    return ev;
}

int
store_event_list(struct store *st, const char *target, int64_t after_id, int limit,
                 struct event ***out, size_t *n, struct eph_err *err)
{
    enum stmt_id which;
    sqlite3_stmt *s;
    struct event **evs = NULL;
    size_t count = 0;
    int rc = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (limit < 0)
        return eph_err_set(err, EPH_EINVAL, "event limit %d is negative", limit);
    if (limit > STORE_EVENT_LIST_MAX)
        limit = STORE_EVENT_LIST_MAX;
    if (after_id < 0)
        which = target ? ST_EVENT_NEWEST_TARGET : ST_EVENT_NEWEST;
    else
        which = target ? ST_EVENT_AFTER_TARGET : ST_EVENT_AFTER;
    s = stmt(st, which, err);
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int(s, 1, limit) || (after_id >= 0 && sqlite3_bind_int64(s, 2, after_id)) ||
        (target && store__bind_str(s, 3, target))) {
        rc = store__db_error(st, "list events", err);
        goto out;
    }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        evs = store__grow(evs, count, sizeof(*evs));
        evs[count++] = event_from_row(s);
    }
    if (step != SQLITE_DONE)
        rc = store__db_error(st, "list events", err);
out:
    store__release(s);
    if (rc < 0) {
        event_list_free(evs, count);
        return rc;
    }
    *out = evs;
    *n = count;
    return 0;
}

/* ------------------------------------------------------------- API tokens */

void
store_token_free(struct store_token *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->role);
    free(t->user);
    free(t->hash);
    free(t);
}

void
store_token_list_free(struct store_token **ts, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_token_free(ts[i]);
    free(ts);
}

/* Reads one row of TOKEN_COLS. */
static struct store_token *
token_from_row(sqlite3_stmt *s)
{
    struct store_token *t = xcalloc(1, sizeof(*t));

    t->id = sqlite3_column_int64(s, 0);
    t->name = store__col_str(s, 1);
    t->role = store__col_str(s, 2);
    t->user = xstrdup(store__col_text(s, 3));
    t->created_at_ms = sqlite3_column_int64(s, 4);
    t->expires_at_ms = sqlite3_column_int64(s, 5);
    t->last_used_ms = sqlite3_column_int64(s, 6);
    t->revoked_at_ms = sqlite3_column_int64(s, 7);
    t->hash = xstrdup(store__col_text(s, 8));
    return t;
}

/* Inside a transaction: EPH_ENOTFOUND "user 'x' not found" unless user `name` exists. */
static int
check_user_exists(struct store *st, const char *name, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_USER_EXISTS, err);
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name ? name : "") != SQLITE_OK) {
        rc = store__db_error(st, "find user", err);
    } else {
        step = sqlite3_step(s);
        if (step == SQLITE_DONE)
            rc = eph_err_set(err, EPH_ENOTFOUND, "user '%s' not found", name ? name : "");
        else if (step != SQLITE_ROW)
            rc = store__db_error(st, "find user", err);
    }
    store__release(s);
    return rc;
}

/* Inserts the tokens row; *id_out is its new id. */
static int
insert_token_row(struct store *st, const char *name, const char *hash_hex, const char *role,
                 const char *user, int64_t expires_at_ms, int64_t *id_out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_INSERT, err);
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name) || store__bind_str(s, 2, hash_hex) ||
        store__bind_str(s, 3, role) || store__bind_str(s, 4, user) ||
        sqlite3_bind_int64(s, 5, time_wall_ms()) || sqlite3_bind_int64(s, 6, expires_at_ms)) {
        rc = store__db_error(st, "add token", err);
        goto out;
    }
    step = sqlite3_step(s);
    /* Never the hash in a message: it is what identifies the token. */
    if (step == SQLITE_CONSTRAINT_UNIQUE)
        rc = eph_err_set(err, EPH_ECONFLICT, "a token with this hash already exists");
    else if (step != SQLITE_DONE)
        rc = store__db_error(st, "add token", err);
    *id_out = sqlite3_last_insert_rowid(st->db);
out:
    store__release(s);
    return rc;
}

int
store_token_add(struct store *st, const char *name, const char *hash_hex, const char *role,
                const char *user, int64_t expires_at_ms, const struct store_actor *actor,
                int64_t *id_out, struct eph_err *err)
{
    char *target = xasprintf("token/%s", name ? name : "");
    char *detail = NULL;
    int64_t id = 0;
    int rc;

    if (expires_at_ms != 0) {
        char when[64];

        time_format_rfc3339(expires_at_ms, when, sizeof(when));
        detail =
            xasprintf("user %s, role %s, expires %s", user ? user : "-", role ? role : "-", when);
    } else {
        detail = xasprintf("user %s, role %s", user ? user : "-", role ? role : "-");
    }
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = check_user_exists(st, user, err);
    if (rc == 0)
        rc = insert_token_row(st, name, hash_hex, role, user, expires_at_ms, &id, err);
    if (rc == 0)
        rc = store__event_insert(st, actor, "token.create", target, detail, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    else if (id_out != NULL)
        *id_out = id;
    free(target);
    free(detail);
    return rc;
}

int
store_token_find(struct store *st, const char *hash_hex, struct store_token **out,
                 struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_FIND, err);
    int rc = 0;
    int step;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, hash_hex) || sqlite3_bind_int64(s, 2, time_wall_ms())) {
        rc = store__db_error(st, "find token", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        *out = token_from_row(s);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "token not found");
    else
        rc = store__db_error(st, "find token", err);
out:
    store__release(s);
    return rc;
}

int
store_token_get(struct store *st, int64_t id, struct store_token **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_GET, err);
    int rc = 0;
    int step;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, id) != SQLITE_OK) {
        rc = store__db_error(st, "get token", err);
        goto out;
    }
    step = sqlite3_step(s);
    if (step == SQLITE_ROW)
        *out = token_from_row(s);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "token %" PRId64 " not found", id);
    else
        rc = store__db_error(st, "get token", err);
out:
    store__release(s);
    return rc;
}

int
store_token_list(struct store *st, const char *user, struct store_token ***out, size_t *n,
                 struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, user ? ST_TOKEN_LIST_USER : ST_TOKEN_LIST, err);
    struct store_token **ts = NULL;
    size_t count = 0;
    int rc = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    if (user && store__bind_str(s, 1, user) != SQLITE_OK) {
        rc = store__db_error(st, "list tokens", err);
        goto out;
    }
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        ts = store__grow(ts, count, sizeof(*ts));
        ts[count++] = token_from_row(s);
    }
    if (step != SQLITE_DONE)
        rc = store__db_error(st, "list tokens", err);
out:
    store__release(s);
    if (rc < 0) {
        store_token_list_free(ts, count);
        return rc;
    }
    *out = ts;
    *n = count;
    return 0;
}

int
store_token_revoke(struct store *st, int64_t id, const struct store_actor *actor,
                   struct eph_err *err)
{
    struct store_token *t = NULL;
    sqlite3_stmt *s = NULL;
    char *target = NULL;
    char *detail = NULL;
    int rc;

    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = store_token_get(st, id, &t, err);
    /* A revoked token is as gone as a missing one. */
    if (rc == 0 && t->revoked_at_ms != 0)
        rc = eph_err_set(err, EPH_ENOTFOUND, "token %" PRId64 " not found", id);
    if (rc == 0) {
        s = stmt(st, ST_TOKEN_REVOKE, err);
        if (s == NULL)
            rc = EPH_ESTORE;
        else if (sqlite3_bind_int64(s, 1, id) || sqlite3_bind_int64(s, 2, time_wall_ms()) ||
                 sqlite3_step(s) != SQLITE_DONE)
            rc = store__db_error(st, "revoke token", err);
        store__release(s);
    }
    if (rc == 0) {
        target = xasprintf("token/%s", t->name ? t->name : "");
        detail = xasprintf("user %s", t->user);
        rc = store__event_insert(st, actor, "token.revoke", target, detail, err);
    }
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    store_token_free(t);
    free(target);
    free(detail);
    return rc;
}

int
store_token_touch(struct store *st, int64_t id, int64_t at_ms, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_TOUCH, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_bind_int64(s, 1, id) || sqlite3_bind_int64(s, 2, at_ms) ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "touch token", err);
    else if (sqlite3_changes(st->db) == 0)
        rc = eph_err_set(err, EPH_ENOTFOUND, "token %" PRId64 " not found", id);
    store__release(s);
    return rc;
}

int
store_token_count(struct store *st, int64_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, ST_TOKEN_COUNT, err);
    int rc = 0;

    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    if (sqlite3_step(s) == SQLITE_ROW)
        *n = sqlite3_column_int64(s, 0);
    else
        rc = store__db_error(st, "count tokens", err);
    store__release(s);
    return rc;
}
