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
        else
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
