/*
 * fuzz/fuzz_auth_config.c - libFuzzer target for the `auth:` and `notify:`
 * sections of the server's config file (core/auth_config.c).
 *
 * Feeds the bytes to auth_config_load_text() as they come (not
 * NUL-terminated, any size). A config that loads is also asked what the
 * sign-in code and the notifier will ask of it, and its promises are
 * checked: a broken one aborts, and libFuzzer keeps the input.
 *
 *   make build/fuzz/fuzz_auth_config && \
 *   build/fuzz/fuzz_auth_config -max_total_time=60 fuzz/corpus/auth_config
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/auth_config.h"
#include "util/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const emails[] = {
    "", "boss@example.com", "BOSS@EXAMPLE.COM", "a@b@example.org", "nobody", "x@",
};
static const char *const actions[] = {"", "env.create", "env.phase", "user.add", "*", "env."};

/* Asks a loaded config everything, and checks what the header promises. */
static void
use_config(const struct auth_config *ac)
{
    for (size_t i = 0; i < sizeof(emails) / sizeof(emails[0]); i++) {
        enum role r = auth_config_role_for(ac, emails[i]);

        EPH_ASSERT(r == ROLE_ADMIN || r == ac->default_role);
        EPH_ASSERT(ac->default_role >= ROLE_VIEWER && ac->default_role <= ROLE_ADMIN);
        if (ac->n_allow_emails == 0 && ac->n_allow_domains == 0)
            EPH_ASSERT(auth_config_email_allowed(ac, emails[i]));
        else
            (void)auth_config_email_allowed(ac, emails[i]);
    }
    for (size_t i = 0; i < ac->n_providers; i++) {
        const struct auth_provider_cfg *p = &ac->providers[i];

        EPH_ASSERT(auth_config_provider(ac, p->name) == p); /* names are unique */
        EPH_ASSERT(p->client_id && p->client_secret && p->client_secret[0]);
        if (p->type == AUTH_PROVIDER_OIDC)
            EPH_ASSERT(p->issuer && p->scopes && !p->web_url && p->n_orgs == 0);
        else
            EPH_ASSERT(p->web_url && p->api_url && !p->issuer &&
                       (p->n_orgs || p->n_teams || ac->n_allow_emails || ac->n_allow_domains));
    }
    for (size_t i = 0; i < ac->n_sinks; i++) {
        const struct notify_sink_cfg *s = &ac->sinks[i];

        EPH_ASSERT(s->url &&
                   (strncmp(s->url, "http://", 7) == 0 || strncmp(s->url, "https://", 8) == 0));
        EPH_ASSERT(s->n_events > 0);
        EPH_ASSERT(s->type == NOTIFY_SLACK ? s->secret == NULL : s->secret != NULL);
        for (size_t j = 0; j < i; j++)
            EPH_ASSERT(strcmp(ac->sinks[j].name, s->name) != 0);
        for (size_t j = 0; j < sizeof(actions) / sizeof(actions[0]); j++)
            (void)notify_event_wanted(s, actions[j]);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct auth_config ac;
    struct eph_err err = {0};

    auth_config_init(&ac);
    if (auth_config_load_text(&ac, "fuzz.yaml", (const char *)data, size, &err) == 0)
        use_config(&ac);
    else
        EPH_ASSERT(err.code < 0 && err.msg[0] != '\0');
    auth_config_release(&ac);
    return 0;
}
