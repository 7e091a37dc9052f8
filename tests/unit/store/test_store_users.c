/*
 * tests/unit/store/test_store_users.c - users and sessions in the store,
 * against a real SQLite file in a fresh temporary directory per test: adding,
 * finding by name and by provider identity, role, email and password
 * changes with their events, removal (sessions deleted, tokens revoked, in
 * one transaction), and sessions added, listed, touched and removed.
 */
#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define HASH_C "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc"
#define PW_HASH "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo"
#define SESSION_1 "0123abcd0123abcd0123abcd0123abcd"
#define SESSION_2 "89abcdef89abcdef89abcdef89abcdef"

static char dir[64];
static char db_path[128];
static const struct store_actor root = {.name = "root", .source = "10.0.0.1"};

static void
setup(void)
{
    log_set_level(LOG_LEVEL_WARN); /* "schema migrated" at every fresh open */
    strcpy(dir, "/tmp/eph-users-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(db_path, sizeof(db_path), "%s/eph.db", dir);
}

static void
teardown(void)
{
    fs_rm_rf(dir);
}

TestSuite(store_users, .init = setup, .fini = teardown, .timeout = 60);

static struct store *
open_store(void)
{
    struct store *st = NULL;
    struct eph_err err = {0};

    cr_assert_eq(store_open(db_path, &st, &err), 0, "%s", err.msg);
    return st;
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

/* Adds a user; provider "local" and no subject unless given. */
static int64_t
add_user(struct store *st, const char *name, const char *role, const char *provider,
         const char *subject)
{
    struct user u = {
        .name = (char *)name,
        .role = (char *)role,
        .provider = (char *)(provider ? provider : "local"),
        .subject = (char *)subject,
    };
    struct eph_err err = {0};

    cr_assert_eq(store_user_add(st, &u, &root, &err), 0, "%s", err.msg);
    return u.id;
}

/* A session of `user` that ends in an hour. */
static void
add_session(struct store *st, const char *id, const char *user)
{
    int64_t now = time_wall_ms();
    struct store_session s = {
        .id = (char *)id,
        .secret_hash = (char *)HASH_C,
        .user = (char *)user,
        .created_at_ms = now,
        .last_seen_ms = now,
        .expires_at_ms = now + 3600 * 1000,
        .source = (char *)"192.0.2.7",
    };
    struct eph_err err = {0};

    cr_assert_eq(store_session_add(st, &s, &root, &err), 0, "%s", err.msg);
}

/* ------------------------------------------------------------- users */

Test(store_users, adds_gets_and_lists_users_by_name)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct user u = {
        .name = (char *)"carol",
        .email = (char *)"carol@example.com",
        .role = (char *)"member",
        .provider = (char *)"local",
        .password_hash = (char *)PW_HASH,
    };
    struct user *got = NULL, **us = NULL;
    struct event **evs = NULL;
    int64_t before = time_wall_ms();
    size_t n = 0;

    cr_assert_eq(store_user_add(st, &u, &root, &err), 0, "%s", err.msg);
    cr_expect_gt(u.id, 0);
    cr_expect_geq(u.created_at_ms, before);
    add_user(st, "alice", "admin", "oidc", "sub-1");
    add_user(st, "bob", "viewer", NULL, NULL);

    cr_assert_eq(store_user_get(st, "carol", &got, &err), 0, "%s", err.msg);
    cr_expect_eq(got->id, u.id);
    cr_expect_str_eq(got->name, "carol");
    cr_expect_str_eq(got->email, "carol@example.com");
    cr_expect_str_eq(got->role, "member");
    cr_expect_str_eq(got->provider, "local");
    cr_expect_str_eq(got->subject, "");
    cr_expect_str_eq(got->password_hash, PW_HASH);
    cr_expect_eq(got->created_at_ms, u.created_at_ms);
    cr_expect_eq(got->last_login_ms, 0);
    user_free(got);

    cr_assert_eq(store_user_get(st, "bob", &got, &err), 0, "%s", err.msg);
    cr_expect_str_eq(got->email, "", "no email: empty, not NULL");
    cr_expect_null(got->password_hash);
    user_free(got);

    cr_assert_eq(store_user_list(st, &us, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(us[0]->name, "alice");
    cr_expect_str_eq(us[0]->provider, "oidc");
    cr_expect_str_eq(us[0]->subject, "sub-1");
    cr_expect_str_eq(us[1]->name, "bob");
    cr_expect_str_eq(us[2]->name, "carol");
    user_list_free(us, n);

    cr_assert_eq(events_of(st, "user/carol", &evs), 1);
    cr_expect_str_eq(evs[0]->action, "user.add");
    cr_expect_str_eq(evs[0]->actor, "root");
    cr_expect_str_eq(evs[0]->source, "10.0.0.1");
    cr_expect_str_eq(evs[0]->detail, "role member, provider local");
    event_list_free(evs, 1);

    got = (struct user *)&err;
    cr_expect_eq(store_user_get(st, "nope", &got, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'nope' not found");
    cr_expect_null(got);
    store_close(st);
}

Test(store_users, an_empty_store_lists_no_users)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct user **us = (struct user **)&err;
    size_t n = 9;

    cr_assert_eq(store_user_list(st, &us, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 0);
    cr_expect_null(us);
    store_close(st);
}

Test(store_users, finds_a_user_by_provider_identity)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct user *got = NULL;

    add_user(st, "alice", "member", "oidc", "sub-1");
    add_user(st, "bob", "member", "github", "sub-1");
    add_user(st, "carol", "member", NULL, NULL);

    cr_assert_eq(store_user_find_identity(st, "oidc", "sub-1", &got, &err), 0, "%s", err.msg);
    cr_expect_str_eq(got->name, "alice");
    user_free(got);
    cr_assert_eq(store_user_find_identity(st, "github", "sub-1", &got, &err), 0, "%s", err.msg);
    cr_expect_str_eq(got->name, "bob", "the same subject at another provider is another person");
    user_free(got);

    cr_expect_eq(store_user_find_identity(st, "oidc", "sub-2", &got, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "no user has oidc identity 'sub-2'");
    cr_expect_null(got);
    cr_expect_eq(store_user_find_identity(st, "local", "", &got, &err), EPH_ENOTFOUND,
                 "local users have no identity to find");
    cr_expect_null(got);
    store_close(st);
}

Test(store_users, refuses_a_taken_name_or_identity_and_bad_input)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    static const struct {
        struct user u;
        int rc;
        const char *want;
    } bad[] = {
        {{.name = (char *)"alice", .role = (char *)"viewer", .provider = (char *)"local"},
         EPH_ECONFLICT,
         "user 'alice' already exists"},
        {{.name = (char *)"alice2",
          .role = (char *)"viewer",
          .provider = (char *)"oidc",
          .subject = (char *)"sub-1"},
         EPH_ECONFLICT,
         "oidc identity 'sub-1' already belongs to user 'alice'"},
        {{.name = (char *)"x", .role = (char *)"none", .provider = (char *)"local"},
         EPH_EINVAL,
         "unknown role 'none'"},
        {{.name = (char *)"x", .role = (char *)"root", .provider = (char *)"local"},
         EPH_EINVAL,
         "unknown role 'root'"},
        {{.name = (char *)"x", .provider = (char *)"local"}, EPH_EINVAL, "unknown role ''"},
        {{.name = (char *)"", .role = (char *)"viewer", .provider = (char *)"local"},
         EPH_EINVAL,
         "user has no name"},
        {{.role = (char *)"viewer", .provider = (char *)"local"}, EPH_EINVAL, "user has no name"},
        {{.name = (char *)"x", .role = (char *)"viewer"}, EPH_EINVAL, "user 'x' has no provider"},
    };

    add_user(st, "alice", "member", "oidc", "sub-1");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct user u = bad[i].u;

        cr_expect_eq(store_user_add(st, &u, &root, &err), bad[i].rc, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
        cr_expect_eq(u.id, 0, "case %zu: the record is left as it was", i);
    }
    cr_expect_eq(raw_int("SELECT count(*) FROM users"), 1);
    cr_expect_eq(count_events(st, NULL), 1, "refused adds leave no event");
    /* Two local users have the same (empty) subject: that is no conflict. */
    add_user(st, "bob", "member", NULL, NULL);
    add_user(st, "carol", "member", NULL, "");
    store_close(st);
}

Test(store_users, role_email_password_and_login_changes)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct user *got = NULL;
    struct event **evs = NULL;
    size_t n;

    add_user(st, "alice", "member", NULL, NULL);
    cr_assert_eq(store_user_set_role(st, "alice", "admin", &root, &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_set_role(st, "alice", "admin", &root, &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_set_email(st, "alice", "alice@example.com", &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_set_password(st, "alice", PW_HASH, &root, &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_touch_login(st, "alice", 1800000000000, &err), 0, "%s", err.msg);

    cr_assert_eq(store_user_get(st, "alice", &got, &err), 0, "%s", err.msg);
    cr_expect_str_eq(got->role, "admin");
    cr_expect_str_eq(got->email, "alice@example.com");
    cr_expect_str_eq(got->password_hash, PW_HASH);
    cr_expect_eq(got->last_login_ms, 1800000000000);
    user_free(got);

    cr_assert_eq(store_user_set_password(st, "alice", NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_set_email(st, "alice", NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(store_user_get(st, "alice", &got, &err), 0, "%s", err.msg);
    cr_expect_null(got->password_hash);
    cr_expect_str_eq(got->email, "");
    user_free(got);

    n = events_of(st, "user/alice", &evs);
    cr_assert_eq(n, 4,
                 "add, role, two password changes: the same role again, email and "
                 "login add none");
    cr_expect_str_eq(evs[1]->action, "user.role");
    cr_expect_str_eq(evs[1]->detail, "member -> admin");
    cr_expect_str_eq(evs[2]->action, "user.password");
    cr_expect_str_eq(evs[2]->detail, "password changed");
    cr_expect_str_eq(evs[2]->actor, "root");
    cr_expect_str_eq(evs[3]->detail, "password removed");
    cr_expect_str_eq(evs[3]->actor, "system");
    for (size_t i = 0; i < n; i++)
        cr_expect_null(strstr(evs[i]->detail, "argon2"), "never the hash");
    event_list_free(evs, n);

    cr_expect_eq(store_user_set_role(st, "alice", "owner", &root, &err), EPH_EINVAL);
    cr_expect_str_eq(err.msg, "unknown role 'owner'");
    cr_expect_eq(store_user_set_role(st, "ghost", "admin", &root, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'ghost' not found");
    cr_expect_eq(store_user_set_email(st, "ghost", "g@example.com", &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'ghost' not found");
    cr_expect_eq(store_user_set_password(st, "ghost", PW_HASH, &root, &err), EPH_ENOTFOUND);
    cr_expect_eq(store_user_touch_login(st, "ghost", 1, &err), EPH_ENOTFOUND);
    cr_expect_eq(count_events(st, NULL), 4, "nothing for the missing user");
    store_close(st);
}

Test(store_users, removing_a_user_deletes_its_sessions_and_revokes_its_tokens)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_token *t = NULL, **ts = NULL;
    struct store_session **ss = NULL;
    struct event **evs = NULL;
    struct user *got = NULL;
    int64_t alice_tok = 0, bob_tok = 0;
    size_t n = 0;

    add_user(st, "alice", "member", NULL, NULL);
    add_user(st, "bob", "member", NULL, NULL);
    add_session(st, SESSION_1, "alice");
    add_session(st, SESSION_2, "bob");
    cr_assert_eq(
        store_token_add(st, "laptop", HASH_A, "member", "alice", 0, &root, &alice_tok, &err), 0,
        "%s", err.msg);
    cr_assert_eq(store_token_add(st, "ci", HASH_B, "member", "bob", 0, &root, &bob_tok, &err), 0,
                 "%s", err.msg);

    cr_assert_eq(store_user_remove(st, "alice", &root, &err), 0, "%s", err.msg);
    cr_expect_eq(store_user_get(st, "alice", &got, &err), EPH_ENOTFOUND);

    cr_assert_eq(store_session_list(st, &ss, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1, "alice's session is gone");
    cr_expect_str_eq(ss[0]->user, "bob");
    store_session_list_free(ss, n);

    cr_expect_eq(store_token_find(st, HASH_A, &t, &err), EPH_ENOTFOUND, "revoked");
    cr_assert_eq(store_token_get(st, alice_tok, &t, &err), 0, "%s", err.msg);
    cr_expect_gt(t->revoked_at_ms, 0);
    cr_expect_str_eq(t->user, "alice", "the record still says whose it was");
    store_token_free(t);
    cr_assert_eq(store_token_find(st, HASH_B, &t, &err), 0, "bob's token works: %s", err.msg);
    store_token_free(t);
    cr_assert_eq(store_token_list(st, NULL, &ts, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 1);
    cr_expect_eq(ts[0]->id, bob_tok);
    store_token_list_free(ts, n);

    n = events_of(st, "user/alice", &evs);
    cr_assert_eq(n, 3, "add, signin, remove");
    cr_expect_str_eq(evs[2]->action, "user.remove");
    cr_expect_str_eq(evs[2]->actor, "root");
    cr_expect_str_eq(evs[2]->detail, "1 session ended, 1 token revoked");
    event_list_free(evs, n);

    cr_expect_eq(store_user_remove(st, "alice", &root, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'alice' not found");

    /* The name can be used again; the old revoked token stays revoked. */
    add_user(st, "alice", "viewer", NULL, NULL);
    cr_expect_eq(store_token_find(st, HASH_A, &t, &err), EPH_ENOTFOUND);
    cr_assert_eq(store_user_remove(st, "alice", NULL, &err), 0, "%s", err.msg);
    n = events_of(st, "user/alice", &evs);
    cr_expect_str_eq(evs[n - 1]->detail, "0 sessions ended, 0 tokens revoked");
    event_list_free(evs, n);
    store_close(st);
}

Test(store_users, a_failed_remove_changes_nothing)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_token *t = NULL;
    sqlite3 *db = NULL;

    add_user(st, "alice", "member", NULL, NULL);
    add_session(st, SESSION_1, "alice");
    cr_assert_eq(store_token_add(st, "laptop", HASH_A, "member", "alice", 0, &root, NULL, &err), 0);
    /* The last step, the event, fails: the revocation and the deletions before it must go too. */
    cr_assert_eq(sqlite3_open(db_path, &db), SQLITE_OK);
    cr_assert_eq(
        sqlite3_exec(db,
                     "CREATE TRIGGER no_remove BEFORE INSERT ON events "
                     "WHEN NEW.action = 'user.remove' BEGIN SELECT RAISE(ABORT, 'no'); END",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(db);

    cr_expect_eq(store_user_remove(st, "alice", &root, &err), EPH_ESTORE);
    cr_expect_eq(raw_int("SELECT count(*) FROM users"), 1);
    cr_expect_eq(raw_int("SELECT count(*) FROM sessions"), 1);
    cr_assert_eq(store_token_find(st, HASH_A, &t, &err), 0, "still live: %s", err.msg);
    store_token_free(t);
    store_close(st);
}

/* ------------------------------------------------------------- sessions */

Test(store_users, sessions_are_added_listed_touched_and_removed)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_session **ss = NULL;
    struct store_session s = {
        .id = (char *)SESSION_1,
        .secret_hash = (char *)HASH_A,
        .user = (char *)"alice",
        .created_at_ms = 1700000000000,
        .last_seen_ms = 1700000000000,
        .expires_at_ms = 1700604800000,
        .source = (char *)"192.0.2.7",
    };
    struct event **evs = NULL;
    size_t n = 0;

    add_user(st, "alice", "member", NULL, NULL);
    add_user(st, "bob", "member", NULL, NULL);
    cr_assert_eq(store_session_add(st, &s, &root, &err), 0, "%s", err.msg);
    s.id = (char *)SESSION_2;
    s.user = (char *)"bob";
    s.created_at_ms += 1000;
    s.source = NULL;
    cr_assert_eq(store_session_add(st, &s, NULL, &err), 0, "%s", err.msg);

    cr_assert_eq(store_session_touch(st, SESSION_1, 1700000060000, &err), 0, "%s", err.msg);
    cr_assert_eq(store_session_touch(st, "ffffffffffffffffffffffffffffffff", 1, &err), 0,
                 "a session removed meanwhile is no error");

    cr_assert_eq(store_session_list(st, &ss, &n, &err), 0, "%s", err.msg);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(ss[0]->id, SESSION_1);
    cr_expect_str_eq(ss[0]->secret_hash, HASH_A);
    cr_expect_str_eq(ss[0]->user, "alice");
    cr_expect_eq(ss[0]->created_at_ms, 1700000000000);
    cr_expect_eq(ss[0]->last_seen_ms, 1700000060000);
    cr_expect_eq(ss[0]->expires_at_ms, 1700604800000);
    cr_expect_str_eq(ss[0]->source, "192.0.2.7");
    cr_expect_str_eq(ss[1]->id, SESSION_2);
    cr_expect_str_eq(ss[1]->user, "bob");
    cr_expect_str_eq(ss[1]->source, "");
    store_session_list_free(ss, n);

    cr_assert_eq(store_session_remove(st, SESSION_1, &root, "user.signout", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(store_session_remove(st, SESSION_2, NULL, "session.expire", &err), 0, "%s",
                 err.msg);
    cr_assert_eq(store_session_list(st, &ss, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 0);
    cr_expect_null(ss);

    n = events_of(st, "user/alice", &evs);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(evs[1]->action, "user.signin");
    cr_expect_str_eq(evs[1]->actor, "root");
    cr_expect_str_eq(evs[1]->detail, "session 0123abcd");
    cr_expect_str_eq(evs[2]->action, "user.signout");
    cr_expect_str_eq(evs[2]->detail, "session 0123abcd");
    event_list_free(evs, n);
    n = events_of(st, "user/bob", &evs);
    cr_assert_eq(n, 3);
    cr_expect_str_eq(evs[2]->action, "session.expire");
    cr_expect_str_eq(evs[2]->actor, "system");
    cr_expect_str_eq(evs[2]->detail, "session 89abcdef");
    for (size_t i = 0; i < n; i++)
        cr_expect_null(strstr(evs[i]->detail, HASH_A), "never the secret's hash");
    event_list_free(evs, n);

    cr_expect_eq(store_session_remove(st, SESSION_1, &root, "user.signout", &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "session 0123abcd not found");
    store_close(st);
}

Test(store_users, refuses_a_session_of_nobody_or_with_a_taken_id)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_session s = {
        .id = (char *)SESSION_1,
        .secret_hash = (char *)HASH_A,
        .user = (char *)"ghost",
        .expires_at_ms = 1,
    };

    cr_expect_eq(store_session_add(st, &s, &root, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "user 'ghost' not found");
    add_user(st, "alice", "member", NULL, NULL);
    s.user = (char *)"alice";
    cr_assert_eq(store_session_add(st, &s, &root, &err), 0, "%s", err.msg);
    cr_expect_eq(store_session_add(st, &s, &root, &err), EPH_ECONFLICT);
    cr_expect_str_eq(err.msg, "session 0123abcd already exists");
    s.id = NULL;
    cr_expect_eq(store_session_add(st, &s, &root, &err), EPH_EINVAL);
    cr_expect_eq(raw_int("SELECT count(*) FROM sessions"), 1);
    cr_expect_eq(count_events(st, "user/alice"), 2, "add and one signin");
    store_close(st);
}

Test(store_users, users_and_sessions_survive_close_and_reopen)
{
    struct store *st = open_store();
    struct eph_err err = {0};
    struct store_session **ss = NULL;
    struct user *got = NULL;
    size_t n = 0;

    add_user(st, "alice", "member", "oidc", "sub-1");
    add_session(st, SESSION_1, "alice");
    store_close(st);

    st = open_store();
    cr_assert_eq(store_user_find_identity(st, "oidc", "sub-1", &got, &err), 0, "%s", err.msg);
    cr_expect_str_eq(got->name, "alice");
    user_free(got);
    cr_assert_eq(store_session_list(st, &ss, &n, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 1);
    store_session_list_free(ss, n);
    store_close(st);
}
