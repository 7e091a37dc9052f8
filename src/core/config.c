/*
 * core/config.c - the server's settings table, and its readers: config file,
 * environment, flags; validation and printing.
 */
#include "core/config.h"

#include <ctype.h>
#include <fnmatch.h>
#include <libfyaml.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

enum setting_type {
    SETTING_STRING,
    SETTING_DURATION_S,  /* int64_t seconds, written as "2h" */
    SETTING_DURATION_MS, /* int64_t milliseconds, written as "10s" */
    SETTING_BYTES,       /* int64_t, a plain number */
};

struct setting {
    const char *name;     /* key in the file; EPH_<NAME> in the environment; --name flag */
    enum setting_type type;
    const char *def;      /* default, as text; NULL for computed defaults */
    const char *help;
    size_t offset;        /* of the field in struct config */
};

#define FIELD(f) offsetof(struct config, f)

static const struct setting settings[] = {
    {"data_dir", SETTING_STRING, NULL,
     "where the store, git caches and environments live (default ~/.local/share/ephemera)",
     FIELD(data_dir)},
    {"listen", SETTING_STRING, "127.0.0.1:8080", "HOST:PORT of the API", FIELD(listen)},
    {"port_range", SETTING_STRING, "20000-29999", "LO-HI: ports handed to services",
     FIELD(port_range)},
    {"default_ttl", SETTING_DURATION_S, "8h",
     "lifetime of an environment when neither --ttl nor the template says", FIELD(default_ttl_s)},
    {"max_ttl", SETTING_DURATION_S, "7d", "no environment lives longer than this from now",
     FIELD(max_ttl_s)},
    {"stop_grace", SETTING_DURATION_MS, "10s",
     "time between SIGTERM and SIGKILL when stopping a service", FIELD(stop_grace_ms)},
    {"reconcile_interval", SETTING_DURATION_MS, "1s",
     "period of the reconciler's level-triggered pass (changes also trigger one at once)",
     FIELD(reconcile_interval_ms)},
    {"allowed_repos", SETTING_STRING, "*",
     "comma-separated glob patterns of repositories admins may register", FIELD(allowed_repos)},
    {"log_level", SETTING_STRING, "info", "debug, info, warn or error", FIELD(log_level)},
    {"client_config", SETTING_STRING, NULL,
     "where the first start writes the admin's client config (default $EPH_CONFIG or "
     "~/.config/ephemera/config)",
     FIELD(client_config)},
    {"max_body_bytes", SETTING_BYTES, "1048576", "largest API request body", FIELD(max_body_bytes)},
};

static void *
field_ptr(struct config *cfg, const struct setting *s)
{
    return (char *)cfg + s->offset;
}

static const struct setting *
find_setting(const char *name)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        if (strcmp(settings[i].name, name) == 0)
            return &settings[i];
    }
    return NULL;
}

static char *
home_path(const char *rel)
{
    const char *home = getenv("HOME");

    return xasprintf("%s/%s", home && *home ? home : "/root", rel);
}

char *
config_default_client_path(void)
{
    const char *env = getenv("EPH_CONFIG");

    if (env && *env)
        return xstrdup(env);
    return home_path(".config/ephemera/config");
}

void
config_init(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        if (settings[i].def)
            EPH_ASSERT(config_set(cfg, settings[i].name, settings[i].def, NULL) == 0);
    }
    cfg->data_dir = home_path(".local/share/ephemera");
    cfg->client_config = config_default_client_path();
}

void
config_release(struct config *cfg)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        if (settings[i].type == SETTING_STRING) {
            char **p = field_ptr(cfg, &settings[i]);
            free(*p);
            *p = NULL;
        }
    }
    free(cfg->listen_host);
    cfg->listen_host = NULL;
}

int
config_set(struct config *cfg, const char *key, const char *value, struct eph_err *err)
{
    const struct setting *s = find_setting(key);
    int64_t v = 0;
    int rc;

    if (s == NULL)
        return eph_err_set(err, EPH_EINVAL, "unknown setting '%s'", key);
    switch (s->type) {
    case SETTING_STRING: {
        char **p = field_ptr(cfg, s);
        free(*p);
        *p = xstrdup(value);
        return 0;
    }
    case SETTING_DURATION_S:
    case SETTING_DURATION_MS:
        rc = duration_parse(value, &v, err);
        if (rc < 0)
            return eph_err_prefix(err, rc, "%s: ", key);
        *(int64_t *)field_ptr(cfg, s) = s->type == SETTING_DURATION_MS ? v * 1000 : v;
        return 0;
    case SETTING_BYTES: {
        char *end;
        long long n = strtoll(value, &end, 10);
        if (*value == '\0' || *end != '\0' || n <= 0)
            return eph_err_set(err, EPH_EINVAL, "%s: '%s' is not a positive number", key, value);
        *(int64_t *)field_ptr(cfg, s) = n;
        return 0;
    }
    }
    return EPH_EINTERNAL;
}

int
config_load_file(struct config *cfg, const char *path, struct eph_err *err)
{
    struct fy_parse_cfg pcfg = {.flags = FYPCF_QUIET};
    struct fy_document *doc = NULL;
    struct fy_node *root;
    struct fy_node_pair *pair;
    void *iter = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = fs_read_all(path, 1 << 20, &text, &len);

    if (rc < 0)
        return eph_err_set(err, rc, "cannot read config '%s': %s", path, eph_strerror(rc));
    doc = fy_document_build_from_string(&pcfg, text, len);
    if (doc == NULL) {
        rc = eph_err_set(err, EPH_EPARSE, "%s:1:1: invalid YAML", path);
        goto out;
    }
    root = fy_document_root(doc);
    if (root == NULL) /* an empty file sets nothing */
        goto out;
    if (!fy_node_is_mapping(root)) {
        rc = eph_err_set(err, EPH_EPARSE, "%s:1:1: the config must be a mapping of settings",
                         path);
        goto out;
    }
    while ((pair = fy_node_mapping_iterate(root, &iter)) != NULL) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        struct fy_token *tok = fy_node_is_scalar(k) ? fy_node_get_scalar_token(k) : NULL;
        const struct fy_mark *m = tok ? fy_token_start_mark(tok) : NULL;
        int line = m ? m->line + 1 : 1, col = m ? m->column + 1 : 1;
        char *key = NULL, *value = NULL;
        size_t n;
        const char *s;

        if (!fy_node_is_scalar(k) || v == NULL || !fy_node_is_scalar(v)) {
            rc = eph_err_set(err, EPH_EPARSE, "%s:%d:%d: expected 'setting: value'", path,
                             line, col);
            goto out;
        }
        s = fy_node_get_scalar(k, &n);
        key = xstrndup(s, n);
        s = fy_node_get_scalar(v, &n);
        value = xstrndup(s, n);
        rc = config_set(cfg, key, value, err);
        if (rc < 0)
            eph_err_prefix(err, rc, "%s:%d:%d: ", path, line, col);
        free(key);
        free(value);
        if (rc < 0)
            goto out;
    }
out:
    fy_document_destroy(doc);
    free(text);
    return rc;
}

int
config_load_environment(struct config *cfg, struct eph_err *err)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        char var[64];
        const char *value;
        size_t j = 0;

        j = (size_t)snprintf(var, sizeof(var), "EPH_");
        for (const char *p = settings[i].name; *p && j < sizeof(var) - 1; p++)
            var[j++] = (char)toupper((unsigned char)*p);
        var[j] = '\0';
        /* EPH_CONFIG names the client config file for the CLI: not a setting. */
        value = getenv(var);
        if (value == NULL || *value == '\0')
            continue;
        int rc = config_set(cfg, settings[i].name, value, err);
        if (rc < 0)
            return eph_err_prefix(err, rc, "%s: ", var);
    }
    return 0;
}

/* Parses "HOST:PORT" into host and port (0..65535). */
static int
parse_listen(struct config *cfg, struct eph_err *err)
{
    const char *colon = strrchr(cfg->listen, ':');
    char *end;
    long port;

    if (colon == NULL || colon == cfg->listen)
        return eph_err_set(err, EPH_EINVAL, "listen: '%s' is not HOST:PORT", cfg->listen);
    port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return eph_err_set(err, EPH_EINVAL, "listen: bad port in '%s'", cfg->listen);
    free(cfg->listen_host);
    cfg->listen_host = xstrndup(cfg->listen, (size_t)(colon - cfg->listen));
    cfg->listen_port = (int)port;
    return 0;
}

static int
parse_port_range(struct config *cfg, struct eph_err *err)
{
    int lo = 0, hi = 0, used = 0;

    if (sscanf(cfg->port_range, "%d-%d%n", &lo, &hi, &used) != 2 ||
        cfg->port_range[used] != '\0' || lo < 1024 || hi > 65535 || lo > hi)
        return eph_err_set(err, EPH_EINVAL,
                           "port_range: '%s' is not LO-HI within 1024-65535", cfg->port_range);
    cfg->port_lo = lo;
    cfg->port_hi = hi;
    return 0;
}

int
config_validate(struct config *cfg, struct eph_err *err)
{
    enum { MIN_TTL_S = 1 };
    int rc = parse_listen(cfg, err);

    if (rc == 0)
        rc = parse_port_range(cfg, err);
    if (rc < 0)
        return rc;
    if (cfg->data_dir == NULL || cfg->data_dir[0] == '\0')
        return eph_err_set(err, EPH_EINVAL, "data_dir: must not be empty");
    if (cfg->max_ttl_s < MIN_TTL_S || cfg->default_ttl_s < MIN_TTL_S)
        return eph_err_set(err, EPH_EINVAL, "default_ttl and max_ttl must be at least 1s");
    if (cfg->default_ttl_s > cfg->max_ttl_s)
        return eph_err_set(err, EPH_EINVAL, "default_ttl is longer than max_ttl");
    if (cfg->reconcile_interval_ms < 100)
        return eph_err_set(err, EPH_EINVAL, "reconcile_interval: must be at least 100ms");
    if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") &&
        strcmp(cfg->log_level, "warn") && strcmp(cfg->log_level, "error"))
        return eph_err_set(err, EPH_EINVAL, "log_level: '%s' is not debug, info, warn or error",
                           cfg->log_level);
    return 0;
}

static void
format_value(const struct config *cfg, const struct setting *s, char *out, size_t n)
{
    const void *p = (const char *)cfg + s->offset;

    switch (s->type) {
    case SETTING_STRING: snprintf(out, n, "%s", *(char *const *)p ? *(char *const *)p : ""); break;
    case SETTING_DURATION_S: duration_format(*(const int64_t *)p, out, n); break;
    case SETTING_DURATION_MS:
        if (*(const int64_t *)p % 1000)
            snprintf(out, n, "%lldms", (long long)*(const int64_t *)p);
        else
            duration_format(*(const int64_t *)p / 1000, out, n);
        break;
    case SETTING_BYTES: snprintf(out, n, "%lld", (long long)*(const int64_t *)p); break;
    }
}

void
config_print(const struct config *cfg, FILE *out)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        char value[1024];
        format_value(cfg, &settings[i], value, sizeof(value));
        fprintf(out, "%s: \"%s\"\n", settings[i].name, value);
    }
}

void
config_print_help(FILE *out)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        fprintf(out, "  --%-20s %s", settings[i].name, settings[i].help);
        if (settings[i].def)
            fprintf(out, " (default %s)", settings[i].def);
        fputc('\n', out);
    }
}

bool
config_repo_allowed(const struct config *cfg, const char *repo)
{
    char *patterns = xstrdup(cfg->allowed_repos ? cfg->allowed_repos : "");
    char *save = NULL;
    bool ok = false;

    for (char *p = strtok_r(patterns, ",", &save); p && !ok; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            p[--len] = '\0';
        if (*p && fnmatch(p, repo, 0) == 0)
            ok = true;
    }
    free(patterns);
    return ok;
}

char *
config_store_path(const struct config *cfg)
{
    return xasprintf("%s/eph.db", cfg->data_dir);
}

char *
config_git_cache_path(const struct config *cfg, const char *project)
{
    return xasprintf("%s/git/%s.git", cfg->data_dir, project);
}

char *
config_envs_path(const struct config *cfg)
{
    return xasprintf("%s/envs", cfg->data_dir);
}
