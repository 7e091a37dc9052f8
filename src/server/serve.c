/*
 * server/serve.c - `eph serve`: settings, the data directory, first-start
 * admin token, and the control loop with everything on it.
 *
 * Shutdown (SIGTERM/SIGINT) stops accepting, lets in-flight requests finish,
 * closes every handle and exits; environments keep running and are adopted
 * by the next start, so upgrading the server does not take them down.
 */
#include "server/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
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
#include "gateway/http_server.h"
#include "reconciler/reconciler.h"
#include "store/store.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/xmalloc.h"

#define SERVE_HEADER_TIMEOUT_MS 10000
#define SERVE_IDLE_TIMEOUT_MS 60000
#define SERVE_MAX_HEADER_BYTES (16 * 1024)

struct server {
    struct config cfg;
    uv_loop_t loop;
    uv_signal_t sigterm, sigint;
    struct store *store;
    struct driver *driver;
    struct reconciler *rec;
    struct api *api;
    struct http_server *http;
    int lock_fd;          /* flock on data_dir/eph.lock: one server per data dir */
    bool stopping;
};

static void
usage(FILE *out)
{
    fputs("usage: eph serve [--config FILE] [--SETTING VALUE]... [--check] [--print-config]\n"
          "\n"
          "Runs the server: the REST API, the reconciler and the local driver, in the\n"
          "foreground. Settings come from defaults, then --config FILE (YAML), then\n"
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

/* Reads settings in precedence order; returns 0, 1 (exit 0 now) or 2 (usage). */
static int
load_settings(struct config *cfg, int argc, char **argv, bool *check, bool *print)
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
    if (config_file && config_load_file(cfg, config_file, &err) < 0) {
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
    if (config_validate(cfg, &err) < 0) {
        fprintf(stderr, "eph serve: %s\n", err.msg);
        return 2;
    }
    return 0;
}

/* Makes the data directory and takes its lock. */
static int
prepare_data_dir(struct server *srv, struct eph_err *err)
{
    char *envs = config_envs_path(&srv->cfg);
    char *git = xasprintf("%s/git", srv->cfg.data_dir);
    char *lock = xasprintf("%s/eph.lock", srv->cfg.data_dir);
    int rc = fs_mkdir_p(srv->cfg.data_dir, 0700);

    if (rc == 0)
        rc = fs_mkdir_p(envs, 0700);
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
        rc = eph_err_set(err, EPH_ECONFLICT,
                         "another eph serve is using data directory '%s'", srv->cfg.data_dir);
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
    rc = store_token_add(srv->store, "admin", hash, "admin", 0, &actor, &id, err);
    if (rc < 0)
        return rc;
    if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "") == 0)
        host = "127.0.0.1";
    url = xasprintf("http://%s:%d", host, port);
    printf("admin token: %s\n", token);
    fflush(stdout);
    rc = write_client_config(srv->cfg.client_config, url, token, err);
    if (rc == 0)
        log_info("client config written", "path=%s server=%s", log_q(srv->cfg.client_config),
                 url);
    explicit_bzero(token, sizeof(token));
    free(url);
    return rc;
}

/* ------------------------------------------------------------- shutdown */

static void
on_driver_closed(void *arg)
{
    struct server *srv = arg;

    uv_close((uv_handle_t *)&srv->sigterm, NULL);
    uv_close((uv_handle_t *)&srv->sigint, NULL);
}

static void
on_rec_closed(void *arg)
{
    struct server *srv = arg;

    srv->rec = NULL;
    srv->driver->ops->close(srv->driver, on_driver_closed, srv);
    srv->driver = NULL;
}

static void
on_http_closed(void *arg)
{
    struct server *srv = arg;

    srv->http = NULL;
    api_free(srv->api);
    srv->api = NULL;
    rec_close(srv->rec, on_rec_closed, srv);
}

static void
on_signal(uv_signal_t *sig, int signum)
{
    struct server *srv = sig->data;

    if (srv->stopping)
        return;
    srv->stopping = true;
    log_info("stopping", "signal=%d", signum);
    http_server_close(srv->http, on_http_closed, srv);
}

/* ------------------------------------------------------------- main */

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

static int
run(struct server *srv, struct eph_err *err)
{
    char *db = config_store_path(&srv->cfg);
    char *envs = config_envs_path(&srv->cfg);
    char *instance = NULL;
    enum log_level level = LOG_LEVEL_INFO;
    int rc;

    log_level_parse(srv->cfg.log_level, &level);
    log_set_level(level);
    rc = prepare_data_dir(srv, err);
    if (rc == 0)
        rc = store_open(db, &srv->store, err);
    if (rc == 0)
        rc = instance_id(srv->store, &instance, err);
    if (rc < 0)
        goto out;
    uv_loop_init(&srv->loop);
    struct local_config lc = {
        .loop = &srv->loop,
        .envs_dir = envs,
        .instance_id = instance,
        .stop_grace_ms = srv->cfg.stop_grace_ms,
        .kick = kick_reconciler,
        .kick_arg = srv,
    };
    rc = local_driver_new(&lc, &srv->driver, err);
    if (rc == 0)
        rc = rec_new(&srv->loop, srv->store, srv->driver, &srv->cfg, &srv->rec, err);
    if (rc == 0)
        rc = api_new(&srv->loop, srv->store, srv->rec, &srv->cfg, &srv->api, err);
    if (rc == 0) {
        struct http_server_config hc = {
            .loop = &srv->loop,
            .host = srv->cfg.listen_host,
            .port = srv->cfg.listen_port,
            .max_header_bytes = SERVE_MAX_HEADER_BYTES,
            .max_body_bytes = (size_t)srv->cfg.max_body_bytes,
            .header_timeout_ms = SERVE_HEADER_TIMEOUT_MS,
            .idle_timeout_ms = SERVE_IDLE_TIMEOUT_MS,
            .handler = api_handle,
            .handler_arg = srv->api,
        };
        rc = http_server_start(&hc, &srv->http, err);
    }
    if (rc == 0)
        rc = first_start(srv, http_server_port(srv->http), err);
    if (rc < 0) {
        /* Nothing has run yet: close what was opened and leave. */
        if (srv->http)
            http_server_close(srv->http, nothing_to_do, NULL);
        if (srv->api)
            api_free(srv->api);
        if (srv->rec)
            rec_close(srv->rec, nothing_to_do, NULL);
        if (srv->driver)
            srv->driver->ops->close(srv->driver, nothing_to_do, NULL);
        uv_run(&srv->loop, UV_RUN_DEFAULT);
        uv_loop_close(&srv->loop);
        goto out;
    }
    uv_signal_init(&srv->loop, &srv->sigterm);
    uv_signal_init(&srv->loop, &srv->sigint);
    srv->sigterm.data = srv->sigint.data = srv;
    uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
    uv_signal_start(&srv->sigint, on_signal, SIGINT);
    log_info("server started", "listen=%s:%d data_dir=%s instance=%s", srv->cfg.listen_host,
             http_server_port(srv->http), log_q(srv->cfg.data_dir), instance);
    rec_start(srv->rec);
    uv_run(&srv->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&srv->loop) != 0)
        log_warn("handles left open at exit");
    log_info("server stopped");
out:
    store_close(srv->store);
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
    config_init(&srv.cfg);
    rc = load_settings(&srv.cfg, argc, argv, &check, &print);
    if (rc != 0) {
        config_release(&srv.cfg);
        return rc == 1 ? 0 : 2;
    }
    if (print)
        config_print(&srv.cfg, stdout);
    if (check || print) {
        if (check)
            printf("settings are valid\n");
        config_release(&srv.cfg);
        return 0;
    }
    rc = run(&srv, &err);
    if (rc < 0)
        fprintf(stderr, "eph serve: %s\n", err.msg);
    if (srv.lock_fd >= 0)
        close(srv.lock_fd);
    config_release(&srv.cfg);
    return rc < 0 ? 1 : 0;
}
