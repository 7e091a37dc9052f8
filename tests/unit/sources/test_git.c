/*
 * tests/unit/sources/test_git.c - git sources against a real repository made
 * in a temporary directory: mirror, resolve, read, check out, re-sync.
 */
#include "sources/git.h"

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "util/xmalloc.h"

/* Each test runs in its own forked child, in parallel: its own directory. */
static char tmp_dir[] = "/tmp/eph-test-git-XXXXXX";
static char *repo, *cache;

#define GIT                                                                                        \
    "git -c user.name=t -c user.email=t@example.com -c commit.gpgsign=false "                      \
    "-c tag.gpgsign=false -c init.defaultBranch=main"

/* Runs a shell command; fails the test if it fails. */
static void
sh(const char *fmt, ...)
{
    va_list ap;
    char *cmd;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    cr_assert_eq(system(cmd), 0, "command failed: %s", cmd);
    free(cmd);
}

/* The first line a shell command prints, without its newline (free()). */
static char *
sh_out(const char *fmt, ...)
{
    char line[512] = "";
    va_list ap;
    char *cmd;
    FILE *f;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&cmd, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    if (fgets(line, sizeof(line), f) == NULL)
        line[0] = '\0';
    cr_assert_eq(pclose(f), 0, "command failed: %s", cmd);
    line[strcspn(line, "\n")] = '\0';
    free(cmd);
    return xstrdup(line);
}

static void
setup_repo(void)
{
    cr_assert_not_null(mkdtemp(tmp_dir));
    repo = xasprintf("%s/repo", tmp_dir);
    cache = xasprintf("%s/cache/shop.git", tmp_dir);
    sh("cd %s && " GIT " init -q repo && cd repo && "
       "printf 'version: 1\\n' > ephemera.yaml && mkdir api && echo hello > api/app.txt && "
       "head -c 5000 /dev/zero > big.bin && " GIT " add -A && " GIT " commit -qm one && " GIT
       " tag -a v1 -m v1 && " GIT " checkout -q -b feature && echo feature > api/app.txt && " GIT
       " commit -qam two && " GIT " checkout -q main",
       tmp_dir);
}

static void
teardown_repo(void)
{
    fs_rm_rf(tmp_dir);
    free(repo);
    free(cache);
}

TestSuite(git, .init = setup_repo, .fini = teardown_repo, .timeout = 60);

static void
sync_ok(void)
{
    struct eph_err err = {0};
    int rc = git_cache_sync(repo, cache, &err);

    cr_assert_eq(rc, 0, "sync: %s", err.msg);
}

Test(git, mirrors_a_repository_into_a_bare_cache)
{
    char *path = xasprintf("%s/HEAD", cache);
    char *tmp = xasprintf("%s.tmp", cache);

    sync_ok();
    cr_expect(fs_exists(path));
    sync_ok(); /* the second time is a fetch */
    cr_expect(!fs_exists(tmp));
    free(path);
    free(tmp);
}

Test(git, resolves_branches_tags_and_commit_ids)
{
    char *main_sha = sh_out("git -C %s rev-parse main", repo);
    char *feature_sha = sh_out("git -C %s rev-parse feature", repo);
    struct {
        const char *ref;
        const char *want;
    } cases[] = {
        {"main", main_sha},         {"feature", feature_sha},
        {"v1", main_sha}, /* annotated tag, peeled to its commit */
        {feature_sha, feature_sha}, {"refs/heads/feature", feature_sha},
        {"HEAD", main_sha}, /* the default branch of the repository */
    };
    char sha[GIT_SHA_HEX + 1];
    char short7[8], short4[5];
    struct eph_err err = {0};

    sync_ok();
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        int rc = git_resolve_ref(cache, cases[i].ref, sha, &err);
        cr_expect_eq(rc, 0, "case %zu: %s", i, err.msg);
        cr_expect_str_eq(sha, cases[i].want, "case %zu", i);
    }
    snprintf(short7, sizeof(short7), "%s", feature_sha);
    cr_expect_eq(git_resolve_ref(cache, short7, sha, &err), 0, "%s", err.msg);
    cr_expect_str_eq(sha, feature_sha);
    snprintf(short4, sizeof(short4), "%s", main_sha);
    cr_expect_eq(git_resolve_ref(cache, short4, sha, &err), 0, "%s", err.msg);
    cr_expect_str_eq(sha, main_sha);
    free(main_sha);
    free(feature_sha);
}

Test(git, refuses_an_unknown_branch_by_name)
{
    char sha[GIT_SHA_HEX + 1];
    struct eph_err err = {0};

    sync_ok();
    cr_expect_eq(git_resolve_ref(cache, "nope", sha, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "unknown branch 'nope'");
    cr_expect_eq(git_resolve_ref(cache, "deadbeef", sha, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, "unknown branch or commit 'deadbeef'");
}

Test(git, refuses_refs_that_are_not_valid_names)
{
    static const struct {
        const char *ref, *want;
    } bad[] = {
        {"-x", "invalid ref '-x'"},
        {"--upload-pack=touch /tmp/x", "invalid ref '--upload-pack=touch /tmp/x'"},
        {"a..b", "invalid ref 'a..b'"},
        {"a b", "invalid ref 'a b'"},
        {"a\nb", "invalid ref: it holds control characters"},
        {"", "invalid ref ''"},
        {"main^", "invalid ref 'main^'"},
        {"x.lock", "invalid ref 'x.lock'"},
    };
    char sha[GIT_SHA_HEX + 1];

    sync_ok();
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        struct eph_err err = {0};
        cr_expect_eq(git_resolve_ref(cache, bad[i].ref, sha, &err), EPH_EINVAL, "case %zu", i);
        cr_expect_str_eq(err.msg, bad[i].want, "case %zu", i);
    }
}

Test(git, reads_files_at_a_commit)
{
    char *sha = sh_out("git -C %s rev-parse main", repo);
    char *want_missing = xasprintf("no 'nope.yaml' at commit %.7s", sha);
    char *want_big = xasprintf("'big.bin' at commit %.7s is larger than 4096 bytes", sha);
    struct eph_err err = {0};
    char *data = NULL;
    size_t len = 0;

    sync_ok();
    cr_assert_eq(git_read_file(cache, sha, "ephemera.yaml", 4096, &data, &len, &err), 0, "%s",
                 err.msg);
    cr_expect_str_eq(data, "version: 1\n");
    cr_expect_eq(len, 11);
    free(data);
    cr_assert_eq(git_read_file(cache, sha, "api/app.txt", 4096, &data, &len, &err), 0);
    cr_expect_str_eq(data, "hello\n");
    free(data);

    cr_expect_eq(git_read_file(cache, sha, "nope.yaml", 4096, &data, &len, &err), EPH_ENOTFOUND);
    cr_expect_str_eq(err.msg, want_missing);
    cr_expect_null(data);
    cr_expect_eq(git_read_file(cache, sha, "api", 4096, &data, &len, &err), EPH_ENOTFOUND);
    cr_expect_eq(git_read_file(cache, sha, "big.bin", 4096, &data, &len, &err), EPH_ETOOBIG);
    cr_expect_str_eq(err.msg, want_big);
    cr_expect_eq(git_read_file(cache, sha, "big.bin", 5000, &data, &len, &err), 0);
    cr_expect_eq(len, 5000);
    free(data);
    cr_expect_eq(git_read_file(cache, sha, "../etc/passwd", 4096, &data, &len, &err), EPH_EINVAL);
    cr_expect_eq(git_read_file(cache, "--output=x", "a", 4096, &data, &len, &err), EPH_EINVAL);
    free(sha);
    free(want_missing);
    free(want_big);
}

Test(git, checks_out_a_commit_into_a_new_directory)
{
    char *sha = sh_out("git -C %s rev-parse feature", repo);
    char *dest = xasprintf("%s/envs/1-fx/src", tmp_dir);
    char *file = xasprintf("%s/api/app.txt", dest);
    struct eph_err err = {0};
    char *data = NULL;

    sync_ok();
    cr_assert_eq(git_checkout(cache, sha, dest, &err), 0, "%s", err.msg);
    cr_assert_eq(fs_read_all(file, 1024, &data, NULL), 0);
    cr_expect_str_eq(data, "feature\n");
    free(data);
    cr_expect_eq(git_checkout(cache, sha, dest, &err), EPH_ECONFLICT);
    cr_expect(fs_exists(dest), "an existing directory is left alone");
    free(sha);
    free(dest);
    free(file);
}

Test(git, leaves_nothing_behind_when_a_checkout_fails)
{
    char *dest = xasprintf("%s/envs/2-fx/src", tmp_dir);
    struct eph_err err = {0};

    sync_ok();
    cr_expect_eq(git_checkout(cache, "0123456789012345678901234567890123456789", dest, &err),
                 EPH_EGIT);
    cr_expect(strncmp(err.msg, "cannot check out commit 0123456: ", 33) == 0, "%s", err.msg);
    cr_expect(!fs_exists(dest));
    free(dest);
}

Test(git, sees_new_commits_after_a_resync)
{
    char sha[GIT_SHA_HEX + 1];
    struct eph_err err = {0};
    char *old_sha, *new_sha;

    sync_ok();
    old_sha = sh_out("git -C %s rev-parse main", repo);
    cr_assert_eq(git_resolve_ref(cache, "main", sha, &err), 0);
    cr_expect_str_eq(sha, old_sha);
    sh("cd %s && echo more >> ephemera.yaml && " GIT " commit -qam three && " GIT
       " branch -q -D feature",
       repo);
    new_sha = sh_out("git -C %s rev-parse main", repo);
    sync_ok();
    cr_assert_eq(git_resolve_ref(cache, "main", sha, &err), 0);
    cr_expect_str_eq(sha, new_sha);
    cr_expect_eq(git_resolve_ref(cache, "feature", sha, &err), EPH_ENOTFOUND,
                 "deleted branches are pruned");
    free(old_sha);
    free(new_sha);
}

Test(git, names_a_repository_it_cannot_read)
{
    struct eph_err err = {0};
    char *missing = xasprintf("%s/nope", tmp_dir);
    char *want =
        xasprintf("cannot read repository '%s': repository '%s' does not exist", missing, missing);

    cr_expect_eq(git_cache_sync(missing, cache, &err), EPH_EGIT);
    cr_expect_str_eq(err.msg, want);
    cr_expect(!fs_exists(cache));
    free(missing);
    free(want);
}
