/*
 * cpu_avx2_compress.c - quantization of a block in two passes over
 * strips of 8 columns, for CPUs with AVX2, FMA and F16C but no AVX-512:
 * the scheme of the fused AVX-512 compressor (cpu_avx512_compress.c),
 * eight lanes wide, for at most one outlier a side per group.
 *
 * It runs on a matrix Z whose quantization groups are runs of `group`
 * consecutive rows of one column, so 8 groups fill a vector: keys, Z = X
 * (a group is `group` tokens of one channel); values, Z = X^T, staged by
 * 8x8 transposes (of halves from fp16 input, of floats from fp32), and
 * the residual left as E^T for the power iteration.  Pass 1 keeps each
 * lane's two largest and two smallest entries (no positions; from fp16,
 * on 16-bit keys of the halves, two strips a vector); pass 2 finds the
 * outliers as the first entries equal to the extremes, and computes the
 * codes (summed into 32-bit words in registers: a code row of the block
 * is a column of Z), the residual and the outliers' rows.  The portable
 * loops it replaces took a pass for the statistics with positions, a
 * scalar loop over channels for the parameters and outliers, a true
 * division a code and a packing pass.
 * Bit-exact with ref (codes, scales, outliers).
 */
#include <immintrin.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"
#include "cpu_top2.h"

#define INLINE static inline __attribute__((always_inline))

/* 1.5 * 2^23: q + MAGIC rounds q half-to-even to an integer held in the
 * low mantissa bits (exactly rintf for |q| < 2^22; larger |q| is clamped). */
#define MAGIC 12582912.0f

/* The fp16-rounded parameters of 8 groups and their extremes. */
typedef struct g8 {
    __m256 mx1, mn1, mnf, dlf, inv, nz;
    __m128i mn_h, dl_h;
} g8;

/* Row i of a strip (z: its first row, nc apart): from z, or (h)
 * converted from the fp16 rows x16 (ld apart) and stored into z on the
 * way, their sum kept in *fin (Inf and NaN survive a sum of halves; z is
 * then the caller's scratch). */
INLINE __m256 row8(const float *z, size_t nc, const uint16_t *x16, size_t ld, unsigned i, const int h, __m256 *fin)
{
    if (!h) return _mm256_loadu_ps(z + i * nc);
    __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x16 + i * ld)));
    _mm256_storeu_ps((float *)z + i * nc, v);
    *fin = _mm256_add_ps(*fin, v);
    return v;
}

/* Pass 1: maximum, second maximum, minimum, second minimum of columns
 * c0..c0+7 over rows [r0, r0+m) (m a multiple of 4; a multiset top-2:
 * mx2 == mx1 exactly when the maximum occurs twice), two streams so that
 * each chain carries one max or min a step.  h: the rows come from x16
 * (row8); returns 0 if one of them is Inf or NaN.  Its ten float maxima
 * and minima a pair of rows run on two of this core's four vector pipes
 * and bound it (2.5 cycles a row); fp16 rows take stats16 where they can.
 */
INLINE int stats8(const float *z, size_t nc, const uint16_t *x16, size_t ld, unsigned c0, unsigned r0, unsigned m,
                  unsigned k, const int h, __m256 *mx1, __m256 *mx2, __m256 *mn1, __m256 *mn2)
{
    __m256 a1 = _mm256_set1_ps(-__builtin_inff()), a2 = a1, b1 = _mm256_set1_ps(__builtin_inff()), b2 = b1;
    __m256 fin = _mm256_setzero_ps();
    z += r0 * nc + c0;
    if (h) x16 += r0 * ld + c0;
#define ROW(i) row8(z, nc, x16, ld, i, h, &fin)
#define NEXT(s)                                                                                                     \
    do {                                                                                                           \
        z += (s)*nc;                                                                                               \
        if (h) x16 += (s)*ld;                                                                                      \
    } while (0)
    CPU_TOP2_SCAN(__m256, _mm256_max_ps, _mm256_min_ps, ROW, NEXT, m, k, a1, a2, b1, b2);
#undef NEXT
#undef ROW
    *mx1 = a1, *mx2 = a2, *mn1 = b1, *mn2 = b2;
    const __m256 ex = _mm256_castsi256_ps(_mm256_set1_epi32(0x7f800000));
    return !h || !_mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(fin, ex), ex, _CMP_EQ_OQ));
}

/* The fp16 bits of 16 lanes as signed 16-bit keys in the order of their
 * values (-0 just below +0, NaN beyond Inf); its own inverse. */
INLINE __m256i key16(__m256i h)
{
    return _mm256_xor_si256(h, _mm256_and_si256(_mm256_srai_epi16(h, 15), _mm256_set1_epi16(0x7fff)));
}

/* Keys back to fp32: lanes 0-7 (lo) and 8-15 (hi). */
INLINE void key_floats(__m256i t, __m256 *lo, __m256 *hi)
{
    __m256i h = key16(t);
    *lo = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    *hi = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

/* stats8 for the 16 columns c0..c0+15 of fp16 rows (two strips), on the
 * keys of their bits, 16 lanes a vector, where stats8's float maxima and
 * minima, which run on two of this core's four vector pipes, had bound
 * pass 1 (bench codec, gear2 keys, AVX2-only build): the same extremes as
 * floats, but for which of two zeros is returned, which no output tells
 * apart (a zero scale or minimum is stored as +0, and a maximum that is
 * a zero twice is a tie either way).  Converts the rows into z on the
 * way; returns 0 if one is Inf or NaN (a key beyond the finite ones). */
INLINE int stats16(float *z, size_t nc, const uint16_t *x16, size_t ld, unsigned c0, unsigned r0, unsigned m,
                   unsigned k, __m256 mx1[2], __m256 mx2[2], __m256 mn1[2], __m256 mn2[2])
{
    __m256i a1 = _mm256_set1_epi16(INT16_MIN), a2 = a1, b1 = _mm256_set1_epi16(INT16_MAX), b2 = b1;
    z += r0 * nc + c0;
    x16 += r0 * ld + c0;
#define ROW16(i)                                                                                                    \
    (_mm256_storeu_ps(z + (i)*nc, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x16 + (i)*ld)))),              \
     _mm256_storeu_ps(z + (i)*nc + 8, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x16 + (i)*ld + 8)))),      \
     key16(_mm256_loadu_si256((const __m256i *)(x16 + (i)*ld))))
#define NEXT16(s) (z += (s)*nc, x16 += (s)*ld)
    CPU_TOP2_SCAN(__m256i, _mm256_max_epi16, _mm256_min_epi16, ROW16, NEXT16, m, k, a1, a2, b1, b2);
#undef NEXT16
#undef ROW16
    /* +Inf and NaN have keys from 0x7c00 up, -Inf and -NaN from -0x7c01 down */
    __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi16(a1, _mm256_set1_epi16(0x7bff)),
                                  _mm256_cmpgt_epi16(_mm256_set1_epi16(-0x7c00), b1));
    if (!_mm256_testz_si256(bad, bad)) return 0;
    key_floats(a1, &mx1[0], &mx1[1]);
    key_floats(a2, &mx2[0], &mx2[1]);
    key_floats(b1, &mn1[0], &mn1[1]);
    key_floats(b2, &mn2[0], &mn2[1]);
    return 1;
}

/* Scale and minimum of 8 groups from their remaining range [lo, hi], as
 * gear_group_params: fp32 step, fp16 rounding (vcvtps2ph rounds to
 * nearest even and overflows to Inf as gear_float_to_half does), an Inf
 * step saturated, -0 stored as +0. */
INLINE void params8(__m256 lo, __m256 hi, unsigned levels, g8 *g)
{
    const __m128i nz = _mm_set1_epi16((short)0x8000);
    __m256 dl = _mm256_div_ps(_mm256_sub_ps(hi, lo), _mm256_set1_ps((float)levels));
    __m128i mh = _mm256_cvtps_ph(lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m128i dh = _mm256_cvtps_ph(dl, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m128i inf = _mm_cmpeq_epi16(_mm_and_si128(dh, _mm_set1_epi16(0x7fff)), _mm_set1_epi16(0x7c00));
    dh = _mm_blendv_epi8(dh, _mm_set1_epi16(0x7bff), inf);
    g->mn_h = _mm_andnot_si128(_mm_cmpeq_epi16(mh, nz), mh);
    g->dl_h = _mm_andnot_si128(_mm_cmpeq_epi16(dh, nz), dh);
    g->mnf = _mm256_cvtph_ps(g->mn_h);
    g->dlf = _mm256_cvtph_ps(g->dl_h);
    g->nz = _mm256_cmp_ps(g->dlf, _mm256_setzero_ps(), _CMP_NEQ_UQ);
    /* dl == 0 (a constant group): inv 0 gives q = 0, code 0, like ref */
    g->inv = _mm256_and_ps(g->nz, _mm256_div_ps(_mm256_set1_ps(1.0f), g->dlf));
}

/* Outlier state of pass 2: the first rows equal to the maximum (om) and
 * then the minimum (on), as ref picks them: its first entry equal to the
 * maximum, then its first other entry equal to the minimum (a constant
 * group's are its first two rows).  Without ties (tie = 0) each extreme
 * occurs once and no "found" flags are needed. */
typedef struct ostate {
    __m256 fm, fn;
    __m256i am, an, iv;
} ostate;

/* The outlier lanes of row x (advancing the state); code 0, residual 0. */
INLINE __m256 outliers8(__m256 x, const g8 *g, const int tie, ostate *o)
{
    __m256 om = _mm256_cmp_ps(x, g->mx1, _CMP_EQ_OQ), on = _mm256_cmp_ps(x, g->mn1, _CMP_EQ_OQ);
    if (tie) {
        om = _mm256_andnot_ps(o->fm, om);
        o->fm = _mm256_or_ps(o->fm, om);
        on = _mm256_andnot_ps(_mm256_or_ps(om, o->fn), on);
        o->fn = _mm256_or_ps(o->fn, on);
    }
    o->am = _mm256_blendv_epi8(o->am, o->iv, _mm256_castps_si256(om));
    o->an = _mm256_blendv_epi8(o->an, o->iv, _mm256_castps_si256(on));
    o->iv = _mm256_add_epi32(o->iv, _mm256_set1_epi32(1));
    return _mm256_or_ps(om, on);
}

/* Pass 2 over rows [r0, r0+m) of columns c0..c0+7: codes packed into acc
 * (m*bits/32 words a column, code i at bits [i*bits, i*bits+bits) as in a
 * block row), residual v - code*dl into e (row-major like z, or NULL),
 * the rows of the outliers (k) into pm and pn.
 *
 * inr (every other entry's quotient rounds into [0, levels]): a word's
 * rows without clamping or per-row checks; the code is rint(v*(1/dl)) by
 * one FMA, and the largest |residual| of the word, compared once with
 * thr*dl, says whether some entry came so near a rounding boundary that
 * ref's true division might round the other way: then the word is redone
 * row by row, as every word is without inr: a row where some quotient
 * v*(1/dl) lies within 0.5 - thr of a boundary takes the true division,
 * and the codes are clamped.
 *
 * A word's codes are summed as floats, code j times 2^(bits*j), in two
 * halves of 16 bits (exact in fp32): one FMA a row where shifting the
 * integer code into place took three instructions. */
INLINE void codes8(const float *z, unsigned nc, unsigned r0, unsigned m, unsigned c0, const g8 *g, unsigned bits,
                   unsigned levels, float thr, const int k, const int tie, const int inr, float *e, __m256i *acc,
                   __m256i *pm, __m256i *pn)
{
    const unsigned cpd = 32 / bits, per = 16 / bits;
    const __m256 M = _mm256_set1_ps(MAGIC), MN = _mm256_set1_ps(MAGIC + (float)levels);
    const __m256 th = _mm256_set1_ps(thr), tdl = _mm256_mul_ps(th, g->dlf);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    float wt[16]; /* 2^(bits*j) */
    for (unsigned j = 0; j < per; j++) wt[j] = (float)(1u << (bits * j));
    ostate o = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                _mm256_set1_epi32((int)r0)};
    const float *p = z + (size_t)r0 * nc + c0;
    if (e) e += (size_t)r0 * nc + c0;
    for (unsigned w = 0; w * cpd < m; w++, p += (size_t)cpd * nc, e = e ? e + (size_t)cpd * nc : NULL) {
        __m256 h[2];
        const ostate o0 = o;
        if (inr && !tie) {
            /* each extreme occurs once: the outliers are the entries bitwise
             * equal to it, their lanes of v are zeroed (code 0 and residual
             * +0 follow), and the largest |residual| is an integer maximum
             * of the bits, so that the pipes of compares and maxima carry
             * two operations a row instead of five */
            const __m256i mxi = _mm256_castps_si256(g->mx1), mni = _mm256_castps_si256(g->mn1);
            const __m256i absi = _mm256_set1_epi32(0x7fffffff), one = _mm256_set1_epi32(1);
            __m256i bigi = _mm256_setzero_si256();
            for (unsigned u = 0; u < 2; u++) {
                __m256 hu = _mm256_setzero_ps();
                for (unsigned j = u * per; j < u * per + per; j++) {
                    __m256 x = _mm256_loadu_ps(p + (size_t)j * nc);
                    __m256 v = _mm256_sub_ps(x, g->mnf);
                    if (k) {
                        __m256i xi = _mm256_castps_si256(x);
                        __m256i om = _mm256_cmpeq_epi32(xi, mxi), on = _mm256_cmpeq_epi32(xi, mni);
                        v = _mm256_andnot_ps(_mm256_castsi256_ps(_mm256_or_si256(om, on)), v);
                        o.am = _mm256_blendv_epi8(o.am, o.iv, om);
                        o.an = _mm256_blendv_epi8(o.an, o.iv, on);
                        o.iv = _mm256_add_epi32(o.iv, one);
                    }
                    __m256 c = _mm256_sub_ps(_mm256_fmadd_ps(v, g->inv, M), M);
                    __m256 res = _mm256_fnmadd_ps(c, g->dlf, v);
                    bigi = _mm256_max_epu32(bigi, _mm256_and_si256(_mm256_castps_si256(res), absi));
                    if (e) _mm256_storeu_ps(e + (size_t)j * nc, res);
                    hu = _mm256_fmadd_ps(c, _mm256_broadcast_ss(&wt[j - u * per]), hu);
                }
                h[u] = hu;
            }
            if (!_mm256_movemask_ps(_mm256_cmp_ps(_mm256_castsi256_ps(bigi), tdl, _CMP_NLT_UQ))) {
                acc[w] = _mm256_or_si256(_mm256_cvttps_epi32(h[0]), _mm256_slli_epi32(_mm256_cvttps_epi32(h[1]), 16));
                continue;
            }
            o = o0;
        } else if (inr) {
            __m256 big = _mm256_setzero_ps();
            for (unsigned u = 0; u < 2; u++) {
                h[u] = _mm256_setzero_ps();
                for (unsigned j = u * per; j < u * per + per; j++) {
                    __m256 x = _mm256_loadu_ps(p + (size_t)j * nc);
                    __m256 v = _mm256_sub_ps(x, g->mnf);
                    __m256 c = _mm256_sub_ps(_mm256_fmadd_ps(v, g->inv, M), M);
                    __m256 res = _mm256_fnmadd_ps(c, g->dlf, v);
                    if (k) {
                        __m256 out = outliers8(x, g, tie, &o);
                        c = _mm256_andnot_ps(out, c);
                        res = _mm256_andnot_ps(out, res);
                    }
                    big = _mm256_max_ps(big, _mm256_and_ps(res, absm));
                    if (e) _mm256_storeu_ps(e + (size_t)j * nc, res);
                    h[u] = _mm256_fmadd_ps(c, _mm256_broadcast_ss(&wt[j - u * per]), h[u]);
                }
            }
            if (!_mm256_movemask_ps(_mm256_cmp_ps(big, tdl, _CMP_NLT_UQ))) {
                acc[w] = _mm256_or_si256(_mm256_cvttps_epi32(h[0]), _mm256_slli_epi32(_mm256_cvttps_epi32(h[1]), 16));
                continue;
            }
            o = o0;
        }
        for (unsigned u = 0; u < 2; u++) {
            h[u] = _mm256_setzero_ps();
            for (unsigned j = u * per; j < u * per + per; j++) {
                __m256 x = _mm256_loadu_ps(p + (size_t)j * nc);
                __m256 v = _mm256_sub_ps(x, g->mnf), q = _mm256_mul_ps(v, g->inv);
                __m256 r = _mm256_add_ps(q, M);
                __m256 red = _mm256_and_ps(_mm256_sub_ps(q, _mm256_sub_ps(r, M)), absm);
                if (_mm256_movemask_ps(_mm256_cmp_ps(red, th, _CMP_NLT_UQ)))
                    r = _mm256_add_ps(_mm256_and_ps(g->nz, _mm256_div_ps(v, g->dlf)), M);
                __m256 c = _mm256_sub_ps(_mm256_min_ps(_mm256_max_ps(r, M), MN), M);
                __m256 res = _mm256_fnmadd_ps(c, g->dlf, v);
                if (k) {
                    __m256 out = outliers8(x, g, tie, &o);
                    c = _mm256_andnot_ps(out, c);
                    res = _mm256_andnot_ps(out, res);
                }
                if (e) _mm256_storeu_ps(e + (size_t)j * nc, res);
                h[u] = _mm256_fmadd_ps(c, _mm256_broadcast_ss(&wt[j - u * per]), h[u]);
            }
        }
        acc[w] = _mm256_or_si256(_mm256_cvttps_epi32(h[0]), _mm256_slli_epi32(_mm256_cvttps_epi32(h[1]), 16));
    }
    *pm = o.am, *pn = o.an;
}

/* Every entry but the outliers rounds into [0, levels] by its reciprocal
 * quotient (lo and hi bound them), and no group is constant. */
INLINE int in_range8(const g8 *g, __m256 lo, __m256 hi, unsigned levels)
{
    __m256 qlo = _mm256_mul_ps(_mm256_sub_ps(lo, g->mnf), g->inv);
    __m256 qhi = _mm256_mul_ps(_mm256_sub_ps(hi, g->mnf), g->inv);
    __m256 ok = _mm256_and_ps(g->nz, _mm256_cmp_ps(qlo, _mm256_set1_ps(-0.5f), _CMP_GE_OQ));
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(qhi, _mm256_set1_ps((float)levels + 0.5f), _CMP_LT_OQ));
    return _mm256_movemask_ps(ok) == 0xff;
}

/* Code words of 8 columns (W a column) into their block rows, at word
 * offset w0 of each. */
INLINE void store_codes8(uint8_t *codes, size_t rb, unsigned c0, unsigned w0, const __m256i *acc, unsigned W)
{
    uint8_t *base = codes + (size_t)c0 * rb + 4 * (size_t)w0;
    if (W == 4) { /* 4 x 8 words -> 8 rows of 16 bytes */
        __m256i t0 = _mm256_unpacklo_epi32(acc[0], acc[1]), t1 = _mm256_unpackhi_epi32(acc[0], acc[1]);
        __m256i t2 = _mm256_unpacklo_epi32(acc[2], acc[3]), t3 = _mm256_unpackhi_epi32(acc[2], acc[3]);
        __m256i u[4] = {_mm256_unpacklo_epi64(t0, t2), _mm256_unpackhi_epi64(t0, t2), _mm256_unpacklo_epi64(t1, t3),
                        _mm256_unpackhi_epi64(t1, t3)};
        /* u[j], 128-bit half h: column 4h + j */
        for (unsigned j = 0; j < 4; j++) {
            _mm_storeu_si128((__m128i *)(base + (size_t)j * rb), _mm256_castsi256_si128(u[j]));
            _mm_storeu_si128((__m128i *)(base + (size_t)(4 + j) * rb), _mm256_extracti128_si256(u[j], 1));
        }
        return;
    }
    uint32_t t[8];
    for (unsigned w = 0; w < W; w++) {
        _mm256_storeu_si256((__m256i *)t, acc[w]);
        for (unsigned l = 0; l < 8; l++) memcpy(base + (size_t)l * rb + 4 * w, &t[l], 4);
    }
}

/* Scales and minima of 8 groups (columns c0.. of Z, group gb of G), and
 * with k their outliers: rows pm and pn, sorted, as pair c*opr/2 +
 * gb*k_full of the block's outlier section (index t*d + c, and the
 * entry's fp16). */
INLINE void store_group8(const gear_block_layout *L, const float *z, unsigned nc, uint8_t *blk, unsigned c0,
                         unsigned gb, const int k, const g8 *g, __m256i pm, __m256i pn, const int key)
{
    const unsigned G = L->groups_per_row, d = L->d;
    if (G == 1) {
        _mm_storeu_si128((__m128i *)(blk + L->off_scales + 2 * (size_t)c0), g->dl_h);
        _mm_storeu_si128((__m128i *)(blk + L->off_mins + 2 * (size_t)c0), g->mn_h);
    } else {
        uint16_t s[8], n[8];
        _mm_storeu_si128((__m128i *)s, g->dl_h);
        _mm_storeu_si128((__m128i *)n, g->mn_h);
        for (unsigned l = 0; l < 8; l++) {
            size_t gi = (size_t)(c0 + l) * G + gb;
            memcpy(blk + L->off_scales + 2 * gi, &s[l], 2);
            memcpy(blk + L->off_mins + 2 * gi, &n[l], 2);
        }
    }
    if (!k) return;
    const __m256i col = _mm256_add_epi32(_mm256_set1_epi32((int)c0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i dv = _mm256_set1_epi32((int)d);
    __m256i a = _mm256_min_epu32(pm, pn), b = _mm256_max_epu32(pm, pn), fa, fb;
    if (key) { /* row = token, column = channel */
        fa = _mm256_add_epi32(_mm256_mullo_epi32(a, dv), col);
        fb = _mm256_add_epi32(_mm256_mullo_epi32(b, dv), col);
    } else { /* row = channel, column = token */
        fa = _mm256_add_epi32(_mm256_mullo_epi32(col, dv), a);
        fb = _mm256_add_epi32(_mm256_mullo_epi32(col, dv), b);
    }
    /* the entries themselves (rows a and b of Z), so that a zero extreme
     * keeps its sign; plain loads, not vgatherdps, which qemu 7.2 (CI's
     * emulated Haswell) returned wrong here */
    uint32_t ra[8], rb[8];
    float fa8[8], fb8[8];
    _mm256_storeu_si256((__m256i *)ra, a);
    _mm256_storeu_si256((__m256i *)rb, b);
    for (unsigned l = 0; l < 8; l++) {
        fa8[l] = z[(size_t)ra[l] * nc + c0 + l];
        fb8[l] = z[(size_t)rb[l] * nc + c0 + l];
    }
    __m256 va = _mm256_loadu_ps(fa8), vb = _mm256_loadu_ps(fb8);
    __m256i ha = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(va, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i hb = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(vb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    __m256i idx = _mm256_or_si256(fa, _mm256_slli_epi32(fb, 16)), hv = _mm256_or_si256(ha, _mm256_slli_epi32(hb, 16));
    const unsigned ow = L->outliers_per_row / 2, slot0 = gb * L->k_full;
    const size_t pair0 = (size_t)c0 * ow + slot0; /* dword of column c0's first pair here */
    uint8_t *oi = blk + L->off_oidx + 4 * pair0, *ov = blk + L->off_oval + 4 * pair0;
    if (ow == 1) {
        _mm256_storeu_si256((__m256i *)oi, idx);
        _mm256_storeu_si256((__m256i *)ov, hv);
        return;
    }
    uint32_t ti[8], tv[8];
    _mm256_storeu_si256((__m256i *)ti, idx);
    _mm256_storeu_si256((__m256i *)tv, hv);
    for (unsigned l = 0; l < 8; l++) {
        memcpy(oi + 4 * (size_t)l * ow, &ti[l], 4);
        memcpy(ov + 4 * (size_t)l * ow, &tv[l], 4);
    }
}

/* Layouts of gear_cpu_key_block_avx2 and gear_cpu_value_block_avx2:
 * groups whose codes fill whole words (the last one possibly shorter, of
 * 4 rows or more), at most one outlier a side, 8-lane columns. */
int gear_cpu_block_avx2_fits(const gear_block_layout *L)
{
    unsigned b = L->bits;
    return !L->cq_dim && (b == 1 || b == 2 || b == 4 || b == 8) && L->d % 8 == 0 && L->n % 8 == 0 &&
           L->k_full <= 1 && L->k_tail <= 1 && L->group * b % 32 == 0 && L->tail_len * b % 32 == 0 &&
           L->group * b / 32 <= 32 && L->tail_len >= 4 && (size_t)L->n * L->d <= 65536;
}

/* Rows [t0, t1) of the next block's fp16 rows (ld apart), every line. */
static void prefetch_share(const uint16_t *next, size_t ld, const gear_block_layout *L, unsigned t0, unsigned t1)
{
    for (unsigned t = t0; t < t1 && t < L->n; t++)
        for (unsigned c = 0; c < L->d; c += 32) _mm_prefetch((const char *)(next + t * ld + c), _MM_HINT_T0);
}

/* One line in each page of the block after next: its page walks are done
 * a block ahead (as the AVX-512 compressor does). */
static void touch_pages(const uint16_t *after, size_t ld, unsigned n)
{
    uintptr_t last = 0;
    for (unsigned t = 0; t < n; t++) {
        const uint16_t *row = after + (size_t)t * ld;
        uintptr_t page = (uintptr_t)row >> 12;
        if (page != last) _mm_prefetch((const char *)row, _MM_HINT_T2);
        last = page;
    }
}

/* Pass 2 and the stores of one strip (columns c0..c0+7, group gb: rows
 * [r0, r0+m), k outliers a side) from its extremes. */
INLINE void strip8(const gear_block_layout *L, const float *z, unsigned nc, unsigned c0, unsigned gb, unsigned r0,
                   unsigned m, unsigned k, __m256 mx1, __m256 mx2, __m256 mn1, __m256 mn2, float thr, float *ez,
                   uint8_t *blk, const int key)
{
    const unsigned bits = L->bits, levels = (1u << bits) - 1u;
    g8 g;
    g.mx1 = mx1, g.mn1 = mn1;
    __m256 lo = k ? mn2 : mn1, hi = k ? mx2 : mx1;
    params8(lo, hi, levels, &g);
    const int inr = in_range8(&g, lo, hi, levels);
    const int tie = k && _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(mx1, mx2, _CMP_EQ_OQ),
                                                         _mm256_cmp_ps(mn1, mn2, _CMP_EQ_OQ)));
    __m256i acc[32], pm, pn;
#define CODES(K, TIE, INR) codes8(z, nc, r0, m, c0, &g, bits, levels, thr, K, TIE, INR, ez, acc, &pm, &pn)
    if (!k)
        inr ? CODES(0, 0, 1) : CODES(0, 0, 0);
    else if (!tie)
        inr ? CODES(1, 0, 1) : CODES(1, 0, 0);
    else
        inr ? CODES(1, 1, 1) : CODES(1, 1, 0);
#undef CODES
    store_codes8(blk + L->off_codes, L->row_bytes, c0, gb * (L->group * bits / 32), acc, m * bits / 32);
    store_group8(L, z, nc, blk, c0, gb, (int)k, &g, pm, pn, key);
}

/* Both passes over Z (nc columns: keys, Z = X; values, Z = X^T), 8
 * columns and one group of rows at a time; residual into ez (Z's layout).
 * From fp16 rows (x16; z is then scratch the rows are converted into),
 * pass 1 takes two strips at a time (stats16).  The next block's fp16
 * rows (pf, or NULL) are fetched a share a strip: with input from DRAM
 * and no prefetching, gear2 keys took 15 % longer than from the LLC. */
static int quantize_z(const gear_block_layout *L, const float *z, unsigned nc, const uint16_t *x16, size_t ld,
                      const gear_cpu_next *pf, uint8_t *blk, float *ez, const int key)
{
    const unsigned G = L->groups_per_row, levels = (1u << L->bits) - 1u;
    /* |v*(1/dl) - v/dl| < 3 ulp of q <= levels+1 for the codes that matter */
    const float thr = 0.5f - (float)(levels + 1) * 0x1p-21f;
    const unsigned strips = nc / 8 * G, per = (L->n + strips - 1) / strips;
    unsigned sn = 0, w;
    if (pf && pf->after) touch_pages(pf->after, pf->ld, L->n);
    for (unsigned c0 = 0; c0 < nc; c0 += 8 * w) {
        w = x16 && c0 + 16 <= nc ? 2 : 1;
        for (unsigned gb = 0; gb < G; gb++) {
            const int last = gb + 1 == G;
            const unsigned r0 = gb * L->group, m = last ? L->tail_len : L->group, k = last ? L->k_tail : L->k_full;
            __m256 mx1[2], mx2[2], mn1[2], mn2[2];
            if (w == 2 ? !stats16((float *)z, nc, x16, ld, c0, r0, m, k, mx1, mx2, mn1, mn2)
                : x16  ? !stats8(z, nc, x16, ld, c0, r0, m, k, 1, mx1, mx2, mn1, mn2)
                       : !stats8(z, nc, NULL, 0, c0, r0, m, k, 0, mx1, mx2, mn1, mn2))
                return 0;
            for (unsigned s2 = 0; s2 < w; s2++, sn++) {
                if (pf && pf->next) prefetch_share(pf->next, pf->ld, L, sn * per, sn * per + per);
                strip8(L, z, nc, c0 + 8 * s2, gb, r0, m, k, mx1[s2], mx2[s2], mn1[s2], mn2[s2], thr, ez, blk, key);
            }
        }
    }
    return 1;
}

void gear_cpu_key_block_avx2(const gear_block_layout *L, const float *x, uint8_t *blk, float *e)
{
    (void)quantize_z(L, x, L->d, NULL, 0, NULL, blk, e, 1);
}

/* The same from fp16 rows ld apart, converted into xbuf (n*d floats) by
 * pass 1: 0 (blk unfinished) if one is Inf or NaN. */
int gear_cpu_key_block_avx2_f16(const gear_block_layout *L, const uint16_t *x, size_t ld, const gear_cpu_next *pf,
                                uint8_t *blk, float *e, float *xbuf)
{
    return quantize_z(L, xbuf, L->d, x, ld, pf, blk, e, 1);
}

/* Rows r[0..7] of an 8x8 tile transposed into out (column j of the tile
 * at out + j*ld). */
INLINE void tile8(__m256 r[8], float *out, size_t ld)
{
    __m256 t[8];
    for (unsigned i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (unsigned i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* r[4b + q], 128-bit half h: rows 4b..4b+3 of column 4h + q */
    for (unsigned q = 0; q < 4; q++) {
        _mm256_storeu_ps(out + q * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x20));
        _mm256_storeu_ps(out + (4 + q) * ld, _mm256_permute2f128_ps(r[q], r[4 + q], 0x31));
    }
}

void gear_cpu_value_block_avx2(const gear_block_layout *L, const float *x, uint8_t *blk, float *et, float *zbuf)
{
    const unsigned n = L->n, d = L->d;
    for (unsigned i0 = 0; i0 < n; i0 += 8)
        for (unsigned j0 = 0; j0 < d; j0 += 8) {
            __m256 r[8];
            for (unsigned i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(x + (size_t)(i0 + i) * d + j0);
            tile8(r, zbuf + (size_t)j0 * n + i0, n);
        }
    (void)quantize_z(L, zbuf, n, NULL, 0, NULL, blk, et, 0);
}

/* Columns j of the 8 rows r[0..7] (8 halves a 128-bit lane: 8x8 tiles
 * side by side) into r[j]: three rounds of unpacks, within each lane. */
INLINE void tile16(__m256i r[8])
{
    __m256i t[8], u[8];
    for (unsigned i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi16(r[i], r[i + 1]);     /* rows i, i+1 of columns 0-3 */
        t[i + 1] = _mm256_unpackhi_epi16(r[i], r[i + 1]); /* and of 4-7 */
    }
    for (unsigned i = 0; i < 8; i += 4)
        for (unsigned h = 0; h < 2; h++) {
            u[i + 2 * h] = _mm256_unpacklo_epi32(t[i + h], t[i + 2 + h]);     /* rows i..i+3, columns 4h, 4h+1 */
            u[i + 2 * h + 1] = _mm256_unpackhi_epi32(t[i + h], t[i + 2 + h]); /* 4h+2, 4h+3 */
        }
    for (unsigned q = 0; q < 4; q++) {
        r[2 * q] = _mm256_unpacklo_epi64(u[q], u[4 + q]);
        r[2 * q + 1] = _mm256_unpackhi_epi64(u[q], u[4 + q]);
    }
}

/* The same from fp16 rows ld apart: transposed as halves into tbuf (d x
 * n), then both passes read them from there as the keys' passes read
 * their rows (stats16 converts them into zbuf and finds Inf and NaN).
 * Converting while transposing (8x8 float tiles) had taken a tenth of the
 * time, and the passes over floats, without stats16, more. */
int gear_cpu_value_block_avx2_f16(const gear_block_layout *L, const uint16_t *x, size_t ld, const gear_cpu_next *pf,
                                  uint8_t *blk, float *et, float *zbuf, uint16_t *tbuf)
{
    const unsigned n = L->n, d = L->d;
    unsigned i0 = 0;
    /* 16 rows a step, row i in lane 0 and row i+8 in lane 1: a column's 16
     * halves come out in one vector, one store (tiles side by side took
     * two stores of 8, and the stores bounded the transposition) */
    for (; i0 + 16 <= n; i0 += 16)
        for (unsigned j0 = 0; j0 < d; j0 += 8) {
            __m256i r[8];
            for (unsigned i = 0; i < 8; i++) {
                const uint16_t *row = x + (size_t)(i0 + i) * ld + j0;
                r[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)row)),
                                               _mm_loadu_si128((const __m128i *)(row + 8 * ld)), 1);
            }
            tile16(r);
            for (unsigned j = 0; j < 8; j++) _mm256_storeu_si256((__m256i *)(tbuf + (size_t)(j0 + j) * n + i0), r[j]);
        }
    for (; i0 < n; i0 += 8) /* the last 8 rows */
        for (unsigned j0 = 0; j0 < d; j0 += 16) {
            const int two = j0 + 16 <= d; /* else the last 8 columns, in lane 0 */
            __m256i r[8];
            for (unsigned i = 0; i < 8; i++) {
                const uint16_t *row = x + (size_t)(i0 + i) * ld + j0;
                r[i] = two ? _mm256_loadu_si256((const __m256i *)row)
                           : _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)row));
            }
            tile16(r);
            for (unsigned j = 0; j < 8; j++) {
                _mm_storeu_si128((__m128i *)(tbuf + (size_t)(j0 + j) * n + i0), _mm256_castsi256_si128(r[j]));
                if (two)
                    _mm_storeu_si128((__m128i *)(tbuf + (size_t)(j0 + 8 + j) * n + i0),
                                     _mm256_extracti128_si256(r[j], 1));
            }
        }
    return quantize_z(L, zbuf, n, tbuf, n, pf, blk, et, 0);
}
