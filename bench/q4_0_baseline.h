/* q4_0_baseline.h - the quantizer the compress target is measured against:
 * llama.cpp's CPU q4_0 format (blocks of 32 fp32 values -> an fp16 scale
 * and 16 bytes of 4-bit codes), written after ggml's scalar reference
 * quantizer, which is what ggml's CPU backend runs for q4_0. */
#ifndef GEAR_BENCH_Q4_0_BASELINE_H
#define GEAR_BENCH_Q4_0_BASELINE_H

#include <stddef.h>
#include <stdint.h>

#define Q4_0_BLOCK 32
#define Q4_0_BYTES 18 /* fp16 scale + 16 bytes of codes */

/* Quantize n fp32 values (n a multiple of 32) into n/32 blocks at out. */
void q4_0_quantize(const float *x, size_t n, uint8_t *out);

/* The value of code i (0..31) of a block: (code - 8) * scale. */
float q4_0_value(const uint8_t *block, unsigned i);

#endif
