/*
 * cli/cli_tokens.c - `eph token create|ls|revoke`: API tokens for CI jobs,
 * scripts and other machines (docs/auth.md).
 *
 * A token's value exists once, in the answer to its creation: `token create`
 * prints it alone on stdout, so that `TOKEN=$(eph token create ...)` captures
 * exactly it, and everything a person should read goes to stderr.
 */
#include "cli/cli_int.h"

#include <stdlib.h>
#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

/* "2026-12-22T10:00:00Z (in 30d)", "never" or "... (expired)". */
static void
format_expiry(int64_t now_ms, int64_t expires_ms, char *out, size_t out_size)
{
    char when[32], left[32];

    if (expires_ms <= 0) {
        snprintf(out, out_size, "never");
        return;
    }
    time_format_rfc3339(expires_ms, when, sizeof(when));
    cli__format_expires(now_ms, expires_ms, left, sizeof(left));
    if (strcmp(left, "expired") == 0)
        snprintf(out, out_size, "%s (expired)", when);
    else
        snprintf(out, out_size, "%s (in %s)", when, left);
}

/* ------------------------------------------------------------- eph token create */

int
cli__cmd_token_create(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = cli__arg(args, "name");
    const char *ttl = cli__arg(args, "ttl");
    const char *scope = cli__arg(args, "scope");
    struct eph_err err = {0};
    json_t *body, *resp = NULL;
    const char *token;
    int64_t ttl_s;
    int rc;

    if (name == NULL || *name == '\0')
        return cli__usage(ctx, "missing --name NAME");
    if (ttl && duration_parse(ttl, &ttl_s, &err) < 0)
        return cli__usage(ctx, "--ttl: %s", err.msg);
    if (scope && cli__one_of(scope, cli__roles, "scope", &err) < 0)
        return cli__usage(ctx, "--scope: %s", err.msg);
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_pack("{s:s}", "name", name);
    if (ttl)
        json_object_set_new(body, "ttl", json_string(ttl));
    if (scope)
        json_object_set_new(body, "scope", json_string(scope));
    rc = cli__http_json(ctx, "POST", "/tokens", body, &resp, &err);
    json_decref(body);
    if (rc < 0)
        return cli__fail(ctx, &err);
    token = cli__jstr(resp, "token", NULL);
    rc = CLI_EXIT_OK;
    if (ctx->json) {
        cli__print_json(ctx, resp);
    } else if (token == NULL || cli__token_check(token, "the server's answer", &err) < 0) {
        fputs("eph: the server's answer has no usable token\n", ctx->err);
        rc = CLI_EXIT_FAILED;
    } else {
        char id[32], expiry[96];

        cli__jid(resp, "id", id, sizeof(id));
        format_expiry(time_wall_ms(), cli__jtime_ms(resp, "expires_at"), expiry, sizeof(expiry));
        fprintf(ctx->out, "%s\n", token);
        fflush(ctx->out);
        fprintf(ctx->err,
                "token %s created: id %s, scope %s, expires %s\n"
                "it is shown only this once: store it now\n",
                cli__jstr(resp, "name", name), *id ? id : "?",
                cli__jstr(resp, "scope", scope ? scope : "?"), expiry);
    }
    json_decref(resp);
    return rc;
}

/* ------------------------------------------------------------- eph token ls */

int
cli__cmd_token_ls(struct cli_ctx *ctx, const struct cli_args *args)
{
    static const char *const headers[] = {"ID",  "NAME",    "USER",     "SCOPE",
                                          "AGE", "EXPIRES", "LAST_USED"};
    struct eph_err err = {0};
    struct cli_table t;
    json_t *resp = NULL;
    const json_t *tokens;
    int64_t now_ms = time_wall_ms();

    if (cli__connect(ctx, &err) < 0 ||
        cli__http_json(ctx, "GET", cli__has(args, "all") ? "/tokens?all=1" : "/tokens", NULL, &resp,
                       &err) < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, resp);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    tokens = cli__jlist(resp, "tokens");
    if (json_array_size(tokens) == 0) {
        fputs("no tokens (create one with 'eph token create --name NAME')\n", ctx->err);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(tokens); i++) {
        const json_t *tok = json_array_get(tokens, i);
        int64_t used_ms = cli__jtime_ms(tok, "last_used_at");
        int64_t expires_ms = cli__jtime_ms(tok, "expires_at");
        char id[32], age[32], expires[32] = "never", used[48] = "never";

        cli__jid(tok, "id", id, sizeof(id));
        cli__format_age(now_ms, cli__jtime_ms(tok, "created_at"), age, sizeof(age));
        if (expires_ms > 0)
            cli__format_expires(now_ms, expires_ms, expires, sizeof(expires));
        if (used_ms > 0) {
            cli__format_age(now_ms, used_ms, used, sizeof(used));
            snprintf(used + strlen(used), sizeof(used) - strlen(used), " ago");
        }
        cli__table_add(&t, (const char *const[]){
                               id, cli__jstr(tok, "name", NULL), cli__jstr(tok, "user", NULL),
                               cli__jstr(tok, "scope", NULL), age, expires, used});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    json_decref(resp);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------- eph token revoke */

int
cli__cmd_token_revoke(struct cli_ctx *ctx, const struct cli_args *args)
{
    struct eph_err err = {0};
    json_t *resp = NULL;
    char *id, *path;
    int rc;

    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    id = cli__url_escape(args->pos[0], false);
    path = xasprintf("/tokens/%s", id);
    free(id);
    rc = cli__http_json(ctx, "DELETE", path, NULL, &resp, &err);
    free(path);
    json_decref(resp);
    if (rc < 0)
        return cli__fail(ctx, &err);
    fprintf(ctx->out, "token %s revoked\n", args->pos[0]);
    return CLI_EXIT_OK;
}
