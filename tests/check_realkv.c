/*
 * check_realkv.c - quality on REAL keys and values: the sample
 * tests/data/smollm2-135m-persuasion-kv.safetensors (SmolLM2-135M,
 * layers 0, 10, 20, 29, 3 KV heads x 1024 tokens x head_dim 64, F16; see
 * tests/data/README.md for its provenance).
 *
 *  - the fp16 preset reconstructs the (already fp16) sample exactly, and
 *    its attention equals a dense fp64 attention to float rounding;
 *  - gear2's relative K and V reconstruction errors are below kivi2's, and
 *    gearl2's too, in every layer;
 *  - attention outputs: gear2 (and gearl2) have lower error than kivi2
 *    against dense fp64 attention on the original K/V, in every layer;
 *  - gear2 stores no more bytes than kivi4 (the memory budget its quality
 *    is compared against in docs/RESULTS-llm.md);
 *  - every other available backend (cpu; cuda, hip where there is a
 *    device) gives the attention of ref on these caches, NMSE < 1e-6, for
 *    one query token (a decode step, 3 query heads per KV head) and for 8:
 *    the synthetic inputs of check_xbackend do not have the real outlier
 *    channels and peaked attention.
 *
 * The sample holds no queries, so attention uses synthetic ones: each
 * query head's vector is the key of a random earlier token of its KV head
 * plus N(0, 1) noise (attention is then peaked, as in a real model, rather
 * than nearly uniform).  Everything else runs on the `ref` backend, whole
 * 1024-token prefill (16 blocks per head, empty streaming buffer).
 *
 * The file is found through $abs_top_srcdir or $top_srcdir (set by `make
 * check`), else ./tests/data.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "../tools/gear/safetensors.h"

#define SAMPLE "tests/data/smollm2-135m-persuasion-kv.safetensors"
#define NL 4
#define HQ 9 /* SmolLM2-135M: 9 query heads over 3 KV heads */
#define NQ 8 /* query tokens: the newest 8 positions */

static const int layer_ids[NL] = {0, 10, 20, 29};
static float *K[NL], *V[NL]; /* [H][T][d] fp32 (exact fp16 values) */
static int H, T, D;
static char load_err[1024];

static int load_sample(void)
{
    const char *dir = getenv("abs_top_srcdir");
    if (!dir || !*dir) dir = getenv("top_srcdir");
    if (!dir || !*dir) dir = ".";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, SAMPLE);
    st_file *sf = NULL;
    char err[256];
    if (st_open(path, &sf, err, sizeof err)) {
        snprintf(load_err, sizeof load_err, "%.300s: %s", path, err);
        return -1;
    }
    for (int l = 0; l < NL; l++) {
        for (int kv = 0; kv < 2; kv++) {
            char name[64];
            snprintf(name, sizeof name, "layer.%d.%c", layer_ids[l], kv ? 'v' : 'k');
            const st_tensor *t = st_find(sf, name);
            if (!t || t->ndim != 3 || strcmp(t->dtype, "F16")) {
                snprintf(load_err, sizeof load_err, "%.300s: tensor %s missing or not a 3-d F16 tensor", path,
                         name);
                st_close(sf);
                return -1;
            }
            H = (int)t->shape[0];
            T = (int)t->shape[1];
            D = (int)t->shape[2];
            float *x = malloc(sizeof(float) * (size_t)t->count);
            if (!x || st_read_f32(sf, t, x, err, sizeof err)) {
                snprintf(load_err, sizeof load_err, "%.300s: %s: %s", path, name, x ? err : "out of memory");
                free(x);
                st_close(sf);
                return -1;
            }
            if (kv) V[l] = x;
            else K[l] = x;
        }
    }
    st_close(sf);
    return 0;
}

static gear_context *ctx;

static void setup(void)
{
    TU_ASSERT(K[0] != NULL, "real KV sample not loaded: %s", load_err);
    TU_EQ(H, 3);
    TU_EQ(T, 1024);
    TU_EQ(D, 64);
    ctx = tu_ctx("ref");
}

static void teardown(void)
{
    gear_context_free(ctx);
    ctx = NULL;
}

/* A one-layer cache of a preset on context b holding layer l of the sample. */
static gear_cache *cache_on(gear_context *b, const char *preset, int l)
{
    gear_config ck = tu_preset(preset, GEAR_KEY), cv = tu_preset(preset, GEAR_VALUE);
    gear_cache *c = NULL;
    TU_OK(gear_cache_create(b, &ck, &cv, 1, (unsigned)H, (unsigned)D, (unsigned)T, &c));
    TU_OK(tu_cache_append(c, 0, K[l], V[l], H, T, D));
    return c;
}

static gear_cache *cache_of(const char *preset, int l) { return cache_on(ctx, preset, l); }

/* Synthetic queries [HQ][NQ][D] for layer l (see the header comment). */
static float *queries(int l)
{
    float *q = tu_alloc_f((size_t)HQ * NQ * D);
    uint64_t s = 1234 + (uint64_t)l;
    tu_fill_normal(99 + (uint64_t)l, q, (size_t)HQ * NQ * D, 1.0f);
    for (int h = 0; h < HQ; h++)
        for (int i = 0; i < NQ; i++) {
            int src = (int)(tu_rand_u64(&s) % (uint64_t)(T - NQ + i + 1));
            const float *k = K[l] + ((size_t)(h / (HQ / H)) * T + (size_t)src) * D;
            float *qi = q + ((size_t)h * NQ + i) * D;
            for (int j = 0; j < D; j++) qi[j] += k[j];
        }
    return q;
}

typedef struct errs {
    double k, v, att;
    unsigned long long bytes;
} errs;

static errs measure(const char *preset, int l)
{
    errs e;
    size_t n = (size_t)H * T * D, no = (size_t)HQ * NQ * D;
    gear_cache *c = cache_of(preset, l);
    float *kr, *vr;
    tu_cache_decompress(c, 0, H, T, D, &kr, &vr);
    e.k = tu_rel_err(kr, K[l], n);
    e.v = tu_rel_err(vr, V[l], n);
    float *q = queries(l), *out = tu_alloc_f(no);
    double *want = malloc(sizeof(double) * no);
    TU_CHECK(want != NULL);
    float scale = 1.0f / sqrtf((float)D);
    tu_attention_dense(q, HQ, NQ, K[l], V[l], H, T, D, scale, want);
    TU_OK(tu_cache_attention(c, 0, q, HQ, NQ, D, scale, out));
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < no; i++) {
        num += (out[i] - want[i]) * (out[i] - want[i]);
        den += want[i] * want[i];
    }
    e.att = sqrt(num / den);
    gear_cache_stats st;
    TU_OK(gear_cache_stats_get(c, &st));
    e.bytes = (unsigned long long)st.compressed_bytes;
    TU_EQ(st.buffer_entries, 0); /* 1024 = 16 full blocks: everything compressed */
    free(kr);
    free(vr);
    free(q);
    free(out);
    free(want);
    gear_cache_free(c);
    return e;
}

START_TEST(test_fp16_exact)
{
    int l = _i;
    size_t n = (size_t)H * T * D;
    gear_cache *c = cache_of("fp16", l);
    float *kr, *vr;
    tu_cache_decompress(c, 0, H, T, D, &kr, &vr);
    /* the sample is fp16 already, so fp16 storage must give it back bit for bit */
    TU_ASSERT(tu_count_diff_bits(kr, K[l], n) == 0, "layer %d: fp16 keys not exact", layer_ids[l]);
    TU_ASSERT(tu_count_diff_bits(vr, V[l], n) == 0, "layer %d: fp16 values not exact", layer_ids[l]);
    free(kr);
    free(vr);
    gear_cache_free(c);
    errs e = measure("fp16", l);
    TU_ASSERT(e.k == 0.0 && e.v == 0.0, "layer %d: fp16 rel errors %g %g", layer_ids[l], e.k, e.v);
    TU_ASSERT(e.att < 1e-5, "layer %d: fp16 attention error %g vs dense fp64", layer_ids[l], e.att);
}
END_TEST

START_TEST(test_gear2_beats_kivi2)
{
    int l = _i;
    errs k2 = measure("kivi2", l), g2 = measure("gear2", l), gl2 = measure("gearl2", l);
    fprintf(stderr,
            "layer %2d  rel err K / V / attention:  kivi2 %.4f %.4f %.4f   gearl2 %.4f %.4f %.4f   "
            "gear2 %.4f %.4f %.4f\n",
            layer_ids[l], k2.k, k2.v, k2.att, gl2.k, gl2.v, gl2.att, g2.k, g2.v, g2.att);
    TU_ASSERT(g2.k < k2.k, "layer %d: gear2 key error %.4f not below kivi2's %.4f", layer_ids[l], g2.k, k2.k);
    TU_ASSERT(g2.v < k2.v, "layer %d: gear2 value error %.4f not below kivi2's %.4f", layer_ids[l], g2.v, k2.v);
    TU_ASSERT(gl2.k < k2.k, "layer %d: gearl2 key error %.4f not below kivi2's %.4f", layer_ids[l], gl2.k, k2.k);
    TU_ASSERT(gl2.v < k2.v, "layer %d: gearl2 value error %.4f not below kivi2's %.4f", layer_ids[l], gl2.v,
              k2.v);
    TU_ASSERT(g2.att < k2.att, "layer %d: gear2 attention error %.4f not below kivi2's %.4f", layer_ids[l],
              g2.att, k2.att);
    TU_ASSERT(gl2.att < k2.att, "layer %d: gearl2 attention error %.4f not below kivi2's %.4f", layer_ids[l],
              gl2.att, k2.att);
}
END_TEST

START_TEST(test_gear2_bytes_vs_kivi4)
{
    errs g2 = measure("gear2", 0), k4 = measure("kivi4", 0), k2 = measure("kivi2", 0);
    TU_ASSERT(g2.bytes <= k4.bytes, "gear2 stores %llu bytes, kivi4 %llu", g2.bytes, k4.bytes);
    TU_ASSERT(k2.bytes < g2.bytes, "kivi2 %llu bytes, gear2 %llu", k2.bytes, g2.bytes);
}
END_TEST

START_TEST(test_backends_agree)
{
    static const char *presets[] = {"kivi2", "kivi4", "gear2", "gearl2", "gear4"};
    int l = _i, compared = 0;
    float *q8 = queries(l), *q = tu_alloc_f((size_t)HQ * NQ * D), *a = tu_alloc_f((size_t)HQ * NQ * D),
          *o = tu_alloc_f((size_t)HQ * NQ * D);
    for (int i = 0; i < gear_backend_count(); i++) {
        const char *name = gear_backend_name(i), *why = NULL;
        if (!name || !strcmp(name, "ref")) continue;
        if (!gear_backend_available(i, &why)) {
            if (l == 0) printf("SKIP %s: %s\n", name, why ? why : "not available");
            continue;
        }
        gear_context *b = tu_ctx(name);
        double worst = 0.0;
        for (size_t p = 0; p < sizeof presets / sizeof presets[0]; p++) {
            gear_cache *ca = cache_on(ctx, presets[p], l), *cb = cache_on(b, presets[p], l);
            for (int nq = 1; nq <= NQ; nq += NQ - 1) {
                /* the newest nq of the NQ query tokens of every head */
                for (int h = 0; h < HQ; h++)
                    memcpy(q + (size_t)h * nq * D, q8 + ((size_t)h * NQ + NQ - nq) * D, sizeof(float) * nq * D);
                float scale = 1.0f / sqrtf((float)D);
                TU_OK(tu_cache_attention(ca, 0, q, HQ, nq, D, scale, a));
                TU_OK(tu_cache_attention(cb, 0, q, HQ, nq, D, scale, o));
                double e = tu_nmse(o, a, (size_t)HQ * nq * D);
                TU_ASSERT(e < 1e-6, "layer %d %s nq %d: %s attention NMSE %g vs ref", layer_ids[l], presets[p], nq,
                          name, e);
                worst = e > worst ? e : worst;
            }
            gear_cache_free(ca);
            gear_cache_free(cb);
        }
        printf("layer %2d  %s vs ref: largest attention NMSE %.2g\n", layer_ids[l], name, worst);
        gear_context_free(b);
        compared++;
    }
    if (l == 0) printf("realkv: %d backend(s) compared with ref\n", compared);
    free(q8);
    free(q);
    free(a);
    free(o);
}
END_TEST

static Suite *realkv_suite(void)
{
    Suite *s = suite_create("realkv");
    TCase *tc = tu_tcase("real KV (SmolLM2-135M on Persuasion)");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, test_fp16_exact, 0, NL);
    tcase_add_loop_test(tc, test_gear2_beats_kivi2, 0, NL);
    tcase_add_test(tc, test_gear2_bytes_vs_kivi4);
    tcase_add_loop_test(tc, test_backends_agree, 0, NL);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (load_sample()) fprintf(stderr, "check_realkv: %s\n", load_err); /* setup() fails every test */
    int rc = tu_run(realkv_suite(), 0);
    for (int l = 0; l < NL; l++) {
        free(K[l]);
        free(V[l]);
    }
    return rc;
}
