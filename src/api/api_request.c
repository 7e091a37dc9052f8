/*
 * api/api_request.c - the JSON request bodies of the API, parsed and
 * checked: POST /envs, POST /projects and POST /envs/{name}/extend.
 *
 * Pure functions of their arguments (no exchange, store or loop), so that
 * unit tests and fuzz/fuzz_api_request.c reach every check a client can
 * reach. The handlers call these first and answer 400 with the message;
 * what needs the store (project known, name free) or the configuration
 * (allowed_repos) comes after, in the handlers.
 */
#include "api/api_int.h"

#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

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

/* Checks ttl text: positive, at most max_ttl_s. */
static int
parse_ttl(const char *ttl, int64_t max_ttl_s, int64_t *out_s, struct eph_err *err)
{
    char max[32];
    int rc = duration_parse(ttl, out_s, err);

    if (rc < 0)
        return eph_err_prefix(err, EPH_EINVAL, "'ttl': ");
    if (*out_s <= 0)
        return eph_err_set(err, EPH_EINVAL, "ttl %s is not a positive duration", ttl);
    if (*out_s > max_ttl_s) {
        duration_format(max_ttl_s, max, sizeof(max));
        return eph_err_set(err, EPH_EINVAL, "ttl %s exceeds the server maximum of %s", ttl, max);
    }
    return 0;
}

int
api__parse_env_create(const char *body, size_t len, int64_t max_ttl_s, struct api_env_create *out,
                      struct eph_err *err)
{
    json_t *root = NULL;
    const char *project, *ref, *name, *ttl;
    json_t *params;
    int rc;

    memset(out, 0, sizeof(*out));
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
        rc = parse_ttl(ttl, max_ttl_s, &out->ttl_s, err);
        if (rc < 0)
            goto out;
    }
    params = json_object_get(root, "params");
    if (params != NULL && !json_is_null(params)) {
        rc = parse_params(params, out, err);
        if (rc < 0)
            goto out;
    }
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
    memset(req, 0, sizeof(*req));
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
