/*
 * convert.c - fp16/bf16 <-> fp32 over arrays of little-endian 16-bit
 * fields (block sections, stream bytes).  The fields are gathered into
 * native uint16_t chunks first: byte-wise field access keeps the
 * compiler from vectorizing the conversion, chunks let it use whole
 * vector registers (one clone per x86-64 level).
 */
#include <string.h>
#include "internal.h"

#define CHUNK 256

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

/* Whether this CPU (and OS) runs AVX2 and F16C: F16C from CPUID, as
 * clang before 16 has no "f16c" for __builtin_cpu_supports; the AVX2
 * check covers the OS's saving of the 256-bit state.  Cached (relaxed
 * atomics: every thread computes the same value). */
static int have_f16c(void)
{
    static int state; /* 0: unknown, 1: no, 2: yes */
    int s = __atomic_load_n(&state, __ATOMIC_RELAXED);
    if (!s) {
        unsigned a, b, c, d;
        s = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && __builtin_cpu_supports("avx2") ? 2 : 1;
        __atomic_store_n(&state, s, __ATOMIC_RELAXED);
    }
    return s == 2;
}

/* gear_float_to_half_ovf by vcvtps2ph: it rounds to nearest even
 * whatever MXCSR says, as the portable converter does; its Inf becomes
 * ovf and its NaN the quiet 0x7e00, sign kept (check_core compares the
 * two on every 4099th bit pattern and the edges, also under FTZ/DAZ).
 * The portable bit selects take about 2 cycles a value, and GCC 12
 * does not vectorize them (-fopt-info-vec: "no vectype"). */
__attribute__((target("avx2,f16c"))) static void halves_f16c(const float *src, size_t n, uint16_t ovf, uint16_t *p)
{
    const __m256i m7 = _mm256_set1_epi16(0x7fff), inf = _mm256_set1_epi16(0x7c00);
    const __m256i o = _mm256_set1_epi16((short)ovf), qnan = _mm256_set1_epi16(0x7e00);
    size_t c = 0;
    for (; c + 16 <= n; c += 16) {
        __m128i lo = _mm256_cvtps_ph(_mm256_loadu_ps(src + c), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m128i hi = _mm256_cvtps_ph(_mm256_loadu_ps(src + c + 8), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256i h = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        __m256i mag = _mm256_and_si256(h, m7);
        mag = _mm256_blendv_epi8(mag, o, _mm256_cmpeq_epi16(mag, inf));
        mag = _mm256_blendv_epi8(mag, qnan, _mm256_cmpgt_epi16(mag, inf));
        _mm256_storeu_si256((__m256i *)(p + c), _mm256_or_si256(mag, _mm256_andnot_si256(m7, h)));
    }
    for (; c < n; c++) p[c] = gear_float_to_half_ovf(src[c], ovf);
}
#endif

int gear_floats_to_halves_f16c(const float *src, size_t n, uint16_t ovf, uint16_t *dst)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (have_f16c()) {
        halves_f16c(src, n, ovf, dst);
        return 1;
    }
#endif
    (void)src, (void)n, (void)ovf, (void)dst;
    return 0;
}

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
static inline void load_chunk(const uint8_t *src, size_t m, uint16_t *h)
{
    memcpy(h, src, 2 * m);
}
static inline void store_chunk(const uint16_t *h, size_t m, uint8_t *dst)
{
    memcpy(dst, h, 2 * m);
}
#else
static inline void load_chunk(const uint8_t *src, size_t m, uint16_t *h)
{
    for (size_t i = 0; i < m; i++) h[i] = gear_get_u16(src + 2 * i);
}
static inline void store_chunk(const uint16_t *h, size_t m, uint8_t *dst)
{
    for (size_t i = 0; i < m; i++) gear_put_u16(dst + 2 * i, h[i]);
}
#endif

GEAR_CLONES
void gear_halves_to_floats(const uint8_t *src, size_t n, int bf16, float *dst)
{
    uint16_t h[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        load_chunk(src + 2 * i0, m, h);
        if (bf16)
            for (size_t i = 0; i < m; i++) dst[i0 + i] = gear_bf16_to_float(h[i]);
        else
            for (size_t i = 0; i < m; i++) dst[i0 + i] = gear_half_to_float(h[i]);
    }
}

GEAR_CLONES
void gear_floats_to_halves(const float *src, size_t n, int bf16, uint8_t *dst)
{
    uint16_t h[CHUNK];
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        if (bf16)
            for (size_t i = 0; i < m; i++) h[i] = gear_float_to_bf16(src[i0 + i]);
        else if (!gear_floats_to_halves_f16c(src + i0, m, 0x7c00u, h))
            for (size_t i = 0; i < m; i++) h[i] = gear_float_to_half(src[i0 + i]);
        store_chunk(h, m, dst + 2 * i0);
    }
}

/* fp32 fields: a copy on little-endian hosts. */
void gear_floats_load_le(const uint8_t *src, size_t n, float *dst)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, 4 * n);
#else
    for (size_t i = 0; i < n; i++) dst[i] = gear_bits_f32(gear_get_u32(src + 4 * i));
#endif
}

void gear_floats_store_le(const float *src, size_t n, uint8_t *dst)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(dst, src, 4 * n);
#else
    for (size_t i = 0; i < n; i++) gear_put_u32(dst + 4 * i, gear_f32_bits(src[i]));
#endif
}

GEAR_CLONES
int gear_halves_store_finite(const uint16_t *src, size_t n, uint8_t *dst)
{
    for (size_t i0 = 0; i0 < n; i0 += CHUNK) {
        size_t m = n - i0 < CHUNK ? n - i0 : CHUNK;
        unsigned bad = 0;
        for (size_t i = 0; i < m; i++) bad |= (src[i0 + i] & 0x7c00u) == 0x7c00u;
        if (bad) return 0;
        store_chunk(src + i0, m, dst + 2 * i0);
    }
    return 1;
}
