/*
 * check_quant.c - the quantizer and outlier selection (DESIGN s2) through
 * gear_compress / gear_decompress: hand-computed tiny groups for every bit
 * width, an independent min/max group quantizer (tests/testutil.c) compared
 * exactly (codes, scales, minima, outliers, reconstruction), constant
 * groups, tails, outlier ties, the reported outlier fraction, bits per
 * entry against the formula, and the quality ordering KIVI > GEAR-L > GEAR.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* Code j of a packed row, read bit by bit (independent of gear_code_get). */
static unsigned code_at(const uint8_t *row, unsigned bits, unsigned j)
{
    unsigned v = 0;
    for (unsigned b = 0; b < bits; b++) {
        size_t bit = (size_t)j * bits + b;
        v |= (unsigned)((row[bit / 8] >> (bit % 8)) & 1u) << b;
    }
    return v;
}

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t u32_at(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Seeded data with ties, repeated values, constant runs and a spread of
 * magnitudes. */
static void make_data(uint64_t seed, float *x, size_t n)
{
    uint64_t s = seed * 7919 + 1;
    for (size_t i = 0; i < n; i++) {
        double u = tu_rand01(&s), v = tu_rand01(&s) * 2.0 - 1.0;
        if (u < 0.55) x[i] = (float)(v * 3.0);
        else if (u < 0.75) x[i] = (float)(floor(v * 8.0) * 0.5);     /* ties */
        else if (u < 0.85) x[i] = i ? x[i - 1] : 1.0f;               /* repeats */
        else if (u < 0.95) x[i] = (float)(v * 40.0);                  /* large */
        else x[i] = (float)(v * 1e-3);                                /* tiny */
    }
}

/* Compress x [H][T][d] with cfg (ref), decompress, and compare everything
 * with the independent implementation: reconstruction bitwise, and for
 * every full block the codes, padding, scales, minima and outliers. */
static double check_against_indep(const gear_config *cfg, const float *x, int H, int T, int d)
{
    size_t len;
    uint8_t *s = tu_compress(ctx, cfg, x, H, T, d, 0, &len);
    float *got = tu_decompress(ctx, s, len, H, T, d);
    float *want = tu_alloc_f((size_t)H * T * d);
    tu_gear_tensor(x, H, T, d, cfg, 0, want);
    size_t nd = (size_t)H * T * d;
    for (size_t i = 0; i < nd; i++)
        TU_ASSERT(memcmp(&got[i], &want[i], 4) == 0,
                      "bits %u group %u s %g kind %d shape [%d,%d,%d]: entry %zu (x=%a) "
                      "decoded %a, expected %a",
                      cfg->bits, cfg->group, (double)cfg->outlier_ratio, cfg->kind, H, T, d, i,
                      (double)x[i], (double)got[i], (double)want[i]);
    unsigned n = cfg->block;
    int nb = T / (int)n;
    tu_layout L;
    tu_layout_make(&L, cfg->kind, n, (unsigned)d, cfg->bits, cfg->group, cfg->outlier_ratio,
                   cfg->rank);
    size_t ng = (size_t)L.rows * L.gpr, bnd = (size_t)n * d;
    unsigned *codes = malloc(sizeof *codes * bnd);
    uint16_t *sc = malloc(2 * ng), *mn = malloc(2 * ng), *oi = malloc(2 * (L.n_out + 1));
    float *xq = tu_alloc_f(bnd);
    TU_CHECK(codes && sc && mn && oi);
    for (int h = 0; h < H; h++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + ((size_t)h * T + (size_t)b * n) * d;
            const uint8_t *blk = s + STREAM_HDR + ((size_t)h * nb + b) * L.bytes;
            tu_quant_block(xb, n, (unsigned)d, cfg->kind, cfg->bits, cfg->group,
                           cfg->outlier_ratio, xq, codes, NULL, sc, mn, oi);
            TU_EQ(u32_at(blk), L.bytes);
            TU_EQ(u32_at(blk + 20), L.n_out);
            for (unsigned r = 0; r < L.rows; r++) {
                const uint8_t *row = blk + L.off_codes + (size_t)r * L.row_bytes;
                for (unsigned p = 0; p < L.row_len; p++) {
                    size_t f = cfg->kind == GEAR_KEY ? (size_t)p * d + r : (size_t)r * d + p;
                    TU_ASSERT(code_at(row, cfg->bits, p) == codes[f],
                                  "block (%d,%d) row %u pos %u: code %u, expected %u", h, b, r, p,
                                  code_at(row, cfg->bits, p), codes[f]);
                }
                for (size_t bit = (size_t)L.row_len * cfg->bits; bit < 8 * (size_t)L.row_bytes; bit++)
                    TU_ASSERT(!((row[bit / 8] >> (bit % 8)) & 1), "padding bit %zu set", bit);
            }
            for (size_t g = 0; g < ng; g++) {
                TU_ASSERT(u16_at(blk + L.off_scales + 2 * g) == sc[g],
                              "group %zu scale %04x, expected %04x", g,
                              u16_at(blk + L.off_scales + 2 * g), sc[g]);
                TU_ASSERT(u16_at(blk + L.off_mins + 2 * g) == mn[g],
                              "group %zu min %04x, expected %04x", g,
                              u16_at(blk + L.off_mins + 2 * g), mn[g]);
            }
            for (unsigned j = 0; j < L.n_out; j++) {
                TU_ASSERT(u16_at(blk + L.off_oidx + 2 * j) == oi[j],
                              "outlier %u index %u, expected %u", j,
                              u16_at(blk + L.off_oidx + 2 * j), oi[j]);
                TU_EQ(u16_at(blk + L.off_oval + 2 * j), gear_float_to_half(xb[oi[j]]));
            }
        }
    double err = tu_rel_err(got, x, nd);
    free(codes);
    free(sc);
    free(mn);
    free(oi);
    free(xq);
    free(s);
    free(got);
    free(want);
    return err;
}

/* ------------------------------------------------ hand-computed groups */

/* One value row of 5 channels (block of 1 token): expected codes and
 * reconstruction computed by hand. */
static void hand_case(unsigned bits, const float x[5], const unsigned want_code[5],
                      const float want[5], uint16_t want_scale, uint16_t want_min)
{
    gear_config cfg = tu_cfg(GEAR_VALUE, bits, 0, 0.0f, 0, 0, 1);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, 1, 5, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, 1, 5, bits, 0, 0.0f, 0);
    TU_EQ(len, STREAM_HDR + L.bytes);
    const uint8_t *blk = s + STREAM_HDR;
    /* pack the expected codes: little-endian bit string, zero padding */
    uint8_t row[8] = {0};
    for (unsigned j = 0; j < 5; j++)
        for (unsigned b = 0; b < bits; b++)
            if ((want_code[j] >> b) & 1u) row[(j * bits + b) / 8] |= (uint8_t)(1u << ((j * bits + b) % 8));
    TU_EQ(L.row_bytes, bits == 8 ? 8 : 4);
    for (unsigned i = 0; i < L.row_bytes; i++)
        TU_ASSERT(blk[L.off_codes + i] == row[i], "%u bits: code byte %u is %02x, expected %02x",
                      bits, i, blk[L.off_codes + i], row[i]);
    TU_EQ(u16_at(blk + L.off_scales), want_scale);
    TU_EQ(u16_at(blk + L.off_mins), want_min);
    float *got = tu_decompress(ctx, s, len, 1, 1, 5);
    for (int j = 0; j < 5; j++)
        TU_ASSERT(got[j] == want[j], "%u bits: entry %d decoded %g, expected %g", bits, j,
                      (double)got[j], (double)want[j]);
    free(got);
    free(s);
}

START_TEST(test_hand_groups_every_bit_width)
{
    { /* 1 bit: mn -1, delta 4; 0.5 is a tie -> 0 */
        const float x[5] = {-1.0f, 0.2f, 3.0f, 1.0f, 0.999f};
        const unsigned c[5] = {0, 0, 1, 0, 0};
        const float w[5] = {-1.0f, -1.0f, 3.0f, -1.0f, -1.0f};
        hand_case(1, x, c, w, 0x4400 /* 4 */, 0xBC00 /* -1 */);
    }
    { /* 2 bits: delta 1; 0.5 -> 0 and 2.5 -> 2 (ties to even), 1.5 -> 2 */
        const float x[5] = {0.0f, 0.5f, 1.5f, 2.5f, 3.0f};
        const unsigned c[5] = {0, 0, 2, 2, 3};
        const float w[5] = {0.0f, 0.0f, 2.0f, 2.0f, 3.0f};
        hand_case(2, x, c, w, 0x3C00, 0x0000);
    }
    { /* 2 bits with an offset: mn 10, delta 2; 13 -> 1.5 -> 2 -> 14 */
        const float x[5] = {10.0f, 12.0f, 14.0f, 16.0f, 13.0f};
        const unsigned c[5] = {0, 1, 2, 3, 2};
        const float w[5] = {10.0f, 12.0f, 14.0f, 16.0f, 14.0f};
        hand_case(2, x, c, w, 0x4000 /* 2 */, 0x4900 /* 10 */);
    }
    { /* 3 bits: delta 1; 3.5 -> 4, 2.5 -> 2 */
        const float x[5] = {0.0f, 7.0f, 3.5f, 2.5f, 0.7f};
        const unsigned c[5] = {0, 7, 4, 2, 1};
        const float w[5] = {0.0f, 7.0f, 4.0f, 2.0f, 1.0f};
        hand_case(3, x, c, w, 0x3C00, 0x0000);
    }
    { /* 4 bits: delta 1; 7.5 -> 8, 8.5 -> 8 */
        const float x[5] = {0.0f, 15.0f, 7.5f, 8.5f, 1.49f};
        const unsigned c[5] = {0, 15, 8, 8, 1};
        const float w[5] = {0.0f, 15.0f, 8.0f, 8.0f, 1.0f};
        hand_case(4, x, c, w, 0x3C00, 0x0000);
    }
    { /* 8 bits: delta 1; 127.5 -> 128, 128.5 -> 128 */
        const float x[5] = {0.0f, 255.0f, 127.5f, 128.5f, 3.2f};
        const unsigned c[5] = {0, 255, 128, 128, 3};
        const float w[5] = {0.0f, 255.0f, 128.0f, 128.0f, 3.0f};
        hand_case(8, x, c, w, 0x3C00, 0x0000);
    }
    { /* 4 bits, negative range: mn -8, delta 0.5 (7.5/15); -4.25 -> 7.5 -> 8 -> -4 */
        const float x[5] = {-8.0f, -0.5f, -4.25f, -4.0f, -7.9f};
        const unsigned c[5] = {0, 15, 8, 8, 0};
        const float w[5] = {-8.0f, -0.5f, -4.0f, -4.0f, -8.0f};
        hand_case(4, x, c, w, 0x3800 /* 0.5 */, 0xC800 /* -8 */);
    }
}
END_TEST

START_TEST(test_hand_saturated_scale)
{
    /* 1 bit over [-65504, 65504]: delta 131008 overflows fp16 and is stored
     * as 65504; 65504 -> (131008/65504 = 2) clamped to 1 -> 0; 0 -> 1 -> 0 */
    const float x[5] = {-65504.0f, 65504.0f, 0.0f, -40000.0f, -30000.0f};
    const unsigned c[5] = {0, 1, 1, 0, 1};
    const float w[5] = {-65504.0f, 0.0f, 0.0f, -65504.0f, 0.0f};
    hand_case(1, x, c, w, 0x7BFF, 0xFBFF);
}
END_TEST

START_TEST(test_hand_8bit_grid_exact)
{
    /* 256 values on a 0.25 grid: 8 bits reconstruct them exactly */
    enum { D = 256 };
    float x[D];
    for (int i = 0; i < D; i++) x[i] = -20.0f + 0.25f * (float)((i * 37) % 256);
    gear_config cfg = tu_cfg(GEAR_VALUE, 8, 0, 0.0f, 0, 0, 1);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, 1, D, 0, &len);
    float *got = tu_decompress(ctx, s, len, 1, 1, D);
    for (int i = 0; i < D; i++) TU_ASSERT(got[i] == x[i], "entry %d: %g vs %g", i, (double)got[i], (double)x[i]);
    free(got);
    free(s);
}
END_TEST

/* ---------------------------------------------- independent quantizer */

START_TEST(test_indep_kivi_keys_values)
{
    static const unsigned bits[] = {1, 2, 3, 4, 8};
    static const unsigned groups[] = {0, 3, 8, 7, 64};
    static const int shapes[][2] = {{24, 20}, {16, 33}}; /* block n, head dim d */
    for (int kind = 0; kind < 2; kind++)
        for (size_t sh = 0; sh < 2; sh++) {
            int n = shapes[sh][0], d = shapes[sh][1], H = 2, T = 2 * n + 3;
            float *x = tu_alloc_f((size_t)H * T * d);
            make_data(100 + sh * 2 + (size_t)kind, x, (size_t)H * T * d);
            for (size_t b = 0; b < 5; b++)
                for (size_t g = 0; g < 5; g++) {
                    gear_config cfg = tu_cfg((gear_kind)kind, bits[b], groups[g], 0.0f, 0, 0,
                                             (unsigned)n);
                    check_against_indep(&cfg, x, H, T, d);
                }
            free(x);
        }
}
END_TEST

START_TEST(test_indep_outliers)
{
    static const float ratios[] = {0.1f, 0.25f, 0.5f, 1.0f, 0.02f};
    static const unsigned bits[] = {1, 2, 4, 8};
    static const unsigned groups[] = {0, 6, 10};
    for (int kind = 0; kind < 2; kind++) {
        int n = 20, d = 18, H = 2, T = 2 * n + 5;
        float *x = tu_alloc_f((size_t)H * T * d);
        make_data(200 + (uint64_t)kind, x, (size_t)H * T * d);
        for (size_t r = 0; r < 5; r++)
            for (size_t b = 0; b < 4; b++)
                for (size_t g = 0; g < 3; g++) {
                    gear_config cfg = tu_cfg((gear_kind)kind, bits[b], groups[g], ratios[r], 0, 0,
                                             (unsigned)n);
                    check_against_indep(&cfg, x, H, T, d);
                }
        free(x);
    }
}
END_TEST

START_TEST(test_indep_presets_structured)
{
    /* every quantizing preset without its low-rank part, on structured KV,
     * at the default block of 64 and d = 64 */
    static const char *names[] = {"kivi2", "kivi4", "kcvt4", "gear2", "gear4"};
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(7 + (uint64_t)kind, (gear_kind)kind, 2, 128 + 9, 64);
        for (size_t i = 0; i < 5; i++) {
            gear_config cfg = tu_preset(names[i], (gear_kind)kind);
            cfg.rank = 0;
            double e = check_against_indep(&cfg, x, 2, 128 + 9, 64);
            TU_CHECK(e > 0.0 && e < 0.5);
        }
        free(x);
    }
}
END_TEST

/* ------------------------------------------------------ special groups */

START_TEST(test_constant_groups)
{
    /* values: every token row constant (one value per token, not fp16) */
    enum { N = 8, D = 12 };
    float x[N * D];
    for (int t = 0; t < N; t++)
        for (int c = 0; c < D; c++) x[t * D + c] = 0.1f * (float)(t + 1) - 0.35f;
    static const unsigned bits[] = {1, 2, 3, 4, 8};
    for (size_t b = 0; b < 5; b++) {
        gear_config cfg = tu_cfg(GEAR_VALUE, bits[b], 5, 0.0f, 0, 0, N);
        size_t len;
        uint8_t *s = tu_compress(ctx, &cfg, x, 1, N, D, 0, &len);
        float *got = tu_decompress(ctx, s, len, 1, N, D);
        for (int i = 0; i < N * D; i++)
            TU_ASSERT(got[i] == tu_h(x[i]), "%u bits: entry %d decoded %a, expected fp16 %a",
                          bits[b], i, (double)got[i], (double)tu_h(x[i]));
        tu_layout L;
        tu_layout_make(&L, GEAR_VALUE, N, D, bits[b], 5, 0.0f, 0);
        const uint8_t *blk = s + STREAM_HDR;
        for (size_t g = 0; g < (size_t)L.rows * L.gpr; g++) {
            TU_EQ(u16_at(blk + L.off_scales + 2 * g), 0);
            TU_EQ(u16_at(blk + L.off_mins + 2 * g), gear_float_to_half(x[(g / L.gpr) * D]));
        }
        for (size_t i = 0; i < (size_t)L.rows * L.row_bytes; i++) TU_EQ(blk[L.off_codes + i], 0);
        free(got);
        free(s);
    }
    /* keys: a constant channel among varying ones; and an all-zero block */
    float y[N * D];
    tu_fill_normal(5, y, N * D, 1.0f);
    for (int t = 0; t < N; t++) y[t * D + 3] = -3.3f;
    gear_config cfg = tu_cfg(GEAR_KEY, 2, 0, 0.0f, 0, 0, N);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, y, 1, N, D, 0, &len);
    float *got = tu_decompress(ctx, s, len, 1, N, D);
    for (int t = 0; t < N; t++) TU_CHECK(got[t * D + 3] == tu_h(-3.3f));
    free(got);
    free(s);
    memset(y, 0, sizeof y);
    s = tu_compress(ctx, &cfg, y, 1, N, D, 0, &len);
    got = tu_decompress(ctx, s, len, 1, N, D);
    for (int i = 0; i < N * D; i++) TU_CHECK(got[i] == 0.0f);
    free(got);
    free(s);
}
END_TEST

START_TEST(test_tail_groups)
{
    /* values d = 10, group 4: groups of 4, 4 and a tail of 2 per token */
    enum { N = 2, D = 10 };
    float x[N * D] = {
        0, 1, 2, 3,  4, 5, 6, 7,  5, 8,          /* tail [5, 8]: mn 5, delta 1 */
        1, 1, 1, 1,  -2, 0, 2, 4, -6, -6.5f,     /* tail [-6, -6.5]: mn -6.5, delta 1/6 */
    };
    gear_config cfg = tu_cfg(GEAR_VALUE, 2, 4, 0.0f, 0, 0, N);
    gear_block_info info;
    TU_OK(gear_block_info_get(&cfg, D, &info));
    TU_EQ(info.groups_per_row, 3);
    TU_EQ(info.group, 4);
    TU_EQ(info.rows, N);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, N, D, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, N, D, 2, 4, 0.0f, 0);
    const uint8_t *blk = s + STREAM_HDR;
    /* token 0 tail group: exact; min 5 = 0x4500, scale 1 */
    TU_EQ(u16_at(blk + L.off_mins + 2 * 2), 0x4500);
    TU_EQ(u16_at(blk + L.off_scales + 2 * 2), 0x3C00);
    /* token 1, group 0 constant 1: scale 0; group 1 [-2..4]: delta 2, exact */
    TU_EQ(u16_at(blk + L.off_scales + 2 * 3), 0);
    TU_EQ(u16_at(blk + L.off_mins + 2 * 3), 0x3C00);
    TU_EQ(u16_at(blk + L.off_scales + 2 * 4), 0x4000);
    TU_EQ(u16_at(blk + L.off_mins + 2 * 5), gear_float_to_half(-6.5f));
    float *got = tu_decompress(ctx, s, len, 1, N, D);
    for (int i = 0; i < 18; i++) TU_ASSERT(got[i] == x[i], "entry %d: %g vs %g", i, (double)got[i], (double)x[i]);
    /* -6 in the last tail: code rint(0.5/fp16(1/6)) = 3 -> -6.5 + 3*fp16(1/6) */
    float dl = tu_h(0.5f / 3.0f);
    TU_CHECK(got[18] == fmaf(3.0f, dl, -6.5f));
    TU_CHECK(got[19] == -6.5f);
    free(got);
    free(s);
    /* keys n = 10 tokens, group 4: the same row through the token axis */
    float k[10 * 1];
    for (int t = 0; t < 10; t++) k[t] = x[t];
    cfg = tu_cfg(GEAR_KEY, 2, 4, 0.0f, 0, 0, 10);
    TU_OK(gear_block_info_get(&cfg, 1, &info));
    TU_EQ(info.groups_per_row, 3);
    TU_EQ(info.rows, 1);
    s = tu_compress(ctx, &cfg, k, 1, 10, 1, 0, &len);
    got = tu_decompress(ctx, s, len, 1, 10, 1);
    for (int t = 0; t < 10; t++) TU_CHECK(got[t] == k[t]);
    free(got);
    free(s);
    /* and odd tails against the independent quantizer */
    float *y = tu_alloc_f(3 * 29 * 23);
    make_data(31, y, 3 * 29 * 23);
    for (unsigned g = 2; g < 12; g += 3)
        for (int kind = 0; kind < 2; kind++) {
            gear_config c2 = tu_cfg((gear_kind)kind, 3, g, 0.3f, 0, 0, 13);
            check_against_indep(&c2, y, 3, 29, 23);
        }
    free(y);
}
END_TEST

/* --------------------------------------------------------------- outliers */

/* Compress one row (values, 1 token of 8 channels) with ratio s; check the
 * outlier indices and values. */
static void outlier_row(const float x[8], float s, const unsigned *want, unsigned nwant)
{
    gear_config cfg = tu_cfg(GEAR_VALUE, 2, 0, s, 0, 0, 1);
    size_t len;
    uint8_t *st = tu_compress(ctx, &cfg, x, 1, 1, 8, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, 1, 8, 2, 0, s, 0);
    TU_EQ(L.n_out, nwant);
    const uint8_t *blk = st + STREAM_HDR;
    TU_EQ(u32_at(blk + 20), nwant);
    for (unsigned i = 0; i < nwant; i++) {
        TU_ASSERT(u16_at(blk + L.off_oidx + 2 * i) == want[i], "s=%g outlier %u at %u, expected %u",
                      (double)s, i, u16_at(blk + L.off_oidx + 2 * i), want[i]);
        TU_EQ(u16_at(blk + L.off_oval + 2 * i), gear_float_to_half(x[want[i]]));
        TU_EQ(code_at(blk + L.off_codes, 2, want[i]), 0); /* codes 0 at outliers */
    }
    /* the rest is quantized over its own min/max */
    float mn = INFINITY, mx = -INFINITY;
    int is_o[8] = {0};
    for (unsigned i = 0; i < nwant; i++) is_o[want[i]] = 1;
    for (int i = 0; i < 8; i++)
        if (!is_o[i]) { mn = fminf(mn, x[i]); mx = fmaxf(mx, x[i]); }
    if (nwant == 8) mn = mx = 0.0f; /* no entry left: mn = 0, delta = 0 */
    float mnh = tu_h(mn), dl = tu_h((mx - mn) / 3.0f);
    TU_EQ(u16_at(blk + L.off_mins), gear_float_to_half(mn));
    TU_EQ(u16_at(blk + L.off_scales), gear_float_to_half((mx - mn) / 3.0f));
    float *got = tu_decompress(ctx, st, len, 1, 1, 8);
    for (int i = 0; i < 8; i++) {
        float w = is_o[i] ? tu_h(x[i]) : fmaf(fminf(fmaxf(rintf((x[i] - mnh) / dl), 0.0f), 3.0f), dl, mnh);
        TU_ASSERT(got[i] == w, "s=%g entry %d: %g, expected %g", (double)s, i, (double)got[i], (double)w);
    }
    free(got);
    free(st);
}

START_TEST(test_outlier_selection_hand)
{
    const float a[8] = {1, 9, 3, -4, 9, 2, -4, 5};
    /* k = 1: largest 9 (pos 1 before pos 4), smallest of the rest -4 (pos 3 before 6) */
    const unsigned w1[] = {1, 3};
    outlier_row(a, 0.25f, w1, 2);
    /* k = 2: 9@1, 9@4 and -4@3, -4@6, stored by position */
    const unsigned w2[] = {1, 3, 4, 6};
    outlier_row(a, 0.5f, w2, 4);
    /* ties everywhere */
    const float b[8] = {5, 5, 5, 0, 0, 0, 2, 2};
    const unsigned w3[] = {0, 3};
    outlier_row(b, 0.25f, w3, 2);
    const unsigned w4[] = {0, 1, 3, 4};
    outlier_row(b, 0.5f, w4, 4);
    /* a constant group: the largest is pos 0, the smallest of the rest pos 1 */
    const float c[8] = {7, 7, 7, 7, 7, 7, 7, 7};
    const unsigned w5[] = {0, 1};
    outlier_row(c, 0.25f, w5, 2);
    /* largest chosen first: with k = 4 all entries are outliers */
    const float e[8] = {-1, -2, -3, -4, -5, -6, -7, -8};
    const unsigned w6[] = {0, 1, 2, 3, 4, 5, 6, 7};
    outlier_row(e, 1.0f, w6, 8);
    /* decreasing row, k = 1: largest at 0, smallest at 7 */
    const unsigned w7[] = {0, 7};
    outlier_row(e, 0.25f, w7, 2);
    /* the minimum is also a tie with the maximum side: k = 3 (s = 0.75 -> 3.5 -> 3) */
    const float f[8] = {2, 2, 2, 2, 1, 1, 3, 0};
    const unsigned w8[] = {0, 1, 4, 5, 6, 7}; /* largest 3@6, 2@0, 2@1; smallest 0@7, 1@4, 1@5 */
    outlier_row(f, 0.75f, w8, 6);
}
END_TEST

START_TEST(test_outlier_selection_keys_hand)
{
    /* keys: n = 8 tokens x d = 2 channels, one group per channel, k = 1 */
    float x[8 * 2];
    const float ch0[8] = {1, 9, 3, -4, 9, 2, -4, 5};
    for (int t = 0; t < 8; t++) {
        x[t * 2 + 0] = ch0[t];
        x[t * 2 + 1] = 0.0f; /* constant channel */
    }
    gear_config cfg = tu_cfg(GEAR_KEY, 2, 0, 0.25f, 0, 0, 8);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, 8, 2, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_KEY, 8, 2, 2, 0, 0.25f, 0);
    TU_EQ(L.n_out, 4);
    const uint8_t *blk = s + STREAM_HDR;
    /* channel 0: tokens 1 and 3 -> flat 2, 6; channel 1: tokens 0, 1 -> flat 1, 3 */
    const unsigned want[4] = {2, 6, 1, 3};
    for (int i = 0; i < 4; i++) TU_EQ(u16_at(blk + L.off_oidx + 2 * i), want[i]);
    TU_EQ(u16_at(blk + L.off_oval + 0), 0x4880); /* 9 */
    TU_EQ(u16_at(blk + L.off_oval + 2), 0xC400); /* -4 */
    float *got = tu_decompress(ctx, s, len, 1, 8, 2);
    TU_CHECK(got[2] == 9.0f && got[6] == -4.0f);
    for (int t = 0; t < 8; t++) TU_CHECK(got[t * 2 + 1] == 0.0f);
    free(got);
    free(s);
}
END_TEST

START_TEST(test_all_outliers)
{
    /* s = 1, groups of 4: k = 2 per side, every entry is an outlier */
    enum { N = 3, D = 8 };
    float x[N * D];
    tu_fill_normal(77, x, N * D, 10.0f);
    gear_config cfg = tu_cfg(GEAR_VALUE, 2, 4, 1.0f, 0, 0, N);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, N, D, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, N, D, 2, 4, 1.0f, 0);
    TU_EQ(L.n_out, N * D);
    const uint8_t *blk = s + STREAM_HDR;
    for (unsigned g = 0; g < L.rows * L.gpr; g++) {
        TU_EQ(u16_at(blk + L.off_scales + 2 * g), 0);
        TU_EQ(u16_at(blk + L.off_mins + 2 * g), 0);
    }
    for (unsigned i = 0; i < L.n_out; i++) TU_EQ(u16_at(blk + L.off_oidx + 2 * i), i);
    float *got = tu_decompress(ctx, s, len, 1, N, D);
    for (int i = 0; i < N * D; i++) TU_CHECK(got[i] == tu_h(x[i]));
    free(got);
    free(s);
}
END_TEST

START_TEST(test_outlier_fraction)
{
    struct { gear_kind kind; unsigned n, d, group; float s; unsigned want; } cases[] = {
        {GEAR_KEY, 64, 128, 64, 0.02f, 256},   /* 128 channels x 2 */
        {GEAR_VALUE, 64, 128, 64, 0.02f, 256}, /* 64 tokens x 2 groups x 2 */
        {GEAR_VALUE, 64, 100, 64, 0.02f, 128}, /* groups 64 (k 1) and 36 (k 0) */
        {GEAR_KEY, 64, 128, 0, 0.02f, 256},    /* group 64 = whole row */
        {GEAR_VALUE, 64, 128, 0, 0.02f, 128},  /* group 128: k = floor(1.28 + 0.5) = 1 */
        {GEAR_KEY, 256, 128, 0, 0.02f, 768},   /* group 256: k = round(2.56) = 3 */
        {GEAR_KEY, 64, 128, 64, 0.0f, 0},
        /* groups 5,5,5,1: k = floor(1.25 + 0.5) = 1 three times, tail k = 0:
         * 2*(1+1+1+0) = 6 per token, 32 tokens */
        {GEAR_VALUE, 32, 16, 5, 0.5f, 192},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gear_config cfg = tu_cfg(cases[i].kind, 2, cases[i].group, cases[i].s, 0, 0, cases[i].n);
        gear_block_info info;
        TU_OK(gear_block_info_get(&cfg, cases[i].d, &info));
        TU_ASSERT(info.outliers == cases[i].want, "case %zu: %u outliers, expected %u", i,
                      info.outliers, cases[i].want);
        TU_CHECK(info.outlier_fraction == (double)cases[i].want / ((double)cases[i].n * cases[i].d));
        /* and the block really stores that many */
        float *x = tu_alloc_f((size_t)cases[i].n * cases[i].d);
        make_data(i, x, (size_t)cases[i].n * cases[i].d);
        size_t len;
        uint8_t *s = tu_compress(ctx, &cfg, x, 1, (int)cases[i].n, (int)cases[i].d, 0, &len);
        TU_EQ(u32_at(s + STREAM_HDR + 20), cases[i].want);
        free(s);
        free(x);
    }
    gear_config g2 = tu_preset("gear2", GEAR_KEY);
    gear_block_info info;
    TU_OK(gear_block_info_get(&g2, 128, &info));
    TU_EQ(info.outliers, 256);
    TU_CHECK(info.outlier_fraction == 0.03125);
}
END_TEST

/* ---------------------------------------------------- bits per entry */

START_TEST(test_bpe_formula)
{
    int np = gear_preset_count();
    static const unsigned dims[][2] = {{64, 128}, {64, 64}, {32, 128}, {128, 128}};
    for (int p = 0; p < np; p++)
        for (int kind = 0; kind < 2; kind++)
            for (size_t s = 0; s < 4; s++) {
                gear_config cfg = tu_preset(gear_preset_name(p), (gear_kind)kind);
                if (cfg.cq_dim) continue; /* CQ layouts: check_cq */
                unsigned n = dims[s][0], d = dims[s][1];
                cfg.block = n;
                gear_block_info info;
                TU_OK(gear_block_info_get(&cfg, d, &info));
                double nd = (double)n * d;
                TU_EQ(info.n, n);
                TU_EQ(info.d, d);
                TU_CHECK(info.bpe == 8.0 * (double)info.bytes / nd);
                if (cfg.bits == 0) {
                    TU_EQ(info.bytes, 32 + 2 * (size_t)n * d);
                    continue;
                }
                tu_layout L;
                tu_layout_make(&L, (gear_kind)kind, n, d, cfg.bits, cfg.group, cfg.outlier_ratio,
                               cfg.rank);
                TU_EQ(info.bytes, L.bytes);
                TU_EQ(info.outliers, L.n_out);
                double g = (double)L.group;
                double formula = cfg.bits + 32.0 / g + 32.0 * L.n_out / nd +
                                 16.0 * cfg.rank * (n + d) / nd;
                TU_ASSERT(fabs(info.bpe_formula - formula) < 1e-12, "%s: bpe_formula %g vs %g",
                              gear_preset_name(p), info.bpe_formula, formula);
                /* aligned sizes: everything but the 256 header bits is the formula */
                TU_ASSERT(fabs(8.0 * (double)info.bytes - (formula * nd + 256.0)) < 1e-6,
                              "%s kind %d n %u d %u: %zu bytes, formula %g", gear_preset_name(p),
                              kind, n, d, info.bytes, formula);
                TU_EQ(info.header_bytes, 32);
            }
    /* the hand-computed gear2 key block at n = 64, d = 128:
     * codes 128*16 = 2048, scales 256, minima 256, indices 512, values 512,
     * A 256, B 512, header 32 -> 4384 bytes, 4.28125 bpe */
    gear_config g2 = tu_preset("gear2", GEAR_KEY);
    gear_block_info info;
    TU_OK(gear_block_info_get(&g2, 128, &info));
    TU_EQ(info.bytes, 4384);
    TU_CHECK(info.bpe == 4.28125);
    TU_CHECK(info.bpe_formula == 2.0 + 0.5 + 1.0 + 0.75);
    /* kivi2: 2 + 0.5 bpe + header */
    gear_config k2 = tu_preset("kivi2", GEAR_VALUE);
    TU_OK(gear_block_info_get(&k2, 128, &info));
    TU_EQ(info.bytes, 32 + 2048 + 256 + 256);
    TU_CHECK(info.bpe_formula == 2.5);
}
END_TEST

START_TEST(test_bpe_odd_shapes_and_stream_size)
{
    /* unaligned shapes: the layout of FORMAT.md (independently computed) */
    static const unsigned bits[] = {1, 2, 3, 4, 8};
    for (int kind = 0; kind < 2; kind++)
        for (size_t b = 0; b < 5; b++)
            for (unsigned n = 5; n < 40; n += 11)
                for (unsigned d = 3; d < 50; d += 13)
                    for (unsigned g = 0; g < 9; g += 4) {
                        gear_config cfg = tu_cfg((gear_kind)kind, bits[b], g, 0.3f, n < d ? 1 : 2, 2, n);
                        gear_block_info info;
                        TU_OK(gear_block_info_get(&cfg, d, &info));
                        tu_layout L;
                        tu_layout_make(&L, (gear_kind)kind, n, d, bits[b], g, 0.3f, cfg.rank);
                        TU_ASSERT(info.bytes == L.bytes, "kind %d bits %u n %u d %u g %u: %zu vs %zu",
                                      kind, bits[b], n, d, g, info.bytes, L.bytes);
                        TU_EQ(info.bytes % 16, 0);
                        TU_EQ(info.groups_per_row, L.gpr);
                        TU_EQ(info.group, L.group);
                        TU_EQ(info.rows, L.rows);
                        TU_EQ(info.outliers, L.n_out);
                        TU_CHECK(info.bpe == 8.0 * (double)info.bytes / ((double)n * d));
                        /* and the library's own layout agrees section by section */
                        gear_block_layout GL;
                        TU_OK(gear_block_layout_init(&GL, &cfg, d));
                        TU_EQ(GL.off_codes, L.off_codes);
                        TU_EQ(GL.off_scales, L.off_scales);
                        TU_EQ(GL.off_mins, L.off_mins);
                        TU_EQ(GL.off_oidx, L.off_oidx);
                        TU_EQ(GL.off_oval, L.off_oval);
                        TU_EQ(GL.off_a, L.off_a);
                        TU_EQ(GL.off_b, L.off_b);
                        TU_EQ(GL.row_bytes, L.row_bytes);
                    }
    /* stream size: 64 + H * floor(T/n) blocks + H raw tails in the input dtype */
    gear_config cfg = tu_preset("gear2", GEAR_VALUE);
    cfg.block = 16;
    cfg.group = 8;
    int H = 3, T = 16 * 2 + 7, d = 24;
    float *x = tu_alloc_f((size_t)H * T * d);
    make_data(3, x, (size_t)H * T * d);
    gear_block_info info;
    TU_OK(gear_block_info_get(&cfg, (unsigned)d, &info));
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
    size_t tail = (32 + 7 * (size_t)d * 4 + 15) / 16 * 16;
    TU_EQ(len, 64 + (size_t)H * 2 * info.bytes + (size_t)H * tail);
    free(s);
    free(x);
}
END_TEST

/* ------------------------------------------------------------ quality */

static double preset_err(const char *name, gear_kind kind, const float *x, int H, int T, int d,
                         unsigned block)
{
    gear_config cfg = tu_preset(name, kind);
    cfg.block = block;
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, H, T, d, 0, &len);
    float *y = tu_decompress(ctx, s, len, H, T, d);
    double e = tu_rel_err(y, x, (size_t)H * T * d);
    free(s);
    free(y);
    return e;
}

START_TEST(test_acceptance_256x128)
{
    /* [256,128], block 256, 2 bits, group 64, s 0.02, rank 2, 3 iterations */
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(2024 + (uint64_t)kind, (gear_kind)kind, 1, 256, 128);
        size_t nd = 256 * 128;
        gear_config kivi = tu_cfg((gear_kind)kind, 2, 64, 0.0f, 0, 0, 256);
        gear_config gear = tu_cfg((gear_kind)kind, 2, 64, 0.02f, 2, 3, 256);
        float *mine = tu_alloc_f(nd);
        tu_gear_tensor(x, 1, 256, 128, &kivi, 0, mine);
        double e_ind = tu_rel_err(mine, x, nd);
        double e_kivi = check_against_indep(&kivi, x, 1, 256, 128);
        TU_ASSERT(fabs(e_kivi - e_ind) <= 0.01 * e_ind, "kivi2 rel err %g, independent %g",
                      e_kivi, e_ind);
        size_t len;
        uint8_t *s = tu_compress(ctx, &gear, x, 1, 256, 128, 0, &len);
        float *y = tu_decompress(ctx, s, len, 1, 256, 128);
        double e_gear = tu_rel_err(y, x, nd);
        tu_gear_tensor(x, 1, 256, 128, &gear, 0, mine);
        double e_gear_ind = tu_rel_err(mine, x, nd);
        TU_ASSERT(fabs(e_gear - e_gear_ind) <= 0.01 * e_gear_ind,
                      "gear rel err %g, independent %g", e_gear, e_gear_ind);
        TU_ASSERT(e_gear < e_kivi, "kind %d: gear %g not below kivi2 %g", kind, e_gear, e_kivi);
        fprintf(stderr, "acceptance %s: kivi2 %.5f (independent %.5f), gear %.5f (independent %.5f)\n",
                kind ? "values" : "keys", e_kivi, e_ind, e_gear, e_gear_ind);
        free(s);
        free(y);
        free(mine);
        free(x);
    }
}
END_TEST

START_TEST(test_structured_ordering)
{
    int H = 2, T = 128, d = 64;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(11 + (uint64_t)kind, (gear_kind)kind, H, T, d);
        double kivi2 = preset_err("kivi2", (gear_kind)kind, x, H, T, d, 64);
        double gearl2 = preset_err("gearl2", (gear_kind)kind, x, H, T, d, 64);
        double gear2 = preset_err("gear2", (gear_kind)kind, x, H, T, d, 64);
        double kivi4 = preset_err("kivi4", (gear_kind)kind, x, H, T, d, 64);
        double fp16 = preset_err("fp16", (gear_kind)kind, x, H, T, d, 64);
        fprintf(stderr, "%s: kivi2 %.5f gearl2 %.5f gear2 %.5f kivi4 %.5f fp16 %.2e\n",
                kind ? "values" : "keys", kivi2, gearl2, gear2, kivi4, fp16);
        TU_ASSERT(gearl2 < kivi2, "kind %d: gearl2 %g !< kivi2 %g", kind, gearl2, kivi2);
        TU_ASSERT(gear2 < gearl2, "kind %d: gear2 %g !< gearl2 %g", kind, gear2, gearl2);
        TU_ASSERT(kivi4 < kivi2, "kind %d: kivi4 %g !< kivi2 %g", kind, kivi4, kivi2);
        TU_ASSERT(fp16 < 1e-3 && fp16 < kivi4, "fp16 error %g", fp16);
        free(x);
    }
}
END_TEST

static Suite *quant_suite(void)
{
    Suite *s = suite_create("quant");
    TCase *tc = tu_tcase("hand");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_hand_groups_every_bit_width);
    tcase_add_test(tc, test_hand_saturated_scale);
    tcase_add_test(tc, test_hand_8bit_grid_exact);
    tcase_add_test(tc, test_constant_groups);
    tcase_add_test(tc, test_tail_groups);
    tcase_add_test(tc, test_outlier_selection_hand);
    tcase_add_test(tc, test_outlier_selection_keys_hand);
    tcase_add_test(tc, test_all_outliers);
    suite_add_tcase(s, tc);
    tc = tu_tcase("independent");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_indep_kivi_keys_values);
    tcase_add_test(tc, test_indep_outliers);
    tcase_add_test(tc, test_indep_presets_structured);
    suite_add_tcase(s, tc);
    tc = tu_tcase("bpe_quality");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_outlier_fraction);
    tcase_add_test(tc, test_bpe_formula);
    tcase_add_test(tc, test_bpe_odd_shapes_and_stream_size);
    tcase_add_test(tc, test_acceptance_256x128);
    tcase_add_test(tc, test_structured_ordering);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(quant_suite(), 0); }
