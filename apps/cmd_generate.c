/* minimax-vl caption / ask: one user turn with images, answered by the model.
 * The answer goes to stdout (token by token on a terminal or with --stream);
 * progress and timings go to stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

/* The model card's quick-start request, and a longer one for --detail. */
#define CAPTION_PROMPT "Describe this image."
#define DETAIL_PROMPT "Describe this image in detail."

static int run(const char *cmd, int argc, char **argv) {
    const int ask = !strcmp(cmd, "ask");
    const char *usage = ask ? "minimax-vl ask [options] IMAGE... -p QUESTION"
                            : "minimax-vl caption [options] IMAGE... [--detail]";
    int detail = 0;
    mvl_cli_common c;
    mvl_cli_option opts[MVL_CLI_COMMON_MAX + 1];
    int nopts = mvl_cli_common_options(&c, ask ? "TEXT  the question (required)"
                                              : "TEXT  ask this instead of \"" CAPTION_PROMPT "\"", opts);
    if (!ask)
        opts[nopts++] = (mvl_cli_option){NULL, "--detail", MVL_OPT_FLAG, &detail,
                                         "ask for a long description (\"" DETAIL_PROMPT "\")"};
    int rc = mvl_cli_parse(cmd, usage,
                           ask ? "Answers a question about the images (visual question answering)."
                               : "Captions the images: one user turn with the images and a captioning request.",
                           opts, nopts, argc, argv, &c.images);
    if (rc >= 0) return rc;
    if (ask && !c.prompt) return mvl_cli_usage_error(cmd, usage, "-p QUESTION is required");
    if (!ask && c.prompt && detail) return mvl_cli_usage_error(cmd, usage, "-p and --detail exclude each other");
    if (!ask && c.images.n == 0) return mvl_cli_usage_error(cmd, usage, "give at least one IMAGE");
    if ((rc = mvl_cli_common_check(cmd, usage, &c)) >= 0) return rc;
    const char *prompt = c.prompt ? c.prompt : detail ? DETAIL_PROMPT : CAPTION_PROMPT;
    const int json = c.json, stream = (c.stream || isatty(STDOUT_FILENO)) && !json;

    mvl_error err = {0};
    mvl_model *m = NULL;
    mvl_tokenizer *tok = NULL;
    mvl_seq *seq = NULL;
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0, n_out = 0;
    uint8_t *tiles[MVL_CLI_MAX_IMAGES] = {0};
    mvl_image_input in[MVL_CLI_MAX_IMAGES];
    mvl_cli_image_prep prep = mvl_cli_common_image_prep(&c);
    mvl_model_opts mo = c.model_opts;
    mvl_cli_answer sk = {NULL, {0}, stream, MVL_OK, &err};
    mvl_stop_reason why = MVL_STOP_LENGTH;
    double t0 = mvl_cli_now_ms(), t_load = 0, t_pre = 0, t_prefill = 0, t_gen = 0;

    mvl_status st = mvl_model_load(c.dir, &mo, &m, &err);
    if (st == MVL_OK) st = mvl_tokenizer_load(c.dir, &tok, &err);
    t_load = mvl_cli_now_ms();
    if (st == MVL_OK) st = mvl_cli_images_load(m, &c.images, &prep, in, tiles, &err);
    if (st == MVL_OK) st = mvl_cli_encode_prompt(tok, m, c.system, prompt, 0, in, c.images.n, &ids, &n, &err);
    t_pre = mvl_cli_now_ms();
    if (st == MVL_OK) st = mvl_seq_init(m, &seq, &err);
    if (st == MVL_OK) st = mvl_seq_append(seq, ids, n, in, (size_t)c.images.n, NULL, &err);
    t_prefill = mvl_cli_now_ms();
    if (st == MVL_OK) st = mvl_detok_init(tok, 1, &sk.detok, &err);
    if (st == MVL_OK && !(out = mvl_malloc((size_t)c.max_tokens * sizeof *out, &err))) st = MVL_ERR_NOMEM;
    if (st == MVL_OK) {
        mvl_generate_opts go = mvl_cli_common_generate_opts(&c, tok);
        go.on_token = mvl_cli_answer_on_token;
        go.ctx = &sk;
        st = mvl_seq_generate(seq, &go, out, &n_out, &why, &err);
        if (st == MVL_OK) st = sk.st;
    }
    t_gen = mvl_cli_now_ms();
    if (st == MVL_OK) st = mvl_cli_answer_finish(&sk);
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
    if (st == MVL_OK && c.verbose)
        mvl_cli_log("%s: %zu prompt tokens, %zu generated (%s); load %.0f ms, preprocess %.0f ms, "
                        "prefill %.0f ms (%.1f tok/s), decode %.1f tok/s\n",
                cmd, n, n_out, why == MVL_STOP_ID ? "stop id" : "length limit", t_load - t0, t_pre - t_load,
                t_prefill - t_pre, n / ((t_prefill - t_pre) / 1e3 + 1e-9), decode_s > 0 ? n_out / decode_s : 0.0);
    free(sk.text.p);
    mvl_detok_free(sk.detok);
    free(out);
    free(ids);
    for (int k = 0; k < c.images.n; k++) free(tiles[k]);
    mvl_seq_free(seq);
    mvl_tokenizer_free(tok);
    mvl_model_free(m);
    rc = st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
    mvl_cli_log_close();
    return rc;
}

int mvl_cmd_caption(int argc, char **argv) { return run("caption", argc, argv); }
int mvl_cmd_ask(int argc, char **argv) { return run("ask", argc, argv); }
