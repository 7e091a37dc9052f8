/*
 * cli/cli_http.c - the CLI's HTTP client: libcurl requests to the REST API
 * (docs/api.md) with the bearer token, JSON in and out, streamed bodies for
 * logs, and error answers turned into the message a person should read.
 *
 * One curl handle per run, reused so that polling loops (--wait, --follow)
 * keep one connection. Blocking, single-threaded: this is a CLI.
 */
#include "cli/cli_int.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "util/buf.h"
#include "util/xmalloc.h"

int
cli__connect(struct cli_ctx *ctx, struct eph_err *err)
{
    struct cli_config cfg = {0};
    int rc;

    if (ctx->curl)
        return 0;
    rc = cli__config_resolve(ctx->flag_server, ctx->flag_token, &cfg, err);
    if (rc < 0)
        return rc;
    ctx->server = cfg.server;
    ctx->token = cfg.token;
    ctx->curl = curl_easy_init();
    if (ctx->curl == NULL)
        return eph_err_set(err, EPH_EINTERNAL, "cannot create a libcurl handle");
    return 0;
}

void
cli__ctx_release(struct cli_ctx *ctx)
{
    if (ctx->curl)
        curl_easy_cleanup(ctx->curl);
    ctx->curl = NULL;
    free(ctx->server);
    ctx->server = NULL;
    if (ctx->token)
        OPENSSL_cleanse(ctx->token, strlen(ctx->token)); /* a core dump should not hold it */
    free(ctx->token);
    ctx->token = NULL;
}

void
cli__sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    while (ms > 0 && nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------- pure helpers */

int
cli__status_error(long status)
{
    switch (status) {
    case 400:
    case 422: return EPH_EINVAL;
    case 401: return EPH_EUNAUTH;
    case 403: return EPH_EPERM;
    case 404: return EPH_ENOTFOUND;
    case 409: return EPH_ECONFLICT;
    case 413: return EPH_ETOOBIG;
    default: return EPH_EINTERNAL;
    }
}

void
cli__error_message(long status, const char *body, size_t body_len, char *out, size_t out_size)
{
    json_t *root = body ? json_loadb(body, body_len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));

    if (msg && *msg) {
        char *clean = cli__sanitize(msg); /* the server's text goes to a terminal */

        snprintf(out, out_size, "%s", clean);
        free(clean);
    } else {
        snprintf(out, out_size, "server answered HTTP %ld", status);
    }
    json_decref(root);
}

char *
cli__url_escape(const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t len = strlen(s);
    char *out = xmalloc(len * 3 + 1);
    char *p = out;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;

        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
            *p++ = (char)c;
        } else {
            *p++ = '%';
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p = '\0';
    return out;
}

/* ------------------------------------------------------------- requests */

/* Where a response body goes: a bounded buffer, or a stream for 2xx bodies. */
struct sink {
    CURL *curl;
    struct buf body;   /* the whole body (JSON), or an error body of a stream */
    FILE *stream;      /* 2xx bodies of a stream go here, NULL for JSON requests */
    bool too_big;      /* the body crossed its ceiling: the request was aborted */
    bool write_failed; /* writing to `stream` failed (a closed pipe): stop quietly */
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
    struct sink *s = arg;
    size_t len = size * n;
    long status = 0;

    if (s->stream) {
        curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300) {
            if (fwrite(data, 1, len, s->stream) != len || fflush(s->stream) != 0) {
                s->write_failed = true;
                return 0;
            }
            return len;
        }
    }
    if (buf_append(&s->body, data, len) < 0) {
        s->too_big = true;
        return 0;
    }
    return len;
}

/* Sets up ctx->curl for one request; `headers` gets what must be freed. */
static void
prepare(struct cli_ctx *ctx, const char *method, const char *url, const char *body_text,
        struct curl_slist **headers, struct sink *sink, long timeout_ms)
{
    char *auth = xasprintf("Authorization: Bearer %s", ctx->token);
    CURL *c = ctx->curl;

    curl_easy_reset(c);
    *headers = curl_slist_append(NULL, auth);
    OPENSSL_cleanse(auth, strlen(auth));
    free(auth);
    if (sink->stream == NULL)
        *headers = curl_slist_append(*headers, "Accept: application/json");
    if (body_text)
        *headers = curl_slist_append(*headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *headers);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "eph/" EPH_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CLI_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, sink);
    if (strcmp(method, "GET") != 0)
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body_text) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body_text);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body_text));
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
}

/* Turns a transport failure into "cannot reach server URL: <why>". */
static int
transport_error(struct cli_ctx *ctx, CURLcode code, const struct sink *sink, struct eph_err *err)
{
    long os_errno = 0;

    if (sink->too_big)
        return eph_err_set(err, EPH_ETOOBIG, "the answer of %s is larger than %u bytes",
                           ctx->server, CLI_MAX_RESPONSE_BYTES);
    if (code == CURLE_OPERATION_TIMEDOUT)
        return eph_err_set(err, EPH_ETIMEDOUT, "no answer from server %s: %s", ctx->server,
                           curl_easy_strerror(code));
    curl_easy_getinfo(ctx->curl, CURLINFO_OS_ERRNO, &os_errno);
    if (os_errno > 0 &&
        (code == CURLE_COULDNT_CONNECT || code == CURLE_RECV_ERROR || code == CURLE_SEND_ERROR))
        return eph_err_set(err, (int)-os_errno, "cannot reach server %s: %s", ctx->server,
                           strerror((int)os_errno));
    return eph_err_set(err, EPH_EINTERNAL, "cannot reach server %s: %s", ctx->server,
                       curl_easy_strerror(code));
}

/* Runs the prepared request; 0 for 2xx, else the error for people. */
static int
perform(struct cli_ctx *ctx, struct sink *sink, struct eph_err *err)
{
    CURLcode code = curl_easy_perform(ctx->curl);
    long status = 0;
    char msg[EPH_ERR_MSG_MAX];

    if (code != CURLE_OK && !sink->write_failed)
        return transport_error(ctx, code, sink, err);
    curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300)
        return 0;
    cli__error_message(status, sink->body.data, sink->body.len, msg, sizeof(msg));
    return eph_err_set(err, cli__status_error(status), "%s", msg);
}

int
cli__http_json(struct cli_ctx *ctx, const char *method, const char *path, const json_t *body,
               json_t **out, struct eph_err *err)
{
    struct sink sink = {.curl = ctx->curl};
    struct curl_slist *headers = NULL;
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    char *url = xasprintf("%s/api/v1%s", ctx->server, path);
    json_error_t jerr;
    int rc;

    *out = NULL;
    buf_init(&sink.body, CLI_MAX_RESPONSE_BYTES);
    prepare(ctx, method, url, body_text, &headers, &sink, CLI_REQUEST_TIMEOUT_MS);
    rc = perform(ctx, &sink, err);
    if (rc == 0 && sink.body.len > 0) {
        *out = json_loadb(sink.body.data, sink.body.len, 0, &jerr);
        if (*out == NULL)
            rc = eph_err_set(err, EPH_EPARSE, "invalid JSON from server %s: %s", ctx->server,
                             jerr.text);
    }
    curl_slist_free_all(headers);
    buf_release(&sink.body);
    if (body_text)
        OPENSSL_cleanse(body_text, strlen(body_text)); /* it may hold a password */
    free(body_text);
    free(url);
    return rc;
}

int
cli__http_stream(struct cli_ctx *ctx, const char *path, FILE *out, bool follow, struct eph_err *err)
{
    struct sink sink = {.curl = ctx->curl, .stream = out};
    struct curl_slist *headers = NULL;
    char *url = xasprintf("%s/api/v1%s", ctx->server, path);
    int rc;

    buf_init(&sink.body, CLI_MAX_ERROR_BYTES);
    /* A followed stream ends when the server ends it: no total timeout. */
    prepare(ctx, "GET", url, NULL, &headers, &sink, follow ? 0L : (long)CLI_REQUEST_TIMEOUT_MS);
    rc = perform(ctx, &sink, err);
    curl_slist_free_all(headers);
    buf_release(&sink.body);
    free(url);
    return rc;
}
