/*
 * cpu_avx2.c - AVX2 + FMA + F16C kernels for x86-64 CPUs without AVX-512
 * (most desktop and laptop parts, older servers): the same shapes and the
 * same arithmetic as keys64/values64 of cpu_avx512.c (2- and 4-bit codes,
 * groups of 64, fp32 FMAs), eight lanes wide, and the compressor's
 * per-entry loops.  Compiled with AVX2 flags and only called after a
 * run-time CPU check (cpu_backend.c).  The four-row interleaves at the
 * end serve the portable attention wherever AVX2 runs, AVX-512 CPUs
 * included.
 *
 * Each accumulator chain gets one FMA per code row, whose latency (4
 * cycles) needs 8 chains in flight to keep two FMA units busy: a pass takes
 * 64 tokens or channels for one query row, 32 for two, 16 for three or four
 * (8, 8, 6, 8 accumulators; 16 ymm registers in all).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

#define INLINE static inline __attribute__((always_inline))

/* Four bytes in every lane, loaded by vbroadcastss (GCC otherwise goes
 * through a general register, a slow transfer on some cores). */
INLINE __m256i bcast32(const uint8_t *p)
{
    return _mm256_castps_si256(_mm256_broadcast_ss((const float *)(const void *)p));
}

/* Codes 16j .. 16j+15 of a packed row as two vectors of floats, in order.
 * 2 bits, inplace: lane i holds its code times 4^i (masked in place, not
 * shifted down, and converted), an and and a conversion per 8 codes.
 * Decoding the codes themselves (vpermps reads the low 3 bits of each
 * shifted word, and its table repeats {0,1,2,3}) made kivi2's attention
 * in cache 1.14-1.44x slower on Zen 3, where vpermps takes 1.2 cycles
 * and contends with the FMAs.
 * The kernels start their sums at bias*4^i and scale them by 4^-i at the
 * end (lane_scale): powers of two, so every rounding is the one the codes
 * themselves give, as long as no sum nears fp32's range (inplace_fits). */
INLINE void codes16(const uint8_t *row, unsigned bits, const int inplace, unsigned j, __m256 *lo, __m256 *hi)
{
    if (bits == 2 && inplace) {
        const __m256i m = _mm256_setr_epi32(3, 3 << 2, 3 << 4, 3 << 6, 3 << 8, 3 << 10, 3 << 12, 3 << 14);
        __m256i x = bcast32(row + 4 * j);
        *lo = _mm256_cvtepi32_ps(_mm256_and_si256(x, m));
        *hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(x, 16), m));
    } else if (bits == 2) {
        const __m256 tab = _mm256_setr_ps(0, 1, 2, 3, 0, 1, 2, 3);
        __m256i x = bcast32(row + 4 * j);
        *lo = _mm256_permutevar8x32_ps(tab, _mm256_srlv_epi32(x, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)));
        *hi = _mm256_permutevar8x32_ps(tab, _mm256_srlv_epi32(x, _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30)));
    } else { /* 4 bits: 16 codes in 8 bytes */
        const __m256i sh = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28), m = _mm256_set1_epi32(15);
        *lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(bcast32(row + 8 * j), sh), m));
        *hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(bcast32(row + 8 * j + 4), sh), m));
    }
}

/* The factor of lane i in codes16's output (4^i for in-place 2-bit codes,
 * else 1), or its inverse. */
INLINE __m256 lane_scale(unsigned bits, const int inplace, int inverse)
{
    if (bits != 2 || !inplace) return _mm256_set1_ps(1.0f);
    return inverse ? _mm256_setr_ps(1.0f, 0x1p-2f, 0x1p-4f, 0x1p-6f, 0x1p-8f, 0x1p-10f, 0x1p-12f, 0x1p-14f)
                   : _mm256_setr_ps(1.0f, 0x1p2f, 0x1p4f, 0x1p6f, 0x1p8f, 0x1p10f, 0x1p12f, 0x1p14f);
}

/* Whether R rows of m weights (ld apart) and their biases (or NULL) are
 * all within 2^100 in magnitude, so that a sum of up to 1024 weights
 * times codes up to 3*4^7, plus the bias times 4^7, stays below 2^126:
 * finite, as the in-place codes need.  No for Inf and NaN (the codes16 path without
 * factors then gives what the float kernel always gave).  Queries that
 * large are some 30 orders of magnitude beyond real ones. */
INLINE int inplace_fits(const float *w, size_t ld, unsigned m, const float *bias, unsigned R)
{
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), lim = _mm256_set1_ps(0x1p100f);
    __m256 bad = _mm256_setzero_ps();
    int ok = 1;
    for (unsigned r = 0; r < R; r++) {
        const float *x = w + r * ld;
        unsigned i = 0;
        for (; i + 8 <= m; i += 8)
            bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), absm), lim, _CMP_NLE_UQ));
        for (; i < m; i++) ok &= fabsf(x[i]) <= 0x1p100f;
        if (bias) ok &= fabsf(bias[r]) <= 0x1p100f;
    }
    return ok && !_mm256_movemask_ps(bad);
}

/* R rows (<= 4) x 16*NJ tokens from token 16*j0: s[r][t] = bias[r] + sum_c w[r][c] code_ct. */
INLINE void keys_pass(const uint8_t *codes, unsigned row_bytes, unsigned bits, const int inplace, unsigned d,
                      const float *w, const float *bias, unsigned R, unsigned NJ, unsigned j0, float *s, unsigned n)
{
    __m256 acc[4][8];
    const __m256 up = lane_scale(bits, inplace, 0), down = lane_scale(bits, inplace, 1);
    for (unsigned r = 0; r < R; r++)
        for (unsigned k = 0; k < 2 * NJ; k++) acc[r][k] = _mm256_mul_ps(_mm256_set1_ps(bias[r]), up);
    for (unsigned c = 0; c < d; c++) {
        const uint8_t *row = codes + (size_t)c * row_bytes;
        for (unsigned j = 0; j < NJ; j++) {
            __m256 lo, hi;
            codes16(row, bits, inplace, j0 + j, &lo, &hi);
            for (unsigned r = 0; r < R; r++) {
                __m256 wr = _mm256_broadcast_ss(w + (size_t)r * d + c);
                acc[r][2 * j] = _mm256_fmadd_ps(wr, lo, acc[r][2 * j]);
                acc[r][2 * j + 1] = _mm256_fmadd_ps(wr, hi, acc[r][2 * j + 1]);
            }
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned k = 0; k < 2 * NJ; k++)
            _mm256_storeu_ps(s + (size_t)r * n + 16 * j0 + 8 * k, _mm256_mul_ps(acc[r][k], down));
}

/* The passes of R rows over 64 tokens (R, NJ constants after inlining). */
INLINE void keys_rows(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned d, const float *w,
                      const float *bias, unsigned R, float *s, unsigned n)
{
    const unsigned NJ = R == 1 ? 4 : R == 2 ? 2 : 1;
    if (bits == 2 && inplace_fits(w, d, d, bias, R))
        for (unsigned j0 = 0; j0 < 4; j0 += NJ) keys_pass(codes, row_bytes, bits, 1, d, w, bias, R, NJ, j0, s, n);
    else
        for (unsigned j0 = 0; j0 < 4; j0 += NJ) keys_pass(codes, row_bytes, bits, 0, d, w, bias, R, NJ, j0, s, n);
}

#define KEYS(B, R) keys_rows(codes, row_bytes, B, d, w + (size_t)r0 * d, bias + r0, R, s + (size_t)r0 * n, n)

void gear_cpu_keys64_avx2(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned d, const float *w,
                          const float *bias, unsigned rows, float *s, unsigned n)
{
    for (unsigned r0 = 0; r0 < rows; r0 += 4) {
        unsigned R = rows - r0 < 4 ? rows - r0 : 4;
        GEAR_CPU_BITS_ROWS(bits, R, KEYS);
    }
}

/* R rows x 16*NJ channels from channel c0 (inside group g of the G of a row),
 * over n tokens: o[r][c] += sum_t p[r][t] scale_t code_tc + bias[r].  pw:
 * the products p[r][t] scale_t (rows n apart), or NULL to form them here. */
INLINE void values_pass(const uint8_t *codes, unsigned row_bytes, unsigned bits, const int inplace, unsigned n,
                        unsigned G, unsigned g, const float *dl, const float *p, const float *pw, const float *bias,
                        unsigned R, unsigned NJ, unsigned c0, float *o, unsigned d)
{
    __m256 acc[4][8];
    for (unsigned r = 0; r < R; r++)
        for (unsigned k = 0; k < 2 * NJ; k++) acc[r][k] = _mm256_setzero_ps();
    for (unsigned t = 0; t < n; t++) {
        const uint8_t *row = codes + (size_t)t * row_bytes;
        float sc = dl[(size_t)t * G + g];
        for (unsigned j = 0; j < NJ; j++) {
            __m256 lo, hi;
            codes16(row, bits, inplace, c0 / 16 + j, &lo, &hi);
            for (unsigned r = 0; r < R; r++) {
                __m256 wr = pw ? _mm256_broadcast_ss(pw + (size_t)r * n + t) : _mm256_set1_ps(p[(size_t)r * n + t] * sc);
                acc[r][2 * j] = _mm256_fmadd_ps(wr, lo, acc[r][2 * j]);
                acc[r][2 * j + 1] = _mm256_fmadd_ps(wr, hi, acc[r][2 * j + 1]);
            }
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned k = 0; k < 2 * NJ; k++) {
            float *dst = o + (size_t)r * d + c0 + 8 * k;
            __m256 v = _mm256_add_ps(_mm256_mul_ps(acc[r][k], lane_scale(bits, inplace, 1)), _mm256_set1_ps(bias[r]));
            _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), v));
        }
}

/* sum a[t]*b[t] over t < n, eight partial sums. */
INLINE float dot8(const float *a, const float *b, unsigned n)
{
    __m256 acc = _mm256_setzero_ps();
    unsigned t = 0;
    for (; t + 8 <= n; t += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + t), _mm256_loadu_ps(b + t), acc);
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    float r = _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
    for (; t < n; t++) r += a[t] * b[t];
    return r;
}

/* R rows (a constant after inlining) x the 64 channels from 64*k, in
 * group g of the G of a row: the minima's term first, then the passes.
 * The group's scales and minima are gathered into columns first, so that
 * the minima's term is a vector dot product: its sums one after another,
 * a chain of 4-cycle adds a token, had taken a fifth of the kernel's time
 * (kivi2, head dim 128, G = 4, Zen 3). */
INLINE void values_rows(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned n, unsigned G,
                        unsigned g, unsigned k, const float *dl, const float *mn, const float *p, unsigned R,
                        float *o, unsigned d)
{
    const unsigned NJ = R == 1 ? 4 : R == 2 ? 2 : 1;
    float bias[4];
    /* the weights p*scale once for the 64/(16*NJ) passes (the same
     * products as values_pass forms: bit-identical), where they fit */
    float pw[4 * 256], dlc[256], mnc[256];
    int pre = n <= 256;
    if (pre) {
        for (unsigned t = 0; t < n; t++) {
            dlc[t] = dl[(size_t)t * G + g];
            mnc[t] = mn[(size_t)t * G + g];
        }
        for (unsigned r = 0; r < R; r++) {
            bias[r] = dot8(p + (size_t)r * n, mnc, n);
            for (unsigned t = 0; t < n; t++) pw[(size_t)r * n + t] = p[(size_t)r * n + t] * dlc[t];
        }
    } else
        for (unsigned r = 0; r < R; r++) {
            float b = 0.0f;
            for (unsigned t = 0; t < n; t++) b += p[(size_t)r * n + t] * mn[(size_t)t * G + g];
            bias[r] = b;
        }
    if (bits == 2 && pre && inplace_fits(pw, n, n, NULL, R))
        for (unsigned c0 = 64 * k; c0 < 64 * k + 64; c0 += 16 * NJ)
            values_pass(codes, row_bytes, bits, 1, n, G, g, dl, p, pw, bias, R, NJ, c0, o, d);
    else
        for (unsigned c0 = 64 * k; c0 < 64 * k + 64; c0 += 16 * NJ)
            values_pass(codes, row_bytes, bits, 0, n, G, g, dl, p, pre ? pw : NULL, bias, R, NJ, c0, o, d);
}

#define VALUES(B, R) \
    values_rows(codes, row_bytes, B, n, d / group, 64 * k / group, k, dl, mn, p + (size_t)r0 * n, R, \
                o + (size_t)r0 * d, d)

void gear_cpu_values64_avx2(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned n, unsigned d,
                            unsigned group, const float *dl, const float *mn, const float *p, unsigned rows,
                            float *o)
{
    for (unsigned r0 = 0; r0 < rows; r0 += 4) {
        unsigned R = rows - r0 < 4 ? rows - r0 : 4;
        for (unsigned k = 0; k < d / 64; k++) GEAR_CPU_BITS_ROWS(bits, R, VALUES);
    }
}

/* fp16 -> fp32 (vcvtph2ps is exact for every half, as gear_half_to_float). */
void gear_cpu_halves_avx2(const uint8_t *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + 2 * i))));
    for (; i < n; i++) dst[i] = gear_half_to_float(cpu_u16(src + 2 * i));
}

/* gear_cpu_halves_finite_avx512 sixteen halves a step with two 8-lane
 * conversions.  Without it the x86-64-v3 clone of the portable loop ran
 * scalar (GCC 12 vectorizes it for AVX-512 only, or with
 * -fno-trapping-math into slower bit manipulation): gear2 keys compress
 * 1.52 GB/s without it, 1.65 with it. */
int gear_cpu_halves_finite_avx2(const uint16_t *src, size_t m, float *dst)
{
    __m256i mag = _mm256_setzero_si256(); /* largest |half| bit pattern */
    const __m256i m7 = _mm256_set1_epi16(0x7fff), lim = _mm256_set1_epi16(0x7bff);
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        mag = _mm256_max_epu16(mag, _mm256_and_si256(h, m7));
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_castsi256_si128(h)));
        _mm256_storeu_ps(dst + i + 8, _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)));
    }
    /* finite: every magnitude below 0x7c00 (max_epu16 leaves 0x7bff as it is) */
    int fin = _mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_max_epu16(mag, lim), lim)) == -1;
    return gear_halves_to_floats_finite(src + i, m - i, dst + i) && fin;
}

/* key_group of cpu_compress.c over 8 channels at a time, its state in
 * registers across the group's rows (the portable loop, vectorized by
 * GCC, loads and stores all six arrays every row): the same selects,
 * so the same extremes and first positions. */
void gear_cpu_key_group_avx2(const float *x, unsigned d, unsigned t0, unsigned t1, unsigned k, float *mx1,
                             float *mx2, float *mn1, float *mn2, unsigned *amx, unsigned *amn)
{
    for (unsigned c = 0; c < d; c += 8) {
        __m256 a1 = _mm256_set1_ps(-__builtin_inff()), a2 = a1, b1 = _mm256_set1_ps(__builtin_inff()), b2 = b1;
        __m256 ia = _mm256_castsi256_ps(_mm256_set1_epi32((int)t0)), ib = ia;
        for (unsigned t = t0; t < t1; t++) {
            __m256 v = _mm256_loadu_ps(x + (size_t)t * d + c);
            if (k) {
                __m256 gt = _mm256_cmp_ps(v, a1, _CMP_GT_OQ), lt = _mm256_cmp_ps(v, b1, _CMP_LT_OQ);
                __m256 tv = _mm256_castsi256_ps(_mm256_set1_epi32((int)t));
                a2 = _mm256_blendv_ps(_mm256_max_ps(v, a2), a1, gt);
                a1 = _mm256_blendv_ps(a1, v, gt);
                ia = _mm256_blendv_ps(ia, tv, gt);
                b2 = _mm256_blendv_ps(_mm256_min_ps(v, b2), b1, lt);
                b1 = _mm256_blendv_ps(b1, v, lt);
                ib = _mm256_blendv_ps(ib, tv, lt);
            } else {
                a1 = _mm256_max_ps(v, a1);
                b1 = _mm256_min_ps(v, b1);
            }
        }
        _mm256_storeu_ps(mx1 + c, a1);
        _mm256_storeu_ps(mx2 + c, a2);
        _mm256_storeu_ps(mn1 + c, b1);
        _mm256_storeu_ps(mn2 + c, b2);
        _mm256_storeu_ps((float *)amx + c, ia);
        _mm256_storeu_ps((float *)amn + c, ib);
    }
}

/* Codes (and residuals, with e) of 8 entries v against (mn, dl): the
 * reference's code_of (true division, rintf, clamped; Delta = 0 and NaN
 * quotients give 0), and 0 with a zero residual where out is set. */
INLINE void codes8(__m256 v, __m256 mn, __m256 dl, __m256 out, __m256 levels, uint8_t *codes, float *e)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 q = _mm256_round_ps(_mm256_div_ps(_mm256_sub_ps(v, mn), dl), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm256_min_ps(_mm256_max_ps(q, zero), levels); /* max(NaN, 0) is 0 */
    q = _mm256_andnot_ps(_mm256_or_ps(out, _mm256_cmp_ps(dl, zero, _CMP_EQ_OQ)), q);
    __m256i qi = _mm256_cvttps_epi32(q);
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64((__m128i *)codes, _mm_packus_epi16(w, w));
    if (e) _mm256_storeu_ps(e, _mm256_andnot_ps(out, _mm256_sub_ps(v, _mm256_fmadd_ps(q, dl, mn))));
}

/* An outlier mask from 8 mask bytes (nonzero: outlier). */
INLINE __m256 mask8(const uint8_t *m)
{
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)m));
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(b, _mm256_setzero_si256()));
}

void gear_cpu_key_codes_avx2(unsigned d, const float *row, unsigned t, const float *mn, const float *dl,
                             const unsigned *amx, const unsigned *amn, const uint8_t *mrow, int k,
                             float levels, uint8_t *codes, float *e)
{
    const __m256 lv = _mm256_set1_ps(levels);
    const __m256i tv = _mm256_set1_epi32(k ? (int)t : -1); /* k == 0: no outliers */
    for (unsigned c = 0; c < d; c += 8) {
        __m256 out;
        if (mrow)
            out = mask8(mrow + c);
        else
            out = _mm256_castsi256_ps(
                _mm256_or_si256(_mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(amx + c)), tv),
                                _mm256_cmpeq_epi32(_mm256_loadu_si256((const __m256i *)(amn + c)), tv)));
        codes8(_mm256_loadu_ps(row + c), _mm256_loadu_ps(mn + c), _mm256_loadu_ps(dl + c), out, lv, codes + c,
               e ? e + c : NULL);
    }
}

void gear_cpu_value_codes_avx2(const float *row, unsigned c0, unsigned c1, unsigned amx, unsigned amn,
                               const uint8_t *mrow, int k, float mn, float dl, float levels, uint8_t *codes,
                               float *e)
{
    const __m256 lv = _mm256_set1_ps(levels), mnv = _mm256_set1_ps(mn), dlv = _mm256_set1_ps(dl);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i av = _mm256_set1_epi32(k ? (int)amx : -1), bv = _mm256_set1_epi32(k ? (int)amn : -1);
    for (unsigned c = c0; c < c1; c += 8) {
        __m256 out;
        if (mrow) {
            out = mask8(mrow + c);
        } else {
            __m256i at = _mm256_add_epi32(iota, _mm256_set1_epi32((int)c));
            out = _mm256_castsi256_ps(_mm256_or_si256(_mm256_cmpeq_epi32(at, av), _mm256_cmpeq_epi32(at, bv)));
        }
        codes8(_mm256_loadu_ps(row + c), mnv, dlv, out, lv, codes + c, e ? e + c : NULL);
    }
}

/* dst[i] = gear_half_sat(src[i]): vcvtps2ph rounds to nearest even
 * whatever MXCSR says, as gear_float_to_half does; its Inf becomes 65504
 * and its NaN the quiet 0x7e00, sign kept (check_core's test of the
 * core's own copy of this covers the edges; check_xbackend compares
 * decompression into fp16 with ref's bit for bit). */
void gear_cpu_halves_sat_avx2(const float *src, size_t n, void *dst)
{
    const __m128i m7 = _mm_set1_epi16(0x7fff), inf = _mm_set1_epi16(0x7c00);
    uint8_t *out = dst; /* may be only byte-aligned (a block's factors) */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m128i mag = _mm_and_si128(h, m7);
        mag = _mm_blendv_epi8(mag, _mm_set1_epi16(0x7bff), _mm_cmpeq_epi16(mag, inf));
        mag = _mm_blendv_epi8(mag, _mm_set1_epi16(0x7e00), _mm_cmpgt_epi16(mag, inf));
        _mm_storeu_si128((__m128i *)(void *)(out + 2 * i), _mm_or_si128(mag, _mm_andnot_si128(m7, h)));
    }
    for (; i < n; i++) {
        uint16_t h = gear_half_sat(src[i]);
        memcpy(out + 2 * i, &h, 2);
    }
}

/* a * b mod 2^64 in each 64-bit lane (AVX2 has no vpmullq): the product
 * of the low halves plus the cross products shifted up. */
INLINE __m256i mul64(__m256i a, __m256i b)
{
    __m256i lo = _mm256_mul_epu32(a, b);
    __m256i c1 = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), b), c2 = _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(_mm256_add_epi64(c1, c2), 32));
}

/* pt[k][c] = gear_rng_uniform(key, c*r + k), c < d (a multiple of 4),
 * four at a time (gear_mix64 in 64-bit lanes). */
void gear_cpu_start_matrix_avx2(uint64_t key, unsigned d, unsigned r, float *pt)
{
    const __m256i K = _mm256_set1_epi64x((long long)key), G = _mm256_set1_epi64x((long long)0x9e3779b97f4a7c15ull);
    const __m256i M1 = _mm256_set1_epi64x((long long)0xbf58476d1ce4e5b9ull);
    const __m256i M2 = _mm256_set1_epi64x((long long)0x94d049bb133111ebull);
    const uint64_t C = 0xd1b54a32d192ed03ull;
    /* C * (index + 1) stepped by additions (multiplication mod 2^64
     * distributes over them) */
    const __m256i step = _mm256_set1_epi64x((long long)(C * 4u * r));
    const __m256i low = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6);
    for (unsigned k = 0; k < r; k++) {
        /* index + 1 of column c + lane: (c + lane) * r + k + 1 */
        __m256i ci = _mm256_setr_epi64x((long long)(C * (k + 1u)), (long long)(C * (r + k + 1u)),
                                        (long long)(C * (2u * r + k + 1u)), (long long)(C * (3u * r + k + 1u)));
        for (unsigned c = 0; c < d; c += 4, ci = _mm256_add_epi64(ci, step)) {
            __m256i z = _mm256_add_epi64(_mm256_xor_si256(K, ci), G);
            z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), M1);
            z = mul64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), M2);
            z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
            __m128i h = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(_mm256_srli_epi64(z, 40), low));
            _mm_storeu_ps(pt + (size_t)k * d + c, _mm_mul_ps(_mm_cvtepi32_ps(h), _mm_set1_ps(1.0f / 16777216.0f)));
        }
    }
}

INLINE float hmax8(__m256 v)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}

INLINE float hmin8(__m256 v)
{
    __m128 x = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_min_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_min_ss(x, _mm_movehdup_ps(x)));
}

/* gear_cpu_stats64_avx512 eight lanes wide: max (first position), second
 * max, min (first position), second min of 64 floats (finite), the answer
 * of the scalar scan in cpu_compress.c.  One pass keeps each lane's two
 * largest and two smallest (with repeats: a second copy of the maximum is
 * the second maximum); the second extremes are then the other lanes'
 * extremes and, in the lane of the first extreme's position, its second.
 * A zero's sign may differ from the scan's; gear_group_params maps -0 to
 * +0 in what it stores, and the positions are exact. */
void gear_cpu_stats64_avx2(const float *x, float out[4], unsigned pos[2])
{
    __m256 v[8];
    for (int i = 0; i < 8; i++) v[i] = _mm256_loadu_ps(x + 8 * i);
    __m256 mx = v[0], mn = v[0], mx2 = _mm256_set1_ps(-__builtin_inff()), mn2 = _mm256_set1_ps(__builtin_inff());
    for (int i = 1; i < 8; i++) {
        mx2 = _mm256_max_ps(mx2, _mm256_min_ps(mx, v[i]));
        mx = _mm256_max_ps(mx, v[i]);
        mn2 = _mm256_min_ps(mn2, _mm256_max_ps(mn, v[i]));
        mn = _mm256_min_ps(mn, v[i]);
    }
    float M = hmax8(mx), m = hmin8(mn);
    uint64_t eqM = 0, eqm = 0;
    for (int i = 0; i < 8; i++) {
        eqM |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(v[i], _mm256_set1_ps(M), _CMP_EQ_OQ)) << (8 * i);
        eqm |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(v[i], _mm256_set1_ps(m), _CMP_EQ_OQ)) << (8 * i);
    }
    unsigned a = (unsigned)__builtin_ctzll(eqM), b = (unsigned)__builtin_ctzll(eqm);
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256 la = _mm256_castsi256_ps(_mm256_cmpeq_epi32(iota, _mm256_set1_epi32((int)(a & 7))));
    __m256 lb = _mm256_castsi256_ps(_mm256_cmpeq_epi32(iota, _mm256_set1_epi32((int)(b & 7))));
    out[0] = M;
    out[1] = hmax8(_mm256_blendv_ps(mx, mx2, la));
    out[2] = m;
    out[3] = hmin8(_mm256_blendv_ps(mn, mn2, lb));
    pos[0] = a;
    pos[1] = b;
}

/* Lane j: the sum of a[j]'s lanes, in the order ep_rows reduces one
 * vector (lane i + lane i+4, then those of lanes 0 and 2 + those of 1
 * and 3), so that the sums are the same to the bit: 21 operations for
 * eight sums where reducing each alone took five, as many as the products
 * of a short row (head dim 64: 64 FMAs for 8 sums).  A vhaddps tree (14)
 * was no faster (282-289 against 285-328 ns a product of 64 x 128 or
 * 128 x 64); the reconstruction it moved off ref's was Gram-Schmidt's
 * cancellation (GEAR_GS_REPEAT), not its order. */
INLINE __m256 sum8x8(const __m256 a[8])
{
    __m256 b[4]; /* b[j]: a[j]'s 4 half sums | a[j+4]'s */
    for (unsigned j = 0; j < 4; j++)
        b[j] = _mm256_add_ps(_mm256_permute2f128_ps(a[j], a[j + 4], 0x20),
                             _mm256_permute2f128_ps(a[j], a[j + 4], 0x31));
    /* [b0 0+2, b1 0+2, b0 1+3, b1 1+3] per half, and for b2, b3 */
    __m256 p = _mm256_add_ps(_mm256_unpacklo_ps(b[0], b[1]), _mm256_unpackhi_ps(b[0], b[1]));
    __m256 q = _mm256_add_ps(_mm256_unpacklo_ps(b[2], b[3]), _mm256_unpackhi_ps(b[2], b[3]));
    return _mm256_add_ps(_mm256_shuffle_ps(p, q, 0x44), _mm256_shuffle_ps(p, q, 0xEE));
}

/* Rows t0 .. t0+T-1 of y = e pt^T for columns k0 .. k0+K-1: T*K
 * accumulators, each summing its row's 8-lane chunks in order, then the
 * same horizontal sum; several rows at once so that the FMA chains
 * overlap (one row of rank 2 was two chains, latency-bound). */
INLINE void ep_rows(const float *e, const float *pt, unsigned d, unsigned t0, unsigned T, unsigned k0,
                    unsigned K, float *y, unsigned ys)
{
    __m256 acc[4][4];
    for (unsigned i = 0; i < T; i++)
        for (unsigned k = 0; k < K; k++) acc[i][k] = _mm256_setzero_ps();
    for (unsigned c = 0; c < d; c += 8)
        for (unsigned i = 0; i < T; i++) {
            __m256 x = _mm256_loadu_ps(e + (size_t)(t0 + i) * d + c);
            for (unsigned k = 0; k < K; k++)
                acc[i][k] = _mm256_fmadd_ps(x, _mm256_loadu_ps(pt + (size_t)(k0 + k) * d + c), acc[i][k]);
        }
    if (T * K == 8 && K == ys) { /* 8 sums, contiguous in y: reduced together */
        __m256 a[8];
        for (unsigned i = 0; i < T; i++)
            for (unsigned k = 0; k < K; k++) a[i * K + k] = acc[i][k];
        _mm256_storeu_ps(y + (size_t)t0 * ys, sum8x8(a));
        return;
    }
    for (unsigned i = 0; i < T; i++)
        for (unsigned k = 0; k < K; k++) {
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[i][k]), _mm256_extractf128_ps(acc[i][k], 1));
            s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            y[(size_t)(t0 + i) * ys + k0 + k] = _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
        }
}

/* gear_cpu_mul_ep_avx512 eight lanes wide: y[t*ys + k] = sum_c e[t][c]
 * pt[k][c] for d a multiple of 8, 1 <= r <= 4 (lowrank passes larger
 * ranks four columns at a time). */
void gear_cpu_mul_ep_avx2(const float *e, const float *pt, unsigned n, unsigned d, unsigned r, float *y,
                          unsigned ys)
{
    if (r == 0 || r > 4) return; /* outside the contract: nothing written */
    unsigned t = 0;
    if (r <= 2) /* 4 rows a pass: 4 or 8 chains */
        for (; t + 4 <= n; t += 4) {
            if (r == 1) ep_rows(e, pt, d, t, 4, 0, 1, y, ys);
            else ep_rows(e, pt, d, t, 4, 0, 2, y, ys);
        }
    else
        for (; t + 2 <= n; t += 2) {
            if (r == 3) ep_rows(e, pt, d, t, 2, 0, 3, y, ys);
            else ep_rows(e, pt, d, t, 2, 0, 4, y, ys);
        }
    for (; t < n; t++)
        for (unsigned k = 0; k < r; k++) ep_rows(e, pt, d, t, 1, k, 1, y, ys);
}

/* Columns k0 .. k0+K-1 of pt = y^T e over W chunks of 8 channels from c:
 * K*W accumulators (at most 8), each summing over t in order. */
INLINE void ety_cols(const float *e, const float *y, unsigned n, unsigned d, unsigned r, unsigned c,
                     unsigned k0, unsigned K, unsigned W, float *pt)
{
    __m256 acc[4][8];
    for (unsigned k = 0; k < K; k++)
        for (unsigned w = 0; w < W; w++) acc[k][w] = _mm256_setzero_ps();
    for (unsigned t = 0; t < n; t++) {
        const float *et = e + (size_t)t * d + c;
        for (unsigned k = 0; k < K; k++) {
            __m256 yk = _mm256_broadcast_ss(y + (size_t)t * r + k0 + k);
            for (unsigned w = 0; w < W; w++)
                acc[k][w] = _mm256_fmadd_ps(yk, _mm256_loadu_ps(et + 8 * w), acc[k][w]);
        }
    }
    for (unsigned k = 0; k < K; k++)
        for (unsigned w = 0; w < W; w++) _mm256_storeu_ps(pt + (size_t)(k0 + k) * d + c + 8 * w, acc[k][w]);
}

/* gear_cpu_mul_ety_avx512 eight lanes wide (d a multiple of 8): four
 * columns of pt over 16 channels a pass, the rest of r over 8 / (r mod 4)
 * chunks of 8 channels (so that 8 FMA chains overlap). */
void gear_cpu_mul_ety_avx2(const float *e, const float *y, unsigned n, unsigned d, unsigned r, float *pt)
{
    unsigned k0 = 0;
    for (; k0 + 4 <= r; k0 += 4) {
        unsigned c = 0;
        for (; c + 16 <= d; c += 16) ety_cols(e, y, n, d, r, c, k0, 4, 2, pt);
        for (; c < d; c += 8) ety_cols(e, y, n, d, r, c, k0, 4, 1, pt);
    }
    unsigned K = r - k0, c = 0;
    if (K == 1)
        for (; c + 64 <= d; c += 64) ety_cols(e, y, n, d, r, c, k0, 1, 8, pt);
    else if (K == 2)
        for (; c + 32 <= d; c += 32) ety_cols(e, y, n, d, r, c, k0, 2, 4, pt);
    else if (K == 3)
        for (; c + 16 <= d; c += 16) ety_cols(e, y, n, d, r, c, k0, 3, 2, pt);
    for (; K && c < d; c += 8)
        for (unsigned k = k0; k < r; k++) ety_cols(e, y, n, d, r, c, k, 1, 1, pt);
}

/* xt[4c + i] = x[i*lx + c], i < 4, eight columns a step: two rounds of
 * unpacks make column pairs {c, c+4}, the lane swaps put them in order. */
void gear_cpu_interleave4_avx2(const float *x, unsigned lx, float *xt)
{
    for (unsigned c = 0; c + 8 <= lx; c += 8) {
        __m256 a0 = _mm256_loadu_ps(x + c), a1 = _mm256_loadu_ps(x + lx + c);
        __m256 a2 = _mm256_loadu_ps(x + 2 * (size_t)lx + c), a3 = _mm256_loadu_ps(x + 3 * (size_t)lx + c);
        __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
        __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE); /* columns 0|4, 1|5 */
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE); /* 2|6, 3|7 */
        float *o = xt + 4 * (size_t)c;
        _mm256_storeu_ps(o, _mm256_permute2f128_ps(u0, u1, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(u2, u3, 0x20));
        _mm256_storeu_ps(o + 16, _mm256_permute2f128_ps(u0, u1, 0x31));
        _mm256_storeu_ps(o + 24, _mm256_permute2f128_ps(u2, u3, 0x31));
    }
}

/* y[i*ly + t] += yt[4t + i], i < 4, eight tokens a step: the inverse. */
void gear_cpu_deinterleave4_add_avx2(float *y, unsigned ly, const float *yt)
{
    for (unsigned t = 0; t + 8 <= ly; t += 8) {
        const float *p = yt + 4 * (size_t)t;
        __m256 b0 = _mm256_loadu_ps(p), b1 = _mm256_loadu_ps(p + 8);
        __m256 b2 = _mm256_loadu_ps(p + 16), b3 = _mm256_loadu_ps(p + 24);
        __m256 u0 = _mm256_permute2f128_ps(b0, b2, 0x20), u1 = _mm256_permute2f128_ps(b0, b2, 0x31); /* t|t+4, t+1|t+5 */
        __m256 u2 = _mm256_permute2f128_ps(b1, b3, 0x20), u3 = _mm256_permute2f128_ps(b1, b3, 0x31);
        __m256 t0 = _mm256_unpacklo_ps(u0, u1), t1 = _mm256_unpackhi_ps(u0, u1);
        __m256 t2 = _mm256_unpacklo_ps(u2, u3), t3 = _mm256_unpackhi_ps(u2, u3);
        __m256 r[4] = {_mm256_shuffle_ps(t0, t2, 0x44), _mm256_shuffle_ps(t0, t2, 0xEE),
                       _mm256_shuffle_ps(t1, t3, 0x44), _mm256_shuffle_ps(t1, t3, 0xEE)};
        for (unsigned i = 0; i < 4; i++) {
            float *yi = y + (size_t)i * ly + t;
            _mm256_storeu_ps(yi, _mm256_add_ps(_mm256_loadu_ps(yi), r[i]));
        }
    }
}

/* sum a[i] b[i] in double, len a multiple of 8: four chains (the
 * orthonormalization is a chain of these dots, latency-bound; one of
 * eight partial sums as two vectors had run at an FMA's latency every
 * eight floats) */
INLINE double dot_d(const float *a, const float *b, unsigned len)
{
    __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
    unsigned i = 0, j = 0;
    for (; i < len; i += 8, j ^= 2) {
        s[j] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i)), _mm256_cvtps_pd(_mm_loadu_ps(b + i)), s[j]);
        s[j + 1] = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm_loadu_ps(a + i + 4)), _mm256_cvtps_pd(_mm_loadu_ps(b + i + 4)),
                                   s[j + 1]);
    }
    __m256d t = _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3]));
    __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    return _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

/* Modified Gram-Schmidt on the r rows of yt (r x len, len a multiple of
 * 8), as cpu_compress.c's orthonormalize_t: the original norms first, all
 * at once (independent of each other; a first row's is also its final
 * one), as the AVX-512 compressor's does. */
void gear_cpu_orthonormalize_t_avx2(float *yt, unsigned len, unsigned r)
{
    double orig[16]; /* of the first 16 rows; a later row's at its turn, which it reaches unchanged */
    for (unsigned c = 0; c < r && c < 16; c++) orig[c] = dot_d(yt + (size_t)c * len, yt + (size_t)c * len, len);
    for (unsigned c = 0; c < r; c++) {
        float *yc = yt + (size_t)c * len;
        const double o = c < 16 ? orig[c] : dot_d(yc, yc, len);
        double nrm = o;
        for (int pass = 0; pass < 2 && c; pass++) { /* a second only after cancellation (GEAR_GS_REPEAT) */
            for (unsigned p = 0; p < c; p++) {
                const float *yp = yt + (size_t)p * len;
                __m256 dv = _mm256_set1_ps((float)dot_d(yp, yc, len));
                for (unsigned i = 0; i < len; i += 8)
                    _mm256_storeu_ps(yc + i, _mm256_fnmadd_ps(dv, _mm256_loadu_ps(yp + i), _mm256_loadu_ps(yc + i)));
            }
            double before = nrm;
            nrm = dot_d(yc, yc, len);
            if (nrm > before * GEAR_GS_REPEAT) break;
        }
        int dead = !(nrm > 1e-24) || nrm <= o * 1e-12;
        __m256 inv = _mm256_set1_ps(dead ? 0.0f : (float)(1.0 / sqrt(nrm)));
        for (unsigned i = 0; i < len; i += 8) _mm256_storeu_ps(yc + i, _mm256_mul_ps(_mm256_loadu_ps(yc + i), inv));
    }
}

/* ------------------ uncompressed rows: fp16 preset blocks, fp32 buffer */

/* 8 elements of row t from c: halves (h) or floats. */
INLINE __m256 row8(const void *x, const int h, unsigned d, unsigned t, unsigned c)
{
    if (h) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)x + (size_t)t * d + c)));
    return _mm256_loadu_ps((const float *)x + (size_t)t * d + c);
}

/* gear_cpu_rows_scores_avx512's step eight lanes wide: R rows x 8/R
 * tokens from t, eight accumulators reduced together (sum8x8: lane
 * r*T + j). */
INLINE void row_scores8(const void *k, const int h, unsigned d, const float *q, const unsigned R, float *s,
                        unsigned n, unsigned t)
{
    const unsigned T = 8 / R;
    __m256 acc[8];
    for (unsigned j = 0; j < 8; j++) acc[j] = _mm256_setzero_ps();
    for (unsigned c = 0; c < d; c += 8)
        for (unsigned j = 0; j < T; j++) {
            __m256 x = row8(k, h, d, t + j, c);
            for (unsigned r = 0; r < R; r++)
                acc[r * T + j] = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)r * d + c), x, acc[r * T + j]);
        }
    __m256 sum = sum8x8(acc);
    if (R == 1) {
        _mm256_storeu_ps(s + t, sum);
    } else if (R == 2) {
        _mm_storeu_ps(s + t, _mm256_castps256_ps128(sum));
        _mm_storeu_ps(s + n + t, _mm256_extractf128_ps(sum, 1));
    } else {
        __m128 lo = _mm256_castps256_ps128(sum), hi = _mm256_extractf128_ps(sum, 1);
        _mm_storel_pi((__m64 *)(s + t), lo);
        _mm_storeh_pi((__m64 *)(s + n + t), lo);
        _mm_storel_pi((__m64 *)(s + 2 * (size_t)n + t), hi);
        _mm_storeh_pi((__m64 *)(s + 3 * (size_t)n + t), hi);
    }
}

INLINE void row_scores(const void *k, const int h, unsigned n, unsigned d, const float *q, unsigned rows, float *s)
{
    unsigned r0 = 0, n2 = n & ~1u, n4 = n & ~3u, n8 = n & ~7u;
    for (; r0 + 4 <= rows; r0 += 4)
        for (unsigned t = 0; t < n2; t += 2) row_scores8(k, h, d, q + (size_t)r0 * d, 4, s + (size_t)r0 * n, n, t);
    for (; r0 + 2 <= rows; r0 += 2)
        for (unsigned t = 0; t < n4; t += 4) row_scores8(k, h, d, q + (size_t)r0 * d, 2, s + (size_t)r0 * n, n, t);
    for (; r0 < rows; r0++)
        for (unsigned t = 0; t < n8; t += 8) row_scores8(k, h, d, q + (size_t)r0 * d, 1, s + (size_t)r0 * n, n, t);
    /* the tokens left over by each row group's step: one sum at a time */
    for (unsigned r = 0; r < rows; r++) {
        unsigned done = r < (rows & ~3u) ? n2 : r < (rows & ~1u) ? n4 : n8;
        for (unsigned t = done; t < n; t++) {
            __m256 a = _mm256_setzero_ps();
            for (unsigned c = 0; c < d; c += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + (size_t)r * d + c), row8(k, h, d, t, c), a);
            __m128 x = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
            x = _mm_add_ps(x, _mm_movehl_ps(x, x));
            s[(size_t)r * n + t] = _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
        }
    }
}

/* R rows x 16 channels from c (two vectors: 4 rows' accumulators, the
 * row and a broadcast fit AVX2's 16 registers), over all n tokens. */
INLINE void row_values16(const void *v, const int h, unsigned n, unsigned d, const float *p, const unsigned R,
                         float *o, unsigned c)
{
    __m256 acc[4][2];
    for (unsigned r = 0; r < R; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (unsigned t = 0; t < n; t++) {
        __m256 x0 = row8(v, h, d, t, c), x1 = row8(v, h, d, t, c + 8);
        for (unsigned r = 0; r < R; r++) {
            __m256 w = _mm256_broadcast_ss(p + (size_t)r * n + t);
            acc[r][0] = _mm256_fmadd_ps(w, x0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(w, x1, acc[r][1]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 2; j++) {
            float *dst = o + (size_t)r * d + c + 8 * j;
            _mm256_storeu_ps(dst, _mm256_add_ps(_mm256_loadu_ps(dst), acc[r][j]));
        }
}

/* R rows' values over every channel, 16 a pass. */
#define ROW_VALUES(R, h) \
    for (unsigned c = 0; c < d; c += 16) row_values16(v, h, n, d, p + (size_t)r0 * n, R, o + (size_t)r0 * d, c)
#define ROW_VALUES_H(R) ROW_VALUES(R, 1)
#define ROW_VALUES_F(R) ROW_VALUES(R, 0)
GEAR_CPU_ROW_KERNELS(avx2)
#undef ROW_VALUES
#undef ROW_VALUES_H
#undef ROW_VALUES_F
