/*
 * server/serve.h - `eph serve`: the composition root that wires the store,
 * the local driver, the reconciler, the API and the HTTP server on one
 * control loop, and runs it until SIGTERM or SIGINT.
 *
 * serve_main() itself is declared in cli/cli.h, next to the CLI's entry
 * point, because main.c dispatches between the two.
 */
#ifndef EPH_SERVER_SERVE_H
#define EPH_SERVER_SERVE_H

#include "cli/cli.h"

#endif
