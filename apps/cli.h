/* Shared pieces of the minimax-vl command line (apps/). */
#ifndef MVL_CLI_H
#define MVL_CLI_H

#include "mvl.h"

/* Exit codes (documented in README.md). */
enum {
    MVL_EXIT_OK = 0,
    MVL_EXIT_ERROR = 1,        /* the command failed: bad input, bad model, I/O */
    MVL_EXIT_USAGE = 2,        /* unknown flag, missing value, bad arguments */
    MVL_EXIT_PARTIAL = 3,      /* batch: some inputs failed, the rest succeeded */
    MVL_EXIT_INTERRUPTED = 130 /* SIGINT */
};

/* Prints "minimax-vl CMD: <message>" and the usage line to stderr; returns 2. */
int mvl_cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prints "minimax-vl: <err->msg>" to stderr; returns 1. */
int mvl_cli_fail(const mvl_error *err);

/* The model used when -m is not given: the one bundled in testdata/. */
const char *mvl_cli_default_model(void);

/* True when arg is -h or --help. */
int mvl_cli_is_help(const char *arg);

/* Subcommands: argv[0] is the subcommand name. */
int mvl_cmd_info(int argc, char **argv);

#endif
