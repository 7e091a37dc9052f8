/*
 * core/auth_config.h - the `auth:` and `notify:` sections of the server's
 * config file: how people sign in (the local form, OIDC and GitHub
 * providers, who may and who becomes admin) and where events are sent.
 *
 * The same YAML file holds the flat settings of core/config.h, which
 * config_load_file() reads and which skips these two sections (when their
 * value is not a scalar: `auth: on` is the flat setting). This reader skips
 * everything else, so each key is read by exactly one of the two.
 *
 *   auth:
 *     local: true                  # the local-users sign-in form
 *     default_role: member         # role of a user created at first sign-in
 *     admins: [boss@example.com]   # emails made admin at first sign-in
 *     allow_emails: [a@example.com]
 *     allow_domains: [example.com]
 *     providers:
 *       - { name: corp, type: oidc, issuer: https://id.example.com,
 *           client_id: eph, client_secret_file: /etc/eph/corp.secret }
 *       - { name: github, type: github, client_id: x, client_secret: y,
 *           orgs: [acme], teams: [acme/dev] }
 *   notify:
 *     - { name: team-chat, type: slack, url: https://hooks.example.com/x,
 *         events: [env.create, "env.*"] }
 *     - { name: audit, type: webhook, url: https://audit.example.com/in,
 *         secret_file: /etc/eph/audit.secret }
 *
 * Who may sign in through a provider: allow_emails and allow_domains (by
 * auth_config_email_allowed(), both empty: anyone the provider vouches for)
 * and, for GitHub, membership of one of `orgs` or `teams` when either is
 * set. A GitHub provider must be narrowed by at least one of the four, as
 * anyone can make a GitHub account; an OIDC issuer is the organisation's
 * own. Applying these rules at sign-in is the auth module's business.
 *
 * Secrets (client secrets, webhook secrets) are read from the file or from
 * the first line of the file named by *_file; they are never put in an
 * error message, and must never be logged.
 *
 * Read once at start-up; immutable afterwards. Any thread may read it.
 */
#ifndef EPH_CORE_AUTH_CONFIG_H
#define EPH_CORE_AUTH_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/access.h"
#include "util/err.h"

/* The largest file of secrets (client_secret_file, secret_file) read. */
#define AUTH_CONFIG_MAX_SECRET_FILE_BYTES 65536

enum auth_provider_type {
    AUTH_PROVIDER_OIDC,   /* OpenID Connect: discovery at <issuer>/.well-known/... */
    AUTH_PROVIDER_GITHUB, /* GitHub's OAuth apps (github.com or GitHub Enterprise) */
};

/* One entry of auth.providers. Strings are owned by the struct. */
struct auth_provider_cfg {
    char *name; /* DNS label, unique: /auth/oidc/<name>/... */
    enum auth_provider_type type;
    char *client_id;
    char *client_secret; /* secret: never logged or shown */
    /* oidc only (NULL for github) */
    char *issuer; /* http(s) URL, as given */
    char *scopes; /* space-separated; default "openid email profile" */
    /* github only (NULL and 0 for oidc) */
    char *web_url; /* where people sign in; default https://github.com */
    char *api_url; /* REST API; default https://api.github.com */
    char **orgs;   /* organisation logins: a member of one may sign in */
    size_t n_orgs;
    char **teams; /* "org/team-slug": a member of one may sign in */
    size_t n_teams;
};

enum notify_sink_type {
    NOTIFY_SLACK,   /* Slack-compatible incoming webhook: {"text": "..."} */
    NOTIFY_WEBHOOK, /* the event as JSON, signed with HMAC-SHA256 (notify/notify.h) */
};

/* One entry of notify. Strings are owned by the struct. */
struct notify_sink_cfg {
    char *name; /* DNS label, unique; names the delivery cursor */
    enum notify_sink_type type;
    char *url;     /* http(s) URL to POST to; may carry a secret (Slack's path) */
    char *secret;  /* webhook: the HMAC key (secret: never logged); slack: NULL */
    char **events; /* patterns: an action ("env.create"), or a prefix and a
                      final '*' ("env.*", "*"); default {"env.*"} */
    size_t n_events;
};

/* Both sections. auth_config_init() gives the defaults (no file, or a file
 * without the sections). */
struct auth_config {
    bool local;             /* the local-users sign-in form; default true */
    enum role default_role; /* of a user created at first sign-in through a provider;
                               default ROLE_MEMBER */
    char **admins;          /* emails made admin at first sign-in (as written) */
    size_t n_admins;
    char **allow_emails; /* who may sign in through a provider, by email ... */
    size_t n_allow_emails;
    char **allow_domains; /* ... or by the domain after the email's last '@' */
    size_t n_allow_domains;
    struct auth_provider_cfg *providers; /* in file order */
    size_t n_providers;
    struct notify_sink_cfg *sinks; /* in file order */
    size_t n_sinks;
};

/* Fills *ac with the defaults: local sign-in on, default role member, no
 * lists, no providers, no sinks. */
void auth_config_init(struct auth_config *ac);
/* Frees what *ac holds (secrets are wiped first) and leaves the defaults. */
void auth_config_release(struct auth_config *ac);

/*
 * Reads the `auth:` and `notify:` sections of the config file at `path`
 * into *ac, which auth_config_init() prepared; other top-level keys are
 * left to config_load_file(), as is a scalar `auth` (the flat setting).
 * Unknown keys in the sections are refused, as are duplicate provider or
 * sink names, URLs not starting with http:// or https://, and a GitHub
 * provider nothing narrows ("anyone with a GitHub account could sign in:
 * set orgs, teams, allow_emails or allow_domains"). Errors name the file,
 * line and column and what was expected ("eph.yaml:7:9: unknown key 'x' in
 * provider 'corp', expected one of: ..."). Returns 0, EPH_EINVAL, EPH_EPARSE,
 * or -errno / EPH_ETOOBIG for a file that cannot be read. On failure *ac
 * may hold part of the file: release it either way.
 *
 * A relative client_secret_file or secret_file is taken from the working
 * directory; it must be a regular file, and its first line (without the
 * line end) is the secret.
 */
int auth_config_load_file(struct auth_config *ac, const char *path, struct eph_err *err);

/* The same for `len` bytes of YAML (need not be NUL-terminated); `name`
 * names them in messages. What auth_config_load_file() calls. */
int auth_config_load_text(struct auth_config *ac, const char *name, const char *text, size_t len,
                          struct eph_err *err);

/*
 * True if `email` may sign in through a provider: both allow lists empty,
 * or the email is in allow_emails, or the part after its last '@' is in
 * allow_domains (exactly: "example.com" does not let in "x.example.com").
 * Case-insensitive. An empty or NULL email is allowed only when both lists
 * are empty.
 */
bool auth_config_email_allowed(const struct auth_config *ac, const char *email);

/* The role of a user created at first sign-in: ROLE_ADMIN if `email` is in
 * admins (case-insensitive), else default_role. */
enum role auth_config_role_for(const struct auth_config *ac, const char *email);

/* The provider named `name`, or NULL. Borrowed from *ac. */
const struct auth_provider_cfg *auth_config_provider(const struct auth_config *ac,
                                                     const char *name);

/* "oidc", "github"; "slack", "webhook". */
const char *auth_provider_type_name(enum auth_provider_type type);
const char *notify_sink_type_name(enum notify_sink_type type);

/* True if an event with `action` ("env.create") is to be sent to sink s:
 * a pattern equals it, or one ending in '*' is a prefix of it. Case-sensitive. */
bool notify_event_wanted(const struct notify_sink_cfg *s, const char *action);

#endif
