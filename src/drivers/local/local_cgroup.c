/*
 * drivers/local/local_cgroup.c - cgroup v2 limits and usage of the local
 * driver's environments (contract and layout in local_cgroup.h).
 *
 * The root is found once, when the driver is created; each environment gets
 * its cgroup on its first apply() and loses it at teardown. All the kernel
 * files read here are a few bytes, and the writes are single short strings,
 * so nothing of it needs a worker thread.
 */
#define LOG_MOD "local"

#include "drivers/local/local_cgroup.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "drivers/local/local_int.h"
#include "util/fs.h"
#include "util/log.h"
#include "util/time.h"
#include "util/xmalloc.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define CG_FILE_MAX_BYTES 4096        /* controller lists, memory.events, cpu.stat */
#define PROC_CGROUP_MAX_BYTES 65536   /* /proc/self/cgroup: one line per v1 hierarchy */
#define MOUNTINFO_MAX_BYTES (4 << 20) /* /proc/self/mountinfo on a busy host */
#define CPU_PERIOD_US 100000          /* cpu.max period: the kernel's default, 100 ms */
#define CG_PATH_MAX PATH_MAX

/* One environment's cgroup as this process knows it. */
struct cg_env {
    struct cg_env *next;
    int64_t env_id;
    char *dir;                /* <base>/env-<id>; NULL until made (or if it could not be) */
    bool failed;              /* making it or writing its limits failed: see note */
    bool written;             /* limits holds what the files say */
    struct drv_limits limits; /* last written */
    int64_t oom_kills;        /* memory.events oom_kill last seen */
    char note[LOCAL_CGROUP_NOTE_MAX];
};

/* One environment's share of the last /proc walk. */
struct usage_slot {
    int64_t env_id;
    int64_t memory_bytes;
    int64_t cpu_usec;
};

struct local_cgroup {
    bool enabled;
    char *base;                       /* <root>/ephemera/<instance>, NULL unless enabled */
    char note[LOCAL_CGROUP_NOTE_MAX]; /* why not enabled */
    struct cg_env *envs;
    /* the /proc walk's cache, for environments without a cgroup */
    int64_t walked_ms; /* monotonic; 0: never */
    struct usage_slot *slots;
    size_t n_slots;
};

static const struct {
    unsigned bit;
    const char *name;
} controllers[] = {
    {LOCAL_CG_MEMORY, "memory"},
    {LOCAL_CG_CPU, "cpu"},
    {LOCAL_CG_PIDS, "pids"},
};

/* Copies a note, cut to LOCAL_CGROUP_NOTE_MAX - 1 bytes. */
static void
copy_note(char dst[LOCAL_CGROUP_NOTE_MAX], const char *src)
{
    size_t n = strnlen(src, LOCAL_CGROUP_NOTE_MAX - 1);

    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* ---------------------------------------------------------------- parsers */

int
local_cgroup_parse_self(const char *text, char *path, size_t size)
{
    const char *p = text;

    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);

        /* "hierarchy-ID:controller-list:cgroup-path"; v2 is "0::" */
        if (n >= 3 && memcmp(p, "0::", 3) == 0) {
            const char *v = p + 3;
            size_t vn = n - 3;
            if (vn == 0 || v[0] != '/')
                return EPH_EINVAL;
            /* A cgroup outside our namespace shows as "/../x"; a removed one
             * ends " (deleted)". Neither can be reached from here. */
            if (strncmp(v, "/..", 3) == 0 && (vn == 3 || v[3] == '/'))
                return EPH_EINVAL;
            if (vn >= 10 && memcmp(v + vn - 10, " (deleted)", 10) == 0)
                return EPH_EINVAL;
            if (vn >= size)
                return EPH_ETOOBIG;
            memcpy(path, v, vn);
            path[vn] = '\0';
            return 0;
        }
        p = eol ? eol + 1 : NULL;
    }
    return EPH_ENOTFOUND;
}

static bool
is_octal(char c)
{
    return c >= '0' && c <= '7';
}

/* Copies mountinfo field [s, s+n) into out, decoding "\ooo" escapes (the
 * kernel writes space, tab, newline and backslash so). false if it does not
 * fit. */
static bool
unescape_field(const char *s, size_t n, char *out, size_t size)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && n - i >= 4 && s[i + 1] >= '0' && s[i + 1] <= '3' && is_octal(s[i + 2]) &&
            is_octal(s[i + 3])) {
            c = (char)((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
            i += 3;
        }
        if (o + 1 >= size)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return true;
}

/* True if `path` is `root` or below it, path-component-wise. *rest points at
 * what follows root ("" or "/..."). */
static bool
path_under(const char *path, const char *root, const char **rest)
{
    size_t rn = strlen(root);

    if (strcmp(root, "/") == 0) {
        *rest = path;
        return true;
    }
    if (strncmp(path, root, rn) != 0 || (path[rn] != '\0' && path[rn] != '/'))
        return false;
    *rest = path + rn;
    return true;
}

int
local_cgroup_parse_mountinfo(const char *text, const char *cgpath, char *dir, size_t size)
{
    const char *p = text;

    while (p != NULL && *p != '\0') {
        const char *eol = strchr(p, '\n');
        size_t n = eol ? (size_t)(eol - p) : strlen(p);
        /* "36 35 98:0 /root /mnt/point rw,noatime shared:1 - cgroup2 cgroup2 rw"
         * fields: id parent dev root mountpoint options [optional...] - fstype source super */
        const char *f[5] = {0};
        size_t fl[5] = {0};
        const char *q = p, *end = p + n, *sep;
        int k = 0;

        while (k < 5 && q < end) {
            while (q < end && *q == ' ')
                q++;
            const char *s = q;
            while (q < end && *q != ' ')
                q++;
            if (q > s) {
                f[k] = s;
                fl[k] = (size_t)(q - s);
                k++;
            }
        }
        sep = k == 5 ? strstr(q, " - ") : NULL;
        if (sep != NULL && sep < end && strncmp(sep + 3, "cgroup2 ", 8) == 0) {
            char root[CG_PATH_MAX], mnt[CG_PATH_MAX];
            const char *rest;
            if (unescape_field(f[3], fl[3], root, sizeof(root)) &&
                unescape_field(f[4], fl[4], mnt, sizeof(mnt)) && path_under(cgpath, root, &rest)) {
                const char *sep2 = strcmp(rest, "/") == 0 ? "" : rest;
                int w = snprintf(dir, size, "%s%s", mnt, sep2);
                if (w < 0 || (size_t)w >= size)
                    return EPH_ETOOBIG;
                if (dir[0] == '\0')
                    snprintf(dir, size, "/");
                return 0;
            }
        }
        p = eol ? eol + 1 : NULL;
    }
    return EPH_ENOTFOUND;
}

unsigned
local_cgroup_controllers(const char *list)
{
    unsigned bits = 0;
    const char *p = list;

    while (*p != '\0') {
        while (*p != '\0' && isspace((unsigned char)*p))
            p++;
        size_t n = 0;
        while (p[n] != '\0' && !isspace((unsigned char)p[n]))
            n++;
        for (size_t i = 0; i < ARRAY_LEN(controllers); i++) {
            if (strlen(controllers[i].name) == n && memcmp(p, controllers[i].name, n) == 0)
                bits |= controllers[i].bit;
        }
        p += n;
    }
    return bits;
}

/* "memory, cpu, pids" for bits, into out. Returns how many. */
static int
names_of(unsigned bits, const char *joiner, char *out, size_t size)
{
    size_t o = 0;
    int n = 0;

    out[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(controllers); i++) {
        if (!(bits & controllers[i].bit))
            continue;
        int w = snprintf(out + o, size - o, "%s%s", n ? joiner : "", controllers[i].name);
        if (w < 0 || (size_t)w >= size - o)
            break;
        o += (size_t)w;
        n++;
    }
    return n;
}

void
local_cgroup_missing_note(unsigned missing, const char *dir, const char *available, char *out,
                          size_t size)
{
    char names[64], avail[128];
    size_t o = 0;
    int n = names_of(missing, ", ", names, sizeof(names));
    const char *p = available;

    /* the available list, comma separated */
    avail[0] = '\0';
    while (*p != '\0' && o + 1 < sizeof(avail)) {
        while (*p != '\0' && isspace((unsigned char)*p))
            p++;
        size_t len = 0;
        while (p[len] != '\0' && !isspace((unsigned char)p[len]))
            len++;
        if (len == 0)
            break;
        int w = snprintf(avail + o, sizeof(avail) - o, "%s%.*s", o ? ", " : "", (int)len, p);
        if (w < 0 || (size_t)w >= sizeof(avail) - o)
            break;
        o += (size_t)w;
        p += len;
    }
    snprintf(out, size, "cgroup v2 %s controller%s %s not available at %s (available: %s)", names,
             n == 1 ? "" : "s", n == 1 ? "is" : "are", dir, avail[0] ? avail : "none");
}

int64_t
local_cgroup_keyed(const char *text, const char *key)
{
    size_t kn = strlen(key);
    const char *p = text;

    while (p != NULL && *p != '\0') {
        if (strncmp(p, key, kn) == 0 && p[kn] == ' ') {
            char *end;
            errno = 0;
            long long v = strtoll(p + kn + 1, &end, 10);
            if (errno != 0 || end == p + kn + 1 || v < 0 || (*end != '\n' && *end != '\0'))
                return -1;
            return (int64_t)v;
        }
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

void
local_cgroup_cpu_max(int64_t millis, char *out, size_t size)
{
    if (millis <= 0) {
        snprintf(out, size, "max %d", CPU_PERIOD_US);
        return;
    }
    /* quota per period: 1000 millis (one core) = one whole period. The kernel
     * wants at least 1000 us. */
    int64_t quota = millis * (CPU_PERIOD_US / 1000);
    if (quota < 1000)
        quota = 1000;
    snprintf(out, size, "%" PRId64 " %d", quota, CPU_PERIOD_US);
}

void
local_cgroup_format_bytes(int64_t bytes, char *out, size_t size)
{
    static const struct {
        int64_t unit;
        const char *suffix;
    } units[] = {
        {INT64_C(1) << 40, "Ti"},
        {INT64_C(1) << 30, "Gi"},
        {INT64_C(1) << 20, "Mi"},
        {INT64_C(1) << 10, "Ki"},
    };

    for (size_t i = 0; i < ARRAY_LEN(units); i++) {
        if (bytes > 0 && bytes % units[i].unit == 0) {
            snprintf(out, size, "%" PRId64 "%s", bytes / units[i].unit, units[i].suffix);
            return;
        }
    }
    snprintf(out, size, "%" PRId64, bytes);
}

int
local_cgroup_parse_stat(const char *text, struct local_pstat *out)
{
    /* "pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime cutime cstime prio nice threads itreal
     * starttime vsize rss ...": comm may hold anything, so fields are
     * counted from its last ')'. */
    const char *p = strrchr(text, ')');
    unsigned long long v[22];
    char state;
    int n;

    if (p == NULL)
        return EPH_EPARSE;
    n = sscanf(p + 1,
               " %c %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
               "%llu %llu %llu %llu %llu %llu",
               &state, &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10],
               &v[11], &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18], &v[19], &v[20],
               &v[21]);
    if (n != 22)
        return EPH_EPARSE;
    /* v[k] is field k + 3 of proc(5): pgrp 5, utime 14 .. cstime 17, rss 24 */
    out->state = state;
    out->pgid = (pid_t)v[2];
    out->cpu_ticks = v[11] + v[12] + v[13] + v[14];
    out->rss_pages = (int64_t)v[21];
    return 0;
}

/* ---------------------------------------------------------------- files */

/* Writes `value` into an existing kernel file. 0 or -errno. */
static int
write_file(const char *path, const char *value)
{
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    size_t n = strlen(value);
    ssize_t w;
    int rc = 0;

    if (fd < 0)
        return -errno;
    do {
        w = write(fd, value, n);
    } while (w < 0 && errno == EINTR);
    if (w < 0)
        rc = -errno;
    else if ((size_t)w != n)
        rc = -EIO;
    close(fd);
    return rc;
}

static int
write_in(const char *dir, const char *file, const char *value)
{
    char *path = xasprintf("%s/%s", dir, file);
    int rc = write_file(path, value);

    free(path);
    return rc;
}

/* Reads dir/file (a small kernel file) into *out (free()). 0 or -errno. */
static int
read_in(const char *dir, const char *file, char **out)
{
    char *path = xasprintf("%s/%s", dir, file);
    int rc = fs_read_all(path, CG_FILE_MAX_BYTES, out, NULL);

    free(path);
    return rc;
}

static int64_t
read_keyed(const char *dir, const char *file, const char *key)
{
    char *text = NULL;
    int64_t v = -1;

    if (read_in(dir, file, &text) == 0)
        v = local_cgroup_keyed(text, key);
    free(text);
    return v;
}

/* ---------------------------------------------------------------- the root */

/* Enables the controllers `want` in dir/cgroup.subtree_control unless they
 * are already. 0, or -errno with the reason in note. */
static int
enable_controllers(const char *dir, unsigned want, char *note, size_t note_size)
{
    char *text = NULL, names[64], line[64];
    unsigned missing;
    size_t o = 0;
    int rc = read_in(dir, "cgroup.subtree_control", &text);

    if (rc < 0) {
        snprintf(note, note_size, "cannot read %s/cgroup.subtree_control: %s", dir,
                 eph_strerror(rc));
        return rc;
    }
    missing = want & ~local_cgroup_controllers(text);
    free(text);
    if (missing == 0)
        return 0;
    line[0] = '\0';
    for (size_t i = 0; i < ARRAY_LEN(controllers); i++) {
        if (missing & controllers[i].bit)
            o += (size_t)snprintf(line + o, sizeof(line) - o, "%s+%s", o ? " " : "",
                                  controllers[i].name);
    }
    rc = write_in(dir, "cgroup.subtree_control", line);
    if (rc < 0) {
        names_of(missing, ", ", names, sizeof(names));
        /* EBUSY: processes live in dir itself, and a cgroup with processes
         * cannot hand domain controllers to children (except the root). */
        snprintf(note, note_size, "cannot enable %s for the children of %s: %s%s", names, dir,
                 eph_strerror(rc), rc == -EBUSY ? " (processes run in it)" : "");
    }
    return rc;
}

/* mkdir dir (an existing one is fine) and enable the controllers for its
 * children. 0 or -errno with note. */
static int
make_level(const char *dir, char *note, size_t note_size)
{
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
        int rc = -errno;
        snprintf(note, note_size, "cannot create cgroup %s: %s", dir, eph_strerror(rc));
        return rc;
    }
    return enable_controllers(dir, LOCAL_CG_NEEDED, note, note_size);
}

/* The deepest directory that contains both a and b (both absolute, on the
 * same mount), into out. */
static void
common_ancestor(const char *a, const char *b, char *out, size_t size)
{
    size_t i = 0, last = 0;

    while (a[i] != '\0' && a[i] == b[i]) {
        if (a[i] == '/')
            last = i;
        i++;
    }
    if ((a[i] == '\0' || a[i] == '/') && (b[i] == '\0' || b[i] == '/'))
        last = i; /* one is the other's ancestor (or they are equal) */
    if (last == 0)
        last = 1; /* "/" */
    snprintf(out, size, "%.*s", (int)last, a);
}

int
local_cgroup_new_at(const char *root_dir, const char *self_dir, const char *instance_id,
                    struct local_cgroup **out, char *note, size_t note_size)
{
    struct local_cgroup *cg;
    char *text = NULL, *eph = NULL, *base = NULL;
    unsigned missing;
    int rc;

    *out = NULL;
    note[0] = '\0';
    rc = read_in(root_dir, "cgroup.controllers", &text);
    if (rc < 0) {
        snprintf(note, note_size, "cannot read %s/cgroup.controllers: %s", root_dir,
                 eph_strerror(rc));
        goto out;
    }
    missing = LOCAL_CG_NEEDED & ~local_cgroup_controllers(text);
    if (missing != 0) {
        local_cgroup_missing_note(missing, root_dir, text, note, note_size);
        rc = EPH_EINVAL;
        goto out;
    }
    eph = xasprintf("%s/ephemera", root_dir);
    base = xasprintf("%s/%s", eph, instance_id);
    rc = enable_controllers(root_dir, LOCAL_CG_NEEDED, note, note_size);
    if (rc == 0)
        rc = make_level(eph, note, note_size);
    if (rc == 0)
        rc = make_level(base, note, note_size);
    if (rc < 0) {
        rc = EPH_EINVAL;
        goto out;
    }
    /* Moving a process needs write access to cgroup.procs of the deepest
     * cgroup holding both where it is (ours: the server spawns) and where it
     * goes; and the environments' cgroups are made in base. */
    if (self_dir != NULL) {
        char anc[CG_PATH_MAX], *procs;
        common_ancestor(self_dir, base, anc, sizeof(anc));
        procs = xasprintf("%s/cgroup.procs", anc);
        /* ENOENT: self is seen through another mount of the hierarchy, and
         * the ancestor cannot be named from the strings; the first move
         * will tell. */
        if (faccessat(AT_FDCWD, procs, W_OK, AT_EACCESS) < 0 && errno != ENOENT) {
            rc = -errno;
            snprintf(note, note_size, "cannot move processes out of %s: %s: %s", self_dir, procs,
                     eph_strerror(rc));
            rc = EPH_EINVAL;
        }
        free(procs);
        if (rc < 0)
            goto out;
    }
    if (faccessat(AT_FDCWD, base, W_OK, AT_EACCESS) < 0) {
        rc = -errno;
        snprintf(note, note_size, "cannot create cgroups in %s: %s", base, eph_strerror(rc));
        rc = EPH_EINVAL;
        goto out;
    }
    cg = xcalloc(1, sizeof(*cg));
    cg->enabled = true;
    cg->base = base;
    base = NULL;
    *out = cg;
    rc = 0;
out:
    free(text);
    free(eph);
    free(base);
    return rc;
}

/* True if systemd delegated the cgroup at dir (xattr trusted.delegate or
 * user.delegate "1"). */
static bool
is_delegated(const char *dir)
{
    static const char *const names[] = {"trusted.delegate", "user.delegate"};
    char v[8];

    for (size_t i = 0; i < ARRAY_LEN(names); i++) {
        ssize_t n = getxattr(dir, names[i], v, sizeof(v) - 1);
        if (n > 0) {
            v[n] = '\0';
            if (strcmp(v, "1") == 0)
                return true;
        }
    }
    return false;
}

/* The server's own cgroup directory into self, or -1 with note. */
static int
find_self(char *self, size_t size, char *note, size_t note_size)
{
    char *text = NULL, cgpath[CG_PATH_MAX];
    int rc = fs_read_all("/proc/self/cgroup", PROC_CGROUP_MAX_BYTES, &text, NULL);

    if (rc < 0) {
        snprintf(note, note_size, "cannot read /proc/self/cgroup: %s", eph_strerror(rc));
        return -1;
    }
    rc = local_cgroup_parse_self(text, cgpath, sizeof(cgpath));
    free(text);
    if (rc == EPH_ENOTFOUND) {
        snprintf(note, note_size, "cgroup v2 is not in use (no 0:: line in /proc/self/cgroup)");
        return -1;
    }
    if (rc < 0) {
        snprintf(note, note_size, "the server's cgroup v2 path cannot be reached from here");
        return -1;
    }
    text = NULL;
    rc = fs_read_all("/proc/self/mountinfo", MOUNTINFO_MAX_BYTES, &text, NULL);
    if (rc < 0) {
        snprintf(note, note_size, "cannot read /proc/self/mountinfo: %s", eph_strerror(rc));
        return -1;
    }
    rc = local_cgroup_parse_mountinfo(text, cgpath, self, size);
    free(text);
    if (rc < 0) {
        snprintf(note, note_size, "no cgroup2 mount shows the server's cgroup %.200s", cgpath);
        return -1;
    }
    return 0;
}

/* "auto": the root to use (see local_cgroup.h) for the server's own cgroup
 * directory `self`, into root. */
static void
find_auto_root(const char *self, char *root, size_t size)
{
    char parent[CG_PATH_MAX];
    char *events = xasprintf("%s/cgroup.events", self);
    char *slash;
    /* The hierarchy's root (the only cgroup without cgroup.events) may hand
     * controllers down with processes in it. The root of a cgroup namespace
     * is not the hierarchy's, and has the file. */
    bool is_root = !fs_exists(events);

    free(events);
    snprintf(root, size, "%s", self);
    if (is_root || is_delegated(self))
        return;
    snprintf(parent, sizeof(parent), "%s", self);
    slash = strrchr(parent, '/');
    if (slash != NULL && slash != parent) {
        *slash = '\0';
        if (is_delegated(parent))
            snprintf(root, size, "%s", parent);
    }
}

int
local_cgroup_new(const char *cgroup_root, const char *instance_id, struct local_cgroup **out,
                 struct eph_err *err)
{
    struct local_cgroup *cg = NULL;
    char note[LOCAL_CGROUP_NOTE_MAX * 2], self[CG_PATH_MAX], root[CG_PATH_MAX];
    bool have_self;
    bool automatic =
        cgroup_root == NULL || cgroup_root[0] == '\0' || strcmp(cgroup_root, "auto") == 0;
    struct statfs sfs;

    *out = NULL;
    note[0] = '\0';
    if (instance_id == NULL || instance_id[0] == '\0' || strchr(instance_id, '/') != NULL)
        return eph_err_set(err, EPH_EINVAL, "invalid local driver configuration");
    if (cgroup_root != NULL && strcmp(cgroup_root, "off") == 0) {
        snprintf(note, sizeof(note), "resource limits are off (cgroup_root: off)");
        goto disabled;
    }
    if (!automatic && cgroup_root[0] != '/')
        return eph_err_set(err, EPH_EINVAL,
                           "cgroup_root '%s' must be auto, off or an absolute path", cgroup_root);
    have_self = find_self(self, sizeof(self), note, sizeof(note)) == 0;
    if (automatic) {
        if (!have_self)
            goto disabled;
        find_auto_root(self, root, sizeof(root));
    } else {
        if (statfs(cgroup_root, &sfs) < 0) {
            int rc = -errno;
            return eph_err_set(err, EPH_EINVAL, "cgroup_root '%s': %s", cgroup_root,
                               eph_strerror(rc));
        }
        if (sfs.f_type != CGROUP2_SUPER_MAGIC)
            return eph_err_set(err, EPH_EINVAL,
                               "cgroup_root '%s' is not in a cgroup v2 file system", cgroup_root);
        snprintf(root, sizeof(root), "%s", cgroup_root);
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
            root[--n] = '\0';
    }
    if (local_cgroup_new_at(root, have_self ? self : NULL, instance_id, &cg, note, sizeof(note)) <
        0) {
        if (!automatic)
            return eph_err_set(err, EPH_EINVAL, "cgroup_root '%s': %s", cgroup_root, note);
        goto disabled;
    }
    log_info("resource limits enabled", "cgroup=%s", log_q(cg->base));
    *out = cg;
    return 0;
disabled:
    cg = xcalloc(1, sizeof(*cg));
    copy_note(cg->note, note);
    log_info("resource limits not enforced", "reason=%s", log_q(note));
    *out = cg;
    return 0;
}

void
local_cgroup_free(struct local_cgroup *cg)
{
    if (cg == NULL)
        return;
    while (cg->envs != NULL) {
        struct cg_env *e = cg->envs;
        cg->envs = e->next;
        free(e->dir);
        free(e);
    }
    free(cg->slots);
    free(cg->base);
    free(cg);
}

bool
local_cgroup_enabled(const struct local_cgroup *cg)
{
    return cg != NULL && cg->enabled;
}

const char *
local_cgroup_note(const struct local_cgroup *cg)
{
    return cg == NULL ? "resource limits are not set up" : cg->note;
}

const char *
local_cgroup_base(const struct local_cgroup *cg)
{
    return cg != NULL && cg->enabled ? cg->base : NULL;
}

/* ---------------------------------------------------------------- environments */

static struct local_cgroup *
cgroup_of(struct local_env *env)
{
    return env->drv != NULL ? env->drv->cgroup : NULL;
}

static struct cg_env *
cg_env_find(struct local_cgroup *cg, int64_t env_id)
{
    for (struct cg_env *e = cg->envs; e != NULL; e = e->next) {
        if (e->env_id == env_id)
            return e;
    }
    return NULL;
}

static void
cg_env_drop(struct local_cgroup *cg, struct cg_env *gone)
{
    for (struct cg_env **pp = &cg->envs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == gone) {
            *pp = gone->next;
            free(gone->dir);
            free(gone);
            return;
        }
    }
}

static char *
env_cgroup_path(const struct local_cgroup *cg, int64_t env_id)
{
    return xasprintf("%s/env-%" PRId64, cg->base, env_id);
}

/* Writes the three limits. 0, or -errno with e->note set. */
static int
write_limits(struct cg_env *e, const struct drv_limits *l)
{
    char mem[32], cpu[48], pids[32];
    const char *files[] = {"memory.max", "cpu.max", "pids.max"};
    const char *values[] = {mem, cpu, pids};

    if (l->memory_bytes > 0)
        snprintf(mem, sizeof(mem), "%" PRId64, l->memory_bytes);
    else
        snprintf(mem, sizeof(mem), "max");
    local_cgroup_cpu_max(l->cpu_millis, cpu, sizeof(cpu));
    if (l->pids > 0)
        snprintf(pids, sizeof(pids), "%" PRId64, l->pids);
    else
        snprintf(pids, sizeof(pids), "max");
    for (size_t i = 0; i < ARRAY_LEN(files); i++) {
        int rc = write_in(e->dir, files[i], values[i]);
        if (rc < 0) {
            snprintf(e->note, sizeof(e->note), "cannot write %s/%s: %s", e->dir, files[i],
                     eph_strerror(rc));
            return rc;
        }
    }
    return 0;
}

void
local_cgroup_env_setup(struct local_env *env, const struct drv_limits *limits)
{
    struct local_cgroup *cg = cgroup_of(env);
    static const struct drv_limits none = {0};
    struct cg_env *e;

    if (!local_cgroup_enabled(cg))
        return;
    if (limits == NULL)
        limits = &none;
    e = cg_env_find(cg, env->id);
    if (e == NULL) {
        e = xcalloc(1, sizeof(*e));
        e->env_id = env->id;
        e->next = cg->envs;
        cg->envs = e;
    }
    if (e->failed)
        return; /* once: the environment runs without limits, usage() says why */
    if (e->dir == NULL) {
        char *dir = env_cgroup_path(cg, env->id);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            int rc = -errno;
            snprintf(e->note, sizeof(e->note), "cannot create cgroup %s: %s", dir,
                     eph_strerror(rc));
            free(dir);
            goto failed;
        }
        e->dir = dir;
        /* What an earlier server saw is no news to us. */
        e->oom_kills = read_keyed(e->dir, "memory.events", "oom_kill");
        if (e->oom_kills < 0)
            e->oom_kills = 0;
    }
    if (e->written && memcmp(&e->limits, limits, sizeof(*limits)) == 0)
        return;
    if (write_limits(e, limits) < 0)
        goto failed;
    e->limits = *limits;
    e->written = true;
    log_debug("cgroup limits set",
              "env=%s cgroup=%s memory_bytes=%" PRId64 " cpu_millis=%" PRId64 " pids=%" PRId64,
              env->name, log_q(e->dir), limits->memory_bytes, limits->cpu_millis, limits->pids);
    return;
failed:
    e->failed = true;
    /* Processes must not join a cgroup whose limits are not the plan's. */
    free(e->dir);
    e->dir = NULL;
    log_warn("environment runs without limits", "env=%s reason=%s", env->name, log_q(e->note));
}

const char *
local_cgroup_env_dir(struct local_env *env)
{
    struct local_cgroup *cg = cgroup_of(env);
    struct cg_env *e = local_cgroup_enabled(cg) ? cg_env_find(cg, env->id) : NULL;

    return e != NULL && !e->failed ? e->dir : NULL;
}

int
local_cgroup_attach(struct local_env *env, pid_t pid, struct eph_err *err)
{
    const char *dir = local_cgroup_env_dir(env);
    char value[32];
    int rc;

    if (dir == NULL)
        return 0;
    snprintf(value, sizeof(value), "%d", (int)pid);
    rc = write_in(dir, "cgroup.procs", value);
    if (rc < 0)
        return eph_err_set(err, rc, "cannot move process %d into cgroup '%s': %s", (int)pid, dir,
                           eph_strerror(rc));
    return 0;
}

/* Kills everything in the cgroup at dir: cgroup.kill (Linux 5.14), else
 * SIGKILL to each pid listed in cgroup.procs. */
static void
kill_all(const char *dir)
{
    char *text = NULL;

    if (write_in(dir, "cgroup.kill", "1") == 0)
        return;
    if (read_in(dir, "cgroup.procs", &text) < 0)
        return;
    for (char *p = text; *p != '\0';) {
        char *end;
        long pid = strtol(p, &end, 10);
        if (end == p)
            break;
        if (pid > 1 && pid != getpid())
            kill((pid_t)pid, SIGKILL);
        p = end;
        while (*p == '\n')
            p++;
    }
    free(text);
}

void
local_cgroup_kill_id(struct local_cgroup *cg, int64_t env_id)
{
    char *dir;

    if (!local_cgroup_enabled(cg))
        return;
    /* The path, not the known cgroup: an earlier server may have made it. */
    dir = env_cgroup_path(cg, env_id);
    if (fs_exists(dir))
        kill_all(dir);
    free(dir);
}

void
local_cgroup_env_kill(struct local_env *env)
{
    local_cgroup_kill_id(cgroup_of(env), env->id);
}

int
local_cgroup_env_remove(struct local_env *env)
{
    struct local_cgroup *cg = cgroup_of(env);
    struct cg_env *e;
    char *dir;
    int rc = 0;

    if (!local_cgroup_enabled(cg))
        return 0;
    e = cg_env_find(cg, env->id);
    /* The path, not e->dir: an earlier server may have made it. */
    dir = env_cgroup_path(cg, env->id);
    if (rmdir(dir) == 0 || errno == ENOENT)
        goto gone;
    if (errno == EBUSY || errno == ENOTEMPTY) {
        kill_all(dir);
        if (rmdir(dir) == 0 || errno == ENOENT)
            goto gone;
        if (errno == EBUSY || errno == ENOTEMPTY) {
            log_debug("cgroup busy", "env=%s cgroup=%s", env->name, log_q(dir));
            free(dir);
            return EPH_EAGAIN;
        }
    }
    rc = -errno;
    log_warn("cannot remove cgroup", "env=%s cgroup=%s error=%s", env->name, log_q(dir),
             log_q(eph_strerror(rc)));
gone:
    if (e != NULL)
        cg_env_drop(cg, e);
    free(dir);
    return 0;
}

bool
local_cgroup_oom_killed(struct local_env *env, bool known, int exit_status, int term_signal,
                        char *reason, size_t reason_size)
{
    const char *dir = local_cgroup_env_dir(env);
    struct cg_env *e;
    int64_t n;
    bool rose, killed;

    if (dir == NULL)
        return false;
    e = cg_env_find(cgroup_of(env), env->id);
    n = read_keyed(dir, "memory.events", "oom_kill");
    if (n < 0)
        return false;
    rose = n > e->oom_kills;
    e->oom_kills = n;
    killed = !known || term_signal == SIGKILL || (term_signal == 0 && exit_status == 128 + SIGKILL);
    if (!rose || !killed)
        return false;
    if (e->limits.memory_bytes > 0) {
        char size[32];
        local_cgroup_format_bytes(e->limits.memory_bytes, size, sizeof(size));
        snprintf(reason, reason_size, "killed by the memory limit (%s)", size);
    } else {
        snprintf(reason, reason_size, "killed by the out-of-memory killer");
    }
    log_warn("out-of-memory kill", "env=%s oom_kills=%" PRId64 " reason=%s", env->name, n,
             log_q(reason));
    return true;
}

/* ---------------------------------------------------------------- usage */

/* One process group to look for in the walk, and whose share it is. */
struct pg_ref {
    pid_t pgid;
    size_t slot;
};

static int
cmp_pg_ref(const void *a, const void *b)
{
    pid_t x = ((const struct pg_ref *)a)->pgid, y = ((const struct pg_ref *)b)->pgid;

    return (x > y) - (x < y);
}

/* Reads /proc/<pid>/stat into buf without allocating. 0 or -1. */
static int
read_pid_stat(const char *name, char *buf, size_t size)
{
    char path[64];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%.20s/stat", name);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    do {
        n = read(fd, buf, size - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* The slot of env_id in cg->slots, added if missing. */
static size_t
slot_of(struct local_cgroup *cg, int64_t env_id)
{
    for (size_t i = 0; i < cg->n_slots; i++) {
        if (cg->slots[i].env_id == env_id)
            return i;
    }
    cg->slots = xrealloc(cg->slots, (cg->n_slots + 1) * sizeof(*cg->slots));
    cg->slots[cg->n_slots] = (struct usage_slot){.env_id = env_id};
    return cg->n_slots++;
}

/* Adds the live groups of a list to refs[*n] (capacity *cap). */
static void
add_refs(struct local_cgroup *cg, struct local_group *head, struct pg_ref **refs, size_t *n,
         size_t *cap)
{
    for (struct local_group *g = head; g != NULL; g = g->next) {
        if (g->gone || g->pgid <= 1)
            continue;
        if (*n == *cap) {
            *cap = *cap ? *cap * 2 : 16;
            *refs = xrealloc(*refs, *cap * sizeof(**refs));
        }
        (*refs)[(*n)++] = (struct pg_ref){.pgid = g->pgid, .slot = slot_of(cg, g->env_id)};
    }
}

/* Walks /proc once for the groups of every environment (those found at
 * start-up and not yet claimed too), filling cg->slots. */
static void
walk_usage(struct local_driver *drv, struct local_cgroup *cg)
{
    struct pg_ref *refs = NULL;
    size_t n_refs = 0, cap = 0, seen = 0;
    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    DIR *d;
    struct dirent *de;

    free(cg->slots);
    cg->slots = NULL;
    cg->n_slots = 0;
    cg->walked_ms = time_mono_ms();
    for (struct local_env *env = drv->envs; env != NULL; env = env->next)
        add_refs(cg, env->groups, &refs, &n_refs, &cap);
    add_refs(cg, drv->orphans, &refs, &n_refs, &cap);
    if (n_refs == 0 || hz <= 0 || page <= 0)
        goto out;
    qsort(refs, n_refs, sizeof(*refs), cmp_pg_ref);
    d = opendir("/proc");
    while (d != NULL && (de = readdir(d)) != NULL && seen < LOCAL_USAGE_MAX_PIDS) {
        char buf[1024];
        struct local_pstat ps;
        struct pg_ref key, *hit;

        if (!isdigit((unsigned char)de->d_name[0]))
            continue;
        seen++;
        if (read_pid_stat(de->d_name, buf, sizeof(buf)) < 0 ||
            local_cgroup_parse_stat(buf, &ps) < 0)
            continue;
        key.pgid = ps.pgid;
        hit = bsearch(&key, refs, n_refs, sizeof(*refs), cmp_pg_ref);
        if (hit == NULL)
            continue;
        struct usage_slot *s = &cg->slots[hit->slot];
        s->memory_bytes += ps.rss_pages * page;
        s->cpu_usec += (int64_t)(ps.cpu_ticks * 1000000u / (uint64_t)hz);
    }
    if (d != NULL)
        closedir(d);
out:
    free(refs);
}

void
local_cgroup_forget_usage(struct local_cgroup *cg)
{
    if (cg != NULL)
        cg->walked_ms = 0;
}

void
local_usage(struct driver *d, int64_t env_id, struct drv_usage *out)
{
    struct local_driver *drv = container_of(d, struct local_driver, base);
    struct local_cgroup *cg = drv->cgroup;
    struct cg_env *e = NULL;
    const char *note = local_cgroup_note(cg);
    int64_t now = time_mono_ms();

    memset(out, 0, sizeof(*out));
    if (local_cgroup_enabled(cg)) {
        char *dir = env_cgroup_path(cg, env_id);
        int64_t cpu;
        char *text = NULL;

        e = cg_env_find(cg, env_id);
        note = e != NULL && e->failed ? e->note : "";
        /* Its cgroup, even one an earlier server made and no plan has
         * claimed yet (an environment asleep since a restart). */
        if ((e == NULL || !e->failed) && read_in(dir, "memory.current", &text) == 0) {
            out->memory_bytes = strtoll(text, NULL, 10);
            cpu = read_keyed(dir, "cpu.stat", "usage_usec");
            out->cpu_usec = cpu > 0 ? cpu : 0;
            out->limits_enforced = true;
            free(text);
            free(dir);
            return;
        }
        free(text);
        free(dir);
    }
    if (cg != NULL) {
        if (cg->walked_ms == 0 || now - cg->walked_ms >= LOCAL_USAGE_CACHE_MS)
            walk_usage(drv, cg);
        for (size_t i = 0; i < cg->n_slots; i++) {
            if (cg->slots[i].env_id == env_id) {
                out->memory_bytes = cg->slots[i].memory_bytes;
                out->cpu_usec = cg->slots[i].cpu_usec;
            }
        }
    }
    out->limits_enforced = false;
    snprintf(out->note, sizeof(out->note), "%s",
             note[0] ? note : "the environment has no cgroup yet");
}
