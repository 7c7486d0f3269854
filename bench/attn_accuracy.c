/*
 * attn_accuracy.c - gear-attn-accuracy: how far a backend's decode
 * attention over a compressed cache is from ref's over the same cache, on
 * data meant to stress its arithmetic rather than its compression: sink
 * tokens, a few large key channels, keys and values across fp16's range,
 * sink tokens in keys and values, and real keys and values of SmolLM2
 * (tests/data).  Both backends hold the same codes, so any difference is
 * the attention kernel's.  Prints the normalized mean squared error
 * ||out - ref||^2 / ||ref||^2 per preset, head dim and query heads per
 * KV head, and the largest per case.  Run it as it is and with
 * GEAR_CPU_NO_VNNI=1 (the cpu module's float kernel) to compare the cpu
 * module's two AVX-512 kernels.
 *
 *   bench/gear-attn-accuracy [--backend NAME] [--data FILE]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gear.h>
#include "../tools/gear/safetensors.h"
#include "../tools/gear/synth.h"

#define HKV 3
#define T_LEN 1024
#define N_CASES 6

static const char *const case_names[N_CASES] = {"ordinary", "sink-keys", "large-channels", "fp16-range",
                                                "sink-kv", "smollm2-l29"};
static const char *const presets[] = {"kivi2", "gear2", "kivi4", "kcvt4", "gear4"};
#define N_PRESETS (sizeof presets / sizeof presets[0])

static void die(const char *what)
{
    fprintf(stderr, "gear-attn-accuracy: %s: %s\n", what, gear_last_error_message());
    exit(1);
}

/* splitmix64, for the adversarial entries */
static double rand01(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (double)((z ^ (z >> 31)) >> 11) / 9007199254740992.0;
}

/* x rounded to the nearest fp16 value (|x| <= 65504). */
static float to_half(float x)
{
    if (fabsf(x) < 6.103515625e-05f) return ldexpf(rintf(ldexpf(x, 24)), -24);
    int e;
    float m = frexpf(x, &e);
    return ldexpf(rintf(ldexpf(m, 11)), e - 11);
}

static float *k29, *v29; /* layer 29 of the sample, [3][1024][64], or NULL */

static void load_real(const char *path)
{
    st_file *sf = NULL;
    char err[256];
    if (st_open(path, &sf, err, sizeof err)) {
        fprintf(stderr, "gear-attn-accuracy: %s (the real-data case is skipped)\n", err);
        return;
    }
    const st_tensor *tk = st_find(sf, "layer.29.k"), *tv = st_find(sf, "layer.29.v");
    size_t n = (size_t)HKV * T_LEN * 64;
    if (tk && tv && (size_t)tk->count == n && (size_t)tv->count == n) {
        k29 = malloc(n * sizeof(float));
        v29 = malloc(n * sizeof(float));
        if (!k29 || !v29 || st_read_f32(sf, tk, k29, err, sizeof err) || st_read_f32(sf, tv, v29, err, sizeof err)) {
            free(k29);
            free(v29);
            k29 = v29 = NULL;
        }
    }
    if (!k29) fprintf(stderr, "gear-attn-accuracy: %s: no layer 29 of [3][1024][64] (skipped)\n", path);
    st_close(sf);
}

/* K, V [HKV][T_LEN][d] and q [HKV*G][d] for case c; 0 if it cannot run. */
static int make_case(int c, int d, int G, float *k, float *v, float *q)
{
    static const int chans[] = {3, 17, 40, 41};
    size_t n = (size_t)HKV * T_LEN * d, qn = (size_t)HKV * G * d;
    uint64_t st = 77;
    gear_synth_kv(11 + (uint64_t)d, GEAR_KEY, HKV, T_LEN, d, k);
    gear_synth_kv(21 + (uint64_t)d, GEAR_VALUE, HKV, T_LEN, d, v);
    gear_synth_normal(99 + (uint64_t)G, (int)qn, q);
    for (size_t i = 0; i < qn; i++) q[i] *= 2.0f; /* a peaked softmax */
    switch (c) {
    case 1: /* keys +-1000 at positions 0 and 1 */
    case 4: /* and values too */
        for (int h = 0; h < HKV; h++)
            for (int t = 0; t < 2; t++)
                for (int j = 0; j < d; j++) {
                    size_t i = ((size_t)h * T_LEN + t) * d + (size_t)j;
                    k[i] = rand01(&st) < 0.5 ? -1000.0f : 1000.0f;
                    if (c == 4) v[i] = rand01(&st) < 0.5 ? -1000.0f : 1000.0f;
                }
        break;
    case 2: /* four key channels 25 times the rest, the query's 4 times */
        for (size_t r = 0; r < n / (size_t)d; r++)
            for (int j = 0; j < 4; j++) k[r * (size_t)d + (size_t)chans[j]] *= 25.0f;
        for (size_t r = 0; r < qn / (size_t)d; r++)
            for (int j = 0; j < 4; j++) q[r * (size_t)d + (size_t)chans[j]] *= 4.0f;
        break;
    case 3: /* K, V uniform in fp16's range; small queries: logits near a thousand */
        for (size_t i = 0; i < n; i++) {
            k[i] = to_half((float)(rand01(&st) * 131008.0 - 65504.0));
            v[i] = to_half((float)(rand01(&st) * 131008.0 - 65504.0));
        }
        for (size_t i = 0; i < qn; i++) q[i] *= 1e-3f;
        break;
    case 5: /* real K, V; each query head near a random earlier key */
        if (!k29 || d != 64) return 0;
        memcpy(k, k29, n * sizeof(float));
        memcpy(v, v29, n * sizeof(float));
        for (int h = 0; h < HKV * G; h++) {
            size_t t = (size_t)(rand01(&st) * T_LEN);
            for (int j = 0; j < d; j++)
                q[(size_t)h * d + j] = k[((size_t)(h / G) * T_LEN + t) * d + j] + 0.25f * q[(size_t)h * d + j];
        }
        break;
    }
    return 1;
}

static void attend(gear_context *ctx, const char *preset, float *k, float *v, float *q, int d, int G, float *out)
{
    gear_config ck, cv;
    gear_cache *c = NULL;
    gear_tensor tk, tv, tq, to;
    if (gear_config_preset(preset, GEAR_KEY, &ck) || gear_config_preset(preset, GEAR_VALUE, &cv)) die(preset);
    if (gear_cache_create(ctx, &ck, &cv, 1, HKV, (unsigned)d, T_LEN, &c)) die("gear_cache_create");
    if (gear_tensor_init(&tk, k, GEAR_F32, 3, HKV, T_LEN, d, 0) || gear_tensor_init(&tv, v, GEAR_F32, 3, HKV, T_LEN, d, 0) ||
        gear_tensor_init(&tq, q, GEAR_F32, 3, HKV * G, 1, d, 0) || gear_tensor_init(&to, out, GEAR_F32, 3, HKV * G, 1, d, 0))
        die("gear_tensor_init");
    if (gear_cache_append(c, 0, &tk, &tv)) die("gear_cache_append");
    if (gear_cache_attention(c, 0, &tq, 1.0f / sqrtf((float)d), &to)) die("gear_cache_attention");
    gear_cache_free(c);
}

static double nmse(const float *a, const float *b, size_t n)
{
    double e = 0, r = 0;
    for (size_t i = 0; i < n; i++) {
        e += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? e / r : e;
}

static gear_context *context(const char *backend)
{
    gear_context_params p;
    gear_context *ctx = NULL;
    gear_context_params_init(&p);
    p.backend = backend;
    if (gear_context_create(&p, &ctx)) die(backend);
    return ctx;
}

int main(int argc, char **argv)
{
    const char *backend = "cpu", *data = "tests/data/smollm2-135m-persuasion-kv.safetensors";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            backend = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc)
            data = argv[++i];
        else {
            fprintf(stderr, "usage: gear-attn-accuracy [--backend NAME] [--data FILE]\n");
            return 2;
        }
    }
    load_real(data);
    gear_context *be = context(backend), *ref = context("ref");
    size_t n = (size_t)HKV * T_LEN * 128, qn = (size_t)HKV * 4 * 128;
    float *k = malloc(n * sizeof(float)), *v = malloc(n * sizeof(float)), *q = malloc(qn * sizeof(float));
    float *oa = malloc(qn * sizeof(float)), *ob = malloc(qn * sizeof(float));
    if (!k || !v || !q || !oa || !ob) {
        fprintf(stderr, "gear-attn-accuracy: out of memory\n");
        return 1;
    }
    const char *vnni = getenv("GEAR_CPU_NO_VNNI");
    printf("# attention NMSE, %s vs ref on the same cache: %d KV heads x %d tokens, one query token, "
           "scale 1/sqrt(d)%s\n",
           gear_context_backend_name(be), HKV, T_LEN, vnni ? " (GEAR_CPU_NO_VNNI set)" : "");
    printf("%-15s %4s %2s", "case", "d", "G");
    for (size_t p = 0; p < N_PRESETS; p++) printf(" %9s", presets[p]);
    printf("\n");
    for (int c = 0; c < N_CASES; c++) {
        double worst = 0;
        int ran = 0;
        for (int d = 64; d <= 128; d *= 2)
            for (int G = 1; G <= 4; G += 3) {
                if (!make_case(c, d, G, k, v, q)) continue;
                printf("%-15s %4d %2d", case_names[c], d, G);
                for (size_t p = 0; p < N_PRESETS; p++) {
                    attend(ref, presets[p], k, v, q, d, G, oa);
                    attend(be, presets[p], k, v, q, d, G, ob);
                    double e = nmse(ob, oa, (size_t)HKV * G * d);
                    worst = e > worst ? e : worst;
                    printf(" %9.2e", e);
                }
                printf("\n");
                ran = 1;
            }
        if (ran) printf("%-15s largest %.2e\n", case_names[c], worst);
    }
    free(k);
    free(v);
    free(q);
    free(oa);
    free(ob);
    gear_context_free(be);
    gear_context_free(ref);
    return 0;
}
