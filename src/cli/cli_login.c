/*
 * cli/cli_login.c - signing in and out: `eph login` (with a token, or in a
 * browser through a loopback callback), `eph logout` and `eph whoami`.
 *
 * Browser sign-in (docs/auth.md, "eph login"): the CLI listens on 127.0.0.1
 * on a port the kernel picks, asks the person to open the server's
 * /auth/cli?port=P&state=S page, and waits for the browser to be sent back
 * to http://127.0.0.1:P/callback?token=T&state=S. The state is 128 random
 * bits known only to this process and the page it printed: a request
 * without it (another local user, a web page probing ports) is answered 400
 * and ignored, so the token that arrives with the state is the one the
 * person allowed. The token is checked with GET /whoami before the browser
 * is told it worked, and only then saved.
 */
#include "cli/cli_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util/time.h"
#include "util/xmalloc.h"

#define LOGIN_TIMEOUT_MS (5 * 60 * 1000) /* how long the person has to sign in */
#define CONN_TIMEOUT_MS 10000            /* a connection must send its request head by then */
#define MAX_CONNS 8          /* browsers open spare connections; more wait in the backlog */
#define MAX_HEAD_BYTES 8192  /* a request head; a callback's is well under 1 KiB */
#define SEND_TIMEOUT_MS 2000 /* writing our answer of a few hundred bytes */

extern char **environ;

/* ------------------------------------------------------------- state and callback (pure) */

int
cli__state_new(char out[CLI_STATE_HEX_LEN + 1], struct eph_err *err)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char bytes[CLI_STATE_BYTES];

    if (RAND_bytes(bytes, (int)sizeof(bytes)) != 1)
        return eph_err_set(err, EPH_EINTERNAL, "cannot get random bytes for the sign-in state");
    for (size_t i = 0; i < sizeof(bytes); i++) {
        out[2 * i] = hex[bytes[i] >> 4];
        out[2 * i + 1] = hex[bytes[i] & 15];
    }
    out[CLI_STATE_HEX_LEN] = '\0';
    return 0;
}

bool
cli__state_equal(const char *want, const char *got)
{
    size_t len = strlen(want);

    /* The length is no secret (always CLI_STATE_HEX_LEN); the content is. */
    if (got == NULL || strlen(got) != len)
        return false;
    return CRYPTO_memcmp(want, got, len) == 0;
}

static int
hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
cli__percent_decode(const char *s, size_t len, char **out)
{
    char *buf = xmalloc(len + 1);
    char *w = buf;

    *out = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];

        if (c == '%') {
            int hi = i + 2 < len ? hex_value(s[i + 1]) : -1;
            int lo = i + 2 < len ? hex_value(s[i + 2]) : -1;

            if (hi < 0 || lo < 0)
                goto bad;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (c == '\0')
            goto bad;
        *w++ = c;
    }
    *w = '\0';
    *out = buf;
    return 0;
bad:
    free(buf);
    return EPH_EINVAL;
}

void
cli__callback_release(struct cli_callback *cb)
{
    if (cb->token)
        OPENSSL_cleanse(cb->token, strlen(cb->token));
    free(cb->token);
    free(cb->state);
    free(cb->error);
    memset(cb, 0, sizeof(*cb));
}

/* The field of *cb that query key key[0..len) fills, or NULL for a key we ignore. */
static char **
callback_slot(struct cli_callback *cb, const char *key, size_t len)
{
    if (len == 5 && memcmp(key, "token", 5) == 0)
        return &cb->token;
    if (len == 5 && memcmp(key, "state", 5) == 0)
        return &cb->state;
    if (len == 5 && memcmp(key, "error", 5) == 0)
        return &cb->error;
    return NULL;
}

int
cli__callback_parse(const char *line, size_t len, struct cli_callback *cb)
{
    static const char path[] = "/callback";
    const char *end = line + len;
    const char *method_end, *target, *target_end, *query, *path_end;

    memset(cb, 0, sizeof(*cb));
    method_end = memchr(line, ' ', len);
    if (method_end == NULL || method_end == line)
        return EPH_EINVAL;
    target = method_end + 1;
    target_end = memchr(target, ' ', (size_t)(end - target));
    if (target_end == NULL || target_end == target || end - (target_end + 1) < 5 ||
        memcmp(target_end + 1, "HTTP/", 5) != 0)
        return EPH_EINVAL;
    if (method_end - line != 3 || memcmp(line, "GET", 3) != 0)
        return EPH_ENOTFOUND;
    query = memchr(target, '?', (size_t)(target_end - target));
    path_end = query ? query : target_end;
    if ((size_t)(path_end - target) != sizeof(path) - 1 ||
        memcmp(target, path, sizeof(path) - 1) != 0)
        return EPH_ENOTFOUND;
    if (query == NULL)
        return 0;
    for (const char *p = query + 1; p < target_end;) {
        const char *amp = memchr(p, '&', (size_t)(target_end - p));
        const char *pair_end = amp ? amp : target_end;
        const char *eq = memchr(p, '=', (size_t)(pair_end - p));
        const char *key_end = eq ? eq : pair_end;
        char **slot = callback_slot(cb, p, (size_t)(key_end - p));

        if (slot) {
            const char *value = eq ? eq + 1 : pair_end;

            if (*slot != NULL) /* two states: which one would we check? */
                return EPH_EINVAL;
            if (cli__percent_decode(value, (size_t)(pair_end - value), slot) < 0)
                return EPH_EINVAL;
        }
        p = amp ? amp + 1 : target_end;
    }
    return 0;
}

/* ------------------------------------------------------------- the loopback listener */

struct conn {
    int fd;              /* -1: a free slot */
    size_t len;          /* bytes of head[] received so far */
    int64_t deadline_ms; /* monotonic: closed if its request head is not in by then */
    char head[MAX_HEAD_BYTES];
};

struct loopback {
    int listen_fd;
    int port; /* the kernel's choice, 1024..65535 in practice */
    struct conn conns[MAX_CONNS];
};

static void
conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        shutdown(c->fd, SHUT_WR); /* our answer first, then the end: no reset */
        close(c->fd);
    }
    c->fd = -1;
    c->len = 0;
}

static void
loopback_close(struct loopback *lb)
{
    for (size_t i = 0; i < MAX_CONNS; i++)
        conn_close(&lb->conns[i]);
    if (lb->listen_fd >= 0)
        close(lb->listen_fd);
    lb->listen_fd = -1;
}

static int
loopback_open(struct loopback *lb, struct eph_err *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t addr_len = sizeof(addr);
    int rc;

    for (size_t i = 0; i < MAX_CONNS; i++)
        lb->conns[i].fd = -1;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    lb->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lb->listen_fd < 0 || bind(lb->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        listen(lb->listen_fd, 16) < 0 ||
        getsockname(lb->listen_fd, (struct sockaddr *)&addr, &addr_len) < 0) {
        rc = -errno;
        loopback_close(lb);
        return eph_err_set(err, rc, "cannot listen on 127.0.0.1 for the browser: %s",
                           strerror(-rc));
    }
    lb->port = ntohs(addr.sin_port);
    return 0;
}

static const char *
status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 431: return "Request Header Fields Too Large";
    default: return "Internal Server Error";
    }
}

/* Copies `s` with &, <, >, " and ' escaped for HTML. */
static char *
html_escape(const char *s)
{
    char *out = xmalloc(strlen(s) * 6 + 1);
    char *w = out;

    for (; *s; s++) {
        const char *rep = NULL;

        switch (*s) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&quot;"; break;
        case '\'': rep = "&#39;"; break;
        default: *w++ = *s; continue;
        }
        memcpy(w, rep, strlen(rep));
        w += strlen(rep);
    }
    *w = '\0';
    return out;
}

/*
 * Sends a small HTML page and closes the connection. `text` is HTML already
 * (escape what came from outside). Best effort: a browser that went away
 * misses the page, nothing else.
 */
static void
answer(struct conn *c, int status, const char *title, const char *text)
{
    char *body = xasprintf("<!doctype html>\n<html><head><meta charset=\"utf-8\">"
                           "<title>%s</title></head>\n"
                           "<body style=\"font-family:sans-serif;margin:3em auto;max-width:36em\">"
                           "<h1>%s</h1>\n<p>%s</p></body></html>\n",
                           title, title, text);
    char *msg =
        xasprintf("HTTP/1.1 %d %s\r\n"
                  "Content-Type: text/html; charset=utf-8\r\n"
                  "Content-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n"
                  "Referrer-Policy: no-referrer\r\n"
                  "X-Content-Type-Options: nosniff\r\n"
                  "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
                  "Connection: close\r\n\r\n%s",
                  status, status_text(status), strlen(body), body);
    size_t len = strlen(msg), sent = 0;
    int64_t deadline_ms = time_mono_ms() + SEND_TIMEOUT_MS;

    while (sent < len) {
        ssize_t n = send(c->fd, msg + sent, len - sent, MSG_NOSIGNAL);
        struct pollfd pfd = {.fd = c->fd, .events = POLLOUT};
        int64_t left_ms = deadline_ms - time_mono_ms();

        if (n > 0) {
            sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            break;
        if (left_ms <= 0 || poll(&pfd, 1, (int)left_ms) == 0)
            break;
    }
    free(msg);
    free(body);
    conn_close(c);
}

static void
accept_new(struct loopback *lb)
{
    for (size_t i = 0; i < MAX_CONNS; i++) {
        struct conn *c = &lb->conns[i];

        if (c->fd >= 0)
            continue;
        c->fd = accept4(lb->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        c->len = 0;
        c->deadline_ms = time_mono_ms() + CONN_TIMEOUT_MS;
        return;
    }
}

/*
 * Reads what arrived on c and, once its request head is complete, answers
 * everything but a callback with our state. Returns EPH_EAGAIN to keep
 * waiting; 0 with the token in *token when the callback came (c stays open
 * for the caller to answer); or an error for people when the callback
 * carried our state but no usable token (c has been answered).
 */
static int
conn_read(struct conn *c, const char *state, char **token, struct eph_err *err)
{
    struct cli_callback cb;
    ssize_t n = recv(c->fd, c->head + c->len, sizeof(c->head) - c->len, 0);
    const char *head_end, *line_end;
    int rc = EPH_EAGAIN;

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return EPH_EAGAIN;
    if (n <= 0) {
        conn_close(c);
        return EPH_EAGAIN;
    }
    c->len += (size_t)n;
    head_end = memmem(c->head, c->len, "\r\n\r\n", 4);
    if (head_end == NULL)
        head_end = memmem(c->head, c->len, "\n\n", 2);
    if (head_end == NULL) {
        if (c->len == sizeof(c->head))
            answer(c, 431, "Request too large", "This request is too large.");
        return EPH_EAGAIN;
    }
    line_end = memchr(c->head, '\n', c->len);
    if (line_end > c->head && line_end[-1] == '\r')
        line_end--;
    switch (cli__callback_parse(c->head, (size_t)(line_end - c->head), &cb)) {
    case 0: break;
    case EPH_ENOTFOUND:
        answer(c, 404, "Not found", "This address only takes the sign-in callback of eph login.");
        goto out;
    default: answer(c, 400, "Bad request", "This sign-in callback is malformed."); goto out;
    }
    if (!cli__state_equal(state, cb.state)) {
        /* Not ours (an old tab, another eph login, a probe): keep waiting. */
        answer(c, 400, "Wrong sign-in attempt",
               "This sign-in link is not the one eph login is waiting for. Run "
               "<code>eph login</code> again and open the link it prints.");
    } else if (cb.error) {
        char *clean = cli__sanitize(cb.error);

        answer(c, 403, "Sign-in refused",
               "The command line was not allowed to sign in. You can close this tab.");
        rc = eph_err_set(err, EPH_EPERM, "the sign-in was refused in the browser: %s", clean);
        free(clean);
    } else if (cb.token == NULL) {
        answer(c, 400, "No token", "The server sent no token. Run eph login again.");
        rc = eph_err_set(err, EPH_EINVAL, "the browser's callback carried no token");
    } else if (cli__token_check(cb.token, "the browser's callback", err) < 0) {
        answer(c, 400, "No token", "The server sent no usable token. Run eph login again.");
        rc = err->code;
    } else {
        *token = cb.token; /* c stays open: the caller answers once the token is checked */
        cb.token = NULL;
        rc = 0;
    }
out:
    cli__callback_release(&cb);
    return rc;
}

/*
 * Waits until deadline_ms (monotonic) for the callback that carries `state`.
 * Returns 0 with the token in *token (the caller frees it) and the
 * connection still open in *winner, EPH_ETIMEDOUT, or an error for people.
 */
static int
loopback_wait(struct loopback *lb, const char *state, int64_t deadline_ms, char **token,
              struct conn **winner, struct eph_err *err)
{
    *token = NULL;
    *winner = NULL;
    for (;;) {
        struct pollfd pfds[MAX_CONNS + 1];
        struct conn *owners[MAX_CONNS + 1]; /* NULL for the listener */
        nfds_t n = 0;
        int64_t now_ms = time_mono_ms();
        int64_t wake_ms = deadline_ms;
        bool room = false;
        int ready;

        if (now_ms >= deadline_ms)
            return eph_err_set(err, EPH_ETIMEDOUT, "no sign-in from the browser after 5m");
        for (size_t i = 0; i < MAX_CONNS; i++) {
            struct conn *c = &lb->conns[i];

            if (c->fd >= 0 && now_ms >= c->deadline_ms)
                conn_close(c); /* a spare connection the browser never used */
            if (c->fd < 0) {
                room = true;
                continue;
            }
            if (c->deadline_ms < wake_ms)
                wake_ms = c->deadline_ms;
            pfds[n] = (struct pollfd){.fd = c->fd, .events = POLLIN};
            owners[n++] = c;
        }
        if (room) {
            pfds[n] = (struct pollfd){.fd = lb->listen_fd, .events = POLLIN};
            owners[n++] = NULL;
        }
        ready = poll(pfds, n, (int)(wake_ms - now_ms));
        if (ready < 0 && errno != EINTR)
            return eph_err_set(err, -errno, "cannot wait for the browser: %s", strerror(errno));
        for (nfds_t i = 0; ready > 0 && i < n; i++) {
            int rc;

            if (pfds[i].revents == 0)
                continue;
            if (owners[i] == NULL) {
                accept_new(lb);
                continue;
            }
            rc = conn_read(owners[i], state, token, err);
            if (rc == EPH_EAGAIN)
                continue;
            if (rc == 0)
                *winner = owners[i];
            return rc;
        }
    }
}

/* Starts xdg-open on `url` when there is a graphical session; never waits for it. */
static pid_t
open_browser(const char *url)
{
    char *argv[] = {"xdg-open", (char *)url, NULL};
    posix_spawn_file_actions_t fa;
    pid_t pid = -1;

    if (cli__env_value("DISPLAY") == NULL && cli__env_value("WAYLAND_DISPLAY") == NULL)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    if (posix_spawnp(&pid, "xdg-open", &fa, NULL, argv, environ) != 0)
        pid = -1; /* no xdg-open: the person opens the printed URL */
    posix_spawn_file_actions_destroy(&fa);
    return pid;
}

/* ------------------------------------------------------------- eph login */

/* The server `eph login` signs in to: --server, $EPH_SERVER, else the config's. */
static int
login_server(struct cli_ctx *ctx, char **out, struct eph_err *err)
{
    const char *url = ctx->flag_server ? ctx->flag_server : cli__env_value("EPH_SERVER");
    struct cli_config cfg = {0};
    char *path;
    int rc;

    *out = NULL;
    if (url)
        return cli__server_url_normalize(url, out, err);
    path = cli__config_path(err);
    if (path == NULL)
        return EPH_EINVAL;
    rc = cli__config_read(path, &cfg, err);
    free(path);
    if (rc < 0 && rc != -ENOENT) {
        cli__config_release(&cfg);
        return rc;
    }
    *out = cfg.server;
    cfg.server = NULL;
    cli__config_release(&cfg);
    return *out ? 0 : -ENOENT;
}

/*
 * Runs the browser sign-in against ctx->server. Returns 0 with the token in
 * *token and the browser's connection in *lb (its winner in *winner), to be
 * answered once the token is checked.
 */
static int
browser_sign_in(struct cli_ctx *ctx, struct loopback *lb, char **token, struct conn **winner,
                struct eph_err *err)
{
    bool tty = isatty(STDERR_FILENO) == 1;
    char state[CLI_STATE_HEX_LEN + 1];
    char *url;
    pid_t opener;
    int rc;

    rc = cli__state_new(state, err);
    if (rc == 0)
        rc = loopback_open(lb, err);
    if (rc < 0)
        return rc;
    url = xasprintf("%s/auth/cli?port=%d&state=%s", ctx->server, lb->port, state);
    fprintf(ctx->err, "Open this URL in a browser to sign in:\n  %s\n", url);
    opener = open_browser(url);
    if (tty) {
        fprintf(ctx->err, "%sWaiting for the browser (Ctrl-C to cancel) ...\n",
                opener > 0 ? "Opening your browser. " : "");
    }
    fflush(ctx->err);
    rc = loopback_wait(lb, state, time_mono_ms() + LOGIN_TIMEOUT_MS, token, winner, err);
    if (opener > 0)
        waitpid(opener, NULL, WNOHANG); /* reaped if done; else it outlives us harmlessly */
    OPENSSL_cleanse(state, sizeof(state));
    free(url);
    return rc;
}

int
cli__cmd_login(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct loopback *lb = NULL;
    struct conn *winner = NULL;
    struct cli_config cfg = {0};
    struct eph_err err = {0};
    json_t *who = NULL;
    char *server = NULL, *path = NULL;
    int rc;

    rc = login_server(ctx, &server, &err);
    if (rc == -ENOENT)
        return cli__usage(ctx, "missing --server URL (the client config names no server)");
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->flag_token) {
        /* Resolves the same server (flag, environment, file) and the token. */
        free(server);
        server = NULL;
        rc = cli__connect(ctx, &err);
    } else {
        lb = xcalloc(1, sizeof(*lb));
        lb->listen_fd = -1;
        ctx->server = server;
        server = NULL;
        rc = browser_sign_in(ctx, lb, &ctx->token, &winner, &err);
        if (rc == 0) {
            ctx->curl = curl_easy_init();
            if (ctx->curl == NULL)
                rc = eph_err_set(&err, EPH_EINTERNAL, "cannot create a libcurl handle");
        }
    }
    if (rc == 0)
        rc = cli__http_json(ctx, "GET", "/whoami", NULL, &who, &err);
    if (winner) {
        char *name = html_escape(cli__jstr(who, "name", "?"));
        char *text = rc == 0 ? xasprintf("eph is signed in as <b>%s</b>. You can close this tab "
                                         "and go back to the terminal.",
                                         name)
                             : xstrdup("eph could not use the token: the terminal says why.");

        answer(winner, rc == 0 ? 200 : 500, rc == 0 ? "Signed in" : "Sign-in failed", text);
        free(text);
        free(name);
    }
    if (rc < 0) {
        rc = cli__fail(ctx, &err);
        goto out;
    }
    path = cli__config_path(&err);
    cfg.server = ctx->server; /* borrowed for the write */
    cfg.token = ctx->token;
    rc = path ? cli__config_write(path, &cfg, &err) : EPH_EINVAL;
    cfg.server = NULL;
    cfg.token = NULL;
    if (rc < 0) {
        rc = cli__fail(ctx, &err);
        goto out;
    }
    fprintf(ctx->out, "Signed in to %s as %s (%s)\n", ctx->server, cli__jstr(who, "name", "?"),
            cli__jstr(who, "role", "?"));
    if (cli__env_value("EPH_TOKEN"))
        fputs("note: $EPH_TOKEN is set and is used instead of the saved token\n", ctx->err);
    rc = CLI_EXIT_OK;
out:
    if (lb)
        loopback_close(lb);
    free(lb);
    json_decref(who);
    free(server);
    free(path);
    return rc;
}

/* ------------------------------------------------------------- eph logout */

int
cli__cmd_logout(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct cli_config cfg = {0};
    struct eph_err err = {0};
    char *path = cli__config_path(&err);
    int rc;

    if (path == NULL)
        return cli__fail(ctx, &err);
    rc = cli__config_read(path, &cfg, &err);
    if (rc < 0 && rc != -ENOENT) {
        rc = cli__fail(ctx, &err);
        goto out;
    }
    if (cfg.token == NULL) {
        fprintf(ctx->out, "Not signed in (no token in %s)\n", path);
    } else {
        OPENSSL_cleanse(cfg.token, strlen(cfg.token));
        free(cfg.token);
        cfg.token = NULL; /* cli__config_write() drops the key; the server stays */
        if (cli__config_write(path, &cfg, &err) < 0) {
            rc = cli__fail(ctx, &err);
            goto out;
        }
        fprintf(ctx->out, "Signed out of %s (token removed from %s)\n",
                cfg.server ? cfg.server : "the server", path);
    }
    if (cli__env_value("EPH_TOKEN"))
        fputs("note: $EPH_TOKEN is still set: unset it too\n", ctx->err);
    rc = CLI_EXIT_OK;
out:
    cli__config_release(&cfg);
    free(path);
    return rc;
}

/* ------------------------------------------------------------- eph whoami */

/* "cli-1a2b3c4d (id 7, expires in 29d)" from whoami's "token": a string or an object. */
static char *
token_summary(const json_t *token)
{
    char id[32], left[32], expiry[48];
    int64_t expires_ms = cli__jtime_ms(token, "expires_at");

    if (json_is_string(token))
        return xstrdup(json_string_value(token));
    if (!json_is_object(token))
        return NULL;
    cli__jid(token, "id", id, sizeof(id));
    cli__format_expires(time_wall_ms(), expires_ms, left, sizeof(left));
    if (expires_ms <= 0)
        snprintf(expiry, sizeof(expiry), "never expires");
    else if (strcmp(left, "expired") == 0)
        snprintf(expiry, sizeof(expiry), "expired");
    else
        snprintf(expiry, sizeof(expiry), "expires in %s", left);
    return xasprintf("%s (%s%s%s%s)", cli__jstr(token, "name", "?"), *id ? "id " : "", id,
                     *id ? ", " : "", expiry);
}

int
cli__cmd_whoami(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct eph_err err = {0};
    struct cli_table t;
    json_t *who = NULL;
    char *token;

    if (cli__connect(ctx, &err) < 0 || cli__http_json(ctx, "GET", "/whoami", NULL, &who, &err) < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, who);
        json_decref(who);
        return CLI_EXIT_OK;
    }
    token = token_summary(json_object_get(who, "token"));
    cli__table_init(&t, 2, NULL);
    cli__table_add(&t, (const char *const[]){"name:", cli__jstr(who, "name", NULL)});
    cli__table_add(&t, (const char *const[]){"role:", cli__jstr(who, "role", NULL)});
    cli__table_add(&t, (const char *const[]){"email:", cli__jstr(who, "email", NULL)});
    cli__table_add(&t, (const char *const[]){"via:", cli__jstr(who, "via", NULL)});
    if (token)
        cli__table_add(&t, (const char *const[]){"token:", token});
    cli__table_add(&t, (const char *const[]){"server:", ctx->server});
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    free(token);
    json_decref(who);
    return CLI_EXIT_OK;
}
