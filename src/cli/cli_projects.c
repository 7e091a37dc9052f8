/*
 * cli/cli_projects.c - `eph projects` and `eph project add`: the
 * repositories registered with the server.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/time.h"
#include "util/xmalloc.h"

bool
cli__repo_is_relative_path(const char *repo)
{
    const char *colon = strchr(repo, ':');
    const char *slash = strchr(repo, '/');

    if (repo[0] == '\0' || repo[0] == '/')
        return false;
    if (strstr(repo, "://"))
        return false; /* https://, ssh://, file:// */
    if (colon && (slash == NULL || colon < slash))
        return false; /* git's scp-like syntax: host:path, user@host:path */
    return true;
}

int
cli__cmd_projects(struct cli_ctx *ctx, const struct cli_args *args)
{
    static const char *const headers[] = {"NAME", "REPO", "CREATED_BY", "AGE"};
    struct eph_err err = {0};
    struct cli_table t;
    json_t *resp = NULL;
    const json_t *projects;
    int64_t now_ms = time_wall_ms();

    if (cli__connect(ctx, &err) < 0 ||
        cli__http_json(ctx, "GET", "/projects", NULL, &resp, &err) < 0)
        return cli__fail(ctx, &err);
    if (ctx->json) {
        cli__print_json(ctx, resp);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    projects = json_object_get(resp, "projects");
    if (json_array_size(projects) == 0) {
        fputs("no projects (an admin adds one with 'eph project add NAME --repo URL')\n", ctx->err);
        json_decref(resp);
        return CLI_EXIT_OK;
    }
    cli__table_init(&t, ARRAY_LEN(headers), headers);
    for (size_t i = 0; i < json_array_size(projects); i++) {
        const json_t *p = json_array_get(projects, i);
        char age[32];

        cli__format_age(now_ms, cli__jint(p, "created_at_ms"), age, sizeof(age));
        cli__table_add(&t,
                       (const char *const[]){cli__jstr(p, "name", NULL), cli__jstr(p, "repo", NULL),
                                             cli__jstr(p, "created_by", NULL), age});
    }
    cli__table_print(&t, ctx->out);
    cli__table_release(&t);
    json_decref(resp);
    return CLI_EXIT_OK;
}

int
cli__cmd_project_add(struct cli_ctx *ctx, const struct cli_args *args)
{
    const char *name = args->pos[0];
    const char *repo = cli__arg(args, "repo");
    char resolved[PATH_MAX];
    struct eph_err err = {0};
    json_t *body, *resp = NULL;
    int rc;

    if (repo == NULL || *repo == '\0')
        return cli__usage(ctx, "missing --repo PATH_OR_URL");
    /* The server resolves paths from its own working directory, not ours. */
    if (cli__repo_is_relative_path(repo)) {
        if (realpath(repo, resolved) == NULL) {
            fprintf(ctx->err, "eph: cannot resolve '%s': %s\n", repo, strerror(errno));
            return CLI_EXIT_FAILED;
        }
        repo = resolved;
    }
    if (cli__connect(ctx, &err) < 0)
        return cli__fail(ctx, &err);
    body = json_pack("{s:s, s:s}", "name", name, "repo", repo);
    rc = cli__http_json(ctx, "POST", "/projects", body, &resp, &err);
    json_decref(body);
    if (rc < 0)
        return cli__fail(ctx, &err);
    if (ctx->json)
        cli__print_json(ctx, resp);
    else
        fprintf(ctx->out, "project %s added (%s)\n", cli__jstr(resp, "name", name),
                cli__jstr(resp, "repo", repo));
    json_decref(resp);
    return CLI_EXIT_OK;
}
