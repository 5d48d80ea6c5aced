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

/* ---- declarative option parsing, shared by every subcommand ---------------
 * Flags follow llama.cpp's vocabulary (-m/--model, --image, -p/--prompt, -n,
 * --temp, ...). Both "--flag value" and "--flag=value" are accepted. */
typedef enum {
    MVL_OPT_FLAG,  /* int *: set to 1 */
    MVL_OPT_STR,   /* const char **: the value */
    MVL_OPT_INT,   /* long long *: a whole number */
    MVL_OPT_FLOAT, /* double *: a finite number */
    MVL_OPT_LIST,  /* mvl_cli_list *: repeatable */
} mvl_opt_kind;

typedef struct mvl_cli_list {
    const char *items[256];
    int n;
} mvl_cli_list;

typedef struct mvl_cli_option {
    const char *short_name; /* "-m", or NULL */
    const char *long_name;  /* "--model" */
    mvl_opt_kind kind;
    void *dest;
    const char *help;       /* "DIR  what it does" */
} mvl_cli_option;

/* Parses argv[1..] (argv[0] is the subcommand). Positional arguments go to
 * pos (which may be NULL when none are accepted). Returns -1 when the
 * command should go on, MVL_EXIT_OK after printing -h help, or
 * MVL_EXIT_USAGE after a usage error (unknown flag, missing or bad value). */
int mvl_cli_parse(const char *cmd, const char *usage, const char *about, const mvl_cli_option *opts, int nopts,
                  int argc, char **argv, mvl_cli_list *pos);

/* ---- running the model ---------------------------------------------------- */

#define MVL_CLI_MAX_IMAGES 256 /* as many as an mvl_cli_list holds */

/* Decodes and preprocesses paths->items[k] into in[k]; pixels[k] (malloc'd,
 * the caller frees them, also after an error) holds its float32 tiles. */
mvl_status mvl_cli_images_load(const mvl_model *m, const mvl_cli_list *paths, const mvl_image_opts *opts,
                               mvl_image_input *in, float **pixels, mvl_error *err);

/* Token ids of one user turn (optionally after a system turn) holding the
 * images and then the prompt, with the generation prompt; raw: the prompt
 * is the whole input, no template. *ids is malloc'd. */
mvl_status mvl_cli_encode_prompt(const mvl_tokenizer *tok, const mvl_model *m, const char *system,
                                 const char *prompt, int raw, const mvl_image_input *in, int n_images,
                                 int32_t **ids, size_t *n, mvl_error *err);

/* Subcommands: argv[0] is the subcommand name. */
int mvl_cmd_info(int argc, char **argv);
int mvl_cmd_caption(int argc, char **argv);
int mvl_cmd_ask(int argc, char **argv);
int mvl_cmd_preprocess(int argc, char **argv);
int mvl_cmd_logits(int argc, char **argv);
int mvl_cmd_tokenize(int argc, char **argv);

#endif
