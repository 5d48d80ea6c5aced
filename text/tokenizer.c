/* Byte-level BPE tokenizer from a Hugging Face tokenizer.json (text/).
 *
 * Pipeline, as HF `tokenizers` runs it for byte-level BPE models:
 *   1. split out added tokens that match the raw text (normalized: false),
 *      leftmost-longest;
 *   2. normalize the rest (none or NFC), then split out the added tokens that
 *      match normalized text (normalized: true);
 *   3. pre-tokenize each remaining segment with the regex of every Split /
 *      ByteLevel step (Isolated behaviour: matches and the gaps between them
 *      are pieces);
 *   4. BPE each piece: lowest merge rank first, leftmost on ties.
 * The byte-to-unicode mapping of ByteLevel is inverted once at load: the
 * vocabulary is keyed by raw bytes, so encoding never builds mapped strings. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include "common/mvl_common.h"
#include "text/json.h"
#include "text/tokenizer_internal.h"

#define MAX_TOKENIZER_JSON (1u << 30)
#define MAX_CONFIG_JSON (64u << 20)
#define MAX_PRETOK_STEPS 8
#define MAX_STOP_IDS 16
/* GPT-2's pattern, which ByteLevel(use_regex: true) applies (HF tokenizers). */
#define GPT2_PATTERN "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

enum { TOK_PRESENT = 1, TOK_BYTELEVEL = 2, TOK_ADDED = 4, TOK_SPECIAL = 8 };

typedef struct added_set {
    struct added_tok {
        const char *s;   /* content bytes (in the token arena) */
        uint32_t len;
        int32_t id;
    } *tok;              /* [n] sorted by first byte, then longest first */
    size_t n;
    uint32_t start[256], count[256]; /* per first byte: range in tok */
} added_set;

typedef struct merge_table {
    uint64_t *keys;      /* [cap] (left id << 32 | right id); UINT64_MAX = empty */
    uint32_t *rank;      /* [cap] */
    int32_t *merged;     /* [cap] id of the merged token */
    size_t cap;          /* power of two */
} merge_table;

/* Vocabulary index: raw bytes -> id. Not mvl_strmap: with its three
 * parallel arrays and byte-wise FNV, lookups were 45% of a 210 ms load of a
 * 200k vocabulary (perf); one 16-byte slot per probe with the hash tag inline
 * halves the load. */
typedef struct vocab_slot {
    uint32_t tag;        /* high hash bits | 1; 0 = empty */
    int32_t id;
    uint32_t off, len;   /* key bytes in the token arena */
} vocab_slot;

typedef struct vocab_index {
    vocab_slot *slots;   /* [mask + 1] */
    size_t mask;
} vocab_index;

/* Piece cache: direct-mapped, short pieces with few ids only. */
#define CACHE_SLOTS 16384
#define CACHE_KEY 22
#define CACHE_IDS 8
typedef struct cache_slot {
    uint64_t h;          /* 0 = empty */
    uint8_t klen, nids;
    char key[CACHE_KEY];
    int32_t ids[CACHE_IDS];
} cache_slot;

struct mvl_tokenizer {
    char *dir;
    size_t n_ids;            /* largest id + 1 */
    uint8_t *flags;          /* [n_ids] TOK_* */
    uint64_t *tok_off;       /* [n_ids] offset of each token's bytes in arena */
    uint32_t *tok_len;       /* [n_ids] */
    char *arena;             /* decoded bytes of every token */
    size_t arena_len;
    vocab_index vocab;       /* byte-level vocab: raw bytes -> id */
    int32_t byte_id[256];    /* id of each single byte, -1 if none */
    merge_table merges;
    added_set added_raw;     /* added tokens matched on raw text */
    added_set added_norm;    /* added tokens matched after normalization */
    bool nfc;
    int n_regex;
    pcre2_code *regex[MAX_PRETOK_STEPS];
    bool jit[MAX_PRETOK_STEPS];
    bool add_prefix_space;
    bool ignore_merges, fuse_unk;
    int32_t unk_id;
    int32_t stop_ids[MAX_STOP_IDS];
    size_t n_stop;
    pthread_mutex_t cache_lock;
    cache_slot *cache;       /* [CACHE_SLOTS], allocated by the first encode */
};

/* ---- byte-level alphabet (GPT-2 bytes_to_unicode) ---------------------------- */

static int16_t cp_to_byte[324];    /* code point -> byte, -1 if not in the alphabet */
static pthread_once_t alphabet_once = PTHREAD_ONCE_INIT;

static void init_alphabet(void) {
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        cp_to_byte[printable ? b : 256 + extra++] = (int16_t)b;
    }
}

/* Maps a byte-level token string to raw bytes; false when a character is
 * outside the alphabet. out needs n bytes. */
static bool bytelevel_decode(const char *s, size_t n, char *out, size_t *out_len) {
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        if (c < 0x80) {
            cp = c;
            i++;
        } else if ((c & 0xE0) == 0xC0 && i + 1 < n) {
            cp = (uint32_t)(c & 0x1F) << 6 | ((unsigned char)s[i + 1] & 0x3F);
            i += 2;
        } else {
            return false;
        }
        if (cp >= 324 || cp_to_byte[cp] < 0) return false;
        out[o++] = (char)cp_to_byte[cp];
    }
    *out_len = o;
    return true;
}

/* ---- vocabulary index ------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n, w;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
        h ^= h >> 31;
    }
    w = 0;
    memcpy(&w, s, n);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 32);
}

static bool vocab_find(const mvl_tokenizer *tok, const char *s, size_t n, uint64_t h, size_t *slot) {
    const vocab_index *v = &tok->vocab;
    uint32_t tag = (uint32_t)(h >> 32) | 1;
    size_t i = (size_t)h & v->mask;
    for (; v->slots[i].tag; i = (i + 1) & v->mask) {
        const vocab_slot *e = &v->slots[i];
        if (e->tag == tag && e->len == n && !memcmp(tok->arena + e->off, s, n)) {
            *slot = i;
            return true;
        }
    }
    *slot = i;
    return false;
}

static int32_t vocab_get(const mvl_tokenizer *tok, const char *s, size_t n) {
    size_t i;
    if (!tok->vocab.slots || !vocab_find(tok, s, n, hash_bytes(s, n), &i)) return -1;
    return tok->vocab.slots[i].id;
}

/* ---- merge table ---------------------------------------------------------------- */

static size_t merge_slot(const merge_table *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
    while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & mask;
    return i;
}

static bool merge_get(const merge_table *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    if (!m->cap) return false;
    size_t i = merge_slot(m, (uint64_t)(uint32_t)a << 32 | (uint32_t)b);
    if (m->keys[i] == UINT64_MAX) return false;
    *rank = m->rank[i];
    if (merged) *merged = m->merged[i];
    return true;
}

/* ---- errors and JSON helpers ------------------------------------------------------- */

static const char *type_name(const mvl_json *v) {
    const mvl_json *t = mvl_json_get(v, "type");
    return mvl_json_is(t, MVL_JSON_STRING) ? t->u.str : NULL;
}

static bool json_str_is(const mvl_json *v, const char *s) {
    return mvl_json_is(v, MVL_JSON_STRING) && strcmp(v->u.str, s) == 0 && v->n == strlen(s);
}

/* True when key is absent, null, or false. */
static bool absent_or_false(const mvl_json *obj, const char *key) {
    const mvl_json *v = mvl_json_get(obj, key);
    return !v || v->type == MVL_JSON_NULL || v->type == MVL_JSON_FALSE;
}

/* ---- loading ------------------------------------------------------------------------ */

typedef struct loader {
    mvl_tokenizer *tok;
    const char *path;        /* file being read, for messages */
    mvl_error *err;
} loader;

/* HF runs the pattern with Oniguruma, whose Unicode \s is exactly the
 * White_Space property. PCRE2's UCP \s differs (it lacks U+0085 and has
 * U+001C..U+001F and U+180E), so \s is spelled out as White_Space: [WS]
 * outside classes, the bare items inside one, and \S becomes [^WS] outside
 * classes. \S inside a class is left to PCRE2 (none of the known patterns
 * has one). */
#define WHITE_SPACE "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}" \
                    "\\x{202F}\\x{205F}\\x{3000}"

/* Returns a malloc'd pattern, NULL on allocation failure. */
static char *onig_compat_pattern(const char *p, size_t n, size_t *out_len) {
    char *o = malloc(n * sizeof "[^" WHITE_SPACE "]" + 1), *q = o;
    if (!o) return NULL;
    bool in_class = false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == '\\' && i + 1 < n) {
            char e = p[i + 1];
            i++;
            if (e == 's' && !in_class) q += sprintf(q, "[" WHITE_SPACE "]");
            else if (e == 's') q += sprintf(q, WHITE_SPACE);
            else if (e == 'S' && !in_class) q += sprintf(q, "[^" WHITE_SPACE "]");
            else {
                *q++ = '\\';
                *q++ = e;
            }
            continue;
        }
        if (!in_class && c == '[') {
            in_class = true;
            *q++ = c;
            if (i + 1 < n && p[i + 1] == '^') *q++ = p[++i];
            if (i + 1 < n && p[i + 1] == ']') *q++ = p[++i]; /* a leading ] is literal */
            continue;
        }
        if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') { /* POSIX [:name:] */
            const char *end = strstr(p + i + 2, ":]");
            size_t k = end && (size_t)(end - p) < n ? (size_t)(end - p) + 2 : i + 1;
            memcpy(q, p + i, k - i);
            q += k - i;
            i = k - 1;
            continue;
        }
        if (in_class && c == ']') in_class = false;
        *q++ = c;
    }
    *q = '\0';
    *out_len = (size_t)(q - o);
    return o;
}

static mvl_status compile_regex(loader *ld, const char *pattern, size_t len, bool literal) {
    mvl_tokenizer *tok = ld->tok;
    if (tok->n_regex == MAX_PRETOK_STEPS)
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: more than %d pre-tokenizer steps", ld->path,
                        MAX_PRETOK_STEPS);
    int ec;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (literal ? PCRE2_LITERAL : 0);
    char *compat = NULL;
    if (!literal) {
        if (len == PCRE2_ZERO_TERMINATED) len = strlen(pattern);
        compat = onig_compat_pattern(pattern, len, &len);
        if (!compat) return mvl_fail(ld->err, MVL_ERR_NOMEM, "out of memory");
        pattern = compat;
    }
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, len, opts, &ec, &off, NULL);
    free(compat);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: pre-tokenizer regex does not compile at offset %zu: %s",
                        ld->path, (size_t)off, (const char *)msg);
    }
    tok->jit[tok->n_regex] = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    tok->regex[tok->n_regex++] = re;
    return MVL_OK;
}

/* One pre-tokenizer (recursing into Sequence). ByteLevel must come last: it
 * is the step that maps bytes, and we fold that mapping into the vocabulary. */
static mvl_status load_pretok(loader *ld, const mvl_json *pt, bool *saw_bytelevel, int depth) {
    const char *type = type_name(pt);
    if (!type) return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: pre_tokenizer without a \"type\"", ld->path);
    if (*saw_bytelevel)
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED,
                        "%s: pre-tokenizer %s after ByteLevel (ByteLevel must be the last step)", ld->path,
                        type);
    if (!strcmp(type, "Sequence")) {
        const mvl_json *list = mvl_json_get(pt, "pretokenizers");
        if (!mvl_json_is(list, MVL_JSON_ARRAY))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: pre_tokenizer Sequence without a \"pretokenizers\" list",
                            ld->path);
        if (depth > 4)
            return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: pre_tokenizer Sequence nested too deeply", ld->path);
        for (uint32_t i = 0; i < list->n; i++) {
            mvl_status st = load_pretok(ld, &list->u.kids[i], saw_bytelevel, depth + 1);
            if (st != MVL_OK) return st;
        }
        return MVL_OK;
    }
    if (!strcmp(type, "ByteLevel")) {
        *saw_bytelevel = true;
        const mvl_json *use_regex = mvl_json_get(pt, "use_regex");
        if (use_regex && !mvl_json_is_bool(use_regex))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: ByteLevel \"use_regex\" is not a boolean", ld->path);
        if (!absent_or_false(pt, "add_prefix_space")) {
            /* HF prepends the space to every split present at this step; we
             * support it where that is the whole segment. */
            if (ld->tok->n_regex > 0)
                return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED,
                                "%s: ByteLevel add_prefix_space after a Split pre-tokenizer", ld->path);
            ld->tok->add_prefix_space = true;
        }
        if (!use_regex || use_regex->type == MVL_JSON_TRUE)
            return compile_regex(ld, GPT2_PATTERN, PCRE2_ZERO_TERMINATED, false);
        return MVL_OK;
    }
    if (!strcmp(type, "Split")) {
        const mvl_json *pat = mvl_json_get(pt, "pattern");
        const mvl_json *rx = mvl_json_get(pat, "Regex"), *lit = mvl_json_get(pat, "String");
        const mvl_json *beh = mvl_json_get(pt, "behavior");
        if (!mvl_json_is(rx, MVL_JSON_STRING) && !mvl_json_is(lit, MVL_JSON_STRING))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: Split pre-tokenizer without a Regex or String pattern",
                            ld->path);
        if (!json_str_is(beh, "Isolated"))
            return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: Split behavior '%s' (only Isolated is supported)",
                            ld->path, mvl_json_is(beh, MVL_JSON_STRING) ? beh->u.str : "?");
        if (!absent_or_false(pt, "invert"))
            return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: Split with invert: true", ld->path);
        const mvl_json *p = rx ? rx : lit;
        return compile_regex(ld, p->u.str, p->n, rx == NULL);
    }
    return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: pre-tokenizer type '%s'", ld->path, type);
}

static mvl_status load_normalizer(loader *ld, const mvl_json *nz) {
    if (!nz || nz->type == MVL_JSON_NULL) return MVL_OK;
    const char *type = type_name(nz);
    if (!type) return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: normalizer without a \"type\"", ld->path);
    if (!strcmp(type, "NFC")) {
        ld->tok->nfc = true;
        return MVL_OK;
    }
    if (!strcmp(type, "Sequence")) {
        const mvl_json *list = mvl_json_get(nz, "normalizers");
        if (!mvl_json_is(list, MVL_JSON_ARRAY))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: normalizer Sequence without a \"normalizers\" list",
                            ld->path);
        for (uint32_t i = 0; i < list->n; i++) {
            const char *t = type_name(&list->u.kids[i]);
            if (!t || strcmp(t, "NFC"))
                return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: normalizer type '%s' (only NFC is supported)",
                                ld->path, t ? t : "?");
            ld->tok->nfc = true;
        }
        return MVL_OK;
    }
    return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: normalizer type '%s' (only NFC is supported)", ld->path,
                    type);
}

static int cmp_added(const void *a, const void *b) {
    const struct added_tok *x = a, *y = b;
    unsigned char fx = (unsigned char)x->s[0], fy = (unsigned char)y->s[0];
    if (fx != fy) return fx < fy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

static void added_set_index(added_set *s) {
    if (s->n) qsort(s->tok, s->n, sizeof *s->tok, cmp_added);
    for (size_t i = 0; i < s->n; i++) {
        unsigned char f = (unsigned char)s->tok[i].s[0];
        if (!s->count[f]) s->start[f] = (uint32_t)i;
        s->count[f]++;
    }
}

/* Stores bytes for id (the arena was sized for every token up front). */
static void put_token(mvl_tokenizer *tok, int32_t id, const char *bytes, size_t len, uint8_t flags) {
    memmove(tok->arena + tok->arena_len, bytes, len); /* bytes may already be in place */
    tok->tok_off[id] = tok->arena_len;
    tok->tok_len[id] = (uint32_t)len;
    tok->arena_len += len;
    tok->flags[id] = (uint8_t)(flags | TOK_PRESENT);
}

static mvl_status load_vocab(loader *ld, const mvl_json *vocab, const mvl_json *added) {
    mvl_tokenizer *tok = ld->tok;
    int64_t max_id = -1;
    size_t bytes = 0;
    for (uint32_t i = 0; i < vocab->n; i++) {
        int64_t id;
        if (!mvl_json_int(&vocab->u.kids[i], 0, INT32_MAX - 1, &id))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: vocab entry '%s' has no valid id", ld->path,
                            vocab->u.kids[i].key);
        if (id > max_id) max_id = id;
        bytes += vocab->u.kids[i].key_len;
    }
    for (uint32_t i = 0; added && i < added->n; i++) {
        const mvl_json *a = &added->u.kids[i];
        const mvl_json *content = mvl_json_get(a, "content");
        int64_t id;
        if (!mvl_json_int(mvl_json_get(a, "id"), 0, INT32_MAX - 1, &id) || !mvl_json_is(content, MVL_JSON_STRING) ||
            content->n == 0)
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: added_tokens[%u] needs an \"id\" and a non-empty \"content\"",
                            ld->path, i);
        if (id > max_id) max_id = id;
        bytes += content->n;
    }
    if (max_id < 0) return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: the vocabulary is empty", ld->path);
    tok->n_ids = (size_t)max_id + 1;
    tok->flags = mvl_calloc(tok->n_ids, 1, ld->err);
    tok->tok_off = mvl_calloc(tok->n_ids, sizeof *tok->tok_off, ld->err);
    tok->tok_len = mvl_calloc(tok->n_ids, sizeof *tok->tok_len, ld->err);
    tok->arena = mvl_malloc(bytes + 1, ld->err);
    if (!tok->flags || !tok->tok_off || !tok->tok_len || !tok->arena) return MVL_ERR_NOMEM;
    if (bytes > UINT32_MAX) return mvl_fail(ld->err, MVL_ERR_LIMIT, "%s: tokens over 4 GiB in all", ld->path);
    size_t cap = 16;
    while (cap < (size_t)vocab->n * 2) cap <<= 1;
    tok->vocab.slots = mvl_calloc(cap, sizeof *tok->vocab.slots, ld->err);
    if (!tok->vocab.slots) return MVL_ERR_NOMEM;
    tok->vocab.mask = cap - 1;

    for (uint32_t i = 0; i < vocab->n; i++) {
        const mvl_json *e = &vocab->u.kids[i];
        int32_t id = (int32_t)e->u.num;
        if (tok->flags[id])
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: vocab id %d is used twice ('%s')", ld->path, id, e->key);
        size_t n;
        if (bytelevel_decode(e->key, e->key_len, tok->arena + tok->arena_len, &n)) {
            const char *key = tok->arena + tok->arena_len;
            put_token(tok, id, key, n, TOK_BYTELEVEL);
            uint64_t h = hash_bytes(key, n);
            size_t slot;
            if (vocab_find(tok, key, n, h, &slot))
                return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: vocab token '%s' appears twice", ld->path, e->key);
            tok->vocab.slots[slot] = (vocab_slot){(uint32_t)(h >> 32) | 1, id, (uint32_t)tok->tok_off[id], (uint32_t)n};
        } else {
            /* Outside the byte alphabet: BPE can never produce it; decoding
             * writes its text as is (as HF's ByteLevel decoder does). */
            put_token(tok, id, e->key, e->key_len, 0);
        }
    }
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        tok->byte_id[b] = vocab_get(tok, &c, 1);
    }

    for (uint32_t i = 0; added && i < added->n; i++) {
        const mvl_json *a = &added->u.kids[i];
        const mvl_json *content = mvl_json_get(a, "content");
        int32_t id = (int32_t)mvl_json_get(a, "id")->u.num;
        static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++)
            if (!absent_or_false(a, unsupported[k]))
                return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: added token '%s' uses %s: true", ld->path,
                                content->u.str, unsupported[k]);
        bool special = !absent_or_false(a, "special");
        /* HF's default for "normalized" is !special. */
        const mvl_json *norm = mvl_json_get(a, "normalized");
        bool normalized = norm ? norm->type == MVL_JSON_TRUE : !special;
        if ((tok->flags[id] & TOK_ADDED))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: added token id %d is used twice", ld->path, id);
        uint8_t keep = tok->flags[id] & TOK_BYTELEVEL;
        put_token(tok, id, content->u.str, content->n,
                  (uint8_t)(keep | TOK_ADDED | (special ? TOK_SPECIAL : 0)));
        added_set *set = normalized ? &tok->added_norm : &tok->added_raw;
        struct added_tok *grown = realloc(set->tok, (set->n + 1) * sizeof *grown);
        if (!grown) return mvl_fail(ld->err, MVL_ERR_NOMEM, "out of memory");
        set->tok = grown;
        set->tok[set->n++] = (struct added_tok){tok->arena + tok->tok_off[id], content->n, id};
    }
    added_set_index(&tok->added_raw);
    added_set_index(&tok->added_norm);
    return MVL_OK;
}

/* Looks up a byte-level token string given in the merges list. */
static bool merge_part_id(const mvl_tokenizer *tok, const char *s, size_t n, char *scratch, int32_t *id) {
    size_t len;
    if (!bytelevel_decode(s, n, scratch, &len)) return false;
    *id = vocab_get(tok, scratch, len);
    return *id >= 0;
}

static mvl_status load_merges(loader *ld, const mvl_json *merges) {
    mvl_tokenizer *tok = ld->tok;
    merge_table *m = &tok->merges;
    m->cap = 16;
    while (m->cap < (size_t)merges->n * 2) m->cap <<= 1;
    m->keys = mvl_malloc(m->cap * sizeof *m->keys, ld->err);
    m->rank = mvl_malloc(m->cap * sizeof *m->rank, ld->err);
    m->merged = mvl_malloc(m->cap * sizeof *m->merged, ld->err);
    if (!m->keys || !m->rank || !m->merged) return MVL_ERR_NOMEM;
    memset(m->keys, 0xFF, m->cap * sizeof *m->keys);
    char scratch[1024], both[2048];
    int32_t prev = -1;
    for (uint32_t r = 0; r < merges->n; r++) {
        const mvl_json *e = &merges->u.kids[r];
        const char *a, *b;
        size_t na, nb;
        if (mvl_json_is(e, MVL_JSON_STRING)) {
            const char *sp = memchr(e->u.str, ' ', e->n);
            if (!sp || memchr(sp + 1, ' ', e->n - (size_t)(sp + 1 - e->u.str)))
                return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: merge %u '%s' is not two tokens separated by one space",
                                ld->path, r, e->u.str);
            a = e->u.str;
            na = (size_t)(sp - a);
            b = sp + 1;
            nb = e->n - na - 1;
        } else if (mvl_json_is(e, MVL_JSON_ARRAY) && e->n == 2 && mvl_json_is(&e->u.kids[0], MVL_JSON_STRING) &&
                   mvl_json_is(&e->u.kids[1], MVL_JSON_STRING)) {
            a = e->u.kids[0].u.str;
            na = e->u.kids[0].n;
            b = e->u.kids[1].u.str;
            nb = e->u.kids[1].n;
        } else {
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: merge %u is neither \"a b\" nor [\"a\", \"b\"]", ld->path, r);
        }
        int32_t ia, ib;
        if (na > sizeof scratch || nb > sizeof scratch)
            return mvl_fail(ld->err, MVL_ERR_LIMIT, "%s: merge %u has a token over %zu bytes", ld->path, r,
                            sizeof scratch);
        if (!merge_part_id(tok, a, na, scratch, &ia) || !merge_part_id(tok, b, nb, scratch, &ib))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: merge %u ('%.*s' + '%.*s') references a token not in the vocab",
                            ld->path, r, (int)na, a, (int)nb, b);
        size_t la = tok->tok_len[ia], lb = tok->tok_len[ib];
        memcpy(both, tok->arena + tok->tok_off[ia], la);
        memcpy(both + la, tok->arena + tok->tok_off[ib], lb);
        /* Trained files list merges in the order their results were added
         * to the vocab: try the id after the previous result before hashing. */
        int32_t merged = prev + 1;
        if (prev < 0 || (size_t)merged >= tok->n_ids || (tok->flags[merged] & (TOK_BYTELEVEL | TOK_ADDED)) != TOK_BYTELEVEL ||
            tok->tok_len[merged] != la + lb || memcmp(tok->arena + tok->tok_off[merged], both, la + lb))
            merged = vocab_get(tok, both, la + lb);
        prev = merged;
        if (merged < 0)
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: merge %u ('%.*s' + '%.*s'): the merged token is not in the vocab",
                            ld->path, r, (int)na, a, (int)nb, b);
        /* A repeated pair keeps its last rank, as HF's map insertion does. */
        size_t slot = merge_slot(m, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib);
        m->keys[slot] = (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib;
        m->rank[slot] = r;
        m->merged[slot] = merged;
    }
    return MVL_OK;
}

static mvl_status load_model(loader *ld, const mvl_json *root) {
    const mvl_json *model = mvl_json_get(root, "model");
    if (!mvl_json_is(model, MVL_JSON_OBJECT))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: no \"model\" object", ld->path);
    const char *type = type_name(model);
    if (type && strcmp(type, "BPE"))
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: model type '%s' (only BPE is supported)", ld->path, type);
    const mvl_json *vocab = mvl_json_get(model, "vocab"), *merges = mvl_json_get(model, "merges");
    if (!mvl_json_is(vocab, MVL_JSON_OBJECT) || !mvl_json_is(merges, MVL_JSON_ARRAY))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: BPE model needs a \"vocab\" object and a \"merges\" list", ld->path);
    const mvl_json *dropout = mvl_json_get(model, "dropout");
    if (dropout && dropout->type != MVL_JSON_NULL && !(mvl_json_is(dropout, MVL_JSON_NUMBER) && dropout->u.num == 0))
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: BPE dropout", ld->path);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int k = 0; k < 2; k++) {
        const mvl_json *v = mvl_json_get(model, affixes[k]);
        if (v && v->type != MVL_JSON_NULL && !(mvl_json_is(v, MVL_JSON_STRING) && v->n == 0))
            return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: BPE %s", ld->path, affixes[k]);
    }
    if (!absent_or_false(model, "byte_fallback"))
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: BPE byte_fallback", ld->path);
    ld->tok->fuse_unk = !absent_or_false(model, "fuse_unk");
    ld->tok->ignore_merges = !absent_or_false(model, "ignore_merges");

    const mvl_json *added = mvl_json_get(root, "added_tokens");
    if (added && added->type != MVL_JSON_NULL && !mvl_json_is(added, MVL_JSON_ARRAY))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: \"added_tokens\" is not a list", ld->path);
    mvl_status st = load_vocab(ld, vocab, mvl_json_is(added, MVL_JSON_ARRAY) ? added : NULL);
    if (st != MVL_OK) return st;
    if ((st = load_merges(ld, merges)) != MVL_OK) return st;

    ld->tok->unk_id = -1;
    const mvl_json *unk = mvl_json_get(model, "unk_token");
    if (mvl_json_is(unk, MVL_JSON_STRING)) {
        ld->tok->unk_id = mvl_tokenizer_token_id(ld->tok, unk->u.str);
        if (ld->tok->unk_id < 0)
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: unk_token '%s' is not in the vocab", ld->path, unk->u.str);
    }
    return MVL_OK;
}

static mvl_status load_tokenizer_json(loader *ld, const mvl_json *root) {
    if (!mvl_json_is(root, MVL_JSON_OBJECT))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: top level is not an object", ld->path);
    static const char *const must_be_null[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        const mvl_json *v = mvl_json_get(root, must_be_null[k]);
        if (v && v->type != MVL_JSON_NULL)
            return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: \"%s\" is set (only null is supported)", ld->path,
                            must_be_null[k]);
    }
    mvl_status st = load_model(ld, root);
    if (st != MVL_OK) return st;
    if ((st = load_normalizer(ld, mvl_json_get(root, "normalizer"))) != MVL_OK) return st;
    const mvl_json *pt = mvl_json_get(root, "pre_tokenizer");
    bool saw_bytelevel = false;
    if (pt && pt->type != MVL_JSON_NULL && (st = load_pretok(ld, pt, &saw_bytelevel, 0)) != MVL_OK) return st;
    if (!saw_bytelevel)
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: no ByteLevel pre-tokenizer (only byte-level BPE is supported)",
                        ld->path);
    const mvl_json *dec = mvl_json_get(root, "decoder");
    const char *dt = type_name(dec);
    if (!dt || strcmp(dt, "ByteLevel"))
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: decoder type '%s' (only ByteLevel is supported)", ld->path,
                        dt ? dt : "none");
    /* The post-processor only matters for encode(add_special_tokens=True);
     * ours is add_special_tokens=False, so ByteLevel/TemplateProcessing are
     * accepted and not applied. */
    const mvl_json *pp = mvl_json_get(root, "post_processor");
    const char *pt_name = type_name(pp);
    if (pp && pp->type != MVL_JSON_NULL &&
        (!pt_name || (strcmp(pt_name, "ByteLevel") && strcmp(pt_name, "TemplateProcessing"))))
        return mvl_fail(ld->err, MVL_ERR_UNSUPPORTED, "%s: post_processor type '%s'", ld->path,
                        pt_name ? pt_name : "?");
    return MVL_OK;
}

/* A special-token field of tokenizer_config.json: "text" or {"content": "text"}. */
static const char *config_token(const mvl_json *v) {
    if (mvl_json_is(v, MVL_JSON_STRING)) return v->u.str;
    const mvl_json *c = mvl_json_get(v, "content");
    return mvl_json_is(c, MVL_JSON_STRING) ? c->u.str : NULL;
}

static mvl_status add_stop(loader *ld, int64_t id) {
    mvl_tokenizer *tok = ld->tok;
    if (id < 0 || (size_t)id >= tok->n_ids || !tok->flags[id])
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: eos token id %lld is not a token", ld->path, (long long)id);
    for (size_t i = 0; i < tok->n_stop; i++)
        if (tok->stop_ids[i] == id) return MVL_OK;
    if (tok->n_stop == MAX_STOP_IDS)
        return mvl_fail(ld->err, MVL_ERR_LIMIT, "%s: more than %d eos ids", ld->path, MAX_STOP_IDS);
    tok->stop_ids[tok->n_stop++] = (int32_t)id;
    return MVL_OK;
}

static mvl_status load_config(loader *ld, const mvl_json *root) {
    mvl_tokenizer *tok = ld->tok;
    if (!mvl_json_is(root, MVL_JSON_OBJECT))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: top level is not an object", ld->path);
    /* Ids given in the config must agree with tokenizer.json. */
    const mvl_json *dec = mvl_json_get(root, "added_tokens_decoder");
    for (uint32_t i = 0; mvl_json_is(dec, MVL_JSON_OBJECT) && i < dec->n; i++) {
        const mvl_json *e = &dec->u.kids[i];
        const char *content = config_token(e);
        char *end;
        long id = strtol(e->key, &end, 10);
        if (!content || *end || id < 0)
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: bad added_tokens_decoder entry '%s'", ld->path, e->key);
        size_t n;
        const char *have = mvl_tokenizer_token_bytes(tok, (int32_t)id, &n);
        if (!have || n != strlen(content) || memcmp(have, content, n))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: added token %ld '%s' does not match tokenizer.json", ld->path,
                            id, content);
    }
    const mvl_json *eos = mvl_json_get(root, "eos_token");
    if (eos && eos->type != MVL_JSON_NULL) {
        const char *s = config_token(eos);
        int32_t id = s ? mvl_tokenizer_token_id(tok, s) : -1;
        if (id < 0)
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: eos_token '%s' is not a token", ld->path, s ? s : "?");
        return add_stop(ld, id);
    }
    return MVL_OK;
}

static mvl_status load_generation_config(loader *ld, const mvl_json *root) {
    const mvl_json *eos = mvl_json_get(root, "eos_token_id");
    if (!eos || eos->type == MVL_JSON_NULL) return MVL_OK;
    int64_t id;
    if (mvl_json_int(eos, 0, INT32_MAX, &id)) return add_stop(ld, id);
    if (!mvl_json_is(eos, MVL_JSON_ARRAY))
        return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: eos_token_id is neither an id nor a list of ids", ld->path);
    for (uint32_t i = 0; i < eos->n; i++) {
        if (!mvl_json_int(&eos->u.kids[i], 0, INT32_MAX, &id))
            return mvl_fail(ld->err, MVL_ERR_FORMAT, "%s: eos_token_id[%u] is not an id", ld->path, i);
        mvl_status st = add_stop(ld, id);
        if (st != MVL_OK) return st;
    }
    return MVL_OK;
}

/* Reads and parses one JSON file of the directory, then hands it to fn.
 * optional: a missing file is not an error. */
static mvl_status with_json_file(loader *ld, const char *dir, const char *name, size_t max, bool optional,
                                 mvl_status (*fn)(loader *, const mvl_json *)) {
    char *path = mvl_path_join(dir, name);
    if (!path) return mvl_fail(ld->err, MVL_ERR_NOMEM, "out of memory");
    char *buf = NULL;
    size_t len = 0;
    mvl_error ioerr = {0};
    mvl_status st = mvl_read_file(path, max, &buf, &len, &ioerr);
    if (st == MVL_ERR_IO && optional) {
        free(path);
        return MVL_OK;
    }
    if (st != MVL_OK) {
        if (ld->err) *ld->err = ioerr;
        free(path);
        return st;
    }
    mvl_json_doc doc;
    ld->path = path;
    st = mvl_json_parse(path, buf, len, &doc, ld->err);
    free(buf);
    if (st == MVL_OK) st = fn(ld, doc.root);
    mvl_json_doc_free(&doc);
    ld->path = NULL;
    free(path);
    return st;
}

mvl_status mvl_tokenizer_load(const char *dir, mvl_tokenizer **out, mvl_error *err) {
    *out = NULL;
    if (!dir) return mvl_fail(err, MVL_ERR_ARG, "mvl_tokenizer_load: no directory");
    pthread_once(&alphabet_once, init_alphabet);
    mvl_tokenizer *tok = mvl_calloc(1, sizeof *tok, err);
    if (!tok) return MVL_ERR_NOMEM;
    pthread_mutex_init(&tok->cache_lock, NULL);
    tok->unk_id = -1;
    tok->dir = strdup(dir);
    loader ld = {.tok = tok, .err = err};
    mvl_status st = tok->dir ? MVL_OK : mvl_fail(err, MVL_ERR_NOMEM, "out of memory");
    if (st == MVL_OK) st = with_json_file(&ld, dir, "tokenizer.json", MAX_TOKENIZER_JSON, false, load_tokenizer_json);
    if (st == MVL_OK) st = with_json_file(&ld, dir, "tokenizer_config.json", MAX_CONFIG_JSON, false, load_config);
    if (st == MVL_OK)
        st = with_json_file(&ld, dir, "generation_config.json", MAX_CONFIG_JSON, true, load_generation_config);
    if (st != MVL_OK) {
        mvl_tokenizer_free(tok);
        return st;
    }
    *out = tok;
    return MVL_OK;
}

void mvl_tokenizer_free(mvl_tokenizer *tok) {
    if (!tok) return;
    for (int i = 0; i < tok->n_regex; i++) pcre2_code_free(tok->regex[i]);
    free(tok->added_raw.tok);
    free(tok->added_norm.tok);
    free(tok->merges.keys);
    free(tok->merges.rank);
    free(tok->merges.merged);
    free(tok->vocab.slots);
    free(tok->flags);
    free(tok->tok_off);
    free(tok->tok_len);
    free(tok->arena);
    free(tok->cache);
    pthread_mutex_destroy(&tok->cache_lock);
    free(tok->dir);
    free(tok);
}

/* ---- queries ------------------------------------------------------------------------- */

size_t mvl_tokenizer_n_ids(const mvl_tokenizer *tok) { return tok->n_ids; }

const char *mvl_tokenizer_token_bytes(const mvl_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= tok->n_ids || !tok->flags[id]) return NULL;
    *len = tok->tok_len[id];
    return tok->arena + tok->tok_off[id];
}

int32_t mvl_tokenizer_token_id(const mvl_tokenizer *tok, const char *text) {
    size_t n = strlen(text);
    if (n == 0) return -1;
    const added_set *sets[2] = {&tok->added_raw, &tok->added_norm};
    for (int k = 0; k < 2; k++) {
        const added_set *s = sets[k];
        unsigned char f = (unsigned char)text[0];
        for (uint32_t i = s->start[f]; i < s->start[f] + s->count[f]; i++)
            if (s->tok[i].len == n && !memcmp(s->tok[i].s, text, n)) return s->tok[i].id;
    }
    return vocab_get(tok, text, n);
}

const int32_t *mvl_tokenizer_stop_ids(const mvl_tokenizer *tok, size_t *n) {
    *n = tok->n_stop;
    return tok->stop_ids;
}

/* ---- encoding ------------------------------------------------------------------------ */

typedef struct sym {
    int32_t id;
    int32_t prev, next;  /* -1 at the ends */
    uint32_t len;        /* 0 once merged into its left neighbour */
} sym;

typedef struct enc {
    const mvl_tokenizer *tok;
    int32_t *ids;        /* [cap] output */
    size_t n, cap;
    sym *syms;           /* [syms_cap] BPE work space */
    size_t syms_cap;
    uint64_t *heap;      /* [heap_cap] (rank << 32 | position), min-heap */
    size_t heap_n, heap_cap;
    cache_slot *cache;   /* NULL when another encode holds it */
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jstack;
    mvl_status st;
    mvl_error *err;
} enc;

static bool emit(enc *e, int32_t id) {
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 256;
        int32_t *p = realloc(e->ids, cap * sizeof *p);
        if (!p) {
            e->st = mvl_fail(e->err, MVL_ERR_NOMEM, "out of memory encoding");
            return false;
        }
        e->ids = p;
        e->cap = cap;
    }
    e->ids[e->n++] = id;
    return true;
}

static void heap_push(enc *e, uint64_t v) {
    size_t i = e->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (e->heap[p] <= v) break;
        e->heap[i] = e->heap[p];
        i = p;
    }
    e->heap[i] = v;
}

static uint64_t heap_pop(enc *e) {
    uint64_t top = e->heap[0], v = e->heap[--e->heap_n];
    size_t i = 0, n = e->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && e->heap[c + 1] < e->heap[c]) c++;
        if (e->heap[c] >= v) break;
        e->heap[i] = e->heap[c];
        i = c;
    }
    if (n) e->heap[i] = v;
    return top;
}

static void push_pair(enc *e, int32_t pos) {
    const sym *a = &e->syms[pos];
    if (a->next < 0) return;
    uint32_t rank;
    if (merge_get(&e->tok->merges, a->id, e->syms[a->next].id, &rank, NULL))
        heap_push(e, (uint64_t)rank << 32 | (uint32_t)pos);
}

static bool reserve(enc *e, size_t n) {
    if (n > e->syms_cap) {
        free(e->syms);
        free(e->heap);
        /* Each merge queues at most two new pairs: 3n entries bound the heap. */
        e->syms = malloc(n * sizeof *e->syms);
        e->heap = malloc(3 * n * sizeof *e->heap);
        e->syms_cap = n;
        e->heap_cap = 3 * n;
        if (!e->syms || !e->heap) {
            e->syms_cap = e->heap_cap = 0;
            e->st = mvl_fail(e->err, MVL_ERR_NOMEM, "out of memory encoding");
            return false;
        }
    }
    return true;
}

/* BPE of one piece (HF BPE::merge_word with a heap of candidate merges). */
static void bpe(enc *e, const char *s, size_t n) {
    const mvl_tokenizer *tok = e->tok;
    if (n == 1 && tok->byte_id[(unsigned char)s[0]] >= 0) {
        emit(e, tok->byte_id[(unsigned char)s[0]]);
        return;
    }
    int32_t whole;
    if (tok->ignore_merges && (whole = vocab_get(tok, s, n)) >= 0) {
        emit(e, whole);
        return;
    }
    cache_slot *slot = NULL;
    uint64_t h = 0;
    if (e->cache && n <= CACHE_KEY) {
        h = hash_bytes(s, n) | 1;
        slot = &e->cache[h & (CACHE_SLOTS - 1)];
        if (slot->h == h && slot->klen == n && !memcmp(slot->key, s, n)) {
            for (int i = 0; i < slot->nids; i++) emit(e, slot->ids[i]);
            return;
        }
    }
    if (!reserve(e, n)) return;
    sym *sy = e->syms;
    int32_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = tok->byte_id[(unsigned char)s[i]];
        if (id < 0) {
            if (tok->unk_id < 0) continue; /* HF drops a byte with no token and no unk */
            id = tok->unk_id;
            if (tok->fuse_unk && count > 0 && sy[count - 1].id == id) {
                sy[count - 1].len++;
                continue;
            }
        }
        sy[count] = (sym){id, count - 1, count + 1, 1};
        count++;
    }
    if (count == 0) return;
    sy[count - 1].next = -1;
    e->heap_n = 0;
    for (int32_t i = 0; i + 1 < count; i++) push_pair(e, i);
    while (e->heap_n) {
        uint64_t top = heap_pop(e);
        int32_t pos = (int32_t)(uint32_t)top;
        uint32_t rank = (uint32_t)(top >> 32), r;
        sym *a = &sy[pos];
        if (a->len == 0 || a->next < 0) continue;
        sym *b = &sy[a->next];
        int32_t merged;
        /* Stale entry: the pair at pos changed since it was queued. */
        if (!merge_get(&tok->merges, a->id, b->id, &r, &merged) || r != rank) continue;
        a->id = merged;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) sy[a->next].prev = pos;
        if (a->prev >= 0) push_pair(e, a->prev);
        push_pair(e, pos);
    }
    size_t first = e->n;
    for (int32_t i = 0; i >= 0; i = sy[i].next)
        if (!emit(e, sy[i].id)) return;
    size_t nids = e->n - first;
    if (slot && nids <= CACHE_IDS) {
        slot->h = h;
        slot->klen = (uint8_t)n;
        slot->nids = (uint8_t)nids;
        memcpy(slot->key, s, n);
        memcpy(slot->ids, e->ids + first, nids * sizeof(int32_t));
    }
}

/* Runs regex step `step` over s[0..n) (Isolated: matches and gaps are both
 * pieces) and passes each piece on; after the last step, BPE. */
static void pretok(enc *e, int step, const char *s, size_t n) {
    const mvl_tokenizer *tok = e->tok;
    if (n == 0 || e->st != MVL_OK) return;
    if (step == tok->n_regex) {
        bpe(e, s, n);
        return;
    }
    pcre2_code *re = tok->regex[step];
    size_t pos = 0, start = 0;
    while (start < n && e->st == MVL_OK) {
        int rc = tok->jit[step] ? pcre2_jit_match(re, (PCRE2_SPTR)s, n, start, 0, e->md, e->mctx)
                                : pcre2_match(re, (PCRE2_SPTR)s, n, start, 0, e->md, e->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            e->st = mvl_fail(e->err, MVL_ERR_LIMIT, "%s: pre-tokenizer regex failed: %s", tok->dir,
                             (const char *)msg);
            return;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(e->md);
        size_t a = ov[0], b = ov[1];
        if (a == b) { /* empty match: yields no piece; retry one character on */
            size_t k = mvl_utf8_valid_seq((const unsigned char *)s + a, n - a);
            start = a + (k ? k : 1);
            continue;
        }
        if (a > pos) pretok(e, step + 1, s + pos, a - pos);
        pretok(e, step + 1, s + a, b - a);
        pos = start = b;
    }
    if (pos < n) pretok(e, step + 1, s + pos, n - pos);
}

/* A segment that is not an added token, after normalization. */
static void segment_normalized(enc *e, const char *s, size_t n) {
    if (n == 0) return;
    if (e->tok->add_prefix_space && s[0] != ' ') {
        char *p = malloc(n + 1);
        if (!p) {
            e->st = mvl_fail(e->err, MVL_ERR_NOMEM, "out of memory encoding");
            return;
        }
        p[0] = ' ';
        memcpy(p + 1, s, n);
        pretok(e, 0, p, n + 1);
        free(p);
        return;
    }
    pretok(e, 0, s, n);
}

typedef void (*segment_fn)(enc *e, const char *s, size_t n);

/* Splits s on the tokens of set (leftmost-longest, as HF's Aho-Corasick
 * matcher); gaps go to fn. */
static void split_added(enc *e, const added_set *set, const char *s, size_t n, segment_fn fn) {
    size_t gap = 0;
    for (size_t i = 0; i < n && e->st == MVL_OK;) {
        unsigned char f = (unsigned char)s[i];
        const struct added_tok *hit = NULL;
        for (uint32_t k = set->start[f]; k < set->start[f] + set->count[f]; k++) {
            const struct added_tok *t = &set->tok[k];
            if (t->len <= n - i && !memcmp(s + i, t->s, t->len)) {
                hit = t;
                break;
            }
        }
        if (!hit) {
            i++;
            continue;
        }
        if (i > gap) fn(e, s + gap, i - gap);
        if (e->st != MVL_OK) return;
        emit(e, hit->id);
        i += hit->len;
        gap = i;
    }
    if (gap < n && e->st == MVL_OK) fn(e, s + gap, n - gap);
}

static void segment_norm_split(enc *e, const char *s, size_t n) {
    split_added(e, &e->tok->added_norm, s, n, segment_normalized);
}

static void segment_raw(enc *e, const char *s, size_t n) {
    if (!e->tok->nfc) {
        segment_norm_split(e, s, n);
        return;
    }
    bool ascii = true;
    for (size_t i = 0; i < n && ascii; i++) ascii = (unsigned char)s[i] < 0x80;
    if (ascii) { /* NFC never changes ASCII */
        segment_norm_split(e, s, n);
        return;
    }
    utf8proc_uint8_t *nfc = NULL;
    utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &nfc,
                                      UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (m < 0) {
        e->st = mvl_fail(e->err, MVL_ERR_ARG, "%s: NFC normalization failed: %s (input must be valid UTF-8)",
                         e->tok->dir, utf8proc_errmsg(m));
        return;
    }
    segment_norm_split(e, (const char *)nfc, (size_t)m);
    free(nfc);
}

mvl_status mvl_tokenizer_encode(const mvl_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                                size_t *n_ids, mvl_error *err) {
    *ids = NULL;
    *n_ids = 0;
    if (!text && len) return mvl_fail(err, MVL_ERR_ARG, "mvl_tokenizer_encode: NULL text");
    if (len > INT32_MAX) return mvl_fail(err, MVL_ERR_LIMIT, "mvl_tokenizer_encode: input over 2 GiB");
    enc e = {.tok = tok, .err = err};
    e.md = pcre2_match_data_create(1, NULL);
    e.mctx = pcre2_match_context_create(NULL);
    /* Long runs (a megabyte of spaces) outgrow PCRE2's default 32 KiB JIT stack. */
    e.jstack = pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, NULL);
    if (!e.md || !e.mctx || !e.jstack) {
        e.st = mvl_fail(err, MVL_ERR_NOMEM, "out of memory encoding");
        goto done;
    }
    pcre2_jit_stack_assign(e.mctx, NULL, e.jstack);
    mvl_tokenizer *mut = (mvl_tokenizer *)tok; /* the cache is the only mutable part */
    bool locked = pthread_mutex_trylock(&mut->cache_lock) == 0;
    if (locked) {
        if (!mut->cache) mut->cache = calloc(CACHE_SLOTS, sizeof *mut->cache);
        e.cache = mut->cache;
    }
    split_added(&e, &tok->added_raw, text, len, segment_raw);
    if (locked) pthread_mutex_unlock(&mut->cache_lock);
done:
    pcre2_jit_stack_free(e.jstack);
    pcre2_match_context_free(e.mctx);
    pcre2_match_data_free(e.md);
    free(e.syms);
    free(e.heap);
    if (e.st != MVL_OK) {
        free(e.ids);
        return e.st;
    }
    *ids = e.ids;
    *n_ids = e.n;
    return MVL_OK;
}

/* ---- decoding ------------------------------------------------------------------------ */

static mvl_status check_id(const mvl_tokenizer *tok, int32_t id, mvl_error *err) {
    if (id < 0 || (size_t)id >= tok->n_ids || !tok->flags[id])
        return mvl_fail(err, MVL_ERR_ARG, "%s: id %d is not a token", tok->dir, id);
    return MVL_OK;
}

mvl_status mvl_tokenizer_decode(const mvl_tokenizer *tok, const int32_t *ids, size_t n, int skip_special,
                                char **out, size_t *out_len, mvl_error *err) {
    *out = NULL;
    if (out_len) *out_len = 0;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        mvl_status st = check_id(tok, ids[i], err);
        if (st != MVL_OK) return st;
        total += tok->tok_len[ids[i]];
    }
    unsigned char *raw = mvl_malloc(total + 1, err);
    char *res = NULL;
    size_t cap;
    if (raw && mvl_mul_ok(total, 3, &cap)) res = mvl_malloc(cap + 1, err);
    if (!raw || !res) {
        free(raw);
        free(res);
        return MVL_ERR_NOMEM;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && (tok->flags[ids[i]] & TOK_SPECIAL)) continue;
        memcpy(raw + o, tok->arena + tok->tok_off[ids[i]], tok->tok_len[ids[i]]);
        o += tok->tok_len[ids[i]];
    }
    size_t used;
    size_t m = mvl_utf8_lossy(raw, o, true, res, &used);
    free(raw);
    res[m] = '\0';
    *out = res;
    if (out_len) *out_len = m;
    return MVL_OK;
}

struct mvl_detok {
    const mvl_tokenizer *tok;
    int skip_special;
    unsigned char *buf;  /* [cap] held bytes (an incomplete character) + new token */
    char *out;           /* [3 * cap + 1] */
    size_t held, cap;
};

mvl_status mvl_detok_init(const mvl_tokenizer *tok, int skip_special, mvl_detok **out, mvl_error *err) {
    *out = mvl_calloc(1, sizeof **out, err);
    if (!*out) return MVL_ERR_NOMEM;
    (*out)->tok = tok;
    (*out)->skip_special = skip_special;
    return MVL_OK;
}

void mvl_detok_free(mvl_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d->out);
    free(d);
}

mvl_status mvl_detok_push(mvl_detok *d, int32_t id, const char **text, size_t *len, mvl_error *err) {
    *text = "";
    *len = 0;
    mvl_status st = check_id(d->tok, id, err);
    if (st != MVL_OK) return st;
    if (d->skip_special && (d->tok->flags[id] & TOK_SPECIAL)) return MVL_OK;
    size_t n = d->tok->tok_len[id], need = d->held + n;
    if (need > d->cap) {
        size_t cap = need < 64 ? 64 : need * 2;
        unsigned char *b = realloc(d->buf, cap);
        if (!b) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory decoding");
        d->buf = b;
        char *o = realloc(d->out, 3 * cap + 1);
        if (!o) return mvl_fail(err, MVL_ERR_NOMEM, "out of memory decoding");
        d->out = o;
        d->cap = cap;
    }
    memcpy(d->buf + d->held, d->tok->arena + d->tok->tok_off[id], n);
    size_t used;
    size_t m = mvl_utf8_lossy(d->buf, need, false, d->out, &used);
    memmove(d->buf, d->buf + used, need - used);
    d->held = need - used;
    d->out[m] = '\0';
    *text = d->out;
    *len = m;
    return MVL_OK;
}

void mvl_detok_flush(mvl_detok *d, const char **text, size_t *len) {
    size_t used, m = 0;
    if (d->held) m = mvl_utf8_lossy(d->buf, d->held, true, d->out, &used);
    d->held = 0;
    if (d->out) d->out[m] = '\0';
    *text = d->out ? d->out : "";
    *len = m;
}
