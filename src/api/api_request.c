/*
 * api/api_request.c - the JSON request bodies of the API, parsed and
 * checked: POST /envs, POST /projects, POST /envs/{name}/extend, and the
 * bodies about access: visibility, share links, users, roles, passwords and
 * tokens.
 *
 * Pure functions of their arguments (no exchange, store or loop; a
 * schedule's time zone is read from the tz database), so that
 * unit tests and fuzz/fuzz_api_request.c reach every check a client can
 * reach. The handlers call these first and answer 400 with the message;
 * what needs the store (project known, name free) or the configuration
 * (allowed_repos) comes after, in the handlers.
 */
#include "api/api_int.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/password.h"
#include "core/schedule.h"
#include "core/units.h"
#include "util/time.h"
#include "util/xmalloc.h"

#define ROLE_RULE "expected viewer, member or admin"
#define VISIBILITY_RULE "expected team, private or link"

/* ------------------------------------------------------------- members */

int
api__parse_json_object(const char *body, size_t len, json_t **out, struct eph_err *err)
{
    json_error_t jerr;
    json_t *root;

    *out = NULL;
    if (len == 0)
        return eph_err_set(err, EPH_EINVAL, "a JSON object body is required");
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return eph_err_set(err, EPH_EINVAL, "invalid JSON body: %s at line %d column %d", jerr.text,
                           jerr.line, jerr.column);
    }
    if (!json_is_object(root)) {
        json_decref(root);
        return eph_err_set(err, EPH_EINVAL, "the body must be a JSON object");
    }
    *out = root;
    return 0;
}

/* Reads optional string member `key`: 0 and *out (borrowed from obj, NULL
 * when absent or null), or EPH_EINVAL. */
static int
opt_string(const json_t *obj, const char *key, const char **out, struct eph_err *err)
{
    const json_t *v = json_object_get(obj, key);

    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return eph_err_set(err, EPH_EINVAL, "'%s' must be a string", key);
    *out = json_string_value(v);
    return 0;
}

/* ------------------------------------------------------------- POST /envs */

/* Copies the params member, an object of strings, in the body's order. */
static int
parse_params(json_t *params, struct api_env_create *out, struct eph_err *err)
{
    const char *key;
    json_t *val;

    if (!json_is_object(params))
        return eph_err_set(err, EPH_EINVAL, "'params' must be an object of strings");
    /* Counted before anything is allocated: the body decides the size. */
    if (json_object_size(params) > SPEC_MAX_PARAMS)
        return eph_err_set(err, EPH_EINVAL, "too many params: at most %d", SPEC_MAX_PARAMS);
    json_object_foreach(params, key, val)
    {
        if (!json_is_string(val))
            return eph_err_set(err, EPH_EINVAL, "param '%.64s' must be a string", key);
    }
    out->params = xcalloc(json_object_size(params) + 1, sizeof(*out->params));
    json_object_foreach(params, key, val)
    {
        out->params[out->n_params].key = xstrdup(key);
        out->params[out->n_params].value = xstrdup(json_string_value(val));
        out->n_params++;
    }
    return 0;
}

/* Checks ttl text: positive, at most max_ttl_s, which `whose` names in the
 * message ("server": "exceeds the server maximum of 7d"). */
static int
parse_ttl(const char *ttl, int64_t max_ttl_s, const char *whose, int64_t *out_s,
          struct eph_err *err)
{
    char max[32];
    int rc = duration_parse(ttl, out_s, err);

    if (rc < 0)
        return eph_err_prefix(err, EPH_EINVAL, "'ttl': ");
    if (*out_s <= 0)
        return eph_err_set(err, EPH_EINVAL, "ttl %s is not a positive duration", ttl);
    if (*out_s > max_ttl_s) {
        duration_format(max_ttl_s, max, sizeof(max));
        return eph_err_set(err, EPH_EINVAL, "ttl %s exceeds the %s maximum of %s", ttl, whose, max);
    }
    return 0;
}

/* Reads optional member `key` naming a visibility into *out (VIS_TEAM when
 * absent or null). */
static int
opt_visibility(const json_t *obj, const char *key, enum visibility *out, struct eph_err *err)
{
    const char *text;
    int rc = opt_string(obj, key, &text, err);

    *out = VIS_TEAM;
    if (rc == 0 && text != NULL && visibility_parse(text, out) < 0) /* leaves *out alone */
        rc = eph_err_set(err, EPH_EINVAL, "invalid %s '%.64s': " VISIBILITY_RULE, key, text);
    return rc;
}

/* Reads optional member `key` naming a role into *out (ROLE_NONE when absent
 * or null). */
static int
opt_role(const json_t *obj, const char *key, enum role *out, struct eph_err *err)
{
    const char *text;
    int rc = opt_string(obj, key, &text, err);

    *out = ROLE_NONE;
    if (rc == 0 && text != NULL && role_parse(text, out) < 0) /* leaves *out alone */
        rc = eph_err_set(err, EPH_EINVAL, "invalid %s '%.64s': " ROLE_RULE, key, text);
    return rc;
}

/* Reads optional boolean member `key` into *out (-1 when absent or null). */
static int
opt_bool(const json_t *obj, const char *key, const char *shown, int *out, struct eph_err *err)
{
    const json_t *v = json_object_get(obj, key);

    *out = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return eph_err_set(err, EPH_EINVAL, "'%s' must be true or false", shown);
    *out = json_is_true(v) ? 1 : 0;
    return 0;
}

/* Refuses members of the object `obj` (named `what`) not in `known` (NULL-ended, at most
 * three), naming them all in the message. */
static int
only_members(const json_t *obj, const char *what, const char *const *known, struct eph_err *err)
{
    const char *key;
    json_t *val;

    json_object_foreach((json_t *)obj, key, val)
    {
        bool ok = false;

        for (size_t i = 0; known[i]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok)
            return eph_err_set(err, EPH_EINVAL, "unknown member '%s.%.64s': expected %s, %s or %s",
                               what, key, known[0], known[1], known[2]);
    }
    return 0;
}

/* "sleep_after": a positive duration or "never". */
static int
parse_sleep_after(const json_t *root, int64_t *out_s, struct eph_err *err)
{
    const char *text;
    int rc = opt_string(root, "sleep_after", &text, err);

    *out_s = 0;
    if (rc < 0 || text == NULL)
        return rc;
    if (strcmp(text, "never") == 0) {
        *out_s = -1;
        return 0;
    }
    rc = duration_parse(text, out_s, err);
    if (rc < 0) {
        *out_s = 0;
        return eph_err_prefix(err, EPH_EINVAL, "'sleep_after' (a duration or never): ");
    }
    if (*out_s <= 0) {
        *out_s = 0;
        return eph_err_set(err, EPH_EINVAL,
                           "sleep_after %s is not a positive duration: give never to keep it "
                           "from sleeping when idle",
                           text);
    }
    return 0;
}

/* "schedule": {"awake": "Mon-Fri 08:00-20:00", "timezone": "Europe/Madrid",
 * "wake_outside_hours": false}, checked by schedule_parse. */
static int
parse_schedule(const json_t *root, struct api_env_create *out, struct eph_err *err)
{
    static const char *const known[] = {"awake", "timezone", "wake_outside_hours", NULL};
    const json_t *sch = json_object_get(root, "schedule");
    const json_t *awake_v, *tz_v;
    struct schedule *parsed = NULL;
    const char *awake, *tz;
    int rc;

    if (sch == NULL || json_is_null(sch))
        return 0;
    if (!json_is_object(sch))
        return eph_err_set(err, EPH_EINVAL,
                           "'schedule' must be an object like {\"awake\": \"Mon-Fri "
                           "08:00-20:00\", \"timezone\": \"Europe/Madrid\"}");
    rc = only_members(sch, "schedule", known, err);
    if (rc < 0)
        return rc;
    awake_v = json_object_get(sch, "awake");
    tz_v = json_object_get(sch, "timezone");
    if (awake_v != NULL && !json_is_null(awake_v) && !json_is_string(awake_v))
        return eph_err_set(err, EPH_EINVAL, "'schedule.awake' must be a string");
    if (tz_v != NULL && !json_is_null(tz_v) && !json_is_string(tz_v))
        return eph_err_set(err, EPH_EINVAL, "'schedule.timezone' must be a string");
    rc = opt_bool(sch, "wake_outside_hours", "schedule.wake_outside_hours",
                  &out->wake_outside_hours, err);
    if (rc < 0)
        return rc;
    awake = json_string_value(awake_v);
    tz = json_string_value(tz_v);
    if (awake == NULL || awake[0] == '\0')
        return eph_err_set(err, EPH_EINVAL,
                           "'schedule.awake' is required, e.g. \"Mon-Fri 08:00-20:00\"");
    if (tz != NULL && tz[0] == '\0')
        return eph_err_set(err, EPH_EINVAL,
                           "'schedule.timezone' must not be empty: leave it out for UTC");
    rc = schedule_parse(awake, tz, &parsed, err);
    schedule_free(parsed);
    if (rc < 0)
        return eph_err_prefix(err, EPH_EINVAL, "'schedule': ");
    out->schedule_awake = xstrdup(awake);
    out->schedule_tz = tz ? xstrdup(tz) : NULL;
    return 0;
}

/* Digits only, at most 12 of them, into *out. */
static bool
whole_number(const char *text, int64_t *out)
{
    int64_t n = 0;
    size_t i = 0;

    for (; text[i] >= '0' && text[i] <= '9' && i < 12; i++)
        n = n * 10 + (text[i] - '0');
    if (i == 0 || text[i] != '\0')
        return false;
    *out = n;
    return true;
}

/* One member of "limits": text for the unit parsers, or a JSON number (bytes and
 * pids whole, cpu in cores). Above zero, into *out (0 when absent or null). */
static int
parse_limit(const json_t *limits, const char *key, int64_t *out, struct eph_err *err)
{
    const json_t *v = json_object_get(limits, key);
    const char *text = json_string_value(v);
    bool ok;
    int64_t n = 0;

    *out = 0;
    if (v == NULL || json_is_null(v))
        return 0;
    if (strcmp(key, "memory") == 0) {
        ok = json_is_integer(v) ? (n = json_integer_value(v), true)
                                : text != NULL && parse_size_bytes(text, &n) == 0;
        if (!ok)
            return eph_err_set(err, EPH_EINVAL,
                               "'limits.memory': invalid size '%.64s', expected e.g. 512Mi, 2Gi or "
                               "a number of bytes",
                               text ? text : "(not a string)");
    } else if (strcmp(key, "cpu") == 0) {
        double cores = json_number_value(v);

        /* A million cores is no machine's: refused rather than overflowed. */
        ok = json_is_number(v) ? cores <= 1e6 && (n = (int64_t)(cores * 1000 + 0.5), true)
                               : text != NULL && parse_cpu_millis(text, &n) == 0;
        if (!ok)
            return eph_err_set(err, EPH_EINVAL,
                               "'limits.cpu': invalid cpu '%.64s', expected cores like 1, 0.5 or "
                               "250m",
                               text ? text : "(not a string)");
    } else {
        ok = json_is_integer(v) ? (n = json_integer_value(v), true)
                                : text != NULL && whole_number(text, &n);
        if (!ok)
            return eph_err_set(err, EPH_EINVAL,
                               "'limits.pids' must be a whole number of processes, e.g. 512");
    }
    if (n <= 0)
        return eph_err_set(err, EPH_EINVAL, "'limits.%s' must be above zero: leave it out for none",
                           key);
    *out = n;
    return 0;
}

/* "limits": {"memory": "512Mi", "cpu": "1.0", "pids": 512}. */
static int
parse_limits(const json_t *root, struct api_env_create *out, struct eph_err *err)
{
    static const char *const known[] = {"memory", "cpu", "pids", NULL};
    const json_t *limits = json_object_get(root, "limits");
    int rc;

    if (limits == NULL || json_is_null(limits))
        return 0;
    if (!json_is_object(limits))
        return eph_err_set(err, EPH_EINVAL,
                           "'limits' must be an object like {\"memory\": \"512Mi\", \"cpu\": "
                           "\"1.0\", \"pids\": 512}");
    rc = only_members(limits, "limits", known, err);
    if (rc == 0)
        rc = parse_limit(limits, "memory", &out->limit_memory_bytes, err);
    if (rc == 0)
        rc = parse_limit(limits, "cpu", &out->limit_cpu_millis, err);
    if (rc == 0)
        rc = parse_limit(limits, "pids", &out->limit_pids, err);
    return rc;
}

int
api__parse_env_create(const char *body, size_t len, int64_t max_ttl_s, struct api_env_create *out,
                      struct eph_err *err)
{
    json_t *root = NULL;
    const char *project, *ref, *name, *ttl;
    json_t *params;
    int keep = -1;
    int rc;

    memset(out, 0, sizeof(*out));
    out->wake_outside_hours = -1;
    rc = api__parse_json_object(body, len, &root, err);
    if (rc < 0)
        goto out;
    /* The order of the checks is the order of the messages clients see. */
    rc = opt_string(root, "project", &project, err);
    if (rc == 0)
        rc = opt_string(root, "ref", &ref, err);
    if (rc == 0)
        rc = opt_string(root, "name", &name, err);
    if (rc == 0)
        rc = opt_string(root, "ttl", &ttl, err);
    if (rc == 0)
        rc = opt_visibility(root, "visibility", &out->visibility, err);
    if (rc < 0)
        goto out;
    if (project == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "'project' is required");
        goto out;
    }
    if (ref != NULL && ref[0] == '\0') {
        rc = eph_err_set(err, EPH_EINVAL, "'ref' must not be empty");
        goto out;
    }
    if (name != NULL && !env_name_valid(name)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "invalid name '%.64s': expected a DNS label of at most %d characters "
                         "(a-z, 0-9 and '-' inside)",
                         name, ENV_NAME_MAX);
        goto out;
    }
    if (ttl != NULL) {
        rc = parse_ttl(ttl, max_ttl_s, "server", &out->ttl_s, err);
        if (rc < 0)
            goto out;
    }
    params = json_object_get(root, "params");
    if (params != NULL && !json_is_null(params)) {
        rc = parse_params(params, out, err);
        if (rc < 0)
            goto out;
    }
    rc = parse_sleep_after(root, &out->sleep_after_s, err);
    if (rc == 0)
        rc = opt_bool(root, "keep", "keep", &keep, err);
    if (rc == 0)
        rc = parse_schedule(root, out, err);
    if (rc == 0)
        rc = parse_limits(root, out, err);
    if (rc < 0)
        goto out;
    out->keep = keep == 1;
    out->project = xstrdup(project);
    out->ref = ref ? xstrdup(ref) : NULL;
    out->name = name ? xstrdup(name) : NULL;
out:
    if (rc < 0)
        api__env_create_release(out);
    json_decref(root);
    return rc;
}

void
api__env_create_release(struct api_env_create *req)
{
    free(req->project);
    free(req->ref);
    free(req->name);
    for (size_t i = 0; i < req->n_params; i++) {
        free(req->params[i].key);
        free(req->params[i].value);
    }
    free(req->params);
    free(req->schedule_awake);
    free(req->schedule_tz);
    memset(req, 0, sizeof(*req));
    req->wake_outside_hours = -1;
}

int
api__check_limit_caps(const struct api_env_create *req, const struct api_limit_caps *caps,
                      struct eph_err *err)
{
    char asked[32], max[32];

    if (caps->memory_bytes > 0 && req->limit_memory_bytes > caps->memory_bytes) {
        format_size_bytes(req->limit_memory_bytes, asked, sizeof(asked));
        format_size_bytes(caps->memory_bytes, max, sizeof(max));
        return eph_err_set(err, EPH_EINVAL, "limits.memory %s exceeds the server maximum of %s",
                           asked, max);
    }
    if (caps->cpu_millis > 0 && req->limit_cpu_millis > caps->cpu_millis) {
        format_cpu_millis(req->limit_cpu_millis, asked, sizeof(asked));
        format_cpu_millis(caps->cpu_millis, max, sizeof(max));
        return eph_err_set(err, EPH_EINVAL, "limits.cpu %s exceeds the server maximum of %s", asked,
                           max);
    }
    if (caps->pids > 0 && req->limit_pids > caps->pids)
        return eph_err_set(err, EPH_EINVAL,
                           "limits.pids %" PRId64 " exceeds the server maximum of %" PRId64,
                           req->limit_pids, caps->pids);
    return 0;
}

char *
api__derive_env_name(const char *project, const char *ref)
{
    char *src = xasprintf("%s-%s", project, ref);
    char *out = xmalloc(strlen(src) + 1);
    size_t n = 0;

    for (const char *p = src; *p && n < ENV_NAME_MAX; p++) {
        char c = *p;

        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            out[n++] = c;
        else if (n > 0 && out[n - 1] != '-')
            out[n++] = '-';
    }
    while (n > 0 && out[n - 1] == '-')
        n--;
    out[n] = '\0';
    free(src);
    if (n == 0) {
        free(out);
        return xstrdup("env");
    }
    return out;
}

/* ------------------------------------------------------------- POST /projects */

int
api__parse_project_add(const char *body, size_t len, struct api_project_add *out,
                       struct eph_err *err)
{
    json_t *root = NULL;
    const char *name, *repo;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_string(root, "name", &name, err);
    if (rc == 0)
        rc = opt_string(root, "repo", &repo, err);
    if (rc < 0)
        goto out;
    if (name == NULL || repo == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "'%s' is required", name == NULL ? "name" : "repo");
        goto out;
    }
    if (!env_name_valid(name)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "invalid project name '%.64s': expected a DNS label of at most %d "
                         "characters (a-z, 0-9 and '-' inside)",
                         name, ENV_NAME_MAX);
        goto out;
    }
    out->name = xstrdup(name);
    out->repo = xstrdup(repo);
out:
    json_decref(root);
    return rc;
}

void
api__project_add_release(struct api_project_add *req)
{
    free(req->name);
    free(req->repo);
    memset(req, 0, sizeof(*req));
}

/* ------------------------------------------------------------- POST /envs/{name}/extend */

int
api__parse_extend(const char *body, size_t len, struct api_extend *out, struct eph_err *err)
{
    json_t *root = NULL;
    const char *by;
    int64_t by_s = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_string(root, "by", &by, err);
    if (rc < 0)
        goto out;
    if (by == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "'by' is required, e.g. {\"by\": \"1h\"}");
        goto out;
    }
    rc = duration_parse(by, &by_s, err);
    if (rc < 0) {
        rc = eph_err_prefix(err, EPH_EINVAL, "'by': ");
        goto out;
    }
    if (by_s <= 0) {
        rc = eph_err_set(err, EPH_EINVAL, "'by' must be a positive duration");
        goto out;
    }
    out->by = xstrdup(by);
    out->by_s = by_s;
out:
    json_decref(root);
    return rc;
}

void
api__extend_release(struct api_extend *req)
{
    free(req->by);
    memset(req, 0, sizeof(*req));
}

/* ------------------------------------------------------------- POST /envs/{name}/visibility */

int
api__parse_visibility(const char *body, size_t len, enum visibility *out, struct eph_err *err)
{
    json_t *root = NULL;
    int rc;

    *out = VIS_TEAM;
    rc = api__parse_json_object(body, len, &root, err);
    if (rc < 0)
        return rc;
    if (json_object_get(root, "visibility") == NULL ||
        json_is_null(json_object_get(root, "visibility")))
        rc = eph_err_set(err, EPH_EINVAL,
                         "'visibility' is required, e.g. {\"visibility\": \"private\"}");
    else
        rc = opt_visibility(root, "visibility", out, err);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- POST /envs/{name}/keep */

int
api__parse_keep(const char *body, size_t len, bool *out, struct eph_err *err)
{
    json_t *root = NULL;
    int keep = -1;
    int rc;

    *out = false;
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_bool(root, "keep", "keep", &keep, err);
    if (rc == 0 && keep < 0)
        rc = eph_err_set(err, EPH_EINVAL, "'keep' is required, e.g. {\"keep\": true}");
    if (rc == 0)
        *out = keep == 1;
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------- users */

bool
api__user_name_valid(const char *name)
{
    size_t n = name ? strlen(name) : 0;

    if (n == 0 || n > API_USER_NAME_MAX || name[0] == '-' || name[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

/* An address as people write one: local@domain, no blanks, control
 * characters or the characters that delimit addresses in headers. The
 * mail system is the judge of the rest. */
static bool
email_plausible(const char *email)
{
    const char *at = strchr(email, '@');
    size_t n = strlen(email);

    if (n > API_EMAIL_MAX || at == NULL || at == email || at[1] == '\0' || strchr(at + 1, '@'))
        return false;
    for (const unsigned char *p = (const unsigned char *)email; *p; p++) {
        if (*p <= ' ' || *p == 0x7f || strchr("<>\",;()[]\\", *p))
            return false;
    }
    return true;
}

/* Characters of UTF-8 text: bytes that do not continue a sequence. */
static size_t
utf8_chars(const char *s)
{
    size_t n = 0;

    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        n += (*p & 0xC0) != 0x80;
    return n;
}

/* The checks auth_password_hash() makes, with a message for a 400. */
static int
check_password(const char *password, struct eph_err *err)
{
    if (strlen(password) > AUTH_PASSWORD_MAX)
        return eph_err_set(err, EPH_EINVAL, "the password is too long: at most %d bytes",
                           AUTH_PASSWORD_MAX);
    if (utf8_chars(password) < AUTH_PASSWORD_MIN)
        return eph_err_set(err, EPH_EINVAL, "the password is too short: at least %d characters",
                           AUTH_PASSWORD_MIN);
    return 0;
}

int
api__parse_user_add(const char *body, size_t len, struct api_user_add *out, struct eph_err *err)
{
    json_t *root = NULL;
    const char *name = NULL, *email = NULL, *password = NULL;
    enum role role = ROLE_NONE;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_string(root, "name", &name, err);
    if (rc == 0)
        rc = opt_role(root, "role", &role, err);
    if (rc == 0)
        rc = opt_string(root, "email", &email, err);
    if (rc == 0)
        rc = opt_string(root, "password", &password, err);
    if (rc < 0)
        goto out;
    if (name == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "'name' is required");
        goto out;
    }
    if (!api__user_name_valid(name)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "invalid user name '%.64s': expected 1 to %d characters (a-z, 0-9 and "
                         "'-' inside)",
                         name, API_USER_NAME_MAX);
        goto out;
    }
    /* Events name automatic changes' actor "system": no person may be it. */
    if (strcmp(name, "system") == 0) {
        rc = eph_err_set(err, EPH_EINVAL, "the user name 'system' is reserved");
        goto out;
    }
    if (email != NULL && email[0] != '\0' && !email_plausible(email)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "invalid email '%.64s': expected an address like name@example.com", email);
        goto out;
    }
    if (password != NULL) {
        rc = check_password(password, err);
        if (rc < 0)
            goto out;
    }
    out->name = xstrdup(name);
    out->role = role == ROLE_NONE ? ROLE_MEMBER : role;
    out->email = email && email[0] ? xstrdup(email) : NULL;
    out->password = password ? xstrdup(password) : NULL;
out:
    if (password != NULL) /* jansson's copy of the secret */
        OPENSSL_cleanse((char *)password, strlen(password));
    json_decref(root);
    return rc;
}

void
api__user_add_release(struct api_user_add *req)
{
    free(req->name);
    free(req->email);
    api__secret_free(req->password);
    memset(req, 0, sizeof(*req));
}

int
api__parse_role(const char *body, size_t len, enum role *out, struct eph_err *err)
{
    json_t *root = NULL;
    int rc;

    *out = ROLE_NONE;
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_role(root, "role", out, err);
    if (rc == 0 && *out == ROLE_NONE)
        rc = eph_err_set(err, EPH_EINVAL, "'role' is required, e.g. {\"role\": \"member\"}");
    json_decref(root);
    return rc;
}

int
api__parse_password(const char *body, size_t len, char **out, struct eph_err *err)
{
    json_t *root = NULL;
    const char *password = NULL;
    int rc;

    *out = NULL;
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_string(root, "password", &password, err);
    if (rc == 0 && password == NULL)
        rc = eph_err_set(err, EPH_EINVAL, "'password' is required");
    if (rc == 0)
        rc = check_password(password, err);
    if (rc == 0)
        *out = xstrdup(password);
    if (password != NULL)
        OPENSSL_cleanse((char *)password, strlen(password));
    json_decref(root);
    return rc;
}

void
api__secret_free(char *secret)
{
    if (secret == NULL)
        return;
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}

/* ------------------------------------------------------------- POST /tokens */

static bool
token_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > API_TOKEN_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int
api__parse_token_create(const char *body, size_t len, struct api_token_create *out,
                        struct eph_err *err)
{
    json_t *root = NULL;
    const char *name, *ttl;
    enum role scope = ROLE_NONE;
    int64_t ttl_s = API_TOKEN_TTL_DEFAULT_S;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = api__parse_json_object(body, len, &root, err);
    if (rc == 0)
        rc = opt_string(root, "name", &name, err);
    if (rc == 0)
        rc = opt_string(root, "ttl", &ttl, err);
    if (rc == 0)
        rc = opt_role(root, "scope", &scope, err);
    if (rc < 0)
        goto out;
    if (name == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "'name' is required, e.g. {\"name\": \"ci\"}");
        goto out;
    }
    if (!token_name_valid(name)) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "invalid token name '%.64s': expected 1 to %d characters of a-z, A-Z, "
                         "0-9, '.', '_' and '-'",
                         name, API_TOKEN_NAME_MAX);
        goto out;
    }
    if (ttl != NULL) {
        rc = parse_ttl(ttl, API_TOKEN_TTL_MAX_S, "token", &ttl_s, err);
        if (rc < 0)
            goto out;
    }
    out->name = xstrdup(name);
    out->ttl_s = ttl_s;
    out->scope = scope;
out:
    json_decref(root);
    return rc;
}

void
api__token_create_release(struct api_token_create *req)
{
    free(req->name);
    memset(req, 0, sizeof(*req));
}

/* ------------------------------------------------------------- POST /envs/{name}/links */

int
api__parse_link_create(const char *body, size_t len, int64_t max_ttl_s, struct api_link_create *out,
                       struct eph_err *err)
{
    json_t *root = NULL;
    const char *ttl = NULL, *service = NULL;
    int64_t ttl_s = API_LINK_TTL_DEFAULT_S;
    char text[32] = "24h";
    int rc = 0;

    memset(out, 0, sizeof(*out));
    /* Every member is optional: no body at all is the defaults. */
    if (len > 0) {
        rc = api__parse_json_object(body, len, &root, err);
        if (rc == 0)
            rc = opt_string(root, "ttl", &ttl, err);
        if (rc == 0)
            rc = opt_string(root, "service", &service, err);
        if (rc < 0)
            goto out;
    }
    if (service != NULL && service[0] == '\0') {
        rc = eph_err_set(err, EPH_EINVAL, "'service' must not be empty");
        goto out;
    }
    if (ttl != NULL) {
        rc = parse_ttl(ttl, max_ttl_s, "server", &ttl_s, err);
        if (rc < 0)
            goto out;
    } else if (ttl_s > max_ttl_s) {
        /* A server whose environments live shorter than a day: its maximum. */
        ttl_s = max_ttl_s > 0 ? max_ttl_s : 1;
        duration_format(ttl_s, text, sizeof(text));
    }
    out->ttl = xstrdup(ttl ? ttl : text);
    out->ttl_s = ttl_s;
    out->service = service ? xstrdup(service) : NULL;
out:
    json_decref(root);
    return rc;
}

void
api__link_create_release(struct api_link_create *req)
{
    free(req->ttl);
    free(req->service);
    memset(req, 0, sizeof(*req));
}
