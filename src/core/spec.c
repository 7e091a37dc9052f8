/*
 * core/spec.c - the environment template: ephemera.yaml (version 1) -> struct spec.
 *
 * Parsing goes in three steps, and the first error stops it:
 *  1. yaml_parse_tree() (core/yaml_util.h) turns the bytes into a small
 *     tree of our own that keeps a 1-based position on every node; the
 *     first repeated key in it is refused.
 *  2. The tree is checked section by section and copied into struct spec;
 *     scalars that may hold ${...} references and depends_on entries are
 *     remembered with their nodes.
 *  3. Once every name is known: depends_on, references, dependency cycles.
 *
 * The second half works on a parsed spec: dependency order, params given at
 * creation, ${...} expansion, and the environment variables of a service.
 */
#include "core/spec.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/schedule.h"
#include "core/tz.h"
#include "core/units.h"
#include "core/yaml_util.h"
#include "util/buf.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* Deeper YAML is a mistake in a template (the deepest part of a valid one,
 * live_update.on, is 5 levels down); the limit also bounds every recursion
 * over the tree. */
#define SPEC_MAX_DEPTH 64

/* ------------------------------------------------------------- the tree */

/* yaml_parse_tree() builds it (core/yaml_util.h); a mapping's kids are pairs. */
static size_t
n_pairs(const struct yaml_node *map)
{
    return map->n_kids / 2;
}

static const struct yaml_node *
pair_key(const struct yaml_node *map, size_t i)
{
    return map->kids[2 * i];
}

static const struct yaml_node *
pair_value(const struct yaml_node *map, size_t i)
{
    return map->kids[2 * i + 1];
}

/* ------------------------------------------------------------- context */

struct pctx {
    const char *file; /* the name used in messages */
    struct eph_err *err;
    struct spec *s; /* being filled; spec_free() copes with a partial one */
    /* depends_on entries, parallel to each service's depends_on, for positions. */
    const struct yaml_node **dep_nodes[SPEC_MAX_SERVICES];
    /* Scalars that may hold ${...}, in file order, checked once all names are known. */
    const struct yaml_node **refs;
    size_t n_refs;
    size_t cap_refs;
};

static int fail_at(struct pctx *c, int line, int col, int code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
fail_at(struct pctx *c, int line, int col, int code, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = yaml_verr_at(c->err, c->file, line, col, code, fmt, ap);
    va_end(ap);
    return rc;
}

static int fail(struct pctx *c, const struct yaml_node *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Fails with EPH_EINVAL at the position of node n. */
static int
fail(struct pctx *c, const struct yaml_node *n, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = yaml_verr_at(c->err, c->file, n->line, n->col, EPH_EINVAL, fmt, ap);
    va_end(ap);
    return rc;
}

/* ------------------------------------------------- step 1: duplicate keys */

struct key_at {
    const struct yaml_node *key;
    size_t index; /* position in the mapping */
};

static int
cmp_key_at(const void *a, const void *b)
{
    const struct key_at *x = a, *y = b;
    int c;

    if (x->key->len != y->key->len)
        return x->key->len < y->key->len ? -1 : 1;
    c = memcmp(x->key->text, y->key->text, x->key->len);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : (x->index > y->index);
}

static bool
same_text(const struct yaml_node *a, const struct yaml_node *b)
{
    return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

static bool
before(const struct yaml_node *a, const struct yaml_node *b)
{
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/*
 * The duplicate key that comes first in the file, in n or below, into *best
 * if it comes before *best. Sorting keeps a mapping with thousands of keys
 * (which the size limit allows) from costing seconds.
 */
static void
find_duplicate(const struct yaml_node *n, const struct yaml_node **best)
{
    struct key_at *keys;
    size_t count = 0;

    if (n->kind == YAML_SCALAR)
        return;
    for (size_t i = 0; i < n->n_kids; i++)
        find_duplicate(n->kids[i], best);
    if (n->kind != YAML_MAPPING || n_pairs(n) < 2)
        return;
    keys = xcalloc(n_pairs(n), sizeof(*keys));
    for (size_t i = 0; i < n_pairs(n); i++) {
        if (pair_key(n, i)->kind == YAML_SCALAR) {
            keys[count].key = pair_key(n, i);
            keys[count].index = i;
            count++;
        }
    }
    qsort(keys, count, sizeof(*keys), cmp_key_at);
    /* Within a run of equal keys the second is the first repetition. */
    for (size_t i = 1; i < count; i++) {
        if (same_text(keys[i].key, keys[i - 1].key) &&
            (i < 2 || !same_text(keys[i - 1].key, keys[i - 2].key)) &&
            (*best == NULL || before(keys[i].key, *best)))
            *best = keys[i].key;
    }
    free(keys);
}

/* ------------------------------------------------- step 2: tree -> spec */

static bool
is_lower_or_digit(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
}

static bool
is_dns_label(const char *s)
{
    size_t len = strlen(s);

    if (len == 0 || len > 30 || s[0] == '-' || s[len - 1] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!is_lower_or_digit(s[i]) && s[i] != '-')
            return false;
    }
    return true;
}

static bool
is_param_name(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        if (!is_lower_or_digit(*s) && *s != '_')
            return false;
    }
    return true;
}

static bool
is_shell_name(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    }
    return true;
}

/* A mapping key must be a string (YAML allows lists and mappings as keys). */
static int
check_key(struct pctx *c, const struct yaml_node *k)
{
    if (k->kind != YAML_SCALAR)
        return fail(c, k, "a key must be a string, not %s", yaml_kind_name(k));
    return 0;
}

static int
unknown_key(struct pctx *c, const struct yaml_node *k, const char *where, const char *expected)
{
    char b[YAML_SHOW_BUF];

    return fail(c, k, "unknown key '%s' in %s, expected one of: %s", yaml_show(k->text, b), where,
                expected);
}

/* A non-empty string value of key `what`, copied into *out. */
static int
get_string(struct pctx *c, const struct yaml_node *v, const char *what, char **out)
{
    if (v->kind != YAML_SCALAR)
        return fail(c, v, "'%s' must be a string, not %s", what, yaml_kind_name(v));
    if (yaml_is_null(v) || v->len == 0)
        return fail(c, v, "'%s' must not be empty", what);
    free(*out);
    *out = xstrdup(v->text);
    return 0;
}

static void
remember_refs(struct pctx *c, const struct yaml_node *n)
{
    if (c->n_refs == c->cap_refs) {
        c->cap_refs = c->cap_refs ? c->cap_refs * 2 : 16;
        c->refs = xrealloc(c->refs, c->cap_refs * sizeof(*c->refs));
    }
    c->refs[c->n_refs++] = n;
}

/* A duration in seconds, greater than zero. */
static int
get_duration(struct pctx *c, const struct yaml_node *v, const char *what, int64_t *out_s)
{
    struct eph_err derr = {0};
    int64_t sec;

    if (v->kind != YAML_SCALAR || yaml_is_null(v))
        return fail(c, v, "'%s' must be a duration, e.g. 30m, 2h or 1h30m", what);
    if (duration_parse(v->text, &sec, &derr) < 0)
        return fail(c, v, "%s", derr.msg);
    if (sec <= 0)
        return fail(c, v, "'%s' must be greater than zero", what);
    *out_s = sec;
    return 0;
}

/* "a, b, c" into buf (cut short if it does not fit). */
static void
join_allowed(const struct spec_param *p, char *buf, size_t size)
{
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < p->n_allowed && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "", p->allowed[i]);

        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static bool
param_allows(const struct spec_param *p, const char *value)
{
    if (p->n_allowed == 0)
        return true;
    for (size_t i = 0; i < p->n_allowed; i++) {
        if (strcmp(p->allowed[i], value) == 0)
            return true;
    }
    return false;
}

static int
parse_param(struct pctx *c, const struct yaml_node *key, const struct yaml_node *v,
            struct spec_param *p)
{
    const struct yaml_node *def = NULL;
    char b[YAML_SHOW_BUF];
    int rc;

    if (!is_param_name(key->text))
        return fail(c, key, "invalid param name '%s', expected lower-case letters, digits and '_'",
                    yaml_show(key->text, b));
    if (yaml_is_null(v))
        return 0; /* "name:" alone: required, any value */
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "param '%s' must be a mapping, e.g. { default: a, allowed: [a, b] }",
                    p->name);
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "default") == 0) {
            if (val->kind != YAML_SCALAR)
                return fail(c, val, "'default' of param '%s' must be a string, not %s", p->name,
                            yaml_kind_name(val));
            if (yaml_is_null(val))
                return fail(c, val,
                            "'default' of param '%s' is empty, write \"\" for an empty value",
                            p->name);
            p->default_value = xstrdup(val->text);
            def = val;
        } else if (strcmp(k->text, "allowed") == 0) {
            if (val->kind != YAML_SEQUENCE)
                return fail(c, val, "'allowed' of param '%s' must be a list of strings", p->name);
            p->allowed = xcalloc(val->n_kids ? val->n_kids : 1, sizeof(*p->allowed));
            for (size_t j = 0; j < val->n_kids; j++) {
                const struct yaml_node *item = val->kids[j];

                if (item->kind != YAML_SCALAR || yaml_is_null(item))
                    return fail(c, item, "'allowed' of param '%s' must be a list of strings",
                                p->name);
                p->allowed[p->n_allowed++] = xstrdup(item->text);
            }
        } else {
            char where[64];

            snprintf(where, sizeof(where), "param '%s'", p->name);
            return unknown_key(c, k, where, "default, allowed");
        }
    }
    if (def != NULL && !param_allows(p, p->default_value)) {
        char list[EPH_ERR_MSG_MAX];

        join_allowed(p, list, sizeof(list));
        return fail(c, def, "default '%s' of param '%s' must be one of: %s",
                    yaml_show(p->default_value, b), p->name, list);
    }
    return 0;
}

static int
parse_params(struct pctx *c, const struct yaml_node *v)
{
    struct spec *s = c->s;
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "'params' must be a mapping");
    if (n_pairs(v) > SPEC_MAX_PARAMS)
        return fail(c, pair_key(v, SPEC_MAX_PARAMS), "too many params, at most %d",
                    SPEC_MAX_PARAMS);
    s->params = xcalloc(n_pairs(v) ? n_pairs(v) : 1, sizeof(*s->params));
    for (size_t i = 0; i < n_pairs(v); i++) {
        struct spec_param *p = &s->params[s->n_params];

        rc = check_key(c, pair_key(v, i));
        if (rc < 0)
            return rc;
        p->name = xstrdup(pair_key(v, i)->text);
        s->n_params++;
        rc = parse_param(c, pair_key(v, i), pair_value(v, i), p);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* defaults.schedule: { awake: "Mon-Fri 08:00-20:00", timezone: Europe/Madrid,
 * wake_outside_hours: false } */
static int
parse_schedule(struct pctx *c, const struct yaml_node *v)
{
    const struct yaml_node *awake = NULL, *zone = NULL;
    struct eph_err serr = {0};
    struct schedule *sched = NULL;
    struct tz *tz = NULL;
    bool on;
    int rc = 0;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v,
                    "'schedule' must be a mapping, e.g. { awake: \"Mon-Fri 08:00-20:00\", "
                    "timezone: Europe/Madrid }");
    for (size_t i = 0; i < n_pairs(v) && rc == 0; i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "awake") == 0) {
            awake = val;
            rc = get_string(c, val, "awake", &c->s->default_schedule_awake);
        } else if (strcmp(k->text, "timezone") == 0) {
            zone = val;
            rc = get_string(c, val, "timezone", &c->s->default_schedule_tz);
        } else if (strcmp(k->text, "wake_outside_hours") == 0) {
            if (!yaml_bool(val, &on))
                rc = fail(c, val, "'wake_outside_hours' must be true or false");
            else
                c->s->default_wake_outside_hours = on ? 1 : 0;
        } else {
            rc = unknown_key(c, k, "'schedule'", "awake, timezone, wake_outside_hours");
        }
    }
    if (rc < 0)
        return rc;
    if (zone != NULL && awake == NULL)
        return fail(c, zone,
                    "'timezone' needs 'awake' in 'schedule', e.g. "
                    "awake: \"Mon-Fri 08:00-20:00\"");
    if (zone != NULL) {
        rc = tz_load(c->s->default_schedule_tz, &tz, &serr);
        if (rc < 0)
            return fail(c, zone, "%s", serr.msg);
    }
    if (awake != NULL) {
        rc = schedule_new(c->s->default_schedule_awake, tz, &sched, &serr); /* takes tz */
        schedule_free(sched);
        if (rc < 0)
            return fail(c, awake, "%s", serr.msg);
    } else {
        tz_free(tz);
    }
    return 0;
}

/* defaults.limits: { memory: 512Mi, cpu: 1.0, pids: 512 } */
static int
parse_limits(struct pctx *c, const struct yaml_node *v)
{
    enum { PIDS_MAX = 4194304 }; /* the kernel's largest pid_max */
    struct spec *s = c->s;
    char b[YAML_SHOW_BUF];

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v,
                    "'limits' must be a mapping, e.g. { memory: 512Mi, cpu: 1.0, pids: 512 }");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);
        const char *text = val->kind == YAML_SCALAR && !yaml_is_null(val) ? val->text : NULL;
        int rc = check_key(c, k);

        if (rc < 0)
            return rc;
        if (strcmp(k->text, "memory") == 0) {
            if (text == NULL)
                return fail(c, val, "'memory' must be a size such as 512Mi or 2Gi");
            if (parse_size_bytes(text, &s->default_limit_memory_bytes) < 0)
                return fail(c, val, "'memory' must be a size such as 512Mi or 2Gi, got '%s'",
                            yaml_show(text, b));
            if (s->default_limit_memory_bytes == 0)
                return fail(c, val, "'memory' must be greater than zero");
        } else if (strcmp(k->text, "cpu") == 0) {
            if (text == NULL)
                return fail(c, val, "'cpu' must be a number of cores such as 1.0, 0.5 or 250m");
            if (parse_cpu_millis(text, &s->default_limit_cpu_millis) < 0)
                return fail(c, val,
                            "'cpu' must be a number of cores such as 1.0, 0.5 or 250m, got '%s'",
                            yaml_show(text, b));
            if (s->default_limit_cpu_millis == 0)
                return fail(c, val, "'cpu' must be greater than zero");
        } else if (strcmp(k->text, "pids") == 0) {
            char *end = NULL;
            long long n = 0;

            if (text != NULL && text[0] >= '0' && text[0] <= '9') {
                errno = 0;
                n = strtoll(text, &end, 10);
            }
            if (end == NULL || *end != '\0' || errno != 0 || n < 1 || n > PIDS_MAX)
                return fail(c, val, "'pids' must be a whole number from 1 to %d", PIDS_MAX);
            s->default_limit_pids = n;
        } else {
            return unknown_key(c, k, "'limits'", "memory, cpu, pids");
        }
    }
    return 0;
}

static int
parse_defaults(struct pctx *c, const struct yaml_node *v)
{
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "'defaults' must be a mapping");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "ttl") == 0) {
            rc = get_duration(c, val, "ttl", &c->s->default_ttl_s);
        } else if (strcmp(k->text, "sleep_after") == 0) {
            if (val->kind == YAML_SCALAR && strcmp(val->text, "never") == 0)
                c->s->default_sleep_after_s = -1;
            else
                rc = get_duration(c, val, "sleep_after", &c->s->default_sleep_after_s);
        } else if (strcmp(k->text, "schedule") == 0) {
            rc = parse_schedule(c, val);
        } else if (strcmp(k->text, "limits") == 0) {
            rc = parse_limits(c, val);
        } else {
            rc = unknown_key(c, k, "'defaults'", "ttl, sleep_after, schedule, limits");
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* "http://HOST:PORT" with an optional trailing '/'; only the prefix once ${...} is in it. */
static int
check_upstream(struct pctx *c, const struct yaml_node *v)
{
    const char *t = v->text, *auth, *end, *colon;
    char b[YAML_SHOW_BUF];
    size_t port_len;
    long port;

    if (strncmp(t, "http://", 7) != 0)
        return fail(c, v, "'upstream' must start with http://, got '%s'", yaml_show(t, b));
    if (strstr(t, "${") != NULL)
        return 0; /* HOST or PORT comes from a reference: checked when expanded */
    auth = t + 7;
    end = strchr(auth, '/');
    if (end == NULL)
        end = auth + strlen(auth);
    colon = NULL;
    for (const char *p = auth; p < end; p++) {
        if (*p == ':')
            colon = p;
    }
    if (colon == NULL || colon == auth || (*end == '/' && end[1] != '\0'))
        goto bad;
    if (auth[0] == '[') {
        /* [IPv6]:PORT */
        if (colon[-1] != ']' || colon - auth < 3)
            goto bad;
        for (const char *p = auth + 1; p < colon - 1; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
                  (*p >= 'A' && *p <= 'F') || *p == ':' || *p == '.'))
                goto bad;
        }
    } else {
        for (const char *p = auth; p < colon; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                  (*p >= 'A' && *p <= 'Z') || *p == '.' || *p == '-'))
                goto bad;
        }
    }
    port_len = (size_t)(end - colon - 1);
    if (port_len == 0 || port_len > 5)
        goto bad;
    port = 0;
    for (const char *p = colon + 1; p < end; p++) {
        if (*p < '0' || *p > '9')
            goto bad;
        port = port * 10 + (*p - '0');
    }
    if (port < 1 || port > 65535)
        goto bad;
    return 0;
bad:
    return fail(c, v, "'upstream' must look like http://HOST:PORT, got '%s'", yaml_show(t, b));
}

/* Relative, and no ".." component: a service stays inside its checkout. */
static int
check_dir(struct pctx *c, const struct yaml_node *v)
{
    const char *p = v->text;
    char b[YAML_SHOW_BUF];

    if (p[0] == '/')
        goto bad;
    while (*p) {
        size_t n = strcspn(p, "/");

        if (n == 2 && p[0] == '.' && p[1] == '.')
            goto bad;
        p += n;
        if (*p == '/')
            p++;
    }
    return 0;
bad:
    return fail(c, v, "'dir' must be a relative path inside the checkout, got '%s'",
                yaml_show(v->text, b));
}

static int
parse_env(struct pctx *c, const struct yaml_node *v, struct spec_service *svc)
{
    char b[YAML_SHOW_BUF];
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "'env' must be a mapping");
    svc->env = xcalloc(n_pairs(v) ? n_pairs(v) : 1, sizeof(*svc->env));
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);
        struct spec_kv *kv = &svc->env[svc->n_env];

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (!is_shell_name(k->text))
            return fail(c, k,
                        "invalid env name '%s', expected letters, digits and '_', "
                        "not starting with a digit",
                        yaml_show(k->text, b));
        if (val->kind != YAML_SCALAR)
            return fail(c, val, "value of env '%s' must be a string, not %s", k->text,
                        yaml_kind_name(val));
        kv->key = xstrdup(k->text);
        kv->value = xstrdup(yaml_is_null(val) ? "" : val->text);
        svc->n_env++;
        remember_refs(c, val);
    }
    return 0;
}

static int
parse_depends_on(struct pctx *c, const struct yaml_node *v, struct spec_service *svc, size_t idx)
{
    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE)
        return fail(c, v, "'depends_on' must be a list of service names");
    /* More entries than services can only hold a repetition or a typo. */
    if (v->n_kids > SPEC_MAX_SERVICES)
        return fail(c, v->kids[SPEC_MAX_SERVICES], "'depends_on' lists more than %d services",
                    SPEC_MAX_SERVICES);
    svc->depends_on = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*svc->depends_on));
    c->dep_nodes[idx] = xcalloc(v->n_kids ? v->n_kids : 1, sizeof(*c->dep_nodes[idx]));
    for (size_t i = 0; i < v->n_kids; i++) {
        const struct yaml_node *item = v->kids[i];

        if (item->kind != YAML_SCALAR || yaml_is_null(item))
            return fail(c, item, "'depends_on' must be a list of service names");
        c->dep_nodes[idx][svc->n_depends_on] = item;
        svc->depends_on[svc->n_depends_on++] = xstrdup(item->text);
    }
    return 0;
}

static int
parse_health(struct pctx *c, const struct yaml_node *v, struct spec_service *svc)
{
    char b[YAML_SHOW_BUF];
    int kinds = 0;
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "'health' must be a mapping, e.g. { http: /healthz } or { tcp: true }");
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);
        int64_t sec;
        bool on;

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "http") == 0) {
            rc = get_string(c, val, "http", &svc->health_path);
            if (rc < 0)
                return rc;
            if (svc->health_path[0] != '/')
                return fail(c, val, "'http' must be a path starting with '/', got '%s'",
                            yaml_show(val->text, b));
            svc->health_kind = SPEC_HEALTH_HTTP;
            remember_refs(c, val);
            kinds++;
        } else if (strcmp(k->text, "tcp") == 0) {
            if (!yaml_bool(val, &on) || !on)
                return fail(c, val, "'tcp' must be true");
            svc->health_kind = SPEC_HEALTH_TCP;
            kinds++;
        } else if (strcmp(k->text, "timeout") == 0) {
            rc = get_duration(c, val, "timeout", &sec);
            if (rc < 0)
                return rc;
            svc->health_timeout_ms = sec * 1000;
        } else {
            return unknown_key(c, k, "'health'", "http, tcp, timeout");
        }
    }
    if (kinds != 1)
        return fail(c, v, "'health' needs exactly one of 'http' or 'tcp'");
    return 0;
}

/* Accepted and checked for shape only: the local driver does not use it yet. */
static int
parse_live_update(struct pctx *c, const struct yaml_node *v)
{
    int rc;

    if (yaml_is_null(v))
        return 0;
    if (v->kind != YAML_SEQUENCE)
        return fail(c, v, "'live_update' must be a list of rules");
    for (size_t i = 0; i < v->n_kids; i++) {
        const struct yaml_node *rule = v->kids[i];

        if (rule->kind != YAML_MAPPING)
            return fail(c, rule, "a 'live_update' rule must be a mapping, not %s",
                        yaml_kind_name(rule));
        for (size_t j = 0; j < n_pairs(rule); j++) {
            const struct yaml_node *k = pair_key(rule, j);

            rc = check_key(c, k);
            if (rc < 0)
                return rc;
            if (strcmp(k->text, "on") != 0 && strcmp(k->text, "run") != 0 &&
                strcmp(k->text, "restart") != 0 && strcmp(k->text, "sync") != 0)
                return unknown_key(c, k, "'live_update'", "on, run, restart, sync");
        }
    }
    return 0;
}

static int
parse_service(struct pctx *c, const struct yaml_node *key, const struct yaml_node *v, size_t idx)
{
    struct spec_service *svc = &c->s->services[idx];
    const struct yaml_node *run_k = NULL, *upstream_k = NULL, *local_k = NULL;
    int rc = 0;

    svc->health_timeout_ms = SPEC_DEFAULT_HEALTH_TIMEOUT_MS;
    svc->expose = true;
    if (yaml_is_null(v))
        return fail(c, key, "service '%s' needs 'run' or 'upstream'", svc->name);
    if (v->kind != YAML_MAPPING)
        return fail(c, v, "service '%s' must be a mapping", svc->name);
    for (size_t i = 0; i < n_pairs(v) && rc == 0; i++) {
        const struct yaml_node *k = pair_key(v, i), *val = pair_value(v, i);
        const char *name = k->text;

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(name, "run") == 0 || strcmp(name, "upstream") == 0) {
            bool is_run = strcmp(name, "run") == 0;

            if ((is_run ? upstream_k : run_k) != NULL)
                return fail(c, k, "service '%s' has both 'run' and 'upstream', expected one",
                            svc->name);
            if (is_run) {
                run_k = k;
                rc = get_string(c, val, "run", &svc->run);
            } else {
                upstream_k = k;
                rc = get_string(c, val, "upstream", &svc->upstream);
                if (rc == 0)
                    rc = check_upstream(c, val);
            }
            if (rc == 0)
                remember_refs(c, val);
        } else if (strcmp(name, "dir") == 0) {
            rc = get_string(c, val, "dir", &svc->dir);
            if (rc == 0)
                rc = check_dir(c, val);
        } else if (strcmp(name, "setup") == 0) {
            rc = get_string(c, val, "setup", &svc->setup);
            if (rc == 0)
                remember_refs(c, val);
        } else if (strcmp(name, "env") == 0) {
            rc = parse_env(c, val, svc);
        } else if (strcmp(name, "depends_on") == 0) {
            rc = parse_depends_on(c, val, svc, idx);
        } else if (strcmp(name, "health") == 0) {
            rc = parse_health(c, val, svc);
        } else if (strcmp(name, "expose") == 0) {
            if (!yaml_bool(val, &svc->expose))
                rc = fail(c, val, "'expose' must be true or false");
        } else if (strcmp(name, "live_update") == 0) {
            rc = parse_live_update(c, val);
        } else {
            char where[64];

            snprintf(where, sizeof(where), "service '%s'", svc->name);
            rc = unknown_key(c, k, where,
                             "run, upstream, dir, setup, env, depends_on, health, expose, "
                             "live_update");
        }
        /* What only makes sense for a process we start. */
        if (local_k == NULL && (strcmp(name, "dir") == 0 || strcmp(name, "setup") == 0 ||
                                strcmp(name, "env") == 0 || strcmp(name, "live_update") == 0))
            local_k = k;
    }
    if (rc < 0)
        return rc;
    if (run_k == NULL && upstream_k == NULL)
        return fail(c, key, "service '%s' needs 'run' or 'upstream'", svc->name);
    if (upstream_k != NULL && local_k != NULL)
        return fail(c, local_k, "'%s' cannot be used with 'upstream', which starts nothing",
                    local_k->text);
    return 0;
}

static int
parse_services(struct pctx *c, const struct yaml_node *v)
{
    struct spec *s = c->s;
    char b[YAML_SHOW_BUF];
    int rc;

    if (!yaml_is_null(v) && v->kind != YAML_MAPPING)
        return fail(c, v, "'services' must be a mapping");
    if (yaml_is_null(v) || n_pairs(v) == 0)
        return fail(c, v, "'services' is empty, expected at least one service");
    if (n_pairs(v) > SPEC_MAX_SERVICES)
        return fail(c, pair_key(v, SPEC_MAX_SERVICES), "too many services, at most %d",
                    SPEC_MAX_SERVICES);
    s->services = xcalloc(n_pairs(v), sizeof(*s->services));
    for (size_t i = 0; i < n_pairs(v); i++) {
        const struct yaml_node *k = pair_key(v, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (!is_dns_label(k->text))
            return fail(c, k,
                        "invalid service name '%s', expected at most 30 lower-case letters, "
                        "digits and '-', not starting or ending with '-'",
                        yaml_show(k->text, b));
        /* ${params.x} and ${env.name} would be ambiguous. */
        if (strcmp(k->text, "params") == 0 || strcmp(k->text, "env") == 0)
            return fail(c, k, "service name '%s' is reserved", k->text);
        s->services[i].name = xstrdup(k->text);
        s->n_services++;
        rc = parse_service(c, k, pair_value(v, i), i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int
parse_version(struct pctx *c, const struct yaml_node *root)
{
    const struct yaml_node *v = NULL;
    char b[YAML_SHOW_BUF];
    bool numeric = true;

    for (size_t i = 0; i < n_pairs(root) && v == NULL; i++) {
        const struct yaml_node *k = pair_key(root, i);

        if (k->kind == YAML_SCALAR && strcmp(k->text, "version") == 0)
            v = pair_value(root, i);
    }
    if (v == NULL)
        return fail(c, root, "missing 'version', expected 'version: 1'");
    if (v->kind != YAML_SCALAR || yaml_is_null(v))
        return fail(c, v, "'version' must be a number, expected 'version: 1'");
    if (strcmp(v->text, "1") == 0)
        return 0;
    for (const char *p = v->text; *p; p++) {
        if (!((*p >= '0' && *p <= '9') || *p == '.'))
            numeric = false;
    }
    if (numeric && v->len <= 10)
        return fail(c, v, "unsupported version %s, expected 1", v->text);
    return fail(c, v, "unsupported version '%s', expected 1", yaml_show(v->text, b));
}

/* ------------------------------------------------------------ references */

/*
 * One ${scope.name} reference of ours inside a string. A ${...} whose part
 * before the first '.' could not be a name (${HOST:-a.b}) or that has no '.'
 * at all (${PORT}) belongs to the shell and is left alone.
 */
struct ref {
    size_t start;      /* offset of "${" */
    size_t end;        /* offset just past "}" */
    const char *scope; /* service name, "params" or "env" */
    size_t scope_len;
    const char *name; /* attribute, or param name */
    size_t name_len;
};

static bool
is_scope_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
}

/* The first "${" in [p, end), or NULL. */
static const char *
find_open(const char *p, const char *end)
{
    while (p < end) {
        const char *dollar = memchr(p, '$', (size_t)(end - p));

        if (dollar == NULL || dollar + 1 >= end)
            return NULL;
        if (dollar[1] == '{')
            return dollar;
        p = dollar + 1;
    }
    return NULL;
}

/*
 * Finds the next reference of ours in text (len bytes) at or after *pos.
 * Returns 1 and fills *r (and moves *pos past it), 0 when there is none, or
 * -1 for a "${" that no '}' closes (r->start says where). Linear, so that
 * 256 KiB of "${${${...}" costs nothing: the '}' and '.' found for one "${"
 * serve the following ones until they are passed, and bounded memchr()
 * replaces strstr(), which sanitizers make cost a strlen() per call.
 */
static int
ref_next(const char *text, size_t len, size_t *pos, struct ref *r)
{
    const char *p = text + *pos, *end = text + len, *close = NULL, *dot = NULL;
    bool dot_known = false;

    for (;;) {
        const char *open = find_open(p, end), *inner, *q;

        if (open == NULL)
            return 0;
        inner = open + 2;
        if (close == NULL || close < inner) {
            close = memchr(inner, '}', (size_t)(end - inner));
            if (close == NULL) {
                r->start = (size_t)(open - text);
                return -1;
            }
        }
        if (!dot_known || (dot != NULL && dot < inner)) {
            /* May lie past close: then there is none inside. */
            dot = memchr(inner, '.', (size_t)(end - inner));
            dot_known = true;
        }
        /* Stops at the next '$' at the latest, so this is linear too. */
        q = inner;
        while (dot != NULL && q < dot && is_scope_char(*q))
            q++;
        if (dot != NULL && dot < close && dot > inner && q == dot) {
            r->start = (size_t)(open - text);
            r->end = (size_t)(close + 1 - text);
            r->scope = inner;
            r->scope_len = (size_t)(dot - inner);
            r->name = dot + 1;
            r->name_len = (size_t)(close - dot - 1);
            *pos = r->end;
            return 1;
        }
        p = inner; /* the shell's: look inside it for ours */
    }
}

enum ref_kind {
    REF_HOST,
    REF_PORT,
    REF_URL,
    REF_PARAM,
    REF_ENV_NAME,
};

static bool
span_is(const char *p, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(p, word, len) == 0;
}

/* What reference r names: *kind and the service or param *index. */
static int
ref_lookup(const struct spec *s, const char *text, const struct ref *r, enum ref_kind *kind,
           size_t *index, struct eph_err *err)
{
    char whole[YAML_SHOW_BUF], part[YAML_SHOW_BUF];

    yaml_show_n(text + r->start, r->end - r->start, whole, sizeof(whole));
    yaml_show_n(r->name, r->name_len, part, sizeof(part));
    if (span_is(r->scope, r->scope_len, "params")) {
        for (size_t i = 0; i < s->n_params; i++) {
            if (span_is(r->name, r->name_len, s->params[i].name)) {
                *kind = REF_PARAM;
                *index = i;
                return 0;
            }
        }
        return eph_err_set(err, EPH_EINVAL, "unknown param '%s' in '%s'", part, whole);
    }
    if (span_is(r->scope, r->scope_len, "env")) {
        if (!span_is(r->name, r->name_len, "name"))
            return eph_err_set(err, EPH_EINVAL, "unknown attribute '%s' in '%s', expected name",
                               part, whole);
        *kind = REF_ENV_NAME;
        *index = 0;
        return 0;
    }
    for (size_t i = 0; i < s->n_services; i++) {
        if (!span_is(r->scope, r->scope_len, s->services[i].name))
            continue;
        if (span_is(r->name, r->name_len, "host"))
            *kind = REF_HOST;
        else if (span_is(r->name, r->name_len, "port"))
            *kind = REF_PORT;
        else if (span_is(r->name, r->name_len, "url"))
            *kind = REF_URL;
        else
            return eph_err_set(err, EPH_EINVAL,
                               "unknown attribute '%s' in '%s', expected host, port or url", part,
                               whole);
        *index = i;
        return 0;
    }
    yaml_show_n(r->scope, r->scope_len, part, sizeof(part));
    return eph_err_set(err, EPH_EINVAL, "unknown service '%s' in '%s'", part, whole);
}

/* ------------------------------------------------- step 3: cross checks */

static int
check_refs(struct pctx *c, const struct yaml_node *n)
{
    struct eph_err rerr = {0};
    struct ref r;
    size_t pos = 0, index;
    enum ref_kind kind;
    int found;

    for (;;) {
        found = ref_next(n->text, n->len, &pos, &r);
        if (found == 0)
            break;
        if (found < 0)
            return fail(c, n, "unterminated '${', expected '}'");
        if (ref_lookup(c->s, n->text, &r, &kind, &index, &rerr) < 0)
            return fail(c, n, "%s", rerr.msg);
    }
    return 0;
}

static int
check_depends_on(struct pctx *c)
{
    const struct spec *s = c->s;
    char b[YAML_SHOW_BUF];

    for (size_t i = 0; i < s->n_services; i++) {
        const struct spec_service *svc = &s->services[i];

        for (size_t j = 0; j < svc->n_depends_on; j++) {
            const char *dep = svc->depends_on[j];
            const struct yaml_node *n = c->dep_nodes[i][j];
            int k = spec_service_index(s, dep);

            if (k < 0)
                return fail(c, n, "unknown service '%s' in depends_on", yaml_show(dep, b));
            if ((size_t)k == i)
                return fail(c, n, "service '%s' depends on itself", dep);
            for (size_t m = 0; m < j; m++) {
                if (strcmp(svc->depends_on[m], dep) == 0)
                    return fail(c, n, "service '%s' is listed twice in depends_on", dep);
            }
        }
    }
    return 0;
}

/*
 * Kahn's algorithm, always taking the first ready service in file order.
 * Fills order[] and returns how many services it placed: fewer than
 * n_services means the rest sit on a cycle or wait for one. Unknown names
 * in depends_on (only in a spec not made by the parser) are ignored.
 */
static size_t
topo_order(const struct spec *s, size_t *order, bool *placed)
{
    size_t waiting[SPEC_MAX_SERVICES]; /* dependencies not placed yet */
    int *dep_idx[SPEC_MAX_SERVICES];   /* depends_on as indexes, -1: unknown */
    size_t n = 0;

    EPH_ASSERT(s->n_services <= SPEC_MAX_SERVICES);
    for (size_t i = 0; i < s->n_services; i++) {
        const struct spec_service *svc = &s->services[i];

        placed[i] = false;
        waiting[i] = 0;
        dep_idx[i] = xcalloc(svc->n_depends_on ? svc->n_depends_on : 1, sizeof(int));
        for (size_t j = 0; j < svc->n_depends_on; j++) {
            dep_idx[i][j] = spec_service_index(s, svc->depends_on[j]);
            if (dep_idx[i][j] >= 0)
                waiting[i]++;
        }
    }
    while (n < s->n_services) {
        size_t next = 0;

        while (next < s->n_services && (placed[next] || waiting[next] > 0))
            next++;
        if (next == s->n_services)
            break;
        placed[next] = true;
        order[n++] = next;
        for (size_t i = 0; i < s->n_services; i++) {
            for (size_t j = 0; j < s->services[i].n_depends_on; j++) {
                if (dep_idx[i][j] == (int)next)
                    waiting[i]--;
            }
        }
    }
    for (size_t i = 0; i < s->n_services; i++)
        free(dep_idx[i]);
    return n;
}

/* The first unplaced dependency of service i (there is one when i is unplaced). */
static size_t
unplaced_dep(const struct spec *s, const bool *placed, size_t i, size_t *which)
{
    for (size_t j = 0; j < s->services[i].n_depends_on; j++) {
        int d = spec_service_index(s, s->services[i].depends_on[j]);

        if (d >= 0 && !placed[d]) {
            *which = j;
            return (size_t)d;
        }
    }
    EPH_ASSERT(0);
    return 0;
}

static int
check_cycles(struct pctx *c)
{
    const struct spec *s = c->s;
    size_t order[SPEC_MAX_SERVICES], path[SPEC_MAX_SERVICES + 1];
    bool placed[SPEC_MAX_SERVICES], on_path[SPEC_MAX_SERVICES] = {false};
    size_t n_path = 0, start = 0, first, which = 0, at, u;
    char msg[EPH_ERR_MSG_MAX];
    size_t used;

    if (topo_order(s, order, placed) == s->n_services)
        return 0;
    /* Walk unplaced dependencies from the first unplaced service until a
     * service repeats: from there on the path is a cycle. */
    u = 0;
    while (placed[u])
        u++;
    while (!on_path[u]) {
        on_path[u] = true;
        path[n_path++] = u;
        u = unplaced_dep(s, placed, u, &which);
    }
    while (path[start] != u)
        start++;
    /* Name it from the service that comes first in the file. */
    first = start;
    for (size_t i = start; i < n_path; i++) {
        if (path[i] < path[first])
            first = i;
    }
    used =
        (size_t)snprintf(msg, sizeof(msg), "dependency cycle: %s", s->services[path[first]].name);
    at = first;
    do {
        at = at + 1 < n_path ? at + 1 : start;
        if (used < sizeof(msg))
            used += (size_t)snprintf(msg + used, sizeof(msg) - used, " -> %s",
                                     s->services[path[at]].name);
    } while (at != first);
    unplaced_dep(s, placed, path[first], &which);
    return fail(c, c->dep_nodes[path[first]][which], "%s", msg);
}

/* ------------------------------------------------------------ the parse */

static int
parse_root(struct pctx *c, const struct yaml_node *root)
{
    const struct yaml_node *services = NULL;
    int rc;

    if (root == NULL)
        return fail_at(c, 1, 1, EPH_EINVAL, "empty template, expected 'version: 1' and 'services'");
    if (root->kind != YAML_MAPPING)
        return fail(c, root, "template must be a mapping, expected 'version: 1' and 'services'");
    rc = parse_version(c, root);
    if (rc < 0)
        return rc;
    c->s->version = 1;
    for (size_t i = 0; i < n_pairs(root); i++) {
        const struct yaml_node *k = pair_key(root, i), *v = pair_value(root, i);

        rc = check_key(c, k);
        if (rc < 0)
            return rc;
        if (strcmp(k->text, "version") == 0) {
            rc = 0; /* checked first */
        } else if (strcmp(k->text, "params") == 0) {
            rc = parse_params(c, v);
        } else if (strcmp(k->text, "defaults") == 0) {
            rc = parse_defaults(c, v);
        } else if (strcmp(k->text, "services") == 0) {
            services = v;
            rc = parse_services(c, v);
        } else if (strcmp(k->text, "kubernetes") == 0) {
            /* The kubernetes driver's: only its shape is ours to check. */
            if (!yaml_is_null(v) && v->kind != YAML_MAPPING)
                rc = fail(c, v, "'kubernetes' must be a mapping");
        } else {
            rc = unknown_key(c, k, "template", "version, params, defaults, services, kubernetes");
        }
        if (rc < 0)
            return rc;
    }
    if (services == NULL)
        return fail(c, root, "missing 'services', expected at least one service");
    rc = check_depends_on(c);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < c->n_refs; i++) {
        rc = check_refs(c, c->refs[i]);
        if (rc < 0)
            return rc;
    }
    return check_cycles(c);
}

int
spec_parse(const char *yaml, size_t len, const char *file, struct spec **out, struct eph_err *err)
{
    struct pctx c = {.file = file ? file : "template", .err = err};
    struct yaml_node *root = NULL;
    const struct yaml_node *dup = NULL;
    struct yaml_parse_opts yopts = {
        .file = c.file, .max_depth = SPEC_MAX_DEPTH, .doc_noun = "template"};
    int rc;

    *out = NULL;
    if (len > SPEC_MAX_BYTES)
        return eph_err_set(err, EPH_ETOOBIG, "%s: template is larger than %d bytes", c.file,
                           SPEC_MAX_BYTES);
    rc = yaml_parse_tree(yaml, len, &yopts, &root, err);
    if (rc < 0)
        return rc;
    if (root != NULL)
        find_duplicate(root, &dup);
    if (dup != NULL) {
        char b[YAML_SHOW_BUF];

        rc = fail(&c, dup, "duplicate key '%s'", yaml_show(dup->text, b));
        goto out;
    }
    c.s = xcalloc(1, sizeof(*c.s));
    c.s->file = xstrdup(c.file);
    c.s->default_wake_outside_hours = -1;
    rc = parse_root(&c, root);
    if (rc == 0) {
        *out = c.s;
        c.s = NULL;
    }
out:
    spec_free(c.s);
    for (size_t i = 0; i < SPEC_MAX_SERVICES; i++)
        free(c.dep_nodes[i]);
    free(c.refs);
    yaml_node_free(root);
    return rc;
}

int
spec_parse_string(const char *yaml, const char *file, struct spec **out, struct eph_err *err)
{
    return spec_parse(yaml, strlen(yaml), file, out, err);
}

int
spec_parse_file(const char *path, struct spec **out, struct eph_err *err)
{
    char *data = NULL;
    size_t len = 0;
    int rc;

    *out = NULL;
    rc = fs_read_all(path, SPEC_MAX_BYTES, &data, &len);
    if (rc == EPH_ETOOBIG)
        rc = eph_err_set(err, EPH_ETOOBIG, "%s: template is larger than %d bytes", path,
                         SPEC_MAX_BYTES);
    else if (rc < 0)
        rc = eph_err_set(err, rc, "cannot read '%s': %s", path, eph_strerror(rc));
    else
        rc = spec_parse(data, len, path, out, err);
    free(data);
    return rc;
}

void
spec_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
spec_free(struct spec *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_params; i++) {
        free(s->params[i].name);
        free(s->params[i].default_value);
        spec_strv_free(s->params[i].allowed, s->params[i].n_allowed);
    }
    free(s->params);
    for (size_t i = 0; i < s->n_services; i++) {
        struct spec_service *svc = &s->services[i];

        free(svc->name);
        free(svc->run);
        free(svc->upstream);
        free(svc->dir);
        free(svc->setup);
        for (size_t j = 0; j < svc->n_env; j++) {
            free(svc->env[j].key);
            free(svc->env[j].value);
        }
        free(svc->env);
        spec_strv_free(svc->depends_on, svc->n_depends_on);
        free(svc->health_path);
    }
    free(s->services);
    free(s->default_schedule_awake);
    free(s->default_schedule_tz);
    free(s->file);
    free(s);
}

/* ------------------------------------------------- using a parsed spec */

int
spec_service_index(const struct spec *s, const char *name)
{
    for (size_t i = 0; i < s->n_services; i++) {
        if (strcmp(s->services[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

void
spec_order(const struct spec *s, size_t *order)
{
    bool placed[SPEC_MAX_SERVICES];
    size_t n = topo_order(s, order, placed);

    EPH_ASSERT(n == s->n_services); /* the parser refuses cycles */
}

static int
find_param(const struct spec *s, const char *name)
{
    for (size_t i = 0; i < s->n_params; i++) {
        if (strcmp(s->params[i].name, name) == 0)
            return (int)i;
    }
    return -1;
}

int
spec_resolve_params(const struct spec *s, const struct spec_kv *given, size_t n_given,
                    char ***values_out, struct eph_err *err)
{
    char **v = xcalloc(s->n_params ? s->n_params : 1, sizeof(*v));
    char b[YAML_SHOW_BUF], list[EPH_ERR_MSG_MAX];
    int rc = 0;

    *values_out = NULL;
    for (size_t i = 0; i < n_given && rc == 0; i++) {
        const char *name = given[i].key, *value = given[i].value;
        int j = name ? find_param(s, name) : -1;

        if (name == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param without a name");
        else if (j < 0)
            rc = eph_err_set(err, EPH_EINVAL, "unknown param '%s'", yaml_show(name, b));
        else if (v[j] != NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' is given twice", name);
        else if (value == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' has no value", name);
        else if (!param_allows(&s->params[j], value)) {
            join_allowed(&s->params[j], list, sizeof(list));
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' must be one of: %s", name, list);
        } else
            v[j] = xstrdup(value);
    }
    for (size_t j = 0; j < s->n_params && rc == 0; j++) {
        if (v[j] != NULL)
            continue;
        if (s->params[j].default_value == NULL)
            rc = eph_err_set(err, EPH_EINVAL, "param '%s' is required", s->params[j].name);
        else
            v[j] = xstrdup(s->params[j].default_value);
    }
    if (rc < 0) {
        spec_strv_free(v, s->n_params);
        return rc;
    }
    *values_out = v;
    return 0;
}

/* The value of one reference for one environment, appended to b. */
static int
expand_ref(const struct spec *s, const struct spec_vars *vars, const char *text,
           const struct ref *r, struct buf *b, struct eph_err *err)
{
    const char *value = NULL;
    char port[16], whole[YAML_SHOW_BUF];
    enum ref_kind kind;
    size_t i;
    int rc;

    rc = ref_lookup(s, text, r, &kind, &i, err);
    if (rc < 0)
        return rc;
    switch (kind) {
    case REF_HOST: value = vars->hosts ? vars->hosts[i] : NULL; break;
    case REF_URL: value = vars->urls ? vars->urls[i] : NULL; break;
    case REF_PARAM: value = vars->param_values ? vars->param_values[i] : NULL; break;
    case REF_ENV_NAME: value = vars->env_name; break;
    case REF_PORT:
        if (vars->ports != NULL) {
            snprintf(port, sizeof(port), "%d", vars->ports[i]);
            value = port;
        }
        break;
    }
    if (value == NULL)
        return eph_err_set(err, EPH_EINVAL, "no value for '%s'",
                           yaml_show_n(text + r->start, r->end - r->start, whole, sizeof(whole)));
    if (buf_puts(b, value) < 0)
        return eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                           SPEC_MAX_EXPANDED_BYTES);
    return 0;
}

int
spec_expand(const struct spec *s, const struct spec_vars *vars, const char *text, char **out,
            struct eph_err *err)
{
    struct buf b;
    struct ref r;
    size_t len = strlen(text), pos = 0, copied = 0;
    int found, rc = 0;

    *out = NULL;
    buf_init(&b, SPEC_MAX_EXPANDED_BYTES);
    while (rc == 0) {
        found = ref_next(text, len, &pos, &r);
        if (found == 0)
            break;
        if (found < 0) {
            rc = eph_err_set(err, EPH_EINVAL, "unterminated '${', expected '}'");
            break;
        }
        if (buf_append(&b, text + copied, r.start - copied) < 0)
            rc = eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                             SPEC_MAX_EXPANDED_BYTES);
        if (rc == 0)
            rc = expand_ref(s, vars, text, &r, &b, err);
        copied = r.end;
    }
    if (rc == 0 && buf_append(&b, text + copied, len - copied) < 0)
        rc = eph_err_set(err, EPH_ETOOBIG, "expanded text is longer than %d bytes",
                         SPEC_MAX_EXPANDED_BYTES);
    if (rc < 0) {
        buf_release(&b);
        return rc;
    }
    *out = b.data ? buf_steal(&b) : xstrdup("");
    return 0;
}

/* "my-db" -> "MY_DB", for variable names; free() it. */
static char *
env_prefix(const char *name)
{
    char *up = xstrdup(name);

    for (char *p = up; *p; p++) {
        if (*p >= 'a' && *p <= 'z')
            *p = (char)(*p - 'a' + 'A');
        else if (*p == '-')
            *p = '_';
    }
    return up;
}

int
spec_service_environ(const struct spec *s, size_t idx, const struct spec_vars *vars,
                     char ***envp_out, size_t *count_out, struct eph_err *err)
{
    const struct spec_service *svc;
    size_t cap, n = 0, n_base;
    char **v;
    int rc = 0;

    *envp_out = NULL;
    *count_out = 0;
    EPH_ASSERT(idx < s->n_services);
    svc = &s->services[idx];
    if (vars->env_name == NULL || vars->ports == NULL || vars->hosts == NULL ||
        vars->urls == NULL || (s->n_params > 0 && vars->param_values == NULL))
        return eph_err_set(err, EPH_EINVAL, "incomplete variables for service '%s'", svc->name);
    cap = 2 + s->n_params + 3 * s->n_services + svc->n_env + 1;
    v = xcalloc(cap, sizeof(*v));
    v[n++] = xasprintf("PORT=%d", vars->ports[idx]);
    v[n++] = xasprintf("EPH_ENV=%s", vars->env_name);
    for (size_t i = 0; i < s->n_params; i++) {
        char *up = env_prefix(s->params[i].name);
        const char *value = vars->param_values[i];

        v[n++] = xasprintf("EPH_PARAM_%s=%s", up, value ? value : "");
        free(up);
    }
    for (size_t i = 0; i < s->n_services; i++) {
        char *up;

        if (i == idx)
            continue;
        up = env_prefix(s->services[i].name);
        v[n++] = xasprintf("%s_HOST=%s", up, vars->hosts[i] ? vars->hosts[i] : "");
        v[n++] = xasprintf("%s_PORT=%d", up, vars->ports[i]);
        v[n++] = xasprintf("%s_URL=%s", up, vars->urls[i] ? vars->urls[i] : "");
        free(up);
    }
    /* The service's own entries win: a clash replaces the entry in place.
     * Only the entries above can clash (own names are unique). */
    n_base = n;
    for (size_t i = 0; i < svc->n_env && rc == 0; i++) {
        const char *key = svc->env[i].key;
        size_t key_len = strlen(key);
        char *value = NULL, *entry;
        size_t at = n;

        rc = spec_expand(s, vars, svc->env[i].value, &value, err);
        if (rc < 0)
            break;
        entry = xasprintf("%s=%s", key, value);
        free(value);
        for (size_t j = 0; j < n_base; j++) {
            if (strncmp(v[j], key, key_len) == 0 && v[j][key_len] == '=') {
                at = j;
                break;
            }
        }
        if (at == n)
            n++;
        free(v[at]);
        v[at] = entry;
    }
    if (rc < 0) {
        spec_strv_free(v, n);
        return rc;
    }
    *envp_out = v;
    *count_out = n;
    return 0;
}
