/*
 * cpu_avx512_cq.c - AVX-512 decode attention over Coupled Quantization
 * blocks with 8-bit codes (cq-2c8b, cq-4c8b, cq-8c8b, cq-16c8b): each
 * token's row is rebuilt 16 channels at a time from its centroids (one
 * load per centroid, c = 2, 4, 8 or 16 floats) and enters fp32 dot
 * products, keys against every query row, values weighted by every row's
 * softmax weights.  The rebuilt row never leaves the registers, and one
 * rebuild serves all the query rows of a KV head (grouped-query
 * attention).  Per-query tables and per-centroid histograms (the portable
 * path in cpu_attention_cq.c) cost a load or a read-modify-write per code
 * and query row; here a code costs one load, shared by the rows.
 * Outliers and the low-rank part are added by the caller.  Called only
 * after the run-time CPU check.
 */
#include <immintrin.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

#define INLINE static inline __attribute__((always_inline))
#define K8 256      /* centroids of a group (8-bit codes) */
#define MAXC 16     /* 16-channel chunks of the widest head (256) */
#define QUAD 4      /* query rows per value pass (16 accumulators) */

int gear_cpu_cq8_fits(const gear_block_layout *L)
{
    unsigned c = L->cq_dim;
    return L->bits == 8 && (c == 2 || c == 4 || c == 8 || c == 16) && L->d % 64 == 0 &&
           L->d <= 16 * MAXC && L->n % 16 == 0 && L->cq_row_bytes == L->d / c;
}

/* Channels [16k, 16k+16) of one token: gk points at the codebook of
 * chunk k's first group (group 16k/c, 16 * 256 floats per chunk), off at
 * the byte offsets of that token's centroids of chunk k in their groups
 * (code * 4c): one load per centroid, at a constant displacement per
 * group, merged into its lanes by a masked broadcast (a load and a blend:
 * in cache, cq-4c8b attention was 5 % slower with inserts, which take the
 * shuffle unit). */
INLINE __m512 chunk(const char *gk, const uint16_t *off, unsigned c)
{
    const size_t gs = (size_t)K8 * c * sizeof(float); /* bytes per group */
    uint64_t w[2]; /* the offsets, 16 bits each: read as words, they cost no load each */
    memcpy(w, off, c == 2 ? 16 : c == 4 ? 8 : c == 8 ? 4 : 2);
#define OFF(i) ((size_t)(w[(i) >> 2] >> (16 * ((i) & 3)) & 0xffff))
    if (c == 16) return _mm512_loadu_ps((const float *)(gk + OFF(0)));
    if (c == 8) {
        __m512d v = _mm512_castpd256_pd512(_mm256_loadu_pd((const double *)(gk + OFF(0))));
        return _mm512_castpd_ps(_mm512_mask_broadcast_f64x4(v, 0xf0, _mm256_loadu_pd((const double *)(gk + gs + OFF(1)))));
    }
    if (c == 4) {
        __m512 v = _mm512_castps128_ps512(_mm_loadu_ps((const float *)(gk + OFF(0))));
        for (unsigned i = 1; i < 4; i++)
            v = _mm512_mask_broadcast_f32x4(v, (__mmask16)(0xfu << (4 * i)), _mm_loadu_ps((const float *)(gk + i * gs + OFF(i))));
        return v;
    }
    /* c == 2: eight 64-bit centroids (movq loads: a float pair read as 64
     * bits, with no alias or alignment assumption) */
    __m512d v = _mm512_castpd128_pd512(_mm_castsi128_pd(_mm_loadl_epi64((const __m128i *)(gk + OFF(0)))));
    for (unsigned i = 1; i < 8; i++)
        v = _mm512_mask_broadcastsd_pd(v, (__mmask8)(1u << i),
                                       _mm_castsi128_pd(_mm_loadl_epi64((const __m128i *)(gk + i * gs + OFF(i)))));
    return _mm512_castpd_ps(v);
#undef OFF
}

/* The codes of 16 consecutive tokens (rb = G bytes each, one run of 16 *
 * rb bytes) as byte offsets code * 4c (c a power of two up to 16: below
 * 2^14). */
INLINE void offsets16(const uint8_t *codes, unsigned rb, unsigned c, uint16_t *off)
{
    unsigned sh = c == 2 ? 3 : c == 4 ? 4 : c == 8 ? 5 : 6, n = 16 * rb, i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(off + i, _mm512_slli_epi16(_mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(codes + i))), sh));
    for (; i < n; i++) off[i] = (uint16_t)(codes[i] << sh);
}

/* Lane t of the result = the sum of the 16 lanes of a[t]: a transpose
 * and add in four levels, 45 operations for 16 sums. */
INLINE __m512 sum16x16(__m512 a[16])
{
    __m512 t[8], u[4], w[2];
    for (unsigned i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]), _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
    for (unsigned i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (unsigned i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xdd));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88), _mm512_shuffle_f32x4(w[0], w[1], 0xdd));
}

/* Keys of 16 tokens (byte offsets off, G = d/c a token) for R rows of q
 * (c and R constants after inlining), four tokens at a time: each chunk
 * of q is loaded once for the four, and the 4R sums stay in registers;
 * the 16 sums of a row are then transposed into one vector,
 * s[r * ns + i] for token i.  (Token by token, with q loaded for each,
 * G = 4 was 12-15 % slower in cache.) */
INLINE void scores16(const uint16_t *off, const float *cb, unsigned c, unsigned d, const float *q, unsigned R,
                     float *s, unsigned ns)
{
    unsigned G = d / c, per = 16 / c; /* centroids per 16 channels */
    __m512 acc[QUAD][16];
    for (unsigned i0 = 0; i0 < 16; i0 += 4) {
        __m512 a[QUAD][4];
        for (unsigned r = 0; r < R; r++)
            for (unsigned u = 0; u < 4; u++) a[r][u] = _mm512_setzero_ps();
        for (unsigned k = 0; k < d / 16; k++) {
            const char *gk = (const char *)(cb + (size_t)k * 16 * K8);
            __m512 v[4];
            for (unsigned u = 0; u < 4; u++) v[u] = chunk(gk, off + (size_t)(i0 + u) * G + k * per, c);
            for (unsigned r = 0; r < R; r++) {
                __m512 qk = _mm512_loadu_ps(q + (size_t)r * d + 16 * k);
                for (unsigned u = 0; u < 4; u++) a[r][u] = _mm512_fmadd_ps(qk, v[u], a[r][u]);
            }
        }
        for (unsigned r = 0; r < R; r++)
            for (unsigned u = 0; u < 4; u++) acc[r][i0 + u] = a[r][u];
    }
    for (unsigned r = 0; r < R; r++) _mm512_storeu_ps(s + (size_t)r * ns, sum16x16(acc[r]));
}

/* Values of 16 tokens (offsets off) for R rows: o[r][16*k0 .. +64) +=
 * sum_i p[r * np + i] v_i. */
INLINE void values16(const uint16_t *off, const float *cb, unsigned c, unsigned d, const float *p, unsigned np,
                     unsigned R, float *o, unsigned k0)
{
    unsigned G = d / c, per = 16 / c;
    __m512 acc[QUAD][4];
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_setzero_ps();
    const char *g0 = (const char *)(cb + (size_t)k0 * 16 * K8);
    for (unsigned i = 0; i < 16; i++) {
        const uint16_t *oi = off + (size_t)i * G + k0 * per;
        __m512 v[4];
        for (unsigned j = 0; j < 4; j++) v[j] = chunk(g0 + (size_t)j * 16 * K8 * sizeof(float), oi + j * per, c);
        for (unsigned r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(p[(size_t)r * np + i]);
            for (unsigned j = 0; j < 4; j++) acc[r][j] = _mm512_fmadd_ps(w, v[j], acc[r][j]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < 4; j++) {
            float *y = o + (size_t)r * d + 16 * (k0 + j);
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_loadu_ps(y), acc[r][j]));
        }
}

/* F(..., c, R, ...) with c and R as constants: one instance each. */
#define CQ8_CASE_R(F, c, R, ...)                         \
    switch (R) {                                         \
    case 1: F(__VA_ARGS__, c, 1); break;                 \
    case 2: F(__VA_ARGS__, c, 2); break;                 \
    case 3: F(__VA_ARGS__, c, 3); break;                 \
    default: F(__VA_ARGS__, c, 4); break;                \
    }
#define CQ8_DISPATCH(F, c, R, ...)                                    \
    switch (c) {                                                      \
    case 2: CQ8_CASE_R(F, 2, R, __VA_ARGS__) break;                   \
    case 4: CQ8_CASE_R(F, 4, R, __VA_ARGS__) break;                   \
    case 8: CQ8_CASE_R(F, 8, R, __VA_ARGS__) break;                   \
    default: CQ8_CASE_R(F, 16, R, __VA_ARGS__) break;                 \
    }

#define SCORES16(off, cb, d, q, s, ns, c, R) scores16(off, cb, c, d, q, R, s, ns)
#define VALUES16(off, cb, d, p, np, o, k0, c, R) values16(off, cb, c, d, p, np, R, o, k0)

/* s[r][t] = q_r . k_t for every row r < rows and token t < L->n. */
void gear_cpu_cq8_scores_avx512(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                const float *q, unsigned rows, float *s)
{
    unsigned d = L->d, n = L->n, c = L->cq_dim, rb = L->cq_row_bytes;
    uint16_t off[16 * 128]; /* G = d/c <= 128 codes a token */
    for (unsigned t0 = 0; t0 < n; t0 += 16) {
        offsets16(blk + L->off_codes + (size_t)t0 * rb, rb, c, off);
        for (unsigned r0 = 0; r0 < rows; r0 += QUAD) {
            unsigned R = rows - r0 < QUAD ? rows - r0 : QUAD;
            CQ8_DISPATCH(SCORES16, c, R, off, cb, d, q + (size_t)r0 * d, s + (size_t)r0 * n + t0, n)
        }
    }
}

/* o[r] += sum over t < L->n of p[r][t] v_t for every row r < rows: 16
 * tokens and 64 channels at a time, four rows' accumulators in
 * registers. */
void gear_cpu_cq8_values_avx512(const gear_block_layout *L, const uint8_t *blk, const float *cb,
                                const float *p, unsigned rows, float *o)
{
    unsigned d = L->d, n = L->n, c = L->cq_dim, rb = L->cq_row_bytes;
    uint16_t off[16 * 128];
    for (unsigned t0 = 0; t0 < n; t0 += 16) {
        offsets16(blk + L->off_codes + (size_t)t0 * rb, rb, c, off);
        for (unsigned k0 = 0; k0 < d / 16; k0 += 4)
            for (unsigned r0 = 0; r0 < rows; r0 += QUAD) {
                unsigned R = rows - r0 < QUAD ? rows - r0 : QUAD;
                CQ8_DISPATCH(VALUES16, c, R, off, cb, d, p + (size_t)r0 * n + t0, n, o + (size_t)r0 * d, k0)
            }
    }
}

/* Full unrolling of the 16-register loops, so that the distances stay in
 * registers (GCC 12 otherwise kept them on the stack, cleared by rep stos). */
#define UNROLL16 _Pragma("GCC unroll 16")

/* The nearest of 256 centroids to x (c <= 16 floats; bit i of skip: channel
 * i is an outlier, left out), cbt: the group's centroids channel-major
 * ([i][k]).  The 256 distances stay in 16 registers, each the same fmaf
 * sequence as gear_cq_nearest's (channels in order, a skipped one adding
 * fmaf(0, 0, dist)); then the smallest as an unsigned bit pattern (the
 * distances are +0, positive or NaN, see cq_argmin in cpu_cq.c) and the
 * first index holding it.  NaN and Inf never win; none finite: 0. */
unsigned gear_cpu_cq8_nearest_avx512(const float *x, uint32_t skip, const float *cbt, unsigned c)
{
    __m512 dv[16];
    UNROLL16 for (unsigned k = 0; k < 16; k++) dv[k] = _mm512_setzero_ps();
    for (unsigned i = 0; i < c; i++) {
        const float *ck = cbt + (size_t)i * K8;
        if (skip >> i & 1u) {
            UNROLL16 for (unsigned k = 0; k < 16; k++) dv[k] = _mm512_fmadd_ps(_mm512_setzero_ps(), _mm512_setzero_ps(), dv[k]);
            continue;
        }
        __m512 xi = _mm512_set1_ps(x[i]);
        UNROLL16 for (unsigned k = 0; k < 16; k++) {
            __m512 e = _mm512_sub_ps(xi, _mm512_loadu_ps(ck + 16 * k));
            dv[k] = _mm512_fmadd_ps(e, e, dv[k]);
        }
    }
    __m512i m = _mm512_castps_si512(dv[0]);
    UNROLL16 for (unsigned k = 1; k < 16; k++) m = _mm512_min_epu32(m, _mm512_castps_si512(dv[k]));
    uint32_t best = _mm512_reduce_min_epu32(m);
    if (best >= 0x7f800000u) return 0;
    __m512i b = _mm512_set1_epi32((int)best);
    UNROLL16 for (unsigned k = 0; k < 16; k++) {
        __mmask16 hit = _mm512_cmpeq_epi32_mask(_mm512_castps_si512(dv[k]), b);
        if (hit) return 16 * k + (unsigned)__builtin_ctz(hit);
    }
    return 0; /* not reached: best is one of them */
}
