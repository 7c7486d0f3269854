/* cache.h - the KV cache object, shared by cache.c and serialize.c. */
#ifndef GEAR_CACHE_H
#define GEAR_CACHE_H

#include "internal.h"
#include "calib.h"

typedef struct gear_layer {
    unsigned tokens;     /* cached tokens: n_blocks*block + buffered */
    unsigned n_blocks;   /* compressed blocks per head, K and V alike */
    unsigned cap_blocks; /* blocks the arenas can hold */
    uint8_t *arena[2];   /* backend memory, [block][head]: K and V block pairs in arena[0] (pairs), else
                          * K blocks in arena[0] and V blocks in arena[1] (gear_cache_block) */
    float *buf[2];       /* K, V: [head][block][d] fp32, host; first tokens%block rows valid */
} gear_layer;

struct gear_cache {
    gear_context *ctx;
    gear_config cfg[2];
    gear_block_layout L[2];
    /* n_head, d: what the blocks store (n_head_in/hc_group heads of hc_dim
     * channels under head compression; else the model's shape) */
    unsigned n_layer, n_head, d, block, max_tokens;
    /* Host backends keep a head's K and V blocks side by side, so that
     * attention reads one stream of memory per thread rather than two
     * (docs/PERF-HISTORY.md, nineteenth session); device backends keep one
     * region per kind, so that an append's blocks of one kind are one
     * transfer (pipeline.c). */
    int pairs;
    unsigned n_head_in, d_in;  /* the model's KV heads and head dim (the API's shapes) */
    gear_layer *layers;
    gear_calib *cal;           /* owned copy of the calibration, or NULL */
    float *cb[2];              /* codebooks in backend memory ([layer][head] x cb_head_floats) */
    float *hc_ut[2];           /* head compression: U transposed, [layer][group][hc_dim][g*d] */
};

/* L[kv] with the codebook of (layer, head): for per-block calls on one
 * head, and, with head 0, for attention over a layer. */
static inline gear_block_layout gear_cache_layout(const gear_cache *c, int kv, unsigned layer,
                                                  unsigned head)
{
    gear_block_layout L = c->L[kv];
    if (L.cq_dim) L.codebook = c->cb[kv] + ((size_t)layer * c->n_head + head) * L.cb_head_floats;
    return L;
}

/* Allocate an empty cache (validating every argument). */
gear_status gear_cache_new(gear_context *ctx, const gear_config *cfg_k, const gear_config *cfg_v,
                           const gear_calib *cal, unsigned n_layer, unsigned n_head_kv,
                           unsigned head_dim, unsigned max_tokens, gear_cache **out);
/* Allocate a layer's buffers if not yet done. */
gear_status gear_cache_buffers(gear_cache *c, gear_layer *ly);
/* Make room for at least want blocks per head in a layer. */
gear_status gear_cache_reserve(gear_cache *c, gear_layer *ly, unsigned want);
/* Bytes from one (block, head) to the next in the arena that holds kind
 * kv.  Block sizes are multiples of GEAR_BLOCK_ALIGN, so every block is
 * aligned to GEAR_BLOCK_ALIGN either way (the kernels ask no more). */
static inline size_t gear_cache_entry_bytes(const gear_cache *c, int kv)
{
    return c->pairs ? c->L[0].bytes + c->L[1].bytes : c->L[kv].bytes;
}

/* Block (blk, head) of kind kv in a layer. */
static inline uint8_t *gear_cache_block(const gear_cache *c, const gear_layer *ly, int kv,
                                        unsigned blk, unsigned head)
{
    size_t at = ((size_t)blk * c->n_head + head) * gear_cache_entry_bytes(c, kv);
    return c->pairs ? ly->arena[0] + at + (kv ? c->L[0].bytes : 0) : ly->arena[kv] + at;
}

#endif
