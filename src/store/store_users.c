/*
 * store/store_users.c - the users and sessions half of store.h: people, the
 * provider identities they sign in with, their password hashes, and their
 * browser sessions. Uses store.c's statement cache, transactions and event
 * log (store_int.h), with the same rules: values only through bound
 * parameters, every mutation and its event in one transaction.
 *
 * Events name a user as "user/<name>". Neither a password hash nor a
 * session's secret hash ever reaches an event or a message; a session is
 * named by the first 8 digits of its (public) id.
 */
#include "store/store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* Column list shared by the user queries and user_from_row(): keep in step. */
#define USER_COLS                                                                                  \
    "id, name, email, role, provider, subject, password_hash, created_at_ms, last_login_ms"

/* How much of a session id events and messages show: enough to tell
   sessions apart in a log, as a short commit sha does. */
#define SESSION_ID_SHOWN 8

static const char *const users_sql[SU_COUNT] = {
    [SU_USER_INSERT] = "INSERT INTO users (name, email, role, provider, subject, password_hash, "
                       "created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SU_USER_GET] = "SELECT " USER_COLS " FROM users WHERE name = ?1",
    /* The literal subject != '' lets SQLite use the partial index users_identity. */
    [SU_USER_BY_IDENTITY] = "SELECT " USER_COLS " FROM users "
                            "WHERE provider = ?1 AND subject = ?2 AND subject != ''",
    [SU_USER_LIST] = "SELECT " USER_COLS " FROM users ORDER BY name",
    [SU_USER_SET_ROLE] = "UPDATE users SET role = ?2 WHERE name = ?1",
    [SU_USER_SET_EMAIL] = "UPDATE users SET email = ?2 WHERE name = ?1",
    [SU_USER_SET_PASSWORD] = "UPDATE users SET password_hash = ?2 WHERE name = ?1",
    [SU_USER_TOUCH_LOGIN] = "UPDATE users SET last_login_ms = ?2 WHERE name = ?1",
    [SU_USER_DELETE] = "DELETE FROM users WHERE id = ?1",
    /* ON DELETE CASCADE would do it too, but only with foreign_keys on: a
       count for the event, and no reliance on the connection's setting. */
    [SU_SESSIONS_DELETE_OF_USER] = "DELETE FROM sessions WHERE user_id = ?1",
    [SU_TOKENS_REVOKE_OF_USER] = "UPDATE tokens SET revoked_at_ms = ?2 "
                                 "WHERE user_name = ?1 AND revoked_at_ms = 0",
    [SU_SESSION_INSERT] = "INSERT INTO sessions (id, secret_hash, user_id, created_at_ms, "
                          "last_seen_ms, expires_at_ms, source) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [SU_SESSION_USER] = "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id "
                        "WHERE s.id = ?1",
    [SU_SESSION_DELETE] = "DELETE FROM sessions WHERE id = ?1",
    [SU_SESSION_LIST] = "SELECT s.id, s.secret_hash, u.name, s.created_at_ms, s.last_seen_ms, "
                        "s.expires_at_ms, s.source FROM sessions s "
                        "JOIN users u ON u.id = s.user_id ORDER BY s.created_at_ms, s.id",
    [SU_SESSION_TOUCH] = "UPDATE sessions SET last_seen_ms = ?2 WHERE id = ?1",
};

/* The cached statement `id`; NULL with *err set if preparing fails. */
static sqlite3_stmt *
stmt(struct store *st, enum store__users_stmt id, struct eph_err *err)
{
    return store__users_stmt(st, id, users_sql[id], err);
}

/* ------------------------------------------------------------- users */

void
user_free(struct user *u)
{
    if (u == NULL)
        return;
    free(u->name);
    free(u->email);
    free(u->role);
    free(u->provider);
    free(u->subject);
    free(u->password_hash);
    free(u);
}

void
user_list_free(struct user **us, size_t n)
{
    for (size_t i = 0; i < n; i++)
        user_free(us[i]);
    free(us);
}

/* Reads one row of USER_COLS. */
static struct user *
user_from_row(sqlite3_stmt *s)
{
    struct user *u = xcalloc(1, sizeof(*u));

    u->id = sqlite3_column_int64(s, 0);
    u->name = xstrdup(store__col_text(s, 1));
    u->email = xstrdup(store__col_text(s, 2));
    u->role = xstrdup(store__col_text(s, 3));
    u->provider = xstrdup(store__col_text(s, 4));
    u->subject = xstrdup(store__col_text(s, 5));
    u->password_hash = store__col_str(s, 6);
    u->created_at_ms = sqlite3_column_int64(s, 7);
    u->last_login_ms = sqlite3_column_int64(s, 8);
    return u;
}

/*
 * Runs an already bound SU_USER_GET or SU_USER_BY_IDENTITY and releases it.
 * *out gets the user, or stays NULL with EPH_ENOTFOUND and `missing` as the
 * message.
 */
static int
load_user(struct store *st, sqlite3_stmt *s, const char *missing, struct user **out,
          struct eph_err *err)
{
    int step = sqlite3_step(s);
    int rc = 0;

    if (step == SQLITE_ROW)
        *out = user_from_row(s);
    else if (step == SQLITE_DONE)
        rc = eph_err_set(err, EPH_ENOTFOUND, "%s", missing);
    else
        rc = store__db_error(st, "get user", err);
    store__release(s);
    return rc;
}

int
store_user_get(struct store *st, const char *name, struct user **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_USER_GET, err);
    char *missing;
    int rc;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name ? name : "") != SQLITE_OK) {
        store__release(s);
        return store__db_error(st, "get user", err);
    }
    missing = xasprintf("user '%s' not found", name ? name : "");
    rc = load_user(st, s, missing, out, err);
    free(missing);
    return rc;
}

int
store_user_find_identity(struct store *st, const char *provider, const char *subject,
                         struct user **out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_USER_BY_IDENTITY, err);
    char *missing;
    int rc;

    *out = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, provider ? provider : "") ||
        store__bind_str(s, 2, subject ? subject : "")) {
        store__release(s);
        return store__db_error(st, "get user", err);
    }
    missing =
        xasprintf("no user has %s identity '%s'", provider ? provider : "", subject ? subject : "");
    rc = load_user(st, s, missing, out, err);
    free(missing);
    return rc;
}

int
store_user_list(struct store *st, struct user ***out, size_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_USER_LIST, err);
    struct user **us = NULL;
    size_t count = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        us = store__grow(us, count, sizeof(*us));
        us[count++] = user_from_row(s);
    }
    store__release(s);
    if (step != SQLITE_DONE) {
        user_list_free(us, count);
        return store__db_error(st, "list users", err);
    }
    *out = us;
    *n = count;
    return 0;
}

/* EPH_EINVAL "unknown role 'x'" unless role_parse() knows `role`. */
static int
check_role(const char *role, struct eph_err *err)
{
    enum role r;

    if (role == NULL || role_parse(role, &r) < 0)
        return eph_err_set(err, EPH_EINVAL, "unknown role '%s'", role ? role : "");
    return 0;
}

/*
 * Inside store_user_add's transaction, after the insert failed on a unique
 * constraint: tells a taken name from a taken identity, and says which.
 */
static int
explain_user_conflict(struct store *st, const struct user *u, const char *subject,
                      struct eph_err *err)
{
    struct user *other = NULL;
    int rc;

    if (store_user_get(st, u->name, &other, NULL) == 0) {
        rc = eph_err_set(err, EPH_ECONFLICT, "user '%s' already exists", u->name);
    } else if (store_user_find_identity(st, u->provider, subject, &other, NULL) == 0) {
        rc = eph_err_set(err, EPH_ECONFLICT, "%s identity '%s' already belongs to user '%s'",
                         u->provider, subject, other->name);
    } else {
        rc = eph_err_set(err, EPH_ECONFLICT, "user '%s' conflicts with a stored user", u->name);
    }
    user_free(other);
    return rc;
}

/* Inserts the users row; *id_out is its new id. */
static int
insert_user_row(struct store *st, const struct user *u, const char *email, const char *subject,
                int64_t now, int64_t *id_out, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_USER_INSERT, err);
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, u->name) || store__bind_str(s, 2, email) ||
        store__bind_str(s, 3, u->role) || store__bind_str(s, 4, u->provider) ||
        store__bind_str(s, 5, subject) || store__bind_str(s, 6, u->password_hash) ||
        sqlite3_bind_int64(s, 7, now)) {
        store__release(s);
        return store__db_error(st, "add user", err);
    }
    step = sqlite3_step(s);
    *id_out = sqlite3_last_insert_rowid(store__db(st));
    store__release(s);
    if (step == SQLITE_CONSTRAINT_UNIQUE)
        rc = explain_user_conflict(st, u, subject, err);
    else if (step != SQLITE_DONE)
        rc = store__db_error(st, "add user", err);
    return rc;
}

int
store_user_add(struct store *st, struct user *u, const struct store_actor *actor,
               struct eph_err *err)
{
    const char *email = u->email ? u->email : "";
    const char *subject = u->subject ? u->subject : "";
    int64_t now = time_wall_ms();
    char *target = NULL;
    char *detail = NULL;
    int64_t id = 0;
    int rc;

    if (u->name == NULL || u->name[0] == '\0')
        return eph_err_set(err, EPH_EINVAL, "user has no name");
    if (u->provider == NULL || u->provider[0] == '\0')
        return eph_err_set(err, EPH_EINVAL, "user '%s' has no provider", u->name);
    rc = check_role(u->role, err);
    if (rc < 0)
        return rc;
    target = xasprintf("user/%s", u->name);
    detail = xasprintf("role %s, provider %s", u->role, u->provider);
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = insert_user_row(st, u, email, subject, now, &id, err);
    if (rc == 0)
        rc = store__event_insert(st, actor, "user.add", target, detail, err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0) {
        store__tx_rollback(st);
        goto out;
    }
    /* Only now: a failed add leaves the caller's record as it was. */
    u->id = id;
    u->created_at_ms = now;
out:
    free(target);
    free(detail);
    return rc;
}

/*
 * Runs one of the UPDATE users ... WHERE name = ?1 statements with ?2 bound
 * to `text` (SU_USER_SET_*) or to `at_ms` (text NULL and by_int). Inside the
 * caller's transaction or on its own. EPH_ENOTFOUND if no user has the name.
 */
static int
update_user(struct store *st, enum store__users_stmt which, const char *name, const char *text,
            bool by_int, int64_t at_ms, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, which, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, name ? name : "") ||
        (by_int ? sqlite3_bind_int64(s, 2, at_ms) : store__bind_str(s, 2, text)) ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "update user", err);
    else if (sqlite3_changes(store__db(st)) == 0)
        rc = eph_err_set(err, EPH_ENOTFOUND, "user '%s' not found", name ? name : "");
    store__release(s);
    return rc;
}

int
store_user_set_role(struct store *st, const char *name, const char *role,
                    const struct store_actor *actor, struct eph_err *err)
{
    struct user *u = NULL;
    char *target = NULL;
    char *detail = NULL;
    int rc = check_role(role, err);

    if (rc < 0)
        return rc;
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = store_user_get(st, name, &u, err); /* the old role, under the write lock */
    if (rc < 0 || strcmp(u->role, role) == 0)
        goto out; /* unchanged: nothing to record */
    rc = update_user(st, SU_USER_SET_ROLE, name, role, false, 0, err);
    if (rc == 0) {
        target = xasprintf("user/%s", name);
        detail = xasprintf("%s -> %s", u->role, role);
        rc = store__event_insert(st, actor, "user.role", target, detail, err);
    }
out:
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    user_free(u);
    free(target);
    free(detail);
    return rc;
}

int
store_user_set_email(struct store *st, const char *name, const char *email, struct eph_err *err)
{
    return update_user(st, SU_USER_SET_EMAIL, name, email ? email : "", false, 0, err);
}

int
store_user_set_password(struct store *st, const char *name, const char *password_hash,
                        const struct store_actor *actor, struct eph_err *err)
{
    char *target = xasprintf("user/%s", name ? name : "");
    int rc = store__tx_begin(st, err);

    if (rc == 0)
        rc = update_user(st, SU_USER_SET_PASSWORD, name, password_hash, false, 0, err);
    if (rc == 0)
        rc = store__event_insert(st, actor, "user.password", target,
                                 password_hash ? "password changed" : "password removed", err);
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    free(target);
    return rc;
}

int
store_user_touch_login(struct store *st, const char *name, int64_t at_ms, struct eph_err *err)
{
    return update_user(st, SU_USER_TOUCH_LOGIN, name, NULL, true, at_ms, err);
}

/*
 * Runs a statement that changes rows, with ?1 bound to `id` (or to `text` if
 * not NULL) and ?2 to `at_ms` if it has a second parameter; *changed is the
 * number of rows changed. `what` names the step in a store error.
 */
static int
exec_changes(struct store *st, enum store__users_stmt which, int64_t id, const char *text,
             int64_t at_ms, const char *what, int *changed, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, which, err);
    int rc = 0;

    *changed = 0;
    if (s == NULL)
        return EPH_ESTORE;
    if ((text ? store__bind_str(s, 1, text) : sqlite3_bind_int64(s, 1, id)) ||
        (sqlite3_bind_parameter_count(s) >= 2 && sqlite3_bind_int64(s, 2, at_ms)) ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, what, err);
    else
        *changed = sqlite3_changes(store__db(st));
    store__release(s);
    return rc;
}

int
store_user_remove(struct store *st, const char *name, const struct store_actor *actor,
                  struct eph_err *err)
{
    struct user *u = NULL;
    int sessions = 0, tokens = 0, removed = 0;
    char *target = NULL;
    char *detail = NULL;
    int rc = store__tx_begin(st, err);

    if (rc == 0)
        rc = store_user_get(st, name, &u, err);
    if (rc == 0)
        rc = exec_changes(st, SU_SESSIONS_DELETE_OF_USER, u->id, NULL, 0, "end sessions", &sessions,
                          err);
    if (rc == 0)
        rc = exec_changes(st, SU_TOKENS_REVOKE_OF_USER, 0, u->name, time_wall_ms(), "revoke tokens",
                          &tokens, err);
    if (rc == 0)
        rc = exec_changes(st, SU_USER_DELETE, u->id, NULL, 0, "remove user", &removed, err);
    if (rc == 0) {
        target = xasprintf("user/%s", u->name);
        detail = xasprintf("%d session%s ended, %d token%s revoked", sessions,
                           sessions == 1 ? "" : "s", tokens, tokens == 1 ? "" : "s");
        rc = store__event_insert(st, actor, "user.remove", target, detail, err);
    }
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    user_free(u);
    free(target);
    free(detail);
    return rc;
}

/* ------------------------------------------------------------- sessions */

void
store_session_free(struct store_session *s)
{
    if (s == NULL)
        return;
    free(s->id);
    free(s->secret_hash);
    free(s->user);
    free(s->source);
    free(s);
}

void
store_session_list_free(struct store_session **ss, size_t n)
{
    for (size_t i = 0; i < n; i++)
        store_session_free(ss[i]);
    free(ss);
}

/* Inserts the sessions row for user `user_id`. */
static int
insert_session_row(struct store *st, const struct store_session *ses, int64_t user_id,
                   struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_SESSION_INSERT, err);
    int rc = 0;
    int step;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, ses->id) || store__bind_str(s, 2, ses->secret_hash) ||
        sqlite3_bind_int64(s, 3, user_id) || sqlite3_bind_int64(s, 4, ses->created_at_ms) ||
        sqlite3_bind_int64(s, 5, ses->last_seen_ms) ||
        sqlite3_bind_int64(s, 6, ses->expires_at_ms) ||
        store__bind_str(s, 7, ses->source ? ses->source : "")) {
        store__release(s);
        return store__db_error(st, "add session", err);
    }
    step = sqlite3_step(s);
    if (step == SQLITE_CONSTRAINT_PRIMARYKEY)
        rc = eph_err_set(err, EPH_ECONFLICT, "session %.*s already exists", SESSION_ID_SHOWN,
                         ses->id);
    else if (step != SQLITE_DONE)
        rc = store__db_error(st, "add session", err);
    store__release(s);
    return rc;
}

int
store_session_add(struct store *st, const struct store_session *s, const struct store_actor *actor,
                  struct eph_err *err)
{
    struct user *u = NULL;
    char *target = NULL;
    char *detail = NULL;
    int rc;

    if (s->id == NULL || s->id[0] == '\0' || s->secret_hash == NULL)
        return eph_err_set(err, EPH_EINVAL, "session has no id or secret");
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = store_user_get(st, s->user, &u, err);
    if (rc == 0)
        rc = insert_session_row(st, s, u->id, err);
    if (rc == 0) {
        target = xasprintf("user/%s", u->name);
        detail = xasprintf("session %.*s", SESSION_ID_SHOWN, s->id);
        rc = store__event_insert(st, actor, "user.signin", target, detail, err);
    }
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    user_free(u);
    free(target);
    free(detail);
    return rc;
}

/* Inside a transaction: the name of the user of session `id` into *user
 * (free()); EPH_ENOTFOUND if there is no such session. */
static int
session_user(struct store *st, const char *id, char **user, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_SESSION_USER, err);
    int rc = 0;
    int step;

    *user = NULL;
    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, id) != SQLITE_OK) {
        rc = store__db_error(st, "get session", err);
    } else {
        step = sqlite3_step(s);
        if (step == SQLITE_ROW)
            *user = xstrdup(store__col_text(s, 0));
        else if (step == SQLITE_DONE)
            rc = eph_err_set(err, EPH_ENOTFOUND, "session %.*s not found", SESSION_ID_SHOWN, id);
        else
            rc = store__db_error(st, "get session", err);
    }
    store__release(s);
    return rc;
}

int
store_session_remove(struct store *st, const char *id, const struct store_actor *actor,
                     const char *action, struct eph_err *err)
{
    char *user = NULL;
    char *target = NULL;
    char *detail = NULL;
    int changed = 0;
    int rc;

    if (id == NULL)
        return eph_err_set(err, EPH_ENOTFOUND, "session not found");
    rc = store__tx_begin(st, err);
    if (rc == 0)
        rc = session_user(st, id, &user, err);
    if (rc == 0)
        rc = exec_changes(st, SU_SESSION_DELETE, 0, id, 0, "remove session", &changed, err);
    if (rc == 0) {
        target = xasprintf("user/%s", user);
        detail = xasprintf("session %.*s", SESSION_ID_SHOWN, id);
        rc = store__event_insert(st, actor, action ? action : "user.signout", target, detail, err);
    }
    if (rc == 0)
        rc = store__tx_commit(st, err);
    if (rc < 0)
        store__tx_rollback(st);
    free(user);
    free(target);
    free(detail);
    return rc;
}

int
store_session_list(struct store *st, struct store_session ***out, size_t *n, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_SESSION_LIST, err);
    struct store_session **ss = NULL;
    size_t count = 0;
    int step;

    *out = NULL;
    *n = 0;
    if (s == NULL)
        return EPH_ESTORE;
    while ((step = sqlite3_step(s)) == SQLITE_ROW) {
        struct store_session *ses = xcalloc(1, sizeof(*ses));

        ses->id = xstrdup(store__col_text(s, 0));
        ses->secret_hash = xstrdup(store__col_text(s, 1));
        ses->user = xstrdup(store__col_text(s, 2));
        ses->created_at_ms = sqlite3_column_int64(s, 3);
        ses->last_seen_ms = sqlite3_column_int64(s, 4);
        ses->expires_at_ms = sqlite3_column_int64(s, 5);
        ses->source = xstrdup(store__col_text(s, 6));
        ss = store__grow(ss, count, sizeof(*ss));
        ss[count++] = ses;
    }
    store__release(s);
    if (step != SQLITE_DONE) {
        store_session_list_free(ss, count);
        return store__db_error(st, "list sessions", err);
    }
    *out = ss;
    *n = count;
    return 0;
}

int
store_session_touch(struct store *st, const char *id, int64_t last_seen_ms, struct eph_err *err)
{
    sqlite3_stmt *s = stmt(st, SU_SESSION_TOUCH, err);
    int rc = 0;

    if (s == NULL)
        return EPH_ESTORE;
    if (store__bind_str(s, 1, id ? id : "") || sqlite3_bind_int64(s, 2, last_seen_ms) ||
        sqlite3_step(s) != SQLITE_DONE)
        rc = store__db_error(st, "touch session", err);
    store__release(s);
    return rc;
}
