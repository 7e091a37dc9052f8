/*
 * cli/cli_int.h - what the files of src/cli share: the verb and flag tables,
 * parsed arguments, the per-run context, the HTTP client, the client config,
 * and table and time formatting.
 *
 * Everything here runs on the one thread of a CLI process; nothing is
 * thread-safe and nothing needs to be. Output for people goes to ctx->out
 * (stdout) and ctx->err (stderr); errors are printed as "eph: <message>".
 */
#ifndef EPH_CLI_CLI_INT_H
#define EPH_CLI_CLI_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <curl/curl.h>
#include <jansson.h>

#include "util/err.h"

#ifndef EPH_VERSION
#define EPH_VERSION "0.1.0" /* the Makefile may pass -DEPH_VERSION=... */
#endif

/* Exit codes, the contract of every verb (cli.h). */
enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1, /* the server refused, the environment failed, no connection */
    CLI_EXIT_USAGE = 2,  /* unknown verb or flag, missing or malformed argument */
};

#define CLI_MAX_POS 8    /* positional arguments of one verb; none takes more than 2 */
#define CLI_MAX_OPTS 128 /* flags on one command line; more is a usage error */
#define CLI_CONNECT_TIMEOUT_MS 5000
#define CLI_REQUEST_TIMEOUT_MS 60000       /* POST /envs fetches git on the server: be patient */
#define CLI_MAX_RESPONSE_BYTES (64u << 20) /* a JSON answer; envs?all=1 grows with history */
#define CLI_MAX_ERROR_BYTES (64u << 10)    /* the body of an error answer to a stream */
#define CLI_MAX_CONFIG_BYTES (64u << 10)   /* the client config is two strings */
#define CLI_MAX_SECRET_BYTES 1024          /* a token or password read from stdin or a tty */

/* ------------------------------------------------------------- verbs and flags */

struct cli_flag {
    const char *name;  /* long name without the dashes: "ttl" for --ttl */
    char short_name;   /* 'o' for -o; 0 when there is none */
    const char *value; /* placeholder shown in help ("DURATION"); NULL for a switch */
    const char *help;  /* one line for `eph VERB --help` */
};

/* One flag as given on the command line. */
struct cli_opt {
    const struct cli_flag *flag; /* borrowed from a flag table */
    const char *value;           /* borrowed from argv; "" for a switch */
};

struct cli_args {
    const char *pos[CLI_MAX_POS]; /* positional arguments, borrowed from argv */
    size_t n_pos;
    /* In command-line order. A flag given twice is there twice: cli__arg()
     * takes the last value, and --param walks them all. */
    struct cli_opt opts[CLI_MAX_OPTS];
    size_t n_opts;
};

struct cli_ctx;
typedef int cli_verb_fn(struct cli_ctx *ctx, const struct cli_args *args);

struct cli_verb {
    const char *name;             /* one or two words: "ls", "project add" */
    cli_verb_fn *fn;              /* returns an exit code; NULL for `serve` (main.c runs it) */
    const char *help;             /* one line for `eph --help` */
    const char *pos_names[3];     /* names of the positionals, for usage and errors */
    size_t min_pos;               /* how many positionals are required */
    const char *description;      /* the paragraph of `eph VERB --help` */
    const struct cli_flag *flags; /* the verb's own flags, ended by { 0 }; may be NULL */
    const char *examples;         /* lines of examples for `eph VERB --help`; may be NULL */
};

/* The verb table, ended by an entry whose name is NULL; `eph --help` lists it in order. */
extern const struct cli_verb cli__verbs[];
/* --server, --token and --help: valid before or after any verb. Ended by { NULL }. */
extern const struct cli_flag cli__global_flags[];

/*
 * Finds the verb named by argv[*i] (and argv[*i + 1] for two-word verbs),
 * advancing *i past it. Returns NULL and sets an "unknown verb" message in
 * *err when there is none.
 */
const struct cli_verb *cli__verb_find(int argc, char **argv, int *i, struct eph_err *err);

/*
 * Parses argv[*i...] into *args (which the caller zeroes first, and may fill
 * over several calls): flags of `verb` (NULL: global flags only) and global
 * flags, as `--name VALUE`, `--name=VALUE`, `-x VALUE`, `-xVALUE` or a switch;
 * `--` ends the flags. With stop_at_positional it stops at the first
 * positional (the verb) and leaves *i there. Returns 0 or EPH_EINVAL with a
 * message for people in *err (an unknown flag, a missing value, too many).
 */
int cli__args_parse(const struct cli_verb *verb, int argc, char **argv, int *i,
                    bool stop_at_positional, struct cli_args *args, struct eph_err *err);

/* The last value given for flag `name` ("" for a switch), or NULL if absent. */
const char *cli__arg(const struct cli_args *args, const char *name);
bool cli__has(const struct cli_args *args, const char *name);

/* `eph --help` and `eph VERB --help`, written to `out`. */
void cli__print_help(FILE *out);
void cli__print_verb_help(const struct cli_verb *verb, FILE *out);

/* ------------------------------------------------------------- the context of one run */

struct cli_ctx {
    const struct cli_verb *verb; /* the verb being run */
    const char *flag_server;     /* --server, borrowed from argv; NULL if not given */
    const char *flag_token;      /* --token, borrowed from argv (or read from stdin) */
    bool json;                   /* -o json: print the server's JSON instead of tables */
    char *server;                /* resolved base URL without trailing '/'; NULL until connected */
    char *token;                 /* resolved token; never printed, never logged */
    CURL *curl;                  /* one handle for every request: keeps the connection */
    FILE *out;                   /* results: stdout */
    FILE *err;                   /* errors and progress: stderr */
};

/*
 * Resolves the server and the token (flags, then EPH_SERVER / EPH_TOKEN, then
 * the config file) into ctx->server and ctx->token. Returns 0, or an error
 * with the message to print ("not logged in: run ...").
 */
int cli__connect(struct cli_ctx *ctx, struct eph_err *err);

/*
 * Prints "eph: <err->msg>" to ctx->err; returns CLI_EXIT_FAILED. A refused
 * token (EPH_EUNAUTH from the server) adds how to sign in again.
 */
int cli__fail(struct cli_ctx *ctx, const struct eph_err *err);
/* Prints "eph: <message>" and a pointer to `eph VERB --help`; returns CLI_EXIT_USAGE. */
int cli__usage(struct cli_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `json` to ctx->out as the server would, indented by 2, and a newline. */
void cli__print_json(struct cli_ctx *ctx, const json_t *json);

/* ------------------------------------------------------------- HTTP (cli_http.c) */

/*
 * Sends METHOD ctx->server + "/api/v1" + path with the token and, if `body`
 * is not NULL, that JSON (borrowed). A 2xx answer returns 0 and its parsed
 * body in *out (the caller owns it; NULL if the body was empty). Otherwise
 * returns an error whose message is what a person should read: the server's
 * error.message, or "cannot reach server URL: Connection refused". The code
 * follows the status (EPH_ENOTFOUND for 404, see cli__status_error()) or is
 * -errno / EPH_ETIMEDOUT for transport failures.
 */
int cli__http_json(struct cli_ctx *ctx, const char *method, const char *path, const json_t *body,
                   json_t **out, struct eph_err *err);

/*
 * GETs `path` and writes a 2xx body to `out` as it arrives, flushing each
 * chunk, never holding the whole body. `follow`: no total timeout (the
 * stream lasts until the server ends it). Errors as cli__http_json().
 */
int cli__http_stream(struct cli_ctx *ctx, const char *path, FILE *out, bool follow,
                     struct eph_err *err);

/* Our error code for an HTTP status: 404 -> EPH_ENOTFOUND, 409 -> EPH_ECONFLICT, ... */
int cli__status_error(long status);

/*
 * The message of an error answer: error.message of the body when it is the
 * API's error JSON, else "server answered HTTP <status>". `body` may be NULL.
 */
void cli__error_message(long status, const char *body, size_t body_len, char *out, size_t out_size);

/*
 * Percent-encodes `s` for a URL: unreserved characters stay, and '/' too when
 * keep_slash (for query values such as target=env/fx). Returns a new string.
 */
char *cli__url_escape(const char *s, bool keep_slash);

/* Releases ctx->curl and the resolved server and token. */
void cli__ctx_release(struct cli_ctx *ctx);

/* ------------------------------------------------------------- client config (cli_config.c) */

struct cli_config {
    char *server; /* "http://127.0.0.1:8080", no trailing '/'; NULL if unset */
    char *token;  /* NULL if unset */
};

/* $EPH_CONFIG, else $HOME/.config/ephemera/config. Returns a new string, or NULL
 * (with a message) when neither is set. */
char *cli__config_path(struct eph_err *err);

/*
 * Reads the config file at `path` into *cfg (zeroed first). Returns 0,
 * -ENOENT when there is no file (quietly: the caller decides), or an error
 * naming the file. Release *cfg in every case.
 */
int cli__config_read(const char *path, struct cli_config *cfg, struct eph_err *err);

/*
 * Writes cfg's server and token to `path` (mode 0600, atomically; parent
 * directories created with mode 0700), keeping any other keys the file held.
 * A NULL field is removed from the file (`eph logout` drops the token).
 */
int cli__config_write(const char *path, const struct cli_config *cfg, struct eph_err *err);

/*
 * Fills *cfg from, per field, the flag, else $EPH_SERVER / $EPH_TOKEN, else
 * the config file (read only when a field is still missing). Returns 0, or an
 * error for people: "not logged in: run ...", a bad file, a bad server URL.
 */
int cli__config_resolve(const char *flag_server, const char *flag_token, struct cli_config *cfg,
                        struct eph_err *err);

void cli__config_release(struct cli_config *cfg);

/*
 * Checks that a token can go into an Authorization header (printable ASCII,
 * at most CLI_MAX_SECRET_BYTES). `where` names its source for the message
 * ("--token", "stdin"); the token itself is never quoted.
 */
int cli__token_check(const char *token, const char *where, struct eph_err *err);

/*
 * Reads one line from stdin into *out (a new string, without its line end):
 * `--token -`, `--password-stdin`. `what` names the flag for the messages.
 * EPH_EINVAL when stdin is empty or the line is longer than
 * CLI_MAX_SECRET_BYTES.
 */
int cli__read_stdin_line(const char *what, char **out, struct eph_err *err);

/* getenv() that treats an empty value as unset. */
const char *cli__env_value(const char *name);

/*
 * Checks a server URL (http:// or https://, a host) and returns a copy
 * without trailing slashes in *out. 0 or EPH_EINVAL with a message.
 */
int cli__server_url_normalize(const char *url, char **out, struct eph_err *err);

/* ------------------------------------------------------------- tables and times (cli_table.c) */

struct cli_table {
    size_t n_cols;
    const char *const *headers; /* borrowed; NULL: no header line */
    bool header_done;           /* the header was printed: later prints add rows only */
    const char *indent;         /* printed before each line; "" by default */
    char **cells;               /* n_rows * n_cols, owned, sanitised */
    size_t n_rows;
    size_t *widths; /* display width per column; only grows, so a followed
                       table keeps its columns where they were */
};

void cli__table_init(struct cli_table *t, size_t n_cols, const char *const *headers);
void cli__table_release(struct cli_table *t);

/* Adds a row of n_cols cells (copied; NULL or "" shows as "-", control
 * characters as spaces). */
void cli__table_add(struct cli_table *t, const char *const *cells);

/* Widens t->widths to fit the header and the rows added so far. */
void cli__table_measure(struct cli_table *t);

/*
 * Prints the header (the first time) and the rows added since the last
 * print, columns 3 spaces apart, the last one unpadded; then forgets those
 * rows but keeps the widths.
 */
void cli__table_print(struct cli_table *t, FILE *out);

/* Columns a string takes on a terminal: UTF-8 code points, not bytes. */
size_t cli__display_width(const char *s);

/* Copies `s` with control characters (newlines, escapes) made spaces. */
char *cli__sanitize(const char *s);

/*
 * A span of time the way the tables show it, rounded to what is shown:
 * "45s", "5m", "2h", "2h30m", "1d3h".
 */
void cli__format_span(int64_t ms, char *out, size_t out_size);

/* AGE: time since then_ms; "-" when then_ms is 0. */
void cli__format_age(int64_t now_ms, int64_t then_ms, char *out, size_t out_size);

/* EXPIRES: time left until expires_ms; "expired" when past, "-" when 0. */
void cli__format_expires(int64_t now_ms, int64_t expires_ms, char *out, size_t out_size);

/* ------------------------------------------------------------- JSON helpers and arguments */

/* obj[key] as a string, or `dflt` when absent, null or not a string. */
const char *cli__jstr(const json_t *obj, const char *key, const char *dflt);
/* obj[key] as an integer, or 0. */
int64_t cli__jint(const json_t *obj, const char *key);

/*
 * A time of the API (docs/api.md, "Times") in ms since the epoch: obj[key +
 * "_ms"] when it is set, else obj[key] parsed as RFC 3339 UTC
 * ("2026-11-22T10:00:00Z", fractions allowed); 0 when unset or unreadable.
 */
int64_t cli__jtime_ms(const json_t *obj, const char *key);

/* An "id" that may be a number or a string, as text in out ("" if absent). */
void cli__jid(const json_t *obj, const char *key, char *out, size_t out_size);

/*
 * The list of a list answer: `resp` itself when it is an array, else
 * resp[key] ({"users": [...]}). Borrowed from resp; NULL when neither.
 */
const json_t *cli__jlist(const json_t *resp, const char *key);

/*
 * Checks that `value` is one of `allowed` (ended by NULL). Returns 0, or
 * EPH_EINVAL with "invalid WHAT 'value', expected a, b or c".
 */
int cli__one_of(const char *value, const char *const *allowed, const char *what,
                struct eph_err *err);

/* Roles ("admin", "member", "viewer") and visibilities ("team", "private", "link"). */
extern const char *const cli__roles[];
extern const char *const cli__visibilities[];

/*
 * Adds one `--param KEY=VALUE` to the object `params`: the key is what comes
 * before the first '=' and may not be empty; the value may be. Returns 0 or
 * EPH_EINVAL with a message.
 */
int cli__param_add(json_t *params, const char *kv, struct eph_err *err);

/*
 * True when `repo` is a relative local path (not a URL, not scp-like
 * host:path, not absolute): those are made absolute before being sent.
 */
bool cli__repo_is_relative_path(const char *repo);

/* ------------------------------------------------------------- browser sign-in (cli_login.c) */

#define CLI_STATE_BYTES 16 /* random bytes of a sign-in state: 32 hex digits */
#define CLI_STATE_HEX_LEN (CLI_STATE_BYTES * 2)

/*
 * Fills out with CLI_STATE_HEX_LEN random lower-case hex digits and a NUL
 * (OpenSSL's RAND_bytes). Returns 0, or EPH_EINTERNAL when no randomness
 * could be had.
 */
int cli__state_new(char out[CLI_STATE_HEX_LEN + 1], struct eph_err *err);

/*
 * True when `got` equals `want`, compared in time that does not depend on
 * where they differ (CRYPTO_memcmp). `got` may be NULL (false).
 */
bool cli__state_equal(const char *want, const char *got);

/* What a browser's request to the loopback listener of `eph login` carried. */
struct cli_callback {
    char *token; /* query values, percent-decoded and owned; NULL when absent */
    char *state;
    char *error; /* a refusal the server may send instead of a token */
};

/*
 * Parses the request line (`len` bytes, without its CRLF) of a request to
 * the loopback listener: "GET /callback?token=T&state=S HTTP/1.1". Returns 0
 * for GET /callback, its known query values in *cb (zeroed first; release
 * with cli__callback_release() in every case); EPH_ENOTFOUND for any other
 * method or path (the listener answers 404); EPH_EINVAL for a malformed line,
 * a bad percent-escape, or a known query key given twice (400).
 */
int cli__callback_parse(const char *line, size_t len, struct cli_callback *cb);
void cli__callback_release(struct cli_callback *cb);

/*
 * Decodes %XX escapes of s[0..len) into a new string in *out ('+' stays '+':
 * RFC 3986, not a form). EPH_EINVAL for a truncated or non-hex escape or a
 * decoded NUL.
 */
int cli__percent_decode(const char *s, size_t len, char **out);

/* ------------------------------------------------------------- verbs (cli_envs.c, ...) */

int cli__cmd_login(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_logout(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_whoami(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_user_add(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_user_ls(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_user_rm(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_user_role(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_user_passwd(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_token_create(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_token_ls(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_token_revoke(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_link(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_visibility(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_version(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_help(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_projects(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_project_add(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_up(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_ls(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_get(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_logs(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_extend(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_rm(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_events(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_sleep(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_wake(struct cli_ctx *ctx, const struct cli_args *args);
int cli__cmd_keep(struct cli_ctx *ctx, const struct cli_args *args);

/* ------------------------------------------------------------- sleep (cli_envs.c) */

/*
 * The NEXT column of `eph ls` for an environment of the API (its "phase",
 * "desired" and "sleep" object): "sleeps in 12m", "asleep 3h: idle",
 * "asleep 9h: schedule, wakes in 3h", "going to sleep", "waking", "kept
 * awake", or "-" when nothing is due (or the server tells nothing of sleep).
 */
void cli__format_next(const json_t *env, int64_t now_ms, char *out, size_t out_size);

/* A size the way people read it: "512Mi", "1.5Gi", "34.2Mi", "900B". */
void cli__format_bytes(int64_t bytes, char *out, size_t out_size);

/* CPU in cores from millicores: "1", "0.5", "0.25", "2.5". */
void cli__format_cpu(int64_t millis, char *out, size_t out_size);

/*
 * Adds one `--limit KEY=VALUE` to the object `limits` ({"memory": "512Mi"}):
 * KEY is memory, cpu or pids and VALUE is not empty (the server checks it).
 * 0 or EPH_EINVAL with a message.
 */
int cli__limit_add(json_t *limits, const char *kv, struct eph_err *err);

/* Sleeps for ms milliseconds (polling loops). */
void cli__sleep_ms(int64_t ms);

#endif
