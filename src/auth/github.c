/*
 * auth/github.c - signing in with GitHub: the OAuth app's authorization
 * URL and code exchange, then GET /user (and /user/emails) and the
 * membership questions that decide who may sign in. HTTP goes through
 * oidc__http() (auth/oidc.c), with its limits.
 *
 * Everything GitHub says is checked before use: a login goes into URL
 * paths, so only GitHub's login characters pass; an access token goes
 * into a header, so only token characters pass.
 */
#include "auth/github.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <string.h>

#include "auth/oidc.h"
#include "util/xmalloc.h"

#define DEFAULT_WEB_URL "https://github.com"
#define DEFAULT_API_URL "https://api.github.com"
#define SCOPES "read:org%20user:email" /* see github.h for why each */
#define LOGIN_MAX 100                  /* GitHub allows 39; Enterprise logins may be longer */
#define EMAIL_MAX 320                  /* RFC 5321's path limit */
#define NAME_MAX_BYTES 1024            /* a display name longer than this is dropped */
#define QUOTE_MAX 120                  /* GitHub's text quoted in a message */

/* ------------------------------------------------------------- helpers */

/* base with its trailing '/'s dropped, def when NULL or "": a new string. */
static char *
base_url(const char *base, const char *def)
{
    size_t n;

    if (base == NULL || base[0] == '\0')
        base = def;
    n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    return xstrndup(base, n);
}

static void
append(char **dst, const char *s)
{
    size_t old = *dst ? strlen(*dst) : 0;
    size_t n = strlen(s);
    char *p = xrealloc(*dst, old + n + 1);

    memcpy(p + old, s, n + 1);
    *dst = p;
}

/* Characters of an OAuth bearer token (RFC 6750's b64token), 1..max long. */
static bool
is_token(const char *s, size_t max)
{
    size_t n = strlen(s);

    return n > 0 && n <= max &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=") == n;
}

static bool
is_login(const char *s)
{
    size_t n = strlen(s);

    return n > 0 && n <= LOGIN_MAX &&
           strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") == n &&
           strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* GitHub's {"message": "..."} of an error answer, made printable, or "". */
static void
api_message(const char *body, size_t len, char *out, size_t out_size)
{
    json_t *doc = json_loadb(body, len, 0, NULL);
    json_t *m = json_object_get(doc, "message");

    oidc__printable(json_is_string(m) ? json_string_value(m) : "", out, out_size);
    json_decref(doc);
}

/* One GET to the API with the token; *status and *body as oidc__http(). */
static int
api_get(const char *url, const char *token, long *status, char **body, size_t *len,
        struct eph_err *err)
{
    char *auth = xasprintf("Authorization: Bearer %s", token);
    const char *const headers[] = {auth, "Accept: application/vnd.github+json",
                                   "X-GitHub-Api-Version: 2022-11-28", NULL};
    struct oidc__http_req req = {.url = url, .headers = headers, .what = "GitHub API"};
    int rc = oidc__http(&req, status, body, len, err);

    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    return rc;
}

/* ------------------------------------------------------------- parsing */

void
github_user_release(struct github_user *u)
{
    free(u->login);
    free(u->email);
    free(u->name);
    memset(u, 0, sizeof(*u));
}

int
github_parse_token(const char *json, size_t len, char **token_out, struct eph_err *err)
{
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *error, *token;
    char q_error[64], q_desc[QUOTE_MAX];
    int rc = 0;

    *token_out = NULL;
    if (!json_is_object(doc)) {
        rc = eph_err_set(err, EPH_EPARSE, "GitHub's answer to the code is not a JSON object");
        goto out;
    }
    error = json_object_get(doc, "error");
    if (json_is_string(error)) {
        json_t *desc = json_object_get(doc, "error_description");

        oidc__printable(json_string_value(error), q_error, sizeof(q_error));
        oidc__printable(json_is_string(desc) ? json_string_value(desc) : "", q_desc,
                        sizeof(q_desc));
        rc = eph_err_set(err, EPH_EUNAUTH, "GitHub refused the code: %s%s%s%s", q_error,
                         q_desc[0] ? " (" : "", q_desc, q_desc[0] ? ")" : "");
        goto out;
    }
    token = json_object_get(doc, "access_token");
    if (!json_is_string(token) || !is_token(json_string_value(token), GITHUB_TOKEN_MAX)) {
        rc = eph_err_set(err, EPH_EUNAUTH, "GitHub's answer to the code holds no access token");
        goto out;
    }
    *token_out = xstrdup(json_string_value(token));
out:
    json_decref(doc);
    return rc;
}

int
github_parse_user(const char *json, size_t len, struct github_user *out, struct eph_err *err)
{
    json_t *doc = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *login, *id, *email, *name;
    char q[QUOTE_MAX];
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!json_is_object(doc)) {
        rc = eph_err_set(err, EPH_EPARSE, "GitHub's /user is not a JSON object");
        goto out;
    }
    login = json_object_get(doc, "login");
    id = json_object_get(doc, "id");
    if (!json_is_string(login) || !is_login(json_string_value(login))) {
        oidc__printable(json_is_string(login) ? json_string_value(login) : "", q, sizeof(q));
        rc = eph_err_set(err, EPH_EINVAL, "GitHub's /user has no valid login: '%s'", q);
        goto out;
    }
    if (!json_is_integer(id) || json_integer_value(id) <= 0) {
        rc = eph_err_set(err, EPH_EINVAL, "GitHub's /user has no valid id");
        goto out;
    }
    out->login = xstrdup(json_string_value(login));
    out->id = (int64_t)json_integer_value(id);
    email = json_object_get(doc, "email");
    if (json_is_string(email) && json_string_length(email) > 0 &&
        json_string_length(email) <= EMAIL_MAX)
        out->email = xstrdup(json_string_value(email));
    name = json_object_get(doc, "name");
    if (json_is_string(name) && json_string_length(name) > 0 &&
        json_string_length(name) <= NAME_MAX_BYTES)
        out->name = xstrdup(json_string_value(name));
out:
    json_decref(doc);
    return rc;
}

int
github_parse_emails(const char *json, size_t len, char **email_out, struct eph_err *err)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    size_t i;
    int rc = 0;

    *email_out = NULL;
    if (!json_is_array(doc)) {
        rc = eph_err_set(err, EPH_EPARSE, "GitHub's /user/emails is not a JSON array");
        goto out;
    }
    for (i = 0; i < json_array_size(doc); i++) {
        json_t *e = json_array_get(doc, i);
        json_t *addr = json_object_get(e, "email");

        if (json_is_true(json_object_get(e, "primary")) &&
            json_is_true(json_object_get(e, "verified")) && json_is_string(addr) &&
            json_string_length(addr) > 0 && json_string_length(addr) <= EMAIL_MAX) {
            *email_out = xstrdup(json_string_value(addr));
            break;
        }
    }
out:
    json_decref(doc);
    return rc;
}

int
github_parse_membership(const char *json, size_t len, bool *active, struct eph_err *err)
{
    json_t *doc = json_loadb(json, len, 0, NULL);
    json_t *state = json_object_get(doc, "state");
    int rc = 0;

    *active = false;
    if (!json_is_object(doc) || !json_is_string(state))
        rc = eph_err_set(err, EPH_EPARSE, "GitHub's membership answer has no 'state'");
    else
        *active = strcmp(json_string_value(state), "active") == 0;
    json_decref(doc);
    return rc;
}

/* ------------------------------------------------------------- network */

char *
github_authorize_url(const char *web_url, const char *client_id, const char *redirect_uri,
                     const char *state)
{
    char *url = base_url(web_url, DEFAULT_WEB_URL);

    append(&url, "/login/oauth/authorize?client_id=");
    oidc__append_encoded(&url, client_id);
    append(&url, "&redirect_uri=");
    oidc__append_encoded(&url, redirect_uri);
    append(&url, "&state=");
    oidc__append_encoded(&url, state);
    append(&url, "&scope=" SCOPES);
    return url;
}

int
github_exchange_code(const char *web_url, const char *client_id, const char *client_secret,
                     const char *code, const char *redirect_uri, char **token_out,
                     struct eph_err *err)
{
    static const char *const headers[] = {"Accept: application/json",
                                          "Content-Type: application/x-www-form-urlencoded", NULL};
    char *url = base_url(web_url, DEFAULT_WEB_URL);
    struct oidc__http_req req = {.headers = headers, .what = "GitHub's token endpoint"};
    char *body = NULL, *answer = NULL;
    size_t len = 0;
    long status;
    int rc;

    *token_out = NULL;
    append(&url, "/login/oauth/access_token");
    append(&body, "client_id=");
    oidc__append_encoded(&body, client_id);
    append(&body, "&client_secret=");
    oidc__append_encoded(&body, client_secret ? client_secret : "");
    append(&body, "&code=");
    oidc__append_encoded(&body, code);
    append(&body, "&redirect_uri=");
    oidc__append_encoded(&body, redirect_uri);
    req.url = url;
    req.body = body;
    rc = oidc__http(&req, &status, &answer, &len, err);
    if (rc == 0 && status != 200) {
        char q[QUOTE_MAX];

        api_message(answer, len, q, sizeof(q));
        rc = eph_err_set(err, -EIO, "GitHub's token endpoint answered HTTP %ld%s%s", status,
                         q[0] ? ": " : "", q);
    }
    if (rc == 0)
        rc = github_parse_token(answer, len, token_out, err);
    OPENSSL_cleanse(body, strlen(body)); /* the secret and the code */
    free(body);
    if (answer) {
        OPENSSL_cleanse(answer, len);
        free(answer);
    }
    free(url);
    return rc;
}

/* The error for an answer other than 200 (and other than what the caller
 * handles itself) to GET `path`. */
static int
status_error(long status, const char *path, const char *body, size_t len, struct eph_err *err)
{
    char q_path[QUOTE_MAX], q_msg[QUOTE_MAX];

    oidc__printable(path, q_path, sizeof(q_path));
    api_message(body, len, q_msg, sizeof(q_msg));
    if (status == 401)
        return eph_err_set(err, EPH_EUNAUTH, "GitHub API refused the token for %s%s%s", q_path,
                           q_msg[0] ? ": " : "", q_msg);
    if (status == 403)
        return eph_err_set(err, EPH_EPERM, "GitHub API refused to answer %s (HTTP 403)%s%s", q_path,
                           q_msg[0] ? ": " : "", q_msg);
    return eph_err_set(err, EPH_EINVAL, "GitHub API answered HTTP %ld for %s%s%s", status, q_path,
                       q_msg[0] ? ": " : "", q_msg);
}

int
github_fetch_user(const char *api_url, const char *token, struct github_user *out,
                  struct eph_err *err)
{
    char *base = base_url(api_url, DEFAULT_API_URL);
    char *url = NULL, *body = NULL;
    size_t len = 0;
    long status;
    int rc;

    memset(out, 0, sizeof(*out));
    if (!is_token(token, GITHUB_TOKEN_MAX)) {
        rc = eph_err_set(err, EPH_EINVAL, "GitHub access token holds characters it cannot have");
        goto out;
    }
    url = xasprintf("%s/user", base);
    rc = api_get(url, token, &status, &body, &len, err);
    if (rc == 0 && status != 200)
        rc = status_error(status, "/user", body, len, err);
    if (rc == 0)
        rc = github_parse_user(body, len, out, err);
    if (rc < 0 || out->email != NULL)
        goto out;

    free(url);
    free(body);
    body = NULL;
    url = xasprintf("%s/user/emails", base);
    rc = api_get(url, token, &status, &body, &len, err);
    if (rc == 0 && status == 200)
        rc = github_parse_emails(body, len, &out->email, err);
    else if (rc == 0 && status != 403 && status != 404) /* 403/404: no user:email scope */
        rc = status_error(status, "/user/emails", body, len, err);
out:
    if (rc < 0)
        github_user_release(out);
    free(body);
    free(url);
    free(base);
    return rc;
}

/*
 * Asks one membership question: GET base + path. Returns 0 with *active,
 * or an error with *err set.
 */
static int
membership(const char *base, const char *path, const char *token, bool *active, struct eph_err *err)
{
    char *url = xasprintf("%s%s", base, path);
    char *body = NULL;
    size_t len = 0;
    long status;
    int rc = api_get(url, token, &status, &body, &len, err);

    *active = false;
    if (rc == 0 && status == 200)
        rc = github_parse_membership(body, len, active, err);
    else if (rc == 0 && status != 404) /* 404: not a member (or no such org/team) */
        rc = status_error(status, path, body, len, err);
    free(body);
    free(url);
    return rc;
}

int
github_check_membership(const char *api_url, const char *token, const char *login,
                        const char *const *orgs, size_t n_orgs, const char *const *teams,
                        size_t n_teams, bool *ok, struct eph_err *err)
{
    struct eph_err first = {0}; /* the first question left unanswered */
    char *base = NULL, *path = NULL;
    bool active = false;
    int rc = 0;

    *ok = false;
    if (n_orgs == 0 && n_teams == 0) {
        *ok = true;
        return 0;
    }
    if (!is_token(token, GITHUB_TOKEN_MAX))
        return eph_err_set(err, EPH_EINVAL, "GitHub access token holds characters it cannot have");
    if (!is_login(login))
        return eph_err_set(err, EPH_EINVAL, "GitHub login holds characters it cannot have");
    base = base_url(api_url, DEFAULT_API_URL);

    for (size_t i = 0; i < n_orgs && !active; i++) {
        struct eph_err e = {0};

        free(path);
        path = xstrdup("/user/memberships/orgs/");
        oidc__append_encoded(&path, orgs[i]);
        rc = membership(base, path, token, &active, &e);
        if (rc < 0 && first.code == 0)
            first = e;
    }
    for (size_t i = 0; i < n_teams && !active; i++) {
        const char *slash = strchr(teams[i], '/');
        struct eph_err e = {0};
        char *org;

        if (slash == NULL || slash == teams[i] || slash[1] == '\0' || strchr(slash + 1, '/')) {
            char q[QUOTE_MAX];

            oidc__printable(teams[i], q, sizeof(q));
            rc = eph_err_set(&e, EPH_EINVAL, "GitHub team '%s' is not written 'org/team'", q);
        } else {
            org = xstrndup(teams[i], (size_t)(slash - teams[i]));
            free(path);
            path = xstrdup("/orgs/");
            oidc__append_encoded(&path, org);
            append(&path, "/teams/");
            oidc__append_encoded(&path, slash + 1);
            append(&path, "/memberships/");
            oidc__append_encoded(&path, login);
            free(org);
            rc = membership(base, path, token, &active, &e);
        }
        if (rc < 0 && first.code == 0)
            first = e;
    }
    free(path);
    free(base);
    *ok = active;
    if (active || first.code == 0)
        return 0;
    if (err)
        *err = first;
    return first.code;
}
