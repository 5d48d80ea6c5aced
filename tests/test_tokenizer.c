/* Tokenizer unit tests: malformed files, invalid UTF-8, decoding, the
 * streaming decoder, the chat format and image expansion, and the synthetic
 * 200,064-id tokenizer with the released model's special ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "mvl.h"
#include "tok_testutil.h"

static mvl_tokenizer *load_named(const char *name) {
    char rel[128];
    snprintf(rel, sizeof rel, "testdata/tokenizers/%s", name);
    char *dir = tok_source_path(rel);
    mvl_tokenizer *tok = NULL;
    mvl_error err = {0};
    if (mvl_tokenizer_load(dir, &tok, &err) != MVL_OK) fail_msg("%s", err.msg);
    free(dir);
    return tok;
}

/* ---- malformed tokenizer.json ---------------------------------------------------------- */

static char tmpdir[256];

static int make_tmpdir(void **state) {
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mvl_tok_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int remove_tmpdir(void **state) {
    (void)state;
    const char *names[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json"};
    char path[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
        unlink(path);
    }
    return rmdir(tmpdir);
}

/* A minimal valid file: bytes a, b, c and merges a+b, ab+c. %s slots:
 * model type, merges, added tokens, normalizer, pre_tokenizer, decoder. */
static void write_tok(const char *model_type, const char *merges, const char *added, const char *normalizer,
                      const char *pretok, const char *decoder) {
    char buf[8192];
    snprintf(buf, sizeof buf,
             "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":%s,"
             "\"normalizer\":%s,\"pre_tokenizer\":%s,\"post_processor\":null,\"decoder\":%s,"
             "\"model\":{\"type\":\"%s\",\"vocab\":{\"a\":0,\"b\":1,\"c\":2,\"ab\":3,\"abc\":4,\"\\u0120\":5},"
             "\"merges\":%s}}",
             added, normalizer, pretok, decoder, model_type, merges);
    write_file("tokenizer.json", buf);
    write_file("tokenizer_config.json", "{\"eos_token\":\"abc\"}");
}

#define OK_PRETOK "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"use_regex\":true}"
#define OK_DEC "{\"type\":\"ByteLevel\"}"

static void expect_fail(mvl_status want, const char *needle) {
    mvl_tokenizer *tok = NULL;
    mvl_error err = {0};
    mvl_status st = mvl_tokenizer_load(tmpdir, &tok, &err);
    if (st != want || !strstr(err.msg, needle) || !strstr(err.msg, tmpdir))
        fail_msg("want %s containing '%s', got %s: %s", mvl_status_name(want), needle, mvl_status_name(st), err.msg);
    assert_null(tok);
}

static void test_minimal_ok(void **state) {
    (void)state;
    write_tok("BPE", "[\"a b\",[\"ab\",\"c\"]]", "[]", "null", OK_PRETOK, OK_DEC);
    mvl_tokenizer *tok;
    mvl_error err = {0};
    if (mvl_tokenizer_load(tmpdir, &tok, &err) != MVL_OK) fail_msg("%s", err.msg);
    int32_t *ids;
    size_t n;
    assert_int_equal(mvl_tokenizer_encode(tok, "abc cab", 7, &ids, &n, &err), MVL_OK);
    /* "abc" -> abc; " cab": the space byte (\u0120), then c, then ab. */
    int32_t want[] = {4, 5, 2, 3};
    assert_int_equal(n, 4);
    assert_memory_equal(ids, want, sizeof want);
    free(ids);
    size_t ns;
    const int32_t *stop = mvl_tokenizer_stop_ids(tok, &ns);
    assert_int_equal(ns, 1);
    assert_int_equal(stop[0], 4);
    mvl_tokenizer_free(tok);
}

static void test_malformed(void **state) {
    (void)state;
    write_tok("WordPiece", "[]", "[]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "model type 'WordPiece'");
    write_tok("BPE", "[\"a  b\"]", "[]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "not two tokens");
    write_tok("BPE", "[\"a x\"]", "[]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "not in the vocab");
    write_tok("BPE", "[\"b c\"]", "[]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "merged token is not in the vocab");
    write_tok("BPE", "[[\"a\"]]", "[]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "merge 0 is neither");
    write_tok("BPE", "[]", "[]", "null", "{\"type\":\"Whitespace\"}", OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "pre-tokenizer type 'Whitespace'");
    write_tok("BPE", "[]", "[]", "null", "null", OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "no ByteLevel pre-tokenizer");
    write_tok("BPE", "[]", "[]", "null",
              "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(\\\\p{L\"},"
              "\"behavior\":\"Isolated\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
              OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "regex does not compile");
    write_tok("BPE", "[]", "[]", "null",
              "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":\"a\"},"
              "\"behavior\":\"Removed\",\"invert\":false},{\"type\":\"ByteLevel\",\"use_regex\":false}]}",
              OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "Split behavior 'Removed'");
    write_tok("BPE", "[]", "[]", "{\"type\":\"NFKC\"}", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "normalizer type 'NFKC'");
    write_tok("BPE", "[]", "[]", "null", OK_PRETOK, "{\"type\":\"WordPiece\"}");
    expect_fail(MVL_ERR_UNSUPPORTED, "decoder type 'WordPiece'");
    write_tok("BPE", "[]", "[{\"id\":9,\"content\":\"<x>\",\"lstrip\":true,\"special\":true}]", "null", OK_PRETOK,
              OK_DEC);
    expect_fail(MVL_ERR_UNSUPPORTED, "lstrip");
    write_tok("BPE", "[]", "[{\"id\":9}]", "null", OK_PRETOK, OK_DEC);
    expect_fail(MVL_ERR_FORMAT, "added_tokens[0]");

    write_file("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0}");
    expect_fail(MVL_ERR_FORMAT, "truncated");
    write_file("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,},\"merges\":[]}}");
    expect_fail(MVL_ERR_FORMAT, "line 1, column 39: expected a member name");
    write_file("tokenizer.json", "{\"a\":\"\\ud800\"}");
    expect_fail(MVL_ERR_FORMAT, "lone high surrogate");
    write_file("tokenizer.json", "{\"a\":\"\xff\"}");
    expect_fail(MVL_ERR_FORMAT, "invalid UTF-8");
    write_file("tokenizer.json", "[1,2]");
    expect_fail(MVL_ERR_FORMAT, "top level is not an object");
    write_file("tokenizer.json", "{\"version\":\"1.0\"}");
    expect_fail(MVL_ERR_FORMAT, "no \"model\" object");
    write_file("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":-1},\"merges\":[]}}");
    expect_fail(MVL_ERR_FORMAT, "no valid id");
    write_file("tokenizer.json", "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":0},\"merges\":[]}}");
    expect_fail(MVL_ERR_FORMAT, "used twice");
    char deep[600];
    memset(deep, '[', 300);
    deep[300] = '\0';
    write_file("tokenizer.json", deep);
    expect_fail(MVL_ERR_FORMAT, "nested too deeply");

    /* tokenizer_config.json problems */
    write_tok("BPE", "[]", "[]", "null", OK_PRETOK, OK_DEC);
    write_file("tokenizer_config.json", "{\"eos_token\":\"<nope>\"}");
    expect_fail(MVL_ERR_FORMAT, "eos_token '<nope>'");
    write_file("tokenizer_config.json", "{\"added_tokens_decoder\":{\"2\":{\"content\":\"zz\"}}}");
    expect_fail(MVL_ERR_FORMAT, "does not match tokenizer.json");
    write_file("tokenizer_config.json", "{");
    expect_fail(MVL_ERR_FORMAT, "tokenizer_config.json");
    write_file("tokenizer_config.json", "{}");
    write_file("generation_config.json", "{\"eos_token_id\":[4,77]}");
    expect_fail(MVL_ERR_FORMAT, "eos token id 77");
    write_file("generation_config.json", "{\"eos_token_id\":[4,3]}");
    mvl_tokenizer *tok;
    mvl_error err = {0};
    assert_int_equal(mvl_tokenizer_load(tmpdir, &tok, &err), MVL_OK);
    size_t ns;
    const int32_t *stop = mvl_tokenizer_stop_ids(tok, &ns);
    assert_int_equal(ns, 2);
    assert_int_equal(stop[1], 3);
    mvl_tokenizer_free(tok);

    char missing[300];
    snprintf(missing, sizeof missing, "%s/nothing-here", tmpdir);
    assert_int_equal(mvl_tokenizer_load(missing, &tok, &err), MVL_ERR_IO);
    assert_non_null(strstr(err.msg, "tokenizer.json"));
}

/* ---- encoding and decoding edge cases ------------------------------------------------ */

static void test_invalid_utf8(void **state) {
    (void)state;
    mvl_tokenizer *tok = load_named("bpe8k-gpt2");
    /* Invalid bytes are kept: they never match the regex, BPE encodes them
     * byte-wise and decoding returns the same bytes (then U+FFFD on output). */
    const char in[] = "ok \xff\xfe caf\xc3 \xe6\x9d\xb1\xe4 end \xed\xa0\x80!";
    size_t len = sizeof in - 1;
    int32_t *ids;
    size_t n;
    mvl_error err = {0};
    assert_int_equal(mvl_tokenizer_encode(tok, in, len, &ids, &n, &err), MVL_OK);
    size_t raw = 0;
    for (size_t i = 0; i < n; i++) {
        size_t l;
        const char *b = mvl_tokenizer_token_bytes(tok, ids[i], &l);
        assert_non_null(b);
        assert_true(raw + l <= len);
        assert_memory_equal(in + raw, b, l);
        raw += l;
    }
    assert_int_equal(raw, len);
    char *dec;
    size_t dl;
    assert_int_equal(mvl_tokenizer_decode(tok, ids, n, 0, &dec, &dl, &err), MVL_OK);
    const char want[] = "ok \xef\xbf\xbd\xef\xbf\xbd caf\xef\xbf\xbd \xe6\x9d\xb1\xef\xbf\xbd end "
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd!";
    assert_int_equal(dl, sizeof want - 1);
    assert_memory_equal(dec, want, dl);
    free(dec);
    free(ids);
    /* The same ids with a valid string around them still match HF (golden
     * test); NFC tokenizers reject invalid UTF-8. */
    mvl_tokenizer *nfc = load_named("bpe8k-o200k");
    assert_int_equal(mvl_tokenizer_encode(nfc, in, len, &ids, &n, &err), MVL_ERR_ARG);
    assert_null(ids);
    assert_non_null(strstr(err.msg, "valid UTF-8"));
    mvl_tokenizer_free(nfc);

    assert_int_equal(mvl_tokenizer_encode(tok, "", 0, &ids, &n, &err), MVL_OK);
    assert_int_equal(n, 0);
    free(ids);
    int32_t bad = (int32_t)mvl_tokenizer_n_ids(tok);
    assert_int_equal(mvl_tokenizer_decode(tok, &bad, 1, 0, &dec, &dl, &err), MVL_ERR_ARG);
    mvl_tokenizer_free(tok);
}

static void test_streaming(void **state) {
    (void)state;
    mvl_tokenizer *tok = load_named("bpe8k-gpt2");
    mvl_error err = {0};
    /* Split a 4-byte emoji over single-byte tokens: nothing until complete. */
    const unsigned char emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    mvl_detok *d;
    assert_int_equal(mvl_detok_init(tok, 0, &d, &err), MVL_OK);
    const char *t;
    size_t l;
    for (int i = 0; i < 4; i++) {
        char c = (char)emoji[i];
        int32_t id = -1;
        for (int32_t k = 0; k < (int32_t)mvl_tokenizer_n_ids(tok) && id < 0; k++) {
            size_t bl;
            const char *b = mvl_tokenizer_token_bytes(tok, k, &bl);
            if (b && bl == 1 && b[0] == c) id = k;
        }
        assert_true(id >= 0);
        assert_int_equal(mvl_detok_push(d, id, &t, &l, &err), MVL_OK);
        if (i < 3) {
            assert_int_equal(l, 0);
        } else {
            assert_int_equal(l, 4);
            assert_memory_equal(t, emoji, 4);
        }
    }
    /* An incomplete tail becomes U+FFFD on flush. */
    int32_t lead = -1;
    for (int32_t k = 0; lead < 0; k++) {
        size_t bl;
        const char *b = mvl_tokenizer_token_bytes(tok, k, &bl);
        if (b && bl == 1 && (unsigned char)b[0] == 0xE6) lead = k;
    }
    assert_int_equal(mvl_detok_push(d, lead, &t, &l, &err), MVL_OK);
    assert_int_equal(l, 0);
    mvl_detok_flush(d, &t, &l);
    assert_int_equal(l, 3);
    assert_memory_equal(t, "\xef\xbf\xbd", 3);
    /* skip_special drops special tokens. */
    mvl_detok_free(d);
    assert_int_equal(mvl_detok_init(tok, 1, &d, &err), MVL_OK);
    int32_t eos = mvl_tokenizer_token_id(tok, "<end_of_sentence>");
    assert_int_equal(mvl_detok_push(d, eos, &t, &l, &err), MVL_OK);
    assert_int_equal(l, 0);
    assert_int_equal(mvl_detok_push(d, -5, &t, &l, &err), MVL_ERR_ARG);
    mvl_detok_free(d);
    mvl_tokenizer_free(tok);
}

/* ---- chat format ------------------------------------------------------------------------ */

static void test_chat_render(void **state) {
    (void)state;
    const char *sys = "You are a helpful assistant created by MiniMax based on MiniMax-VL-01 model.";
    mvl_chat_item sys_items[] = {{0, sys, strlen(sys)}};
    mvl_chat_item user_items[] = {{1, NULL, 0}, {0, "Describe this image.", 20}};
    mvl_chat_message msgs[] = {{MVL_ROLE_SYSTEM, sys_items, 1}, {MVL_ROLE_USER, user_items, 2}};
    char *out;
    size_t len;
    mvl_error err = {0};
    assert_int_equal(mvl_chat_render(msgs, 2, 1, &out, &len, &err), MVL_OK);
    /* vision.md §5.1 worked example, byte for byte. */
    const char *want = "<beginning_of_sentence>system ai_setting=assistant\n"
                       "You are a helpful assistant created by MiniMax based on MiniMax-VL-01 model.<end_of_sentence>\n"
                       "<beginning_of_sentence>user name=user\n"
                       "<image>Describe this image.<end_of_sentence>\n"
                       "<beginning_of_sentence>ai name=assistant\n";
    assert_string_equal(out, want);
    assert_int_equal(len, strlen(want));
    free(out);
    mvl_chat_item a_items[] = {{0, "A cat.", 6}};
    mvl_chat_message turn[] = {{MVL_ROLE_ASSISTANT, a_items, 1}};
    assert_int_equal(mvl_chat_render(turn, 1, 0, &out, &len, &err), MVL_OK);
    assert_string_equal(out, "<beginning_of_sentence>ai name=assistant\nA cat.<end_of_sentence>\n");
    free(out);
    mvl_chat_message bad[] = {{(mvl_chat_role)7, a_items, 1}};
    assert_int_equal(mvl_chat_render(bad, 1, 0, &out, &len, &err), MVL_ERR_ARG);
}

static size_t count_id(const int32_t *ids, size_t n, int32_t id) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ids[i] == id;
    return c;
}

static void test_chat_encode(void **state) {
    (void)state;
    mvl_tokenizer *tok = load_named("bpe8k-o200k");
    mvl_error err = {0};
    int32_t img = mvl_tokenizer_token_id(tok, "<image>");
    int32_t bos = mvl_tokenizer_token_id(tok, "<beginning_of_sentence>");
    int32_t eos = mvl_tokenizer_token_id(tok, "<end_of_sentence>");
    /* Ids come from the files: the test tokenizer's 64-slot block starts at 8000. */
    assert_int_equal(img, 8025);
    assert_int_equal(eos, 8020);
    size_t ns;
    const int32_t *stop = mvl_tokenizer_stop_ids(tok, &ns);
    assert_int_equal(ns, 1);
    assert_int_equal(stop[0], eos);

    mvl_chat_item items[] = {{0, "Compare ", 8}, {1, NULL, 0}, {0, " and ", 5}, {1, NULL, 0}, {0, ".", 1}};
    mvl_chat_message msgs[] = {{MVL_ROLE_USER, items, 5}};
    int32_t counts[] = {3, 5};
    int32_t *ids;
    size_t n;
    assert_int_equal(mvl_chat_encode(tok, msgs, 1, 1, counts, 2, &ids, &n, &err), MVL_OK);
    assert_int_equal(count_id(ids, n, img), 8);
    assert_int_equal(ids[0], bos);
    /* Placeholder order: 3 copies first, then 5. */
    size_t first = 0;
    while (ids[first] != img) first++;
    for (size_t i = 0; i < 3; i++) assert_int_equal(ids[first + i], img);
    assert_int_not_equal(ids[first + 3], img);
    /* Same ids as encoding the expanded text directly. */
    char *text;
    size_t tl;
    assert_int_equal(mvl_chat_render(msgs, 1, 1, &text, &tl, &err), MVL_OK);
    const char *at1 = strstr(text, "<image>");
    const char *at2 = strstr(at1 + 7, "<image>");
    char expanded[1024];
    snprintf(expanded, sizeof expanded, "%.*s<image><image><image>%.*s<image><image><image><image><image>%s",
             (int)(at1 - text), text, (int)(at2 - at1 - 7), at1 + 7, at2 + 7);
    int32_t *ids2;
    size_t n2;
    assert_int_equal(mvl_tokenizer_encode(tok, expanded, strlen(expanded), &ids2, &n2, &err), MVL_OK);
    assert_int_equal(n, n2);
    assert_memory_equal(ids, ids2, n * sizeof *ids);
    free(ids2);
    free(text);
    free(ids);

    /* More images than placeholders in a chat is an error... */
    int32_t three[] = {2, 2, 2};
    assert_int_equal(mvl_chat_encode(tok, msgs, 1, 1, three, 3, &ids, &n, &err), MVL_ERR_ARG);
    /* ...while raw mode puts the missing placeholders before the text. */
    assert_int_equal(mvl_chat_encode_raw(tok, "Hi <image> there", 16, three, 3, &ids, &n, &err), MVL_OK);
    assert_int_equal(count_id(ids, n, img), 6);
    for (size_t i = 0; i < 4; i++) assert_int_equal(ids[i], img);
    assert_int_not_equal(ids[4], img);
    free(ids);
    /* Surplus placeholders stay single ids (vision.md §4.4). */
    int32_t one[] = {4};
    assert_int_equal(mvl_chat_encode_raw(tok, "<image>a<image>", 15, one, 1, &ids, &n, &err), MVL_OK);
    assert_int_equal(count_id(ids, n, img), 5);
    assert_int_equal(ids[n - 1], img);
    assert_int_not_equal(ids[n - 2], img);
    free(ids);
    int32_t negative[] = {-1};
    assert_int_equal(mvl_chat_encode_raw(tok, "x", 1, negative, 1, &ids, &n, &err), MVL_ERR_ARG);
    mvl_tokenizer_free(tok);
}

/* ---- synthetic tokenizer with the released model's id layout -------------------------- */

static void test_synthetic_200k(void **state) {
    (void)state;
    char dir[256];
    snprintf(dir, sizeof dir, "/tmp/mvl_tok200k_XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(tok_write_synthetic(dir, 200000), 0);
    mvl_tokenizer *tok;
    mvl_error err = {0};
    mvl_status st = mvl_tokenizer_load(dir, &tok, &err);
    char path[300];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    unlink(path);
    rmdir(dir);
    if (st != MVL_OK) fail_msg("%s", err.msg);
    assert_int_equal(mvl_tokenizer_n_ids(tok), 200064);
    assert_int_equal(mvl_tokenizer_token_id(tok, "<end_of_sentence>"), 200020);
    assert_int_equal(mvl_tokenizer_token_id(tok, "<image>"), 200025);
    size_t ns;
    const int32_t *stop = mvl_tokenizer_stop_ids(tok, &ns);
    assert_int_equal(ns, 1);
    assert_int_equal(stop[0], 200020);
    const char *text = "hello world, <image> 东京 <end_of_sentence>";
    int32_t *ids;
    size_t n;
    assert_int_equal(mvl_tokenizer_encode(tok, text, strlen(text), &ids, &n, &err), MVL_OK);
    assert_int_equal(count_id(ids, n, 200025), 1);
    assert_int_equal(ids[n - 1], 200020);
    char *dec;
    assert_int_equal(mvl_tokenizer_decode(tok, ids, n, 0, &dec, NULL, &err), MVL_OK);
    assert_string_equal(dec, text);
    free(dec);
    free(ids);
    mvl_tokenizer_free(tok);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_minimal_ok, make_tmpdir, remove_tmpdir),
        cmocka_unit_test_setup_teardown(test_malformed, make_tmpdir, remove_tmpdir),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_streaming),
        cmocka_unit_test(test_chat_render),
        cmocka_unit_test(test_chat_encode),
        cmocka_unit_test(test_synthetic_200k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
