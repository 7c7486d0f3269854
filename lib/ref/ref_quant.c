/* ref_quant.c - reference outlier selection, group quantization and
 * dequantization (DESIGN s2), one block at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ref/ref.h"

/* Flat (token-major) index of position p in quantization row r. */
static unsigned flat_index(const gear_block_layout *L, unsigned r, unsigned p)
{
    return L->kind == GEAR_KEY ? p * L->d + r : r * L->d + p;
}

typedef struct cand { float v; unsigned pos; } cand;

/* Largest first; ties: lower position first. */
static int by_value_desc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Smallest first; ties: lower position first. */
static int by_value_asc(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int by_pos(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

gear_status gear_ref_outlier_select(void *state, const gear_block_layout *L, const float *x,
                                    uint8_t *blk)
{
    (void)state;
    if (!L->n_outliers) return GEAR_OK;
    cand *c = malloc(sizeof *c * L->group);
    if (!c) return gear_fail(GEAR_ERR_NO_MEMORY, "ref: outlier scratch");
    uint8_t *oidx = blk + L->off_oidx, *oval = blk + L->off_oval;
    size_t j = 0;
    for (unsigned r = 0; r < L->rows; r++) {
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            unsigned last = g + 1 == L->groups_per_row;
            unsigned m = last ? L->tail_len : L->group, k = last ? L->k_tail : L->k_full;
            if (!k) continue;
            for (unsigned i = 0; i < m; i++) {
                c[i].pos = g * L->group + i;
                c[i].v = x[flat_index(L, r, c[i].pos)];
            }
            qsort(c, m, sizeof *c, by_value_desc);      /* c[0..k) = largest k */
            qsort(c + k, m - k, sizeof *c, by_value_asc); /* c[k..2k) = smallest k */
            qsort(c, 2 * k, sizeof *c, by_pos);
            for (unsigned i = 0; i < 2 * k; i++, j++) {
                unsigned f = flat_index(L, r, c[i].pos);
                gear_put_u16(oidx + 2 * j, (uint16_t)f);
                gear_put_u16(oval + 2 * j, gear_float_to_half(x[f]));
            }
        }
    }
    free(c);
    return GEAR_OK;
}

/* Mark the outlier positions of one row (positions within the row). */
static void row_outlier_mask(const gear_block_layout *L, const uint8_t *blk, unsigned r,
                             unsigned char *mask)
{
    memset(mask, 0, L->row_len);
    const uint8_t *oidx = blk + L->off_oidx + 2 * (size_t)r * L->outliers_per_row;
    for (unsigned i = 0; i < L->outliers_per_row; i++) {
        unsigned f = gear_get_u16(oidx + 2 * i);
        mask[L->kind == GEAR_KEY ? f / L->d : f % L->d] = 1;
    }
}

gear_status gear_ref_quantize(void *state, const gear_block_layout *L, const float *x,
                              uint8_t *blk)
{
    (void)state;
    if (L->cq_dim) return gear_ref_cq_quantize(L, x, blk);
    unsigned char *mask = malloc(L->row_len);
    if (!mask) return gear_fail(GEAR_ERR_NO_MEMORY, "ref: quantize scratch");
    const unsigned levels = (1u << L->bits) - 1u;
    for (unsigned r = 0; r < L->rows; r++) {
        uint8_t *row = blk + L->off_codes + (size_t)r * L->row_bytes;
        memset(row, 0, L->row_bytes);
        row_outlier_mask(L, blk, r, mask);
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            unsigned lo = g * L->group;
            unsigned hi = g + 1 == L->groups_per_row ? L->row_len : lo + L->group;
            float mn = INFINITY, mx = -INFINITY;
            for (unsigned p = lo; p < hi; p++) {
                if (mask[p]) continue;
                float v = x[flat_index(L, r, p)];
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
            }
            if (mn > mx) mn = mx = 0.0f; /* every entry is an outlier */
            uint16_t mn_h, dl_h;
            gear_group_params(mn, mx, levels, &mn_h, &dl_h);
            float mnf = gear_half_to_float(mn_h), dl = gear_half_to_float(dl_h);
            size_t gi = (size_t)r * L->groups_per_row + g;
            gear_put_u16(blk + L->off_scales + 2 * gi, dl_h);
            gear_put_u16(blk + L->off_mins + 2 * gi, mn_h);
            if (dl == 0.0f) continue; /* constant group: all codes 0 */
            for (unsigned p = lo; p < hi; p++) {
                if (mask[p]) continue;
                float q = rintf((x[flat_index(L, r, p)] - mnf) / dl);
                unsigned code = q <= 0.0f ? 0u : q >= (float)levels ? levels : (unsigned)q;
                size_t bit = (size_t)p * L->bits;
                row[bit >> 3] |= (uint8_t)(code << (bit & 7));
                if ((bit & 7) + L->bits > 8) row[(bit >> 3) + 1] |= (uint8_t)(code >> (8 - (bit & 7)));
            }
        }
    }
    free(mask);
    return GEAR_OK;
}

gear_status gear_ref_dequantize(void *state, const gear_block_layout *L, const uint8_t *blk,
                                float *xq)
{
    (void)state;
    if (L->cq_dim) return gear_ref_cq_dequantize(L, blk, xq);
    for (unsigned r = 0; r < L->rows; r++) {
        const uint8_t *row = blk + L->off_codes + (size_t)r * L->row_bytes;
        for (unsigned g = 0; g < L->groups_per_row; g++) {
            size_t gi = (size_t)r * L->groups_per_row + g;
            float dl = gear_half_to_float(gear_get_u16(blk + L->off_scales + 2 * gi));
            float mn = gear_half_to_float(gear_get_u16(blk + L->off_mins + 2 * gi));
            unsigned lo = g * L->group;
            unsigned hi = g + 1 == L->groups_per_row ? L->row_len : lo + L->group;
            for (unsigned p = lo; p < hi; p++)
                xq[flat_index(L, r, p)] = fmaf((float)gear_code_get(row, L->bits, p), dl, mn);
        }
    }
    const uint8_t *oidx = blk + L->off_oidx, *oval = blk + L->off_oval;
    for (size_t j = 0; j < L->n_outliers; j++)
        xq[gear_get_u16(oidx + 2 * j)] = gear_half_to_float(gear_get_u16(oval + 2 * j));
    return GEAR_OK;
}
