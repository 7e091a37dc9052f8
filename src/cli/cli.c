/*
 * cli/cli.c - `eph VERB ...`: the verb table, the flag parser, help, and
 * cli_main(), which finds the verb, parses its flags and runs it.
 *
 * The tables below are the single source of the CLI's surface: the parser,
 * `eph --help`, `eph VERB --help` and the unit tests read them, so a new verb
 * or flag is one entry here and one function in the verb's file.
 */
#include "cli/cli.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_int.h"
#include "util/xmalloc.h"

/* ------------------------------------------------------------- flag tables */

const struct cli_flag cli__global_flags[] = {
    {"server", 0, "URL", "server to talk to (else $EPH_SERVER, else the config file)"},
    {"token", 0, "TOKEN",
     "API token (else $EPH_TOKEN, else the config file); '-' reads it from stdin"},
    {"help", 'h', NULL, "show help"},
    {0},
};

/* clang-format off */
#define OUTPUT_FLAG {"output", 'o', "FORMAT", "json: print the server's JSON instead"}
/* clang-format on */

static const struct cli_flag output_flags[] = {
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag project_add_flags[] = {
    {"repo", 0, "PATH_OR_URL",
     "git repository: URL or path (a relative path is made absolute); required"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag up_flags[] = {
    {"branch", 0, "REF", "branch, tag or commit (default: the repository's default)"},
    {"ref", 0, "REF", "the same as --branch"},
    {"name", 0, "NAME", "environment name (default: PROJECT-REF, cut to 40 characters)"},
    {"ttl", 0, "DURATION", "lifetime, e.g. 2h (default: the template's, else the server's)"},
    {"param", 0, "KEY=VALUE", "a template parameter; repeat for more"},
    {"wait", 0, NULL, "wait until the environment is ready (exit 0) or failed (exit 1)"},
    {"timeout", 0, "DURATION", "with --wait: give up after this long (default 10m)"},
    {"visibility", 0, "VISIBILITY", "team, private or link (default: the server's)"},
    {"sleep-after", 0, "DURATION",
     "sleep after this long without use, or 'never' (default: the template's, else the "
     "server's)"},
    {"keep", 0, NULL, "keep it awake: no idle sleep, no schedule (within your quota)"},
    {"limit", 0, "KEY=VALUE", "memory=512Mi, cpu=1 or pids=512: caps for its processes; repeat"},
    {"schedule", 0, "HOURS", "awake only in these hours, e.g. \"Mon-Fri 08:00-20:00\""},
    {"timezone", 0, "ZONE",
     "with --schedule: its time zone, e.g. Europe/Madrid (default: the template's, else the "
     "server's)"},
    {"wake-outside-hours", 0, NULL, "with --schedule: a request outside the hours wakes it"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag wake_flags[] = {
    {"wait", 0, NULL, "wait until the environment is ready (exit 0) or failed (exit 1)"},
    {"timeout", 0, "DURATION", "with --wait: give up after this long (default 10m)"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag keep_flags[] = {
    {"off", 0, NULL, "stop keeping it awake: idle sleep and schedule apply again"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag ls_flags[] = {
    {"all", 'A', NULL, "include deleted environments"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag logs_flags[] = {
    {"follow", 'f', NULL, "keep streaming new output until the environment goes away"},
    {"tail", 0, "N", "only the last N lines (default: the server's, 100)"},
    {0},
};

static const struct cli_flag rm_flags[] = {
    {"wait", 0, NULL, "wait until the environment is deleted"},
    {"timeout", 0, "DURATION", "with --wait: give up after this long (default 10m)"},
    {0},
};

static const struct cli_flag events_flags[] = {
    {"env", 0, "NAME", "only the events of this environment"},
    {"limit", 0, "N", "the newest N events (default: the server's, 50)"},
    {"follow", 'f', NULL, "keep printing new events as they happen"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag link_flags[] = {
    {"ttl", 0, "DURATION", "how long the link works (default: the server's, 24h)"},
    {"service", 0, "SERVICE", "link to this service (default: the environment's first exposed)"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag user_add_flags[] = {
    {"role", 0, "ROLE", "admin, member or viewer (default: the server's, member)"},
    {"email", 0, "EMAIL", "the user's email address"},
    {"password-stdin", 0, NULL, "read the password from stdin (else the server makes one)"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag user_passwd_flags[] = {
    {"password-stdin", 0, NULL, "read the password from stdin instead of prompting"},
    {0},
};

static const struct cli_flag token_create_flags[] = {
    {"name", 0, "NAME", "what the token is for, e.g. ci-shop; required"},
    {"ttl", 0, "DURATION", "lifetime, e.g. 30d (default: the server's, 90d)"},
    {"scope", 0, "ROLE", "viewer, member or admin, at most your role (default: your role)"},
    OUTPUT_FLAG,
    {0},
};

static const struct cli_flag token_ls_flags[] = {
    {"all", 'A', NULL, "every user's tokens (admin)"},
    OUTPUT_FLAG,
    {0},
};

/* ------------------------------------------------------------- the verb table */

const struct cli_verb cli__verbs[] = {
    {
        .name = "serve",
        .help = "run the server (API, reconciler, local driver)",
        .description = "Runs the ephemera server in the foreground. main.c hands this verb\n"
                       "to the server before the CLI sees it; see 'eph serve --help' for\n"
                       "its flags.",
        .examples = "  eph serve\n",
    },
    {
        .name = "login",
        .fn = cli__cmd_login,
        .help = "sign in: in a browser, or with a token",
        .description = "Signs this CLI in to the server and saves the server and a token in the\n"
                       "client config ($EPH_CONFIG, else ~/.config/ephemera/config, mode 0600).\n"
                       "Without --token it prints a URL of the server to open in a browser (and\n"
                       "opens it when there is a graphical session); after you sign in there and\n"
                       "allow the CLI, the browser hands a token back to eph on 127.0.0.1. With\n"
                       "--token it uses that token ('-' reads it from stdin). Either way the\n"
                       "token is checked (GET /api/v1/whoami) before it is saved. --server\n"
                       "defaults to the server of the client config.",
        .examples = "  eph login --server https://eph.example.com\n"
                    "  eph login --server http://127.0.0.1:8080 --token eph_...\n"
                    "  pass show eph | eph login --server https://eph.example.com --token -\n",
    },
    {
        .name = "logout",
        .fn = cli__cmd_logout,
        .help = "forget the saved token",
        .description = "Removes the token from the client config, keeping the server, so that\n"
                       "the next 'eph login' needs no --server. The token itself stays valid on\n"
                       "the server until it expires or is revoked ('eph token revoke ID').",
        .examples = "  eph logout\n",
    },
    {
        .name = "whoami",
        .fn = cli__cmd_whoami,
        .help = "show who the server takes you for",
        .description = "Shows the user the server sees behind this CLI's token: name, role,\n"
                       "email, how the request was authenticated, and the token.",
        .flags = output_flags,
        .examples = "  eph whoami\n"
                    "  eph whoami -o json\n",
    },
    {
        .name = "projects",
        .fn = cli__cmd_projects,
        .help = "list registered projects",
        .description = "Lists the projects (repositories) registered with the server.",
        .flags = output_flags,
        .examples = "  eph projects\n"
                    "  eph projects -o json\n",
    },
    {
        .name = "project add",
        .fn = cli__cmd_project_add,
        .help = "register a repository as a project (admin)",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Registers a git repository under NAME. The server must be allowed to\n"
                       "read it (its allowed_repos setting) and mirrors it before answering.",
        .flags = project_add_flags,
        .examples = "  eph project add shop --repo /srv/git/shop.git\n"
                    "  eph project add shop --repo ./shop\n"
                    "  eph project add shop --repo https://git.example.com/team/shop.git\n",
    },
    {
        .name = "up",
        .fn = cli__cmd_up,
        .help = "create an environment from a project",
        .pos_names = {"PROJECT"},
        .min_pos = 1,
        .description = "Creates an environment of PROJECT at a branch, tag or commit. The server\n"
                       "fetches the repository, checks its ephemera.yaml and the params, and\n"
                       "answers at once; the environment then starts in the background. With\n"
                       "--wait, eph follows it until it is ready (exit 0) or failed (exit 1),\n"
                       "showing each service's progress, and prints the services' URLs.",
        .flags = up_flags,
        .examples = "  eph up shop --branch feature-x --wait\n"
                    "  eph up shop --ref 3f2c1d0 --name fx --ttl 2h --param dataset=edge-cases\n"
                    "  eph up shop --branch spike --visibility private\n"
                    "  eph up shop --name fx --sleep-after 15m --limit memory=512Mi --limit cpu=1\n"
                    "  eph up shop --name demo --keep --sleep-after never\n"
                    "  eph up shop --schedule \"Mon-Fri 08:00-20:00\" --timezone Europe/Madrid\n",
    },
    {
        .name = "ls",
        .fn = cli__cmd_ls,
        .help = "list environments",
        .description = "Lists environments, oldest first: IDLE is the time since it was last\n"
                       "used (ready ones), NEXT what happens next on its own ('sleeps in 12m',\n"
                       "'asleep 3h: idle', 'kept awake'), AGE the time since creation, EXPIRES\n"
                       "the time left before it is deleted automatically.",
        .flags = ls_flags,
        .examples = "  eph ls\n"
                    "  eph ls -A -o json\n",
    },
    {
        .name = "get",
        .fn = cli__cmd_get,
        .help = "show an environment, its services and recent events",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Shows one environment: its source, owner, phase and expiry; when it\n"
                       "sleeps (idle time, schedule, keep, last activity and why it last slept\n"
                       "or woke), what it uses and its limits; a table of its services, and its\n"
                       "last events.",
        .flags = output_flags,
        .examples = "  eph get fx\n"
                    "  eph get fx -o json\n",
    },
    {
        .name = "logs",
        .fn = cli__cmd_logs,
        .help = "print a service's output",
        .pos_names = {"NAME", "SERVICE"},
        .min_pos = 2,
        .description = "Prints the output (setup and run) of SERVICE in environment NAME as the\n"
                       "server sends it. With -f it keeps streaming until the environment is\n"
                       "deleted or you press Ctrl-C.",
        .flags = logs_flags,
        .examples = "  eph logs fx api\n"
                    "  eph logs fx api -f --tail 20\n",
    },
    {
        .name = "extend",
        .fn = cli__cmd_extend,
        .help = "push an environment's expiry later",
        .pos_names = {"NAME", "DURATION"},
        .min_pos = 2,
        .description = "Moves the expiry of NAME DURATION later (from now if it has passed), up\n"
                       "to the server's max_ttl.",
        .flags = output_flags,
        .examples = "  eph extend fx 2h\n",
    },
    {
        .name = "sleep",
        .fn = cli__cmd_sleep,
        .help = "put an environment to sleep now",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Stops every process of environment NAME and keeps everything else: its\n"
                       "checkout, data, ports and URLs. The next request to one of its URLs, or\n"
                       "'eph wake NAME', starts it again with its data as it was. The server\n"
                       "answers at once; the processes stop in the background.",
        .flags = output_flags,
        .examples = "  eph sleep fx\n",
    },
    {
        .name = "wake",
        .fn = cli__cmd_wake,
        .help = "wake a sleeping environment",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Starts the processes of sleeping environment NAME again, without\n"
                       "running setup again, even outside its office hours. With --wait, eph\n"
                       "follows it until it is ready (exit 0) or failed (exit 1).",
        .flags = wake_flags,
        .examples = "  eph wake fx\n"
                    "  eph wake fx --wait --timeout 2m\n",
    },
    {
        .name = "keep",
        .fn = cli__cmd_keep,
        .help = "keep an environment awake (or stop keeping it)",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Keeps environment NAME awake: it does not sleep when idle, nor outside\n"
                       "its schedule's hours. --off gives it back to its idle timer and\n"
                       "schedule. Members may keep a limited number of environments (the\n"
                       "server's quota_keep_per_user).",
        .flags = keep_flags,
        .examples = "  eph keep fx\n"
                    "  eph keep fx --off\n",
    },
    {
        .name = "visibility",
        .fn = cli__cmd_visibility,
        .help = "set who may see an environment",
        .pos_names = {"NAME", "VISIBILITY"},
        .min_pos = 2,
        .description = "Sets who may see environment NAME and open its URLs: 'team' (every\n"
                       "signed-in user), 'private' (its owner and admins), or 'link' (like\n"
                       "private, plus whoever has a share link from 'eph link').",
        .flags = output_flags,
        .examples = "  eph visibility fx private\n"
                    "  eph visibility fx team\n",
    },
    {
        .name = "link",
        .fn = cli__cmd_link,
        .help = "make a share link to an environment",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Creates a link that opens environment NAME in a browser without signing\n"
                       "in, until it expires, and prints it alone on stdout (its expiry goes to\n"
                       "stderr).",
        .flags = link_flags,
        .examples = "  eph link fx\n"
                    "  eph link fx --ttl 2h --service web\n"
                    "  URL=$(eph link fx --ttl 1h)\n",
    },
    {
        .name = "rm",
        .fn = cli__cmd_rm,
        .help = "delete an environment",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Deletes an environment: its processes are stopped and its files removed.\n"
                       "The server answers at once; --wait waits until it is gone.",
        .flags = rm_flags,
        .examples = "  eph rm fx\n"
                    "  eph rm fx --wait\n",
    },
    {
        .name = "events",
        .fn = cli__cmd_events,
        .help = "show the audit log",
        .description = "Shows events (who did what, when), oldest first: all of them, or those\n"
                       "of one environment. With -f it keeps printing new ones every half\n"
                       "second.",
        .flags = events_flags,
        .examples = "  eph events --env fx\n"
                    "  eph events -f\n",
    },
    {
        .name = "user add",
        .fn = cli__cmd_user_add,
        .help = "create a user with a password (admin)",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Creates a local user who signs in with a password. With --password-stdin\n"
                       "the password is read from stdin; otherwise the server makes one, which\n"
                       "is printed once ('password: ...').",
        .flags = user_add_flags,
        .examples = "  eph user add alice --role member --email alice@example.com\n"
                    "  pass show alice | eph user add alice --password-stdin\n",
    },
    {
        .name = "user ls",
        .fn = cli__cmd_user_ls,
        .help = "list users (admin)",
        .description = "Lists the users: local ones and those created by a sign-in provider.",
        .flags = output_flags,
        .examples = "  eph user ls\n",
    },
    {
        .name = "user rm",
        .fn = cli__cmd_user_rm,
        .help = "delete a user (admin)",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Deletes user NAME; their sessions and tokens stop working at once.",
        .examples = "  eph user rm alice\n",
    },
    {
        .name = "user role",
        .fn = cli__cmd_user_role,
        .help = "change a user's role (admin)",
        .pos_names = {"NAME", "ROLE"},
        .min_pos = 2,
        .description = "Gives user NAME the role ROLE: admin, member or viewer.",
        .flags = output_flags,
        .examples = "  eph user role alice admin\n",
    },
    {
        .name = "user passwd",
        .fn = cli__cmd_user_passwd,
        .help = "set a user's password (admin)",
        .pos_names = {"NAME"},
        .min_pos = 1,
        .description = "Sets the password of local user NAME. On a terminal it asks twice\n"
                       "without echo; otherwise, or with --password-stdin, it reads one line\n"
                       "from stdin.",
        .flags = user_passwd_flags,
        .examples = "  eph user passwd alice\n"
                    "  printf '%s\\n' \"$PW\" | eph user passwd alice --password-stdin\n",
    },
    {
        .name = "token create",
        .fn = cli__cmd_token_create,
        .help = "create an API token",
        .description = "Creates an API token for you (for CI jobs, scripts, other machines) and\n"
                       "prints it alone on stdout, once: the server keeps only its hash. Its\n"
                       "id, scope and expiry go to stderr.",
        .flags = token_create_flags,
        .examples = "  eph token create --name ci-shop --ttl 30d --scope member\n"
                    "  TOKEN=$(eph token create --name ci-shop)\n",
    },
    {
        .name = "token ls",
        .fn = cli__cmd_token_ls,
        .help = "list API tokens",
        .description = "Lists your API tokens (never their values); with --all, every user's.",
        .flags = token_ls_flags,
        .examples = "  eph token ls\n"
                    "  eph token ls --all\n",
    },
    {
        .name = "token revoke",
        .fn = cli__cmd_token_revoke,
        .help = "revoke an API token",
        .pos_names = {"ID"},
        .min_pos = 1,
        .description = "Revokes token ID (see 'eph token ls'): it stops working at once.",
        .examples = "  eph token revoke 12\n",
    },
    {
        .name = "version",
        .fn = cli__cmd_version,
        .help = "print the version of this CLI",
        .description = "Prints the version of this CLI.",
    },
    {
        .name = "help",
        .fn = cli__cmd_help,
        .help = "show help for eph or a verb",
        .pos_names = {"VERB", "SUBVERB"},
        .description = "Shows the list of verbs, or the help of one verb (the same as\n"
                       "'eph VERB --help').",
        .examples = "  eph help\n"
                    "  eph help up\n",
    },
    {0},
};

/* ------------------------------------------------------------- verb lookup */

/* How many words `name` has (1 or 2) and whether argv[i...] spells it. */
static bool
verb_matches(const char *name, int argc, char **argv, int i, int *words)
{
    const char *space = strchr(name, ' ');

    if (space == NULL) {
        *words = 1;
        return strcmp(name, argv[i]) == 0;
    }
    *words = 2;
    return i + 1 < argc && strlen(argv[i]) == (size_t)(space - name) &&
           strncmp(name, argv[i], (size_t)(space - name)) == 0 &&
           strcmp(space + 1, argv[i + 1]) == 0;
}

const struct cli_verb *
cli__verb_find(int argc, char **argv, int *i, struct eph_err *err)
{
    const char *word = argv[*i];
    size_t len = strlen(word);

    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        int words;

        if (verb_matches(v->name, argc, argv, *i, &words)) {
            *i += words;
            return v;
        }
    }
    /* `eph project` or `eph project rm`: name the subverbs there are. */
    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        if (strncmp(v->name, word, len) == 0 && v->name[len] == ' ') {
            if (*i + 1 < argc)
                eph_err_set(err, EPH_EINVAL, "unknown verb '%s %s', expected '%s'", word,
                            argv[*i + 1], v->name);
            else
                eph_err_set(err, EPH_EINVAL, "'%s' needs a subverb, e.g. '%s'", word, v->name);
            return NULL;
        }
    }
    eph_err_set(err, EPH_EINVAL, "unknown verb '%s'", word);
    return NULL;
}

/* ------------------------------------------------------------- flag parsing */

static const struct cli_flag *
flag_find(const struct cli_flag *flags, const char *name, size_t name_len, char short_name)
{
    for (const struct cli_flag *f = flags; f && f->name; f++) {
        if (short_name ? f->short_name == short_name
                       : strlen(f->name) == name_len && strncmp(f->name, name, name_len) == 0)
            return f;
    }
    return NULL;
}

static size_t
max_positionals(const struct cli_verb *verb)
{
    size_t n = 0;

    while (n < ARRAY_LEN(verb->pos_names) && verb->pos_names[n])
        n++;
    return n;
}

int
cli__args_parse(const struct cli_verb *verb, int argc, char **argv, int *i, bool stop_at_positional,
                struct cli_args *args, struct eph_err *err)
{
    bool flags_ended = false;

    for (; *i < argc; (*i)++) {
        const char *arg = argv[*i];
        const struct cli_flag *flag = NULL;
        const char *value = NULL;
        bool has_inline = false; /* --name=VALUE or -xVALUE */

        if (!flags_ended && strcmp(arg, "--") == 0) {
            flags_ended = true;
            continue;
        }
        if (flags_ended || arg[0] != '-' || arg[1] == '\0') {
            if (stop_at_positional)
                return 0;
            if (verb == NULL || args->n_pos >= max_positionals(verb))
                return eph_err_set(err, EPH_EINVAL, "unexpected argument '%s'", arg);
            args->pos[args->n_pos++] = arg;
            continue;
        }
        if (arg[1] == '-') {
            const char *name = arg + 2;
            const char *eq = strchr(name, '=');
            size_t name_len = eq ? (size_t)(eq - name) : strlen(name);

            if (verb)
                flag = flag_find(verb->flags, name, name_len, 0);
            if (flag == NULL)
                flag = flag_find(cli__global_flags, name, name_len, 0);
            if (flag == NULL)
                return eph_err_set(err, EPH_EINVAL, "unknown flag '--%.*s'", (int)name_len, name);
            if (eq) {
                value = eq + 1;
                has_inline = true;
            }
        } else {
            if (verb)
                flag = flag_find(verb->flags, NULL, 0, arg[1]);
            if (flag == NULL)
                flag = flag_find(cli__global_flags, NULL, 0, arg[1]);
            if (flag == NULL || (flag->value == NULL && arg[2] != '\0'))
                return eph_err_set(err, EPH_EINVAL, "unknown flag '%s'", arg);
            if (arg[2] != '\0') {
                value = arg + 2;
                has_inline = true;
            }
        }
        if (flag->value == NULL && has_inline)
            return eph_err_set(err, EPH_EINVAL, "flag --%s takes no value", flag->name);
        if (flag->value && !has_inline) {
            if (*i + 1 >= argc)
                return eph_err_set(err, EPH_EINVAL, "flag --%s needs a value (%s)", flag->name,
                                   flag->value);
            value = argv[++*i];
        }
        if (args->n_opts >= CLI_MAX_OPTS)
            return eph_err_set(err, EPH_EINVAL, "too many flags (at most %d)", CLI_MAX_OPTS);
        args->opts[args->n_opts].flag = flag;
        args->opts[args->n_opts].value = flag->value ? value : "";
        args->n_opts++;
    }
    return 0;
}

const char *
cli__arg(const struct cli_args *args, const char *name)
{
    for (size_t i = args->n_opts; i-- > 0;) {
        if (strcmp(args->opts[i].flag->name, name) == 0)
            return args->opts[i].value;
    }
    return NULL;
}

bool
cli__has(const struct cli_args *args, const char *name)
{
    return cli__arg(args, name) != NULL;
}

/* ------------------------------------------------------------- help */

/* "-o, --output FORMAT" or "    --ttl DURATION" into out. */
static void
flag_synopsis(const struct cli_flag *f, char *out, size_t out_size)
{
    char shortname[8] = "    ";

    if (f->short_name)
        snprintf(shortname, sizeof(shortname), "-%c, ", f->short_name);
    snprintf(out, out_size, "%s--%s%s%s", shortname, f->name, f->value ? " " : "",
             f->value ? f->value : "");
}

static size_t
flags_width(const struct cli_flag *flags, size_t width)
{
    char syn[96];

    for (const struct cli_flag *f = flags; f && f->name; f++) {
        flag_synopsis(f, syn, sizeof(syn));
        if (strlen(syn) > width)
            width = strlen(syn);
    }
    return width;
}

static void
print_flags(FILE *out, const struct cli_flag *flags, size_t width)
{
    char syn[96];

    for (const struct cli_flag *f = flags; f && f->name; f++) {
        flag_synopsis(f, syn, sizeof(syn));
        fprintf(out, "  %-*s  %s\n", (int)width, syn, f->help);
    }
}

void
cli__print_help(FILE *out)
{
    size_t width = 0;

    for (const struct cli_verb *v = cli__verbs; v->name; v++) {
        if (strlen(v->name) > width)
            width = strlen(v->name);
    }
    fputs("eph - ephemeral environments for development and review\n\n"
          "usage: eph [--server URL] [--token TOKEN] VERB [ARGS] [FLAGS]\n\n"
          "verbs:\n",
          out);
    for (const struct cli_verb *v = cli__verbs; v->name; v++)
        fprintf(out, "  %-*s  %s\n", (int)width, v->name, v->help);
    fputs("\nglobal flags, before or after the verb:\n", out);
    print_flags(out, cli__global_flags, flags_width(cli__global_flags, 0));
    fputs("\nRun 'eph VERB --help' for a verb's flags and examples.\n"
          "Exit codes: 0 ok, 1 the operation failed, 2 usage error.\n",
          out);
}

void
cli__print_verb_help(const struct cli_verb *verb, FILE *out)
{
    size_t width = flags_width(cli__global_flags, flags_width(verb->flags, 0));

    fprintf(out, "usage: eph %s", verb->name);
    for (size_t i = 0; i < max_positionals(verb); i++) {
        if (i < verb->min_pos)
            fprintf(out, " %s", verb->pos_names[i]);
        else
            fprintf(out, " [%s]", verb->pos_names[i]);
    }
    fprintf(out, "%s\n\n%s\n", verb->flags ? " [flags]" : "", verb->description);
    if (verb->flags) {
        fputs("\nflags:\n", out);
        print_flags(out, verb->flags, width);
    }
    fputs("\nglobal flags:\n", out);
    print_flags(out, cli__global_flags, width);
    if (verb->examples)
        fprintf(out, "\nexamples:\n%s", verb->examples);
}

/* ------------------------------------------------------------- shared helpers */

int
cli__fail(struct cli_ctx *ctx, const struct eph_err *err)
{
    fprintf(ctx->err, "eph: %s\n", err->msg[0] ? err->msg : eph_strerror(err->code));
    /* A refused token: say how to get a new one (but not to `eph login` itself,
     * nor when the message already says it). */
    if (err->code == EPH_EUNAUTH && !strstr(err->msg, "eph login") &&
        (ctx->verb == NULL || strcmp(ctx->verb->name, "login") != 0))
        fputs("run 'eph login' to sign in again\n", ctx->err);
    return CLI_EXIT_FAILED;
}

int
cli__usage(struct cli_ctx *ctx, const char *fmt, ...)
{
    va_list ap;

    fputs("eph: ", ctx->err);
    va_start(ap, fmt);
    vfprintf(ctx->err, fmt, ap);
    va_end(ap);
    if (ctx->verb)
        fprintf(ctx->err, "\nrun 'eph %s --help' for usage\n", ctx->verb->name);
    else
        fputs("\nrun 'eph --help' for usage\n", ctx->err);
    return CLI_EXIT_USAGE;
}

void
cli__print_json(struct cli_ctx *ctx, const json_t *json)
{
    json_dumpf(json, ctx->out, JSON_INDENT(2) | JSON_ENCODE_ANY);
    fputc('\n', ctx->out);
}

const char *
cli__jstr(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : dflt;
}

int64_t
cli__jint(const json_t *obj, const char *key)
{
    return (int64_t)json_integer_value(json_object_get(obj, key));
}

int64_t
cli__jtime_ms(const json_t *obj, const char *key)
{
    char *ms_key = xasprintf("%s_ms", key);
    int64_t ms = cli__jint(obj, ms_key);
    const char *text = cli__jstr(obj, key, NULL);
    struct tm tm = {0};
    const char *p;
    int64_t frac_ms = 0, offset_s = 0;
    time_t t;

    free(ms_key);
    if (ms > 0 || text == NULL)
        return ms > 0 ? ms : 0;
    p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (p == NULL)
        return 0;
    if (*p == '.') {
        int64_t scale = 100;

        for (p++; *p >= '0' && *p <= '9'; p++) {
            frac_ms += (*p - '0') * scale;
            scale /= 10;
        }
    }
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        int h = (p[1] - '0') * 10 + (p[2] - '0'), m = (p[4] - '0') * 10 + (p[5] - '0');

        offset_s = (*p == '-' ? -1 : 1) * (int64_t)(h * 3600 + m * 60);
    } else if (strcmp(p, "Z") != 0 && strcmp(p, "z") != 0) {
        return 0;
    }
    t = timegm(&tm);
    if (t == (time_t)-1)
        return 0;
    return ((int64_t)t - offset_s) * 1000 + frac_ms;
}

void
cli__jid(const json_t *obj, const char *key, char *out, size_t out_size)
{
    const json_t *v = json_object_get(obj, key);

    if (json_is_integer(v))
        snprintf(out, out_size, "%" PRId64, (int64_t)json_integer_value(v));
    else
        snprintf(out, out_size, "%s", json_is_string(v) ? json_string_value(v) : "");
}

const json_t *
cli__jlist(const json_t *resp, const char *key)
{
    const json_t *list = json_is_array(resp) ? resp : json_object_get(resp, key);

    return json_is_array(list) ? list : NULL;
}

const char *const cli__roles[] = {"admin", "member", "viewer", NULL};
const char *const cli__visibilities[] = {"team", "private", "link", NULL};

int
cli__one_of(const char *value, const char *const *allowed, const char *what, struct eph_err *err)
{
    char expected[256] = "";
    size_t n = 0;

    for (size_t i = 0; allowed[i]; i++) {
        if (strcmp(value, allowed[i]) == 0)
            return 0;
        n++;
    }
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(expected);

        snprintf(expected + used, sizeof(expected) - used, "%s%s",
                 i == 0 ? "" : (i + 1 == n ? " or " : ", "), allowed[i]);
    }
    return eph_err_set(err, EPH_EINVAL, "invalid %s '%s', expected %s", what, value, expected);
}

int
cli__param_add(json_t *params, const char *kv, struct eph_err *err)
{
    const char *eq = strchr(kv, '=');
    char *key;

    if (eq == NULL || eq == kv)
        return eph_err_set(err, EPH_EINVAL, "invalid --param '%s', expected KEY=VALUE", kv);
    key = xstrndup(kv, (size_t)(eq - kv));
    json_object_set_new(params, key, json_string(eq + 1));
    free(key);
    return 0;
}

/* ------------------------------------------------------------- small verbs */

int
cli__cmd_version(struct cli_ctx *ctx, const struct cli_args *args)
{
    fprintf(ctx->out, "eph %s\n", EPH_VERSION);
    return CLI_EXIT_OK;
}

int
cli__cmd_help(struct cli_ctx *ctx, const struct cli_args *args)
{
    const struct cli_verb *verb;
    struct eph_err err = {0};
    int i = 0;

    if (args->n_pos == 0) {
        cli__print_help(ctx->out);
        return CLI_EXIT_OK;
    }
    verb = cli__verb_find((int)args->n_pos, (char **)args->pos, &i, &err);
    if (verb == NULL)
        return cli__usage(ctx, "%s", err.msg);
    if (i < (int)args->n_pos)
        return cli__usage(ctx, "unexpected argument '%s'", args->pos[i]);
    cli__print_verb_help(verb, ctx->out);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- entry point */

static int
run(struct cli_ctx *ctx, int argc, char **argv)
{
    struct cli_args args = {0};
    struct eph_err err = {0};
    const char *output;
    int i = 1;

    if (cli__args_parse(NULL, argc, argv, &i, true, &args, &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (i >= argc) {
        if (cli__has(&args, "help")) {
            cli__print_help(ctx->out);
            return CLI_EXIT_OK;
        }
        cli__print_help(ctx->err);
        return CLI_EXIT_USAGE;
    }
    ctx->verb = cli__verb_find(argc, argv, &i, &err);
    if (ctx->verb == NULL)
        return cli__usage(ctx, "%s", err.msg);
    if (ctx->verb->fn == NULL)
        return cli__usage(ctx, "'%s' must be the first argument: eph %s [flags]", ctx->verb->name,
                          ctx->verb->name);
    if (cli__args_parse(ctx->verb, argc, argv, &i, false, &args, &err) < 0)
        return cli__usage(ctx, "%s", err.msg);
    if (cli__has(&args, "help")) {
        cli__print_verb_help(ctx->verb, ctx->out);
        return CLI_EXIT_OK;
    }
    if (args.n_pos < ctx->verb->min_pos)
        return cli__usage(ctx, "missing %s", ctx->verb->pos_names[args.n_pos]);
    output = cli__arg(&args, "output");
    if (output && strcmp(output, "json") != 0)
        return cli__usage(ctx, "unknown output format '%s', expected json", output);
    ctx->json = output != NULL;
    ctx->flag_server = cli__arg(&args, "server");
    if (ctx->flag_server) {
        char *url = NULL;

        if (cli__server_url_normalize(ctx->flag_server, &url, &err) < 0)
            return cli__usage(ctx, "--server: %s", err.msg);
        free(url);
    }
    ctx->flag_token = cli__arg(&args, "token");
    return ctx->verb->fn(ctx, &args);
}

int
cli_main(int argc, char **argv)
{
    struct cli_ctx ctx = {.out = stdout, .err = stderr};
    int rc;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("eph: cannot initialise libcurl\n", stderr);
        return CLI_EXIT_FAILED;
    }
    rc = run(&ctx, argc, argv);
    cli__ctx_release(&ctx);
    fflush(ctx.out);
    curl_global_cleanup();
    return rc;
}
