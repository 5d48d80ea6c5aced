/* What the commands that run the model share (apps/): images from files to
 * model inputs, and a prompt with its images to token ids. */
#include <stdlib.h>
#include <string.h>

#include "apps/cli.h"
#include "common/mvl_common.h"

mvl_status mvl_cli_image_prepare(const mvl_model *m, const char *path, const mvl_cli_image_prep *prep,
                                 mvl_image_input *in, uint8_t **tiles, mvl_error *err) {
    *tiles = NULL;
    mvl_preproc_config pp = *mvl_model_preproc(m);
    mvl_image *img;
    mvl_status st = mvl_image_load(path, &prep->decode, &img, err);
    if (st != MVL_OK) return st;
    mvl_preproc_config_cap(&pp, img->width, img->height, prep->max_tiles, prep->max_tokens);
    mvl_preproc_result r;
    st = mvl_preprocess(img, &pp, &r, err);
    mvl_image_free(img);
    if (st == MVL_OK) { /* the bytes alone: the GPU takes them as they are, the CPU path normalises them */
        *tiles = r.tiles;
        r.tiles = NULL;
        *in = (mvl_image_input){.cols = r.cols, .rows = r.rows, .width = r.width, .height = r.height, .tiles = *tiles};
    }
    mvl_preproc_result_free(&r);
    return st;
}

mvl_status mvl_cli_images_load(const mvl_model *m, const mvl_cli_list *paths, const mvl_cli_image_prep *prep,
                               mvl_image_input *in, uint8_t **tiles, mvl_error *err) {
    const mvl_cli_image_prep defaults = {0};
    for (int k = 0; k < paths->n; k++) {
        mvl_status st = mvl_cli_image_prepare(m, paths->items[k], prep ? prep : &defaults, &in[k], &tiles[k], err);
        if (st != MVL_OK) return st;
    }
    return MVL_OK;
}

mvl_status mvl_cli_encode_prompt(const mvl_tokenizer *tok, const mvl_model *m, const char *system,
                                 const char *prompt, int raw, const mvl_image_input *in, int n_images,
                                 int32_t **ids, size_t *n, mvl_error *err) {
    int32_t counts[MVL_CLI_MAX_IMAGES];
    for (int k = 0; k < n_images; k++) counts[k] = (int32_t)mvl_model_image_tokens(m, &in[k]);
    if (raw) return mvl_chat_encode_raw(tok, prompt, strlen(prompt), counts, (size_t)n_images, ids, n, err);
    /* The images come first in the user turn, as the model card's example
     * renders it ("<image>Describe this image."). */
    mvl_chat_item items[MVL_CLI_MAX_IMAGES + 1];
    for (int k = 0; k < n_images; k++) items[k] = (mvl_chat_item){1, NULL, 0};
    items[n_images] = (mvl_chat_item){0, prompt, strlen(prompt)};
    mvl_chat_item sys_item = {0, system, system ? strlen(system) : 0};
    mvl_chat_message msgs[2] = {{MVL_ROLE_SYSTEM, &sys_item, 1}, {MVL_ROLE_USER, items, (size_t)n_images + 1}};
    return system ? mvl_chat_encode(tok, msgs, 2, 1, counts, (size_t)n_images, ids, n, err)
                  : mvl_chat_encode(tok, msgs + 1, 1, 1, counts, (size_t)n_images, ids, n, err);
}

mvl_status mvl_cli_encode_follow_up(const mvl_tokenizer *tok, const mvl_model *m, const char *prompt,
                                    int answer_closed, const mvl_image_input *in, int n_images, int32_t **ids,
                                    size_t *n, mvl_error *err) {
    /* The template puts "<end_of_sentence>\n" after every message (vision.md
     * §5.1). The separator is encoded alone: it sits between two added tokens,
     * where the full render splits it off too, so the ids are those of the
     * whole conversation rendered at once. */
    const char *close = answer_closed ? "\n" : "<end_of_sentence>\n";
    int32_t *head = NULL, *turn = NULL;
    size_t nh = 0, nt = 0;
    mvl_status st = mvl_chat_encode_raw(tok, close, strlen(close), NULL, 0, &head, &nh, err);
    if (st == MVL_OK) st = mvl_cli_encode_prompt(tok, m, NULL, prompt, 0, in, n_images, &turn, &nt, err);
    if (st == MVL_OK && !(*ids = mvl_malloc((nh + nt) * sizeof **ids, err))) st = MVL_ERR_NOMEM;
    if (st == MVL_OK) {
        memcpy(*ids, head, nh * sizeof *head);
        memcpy(*ids + nh, turn, nt * sizeof *turn);
        *n = nh + nt;
    }
    free(head);
    free(turn);
    return st;
}
