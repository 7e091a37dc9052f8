/*
 * drivers/local/local_user.c - the user environment processes run as when the
 * server runs as root (the `run_as` setting): looking it up once at start-up,
 * checking that it can reach the data directory at all, and handing it the
 * trees it must write (an environment's checkout and data).
 *
 * Handing a tree over runs as root over files that code from any branch may
 * be changing at the same moment, so it never resolves a path twice: each
 * entry is opened without following links (O_PATH | O_NOFOLLOW), then judged
 * and changed through that descriptor, so the inode given away is the one
 * that was looked at.
 */
#define LOG_MOD "local"

#include "drivers/local/local_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/xmalloc.h"

/* Deepest nesting a chown walk descends: it holds one descriptor per level. */
#define CHOWN_MAX_DEPTH 256
/* Largest buffer getpwnam_r may ask for; entries are far smaller in practice. */
#define PW_BUF_MAX (1 << 20)

/* ---------------------------------------------------------------- the user */

int
local_run_as_resolve(const char *name, struct local_run_as *out, struct eph_err *err)
{
    struct passwd pw, *found = NULL;
    long hint = sysconf(_SC_GETPW_R_SIZE_MAX);
    size_t size = hint > 0 ? (size_t)hint : 1024;
    char *buf = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if (name == NULL || name[0] == '\0')
        return eph_err_set(err, EPH_EINVAL, "run_as: must name a user");
    for (;;) {
        buf = xrealloc(buf, size);
        rc = getpwnam_r(name, &pw, buf, size, &found);
        if (rc != ERANGE || size >= PW_BUF_MAX)
            break;
        size *= 2;
    }
    /* "Not found" comes back as 0 with no entry, or as one of these errors,
     * depending on the NSS module. */
    if (rc == ENOENT || rc == ESRCH || rc == EBADF || rc == EPERM)
        rc = 0;
    if (rc != 0) {
        rc = eph_err_set(err, -rc, "run_as: cannot look up user '%s': %s", name, strerror(rc));
    } else if (found == NULL) {
        rc = eph_err_set(err, EPH_EINVAL, "run_as: no user named '%s'", name);
    } else if (pw.pw_uid == 0) {
        rc = eph_err_set(err, EPH_EINVAL,
                         "run_as: '%s' is root; environment processes must run as an "
                         "unprivileged user",
                         name);
    } else {
        out->name = xstrdup(name);
        out->home = xstrdup(pw.pw_dir && pw.pw_dir[0] ? pw.pw_dir : "/");
        out->uid = pw.pw_uid;
        out->gid = pw.pw_gid;
    }
    free(buf);
    return rc;
}

void
local_run_as_release(struct local_run_as *ra)
{
    if (ra == NULL)
        return;
    free(ra->name);
    free(ra->home);
    memset(ra, 0, sizeof(*ra));
}

/* ---------------------------------------------------------------- reaching data_dir */

/* As the kernel decides for a process of uid:gid without supplementary groups:
 * the owner's bits if it is the owner, else the group's if it is the group,
 * else the others'. */
static bool
searchable_by(const struct stat *st, uid_t uid, gid_t gid)
{
    if (st->st_uid == uid)
        return (st->st_mode & S_IXUSR) != 0;
    if (st->st_gid == gid)
        return (st->st_mode & S_IXGRP) != 0;
    return (st->st_mode & S_IXOTH) != 0;
}

/* Every directory from / down to `given` itself must be searchable by the
 * user; `what` names it in messages ("data_dir"). */
int
local__check_reach(const char *what, const char *given, const struct local_run_as *ra,
                   struct eph_err *err)
{
    char real[PATH_MAX], dir[PATH_MAX];
    size_t len;
    int rc;

    if (realpath(given, real) == NULL) {
        rc = -errno;
        return eph_err_set(err, rc, "cannot resolve %s '%s': %s", what, given, eph_strerror(rc));
    }
    len = strlen(real);
    for (size_t i = 0; i <= len; i++) {
        struct stat st;

        if (i < len && real[i] != '/')
            continue;
        /* The prefix up to this slash: "/", "/tmp", "/tmp/x", ... the whole path. */
        memcpy(dir, real, i == 0 ? 1 : i);
        dir[i == 0 ? 1 : i] = '\0';
        if (stat(dir, &st) < 0) {
            rc = -errno;
            return eph_err_set(err, rc, "cannot stat '%s': %s", dir, eph_strerror(rc));
        }
        if (!S_ISDIR(st.st_mode))
            return eph_err_set(err, EPH_EINVAL, "%s '%s': '%s' is not a directory", what, given,
                               dir);
        if (searchable_by(&st, ra->uid, ra->gid))
            continue;
        if (i == len)
            return eph_err_set(err, EPH_EINVAL,
                               "run_as: user '%s' cannot enter %s '%s' (mode %04o, owner %d); "
                               "make it searchable (chmod o+x) or set run_as",
                               ra->name, what, given, (unsigned)(st.st_mode & 07777),
                               (int)st.st_uid);
        return eph_err_set(err, EPH_EINVAL,
                           "run_as: user '%s' cannot reach %s '%s' ('%s' is not searchable by "
                           "it); choose a data_dir under a directory it can enter, or set run_as",
                           ra->name, what, given, dir);
    }
    return 0;
}

int
local_check_run_as_access(const char *data_dir, const struct local_run_as *ra, struct eph_err *err)
{
    return local__check_reach("data_dir", data_dir, ra, err);
}

/* ---------------------------------------------------------------- handing trees over */

struct walk {
    uid_t uid;
    gid_t gid;
    dev_t dev; /* the tree's file system: mounts inside it are not entered */
    int rc;    /* the first failure, 0 if none */
};

static void
walk_fail(struct walk *w, int rc)
{
    if (w->rc == 0)
        w->rc = rc;
}

/* Gives the directory open at dfd (unless `give` is false: the walk's root
 * when its caller keeps it) and everything in it. Takes ownership of dfd. */
static void
walk_dir(struct walk *w, int dfd, int depth, bool give)
{
    DIR *d;
    struct dirent *de;

    if (give && fchown(dfd, w->uid, w->gid) < 0)
        walk_fail(w, -errno);
    if (depth >= CHOWN_MAX_DEPTH) {
        walk_fail(w, -ELOOP);
        close(dfd);
        return;
    }
    d = fdopendir(dfd);
    if (d == NULL) {
        walk_fail(w, -errno);
        close(dfd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        int fd;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        fd = openat(dirfd(d), de->d_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno != ENOENT) /* removed meanwhile: nothing to give */
                walk_fail(w, -errno);
            continue;
        }
        if (fstat(fd, &st) < 0) {
            walk_fail(w, -errno);
            close(fd);
            continue;
        }
        if (st.st_dev != w->dev) {
            close(fd); /* a mount point: not part of the tree */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            /* Reopened through the O_PATH descriptor: the same directory,
             * whatever happens to its name meanwhile. */
            int sub = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            close(fd);
            if (sub < 0)
                walk_fail(w, -errno);
            else
                walk_dir(w, sub, depth + 1, true);
            continue;
        }
        /* A second link: shared with something outside the tree. */
        if (!S_ISLNK(st.st_mode) && st.st_nlink > 1) {
            close(fd);
            continue;
        }
        if ((st.st_uid != w->uid || st.st_gid != w->gid) &&
            fchownat(fd, "", w->uid, w->gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) < 0)
            walk_fail(w, -errno);
        close(fd);
    }
    closedir(d);
}

int
local__chown_tree(const char *path, uid_t uid, gid_t gid, bool give_top)
{
    struct walk w = {.uid = uid, .gid = gid};
    struct stat st;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    w.dev = st.st_dev;
    walk_dir(&w, fd, 0, give_top);
    return w.rc;
}
