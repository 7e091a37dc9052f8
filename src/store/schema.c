/*
 * store/schema.c - the schema as an ordered list of migration steps, and the
 * migrator that store_open() runs.
 *
 * PRAGMA user_version is the number of the last step applied. Each step is a
 * SQL script run in one transaction that ends by setting user_version to the
 * step's number, so a crash mid-migration leaves the previous version intact
 * and the next open retries the step. Steps are never edited once released:
 * a change to the schema is a new step at the end (see docs/store.md).
 *
 * Enum values (phase, desired, service state) are stored as their names
 * (env_phase_name() and friends) so the database reads well in the sqlite3
 * CLI; they carry no CHECK constraint so that a new phase does not need a
 * table rebuild, and store.c refuses names it cannot parse when loading.
 */
#include "store/store_int.h"

#include <stddef.h>

#define LOG_MOD "store"
#include "util/log.h"
#include "util/xmalloc.h"

struct migration {
    int version;     /* user_version once this step is applied */
    const char *sql; /* one transaction; its last statement sets user_version */
};

static const struct migration steps[] = {
    {
        1,
        /* Small server-wide values such as "instance_id". */
        "CREATE TABLE meta (\n"
        "    key   TEXT PRIMARY KEY,\n"
        "    value TEXT NOT NULL\n"
        ");\n"
        "CREATE TABLE projects (\n"
        "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    name          TEXT NOT NULL UNIQUE,\n"
        "    repo          TEXT NOT NULL,\n"
        "    created_by    TEXT NOT NULL,\n"
        "    created_at_ms INTEGER NOT NULL\n"
        ");\n"
        /* AUTOINCREMENT: an id is never reused, even after the newest row goes,
           so events and clients can name an environment by id forever. Spec
           columns first, status columns (phase ...) after. */
        "CREATE TABLE envs (\n"
        "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    name          TEXT NOT NULL,\n"
        "    project       TEXT,\n"
        "    ref           TEXT,\n"
        "    commit_sha    TEXT,\n"
        "    owner         TEXT,\n"
        "    template_yaml TEXT,\n"
        "    params_json   TEXT NOT NULL DEFAULT '{}',\n"
        "    created_at_ms INTEGER NOT NULL,\n"
        "    expires_at_ms INTEGER NOT NULL DEFAULT 0,\n"
        "    desired       TEXT NOT NULL,\n"
        "    phase         TEXT NOT NULL,\n"
        "    reason        TEXT,\n"
        "    phase_at_ms   INTEGER NOT NULL,\n"
        "    ready_at_ms   INTEGER NOT NULL DEFAULT 0\n"
        ");\n"
        /* A name is taken only while its environment is not deleted; the
           deleted records stay for the audit log. */
        "CREATE UNIQUE INDEX envs_live_name ON envs(name) WHERE phase != 'deleted';\n"
        /* `ord` keeps the services in the order the template declares them. */
        "CREATE TABLE services (\n"
        "    env_id        INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,\n"
        "    name          TEXT NOT NULL,\n"
        "    ord           INTEGER NOT NULL,\n"
        "    port          INTEGER NOT NULL DEFAULT 0,\n"
        "    state         TEXT NOT NULL,\n"
        "    pid           INTEGER NOT NULL DEFAULT 0,\n"
        "    restarts      INTEGER NOT NULL DEFAULT 0,\n"
        "    reason        TEXT,\n"
        "    started_at_ms INTEGER NOT NULL DEFAULT 0,\n"
        "    PRIMARY KEY (env_id, name)\n"
        ");\n"
        "CREATE TABLE events (\n"
        "    id     INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    at_ms  INTEGER NOT NULL,\n"
        "    actor  TEXT NOT NULL,\n"
        "    source TEXT NOT NULL,\n"
        "    action TEXT NOT NULL,\n"
        "    target TEXT NOT NULL,\n"
        "    detail TEXT NOT NULL\n"
        ");\n"
        /* (target, id): "events of env/fx after id N" is one index range. */
        "CREATE INDEX events_target ON events(target, id);\n"
        /* Only the SHA-256 of a token is kept, never the token. */
        "CREATE TABLE tokens (\n"
        "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    name          TEXT NOT NULL,\n"
        "    hash          TEXT NOT NULL UNIQUE,\n"
        "    role          TEXT NOT NULL,\n"
        "    created_at_ms INTEGER NOT NULL,\n"
        "    expires_at_ms INTEGER NOT NULL DEFAULT 0,\n"
        "    last_used_ms  INTEGER NOT NULL DEFAULT 0\n"
        ");\n"
        "PRAGMA user_version = 1;\n",
    },
    {
        2,
        /* People, signed in through a provider: "local" (name and password)
           or an OIDC issuer. `subject` is the provider's stable id of the
           person ("" for local users); a (provider, subject) pair belongs to
           one user. password_hash is an argon2id string, NULL unless a local
           user has a password. Roles are stored by name (role_name()). */
        "CREATE TABLE users (\n"
        "    id            INTEGER PRIMARY KEY AUTOINCREMENT,\n"
        "    name          TEXT NOT NULL UNIQUE,\n"
        "    email         TEXT NOT NULL DEFAULT '',\n"
        "    role          TEXT NOT NULL,\n"
        "    provider      TEXT NOT NULL,\n"
        "    subject       TEXT NOT NULL DEFAULT '',\n"
        "    password_hash TEXT,\n"
        "    created_at_ms INTEGER NOT NULL,\n"
        "    last_login_ms INTEGER NOT NULL DEFAULT 0\n"
        ");\n"
        "CREATE UNIQUE INDEX users_identity ON users(provider, subject) WHERE subject != '';\n"
        /* Browser sessions: `id` is public (it names the session in events),
           only the SHA-256 of the secret half of the cookie is kept. A user's
           sessions go with the user. */
        "CREATE TABLE sessions (\n"
        "    id            TEXT PRIMARY KEY,\n"
        "    secret_hash   TEXT NOT NULL,\n"
        "    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,\n"
        "    created_at_ms INTEGER NOT NULL,\n"
        "    last_seen_ms  INTEGER NOT NULL,\n"
        "    expires_at_ms INTEGER NOT NULL,\n"
        "    source        TEXT NOT NULL DEFAULT ''\n"
        ");\n"
        /* A token acts for a user (by name, so that a revoked token still
           says whose it was after the user is gone). Revoked tokens keep
           their rows, like deleted environments, for the audit log. */
        "ALTER TABLE tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT '';\n"
        "ALTER TABLE tokens ADD COLUMN revoked_at_ms INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN visibility TEXT NOT NULL DEFAULT 'team';\n"
        /* A server created before this step has an admin token and no users:
           its tokens belong to a user 'admin', created here, as old as the
           oldest token. A new database (no tokens) gets no user: the first
           start adds it. WHERE EXISTS rather than HAVING without GROUP BY,
           which SQLite accepts only since 3.39. */
        "INSERT INTO users (name, role, provider, created_at_ms)\n"
        "    SELECT 'admin', 'admin', 'local', (SELECT MIN(created_at_ms) FROM tokens)\n"
        "    WHERE EXISTS (SELECT 1 FROM tokens);\n"
        "UPDATE tokens SET user_name = 'admin' WHERE user_name = '';\n"
        "PRAGMA user_version = 2;\n",
    },
    {
        3,
        /* Sleep and limits (docs/sleep.md). What was asked at creation, where
           0, -1 and '' mean "the template's or the server's setting": the
           idle time before sleeping (-1 never), keep, the awake schedule and
           its time zone, whether a request may wake it outside those hours
           (-1 inherit, 0, 1), and resource limits (0 none asked). Then the
           state the reconciler keeps: the last activity (at most every 10 s),
           when it last went to sleep and woke, why it sleeps ('idle',
           'schedule', 'manual' while desired is 'asleep'), and the reason of
           the last sleep or wake. Existing environments inherit everything
           and have never slept. */
        "ALTER TABLE envs ADD COLUMN sleep_after_s INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN keep INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN schedule_awake TEXT NOT NULL DEFAULT '';\n"
        "ALTER TABLE envs ADD COLUMN schedule_tz TEXT NOT NULL DEFAULT '';\n"
        "ALTER TABLE envs ADD COLUMN wake_outside_hours INTEGER NOT NULL DEFAULT -1;\n"
        "ALTER TABLE envs ADD COLUMN limit_memory_bytes INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN limit_cpu_millis INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN limit_pids INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN last_activity_ms INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN last_activity TEXT NOT NULL DEFAULT '';\n"
        "ALTER TABLE envs ADD COLUMN slept_at_ms INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN woke_at_ms INTEGER NOT NULL DEFAULT 0;\n"
        "ALTER TABLE envs ADD COLUMN sleep_cause TEXT NOT NULL DEFAULT '';\n"
        "ALTER TABLE envs ADD COLUMN transition_reason TEXT NOT NULL DEFAULT '';\n"
        "PRAGMA user_version = 3;\n",
    },
    {
        4,
        /* Share links are not stored (auth/signed.h), so withdrawing them is
           a time: links made at or before links_since_ms (wall clock) are
           refused. Set whenever the visibility leaves 'link'; NULL for
           existing rows, read as 0: nothing withdrawn yet. (Links made
           before this step carry no time and are refused anyway.) */
        "ALTER TABLE envs ADD COLUMN links_since_ms INTEGER;\n"
        "PRAGMA user_version = 4;\n",
    },
};

int
store__schema_latest(void)
{
    return steps[ARRAY_LEN(steps) - 1].version;
}

/* Formats the SQLite error of `db` for migrating `path` to `version`. */
static int
migrate_error(sqlite3 *db, const char *path, int version, struct eph_err *err)
{
    return eph_err_set(err, EPH_ESTORE, "store: migrate '%s' to version %d: %s", path, version,
                       sqlite3_errmsg(db));
}

/* Reads PRAGMA user_version into *out; the SQLite result code. */
static int
read_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);

    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(s, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

/*
 * Applies one step unless it is applied already. The version is read again
 * under the write lock (BEGIN IMMEDIATE) so that two processes opening the
 * same new database cannot both apply a step.
 */
static int
apply_step(sqlite3 *db, const char *path, const struct migration *m, int *version,
           struct eph_err *err)
{
    int now = 0;
    int rc = 0;

    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return migrate_error(db, path, m->version, err);
    if (read_version(db, &now) != SQLITE_OK) {
        rc = migrate_error(db, path, m->version, err);
        goto out;
    }
    if (now < m->version) {
        if (sqlite3_exec(db, m->sql, NULL, NULL, NULL) != SQLITE_OK) {
            rc = migrate_error(db, path, m->version, err);
            goto out;
        }
        if (read_version(db, &now) != SQLITE_OK) {
            rc = migrate_error(db, path, m->version, err);
            goto out;
        }
        EPH_ASSERT(now == m->version); /* each script sets its own number */
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = migrate_error(db, path, m->version, err);
out:
    if (rc < 0) {
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    *version = now;
    return 0;
}

int
store__migrate(sqlite3 *db, const char *path, int *version_out, struct eph_err *err)
{
    int latest = store__schema_latest();
    int version = 0;
    int from;
    int rc = 0;

    if (read_version(db, &version) != SQLITE_OK)
        return eph_err_set(err, EPH_ESTORE, "store: read schema version of '%s': %s", path,
                           sqlite3_errmsg(db));
    if (version > latest) {
        return eph_err_set(err, EPH_ESTORE,
                           "store: '%s' has schema version %d, newer than this eph knows (%d)",
                           path, version, latest);
    }
    from = version;
    for (size_t i = 0; i < ARRAY_LEN(steps) && rc == 0; i++) {
        if (steps[i].version > version)
            rc = apply_step(db, path, &steps[i], &version, err);
    }
    if (version != from)
        log_info("schema migrated", "path=%s from=%d to=%d", log_q(path), from, version);
    *version_out = version;
    return rc;
}
