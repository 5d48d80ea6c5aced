#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

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

static FILE *log_file;

void mvl_cli_log(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (log_file) {
        va_start(ap, fmt);
        vfprintf(log_file, fmt, ap);
        va_end(ap);
        fflush(log_file);
    }
}

bool mvl_cli_log_open(const char *path) {
    mvl_cli_log_close();
    log_file = fopen(path, "a");
    if (!log_file) fprintf(stderr, "minimax-vl: %s: cannot open the log file: %s\n", path, strerror(errno));
    return log_file != NULL;
}

void mvl_cli_log_close(void) {
    if (log_file) fclose(log_file);
    log_file = NULL;
}

int mvl_cli_fail(const mvl_error *err) {
    mvl_cli_log("minimax-vl: %s\n", err->msg);
    return MVL_EXIT_ERROR;
}

double mvl_cli_now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* MVL_MODEL overrides the bundled model, so a user (or the test suite) can
 * pick the default once instead of passing -m to every command. */
const char *mvl_cli_default_model(void) {
    const char *env = getenv("MVL_MODEL");
    return env && *env ? env : MVL_DEFAULT_MODEL_DIR;
}

int mvl_cli_is_help(const char *arg) { return !strcmp(arg, "-h") || !strcmp(arg, "--help"); }

static void print_options(const char *usage, const char *about, const mvl_cli_option *opts, int nopts) {
    printf("usage: %s\n\n%s\n\n", usage, about);
    for (int i = 0; i < nopts; i++) {
        char names[64];
        snprintf(names, sizeof names, "%s%s%s", opts[i].short_name ? opts[i].short_name : "",
                 opts[i].short_name ? ", " : "    ", opts[i].long_name);
        printf("  %-22s %s\n", names, opts[i].help);
    }
    printf("  %-22s %s\n", "-h, --help", "show this help");
}

static int set_value(const char *cmd, const char *usage, const mvl_cli_option *o, const char *v) {
    char *end;
    switch (o->kind) {
    case MVL_OPT_STR:
        *(const char **)o->dest = v;
        return -1;
    case MVL_OPT_LIST: {
        mvl_cli_list *l = o->dest;
        if (l->n >= (int)(sizeof l->items / sizeof l->items[0]))
            return mvl_cli_usage_error(cmd, usage, "too many %s values", o->long_name);
        l->items[l->n++] = v;
        return -1;
    }
    case MVL_OPT_INT: {
        errno = 0;
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) return mvl_cli_usage_error(cmd, usage, "%s needs a whole number, not '%s'", o->long_name, v);
        *(long long *)o->dest = x;
        return -1;
    }
    case MVL_OPT_FLOAT: {
        errno = 0;
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x))
            return mvl_cli_usage_error(cmd, usage, "%s needs a number, not '%s'", o->long_name, v);
        *(double *)o->dest = x;
        return -1;
    }
    case MVL_OPT_FLAG:
        break;
    }
    return mvl_cli_usage_error(cmd, usage, "%s takes no value", o->long_name);
}

int mvl_cli_parse(const char *cmd, const char *usage, const char *about, const mvl_cli_option *opts, int nopts,
                  int argc, char **argv, mvl_cli_list *pos) {
    bool only_positional = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positional || a[0] != '-' || !a[1]) {
            if (!pos || pos->n >= (int)(sizeof pos->items / sizeof pos->items[0]))
                return mvl_cli_usage_error(cmd, usage, "unexpected argument '%s'", a);
            pos->items[pos->n++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_positional = true;
            continue;
        }
        if (mvl_cli_is_help(a)) {
            print_options(usage, about, opts, nopts);
            return MVL_EXIT_OK;
        }
        const char *eq = strncmp(a, "--", 2) ? NULL : strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const mvl_cli_option *o = NULL;
        for (int k = 0; k < nopts && !o; k++)
            if ((opts[k].short_name && strlen(opts[k].short_name) == len && !strncmp(a, opts[k].short_name, len)) ||
                (strlen(opts[k].long_name) == len && !strncmp(a, opts[k].long_name, len)))
                o = &opts[k];
        if (!o) return mvl_cli_usage_error(cmd, usage, "unknown option '%.*s'", (int)len, a);
        if (o->kind == MVL_OPT_FLAG) {
            if (eq) return mvl_cli_usage_error(cmd, usage, "%s takes no value", o->long_name);
            *(int *)o->dest = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) return mvl_cli_usage_error(cmd, usage, "%s needs a value", o->long_name);
        int rc = set_value(cmd, usage, o, v);
        if (rc >= 0) return rc;
    }
    return -1;
}

/* ---- the flags shared by the commands that run the model ------------------ */

int mvl_cli_common_options(mvl_cli_common *c, const char *prompt_help, mvl_cli_option *opts) {
    *c = (mvl_cli_common){.device = "cpu", .compute = "f32", .max_tokens = 256, .top_p = 1.0};
    const mvl_cli_option o[] = {
        {"-m", "--model", MVL_OPT_STR, &c->dir, "DIR  model directory (default: the bundled model)"},
        {NULL, "--image", MVL_OPT_LIST, &c->images, "IMG  an image (JPEG/PNG); repeatable"},
        {"-p", "--prompt", MVL_OPT_STR, &c->prompt, prompt_help},
        {NULL, "--system", MVL_OPT_STR, &c->system, "TEXT  a system turn before the first user turn"},
        {"-n", "--max-tokens", MVL_OPT_INT, &c->max_tokens, "N  stop after N generated tokens (default 256)"},
        {NULL, "--temp", MVL_OPT_FLOAT, &c->temp, "T  sampling temperature; 0 (default) is greedy"},
        {NULL, "--top-k", MVL_OPT_INT, &c->top_k, "K  keep the K most likely tokens (0 = off)"},
        {NULL, "--top-p", MVL_OPT_FLOAT, &c->top_p, "P  nucleus sampling (1 = off)"},
        {NULL, "--min-p", MVL_OPT_FLOAT, &c->min_p, "P  drop tokens below P x the top probability (0 = off)"},
        {NULL, "--seed", MVL_OPT_INT, &c->seed, "S  sampling seed (default 0)"},
        {"-t", "--threads", MVL_OPT_INT, &c->threads, "N  CPU threads (default: OpenBLAS's choice)"},
        {NULL, "--device", MVL_OPT_STR, &c->device, "DEV  cpu (default) or cuda: vision and decoder on GPU 0 in bf16"},
        {NULL, "--compute", MVL_OPT_STR, &c->compute,
         "f32|bf16  activations in float32 (default) or rounded to bf16 as HF runs a bf16 checkpoint"},
        {NULL, "--max-image-tokens", MVL_OPT_INT, &c->max_image_tokens,
         "N  smaller canvas: at most N visual tokens per image (1x1 tile if none fits)"},
        {NULL, "--max-tiles", MVL_OPT_INT, &c->max_tiles, "N  smaller canvas: at most N tiles per image (+ thumbnail)"},
        {NULL, "--json", MVL_OPT_FLAG, &c->json, "JSON output (see README)"},
        {NULL, "--stream", MVL_OPT_FLAG, &c->stream, "print tokens as they come (the default on a terminal)"},
        {NULL, "--no-exif", MVL_OPT_FLAG, &c->no_exif, "ignore EXIF orientation (alpha still composited on white)"},
        {NULL, "--strict-reference", MVL_OPT_FLAG, &c->strict,
         "decode images exactly as the reference (no EXIF, no alpha compositing)"},
        {"-v", "--verbose", MVL_OPT_FLAG, &c->verbose, "timings and token counts on stderr"},
        {NULL, "--log-file", MVL_OPT_STR, &c->log_file, "FILE  also append the log lines (stderr) to FILE"},
    };
    int n = (int)(sizeof o / sizeof o[0]);
    _Static_assert(sizeof o / sizeof o[0] <= MVL_CLI_COMMON_MAX, "raise MVL_CLI_COMMON_MAX");
    memcpy(opts, o, sizeof o);
    return n;
}

int mvl_cli_common_check(const char *cmd, const char *usage, mvl_cli_common *c) {
    if (c->max_tokens < 1 || c->max_tokens > 1 << 20) return mvl_cli_usage_error(cmd, usage, "-n must be 1..1048576");
    if (c->top_k < 0 || c->threads < 0 || c->threads > 1024 || c->temp < 0 || c->top_p <= 0 || c->top_p > 1 ||
        c->min_p < 0 || c->min_p > 1)
        return mvl_cli_usage_error(cmd, usage, "a sampling or thread value is out of range");
    if (c->max_tiles < 0 || c->max_image_tokens < 0)
        return mvl_cli_usage_error(cmd, usage, "--max-tiles and --max-image-tokens must be positive");
    int rc = mvl_cli_parse_device(cmd, usage, c->device, &c->model_opts.device);
    if (rc < 0) rc = mvl_cli_parse_compute(cmd, usage, c->compute, &c->model_opts.compute);
    if (rc >= 0) return rc;
    c->model_opts.n_threads = (int)c->threads;
    if (!c->dir) c->dir = mvl_cli_default_model();
    if (c->log_file && !mvl_cli_log_open(c->log_file)) return MVL_EXIT_ERROR;
    return -1;
}

int mvl_cli_parse_device(const char *cmd, const char *usage, const char *value, mvl_device *out) {
    if (!strcmp(value, "cpu")) *out = MVL_DEVICE_CPU;
    else if (!strcmp(value, "cuda")) *out = MVL_DEVICE_CUDA; /* no GPU: the model load says so */
    else return mvl_cli_usage_error(cmd, usage, "--device takes cpu or cuda, not '%s'", value);
    return -1;
}

int mvl_cli_parse_compute(const char *cmd, const char *usage, const char *value, mvl_compute *out) {
    if (!strcmp(value, "f32")) *out = MVL_COMPUTE_F32;
    else if (!strcmp(value, "bf16")) *out = MVL_COMPUTE_BF16;
    else return mvl_cli_usage_error(cmd, usage, "--compute takes f32 or bf16, not '%s'", value);
    return -1;
}

mvl_generate_opts mvl_cli_common_generate_opts(const mvl_cli_common *c, const mvl_tokenizer *tok) {
    size_t n_stop;
    const int32_t *stop = mvl_tokenizer_stop_ids(tok, &n_stop);
    return (mvl_generate_opts){{(float)c->temp, (int)c->top_k, (float)c->top_p, (float)c->min_p, (uint64_t)c->seed},
                               (size_t)c->max_tokens, stop, n_stop, NULL, NULL};
}

mvl_cli_image_prep mvl_cli_common_image_prep(const mvl_cli_common *c) {
    return (mvl_cli_image_prep){{0, c->strict, c->no_exif}, c->max_tiles, c->max_image_tokens};
}

int mvl_cli_answer_on_token(void *ctx, int32_t id) {
    mvl_cli_answer *a = ctx;
    const char *t;
    size_t n;
    if ((a->st = mvl_detok_push(a->detok, id, &t, &n, a->err)) != MVL_OK) return 1;
    mvl_strbuf_add(&a->text, t, n);
    if (a->stream && n) {
        fwrite(t, 1, n, stdout);
        fflush(stdout);
    }
    return 0;
}

mvl_status mvl_cli_answer_finish(mvl_cli_answer *a) {
    const char *t;
    size_t n;
    mvl_detok_flush(a->detok, &t, &n);
    mvl_strbuf_add(&a->text, t, n);
    if (a->stream && n) fwrite(t, 1, n, stdout);
    mvl_strbuf_add(&a->text, "", 0);
    if (a->text.oom) return mvl_fail(a->err, MVL_ERR_NOMEM, "out of memory");
    return a->st;
}
