/*
 * check_xbackend.c - the cross-backend suite (DESIGN s6).  Every backend of
 * the registry that is available here is compared with a "ref" context on
 * the same inputs, for every preset and odd shapes with tails:
 *   - gear_compress streams: identical except the low-rank factors A and B
 *     (codes, scales, minima, outliers, raw blocks and headers exact); ref
 *     against ref, and any config without a low-rank part, byte-identical;
 *   - reconstructions (NMSE < 1e-6; bitwise where there is no low-rank
 *     part: decoding is exact on every backend);
 *   - compress on one backend and decompress on the other;
 *   - caches: attention and reconstruction (NMSE < 1e-6), save on one and
 *     load on the other; attention at model shapes (head_dim 64/128, GQA).
 *     The cpu module's VNNI kernel rounds the weights of the codes to 16-bit
 *     fixed point: up to 1.4e-7 here (rms 3.7e-4 relative, below fp16's
 *     rounding unit), where the float kernels stay near 1e-12;
 *   - CQ caches (calibrated codebooks; CQ keys and/or values): byte-identical
 *     to ref, reconstruction bit-identical, attention within 1e-5;
 *   - fp16 input views (contiguous and with padded rows), which host
 *     backends may compress straight from the halves: the same streams as
 *     ref, and as the same backend from fp32 copies of the values; an Inf
 *     or NaN among the halves is reported with its position; cache
 *     appends of fp16 pieces give the cache of the same values in fp32, and
 *     a bad value leaves the cache unchanged;
 *   - every backend other than ref at 1, 2 and 3 threads (GEAR_XB_THREADS
 *     sets other counts).
 * Backends that are not available are reported as skipped, by name.  The
 * registry is iterated, so new backends join without edits.  Runs without
 * fork (GPU runtimes do not survive fork).
 */
#include <fenv.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

#define STREAM_HDR 64
#define NMSE_MAX 1e-6

typedef struct shape { int H, T, d; unsigned block; } shape;

static const shape shapes[] = {
    {2, 64 * 2 + 7, 64, 64},  /* default block, a tail */
    {2, 64 + 33, 96, 64},     /* values: a short last group (64 + 32) */
    {2, 64 * 2 + 3, 80, 64},  /* and 64 + 16 */
    {1, 96 * 2 + 5, 64, 96},  /* keys: a short last group (64 + 32) */
    {1, 24 * 3 + 5, 40, 24},  /* odd block and head dim */
    {3, 17, 16, 16},          /* one block and a one-token tail */
    {1, 11, 8, 16},           /* tail only */
};
#define N_SHAPES (sizeof shapes / sizeof shapes[0])

typedef void (*backend_fn)(gear_context *be, gear_context *ref, const char *name, int same);

/* The thread counts every backend other than ref runs at: 1, 2 and 3 (one
 * thread, as many as CI's machine has, and an odd count), or the list in
 * GEAR_XB_THREADS ("2", "1,4"): tests/check_other_cpus.sh runs the suite
 * under qemu at one count, since emulation makes each pass some twenty
 * times slower and the thread split is the same code on every CPU. */
#define MAX_THREAD_COUNTS 8
static size_t thread_counts(int *threads)
{
    const char *env = getenv("GEAR_XB_THREADS");
    if (!env || !*env) {
        threads[0] = 1, threads[1] = 2, threads[2] = 3;
        return 3;
    }
    size_t n = 0;
    const char *s = env;
    for (;;) {
        char *end;
        long v = strtol(s, &end, 10);
        TU_ASSERT(end != s && v >= 1 && v <= 1024 && n < MAX_THREAD_COUNTS && (*end == ',' || !*end),
                  "GEAR_XB_THREADS=\"%s\": expected up to %d thread counts (1-1024) separated by commas", env,
                  MAX_THREAD_COUNTS);
        threads[n++] = (int)v;
        if (!*end) return n;
        s = end + 1;
    }
}

/* Run fn for every available backend against a fresh ref context, and for
 * every backend other than ref at each of thread_counts(). */
static void for_each_backend(backend_fn fn)
{
    int threads[MAX_THREAD_COUNTS];
    size_t n_threads = thread_counts(threads);
    int n = gear_backend_count(), ran = 0;
    for (int i = 0; i < n; i++) {
        const char *name = gear_backend_name(i);
        TU_CHECK((name) != NULL);
        if (!gear_backend_available(i, NULL)) continue;
        int is_ref = !strcmp(name, "ref");
        for (size_t ti = 0; ti < (is_ref ? 1 : n_threads); ti++) {
            gear_context_params p;
            gear_context_params_init(&p);
            p.backend = name;
            p.n_threads = threads[ti];
            gear_context *be = NULL;
            gear_status st = gear_context_create(&p, &be);
            TU_ASSERT(st == GEAR_OK, "backend %s is listed as available but gives %s (%s)", name,
                          gear_status_string(st), gear_last_error_message());
            ck_assert_str_eq(gear_context_backend_name(be), name);
            char label[64];
            snprintf(label, sizeof label, "%s/%d threads", name, threads[ti]);
            gear_context *ref = tu_ctx("ref");
            fn(be, ref, label, is_ref);
            gear_context_free(ref);
            gear_context_free(be);
            ran++;
        }
    }
    ck_assert_int_ge(ran, 1);
}

static int preset_has_lowrank(const gear_config *c) { return c->bits && c->rank; }

/* Compare two streams of the same input: everything but the A/B sections
 * (and the block CRCs that cover them) must be identical. */
static void compare_streams(const uint8_t *a, const uint8_t *b, size_t len, const gear_config *cfg,
                            const shape *s, const char *what)
{
    TU_ASSERT(!memcmp(a, b, STREAM_HDR), "%s: stream headers differ", what);
    gear_block_info info;
    TU_OK(gear_block_info_get(cfg, (unsigned)s->d, &info));
    size_t nblk = (size_t)s->H * (size_t)(s->T / (int)s->block);
    size_t off_a = info.bytes;
    if (preset_has_lowrank(cfg)) {
        tu_layout L;
        tu_layout_make(&L, cfg->kind, cfg->block, (unsigned)s->d, cfg->bits, cfg->group,
                       cfg->outlier_ratio, cfg->rank);
        off_a = L.off_a;
    }
    for (size_t i = 0; i < nblk; i++) {
        const uint8_t *x = a + STREAM_HDR + i * info.bytes, *y = b + STREAM_HDR + i * info.bytes;
        TU_ASSERT(!memcmp(x, y, 4) && !memcmp(x + 8, y + 8, off_a - 8),
                      "%s: block %zu differs outside the low-rank factors", what, i);
        if (off_a == info.bytes) TU_ASSERT(!memcmp(x, y, info.bytes), "%s: block %zu CRC differs", what, i);
    }
    size_t tail = STREAM_HDR + nblk * info.bytes;
    TU_ASSERT(!memcmp(a + tail, b + tail, len - tail), "%s: tail blocks differ", what);
}

/* ------------------------------------------------------------- listing */

START_TEST(test_backend_listing)
{
    int n = gear_backend_count(), have_ref = 0, avail = 0;
    ck_assert_int_ge(n, 1);
    for (int i = 0; i < n; i++) {
        const char *name = gear_backend_name(i), *why = NULL;
        int ok = gear_backend_available(i, &why);
        if (!ok) {
            TU_ASSERT(why && *why, "backend %s is unavailable without a reason", name);
            printf("SKIP %s: %s\n", name, why);
        } else {
            printf("CHECK %s (%s, score %d)\n", name, gear_backend_origin(i), gear_backend_score(i));
            avail++;
        }
        have_ref += ok && !strcmp(name, "ref");
    }
    /* backends DESIGN.md names that this build did not even find: report them
     * too (the comparisons above iterate over the registry, never this list) */
    static const char *known[] = {"cpu", "cuda", "hip"};
    for (size_t j = 0; j < sizeof known / sizeof known[0]; j++) {
        int found = 0;
        for (int i = 0; i < n; i++) found |= !strcmp(gear_backend_name(i), known[j]);
        if (!found)
            printf("SKIP %s: no module found (not built here, or not on the module path / "
                   "GEAR_BACKEND_PATH)\n", known[j]);
    }
    fflush(stdout);
    TU_EQ(have_ref, 1);
    ck_assert_int_ge(avail, 1);
}
END_TEST

/* ------------------------------------------------------------ streams */

static void compress_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    int np = gear_preset_count();
    for (int p = 0; p < np; p++)
        for (int kind = 0; kind < 2; kind++)
            for (size_t si = 0; si < N_SHAPES; si++) {
                const shape *s = &shapes[si];
                gear_config cfg = tu_preset(gear_preset_name(p), (gear_kind)kind);
                if (cfg.cq_dim) continue; /* needs a calibration: check_cq */
                cfg.block = s->block;
                cfg.seed = 1000 + (uint64_t)p;
                char what[128];
                snprintf(what, sizeof what, "%s vs ref, %s %s [%d,%d,%d] block %u", name,
                         gear_preset_name(p), kind ? "V" : "K", s->H, s->T, s->d, s->block);
                float *x = tu_synth(50 + si * 2 + (size_t)kind, (gear_kind)kind, s->H, s->T, s->d);
                size_t la, lb, N = (size_t)s->H * s->T * s->d;
                uint8_t *a = tu_compress(ref, &cfg, x, s->H, s->T, s->d, 4, &la);
                uint8_t *b = tu_compress(be, &cfg, x, s->H, s->T, s->d, 4, &lb);
                TU_ASSERT(la == lb, "%s: %zu vs %zu bytes", what, lb, la);
                if (same || !preset_has_lowrank(&cfg))
                    TU_ASSERT(!memcmp(a, b, la), "%s: streams are not byte-identical", what);
                else
                    compare_streams(a, b, la, &cfg, s, what);
                /* reconstructions, each decoded where it was made */
                float *ya = tu_decompress(ref, a, la, s->H, s->T, s->d);
                float *yb = tu_decompress(be, b, lb, s->H, s->T, s->d);
                double e = tu_nmse(yb, ya, N);
                TU_ASSERT(e < NMSE_MAX, "%s: reconstruction NMSE %g", what, e);
                if (same || !preset_has_lowrank(&cfg))
                    TU_ASSERT(tu_count_diff_bits(ya, yb, N) == 0, "%s: reconstructions differ", what);
                free(ya);
                free(yb);
                free(a);
                free(b);
                free(x);
            }
}

START_TEST(test_compress_matches_ref) { for_each_backend(compress_case); }
END_TEST

/* Every bit width and several outlier ratios (more than one outlier per
 * side in a group at 0.1), without a low-rank part: byte-identical. */
static void bits_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const unsigned bits[] = {1, 2, 3, 4, 8};
    static const float ratios[] = {0.0f, 0.02f, 0.04f, 0.1f}; /* 0.04: one a side in groups of 32 too */
    for (size_t bi = 0; bi < sizeof bits / sizeof bits[0]; bi++)
        for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++)
            for (int kind = 0; kind < 2; kind++)
                for (size_t si = 0; si < N_SHAPES; si++) {
                    const shape *s = &shapes[si];
                    gear_config cfg = tu_preset("kivi2", (gear_kind)kind);
                    cfg.bits = bits[bi];
                    cfg.outlier_ratio = ratios[ri];
                    cfg.block = s->block;
                    float *x = tu_synth(300 + si * 2 + (size_t)kind, (gear_kind)kind, s->H, s->T, s->d);
                    size_t la, lb;
                    uint8_t *a = tu_compress(ref, &cfg, x, s->H, s->T, s->d, 4, &la);
                    uint8_t *b = tu_compress(be, &cfg, x, s->H, s->T, s->d, 4, &lb);
                    TU_ASSERT(la == lb && !memcmp(a, b, la),
                              "%s: %u bits, outliers %g, %s [%d,%d,%d]: streams differ", name, bits[bi],
                              (double)ratios[ri], kind ? "V" : "K", s->H, s->T, s->d);
                    free(a);
                    free(b);
                    free(x);
                }
}

START_TEST(test_bits_outliers_match_ref) { for_each_backend(bits_case); }
END_TEST

static void cross_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *names[] = {"gear2", "kivi2", "gear4", "gearl2", "kcvt4", "fp16"};
    for (size_t p = 0; p < sizeof names / sizeof names[0]; p++)
        for (size_t si = 0; si < N_SHAPES; si += 2) {
            const shape *s = &shapes[si];
            gear_config cfg = tu_preset(names[p], GEAR_KEY);
            cfg.block = s->block;
            float *x = tu_synth(70 + si, GEAR_KEY, s->H, s->T, s->d);
            size_t la, lb, N = (size_t)s->H * s->T * s->d;
            uint8_t *a = tu_compress(ref, &cfg, x, s->H, s->T, s->d, 0, &la);
            uint8_t *b = tu_compress(be, &cfg, x, s->H, s->T, s->d, 0, &lb);
            /* ref's stream decoded on both; the backend's stream decoded on both */
            float *aa = tu_decompress(ref, a, la, s->H, s->T, s->d);
            float *ab = tu_decompress(be, a, la, s->H, s->T, s->d);
            float *ba = tu_decompress(ref, b, lb, s->H, s->T, s->d);
            float *bb = tu_decompress(be, b, lb, s->H, s->T, s->d);
            TU_ASSERT(tu_nmse(ab, aa, N) < NMSE_MAX, "%s: ref stream decoded on %s: NMSE %g", names[p],
                          name, tu_nmse(ab, aa, N));
            TU_ASSERT(tu_nmse(ba, bb, N) < NMSE_MAX, "%s: %s stream decoded on ref: NMSE %g", names[p],
                          name, tu_nmse(ba, bb, N));
            /* one stream decodes bit-identically everywhere (the low-rank
             * term too: an fmaf chain over the rank in order) */
            TU_ASSERT(tu_count_diff_bits(ab, aa, N) == 0, "%s: decode on %s not exact", names[p], name);
            TU_ASSERT(tu_count_diff_bits(ba, bb, N) == 0, "%s: decode on ref not exact", names[p]);
            free(aa);
            free(ab);
            free(ba);
            free(bb);
            free(a);
            free(b);
            free(x);
        }
}

START_TEST(test_cross_decompress) { for_each_backend(cross_case); }
END_TEST

/* Decompression into fp16 (the host backends' reconstruct_blocks_f16,
 * in their threads) against ref's staging through fp32, half for half:
 * every preset, the odd shapes, a view whose rows are 8 halves apart from
 * the next (the padding must stay untouched), and data at +-65504, whose
 * reconstruction overshoots fp16's range and must saturate. */
static void decompress_f16_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    enum { PAD = 8 };
    int np = gear_preset_count();
    for (int p = 0; p < np; p++)
        for (int kind = 0; kind < 2; kind++)
            for (size_t si = 0; si <= N_SHAPES; si++) {
                int big = si == N_SHAPES; /* the first shape again, at fp16's limits */
                const shape *s = &shapes[big ? 0 : si];
                gear_config cfg = tu_preset(gear_preset_name(p), (gear_kind)kind);
                if (cfg.cq_dim) continue; /* needs a calibration: check_cq */
                cfg.block = s->block;
                char what[128];
                snprintf(what, sizeof what, "%s vs ref, fp16 out, %s %s [%d,%d,%d] block %u%s", name,
                         gear_preset_name(p), kind ? "V" : "K", s->H, s->T, s->d, s->block,
                         big ? ", values at +-65504" : "");
                size_t N = (size_t)s->H * s->T * s->d, NP = (size_t)s->H * s->T * (s->d + PAD);
                float *x = tu_synth(70 + si * 2 + (size_t)kind, (gear_kind)kind, s->H, s->T, s->d);
                if (big)
                    for (size_t i = 0; i < N; i++) x[i] = ((i / s->d + i % s->d) % 3) ? 65504.0f : -65504.0f * (x[i] > 0);
                size_t len;
                uint8_t *a = tu_compress(ref, &cfg, x, s->H, s->T, s->d, 4, &len);
                uint16_t *ha = malloc(sizeof(uint16_t) * N), *hb = malloc(sizeof(uint16_t) * NP);
                TU_CHECK(ha != NULL && hb != NULL);
                for (size_t i = 0; i < NP; i++) hb[i] = 0x5555;
                gear_tensor ta, tb;
                TU_OK(gear_tensor_init(&ta, ha, GEAR_F16, 3, s->H, s->T, s->d, 0));
                TU_OK(gear_tensor_init(&tb, hb, GEAR_F16, 3, s->H, s->T, s->d + PAD, 0));
                tb.shape[2] = s->d; /* rows d + PAD halves apart */
                TU_OK(gear_decompress(ref, a, len, &ta));
                TU_OK(gear_decompress(be, a, len, &tb));
                /* ref's fp16 output is its fp32 output saturated to fp16 */
                float *y = tu_decompress(ref, a, len, s->H, s->T, s->d);
                size_t off = 0;
                for (size_t i = 0; i < N; i++) off += ha[i] != gear_half_sat(y[i]);
                free(y);
                TU_ASSERT(off == 0, "%s: %zu halves of ref's fp16 output are not its fp32 output saturated", what, off);
                size_t diff = 0, pad = 0;
                for (size_t r = 0; r < (size_t)s->H * s->T; r++) {
                    diff += memcmp(ha + r * s->d, hb + r * (s->d + PAD), 2 * (size_t)s->d) != 0;
                    for (int c = 0; c < PAD; c++) pad += hb[r * (s->d + PAD) + s->d + c] != 0x5555;
                }
                TU_ASSERT(diff == 0, "%s: %zu rows differ", what, diff);
                TU_ASSERT(pad == 0, "%s: %zu halves of the padding between rows written", what, pad);
                if (kind == 0) { /* a cache of ref's blocks (x as K and V) loaded on be */
                    gear_config cv = tu_preset(gear_preset_name(p), GEAR_VALUE);
                    cv.block = s->block;
                    gear_cache *ca = NULL, *cb = NULL;
                    TU_OK(gear_cache_create(ref, &cfg, &cv, 1, s->H, s->d, s->T, &ca));
                    TU_OK(tu_cache_append(ca, 0, x, x, s->H, s->T, s->d));
                    size_t sl;
                    uint8_t *saved = tu_cache_save(ca, &sl);
                    TU_OK(gear_cache_load_mem(be, saved, sl, &cb));
                    for (int kv = 0; kv < 2; kv++) {
                        for (size_t i = 0; i < NP; i++) hb[i] = 0x5555;
                        TU_OK(gear_cache_decompress(ca, 0, kv ? NULL : &ta, kv ? &ta : NULL));
                        TU_OK(gear_cache_decompress(cb, 0, kv ? NULL : &tb, kv ? &tb : NULL));
                        diff = pad = 0;
                        for (size_t r = 0; r < (size_t)s->H * s->T; r++) {
                            diff += memcmp(ha + r * s->d, hb + r * (s->d + PAD), 2 * (size_t)s->d) != 0;
                            for (int c = 0; c < PAD; c++) pad += hb[r * (s->d + PAD) + s->d + c] != 0x5555;
                        }
                        TU_ASSERT(diff == 0, "%s, cache %s: %zu rows differ", what, kv ? "V" : "K", diff);
                        TU_ASSERT(pad == 0, "%s, cache %s: padding written", what, kv ? "V" : "K");
                    }
                    free(saved);
                    gear_cache_free(ca);
                    gear_cache_free(cb);
                }
                free(ha);
                free(hb);
                free(a);
                free(x);
            }
}

/* A cache with more blocks per head than one batch of decompress_stored
 * (64), so that later batches' rows land where they belong. */
static void decompress_f16_long_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    enum { H = 2, T = 8 * 70 + 3, D = 16 };
    const char *presets[] = {"kivi2", "gear2", "fp16"};
    float *x = tu_synth(90, GEAR_KEY, H, T, D);
    uint16_t *ha = malloc(sizeof(uint16_t) * H * T * D), *hb = malloc(sizeof(uint16_t) * H * T * D);
    TU_CHECK(ha != NULL && hb != NULL);
    for (size_t pi = 0; pi < sizeof presets / sizeof presets[0]; pi++) {
        gear_config ck = tu_preset(presets[pi], GEAR_KEY), cv = tu_preset(presets[pi], GEAR_VALUE);
        ck.block = cv.block = 8;
        gear_cache *ca = NULL, *cb = NULL;
        TU_OK(gear_cache_create(ref, &ck, &cv, 1, H, D, T, &ca));
        TU_OK(tu_cache_append(ca, 0, x, x, H, T, D));
        size_t sl;
        uint8_t *saved = tu_cache_save(ca, &sl);
        TU_OK(gear_cache_load_mem(be, saved, sl, &cb));
        gear_tensor ta, tb;
        TU_OK(gear_tensor_init(&ta, ha, GEAR_F16, 3, H, T, D, 0));
        TU_OK(gear_tensor_init(&tb, hb, GEAR_F16, 3, H, T, D, 0));
        for (int kv = 0; kv < 2; kv++) {
            memset(hb, 0x55, sizeof(uint16_t) * H * T * D);
            TU_OK(gear_cache_decompress(ca, 0, kv ? NULL : &ta, kv ? &ta : NULL));
            TU_OK(gear_cache_decompress(cb, 0, kv ? NULL : &tb, kv ? &tb : NULL));
            TU_ASSERT(!memcmp(ha, hb, sizeof(uint16_t) * H * T * D), "%s, %s cache %s, 70 blocks a head: fp16 rows differ from ref's",
                      name, presets[pi], kv ? "V" : "K");
        }
        free(saved);
        gear_cache_free(ca);
        gear_cache_free(cb);
    }
    free(ha);
    free(hb);
    free(x);
}

START_TEST(test_decompress_f16_matches_ref)
{
    for_each_backend(decompress_f16_case);
    for_each_backend(decompress_f16_long_case);
}
END_TEST

/* ------------------------------------------------------ CQ caches */

/* A CQ side per kind: c channels per code (0: the uniform preset kivi4),
 * b bits; outliers, rank and block for both sides. */
typedef struct cq_shape {
    unsigned d, kc, kb, vc, vb;
    float ratio;
    unsigned rank, block, T, group, nq;
} cq_shape;

static const cq_shape cq_shapes[] = {
    {64, 2, 8, 4, 8, 0.0f, 0, 64, 333, 3, 2},     /* odd token count, GQA, 2 query tokens */
    {128, 4, 6, 8, 4, 0.05f, 2, 64, 201, 2, 1},   /* one outlier per side, rank 2 */
    {128, 8, 5, 2, 7, 0.1f, 4, 32, 97, 1, 3},     /* several outliers per side (ref's select), rank 4 */
    {64, 0, 4, 4, 8, 0.02f, 0, 64, 150, 4, 1},    /* uniform keys, CQ values */
    {64, 4, 4, 0, 4, 0.0f, 3, 16, 75, 2, 2},      /* CQ keys (rank 3), uniform values */
    /* 8-bit codes, the cpu's AVX-512 CQ kernels, every c on both sides:
     * c = 8 and 16 with outliers and rank, blocks of 32; head dim 256, c =
     * 4 and 2, five rows (4 + 1); head dim 192, three rows; seven rows (4 +
     * 3), blocks of 16, a context past 1024 weights a row */
    {128, 8, 8, 16, 8, 0.05f, 2, 32, 301, 4, 1},
    {256, 4, 8, 2, 8, 0.02f, 0, 16, 120, 5, 1},
    {192, 16, 8, 8, 8, 0.05f, 2, 64, 200, 3, 1},
    {128, 16, 8, 8, 8, 0.0f, 0, 16, 1100, 7, 1},
};

static gear_config cq_side(gear_kind kind, unsigned c, unsigned b, const cq_shape *s)
{
    char preset[32];
    snprintf(preset, sizeof preset, "cq-%uc%ub", c, b);
    gear_config cfg = tu_preset(c ? preset : "kivi4", kind);
    cfg.block = s->block;
    cfg.outlier_ratio = s->ratio;
    cfg.group = 32;
    if (c) cfg.rank = s->rank; /* the cpu's uniform low rank differs from ref's by design */
    return cfg;
}

/* Caches byte-identical to ref (codes, outliers, factors), decompressed
 * bit-identically, attention within 1e-5 (normalized error). */
static void cq_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    const unsigned H = 2;
    for (size_t ci = 0; ci < sizeof cq_shapes / sizeof cq_shapes[0]; ci++) {
        const cq_shape *s = &cq_shapes[ci];
        unsigned d = s->d, T = s->T;
        gear_calib_params p;
        gear_calib_params_init(&p);
        p.cq_dim[0] = s->kc, p.cq_bits[0] = s->kc ? s->kb : 0;
        p.cq_dim[1] = s->vc, p.cq_bits[1] = s->vc ? s->vb : 0;
        p.kmeans_iters = 3;
        gear_calib *cal = NULL;
        TU_OK(gear_calib_create(&p, 1, H, d, &cal));
        /* codebooks fitted on 256 tokens of the same distribution */
        float *k = tu_synth(700 + ci, GEAR_KEY, (int)H, 256, (int)d);
        float *v = tu_synth(800 + ci, GEAR_VALUE, (int)H, 256, (int)d);
        gear_tensor tk, tv;
        TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, 256, d, 0));
        TU_OK(gear_tensor_init(&tv, v, GEAR_F32, 3, H, 256, d, 0));
        TU_OK(gear_calib_add(cal, 0, &tk, &tv, NULL));
        TU_OK(gear_calib_fit(cal));
        free(k);
        free(v);
        k = tu_synth(750 + ci, GEAR_KEY, (int)H, (int)T, (int)d);
        v = tu_synth(850 + ci, GEAR_VALUE, (int)H, (int)T, (int)d);
        gear_config ck = cq_side(GEAR_KEY, s->kc, s->kb, s), cv = cq_side(GEAR_VALUE, s->vc, s->vb, s);
        gear_cache *ca = NULL, *cb = NULL;
        TU_OK(gear_cache_create_calibrated(ref, &ck, &cv, cal, 1, H, d, T > 1024 ? T : 1024, &ca));
        TU_OK(gear_cache_create_calibrated(be, &ck, &cv, cal, 1, H, d, T > 1024 ? T : 1024, &cb));
        unsigned t1 = T - 5; /* prefill, then decode steps */
        TU_OK(tu_cache_append_rows(ca, 0, k, v, (int)H, (int)T, (int)d, 0, (int)t1));
        TU_OK(tu_cache_append_rows(cb, 0, k, v, (int)H, (int)T, (int)d, 0, (int)t1));
        for (unsigned t = t1; t < T; t++) {
            TU_OK(tu_cache_append_rows(ca, 0, k, v, (int)H, (int)T, (int)d, (int)t, 1));
            TU_OK(tu_cache_append_rows(cb, 0, k, v, (int)H, (int)T, (int)d, (int)t, 1));
        }
        size_t la, lb;
        uint8_t *sa = tu_cache_save(ca, &la), *sb = tu_cache_save(cb, &lb);
        TU_ASSERT(la == lb && !memcmp(sa, sb, la), "%s CQ case %zu: cache bytes differ from ref", name, ci);
        float *ka, *va, *kb, *vb;
        size_t N = (size_t)H * T * d;
        tu_cache_decompress(ca, 0, (int)H, (int)T, (int)d, &ka, &va);
        tu_cache_decompress(cb, 0, (int)H, (int)T, (int)d, &kb, &vb);
        TU_ASSERT(tu_count_diff_bits(ka, kb, N) == 0 && tu_count_diff_bits(va, vb, N) == 0,
                  "%s CQ case %zu: reconstruction differs from ref", name, ci);
        unsigned hq = H * s->group;
        size_t qn = (size_t)hq * s->nq * d;
        float *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
        gear_synth_normal(900 + ci, (int)qn, q);
        float scale = 1.0f / sqrtf((float)d);
        TU_OK(tu_cache_attention(ca, 0, q, (int)hq, (int)s->nq, (int)d, scale, oa));
        TU_OK(tu_cache_attention(cb, 0, q, (int)hq, (int)s->nq, (int)d, scale, ob));
        double e = tu_rel_err(ob, oa, qn);
        TU_ASSERT(e < 1e-5, "%s CQ case %zu: attention relative error %g", name, ci, e);
        free(q); free(oa); free(ob); free(ka); free(va); free(kb); free(vb);
        free(sa); free(sb); free(k); free(v);
        gear_cache_free(ca);
        gear_cache_free(cb);
        gear_calib_free(cal);
    }
}

START_TEST(test_cq_cache_matches_ref) { for_each_backend(cq_case); }
END_TEST

/* -------------------------------------------------------------- caches */

static void cache_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const char *names[] = {"gear2", "kivi2", "gearl4", "fp16"};
    const int hkv = 2, hq = 6, d = 32, T = 32 * 3 + 11;
    float *k = tu_synth(90, GEAR_KEY, hkv, T, d), *v = tu_synth(91, GEAR_VALUE, hkv, T, d);
    for (size_t p = 0; p < sizeof names / sizeof names[0]; p++) {
        gear_config ck = tu_preset(names[p], GEAR_KEY), cv = tu_preset(names[p], GEAR_VALUE);
        ck.block = cv.block = 32;
        gear_cache *ca = NULL, *cb = NULL, *cb2 = NULL;
        TU_OK(gear_cache_create(ref, &ck, &cv, 2, hkv, d, 256, &ca));
        TU_OK(gear_cache_create(be, &ck, &cv, 2, hkv, d, 256, &cb));
        TU_OK(gear_cache_create(be, &ck, &cv, 2, hkv, d, 256, &cb2));
        TU_OK(tu_cache_append(ca, 1, k, v, hkv, T, d));
        TU_OK(tu_cache_append(cb, 1, k, v, hkv, T, d));
        for (int t = 0; t < T; t += 7) /* streaming on the backend too */
            TU_OK(tu_cache_append_rows(cb2, 1, k, v, hkv, T, d, t, t + 7 <= T ? 7 : T - t));
        size_t la, lb, lb2;
        uint8_t *sa = tu_cache_save(ca, &la), *sb = tu_cache_save(cb, &lb), *sb2 = tu_cache_save(cb2, &lb2);
        TU_EQ(la, lb);
        TU_ASSERT(lb == lb2 && !memcmp(sb, sb2, lb), "%s %s: streaming differs from prefill", name, names[p]);
        if (same || !preset_has_lowrank(&ck))
            TU_ASSERT(!memcmp(sa, sb, la), "%s %s: cache bytes differ from ref", name, names[p]);
        /* reconstruction */
        float *ka, *va, *kb, *vb;
        size_t N = (size_t)hkv * T * d;
        tu_cache_decompress(ca, 1, hkv, T, d, &ka, &va);
        tu_cache_decompress(cb, 1, hkv, T, d, &kb, &vb);
        TU_ASSERT(tu_nmse(kb, ka, N) < NMSE_MAX && tu_nmse(vb, va, N) < NMSE_MAX,
                      "%s %s: cache reconstruction NMSE %g / %g", name, names[p], tu_nmse(kb, ka, N),
                      tu_nmse(vb, va, N));
        /* attention, nq = 1 and 3, grouped-query */
        for (int nq = 1; nq <= 3; nq += 2) {
            size_t qn = (size_t)hq * nq * d;
            float *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn), *oc = tu_alloc_f(qn);
            gear_synth_normal(92 + (uint64_t)nq, (int)qn, q);
            TU_OK(tu_cache_attention(ca, 1, q, hq, nq, d, 0.18f, oa));
            TU_OK(tu_cache_attention(cb, 1, q, hq, nq, d, 0.18f, ob));
            TU_ASSERT(tu_nmse(ob, oa, qn) < NMSE_MAX, "%s %s nq %d: attention NMSE %g", name, names[p],
                          nq, tu_nmse(ob, oa, qn));
            if (same) TU_EQ(tu_count_diff_bits(oa, ob, qn), 0);
            /* the backend's cache loaded on ref, and ref's on the backend */
            gear_cache *x1 = NULL, *x2 = NULL;
            TU_OK(gear_cache_load_mem(ref, sb, lb, &x1));
            TU_OK(gear_cache_load_mem(be, sa, la, &x2));
            TU_OK(tu_cache_attention(x1, 1, q, hq, nq, d, 0.18f, oc));
            TU_ASSERT(tu_nmse(oc, ob, qn) < NMSE_MAX, "%s %s: %s cache on ref: NMSE %g", name, names[p],
                          name, tu_nmse(oc, ob, qn));
            TU_OK(tu_cache_attention(x2, 1, q, hq, nq, d, 0.18f, oc));
            TU_ASSERT(tu_nmse(oc, oa, qn) < NMSE_MAX, "%s %s: ref cache on %s: NMSE %g", name, names[p],
                          name, tu_nmse(oc, oa, qn));
            gear_cache_free(x1);
            gear_cache_free(x2);
            free(q);
            free(oa);
            free(ob);
            free(oc);
        }
        free(ka);
        free(va);
        free(kb);
        free(vb);
        free(sa);
        free(sb);
        free(sb2);
        gear_cache_free(ca);
        gear_cache_free(cb);
        gear_cache_free(cb2);
    }
    free(k);
    free(v);
}

START_TEST(test_cache_matches_ref) { for_each_backend(cache_case); }
END_TEST

/* The same one-layer cache of k and v ([hkv, T, d]) on ref (*ca) and on
 * be (*cb), with room for max_tokens. */
static void twin_caches(gear_context *ref, gear_context *be, const gear_config *ck, const gear_config *cv, int hkv,
                        int d, int T, unsigned max_tokens, const float *k, const float *v, gear_cache **ca,
                        gear_cache **cb)
{
    *ca = *cb = NULL;
    TU_OK(gear_cache_create(ref, ck, cv, 1, hkv, d, max_tokens, ca));
    TU_OK(gear_cache_create(be, ck, cv, 1, hkv, d, max_tokens, cb));
    TU_OK(tu_cache_append(*ca, 0, k, v, hkv, T, d));
    TU_OK(tu_cache_append(*cb, 0, k, v, hkv, T, d));
}

/* NMSE between the attention outputs of caches ca (ref) and cb for
 * queries [hq, nq, d] drawn from seed, times qmul; scale 1/sqrt(d). */
static double twin_attention(gear_cache *ca, gear_cache *cb, int hq, int nq, int d, uint64_t seed, float qmul)
{
    size_t qn = (size_t)hq * nq * d;
    float *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
    gear_synth_normal(seed, (int)qn, q);
    for (size_t i = 0; i < qn; i++) q[i] *= qmul;
    float sc = 1.0f / sqrtf((float)d);
    TU_OK(tu_cache_attention(ca, 0, q, hq, nq, d, sc, oa));
    TU_OK(tu_cache_attention(cb, 0, q, hq, nq, d, sc, ob));
    double e = tu_nmse(ob, oa, qn);
    free(q);
    free(oa);
    free(ob);
    return e;
}

/* Attention at the shapes real models use (head_dim 64, 80, 96, 128, 256, 64-token
 * blocks, 1 and 4 query heads per KV head, 1 and 2 query tokens) where a
 * backend takes its fast paths, for every preset; the context spans many
 * blocks plus a buffer tail, or (T = 576, 3 query tokens) ends on a block
 * boundary, so the causal mask falls inside the last compressed block. */
static void attention_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    /* 256: the widest head, where a value row holds eight outliers (the
     * several-row outlier path broadcasts its source row); 80 and 96
     * (Phi-2, Phi-3): value rows end in a short group (16, 32 channels) */
    static const int dims[] = {64, 128, 256, 80, 96}, groups[] = {1, 4};
    const size_t nd = sizeof dims / sizeof dims[0];
    const int hkv = 3; /* odd: the cpu kernel's two-heads-at-a-time path (G = 1) ends with one left over */
    int np = gear_preset_count();
    for (size_t cs = 0; cs < 2 * nd; cs++) {
        size_t ti = cs / nd, di = cs % nd;
        const int T = ti ? 64 * 9 : 64 * 9 + 5, nq_max = ti ? 3 : 2, d = dims[di];
        float *k = tu_synth(200 + di, GEAR_KEY, hkv, T, d), *v = tu_synth(210 + di, GEAR_VALUE, hkv, T, d);
        for (int p = 0; p < np; p++) {
            gear_config ck = tu_preset(gear_preset_name(p), GEAR_KEY);
            gear_config cv = tu_preset(gear_preset_name(p), GEAR_VALUE);
            if (ck.cq_dim) continue; /* needs a calibration: check_cq */
            gear_cache *ca, *cb;
            twin_caches(ref, be, &ck, &cv, hkv, d, T, 1024, k, v, &ca, &cb);
            for (size_t gi = 0; gi < 2; gi++)
                for (int nq = ti ? 3 : 1; nq <= nq_max; nq++) {
                    int hq = hkv * groups[gi];
                    double e = twin_attention(ca, cb, hq, nq, d, 220 + (uint64_t)nq + gi, 2.0f); /* peaked softmax */
                    TU_ASSERT(e < NMSE_MAX, "%s %s d %d G %d nq %d: attention NMSE %g", name, gear_preset_name(p), d,
                              groups[gi], nq, e);
                }
            gear_cache_free(ca);
            gear_cache_free(cb);
        }
        free(k);
        free(v);
    }
}

START_TEST(test_attention_model_shapes) { for_each_backend(attention_case); }
END_TEST

/* The uncompressed rows' kernels (the fp16 preset's blocks, every
 * preset's buffer) step over 16, 8, 4 or 2 tokens by row count and leave
 * the rest to a one-token loop: buffers of 1 to 17 and 63 tokens after
 * one block, 1 to 14 query rows (G 1..5 and 7 x 1, 2 query tokens: groups
 * of 4, 2 and 1 rows mixed), head dims 64, 80 and 48 (no 64-channel
 * value pass), against ref. */
static void buffer_tail_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "fp16"};
    static const int dims[] = {64, 80, 48}, tails[] = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 63}, groups[] = {1, 2, 3, 4, 5, 7};
    const int hkv = 2;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (size_t ti = 0; ti < sizeof tails / sizeof tails[0]; ti++) {
            const int d = dims[di], T = 64 + tails[ti];
            float *k = tu_synth(600 + ti, GEAR_KEY, hkv, T, d), *v = tu_synth(630 + ti, GEAR_VALUE, hkv, T, d);
            for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
                gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                gear_cache *ca, *cb;
                twin_caches(ref, be, &ck, &cv, hkv, d, T, 256, k, v, &ca, &cb);
                for (size_t gi = 0; gi < sizeof groups / sizeof groups[0]; gi++)
                    for (int nq = 1, G = groups[gi]; nq <= 2; nq++) {
                        double e = twin_attention(ca, cb, hkv * G, nq, d, 660 + (uint64_t)(G * 2 + nq), 2.0f);
                        TU_ASSERT(e < NMSE_MAX, "%s %s d %d, %d buffered tokens, G %d nq %d: attention NMSE %g", name,
                                  presets[p], d, tails[ti], G, nq, e);
                    }
                gear_cache_free(ca);
                gear_cache_free(cb);
            }
            free(k);
            free(v);
        }
}

START_TEST(test_attention_buffer_tails) { for_each_backend(buffer_tail_case); }
END_TEST

/* Caches of layouts beside the presets' (rank 2, one outlier per side):
 * ranks 1, 3, 4, 6 and 8, and 2, 3, 4 and 8 outliers per side (outlier
 * ratios 0.05 to 0.25 on groups of 64), which the cpu module's AVX-512
 * kernels take as far as they fit (attention: rank 4 and 512 outliers a
 * block in the presets' kernels, rank 8 and 2048 in the larger ones: 0.25
 * at head dim 128 and 0.12 at 256 make 2048, and rank 8 with 0.12 at 256
 * fills their scratch; rank 7, 2-bit, takes their plain column split in
 * float and fixed point), and beyond that its portable paths:
 * reconstructions and attention against ref; three query rows (G 1, nq 3)
 * leave a partial row quad. */
static void layouts_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const struct { const char *preset; unsigned rank; float s; } lay[] = {
        {"gear2", 1, 0.02f}, {"gear2", 3, 0.02f}, {"gear2", 4, 0.02f}, {"gear2", 2, 0.05f},
        {"gear2", 2, 0.10f}, {"gear2", 4, 0.05f}, {"kivi2", 0, 0.12f}, {"gear4", 4, 0.05f},
        {"gear2", 8, 0.02f}, {"gear4", 6, 0.02f}, {"gear2", 8, 0.25f}, {"gear2", 8, 0.12f},
        {"gear2", 7, 0.05f},
    };
    /* 256: the widest head, where rank 2 and one outlier a side fill the
     * AVX-512 kernels' scratch exactly and rank 3 no longer fits; 96:
     * short value groups, with fewer outliers than the others (or none) */
    static const int dims[] = {64, 128, 256, 96}, groups[] = {1, 4};
    const int hkv = 2, T = 64 * 5 + 5;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        int d = dims[di];
        float *k = tu_synth(230 + di, GEAR_KEY, hkv, T, d), *v = tu_synth(240 + di, GEAR_VALUE, hkv, T, d);
        for (size_t li = 0; li < sizeof lay / sizeof lay[0]; li++) {
            gear_config ck = tu_preset(lay[li].preset, GEAR_KEY), cv = tu_preset(lay[li].preset, GEAR_VALUE);
            ck.rank = cv.rank = lay[li].rank;
            ck.iters = cv.iters = 3;
            ck.outlier_ratio = cv.outlier_ratio = lay[li].s;
            gear_cache *ca, *cb;
            twin_caches(ref, be, &ck, &cv, hkv, d, T, 1024, k, v, &ca, &cb);
            float *ka, *va, *kb, *vb;
            size_t N = (size_t)hkv * T * d;
            tu_cache_decompress(ca, 0, hkv, T, d, &ka, &va);
            tu_cache_decompress(cb, 0, hkv, T, d, &kb, &vb);
            TU_ASSERT(tu_nmse(kb, ka, N) < NMSE_MAX && tu_nmse(vb, va, N) < NMSE_MAX,
                      "%s %s rank %u s %g d %d: reconstruction NMSE %g / %g", name, lay[li].preset, lay[li].rank,
                      (double)lay[li].s, d, tu_nmse(kb, ka, N), tu_nmse(vb, va, N));
            free(ka);
            free(va);
            free(kb);
            free(vb);
            for (size_t gi = 0; gi < 2; gi++)
                for (int nq = 1; nq <= (gi ? 2 : 3); nq++) {
                    int hq = hkv * groups[gi];
                    double e = twin_attention(ca, cb, hq, nq, d, 250 + (uint64_t)nq + gi, 1.0f);
                    TU_ASSERT(e < NMSE_MAX, "%s %s rank %u s %g d %d G %d nq %d: attention NMSE %g", name,
                              lay[li].preset, lay[li].rank, (double)lay[li].s, d, groups[gi], nq, e);
                }
            gear_cache_free(ca);
            gear_cache_free(cb);
        }
        free(k);
        free(v);
    }
}

START_TEST(test_attention_other_layouts) { for_each_backend(layouts_case); }
END_TEST

/* The same attention with q scaled by f and the softmax scale by 1/f:
 * the logits, and so the outputs, are those of f = 1 up to rounding, on
 * every backend.  A tiny q with a huge scale once made the cpu module's
 * fixed-point kernel drop every key product (below 2^-100) that the
 * scale then made count (cpu vs ref relative error 1.5 at f = 1e-32).
 * Head dims 64 and 128, and 80 and 96, whose value rows end in a short
 * group (16, 32 channels) and which the fixed-point kernel also takes. */
static void extreme_scale_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "kcvt4", "gear2", "gear4"};
    static const float fs[] = {1e-32f, 1e-20f, 1e20f};
    static const int dims[] = {64, 128, 80, 96};
    const int hkv = 2, G = 4, hq = hkv * G;
    for (int di = 0; di < (int)(sizeof dims / sizeof dims[0]); di++) {
        const int d = dims[di], T = 64 * 4 + 5;
        float *k = tu_synth(240 + (uint64_t)di, GEAR_KEY, hkv, T, d), *v = tu_synth(250 + (uint64_t)di, GEAR_VALUE, hkv, T, d);
        size_t qn = (size_t)hq * d;
        float *q0 = tu_alloc_f(qn), *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
        gear_synth_normal(260 + (uint64_t)di, (int)qn, q0);
        for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
            gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
            gear_cache *ca, *cb;
            twin_caches(ref, be, &ck, &cv, hkv, d, T, 1024, k, v, &ca, &cb);
            for (size_t fi = 0; fi < sizeof fs / sizeof fs[0]; fi++) {
                for (size_t i = 0; i < qn; i++) q[i] = 2.0f * q0[i] * fs[fi];
                float sc = 1.0f / sqrtf((float)d) / fs[fi];
                TU_OK(tu_cache_attention(ca, 0, q, hq, 1, d, sc, oa));
                TU_OK(tu_cache_attention(cb, 0, q, hq, 1, d, sc, ob));
                TU_ASSERT(tu_nmse(ob, oa, qn) < NMSE_MAX, "%s %s d %d q x %g, scale / %g: attention NMSE %g",
                          name, presets[p], d, (double)fs[fi], (double)fs[fi], tu_nmse(ob, oa, qn));
            }
            gear_cache_free(ca);
            gear_cache_free(cb);
        }
        free(q0);
        free(q);
        free(oa);
        free(ob);
        free(k);
        free(v);
    }
}

START_TEST(test_attention_extreme_scale) { for_each_backend(extreme_scale_case); }
END_TEST

/* Huge finite queries with an ordinary scale: the scores may or may not
 * fit fp32, and every backend must give ref's status (GEAR_ERR_RANGE only
 * where ref overflows too) and, when both succeed, ref's output.  A query
 * channel of 1e38 once gave the cpu module GEAR_ERR_RANGE where ref
 * returned the one-hot softmax: its fp32 intermediates (the fixed-point
 * grid's bound, the dot products) overflowed where the scores did not.
 * Queries of 2^88 and 2^94 stay below the core's double-precision
 * threshold and reach the kernels: the AVX2 kernel's in-place 2-bit codes
 * (factors up to 4^7) take the first and fall back to plain codes for
 * the second, whose minima's terms pass 2^100.  Head dims 64, 128, 80
 * and 96. */
static void huge_query_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "gear2", "kivi4", "gear4", "fp16"};
    static const char *const what[] = {"one channel 1e38", "one channel 3e37", "all x 1e36", "all x 1e37",
                                       "all x 2^88", "all x 2^94"};
    static const float scales[] = {1, 1, 1e36f, 1e37f, 0x1p88f, 0x1p94f};
    static const int dims[] = {64, 128, 80, 96};
    const int hkv = 2, T = 64 * 4 + 9;
    for (int di = 0; di < (int)(sizeof dims / sizeof dims[0]); di++)
        for (int G = 1; G <= 4; G += 3) {
            const int d = dims[di], hq = hkv * G;
            size_t qn = (size_t)hq * d;
            float *k = tu_synth(300 + (uint64_t)di, GEAR_KEY, hkv, T, d), *v = tu_synth(305 + (uint64_t)di, GEAR_VALUE, hkv, T, d);
            float *q0 = tu_alloc_f(qn), *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
            gear_synth_normal(310 + (uint64_t)di, (int)qn, q0);
            for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
                gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                gear_cache *ca, *cb;
                twin_caches(ref, be, &ck, &cv, hkv, d, T, T, k, v, &ca, &cb);
                for (int w = 0; w < 6; w++) {
                    for (size_t i = 0; i < qn; i++)
                        q[i] = w < 2 ? (i % (size_t)d == 5 ? (w ? 3e37f : 1e38f) : q0[i]) : q0[i] * scales[w];
                    gear_status sa = tu_cache_attention(ca, 0, q, hq, 1, d, 0.125f, oa);
                    gear_status sb = tu_cache_attention(cb, 0, q, hq, 1, d, 0.125f, ob);
                    TU_ASSERT(sa == sb, "%s %s d %d G %d, %s: status %d, ref %d", name, presets[p], d, G, what[w],
                              (int)sb, (int)sa);
                    if (sa == GEAR_OK && sb == GEAR_OK)
                        TU_ASSERT(tu_nmse(ob, oa, qn) < NMSE_MAX, "%s %s d %d G %d, %s: attention NMSE %g", name,
                                  presets[p], d, G, what[w], tu_nmse(ob, oa, qn));
                }
                gear_cache_free(ca);
                gear_cache_free(cb);
            }
            free(q0);
            free(q);
            free(oa);
            free(ob);
            free(k);
            free(v);
        }
}

/* A huge query under a tiny scale (a helper's review): q = 1e36 on 64
 * channels, scale 6.25e-38, the last two tokens' keys -5.5 and -5.25
 * (scaled logits -22 and -21), every other key -60000.  The sums before
 * the scale overflow fp32 (-3.5e38 and -3.4e38 against a limit of
 * 3.4e38): the cpu module's buffer and raw-block paths once took the
 * first for -Inf and gave its token weight 0 (output 0, ref 0.269).
 * The same on D = 80 and 96 channels: logits -22 D / 64 and -21 D / 64,
 * out[0] = 1 / (1 + e^(D / 64)), sums further beyond fp32. */
static void tiny_scale_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"fp16", "kivi2"};
    enum { DMAX = 96 };
    for (int D = 64; D <= DMAX; D += D == 64 ? 16 : 32) { /* 64, 80, 96 */
        for (int T = 2; T <= 66; T += 64) {
            float *k = tu_alloc_f((size_t)T * D), *v = tu_alloc_f((size_t)T * D), q[DMAX], oa[DMAX], ob[DMAX];
            const double want = 1.0 / (1.0 + exp(D / 64.0));
            for (int t = 0; t < T; t++)
                for (int i = 0; i < D; i++) {
                    k[t * D + i] = t == T - 2 ? -5.5f : t == T - 1 ? -5.25f : -60000.0f;
                    v[t * D + i] = t == T - 2 ? 1.0f : 0.0f;
                }
            for (int i = 0; i < D; i++) q[i] = 1e36f;
            for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
                gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                gear_cache *ca, *cb;
                twin_caches(ref, be, &ck, &cv, 1, D, T, (unsigned)T, k, v, &ca, &cb);
                TU_OK(tu_cache_attention(ca, 0, q, 1, 1, D, 6.25e-38f, oa));
                TU_OK(tu_cache_attention(cb, 0, q, 1, 1, D, 6.25e-38f, ob));
                TU_ASSERT(fabs(oa[0] - want) < 1e-4, "ref %s D %d T %d: out[0] %g, 1 / (1 + e^(D / 64)) = %g",
                          presets[p], D, T, (double)oa[0], want);
                TU_ASSERT(tu_nmse(ob, oa, D) < NMSE_MAX, "%s %s D %d T %d, q 1e36, scale 6.25e-38: out[0] %g, ref %g", name,
                          presets[p], D, T, (double)ob[0], (double)oa[0]);
                gear_cache_free(ca);
                gear_cache_free(cb);
            }
            free(k);
            free(v);
        }
    }
}

/* A NaN, +Inf or -Inf in the query (fp32 or fp16, in the first, a middle
 * or the last query head), or a NaN or infinite scale, at head dims 80 and
 * 96: GEAR_ERR_NONFINITE on ref and on every backend (gear.h), out
 * untouched and the cache unchanged; the finite query then gives ref's
 * output. */
static void nonfinite_query_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "gear2", "kcvt4", "fp16"};
    static const float bads[] = {NAN, INFINITY, -INFINITY};
    static const int dims[] = {80, 96};
    const int hkv = 2, G = 4, hq = hkv * G, nq = 2, T = 64 * 3 + 5;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++) {
        const int d = dims[di];
        const size_t qn = (size_t)hq * nq * d;
        float *k = tu_synth(320 + di, GEAR_KEY, hkv, T, d), *v = tu_synth(325 + di, GEAR_VALUE, hkv, T, d);
        float *q = tu_alloc_f(qn), *qq = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
        uint16_t *q16 = malloc(qn * sizeof *q16);
        TU_CHECK(q16 != NULL);
        gear_synth_normal(330 + di, (int)qn, q);
        for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
            gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
            gear_cache *c[2];
            twin_caches(ref, be, &ck, &cv, hkv, d, T, T, k, v, &c[0], &c[1]);
            size_t len[2];
            uint8_t *before[2] = {tu_cache_save(c[0], &len[0]), tu_cache_save(c[1], &len[1])};
            for (int i = 0; i < 2; i++) {
                const char *who = i ? name : "ref";
                gear_tensor tq, to;
                float *out = i ? ob : oa;
                const size_t where[] = {3, qn / 2 + 5, qn - 1}; /* query heads 0, 4 (KV head 1) and 7 */
                for (size_t bi = 0; bi < sizeof bads / sizeof bads[0]; bi++)
                    for (size_t wi = 0; wi < sizeof where / sizeof where[0]; wi++)
                        for (int half = 0; half < 2; half++) {
                            size_t at = where[wi];
                            for (size_t j = 0; j < qn; j++) {
                                qq[j] = j == at ? bads[bi] : q[j];
                                q16[j] = gear_float_to_half(qq[j]);
                                out[j] = 12345.0f;
                            }
                            TU_OK(gear_tensor_init(&tq, half ? (void *)q16 : (void *)qq, half ? GEAR_F16 : GEAR_F32, 3,
                                                   hq, nq, d, 0));
                            TU_OK(gear_tensor_init(&to, out, GEAR_F32, 3, hq, nq, d, 0));
                            gear_status st = gear_cache_attention(c[i], 0, &tq, 0.125f, &to);
                            TU_ASSERT(st == GEAR_ERR_NONFINITE, "%s %s d %d: %g at query entry %zu (%s): %s", who,
                                      presets[p], d, (double)bads[bi], at, half ? "fp16" : "fp32",
                                      gear_status_string(st));
                            for (size_t j = 0; j < qn; j++)
                                TU_ASSERT(out[j] == 12345.0f, "%s %s d %d: %g in the query: out[%zu] written", who,
                                          presets[p], d, (double)bads[bi], j);
                        }
                for (size_t bi = 0; bi < sizeof bads / sizeof bads[0]; bi++) {
                    for (size_t j = 0; j < qn; j++) out[j] = 12345.0f;
                    gear_status st = tu_cache_attention(c[i], 0, q, hq, nq, d, bads[bi], out);
                    TU_ASSERT(st == GEAR_ERR_NONFINITE, "%s %s d %d: scale %g: %s", who, presets[p], d,
                              (double)bads[bi], gear_status_string(st));
                    for (size_t j = 0; j < qn; j++)
                        TU_ASSERT(out[j] == 12345.0f, "%s %s d %d: scale %g: out[%zu] written", who, presets[p], d,
                                  (double)bads[bi], j);
                }
                size_t l;
                uint8_t *after = tu_cache_save(c[i], &l);
                TU_ASSERT(l == len[i] && !memcmp(after, before[i], l), "%s %s d %d: refused attention changed the cache",
                          who, presets[p], d);
                free(after);
                free(before[i]);
            }
            TU_OK(tu_cache_attention(c[0], 0, q, hq, nq, d, 0.125f, oa));
            TU_OK(tu_cache_attention(c[1], 0, q, hq, nq, d, 0.125f, ob));
            TU_ASSERT(tu_nmse(ob, oa, qn) < NMSE_MAX, "%s %s d %d: attention NMSE %g after refused queries", name,
                      presets[p], d, tu_nmse(ob, oa, qn));
            gear_cache_free(c[0]);
            gear_cache_free(c[1]);
        }
        free(q16);
        free(q);
        free(qq);
        free(oa);
        free(ob);
        free(k);
        free(v);
    }
}

START_TEST(test_attention_huge_queries)
{
    for_each_backend(huge_query_case);
    for_each_backend(tiny_scale_case);
    for_each_backend(nonfinite_query_case);
}
END_TEST

/* Keys whose few large weights set the fixed-point grid of a whole
 * block row: sink tokens (keys +-1000 at positions 0 and 1, widening the
 * range of every channel), four key channels 25 times the rest with the
 * query's same channels 4 times, and keys and values across fp16's range
 * with small queries (logits of about a thousand).  The cpu module's
 * VNNI kernel once rounded its weights to 2^-15 of the largest whatever
 * the logits' size: NMSE 2e-6 to 2e-5 here, where fp32 gives 1e-11; it
 * now adds a second pass where its rounding could move a logit by more
 * than 2e-3.
 * Tighter than NMSE_MAX: such data should give no more error than
 * ordinary data. */
#define NMSE_DOMINANT 1e-7

static void dominant_data(int sc, int hkv, int T, int d, int G, float *k, float *v, float *q)
{
    static const int chans[] = {3, 17, 40, 41};
    size_t n = (size_t)hkv * T * d, qn = (size_t)hkv * G * d;
    uint64_t st = 91;
    gear_synth_normal(270 + (uint64_t)G, (int)qn, q);
    if (sc == 0) /* sink tokens */
        for (int h = 0; h < hkv; h++)
            for (int t = 0; t < 2; t++)
                for (int c = 0; c < d; c++) k[((size_t)h * T + t) * d + c] = tu_rand01(&st) < 0.5 ? -1000.0f : 1000.0f;
    if (sc == 1 || sc == 4) { /* large channels; with 4, only every other query row weighs them (the
                                * others 0 there), so that some rows of a head take the finer grids and
                                * some do not (the cpu module's passes pack the rows that do) */
        for (size_t r = 0; r < n / d; r++)
            for (int i = 0; i < 4; i++) k[r * d + chans[i]] *= 25.0f;
        for (size_t r = 0; r < qn / d; r++)
            for (int i = 0; i < 4; i++) q[r * d + chans[i]] *= sc == 1 || r % 2 ? 4.0f : 0.0f;
    }
    if (sc == 3) { /* two key channels far above the rest at one token a block, 0 elsewhere (code 0), the
                    * query's large and negative there: the winning tokens' logits come from the small
                    * weights, which two int16 grids held to 2^-31 of the large one (a second review: 1.5e-3) */
        for (int h = 0; h < hkv; h++)
            for (int t = 0; t < T; t++) {
                k[((size_t)h * T + t) * d] = t % 64 == 5 ? 60000.0f : 0.0f;
                k[((size_t)h * T + t) * d + 1] = t % 64 == 5 ? 41234.0f : 0.0f;
            }
        for (size_t r = 0; r < qn / d; r++) {
            q[r * d] = -1e4f;
            q[r * d + 1] = -8123.0f;
        }
    }
    if (sc == 2) { /* fp16's range */
        tu_fill_uniform(280, k, n, -65504.0f, 65504.0f);
        tu_fill_uniform(281, v, n, -65504.0f, 65504.0f);
        for (size_t i = 0; i < n; i++) {
            k[i] = tu_h(k[i]);
            v[i] = tu_h(v[i]);
        }
        for (size_t i = 0; i < qn; i++) q[i] *= 1e-3f;
    }
    for (size_t i = 0; i < qn; i++) q[i] *= 2.0f;
}

/* Case sc of dominant_data at head dims 64 and 128, G = 1 and 4, for the
 * presets given: be against ref, with the caller's rounding mode set to
 * downward around be's attention if `downward`. */
static void dominant_run(gear_context *be, gear_context *ref, const char *name, int sc, const char *const *presets,
                         size_t np, int downward)
{
    static const char *const what[] = {"sink tokens", "large channels", "fp16 range", "huge channels at code 0",
                                       "large channels, odd query rows"};
    const int hkv = 2, T = 64 * 8 + 5;
    for (int di = 0; di < 2; di++)
        for (int G = 1; G <= 4; G += 3) {
            const int d = di ? 128 : 64, hq = hkv * G;
            size_t qn = (size_t)hq * d;
            float *k = tu_synth(290 + (uint64_t)di, GEAR_KEY, hkv, T, d), *v = tu_synth(295 + (uint64_t)di, GEAR_VALUE, hkv, T, d);
            float *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn);
            dominant_data(sc, hkv, T, d, G, k, v, q);
            for (size_t p = 0; p < np; p++) {
                gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                gear_cache *ca, *cb;
                twin_caches(ref, be, &ck, &cv, hkv, d, T, T, k, v, &ca, &cb);
                float scale = 1.0f / sqrtf((float)d);
                TU_OK(tu_cache_attention(ca, 0, q, hq, 1, d, scale, oa));
                int mode = fegetround();
                if (downward) TU_CHECK(fesetround(FE_DOWNWARD) == 0);
                gear_status st = tu_cache_attention(cb, 0, q, hq, 1, d, scale, ob);
                fesetround(mode);
                TU_OK(st);
                TU_ASSERT(tu_nmse(ob, oa, qn) < NMSE_DOMINANT, "%s %s d %d G %d, %s%s: attention NMSE %g", name,
                          presets[p], d, G, what[sc], downward ? ", rounding downward" : "", tu_nmse(ob, oa, qn));
                gear_cache_free(ca);
                gear_cache_free(cb);
            }
            free(q);
            free(oa);
            free(ob);
            free(k);
            free(v);
        }
}

static void dominant_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "gear2", "kivi4", "kcvt4", "gear4"};
    for (int sc = 0; sc < 5; sc++) dominant_run(be, ref, name, sc, presets, 5, 0);
}

START_TEST(test_attention_dominant_keys) { for_each_backend(dominant_case); }
END_TEST

/* The large-channel data with the caller's rounding mode set to downward
 * around the attention: the cpu module's fixed-point grid once rounded its
 * weights by the mode (cvtps2dq) but measured what it missed as if to
 * nearest, and its second pass then added the wrong correction (a second
 * review: NMSE 4.2e-6). */
static void rounding_mode_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "kivi4", "gear2"};
    dominant_run(be, ref, name, 1, presets, 3, 1);
}

START_TEST(test_attention_rounding_mode) { for_each_backend(rounding_mode_case); }
END_TEST

/* Weights that all round the same way on the fixed-point kernel's grid
 * (a helper's review): keys are whole codes 0 .. 2^b - 1 in every block
 * and channel (step 1, minimum 0: the cache holds them exactly), one
 * query channel sets the grid's step a and every other sits at
 * a*(n + 0.49), so that each rounds by 0.49 a in the same direction, and
 * the values carry the key sums, so that the output shows the logits'
 * error.  The kernel's first check assumed the roundings add as a random
 * walk (sqrt(d)); here they add linearly (d), and just below its
 * threshold the NMSE against ref reached 2.3e-4.  Now it bounds the sum
 * for the worst codes, exactly. */
static void coherent_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)same;
    static const char *const presets[] = {"kivi2", "kivi4"};
    const int T = 64 * 8;
    for (int p = 0; p < 2; p++)
        for (int d = 64; d <= 128; d *= 2)
            for (int fi = 0; fi < 3; fi++) {
                const int cmax = p ? 15 : 3;
                float *k = tu_alloc_f((size_t)T * d), *v = tu_alloc_f((size_t)T * d), *q = tu_alloc_f((size_t)d);
                float oa[128], ob[128], scale = 1.0f / sqrtf((float)d);
                uint64_t st = 5;
                for (int t = 0; t < T; t++) {
                    int sum = 0;
                    for (int c = 0; c < d; c++) {
                        int code = t % 64 == 0 ? 0 : t % 64 == 1 || c == 0 ? cmax : (int)(tu_rand01(&st) * (cmax + 1));
                        k[(size_t)t * d + c] = (float)code;
                        sum += c ? code : 0;
                    }
                    for (int c = 0; c < d; c++)
                        v[(size_t)t * d + c] = ((float)sum - 0.5f * (float)(cmax * (d - 1))) / (float)d + (float)(tu_rand01(&st) - 0.5);
                }
                /* the grid step: around the first check's threshold (2e-3
                 * logits as a random walk), below it and far above */
                static const float factor[] = {0.99f, 1.01f, 10.0f};
                float a = factor[fi] * 2.0f * 2e-3f / (scale * (float)cmax * sqrtf((float)d));
                q[0] = a * 32512.0f;
                for (int c = 1; c < d; c++) q[c] = a * ((float)lrint((tu_rand01(&st) - 0.5) / a) + 0.49f);
                gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                gear_cache *ca = NULL, *cb = NULL;
                TU_OK(gear_cache_create(ref, &ck, &cv, 1, 1, d, T, &ca));
                TU_OK(gear_cache_create(be, &ck, &cv, 1, 1, d, T, &cb));
                TU_OK(tu_cache_append(ca, 0, k, v, 1, T, d));
                TU_OK(tu_cache_append(cb, 0, k, v, 1, T, d));
                TU_OK(tu_cache_attention(ca, 0, q, 1, 1, d, scale, oa));
                TU_OK(tu_cache_attention(cb, 0, q, 1, 1, d, scale, ob));
                TU_ASSERT(tu_nmse(ob, oa, (size_t)d) < NMSE_DOMINANT, "%s %s d %d, step at %g x the threshold: NMSE %g",
                          name, presets[p], d, (double)factor[fi], tu_nmse(ob, oa, (size_t)d));
                gear_cache_free(ca);
                gear_cache_free(cb);
                free(k);
                free(v);
                free(q);
            }
}

START_TEST(test_attention_coherent_rounding) { for_each_backend(coherent_case); }
END_TEST

/* ---------------------------------------------------------- fp16 input */

/* Compress an [H,T,d] fp16 view whose rows are ld >= d halves apart. */
static gear_status compress_f16_view(gear_context *ctx, const gear_config *cfg, uint16_t *x, int H,
                                     int T, int d, int ld, uint8_t **out, size_t *len)
{
    gear_tensor t;
    size_t bound = 0;
    TU_OK(gear_tensor_init(&t, x, GEAR_F16, 3, H, T, d, 0));
    t.strides[1] = ld;
    t.strides[0] = (int64_t)T * ld;
    TU_OK(gear_compress_bound(cfg, &t, &bound));
    *out = malloc(bound);
    TU_CHECK(*out != NULL);
    return gear_compress(ctx, cfg, &t, 0, *out, bound, len);
}

static void f16_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const struct { int H, T, d, ld; } sh[] = {
        {3, 64 * 3 + 9, 128, 128}, /* contiguous: blocks straight from the halves */
        {2, 64 * 2 + 1, 64, 80},   /* padded rows */
        {2, 64 * 2 + 5, 96, 96},   /* values with a short last group */
    };
    int np = gear_preset_count();
    for (size_t si = 0; si < sizeof sh / sizeof sh[0]; si++) {
        int H = sh[si].H, T = sh[si].T, d = sh[si].d, ld = sh[si].ld;
        size_t N = (size_t)H * T * d;
        for (int kind = 0; kind < 2; kind++) {
            float *x = tu_synth(700 + si * 2 + (size_t)kind, (gear_kind)kind, H, T, d);
            uint16_t *x16 = calloc((size_t)H * T * ld, sizeof *x16);
            TU_CHECK(x16 != NULL);
            for (size_t i = 0; i < N; i++) {
                size_t r = i / (size_t)d;
                x16[r * (size_t)ld + i % (size_t)d] = gear_float_to_half(x[i]);
                x[i] = tu_h(x[i]); /* the same values in fp32 */
            }
            for (int p = 0; p < np; p++) {
                gear_config cfg = tu_preset(gear_preset_name(p), (gear_kind)kind);
                if (cfg.cq_dim) continue;
                char what[128];
                snprintf(what, sizeof what, "%s fp16 input, %s %s [%d,%d,%d] rows %d apart", name,
                         gear_preset_name(p), kind ? "V" : "K", H, T, d, ld);
                uint8_t *a, *b;
                size_t la, lb, lc;
                TU_OK(compress_f16_view(ref, &cfg, x16, H, T, d, ld, &a, &la));
                TU_OK(compress_f16_view(be, &cfg, x16, H, T, d, ld, &b, &lb));
                uint8_t *c = tu_compress(be, &cfg, x, H, T, d, 0, &lc);
                TU_ASSERT(la == lb, "%s: stream sizes differ", what);
                if (cfg.bits) { /* compressed blocks do not depend on the input dtype */
                    gear_block_info info;
                    TU_OK(gear_block_info_get(&cfg, (unsigned)d, &info));
                    size_t blocks = (size_t)H * (size_t)(T / (int)cfg.block) * info.bytes;
                    TU_ASSERT(lc >= STREAM_HDR + blocks &&
                                  !memcmp(b + STREAM_HDR, c + STREAM_HDR, blocks),
                              "%s: blocks differ from those of the same values in fp32", what);
                }
                shape s = {H, T, d, cfg.block};
                if (same || !preset_has_lowrank(&cfg))
                    TU_ASSERT(!memcmp(a, b, la), "%s: streams are not byte-identical", what);
                else
                    compare_streams(a, b, la, &cfg, &s, what);
                free(a);
                free(b);
                free(c);
            }
            /* a NaN, then an Inf, inside the second block of head 1, for a
             * compressed and a raw fp16 preset (the core copies those) */
            static const uint16_t bad[] = {0x7e00u, 0xfc00u};
            for (int j = 0; j < 4; j++) {
                gear_config cfg = tu_preset(j < 2 ? "gear2" : "fp16", (gear_kind)kind);
                size_t at = ((size_t)1 * T + 70) * (size_t)ld + 5;
                uint16_t keep = x16[at];
                x16[at] = bad[j % 2];
                uint8_t *o;
                size_t lo = 0;
                gear_status st = compress_f16_view(be, &cfg, x16, H, T, d, ld, &o, &lo);
                TU_ASSERT(st == GEAR_ERR_NONFINITE, "%s: %s in fp16 input (%s) gives %s", name,
                          j % 2 ? "-Inf" : "NaN", j < 2 ? "gear2" : "fp16", gear_status_string(st));
                TU_ASSERT(strstr(gear_last_error_message(), "head 1 token 70 channel 5") != NULL,
                          "%s: message '%s' does not name the position", name, gear_last_error_message());
                TU_EQ(lo, (size_t)0);
                free(o);
                x16[at] = keep;
            }
            free(x16);
            free(x);
        }
    }
}

START_TEST(test_f16_input_matches_ref) { for_each_backend(f16_case); }
END_TEST

/* Cache appends of fp16 views in uneven pieces (whole blocks of a piece
 * may go to the backend as halves, the rest is staged): the same cache
 * as from the same values in fp32 on the same backend, byte for byte; a
 * NaN inside a whole block is reported and leaves the cache as it was. */
static void append_f16(gear_cache *c, uint16_t *x16, const float *x, int H, int T, int d, int t0,
                       int len, int half, gear_status want)
{
    gear_tensor k;
    if (half) {
        TU_OK(gear_tensor_init(&k, x16 + (size_t)t0 * d, GEAR_F16, 3, H, len, d, 0));
    } else {
        TU_OK(gear_tensor_init(&k, (void *)(x + (size_t)t0 * d), GEAR_F32, 3, H, len, d, 0));
    }
    k.strides[0] = (int64_t)T * d; /* a window of a longer [H, T, d] tensor */
    gear_status st = gear_cache_append(c, 0, &k, &k);
    TU_ASSERT(st == want, "append of %d tokens at %d -> %s (%s)", len, t0, gear_status_string(st),
              gear_last_error_message());
}

static void f16_cache_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)ref;
    (void)same;
    enum { H = 2, T = 325, D = 64 };
    static const int pieces[] = {10, 150, 1, 64, 100};
    float *x = tu_synth(901, GEAR_KEY, H, T, D);
    uint16_t *x16 = malloc(sizeof *x16 * H * T * D);
    TU_CHECK(x16 != NULL);
    for (size_t i = 0; i < (size_t)H * T * D; i++) {
        x16[i] = gear_float_to_half(x[i]);
        x[i] = tu_h(x[i]);
    }
    int np = gear_preset_count();
    for (int p = 0; p < np; p++) {
        gear_config ck = tu_preset(gear_preset_name(p), GEAR_KEY);
        gear_config cv = tu_preset(gear_preset_name(p), GEAR_VALUE);
        if (ck.cq_dim || cv.cq_dim) continue;
        uint8_t *saved[2];
        size_t len[2];
        for (int half = 0; half < 2; half++) {
            gear_cache *c = NULL;
            TU_OK(gear_cache_create(be, &ck, &cv, 1, H, D, T, &c));
            int t0 = 0;
            for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
                append_f16(c, x16, x, H, T, D, t0, pieces[i], half, GEAR_OK);
                t0 += pieces[i];
            }
            saved[half] = tu_cache_save(c, &len[half]);
            gear_cache_free(c);
        }
        TU_ASSERT(len[0] == len[1] && !memcmp(saved[0], saved[1], len[0]),
                  "%s: %s cache from fp16 input differs from the same values in fp32", name,
                  gear_preset_name(p));
        free(saved[0]);
        free(saved[1]);
    }
    /* a NaN at token 100 of a 150-token append after 10 buffered tokens:
     * inside the second whole block of the piece (gear2 through the
     * backend's fp16 slot, fp16 through the core's copy of the halves) */
    static const char *nan_presets[] = {"gear2", "fp16"};
    for (size_t p = 0; p < sizeof nan_presets / sizeof nan_presets[0]; p++) {
        gear_config ck = tu_preset(nan_presets[p], GEAR_KEY), cv = tu_preset(nan_presets[p], GEAR_VALUE);
        gear_cache *c = NULL;
        TU_OK(gear_cache_create(be, &ck, &cv, 1, H, D, T, &c));
        append_f16(c, x16, x, H, T, D, 0, 10, 1, GEAR_OK);
        size_t l0, l1;
        uint8_t *before = tu_cache_save(c, &l0);
        size_t at = ((size_t)1 * T + 10 + 100) * D + 7;
        uint16_t keep = x16[at];
        x16[at] = 0x7e00u;
        append_f16(c, x16, x, H, T, D, 10, 150, 1, GEAR_ERR_NONFINITE);
        x16[at] = keep;
        TU_ASSERT(strstr(gear_last_error_message(), "head 1 token 100 channel 7") != NULL,
                  "%s %s: message '%s' does not name the position", name, nan_presets[p], gear_last_error_message());
        uint8_t *after = tu_cache_save(c, &l1);
        TU_ASSERT(l0 == l1 && !memcmp(before, after, l0), "%s %s: a failed append changed the cache", name,
                  nan_presets[p]);
        free(before);
        free(after);
        gear_cache_free(c);
    }
    free(x16);
    free(x);
}

START_TEST(test_f16_cache_append) { for_each_backend(f16_cache_case); }
END_TEST

/* Cache appends of fp32 and bf16 rows in uneven pieces (one with two
 * whole blocks per head), in four layouts: fp32 [H, T, d] and [T, H, d]
 * and bf16 [H, T, d] (whole blocks read in place where the backend can)
 * and bf16 with its channels 2 apart (always staged by the core): the
 * same cache, byte for byte, on the same backend.  A NaN, an Inf or a
 * value beyond fp16's 65504 inside a whole block of the keys or of the
 * values is reported with its position and leaves the cache as it was. */
enum { RW_H = 2, RW_T = 325, RW_D = 64 };
typedef struct rw_src {
    float *x, *xt; /* fp32 [H, T, d] and [T, H, d] */
    uint16_t *xb;  /* bf16 [H, T, d] */
} rw_src;

static void rw_view(gear_tensor *k, const rw_src *s, const uint16_t *xs, int layout, int t0, int len)
{
    const size_t T = RW_T, D = RW_D;
    if (layout == 0) {
        TU_OK(gear_tensor_init(k, s->x + t0 * D, GEAR_F32, 3, RW_H, len, RW_D, 0));
        k->strides[0] = (int64_t)(T * D);
    } else if (layout == 1) {
        TU_OK(gear_tensor_init(k, s->xt + t0 * RW_H * D, GEAR_F32, 3, RW_H, len, RW_D, 0));
        k->strides[0] = (int64_t)D;
        k->strides[1] = (int64_t)(RW_H * D);
    } else {
        int w = layout == 3 ? 2 : 1; /* bf16 elements between channels */
        TU_OK(gear_tensor_init(k, (void *)((layout == 3 ? xs : s->xb) + t0 * D * w), GEAR_BF16, 3, RW_H, len, RW_D, 0));
        k->strides[0] = (int64_t)(T * D * w);
        k->strides[1] = (int64_t)(D * w);
        k->strides[2] = w;
    }
}

static void append_rows(gear_cache *c, const rw_src *ks, const rw_src *vs, const uint16_t *xs, int layout, int t0,
                        int len, gear_status want)
{
    gear_tensor k, v;
    rw_view(&k, ks, xs, layout, t0, len);
    rw_view(&v, vs, xs, layout, t0, len);
    gear_status st = gear_cache_append(c, 0, &k, &v);
    TU_ASSERT(st == want, "append of %d tokens at %d (layout %d) -> %s (%s)", len, t0, layout,
              gear_status_string(st), gear_last_error_message());
}

/* The same values in the three packed or token-major layouts; xs (if not
 * NULL) gets bf16 with channels 2 apart and NaN between them. */
static void rw_fill(rw_src *s, uint64_t seed, gear_kind kind, uint16_t *xs)
{
    const int H = RW_H, T = RW_T, D = RW_D;
    const size_t N = (size_t)H * T * D;
    s->x = tu_synth(seed, kind, H, T, D);
    s->xt = tu_alloc_f(N);
    s->xb = malloc(sizeof *s->xb * N);
    TU_CHECK(s->xb != NULL);
    for (size_t i = 0; i < N; i++) { /* values that bf16 holds exactly */
        s->xb[i] = gear_float_to_bf16(s->x[i]);
        s->x[i] = gear_bf16_to_float(s->xb[i]);
        if (xs) {
            xs[2 * i] = s->xb[i];
            xs[2 * i + 1] = 0x7fc0;
        }
    }
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            memcpy(s->xt + ((size_t)t * H + h) * D, s->x + ((size_t)h * T + t) * D, sizeof(float) * D);
}

static void rows_cache_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    (void)ref;
    (void)same;
    const int H = RW_H, T = RW_T, D = RW_D;
    static const int pieces[] = {10, 182, 1, 64, 68}; /* the second: blocks 1 and 2 whole */
    const size_t N = (size_t)H * T * D;
    uint16_t *xs = malloc(2 * sizeof *xs * N);
    TU_CHECK(xs != NULL);
    rw_src s, sv;
    rw_fill(&s, 907, GEAR_KEY, xs);
    rw_fill(&sv, 908, GEAR_VALUE, NULL);
    int np = gear_preset_count();
    for (int p = 0; p < np; p++) {
        gear_config ck = tu_preset(gear_preset_name(p), GEAR_KEY);
        gear_config cv = tu_preset(gear_preset_name(p), GEAR_VALUE);
        if (ck.cq_dim || cv.cq_dim) continue;
        uint8_t *saved[4];
        size_t len[4];
        for (int layout = 0; layout < 4; layout++) {
            gear_cache *c = NULL;
            TU_OK(gear_cache_create(be, &ck, &cv, 1, H, D, T, &c));
            int t0 = 0;
            for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
                append_rows(c, &s, &s, xs, layout, t0, pieces[i], GEAR_OK);
                t0 += pieces[i];
            }
            saved[layout] = tu_cache_save(c, &len[layout]);
            gear_cache_free(c);
        }
        for (int layout = 1; layout < 4; layout++)
            TU_ASSERT(len[0] == len[layout] && !memcmp(saved[0], saved[layout], len[0]),
                      "%s: %s cache from input layout %d differs from packed fp32", name, gear_preset_name(p), layout);
        for (int layout = 0; layout < 4; layout++) free(saved[layout]);
    }
    /* a bad value at token 100 of a 150-token append after 10 buffered
     * tokens: in the layer's block 1, the piece's one whole block, of the
     * keys or of the values (the keys' blocks then went through) */
    gear_config ck = tu_preset("gear2", GEAR_KEY), cv = tu_preset("gear2", GEAR_VALUE);
    static const struct { int layout, in_v; float val; gear_status want; } bad[] = {
        {0, 0, NAN, GEAR_ERR_NONFINITE},      {0, 1, 65505.0f, GEAR_ERR_RANGE},
        {1, 1, -INFINITY, GEAR_ERR_NONFINITE}, {1, 0, -65520.0f, GEAR_ERR_RANGE},
        {2, 1, NAN, GEAR_ERR_NONFINITE},      {2, 0, 65536.0f, GEAR_ERR_RANGE},
        {2, 1, -1e6f, GEAR_ERR_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rw_src *b = bad[i].in_v ? &sv : &s;
        gear_cache *c = NULL;
        TU_OK(gear_cache_create(be, &ck, &cv, 1, H, D, T, &c));
        append_rows(c, &s, &sv, xs, bad[i].layout, 0, 10, GEAR_OK);
        size_t l0, l1;
        uint8_t *before = tu_cache_save(c, &l0);
        size_t at = ((size_t)1 * T + 10 + 100) * D + 7, att = ((size_t)(10 + 100) * H + 1) * D + 7;
        float kx = b->x[at], kt = b->xt[att];
        uint16_t kb = b->xb[at];
        b->x[at] = b->xt[att] = bad[i].val;
        b->xb[at] = gear_float_to_bf16(bad[i].val);
        append_rows(c, &s, &sv, xs, bad[i].layout, 10, 150, bad[i].want);
        TU_ASSERT(strstr(gear_last_error_message(), "head 1 token 100 channel 7") != NULL,
                  "%s: message '%s' does not name the position", name, gear_last_error_message());
        b->x[at] = kx;
        b->xt[att] = kt;
        b->xb[at] = kb;
        uint8_t *after = tu_cache_save(c, &l1);
        TU_ASSERT(l0 == l1 && !memcmp(before, after, l0), "%s: a failed append changed the cache", name);
        free(before);
        free(after);
        gear_cache_free(c);
    }
    rw_src *all[] = {&s, &sv};
    for (int k = 0; k < 2; k++) {
        free(all[k]->x);
        free(all[k]->xt);
        free(all[k]->xb);
    }
    free(xs);
}

START_TEST(test_rows_cache_append) { for_each_backend(rows_cache_case); }
END_TEST

/* ------------------------------------------- edge inputs of fused paths */

/* One [H][T][d] input of a kind that stresses a fused compressor's
 * exactness (case): 0, 1: quotients (x - min)/step exactly on
 * half-integers, with steps for which x * (1/step) rounds the other way
 * (a reciprocal alone is not enough), with one +-large outlier per group
 * of 64 (0) or none (1); 2: few distinct values (ties between maxima,
 * minima, and constant groups); 3: tiny ranges on large offsets (codes
 * clamp after the fp16 rounding of min and step); 4: constant tokens and
 * channels in smooth data; 5: signed zeros as group extremes (groups of
 * one sign with +0 and -0 in any order, and all-zero groups), so that a
 * minimum, step or outlier is a zero of either sign. */
static float *edge_input(int c, gear_kind kind, int H, int T, int d)
{
    float *x = tu_alloc_f((size_t)H * T * d);
    const float step = c ? 0.010826110839844f : 0.0104522705078125f; /* fp16 0x218b, 0x215a */
    for (size_t i = 0; i < (size_t)H * T * d; i++) {
        unsigned t = (unsigned)(i / (size_t)d % (size_t)T), ch = (unsigned)(i % (size_t)d);
        unsigned h = (unsigned)(i * 2654435761u >> 7), pos = (kind == GEAR_KEY ? t : ch) % 64;
        switch (c) {
        case 0:
        case 1: /* 0 and 3 steps (the range), half steps between */
            x[i] = pos == 0 ? 0.0f : pos == 1 ? 3 * step : (float)(h % 3) * step + 0.5f * step;
            if (c == 0 && pos == 5) x[i] = 60000.0f;
            if (c == 0 && pos == 9) x[i] = -61000.0f;
            break;
        case 2: x[i] = (float)((h % 3) + (ch & 1)) - 1.0f; break;
        case 3: x[i] = 1000.0f + (float)(h % 5) * 0.125f * (ch % 2 ? 1.0f : -1.0f); break;
        case 5: {
            unsigned mode = (kind == GEAR_KEY ? ch : t) % 3; /* constant along a group */
            float v = (h >> 4) % 5 ? (float)(h % 7) * 0.25f : 0.0f;
            if (v == 0.0f && (h >> 9) % 2) v = -0.0f;
            x[i] = mode == 0 ? v : mode == 1 ? -v : ((h >> 11) % 2 ? -0.0f : 0.0f);
            break;
        }
        default:
            x[i] = t % 5 == 0 || ch % 7 == 0 ? 1.5f : sinf(0.1f * (float)(t + 3 * ch)) * 4.0f;
        }
    }
    return x;
}

/* Streams sa (ref) and sb (be) of one tensor of shape s: the same
 * length, byte-identical where no low-rank factor can differ (or `same`),
 * else equal codes, scales and outliers (compare_streams); and
 * reconstructions within NMSE_MAX.  Frees both streams. */
static void streams_agree(gear_context *be, gear_context *ref, int same, const gear_config *cfg, const shape *s,
                          const char *what, uint8_t *sa, size_t la, uint8_t *sb, size_t lb)
{
    size_t N = (size_t)s->H * s->T * s->d;
    TU_ASSERT(la == lb, "%s: %zu vs %zu bytes", what, lb, la);
    if (same || !preset_has_lowrank(cfg))
        TU_ASSERT(!memcmp(sa, sb, la), "%s: streams are not byte-identical", what);
    else
        compare_streams(sa, sb, la, cfg, s, what);
    float *ya = tu_decompress(ref, sa, la, s->H, s->T, s->d);
    float *yb = tu_decompress(be, sb, lb, s->H, s->T, s->d);
    TU_ASSERT(tu_nmse(yb, ya, N) < NMSE_MAX, "%s: reconstruction NMSE %g", what, tu_nmse(yb, ya, N));
    free(ya);
    free(yb);
    free(sa);
    free(sb);
}

/* Head dims 64, 96 and 128 at the default block, every uniform bit width,
 * with and without outliers and low rank, on edge_input: codes, scales
 * and outliers exact, reconstructions within NMSE_MAX. */
static void edge_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const char *names[] = {"gear2", "kivi2", "gear4", "kivi4", "kcvt4"};
    static const unsigned bits[] = {1, 2, 4, 8};
    for (int c = 0; c < 6; c++)
        for (int d = 64; d <= 128; d += 32) /* 96: values with a short last group */
            for (size_t p = 0; p < sizeof names / sizeof names[0] + 2; p++) /* + gear2, kivi2: 3 outliers a side */
                for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++)
                    for (int kind = 0; kind < 2; kind++) {
                        shape s = {2, 64 * 2, d, 64};
                        size_t np = sizeof names / sizeof names[0];
                        gear_config cfg = tu_preset(names[p % np], (gear_kind)kind);
                        cfg.bits = bits[b];
                        if (p >= np) cfg.outlier_ratio = 0.1f;
                        char what[160];
                        snprintf(what, sizeof what, "%s vs ref, edge input %d, %s outliers %g %u bits %s d %d", name,
                                 c, names[p % np], (double)cfg.outlier_ratio, bits[b], kind ? "V" : "K", d);
                        float *x = edge_input(c, (gear_kind)kind, s.H, s.T, d);
                        size_t la, lb;
                        uint8_t *sa = tu_compress(ref, &cfg, x, s.H, s.T, d, 2, &la);
                        uint8_t *sb = tu_compress(be, &cfg, x, s.H, s.T, d, 2, &lb);
                        streams_agree(be, ref, same, &cfg, &s, what, sa, la, sb, lb);
                        free(x);
                    }
}

START_TEST(test_edge_inputs_match_ref) { for_each_backend(edge_case); }
END_TEST

/* edge_input's cases, and two more, as fp16 input (the cpu module
 * quantizes contiguous fp16 keys straight from the halves): fp16
 * subnormals (6) and groups spanning fp16's whole range (7). */
static float *edge_input_f16(int c, gear_kind kind, int H, int T, int d)
{
    float *x = c < 6 ? edge_input(c, kind, H, T, d) : tu_alloc_f((size_t)H * T * d);
    for (size_t i = 0; i < (size_t)H * T * d; i++) {
        unsigned h = (unsigned)(i * 2654435761u >> 7), pos = (unsigned)(kind == GEAR_KEY ? i / (size_t)d % (size_t)T : i % (size_t)d) % 64;
        if (c == 6) x[i] = (float)((int)(h % 9) - 4) * 1.5e-6f; /* subnormal halves (below 6.1e-5) and 0 */
        if (c == 7) x[i] = pos == 0 ? 65504.0f : pos == 1 ? -65504.0f : (float)(h % 1001) * 130.0f - 65000.0f;
        x[i] = tu_h(x[i]);
    }
    return x;
}

static void f16_edge_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const char *names[] = {"gear2", "kivi2", "gear4", "kivi4", "kcvt4"};
    for (int c = 0; c < 8; c++)
        for (int d = 64; d <= 128; d += 32) /* 96: values with a short last group */
            for (size_t p = 0; p < sizeof names / sizeof names[0]; p++)
                for (int kind = 0; kind < 2; kind++) {
                    shape s = {2, 64 * 2, d, 64};
                    size_t N = (size_t)s.H * s.T * d;
                    gear_config cfg = tu_preset(names[p], (gear_kind)kind);
                    char what[128];
                    snprintf(what, sizeof what, "%s vs ref, fp16 edge input %d, %s %s d %d", name, c, names[p],
                             kind ? "V" : "K", d);
                    float *x = edge_input_f16(c, (gear_kind)kind, s.H, s.T, d);
                    uint16_t *x16 = malloc(N * sizeof *x16);
                    TU_CHECK(x16 != NULL);
                    for (size_t i = 0; i < N; i++) x16[i] = gear_float_to_half(x[i]);
                    uint8_t *sa, *sb;
                    size_t la, lb;
                    TU_OK(compress_f16_view(ref, &cfg, x16, s.H, s.T, d, d, &sa, &la));
                    TU_OK(compress_f16_view(be, &cfg, x16, s.H, s.T, d, d, &sb, &lb));
                    streams_agree(be, ref, same, &cfg, &s, what, sa, la, sb, lb);
                    free(x16);
                    free(x);
                }
}

START_TEST(test_f16_edge_inputs_match_ref) { for_each_backend(f16_edge_case); }
END_TEST

/* ------------------------------- several outliers a side, fused paths */

/* Ties among huge outliers (per 64 positions along a group: five equal
 * maxima 60000, two equal minima -60992, fp16's limits once each, and at
 * scattered rows more 60000s, so that the maxima tie across k = 2..8 and
 * beyond), a run of equal minima of the bulk, and +0 and -0 in it; every
 * value an fp16. */
static float *cluster_input(gear_kind kind, int H, int T, int d)
{
    float *x = tu_alloc_f((size_t)H * T * d);
    for (size_t i = 0; i < (size_t)H * T * d; i++) {
        unsigned t = (unsigned)(i / (size_t)d % (size_t)T), ch = (unsigned)(i % (size_t)d);
        unsigned h = (unsigned)(i * 2654435761u >> 7), pos = (kind == GEAR_KEY ? t : ch) % 64;
        float v = (float)((int)(h % 9) - 4) * 0.25f;
        switch (pos) {
        case 3: case 7: case 11: case 19: case 23: v = 60000.0f; break;
        case 5: case 13: v = -60992.0f; break;
        case 29: v = 65504.0f; break;
        case 31: v = -65504.0f; break;
        case 50: v = -0.0f; break;
        case 51: v = 0.0f; break;
        default:
            if (pos >= 40 && pos < 48) v = -1.0f;
            if (pos > 52 && (h >> 12) % 8 == 0) v = 60000.0f;
        }
        x[i] = v;
    }
    return x;
}

/* Data case c of the outlier tests: 0 tu_synth, 1..6 edge_input's cases
 * 0..5, 7 cluster_input. */
static float *outlier_input(int c, uint64_t seed, gear_kind kind, int H, int T, int d)
{
    if (c == 0) return tu_synth(seed, kind, H, T, d);
    if (c <= 6) return edge_input(c - 1, kind, H, T, d);
    return cluster_input(kind, H, T, d);
}

/* "<be> vs ref, <preset> K|V d .. block .. outliers s (groups of g: k =
 * .., last group of m: k = ..), input c": what a failure reproduces with. */
static void outlier_label(char *buf, size_t len, const char *name, const char *preset, const gear_config *cfg,
                          const shape *s, int c)
{
    gear_block_info info;
    TU_OK(gear_block_info_get(cfg, (unsigned)s->d, &info));
    unsigned row = cfg->kind == GEAR_KEY ? cfg->block : (unsigned)s->d;
    unsigned last = row - (info.groups_per_row - 1) * info.group;
    snprintf(buf, len, "%s vs ref, %s %s d %d block %u outliers %g (groups of %u: k = %u, last group of %u: k = %u), input %d",
             name, preset, cfg->kind ? "V" : "K", s->d, cfg->block, (double)cfg->outlier_ratio, info.group,
             tu_k(cfg->outlier_ratio, info.group), last, tu_k(cfg->outlier_ratio, last), c);
}

/* cfg on x ([s->H, s->T, s->d], fp32) on be and ref: fp32 input; then the
 * same values rounded to fp16 as an fp16 view (the cpu module quantizes
 * contiguous halves straight), whose blocks must also be those of the
 * same values in fp32 on be.  Streams compared by streams_agree. */
static void outlier_run(gear_context *be, gear_context *ref, int same, const gear_config *cfg, const shape *s,
                        const float *x, const char *what)
{
    size_t N = (size_t)s->H * s->T * s->d, la, lb, lc;
    char w[256];
    snprintf(w, sizeof w, "%s, fp32 input", what);
    uint8_t *sa = tu_compress(ref, cfg, x, s->H, s->T, s->d, 0, &la);
    uint8_t *sb = tu_compress(be, cfg, x, s->H, s->T, s->d, 0, &lb);
    streams_agree(be, ref, same, cfg, s, w, sa, la, sb, lb);
    snprintf(w, sizeof w, "%s, fp16 input", what);
    uint16_t *x16 = malloc(N * sizeof *x16);
    float *xh = tu_alloc_f(N);
    TU_CHECK(x16 != NULL);
    for (size_t i = 0; i < N; i++) {
        x16[i] = gear_float_to_half(x[i]);
        xh[i] = gear_half_to_float(x16[i]);
    }
    TU_OK(compress_f16_view(ref, cfg, x16, s->H, s->T, s->d, s->d, &sa, &la));
    TU_OK(compress_f16_view(be, cfg, x16, s->H, s->T, s->d, s->d, &sb, &lb));
    uint8_t *sc = tu_compress(be, cfg, xh, s->H, s->T, s->d, 0, &lc);
    gear_block_info info;
    TU_OK(gear_block_info_get(cfg, (unsigned)s->d, &info));
    size_t blocks = (size_t)s->H * (size_t)(s->T / (int)cfg->block) * info.bytes;
    TU_ASSERT(lb >= STREAM_HDR + blocks && lc >= STREAM_HDR + blocks && !memcmp(sb + STREAM_HDR, sc + STREAM_HDR, blocks),
              "%s: blocks differ from those of the same values in fp32", w);
    free(sc);
    streams_agree(be, ref, same, cfg, s, w, sa, la, sb, lb);
    free(x16);
    free(xh);
}

/* More than one outlier a side per group (k = round(s * g / 2)), which
 * the cpu module's fused compressor takes up to k = 8 (and 2k <= g) and
 * its masked selection beyond: gear2, gear4, kivi2 and kcvt4 at outlier
 * ratios 0.05, 0.1 and 0.25 (k = 2, 3 and 8 on groups of 64; 1, 2 and 4
 * on the last 32 of values at d = 96, 0, 1 and 2 on the last 16 at d =
 * 80; kcvt4/gear4 values group whole rows: 80 entries k = 2, 4, 10, 96
 * k = 2, 5, 12, 128 k = 3, 6, 16, 256 k = 6, 13, 32, and there, 4-bit
 * groups of 256, also k = 0, 1 and 3 at ratios 0, 0.008 and 0.02), head
 * dims 64, 96, 128, 256 and 80, keys and values, fp32 and fp16 input, on
 * tu_synth, edge_input's huge outliers (0), ties and constant groups (2),
 * constant tokens and channels (4) and signed zeros (5), and
 * cluster_input: codes, scales and outliers exact (byte-identical without
 * a low-rank part). */
static void multi_outlier_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const char *names[] = {"gear2", "gear4", "kivi2", "kcvt4"};
    /* the first three only on the value rows of 256 (k = 0, 1, 3 there;
     * on groups of 64 at most one a side, which edge_case covers) */
    static const float ratios[] = {0.0f, 0.008f, 0.02f, 0.05f, 0.1f, 0.25f};
    static const int dims[] = {64, 96, 128, 256, 80};
    static const int inputs[] = {0, 1, 3, 5, 6, 7}; /* edge_input 1 and 3 are edge_case's */
    if (same) return; /* ref against ref: test_ref_vs_ref_deterministic (this case is long) */
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (int kind = 0; kind < 2; kind++)
            for (size_t ii = 0; ii < sizeof inputs / sizeof inputs[0]; ii++) {
                shape s = {2, 64 + 5, dims[di], 64}; /* one block a head, and a tail */
                int c = inputs[ii];
                float *x = outlier_input(c, 400 + di * 2 + (size_t)kind, (gear_kind)kind, s.H, s.T, s.d);
                for (size_t p = 0; p < sizeof names / sizeof names[0]; p++)
                    for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++) {
                        gear_config cfg = tu_preset(names[p], (gear_kind)kind);
                        if (ri < 3 && !(kind == GEAR_VALUE && cfg.group == 0 && s.d == 256)) continue;
                        cfg.outlier_ratio = ratios[ri];
                        char what[192];
                        outlier_label(what, sizeof what, name, names[p], &cfg, &s, c);
                        outlier_run(be, ref, same, &cfg, &s, x, what);
                    }
                free(x);
            }
}

/* Groups of outliers only (2k = g: k = round(s * g / 2) is at most g / 2),
 * and groups of 15 with one entry left: keys and values, with and without
 * a low-rank part (whose residual is then 0), k = 8 on blocks of 16 tokens
 * and groups of 16 channels (shapes the cpu's fused compressor takes),
 * k = 32 on groups of 64, and k = 128 in whole value rows of 256 (beyond
 * the cpu's masked selection).  And outlier ratios outside [0, 1]:
 * GEAR_ERR_INVALID_ARG on every backend, nothing written. */
static void all_outlier_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const struct { const char *preset; int kind; unsigned block, group; float ratio; int d; } ao[] = {
        {"kivi2", GEAR_KEY, 16, 0, 1.0f, 64},      /* keys: groups of the 16 tokens, k = 8 */
        {"gear2", GEAR_KEY, 16, 16, 1.0f, 64},     /* the same with rank 2 */
        {"kivi2", GEAR_VALUE, 16, 16, 1.0f, 64},   /* values: 4 groups of 16 */
        {"gear4", GEAR_VALUE, 64, 16, 1.0f, 96},   /* 6 groups of 16, rank 2 */
        {"kivi4", GEAR_VALUE, 64, 15, 1.0f, 64},   /* groups of 15: k = 7 (one left), the last 4: k = 2 */
        {"kivi2", GEAR_KEY, 64, 64, 1.0f, 32},     /* k = 32 */
        {"gear2", GEAR_KEY, 64, 64, 1.0f, 128},    /* k = 32, rank 2 */
        {"kcvt4", GEAR_VALUE, 16, 0, 1.0f, 256},   /* whole rows of 256: k = 128 */
        {"kivi2", GEAR_VALUE, 32, 32, 0.97f, 64},  /* round(15.52) = 16 */
    };
    static const int inputs[] = {0, 1, 3, 6}; /* synth, huge outliers, ties, signed zeros */
    for (size_t ai = 0; ai < sizeof ao / sizeof ao[0]; ai++)
        for (size_t ii = 0; ii < sizeof inputs / sizeof inputs[0]; ii++) {
            gear_config cfg = tu_preset(ao[ai].preset, (gear_kind)ao[ai].kind);
            cfg.block = ao[ai].block;
            cfg.group = ao[ai].group;
            cfg.outlier_ratio = ao[ai].ratio;
            shape s = {2, (int)ao[ai].block * 3 + 1, ao[ai].d, ao[ai].block};
            gear_block_info info;
            TU_OK(gear_block_info_get(&cfg, (unsigned)s.d, &info));
            TU_ASSERT(info.outliers == s.block * (unsigned)s.d - (cfg.group == 15 ? s.block * 4 : 0),
                      "%s %s group %u outliers %g: %u outliers a block", name, ao[ai].preset, cfg.group,
                      (double)cfg.outlier_ratio, info.outliers); /* all, or all but one a group of 15 */
            char what[192];
            outlier_label(what, sizeof what, name, ao[ai].preset, &cfg, &s, inputs[ii]);
            float *x = outlier_input(inputs[ii], 450 + ai, (gear_kind)ao[ai].kind, s.H, s.T, s.d);
            outlier_run(be, ref, same, &cfg, &s, x, what);
            free(x);
        }
    static const float bad[] = {1.0001f, -0.25f, NAN, INFINITY};
    shape s = {1, 64, 64, 64};
    float *x = tu_synth(460, GEAR_KEY, s.H, s.T, s.d);
    gear_config good = tu_preset("kivi2", GEAR_KEY);
    gear_tensor t;
    size_t bound = 0, written = 1;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, s.H, s.T, s.d, 0));
    TU_OK(gear_compress_bound(&good, &t, &bound));
    uint8_t *dst = malloc(bound);
    TU_CHECK(dst != NULL);
    for (size_t bi = 0; bi < sizeof bad / sizeof bad[0]; bi++) {
        gear_config cfg = good;
        cfg.outlier_ratio = bad[bi];
        TU_STATUS(gear_config_validate(&cfg, (unsigned)s.d), GEAR_ERR_INVALID_ARG);
        gear_context *ctx[2] = {ref, be};
        for (int i = 0; i < 2; i++) {
            written = 1;
            gear_status st = gear_compress(ctx[i], &cfg, &t, 0, dst, bound, &written);
            TU_ASSERT(st == GEAR_ERR_INVALID_ARG && written == 0, "%s: outlier ratio %g on %s: %s, %zu bytes written",
                      name, (double)bad[bi], i ? name : "ref", gear_status_string(st), written);
        }
    }
    free(dst);
    free(x);
}

START_TEST(test_multi_outliers_match_ref)
{
    for_each_backend(multi_outlier_case);
    for_each_backend(all_outlier_case);
}
END_TEST

/* Value rows of three full groups and a short last one (a cold review):
 * groups of 32 at d = 112 (3 x 32 + 16) and of 64 at d = 208 (3 x 64 +
 * 16), outlier ratios giving k = 0..3 on the full groups and k = 0 or 1
 * on the last (0.02: 0/0 and 1/0; 0.04: 1/0; 0.07: 1/1 and 2/1; 0.1: 2/1
 * and 3/1; a last group of 16 takes one from 0.0625 on), kivi2, gear2 and
 * kivi4, fp32 and fp16 input, on tu_synth, edge_input's huge outliers,
 * ties and signed zeros, and cluster_input; keys (groups of 32 and 64
 * tokens) of the same head dims as well. */
static void value_tail_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const struct { int d; unsigned group; } vt[] = {{112, 32}, {208, 64}};
    static const char *names[] = {"kivi2", "gear2", "kivi4"};
    static const float ratios[] = {0.02f, 0.04f, 0.07f, 0.1f};
    static const int inputs[] = {0, 1, 3, 6, 7};
    if (same) return; /* ref against ref: test_ref_vs_ref_deterministic */
    for (size_t vi = 0; vi < sizeof vt / sizeof vt[0]; vi++)
        for (int kind = 0; kind < 2; kind++)
            for (size_t ii = 0; ii < sizeof inputs / sizeof inputs[0]; ii++) {
                shape s = {2, 64 + 5, vt[vi].d, 64};
                float *x = outlier_input(inputs[ii], 470 + vi * 2 + (size_t)kind, (gear_kind)kind, s.H, s.T, s.d);
                for (size_t p = 0; p < sizeof names / sizeof names[0]; p++)
                    for (size_t ri = 0; ri < sizeof ratios / sizeof ratios[0]; ri++) {
                        gear_config cfg = tu_preset(names[p], (gear_kind)kind);
                        cfg.group = vt[vi].group;
                        cfg.outlier_ratio = ratios[ri];
                        char what[192];
                        outlier_label(what, sizeof what, name, names[p], &cfg, &s, inputs[ii]);
                        outlier_run(be, ref, same, &cfg, &s, x, what);
                    }
                free(x);
            }
}

START_TEST(test_value_tail_groups_match_ref) { for_each_backend(value_tail_case); }
END_TEST

/* [H][T][d] input whose 2-bit quantization error is exactly
 * 0.45 (u v^T + beta w z^T) (u, v, w, z uniform in [-1, 1]): codes 1 or
 * 2 plus that error, every group's positions 0 and 1 the minimum 0 and
 * maximum 3 (step 1) with no error there (v, z or u, w zero).  The second
 * direction of E is beta times the first. */
static float *rank2_error_input(uint64_t seed, gear_kind kind, int H, int T, int d, double beta)
{
    size_t N = (size_t)H * T * d;
    float *x = tu_alloc_f(N), *u = tu_alloc_f((size_t)H * T * 2), *v = tu_alloc_f((size_t)d * 2);
    tu_fill_uniform(seed, u, (size_t)H * T * 2, -1.0f, 1.0f);
    tu_fill_uniform(seed + 1, v, (size_t)d * 2, -1.0f, 1.0f);
    uint64_t st = seed + 2;
    for (size_t i = 0; i < N; i++) {
        size_t row = i / (size_t)d;
        unsigned c = (unsigned)(i % (size_t)d), pos = (kind == GEAR_KEY ? (unsigned)(row % (size_t)T) : c) % 64;
        double e = 0.45 * ((double)u[2 * row] * v[2 * c] + beta * (double)u[2 * row + 1] * v[2 * c + 1]);
        x[i] = pos == 0 ? 0.0f : pos == 1 ? 3.0f : (float)(1 + (int)(tu_rand_u64(&st) % 2) + e);
    }
    free(u);
    free(v);
    return x;
}

/* Quantization errors of (nearly) rank one: a second direction from 1e-2
 * to 1e-8 of the first, ranks 2 and 4, keys and values, head dims 64, 80
 * and 128.  In fp32, Gram-Schmidt's second column then cancels to a
 * few ulps of the first: kept with one projection it leaned on the first
 * column by eps / (its relative norm), up to 6 % at the dead-column
 * threshold, and the stored factors reconstructed a tenth of the error
 * twice (cpu against ref NMSE 2e-4 on cluster_input at d 80 once its
 * products' sums were reordered).  Reconstructions within NMSE_MAX. */
static void near_rank1_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const int dims[] = {64, 80, 128};
    static const unsigned ranks[] = {2, 4};
    if (same) return;
    for (size_t di = 0; di < sizeof dims / sizeof dims[0]; di++)
        for (int kind = 0; kind < 2; kind++)
            for (int e = 4; e <= 16; e++) { /* beta = 10^(-e/2) */
                shape s = {2, 64, dims[di], 64};
                double beta = pow(10.0, -0.5 * e);
                float *x = rank2_error_input(900 + (uint64_t)e, (gear_kind)kind, s.H, s.T, s.d, beta);
                for (size_t ri = 0; ri < sizeof ranks / sizeof ranks[0]; ri++) {
                    gear_config cfg = tu_preset("gearl2", (gear_kind)kind);
                    cfg.rank = ranks[ri];
                    char what[160];
                    snprintf(what, sizeof what, "%s vs ref, gearl2 rank %u %s d %d, second direction %.0e of the first",
                             name, cfg.rank, kind ? "V" : "K", s.d, beta);
                    size_t la, lb;
                    uint8_t *sa = tu_compress(ref, &cfg, x, s.H, s.T, s.d, 0, &la);
                    uint8_t *sb = tu_compress(be, &cfg, x, s.H, s.T, s.d, 0, &lb);
                    streams_agree(be, ref, same, &cfg, &s, what, sa, la, sb, lb);
                }
                free(x);
            }
}

START_TEST(test_near_rank1_error_matches_ref) { for_each_backend(near_rank1_case); }
END_TEST

/* Compression and decompression under each other rounding mode of the
 * caller's thread give what ref gives to nearest: the same streams (codes,
 * scales and outliers; the factors by reconstruction) from fp32 and fp16
 * input, and bit-identical decodes.  The cpu module's threads rounded to
 * nearest while ref followed the caller (a helper's review: 366-3074
 * bytes of a kivi4 or gear2 stream differed under FE_DOWNWARD). */
static void rounding_codec_case(gear_context *be, gear_context *ref, const char *name, int same)
{
    static const char *names[] = {"kivi2", "kivi4", "gear2", "gear4"};
    static const int modes[] = {FE_UPWARD, FE_DOWNWARD, FE_TOWARDZERO};
    shape s = {2, 64 * 2, 128, 64};
    size_t N = (size_t)s.H * s.T * s.d;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(330 + (uint64_t)kind, (gear_kind)kind, s.H, s.T, s.d);
        for (size_t i = 0; i < N; i++) x[i] = x[i] * 0.37f + 0.011f; /* steps and minima that round */
        uint16_t *x16 = malloc(N * sizeof *x16);
        TU_CHECK(x16 != NULL);
        for (size_t i = 0; i < N; i++) x16[i] = gear_float_to_half(x[i]);
        for (size_t p = 0; p < sizeof names / sizeof names[0]; p++)
            for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++)
                for (int f16 = 0; f16 < 2; f16++) {
                    gear_config cfg = tu_preset(names[p], (gear_kind)kind);
                    char what[128];
                    snprintf(what, sizeof what, "%s vs ref, %s %s %s input, rounding mode %d", name, names[p],
                             kind ? "V" : "K", f16 ? "fp16" : "fp32", modes[m]);
                    uint8_t *sa, *sb;
                    size_t la, lb;
                    if (f16) TU_OK(compress_f16_view(ref, &cfg, x16, s.H, s.T, s.d, s.d, &sa, &la));
                    else sa = tu_compress(ref, &cfg, x, s.H, s.T, s.d, 2, &la);
                    int mode = fegetround();
                    TU_CHECK(fesetround(modes[m]) == 0);
                    gear_status st = GEAR_OK;
                    if (f16) st = compress_f16_view(be, &cfg, x16, s.H, s.T, s.d, s.d, &sb, &lb);
                    else sb = tu_compress(be, &cfg, x, s.H, s.T, s.d, 2, &lb);
                    float *db = tu_decompress(be, sb, lb, s.H, s.T, s.d);
                    fesetround(mode);
                    TU_OK(st);
                    float *da = tu_decompress(ref, sb, lb, s.H, s.T, s.d);
                    TU_ASSERT(tu_count_diff_bits(db, da, N) == 0, "%s: decode differs from ref's to nearest", what);
                    free(da);
                    free(db);
                    streams_agree(be, ref, same, &cfg, &s, what, sa, la, sb, lb);
                }
        free(x16);
        free(x);
    }
}

START_TEST(test_codec_rounding_mode) { for_each_backend(rounding_codec_case); }
END_TEST

START_TEST(test_ref_vs_ref_deterministic)
{
    /* two independent ref contexts: byte-identical streams, exact decode */
    gear_context *a = tu_ctx("ref"), *b = tu_ctx("ref");
    int np = gear_preset_count();
    for (int p = 0; p < np; p++)
        for (size_t si = 0; si < N_SHAPES; si++) {
            const shape *s = &shapes[si];
            gear_config cfg = tu_preset(gear_preset_name(p), GEAR_VALUE);
            if (cfg.cq_dim) continue; /* needs a calibration: check_cq */
            cfg.block = s->block;
            float *x = tu_synth(120 + si, GEAR_VALUE, s->H, s->T, s->d);
            size_t la, lb;
            uint8_t *sa = tu_compress(a, &cfg, x, s->H, s->T, s->d, 9, &la);
            uint8_t *sb = tu_compress(b, &cfg, x, s->H, s->T, s->d, 9, &lb);
            TU_EQ(la, lb);
            TU_ASSERT(!memcmp(sa, sb, la), "%s shape %zu: ref streams differ", gear_preset_name(p), si);
            float *ya = tu_decompress(a, sb, lb, s->H, s->T, s->d), *yb = tu_decompress(b, sa, la, s->H, s->T, s->d);
            TU_EQ(tu_count_diff_bits(ya, yb, (size_t)s->H * s->T * s->d), 0);
            free(ya);
            free(yb);
            free(sa);
            free(sb);
            free(x);
        }
    gear_context_free(a);
    gear_context_free(b);
}
END_TEST

static Suite *xbackend_suite(void)
{
    Suite *s = suite_create("xbackend");
    TCase *tc = tu_tcase("backends");
    tcase_set_timeout(tc, 600.0);
    tcase_add_test(tc, test_backend_listing);
    tcase_add_test(tc, test_ref_vs_ref_deterministic);
    tcase_add_test(tc, test_compress_matches_ref);
    tcase_add_test(tc, test_bits_outliers_match_ref);
    tcase_add_test(tc, test_edge_inputs_match_ref);
    tcase_add_test(tc, test_cross_decompress);
    tcase_add_test(tc, test_decompress_f16_matches_ref);
    tcase_add_test(tc, test_f16_input_matches_ref);
    tcase_add_test(tc, test_f16_edge_inputs_match_ref);
    tcase_add_test(tc, test_multi_outliers_match_ref);
    tcase_add_test(tc, test_value_tail_groups_match_ref);
    tcase_add_test(tc, test_near_rank1_error_matches_ref);
    tcase_add_test(tc, test_codec_rounding_mode);
    tcase_add_test(tc, test_f16_cache_append);
    tcase_add_test(tc, test_rows_cache_append);
    tcase_add_test(tc, test_cache_matches_ref);
    tcase_add_test(tc, test_cq_cache_matches_ref);
    tcase_add_test(tc, test_attention_model_shapes);
    tcase_add_test(tc, test_attention_buffer_tails);
    tcase_add_test(tc, test_attention_other_layouts);
    tcase_add_test(tc, test_attention_extreme_scale);
    tcase_add_test(tc, test_attention_huge_queries);
    tcase_add_test(tc, test_attention_dominant_keys);
    tcase_add_test(tc, test_attention_coherent_rounding);
    tcase_add_test(tc, test_attention_rounding_mode);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(xbackend_suite(), 1); }
