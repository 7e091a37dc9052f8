/*
 * core/auth_config.c - reads the `auth:` and `notify:` sections of the
 * server's config file (core/auth_config.h), and answers the questions the
 * sign-in code and the notifier ask of them.
 *
 * Parsing goes in two steps, and the first error stops it:
 *  1. yaml_parse_tree() (core/yaml_util.h) turns the bytes into a small
 *     tree of our own that keeps a 1-based position on every node.
 *  2. The two sections are checked key by key and copied into struct
 *     auth_config; rules that need the whole section (a GitHub provider
 *     must be narrowed) are checked last.
 */
#include "core/auth_config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/yaml_util.h"
#include "util/fs.h"
#include "util/xmalloc.h"

/* The config file is read whole; config_load_file() has the same ceiling. */
#define AC_MAX_FILE_BYTES (1 << 20)
/* The deepest node of a valid file (a team in a provider) is 5 levels down;
 * the limit also bounds every recursion over the tree. */
#define AC_MAX_DEPTH 32
/* Provider and sink names are DNS labels: they appear in URLs and meta keys. */
#define NAME_MAX_LEN 63

static const char DEFAULT_SCOPES[] = "openid email profile";
static const char DEFAULT_GITHUB_WEB[] = "https://github.com";
static const char DEFAULT_GITHUB_API[] = "https://api.github.com";
static const char DEFAULT_EVENTS[] = "env.*";

/* ------------------------------------------------------------- context */

struct actx {
    const char *file; /* the name used in messages */
    struct eph_err *err;
    struct auth_config *ac;
    /* The mapping of each provider, parallel to ac->providers, for the
     * checks that wait until the whole section is read. */
    const struct yaml_node **provider_nodes;
};

static int fail(struct actx *c, const struct yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails with EPH_EINVAL at the position of node n. */
static int
fail(struct actx *c, const struct yaml_node *n, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = yaml_verr_at(c->err, c->file, n->line, n->col, EPH_EINVAL, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------ step 2: values */

/*
 * Looks key k up in `keys` (a NULL-terminated list): its index, or -1.
 * A repeated key is refused; `seen` (one bit per index) remembers them.
 */
static int
key_index(struct actx *c, const struct yaml_node *k, const char *const *keys, uint32_t *seen,
          int *out)
{
    char b[YAML_SHOW_BUF];

    *out = -1;
    if (k->kind != YAML_SCALAR)
        return fail(c, k, "a key must be a string, not %s", yaml_kind_name(k));
    for (int i = 0; keys[i] != NULL; i++) {
        if (strcmp(keys[i], k->text) != 0)
            continue;
        if (*seen & (UINT32_C(1) << i))
            return fail(c, k, "duplicate key '%s'", yaml_show(k->text, b));
        *seen |= UINT32_C(1) << i;
        *out = i;
        return 0;
    }
    return 0;
}

/* "a, b, c" of the keys whose bit is set in `mask`, into buf. */
static const char *
join_keys(const char *const *keys, uint32_t mask, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; keys[i] != NULL && used < size; i++) {
        int n;

        if (!(mask & (UINT32_C(1) << i)))
            continue;
        n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", keys[i]);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

static int
unknown_key(struct actx *c, const struct yaml_node *k, const char *where, const char *const *keys,
            uint32_t allowed)
{
    char b[YAML_SHOW_BUF], list[256];

    return fail(c, k, "unknown key '%s' in %s, expected one of: %s", yaml_show(k->text, b), where,
                join_keys(keys, allowed, list, sizeof(list)));
}

/* A non-empty string value of key `what`, copied into *out. */
static int
get_string(struct actx *c, const struct yaml_node *v, const char *what, char **out)
{
    if (v->kind != YAML_SCALAR)
        return fail(c, v, "'%s' must be a string, not %s", what, yaml_kind_name(v));
    if (yaml_is_null(v) || v->len == 0)
        return fail(c, v, "'%s' must not be empty", what);
    free(*out);
    *out = xstrdup(v->text);
    return 0;
}

/* true or false (yaml_bool()), into *out. */
static int
get_bool(struct actx *c, const struct yaml_node *v, const char *what, bool *out)
{
    if (!yaml_bool(v, out))
        return fail(c, v, "'%s' must be true or false", what);
    return 0;
}

/* Checks one entry of a list; `what` names the list. 0 or a failure. */
typedef int item_check_cb(struct actx *c, const struct yaml_node *item, const char *what);

/*
 * A list of non-empty strings (a null value is an empty list), each passed
 * to check if not NULL, copied into *out / *n (which must be empty).
 */
static int
get_list(struct actx *c, const struct yaml_node *v, const char *what, item_check_cb *check,
         char ***out, size_t *n)
{
    char **items;
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE)
        return fail(c, v, "'%s' must be a list of strings, not %s", what, yaml_kind_name(v));
    for (size_t i = 0; i < v->n_kids; i++) {
        const struct yaml_node *item = v->kids[i];

        if (item->kind != YAML_SCALAR)
            return fail(c, item, "'%s' must be a list of strings, not of %ss", what,
                        item->kind == YAML_MAPPING ? "mapping" : "list");
        if (yaml_is_null(item) || item->len == 0)
            return fail(c, item, "empty entry in '%s'", what);
        if (check != NULL) {
            rc = check(c, item, what);
            if (rc < 0)
                return rc;
        }
    }
    items = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*items));
    for (size_t i = 0; i < v->n_kids; i++)
        items[i] = xstrdup(v->kids[i]->text);
    *out = items;
    *n = v->n_kids;
    return 0;
}

static bool
has_space_or_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s <= 0x20 || *s == 0x7F)
            return true;
    }
    return false;
}

static int
check_email(struct actx *c, const struct yaml_node *item, const char *what)
{
    const char *at = strrchr(item->text, '@');
    char b[YAML_SHOW_BUF];

    if (at == NULL || at == item->text || at[1] == '\0' || has_space_or_control(item->text))
        return fail(c, item, "'%s' in '%s' is not an email address", yaml_show(item->text, b),
                    what);
    return 0;
}

static int
check_domain(struct actx *c, const struct yaml_node *item, const char *what)
{
    char b[YAML_SHOW_BUF];

    if (strchr(item->text, '@') != NULL || has_space_or_control(item->text))
        return fail(c, item, "'%s' in '%s' is not a domain such as example.com",
                    yaml_show(item->text, b), what);
    return 0;
}

static int
check_org(struct actx *c, const struct yaml_node *item, const char *what)
{
    char b[YAML_SHOW_BUF];

    if (strchr(item->text, '/') != NULL || has_space_or_control(item->text))
        return fail(c, item, "'%s' in '%s' is not an organisation login such as acme",
                    yaml_show(item->text, b), what);
    return 0;
}

static int
check_team(struct actx *c, const struct yaml_node *item, const char *what)
{
    const char *slash = strchr(item->text, '/');
    char b[YAML_SHOW_BUF];

    if (slash == NULL || slash == item->text || slash[1] == '\0' || strchr(slash + 1, '/') ||
        has_space_or_control(item->text))
        return fail(c, item, "'%s' in '%s' is not org/team such as acme/dev",
                    yaml_show(item->text, b), what);
    return 0;
}

/* An event pattern: an action, or a prefix and one final '*'. */
static int
check_pattern(struct actx *c, const struct yaml_node *item, const char *what)
{
    const char *star = strchr(item->text, '*');
    char b[YAML_SHOW_BUF];

    if ((star != NULL && star[1] != '\0') || has_space_or_control(item->text))
        return fail(c, item,
                    "invalid event pattern '%s' in '%s', expected an action such as env.create "
                    "or a prefix and a final '*' such as env.*",
                    yaml_show(item->text, b), what);
    return 0;
}

/* An http:// or https:// URL with a host part, copied into *out. The value
 * is never quoted in a message: it may carry a secret. */
static int
get_url(struct actx *c, const struct yaml_node *v, const char *what, char **out)
{
    int rc = get_string(c, v, what, out);
    size_t skip;

    if (rc < 0)
        return rc;
    if (strncmp(*out, "http://", 7) == 0)
        skip = 7;
    else if (strncmp(*out, "https://", 8) == 0)
        skip = 8;
    else
        return fail(c, v, "'%s' must start with http:// or https://", what);
    if ((*out)[skip] == '\0' || (*out)[skip] == '/')
        return fail(c, v, "'%s' has no host after the scheme", what);
    if (has_space_or_control(*out))
        return fail(c, v, "'%s' must not contain spaces or control characters", what);
    return 0;
}

/* Lower-case letters, digits and '-', not at either end. */
static bool
is_dns_label(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > NAME_MAX_LEN || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    }
    return true;
}

/*
 * The first line of the regular file `path` (without its line end) into
 * *out. Opened without blocking and checked to be a regular file first, so
 * a FIFO or a device cannot hang start-up. 0, -errno, EPH_ETOOBIG, or
 * EPH_EINVAL for something that is not a regular file or an empty line.
 */
static int
read_first_line(const char *path, char **out)
{
    char *data = NULL;
    struct stat sb;
    size_t len = 0, cap = 0, line;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int rc = 0;

    *out = NULL;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) != 0) {
        rc = -errno;
        goto out;
    }
    if (!S_ISREG(sb.st_mode)) {
        rc = EPH_EINVAL;
        goto out;
    }
    if (sb.st_size > AUTH_CONFIG_MAX_SECRET_FILE_BYTES) {
        rc = EPH_ETOOBIG;
        goto out;
    }
    cap = (size_t)sb.st_size + 1;
    data = xmalloc(cap);
    while (len < cap - 1) {
        ssize_t got = read(fd, data + len, cap - 1 - len);

        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = -errno;
            goto out;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    for (line = 0; line < len && data[line] != '\n' && data[line] != '\r'; line++) {
        if (data[line] == '\0')
            break;
    }
    if (line == 0) {
        rc = EPH_EINVAL;
        goto out;
    }
    *out = xstrndup(data, line);
out:
    if (data != NULL)
        explicit_bzero(data, cap);
    free(data);
    close(fd);
    return rc;
}

/* A secret from key `what_file`'s file into *out. */
static int
get_secret_file(struct actx *c, const struct yaml_node *v, const char *what_file, char **out)
{
    char *path = NULL;
    char b[YAML_SHOW_BUF];
    int rc = get_string(c, v, what_file, &path);

    if (rc == 0) {
        rc = read_first_line(path, out);
        if (rc == EPH_EINVAL)
            rc = fail(c, v, "%s '%s' is not a regular file with the secret on its first line",
                      what_file, yaml_show(path, b));
        else if (rc < 0)
            rc = fail(c, v, "cannot read %s '%s': %s", what_file, yaml_show(path, b),
                      eph_strerror(rc));
    }
    free(path);
    return rc;
}

/* ------------------------------------------------ step 2: providers */

enum {
    PK_NAME,
    PK_TYPE,
    PK_CLIENT_ID,
    PK_CLIENT_SECRET,
    PK_CLIENT_SECRET_FILE,
    PK_ISSUER,
    PK_SCOPES,
    PK_WEB_URL,
    PK_API_URL,
    PK_ORGS,
    PK_TEAMS,
};

static const char *const provider_keys[] = {
    "name",   "type",   "client_id", "client_secret", "client_secret_file",
    "issuer", "scopes", "web_url",   "api_url",       "orgs",
    "teams",  NULL,
};

#define BIT(i) (UINT32_C(1) << (i))
#define PK_COMMON                                                                                  \
    (BIT(PK_NAME) | BIT(PK_TYPE) | BIT(PK_CLIENT_ID) | BIT(PK_CLIENT_SECRET) |                     \
     BIT(PK_CLIENT_SECRET_FILE))
#define PK_OIDC (PK_COMMON | BIT(PK_ISSUER) | BIT(PK_SCOPES))
#define PK_GITHUB (PK_COMMON | BIT(PK_WEB_URL) | BIT(PK_API_URL) | BIT(PK_ORGS) | BIT(PK_TEAMS))

/* The value of key `key` in mapping m (scalar keys only), or NULL. */
static const struct yaml_node *
lookup(const struct yaml_node *m, const char *key)
{
    for (size_t i = 0; i + 1 < m->n_kids; i += 2) {
        if (m->kids[i]->kind == YAML_SCALAR && strcmp(m->kids[i]->text, key) == 0)
            return m->kids[i + 1];
    }
    return NULL;
}

/* The name of an item of `providers` or `notify` (`what`), checked to be a
 * DNS label; the callers check that it is not taken. */
static int
get_item_name(struct actx *c, const struct yaml_node *item, const char *what, char **out,
              const struct yaml_node **at)
{
    const struct yaml_node *v = lookup(item, "name");
    char b[YAML_SHOW_BUF];
    int rc;

    if (v == NULL)
        return fail(c, item, "%s needs a 'name'", what);
    *at = v;
    rc = get_string(c, v, "name", out);
    if (rc == 0 && !is_dns_label(*out))
        rc = fail(c, v,
                  "invalid %s name '%s', expected lower-case letters, digits and '-' "
                  "(at most %d)",
                  what, yaml_show(*out, b), NAME_MAX_LEN);
    return rc;
}

/* The `type` of an item: the index of its text in `names`, or a failure. */
static int
get_item_type(struct actx *c, const struct yaml_node *item, const char *what, const char *name,
              const char *const names[2], int *out)
{
    const struct yaml_node *v = lookup(item, "type");
    char b[YAML_SHOW_BUF];

    if (v == NULL)
        return fail(c, item, "%s '%s' needs a 'type': %s or %s", what, name, names[0], names[1]);
    if (v->kind != YAML_SCALAR)
        return fail(c, v, "'type' must be a string, not %s", yaml_kind_name(v));
    for (int i = 0; i < 2; i++) {
        if (strcmp(v->text, names[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    return fail(c, v, "unknown type '%s' of %s '%s', expected %s or %s", yaml_show(v->text, b),
                what, name, names[0], names[1]);
}

static int
parse_provider(struct actx *c, const struct yaml_node *item, struct auth_provider_cfg *p)
{
    struct auth_config *ac = c->ac;
    static const char *const types[2] = {"oidc", "github"};
    const struct yaml_node *name, *secret = NULL, *secret_file = NULL;
    uint32_t seen = 0, allowed;
    char where[128];
    int type, rc;

    if (item->kind != YAML_MAPPING)
        return fail(c, item,
                    "a provider must be a mapping with name, type, client_id ..., "
                    "not %s",
                    yaml_kind_name(item));
    /* name and type first: messages about the other keys name them. */
    rc = get_item_name(c, item, "provider", &p->name, &name);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < ac->n_providers; i++) {
        if (strcmp(ac->providers[i].name, p->name) == 0)
            return fail(c, name, "duplicate provider name '%s'", p->name);
    }
    rc = get_item_type(c, item, "provider", p->name, types, &type);
    if (rc < 0)
        return rc;
    p->type = type == 0 ? AUTH_PROVIDER_OIDC : AUTH_PROVIDER_GITHUB;
    allowed = type == 0 ? PK_OIDC : PK_GITHUB;
    snprintf(where, sizeof(where), "provider '%s'", p->name);
    for (size_t i = 0; i + 1 < item->n_kids; i += 2) {
        const struct yaml_node *k = item->kids[i], *v = item->kids[i + 1];
        int ki;

        rc = key_index(c, k, provider_keys, &seen, &ki);
        if (rc < 0)
            return rc;
        if (ki < 0)
            return unknown_key(c, k, where, provider_keys, allowed);
        if (!(allowed & BIT(ki)))
            return fail(c, k, "'%s' is for %s providers, provider '%s' is %s", k->text,
                        p->type == AUTH_PROVIDER_OIDC ? "github" : "oidc", p->name,
                        auth_provider_type_name(p->type));
        switch (ki) {
        case PK_NAME:
        case PK_TYPE: break; /* read above */
        case PK_CLIENT_ID:
            rc = get_string(c, v, "client_id", &p->client_id);
            if (rc == 0 && has_space_or_control(p->client_id))
                rc = fail(c, v, "'client_id' must not contain spaces or control characters");
            break;
        case PK_CLIENT_SECRET:
            secret = v;
            rc = get_string(c, v, "client_secret", &p->client_secret);
            break;
        case PK_CLIENT_SECRET_FILE: secret_file = v; break; /* read once both are known */
        case PK_ISSUER: rc = get_url(c, v, "issuer", &p->issuer); break;
        case PK_SCOPES:
            rc = get_string(c, v, "scopes", &p->scopes);
            if (rc == 0 && strstr(p->scopes, "openid") == NULL)
                rc = fail(c, v, "'scopes' must include openid");
            break;
        case PK_WEB_URL: rc = get_url(c, v, "web_url", &p->web_url); break;
        case PK_API_URL: rc = get_url(c, v, "api_url", &p->api_url); break;
        case PK_ORGS: rc = get_list(c, v, "orgs", check_org, &p->orgs, &p->n_orgs); break;
        case PK_TEAMS: rc = get_list(c, v, "teams", check_team, &p->teams, &p->n_teams); break;
        default: rc = EPH_EINTERNAL; break;
        }
        if (rc < 0)
            return rc;
    }
    if (secret != NULL && secret_file != NULL)
        return fail(c, secret_file,
                    "provider '%s' has both 'client_secret' and 'client_secret_file', "
                    "expected one",
                    p->name);
    if (secret_file != NULL) {
        rc = get_secret_file(c, secret_file, "client_secret_file", &p->client_secret);
        if (rc < 0)
            return rc;
    }
    if (p->client_id == NULL)
        return fail(c, item, "provider '%s' needs 'client_id'", p->name);
    if (p->client_secret == NULL)
        return fail(c, item, "provider '%s' needs 'client_secret' or 'client_secret_file'",
                    p->name);
    if (p->type == AUTH_PROVIDER_OIDC) {
        if (p->issuer == NULL)
            return fail(c, item, "provider '%s' needs 'issuer', the URL of the OpenID provider",
                        p->name);
        if (p->scopes == NULL)
            p->scopes = xstrdup(DEFAULT_SCOPES);
    } else {
        if (p->web_url == NULL)
            p->web_url = xstrdup(DEFAULT_GITHUB_WEB);
        if (p->api_url == NULL)
            p->api_url = xstrdup(DEFAULT_GITHUB_API);
    }
    return 0;
}

static int
parse_providers(struct actx *c, const struct yaml_node *v)
{
    struct auth_config *ac = c->ac;
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE)
        return fail(c, v, "'providers' must be a list of providers, not %s", yaml_kind_name(v));
    ac->providers = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*ac->providers));
    c->provider_nodes = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*c->provider_nodes));
    for (size_t i = 0; i < v->n_kids; i++) {
        /* Counted before parsing, so that release frees a half-read one. */
        struct auth_provider_cfg *p = &ac->providers[ac->n_providers];

        rc = parse_provider(c, v->kids[i], p);
        if (rc < 0) {
            ac->n_providers++;
            return rc;
        }
        c->provider_nodes[ac->n_providers++] = v->kids[i];
    }
    return 0;
}

/* ------------------------------------------------ step 2: auth */

enum {
    AK_LOCAL,
    AK_DEFAULT_ROLE,
    AK_ADMINS,
    AK_ALLOW_EMAILS,
    AK_ALLOW_DOMAINS,
    AK_PROVIDERS,
};

static const char *const auth_keys[] = {
    "local", "default_role", "admins", "allow_emails", "allow_domains", "providers", NULL,
};

static int
parse_auth(struct actx *c, const struct yaml_node *m)
{
    struct auth_config *ac = c->ac;
    uint32_t seen = 0;
    int rc;

    if (yaml_is_null(m))
        return 0;
    if (m->kind != YAML_MAPPING)
        return fail(c, m,
                    "'auth' must be a mapping (local, default_role, admins, ...) or on/off, "
                    "not %s",
                    yaml_kind_name(m));
    for (size_t i = 0; i + 1 < m->n_kids; i += 2) {
        const struct yaml_node *k = m->kids[i], *v = m->kids[i + 1];
        int ki;

        rc = key_index(c, k, auth_keys, &seen, &ki);
        if (rc < 0)
            return rc;
        switch (ki) {
        case AK_LOCAL: rc = get_bool(c, v, "local", &ac->local); break;
        case AK_DEFAULT_ROLE:
            if (v->kind != YAML_SCALAR || role_parse(v->text, &ac->default_role) < 0)
                rc = fail(c, v, "'default_role' must be viewer, member or admin");
            break;
        case AK_ADMINS:
            rc = get_list(c, v, "admins", check_email, &ac->admins, &ac->n_admins);
            break;
        case AK_ALLOW_EMAILS:
            rc =
                get_list(c, v, "allow_emails", check_email, &ac->allow_emails, &ac->n_allow_emails);
            break;
        case AK_ALLOW_DOMAINS:
            rc = get_list(c, v, "allow_domains", check_domain, &ac->allow_domains,
                          &ac->n_allow_domains);
            break;
        case AK_PROVIDERS: rc = parse_providers(c, v); break;
        default: return unknown_key(c, k, "auth", auth_keys, UINT32_MAX);
        }
        if (rc < 0)
            return rc;
    }
    /* Rules over the whole section: allow lists may come after providers. */
    for (size_t i = 0; i < ac->n_providers; i++) {
        const struct auth_provider_cfg *p = &ac->providers[i];

        if (p->type == AUTH_PROVIDER_GITHUB && p->n_orgs == 0 && p->n_teams == 0 &&
            ac->n_allow_emails == 0 && ac->n_allow_domains == 0)
            return fail(c, c->provider_nodes[i],
                        "provider '%s': anyone with a GitHub account could sign in: set orgs, "
                        "teams, allow_emails or allow_domains",
                        p->name);
    }
    return 0;
}

/* ------------------------------------------------ step 2: notify */

enum {
    SK_NAME,
    SK_TYPE,
    SK_URL,
    SK_EVENTS,
    SK_SECRET,
    SK_SECRET_FILE,
};

static const char *const sink_keys[] = {
    "name", "type", "url", "events", "secret", "secret_file", NULL,
};

#define SK_SLACK (BIT(SK_NAME) | BIT(SK_TYPE) | BIT(SK_URL) | BIT(SK_EVENTS))
#define SK_WEBHOOK (SK_SLACK | BIT(SK_SECRET) | BIT(SK_SECRET_FILE))

static int
parse_sink(struct actx *c, const struct yaml_node *item, struct notify_sink_cfg *s)
{
    struct auth_config *ac = c->ac;
    static const char *const types[2] = {"slack", "webhook"};
    const struct yaml_node *name, *secret = NULL, *secret_file = NULL, *events = NULL;
    uint32_t seen = 0, allowed;
    char where[128];
    int type, rc;

    if (item->kind != YAML_MAPPING)
        return fail(c, item, "a sink must be a mapping with name, type and url, not %s",
                    yaml_kind_name(item));
    rc = get_item_name(c, item, "sink", &s->name, &name);
    if (rc < 0)
        return rc;
    /* The sink being read is counted already: compare with the ones before it. */
    for (size_t i = 0; i + 1 < ac->n_sinks; i++) {
        if (strcmp(ac->sinks[i].name, s->name) == 0)
            return fail(c, name, "duplicate sink name '%s'", s->name);
    }
    rc = get_item_type(c, item, "sink", s->name, types, &type);
    if (rc < 0)
        return rc;
    s->type = type == 0 ? NOTIFY_SLACK : NOTIFY_WEBHOOK;
    allowed = type == 0 ? SK_SLACK : SK_WEBHOOK;
    snprintf(where, sizeof(where), "sink '%s'", s->name);
    for (size_t i = 0; i + 1 < item->n_kids; i += 2) {
        const struct yaml_node *k = item->kids[i], *v = item->kids[i + 1];
        int ki;

        rc = key_index(c, k, sink_keys, &seen, &ki);
        if (rc < 0)
            return rc;
        if (ki < 0)
            return unknown_key(c, k, where, sink_keys, allowed);
        if (!(allowed & BIT(ki)))
            return fail(c, k, "'%s' is for webhook sinks, sink '%s' is slack", k->text, s->name);
        switch (ki) {
        case SK_NAME:
        case SK_TYPE: break; /* read above */
        case SK_URL: rc = get_url(c, v, "url", &s->url); break;
        case SK_EVENTS:
            events = v;
            rc = get_list(c, v, "events", check_pattern, &s->events, &s->n_events);
            break;
        case SK_SECRET:
            secret = v;
            rc = get_string(c, v, "secret", &s->secret);
            break;
        case SK_SECRET_FILE: secret_file = v; break; /* read once both are known */
        default: rc = EPH_EINTERNAL; break;
        }
        if (rc < 0)
            return rc;
    }
    if (secret != NULL && secret_file != NULL)
        return fail(c, secret_file, "sink '%s' has both 'secret' and 'secret_file', expected one",
                    s->name);
    if (secret_file != NULL) {
        rc = get_secret_file(c, secret_file, "secret_file", &s->secret);
        if (rc < 0)
            return rc;
    }
    if (s->url == NULL)
        return fail(c, item, "sink '%s' needs 'url'", s->name);
    if (s->type == NOTIFY_WEBHOOK && s->secret == NULL)
        return fail(c, item, "webhook sink '%s' needs 'secret' or 'secret_file' to sign with",
                    s->name);
    if (events != NULL && s->n_events == 0)
        return fail(c, events, "'events' of sink '%s' is empty: leave it out for [%s]", s->name,
                    DEFAULT_EVENTS);
    if (s->n_events == 0) {
        s->events = xcalloc(1, sizeof(*s->events));
        s->events[0] = xstrdup(DEFAULT_EVENTS);
        s->n_events = 1;
    }
    return 0;
}

static int
parse_notify(struct actx *c, const struct yaml_node *v)
{
    struct auth_config *ac = c->ac;
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE)
        return fail(c, v, "'notify' must be a list of sinks, not %s", yaml_kind_name(v));
    ac->sinks = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*ac->sinks));
    for (size_t i = 0; i < v->n_kids; i++) {
        /* Counted before parsing, so that release frees a half-read one. */
        rc = parse_sink(c, v->kids[i], &ac->sinks[ac->n_sinks++]);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------ the file */

/* The root mapping: `auth` (unless a scalar: the flat setting) and
 * `notify`; every other key is config_load_file()'s. */
static int
parse_root(struct actx *c, const struct yaml_node *root)
{
    const struct yaml_node *auth = NULL, *notify = NULL;
    int rc;

    if (root->kind != YAML_MAPPING)
        return fail(c, root, "the config must be a mapping of settings");
    for (size_t i = 0; i + 1 < root->n_kids; i += 2) {
        const struct yaml_node *k = root->kids[i], *v = root->kids[i + 1];
        const struct yaml_node **slot;

        if (k->kind != YAML_SCALAR)
            continue;
        if (strcmp(k->text, "auth") == 0)
            slot = &auth;
        else if (strcmp(k->text, "notify") == 0)
            slot = &notify;
        else
            continue;
        if (*slot != NULL)
            return fail(c, k, "duplicate key '%s'", k->text);
        *slot = v;
    }
    /* `auth: on` is the flat setting, `auth:` alone (null) too. */
    if (auth != NULL && auth->kind != YAML_SCALAR) {
        rc = parse_auth(c, auth);
        if (rc < 0)
            return rc;
    }
    if (notify != NULL)
        return parse_notify(c, notify);
    return 0;
}

void
auth_config_init(struct auth_config *ac)
{
    memset(ac, 0, sizeof(*ac));
    ac->local = true;
    ac->default_role = ROLE_MEMBER;
}

static void
strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void
secret_free(char *s)
{
    if (s != NULL)
        explicit_bzero(s, strlen(s));
    free(s);
}

void
auth_config_release(struct auth_config *ac)
{
    for (size_t i = 0; i < ac->n_providers; i++) {
        struct auth_provider_cfg *p = &ac->providers[i];

        free(p->name);
        free(p->client_id);
        secret_free(p->client_secret);
        free(p->issuer);
        free(p->scopes);
        free(p->web_url);
        free(p->api_url);
        strv_free(p->orgs, p->n_orgs);
        strv_free(p->teams, p->n_teams);
    }
    free(ac->providers);
    for (size_t i = 0; i < ac->n_sinks; i++) {
        struct notify_sink_cfg *s = &ac->sinks[i];

        free(s->name);
        free(s->url);
        secret_free(s->secret);
        strv_free(s->events, s->n_events);
    }
    free(ac->sinks);
    strv_free(ac->admins, ac->n_admins);
    strv_free(ac->allow_emails, ac->n_allow_emails);
    strv_free(ac->allow_domains, ac->n_allow_domains);
    auth_config_init(ac);
}

int
auth_config_load_text(struct auth_config *ac, const char *name, const char *text, size_t len,
                      struct eph_err *err)
{
    struct actx c = {.file = name ? name : "config", .err = err, .ac = ac};
    struct yaml_parse_opts yopts = {.file = c.file, .max_depth = AC_MAX_DEPTH};
    struct yaml_node *root = NULL;
    int rc;

    if (len > AC_MAX_FILE_BYTES)
        return eph_err_set(err, EPH_ETOOBIG, "%s: the config is larger than %d bytes", c.file,
                           AC_MAX_FILE_BYTES);
    rc = yaml_parse_tree(text, len, &yopts, &root, err);
    if (rc == 0 && root != NULL)
        rc = parse_root(&c, root);
    free(c.provider_nodes);
    yaml_node_free(root);
    return rc;
}

int
auth_config_load_file(struct auth_config *ac, const char *path, struct eph_err *err)
{
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(path, AC_MAX_FILE_BYTES, &text, &len);

    if (rc < 0)
        return eph_err_set(err, rc, "cannot read config '%s': %s", path, eph_strerror(rc));
    rc = auth_config_load_text(ac, path, text, len, err);
    explicit_bzero(text, len); /* it may hold secrets */
    free(text);
    return rc;
}

/* ------------------------------------------------ questions */

static bool
in_list_nocase(char *const *list, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(list[i], s) == 0)
            return true;
    }
    return false;
}

bool
auth_config_email_allowed(const struct auth_config *ac, const char *email)
{
    const char *at;

    if (ac->n_allow_emails == 0 && ac->n_allow_domains == 0)
        return true;
    if (email == NULL || *email == '\0')
        return false;
    if (in_list_nocase(ac->allow_emails, ac->n_allow_emails, email))
        return true;
    at = strrchr(email, '@');
    return at != NULL && at[1] != '\0' &&
           in_list_nocase(ac->allow_domains, ac->n_allow_domains, at + 1);
}

enum role
auth_config_role_for(const struct auth_config *ac, const char *email)
{
    if (email != NULL && *email != '\0' && in_list_nocase(ac->admins, ac->n_admins, email))
        return ROLE_ADMIN;
    return ac->default_role;
}

const struct auth_provider_cfg *
auth_config_provider(const struct auth_config *ac, const char *name)
{
    if (name == NULL)
        return NULL;
    for (size_t i = 0; i < ac->n_providers; i++) {
        if (strcmp(ac->providers[i].name, name) == 0)
            return &ac->providers[i];
    }
    return NULL;
}

const char *
auth_provider_type_name(enum auth_provider_type type)
{
    return type == AUTH_PROVIDER_GITHUB ? "github" : "oidc";
}

const char *
notify_sink_type_name(enum notify_sink_type type)
{
    return type == NOTIFY_WEBHOOK ? "webhook" : "slack";
}

bool
notify_event_wanted(const struct notify_sink_cfg *s, const char *action)
{
    if (action == NULL)
        return false;
    for (size_t i = 0; i < s->n_events; i++) {
        const char *p = s->events[i];
        size_t n = strlen(p);

        if (n > 0 && p[n - 1] == '*') {
            if (strncmp(p, action, n - 1) == 0)
                return true;
        } else if (strcmp(p, action) == 0) {
            return true;
        }
    }
    return false;
}
