/*
 * cpu_avx512_attn.c - AVX-512 decode attention over 2-bit blocks with
 * groups of 64 (kivi2, and gear2's outliers and rank-2 factors), one
 * (block, KV head) at a time for every query row.  Compiled with AVX-512
 * flags, called only after the run-time CPU check (cpu_attention.c).
 *
 * Codes are expanded 64 at a time from 16 bytes: vpmovzxbd puts byte i in
 * lane i and two table permutes per nibble pick its 2-bit fields, so vector
 * j holds code 4i+j in lane i ("permuted" order).  Key scores are put back
 * in token order once per row (8 permutes); value sums stay permuted in the
 * output rows until gear_cpu_values_unpermute.  Outlier and low-rank terms
 * of values go to a second, natural-order accumulator (onat).
 */
#include <immintrin.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define NB 64       /* tokens per block */
#define MAXD 256    /* largest head dim taken (gear_cpu_attn2_fits) */
#define QUAD 4      /* query rows per pass: 16 accumulators */

int gear_cpu_attn2_fits(const gear_block_layout *lk, const gear_block_layout *lv)
{
    unsigned d = lk->d;
    if ((d != 64 && d != 128 && d != MAXD) || lv->d != d || lk->n != NB || lv->n != NB) return 0;
    const gear_block_layout *L[2] = {lk, lv};
    for (int i = 0; i < 2; i++) {
        const gear_block_layout *x = L[i];
        if (x->bits != 2 || x->cq_dim || x->group != 64 || x->row_bytes != x->row_len / 4) return 0;
        if (x->rank != 0 && x->rank != 2) return 0;
        /* outliers: none, or one max and one min per group, group by group */
        if (x->n_outliers && (x->k_full != 1 || x->outliers_per_row != 2 * x->groups_per_row)) return 0;
    }
    return 1;
}

/* e^x for x <= 0: gear_exp_neg (include/gear/backend.h), 16 lanes, the
 * same operations in the same order. */
INLINE __m512 exp_neg16(__m512 x)
{
    __m512 xc = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(k, _mm512_set1_ps(-0.693145752f), xc);
    r = _mm512_fmadd_ps(k, _mm512_set1_ps(-1.42860677e-6f), r);
    __m512 p = _mm512_set1_ps(1.38888889e-3f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.33333333e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.16666667e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.66666667e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127)), 23);
    p = _mm512_mul_ps(p, _mm512_castsi512_ps(e));
    __mmask16 under = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, p);
}

/* 64 2-bit codes (16 bytes) as floats in permuted order: v[j] lane i =
 * code 4i+j.  vpermps reads the low 4 bits of each index: tables map a
 * nibble to its low and its high field. */
INLINE void decode64(const uint8_t *p, __m512 v[4])
{
    const __m512 lo = _mm512_setr_ps(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const __m512 hi = _mm512_setr_ps(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512i x = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    __m512i x4 = _mm512_srli_epi32(x, 4);
    v[0] = _mm512_permutexvar_ps(x, lo);
    v[1] = _mm512_permutexvar_ps(x, hi);
    v[2] = _mm512_permutexvar_ps(x4, lo);
    v[3] = _mm512_permutexvar_ps(x4, hi);
}

/* Permuted order back to natural: v[j] lane i -> out[4i+j]. */
INLINE void unpermute64(const __m512 v[4], float *out)
{
    const __m512i i1 = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i i2 = _mm512_setr_epi32(0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23);
    const __m512i k8 = _mm512_set1_epi32(8);
    __m512 p0 = _mm512_permutex2var_ps(v[0], i1, v[1]), p1 = _mm512_permutex2var_ps(v[0], _mm512_add_epi32(i1, k8), v[1]);
    __m512 q0 = _mm512_permutex2var_ps(v[2], i1, v[3]), q1 = _mm512_permutex2var_ps(v[2], _mm512_add_epi32(i1, k8), v[3]);
    _mm512_storeu_ps(out, _mm512_permutex2var_ps(p0, i2, q0));
    _mm512_storeu_ps(out + 16, _mm512_permutex2var_ps(p0, _mm512_add_epi32(i2, k8), q0));
    _mm512_storeu_ps(out + 32, _mm512_permutex2var_ps(p1, i2, q1));
    _mm512_storeu_ps(out + 48, _mm512_permutex2var_ps(p1, _mm512_add_epi32(i2, k8), q1));
}

/* in[4i+j] -> v[j] lane i (64 floats): the inverse of unpermute64. */
INLINE void permute64(const float *in, __m512 v[4])
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    __m512 z0 = _mm512_loadu_ps(in), z1 = _mm512_loadu_ps(in + 16);
    __m512 z2 = _mm512_loadu_ps(in + 32), z3 = _mm512_loadu_ps(in + 48);
    __m512 e0 = _mm512_permutex2var_ps(z0, ie, z1), o0 = _mm512_permutex2var_ps(z0, io, z1);
    __m512 e1 = _mm512_permutex2var_ps(z2, ie, z3), o1 = _mm512_permutex2var_ps(z2, io, z3);
    v[0] = _mm512_permutex2var_ps(e0, ie, e1);
    v[2] = _mm512_permutex2var_ps(e0, io, e1);
    v[1] = _mm512_permutex2var_ps(o0, ie, o1);
    v[3] = _mm512_permutex2var_ps(o0, io, o1);
}

/* Rows x[r][0..m) (r < R, the rest zero) interleaved: out[4i + r] = x[r][i]. */
INLINE void interleave4(const float *x, unsigned stride, unsigned R, unsigned m, float *out)
{
    for (unsigned i = 0; i < m; i += 16) {
        __m512 v[4];
        for (unsigned r = 0; r < 4; r++) v[r] = r < R ? _mm512_loadu_ps(x + (size_t)r * stride + i) : _mm512_setzero_ps();
        unpermute64(v, out + 4 * i);
    }
}

/* x[r][i] += c[4i + r] for r < R, i < m. */
INLINE void add_deinterleaved4(float *x, unsigned stride, unsigned R, unsigned m, const float *c)
{
    for (unsigned i = 0; i < m; i += 16) {
        __m512 v[4];
        permute64(c + 4 * i, v);
        for (unsigned r = 0; r < R; r++) {
            float *y = x + (size_t)r * stride + i;
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), v[r]));
        }
    }
}

/* n fp16 (n multiple of 16) to fp32. */
INLINE void halves16(const uint8_t *src, unsigned n, float *dst)
{
    for (unsigned i = 0; i < n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * i))));
}

/* m pairs (m multiple of 16) split into evens and odds. */
INLINE void deint2(const float *src, unsigned m, float *ev, float *od)
{
    const __m512i ie = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i io = _mm512_add_epi32(ie, _mm512_set1_epi32(1));
    for (unsigned i = 0; i < m; i += 16) {
        __m512 a = _mm512_loadu_ps(src + 2 * i), b = _mm512_loadu_ps(src + 2 * i + 16);
        _mm512_storeu_ps(ev + i, _mm512_permutex2var_ps(a, ie, b));
        _mm512_storeu_ps(od + i, _mm512_permutex2var_ps(a, io, b));
    }
}

/* m rows of w fp16 (w = 1, 2 or 4) as w fp32 columns of m: dst[k*m + x]. */
INLINE void columns(const uint8_t *src, unsigned m, unsigned w, float *dst)
{
    float t[4 * MAXD], u[4 * MAXD];
    if (w == 1) {
        halves16(src, m, dst);
        return;
    }
    halves16(src, m * w, t);
    if (w == 2) {
        deint2(t, m, dst, dst + m);
        return;
    }
    deint2(t, 2 * m, u, u + 2 * m); /* columns {0,2} and {1,3}, still paired */
    deint2(u, m, dst, dst + 2 * m);
    deint2(u + 2 * m, m, dst + m, dst + 3 * m);
}

INLINE float dot16(const float *a, const float *b, unsigned n)
{
    __m512 s = _mm512_setzero_ps();
    for (unsigned i = 0; i < n; i += 16) s = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s);
    return _mm512_reduce_add_ps(s);
}

INLINE void scale16(float *x, float a, unsigned n)
{
    for (unsigned i = 0; i < n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), _mm512_set1_ps(a)));
}

/* y += a*x + b*z */
INLINE void axpy2(float *y, float a, const float *x, float b, const float *z, unsigned n)
{
    for (unsigned i = 0; i < n; i += 16) {
        __m512 v = _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i));
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(_mm512_set1_ps(b), _mm512_loadu_ps(z + i), v));
    }
}

/* Per-block fp32 copies shared by a block's row quads. */
typedef struct blk2 {
    float dl[MAXD], mn[MAXD];        /* scales, minima: [row][group] */
    float dlT[MAXD], mnT[MAXD];      /* values: [group][token] */
    float a[2 * NB], b[2 * MAXD];    /* low-rank columns A_k, B_k */
    float ov[2 * MAXD];              /* outlier value minus its group minimum */
    unsigned ot[2 * MAXD], oc[2 * MAXD]; /* outlier token, channel */
} blk2;

/* Scales, minima, factors and outliers of one block as fp32. */
INLINE void block_prep(const gear_block_layout *L, const uint8_t *blk, blk2 *f)
{
    unsigned d = L->d, G = L->groups_per_row, ng = L->rows * G, lg = d == 64 ? 6 : d == 128 ? 7 : 8;
    if (L->kind == GEAR_KEY) halves16(blk + L->off_scales, ng, f->dl);
    if (L->kind == GEAR_KEY || L->n_outliers) halves16(blk + L->off_mins, ng, f->mn);
    if (L->kind == GEAR_VALUE) {
        columns(blk + L->off_scales, NB, G, f->dlT);
        columns(blk + L->off_mins, NB, G, f->mnT);
    }
    if (L->rank) {
        columns(blk + L->off_a, NB, 2, f->a);
        columns(blk + L->off_b, d, 2, f->b);
    }
    if (L->n_outliers) {
        /* outlier j lies in group j/2 (one max, one min per group) */
        const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        const uint8_t *idx = blk + L->off_oidx, *val = blk + L->off_oval;
        for (unsigned j = 0; j < L->n_outliers; j += 16) {
            __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(idx + 2 * j)));
            __m512 mn = _mm512_permutexvar_ps(dup, _mm512_maskz_loadu_ps(0xff, f->mn + j / 2));
            __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(val + 2 * j)));
            _mm512_storeu_ps(f->ov + j, _mm512_sub_ps(v, mn));
            _mm512_storeu_si512(f->ot + j, _mm512_srli_epi32(x, lg));
            _mm512_storeu_si512(f->oc + j, _mm512_and_si512(x, _mm512_set1_epi32((int)d - 1)));
        }
    }
}

/* Lines of the next block to fetch, one per iteration of a code loop of
 * `iters`: the blocks of one item are far apart (one per head), beyond the
 * hardware prefetchers' reach. */
INLINE unsigned prefetch_count(const uint8_t *next, size_t bytes, unsigned iters)
{
    size_t lines = (bytes + 63) / 64;
    return !next ? 0 : lines < iters ? (unsigned)lines : iters;
}

/* s[r][t] = q_r . k_t for R rows (compile-time), natural token order. */
INLINE void key_scores2(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *q,
                        unsigned R, float *s, const uint8_t *next)
{
    unsigned d = L->d;
    float qs[QUAD * MAXD];
    __m512 acc[QUAD][4];
    for (unsigned r = 0; r < R; r++) {
        const float *qr = q + (size_t)r * d;
        __m512 b = _mm512_setzero_ps();
        for (unsigned c = 0; c < d; c += 16) {
            __m512 x = _mm512_loadu_ps(qr + c);
            _mm512_storeu_ps(qs + r * d + c, _mm512_mul_ps(x, _mm512_loadu_ps(f->dl + c)));
            b = _mm512_fmadd_ps(x, _mm512_loadu_ps(f->mn + c), b);
        }
        /* the minima enter once per token */
        for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_set1_ps(_mm512_reduce_add_ps(b));
    }
    const uint8_t *codes = blk + L->off_codes;
    unsigned npf = prefetch_count(next, L->bytes, d);
    for (unsigned c = 0; c < d; c++) {
        __m512 v[4];
        if (c < npf) _mm_prefetch((const char *)next + 64 * c, _MM_HINT_T0);
        decode64(codes + 16 * c, v);
        for (unsigned r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(qs[r * d + c]);
            for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(w, v[j], acc[r][j]);
        }
    }
    for (unsigned r = 0; r < R; r++) unpermute64(acc[r], s + r * NB);
    if (L->rank) /* (q.B_k) A_k */
        for (unsigned r = 0; r < R; r++) {
            const float *qr = q + (size_t)r * d;
            axpy2(s + r * NB, dot16(qr, f->b, d), f->a, dot16(qr, f->b + d, d), f->a + NB, NB);
        }
    /* outliers: the exact value replaces the minimum that code 0 gave */
    if (!L->n_outliers) return;
    if (R == 1) {
        for (unsigned j = 0; j < L->n_outliers; j++) s[f->ot[j]] += q[j / 2] * f->ov[j];
        return;
    }
    /* several rows: one 4-row update per outlier, rows interleaved */
    float qT[4 * MAXD], corr[4 * NB];
    interleave4(q, d, R, d, qT);
    memset(corr, 0, sizeof corr);
    for (unsigned j = 0; j < L->n_outliers; j++) {
        float *y = corr + 4 * f->ot[j];
        _mm_storeu_ps(y, _mm_fmadd_ps(_mm_set1_ps(f->ov[j]), _mm_loadu_ps(qT + 4 * (j / 2)), _mm_loadu_ps(y)));
    }
    add_deinterleaved4(s, NB, R, NB, corr);
}

/* o[r] (permuted groups) += sum_t p[r][t] v_t; onat[r] gets the outlier
 * and low-rank terms. */
INLINE void values2(const gear_block_layout *L, const uint8_t *blk, const blk2 *f, const float *p,
                    unsigned R, float *o, float *onat, const uint8_t *next)
{
    unsigned d = L->d, G = L->groups_per_row;
    float pw[QUAD * NB];
    const uint8_t *codes = blk + L->off_codes;
    unsigned npf = prefetch_count(next, L->bytes, G * NB);
    for (unsigned g = 0; g < G; g++) {
        __m512 acc[QUAD][4];
        float bias[QUAD];
        for (unsigned r = 0; r < R; r++) {
            __m512 b = _mm512_setzero_ps();
            for (unsigned t = 0; t < NB; t += 16) {
                __m512 x = _mm512_loadu_ps(p + r * NB + t);
                _mm512_storeu_ps(pw + r * NB + t, _mm512_mul_ps(x, _mm512_loadu_ps(f->dlT + g * NB + t)));
                b = _mm512_fmadd_ps(x, _mm512_loadu_ps(f->mnT + g * NB + t), b);
            }
            bias[r] = _mm512_reduce_add_ps(b);
            for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
        }
        for (unsigned t = 0; t < NB; t++) {
            __m512 v[4];
            if (g * NB + t < npf) _mm_prefetch((const char *)next + 64 * (g * NB + t), _MM_HINT_T0);
            decode64(codes + (size_t)t * L->row_bytes + 16 * g, v);
            for (unsigned r = 0; r < R; r++) {
                __m512 w = _mm512_set1_ps(pw[r * NB + t]);
                for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(w, v[j], acc[r][j]);
            }
        }
        for (unsigned r = 0; r < R; r++)
            for (unsigned j = 0; j < 4; j++) {
                float *dst = o + (size_t)r * d + 64 * g + 16 * j;
                _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), _mm512_add_ps(acc[r][j], _mm512_set1_ps(bias[r]))));
            }
    }
    if (L->rank) /* (p.A_k) B_k */
        for (unsigned r = 0; r < R; r++) {
            const float *pr = p + r * NB;
            axpy2(onat + (size_t)r * d, dot16(pr, f->a, NB), f->b, dot16(pr, f->a + NB, NB), f->b + d, d);
        }
    if (!L->n_outliers) return;
    if (R == 1) {
        for (unsigned j = 0; j < L->n_outliers; j++) onat[f->oc[j]] += p[f->ot[j]] * f->ov[j];
        return;
    }
    float pT[4 * NB], corr[4 * MAXD];
    interleave4(p, NB, R, NB, pT);
    memset(corr, 0, sizeof(float) * 4 * d);
    for (unsigned j = 0; j < L->n_outliers; j++) {
        float *y = corr + 4 * f->oc[j];
        _mm_storeu_ps(y, _mm_fmadd_ps(_mm_set1_ps(f->ov[j]), _mm_loadu_ps(pT + 4 * f->ot[j]), _mm_loadu_ps(y)));
    }
    add_deinterleaved4(onat, d, R, d, corr);
}

/* Scale, mask (positions past lim[r]), fold into the running softmax of
 * each row; s becomes the weights. */
INLINE void softmax2(float *s, unsigned R, float scale, size_t pos0, const size_t *lim, part *pt,
                     float *o, float *onat, unsigned d)
{
    for (unsigned r = 0; r < R; r++) {
        float *sr = s + r * NB;
        __m512 x[4], mx = _mm512_set1_ps(pt[r].m);
        for (unsigned j = 0; j < 4; j++) {
            x[j] = _mm512_mul_ps(_mm512_loadu_ps(sr + 16 * j), _mm512_set1_ps(scale));
            if (pos0 + NB - 1 > lim[r]) { /* causal mask: only when a query is inside the block */
                __m512i pos = _mm512_add_epi32(_mm512_set1_epi32((int)(16 * j)),
                                               _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
                long room = (long)lim[r] - (long)pos0;
                __mmask16 ok = _mm512_cmp_epi32_mask(pos, _mm512_set1_epi32(room < -1 ? -1 : (int)room), _MM_CMPINT_LE);
                x[j] = _mm512_mask_mov_ps(_mm512_set1_ps(-__builtin_inff()), ok, x[j]);
            }
            mx = _mm512_max_ps(mx, x[j]);
        }
        float m = _mm512_reduce_max_ps(mx);
        if (m == -__builtin_inff()) { /* everything masked so far */
            for (unsigned j = 0; j < 4; j++) _mm512_storeu_ps(sr + 16 * j, _mm512_setzero_ps());
            continue;
        }
        float alpha = m == pt[r].m ? 1.0f : gear_exp_neg(pt[r].m - m); /* e^0 is 1 exactly */
        if (alpha != 1.0f) {
            scale16(o + (size_t)r * d, alpha, d);
            if (onat) scale16(onat + (size_t)r * d, alpha, d);
        }
        __m512 sum = _mm512_setzero_ps();
        for (unsigned j = 0; j < 4; j++) {
            __m512 e = exp_neg16(_mm512_sub_ps(x[j], _mm512_set1_ps(m)));
            sum = _mm512_add_ps(sum, e);
            _mm512_storeu_ps(sr + 16 * j, e);
        }
        pt[r].l = pt[r].l * alpha + _mm512_reduce_add_ps(sum);
        pt[r].m = m;
    }
}

INLINE void block_rows(const gear_attn2_block *a, const blk2 *fk, const blk2 *fv, unsigned r0, unsigned R)
{
    float s[QUAD * NB];
    unsigned d = a->lk->d;
    float *onat = a->onat ? a->onat + (size_t)r0 * d : NULL;
    /* the first row quad prefetches */
    key_scores2(a->lk, a->kblk, fk, a->q + (size_t)r0 * d, R, s, r0 ? NULL : a->next_k);
    softmax2(s, R, a->scale, a->pos0, a->lim + r0, a->pt + r0, a->o + (size_t)r0 * d, onat, d);
    values2(a->lv, a->vblk, fv, s, R, a->o + (size_t)r0 * d, onat, r0 ? NULL : a->next_v);
}

void gear_cpu_attend2_avx512(const gear_attn2_block *a)
{
    blk2 fk, fv;
    block_prep(a->lk, a->kblk, &fk);
    block_prep(a->lv, a->vblk, &fv);
    for (unsigned r0 = 0; r0 < a->rows; r0 += QUAD) {
        switch (a->rows - r0) {
        case 1: block_rows(a, &fk, &fv, r0, 1); break;
        case 2: block_rows(a, &fk, &fv, r0, 2); break;
        case 3: block_rows(a, &fk, &fv, r0, 3); break;
        default: block_rows(a, &fk, &fv, r0, 4); break;
        }
    }
}

/* o[r] (permuted 64-channel groups) = natural order + onat[r]. */
void gear_cpu_values_unpermute(float *o, const float *onat, unsigned rows, unsigned d)
{
    for (unsigned r = 0; r < rows; r++)
        for (unsigned g = 0; g < d; g += 64) {
            float *x = o + (size_t)r * d + g;
            __m512 v[4] = {_mm512_loadu_ps(x), _mm512_loadu_ps(x + 16), _mm512_loadu_ps(x + 32), _mm512_loadu_ps(x + 48)};
            unpermute64(v, x);
            if (onat)
                for (unsigned j = 0; j < 64; j += 16)
                    _mm512_storeu_ps(x + j, _mm512_add_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(onat + (size_t)r * d + g + j)));
        }
}
