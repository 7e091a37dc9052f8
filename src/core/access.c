/*
 * core/access.c - the names of roles and visibilities, and the four access
 * rules of access.h. Pure functions of their arguments: no store, no clock,
 * so the API, the log streams and the gateway give one answer per request.
 */
#include "core/access.h"

#include <stddef.h>
#include <string.h>

#include "util/err.h"
#include "util/xmalloc.h"

/* ROLE_NONE has a name for messages and logs, but role_parse() refuses it:
   nobody is stored or configured as "none". */
static const char *const role_names[] = {
    [ROLE_NONE] = "none",
    [ROLE_VIEWER] = "viewer",
    [ROLE_MEMBER] = "member",
    [ROLE_ADMIN] = "admin",
};

static const char *const visibility_names[] = {
    [VIS_TEAM] = "team",
    [VIS_PRIVATE] = "private",
    [VIS_LINK] = "link",
};

const char *
role_name(enum role r)
{
    return (size_t)r < ARRAY_LEN(role_names) ? role_names[r] : "unknown";
}

int
role_parse(const char *name, enum role *out)
{
    if (name == NULL)
        return EPH_EINVAL;
    for (size_t i = ROLE_VIEWER; i < ARRAY_LEN(role_names); i++) {
        if (strcmp(role_names[i], name) == 0) {
            *out = (enum role)i;
            return 0;
        }
    }
    return EPH_EINVAL;
}

const char *
visibility_name(enum visibility v)
{
    return (size_t)v < ARRAY_LEN(visibility_names) ? visibility_names[v] : "unknown";
}

int
visibility_parse(const char *name, enum visibility *out)
{
    if (name == NULL)
        return EPH_EINVAL;
    for (size_t i = 0; i < ARRAY_LEN(visibility_names); i++) {
        if (strcmp(visibility_names[i], name) == 0) {
            *out = (enum visibility)i;
            return 0;
        }
    }
    return EPH_EINVAL;
}

/* A signed-in user (not a link) with at least role `min`. */
static bool
is_user_with(const struct principal *p, enum role min)
{
    return p != NULL && p->kind == PRINCIPAL_USER && p->role >= min;
}

/* The user owns the environment. An environment without an owner (made by
   the system) belongs to nobody, not to every user without a name. */
static bool
owns(const struct principal *p, const char *env_owner)
{
    return env_owner != NULL && p->user != NULL && strcmp(env_owner, p->user) == 0;
}

bool
access_env_visible(const struct principal *p, int64_t env_id, const char *env_owner,
                   enum visibility vis)
{
    if (p == NULL)
        return false;
    if (p->kind == PRINCIPAL_LINK)
        return vis == VIS_LINK && env_id == p->link_env_id;
    if (is_user_with(p, ROLE_ADMIN))
        return true;
    if (!is_user_with(p, ROLE_VIEWER))
        return false;
    return vis != VIS_PRIVATE || owns(p, env_owner);
}

bool
access_env_manage(const struct principal *p, const char *env_owner)
{
    if (is_user_with(p, ROLE_ADMIN))
        return true;
    /* A viewer may not change even what it owns (say, after a demotion). */
    return is_user_with(p, ROLE_MEMBER) && owns(p, env_owner);
}

bool
access_env_create(const struct principal *p)
{
    return is_user_with(p, ROLE_MEMBER);
}

bool
access_admin(const struct principal *p)
{
    return is_user_with(p, ROLE_ADMIN);
}
