/*
 * main.c - the one binary: `eph serve` runs the server; every other verb is
 * the CLI, a client of the server's REST API.
 */
#include <string.h>

#include "cli/cli.h"

int
main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "serve") == 0)
        return serve_main(argc - 1, argv + 1);
    return cli_main(argc, argv);
}
