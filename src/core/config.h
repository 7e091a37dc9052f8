/*
 * core/config.h - the server's settings: one table read by the config-file
 * parser, the flags, `--help`, validation and `--print-config`.
 *
 * Precedence: defaults, then the config file (--config, YAML), then EPH_*
 * environment variables, then flags. Validated once at start-up; immutable
 * afterwards.
 */
#ifndef EPH_CORE_CONFIG_H
#define EPH_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/err.h"

struct config {
    char *data_dir;              /* store, git caches, environment directories */
    char *listen;                /* "HOST:PORT" of the gateway: every URL, the API behind it */
    char *listen_host;           /* parsed from listen */
    int listen_port;             /* parsed from listen; 0 picks a free port */
    char *port_range;            /* "LO-HI": ports handed to services */
    int port_lo, port_hi;        /* parsed from port_range, inclusive */
    int64_t default_ttl_s;       /* when neither --ttl nor the template says */
    int64_t max_ttl_s;           /* no environment lives longer than this from now */
    int64_t stop_grace_ms;       /* SIGTERM -> SIGKILL when stopping a service */
    int64_t reconcile_interval_ms; /* level-triggered tick, besides kicks on changes */
    char *allowed_repos;         /* comma-separated glob patterns of registrable repositories */
    char *log_level;             /* debug, info, warn, error */
    char *client_config;         /* where the first start writes the admin's client config */
    int64_t max_body_bytes;      /* largest API request body */
    /* the gateway (docs/gateway.md) */
    char *domain;                /* the control host, and {domain} in host_pattern */
    char *host_pattern;          /* "{service}.{env}.{domain}": a service's host name */
    int64_t gateway_workers;     /* event loops accepting on `listen`; 0: one per core */
    int64_t max_header_bytes;    /* request line + headers of one request: 431 beyond */
    int64_t header_timeout_ms;   /* a whole request head must arrive within this: 408 */
    int64_t idle_timeout_ms;     /* a keep-alive client connection without a request */
    int64_t upstream_connect_timeout_ms;    /* connecting to a service: 504 beyond */
    int64_t upstream_first_byte_timeout_ms; /* a service's response head after the request */
    int64_t upstream_idle_timeout_ms;       /* an idle pooled connection to a service */
    int64_t upstream_keepalive;             /* idle connections per address and worker */
    int64_t max_connections;     /* client connections over all workers: 503 beyond */
    char *access_log;            /* path, "-" for stderr, "" for none */
    int64_t shutdown_grace_ms;   /* SIGTERM: in-flight requests get this long to finish */
    int64_t public_url_port;     /* the port URLs advertise; 0: the port the gateway bound */
    /* sign-in and guardrails (docs/auth.md) */
    char *auth;                  /* "on" or "off" */
    bool auth_on;                /* derived from auth by config_validate */
    int64_t session_idle_s;      /* a session unused this long ends */
    int64_t session_max_s;       /* a session ends this long after sign-in */
    int64_t quota_envs_per_user; /* live environments per non-admin owner; 0: no limit */
    int64_t quota_envs_total;    /* live environments in all; 0: no limit */
    char *run_as;                /* user of environment processes when running as root */
    /* sleep, schedules and limits (docs/sleep.md) */
    int64_t sleep_after_s;       /* idle time before an environment sleeps; -1: never */
    int64_t delete_after_sleeping_s; /* an environment asleep this long is deleted; 0: never */
    int64_t wake_timeout_ms;     /* how long the gateway holds a request for a waking env */
    int64_t wake_queue;          /* held requests per environment and gateway worker: 503 beyond */
    char *schedule_awake;        /* office hours, "Mon-Fri 08:00-20:00"; "": none (always) */
    char *schedule_timezone;     /* IANA zone of schedule_awake; "UTC" by default */
    bool wake_outside_hours;     /* a request may wake an environment outside office hours */
    int64_t quota_keep_per_user; /* kept (never sleeping) envs per non-admin owner; 0: no limit */
    int64_t limit_memory_max_bytes; /* cap on a template's or creation's memory limit; 0: none */
    int64_t limit_cpu_max_millis;   /* cap on the CPU limit, thousandths of a core; 0: none */
    int64_t limit_pids_max;         /* cap on the process-count limit; 0: none */
    char *cgroup_root;           /* "auto", "off", or a cgroup v2 directory to create groups in */
};

/* Fills *cfg with the defaults. */
void config_init(struct config *cfg);
void config_release(struct config *cfg);

/*
 * Loads settings from a YAML file of `key: value` pairs named as in the table
 * (e.g. `port_range: 20000-20999`). Errors name file:line:column.
 */
int config_load_file(struct config *cfg, const char *path, struct eph_err *err);

/* Applies EPH_<KEY> environment variables (EPH_DATA_DIR, EPH_LISTEN, ...). */
int config_load_environment(struct config *cfg, struct eph_err *err);

/* Sets one setting by name from text ("listen", "127.0.0.1:9090"). */
int config_set(struct config *cfg, const char *key, const char *value, struct eph_err *err);

/*
 * Checks values and derives parsed fields (listen_host/port, port_lo/hi).
 * schedule_awake and schedule_timezone are parsed with schedule_parse()
 * (config_set() already checks each alone, so a bad one in a file is
 * reported with its file:line:column).
 * host_pattern is checked by the gateway's own parser (gw_host_pattern_init),
 * which core may not call: `eph serve` validates it right after this.
 */
int config_validate(struct config *cfg, struct eph_err *err);

/* Writes every setting as YAML (`--print-config`), or the help table. */
void config_print(const struct config *cfg, FILE *out);
void config_print_help(FILE *out);

/* True if `repo` matches one of allowed_repos. */
bool config_repo_allowed(const struct config *cfg, const char *repo);

/* Paths under data_dir (free()). */
char *config_store_path(const struct config *cfg);            /* data_dir/eph.db */
char *config_git_cache_path(const struct config *cfg, const char *project); /* data_dir/git/<p>.git */
char *config_envs_path(const struct config *cfg);             /* data_dir/envs */

/* The client config path: $EPH_CONFIG, else ~/.config/ephemera/config. free(). */
char *config_default_client_path(void);

#endif
