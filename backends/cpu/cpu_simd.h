/* cpu_simd.h - kernels compiled for one instruction set, picked at run time. */
#ifndef GEAR_CPU_SIMD_H
#define GEAR_CPU_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <gear/backend.h>

/* CALL(B, R) with the code width B (2, else 4) and the row count R
 * (1..4, 4 standing for more) as compile-time constants, so that each
 * kernel is built with its accumulators in registers. */
#define GEAR_CPU_BITS_ROWS(bits, rows, CALL)                                                    \
    do {                                                                                        \
        if ((bits) == 2) {                                                                      \
            switch (rows) {                                                                     \
            case 1: CALL(2, 1); break;                                                          \
            case 2: CALL(2, 2); break;                                                          \
            case 3: CALL(2, 3); break;                                                          \
            default: CALL(2, 4); break;                                                         \
            }                                                                                   \
        } else {                                                                                \
            switch (rows) {                                                                     \
            case 1: CALL(4, 1); break;                                                          \
            case 2: CALL(4, 2); break;                                                          \
            case 3: CALL(4, 3); break;                                                          \
            default: CALL(4, 4); break;                                                         \
            }                                                                                   \
        }                                                                                       \
    } while (0)

/* CALL(R) with the row count R (1..4, 4 standing for more) a
 * compile-time constant. */
#define GEAR_CPU_ROWS(rows, CALL)                                                               \
    do {                                                                                        \
        switch (rows) {                                                                         \
        case 1: CALL(1); break;                                                                 \
        case 2: CALL(2); break;                                                                 \
        case 3: CALL(3); break;                                                                 \
        default: CALL(4); break;                                                                \
        }                                                                                       \
    } while (0)

/* The exported row kernels of one instruction set (gear_cpu_rows_*_avx512,
 * _avx2) over that file's row_scores and its ROW_VALUES_H / ROW_VALUES_F
 * (R rows' values from halves or floats), the element type a
 * compile-time constant in each. */
#define GEAR_CPU_ROW_KERNELS(isa)                                                                             \
    void gear_cpu_rows_scores_##isa(const void *k, int half, unsigned n, unsigned d, const float *q,          \
                                    unsigned rows, float *s)                                                  \
    {                                                                                                         \
        if (half) row_scores(k, 1, n, d, q, rows, s);                                                         \
        else row_scores(k, 0, n, d, q, rows, s);                                                              \
    }                                                                                                         \
    void gear_cpu_rows_values_##isa(const void *v, int half, unsigned n, unsigned d, const float *p,          \
                                    unsigned rows, float *o)                                                  \
    {                                                                                                         \
        for (unsigned r0 = 0; r0 < rows; r0 += 4)                                                             \
            if (half) GEAR_CPU_ROWS(rows - r0, ROW_VALUES_H);                                                 \
            else GEAR_CPU_ROWS(rows - r0, ROW_VALUES_F);                                                      \
    }

/* Partial softmax state of one query row. */
typedef struct part {
    float m, l; /* running max, running sum */
} part;

/* GEAR_CPU_AVX512 is defined when cpu_avx512.c is part of the build (an
 * x86-64 compiler that takes AVX-512 flags); gear_cpu_have_avx512 is then
 * set at load time if this CPU runs it. */
#ifdef GEAR_CPU_AVX512
#define CPU_AVX512 gear_cpu_have_avx512
/* Set at load time where the CPU has AVX2, FMA and F16C (and
 * GEAR_CPU_NO_AVX2 is unset): the kernels of cpu_avx2.c, used where the
 * AVX-512 ones are not (the four-row interleaves: wherever AVX2 runs). */
extern int gear_cpu_have_avx2;
#define CPU_AVX2 gear_cpu_have_avx2
#else
#define CPU_AVX512 0
#define CPU_AVX2 0
#endif
/* The compressor's AVX2 kernels run where AVX2 does and AVX-512 does not
 * (with AVX-512, its clones of the portable loops or the fused kernel
 * are faster). */
#define CPU_AVX2_ONLY (CPU_AVX2 && !CPU_AVX512)

#ifdef GEAR_CPU_AVX512
/* Key scores of one 64-token group: see cpu_avx512.c. */
void gear_cpu_keys64_avx512(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned d,
                            const float *w, const float *bias, unsigned rows, float *s, unsigned n);
void gear_cpu_values64_avx512(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned n,
                              unsigned d, const float *dl, const float *mn, const float *p,
                              unsigned rows, float *o);
void gear_cpu_stats64_avx512(const float *x, float out[4], unsigned pos[2]);
/* y[t*ys + k] = sum_c e[t][c] pt[k][c], k < r <= 4 (lowrank takes
 * larger ranks four columns at a time) */
void gear_cpu_mul_ep_avx512(const float *e, const float *pt, unsigned n, unsigned d, unsigned r,
                            float *y, unsigned ys);
/* pt[k][c] = sum_t y[t*r + k] e[t][c], d a multiple of 16 */
void gear_cpu_mul_ety_avx512(const float *e, const float *y, unsigned n, unsigned d, unsigned r, float *pt);
void gear_cpu_halves_avx512(const uint8_t *src, size_t n, float *dst);
/* Uncompressed rows (n x d, d a multiple of 16): the fp16 preset's raw
 * blocks (half: halves) and the fp32 buffer.  s[r*n + t] = q_r . x_t, and
 * o[r*d + c] += sum_t p[r*n + t] x_tc. */
void gear_cpu_rows_scores_avx512(const void *k, int half, unsigned n, unsigned d, const float *q, unsigned rows,
                                 float *s);
void gear_cpu_rows_values_avx512(const void *v, int half, unsigned n, unsigned d, const float *p, unsigned rows,
                                 float *o);
/* dst[j] = fmaf(code j, dl, mn), len codes (a multiple of 16) of a 2-, 4-
 * or 8-bit row from a 16-code boundary. */
void gear_cpu_decode_avx512(const uint8_t *row, unsigned bits, unsigned len, float dl, float mn, float *dst);
/* Q^ of a uniform key block (2-, 4- or 8-bit codes, d, the group and
 * the block multiples of 16) as n x d fp32, outliers not restored. */
void gear_cpu_decode_keys_avx512(const gear_block_layout *L, const uint8_t *blk, float *out);
/* out[t][j] += sum_c a[t][c] bt[c][j] as an fmaf chain over c (d a
 * multiple of 16): the low-rank term of a reconstruction. */
void gear_cpu_lowrank_add_avx512(float *out, const float *a, const float *bt, unsigned n, unsigned d, unsigned r);
/* m contiguous halves to floats; 0 if one is Inf or NaN */
int gear_cpu_halves_finite_avx512(const uint16_t *src, size_t m, float *dst);

/* AVX2 + FMA + F16C versions of some of the above: cpu_avx2.c. */
void gear_cpu_keys64_avx2(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned d, const float *w,
                          const float *bias, unsigned rows, float *s, unsigned n);
/* Value groups of 64 channels or of the whole row (group = 64 or d). */
void gear_cpu_values64_avx2(const uint8_t *codes, unsigned row_bytes, unsigned bits, unsigned n, unsigned d,
                            unsigned group, const float *dl, const float *mn, const float *p, unsigned rows,
                            float *o);
void gear_cpu_halves_avx2(const uint8_t *src, size_t n, float *dst);
/* gear_cpu_rows_scores_avx512 and gear_cpu_rows_values_avx512 eight lanes wide. */
void gear_cpu_rows_scores_avx2(const void *k, int half, unsigned n, unsigned d, const float *q, unsigned rows,
                               float *s);
void gear_cpu_rows_values_avx2(const void *v, int half, unsigned n, unsigned d, const float *p, unsigned rows,
                               float *o);
int gear_cpu_halves_finite_avx2(const uint16_t *src, size_t m, float *dst);
void gear_cpu_halves_sat_avx2(const float *src, size_t n, void *dst); /* dst: any byte */
void gear_cpu_stats64_avx2(const float *x, float out[4], unsigned pos[2]);
/* key_group, key_codes and value_codes of cpu_compress.c (d, c0 and c1
 * multiples of 8) */
void gear_cpu_key_group_avx2(const float *x, unsigned d, unsigned t0, unsigned t1, unsigned k, float *mx1,
                             float *mx2, float *mn1, float *mn2, unsigned *amx, unsigned *amn);
void gear_cpu_key_codes_avx2(unsigned d, const float *row, unsigned t, const float *mn, const float *dl,
                             const unsigned *amx, const unsigned *amn, const uint8_t *mrow, int k,
                             float levels, uint8_t *codes, float *e);
void gear_cpu_value_codes_avx2(const float *row, unsigned c0, unsigned c1, unsigned amx, unsigned amn,
                               const uint8_t *mrow, int k, float mn, float dl, float levels, uint8_t *codes,
                               float *e);
/* Key and value blocks (cpu_avx2_compress.c): codes, scales, minima,
 * outliers and residual (or NULL: none) in two passes over strips of 8
 * columns, for the layouts gear_cpu_block_avx2_fits takes (at most one
 * outlier a side per group).  Keys: e is E (n x d); values: et is E^T
 * (d x n), and zbuf n*d floats of scratch. */
int gear_cpu_block_avx2_fits(const gear_block_layout *L);
void gear_cpu_key_block_avx2(const gear_block_layout *L, const float *x, uint8_t *blk, float *e);
/* The fp16 rows of the blocks after this one (the same ld), or NULL:
 * fetched while this one is compressed. */
typedef struct gear_cpu_next {
    const uint16_t *next, *after;
    size_t ld;
} gear_cpu_next;
/* from fp16 rows ld apart (converted into xbuf, n*d floats); 0 (blk
 * unfinished) if one is Inf or NaN */
int gear_cpu_key_block_avx2_f16(const gear_block_layout *L, const uint16_t *x, size_t ld, const gear_cpu_next *pf,
                                uint8_t *blk, float *e, float *xbuf);
void gear_cpu_value_block_avx2(const gear_block_layout *L, const float *x, uint8_t *blk, float *et, float *zbuf);
/* from fp16 rows ld apart (tbuf: n*d halves of scratch); 0 (blk
 * unfinished) if one is Inf or NaN */
int gear_cpu_value_block_avx2_f16(const gear_block_layout *L, const uint16_t *x, size_t ld, const gear_cpu_next *pf,
                                  uint8_t *blk, float *et, float *zbuf, uint16_t *tbuf);
/* pt[k][c] = gear_rng_uniform(key, c*r + k), d a multiple of 4 */
void gear_cpu_start_matrix_avx2(uint64_t key, unsigned d, unsigned r, float *pt);
void gear_cpu_mul_ep_avx2(const float *e, const float *pt, unsigned n, unsigned d, unsigned r, float *y,
                          unsigned ys);
void gear_cpu_mul_ety_avx2(const float *e, const float *y, unsigned n, unsigned d, unsigned r, float *pt);
/* Four rows of x (lx floats each, lx a multiple of 8) interleaved:
 * xt[4c + i] = x[i*lx + c]; and back, added: y[i*ly + t] += yt[4t + i]
 * (the attention's sparse terms, cpu_attn.h). */
void gear_cpu_interleave4_avx2(const float *x, unsigned lx, float *xt);
/* Modified Gram-Schmidt on the r rows of yt (r x len, len a multiple of
 * 8), in double, as cpu_compress.c's orthonormalize_t */
void gear_cpu_orthonormalize_t_avx2(float *yt, unsigned len, unsigned r);
void gear_cpu_deinterleave4_add_avx2(float *y, unsigned ly, const float *yt);

/* One compressed (K block, V block) pair of one KV head folded into the
 * running softmax of every query row: cpu_avx512_attn.c. */
typedef struct gear_attn2_block {
    const gear_block_layout *lk, *lv;
    const uint8_t *kblk, *vblk;
    const uint8_t *next_k, *next_v; /* the pair after this one (prefetched), or NULL */
    const float *q;      /* rows x d */
    unsigned rows;
    float scale;
    size_t pos0;         /* position of the block's first token */
    const size_t *lim;   /* per row: the last position it sees */
    part *pt;            /* per row */
    float *o;            /* rows x d, 64-channel groups in permuted order (a short last one natural) */
    float *onat;         /* rows x d, natural order; NULL: no outliers, no rank */
    void *big;           /* gear_cpu_attend2_big_avx512's block copies (gear_cpu_attn2_big_bytes), else unused */
} gear_attn2_block;
/* The layouts the AVX-512 attention kernels take: 64-token blocks, rank 0
 * to 8, k+k outliers per group (rank*(64 + d) + outliers <= 4608 floats,
 * <= 2048 outliers); 2-bit codes in groups of 64 at head dim 64/128/256;
 * with the fixed-point kernel (head dims 64, 80, 96, 128 and 256, value
 * rows that end in a short group included), also 4-bit codes and value
 * groups of the whole row (kivi4, kcvt4, gear4), for softmax scales up to
 * 2^16 in magnitude (cpu_avx512_attn.c). */
int gear_cpu_attn2_fits(const gear_block_layout *lk, const gear_block_layout *lv, float scale);
/* Those head dims go through the fixed-point (VNNI) kernel when the CPU
 * has AVX-512 VBMI, VNNI and DQ and GEAR_CPU_NO_VNNI is unset. */
extern int gear_cpu_have_avx512_vnni;
/* n (1 or 2) pairs of different KV heads, independent of each other:
 * gear_cpu_attend2_avx512 where the block's extras fit its per-block
 * scratch (rank <= 4, rank*(64 + d) + outliers <= 1152 floats, <= 512
 * outliers: every preset), else (gear_cpu_attn2_big says which)
 * gear_cpu_attend2_big_avx512, fixed point at head dims 64 and 128 only. */
int gear_cpu_attn2_big(const gear_block_layout *lk, const gear_block_layout *lv);
/* Bytes of the big kernels' block copies (about 64 KiB, 64-byte aligned
 * in the per-thread workspace rather than on the caller's stack). */
size_t gear_cpu_attn2_big_bytes(void);
void gear_cpu_attend2_avx512(const gear_attn2_block *a, unsigned n);
void gear_cpu_attend2_big_avx512(const gear_attn2_block *a, unsigned n);

/* CQ blocks with 8-bit codes of 2, 4, 8 or 16 channels, head dim 64,
 * 128, 192 or 256, blocks of a multiple of 16 tokens: cpu_avx512_cq.c.
 * cb is the head's codebook [group][centroid][channel]; the outliers and
 * the low-rank part are left to the caller. */
int gear_cpu_cq8_fits(const gear_block_layout *L);
/* s[r][t] = q_r . k_t (rows x L->n, q rows x d). */
void gear_cpu_cq8_scores_avx512(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                const float *q, unsigned rows, float *s);
/* o[r] += sum_t p[r][t] v_t (p rows x L->n, o rows x d). */
void gear_cpu_cq8_values_avx512(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                const float *p, unsigned rows, float *o);
/* Encoding: the nearest of a group's 256 centroids (cbt [channel][256])
 * to x (c <= 16 channels, bit i of skip: channel i left out), the same
 * code as gear_cq_nearest. */
unsigned gear_cpu_cq8_nearest_avx512(const float *x, uint32_t skip, const float *cbt, unsigned c);
/* o (permuted groups) to natural order, plus onat (may be NULL). */
void gear_cpu_values_unpermute(float *o, const float *onat, unsigned rows, unsigned d, unsigned bits);
#endif

#ifdef GEAR_CPU_AVX512
/* Fused compression of one block (cpu_avx512_compress.c); also needs
 * AVX-512 DQ and VBMI2, checked at load into gear_cpu_have_avx512_compress.
 * zbuf, ez: n*d floats; yt: rank*n; pt: rank*d. */
extern int gear_cpu_have_avx512_compress;
void gear_cpu_compress_avx512(const gear_block_layout *L, const gear_block_id *id, const float *x,
                              uint8_t *blk, float *zbuf, float *ez, float *yt, float *pt);
/* The same from fp16 rows ld apart; 0 (blk unfinished) if a half is Inf or
 * NaN.  next (or NULL): rows of the block to come, prefetched meanwhile;
 * after (or NULL): the block after it, whose pages are touched. */
int gear_cpu_compress_avx512_f16(const gear_block_layout *L, const gear_block_id *id, const uint16_t *x,
                                 size_t ld, const uint16_t *next, const uint16_t *after, uint8_t *blk,
                                 float *zbuf, float *ez, float *yt, float *pt);
#define CPU_AVX512_COMPRESS gear_cpu_have_avx512_compress
/* Outliers a side in a group the fused compressor takes (1: pass 1's
 * top-2 network; more: sorted lists of k + 1 in one more pass, or a pass
 * per outlier where ties at the boundary need ref's order). */
#define CPU_AVX512_KMAX 8
/* The power iteration's products in bf16 (cpu_avx512_bf16.c), where the
 * CPU has AVX512-BF16 and GEAR_CPU_BF16 is set (opt-in): E (nr x nc fp32) to
 * er (row-major) and ep (rows paired) once a block; then out = E w
 * (mul_rows, w: r x nc, out: r x nr) and out = E^T w (mul_cols, w: r x nr,
 * out: r x nc).  nr, nc multiples of 16; wb: r * max(nr, nc) bf16 of
 * scratch. */
extern int gear_cpu_have_avx512_bf16;
void gear_cpu_bf16_layouts(const float *ez, unsigned nr, unsigned nc, uint16_t *er, uint16_t *ep);
void gear_cpu_bf16_mul_rows(const uint16_t *er, unsigned nr, unsigned nc, unsigned r, const float *w, float *out,
                            uint16_t *wb);
void gear_cpu_bf16_mul_cols(const uint16_t *ep, unsigned nr, unsigned nc, unsigned r, const float *w, float *out,
                            uint16_t *wb);
/* out (cols x rows) = in^T (rows x cols), both multiples of 16. */
void gear_cpu_transpose_avx512(const float *in, unsigned rows, unsigned cols, float *out);
#else
#define CPU_AVX512_COMPRESS 0
#endif

#endif
