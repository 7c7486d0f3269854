/*
 * check_fp16_baseline.c - the bench's fp16-cache attention (the baseline
 * every speed-up in README is measured against, bench/fp16_attention.c)
 * computes attention: its AVX-512 kernel (where the CPU has one), its AVX2
 * kernel (the one GEAR_CPU_NO_AVX512 selects where the CPU has AVX2) and
 * its generic kernel all agree with a direct double-precision attention over
 * the same fp16 keys and values, on head dims 64, 128 and 256 (and 80,
 * 96, 112 on the shorter contexts), 1 to 5
 * query rows per KV head (a quad and a single row), and context lengths
 * whose last chunk (256 tokens long, or 512, 2048 and 4096) is short: a
 * multiple of 16 tokens with a short last 64-token value pass (the
 * AVX-512 kernel), a whole 64, and not a multiple of 16 (the generic
 * kernel in both modes).  A fast
 * baseline that computed something else would make every speed-up in the
 * bench meaningless.  Which kernels the modes ran is printed: on a CPU
 * without AVX2 all three are the generic kernel.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "testutil.h"
#include "../bench/fp16_attention.h"

/* GEAR_CPU_NO_AVX512 back to the caller's value (NULL: unset). */
static void restore_env(const char *saved)
{
    if (saved)
        setenv("GEAR_CPU_NO_AVX512", saved, 1);
    else
        unsetenv("GEAR_CPU_NO_AVX512");
}

/* Softmax(q.k * scale) v per query row, in double. */
static void direct(const uint16_t *k, const uint16_t *v, unsigned H, unsigned T, unsigned d, const float *q,
                   unsigned G, float scale, double *out)
{
    double *s = malloc(sizeof(double) * T);
    ck_assert_ptr_nonnull(s);
    for (unsigned h = 0; h < H; h++)
        for (unsigned g = 0; g < G; g++) {
            const float *qr = q + ((size_t)h * G + g) * d;
            double mx = -INFINITY, sum = 0;
            for (unsigned t = 0; t < T; t++) {
                double a = 0;
                for (unsigned c = 0; c < d; c++)
                    a += (double)qr[c] * gear_half_to_float(k[((size_t)h * T + t) * d + c]);
                s[t] = a * scale;
                mx = s[t] > mx ? s[t] : mx;
            }
            double *o = out + ((size_t)h * G + g) * d;
            for (unsigned c = 0; c < d; c++) o[c] = 0;
            for (unsigned t = 0; t < T; t++) {
                double w = exp(s[t] - mx);
                sum += w;
                for (unsigned c = 0; c < d; c++) o[c] += w * gear_half_to_float(v[((size_t)h * T + t) * d + c]);
            }
            for (unsigned c = 0; c < d; c++) o[c] /= sum;
        }
    free(s);
}

/* SplitMix64 and Box-Muller: N(0, 1) samples. */
static double normal(uint64_t *st)
{
    double u[2];
    for (int i = 0; i < 2; i++) {
        uint64_t z = (*st += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        u[i] = ((double)(z >> 11) + 0.5) / 9007199254740992.0;
    }
    return sqrt(-2.0 * log(u[0])) * cos(6.283185307179586 * u[1]);
}

static double rel_err(const float *a, const double *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return sqrt(num / den);
}

START_TEST(test_fp16_baseline_matches_direct)
{
    /* 3 heads: chunks of 256 with last chunks of 80 and 208 tokens (value
     * passes of 16), 64, and 44 and 232 (not multiples of 16; 1000 tokens
     * on one thread: 512 and 488); then chunks of 4096 (1 thread) or 2048
     * (2 threads) with a last chunk of 256, or of 904 (not a multiple of
     * 16).  Chunk lengths: chunk_len in bench/fp16_attention.c. */
    static const unsigned Ts[] = {336, 464, 576, 300, 1000, 4352, 5000};
    const unsigned H = 3;
    /* mode 1 sets GEAR_CPU_NO_AVX512; the caller's setting (a copy: setenv
     * may free the string) is put back after each use */
    const char *env = getenv("GEAR_CPU_NO_AVX512");
    char *saved = env ? strdup(env) : NULL;
    ck_assert(!env || saved);
    /* 80, 96 and 112: the AVX-512 kernel's last value pass 16, 32 or 48
     * channels wide (on the four shorter contexts) */
    static const unsigned ds[] = {64, 128, 256, 80, 96, 112};
    const size_t nd = sizeof ds / sizeof *ds;
    for (size_t di = 0; di < nd; di++) {
        unsigned d = ds[di];
        printf("fp16 baseline, head dim %u: fast mode runs the %s kernel", d, fp16_attention_kernel(d));
        setenv("GEAR_CPU_NO_AVX512", "1", 1);
        printf(", with GEAR_CPU_NO_AVX512 the %s kernel\n", fp16_attention_kernel(d));
        restore_env(saved);
    }
    for (unsigned ti = 0; ti < sizeof Ts / sizeof *Ts; ti++)
        for (size_t di = 0; di < (ti < 4 ? nd : 3); di++)
            for (unsigned G = 1; G <= 5; G++) {
                unsigned T = Ts[ti], d = ds[di];
                size_t nkv = (size_t)H * T * d, nq = (size_t)H * G * d;
                uint16_t *k = malloc(nkv * 2), *v = malloc(nkv * 2);
                float *q = malloc(nq * 4), *o = malloc(nq * 4);
                double *want = malloc(nq * 8);
                ck_assert(k && v && q && o && want);
                uint64_t r = 1000 * T + 10 * d + G;
                for (size_t i = 0; i < nkv; i++) {
                    k[i] = gear_float_to_half((float)normal(&r) * (i % d == 5 ? 6.0f : 1.0f));
                    v[i] = gear_float_to_half((float)normal(&r));
                }
                for (size_t i = 0; i < nq; i++) q[i] = (float)normal(&r);
                float scale = 1.0f / sqrtf((float)d);
                direct(k, v, H, T, d, q, G, scale, want);
                /* modes: the fastest kernel, the one GEAR_CPU_NO_AVX512 leaves
                 * (the AVX2 kernel where the CPU has AVX2), the generic one */
                for (int mode = 0; mode <= 2; mode++)
                    for (int threads = 1; threads <= 2; threads++) {
                        fp16_attention_generic = mode == 2;
                        if (mode == 1) setenv("GEAR_CPU_NO_AVX512", "1", 1);
                        const char *kern = mode == 2 ? "generic" : fp16_attention_kernel(d);
                        ck_assert_int_eq(fp16_attention(k, v, H, T, d, q, G, scale, o, threads), 0);
                        restore_env(saved);
                        double e = rel_err(o, want, nq);
                        ck_assert_msg(e < 1e-5, "T %u d %u G %u mode %d (%s kernel), %d threads: rel. error %.3g", T,
                                      d, G, mode, kern, threads, e);
                    }
                fp16_attention_generic = 0;
                free(k), free(v), free(q), free(o), free(want);
            }
    free(saved);
}
END_TEST

static Suite *fp16_baseline_suite(void)
{
    Suite *s = suite_create("fp16_baseline");
    TCase *tc = tu_tcase("attention");
    tcase_add_test(tc, test_fp16_baseline_matches_direct);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(fp16_baseline_suite(), 0); }
