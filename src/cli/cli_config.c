/*
 * cli/cli_config.c - the client config (where the server is, which token to
 * send) and how flags and environment variables override it. `eph login`
 * and `eph logout` (cli_login.c) write it.
 *
 * The file is JSON, {"server": "...", "token": "..."}, mode 0600, written
 * atomically; `eph serve` writes the same file at its first start, so keys
 * this CLI does not know are kept when it rewrites the file.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/fs.h"
#include "util/xmalloc.h"

char *
cli__config_path(struct eph_err *err)
{
    const char *path = getenv("EPH_CONFIG");
    const char *home = getenv("HOME");

    if (path && *path)
        return xstrdup(path);
    if (home == NULL || *home == '\0') {
        struct passwd *pw = getpwuid(getuid());

        home = pw ? pw->pw_dir : NULL;
    }
    if (home == NULL || *home == '\0') {
        eph_err_set(err, EPH_EINVAL, "cannot find the client config: set $EPH_CONFIG or $HOME");
        return NULL;
    }
    return xasprintf("%s/.config/ephemera/config", home);
}

void
cli__config_release(struct cli_config *cfg)
{
    free(cfg->server);
    free(cfg->token);
    cfg->server = NULL;
    cfg->token = NULL;
}

int
cli__server_url_normalize(const char *url, char **out, struct eph_err *err)
{
    const char *host;
    size_t len;

    *out = NULL;
    if (strncmp(url, "http://", 7) == 0)
        host = url + 7;
    else if (strncmp(url, "https://", 8) == 0)
        host = url + 8;
    else
        host = NULL;
    if (host == NULL || *host == '\0' || *host == '/')
        return eph_err_set(err, EPH_EINVAL,
                           "invalid server URL '%s', expected http://HOST:PORT or https://HOST",
                           url);
    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return eph_err_set(err, EPH_EINVAL,
                               "invalid server URL '%s': it has a space or "
                               "control character",
                               url);
    }
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        len--;
    *out = xstrndup(url, len);
    return 0;
}

/* A token goes into a header: printable ASCII only. Never quote it in a message.
 * Ours are ~50 bytes; one over CLI_MAX_SECRET_BYTES is a mistake, not a token. */
int
cli__token_check(const char *token, const char *where, struct eph_err *err)
{
    size_t len = strlen(token);

    if (len == 0)
        return eph_err_set(err, EPH_EINVAL, "empty token in %s", where);
    if (len > CLI_MAX_SECRET_BYTES)
        return eph_err_set(err, EPH_EINVAL, "the token in %s is too long", where);
    for (const char *p = token; *p; p++) {
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f)
            return eph_err_set(err, EPH_EINVAL, "the token in %s has a space or control character",
                               where);
    }
    return 0;
}

int
cli__config_read(const char *path, struct cli_config *cfg, struct eph_err *err)
{
    char *text = NULL;
    json_t *root = NULL;
    json_error_t jerr;
    const json_t *server, *token;
    int rc;

    memset(cfg, 0, sizeof(*cfg));
    rc = fs_read_all(path, CLI_MAX_CONFIG_BYTES, &text, NULL);
    if (rc == -ENOENT)
        goto out;
    if (rc < 0) {
        eph_err_set(err, rc, "cannot read config '%s': %s", path, eph_strerror(rc));
        goto out;
    }
    root = json_loads(text, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        rc = root
                 ? eph_err_set(err, EPH_EPARSE, "invalid config '%s': expected a JSON object", path)
                 : eph_err_set(err, EPH_EPARSE, "invalid config '%s': %d:%d: %s", path, jerr.line,
                               jerr.column, jerr.text);
        goto out;
    }
    server = json_object_get(root, "server");
    token = json_object_get(root, "token");
    if ((server && !json_is_string(server)) || (token && !json_is_string(token))) {
        rc = eph_err_set(err, EPH_EPARSE,
                         "invalid config '%s': \"server\" and \"token\" must be strings", path);
        goto out;
    }
    if (server) {
        rc = cli__server_url_normalize(json_string_value(server), &cfg->server, err);
        if (rc < 0) {
            char msg[EPH_ERR_MSG_MAX];

            snprintf(msg, sizeof(msg), "%s", err->msg);
            eph_err_set(err, rc, "config '%s': %s", path, msg);
            goto out;
        }
    }
    if (token) {
        char *where = xasprintf("config '%s'", path);

        rc = cli__token_check(json_string_value(token), where, err);
        free(where);
        if (rc < 0)
            goto out;
        cfg->token = xstrdup(json_string_value(token));
    }
out:
    if (rc < 0 && rc != -ENOENT)
        cli__config_release(cfg);
    json_decref(root);
    free(text);
    return rc;
}

int
cli__config_write(const char *path, const struct cli_config *cfg, struct eph_err *err)
{
    json_t *root = NULL;
    char *text = NULL;
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    char *existing = NULL;
    int rc = 0;

    /* Keep what else the file says (the server may write more keys one day). */
    if (fs_read_all(path, CLI_MAX_CONFIG_BYTES, &existing, NULL) == 0) {
        root = json_loads(existing, 0, NULL);
        if (root && !json_is_object(root)) {
            json_decref(root);
            root = NULL;
        }
    }
    if (root == NULL)
        root = json_object();
    if (cfg->server)
        json_object_set_new(root, "server", json_string(cfg->server));
    else
        json_object_del(root, "server");
    if (cfg->token)
        json_object_set_new(root, "token", json_string(cfg->token));
    else
        json_object_del(root, "token");
    text = json_dumps(root, JSON_INDENT(2));
    if (text == NULL) {
        rc = eph_err_set(err, EPH_EINTERNAL, "cannot encode the client config");
        goto out;
    }
    if (slash && slash != dir) {
        *slash = '\0';
        rc = fs_mkdir_p(dir, 0700);
        if (rc < 0) {
            eph_err_set(err, rc, "cannot create '%s': %s", dir, eph_strerror(rc));
            goto out;
        }
    }
    {
        size_t len = strlen(text);

        text = xrealloc(text, len + 2);
        text[len] = '\n';
        text[len + 1] = '\0';
        rc = fs_write_atomic(path, text, len + 1, 0600);
    }
    if (rc < 0)
        eph_err_set(err, rc, "cannot write config '%s': %s", path, eph_strerror(rc));
out:
    free(existing);
    free(text);
    free(dir);
    json_decref(root);
    return rc;
}

int
cli__read_stdin_line(const char *what, char **out, struct eph_err *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, stdin);

    *out = NULL;
    if (n < 0) {
        free(line);
        return eph_err_set(err, EPH_EINVAL, "%s: nothing to read on stdin", what);
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    if ((size_t)n > CLI_MAX_SECRET_BYTES) {
        OPENSSL_cleanse(line, (size_t)n);
        free(line);
        return eph_err_set(err, EPH_EINVAL, "%s: the line on stdin is longer than %d bytes", what,
                           CLI_MAX_SECRET_BYTES);
    }
    *out = line;
    return 0;
}

const char *
cli__env_value(const char *name)
{
    const char *v = getenv(name);

    return v && *v ? v : NULL;
}

int
cli__config_resolve(const char *flag_server, const char *flag_token, struct cli_config *cfg,
                    struct eph_err *err)
{
    const char *server = flag_server ? flag_server : cli__env_value("EPH_SERVER");
    const char *token = flag_token ? flag_token : cli__env_value("EPH_TOKEN");
    const char *token_from = flag_token ? "--token" : "$EPH_TOKEN";
    struct cli_config file = {0};
    char *path = NULL;
    int rc = 0;

    memset(cfg, 0, sizeof(*cfg));
    if (server == NULL || token == NULL) {
        path = cli__config_path(err);
        if (path == NULL) {
            rc = EPH_EINVAL;
            goto out;
        }
        rc = cli__config_read(path, &file, err);
        if (rc < 0 && rc != -ENOENT)
            goto out;
        rc = 0;
    }
    if (server) {
        rc = cli__server_url_normalize(server, &cfg->server, err);
        if (rc < 0)
            goto out;
    } else {
        cfg->server = file.server;
        file.server = NULL;
    }
    if (token && strcmp(token, "-") == 0 && flag_token) {
        rc = cli__read_stdin_line("--token -", &cfg->token, err);
        token_from = "stdin";
    } else if (token) {
        cfg->token = xstrdup(token);
    } else {
        cfg->token = file.token;
        file.token = NULL;
        token_from = NULL; /* checked when the file was read */
    }
    if (rc == 0 && token_from && cfg->token)
        rc = cli__token_check(cfg->token, token_from, err);
    if (rc < 0)
        goto out;
    if (cfg->server == NULL || cfg->token == NULL)
        rc = eph_err_set(err, EPH_EUNAUTH, "not logged in: run 'eph login --server URL'");
out:
    if (rc < 0)
        cli__config_release(cfg);
    cli__config_release(&file);
    free(path);
    return rc;
}
