/* UTF-8 validation and lossy repair for decoding (text/). */
#include "text/tokenizer_internal.h"

#include <string.h>

/* How many bytes of the sequence at s are a valid prefix, and the full length
 * it needs (0 when s[0] cannot start a sequence). */
static void utf8_prefix(const unsigned char *s, size_t n, size_t *valid, size_t *need) {
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    size_t want;
    if (c < 0x80) {
        *valid = *need = 1;
        return;
    }
    if (c >= 0xC2 && c <= 0xDF) want = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        want = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        want = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *valid = *need = 0;
        return;
    }
    size_t k = 1;
    if (k < n && k < want && s[1] >= lo && s[1] <= hi) {
        k = 2;
        while (k < n && k < want && (s[k] & 0xC0) == 0x80) k++;
    }
    *valid = k;
    *need = want;
}

size_t mvl_utf8_valid_seq(const unsigned char *s, size_t n) {
    if (n == 0) return 0;
    size_t valid, need;
    utf8_prefix(s, n, &valid, &need);
    return (need && valid == need) ? need : 0;
}

size_t mvl_utf8_lossy(const unsigned char *s, size_t n, bool final, char *out, size_t *consumed) {
    static const char fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};
    size_t i = 0, o = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            out[o++] = (char)s[i++];
            continue;
        }
        size_t valid, need;
        utf8_prefix(s + i, n - i, &valid, &need);
        if (need && valid == need) {
            memcpy(out + o, s + i, need);
            o += need;
            i += need;
        } else if (need && i + valid == n && !final) {
            break; /* may still complete with the next bytes */
        } else {
            memcpy(out + o, fffd, 3);
            o += 3;
            i += valid ? valid : 1;
        }
    }
    *consumed = i;
    return o;
}
