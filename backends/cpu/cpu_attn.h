/* cpu_attn.h - attention helpers shared by the uniform and the CQ kernels
 * (cpu_attention.c, cpu_attention_cq.c).  All CPU_INLINE: they are inlined
 * into each GEAR_CLONES caller so one clone per instruction set covers a
 * whole kernel. */
#ifndef GEAR_CPU_ATTN_H
#define GEAR_CPU_ATTN_H

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

#define MAX_ROWS 64 /* query rows per KV head handled in one pass */

/* codes [t0, t0+len) of a packed row as floats */
CPU_INLINE void unpack_codes(const uint8_t *row, unsigned bits, unsigned t0, unsigned len, float *out)
{
    if (bits == 2 && !(t0 & 15) && !(len & 15)) {
        for (unsigned w = 0; w < len / 16; w++) {
            const uint8_t *p = row + (t0 / 4) + 4 * w;
            uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            for (unsigned j = 0; j < 16; j++) out[16 * w + j] = (float)((v >> (2 * j)) & 3u);
        }
        return;
    }
    if (bits == 4 && !(t0 & 7) && !(len & 7)) {
        for (unsigned w = 0; w < len / 8; w++) {
            const uint8_t *p = row + (t0 / 2) + 4 * w;
            uint32_t v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
            for (unsigned j = 0; j < 8; j++) out[8 * w + j] = (float)((v >> (4 * j)) & 15u);
        }
        return;
    }
    if (bits == 8) {
        for (unsigned j = 0; j < len; j++) out[j] = (float)row[t0 + j];
        return;
    }
    unsigned mask = (1u << bits) - 1u;
    for (unsigned j = 0; j < len; j++) {
        size_t bit = (size_t)(t0 + j) * bits;
        unsigned v = row[bit >> 3];
        if ((bit & 7) + bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
        out[j] = (float)((v >> (bit & 7)) & mask);
    }
}


/* Every line of a block, ahead of its use, into L2 (locality 1, as the
 * AVX-512 kernels: see prefetch_count there): the hardware prefetchers
 * stop at 4 KiB pages, which blocks of 1-5 KiB cross every pair or two,
 * and a block read from DRAM otherwise waits for each of its sections in
 * turn.  Into L2 rather than L1: 13-26 % faster from DRAM on the portable
 * and AVX2 paths (Zen 4), the same in cache. */
CPU_INLINE void prefetch_lines(const uint8_t *p, size_t bytes)
{
    for (size_t x = 0; x < bytes; x += 64) __builtin_prefetch(p + x, 0, 1);
}

CPU_INLINE void axpy(float *y, float a, const float *x, unsigned n)
{
    for (unsigned i = 0; i < n; i++) y[i] += a * x[i];
}

static inline float half_at(const uint8_t *p, size_t i) { return gear_half_to_float(cpu_u16(p + 2 * i)); }



CPU_INLINE void halves(const uint8_t *src, size_t n, float *dst)
{
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX512) {
        gear_cpu_halves_avx512(src, n, dst);
        return;
    }
    if (CPU_AVX2) {
        gear_cpu_halves_avx2(src, n, dst);
        return;
    }
#endif
    for (size_t i = 0; i < n; i++) dst[i] = half_at(src, i);
}

/* OpenMP simd reduction: vectorized without -ffast-math. */
CPU_INLINE float dot(const float *a, const float *b, unsigned n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (unsigned i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef GEAR_CPU_AVX512
CPU_INLINE void mul(const float *a, const float *b, unsigned n, float *out)
{
    for (unsigned i = 0; i < n; i++) out[i] = a[i] * b[i];
}

/* The shapes the AVX-512 and AVX2 kernels take: 2/4-bit codes in groups of 64. */
CPU_INLINE int fast_keys(const gear_block_layout *L)
{
    return (CPU_AVX512 || CPU_AVX2) && (L->bits == 2 || L->bits == 4) && L->n == 64 &&
           L->group == 64;
}

/* Values: the AVX2 kernel also takes groups of a whole row (kivi4, gear4). */
CPU_INLINE int fast_values(const gear_block_layout *L)
{
    int shape = (L->bits == 2 || L->bits == 4) && L->d % 64 == 0 && L->row_bytes == L->d * L->bits / 8;
    if (CPU_AVX512) return shape && L->group == 64;
    return CPU_AVX2 && shape && (L->group == 64 || L->group == L->d);
}

#endif

/* Per-thread float copies of a block's small sections. */
typedef struct blockf {
    float *dl, *mn, *a, *b, *w, *ov;
    unsigned *ot, *oc; /* outlier token and channel */
    float *sp;         /* sparse_terms' scratch: 8 * max(n, d) floats */
} blockf;

/* Four floats as one vector (GCC and clang vector extensions: SSE on
 * any x86-64, NEON on arm64). */
typedef float cpu_f4 __attribute__((vector_size(16)));

/* yt[4 to[j] + i] += xt[4 from[j] + i] * v[j], i < 4: four rows at once,
 * one 4-wide multiply-add a term.  Written as a vector: as a loop over i,
 * GCC 12 left it scalar (four loads, multiply-adds and stores a term:
 * about a third of the AVX2 path's own time for gear2 at G = 4). */
CPU_INLINE void sparse_quad(float *restrict yt, const float *restrict xt, const unsigned *restrict to,
                            const unsigned *restrict from, const float *restrict v, unsigned nt)
{
    for (unsigned j = 0; j < nt; j++) {
        cpu_f4 y, x;
        memcpy(&y, yt + 4 * (size_t)to[j], sizeof y);
        memcpy(&x, xt + 4 * (size_t)from[j], sizeof x);
        y += x * v[j];
        memcpy(yt + 4 * (size_t)to[j], &y, sizeof y);
    }
}

/* y[i][to[j]] += x[i][from[j]] * v[j] for rows i (y rows ly apart, x rows
 * lx apart) and terms j < nt.  Whole quads of rows through interleaved
 * copies (sp: 4*lx + 4*ly floats), a 4-wide multiply-add a term: one
 * scalar add a term and row, which outliers sharing a token or channel
 * make wait on each other's stores, cost more (gear2, head dim 64, G = 4,
 * AVX2 kernels: 2476-2520 -> 2298-2343 ns a pair in cache).  The other
 * rows take the plain loop: with 2 or 3 rows the copies cost more than
 * they saved (G = 3: 2006-2040 -> 2056-2083). */
CPU_INLINE void sparse_terms(float *y, unsigned ly, const float *x, unsigned lx, const unsigned *to,
                             const unsigned *from, const float *v, unsigned nt, unsigned rows, float *sp)
{
    unsigned r0 = 0;
    for (; r0 + 4 <= rows; r0 += 4) {
        float *xt = sp, *yt = sp + 4 * (size_t)lx;
        const float *xq = x + (size_t)r0 * lx;
        float *yq = y + (size_t)r0 * ly;
#ifdef GEAR_CPU_AVX512
        /* the two copies as AVX2 shuffles: the strided copy back alone
         * was a tenth of the AVX2 path's own time (gear2, G = 4) */
        if (CPU_AVX2 && lx % 8 == 0)
            gear_cpu_interleave4_avx2(xq, lx, xt);
        else
#endif
            for (unsigned c = 0; c < lx; c++)
                for (unsigned i = 0; i < 4; i++) xt[4 * (size_t)c + i] = xq[(size_t)i * lx + c];
        memset(yt, 0, sizeof(float) * 4 * ly);
        sparse_quad(yt, xt, to, from, v, nt);
#ifdef GEAR_CPU_AVX512
        if (CPU_AVX2 && ly % 8 == 0)
            gear_cpu_deinterleave4_add_avx2(yq, ly, yt);
        else
#endif
            for (unsigned i = 0; i < 4; i++)
                for (unsigned t = 0; t < ly; t++) yq[(size_t)i * ly + t] += yt[4 * (size_t)t + i];
    }
    for (unsigned i = r0; i < rows; i++)
        for (unsigned j = 0; j < nt; j++) y[(size_t)i * ly + to[j]] += x[(size_t)i * lx + from[j]] * v[j];
}

/* Outliers of a block as (token ot[j], channel oc[j], ov[j] = exact value
 * minus the group minimum that the codes already contributed: an outlier's
 * code is 0).  Separate passes so each vectorizes; the caller applies them
 * as sparse corrections. */
CPU_INLINE void outlier_deltas(const gear_block_layout *L, const uint8_t *blk, blockf *f)
{
    unsigned d = L->d, no = L->n_outliers, gpr = L->groups_per_row;
    uint64_t md = cpu_div_magic(d), mg = cpu_div_magic(L->group);
    /* restrict, omp simd: the block's bytes may alias anything as far as
     * the compiler knows, which otherwise keeps these loops scalar */
    const uint8_t *restrict idx = blk + L->off_oidx;
    unsigned *restrict ot = f->ot, *restrict oc = f->oc;
    if (!(d & (d - 1))) { /* a power of two: a shift and a mask, which vectorize */
        unsigned lg = (unsigned)__builtin_ctz(d);
#pragma omp simd
        for (size_t j = 0; j < no; j++) { /* size_t: 2*j must not wrap, or it does not vectorize */
            unsigned fl = (unsigned)idx[2 * j] | (unsigned)idx[2 * j + 1] << 8;
            ot[j] = fl >> lg;
            oc[j] = fl & (d - 1);
        }
    } else {
        for (unsigned j = 0; j < no; j++) {
            unsigned fl = (unsigned)idx[2 * j] | (unsigned)idx[2 * j + 1] << 8, t = cpu_div(fl, md);
            ot[j] = t;
            oc[j] = fl - t * d;
        }
    }
    halves(blk + L->off_oval, no, f->ov);
    /* rows are channels for keys (groups run along tokens), tokens for values */
    const unsigned *restrict row = L->kind == GEAR_KEY ? oc : ot, *restrict col = L->kind == GEAR_KEY ? ot : oc;
    float *restrict ov = f->ov;
    const float *restrict mn = f->mn;
    unsigned g = L->group, per = 2 * L->k_full;
    if (L->k_tail == L->k_full && per == 2) {
        /* every group holds one outlier a side, in group order (the
         * presets): outlier j lies in group j / 2, whose minimum is
         * mn[j / 2] ([row][group]); a loop over groups vectorizes, the
         * per-outlier lookup through row[] did not */
        for (size_t q = 0; q < no / 2; q++) {
            ov[2 * q] -= mn[q];
            ov[2 * q + 1] -= mn[q];
        }
    } else if (gpr == 1) {
#pragma omp simd
        for (unsigned j = 0; j < no; j++) ov[j] -= mn[row[j]];
    } else if (!(g & (g - 1))) {
        unsigned lg = (unsigned)__builtin_ctz(g);
#pragma omp simd
        for (unsigned j = 0; j < no; j++) ov[j] -= mn[(size_t)row[j] * gpr + (col[j] >> lg)];
    } else {
        for (unsigned j = 0; j < no; j++) ov[j] -= mn[(size_t)row[j] * gpr + cpu_div(col[j], mg)];
    }
}

/* Low-rank factor X (count x r, fp16, row-major) as fp32 columns:
 * dst[k][x], so the products below run along contiguous vectors.  The
 * halves are converted first, in one vectorized pass, into dst's
 * second half (dst holds 2*count*r floats: attn_scratch_alloc). */
CPU_INLINE void factor_columns(const uint8_t *src, unsigned count, unsigned r, float *dst)
{
    float *restrict col = dst;
    const float *restrict rows = dst + (size_t)count * r;
    halves(src, (size_t)count * r, dst + (size_t)count * r);
    if (r == 2) { /* the presets' rank: a deinterleave, which vectorizes */
#pragma omp simd
        for (size_t x = 0; x < count; x++) {
            col[x] = rows[2 * x];
            col[count + x] = rows[2 * x + 1];
        }
        return;
    }
    for (unsigned x = 0; x < count; x++)
        for (unsigned k = 0; k < r; k++) col[(size_t)k * count + x] = rows[(size_t)x * r + k];
}

/* y_i += sum_k (x_i . xf_k) yf_k for rows i (x rows lx floats apart, y
 * rows ly apart), the factors as columns (xf: r of lx floats, yf: r of
 * ly).  Rank 2 (the presets) in one pass over each row: a separate dot
 * and axpy a column made each reload and store y (with the dots' own
 * reductions, a quarter of the AVX2 path's own time for gear2 at G = 4). */
CPU_INLINE void lowrank_rows(float *y, unsigned ly, const float *x, unsigned lx, const float *xf, const float *yf,
                             unsigned r, unsigned rows)
{
    for (unsigned i = 0; i < rows; i++) {
        const float *restrict xi = x + (size_t)i * lx;
        float *restrict yi = y + (size_t)i * ly;
        if (r != 2) {
            for (unsigned k = 0; k < r; k++) axpy(yi, dot(xi, xf + (size_t)k * lx, lx), yf + (size_t)k * ly, ly);
            continue;
        }
        /* the second columns through their own pointers: indexed as
         * xf[lx + c], an unsigned sum that may wrap, the loops stayed scalar */
        const float *restrict xf1 = xf + lx, *restrict yf1 = yf + ly;
        float u0 = 0.0f, u1 = 0.0f;
#pragma omp simd reduction(+ : u0, u1)
        for (unsigned c = 0; c < lx; c++) {
            u0 += xi[c] * xf[c];
            u1 += xi[c] * xf1[c];
        }
        for (unsigned t = 0; t < ly; t++) yi[t] += u0 * yf[t] + u1 * yf1[t];
    }
}

/* Low-rank term of scores: s[i][t] += (q_i . B) . A_t. */
CPU_INLINE void lowrank_scores(const gear_block_layout *L, const uint8_t *blk, const float *q,
                               unsigned rows, float *s, blockf *f)
{
    factor_columns(blk + L->off_a, L->n, L->rank, f->a);
    factor_columns(blk + L->off_b, L->d, L->rank, f->b);
    lowrank_rows(s, L->n, q, L->d, f->b, f->a, L->rank, rows);
}

/* Low-rank term of values: o_i += (p_i . A) . B^T. */
CPU_INLINE void lowrank_values(const gear_block_layout *L, const uint8_t *blk, const float *p,
                               unsigned rows, float *o, blockf *f)
{
    factor_columns(blk + L->off_a, L->n, L->rank, f->a);
    factor_columns(blk + L->off_b, L->d, L->rank, f->b);
    lowrank_rows(o, L->d, p, L->n, f->a, f->b, L->rank, rows);
}

/* A raw fp16 block the AVX-512 and AVX2 row kernels take: a multiple of
 * 16 channels.  They load the halves unaligned, through a uint16_t
 * pointer; every layout puts them at an even offset, and the check keeps
 * that pointer a valid one should a layout ever not. */
CPU_INLINE int raw_fast(const gear_block_layout *L)
{
    return L->raw_dtype == GEAR_F16 && L->d % 16 == 0 && L->off_raw % 2 == 0;
}

/* The row kernels over uncompressed rows x (half: fp16, else fp32; d a
 * multiple of 16), AVX-512 or AVX2: scores (s = w . x) or, with values
 * set, values (y += w x).  1 if one ran, 0 if the caller's portable loop
 * must. */
CPU_INLINE int rows_simd(int values, const void *x, int half, unsigned n, unsigned d, const float *w, unsigned rows,
                         float *y)
{
#ifdef GEAR_CPU_AVX512
    if ((CPU_AVX512 || CPU_AVX2) && d % 16 == 0) {
        if (values)
            (CPU_AVX512 ? gear_cpu_rows_values_avx512 : gear_cpu_rows_values_avx2)(x, half, n, d, w, rows, y);
        else
            (CPU_AVX512 ? gear_cpu_rows_scores_avx512 : gear_cpu_rows_scores_avx2)(x, half, n, d, w, rows, y);
        return 1;
    }
#endif
    (void)values, (void)x, (void)half, (void)n, (void)d, (void)w, (void)rows, (void)y;
    return 0;
}

/* s[i][t] (t < n) = q_i . k_t for one compressed key block. */
CPU_INLINE void key_scores(const gear_block_layout *L, const uint8_t *blk, const float *q,
                       unsigned rows, float *s, float *tmp, blockf *f)
{
    unsigned n = L->n, d = L->d;
    if (L->bits == 0) { /* raw fp16 block */
        if (raw_fast(L) && rows_simd(0, blk + L->off_raw, 1, n, d, q, rows, s)) return;
        memset(s, 0, sizeof(float) * rows * n);
        for (unsigned t = 0; t < n; t++) {
            halves(blk + L->off_raw + 2 * (size_t)t * d, d, tmp);
            for (unsigned i = 0; i < rows; i++) s[i * n + t] = dot(q + (size_t)i * d, tmp, d);
        }
        return;
    }
    size_t ng = (size_t)L->rows * L->groups_per_row;
    halves(blk + L->off_scales, ng, f->dl);
    halves(blk + L->off_mins, ng, f->mn);
#ifdef GEAR_CPU_AVX512
    if (fast_keys(L)) {
        float bias[MAX_ROWS];
        for (unsigned i = 0; i < rows; i++) {
            mul(q + (size_t)i * d, f->dl, d, f->w + (size_t)i * d);
            bias[i] = dot(q + (size_t)i * d, f->mn, d);
        }
        (CPU_AVX512 ? gear_cpu_keys64_avx512 : gear_cpu_keys64_avx2)(blk + L->off_codes, L->row_bytes, L->bits, d,
                                                                     f->w, bias, rows, s, n);
    } else
#endif
    {
        memset(s, 0, sizeof(float) * rows * n);
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            unsigned t0 = g * L->group, len = g + 1 == L->groups_per_row ? n - t0 : L->group;
            float bias[MAX_ROWS] = {0};
            for (unsigned c = 0; c < d; c++) {
                size_t gi = (size_t)c * L->groups_per_row + g;
                unpack_codes(blk + L->off_codes + (size_t)c * L->row_bytes, L->bits, t0, len, tmp);
                for (unsigned i = 0; i < rows; i++) {
                    float qc = q[i * d + c];
                    axpy(s + (size_t)i * n + t0, qc * f->dl[gi], tmp, len);
                    bias[i] += qc * f->mn[gi]; /* the minima enter once per token */
                }
            }
            for (unsigned i = 0; i < rows; i++)
                for (unsigned j = 0; j < len; j++) s[(size_t)i * n + t0 + j] += bias[i];
        }
    }
    /* outliers: replace the decoded minimum (code 0) by the exact value */
    if (L->n_outliers) {
        outlier_deltas(L, blk, f);
        sparse_terms(s, n, q, d, f->ot, f->oc, f->ov, L->n_outliers, rows, f->sp);
    }
    if (L->rank) lowrank_scores(L, blk, q, rows, s, f);
}

/* o[i] += sum_t p[i][t] v_t for one compressed value block. */
CPU_INLINE void value_accumulate(const gear_block_layout *L, const uint8_t *blk, const float *p,
                             unsigned rows, float *o, float *tmp, blockf *f)
{
    unsigned n = L->n, d = L->d, r = L->rank;
    if (L->bits == 0) {
        if (raw_fast(L) && rows_simd(1, blk + L->off_raw, 1, n, d, p, rows, o)) return;
        for (unsigned t = 0; t < n; t++) {
            halves(blk + L->off_raw + 2 * (size_t)t * d, d, tmp);
            for (unsigned i = 0; i < rows; i++) axpy(o + (size_t)i * d, p[(size_t)i * n + t], tmp, d);
        }
        return;
    }
    size_t ng = (size_t)L->rows * L->groups_per_row;
    halves(blk + L->off_scales, ng, f->dl);
    halves(blk + L->off_mins, ng, f->mn);
#ifdef GEAR_CPU_AVX512
    if (fast_values(L)) {
        if (CPU_AVX512)
            gear_cpu_values64_avx512(blk + L->off_codes, L->row_bytes, L->bits, n, d, f->dl, f->mn, p, rows, o);
        else
            gear_cpu_values64_avx2(blk + L->off_codes, L->row_bytes, L->bits, n, d, L->group, f->dl, f->mn, p, rows,
                                   o);
    } else
#endif
    {
        for (unsigned t = 0; t < n; t++) {
            const uint8_t *row = blk + L->off_codes + (size_t)t * L->row_bytes;
            for (unsigned g = 0; g < L->groups_per_row; g++) {
                unsigned c0 = g * L->group, len = g + 1 == L->groups_per_row ? d - c0 : L->group;
                size_t gi = (size_t)t * L->groups_per_row + g;
                unpack_codes(row, L->bits, c0, len, tmp + c0);
                for (unsigned c = c0; c < c0 + len; c++) tmp[c] = tmp[c] * f->dl[gi] + f->mn[gi];
            }
            for (unsigned i = 0; i < rows; i++) axpy(o + (size_t)i * d, p[(size_t)i * n + t], tmp, d);
        }
    }
    if (L->n_outliers) {
        outlier_deltas(L, blk, f);
        sparse_terms(o, d, p, n, f->oc, f->ot, f->ov, L->n_outliers, rows, f->sp);
    }
    if (r) lowrank_values(L, blk, p, rows, o, f);
}

CPU_INLINE float row_max(const float *s, unsigned n, float mx)
{
    float m[16];
    for (unsigned j = 0; j < 16; j++) m[j] = mx;
    unsigned t = 0;
    for (; t + 16 <= n; t += 16)
        for (unsigned j = 0; j < 16; j++) m[j] = s[t + j] > m[j] ? s[t + j] : m[j];
    for (; t < n; t++) m[0] = s[t] > m[0] ? s[t] : m[0];
    for (unsigned j = 1; j < 16; j++) m[0] = m[j] > m[0] ? m[j] : m[0];
    return m[0];
}

/* s[t] = e^(s[t] - mx); returns the sum, an OpenMP simd reduction (a
 * plain running sum kept the exponentials vectorized but added their
 * lanes one by one: a chain of n dependent adds, most of the portable
 * softmax's time at G = 4). */
CPU_INLINE float row_exp(float *s, unsigned n, float mx)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (unsigned t = 0; t < n; t++) {
        s[t] = gear_exp_neg(s[t] - mx);
        sum += s[t];
    }
    return sum;
}

/* Fold n new scores per row (already scaled and masked) into the running
 * softmax: rescale o and l, turn s into weights. */
CPU_INLINE void online_softmax(unsigned rows, unsigned n, unsigned d, float *s, part *pt, float *o)
{
    for (unsigned i = 0; i < rows; i++) {
        float *si = s + (size_t)i * n, mx = row_max(si, n, pt[i].m);
        if (mx == -INFINITY) { /* everything masked so far */
            for (unsigned t = 0; t < n; t++) si[t] = 0.0f;
            continue;
        }
        float alpha = gear_exp_neg(pt[i].m - mx);
        if (alpha != 1.0f)
            for (unsigned c = 0; c < d; c++) o[(size_t)i * d + c] *= alpha;
        pt[i].l = pt[i].l * alpha + row_exp(si, n, mx);
        pt[i].m = mx;
    }
}

/* Scale the scores and mask positions a query may not see: row i sees
 * positions up to T - n_qtok + i % n_qtok, here the first `vis` of the n
 * (two plain loops, which vectorize; the per-element test did not). */
CPU_INLINE void scale_mask(const gear_attention_args *a, unsigned rows, unsigned n, size_t pos0,
                       size_t T, float *s)
{
    for (unsigned i = 0; i < rows; i++) {
        size_t limit = T - a->n_qtok + i % a->n_qtok;
        unsigned vis = limit < pos0 ? 0 : limit - pos0 >= n ? n : (unsigned)(limit - pos0 + 1);
        float *si = s + (size_t)i * n;
        for (unsigned t = 0; t < vis; t++) si[t] *= a->scale;
        for (unsigned t = vis; t < n; t++) si[t] = -INFINITY;
    }
}

/* Scores of n raw fp32 rows (the buffer). */
CPU_INLINE void raw_scores(const float *k, unsigned n, unsigned d, const float *q, unsigned rows, float *s)
{
    for (unsigned i = 0; i < rows; i++)
        for (unsigned t = 0; t < n; t++) s[(size_t)i * n + t] = dot(q + (size_t)i * d, k + (size_t)t * d, d);
}

/* Per-thread scratch of the attention kernels: scores s (smax floats), a
 * row tmp, and the float copies of a block's small sections (blockf:
 * scales/minima (<= n*d groups), factors, weights and outlier values),
 * carved from a buffer of the thread's workspace. */
typedef struct attn_scratch {
    float *s, *tmp;
    blockf f;
} attn_scratch;

/* 0 when out of memory. */
static inline int attn_scratch_alloc(attn_scratch *w, cpu_buf *buf, unsigned n, unsigned d, unsigned rows,
                                     size_t smax)
{
    /* a factor's columns and its converted rows (factor_columns): 2 x
     * count x rank floats, count <= max(n, d) and rank <= min(n, d) */
    size_t nd = (size_t)n * d, nr = 2 * nd;
    size_t sz[5] = {sizeof(float) * (smax ? smax : 1), sizeof(float) * (n > d ? n : d),
                    sizeof(float) * (3 * nd + 2 * nr + (size_t)rows * d), sizeof(unsigned) * 2 * nd,
                    sizeof(float) * 8 * (n > d ? n : d)};
    void *p[5];
    if (!gear_cpu_carve(buf, 5, sz, p)) {
        memset(w, 0, sizeof *w);
        return 0;
    }
    float *b = p[2];
    unsigned *ob = p[3];
    w->s = p[0];
    w->tmp = p[1];
    w->f = (blockf){b, b + nd, b + 2 * nd, b + 2 * nd + nr, b + 2 * nd + 2 * nr,
                    b + 2 * nd + 2 * nr + (size_t)rows * d, ob, ob + nd, p[4]};
    return 1;
}

#endif
