/*
 * fuzz/fuzz_api_request.c - the API's request bodies (api/api_request.c)
 * on arbitrary bytes: POST /envs, POST /projects, POST /envs/{name}/extend,
 * the default environment name, and the bodies about access: POST
 * /envs/{name}/visibility, /envs/{name}/links, /users, /users/{name}/role,
 * /users/{name}/password and /tokens. Whatever comes in, a parser must not
 * crash or leak, must answer 0 or EPH_EINVAL with a message, and what it
 * accepts must keep the promises of api_int.h (checked here: a broken one
 * aborts, and libFuzzer keeps the input).
 *
 *   make build/fuzz/fuzz_api_request && mkdir -p /tmp/ar && \
 *   build/fuzz/fuzz_api_request -max_total_time=60 /tmp/ar fuzz/corpus/api_request
 *
 * The first byte chooses: its low two bits plus four times its top two
 * bits the parser, modulo 10 ('0' env create, '1' project add, '2' extend,
 * '3' default name, '@' visibility, 'A' user add, 'B' role, 'C' password,
 * 0x80 token create, 0x81 share link), bits 2 and 3 the server's max_ttl
 * (0: 7d, 1: 1s, 2: 1h, 3: 100 years; '4' is env create with 1s). The rest
 * is the body; for the default name, project and ref separated by the
 * first NUL byte.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api/api_int.h"
#include "auth/password.h"
#include "util/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const int64_t max_ttls_s[4] = {7 * 86400, 1, 3600, 100LL * 365 * 86400};

/* A refusal: EPH_EINVAL and a message, nothing else. */
static void
check_refusal(int rc, const struct eph_err *err)
{
    if (rc != EPH_EINVAL || err->msg[0] == '\0')
        abort();
}

/* The default name is a valid env name, whatever project and ref are. */
static void
check_derived(const char *project, const char *ref)
{
    char *name = api__derive_env_name(project, ref);

    if (!env_name_valid(name))
        abort();
    free(name);
}

static void
fuzz_env_create(const char *body, size_t len, int64_t max_ttl_s)
{
    struct api_env_create req;
    struct eph_err err = {0};
    int rc = api__parse_env_create(body, len, max_ttl_s, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.project || req.ref || req.name || req.params || req.n_params || req.ttl_s)
            abort();
        api__env_create_release(&req);
        return;
    }
    if (rc != 0 || req.project == NULL || req.ttl_s < 0 || req.ttl_s > max_ttl_s)
        abort();
    if ((req.ref && req.ref[0] == '\0') || (req.name && !env_name_valid(req.name)))
        abort();
    if (req.n_params > SPEC_MAX_PARAMS || (req.n_params > 0 && req.params == NULL))
        abort();
    if (req.visibility != VIS_TEAM && req.visibility != VIS_PRIVATE && req.visibility != VIS_LINK)
        abort();
    for (size_t i = 0; i < req.n_params; i++) {
        if (req.params[i].key == NULL || req.params[i].value == NULL)
            abort();
    }
    check_derived(req.project, req.ref ? req.ref : "HEAD");
    api__env_create_release(&req);
}

static void
fuzz_project_add(const char *body, size_t len)
{
    struct api_project_add req;
    struct eph_err err = {0};
    int rc = api__parse_project_add(body, len, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.name || req.repo)
            abort();
    } else if (rc != 0 || !env_name_valid(req.name) || req.repo == NULL) {
        abort();
    }
    api__project_add_release(&req);
}

static void
fuzz_extend(const char *body, size_t len)
{
    struct api_extend req;
    struct eph_err err = {0};
    int rc = api__parse_extend(body, len, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.by || req.by_s)
            abort();
    } else if (rc != 0 || req.by == NULL || req.by_s <= 0) {
        abort();
    }
    api__extend_release(&req);
}

static bool
role_known(enum role r)
{
    return r == ROLE_VIEWER || r == ROLE_MEMBER || r == ROLE_ADMIN;
}

/* A password a parser accepted: within AUTH_PASSWORD_MAX bytes, and at least
 * AUTH_PASSWORD_MIN characters, hence bytes. */
static bool
password_ok(const char *password)
{
    size_t n = strlen(password);

    return n >= AUTH_PASSWORD_MIN && n <= AUTH_PASSWORD_MAX;
}

static void
fuzz_visibility(const char *body, size_t len)
{
    struct eph_err err = {0};
    enum visibility vis;
    int rc = api__parse_visibility(body, len, &vis, &err);

    if (rc < 0)
        check_refusal(rc, &err);
    else if (rc != 0 || (vis != VIS_TEAM && vis != VIS_PRIVATE && vis != VIS_LINK))
        abort();
}

static void
fuzz_user_add(const char *body, size_t len)
{
    struct api_user_add req;
    struct eph_err err = {0};
    int rc = api__parse_user_add(body, len, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.name || req.email || req.password || req.role != ROLE_NONE)
            abort();
    } else if (rc != 0 || !api__user_name_valid(req.name) || strcmp(req.name, "system") == 0 ||
               !role_known(req.role) ||
               (req.email && (req.email[0] == '\0' || strlen(req.email) > API_EMAIL_MAX ||
                              strchr(req.email, '@') == NULL)) ||
               (req.password && !password_ok(req.password))) {
        abort();
    }
    api__user_add_release(&req);
}

static void
fuzz_role(const char *body, size_t len)
{
    struct eph_err err = {0};
    enum role role;
    int rc = api__parse_role(body, len, &role, &err);

    if (rc < 0)
        check_refusal(rc, &err);
    else if (rc != 0 || !role_known(role))
        abort();
}

static void
fuzz_password(const char *body, size_t len)
{
    struct eph_err err = {0};
    char *password = NULL;
    int rc = api__parse_password(body, len, &password, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (password)
            abort();
    } else if (rc != 0 || password == NULL || !password_ok(password)) {
        abort();
    }
    api__secret_free(password);
}

static void
fuzz_token_create(const char *body, size_t len)
{
    struct api_token_create req;
    struct eph_err err = {0};
    int rc = api__parse_token_create(body, len, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.name || req.ttl_s || req.scope != ROLE_NONE)
            abort();
    } else if (rc != 0 || req.name == NULL || req.name[0] == '\0' ||
               strlen(req.name) > API_TOKEN_NAME_MAX || req.ttl_s <= 0 ||
               req.ttl_s > API_TOKEN_TTL_MAX_S ||
               (req.scope != ROLE_NONE && !role_known(req.scope))) {
        abort();
    }
    api__token_create_release(&req);
}

static void
fuzz_link_create(const char *body, size_t len, int64_t max_ttl_s)
{
    struct api_link_create req;
    struct eph_err err = {0};
    int rc = api__parse_link_create(body, len, max_ttl_s, &req, &err);

    if (rc < 0) {
        check_refusal(rc, &err);
        if (req.ttl || req.ttl_s || req.service)
            abort();
    } else if (rc != 0 || req.ttl == NULL || req.ttl_s <= 0 || req.ttl_s > max_ttl_s ||
               (req.service && req.service[0] == '\0')) {
        abort();
    }
    api__link_create_release(&req);
}

/* Project and ref from raw bytes: the first NUL splits them. */
static void
fuzz_derive(const char *bytes, size_t len)
{
    const char *nul = memchr(bytes, '\0', len);
    size_t n_project = nul ? (size_t)(nul - bytes) : len;
    char *project = xstrndup(bytes, n_project);
    char *ref = nul ? xstrndup(nul + 1, len - n_project - 1) : xstrdup("");

    check_derived(project, ref);
    free(project);
    free(ref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data + 1;
    size_t len;
    int64_t max_ttl_s;

    if (size == 0)
        return 0;
    len = size - 1;
    max_ttl_s = max_ttls_s[(data[0] >> 2) & 3];
    /* The body is libFuzzer's own buffer, exactly len bytes long: a parser
     * that reads past len (as if it were NUL-terminated) trips ASan. */
    switch (((data[0] & 3) + 4 * (data[0] >> 6)) % 10) {
    case 0: fuzz_env_create(body, len, max_ttl_s); break;
    case 1: fuzz_project_add(body, len); break;
    case 2: fuzz_extend(body, len); break;
    case 3: fuzz_derive(body, len); break;
    case 4: fuzz_visibility(body, len); break;
    case 5: fuzz_user_add(body, len); break;
    case 6: fuzz_role(body, len); break;
    case 7: fuzz_password(body, len); break;
    case 8: fuzz_token_create(body, len); break;
    default: fuzz_link_create(body, len, max_ttl_s); break;
    }
    return 0;
}
