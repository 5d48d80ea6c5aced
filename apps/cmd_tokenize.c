/* minimax-vl tokenize: show how the model's tokenizer splits a text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli.h"

static const char usage[] = "minimax-vl tokenize [-m DIR] [--ids|--pieces] [--log-file FILE] TEXT   (TEXT '-' reads stdin)";

/* Writes a token's bytes readably: printable ASCII and whole UTF-8 as is,
 * the rest as \n, \t, \xNN. */
static void put_piece(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c >= 0x20 && c < 0x7F) putchar(c);
        else if (c >= 0x80) {
            size_t k = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
            int whole = k && i + k <= n;
            for (size_t j = 1; whole && j < k; j++) whole = ((unsigned char)s[i + j] & 0xC0) == 0x80;
            if (whole) {
                fwrite(s + i, 1, k, stdout);
                i += k - 1;
            } else {
                printf("\\x%02x", c);
            }
        } else {
            printf("\\x%02x", c);
        }
    }
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, stdin);
        if (n < cap) break;
        char *p = realloc(buf, cap *= 2);
        if (!p) free(buf);
        buf = p;
    }
    *len = n;
    return buf;
}

int mvl_cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *log_path = NULL;
    int ids_only = 0, pieces_only = 0;
    const mvl_cli_option opts[] = {
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  directory with tokenizer.json and tokenizer_config.json"},
        {NULL, "--ids", MVL_OPT_FLAG, &ids_only, "print only the ids, space-separated on one line"},
        {NULL, "--pieces", MVL_OPT_FLAG, &pieces_only, "print only the pieces, one per line"},
        {NULL, "--log-file", MVL_OPT_STR, &log_path, "FILE  also append the log lines (stderr) to FILE"},
    };
    mvl_cli_list pos = {0};
    int rc = mvl_cli_parse("tokenize", usage,
                           "Encodes TEXT with the model's tokenizer (no chat template, special tokens in the\n"
                           "text are matched) and prints one line per token: id, tab, the token's bytes.",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, &pos);
    if (rc >= 0) return rc;
    if (pos.n != 1) return mvl_cli_usage_error("tokenize", usage, "expected one TEXT argument, got %d", pos.n);
    if (ids_only && pieces_only) return mvl_cli_usage_error("tokenize", usage, "--ids and --pieces exclude each other");
    if (!dir) dir = mvl_cli_default_model();
    if (log_path && !mvl_cli_log_open(log_path)) return MVL_EXIT_ERROR;

    size_t len;
    char *text = NULL;
    if (!strcmp(pos.items[0], "-")) {
        text = read_stdin(&len);
        if (!text) {
            mvl_cli_log("minimax-vl: out of memory reading stdin\n");
            mvl_cli_log_close();
            return MVL_EXIT_ERROR;
        }
    }
    const char *in = text ? text : pos.items[0];
    if (!text) len = strlen(in);

    mvl_error err = {0};
    mvl_tokenizer *tok;
    if (mvl_tokenizer_load(dir, &tok, &err) != MVL_OK) {
        free(text);
        rc = mvl_cli_fail(&err);
        mvl_cli_log_close();
        return rc;
    }
    int32_t *ids;
    size_t n;
    mvl_status st = mvl_tokenizer_encode(tok, in, len, &ids, &n, &err);
    free(text);
    if (st != MVL_OK) {
        mvl_tokenizer_free(tok);
        rc = mvl_cli_fail(&err);
        mvl_cli_log_close();
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        size_t bl;
        const char *b = mvl_tokenizer_token_bytes(tok, ids[i], &bl);
        if (ids_only) {
            printf(i ? " %d" : "%d", ids[i]);
            continue;
        }
        if (!pieces_only) printf("%d\t", ids[i]);
        put_piece(b, bl);
        putchar('\n');
    }
    if (ids_only) putchar('\n');
    mvl_cli_log("tokenize: %zu bytes -> %zu tokens\n", len, n);
    free(ids);
    mvl_tokenizer_free(tok);
    mvl_cli_log_close();
    return MVL_EXIT_OK;
}
