/* fp16_attention.h - the baseline users would otherwise run: decode
 * attention over an uncompressed fp16 KV cache, made as fast as we can
 * (AVX-512/AVX2 through compiler multi-versioning, OpenMP over heads and
 * context chunks, online softmax). */
#ifndef GEAR_BENCH_FP16_ATTENTION_H
#define GEAR_BENCH_FP16_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* k, v: [n_head][T][d] fp16; q: [n_head*G][d] fp32; out like q.
 * Scratch is allocated inside.  Returns 0 on success. */
int fp16_attention(const uint16_t *k, const uint16_t *v, unsigned n_head, unsigned T, unsigned d,
                   const float *q, unsigned G, float scale, float *out, int threads);

/* Nonzero: the generic kernel even where the AVX-512 one could run (the
 * bench checks one against the other). */
extern int fp16_attention_generic;

#endif
