/* minimax-vl logits: float32 logits [prompt_tokens, vocab] of one prompt, for
 * comparing against a reference (issue 5). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

static const char usage[] =
    "minimax-vl logits [-m DIR] [--image IMG]... (-p PROMPT [--system TEXT] [--raw] | --ids 1,2,3) -o OUT.npy [options]";

/* "1,2,3" -> ids; false on anything else. */
static bool parse_ids(const char *s, int32_t **out, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return false;
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
            free(ids);
            return false;
        }
        ids[k++] = (int32_t)v;
        if (!*end) break;
        p = end + 1;
    }
    *out = ids;
    *n = k;
    return true;
}

/* --ids: one image-token id per image is expanded to the image's token count;
 * ids that already hold the expanded count are kept. */
static mvl_status expand_ids(const mvl_model *m, const mvl_image_input *in, int n_images, int32_t **ids, size_t *n,
                             mvl_error *err) {
    int32_t img = mvl_model_image_token_id(m);
    size_t have = 0, total = 0;
    for (size_t i = 0; i < *n; i++) have += (*ids)[i] == img;
    if (have != (size_t)n_images || n_images == 0) return MVL_OK; /* expanded already, or wrong: append says which */
    for (int k = 0; k < n_images; k++) total += (size_t)mvl_model_image_tokens(m, &in[k]) - 1;
    int32_t *out = mvl_malloc((*n + total) * sizeof *out, err);
    if (!out) return MVL_ERR_NOMEM;
    size_t j = 0;
    int k = 0;
    for (size_t i = 0; i < *n; i++) {
        if ((*ids)[i] != img) {
            out[j++] = (*ids)[i];
            continue;
        }
        for (int64_t c = 0; c < mvl_model_image_tokens(m, &in[k]); c++) out[j++] = img;
        k++;
    }
    free(*ids);
    *ids = out;
    *n = j;
    return MVL_OK;
}

int mvl_cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *prompt = NULL, *system = NULL, *ids_arg = NULL, *out_path = NULL, *device = "cpu",
               *log_path = NULL, *compute = "f32";
    int raw = 0, verbose = 0, strict = 0, no_exif = 0;
    long long threads = 0, max_tiles = 0, max_tokens = 0;
    mvl_cli_list images = {0};
    const mvl_cli_option opts[] = {
        {"-m", "--model", MVL_OPT_STR, &dir, "DIR  model directory (default: the bundled model)"},
        {NULL, "--image", MVL_OPT_LIST, &images, "IMG  an image (JPEG/PNG); repeat for several, in prompt order"},
        {"-p", "--prompt", MVL_OPT_STR, &prompt, "TEXT  user message, rendered with the chat template"},
        {NULL, "--system", MVL_OPT_STR, &system, "TEXT  a system turn before the user turn"},
        {NULL, "--raw", MVL_OPT_FLAG, &raw, "take PROMPT as the whole model input, no template"},
        {NULL, "--ids", MVL_OPT_STR, &ids_arg, "LIST  token ids instead of a prompt; each image id stands for one image"},
        {"-o", "--output", MVL_OPT_STR, &out_path, "OUT.npy  where the float32 [tokens, vocab] logits go"},
        {"-t", "--threads", MVL_OPT_INT, &threads, "N  GEMM threads (default: OpenBLAS's choice)"},
        {NULL, "--device", MVL_OPT_STR, &device, "DEV  cpu (default) or cuda: vision and decoder on GPU 0 in bf16"},
        {NULL, "--compute", MVL_OPT_STR, &compute,
         "f32|bf16  activations in float32 (default) or rounded to bf16 as HF runs a bf16 checkpoint"},
        {NULL, "--max-image-tokens", MVL_OPT_INT, &max_tokens, "N  smaller canvas: at most N visual tokens per image"},
        {NULL, "--max-tiles", MVL_OPT_INT, &max_tiles, "N  smaller canvas: at most N tiles per image (+ thumbnail)"},
        {NULL, "--no-exif", MVL_OPT_FLAG, &no_exif, "ignore EXIF orientation (alpha still composited on white)"},
        {NULL, "--strict-reference", MVL_OPT_FLAG, &strict, "decode images exactly as the reference (no EXIF, no alpha compositing)"},
        {"-v", "--verbose", MVL_OPT_FLAG, &verbose, "print the shape written (stderr)"},
        {NULL, "--log-file", MVL_OPT_STR, &log_path, "FILE  also append the log lines (stderr) to FILE"},
    };
    int rc = mvl_cli_parse("logits", usage,
                           "Runs the prompt (with its images) through the model (--device) and writes the\n"
                           "logits at every prompt position as a float32 .npy [tokens, vocab].",
                           opts, (int)(sizeof opts / sizeof opts[0]), argc, argv, NULL);
    if (rc >= 0) return rc;
    if (!out_path) return mvl_cli_usage_error("logits", usage, "-o OUT.npy is required");
    if (!prompt == !ids_arg) return mvl_cli_usage_error("logits", usage, "give exactly one of -p and --ids");
    if (raw && !prompt) return mvl_cli_usage_error("logits", usage, "--raw goes with -p");
    if ((raw || ids_arg) && system) return mvl_cli_usage_error("logits", usage, "--system goes with a templated -p");
    if (max_tiles < 0 || max_tokens < 0) return mvl_cli_usage_error("logits", usage, "--max-tiles and --max-image-tokens must be positive");
    if (threads < 0 || threads > 1024) return mvl_cli_usage_error("logits", usage, "--threads must be 0..1024");
    mvl_model_opts mo = {.n_threads = (int)threads};
    if ((rc = mvl_cli_parse_device("logits", usage, device, &mo.device)) >= 0) return rc;
    if ((rc = mvl_cli_parse_compute("logits", usage, compute, &mo.compute)) >= 0) return rc;
    int32_t *ids = NULL;
    size_t n = 0;
    if (ids_arg && !parse_ids(ids_arg, &ids, &n))
        return mvl_cli_usage_error("logits", usage, "--ids needs comma-separated non-negative integers");
    if (!dir) dir = mvl_cli_default_model();
    if (log_path && !mvl_cli_log_open(log_path)) {
        free(ids);
        return MVL_EXIT_ERROR;
    }
    mvl_cli_image_prep prep = {{0, strict, no_exif}, max_tiles, max_tokens};

    mvl_error err = {0};
    mvl_model *m = NULL;
    mvl_tokenizer *tok = NULL;
    mvl_seq *seq = NULL;
    float *logits = NULL;
    uint8_t *tiles[MVL_CLI_MAX_IMAGES] = {0};
    mvl_image_input in[MVL_CLI_MAX_IMAGES];
    mvl_status st = mvl_model_load(dir, &mo, &m, &err);
    if (st == MVL_OK) st = mvl_cli_images_load(m, &images, &prep, in, tiles, &err);
    if (st == MVL_OK && prompt) {
        st = mvl_tokenizer_load(dir, &tok, &err);
        if (st == MVL_OK) st = mvl_cli_encode_prompt(tok, m, system, prompt, raw, in, images.n, &ids, &n, &err);
    } else if (st == MVL_OK) {
        st = expand_ids(m, in, images.n, &ids, &n, &err);
    }
    if (st == MVL_OK && n == 0) st = mvl_fail(&err, MVL_ERR_ARG, "the prompt has no tokens");
    if (st == MVL_OK) st = mvl_seq_init(m, &seq, &err);
    size_t V = m ? (size_t)mvl_model_vocab_size(m) : 0;
    if (st == MVL_OK) {
        logits = mvl_malloc(n * V * sizeof(float), &err);
        if (!logits) st = MVL_ERR_NOMEM;
    }
    if (st == MVL_OK) st = mvl_seq_append(seq, ids, n, in, (size_t)images.n, logits, &err);
    if (st == MVL_OK) {
        int64_t shape[2] = {(int64_t)n, (int64_t)V};
        st = mvl_npy_write_f32(out_path, logits, 2, shape, &err);
    }
    if (st == MVL_OK) mvl_cli_log("logits: %zu tokens x %zu vocab -> %s\n", n, V, out_path);
    free(logits);
    free(ids);
    for (int k = 0; k < images.n; k++) free(tiles[k]);
    mvl_seq_free(seq);
    mvl_tokenizer_free(tok);
    mvl_model_free(m);
    rc = st == MVL_OK ? MVL_EXIT_OK : mvl_cli_fail(&err);
    mvl_cli_log_close();
    return rc;
}
