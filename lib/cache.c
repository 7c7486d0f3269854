/*
 * cache.c - the streaming KV cache: a full-precision buffer of fewer than
 * `block` tokens per (layer, K/V, head); each full block is compressed
 * exactly once into an arena in backend memory and never recompressed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "cache.h"

/* Does cal fit the configs and the model shape? */
static gear_status check_calib(const gear_calib *cal, const gear_config *cfg[2], unsigned n_layer,
                               unsigned n_head, unsigned d)
{
    for (int kv = 0; kv < 2; kv++)
        if (cfg[kv]->cq_dim && !cal)
            return gear_fail(GEAR_ERR_INVALID_ARG, "the %s config uses Coupled Quantization "
                             "(cq_dim %u): it needs a calibration with a codebook "
                             "(gear_cache_create_calibrated)", kv ? "value" : "key",
                             cfg[kv]->cq_dim);
    if (!cal) return GEAR_OK;
    if (!cal->fitted)
        return gear_fail(GEAR_ERR_INVALID_ARG, "calibration is not fitted (call gear_calib_fit)");
    if (cal->n_layer != n_layer || cal->n_head != n_head || cal->d != d)
        return gear_fail(GEAR_ERR_INVALID_ARG, "calibration is for %u layers x %u KV heads x %u "
                         "channels, the cache for %u x %u x %u", cal->n_layer, cal->n_head, cal->d,
                         n_layer, n_head, d);
    for (int kv = 0; kv < 2; kv++)
        if (cfg[kv]->cq_dim && (cfg[kv]->cq_dim != cal->p.cq_dim[kv] ||
                                cfg[kv]->bits != cal->p.cq_bits[kv]))
            return gear_fail(GEAR_ERR_INVALID_ARG, "the %s config wants CQ codes of %u channels "
                             "x %u bits; the calibration has %u x %u", kv ? "value" : "key",
                             cfg[kv]->cq_dim, cfg[kv]->bits, cal->p.cq_dim[kv], cal->p.cq_bits[kv]);
    return GEAR_OK;
}

/* The codebooks where the backend reads them. */
static gear_status attach_codebooks(gear_cache *c)
{
    const struct gear_backend_i *be = c->ctx->be;
    for (int kv = 0; kv < 2; kv++) {
        if (!c->L[kv].cq_dim) continue;
        if (!be->on_device) {
            c->cb[kv] = c->cal->cb[kv];
            continue;
        }
        size_t bytes = gear_calib_cb_floats(c->cal, kv) * sizeof(float);
        gear_status st = be->mem_alloc(c->ctx->state, bytes, (void **)&c->cb[kv]);
        if (!st) st = be->mem_copy(c->ctx->state, c->cb[kv], c->cal->cb[kv], bytes, GEAR_COPY_H2D);
        if (st) return st;
    }
    return GEAR_OK;
}

gear_status gear_cache_new(gear_context *ctx, const gear_config *cfg_k, const gear_config *cfg_v,
                           const gear_calib *cal, unsigned n_layer, unsigned n_head, unsigned d,
                           unsigned max_tokens, gear_cache **out)
{
    if (!out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_create: out is NULL");
    *out = NULL;
    if (!ctx || !cfg_k || !cfg_v)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_create: ctx, cfg_k and cfg_v are required");
    if (cfg_k->kind != GEAR_KEY || cfg_v->kind != GEAR_VALUE)
        return gear_fail(GEAR_ERR_INVALID_ARG, "cfg_k must have kind GEAR_KEY and cfg_v GEAR_VALUE");
    if (!n_layer || !n_head || !d || !max_tokens)
        return gear_fail(GEAR_ERR_INVALID_ARG, "n_layer, n_head_kv, head_dim and max_tokens must be > 0");
    if (n_layer > 65536 || n_head > 65536)
        return gear_fail(GEAR_ERR_INVALID_ARG, "n_layer and n_head_kv must be <= 65536");
    if (cfg_k->block != cfg_v->block)
        return gear_fail(GEAR_ERR_INVALID_ARG, "keys and values need the same block size (%u vs %u)",
                         cfg_k->block, cfg_v->block);
    const gear_config *cfg[2] = {cfg_k, cfg_v};
    gear_status st = check_calib(cal, cfg, n_layer, n_head, d);
    if (st) return st;
    /* under head compression the blocks hold the projected heads */
    unsigned sh = cal ? cal->sh : n_head, sd = cal ? cal->sd : d;
    gear_cache *c = calloc(1, sizeof *c);
    if (!c) return gear_fail(GEAR_ERR_NO_MEMORY, "gear_cache_create");
    st = gear_block_layout_init(&c->L[0], cfg_k, sd);
    if (!st) st = gear_block_layout_init(&c->L[1], cfg_v, sd);
    if (st) {
        free(c);
        return st;
    }
    c->ctx = ctx;
    c->cfg[0] = *cfg_k;
    c->cfg[1] = *cfg_v;
    c->n_layer = n_layer;
    c->n_head = sh;
    c->d = sd;
    c->n_head_in = n_head;
    c->d_in = d;
    c->block = cfg_k->block;
    c->max_tokens = max_tokens;
    c->pairs = !ctx->be->on_device;
    c->layers = calloc(n_layer, sizeof *c->layers);
    if (!c->layers) st = gear_fail(GEAR_ERR_NO_MEMORY, "gear_cache_create: layers");
    if (!st && cal) st = gear_calib_dup(cal, &c->cal);
    if (!st && cal) st = attach_codebooks(c);
    for (int kv = 0; kv < 2 && !st && cal && cal->p.hc_group; kv++) { /* U^T, for x = U y + mean */
        size_t gd = (size_t)cal->p.hc_group * d, groups = (size_t)n_layer * sh;
        c->hc_ut[kv] = malloc(sizeof(float) * groups * gd * sd);
        if (!c->hc_ut[kv]) {
            st = gear_fail(GEAR_ERR_NO_MEMORY, "head projections");
            break;
        }
        for (size_t gi = 0; gi < groups; gi++)
            for (size_t i = 0; i < gd; i++)
                for (size_t k = 0; k < sd; k++)
                    c->hc_ut[kv][(gi * sd + k) * gd + i] = c->cal->hc_u[kv][(gi * gd + i) * sd + k];
    }
    if (st) {
        gear_cache_free(c);
        return st;
    }
    *out = c;
    return GEAR_OK;
}

gear_status gear_cache_create(gear_context *ctx, const gear_config *cfg_k, const gear_config *cfg_v,
                              unsigned n_layer, unsigned n_head_kv, unsigned head_dim,
                              unsigned max_tokens, gear_cache **out)
{
    return gear_cache_new(ctx, cfg_k, cfg_v, NULL, n_layer, n_head_kv, head_dim, max_tokens, out);
}

gear_status gear_cache_create_calibrated(gear_context *ctx, const gear_config *cfg_k,
                                         const gear_config *cfg_v, const gear_calib *cal,
                                         unsigned n_layer, unsigned n_head_kv, unsigned head_dim,
                                         unsigned max_tokens, gear_cache **out)
{
    return gear_cache_new(ctx, cfg_k, cfg_v, cal, n_layer, n_head_kv, head_dim, max_tokens, out);
}

void gear_cache_free(gear_cache *c)
{
    if (!c) return;
    for (unsigned l = 0; c->layers && l < c->n_layer; l++)
        for (int kv = 0; kv < 2; kv++) {
            if (c->layers[l].arena[kv]) c->ctx->be->mem_free(c->ctx->state, c->layers[l].arena[kv]);
            free(c->layers[l].buf[kv]);
        }
    for (int kv = 0; kv < 2; kv++) {
        if (c->cb[kv] && c->ctx->be->on_device) c->ctx->be->mem_free(c->ctx->state, c->cb[kv]);
        free(c->hc_ut[kv]);
    }
    gear_calib_free(c->cal);
    free(c->layers);
    free(c);
}

/* Buffers are allocated when a layer first receives tokens, so that a
 * large, mostly empty cache (or a hostile file header) costs little. */
gear_status gear_cache_buffers(gear_cache *c, gear_layer *ly)
{
    size_t hn, n;
    if (!gear_mul_ok(c->n_head, c->block, &hn) || !gear_mul_ok(hn, c->d, &n) || n > SIZE_MAX / sizeof(float))
        return gear_fail(GEAR_ERR_OVERFLOW, "cache buffers overflow");
    for (int kv = 0; kv < 2; kv++)
        if (!ly->buf[kv] && !(ly->buf[kv] = gear_alloc64(n * sizeof(float))))
            return gear_fail(GEAR_ERR_NO_MEMORY, "cache buffers of %zu floats", n);
    return GEAR_OK;
}

gear_status gear_cache_reserve(gear_cache *c, gear_layer *ly, unsigned want)
{
    if (want <= ly->cap_blocks) return GEAR_OK;
    const struct gear_backend_i *be = c->ctx->be;
    unsigned max_blocks = c->max_tokens / c->block;
    unsigned cap = ly->cap_blocks ? ly->cap_blocks : 4;
    while (cap < want) cap = cap > max_blocks / 2 ? max_blocks : cap * 2;
    if (cap > max_blocks) cap = max_blocks;
    if (cap < want) return gear_fail(GEAR_ERR_INTERNAL, "reserve beyond max_tokens");
    uint8_t *na[2] = {NULL, NULL};
    for (int kv = 0; kv < (c->pairs ? 1 : 2); kv++) {
        size_t entries, bytes, entry = gear_cache_entry_bytes(c, kv);
        if (!gear_mul_ok(cap, c->n_head, &entries) || !gear_mul_ok(entries, entry, &bytes)) {
            if (na[0]) be->mem_free(c->ctx->state, na[0]);
            return gear_fail(GEAR_ERR_OVERFLOW, "cache arena size overflows");
        }
        gear_status st = be->mem_alloc(c->ctx->state, bytes, (void **)&na[kv]);
        if (!st && ly->n_blocks)
            st = be->mem_copy(c->ctx->state, na[kv], ly->arena[kv],
                              (size_t)ly->n_blocks * c->n_head * entry,
                              be->on_device ? GEAR_COPY_D2D : GEAR_COPY_H2H);
        if (st) {
            for (int j = 0; j <= kv; j++)
                if (na[j]) be->mem_free(c->ctx->state, na[j]);
            return st;
        }
    }
    for (int kv = 0; kv < 2; kv++) {
        if (ly->arena[kv]) be->mem_free(c->ctx->state, ly->arena[kv]);
        ly->arena[kv] = na[kv];
    }
    ly->cap_blocks = cap;
    return GEAR_OK;
}

static gear_status check_layer(const gear_cache *c, unsigned layer)
{
    if (!c) return gear_fail(GEAR_ERR_INVALID_ARG, "cache is NULL");
    if (layer >= c->n_layer)
        return gear_fail(GEAR_ERR_INVALID_ARG, "layer %u out of range (cache has %u)", layer,
                         c->n_layer);
    return GEAR_OK;
}

/* Compress blocks [first, first+count) of both kinds, all heads in one
 * batch each (CQ blocks of one call share a codebook: one batch per head).
 * Block b of head h comes from the staged rows[kv] (per head `total` rows,
 * the block at row b*n) or, when rows is NULL, straight from the rows of
 * src[kv] at token t0 + b*n (host memory, contiguous channels): fp16
 * through the backend's compress_blocks_f16, fp32 and bf16 through its
 * compress_blocks_rows, which read, convert and check them in the
 * backend's threads.  That way gives GEAR_ERR_UNSUPPORTED / _NONFINITE /
 * _RANGE without a message where the caller must stage instead (another
 * view, a backend without the slot, or a value the staged path must
 * report). */
static gear_status compress_blocks(gear_cache *c, gear_layer *ly, unsigned layer, unsigned first,
                                   unsigned count, float *const *rows, unsigned total,
                                   const gear_tensor *const *src, unsigned t0)
{
    if ((uint64_t)count * c->n_head > UINT32_MAX / sizeof(gear_block_id))
        return gear_fail(GEAR_ERR_OVERFLOW, "append of %u blocks x %u heads is too large", count,
                         c->n_head);
    unsigned all = count * c->n_head, n = c->block, d = c->d;
    gear_block_id *ids = malloc(sizeof *ids * all);
    const float **x32 = rows ? malloc(sizeof *x32 * all) : NULL;
    const uint16_t **x16 = rows ? NULL : malloc(sizeof *x16 * all);
    const void **xr = rows ? NULL : malloc(sizeof *xr * all);
    uint8_t **blks = malloc(sizeof *blks * all);
    gear_status st = GEAR_OK;
    if (!ids || (rows ? !x32 : !x16 || !xr) || !blks) st = gear_fail(GEAR_ERR_NO_MEMORY, "append staging");
    for (int kv = 0; kv < 2 && !st; kv++) {
        int per_head = c->L[kv].cq_dim != 0, f16 = !rows && src[kv]->dtype == GEAR_F16;
        for (unsigned h0 = 0; h0 < (per_head ? c->n_head : 1) && !st; h0++) {
            unsigned i = 0;
            size_t ld = 0;
            for (unsigned b = 0; b < count && !st; b++)
                for (unsigned h = per_head ? h0 : 0; h < (per_head ? h0 + 1 : c->n_head) && !st;
                     h++, i++) {
                    ids[i] = (gear_block_id){c->cfg[kv].seed, layer, h, first + b};
                    blks[i] = gear_cache_block(c, ly, kv, first + b, h);
                    if (rows)
                        x32[i] = rows[kv] + ((size_t)h * total + (size_t)b * n) * d;
                    else if (f16 ? !gear_view_f16_rows(src[kv], h, t0 + b * n, &x16[i], &ld)
                                 : !gear_view_host_rows(src[kv], h, t0 + b * n, &xr[i], &ld))
                        st = GEAR_ERR_UNSUPPORTED;
                }
            gear_block_layout L = gear_cache_layout(c, kv, layer, h0);
            if (!st)
                st = rows  ? gear_pipeline_compress_batch(c->ctx, &L, i, ids, x32, blks)
                     : f16 ? gear_pipeline_compress_f16(c->ctx, &L, i, ids, x16, ld, blks)
                           : gear_pipeline_compress_rows(c->ctx, &L, i, ids, xr, src[kv]->dtype, ld, blks);
        }
    }
    free(ids);
    free(x32);
    free(x16);
    free(xr);
    free(blks);
    return st;
}

/* Rows [u0, u1) of head h of what an append takes, in order: the nbuf
 * buffered rows, then input rows [rg[0], rg[1]) and [rg[2], rg[3])
 * (converted and checked), into dst. */
static gear_status stage_rows(const gear_cache *c, const gear_layer *ly, int kv, const gear_tensor *src,
                              const unsigned rg[4], unsigned h, unsigned u0, unsigned u1, float *dst)
{
    unsigned n = c->block, d = c->d, nbuf = ly->tokens % n;
    const unsigned len[3] = {nbuf, rg[1] - rg[0], rg[3] - rg[2]}, from[3] = {0, rg[0], rg[2]};
    gear_status st = GEAR_OK;
    for (unsigned r = 0, base = 0; r < 3 && !st; base += len[r], r++) {
        unsigned lo = u0 > base ? u0 : base, hi = u1 < base + len[r] ? u1 : base + len[r];
        if (lo >= hi) continue;
        float *to = dst + (size_t)(lo - u0) * d;
        if (r == 0)
            memcpy(to, ly->buf[kv] + ((size_t)h * n + lo) * d, sizeof(float) * (hi - lo) * d);
        else
            st = gear_view_read(src, h, from[r] + (lo - base), hi - lo, d, to, 1);
    }
    return st;
}

/* Stage, per head, the buffered rows followed by input rows [rg[0], rg[1])
 * and [rg[2], rg[3]), compress the full blocks among them from block
 * ly->n_blocks on, and keep the rows left over in the buffer.  With a host
 * backend the blocks go in batches of about 1 MiB of fp32 rows a kind,
 * each staged just before it is compressed: in cache, and never a copy of
 * the whole input (a bf16 prefill of 16k tokens x 8 heads x 128 staged
 * 128 MB and took 10x as long as an fp16 one).  Nothing of the layer
 * changes unless everything succeeds (the caller moves the counters;
 * blocks written past n_blocks are not seen). */
static gear_status append_staged(gear_cache *c, gear_layer *ly, unsigned layer,
                                 const gear_tensor *src[2], const unsigned rg[4])
{
    unsigned H = c->n_head, n = c->block, d = c->d, nbuf = ly->tokens % n;
    unsigned total = nbuf + (rg[1] - rg[0]) + (rg[3] - rg[2]), nb = total / n, rem = total % n;
    size_t block_rows = (size_t)n * d; /* one head's block (n*d <= 65536, config.c) */
    unsigned cb = nb;
    size_t lim = ((size_t)1 << 18) / block_rows; /* heads x blocks in 1 MiB of fp32 rows */
    if (!c->ctx->be->on_device) cb = H >= lim ? 1 : (unsigned)(lim / H);
    if (cb < 4) cb = 4; /* CQ batches are per head: blocks for every thread */
    if (cb > nb) cb = nb;
    size_t per_head = (size_t)cb * n > rem ? (size_t)cb * n : rem, head_sz, rows_sz;
    if (!gear_mul_ok(per_head, d, &head_sz) || !gear_mul_ok(head_sz, H, &rows_sz) ||
        rows_sz > SIZE_MAX / sizeof(float) - 1)
        return gear_fail(GEAR_ERR_OVERFLOW, "append size overflows");
    /* (+1: an empty append must not look like a failed allocation) */
    float *rows[2] = {malloc(rows_sz * sizeof(float) + 1), malloc(rows_sz * sizeof(float) + 1)};
    gear_status st = rows[0] && rows[1] ? GEAR_OK : gear_fail(GEAR_ERR_NO_MEMORY, "append staging");
    for (unsigned b0 = 0; b0 < nb && !st; b0 += cb) {
        unsigned m = nb - b0 < cb ? nb - b0 : cb;
        for (int kv = 0; kv < 2 && !st; kv++)
            for (unsigned h = 0; h < H && !st; h++)
                st = stage_rows(c, ly, kv, src[kv], rg, h, b0 * n, (b0 + m) * n, rows[kv] + (size_t)h * m * n * d);
        if (!st) st = compress_blocks(c, ly, layer, ly->n_blocks + b0, m, rows, m * n, NULL, 0);
    }
    for (int kv = 0; kv < 2 && !st; kv++) /* the rows left over */
        for (unsigned h = 0; h < H && !st; h++)
            st = stage_rows(c, ly, kv, src[kv], rg, h, nb * n, total, rows[kv] + (size_t)h * rem * d);
    if (!st) /* commit: nothing below can fail */
        for (int kv = 0; kv < 2; kv++)
            for (unsigned h = 0; h < H; h++)
                memcpy(ly->buf[kv] + (size_t)h * n * d, rows[kv] + (size_t)h * rem * d, sizeof(float) * rem * d);
    free(rows[0]);
    free(rows[1]);
    return st;
}

/* Append in the stored shape [n_head, T, d]. */
static gear_status append_stored(gear_cache *c, unsigned layer, const gear_tensor *k,
                                 const gear_tensor *v)
{
    gear_status st = GEAR_OK;
    gear_layer *ly = &c->layers[layer];
    int64_t H = c->n_head, T = 0, D = c->d;
    st = gear_view_check(k, "k", &H, &T, &D);
    if (!st) st = gear_view_check(v, "v", &H, &T, &D);
    if (st) return st;
    if ((uint64_t)ly->tokens + (uint64_t)T > c->max_tokens)
        return gear_fail(GEAR_ERR_CAPACITY, "layer %u holds %u tokens; %lld more exceed max_tokens %u",
                         layer, ly->tokens, (long long)T, c->max_tokens);
    unsigned n = c->block, nbuf = ly->tokens % n, t = (unsigned)T;
    unsigned new_blocks = (nbuf + t) / n, rem = (nbuf + t) % n;
    const gear_tensor *src[2] = {k, v};
    st = gear_cache_buffers(c, ly);
    if (!st && new_blocks) st = gear_cache_reserve(c, ly, ly->n_blocks + new_blocks);
    if (st) return st;
    /* Whole blocks of input in host memory with contiguous channels go
     * to the backend as they are (fp16, bf16, fp32; any row stride), so a
     * prefill stages only the rows that complete the buffered block and
     * those left over (staging everything, an fp32 or bf16 prefill took
     * 6-13x as long as an fp16 one).  The fp16 preset's blocks from fp16
     * input are the halves, copied (staged, they went to fp32 and back:
     * 1.0 against 2.7 GB/s for [8, 4096, 128]).  Where the backend cannot take them,
     * or a value is bad (the staged path reports it precisely), everything
     * is staged.  Blocks written past n_blocks before a failure are never
     * seen. */
    unsigned lead = nbuf ? n - nbuf : 0, direct = new_blocks - (nbuf && new_blocks ? 1 : 0);
    unsigned rg[4] = {0, t, t, t};
    if (direct &&
        compress_blocks(c, ly, layer, ly->n_blocks + (nbuf ? 1 : 0), direct, NULL, 0, src, lead) ==
            GEAR_OK) {
        rg[1] = lead;
        rg[2] = t - rem;
    }
    st = append_staged(c, ly, layer, src, rg);
    if (st) return st;
    ly->n_blocks += new_blocks;
    ly->tokens += t;
    return GEAR_OK;
}

gear_status gear_cache_tokens(const gear_cache *c, unsigned layer, unsigned *n)
{
    gear_status st = check_layer(c, layer);
    if (st) return st;
    if (!n) return gear_fail(GEAR_ERR_INVALID_ARG, "n is NULL");
    *n = c->layers[layer].tokens;
    return GEAR_OK;
}

/* Index of the first non-finite element of x, or n.  Runs once per
 * attention call over every output row: 64 at a time without an early
 * exit, so that it vectorizes (one element at a time it was 11 % of a
 * call over a one-block cache, 8 heads x 4 query rows). */
GEAR_CLONES
static size_t first_nonfinite(const float *x, size_t n)
{
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint32_t bad = 0;
        for (unsigned k = 0; k < 64; k++) {
            uint32_t u;
            memcpy(&u, x + i + k, 4);
            bad |= (u & 0x7f800000u) == 0x7f800000u;
        }
        if (bad) break;
    }
    while (i < n && isfinite(x[i])) i++;
    return i;
}

typedef float f32x16 __attribute__((vector_size(64)));
typedef int32_t i32x16 __attribute__((vector_size(64)));

/* Whether some query row's scores, or a kernel's partial sums of them,
 * could leave fp32's range (2^128): every cached key entry, whatever its
 * decomposition (minimum, step times code, outlier, low-rank term), is
 * below 2^18 in magnitude (values are checked against +-65504 on the way
 * in; a rank-r term is below r * 65504), so sum |q_c| * 2^18 bounds the
 * sums before the scale and |scale| times that the sums after it (the
 * kernels scale either way); above 2^120 the margin is gone.  Real
 * queries are 30 orders of magnitude below.  The sums of |q_c| run in 16
 * fp32 partial sums, a vector of GCC's and clang's generic extension
 * (each clone uses its widest registers): a chain of double additions was
 * 8 % of a call over a one-block cache.  A sum that overflows is Inf and
 * still counts, and fp32's rounding is nothing against the 2^8 of
 * margin. */
GEAR_CLONES
static int scores_may_overflow(const float *q, size_t rows, unsigned d, float scale)
{
    double s = fabs((double)scale) > 1.0 ? fabs((double)scale) : 1.0;
    const f32x16 zero = {0};
    for (size_t r = 0; r < rows; r++) {
        const float *x = q + r * d;
        f32x16 part = zero;
        unsigned i = 0;
        for (; i + 16 <= d; i += 16) {
            i32x16 b; /* |x|: the sign bits cleared */
            f32x16 v;
            memcpy(&b, x + i, sizeof b);
            b &= 0x7fffffff;
            memcpy(&v, &b, sizeof v);
            part += v;
        }
        double l1 = 0.0;
        for (; i < d; i++) l1 += fabs((double)x[i]);
        for (unsigned k = 0; k < 16; k++) l1 += part[k];
        if (s * l1 * 262144.0 > 0x1p120) return 1;
    }
    return 0;
}

/* Attention in the stored shape: q and out [hq, nq, d]. */
static gear_status attention_stored(gear_cache *c, unsigned layer, const gear_tensor *q,
                                    float scale, gear_tensor *out)
{
    gear_status st = GEAR_OK;
    const gear_layer *ly = &c->layers[layer];
    int64_t hq = 0, nq = 0, d = c->d;
    st = gear_view_check(q, "q", &hq, &nq, &d);
    if (!st) st = gear_view_check(out, "out", &hq, &nq, &d);
    if (st) return st;
    if (!isfinite(scale)) return gear_fail(GEAR_ERR_NONFINITE, "attention scale is not finite");
    if (hq % c->n_head)
        return gear_fail(GEAR_ERR_SHAPE, "%lld query heads is not a multiple of %u KV heads",
                         (long long)hq, c->n_head);
    if (nq > ly->tokens)
        return gear_fail(GEAR_ERR_SHAPE, "%lld query tokens but layer %u holds %u tokens",
                         (long long)nq, layer, ly->tokens);
    unsigned group = (unsigned)(hq / c->n_head);
    size_t qn = (size_t)hq * (size_t)nq * c->d, nb = (size_t)c->n_head * ly->n_blocks;
    float *qb = gear_alloc64(qn * sizeof(float)), *ob = gear_alloc64(qn * sizeof(float));
    const uint8_t **kb = malloc(sizeof *kb * (nb + 1)), **vb = malloc(sizeof *vb * (nb + 1));
    if (!qb || !ob || !kb || !vb) {
        st = gear_fail(GEAR_ERR_NO_MEMORY, "attention staging");
        goto done;
    }
    /* query head h*group+g reads KV head h: rows are already in ABI order */
    for (unsigned h = 0; h < hq && !st; h++)
        st = gear_view_read(q, h, 0, nq, c->d, qb + (size_t)h * nq * c->d, 0);
    if (st) goto done;
    for (unsigned h = 0; h < c->n_head; h++)
        for (unsigned b = 0; b < ly->n_blocks; b++) {
            kb[(size_t)h * ly->n_blocks + b] = gear_cache_block(c, ly, 0, b, h);
            vb[(size_t)h * ly->n_blocks + b] = gear_cache_block(c, ly, 1, b, h);
        }
    size_t stride = (size_t)c->block * c->d;
    gear_block_layout lk = gear_cache_layout(c, 0, layer, 0), lv = gear_cache_layout(c, 1, layer, 0);
    gear_attention_args a = {&lk, &lv, c->n_head, ly->n_blocks, kb, vb,
                             ly->buf[0], ly->buf[1], stride, ly->tokens % c->block,
                             qb, group, (unsigned)nq, scale, ob};
    /* The fused kernels work in fp32.  A huge finite query can overflow
     * their intermediates where the scores themselves fit (a dot product,
     * a minimum's term, a rounding bound), and an exponential's clamp can
     * then turn the Inf or NaN into a finite, wrong weight: such queries
     * take the core's path, which ref runs and which accumulates in
     * double, so every backend gives ref's status and output. */
    int fused = c->ctx->be->attention && !scores_may_overflow(qb, qn / c->d, c->d, scale);
    st = fused ? gear_backend_failed(c->ctx, c->ctx->be->attention(c->ctx->state, &a), "attention")
               : GEAR_ERR_UNSUPPORTED;
    if (st == GEAR_ERR_UNSUPPORTED) { /* no fused kernel for this shape: the core's path */
        st = gear_attention_layer(c->ctx, &a);
        fused = 0;
    }
    size_t bad = st ? qn : first_nonfinite(ob, qn);
    if (fused && bad < qn) { /* any other overflow: the same */
        st = gear_attention_layer(c->ctx, &a);
        bad = st ? qn : first_nonfinite(ob, qn);
    }
    /* Finite inputs can still overflow fp32 (a query of 1e38 times a key of
     * 10): refuse rather than hand back NaN or Inf with GEAR_OK. */
    if (bad < qn)
        st = gear_fail(GEAR_ERR_RANGE, "attention overflowed fp32 (query head %zu: values too "
                       "large); the output was not written", bad / ((size_t)nq * c->d));
    for (unsigned h = 0; h < hq && !st; h++)
        gear_view_write(out, h, 0, nq, c->d, ob + (size_t)h * nq * c->d);
done:
    free(qb);
    free(ob);
    free(kb);
    free(vb);
    return st;
}

/* Reconstruction in the stored shape. */
static gear_status decompress_stored(gear_cache *c, unsigned layer, gear_tensor *k, gear_tensor *v)
{
    gear_status st = GEAR_OK;
    const gear_layer *ly = &c->layers[layer];
    gear_tensor *dst[2] = {k, v};
    int64_t H = c->n_head, T = ly->tokens, D = c->d;
    if (T == 0) return gear_fail(GEAR_ERR_SHAPE, "layer %u is empty", layer);
    for (int kv = 0; kv < 2 && !st; kv++)
        if (dst[kv]) st = gear_view_check(dst[kv], kv ? "v" : "k", &H, &T, &D);
    if (st) return st;
    /* a head's blocks in batches of up to 64 (the backend may spread them
     * over its threads) */
    enum { BATCH = 64 };
    size_t nd = (size_t)c->block * c->d;
    float *x = malloc(sizeof(float) * nd * BATCH);
    if (!x) return gear_fail(GEAR_ERR_NO_MEMORY, "decompress scratch");
    const uint8_t *blk[BATCH];
    unsigned nbuf = ly->tokens % c->block;
    for (int kv = 0; kv < 2 && !st; kv++) {
        if (!dst[kv]) continue;
        for (unsigned h = 0; h < c->n_head && !st; h++) {
            gear_block_layout L = gear_cache_layout(c, kv, layer, h);
            for (unsigned b0 = 0; b0 < ly->n_blocks && !st; b0 += BATCH) {
                unsigned m = ly->n_blocks - b0 < BATCH ? ly->n_blocks - b0 : BATCH;
                for (unsigned i = 0; i < m; i++) blk[i] = gear_cache_block(c, ly, kv, b0 + i, h);
                /* fp16 rows: straight from the backend's threads, where it can */
                const uint16_t *rows;
                size_t ld;
                if (gear_view_f16_rows(dst[kv], h, (int64_t)b0 * c->block, &rows, &ld) &&
                    gear_view_rows_disjoint(dst[kv])) {
                    uint16_t *os[BATCH];
                    for (unsigned i = 0; i < m; i++) os[i] = (uint16_t *)rows + (size_t)i * c->block * ld;
                    st = gear_pipeline_reconstruct_f16(c->ctx, &L, m, blk, os, ld);
                    if (st != GEAR_ERR_UNSUPPORTED) continue;
                    st = GEAR_OK;
                }
                st = gear_pipeline_reconstruct_batch(c->ctx, &L, m, blk, x);
                for (unsigned i = 0; i < m && !st; i++)
                    gear_view_write(dst[kv], h, (int64_t)(b0 + i) * c->block, c->block, c->d,
                                    x + i * nd);
            }
            if (!st && nbuf)
                gear_view_write(dst[kv], h, (int64_t)ly->n_blocks * c->block, nbuf, c->d,
                                ly->buf[kv] + (size_t)h * c->block * c->d);
        }
    }
    free(x);
    return st;
}

gear_status gear_cache_stats_get(const gear_cache *c, gear_cache_stats *s)
{
    if (!c || !s) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_cache_stats_get: NULL argument");
    memset(s, 0, sizeof *s);
    /* entries of the model's K/V that a block stands for (more than it
     * holds under head compression) */
    uint64_t per_block_entries = (uint64_t)c->block * c->d_in * c->n_head_in / c->n_head;
    for (unsigned l = 0; l < c->n_layer; l++) {
        const gear_layer *ly = &c->layers[l];
        uint64_t nb = (uint64_t)ly->n_blocks * c->n_head, nbuf = ly->tokens % c->block;
        s->tokens += ly->tokens;
        s->blocks += 2 * nb;
        s->compressed_bytes += nb * (c->L[0].bytes + c->L[1].bytes);
        s->compressed_entries += 2 * nb * per_block_entries;
        s->buffer_entries += 2 * nbuf * c->n_head * c->d;
        s->fp16_bytes += 2 * 2 * (uint64_t)ly->tokens * c->n_head_in * c->d_in;
    }
    if (c->cal)
        for (int kv = 0; kv < 2; kv++)
            s->calib_bytes += sizeof(float) * (gear_calib_cb_floats(c->cal, kv) +
                                               gear_calib_hc_mean_floats(c->cal) +
                                               gear_calib_hc_u_floats(c->cal));
    s->buffer_bytes = s->buffer_entries * sizeof(float);
    s->bpe = s->compressed_entries ? 8.0 * (double)s->compressed_bytes / (double)s->compressed_entries
                                   : 0.0;
    return GEAR_OK;
}

/* ------------------------------------------------------------------
 * The API's shapes.  Without head compression they are the stored ones.
 * With it (arXiv 2406.07056), K/V of each group of g heads are projected
 * on the calibration's basis: x~ = U^T (x - mean).  Attention never
 * reconstructs keys: q.k = (U_h^T q).x~ + q.mean_h, and the second term
 * is the same for every position, so softmax drops it; the output is
 * U_h o~ + mean_h (the weights sum to 1). */

static int head_compressed(const gear_cache *c) { return c->cal && c->cal->p.hc_group; }

/* Model head h's part of its group's projection: rows of U (d_in x m at
 * stride m), the same columns of U^T (m rows at stride g*d_in), its mean. */
typedef struct hc_part {
    const float *U, *Ut, *mean;
    size_t ld;
} hc_part;

static hc_part hc_rows(const gear_cache *c, int kv, unsigned layer, unsigned h)
{
    const gear_calib *cal = c->cal;
    unsigned g = cal->p.hc_group, gd = g * c->d_in, j = h / g, hh = h % g;
    size_t grp = (size_t)layer * c->n_head + j, off = (size_t)hh * c->d_in;
    hc_part p = {cal->hc_u[kv] + (grp * gd + off) * c->d, c->hc_ut[kv] + grp * gd * c->d + off,
                 cal->hc_mean[kv] + grp * gd + off, gd};
    return p;
}

/* A contiguous fp32 [h, t, d] view. */
static gear_tensor f32_view(float *p, int64_t h, int64_t t, int64_t d)
{
    gear_tensor x;
    gear_tensor_init(&x, p, GEAR_F32, 3, h, t, d, 0);
    return x;
}

gear_status gear_cache_append(gear_cache *c, unsigned layer, const gear_tensor *k,
                              const gear_tensor *v)
{
    gear_status st = check_layer(c, layer);
    if (st) return st;
    if (!head_compressed(c)) return append_stored(c, layer, k, v);
    int64_t H = c->n_head_in, T = 0, D = c->d_in;
    st = gear_view_check(k, "k", &H, &T, &D);
    if (!st) st = gear_view_check(v, "v", &H, &T, &D);
    if (st) return st;
    if ((uint64_t)c->layers[layer].tokens + (uint64_t)T > c->max_tokens) /* before any work */
        return gear_fail(GEAR_ERR_CAPACITY, "layer %u holds %u tokens; %lld more exceed max_tokens %u",
                         layer, c->layers[layer].tokens, (long long)T, c->max_tokens);
    size_t nx = (size_t)T * H * D, ny = (size_t)T * c->n_head * c->d;
    float *x = malloc(sizeof(float) * (nx + D + 1)), *y[2] = {NULL, NULL};
    float *yh = malloc(sizeof(float) * (ny + 1));
    for (int kv = 0; kv < 2; kv++) y[kv] = malloc(sizeof(float) * (ny + 1));
    if (!x || !yh || !y[0] || !y[1]) st = gear_fail(GEAR_ERR_NO_MEMORY, "append projection");
    const gear_tensor *src[2] = {k, v};
    for (int kv = 0; kv < 2 && !st; kv++) {
        float *row = x + nx; /* token-major [t][head][d], as the projection reads it */
        for (int64_t h = 0; h < H && !st; h++)
            for (int64_t t = 0; t < T && !st; t++) {
                st = gear_view_read(src[kv], h, t, 1, D, row, 1);
                memcpy(x + ((size_t)t * H + h) * D, row, sizeof(float) * D);
            }
        if (st) break;
        gear_calib_project(c->cal, layer, kv, x, (size_t)T, yh);
        for (unsigned j = 0; j < c->n_head; j++) /* [t][head][m] -> [head][t][m] */
            for (int64_t t = 0; t < T; t++)
                memcpy(y[kv] + ((size_t)j * T + t) * c->d, yh + ((size_t)t * c->n_head + j) * c->d,
                       sizeof(float) * c->d);
    }
    if (!st) {
        gear_tensor tk = f32_view(y[0], c->n_head, T, c->d), tv = f32_view(y[1], c->n_head, T, c->d);
        st = append_stored(c, layer, &tk, &tv);
        if (st == GEAR_ERR_RANGE) /* its position is in the projected (stored) heads */
            st = gear_fail(GEAR_ERR_RANGE, "a head-compressed value leaves the fp16 range "
                           "(projected heads of %u channels): %s", c->d, gear_last_error_message());
    }
    free(x);
    free(yh);
    free(y[0]);
    free(y[1]);
    return st;
}

gear_status gear_cache_attention(gear_cache *c, unsigned layer, const gear_tensor *q, float scale,
                                 gear_tensor *out)
{
    gear_status st = check_layer(c, layer);
    if (st) return st;
    if (!head_compressed(c)) return attention_stored(c, layer, q, scale, out);
    int64_t hq = 0, nq = 0, D = c->d_in;
    st = gear_view_check(q, "q", &hq, &nq, &D);
    if (!st) st = gear_view_check(out, "out", &hq, &nq, &D);
    if (st) return st;
    if (hq % c->n_head_in)
        return gear_fail(GEAR_ERR_SHAPE, "%lld query heads is not a multiple of %u KV heads",
                         (long long)hq, c->n_head_in);
    unsigned group = (unsigned)(hq / c->n_head_in), m = c->d;
    size_t rows = (size_t)hq * nq;
    float *qm = malloc(sizeof(float) * rows * m), *om = malloc(sizeof(float) * rows * m);
    float *row = malloc(sizeof(float) * ((size_t)nq * D + 1));
    float *res = malloc(sizeof(float) * (rows * (size_t)D + 1)); /* all heads before writing */
    if (!qm || !om || !row || !res) st = gear_fail(GEAR_ERR_NO_MEMORY, "attention projection");
    for (int64_t h = 0; h < hq && !st; h++) { /* q~ = U_h^T q */
        hc_part hp = hc_rows(c, 0, layer, (unsigned)(h / group));
        st = gear_view_read(q, h, 0, nq, D, row, 0);
        for (int64_t t = 0; t < nq && !st; t++)
            gear_hc_down(hp.U, (unsigned)D, m, row + t * D, NULL, qm + ((size_t)h * nq + t) * m);
        for (size_t i = 0; i < (size_t)nq * m && !st; i++)
            if (!isfinite(qm[(size_t)h * nq * m + i]))
                st = gear_fail(GEAR_ERR_RANGE, "query head %lld overflows fp32 when projected; the "
                               "output was not written", (long long)h);
    }
    if (!st) {
        gear_tensor tq = f32_view(qm, hq, nq, m), to = f32_view(om, hq, nq, m);
        st = attention_stored(c, layer, &tq, scale, &to);
    }
    for (int64_t h = 0; h < hq && !st; h++) { /* o = U_h o~ + mean_h */
        hc_part hp = hc_rows(c, 1, layer, (unsigned)(h / group));
        float *o = res + (size_t)h * nq * D;
        for (int64_t t = 0; t < nq; t++)
            gear_hc_up(hp.Ut, hp.ld, (unsigned)D, m, om + ((size_t)h * nq + t) * m, hp.mean, o + t * D);
        for (int64_t i = 0; i < nq * D && !st; i++)
            if (!isfinite(o[i]))
                st = gear_fail(GEAR_ERR_RANGE, "attention overflowed fp32 (query head %lld); the "
                               "output was not written", (long long)h);
    }
    for (int64_t h = 0; h < hq && !st; h++) gear_view_write(out, h, 0, nq, D, res + (size_t)h * nq * D);
    free(qm);
    free(om);
    free(row);
    free(res);
    return st;
}

gear_status gear_cache_decompress(gear_cache *c, unsigned layer, gear_tensor *k, gear_tensor *v)
{
    gear_status st = check_layer(c, layer);
    if (st) return st;
    if (!head_compressed(c)) return decompress_stored(c, layer, k, v);
    const gear_layer *ly = &c->layers[layer];
    gear_tensor *dst[2] = {k, v};
    int64_t H = c->n_head_in, T = ly->tokens, D = c->d_in;
    if (T == 0) return gear_fail(GEAR_ERR_SHAPE, "layer %u is empty", layer);
    for (int kv = 0; kv < 2 && !st; kv++)
        if (dst[kv]) st = gear_view_check(dst[kv], kv ? "v" : "k", &H, &T, &D);
    if (st) return st;
    size_t ny = (size_t)c->n_head * T * c->d;
    float *y = malloc(sizeof(float) * ny), *x = malloc(sizeof(float) * (size_t)T * D);
    if (!y || !x) st = gear_fail(GEAR_ERR_NO_MEMORY, "decompress projection");
    for (int kv = 0; kv < 2 && !st; kv++) {
        if (!dst[kv]) continue;
        gear_tensor ty = f32_view(y, c->n_head, T, c->d);
        st = decompress_stored(c, layer, kv ? NULL : &ty, kv ? &ty : NULL);
        for (int64_t h = 0; h < H && !st; h++) {
            hc_part hp = hc_rows(c, kv, layer, (unsigned)h);
            const float *yj = y + (size_t)(h / c->cal->p.hc_group) * T * c->d;
            for (int64_t t = 0; t < T; t++)
                gear_hc_up(hp.Ut, hp.ld, (unsigned)D, c->d, yj + (size_t)t * c->d, hp.mean, x + t * D);
            gear_view_write(dst[kv], h, 0, T, D, x);
        }
    }
    free(y);
    free(x);
    return st;
}
