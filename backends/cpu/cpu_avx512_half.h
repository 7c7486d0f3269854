/* cpu_avx512_half.h - the Inf/NaN check on fp16 bit patterns shared by
 * the AVX-512 objects (cpu_avx512.c, cpu_avx512_compress.c); include it
 * only from sources built with AVX-512 flags. */
#ifndef GEAR_CPU_AVX512_HALF_H
#define GEAR_CPU_AVX512_HALF_H

#include <immintrin.h>

/* Largest |half| bit pattern per lane, so far: at or above 0x7c00 (the
 * exponent all ones) it is an Inf or a NaN. */
static inline __attribute__((always_inline)) __m256i gear_half_mag_max(__m256i mag, __m256i h)
{
    return _mm256_max_epu16(mag, _mm256_and_si256(h, _mm256_set1_epi16(0x7fff)));
}

static inline __attribute__((always_inline)) int gear_half_mag_finite(__m256i mag)
{
    return !_mm256_cmpge_epu16_mask(mag, _mm256_set1_epi16(0x7c00));
}

#endif
