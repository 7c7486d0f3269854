/*
 * cpu_avx512_compress.c - fused AVX-512 compression of one block for the
 * common shapes (see gear_cpu_compress_avx512_fits): statistics, scales,
 * codes, outliers and the residual in two passes over 16-column strips,
 * then the power iteration.  Bit-exact with ref (codes, scales, outliers);
 * the low-rank factors follow ref's iteration in fp32.
 *
 * Both kinds run on a matrix Z whose quantization groups are runs of
 * `group` consecutive rows of one column, so 16 groups fill one vector:
 * keys: Z = X (n tokens x d channels); values: Z = X^T (d x n), staged
 * by a 16x16 transpose.  A code row of the block is a column of Z.
 * The last group of a column may be shorter (tail rows, e.g. values at
 * d = 80 or 96 with groups of 64) as long as its codes fill whole words
 * (so its length is a multiple of 4, as pass 1 wants); the passes take
 * the group length m and outlier count k of the rows they work on.
 *
 * Needs AVX-512 F/BW/VL/DQ (vreduceps, vrangeps) and VBMI2 (vpshrdvd packs
 * codes); called only after gear_cpu_have_avx512_compress was set.
 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi2,fma")
#endif
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"
#include "cpu_top2.h"
#include "cpu_avx512_rows.h"

#define INLINE static inline __attribute__((always_inline))

/* 1.5 * 2^23: q + MAGIC rounds q half-to-even to an integer held in the
 * low mantissa bits (exactly rintf for |q| < 2^22; larger |q| is clamped). */
#define MAGIC 12582912.0f

typedef struct zjob {
    const gear_block_layout *L;
    const float *z;     /* nr x nc */
    const uint16_t *z16;/* keys from fp16 rows (z NULL): row i at z16 + i*ld16 */
    size_t ld16;
    float *ez;          /* residual, nr x nc (NULL: no low rank) */
    uint8_t *blk;
    unsigned nr, nc, group, G, levels, k, key;
    unsigned tail, kt;  /* rows and outliers a side of the last group */
    unsigned ow;        /* outlier dwords a column (a pair per group that has one) */
    float thr;          /* |q - rint(q)| at or above this: a true division */
    const uint16_t *pf; /* fp16 rows of the next block (pf_ld apart), or NULL */
    const uint16_t *after; /* and of the block after it, or NULL */
    size_t pf_ld;
    uint16_t *bf;       /* room for E in bf16 twice (n*d floats), or NULL: fp32 products */
} zjob;

/* Per strip of 16 groups: the fp16-rounded parameters and the extremes. */
typedef struct gparams {
    __m512 mx1, mn1, mnf, dlf, inv;
    __mmask16 nz; /* dl != 0 */
    __m256i mn_h, dl_h;
} gparams;

/* 16 entries of Z at row i, column c: fp32, or fp16 (h) converted on
 * the fly (vcvtph2ps is exact, so the codes are the same either way). */
#define ZROW(J, h, i) ((h) ? (const void *)((J)->z16 + (size_t)(i) * (J)->ld16) : (const void *)((J)->z + (size_t)(i) * (J)->nc))
INLINE __m512 zload(const void *row, unsigned c, const int h)
{
    if (h) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + c)));
    return _mm512_loadu_ps((const float *)row + c);
}

/* Entry (i, c) of Z as fp32. */
INLINE float zentry(const zjob *J, const int h, unsigned i, unsigned c)
{
    if (h) return gear_half_to_float(J->z16[(size_t)i * J->ld16 + c]);
    return J->z[(size_t)i * J->nc + c];
}

/* Pass 1 on fp32 rows: maximum, second maximum, minimum, second minimum of each column
 * over rows [r0, r0+m) (m a multiple of 4), two rows at a time (a multiset top-2:
 * mx2 == mx1 exactly when the maximum occurs twice). */
INLINE void strip_stats(const zjob *J, unsigned c0, unsigned r0, unsigned m, unsigned k,
                        __m512 *mx1, __m512 *mx2, __m512 *mn1, __m512 *mn2)
{
    __m512 a1 = _mm512_set1_ps(-INFINITY), a2 = a1, b1 = _mm512_set1_ps(INFINITY), b2 = b1;
    if (k) {
        /* two streams (rows 4j, 4j+1 and 4j+2, 4j+3) so that each chain
         * carries one max or min per step; merged at the end */
        __m512 c1 = a1, c2 = a1, d1 = b1, d2 = b1;
        for (unsigned i = r0; i < r0 + m; i += 4) {
            __m512 u = zload(ZROW(J, 0, i), c0, 0), v = zload(ZROW(J, 0, i + 1), c0, 0);
            CPU_TOP2_PAIR(__m512, _mm512_max_ps, _mm512_min_ps, u, v, a1, a2, b1, b2);
            u = zload(ZROW(J, 0, i + 2), c0, 0), v = zload(ZROW(J, 0, i + 3), c0, 0);
            CPU_TOP2_PAIR(__m512, _mm512_max_ps, _mm512_min_ps, u, v, c1, c2, d1, d2);
        }
        CPU_TOP2_MERGE(_mm512_max_ps, _mm512_min_ps, a1, a2, b1, b2, c1, c2, d1, d2);
    } else {
        __m512 c1 = a1, d1 = b1;
        for (unsigned i = r0; i < r0 + m; i += 2) {
            __m512 u = zload(ZROW(J, 0, i), c0, 0), v = zload(ZROW(J, 0, i + 1), c0, 0);
            a1 = _mm512_max_ps(a1, u);
            b1 = _mm512_min_ps(b1, u);
            c1 = _mm512_max_ps(c1, v);
            d1 = _mm512_min_ps(d1, v);
        }
        a1 = _mm512_max_ps(a1, c1);
        b1 = _mm512_min_ps(b1, d1);
    }
    *mx1 = a1, *mx2 = a2, *mn1 = b1, *mn2 = b2;
}

/* fp16 bits as int16 in the order of their values: the negative halves
 * become minus their magnitude (so -0 and +0 are both 0, as they are
 * equal floats); Inf and NaN land beyond +-0x7c00. */
INLINE __m256i half_key(__m256i h) { return _mm256_sign_epi16(_mm256_and_si256(h, _mm256_set1_epi16(0x7fff)), h); }

/* The float a key stands for (-0 comes back as +0). */
INLINE __m512 key_float(__m256i t)
{
    return _mm512_cvtph_ps(_mm256_or_si256(_mm256_abs_epi16(t), _mm256_and_si256(t, _mm256_set1_epi16((short)0x8000))));
}

/* Pass 1 on fp16 rows (keys straight from the halves, values transposed
 * as 16-bit words), with the rows of the extremes: strip_stats on
 * the int16 keys of the halves, 16 columns to a 256-bit vector, no
 * conversion (Zen 4 runs these at twice the rate of 512-bit float
 * min/max).  Returns 0 if a column holds Inf or NaN, which the extremes
 * show, so the block needs no separate finiteness scan. */
INLINE int strip_stats16(const zjob *J, unsigned c0, unsigned r0, unsigned m, unsigned k, __m512 *mx1,
                         __m512 *mx2, __m512 *mn1, __m512 *mn2, __m512i *pmx, __m512i *pmn)
{
#define HROW(i) half_key(_mm256_loadu_si256((const __m256i *)(J->z16 + (size_t)(i) * J->ld16 + c0)))
    __m256i a1 = _mm256_set1_epi16(-32768), a2 = a1, b1 = _mm256_set1_epi16(32767), b2 = b1;
    if (k) {
        /* with the rows of the extremes (pa.. : where a1.. last rose; the
         * row of a maximum that occurs once, else tie handling takes over) */
        const __m256i one = _mm256_set1_epi16(1);
        __m256i c1 = a1, c2 = a1, d1 = b1, d2 = b1, pa = _mm256_setzero_si256(), pb = pa, pc = pa, pd = pa;
        __m256i ri = _mm256_set1_epi16((short)r0), rj = _mm256_set1_epi16((short)(r0 + 2));
        const __m256i four = _mm256_set1_epi16(4);
#define STEP(i, ri, x1, x2, y1, y2, px, py)                                                        \
    do {                                                                                           \
        __m256i u = HROW(i), v = HROW((i) + 1);                                                    \
        __mmask16 vu = _mm256_cmpgt_epi16_mask(v, u);                                              \
        __m256i hi = _mm256_max_epi16(u, v), lo = _mm256_min_epi16(u, v);                          \
        __m256i phi = _mm256_mask_add_epi16(ri, vu, ri, one), plo = _mm256_mask_add_epi16(ri, (__mmask16)~vu, ri, one); \
        x2 = _mm256_max_epi16(x2, _mm256_max_epi16(lo, _mm256_min_epi16(x1, hi)));                \
        px = _mm256_mask_mov_epi16(px, _mm256_cmpgt_epi16_mask(hi, x1), phi);                     \
        x1 = _mm256_max_epi16(x1, hi);                                                             \
        y2 = _mm256_min_epi16(y2, _mm256_min_epi16(hi, _mm256_max_epi16(y1, lo)));                \
        py = _mm256_mask_mov_epi16(py, _mm256_cmplt_epi16_mask(lo, y1), plo);                     \
        y1 = _mm256_min_epi16(y1, lo);                                                             \
    } while (0)
        for (unsigned i = r0; i < r0 + m; i += 4) {
            STEP(i, ri, a1, a2, b1, b2, pa, pb);
            STEP(i + 2, rj, c1, c2, d1, d2, pc, pd);
            ri = _mm256_add_epi16(ri, four), rj = _mm256_add_epi16(rj, four);
        }
#undef STEP
        a2 = _mm256_max_epi16(_mm256_min_epi16(a1, c1), _mm256_max_epi16(a2, c2));
        pa = _mm256_mask_mov_epi16(pa, _mm256_cmpgt_epi16_mask(c1, a1), pc);
        a1 = _mm256_max_epi16(a1, c1);
        b2 = _mm256_min_epi16(_mm256_max_epi16(b1, d1), _mm256_min_epi16(b2, d2));
        pb = _mm256_mask_mov_epi16(pb, _mm256_cmplt_epi16_mask(d1, b1), pd);
        b1 = _mm256_min_epi16(b1, d1);
        *mx2 = key_float(a2), *mn2 = key_float(b2);
        *pmx = _mm512_cvtepu16_epi32(pa), *pmn = _mm512_cvtepu16_epi32(pb);
    } else {
        __m256i c1 = a1, d1 = b1;
        for (unsigned i = r0; i < r0 + m; i += 2) {
            __m256i u = HROW(i), v = HROW(i + 1);
            a1 = _mm256_max_epi16(a1, u);
            b1 = _mm256_min_epi16(b1, u);
            c1 = _mm256_max_epi16(c1, v);
            d1 = _mm256_min_epi16(d1, v);
        }
        a1 = _mm256_max_epi16(a1, c1);
        b1 = _mm256_min_epi16(b1, d1);
    }
#undef HROW
    *mx1 = key_float(a1), *mn1 = key_float(b1);
    return !_mm256_cmpge_epi16_mask(a1, _mm256_set1_epi16(0x7c00)) &&
           !_mm256_cmple_epi16_mask(b1, _mm256_set1_epi16(-0x7c00));
}

/* Scale and minimum of 16 groups from their remaining range [lo, hi],
 * as ref: fp32 step, fp16 rounding (vcvtps2ph rounds to nearest even and
 * overflows to Inf like gear_float_to_half), Inf step saturated. */
INLINE void strip_params(__m512 lo, __m512 hi, unsigned levels, gparams *g)
{
    const __m256i nz = _mm256_set1_epi16((short)0x8000);
    __m512 dl = _mm512_div_ps(_mm512_sub_ps(hi, lo), _mm512_set1_ps((float)levels));
    __m256i mh = _mm512_cvtps_ph(lo, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i dh = _mm512_cvtps_ph(dl, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256i mag = _mm256_and_si256(dh, _mm256_set1_epi16(0x7fff));
    __mmask16 inf = _mm256_cmpeq_epi16_mask(mag, _mm256_set1_epi16(0x7c00));
    dh = _mm256_mask_blend_epi16(inf, dh, _mm256_set1_epi16(0x7bff));
    /* -0 stored as +0 (gear_group_params) */
    g->mn_h = _mm256_mask_blend_epi16(_mm256_cmpeq_epi16_mask(mh, nz), mh, _mm256_setzero_si256());
    g->dl_h = _mm256_mask_blend_epi16(_mm256_cmpeq_epi16_mask(dh, nz), dh, _mm256_setzero_si256());
    g->mnf = _mm512_cvtph_ps(g->mn_h);
    g->dlf = _mm512_cvtph_ps(g->dl_h);
    g->nz = _mm512_cmp_ps_mask(g->dlf, _mm512_setzero_ps(), _CMP_NEQ_UQ);
    /* dl == 0 (constant group): inv 0 gives q = 0, code 0, like ref */
    g->inv = _mm512_maskz_div_ps(g->nz, _mm512_set1_ps(1.0f), g->dlf);
}

/* Pass 2, the common case (inr, no per-entry outlier tests): rows
 * [i0, i0+cpd) of a strip into one code word per column.  The code
 * c = rint(v * (1/dl)) comes from one FMA (the exact product, rounded to
 * an integer by MAGIC) and the residual is v - c*dl.  No rounding check
 * per row: the largest |residual| of the chunk is compared once with
 * thr*dl (tdl) at the end, and 0 is returned when some row came so near
 * a rounding boundary that ref's true division might round the other way
 * (the caller redoes the chunk row by row).  On Zen 4 the per-row check
 * (compare to mask, test, branch) had cost 2 of the loop's 8 cycles a row,
 * and vreduceps 2 more on the busier pipe pair.  cpd is even (bits 1, 2,
 * 4, 8); the caller passes 16 and 8 as constants, and the unrolled loop
 * was 1 % faster a block than the rolled one. */
#define UNROLL_CHUNK _Pragma("GCC unroll 8")
INLINE int chunk_fast(const zjob *J, const int h, unsigned i0, unsigned c0, unsigned cpd, __m512i sh,
                      const gparams *g, __m512 tdl, const int we, __m512i *acc)
{
    const size_t ld = h ? 2 * J->ld16 : 4 * (size_t)J->nc; /* bytes between rows */
    const char *row = (const char *)ZROW(J, h, i0);
    float *e = we ? J->ez + (size_t)i0 * J->nc + c0 : NULL;
    const __m512 M = _mm512_set1_ps(MAGIC);
    __m512 mx0 = _mm512_setzero_ps(), mx1 = mx0; /* two chains */
    __m512i a = _mm512_setzero_si512();
    UNROLL_CHUNK for (unsigned j = 0; j < cpd; j += 2) {
        __m512 res[2];
        for (unsigned u = 0; u < 2; u++, row += ld) {
            __m512 v = _mm512_sub_ps(zload(row, c0, h), g->mnf);
            __m512 r = _mm512_fmadd_ps(v, g->inv, M);
            res[u] = _mm512_fnmadd_ps(_mm512_sub_ps(r, M), g->dlf, v);
            if (we) {
                _mm512_storeu_ps(e, res[u]);
                e += J->nc;
            }
            a = _mm512_shrdv_epi32(a, _mm512_castps_si512(r), sh);
        }
        mx0 = _mm512_max_ps(mx0, _mm512_abs_ps(res[0]));
        mx1 = _mm512_max_ps(mx1, _mm512_abs_ps(res[1]));
    }
    *acc = a;
    return !_mm512_cmp_ps_mask(_mm512_max_ps(mx0, mx1), tdl, _CMP_NLT_UQ);
}
#undef UNROLL_CHUNK

/* Pass 2 over rows [r0, r0+m) of one strip: codes packed into acc
 * (m*bits/32 dwords per column, code i at bits [i*bits, i*bits+bits) as in
 * a block row), residual into ez, outlier rows into amx/amn.  Chunks of
 * the common case go through chunk_fast; the rest, and chunks it turned
 * back, row by row: quotients v*(1/dl), and a row of 16 where one fell too
 * near a rounding boundary for the reciprocal to be trusted takes ref's
 * true division (fp16 data puts some quotients exactly on a half).  tie: a
 * maximum or minimum occurs more than once in some column; the first
 * occurrence is the outlier (ref's order), and the minimum is taken among
 * the rest (constant groups).  inr: every reciprocal quotient rounds into
 * [0, levels] (strip_in_range), so the codes of trusted rows need no
 * clamping.  The residual is v - code*dl everywhere, so that fp16 and fp32
 * input, which take different paths, give the same low-rank factors. */
INLINE void strip_codes(const zjob *J, const int h, unsigned r0, unsigned m, unsigned c0, const gparams *g,
                        const int k, const int tie, const int we, const int inr, __m512i *acc, __m512i *amx,
                        __m512i *amn)
{
    const unsigned nc = J->nc, bits = J->L->bits, cpd = 32 / bits;
    const __m512 M = _mm512_set1_ps(MAGIC), MN = _mm512_set1_ps(MAGIC + (float)J->levels);
    const __m512 thr = _mm512_set1_ps(J->thr);
    const __m512 tdl = _mm512_mul_ps(thr, g->dlf);
    const __m512i sh = _mm512_set1_epi32((int)bits);
    __mmask16 fm = 0, fn = 0;
    __m512i am = _mm512_setzero_si512(), an = am;
    for (unsigned w = 0; w * cpd < m; w++) {
        if (inr && !k) { /* unrolled for 2-bit and 4-bit codes */
            unsigned i0 = r0 + w * cpd;
            int ok = cpd == 16 ? chunk_fast(J, h, i0, c0, 16, sh, g, tdl, we, &acc[w])
                   : cpd == 8  ? chunk_fast(J, h, i0, c0, 8, sh, g, tdl, we, &acc[w])
                               : chunk_fast(J, h, i0, c0, cpd, sh, g, tdl, we, &acc[w]);
            if (ok) continue;
        }
        float *e = we ? J->ez + (size_t)(r0 + w * cpd) * nc + c0 : NULL;
        __m512i a = _mm512_setzero_si512();
        for (unsigned j = 0; j < cpd; j++) {
            unsigned i = w * cpd + j;
            __m512 x = zload(ZROW(J, h, r0 + i), c0, h);
            __m512 v = _mm512_sub_ps(x, g->mnf), q = _mm512_mul_ps(v, g->inv);
            __m512 red = _mm512_reduce_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); /* q - rint(q) */
            const __mmask16 bad = _mm512_cmp_ps_mask(_mm512_abs_ps(red), thr, _CMP_NLT_UQ);
            if (__builtin_expect(bad != 0, 0)) q = _mm512_maskz_div_ps(g->nz, v, g->dlf);
            __mmask16 keep = 0xffff;
            if (k) {
                __mmask16 om = _mm512_cmp_ps_mask(x, g->mx1, _CMP_EQ_OQ);
                __mmask16 on = _mm512_cmp_ps_mask(x, g->mn1, _CMP_EQ_OQ);
                if (tie) {
                    om = (__mmask16)(om & ~fm);
                    fm |= om;
                    on = (__mmask16)(on & ~om & ~fn);
                    fn |= on;
                }
                __m512i iv = _mm512_set1_epi32((int)(r0 + i));
                am = _mm512_mask_mov_epi32(am, om, iv);
                an = _mm512_mask_mov_epi32(an, on, iv);
                keep = (__mmask16) ~(om | on);
            }
            __m512 r = _mm512_add_ps(q, M);
            if (inr && !bad) {
                if (k) r = _mm512_mask_blend_ps(keep, M, r); /* outliers: code 0 */
            } else {
                r = _mm512_mask_min_ps(M, keep, _mm512_max_ps(r, M), MN); /* outliers: code 0 */
            }
            if (we) { /* v - c*dl as in chunk_fast (fp16 and fp32 input give the same blocks) */
                _mm512_storeu_ps(e, _mm512_maskz_fnmadd_ps(keep, _mm512_sub_ps(r, M), g->dlf, v));
                e += nc;
            }
            /* the code's low bits enter at the top; after cpd codes the
             * first one sits at bit 0 */
            a = _mm512_shrdv_epi32(a, _mm512_castps_si512(r), sh);
        }
        acc[w] = a;
    }
    *amx = am, *amn = an;
}

/* Code words of 16 columns (W per column) into their block rows, at
 * dword offset w0 of each row. */
INLINE void store_codes(const zjob *J, unsigned c0, unsigned w0, const __m512i *acc, unsigned W)
{
    const unsigned rb = J->L->row_bytes;
    uint8_t *base = J->blk + J->L->off_codes + (size_t)c0 * rb + 4 * (size_t)w0;
    if (W == 4) { /* 4 x 16 dwords -> 16 rows of 16 bytes */
        __m512i t0 = _mm512_unpacklo_epi32(acc[0], acc[1]), t1 = _mm512_unpackhi_epi32(acc[0], acc[1]);
        __m512i t2 = _mm512_unpacklo_epi32(acc[2], acc[3]), t3 = _mm512_unpackhi_epi32(acc[2], acc[3]);
        __m512i u[4] = {_mm512_unpacklo_epi64(t0, t2), _mm512_unpackhi_epi64(t0, t2),
                        _mm512_unpacklo_epi64(t1, t3), _mm512_unpackhi_epi64(t1, t3)};
        /* u[j], 128-bit lane l: column 4l + j */
        for (unsigned j = 0; j < 4; j++) {
            _mm_storeu_si128((__m128i *)(base + (size_t)j * rb), _mm512_castsi512_si128(u[j]));
            _mm_storeu_si128((__m128i *)(base + (size_t)(4 + j) * rb), _mm512_extracti32x4_epi32(u[j], 1));
            _mm_storeu_si128((__m128i *)(base + (size_t)(8 + j) * rb), _mm512_extracti32x4_epi32(u[j], 2));
            _mm_storeu_si128((__m128i *)(base + (size_t)(12 + j) * rb), _mm512_extracti32x4_epi32(u[j], 3));
        }
        return;
    }
    uint32_t t[16][16]; /* 16 words at a time (t[32][16] made kivi4 values 8 % slower) */
    for (unsigned h0 = 0; h0 < W; h0 += 16) {
        const unsigned n = W - h0 < 16 ? W - h0 : 16;
        for (unsigned w = 0; w < n; w++) _mm512_storeu_si512(t[w], acc[h0 + w]);
        for (unsigned l = 0; l < 16; l++)
            for (unsigned w = 0; w < n; w++) memcpy(base + (size_t)l * rb + 4 * (h0 + w), &t[w][l], 4);
    }
}

/* Scales, minima and (k = 1) the two outliers of 16 groups (columns
 * c0.., group gb).  Outliers of a group are sorted by position; their
 * values are the extremes themselves. */
INLINE void store_group(const zjob *J, const int h, unsigned c0, unsigned gb, const int k, const gparams *g,
                        __m512i amx, __m512i amn)
{
    const gear_block_layout *L = J->L;
    const unsigned G = J->G;
    if (G == 1) {
        _mm256_storeu_si256((__m256i *)(J->blk + L->off_scales + 2 * (size_t)c0), g->dl_h);
        _mm256_storeu_si256((__m256i *)(J->blk + L->off_mins + 2 * (size_t)c0), g->mn_h);
    } else if (G == 2) { /* group gb of column c at c*2 + gb: every other half */
        const __mmask32 m = gb ? 0xAAAAAAAAu : 0x55555555u;
        _mm512_mask_storeu_epi16(J->blk + L->off_scales + 4 * (size_t)c0, m,
                                 _mm512_maskz_expand_epi16(m, _mm512_castsi256_si512(g->dl_h)));
        _mm512_mask_storeu_epi16(J->blk + L->off_mins + 4 * (size_t)c0, m,
                                 _mm512_maskz_expand_epi16(m, _mm512_castsi256_si512(g->mn_h)));
    } else {
        uint16_t s[16], n[16];
        _mm256_storeu_si256((__m256i *)s, g->dl_h);
        _mm256_storeu_si256((__m256i *)n, g->mn_h);
        for (unsigned l = 0; l < 16; l++) {
            size_t gi = (size_t)(c0 + l) * G + gb;
            memcpy(J->blk + L->off_scales + 2 * gi, &s[l], 2);
            memcpy(J->blk + L->off_mins + 2 * gi, &n[l], 2);
        }
    }
    if (!k) return;
    __m512i a = _mm512_min_epu32(amx, amn), b = _mm512_max_epu32(amx, amn);
    __mmask16 amax = _mm512_cmpeq_epi32_mask(a, amx);
    __m512 va = _mm512_mask_blend_ps(amax, g->mn1, g->mx1), vb = _mm512_mask_blend_ps(amax, g->mx1, g->mn1);
    __mmask16 za = _mm512_cmp_ps_mask(va, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __mmask16 zb = _mm512_cmp_ps_mask(vb, _mm512_setzero_ps(), _CMP_EQ_OQ);
    if (za | zb) { /* a zero extreme: the outlier keeps its own sign, as in ref */
        uint32_t ra[16], rb[16];
        float fa[16], fb[16];
        _mm512_storeu_si512(ra, a), _mm512_storeu_si512(rb, b);
        _mm512_storeu_ps(fa, va), _mm512_storeu_ps(fb, vb);
        for (unsigned l = 0; l < 16; l++) {
            if (za >> l & 1) fa[l] = zentry(J, h, ra[l], c0 + l);
            if (zb >> l & 1) fb[l] = zentry(J, h, rb[l], c0 + l);
        }
        va = _mm512_loadu_ps(fa), vb = _mm512_loadu_ps(fb);
    }
    __m512i col = _mm512_add_epi32(_mm512_set1_epi32((int)c0),
                                   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    __m512i dv = _mm512_set1_epi32((int)L->d);
    __m512i fa, fb; /* flat in-block indices t*d + c */
    if (J->key) {
        fa = _mm512_add_epi32(_mm512_mullo_epi32(a, dv), col);
        fb = _mm512_add_epi32(_mm512_mullo_epi32(b, dv), col);
    } else {
        fa = _mm512_add_epi32(_mm512_mullo_epi32(col, dv), a);
        fb = _mm512_add_epi32(_mm512_mullo_epi32(col, dv), b);
    }
    __m512i idx = _mm512_or_si512(fa, _mm512_slli_epi32(fb, 16));
    __m512i hv = _mm512_or_si512(
        _mm512_cvtepu16_epi32(_mm512_cvtps_ph(va, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)),
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_cvtps_ph(vb, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)), 16));
    /* pair j = c*outliers_per_row + 2*gb*k_full: dword c*ow + gb*k_full
     * (a last group without outliers stores none).  ow = 1 and 2 (gear2
     * keys and values: n = group, d = 2 * group, or d = group + a tail
     * too short for one; slot0 is then 0, or 0 and 1): plain and masked
     * stores (a scatter was ~1 % of a gear2 block apiece) */
    const unsigned ow = J->ow, slot0 = gb * J->k;
    uint8_t *oi = J->blk + L->off_oidx + 4 * (size_t)c0 * ow, *ov = J->blk + L->off_oval + 4 * (size_t)c0 * ow;
    if (ow == 1) {
        _mm512_storeu_si512(oi, idx);
        _mm512_storeu_si512(ov, hv);
    } else if (ow == 2) {
        /* lane l to dword 2l + slot0 of 32: lanes 0-7 in the first 16, 8-15 in the second */
        const __m512i lo = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        const __m512i hi = _mm512_add_epi32(lo, _mm512_set1_epi32(8));
        const __mmask16 m = (__mmask16)(slot0 ? 0xAAAA : 0x5555);
        _mm512_mask_storeu_epi32(oi, m, _mm512_permutexvar_epi32(lo, idx));
        _mm512_mask_storeu_epi32(oi + 64, m, _mm512_permutexvar_epi32(hi, idx));
        _mm512_mask_storeu_epi32(ov, m, _mm512_permutexvar_epi32(lo, hv));
        _mm512_mask_storeu_epi32(ov + 64, m, _mm512_permutexvar_epi32(hi, hv));
    } else {
        __m512i slot = _mm512_add_epi32(_mm512_mullo_epi32(col, _mm512_set1_epi32((int)ow)), _mm512_set1_epi32((int)slot0));
        _mm512_i32scatter_epi32(J->blk + L->off_oidx, slot, idx, 4);
        _mm512_i32scatter_epi32(J->blk + L->off_oval, slot, hv, 4);
    }
}

/* The outliers of 16 groups of m rows from r0, rows pmx and pmn (one per
 * column), after codes and residual were computed as if there were none:
 * their codes (in acc) and residual entries become 0. */
INLINE void clear_outliers(const zjob *J, unsigned r0, unsigned m, unsigned c0, __m512i pmx, __m512i pmn,
                           __m512i *acc, const int we)
{
    const unsigned bits = J->L->bits, W = m * bits / 32;
    const unsigned lb = bits == 1 ? 0 : bits == 2 ? 1 : bits == 4 ? 2 : 3, lc = 5 - lb; /* log2 bits, codes a dword */
    __m512i pos[2] = {_mm512_sub_epi32(pmx, _mm512_set1_epi32((int)r0)), _mm512_sub_epi32(pmn, _mm512_set1_epi32((int)r0))};
    for (unsigned o = 0; o < 2; o++) {
        __m512i w = _mm512_srli_epi32(pos[o], lc);
        __m512i off = _mm512_slli_epi32(_mm512_and_si512(pos[o], _mm512_set1_epi32((1 << lc) - 1)), lb);
        __m512i clr = _mm512_sllv_epi32(_mm512_set1_epi32((1 << bits) - 1), off);
        for (unsigned j = 0; j < W; j++) {
            __mmask16 mj = _mm512_cmpeq_epi32_mask(w, _mm512_set1_epi32((int)j));
            acc[j] = _mm512_mask_andnot_epi32(acc[j], mj, clr, acc[j]);
        }
    }
    if (we) { /* plain stores: a scatter of 16 cost more than all 32 */
        uint32_t p[2][16];
        float *e = J->ez + (size_t)r0 * J->nc + c0;
        _mm512_storeu_si512(p[0], pos[0]);
        _mm512_storeu_si512(p[1], pos[1]);
        for (unsigned l = 0; l < 16; l++) {
            e[(size_t)p[0][l] * J->nc + l] = 0.0f;
            e[(size_t)p[1][l] * J->nc + l] = 0.0f;
        }
    }
}

/* More than one outlier a side (k = 2 .. CPU_AVX512_KMAX), as ref selects
 * them: the k largest entries of a group (the first row on ties), then
 * the k smallest of the others.  The result is a mask a row, sel[i]
 * (bit l: row r0 + i of column c0 + l is an outlier), from which the
 * codes and residual are cleared and the outlier section written.  Pass
 * 1 of k = 1 (a top-2 network with the rows of the extremes) does not
 * extend to ties among k entries, so: */

/* The common case in one pass: sorted lists of the k + 1 largest and
 * smallest entries (a multiset; Y is __m256i of int16 keys for fp16 rows,
 * __m512 for fp32 ones), and where every column's k-th and (k+1)-th
 * largest differ, and so do its smallest, the outliers are exactly the
 * entries beyond the (k+1)-th, with no ties to break; with m >= 2k + 2
 * the two sets are disjoint, and the (k+1)-th of each side bound the
 * rest.  Returns 0 (sel untouched) where that does not hold. */
#define SELECT_LISTS(Y, LOAD, MAX, MIN, LO0, HI0, GT, LT)                                                   \
    do {                                                                                                   \
        Y t[CPU_AVX512_KMAX + 1], b[CPU_AVX512_KMAX + 1];                                                  \
        for (unsigned j = 0; j <= k; j++) t[j] = LO0, b[j] = HI0;                                          \
        for (unsigned i = 0; i < m; i++) {                                                                 \
            Y x = LOAD(i), y = x;                                                                          \
            for (unsigned j = 0; j <= k; j++) {                                                            \
                Y u = MAX(t[j], x), v = MIN(b[j], y);                                                      \
                x = MIN(t[j], x), y = MAX(b[j], y);                                                        \
                t[j] = u, b[j] = v;                                                                        \
            }                                                                                              \
        }                                                                                                  \
        if ((__mmask16)(GT(t[k - 1], t[k]) & LT(b[k - 1], b[k])) != 0xffff) return 0;                      \
        for (unsigned i = 0; i < m; i++) {                                                                 \
            Y x = LOAD(i);                                                                                 \
            sel[i] = (uint16_t)(GT(x, t[k]) | LT(x, b[k]));                                                \
        }                                                                                                  \
        *hi = t[k], *lo = b[k];                                                                            \
    } while (0)

INLINE int select_lists16(const zjob *J, unsigned r0, unsigned m, unsigned c0, const unsigned k, uint16_t *sel,
                          __m256i *lo, __m256i *hi)
{
#define LOAD16(i) half_key(_mm256_loadu_si256((const __m256i *)(J->z16 + (size_t)(r0 + (i)) * J->ld16 + c0)))
    SELECT_LISTS(__m256i, LOAD16, _mm256_max_epi16, _mm256_min_epi16, _mm256_set1_epi16(-32768),
                 _mm256_set1_epi16(32767), _mm256_cmpgt_epi16_mask, _mm256_cmplt_epi16_mask);
    return 1;
}

INLINE int select_lists32(const zjob *J, unsigned r0, unsigned m, unsigned c0, const unsigned k, uint16_t *sel,
                          __m512 *lo, __m512 *hi)
{
#define LOAD32(i) _mm512_loadu_ps(J->z + (size_t)(r0 + (i)) * J->nc + c0)
#define GT32(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define LT32(a, b) _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ)
    SELECT_LISTS(__m512, LOAD32, _mm512_max_ps, _mm512_min_ps, _mm512_set1_ps(-INFINITY), _mm512_set1_ps(INFINITY),
                 GT32, LT32);
    return 1;
}
#undef SELECT_LISTS
#undef GT32
#undef LT32

/* Otherwise one extreme a round, each round a pass over the group's rows
 * (in L1 by then), four chains merged with the earlier row winning ties:
 * the largest (top) or smallest entry of each column not yet in sel,
 * added to it.  Needs 2k <= m, so that every round finds a free entry. */
#define SELECT_ROUND(Y, LOAD, INIT, BT, MOVY, EQ, POS0, POSI, MOVP, PLT, POSW)                              \
    do {                                                                                                   \
        Y b[4];                                                                                            \
        __typeof__(POS0) p[4];                                                                             \
        for (unsigned u = 0; u < 4; u++) b[u] = INIT, p[u] = POS0;                                         \
        for (unsigned i = 0; i < m; i += 4) /* m is a multiple of 4 (avx512_fits) */                       \
            for (unsigned u = 0; u < 4; u++) {                                                             \
                Y x = LOAD(i + u);                                                                         \
                __mmask16 bt = BT((__mmask16)~sel[i + u], x, b[u]);                                        \
                b[u] = MOVY(b[u], bt, x);                                                                  \
                p[u] = MOVP(p[u], bt, POSI(i + u));                                                        \
            }                                                                                              \
        for (unsigned s = 1; s < 4; s *= 2)                                                                \
            for (unsigned u = 0; u + s < 4; u += 2 * s) {                                                  \
                __mmask16 bt = BT(0xffff, b[u + s], b[u]) | (EQ(b[u + s], b[u]) & PLT(p[u + s], p[u]));   \
                b[u] = MOVY(b[u], bt, b[u + s]);                                                           \
                p[u] = MOVP(p[u], bt, p[u + s]);                                                           \
            }                                                                                              \
        POSW q[16];                                                                                        \
        memcpy(q, &p[0], sizeof q);                                                                        \
        for (unsigned l = 0; l < 16; l++) sel[q[l]] |= (uint16_t)(1u << l);                                \
    } while (0)

INLINE void select_round(const zjob *J, const int h, unsigned r0, unsigned m, unsigned c0, uint16_t *sel,
                         const int top)
{
    if (h) { /* int16 keys: 16 lanes to a 256-bit vector, rows as 16-bit words */
#define BT16(f, x, b) (top ? _mm256_mask_cmpgt_epi16_mask(f, x, b) : _mm256_mask_cmplt_epi16_mask(f, x, b))
#define POSI16(i) _mm256_set1_epi16((short)(i))
        SELECT_ROUND(__m256i, LOAD16, _mm256_set1_epi16(top ? -32768 : 32767), BT16, _mm256_mask_mov_epi16,
                     _mm256_cmpeq_epi16_mask, _mm256_setzero_si256(), POSI16, _mm256_mask_mov_epi16,
                     _mm256_cmplt_epu16_mask, uint16_t);
    } else {
/* the predicate must be a constant expression for clang, so two calls */
#define BT32(f, x, b) (top ? _mm512_mask_cmp_ps_mask(f, x, b, _CMP_GT_OQ) : _mm512_mask_cmp_ps_mask(f, x, b, _CMP_LT_OQ))
#define EQ32(a, b) _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ)
#define POSI32(i) _mm512_set1_epi32((int)(i))
        SELECT_ROUND(__m512, LOAD32, _mm512_set1_ps(top ? -INFINITY : INFINITY), BT32, _mm512_mask_mov_ps, EQ32,
                     _mm512_setzero_si512(), POSI32, _mm512_mask_mov_epi32, _mm512_cmplt_epu32_mask, uint32_t);
    }
}
#undef SELECT_ROUND
#undef BT16
#undef POSI16
#undef BT32
#undef EQ32
#undef POSI32

/* sel for k outliers a side of 16 groups of m rows from r0, and the
 * range [lo, hi] of the other entries (lo > hi: none left, as ref says
 * for a group of outliers only). */
INLINE void select_k(const zjob *J, const int h, unsigned r0, unsigned m, unsigned c0, const unsigned k, uint16_t *sel,
                     __m512 *lo, __m512 *hi)
{
    if (m >= 2 * k + 2) {
        if (h) {
            __m256i a, b;
            if (select_lists16(J, r0, m, c0, k, sel, &a, &b)) {
                *lo = key_float(a), *hi = key_float(b);
                return;
            }
        } else if (select_lists32(J, r0, m, c0, k, sel, lo, hi)) {
            return;
        }
    }
    memset(sel, 0, sizeof(uint16_t) * m);
    for (unsigned o = 0; o < k; o++) select_round(J, h, r0, m, c0, sel, 1);
    for (unsigned o = 0; o < k; o++) select_round(J, h, r0, m, c0, sel, 0);
    if (h) {
        __m256i a = _mm256_set1_epi16(-32768), b = _mm256_set1_epi16(32767);
        for (unsigned i = 0; i < m; i++) {
            __m256i x = LOAD16(i);
            a = _mm256_mask_max_epi16(a, (__mmask16)~sel[i], a, x);
            b = _mm256_mask_min_epi16(b, (__mmask16)~sel[i], b, x);
        }
        __mmask16 none = _mm256_cmpgt_epi16_mask(b, a);
        *lo = _mm512_mask_mov_ps(key_float(b), none, _mm512_set1_ps(INFINITY));
        *hi = _mm512_mask_mov_ps(key_float(a), none, _mm512_set1_ps(-INFINITY));
        return;
    }
    __m512 a = _mm512_set1_ps(-INFINITY), b = _mm512_set1_ps(INFINITY);
    for (unsigned i = 0; i < m; i++) {
        __m512 x = LOAD32(i);
        a = _mm512_mask_max_ps(a, (__mmask16)~sel[i], a, x);
        b = _mm512_mask_min_ps(b, (__mmask16)~sel[i], b, x);
    }
    *lo = b, *hi = a;
}
#undef LOAD16
#undef LOAD32

/* The outliers in sel out of the codes (acc: the group's code words),
 * after they were computed as if there were none; a word at a time in
 * registers (a masked store a row into acc, reloaded by the next, cost
 * more than the selection). */
INLINE void clear_sel(const zjob *J, unsigned m, const uint16_t *sel, __m512i *acc)
{
    const unsigned bits = J->L->bits, cpd = 32 / bits;
    const __m512i ones = _mm512_set1_epi32((int)((1u << bits) - 1u));
    for (unsigned w = 0; w * cpd < m; w++) {
        __m512i clr = _mm512_setzero_si512();
        for (unsigned j = 0; j < cpd; j++)
            clr = _mm512_mask_or_epi32(clr, sel[w * cpd + j], clr, _mm512_slli_epi32(ones, j * bits));
        acc[w] = _mm512_andnot_si512(clr, acc[w]);
    }
}

/* The outliers in sel as the block stores them: per column, in the order
 * of their rows, from pair gb*k_full of its row's section; values are the
 * entries themselves (fp16 rows: their halves; fp32: vcvtps2ph rounds as
 * gear_float_to_half).  With we, their residual entries become 0.  A
 * column's rows come from its bit of sel, 32 rows at a time
 * (vptestmw), compressed into a list (vpcompressw, vpexpandw). */
static void store_sel(const zjob *J, const int h, unsigned c0, unsigned gb, unsigned r0, unsigned m,
                      const uint16_t *sel, unsigned np, const int we)
{
    const gear_block_layout *L = J->L;
    const __m512i step = _mm512_set1_epi16(32);
    const __m512i iota = _mm512_set_epi16(31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14,
                                          13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __mmask16 out = (__mmask16)((1u << np) - 1u);
    for (unsigned l = 0; l < 16; l++) {
        const unsigned c = c0 + l;
        const __m512i bit = _mm512_set1_epi16((short)(1u << l));
        __m512i rv = _mm512_setzero_si512(); /* the column's rows, first np lanes */
        unsigned cnt = 0;
        __m512i ri = _mm512_add_epi16(iota, _mm512_set1_epi16((short)r0));
        for (unsigned i = 0; i < m; i += 32, ri = _mm512_add_epi16(ri, step)) {
            /* sel past row m was never written: not read either */
            __mmask32 live = m - i < 32 ? (__mmask32)((1u << (m - i)) - 1u) : (__mmask32)~0u;
            __mmask32 mk = _mm512_mask_test_epi16_mask(live, _mm512_maskz_loadu_epi16(live, sel + i), bit);
            unsigned pc = (unsigned)__builtin_popcount(mk);
            /* appended at lane cnt in registers (vpcompressw to memory is
             * microcoded on Zen 4, and reloading the pieces stalls) */
            rv = _mm512_mask_expand_epi16(rv, (__mmask32)(((1u << pc) - 1u) << cnt), _mm512_maskz_compress_epi16(mk, ri));
            cnt += pc;
        }
        uint16_t rows[32];
        _mm512_storeu_si512(rows, rv);
        __m512i a = _mm512_cvtepu16_epi32(_mm512_castsi512_si256(rv)); /* rows of Z */
        __m512i f = J->key ? _mm512_add_epi32(_mm512_mullo_epi32(a, _mm512_set1_epi32((int)L->d)), _mm512_set1_epi32((int)c))
                           : _mm512_add_epi32(a, _mm512_set1_epi32((int)(c * L->d)));
        size_t j0 = (size_t)c * L->outliers_per_row + 2 * (size_t)gb * J->k;
        _mm256_mask_storeu_epi16(J->blk + L->off_oidx + 2 * j0, out, _mm512_cvtepi32_epi16(f));
        if (h) {
            uint8_t *ov = J->blk + L->off_oval + 2 * j0;
            for (unsigned o = 0; o < np; o++) memcpy(ov + 2 * o, J->z16 + (size_t)rows[o] * J->ld16 + c, 2);
        } else {
            __m512i at = _mm512_add_epi32(_mm512_mullo_epi32(a, _mm512_set1_epi32((int)J->nc)), _mm512_set1_epi32((int)c));
            __m512 x = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), out, at, J->z, 4);
            _mm256_mask_storeu_epi16(J->blk + L->off_oval + 2 * j0, out,
                                     _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        if (we)
            for (unsigned o = 0; o < np; o++) J->ez[(size_t)rows[o] * J->nc + c] = 0.0f;
    }
}

/* Whether every quotient of the 16 groups rounds into [0, levels]: those
 * of their extremes lo and hi do (v - mn and v * (1/dl) are monotonic in
 * v), and no group is constant (dl = 0). */
INLINE int strip_in_range(const gparams *g, __m512 lo, __m512 hi, unsigned levels)
{
    __m512 qlo = _mm512_mul_ps(_mm512_sub_ps(lo, g->mnf), g->inv);
    __m512 qhi = _mm512_mul_ps(_mm512_sub_ps(hi, g->mnf), g->inv);
    __mmask16 ok = _mm512_mask_cmp_ps_mask(g->nz, qlo, _mm512_set1_ps(-0.5f), _CMP_GE_OQ);
    ok = _mm512_mask_cmp_ps_mask(ok, qhi, _mm512_set1_ps((float)levels + 0.5f), _CMP_LT_OQ);
    return ok == 0xffff;
}

/* strip() for k > 1 outliers a side, out of line: inlined there, it made
 * the common layouts' strips 8 % slower (kivi4 keys). */
static __attribute__((noinline)) int strip_multi(const zjob *J, const int h, unsigned c0, unsigned gb, unsigned r0,
                                                 unsigned m, unsigned k, const int we)
{
    __m512 lo, hi, mx1, mn1;
    __m512i pmx, pmn;
    if (h && !strip_stats16(J, c0, r0, m, 0, &mx1, &hi, &mn1, &lo, &pmx, &pmn)) return 0; /* Inf or NaN */
    uint16_t sel[1024]; /* the outliers, a mask a row (m <= 1024: 1-bit codes) */
    switch (k) { /* k a constant in select_lists */
#define K(v) case v: select_k(J, h, r0, m, c0, v, sel, &lo, &hi); break;
    K(2) K(3) K(4) K(5) K(6) K(7) default: select_k(J, h, r0, m, c0, CPU_AVX512_KMAX, sel, &lo, &hi);
#undef K
    }
    __mmask16 none = _mm512_cmp_ps_mask(lo, hi, _CMP_GT_OQ); /* every entry an outlier: as ref, [0, 0] */
    lo = _mm512_mask_mov_ps(lo, none, _mm512_setzero_ps());
    hi = _mm512_mask_mov_ps(hi, none, _mm512_setzero_ps());
    gparams g;
    strip_params(lo, hi, J->levels, &g);
    __m512i acc[32], amx, amn;
    /* codes and residual as if there were no outliers, then cleared */
    if (strip_in_range(&g, lo, hi, J->levels))
        strip_codes(J, h, r0, m, c0, &g, 0, 0, we, 1, acc, &amx, &amn);
    else
        strip_codes(J, h, r0, m, c0, &g, 0, 0, we, 0, acc, &amx, &amn);
    clear_sel(J, m, sel, acc);
    store_codes(J, c0, gb * (J->group * J->L->bits / 32), acc, m * J->L->bits / 32);
    store_group(J, h, c0, gb, 0, &g, amx, amn);
    store_sel(J, h, c0, gb, r0, m, sel, 2 * k, we);
    return 1;
}

/* One strip of 16 columns, one group of rows (m of them, k outliers a
 * side: the last group's may be fewer): both passes and the stores;
 * 0 if the strip holds Inf or NaN (fp16 rows; fp32 ones were checked). */
INLINE int strip(const zjob *J, const int h, unsigned c0, unsigned gb, const int we)
{
    const int last = gb + 1 == J->G;
    const unsigned r0 = gb * J->group, m = last ? J->tail : J->group, k = last ? J->kt : J->k;
    const unsigned W = m * J->L->bits / 32;
    if (k > 1) return h ? strip_multi(J, 1, c0, gb, r0, m, k, we) : strip_multi(J, 0, c0, gb, r0, m, k, we);
    __m512 mx1, mx2 = _mm512_setzero_ps(), mn1, mn2 = mx2;
    __m512i pmx = _mm512_setzero_si512(), pmn = pmx;
    if (h) {
        if (!strip_stats16(J, c0, r0, m, k, &mx1, &mx2, &mn1, &mn2, &pmx, &pmn)) return 0;
    } else {
        strip_stats(J, c0, r0, m, k, &mx1, &mx2, &mn1, &mn2);
    }
    gparams g;
    g.mx1 = mx1, g.mn1 = mn1;
    __m512 lo = k ? mn2 : mn1, hi = k ? mx2 : mx1;
    strip_params(lo, hi, J->levels, &g);
    __m512i acc[32], amx, amn;
    const int inr = strip_in_range(&g, lo, hi, J->levels);
#define CODES(K, TIE)                                                                              \
    do {                                                                                           \
        if (inr) strip_codes(J, h, r0, m, c0, &g, K, TIE, we, 1, acc, &amx, &amn);                 \
        else strip_codes(J, h, r0, m, c0, &g, K, TIE, we, 0, acc, &amx, &amn);                     \
    } while (0)
    if (!k) {
        CODES(0, 0);
    } else {
        __mmask16 tie = _mm512_cmp_ps_mask(mx1, mx2, _CMP_EQ_OQ) | _mm512_cmp_ps_mask(mn1, mn2, _CMP_EQ_OQ);
        if (h && !tie) {
            /* each extreme occurs once, at the row pass 1 found: codes and
             * residual without per-entry outlier tests, then cleared there */
            CODES(0, 0);
            clear_outliers(J, r0, m, c0, pmx, pmn, acc, we);
            amx = pmx, amn = pmn;
        } else if (!tie) {
            CODES(1, 0);
        } else {
            CODES(1, 1);
        }
    }
#undef CODES
    store_codes(J, c0, gb * (J->group * J->L->bits / 32), acc, W);
    store_group(J, h, c0, gb, (int)k, &g, amx, amn);
    return 1;
}

/* Rows [t0, t1) of the next block, every cache line. */
static void prefetch_next(const zjob *J, unsigned t0, unsigned t1)
{
    const unsigned n = J->L->n, d = J->L->d;
    for (unsigned t = t0; t < t1 && t < n; t++)
        for (unsigned c = 0; c < d; c += 32) _mm_prefetch((const char *)(J->pf + t * J->pf_ld + c), _MM_HINT_T2);
}

/* Value blocks: the next block's rows again, into L1, a share before
 * each of the power iteration's last `iters` products (product pi of
 * 2*iters).  Zen 4 drops some PREFETCHT1/T2 (Wang et al., arXiv
 * 2411.02814, "Software Prefetching Instruction"), and the value
 * transposition, all loads and shuffles, then waited on DRAM: 13 % of a
 * gear2 value block.  Keys overlap their misses with pass 1's arithmetic
 * (there, this cost 2 %). */
static void prefetch_again(const zjob *J, unsigned pi)
{
    const unsigned iters = J->L->iters, n = J->L->n, d = J->L->d;
    if (J->key || !J->pf || pi < iters) return;
    const unsigned per = (n + iters - 1) / iters, t0 = (pi - iters) * per;
    for (unsigned t = t0; t < t0 + per && t < n; t++)
        for (unsigned c = 0; c < d; c += 32) _mm_prefetch((const char *)(J->pf + t * J->pf_ld + c), _MM_HINT_T0);
}

/* One line in each page of the block after next: its page walks are
 * done a block ahead of prefetch_next (with input from DRAM, TLB misses
 * had left value blocks 7 % slower than from the LLC). */
static void touch_pages(const zjob *J)
{
    uintptr_t last = 0;
    for (unsigned t = 0; t < J->L->n; t++) {
        const uint16_t *row = J->after + (size_t)t * J->pf_ld;
        uintptr_t page = (uintptr_t)row >> 12;
        if (page != last) _mm_prefetch((const char *)row, _MM_HINT_T2);
        last = page;
    }
}

/* 0 if the block holds Inf or NaN (seen in fp16 rows). */
static int quantize_z(const zjob *J)
{
    int ok = 1;
    /* the next block's rows, a share per strip */
    const unsigned strips = J->nc / 16 * J->G, per = (J->L->n + strips - 1) / strips;
    unsigned s = 0;
    if (J->after) touch_pages(J);
    for (unsigned c0 = 0; c0 < J->nc && ok; c0 += 16)
        for (unsigned gb = 0; gb < J->G && ok; gb++, s++) {
            if (J->pf) prefetch_next(J, s * per, s * per + per);
            if (J->z16) ok = J->ez ? strip(J, 1, c0, gb, 1) : strip(J, 1, c0, gb, 0);
            else ok = J->ez ? strip(J, 0, c0, gb, 1) : strip(J, 0, c0, gb, 0);
        }
    return ok;
}

/* 16 rows r[i] of a 16x16 tile transposed in registers: r[j] becomes
 * column j. */
INLINE void transpose16(__m512 r[16])
{
    __m512 t[16];
    for (unsigned i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (unsigned i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    /* r[4b + q], 128-bit lane l: rows 4b..4b+3 of column 4l + q */
    for (unsigned i = 0; i < 8; i++) {
        unsigned b = i / 4, q = i % 4; /* pair blocks b and b+2 */
        t[i] = _mm512_shuffle_f32x4(r[4 * (2 * b) + q], r[4 * (2 * b + 1) + q], 0x88);
        t[i + 8] = _mm512_shuffle_f32x4(r[4 * (2 * b) + q], r[4 * (2 * b + 1) + q], 0xDD);
    }
    for (unsigned i = 0; i < 4; i++)
        for (unsigned h = 0; h < 2; h++) {
            __m512 a = t[8 * h + i], b = t[8 * h + 4 + i];
            r[i + 4 * h] = _mm512_shuffle_f32x4(a, b, 0x88);
            r[i + 8 + 4 * h] = _mm512_shuffle_f32x4(a, b, 0xDD);
        }
}

/* out (cols x rows, row-major) = in^T for in rows x cols, both multiples
 * of 16 (also the key transpose of decompression, cpu_decompress.c). */
void gear_cpu_transpose_avx512(const float *in, unsigned rows, unsigned cols, float *out)
{
    for (unsigned i0 = 0; i0 < rows; i0 += 16)
        for (unsigned j0 = 0; j0 < cols; j0 += 16) {
            __m512 r[16];
            for (unsigned i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(in + (size_t)(i0 + i) * cols + j0);
            transpose16(r);
            for (unsigned j = 0; j < 16; j++) _mm512_storeu_ps(out + (size_t)(j0 + j) * rows + i0, r[j]);
        }
}

/* out (cols x rows) = in^T for in: rows of fp16 ld apart (rows, cols
 * multiples of 16), as 16-bit words: 16x16 tiles by unpacking 16-, 32-
 * and 64-bit pairs in each 128-bit lane, then joining the lanes (64
 * 256-bit shuffles a tile; converting to fp32 first took 64 512-bit ones,
 * at half their rate on Zen 4, and 16 conversions). */
static void transpose_halves(const uint16_t *in, size_t ld, unsigned rows, unsigned cols, uint16_t *out)
{
    for (unsigned i0 = 0; i0 < rows; i0 += 16)
        for (unsigned j0 = 0; j0 < cols; j0 += 16) {
            __m256i r[16], a[16];
            for (unsigned i = 0; i < 16; i++)
                r[i] = _mm256_loadu_si256((const __m256i *)(in + (size_t)(i0 + i) * ld + j0));
            for (unsigned i = 0; i < 16; i += 2) { /* a[i], a[i+1]: columns 0-3, 4-7 of rows i, i+1 */
                a[i] = _mm256_unpacklo_epi16(r[i], r[i + 1]);
                a[i + 1] = _mm256_unpackhi_epi16(r[i], r[i + 1]);
            }
            for (unsigned m = 0; m < 16; m += 4) { /* r[m+q]: columns 2q, 2q+1 of rows m..m+3 */
                r[m] = _mm256_unpacklo_epi32(a[m], a[m + 2]);
                r[m + 1] = _mm256_unpackhi_epi32(a[m], a[m + 2]);
                r[m + 2] = _mm256_unpacklo_epi32(a[m + 1], a[m + 3]);
                r[m + 3] = _mm256_unpackhi_epi32(a[m + 1], a[m + 3]);
            }
            for (unsigned p = 0; p < 16; p += 8) /* a[p+j]: column j (lane 0), 8+j (lane 1) of rows p..p+7 */
                for (unsigned q = 0; q < 4; q++) {
                    a[p + 2 * q] = _mm256_unpacklo_epi64(r[p + q], r[p + 4 + q]);
                    a[p + 2 * q + 1] = _mm256_unpackhi_epi64(r[p + q], r[p + 4 + q]);
                }
            for (unsigned j = 0; j < 8; j++) {
                _mm256_storeu_si256((__m256i *)(out + (size_t)(j0 + j) * rows + i0), _mm256_permute2x128_si256(a[j], a[8 + j], 0x20));
                _mm256_storeu_si256((__m256i *)(out + (size_t)(j0 + 8 + j) * rows + i0), _mm256_permute2x128_si256(a[j], a[8 + j], 0x31));
            }
        }
}

/* ------------------------------------------------------ power iteration */

/* Loops over register arrays fully unrolled: without it GCC kept the
 * accumulators of some instances in memory (a store-forwarding chain per
 * FMA, 7-10 cycles a vector instead of 1). */
#define UNROLL _Pragma("GCC unroll 16")

/* out[k][j] = sum_i ez[i][j] w[k][i] for the NV*16 columns from j0:
 * rank-r axpys over the rows (r and NV constant in each instance), rows
 * last to first if rev. */
INLINE void mul_cols_chunk(const float *ez, unsigned nr, unsigned nc, unsigned j0, const unsigned r,
                           const unsigned NV, const float *w, float *out, const int rev)
{
    /* NV*r < 16: two rows a step into two sets of accumulators (8
     * chains were too few to keep the FMA pipes busy) */
    const unsigned S = NV * r < 16 ? 2 : 1;
    __m512 acc[2][4][8];
    UNROLL for (unsigned h = 0; h < S; h++)
        UNROLL for (unsigned k = 0; k < r; k++)
            UNROLL for (unsigned v = 0; v < NV; v++) acc[h][k][v] = _mm512_setzero_ps();
    for (unsigned s = 0; s < nr; s += S) {
        UNROLL for (unsigned h = 0; h < S; h++) {
            const unsigned i = rev ? nr - 1 - s - h : s + h;
            const float *p = ez + (size_t)i * nc + j0;
            __m512 e[8];
            UNROLL for (unsigned v = 0; v < NV; v++) e[v] = _mm512_loadu_ps(p + 16 * v);
            UNROLL for (unsigned k = 0; k < r; k++) {
                __m512 wk = _mm512_set1_ps(w[(size_t)k * nr + i]);
                UNROLL for (unsigned v = 0; v < NV; v++) acc[h][k][v] = _mm512_fmadd_ps(e[v], wk, acc[h][k][v]);
            }
        }
    }
    UNROLL for (unsigned k = 0; k < r; k++)
        UNROLL for (unsigned v = 0; v < NV; v++) {
            __m512 a = acc[0][k][v];
            if (S == 2) a = _mm512_add_ps(a, acc[1][k][v]);
            _mm512_storeu_ps(out + (size_t)k * nc + j0 + 16 * v, a);
        }
}

/* out[k][j] = sum_i ez[i][j] w[k][i]: 128 columns at a time for r <= 2
 * (one sweep over the rows of a 128-wide E), else 64. */
INLINE void mul_cols_r(const float *ez, unsigned nr, unsigned nc, const unsigned r, const float *w, float *out,
                       const int rev)
{
    unsigned j0 = 0;
    if (r <= 2)
        for (; j0 + 128 <= nc; j0 += 128) mul_cols_chunk(ez, nr, nc, j0, r, 8, w, out, rev);
    for (; j0 + 64 <= nc; j0 += 64) mul_cols_chunk(ez, nr, nc, j0, r, 4, w, out, rev);
    for (; j0 < nc; j0 += 16) mul_cols_chunk(ez, nr, nc, j0, r, 1, w, out, rev);
}

static void mul_cols(const float *ez, unsigned nr, unsigned nc, unsigned r, const float *w, float *out, int rev)
{
    switch (r) {
    case 1: mul_cols_r(ez, nr, nc, 1, w, out, rev); break;
    case 2: mul_cols_r(ez, nr, nc, 2, w, out, rev); break;
    case 3: mul_cols_r(ez, nr, nc, 3, w, out, rev); break;
    default: mul_cols_r(ez, nr, nc, 4, w, out, rev); break;
    }
}

/* out[k][i] = sum_j ez[i][j] w[k][j]: lane partials, reduced by
 * transposing adds, 16 rows at a time, in reverse if rev (r and nv =
 * nc/16 constants in each instance). */
INLINE void mul_rows_rv(const float *ez, unsigned nr, const unsigned r, const float *w, float *out,
                        const unsigned nv, const int rev)
{
    const unsigned nc = 16 * nv;
    /* w in registers where it fits (nv <= 4: values, 64 tokens) */
    __m512 wr[4][4];
    if (nv <= 4)
        UNROLL for (unsigned k = 0; k < r; k++)
            UNROLL for (unsigned v = 0; v < nv; v++) wr[k][v] = _mm512_loadu_ps(w + (size_t)k * nc + 16 * v);
    for (unsigned b = 0; b < nr; b += 16) {
        const unsigned i0 = rev ? nr - 16 - b : b;
        __m512 u[4][4];
        /* four rows at a time, each E vector loaded once for all r: 4r
         * independent chains; their 4 x 16 lane partials are reduced at
         * once to one vector per k (partial l of each row in 128-bit lane
         * l), so that few registers stay live */
        UNROLL for (unsigned i = 0; i < 4; i++) {
            const float *p = ez + (size_t)(i0 + 4 * i) * nc;
            __m512 s[4][4];
            UNROLL for (unsigned k = 0; k < r; k++)
                UNROLL for (unsigned q = 0; q < 4; q++) s[k][q] = _mm512_setzero_ps();
            UNROLL for (unsigned v = 0; v < nv; v++) {
                __m512 e[4];
                UNROLL for (unsigned q = 0; q < 4; q++) e[q] = _mm512_loadu_ps(p + q * nc + 16 * v);
                UNROLL for (unsigned k = 0; k < r; k++) {
                    __m512 wv = nv <= 4 ? wr[k][v] : _mm512_loadu_ps(w + (size_t)k * nc + 16 * v);
                    UNROLL for (unsigned q = 0; q < 4; q++) s[k][q] = _mm512_fmadd_ps(e[q], wv, s[k][q]);
                }
            }
            UNROLL for (unsigned k = 0; k < r; k++) u[k][i] = gear_rows4_partials(s[k]);
        }
        /* u[k][m], 128-bit lane l: partial l of rows 4m..4m+3 */
        UNROLL for (unsigned k = 0; k < r; k++) _mm512_storeu_ps(out + (size_t)k * nr + i0, gear_rows16_sums(u[k]));
    }
}
#undef UNROLL

#define MUL_ROWS_R(NV)                                                                             \
    switch (r) {                                                                                   \
    case 1: mul_rows_rv(ez, nr, 1, w, out, NV, rev); break;                                             \
    case 2: mul_rows_rv(ez, nr, 2, w, out, NV, rev); break;                                             \
    case 3: mul_rows_rv(ez, nr, 3, w, out, NV, rev); break;                                             \
    default: mul_rows_rv(ez, nr, 4, w, out, NV, rev); break;                                            \
    }

static void mul_rows(const float *ez, unsigned nr, unsigned nc, unsigned r, const float *w, float *out, int rev)
{
    if (nc == 64) {
        MUL_ROWS_R(4)
    } else if (nc == 128) {
        MUL_ROWS_R(8)
    } else {
        MUL_ROWS_R(nc / 16)
    }
}
#undef MUL_ROWS_R

/* mul_rows and mul_cols for ranks up to 8: four rows of w and out a
 * pass (the kernels keep four columns' sums in registers) */
static void mul_rows_any(const float *ez, unsigned nr, unsigned nc, unsigned r, const float *w, float *out, int rev)
{
    for (unsigned k0 = 0; k0 < r; k0 += 4)
        mul_rows(ez, nr, nc, r - k0 < 4 ? r - k0 : 4, w + (size_t)k0 * nc, out + (size_t)k0 * nr, rev);
}

static void mul_cols_any(const float *ez, unsigned nr, unsigned nc, unsigned r, const float *w, float *out, int rev)
{
    for (unsigned k0 = 0; k0 < r; k0 += 4)
        mul_cols(ez, nr, nc, r - k0 < 4 ? r - k0 : 4, w + (size_t)k0 * nr, out + (size_t)k0 * nc, rev);
}

/* sum a[i] b[i] in double, len a multiple of 16: two chains (the
 * orthonormalization is a chain of these dots, latency-bound) */
static double dot_d(const float *a, const float *b, unsigned len)
{
    __m512d s = _mm512_setzero_pd(), t = s;
    for (unsigned i = 0; i < len; i += 16) {
        s = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i)), _mm512_cvtps_pd(_mm256_loadu_ps(b + i)), s);
        t = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8)), _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8)), t);
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(s, t));
}

/* Modified Gram-Schmidt on the r rows of yt (r x len), as cpu_compress.c's
 * orthonormalize on the columns of y (gear_cpu_orthonormalize_t_avx2 is
 * this in 256-bit lanes; called here instead, it made gear2 compression
 * 1.5-2.5 % slower).  The original norms first, all at
 * once (they are independent; a first column's is also its final one). */
static void orthonormalize_t(float *yt, unsigned len, unsigned r)
{
    double orig[8];
    for (unsigned c = 0; c < r; c++) orig[c] = dot_d(yt + (size_t)c * len, yt + (size_t)c * len, len);
    for (unsigned c = 0; c < r; c++) {
        float *yc = yt + (size_t)c * len;
        double nrm = orig[c];
        for (int pass = 0; pass < 2 && c; pass++) { /* a second only after cancellation (GEAR_GS_REPEAT) */
            for (unsigned p = 0; p < c; p++) {
                const float *yp = yt + (size_t)p * len;
                __m512 dv = _mm512_set1_ps((float)dot_d(yp, yc, len));
                for (unsigned i = 0; i < len; i += 16)
                    _mm512_storeu_ps(yc + i, _mm512_fnmadd_ps(dv, _mm512_loadu_ps(yp + i), _mm512_loadu_ps(yc + i)));
            }
            double before = nrm;
            nrm = dot_d(yc, yc, len);
            if (nrm > before * GEAR_GS_REPEAT) break;
        }
        int dead = !(nrm > 1e-24) || nrm <= orig[c] * 1e-12;
        __m512 inv = _mm512_set1_ps(dead ? 0.0f : (float)(1.0 / sqrt(nrm)));
        for (unsigned i = 0; i < len; i += 16) _mm512_storeu_ps(yc + i, _mm512_mul_ps(_mm512_loadu_ps(yc + i), inv));
    }
}

/* dst[i*r + k] = half_sat(src[k][i]) for i < len (len a multiple of 16). */
static void put_factor(const float *src, unsigned len, unsigned r, uint8_t *dst)
{
    const __m512 hi = _mm512_set1_ps(65504.0f), lo = _mm512_set1_ps(-65504.0f);
    for (unsigned i = 0; i < len; i += 16) {
        __m512i h[8];
        for (unsigned k = 0; k < r; k++) {
            __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_loadu_ps(src + (size_t)k * len + i), lo), hi);
            h[k] = _mm512_cvtepu16_epi32(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        }
        if (r == 1) {
            _mm256_storeu_si256((__m256i *)(dst + 2 * (size_t)i), _mm512_cvtepi32_epi16(h[0]));
        } else if (r == 2) {
            _mm512_storeu_si512(dst + 4 * (size_t)i, _mm512_or_si512(h[0], _mm512_slli_epi32(h[1], 16)));
        } else {
            uint32_t t[8][16];
            for (unsigned k = 0; k < r; k++) _mm512_storeu_si512(t[k], h[k]);
            for (unsigned l = 0; l < 16; l++)
                for (unsigned k = 0; k < r; k++) cpu_put_u16(dst + 2 * ((size_t)(i + l) * r + k), (uint16_t)t[k][l]);
        }
    }
}

/* pt[k][c] = gear_rng_uniform(key, c*r + k), 8 at a time (the SplitMix64
 * finalizer in 64-bit lanes; C * index stepped by additions, as
 * multiplications mod 2^64 distribute over them: two vpmullq of four). */
static void start_matrix(uint64_t key, unsigned d, unsigned r, float *pt)
{
    const __m512i K = _mm512_set1_epi64((long long)key), G = _mm512_set1_epi64((long long)0x9e3779b97f4a7c15ull);
    const __m512i M1 = _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ull);
    const __m512i M2 = _mm512_set1_epi64((long long)0x94d049bb133111ebull);
    const uint64_t C = 0xd1b54a32d192ed03ull;
    /* index + 1 of column c + lane, row k: (c + lane) * r + k + 1 */
    const __m512i step = _mm512_set1_epi64((long long)(C * 8u * r));
    for (unsigned k = 0; k < r; k++) {
        __m512i ci = _mm512_mullo_epi64(_mm512_set1_epi64((long long)C),
                                        _mm512_add_epi64(_mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64(r)),
                                                         _mm512_set1_epi64(k + 1)));
        for (unsigned c = 0; c < d; c += 8, ci = _mm512_add_epi64(ci, step)) {
            __m512i z = _mm512_add_epi64(_mm512_xor_si512(K, ci), G);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)), M1);
            z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), M2);
            z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
            __m256 f = _mm512_cvtepi64_ps(_mm512_srli_epi64(z, 40));
            _mm256_storeu_ps(pt + (size_t)k * d + c, _mm256_mul_ps(f, _mm256_set1_ps(1.0f / 16777216.0f)));
        }
    }
}

/* Power iteration on E (n x d) held as ez = Z-layout (keys: E; values: E^T);
 * yt: r x n, pt: r x d. */
static void lowrank(const gear_block_layout *L, const gear_block_id *id, const zjob *J, float *yt,
                    float *pt)
{
    unsigned n = L->n, d = L->d, r = L->rank;
    uint64_t key = gear_rng_key(id->seed, id->layer, id->head, id->block, L->kind);
    start_matrix(key, d, r, pt);
    const unsigned nr = J->nr, nc = J->nc;
    if (J->bf) {
        /* bf16 products: E once into its two layouts (in zbuf, whose
         * transposed input is no longer needed) */
        uint16_t *er = J->bf, *ep = er + (size_t)nr * nc, wb[4 * 1024];
        gear_cpu_bf16_layouts(J->ez, nr, nc, er, ep);
        for (unsigned it = 0; it < L->iters; it++) {
            if (J->key) gear_cpu_bf16_mul_rows(er, nr, nc, r, pt, yt, wb); /* Y = E P */
            else gear_cpu_bf16_mul_cols(ep, nr, nc, r, pt, yt, wb);
            orthonormalize_t(yt, n, r);
            if (J->key) gear_cpu_bf16_mul_cols(ep, nr, nc, r, yt, pt, wb); /* P = E^T Y */
            else gear_cpu_bf16_mul_rows(er, nr, nc, r, yt, pt, wb);
        }
    } else {
        /* E (32 KiB at 64 x 128) fills L1 on its own: a sweep in one
         * direction over it evicts what the next sweep reads first, so the
         * sweeps alternate, and each one starts on the rows the last one
         * left in L1 */
        for (unsigned it = 0; it < L->iters; it++) {
            prefetch_again(J, 2 * it);
            if (J->key) mul_rows_any(J->ez, nr, nc, r, pt, yt, 0); /* Y = E P */
            else mul_cols_any(J->ez, nr, nc, r, pt, yt, 0);
            orthonormalize_t(yt, n, r);
            prefetch_again(J, 2 * it + 1);
            if (J->key) mul_cols_any(J->ez, nr, nc, r, yt, pt, 1); /* P = E^T Y */
            else mul_rows_any(J->ez, nr, nc, r, yt, pt, 1);
        }
    }
    put_factor(yt, n, r, J->blk + L->off_a);
    put_factor(pt, d, r, J->blk + L->off_b);
}

/* 0 if the block holds Inf or NaN (fp16 keys; the callers check the rest). */
static int run(const gear_block_layout *L, const gear_block_id *id, zjob *J, uint8_t *blk, float *ez,
               float *yt, float *pt)
{
    J->L = L;
    J->blk = blk;
    J->key = L->kind == GEAR_KEY;
    J->nr = J->key ? L->n : L->d;
    J->nc = J->key ? L->d : L->n;
    J->ez = L->rank ? ez : NULL;
    J->group = L->group;
    J->G = L->groups_per_row;
    J->levels = (1u << L->bits) - 1u;
    J->k = L->k_full;
    J->tail = L->tail_len;
    J->kt = L->k_tail;
    J->ow = L->outliers_per_row / 2;
    /* |v*(1/dl) - v/dl| < 3 ulp of q <= levels+1 for the codes that matter */
    J->thr = 0.5f - (float)(J->levels + 1) * 0x1p-21f;
    if (!quantize_z(J)) return 0;
    if (L->rank) lowrank(L, id, J, yt, pt);
    return 1;
}

/* bf16 products where the CPU has them and the thin factors fit the
 * stack scratch of lowrank (rank 4 at most). */
static int use_bf16(const gear_block_layout *L)
{
    return gear_cpu_have_avx512_bf16 && L->rank && L->rank <= 4 && L->n <= 1024 && L->d <= 1024;
}

void gear_cpu_compress_avx512(const gear_block_layout *L, const gear_block_id *id, const float *x,
                              uint8_t *blk, float *zbuf, float *ez, float *yt, float *pt)
{
    zjob J;
    memset(&J, 0, sizeof J);
    J.bf = use_bf16(L) ? (uint16_t *)zbuf : NULL;
    if (L->kind != GEAR_KEY) gear_cpu_transpose_avx512(x, L->n, L->d, zbuf);
    J.z = L->kind == GEAR_KEY ? x : zbuf;
    (void)run(L, id, &J, blk, ez, yt, pt);
}

int gear_cpu_compress_avx512_f16(const gear_block_layout *L, const gear_block_id *id, const uint16_t *x,
                                 size_t ld, const uint16_t *next, const uint16_t *after, uint8_t *blk,
                                 float *zbuf, float *ez, float *yt, float *pt)
{
    zjob J;
    memset(&J, 0, sizeof J);
    J.bf = use_bf16(L) ? (uint16_t *)zbuf : NULL;
    J.pf = next;
    J.after = after;
    J.pf_ld = ld;
    /* quantized straight from the halves (values transposed as 16-bit
     * words): no fp32 copy of the block, so it and the residual stay in
     * L1; pass 1 finds Inf and NaN */
    if (L->kind == GEAR_KEY) {
        J.z16 = x;
        J.ld16 = ld;
    } else {
        uint16_t *z16 = (uint16_t *)zbuf; /* room for n x d floats */
        transpose_halves(x, ld, L->n, L->d, z16);
        J.z16 = z16;
        J.ld16 = L->n;
    }
    return run(L, id, &J, blk, ez, yt, pt);
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
