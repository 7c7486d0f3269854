/*
 * pipeline.c - one block through a backend: the GEAR recipe composed from
 * the backend's primitives (or its fused slot), and reconstruction.
 * Blocks live in backend memory; x and out are host fp32 n x d.
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* Scratch in backend memory, or host memory for host backends. */
static gear_status dev_alloc(gear_context *ctx, size_t bytes, void **p)
{
    return ctx->be->mem_alloc(ctx->state, bytes, p);
}

/* Write the header and CRC of a block in backend memory. */
static gear_status seal(gear_context *ctx, const gear_block_layout *L, uint8_t *blk)
{
    const struct gear_backend_i *be = ctx->be;
    if (!be->on_device) {
        gear_block_seal(L, blk);
        return GEAR_OK;
    }
    uint8_t *h = malloc(L->bytes);
    if (!h) return gear_fail(GEAR_ERR_NO_MEMORY, "seal staging");
    gear_status st = be->mem_copy(ctx->state, h, blk, L->bytes, GEAR_COPY_D2H);
    if (!st) {
        gear_block_seal(L, h);
        st = be->mem_copy(ctx->state, blk, h, L->bytes, GEAR_COPY_H2D);
    }
    free(h);
    return st;
}

/* Copy host data to backend memory (allocating there), or alias it. */
static gear_status to_backend(gear_context *ctx, const void *src, size_t bytes, void **dst)
{
    if (!ctx->be->on_device) {
        *dst = (void *)src;
        return GEAR_OK;
    }
    gear_status st = dev_alloc(ctx, bytes, dst);
    if (st) return st;
    st = ctx->be->mem_copy(ctx->state, *dst, src, bytes, GEAR_COPY_H2D);
    if (st) {
        ctx->be->mem_free(ctx->state, *dst);
        *dst = NULL;
    }
    return st;
}

static void backend_release(gear_context *ctx, const void *host, void *p)
{
    if (p && p != host) ctx->be->mem_free(ctx->state, p);
}

/* Fill a block in backend memory from a host buffer of the same size. */
static gear_status upload(gear_context *ctx, uint8_t *blk, const void *h, size_t bytes)
{
    return ctx->be->mem_copy(ctx->state, blk, h, bytes,
                             ctx->be->on_device ? GEAR_COPY_H2D : GEAR_COPY_H2H);
}

/* Compress one block with the required primitives. */
static gear_status compress_primitives(gear_context *ctx, const gear_block_layout *L,
                                       const gear_block_id *id, const float *xd, uint8_t *blk)
{
    const struct gear_backend_i *be = ctx->be;
    gear_status st = be->outlier_select(ctx->state, L, xd, blk);
    if (!st) st = be->quantize(ctx->state, L, xd, blk);
    if (!st && L->rank) {
        void *xq;
        st = dev_alloc(ctx, (size_t)L->n * L->d * sizeof(float), &xq);
        if (st) return st;
        st = be->dequantize(ctx->state, L, blk, xq);
        if (!st) st = be->lowrank_fit(ctx->state, L, id, xd, xq, blk);
        be->mem_free(ctx->state, xq);
    }
    return st;
}

/* The fused slot, or, when there is none or it declines the layout
 * (GEAR_ERR_UNSUPPORTED), the primitives; inputs already in backend memory. */
static gear_status compress_staged(gear_context *ctx, const gear_block_layout *L, unsigned count,
                                   const gear_block_id *ids, const float *const *xd,
                                   uint8_t *const *blk)
{
    const struct gear_backend_i *be = ctx->be;
    if (be->compress_blocks) {
        gear_status st = gear_backend_failed(
            ctx, be->compress_blocks(ctx->state, L, count, ids, xd, blk), "compressing blocks");
        if (st != GEAR_ERR_UNSUPPORTED) return st;
    }
    gear_status st = GEAR_OK;
    for (unsigned i = 0; i < count && !st; i++)
        st = compress_primitives(ctx, L, &ids[i], xd[i], blk[i]);
    return st;
}

/* blk[0..count) one after another in memory (as a cache's arena holds the
 * blocks of one append): then each staging step is one transfer. */
static int contiguous(uint8_t *const *blk, unsigned count, size_t bytes)
{
    for (unsigned i = 1; i < count; i++)
        if (blk[i] != blk[0] + (size_t)i * bytes) return 0;
    return 1;
}

/* Header and CRC of count contiguous device blocks: one copy each way. */
static gear_status seal_run(gear_context *ctx, const gear_block_layout *L, uint8_t *blk,
                            unsigned count)
{
    const struct gear_backend_i *be = ctx->be;
    size_t total = (size_t)count * L->bytes; /* the arena holds them: no overflow */
    uint8_t *h = malloc(total);
    if (!h) return gear_fail(GEAR_ERR_NO_MEMORY, "seal staging");
    gear_status st = be->mem_copy(ctx->state, h, blk, total, GEAR_COPY_D2H);
    for (unsigned i = 0; i < count && !st; i++) gear_block_seal(L, h + (size_t)i * L->bytes);
    if (!st) st = be->mem_copy(ctx->state, blk, h, total, GEAR_COPY_H2D);
    free(h);
    return st;
}

/* Device backends: stage every input block in one allocation and one
 * upload, zero the destination blocks in one upload when they are
 * contiguous, and seal them with one copy each way; a GPU then pays a few
 * transfers per append instead of several per block. */
static gear_status compress_batch_device(gear_context *ctx, const gear_block_layout *L,
                                         unsigned count, const gear_block_id *ids,
                                         const float *const *x, uint8_t *const *blk)
{
    const struct gear_backend_i *be = ctx->be;
    size_t nd = (size_t)L->n * L->d, in_bytes, out_bytes;
    if (!gear_mul_ok((size_t)count, nd * sizeof(float), &in_bytes) ||
        !gear_mul_ok((size_t)count, L->bytes, &out_bytes))
        return gear_fail(GEAR_ERR_OVERFLOW, "compress staging size overflows");
    int run = contiguous(blk, count, L->bytes);
    uint8_t *h = calloc(1, run ? out_bytes : L->bytes);
    float *hx = malloc(in_bytes);
    const float **xd = malloc(sizeof *xd * count);
    void *dx = NULL;
    gear_status st = GEAR_OK;
    if (!h || !hx || !xd) st = gear_fail(GEAR_ERR_NO_MEMORY, "block staging");
    /* zero every block so that padding is the same on every backend */
    if (!st && run) st = be->mem_copy(ctx->state, blk[0], h, out_bytes, GEAR_COPY_H2D);
    for (unsigned i = 0; i < count && !st && !run; i++)
        st = be->mem_copy(ctx->state, blk[i], h, L->bytes, GEAR_COPY_H2D);
    for (unsigned i = 0; i < count && !st; i++) memcpy(hx + i * nd, x[i], nd * sizeof(float));
    if (!st) st = dev_alloc(ctx, in_bytes, &dx);
    if (!st) st = be->mem_copy(ctx->state, dx, hx, in_bytes, GEAR_COPY_H2D);
    for (unsigned i = 0; i < count && !st; i++) xd[i] = (const float *)dx + i * nd;
    if (!st) st = compress_staged(ctx, L, count, ids, xd, blk);
    if (!st && run) st = seal_run(ctx, L, blk[0], count);
    for (unsigned i = 0; i < count && !st && !run; i++) st = seal(ctx, L, blk[i]);
    if (dx) be->mem_free(ctx->state, dx);
    free(h);
    free(hx);
    free(xd);
    return st;
}

static gear_status pipeline_compress_batch_nearest(gear_context *ctx, const gear_block_layout *L,
                                                   unsigned count, const gear_block_id *ids,
                                                   const float *const *x, uint8_t *const *blk)
{
    const struct gear_backend_i *be = ctx->be;
    size_t nd = (size_t)L->n * L->d;
    gear_status st = GEAR_OK;
    if (L->cq_dim && !L->codebook)
        return gear_fail(GEAR_ERR_INVALID_ARG, "a Coupled Quantization block needs a codebook");
    if (!count) return GEAR_OK;
    if (be->on_device && L->bits) return compress_batch_device(ctx, L, count, ids, x, blk);
    uint8_t *h = calloc(1, L->bytes);
    if (!h) return gear_fail(GEAR_ERR_NO_MEMORY, "block staging");
    if (L->bits == 0) { /* raw blocks are packed by the core */
        for (unsigned i = 0; i < count && !st; i++) {
            gear_block_pack_raw(L, x[i], h);
            gear_block_seal(L, h);
            st = upload(ctx, blk[i], h, L->bytes);
        }
        free(h);
        return st;
    }
    /* Zero every block so that padding is the same on every backend. */
    for (unsigned i = 0; i < count && !st; i++) st = upload(ctx, blk[i], h, L->bytes);
    free(h);
    if (st) return st;
    const float **xd = malloc(sizeof *xd * (count ? count : 1));
    if (!xd) return gear_fail(GEAR_ERR_NO_MEMORY, "block staging");
    unsigned staged = 0;
    for (; staged < count && !st; staged++)
        st = to_backend(ctx, x[staged], nd * sizeof(float), (void **)&xd[staged]);
    if (st) staged--; /* the failed one holds nothing */
    if (!st) st = compress_staged(ctx, L, count, ids, xd, blk);
    for (unsigned i = 0; i < count && !st; i++) st = seal(ctx, L, blk[i]);
    for (unsigned i = 0; i < staged; i++) backend_release(ctx, x[i], (void *)xd[i]);
    free(xd);
    return st;
}

/* The codec entry points below run their backend in round-to-nearest
 * (gear_round_nearest, gear/backend.h), whatever the caller's mode. */
gear_status gear_pipeline_compress_batch(gear_context *ctx, const gear_block_layout *L,
                                         unsigned count, const gear_block_id *ids,
                                         const float *const *x, uint8_t *const *blk)
{
    int mode = gear_round_nearest();
    gear_status st = pipeline_compress_batch_nearest(ctx, L, count, ids, x, blk);
    gear_round_restore(mode);
    return st;
}

gear_status gear_pipeline_compress(gear_context *ctx, const gear_block_layout *L,
                                   const gear_block_id *id, const float *x, uint8_t *blk)
{
    return gear_pipeline_compress_batch(ctx, L, 1, id, &x, &blk);
}

static gear_status pipeline_reconstruct_nearest(gear_context *ctx, const gear_block_layout *L,
                                                const uint8_t *blk, float *out)
{
    const struct gear_backend_i *be = ctx->be;
    size_t nd = (size_t)L->n * L->d;
    gear_status st;
    if (L->bits == 0) {
        if (!be->on_device) {
            gear_block_unpack_raw(L, blk, out);
            return GEAR_OK;
        }
        uint8_t *h = malloc(L->bytes);
        if (!h) return gear_fail(GEAR_ERR_NO_MEMORY, "raw block staging");
        st = be->mem_copy(ctx->state, h, blk, L->bytes, GEAR_COPY_D2H);
        if (!st) gear_block_unpack_raw(L, h, out);
        free(h);
        return st;
    }
    if (L->cq_dim && !L->codebook)
        return gear_fail(GEAR_ERR_INVALID_ARG, "a Coupled Quantization block needs a codebook");
    if (!be->on_device) return be->reconstruct(ctx->state, L, blk, out);
    void *od;
    st = dev_alloc(ctx, nd * sizeof(float), &od);
    if (st) return st;
    st = be->reconstruct(ctx->state, L, blk, od);
    if (!st) st = be->mem_copy(ctx->state, out, od, nd * sizeof(float), GEAR_COPY_D2H);
    be->mem_free(ctx->state, od);
    return st;
}

gear_status gear_pipeline_reconstruct(gear_context *ctx, const gear_block_layout *L,
                                      const uint8_t *blk, float *out)
{
    int mode = gear_round_nearest();
    gear_status st = pipeline_reconstruct_nearest(ctx, L, blk, out);
    gear_round_restore(mode);
    return st;
}

static gear_status pipeline_reconstruct_batch_nearest(gear_context *ctx, const gear_block_layout *L,
                                                      unsigned count, const uint8_t *const *blk, float *out)
{
    const struct gear_backend_i *be = ctx->be;
    size_t nd = (size_t)L->n * L->d;
    if (be->on_device || !be->reconstruct_blocks || !L->bits || (L->cq_dim && !L->codebook)) {
        gear_status st = GEAR_OK;
        for (unsigned i = 0; i < count && !st; i++)
            st = gear_pipeline_reconstruct(ctx, L, blk[i], out + i * nd);
        return st;
    }
    float **outs = malloc(sizeof *outs * (count ? count : 1));
    if (!outs) return gear_fail(GEAR_ERR_NO_MEMORY, "reconstruct batch");
    for (unsigned i = 0; i < count; i++) outs[i] = out + i * nd;
    gear_status st = gear_backend_failed(ctx, be->reconstruct_blocks(ctx->state, L, count, blk, outs),
                                         "reconstructing blocks");
    free(outs);
    return st;
}

gear_status gear_pipeline_reconstruct_batch(gear_context *ctx, const gear_block_layout *L,
                                            unsigned count, const uint8_t *const *blk, float *out)
{
    int mode = gear_round_nearest();
    gear_status st = pipeline_reconstruct_batch_nearest(ctx, L, count, blk, out);
    gear_round_restore(mode);
    return st;
}

static int raw_f16(const gear_block_layout *L) { return !L->bits && L->raw_dtype == GEAR_F16; }

int gear_pipeline_has_f16_out(const gear_context *ctx, const gear_block_layout *L)
{
    const struct gear_backend_i *be = ctx->be;
    if (be->on_device) return 0;
    return raw_f16(L) || (be->reconstruct_blocks_f16 && L->bits && !(L->cq_dim && !L->codebook));
}

static gear_status pipeline_reconstruct_f16_nearest(gear_context *ctx, const gear_block_layout *L,
                                                    unsigned count, const uint8_t *const *blk,
                                                    uint16_t *const *out, size_t ld)
{
    const struct gear_backend_i *be = ctx->be;
    if (!gear_pipeline_has_f16_out(ctx, L)) return GEAR_ERR_UNSUPPORTED;
    if (raw_f16(L)) { /* the fp16 preset: its stored rows, copied */
        for (unsigned i = 0; i < count; i++) gear_block_raw_f16_rows(L, blk[i], out[i], ld);
        return GEAR_OK;
    }
    gear_status st = be->reconstruct_blocks_f16(ctx->state, L, count, blk, out, ld);
    if (st && st != GEAR_ERR_UNSUPPORTED) st = gear_backend_failed(ctx, st, "reconstructing blocks");
    return st;
}

gear_status gear_pipeline_reconstruct_f16(gear_context *ctx, const gear_block_layout *L,
                                          unsigned count, const uint8_t *const *blk,
                                          uint16_t *const *out, size_t ld)
{
    int mode = gear_round_nearest();
    gear_status st = pipeline_reconstruct_f16_nearest(ctx, L, count, blk, out, ld);
    gear_round_restore(mode);
    return st;
}

gear_status gear_pipeline_compress_host(gear_context *ctx, const gear_block_layout *L,
                                        unsigned count, const gear_block_id *ids,
                                        const float *const *x, uint8_t *hblk)
{
    size_t total;
    if (!gear_mul_ok((size_t)count, L->bytes, &total))
        return gear_fail(GEAR_ERR_OVERFLOW, "compress batch size overflows");
    int dev = ctx->be->on_device;
    uint8_t **blk = calloc(count ? count : 1, sizeof *blk), *d = NULL;
    if (!blk) return gear_fail(GEAR_ERR_NO_MEMORY, "compress batch");
    gear_status st = dev ? dev_alloc(ctx, total, (void **)&d) : GEAR_OK;
    for (unsigned i = 0; i < count && !st; i++) blk[i] = (dev ? d : hblk) + (size_t)i * L->bytes;
    if (!st) st = gear_pipeline_compress_batch(ctx, L, count, ids, x, blk);
    if (!st && dev) st = ctx->be->mem_copy(ctx->state, hblk, d, total, GEAR_COPY_D2H);
    if (d) ctx->be->mem_free(ctx->state, d);
    free(blk);
    return st;
}

static gear_status pipeline_compress_f16_nearest(gear_context *ctx, const gear_block_layout *L,
                                                 unsigned count, const gear_block_id *ids,
                                                 const uint16_t *const *x, size_t ld, uint8_t *const *blk)
{
    const struct gear_backend_i *be = ctx->be;
    if (!be->on_device && raw_f16(L)) { /* fp16 kept as it is */
        for (unsigned i = 0; i < count; i++) {
            memset(blk[i], 0, L->bytes);
            for (unsigned t = 0; t < L->n; t++)
                if (!gear_halves_store_finite(x[i] + (size_t)t * ld, L->d, blk[i] + L->off_raw + 2 * (size_t)t * L->d))
                    return GEAR_ERR_NONFINITE; /* the caller stages and reports the position */
            gear_block_seal(L, blk[i]);
        }
        return GEAR_OK;
    }
    if (be->on_device || !be->compress_blocks_f16 || !L->bits || (L->cq_dim && !L->codebook))
        return GEAR_ERR_UNSUPPORTED;
    for (unsigned i = 0; i < count; i++) memset(blk[i], 0, L->bytes); /* same padding everywhere */
    gear_status st = be->compress_blocks_f16(ctx->state, L, count, ids, x, ld, blk);
    if (st && st != GEAR_ERR_UNSUPPORTED && st != GEAR_ERR_NONFINITE)
        st = gear_backend_failed(ctx, st, "compressing blocks");
    for (unsigned i = 0; i < count && !st; i++) gear_block_seal(L, blk[i]);
    return st;
}

gear_status gear_pipeline_compress_f16(gear_context *ctx, const gear_block_layout *L,
                                       unsigned count, const gear_block_id *ids,
                                       const uint16_t *const *x, size_t ld, uint8_t *const *blk)
{
    int mode = gear_round_nearest();
    gear_status st = pipeline_compress_f16_nearest(ctx, L, count, ids, x, ld, blk);
    gear_round_restore(mode);
    return st;
}

gear_status gear_pipeline_compress_rows(gear_context *ctx, const gear_block_layout *L, unsigned count,
                                        const gear_block_id *ids, const void *const *x, gear_dtype dtype,
                                        size_t ld, uint8_t *const *blk)
{
    const struct gear_backend_i *be = ctx->be;
    if (be->on_device || !be->compress_blocks_rows || !L->bits || (L->cq_dim && !L->codebook) ||
        (dtype != GEAR_F32 && dtype != GEAR_BF16))
        return GEAR_ERR_UNSUPPORTED;
    int mode = gear_round_nearest();
    for (unsigned i = 0; i < count; i++) memset(blk[i], 0, L->bytes); /* same padding everywhere */
    gear_status st = be->compress_blocks_rows(ctx->state, L, count, ids, x, dtype, ld, blk);
    if (st && st != GEAR_ERR_UNSUPPORTED && st != GEAR_ERR_NONFINITE && st != GEAR_ERR_RANGE)
        st = gear_backend_failed(ctx, st, "compressing blocks");
    for (unsigned i = 0; i < count && !st; i++) gear_block_seal(L, blk[i]);
    gear_round_restore(mode);
    return st;
}

gear_status gear_pipeline_reconstruct_host(gear_context *ctx, const gear_block_layout *L,
                                           const uint8_t *hblk, float *out)
{
    void *d;
    gear_status st = to_backend(ctx, hblk, L->bytes, &d);
    if (!st) st = gear_pipeline_reconstruct(ctx, L, d, out);
    backend_release(ctx, hblk, d);
    return st;
}
