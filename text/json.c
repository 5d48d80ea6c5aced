#include "text/json.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

#define JSON_MAX_DEPTH 128
#define BLOCK_NODES 16384

struct mvl_json_block {
    mvl_json_block *next;
    size_t used, cap;
    mvl_json nodes[]; /* [cap] */
};

typedef struct {
    const char *path;
    const char *buf, *p, *end;
    char *str_out;             /* next free byte of doc->strings */
    mvl_json_doc *doc;
    mvl_json *stack;           /* [stack_cap] finished values waiting for their parent */
    size_t stack_n, stack_cap;
    mvl_error *err;
} parser;

static mvl_status syntax(parser *ps, const char *at, const char *what) {
    size_t line = 1, col = 1;
    for (const char *q = ps->buf; q < at && q < ps->end; q++) {
        if (*q == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    if (at >= ps->end)
        return mvl_fail(ps->err, MVL_ERR_FORMAT, "%s: invalid JSON: %s at end of file (truncated?)",
                        ps->path, what);
    return mvl_fail(ps->err, MVL_ERR_FORMAT, "%s: invalid JSON at line %zu, column %zu: %s",
                    ps->path, line, col, what);
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static mvl_status push(parser *ps, const mvl_json *v) {
    if (ps->stack_n == ps->stack_cap) {
        size_t cap = ps->stack_cap ? ps->stack_cap * 2 : 1024;
        mvl_json *s = realloc(ps->stack, cap * sizeof *s);
        if (!s) return mvl_fail(ps->err, MVL_ERR_NOMEM, "%s: out of memory parsing JSON", ps->path);
        ps->stack = s;
        ps->stack_cap = cap;
    }
    ps->stack[ps->stack_n++] = *v;
    return MVL_OK;
}

/* Moves the last n stacked values into a contiguous arena run. */
static mvl_status pop_children(parser *ps, size_t n, mvl_json **out) {
    *out = NULL;
    if (n == 0) return MVL_OK;
    mvl_json_block *b = ps->doc->blocks;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > BLOCK_NODES ? n : BLOCK_NODES;
        b = malloc(sizeof *b + cap * sizeof(mvl_json));
        if (!b) return mvl_fail(ps->err, MVL_ERR_NOMEM, "%s: out of memory parsing JSON", ps->path);
        b->cap = cap;
        b->used = 0;
        b->next = ps->doc->blocks;
        ps->doc->blocks = b;
    }
    *out = b->nodes + b->used;
    b->used += n;
    ps->stack_n -= n;
    memcpy(*out, ps->stack + ps->stack_n, n * sizeof(mvl_json));
    return MVL_OK;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool read_hex4(const char *p, const char *end, uint32_t *out) {
    if (end - p < 4) return false;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p[i]);
        if (h < 0) return false;
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return true;
}

static char *put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) {
        *o++ = (char)cp;
    } else if (cp < 0x800) {
        *o++ = (char)(0xC0 | cp >> 6);
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        *o++ = (char)(0xE0 | cp >> 12);
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *o++ = (char)(0xF0 | cp >> 18);
        *o++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *o++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *o++ = (char)(0x80 | (cp & 0x3F));
    }
    return o;
}

/* Length of the valid UTF-8 sequence at p (lead byte >= 0x80), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *end) {
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if ((size_t)(end - p) < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xC0) != 0x80) return 0;
    return n;
}

/* Parses a string at ps->p (on the opening quote) into the string arena. */
static mvl_status parse_string(parser *ps, const char **out, uint32_t *out_len) {
    const char *p = ps->p + 1, *end = ps->end;
    char *o = ps->str_out, *start = o;
    for (;;) {
        const char *run = p;
        while (p < end && (unsigned char)*p >= 0x20 && *p != '"' && *p != '\\' &&
               (unsigned char)*p < 0x80)
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p >= end) return syntax(ps, p, "unterminated string");
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            p++;
            break;
        }
        if (c < 0x20) return syntax(ps, p, "control character inside a string");
        if (c >= 0x80) {
            size_t n = utf8_seq((const unsigned char *)p, (const unsigned char *)end);
            if (!n) return syntax(ps, p, "invalid UTF-8 inside a string");
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        /* backslash escape */
        if (p + 1 >= end) return syntax(ps, p, "unterminated escape");
        char e = p[1];
        p += 2;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (!read_hex4(p, end, &cp)) return syntax(ps, p, "bad \\u escape");
            p += 4;
            if (cp >= 0xDC00 && cp <= 0xDFFF) return syntax(ps, p - 6, "lone low surrogate");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                uint32_t lo;
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !read_hex4(p + 2, end, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF)
                    return syntax(ps, p - 6, "lone high surrogate");
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            o = put_utf8(o, cp);
            break;
        }
        default: return syntax(ps, p - 2, "unknown escape");
        }
    }
    *o++ = '\0';
    ps->p = p;
    ps->str_out = o;
    size_t n = (size_t)(o - 1 - start);
    if (n > UINT32_MAX) return syntax(ps, p, "string too long");
    *out = start;
    *out_len = (uint32_t)n;
    return MVL_OK;
}

static mvl_status parse_number(parser *ps, double *out) {
    const char *p = ps->p, *end = ps->end, *start = p;
    if (p < end && *p == '-') p++;
    if (p >= end || *p < '0' || *p > '9') return syntax(ps, p, "bad number");
    if (*p == '0') p++;
    else while (p < end && *p >= '0' && *p <= '9') p++;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9') return syntax(ps, p, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return syntax(ps, p, "bad number");
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    /* Fast path for plain integers (every id in a tokenizer file). */
    bool plain = true;
    for (const char *q = (*start == '-') ? start + 1 : start; q < p; q++)
        if (*q < '0' || *q > '9') plain = false;
    if (plain && p - start < 16) {
        int64_t v = 0;
        for (const char *q = (*start == '-') ? start + 1 : start; q < p; q++) v = v * 10 + (*q - '0');
        *out = (double)(*start == '-' ? -v : v);
    } else {
        *out = strtod(start, NULL); /* grammar already checked; buf is NUL-terminated */
    }
    ps->p = p;
    return MVL_OK;
}

static mvl_status parse_value(parser *ps, int depth);

static mvl_status parse_container(parser *ps, int depth, bool object) {
    char close = object ? '}' : ']';
    size_t base = ps->stack_n;
    ps->p++;
    skip_ws(ps);
    mvl_status st;
    if (ps->p < ps->end && *ps->p == close) {
        ps->p++;
    } else {
        for (;;) {
            const char *key = NULL;
            uint32_t key_len = 0;
            if (object) {
                if (ps->p >= ps->end || *ps->p != '"') return syntax(ps, ps->p, "expected a member name");
                if ((st = parse_string(ps, &key, &key_len)) != MVL_OK) return st;
                skip_ws(ps);
                if (ps->p >= ps->end || *ps->p != ':') return syntax(ps, ps->p, "expected ':'");
                ps->p++;
                skip_ws(ps);
            }
            if ((st = parse_value(ps, depth + 1)) != MVL_OK) return st;
            ps->stack[ps->stack_n - 1].key = key;
            ps->stack[ps->stack_n - 1].key_len = key_len;
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                skip_ws(ps);
                continue;
            }
            if (ps->p < ps->end && *ps->p == close) {
                ps->p++;
                break;
            }
            return syntax(ps, ps->p, object ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    size_t n = ps->stack_n - base;
    if (n > UINT32_MAX) return syntax(ps, ps->p, "container too large");
    mvl_json v = {.type = object ? MVL_JSON_OBJECT : MVL_JSON_ARRAY, .n = (uint32_t)n};
    if ((st = pop_children(ps, n, &v.u.kids)) != MVL_OK) return st;
    return push(ps, &v);
}

static bool literal(parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0) return false;
    ps->p += n;
    return true;
}

static mvl_status parse_value(parser *ps, int depth) {
    if (depth > JSON_MAX_DEPTH) return syntax(ps, ps->p, "nested too deeply");
    if (ps->p >= ps->end) return syntax(ps, ps->p, "expected a value");
    mvl_json v = {0};
    mvl_status st;
    switch (*ps->p) {
    case '{': return parse_container(ps, depth, true);
    case '[': return parse_container(ps, depth, false);
    case '"':
        v.type = MVL_JSON_STRING;
        if ((st = parse_string(ps, &v.u.str, &v.n)) != MVL_OK) return st;
        break;
    case 't':
        if (!literal(ps, "true")) return syntax(ps, ps->p, "unexpected token");
        v.type = MVL_JSON_TRUE;
        break;
    case 'f':
        if (!literal(ps, "false")) return syntax(ps, ps->p, "unexpected token");
        v.type = MVL_JSON_FALSE;
        break;
    case 'n':
        if (!literal(ps, "null")) return syntax(ps, ps->p, "unexpected token");
        v.type = MVL_JSON_NULL;
        break;
    default:
        if (*ps->p != '-' && (*ps->p < '0' || *ps->p > '9')) return syntax(ps, ps->p, "unexpected character");
        v.type = MVL_JSON_NUMBER;
        if ((st = parse_number(ps, &v.u.num)) != MVL_OK) return st;
        break;
    }
    return push(ps, &v);
}

void mvl_json_doc_free(mvl_json_doc *doc) {
    if (!doc) return;
    for (mvl_json_block *b = doc->blocks, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
    free(doc->strings);
    memset(doc, 0, sizeof *doc);
}

mvl_status mvl_json_parse(const char *path, const char *buf, size_t len, mvl_json_doc *doc,
                          mvl_error *err) {
    memset(doc, 0, sizeof *doc);
    /* Decoded strings never exceed their quoted source, so len + 1 bytes hold them all. */
    doc->strings = mvl_malloc(len + 1, err);
    if (!doc->strings) return MVL_ERR_NOMEM;
    parser ps = {.path = path, .buf = buf, .p = buf, .end = buf + len, .str_out = doc->strings,
                 .doc = doc, .err = err};
    skip_ws(&ps);
    mvl_status st = parse_value(&ps, 0);
    if (st == MVL_OK) {
        skip_ws(&ps);
        if (ps.p != ps.end) st = syntax(&ps, ps.p, "trailing characters after the value");
    }
    if (st == MVL_OK) {
        mvl_json *root = NULL;
        st = pop_children(&ps, 1, &root);
        doc->root = root;
    }
    free(ps.stack);
    if (st != MVL_OK) mvl_json_doc_free(doc);
    return st;
}

const mvl_json *mvl_json_get(const mvl_json *obj, const char *key) {
    if (!obj || obj->type != MVL_JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < obj->n; i++) {
        const mvl_json *k = &obj->u.kids[i];
        if (k->key_len == n && memcmp(k->key, key, n) == 0) return k;
    }
    return NULL;
}

int mvl_json_int(const mvl_json *v, int64_t lo, int64_t hi, int64_t *out) {
    if (!v || v->type != MVL_JSON_NUMBER) return 0;
    double d = v->u.num;
    if (!(d >= (double)lo && d <= (double)hi) || d != (double)(int64_t)d) return 0;
    *out = (int64_t)d;
    return 1;
}
