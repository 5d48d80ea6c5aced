/* minimax-vl info: what a model directory holds and what it needs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps/cli.h"

static const char usage[] = "minimax-vl info [-m DIR] [-v]";

int mvl_cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int verbose = 0;
    const mvl_cli_option opts[] = {
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  Hugging Face model directory (default: the bundled model)"},
        {"-v", "--verbose", MVL_OPT_FLAG, &verbose, "also print how long opening took (stderr)"},
    };
    int rc = mvl_cli_parse("info", usage,
                           "Checks a model directory against its config and prints parameter counts, dtypes,\n"
                           "the layer-type pattern and the memory each device needs.",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!dir) dir = mvl_cli_default_model();
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mvl_error err = {0};
    mvl_model_dir *md;
    if (mvl_model_dir_open(dir, &md, &err) != MVL_OK) return mvl_cli_fail(&err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    char *text;
    mvl_status st = mvl_model_dir_describe(md, &text, &err);
    mvl_model_dir_close(md);
    if (st != MVL_OK) return mvl_cli_fail(&err);
    fputs(text, stdout);
    free(text);
    if (verbose)
        fprintf(stderr, "info: opened %s in %.3f s (config and safetensors headers)\n", dir,
                (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9);
    return MVL_EXIT_OK;
}
