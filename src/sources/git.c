/*
 * sources/git.c - git repositories as environment sources, through the `git`
 * command.
 *
 * Every operation runs `git` with proc_run() (blocking: worker threads only),
 * with GIT_TERMINAL_PROMPT=0 and ssh in batch mode so that nothing can wait
 * for a password, and with a deadline. Messages carry the first line of git's
 * stderr, without its "fatal: " prefix.
 *
 * Operations on one cache directory are serialised by a mutex of their own,
 * found by the directory's name as given (callers spell a cache's path one
 * way: the reconciler derives it from the data directory), so a checkout never
 * reads a cache that a fetch is rewriting, while different projects proceed in
 * parallel.
 */
#include "sources/git.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/fs.h"
#include "util/proc.h"
#include "util/xmalloc.h"

/* Local operations (rev-parse, cat-file, local clone, checkout) are quick;
 * two minutes means git is stuck, not busy. */
#define GIT_LOCAL_TIMEOUT_MS (120 * 1000)
/* A first mirror of a large repository over the network may take a while. */
#define GIT_NET_TIMEOUT_MS (600 * 1000)
/* Enough for any message or object id git prints for the calls below. */
#define GIT_MAX_OUTPUT_BYTES (64 * 1024)
/* Longest ref name we accept; git's own limit is the file system's. */
#define GIT_REF_MAX 255
/* Longest repository path or URL we accept. */
#define GIT_REPO_MAX 4096

extern char **environ;

/* ------------------------------------------------------------- cache locks */

struct cache_lock {
    struct cache_lock *next;
    char *dir; /* the cache directory, trailing slashes removed */
    int users; /* threads holding or waiting for mu; freed at 0 */
    pthread_mutex_t mu;
};

static pthread_mutex_t locks_mu = PTHREAD_MUTEX_INITIALIZER;
static struct cache_lock *locks; /* under locks_mu */

/* A copy of `dir` without trailing slashes (but "/" stays "/"). */
static char *
dir_key(const char *dir)
{
    size_t n = strlen(dir);

    while (n > 1 && dir[n - 1] == '/')
        n--;
    return xstrndup(dir, n);
}

static struct cache_lock *
cache_lock(const char *dir)
{
    char *key = dir_key(dir);
    struct cache_lock *l;

    pthread_mutex_lock(&locks_mu);
    for (l = locks; l != NULL; l = l->next) {
        if (strcmp(l->dir, key) == 0)
            break;
    }
    if (l == NULL) {
        l = xcalloc(1, sizeof(*l));
        l->dir = key;
        key = NULL;
        pthread_mutex_init(&l->mu, NULL);
        l->next = locks;
        locks = l;
    }
    l->users++;
    pthread_mutex_unlock(&locks_mu);
    free(key);
    pthread_mutex_lock(&l->mu);
    return l;
}

static void
cache_unlock(struct cache_lock *l)
{
    pthread_mutex_unlock(&l->mu);
    pthread_mutex_lock(&locks_mu);
    if (--l->users == 0) {
        struct cache_lock **pp = &locks;
        while (*pp != l)
            pp = &(*pp)->next;
        *pp = l->next;
        pthread_mutex_destroy(&l->mu);
        free(l->dir);
        free(l);
    }
    pthread_mutex_unlock(&locks_mu);
}

/* ------------------------------------------------------------- running git */

/* Variables that would point git at another repository than the one we name
 * (set, for instance, when the server is started from a git hook). */
static const char *const repo_env_vars[] = {
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_PREFIX",
    "GIT_SHALLOW_FILE",
    "GIT_IMPLICIT_WORK_TREE",
    "GIT_GRAFT_FILE",
    "GIT_TERMINAL_PROMPT",
};

static bool
env_is(const char *entry, const char *name)
{
    size_t n = strlen(name);

    return strncmp(entry, name, n) == 0 && entry[n] == '=';
}

/* Our environment for git: without repository overrides, never prompting.
 * Free with free_env(). */
static char **
git_environ(void)
{
    size_t n = 0, o = 0;
    bool have_ssh = false;
    char **envp;

    while (environ[n] != NULL)
        n++;
    envp = xcalloc(n + 3, sizeof(*envp));
    for (size_t i = 0; i < n; i++) {
        bool skip = false;
        for (size_t k = 0; k < ARRAY_LEN(repo_env_vars) && !skip; k++)
            skip = env_is(environ[i], repo_env_vars[k]);
        if (skip)
            continue;
        if (env_is(environ[i], "GIT_SSH_COMMAND") || env_is(environ[i], "GIT_SSH"))
            have_ssh = true;
        envp[o++] = xstrdup(environ[i]);
    }
    envp[o++] = xstrdup("GIT_TERMINAL_PROMPT=0");
    /* ssh asks for passwords and host keys on the terminal, not on stdin. */
    if (!have_ssh)
        envp[o++] = xstrdup("GIT_SSH_COMMAND=ssh -o BatchMode=yes");
    envp[o] = NULL;
    return envp;
}

static void
free_env(char **envp)
{
    for (size_t i = 0; envp[i] != NULL; i++)
        free(envp[i]);
    free(envp);
}

/*
 * Why a git run failed, for messages: the first non-empty line of its stderr
 * without "fatal: " / "error: ", else how it ended.
 */
static void
describe_failure(const struct proc_result *res, int64_t timeout_ms, char *why, size_t why_size)
{
    const char *p = res->err ? res->err : "";
    size_t n;

    if (res->timed_out) {
        snprintf(why, why_size, "git timed out after %llds", (long long)(timeout_ms / 1000));
        return;
    }
    while (*p == '\n' || *p == '\r' || *p == ' ')
        p++;
    n = strcspn(p, "\r\n");
    if (n > 0) {
        static const char *const prefixes[] = {"fatal: ", "error: "};
        for (size_t i = 0; i < ARRAY_LEN(prefixes); i++) {
            size_t pl = strlen(prefixes[i]);
            if (n > pl && strncmp(p, prefixes[i], pl) == 0) {
                p += pl;
                n -= pl;
                break;
            }
        }
        /* git ends some messages with a period; ours never do. */
        if (n > 1 && p[n - 1] == '.')
            n--;
        snprintf(why, why_size, "%.*s", (int)n, p);
    } else if (res->term_signal) {
        snprintf(why, why_size, "git killed by signal %d", res->term_signal);
    } else {
        snprintf(why, why_size, "git exited with status %d", res->exit_code);
    }
}

/*
 * Runs git with argv (argv[0] is "git"). Returns 0 when it ran and exited 0,
 * EPH_EGIT when it ran and failed, -errno when it could not be started; `why`
 * says what happened in the last two cases. Release *res in every case.
 */
static int
git_run(const char *const argv[], int64_t timeout_ms, size_t max_out, struct proc_result *res,
        char *why, size_t why_size)
{
    char **envp = git_environ();
    int rc = proc_run(argv, NULL, envp, timeout_ms, max_out, res);

    free_env(envp);
    if (rc < 0) {
        snprintf(why, why_size, "cannot run git: %s", eph_strerror(rc));
        return rc;
    }
    if (res->exit_code != 0 || res->timed_out) {
        describe_failure(res, timeout_ms, why, why_size);
        return EPH_EGIT;
    }
    return 0;
}

/* ------------------------------------------------------------- validation */

static bool
has_control_chars(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    }
    return false;
}

static bool
is_hex(const char *s, size_t min_len, size_t max_len)
{
    size_t n = strlen(s);

    if (n < min_len || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* git check-ref-format's rules, plus no leading '-' (it would read as an option). */
static bool
ref_name_valid(const char *ref)
{
    size_t n = strlen(ref);

    if (n == 0 || n > GIT_REF_MAX || ref[0] == '-' || ref[0] == '/' || ref[n - 1] == '/' ||
        ref[n - 1] == '.' || has_control_chars(ref))
        return false;
    if (strstr(ref, "..") || strstr(ref, "@{") || strstr(ref, "//") || strstr(ref, "/.") ||
        strcmp(ref, "@") == 0)
        return false;
    if (strpbrk(ref, " ~^:?*[\\") != NULL || ref[0] == '.')
        return false;
    if (n >= 5 && strcmp(ref + n - 5, ".lock") == 0)
        return false;
    return true;
}

/* A path inside a commit: relative, no "." or ".." component, printable. */
static bool
tree_path_valid(const char *path)
{
    const char *p = path;

    if (*p == '\0' || *p == '/' || has_control_chars(p) || strlen(p) > 4096)
        return false;
    while (*p) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        p += n;
        if (*p == '/')
            p++;
    }
    return p[-1] != '/';
}

/* ------------------------------------------------------------- operations */

int
git_cache_sync(const char *repo, const char *cache_dir, struct eph_err *err)
{
    char why[EPH_ERR_MSG_MAX];
    struct proc_result res = {0};
    struct cache_lock *lock;
    char *key = NULL, *tmp = NULL;
    int rc;

    if (repo[0] == '\0' || strlen(repo) > GIT_REPO_MAX || has_control_chars(repo))
        return eph_err_set(err, EPH_EINVAL, "invalid repository '%s'", repo);
    lock = cache_lock(cache_dir);
    key = dir_key(cache_dir);
    if (!fs_exists(key)) {
        /* Clone beside the cache and rename, so that a crash mid-clone never
         * leaves a half-made cache that later fetches would trust. */
        tmp = xasprintf("%s.tmp", key);
        fs_rm_rf(tmp);
        const char *argv[] = {"git", "clone", "--mirror", "--quiet", "--", repo, tmp, NULL};
        rc = git_run(argv, GIT_NET_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, sizeof(why));
        if (rc < 0) {
            fs_rm_rf(tmp);
            rc = eph_err_set(err, EPH_EGIT, "cannot read repository '%s': %s", repo, why);
            goto out;
        }
        if (rename(tmp, key) < 0) {
            rc = -errno;
            fs_rm_rf(tmp);
            rc = eph_err_set(err, rc, "cannot create '%s': %s", key, eph_strerror(rc));
            goto out;
        }
    } else {
        const char *argv[] = {"git", "-C", key, "fetch", "--prune", "--quiet", "origin", NULL};
        rc = git_run(argv, GIT_NET_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, sizeof(why));
        if (rc < 0) {
            rc = eph_err_set(err, EPH_EGIT, "cannot read repository '%s': %s", repo, why);
            goto out;
        }
    }
    rc = 0;
out:
    proc_result_release(&res);
    cache_unlock(lock);
    free(tmp);
    free(key);
    return rc;
}

/*
 * Resolves one candidate name to a commit. Returns 0 and fills sha_out,
 * EPH_ENOTFOUND when git knows no such commit, or EPH_EGIT with `why`.
 */
static int
resolve_one(const char *cache_dir, const char *name, char sha_out[GIT_SHA_HEX + 1], char *why,
            size_t why_size)
{
    struct proc_result res = {0};
    char *spec = xasprintf("%s^{commit}", name);
    const char *argv[] = {"git", "-C", cache_dir, "rev-parse", "--verify", "--quiet", spec, NULL};
    int rc = git_run(argv, GIT_LOCAL_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, why_size);

    if (rc == EPH_EGIT && res.exit_code == 1 && !res.timed_out) {
        rc = EPH_ENOTFOUND; /* --verify --quiet: exit 1, silent, when nothing matches */
    } else if (rc == 0) {
        size_t n = strcspn(res.out, "\r\n");
        if (n != GIT_SHA_HEX) {
            snprintf(why, why_size, "unexpected object id '%.*s'", (int)(n > 64 ? 64 : n), res.out);
            rc = EPH_EGIT;
        } else {
            memcpy(sha_out, res.out, GIT_SHA_HEX);
            sha_out[GIT_SHA_HEX] = '\0';
        }
    }
    proc_result_release(&res);
    free(spec);
    return rc;
}

int
git_resolve_ref(const char *cache_dir, const char *ref, char sha_out[GIT_SHA_HEX + 1],
                struct eph_err *err)
{
    char why[EPH_ERR_MSG_MAX];
    char *candidates[3] = {NULL, NULL, NULL};
    size_t n = 0;
    struct cache_lock *lock;
    bool hex = is_hex(ref, 4, GIT_SHA_HEX);
    int rc = EPH_ENOTFOUND;

    sha_out[0] = '\0';
    if (!ref_name_valid(ref)) {
        if (has_control_chars(ref))
            return eph_err_set(err, EPH_EINVAL, "invalid ref: it holds control characters");
        return eph_err_set(err, EPH_EINVAL, "invalid ref '%.*s'", GIT_REF_MAX, ref);
    }
    if (strncmp(ref, "refs/", 5) == 0 || strcmp(ref, "HEAD") == 0) {
        /* A full ref name, e.g. refs/pull/42/head mirrored from a forge, or
         * HEAD: the mirror's HEAD names the repository's default branch. */
        candidates[n++] = xstrdup(ref);
    } else {
        candidates[n++] = xasprintf("refs/heads/%s", ref);
        candidates[n++] = xasprintf("refs/tags/%s", ref);
        if (hex)
            candidates[n++] = xstrdup(ref);
    }
    lock = cache_lock(cache_dir);
    if (!fs_exists(cache_dir)) {
        rc = eph_err_set(err, EPH_EGIT, "no repository cache at '%s'", cache_dir);
        goto out;
    }
    for (size_t i = 0; i < n && rc == EPH_ENOTFOUND; i++)
        rc = resolve_one(cache_dir, candidates[i], sha_out, why, sizeof(why));
    if (rc == EPH_ENOTFOUND) {
        if (hex)
            eph_err_set(err, rc, "unknown branch or commit '%s'", ref);
        else
            eph_err_set(err, rc, "unknown branch '%s'", ref);
    } else if (rc < 0) {
        rc = eph_err_set(err, EPH_EGIT, "cannot resolve '%s': %s", ref, why);
    }
out:
    cache_unlock(lock);
    for (size_t i = 0; i < n; i++)
        free(candidates[i]);
    return rc;
}

int
git_read_file(const char *cache_dir, const char *sha, const char *path, size_t max_bytes,
              char **out, size_t *len_out, struct eph_err *err)
{
    char why[EPH_ERR_MSG_MAX];
    struct proc_result res = {0};
    struct cache_lock *lock = NULL;
    char *object = NULL;
    unsigned long long size;
    char *end;
    int rc;

    *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!is_hex(sha, 4, GIT_SHA_HEX))
        return eph_err_set(err, EPH_EINVAL, "invalid commit id '%.64s'", sha);
    if (!tree_path_valid(path))
        return eph_err_set(err, EPH_EINVAL, "invalid path '%.256s'", path);
    object = xasprintf("%s:%s", sha, path);
    lock = cache_lock(cache_dir);
    if (!fs_exists(cache_dir)) {
        rc = eph_err_set(err, EPH_EGIT, "no repository cache at '%s'", cache_dir);
        goto out;
    }
    {
        /* Size first: a file over the limit is refused without reading it. */
        const char *argv[] = {"git", "-C", cache_dir, "cat-file", "-s", object, NULL};
        rc = git_run(argv, GIT_LOCAL_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, sizeof(why));
    }
    if (rc == EPH_EGIT && res.exit_code == 128) {
        /* "path 'x' does not exist in ..." or an unknown commit */
        rc = eph_err_set(err, EPH_ENOTFOUND, "no '%s' at commit %.7s", path, sha);
        goto out;
    }
    if (rc < 0) {
        rc = eph_err_set(err, EPH_EGIT, "cannot read '%s' at commit %.7s: %s", path, sha, why);
        goto out;
    }
    errno = 0;
    size = strtoull(res.out, &end, 10);
    if (errno != 0 || end == res.out) {
        rc = eph_err_set(err, EPH_EGIT, "cannot read '%s' at commit %.7s: bad size '%.32s'", path,
                         sha, res.out);
        goto out;
    }
    if (size > max_bytes) {
        rc = eph_err_set(err, EPH_ETOOBIG, "'%s' at commit %.7s is larger than %zu bytes", path,
                         sha, max_bytes);
        goto out;
    }
    proc_result_release(&res);
    {
        const char *argv[] = {"git", "-C", cache_dir, "cat-file", "blob", object, NULL};
        rc = git_run(argv, GIT_LOCAL_TIMEOUT_MS, (size_t)size + 1, &res, why, sizeof(why));
    }
    if (rc == EPH_EGIT && res.exit_code == 128) {
        /* a directory or a submodule: not a file we can read */
        rc = eph_err_set(err, EPH_ENOTFOUND, "no '%s' at commit %.7s", path, sha);
        goto out;
    }
    if (rc < 0) {
        rc = eph_err_set(err, EPH_EGIT, "cannot read '%s' at commit %.7s: %s", path, sha, why);
        goto out;
    }
    if (res.out_len != size) {
        rc = eph_err_set(err, EPH_EGIT, "cannot read '%s' at commit %.7s: short read", path, sha);
        goto out;
    }
    *out = res.out;
    res.out = NULL; /* the caller owns it now */
    if (len_out)
        *len_out = (size_t)size;
    rc = 0;
out:
    proc_result_release(&res);
    if (lock)
        cache_unlock(lock);
    free(object);
    return rc;
}

int
git_checkout(const char *cache_dir, const char *sha, const char *dest_dir, struct eph_err *err)
{
    char why[EPH_ERR_MSG_MAX];
    struct proc_result res = {0};
    struct cache_lock *lock;
    int rc;

    if (!is_hex(sha, 4, GIT_SHA_HEX))
        return eph_err_set(err, EPH_EINVAL, "invalid commit id '%.64s'", sha);
    if (fs_exists(dest_dir))
        return eph_err_set(err, EPH_ECONFLICT, "'%s' already exists", dest_dir);
    lock = cache_lock(cache_dir);
    {
        /* A plain local path makes git hard-link the objects: fast, and the
         * checkout keeps its objects whatever later happens to the cache. */
        const char *argv[] = {"git", "clone",   "--quiet", "--no-checkout",
                              "--",  cache_dir, dest_dir,  NULL};
        rc = git_run(argv, GIT_LOCAL_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, sizeof(why));
    }
    if (rc == 0) {
        proc_result_release(&res);
        const char *argv[] = {"git",      "-C",      dest_dir,   "-c", "advice.detachedHead=false",
                              "checkout", "--quiet", "--detach", sha,  NULL};
        rc = git_run(argv, GIT_LOCAL_TIMEOUT_MS, GIT_MAX_OUTPUT_BYTES, &res, why, sizeof(why));
    }
    if (rc < 0) {
        fs_rm_rf(dest_dir);
        rc = eph_err_set(err, EPH_EGIT, "cannot check out commit %.7s: %s", sha, why);
    }
    proc_result_release(&res);
    cache_unlock(lock);
    return rc;
}
