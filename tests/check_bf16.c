/*
 * check_bf16.c - the cpu module's opt-in bf16 power iteration
 * (GEAR_CPU_BF16=1, set here before the module loads; cpu_avx512_bf16.c).
 * Its low-rank factors follow ref's only to bf16's precision, and where a
 * residual's top singular values are close a 3-step iteration may settle
 * on another, equally good subspace, so check_xbackend's closeness to ref
 * does not apply.  This checks what the low rank is for instead: for every
 * low-rank preset, keys and values, synthetic KV and a few-valued input
 * (a flat spectrum), the low rank lowers the reconstruction error against
 * the input by at least 98 % of what it lowers it by on ref.
 * On a CPU without AVX512-BF16 the module runs its fp32 products and the
 * test says so.
 */
#include <stdio.h>
#include <stdlib.h>
#include "testutil.h"

static gear_context *cpu, *ref;

static void setup(void)
{
    setenv("GEAR_CPU_BF16", "1", 1); /* before the module is loaded */
    cpu = tu_ctx("cpu");
    ref = tu_ctx("ref");
}

static void teardown(void)
{
    gear_context_free(cpu);
    gear_context_free(ref);
}

/* ||x - decompress(compress(x))|| / ||x|| on ctx. */
static double roundtrip_err(gear_context *ctx, const gear_config *cfg, const float *x, int H, int T, int d)
{
    size_t len;
    uint8_t *s = tu_compress(ctx, cfg, x, H, T, d, 3, &len);
    float *y = tu_decompress(ctx, s, len, H, T, d);
    double e = tu_rel_err(y, x, (size_t)H * T * d);
    free(s);
    free(y);
    return e;
}

static void quality_case(int few)
{
    double worst = 1;
    static const char *names[] = {"gear2", "gearl2", "gear4", "gearl4"};
    /* head dim 80: a 16-wide last step of the 32-wide bf16 loads (keys) */
    static const int shapes[][3] = {{2, 64 * 4 + 9, 64}, {2, 64 * 3, 128}, {2, 64 * 2, 80}};
    for (size_t si = 0; si < 3; si++)
        for (int kind = 0; kind < 2; kind++) {
            int H = shapes[si][0], T = shapes[si][1], d = shapes[si][2];
            float *x = tu_synth(900 + si * 2 + (uint64_t)kind, (gear_kind)kind, H, T, d);
            if (few) /* values in {-1, 0, 1, 2}: many equal singular values */
                for (size_t i = 0; i < (size_t)H * T * d; i++) {
                    unsigned h = (unsigned)(i * 2654435761u >> 7);
                    x[i] = (float)((h % 3) + (i % (size_t)d & 1)) - 1.0f;
                }
            for (size_t p = 0; p <= sizeof names / sizeof names[0]; p++) { /* the last: gear2 at rank 4 */
                gear_config cfg = tu_preset(names[p % 4], (gear_kind)kind);
                if (p == 4) cfg.rank = 4;
                double ec = roundtrip_err(cpu, &cfg, x, H, T, d), er = roundtrip_err(ref, &cfg, x, H, T, d);
                gear_config q = cfg;
                q.rank = 0;
                double e0 = roundtrip_err(ref, &q, x, H, T, d);
                /* the low rank's gain: at least 98 % of ref's (a factor off
                 * in one row pair of one product already costs more) */
                TU_ASSERT(e0 - ec >= 0.98 * (e0 - er) - 1e-9, "%s %s [%d,%d,%d]%s: error %.6g, ref's %.6g, %.6g without the low rank",
                          p == 4 ? "gear2 rank 4" : names[p], kind ? "V" : "K", H, T, d, few ? " few values" : "", ec, er, e0);
                if (e0 > er && (e0 - ec) / (e0 - er) < worst) worst = (e0 - ec) / (e0 - er);
            }
            free(x);
        }
    printf("%s: smallest gain of the low rank over ref's %.4f\n", few ? "few values" : "synthetic", worst);
}

START_TEST(test_bf16_quality_synthetic) { quality_case(0); }
END_TEST

START_TEST(test_bf16_quality_flat_spectrum) { quality_case(1); }
END_TEST

static Suite *bf16_suite(void)
{
    Suite *s = suite_create("bf16");
    TCase *tc = tu_tcase("bf16");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_bf16_quality_synthetic);
    tcase_add_test(tc, test_bf16_quality_flat_spectrum);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    setenv("GEAR_CPU_BF16", "1", 1);
    gear_context_params cp;
    gear_context_params_init(&cp);
    cp.backend = "cpu";
    gear_context *probe;
    if (gear_context_create(&cp, &probe) != GEAR_OK) {
        printf("SKIP: no usable cpu module here\n");
        return 77;
    }
    gear_context_free(probe);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    printf("%s\n", __builtin_cpu_supports("avx512bf16") ? "AVX512-BF16: the cpu module's bf16 products run"
                                                        : "no AVX512-BF16 on this CPU: the fp32 products run");
#endif
    return tu_run(bf16_suite(), 0);
}
