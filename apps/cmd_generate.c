/* minimax-vl caption / ask: one user turn with images, answered by the model.
 * The answer goes to stdout (token by token on a terminal or with --stream);
 * progress and timings go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

/* The model card's quick-start request, and a longer one for --detail. */
#define CAPTION_PROMPT "Describe this image."
#define DETAIL_PROMPT "Describe this image in detail."

typedef struct {
    mvl_detok *detok;
    mvl_strbuf text;
    int stream;
    mvl_status st;
    mvl_error *err;
} sink;

static int on_token(void *ctx, int32_t id) {
    sink *s = ctx;
    const char *t;
    size_t n;
    if ((s->st = mvl_detok_push(s->detok, id, &t, &n, s->err)) != MVL_OK) return 1;
    mvl_strbuf_add(&s->text, t, n);
    if (s->stream && n) {
        fwrite(t, 1, n, stdout);
        fflush(stdout);
    }
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int run(const char *cmd, int argc, char **argv) {
    const int ask = !strcmp(cmd, "ask");
    const char *usage = ask ? "minimax-vl ask [options] IMAGE... -p QUESTION"
                            : "minimax-vl caption [options] IMAGE... [--detail]";
    const char *dir = NULL, *prompt = NULL, *system = NULL, *device = "cpu";
    long long max_tokens = 256, top_k = 0, seed = 0, threads = 0;
    double temp = 0.0, top_p = 1.0, min_p = 0.0;
    int detail = 0, json = 0, stream = 0, verbose = 0, strict = 0, no_exif = 0;
    mvl_cli_list images = {0};
    const mvl_cli_option opts[] = {
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  model directory (default: the bundled model)"},
        {NULL, "--image", MVL_OPT_LIST, &images, "IMG  an image (JPEG/PNG); repeatable, like positional IMAGEs"},
        {"-p", "--prompt", MVL_OPT_STR, &prompt, ask ? "TEXT  the question (required)"
                                                     : "TEXT  ask this instead of \"" CAPTION_PROMPT "\""},
        {NULL, "--detail", MVL_OPT_FLAG, &detail, "ask for a long description (\"" DETAIL_PROMPT "\")"},
        {NULL, "--system", MVL_OPT_STR, &system, "TEXT  a system turn before the user turn"},
        {"-n", "--max-tokens", MVL_OPT_INT, &max_tokens, "N  stop after N generated tokens (default 256)"},
        {NULL, "--temp", MVL_OPT_FLOAT, &temp, "T  sampling temperature; 0 (default) is greedy"},
        {NULL, "--top-k", MVL_OPT_INT, &top_k, "K  keep the K most likely tokens (0 = off)"},
        {NULL, "--top-p", MVL_OPT_FLOAT, &top_p, "P  nucleus sampling (1 = off)"},
        {NULL, "--min-p", MVL_OPT_FLOAT, &min_p, "P  drop tokens below P x the top probability (0 = off)"},
        {NULL, "--seed", MVL_OPT_INT, &seed, "S  sampling seed (default 0)"},
        {"-t", "--threads", MVL_OPT_INT, &threads, "N  CPU threads (default: OpenBLAS's choice)"},
        {NULL, "--device", MVL_OPT_STR, &device, "DEV  cpu (default); cuda arrives with the CUDA decoder"},
        {NULL, "--json", MVL_OPT_FLAG, &json, "print one JSON object: text, ids, token counts, timings"},
        {NULL, "--stream", MVL_OPT_FLAG, &stream, "print tokens as they come (the default on a terminal)"},
        {NULL, "--strict-reference", MVL_OPT_FLAG, &strict, "decode images exactly as the reference (no EXIF, no alpha compositing)"},
        {NULL, "--no-exif", MVL_OPT_FLAG, &no_exif, "same as --strict-reference for now: ignore EXIF orientation"},
        {"-v", "--verbose", MVL_OPT_FLAG, &verbose, "timings and token counts on stderr"},
    };
    int rc = mvl_cli_parse(cmd, usage,
                           ask ? "Answers a question about the images (visual question answering)."
                               : "Captions the images: one user turn with the images and a captioning request.",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, &images);
    if (rc >= 0) return rc;
    if (ask && !prompt) return mvl_cli_usage_error(cmd, usage, "-p QUESTION is required");
    if (!ask && prompt && detail) return mvl_cli_usage_error(cmd, usage, "-p and --detail exclude each other");
    if (!ask && images.n == 0) return mvl_cli_usage_error(cmd, usage, "give at least one IMAGE");
    if (max_tokens < 1 || max_tokens > 1 << 20) return mvl_cli_usage_error(cmd, usage, "-n must be 1..1048576");
    if (top_k < 0 || threads < 0 || threads > 1024 || temp < 0 || top_p <= 0 || top_p > 1 || min_p < 0 || min_p > 1)
        return mvl_cli_usage_error(cmd, usage, "a sampling or thread value is out of range");
    if (strcmp(device, "cpu"))
        return mvl_cli_usage_error(cmd, usage, "--device %s: only cpu is available in this build of the decoder", device);
    if (!prompt) prompt = detail ? DETAIL_PROMPT : CAPTION_PROMPT;
    if (!dir) dir = mvl_cli_default_model();
    stream = (stream || isatty(STDOUT_FILENO)) && !json;

    mvl_error err = {0};
    mvl_model *m = NULL;
    mvl_tokenizer *tok = NULL;
    mvl_seq *seq = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0, n_out = 0;
    float *pixels[MVL_CLI_MAX_IMAGES] = {0};
    mvl_image_input in[MVL_CLI_MAX_IMAGES];
    mvl_image_opts io = {0, strict || no_exif};
    mvl_model_opts mo = {(int)threads};
    sink sk = {NULL, {0}, stream, MVL_OK, &err};
    mvl_stop_reason why = MVL_STOP_LENGTH;
    double t0 = now_ms(), t_load = 0, t_pre = 0, t_prefill = 0, t_gen = 0;

    mvl_status st = mvl_model_load(dir, &mo, &m, &err);
    if (st == MVL_OK) st = mvl_tokenizer_load(dir, &tok, &err);
    t_load = now_ms();
    if (st == MVL_OK) st = mvl_cli_images_load(m, &images, &io, in, pixels, &err);
    if (st == MVL_OK) st = mvl_cli_encode_prompt(tok, m, system, prompt, 0, in, images.n, &ids, &n, &err);
    t_pre = now_ms();
    if (st == MVL_OK) st = mvl_seq_init(m, &seq, &err);
    if (st == MVL_OK) st = mvl_seq_append(seq, ids, n, in, (size_t)images.n, NULL, &err);
    t_prefill = now_ms();
    if (st == MVL_OK) st = mvl_detok_init(tok, 1, &sk.detok, &err);
    if (st == MVL_OK && !(out = mvl_malloc((size_t)max_tokens * sizeof *out, &err))) st = MVL_ERR_NOMEM;
    if (st == MVL_OK) {
        size_t n_stop;
        const int32_t *stop = mvl_tokenizer_stop_ids(tok, &n_stop);
        mvl_generate_opts go = {{(float)temp, (int)top_k, (float)top_p, (float)min_p, (uint64_t)seed},
                                (size_t)max_tokens, stop, n_stop, on_token, &sk};
        st = mvl_seq_generate(seq, &go, out, &n_out, &why, &err);
        if (st == MVL_OK) st = sk.st;
    }
    t_gen = now_ms();
    if (st == MVL_OK) {
        const char *t;
        size_t tn;
        mvl_detok_flush(sk.detok, &t, &tn);
        mvl_strbuf_add(&sk.text, t, tn);
        if (stream) fwrite(t, 1, tn, stdout);
        mvl_strbuf_add(&sk.text, "", 0);
        if (sk.text.oom) st = mvl_fail(&err, MVL_ERR_NOMEM, "out of memory");
    }
    double decode_s = (t_gen - t_prefill) / 1e3;
    if (st == MVL_OK && json) {
        mvl_strbuf j = {0};
        mvl_strbuf_puts(&j, "{\"text\":");
        mvl_strbuf_json(&j, sk.text.p, sk.text.len);
        mvl_strbuf_puts(&j, ",\"ids\":[");
        for (size_t i = 0; i < n_out; i++) mvl_strbuf_printf(&j, i ? ",%d" : "%d", out[i]);
        mvl_strbuf_printf(&j,
                          "],\"prompt_tokens\":%zu,\"generated_tokens\":%zu,\"stop\":\"%s\",\"timings_ms\":"
                          "{\"load\":%.1f,\"preprocess\":%.1f,\"prefill\":%.1f,\"decode\":%.1f},"
                          "\"decode_tokens_per_s\":%.2f}\n",
                          n, n_out, why == MVL_STOP_ID ? "stop_id" : "length", t_load - t0, t_pre - t_load,
                          t_prefill - t_pre, t_gen - t_prefill, decode_s > 0 ? (double)n_out / decode_s : 0.0);
        if (j.oom) st = mvl_fail(&err, MVL_ERR_NOMEM, "out of memory");
        else fputs(j.p, stdout);
        free(j.p);
    } else if (st == MVL_OK) {
        if (!stream) fputs(sk.text.p, stdout);
        putchar('\n');
    }
    if (st == MVL_OK && verbose)
        fprintf(stderr, "%s: %zu prompt tokens, %zu generated (%s); load %.0f ms, preprocess %.0f ms, "
                        "prefill %.0f ms (%.1f tok/s), decode %.1f tok/s\n",
                cmd, n, n_out, why == MVL_STOP_ID ? "stop id" : "length limit", t_load - t0, t_pre - t_load,
                t_prefill - t_pre, n / ((t_prefill - t_pre) / 1e3 + 1e-9), decode_s > 0 ? n_out / decode_s : 0.0);
    free(sk.text.p);
    mvl_detok_free(sk.detok);
    free(out);
    free(ids);
    for (int k = 0; k < images.n; k++) free(pixels[k]);
    mvl_seq_free(seq);
    mvl_tokenizer_free(tok);
    mvl_model_free(m);
    return st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
}

int mvl_cmd_caption(int argc, char **argv) { return run("caption", argc, argv); }
int mvl_cmd_ask(int argc, char **argv) { return run("ask", argc, argv); }
