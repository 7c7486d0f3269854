/*
 * stream.c - stateless compression of a [H,T,d] tensor into a
 * self-describing stream (docs/FORMAT.md "Stream"): a 64-byte header, the
 * compressed blocks head by head, then each head's uncompressed tail.
 */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define STREAM_MAGIC "GEARSTRM"
#define STREAM_VERSION 1u
#define STREAM_HEADER 64u
#define STREAM_BATCH_BYTES (512u << 10)
#define STREAM_BATCH_MAX 64u
#define STREAM_DIRECT_CHUNK 128u

typedef struct plan {
    gear_config cfg;
    gear_block_layout L, Lt; /* full blocks, tail blocks */
    uint64_t H, T, d, nfull, tail;
    gear_dtype tail_dtype;
    size_t bytes;
} plan;

static gear_status plan_make(plan *p, const gear_config *cfg, uint64_t H, uint64_t T, uint64_t d,
                             gear_dtype tail_dtype)
{
    memset(p, 0, sizeof *p);
    if (d > 65535 || H > UINT32_MAX || T > UINT32_MAX)
        return gear_fail(GEAR_ERR_SHAPE, "stream shape [%llu,%llu,%llu] out of range",
                         (unsigned long long)H, (unsigned long long)T, (unsigned long long)d);
    gear_status st = gear_block_layout_init(&p->L, cfg, (unsigned)d);
    if (st) return st;
    if (cfg->cq_dim) /* the codebook lives with a calibrated cache, not in a stream */
        return gear_fail(GEAR_ERR_UNSUPPORTED, "Coupled Quantization (cq_dim %u) needs a "
                         "calibration: use gear_cache_create_calibrated", cfg->cq_dim);
    p->cfg = *cfg;
    p->H = H;
    p->T = T;
    p->d = d;
    p->nfull = T / cfg->block;
    p->tail = T % cfg->block;
    p->tail_dtype = tail_dtype;
    size_t a, b, total = STREAM_HEADER;
    if (!gear_mul_ok(H, p->nfull, &a) || !gear_mul_ok(a, p->L.bytes, &a) ||
        !gear_add_ok(total, a, &total))
        return gear_fail(GEAR_ERR_OVERFLOW, "stream size overflows");
    if (p->tail) {
        st = gear_block_layout_raw(&p->Lt, cfg->kind, (unsigned)p->tail, (unsigned)d, tail_dtype);
        if (st) return st;
        if (!gear_mul_ok(H, p->Lt.bytes, &b) || !gear_add_ok(total, b, &total))
            return gear_fail(GEAR_ERR_OVERFLOW, "stream size overflows");
    }
    p->bytes = total;
    return GEAR_OK;
}

static gear_status plan_from_view(plan *p, const gear_config *cfg, const gear_tensor *x)
{
    int64_t h = 0, t = 0, d = 0;
    if (!cfg) return gear_fail(GEAR_ERR_INVALID_ARG, "config is NULL");
    gear_status st = gear_view_check(x, "x", &h, &t, &d);
    if (st) return st;
    return plan_make(p, cfg, (uint64_t)h, (uint64_t)t, (uint64_t)d, x->dtype);
}

gear_status gear_compress_bound(const gear_config *cfg, const gear_tensor *x, size_t *bound)
{
    plan p;
    if (!bound) return gear_fail(GEAR_ERR_INVALID_ARG, "bound is NULL");
    gear_status st = plan_from_view(&p, cfg, x);
    if (!st) *bound = p.bytes;
    return st;
}

/* Blocks go to and from the backend in batches, so that a threaded
 * backend spreads them over its threads; a batch of fp32 rows (nd floats
 * per block) stays in L2. */
static unsigned batch_blocks(size_t nd)
{
    size_t b = STREAM_BATCH_BYTES / (nd * sizeof(float));
    return b < 1 ? 1 : b > STREAM_BATCH_MAX ? STREAM_BATCH_MAX : (unsigned)b;
}

/* Every full block straight from the input's rows (host memory,
 * contiguous channels: fp16 through the backend's compress_blocks_f16,
 * fp32 and bf16 through its compress_blocks_rows), where the backend can:
 * no staging.  Anything else, an error included, makes the caller stage
 * fp32 rows, which also reports a bad value precisely. */
static gear_status compress_direct(gear_context *ctx, const plan *p, const gear_tensor *x,
                                   uint32_t layer, uint8_t *w)
{
    const void *rows;
    size_t ld, count = (size_t)(p->H * p->nfull);
    int f16 = x->dtype == GEAR_F16;
    if (!count || count > UINT32_MAX || !gear_view_host_rows(x, 0, 0, &rows, &ld))
        return GEAR_ERR_UNSUPPORTED;
    gear_block_id *ids = malloc(sizeof *ids * count);
    const uint16_t **x16 = f16 ? malloc(sizeof *x16 * count) : NULL;
    const void **xr = f16 ? NULL : malloc(sizeof *xr * count);
    uint8_t **blk = malloc(sizeof *blk * count);
    gear_status st = ids && (x16 || xr) && blk ? GEAR_OK : GEAR_ERR_NO_MEMORY;
    for (size_t i = 0; i < count && !st; i++) {
        uint64_t h = i / p->nfull, b = i % p->nfull;
        ids[i] = (gear_block_id){p->cfg.seed, layer, (uint32_t)h, (uint32_t)b};
        if (f16)
            gear_view_f16_rows(x, (int64_t)h, (int64_t)(b * p->cfg.block), &x16[i], &ld);
        else
            gear_view_host_rows(x, (int64_t)h, (int64_t)(b * p->cfg.block), &xr[i], &ld);
        blk[i] = w + i * p->L.bytes;
    }
    /* in chunks whose output stays in L2 between its zeroing, its
     * compression and its CRC (the whole output at once went to DRAM and
     * back twice, 10-15% of a 64 MiB tensor's time) */
    for (size_t i = 0; i < count && !st; i += STREAM_DIRECT_CHUNK) {
        size_t m = count - i < STREAM_DIRECT_CHUNK ? count - i : STREAM_DIRECT_CHUNK;
        st = f16 ? gear_pipeline_compress_f16(ctx, &p->L, (unsigned)m, ids + i, x16 + i, ld, blk + i)
                 : gear_pipeline_compress_rows(ctx, &p->L, (unsigned)m, ids + i, xr + i, x->dtype, ld, blk + i);
    }
    free(ids);
    free(x16);
    free(xr);
    free(blk);
    return st;
}

gear_status gear_compress(gear_context *ctx, const gear_config *cfg, const gear_tensor *x,
                          uint32_t layer, void *dst, size_t cap, size_t *written)
{
    plan p;
    if (!ctx || !dst || !written)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_compress: ctx, dst and written are required");
    *written = 0;
    gear_status st = plan_from_view(&p, cfg, x);
    if (st) return st;
    if (cap < p.bytes)
        return gear_fail(GEAR_ERR_DST_TOO_SMALL, "gear_compress needs %zu bytes, got %zu", p.bytes,
                         cap);
    uint8_t *out = dst;
    memset(out, 0, STREAM_HEADER); /* the blocks are zeroed one by one, as they are written */
    memcpy(out, STREAM_MAGIC, 8);
    gear_put_u32(out + 8, STREAM_VERSION);
    gear_put_u32(out + 12, STREAM_HEADER);
    gear_config_write(cfg, out + 16);
    gear_put_u32(out + 48, (uint32_t)p.H);
    gear_put_u32(out + 52, (uint32_t)p.T);
    gear_put_u16(out + 56, (uint16_t)p.d);
    out[58] = (uint8_t)p.tail_dtype;
    gear_put_u32(out + 60, gear_crc32c(0, out, 60));

    unsigned n = cfg->block;
    size_t nd = (size_t)n * p.d;
    unsigned batch = batch_blocks(nd);
    float *buf = malloc(sizeof(float) * nd * batch);
    const float *xs[STREAM_BATCH_MAX];
    gear_block_id ids[STREAM_BATCH_MAX];
    if (!buf) return gear_fail(GEAR_ERR_NO_MEMORY, "gear_compress scratch");
    uint8_t *w = out + STREAM_HEADER;
    int direct = compress_direct(ctx, &p, x, layer, w) == GEAR_OK;
    if (direct) w += (size_t)(p.H * p.nfull) * p.L.bytes;
    for (uint64_t h = 0; h < p.H && !st && !direct; h++) {
        for (uint64_t b0 = 0; b0 < p.nfull && !st; b0 += batch) {
            unsigned m = p.nfull - b0 < batch ? (unsigned)(p.nfull - b0) : batch;
            for (unsigned i = 0; i < m; i++)
                ids[i] = (gear_block_id){cfg->seed, layer, (uint32_t)h, (uint32_t)(b0 + i)};
            for (unsigned i = 0; i < m && !st; i++) {
                uint64_t b = b0 + i;
                xs[i] = buf + i * nd;
                st = gear_view_read(x, (int64_t)h, (int64_t)(b * n), n, (int64_t)p.d, buf + i * nd, 1);
            }
            if (!st) st = gear_pipeline_compress_host(ctx, &p.L, m, ids, xs, w);
            w += (size_t)m * p.L.bytes;
        }
    }
    for (uint64_t h = 0; h < p.H && p.tail && !st; h++) {
        st = gear_view_read(x, (int64_t)h, (int64_t)(p.nfull * n), (int64_t)p.tail, (int64_t)p.d,
                            buf, 0);
        if (!st) {
            memset(w, 0, p.Lt.bytes);
            gear_block_pack_raw(&p.Lt, buf, w);
            gear_block_seal(&p.Lt, w);
        }
        w += p.Lt.bytes;
    }
    free(buf);
    if (st) return st;
    *written = p.bytes;
    return GEAR_OK;
}

/* Parse and fully validate a stream: header, then every block. */
static gear_status stream_parse(const void *src, size_t len, plan *p)
{
    const uint8_t *s = src;
    if (!src) return gear_fail(GEAR_ERR_INVALID_ARG, "stream is NULL");
    if (len < 8 || memcmp(s, STREAM_MAGIC, 8))
        return len < 8 ? gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "stream shorter than its magic")
                       : gear_fail(GEAR_ERR_FORMAT_MAGIC, "not a libgear stream (bad magic)");
    if (len < STREAM_HEADER)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "stream header needs %u bytes, got %zu",
                         STREAM_HEADER, len);
    if (gear_get_u32(s + 60) != gear_crc32c(0, s, 60))
        return gear_fail(GEAR_ERR_FORMAT_CRC, "stream header CRC mismatch");
    if (gear_get_u32(s + 8) != STREAM_VERSION)
        return gear_fail(GEAR_ERR_FORMAT_VERSION, "stream format version %u (this library reads %u)",
                         gear_get_u32(s + 8), STREAM_VERSION);
    if (gear_get_u32(s + 12) != STREAM_HEADER || s[59] || s[58] > GEAR_BF16)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "stream header: bad size, dtype or reserved byte");
    unsigned d = gear_get_u16(s + 56);
    uint64_t H = gear_get_u32(s + 48), T = gear_get_u32(s + 52);
    gear_config cfg;
    gear_status st = gear_config_read(s + 16, d, &cfg);
    if (st) return st;
    if (H == 0 || T == 0)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "stream header: empty shape");
    st = plan_make(p, &cfg, H, T, d, (gear_dtype)s[58]);
    if (st) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "stream header: %s", gear_last_error_message());
    if (len < p->bytes)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "stream of %zu bytes, header says %zu", len,
                         p->bytes);
    if (len > p->bytes)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "%zu trailing bytes after the stream",
                         len - p->bytes);
    size_t off = STREAM_HEADER;
    uint64_t nblk = p->H * p->nfull, ntail = p->tail ? p->H : 0;
    for (uint64_t i = 0; i < nblk + ntail; i++) {
        const gear_block_layout *want = i < nblk ? &p->L : &p->Lt;
        gear_block_layout got;
        st = gear_block_parse(s + off, len - off, &got);
        if (st) return st;
        if (!gear_block_layout_equal(&got, want))
            return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "block %llu does not match the stream config",
                             (unsigned long long)i);
        off += want->bytes;
    }
    return GEAR_OK;
}

gear_status gear_stream_info(const void *src, size_t len, int64_t shape[3], gear_config *cfg)
{
    plan p;
    gear_status st = stream_parse(src, len, &p);
    if (st) return st;
    if (shape) {
        shape[0] = (int64_t)p.H;
        shape[1] = (int64_t)p.T;
        shape[2] = (int64_t)p.d;
    }
    if (cfg) *cfg = p.cfg;
    return GEAR_OK;
}

/* Every full block straight into fp16 rows of out, where the backend can
 * (each value converted by the thread that decoded it; the fp16 preset's
 * rows copied), in chunks whose block tables live on the stack; rows that
 * overlap in out (a zero or short stride) keep the serial staged path.
 * GEAR_ERR_UNSUPPORTED makes the caller stage fp32. */
static gear_status decompress_f16(gear_context *ctx, const plan *p, const uint8_t *r, gear_tensor *out)
{
    const uint16_t *rows;
    size_t ld, count = (size_t)(p->H * p->nfull);
    if (!count || !gear_view_f16_rows(out, 0, 0, &rows, &ld) || !gear_view_rows_disjoint(out) ||
        !gear_pipeline_has_f16_out(ctx, &p->L))
        return GEAR_ERR_UNSUPPORTED;
    const uint8_t *blk[STREAM_DIRECT_CHUNK];
    uint16_t *os[STREAM_DIRECT_CHUNK];
    gear_status st = GEAR_OK;
    for (size_t i0 = 0; i0 < count && !st; i0 += STREAM_DIRECT_CHUNK) {
        unsigned m = count - i0 < STREAM_DIRECT_CHUNK ? (unsigned)(count - i0) : STREAM_DIRECT_CHUNK;
        for (unsigned i = 0; i < m; i++) {
            uint64_t h = (i0 + i) / p->nfull, b = (i0 + i) % p->nfull;
            gear_view_f16_rows(out, (int64_t)h, (int64_t)(b * p->cfg.block), &rows, &ld);
            os[i] = (uint16_t *)rows; /* out's own data: writable */
            blk[i] = r + (i0 + i) * p->L.bytes;
        }
        st = gear_pipeline_reconstruct_f16(ctx, &p->L, m, blk, os, ld);
    }
    return st;
}

gear_status gear_decompress(gear_context *ctx, const void *src, size_t len, gear_tensor *out)
{
    plan p;
    if (!ctx) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_decompress: ctx is NULL");
    gear_status st = stream_parse(src, len, &p);
    if (st) return st;
    int64_t h = (int64_t)p.H, t = (int64_t)p.T, d = (int64_t)p.d;
    st = gear_view_check(out, "out", &h, &t, &d);
    if (st) return st;
    unsigned n = p.cfg.block, batch = batch_blocks((size_t)n * p.d);
    size_t nd = (size_t)n * p.d;
    float *buf = malloc(sizeof(float) * nd * batch);
    if (!buf) return gear_fail(GEAR_ERR_NO_MEMORY, "gear_decompress scratch");
    const uint8_t *r = (const uint8_t *)src + STREAM_HEADER, *blk[STREAM_BATCH_MAX];
    st = decompress_f16(ctx, &p, r, out);
    int direct = st == GEAR_OK;
    if (direct) r += (size_t)(p.H * p.nfull) * p.L.bytes;
    if (st == GEAR_ERR_UNSUPPORTED) st = GEAR_OK;
    for (uint64_t hh = 0; hh < p.H && !st && !direct; hh++)
        for (uint64_t b0 = 0; b0 < p.nfull && !st; b0 += batch) {
            unsigned m = p.nfull - b0 < batch ? (unsigned)(p.nfull - b0) : batch;
            if (ctx->be->on_device) { /* the blocks are on the host: one at a time */
                for (unsigned i = 0; i < m && !st; i++)
                    st = gear_pipeline_reconstruct_host(ctx, &p.L, r + i * p.L.bytes, buf + i * nd);
            } else {
                for (unsigned i = 0; i < m; i++) blk[i] = r + i * p.L.bytes;
                st = gear_pipeline_reconstruct_batch(ctx, &p.L, m, blk, buf);
            }
            for (unsigned i = 0; i < m && !st; i++)
                gear_view_write(out, (int64_t)hh, (int64_t)((b0 + i) * n), n, d, buf + i * nd);
            r += (size_t)m * p.L.bytes;
        }
    for (uint64_t hh = 0; hh < p.H && p.tail && !st; hh++, r += p.Lt.bytes) {
        gear_block_unpack_raw(&p.Lt, r, buf);
        gear_view_write(out, (int64_t)hh, (int64_t)(p.nfull * n), (int64_t)p.tail, d, buf);
    }
    free(buf);
    return st;
}
