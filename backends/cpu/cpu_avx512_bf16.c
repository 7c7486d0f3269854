/*
 * cpu_avx512_bf16.c - the power iteration's products with AVX512-BF16
 * (vdpbf16ps: 32 multiply-adds a 512-bit instruction, twice what an fp32
 * FMA does, at the same rate on Zen 4).  E and the r thin factors are
 * rounded to bf16 (nearest even); every sum is fp32.  E is converted once
 * a block into two layouts:
 *   er: row-major (nr x nc), pairs along a row, for out = E w (dot along
 *       the rows: lane partials, reduced 16 rows at a time);
 *   ep: rows paired, ep[(i/2)][j][i%2], for out = E^T w (axpy over row
 *       pairs, one broadcast pair of w a step, no reduction).
 * Called only where gear_cpu_have_avx512_bf16 was set (cpu_backend.c:
 * GEAR_CPU_BF16 in the environment and a CPU with AVX512-BF16);
 * see docs/DESIGN-NOTES.md for the departure from an fp32 iteration.
 */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#endif
#include <immintrin.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"
#include "cpu_avx512_rows.h"

#define UNROLL _Pragma("GCC unroll 16")

/* 16 floats to 16 bf16 (nearest even) in a 256-bit vector. */
static inline __m256i bf16_of(__m512 x) { return (__m256i)_mm512_cvtneps_pbh(x); }

void gear_cpu_bf16_layouts(const float *ez, unsigned nr, unsigned nc, uint16_t *er, uint16_t *ep)
{
    /* interleave the 16 halves of each 256-bit half: lanes a0 b0 a1 b1 .. */
    static const uint16_t il[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                    8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};
    const __m512i ix = _mm512_loadu_si512(il);
    for (unsigned i = 0; i < nr; i += 2) {
        const float *a = ez + (size_t)i * nc, *b = a + nc;
        for (unsigned j = 0; j < nc; j += 16) {
            __m256i ha = bf16_of(_mm512_loadu_ps(a + j)), hb = bf16_of(_mm512_loadu_ps(b + j));
            _mm256_storeu_si256((__m256i *)(er + (size_t)i * nc + j), ha);
            _mm256_storeu_si256((__m256i *)(er + (size_t)(i + 1) * nc + j), hb);
            __m512i ab = _mm512_inserti64x4(_mm512_castsi256_si512(ha), hb, 1);
            _mm512_storeu_si512(ep + (size_t)i * nc + 2 * (size_t)j, _mm512_permutexvar_epi16(ix, ab));
        }
    }
}

/* w (r x len fp32) as bf16 rows, len a multiple of 16. */
static void rows_bf16(const float *w, unsigned r, unsigned len, uint16_t *wb)
{
    for (unsigned k = 0; k < r; k++)
        for (unsigned j = 0; j < len; j += 16)
            _mm256_storeu_si256((__m256i *)(wb + (size_t)k * len + j), bf16_of(_mm512_loadu_ps(w + (size_t)k * len + j)));
}

/* 32 bf16 of a row from column j (16 if only 16 are left, the rest 0). */
static inline __m512bh load32(const uint16_t *p, unsigned j, unsigned nc)
{
    if (j + 32 <= nc) return (__m512bh)_mm512_loadu_si512(p + j);
    return (__m512bh)_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + j)));
}

/* out[k][i] = sum_j E[i][j] w[k][j] for the 16 rows from i0 (r, nv =
 * 32-column steps, constants in each instance). */
static inline __attribute__((always_inline)) void rows16(const uint16_t *er, unsigned nc, unsigned i0,
                                                         const unsigned r, const unsigned nv,
                                                         const uint16_t *wb, float *out, unsigned nr)
{
    __m512 u[4][4];
    UNROLL for (unsigned i = 0; i < 4; i++) {
        __m512 s[4][4];
        UNROLL for (unsigned k = 0; k < r; k++)
            UNROLL for (unsigned q = 0; q < 4; q++) s[k][q] = _mm512_setzero_ps();
        UNROLL for (unsigned v = 0; v < nv; v++) {
            __m512bh e[4];
            UNROLL for (unsigned q = 0; q < 4; q++) e[q] = load32(er + (size_t)(i0 + 4 * i + q) * nc, 32 * v, nc);
            UNROLL for (unsigned k = 0; k < r; k++) {
                __m512bh wv = load32(wb + (size_t)k * nc, 32 * v, nc);
                UNROLL for (unsigned q = 0; q < 4; q++) s[k][q] = _mm512_dpbf16_ps(s[k][q], e[q], wv);
            }
        }
        UNROLL for (unsigned k = 0; k < r; k++) u[k][i] = gear_rows4_partials(s[k]);
    }
    UNROLL for (unsigned k = 0; k < r; k++) _mm512_storeu_ps(out + (size_t)k * nr + i0, gear_rows16_sums(u[k]));
}

static inline __attribute__((always_inline)) void mul_rows_r(const uint16_t *er, unsigned nr, unsigned nc,
                                                             const unsigned r, const uint16_t *wb, float *out)
{
    const unsigned nv = (nc + 31) / 32;
    for (unsigned i0 = 0; i0 < nr; i0 += 16) {
        if (nv == 2) rows16(er, nc, i0, r, 2, wb, out, nr); /* 64 wide (value blocks) */
        else if (nv == 4) rows16(er, nc, i0, r, 4, wb, out, nr); /* 128 (keys) */
        else rows16(er, nc, i0, r, nv, wb, out, nr);
    }
}

void gear_cpu_bf16_mul_rows(const uint16_t *er, unsigned nr, unsigned nc, unsigned r, const float *w, float *out,
                            uint16_t *wb)
{
    rows_bf16(w, r, nc, wb);
    switch (r) {
    case 1: mul_rows_r(er, nr, nc, 1, wb, out); break;
    case 2: mul_rows_r(er, nr, nc, 2, wb, out); break;
    case 3: mul_rows_r(er, nr, nc, 3, wb, out); break;
    default: mul_rows_r(er, nr, nc, 4, wb, out); break;
    }
}

/* out[k][j] = sum_i E[i][j] w[k][i] for the NV*16 columns from j0: a
 * pair of rows a step, the pair (w[k][i], w[k][i+1]) broadcast as one
 * dword (r and NV constants in each instance). */
static inline __attribute__((always_inline)) void cols_chunk(const uint16_t *ep, unsigned nr, unsigned nc,
                                                             unsigned j0, const unsigned r, const unsigned NV,
                                                             const uint16_t *wb, float *out)
{
    __m512 acc[4][8];
    UNROLL for (unsigned k = 0; k < r; k++)
        UNROLL for (unsigned v = 0; v < NV; v++) acc[k][v] = _mm512_setzero_ps();
    for (unsigned i = 0; i < nr; i += 2) {
        const uint16_t *p = ep + (size_t)i * nc + 2 * (size_t)j0;
        __m512bh e[8];
        UNROLL for (unsigned v = 0; v < NV; v++) e[v] = (__m512bh)_mm512_loadu_si512(p + 32 * v);
        UNROLL for (unsigned k = 0; k < r; k++) {
            uint32_t pair;
            memcpy(&pair, wb + (size_t)k * nr + i, 4);
            __m512bh wk = (__m512bh)_mm512_set1_epi32((int)pair);
            UNROLL for (unsigned v = 0; v < NV; v++) acc[k][v] = _mm512_dpbf16_ps(acc[k][v], e[v], wk);
        }
    }
    UNROLL for (unsigned k = 0; k < r; k++)
        UNROLL for (unsigned v = 0; v < NV; v++) _mm512_storeu_ps(out + (size_t)k * nc + j0 + 16 * v, acc[k][v]);
}

static inline __attribute__((always_inline)) void mul_cols_r(const uint16_t *ep, unsigned nr, unsigned nc,
                                                             const unsigned r, const uint16_t *wb, float *out)
{
    unsigned j0 = 0;
    /* up to 16 accumulators: 8 column vectors for r <= 2, else 4 */
    if (r <= 2)
        for (; j0 + 128 <= nc; j0 += 128) cols_chunk(ep, nr, nc, j0, r, 8, wb, out);
    for (; j0 + 64 <= nc; j0 += 64) cols_chunk(ep, nr, nc, j0, r, 4, wb, out);
    for (; j0 < nc; j0 += 16) cols_chunk(ep, nr, nc, j0, r, 1, wb, out);
}

void gear_cpu_bf16_mul_cols(const uint16_t *ep, unsigned nr, unsigned nc, unsigned r, const float *w, float *out,
                            uint16_t *wb)
{
    rows_bf16(w, r, nr, wb);
    switch (r) {
    case 1: mul_cols_r(ep, nr, nc, 1, wb, out); break;
    case 2: mul_cols_r(ep, nr, nc, 2, wb, out); break;
    case 3: mul_cols_r(ep, nr, nc, 3, wb, out); break;
    default: mul_cols_r(ep, nr, nc, 4, wb, out); break;
    }
}

#if defined(__clang__)
#pragma clang attribute pop
#endif
