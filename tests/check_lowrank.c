/*
 * check_lowrank.c - the low-rank part L = A B^T of GEAR (DESIGN s2): an
 * exactly rank-r residual is recovered to fp16 precision, error falls with
 * rank, the factors match an independent power iteration (start matrix
 * keyed by seed, layer, head, block and kind), results are deterministic,
 * and degenerate residuals give zeros, not NaN.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define STREAM_HDR 64

static gear_context *ctx;

static void setup(void) { ctx = tu_ctx("ref"); }
static void teardown(void)
{
    gear_context_free(ctx);
    ctx = NULL;
}

static uint16_t u16_at(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static double stream_err(const gear_config *cfg, const float *x, int H, int T, int d,
                         uint32_t layer, float **recon)
{
    size_t len;
    uint8_t *s = tu_compress(ctx, cfg, x, H, T, d, layer, &len);
    float *y = tu_decompress(ctx, s, len, H, T, d);
    double e = tu_rel_err(y, x, (size_t)H * T * d);
    free(s);
    if (recon) *recon = y;
    else free(y);
    return e;
}

/* X = M + L where M lies exactly on each group's quantization grid and the
 * min and max of every group sit where L is zero, so deq(Q(X)) = M and the
 * residual E = X - M is L (rank r, up to fp32 rounding of X).
 * keys: rows are channels over the n tokens; tokens 0 and 1 hold the min
 * and max.  values: rows are tokens over the d channels; channels 0 and 1. */
static void make_exact_rank(gear_kind kind, unsigned n, unsigned d, unsigned r, uint64_t seed,
                            float *X, float *M)
{
    uint64_t s = seed;
    float *u = tu_alloc_f((size_t)r * n), *v = tu_alloc_f((size_t)r * d);
    for (unsigned k = 0; k < r; k++) {
        for (unsigned t = 0; t < n; t++) u[k * n + t] = (float)(tu_rand01(&s) * 0.6 - 0.3);
        for (unsigned c = 0; c < d; c++) v[k * d + c] = (float)(tu_rand01(&s) * 0.6 - 0.3) / (float)r;
        if (kind == GEAR_KEY) u[k * n + 0] = u[k * n + 1] = 0.0f;
        else v[k * d + 0] = v[k * d + 1] = 0.0f;
    }
    for (unsigned t = 0; t < n; t++)
        for (unsigned c = 0; c < d; c++) {
            unsigned row = kind == GEAR_KEY ? c : t, pos = kind == GEAR_KEY ? t : c;
            float mn = -2.0f + 0.25f * (float)(row % 13);
            unsigned code = pos == 0 ? 0 : pos == 1 ? 3 : 1 + (unsigned)(tu_rand_u64(&s) & 1);
            float m = mn + 0.5f * (float)code; /* 2 bits, delta (1.5/3) = 0.5 */
            float l = 0.0f;
            for (unsigned k = 0; k < r; k++) l += u[k * n + t] * v[k * d + c];
            M[(size_t)t * d + c] = m;
            X[(size_t)t * d + c] = m + l; /* |l| < 0.18 < delta / 2 */
        }
    free(u);
    free(v);
}

static void exact_rank_case(gear_kind kind)
{
    const unsigned n = 32, d = 16;
    float *X = tu_alloc_f(n * d), *M = tu_alloc_f(n * d);
    for (unsigned r = 1; r <= 3; r++) {
        make_exact_rank(kind, n, d, r, 1000 + r, X, M);
        gear_config kivi = tu_cfg(kind, 2, 0, 0.0f, 0, 0, n);
        float *q;
        double e0 = stream_err(&kivi, X, 1, (int)n, (int)d, 0, &q);
        /* the construction works: Q reproduces M exactly */
        for (unsigned i = 0; i < n * d; i++) TU_ASSERT(q[i] == M[i], "Q(X)[%u] = %g, M = %g", i, (double)q[i], (double)M[i]);
        free(q);
        TU_CHECK(e0 > 0.01);
        gear_config gl = tu_cfg(kind, 2, 0, 0.0f, r, 3, n);
        float *y;
        double e = stream_err(&gl, X, 1, (int)n, (int)d, 0, &y);
        double maxl = 0.0;
        for (unsigned i = 0; i < n * d; i++) maxl = fmax(maxl, fabs((double)X[i] - M[i]));
        double maxe = tu_max_abs_diff(y, X, n * d);
        fprintf(stderr, "exact rank %u (%s): kivi %.3e, gear-l %.3e, ratio %.2e, max err %.2e of %.2e\n",
                r, kind ? "values" : "keys", e0, e, e / e0, maxe, maxl);
        TU_ASSERT(e <= 1.5e-3 * e0, "rank %u: GEAR-L error %g vs KIVI %g", r, e, e0);
        TU_ASSERT(maxe <= 4e-3 * maxl, "rank %u: max error %g, residual %g", r, maxe, maxl);
        /* one rank too few leaves a real error */
        if (r > 1) {
            gl.rank = r - 1;
            double e1 = stream_err(&gl, X, 1, (int)n, (int)d, 0, NULL);
            TU_ASSERT(e1 > 20 * e, "rank %u-1 error %g should be well above %g", r, e1, e);
        }
        free(y);
    }
    free(X);
    free(M);
}

START_TEST(test_exact_rank_keys) { exact_rank_case(GEAR_KEY); }
END_TEST

START_TEST(test_exact_rank_values) { exact_rank_case(GEAR_VALUE); }
END_TEST

START_TEST(test_zero_residual)
{
    /* X on the grid: E = 0, every column collapses: A = B = 0 and X^ = X */
    const unsigned n = 16, d = 8;
    float *X = tu_alloc_f(n * d), *M = tu_alloc_f(n * d);
    make_exact_rank(GEAR_KEY, n, d, 1, 5, X, M);
    gear_config cfg = tu_cfg(GEAR_KEY, 2, 0, 0.0f, 2, 3, n);
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, M, 1, (int)n, (int)d, 0, &len);
    tu_layout L;
    tu_layout_make(&L, GEAR_KEY, n, d, 2, 0, 0.0f, 2);
    const uint8_t *blk = s + STREAM_HDR;
    for (unsigned i = 0; i < n * 2; i++) TU_EQ(u16_at(blk + L.off_a + 2 * i) & 0x7FFF, 0);
    for (unsigned i = 0; i < d * 2; i++) TU_EQ(u16_at(blk + L.off_b + 2 * i) & 0x7FFF, 0);
    float *y = tu_decompress(ctx, s, len, 1, (int)n, (int)d);
    for (unsigned i = 0; i < n * d; i++) TU_CHECK(y[i] == M[i]);
    free(y);
    free(s);
    /* rank 2 on a rank-1 residual: finite, and as good as rank 1 */
    make_exact_rank(GEAR_KEY, n, d, 1, 6, X, M);
    cfg.rank = 1;
    double e1 = stream_err(&cfg, X, 1, (int)n, (int)d, 0, NULL);
    cfg.rank = 2;
    double e2 = stream_err(&cfg, X, 1, (int)n, (int)d, 0, &y);
    for (unsigned i = 0; i < n * d; i++) TU_CHECK(isfinite(y[i]));
    TU_ASSERT(e2 <= e1 * 1.5 + 1e-6, "rank 2 on rank-1 residual: %g vs %g", e2, e1);
    free(y);
    free(X);
    free(M);
}
END_TEST

START_TEST(test_error_decreases_with_rank)
{
    const int n = 64, d = 32;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(300 + (uint64_t)kind, (gear_kind)kind, 2, n, d);
        static const unsigned ranks[] = {0, 1, 2, 4, 8, 16};
        double prev = INFINITY, e0 = 0.0;
        for (size_t i = 0; i < sizeof ranks / sizeof ranks[0]; i++) {
            gear_config cfg = tu_cfg((gear_kind)kind, 2, 16, 0.0f, ranks[i], 3, (unsigned)n);
            double e = stream_err(&cfg, x, 2, n, d, 0, NULL);
            if (!ranks[i]) e0 = e;
            TU_ASSERT(e < prev, "kind %d rank %u: error %g not below %g", kind, ranks[i], e, prev);
            prev = e;
        }
        /* full rank (r = d): the residual is captured up to fp16 rounding */
        gear_config cfg = tu_cfg((gear_kind)kind, 2, 16, 0.0f, (unsigned)d, 3, (unsigned)n);
        double ef = stream_err(&cfg, x, 2, n, d, 0, NULL);
        fprintf(stderr, "%s: rank 0 %.4f, rank 16 %.4f, rank %d %.2e\n", kind ? "values" : "keys", e0,
                prev, d, ef);
        TU_ASSERT(ef < 5e-3 * e0, "full rank error %g vs rank-0 %g", ef, e0);
        free(x);
    }
    /* rank = n < d (values, 16 tokens x 48 channels) */
    float *x = tu_synth(301, GEAR_VALUE, 1, 16, 48);
    gear_config c0 = tu_cfg(GEAR_VALUE, 2, 0, 0.0f, 0, 0, 16);
    gear_config cf = tu_cfg(GEAR_VALUE, 2, 0, 0.0f, 16, 2, 16);
    double e0 = stream_err(&c0, x, 1, 16, 48, 0, NULL), ef = stream_err(&cf, x, 1, 16, 48, 0, NULL);
    TU_ASSERT(ef < 5e-3 * e0, "rank n error %g vs rank-0 %g", ef, e0);
    free(x);
}
END_TEST

/* Compare the stream's factors and reconstruction with the independent
 * power iteration of every block. */
static void compare_factors(const gear_config *cfg, const float *x, int H, int T, int d,
                            uint32_t layer)
{
    size_t len;
    uint8_t *s = tu_compress(ctx, cfg, x, H, T, d, layer, &len);
    float *y = tu_decompress(ctx, s, len, H, T, d);
    size_t nd = (size_t)H * T * d;
    float *want = tu_alloc_f(nd), *q = tu_alloc_f(nd);
    tu_gear_tensor(x, H, T, d, cfg, layer, want);
    gear_config c0 = *cfg;
    c0.rank = 0;
    tu_gear_tensor(x, H, T, d, &c0, layer, q);
    /* low-rank parts: lib vs independent */
    float *l_lib = tu_alloc_f(nd), *l_ind = tu_alloc_f(nd);
    for (size_t i = 0; i < nd; i++) {
        l_lib[i] = y[i] - q[i];
        l_ind[i] = want[i] - q[i];
    }
    double rel = tu_rel_err(l_lib, l_ind, nd);
    TU_ASSERT(rel < 1e-3, "rank %u iters %u s %g: low-rank part differs by %g", cfg->rank,
                  cfg->iters, (double)cfg->outlier_ratio, rel);
    unsigned n = cfg->block, r = cfg->rank;
    int nb = T / (int)n;
    tu_layout L;
    tu_layout_make(&L, cfg->kind, n, (unsigned)d, cfg->bits, cfg->group, cfg->outlier_ratio, r);
    float *A = tu_alloc_f((size_t)n * r), *B = tu_alloc_f((size_t)d * r), *xq = tu_alloc_f((size_t)n * d);
    unsigned char *mask = malloc((size_t)n * d);
    TU_CHECK((mask) != NULL);
    size_t mismatch = 0, total = 0;
    for (int h = 0; h < H; h++)
        for (int b = 0; b < nb; b++) {
            const float *xb = x + ((size_t)h * T + (size_t)b * n) * d;
            const uint8_t *blk = s + STREAM_HDR + ((size_t)h * nb + b) * L.bytes;
            tu_quant_block(xb, n, (unsigned)d, cfg->kind, cfg->bits, cfg->group, cfg->outlier_ratio,
                           xq, NULL, mask, NULL, NULL, NULL);
            uint64_t key = gear_rng_key(cfg->seed, layer, (uint32_t)h, (uint32_t)b, cfg->kind);
            tu_lowrank(xb, xq, mask, n, (unsigned)d, r, cfg->iters, key, A, B, NULL);
            for (size_t i = 0; i < (size_t)n * r; i++, total++) {
                float a = gear_half_to_float(u16_at(blk + L.off_a + 2 * i));
                mismatch += a != A[i];
                TU_ASSERT(fabsf(a - A[i]) <= 2e-3f * fmaxf(fabsf(A[i]), 1e-3f) + 1e-7f,
                              "block (%d,%d) A[%zu] = %g, expected %g", h, b, i, (double)a, (double)A[i]);
            }
            float bmax = 0.0f;
            for (size_t i = 0; i < (size_t)d * r; i++) bmax = fmaxf(bmax, fabsf(B[i]));
            for (size_t i = 0; i < (size_t)d * r; i++, total++) {
                float bb = gear_half_to_float(u16_at(blk + L.off_b + 2 * i));
                mismatch += bb != B[i];
                TU_ASSERT(fabsf(bb - B[i]) <= 2e-3f * fmaxf(fabsf(B[i]), 1e-3f * bmax) + 1e-7f,
                              "block (%d,%d) B[%zu] = %g, expected %g", h, b, i, (double)bb, (double)B[i]);
            }
        }
    /* the same double-precision algorithm: almost every factor is bitwise equal */
    TU_ASSERT(mismatch * 100 <= total, "%zu of %zu factors differ", mismatch, total);
    free(A);
    free(B);
    free(xq);
    free(mask);
    free(l_lib);
    free(l_ind);
    free(want);
    free(q);
    free(y);
    free(s);
}

START_TEST(test_matches_independent_power_iteration)
{
    const int n = 24, d = 20, H = 2, T = 2 * 24 + 5;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(400 + (uint64_t)kind, (gear_kind)kind, H, T, d);
        for (unsigned r = 1; r <= 3; r++)
            for (unsigned it = 1; it <= 3; it++) {
                gear_config cfg = tu_cfg((gear_kind)kind, 2, 8, it == 2 ? 0.2f : 0.0f, r, it, (unsigned)n);
                cfg.seed = 12345 + r;
                compare_factors(&cfg, x, H, T, d, 3);
            }
        gear_config g2 = tu_preset("gear2", (gear_kind)kind);
        g2.block = (unsigned)n;
        compare_factors(&g2, x, H, T, d, 0);
        gear_config g4 = tu_preset("gear4", (gear_kind)kind);
        g4.block = (unsigned)n;
        g4.seed = 99;
        compare_factors(&g4, x, H, T, d, 7);
        free(x);
    }
}
END_TEST

START_TEST(test_start_matrix_keying)
{
    /* the independent power iteration with a wrong key disagrees with the
     * library after one iteration: the key really selects the start matrix */
    const unsigned n = 24, d = 20;
    float *x = tu_synth(500, GEAR_KEY, 1, (int)n, (int)d);
    gear_config cfg = tu_cfg(GEAR_KEY, 2, 8, 0.0f, 2, 1, n);
    cfg.seed = 77;
    size_t len;
    uint8_t *s = tu_compress(ctx, &cfg, x, 1, (int)n, (int)d, 5, &len);
    float *y = tu_decompress(ctx, s, len, 1, (int)n, (int)d);
    float *xq = tu_alloc_f(n * d), *good = tu_alloc_f(n * d), *bad = tu_alloc_f(n * d);
    unsigned char mask[24 * 20];
    tu_quant_block(x, n, d, GEAR_KEY, 2, 8, 0.0f, xq, NULL, mask, NULL, NULL, NULL);
    memcpy(good, xq, sizeof(float) * n * d);
    tu_lowrank(x, xq, mask, n, d, 2, 1, gear_rng_key(77, 5, 0, 0, GEAR_KEY), NULL, NULL, good);
    TU_ASSERT(tu_rel_err(y, good, n * d) < 1e-5, "right key: %g", tu_rel_err(y, good, n * d));
    const uint64_t wrong[] = {gear_rng_key(78, 5, 0, 0, GEAR_KEY), gear_rng_key(77, 4, 0, 0, GEAR_KEY),
                              gear_rng_key(77, 5, 1, 0, GEAR_KEY), gear_rng_key(77, 5, 0, 1, GEAR_KEY),
                              gear_rng_key(77, 5, 0, 0, GEAR_VALUE)};
    for (size_t i = 0; i < 5; i++) {
        memcpy(bad, xq, sizeof(float) * n * d);
        tu_lowrank(x, xq, mask, n, d, 2, 1, wrong[i], NULL, NULL, bad);
        double diff = tu_rel_err(y, bad, n * d);
        TU_ASSERT(diff > 1e-4, "wrong key %zu gives the same result (%g)", i, diff);
    }
    free(xq);
    free(good);
    free(bad);
    free(y);
    free(s);
    free(x);
}
END_TEST

START_TEST(test_deterministic)
{
    static const char *names[] = {"gear2", "gearl2", "gear4", "gearl4", "kivi2", "kcvt4", "fp16"};
    const int H = 2, T = 64 * 2 + 10, d = 32;
    float *x = tu_synth(600, GEAR_KEY, H, T, d);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        gear_config cfg = tu_preset(names[i], GEAR_KEY);
        size_t l1, l2, l3;
        uint8_t *a = tu_compress(ctx, &cfg, x, H, T, d, 2, &l1);
        uint8_t *b = tu_compress(ctx, &cfg, x, H, T, d, 2, &l2);
        gear_context *other = tu_ctx("ref");
        uint8_t *c = tu_compress(other, &cfg, x, H, T, d, 2, &l3);
        TU_EQ(l1, l2);
        TU_EQ(l1, l3);
        TU_ASSERT(!memcmp(a, b, l1) && !memcmp(a, c, l1), "%s: streams differ between runs", names[i]);
        float *y1 = tu_decompress(ctx, a, l1, H, T, d), *y2 = tu_decompress(other, a, l1, H, T, d);
        TU_EQ(tu_count_diff_bits(y1, y2, (size_t)H * T * d), 0);
        gear_context_free(other);
        free(a);
        free(b);
        free(c);
        free(y1);
        free(y2);
    }
    free(x);
}
END_TEST

/* Bytes of a stream outside the A/B sections and the CRC fields. */
static int same_except_factors(const uint8_t *a, const uint8_t *b, size_t len, const tu_layout *L,
                               size_t nblocks)
{
    if (memcmp(a + 48, b + 48, 12)) return 0; /* shape and dtype */
    for (size_t i = 0; i < nblocks; i++) {
        const uint8_t *x = a + STREAM_HDR + i * L->bytes, *y = b + STREAM_HDR + i * L->bytes;
        if (memcmp(x, y, 4) || memcmp(x + 8, y + 8, L->off_a - 8)) return 0;
    }
    (void)len;
    return 1;
}

static int factors_differ(const uint8_t *a, const uint8_t *b, const tu_layout *L, size_t blk_a,
                          size_t blk_b)
{
    const uint8_t *x = a + STREAM_HDR + blk_a * L->bytes, *y = b + STREAM_HDR + blk_b * L->bytes;
    return memcmp(x + L->off_a, y + L->off_a, L->bytes - L->off_a) != 0;
}

START_TEST(test_seed_layer_head_block_keyed)
{
    const int n = 32, d = 32, H = 2, T = 2 * n;
    float *x = tu_synth(700, GEAR_VALUE, 1, n, d);
    /* two identical heads, each of two identical blocks */
    float *xx = tu_alloc_f((size_t)H * T * d);
    for (int h = 0; h < H; h++)
        for (int b = 0; b < 2; b++) memcpy(xx + ((size_t)h * T + (size_t)b * n) * d, x, sizeof(float) * n * d);
    gear_config cfg = tu_preset("gear2", GEAR_VALUE);
    cfg.block = (unsigned)n;
    cfg.group = 16;
    tu_layout L;
    tu_layout_make(&L, GEAR_VALUE, (unsigned)n, (unsigned)d, 2, 16, cfg.outlier_ratio, 2);
    size_t la, lb, lc;
    uint8_t *a = tu_compress(ctx, &cfg, xx, H, T, d, 0, &la);
    /* within one stream: same data, different (head, block) -> different factors,
     * identical quantization */
    for (size_t i = 1; i < 4; i++) {
        const uint8_t *b0 = a + STREAM_HDR, *bi = a + STREAM_HDR + i * L.bytes;
        TU_ASSERT(!memcmp(b0 + 8, bi + 8, L.off_a - 8), "block %zu quantized differently", i);
        TU_ASSERT(factors_differ(a, a, &L, 0, i), "block %zu has block 0's factors", i);
    }
    /* another seed / layer: same quantization, other factors, similar quality */
    gear_config c2 = cfg;
    c2.seed = 1;
    uint8_t *b = tu_compress(ctx, &c2, xx, H, T, d, 0, &lb);
    uint8_t *c = tu_compress(ctx, &cfg, xx, H, T, d, 1, &lc);
    TU_CHECK(same_except_factors(a, b, la, &L, 4));
    TU_CHECK(same_except_factors(a, c, la, &L, 4));
    for (size_t i = 0; i < 4; i++) {
        TU_ASSERT(factors_differ(a, b, &L, i, i), "seed does not change block %zu", i);
        TU_ASSERT(factors_differ(a, c, &L, i, i), "layer does not change block %zu", i);
    }
    float *ya = tu_decompress(ctx, a, la, H, T, d), *yb = tu_decompress(ctx, b, lb, H, T, d);
    gear_config k2 = cfg;
    k2.rank = 0;
    double ea = tu_rel_err(ya, xx, (size_t)H * T * d), eb = tu_rel_err(yb, xx, (size_t)H * T * d);
    double e0 = stream_err(&k2, xx, H, T, d, 0, NULL);
    TU_ASSERT(ea < e0 && eb < e0, "seeds: %g %g, without low rank %g", ea, eb, e0);
    TU_ASSERT(fabs(ea - eb) < 0.1 * ea, "seed 0 error %g vs seed 1 %g", ea, eb);
    TU_CHECK(tu_rel_err(ya, yb, (size_t)H * T * d) > 0.0);
    free(ya);
    free(yb);
    free(a);
    free(b);
    free(c);
    free(xx);
    free(x);
}
END_TEST

START_TEST(test_large_magnitudes_stay_finite)
{
    /* a residual of ~10^4 per entry makes B = E^T Y exceed the fp16 range:
     * factors saturate, everything stays finite and the stream validates */
    const int n = 64, d = 64;
    float *x = tu_alloc_f((size_t)n * d);
    tu_fill_uniform(800, x, (size_t)n * d, -60000.0f, 60000.0f);
    for (int kind = 0; kind < 2; kind++) {
        gear_config cfg = tu_cfg((gear_kind)kind, 1, 0, 0.0f, 4, 3, (unsigned)n);
        float *y;
        double e = stream_err(&cfg, x, 1, n, d, 0, &y);
        for (int i = 0; i < n * d; i++) TU_ASSERT(isfinite(y[i]), "entry %d not finite", i);
        TU_CHECK(isfinite(e));
        free(y);
    }
    free(x);
}
END_TEST

static Suite *lowrank_suite(void)
{
    Suite *s = suite_create("lowrank");
    TCase *tc = tu_tcase("lowrank");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_exact_rank_keys);
    tcase_add_test(tc, test_exact_rank_values);
    tcase_add_test(tc, test_zero_residual);
    tcase_add_test(tc, test_error_decreases_with_rank);
    tcase_add_test(tc, test_matches_independent_power_iteration);
    tcase_add_test(tc, test_start_matrix_keying);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_seed_layer_head_block_keyed);
    tcase_add_test(tc, test_large_magnitudes_stay_finite);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(lowrank_suite(), 0); }
