/*
 * cpu_attention_cq.c - decode attention when keys and/or values are CQ
 * blocks (the other side may be uniform or raw fp16).  CQ keys are scored
 * by per-query tables lut[j][k] = q_j . centroid_{j,k}; CQ values add each
 * token's weight to a histogram per (group, centroid), multiplied by the
 * codebook once per head.  Outliers and the low-rank part enter as
 * corrections.  A histogram cannot be rescaled cheaply by an online
 * softmax, so this path runs in passes: (1) all scores, parallel over
 * (head, chunk); (2) the exact max and sum per query row; (3) weighted
 * values per (head, chunk); (4) merge per head.  With AVX-512 and 8-bit
 * codes, passes 1 and 3 rebuild each token from its centroids instead
 * (cpu_avx512_cq.c): no tables, no histograms.
 */
#include <omp.h>
#include "cpu_attn.h"

/* Whether the AVX-512 kernels of cpu_avx512_cq.c take this CQ side. */
#ifdef GEAR_CPU_AVX512
#define CQ8_FAST(L) ((L)->cq_dim && gear_cpu_have_avx512 && gear_cpu_cq8_fits(L))
#else
#define CQ8_FAST(L) 0
#endif

typedef struct cq_plan {
    const gear_attention_args *a;
    unsigned n, d, rows, H, per, chunks; /* chunks of blocks per head; +1 item: the buffer */
    int fast_k, fast_v;  /* CQ keys / values through cpu_avx512_cq.c */
    size_t T;
    float *S;        /* [h][row][T] scores, then weights e^(s - max) */
    float *lut;      /* CQ keys: [h][row][j][k] */
    float *hist;     /* CQ values: [h][chunk][row][j][k] */
    float *acc;      /* [h][item] slots of acc_slot floats: [row][d] */
    float *l;        /* [h][row] softmax sums */
    size_t lut_row, hist_row; /* tables per query row: cq_groups * K */
    size_t acc_slot; /* rows * d floats in whole pages: neighbouring slots go to
                      * different threads (cpu_workspace.h) */
} cq_plan;

/* Outliers of a CQ block as (token ot, channel oc, ov = exact value minus
 * the centroid value the codes already contributed). */
CPU_INLINE void cq_outlier_deltas(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                  blockf *f)
{
    unsigned d = L->d, c = L->cq_dim, K = 1u << L->bits;
    uint64_t md = cpu_div_magic(d);
    for (unsigned o = 0; o < L->n_outliers; o++) {
        unsigned fl = cpu_u16(blk + L->off_oidx + 2 * o), t = cpu_div(fl, md), ch = fl - t * d;
        unsigned j = ch / c, code = cpu_code_get(blk + L->off_codes + (size_t)t * L->cq_row_bytes, L->bits, j);
        f->ot[o] = t;
        f->oc[o] = ch;
        f->ov[o] = half_at(blk + L->off_oval, o) - cb[((size_t)j * K + code) * c + ch % c];
    }
}

/* lut[row][j][k] = q_row,j . centroid_{j,k} for one head. */
CPU_INLINE void cq_tables(const gear_block_layout *L, const float *cb, const float *q, unsigned rows,
                          float *lut)
{
    unsigned c = L->cq_dim, K = 1u << L->bits, G = L->cq_groups, d = L->d;
    for (unsigned i = 0; i < rows; i++)
        for (unsigned j = 0; j < G; j++) {
            const float *qj = q + (size_t)i * d + (size_t)j * c;
            float *lj = lut + ((size_t)i * G + j) * K;
            for (unsigned k = 0; k < K; k++) {
                const float *ck = cb + ((size_t)j * K + k) * c;
                float s = 0.0f;
                for (unsigned x = 0; x < c; x++) s += qj[x] * ck[x];
                lj[k] = s;
            }
        }
}

/* codes[j] = the entry of token t's centroid of group j in a [group][K]
 * table (j * K + code). */
CPU_INLINE void cq_table_index(const gear_block_layout *L, const uint8_t *blk, unsigned t, unsigned *codes)
{
    const uint8_t *row = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
    for (unsigned j = 0; j < L->cq_groups; j++) codes[j] = (j << L->bits) + cpu_code_get(row, L->bits, j);
}

/* s[i][t] = q_i . k_t for one CQ key block. */
CPU_INLINE void cq_key_scores(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                              const float *q, const float *lut, unsigned rows, float *s,
                              unsigned *codes, blockf *f)
{
    unsigned n = L->n, d = L->d, G = L->cq_groups, K = 1u << L->bits;
#ifdef GEAR_CPU_AVX512
    if (!lut) /* the plan's fast_k */
        gear_cpu_cq8_scores_avx512(L, blk, cb, q, rows, s);
    else
#endif
        for (unsigned t = 0; t < n; t++) {
            cq_table_index(L, blk, t, codes);
            for (unsigned i = 0; i < rows; i++) {
                const float *li = lut + (size_t)i * G * K;
                float sum = 0.0f;
                for (unsigned j = 0; j < G; j++) sum += li[codes[j]];
                s[(size_t)i * n + t] = sum;
            }
        }
    if (L->n_outliers) {
        cq_outlier_deltas(L, blk, cb, f);
        for (unsigned i = 0; i < rows; i++)
            for (unsigned o = 0; o < L->n_outliers; o++)
                s[(size_t)i * n + f->ot[o]] += q[(size_t)i * d + f->oc[o]] * f->ov[o];
    }
    if (L->rank) lowrank_scores(L, blk, q, rows, s, f);
}

/* hist[i][j][code_tj] += p[i][t] (hist NULL: o[i] += p[i][t] v_t through
 * cpu_avx512_cq.c); corrections into o. */
CPU_INLINE void cq_value_accumulate(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                    const float *p, unsigned rows, float *hist, float *o,
                                    unsigned *codes, blockf *f)
{
    unsigned n = L->n, d = L->d, G = L->cq_groups, K = 1u << L->bits;
#ifdef GEAR_CPU_AVX512
    if (!hist) /* the plan's fast_v */
        gear_cpu_cq8_values_avx512(L, blk, cb, p, rows, o);
    else
#endif
        for (unsigned t = 0; t < n; t++) {
            cq_table_index(L, blk, t, codes);
            for (unsigned i = 0; i < rows; i++) {
                float w = p[(size_t)i * n + t];
                float *hi = hist + (size_t)i * G * K;
                if (w != 0.0f)
                    for (unsigned j = 0; j < G; j++) hi[codes[j]] += w;
            }
        }
    if (L->n_outliers) {
        cq_outlier_deltas(L, blk, cb, f);
        for (unsigned i = 0; i < rows; i++)
            for (unsigned x = 0; x < L->n_outliers; x++)
                o[(size_t)i * d + f->oc[x]] += p[(size_t)i * n + f->ot[x]] * f->ov[x];
    }
    if (L->rank) lowrank_values(L, blk, p, rows, o, f);
}

/* The item's next block (prefetch_lines). */
CPU_INLINE void prefetch_next(const uint8_t *const *blocks, size_t i, unsigned b, unsigned b1, size_t bytes)
{
    if (b + 1 < b1) prefetch_lines(blocks[i + 1], bytes);
}

/* Pass 1, item (h, c): scores of its blocks (or the buffer) into S. */
GEAR_CLONES
static void cq_score_item(const cq_plan *P, unsigned h, unsigned c, attn_scratch *w, unsigned *codes)
{
    const gear_attention_args *a = P->a;
    const gear_block_layout *lk = a->lk;
    unsigned n = P->n, d = P->d, rows = P->rows;
    const float *q = a->q + (size_t)h * rows * d;
    float *S = P->S + (size_t)h * rows * P->T, *s = w->s;
    size_t pos0 = (size_t)a->n_blocks * n;
    unsigned b0 = c * P->per, b1 = b0 + P->per < a->n_blocks ? b0 + P->per : a->n_blocks, len = n;
    if (c == P->chunks) b0 = 0, b1 = 1, len = a->n_buf; /* the buffer: one pseudo-block */
    for (unsigned b = b0; b < b1; b++) {
        if (c == P->chunks) {
            raw_scores(a->kbuf + h * a->buf_stride, len, d, q, rows, s);
        } else {
            const uint8_t *blk = a->kblocks[(size_t)h * a->n_blocks + b];
            prefetch_next(a->kblocks, (size_t)h * a->n_blocks + b, b, b1, lk->bytes);
            pos0 = (size_t)b * n;
            if (lk->cq_dim)
                cq_key_scores(lk, blk, lk->codebook + h * lk->cb_head_floats, q,
                              P->fast_k ? NULL : P->lut + (size_t)h * rows * P->lut_row, rows, s, codes, &w->f);
            else
                key_scores(lk, blk, q, rows, s, w->tmp, &w->f);
        }
        scale_mask(a, rows, len, pos0, P->T, s);
        for (unsigned i = 0; i < rows; i++)
            memcpy(S + (size_t)i * P->T + pos0, s + (size_t)i * len, sizeof(float) * len);
    }
}

/* Pass 3, item (h, c): weighted values of its blocks (or the buffer). */
GEAR_CLONES
static void cq_value_item(const cq_plan *P, unsigned h, unsigned c, attn_scratch *w, unsigned *codes)
{
    const gear_attention_args *a = P->a;
    const gear_block_layout *lv = a->lv;
    unsigned n = P->n, d = P->d, rows = P->rows, items = P->chunks + 1;
    const float *S = P->S + (size_t)h * rows * P->T;
    float *o = P->acc + ((size_t)h * items + c) * P->acc_slot, *p = w->s;
    memset(o, 0, sizeof(float) * rows * d);
    if (c == P->chunks) {
        const float *vb = a->vbuf + h * a->buf_stride;
        size_t pos0 = (size_t)a->n_blocks * n;
        for (unsigned t = 0; t < a->n_buf; t++)
            for (unsigned i = 0; i < rows; i++)
                axpy(o + (size_t)i * d, S[(size_t)i * P->T + pos0 + t], vb + (size_t)t * d, d);
        return;
    }
    float *hist = lv->cq_dim && !P->fast_v ? P->hist + ((size_t)h * P->chunks + c) * rows * P->hist_row : NULL;
    if (hist) memset(hist, 0, sizeof(float) * rows * P->hist_row);
    unsigned b1 = (c + 1) * P->per < a->n_blocks ? (c + 1) * P->per : a->n_blocks;
    for (unsigned b = c * P->per; b < b1; b++) {
        const uint8_t *blk = a->vblocks[(size_t)h * a->n_blocks + b];
        prefetch_next(a->vblocks, (size_t)h * a->n_blocks + b, b, b1, lv->bytes);
        for (unsigned i = 0; i < rows; i++)
            memcpy(p + (size_t)i * n, S + (size_t)i * P->T + (size_t)b * n, sizeof(float) * n);
        if (lv->cq_dim)
            cq_value_accumulate(lv, blk, lv->codebook + h * lv->cb_head_floats, p, rows, hist, o, codes,
                                &w->f);
        else
            value_accumulate(lv, blk, p, rows, o, w->tmp, &w->f);
    }
}

/* Pass 4, head h: out = (sum of item outputs + histograms x codebook) / l. */
GEAR_CLONES
static void cq_merge_head(const cq_plan *P, unsigned h)
{
    const gear_attention_args *a = P->a;
    const gear_block_layout *lv = a->lv;
    unsigned d = P->d, rows = P->rows, items = P->chunks + 1;
    for (unsigned i = 0; i < rows; i++) {
        float *out = a->out + ((size_t)h * rows + i) * d;
        memset(out, 0, sizeof(float) * d);
        for (unsigned c = 0; c < items; c++) {
            if (c == P->chunks && !a->n_buf) continue;
            const float *oc = P->acc + ((size_t)h * items + c) * P->acc_slot + (size_t)i * d;
            for (unsigned x = 0; x < d; x++) out[x] += oc[x];
        }
        if (lv->cq_dim && !P->fast_v && P->chunks) {
            unsigned cd = lv->cq_dim, K = 1u << lv->bits, G = lv->cq_groups;
            const float *cb = lv->codebook + h * lv->cb_head_floats;
            float *h0 = P->hist + ((size_t)h * P->chunks * rows + i) * P->hist_row;
            for (unsigned c = 1; c < P->chunks; c++) { /* sum the chunks' histograms into chunk 0's */
                const float *hc = P->hist + (((size_t)h * P->chunks + c) * rows + i) * P->hist_row;
                for (size_t x = 0; x < P->hist_row; x++) h0[x] += hc[x];
            }
            for (unsigned j = 0; j < G; j++)
                for (unsigned k = 0; k < K; k++) {
                    float wk = h0[(size_t)j * K + k];
                    if (wk != 0.0f) axpy(out + (size_t)j * cd, wk, cb + ((size_t)j * K + k) * cd, cd);
                }
        }
        float inv = 1.0f / P->l[(size_t)h * rows + i];
        for (unsigned x = 0; x < d; x++) out[x] *= inv;
    }
}

/* Pass 2, query row r of head h: max, weights e^(s - max), their sum (in
 * double: a row spans the whole context; 16 float lanes over at most 1024
 * weights at a time, so that the loop vectorizes: gear_exp_neg is FMAs,
 * calls into libm in a function built without FMA). */
GEAR_CLONES
static void cq_softmax_row(const cq_plan *P, unsigned hr)
{
    float *s = P->S + (size_t)hr * P->T, mx = row_max(s, (unsigned)P->T, -INFINITY);
    double sum = 0.0;
    size_t t = 0;
    while (t + 16 <= P->T) {
        float lane[16] = {0};
        for (size_t end = t + 1024 < P->T ? t + 1024 : P->T; t + 16 <= end; t += 16)
            for (unsigned j = 0; j < 16; j++) {
                s[t + j] = gear_exp_neg(s[t + j] - mx);
                lane[j] += s[t + j];
            }
        for (unsigned j = 0; j < 16; j++) sum += lane[j];
    }
    for (; t < P->T; t++) {
        s[t] = gear_exp_neg(s[t] - mx);
        sum += s[t];
    }
    P->l[hr] = (float)sum;
}

gear_status gear_cpu_attention_cq(void *state, const gear_attention_args *a)
{
    cpu_state *st = state;
    const gear_block_layout *lk = a->lk, *lv = a->lv;
    if ((lk->cq_dim && !lk->codebook) || (lv->cq_dim && !lv->codebook)) return GEAR_ERR_INVALID_ARG;
    cq_plan P = {a, lk->n, lk->d, a->n_group * a->n_qtok, a->n_head, 0, 0, CQ8_FAST(lk), CQ8_FAST(lv), 0,
                 NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
    P.T = (size_t)a->n_blocks * P.n + a->n_buf;
    P.acc_slot = gear_cpu_page_round(sizeof(float) * P.rows * P.d) / sizeof(float);
    int threads = st->n_threads;
    if (a->n_blocks) { /* about two items per thread in all, over every head */
        unsigned want = (2u * (unsigned)threads + P.H - 1) / P.H;
        P.per = (a->n_blocks + want - 1) / want;
        P.chunks = (a->n_blocks + P.per - 1) / P.per;
    }
    unsigned items = P.chunks + 1, rows = P.rows, H = P.H;
    P.lut_row = lk->cq_dim && !P.fast_k ? (size_t)lk->cq_groups << lk->bits : 0;
    P.hist_row = lv->cq_dim && !P.fast_v ? (size_t)lv->cq_groups << lv->bits : 0;
    size_t G = lk->cq_groups > lv->cq_groups ? lk->cq_groups : lv->cq_groups;
    cpu_ws *ws = gear_cpu_ws_get(st, (unsigned)threads);
    /* acc first: the buffer starts on a page, and so its slots */
    size_t sz[5] = {sizeof(float) * H * items * P.acc_slot, sizeof(float) * H * rows * (P.T ? P.T : 1),
                    sizeof(float) * (H * rows * P.lut_row + 1),
                    sizeof(float) * ((size_t)H * P.chunks * rows * P.hist_row + 1), sizeof(float) * H * rows};
    void *p[5];
    int failed = !ws || !gear_cpu_carve(&ws->shared[0], 5, sz, p);
    if (!failed) P.acc = p[0], P.S = p[1], P.lut = p[2], P.hist = p[3], P.l = p[4];
    unsigned nwork = H * items;
    const int have_ws = !failed; /* read before the team starts: threads set failed */
#pragma omp parallel num_threads(threads) if (have_ws)
    {
        attn_scratch w;
        unsigned *codes = NULL;
        size_t smax = (size_t)rows * (P.n > a->n_buf ? P.n : a->n_buf);
        if (have_ws) {
            cpu_thread_ws *tw = &ws->thr[omp_get_thread_num()];
            codes = gear_cpu_buf(&tw->b[1], sizeof(unsigned) * (G + 1));
            if (!attn_scratch_alloc(&w, &tw->b[0], P.n, P.d, rows, smax) || !codes) {
#pragma omp atomic write
                failed = 1;
            }
        }
#pragma omp barrier
        if (!failed) {
            if (lk->cq_dim && !P.fast_k) {
#pragma omp for schedule(static)
                for (unsigned h = 0; h < H; h++)
                    cq_tables(lk, lk->codebook + h * lk->cb_head_floats, a->q + (size_t)h * rows * P.d, rows,
                              P.lut + (size_t)h * rows * P.lut_row);
            }
#pragma omp for schedule(dynamic, 1)
            for (unsigned x = 0; x < nwork; x++)
                if (x % items < P.chunks || a->n_buf) cq_score_item(&P, x / items, x % items, &w, codes);
#pragma omp for schedule(static)
            for (unsigned hr = 0; hr < H * rows; hr++) cq_softmax_row(&P, hr);
#pragma omp for schedule(dynamic, 1)
            for (unsigned x = 0; x < nwork; x++)
                if (x % items < P.chunks || a->n_buf) cq_value_item(&P, x / items, x % items, &w, codes);
#pragma omp for schedule(static)
            for (unsigned h = 0; h < H; h++) cq_merge_head(&P, h);
        }
    }
    gear_cpu_ws_put(st, ws);
    return failed ? GEAR_ERR_NO_MEMORY : GEAR_OK;
}
