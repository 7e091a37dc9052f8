/*
 * cli/cli.h - every verb of `eph` but `serve`: a client of the REST API
 * (docs/api.md) over libcurl, with human tables by default and `-o json`.
 *
 * Exit codes: 0 ok, 1 the operation failed, 2 usage error.
 */
#ifndef EPH_CLI_CLI_H
#define EPH_CLI_CLI_H

/* Runs `eph VERB ...` (argv[0] is the program). Returns the exit code. */
int cli_main(int argc, char **argv);

/* The entry point of `eph serve`, provided by the server (src/server/serve.h);
 * the CLI's verb table lists it so that `eph --help` shows it. */
int serve_main(int argc, char **argv);

#endif
