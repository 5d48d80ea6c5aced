#include "tok_testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

uint64_t tok_lcg_next(tok_lcg *r) {
    r->s = r->s * 6364136223846793005ull + 1442695040888963407ull;
    return r->s >> 33;
}

uint64_t tok_fnv(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* Same list, same order, as BIG_FRAGMENTS in scripts/make_tokenizer_goldens.py. */
static const char *const big_fragments[] = {
    "The quick brown fox jumps over the lazy dog. ",
    "東京は日本の首都です。",
    "Привет, мир! ",
    "مرحبا بالعالم ",
    "नमस्ते दुनिया ",
    "😀👍🏽 ",
    "x = 12345678 + 0.5;\n",
    "\t\t  \n\n",
    "it's they'll WE'VE ",
    "<image>",
    "e\xcc\x81 ",
    "    return NULL;\n}\n",
};

static char *concat_random(uint64_t seed, const char *const *parts, size_t n_parts, size_t min_len, size_t *len) {
    size_t cap = min_len + 256, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    tok_lcg r = {seed};
    while (n < min_len) {
        const char *f = parts[tok_lcg_next(&r) % n_parts];
        size_t k = strlen(f);
        memcpy(buf + n, f, k);
        n += k;
    }
    *len = n;
    return buf;
}

char *tok_big_input(int k, size_t *len) {
    static const char *const ws[] = {" ", "\n", "\t", "  ", "\r\n", "a"};
    char *buf;
    switch (k) {
    case 0:
        return concat_random(1, big_fragments, sizeof big_fragments / sizeof *big_fragments, 1000000, len);
    case 1:
        buf = malloc(1000001);
        if (!buf) return NULL;
        memset(buf, ' ', 1000000);
        buf[1000000] = 'x';
        *len = 1000001;
        return buf;
    case 2: {
        buf = malloc(1000000);
        if (!buf) return NULL;
        tok_lcg r = {2};
        for (size_t i = 0; i < 1000000; i++) buf[i] = (char)('0' + tok_lcg_next(&r) % 10);
        *len = 1000000;
        return buf;
    }
    case 3: return concat_random(3, ws, 6, 1000000, len);
    }
    return NULL;
}

int tok_strings_load(const char *path, tok_strings *out) {
    memset(out, 0, sizeof *out);
    size_t len;
    mvl_error err;
    if (mvl_read_file(path, 64u << 20, &out->data, &len, &err) != MVL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return -1;
    }
    char *p = out->data, *end = p + len;
    if (sscanf(p, "MVLSTR %zu", &out->n) != 1) return -1;
    p = memchr(p, '\n', (size_t)(end - p));
    out->s = calloc(out->n ? out->n : 1, sizeof *out->s);
    out->len = calloc(out->n ? out->n : 1, sizeof *out->len);
    if (!p || !out->s || !out->len) return -1;
    p++;
    for (size_t i = 0; i < out->n; i++) {
        char *nl;
        unsigned long long n = strtoull(p, &nl, 10);
        if (nl >= end || *nl != '\n' || n > (size_t)(end - nl - 1)) return -1;
        out->s[i] = nl + 1;
        out->len[i] = (size_t)n;
        p = nl + 1 + n + 1;
    }
    return 0;
}

void tok_strings_free(tok_strings *t) {
    free(t->data);
    free(t->s);
    free(t->len);
    memset(t, 0, sizeof *t);
}

char *tok_source_path(const char *rel) {
    const char *root = getenv("MVL_SOURCE_DIR");
#ifdef MVL_TEST_SOURCE_DIR
    if (!root) root = MVL_TEST_SOURCE_DIR;
#endif
    if (!root) root = ".";
    return mvl_path_join(root, rel);
}

/* ---- synthetic tokenizer ------------------------------------------------------------ */

/* Writes raw bytes as a byte-level token string (GPT-2 mapping), JSON-escaped. */
static void put_bytelevel(FILE *f, const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int b = s[i];
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        unsigned cp;
        if (printable) {
            cp = (unsigned)b;
        } else { /* rank of b among the non-printable bytes, after 256 */
            unsigned k = 0;
            for (int c = 0; c < b; c++)
                if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || c >= 0xAE)) k++;
            cp = 256 + k;
        }
        if (cp == '"' || cp == '\\') fputc('\\', f);
        if (cp < 0x80) {
            fputc((int)cp, f);
        } else {
            fputc((int)(0xC0 | cp >> 6), f);
            fputc((int)(0x80 | (cp & 0x3F)), f);
        }
    }
}

static const char *special_name(int k, char *buf, size_t n) {
    switch (k) {
    case 0: return "<end_of_document>";
    case 1: return "<begin_of_document>";
    case 19: return "<beginning_of_sentence>";
    case 20: return "<end_of_sentence>";
    case 21: return "<function_call>";
    case 25: return "<image>";
    default: snprintf(buf, n, "<reserved_%d>", k); return buf;
    }
}

int tok_write_synthetic(const char *dir, size_t n_vocab) {
    enum { MAXLEN = 16 };
    mvl_error err;
    size_t n_merges = n_vocab - 256;
    unsigned char *tokens = calloc(n_vocab, MAXLEN);   /* [n_vocab][MAXLEN] raw bytes */
    uint8_t *lens = calloc(n_vocab, 1);                 /* [n_vocab] */
    uint32_t *left = calloc(n_merges, sizeof *left);    /* [n_merges] */
    uint32_t *right = calloc(n_merges, sizeof *right);  /* [n_merges] */
    mvl_strmap seen;
    if (!tokens || !lens || !left || !right || mvl_strmap_init(&seen, n_vocab, &err) != MVL_OK) return -1;
    for (int b = 0; b < 256; b++) {
        tokens[(size_t)b * MAXLEN] = (unsigned char)b;
        lens[b] = 1;
        mvl_strmap_put(&seen, (const char *)tokens + (size_t)b * MAXLEN, 1, b, NULL, &err);
    }
    /* Letters and spaces first, so short words of ASCII text merge. */
    tok_lcg r = {7};
    size_t n = 256;
    while (n < n_vocab) {
        uint64_t x = tok_lcg_next(&r);
        size_t a = (x & 1) && n > 4096 ? n - 1 - tok_lcg_next(&r) % 4000 : tok_lcg_next(&r) % n;
        size_t b = (x & 2) ? 'a' + tok_lcg_next(&r) % 26 : tok_lcg_next(&r) % (n < 3000 ? n : 3000);
        if (lens[a] + lens[b] > MAXLEN) continue;
        unsigned char *t = tokens + n * MAXLEN;
        memcpy(t, tokens + a * MAXLEN, lens[a]);
        memcpy(t + lens[a], tokens + b * MAXLEN, lens[b]);
        bool inserted;
        mvl_strmap_put(&seen, (const char *)t, lens[a] + lens[b], (int64_t)n, &inserted, &err);
        if (!inserted) continue;
        lens[n] = (uint8_t)(lens[a] + lens[b]);
        left[n - 256] = (uint32_t)a;
        right[n - 256] = (uint32_t)b;
        n++;
    }
    mvl_strmap_free(&seen);
    char *path = mvl_path_join(dir, "tokenizer.json");
    FILE *f = path ? fopen(path, "w") : NULL;
    free(path);
    if (!f) return -1;
    char name[32];
    fputs("{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,\"added_tokens\":[", f);
    for (int k = 0; k < 64; k++)
        fprintf(f, "%s{\"id\":%zu,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
                   "\"normalized\":false,\"special\":true}",
                k ? "," : "", n_vocab + (size_t)k, special_name(k, name, sizeof name));
    fputs("],\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\",\"add_prefix_space\":false,"
          "\"trim_offsets\":true,\"use_regex\":true},\"post_processor\":{\"type\":\"ByteLevel\","
          "\"add_prefix_space\":true,\"trim_offsets\":false,\"use_regex\":true},\"decoder\":{\"type\":"
          "\"ByteLevel\",\"add_prefix_space\":true,\"trim_offsets\":true,\"use_regex\":true},\"model\":{"
          "\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,\"continuing_subword_prefix\":null,"
          "\"end_of_word_suffix\":null,\"fuse_unk\":false,\"byte_fallback\":false,\"ignore_merges\":false,"
          "\"vocab\":{",
          f);
    for (size_t i = 0; i < n_vocab; i++) {
        fputs(i ? ",\"" : "\"", f);
        put_bytelevel(f, tokens + i * MAXLEN, lens[i]);
        fprintf(f, "\":%zu", i);
    }
    fputs("},\"merges\":[", f);
    for (size_t m = 0; m < n_merges; m++) {
        fputs(m ? ",[\"" : "[\"", f);
        put_bytelevel(f, tokens + (size_t)left[m] * MAXLEN, lens[left[m]]);
        fputs("\",\"", f);
        put_bytelevel(f, tokens + (size_t)right[m] * MAXLEN, lens[right[m]]);
        fputs("\"]", f);
    }
    fputs("]}}\n", f);
    int bad = fclose(f) != 0;
    free(tokens);
    free(lens);
    free(left);
    free(right);
    path = mvl_path_join(dir, "tokenizer_config.json");
    f = path ? fopen(path, "w") : NULL;
    free(path);
    if (!f) return -1;
    fprintf(f, "{\"add_bos_token\":false,\"bos_token\":\"<beginning_of_sentence>\",\"eos_token\":\"<end_of_sentence>\","
               "\"unk_token\":\"<end_of_document>\",\"added_tokens_decoder\":{\"%zu\":{\"content\":\"<image>\","
               "\"special\":true},\"%zu\":{\"content\":\"<end_of_sentence>\",\"special\":true}}}\n",
            n_vocab + 25, n_vocab + 20);
    bad |= fclose(f) != 0;
    return bad ? -1 : 0;
}
