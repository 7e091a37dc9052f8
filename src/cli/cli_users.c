/*
 * cli/cli_users.c - `eph user add|ls|rm|role|passwd`: the server's users
 * (docs/auth.md). Managing others is for admins; the server decides who may
 * do what, the CLI only checks that a role is spelled right.
 *
 * Passwords never appear on a command line (where `ps` and shell history
 * would keep them): they are read from stdin or typed at a prompt without
 * echo, and wiped from memory once sent.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "util/time.h"
#include "util/xmalloc.h"

/* "/users/NAME" + suffix, the name escaped. */
static char *
user_path(const char *name, const char *suffix)
{
    char *escaped = cli__url_escape(name, false);
    char *path = xasprintf("/users/%s%s", escaped, suffix);

    free(escaped);
    return path;
}

static void
wipe_free(char *secret)
{
    if (secret)
        OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}

/* Wipes the copy of a secret that jansson keeps in obj[key] (its own heap memory). */
static void
wipe_json_string(json_t *obj, const char *key)
{
    json_t *s = json_object_get(obj, key);

    if (json_is_string(s))
        OPENSSL_cleanse((char *)json_string_value(s), json_string_length(s));
}

/* ------------------------------------------------------------- reading a password */

/* The terminal as it was before echo was turned off; restored on Ctrl-C too. */
static struct termios saved_termios;
static volatile sig_atomic_t echo_off;

static void
restore_echo(void)
{
    if (echo_off) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
        echo_off = 0;
    }
}

/* Ctrl-C at the prompt: give the terminal its echo back, then die of SIGINT. */
static void
on_interrupt(int sig)
{
    restore_echo(); /* tcsetattr() is async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Prints `prompt` on stderr and reads one line from the terminal without echo. */
static int
prompt_no_echo(struct cli_ctx *ctx, const char *prompt, char **out, struct eph_err *err)
{
    struct sigaction sa = {.sa_handler = on_interrupt}, old_sa;
    struct termios quiet;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;

    *out = NULL;
    if (tcgetattr(STDIN_FILENO, &saved_termios) < 0)
        return eph_err_set(err, -errno, "cannot read the terminal's settings: %s", strerror(errno));
    quiet = saved_termios;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL; /* the newline still shows: the next prompt starts on its line */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    fputs(prompt, ctx->err);
    fflush(ctx->err);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0)
        echo_off = 1;
    n = getline(&line, &cap, stdin);
    restore_echo();
    sigaction(SIGINT, &old_sa, NULL);
    if (n < 0) {
        free(line);
        fputc('\n', ctx->err);
        return eph_err_set(err, EPH_EINVAL, "no password given");
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    *out = line;
    return 0;
}

/*
 * Reads a new password: one line of stdin with --password-stdin or when stdin
 * is not a terminal; else asked twice at the terminal without echo.
 */
static int
read_password(struct cli_ctx *ctx, bool from_stdin, const char *user, char **out,
              struct eph_err *err)
{
    char *again = NULL, *prompt;
    int rc;

    *out = NULL;
    if (from_stdin || isatty(STDIN_FILENO) != 1) {
        rc = cli__read_stdin_line(
            from_stdin ? "--password-stdin" : "password (stdin is not a terminal)", out, err);
    } else {
        prompt = xasprintf("New password for %s: ", user);
        rc = prompt_no_echo(ctx, prompt, out, err);
        free(prompt);
        if (rc == 0)
            rc = prompt_no_echo(ctx, "Repeat it: ", &again, err);
        if (rc == 0 && strcmp(*out, again) != 0)
            rc = eph_err_set(err, EPH_EINVAL, "the passwords do not match");
        wipe_free(again);
    }
    if (rc == 0 && **out == '\0')
        rc = eph_err_set(err, EPH_EINVAL, "empty password");
    if (rc == 0 && strlen(*out) > CLI_MAX_SECRET_BYTES)
        rc = eph_err_set(err, EPH_EINVAL, "the password is longer than %d bytes",
                         CLI_MAX_SECRET_BYTES);
    if (rc < 0) {
        wipe_free(*out);
        *out = NULL;
    }
    return rc;
}

/* ------------------------------------------------------------- eph user add */

int
cli__cmd_user_add(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    const char *role = cli__arg(args, "role");
    const char *email = cli__arg(args, "email");
    struct eph_err err = {0};
    json_t *body = NULL, *user = NULL;
    char *password = NULL;
    const char *made;
    int rc;

    if (role && cli__one_of(role, cli__roles, "role", &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (email && *email == '\0')
        return cli__usage(ctx, "--email: empty address");
    if (cli__has(args, "password-stdin") && read_password(ctx, true, name, &password, &err) < 0)
        return cli__fail(ctx, &err);
    rc = cli__connect(ctx, &err);
    if (rc == 0) {
        body = json_pack("{s:s}", "name", name);
        if (role)
            json_object_set_new(body, "role", json_string(role));
        if (email)
            json_object_set_new(body, "email", json_string(email));
        if (password)
            json_object_set_new(body, "password", json_string(password));
        rc = cli__http_json(ctx, "POST", "/users", body, &user, &err);
    }
    if (rc < 0) {
        rc = cli__fail(ctx, &err);
        goto out;
    }
    if (ctx->json) {
        cli__print_json(ctx, user);
    } else {
        fprintf(ctx->out, "user %s added (%s)\n", cli__jstr(user, "name", name),
                cli__jstr(user, "role", role ? role : "?"));
        made = cli__jstr(user, "password", NULL);
        if (made) /* only when the server made it: shown this once */
            fprintf(ctx->out, "password: %s\n", made);
    }
    rc = CLI_EXIT_OK;
out:
    wipe_json_string(body, "password");
    wipe_json_string(user, "password");
    json_decref(body);
    json_decref(user);
    wipe_free(password);
    return rc;
}

/* ------------------------------------------------------------- eph user ls */

int
cli__cmd_user_ls(struct cli_ctx *ctx, const struct cli_args *args)
{
    static const char *const headers[] = {"NAME", "ROLE", "EMAIL", "PROVIDER", "AGE", "LAST_LOGIN"};
    struct eph_err err = {0};
    struct cli_table t;
    json_t *resp = NULL;
    const json_t *users;
    int64_t now_ms = time_wall_ms();

    if (cli__connect(ctx, &err) < 0 || cli__http_json(ctx, "GET", "/users", NULL, &resp, &err) < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, resp);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    users = cli__jlist(resp, "users");
    if (json_array_size(users) == 0) {
        fputs("no users\n", ctx->err);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(users); i++) {
        const json_t *u = json_array_get(users, i);
        int64_t last_ms = cli__jtime_ms(u, "last_login_at");
        char age[32], last[48] = "never";

        cli__format_age(now_ms, cli__jtime_ms(u, "created_at"), age, sizeof(age));
        if (last_ms > 0) {
            cli__format_age(now_ms, last_ms, last, sizeof(last));
            snprintf(last + strlen(last), sizeof(last) - strlen(last), " ago");
        }
        cli__table_add(&t,
                       (const char *const[]){cli__jstr(u, "name", NULL), cli__jstr(u, "role", NULL),
                                             cli__jstr(u, "email", NULL),
                                             cli__jstr(u, "provider", NULL), age, last});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    json_decref(resp);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph user rm */

int
cli__cmd_user_rm(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct eph_err err = {0};
    json_t *resp = NULL;
    char *path;
    int rc;

    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    path = user_path(args->pos[0], "");
    rc = cli__http_json(ctx, "DELETE", path, NULL, &resp, &err);
    free(path);
    json_decref(resp);
    if (rc < 0)
        return cli__fail(ctx, &err);
    fprintf(ctx->out, "user %s deleted\n", args->pos[0]);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph user role */

int
cli__cmd_user_role(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *role = args->pos[1];
    struct eph_err err = {0};
    json_t *body, *resp = NULL;
    char *path;
    int rc;

    if (cli__one_of(role, cli__roles, "role", &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_pack("{s:s}", "role", role);
    path = user_path(args->pos[0], "/role");
    rc = cli__http_json(ctx, "POST", path, body, &resp, &err);
    free(path);
    json_decref(body);
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->json && resp)
        cli__print_json(ctx, resp);
    else
        fprintf(ctx->out, "user %s is now %s\n", args->pos[0], cli__jstr(resp, "role", role));
    json_decref(resp);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph user passwd */

int
cli__cmd_user_passwd(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    struct eph_err err = {0};
    json_t *body = NULL, *resp = NULL;
    char *password = NULL, *path = NULL;
    int rc;

    /* Connect first: "not logged in" should come before typing a password twice. */
    rc = cli__connect(ctx, &err);
    if (rc == 0)
        rc = read_password(ctx, cli__has(args, "password-stdin"), name, &password, &err);
    if (rc == 0) {
        body = json_pack("{s:s}", "password", password);
        path = user_path(name, "/password");
        rc = cli__http_json(ctx, "POST", path, body, &resp, &err);
        wipe_json_string(body, "password");
    }
    json_decref(body);
    json_decref(resp);
    wipe_free(password);
    free(path);
    if (rc < 0)
        return cli__fail(ctx, &err);
    fprintf(ctx->out, "password of %s changed\n", name);
    return CLI_EXIT_OK;
}
