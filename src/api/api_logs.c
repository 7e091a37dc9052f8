/*
 * api/api_logs.c - GET /api/v1/envs/{name}/logs/{service}: the last lines of
 * a service's log file, and with ?follow=1 what is written after them.
 *
 * The tail is read from the end of the file in blocks on the thread pool
 * (files can be large). Following polls the file from the loop with a timer,
 * reading only while the client keeps up (backpressure), until the client
 * goes, the server closes, or the environment is being deleted. Logs are
 * seen by whoever sees the environment (api__env_visible). Reading them,
 * and following them (checked about once a second), is activity of the
 * environment: it does not fall asleep under someone's eyes.
 */
#include "api/api_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/xmalloc.h"

#define LOG_MOD "api"
#include "util/log.h"

#define LOGS_TAIL_DEFAULT 100
#define LOGS_TAIL_MAX 10000
#define LOGS_TAIL_MAX_BYTES (8 * 1024 * 1024) /* a tail never reads more than this */
#define LOGS_BLOCK_BYTES (64 * 1024)
#define FOLLOW_INTERVAL_MS 150
#define FOLLOW_CHECK_EVERY 7                /* ticks between looks at the env (~1 s) */
#define FOLLOW_MAX_PENDING (1024 * 1024)    /* unsent bytes above which we stop reading */
#define FOLLOW_MAX_TICK_BYTES (1024 * 1024) /* read per tick at most */
#define LOGS_CONTENT_TYPE "text/plain; charset=utf-8"

/* ------------------------------------------------------------- tail */

static int
pread_all(int fd, char *buf, size_t len, off_t off)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, off + (off_t)got);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break; /* truncated meanwhile */
        got += (size_t)n;
    }
    return (int)got;
}

/*
 * The last `lines` lines of `path` (at most max_bytes of them, starting at a
 * line boundary) into *out (free()); *end_out is the file size read up to.
 * A missing file is empty. 0 or -errno.
 */
static int
tail_file(const char *path, int64_t lines, size_t max_bytes, char **out, size_t *len_out,
          uint64_t *end_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *block = NULL;
    struct stat sb;
    off_t size;
    off_t pos;
    off_t start = -1;
    int64_t seen = 0;
    int rc = 0;
    int n;

    *out = xstrdup("");
    *len_out = 0;
    *end_out = 0;
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &sb) < 0) {
        rc = -errno;
        goto out;
    }
    size = sb.st_size;
    *end_out = (uint64_t)size;
    if (lines <= 0 || size == 0)
        goto out;
    block = xmalloc(LOGS_BLOCK_BYTES);
    pos = size;
    /* Walk back block by block counting newlines; the one that ends the file
     * ends the last line rather than starting a new one. */
    while (pos > 0 && start < 0 && (size_t)(size - pos) < max_bytes) {
        size_t chunk = LOGS_BLOCK_BYTES;

        if ((off_t)chunk > pos)
            chunk = (size_t)pos;
        if (chunk > max_bytes - (size_t)(size - pos))
            chunk = max_bytes - (size_t)(size - pos);
        pos -= (off_t)chunk;
        n = pread_all(fd, block, chunk, pos);
        if (n < 0) {
            rc = n;
            goto out;
        }
        for (size_t i = (size_t)n; i-- > 0;) {
            if (block[i] != '\n' || pos + (off_t)i == size - 1)
                continue;
            if (++seen == lines) {
                start = pos + (off_t)i + 1;
                break;
            }
        }
    }
    if (start < 0 && pos == 0) {
        start = 0; /* the whole file has fewer lines */
    } else if (start < 0) {
        /* The byte cap came first: begin at the next whole line. */
        n = pread_all(
            fd, block,
            LOGS_BLOCK_BYTES < (size_t)(size - pos) ? LOGS_BLOCK_BYTES : (size_t)(size - pos), pos);
        char *nl = n > 0 ? memchr(block, '\n', (size_t)n) : NULL;
        start = nl ? pos + (nl - block) + 1 : pos;
    }
    free(*out);
    *out = xmalloc((size_t)(size - start) + 1);
    n = pread_all(fd, *out, (size_t)(size - start), start);
    if (n < 0) {
        rc = n;
        n = 0;
    }
    (*out)[n] = '\0';
    *len_out = (size_t)n;
    *end_out = (uint64_t)(start + n);
out:
    free(block);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------- follow */

struct follow {
    uv_timer_t timer;
    struct api *api;
    struct http_exchange *x;
    char *path;
    char *env_name;
    int64_t env_id;
    char *user;      /* who follows, and with which role: the stream ends when */
    enum role role;  /* the environment turns private to them */
    uint64_t offset; /* bytes of the file sent so far */
    unsigned ticks;
    bool stopping;  /* the timer is closing; its close callback ends the stream */
    bool last_read; /* the environment is going: read once more, then stop */
};

static void
on_follow_closed(uv_handle_t *h)
{
    struct follow *f = container_of((uv_timer_t *)h, struct follow, timer);

    http_stream_end(f->x);
    free(f->path);
    free(f->env_name);
    free(f->user);
    free(f);
}

static void
follow_stop(struct follow *f)
{
    if (f->stopping)
        return;
    f->stopping = true;
    uv_timer_stop(&f->timer);
    uv_close((uv_handle_t *)&f->timer, on_follow_closed);
}

static void
on_follow_gone(struct http_exchange *x, void *arg)
{
    (void)x;
    follow_stop(arg);
}

/* Sends what was appended to the file since the last read, while the
 * client keeps up. */
static void
follow_read(struct follow *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    char *block;
    struct stat sb;
    size_t sent = 0;

    if (fd < 0)
        return; /* not written yet */
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return;
    }
    if ((uint64_t)sb.st_size < f->offset)
        f->offset = 0; /* the file was truncated or replaced: start over */
    block = xmalloc(LOGS_BLOCK_BYTES);
    while (f->offset < (uint64_t)sb.st_size && sent < FOLLOW_MAX_TICK_BYTES &&
           http_stream_pending(f->x) <= FOLLOW_MAX_PENDING) {
        int n = pread_all(fd, block, LOGS_BLOCK_BYTES, (off_t)f->offset);

        if (n <= 0)
            break;
        if (http_stream_write(f->x, block, (size_t)n) < 0)
            break;
        f->offset += (uint64_t)n;
        sent += (size_t)n;
    }
    free(block);
    close(fd);
}

/* What a look at the environment finds. */
enum follow_env {
    FOLLOW_ENV_LIVE,   /* go on */
    FOLLOW_ENV_GOING,  /* being deleted or gone: read what is left, then stop */
    FOLLOW_ENV_HIDDEN, /* the follower may no longer see it: stop at once */
};

static enum follow_env
follow_look(struct follow *f)
{
    struct env *env = NULL;
    struct eph_err err = {0};
    struct principal p = {.kind = PRINCIPAL_USER, .user = f->user, .role = f->role};
    int rc = store_env_get_by_id(f->api->st, f->env_id, &env, &err);
    enum follow_env state = FOLLOW_ENV_GOING;

    if (rc == 0 && !access_env_visible(&p, env->id, env->owner, env->visibility))
        state = FOLLOW_ENV_HIDDEN;
    else if (rc == 0 && env->phase != ENV_PHASE_DELETING && env->phase != ENV_PHASE_DELETED)
        state = FOLLOW_ENV_LIVE;
    /* Someone is watching: as active as a request left open. */
    if (state == FOLLOW_ENV_LIVE)
        api__note_activity(f->api, f->env_id, "api logs");
    if (rc < 0 && rc != EPH_ENOTFOUND)
        log_warn("log follow cannot read environment", "env=%s error=%s", f->env_name,
                 log_q(err.msg));
    env_free(env);
    return state;
}

static void
on_follow_tick(uv_timer_t *t)
{
    struct follow *f = container_of(t, struct follow, timer);

    if (f->stopping)
        return;
    if (http_client_gone(f->x)) {
        follow_stop(f);
        return;
    }
    if (++f->ticks % FOLLOW_CHECK_EVERY == 0) {
        enum follow_env state = follow_look(f);

        if (state == FOLLOW_ENV_HIDDEN) {
            follow_stop(f);
            return;
        }
        if (state == FOLLOW_ENV_GOING)
            f->last_read = true;
    }
    follow_read(f);
    if (f->last_read)
        follow_stop(f);
}

/* ------------------------------------------------------------- the request */

struct logs_job {
    uv_work_t work;
    struct api_call *call;
    char *path;
    char *env_name;
    int64_t env_id;
    int64_t tail;
    bool follow;
    char *text; /* the tail */
    size_t len;
    uint64_t end; /* the file size the tail reaches */
    int rc;
};

static void
logs_work(uv_work_t *w)
{
    struct logs_job *job = container_of(w, struct logs_job, work);

    job->rc =
        tail_file(job->path, job->tail, LOGS_TAIL_MAX_BYTES, &job->text, &job->len, &job->end);
}

static void
logs_done(uv_work_t *w, int status)
{
    struct logs_job *job = container_of(w, struct logs_job, work);
    struct api_call *call = job->call;
    struct http_exchange *x = call->x;
    struct follow *f;

    if (status < 0 || job->rc < 0) {
        const char *why = status < 0 ? uv_strerror(status) : strerror(-job->rc);

        log_error("cannot read log", "path=%s error=%s", log_q(job->path), log_q(why));
        api__reply_error(x, 500, "cannot read the log: see the server log");
        goto out;
    }
    if (!job->follow) {
        http_respond(x, 200, LOGS_CONTENT_TYPE, job->text, job->len);
        goto out;
    }
    http_stream_start(x, 200, LOGS_CONTENT_TYPE);
    http_stream_write(x, job->text, job->len);
    f = xcalloc(1, sizeof(*f));
    f->api = call->api;
    f->x = x;
    f->path = job->path;
    job->path = NULL;
    f->env_name = job->env_name;
    job->env_name = NULL;
    f->env_id = job->env_id;
    f->user = xstrdup(call->who.user);
    f->role = call->principal.role;
    f->offset = job->end;
    uv_timer_init(call->api->loop, &f->timer);
    uv_timer_start(&f->timer, on_follow_tick, FOLLOW_INTERVAL_MS, FOLLOW_INTERVAL_MS);
    http_on_gone(x, on_follow_gone, f);
    if (http_client_gone(x))
        follow_stop(f);
out:
    free(job->path);
    free(job->env_name);
    free(job->text);
    free(job);
    api__call_free(call);
}

void
api__envs_logs(struct api_call *call, const struct api_params *params)
{
    struct api *api = call->api;
    struct http_exchange *x = call->x;
    struct env *env = NULL;
    struct logs_job *job;
    int64_t tail;
    int rc;

    if (api__query_int(x, "tail", LOGS_TAIL_DEFAULT, 0, LOGS_TAIL_MAX, &tail) < 0)
        goto fail;
    /* Who may not see the environment gets the 404 of a missing one. */
    env = api__env_visible(call, params->name);
    if (env == NULL)
        goto fail;
    if (env_svc_find(env, params->service) == NULL) {
        api__reply_error(x, 404, "service '%s' not found in environment '%s'", params->service,
                         env->name);
        goto fail;
    }
    api__note_activity(api, env->id, "api logs");
    job = xcalloc(1, sizeof(*job));
    job->call = call;
    job->path = rec_log_path(api->rec, env, params->service);
    job->env_name = xstrdup(env->name);
    job->env_id = env->id;
    job->tail = tail;
    job->follow = api__query_flag(x, "follow");
    rc = uv_queue_work(api->loop, &job->work, logs_work, logs_done);
    if (rc < 0) {
        api__reply_error(x, 500, "cannot queue work: %s", uv_strerror(rc));
        free(job->path);
        free(job->env_name);
        free(job);
        goto fail;
    }
    env_free(env);
    return;
fail:
    env_free(env);
    api__call_free(call);
}
