/*
 * cpu_avx512.c - AVX-512 kernels for the common attention shapes: 2- and
 * 4-bit codes, groups of 64 (KIVI: 64 tokens per key channel group, 64
 * channels per value token group).  Compiled with AVX-512 flags and only
 * called after a run-time CPU check (cpu_attention.c).  Accumulators stay
 * in registers: 4 query rows x 64 tokens (keys) or x 64 channels (values).
 */
#include <immintrin.h>
#include "cpu.h"
#include "cpu_simd.h"
#include "cpu_avx512_half.h"

/* 16 codes starting at code index 16*j of a row, as floats. */
static inline __attribute__((always_inline)) __m512 codes16(const uint8_t *row, unsigned bits, unsigned j)
{
    __m512i v;
    if (bits == 2) {
        uint32_t w;
        __builtin_memcpy(&w, row + 4 * j, 4);
        v = _mm512_srlv_epi32(_mm512_set1_epi32((int)w),
                              _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30));
        v = _mm512_and_si512(v, _mm512_set1_epi32(3));
    } else { /* 4 bits: 16 codes in 8 bytes */
        uint64_t w;
        __builtin_memcpy(&w, row + 8 * j, 8);
        __m512i lo = _mm512_set1_epi32((int)(uint32_t)w), hi = _mm512_set1_epi32((int)(uint32_t)(w >> 32));
        v = _mm512_mask_blend_epi32(0xff00, lo, hi);
        v = _mm512_srlv_epi32(v, _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 0, 4, 8, 12, 16, 20, 24, 28));
        v = _mm512_and_si512(v, _mm512_set1_epi32(15));
    }
    return _mm512_cvtepi32_ps(v);
}

#define INLINE static inline __attribute__((always_inline))

/* dst[j] = fmaf(code j, dl, mn) for len codes (a multiple of 16) of a
 * row of `bits`-bit codes from a 16-code boundary: decompression (the
 * generic loop's clone ran at 20 cycles a 16-code word). */
INLINE void decode_row(const uint8_t *row, const unsigned bits, unsigned len, float dl, float mn, float *dst)
{
    const __m512 a = _mm512_set1_ps(dl), b = _mm512_set1_ps(mn);
    for (unsigned j = 0; j < len / 16; j++) {
        __m512 c = bits == 8 ? _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + 16 * j))))
                             : codes16(row, bits, j);
        _mm512_storeu_ps(dst + 16 * j, _mm512_fmadd_ps(c, a, b));
    }
}

/* Q^ of a key block straight into token rows (out: n x d): 16 channels x
 * 16 tokens at a time, the channels' code words gathered (one 32-bit
 * gather per 32 code bits), then one shift-mask-convert-fmadd per token,
 * with each lane's own group step and minimum.  No decode along the
 * channel rows and transpose (the fp32 transpose alone was a tenth of
 * decompressing keys). */
INLINE void decode_keys(const gear_block_layout *L, const uint8_t *blk, const unsigned bits, float *out)
{
    const unsigned d = L->d, n = L->n, G = L->groups_per_row, rb = L->row_bytes;
    const __m512i roff = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32((int)rb));
    const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
    for (unsigned c0 = 0; c0 < d; c0 += 16) {
        const uint8_t *codes = blk + L->off_codes + (size_t)c0 * rb;
        __m512 dl = _mm512_setzero_ps(), mn = dl;
        unsigned gcur = ~0u;
        for (unsigned t0 = 0; t0 < n; t0 += 16) {
            unsigned g = t0 / L->group < G ? t0 / L->group : G - 1; /* the last group takes the tail */
            if (g != gcur) {
                if (G == 1) {
                    dl = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + L->off_scales + 2 * (size_t)c0)));
                    mn = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(blk + L->off_mins + 2 * (size_t)c0)));
                } else {
                    uint16_t s[16], m[16];
                    for (unsigned l = 0; l < 16; l++) {
                        size_t gi = (size_t)(c0 + l) * G + g;
                        __builtin_memcpy(&s[l], blk + L->off_scales + 2 * gi, 2);
                        __builtin_memcpy(&m[l], blk + L->off_mins + 2 * gi, 2);
                    }
                    dl = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)s));
                    mn = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)m));
                }
                gcur = g;
            }
            const uint8_t *base = codes + (size_t)t0 * bits / 8;
            __m512i w[4];
            for (unsigned k = 0; k < bits / 2; k++) w[k] = _mm512_i32gather_epi32(roff, base + 4 * k, 1);
            for (unsigned t = 0; t < 16; t++) {
                __m512i c = _mm512_and_si512(_mm512_srli_epi32(w[t * bits / 32], t * bits % 32), mask);
                _mm512_storeu_ps(out + (size_t)(t0 + t) * d + c0, _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), dl, mn));
            }
        }
    }
}

void gear_cpu_decode_keys_avx512(const gear_block_layout *L, const uint8_t *blk, float *out)
{
    if (L->bits == 2) decode_keys(L, blk, 2, out);
    else if (L->bits == 4) decode_keys(L, blk, 4, out);
    else decode_keys(L, blk, 8, out);
}

/* out[t][j] += sum_c a[t][c] bt[c][j], the sum an fmaf chain over c from
 * 0 (as ref), 16 columns at a time (d a multiple of 16; the generic
 * clone kept the chain in memory, a fifth of decompressing gear2). */
void gear_cpu_lowrank_add_avx512(float *out, const float *a, const float *bt, unsigned n, unsigned d, unsigned r)
{
    for (unsigned t = 0; t < n; t++) {
        float *o = out + (size_t)t * d;
        const float *at = a + (size_t)t * r;
        for (unsigned j = 0; j < d; j += 16) {
            __m512 s = _mm512_setzero_ps();
            for (unsigned c = 0; c < r; c++)
                s = _mm512_fmadd_ps(_mm512_set1_ps(at[c]), _mm512_loadu_ps(bt + (size_t)c * d + j), s);
            _mm512_storeu_ps(o + j, _mm512_add_ps(_mm512_loadu_ps(o + j), s));
        }
    }
}

void gear_cpu_decode_avx512(const uint8_t *row, unsigned bits, unsigned len, float dl, float mn, float *dst)
{
    if (bits == 2) decode_row(row, 2, len, dl, mn, dst);
    else if (bits == 4) decode_row(row, 4, len, dl, mn, dst);
    else decode_row(row, 8, len, dl, mn, dst);
}

/* R query rows (compile-time) x 64 tokens, accumulators in registers. */
INLINE void keys64(const uint8_t *codes, unsigned row_bytes, const unsigned bits, unsigned d,
                   const float *w, const float *bias, const unsigned R, float *s, unsigned n)
{
    __m512 acc[4][4];
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_set1_ps(bias[r]);
    for (unsigned c = 0; c < d; c++) {
        const uint8_t *row = codes + (size_t)c * row_bytes;
        __m512 f0 = codes16(row, bits, 0), f1 = codes16(row, bits, 1);
        __m512 f2 = codes16(row, bits, 2), f3 = codes16(row, bits, 3);
        for (unsigned r = 0; r < R; r++) {
            __m512 wr = _mm512_set1_ps(w[(size_t)r * d + c]);
            acc[r][0] = _mm512_fmadd_ps(wr, f0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(wr, f1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(wr, f2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(wr, f3, acc[r][3]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) _mm512_storeu_ps(s + (size_t)r * n + 16 * j, acc[r][j]);
}

#define KEYS(B, R) keys64(codes, row_bytes, B, d, w + (size_t)r0 * d, bias + r0, R, s + (size_t)r0 * n, n)

void gear_cpu_keys64_avx512(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned d,
                            const float *w, const float *bias, unsigned rows, float *s, unsigned n)
{
    /* w[r*d + c] = q_r[c] * scale_c; s[r*n + t] = bias[r] + sum_c w * code_ct, t < 64 */
    for (unsigned r0 = 0; r0 < rows; r0 += 4) {
        unsigned R = rows - r0 < 4 ? rows - r0 : 4;
        GEAR_CPU_BITS_ROWS(bits, R, KEYS);
    }
}

/* R query rows x one group of 64 channels, over all n tokens. */
INLINE void values64(const uint8_t *codes, unsigned row_bytes, const unsigned bits, unsigned n,
                     unsigned G, unsigned g, const float *dl, const float *mn, const float *p,
                     const unsigned R, float *o, unsigned d)
{
    /* o += sum_t (p_t*scale_t) code_t + sum_t p_t*min_t: the minima fold into one bias */
    __m512 acc[4][4];
    float bias[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    const unsigned off = g * 64 * bits / 8; /* byte offset of channel 64g in a row */
    for (unsigned t = 0; t < n; t++) {
        const uint8_t *row = codes + (size_t)t * row_bytes + off;
        float sc = dl[t * G + g], mz = mn[t * G + g];
        __m512 v0 = codes16(row, bits, 0), v1 = codes16(row, bits, 1);
        __m512 v2 = codes16(row, bits, 2), v3 = codes16(row, bits, 3);
        for (unsigned r = 0; r < R; r++) {
            float pt = p[(size_t)r * n + t];
            __m512 pr = _mm512_set1_ps(pt * sc);
            bias[r] += pt * mz;
            acc[r][0] = _mm512_fmadd_ps(pr, v0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(pr, v1, acc[r][1]);
            acc[r][2] = _mm512_fmadd_ps(pr, v2, acc[r][2]);
            acc[r][3] = _mm512_fmadd_ps(pr, v3, acc[r][3]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) {
            float *dst = o + (size_t)r * d + 64 * g + 16 * j;
            __m512 b = _mm512_set1_ps(bias[r]);
            _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), _mm512_add_ps(acc[r][j], b)));
        }
}

#define VALUES(B, R) values64(codes, row_bytes, B, n, G, g, dl, mn, p + (size_t)r0 * n, R, o + (size_t)r0 * d, d)

void gear_cpu_values64_avx512(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned n,
                              unsigned d, const float *dl, const float *mn, const float *p,
                              unsigned rows, float *o)
{
    /* o[r*d + c] += sum_t p[r*n + t] * (mn_tg + dl_tg * code_tc); groups of 64 channels;
     * dl, mn: [t][d/64] */
    unsigned G = d / 64;
    for (unsigned r0 = 0; r0 < rows; r0 += 4) {
        unsigned R = rows - r0 < 4 ? rows - r0 : 4;
        for (unsigned g = 0; g < G; g++) {
            GEAR_CPU_BITS_ROWS(bits, R, VALUES);
        }
    }
}

/* fp16 -> fp32 of n halves (n multiple of 16 handled in vectors). */
void gear_cpu_halves_avx512(const uint8_t *src, size_t n, float *dst)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + 2 * i))));
    for (; i < n; i++) dst[i] = gear_half_to_float(cpu_u16(src + 2 * i));
}

/* m contiguous halves into floats, 0 if any is Inf or NaN: the loop of
 * gear_halves_to_floats_finite with vcvtph2ps (exact for every finite
 * half, as gear_half_to_float); the generic loop vectorizes into bit
 * manipulation, several times slower. */
int gear_cpu_halves_finite_avx512(const uint16_t *src, size_t m, float *dst)
{
    __m256i mag = _mm256_setzero_si256(); /* largest |half| bit pattern */
    size_t i = 0;
    for (; i + 16 <= m; i += 16) {
        __m256i h = _mm256_loadu_si256((const __m256i *)(src + i));
        mag = gear_half_mag_max(mag, h);
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(h));
    }
    return gear_halves_to_floats_finite(src + i, m - i, dst + i) && gear_half_mag_finite(mag);
}

/* Max (first position), second max, min (first position), second min of
 * 64 contiguous floats; the same answer as the scalar scan in
 * cpu_compress.c.  out: {mx1, mx2, mn1, mn2}, pos: {amx, amn}. */
void gear_cpu_stats64_avx512(const float *x, float out[4], unsigned pos[2])
{
    __m512 v[4];
    for (int i = 0; i < 4; i++) v[i] = _mm512_loadu_ps(x + 16 * i);
    __m512 mx = _mm512_max_ps(_mm512_max_ps(v[0], v[1]), _mm512_max_ps(v[2], v[3]));
    __m512 mn = _mm512_min_ps(_mm512_min_ps(v[0], v[1]), _mm512_min_ps(v[2], v[3]));
    float M = _mm512_reduce_max_ps(mx), m = _mm512_reduce_min_ps(mn);
    uint64_t eqM = 0, eqm = 0;
    for (int i = 0; i < 4; i++) {
        eqM |= (uint64_t)_mm512_cmp_ps_mask(v[i], _mm512_set1_ps(M), _CMP_EQ_OQ) << (16 * i);
        eqm |= (uint64_t)_mm512_cmp_ps_mask(v[i], _mm512_set1_ps(m), _CMP_EQ_OQ) << (16 * i);
    }
    unsigned a = (unsigned)__builtin_ctzll(eqM), b = (unsigned)__builtin_ctzll(eqm);
    /* second extremes: the same reductions with the first position masked */
    __m512 mx2 = _mm512_set1_ps(-__builtin_inff()), mn2 = _mm512_set1_ps(__builtin_inff());
    for (int i = 0; i < 4; i++) {
        __mmask16 ka = (__mmask16)~(a / 16 == (unsigned)i ? 1u << (a % 16) : 0u);
        __mmask16 kb = (__mmask16)~(b / 16 == (unsigned)i ? 1u << (b % 16) : 0u);
        mx2 = _mm512_mask_max_ps(mx2, ka, mx2, v[i]);
        mn2 = _mm512_mask_min_ps(mn2, kb, mn2, v[i]);
    }
    out[0] = M;
    out[1] = _mm512_reduce_max_ps(mx2);
    out[2] = m;
    out[3] = _mm512_reduce_min_ps(mn2);
    pos[0] = a;
    pos[1] = b;
}

/* y[t*ys + k] = sum_c e[t][c] pt[k][c] for d a multiple of 16, r <= 4:
 * one pass over each row of e for all r columns. */
void gear_cpu_mul_ep_avx512(const float *e, const float *pt, unsigned n, unsigned d, unsigned r,
                            float *y, unsigned ys)
{
    for (unsigned t = 0; t < n; t++) {
        const float *et = e + (size_t)t * d;
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                         _mm512_setzero_ps()};
        for (unsigned c = 0; c < d; c += 16) {
            __m512 x = _mm512_loadu_ps(et + c);
            for (unsigned k = 0; k < r; k++)
                acc[k] = _mm512_fmadd_ps(x, _mm512_loadu_ps(pt + (size_t)k * d + c), acc[k]);
        }
        for (unsigned k = 0; k < r; k++) y[(size_t)t * ys + k] = _mm512_reduce_add_ps(acc[k]);
    }
}

/* pt[k][c] = sum_t y[t*r + k] e[t][c] for d a multiple of 16: 16 channels
 * of four columns in registers through every token, so that a row of e is
 * loaded once per four columns (one column a pass, the loads bounded it) */
void gear_cpu_mul_ety_avx512(const float *e, const float *y, unsigned n, unsigned d, unsigned r, float *pt)
{
    for (unsigned c = 0; c < d; c += 16) {
        unsigned k0 = 0;
        for (; k0 + 4 <= r; k0 += 4) {
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (unsigned t = 0; t < n; t++) {
                __m512 x = _mm512_loadu_ps(e + (size_t)t * d + c);
                const float *w = y + (size_t)t * r + k0;
                a0 = _mm512_fmadd_ps(_mm512_set1_ps(w[0]), x, a0);
                a1 = _mm512_fmadd_ps(_mm512_set1_ps(w[1]), x, a1);
                a2 = _mm512_fmadd_ps(_mm512_set1_ps(w[2]), x, a2);
                a3 = _mm512_fmadd_ps(_mm512_set1_ps(w[3]), x, a3);
            }
            _mm512_storeu_ps(pt + (size_t)k0 * d + c, a0);
            _mm512_storeu_ps(pt + (size_t)(k0 + 1) * d + c, a1);
            _mm512_storeu_ps(pt + (size_t)(k0 + 2) * d + c, a2);
            _mm512_storeu_ps(pt + (size_t)(k0 + 3) * d + c, a3);
        }
        for (; k0 < r; k0++) {
            __m512 a = _mm512_setzero_ps();
            for (unsigned t = 0; t < n; t++)
                a = _mm512_fmadd_ps(_mm512_set1_ps(y[(size_t)t * r + k0]), _mm512_loadu_ps(e + (size_t)t * d + c), a);
            _mm512_storeu_ps(pt + (size_t)k0 * d + c, a);
        }
    }
}

/* ------------------ uncompressed rows: fp16 preset blocks, fp32 buffer */

/* 16 elements of row t from c: halves (h) or floats. */
INLINE __m512 row16(const void *x, const int h, unsigned d, unsigned t, unsigned c)
{
    if (h) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)x + (size_t)t * d + c)));
    return _mm512_loadu_ps((const float *)x + (size_t)t * d + c);
}

/* Lane l: the sum of a[l]'s 16 lanes (45 operations for 16 sums where
 * reducing each alone took 8 apiece): pairs within 128-bit lanes, then
 * quadruples, then across the four 128-bit lanes. */
INLINE __m512 sum16x16(const __m512 a[16])
{
    __m512 b[8], c[4];
    for (unsigned k = 0; k < 8; k++) /* [a0 02, a1 02, a0 13, a1 13] per 128-bit lane */
        b[k] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * k], a[2 * k + 1]), _mm512_unpackhi_ps(a[2 * k], a[2 * k + 1]));
    for (unsigned k = 0; k < 4; k++) /* [a0, a1, a2, a3] per 128-bit lane */
        c[k] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * k], b[2 * k + 1], 0x44),
                             _mm512_shuffle_ps(b[2 * k], b[2 * k + 1], 0xEE));
    __m512 d0 = _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
    __m512 d1 = _mm512_add_ps(_mm512_shuffle_f32x4(c[2], c[3], 0x88), _mm512_shuffle_f32x4(c[2], c[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(d0, d1, 0x88), _mm512_shuffle_f32x4(d0, d1, 0xDD));
}

/* R rows x 16/R tokens from t: 16 dot products over d, each an
 * accumulator (a key row converted once for the R query rows), reduced
 * together. */
INLINE void row_scores16(const void *k, const int h, unsigned d, const float *q, const unsigned R, float *s,
                         unsigned n, unsigned t)
{
    const unsigned T = 16 / R;
    __m512 acc[16];
    for (unsigned j = 0; j < 16; j++) acc[j] = _mm512_setzero_ps();
    for (unsigned c = 0; c < d; c += 16)
        for (unsigned j = 0; j < T; j++) {
            __m512 x = row16(k, h, d, t + j, c);
            for (unsigned r = 0; r < R; r++)
                acc[r * T + j] = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)r * d + c), x, acc[r * T + j]);
        }
    __m512 sum = sum16x16(acc); /* lane r*T + j: row r, token t + j */
    if (R == 1) {
        _mm512_storeu_ps(s + t, sum);
    } else if (R == 2) {
        _mm256_storeu_ps(s + t, _mm512_castps512_ps256(sum));
        _mm256_storeu_ps(s + n + t, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1)));
    } else {
        _mm_storeu_ps(s + t, _mm512_castps512_ps128(sum));
        _mm_storeu_ps(s + n + t, _mm512_extractf32x4_ps(sum, 1));
        _mm_storeu_ps(s + 2 * (size_t)n + t, _mm512_extractf32x4_ps(sum, 2));
        _mm_storeu_ps(s + 3 * (size_t)n + t, _mm512_extractf32x4_ps(sum, 3));
    }
}

INLINE void row_scores(const void *k, const int h, unsigned n, unsigned d, const float *q, unsigned rows, float *s)
{
    unsigned r0 = 0, n4 = n & ~3u, n8 = n & ~7u, n16 = n & ~15u;
    for (; r0 + 4 <= rows; r0 += 4)
        for (unsigned t = 0; t < n4; t += 4) row_scores16(k, h, d, q + (size_t)r0 * d, 4, s + (size_t)r0 * n, n, t);
    for (; r0 + 2 <= rows; r0 += 2)
        for (unsigned t = 0; t < n8; t += 8) row_scores16(k, h, d, q + (size_t)r0 * d, 2, s + (size_t)r0 * n, n, t);
    for (; r0 < rows; r0++)
        for (unsigned t = 0; t < n16; t += 16) row_scores16(k, h, d, q + (size_t)r0 * d, 1, s + (size_t)r0 * n, n, t);
    /* the tokens left over by each row group's step: one sum at a time */
    for (unsigned r = 0; r < rows; r++) {
        unsigned done = r < (rows & ~3u) ? n4 : r < (rows & ~1u) ? n8 : n16;
        for (unsigned t = done; t < n; t++) {
            __m512 a = _mm512_setzero_ps();
            for (unsigned c = 0; c < d; c += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + (size_t)r * d + c), row16(k, h, d, t, c), a);
            s[(size_t)r * n + t] = _mm512_reduce_add_ps(a);
        }
    }
}

/* R rows x W vectors of channels from c: o += sum_t p_t x_t, the
 * accumulators in registers over all n tokens. */
INLINE void row_values(const void *v, const int h, unsigned n, unsigned d, const float *p, const unsigned R,
                       float *o, unsigned c, const unsigned W)
{
    __m512 acc[4][4];
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < W; j++) acc[r][j] = _mm512_setzero_ps();
    for (unsigned t = 0; t < n; t++) {
        __m512 x[4];
        for (unsigned j = 0; j < W; j++) x[j] = row16(v, h, d, t, c + 16 * j);
        for (unsigned r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(p[(size_t)r * n + t]);
            for (unsigned j = 0; j < W; j++) acc[r][j] = _mm512_fmadd_ps(w, x[j], acc[r][j]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < W; j++) {
            float *dst = o + (size_t)r * d + c + 16 * j;
            _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), acc[r][j]));
        }
}

/* R rows' values over every channel: 64 a pass, then 16 (head dims 80, 96). */
#define ROW_VALUES(R, h)                                                                              \
    do {                                                                                              \
        unsigned c = 0;                                                                               \
        for (; c + 64 <= d; c += 64) row_values(v, h, n, d, p + (size_t)r0 * n, R, o + (size_t)r0 * d, c, 4); \
        for (; c < d; c += 16) row_values(v, h, n, d, p + (size_t)r0 * n, R, o + (size_t)r0 * d, c, 1);      \
    } while (0)
#define ROW_VALUES_H(R) ROW_VALUES(R, 1)
#define ROW_VALUES_F(R) ROW_VALUES(R, 0)
GEAR_CPU_ROW_KERNELS(avx512)
#undef ROW_VALUES
#undef ROW_VALUES_H
#undef ROW_VALUES_F
