/*
 * core/spec.h - the environment template: ephemera.yaml (version 1) -> structs.
 *
 * A spec is parsed once, validated whole (unknown keys, bad values, unknown
 * references, dependency cycles), and immutable afterwards. Every error names
 * file:line:column (1-based) and what was expected, e.g.
 *   "ephemera.yaml:12:5: unknown service 'dbb' in depends_on".
 *
 * Template references, replaced before anything runs:
 *   ${<service>.host} ${<service>.port} ${<service>.url}
 *   ${params.<name>}  ${env.name}
 * A `${NAME}` without a dot is left alone for the shell.
 *
 * Pure functions, no I/O except spec_parse_file() and the time zone file a
 * defaults.schedule names (read from /usr/share/zoneinfo to check it); any
 * thread.
 */
#ifndef EPH_CORE_SPEC_H
#define EPH_CORE_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define SPEC_MAX_SERVICES 64          /* more is a mistake, not an application */
#define SPEC_MAX_PARAMS 64
#define SPEC_MAX_BYTES (256 * 1024)   /* larger templates are refused before parsing */
#define SPEC_DEFAULT_HEALTH_TIMEOUT_MS 60000
#define SPEC_MAX_EXPANDED_BYTES (1024 * 1024) /* spec_expand() refuses longer results */

enum spec_health_kind {
    SPEC_HEALTH_NONE, /* healthy as soon as started */
    SPEC_HEALTH_HTTP, /* GET path answers 2xx or 3xx */
    SPEC_HEALTH_TCP,  /* the port accepts a connection */
};

struct spec_kv {
    char *key;
    char *value;
};

struct spec_param {
    char *name;          /* [a-z0-9_]+ */
    char *default_value; /* NULL: the param must be given at creation */
    char **allowed;      /* empty: any value */
    size_t n_allowed;
};

struct spec_service {
    char *name;                 /* DNS label: [a-z0-9]([a-z0-9-]{0,28}[a-z0-9])? */
    char *run;                  /* shell command; NULL for an upstream service */
    char *upstream;             /* "http://HOST:PORT" (may hold ${...}); NULL with run */
    char *dir;                  /* relative to the checkout, no "..", NULL: the root */
    char *setup;                /* run once per environment before the first start; NULL: none */
    struct spec_kv *env;        /* extra variables, values may hold ${...} */
    size_t n_env;
    char **depends_on;          /* names of other services */
    size_t n_depends_on;
    enum spec_health_kind health_kind;
    char *health_path;          /* for SPEC_HEALTH_HTTP: starts with '/' */
    int64_t health_timeout_ms;  /* how long start-up may take; default 60 s */
    bool expose;                /* gets a URL on the gateway; default true */
};

struct spec {
    int version;                 /* always 1 today */
    char *file;                  /* the name used in messages */
    struct spec_param *params;   /* in file order */
    size_t n_params;
    int64_t default_ttl_s;       /* defaults.ttl; 0: not set */
    int64_t default_sleep_after_s; /* defaults.sleep_after; 0: not set, -1: never */
    /* defaults.schedule: office hours, checked with schedule_parse() */
    char *default_schedule_awake;  /* "Mon-Fri 08:00-20:00"; NULL: not set */
    char *default_schedule_tz;     /* "Europe/Madrid"; NULL: not set */
    int default_wake_outside_hours; /* -1 unset, 0 false, 1 true */
    /* defaults.limits; 0: not set */
    int64_t default_limit_memory_bytes; /* memory: 512Mi */
    int64_t default_limit_cpu_millis;   /* cpu: 1.0 (cores), thousandths of a core */
    int64_t default_limit_pids;         /* pids: 512 */
    struct spec_service *services; /* in file order */
    size_t n_services;
};

/*
 * Parses and validates a template held in memory (`len` bytes; need not be
 * NUL-terminated). `file` names it in messages. Returns 0 and *out (free with
 * spec_free), or EPH_EPARSE / EPH_EINVAL / EPH_ETOOBIG with err->msg set and
 * *out NULL.
 */
int spec_parse(const char *yaml, size_t len, const char *file, struct spec **out,
               struct eph_err *err);
/* Same, for a NUL-terminated string. */
int spec_parse_string(const char *yaml, const char *file, struct spec **out, struct eph_err *err);
/* Same, reading `path` (messages use the path as given); -errno if it cannot be read. */
int spec_parse_file(const char *path, struct spec **out, struct eph_err *err);
void spec_free(struct spec *s);

/* The index of service `name`, or -1. */
int spec_service_index(const struct spec *s, const char *name);

/*
 * Dependency order: fills order[0..n_services) with service indexes such that
 * every service comes after all of its depends_on, ties kept in file order.
 * Cannot fail on a parsed spec (cycles are parse errors).
 */
void spec_order(const struct spec *s, size_t *order);

/*
 * Checks the params given at creation against the template: every given name
 * must be declared, every value allowed; missing ones take their default; a
 * param without default must be given. On success *values_out is an array of
 * n_params strings parallel to s->params (free with spec_strv_free(v, n)).
 * Errors: EPH_EINVAL, e.g. "param 'dataset' must be one of: natural, edge-cases".
 */
int spec_resolve_params(const struct spec *s, const struct spec_kv *given, size_t n_given,
                        char ***values_out, struct eph_err *err);
void spec_strv_free(char **v, size_t n);

/* What ${...} references expand to, for one environment. Borrowed arrays. */
struct spec_vars {
    const char *env_name;
    char *const *param_values; /* parallel to spec->params */
    const int *ports;          /* parallel to spec->services; port of each service */
    char *const *hosts;        /* parallel to spec->services; "127.0.0.1" locally */
    char *const *urls;         /* parallel to spec->services; "http://127.0.0.1:PORT" */
};

/*
 * Replaces every ${...} reference in `text`. Returns 0 and *out (free()), or
 * EPH_EINVAL for a reference the template does not define (already refused by
 * the parser for the template's own strings), for an unterminated "${", or for
 * a reference whose value `vars` leaves NULL; EPH_ETOOBIG past
 * SPEC_MAX_EXPANDED_BYTES. "$$" is not an escape: it stays "$$".
 */
int spec_expand(const struct spec *s, const struct spec_vars *vars, const char *text, char **out,
                struct eph_err *err);

/*
 * The environment variables of service `idx`, as NAME=VALUE strings in a
 * NULL-terminated array (free with spec_strv_free(v, count) or by walking to
 * NULL): PORT, EPH_ENV, EPH_PARAM_<NAME> for each param, <NAME>_HOST,
 * <NAME>_PORT, <NAME>_URL for each other service (NAME upper-cased, '-' -> '_'),
 * then the service's own `env:` entries expanded (they win on a clash, in
 * place). EPH_DATA is the driver's to add. *count_out receives the number of
 * strings. EPH_EINVAL (nothing allocated) when `vars` lacks an array or an
 * `env:` value cannot be expanded.
 */
int spec_service_environ(const struct spec *s, size_t idx, const struct spec_vars *vars,
                         char ***envp_out, size_t *count_out, struct eph_err *err);

#endif
