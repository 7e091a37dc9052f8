/*
 * gateway/gateway_int.h - what only the gateway's own files share.
 *
 * The request parser is kept apart from the sockets so that the fuzz target
 * (fuzz/fuzz_http_request.c) and the connection code drive the very same
 * path: bytes in, one complete request (or a precise refusal) out.
 *
 * Pure code, no I/O; any thread, one request parser per connection.
 */
#ifndef EPH_GATEWAY_GATEWAY_INT_H
#define EPH_GATEWAY_GATEWAY_INT_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

/* More header lines than this is an attack or a bug, not a client: 431. */
#define GW_MAX_HEADERS 100

/* One header of a parsed request: offsets into the request's head text. */
struct gw_header {
    size_t name_off;  /* NUL-terminated name, as sent */
    size_t value_off; /* NUL-terminated value, surrounding blanks removed */
};

/* A complete request, owned by whoever took it from the parser. */
struct gw_request {
    const char *method; /* static string ("GET") */
    int http_major, http_minor;
    bool keep_alive;           /* the client allows another request after this one */
    bool upgrade;              /* Upgrade or CONNECT: never kept alive */
    char *head;                /* the URL, NUL, then name NUL value NUL ... */
    struct gw_header *headers; /* n_headers entries into head; never a chunked body's trailers */
    size_t n_headers;
    char *path;  /* percent-decoded, never holds a NUL byte */
    char *query; /* raw text after '?', "" if none */
    char *body;  /* NUL-terminated for convenience; body_len bytes */
    size_t body_len;
};

/* The incremental parser of one connection. */
struct gw_req {
    http_parser parser;
    size_t max_body_bytes;
    struct buf head; /* URL and headers; ceiling max_header_bytes (431) */
    struct buf body; /* ceiling max_body_bytes (413) */
    size_t url_len;
    struct gw_header headers[GW_MAX_HEADERS];
    size_t n_headers;
    int last;                 /* which callback added the last bytes to head */
    bool started;             /* the first byte of the current request arrived */
    bool headers_done;        /* the whole head is in; the body may follow */
    bool complete;            /* a whole request is in; take it with gw__req_take() */
    bool expect_continue;     /* "Expect: 100-continue" was sent with the head */
    int error_status;         /* 400, 413 or 431 once the request is refused */
    const char *error_reason; /* static text for the log */
    /* of the current request, valid once headers_done: */
    const char *method;
    int http_major, http_minor;
    bool keep_alive;
    char *path;
    char *query;
};

void gw__req_init(struct gw_req *r, size_t max_header_bytes, size_t max_body_bytes);
void gw__req_release(struct gw_req *r);

/*
 * Feeds bytes to the parser and returns how many it used. It stops after a
 * whole request (r->complete: take it, then feed the rest) or at a refusal
 * (r->error_status set: answer it and close the connection; feed no more).
 * Never call it with len 0 (the parser reads that as end of input).
 */
size_t gw__req_feed(struct gw_req *r, const char *data, size_t len);

/* Moves the complete request into *out and readies the parser for the next. */
void gw__req_take(struct gw_req *r, struct gw_request *out);
void gw__request_release(struct gw_request *req);

/* A header's value by case-insensitive name (the first of that name), or NULL. */
const char *gw__request_header(const struct gw_request *req, const char *name);

/* The decoded value of parameter `name` in a raw query string (free()), or NULL. */
char *gw__query_param(const char *query, const char *name);

#endif
