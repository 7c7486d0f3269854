/* ref_lowrank.c - reference power iteration for the low-rank part L = A B^T
 * of the quantization error, and full reconstruction (DESIGN s2). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ref/ref.h"

gear_status gear_ref_lowrank_fit(void *state, const gear_block_layout *L, const gear_block_id *id,
                                 const float *x, const float *xq, uint8_t *blk)
{
    (void)state;
    unsigned n = L->n, d = L->d, r = L->rank;
    if (!r) return GEAR_OK;
    size_t nd = (size_t)n * d;
    double *E = malloc(sizeof *E * nd), *Y = malloc(sizeof *Y * n * r),
           *P = malloc(sizeof *P * d * r);
    if (!E || !Y || !P) {
        free(E); free(Y); free(P);
        return gear_fail(GEAR_ERR_NO_MEMORY, "ref: low-rank scratch");
    }
    for (size_t i = 0; i < nd; i++) E[i] = (double)x[i] - (double)xq[i];
    const uint8_t *oidx = blk + L->off_oidx;
    for (size_t j = 0; j < L->n_outliers; j++) E[gear_get_u16(oidx + 2 * j)] = 0.0;

    uint64_t key = gear_rng_key(id->seed, id->layer, id->head, id->block, L->kind);
    for (unsigned j = 0; j < d; j++)
        for (unsigned c = 0; c < r; c++) P[j * r + c] = gear_rng_uniform(key, j * r + c);

    for (unsigned it = 0; it < L->iters; it++) {
        /* Y = E P */
        memset(Y, 0, sizeof *Y * n * r);
        for (unsigned t = 0; t < n; t++)
            for (unsigned j = 0; j < d; j++) {
                double e = E[(size_t)t * d + j];
                for (unsigned c = 0; c < r; c++) Y[t * r + c] += e * P[j * r + c];
            }
        gear_orthonormalize(Y, n, r);
        /* P = E^T Y */
        memset(P, 0, sizeof *P * d * r);
        for (unsigned t = 0; t < n; t++)
            for (unsigned j = 0; j < d; j++) {
                double e = E[(size_t)t * d + j];
                for (unsigned c = 0; c < r; c++) P[j * r + c] += e * Y[t * r + c];
            }
    }
    for (size_t i = 0; i < (size_t)n * r; i++)
        gear_put_u16(blk + L->off_a + 2 * i, gear_half_sat((float)Y[i]));
    for (size_t i = 0; i < (size_t)d * r; i++)
        gear_put_u16(blk + L->off_b + 2 * i, gear_half_sat((float)P[i]));
    free(E); free(Y); free(P);
    return GEAR_OK;
}

gear_status gear_ref_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                 float *out)
{
    gear_status st = gear_ref_dequantize(state, L, blk, out);
    if (st || !L->rank) return st;
    unsigned n = L->n, d = L->d, r = L->rank;
    for (unsigned t = 0; t < n; t++) {
        float a[256];
        for (unsigned c = 0; c < r; c++)
            a[c] = gear_half_to_float(gear_get_u16(blk + L->off_a + 2 * ((size_t)t * r + c)));
        for (unsigned j = 0; j < d; j++) {
            const uint8_t *b = blk + L->off_b + 2 * (size_t)j * r;
            float s = 0.0f;
            for (unsigned c = 0; c < r; c++) s = fmaf(a[c], gear_half_to_float(gear_get_u16(b + 2 * c)), s);
            out[(size_t)t * d + j] += s;
        }
    }
    return GEAR_OK;
}
