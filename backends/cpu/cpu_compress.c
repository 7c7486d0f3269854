/*
 * cpu_compress.c - fused compression of one block: outliers, quantization
 * and the residual in one pass over the data, then the power iteration.
 * Codes, scales and outliers match the reference backend bit for bit (same
 * fp32 operations: true division, round half to even, fp16 rounding of the
 * scale and minimum before coding).  Groups with more than one outlier per
 * side take quantize_masked (selection across the vector lanes), more than
 * SEL_KMAX per side the reference primitives.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

/* The buffers the scratch owns, freed; what the caller lent it (cbt,
 * next, after) stays: a block that grows the scratch keeps its prefetch
 * pointers. */
static void scratch_release(cpu_scratch *s)
{
    free(s->e); free(s->codes); free(s->mn); free(s->dl);
    free(s->omax); free(s->omin); free(s->y); free(s->pt);
    s->e = s->mn = s->dl = s->y = s->pt = NULL;
    s->codes = NULL;
    s->omax = s->omin = NULL;
    s->cap = 0;
}

/* Scratch on 64-byte lines: malloc aligns to 16 only, and rows of
 * 512-bit loads and stores that straddle lines (or the 32-byte stores of
 * the value transposition at 16 mod 32) took 5-8 % longer a block, by
 * whatever the heap's state left (Zen 4, gear2). */
static void *alloc64(size_t bytes)
{
    void *p = NULL;
    return posix_memalign(&p, 64, bytes ? bytes : 64) ? NULL : p;
}

static int scratch_reserve(cpu_scratch *s, const gear_block_layout *L)
{
    size_t nd = (size_t)L->n * L->d;
    if (s->cap >= nd) return 1;
    scratch_release(s);
    size_t nr = (size_t)(L->n > L->d ? L->n : L->d) * 256; /* r <= 255 */
    s->e = alloc64(nd * sizeof(float));
    s->codes = alloc64(nd);
    s->mn = alloc64(nd * sizeof(float));
    s->dl = alloc64(nd * sizeof(float));
    s->omax = alloc64(nd * sizeof(unsigned));
    s->omin = alloc64(nd * sizeof(unsigned));
    s->y = alloc64(nr * sizeof(float));
    s->pt = alloc64(nr * sizeof(float));
    if (!s->e || !s->codes || !s->mn || !s->dl || !s->omax || !s->omin || !s->y || !s->pt) {
        scratch_release(s);
        return 0;
    }
    s->cap = nd;
    return 1;
}

void gear_cpu_scratch_free(cpu_scratch *s)
{
    scratch_release(s);
    memset(s, 0, sizeof *s);
}

/* Scale and minimum of a group from its remaining range [lo, hi], rounded
 * to fp16 exactly as the reference does; returns the fp32 values. */
static void group_params(float lo, float hi, unsigned levels, uint8_t *scale, uint8_t *mins,
                         float *mnf, float *dlf)
{
    uint16_t mn_h, dl_h;
    gear_group_params(lo, hi, levels, &mn_h, &dl_h);
    cpu_put_u16(scale, dl_h);
    cpu_put_u16(mins, mn_h);
    *mnf = gear_half_to_float(mn_h);
    *dlf = gear_half_to_float(dl_h);
}

/* Code of v against (mn, dl): the reference's arithmetic, branch-free so
 * the loops vectorize (dl == 0 and out-of-range quotients select 0/levels). */
static inline float code_of(float v, float mn, float dl, float levels)
{
    float q = rintf((v - mn) / dl);
    q = q > 0.0f ? q : 0.0f; /* also maps NaN (0/0) to 0 */
    q = q < levels ? q : levels;
    return dl == 0.0f ? 0.0f : q;
}

/* Keys: groups run along tokens, so every statistic is a vector across
 * the d channels of one token row (contiguous), for each token of a group. */
GEAR_CLONES
static void key_group(const gear_block_layout *L, const float *restrict x, unsigned t0, unsigned t1,
                      unsigned k, float *restrict mx1, float *restrict mx2, float *restrict mn1,
                      float *restrict mn2, unsigned *restrict amx, unsigned *restrict amn)
{
    unsigned d = L->d;
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX2_ONLY && d % 8 == 0) {
        gear_cpu_key_group_avx2(x, d, t0, t1, k, mx1, mx2, mn1, mn2, amx, amn);
        return;
    }
#endif
    for (unsigned c = 0; c < d; c++) {
        mx1[c] = mx2[c] = -INFINITY;
        mn1[c] = mn2[c] = INFINITY;
        amx[c] = amn[c] = t0;
    }
    for (unsigned t = t0; t < t1; t++) {
        const float *row = x + (size_t)t * d;
        if (k) {
            /* every value loaded and chosen by selects: written with
             * nested conditionals, GCC 12 left the AVX2 clone scalar (it
             * runs where the AVX2 kernel does not: d not a multiple of 8,
             * or GEAR_CPU_NO_AVX2) */
            for (unsigned c = 0; c < d; c++) {
                float v = row[c], a = mx1[c], b = mn1[c];
                float a2 = v > mx2[c] ? v : mx2[c], b2 = v < mn2[c] ? v : mn2[c];
                unsigned gt = v > a, lt = v < b;
                mx2[c] = gt ? a : a2;
                mx1[c] = gt ? v : a;
                amx[c] = gt ? t : amx[c];
                mn2[c] = lt ? b : b2;
                mn1[c] = lt ? v : b;
                amn[c] = lt ? t : amn[c];
            }
        } else {
            for (unsigned c = 0; c < d; c++) {
                float v = row[c];
                mx1[c] = v > mx1[c] ? v : mx1[c];
                mn1[c] = v < mn1[c] ? v : mn1[c];
            }
        }
    }
}

/* Code (and residual, with e) of row[c] against (mn, dl); out: an outlier
 * (code 0, residual 0). */
CPU_INLINE void code_one(const float *restrict row, unsigned c, int out, float mn, float dl, float levels,
                         uint8_t *restrict codes, float *restrict e)
{
    float v = row[c], q = code_of(v, mn, dl, levels);
    q = out ? 0.0f : q;
    codes[c] = (uint8_t)(int)q;
    if (e) e[c] = out ? 0.0f : v - fmaf(q, dl, mn);
}

/* Codes (and residuals) of one token row of a key group: outliers where
 * mrow[c] (any count a side), else, with k, at amx[c] and amn[c]. */
GEAR_CLONES
static void key_codes(unsigned d, const float *restrict row, unsigned t, const float *restrict mn,
                      const float *restrict dl, const unsigned *restrict amx,
                      const unsigned *restrict amn, const uint8_t *restrict mrow, int k, float levels,
                      uint8_t *restrict codes, float *restrict e)
{
#ifdef GEAR_CPU_AVX512
    /* faster than GCC's AVX2 clone of the loops below (which stays scalar
     * without -fno-trapping-math): gear2 keys 1.65 against 1.48 GB/s */
    if (CPU_AVX2_ONLY && d % 8 == 0) {
        gear_cpu_key_codes_avx2(d, row, t, mn, dl, amx, amn, mrow, k, levels, codes, e);
        return;
    }
#endif
    if (mrow) /* two loops: as one, GCC 12 computed both tests in every lane */
        for (unsigned c = 0; c < d; c++) code_one(row, c, mrow[c], mn[c], dl[c], levels, codes, e);
    else
        for (unsigned c = 0; c < d; c++)
            code_one(row, c, k & ((amx[c] == t) | (amn[c] == t)), mn[c], dl[c], levels, codes, e);
}

/* Codes (and residuals) of channels [c0, c1) of one value row: outliers
 * where mrow[c], else, with k, at amx and amn. */
GEAR_CLONES
static void value_codes(const float *restrict row, unsigned c0, unsigned c1, unsigned amx,
                        unsigned amn, const uint8_t *restrict mrow, int k, float mn, float dl, float levels,
                        uint8_t *restrict codes, float *restrict e)
{
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX2_ONLY && (c0 | c1) % 8 == 0) {
        gear_cpu_value_codes_avx2(row, c0, c1, amx, amn, mrow, k, mn, dl, levels, codes, e);
        return;
    }
#endif
    if (mrow)
        for (unsigned c = c0; c < c1; c++) code_one(row, c, mrow[c], mn, dl, levels, codes, e);
    else
        for (unsigned c = c0; c < c1; c++) code_one(row, c, k & ((c == amx) | (c == amn)), mn, dl, levels, codes, e);
}

/* Statistics of one value group row[c0, c1): maximum (first position),
 * second maximum, minimum (first position), second minimum.  Sixteen
 * lanes track them independently, then the lanes are merged. */
typedef struct gstats {
    float mx1, mx2, mn1, mn2;
    unsigned amx, amn;
} gstats;

/* restrict: without it GCC assumes the outputs may alias row and keeps
 * the loop scalar, branch by branch (10x slower where no AVX-512 kernel
 * takes over). */
CPU_INLINE void lane_stats(const float *restrict row, unsigned c0, unsigned c1, float *restrict m1, float *restrict m2,
                       unsigned *restrict a1, float *restrict n1, float *restrict n2, unsigned *restrict b1)
{
    for (unsigned j = 0; j < 16; j++) {
        m1[j] = m2[j] = -INFINITY;
        n1[j] = n2[j] = INFINITY;
        a1[j] = b1[j] = c1;
    }
    for (unsigned c = c0; c + 16 <= c1; c += 16)
        for (unsigned j = 0; j < 16; j++) {
            float v = row[c + j];
            int gt = v > m1[j], lt = v < n1[j];
            m2[j] = gt ? m1[j] : (v > m2[j] ? v : m2[j]);
            m1[j] = gt ? v : m1[j];
            a1[j] = gt ? c + j : a1[j];
            n2[j] = lt ? n1[j] : (v < n2[j] ? v : n2[j]);
            n1[j] = lt ? v : n1[j];
            b1[j] = lt ? c + j : b1[j];
        }
}

GEAR_CLONES
static gstats group_stats(const float *row, unsigned c0, unsigned c1)
{
    gstats g = {-INFINITY, -INFINITY, INFINITY, INFINITY, c0, c0};
    unsigned m = c1 - c0;
#ifdef GEAR_CPU_AVX512
    if (m == 64 && (CPU_AVX512 || CPU_AVX2)) {
        float o[4];
        unsigned pos[2];
        (CPU_AVX512 ? gear_cpu_stats64_avx512 : gear_cpu_stats64_avx2)(row + c0, o, pos);
        return (gstats){o[0], o[1], o[2], o[3], c0 + pos[0], c0 + pos[1]};
    }
#endif
    if (m % 16) { /* odd group length: plain scan */
        for (unsigned c = c0; c < c1; c++) {
            float v = row[c];
            if (v > g.mx1) { g.mx2 = g.mx1; g.mx1 = v; g.amx = c; } else if (v > g.mx2) g.mx2 = v;
            if (v < g.mn1) { g.mn2 = g.mn1; g.mn1 = v; g.amn = c; } else if (v < g.mn2) g.mn2 = v;
        }
        return g;
    }
    float m1[16], m2[16], n1[16], n2[16];
    unsigned a1[16], b1[16];
    lane_stats(row, c0, c1, m1, m2, a1, n1, n2, b1);
    unsigned wm = 0, wn = 0; /* winning lanes: extreme value, then first position */
    for (unsigned j = 1; j < 16; j++) {
        if (m1[j] > m1[wm] || (m1[j] == m1[wm] && a1[j] < a1[wm])) wm = j;
        if (n1[j] < n1[wn] || (n1[j] == n1[wn] && b1[j] < b1[wn])) wn = j;
    }
    g.mx1 = m1[wm]; g.amx = a1[wm]; g.mn1 = n1[wn]; g.amn = b1[wn];
    g.mx2 = m2[wm];
    g.mn2 = n2[wn];
    for (unsigned j = 0; j < 16; j++) {
        if (j != wm) g.mx2 = m1[j] > g.mx2 ? m1[j] : g.mx2;
        if (j != wn) g.mn2 = n1[j] < g.mn2 ? n1[j] : g.mn2;
    }
    return g;
}

/* codes == 0 (CQ blocks): select and write the outliers only. */
static void quantize_keys(const gear_block_layout *L, const float *x, uint8_t *blk,
                          cpu_scratch *s, int codes, int want_e)
{
    unsigned d = L->d, levels = (1u << L->bits) - 1u;
    float *mx1 = s->y, *mx2 = s->y + d, *mn1 = s->pt, *mn2 = s->pt + d;
    for (unsigned g = 0; g < L->groups_per_row; g++) {
        unsigned last = g + 1 == L->groups_per_row;
        unsigned t0 = g * L->group, t1 = last ? L->n : t0 + L->group, m = t1 - t0;
        unsigned k = last ? L->k_tail : L->k_full;
        key_group(L, x, t0, t1, k, mx1, mx2, mn1, mn2, s->omax, s->omin);
        for (unsigned c = 0; c < d; c++) {
            float lo = mn1[c], hi = mx1[c];
            if (k) {
                if (s->omin[c] == s->omax[c]) s->omin[c] = t0 + 1; /* constant group */
                lo = m > 2 ? mn2[c] : 0.0f;
                hi = m > 2 ? mx2[c] : 0.0f;
                unsigned a = s->omax[c] < s->omin[c] ? s->omax[c] : s->omin[c];
                unsigned b = s->omax[c] ^ s->omin[c] ^ a;
                size_t j = (size_t)c * L->outliers_per_row + 2 * (size_t)L->k_full * g;
                cpu_put_u16(blk + L->off_oidx + 2 * j, (uint16_t)(a * d + c));
                cpu_put_u16(blk + L->off_oidx + 2 * j + 2, (uint16_t)(b * d + c));
                cpu_put_u16(blk + L->off_oval + 2 * j, gear_float_to_half(x[(size_t)a * d + c]));
                cpu_put_u16(blk + L->off_oval + 2 * j + 2, gear_float_to_half(x[(size_t)b * d + c]));
            }
            size_t gi = (size_t)c * L->groups_per_row + g;
            if (codes)
                group_params(lo, hi, levels, blk + L->off_scales + 2 * gi, blk + L->off_mins + 2 * gi,
                             &s->mn[c], &s->dl[c]);
        }
        for (unsigned t = t0; t < t1 && codes; t++)
            key_codes(d, x + (size_t)t * d, t, s->mn, s->dl, s->omax, s->omin, NULL, k != 0, (float)levels,
                      s->codes + (size_t)t * d, want_e ? s->e + (size_t)t * d : NULL);
    }
}

/* The parameters of ng groups from their ranges [lo, hi] (group_params),
 * which become the fp32 minima and scales.  One loop over a block's
 * groups between their statistics and their codes, rather than a call
 * between the two for every group (AVX2-only build, values: kivi2 1.71 ->
 * 1.84 GB/s, gear2 1.21 -> 1.22; GCC 12 vectorizes neither this nor
 * halves_of: "no vectype" for the conversions to fp16). */
static void group_params_all(float *lo, float *hi, size_t ng, unsigned levels, uint8_t *scales, uint8_t *mins)
{
    for (size_t i = 0; i < ng; i++)
        group_params(lo[i], hi[i], levels, scales + 2 * i, mins + 2 * i, &lo[i], &hi[i]);
}

/* dst[j] = fp16 of v[j] (the outliers' values of a block). */
static void halves_of(const float *v, size_t m, uint8_t *dst)
{
    for (size_t j = 0; j < m; j++) cpu_put_u16(dst + 2 * j, gear_float_to_half(v[j]));
}

/* Values: groups run along the channels of one token row (contiguous).
 * The statistics of every group first, then their parameters and the
 * outliers' values, each in one loop over the block, then the codes. */
static void quantize_values(const gear_block_layout *L, const float *x, uint8_t *blk,
                            cpu_scratch *s, int codes, int want_e)
{
    unsigned d = L->d, gpr = L->groups_per_row, levels = (1u << L->bits) - 1u;
    /* n*d floats and unsigneds each, free until the codes: a group's
     * range and outlier positions, and the outliers' values (e is written
     * by the codes, after they are stored) */
    float *lo = s->mn, *hi = s->dl, *ov = s->e;
    unsigned *amx = s->omax, *amn = s->omin;
    size_t j = 0;
    for (unsigned t = 0; t < L->n; t++) {
        const float *row = x + (size_t)t * d;
        for (unsigned g = 0; g < gpr; g++) {
            unsigned last = g + 1 == gpr;
            unsigned c0 = g * L->group, c1 = last ? d : c0 + L->group, m = c1 - c0;
            unsigned k = last ? L->k_tail : L->k_full;
            size_t gi = (size_t)t * gpr + g;
            gstats st = group_stats(row, c0, c1);
            lo[gi] = st.mn1;
            hi[gi] = st.mx1;
            amx[gi] = st.amx;
            amn[gi] = st.amn;
            if (k) {
                if (st.amn == st.amx) amn[gi] = c0 + 1;
                lo[gi] = m > 2 ? st.mn2 : 0.0f;
                hi[gi] = m > 2 ? st.mx2 : 0.0f;
                unsigned a = st.amx < amn[gi] ? st.amx : amn[gi], b = st.amx ^ amn[gi] ^ a;
                cpu_put_u16(blk + L->off_oidx + 2 * j, (uint16_t)(t * d + a));
                cpu_put_u16(blk + L->off_oidx + 2 * j + 2, (uint16_t)(t * d + b));
                ov[j] = row[a];
                ov[j + 1] = row[b];
                j += 2;
            }
        }
    }
    halves_of(ov, j, blk + L->off_oval);
    if (!codes) return;
    group_params_all(lo, hi, (size_t)L->n * gpr, levels, blk + L->off_scales, blk + L->off_mins);
    for (unsigned t = 0; t < L->n; t++)
        for (unsigned g = 0; g < gpr; g++) {
            unsigned last = g + 1 == gpr;
            unsigned c0 = g * L->group, c1 = last ? d : c0 + L->group;
            unsigned k = last ? L->k_tail : L->k_full;
            size_t gi = (size_t)t * gpr + g;
            value_codes(x + (size_t)t * d, c0, c1, amx[gi], amn[gi], NULL, k != 0, lo[gi], hi[gi], (float)levels,
                        s->codes + (size_t)t * d, want_e ? s->e + (size_t)t * d : NULL);
        }
}

/* More than one outlier per side, up to SEL_KMAX (beyond, ref's sort). */
#define SEL_KMAX 64

/* Floats kept as their bits in the selection's lists, so that its
 * selects are bitwise: written as `better ? a : b` on floats, GCC 12
 * stores only the lanes that change (masked stores, several times slower
 * on Zen 4: compression with 2 outliers a side 0.45 -> 0.56 GB/s). */
static inline uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* One insertion step into list j of every column: where c beats v (sign
 * +1: larger; -1: smaller; equal values: the earlier row, as a displaced
 * entry carried down the list is earlier than those it meets), they trade
 * places, positions with them. */
CPU_INLINE void insert_step(uint32_t *restrict v, uint32_t *restrict p, uint32_t *restrict cv, uint32_t *restrict cp,
                            unsigned w, float sign)
{
    for (unsigned i = 0; i < w; i++) {
        float a_ = float_of(cv[i]), b_ = float_of(v[i]);
        int better = (sign * a_ > sign * b_) | ((a_ == b_) & (float_of(cp[i]) < float_of(p[i])));
        uint32_t m = 0u - (uint32_t)better;
        uint32_t a = v[i], b = cv[i], c = p[i], e = cp[i];
        v[i] = (b & m) | (a & ~m);
        cv[i] = (a & m) | (b & ~m);
        p[i] = (e & m) | (c & ~m);
        cp[i] = (c & m) | (e & ~m);
    }
}

/* Per column i < w of the rows [a0, a1) of z (row stride w), as ref
 * selects a group's outliers: the k largest entries (ties: the first row
 * first) into tv/tp[j*w + i], best first, then the k smallest of the other
 * entries into bv/bp.  Each list runs to k + 1 entries: with more than 2k
 * rows, their last values are the largest and the smallest entry left
 * (the range the group's codes cover).  Values and positions (rows from
 * a0, as floats, exact below 2^24) as bits; cv, cp: w entries of scratch.
 * Every column at once, so the loops run across the vector lanes (ref
 * sorts each group, twice). */
GEAR_CLONES
static void select_columns(const float *restrict z, unsigned w, unsigned a0, unsigned a1, unsigned k,
                           uint32_t *restrict tv, uint32_t *restrict tp, uint32_t *restrict bv,
                           uint32_t *restrict bp, uint32_t *restrict cv, uint32_t *restrict cp)
{
    for (size_t i = 0; i < (size_t)(k + 1) * w; i++) {
        tv[i] = bits_of(-INFINITY);
        bv[i] = bits_of(INFINITY);
        tp[i] = bp[i] = bits_of(-1.0f);
    }
    for (unsigned a = a0; a < a1; a++) {
        const float *row = z + (size_t)a * w;
        for (unsigned i = 0; i < w; i++) {
            cv[i] = bits_of(row[i]);
            cp[i] = bits_of((float)(a - a0));
        }
        for (unsigned j = 0; j <= k; j++) insert_step(tv + (size_t)j * w, tp + (size_t)j * w, cv, cp, w, 1.0f);
    }
    for (unsigned a = a0; a < a1; a++) {
        const float *row = z + (size_t)a * w;
        uint32_t pa = bits_of((float)(a - a0));
        for (unsigned i = 0; i < w; i++) {
            cv[i] = bits_of(row[i]);
            cp[i] = pa;
        }
        for (unsigned j = 0; j < k; j++) { /* the k largest stay out: +Inf never enters (inputs are finite) */
            const uint32_t *p = tp + (size_t)j * w;
            for (unsigned i = 0; i < w; i++) cv[i] = p[i] == pa ? bits_of(INFINITY) : cv[i];
        }
        for (unsigned j = 0; j <= k; j++) insert_step(bv + (size_t)j * w, bp + (size_t)j * w, cv, cp, w, -1.0f);
    }
}

/* z (rows x w) transposed into zt (w x rows). */
GEAR_CLONES
static void transpose(const float *restrict z, unsigned rows, unsigned w, float *restrict zt)
{
    for (unsigned a = 0; a < rows; a++)
        for (unsigned i = 0; i < w; i++) zt[(size_t)i * rows + a] = z[(size_t)a * w + i];
}

static void sort_small(unsigned *a, unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && a[j] < a[j - 1]; j--) {
            unsigned t = a[j];
            a[j] = a[j - 1];
            a[j - 1] = t;
        }
}

/* Any number of outliers per side (k_full, k_tail <= SEL_KMAX), as ref's
 * outlier_select and quantize give them: group by group, the outliers
 * into mask (n*d, flat index: 1 at an outlier), then, with codes, the
 * group quantized over the rest, and the residual of the low rank (0 at
 * outliers) with want_e; last the block's outlier section, row by row.
 * Selection runs on z, whose rows are the groups' positions and whose
 * columns are the layout's rows: x for keys, x transposed for values. */
static void quantize_masked(const gear_block_layout *L, const float *x, uint8_t *blk, cpu_scratch *s, int codes,
                            int want_e)
{
    unsigned n = L->n, d = L->d, levels = (1u << L->bits) - 1u, key = L->kind == GEAR_KEY;
    unsigned w = key ? d : n, kmax = (L->k_full > L->k_tail ? L->k_full : L->k_tail) + 1;
    uint8_t *mask = (uint8_t *)s->omin; /* n*d unsigned: room for n*d bytes */
    unsigned *res = s->omax;            /* [group][column][2k]: at most n*d */
    const float *z = x;
    if (!key) {
        transpose(x, n, d, s->dl);
        z = s->dl;
    }
    /* y and pt hold 256*max(n, d) floats each: (2(k+1) + 1)*w fit (allocated
     * memory: its entries take the type they are stored with) */
    uint32_t *tv = (uint32_t *)s->y, *bv = tv + (size_t)kmax * w, *cv = tv + 2 * (size_t)kmax * w;
    uint32_t *tp = (uint32_t *)s->pt, *bp = tp + (size_t)kmax * w, *cp = tp + 2 * (size_t)kmax * w;
    memset(mask, 0, (size_t)n * d);
    size_t rpos = 0;
    for (unsigned g = 0; g < L->groups_per_row; g++) {
        unsigned last = g + 1 == L->groups_per_row, a0 = g * L->group, m = last ? L->tail_len : L->group;
        unsigned k = last ? L->k_tail : L->k_full, a1 = a0 + m;
        if (k) select_columns(z, w, a0, a1, k, tv, tp, bv, bp, cv, cp);
        for (unsigned i = 0; i < w; i++) { /* column i: layout row i (a channel of keys, a token of values) */
            float lo = INFINITY, hi = -INFINITY;
            if (k) {
                unsigned *pos = res + rpos;
                rpos += 2 * k;
                for (unsigned j = 0; j < k; j++) {
                    pos[j] = a0 + (unsigned)float_of(tp[(size_t)j * w + i]);
                    pos[k + j] = a0 + (unsigned)float_of(bp[(size_t)j * w + i]);
                }
                for (unsigned j = 0; j < 2 * k; j++) mask[key ? (size_t)pos[j] * d + i : (size_t)i * d + pos[j]] = 1;
                sort_small(pos, 2 * k);
                if (m > 2 * k) {
                    lo = float_of(bv[(size_t)k * w + i]);
                    hi = float_of(tv[(size_t)k * w + i]);
                }
            } else { /* no outliers in this group (a short tail) */
                for (unsigned a = a0; a < a1; a++) {
                    float v = z[(size_t)a * w + i];
                    lo = v < lo ? v : lo;
                    hi = v > hi ? v : hi;
                }
            }
            if (!codes) continue;
            if (lo > hi) lo = hi = 0.0f; /* every entry an outlier */
            size_t gi = (size_t)i * L->groups_per_row + g;
            float mnf, dlf;
            group_params(lo, hi, levels, blk + L->off_scales + 2 * gi, blk + L->off_mins + 2 * gi, &mnf, &dlf);
            if (key) {
                s->mn[i] = mnf;
                s->dl[i] = dlf;
            } else {
                value_codes(x + (size_t)i * d, a0, a1, 0, 0, mask + (size_t)i * d, 1, mnf, dlf, (float)levels,
                            s->codes + (size_t)i * d, want_e ? s->e + (size_t)i * d : NULL);
            }
        }
        if (codes && key) /* the group's token rows, now that every channel's outliers are marked */
            for (unsigned t = a0; t < a1; t++)
                key_codes(d, x + (size_t)t * d, t, s->mn, s->dl, NULL, NULL, mask + (size_t)t * d, 1, (float)levels,
                          s->codes + (size_t)t * d, want_e ? s->e + (size_t)t * d : NULL);
    }
    /* the outlier section: layout row r, its groups in order */
    size_t j = 0;
    for (unsigned r = 0; r < L->rows; r++) {
        size_t gpos = 0;
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            unsigned k = g + 1 == L->groups_per_row ? L->k_tail : L->k_full;
            const unsigned *pos = res + gpos + (size_t)r * 2 * k;
            gpos += (size_t)w * 2 * k;
            for (unsigned i = 0; i < 2 * k; i++, j++) {
                unsigned f = key ? pos[i] * d + r : r * d + pos[i];
                cpu_put_u16(blk + L->off_oidx + 2 * j, (uint16_t)f);
                cpu_put_u16(blk + L->off_oval + 2 * j, gear_float_to_half(x[f]));
            }
        }
    }
}

/* Pack codes[i] (one byte each) of a row into b-bit little-endian fields. */
/* Contiguous codes, whole bytes: the shifts are constants per case, so
 * the loops vectorize. */
GEAR_CLONES
static void pack_contig(const uint8_t *restrict c, unsigned nbytes, unsigned bits, uint8_t *restrict row)
{
    switch (bits) {
    case 2:
        for (unsigned j = 0; j < nbytes; j++)
            row[j] = (uint8_t)(c[4 * j] | c[4 * j + 1] << 2 | c[4 * j + 2] << 4 | c[4 * j + 3] << 6);
        break;
    case 4:
        for (unsigned j = 0; j < nbytes; j++) row[j] = (uint8_t)(c[2 * j] | c[2 * j + 1] << 4);
        break;
    case 8:
        memcpy(row, c, nbytes);
        break;
    default: /* 1 bit */
        for (unsigned j = 0; j < nbytes; j++) {
            unsigned b = 0;
            for (unsigned i = 0; i < 8; i++) b |= (unsigned)c[8 * j + i] << i;
            row[j] = (uint8_t)b;
        }
    }
}

static void pack_row(const uint8_t *codes, size_t stride, unsigned len, unsigned bits, uint8_t *row)
{
    if (stride == 1 && 8 % bits == 0 && len % (8 / bits) == 0) {
        pack_contig(codes, len * bits / 8, bits, row);
        return;
    }
    if (8 % bits == 0) {
        unsigned per = 8 / bits;
        for (unsigned j = 0; j * per < len; j++) {
            unsigned byte = 0;
            for (unsigned i = 0; i < per && j * per + i < len; i++)
                byte |= (unsigned)codes[(size_t)(j * per + i) * stride] << (i * bits);
            row[j] = (uint8_t)byte;
        }
        return;
    }
    for (unsigned p = 0; p < len; p++) { /* 3 bits: fields may straddle bytes */
        unsigned q = codes[(size_t)p * stride];
        size_t bit = (size_t)p * bits;
        row[bit >> 3] |= (uint8_t)(q << (bit & 7));
        if ((bit & 7) + bits > 8) row[(bit >> 3) + 1] |= (uint8_t)(q >> (8 - (bit & 7)));
    }
}

/* Keys with whole bytes per row (n a multiple of 8/bits): byte j of
 * every channel row at once, OR-ing the codes of tokens per*j.. along the
 * contiguous channel axis (vectorizes), then a byte transpose into rows. */
GEAR_CLONES
static void pack_key_bytes(const uint8_t *restrict codes, unsigned n, unsigned d, unsigned bits,
                           uint8_t *restrict tmp, uint8_t *restrict rows, size_t row_bytes)
{
    unsigned per = 8 / bits, nb = n / per;
    for (unsigned j = 0; j < nb; j++) {
        uint8_t *dst = tmp + (size_t)j * d;
        const uint8_t *src = codes + (size_t)j * per * d;
        for (unsigned c = 0; c < d; c++) dst[c] = src[c];
        for (unsigned i = 1; i < per; i++)
            for (unsigned c = 0; c < d; c++) dst[c] |= (uint8_t)(src[(size_t)i * d + c] << (i * bits));
    }
    for (unsigned c = 0; c < d; c++)
        for (unsigned j = 0; j < nb; j++) rows[(size_t)c * row_bytes + j] = tmp[(size_t)j * d + c];
}

static void pack_codes(const gear_block_layout *L, const cpu_scratch *s, uint8_t *blk)
{
    if (L->kind == GEAR_KEY && 8 % L->bits == 0 && L->n % (8 / L->bits) == 0 &&
        L->row_bytes == L->n * L->bits / 8) {
        /* omax (n*d unsigned) is free once quantization is done */
        pack_key_bytes(s->codes, L->n, L->d, L->bits, (uint8_t *)s->omax, blk + L->off_codes,
                       L->row_bytes);
        return;
    }
    for (unsigned r = 0; r < L->rows; r++) {
        uint8_t *row = blk + L->off_codes + (size_t)r * L->row_bytes;
        if (L->kind == GEAR_KEY) /* row r = channel r: stride d through the token-major codes */
            pack_row(s->codes + r, L->d, L->n, L->bits, row);
        else
            pack_row(s->codes + (size_t)r * L->d, 1, L->d, L->bits, row);
    }
}

/* y[t][k] = sum_c e[t][c] pt[k][c], in 16 partial sums so it vectorizes */
GEAR_CLONES
static void mul_ep(const float *e, const float *pt, unsigned n, unsigned d, unsigned r, float *y)
{
    for (unsigned t = 0; t < n; t++)
        for (unsigned k = 0; k < r; k++) {
            const float *et = e + (size_t)t * d, *pk = pt + (size_t)k * d;
            float acc[16] = {0};
            unsigned c = 0;
            for (; c + 16 <= d; c += 16)
                for (unsigned j = 0; j < 16; j++) acc[j] += et[c + j] * pk[c + j];
            for (; c < d; c++) acc[0] += et[c] * pk[c];
            float sum = 0.0f;
            for (unsigned j = 0; j < 16; j++) sum += acc[j];
            y[t * r + k] = sum;
        }
}

/* pt[k][c] = sum_t y[t][k] e[t][c]: 16 channels of one column at a time,
 * the sums in a register through every token (one update of pt per token
 * and column, and the stores bounded it: rank 8 spent a quarter of its
 * time here) */
GEAR_CLONES
static void mul_ety(const float *restrict e, const float *restrict y, unsigned n, unsigned d, unsigned r,
                    float *restrict pt)
{
    unsigned c0 = 0;
    for (; c0 + 16 <= d; c0 += 16)
        for (unsigned k = 0; k < r; k++) {
            float acc[16] = {0};
            for (unsigned t = 0; t < n; t++) {
                const float *et = e + (size_t)t * d + c0;
                float w = y[(size_t)t * r + k];
                for (unsigned j = 0; j < 16; j++) acc[j] += w * et[j];
            }
            for (unsigned j = 0; j < 16; j++) pt[(size_t)k * d + c0 + j] = acc[j];
        }
    for (unsigned c = c0; c < d; c++) /* the last d mod 16 channels */
        for (unsigned k = 0; k < r; k++) {
            float acc = 0.0f;
            for (unsigned t = 0; t < n; t++) acc += y[(size_t)t * r + k] * e[(size_t)t * d + c];
            pt[(size_t)k * d + c] = acc;
        }
}

/* sum a[i]*b[i] in double, eight partial sums (one latency chain was most
 * of the orthonormalization) */
CPU_INLINE double dot_d(const float *restrict a, const float *restrict b, unsigned n)
{
    double acc[8] = {0};
    unsigned i = 0;
    for (; i + 8 <= n; i += 8)
        for (unsigned j = 0; j < 8; j++) acc[j] += (double)a[i + j] * b[i + j];
    for (; i < n; i++) acc[0] += (double)a[i] * b[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Modified Gram-Schmidt on the r columns of Y (n x r), as in ref, held
 * column-major (yt: r x n) so that every loop runs along contiguous
 * memory; a column's projections repeated once where they cancelled it
 * to below GEAR_GS_REPEAT of its squared norm (cpu.h). */
GEAR_CLONES
static void orthonormalize_t(float *restrict yt, unsigned n, unsigned r)
{
    for (unsigned c = 0; c < r; c++) {
        float *yc = yt + (size_t)c * n;
        double orig = dot_d(yc, yc, n), nrm = orig;
        for (int pass = 0; pass < 2 && c; pass++) { /* a second only after cancellation (GEAR_GS_REPEAT) */
            for (unsigned p = 0; p < c; p++) {
                const float *yp = yt + (size_t)p * n;
                float dot = (float)dot_d(yp, yc, n);
                for (unsigned i = 0; i < n; i++) yc[i] -= dot * yp[i];
            }
            double before = nrm;
            nrm = dot_d(yc, yc, n);
            if (nrm > before * GEAR_GS_REPEAT) break;
        }
        int dead = !(nrm > 1e-24) || nrm <= orig * 1e-12;
        float inv = dead ? 0.0f : (float)(1.0 / sqrt(nrm));
        for (unsigned i = 0; i < n; i++) yc[i] *= inv;
    }
}

/* The same on y (n x r, row-major), through yt. */
GEAR_CLONES
static void orthonormalize(float *restrict y, unsigned n, unsigned r, float *restrict yt)
{
    if (r == 2) { /* the presets' rank (GCC 12 leaves these loops scalar too) */
        for (unsigned i = 0; i < n; i++) yt[i] = y[2 * i], yt[n + i] = y[2 * i + 1];
#ifdef GEAR_CPU_AVX512
        if (CPU_AVX2 && n % 8 == 0)
            gear_cpu_orthonormalize_t_avx2(yt, n, 2);
        else
#endif
            orthonormalize_t(yt, n, 2);
        for (unsigned i = 0; i < n; i++) y[2 * i] = yt[i], y[2 * i + 1] = yt[n + i];
        return;
    }
    for (unsigned i = 0; i < n; i++)
        for (unsigned c = 0; c < r; c++) yt[(size_t)c * n + i] = y[(size_t)i * r + c];
    orthonormalize_t(yt, n, r);
    for (unsigned i = 0; i < n; i++)
        for (unsigned c = 0; c < r; c++) y[(size_t)i * r + c] = yt[(size_t)c * n + i];
}

static void lowrank(const gear_block_layout *L, const gear_block_id *id, cpu_scratch *s,
                    uint8_t *blk)
{
    unsigned n = L->n, d = L->d, r = L->rank;
    uint64_t key = gear_rng_key(id->seed, id->layer, id->head, id->block, L->kind);
    int fast = CPU_AVX512 && d % 16 == 0, fast2 = CPU_AVX2 && d % 8 == 0;
    (void)fast;
    (void)fast2;
#ifdef GEAR_CPU_AVX512
    if (fast2)
        gear_cpu_start_matrix_avx2(key, d, r, s->pt);
    else
#endif
        for (unsigned c = 0; c < d; c++)
            for (unsigned k = 0; k < r; k++) s->pt[(size_t)k * d + c] = gear_rng_uniform(key, c * r + k);
    for (unsigned it = 0; it < L->iters; it++) {
#ifdef GEAR_CPU_AVX512
        /* four columns a pass over e (their accumulators in registers):
         * ranks above 4 took the portable loop, 20x slower at rank 8 */
        if (fast || fast2)
            for (unsigned k0 = 0; k0 < r; k0 += 4)
                (fast ? gear_cpu_mul_ep_avx512 : gear_cpu_mul_ep_avx2)(s->e, s->pt + (size_t)k0 * d, n, d,
                                                                      r - k0 < 4 ? r - k0 : 4, s->y + k0, r);
        else
#endif
            mul_ep(s->e, s->pt, n, d, r, s->y);
        orthonormalize(s->y, n, r, s->mn); /* mn: n*d floats, free by now */
#ifdef GEAR_CPU_AVX512
        if (fast || fast2)
            (fast ? gear_cpu_mul_ety_avx512 : gear_cpu_mul_ety_avx2)(s->e, s->y, n, d, r, s->pt);
        else
#endif
            mul_ety(s->e, s->y, n, d, r, s->pt);
    }
#ifdef GEAR_CPU_AVX512
    if (CPU_AVX2) { /* GCC 12 leaves the loops below scalar (gear_half_sat) */
        float *bt = s->mn; /* B as stored, [c][k] (mn is free by now) */
        if (r == 2)
            for (unsigned c = 0; c < d; c++) bt[2 * c] = s->pt[c], bt[2 * c + 1] = s->pt[d + c];
        else
            for (unsigned c = 0; c < d; c++)
                for (unsigned k = 0; k < r; k++) bt[(size_t)c * r + k] = s->pt[(size_t)k * d + c];
        gear_cpu_halves_sat_avx2(s->y, (size_t)n * r, blk + L->off_a);
        gear_cpu_halves_sat_avx2(bt, (size_t)d * r, blk + L->off_b);
        return;
    }
#endif
    for (size_t i = 0; i < (size_t)n * r; i++) cpu_put_u16(blk + L->off_a + 2 * i, gear_half_sat(s->y[i]));
    for (unsigned c = 0; c < d; c++)
        for (unsigned k = 0; k < r; k++)
            cpu_put_u16(blk + L->off_b + 2 * ((size_t)c * r + k), gear_half_sat(s->pt[(size_t)k * d + c]));
}

#ifdef GEAR_CPU_AVX512
/* lowrank() with E held transposed in s->e (d x n: what the AVX2 value
 * compressor leaves), so that it need not be transposed back: the same
 * iteration with the products' roles swapped.  P is kept as stored,
 * [c][k] (the start matrix is then the stream in order), Y as Y^T (r x n,
 * the layout Gram-Schmidt works in).  AVX2 (d and n multiples of 8). */
static void lowrank_t(const gear_block_layout *L, const gear_block_id *id, cpu_scratch *s, uint8_t *blk)
{
    unsigned n = L->n, d = L->d, r = L->rank;
    float *pc = s->pt, *yt = s->y, *a = s->mn; /* d x r, r x n, n x r */
    gear_cpu_start_matrix_avx2(gear_rng_key(id->seed, id->layer, id->head, id->block, L->kind), d * r, 1, pc);
    for (unsigned it = 0; it < L->iters; it++) {
        gear_cpu_mul_ety_avx2(s->e, pc, d, n, r, yt);                   /* Y^T[k][t] = sum_c P[c][k] E^T[c][t] */
        gear_cpu_orthonormalize_t_avx2(yt, n, r);
        for (unsigned k0 = 0; k0 < r; k0 += 4)                          /* P[c][k] = sum_t E^T[c][t] Y^T[k][t] */
            gear_cpu_mul_ep_avx2(s->e, yt + (size_t)k0 * n, d, n, r - k0 < 4 ? r - k0 : 4, pc + k0, r);
    }
    for (unsigned t = 0; t < n; t++)
        for (unsigned k = 0; k < r; k++) a[(size_t)t * r + k] = yt[(size_t)k * n + t];
    gear_cpu_halves_sat_avx2(a, (size_t)n * r, blk + L->off_a);
    gear_cpu_halves_sat_avx2(pc, (size_t)d * r, blk + L->off_b);
}

/* The low rank after the AVX2 compressor: keys leave E, values E^T. */
static void avx2_lowrank(const gear_block_layout *L, const gear_block_id *id, cpu_scratch *s, uint8_t *blk)
{
    if (!L->rank) return;
    if (L->kind == GEAR_KEY)
        lowrank(L, id, s, blk);
    else
        lowrank_t(L, id, s, blk);
}
#endif

/* Layouts of the two-pass AVX2 compressor (cpu_avx2_compress.c), on CPUs
 * without AVX-512; from fp16, values are converted as they are
 * transposed, keys by pass 1. */
static int avx2_fits(const gear_block_layout *L)
{
#ifdef GEAR_CPU_AVX512
    return CPU_AVX2_ONLY && gear_cpu_block_avx2_fits(L);
#else
    (void)L;
    return 0;
#endif
}

/* Shapes of the fused AVX-512 kernel (cpu_avx512_compress.c): groups
 * whose codes fill whole dwords (1024 bits at most), the last one
 * possibly shorter (values at d = 80, 96 in groups of 64), both of a
 * multiple of 4 entries (pass 1 takes 4 rows a step: implied by whole
 * dwords at 8 bits or fewer); up to CPU_AVX512_KMAX outliers a side in
 * each, and no more than half its entries (as gear_outliers_per_side
 * gives them; the selection needs it, so it is checked here too);
 * 16-lane columns, rank <= 8. */
static int avx512_fits(const gear_block_layout *L)
{
#ifdef GEAR_CPU_AVX512
    unsigned b = L->bits;
    return CPU_AVX512_COMPRESS && !L->cq_dim && (b == 1 || b == 2 || b == 4 || b == 8) &&
           L->k_full <= CPU_AVX512_KMAX && L->k_tail <= CPU_AVX512_KMAX && 2 * L->k_full <= L->group &&
           2 * L->k_tail <= L->tail_len && L->group % 4 == 0 && L->group * b % 32 == 0 && L->group * b <= 1024 &&
           L->tail_len * b % 32 == 0 && L->n % 16 == 0 && L->d % 16 == 0 && L->rank <= 8;
#else
    (void)L;
    return 0;
#endif
}

int gear_cpu_compress_f16_direct(const gear_block_layout *L)
{
#ifdef GEAR_CPU_AVX512
    return avx512_fits(L) || avx2_fits(L);
#else
    (void)L;
    return 0;
#endif
}

gear_status gear_cpu_compress_one_f16(const gear_block_layout *L, const gear_block_id *id,
                                      const uint16_t *x, size_t ld, uint8_t *blk, cpu_scratch *s)
{
    if (!scratch_reserve(s, L)) return GEAR_ERR_NO_MEMORY;
#ifdef GEAR_CPU_AVX512
    if (avx512_fits(L))
        return gear_cpu_compress_avx512_f16(L, id, x, ld, s->next, s->after, blk, s->mn, s->e, s->y, s->pt) ? GEAR_OK
                                                                                          : GEAR_ERR_NONFINITE;
    if (avx2_fits(L)) {
        const gear_cpu_next pf = {s->next, s->after, ld};
        float *e = L->rank ? s->e : NULL;
        if (!(L->kind == GEAR_KEY ? gear_cpu_key_block_avx2_f16(L, x, ld, &pf, blk, e, s->dl)
                                  : gear_cpu_value_block_avx2_f16(L, x, ld, &pf, blk, e, s->dl, (uint16_t *)s->mn)))
            return GEAR_ERR_NONFINITE;
        avx2_lowrank(L, id, s, blk);
        return GEAR_OK;
    }
#else
    (void)id, (void)x, (void)ld, (void)blk;
#endif
    return GEAR_ERR_UNSUPPORTED;
}

gear_status gear_cpu_compress_one(const gear_block_layout *L, const gear_block_id *id,
                                  const float *x, uint8_t *blk, cpu_scratch *s)
{
    if (!scratch_reserve(s, L)) return GEAR_ERR_NO_MEMORY;
#ifdef GEAR_CPU_AVX512
    if (avx512_fits(L)) {
        gear_cpu_compress_avx512(L, id, x, blk, s->mn, s->e, s->y, s->pt);
        return GEAR_OK;
    }
#endif
    int want_e = L->rank > 0, cq = L->cq_dim != 0;
    const struct gear_backend_i *ref = gear_backend_ref_table();
    if ((L->k_full > 1 || L->k_tail > 1) && L->k_full <= SEL_KMAX && L->k_tail <= SEL_KMAX) {
        quantize_masked(L, x, blk, s, !cq, want_e);
        if (!cq) pack_codes(L, s, blk);
    } else if (L->k_full > 1 || L->k_tail > 1) {
        /* hundreds of outliers a side: the reference primitives (a sort a group) */
        gear_status st = ref->outlier_select(NULL, L, x, blk);
        if (!st && !cq) st = ref->quantize(NULL, L, x, blk);
        if (!st && want_e && !cq) st = ref->dequantize(NULL, L, blk, s->e);
        if (st) return st;
        if (want_e && !cq) {
            for (size_t i = 0; i < (size_t)L->n * L->d; i++) s->e[i] = x[i] - s->e[i];
            for (size_t j = 0; j < L->n_outliers; j++) s->e[cpu_u16(blk + L->off_oidx + 2 * j)] = 0.0f;
        }
#ifdef GEAR_CPU_AVX512
    } else if (avx2_fits(L)) {
        /* two passes a strip of 8 columns, codes packed in place (gear2,
         * AVX2-only build, bench codec, one thread: keys 1.57 -> 2.87
         * GB/s, values 1.17 -> 2.74) */
        if (L->kind == GEAR_KEY)
            gear_cpu_key_block_avx2(L, x, blk, want_e ? s->e : NULL);
        else
            gear_cpu_value_block_avx2(L, x, blk, want_e ? s->e : NULL, s->dl);
        avx2_lowrank(L, id, s, blk);
        return GEAR_OK;
#endif
    } else if (!cq || L->n_outliers) {
        if (L->kind == GEAR_KEY)
            quantize_keys(L, x, blk, s, !cq, want_e);
        else
            quantize_values(L, x, blk, s, !cq, want_e);
        if (!cq) pack_codes(L, s, blk);
    }
    if (cq) {
        gear_cpu_cq_encode(L, s->cbt, x, blk, s->codes);
        if (!want_e) return GEAR_OK;
        /* CQ's low rank is ref's double power iteration on xq = Q^ + S, so
         * that A and B (and whole CQ caches) match ref byte for byte; the
         * float iteration below gives slightly different factors. */
        gear_cpu_cq_decode(L, blk, s->e);
        for (size_t j = 0; j < L->n_outliers; j++)
            s->e[cpu_u16(blk + L->off_oidx + 2 * j)] = gear_half_to_float(cpu_u16(blk + L->off_oval + 2 * j));
        return ref->lowrank_fit(NULL, L, id, x, s->e, blk);
    }
    if (want_e) lowrank(L, id, s, blk);
    return GEAR_OK;
}
