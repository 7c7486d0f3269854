/* cpu.h - internals of the cpu backend module (OpenMP + SIMD). */
#ifndef GEAR_CPU_H
#define GEAR_CPU_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <gear/backend.h>
#include "cpu_workspace.h"

/* Hot loops carry GEAR_CLONES (gear/backend.h): compiled for several
 * instruction sets and picked at load time, so the module runs on any
 * x86-64 and uses AVX2/AVX-512 where present. */

/* Helpers inlined into each clone of their caller, so that one clone per
 * instruction set covers a whole kernel (a call per row through the
 * clone dispatcher would cost more than the row). */
#define CPU_INLINE static inline __attribute__((always_inline))

/* Gram-Schmidt in fp32 (the three orthonormalizations of the module):
 * where subtracting the earlier columns left a column below this
 * fraction of its squared norm, the rest is as far from orthogonal as
 * eps over its relative norm (6 % at the dead-column threshold, 1e-6), and
 * that lean on the first column came back in its factor as a copy of the
 * dominant term; the projections are then repeated once ("twice is
 * enough").  Above it a column keeps at least 1 % of its norm, one pass
 * leans by at most about 100 eps (far inside check_xbackend's bounds),
 * and the bytes are those of one pass. */
#define GEAR_GS_REPEAT 1e-4

typedef struct cpu_state {
    int n_threads;           /* OpenMP threads used by this context */
    pthread_mutex_t ws_lock; /* guards ws_pool */
    cpu_ws *ws_pool;         /* idle workspaces (cpu_workspace.h) */
} cpu_state;

/* Little-endian fields of a block (the module does not link the core's
 * internal helpers). */
static inline uint16_t cpu_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline void cpu_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* x / d by a multiply, exact for x, d < 2^16 (an outlier index and a
 * block dimension): m = ceil(2^32 / d) overshoots x/d by less than
 * x/2^32 < 2^-16 < 1/d, which never crosses the next integer. */
static inline uint64_t cpu_div_magic(unsigned d) { return ((1ull << 32) + d - 1) / d; }
static inline unsigned cpu_div(unsigned x, uint64_t m) { return (unsigned)(((uint64_t)x * m) >> 32); }

/* Scratch for compressing one block (per thread). */
typedef struct cpu_scratch {
    float *e;        /* n x d residual */
    uint8_t *codes;  /* n x d codes before packing */
    float *mn, *dl;  /* per group minimum / step (fp16-rounded values) */
    unsigned *omax, *omin; /* per group outlier positions (k = 1 path) */
    float *y, *pt;   /* n x r, r x d */
    size_t cap;      /* entries e can hold */
    const float *cbt; /* CQ blocks: the head's codebook, centroid-major (not owned) */
    const uint16_t *next; /* fp16 rows of the thread's next block (same ld), or NULL:
                           * the fused compressor fetches them as it goes */
    const uint16_t *after; /* and of the block after that (its pages touched) */
} cpu_scratch;

gear_status gear_cpu_compress_one(const gear_block_layout *L, const gear_block_id *id,
                                  const float *x, uint8_t *blk, cpu_scratch *s);
void gear_cpu_scratch_free(cpu_scratch *s);
/* Whether gear_cpu_compress_one_f16 takes blocks of this layout (the
 * fused AVX-512 compressor runs here and fits it). */
int gear_cpu_compress_f16_direct(const gear_block_layout *L);
/* One block straight from fp16 rows ld apart: GEAR_ERR_NONFINITE on an
 * Inf or NaN (blk then unfinished). */
gear_status gear_cpu_compress_one_f16(const gear_block_layout *L, const gear_block_id *id,
                                      const uint16_t *x, size_t ld, uint8_t *blk, cpu_scratch *s);
/* Set at module load: the AVX-512 kernels may be used. */
extern int gear_cpu_have_avx512;
/* Codes [p0, p0+len) of a packed row of `bits`-bit codes, as floats. */
void gear_cpu_unpack(const uint8_t *row, unsigned bits, unsigned p0, unsigned len, float *out);
/* Reconstruction Q^ + S + A B^T of one block (n x d fp32): the same
 * arithmetic as ref (codes decode bit-identically), vectorized. */
gear_status gear_cpu_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                 float *out);
/* The same with the scratch in buf (a workspace buffer). */
gear_status gear_cpu_reconstruct_buf(const gear_block_layout *L, const uint8_t *blk, float *out, cpu_buf *buf);
/* dst[i] = gear_half_sat(src[i]) for i < n (F16C where the CPU has it). */
void gear_cpu_halves_sat(const float *src, size_t n, uint16_t *dst);
/* Code j of a packed row of `bits`-bit codes (bits <= 8). */
static inline unsigned cpu_code_get(const uint8_t *row, unsigned bits, unsigned j)
{
    size_t bit = (size_t)j * bits;
    unsigned v = row[bit >> 3];
    if ((bit & 7) + bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8;
    return (v >> (bit & 7)) & ((1u << bits) - 1u);
}

/* ---- Coupled Quantization blocks (cpu_cq.c) */
/* The head's codebook [j][k][i] as cbt[j][i][k] (cb_head_floats floats),
 * so the distances to all K centroids of a group vectorize over k. */
void gear_cpu_cq_transpose(const gear_block_layout *L, const float *cb, float *cbt);
/* Codes of one block, bit-identical to ref (gear_cq_nearest), skipping
 * the outliers already in blk; mask: n*d bytes of scratch. */
void gear_cpu_cq_encode(const gear_block_layout *L, const float *cbt, const float *x, uint8_t *blk,
                        uint8_t *mask);
/* Q^ of one block: the centroids of its codes (outliers not restored). */
void gear_cpu_cq_decode(const gear_block_layout *L, const uint8_t *blk, float *out);
gear_status gear_cpu_attention_cq(void *state, const gear_attention_args *a);

/* GEAR_ERR_UNSUPPORTED for shapes it does not handle: the core falls back. */
gear_status gear_cpu_attention(void *state, const gear_attention_args *a);

#endif
