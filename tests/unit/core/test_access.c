/*
 * tests/unit/core/test_access.c - role and visibility names, and the access
 * rules as one table: admin, member, viewer, nobody and share links against
 * private, team and link environments, owner or not.
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <string.h>

#include "core/access.h"
#include "util/err.h"
#include "util/xmalloc.h"

Test(access, names_and_parses_roles_refusing_none)
{
    static const struct {
        enum role role;
        const char *name;
    } roles[] = {
        {ROLE_VIEWER, "viewer"},
        {ROLE_MEMBER, "member"},
        {ROLE_ADMIN, "admin"},
    };
    static const char *const bad[] = {"none", "", "Admin", "root", "admin "};

    for (size_t i = 0; i < ARRAY_LEN(roles); i++) {
        enum role r = ROLE_NONE;

        cr_expect_str_eq(role_name(roles[i].role), roles[i].name);
        cr_expect_eq(role_parse(roles[i].name, &r), 0, "%s", roles[i].name);
        cr_expect_eq(r, roles[i].role, "%s", roles[i].name);
    }
    cr_expect_str_eq(role_name(ROLE_NONE), "none");
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        enum role r = ROLE_VIEWER;

        cr_expect_eq(role_parse(bad[i], &r), EPH_EINVAL, "'%s'", bad[i]);
        cr_expect_eq(r, ROLE_VIEWER, "'%s' leaves *out alone", bad[i]);
    }
    cr_expect_eq(role_parse(NULL, &(enum role){0}), EPH_EINVAL);
}

Test(access, names_and_parses_visibilities)
{
    static const struct {
        enum visibility vis;
        const char *name;
    } vis[] = {
        {VIS_TEAM, "team"},
        {VIS_PRIVATE, "private"},
        {VIS_LINK, "link"},
    };
    enum visibility v = VIS_TEAM;

    for (size_t i = 0; i < ARRAY_LEN(vis); i++) {
        cr_expect_str_eq(visibility_name(vis[i].vis), vis[i].name);
        cr_expect_eq(visibility_parse(vis[i].name, &v), 0, "%s", vis[i].name);
        cr_expect_eq(v, vis[i].vis, "%s", vis[i].name);
    }
    cr_expect_eq(VIS_TEAM, 0, "a zeroed environment is a team one");
    cr_expect_eq(visibility_parse("public", &v), EPH_EINVAL);
    cr_expect_eq(visibility_parse("", &v), EPH_EINVAL);
    cr_expect_eq(visibility_parse(NULL, &v), EPH_EINVAL);
}

/* Environment 7, owned by alice, is asked about by each of these. */
#define ENV_ID 7
#define OWNER "alice"

static const struct principal admin = {PRINCIPAL_USER, "root", ROLE_ADMIN, 0};
static const struct principal admin_owner = {PRINCIPAL_USER, "alice", ROLE_ADMIN, 0};
static const struct principal member_owner = {PRINCIPAL_USER, "alice", ROLE_MEMBER, 0};
static const struct principal member_other = {PRINCIPAL_USER, "bob", ROLE_MEMBER, 0};
static const struct principal viewer_owner = {PRINCIPAL_USER, "alice", ROLE_VIEWER, 0};
static const struct principal viewer_other = {PRINCIPAL_USER, "bob", ROLE_VIEWER, 0};
static const struct principal nobody_owner = {PRINCIPAL_USER, "alice", ROLE_NONE, 0};
static const struct principal link_this = {PRINCIPAL_LINK, NULL, ROLE_NONE, ENV_ID};
static const struct principal link_other = {PRINCIPAL_LINK, NULL, ROLE_NONE, ENV_ID + 1};
/* A link principal that somehow carries a role still acts only as a link. */
static const struct principal link_with_role = {PRINCIPAL_LINK, "alice", ROLE_ADMIN, ENV_ID + 1};

static const struct {
    const char *who;
    const struct principal *p;
    bool sees_private, sees_team, sees_link; /* access_env_visible */
    bool manages, creates, admins;
} rules[] = {
    /* who, principal, sees private, team, link; manages, creates, admins */
    {"admin", &admin, true, true, true, true, true, true},
    {"admin owner", &admin_owner, true, true, true, true, true, true},
    {"member owner", &member_owner, true, true, true, true, true, false},
    {"member other", &member_other, false, true, true, false, true, false},
    {"viewer owner", &viewer_owner, true, true, true, false, false, false},
    {"viewer other", &viewer_other, false, true, true, false, false, false},
    {"nobody owner", &nobody_owner, false, false, false, false, false, false},
    {"link to it", &link_this, false, false, true, false, false, false},
    {"link to another", &link_other, false, false, false, false, false, false},
    {"link with a role", &link_with_role, false, false, false, false, false, false},
};

Test(access, rules_table)
{
    for (size_t i = 0; i < ARRAY_LEN(rules); i++) {
        const struct principal *p = rules[i].p;
        const char *who = rules[i].who;

        cr_expect_eq(access_env_visible(p, ENV_ID, OWNER, VIS_PRIVATE), rules[i].sees_private,
                     "%s: private", who);
        cr_expect_eq(access_env_visible(p, ENV_ID, OWNER, VIS_TEAM), rules[i].sees_team, "%s: team",
                     who);
        cr_expect_eq(access_env_visible(p, ENV_ID, OWNER, VIS_LINK), rules[i].sees_link, "%s: link",
                     who);
        cr_expect_eq(access_env_manage(p, OWNER), rules[i].manages, "%s: manage", who);
        cr_expect_eq(access_env_create(p), rules[i].creates, "%s: create", who);
        cr_expect_eq(access_admin(p), rules[i].admins, "%s: admin", who);
    }
}

Test(access, an_environment_without_owner_belongs_to_nobody)
{
    static const struct principal nameless = {PRINCIPAL_USER, NULL, ROLE_MEMBER, 0};

    cr_expect_not(access_env_visible(&member_owner, ENV_ID, NULL, VIS_PRIVATE));
    cr_expect_not(access_env_visible(&nameless, ENV_ID, NULL, VIS_PRIVATE));
    cr_expect(access_env_visible(&nameless, ENV_ID, NULL, VIS_TEAM));
    cr_expect_not(access_env_manage(&member_owner, NULL));
    cr_expect_not(access_env_manage(&nameless, NULL));
    cr_expect(access_env_visible(&admin, ENV_ID, NULL, VIS_PRIVATE));
    cr_expect(access_env_manage(&admin, NULL));
}

Test(access, no_principal_may_do_nothing)
{
    cr_expect_not(access_env_visible(NULL, ENV_ID, OWNER, VIS_TEAM));
    cr_expect_not(access_env_manage(NULL, OWNER));
    cr_expect_not(access_env_create(NULL));
    cr_expect_not(access_admin(NULL));
}
