/* minimax-vl chat: a multi-turn conversation read line by line from stdin.
 * The conversation lives in one mvl_seq: each user turn appends only its own
 * tokens to the kept state, nothing earlier is run again. Answers go to
 * stdout; the prompt, banner and notices go to stderr. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

static const char usage[] = "minimax-vl chat [options] [--image IMG]...";

/* Images waiting for the next user turn. */
typedef struct pending {
    mvl_image_input in[MVL_CLI_MAX_IMAGES];
    uint8_t *tiles[MVL_CLI_MAX_IMAGES];
    int n;
} pending;

static void pending_clear(pending *p) {
    for (int k = 0; k < p->n; k++) free(p->tiles[k]);
    p->n = 0;
}

static mvl_status pending_add(pending *p, const mvl_model *m, const char *path, const mvl_cli_image_prep *prep,
                              mvl_error *err) {
    if (p->n == MVL_CLI_MAX_IMAGES) return mvl_fail(err, MVL_ERR_LIMIT, "at most %d images per turn", MVL_CLI_MAX_IMAGES);
    mvl_status st = mvl_cli_image_prepare(m, path, prep, &p->in[p->n], &p->tiles[p->n], err);
    if (st == MVL_OK) p->n++;
    return st;
}

typedef struct chat {
    const mvl_cli_common *c;
    const mvl_model *m;
    const mvl_tokenizer *tok;
    mvl_seq *seq;
    int32_t *out;  /* [max_tokens] ids of the last answer */
    int turn;      /* user turns in the conversation so far */
    int closed;    /* the last answer ended on <end_of_sentence> */
    int stream;
} chat;

/* One user turn: its tokens appended to the kept state, then the answer. */
static mvl_status chat_turn(chat *ch, const char *text, pending *p, mvl_error *err) {
    const mvl_cli_common *c = ch->c;
    int32_t *ids = NULL;
    size_t n = 0, n_out = 0;
    mvl_stop_reason why = MVL_STOP_LENGTH;
    mvl_cli_answer ans = {NULL, {0}, ch->stream, MVL_OK, err};
    mvl_status st = ch->turn == 0
                        ? mvl_cli_encode_prompt(ch->tok, ch->m, c->system, text, 0, p->in, p->n, &ids, &n, err)
                        : mvl_cli_encode_follow_up(ch->tok, ch->m, text, ch->closed, p->in, p->n, &ids, &n, err);
    int64_t before = mvl_seq_length(ch->seq);
    double t0 = mvl_cli_now_ms(), t1 = t0;
    if (st == MVL_OK) st = mvl_seq_append(ch->seq, ids, n, p->in, (size_t)p->n, NULL, err);
    int64_t run = mvl_seq_length(ch->seq) - before;
    if (st == MVL_OK) {
        t1 = mvl_cli_now_ms();
        ch->turn++;
        pending_clear(p);
        st = mvl_detok_init(ch->tok, 1, &ans.detok, err);
    }
    if (st == MVL_OK) {
        mvl_generate_opts go = mvl_cli_common_generate_opts(c, ch->tok);
        go.on_token = mvl_cli_answer_on_token;
        go.ctx = &ans;
        st = mvl_seq_generate(ch->seq, &go, ch->out, &n_out, &why, err);
        if (st == MVL_OK) st = ans.st;
        if (st == MVL_OK) st = mvl_cli_answer_finish(&ans);
    }
    double t2 = mvl_cli_now_ms();
    if (st == MVL_OK) {
        ch->closed = why == MVL_STOP_ID && n_out && ch->out[n_out - 1] == mvl_tokenizer_token_id(ch->tok, "<end_of_sentence>");
        if (c->json) {
            mvl_strbuf j = {0};
            mvl_strbuf_printf(&j, "{\"turn\":%d,\"text\":", ch->turn);
            mvl_strbuf_json(&j, ans.text.p, ans.text.len);
            mvl_strbuf_puts(&j, ",\"ids\":[");
            for (size_t i = 0; i < n_out; i++) mvl_strbuf_printf(&j, i ? ",%d" : "%d", ch->out[i]);
            mvl_strbuf_printf(&j, "],\"new_tokens\":%lld,\"generated_tokens\":%zu,\"stop\":\"%s\"}\n", (long long)run,
                              n_out, why == MVL_STOP_ID ? "stop_id" : "length");
            if (j.oom) st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
            else fputs(j.p, stdout);
            free(j.p);
        } else {
            if (!ch->stream) fputs(ans.text.p, stdout);
            putchar('\n');
        }
        fflush(stdout);
    }
    if (st == MVL_OK && c->verbose)
        mvl_cli_log("chat: turn %d: %lld new tokens run, %zu generated (%s); sequence %lld tokens; "
                    "prefill %.0f ms, decode %.1f tok/s\n",
                    ch->turn, (long long)run, n_out, why == MVL_STOP_ID ? "stop id" : "length limit",
                    (long long)mvl_seq_length(ch->seq), t1 - t0, n_out / ((t2 - t1) / 1e3 + 1e-9));
    /* A failed forward pass resets the sequence: the conversation starts over. */
    if (st != MVL_OK && mvl_seq_length(ch->seq) == 0) ch->turn = 0;
    free(ans.text.p);
    mvl_detok_free(ans.detok);
    free(ids);
    return st;
}

int mvl_cmd_chat(int argc, char **argv) {
    mvl_cli_common c;
    mvl_cli_option opts[MVL_CLI_COMMON_MAX];
    int nopts = mvl_cli_common_options(&c, "TEXT  a first user message (then the conversation goes on from stdin)", opts);
    int rc = mvl_cli_parse("chat", usage,
                           "A conversation about images, one user message per line of stdin (a terminal or a\n"
                           "script). The --image IMAGEs go with the first message. Commands: /image PATH adds\n"
                           "an image to the next message, /clear starts over, /quit (or end of input) leaves.\n"
                           "Each turn runs only its own new tokens on the kept state. --json: one object per\n"
                           "turn {\"turn\",\"text\",\"new_tokens\",\"generated_tokens\",\"stop\"}.",
                           opts, nopts, argc, argv, &c.images);
    if (rc >= 0) return rc;
    if ((rc = mvl_cli_common_check("chat", usage, &c)) >= 0) return rc;
    const int interactive = isatty(STDIN_FILENO);

    mvl_error err = {0};
    mvl_model *m = NULL;
    mvl_tokenizer *tok = NULL;
    pending p = {.n = 0};
    chat ch = {.c = &c, .stream = (c.stream || isatty(STDOUT_FILENO)) && !c.json};
    mvl_cli_image_prep prep = mvl_cli_common_image_prep(&c);
    mvl_model_opts mo = c.model_opts;
    char *line = NULL;
    size_t cap = 0;

    mvl_status st = mvl_model_load(c.dir, &mo, &m, &err);
    if (st == MVL_OK) st = mvl_tokenizer_load(c.dir, &tok, &err);
    if (st == MVL_OK) st = mvl_seq_init(m, &ch.seq, &err);
    if (st == MVL_OK && !(ch.out = mvl_malloc((size_t)c.max_tokens * sizeof *ch.out, &err))) st = MVL_ERR_NOMEM;
    for (int k = 0; st == MVL_OK && k < c.images.n; k++) st = pending_add(&p, m, c.images.items[k], &prep, &err);
    ch.m = m;
    ch.tok = tok;
    if (st == MVL_OK && interactive)
        fprintf(stderr, "minimax-vl chat: type a message. /image PATH adds an image to the next message, "
                        "/clear starts over, /quit leaves.\n");
    if (st == MVL_OK && c.prompt && chat_turn(&ch, c.prompt, &p, &err) != MVL_OK) mvl_cli_fail(&err);
    while (st == MVL_OK) {
        if (interactive) fputs("> ", stderr);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/clear")) {
            mvl_seq_reset(ch.seq);
            pending_clear(&p);
            ch.turn = 0;
            mvl_cli_log("chat: conversation cleared\n");
        } else if (!strncmp(line, "/image ", 7)) {
            const char *path = line + 7;
            while (*path == ' ') path++;
            if (pending_add(&p, m, path, &prep, &err) == MVL_OK)
                mvl_cli_log("chat: %s (%d visual tokens) goes with the next message\n", path,
                            (int)mvl_model_image_tokens(m, &p.in[p.n - 1]));
            else
                mvl_cli_fail(&err); /* a bad image is reported; the conversation goes on */
        } else if (line[0] == '/') {
            mvl_cli_log("chat: unknown command '%s': /image PATH, /clear, /quit\n", line);
        } else if (chat_turn(&ch, line, &p, &err) != MVL_OK) {
            mvl_cli_fail(&err);
        }
    }
    free(line);
    pending_clear(&p);
    free(ch.out);
    mvl_seq_free(ch.seq);
    mvl_tokenizer_free(tok);
    mvl_model_free(m);
    rc = st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
    mvl_cli_log_close();
    return rc;
}
