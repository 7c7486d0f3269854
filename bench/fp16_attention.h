/* fp16_attention.h - the baseline users would otherwise run: decode
 * attention over an uncompressed fp16 KV cache, made as fast as we can
 * (an AVX-512 kernel where the CPU has one, an AVX2 one where it has
 * AVX2 but not AVX-512 or GEAR_CPU_NO_AVX512 is set (as for the cpu
 * module, so that one switch shows what an AVX2-only CPU would run), else
 * a generic kernel compiled per x86-64 level; OpenMP over heads and
 * context chunks, online softmax). */
#ifndef GEAR_BENCH_FP16_ATTENTION_H
#define GEAR_BENCH_FP16_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

/* k, v: [n_head][T][d] fp16; q: [n_head*G][d] fp32; out like q.
 * Scratch is allocated inside.  Returns 0 on success. */
int fp16_attention(const uint16_t *k, const uint16_t *v, unsigned n_head, unsigned T, unsigned d,
                   const float *q, unsigned G, float scale, float *out, int threads);

/* Nonzero: the generic kernel even where the AVX-512 or AVX2 one could run (the
 * bench and check_fp16_baseline compare one with the other).  A
 * process-wide switch: set it only while no fp16_attention call runs. */
extern int fp16_attention_generic;

/* "avx512" or "avx2" when fp16_attention would use that kernel for head
 * dim d on this CPU (for chunks whose length is a multiple of 16 tokens;
 * the others take the generic kernel), else "generic". */
const char *fp16_attention_kernel(unsigned d);

#endif
