/* cache.h - the KV cache object, shared by cache.c and serialize.c. */
#ifndef GEAR_CACHE_H
#define GEAR_CACHE_H

#include "internal.h"

typedef struct gear_layer {
    unsigned tokens;     /* cached tokens: n_blocks*block + buffered */
    unsigned n_blocks;   /* compressed blocks per head, K and V alike */
    unsigned cap_blocks; /* blocks the arenas can hold */
    uint8_t *arena[2];   /* K, V: [block][head] blocks of L[kv].bytes, backend memory */
    float *buf[2];       /* K, V: [head][block][d] fp32, host; first tokens%block rows valid */
} gear_layer;

struct gear_cache {
    gear_context *ctx;
    gear_config cfg[2];
    gear_block_layout L[2];
    unsigned n_layer, n_head, d, block, max_tokens;
    gear_layer *layers;
};

/* Allocate an empty cache (validating every argument). */
gear_status gear_cache_new(gear_context *ctx, const gear_config *cfg_k, const gear_config *cfg_v,
                           unsigned n_layer, unsigned n_head_kv, unsigned head_dim,
                           unsigned max_tokens, gear_cache **out);
/* Allocate a layer's buffers if not yet done. */
gear_status gear_cache_buffers(gear_cache *c, gear_layer *ly);
/* Make room for at least want blocks per head in a layer. */
gear_status gear_cache_reserve(gear_cache *c, gear_layer *ly, unsigned want);
/* Block (blk, head) of kind kv in a layer. */
static inline uint8_t *gear_cache_block(const gear_cache *c, const gear_layer *ly, int kv,
                                        unsigned blk, unsigned head)
{
    return ly->arena[kv] + ((size_t)blk * c->n_head + head) * c->L[kv].bytes;
}

#endif
