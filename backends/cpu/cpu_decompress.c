/*
 * cpu_decompress.c - reconstruction of one block, Q^ + S + A B^T, with the
 * arithmetic of ref (code * scale + min as one fmaf, outliers overwrite,
 * the low-rank sum as an fmaf chain over the rank in order), so codes and
 * outliers decode bit-identically; laid out so the loops vectorize:
 * groups are decoded along their rows, keys transposed in tiles after.
 * CQ blocks decode by centroid lookup (cpu_cq.c), the rest is shared.
 */
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "cpu.h"

/* y[i] = fmaf(x[i], a, b) */
GEAR_CLONES
static void fma_row(float *y, const float *x, float a, float b, unsigned n)
{
    for (unsigned i = 0; i < n; i++) y[i] = fmaf(x[i], a, b);
}

/* out[t][j] += sum_c a[t][c] bt[c][j] (fmaf chain over c from 0, as ref),
 * the chain advanced for a whole row at once so that it vectorizes over j */
GEAR_CLONES
static void lowrank_add(float *out, const float *a, const float *bt, unsigned n, unsigned d, unsigned r,
                        float *s)
{
    for (unsigned t = 0; t < n; t++) {
        float *o = out + (size_t)t * d;
        const float *at = a + (size_t)t * r;
        for (unsigned j = 0; j < d; j++) s[j] = 0.0f;
        for (unsigned c = 0; c < r; c++) {
            const float *b = bt + (size_t)c * d;
            for (unsigned j = 0; j < d; j++) s[j] = fmaf(at[c], b[j], s[j]);
        }
        for (unsigned j = 0; j < d; j++) o[j] += s[j];
    }
}

/* dst (cols x rows) = transpose of src (rows x cols), in 16x16 tiles */
GEAR_CLONES
static void transpose(const float *src, unsigned rows, unsigned cols, float *dst)
{
    for (unsigned r0 = 0; r0 < rows; r0 += 16)
        for (unsigned c0 = 0; c0 < cols; c0 += 16) {
            unsigned r1 = r0 + 16 < rows ? r0 + 16 : rows, c1 = c0 + 16 < cols ? c0 + 16 : cols;
            for (unsigned r = r0; r < r1; r++)
                for (unsigned c = c0; c < c1; c++) dst[(size_t)c * rows + r] = src[(size_t)r * cols + c];
        }
}

/* Q^ of a uniform block (outliers not restored). */
static gear_status decode_uniform(const gear_block_layout *L, const uint8_t *blk, float *out)
{
    size_t nd = (size_t)L->n * L->d;
    /* keys decode along their rows (channels) into tmp, then transpose */
    float *tmp = L->kind == GEAR_KEY ? malloc((nd + 16) * sizeof(float)) : out;
    if (!tmp) return GEAR_ERR_NO_MEMORY;
    float codes[1024]; /* one group's codes at a time */
    for (unsigned row = 0; row < L->rows; row++) {
        const uint8_t *cr = blk + L->off_codes + (size_t)row * L->row_bytes;
        float *dst = tmp + (size_t)row * L->row_len;
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            size_t gi = (size_t)row * L->groups_per_row + g;
            unsigned lo = g * L->group, len = g + 1 == L->groups_per_row ? L->row_len - lo : L->group;
            float dl = gear_half_to_float(cpu_u16(blk + L->off_scales + 2 * gi));
            float mn = gear_half_to_float(cpu_u16(blk + L->off_mins + 2 * gi));
            for (unsigned p = 0; p < len; p += 1024) {
                unsigned m = len - p < 1024 ? len - p : 1024;
                gear_cpu_unpack(cr, L->bits, lo + p, m, codes);
                fma_row(dst + lo + p, codes, dl, mn, m);
            }
        }
    }
    if (L->kind == GEAR_KEY) {
        transpose(tmp, L->rows, L->row_len, out);
        free(tmp);
    }
    return GEAR_OK;
}

gear_status gear_cpu_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                 float *out)
{
    (void)state;
    unsigned n = L->n, d = L->d, r = L->rank;
    if (L->cq_dim) {
        if (!L->codebook) return GEAR_ERR_INVALID_ARG;
        gear_cpu_cq_decode(L, blk, out);
    } else {
        gear_status st = decode_uniform(L, blk, out);
        if (st) return st;
    }
    for (unsigned j = 0; j < L->n_outliers; j++)
        out[cpu_u16(blk + L->off_oidx + 2 * j)] = gear_half_to_float(cpu_u16(blk + L->off_oval + 2 * j));
    if (!r) return GEAR_OK;
    float *a = malloc(sizeof(float) * ((size_t)n * r + (size_t)d * r + d));
    if (!a) return GEAR_ERR_NO_MEMORY;
    float *bt = a + (size_t)n * r, *row = bt + (size_t)d * r;
    for (size_t i = 0; i < (size_t)n * r; i++) a[i] = gear_half_to_float(cpu_u16(blk + L->off_a + 2 * i));
    for (unsigned j = 0; j < d; j++)
        for (unsigned c = 0; c < r; c++)
            bt[(size_t)c * d + j] = gear_half_to_float(cpu_u16(blk + L->off_b + 2 * ((size_t)j * r + c)));
    lowrank_add(out, a, bt, n, d, r, row);
    free(a);
    return GEAR_OK;
}
