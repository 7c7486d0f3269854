/*
 * check_format.c - the serialized formats (docs/FORMAT.md): stream round
 * trips for f32/f16/bf16 and strided views with the tail kept exactly;
 * every single-byte corruption and every truncation of a stream and of a
 * saved cache is rejected with a GEAR_ERR_FORMAT_* status; the specific
 * statuses for bad magic, version, CRC and fields; cache save/load through
 * files and memory giving identical caches.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "testutil.h"
#include "internal.h"

#define STREAM_HDR 64

static gear_context *ctx;

static void setup(void) { ctx = tu_ctx("ref"); }
static void teardown(void)
{
    gear_context_free(ctx);
    ctx = NULL;
}

/* A small config with every section present: outliers (k = 1 per group of
 * 8), rank 2, block 16. */
static gear_config small_cfg(gear_kind kind)
{
    gear_config c = tu_preset("gear2", kind);
    c.block = 16;
    c.group = 8;
    c.outlier_ratio = 0.25f;
    return c;
}

static void fix_block_crc(uint8_t *blk)
{
    uint32_t bytes = gear_get_u32(blk);
    gear_put_u32(blk + 4, gear_crc32c(0, blk + 8, bytes - 8));
}

static void fix_stream_hdr_crc(uint8_t *s) { gear_put_u32(s + 60, gear_crc32c(0, s, 60)); }

/* ------------------------------------------------------------ round trips */

static void check_stream_info(const uint8_t *s, size_t len, const gear_config *cfg, int H, int T,
                              int d)
{
    int64_t shape[3] = {0, 0, 0};
    gear_config got;
    memset(&got, 0, sizeof got);
    TU_OK(gear_stream_info(s, len, shape, &got));
    TU_EQ(shape[0], H);
    TU_EQ(shape[1], T);
    TU_EQ(shape[2], d);
    TU_EQ(got.kind, cfg->kind);
    TU_EQ(got.bits, cfg->bits);
    TU_EQ(got.group, cfg->group);
    TU_CHECK(got.outlier_ratio == cfg->outlier_ratio);
    TU_EQ(got.rank, cfg->rank);
    TU_EQ(got.iters, cfg->iters);
    TU_EQ(got.block, cfg->block);
    TU_CHECK(got.seed == cfg->seed);
    TU_OK(gear_stream_info(s, len, NULL, NULL));
}

START_TEST(test_roundtrip_f32)
{
    const int H = 2, T = 16 * 2 + 5, d = 16;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(1 + (uint64_t)kind, (gear_kind)kind, H, T, d);
        /* the tail may hold any finite value: make one tiny and one not an fp16 */
        x[(size_t)(T - 1) * d + 3] = 1e-30f;
        x[(size_t)(2 * T - 1) * d + 5] = 0.1f;
        gear_config cfg = small_cfg((gear_kind)kind);
        cfg.seed = 42;
        size_t len;
        uint8_t *s = tu_compress(ctx, &cfg, x, H, T, d, 3, &len);
        TU_CHECK(!memcmp(s, "GEARSTRM", 8));
        TU_EQ(gear_get_u32(s + 8), 1);
        check_stream_info(s, len, &cfg, H, T, d);
        float *y = tu_decompress(ctx, s, len, H, T, d);
        float *want = tu_alloc_f((size_t)H * T * d);
        tu_gear_tensor(x, H, T, d, &cfg, 3, want);
        TU_ASSERT(tu_rel_err(y, want, (size_t)H * T * d) < 1e-6, "differs from the spec by %g",
                      tu_rel_err(y, want, (size_t)H * T * d));
        for (int h = 0; h < H; h++)
            for (int t = 32; t < T; t++)
                for (int c = 0; c < d; c++) {
                    size_t i = ((size_t)h * T + t) * d + c;
                    TU_ASSERT(!memcmp(&y[i], &x[i], 4), "tail (%d,%d,%d) %a vs %a", h, t, c,
                                  (double)y[i], (double)x[i]);
                }
        free(y);
        free(want);
        free(s);
        free(x);
    }
}
END_TEST

START_TEST(test_roundtrip_f16_bf16)
{
    const int H = 2, T = 16 * 3 + 7, d = 16;
    const size_t N = (size_t)H * T * d;
    float *x = tu_synth(7, GEAR_KEY, H, T, d);
    uint16_t *xh = malloc(2 * N), *out16 = malloc(2 * N);
    float *xf = tu_alloc_f(N);
    TU_CHECK(xh && out16);
    gear_config cfg = small_cfg(GEAR_KEY);
    for (int dt = GEAR_F16; dt <= GEAR_BF16; dt++) {
        for (size_t i = 0; i < N; i++) {
            xh[i] = dt == GEAR_F16 ? gear_float_to_half(x[i]) : gear_float_to_bf16(x[i]);
            xf[i] = dt == GEAR_F16 ? gear_half_to_float(xh[i]) : gear_bf16_to_float(xh[i]);
        }
        gear_tensor t;
        TU_OK(gear_tensor_init(&t, xh, (gear_dtype)dt, 3, H, T, d, 0));
        size_t bound, len;
        TU_OK(gear_compress_bound(&cfg, &t, &bound));
        uint8_t *s = malloc(bound);
        TU_CHECK((s) != NULL);
        TU_OK(gear_compress(ctx, &cfg, &t, 0, s, bound, &len));
        TU_EQ(len, bound);
        TU_EQ(s[58], dt);
        /* the compressed blocks are those of the same values given as f32 */
        size_t lf;
        uint8_t *sf = tu_compress(ctx, &cfg, xf, H, T, d, 0, &lf);
        gear_block_info info;
        TU_OK(gear_block_info_get(&cfg, d, &info));
        size_t blocks = (size_t)H * 3 * info.bytes;
        TU_CHECK(!memcmp(s + STREAM_HDR, sf + STREAM_HDR, blocks));
        /* the tail is stored in the input dtype: smaller than the f32 one */
        size_t tail16 = (32 + 7 * (size_t)d * 2 + 15) / 16 * 16;
        TU_EQ(len, STREAM_HDR + blocks + (size_t)H * tail16);
        /* decode to f32, and to the same dtype */
        float *y = tu_decompress(ctx, s, len, H, T, d);
        float *yf = tu_decompress(ctx, sf, lf, H, T, d);
        TU_EQ(tu_count_diff_bits(y, yf, N), 0);
        gear_tensor o;
        TU_OK(gear_tensor_init(&o, out16, (gear_dtype)dt, 3, H, T, d, 0));
        TU_OK(gear_decompress(ctx, s, len, &o));
        for (int h = 0; h < H; h++)
            for (int tt = 0; tt < T; tt++)
                for (int c = 0; c < d; c++) {
                    size_t i = ((size_t)h * T + tt) * d + c;
                    uint16_t w = tt >= 48 ? xh[i]
                               : dt == GEAR_F16 ? gear_float_to_half(y[i]) : gear_float_to_bf16(y[i]);
                    TU_ASSERT(out16[i] == w, "dtype %d (%d,%d,%d): %04x vs %04x", dt, h, tt, c,
                                  out16[i], w);
                }
        free(y);
        free(yf);
        free(s);
        free(sf);
    }
    free(x);
    free(xh);
    free(out16);
    free(xf);
}
END_TEST

START_TEST(test_strided_views)
{
    const int H = 3, T = 16 + 9, d = 16;
    const size_t N = (size_t)H * T * d;
    float *x = tu_synth(9, GEAR_VALUE, H, T, d);
    gear_config cfg = small_cfg(GEAR_VALUE);
    size_t len;
    uint8_t *ref = tu_compress(ctx, &cfg, x, H, T, d, 1, &len);
    float *yref = tu_decompress(ctx, ref, len, H, T, d);
    /* token-major [T][H][d] buffer viewed as [H, T, d] */
    float *tm = tu_alloc_f(N);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < d; c++) tm[((size_t)t * H + h) * d + c] = x[((size_t)h * T + t) * d + c];
    gear_tensor v;
    TU_OK(gear_tensor_init(&v, tm, GEAR_F32, 3, H, T, d, 0));
    v.strides[0] = d;
    v.strides[1] = (int64_t)H * d;
    v.strides[2] = 1;
    uint8_t *s = malloc(len);
    TU_CHECK((s) != NULL);
    size_t w;
    TU_OK(gear_compress(ctx, &cfg, &v, 1, s, len, &w));
    TU_EQ(w, len);
    TU_CHECK(!memcmp(s, ref, len));
    /* channels interleaved with another tensor: channel stride 2 */
    float *il = tu_alloc_f(2 * N);
    for (size_t i = 0; i < N; i++) {
        il[2 * i] = x[i];
        il[2 * i + 1] = NAN; /* never read */
    }
    TU_OK(gear_tensor_init(&v, il, GEAR_F32, 3, H, T, d, 0));
    v.strides[0] = (int64_t)2 * T * d;
    v.strides[1] = 2 * d;
    v.strides[2] = 2;
    memset(s, 0, len);
    TU_OK(gear_compress(ctx, &cfg, &v, 1, s, len, &w));
    TU_CHECK(!memcmp(s, ref, len));
    /* decompress into a strided output: the gaps stay untouched */
    for (size_t i = 0; i < 2 * N; i++) il[i] = -7.0f;
    TU_OK(gear_decompress(ctx, ref, len, &v));
    for (size_t i = 0; i < N; i++) {
        TU_CHECK(!memcmp(&il[2 * i], &yref[i], 4));
        TU_CHECK(il[2 * i + 1] == -7.0f);
    }
    /* a 2-D [T, d] view is a one-head stream */
    size_t l1;
    uint8_t *one = tu_compress(ctx, &cfg, x, 1, T, d, 0, &l1);
    TU_OK(gear_tensor_init(&v, x, GEAR_F32, 2, T, d, 0, 0));
    uint8_t *s2 = malloc(l1);
    TU_CHECK((s2) != NULL);
    TU_OK(gear_compress(ctx, &cfg, &v, 0, s2, l1, &w));
    TU_EQ(w, l1);
    TU_CHECK(!memcmp(one, s2, l1));
    /* 2-D with a channel stride (head 0 of the interleaved buffer) and a row stride */
    TU_OK(gear_tensor_init(&v, il, GEAR_F32, 2, T, d, 0, 0));
    v.strides[0] = 2 * d;
    v.strides[1] = 2;
    for (size_t i = 0; i < N; i++) il[2 * i] = x[i];
    memset(s2, 0, l1);
    TU_OK(gear_compress(ctx, &cfg, &v, 0, s2, l1, &w));
    TU_CHECK(!memcmp(one, s2, l1));
    float *y2 = tu_alloc_f((size_t)T * d);
    gear_tensor o2;
    TU_OK(gear_tensor_init(&o2, y2, GEAR_F32, 2, T, d, 0, 0));
    TU_OK(gear_decompress(ctx, one, l1, &o2));
    float *y3 = tu_decompress(ctx, one, l1, 1, T, d);
    TU_EQ(tu_count_diff_bits(y2, y3, (size_t)T * d), 0);
    /* and decoded into a strided 2-D view */
    for (size_t i = 0; i < 2 * N; i++) il[i] = -7.0f;
    TU_OK(gear_decompress(ctx, one, l1, &v));
    for (size_t i = 0; i < (size_t)T * d; i++) {
        TU_CHECK(!memcmp(&il[2 * i], &y3[i], 4));
        TU_CHECK(il[2 * i + 1] == -7.0f);
    }
    free(y2);
    free(y3);
    free(s2);
    free(one);
    free(il);
    free(tm);
    free(s);
    free(yref);
    free(ref);
    free(x);
}
END_TEST

START_TEST(test_bound_and_small_dst)
{
    const int H = 2, T = 40, d = 16;
    float *x = tu_synth(10, GEAR_KEY, H, T, d);
    gear_config cfg = small_cfg(GEAR_KEY);
    gear_tensor t;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, H, T, d, 0));
    size_t bound, w = 123;
    TU_OK(gear_compress_bound(&cfg, &t, &bound));
    uint8_t *s = malloc(bound + 16);
    TU_CHECK((s) != NULL);
    TU_STATUS(gear_compress(ctx, &cfg, &t, 0, s, bound - 1, &w), GEAR_ERR_DST_TOO_SMALL);
    TU_EQ(w, 0);
    TU_STATUS(gear_compress(ctx, &cfg, &t, 0, s, 0, &w), GEAR_ERR_DST_TOO_SMALL);
    TU_OK(gear_compress(ctx, &cfg, &t, 0, s, bound + 16, &w));
    TU_EQ(w, bound);
    /* the fp16 preset: raw fp16 blocks, lossless up to fp16 rounding */
    gear_config f = tu_preset("fp16", GEAR_KEY);
    f.block = 16;
    size_t len;
    uint8_t *sf = tu_compress(ctx, &f, x, H, T, d, 0, &len);
    TU_EQ(len, STREAM_HDR + (size_t)H * 2 * (32 + 16 * 16 * 2) +
                               (size_t)H * ((32 + 8 * 16 * 4 + 15) / 16 * 16));
    float *y = tu_decompress(ctx, sf, len, H, T, d);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < T * d; i++) {
            size_t k = (size_t)h * T * d + i;
            float want = i < 32 * d ? tu_h(x[k]) : x[k];
            TU_CHECK(!memcmp(&y[k], &want, 4));
        }
    free(y);
    free(sf);
    free(s);
    free(x);
}
END_TEST

/* --------------------------------------------------------- corruption */

/* Every single-byte corruption (three masks) of a stream is rejected with a
 * FORMAT status by gear_stream_info and gear_decompress, which leaves its
 * output untouched. */
static void flips_stream(const uint8_t *s0, size_t len, int H, int T, int d)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    uint8_t *s = malloc(len);
    size_t N = (size_t)H * T * d;
    float *out = tu_alloc_f(N), *sentinel = tu_alloc_f(N);
    TU_CHECK((s) != NULL);
    for (size_t i = 0; i < N; i++) sentinel[i] = out[i] = -1234.5f;
    gear_tensor o;
    TU_OK(gear_tensor_init(&o, out, GEAR_F32, 3, H, T, d, 0));
    memcpy(s, s0, len);
    for (size_t i = 0; i < len; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            s[i] ^= masks[m];
            gear_status st = gear_decompress(ctx, s, len, &o);
            TU_ASSERT(TU_IS_FORMAT_ERR(st), "byte %zu ^ %02x: decompress -> %s", i, masks[m],
                          gear_status_string(st));
            st = gear_stream_info(s, len, NULL, NULL);
            TU_ASSERT(TU_IS_FORMAT_ERR(st), "byte %zu ^ %02x: stream_info -> %s", i, masks[m],
                          gear_status_string(st));
            s[i] ^= masks[m];
        }
    TU_CHECK(!memcmp(out, sentinel, N * sizeof(float)));
    TU_OK(gear_decompress(ctx, s, len, &o)); /* restored: decodes again */
    free(out);
    free(sentinel);
    free(s);
}

START_TEST(test_stream_every_byte_flip)
{
    const int H = 2, T = 16 * 2 + 5, d = 16;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(20 + (uint64_t)kind, (gear_kind)kind, H, T, d);
        gear_config cfg = small_cfg((gear_kind)kind);
        size_t len;
        uint8_t *s = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
        flips_stream(s, len, H, T, d);
        free(s);
        free(x);
    }
    /* raw fp16 blocks, and 3-bit codes without outliers or rank */
    float *x = tu_synth(22, GEAR_KEY, 1, 21, 8);
    gear_config f = tu_preset("fp16", GEAR_KEY);
    f.block = 8;
    size_t len;
    uint8_t *s = tu_compress(ctx, &f, x, 1, 21, 8, 0, &len);
    flips_stream(s, len, 1, 21, 8);
    free(s);
    gear_config k3 = tu_cfg(GEAR_KEY, 3, 5, 0.0f, 0, 0, 8);
    s = tu_compress(ctx, &k3, x, 1, 21, 8, 0, &len);
    flips_stream(s, len, 1, 21, 8);
    free(s);
    free(x);
}
END_TEST

START_TEST(test_stream_every_truncation)
{
    const int H = 2, T = 16 * 2 + 5, d = 16;
    float *x = tu_synth(30, GEAR_VALUE, H, T, d);
    gear_config cfg = small_cfg(GEAR_VALUE);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
    float *out = tu_alloc_f((size_t)H * T * d);
    gear_tensor o;
    TU_OK(gear_tensor_init(&o, out, GEAR_F32, 3, H, T, d, 0));
    for (size_t l = 0; l < len; l++) {
        /* a private copy of exactly l bytes, so that reading past it is caught by tools */
        uint8_t *c = malloc(l ? l : 1);
        TU_CHECK((c) != NULL);
        memcpy(c, s, l);
        gear_status st = gear_decompress(ctx, c, l, &o);
        TU_ASSERT(TU_IS_FORMAT_ERR(st), "length %zu of %zu -> %s", l, len, gear_status_string(st));
        if (l >= 64) TU_ASSERT(st == GEAR_ERR_FORMAT_TRUNCATED, "length %zu -> %s", l, gear_status_string(st));
        st = gear_stream_info(c, l, NULL, NULL);
        TU_ASSERT(TU_IS_FORMAT_ERR(st), "info length %zu -> %s", l, gear_status_string(st));
        free(c);
    }
    TU_STATUS(gear_decompress(ctx, s, 0, &o), GEAR_ERR_FORMAT_TRUNCATED);
    TU_STATUS(gear_decompress(ctx, s, 5, &o), GEAR_ERR_FORMAT_TRUNCATED);
    /* trailing bytes are an error too */
    uint8_t *longer = calloc(len + 16, 1);
    TU_CHECK((longer) != NULL);
    memcpy(longer, s, len);
    for (size_t extra = 1; extra <= 16; extra++)
        TU_STATUS(gear_decompress(ctx, longer, len + extra, &o), GEAR_ERR_FORMAT_CORRUPT);
    free(longer);
    free(out);
    free(s);
    free(x);
}
END_TEST

START_TEST(test_stream_specific_statuses)
{
    const int H = 1, T = 16 * 2 + 3, d = 16;
    float *x = tu_synth(40, GEAR_VALUE, H, T, d);
    gear_config cfg = small_cfg(GEAR_VALUE);
    size_t len;
    uint8_t *s0 = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
    uint8_t *s = malloc(len + 64);
    TU_CHECK((s) != NULL);
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, 16, (unsigned)d, 2, 8, 0.25f, 2);
    uint8_t *blk = s + STREAM_HDR; /* first block */
#define RESET() memcpy(s, s0, len)
    RESET();
    memcpy(s, "GEARSTRX", 8);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_MAGIC);
    RESET();
    memcpy(s, "GEARCACH", 8); /* a cache file is not a stream */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_MAGIC);
    RESET();
    gear_put_u32(s + 8, 2); /* version 2 with a valid header CRC */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_VERSION);
    RESET();
    gear_put_u32(s + 8, 0);
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_VERSION);
    RESET();
    s[60] ^= 1; /* header CRC */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CRC);
    RESET();
    s[50] ^= 1; /* H changed, CRC not updated */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CRC);
    RESET();
    gear_put_u32(s + 48, 0); /* H = 0 */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 52, T + 16); /* header promises another block */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_TRUNCATED);
    RESET();
    s[16 + 1] = 5; /* config bits 5 */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    s[59] = 1; /* reserved */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    s[58] = 3; /* dtype */
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    /* blocks */
    RESET();
    blk[L.off_codes] ^= 0x04; /* payload, CRC stale */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CRC);
    RESET();
    blk[5] ^= 0x40; /* the CRC itself */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CRC);
    RESET();
    /* outlier 0 of row 0 (group 0, positions 0..7) moved to channel 9 (group 1) */
    gear_put_u16(blk + L.off_oidx, 9);
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_oidx, 60000); /* outside the block */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    { /* the two outliers of a group swapped: no longer sorted */
        uint16_t a = gear_get_u16(blk + L.off_oidx), b = gear_get_u16(blk + L.off_oidx + 2);
        ck_assert_uint_lt(a, b);
        gear_put_u16(blk + L.off_oidx, b);
        gear_put_u16(blk + L.off_oidx + 2, a);
        fix_block_crc(blk);
        TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    }
    RESET();
    gear_put_u16(blk + L.off_oidx + 2, gear_get_u16(blk + L.off_oidx)); /* duplicate */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    { /* a nonzero code under outlier 0 (value block: its row is the token,
       * its position the channel; 2-bit codes): FORMAT says 0 there */
        unsigned flat = gear_get_u16(blk + L.off_oidx), t = flat / (unsigned)d, c = flat % (unsigned)d;
        uint8_t *row = blk + L.off_codes + (size_t)t * L.row_bytes;
        ck_assert_uint_eq((row[c / 4] >> (2 * (c % 4))) & 3u, 0);
        row[c / 4] |= (uint8_t)(1u << (2 * (c % 4)));
        fix_block_crc(blk);
        TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
        float *back = tu_alloc_f((size_t)H * T * d);
        gear_tensor to;
        TU_OK(gear_tensor_init(&to, back, GEAR_F32, 3, H, T, d, 0));
        TU_STATUS(gear_decompress(ctx, s, len, &to), GEAR_ERR_FORMAT_CORRUPT);
        free(back);
    }
    RESET();
    gear_put_u16(blk + L.off_scales, 0xBC00); /* negative scale */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_mins + 2, 0x7E00); /* NaN minimum */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_oval, 0x7C00); /* Inf outlier value */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_b, 0xFC00); /* -Inf factor */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_a, 0x3C01); /* A beyond 1: its columns are orthonormal */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u16(blk + L.off_a, 0xBC00); /* -1 is still fine */
    fix_block_crc(blk);
    TU_OK(gear_stream_info(s, len, NULL, NULL));
    RESET();
    blk[9] = 3; /* bits 3: a different layout than the header promises */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    blk[8] = 0; /* kind key in a value stream */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    blk[28] = 1; /* reserved */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    blk[11] = 0x80; /* unknown flag */
    fix_block_crc(blk);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(blk, (uint32_t)L.bytes + 16); /* size disagrees with the layout */
    fix_block_crc(blk);
    TU_STATUS2(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT, GEAR_ERR_FORMAT_CRC);
    RESET();
    gear_put_u32(blk, 17); /* not a multiple of 16 */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(blk, 0xFFFFFFF0u); /* beyond the data */
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_TRUNCATED);
    RESET();
    { /* the tail block claims f16 although the stream says f32 */
        uint8_t *tail = s + STREAM_HDR + 2 * L.bytes;
        TU_EQ(tail[11], GEAR_BLOCK_RAW | (GEAR_F32 << GEAR_BLOCK_DTYPE_SHIFT));
        tail[11] = GEAR_BLOCK_RAW | (GEAR_F16 << GEAR_BLOCK_DTYPE_SHIFT);
        fix_block_crc(tail);
        TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    }
    { /* a valid block of another config (rank 1) in place of block 0 */
        gear_config other = cfg;
        other.rank = 1;
        size_t lo;
        uint8_t *so = tu_compress(ctx, &other, x, H, T, d, 0, &lo);
        tu_layout Lo;
        tu_layout_make(&Lo, GEAR_VALUE, 16, (unsigned)d, 2, 8, 0.25f, 1);
        ck_assert_uint_lt(Lo.bytes, L.bytes);
        RESET();
        memcpy(blk, so + STREAM_HDR, Lo.bytes);
        TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
        free(so);
    }
    RESET();
    TU_OK(gear_stream_info(s, len, NULL, NULL));
    TU_STATUS(gear_stream_info(NULL, len, NULL, NULL), GEAR_ERR_INVALID_ARG);
#undef RESET
    free(s);
    free(s0);
    free(x);
}
END_TEST

/* The outlier tests of a key block (row = channel, position = token; the
 * parse's fast path folds them into one flag per block): each corruption
 * is still FORMAT_CORRUPT, and decompression refuses it. */
START_TEST(test_key_outliers_corrupt)
{
    const int H = 1, T = 16 * 2, d = 16;
    float *x = tu_synth(41, GEAR_KEY, H, T, d);
    gear_config cfg = small_cfg(GEAR_KEY);
    size_t len;
    uint8_t *s0 = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
    TU_OK(gear_stream_info(s0, len, NULL, NULL));
    uint8_t *s = malloc(len);
    TU_CHECK((s) != NULL);
    tu_layout L;
    tu_layout_make(&L, GEAR_KEY, 16, (unsigned)d, 2, 8, 0.25f, 2);
    uint8_t *blk = s + STREAM_HDR;
    float *back = tu_alloc_f((size_t)H * T * d);
    gear_tensor to;
    TU_OK(gear_tensor_init(&to, back, GEAR_F32, 3, H, T, d, 0));
    const uint8_t *blk0 = s0 + STREAM_HDR;
    unsigned f0 = gear_get_u16(blk0 + L.off_oidx), f1 = gear_get_u16(blk0 + L.off_oidx + 2);
    ck_assert_uint_eq(f0 % (unsigned)d, 0); /* channel 0, group 0 (tokens 0..7) */
    ck_assert_uint_lt(f0, f1);
    const unsigned bad[] = {
        16 * d + 0,             /* token 16: beyond the block */
        f0 + 1,                 /* channel 1 */
        8 * d + 0,              /* token 8: group 1 */
        f1,                     /* the pair's second outlier: a duplicate */
    };
    for (size_t i = 0; i <= sizeof bad / sizeof bad[0] + 1; i++) {
        memcpy(s, s0, len);
        if (i < sizeof bad / sizeof bad[0]) {
            gear_put_u16(blk + L.off_oidx, (uint16_t)bad[i]);
        } else if (i == sizeof bad / sizeof bad[0] + 1) {
            /* group 1's first outlier (channel 0, tokens 8..15) moved to
             * token 0, below its group */
            ck_assert_uint_ge(gear_get_u16(blk + L.off_oidx + 4) / (unsigned)d, 8);
            gear_put_u16(blk + L.off_oidx + 4, 0);
        } else { /* a nonzero code under outlier 0: row = channel 0, position = its token */
            unsigned t = f0 / (unsigned)d;
            blk[L.off_codes + t / 4] |= (uint8_t)(1u << (2 * (t % 4)));
        }
        fix_block_crc(blk);
        TU_ASSERT(gear_stream_info(s, len, NULL, NULL) == GEAR_ERR_FORMAT_CORRUPT, "corruption %zu accepted", i);
        TU_STATUS(gear_decompress(ctx, s, len, &to), GEAR_ERR_FORMAT_CORRUPT);
    }
    free(back);
    free(s);
    free(s0);
    free(x);
}
END_TEST

START_TEST(test_wrapped_error_detail)
{
    /* a header whose config record is invalid (bits 5, CRC valid): the
     * FORMAT_CORRUPT message must still carry the detail of what is wrong
     * (the field and its value), not a garbled copy of itself */
    float x[16 * 16];
    tu_fill_normal(3, x, 16 * 16, 1.0f);
    gear_config cfg = tu_cfg(GEAR_KEY, 2, 0, 0.0f, 0, 0, 16);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, 16, 16, 0, &len);
    s[16 + 1] = 5;
    fix_stream_hdr_crc(s);
    TU_STATUS(gear_stream_info(s, len, NULL, NULL), GEAR_ERR_FORMAT_CORRUPT);
    const char *m = gear_last_error_message();
    TU_ASSERT(strstr(m, "bits") && strstr(m, "5"), "stream: detail lost: '%s'", m);
    free(s);
    gear_config ck = tu_preset("kivi2", GEAR_KEY), cv = tu_preset("kivi2", GEAR_VALUE);
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(ctx, &ck, &cv, 1, 1, 16, 64, &c));
    s = tu_cache_save(c, &len);
    s[48 + 1] = 5; /* value config: bits 5 */
    gear_put_u32(s + 108, gear_crc32c(0, s, 108));
    gear_cache *out = NULL;
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    m = gear_last_error_message();
    TU_ASSERT(strstr(m, "bits") && strstr(m, "5"), "cache: detail lost: '%s'", m);
    free(s);
    gear_cache_free(c);
}
END_TEST

/* ---------------------------------------------------------- cache files */

static gear_cache *small_cache(int layers, int H, int d, unsigned max_tokens, const char *preset)
{
    gear_config ck, cv;
    if (preset) {
        ck = tu_preset(preset, GEAR_KEY);
        cv = tu_preset(preset, GEAR_VALUE);
        ck.block = cv.block = 16;
        if (ck.group) ck.group = cv.group = 8;
    } else {
        ck = small_cfg(GEAR_KEY);
        cv = small_cfg(GEAR_VALUE);
        cv.seed = 5;
    }
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(ctx, &ck, &cv, (unsigned)layers, (unsigned)H, (unsigned)d, max_tokens, &c));
    return c;
}

static void fill_cache(gear_cache *c, int layer, int H, int T, int d, uint64_t seed)
{
    float *k = tu_synth(seed, GEAR_KEY, H, T, d), *v = tu_synth(seed + 1, GEAR_VALUE, H, T, d);
    TU_OK(tu_cache_append(c, (unsigned)layer, k, v, H, T, d));
    free(k);
    free(v);
}

/* Two caches hold the same content: save bytes, tokens, stats, decompressed
 * K/V and attention all identical. */
static void assert_same_cache(gear_cache *a, gear_cache *b, int layers, int H, int d)
{
    size_t la, lb;
    uint8_t *sa = tu_cache_save(a, &la), *sb = tu_cache_save(b, &lb);
    TU_EQ(la, lb);
    TU_CHECK(!memcmp(sa, sb, la));
    free(sa);
    free(sb);
    gear_cache_stats xa, xb;
    TU_OK(gear_cache_stats_get(a, &xa));
    TU_OK(gear_cache_stats_get(b, &xb));
    TU_CHECK(!memcmp(&xa, &xb, sizeof xa));
    for (int l = 0; l < layers; l++) {
        unsigned ta, tb;
        TU_OK(gear_cache_tokens(a, (unsigned)l, &ta));
        TU_OK(gear_cache_tokens(b, (unsigned)l, &tb));
        TU_EQ(ta, tb);
        if (!ta) continue;
        float *ka, *va, *kb, *vb;
        tu_cache_decompress(a, (unsigned)l, H, (int)ta, d, &ka, &va);
        tu_cache_decompress(b, (unsigned)l, H, (int)tb, d, &kb, &vb);
        TU_EQ(tu_count_diff_bits(ka, kb, (size_t)H * ta * d), 0);
        TU_EQ(tu_count_diff_bits(va, vb, (size_t)H * ta * d), 0);
        int hq = 2 * H, nq = ta >= 2 ? 2 : 1;
        float *q = tu_alloc_f((size_t)hq * nq * d), *oa = tu_alloc_f((size_t)hq * nq * d),
              *ob = tu_alloc_f((size_t)hq * nq * d);
        gear_synth_normal(77 + (uint64_t)l, hq * nq * d, q);
        TU_OK(tu_cache_attention(a, (unsigned)l, q, hq, nq, d, 0.25f, oa));
        TU_OK(tu_cache_attention(b, (unsigned)l, q, hq, nq, d, 0.25f, ob));
        TU_EQ(tu_count_diff_bits(oa, ob, (size_t)hq * nq * d), 0);
        free(q);
        free(oa);
        free(ob);
        free(ka);
        free(va);
        free(kb);
        free(vb);
    }
}

static int count_dir_entries(const char *dir)
{
    DIR *dp = opendir(dir);
    TU_CHECK((dp) != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(dp)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(dp);
    return n;
}

START_TEST(test_cache_file_roundtrip)
{
    const int L = 3, H = 2, d = 16;
    gear_cache *c = small_cache(L, H, d, 200, NULL);
    fill_cache(c, 0, H, 16 * 2 + 5, d, 1); /* blocks and a buffer */
    fill_cache(c, 2, H, 16, d, 3);         /* exactly one block; layer 1 empty */
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/cache.gear", dir);
    TU_OK(gear_cache_save(c, path));
    TU_EQ(count_dir_entries(dir), 1); /* no temporary file left behind */
    size_t flen, mlen;
    uint8_t *file = tu_read_file(path, &flen), *mem = tu_cache_save(c, &mlen);
    TU_EQ(flen, mlen);
    TU_CHECK(!memcmp(file, mem, flen));
    TU_CHECK(!memcmp(file, "GEARCACH", 8));
    gear_cache *c2 = NULL;
    TU_OK(gear_cache_load(ctx, path, &c2));
    TU_CHECK((c2) != NULL);
    assert_same_cache(c, c2, L, H, d);
    /* both go on identically: the buffer came back too */
    fill_cache(c, 0, H, 20, d, 11);
    fill_cache(c2, 0, H, 20, d, 11);
    fill_cache(c, 1, H, 3, d, 13);
    fill_cache(c2, 1, H, 3, d, 13);
    assert_same_cache(c, c2, L, H, d);
    /* saving over an existing file replaces it */
    TU_OK(gear_cache_save(c2, path));
    TU_EQ(count_dir_entries(dir), 1);
    gear_cache *c3 = NULL;
    TU_OK(gear_cache_load(ctx, path, &c3));
    assert_same_cache(c, c3, L, H, d);
    gear_cache_free(c3);
    free(file);
    free(mem);
    gear_cache_free(c);
    gear_cache_free(c2);
    tu_rmtree(dir);
}
END_TEST

START_TEST(test_cache_mem_roundtrip)
{
    static const char *presets[] = {NULL, "fp16", "kivi2", "gear4", "gearl2"};
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
        const int H = 2, d = 16;
        gear_cache *c = small_cache(2, H, d, 100, presets[p]);
        fill_cache(c, 0, H, 16 * 3 + 1, d, 100 + p);
        fill_cache(c, 1, H, 7, d, 200 + p);
        size_t need = 0, got = 0;
        TU_STATUS(gear_cache_save_mem(c, NULL, 0, &need), GEAR_ERR_DST_TOO_SMALL);
        ck_assert_uint_gt(need, 112);
        uint8_t *buf = malloc(need);
        TU_CHECK((buf) != NULL);
        TU_STATUS(gear_cache_save_mem(c, buf, need - 1, &got), GEAR_ERR_DST_TOO_SMALL);
        TU_EQ(got, need);
        TU_OK(gear_cache_save_mem(c, buf, need, &got));
        TU_EQ(got, need);
        gear_cache *c2 = NULL;
        TU_OK(gear_cache_load_mem(ctx, buf, need, &c2));
        assert_same_cache(c, c2, 2, H, d);
        gear_cache_free(c2);
        free(buf);
        gear_cache_free(c);
    }
    /* an empty cache */
    gear_cache *e = small_cache(2, 3, 8, 50, "kivi2"), *e2 = NULL;
    size_t len;
    uint8_t *buf = tu_cache_save(e, &len);
    TU_EQ(len, 112 + 2 * 16);
    TU_OK(gear_cache_load_mem(ctx, buf, len, &e2));
    assert_same_cache(e, e2, 2, 3, 8);
    free(buf);
    gear_cache_free(e);
    gear_cache_free(e2);
}
END_TEST

static void flips_cache(const uint8_t *s0, size_t len)
{
    static const uint8_t masks[] = {0x01, 0x80, 0xFF};
    uint8_t *s = malloc(len);
    TU_CHECK((s) != NULL);
    memcpy(s, s0, len);
    for (size_t i = 0; i < len; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            s[i] ^= masks[m];
            gear_cache *c = (gear_cache *)s; /* must be reset to NULL */
            gear_status st = gear_cache_load_mem(ctx, s, len, &c);
            TU_ASSERT(TU_IS_FORMAT_ERR(st), "byte %zu ^ %02x: load -> %s", i, masks[m],
                          gear_status_string(st));
            TU_CHECK((c) == NULL);
            s[i] ^= masks[m];
        }
    gear_cache *c = NULL;
    TU_OK(gear_cache_load_mem(ctx, s, len, &c));
    gear_cache_free(c);
    free(s);
}

START_TEST(test_cache_every_byte_flip)
{
    /* 1 layer, 2 heads, d = 16, block 16, one block and 5 buffered tokens */
    gear_cache *c = small_cache(1, 2, 16, 64, NULL);
    fill_cache(c, 0, 2, 21, 16, 300);
    size_t len;
    uint8_t *s = tu_cache_save(c, &len);
    flips_cache(s, len);
    free(s);
    gear_cache_free(c);
    /* 2 layers with the fp16 preset (raw fp16 blocks), one layer buffer-only */
    c = small_cache(2, 1, 8, 64, "fp16");
    fill_cache(c, 0, 1, 17, 8, 310);
    fill_cache(c, 1, 1, 3, 8, 320);
    s = tu_cache_save(c, &len);
    flips_cache(s, len);
    free(s);
    gear_cache_free(c);
}
END_TEST

START_TEST(test_cache_every_truncation)
{
    gear_cache *c = small_cache(2, 2, 16, 64, NULL);
    fill_cache(c, 0, 2, 21, 16, 400);
    fill_cache(c, 1, 2, 4, 16, 410);
    size_t len;
    uint8_t *s = tu_cache_save(c, &len);
    for (size_t l = 0; l < len; l++) {
        uint8_t *cp = malloc(l ? l : 1);
        TU_CHECK((cp) != NULL);
        memcpy(cp, s, l);
        gear_cache *out = (gear_cache *)cp;
        gear_status st = gear_cache_load_mem(ctx, cp, l, &out);
        TU_ASSERT(TU_IS_FORMAT_ERR(st), "length %zu of %zu -> %s", l, len, gear_status_string(st));
        if (l >= 112) TU_ASSERT(st == GEAR_ERR_FORMAT_TRUNCATED, "length %zu -> %s", l, gear_status_string(st));
        TU_CHECK((out) == NULL);
        free(cp);
    }
    uint8_t *longer = calloc(len + 1, 1);
    TU_CHECK((longer) != NULL);
    memcpy(longer, s, len);
    gear_cache *out = NULL;
    TU_STATUS(gear_cache_load_mem(ctx, longer, len + 1, &out), GEAR_ERR_FORMAT_CORRUPT);
    TU_CHECK((out) == NULL);
    free(longer);
    /* the same through a file */
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/t.gear", dir);
    FILE *f = fopen(path, "wb");
    TU_CHECK((f) != NULL);
    TU_EQ(fwrite(s, 1, len / 2, f), len / 2);
    fclose(f);
    TU_STATUS(gear_cache_load(ctx, path, &out), GEAR_ERR_FORMAT_TRUNCATED);
    TU_CHECK((out) == NULL);
    tu_rmtree(dir);
    free(s);
    gear_cache_free(c);
}
END_TEST

START_TEST(test_cache_specific_statuses)
{
    gear_cache *c = small_cache(1, 2, 16, 64, NULL);
    fill_cache(c, 0, 2, 21, 16, 500);
    size_t len;
    uint8_t *s0 = tu_cache_save(c, &len);
    uint8_t *s = malloc(len);
    TU_CHECK((s) != NULL);
    gear_cache *out = NULL;
#define RESET() memcpy(s, s0, len)
#define FIXHDR() gear_put_u32(s + 108, gear_crc32c(0, s, 108))
    RESET();
    s[7] = 'X';
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_MAGIC);
    RESET();
    memcpy(s, "GEARSTRM", 8);
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_MAGIC);
    RESET();
    gear_put_u32(s + 8, 2);
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_VERSION);
    RESET();
    s[108] ^= 0x20;
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CRC);
    RESET();
    gear_put_u32(s + 80, 0); /* n_layer 0 */
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 88, 0); /* head_dim 0 */
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 80, 0x7FFFFFFF); /* absurd layer count: no huge allocation, just an error */
    FIXHDR();
    TU_FAILS(gear_cache_load_mem(ctx, s, len, &out));
    TU_CHECK((out) == NULL);
    RESET();
    s[100] = 1; /* reserved */
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    s[16] = 1; /* key config says "value" */
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 92, 20); /* max_tokens below the 21 tokens the layer holds */
    FIXHDR();
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    s[112 + 14] ^= 1; /* layer header CRC */
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CRC);
    RESET();
    s[112] = 'X'; /* layer magic, CRC fixed */
    gear_put_u32(s + 112 + 12, gear_crc32c(0, s + 112, 12));
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 112 + 4, 1); /* layer index */
    gear_put_u32(s + 112 + 12, gear_crc32c(0, s + 112, 12));
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    gear_put_u32(s + 112 + 8, 37); /* more tokens than stored */
    gear_put_u32(s + 112 + 12, gear_crc32c(0, s + 112, 12));
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_TRUNCATED);
    RESET();
    gear_put_u32(s + 112 + 8, 16); /* fewer tokens: the buffer blocks become trailing data */
    gear_put_u32(s + 112 + 12, gear_crc32c(0, s + 112, 12));
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CORRUPT);
    RESET();
    s[128 + 40] ^= 1; /* first key block payload */
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CRC);
    RESET();
    s[len - 1] ^= 1; /* last buffer block */
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_CRC);
    TU_CHECK((out) == NULL);
    /* garbage and tiny inputs */
    TU_STATUS(gear_cache_load_mem(ctx, s, 0, &out), GEAR_ERR_FORMAT_TRUNCATED);
    TU_STATUS(gear_cache_load_mem(ctx, "GEAR", 4, &out), GEAR_ERR_FORMAT_TRUNCATED);
    TU_STATUS(gear_cache_load_mem(ctx, "GEARCACH", 8, &out), GEAR_ERR_FORMAT_TRUNCATED);
    memset(s, 0x5A, len);
    TU_STATUS(gear_cache_load_mem(ctx, s, len, &out), GEAR_ERR_FORMAT_MAGIC);
#undef RESET
#undef FIXHDR
    free(s);
    free(s0);
    gear_cache_free(c);
}
END_TEST

START_TEST(test_cache_io_errors)
{
    gear_cache *c = small_cache(1, 1, 16, 64, NULL), *out = NULL;
    fill_cache(c, 0, 1, 5, 16, 600);
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/missing/sub/cache.gear", dir);
    TU_STATUS(gear_cache_save(c, path), GEAR_ERR_IO);
    snprintf(path, sizeof path, "%s/none.gear", dir);
    TU_STATUS(gear_cache_load(ctx, path, &out), GEAR_ERR_IO);
    TU_CHECK((out) == NULL);
    TU_FAILS(gear_cache_load(ctx, dir, &out)); /* a directory */
    TU_CHECK((out) == NULL);
    /* a file that is something else entirely */
    snprintf(path, sizeof path, "%s/text.txt", dir);
    FILE *f = fopen(path, "w");
    TU_CHECK((f) != NULL);
    fputs("hello, this is not a cache file at all, not even close\n", f);
    fclose(f);
    TU_STATUS(gear_cache_load(ctx, path, &out), GEAR_ERR_FORMAT_MAGIC);
    /* an empty file */
    f = fopen(path, "w");
    TU_CHECK((f) != NULL);
    fclose(f);
    TU_STATUS(gear_cache_load(ctx, path, &out), GEAR_ERR_FORMAT_TRUNCATED);
    TU_CHECK((out) == NULL);
    /* a failed save leaves an existing file untouched */
    snprintf(path, sizeof path, "%s/keep.gear", dir);
    TU_OK(gear_cache_save(c, path));
    size_t l1, l2;
    uint8_t *before = tu_read_file(path, &l1);
    TU_STATUS(gear_cache_save(NULL, path), GEAR_ERR_INVALID_ARG);
    uint8_t *after = tu_read_file(path, &l2);
    TU_EQ(l1, l2);
    TU_CHECK(!memcmp(before, after, l1));
    free(before);
    free(after);
    tu_rmtree(dir);
    gear_cache_free(c);
}
END_TEST

static Suite *format_suite(void)
{
    Suite *s = suite_create("format");
    TCase *tc = tu_tcase("stream");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_roundtrip_f32);
    tcase_add_test(tc, test_roundtrip_f16_bf16);
    tcase_add_test(tc, test_strided_views);
    tcase_add_test(tc, test_bound_and_small_dst);
    tcase_add_test(tc, test_stream_every_byte_flip);
    tcase_add_test(tc, test_stream_every_truncation);
    tcase_add_test(tc, test_stream_specific_statuses);
    tcase_add_test(tc, test_key_outliers_corrupt);
    tcase_add_test(tc, test_wrapped_error_detail);
    suite_add_tcase(s, tc);
    tc = tu_tcase("cache");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cache_file_roundtrip);
    tcase_add_test(tc, test_cache_mem_roundtrip);
    tcase_add_test(tc, test_cache_every_byte_flip);
    tcase_add_test(tc, test_cache_every_truncation);
    tcase_add_test(tc, test_cache_specific_statuses);
    tcase_add_test(tc, test_cache_io_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(format_suite(), 0); }
