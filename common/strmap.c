#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static mvl_status alloc_slots(mvl_strmap *m, size_t cap, mvl_error *err) {
    m->keys = mvl_calloc(cap, sizeof *m->keys, err);
    m->lens = mvl_calloc(cap, sizeof *m->lens, err);
    m->vals = mvl_calloc(cap, sizeof *m->vals, err);
    m->cap = cap;
    m->count = 0;
    if (!m->keys || !m->lens || !m->vals) {
        mvl_strmap_free(m);
        return MVL_ERR_NOMEM;
    }
    return MVL_OK;
}

mvl_status mvl_strmap_init(mvl_strmap *m, size_t expected, mvl_error *err) {
    size_t cap = 16;
    while (cap < expected * 2) cap <<= 1; /* load factor stays under 1/2 */
    return alloc_slots(m, cap, err);
}

void mvl_strmap_free(mvl_strmap *m) {
    free(m->keys);
    free(m->lens);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static size_t find_slot(const mvl_strmap *m, const char *key, size_t len) {
    size_t mask = m->cap - 1, i = (size_t)fnv1a(key, len) & mask;
    while (m->keys[i] && !(m->lens[i] == len && memcmp(m->keys[i], key, len) == 0)) i = (i + 1) & mask;
    return i;
}

mvl_status mvl_strmap_put(mvl_strmap *m, const char *key, size_t len, int64_t val, bool *inserted,
                          mvl_error *err) {
    if (len > UINT32_MAX) return mvl_fail(err, MVL_ERR_LIMIT, "map key of %zu bytes is too long", len);
    if ((m->count + 1) * 2 > m->cap) {
        mvl_strmap old = *m;
        if (alloc_slots(m, old.cap * 2, err) != MVL_OK) {
            *m = old;
            return MVL_ERR_NOMEM;
        }
        for (size_t i = 0; i < old.cap; i++) {
            if (!old.keys[i]) continue;
            size_t j = find_slot(m, old.keys[i], old.lens[i]);
            m->keys[j] = old.keys[i];
            m->lens[j] = old.lens[i];
            m->vals[j] = old.vals[i];
            m->count++;
        }
        mvl_strmap_free(&old);
    }
    size_t i = find_slot(m, key, len);
    if (m->keys[i]) {
        if (inserted) *inserted = false;
        return MVL_OK;
    }
    m->keys[i] = key;
    m->lens[i] = (uint32_t)len;
    m->vals[i] = val;
    m->count++;
    if (inserted) *inserted = true;
    return MVL_OK;
}

bool mvl_strmap_get(const mvl_strmap *m, const char *key, size_t len, int64_t *val) {
    if (!m->cap) return false;
    size_t i = find_slot(m, key, len);
    if (!m->keys[i]) return false;
    if (val) *val = m->vals[i];
    return true;
}
