#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

/* Makes room for n more bytes plus the terminating NUL. */
static bool reserve(mvl_strbuf *b, size_t n) {
    if (b->oom) return false;
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

void mvl_strbuf_add(mvl_strbuf *b, const char *s, size_t n) {
    if (!reserve(b, n)) return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void mvl_strbuf_puts(mvl_strbuf *b, const char *s) { mvl_strbuf_add(b, s, strlen(s)); }

void mvl_strbuf_printf(mvl_strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return;
    }
    if (!reserve(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mvl_strbuf_json(mvl_strbuf *b, const char *s, size_t n) {
    mvl_strbuf_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, flushed before each escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        mvl_strbuf_add(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            mvl_strbuf_add(b, e, 2);
        } else if (c == '\n') {
            mvl_strbuf_add(b, "\\n", 2);
        } else if (c == '\t') {
            mvl_strbuf_add(b, "\\t", 2);
        } else if (c == '\r') {
            mvl_strbuf_add(b, "\\r", 2);
        } else {
            mvl_strbuf_printf(b, "\\u%04x", c);
        }
    }
    mvl_strbuf_add(b, s + run, n - run);
    mvl_strbuf_add(b, "\"", 1);
}
