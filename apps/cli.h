/* Shared pieces of the minimax-vl command line (apps/). */
#ifndef MVL_CLI_H
#define MVL_CLI_H

#include <stdbool.h>

#include "common/mvl_common.h"
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

/* Prints "minimax-vl: <err->msg>" to stderr (and the log file); returns 1. */
int mvl_cli_fail(const mvl_error *err);

/* Log lines: to stderr, and appended to the --log-file when one is open. */
void mvl_cli_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Opens (appending) the log file; false with a message on stderr if it cannot. */
bool mvl_cli_log_open(const char *path);
void mvl_cli_log_close(void);

/* The model used when -m is not given: $MVL_MODEL when set, else the one
 * bundled in testdata/ (the demo model). */
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

/* ---- the flags shared by the commands that run the model ------------------
 * caption, ask, chat and batch take the same set, in llama.cpp's vocabulary
 * (ecosystem.md A6). */
typedef struct mvl_cli_common {
    const char *dir, *prompt, *system, *device, *log_file, *compute;
    long long max_tokens, top_k, seed, threads, max_image_tokens, max_tiles;
    double temp, top_p, min_p;
    int json, stream, verbose, strict, no_exif;
    mvl_cli_list images;
    mvl_model_opts model_opts; /* threads, compute mode and device, set by mvl_cli_common_check */
} mvl_cli_common;

#define MVL_CLI_COMMON_MAX 24 /* entries mvl_cli_common_options may write */

/* Sets the defaults in c and writes the shared entries of an option table
 * into opts; returns how many. prompt_help documents -p for this command. */
int mvl_cli_common_options(mvl_cli_common *c, const char *prompt_help, mvl_cli_option *opts);
/* After parsing: range checks, the default model, --log-file opened. Returns
 * -1 to go on, or the exit code of a usage error. */
int mvl_cli_common_check(const char *cmd, const char *usage, mvl_cli_common *c);
/* --device cpu|cuda into *out; returns -1 to go on, or the exit code of a usage error. */
int mvl_cli_parse_device(const char *cmd, const char *usage, const char *value, mvl_device *out);
/* --compute f32|bf16 into *out; returns -1 to go on, or the exit code of a usage error. */
int mvl_cli_parse_compute(const char *cmd, const char *usage, const char *value, mvl_compute *out);
/* Generation options for c (no callback yet). */
mvl_generate_opts mvl_cli_common_generate_opts(const mvl_cli_common *c, const mvl_tokenizer *tok);

/* ---- running the model ---------------------------------------------------- */

#define MVL_CLI_MAX_IMAGES 256 /* as many as an mvl_cli_list holds */

/* How an image file becomes a model input. */
typedef struct mvl_cli_image_prep {
    mvl_image_opts decode;
    int64_t max_tiles, max_tokens; /* canvas caps (mvl_preproc_config_cap); 0 = none */
} mvl_cli_image_prep;

mvl_cli_image_prep mvl_cli_common_image_prep(const mvl_cli_common *c);

/* Decodes and preprocesses one image file into *in; *tiles (malloc'd, the
 * caller frees it; NULL after an error) holds its uint8 tiles, which in->tiles
 * borrows (in->pixels is NULL: the model normalises on the CPU path). Safe to
 * call from several threads at once. */
mvl_status mvl_cli_image_prepare(const mvl_model *m, const char *path, const mvl_cli_image_prep *prep,
                                 mvl_image_input *in, uint8_t **tiles, mvl_error *err);

/* mvl_cli_image_prepare for each of paths->items[k] into in[k], tiles[k]
 * (the caller frees them, also after an error). prep may be NULL (defaults). */
mvl_status mvl_cli_images_load(const mvl_model *m, const mvl_cli_list *paths, const mvl_cli_image_prep *prep,
                               mvl_image_input *in, uint8_t **tiles, mvl_error *err);

/* Token ids of one user turn (optionally after a system turn) holding the
 * images and then the prompt, with the generation prompt; raw: the prompt
 * is the whole input, no template. *ids is malloc'd. */
mvl_status mvl_cli_encode_prompt(const mvl_tokenizer *tok, const mvl_model *m, const char *system,
                                 const char *prompt, int raw, const mvl_image_input *in, int n_images,
                                 int32_t **ids, size_t *n, mvl_error *err);

/* Token ids of a follow-up user turn, after the assistant's answer that the
 * sequence holds: closes that answer (its end token when generation did not
 * stop on it: answer_closed 0), then the user turn and the generation prompt. */
mvl_status mvl_cli_encode_follow_up(const mvl_tokenizer *tok, const mvl_model *m, const char *prompt,
                                    int answer_closed, const mvl_image_input *in, int n_images, int32_t **ids,
                                    size_t *n, mvl_error *err);

/* The generated text of a turn: detokenized as it comes, and written to
 * stdout as it comes when stream is set. Use as mvl_generate_opts.on_token
 * with ctx = the mvl_cli_answer. */
typedef struct mvl_cli_answer {
    mvl_detok *detok;
    mvl_strbuf text;
    int stream;
    mvl_status st;
    mvl_error *err;
} mvl_cli_answer;

int mvl_cli_answer_on_token(void *ctx, int32_t id);
/* Ends the answer: flushes the detokenizer and NUL-terminates text. */
mvl_status mvl_cli_answer_finish(mvl_cli_answer *a);

double mvl_cli_now_ms(void);

/* Subcommands: argv[0] is the subcommand name. */
int mvl_cmd_info(int argc, char **argv);
int mvl_cmd_caption(int argc, char **argv);
int mvl_cmd_ask(int argc, char **argv);
int mvl_cmd_preprocess(int argc, char **argv);
int mvl_cmd_logits(int argc, char **argv);
int mvl_cmd_tokenize(int argc, char **argv);
int mvl_cmd_chat(int argc, char **argv);
int mvl_cmd_batch(int argc, char **argv);

#endif
