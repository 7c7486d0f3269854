/*
 * check_api.c - API misuse: NULL arguments to every entry point, zero and
 * huge sizes, mismatched shapes, unknown presets, invalid knobs, wrong
 * dtypes, bad query-head counts, layers out of range, non-finite and
 * out-of-range data.  Every failure must return the documented status (or,
 * where none is documented, a negative one) with a fresh, non-empty
 * gear_last_error_message(), and never crash.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "internal.h"

/* The detail is cleared first, so a message left by an earlier failure
 * does not count. */
#define API_STATUS(expr, want)          \
    do {                                \
        gear_clear_error();             \
        TU_STATUS(expr, want);          \
    } while (0)
#define API_FAILS(expr)                 \
    do {                                \
        gear_clear_error();             \
        TU_FAILS(expr);                 \
    } while (0)
#define API_STATUS2(expr, w1, w2)       \
    do {                                \
        gear_clear_error();             \
        TU_STATUS2(expr, w1, w2);       \
    } while (0)

enum { H = 2, T = 20, D = 16, N = 16 };

static gear_context *ctx;
static gear_config ck, cv;
static gear_cache *cache;
static float *kbuf, *vbuf, *qbuf, *obuf;
static gear_tensor tk, tv, tq, to;

static void setup(void)
{
    ctx = tu_ctx("ref");
    ck = tu_preset("gear2", GEAR_KEY);
    cv = tu_preset("gear2", GEAR_VALUE);
    ck.block = cv.block = N;
    TU_OK(gear_cache_create(ctx, &ck, &cv, 2, H, D, 64, &cache));
    kbuf = tu_synth(1, GEAR_KEY, H, T, D);
    vbuf = tu_synth(2, GEAR_VALUE, H, T, D);
    qbuf = tu_alloc_f(4 * 2 * D);
    obuf = tu_alloc_f(4 * 2 * D);
    gear_synth_normal(3, 4 * 2 * D, qbuf);
    TU_OK(gear_tensor_init(&tk, kbuf, GEAR_F32, 3, H, T, D, 0));
    TU_OK(gear_tensor_init(&tv, vbuf, GEAR_F32, 3, H, T, D, 0));
    TU_OK(gear_tensor_init(&tq, qbuf, GEAR_F32, 3, 4, 2, D, 0));
    TU_OK(gear_tensor_init(&to, obuf, GEAR_F32, 3, 4, 2, D, 0));
    TU_OK(gear_cache_append(cache, 0, &tk, &tv));
}

static void teardown(void)
{
    gear_cache_free(cache);
    gear_context_free(ctx);
    free(kbuf);
    free(vbuf);
    free(qbuf);
    free(obuf);
    cache = NULL;
    ctx = NULL;
}

/* --------------------------------------------------------------- NULLs */

START_TEST(test_null_context_and_config)
{
    gear_config cfg;
    gear_block_info info;
    API_STATUS(gear_context_create(NULL, NULL), GEAR_ERR_INVALID_ARG);
    gear_context_params p;
    gear_context_params_init(&p);
    API_STATUS(gear_context_create(&p, NULL), GEAR_ERR_INVALID_ARG);
    gear_context_params_init(NULL); /* no crash */
    gear_context_free(NULL);
    TU_CHECK((gear_context_backend_name(NULL)) == NULL);
    API_STATUS(gear_config_preset(NULL, GEAR_KEY, &cfg), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_config_preset("gear2", GEAR_KEY, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_config_validate(NULL, 128), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_block_info_get(NULL, 128, &info), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_block_info_get(&ck, 128, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_tensor_init(NULL, kbuf, GEAR_F32, 2, 1, 1, 0, 0), GEAR_ERR_INVALID_ARG);
    gear_log_set(NULL, NULL);
    TU_CHECK((gear_last_error_message()) != NULL);
}
END_TEST

START_TEST(test_null_stream_calls)
{
    size_t bound = 0, w = 0;
    uint8_t dst[16];
    int64_t shape[3];
    TU_OK(gear_compress_bound(&ck, &tk, &bound));
    uint8_t *s = malloc(bound);
    TU_CHECK((s) != NULL);
    API_STATUS(gear_compress_bound(NULL, &tk, &bound), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress_bound(&ck, NULL, &bound), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress_bound(&ck, &tk, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress(NULL, &ck, &tk, 0, s, bound, &w), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress(ctx, NULL, &tk, 0, s, bound, &w), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress(ctx, &ck, NULL, 0, s, bound, &w), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress(ctx, &ck, &tk, 0, NULL, bound, &w), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress(ctx, &ck, &tk, 0, s, bound, NULL), GEAR_ERR_INVALID_ARG);
    gear_tensor nodata = tk;
    nodata.data = NULL;
    API_STATUS(gear_compress(ctx, &ck, &nodata, 0, s, bound, &w), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_compress_bound(&ck, &nodata, &bound), GEAR_ERR_INVALID_ARG);
    TU_OK(gear_compress(ctx, &ck, &tk, 0, s, bound, &w));
    API_STATUS(gear_stream_info(NULL, w, shape, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_decompress(NULL, s, w, &tk), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_decompress(ctx, NULL, w, &tk), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_decompress(ctx, s, w, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_decompress(ctx, s, w, &nodata), GEAR_ERR_INVALID_ARG);
    /* a destination too small, and written reset */
    w = 77;
    API_STATUS(gear_compress(ctx, &ck, &tk, 0, dst, sizeof dst, &w), GEAR_ERR_DST_TOO_SMALL);
    TU_EQ(w, 0);
    free(s);
}
END_TEST

START_TEST(test_null_cache_calls)
{
    gear_cache *c = (gear_cache *)&c;
    unsigned n;
    gear_cache_stats st;
    size_t size;
    uint8_t buf[64];
    API_STATUS(gear_cache_create(NULL, &ck, &cv, 1, 1, D, 64, &c), GEAR_ERR_INVALID_ARG);
    TU_CHECK((c) == NULL);
    API_STATUS(gear_cache_create(ctx, NULL, &cv, 1, 1, D, 64, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_create(ctx, &ck, NULL, 1, 1, D, 64, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_create(ctx, &ck, &cv, 1, 1, D, 64, NULL), GEAR_ERR_INVALID_ARG);
    gear_cache_free(NULL);
    API_STATUS(gear_cache_append(NULL, 0, &tk, &tv), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_append(cache, 0, NULL, &tv), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_append(cache, 0, &tk, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_attention(NULL, 0, &tq, 0.25f, &to), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_attention(cache, 0, NULL, 0.25f, &to), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_attention(cache, 0, &tq, 0.25f, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_decompress(NULL, 0, &tk, &tv), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_tokens(NULL, 0, &n), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_tokens(cache, 0, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_stats_get(NULL, &st), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_stats_get(cache, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_save(NULL, "/tmp/x.gear"), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_save(cache, NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_save_mem(NULL, buf, sizeof buf, &size), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_save_mem(cache, buf, sizeof buf, NULL), GEAR_ERR_INVALID_ARG);
    c = (gear_cache *)&c;
    API_STATUS(gear_cache_load(NULL, "/tmp/x.gear", &c), GEAR_ERR_INVALID_ARG);
    TU_CHECK((c) == NULL);
    API_STATUS(gear_cache_load(ctx, NULL, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_load(ctx, "/tmp/x.gear", NULL), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_load_mem(NULL, buf, sizeof buf, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_load_mem(ctx, NULL, sizeof buf, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_load_mem(ctx, buf, sizeof buf, NULL), GEAR_ERR_INVALID_ARG);
    /* nothing above changed the cache */
    TU_OK(gear_cache_tokens(cache, 0, &n));
    TU_EQ(n, T);
}
END_TEST

/* --------------------------------------------------------- sizes, shapes */

START_TEST(test_zero_and_huge_sizes)
{
    gear_cache *c = NULL;
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 0, 1, D, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1, 0, D, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1, 1, 0, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1, 1, D, 0, &c));
    TU_CHECK((c) == NULL);
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1u << 30, 1, D, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1, 1u << 30, D, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, 1, 1, 70000, 64, &c));
    API_FAILS(gear_cache_create(ctx, &ck, &cv, UINT_MAX, UINT_MAX, UINT_MAX, UINT_MAX, &c));
    TU_CHECK((c) == NULL);
    /* a huge max_tokens costs nothing until tokens arrive */
    gear_status st = gear_cache_create(ctx, &ck, &cv, 2, H, D, UINT_MAX, &c);
    TU_ASSERT(st == GEAR_OK || st == GEAR_ERR_NO_MEMORY || st == GEAR_ERR_OVERFLOW,
                  "huge max_tokens -> %s", gear_status_string(st));
    if (st == GEAR_OK) {
        TU_OK(gear_cache_append(c, 1, &tk, &tv));
        TU_OK(gear_cache_attention(c, 1, &tq, 0.25f, &to));
        gear_cache_free(c);
    }
    /* a view of 2^40 x 2^40 elements cannot be made; one of 2^44 is too big */
    gear_tensor t;
    int64_t big = (int64_t)1 << 40;
    API_STATUS2(gear_tensor_init(&t, kbuf, GEAR_F32, 3, 1, big, big, 0), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&t, kbuf, GEAR_F32, 3, 1, big, D, 0));
    size_t bound;
    uint8_t dst[64];
    size_t w;
    API_STATUS2(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    API_STATUS2(gear_compress(ctx, &ck, &t, 0, dst, sizeof dst, &w), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    gear_tensor tt = t;
    tt.shape[0] = H;
    tt.strides[0] = big * D;
    API_STATUS2(gear_cache_append(cache, 1, &tt, &tt), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    /* hand-made views whose extent overflows int64 */
    t = tk;
    t.shape[1] = INT64_MAX;
    API_STATUS2(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    t = tk;
    t.strides[1] = INT64_MAX / 2;
    API_STATUS2(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    t = tk;
    t.shape[0] = big;
    t.shape[1] = big;
    API_STATUS2(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    t = tk; /* 2^32 x 2^32 x 16 elements: the element count itself overflows int64 */
    t.shape[0] = (int64_t)1 << 32;
    t.shape[1] = (int64_t)1 << 32;
    t.strides[0] = t.strides[1] = 0;
    API_STATUS2(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    API_STATUS2(gear_compress(ctx, &ck, &t, 0, dst, sizeof dst, &w), GEAR_ERR_OVERFLOW, GEAR_ERR_SHAPE);
    /* zero and negative sizes */
    TU_OK(gear_tensor_init(&t, kbuf, GEAR_F32, 3, H, 0, D, 0));
    API_STATUS(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_SHAPE);
    API_STATUS(gear_compress(ctx, &ck, &t, 0, dst, sizeof dst, &w), GEAR_ERR_SHAPE);
    t = tk;
    t.shape[2] = 0;
    API_STATUS(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_SHAPE);
    t = tk;
    t.shape[0] = -2;
    API_STATUS(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_SHAPE);
    t = tk;
    t.strides[1] = -D;
    API_STATUS(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_SHAPE);
    /* head_dim above 65535 in a stream */
    float one = 1.0f;
    TU_OK(gear_tensor_init(&t, &one, GEAR_F32, 2, 1, 70000, 0, 0));
    t.strides[1] = 0; /* every channel reads the same float */
    API_FAILS(gear_compress_bound(&ck, &t, &bound));
}
END_TEST

START_TEST(test_mismatched_shapes)
{
    gear_tensor a, b;
    /* append: heads, head_dim, T of k vs v, ndim */
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 3, H + 1, 4, D, 0));
    API_STATUS(gear_cache_append(cache, 1, &a, &tv), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 3, H, 4, D - 1, 0));
    API_STATUS(gear_cache_append(cache, 1, &a, &a), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 3, H, 4, D, 0));
    TU_OK(gear_tensor_init(&b, vbuf, GEAR_F32, 3, H, 5, D, 0));
    API_STATUS(gear_cache_append(cache, 1, &a, &b), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 2, 4, D, 0, 0)); /* 2-D with 2 KV heads */
    API_STATUS(gear_cache_append(cache, 1, &a, &a), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 4, 1, H, 4, D));
    API_STATUS(gear_cache_append(cache, 1, &a, &a), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, kbuf, GEAR_F32, 1, D, 0, 0, 0));
    API_STATUS(gear_cache_append(cache, 1, &a, &a), GEAR_ERR_SHAPE);
    unsigned n;
    TU_OK(gear_cache_tokens(cache, 1, &n));
    TU_EQ(n, 0);
    /* attention: head_dim, out shape, query heads, too many queries */
    TU_OK(gear_tensor_init(&a, qbuf, GEAR_F32, 3, 4, 2, D - 2, 0));
    API_STATUS(gear_cache_attention(cache, 0, &a, 0.25f, &to), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&b, obuf, GEAR_F32, 3, 4, 1, D, 0));
    API_STATUS(gear_cache_attention(cache, 0, &tq, 0.25f, &b), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&b, obuf, GEAR_F32, 3, 2, 2, D, 0));
    API_STATUS(gear_cache_attention(cache, 0, &tq, 0.25f, &b), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, qbuf, GEAR_F32, 3, 3, 2, D, 0)); /* 3 query heads, 2 KV heads */
    TU_OK(gear_tensor_init(&b, obuf, GEAR_F32, 3, 3, 2, D, 0));
    API_STATUS(gear_cache_attention(cache, 0, &a, 0.25f, &b), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, qbuf, GEAR_F32, 3, 1, 2, D, 0)); /* fewer query heads than KV heads */
    TU_OK(gear_tensor_init(&b, obuf, GEAR_F32, 3, 1, 2, D, 0));
    API_STATUS(gear_cache_attention(cache, 0, &a, 0.25f, &b), GEAR_ERR_SHAPE);
    float q2[2 * 21 * D], o2[2 * 21 * D];
    memset(q2, 0, sizeof q2);
    TU_OK(gear_tensor_init(&a, q2, GEAR_F32, 3, 2, T + 1, D, 0)); /* more queries than tokens */
    TU_OK(gear_tensor_init(&b, o2, GEAR_F32, 3, 2, T + 1, D, 0));
    API_FAILS(gear_cache_attention(cache, 0, &a, 0.25f, &b));
    /* cache decompress: wrong T or H */
    float *big = tu_alloc_f((size_t)(H + 1) * (T + 1) * D);
    TU_OK(gear_tensor_init(&a, big, GEAR_F32, 3, H, T + 1, D, 0));
    API_STATUS(gear_cache_decompress(cache, 0, &a, NULL), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, big, GEAR_F32, 3, H + 1, T, D, 0));
    API_STATUS(gear_cache_decompress(cache, 0, NULL, &a), GEAR_ERR_SHAPE);
    /* stream decompress into a view of another shape: untouched */
    size_t len;
    uint8_t *s = tu_compress(ctx, &ck, kbuf, H, T, D, 0, &len);
    for (size_t i = 0; i < (size_t)(H + 1) * (T + 1) * D; i++) big[i] = 3.0f;
    TU_OK(gear_tensor_init(&a, big, GEAR_F32, 3, H, T - 1, D, 0));
    API_STATUS(gear_decompress(ctx, s, len, &a), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, big, GEAR_F32, 2, T, D, 0, 0)); /* 2-D for a 2-head stream */
    API_STATUS(gear_decompress(ctx, s, len, &a), GEAR_ERR_SHAPE);
    TU_OK(gear_tensor_init(&a, big, GEAR_F32, 3, H, T, D + 1, 0));
    API_STATUS(gear_decompress(ctx, s, len, &a), GEAR_ERR_SHAPE);
    for (size_t i = 0; i < (size_t)(H + 1) * (T + 1) * D; i++) TU_CHECK(big[i] == 3.0f);
    free(s);
    free(big);
}
END_TEST

/* ---------------------------------------------------- presets and knobs */

START_TEST(test_unknown_preset)
{
    gear_config c;
    static const char *bad[] = {"gear3", "", "FP16", "kivi", "gear2x", "gear-2", " gear2", "kcvt2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        API_STATUS(gear_config_preset(bad[i], GEAR_VALUE, &c), GEAR_ERR_UNKNOWN_PRESET);
    API_STATUS(gear_config_preset("gear2", (gear_kind)2, &c), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_config_preset("gear2", (gear_kind)-1, &c), GEAR_ERR_INVALID_ARG);
}
END_TEST

/* A knob change that must be refused everywhere a config is taken. */
static void refused(const gear_config *bad_k, unsigned d, const char *what)
{
    gear_block_info info;
    gear_cache *c = NULL;
    gear_config v = cv;
    v.block = bad_k->block;
    gear_clear_error();
    gear_status st = gear_config_validate(bad_k, d);
    TU_ASSERT(st == GEAR_ERR_INVALID_ARG, "%s: validate -> %s", what, gear_status_string(st));
    TU_ASSERT(gear_last_error_message()[0], "%s: no message", what);
    st = gear_block_info_get(bad_k, d, &info);
    TU_ASSERT(st == GEAR_ERR_INVALID_ARG, "%s: block_info -> %s", what, gear_status_string(st));
    st = gear_cache_create(ctx, bad_k, &v, 1, 1, d, 64, &c);
    TU_ASSERT(st == GEAR_ERR_INVALID_ARG, "%s: cache_create -> %s", what, gear_status_string(st));
    TU_CHECK((c) == NULL);
    if (d == D) {
        size_t bound, w;
        uint8_t dst[64];
        st = gear_compress_bound(bad_k, &tk, &bound);
        TU_ASSERT(st == GEAR_ERR_INVALID_ARG, "%s: bound -> %s", what, gear_status_string(st));
        st = gear_compress(ctx, bad_k, &tk, 0, dst, sizeof dst, &w);
        TU_ASSERT(st == GEAR_ERR_INVALID_ARG, "%s: compress -> %s", what, gear_status_string(st));
    }
}

START_TEST(test_invalid_knobs)
{
    gear_config c;
    for (unsigned b = 5; b <= 16; b++) {
        if (b == 8) continue;
        c = ck;
        c.bits = b;
        refused(&c, D, "bits");
    }
    c = ck; c.bits = 255; refused(&c, D, "bits 255");
    c = ck; c.group = 70000; refused(&c, D, "group 70000");
    c = ck; c.rank = N + 1; refused(&c, D, "rank > block");
    c = ck; c.block = 8; c.rank = 9; refused(&c, D, "rank > min(n, d)");
    c = ck; c.block = 64; c.rank = 9; refused(&c, 8, "rank > head_dim");
    c = ck; c.rank = 2; c.iters = 0; refused(&c, D, "iters 0");
    c = ck; c.block = 0; refused(&c, D, "block 0");
    c = ck; c.block = 1024; refused(&c, 128, "block*d > 65536");
    c = ck; c.block = 65536; refused(&c, 1, "block 65536");
    c = ck; c.outlier_ratio = -0.1f; refused(&c, D, "ratio < 0");
    c = ck; c.outlier_ratio = 1.5f; refused(&c, D, "ratio > 1");
    c = ck; c.outlier_ratio = NAN; refused(&c, D, "ratio NaN");
    c = ck; c.outlier_ratio = INFINITY; refused(&c, D, "ratio Inf");
    c = ck; c.kind = (gear_kind)3; refused(&c, D, "kind 3");
    c = tu_preset("fp16", GEAR_KEY); c.block = N; c.rank = 2; refused(&c, D, "fp16 with rank");
    /* the limits themselves are fine */
    c = ck; c.block = 4096; c.rank = 2; TU_OK(gear_config_validate(&c, 16));
    c = ck; c.block = 512; c.rank = 128; TU_OK(gear_config_validate(&c, 128));
    c = ck; c.block = 65535; c.rank = 1; TU_OK(gear_config_validate(&c, 1));
    c = ck; c.group = 1000; TU_OK(gear_config_validate(&c, D)); /* larger than a row: the whole row */
    c = ck; c.outlier_ratio = 1.0f; TU_OK(gear_config_validate(&c, D));
    /* keys and values swapped, or with different blocks, in a cache */
    gear_cache *cc = NULL;
    API_STATUS(gear_cache_create(ctx, &cv, &ck, 1, 1, D, 64, &cc), GEAR_ERR_INVALID_ARG);
    c = cv;
    c.block = 32;
    API_STATUS(gear_cache_create(ctx, &ck, &c, 1, 1, D, 64, &cc), GEAR_ERR_INVALID_ARG);
    TU_CHECK((cc) == NULL);
}
END_TEST

START_TEST(test_wrong_dtype_and_device)
{
    gear_tensor t = tk;
    size_t bound;
    t.dtype = (gear_dtype)9;
    API_STATUS(gear_compress_bound(&ck, &t, &bound), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_cache_append(cache, 1, &t, &tv), GEAR_ERR_INVALID_ARG);
    API_STATUS(gear_tensor_init(&t, kbuf, (gear_dtype)3, 3, H, T, D, 0), GEAR_ERR_INVALID_ARG);
    gear_tensor o = to;
    o.dtype = (gear_dtype)-1;
    API_STATUS(gear_cache_attention(cache, 0, &tq, 0.25f, &o), GEAR_ERR_INVALID_ARG);
    gear_tensor q = tq;
    q.dtype = (gear_dtype)5;
    API_STATUS(gear_cache_attention(cache, 0, &q, 0.25f, &to), GEAR_ERR_INVALID_ARG);
    size_t len;
    uint8_t *s = tu_compress(ctx, &ck, kbuf, H, T, D, 0, &len);
    t = tk;
    t.dtype = (gear_dtype)4;
    API_STATUS(gear_decompress(ctx, s, len, &t), GEAR_ERR_INVALID_ARG);
    /* device memory views on a host backend are refused, not dereferenced */
    if (!strcmp(gear_context_backend_name(ctx), "ref")) {
        t = tk;
        t.on_device = 1;
        API_FAILS(gear_compress_bound(&ck, &t, &bound));
        API_FAILS(gear_cache_append(cache, 1, &t, &tv));
        API_FAILS(gear_decompress(ctx, s, len, &t));
    }
    free(s);
    unsigned n;
    TU_OK(gear_cache_tokens(cache, 1, &n));
    TU_EQ(n, 0);
}
END_TEST

START_TEST(test_layer_out_of_range)
{
    unsigned n;
    gear_cache_stats st;
    API_FAILS(gear_cache_append(cache, 2, &tk, &tv));
    API_FAILS(gear_cache_append(cache, UINT_MAX, &tk, &tv));
    API_FAILS(gear_cache_attention(cache, 2, &tq, 0.25f, &to));
    API_FAILS(gear_cache_decompress(cache, 7, &tk, &tv));
    API_FAILS(gear_cache_tokens(cache, 2, &n));
    TU_OK(gear_cache_stats_get(cache, &st));
    TU_EQ(st.tokens, T);
}
END_TEST

START_TEST(test_bad_data_and_scale)
{
    size_t bound, w;
    TU_OK(gear_compress_bound(&ck, &tk, &bound));
    uint8_t *s = malloc(bound);
    TU_CHECK((s) != NULL);
    float *x = tu_alloc_f((size_t)H * T * D);
    gear_tensor t;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, H, T, D, 0));
    struct { size_t at; float v; gear_status want; } cases[] = {
        {5, NAN, GEAR_ERR_NONFINITE},
        {(size_t)T * D + 7, INFINITY, GEAR_ERR_NONFINITE},
        {33, -INFINITY, GEAR_ERR_NONFINITE},
        {(size_t)(T - 1) * D, NAN, GEAR_ERR_NONFINITE}, /* in the tail */
        {40, 65520.0f, GEAR_ERR_RANGE},
        {41, -65505.0f, GEAR_ERR_RANGE},
        {(size_t)T * D + 3, 1e30f, GEAR_ERR_RANGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(x, kbuf, sizeof(float) * H * T * D);
        x[cases[i].at] = cases[i].v;
        API_STATUS(gear_compress(ctx, &ck, &t, 0, s, bound, &w), cases[i].want);
        TU_EQ(w, 0);
        if (cases[i].at % ((size_t)T * D) < 16u * D) /* in the part that becomes blocks */
            API_STATUS(gear_cache_append(cache, 1, &t, &tv), cases[i].want);
        else
            API_STATUS(gear_cache_append(cache, 1, &tv, &t), cases[i].want);
    }
    /* half-precision inputs carrying Inf or NaN */
    uint16_t h[4 * D];
    for (int i = 0; i < 4 * D; i++) h[i] = gear_float_to_half(0.5f);
    h[9] = 0x7C00;
    TU_OK(gear_tensor_init(&t, h, GEAR_F16, 2, 4, D, 0, 0));
    gear_config c1 = ck;
    c1.block = 4;
    size_t bound1;
    TU_OK(gear_compress_bound(&c1, &t, &bound1));
    ck_assert_uint_le(bound1, bound);
    API_STATUS(gear_compress(ctx, &c1, &t, 0, s, bound1, &w), GEAR_ERR_NONFINITE);
    h[9] = 0x7E01;
    API_STATUS(gear_compress(ctx, &c1, &t, 0, s, bound1, &w), GEAR_ERR_NONFINITE);
    h[9] = 0x7F80; /* bf16 Inf */
    t.dtype = GEAR_BF16;
    API_STATUS(gear_compress(ctx, &c1, &t, 0, s, bound1, &w), GEAR_ERR_NONFINITE);
    /* the largest finite values are accepted */
    memcpy(x, kbuf, sizeof(float) * H * T * D);
    x[3] = 65504.0f;
    x[4] = -65504.0f;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 3, H, T, D, 0));
    TU_OK(gear_compress(ctx, &ck, &t, 0, s, bound, &w));
    /* attention with a non-finite query or scale */
    API_FAILS(gear_cache_attention(cache, 0, &tq, NAN, &to));
    API_FAILS(gear_cache_attention(cache, 0, &tq, INFINITY, &to));
    qbuf[3] = NAN;
    API_STATUS(gear_cache_attention(cache, 0, &tq, 0.25f, &to), GEAR_ERR_NONFINITE);
    unsigned n;
    TU_OK(gear_cache_tokens(cache, 1, &n));
    TU_EQ(n, 0);
    free(x);
    free(s);
}
END_TEST

START_TEST(test_backends_and_env)
{
    gear_context *c = NULL;
    gear_context_params p;
    gear_context_params_init(&p);
    TU_CHECK((p.backend) != NULL);
    ck_assert_str_eq(p.backend, "auto");
    TU_EQ(p.device, 0);
    TU_EQ(p.n_threads, 0);
    p.backend = "no-such-backend";
    API_STATUS(gear_context_create(&p, &c), GEAR_ERR_NO_BACKEND);
    TU_CHECK((c) == NULL);
    p.backend = "ref";
    p.device = -1;
    API_STATUS(gear_context_create(&p, &c), GEAR_ERR_INVALID_ARG);
    p.device = 0;
    p.n_threads = -3;
    API_STATUS(gear_context_create(&p, &c), GEAR_ERR_INVALID_ARG);
    TU_CHECK((c) == NULL);
    /* an unavailable backend is refused by name */
    for (int i = 0; i < gear_backend_count(); i++)
        if (!gear_backend_available(i, NULL)) {
            p.backend = gear_backend_name(i);
            p.n_threads = 0;
            API_STATUS(gear_context_create(&p, &c), GEAR_ERR_NO_BACKEND);
        }
    /* the environment refines "auto" */
    setenv("GEAR_BACKEND", "ref", 1);
    TU_OK(gear_context_create(NULL, &c));
    ck_assert_str_eq(gear_context_backend_name(c), "ref");
    gear_context_free(c);
    setenv("GEAR_BACKEND", "no-such-backend", 1);
    c = NULL;
    API_STATUS(gear_context_create(NULL, &c), GEAR_ERR_NO_BACKEND);
    TU_CHECK((c) == NULL);
    gear_context_params_init(&p);
    p.backend = "ref"; /* an explicit name wins over the environment */
    TU_OK(gear_context_create(&p, &c));
    ck_assert_str_eq(gear_context_backend_name(c), "ref");
    gear_context_free(c);
    unsetenv("GEAR_BACKEND");
    setenv("GEAR_DEVICE", "not-a-number", 1);
    c = NULL;
    API_FAILS(gear_context_create(NULL, &c));
    TU_CHECK((c) == NULL);
    unsetenv("GEAR_DEVICE");
    TU_OK(gear_context_create(NULL, &c));
    gear_context_free(c);
}
END_TEST

START_TEST(test_error_message_detail)
{
    /* the message names what was wrong */
    gear_config c = ck;
    c.bits = 5;
    API_STATUS(gear_config_validate(&c, D), GEAR_ERR_INVALID_ARG);
    TU_CHECK((strstr(gear_last_error_message(), "5")) != NULL);
    API_STATUS(gear_config_preset("zzz-unknown", GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_CHECK((strstr(gear_last_error_message(), "zzz-unknown")) != NULL);
    /* every status string of a failure differs from success */
    ck_assert_str_ne(gear_status_string(GEAR_ERR_SHAPE), gear_status_string(GEAR_OK));
}
END_TEST

static Suite *api_suite(void)
{
    Suite *s = suite_create("api");
    TCase *tc = tu_tcase("misuse");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_null_context_and_config);
    tcase_add_test(tc, test_null_stream_calls);
    tcase_add_test(tc, test_null_cache_calls);
    tcase_add_test(tc, test_zero_and_huge_sizes);
    tcase_add_test(tc, test_mismatched_shapes);
    tcase_add_test(tc, test_unknown_preset);
    tcase_add_test(tc, test_invalid_knobs);
    tcase_add_test(tc, test_wrong_dtype_and_device);
    tcase_add_test(tc, test_layer_out_of_range);
    tcase_add_test(tc, test_bad_data_and_scale);
    tcase_add_test(tc, test_backends_and_env);
    tcase_add_test(tc, test_error_message_detail);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(api_suite(), 0); }
