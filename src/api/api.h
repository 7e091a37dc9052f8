/*
 * api/api.h - the REST API under /api/v1 (docs/api.md): JSON in, store and
 * reconciler calls, JSON out.
 *
 * Every request but /api/v1/healthz carries "Authorization: Bearer <token>";
 * the token's hash is looked up in the store. Validation errors are 4xx with
 * {"error": {"code": ..., "message": ...}}. Work that blocks (git) runs on
 * the libuv thread pool and the answer follows when it is done.
 *
 * Control loop only.
 */
#ifndef EPH_API_API_H
#define EPH_API_API_H

#include <uv.h>

#include "core/config.h"
#include "gateway/http_server.h"
#include "reconciler/reconciler.h"
#include "store/store.h"

struct api;

/* Borrows everything; they must outlive the api. */
int api_new(uv_loop_t *loop, struct store *st, struct reconciler *rec, const struct config *cfg,
            struct api **out, struct eph_err *err);

/* The http_handler_cb to give the HTTP server, with the api as its arg. */
void api_handle(struct http_exchange *x, void *api);

/* Frees the api; requests in flight must be finished first (http_server_close). */
void api_free(struct api *api);

#endif
