/*
 * server/serve.c - `eph serve`: settings, the data directory, first-start
 * admin token, and the control loop with everything on it.
 *
 * The gateway owns the one public port (--listen): service hosts are proxied
 * to their services, the control host to the API's HTTP server, which
 * listens on 127.0.0.1 and a port of the kernel's choosing that nothing but
 * the gateway is told about. After every reconciler tick the routes are
 * rebuilt from what the reconciler saw and published when they changed.
 *
 * Sleep (docs/sleep.md): the reconciler polls the gateway's activity of each
 * environment every tick (gw_activity); a request for a sleeping environment
 * that may wake reaches the control loop from a gateway thread through a
 * small mailbox (a locked array of environment ids plus a uv_async_t) and
 * becomes rec_wake_on_request(); the API's sleep, wake, sleep_info, usage
 * and activity hooks go to the reconciler and the driver.
 *
 * Shutdown (SIGTERM/SIGINT): the gateway stops accepting and gives requests
 * in flight `shutdown_grace` to finish while the API finishes its own (log
 * streams end at once); then the reconciler and the driver close and the
 * process exits. Environments keep running and are adopted by the next
 * start, so upgrading the server does not take them down.
 */
#include "server/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <libgen.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define LOG_MOD "server"
#include "api/api.h"
#include "auth/auth.h"
#include "core/config.h"
#include "drivers/local/local.h"
#include "gateway/gateway.h"
#include "gateway/http_server.h"
#include "auth/auth.h"
#include "auth/index.h"
#include "auth/signed.h"
#include "core/auth_config.h"
#include "notify/notify.h"
#include "reconciler/reconciler.h"
#include "store/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

/* The API's own listener: loopback, a port only the gateway is told. */
#define SERVE_API_HOST "127.0.0.1"
/* The gateway adds X-Forwarded-For/-Proto/-Host and Forwarded to a request
 * head it accepted within max_header_bytes: the API allows for them. */
#define SERVE_FORWARD_HEADROOM_BYTES 4096
/* The API keeps an idle connection from the gateway this much longer than
 * the gateway keeps it in its pool, so the gateway is always the one to
 * close it and never sends a request on a connection being closed. */
#define SERVE_API_IDLE_MARGIN_MS 30000
/* How often last uses are written to the store and dead sessions dropped. */
#define SERVE_AUTH_UPKEEP_MS 5000
/* Wake requests waiting for the control loop, distinct environments: the
 * gateway calls at most once per environment per 100 ms per worker, so this
 * is reached only with that many sleeping environments asked for at once;
 * beyond, a request is dropped and the gateway asks again 100 ms later. */
#define SERVE_WAKE_MAILBOX_MAX 256
/* A service name in a wake request (DNS label, 30 characters at most). */
#define SERVE_WAKE_SERVICE_MAX 64

/* A request reached a sleeping environment: posted by a gateway thread. */
struct wake_note {
    int64_t env_id;
    char service[SERVE_WAKE_SERVICE_MAX];
};

struct server {
    struct config cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    struct store *store;
    struct driver *driver;
    struct reconciler *rec;
    struct api *api;
    struct http_server *http;       /* the API, behind the gateway */
    struct gateway *gw;             /* NULL once stopped */
    struct gw_host_pattern pattern; /* for the URLs the API shows */
    int public_port;                /* the port those URLs name */
    int workers;                    /* gateway event loops */
    FILE *access_log;               /* NULL: none */
    bool access_log_owned;          /* we opened it (not stderr): we close it */
    uint64_t routes_version;        /* of the last table published; increases */
    uint64_t routes_signature;      /* what it was built from (route_signature) */
    int lock_fd;                    /* flock on data_dir/eph.lock: one server per data dir */
    int stopping_parts;             /* the gateway and the API server, while they close */
    bool stopping;
    struct auth_config ac;          /* the config file's auth: and notify: sections */
    struct notifier *notifier;      /* events to the notify: sinks; NULL if none */
    struct auth_index *auth_ix;     /* sessions, tokens, users: API and gateway */
    unsigned char auth_key[AUTH_KEY_BYTES]; /* signs tickets, host cookies, share links */
    uv_timer_t auth_upkeep;
    /* wake requests from gateway threads to the control loop */
    uv_mutex_t wake_lock;            /* guards the three below */
    struct wake_note wake_notes[SERVE_WAKE_MAILBOX_MAX]; /* one per environment */
    size_t n_wake_notes;
    bool wake_closed;                /* the async handle is closing: drop new notes */
    uv_async_t wake_async;           /* wakes the control loop; coalesces */
    bool wake_open;                  /* wake_async initialised */
    char activity_what[80];          /* rec_activity.what of the last activity_of() */
};

static void
usage(FILE *out)
{
    fputs("usage: eph serve [--config FILE] [--SETTING VALUE]... [--check] [--print-config]\n"
          "\n"
          "Runs the server in the foreground: the gateway on --listen (the API on the\n"
          "control host, every service at its own URL), the reconciler and the local\n"
          "driver. Settings come from defaults, then --config FILE (YAML), then\n"
          "EPH_<SETTING> environment variables, then flags (--data-dir, --listen,\n"
          "--port-range, ...: '-' and '_' are the same in flags).\n"
          "\n"
          "  --config FILE        read settings from a YAML file of 'setting: value'\n"
          "  --check              validate the settings and exit\n"
          "  --print-config       print the effective settings and exit\n"
          "  -h, --help           this help\n"
          "\nSettings:\n",
          out);
    config_print_help(out);
}

/* The host pattern is the gateway's to parse, and core may not call it:
 * checked here, with the rest of the settings, before anything starts. */
static int
check_host_pattern(const struct config *cfg, struct eph_err *err)
{
    struct gw_host_pattern p;
    int rc = gw_host_pattern_init(&p, cfg->host_pattern, cfg->domain, err);

    if (rc == 0)
        gw_host_pattern_release(&p);
    return rc;
}

/* Reads settings in precedence order; returns 0, 1 (exit 0 now) or 2 (usage). */
static int
load_settings(struct config *cfg, struct auth_config *ac, int argc, char **argv, bool *check,
              bool *print)
{
    struct eph_err err = {0};
    const char *config_file = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "eph serve: --config needs a file\n");
                return 2;
            }
            config_file = argv[++i];
        }
    }
    if (config_file && (config_load_file(cfg, config_file, &err) < 0 ||
                        auth_config_load_file(ac, config_file, &err) < 0)) {
        fprintf(stderr, "eph serve: %s\n", err.msg);
        return 2;
    }
    if (config_load_environment(cfg, &err) < 0) {
        fprintf(stderr, "eph serve: %s\n", err.msg);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        char key[64];
        const char *arg = argv[i];
        const char *value;

        if (strcmp(arg, "--config") == 0) {
            i++;
            continue;
        }
        if (strcmp(arg, "--check") == 0) {
            *check = true;
            continue;
        }
        if (strcmp(arg, "--print-config") == 0) {
            *print = true;
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || strlen(arg) - 2 >= sizeof(key)) {
            fprintf(stderr, "eph serve: unexpected argument '%s' (see eph serve --help)\n", arg);
            return 2;
        }
        snprintf(key, sizeof(key), "%s", arg + 2);
        char *eq = strchr(key, '=');
        if (eq) {
            *eq = '\0';
            value = arg + 2 + (eq - key) + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "eph serve: %s needs a value\n", arg);
            return 2;
        }
        for (char *p = key; *p; p++) {
            if (*p == '-')
                *p = '_';
        }
        rc = config_set(cfg, key, value, &err);
        if (rc < 0) {
            fprintf(stderr, "eph serve: %s\n", err.msg);
            return 2;
        }
    }
    if (config_validate(cfg, &err) < 0 || check_host_pattern(cfg, &err) < 0) {
        fprintf(stderr, "eph serve: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* Makes the data directory and takes its lock. With `run_as`, environment
 * processes pass through data_dir and envs/ to reach their own directories:
 * both are made with mode 0711 (entered, not listed), and an existing data_dir
 * gains o+x and g+x; the store and the lock are 0600, git/ stays 0700. */
static int
prepare_data_dir(struct server *srv, bool run_as, struct eph_err *err)
{
    char *envs = config_envs_path(&srv->cfg);
    char *git = xasprintf("%s/git", srv->cfg.data_dir);
    char *lock = xasprintf("%s/eph.lock", srv->cfg.data_dir);
    mode_t mode = run_as ? 0711 : 0700;
    struct stat st;
    int rc = fs_mkdir_p(srv->cfg.data_dir, mode);

    if (rc == 0 && run_as && stat(srv->cfg.data_dir, &st) < 0)
        rc = -errno;
    if (rc == 0 && run_as && (st.st_mode & 0011) != 0011 &&
        chmod(srv->cfg.data_dir, (st.st_mode & 07777) | 0011) < 0)
        rc = -errno;
    if (rc == 0)
        rc = fs_mkdir_p(envs, mode);
    if (rc == 0)
        rc = fs_mkdir_p(git, 0700);
    if (rc < 0) {
        eph_err_set(err, rc, "cannot create data directory '%s': %s", srv->cfg.data_dir,
                    eph_strerror(rc));
        goto out;
    }
    srv->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (srv->lock_fd < 0) {
        rc = eph_err_set(err, -errno, "cannot open '%s': %s", lock, strerror(errno));
        goto out;
    }
    if (flock(srv->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        rc = eph_err_set(err, EPH_ECONFLICT, "another eph serve is using data directory '%s'",
                         srv->cfg.data_dir);
        goto out;
    }
out:
    free(envs);
    free(git);
    free(lock);
    return rc;
}

/* This data directory's id, made at the first start; it marks our processes. */
static int
instance_id(struct store *st, char **out, struct eph_err *err)
{
    char hex[17];
    int rc = store_meta_get(st, "instance_id", out, err);

    if (rc != EPH_ENOTFOUND)
        return rc;
    if (auth_random_hex(8, hex) < 0)
        return eph_err_set(err, EPH_EINTERNAL, "no randomness for the instance id");
    rc = store_meta_set(st, "instance_id", hex, err);
    if (rc == 0)
        *out = xstrdup(hex);
    return rc;
}

/* Writes {"server": url, "token": token} at path with mode 0600. */
static int
write_client_config(const char *path, const char *url, const char *token, struct eph_err *err)
{
    char *copy = xstrdup(path);
    json_t *doc = json_pack("{s:s, s:s}", "server", url, "token", token);
    char *text = json_dumps(doc, JSON_INDENT(2));
    int rc = fs_mkdir_p(dirname(copy), 0700);

    if (rc == 0)
        rc = fs_write_atomic(path, text, strlen(text), 0600);
    if (rc < 0)
        eph_err_set(err, rc, "cannot write client config '%s': %s", path, eph_strerror(rc));
    free(text);
    json_decref(doc);
    free(copy);
    return rc;
}

/* The user the first admin token acts for, unless it exists already (an
 * earlier first start that stopped before adding the token). */
static int
add_admin_user(struct store *st, const struct store_actor *actor, struct eph_err *err)
{
    struct user admin = {
        .name = (char *)"admin",
        .role = (char *)"admin",
        .provider = (char *)"local",
    };
    struct user *found = NULL;
    int rc = store_user_get(st, "admin", &found, err);

    user_free(found);
    if (rc == EPH_ENOTFOUND)
        rc = store_user_add(st, &admin, actor, err);
    return rc;
}

/*
 * At the first start (no token at all), creates the admin token, prints it
 * once on stdout, and writes the local user's client config.
 */
static int
first_start(struct server *srv, int port, struct eph_err *err)
{
    const struct store_actor actor = {.name = "system", .source = ""};
    char token[AUTH_TOKEN_MAX], hash[AUTH_HASH_HEX];
    int64_t count = 0, id = 0;
    const char *host = srv->cfg.listen_host;
    char *url;
    int rc = store_token_count(srv->store, &count, err);

    if (rc < 0 || count > 0)
        return rc;
    if (auth_token_generate(token) < 0)
        return eph_err_set(err, EPH_EINTERNAL, "no randomness for the admin token");
    auth_token_hash(token, hash);
    rc = add_admin_user(srv->store, &actor, err);
    if (rc == 0)
        rc = store_token_add(srv->store, "admin", hash, "admin", "admin", 0, &actor, &id, err);
    if (rc < 0)
        return rc;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
        host = "127.0.0.1";
    url = xasprintf("http://%s:%d", host, port);
    printf("admin token: %s\n", token);
    fflush(stdout);
    rc = write_client_config(srv->cfg.client_config, url, token, err);
    if (rc == 0)
        log_info("client config written", "path=%s server=%s", log_q(srv->cfg.client_config), url);
    explicit_bzero(token, sizeof(token));
    free(url);
    return rc;
}

/* ------------------------------------------------------------- routes */

/* FNV-1a over a string and its terminating NUL, so "ab"+"c" != "a"+"bc". */
static uint64_t
sig_str(uint64_t h, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");

    do {
        h ^= *p;
        h *= 1099511628211ULL;
    } while (*p++);
    return h;
}

static uint64_t
sig_int(uint64_t h, int64_t v)
{
    for (int i = 0; i < 8; i++) {
        h ^= (uint64_t)(v >> (i * 8)) & 0xff;
        h *= 1099511628211ULL;
    }
    return h;
}

/* Everything a route table is built from, hashed: equal signatures, equal
 * tables (a collision would only delay a publish to the next change). */
static uint64_t
route_signature(const struct rec_env_view *envs, size_t n)
{
    uint64_t h = sig_int(1469598103934665603ULL, (int64_t)n);

    for (size_t i = 0; i < n; i++) {
        h = sig_str(h, envs[i].name);
        h = sig_int(h, envs[i].phase);
        h = sig_str(h, envs[i].reason);
        h = sig_str(h, envs[i].owner);
        h = sig_int(h, envs[i].visibility);
        h = sig_int(h, envs[i].links_since_ms);
        h = sig_int(h, envs[i].hold_requests);
        h = sig_str(h, envs[i].asleep_message);
        h = sig_int(h, (int64_t)envs[i].n_services);
        for (size_t j = 0; j < envs[i].n_services; j++) {
            const struct rec_svc_view *v = &envs[i].services[j];
            h = sig_str(h, v->name);
            h = sig_str(h, v->upstream_host);
            h = sig_int(h, v->upstream_port);
            h = sig_int(h, v->expose);
            h = sig_int(h, v->state);
        }
    }
    return h;
}

/* Builds a route table from the views and hands it to the gateway. */
static void
publish_routes(struct server *srv, const struct rec_env_view *envs, size_t n, uint64_t signature)
{
    struct gw_route_env_in *in = xcalloc(n + 1, sizeof(*in));
    size_t n_routes = 0;
    struct gw_routes *table;

    for (size_t i = 0; i < n; i++) {
        struct gw_route_service_in *svcs = xcalloc(envs[i].n_services + 1, sizeof(*svcs));

        for (size_t j = 0; j < envs[i].n_services; j++) {
            const struct rec_svc_view *v = &envs[i].services[j];
            svcs[j] = (struct gw_route_service_in){
                .name = v->name,
                .upstream_host = v->upstream_host,
                .upstream_port = v->upstream_port,
                .expose = v->expose,
                .state = v->state,
            };
            n_routes += v->expose;
        }
        in[i] = (struct gw_route_env_in){
            .id = envs[i].id,
            .name = envs[i].name,
            .owner = envs[i].owner,
            .visibility = envs[i].visibility,
            .links_since_ms = envs[i].links_since_ms,
            .phase = envs[i].phase,
            .reason = envs[i].reason,
            .services = svcs,
            .n_services = envs[i].n_services,
            .hold_requests = envs[i].hold_requests,
            .asleep_message = envs[i].asleep_message,
        };
    }
    table = gw_routes_build(in, n, ++srv->routes_version);
    srv->routes_signature = signature;
    gw_publish(srv->gw, table); /* the gateway holds the reference now */
    log_debug("routes published", "version=%" PRIu64 " envs=%zu routes=%zu", srv->routes_version, n,
              n_routes);
    for (size_t i = 0; i < n; i++)
        free((void *)in[i].services);
    free(in);
}

/*
 * The reconciler's observer: runs at the end of each tick, in the tick that
 * recorded a change, so a service that just became healthy is routable
 * before the loop turns again. Publishes only when something changed.
 */
static void
on_reconciled(void *arg, const struct rec_env_view *envs, size_t n)
{
    struct server *srv = arg;
    uint64_t signature;

    if (srv->gw == NULL || srv->stopping)
        return;
    signature = route_signature(envs, n);
    if (srv->routes_version > 0 && signature == srv->routes_signature)
        return;
    publish_routes(srv, envs, n, signature);
}

/* ------------------------------------------------------------- hooks for the API */

static void
service_url(void *arg, const char *service, const char *env, char *out, size_t out_size)
{
    struct server *srv = arg;

    gw_host_url(&srv->pattern, service, env, srv->public_port, out, out_size);
}

static void
gateway_metrics(void *arg, struct buf *out)
{
    struct server *srv = arg;

    if (srv->gw)
        gw_metrics(srv->gw, out);
}

/* ------------------------------------------------------------- sleep */

/* gw_config.on_wake, on a gateway worker thread: notes the environment for
 * the control loop (once however often it is asked before the loop drains
 * the mailbox) and wakes the loop. Never blocks for longer than the lock. */
static void
on_gateway_wake(void *arg, int64_t env_id, const char *service)
{
    struct server *srv = arg;

    uv_mutex_lock(&srv->wake_lock);
    if (!srv->wake_closed) {
        size_t i = 0;

        while (i < srv->n_wake_notes && srv->wake_notes[i].env_id != env_id)
            i++;
        if (i == srv->n_wake_notes && i < SERVE_WAKE_MAILBOX_MAX) {
            srv->wake_notes[i].env_id = env_id;
            snprintf(srv->wake_notes[i].service, sizeof(srv->wake_notes[i].service), "%s",
                     service ? service : "");
            srv->n_wake_notes++;
        }
        /* Under the lock: once closing is marked, nobody sends any more. */
        uv_async_send(&srv->wake_async);
    }
    uv_mutex_unlock(&srv->wake_lock);
}

/* On the control loop: every note in the mailbox becomes a wake request. */
static void
on_wake_async(uv_async_t *a)
{
    struct server *srv = container_of(a, struct server, wake_async);
    struct wake_note notes[SERVE_WAKE_MAILBOX_MAX];
    size_t n;

    uv_mutex_lock(&srv->wake_lock);
    n = srv->n_wake_notes;
    memcpy(notes, srv->wake_notes, n * sizeof(notes[0]));
    srv->n_wake_notes = 0;
    uv_mutex_unlock(&srv->wake_lock);
    for (size_t i = 0; i < n && srv->rec != NULL && !srv->stopping; i++)
        rec_wake_on_request(srv->rec, notes[i].env_id, notes[i].service);
}

/* The mailbox, before the gateway starts (its threads may post at once). */
static void
open_wake_mailbox(struct server *srv)
{
    uv_mutex_init(&srv->wake_lock);
    uv_async_init(&srv->loop, &srv->wake_async, on_wake_async);
    srv->wake_open = true;
}

/* After the gateway stopped (no thread posts any more). */
static void
close_wake_mailbox(struct server *srv)
{
    if (!srv->wake_open)
        return;
    uv_mutex_lock(&srv->wake_lock);
    srv->wake_closed = true;
    uv_mutex_unlock(&srv->wake_lock);
    uv_close((uv_handle_t *)&srv->wake_async, NULL);
}

/* The reconciler's activity source: what the gateway saw of env_id. */
static bool
activity_of(void *arg, int64_t env_id, struct rec_activity *out)
{
    struct server *srv = arg;
    int64_t last_ms = 0;
    int open = 0;

    if (srv->gw == NULL ||
        !gw_activity(srv->gw, env_id, &last_ms, &open, srv->activity_what,
                     sizeof(srv->activity_what)))
        return false;
    out->last_ms = last_ms;
    out->open = open;
    out->what = srv->activity_what;
    return true;
}

/* api_hooks: sleep and wake, what the API shows of them, usage, activity. */
static int
api_sleep(void *arg, int64_t env_id, const struct store_actor *who, struct eph_err *err)
{
    struct server *srv = arg;

    return rec_sleep(srv->rec, env_id, who, err);
}

static int
api_wake(void *arg, int64_t env_id, const struct store_actor *who, struct eph_err *err)
{
    struct server *srv = arg;

    return rec_wake(srv->rec, env_id, who, err);
}

static bool
api_sleep_info(void *arg, int64_t env_id, struct rec_sleep_info *out)
{
    struct server *srv = arg;

    return rec_sleep_info(srv->rec, env_id, out);
}

static void
api_usage(void *arg, int64_t env_id, struct drv_usage *out)
{
    struct server *srv = arg;

    memset(out, 0, sizeof(*out));
    if (srv->driver != NULL && srv->driver->ops->usage != NULL)
        srv->driver->ops->usage(srv->driver, env_id, out);
}

static void
api_note_activity(void *arg, int64_t env_id, const char *what)
{
    struct server *srv = arg;

    rec_note_activity(srv->rec, env_id, time_wall_ms(), what);
}

/* ------------------------------------------------------------- shutdown */

static void
on_driver_closed(void *arg)
{
    struct server *srv = arg;

    close_wake_mailbox(srv);
    uv_close((uv_handle_t *)&srv->auth_upkeep, NULL);
    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
}

static void
on_notifier_closed(void *arg)
{
    struct server *srv = arg;

    srv->notifier = NULL;
    srv->driver->ops->close(srv->driver, on_driver_closed, srv);
    srv->driver = NULL;
}

static void
on_rec_closed(void *arg)
{
    struct server *srv = arg;

    srv->rec = NULL;
    if (srv->notifier) {
        /* The last events (an expiry, a deletion) are in the store: delivered
         * now if the sink answers in time, else after the next start. */
        notifier_close(srv->notifier, on_notifier_closed, srv);
        return;
    }
    srv->driver->ops->close(srv->driver, on_driver_closed, srv);
    srv->driver = NULL;
}

/* Once both the gateway and the API server are closed: the rest. */
static void
on_part_stopped(struct server *srv)
{
    if (--srv->stopping_parts > 0)
        return;
    api_free(srv->api);
    srv->api = NULL;
    rec_close(srv->rec, on_rec_closed, srv);
}

static void
on_http_closed(void *arg)
{
    struct server *srv = arg;

    srv->http = NULL;
    on_part_stopped(srv);
}

static void
on_gateway_stopped(void *arg)
{
    struct server *srv = arg;

    srv->gw = NULL;
    on_part_stopped(srv);
}

static void
on_signal(uv_signal_t *sig, int signum)
{
    struct server *srv = sig->data;

    if (srv->stopping)
        return;
    srv->stopping = true;
    log_info("stopping", "signal=%d grace_ms=%" PRId64, signum, srv->cfg.shutdown_grace_ms);
    /* Both at once: the gateway finishes what is in flight, requests for the
     * API included, which the API server finishes too; streams of followed
     * logs end now rather than at the deadline. */
    srv->stopping_parts = 2;
    gw_stop(srv->gw, &srv->loop, srv->cfg.shutdown_grace_ms, on_gateway_stopped, srv);
    http_server_close(srv->http, on_http_closed, srv);
}

/* ------------------------------------------------------------- main */

/* The key that signs tickets, host cookies and share links: random at the
 * first start, kept in the store so that cookies and links outlive a restart. */
static int
load_auth_key(struct server *srv, struct eph_err *err)
{
    char *hex = NULL;
    char fresh[2 * AUTH_KEY_BYTES + 1];
    int rc = store_meta_get(srv->store, "auth_key", &hex, err);

    if (rc == EPH_ENOTFOUND) {
        if (auth_random_hex(AUTH_KEY_BYTES, fresh) < 0)
            return eph_err_set(err, EPH_EINTERNAL, "no randomness for the signing key");
        rc = store_meta_set(srv->store, "auth_key", fresh, err);
        if (rc < 0)
            return rc;
        hex = xstrdup(fresh);
        OPENSSL_cleanse(fresh, sizeof(fresh));
    } else if (rc < 0) {
        return rc;
    }
    if (strlen(hex) != 2 * AUTH_KEY_BYTES) {
        free(hex);
        return eph_err_set(err, EPH_ESTORE, "the stored signing key is damaged");
    }
    for (size_t i = 0; i < AUTH_KEY_BYTES; i++) {
        unsigned int byte;

        if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
            free(hex);
            return eph_err_set(err, EPH_ESTORE, "the stored signing key is damaged");
        }
        srv->auth_key[i] = (unsigned char)byte;
    }
    OPENSSL_cleanse(hex, strlen(hex));
    free(hex);
    return 0;
}

/* The ":port" at the end of an authority ("" when it has none). */
static const char *
authority_port(const char *auth, size_t len, size_t *port_len)
{
    for (size_t i = len; i > 0; i--) {
        if (auth[i - 1] == ':') {
            *port_len = len - i + 1;
            return auth + i - 1;
        }
        if (auth[i - 1] < '0' || auth[i - 1] > '9')
            break;
    }
    *port_len = 0;
    return "";
}

/* api_hooks.host_ours: a service host of the pattern, on the port of the
 * sign-in base (another port of the same name is another program; the
 * control host itself is matched against the base by the caller). */
static bool
host_ours(void *arg, const char *host, size_t len)
{
    struct server *srv = arg;
    const char *svc, *env, *base, *want, *have;
    size_t svc_len, env_len, want_len, have_len;

    if (gw_host_classify(&srv->pattern, host, len, &svc, &svc_len, &env, &env_len) !=
        GW_HOST_SERVICE)
        return false;
    base = strstr(gw_signin_base(srv->gw), "://");
    base = base ? base + 3 : gw_signin_base(srv->gw);
    want = authority_port(base, strcspn(base, "/"), &want_len);
    have = authority_port(host, len, &have_len);
    return want_len == have_len && memcmp(want, have, want_len) == 0;
}

static void
on_auth_upkeep(uv_timer_t *t)
{
    struct server *srv = t->data;

    if (srv->api)
        api_auth_upkeep(srv->api);
}

/* Sign-in for the API and the gateway: the index loaded from the store. */
static int
start_auth(struct server *srv, struct eph_err *err)
{
    struct api_auth aa = {
        .ix = srv->auth_ix,
        .key = srv->auth_key,
        .ac = &srv->ac,
        .public_base = gw_signin_base(srv->gw),
    };
    int rc;

    api_set_auth(srv->api, &aa);
    rc = api_auth_load(srv->api, err);
    if (rc < 0)
        return rc;
    uv_timer_init(&srv->loop, &srv->auth_upkeep);
    srv->auth_upkeep.data = srv;
    uv_timer_start(&srv->auth_upkeep, on_auth_upkeep, SERVE_AUTH_UPKEEP_MS, SERVE_AUTH_UPKEEP_MS);
    return 0;
}

static void
kick_reconciler(void *arg)
{
    struct server *srv = arg;

    if (srv->rec)
        rec_kick(srv->rec);
}

static void
nothing_to_do(void *arg)
{
    (void)arg;
}

/* Opens the access log the settings name: "" none, "-" stderr, else a file
 * appended to, line by line so that a tail -f sees each request at once. */
static int
open_access_log(struct server *srv, struct eph_err *err)
{
    const char *path = srv->cfg.access_log;

    if (path == NULL || path[0] == '\0')
        return 0;
    if (strcmp(path, "-") == 0) {
        srv->access_log = stderr;
        return 0;
    }
    srv->access_log = fopen(path, "ae");
    if (srv->access_log == NULL)
        return eph_err_set(err, -errno, "cannot open access log '%s': %s", path, strerror(errno));
    setvbuf(srv->access_log, NULL, _IOLBF, 0);
    srv->access_log_owned = true;
    return 0;
}

/* The API's HTTP server, on loopback and a free port: only the gateway uses it. */
static int
start_api_server(struct server *srv, struct eph_err *err)
{
    int64_t idle_ms = srv->cfg.upstream_idle_timeout_ms + SERVE_API_IDLE_MARGIN_MS;
    struct http_server_config hc = {
        .loop = &srv->loop,
        .host = SERVE_API_HOST,
        .port = 0,
        .max_header_bytes = (size_t)srv->cfg.max_header_bytes + SERVE_FORWARD_HEADROOM_BYTES,
        .max_body_bytes = (size_t)srv->cfg.max_body_bytes,
        .header_timeout_ms = srv->cfg.header_timeout_ms,
        .idle_timeout_ms = idle_ms > srv->cfg.idle_timeout_ms ? idle_ms : srv->cfg.idle_timeout_ms,
        .max_connections = (int)srv->cfg.max_connections,
        .handler = api_handle,
        .handler_arg = srv->api,
    };
    struct api_hooks hooks = {
        .service_url = service_url,
        .metrics = gateway_metrics,
        .arg = srv,
        .behind_gateway = true,
        .host_ours = host_ours,
        .sleep = api_sleep,
        .wake = api_wake,
        .sleep_info = api_sleep_info,
        .usage = api_usage,
        .note_activity = api_note_activity,
    };

    api_set_hooks(srv->api, &hooks);
    return http_server_start(&hc, &srv->http, err);
}

static int
start_gateway(struct server *srv, struct eph_err *err)
{
    int workers = (int)srv->cfg.gateway_workers;
    struct gw_config gc = {
        .listen_host = srv->cfg.listen_host,
        .listen_port = srv->cfg.listen_port,
        .host_pattern = srv->cfg.host_pattern,
        .domain = srv->cfg.domain,
        .control_host = SERVE_API_HOST,
        .control_port = http_server_port(srv->http),
        .max_header_bytes = (size_t)srv->cfg.max_header_bytes,
        .header_timeout_ms = srv->cfg.header_timeout_ms,
        .idle_timeout_ms = srv->cfg.idle_timeout_ms,
        .connect_timeout_ms = srv->cfg.upstream_connect_timeout_ms,
        .first_byte_timeout_ms = srv->cfg.upstream_first_byte_timeout_ms,
        .upstream_idle_ms = srv->cfg.upstream_idle_timeout_ms,
        .upstream_keepalive = srv->cfg.upstream_keepalive > 0 ? (int)srv->cfg.upstream_keepalive : -1,
        .max_connections = (int)srv->cfg.max_connections,
        .access_log = srv->access_log,
        .auth_ix = srv->cfg.auth_on ? srv->auth_ix : NULL,
        .auth_key = srv->auth_key,
        .wake_timeout_ms = srv->cfg.wake_timeout_ms,
        .wake_queue = (int)srv->cfg.wake_queue,
        .on_wake = on_gateway_wake,
        .on_wake_arg = srv,
    };
    char base[320];
    int rc;

    if (srv->cfg.public_url_port > 0) {
        if (srv->cfg.public_url_port == 80)
            snprintf(base, sizeof(base), "http://%s", srv->cfg.domain);
        else
            snprintf(base, sizeof(base), "http://%s:%d", srv->cfg.domain,
                     (int)srv->cfg.public_url_port);
        gc.signin_base = base;
    }
    gc.workers = workers > 0 ? workers : (int)uv_available_parallelism();
    open_wake_mailbox(srv);
    rc = gw_start(&gc, &srv->gw, err);
    if (rc < 0)
        return rc;
    srv->public_port =
        srv->cfg.public_url_port > 0 ? (int)srv->cfg.public_url_port : gw_port(srv->gw);
    srv->workers = gc.workers;
    return 0;
}

/* Closes what a failed start opened, with the loop, before anything ran. */
static void
abandon_start(struct server *srv)
{
    if (srv->gw) {
        gw_stop(srv->gw, &srv->loop, 0, nothing_to_do, NULL);
        srv->gw = NULL;
    }
    if (srv->http)
        http_server_close(srv->http, nothing_to_do, NULL);
    if (srv->api)
        api_free(srv->api);
    if (srv->rec)
        rec_close(srv->rec, nothing_to_do, NULL);
    if (srv->driver)
        srv->driver->ops->close(srv->driver, nothing_to_do, NULL);
    close_wake_mailbox(srv); /* the gateway's threads are joined by now */
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    uv_loop_close(&srv->loop);
}

static int
run(struct server *srv, struct eph_err *err)
{
    char *db = config_store_path(&srv->cfg);
    char *envs = config_envs_path(&srv->cfg);
    char *instance = NULL;
    enum log_level level = LOG_LEVEL_INFO;
    /* Root runs environment processes as run_as; anyone else as itself. */
    bool drop = geteuid() == 0;
    struct local_run_as run_as = {0};
    int rc;

    log_level_parse(srv->cfg.log_level, &level);
    log_set_level(level);
    rc = gw_host_pattern_init(&srv->pattern, srv->cfg.host_pattern, srv->cfg.domain, err);
    if (rc == 0 && drop)
        rc = local_run_as_resolve(srv->cfg.run_as, &run_as, err);
    if (rc == 0)
        rc = open_access_log(srv, err);
    if (rc == 0)
        rc = prepare_data_dir(srv, drop, err);
    if (rc == 0 && drop)
        rc = local_check_run_as_access(srv->cfg.data_dir, &run_as, err);
    if (rc == 0)
        rc = store_open(db, &srv->store, err);
    if (rc == 0)
        rc = instance_id(srv->store, &instance, err);
    if (rc == 0)
        rc = load_auth_key(srv, err);
    if (rc < 0)
        goto out;
    srv->auth_ix = auth_index_new(srv->cfg.session_idle_s * 1000);
    uv_loop_init(&srv->loop);
    struct local_config lc = {
        .loop = &srv->loop,
        .envs_dir = envs,
        .instance_id = instance,
        .stop_grace_ms = srv->cfg.stop_grace_ms,
        .kick = kick_reconciler,
        .kick_arg = srv,
        .run_as = drop ? &run_as : NULL,
        .cgroup_root = srv->cfg.cgroup_root,
    };
    rc = local_driver_new(&lc, &srv->driver, err);
    if (rc == 0)
        rc = rec_new(&srv->loop, srv->store, srv->driver, &srv->cfg, &srv->rec, err);
    if (rc == 0)
        rc = api_new(&srv->loop, srv->store, srv->rec, &srv->cfg, &srv->api, err);
    if (rc == 0)
        rc = start_api_server(srv, err);
    if (rc == 0)
        rc = start_gateway(srv, err);
    if (rc == 0)
        rc = first_start(srv, gw_port(srv->gw), err);
    if (rc == 0)
        rc = start_auth(srv, err);
    if (rc == 0 && srv->ac.n_sinks > 0)
        rc = notifier_new(&srv->loop, srv->store, srv->ac.sinks, srv->ac.n_sinks, &srv->notifier,
                          err);
    if (rc < 0) {
        abandon_start(srv); /* nothing has run yet */
        goto out;
    }
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    log_info("server started",
             "listen=%s:%d workers=%d api=%s:%d public_port=%d data_dir=%s instance=%s",
             srv->cfg.listen_host, gw_port(srv->gw), srv->workers, SERVE_API_HOST,
             http_server_port(srv->http), srv->public_port, log_q(srv->cfg.data_dir), instance);
    rec_set_observer(srv->rec, on_reconciled, srv);
    rec_set_activity_source(srv->rec, activity_of, srv);
    rec_start(srv->rec);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&srv->loop) != 0)
        log_warn("handles left open at exit");
    log_info("server stopped");
out:
    if (srv->access_log_owned)
        fclose(srv->access_log);
    gw_host_pattern_release(&srv->pattern);
    auth_index_free(srv->auth_ix);
    OPENSSL_cleanse(srv->auth_key, sizeof(srv->auth_key));
    store_close(srv->store);
    if (srv->wake_open)
        uv_mutex_destroy(&srv->wake_lock);
    local_run_as_release(&run_as);
    free(instance);
    free(envs);
    free(db);
    return rc;
}

int
serve_main(int argc, char **argv)
{
    struct server srv = {.lock_fd = -1};
    struct eph_err err = {0};
    bool check = false, print = false;
    int rc;

    signal(SIGPIPE, SIG_IGN);
    /* A password check (argon2id) takes 19 MiB for a moment. glibc would
     * raise its mmap threshold after the first such buffer is freed and keep
     * later ones in the heap for good; a fixed threshold hands them back. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    /* Before any thread: sign-in's and notifications' libcurl calls run on
     * the thread pool. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "eph serve: cannot initialise libcurl\n");
        return 1;
    }
    config_init(&srv.cfg);
    auth_config_init(&srv.ac);
    rc = load_settings(&srv.cfg, &srv.ac, argc, argv, &check, &print);
    if (rc != 0) {
        auth_config_release(&srv.ac);
        config_release(&srv.cfg);
        return rc == 1 ? 0 : 2;
    }
    if (print)
        config_print(&srv.cfg, stdout);
    if (check || print) {
        if (check)
            printf("settings are valid\n");
        auth_config_release(&srv.ac);
        config_release(&srv.cfg);
        return 0;
    }
    rc = run(&srv, &err);
    if (rc < 0)
        fprintf(stderr, "eph serve: %s\n", err.msg);
    if (srv.lock_fd >= 0)
        close(srv.lock_fd);
    auth_config_release(&srv.ac);
    config_release(&srv.cfg);
    curl_global_cleanup();
    return rc < 0 ? 1 : 0;
}
