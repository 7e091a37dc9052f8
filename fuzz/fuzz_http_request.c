/*
 * fuzz/fuzz_http_request.c - the HTTP request parser of the server
 * (gateway/http_request.c) on arbitrary bytes, fed in pieces the way reads
 * deliver them. It must never crash or leak, whatever comes in.
 *
 *   make fuzz && mkdir -p /tmp/hr && \
 *   build/fuzz/fuzz_http_request -max_total_time=60 /tmp/hr fuzz/corpus/http_request
 *
 * (The first directory collects new inputs; the seeds' first byte is the
 * read size, as below.)
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/gateway_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Uses every accessor of a request, as a handler would. */
static void
use_request(const struct gw_request *req)
{
    static const char *const names[] = {"host", "content-length", "x", "authorization", ""};
    static const char *const params[] = {"q", "tail", "", "a b"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        (void)gw__request_header(req, names[i]);
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++)
        free(gw__query_param(req->query, params[i]));
    (void)strlen(req->path);
    if (req->body_len > 0)
        (void)req->body[req->body_len - 1];
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gw_req r;
    size_t step;

    if (size == 0)
        return 0;
    /* The first byte picks the read size: 1..256 bytes at a time. */
    step = (size_t)data[0] + 1;
    data++;
    size--;
    gw__req_init(&r, 2048, 4096);
    while (size > 0) {
        size_t piece = size < step ? size : step;
        size_t used = gw__req_feed(&r, (const char *)data, piece);

        if (r.error_status != 0)
            break;
        if (r.complete) {
            struct gw_request req;

            gw__req_take(&r, &req);
            use_request(&req);
            gw__request_release(&req);
        }
        if (used == 0 && !r.complete)
            break;
        data += used;
        size -= used;
    }
    gw__req_release(&r);
    return 0;
}
