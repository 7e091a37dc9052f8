/*
 * tests/unit/store/test_store.c - the store against a real SQLite file in a
 * fresh temporary directory per test: schema and migrations, projects,
 * environments and their services, visibility (and the share links it
 * withdraws) and live counts, phases,
 * sleep, keep and activity, events, tokens, and that a failed transaction
 * leaves nothing behind. Users and sessions are tested in test_store_users.c.
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* The schema version this build writes. */
#define LATEST 4

/* Token hashes: hex SHA-256, as auth_token_hash() gives them. */
#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HASH_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"

static char dir[64];
static char db_path[128];
static const struct store_actor alice = {.name = "alice", .source = "127.0.0.1"};

static void
setup(void)
{
    log_set_level(LOG_LEVEL_WARN); /* "schema migrated" at every fresh open */
    strcpy(dir, "/tmp/eph-store-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db_path, sizeof(db_path), "%s/eph.db", dir);
}

static void
teardown(void)
{
    fs_rm_rf(dir);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 60);

static struct store *
open_store(void)
{
    struct store *st = NULL;
    struct eph_err err = {0};

    cr_assert_eq(store_open(db_path, &st, &err), 0, "%s", err.msg);
    return st;
}

/* Runs SQL on the database file behind the store's back, as the sqlite3 CLI would. */
static void
raw_exec(const char *sql)
{
    sqlite3 *db = NULL;

    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

/* The first column of the first row of `sql` as an integer, read from the file. */
static int64_t
raw_int(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    int64_t v;

    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
    v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Same, as text (a copy to free()). */
static char *
raw_text(const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    char *v;

    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    cr_assert_eq(sqlite3_step(s), SQLITE_ROW, "%s", sql);
    v = xstrdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    return v;
}

/* Adds a local user without a password. */
static void
add_user(struct store *st, const char *name, const char *role)
{
    struct user u = {.name = (char *)name, .role = (char *)role, .provider = (char *)"local"};
    struct eph_err err = {0};

    cr_assert_eq(store_user_add(st, &u, NULL, &err), 0, "%s", err.msg);
}

/* An environment as the API would hand it over: every spec field set. */
static struct env *
make_env(const char *name, int port_base)
{
    struct env *env = env_new();

    env->name = xstrdup(name);
    env->project = xstrdup("shop");
    env->ref = xstrdup("feature/x");
    env->commit = xstrdup("0123456789abcdef0123456789abcdef01234567");
    env->owner = xstrdup("alice");
    env->template_yaml = xstrdup("version: 1\nservices:\n  web: {}\n");
    env->expires_at_ms = 1900000000000;
    env->sleep_after_s = 900;
    env->keep = true;
    env->schedule_awake = xstrdup("Mon-Fri 08:00-20:00");
    env->schedule_tz = xstrdup("Europe/Madrid");
    env->wake_outside_hours = 1;
    env->limit_memory_bytes = 536870912;
    env->limit_cpu_millis = 1500;
    env->limit_pids = 256;
    env->n_params = 3;
    env->params = xcalloc(3, sizeof(struct env_param));
    env->params[0].name = xstrdup("zeta");
    env->params[0].value = xstrdup("last \"quoted\" ünïcode");
    env->params[1].name = xstrdup("alpha");
    env->params[1].value = xstrdup("");
    env->params[2].name = xstrdup("unset");
    env->params[2].value = NULL;
    env->n_services = 2;
    env->services = xcalloc(2, sizeof(struct env_svc));
    env->services[0].name = xstrdup("web");
    env->services[0].port = port_base;
    env->services[1].name = xstrdup("db");
    env->services[1].port = port_base + 1;
    return env;
}

/* Creates environment `name` and returns its id. */
static int64_t
create(struct store *st, const char *name, int port_base)
{
    struct env *env = make_env(name, port_base);
    struct eph_err err = {0};
    int64_t id;

    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    id = env->id;
    env_free(env);
    return id;
}

/* All events of `target` (NULL: all), oldest first. */
static size_t
events_of(struct store *st, const char *target, struct event ***evs)
{
    struct eph_err err = {0};
    size_t n = 0;

    cr_assert_eq(store_event_list(st, target, 0, 1000, evs, &n, &err), 0, "%s", err.msg);
    return n;
}

static size_t
count_events(struct store *st, const char *target)
{
    struct event **evs = NULL;
    size_t n = events_of(st, target, &evs);

    event_list_free(evs, n);
    return n;
}

static void
expect_str_or_null(const char *got, const char *want, const char *what)
{
    if (want == NULL)
        cr_expect_null(got, "%s", what);
    else if (got == NULL)
        cr_expect_fail("%s: NULL, want '%s'", what, want);
    else
        cr_expect_str_eq(got, want, "%s", what);
}

/* Every field of b equals a's (the record sent and the record read back). */
static void
expect_same_env(const struct env *a, const struct env *b)
{
    cr_expect_eq(a->id, b->id);
    expect_str_or_null(b->name, a->name, "name");
    expect_str_or_null(b->project, a->project, "project");
    expect_str_or_null(b->ref, a->ref, "ref");
    expect_str_or_null(b->commit, a->commit, "commit");
    expect_str_or_null(b->owner, a->owner, "owner");
    cr_expect_eq(b->visibility, a->visibility);
    cr_expect_eq(b->links_since_ms, a->links_since_ms);
    expect_str_or_null(b->template_yaml, a->template_yaml, "template_yaml");
    cr_expect_eq(b->created_at_ms, a->created_at_ms);
    cr_expect_eq(b->expires_at_ms, a->expires_at_ms);
    cr_expect_eq(b->desired, a->desired);
    cr_expect_eq(b->phase, a->phase);
    expect_str_or_null(b->reason, a->reason, "reason");
    cr_expect_eq(b->phase_at_ms, a->phase_at_ms);
    cr_expect_eq(b->ready_at_ms, a->ready_at_ms);
    cr_expect_eq(b->sleep_after_s, a->sleep_after_s);
    cr_expect_eq(b->keep, a->keep);
    expect_str_or_null(b->schedule_awake, a->schedule_awake, "schedule_awake");
    expect_str_or_null(b->schedule_tz, a->schedule_tz, "schedule_tz");
    cr_expect_eq(b->wake_outside_hours, a->wake_outside_hours);
    cr_expect_eq(b->limit_memory_bytes, a->limit_memory_bytes);
    cr_expect_eq(b->limit_cpu_millis, a->limit_cpu_millis);
    cr_expect_eq(b->limit_pids, a->limit_pids);
    cr_expect_eq(b->last_activity_ms, a->last_activity_ms);
    expect_str_or_null(b->last_activity, a->last_activity, "last_activity");
    cr_expect_eq(b->slept_at_ms, a->slept_at_ms);
    cr_expect_eq(b->woke_at_ms, a->woke_at_ms);
    expect_str_or_null(b->sleep_cause, a->sleep_cause, "sleep_cause");
    expect_str_or_null(b->transition_reason, a->transition_reason, "transition_reason");
    cr_assert_eq(b->n_params, a->n_params);
    for (size_t i = 0; i < a->n_params; i++) {
        expect_str_or_null(b->params[i].name, a->params[i].name, "param name");
        expect_str_or_null(b->params[i].value, a->params[i].value, "param value");
    }
    cr_assert_eq(b->n_services, a->n_services);
    for (size_t i = 0; i < a->n_services; i++) {
        const struct env_svc *x = &a->services[i], *y = &b->services[i];

        expect_str_or_null(y->name, x->name, "service name");
        cr_expect_eq(y->port, x->port);
        cr_expect_eq(y->state, x->state);
        cr_expect_eq(y->pid, x->pid);
        cr_expect_eq(y->restarts, x->restarts);
        expect_str_or_null(y->reason, x->reason, "service reason");
        cr_expect_eq(y->started_at_ms, x->started_at_ms);
    }
}

/* ------------------------------------------------------------- schema */

Test(store, open_creates_the_schema_at_the_latest_version_in_wal_mode)
{
    struct store *st = open_store();
    struct stat sb;
    char *mode;

    cr_expect_eq(store_schema_version(st), LATEST);
    cr_expect_eq(raw_int("PRAGMA user_version"), LATEST);
    cr_expect_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
                         "('meta', 'projects', 'envs', 'services', 'events', 'tokens', 'users', "
                         "'sessions')"),
                 8);
    cr_expect_eq(raw_int("SELECT count(*) FROM sqlite_master WHERE name IN "
                         "('envs_live_name', 'events_target', 'users_identity')"),
                 3);
    cr_expect_eq(raw_int("SELECT count(*) FROM users"), 0, "the first start adds the admin");
    mode = raw_text("PRAGMA journal_mode");
    cr_expect_str_eq(mode, "wal");
    free(mode);
    cr_assert_eq(stat(db_path, &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0600, "token hashes are not for other users");
    store_close(st);
}

Test(store, reopening_is_idempotent)
{
    struct store *st = open_store();
    struct project *p = NULL;
    struct eph_err err = {0};

    cr_assert_eq(store_project_add(st, "shop", "/srv/git/shop", &alice, NULL, &err), 0);
    store_close(st);
    for (int i = 0; i < 3; i++) {
        st = open_store();
        cr_expect_eq(store_schema_version(st), LATEST);
        cr_expect_eq(count_events(st, NULL), 1, "no events appear on reopening");
        store_close(st);
    }
    st = open_store();
    cr_expect_eq(store_project_get(st, "shop", &p, &err), 0, "%s", err.msg);
    project_free(p);
    store_close(st);
}

Test(store, migrates_an_empty_version_0_database)
{
    struct store *st;

    raw_exec("CREATE TABLE unrelated (x INTEGER)");
    cr_assert_eq(raw_int("PRAGMA user_version"), 0);
    st = open_store();
    cr_expect_eq(store_schema_version(st), LATEST);
    cr_expect_eq(raw_int("PRAGMA user_version"), LATEST);
    cr_expect_eq(raw_int("SELECT count(*) FROM envs"), 0);
    cr_expect_eq(raw_int("SELECT count(*) FROM users"), 0, "no tokens: no admin user");
    cr_expect_eq(raw_int("SELECT count(*) FROM unrelated"), 0, "other tables are left alone");
    store_close(st);
}

/* The schema as migration step 1 left it (released, so frozen): a database
   of a server from before users, to migrate. */
static const char v1_schema[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE projects (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
    "  repo TEXT NOT NULL, created_by TEXT NOT NULL, created_at_ms INTEGER NOT NULL);"
    "CREATE TABLE envs (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, project TEXT,"
    "  ref TEXT, commit_sha TEXT, owner TEXT, template_yaml TEXT,"
    "  params_json TEXT NOT NULL DEFAULT '{}', created_at_ms INTEGER NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL DEFAULT 0, desired TEXT NOT NULL, phase TEXT NOT NULL,"
    "  reason TEXT, phase_at_ms INTEGER NOT NULL, ready_at_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX envs_live_name ON envs(name) WHERE phase != 'deleted';"
    "CREATE TABLE services (env_id INTEGER NOT NULL REFERENCES envs(id) ON DELETE CASCADE,"
    "  name TEXT NOT NULL, ord INTEGER NOT NULL, port INTEGER NOT NULL DEFAULT 0,"
    "  state TEXT NOT NULL, pid INTEGER NOT NULL DEFAULT 0, restarts INTEGER NOT NULL DEFAULT 0,"
    "  reason TEXT, started_at_ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (env_id, name));"
    "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at_ms INTEGER NOT NULL,"
    "  actor TEXT NOT NULL, source TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,"
    "  detail TEXT NOT NULL);"
    "CREATE INDEX events_target ON events(target, id);"
    "CREATE TABLE tokens (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,"
    "  hash TEXT NOT NULL UNIQUE, role TEXT NOT NULL, created_at_ms INTEGER NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL DEFAULT 0, last_used_ms INTEGER NOT NULL DEFAULT 0);"
    "PRAGMA user_version = 1;";

Test(store, migrating_a_version_1_server_gives_its_tokens_to_a_user_admin)
{
    struct store *st;
    struct eph_err err = {0};
    struct store_token *t = NULL;
    struct user *u = NULL;
    struct env *env = NULL;

    raw_exec(v1_schema);
    raw_exec("INSERT INTO tokens (name, hash, role, created_at_ms) VALUES "
             "('admin', '" HASH_A "', 'admin', 1700000000000), "
             "('ci', '" HASH_B "', 'member', 1700000005000);"
             "INSERT INTO envs (name, owner, created_at_ms, desired, phase, phase_at_ms) VALUES "
             "('fx', 'admin', 1700000001000, 'running', 'ready', 1700000001000);");
    st = open_store();
    cr_expect_eq(store_schema_version(st), LATEST);

    cr_assert_eq(store_user_get(st, "admin", &u, &err), 0, "%s", err.msg);
    cr_expect_str_eq(u->role, "admin");
    cr_expect_str_eq(u->provider, "local");
    cr_expect_str_eq(u->subject, "");
    cr_expect_str_eq(u->email, "");
    cr_expect_null(u->password_hash);
    cr_expect_eq(u->created_at_ms, 1700000000000, "as old as its oldest token");
    cr_expect_eq(u->last_login_ms, 0);
    user_free(u);

    cr_assert_eq(store_token_find(st, HASH_A, &t, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t->user, "admin");
    cr_expect_str_eq(t->role, "admin");
    cr_expect_eq(t->revoked_at_ms, 0);
    store_token_free(t);
    cr_assert_eq(store_token_find(st, HASH_B, &t, &err), 0, "%s", err.msg);
    cr_expect_str_eq(t->user, "admin", "every old token was the admin's");
    cr_expect_str_eq(t->name, "ci");
    store_token_free(t);

    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->visibility, VIS_TEAM);
    env_free(env);
    cr_expect_eq(count_events(st, NULL), 0, "a migration adds no event");
    store_close(st);

    /* Opening again changes nothing. */
    st = open_store();
    cr_expect_eq(raw_int("SELECT count(*) FROM users"), 1);
    store_close(st);
}

/* What migration step 2 added (released, so frozen): with v1_schema, a
   database of a server from before sleep, to migrate. */
static const char v2_step[] =
    "CREATE TABLE users (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,"
    "  email TEXT NOT NULL DEFAULT '', role TEXT NOT NULL, provider TEXT NOT NULL,"
    "  subject TEXT NOT NULL DEFAULT '', password_hash TEXT, created_at_ms INTEGER NOT NULL,"
    "  last_login_ms INTEGER NOT NULL DEFAULT 0);"
    "CREATE UNIQUE INDEX users_identity ON users(provider, subject) WHERE subject != '';"
    "CREATE TABLE sessions (id TEXT PRIMARY KEY, secret_hash TEXT NOT NULL,"
    "  user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    "  created_at_ms INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL,"
    "  expires_at_ms INTEGER NOT NULL, source TEXT NOT NULL DEFAULT '');"
    "ALTER TABLE tokens ADD COLUMN user_name TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tokens ADD COLUMN revoked_at_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN visibility TEXT NOT NULL DEFAULT 'team';"
    "PRAGMA user_version = 2;";

Test(store, migrating_a_version_2_server_keeps_its_environments_inheriting_sleep_settings)
{
    struct store *st;
    struct eph_err err = {0};
    struct env *env = NULL;

    raw_exec(v1_schema);
    raw_exec(v2_step);
    raw_exec("INSERT INTO envs (name, owner, created_at_ms, desired, phase, phase_at_ms, "
             "ready_at_ms, visibility) VALUES "
             "('fx', 'alice', 1700000001000, 'running', 'ready', 1700000002000, 1700000002000, "
             "'private');"
             "INSERT INTO services (env_id, name, ord, port, state, pid) VALUES "
             "(1, 'web', 0, 21000, 'healthy', 4242);");
    st = open_store();
    cr_expect_eq(store_schema_version(st), LATEST);
    cr_expect_eq(raw_int("PRAGMA user_version"), LATEST);

    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->phase, ENV_PHASE_READY);
    cr_expect_eq(env->visibility, VIS_PRIVATE);
    cr_expect_eq(env->ready_at_ms, 1700000002000);
    cr_expect_eq(env_svc_find(env, "web")->pid, 4242);
    cr_expect_eq(env->sleep_after_s, 0, "inherits the template's or server's");
    cr_expect_eq(env->wake_outside_hours, -1, "inherits");
    cr_expect_not(env->keep);
    cr_expect_str_eq(env->schedule_awake, "");
    cr_expect_str_eq(env->schedule_tz, "");
    cr_expect_eq(env->limit_memory_bytes, 0);
    cr_expect_eq(env->limit_cpu_millis, 0);
    cr_expect_eq(env->limit_pids, 0);
    cr_expect_eq(env->last_activity_ms, 0);
    cr_expect_str_eq(env->last_activity, "");
    cr_expect_eq(env->slept_at_ms, 0, "never slept");
    cr_expect_eq(env->woke_at_ms, 0);
    cr_expect_str_eq(env->sleep_cause, "");
    cr_expect_str_eq(env->transition_reason, "");
    env_free(env);
    cr_expect_eq(count_events(st, NULL), 0, "a migration adds no event");
    store_close(st);

    /* Opening again changes nothing; the old rows work with the new calls. */
    st = open_store();
    cr_expect_eq(store_env_set_activity(st, 1, 1700000003000, "request web", &err), 0, "%s",
                 err.msg);
    store_close(st);
    cr_expect_eq(raw_int("SELECT last_activity_ms FROM envs WHERE name = 'fx'"), 1700000003000);
}

/* What migration step 3 added (released, so frozen): with v1_schema and
   v2_step, a database of a server from before withdrawn links were kept. */
static const char v3_step[] =
    "ALTER TABLE envs ADD COLUMN sleep_after_s INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN keep INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN schedule_awake TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE envs ADD COLUMN schedule_tz TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE envs ADD COLUMN wake_outside_hours INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE envs ADD COLUMN limit_memory_bytes INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN limit_cpu_millis INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN limit_pids INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN last_activity_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN last_activity TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE envs ADD COLUMN slept_at_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN woke_at_ms INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE envs ADD COLUMN sleep_cause TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE envs ADD COLUMN transition_reason TEXT NOT NULL DEFAULT '';"
    "PRAGMA user_version = 3;";

Test(store, migrating_a_version_3_server_withdraws_no_share_link)
{
    struct store *st;
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t before;

    raw_exec(v1_schema);
    raw_exec(v2_step);
    raw_exec(v3_step);
    raw_exec("INSERT INTO envs (name, owner, created_at_ms, desired, phase, phase_at_ms, "
             "visibility, keep) VALUES "
             "('fx', 'alice', 1700000001000, 'running', 'ready', 1700000002000, 'link', 1);");
    st = open_store();
    cr_expect_eq(store_schema_version(st), LATEST);
    cr_expect_eq(raw_int("SELECT count(*) FROM envs WHERE links_since_ms IS NULL"), 1,
                 "existing rows: NULL");
    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->visibility, VIS_LINK);
    cr_expect_eq(env->links_since_ms, 0, "no link withdrawn: the links made so far still work");
    cr_expect(env->keep);
    env_free(env);
    cr_expect_eq(count_events(st, NULL), 0, "a migration adds no event");

    /* The old row works with the new calls. */
    before = time_wall_ms();
    cr_assert_eq(store_env_set_visibility(st, 1, VIS_TEAM, &alice, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0, "%s", err.msg);
    cr_expect_geq(env->links_since_ms, before);
    env_free(env);
    store_close(st);
}

Test(store, refuses_a_database_from_a_newer_version_and_leaves_it_alone)
{
    struct store *st = NULL;
    struct eph_err err = {0};
    char want[256];

    raw_exec("PRAGMA user_version = 99");
    cr_expect_eq(store_open(db_path, &st, &err), EPH_ESTORE);
    cr_expect_null(st);
    snprintf(want, sizeof(want),
             "store: '%s' has schema version 99, newer than this eph knows (%d)", db_path, LATEST);
    cr_expect_str_eq(err.msg, want);
    cr_expect_eq(raw_int("PRAGMA user_version"), 99);
    cr_expect_eq(raw_int("SELECT count(*) FROM sqlite_master"), 0);
}

Test(store, open_names_the_path_it_cannot_open)
{
    struct store *st = NULL;
    struct eph_err err = {0};
    char path[160];
    char want[256];

    snprintf(path, sizeof(path), "%s/missing/eph.db", dir);
    snprintf(want, sizeof(want), "store: cannot open '%s': ", path);
    cr_expect_eq(store_open(path, &st, &err), EPH_ESTORE);
    cr_expect_null(st);
    cr_expect_eq(strncmp(err.msg, want, strlen(want)), 0, "%s", err.msg);
}

Test(store, keeps_small_server_wide_values_in_meta)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    char *v = (char *)"untouched";

    cr_expect_eq(store_meta_get(st, "instance_id", &v, &err), EPH_ENOTFOUND);
    cr_expect_null(v);
    cr_expect_eq(store_meta_set(st, "instance_id", "abc", &err), 0, "%s", err.msg);
    cr_expect_eq(store_meta_set(st, "instance_id", "def", &err), 0, "%s", err.msg);
    cr_assert_eq(store_meta_get(st, "instance_id", &v, &err), 0, "%s", err.msg);
    cr_expect_str_eq(v, "def");
    free(v);
    cr_expect_eq(count_events(st, NULL), 0);
    store_close(st);
}

/* ------------------------------------------------------------- projects */

Test(store, adds_gets_and_lists_projects_by_name)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct project *p = NULL, *got = NULL, **ps = NULL;
    struct event **evs = NULL;
    size_t n = 0;

    cr_assert_eq(store_project_add(st, "shop", "https://git.example/shop.git", &alice, &p, &err), 0,
                 "%s", err.msg);
    cr_expect_gt(p->id, 0);
    cr_expect_str_eq(p->created_by, "alice");
    cr_expect_gt(p->created_at_ms, 0);
    cr_assert_eq(store_project_add(st, "blog", "/srv/git/blog", &alice, NULL, &err), 0);

    cr_assert_eq(store_project_get(st, "shop", &got, &err), 0, "%s", err.msg);
    cr_expect_eq(got->id, p->id);
    cr_expect_str_eq(got->name, "shop");
    cr_expect_str_eq(got->repo, "https://git.example/shop.git");
    cr_expect_str_eq(got->created_by, "alice");
    cr_expect_eq(got->created_at_ms, p->created_at_ms);

    cr_assert_eq(store_project_list(st, &ps, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(ps[0]->name, "blog");
    cr_expect_str_eq(ps[1]->name, "shop");

    cr_assert_eq(events_of(st, "project/shop", &evs), 1);
    cr_expect_str_eq(evs[0]->action, "project.add");
    cr_expect_str_eq(evs[0]->actor, "alice");
    cr_expect_str_eq(evs[0]->source, "127.0.0.1");
    cr_expect_str_eq(evs[0]->detail, "https://git.example/shop.git");
    event_list_free(evs, 1);
    project_list_free(ps, n);
    project_free(got);
    project_free(p);
    store_close(st);
}

Test(store, refuses_a_taken_project_name_and_names_a_missing_one)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct project *p = (struct project *)&err;

    cr_assert_eq(store_project_add(st, "shop", "/a", &alice, NULL, &err), 0);
    cr_expect_eq(store_project_add(st, "shop", "/b", &alice, &p, &err), EPH_ECONFLICT);
    cr_expect_str_eq(err.msg, "project 'shop' already exists");
    cr_expect_null(p);
    cr_expect_eq(count_events(st, NULL), 1, "the refused add left no event");
    cr_expect_eq(store_project_get(st, "nope", &p, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "project 'nope' not found");
    cr_expect_null(p);
    store_close(st);
}

/* ------------------------------------------------------------- environments */

Test(store, env_create_with_services_and_params_round_trips_every_field)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = make_env("fx", 21000), *by_name = NULL, *by_id = NULL;
    struct event **evs = NULL;
    int64_t before = time_wall_ms();
    char *text;

    /* Observed fields given at creation are not recorded. */
    env->services[0].pid = 77;
    env->services[0].reason = xstrdup("stale");
    env->reason = xstrdup("stale");
    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    cr_expect_gt(env->id, 0);
    cr_expect_geq(env->created_at_ms, before);
    cr_expect_eq(env->phase_at_ms, env->created_at_ms);
    cr_expect_eq(env->phase, ENV_PHASE_PENDING);
    cr_expect_eq(env->desired, ENV_WANT_RUNNING);
    cr_expect_null(env->reason);
    cr_expect_eq(env->services[0].pid, 0);
    cr_expect_null(env->services[0].reason);

    cr_assert_eq(store_env_get(st, "fx", &by_name, &err), 0, "%s", err.msg);
    expect_same_env(env, by_name);
    cr_assert_eq(store_env_get_by_id(st, env->id, &by_id, &err), 0, "%s", err.msg);
    expect_same_env(env, by_id);

    /* Readable with the sqlite3 CLI: enums by name, params as one JSON object. */
    text = raw_text("SELECT phase || ' ' || desired FROM envs");
    cr_expect_str_eq(text, "pending running");
    free(text);
    text = raw_text("SELECT params_json FROM envs");
    cr_expect_str_eq(text, "{\"zeta\":\"last \\\"quoted\\\" ünïcode\",\"alpha\":\"\","
                           "\"unset\":null}");
    free(text);
    text = raw_text("SELECT group_concat(state, ',') FROM services");
    cr_expect_str_eq(text, "pending,pending");
    free(text);

    cr_assert_eq(events_of(st, "env/fx", &evs), 1);
    cr_expect_str_eq(evs[0]->action, "env.create");
    cr_expect_str_eq(evs[0]->actor, "alice");
    cr_expect_str_eq(evs[0]->source, "127.0.0.1");
    cr_expect_str_eq(evs[0]->detail, "project shop at feature/x (0123456)");
    event_list_free(evs, 1);
    env_free(by_id);
    env_free(by_name);
    env_free(env);
    store_close(st);
}

Test(store, env_create_keeps_absent_fields_absent)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = env_new(), *got = NULL;

    env->name = xstrdup("bare");
    cr_assert_eq(store_env_create(st, env, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_get(st, "bare", &got, &err), 0, "%s", err.msg);
    expect_same_env(env, got);
    cr_expect_eq(got->n_params, 0);
    cr_expect_eq(got->n_services, 0);
    env_free(got);
    env_free(env);
    store_close(st);
}

Test(store, refuses_a_live_name_and_names_a_missing_environment)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *again = make_env("fx", 22000), *got = (struct env *)&err;

    create(st, "fx", 21000);
    cr_expect_eq(store_env_create(st, again, &alice, &err), EPH_ECONFLICT);
    cr_expect_str_eq(err.msg, "environment 'fx' already exists");
    cr_expect_eq(again->id, 0, "a refused create leaves the record as it was");
    cr_expect_eq(store_env_get(st, "nope", &got, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 'nope' not found");
    cr_expect_null(got);
    cr_expect_eq(store_env_get_by_id(st, 999, &got, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 999 not found");
    env_free(again);
    store_close(st);
}

Test(store, a_name_is_reusable_once_its_environment_is_deleted)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL, **envs = NULL;
    size_t n = 0;
    int64_t old = create(st, "fx", 21000), fresh;

    cr_assert_eq(store_env_set_phase(st, old, ENV_PHASE_DELETED, NULL, &err), 0, "%s", err.msg);
    cr_expect_eq(store_env_get(st, "fx", &env, &err), EPH_ENOTFOUND, "deleted is not found");
    fresh = create(st, "fx", 22000);
    cr_expect_gt(fresh, old, "ids are never reused");

    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->id, fresh);
    env_free(env);
    cr_assert_eq(store_env_get_by_id(st, old, &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->phase, ENV_PHASE_DELETED, "the deleted record stays");
    env_free(env);

    cr_assert_eq(store_env_list(st, false, &envs, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1);
    env_list_free(envs, n);
    cr_assert_eq(store_env_list(st, true, &envs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect_eq(envs[0]->id, old);
    cr_expect_eq(envs[1]->id, fresh);
    cr_expect_eq(envs[0]->services[0].port, 21000);
    cr_expect_eq(envs[1]->services[0].port, 22000);
    env_list_free(envs, n);

    /* Bringing the old one back while the name is taken again is a conflict. */
    cr_expect_eq(store_env_set_phase(st, old, ENV_PHASE_PENDING, NULL, &err), EPH_ECONFLICT);
    cr_expect_str_eq(err.msg, "environment 'fx' already exists");
    store_close(st);
}

Test(store, set_phase_appends_exactly_one_event_per_change_and_none_when_unchanged)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct event **evs = NULL;
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000);
    size_t n;

    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_STARTING, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_STARTING, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_FAILED, "web: exit 1", &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_FAILED, "web: exit 1", &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_FAILED, "db: exit 2", &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_STARTING, NULL, &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_READY, NULL, &err), 0);

    n = events_of(st, "env/fx", &evs);
    cr_assert_eq(n, 6);
    cr_expect_str_eq(evs[0]->action, "env.create");
    static const char *const want[] = {
        "pending -> starting",
        "starting -> failed: web: exit 1",
        "failed -> failed: db: exit 2",
        "failed -> starting",
        "starting -> ready",
    };
    for (size_t i = 0; i < ARRAY_LEN(want); i++) {
        cr_expect_str_eq(evs[i + 1]->action, "env.phase");
        cr_expect_str_eq(evs[i + 1]->actor, "system");
        cr_expect_str_eq(evs[i + 1]->source, "");
        cr_expect_str_eq(evs[i + 1]->detail, want[i]);
    }
    event_list_free(evs, n);

    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0, "%s", err.msg);
    cr_expect_eq(env->phase, ENV_PHASE_READY);
    cr_expect_null(env->reason);
    cr_expect_geq(env->phase_at_ms, env->created_at_ms);
    env_free(env);
    cr_expect_eq(store_env_set_phase(st, 999, ENV_PHASE_READY, NULL, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 999 not found");
    store_close(st);
}

Test(store, a_reason_change_alone_keeps_phase_at)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *a = NULL, *b = NULL;
    int64_t id = create(st, "fx", 21000);

    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_FAILED, "one", &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &a, &err), 0);
    usleep(5000);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_FAILED, "two", &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &b, &err), 0);
    cr_expect_str_eq(b->reason, "two");
    cr_expect_eq(b->phase_at_ms, a->phase_at_ms);
    env_free(a);
    env_free(b);
    store_close(st);
}

Test(store, ready_at_is_set_the_first_time_only)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000), first;

    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->ready_at_ms, 0);
    env_free(env);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_READY, NULL, &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    first = env->ready_at_ms;
    cr_expect_gt(first, 0);
    cr_expect_eq(env->phase_at_ms, first);
    env_free(env);

    usleep(5000);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_SLEEPING, NULL, &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_READY, NULL, &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->ready_at_ms, first);
    cr_expect_gt(env->phase_at_ms, first);
    env_free(env);
    store_close(st);
}

/* ------------------------------------------------------------- sleep */

Test(store, env_create_refuses_bad_sleep_settings_and_limits)
{
    static const struct {
        int64_t sleep_after_s;
        int wake;
        int64_t mem;
        const char *want;
    } bad[] = {
        {-2, -1, 0, "environment 'fx': sleep_after -2 is neither a duration nor never (-1)"},
        {0, 2, 0, "environment 'fx': wake_outside_hours 2 is not -1, 0 or 1"},
        {0, -2, 0, "environment 'fx': wake_outside_hours -2 is not -1, 0 or 1"},
        {0, -1, -1, "environment 'fx': a limit is negative"},
    };
    struct store *st = open_store();

    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct eph_err err = {0};
        struct env *env = make_env("fx", 21000);

        env->sleep_after_s = bad[i].sleep_after_s;
        env->wake_outside_hours = bad[i].wake;
        env->limit_memory_bytes = bad[i].mem;
        cr_expect_eq(store_env_create(st, env, &alice, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        env_free(env);
    }
    cr_expect_eq(raw_int("SELECT count(*) FROM envs"), 0);
    cr_expect_eq(count_events(st, NULL), 0);
    store_close(st);
}

Test(store, set_phase_stamps_slept_at_entering_sleeping_and_woke_at_leaving_it)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000), slept;

    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_READY, NULL, &err), 0);
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_SLEEPING, "idle for 30m", &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_gt(env->slept_at_ms, 0);
    cr_expect_eq(env->slept_at_ms, env->phase_at_ms);
    cr_expect_eq(env->woke_at_ms, 0);
    slept = env->slept_at_ms;
    env_free(env);

    usleep(5000);
    /* A reason change while asleep is no new sleep. */
    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_SLEEPING, "manual", &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->slept_at_ms, slept);
    env_free(env);

    cr_assert_eq(store_env_set_phase(st, id, ENV_PHASE_STARTING, NULL, &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_gt(env->woke_at_ms, slept);
    cr_expect_eq(env->woke_at_ms, env->phase_at_ms);
    cr_expect_eq(env->slept_at_ms, slept, "kept after the wake");
    env_free(env);

    /* Deleting a sleeping environment is no wake. */
    int64_t id2 = create(st, "fy", 22000);
    cr_assert_eq(store_env_set_phase(st, id2, ENV_PHASE_SLEEPING, NULL, &err), 0);
    cr_assert_eq(store_env_set_phase(st, id2, ENV_PHASE_DELETING, NULL, &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id2, &env, &err), 0);
    cr_expect_eq(env->woke_at_ms, 0);
    env_free(env);
    store_close(st);
}

Test(store, set_sleep_records_desired_cause_reason_and_an_event_by_the_actor)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    struct event **evs = NULL;
    int64_t id = create(st, "fx", 21000);
    char *text;
    size_t n;

    cr_assert_eq(
        store_env_set_sleep(st, id, true, "idle", "idle for 30m (last: request web)", NULL, &err),
        0, "%s", err.msg);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->desired, ENV_WANT_ASLEEP);
    cr_expect_str_eq(env->sleep_cause, "idle");
    cr_expect_str_eq(env->transition_reason, "idle for 30m (last: request web)");
    env_free(env);
    text = raw_text("SELECT desired FROM envs");
    cr_expect_str_eq(text, "asleep", "stored by name");
    free(text);

    cr_assert_eq(store_env_set_sleep(st, id, false, "ignored", "woken by alice", &alice, &err), 0);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->desired, ENV_WANT_RUNNING);
    cr_expect_str_eq(env->sleep_cause, "", "no cause while running");
    cr_expect_str_eq(env->transition_reason, "woken by alice");
    env_free(env);

    n = events_of(st, "env/fx", &evs);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(evs[1]->action, "env.sleep");
    cr_expect_str_eq(evs[1]->actor, "system");
    cr_expect_str_eq(evs[1]->detail, "idle for 30m (last: request web)");
    cr_expect_str_eq(evs[2]->action, "env.wake");
    cr_expect_str_eq(evs[2]->actor, "alice");
    cr_expect_str_eq(evs[2]->source, "127.0.0.1");
    cr_expect_str_eq(evs[2]->detail, "woken by alice");
    event_list_free(evs, n);

    /* A deletion is never undone by a wake. */
    cr_assert_eq(store_env_set_desired(st, id, ENV_WANT_DELETED, &alice, "env.delete", "", &err),
                 0);
    cr_expect_eq(store_env_set_sleep(st, id, false, NULL, "request web", NULL, &err),
                 EPH_ECONFLICT);
    cr_expect_str_eq(err.msg, "environment 'fx' is being deleted");
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->desired, ENV_WANT_DELETED);
    env_free(env);
    cr_expect_eq(count_events(st, "env/fx"), 4, "no event for the refused wake");
    cr_expect_eq(store_env_set_sleep(st, 999, true, "manual", "x", NULL, &err), EPH_ENOTFOUND);
    store_close(st);
}

Test(store, keep_changes_with_one_event_and_kept_ones_are_counted_per_owner)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = make_env("fx", 21000);
    struct event **evs = NULL;
    int64_t a, b, c, n = -1;
    size_t count;

    env->keep = false;
    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    a = env->id;
    env_free(env);
    b = create(st, "fy", 22000); /* kept at creation (make_env) */
    env = make_env("fz", 23000);
    free(env->owner);
    env->owner = xstrdup("bob");
    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    c = env->id;
    env_free(env);

    cr_assert_eq(store_env_count_kept(st, "alice", &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1);
    cr_assert_eq(store_env_set_keep(st, a, true, &alice, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_keep(st, a, true, &alice, &err), 0, "unchanged: a no-op");
    cr_assert_eq(store_env_count_kept(st, "alice", &n, &err), 0);
    cr_expect_eq(n, 2);
    cr_assert_eq(store_env_count_kept(st, NULL, &n, &err), 0);
    cr_expect_eq(n, 3);

    /* One on its way out no longer counts. */
    cr_assert_eq(store_env_set_desired(st, b, ENV_WANT_DELETED, &alice, "env.delete", "", &err), 0);
    cr_assert_eq(store_env_count_kept(st, "alice", &n, &err), 0);
    cr_expect_eq(n, 1);
    cr_assert_eq(store_env_set_keep(st, c, false, &alice, &err), 0);
    cr_assert_eq(store_env_count_kept(st, "bob", &n, &err), 0);
    cr_expect_eq(n, 0);

    count = events_of(st, "env/fx", &evs);
    cr_assert_eq(count, 2);
    cr_expect_str_eq(evs[1]->action, "env.keep");
    cr_expect_str_eq(evs[1]->actor, "alice");
    cr_expect_str_eq(evs[1]->detail, "keep on");
    event_list_free(evs, count);
    count = events_of(st, "env/fz", &evs);
    cr_assert_eq(count, 2);
    cr_expect_str_eq(evs[1]->detail, "keep off");
    event_list_free(evs, count);
    cr_expect_eq(store_env_set_keep(st, 999, true, &alice, &err), EPH_ENOTFOUND);
    store_close(st);
}

Test(store, activity_is_persisted_without_an_event)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000);

    cr_assert_eq(store_env_set_activity(st, id, 1800000000123, "websocket web", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(store_env_get(st, "fx", &env, &err), 0);
    cr_expect_eq(env->last_activity_ms, 1800000000123);
    cr_expect_str_eq(env->last_activity, "websocket web");
    env_free(env);
    cr_expect_eq(count_events(st, "env/fx"), 1, "only env.create");
    cr_expect_eq(store_env_set_activity(st, 999, 1, "api get", &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 999 not found");
    store_close(st);
}

Test(store, set_desired_and_set_expiry_record_events_with_actor_and_source)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_actor bob = {.name = "ci", .source = "10.0.0.7"};
    struct event **evs = NULL;
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000);
    size_t n;

    cr_assert_eq(store_env_set_expiry(st, id, 2000000000000, &bob, "by 2h", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(
        store_env_set_desired(st, id, ENV_WANT_DELETED, &alice, "env.delete", "eph rm fx", &err), 0,
        "%s", err.msg);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->expires_at_ms, 2000000000000);
    cr_expect_eq(env->desired, ENV_WANT_DELETED);
    cr_expect_eq(env->phase, ENV_PHASE_PENDING, "desired is not observed");
    env_free(env);

    n = events_of(st, "env/fx", &evs);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(evs[1]->action, "env.extend");
    cr_expect_str_eq(evs[1]->actor, "ci");
    cr_expect_str_eq(evs[1]->source, "10.0.0.7");
    cr_expect_str_eq(evs[1]->detail, "by 2h");
    cr_expect_str_eq(evs[2]->action, "env.delete");
    cr_expect_str_eq(evs[2]->actor, "alice");
    cr_expect_str_eq(evs[2]->source, "127.0.0.1");
    cr_expect_str_eq(evs[2]->detail, "eph rm fx");
    cr_expect_gt(evs[2]->id, evs[1]->id);
    cr_expect_geq(evs[2]->at_ms, evs[1]->at_ms);
    event_list_free(evs, n);

    cr_expect_eq(store_env_set_desired(st, 999, ENV_WANT_DELETED, &alice, "env.delete", "", &err),
                 EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 999 not found");
    cr_expect_eq(store_env_set_expiry(st, 999, 1, &alice, "", &err), EPH_ENOTFOUND);
    cr_expect_eq(count_events(st, NULL), 3, "a missing environment gets no event");
    store_close(st);
}

Test(store, svc_update_round_trips_the_observed_fields)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000);
    struct env_svc web = {
        .name = (char *)"web",
        .port = 1,
        .state = SVC_STATE_RESTARTING,
        .pid = 4242,
        .restarts = 3,
        .reason = (char *)"exit 1",
        .started_at_ms = 1700000000123,
    };
    struct env_svc ghost = {.name = (char *)"ghost"};

    cr_assert_eq(store_svc_update(st, id, &web, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->services[0].state, SVC_STATE_RESTARTING);
    cr_expect_eq(env->services[0].pid, 4242);
    cr_expect_eq(env->services[0].restarts, 3);
    cr_expect_str_eq(env->services[0].reason, "exit 1");
    cr_expect_eq(env->services[0].started_at_ms, 1700000000123);
    cr_expect_eq(env->services[0].port, 21000, "the port is kept");
    cr_expect_eq(env->services[1].state, SVC_STATE_PENDING, "the other service is untouched");
    env_free(env);

    web.state = SVC_STATE_HEALTHY;
    web.reason = NULL;
    cr_assert_eq(store_svc_update(st, id, &web, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0);
    cr_expect_eq(env->services[0].state, SVC_STATE_HEALTHY);
    cr_expect_null(env->services[0].reason);
    env_free(env);

    cr_expect_eq(store_svc_update(st, id, &ghost, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "service 'ghost' of environment 1 not found");
    cr_expect_eq(count_events(st, NULL), 1, "only env.create: updates add no event");
    store_close(st);
}

Test(store, ports_in_use_leave_out_deleted_environments)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = env_new();
    int *ports = NULL;
    size_t n = 0;
    int64_t a = create(st, "a", 21000);
    int sum = 0;

    create(st, "b", 22000);
    env->name = xstrdup("c");
    env->n_services = 1;
    env->services = xcalloc(1, sizeof(struct env_svc));
    env->services[0].name = xstrdup("worker"); /* no port */
    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    env_free(env);

    cr_assert_eq(store_ports_in_use(st, &ports, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 4);
    free(ports);
    cr_assert_eq(store_env_set_phase(st, a, ENV_PHASE_DELETING, NULL, &err), 0);
    cr_assert_eq(store_ports_in_use(st, &ports, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 4, "deleting still holds its ports");
    free(ports);
    cr_assert_eq(store_env_set_phase(st, a, ENV_PHASE_DELETED, NULL, &err), 0);
    cr_assert_eq(store_ports_in_use(st, &ports, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    for (size_t i = 0; i < n; i++)
        sum += ports[i];
    cr_expect_eq(sum, 22000 + 22001);
    free(ports);
    store_close(st);
}

Test(store, lists_a_thousand_environments_with_their_services_in_milliseconds)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env **envs = NULL;
    size_t n = 0;
    int64_t t0;
    int64_t took_ms;

    for (int i = 0; i < 1000; i++) {
        char name[32];

        snprintf(name, sizeof(name), "env-%d", i);
        create(st, name, 20000 + 2 * i);
    }
    t0 = time_mono_ms();
    cr_assert_eq(store_env_list(st, false, &envs, &n, &err), 0, "%s", err.msg);
    took_ms = time_mono_ms() - t0;
    cr_log_info("listed 1000 environments in %" PRId64 " ms", took_ms);
    cr_expect_lt(took_ms, 500, "took %" PRId64 " ms (ASan build)", took_ms);
    cr_assert_eq(n, 1000);
    for (size_t i = 0; i < n; i++) {
        char name[32];

        snprintf(name, sizeof(name), "env-%zu", i);
        cr_assert_str_eq(envs[i]->name, name);
        cr_assert_eq(envs[i]->n_services, 2);
        cr_assert_str_eq(envs[i]->services[0].name, "web");
        cr_assert_str_eq(envs[i]->services[1].name, "db");
        cr_assert_eq(envs[i]->services[1].port, 20000 + 2 * (int)i + 1);
        cr_assert_eq(envs[i]->n_params, 3);
    }
    env_list_free(envs, n);
    store_close(st);
}

Test(store, visibility_round_trips_and_changes_with_one_event)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = make_env("fx", 21000), *got = NULL, **envs = NULL;
    struct event **evs = NULL;
    char *text;
    size_t n = 0;
    int64_t team;

    env->visibility = VIS_PRIVATE;
    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    cr_expect_eq(env->visibility, VIS_PRIVATE);
    cr_assert_eq(store_env_get(st, "fx", &got, &err), 0, "%s", err.msg);
    expect_same_env(env, got);
    env_free(got);
    text = raw_text("SELECT visibility FROM envs WHERE name = 'fx'");
    cr_expect_str_eq(text, "private", "stored by name");
    free(text);
    team = create(st, "plain", 22000);
    cr_assert_eq(store_env_get_by_id(st, team, &got, &err), 0, "%s", err.msg);
    cr_expect_eq(got->visibility, VIS_TEAM, "the default");
    env_free(got);

    cr_assert_eq(store_env_set_visibility(st, env->id, VIS_LINK, &alice, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_visibility(st, env->id, VIS_LINK, &alice, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_visibility(st, env->id, VIS_TEAM, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_list(st, false, &envs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect_eq(envs[0]->visibility, VIS_TEAM);
    env_list_free(envs, n);

    n = events_of(st, "env/fx", &evs);
    cr_assert_eq(n, 3, "create and two changes: an unchanged visibility adds no event");
    cr_expect_str_eq(evs[1]->action, "env.visibility");
    cr_expect_str_eq(evs[1]->actor, "alice");
    cr_expect_str_eq(evs[1]->detail, "private -> link");
    cr_expect_str_eq(evs[2]->actor, "system");
    cr_expect_str_eq(evs[2]->detail, "link -> team");
    event_list_free(evs, n);

    cr_expect_eq(store_env_set_visibility(st, 999, VIS_PRIVATE, &alice, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "environment 999 not found");
    cr_expect_eq(store_env_set_visibility(st, team, (enum visibility)42, &alice, &err), EPH_EINVAL);
    env->visibility = (enum visibility)42;
    free(env->name);
    env->name = xstrdup("odd");
    cr_expect_eq(store_env_create(st, env, &alice, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "environment 'odd' has an unknown visibility (42)");
    env_free(env);
    store_close(st);
}

/* The visibility of environment `id` and when its links were last withdrawn. */
static void
expect_links(struct store *st, int64_t id, enum visibility vis, int64_t since_min,
             int64_t since_max, const char *when)
{
    struct env *env = NULL;
    struct eph_err err = {0};

    cr_assert_eq(store_env_get_by_id(st, id, &env, &err), 0, "%s: %s", when, err.msg);
    cr_expect_eq(env->visibility, vis, "%s: visibility %d", when, (int)env->visibility);
    cr_expect(env->links_since_ms >= since_min && env->links_since_ms <= since_max,
              "%s: links_since_ms %" PRId64 ", want %" PRId64 "..%" PRId64, when,
              env->links_since_ms, since_min, since_max);
    env_free(env);
}

Test(store, leaving_link_visibility_withdraws_links_and_sharing_again_keeps_them_withdrawn)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    int64_t id = create(st, "fx", 21000);
    int64_t t0, t1;

    expect_links(st, id, VIS_TEAM, 0, 0, "new");
    cr_assert_eq(store_env_set_visibility(st, id, VIS_LINK, &alice, &err), 0, "%s", err.msg);
    expect_links(st, id, VIS_LINK, 0, 0, "team -> link withdraws nothing");

    t0 = time_wall_ms();
    cr_assert_eq(store_env_set_visibility(st, id, VIS_PRIVATE, &alice, &err), 0, "%s", err.msg);
    t1 = time_wall_ms();
    expect_links(st, id, VIS_PRIVATE, t0, t1, "link -> private");
    cr_assert_eq(store_env_set_visibility(st, id, VIS_TEAM, &alice, &err), 0, "%s", err.msg);
    expect_links(st, id, VIS_TEAM, t0, t1, "private -> team keeps the time");
    cr_assert_eq(store_env_set_visibility(st, id, VIS_LINK, &alice, &err), 0, "%s", err.msg);
    expect_links(st, id, VIS_LINK, t0, t1, "shared again: the old links stay withdrawn");
    cr_assert_eq(store_env_set_visibility(st, id, VIS_LINK, &alice, &err), 0, "%s", err.msg);
    expect_links(st, id, VIS_LINK, t0, t1, "unchanged");

    /* A wall clock set back never revives a link. */
    raw_exec("UPDATE envs SET links_since_ms = 4102444800000");
    cr_assert_eq(store_env_set_visibility(st, id, VIS_TEAM, &alice, &err), 0, "%s", err.msg);
    expect_links(st, id, VIS_TEAM, 4102444800000, 4102444800000, "never moved back");
    store_close(st);
}

Test(store, an_unknown_visibility_is_refused_at_load)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = NULL;
    int64_t id = create(st, "fx", 21000);

    raw_exec("UPDATE envs SET visibility = 'public'");
    cr_expect_eq(store_env_get_by_id(st, id, &env, &err), EPH_ESTORE);
    cr_expect_str_eq(err.msg, "store: environment 1: unknown visibility 'public'");
    cr_expect_null(env);
    cr_expect_eq(store_env_set_visibility(st, id, VIS_PRIVATE, &alice, &err), EPH_ESTORE);
    store_close(st);
}

Test(store, count_live_leaves_out_deleted_deleting_and_unwanted_environments)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *bobs = make_env("bobs", 29000);
    int64_t n = -1;
    int64_t a = create(st, "a", 21000), b = create(st, "b", 22000), c = create(st, "c", 23000);

    create(st, "d", 24000);
    free(bobs->owner);
    bobs->owner = xstrdup("bob");
    cr_assert_eq(store_env_create(st, bobs, &alice, &err), 0, "%s", err.msg);
    env_free(bobs);

    cr_assert_eq(store_env_count_live(st, NULL, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 5);
    cr_assert_eq(store_env_count_live(st, "alice", &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 4);
    cr_assert_eq(store_env_count_live(st, "bob", &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1);
    cr_assert_eq(store_env_count_live(st, "carol", &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 0);

    cr_assert_eq(store_env_set_phase(st, a, ENV_PHASE_DELETED, NULL, &err), 0);
    cr_assert_eq(store_env_set_phase(st, b, ENV_PHASE_DELETING, NULL, &err), 0);
    cr_assert_eq(store_env_set_desired(st, c, ENV_WANT_DELETED, &alice, "env.delete", "", &err), 0);
    cr_assert_eq(store_env_count_live(st, "alice", &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1, "only d is live");
    cr_assert_eq(store_env_count_live(st, NULL, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 2);
    store_close(st);
}

/* ------------------------------------------------------------- events */

Test(store, event_list_pages_by_after_id_and_limit_and_filters_by_target)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct event **evs = NULL;
    size_t n = 0;

    for (int i = 1; i <= 10; i++) {
        char detail[16];

        snprintf(detail, sizeof(detail), "n%d", i);
        cr_assert_eq(store_event_append(st, &alice, "test.note", i % 2 ? "env/odd" : "env/even",
                                        detail, &err),
                     0, "%s", err.msg);
    }

    /* Oldest first from the beginning, then the next page after the last id. */
    cr_assert_eq(store_event_list(st, NULL, 0, 4, &evs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(evs[0]->detail, "n1");
    cr_expect_str_eq(evs[3]->detail, "n4");
    int64_t last = evs[3]->id;
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, NULL, last, 4, &evs, &n, &err), 0);
    cr_assert_eq(n, 4);
    cr_expect_str_eq(evs[0]->detail, "n5");
    cr_expect_gt(evs[0]->id, last);
    last = evs[3]->id;
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, NULL, last, 4, &evs, &n, &err), 0);
    cr_assert_eq(n, 2, "the last page is short");
    last = evs[1]->id;
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, NULL, last, 4, &evs, &n, &err), 0);
    cr_expect_eq(n, 0);
    cr_expect_null(evs);

    /* The newest N, still oldest first. */
    cr_assert_eq(store_event_list(st, NULL, -1, 3, &evs, &n, &err), 0);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(evs[0]->detail, "n8");
    cr_expect_str_eq(evs[1]->detail, "n9");
    cr_expect_str_eq(evs[2]->detail, "n10");
    cr_expect_str_eq(evs[2]->actor, "alice");
    cr_expect_str_eq(evs[2]->source, "127.0.0.1");
    cr_expect_str_eq(evs[2]->action, "test.note");
    cr_expect_gt(evs[2]->at_ms, 0);
    event_list_free(evs, n);

    /* By target, with paging and newest-N too. */
    cr_assert_eq(store_event_list(st, "env/even", 0, 100, &evs, &n, &err), 0);
    cr_assert_eq(n, 5);
    for (size_t i = 0; i < n; i++)
        cr_expect_str_eq(evs[i]->target, "env/even");
    cr_expect_str_eq(evs[0]->detail, "n2");
    last = evs[1]->id;
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, "env/even", last, 2, &evs, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(evs[0]->detail, "n6");
    cr_expect_str_eq(evs[1]->detail, "n8");
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, "env/odd", -1, 2, &evs, &n, &err), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(evs[0]->detail, "n7");
    cr_expect_str_eq(evs[1]->detail, "n9");
    event_list_free(evs, n);
    cr_assert_eq(store_event_list(st, "env/none", -1, 2, &evs, &n, &err), 0);
    cr_expect_eq(n, 0);

    /* Limits: above 1000 is cut, negative is refused. */
    cr_assert_eq(store_event_list(st, NULL, -1, 5000, &evs, &n, &err), 0);
    cr_expect_eq(n, 10);
    event_list_free(evs, n);
    cr_expect_eq(store_event_list(st, NULL, 0, -1, &evs, &n, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "event limit -1 is negative");
    store_close(st);
}

Test(store, event_list_returns_at_most_1000)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct event **evs = NULL;
    size_t n = 0;

    raw_exec("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1200) "
             "INSERT INTO events (at_ms, actor, source, action, target, detail) "
             "SELECT i, 'system', '', 'test.bulk', 'env/x', 'n' || i FROM c");
    cr_assert_eq(store_event_list(st, NULL, -1, 1000000, &evs, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1000);
    cr_expect_str_eq(evs[0]->detail, "n201");
    cr_expect_str_eq(evs[999]->detail, "n1200");
    event_list_free(evs, n);
    store_close(st);
}

/* ------------------------------------------------------------- tokens */

Test(store, tokens_are_added_found_touched_and_counted)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_token *t = NULL;
    struct event **evs = NULL;
    int64_t count = -1, id = 0, id2 = 0;
    int64_t before = time_wall_ms();

    add_user(st, "admin", "admin");
    add_user(st, "alice", "member");
    cr_assert_eq(store_token_count(st, &count, &err), 0, "%s", err.msg);
    cr_expect_eq(count, 0, "none at first start");
    cr_assert_eq(store_token_add(st, "admin", HASH_A, "admin", "admin", 0, &alice, &id, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(
        store_token_add(st, "ci", HASH_B, "member", "alice", 4102444800000, &alice, &id2, &err), 0,
        "%s", err.msg);
    cr_expect_gt(id2, id);
    cr_assert_eq(store_token_count(st, &count, &err), 0);
    cr_expect_eq(count, 2);

    cr_assert_eq(store_token_find(st, HASH_B, &t, &err), 0, "%s", err.msg);
    cr_expect_eq(t->id, id2);
    cr_expect_str_eq(t->name, "ci");
    cr_expect_str_eq(t->role, "member");
    cr_expect_str_eq(t->user, "alice");
    cr_expect_str_eq(t->hash, HASH_B);
    cr_expect_eq(t->revoked_at_ms, 0);
    cr_expect_geq(t->created_at_ms, before);
    cr_expect_eq(t->expires_at_ms, 4102444800000);
    cr_expect_eq(t->last_used_ms, 0);
    store_token_free(t);

    cr_assert_eq(store_token_touch(st, id2, 1800000000000, &err), 0, "%s", err.msg);
    cr_assert_eq(store_token_find(st, HASH_B, &t, &err), 0);
    cr_expect_eq(t->last_used_ms, 1800000000000);
    store_token_free(t);
    cr_expect_eq(store_token_touch(st, 999, 1, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "token 999 not found");

    cr_assert_eq(events_of(st, "token/ci", &evs), 1);
    cr_expect_str_eq(evs[0]->action, "token.create");
    cr_expect_str_eq(evs[0]->actor, "alice");
    cr_expect_str_eq(evs[0]->detail, "user alice, role member, expires 2100-01-01T00:00:00Z");
    event_list_free(evs, 1);
    cr_assert_eq(events_of(st, "token/admin", &evs), 1);
    cr_expect_str_eq(evs[0]->detail, "user admin, role admin");
    event_list_free(evs, 1);

    t = (struct store_token *)&err;
    cr_expect_eq(store_token_find(st, HASH_C, &t, &err), EPH_ENOTFOUND);
    cr_expect_null(t);
    cr_expect_eq(store_token_add(st, "dup", HASH_A, "viewer", "alice", 0, &alice, NULL, &err),
                 EPH_ECONFLICT);
    cr_expect_null(strstr(err.msg, HASH_A), "the hash is never in a message");
    cr_expect_eq(store_token_add(st, "dup", HASH_C, "viewer", "ghost", 0, &alice, NULL, &err),
                 EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'ghost' not found");
    cr_expect_eq(count_events(st, "token/dup"), 0);
    cr_assert_eq(store_token_count(st, &count, &err), 0);
    cr_expect_eq(count, 2, "refused adds stored nothing");
    store_close(st);
}

Test(store, an_expired_token_is_not_found)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_token *t = NULL;
    int64_t count = 0;

    add_user(st, "alice", "member");
    cr_assert_eq(store_token_add(st, "old", HASH_A, "viewer", "alice", time_wall_ms() - 1000,
                                 &alice, NULL, &err),
                 0, "%s", err.msg);
    cr_expect_eq(store_token_find(st, HASH_A, &t, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "token not found");
    cr_expect_null(t);
    cr_assert_eq(store_token_count(st, &count, &err), 0);
    cr_expect_eq(count, 1, "expired tokens still count");
    store_close(st);
}

Test(store, tokens_are_listed_by_user_and_revoked_ones_are_gone)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_token **ts = NULL, *t = NULL;
    struct event **evs = NULL;
    size_t n = 0;
    int64_t a = 0, b = 0, c = 0, count = 0;
    int64_t before = time_wall_ms();

    add_user(st, "alice", "member");
    add_user(st, "bob", "viewer");
    cr_assert_eq(store_token_add(st, "laptop", HASH_A, "member", "alice", 0, &alice, &a, &err), 0);
    cr_assert_eq(store_token_add(st, "ci", HASH_B, "viewer", "bob", 0, &alice, &b, &err), 0);
    cr_assert_eq(store_token_add(st, "ci", HASH_C, "viewer", "alice", 0, &alice, &c, &err), 0,
                 "token names need not be unique");

    cr_assert_eq(store_token_list(st, NULL, &ts, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_expect_eq(ts[0]->id, a);
    cr_expect_eq(ts[1]->id, b);
    cr_expect_eq(ts[2]->id, c);
    cr_expect_str_eq(ts[1]->user, "bob");
    cr_expect_str_eq(ts[1]->hash, HASH_B);
    store_token_list_free(ts, n);
    cr_assert_eq(store_token_list(st, "alice", &ts, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect_eq(ts[0]->id, a);
    cr_expect_eq(ts[1]->id, c);
    store_token_list_free(ts, n);

    cr_assert_eq(store_token_revoke(st, a, &alice, &err), 0, "%s", err.msg);
    cr_expect_eq(store_token_find(st, HASH_A, &t, &err), EPH_ENOTFOUND, "revoked is not found");
    cr_expect_null(t);
    cr_assert_eq(store_token_get(st, a, &t, &err), 0, "%s", err.msg);
    cr_expect_geq(t->revoked_at_ms, before, "get still shows it, revoked");
    cr_expect_str_eq(t->name, "laptop");
    store_token_free(t);
    cr_assert_eq(store_token_list(st, "alice", &ts, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_expect_eq(ts[0]->id, c);
    store_token_list_free(ts, n);
    cr_assert_eq(store_token_list(st, "carol", &ts, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 0);
    cr_expect_null(ts);

    cr_assert_eq(events_of(st, "token/laptop", &evs), 2);
    cr_expect_str_eq(evs[1]->action, "token.revoke");
    cr_expect_str_eq(evs[1]->actor, "alice");
    cr_expect_str_eq(evs[1]->detail, "user alice");
    event_list_free(evs, 2);

    cr_expect_eq(store_token_revoke(st, a, &alice, &err), EPH_ENOTFOUND, "only once");
    cr_expect_str_eq(err.msg, "token 1 not found");
    cr_expect_eq(store_token_revoke(st, 999, &alice, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "token 999 not found");
    cr_expect_eq(store_token_get(st, 999, &t, &err), EPH_ENOTFOUND);
    cr_expect_null(t);
    cr_expect_eq(count_events(st, "token/laptop"), 2, "a refused revoke adds no event");
    cr_assert_eq(store_token_count(st, &count, &err), 0);
    cr_expect_eq(count, 3, "revoked tokens still count: it is not a first start");
    store_close(st);
}

/* ------------------------------------------------------------- atomicity */

Test(store, a_failed_transaction_leaves_no_event_and_no_partial_rows)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *dup_svc = make_env("twice", 23000);
    struct env *dup_param = make_env("params", 24000);
    struct env *live = make_env("fx", 25000);

    create(st, "fx", 21000);
    cr_expect_eq(store_env_create(st, live, &alice, &err), EPH_ECONFLICT);

    /* The envs row goes in before the second "web" fails: it must go too. */
    free(dup_svc->services[1].name);
    dup_svc->services[1].name = xstrdup("web");
    cr_expect_eq(store_env_create(st, dup_svc, &alice, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "service 'web' appears twice in environment 'twice'");
    cr_expect_eq(dup_svc->id, 0);

    free(dup_param->params[1].name);
    dup_param->params[1].name = xstrdup("zeta");
    cr_expect_eq(store_env_create(st, dup_param, &alice, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "parameter 'zeta' given twice");

    cr_expect_eq(raw_int("SELECT count(*) FROM envs"), 1);
    cr_expect_eq(raw_int("SELECT count(*) FROM services"), 2);
    cr_expect_eq(raw_int("SELECT count(*) FROM events"), 1);
    cr_expect_eq(count_events(st, NULL), 1);

    /* The handle is still usable: no transaction was left open. */
    create(st, "twice", 23000);
    cr_expect_eq(raw_int("SELECT count(*) FROM envs"), 2);
    env_free(dup_svc);
    env_free(dup_param);
    env_free(live);
    store_close(st);
}

Test(store, data_survives_close_and_reopen)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct env *env = make_env("fx", 21000), *got = NULL;
    struct store_token *t = NULL;
    char *v = NULL;

    cr_assert_eq(store_env_create(st, env, &alice, &err), 0, "%s", err.msg);
    cr_assert_eq(store_env_set_phase(st, env->id, ENV_PHASE_READY, NULL, &err), 0);
    add_user(st, "alice", "member");
    cr_assert_eq(store_token_add(st, "ci", HASH_A, "member", "alice", 0, &alice, NULL, &err), 0);
    cr_assert_eq(store_meta_set(st, "instance_id", "0011223344556677", &err), 0);
    store_close(st);

    st = open_store();
    cr_assert_eq(store_env_get(st, "fx", &got, &err), 0, "%s", err.msg);
    env->phase = ENV_PHASE_READY;
    env->phase_at_ms = got->phase_at_ms;
    env->ready_at_ms = got->ready_at_ms;
    cr_expect_gt(got->ready_at_ms, 0);
    expect_same_env(env, got);
    cr_expect_eq(store_token_find(st, HASH_A, &t, &err), 0, "%s", err.msg);
    cr_expect_eq(store_meta_get(st, "instance_id", &v, &err), 0, "%s", err.msg);
    cr_expect_str_eq(v, "0011223344556677");
    cr_expect_eq(count_events(st, NULL), 4, "create, phase, user.add, token.create");
    free(v);
    store_token_free(t);
    env_free(got);
    env_free(env);
    store_close(st);
}
