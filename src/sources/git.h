/*
 * sources/git.h - git repositories as environment sources.
 *
 * A project's repository (URL or local path) is mirrored once into a bare
 * cache under the data directory; refs are resolved and templates read from
 * the cache; each environment gets its own checkout cloned from it.
 *
 * Every function blocks on a `git` child process: call them from a worker
 * (uv_queue_work), never from a loop. Safe to call from several threads at
 * once: operations on one cache are serialised inside.
 */
#ifndef EPH_SOURCES_GIT_H
#define EPH_SOURCES_GIT_H

#include <stddef.h>

#include "util/err.h"

#define GIT_SHA_HEX 40

/*
 * Makes `cache_dir` a bare mirror of `repo` (clone --mirror the first time,
 * fetch --prune after). EPH_EGIT with git's message when the repository
 * cannot be read: "cannot read repository '/x': <git's first error line>".
 */
int git_cache_sync(const char *repo, const char *cache_dir, struct eph_err *err);

/*
 * Resolves `ref` in the cache: a branch name, a tag, or a full or abbreviated
 * commit id (at least 4 hex digits). Fills sha_out (41 bytes). EPH_ENOTFOUND
 * "unknown branch 'nope'" when nothing matches, EPH_EINVAL for a ref that is
 * not a valid name (starts with '-', holds "..", spaces or control chars).
 * Tried in order: refs/heads/REF, refs/tags/REF, then REF as a commit id if it
 * is 4..40 hex digits (then the message is "unknown branch or commit 'REF'").
 * A REF starting with "refs/" is taken as a full ref name (refs/pull/42/head);
 * "HEAD" is the repository's default branch.
 */
int git_resolve_ref(const char *cache_dir, const char *ref, char sha_out[GIT_SHA_HEX + 1],
                    struct eph_err *err);

/*
 * Reads `path` at commit `sha` into *out (NUL-terminated, free()), at most
 * max_bytes. EPH_ENOTFOUND "no 'ephemera.yaml' at commit 1a2b3c4" if absent,
 * EPH_ETOOBIG if larger.
 */
int git_read_file(const char *cache_dir, const char *sha, const char *path, size_t max_bytes,
                  char **out, size_t *len_out, struct eph_err *err);

/*
 * Creates `dest_dir` (which must not exist) holding a checkout of `sha`,
 * cloned from the cache with hard links (fast, independent of later cache
 * changes). On failure nothing is left at dest_dir.
 */
int git_checkout(const char *cache_dir, const char *sha, const char *dest_dir,
                 struct eph_err *err);

#endif
