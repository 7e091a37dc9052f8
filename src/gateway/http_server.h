/*
 * gateway/http_server.h - a small HTTP/1.1 server on a libuv loop, for the
 * control host (the REST API). The gateway issue grows this into the proxy.
 *
 * One handler gets every request as an exchange. It answers now or later
 * (after work on another thread), once: http_respond(), or a chunked stream
 * with http_stream_start/write/end. Keep-alive, request bodies up to a
 * ceiling (413 beyond), headers up to a ceiling (431), a header timeout, a
 * body deadline, an idle timeout and a connection limit are handled here.
 * Trailers of a chunked request body are read and dropped: they never show
 * up as headers.
 *
 * A client that half-closes (sends FIN) after its request still gets the
 * answer, then the connection closes; a client that resets has gone. Once a
 * stream has started, a FIN also means the client has gone.
 *
 * One loop: every function runs on the loop the server was started on.
 * The process must ignore SIGPIPE (libuv writes to sockets with write(2)).
 */
#ifndef EPH_GATEWAY_HTTP_SERVER_H
#define EPH_GATEWAY_HTTP_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util/err.h"

struct http_server;
struct http_exchange; /* one request and its response */

typedef void http_handler_cb(struct http_exchange *x, void *arg);
typedef void http_gone_cb(struct http_exchange *x, void *arg);

struct http_server_config {
    uv_loop_t *loop;
    const char *host;          /* "127.0.0.1" */
    int port;                  /* 0: any free port (see http_server_port) */
    size_t max_header_bytes;   /* request line + headers; 431 beyond */
    size_t max_body_bytes;     /* request body; 413 beyond */
    int64_t header_timeout_ms; /* time to receive a whole request head: 408, close */
    int64_t idle_timeout_ms;   /* keep-alive connection without a request; also the
                                  longest wait for the next bytes of a body: 408 */
    /* Time to receive a whole request body, measured from the end of its head
     * and not extended by bytes trickling in: 408 and close. 0: 60 s. */
    int64_t body_timeout_ms;
    /* Open connections, counting exchanges that outlived their connection.
     * One more is accepted, answered 503 (Retry-After: 1) if the socket takes
     * it at once, and closed, so memory stays bounded. 0: 1024. */
    int max_connections;
    http_handler_cb *handler;
    void *handler_arg;
};

/*
 * Binds host:port and listens. Returns 0 and *out, or EPH_EINVAL / EPH_ECONFLICT
 * (address in use) with a message; after a failure, run the loop once more so
 * the listener's close callback frees it before uv_loop_close().
 */
int http_server_start(const struct http_server_config *cfg, struct http_server **out,
                      struct eph_err *err);
int http_server_port(const struct http_server *srv);
/* Stops listening, closes idle connections, and calls done(arg) once every
 * connection is closed (in-flight exchanges are finished by their handlers,
 * then their connections close; each is told through its gone callback, even
 * one registered after this call). Frees the server just after done returns;
 * done is never called from inside this function. */
void http_server_close(struct http_server *srv, void (*done)(void *arg), void *arg);

/* ---- the request: borrowed, valid until the exchange is finished ---- */
const char *http_method(const struct http_exchange *x); /* "GET" */
const char *http_path(const struct http_exchange *x);   /* percent-decoded, no query */
const char *http_query(const struct http_exchange *x);  /* raw, "" if none */
/* A decoded query parameter (free()), NULL if absent. */
char *http_query_param(const struct http_exchange *x, const char *name);
/* A header value by case-insensitive name, NULL if absent. */
const char *http_header(const struct http_exchange *x, const char *name);
const char *http_body(const struct http_exchange *x, size_t *len);
const char *http_remote_addr(const struct http_exchange *x); /* "127.0.0.1" */

/* ---- the response ---- */
/* Adds a response header before the response starts. */
void http_add_header(struct http_exchange *x, const char *name, const char *value);
/* Sends a whole response and finishes the exchange (x is invalid after). */
void http_respond(struct http_exchange *x, int status, const char *content_type, const char *body,
                  size_t len);
/* Starts a chunked response. */
void http_stream_start(struct http_exchange *x, int status, const char *content_type);
/* Sends a chunk. Returns 0, or EPH_ECONFLICT once the client has gone. */
int http_stream_write(struct http_exchange *x, const void *data, size_t len);
/* Bytes queued for the client and not yet written (for backpressure). */
size_t http_stream_pending(const struct http_exchange *x);
/* Ends the stream and finishes the exchange (x is invalid after). */
void http_stream_end(struct http_exchange *x);
/* True once the client has closed the connection. */
bool http_client_gone(const struct http_exchange *x);
/* Called once if the client goes, or the server is being closed
 * (http_server_close), before the exchange is finished: a stream should end
 * then. Registered after the server began closing, it runs soon after this
 * call. The handler must still finish the exchange (respond or end) to
 * release it, and may do so inside the callback. It runs from a callback of
 * the loop, never from inside this or another http_* call, and never after
 * the exchange is finished. If http_client_gone() is already true when this
 * is called, cb may never run: check that too. */
void http_on_gone(struct http_exchange *x, http_gone_cb *cb, void *arg);
/* Any per-exchange pointer a handler wants to keep. */
void http_set_data(struct http_exchange *x, void *data);
void *http_get_data(const struct http_exchange *x);

#endif
