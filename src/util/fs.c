/*
 * util/fs.c - small, blocking file-system helpers.
 */
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"
#include "util/xmalloc.h"

int
fs_mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int
remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -errno : 0;
    return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
}

int
fs_rm_rf(const char *path)
{
    struct stat st;
    int rc;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlink(path) < 0 ? -errno : 0;
    rc = nftw(path, remove_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    if (rc != 0)
        return rc < 0 ? rc : -EIO;
    return 0;
}

int
fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
    const char *p = data;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    int rc = 0;

    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            break;
        }
        p += n;
        len -= (size_t)n;
    }
    if (rc == 0 && fchmod(fd, mode) < 0)
        rc = -errno;
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

int
fs_read_all(const char *path, size_t max_bytes, char **out, size_t *out_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 4096, len = 0;
    char *data;

    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (fd < 0)
        return -errno;
    data = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            /* Room for one byte past the ceiling: reading it is how a file
             * of exactly max_bytes is told from a larger one. */
            if (cap > max_bytes) {
                free(data);
                close(fd);
                return EPH_ETOOBIG;
            }
            cap = cap * 2 > max_bytes + 1 ? max_bytes + 1 : cap * 2;
            data = xrealloc(data, cap + 1);
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int rc = -errno;
            free(data);
            close(fd);
            return rc;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (len > max_bytes) {
        free(data);
        return EPH_ETOOBIG;
    }
    data[len] = '\0';
    *out = data;
    if (out_len)
        *out_len = len;
    return 0;
}

bool
fs_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}
