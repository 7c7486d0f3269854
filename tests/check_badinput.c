/*
 * check_badinput.c - the bad-input matrix (README "Bad input and threads",
 * docs/RELIABILITY.md): every row is a kind of bad input given to the
 * public API, and the status it must return.  Every failing call must
 * also leave the cache exactly as it was (same gear_cache_save_mem bytes)
 * and its output untouched.  Runs on every available host backend.
 *
 * Also here: durable saves (a write failure injected with RLIMIT_FSIZE in
 * a child process leaves the old file intact and no temporary behind).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "testutil.h"

/* from lib/internal.h (this suite links the core): to forge valid CRCs */
uint32_t gear_crc32c(uint32_t crc, const void *data, size_t len);

enum { H = 2, D = 16, BLK = 16, MAXT = 64 };

/* the backends of this run: ref, and every other available host backend */
static gear_context *ctxs[8];
static int n_ctx;

static void setup(void)
{
    n_ctx = 0;
    ctxs[n_ctx++] = tu_ctx("ref");
    for (int i = 0; i < gear_backend_count() && n_ctx < 8; i++) {
        const char *name = gear_backend_name(i);
        if (!strcmp(name, "ref") || !gear_backend_available(i, NULL)) continue;
        gear_context *c = tu_ctx(name);
        if (!strcmp(name, "cuda") || !strcmp(name, "hip")) { /* device backends: not here */
            gear_context_free(c);
            continue;
        }
        ctxs[n_ctx++] = c;
    }
}

static void teardown(void)
{
    for (int i = 0; i < n_ctx; i++) gear_context_free(ctxs[i]);
    n_ctx = 0;
}

static gear_cache *new_cache(gear_context *ctx, const char *preset, unsigned max_tokens)
{
    gear_config ck = tu_preset(preset, GEAR_KEY), cv = tu_preset(preset, GEAR_VALUE);
    ck.block = cv.block = BLK;
    if (ck.group > BLK) ck.group = BLK;
    if (cv.group > D) cv.group = D;
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(ctx, &ck, &cv, 2, H, D, max_tokens, &c));
    return c;
}

/* 1 when the two caches save to the same bytes */
static int same_cache(const gear_cache *a, const uint8_t *bytes, size_t len)
{
    size_t l;
    uint8_t *now = tu_cache_save(a, &l);
    int same = l == len && !memcmp(now, bytes, len);
    free(now);
    return same;
}

/* fp32 data converted to a dtype, in a buffer of 4 bytes per entry */
static void *convert(const float *x, size_t n, gear_dtype dt)
{
    void *out = malloc(4 * n + 8);
    TU_CHECK(out != NULL);
    for (size_t i = 0; i < n; i++) {
        if (dt == GEAR_F32) ((float *)out)[i] = x[i];
        else if (dt == GEAR_F16) ((uint16_t *)out)[i] = gear_float_to_half(x[i]);
        else ((uint16_t *)out)[i] = gear_float_to_bf16(x[i]);
    }
    return out;
}

static const gear_dtype dtypes[3] = {GEAR_F32, GEAR_F16, GEAR_BF16};

/* Attention of layer 0 for q ([hq, nq, d] floats, handed over as dt):
 * must fail with `want` and leave out untouched. */
static void expect_refused(gear_cache *c, const float *q, int hq, int nq, int d, gear_dtype dt, float scale,
                           gear_status want)
{
    size_t qn = (size_t)hq * nq * d;
    void *qb = convert(q, qn, dt);
    float *out = tu_alloc_f(qn);
    for (size_t i = 0; i < qn; i++) out[i] = 12345.0f;
    gear_tensor tq, to;
    TU_OK(gear_tensor_init(&tq, qb, dt, 3, hq, nq, d, 0));
    TU_OK(gear_tensor_init(&to, out, GEAR_F32, 3, hq, nq, d, 0));
    TU_STATUS(gear_cache_attention(c, 0, &tq, scale, &to), want);
    for (size_t i = 0; i < qn; i++) TU_CHECK(out[i] == 12345.0f);
    free(qb);
    free(out);
}

/* ------------------------------------------------ non-finite values */

/* Row: NaN, +Inf or -Inf in k or v, in every dtype, at a buffered token,
 * in a token that completes a block, and in the last head's last token:
 * GEAR_ERR_NONFINITE, the cache unchanged.  A finite value outside the
 * fp16 range: GEAR_ERR_RANGE, unchanged. */
START_TEST(test_nonfinite_kv)
{
    const int T = 20; /* 5 buffered + 20: block 1 completes inside */
    float *k = tu_synth(11, GEAR_KEY, H, T, D), *v = tu_synth(12, GEAR_VALUE, H, T, D);
    const float bads[4] = {NAN, INFINITY, -INFINITY, 1e6f};
    const int where[3] = {0, 13, T - 1};
    /* a compressed preset, and raw fp16 blocks (copied by the core) */
    for (int ci = 0; ci < 2 * n_ctx; ci++) {
        gear_cache *c = new_cache(ctxs[ci / 2], ci % 2 ? "fp16" : "gear2", MAXT);
        TU_OK(tu_cache_append(c, 0, k, v, H, 5, D));
        TU_OK(tu_cache_append(c, 1, k, v, H, 3, D));
        size_t len;
        uint8_t *before = tu_cache_save(c, &len);
        for (int kv = 0; kv < 2; kv++)
            for (int bi = 0; bi < 4; bi++)
                for (int di = 0; di < 3; di++)
                    for (int wi = 0; wi < 3; wi++) {
                        gear_dtype dt = dtypes[di];
                        if (bi == 3 && dt != GEAR_F32) continue; /* 1e6 is Inf in fp16 */
                        size_t n = (size_t)H * T * D;
                        float *x = tu_alloc_f(n);
                        memcpy(x, kv ? v : k, sizeof(float) * n);
                        int h = wi == 2 ? H - 1 : 0;
                        x[((size_t)h * T + where[wi]) * D + (wi ? D - 1 : 0)] = bads[bi];
                        void *bad = convert(x, n, dt), *good = convert(kv ? k : v, n, dt);
                        gear_tensor tb, tg;
                        TU_OK(gear_tensor_init(&tb, bad, dt, 3, H, T, D, 0));
                        TU_OK(gear_tensor_init(&tg, good, dt, 3, H, T, D, 0));
                        gear_status want = bi == 3 ? GEAR_ERR_RANGE : GEAR_ERR_NONFINITE;
                        if (kv) TU_STATUS(gear_cache_append(c, 0, &tg, &tb), want);
                        else TU_STATUS(gear_cache_append(c, 0, &tb, &tg), want);
                        TU_ASSERT(same_cache(c, before, len),
                                  "%s: failed append changed the cache (kv %d bad %d dtype %d at %d)",
                                  gear_context_backend_name(ctxs[ci / 2]), kv, bi, (int)dt, wi);
                        free(x);
                        free(bad);
                        free(good);
                    }
        /* after all that, an append works and gives what a fresh cache gives */
        gear_cache *twin = new_cache(ctxs[ci / 2], ci % 2 ? "fp16" : "gear2", MAXT);
        TU_OK(tu_cache_append(twin, 0, k, v, H, 5, D));
        TU_OK(tu_cache_append(twin, 1, k, v, H, 3, D));
        TU_OK(tu_cache_append(c, 0, k, v, H, T, D));
        TU_OK(tu_cache_append(twin, 0, k, v, H, T, D));
        size_t lt;
        uint8_t *tb = tu_cache_save(twin, &lt);
        TU_ASSERT(same_cache(c, tb, lt), "cache differs from its twin after failed appends");
        free(tb);
        free(before);
        gear_cache_free(twin);
        gear_cache_free(c);
    }
    free(k);
    free(v);
}
END_TEST

/* Row: NaN/Inf in queries (every dtype, any head/token) or a non-finite
 * scale: GEAR_ERR_NONFINITE; out untouched; the cache unchanged. */
START_TEST(test_nonfinite_query)
{
    const int T = 21, hq = 2 * H, nq = 2;
    float *k = tu_synth(21, GEAR_KEY, H, T, D), *v = tu_synth(22, GEAR_VALUE, H, T, D);
    size_t qn = (size_t)hq * nq * D;
    float *q = tu_alloc_f(qn);
    tu_fill_normal(23, q, qn, 1.0f);
    for (int ci = 0; ci < n_ctx; ci++) {
        gear_cache *c = new_cache(ctxs[ci], "kivi2", MAXT);
        TU_OK(tu_cache_append(c, 0, k, v, H, T, D));
        size_t len;
        uint8_t *before = tu_cache_save(c, &len);
        const float bads[3] = {NAN, INFINITY, -INFINITY};
        for (int di = 0; di < 3; di++)
            for (int bi = 0; bi < 3; bi++)
                for (size_t at = 0; at < qn; at += qn / 3) {
                    float *qq = tu_alloc_f(qn);
                    memcpy(qq, q, sizeof(float) * qn);
                    qq[at] = bads[bi];
                    expect_refused(c, qq, hq, nq, D, dtypes[di], 0.25f, GEAR_ERR_NONFINITE);
                    free(qq);
                }
        float *out = tu_alloc_f(qn);
        TU_STATUS(tu_cache_attention(c, 0, q, hq, nq, D, NAN, out), GEAR_ERR_NONFINITE);
        TU_STATUS(tu_cache_attention(c, 0, q, hq, nq, D, INFINITY, out), GEAR_ERR_NONFINITE);
        /* finite queries: a finite output, or GEAR_ERR_RANGE when the scores
         * overflow fp32 (never NaN/Inf with GEAR_OK); out untouched then */
        TU_OK(tu_cache_attention(c, 0, q, hq, nq, D, 0.25f, out));
        for (size_t i = 0; i < qn; i++) TU_CHECK(isfinite(out[i]));
        for (int di = 0; di < 3; di += 2) { /* f32 and bf16 hold 3e38 */
            float *qq = tu_alloc_f(qn);
            for (size_t i = 0; i < qn; i++) qq[i] = (i % 2 ? 3e38f : -3e38f) * (i % 3 ? 1.0f : 0.5f);
            expect_refused(c, qq, hq, nq, D, dtypes[di], 1.0f, GEAR_ERR_RANGE);
            free(qq);
        }
        TU_ASSERT(same_cache(c, before, len), "attention changed the cache");
        free(out);
        free(before);
        gear_cache_free(c);
    }
    free(q);
    free(k);
    free(v);
}
END_TEST

/* The same rows at the shapes where the backends take their fast kernels
 * (64-token blocks, head dim 64 and 128, 4 query heads per KV head, 2-
 * and 4-bit presets with outliers and low rank): the core checks the
 * queries before any backend runs, and huge finite queries either
 * overflow (GEAR_ERR_RANGE, out untouched) or give a finite output. */
START_TEST(test_nonfinite_query_wide)
{
    static const char *const presets[] = {"kivi2", "gear2", "kivi4", "gear4"};
    const int hkv = 2, G = 4, hq = hkv * G, T = 64 * 3 + 5;
    for (int d = 64; d <= 128; d *= 2) {
        float *k = tu_synth(31, GEAR_KEY, hkv, T, d), *v = tu_synth(32, GEAR_VALUE, hkv, T, d);
        for (int nq = 1; nq <= 2; nq++) {
            size_t qn = (size_t)hq * nq * d;
            float *q = tu_alloc_f(qn), *qq = tu_alloc_f(qn), *out = tu_alloc_f(qn);
            tu_fill_normal(33, q, qn, 1.0f);
            for (int ci = 0; ci < n_ctx; ci++)
                for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
                    gear_config ck = tu_preset(presets[p], GEAR_KEY), cv = tu_preset(presets[p], GEAR_VALUE);
                    gear_cache *c = NULL;
                    TU_OK(gear_cache_create(ctxs[ci], &ck, &cv, 1, hkv, d, T, &c));
                    TU_OK(tu_cache_append(c, 0, k, v, hkv, T, d));
                    const float bads[3] = {NAN, INFINITY, -INFINITY};
                    for (int di = 0; di < 3; di++)
                        for (size_t at = 7; at < qn; at += qn / 3) {
                            memcpy(qq, q, sizeof(float) * qn);
                            qq[at] = bads[(at / 7) % 3];
                            expect_refused(c, qq, hq, nq, d, dtypes[di], 0.125f, GEAR_ERR_NONFINITE);
                        }
                    /* 3e38: the scores overflow fp32; 1e30: they do not,
                     * and the softmax is one-hot */
                    for (size_t i = 0; i < qn; i++) qq[i] = (i % 2 ? 3e38f : -3e38f) * (i % 3 ? 1.0f : 0.5f);
                    expect_refused(c, qq, hq, nq, d, GEAR_F32, 1.0f, GEAR_ERR_RANGE);
                    for (size_t i = 0; i < qn; i++) qq[i] = q[i] * 1e30f;
                    TU_OK(tu_cache_attention(c, 0, qq, hq, nq, d, 0.125f, out));
                    for (size_t i = 0; i < qn; i++)
                        TU_ASSERT(isfinite(out[i]), "%s %s d %d nq %d, q x 1e30: out[%zu] = %g",
                                  gear_context_backend_name(ctxs[ci]), presets[p], d, nq, i, (double)out[i]);
                    gear_cache_free(c);
                }
            free(q);
            free(qq);
            free(out);
        }
        free(k);
        free(v);
    }
}
END_TEST

/* Rows: gear_compress with NaN/Inf anywhere: GEAR_ERR_NONFINITE; a finite
 * value beyond +-65504 in a compressed block: GEAR_ERR_RANGE; in the
 * uncompressed tail (kept in the input dtype): accepted and kept exactly. */
START_TEST(test_nonfinite_compress)
{
    const int T = BLK + 5;
    float *x = tu_synth(31, GEAR_KEY, H, T, D);
    gear_config cfg = tu_preset("kivi2", GEAR_KEY);
    cfg.block = BLK;
    size_t n = (size_t)H * T * D;
    for (int ci = 0; ci < n_ctx; ci++) {
        struct { size_t at; float val; gear_status want; } rows[] = {
            {3, NAN, GEAR_ERR_NONFINITE},
            {(size_t)(T - 1) * D, INFINITY, GEAR_ERR_NONFINITE}, /* in the tail */
            {n - 1, -INFINITY, GEAR_ERR_NONFINITE},
            {5, 1e6f, GEAR_ERR_RANGE},
            {(size_t)(T - 1) * D + 2, 1e30f, GEAR_OK}, /* tail: any finite value */
        };
        for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
            float *y = tu_alloc_f(n);
            memcpy(y, x, sizeof(float) * n);
            y[rows[r].at] = rows[r].val;
            gear_tensor t;
            TU_OK(gear_tensor_init(&t, y, GEAR_F32, 3, H, T, D, 0));
            size_t bound, written = 777;
            TU_OK(gear_compress_bound(&cfg, &t, &bound));
            uint8_t *dst = malloc(bound);
            TU_STATUS(gear_compress(ctxs[ci], &cfg, &t, 0, dst, bound, &written), rows[r].want);
            if (rows[r].want == GEAR_OK) {
                float *back = tu_decompress(ctxs[ci], dst, written, H, T, D);
                TU_CHECK(back[rows[r].at] == rows[r].val);
                free(back);
            }
            free(dst);
            free(y);
        }
    }
    free(x);
}
END_TEST

/* Rows: fp16 and fp32 input of a full-size block (64 tokens, head dim
 * 128: the shapes of the cpu module's fused compressor, which reads fp16
 * keys and values directly and must find a NaN or an Inf in any channel
 * itself): NaN, +Inf, -Inf, -NaN in each channel of a token in turn, for keys
 * and values of a compressed preset with and without outliers and rank:
 * GEAR_ERR_NONFINITE every time, never a stream; and in fp32, a finite
 * value beyond the fp16 range in each channel: GEAR_ERR_RANGE. */
START_TEST(test_nonfinite_compress_wide)
{
    enum { WH = 2, WT = 64, WD = 128 };
    const char *presets[2] = {"kivi2", "gear2"};
    const float bads[4] = {NAN, INFINITY, -INFINITY, -NAN}; /* -NAN: fp16 0xfe00 */
    const gear_dtype dts[2] = {GEAR_F16, GEAR_F32};
    size_t n = (size_t)WH * WT * WD;
    for (int kind = 0; kind < 2; kind++) {
        float *x = tu_synth(41 + (uint64_t)kind, (gear_kind)kind, WH, WT, WD);
        for (int ci = 0; ci < n_ctx; ci++)
            for (int pi = 0; pi < 2; pi++)
                for (int di = 0; di < 2; di++) {
                    gear_config cfg = tu_preset(presets[pi], (gear_kind)kind);
                    float *y = tu_alloc_f(n);
                    for (int c = 0; c < (dts[di] == GEAR_F32 ? 2 : 1) * WD; c++) {
                        /* token 37 of head 1, a different kind of bad value per channel;
                         * fp32: a second round with 1e6 */
                        size_t at = ((size_t)1 * WT + 37) * WD + (size_t)(c % WD);
                        gear_status want = c < WD ? GEAR_ERR_NONFINITE : GEAR_ERR_RANGE;
                        memcpy(y, x, sizeof(float) * n);
                        y[at] = c < WD ? bads[c % 4] : (c % 2 ? 1e6f : -1e6f);
                        void *in = convert(y, n, dts[di]);
                        gear_tensor t;
                        TU_OK(gear_tensor_init(&t, in, dts[di], 3, WH, WT, WD, 0));
                        size_t bound, written = 777;
                        TU_OK(gear_compress_bound(&cfg, &t, &bound));
                        uint8_t *dst = malloc(bound);
                        TU_CHECK(dst != NULL);
                        gear_status st = gear_compress(ctxs[ci], &cfg, &t, 0, dst, bound, &written);
                        TU_ASSERT(st == want,
                                  "%s %s %s dtype %d: a bad value in channel %d gave %s",
                                  gear_context_backend_name(ctxs[ci]), presets[pi], kind ? "V" : "K",
                                  (int)dts[di], c % WD, gear_status_string(st));
                        free(dst);
                        free(in);
                    }
                    free(y);
                }
        free(x);
    }
}
END_TEST

/* Whether n halves (fp16 bits) are all finite and within +-65504. */
static int halves_all_finite(const uint16_t *h, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((h[i] & 0x7c00u) == 0x7c00u) return 0;
    return 1;
}

/* Rows: K and V that reach the fp16 limit (0 and 65504 alternating, so
 * that a 2-bit group's step rounds up in fp16 and its top code decodes to
 * 65520): the cache's and the stream's decompression and the attention
 * into fp16 outputs give finite values, saturated at 65504, never Inf. */
START_TEST(test_fp16_out_saturates)
{
    enum { SH = 2, ST = 128, SD = 64 };
    const char *presets[2] = {"kivi2", "gear2"};
    size_t n = (size_t)SH * ST * SD;
    float *x = tu_alloc_f(n), *q = tu_alloc_f((size_t)SH * 4 * SD);
    for (size_t i = 0; i < n; i++) x[i] = ((i / SD + i % SD) % 2) ? 65504.0f : 0.0f;
    for (size_t i = 0; i < (size_t)SH * 4 * SD; i++) q[i] = (float)((i * 7) % 5) * 1e-3f;
    uint16_t *h = malloc(sizeof(uint16_t) * n);
    TU_CHECK(h != NULL);
    for (int ci = 0; ci < n_ctx; ci++)
        for (int pi = 0; pi < 2; pi++) {
            gear_config ck = tu_preset(presets[pi], GEAR_KEY), cv = tu_preset(presets[pi], GEAR_VALUE);
            gear_cache *c = NULL;
            TU_OK(gear_cache_create(ctxs[ci], &ck, &cv, 1, SH, SD, ST, &c));
            TU_OK(tu_cache_append(c, 0, x, x, SH, ST, SD));
            gear_tensor tk;
            TU_OK(gear_tensor_init(&tk, h, GEAR_F16, 3, SH, ST, SD, 0));
            TU_OK(gear_cache_decompress(c, 0, &tk, NULL));
            TU_ASSERT(halves_all_finite(h, n), "%s %s: cache decompression into fp16 made Inf",
                      gear_context_backend_name(ctxs[ci]), presets[pi]);
            gear_tensor tq, to;
            TU_OK(gear_tensor_init(&tq, q, GEAR_F32, 3, SH * 4, 1, SD, 0));
            TU_OK(gear_tensor_init(&to, h, GEAR_F16, 3, SH * 4, 1, SD, 0));
            TU_OK(gear_cache_attention(c, 0, &tq, 0.125f, &to));
            TU_ASSERT(halves_all_finite(h, (size_t)SH * 4 * SD), "%s %s: attention into fp16 made Inf",
                      gear_context_backend_name(ctxs[ci]), presets[pi]);
            gear_cache_free(c);
            /* the stream: gear_compress, gear_decompress into fp16 */
            gear_tensor tx;
            TU_OK(gear_tensor_init(&tx, x, GEAR_F32, 3, SH, ST, SD, 0));
            size_t bound, written;
            TU_OK(gear_compress_bound(&ck, &tx, &bound));
            uint8_t *dst = malloc(bound);
            TU_CHECK(dst != NULL);
            TU_OK(gear_compress(ctxs[ci], &ck, &tx, 0, dst, bound, &written));
            TU_OK(gear_decompress(ctxs[ci], dst, written, &tk));
            TU_ASSERT(halves_all_finite(h, n), "%s %s: stream decompression into fp16 made Inf",
                      gear_context_backend_name(ctxs[ci]), presets[pi]);
            free(dst);
        }
    free(h);
    free(q);
    free(x);
}
END_TEST

/* ----------------------------------------------------- dimensions */

/* Rows: zero, negative and huge dimensions, wrong ndim, mismatched
 * shapes, overflowing extents. */
START_TEST(test_dimensions)
{
    gear_context *ctx = ctxs[0];
    gear_cache *c = new_cache(ctx, "kivi2", MAXT);
    float *buf = tu_alloc_f((size_t)H * 8 * D);
    gear_tensor good, t;
    TU_OK(gear_tensor_init(&good, buf, GEAR_F32, 3, H, 8, D, 0));
    size_t len;
    uint8_t *before = tu_cache_save(c, &len);

    /* gear_tensor_init */
    TU_STATUS(gear_tensor_init(&t, buf, GEAR_F32, 0, 1, 1, 1, 1), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, buf, GEAR_F32, 5, 1, 1, 1, 1), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_tensor_init(&t, buf, GEAR_F32, 3, H, -1, D, 0), GEAR_ERR_SHAPE);
    TU_STATUS(gear_tensor_init(&t, buf, GEAR_F32, 3, INT64_MAX, INT64_MAX, D, 0),
              GEAR_ERR_OVERFLOW);

    struct { int dim; int64_t val; gear_status want; } rows[] = {
        {0, 0, GEAR_ERR_SHAPE},                    /* zero heads */
        {1, 0, GEAR_ERR_SHAPE},                    /* zero tokens */
        {2, 0, GEAR_ERR_SHAPE},                    /* zero head_dim */
        {1, -3, GEAR_ERR_SHAPE},                   /* negative tokens */
        {2, -D, GEAR_ERR_SHAPE},                   /* negative head_dim */
        {0, H + 1, GEAR_ERR_SHAPE},                /* wrong head count */
        {2, D + 1, GEAR_ERR_SHAPE},                /* wrong head_dim */
        {1, (int64_t)1 << 40, GEAR_ERR_OVERFLOW},  /* 2^40 tokens: extent */
        {1, INT64_MAX, GEAR_ERR_OVERFLOW},
    };
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++) {
        t = good;
        t.shape[rows[r].dim] = rows[r].val;
        TU_ASSERT(gear_cache_append(c, 0, &t, &good) == rows[r].want &&
                  gear_cache_append(c, 0, &good, &t) == rows[r].want,
                  "row %zu: append -> %s (%s), want %s", r,
                  gear_status_string(gear_cache_append(c, 0, &t, &good)),
                  gear_last_error_message(), gear_status_string(rows[r].want));
        TU_ASSERT(same_cache(c, before, len), "row %zu changed the cache", r);
        /* the same view given to the stateless calls */
        if (rows[r].dim != 0 &&
            !(rows[r].dim == 2 && rows[r].val == D + 1)) {
            gear_config cfg = tu_preset("kivi2", GEAR_KEY);
            size_t bound;
            gear_status st = gear_compress_bound(&cfg, &t, &bound);
            TU_ASSERT(st == rows[r].want, "row %zu: compress_bound -> %s", r,
                      gear_status_string(st));
        }
    }
    /* ndim 1 and 4 */
    t = good;
    t.ndim = 1;
    TU_STATUS(gear_cache_append(c, 0, &t, &good), GEAR_ERR_SHAPE);
    t.ndim = 4;
    TU_STATUS(gear_cache_append(c, 0, &t, &good), GEAR_ERR_SHAPE);
    /* k and v with different token counts */
    t = good;
    t.shape[1] = 7;
    TU_STATUS(gear_cache_append(c, 0, &good, &t), GEAR_ERR_SHAPE);
    /* a 2-D view for a cache of 2 heads */
    TU_OK(gear_tensor_init(&t, buf, GEAR_F32, 2, 8, D, 0, 0));
    TU_STATUS(gear_cache_append(c, 0, &t, &t), GEAR_ERR_SHAPE);
    TU_ASSERT(same_cache(c, before, len), "a failed append changed the cache");

    /* gear_cache_create */
    gear_config ck = tu_preset("kivi2", GEAR_KEY), cv = tu_preset("kivi2", GEAR_VALUE);
    gear_cache *x = NULL;
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 0, H, D, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, 0, D, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, H, 0, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, H, D, 0, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 65537, H, D, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, 65537, D, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, H, 1u << 20, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 1, H, (unsigned)-1, 64, &x), GEAR_ERR_INVALID_ARG);
    TU_CHECK(x == NULL);
    /* huge but legal: memory is taken only as tokens arrive */
    TU_OK(gear_cache_create(ctx, &ck, &cv, 65536, 1, 64, (unsigned)-1, &x));
    float one[64] = {0};
    TU_OK(gear_tensor_init(&t, one, GEAR_F32, 2, 1, 64, 0, 0));
    TU_OK(gear_cache_append(x, 65535, &t, &t));
    gear_cache_free(x);

    /* attention shapes */
    TU_OK(tu_cache_append(c, 0, buf, buf, H, 8, D));
    float q[3 * H * D], o[3 * H * D];
    tu_fill_normal(5, q, 3 * H * D, 1.0f);
    TU_STATUS(tu_cache_attention(c, 1, q, H, 1, D, 1.0f, o), GEAR_ERR_SHAPE); /* empty layer */
    TU_STATUS(tu_cache_attention(c, 0, q, 3, 1, D, 1.0f, o), GEAR_ERR_SHAPE); /* 3 % 2 heads */
    TU_STATUS(tu_cache_attention(c, 0, q, H, 1, D - 1, 1.0f, o), GEAR_ERR_SHAPE);
    TU_STATUS(tu_cache_attention(c, 2, q, H, 1, D, 1.0f, o), GEAR_ERR_INVALID_ARG); /* layer */
    gear_tensor tq, to;
    TU_OK(gear_tensor_init(&tq, q, GEAR_F32, 3, H, 1, D, 0));
    TU_OK(gear_tensor_init(&to, o, GEAR_F32, 3, H, 2, D, 0));
    TU_STATUS(gear_cache_attention(c, 0, &tq, 1.0f, &to), GEAR_ERR_SHAPE); /* q vs out */
    float *big = tu_alloc_f((size_t)H * 9 * D);
    TU_STATUS(tu_cache_attention(c, 0, big, H, 9, D, 1.0f, big), GEAR_ERR_SHAPE); /* nq > T */
    free(big);
    free(before);
    free(buf);
    gear_cache_free(c);
}
END_TEST

/* Rows: overflowing sizes everywhere a size is computed from input. */
START_TEST(test_overflow)
{
    gear_context *ctx = ctxs[0];
    float x[4] = {0};
    gear_tensor t;
    size_t bound;
    gear_config cfg = tu_preset("gear2", GEAR_KEY);
    /* extents whose furthest element does not fit in int64 */
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, 2, 2, 2, 0));
    t.strides[0] = INT64_MAX / 2;
    TU_STATUS(gear_compress_bound(&cfg, &t, &bound), GEAR_ERR_OVERFLOW);
    t.strides[0] = 4;
    t.strides[1] = INT64_MAX;
    TU_STATUS(gear_compress_bound(&cfg, &t, &bound), GEAR_ERR_OVERFLOW);
    /* more than 2^40 elements (never touched: refused first) */
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, 1 << 20, 1 << 20, 64, 0));
    TU_STATUS(gear_compress_bound(&cfg, &t, &bound), GEAR_ERR_OVERFLOW);
    /* a stream header (CRC valid) whose H x T x block bytes overflow
     * size_t: GEAR_ERR_FORMAT_CORRUPT, nothing allocated or read */
    float y[64 * 16];
    tu_fill_normal(3, y, 64 * 16, 1.0f);
    size_t len;
    cfg.block = 64;
    uint8_t *s = tu_compress(ctx, &cfg, y, 1, 64, 16, 0, &len);
    int64_t shape[3];
    TU_OK(gear_stream_info(s, len, shape, NULL));
    for (int i = 48; i < 56; i++) s[i] = 0xff; /* H = T = 2^32 - 1 */
    uint32_t crc = gear_crc32c(0, s, 60);
    for (int i = 0; i < 4; i++) s[60 + i] = (uint8_t)(crc >> (8 * i));
    TU_STATUS(gear_stream_info(s, len, shape, NULL), GEAR_ERR_FORMAT_CORRUPT);
    float out[4];
    gear_tensor o;
    TU_OK(gear_tensor_init(&o, out, GEAR_F32, 3, 1, 1, 4, 0));
    TU_STATUS(gear_decompress(ctx, s, len, &o), GEAR_ERR_FORMAT_CORRUPT);
    free(s);
    /* a cache of 65536 layers x 65536 heads x max_tokens 2^32-1 is legal:
     * nothing is allocated for a layer until it gets tokens */
    gear_config ck = tu_preset("kivi2", GEAR_KEY), cv = tu_preset("kivi2", GEAR_VALUE);
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(ctx, &ck, &cv, 65536, 65536, 64, (unsigned)-1, &c));
    gear_cache_stats st;
    TU_OK(gear_cache_stats_get(c, &st));
    TU_EQ(st.tokens, 0);
    gear_cache_free(c);
}
END_TEST

/* ----------------------------------------------- strides and alignment */

/* Rows: strided views (transposed, head-interleaved, stride 0) are read
 * exactly like the contiguous data they describe; a negative stride is
 * GEAR_ERR_SHAPE. */
START_TEST(test_strided)
{
    const int T = 21;
    size_t n = (size_t)H * T * D;
    float *k = tu_synth(41, GEAR_KEY, H, T, D), *v = tu_synth(42, GEAR_VALUE, H, T, D);
    /* the same data laid out [D][T][H] */
    float *kt = tu_alloc_f(n), *vt = tu_alloc_f(n);
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < D; c++) {
                kt[((size_t)c * T + t) * H + h] = k[((size_t)h * T + t) * D + c];
                vt[((size_t)c * T + t) * H + h] = v[((size_t)h * T + t) * D + c];
            }
    for (int ci = 0; ci < n_ctx; ci++) {
        gear_cache *a = new_cache(ctxs[ci], "gear2", MAXT), *b = new_cache(ctxs[ci], "gear2", MAXT);
        TU_OK(tu_cache_append(a, 0, k, v, H, T, D));
        gear_tensor tk, tv;
        TU_OK(gear_tensor_init(&tk, kt, GEAR_F32, 3, H, T, D, 0));
        tv = tk;
        tv.data = vt;
        tk.strides[0] = tv.strides[0] = 1;
        tk.strides[1] = tv.strides[1] = H;
        tk.strides[2] = tv.strides[2] = (int64_t)T * H;
        TU_OK(gear_cache_append(b, 0, &tk, &tv));
        size_t la;
        uint8_t *ba = tu_cache_save(a, &la);
        TU_ASSERT(same_cache(b, ba, la), "strided append differs from contiguous");
        free(ba);
        /* stride 0 over tokens: every token is the first one */
        gear_cache *z = new_cache(ctxs[ci], "kivi2", MAXT), *e = new_cache(ctxs[ci], "kivi2", MAXT);
        float *rep = tu_alloc_f(n);
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++)
                memcpy(rep + ((size_t)h * T + t) * D, k + (size_t)h * T * D, sizeof(float) * D);
        TU_OK(tu_cache_append(e, 0, rep, rep, H, T, D));
        TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, D, 0));
        tk.strides[1] = 0;
        TU_OK(gear_cache_append(z, 0, &tk, &tk));
        uint8_t *be = tu_cache_save(e, &la);
        TU_ASSERT(same_cache(z, be, la), "stride-0 append differs from repeated rows");
        free(be);
        free(rep);
        /* negative strides */
        size_t lz;
        uint8_t *bz = tu_cache_save(z, &lz);
        for (int dim = 0; dim < 3; dim++) {
            TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, D, 0));
            tk.strides[dim] = -1;
            TU_STATUS(gear_cache_append(z, 0, &tk, &tk), GEAR_ERR_SHAPE);
        }
        TU_ASSERT(same_cache(z, bz, lz), "a failed append changed the cache");
        free(bz);
        gear_cache_free(a);
        gear_cache_free(b);
        gear_cache_free(z);
        gear_cache_free(e);
    }
    free(k);
    free(v);
    free(kt);
    free(vt);
}
END_TEST

/* Row: a data pointer not aligned to its dtype (f32 at an address not a
 * multiple of 4, f16/bf16 at an odd address) is refused with
 * GEAR_ERR_INVALID_ARG by every call that takes a view; nothing is read or
 * written.  Aligned views at any element offset are fine. */
START_TEST(test_misaligned)
{
    gear_context *ctx = ctxs[0];
    const int T = 20;
    size_t n = (size_t)H * T * D;
    float *k = tu_synth(51, GEAR_KEY, H, T, D);
    gear_config cfg = tu_preset("kivi2", GEAR_KEY);
    cfg.block = BLK;
    for (int di = 0; di < 3; di++) {
        gear_dtype dt = dtypes[di];
        uint8_t *raw = convert(k, n, dt);
        size_t es = dt == GEAR_F32 ? 4 : 2, bytes = n * es;
        uint8_t *mis = malloc(bytes + 16);
        memcpy(mis + 1, raw, bytes);
        gear_tensor tm, ta;
        TU_OK(gear_tensor_init(&tm, mis + 1, dt, 3, H, T, D, 0));
        TU_OK(gear_tensor_init(&ta, raw, dt, 3, H, T, D, 0));
        gear_cache *c = new_cache(ctx, "kivi2", MAXT);
        TU_STATUS(gear_cache_append(c, 0, &tm, &ta), GEAR_ERR_INVALID_ARG);
        TU_STATUS(gear_cache_append(c, 0, &ta, &tm), GEAR_ERR_INVALID_ARG);
        size_t bound, written;
        TU_OK(gear_compress_bound(&cfg, &ta, &bound));
        uint8_t *dst = malloc(bound);
        TU_STATUS(gear_compress(ctx, &cfg, &tm, 0, dst, bound, &written), GEAR_ERR_INVALID_ARG);
        TU_OK(gear_compress(ctx, &cfg, &ta, 0, dst, bound, &written));
        memset(mis, 0x5a, bytes + 16);
        TU_STATUS(gear_decompress(ctx, dst, written, &tm), GEAR_ERR_INVALID_ARG);
        for (size_t i = 0; i < bytes + 16; i++) TU_CHECK(mis[i] == 0x5a);
        TU_OK(gear_cache_append(c, 0, &ta, &ta));
        gear_tensor qm, qa;
        TU_OK(gear_tensor_init(&qm, mis + 1, dt, 3, H, 1, D, 0));
        TU_OK(gear_tensor_init(&qa, raw, dt, 3, H, 1, D, 0));
        uint8_t *out = malloc(H * D * 4);
        gear_tensor to;
        TU_OK(gear_tensor_init(&to, out, dt, 3, H, 1, D, 0));
        TU_STATUS(gear_cache_attention(c, 0, &qm, 0.25f, &to), GEAR_ERR_INVALID_ARG);
        TU_STATUS(gear_cache_attention(c, 0, &qa, 0.25f, &qm), GEAR_ERR_INVALID_ARG);
        for (size_t i = 0; i < bytes + 16; i++) TU_CHECK(mis[i] == 0x5a);
        TU_OK(gear_cache_attention(c, 0, &qa, 0.25f, &to));
        TU_STATUS(gear_cache_decompress(c, 0, &tm, NULL), GEAR_ERR_INVALID_ARG);
        TU_STATUS(gear_cache_decompress(c, 0, NULL, &tm), GEAR_ERR_INVALID_ARG);
        /* an aligned view starting one element in is fine */
        if (dt != GEAR_F32) {
            gear_tensor t1;
            TU_OK(gear_tensor_init(&t1, raw + 2, dt, 3, H, 1, D, 0));
            TU_OK(gear_cache_attention(c, 0, &t1, 0.25f, &to));
        }
        free(out);
        free(dst);
        free(mis);
        free(raw);
        gear_cache_free(c);
    }
    free(k);
}
END_TEST

/* ------------------------------------------------------------ dtypes */

/* Rows: an unknown dtype value is GEAR_ERR_INVALID_ARG everywhere; mixed
 * dtypes (k in f16, v in bf16, q in f32, out in f16) are accepted: each
 * view is converted on its own. */
START_TEST(test_dtypes)
{
    gear_context *ctx = ctxs[0];
    const int T = 20;
    size_t n = (size_t)H * T * D;
    float *k = tu_synth(61, GEAR_KEY, H, T, D), *v = tu_synth(62, GEAR_VALUE, H, T, D);
    for (size_t i = 0; i < n; i++) { /* exactly representable in f16 and bf16 */
        k[i] = tu_bf(tu_h(k[i]));
        v[i] = tu_bf(tu_h(v[i]));
    }
    void *k16 = convert(k, n, GEAR_F16), *vbf = convert(v, n, GEAR_BF16);
    gear_cache *a = new_cache(ctx, "gear2", MAXT), *b = new_cache(ctx, "gear2", MAXT);
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, k16, GEAR_F16, 3, H, T, D, 0));
    TU_OK(gear_tensor_init(&tv, vbf, GEAR_BF16, 3, H, T, D, 0));
    TU_OK(gear_cache_append(a, 0, &tk, &tv));
    TU_OK(tu_cache_append(b, 0, k, v, H, T, D));
    size_t lb;
    uint8_t *bb = tu_cache_save(b, &lb);
    TU_ASSERT(same_cache(a, bb, lb), "mixed-dtype append differs from the f32 one");
    free(bb);
    size_t la;
    uint8_t *before = tu_cache_save(a, &la);
    const int bad[] = {-1, 3, 7, 1000};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gear_tensor t = tk;
        t.dtype = (gear_dtype)bad[i];
        TU_STATUS(gear_cache_append(a, 0, &t, &tv), GEAR_ERR_INVALID_ARG);
        TU_STATUS(gear_cache_append(a, 0, &tk, &t), GEAR_ERR_INVALID_ARG);
        gear_tensor q;
        float qd[H * D], od[H * D];
        tu_fill_normal(7, qd, H * D, 1.0f);
        TU_OK(gear_tensor_init(&q, qd, GEAR_F32, 3, H, 1, D, 0));
        gear_tensor o;
        TU_OK(gear_tensor_init(&o, od, GEAR_F32, 3, H, 1, D, 0));
        t = q;
        t.dtype = (gear_dtype)bad[i];
        TU_STATUS(gear_cache_attention(a, 0, &t, 1.0f, &o), GEAR_ERR_INVALID_ARG);
        t = o;
        t.dtype = (gear_dtype)bad[i];
        TU_STATUS(gear_cache_attention(a, 0, &q, 1.0f, &t), GEAR_ERR_INVALID_ARG);
        TU_STATUS(gear_tensor_init(&t, qd, (gear_dtype)bad[i], 3, H, 1, D, 0), GEAR_ERR_INVALID_ARG);
    }
    TU_ASSERT(same_cache(a, before, la), "a failed call changed the cache");
    free(before);
    /* q in f32, out in f16: the f16 of the f32 result */
    float q[H * 2 * D], o32[H * 2 * D];
    uint16_t o16[H * 2 * D];
    tu_fill_normal(8, q, H * 2 * D, 1.0f);
    TU_OK(tu_cache_attention(a, 0, q, H, 2, D, 0.25f, o32));
    gear_tensor tq, to;
    TU_OK(gear_tensor_init(&tq, q, GEAR_F32, 3, H, 2, D, 0));
    TU_OK(gear_tensor_init(&to, o16, GEAR_F16, 3, H, 2, D, 0));
    TU_OK(gear_cache_attention(a, 0, &tq, 0.25f, &to));
    for (int i = 0; i < H * 2 * D; i++) TU_CHECK(o16[i] == gear_float_to_half(o32[i]));
    free(k16);
    free(vbf);
    free(k);
    free(v);
    gear_cache_free(a);
    gear_cache_free(b);
}
END_TEST

/* ------------------------------------------------ capacity and device */

/* Row: appending past max_tokens is GEAR_ERR_CAPACITY and changes
 * nothing; appends up to exactly max_tokens work. */
START_TEST(test_capacity)
{
    const int T = 40;
    float *k = tu_synth(71, GEAR_KEY, H, T, D), *v = tu_synth(72, GEAR_VALUE, H, T, D);
    for (int ci = 0; ci < n_ctx; ci++) {
        gear_cache *c = new_cache(ctxs[ci], "gear2", 37);
        TU_OK(tu_cache_append_rows(c, 0, k, v, H, T, D, 0, 30));
        size_t len;
        uint8_t *before = tu_cache_save(c, &len);
        TU_STATUS(tu_cache_append_rows(c, 0, k, v, H, T, D, 30, 8), GEAR_ERR_CAPACITY);
        TU_ASSERT(same_cache(c, before, len), "a failed append changed the cache");
        TU_OK(tu_cache_append_rows(c, 0, k, v, H, T, D, 30, 7));
        free(before);
        before = tu_cache_save(c, &len);
        TU_STATUS(tu_cache_append_rows(c, 0, k, v, H, T, D, 37, 1), GEAR_ERR_CAPACITY);
        TU_ASSERT(same_cache(c, before, len), "a failed append changed the cache");
        unsigned n;
        TU_OK(gear_cache_tokens(c, 0, &n));
        TU_EQ(n, 37);
        TU_OK(gear_cache_tokens(c, 1, &n));
        TU_EQ(n, 0);
        TU_OK(tu_cache_append_rows(c, 1, k, v, H, T, D, 0, 37)); /* per layer */
        free(before);
        gear_cache_free(c);
    }
    free(k);
    free(v);
}
END_TEST

/* Row: a view with on_device = 1 given to a host backend is refused with
 * GEAR_ERR_UNSUPPORTED, never dereferenced (its data pointer here is not
 * readable memory). */
START_TEST(test_device_pointer_on_host_backend)
{
    const int T = 20;
    float *k = tu_synth(81, GEAR_KEY, H, T, D);
    void *nowhere = (void *)(uintptr_t)0x1000; /* unmapped */
    gear_config cfg = tu_preset("kivi2", GEAR_KEY);
    cfg.block = BLK;
    for (int ci = 0; ci < n_ctx; ci++) {
        gear_context *ctx = ctxs[ci];
        gear_cache *c = new_cache(ctx, "kivi2", MAXT);
        TU_OK(tu_cache_append(c, 0, k, k, H, T, D));
        size_t len;
        uint8_t *before = tu_cache_save(c, &len);
        gear_tensor host, dev;
        TU_OK(gear_tensor_init(&host, k, GEAR_F32, 3, H, T, D, 0));
        TU_OK(gear_tensor_init(&dev, nowhere, GEAR_F32, 3, H, T, D, 0));
        dev.on_device = 1;
        TU_STATUS(gear_cache_append(c, 0, &dev, &host), GEAR_ERR_UNSUPPORTED);
        TU_STATUS(gear_cache_append(c, 0, &host, &dev), GEAR_ERR_UNSUPPORTED);
        size_t bound, written;
        TU_OK(gear_compress_bound(&cfg, &host, &bound));
        uint8_t *dst = malloc(bound);
        TU_STATUS(gear_compress(ctx, &cfg, &dev, 0, dst, bound, &written), GEAR_ERR_UNSUPPORTED);
        TU_OK(gear_compress(ctx, &cfg, &host, 0, dst, bound, &written));
        TU_STATUS(gear_decompress(ctx, dst, written, &dev), GEAR_ERR_UNSUPPORTED);
        TU_STATUS(gear_cache_decompress(c, 0, &dev, NULL), GEAR_ERR_UNSUPPORTED);
        gear_tensor q, o, qd;
        float qb[H * D], ob[H * D];
        tu_fill_normal(9, qb, H * D, 1.0f);
        TU_OK(gear_tensor_init(&q, qb, GEAR_F32, 3, H, 1, D, 0));
        TU_OK(gear_tensor_init(&o, ob, GEAR_F32, 3, H, 1, D, 0));
        TU_OK(gear_tensor_init(&qd, nowhere, GEAR_F32, 3, H, 1, D, 0));
        qd.on_device = 1;
        TU_STATUS(gear_cache_attention(c, 0, &qd, 1.0f, &o), GEAR_ERR_UNSUPPORTED);
        TU_STATUS(gear_cache_attention(c, 0, &q, 1.0f, &qd), GEAR_ERR_UNSUPPORTED);
        TU_ASSERT(same_cache(c, before, len), "a refused call changed the cache");
        free(dst);
        free(before);
        gear_cache_free(c);
    }
    free(k);
}
END_TEST

/* ------------------------------------------------------ durable saves */

static int count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    TU_CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    closedir(d);
    return n;
}

/* gear_cache_save over an existing file, in a child process whose file
 * size limit is smaller than the new file (SIGXFSZ ignored, so write()
 * fails with EFBIG as on a full disk): GEAR_ERR_IO, the old file intact
 * byte for byte, no temporary file left. */
START_TEST(test_durable_save_write_failure)
{
    gear_context *ctx = ctxs[0];
    char *dir = tu_tmpdir();
    char path[4096];
    snprintf(path, sizeof path, "%s/kv.gear", dir);
    const int T = 60;
    float *k = tu_synth(91, GEAR_KEY, H, T, D), *v = tu_synth(92, GEAR_VALUE, H, T, D);
    gear_cache *small = new_cache(ctx, "kivi2", MAXT), *big = new_cache(ctx, "fp16", MAXT);
    TU_OK(tu_cache_append(small, 0, k, v, H, 5, D));
    TU_OK(tu_cache_append(big, 0, k, v, H, T, D));
    TU_OK(tu_cache_append(big, 1, k, v, H, T, D));
    TU_OK(gear_cache_save(small, path));
    size_t old_len;
    uint8_t *old = tu_read_file(path, &old_len);
    size_t big_len;
    free(tu_cache_save(big, &big_len));
    TU_CHECK(big_len > 2 * old_len + 8192);

    /* limits: below the header, mid-way, one byte short */
    const rlim_t limits[] = {0, 100, (rlim_t)big_len / 2, (rlim_t)big_len - 1};
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++) {
        fflush(NULL);
        pid_t pid = fork();
        TU_CHECK(pid >= 0);
        if (pid == 0) {
            signal(SIGXFSZ, SIG_IGN);
            struct rlimit rl = {limits[i], limits[i]};
            if (setrlimit(RLIMIT_FSIZE, &rl)) _exit(3);
            gear_status st = gear_cache_save(big, path);
            /* free this process's copies, so that a leak checker (valgrind)
             * has nothing to report at _exit and keeps the exit status */
            gear_cache_free(small);
            gear_cache_free(big);
            free(old);
            free(k);
            free(v);
            free(dir);
            teardown();
            _exit(st == GEAR_ERR_IO ? 0 : st == GEAR_OK ? 1 : 2);
        }
        int ws;
        TU_CHECK(waitpid(pid, &ws, 0) == pid);
        TU_ASSERT(WIFEXITED(ws) && WEXITSTATUS(ws) == 0,
                  "limit %llu: child save did not fail with GEAR_ERR_IO (exit %d)",
                  (unsigned long long)limits[i], WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
        size_t now_len;
        uint8_t *now = tu_read_file(path, &now_len);
        TU_ASSERT(now_len == old_len && !memcmp(now, old, old_len),
                  "limit %llu: the old file was damaged", (unsigned long long)limits[i]);
        free(now);
        TU_ASSERT(count_temps(dir) == 0, "limit %llu: a temporary file was left behind",
                  (unsigned long long)limits[i]);
        gear_cache *back = NULL;
        TU_OK(gear_cache_load(ctx, path, &back));
        gear_cache_free(back);
    }
    /* the same save without a limit replaces the file */
    TU_OK(gear_cache_save(big, path));
    size_t new_len;
    free(tu_read_file(path, &new_len));
    TU_EQ(new_len, big_len);
    TU_EQ(count_temps(dir), 0);
    /* a directory that does not exist: GEAR_ERR_IO, nothing created */
    snprintf(path, sizeof path, "%s/missing/kv.gear", dir);
    TU_STATUS(gear_cache_save(big, path), GEAR_ERR_IO);
    snprintf(path, sizeof path, "%s/kv.gear", dir);
    unlink(path);
    free(old);
    free(k);
    free(v);
    gear_cache_free(small);
    gear_cache_free(big);
    tu_rmtree(dir);
}
END_TEST

/* Loading anything but a regular file fails at once (a FIFO would block,
 * /dev/zero would be read until memory ran out); a save into a buffer one
 * byte short writes nothing; a saved file gets the umask's mode, as any
 * file a program creates. */
START_TEST(test_files_and_buffers)
{
    gear_context *ctx = ctxs[0];
    char *dir = tu_tmpdir();
    char path[4096];
    gear_cache *back = NULL;
    gear_calib *cal = NULL;
    snprintf(path, sizeof path, "%s/fifo", dir);
    TU_CHECK(mkfifo(path, 0600) == 0);
    const char *odd[] = {dir, path, "/dev/zero"};
    for (size_t i = 0; i < 3; i++) {
        if (access(odd[i], R_OK)) continue;
        TU_STATUS(gear_cache_load(ctx, odd[i], &back), GEAR_ERR_IO);
        TU_ASSERT(strstr(gear_last_error_message(), "not a regular file"), "%s: %s", odd[i],
                  gear_last_error_message());
        TU_CHECK(back == NULL);
        TU_STATUS(gear_calib_load(odd[i], &cal), GEAR_ERR_IO);
        TU_CHECK(cal == NULL);
    }
    unlink(path);

    const int T = MAXT - 3; /* compressed blocks and a buffer tail */
    float *k = tu_synth(93, GEAR_KEY, H, T, D), *v = tu_synth(94, GEAR_VALUE, H, T, D);
    gear_cache *c = new_cache(ctx, "gear2", MAXT);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, D));
    size_t need = 0, got = 0;
    TU_STATUS(gear_cache_save_mem(c, NULL, 0, &need), GEAR_ERR_DST_TOO_SMALL);
    uint8_t *buf = malloc(need);
    TU_CHECK(buf != NULL);
    memset(buf, 0xa5, need);
    TU_STATUS(gear_cache_save_mem(c, buf, need - 1, &got), GEAR_ERR_DST_TOO_SMALL);
    TU_EQ(got, need);
    size_t touched = 0;
    for (size_t i = 0; i < need; i++) touched += buf[i] != 0xa5;
    TU_ASSERT(touched == 0, "a save one byte short wrote %zu bytes", touched);
    TU_OK(gear_cache_save_mem(c, buf, need, &got));
    TU_EQ(got, need);

    snprintf(path, sizeof path, "%s/kv.gear", dir);
    mode_t old = umask(022);
    gear_status st = gear_cache_save(c, path);
    umask(old);
    TU_OK(st);
    struct stat sb;
    TU_CHECK(stat(path, &sb) == 0);
    TU_ASSERT((sb.st_mode & 0777) == 0644, "saved with mode %o under umask 022", (unsigned)(sb.st_mode & 0777));
    unlink(path);
    free(buf);
    free(k);
    free(v);
    gear_cache_free(c);
    tu_rmtree(dir);
}
END_TEST

static Suite *badinput_suite(void)
{
    Suite *s = suite_create("badinput");
    TCase *tc = tcase_create("matrix");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_nonfinite_kv);
    tcase_add_test(tc, test_nonfinite_query);
    tcase_add_test(tc, test_nonfinite_query_wide);
    tcase_add_test(tc, test_nonfinite_compress);
    tcase_add_test(tc, test_nonfinite_compress_wide);
    tcase_add_test(tc, test_fp16_out_saturates);
    tcase_add_test(tc, test_dimensions);
    tcase_add_test(tc, test_overflow);
    tcase_add_test(tc, test_strided);
    tcase_add_test(tc, test_misaligned);
    tcase_add_test(tc, test_dtypes);
    tcase_add_test(tc, test_capacity);
    tcase_add_test(tc, test_device_pointer_on_host_backend);
    suite_add_tcase(s, tc);
    tc = tcase_create("durable");
    tcase_set_timeout(tc, 600);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_durable_save_write_failure);
    tcase_add_test(tc, test_files_and_buffers);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(badinput_suite(), 0); }
