/* minimax-vl info: what a model directory holds and what it needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/cli.h"

static const char usage[] = "minimax-vl info [-m DIR] [-v] [--log-file FILE]";

int mvl_cmd_info(int argc, char **argv) {
    const char *dir = NULL, *log_path = NULL;
    int verbose = 0;
    const mvl_cli_option opts[] = {
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  Hugging Face model directory (default: the bundled model)"},
        {"-v", "--verbose", MVL_OPT_FLAG, &verbose, "also print how long opening took (stderr)"},
        {NULL, "--log-file", MVL_OPT_STR, &log_path, "FILE  also append the log lines (stderr) to FILE"},
    };
    int rc = mvl_cli_parse("info", usage,
                           "Checks a model directory against its config and prints parameter counts, dtypes,\n"
                           "the layer-type pattern and the memory each device needs.",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!dir) dir = mvl_cli_default_model();
    if (log_path && !mvl_cli_log_open(log_path)) return MVL_EXIT_ERROR;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mvl_error err = {0};
    mvl_model_dir *md = NULL;
    mvl_status st = mvl_model_dir_open(dir, &md, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char *text = NULL;
    if (st == MVL_OK) st = mvl_model_dir_describe(md, &text, &err);
    mvl_model_dir_close(md);
    if (st == MVL_OK) fputs(text, stdout);
    free(text);
    if (st == MVL_OK && verbose)
        mvl_cli_log("info: opened %s in %.3f s (config and safetensors headers)\n", dir,
                    (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    rc = st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
    mvl_cli_log_close();
    return rc;
}
