/* Token sampling: greedy, or temperature then top-k, top-p, min-p (the order
 * of the HF logits warpers), drawn with a seeded xoshiro256** generator. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mvl_common.h"

struct mvl_sampler {
    mvl_sample_opts o;
    uint64_t s[4];
    int32_t *idx;  /* [cap] candidate ids */
    float *p;      /* [cap] their probabilities */
    size_t cap;
};

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static double next_unit(mvl_sampler *r) { /* [0, 1) */
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return (double)(out >> 11) * (1.0 / 9007199254740992.0);
}

mvl_status mvl_sampler_init(const mvl_sample_opts *opts, mvl_sampler **out, mvl_error *err) {
    *out = NULL;
    if (!(opts->temperature >= 0) || opts->top_k < 0 || !(opts->top_p > 0 && opts->top_p <= 1) ||
        !(opts->min_p >= 0 && opts->min_p <= 1))
        return mvl_fail(err, MVL_ERR_ARG, "sampling: need temperature >= 0, top_k >= 0, 0 < top_p <= 1, 0 <= min_p <= 1");
    mvl_sampler *r = mvl_calloc(1, sizeof *r, err);
    if (!r) return MVL_ERR_NOMEM;
    r->o = *opts;
    uint64_t x = opts->seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix(&x);
    *out = r;
    return MVL_OK;
}

void mvl_sampler_free(mvl_sampler *r) {
    if (!r) return;
    free(r->idx);
    free(r->p);
    free(r);
}

static int by_logit_desc(const void *a, const void *b, void *ctx) {
    const float *logits = ctx;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    float lx = logits[x], ly = logits[y];
    if (lx != ly) return lx > ly ? -1 : 1;
    return (x > y) - (x < y);
}

int32_t mvl_sampler_sample(mvl_sampler *r, const float *logits, size_t vocab) {
    size_t best = 0;
    for (size_t i = 1; i < vocab; i++)
        if (logits[i] > logits[best]) best = i;
    if (r->o.temperature <= 0) return (int32_t)best;
    if (vocab > r->cap) {
        int32_t *idx = realloc(r->idx, vocab * sizeof *idx);
        if (idx) r->idx = idx;
        float *p = idx ? realloc(r->p, vocab * sizeof *p) : NULL;
        if (p) r->p = p;
        if (!idx || !p) return (int32_t)best; /* no memory for candidates: fall back to greedy */
        r->cap = vocab;
    }
    for (size_t i = 0; i < vocab; i++) r->idx[i] = (int32_t)i;
    qsort_r(r->idx, vocab, sizeof *r->idx, by_logit_desc, (void *)logits);
    size_t n = vocab;
    if (r->o.top_k > 0 && (size_t)r->o.top_k < n) n = (size_t)r->o.top_k;
    double mx = logits[r->idx[0]] / r->o.temperature, sum = 0;
    for (size_t i = 0; i < n; i++) sum += r->p[i] = (float)exp(logits[r->idx[i]] / r->o.temperature - mx);
    for (size_t i = 0; i < n; i++) r->p[i] = (float)(r->p[i] / sum);
    if (r->o.top_p < 1) { /* smallest prefix reaching top_p, at least one */
        double c = 0;
        size_t k = 0;
        while (k < n) {
            c += r->p[k++];
            if (c >= r->o.top_p) break;
        }
        n = k;
    }
    if (r->o.min_p > 0) {
        size_t k = 1;
        while (k < n && r->p[k] >= r->o.min_p * r->p[0]) k++;
        n = k;
    }
    sum = 0;
    for (size_t i = 0; i < n; i++) sum += r->p[i];
    double u = next_unit(r) * sum, c = 0;
    for (size_t i = 0; i < n; i++) {
        c += r->p[i];
        if (u < c) return r->idx[i];
    }
    return r->idx[n - 1];
}
