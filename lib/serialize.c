/*
 * serialize.c - saving and loading a whole cache (docs/FORMAT.md "Cache").
 * Loading treats its input as untrusted: every field, size and block is
 * checked, and any defect gives a GEAR_ERR_FORMAT_* status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cache.h"

#define CACHE_MAGIC "GEARCACH"
#define CACHE_VERSION 1u
#define CACHE_HEADER 112u
#define LAYER_MAGIC "LAYR"
#define LAYER_HEADER 16u

typedef gear_sink sink;
#define put gear_sink_put

/* Copy a block out of backend memory into host staging, then to the sink. */
static gear_status put_block(const gear_cache *c, sink *s, const uint8_t *blk, size_t bytes,
                             uint8_t *stage)
{
    const struct gear_backend_i *be = c->ctx->be;
    if (be->on_device) {
        gear_status st = be->mem_copy(c->ctx->state, stage, blk, bytes, GEAR_COPY_D2H);
        if (st) return st;
        blk = stage;
    }
    put(s, blk, bytes);
    return GEAR_OK;
}

static gear_status write_cache(const gear_cache *c, sink *s)
{
    uint8_t h[CACHE_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, CACHE_MAGIC, 8);
    gear_put_u32(h + 8, CACHE_VERSION);
    gear_put_u32(h + 12, CACHE_HEADER);
    gear_config_write(&c->cfg[0], h + 16);
    gear_config_write(&c->cfg[1], h + 48);
    gear_put_u32(h + 80, c->n_layer);
    gear_put_u32(h + 84, c->n_head_in);
    gear_put_u32(h + 88, c->d_in);
    gear_put_u32(h + 92, c->max_tokens);
    /* a calibrated cache carries its calibration (codebooks, projections) */
    size_t cal_bytes = 0;
    if (c->cal) {
        gear_status st = gear_calib_save_mem(c->cal, NULL, 0, &cal_bytes);
        if (st != GEAR_ERR_DST_TOO_SMALL) return st ? st : gear_fail(GEAR_ERR_INTERNAL, "calib size");
        if (cal_bytes > UINT32_MAX)
            return gear_fail(GEAR_ERR_OVERFLOW, "calibration of %zu bytes is too large to save",
                             cal_bytes);
    }
    gear_put_u32(h + 96, (uint32_t)cal_bytes);
    gear_put_u32(h + 108, gear_crc32c(0, h, 108));
    put(s, h, sizeof h);
    if (c->cal) {
        uint8_t *cb = malloc(cal_bytes);
        if (!cb) return gear_fail(GEAR_ERR_NO_MEMORY, "save staging");
        gear_status st = gear_calib_save_mem(c->cal, cb, cal_bytes, &cal_bytes);
        if (!st) put(s, cb, cal_bytes);
        free(cb);
        if (st) return st;
    }

    size_t stage_sz = c->L[0].bytes > c->L[1].bytes ? c->L[0].bytes : c->L[1].bytes;
    gear_block_layout R;
    if (!gear_block_layout_raw(&R, GEAR_KEY, c->block, c->d, GEAR_F32) && R.bytes > stage_sz)
        stage_sz = R.bytes;
    uint8_t *stage = malloc(stage_sz);
    if (!stage) return gear_fail(GEAR_ERR_NO_MEMORY, "save staging");
    gear_status st = GEAR_OK;
    for (unsigned l = 0; l < c->n_layer && !st; l++) {
        const gear_layer *ly = &c->layers[l];
        uint8_t lh[LAYER_HEADER];
        memcpy(lh, LAYER_MAGIC, 4);
        gear_put_u32(lh + 4, l);
        gear_put_u32(lh + 8, ly->tokens);
        gear_put_u32(lh + 12, gear_crc32c(0, lh, 12));
        put(s, lh, sizeof lh);
        for (int kv = 0; kv < 2 && !st; kv++)
            for (unsigned b = 0; b < ly->n_blocks && !st; b++)
                for (unsigned hd = 0; hd < c->n_head && !st; hd++)
                    st = put_block(c, s, gear_cache_block(c, ly, kv, b, hd), c->L[kv].bytes, stage);
        unsigned nbuf = ly->tokens % c->block;
        for (int kv = 0; kv < 2 && nbuf && !st; kv++) {
            st = gear_block_layout_raw(&R, (gear_kind)kv, nbuf, c->d, GEAR_F32);
            for (unsigned hd = 0; hd < c->n_head && !st; hd++) {
                memset(stage, 0, R.bytes);
                gear_block_pack_raw(&R, ly->buf[kv] + (size_t)hd * c->block * c->d, stage);
                gear_block_seal(&R, stage);
                put(s, stage, R.bytes);
            }
        }
    }
    free(stage);
    return st;
}

static gear_status write_cache_obj(const void *c, gear_sink *s) { return write_cache(c, s); }

gear_status gear_cache_save_mem(const gear_cache *c, void *dst, size_t cap, size_t *size)
{
    if (!c || !size) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_save_mem: NULL argument");
    return gear_save_mem(write_cache_obj, c, dst, cap, size);
}

gear_status gear_cache_save(const gear_cache *c, const char *path)
{
    if (!c || !path) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_save: NULL argument");
    if (!*path) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_save: empty path");
    return gear_save_file(write_cache_obj, c, path);
}

static gear_status take_block(const uint8_t *src, size_t len, size_t *off,
                              const gear_block_layout *want, const char *what)
{
    gear_block_layout got;
    gear_status st = gear_block_parse(src + *off, len - *off, &got);
    if (st) return st;
    if (!gear_block_layout_equal(&got, want))
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "%s block does not match the cache config", what);
    *off += want->bytes;
    return GEAR_OK;
}

gear_status gear_cache_load_mem(gear_context *ctx, const void *src_, size_t len, gear_cache **out)
{
    const uint8_t *src = src_;
    if (!ctx || !src || !out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_load_mem: NULL argument");
    *out = NULL;
    if (len < 8) return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "cache data shorter than its magic");
    if (memcmp(src, CACHE_MAGIC, 8)) return gear_fail(GEAR_ERR_FORMAT_MAGIC, "not a libgear cache (bad magic)");
    if (len < CACHE_HEADER)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "cache header needs %u bytes, got %zu", CACHE_HEADER, len);
    if (gear_get_u32(src + 108) != gear_crc32c(0, src, 108))
        return gear_fail(GEAR_ERR_FORMAT_CRC, "cache header CRC mismatch");
    if (gear_get_u32(src + 8) != CACHE_VERSION)
        return gear_fail(GEAR_ERR_FORMAT_VERSION, "cache format version %u (this library reads %u)",
                         gear_get_u32(src + 8), CACHE_VERSION);
    for (int i = 100; i < 108; i++)
        if (src[i]) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "cache header: reserved bytes set");
    if (gear_get_u32(src + 12) != CACHE_HEADER)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "cache header: bad header size");
    unsigned n_layer = gear_get_u32(src + 80), n_head = gear_get_u32(src + 84),
             d = gear_get_u32(src + 88), max_tokens = gear_get_u32(src + 92);
    size_t off = CACHE_HEADER, cal_bytes = gear_get_u32(src + 96);
    gear_calib *cal = NULL;
    gear_status st = GEAR_OK;
    if (cal_bytes) {
        if (cal_bytes > len - off)
            return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "calibration of %zu bytes, %zu left",
                             cal_bytes, len - off);
        st = gear_calib_load_mem(src + off, cal_bytes, &cal);
        if (st) return st;
        off += cal_bytes;
    }
    /* configs apply to the stored (projected) head dim */
    unsigned sd = cal ? cal->sd : d;
    gear_config ck, cv;
    st = gear_config_read(src + 16, sd, &ck);
    if (!st) st = gear_config_read(src + 48, sd, &cv);
    gear_cache *c = NULL;
    if (!st) {
        st = gear_cache_new(ctx, &ck, &cv, cal, n_layer, n_head, d, max_tokens, &c);
        if (st) st = gear_fail(GEAR_ERR_FORMAT_CORRUPT, "cache header: %s", gear_last_error_message());
    }
    gear_calib_free(cal);
    if (st) return st;
    const struct gear_backend_i *be = ctx->be;
    n_head = c->n_head; /* the stored shape from here on */
    d = c->d;
    for (unsigned l = 0; l < n_layer && !st; l++) {
        gear_layer *ly = &c->layers[l];
        if (len - off < LAYER_HEADER) {
            st = gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "layer %u header missing", l);
            break;
        }
        const uint8_t *lh = src + off;
        if (gear_get_u32(lh + 12) != gear_crc32c(0, lh, 12)) {
            st = gear_fail(GEAR_ERR_FORMAT_CRC, "layer %u header CRC mismatch", l);
            break;
        }
        unsigned tokens = gear_get_u32(lh + 8);
        if (memcmp(lh, LAYER_MAGIC, 4) || gear_get_u32(lh + 4) != l || tokens > max_tokens) {
            st = gear_fail(GEAR_ERR_FORMAT_CORRUPT, "layer %u header: bad magic, index or tokens", l);
            break;
        }
        off += LAYER_HEADER;
        unsigned nb = tokens / c->block, nbuf = tokens % c->block;
        /* the blocks, and the raw blocks of the buffered tokens, must be
         * there before anything is allocated for them */
        gear_block_layout R0;
        uint64_t need = (uint64_t)nb * n_head * (c->L[0].bytes + c->L[1].bytes);
        if (nbuf && !gear_block_layout_raw(&R0, GEAR_KEY, nbuf, d, GEAR_F32))
            need += 2 * (uint64_t)n_head * R0.bytes;
        if (need > len - off) {
            st = gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "layer %u: %u tokens but the data ends", l, tokens);
            break;
        }
        st = gear_cache_reserve(c, ly, nb);
        if (!st && nbuf) st = gear_cache_buffers(c, ly);
        for (int kv = 0; kv < 2 && !st; kv++)
            for (unsigned b = 0; b < nb && !st; b++)
                for (unsigned h = 0; h < n_head && !st; h++) {
                    size_t at = off;
                    st = take_block(src, len, &off, &c->L[kv], kv ? "value" : "key");
                    if (!st)
                        st = be->mem_copy(ctx->state, gear_cache_block(c, ly, kv, b, h), src + at,
                                          c->L[kv].bytes, be->on_device ? GEAR_COPY_H2D : GEAR_COPY_H2H);
                }
        for (int kv = 0; kv < 2 && nbuf && !st; kv++) {
            gear_block_layout R;
            st = gear_block_layout_raw(&R, (gear_kind)kv, nbuf, d, GEAR_F32);
            for (unsigned h = 0; h < n_head && !st; h++) {
                size_t at = off;
                st = take_block(src, len, &off, &R, "buffer");
                if (!st) {
                    float *b = ly->buf[kv] + (size_t)h * c->block * d;
                    gear_block_unpack_raw(&R, src + at, b);
                    /* appends keep the buffer inside the fp16 range; a file
                     * that does not is not one this library wrote */
                    for (size_t i = 0; i < (size_t)nbuf * d && !st; i++)
                        if (!(fabsf(b[i]) <= 65504.0f))
                            st = gear_fail(GEAR_ERR_FORMAT_CORRUPT, "layer %u: buffered value "
                                           "%g is outside the fp16 range", l, (double)b[i]);
                }
            }
        }
        if (!st) {
            ly->n_blocks = nb;
            ly->tokens = tokens;
        }
    }
    if (!st && off != len)
        st = gear_fail(GEAR_ERR_FORMAT_CORRUPT, "%zu trailing bytes after the cache", len - off);
    if (st) {
        gear_cache_free(c);
        return st;
    }
    *out = c;
    return GEAR_OK;
}

gear_status gear_cache_load(gear_context *ctx, const char *path, gear_cache **out)
{
    if (out) *out = NULL;
    if (!ctx || !path || !out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_load: NULL argument");
    uint8_t *data;
    size_t len;
    gear_status st = gear_read_file(path, &data, &len);
    if (!st) st = gear_cache_load_mem(ctx, data, len, out);
    free(data);
    return st;
}
