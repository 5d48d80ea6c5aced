/* Loader tests: well-formed files load lazily and malformed ones are
 * rejected with their specific message (run under ASan/UBSan too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "model/safetensors.h"

static char tmpdir[256];

/* Writes u64 header length + header + data_len zero bytes. */
static void write_st(const char *name, const char *header, size_t data_len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = strlen(header);
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(n >> (8 * i));
    fwrite(len, 1, 8, f);
    fwrite(header, 1, n, f);
    for (size_t i = 0; i < data_len; i++) fputc(0, f);
    fclose(f);
}

static void write_bytes(const char *name, const char *data, size_t len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void write_text(const char *name, const char *text) { write_bytes(name, text, strlen(text)); }

static void clear_dir(void) {
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -f %s/*", tmpdir);
    assert_int_equal(system(cmd), 0);
}

/* Opens the file (or the directory when name is NULL) and expects failure
 * with status st and a message containing both the file name and want. */
static void expect_fail(const char *name, mvl_status st, const char *want) {
    char path[512];
    mvl_st_set *s = (mvl_st_set *)1;
    mvl_error err = {0};
    mvl_status got;
    if (name) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, name);
        got = mvl_st_open_file(path, &s, &err);
    } else {
        got = mvl_st_open_dir(tmpdir, &s, &err);
    }
    if (got != st || !strstr(err.msg, want) || !strstr(err.msg, tmpdir))
        fail_msg("expected status %d with '%s', got %d: %s", st, want, got, err.msg);
    assert_null(s);
}

static void test_good_single_file(void **state) {
    (void)state;
    clear_dir();
    write_st("model.safetensors",
             "{\"__metadata__\":{\"format\":\"pt\"},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[8,32]},"
             "\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]},"
             "\"e\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[8,8]},"
             "\"q\":{\"dtype\":\"F8_E4M3\",\"shape\":[2,2],\"data_offsets\":[32,36]}}",
             36);
    mvl_st_set *s = NULL;
    mvl_error err = {0};
    assert_int_equal(mvl_st_open_dir(tmpdir, &s, &err), MVL_OK);
    assert_int_equal(s->ntensors, 4);
    const mvl_st_tensor *b = mvl_st_find(s, "b");
    assert_non_null(b);
    assert_int_equal(b->dtype, MVL_DTYPE_F32);
    assert_int_equal(b->ndim, 2);
    assert_int_equal(b->shape[1], 3);
    mvl_tensor_view v;
    mvl_st_view(s, b, &v);
    assert_int_equal(v.nbytes, 24);
    assert_ptr_equal(v.data, s->files[0].map + s->files[0].data_start + 8);
    assert_null(mvl_st_find(s, "missing"));
    mvl_st_close(s);
}

static void test_good_sharded(void **state) {
    (void)state;
    clear_dir();
    write_st("m-1.safetensors", "{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    write_st("m-2.safetensors", "{\"y\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    write_text("model.safetensors.index.json",
               "{\"metadata\":{\"total_size\":8},\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-2.safetensors\"}}");
    mvl_st_set *s = NULL;
    mvl_error err = {0};
    assert_int_equal(mvl_st_open_dir(tmpdir, &s, &err), MVL_OK);
    assert_int_equal(s->nfiles, 2);
    assert_int_equal(mvl_st_find(s, "y")->file, 1);
    mvl_st_close(s);
}

/* The malformed cases: each names its own problem. */
static void test_malformed_files(void **state) {
    (void)state;
    clear_dir();
    static const struct {
        const char *header;
        size_t data;
        mvl_status st;
        const char *want;
    } cases[] = {
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8, MVL_ERR_FORMAT, "not valid JSON"},
        {"[1,2]", 0, MVL_ERR_FORMAT, "header is not a JSON object"},
        {"{\"t\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, MVL_ERR_UNSUPPORTED,
         "dtype F64 is not supported"},
        {"{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, MVL_ERR_FORMAT, "tensor 't': missing or non-string \"dtype\""},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, MVL_ERR_FORMAT,
         "shape[0] is not a non-negative integer"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, MVL_ERR_FORMAT,
         "\"data_offsets\" must be [begin, end]"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, MVL_ERR_FORMAT,
         "end 0 is before begin 4"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, MVL_ERR_FORMAT,
         "run past the data region (8 bytes)"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, MVL_ERR_FORMAT,
         "holds 8 bytes but shape x F32 needs 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, MVL_ERR_FORMAT, "tensors 'a' and 'b' overlap"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, MVL_ERR_FORMAT, "duplicate object key"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, MVL_ERR_FORMAT,
         "shape overflows 64 bits"},
        {"{\"__metadata__\":{\"format\":1}}", 0, MVL_ERR_FORMAT, "__metadata__ value for 'format' is not a string"},
        {"{\"t\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, MVL_ERR_UNSUPPORTED,
         "9 dimensions"},
        {"{\"t\":\"F32\"}", 0, MVL_ERR_FORMAT, "entry is not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_st("bad.safetensors", cases[i].header, cases[i].data);
        expect_fail("bad.safetensors", cases[i].st, cases[i].want);
    }
}

static void test_bad_framing(void **state) {
    (void)state;
    clear_dir();
    write_text("short.safetensors", "abc");
    expect_fail("short.safetensors", MVL_ERR_FORMAT, "too short for a safetensors header (3 bytes)");
    write_text("empty.safetensors", "");
    expect_fail("empty.safetensors", MVL_ERR_FORMAT, "too short");
    /* length field claims more than the file holds */
    write_bytes("long.safetensors", "\x40\x00\x00\x00\x00\x00\x00\x00{}", 10);
    expect_fail("long.safetensors", MVL_ERR_FORMAT, "header length 64 runs past the end of the file");
    /* length field over the 100 MB bound: rejected before any allocation */
    write_bytes("huge.safetensors", "\x00\x00\x00\x00\x01\x00\x00\x00{}", 10);
    expect_fail("huge.safetensors", MVL_ERR_FORMAT, "exceeds the 104857600-byte limit");
    expect_fail("absent.safetensors", MVL_ERR_IO, "cannot open");
    /* not UTF-8 inside the JSON header */
    write_st("utf.safetensors", "{\"\xff\":{}}", 0);
    expect_fail("utf.safetensors", MVL_ERR_FORMAT, "not valid JSON");
}

static void test_bad_index(void **state) {
    (void)state;
    clear_dir();
    expect_fail(NULL, MVL_ERR_IO, "no model.safetensors.index.json or model.safetensors");
    write_st("m-1.safetensors", "{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);
    write_st("m-2.safetensors", "{\"x\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4);

    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x\":\"m-9.safetensors\"}}");
    expect_fail(NULL, MVL_ERR_IO, "tensor 'x' is in shard");
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x\":\"m-1.safetensors\",\"y\":\"m-2.safetensors\"}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "tensor 'x' is also defined in");
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x\":\"m-1.safetensors\",\"z\":\"m-1.safetensors\"}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "tensor 'z' is listed for shard m-1.safetensors but is not in it");
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x\":\"../m-1.safetensors\"}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "which is not a file in");
    write_text("model.safetensors.index.json", "{\"metadata\":{}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "missing \"weight_map\" object");
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x\":1}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "weight_map entry 'x' is not a string");
    write_text("model.safetensors.index.json", "{\"weight_map\":");
    expect_fail(NULL, MVL_ERR_FORMAT, "not valid JSON");
    write_st("m-3.safetensors",
             "{\"x3\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
             "\"extra\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[4,8]}}", 8);
    write_text("model.safetensors.index.json", "{\"weight_map\":{\"x3\":\"m-3.safetensors\"}}");
    expect_fail(NULL, MVL_ERR_FORMAT, "tensor 'extra' is not listed in");
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/mvl-st-test-XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_single_file), cmocka_unit_test(test_good_sharded),
        cmocka_unit_test(test_malformed_files), cmocka_unit_test(test_bad_framing),
        cmocka_unit_test(test_bad_index),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    clear_dir();
    rmdir(tmpdir);
    return rc;
}
