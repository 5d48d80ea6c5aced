/* MiniMax-VL-01 chat template and image placeholder expansion (text/).
 * Template: vision.md §5.1; expansion: vision.md §4.4. */
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

#define IMAGE_PLACEHOLDER "<image>"
#define GENERATION_PROMPT "<beginning_of_sentence>ai name=assistant\n"
#define MAX_IMAGE_TOKENS (1 << 24)

mvl_status mvl_chat_render(const mvl_chat_message *msgs, size_t n_msgs, int add_generation_prompt, char **out,
                           size_t *out_len, mvl_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    mvl_strbuf b = {0};
    mvl_strbuf_add(&b, "", 0);
    for (size_t i = 0; i < n_msgs; i++) {
        const mvl_chat_message *m = &msgs[i];
        switch (m->role) {
        case MVL_ROLE_SYSTEM: mvl_strbuf_puts(&b, "<beginning_of_sentence>system ai_setting=assistant\n"); break;
        case MVL_ROLE_USER: mvl_strbuf_puts(&b, "<beginning_of_sentence>user name=user\n"); break;
        case MVL_ROLE_ASSISTANT: mvl_strbuf_puts(&b, GENERATION_PROMPT); break;
        default:
            free(b.p);
            return mvl_fail(err, MVL_ERR_ARG, "chat message %zu has an unknown role %d", i, (int)m->role);
        }
        for (size_t k = 0; k < m->n_items; k++) {
            const mvl_chat_item *it = &m->items[k];
            if (it->is_image) {
                mvl_strbuf_puts(&b, IMAGE_PLACEHOLDER);
            } else if (it->len) {
                if (!it->text) {
                    free(b.p);
                    return mvl_fail(err, MVL_ERR_ARG, "chat message %zu item %zu: NULL text", i, k);
                }
                mvl_strbuf_add(&b, it->text, it->len);
            }
        }
        mvl_strbuf_puts(&b, "<end_of_sentence>\n");
    }
    if (add_generation_prompt) mvl_strbuf_puts(&b, GENERATION_PROMPT);
    if (b.oom) {
        free(b.p);
        return mvl_fail(err, MVL_ERR_NOMEM, "out of memory rendering the chat");
    }
    *out = b.p;
    if (out_len) *out_len = b.len;
    return MVL_OK;
}

/* Expands placeholder k into image_tokens[k] image ids. Missing placeholders
 * (fewer than n_images) are put first when `prepend_missing`, else an error. */
static mvl_status expand_images(const mvl_tokenizer *tok, int32_t *ids, size_t n, const int32_t *image_tokens,
                                size_t n_images, bool prepend_missing, int32_t **out, size_t *n_out,
                                mvl_error *err) {
    *out = NULL;
    *n_out = 0;
    if (n_images == 0) {
        *out = ids;
        *n_out = n;
        return MVL_OK;
    }
    mvl_status st = MVL_OK;
    int32_t image_id = mvl_tokenizer_token_id(tok, IMAGE_PLACEHOLDER);
    if (image_id < 0) st = mvl_fail(err, MVL_ERR_FORMAT, "the tokenizer has no %s token", IMAGE_PLACEHOLDER);
    if (!image_tokens && st == MVL_OK) st = mvl_fail(err, MVL_ERR_ARG, "%zu images but no token counts", n_images);
    size_t placeholders = 0, total = n;
    for (size_t i = 0; st == MVL_OK && i < n; i++) placeholders += ids[i] == image_id;
    size_t missing = placeholders < n_images ? n_images - placeholders : 0;
    if (missing && !prepend_missing && st == MVL_OK)
        st = mvl_fail(err, MVL_ERR_ARG, "%zu images but only %zu %s placeholders", n_images, placeholders,
                      IMAGE_PLACEHOLDER);
    for (size_t k = 0; st == MVL_OK && k < n_images; k++) {
        if (image_tokens[k] < 0 || image_tokens[k] > MAX_IMAGE_TOKENS)
            st = mvl_fail(err, MVL_ERR_ARG, "image %zu: token count %d out of range", k, image_tokens[k]);
        else
            total += (size_t)image_tokens[k]; /* the placeholder's own slot is a spare */
    }
    int32_t *res = st == MVL_OK ? mvl_malloc((total + missing) * sizeof *res, err) : NULL;
    if (st == MVL_OK && !res) st = MVL_ERR_NOMEM;
    if (st != MVL_OK) {
        free(ids);
        return st;
    }
    size_t o = 0, k = 0;
    for (size_t i = 0; i < missing; i++, k++)
        for (int32_t c = 0; c < image_tokens[k]; c++) res[o++] = image_id;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] == image_id && k < n_images) {
            for (int32_t c = 0; c < image_tokens[k]; c++) res[o++] = image_id;
            k++;
        } else {
            res[o++] = ids[i]; /* placeholders beyond the images stay single (vision.md §4.4) */
        }
    }
    free(ids);
    *out = res;
    *n_out = o;
    return MVL_OK;
}

mvl_status mvl_chat_encode(const mvl_tokenizer *tok, const mvl_chat_message *msgs, size_t n_msgs,
                           int add_generation_prompt, const int32_t *image_tokens, size_t n_images, int32_t **ids,
                           size_t *n_ids, mvl_error *err) {
    *ids = NULL;
    *n_ids = 0;
    char *text;
    size_t len;
    mvl_status st = mvl_chat_render(msgs, n_msgs, add_generation_prompt, &text, &len, err);
    if (st != MVL_OK) return st;
    int32_t *raw;
    size_t n;
    st = mvl_tokenizer_encode(tok, text, len, &raw, &n, err);
    free(text);
    if (st != MVL_OK) return st;
    return expand_images(tok, raw, n, image_tokens, n_images, false, ids, n_ids, err);
}

mvl_status mvl_chat_encode_raw(const mvl_tokenizer *tok, const char *text, size_t len, const int32_t *image_tokens,
                               size_t n_images, int32_t **ids, size_t *n_ids, mvl_error *err) {
    *ids = NULL;
    *n_ids = 0;
    int32_t *raw;
    size_t n;
    mvl_status st = mvl_tokenizer_encode(tok, text, len, &raw, &n, err);
    if (st != MVL_OK) return st;
    return expand_images(tok, raw, n, image_tokens, n_images, true, ids, n_ids, err);
}
