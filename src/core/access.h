/*
 * core/access.h - who may do what: roles, environment visibility and the
 * rules that join them. Pure functions; the API, the logs and the gateway
 * all ask these, so the same request gets the same answer everywhere.
 *
 * Roles: admin (projects, users, every environment), member (creates and
 * manages own environments, sees team ones), viewer (opens URLs and reads).
 * Visibility of an environment: private (owner and admins), team (every
 * signed-in user; the default), link (team, plus holders of a share link).
 */
#ifndef EPH_CORE_ACCESS_H
#define EPH_CORE_ACCESS_H

#include <stdbool.h>
#include <stdint.h>

enum role {
    ROLE_NONE = 0, /* nobody: fails every check */
    ROLE_VIEWER,
    ROLE_MEMBER,
    ROLE_ADMIN,
};

enum visibility {
    VIS_TEAM = 0, /* the default */
    VIS_PRIVATE,
    VIS_LINK,
};

const char *role_name(enum role r);                   /* "viewer" ...; "none" */
int role_parse(const char *name, enum role *out);     /* 0 or EPH_EINVAL; "none" refused */
const char *visibility_name(enum visibility v);       /* "team", "private", "link" */
int visibility_parse(const char *name, enum visibility *out); /* 0 or EPH_EINVAL */

/* The one asking: a user (through a session or a token) or a share link. */
enum principal_kind {
    PRINCIPAL_USER,
    PRINCIPAL_LINK,
};

struct principal {
    enum principal_kind kind;
    const char *user;    /* user name; NULL for a link */
    enum role role;      /* a link: ROLE_NONE */
    int64_t link_env_id; /* PRINCIPAL_LINK: the environment its link opens */
};

/* Sees the environment (lists, gets, logs, events, opens its URLs). A link
 * sees only its own environment, and only while that is `link`. */
bool access_env_visible(const struct principal *p, int64_t env_id, const char *env_owner,
                        enum visibility vis);
/* Changes it (delete, extend, sleep, wake, visibility, share): admins, and
 * the owner if a member. */
bool access_env_manage(const struct principal *p, const char *env_owner);
/* Creates environments: members and admins. */
bool access_env_create(const struct principal *p);
/* Projects, users, other people's tokens, the server: admins. */
bool access_admin(const struct principal *p);

#endif
