/*
 * attention.c - the core's decode attention over a layer, used when a
 * backend has no fused attention slot.  It reconstructs one block at a time
 * (never the whole cache), accumulates in double, and uses a max-subtracted
 * softmax, so it doubles as the accuracy oracle for fused kernels.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* scores[row][t0 + j] for the n rows of K data x (n x d); q holds the
 * head's n_group*n_qtok query rows. */
static void score_rows(const gear_attention_args *a, const float *qh, const float *x, unsigned n,
                       size_t t0, size_t T, float *scores)
{
    unsigned d = a->lk->d, nrow = a->n_group * a->n_qtok;
    for (unsigned row = 0; row < nrow; row++) {
        const float *q = qh + (size_t)row * d;
        size_t limit = T - a->n_qtok + row % a->n_qtok; /* causal: last visible position */
        for (unsigned j = 0; j < n; j++) {
            double s = 0.0;
            for (unsigned c = 0; c < d; c++) s += (double)q[c] * x[(size_t)j * d + c];
            scores[(size_t)row * T + t0 + j] = t0 + j <= limit ? (float)(s * a->scale) : -INFINITY;
        }
    }
}

/* acc[row] += p[row][t0 + j] * v_j for the n rows of V data x. */
static void accumulate_rows(const gear_attention_args *a, const float *x, unsigned n, size_t t0,
                            size_t T, const float *p, double *acc)
{
    unsigned d = a->lv->d, nrow = a->n_group * a->n_qtok;
    for (unsigned row = 0; row < nrow; row++)
        for (unsigned j = 0; j < n; j++) {
            double w = p[(size_t)row * T + t0 + j];
            if (w == 0.0) continue;
            for (unsigned c = 0; c < d; c++) acc[(size_t)row * d + c] += w * x[(size_t)j * d + c];
        }
}

/* ---- Coupled Quantization blocks, read without decoding (the reference
 * for the LUT kernels): a key block's score is a sum of table lookups
 * lut[j][code] = q_j . centroid, and values accumulate the attention
 * weight of each centroid (hist) until the end of the head.  Outliers and
 * the low-rank part enter as corrections. */

typedef struct cq_scratch {
    uint8_t *blk;   /* host copy of a block (device backends) */
    float *cb;      /* host copy of the head's codebook (device backends) */
    double *lut;    /* [row][j][k] */
    double *hist;   /* [row][j][k] */
} cq_scratch;

/* Host view of n bytes of backend memory. */
static gear_status host_view(gear_context *ctx, const void *p, size_t n, void *stage,
                             const void **out)
{
    if (!ctx->be->on_device) {
        *out = p;
        return GEAR_OK;
    }
    *out = stage;
    return ctx->be->mem_copy(ctx->state, stage, p, n, GEAR_COPY_D2H);
}

static float half_at(const uint8_t *p, size_t i) { return gear_half_to_float(gear_get_u16(p + 2 * i)); }

/* Centroid value of entry (t, ch) of a CQ block. */
static float cq_value(const gear_block_layout *L, const uint8_t *blk, const float *cb, unsigned t,
                      unsigned ch)
{
    unsigned c = L->cq_dim, j = ch / c, K = 1u << L->bits;
    unsigned code = gear_code_get(blk + L->off_codes + (size_t)t * L->cq_row_bytes, L->bits, j);
    return cb[((size_t)j * K + code) * c + ch % c];
}

static void cq_lut(const gear_block_layout *L, const float *cb, const float *q, double *lut)
{
    unsigned c = L->cq_dim, K = 1u << L->bits;
    for (unsigned j = 0; j < L->cq_groups; j++)
        for (unsigned k = 0; k < K; k++) {
            const float *ck = cb + ((size_t)j * K + k) * c;
            double s = 0.0;
            for (unsigned i = 0; i < c; i++) s += (double)q[j * c + i] * ck[i];
            lut[(size_t)j * K + k] = s;
        }
}

static void cq_score_block(const gear_attention_args *a, const uint8_t *blk, const float *cb,
                           const float *qh, const double *lut, size_t t0, size_t T, float *scores)
{
    const gear_block_layout *L = a->lk;
    unsigned n = L->n, d = L->d, K = 1u << L->bits, nrow = a->n_group * a->n_qtok, r = L->rank;
    for (unsigned row = 0; row < nrow; row++) {
        const float *q = qh + (size_t)row * d;
        const double *lr = lut + (size_t)row * L->cq_groups * K;
        size_t limit = T - a->n_qtok + row % a->n_qtok;
        double qb[256];
        for (unsigned k = 0; k < r; k++) { /* q . B_k */
            qb[k] = 0.0;
            for (unsigned ch = 0; ch < d; ch++) qb[k] += (double)q[ch] * half_at(blk + L->off_b, (size_t)ch * r + k);
        }
        for (unsigned t = 0; t < n; t++) {
            const uint8_t *codes = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
            double s = 0.0;
            for (unsigned j = 0; j < L->cq_groups; j++) s += lr[(size_t)j * K + gear_code_get(codes, L->bits, j)];
            for (unsigned k = 0; k < r; k++) s += qb[k] * half_at(blk + L->off_a, (size_t)t * r + k);
            scores[(size_t)row * T + t0 + t] = (float)s;
        }
        for (size_t o = 0; o < L->n_outliers; o++) {
            unsigned f = gear_get_u16(blk + L->off_oidx + 2 * o), t = f / d, ch = f % d;
            scores[(size_t)row * T + t0 + t] +=
                (float)((double)q[ch] * (half_at(blk + L->off_oval, o) - cq_value(L, blk, cb, t, ch)));
        }
        for (unsigned t = 0; t < n; t++) {
            float *sc = &scores[(size_t)row * T + t0 + t];
            *sc = t0 + t <= limit ? (float)(*sc * a->scale) : -INFINITY;
        }
    }
}

static void cq_accumulate_block(const gear_attention_args *a, const uint8_t *blk, const float *cb,
                                size_t t0, size_t T, const float *p, double *hist, double *acc)
{
    const gear_block_layout *L = a->lv;
    unsigned n = L->n, d = L->d, K = 1u << L->bits, nrow = a->n_group * a->n_qtok, r = L->rank;
    for (unsigned row = 0; row < nrow; row++) {
        const float *pr = p + (size_t)row * T + t0;
        double *hr = hist + (size_t)row * L->cq_groups * K, *ar = acc + (size_t)row * d;
        double pa[256];
        for (unsigned k = 0; k < r; k++) pa[k] = 0.0;
        for (unsigned t = 0; t < n; t++) {
            if (pr[t] == 0.0f) continue;
            const uint8_t *codes = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
            for (unsigned j = 0; j < L->cq_groups; j++) hr[(size_t)j * K + gear_code_get(codes, L->bits, j)] += pr[t];
            for (unsigned k = 0; k < r; k++) pa[k] += (double)pr[t] * half_at(blk + L->off_a, (size_t)t * r + k);
        }
        for (unsigned ch = 0; ch < d && r; ch++)
            for (unsigned k = 0; k < r; k++) ar[ch] += pa[k] * half_at(blk + L->off_b, (size_t)ch * r + k);
        for (size_t o = 0; o < L->n_outliers; o++) {
            unsigned f = gear_get_u16(blk + L->off_oidx + 2 * o), t = f / d, ch = f % d;
            ar[ch] += (double)pr[t] * (half_at(blk + L->off_oval, o) - cq_value(L, blk, cb, t, ch));
        }
    }
}

/* acc += sum_k hist[j][k] * centroid[j][k], every row. */
static void cq_accumulate_hist(const gear_attention_args *a, const float *cb, const double *hist,
                               double *acc)
{
    const gear_block_layout *L = a->lv;
    unsigned c = L->cq_dim, K = 1u << L->bits, nrow = a->n_group * a->n_qtok;
    for (unsigned row = 0; row < nrow; row++)
        for (unsigned j = 0; j < L->cq_groups; j++)
            for (unsigned k = 0; k < K; k++) {
                double w = hist[((size_t)row * L->cq_groups + j) * K + k];
                if (w == 0.0) continue;
                const float *ck = cb + ((size_t)j * K + k) * c;
                for (unsigned i = 0; i < c; i++) acc[(size_t)row * L->d + j * c + i] += w * ck[i];
            }
}

/* One KV head: scores for every position, softmax, weighted values. */
static gear_status attend_head(gear_context *ctx, const gear_attention_args *a, unsigned h,
                               float *scores, float *x, double *acc, cq_scratch *cq)
{
    unsigned n = a->lk->n, d = a->lk->d, nrow = a->n_group * a->n_qtok;
    size_t T = (size_t)a->n_blocks * n + a->n_buf, qoff = (size_t)h * nrow * d;
    const float *qh = a->q + qoff;
    const float *kcb = NULL, *vcb = NULL;
    gear_status st = GEAR_OK;
    if (a->lk->cq_dim) {
        size_t nf = a->lk->cb_head_floats, per = (size_t)a->lk->cq_groups << a->lk->bits;
        st = host_view(ctx, a->lk->codebook + h * nf, nf * sizeof(float), cq->cb, (const void **)&kcb);
        for (unsigned row = 0; row < nrow && !st; row++)
            cq_lut(a->lk, kcb, qh + (size_t)row * d, cq->lut + row * per);
    }
    for (unsigned b = 0; b < a->n_blocks && !st; b++) {
        const uint8_t *blk = a->kblocks[(size_t)h * a->n_blocks + b];
        if (a->lk->cq_dim) {
            const void *hb;
            st = host_view(ctx, blk, a->lk->bytes, cq->blk, &hb);
            if (!st) cq_score_block(a, hb, kcb, qh, cq->lut, (size_t)b * n, T, scores);
            continue;
        }
        st = gear_pipeline_reconstruct(ctx, a->lk, blk, x);
        if (!st) score_rows(a, qh, x, n, (size_t)b * n, T, scores);
    }
    if (st) return st;
    if (a->n_buf)
        score_rows(a, qh, a->kbuf + h * a->buf_stride, a->n_buf, (size_t)a->n_blocks * n, T, scores);
    for (unsigned row = 0; row < nrow; row++) { /* softmax, max-subtracted */
        float *s = scores + (size_t)row * T, mx = -INFINITY;
        for (size_t t = 0; t < T; t++) mx = s[t] > mx ? s[t] : mx;
        double sum = 0.0;
        for (size_t t = 0; t < T; t++) sum += exp((double)s[t] - mx);
        for (size_t t = 0; t < T; t++) s[t] = (float)(exp((double)s[t] - mx) / sum);
    }
    memset(acc, 0, sizeof(double) * nrow * d);
    if (a->lv->cq_dim) {
        size_t nf = a->lv->cb_head_floats;
        memset(cq->hist, 0, sizeof(double) * nrow * ((size_t)a->lv->cq_groups << a->lv->bits));
        /* the K codebook's copy is no longer needed: reuse its staging */
        st = host_view(ctx, a->lv->codebook + h * nf, nf * sizeof(float), cq->cb, (const void **)&vcb);
    }
    for (unsigned b = 0; b < a->n_blocks && !st; b++) {
        const uint8_t *blk = a->vblocks[(size_t)h * a->n_blocks + b];
        if (a->lv->cq_dim) {
            const void *hb;
            st = host_view(ctx, blk, a->lv->bytes, cq->blk, &hb);
            if (!st) cq_accumulate_block(a, hb, vcb, (size_t)b * n, T, scores, cq->hist, acc);
            continue;
        }
        st = gear_pipeline_reconstruct(ctx, a->lv, blk, x);
        if (!st) accumulate_rows(a, x, n, (size_t)b * n, T, scores, acc);
    }
    if (st) return st;
    if (a->lv->cq_dim) cq_accumulate_hist(a, vcb, cq->hist, acc);
    if (a->n_buf)
        accumulate_rows(a, a->vbuf + h * a->buf_stride, a->n_buf, (size_t)a->n_blocks * n, T,
                        scores, acc);
    for (size_t i = 0; i < (size_t)nrow * d; i++) a->out[qoff + i] = (float)acc[i];
    return GEAR_OK;
}

gear_status gear_attention_layer(gear_context *ctx, const gear_attention_args *a)
{
    unsigned n = a->lk->n, d = a->lk->d, nrow = a->n_group * a->n_qtok;
    size_t T = (size_t)a->n_blocks * n + a->n_buf;
    if (a->n_qtok == 0 || a->n_qtok > T)
        return gear_fail(GEAR_ERR_SHAPE, "%u query tokens but %zu cached", a->n_qtok, T);
    size_t ns;
    if (!gear_mul_ok(T, nrow, &ns) || ns > SIZE_MAX / sizeof(float))
        return gear_fail(GEAR_ERR_OVERFLOW, "attention scores overflow");
    float *scores = malloc(ns * sizeof(float)), *x = malloc(sizeof(float) * n * d);
    double *acc = malloc(sizeof(double) * nrow * d);
    /* CQ scratch: tables per query row, block and codebook staging */
    cq_scratch cq = {NULL, NULL, NULL, NULL};
    gear_status st = GEAR_OK;
    const gear_block_layout *ls[2] = {a->lk, a->lv};
    size_t cbf = 0, blkb = 0, tab = 0;
    for (int kv = 0; kv < 2; kv++) {
        if (!ls[kv]->cq_dim) continue;
        if (!ls[kv]->codebook) st = gear_fail(GEAR_ERR_INVALID_ARG, "CQ attention without a codebook");
        cbf = ls[kv]->cb_head_floats > cbf ? ls[kv]->cb_head_floats : cbf;
        blkb = ls[kv]->bytes > blkb ? ls[kv]->bytes : blkb;
        size_t t = (size_t)nrow * ((size_t)ls[kv]->cq_groups << ls[kv]->bits);
        tab = t > tab ? t : tab;
    }
    if (tab) {
        cq.lut = malloc(sizeof(double) * tab);
        cq.hist = malloc(sizeof(double) * tab);
        cq.cb = malloc(sizeof(float) * cbf);
        cq.blk = malloc(blkb);
        if (!cq.lut || !cq.hist || !cq.cb || !cq.blk) st = gear_fail(GEAR_ERR_NO_MEMORY, "CQ scratch");
    }
    if (!scores || !x || !acc) st = gear_fail(GEAR_ERR_NO_MEMORY, "attention scratch");
    for (unsigned h = 0; h < a->n_head && !st; h++) st = attend_head(ctx, a, h, scores, x, acc, &cq);
    free(scores);
    free(x);
    free(acc);
    free(cq.lut);
    free(cq.hist);
    free(cq.cb);
    free(cq.blk);
    return st;
}
