/* ref.h - the reference backend: portable scalar C that defines the
 * semantics of every primitive (DESIGN s2) and is the oracle of the tests. */
#ifndef GEAR_REF_H
#define GEAR_REF_H

#include <gear/backend.h>

gear_status gear_ref_outlier_select(void *state, const gear_block_layout *L, const float *x,
                                    uint8_t *blk);
gear_status gear_ref_quantize(void *state, const gear_block_layout *L, const float *x,
                              uint8_t *blk);
gear_status gear_ref_dequantize(void *state, const gear_block_layout *L, const uint8_t *blk,
                                float *xq);
gear_status gear_ref_lowrank_fit(void *state, const gear_block_layout *L, const gear_block_id *id,
                                 const float *x, const float *xq, uint8_t *blk);
gear_status gear_ref_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                 float *out);

/* Coupled Quantization codes (ref_cq.c); quantize/dequantize dispatch here
 * when L->cq_dim > 0. */
gear_status gear_ref_cq_quantize(const gear_block_layout *L, const float *x, uint8_t *blk);
gear_status gear_ref_cq_dequantize(const gear_block_layout *L, const uint8_t *blk, float *xq);

#endif
