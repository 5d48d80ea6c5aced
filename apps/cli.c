#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "apps/cli.h"

int mvl_cli_usage_error(const char *cmd, const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "minimax-vl %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: %s\n", usage);
    return MVL_EXIT_USAGE;
}

int mvl_cli_fail(const mvl_error *err) {
    fprintf(stderr, "minimax-vl: %s\n", err->msg);
    return MVL_EXIT_ERROR;
}

const char *mvl_cli_default_model(void) { return MVL_DEFAULT_MODEL_DIR; }

int mvl_cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }
