/* minimax-vl: the command line. Each subcommand lives in apps/cmd_<name>.c. */
#include <stdio.h>
#include <string.h>

#include "apps/cli.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command;

static const command commands[] = {
    {"caption", mvl_cmd_caption, "describe images"},
    {"ask", mvl_cmd_ask, "answer a question about images"},
    {"chat", mvl_cmd_chat, "talk about images, turn by turn (stdin), the state kept between turns"},
    {"batch", mvl_cmd_batch, "run many requests (folder, path list or JSONL) into a JSONL file, loading once"},
    {"info", mvl_cmd_info, "show parameter counts, dtypes, layer pattern and memory of a model"},
    {"preprocess", mvl_cmd_preprocess, "decode an image and write the ViT input tiles as .npy"},
    {"logits", mvl_cmd_logits, "write the float32 logits of a prompt (with images) as .npy"},
    {"tokenize", mvl_cmd_tokenize, "show the token ids and pieces of a text"},
};

static void print_help(FILE *f) {
    fprintf(f, "usage: minimax-vl COMMAND [options]   (minimax-vl COMMAND -h for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        print_help(stderr);
        return MVL_EXIT_USAGE;
    }
    if (mvl_cli_is_help(argv[1])) {
        print_help(stdout);
        return MVL_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "minimax-vl: unknown command '%s'\n", argv[1]);
    print_help(stderr);
    return MVL_EXIT_USAGE;
}
