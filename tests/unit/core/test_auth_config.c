/*
 * tests/unit/core/test_auth_config.c - the `auth:` and `notify:` sections of
 * the config file: a full file, defaults, every refusal with its message and
 * position, secrets from files, who may sign in, roles and event patterns.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/auth_config.h"
#include "util/fs.h"

static int
load(struct auth_config *ac, const char *yaml, struct eph_err *err)
{
    auth_config_init(ac);
    return auth_config_load_text(ac, "t.yaml", yaml, strlen(yaml), err);
}

static const char good[] = "listen: 127.0.0.1:8080\n"
                           "auth:\n"
                           "  local: false\n"
                           "  default_role: viewer\n"
                           "  admins: [Boss@Example.com]\n"
                           "  allow_emails: [a@example.com]\n"
                           "  allow_domains: [example.org]\n"
                           "  providers:\n"
                           "    - name: corp\n"
                           "      type: oidc\n"
                           "      issuer: http://127.0.0.1:9000\n"
                           "      client_id: eph\n"
                           "      client_secret: eph-secret\n"
                           "    - name: github\n"
                           "      type: github\n"
                           "      client_id: gh-id\n"
                           "      client_secret: gh-secret\n"
                           "      web_url: https://ghe.example.com\n"
                           "      orgs: [acme]\n"
                           "      teams: [acme/dev]\n"
                           "notify:\n"
                           "  - name: team-chat\n"
                           "    type: slack\n"
                           "    url: http://127.0.0.1:9999/hook\n"
                           "    events: [env.create, env.delete, \"user.*\"]\n"
                           "  - name: audit\n"
                           "    type: webhook\n"
                           "    url: https://audit.example.com/in?x=1\n"
                           "    secret: s3cret\n"
                           "port_range: 20000-20999\n";

Test(auth_config, reads_a_full_file)
{
    struct auth_config ac;
    struct eph_err err = {0};
    const struct auth_provider_cfg *p;

    cr_assert_eq(load(&ac, good, &err), 0, "%s", err.msg);
    cr_expect_not(ac.local);
    cr_expect_eq(ac.default_role, ROLE_VIEWER);
    cr_assert_eq(ac.n_admins, 1);
    cr_expect_str_eq(ac.admins[0], "Boss@Example.com");
    cr_assert_eq(ac.n_allow_emails, 1);
    cr_assert_eq(ac.n_allow_domains, 1);
    cr_assert_eq(ac.n_providers, 2);

    p = auth_config_provider(&ac, "corp");
    cr_assert_not_null(p);
    cr_expect_eq(p->type, AUTH_PROVIDER_OIDC);
    cr_expect_str_eq(p->issuer, "http://127.0.0.1:9000");
    cr_expect_str_eq(p->client_id, "eph");
    cr_expect_str_eq(p->client_secret, "eph-secret");
    cr_expect_str_eq(p->scopes, "openid email profile", "the default scopes");
    cr_expect_null(p->web_url);

    p = auth_config_provider(&ac, "github");
    cr_assert_not_null(p);
    cr_expect_eq(p->type, AUTH_PROVIDER_GITHUB);
    cr_expect_str_eq(p->web_url, "https://ghe.example.com");
    cr_expect_str_eq(p->api_url, "https://api.github.com", "the default API");
    cr_assert_eq(p->n_orgs, 1);
    cr_expect_str_eq(p->orgs[0], "acme");
    cr_assert_eq(p->n_teams, 1);
    cr_expect_str_eq(p->teams[0], "acme/dev");
    cr_expect_null(p->issuer);
    cr_expect_null(auth_config_provider(&ac, "nope"));

    cr_assert_eq(ac.n_sinks, 2);
    cr_expect_str_eq(ac.sinks[0].name, "team-chat");
    cr_expect_eq(ac.sinks[0].type, NOTIFY_SLACK);
    cr_expect_str_eq(ac.sinks[0].url, "http://127.0.0.1:9999/hook");
    cr_expect_null(ac.sinks[0].secret);
    cr_assert_eq(ac.sinks[0].n_events, 3);
    cr_expect_str_eq(ac.sinks[0].events[2], "user.*");
    cr_expect_str_eq(ac.sinks[1].name, "audit");
    cr_expect_eq(ac.sinks[1].type, NOTIFY_WEBHOOK);
    cr_expect_str_eq(ac.sinks[1].secret, "s3cret");
    cr_assert_eq(ac.sinks[1].n_events, 1);
    cr_expect_str_eq(ac.sinks[1].events[0], "env.*", "the default events");

    auth_config_release(&ac);
    cr_expect_eq(ac.n_providers, 0, "released back to the defaults");
    cr_expect(ac.local);
}

Test(auth_config, has_defaults_without_the_sections)
{
    static const char *const files[] = {
        "",        "listen: 127.0.0.1:8080\n", "auth: on\nnotify:\n", "auth: off\n",
        "auth:\n", "auth: {}\nnotify: []\n",
    };

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        struct auth_config ac;
        struct eph_err err = {0};

        cr_expect_eq(load(&ac, files[i], &err), 0, "case %zu: %s", i, err.msg);
        cr_expect(ac.local, "case %zu", i);
        cr_expect_eq(ac.default_role, ROLE_MEMBER, "case %zu", i);
        cr_expect_eq(ac.n_providers + ac.n_sinks + ac.n_admins, 0, "case %zu", i);
        auth_config_release(&ac);
    }
}

static const struct {
    const char *yaml, *want;
} bad[] = {
    {"- a\n", "t.yaml:1:1: the config must be a mapping of settings"},
    {"auth: [a]\n", "t.yaml:1:7: 'auth' must be a mapping (local, default_role, admins, ...) or "
                    "on/off, not a list"},
    {"auth:\n  locl: true\n",
     "t.yaml:2:3: unknown key 'locl' in auth, expected one of: local, default_role, admins, "
     "allow_emails, allow_domains, providers"},
    {"auth:\n  local: yes\n", "t.yaml:2:10: 'local' must be true or false"},
    {"auth:\n  local: \"true\"\n", "t.yaml:2:10: 'local' must be true or false"},
    {"auth:\n  default_role: boss\n",
     "t.yaml:2:17: 'default_role' must be viewer, member or admin"},
    {"auth:\n  default_role: none\n",
     "t.yaml:2:17: 'default_role' must be viewer, member or admin"},
    {"auth:\n  admins: boss@example.com\n",
     "t.yaml:2:11: 'admins' must be a list of strings, not a string"},
    {"auth:\n  admins: [boss]\n", "t.yaml:2:12: 'boss' in 'admins' is not an email address"},
    {"auth:\n  allow_emails: [a@b, '']\n", "t.yaml:2:23: empty entry in 'allow_emails'"},
    {"auth:\n  allow_domains: [a@example.com]\n",
     "t.yaml:2:19: 'a@example.com' in 'allow_domains' is not a domain such as example.com"},
    {"auth:\n  local: true\n  local: false\n", "t.yaml:3:3: duplicate key 'local'"},
    {"auth: {}\nauth: {}\n", "t.yaml:2:1: duplicate key 'auth'"},
    {"auth:\n  providers: {corp: x}\n",
     "t.yaml:2:14: 'providers' must be a list of providers, not a mapping"},
    {"auth:\n  providers: [corp]\n",
     "t.yaml:2:15: a provider must be a mapping with name, type, client_id ..., not a string"},
    {"auth:\n  providers:\n    - type: oidc\n", "t.yaml:3:7: provider needs a 'name'"},
    {"auth:\n  providers:\n    - name: Corp\n",
     "t.yaml:3:13: invalid provider name 'Corp', expected lower-case letters, digits and '-' "
     "(at most 63)"},
    {"auth:\n  providers:\n    - name: corp\n", "t.yaml:3:7: provider 'corp' needs a 'type': "
                                                "oidc or github"},
    {"auth:\n  providers:\n    - name: corp\n      type: saml\n",
     "t.yaml:4:13: unknown type 'saml' of provider 'corp', expected oidc or github"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, client_id: a, client_secret: b}\n",
     "t.yaml:3:7: provider 'corp' needs 'issuer', the URL of the OpenID provider"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, issuer: http://x, client_secret: b}\n",
     "t.yaml:3:7: provider 'corp' needs 'client_id'"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, issuer: http://x, client_id: a}\n",
     "t.yaml:3:7: provider 'corp' needs 'client_secret' or 'client_secret_file'"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, issuer: ftp://x, client_id: a}\n",
     "t.yaml:3:40: 'issuer' must start with http:// or https://"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, isuer: http://x}\n",
     "t.yaml:3:32: unknown key 'isuer' in provider 'corp', expected one of: name, type, "
     "client_id, client_secret, client_secret_file, issuer, scopes"},
    {"auth:\n  providers:\n    - {name: corp, type: oidc, orgs: [acme]}\n",
     "t.yaml:3:32: 'orgs' is for github providers, provider 'corp' is oidc"},
    {"auth:\n  providers:\n    - {name: gh, type: github, issuer: http://x}\n",
     "t.yaml:3:32: 'issuer' is for oidc providers, provider 'gh' is github"},
    {"auth:\n  providers:\n"
     "    - {name: a, type: oidc, issuer: http://x, client_id: a, client_secret: b}\n"
     "    - {name: a, type: oidc, issuer: http://x, client_id: a, client_secret: b}\n",
     "t.yaml:4:14: duplicate provider name 'a'"},
    {"auth:\n  providers:\n"
     "    - {name: a, type: oidc, issuer: http://x, client_id: a, client_secret: b,\n"
     "       client_secret_file: /nonexistent/secret}\n",
     "t.yaml:4:28: provider 'a' has both 'client_secret' and 'client_secret_file', expected one"},
    {"auth:\n  providers:\n"
     "    - {name: a, type: oidc, issuer: http://x, client_id: a,\n"
     "       client_secret_file: /nonexistent/secret}\n",
     "t.yaml:4:28: cannot read client_secret_file '/nonexistent/secret': No such file or "
     "directory"},
    {"auth:\n  providers:\n"
     "    - {name: a, type: oidc, issuer: http://x, client_id: a, client_secret_file: /dev/null}\n",
     "t.yaml:3:81: client_secret_file '/dev/null' is not a regular file with the secret on its "
     "first line"},
    {"auth:\n  providers:\n    - {name: gh, type: github, client_id: a, client_secret: b,\n"
     "       teams: [dev]}\n",
     "t.yaml:4:16: 'dev' in 'teams' is not org/team such as acme/dev"},
    {"auth:\n  providers:\n    - name: gh\n      type: github\n      client_id: a\n"
     "      client_secret: b\n",
     "t.yaml:3:7: provider 'gh': anyone with a GitHub account could sign in: set orgs, teams, "
     "allow_emails or allow_domains"},
    {"notify: {a: b}\n", "t.yaml:1:9: 'notify' must be a list of sinks, not a mapping"},
    {"notify: x\n", "t.yaml:1:9: 'notify' must be a list of sinks, not a string"},
    {"notify:\n  - type: slack\n", "t.yaml:2:5: sink needs a 'name'"},
    {"notify:\n  - name: chat\n    type: email\n",
     "t.yaml:3:11: unknown type 'email' of sink 'chat', expected slack or webhook"},
    {"notify:\n  - name: chat\n    type: slack\n", "t.yaml:2:5: sink 'chat' needs 'url'"},
    {"notify:\n  - {name: chat, type: slack, url: 'hooks.example.com/x'}\n",
     "t.yaml:2:36: 'url' must start with http:// or https://"},
    {"notify:\n  - {name: chat, type: slack, url: 'http:// x'}\n",
     "t.yaml:2:36: 'url' must not contain spaces or control characters"},
    {"notify:\n  - {name: chat, type: slack, url: 'http://x', secret: s}\n",
     "t.yaml:2:48: 'secret' is for webhook sinks, sink 'chat' is slack"},
    {"notify:\n  - {name: chat, type: slack, url: 'http://x', evnts: [a]}\n",
     "t.yaml:2:48: unknown key 'evnts' in sink 'chat', expected one of: name, type, url, events"},
    {"notify:\n  - {name: chat, type: slack, url: 'http://x', events: ['env.*.x']}\n",
     "t.yaml:2:57: invalid event pattern 'env.*.x' in 'events', expected an action such as "
     "env.create or a prefix and a final '*' such as env.*"},
    {"notify:\n  - {name: chat, type: slack, url: 'http://x', events: []}\n",
     "t.yaml:2:56: 'events' of sink 'chat' is empty: leave it out for [env.*]"},
    {"notify:\n  - {name: audit, type: webhook, url: 'http://x'}\n",
     "t.yaml:2:5: webhook sink 'audit' needs 'secret' or 'secret_file' to sign with"},
    {"notify:\n  - {name: a, type: slack, url: 'http://x'}\n"
     "  - {name: a, type: slack, url: 'http://y'}\n",
     "t.yaml:3:12: duplicate sink name 'a'"},
    {"auth: &x {}\nnotify: *x\n", "t.yaml:2:9: anchors and aliases are not supported"},
    {"auth:\n  local: [\n", "t.yaml:3:1: invalid YAML: flow sequence without a closing bracket"},
    {"auth: {}\n---\nauth: {}\n", "t.yaml:2:1: more than one YAML document"},
    {"auth:\n  ? local\n  : true\n",
     "t.yaml:2:3: explicit keys ('? ') are not supported, write 'key: value'"},
    {"auth: \xff\n", "t.yaml:1:7: invalid YAML: not UTF-8 text"},
};

Test(auth_config, refuses_bad_input_with_position_and_reason)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct auth_config ac;
        struct eph_err err = {0};
        int rc = load(&ac, bad[i].yaml, &err);

        cr_expect_lt(rc, 0, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu:\n got  %s\n want %s", i, err.msg,
                         bad[i].want);
        auth_config_release(&ac);
    }
}

Test(auth_config, never_shows_a_secret_in_a_message)
{
    struct auth_config ac;
    struct eph_err err = {0};
    const char *yaml = "notify:\n  - {name: a, type: webhook, secret: topsecret, "
                       "url: 'ftp://u:topsecret@x'}\n";

    cr_expect_lt(load(&ac, yaml, &err), 0);
    cr_expect_null(strstr(err.msg, "topsecret"), "%s", err.msg);
    auth_config_release(&ac);
}

Test(auth_config, lets_github_through_when_the_allow_lists_narrow_it)
{
    struct auth_config ac;
    struct eph_err err = {0};
    const char *yaml = "auth:\n  providers:\n"
                       "    - {name: gh, type: github, client_id: a, client_secret: b}\n"
                       "  allow_domains: [example.com]\n";

    cr_expect_eq(load(&ac, yaml, &err), 0, "%s", err.msg);
    auth_config_release(&ac);
}

Test(auth_config, reads_secrets_from_the_first_line_of_a_file)
{
    char dir[] = "/tmp/eph-authcfg-XXXXXX";
    struct auth_config ac;
    struct eph_err err = {0};
    char *path, *yaml;

    cr_assert_not_null(mkdtemp(dir));
    path = NULL;
    cr_assert_gt(asprintf(&path, "%s/secret", dir), 0);
    cr_assert_eq(fs_write_atomic(path, "file-secret\r\nsecond line\n", 26, 0600), 0);
    cr_assert_gt(asprintf(&yaml,
                          "auth:\n  providers:\n"
                          "    - {name: a, type: oidc, issuer: http://x, client_id: a,"
                          " client_secret_file: %s}\n"
                          "notify:\n  - {name: w, type: webhook, url: http://x, secret_file: %s}\n",
                          path, path),
                 0);
    cr_expect_eq(load(&ac, yaml, &err), 0, "%s", err.msg);
    if (ac.n_providers == 1 && ac.n_sinks == 1) {
        cr_expect_str_eq(ac.providers[0].client_secret, "file-secret");
        cr_expect_str_eq(ac.sinks[0].secret, "file-secret");
    }
    auth_config_release(&ac);

    cr_assert_eq(fs_write_atomic(path, "\nx\n", 3, 0600), 0);
    cr_expect_lt(load(&ac, yaml, &err), 0);
    cr_expect_not_null(strstr(err.msg, "is not a regular file with the secret on its first line"),
                       "an empty first line: %s", err.msg);
    auth_config_release(&ac);
    unlink(path);
    rmdir(dir);
    free(path);
    free(yaml);
}

Test(auth_config, loads_a_file_and_names_it_in_errors)
{
    char path[] = "/tmp/eph-authcfg-XXXXXX";
    int fd = mkstemp(path);
    struct auth_config ac;
    struct eph_err err = {0};
    const char *yaml = "auth:\n  local: maybe\n";
    char want[256];

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, yaml, strlen(yaml)), (ssize_t)strlen(yaml));
    close(fd);
    auth_config_init(&ac);
    cr_expect_lt(auth_config_load_file(&ac, path, &err), 0);
    snprintf(want, sizeof(want), "%s:2:10: 'local' must be true or false", path);
    cr_expect_str_eq(err.msg, want);
    auth_config_release(&ac);
    unlink(path);

    auth_config_init(&ac);
    cr_expect_lt(auth_config_load_file(&ac, "/nonexistent/eph.yaml", &err), 0);
    cr_expect_str_eq(err.msg,
                     "cannot read config '/nonexistent/eph.yaml': No such file or directory");
    auth_config_release(&ac);
}

Test(auth_config, allows_emails_by_address_or_exact_domain_ignoring_case)
{
    struct auth_config ac;

    auth_config_init(&ac);
    cr_expect(auth_config_email_allowed(&ac, "anyone@anywhere.io"), "both lists empty");
    cr_expect(auth_config_email_allowed(&ac, ""), "both lists empty");

    ac.allow_emails = (char *[]){"Alice@Other.org"};
    ac.n_allow_emails = 1;
    ac.allow_domains = (char *[]){"example.com"};
    ac.n_allow_domains = 1;
    cr_expect(auth_config_email_allowed(&ac, "alice@other.ORG"));
    cr_expect(auth_config_email_allowed(&ac, "bob@example.com"));
    cr_expect(auth_config_email_allowed(&ac, "Bob@EXAMPLE.com"));
    cr_expect(auth_config_email_allowed(&ac, "weird@name@example.com"), "after the last '@'");
    cr_expect_not(auth_config_email_allowed(&ac, "bob@x.example.com"), "no subdomains");
    cr_expect_not(auth_config_email_allowed(&ac, "bob@example.com.evil.io"));
    cr_expect_not(auth_config_email_allowed(&ac, "example.com@evil.io"));
    cr_expect_not(auth_config_email_allowed(&ac, "bob@other.org"));
    cr_expect_not(auth_config_email_allowed(&ac, "example.com"));
    cr_expect_not(auth_config_email_allowed(&ac, ""));
    cr_expect_not(auth_config_email_allowed(&ac, NULL));
    /* The arrays are the test's: nothing for release to free. */
}

Test(auth_config, makes_listed_admins_admin_and_others_the_default_role)
{
    struct auth_config ac;
    struct eph_err err = {0};

    cr_assert_eq(load(&ac, "auth:\n  admins: [Boss@Example.com]\n", &err), 0, "%s", err.msg);
    cr_expect_eq(auth_config_role_for(&ac, "boss@example.COM"), ROLE_ADMIN);
    cr_expect_eq(auth_config_role_for(&ac, "other@example.com"), ROLE_MEMBER);
    cr_expect_eq(auth_config_role_for(&ac, NULL), ROLE_MEMBER);
    ac.default_role = ROLE_VIEWER;
    cr_expect_eq(auth_config_role_for(&ac, "other@example.com"), ROLE_VIEWER);
    auth_config_release(&ac);
}

Test(auth_config, matches_event_patterns_exactly_or_by_prefix)
{
    struct notify_sink_cfg s = {
        .events = (char *[]){"env.create", "user.*"},
        .n_events = 2,
    };
    struct notify_sink_cfg all = {.events = (char *[]){"*"}, .n_events = 1};

    cr_expect(notify_event_wanted(&s, "env.create"));
    cr_expect_not(notify_event_wanted(&s, "env.created"));
    cr_expect_not(notify_event_wanted(&s, "env.delete"));
    cr_expect(notify_event_wanted(&s, "user.add"));
    cr_expect(notify_event_wanted(&s, "user."));
    cr_expect_not(notify_event_wanted(&s, "user"));
    cr_expect_not(notify_event_wanted(&s, "USER.add"), "case-sensitive");
    cr_expect(notify_event_wanted(&all, "anything.at.all"));
    cr_expect_not(notify_event_wanted(&s, NULL));
}
