/*
 * check_cache.c - the streaming KV cache: appending token by token gives
 * byte-identical blocks and identical attention to one prefill; blocks are
 * those gear_compress makes for the same layer; attention equals a dense
 * fp64 computation on the reconstructed cache (GQA, nq = 1 and 3, causal);
 * the fp16 preset is exact up to fp16 rounding; stats; capacity and
 * failed appends leave the cache unchanged; layers are independent.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"

static gear_context *ctx;

static void setup(void) { ctx = tu_ctx("ref"); }
static void teardown(void)
{
    gear_context_free(ctx);
    ctx = NULL;
}

static void small_cfgs(const char *preset, unsigned block, gear_config *ck, gear_config *cv)
{
    if (preset) {
        *ck = tu_preset(preset, GEAR_KEY);
        *cv = tu_preset(preset, GEAR_VALUE);
    } else { /* every section: outliers (k = 1 per 8), rank 2 */
        *ck = tu_preset("gear2", GEAR_KEY);
        *cv = tu_preset("gear2", GEAR_VALUE);
        ck->group = cv->group = 8;
        ck->outlier_ratio = cv->outlier_ratio = 0.25f;
        cv->seed = 3;
    }
    ck->block = cv->block = block;
}

static gear_cache *make_cache(const char *preset, unsigned block, unsigned layers, unsigned H,
                              unsigned d, unsigned max_tokens)
{
    gear_config ck, cv;
    small_cfgs(preset, block, &ck, &cv);
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(ctx, &ck, &cv, layers, H, d, max_tokens, &c));
    return c;
}

static int same_bytes(const gear_cache *a, const gear_cache *b)
{
    size_t la, lb;
    uint8_t *sa = tu_cache_save(a, &la), *sb = tu_cache_save(b, &lb);
    int same = la == lb && !memcmp(sa, sb, la);
    free(sa);
    free(sb);
    return same;
}

/* ----------------------------------------------------------- streaming */

static void streaming_case(const char *preset, unsigned block, int H, int T, int d, int hq)
{
    float *k = tu_synth(11, GEAR_KEY, H, T, d), *v = tu_synth(12, GEAR_VALUE, H, T, d);
    gear_cache *a = make_cache(preset, block, 1, (unsigned)H, (unsigned)d, (unsigned)T);
    gear_cache *b = make_cache(preset, block, 1, (unsigned)H, (unsigned)d, (unsigned)T);
    gear_cache *c = make_cache(preset, block, 1, (unsigned)H, (unsigned)d, (unsigned)T);
    TU_OK(tu_cache_append(a, 0, k, v, H, T, d));
    for (int t = 0; t < T; t++) TU_OK(tu_cache_append_rows(b, 0, k, v, H, T, d, t, 1));
    uint64_t s = 5;
    for (int t = 0; t < T;) {
        int nt = 1 + (int)(tu_rand_u64(&s) % 40);
        if (nt > T - t) nt = T - t;
        TU_OK(tu_cache_append_rows(c, 0, k, v, H, T, d, t, nt));
        t += nt;
    }
    TU_ASSERT(same_bytes(a, b), "%s: token-by-token blocks differ from prefill", preset ? preset : "small");
    TU_ASSERT(same_bytes(a, c), "%s: chunked blocks differ from prefill", preset ? preset : "small");
    float *ka, *va, *kb, *vb;
    tu_cache_decompress(a, 0, H, T, d, &ka, &va);
    tu_cache_decompress(b, 0, H, T, d, &kb, &vb);
    TU_EQ(tu_count_diff_bits(ka, kb, (size_t)H * T * d), 0);
    TU_EQ(tu_count_diff_bits(va, vb, (size_t)H * T * d), 0);
    for (int nq = 1; nq <= 3; nq += 2) {
        size_t qn = (size_t)hq * nq * d;
        float *q = tu_alloc_f(qn), *oa = tu_alloc_f(qn), *ob = tu_alloc_f(qn), *oc = tu_alloc_f(qn);
        gear_synth_normal(99 + (uint64_t)nq, (int)qn, q);
        float scale = 1.0f / sqrtf((float)d);
        TU_OK(tu_cache_attention(a, 0, q, hq, nq, d, scale, oa));
        TU_OK(tu_cache_attention(b, 0, q, hq, nq, d, scale, ob));
        TU_OK(tu_cache_attention(c, 0, q, hq, nq, d, scale, oc));
        TU_EQ(tu_count_diff_bits(oa, ob, qn), 0);
        TU_EQ(tu_count_diff_bits(oa, oc, qn), 0);
        free(q);
        free(oa);
        free(ob);
        free(oc);
    }
    free(ka);
    free(va);
    free(kb);
    free(vb);
    gear_cache_free(a);
    gear_cache_free(b);
    gear_cache_free(c);
    free(k);
    free(v);
}

START_TEST(test_streaming_equivalence_small)
{
    streaming_case(NULL, 16, 2, 16 * 4 + 7, 16, 4);
}
END_TEST

START_TEST(test_streaming_equivalence_presets)
{
    streaming_case("gear2", 64, 2, 64 * 2 + 21, 64, 4);
    streaming_case("kivi2", 64, 1, 64 + 63, 32, 3);
    streaming_case("gear4", 32, 3, 32 * 3, 32, 3);
    streaming_case("fp16", 16, 2, 16 * 2 + 1, 16, 2);
}
END_TEST

START_TEST(test_blocks_match_stream)
{
    /* the cache compresses block b of KV head h in layer l exactly as
     * gear_compress does block b of head h with layer l */
    const int H = 2, T = 16 * 3 + 5, d = 16;
    float *k = tu_synth(21, GEAR_KEY, H, T, d), *v = tu_synth(22, GEAR_VALUE, H, T, d);
    gear_config ck, cv;
    small_cfgs(NULL, 16, &ck, &cv);
    gear_cache *c = make_cache(NULL, 16, 3, (unsigned)H, (unsigned)d, 1000);
    for (unsigned layer = 0; layer < 3; layer += 2) {
        if (layer == 0) TU_OK(tu_cache_append(c, layer, k, v, H, T, d));
        else
            for (int t = 0; t < T; t += 5) TU_OK(tu_cache_append_rows(c, layer, k, v, H, T, d, t, t + 5 <= T ? 5 : T - t));
        float *kc, *vc;
        tu_cache_decompress(c, layer, H, T, d, &kc, &vc);
        size_t lk, lv;
        uint8_t *sk = tu_compress(ctx, &ck, k, H, T, d, layer, &lk), *sv = tu_compress(ctx, &cv, v, H, T, d, layer, &lv);
        float *ks = tu_decompress(ctx, sk, lk, H, T, d), *vs = tu_decompress(ctx, sv, lv, H, T, d);
        TU_ASSERT(tu_count_diff_bits(kc, ks, (size_t)H * T * d) == 0, "layer %u keys differ", layer);
        TU_ASSERT(tu_count_diff_bits(vc, vs, (size_t)H * T * d) == 0, "layer %u values differ", layer);
        /* and both equal the spec's reconstruction */
        float *want = tu_alloc_f((size_t)H * T * d);
        tu_gear_tensor(k, H, T, d, &ck, layer, want);
        TU_CHECK(tu_rel_err(kc, want, (size_t)H * T * d) < 1e-6);
        free(want);
        free(kc);
        free(vc);
        free(ks);
        free(vs);
        free(sk);
        free(sv);
    }
    gear_cache_free(c);
    free(k);
    free(v);
}
END_TEST

/* ----------------------------------------------------------- attention */

static void attention_case(const char *preset, unsigned block, int hkv, int hq, int T, int d,
                           int nq)
{
    float *k = tu_synth(31 + (uint64_t)T, GEAR_KEY, hkv, T, d);
    float *v = tu_synth(32 + (uint64_t)T, GEAR_VALUE, hkv, T, d);
    gear_cache *c = make_cache(preset, block, 2, (unsigned)hkv, (unsigned)d, 4096);
    TU_OK(tu_cache_append(c, 1, k, v, hkv, T, d));
    float *kr, *vr;
    tu_cache_decompress(c, 1, hkv, T, d, &kr, &vr);
    size_t qn = (size_t)hq * nq * d;
    float *q = tu_alloc_f(qn), *out = tu_alloc_f(qn);
    gear_synth_normal(7 + (uint64_t)nq, (int)qn, q);
    for (size_t i = 0; i < qn; i++) q[i] *= 2.0f; /* peaky softmax */
    double *want = malloc(sizeof(double) * qn), *got = malloc(sizeof(double) * qn);
    TU_CHECK(want && got);
    float scale = 1.0f / sqrtf((float)d);
    TU_OK(tu_cache_attention(c, 1, q, hq, nq, d, scale, out));
    tu_attention_dense(q, hq, nq, kr, vr, hkv, T, d, scale, want);
    for (size_t i = 0; i < qn; i++) got[i] = out[i];
    double e = tu_rel_err_d(got, want, qn);
    TU_ASSERT(e < 1e-5, "%s hkv %d hq %d T %d nq %d: attention differs from dense by %g",
                  preset ? preset : "small", hkv, hq, T, nq, e);
    /* the fp16 preset is attention over (nearly) the original KV */
    tu_attention_dense(q, hq, nq, k, v, hkv, T, d, scale, want);
    double e_orig = tu_rel_err_d(got, want, qn);
    TU_CHECK(isfinite(e_orig));
    if (preset && !strcmp(preset, "fp16")) TU_ASSERT(e_orig < 1e-2, "fp16 vs original %g", e_orig);
    free(want);
    free(got);
    free(q);
    free(out);
    free(kr);
    free(vr);
    gear_cache_free(c);
    free(k);
    free(v);
}

START_TEST(test_attention_vs_dense)
{
    static const char *presets[] = {"gear2", "kivi2", "gearl4", "kcvt4", "fp16", NULL};
    for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++)
        for (int nq = 1; nq <= 3; nq += 2) {
            attention_case(presets[p], 32, 2, 4, 32 * 3 + 13, 32, nq); /* GQA 2 */
            attention_case(presets[p], 32, 2, 6, 32 * 2, 32, nq);      /* GQA 3, no buffer */
        }
    attention_case("gear2", 64, 1, 1, 64 + 1, 64, 1);
    attention_case(NULL, 16, 3, 3, 10, 16, 3);    /* buffer only */
    attention_case(NULL, 16, 2, 8, 40, 16, 40);   /* every token a query: causal prefill */
}
END_TEST

START_TEST(test_attention_fp16_preset_exact)
{
    const int hkv = 2, hq = 4, d = 32;
    for (int tail = 0; tail <= 9; tail += 9) {
        int T = 16 * 3 + tail;
        float *k = tu_alloc_f((size_t)hkv * T * d), *v = tu_alloc_f((size_t)hkv * T * d);
        tu_fill_normal(41, k, (size_t)hkv * T * d, 1.5f);
        tu_fill_normal(42, v, (size_t)hkv * T * d, 1.0f);
        gear_cache *c = make_cache("fp16", 16, 1, hkv, d, 256);
        TU_OK(tu_cache_append(c, 0, k, v, hkv, T, d));
        /* the expected cache: fp16 in the blocks, the buffer in full precision */
        float *kh = tu_alloc_f((size_t)hkv * T * d), *vh = tu_alloc_f((size_t)hkv * T * d);
        for (int h = 0; h < hkv; h++)
            for (int t = 0; t < T; t++)
                for (int ch = 0; ch < d; ch++) {
                    size_t i = ((size_t)h * T + t) * d + ch;
                    kh[i] = t < 48 ? tu_h(k[i]) : k[i];
                    vh[i] = t < 48 ? tu_h(v[i]) : v[i];
                }
        float *kr, *vr;
        tu_cache_decompress(c, 0, hkv, T, d, &kr, &vr);
        TU_EQ(tu_count_diff_bits(kr, kh, (size_t)hkv * T * d), 0);
        TU_EQ(tu_count_diff_bits(vr, vh, (size_t)hkv * T * d), 0);
        for (int nq = 1; nq <= 3; nq += 2) {
            size_t qn = (size_t)hq * nq * d;
            float *q = tu_alloc_f(qn), *out = tu_alloc_f(qn);
            double *want = malloc(sizeof(double) * qn), *got = malloc(sizeof(double) * qn);
            TU_CHECK(want && got);
            gear_synth_normal(43, (int)qn, q);
            TU_OK(tu_cache_attention(c, 0, q, hq, nq, d, 0.2f, out));
            tu_attention_dense(q, hq, nq, kh, vh, hkv, T, d, 0.2f, want);
            for (size_t i = 0; i < qn; i++) got[i] = out[i];
            TU_ASSERT(tu_rel_err_d(got, want, qn) < 1e-5, "fp16 preset: %g", tu_rel_err_d(got, want, qn));
            free(q);
            free(out);
            free(want);
            free(got);
        }
        free(kr);
        free(vr);
        free(kh);
        free(vh);
        gear_cache_free(c);
        free(k);
        free(v);
    }
}
END_TEST

START_TEST(test_attention_causal_prefix)
{
    /* query i of nq = 3 equals a single query against the cache cut after
     * position T-3+i (cuts stay inside the buffer, so the blocks are equal) */
    const int H = 2, hq = 4, d = 16, T = 16 * 2 + 6;
    float *k = tu_synth(51, GEAR_KEY, H, T, d), *v = tu_synth(52, GEAR_VALUE, H, T, d);
    gear_cache *full = make_cache(NULL, 16, 1, H, d, 100);
    TU_OK(tu_cache_append(full, 0, k, v, H, T, d));
    size_t qn = (size_t)hq * 3 * d;
    float *q = tu_alloc_f(qn), *out = tu_alloc_f(qn);
    gear_synth_normal(53, (int)qn, q);
    TU_OK(tu_cache_attention(full, 0, q, hq, 3, d, 0.25f, out));
    for (int i = 0; i < 3; i++) {
        gear_cache *pre = make_cache(NULL, 16, 1, H, d, 100);
        TU_OK(tu_cache_append_rows(pre, 0, k, v, H, T, d, 0, T - 2 + i));
        float *q1 = tu_alloc_f((size_t)hq * d), *o1 = tu_alloc_f((size_t)hq * d);
        for (int h = 0; h < hq; h++) memcpy(q1 + (size_t)h * d, q + ((size_t)h * 3 + i) * d, sizeof(float) * d);
        TU_OK(tu_cache_attention(pre, 0, q1, hq, 1, d, 0.25f, o1));
        for (int h = 0; h < hq; h++)
            for (int c = 0; c < d; c++) {
                float a = out[((size_t)h * 3 + i) * d + c], b = o1[(size_t)h * d + c];
                TU_ASSERT(fabsf(a - b) <= 1e-6f * (1.0f + fabsf(b)), "query %d head %d ch %d: %g vs %g",
                              i, h, c, (double)a, (double)b);
            }
        free(q1);
        free(o1);
        gear_cache_free(pre);
    }
    /* query heads sharing a KV head with the same query agree; other KV heads differ */
    for (int c = 0; c < d; c++) {
        for (int i = 0; i < 3; i++) {
            q[((size_t)1 * 3 + i) * d + c] = q[((size_t)0 * 3 + i) * d + c];
            q[((size_t)2 * 3 + i) * d + c] = q[((size_t)0 * 3 + i) * d + c];
        }
    }
    TU_OK(tu_cache_attention(full, 0, q, hq, 3, d, 0.25f, out));
    TU_CHECK(!memcmp(out, out + 3 * d, sizeof(float) * 3 * d));        /* heads 0, 1 -> kv 0 */
    TU_CHECK(memcmp(out, out + 2 * 3 * d, sizeof(float) * 3 * d) != 0); /* head 2 -> kv 1 */
    free(q);
    free(out);
    gear_cache_free(full);
    free(k);
    free(v);
}
END_TEST

START_TEST(test_dtypes_in_and_out)
{
    const int H = 2, T = 16 + 5, d = 16, hq = 2, nq = 2;
    const size_t N = (size_t)H * T * d, qn = (size_t)hq * nq * d;
    float *k = tu_synth(61, GEAR_KEY, H, T, d), *v = tu_synth(62, GEAR_VALUE, H, T, d);
    uint16_t *kh = malloc(2 * N), *vb = malloc(2 * N);
    float *kf = tu_alloc_f(N), *vf = tu_alloc_f(N);
    TU_CHECK(kh && vb);
    for (size_t i = 0; i < N; i++) {
        kh[i] = gear_float_to_half(k[i]);
        vb[i] = gear_float_to_bf16(v[i]);
        kf[i] = gear_half_to_float(kh[i]);
        vf[i] = gear_bf16_to_float(vb[i]);
    }
    /* f16 keys and bf16 values are the same as their f32 values */
    gear_cache *a = make_cache(NULL, 16, 1, H, d, 64), *b = make_cache(NULL, 16, 1, H, d, 64);
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, kh, GEAR_F16, 3, H, T, d, 0));
    TU_OK(gear_tensor_init(&tv, vb, GEAR_BF16, 3, H, T, d, 0));
    TU_OK(gear_cache_append(a, 0, &tk, &tv));
    TU_OK(tu_cache_append(b, 0, kf, vf, H, T, d));
    TU_CHECK(same_bytes(a, b));
    /* decompress into f16 / bf16 views, keys only */
    float *kr, *vr;
    tu_cache_decompress(a, 0, H, T, d, &kr, &vr);
    uint16_t *o16 = malloc(2 * N);
    TU_CHECK((o16) != NULL);
    for (int dt = GEAR_F16; dt <= GEAR_BF16; dt++) {
        gear_tensor to;
        TU_OK(gear_tensor_init(&to, o16, (gear_dtype)dt, 3, H, T, d, 0));
        TU_OK(gear_cache_decompress(a, 0, &to, NULL));
        for (size_t i = 0; i < N; i++)
            TU_EQ(o16[i], dt == GEAR_F16 ? gear_float_to_half(kr[i]) : gear_float_to_bf16(kr[i]));
        TU_OK(gear_cache_decompress(a, 0, NULL, &to));
        for (size_t i = 0; i < N; i++)
            TU_EQ(o16[i], dt == GEAR_F16 ? gear_float_to_half(vr[i]) : gear_float_to_bf16(vr[i]));
    }
    /* attention: f16 query, f16 / bf16 output */
    float *q = tu_alloc_f(qn), *out = tu_alloc_f(qn);
    uint16_t q16[2 * 2 * 16], out16[2 * 2 * 16];
    gear_synth_normal(63, (int)qn, q);
    for (size_t i = 0; i < qn; i++) {
        q16[i] = gear_float_to_half(q[i]);
        q[i] = gear_half_to_float(q16[i]);
    }
    TU_OK(tu_cache_attention(a, 0, q, hq, nq, d, 0.25f, out));
    for (int dt = GEAR_F16; dt <= GEAR_BF16; dt++) {
        gear_tensor tq, to;
        TU_OK(gear_tensor_init(&tq, q16, GEAR_F16, 3, hq, nq, d, 0));
        TU_OK(gear_tensor_init(&to, out16, (gear_dtype)dt, 3, hq, nq, d, 0));
        TU_OK(gear_cache_attention(a, 0, &tq, 0.25f, &to));
        for (size_t i = 0; i < qn; i++)
            TU_EQ(out16[i], dt == GEAR_F16 ? gear_float_to_half(out[i]) : gear_float_to_bf16(out[i]));
    }
    /* one KV head: 2-D [T, d] views */
    gear_cache *one = make_cache(NULL, 16, 1, 1, d, 64), *one3 = make_cache(NULL, 16, 1, 1, d, 64);
    TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 2, T, d, 0, 0));
    TU_OK(gear_tensor_init(&tv, v, GEAR_F32, 2, T, d, 0, 0));
    TU_OK(gear_cache_append(one, 0, &tk, &tv));
    TU_OK(tu_cache_append(one3, 0, k, v, 1, T, d));
    TU_CHECK(same_bytes(one, one3));
    gear_cache_free(one);
    gear_cache_free(one3);
    free(q);
    free(out);
    free(o16);
    free(kr);
    free(vr);
    free(kh);
    free(vb);
    free(kf);
    free(vf);
    gear_cache_free(a);
    gear_cache_free(b);
    free(k);
    free(v);
}
END_TEST

START_TEST(test_strided_query_and_output)
{
    /* q and out as token-major [nq][hq][d] buffers viewed as [hq, nq, d];
     * K/V decompressed into a view with a channel stride of 2 */
    const int H = 2, hq = 4, nq = 3, d = 16, T = 16 + 11;
    float *k = tu_synth(65, GEAR_KEY, H, T, d), *v = tu_synth(66, GEAR_VALUE, H, T, d);
    gear_cache *c = make_cache(NULL, 16, 1, H, d, 64);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
    size_t qn = (size_t)hq * nq * d;
    float *q = tu_alloc_f(qn), *out = tu_alloc_f(qn), *qt = tu_alloc_f(qn), *ot = tu_alloc_f(qn);
    gear_synth_normal(67, (int)qn, q);
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < nq; i++)
            memcpy(qt + ((size_t)i * hq + h) * d, q + ((size_t)h * nq + i) * d, sizeof(float) * d);
    TU_OK(tu_cache_attention(c, 0, q, hq, nq, d, 0.25f, out));
    gear_tensor tq, to;
    TU_OK(gear_tensor_init(&tq, qt, GEAR_F32, 3, hq, nq, d, 0));
    TU_OK(gear_tensor_init(&to, ot, GEAR_F32, 3, hq, nq, d, 0));
    tq.strides[0] = to.strides[0] = d;
    tq.strides[1] = to.strides[1] = (int64_t)hq * d;
    TU_OK(gear_cache_attention(c, 0, &tq, 0.25f, &to));
    for (int h = 0; h < hq; h++)
        for (int i = 0; i < nq; i++)
            TU_CHECK(!memcmp(ot + ((size_t)i * hq + h) * d, out + ((size_t)h * nq + i) * d, sizeof(float) * d));
    float *kr, *vr;
    tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
    size_t N = (size_t)H * T * d;
    float *il = tu_alloc_f(2 * N);
    for (size_t i = 0; i < 2 * N; i++) il[i] = 9.0f;
    gear_tensor tk;
    TU_OK(gear_tensor_init(&tk, il, GEAR_F32, 3, H, T, d, 0));
    tk.strides[0] = (int64_t)2 * T * d;
    tk.strides[1] = 2 * d;
    tk.strides[2] = 2;
    TU_OK(gear_cache_decompress(c, 0, NULL, &tk));
    for (size_t i = 0; i < N; i++) {
        TU_CHECK(!memcmp(&il[2 * i], &vr[i], 4));
        TU_CHECK(il[2 * i + 1] == 9.0f);
    }
    free(il);
    free(kr);
    free(vr);
    free(q);
    free(out);
    free(qt);
    free(ot);
    gear_cache_free(c);
    free(k);
    free(v);
}
END_TEST

/* --------------------------------------------------------------- stats */

START_TEST(test_stats)
{
    const unsigned H = 2, d = 16, n = 16;
    gear_config ck, cv;
    small_cfgs(NULL, n, &ck, &cv);
    gear_block_info ik, iv;
    TU_OK(gear_block_info_get(&ck, d, &ik));
    TU_OK(gear_block_info_get(&cv, d, &iv));
    gear_cache *c = make_cache(NULL, n, 3, H, d, 500);
    gear_cache_stats s;
    memset(&s, 0xFF, sizeof s);
    TU_OK(gear_cache_stats_get(c, &s));
    TU_CHECK(s.tokens == 0 && s.blocks == 0 && s.compressed_bytes == 0 && s.buffer_bytes == 0);
    TU_CHECK(s.bpe == 0.0 && s.fp16_bytes == 0 && s.compressed_entries == 0 && s.buffer_entries == 0);
    float *k = tu_synth(71, GEAR_KEY, H, 37, d), *v = tu_synth(72, GEAR_VALUE, H, 37, d);
    TU_OK(tu_cache_append(c, 0, k, v, H, 37, d)); /* 2 blocks + 5 */
    TU_OK(tu_cache_append(c, 2, k, v, H, 16, d)); /* 1 block */
    TU_OK(gear_cache_stats_get(c, &s));
    TU_EQ(s.tokens, 53);
    TU_EQ(s.blocks, 2 * H * 3);
    TU_EQ(s.compressed_bytes, H * 3 * (ik.bytes + iv.bytes));
    TU_EQ(s.compressed_entries, 2 * H * 3 * n * d);
    TU_EQ(s.buffer_entries, 2 * H * 5 * d);
    TU_EQ(s.buffer_bytes, 4 * 2 * H * 5 * d);
    TU_EQ(s.fp16_bytes, 2 * 2 * 53 * H * d);
    TU_CHECK(fabs(s.bpe - (ik.bpe + iv.bpe) / 2.0) < 1e-12);
    TU_CHECK(s.bpe == 8.0 * (double)s.compressed_bytes / (double)s.compressed_entries);
    unsigned t0, t1, t2;
    TU_OK(gear_cache_tokens(c, 0, &t0));
    TU_OK(gear_cache_tokens(c, 1, &t1));
    TU_OK(gear_cache_tokens(c, 2, &t2));
    TU_CHECK(t0 == 37 && t1 == 0 && t2 == 16);
    gear_cache_free(c);
    /* one preset for both: the stats bpe is the block's bpe */
    c = make_cache("gear2", 64, 1, 1, 64, 500);
    float *k2 = tu_synth(73, GEAR_KEY, 1, 130, 64), *v2 = tu_synth(74, GEAR_VALUE, 1, 130, 64);
    TU_OK(tu_cache_append(c, 0, k2, v2, 1, 130, 64));
    TU_OK(gear_cache_stats_get(c, &s));
    gear_config g2k = tu_preset("gear2", GEAR_KEY), g2v = tu_preset("gear2", GEAR_VALUE);
    TU_OK(gear_block_info_get(&g2k, 64, &ik));
    TU_OK(gear_block_info_get(&g2v, 64, &iv));
    TU_EQ(s.blocks, 4);
    TU_CHECK(fabs(s.bpe - (ik.bpe + iv.bpe) / 2.0) < 1e-12);
    TU_EQ(s.buffer_entries, 2 * 2 * 64);
    gear_cache_free(c);
    free(k2);
    free(v2);
    free(k);
    free(v);
}
END_TEST

/* ----------------------------------------------------- errors and layers */

START_TEST(test_capacity)
{
    const int H = 2, d = 16;
    float *k = tu_synth(81, GEAR_KEY, H, 41, d), *v = tu_synth(82, GEAR_VALUE, H, 41, d);
    gear_cache *c = make_cache(NULL, 16, 2, H, d, 40);
    TU_OK(tu_cache_append_rows(c, 0, k, v, H, 41, d, 0, 30));
    size_t l0;
    uint8_t *before = tu_cache_save(c, &l0);
    TU_STATUS(tu_cache_append_rows(c, 0, k, v, H, 41, d, 30, 11), GEAR_ERR_CAPACITY);
    unsigned t;
    TU_OK(gear_cache_tokens(c, 0, &t));
    TU_EQ(t, 30);
    size_t l1;
    uint8_t *after = tu_cache_save(c, &l1);
    TU_CHECK(l0 == l1 && !memcmp(before, after, l0));
    free(after);
    /* exactly up to max_tokens works, then nothing more */
    TU_OK(tu_cache_append_rows(c, 0, k, v, H, 41, d, 30, 10));
    TU_OK(gear_cache_tokens(c, 0, &t));
    TU_EQ(t, 40);
    TU_STATUS(tu_cache_append_rows(c, 0, k, v, H, 41, d, 40, 1), GEAR_ERR_CAPACITY);
    /* the capacity is per layer */
    TU_OK(tu_cache_append_rows(c, 1, k, v, H, 41, d, 0, 40));
    TU_STATUS(tu_cache_append_rows(c, 1, k, v, H, 41, d, 0, 1), GEAR_ERR_CAPACITY);
    /* the result equals a cache filled in one go */
    gear_cache *ref = make_cache(NULL, 16, 2, H, d, 40);
    TU_OK(tu_cache_append_rows(ref, 0, k, v, H, 41, d, 0, 40));
    TU_OK(tu_cache_append_rows(ref, 1, k, v, H, 41, d, 0, 40));
    TU_CHECK(same_bytes(c, ref));
    gear_cache_free(ref);
    free(before);
    gear_cache_free(c);
    free(k);
    free(v);
}
END_TEST

START_TEST(test_failed_append_leaves_cache_unchanged)
{
    const int H = 2, d = 16, T = 30;
    float *k = tu_synth(91, GEAR_KEY, H, T, d), *v = tu_synth(92, GEAR_VALUE, H, T, d);
    gear_cache *c = make_cache(NULL, 16, 1, H, d, 100);
    TU_OK(tu_cache_append_rows(c, 0, k, v, H, T, d, 0, 12)); /* 12 buffered */
    size_t l0;
    uint8_t *before = tu_cache_save(c, &l0);
    struct { int which, h, t, ch; float val; gear_status want; } bad[] = {
        {1, 1, 2, 3, NAN, GEAR_ERR_NONFINITE},       /* in the rows completing block 0 */
        {0, 0, 0, 0, INFINITY, GEAR_ERR_NONFINITE},
        {0, 1, 17, 15, -INFINITY, GEAR_ERR_NONFINITE},
        {1, 0, 9, 2, 65520.0f, GEAR_ERR_RANGE},
        {0, 1, 3, 0, -1e6f, GEAR_ERR_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        float *kk = tu_alloc_f((size_t)H * T * d), *vv = tu_alloc_f((size_t)H * T * d);
        memcpy(kk, k, sizeof(float) * H * T * d);
        memcpy(vv, v, sizeof(float) * H * T * d);
        float *dst = bad[i].which ? vv : kk;
        dst[((size_t)bad[i].h * T + 12 + bad[i].t) * d + bad[i].ch] = bad[i].val;
        TU_STATUS(tu_cache_append_rows(c, 0, kk, vv, H, T, d, 12, 18), bad[i].want);
        size_t l1;
        uint8_t *after = tu_cache_save(c, &l1);
        TU_ASSERT(l0 == l1 && !memcmp(before, after, l0), "case %zu changed the cache", i);
        free(after);
        free(kk);
        free(vv);
    }
    /* 65504 itself is fine */
    float *kk = tu_alloc_f((size_t)H * T * d);
    memcpy(kk, k, sizeof(float) * H * T * d);
    kk[(size_t)(12 + 1) * d] = 65504.0f;
    kk[(size_t)(12 + 2) * d] = -65504.0f;
    /* a shape mismatch does not change it either */
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, 5, d, 0));
    TU_OK(gear_tensor_init(&tv, v, GEAR_F32, 3, H, 6, d, 0));
    TU_STATUS(gear_cache_append(c, 0, &tk, &tv), GEAR_ERR_SHAPE);
    size_t l1;
    uint8_t *after = tu_cache_save(c, &l1);
    TU_CHECK(l0 == l1 && !memcmp(before, after, l0));
    free(after);
    TU_OK(tu_cache_append_rows(c, 0, kk, v, H, T, d, 12, 18));
    unsigned t;
    TU_OK(gear_cache_tokens(c, 0, &t));
    TU_EQ(t, 30);
    free(kk);
    free(before);
    gear_cache_free(c);
    free(k);
    free(v);
}
END_TEST

/* fp32 appends on ref, which has no backend slot for reading rows in
 * place, so the core stages every layout: packed, token-major and with
 * channels 2 apart (NaN between them, never read) give the same bytes, and
 * a bad value inside a whole block gets its own status and leaves the cache
 * as it was.  The cpu module's in-place path has its own test
 * (check_xbackend: test_rows_cache_append). */
START_TEST(test_fp32_views_same_bytes)
{
    const int H = 2, d = 16, T = 16 * 3 + 5;
    const size_t N = (size_t)H * T * d;
    float *k = tu_synth(95, GEAR_KEY, H, T, d), *v = tu_synth(96, GEAR_VALUE, H, T, d);
    float *kt = tu_alloc_f(N), *vt = tu_alloc_f(N);         /* [T][H][d] */
    float *ks = tu_alloc_f(2 * N), *vs = tu_alloc_f(2 * N); /* channels 2 apart */
    for (int h = 0; h < H; h++)
        for (int t = 0; t < T; t++)
            for (int c = 0; c < d; c++) {
                size_t i = ((size_t)h * T + t) * d + c, j = ((size_t)t * H + h) * d + c;
                kt[j] = k[i];
                vt[j] = v[i];
                ks[2 * i] = k[i];
                vs[2 * i] = v[i];
                ks[2 * i + 1] = vs[2 * i + 1] = NAN;
            }
    gear_cache *a = make_cache(NULL, 16, 1, H, d, 64), *b = make_cache(NULL, 16, 1, H, d, 64);
    gear_cache *s2 = make_cache(NULL, 16, 1, H, d, 64);
    TU_OK(tu_cache_append(a, 0, k, v, H, T, d));
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, kt, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_tensor_init(&tv, vt, GEAR_F32, 3, H, T, d, 0));
    tk.strides[0] = tv.strides[0] = d;
    tk.strides[1] = tv.strides[1] = (int64_t)H * d;
    TU_OK(gear_cache_append(b, 0, &tk, &tv));
    TU_OK(gear_tensor_init(&tk, ks, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_tensor_init(&tv, vs, GEAR_F32, 3, H, T, d, 0));
    tk.strides[0] = tv.strides[0] = 2 * (int64_t)T * d;
    tk.strides[1] = tv.strides[1] = 2 * (int64_t)d;
    tk.strides[2] = tv.strides[2] = 2;
    TU_OK(gear_cache_append(s2, 0, &tk, &tv));
    TU_CHECK(same_bytes(a, s2));
    TU_CHECK(same_bytes(b, s2));
    struct { int which, h, t, ch; float val; gear_status want; } bad[] = {
        {0, 1, 20, 3, NAN, GEAR_ERR_NONFINITE},     /* block 1, keys */
        {1, 0, 47, 15, INFINITY, GEAR_ERR_NONFINITE}, /* block 2, values */
        {1, 1, 0, 0, 65520.0f, GEAR_ERR_RANGE},      /* block 0 */
        {0, 0, 33, 7, -1e6f, GEAR_ERR_RANGE},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gear_cache *c = make_cache(NULL, 16, 1, H, d, 64);
        size_t l0, l1;
        uint8_t *before = tu_cache_save(c, &l0);
        float *x = bad[i].which ? v : k, *at = x + ((size_t)bad[i].h * T + bad[i].t) * d + bad[i].ch, keep = *at;
        *at = bad[i].val;
        TU_STATUS(tu_cache_append(c, 0, k, v, H, T, d), bad[i].want);
        *at = keep;
        uint8_t *after = tu_cache_save(c, &l1);
        TU_ASSERT(l0 == l1 && !memcmp(before, after, l0), "case %zu changed the cache", i);
        TU_OK(tu_cache_append(c, 0, k, v, H, T, d)); /* and it still takes good input */
        TU_CHECK(same_bytes(a, c));
        free(before);
        free(after);
        gear_cache_free(c);
    }
    gear_cache_free(a);
    gear_cache_free(b);
    gear_cache_free(s2);
    free(kt);
    free(vt);
    free(ks);
    free(vs);
    free(k);
    free(v);
}
END_TEST

/* A staged append long enough for several of the core's staging batches
 * (8 heads x 64 x 128: four blocks a batch; on ref every input is staged),
 * after buffered rows and with rows left over, from bf16 whose channels
 * are 2 apart: the same bytes as the same values in fp32 and in packed
 * bf16; and a bad value in the last batch keeps its status and the cache
 * as it was. */
START_TEST(test_staged_batches)
{
    const int H = 8, d = 128, n = 64, T = 5 + 10 * n + 7;
    const size_t N = (size_t)H * T * d;
    float *k = tu_synth(97, GEAR_KEY, H, T, d), *v = tu_synth(98, GEAR_VALUE, H, T, d);
    uint16_t *kb = malloc(4 * N), *vb = malloc(4 * N), *kp = malloc(2 * N), *vp = malloc(2 * N);
    TU_CHECK(kb && vb && kp && vp);
    for (size_t i = 0; i < N; i++) { /* values that bf16 holds exactly */
        kp[i] = kb[2 * i] = gear_float_to_bf16(k[i]);
        vp[i] = vb[2 * i] = gear_float_to_bf16(v[i]);
        kb[2 * i + 1] = vb[2 * i + 1] = 0x7fc0; /* NaN between the channels */
        k[i] = gear_bf16_to_float(kp[i]);
        v[i] = gear_bf16_to_float(vp[i]);
    }
    gear_cache *a = make_cache(NULL, n, 1, H, d, 1024), *b = make_cache(NULL, n, 1, H, d, 1024);
    gear_cache *p = make_cache(NULL, n, 1, H, d, 1024);
    TU_OK(tu_cache_append_rows(a, 0, k, v, H, T, d, 0, 5));
    TU_OK(tu_cache_append_rows(b, 0, k, v, H, T, d, 0, 5));
    TU_OK(tu_cache_append_rows(p, 0, k, v, H, T, d, 0, 5));
    size_t l0, l1;
    uint8_t *before = tu_cache_save(a, &l0);
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, kb + (size_t)2 * 5 * d, GEAR_BF16, 3, H, T - 5, d, 0));
    TU_OK(gear_tensor_init(&tv, vb + (size_t)2 * 5 * d, GEAR_BF16, 3, H, T - 5, d, 0));
    tk.strides[0] = tv.strides[0] = 2 * (int64_t)T * d;
    tk.strides[1] = tv.strides[1] = 2 * (int64_t)d;
    tk.strides[2] = tv.strides[2] = 2;
    size_t bad = 2 * (((size_t)6 * T + 5 + 9 * n + 3) * d + 100);
    uint16_t keep = vb[bad];
    vb[bad] = 0x7fc0; /* NaN in block 9 */
    TU_STATUS(gear_cache_append(a, 0, &tk, &tv), GEAR_ERR_NONFINITE);
    uint8_t *after = tu_cache_save(a, &l1);
    TU_CHECK(l0 == l1 && !memcmp(before, after, l0));
    vb[bad] = keep;
    TU_OK(gear_cache_append(a, 0, &tk, &tv));
    TU_OK(tu_cache_append_rows(b, 0, k, v, H, T, d, 5, T - 5));
    TU_CHECK(same_bytes(a, b));
    TU_OK(gear_tensor_init(&tk, kp + (size_t)5 * d, GEAR_BF16, 3, H, T - 5, d, 0));
    TU_OK(gear_tensor_init(&tv, vp + (size_t)5 * d, GEAR_BF16, 3, H, T - 5, d, 0));
    tk.strides[0] = tv.strides[0] = (int64_t)T * d;
    TU_OK(gear_cache_append(p, 0, &tk, &tv));
    TU_CHECK(same_bytes(a, p));
    unsigned t;
    TU_OK(gear_cache_tokens(a, 0, &t));
    TU_EQ(t, (unsigned)T);
    free(before);
    free(after);
    gear_cache_free(a);
    gear_cache_free(b);
    gear_cache_free(p);
    free(kb);
    free(vb);
    free(kp);
    free(vp);
    free(k);
    free(v);
}
END_TEST

START_TEST(test_layers_independent)
{
    const int H = 2, d = 16;
    float *k = tu_synth(101, GEAR_KEY, H, 40, d), *v = tu_synth(102, GEAR_VALUE, H, 40, d);
    gear_cache *c = make_cache(NULL, 16, 3, H, d, 200);
    TU_OK(tu_cache_append(c, 0, k, v, H, 40, d));
    float *k0, *v0, *k1, *v1;
    tu_cache_decompress(c, 0, H, 40, d, &k0, &v0);
    /* layer 1 empty: no tokens, attention and decompress fail cleanly */
    unsigned t;
    TU_OK(gear_cache_tokens(c, 1, &t));
    TU_EQ(t, 0);
    float q[4 * 16], o[4 * 16];
    gear_synth_normal(103, 4 * 16, q);
    TU_FAILS(tu_cache_attention(c, 1, q, 4, 1, d, 0.25f, o));
    gear_tensor tk;
    float dummy[2 * 16];
    TU_OK(gear_tensor_init(&tk, dummy, GEAR_F32, 3, H, 1, d, 0));
    TU_FAILS(gear_cache_decompress(c, 1, &tk, NULL));
    /* appending to layer 2 leaves layer 0 exactly as it was */
    TU_OK(tu_cache_append(c, 2, v, k, H, 40, d));
    tu_cache_decompress(c, 0, H, 40, d, &k1, &v1);
    TU_EQ(tu_count_diff_bits(k0, k1, (size_t)H * 40 * d), 0);
    TU_EQ(tu_count_diff_bits(v0, v1, (size_t)H * 40 * d), 0);
    free(k1);
    free(v1);
    /* layer 2 holds what was appended to it (K and V swapped) */
    tu_cache_decompress(c, 2, H, 40, d, &k1, &v1);
    TU_CHECK(tu_rel_err(k1, v, (size_t)H * 40 * d) < 0.5);
    TU_CHECK(tu_rel_err(v1, k, (size_t)H * 40 * d) < 0.5);
    TU_CHECK(tu_rel_err(k1, k0, (size_t)H * 40 * d) > 0.5);
    free(k1);
    free(v1);
    /* the layer is mixed into the start matrix: the same data in another
     * layer quantizes identically but gets other low-rank factors */
    gear_cache *s2 = make_cache(NULL, 16, 2, H, d, 200);
    TU_OK(tu_cache_append(s2, 0, k, v, H, 40, d));
    TU_OK(tu_cache_append(s2, 1, k, v, H, 40, d));
    float *ka, *va, *kb, *vb;
    tu_cache_decompress(s2, 0, H, 40, d, &ka, &va);
    tu_cache_decompress(s2, 1, H, 40, d, &kb, &vb);
    TU_EQ(tu_count_diff_bits(ka, k0, (size_t)H * 40 * d), 0);
    ck_assert_uint_gt(tu_count_diff_bits(ka, kb, (size_t)H * 32 * d), 0);
    double ea = tu_rel_err(ka, k, (size_t)H * 40 * d), eb = tu_rel_err(kb, k, (size_t)H * 40 * d);
    TU_ASSERT(fabs(ea - eb) < 0.2 * ea, "layer 0 error %g, layer 1 %g", ea, eb);
    /* the buffered tokens are exact in both */
    for (int h = 0; h < H; h++)
        for (int i = 32 * d; i < 40 * d; i++) {
            TU_CHECK(ka[(size_t)h * 40 * d + i] == k[(size_t)h * 40 * d + i]);
            TU_CHECK(kb[(size_t)h * 40 * d + i] == k[(size_t)h * 40 * d + i]);
        }
    free(ka);
    free(va);
    free(kb);
    free(vb);
    gear_cache_free(s2);
    /* without a low-rank part the layers agree exactly */
    gear_cache *s3 = make_cache("kivi2", 16, 2, H, d, 200);
    TU_OK(tu_cache_append(s3, 0, k, v, H, 40, d));
    TU_OK(tu_cache_append(s3, 1, k, v, H, 40, d));
    tu_cache_decompress(s3, 0, H, 40, d, &ka, &va);
    tu_cache_decompress(s3, 1, H, 40, d, &kb, &vb);
    TU_EQ(tu_count_diff_bits(ka, kb, (size_t)H * 40 * d), 0);
    TU_EQ(tu_count_diff_bits(va, vb, (size_t)H * 40 * d), 0);
    free(ka);
    free(va);
    free(kb);
    free(vb);
    gear_cache_free(s3);
    free(k0);
    free(v0);
    gear_cache_free(c);
    free(k);
    free(v);
}
END_TEST

START_TEST(test_multi_layer_attention)
{
    const int L = 4, H = 2, hq = 4, d = 16;
    gear_cache *c = make_cache(NULL, 16, L, H, d, 300);
    int Ts[4] = {5, 16, 33, 70};
    for (int l = 0; l < L; l++) {
        float *k = tu_synth(200 + (uint64_t)l, GEAR_KEY, H, Ts[l], d);
        float *v = tu_synth(300 + (uint64_t)l, GEAR_VALUE, H, Ts[l], d);
        TU_OK(tu_cache_append(c, (unsigned)(L - 1 - l), k, v, H, Ts[l], d));
        free(k);
        free(v);
    }
    for (int l = 0; l < L; l++) {
        int T = Ts[L - 1 - l];
        unsigned t;
        TU_OK(gear_cache_tokens(c, (unsigned)l, &t));
        TU_EQ((int)t, T);
        float *kr, *vr;
        tu_cache_decompress(c, (unsigned)l, H, T, d, &kr, &vr);
        size_t qn = (size_t)hq * 2 * d;
        float *q = tu_alloc_f(qn), *o = tu_alloc_f(qn);
        double *want = malloc(sizeof(double) * qn), *got = malloc(sizeof(double) * qn);
        TU_CHECK(want && got);
        gear_synth_normal(400 + (uint64_t)l, (int)qn, q);
        TU_OK(tu_cache_attention(c, (unsigned)l, q, hq, 2, d, 0.3f, o));
        tu_attention_dense(q, hq, 2, kr, vr, H, T, d, 0.3f, want);
        for (size_t i = 0; i < qn; i++) got[i] = o[i];
        TU_ASSERT(tu_rel_err_d(got, want, qn) < 1e-5, "layer %d: %g", l, tu_rel_err_d(got, want, qn));
        free(want);
        free(got);
        free(q);
        free(o);
        free(kr);
        free(vr);
    }
    gear_cache_free(c);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *tc = tu_tcase("streaming");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_streaming_equivalence_small);
    tcase_add_test(tc, test_streaming_equivalence_presets);
    tcase_add_test(tc, test_blocks_match_stream);
    suite_add_tcase(s, tc);
    tc = tu_tcase("attention");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_attention_vs_dense);
    tcase_add_test(tc, test_attention_fp16_preset_exact);
    tcase_add_test(tc, test_attention_causal_prefix);
    tcase_add_test(tc, test_dtypes_in_and_out);
    tcase_add_test(tc, test_strided_query_and_output);
    tcase_add_test(tc, test_multi_layer_attention);
    suite_add_tcase(s, tc);
    tc = tu_tcase("state");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_stats);
    tcase_add_test(tc, test_capacity);
    tcase_add_test(tc, test_failed_append_leaves_cache_unchanged);
    tcase_add_test(tc, test_fp32_views_same_bytes);
    tcase_add_test(tc, test_staged_batches);
    tcase_add_test(tc, test_layers_independent);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(cache_suite(), 0); }
