/* q4_0_baseline.c - see q4_0_baseline.h.  Per block: the entry of largest
 * magnitude m (its sign kept) sets the scale d = m / -8; codes are
 * min(15, trunc(x/d + 8.5)), two per byte (entry j low nibble, j+16 high).
 * One clone per x86-64 level (GEAR_CLONES): the baseline may use every
 * vector unit the library uses, which is at least what llama.cpp's build
 * of this code gets, so any error in the comparison favours q4_0. */
#include "q4_0_baseline.h"
#include <math.h>
#include <string.h>
#include <gear/backend.h>

GEAR_CLONES
void q4_0_quantize(const float *x, size_t n, uint8_t *out)
{
    for (size_t b = 0; b < n / Q4_0_BLOCK; b++, x += Q4_0_BLOCK, out += Q4_0_BYTES) {
        float amax = 0.0f, m = 0.0f;
        for (unsigned j = 0; j < Q4_0_BLOCK; j++) {
            float a = fabsf(x[j]);
            if (a > amax) {
                amax = a;
                m = x[j];
            }
        }
        float d = m / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        uint16_t h = gear_float_to_half(d);
        memcpy(out, &h, 2);
        for (unsigned j = 0; j < Q4_0_BLOCK / 2; j++) {
            int a = (int)(int8_t)(x[j] * id + 8.5f), c = (int)(int8_t)(x[j + 16] * id + 8.5f);
            a = a < 15 ? a : 15;
            c = c < 15 ? c : 15;
            out[2 + j] = (uint8_t)(a | (c << 4));
        }
    }
}

float q4_0_value(const uint8_t *block, unsigned i)
{
    uint16_t h;
    memcpy(&h, block, 2);
    unsigned byte = block[2 + (i & 15)], code = i < 16 ? byte & 15 : byte >> 4;
    return ((float)code - 8.0f) * gear_half_to_float(h);
}
