/*
 * core/config.c - the server's settings table, and its readers: config file,
 * environment, flags; validation and printing.
 */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <libfyaml.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/schedule.h"
#include "core/tz.h"
#include "core/units.h"
#include "util/fs.h"
#include "util/time.h"
#include "util/xmalloc.h"

enum setting_type {
    SETTING_STRING,
    SETTING_DURATION_S,  /* int64_t seconds, written as "2h" */
    SETTING_DURATION_MS, /* int64_t milliseconds, written as "10s" */
    SETTING_BYTES,       /* int64_t, a plain positive number */
    SETTING_INT,         /* int64_t, a plain number, may be 0 */
    SETTING_DURATION_S_OR_NEVER, /* int64_t seconds as DURATION_S, or "never": -1 */
    SETTING_DURATION_S_OR_ZERO,  /* int64_t seconds as DURATION_S, or "0"/"never": 0 */
    SETTING_BOOL,        /* bool: true/false (also yes/no, on/off, 1/0) */
    SETTING_SIZE,        /* int64_t bytes, "512Mi" (core/units.h) */
    SETTING_CPU,         /* int64_t thousandths of a core, "1.5" or "250m" (core/units.h) */
};

struct setting {
    const char *name;     /* key in the file; EPH_<NAME> in the environment; --name flag */
    enum setting_type type;
    const char *def;      /* default, as text; NULL for computed defaults */
    const char *help;
    size_t offset;        /* of the field in struct config */
    /* Inclusive bounds checked by config_validate(), in the field's unit
     * (milliseconds for SETTING_DURATION_MS); both 0: checked by hand there. */
    int64_t min, max;
};

#define FIELD(f) offsetof(struct config, f)
#define DAY_MS (86400LL * 1000)
#define GATEWAY_WORKERS_MAX 256 /* more loops than this is a typo, not a machine */
#define LIMIT_PIDS_MAX 4194304  /* the kernel's largest pid_max */

static const struct setting settings[] = {
    {"data_dir", SETTING_STRING, NULL,
     "where the store, git caches and environments live (default ~/.local/share/ephemera)",
     FIELD(data_dir), 0, 0},
    {"listen", SETTING_STRING, "127.0.0.1:8080",
     "HOST:PORT of the gateway: the API on the control host and every service URL",
     FIELD(listen), 0, 0},
    {"port_range", SETTING_STRING, "20000-29999", "LO-HI: ports handed to services",
     FIELD(port_range), 0, 0},
    {"default_ttl", SETTING_DURATION_S, "8h",
     "lifetime of an environment when neither --ttl nor the template says", FIELD(default_ttl_s),
     0, 0},
    {"max_ttl", SETTING_DURATION_S, "7d", "no environment lives longer than this from now",
     FIELD(max_ttl_s), 0, 0},
    {"stop_grace", SETTING_DURATION_MS, "10s",
     "time between SIGTERM and SIGKILL when stopping a service", FIELD(stop_grace_ms), 0, 0},
    {"reconcile_interval", SETTING_DURATION_MS, "1s",
     "period of the reconciler's level-triggered pass (changes also trigger one at once)",
     FIELD(reconcile_interval_ms), 0, 0},
    {"allowed_repos", SETTING_STRING, "*",
     "comma-separated glob patterns of repositories admins may register", FIELD(allowed_repos),
     0, 0},
    {"log_level", SETTING_STRING, "info", "debug, info, warn or error", FIELD(log_level), 0, 0},
    {"client_config", SETTING_STRING, NULL,
     "where the first start writes the admin's client config (default $EPH_CONFIG or "
     "~/.config/ephemera/config)",
     FIELD(client_config), 0, 0},
    {"max_body_bytes", SETTING_BYTES, "1048576", "largest API request body",
     FIELD(max_body_bytes), 0, 0},
    /* ---- the gateway: docs/gateway.md */
    {"domain", SETTING_STRING, "localhost",
     "host name of the control host (the API), and {domain} in host_pattern", FIELD(domain), 0,
     0},
    {"host_pattern", SETTING_STRING, "{service}.{env}.{domain}",
     "host name of a service's URL: {service} and {env} once each, {domain} if wanted",
     FIELD(host_pattern), 0, 0},
    {"gateway_workers", SETTING_INT, "0",
     "gateway event loops sharing the listening port; 0: one per core", FIELD(gateway_workers), 0,
     GATEWAY_WORKERS_MAX},
    {"max_header_bytes", SETTING_BYTES, "16384",
     "largest request line plus headers of one request (431 beyond)", FIELD(max_header_bytes),
     1024, 1024 * 1024},
    {"header_timeout", SETTING_DURATION_MS, "10s",
     "time a client has to send a whole request head (408 beyond)", FIELD(header_timeout_ms), 100,
     DAY_MS},
    {"idle_timeout", SETTING_DURATION_MS, "60s",
     "how long a keep-alive client connection may wait for its next request",
     FIELD(idle_timeout_ms), 100, DAY_MS},
    {"upstream_connect_timeout", SETTING_DURATION_MS, "5s",
     "time to connect to a service (504 beyond)", FIELD(upstream_connect_timeout_ms), 100,
     DAY_MS},
    {"upstream_first_byte_timeout", SETTING_DURATION_MS, "60s",
     "time a service has to start its response once the request is sent (504 beyond)",
     FIELD(upstream_first_byte_timeout_ms), 100, DAY_MS},
    /* Shorter than the 5 s keep-alive of Node.js and many other servers, so
     * that a pooled connection is not reused just as the service closes it. */
    {"upstream_idle_timeout", SETTING_DURATION_MS, "4s",
     "how long an idle connection to a service is kept for reuse",
     FIELD(upstream_idle_timeout_ms), 100, DAY_MS},
    /* Enough to hold the connections a busy upstream needs at once: at 256
     * requests in flight a cap of 64 made a third of them connect anew.
     * Idle ones still close after upstream_idle_timeout. */
    {"upstream_keepalive", SETTING_INT, "256",
     "idle connections kept per service address and gateway worker (0: none)",
     FIELD(upstream_keepalive), 0, 100000},
    {"max_connections", SETTING_INT, "10000",
     "client connections over all gateway workers (503 beyond)", FIELD(max_connections), 1,
     1000000},
    {"access_log", SETTING_STRING, "",
     "one line per request to this file, '-' for stderr, '' for none", FIELD(access_log), 0, 0},
    {"shutdown_grace", SETTING_DURATION_MS, "10s",
     "on SIGTERM, how long requests in flight may take to finish", FIELD(shutdown_grace_ms), 0,
     3600 * 1000},
    /* sign-in and guardrails (docs/auth.md); providers and sinks are the
     * `auth:` and `notify:` sections of the config file (core/auth_config.h) */
    {"auth", SETTING_STRING, "on",
     "on: every environment URL needs a signed-in user, a token or a share link; off: "
     "environment URLs are open to anyone who reaches the port (the API still needs a token)",
     FIELD(auth), 0, 0},
    {"session_idle", SETTING_DURATION_S, "12h", "a browser session unused this long ends",
     FIELD(session_idle_s), 60, 365 * 24 * 3600},
    {"session_max", SETTING_DURATION_S, "7d", "a browser session ends this long after sign-in",
     FIELD(session_max_s), 60, 365 * 24 * 3600},
    {"quota_envs_per_user", SETTING_INT, "3",
     "environments one user (not an admin) may have at once; 0: no limit",
     FIELD(quota_envs_per_user), 0, 1000000},
    {"quota_envs_total", SETTING_INT, "0", "environments on this server at once; 0: no limit",
     FIELD(quota_envs_total), 0, 1000000},
    {"run_as", SETTING_STRING, "nobody",
     "the user environment processes run as when eph serve runs as root", FIELD(run_as), 0, 0},
    {"public_url_port", SETTING_INT, "0",
     "port the URLs of services advertise (behind a load balancer: 80); 0: the listening port",
     FIELD(public_url_port), 0, 65535},
    /* ---- sleep, schedules and limits: docs/sleep.md. Bounds of the
     * durations with "never" are checked by hand in config_validate(). */
    {"sleep_after", SETTING_DURATION_S_OR_NEVER, "30m",
     "idle time after which an environment sleeps, unless its template or creation says; "
     "never: no idle sleep",
     FIELD(sleep_after_s), 0, 0},
    {"delete_after_sleeping", SETTING_DURATION_S_OR_ZERO, "0",
     "an environment asleep this long is deleted; 0 or never: kept until its TTL",
     FIELD(delete_after_sleeping_s), 0, 0},
    {"wake_timeout", SETTING_DURATION_MS, "60s",
     "how long the gateway holds a request for an environment that is waking up (503 beyond)",
     FIELD(wake_timeout_ms), 100, DAY_MS},
    {"wake_queue", SETTING_INT, "1024",
     "requests held per waking environment and gateway worker (503 beyond)", FIELD(wake_queue),
     1, 1000000},
    {"schedule_awake", SETTING_STRING, "",
     "office hours, e.g. 'Mon-Fri 08:00-20:00': environments sleep outside them; '': always "
     "awake",
     FIELD(schedule_awake), 0, 0},
    {"schedule_timezone", SETTING_STRING, "UTC",
     "IANA time zone of schedule_awake, e.g. Europe/Madrid", FIELD(schedule_timezone), 0, 0},
    {"wake_outside_hours", SETTING_BOOL, "false",
     "whether a request wakes an environment asleep outside office hours (false: 503)",
     FIELD(wake_outside_hours), 0, 0},
    {"quota_keep_per_user", SETTING_INT, "1",
     "environments one user (not an admin) may keep awake with eph keep; 0: no limit",
     FIELD(quota_keep_per_user), 0, 1000000},
    {"limit_memory_max", SETTING_SIZE, "0",
     "largest memory limit a template or creation may set, e.g. 2Gi (refused above); 0: no cap",
     FIELD(limit_memory_max_bytes), 0, 0},
    {"limit_cpu_max", SETTING_CPU, "0",
     "largest CPU limit in cores a template or creation may set, e.g. 2.0; 0: no cap",
     FIELD(limit_cpu_max_millis), 0, 0},
    {"limit_pids_max", SETTING_INT, "0",
     "largest process-count limit a template or creation may set; 0: no cap",
     FIELD(limit_pids_max), 0, LIMIT_PIDS_MAX},
    {"cgroup_root", SETTING_STRING, "auto",
     "cgroup v2 directory the server creates environments' groups in; auto: its own group's; "
     "off: no limits enforced",
     FIELD(cgroup_root), 0, 0},
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

/* "250ms": true and *out_ms; anything else is left to duration_parse(). */
static bool
parse_millis(const char *text, int64_t *out_ms)
{
    size_t n = strlen(text);
    int64_t v = 0;

    if (n < 3 || n > 12 || strcmp(text + n - 2, "ms") != 0)
        return false;
    for (size_t i = 0; i < n - 2; i++) {
        if (!isdigit((unsigned char)text[i]))
            return false;
        v = v * 10 + (text[i] - '0');
    }
    *out_ms = v;
    return true;
}

/* true/false and the other usual spellings, any case; false if none. */
static bool
parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};

    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

/*
 * What can be checked of one setting alone, when it is set (so that a file
 * names the line): the syntax of schedule_awake, the zone of
 * schedule_timezone. Their combination is checked by config_validate().
 */
static int
check_alone(const char *key, const char *value, struct eph_err *err)
{
    struct schedule *sched = NULL;
    struct tz *tz = NULL;
    int rc = 0;

    if (strcmp(key, "schedule_awake") == 0 && value[0] != '\0') {
        rc = schedule_new(value, NULL, &sched, err);
        schedule_free(sched);
    } else if (strcmp(key, "schedule_timezone") == 0) {
        rc = tz_load(value, &tz, err);
        tz_free(tz);
    }
    if (rc < 0)
        return eph_err_prefix(err, rc, "%s: ", key);
    return 0;
}

int
config_set(struct config *cfg, const char *key, const char *value, struct eph_err *err)
{
    const struct setting *s = find_setting(key);
    int64_t v = 0;
    bool b;
    int rc;

    if (s == NULL)
        return eph_err_set(err, EPH_EINVAL, "unknown setting '%s'", key);
    switch (s->type) {
    case SETTING_STRING: {
        char **p = field_ptr(cfg, s);

        rc = check_alone(key, value, err);
        if (rc < 0)
            return rc;
        free(*p);
        *p = xstrdup(value);
        return 0;
    }
    case SETTING_BOOL:
        if (!parse_bool(value, &b))
            return eph_err_set(err, EPH_EINVAL, "%s: '%s' is not true or false", key, value);
        *(bool *)field_ptr(cfg, s) = b;
        return 0;
    case SETTING_SIZE:
        if (parse_size_bytes(value, &v) < 0)
            return eph_err_set(err, EPH_EINVAL, "%s: '%s' is not a size such as 512Mi or 2Gi",
                               key, value);
        *(int64_t *)field_ptr(cfg, s) = v;
        return 0;
    case SETTING_CPU:
        if (parse_cpu_millis(value, &v) < 0)
            return eph_err_set(err, EPH_EINVAL,
                               "%s: '%s' is not a number of cores such as 2, 0.5 or 250m", key,
                               value);
        *(int64_t *)field_ptr(cfg, s) = v;
        return 0;
    case SETTING_DURATION_S_OR_NEVER:
    case SETTING_DURATION_S_OR_ZERO:
        if (strcmp(value, "never") == 0 ||
            (s->type == SETTING_DURATION_S_OR_ZERO && strcmp(value, "0") == 0)) {
            *(int64_t *)field_ptr(cfg, s) = s->type == SETTING_DURATION_S_OR_NEVER ? -1 : 0;
            return 0;
        }
        rc = duration_parse(value, &v, err);
        if (rc < 0)
            return eph_err_prefix(err, rc, "%s: ", key);
        *(int64_t *)field_ptr(cfg, s) = v;
        return 0;
    case SETTING_DURATION_S:
    case SETTING_DURATION_MS:
        /* Milliseconds ("250ms") where the unit allows; else 30s, 2h, 1h30m. */
        if (s->type == SETTING_DURATION_MS && parse_millis(value, &v)) {
            *(int64_t *)field_ptr(cfg, s) = v;
            return 0;
        }
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
    case SETTING_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(value, &end, 10);
        if (*value == '\0' || *end != '\0' || errno != 0)
            return eph_err_set(err, EPH_EINVAL, "%s: '%s' is not a number", key, value);
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

        if (fy_node_is_scalar(k) && v && !fy_node_is_scalar(v)) {
            s = fy_node_get_scalar(k, &n);
            /* Sections of their own, read by auth_config_load_file(). */
            if ((n == 4 && memcmp(s, "auth", 4) == 0) || (n == 6 && memcmp(s, "notify", 6) == 0))
                continue;
        }
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

/* Lower-case letters, digits, '-' and '.', in labels that neither start
 * nor end with '-': what the gateway compares Host headers against. */
static bool
host_name_valid(const char *s)
{
    size_t label = 0;

    if (*s == '\0' || strlen(s) > 253)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (label == 0 || p[-1] == '-')
                return false;
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return false;
        if ((*p == '-' && label == 0) || ++label > 63)
            return false;
    }
    return label > 0 && s[strlen(s) - 1] != '-';
}

/* Seconds exactly, as duration_parse() reads them back: "90s" is "1m30s"
 * (duration_format() rounds for people: "1m"). */
static void
format_s(int64_t sec, char *out, size_t n)
{
    static const struct {
        int64_t size;
        char unit;
    } parts[] = {{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}};
    size_t used = 0;

    if (sec <= 0) {
        snprintf(out, n, "0s");
        return;
    }
    for (size_t i = 0; i < ARRAY_LEN(parts) && used < n; i++) {
        if (sec >= parts[i].size) {
            used += (size_t)snprintf(out + used, n - used, "%lld%c",
                                     (long long)(sec / parts[i].size), parts[i].unit);
            sec %= parts[i].size;
        }
    }
}

/* Milliseconds as a setting is written: "250ms", "10s", "1h30m". */
static void
format_ms(int64_t ms, char *out, size_t n)
{
    if (ms % 1000)
        snprintf(out, n, "%lldms", (long long)ms);
    else
        format_s(ms / 1000, out, n);
}

/* Every setting with bounds in the table, within them. */
static int
check_bounds(const struct config *cfg, struct eph_err *err)
{
    for (size_t i = 0; i < ARRAY_LEN(settings); i++) {
        const struct setting *s = &settings[i];
        int64_t v;

        if (s->type == SETTING_STRING || s->type == SETTING_BOOL || (s->min == 0 && s->max == 0))
            continue;
        v = *(const int64_t *)((const char *)cfg + s->offset);
        if (v >= s->min && v <= s->max)
            continue;
        if (s->type == SETTING_DURATION_MS) {
            char lo[32], hi[32];

            format_ms(s->min, lo, sizeof(lo));
            format_ms(s->max, hi, sizeof(hi));
            return eph_err_set(err, EPH_EINVAL, "%s: must be from %s to %s", s->name, lo, hi);
        }
        return eph_err_set(err, EPH_EINVAL, "%s: %lld is not from %lld to %lld", s->name,
                           (long long)v, (long long)s->min, (long long)s->max);
    }
    return 0;
}

/* The settings of docs/sleep.md that the table's bounds cannot express. */
static int
validate_sleep(const struct config *cfg, struct eph_err *err)
{
    struct schedule *sched = NULL;
    struct tz *tz = NULL;
    int rc;

    if (cfg->sleep_after_s == 0 || cfg->sleep_after_s < -1)
        return eph_err_set(err, EPH_EINVAL, "sleep_after: must be at least 1s, or never");
    if (cfg->delete_after_sleeping_s < 0)
        return eph_err_set(err, EPH_EINVAL, "delete_after_sleeping: must not be negative");
    if (cfg->limit_memory_max_bytes < 0 || cfg->limit_cpu_max_millis < 0)
        return eph_err_set(err, EPH_EINVAL,
                           "limit_memory_max and limit_cpu_max must not be negative");
    if (cfg->cgroup_root == NULL ||
        (strcmp(cfg->cgroup_root, "auto") != 0 && strcmp(cfg->cgroup_root, "off") != 0 &&
         cfg->cgroup_root[0] != '/'))
        return eph_err_set(err, EPH_EINVAL,
                           "cgroup_root: '%s' is not auto, off or an absolute path",
                           cfg->cgroup_root ? cfg->cgroup_root : "");
    rc = tz_load(cfg->schedule_timezone, &tz, err);
    if (rc < 0)
        return eph_err_prefix(err, rc, "schedule_timezone: ");
    if (cfg->schedule_awake == NULL || cfg->schedule_awake[0] == '\0') {
        tz_free(tz);
        return 0;
    }
    rc = schedule_new(cfg->schedule_awake, tz, &sched, err); /* takes tz */
    schedule_free(sched);
    if (rc < 0)
        return eph_err_prefix(err, rc, "schedule_awake: ");
    return 0;
}

int
config_validate(struct config *cfg, struct eph_err *err)
{
    enum { MIN_TTL_S = 1 };
    int rc = parse_listen(cfg, err);

    if (rc == 0)
        rc = parse_port_range(cfg, err);
    if (rc == 0)
        rc = check_bounds(cfg, err);
    if (rc < 0)
        return rc;
    if (!host_name_valid(cfg->domain))
        return eph_err_set(err, EPH_EINVAL,
                           "domain: '%s' is not a lower-case host name such as 'localhost'",
                           cfg->domain);
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
    if (strcmp(cfg->auth, "on") == 0)
        cfg->auth_on = true;
    else if (strcmp(cfg->auth, "off") == 0)
        cfg->auth_on = false;
    else
        return eph_err_set(err, EPH_EINVAL, "auth: '%s' is not on or off", cfg->auth);
    if (cfg->session_idle_s > cfg->session_max_s)
        return eph_err_set(err, EPH_EINVAL, "session_idle is longer than session_max");
    if (cfg->run_as == NULL || cfg->run_as[0] == '\0')
        return eph_err_set(err, EPH_EINVAL, "run_as: must name a user (it is used only as root)");
    return validate_sleep(cfg, err);
}

static void
format_value(const struct config *cfg, const struct setting *s, char *out, size_t n)
{
    const void *p = (const char *)cfg + s->offset;

    switch (s->type) {
    case SETTING_STRING: snprintf(out, n, "%s", *(char *const *)p ? *(char *const *)p : ""); break;
    case SETTING_DURATION_S: format_s(*(const int64_t *)p, out, n); break;
    case SETTING_DURATION_MS: format_ms(*(const int64_t *)p, out, n); break;
    case SETTING_BYTES:
    case SETTING_INT: snprintf(out, n, "%lld", (long long)*(const int64_t *)p); break;
    case SETTING_DURATION_S_OR_NEVER:
    case SETTING_DURATION_S_OR_ZERO:
        if (*(const int64_t *)p == -1 && s->type == SETTING_DURATION_S_OR_NEVER)
            snprintf(out, n, "never");
        else if (*(const int64_t *)p == 0 && s->type == SETTING_DURATION_S_OR_ZERO)
            snprintf(out, n, "0");
        else
            format_s(*(const int64_t *)p, out, n);
        break;
    case SETTING_BOOL: snprintf(out, n, "%s", *(const bool *)p ? "true" : "false"); break;
    case SETTING_SIZE: format_size_bytes(*(const int64_t *)p, out, n); break;
    case SETTING_CPU: format_cpu_millis(*(const int64_t *)p, out, n); break;
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
        fprintf(out, "  --%-28s %s", settings[i].name, settings[i].help);
        if (settings[i].def && settings[i].def[0])
            fprintf(out, " (default %s)", settings[i].def);
        else if (settings[i].def)
            fputs(" (default '')", out);
        fputc('\n', out);
    }
}

/* True if a path or URL has a "." or ".." segment (or a percent-encoded
 * dot, which git and curl decode): "<allowed>/../elsewhere" would match
 * the pattern "<allowed>/(star)" and name something outside it once resolved. */
static bool
has_dot_segment(const char *repo)
{
    if (strcasestr(repo, "%2e") != NULL)
        return true;
    for (const char *p = repo; *p != '\0';) {
        size_t n = strcspn(p, "/\\");

        if ((n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return true;
        p += n;
        if (*p != '\0')
            p++;
    }
    return false;
}

bool
config_repo_allowed(const struct config *cfg, const char *repo)
{
    char *patterns;
    char *save = NULL;
    bool ok = false;

    if (has_dot_segment(repo))
        return false;
    patterns = xstrdup(cfg->allowed_repos ? cfg->allowed_repos : "");

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
