/*
 * check_calib.c - calibrated methods: Coupled Quantization (presets,
 * layout, codes = nearest centroid, LUT attention = dense attention on the
 * reconstruction, CQ as GEAR's backbone, ref vs cpu byte-identical) and
 * KV-head compression (exact at full rank, projected attention = dense
 * attention on the reconstruction, low-rank data recovered), the
 * calibration file (round trip, every byte flip and truncation rejected),
 * calibrated caches saved and loaded, and misuse.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

static gear_context *ctx;

static void setup(void) { ctx = tu_ctx("ref"); }
static void teardown(void)
{
    gear_context_free(ctx);
    ctx = NULL;
}

/* A fitted calibration of L layers x H heads x d from synthetic K/V. */
static gear_calib *make_calib(const gear_calib_params *p, unsigned L, unsigned H, unsigned d,
                              unsigned T, uint64_t seed)
{
    gear_calib *cal = NULL;
    TU_OK(gear_calib_create(p, L, H, d, &cal));
    for (unsigned l = 0; l < L; l++) {
        float *k = tu_synth(seed + 2 * l, GEAR_KEY, (int)H, (int)T, (int)d);
        float *v = tu_synth(seed + 2 * l + 1, GEAR_VALUE, (int)H, (int)T, (int)d);
        gear_tensor tk, tv;
        TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, d, 0));
        TU_OK(gear_tensor_init(&tv, v, GEAR_F32, 3, H, T, d, 0));
        TU_OK(gear_calib_add(cal, l, &tk, &tv, NULL));
        free(k);
        free(v);
    }
    TU_OK(gear_calib_fit(cal));
    return cal;
}

static gear_calib *cq_calib(const char *preset, unsigned L, unsigned H, unsigned d, unsigned T)
{
    gear_calib_params p;
    gear_calib_params_init(&p);
    TU_OK(gear_calib_params_cq(&p, preset));
    p.kmeans_iters = 8;
    return make_calib(&p, L, H, d, T, 500);
}

static gear_cache *cal_cache(gear_context *cx, const char *kp, const char *vp, const gear_calib *cal,
                             unsigned L, unsigned H, unsigned d, unsigned block)
{
    gear_config ck = tu_preset(kp, GEAR_KEY), cv = tu_preset(vp, GEAR_VALUE);
    ck.block = cv.block = block;
    gear_cache *c = NULL;
    TU_OK(gear_cache_create_calibrated(cx, &ck, &cv, cal, L, H, d, 4096, &c));
    return c;
}

/* ----------------------------------------------------------------- CQ */

START_TEST(test_cq_presets)
{
    gear_config c;
    TU_OK(gear_config_preset("cq-4c8b", GEAR_KEY, &c));
    TU_EQ(c.cq_dim, 4);
    TU_EQ(c.bits, 8);
    TU_OK(gear_config_preset("cq-3c5b", GEAR_VALUE, &c));
    TU_EQ(c.cq_dim, 3);
    TU_EQ(c.bits, 5);
    static const char *bad[] = {"cq-0c8b", "cq-4c9b", "cq-17c8b", "cq-4c8", "cq-4c8bx", "cq-c8b",
                                "cq-4c0b", "cq-04c8b", "cq-99999999999c8b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        TU_STATUS(gear_config_preset(bad[i], GEAR_KEY, &c), GEAR_ERR_UNKNOWN_PRESET);
    TU_OK(gear_config_preset("cq-3c8b", GEAR_KEY, &c));
    TU_STATUS(gear_config_validate(&c, 64), GEAR_ERR_INVALID_ARG); /* 3 does not divide 64 */
    TU_OK(gear_config_validate(&c, 96));
    /* listed presets: 4, 2 and 1 bit per channel, plus the 32-byte header */
    static const struct { const char *name; double bpe; } want[] = {
        {"cq-2c8b", 4.0}, {"cq-4c8b", 2.0}, {"cq-8c8b", 1.0}};
    for (size_t i = 0; i < 3; i++) {
        gear_block_info info;
        TU_OK(gear_config_preset(want[i].name, GEAR_VALUE, &c));
        TU_OK(gear_block_info_get(&c, 64, &info));
        TU_CHECK(fabs(info.bpe_formula - want[i].bpe) < 1e-12);
        TU_EQ(info.bytes, 32 + 64 * (64 / c.cq_dim));
    }
    /* streams carry no codebook */
    TU_OK(gear_config_preset("cq-4c8b", GEAR_KEY, &c));
    float x[64 * 64] = {0};
    gear_tensor t;
    size_t bound;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 2, 64, 64, 0, 0));
    TU_STATUS(gear_compress_bound(&c, &t, &bound), GEAR_ERR_UNSUPPORTED);
}
END_TEST

/* Every decoded group is a nearest centroid of its input (up to float
 * rounding of the distance), and the codebook error is what fit reported. */
START_TEST(test_cq_codes_are_nearest)
{
    const unsigned H = 2, d = 32, T = 320, n = 64, Tc = 512;
    /* calibrate on the first Tc tokens, evaluate on the next T */
    float *kall = tu_synth(77, GEAR_KEY, H, Tc + T, d), *vall = tu_synth(78, GEAR_VALUE, H, Tc + T, d);
    gear_calib_params p;
    gear_calib_params_init(&p);
    TU_OK(gear_calib_params_cq(&p, "cq-4c6b"));
    gear_calib *cal = NULL;
    TU_OK(gear_calib_create(&p, 1, H, d, &cal));
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, kall, GEAR_F32, 3, H, Tc, d, 0));
    TU_OK(gear_tensor_init(&tv, vall, GEAR_F32, 3, H, Tc, d, 0));
    tk.strides[0] = tv.strides[0] = (int64_t)(Tc + T) * d;
    TU_OK(gear_calib_add(cal, 0, &tk, &tv, NULL));
    TU_OK(gear_calib_fit(cal));
    gear_calib_info info;
    TU_OK(gear_calib_info_get(cal, &info));
    TU_ASSERT(info.fitted && info.cq_rel_err[0] > 0 && info.cq_rel_err[0] < 0.2,
              "calibration error %g", info.cq_rel_err[0]);
    float *k = tu_alloc_f((size_t)H * T * d), *v = tu_alloc_f((size_t)H * T * d), *kr, *vr;
    for (unsigned h = 0; h < H; h++) {
        memcpy(k + (size_t)h * T * d, kall + ((size_t)h * (Tc + T) + Tc) * d, sizeof(float) * T * d);
        memcpy(v + (size_t)h * T * d, vall + ((size_t)h * (Tc + T) + Tc) * d, sizeof(float) * T * d);
    }
    free(kall);
    free(vall);
    gear_cache *c = cal_cache(ctx, "cq-4c6b", "cq-4c6b", cal, 1, H, d, n);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
    tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
    unsigned c4 = 4;
    const float *xs[2] = {k, v}, *rs[2] = {kr, vr};
    size_t worse = 0;
    double err = 0, norm = 0;
    for (int kv = 0; kv < 2; kv++)
        for (unsigned h = 0; h < H; h++)
            for (unsigned t = 0; t < T - T % n; t++)
                for (unsigned j = 0; j < d / c4; j++) {
                    const float *x = xs[kv] + ((size_t)h * T + t) * d + j * c4;
                    const float *r = rs[kv] + ((size_t)h * T + t) * d + j * c4;
                    double dr = 0;
                    for (unsigned i = 0; i < c4; i++) dr += ((double)x[i] - r[i]) * (x[i] - r[i]);
                    /* brute force over the other tokens' decoded groups of
                     * this (head, j): none may be nearer than ours */
                    for (unsigned u = 0; u < T - T % n; u += 7) {
                        const float *o = rs[kv] + ((size_t)h * T + u) * d + j * c4;
                        double dd = 0;
                        for (unsigned i = 0; i < c4; i++) dd += ((double)x[i] - o[i]) * (x[i] - o[i]);
                        if (dd < dr * (1 - 1e-5) - 1e-12) worse++;
                    }
                    err += dr;
                    for (unsigned i = 0; i < c4; i++) norm += (double)x[i] * x[i];
                }
    TU_ASSERT(worse == 0, "%zu decoded groups are not the nearest centroid", worse);
    /* held-out tokens: somewhat worse than on the calibration tokens */
    TU_ASSERT(err / norm < 2.0 * info.cq_rel_err[0] + 0.05, "CQ relative error %g (calibration %g)",
              err / norm, info.cq_rel_err[0]);
    /* the buffered tail is exact */
    TU_CHECK(tu_max_abs_diff(kr + (T - T % n) * d, k + (T - T % n) * d, (T % n) * d) == 0.0);
    free(k); free(v); free(kr); free(vr);
    gear_cache_free(c);
    gear_calib_free(cal);
}
END_TEST

/* Attention by lookup tables equals dense attention on the reconstruction. */
START_TEST(test_cq_attention_matches_dense)
{
    const unsigned H = 2, d = 64, T = 200, hq = 6, n = 32;
    const char *combos[][2] = {{"cq-4c8b", "cq-4c8b"}, {"cq-2c8b", "kivi2"}, {"gear2", "cq-8c8b"}};
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.cq_dim[0] = 4, p.cq_bits[0] = 8, p.cq_dim[1] = 8, p.cq_bits[1] = 8;
    p.kmeans_iters = 4;
    for (size_t ci = 0; ci < 3; ci++) {
        gear_calib_params pc = p;
        gear_config ck = tu_preset(combos[ci][0], GEAR_KEY), cv = tu_preset(combos[ci][1], GEAR_VALUE);
        pc.cq_dim[0] = ck.cq_dim, pc.cq_bits[0] = ck.cq_dim ? 8 : 0;
        pc.cq_dim[1] = cv.cq_dim, pc.cq_bits[1] = cv.cq_dim ? 8 : 0;
        gear_calib *cal = make_calib(&pc, 1, H, d, 600, 900);
        gear_cache *c = cal_cache(ctx, combos[ci][0], combos[ci][1], cal, 1, H, d, n);
        float *k = tu_synth(11, GEAR_KEY, H, T, d), *v = tu_synth(12, GEAR_VALUE, H, T, d), *kr, *vr;
        TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
        tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
        for (int nq = 1; nq <= 3; nq += 2) {
            float *q = tu_alloc_f((size_t)hq * nq * d), *out = tu_alloc_f((size_t)hq * nq * d);
            tu_fill_normal(40 + nq, q, (size_t)hq * nq * d, 1.0f);
            double *want = malloc(sizeof(double) * hq * nq * d);
            TU_OK(tu_cache_attention(c, 0, q, hq, nq, d, 0.125f, out));
            tu_attention_dense(q, hq, nq, kr, vr, H, T, d, 0.125f, want);
            double e = 0, nn = 0;
            for (size_t i = 0; i < (size_t)hq * nq * d; i++)
                e += (out[i] - want[i]) * (out[i] - want[i]), nn += want[i] * want[i];
            TU_ASSERT(sqrt(e / nn) < 1e-5, "%s/%s nq %d: attention rel. error %g", combos[ci][0],
                      combos[ci][1], nq, sqrt(e / nn));
            free(q); free(out); free(want);
        }
        free(k); free(v); free(kr); free(vr);
        gear_cache_free(c);
        gear_calib_free(cal);
    }
}
END_TEST

/* CQ + S + L (GEAR on the CQ backbone) reconstructs better than CQ alone,
 * and its attention still matches the dense oracle (outlier and low-rank
 * corrections on top of the tables). */
START_TEST(test_cq_as_gear_backbone)
{
    const unsigned H = 2, d = 64, T = 256, n = 64;
    gear_calib *cal = cq_calib("cq-8c8b", 1, H, d, 600);
    float *k = tu_synth(21, GEAR_KEY, H, T, d), *v = tu_synth(22, GEAR_VALUE, H, T, d);
    double rel[2][2];
    for (int g = 0; g < 2; g++) {
        gear_config ck = tu_preset("cq-8c8b", GEAR_KEY), cv = tu_preset("cq-8c8b", GEAR_VALUE);
        ck.block = cv.block = n;
        if (g) { /* + 2% outliers per group of 64, rank 2 */
            ck.group = cv.group = 64;
            ck.outlier_ratio = cv.outlier_ratio = 0.02f;
            ck.rank = cv.rank = 2;
        }
        gear_cache *c = NULL;
        TU_OK(gear_cache_create_calibrated(ctx, &ck, &cv, cal, 1, H, d, 1024, &c));
        TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
        float *kr, *vr;
        tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
        rel[g][0] = tu_rel_err(kr, k, (size_t)H * T * d);
        rel[g][1] = tu_rel_err(vr, v, (size_t)H * T * d);
        if (g) {
            const unsigned hq = 4;
            float *q = tu_alloc_f(hq * d), *out = tu_alloc_f(hq * d);
            double want[4 * 64];
            tu_fill_normal(5, q, hq * d, 1.0f);
            TU_OK(tu_cache_attention(c, 0, q, hq, 1, d, 0.125f, out));
            tu_attention_dense(q, hq, 1, kr, vr, H, T, d, 0.125f, want);
            double e = 0, nn = 0;
            for (size_t i = 0; i < hq * d; i++) e += (out[i] - want[i]) * (out[i] - want[i]), nn += want[i] * want[i];
            TU_ASSERT(sqrt(e / nn) < 1e-5, "CQ+S+L attention rel. error %g", sqrt(e / nn));
            free(q); free(out);
        }
        free(kr); free(vr);
        gear_cache_free(c);
    }
    for (int kv = 0; kv < 2; kv++)
        TU_ASSERT(rel[1][kv] < 0.8 * rel[0][kv], "%s: CQ+S+L error %g not below CQ's %g",
                  kv ? "V" : "K", rel[1][kv], rel[0][kv]);
    free(k); free(v);
    gear_calib_free(cal);
}
END_TEST

/* cpu (when loaded) writes the same bytes as ref and attends alike. */
START_TEST(test_cq_cpu_matches_ref)
{
    gear_context *cpu = NULL;
    gear_context_params cp;
    gear_context_params_init(&cp);
    cp.backend = "cpu";
    if (gear_context_create(&cp, &cpu) != GEAR_OK) {
        printf("SKIP cq cpu-vs-ref: cpu backend not available (%s)\n", gear_last_error_message());
        return;
    }
    const unsigned H = 3, d = 64, T = 333, hq = 9, n = 64;
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.cq_dim[0] = 2, p.cq_bits[0] = 8, p.cq_dim[1] = 4, p.cq_bits[1] = 8;
    p.kmeans_iters = 4;
    gear_calib *cal = make_calib(&p, 2, H, d, 512, 31);
    for (int g = 0; g < 2; g++) {
        gear_config ck = tu_preset("cq-2c8b", GEAR_KEY), cv = tu_preset("cq-4c8b", GEAR_VALUE);
        ck.block = cv.block = n;
        if (g) ck.outlier_ratio = cv.outlier_ratio = 0.05f, ck.rank = cv.rank = 3, ck.group = cv.group = 32;
        gear_cache *a = NULL, *b = NULL;
        TU_OK(gear_cache_create_calibrated(ctx, &ck, &cv, cal, 2, H, d, 1024, &a));
        TU_OK(gear_cache_create_calibrated(cpu, &ck, &cv, cal, 2, H, d, 1024, &b));
        float *k = tu_synth(61 + g, GEAR_KEY, H, T, d), *v = tu_synth(71 + g, GEAR_VALUE, H, T, d);
        for (unsigned l = 0; l < 2; l++) {
            TU_OK(tu_cache_append_rows(a, l, k, v, H, T, d, 0, 200));
            TU_OK(tu_cache_append_rows(b, l, k, v, H, T, d, 0, 200));
            for (int t = 200; t < (int)T; t++) { /* decode: one token at a time */
                TU_OK(tu_cache_append_rows(a, l, k, v, H, T, d, t, 1));
                TU_OK(tu_cache_append_rows(b, l, k, v, H, T, d, t, 1));
            }
        }
        size_t la, lb;
        uint8_t *sa = tu_cache_save(a, &la), *sb = tu_cache_save(b, &lb);
        TU_ASSERT(la == lb && !memcmp(sa, sb, la), "cpu and ref CQ caches differ (g=%d)", g);
        float *q = tu_alloc_f(hq * 2 * d), *oa = tu_alloc_f(hq * 2 * d), *ob = tu_alloc_f(hq * 2 * d);
        tu_fill_normal(8, q, hq * 2 * d, 1.0f);
        TU_OK(tu_cache_attention(a, 1, q, hq, 2, d, 0.125f, oa));
        TU_OK(tu_cache_attention(b, 1, q, hq, 2, d, 0.125f, ob));
        TU_ASSERT(tu_rel_err(ob, oa, hq * 2 * d) < 1e-5, "cpu vs ref CQ attention %g",
                  tu_rel_err(ob, oa, hq * 2 * d));
        free(sa); free(sb); free(q); free(oa); free(ob); free(k); free(v);
        gear_cache_free(a);
        gear_cache_free(b);
    }
    gear_calib_free(cal);
    gear_context_free(cpu);
}
END_TEST

/* ------------------------------------------------- head compression */

static gear_calib *hc_calib(unsigned g, unsigned m, unsigned L, unsigned H, unsigned d,
                            const float *const *k, const float *const *v, unsigned T)
{
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.hc_group = g;
    p.hc_dim = m;
    gear_calib *cal = NULL;
    TU_OK(gear_calib_create(&p, L, H, d, &cal));
    for (unsigned l = 0; l < L; l++) {
        gear_tensor tk, tv;
        TU_OK(gear_tensor_init(&tk, (void *)k[l], GEAR_F32, 3, H, T, d, 0));
        TU_OK(gear_tensor_init(&tv, (void *)v[l], GEAR_F32, 3, H, T, d, 0));
        TU_OK(gear_calib_add(cal, l, &tk, &tv, NULL));
    }
    TU_OK(gear_calib_fit(cal));
    return cal;
}

/* At full dimension the projection is a rotation: an fp16 cache of the
 * rotated K/V gives back K/V and attention up to fp16 rounding. */
START_TEST(test_hc_full_rank_exact)
{
    const unsigned H = 4, d = 16, T = 100, hq = 8, g = 2;
    float *k = tu_synth(1, GEAR_KEY, H, T, d), *v = tu_synth(2, GEAR_VALUE, H, T, d);
    const float *ks[1] = {k}, *vs[1] = {v};
    gear_calib *cal = hc_calib(g, g * d, 1, H, d, ks, vs, T);
    gear_calib_info info;
    TU_OK(gear_calib_info_get(cal, &info));
    TU_EQ(info.stored_heads, H / g);
    TU_EQ(info.stored_dim, g * d);
    TU_CHECK(fabs(info.hc_energy[0] - 1.0) < 1e-9 && fabs(info.hc_energy[1] - 1.0) < 1e-9);
    gear_cache *c = cal_cache(ctx, "fp16", "fp16", cal, 1, H, d, 32);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
    float *kr, *vr;
    tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
    TU_ASSERT(tu_rel_err(kr, k, (size_t)H * T * d) < 2e-3, "K %g", tu_rel_err(kr, k, (size_t)H * T * d));
    TU_ASSERT(tu_rel_err(vr, v, (size_t)H * T * d) < 2e-3, "V %g", tu_rel_err(vr, v, (size_t)H * T * d));
    float *q = tu_alloc_f(hq * 2 * d), *out = tu_alloc_f(hq * 2 * d);
    double *want = malloc(sizeof(double) * hq * 2 * d);
    tu_fill_normal(3, q, hq * 2 * d, 1.0f);
    TU_OK(tu_cache_attention(c, 0, q, hq, 2, d, 0.25f, out));
    tu_attention_dense(q, hq, 2, k, v, H, T, d, 0.25f, want);
    double e = 0, nn = 0;
    for (size_t i = 0; i < hq * 2 * d; i++) e += (out[i] - want[i]) * (out[i] - want[i]), nn += want[i] * want[i];
    TU_ASSERT(sqrt(e / nn) < 3e-3, "attention through a full-rank projection: %g", sqrt(e / nn));
    gear_cache_stats s;
    TU_OK(gear_cache_stats_get(c, &s));
    TU_EQ(s.fp16_bytes, 2 * 2 * (uint64_t)T * H * d);
    TU_CHECK(s.calib_bytes > 0);
    free(k); free(v); free(kr); free(vr); free(q); free(out); free(want);
    gear_cache_free(c);
    gear_calib_free(cal);
}
END_TEST

/* Data of rank m per head group is kept whole at m channels; with GEAR on
 * the projected cache, attention equals the dense oracle on what the
 * cache reconstructs. */
START_TEST(test_hc_low_rank_data)
{
    const unsigned H = 4, d = 32, T = 256, g = 2, m = 24, hq = 8;
    float *k = tu_alloc_f((size_t)H * T * d), *v = tu_alloc_f((size_t)H * T * d);
    float *basis = tu_alloc_f((size_t)2 * m * g * d), *coef = tu_alloc_f((size_t)2 * T * m);
    tu_fill_normal(9, basis, (size_t)2 * m * g * d, 1.0f);
    tu_fill_normal(10, coef, (size_t)2 * T * m, 1.0f);
    for (unsigned j = 0; j < H / g; j++) /* group j: x_t = basis^T coef_t + offset */
        for (unsigned t = 0; t < T; t++)
            for (unsigned i = 0; i < g * d; i++) {
                float s = 0.5f * (float)(j + 1);
                for (unsigned r = 0; r < m; r++) s += basis[((size_t)j * m + r) * g * d + i] * coef[((size_t)j * T + t) * m + r];
                unsigned h = j * g + i / d;
                k[((size_t)h * T + t) * d + i % d] = s;
                v[((size_t)h * T + t) * d + i % d] = -0.5f * s;
            }
    const float *ks[1] = {k}, *vs[1] = {v};
    gear_calib *cal = hc_calib(g, m, 1, H, d, ks, vs, T);
    gear_calib_info info;
    TU_OK(gear_calib_info_get(cal, &info));
    TU_ASSERT(info.hc_energy[0] > 1 - 1e-6, "energy kept %g", info.hc_energy[0]);
    gear_cache *c = cal_cache(ctx, "fp16", "fp16", cal, 1, H, d, 64);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
    float *kr, *vr;
    tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
    TU_ASSERT(tu_rel_err(kr, k, (size_t)H * T * d) < 2e-3, "K %g", tu_rel_err(kr, k, (size_t)H * T * d));
    gear_cache_stats s;
    TU_OK(gear_cache_stats_get(c, &s));
    TU_ASSERT(fabs(s.bpe - 16.0 * m / (g * d) - 8.0 * 32 / (64.0 * g * d)) < 1e-9, "bpe %g", s.bpe);
    free(kr); free(vr);
    gear_cache_free(c);
    /* GEAR (gear2) on the projected cache */
    c = cal_cache(ctx, "gear2", "gear2", cal, 1, H, d, 64);
    TU_OK(tu_cache_append(c, 0, k, v, H, T, d));
    tu_cache_decompress(c, 0, H, T, d, &kr, &vr);
    float *q = tu_alloc_f(hq * d), *out = tu_alloc_f(hq * d);
    double want[8 * 32];
    tu_fill_normal(11, q, hq * d, 0.3f);
    TU_OK(tu_cache_attention(c, 0, q, hq, 1, d, 0.2f, out));
    tu_attention_dense(q, hq, 1, kr, vr, H, T, d, 0.2f, want);
    double e = 0, nn = 0;
    for (size_t i = 0; i < hq * d; i++) e += (out[i] - want[i]) * (out[i] - want[i]), nn += want[i] * want[i];
    TU_ASSERT(sqrt(e / nn) < 1e-4, "gear2 on the projected cache: attention %g", sqrt(e / nn));
    free(k); free(v); free(kr); free(vr); free(q); free(out); free(basis); free(coef);
    gear_cache_free(c);
    gear_calib_free(cal);
}
END_TEST

/* ------------------------------------------------------------- files */

static uint8_t *calib_bytes(const gear_calib *cal, size_t *len)
{
    TU_STATUS(gear_calib_save_mem(cal, NULL, 0, len), GEAR_ERR_DST_TOO_SMALL);
    uint8_t *b = malloc(*len);
    TU_CHECK(b != NULL);
    TU_OK(gear_calib_save_mem(cal, b, *len, len));
    return b;
}

START_TEST(test_calib_file_roundtrip_and_corruption)
{
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.cq_dim[0] = 2, p.cq_bits[0] = 3, p.cq_dim[1] = 4, p.cq_bits[1] = 2;
    p.hc_group = 2, p.hc_dim = 8;
    p.kmeans_iters = 3;
    gear_calib *cal = make_calib(&p, 1, 2, 8, 40, 3);
    size_t len, len2;
    uint8_t *b = calib_bytes(cal, &len);
    gear_calib_info info;
    TU_OK(gear_calib_info_get(cal, &info));
    TU_EQ(info.bytes, len);
    gear_calib *back = NULL;
    TU_OK(gear_calib_load_mem(b, len, &back));
    uint8_t *b2 = calib_bytes(back, &len2);
    TU_CHECK(len == len2 && !memcmp(b, b2, len));
    gear_calib_free(back);
    /* a file, too */
    char path[] = "/tmp/gear-calib-test.XXXXXX";
    int fd = mkstemp(path);
    TU_CHECK(fd >= 0);
    TU_OK(gear_calib_save(cal, path));
    TU_OK(gear_calib_load(path, &back));
    gear_calib_free(back);
    remove(path);
    close(fd);
    TU_STATUS(gear_calib_load("/nonexistent/dir/x.gcal", &back), GEAR_ERR_IO);
    for (size_t i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            b[i] ^= (uint8_t)(1u << bit);
            gear_status st = gear_calib_load_mem(b, len, &back);
            TU_ASSERT(TU_IS_FORMAT_ERR(st) && back == NULL, "flip of byte %zu bit %d: %s", i, bit,
                      gear_status_string(st));
            b[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (size_t l = 0; l < len; l++) {
        gear_status st = gear_calib_load_mem(b, l, &back);
        TU_ASSERT(TU_IS_FORMAT_ERR(st) && back == NULL, "truncation to %zu: %s", l, gear_status_string(st));
    }
    uint8_t *longer = malloc(len + 1);
    memcpy(longer, b, len);
    longer[len] = 0;
    TU_STATUS(gear_calib_load_mem(longer, len + 1, &back), GEAR_ERR_FORMAT_CORRUPT);
    free(longer); free(b); free(b2);
    gear_calib_free(cal);
}
END_TEST

/* A calibrated cache carries its calibration through save and load. */
START_TEST(test_calibrated_cache_save_load)
{
    const unsigned H = 4, d = 16, T = 150, hq = 8;
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.cq_dim[0] = p.cq_dim[1] = 4, p.cq_bits[0] = p.cq_bits[1] = 6;
    p.hc_group = 2, p.hc_dim = 16;
    p.kmeans_iters = 4;
    gear_calib *cal = make_calib(&p, 2, H, d, 300, 8);
    gear_config ck = tu_preset("cq-4c6b", GEAR_KEY), cv = tu_preset("cq-4c6b", GEAR_VALUE);
    ck.block = cv.block = 32;
    ck.rank = 1, ck.iters = 2;
    gear_cache *c = NULL, *back = NULL;
    TU_OK(gear_cache_create_calibrated(ctx, &ck, &cv, cal, 2, H, d, 512, &c));
    float *k = tu_synth(4, GEAR_KEY, H, T, d), *v = tu_synth(5, GEAR_VALUE, H, T, d);
    for (unsigned l = 0; l < 2; l++) TU_OK(tu_cache_append(c, l, k, v, H, T, d));
    size_t len, len2;
    uint8_t *b = tu_cache_save(c, &len);
    TU_OK(gear_cache_load_mem(ctx, b, len, &back));
    uint8_t *b2 = tu_cache_save(back, &len2);
    TU_CHECK(len == len2 && !memcmp(b, b2, len));
    float *q = tu_alloc_f(hq * d), *o1 = tu_alloc_f(hq * d), *o2 = tu_alloc_f(hq * d);
    tu_fill_normal(6, q, hq * d, 1.0f);
    TU_OK(tu_cache_attention(c, 1, q, hq, 1, d, 0.25f, o1));
    TU_OK(tu_cache_attention(back, 1, q, hq, 1, d, 0.25f, o2));
    TU_CHECK(tu_count_diff_bits(o1, o2, hq * d) == 0);
    /* a flipped byte inside the embedded calibration is caught */
    b[112 + 100] ^= 1;
    gear_cache *bad = NULL;
    gear_status st = gear_cache_load_mem(ctx, b, len, &bad);
    TU_ASSERT(TU_IS_FORMAT_ERR(st) && !bad, "%s", gear_status_string(st));
    free(b); free(b2); free(q); free(o1); free(o2); free(k); free(v);
    gear_cache_free(c);
    gear_cache_free(back);
    gear_calib_free(cal);
}
END_TEST

/* ------------------------------------------------------------- misuse */

START_TEST(test_calib_misuse)
{
    gear_calib_params p;
    gear_calib *cal = NULL;
    gear_calib_params_init(&p);
    TU_STATUS(gear_calib_create(NULL, 1, 1, 8, &cal), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_calib_create(&p, 1, 1, 8, NULL), GEAR_ERR_INVALID_ARG);
    p.hc_group = 3;
    p.hc_dim = 8;
    TU_STATUS(gear_calib_create(&p, 1, 4, 8, &cal), GEAR_ERR_INVALID_ARG); /* 3 !| 4 */
    p.hc_group = 2, p.hc_dim = 17;
    TU_STATUS(gear_calib_create(&p, 1, 4, 8, &cal), GEAR_ERR_INVALID_ARG); /* > 2*8 */
    p.hc_dim = 6, p.cq_dim[0] = 4, p.cq_bits[0] = 8;
    TU_STATUS(gear_calib_create(&p, 1, 4, 8, &cal), GEAR_ERR_INVALID_ARG); /* 4 !| 6 */
    gear_calib_params_init(&p);
    TU_STATUS(gear_calib_create(&p, 1, 1, 8, &cal), GEAR_ERR_INVALID_ARG); /* learns nothing */
    TU_STATUS(gear_calib_params_cq(&p, "kivi2"), GEAR_ERR_UNKNOWN_PRESET);
    TU_OK(gear_calib_params_cq(&p, "cq-2c4b"));
    TU_OK(gear_calib_create(&p, 2, 1, 8, &cal));
    float x[20 * 8];
    tu_fill_normal(1, x, 160, 1.0f);
    gear_tensor t, bad;
    TU_OK(gear_tensor_init(&t, x, GEAR_F32, 2, 20, 8, 0, 0));
    TU_OK(gear_tensor_init(&bad, x, GEAR_F32, 2, 16, 10, 0, 0));
    TU_STATUS(gear_calib_add(cal, 2, &t, &t, NULL), GEAR_ERR_INVALID_ARG);
    TU_FAILS(gear_calib_add(cal, 0, &t, &bad, NULL));
    float w[20];
    for (int i = 0; i < 20; i++) w[i] = 1.0f;
    w[7] = -1.0f;
    TU_STATUS(gear_calib_add(cal, 0, &t, &t, w), GEAR_ERR_INVALID_ARG);
    w[7] = NAN;
    TU_STATUS(gear_calib_add(cal, 0, &t, &t, w), GEAR_ERR_INVALID_ARG);
    x[5] = INFINITY;
    TU_STATUS(gear_calib_add(cal, 0, &t, &t, NULL), GEAR_ERR_NONFINITE);
    x[5] = 0.0f;
    TU_OK(gear_calib_add(cal, 0, &t, &t, NULL));
    TU_STATUS(gear_calib_fit(cal), GEAR_ERR_INVALID_ARG); /* layer 1 has no tokens */
    size_t len;
    TU_STATUS(gear_calib_save_mem(cal, NULL, 0, &len), GEAR_ERR_INVALID_ARG); /* not fitted */
    TU_OK(gear_calib_add(cal, 1, &t, &t, NULL));
    TU_OK(gear_calib_fit(cal));
    TU_STATUS(gear_calib_add(cal, 0, &t, &t, NULL), GEAR_ERR_INVALID_ARG); /* after fit */
    TU_STATUS(gear_calib_fit(cal), GEAR_ERR_INVALID_ARG);
    /* caches: CQ without a calibration, or with one that does not fit */
    gear_config ck = tu_preset("cq-2c4b", GEAR_KEY), cv = tu_preset("cq-2c4b", GEAR_VALUE), c8;
    gear_cache *c = NULL;
    TU_STATUS(gear_cache_create(ctx, &ck, &cv, 2, 1, 8, 64, &c), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_cache_create_calibrated(ctx, &ck, &cv, cal, 3, 1, 8, 64, &c), GEAR_ERR_INVALID_ARG);
    c8 = tu_preset("cq-2c8b", GEAR_KEY);
    TU_STATUS(gear_cache_create_calibrated(ctx, &c8, &cv, cal, 2, 1, 8, 64, &c), GEAR_ERR_INVALID_ARG);
    TU_CHECK(c == NULL);
    TU_OK(gear_cache_create_calibrated(ctx, &ck, &cv, cal, 2, 1, 8, 64, &c));
    gear_cache_free(c);
    gear_calib_free(cal);
    gear_calib_free(NULL);
}
END_TEST

/* Head compression maps fp16-range K/V to sums over g*d channels, which
 * can leave the fp16 range: fit, append and attention say so and change
 * nothing. */
START_TEST(test_hc_range)
{
    const unsigned H = 2, d = 8, T = 64;
    gear_calib_params p;
    gear_calib_params_init(&p);
    p.hc_group = 2, p.hc_dim = 4;
    TU_OK(gear_calib_params_cq(&p, "cq-2c4b"));
    float *k = tu_alloc_f(H * T * d), *v = tu_alloc_f(H * T * d);
    /* every channel +-30000 together: the first principal coordinate is
     * +-30000*sqrt(16) = +-120000 */
    tu_fill_uniform(3, k, H * T * d, -100.0f, 100.0f);
    for (unsigned h = 0; h < H; h++)
        for (unsigned t = 0; t < T; t++)
            for (unsigned i = 0; i < d; i++) k[((size_t)h * T + t) * d + i] += t % 2 ? 30000.0f : -30000.0f;
    memcpy(v, k, sizeof(float) * H * T * d);
    gear_calib *cal = NULL;
    TU_OK(gear_calib_create(&p, 1, H, d, &cal));
    gear_tensor tk, tv;
    TU_OK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_tensor_init(&tv, v, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_calib_add(cal, 0, &tk, &tv, NULL));
    TU_STATUS(gear_calib_fit(cal), GEAR_ERR_RANGE); /* a centroid beyond 65504 */
    gear_calib_free(cal);
    /* fit on small values, then append large ones */
    p.cq_dim[0] = p.cq_dim[1] = p.cq_bits[0] = p.cq_bits[1] = 0;
    float *ks = tu_synth(5, GEAR_KEY, H, T, d), *vs = tu_synth(6, GEAR_VALUE, H, T, d);
    const float *kk[1] = {ks}, *vv[1] = {vs};
    cal = hc_calib(2, 4, 1, H, d, kk, vv, T);
    gear_cache *c = cal_cache(ctx, "fp16", "fp16", cal, 1, H, d, 16);
    TU_OK(tu_cache_append(c, 0, ks, vs, H, 20, d));
    size_t l0, l1;
    uint8_t *b0 = tu_cache_save(c, &l0);
    TU_STATUS(tu_cache_append(c, 0, k, v, H, T, d), GEAR_ERR_RANGE);
    TU_ASSERT(strstr(gear_last_error_message(), "head-compressed") != NULL, "%s", gear_last_error_message());
    uint8_t *b1 = tu_cache_save(c, &l1);
    TU_CHECK(l0 == l1 && !memcmp(b0, b1, l0)); /* unchanged */
    /* capacity is checked before any projection */
    TU_STATUS(tu_cache_append(c, 0, k, v, H, T, d), GEAR_ERR_RANGE);
    float *big = tu_alloc_f((size_t)H * 5000 * d);
    TU_STATUS(tu_cache_append(c, 0, big, big, H, 5000, d), GEAR_ERR_CAPACITY);
    /* an overflowing query writes nothing */
    float q[4 * 8], out[4 * 8];
    for (int i = 0; i < 32; i++) q[i] = 3e38f, out[i] = 7.0f;
    gear_status st = tu_cache_attention(c, 0, q, 4, 1, d, 1.0f, out);
    TU_ASSERT(st == GEAR_ERR_RANGE, "%s", gear_status_string(st));
    for (int i = 0; i < 32; i++) TU_CHECK(out[i] == 7.0f);
    free(k); free(v); free(ks); free(vs); free(b0); free(b1); free(big);
    gear_cache_free(c);
    gear_calib_free(cal);
}
END_TEST

static Suite *calib_suite(void)
{
    Suite *s = suite_create("calib");
    TCase *tc = tu_tcase("cq");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_cq_presets);
    tcase_add_test(tc, test_cq_codes_are_nearest);
    tcase_add_test(tc, test_cq_attention_matches_dense);
    tcase_add_test(tc, test_cq_as_gear_backbone);
    tcase_add_test(tc, test_cq_cpu_matches_ref);
    suite_add_tcase(s, tc);
    tc = tu_tcase("headcomp");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_hc_full_rank_exact);
    tcase_add_test(tc, test_hc_low_rank_data);
    tcase_add_test(tc, test_hc_range);
    suite_add_tcase(s, tc);
    tc = tu_tcase("files");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_calib_file_roundtrip_and_corruption);
    tcase_add_test(tc, test_calibrated_cache_save_load);
    tcase_add_test(tc, test_calib_misuse);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(calib_suite(), 0); }
