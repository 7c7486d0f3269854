/* ref_cq.c - reference Coupled Quantization codes (arXiv 2405.03917): each
 * token's channels in groups of c, each group stored as the index of its
 * nearest centroid (gear_cq_nearest), outlier channels skipped. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"
#include "ref/ref.h"

/* mask[t*d + ch] = 1 at the block's outliers. */
static unsigned char *outlier_mask(const gear_block_layout *L, const uint8_t *blk)
{
    unsigned char *mask = calloc((size_t)L->n * L->d, 1);
    if (!mask) return NULL;
    for (size_t j = 0; j < L->n_outliers; j++) mask[gear_get_u16(blk + L->off_oidx + 2 * j)] = 1;
    return mask;
}

gear_status gear_ref_cq_quantize(const gear_block_layout *L, const float *x, uint8_t *blk)
{
    if (!L->codebook) return gear_fail(GEAR_ERR_INVALID_ARG, "ref: CQ block without a codebook");
    unsigned char *mask = outlier_mask(L, blk);
    if (!mask) return gear_fail(GEAR_ERR_NO_MEMORY, "ref: CQ scratch");
    unsigned c = L->cq_dim, K = 1u << L->bits;
    for (unsigned t = 0; t < L->n; t++) {
        uint8_t *row = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
        memset(row, 0, L->cq_row_bytes);
        for (unsigned j = 0; j < L->cq_groups; j++) {
            size_t base = (size_t)t * L->d + (size_t)j * c;
            uint32_t skip = 0;
            for (unsigned i = 0; i < c; i++) skip |= (uint32_t)mask[base + i] << i;
            unsigned code = gear_cq_nearest(x + base, skip, L->codebook + (size_t)j * K * c, K, c);
            size_t bit = (size_t)j * L->bits;
            row[bit >> 3] |= (uint8_t)(code << (bit & 7));
            if ((bit & 7) + L->bits > 8) row[(bit >> 3) + 1] |= (uint8_t)(code >> (8 - (bit & 7)));
        }
    }
    free(mask);
    return GEAR_OK;
}

gear_status gear_ref_cq_dequantize(const gear_block_layout *L, const uint8_t *blk, float *xq)
{
    if (!L->codebook) return gear_fail(GEAR_ERR_INVALID_ARG, "ref: CQ block without a codebook");
    unsigned c = L->cq_dim, K = 1u << L->bits;
    for (unsigned t = 0; t < L->n; t++) {
        const uint8_t *row = blk + L->off_codes + (size_t)t * L->cq_row_bytes;
        for (unsigned j = 0; j < L->cq_groups; j++) {
            unsigned code = gear_code_get(row, L->bits, j);
            memcpy(xq + (size_t)t * L->d + (size_t)j * c,
                   L->codebook + ((size_t)j * K + code) * c, sizeof(float) * c);
        }
    }
    const uint8_t *oidx = blk + L->off_oidx, *oval = blk + L->off_oval;
    for (size_t j = 0; j < L->n_outliers; j++)
        xq[gear_get_u16(oidx + 2 * j)] = gear_half_to_float(gear_get_u16(oval + 2 * j));
    return GEAR_OK;
}
