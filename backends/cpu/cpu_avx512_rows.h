/*
 * cpu_avx512_rows.h - sums of rows' lane partials, shared by the fp32 and
 * bf16 power-iteration products (E w: one vector of 16 lane partials per
 * row).  Included by AVX-512 sources after their target pragma.
 */
#ifndef GEAR_CPU_AVX512_ROWS_H
#define GEAR_CPU_AVX512_ROWS_H
#include <immintrin.h>

/* The lane partials of 4 rows s[0..3] to one vector whose 128-bit lane l
 * holds partial l of each of the 4 rows (four lanes of each folded in). */
static inline __attribute__((always_inline)) __m512 gear_rows4_partials(const __m512 s[4])
{
    __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(s[0], s[1]), _mm512_unpackhi_ps(s[0], s[1]));
    __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(s[2], s[3]), _mm512_unpackhi_ps(s[2], s[3]));
    __m512d p0 = _mm512_castps_pd(t0), p1 = _mm512_castps_pd(t1);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p0, p1)), _mm512_castpd_ps(_mm512_unpackhi_pd(p0, p1)));
}

/* Four gear_rows4_partials of rows 4m..4m+3 (u[m]) to the 16 row sums. */
static inline __attribute__((always_inline)) __m512 gear_rows16_sums(const __m512 u[4])
{
    __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

#endif
