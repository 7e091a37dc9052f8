/*
 * util/fs.h - small, blocking file-system helpers.
 *
 * Blocking: call them from the control loop only for tiny files, otherwise
 * from a worker (uv_queue_work).
 */
#ifndef EPH_UTIL_FS_H
#define EPH_UTIL_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* mkdir -p; returns 0 or -errno. */
int fs_mkdir_p(const char *path, mode_t mode);

/* rm -rf without following symlinks; a missing path is success. 0 or -errno. */
int fs_rm_rf(const char *path);

/*
 * Writes a file atomically: a temporary file in the same directory, fsync,
 * rename. A crash leaves either the old or the new content. 0 or -errno.
 */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/*
 * Reads a whole file of at most max_bytes into *out (NUL-terminated; free()
 * it). Returns 0, -errno, or EPH_ETOOBIG.
 */
int fs_read_all(const char *path, size_t max_bytes, char **out, size_t *out_len);

bool fs_exists(const char *path);

#endif
