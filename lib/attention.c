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

/* One KV head: scores for every position, softmax, weighted values. */
static gear_status attend_head(gear_context *ctx, const gear_attention_args *a, unsigned h,
                               float *scores, float *x, double *acc)
{
    unsigned n = a->lk->n, d = a->lk->d, nrow = a->n_group * a->n_qtok;
    size_t T = (size_t)a->n_blocks * n + a->n_buf, qoff = (size_t)h * nrow * d;
    const float *qh = a->q + qoff;
    gear_status st = GEAR_OK;
    for (unsigned b = 0; b < a->n_blocks && !st; b++) {
        st = gear_pipeline_reconstruct(ctx, a->lk, a->kblocks[(size_t)h * a->n_blocks + b], x);
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
    for (unsigned b = 0; b < a->n_blocks && !st; b++) {
        st = gear_pipeline_reconstruct(ctx, a->lv, a->vblocks[(size_t)h * a->n_blocks + b], x);
        if (!st) accumulate_rows(a, x, n, (size_t)b * n, T, scores, acc);
    }
    if (st) return st;
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
    gear_status st = GEAR_OK;
    if (!scores || !x || !acc) st = gear_fail(GEAR_ERR_NO_MEMORY, "attention scratch");
    for (unsigned h = 0; h < a->n_head && !st; h++) st = attend_head(ctx, a, h, scores, x, acc);
    free(scores);
    free(x);
    free(acc);
    return st;
}
