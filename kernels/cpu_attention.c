/* RoPE, softmax attention and lightning attention on the CPU (kernels/). All
 * products go through mvl_op_gemm; the loops here only scale, mask and
 * normalise. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

void mvl_op_rope_neox(float *x, int64_t n, int64_t ld, int heads, int head_dim, int rot_dim,
                      int64_t pos0, double theta, bool bf16) {
    int half = rot_dim / 2;
    float inv_freq[2048]; /* rot_dim <= head_dim <= 4096 (model/config.c) */
    for (int i = 0; i < half; i++)
        inv_freq[i] = (float)(1.0 / pow(theta, (double)(2 * i) / (double)rot_dim));
    for (int64_t r = 0; r < n; r++) {
        float p = (float)(pos0 + r);
        for (int i = 0; i < half; i++) {
            float ang = p * inv_freq[i]; /* fp32 product, as the reference tables (decoder.md §8.4) */
            float c = cosf(ang), s = sinf(ang);
            if (bf16) {
                c = mvl_bf16_round(c);
                s = mvl_bf16_round(s);
            }
            for (int h = 0; h < heads; h++) {
                float *xh = x + r * ld + (int64_t)h * head_dim;
                float a = xh[i], b = xh[i + half];
                if (bf16) { /* x*cos + rotate_half(x)*sin, each op rounded */
                    xh[i] = mvl_bf16_round(mvl_bf16_round(a * c) - mvl_bf16_round(b * s));
                    xh[i + half] = mvl_bf16_round(mvl_bf16_round(b * c) + mvl_bf16_round(a * s));
                } else {
                    xh[i] = a * c - b * s;
                    xh[i + half] = b * c + a * s;
                }
            }
        }
    }
}

/* Rounds m rows of d values, row stride ld, to bf16. */
static void round_rows(float *x, int64_t m, int d, int64_t ld) {
    for (int64_t r = 0; r < m; r++) mvl_op_round_bf16(x + r * ld, d);
}

enum { ATT_QBLOCK = 128 }; /* queries per score tile: bounds scratch to 128 x t */

mvl_status mvl_op_attention(const float *q, int64_t ldq, int64_t n, const float *k, const float *v,
                            int64_t ldkv, int64_t t, int heads, int kv_heads, int d, float scale,
                            bool causal, bool bf16, float *out, mvl_error *err) {
    size_t bytes;
    if (!mvl_mul_ok((size_t)ATT_QBLOCK * sizeof(float), (size_t)t, &bytes))
        return mvl_fail(err, MVL_ERR_LIMIT, "attention over %lld keys is too long", (long long)t);
    float *sc = mvl_malloc(bytes ? bytes : 1, err);
    if (!sc) return MVL_ERR_NOMEM;
    int group = heads / kv_heads;
    int64_t ldo = (int64_t)heads * d;
    for (int h = 0; h < heads; h++) {
        const float *qh = q + (int64_t)h * d, *kh = k + (int64_t)(h / group) * d, *vh = v + (int64_t)(h / group) * d;
        for (int64_t i0 = 0; i0 < n; i0 += ATT_QBLOCK) {
            int64_t m = n - i0 < ATT_QBLOCK ? n - i0 : ATT_QBLOCK;
            /* keys visible to the last query of the tile */
            int64_t tk = causal ? t - n + i0 + m : t;
            /* bf16: the scores are a bf16 GEMM, scaled after it (eager attention) */
            mvl_op_gemm(false, true, m, tk, d, bf16 ? 1.0f : scale, qh + i0 * ldq, ldq, kh, ldkv, 0.0f, sc, tk);
            for (int64_t i = 0; i < m; i++) {
                float *row = sc + i * tk;
                int64_t vis = causal ? t - n + i0 + i + 1 : tk;
                if (bf16)
                    for (int64_t j = 0; j < vis; j++) row[j] = mvl_bf16_round(mvl_bf16_round(row[j]) * scale);
                float mx = row[0];
                for (int64_t j = 1; j < vis; j++) mx = fmaxf(mx, row[j]);
                double sum = 0;
                for (int64_t j = 0; j < vis; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = (float)(1.0 / sum);
                for (int64_t j = 0; j < vis; j++) row[j] *= inv;
                if (bf16) mvl_op_round_bf16(row, vis); /* fp32 softmax, then .to(bf16) */
                for (int64_t j = vis; j < tk; j++) row[j] = 0.0f;
            }
            float *o = out + i0 * ldo + (int64_t)h * d;
            mvl_op_gemm(false, false, m, d, tk, 1.0f, sc, tk, vh, ldkv, 0.0f, o, ldo);
            if (bf16) round_rows(o, m, d, ldo);
        }
    }
    free(sc);
    return MVL_OK;
}

/* One head, one block of m tokens (decoder.md §4.4):
 *   O[c]  = lambda^(c+1) q_c S_prev + sum_{j<=c} lambda^(c-j) (q_c.k_j) v_j
 *   S_new = lambda^m S_prev + sum_j lambda^(m-1-j) k_j^T v_j
 * This is the HF form; it equals the recurrence (§8.1 explains why the vLLM
 * form with lambda^c does not). bf16: the remote code's roundings (§4.4). */
static void lightning_block(const float *q, const float *k, const float *v, int64_t ld, int64_t m, int d,
                            const float *pw, bool bf16, float *S, float *o, int64_t ldo, float *att, float *kd,
                            float *upd) {
    /* pw[i] = lambda^i for i = 0..m */
    /* inter-block term first, then scale rows by lambda^(c+1) */
    mvl_op_gemm(false, false, m, d, d, 1.0f, q, ld, S, d, 0.0f, o, ldo);
    for (int64_t c = 0; c < m; c++)
        for (int j = 0; j < d; j++) o[c * ldo + j] *= pw[c + 1];
    /* intra-block: (Q K^T) masked by the decay, times V */
    mvl_op_gemm(false, true, m, m, d, 1.0f, q, ld, k, ld, 0.0f, att, m);
    mvl_op_round_if(bf16, att, m * m); /* a bf16 GEMM; decay and v product in fp32 */
    for (int64_t c = 0; c < m; c++)
        for (int64_t j = 0; j < m; j++) att[c * m + j] = j <= c ? att[c * m + j] * pw[c - j] : 0.0f;
    mvl_op_gemm(false, false, m, d, m, 1.0f, att, m, v, ld, 1.0f, o, ldo);
    if (bf16) round_rows(o, m, d, ldo); /* written into a bf16 output */
    /* state: decay it, then add the decayed keys times the values */
    for (int64_t i = 0; i < (int64_t)d * d; i++) S[i] *= pw[m];
    for (int64_t j = 0; j < m; j++)
        for (int i = 0; i < d; i++) kd[j * d + i] = k[j * ld + i] * pw[m - 1 - j];
    if (!bf16) {
        mvl_op_gemm(true, false, d, d, m, 1.0f, kd, d, v, ld, 1.0f, S, d);
        return;
    }
    /* bf16 (k * k_decay), a bf16 GEMM with v, its rounded result added to the fp32 state */
    mvl_op_round_bf16(kd, m * d);
    mvl_op_gemm(true, false, d, d, m, 1.0f, kd, d, v, ld, 0.0f, upd, d);
    for (int64_t i = 0; i < (int64_t)d * d; i++) S[i] += mvl_bf16_round(upd[i]);
}

mvl_status mvl_op_lightning(const float *qkv, int64_t n, int heads, int d, const float *slopes,
                            int block, bool bf16, float *state, float *out, mvl_error *err) {
    int64_t mb = n < block ? n : block;
    float *att = mvl_malloc((size_t)(mb * mb + mb * d + (int64_t)d * d + mb + 1) * sizeof(float), err);
    if (!att) return MVL_ERR_NOMEM;
    float *kd = att + mb * mb, *upd = kd + mb * d, *pw = upd + (int64_t)d * d;
    int64_t ld = (int64_t)heads * 3 * d, ldo = (int64_t)heads * d;
    for (int h = 0; h < heads; h++) {
        float *S = state + (int64_t)h * d * d;
        for (int64_t i = 0; i <= mb; i++) pw[i] = (float)exp(-(double)slopes[h] * (double)i);
        for (int64_t b0 = 0; b0 < n; b0 += block) {
            int64_t m = n - b0 < block ? n - b0 : block;
            const float *q = qkv + b0 * ld + (int64_t)h * 3 * d;
            lightning_block(q, q + d, q + 2 * d, ld, m, d, pw, bf16, S, out + b0 * ldo + (int64_t)h * d, ldo, att, kd,
                            upd);
        }
    }
    free(att);
    return MVL_OK;
}
