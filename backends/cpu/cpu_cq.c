/*
 * cpu_cq.c - Coupled Quantization blocks on the cpu: nearest-centroid
 * encode and centroid decode.  Codes are bit-identical to ref: every
 * distance is gear_cq_nearest's arithmetic (fmaf in channel order, a
 * skipped channel adds fmaf(0, 0, acc)), only evaluated for all K
 * centroids of a group at once along a centroid-major codebook copy.
 */
#include <math.h>
#include <string.h>
#include "cpu.h"
#include "cpu_simd.h"

void gear_cpu_cq_transpose(const gear_block_layout *L, const float *cb, float *cbt)
{
    unsigned c = L->cq_dim, K = 1u << L->bits;
    for (unsigned j = 0; j < L->cq_groups; j++) {
        const float *src = cb + (size_t)j * K * c;
        float *dst = cbt + (size_t)j * K * c;
        for (unsigned k = 0; k < K; k++)
            for (unsigned i = 0; i < c; i++) dst[(size_t)i * K + k] = src[(size_t)k * c + i];
    }
}

/* dist[k] for the K centroids of one group (cbt: [i][k]); fmaf stays exact
 * in every clone (a libm call where the ISA has no FMA). */
CPU_INLINE void cq_dists(const float *x, uint32_t skip, const float *cbt, unsigned K, unsigned c,
                         float *restrict dist)
{
    for (unsigned k = 0; k < K; k++) dist[k] = 0.0f;
    for (unsigned i = 0; i < c; i++) {
        const float *ck = cbt + (size_t)i * K;
        if (skip >> i & 1u) {
            for (unsigned k = 0; k < K; k++) dist[k] = fmaf(0.0f, 0.0f, dist[k]);
            continue;
        }
        float xi = x[i];
        for (unsigned k = 0; k < K; k++) {
            float e = xi - ck[k];
            dist[k] = fmaf(e, e, dist[k]);
        }
    }
}

/* First index of the smallest dist, as gear_cq_nearest's strict '<' scan
 * from INFINITY picks it (NaN and Inf never win; none finite: 0).  The
 * distances are sums of squares from +0, so +0, positive or NaN: as
 * unsigned bit patterns a finite one is below INFINITY's and orders as the
 * floats do, and a NaN of either sign is above it.  So: the smallest
 * pattern, then the first index holding it, two integer min-reductions
 * that vectorize (a scan with a float compare kept a branch or a cmov per
 * distance, most of an encode's time). */
CPU_INLINE unsigned cq_argmin(const float *dist, unsigned K)
{
    const uint32_t inf = 0x7f800000u;
    uint32_t u[256], m = inf, best = K;
    memcpy(u, dist, sizeof(float) * K);
    for (unsigned k = 0; k < K; k++) m = u[k] < m ? u[k] : m;
    if (m >= inf) return 0;
    for (unsigned k = 0; k < K; k++) {
        uint32_t x = u[k] == m ? k : K;
        best = x < best ? x : best;
    }
    return best;
}

GEAR_CLONES
static void encode_rows(const gear_block_layout *L, const float *cbt, const float *x, uint8_t *blk,
                        const uint8_t *mask)
{
    unsigned c = L->cq_dim, K = 1u << L->bits, d = L->d, bits = L->bits;
    float dist[256];
#ifdef GEAR_CPU_AVX512
    int fast = gear_cpu_have_avx512 && K == 256 && c <= 16;
#endif
    for (unsigned t = 0; t < L->n; t++) {
        uint8_t *row = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
        memset(row, 0, L->cq_row_bytes);
        for (unsigned j = 0; j < L->cq_groups; j++) {
            size_t base = (size_t)t * d + (size_t)j * c;
            uint32_t skip = 0;
            for (unsigned i = 0; i < c; i++) skip |= (uint32_t)mask[base + i] << i;
            const float *cj = cbt + (size_t)j * K * c;
            unsigned code;
#ifdef GEAR_CPU_AVX512
            if (fast) /* the distances in registers */
                code = gear_cpu_cq8_nearest_avx512(x + base, skip, cj, c);
            else
#endif
            {
                cq_dists(x + base, skip, cj, K, c, dist);
                code = cq_argmin(dist, K);
            }
            size_t bit = (size_t)j * bits;
            row[bit >> 3] |= (uint8_t)(code << (bit & 7));
            if ((bit & 7) + bits > 8) row[(bit >> 3) + 1] |= (uint8_t)(code >> (8 - (bit & 7)));
        }
    }
}

void gear_cpu_cq_encode(const gear_block_layout *L, const float *cbt, const float *x, uint8_t *blk,
                        uint8_t *mask)
{
    memset(mask, 0, (size_t)L->n * L->d);
    for (size_t j = 0; j < L->n_outliers; j++) mask[cpu_u16(blk + L->off_oidx + 2 * j)] = 1;
    encode_rows(L, cbt, x, blk, mask);
}

void gear_cpu_cq_decode(const gear_block_layout *L, const uint8_t *blk, float *out)
{
    unsigned c = L->cq_dim, K = 1u << L->bits;
    for (unsigned t = 0; t < L->n; t++) {
        const uint8_t *row = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
        float *o = out + (size_t)t * L->d;
        for (unsigned j = 0; j < L->cq_groups; j++) {
            unsigned code = cpu_code_get(row, L->bits, j);
            memcpy(o + (size_t)j * c, L->codebook + ((size_t)j * K + code) * c, sizeof(float) * c);
        }
    }
}
