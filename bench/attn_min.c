/*
 * attn_min.c - gear-attn-min: the fastest of N calls of gear_cache_attention
 * over one layer held in cache, as ns per (KV head, 64-token block) pair,
 * for A/B comparisons of kernel changes.
 *
 * On these VMs a median drifts with the machine's state (the same build's
 * in-cache medians moved by 1.5x between runs on the Zen 3 VM); the minimum
 * of many short calls is what the code itself allows, and on that VM it
 * stayed within 1 % from round to round but in rounds that caught the
 * slow state throughout.  It says nothing about memory traffic (gear-bench
 * --only attn does) and is not a speed-up: compare two builds by running
 * this program alternately against each (LD_LIBRARY_PATH), in several
 * rounds, and take each build's fastest.
 *
 *   gear-attn-min PRESET TOKENS HEAD_DIM G [THREADS [CALLS]]
 *
 * 8 KV heads, G query heads each, one query token; synthetic KV (synth.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <gear.h>
#include "bench_util.h"
#include "../tools/gear/synth.h"

#define CHECK(call)                                                                         \
    do {                                                                                    \
        gear_status st_ = (call);                                                           \
        if (st_) {                                                                          \
            fprintf(stderr, "gear-attn-min: %s: %s\n", #call, gear_last_error_message());  \
            return 1;                                                                       \
        }                                                                                   \
    } while (0)

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: gear-attn-min PRESET TOKENS HEAD_DIM G [THREADS [CALLS]]\n");
        return 2;
    }
    const char *preset = argv[1];
    const int T = atoi(argv[2]), d = atoi(argv[3]), G = atoi(argv[4]), H = 8;
    const int threads = argc > 5 ? atoi(argv[5]) : 1, calls = argc > 6 ? atoi(argv[6]) : 800;
    if (T < 64 || d < 1 || G < 1 || threads < 1 || calls < 1) {
        fprintf(stderr, "gear-attn-min: TOKENS >= 64, HEAD_DIM, G, THREADS and CALLS >= 1\n");
        return 2;
    }
    gear_context_params p;
    gear_context_params_init(&p);
    p.n_threads = threads;
    gear_context *ctx;
    CHECK(gear_context_create(&p, &ctx));
    gear_config ck, cv;
    CHECK(gear_config_preset(preset, GEAR_KEY, &ck));
    CHECK(gear_config_preset(preset, GEAR_VALUE, &cv));
    gear_cache *c;
    CHECK(gear_cache_create(ctx, &ck, &cv, 1, (unsigned)H, (unsigned)d, (unsigned)T, &c));
    size_t n = (size_t)H * T * d, nq = (size_t)H * G * d;
    float *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v), *q = malloc(nq * sizeof *q),
          *o = malloc(nq * sizeof *o);
    if (!k || !v || !q || !o) {
        fprintf(stderr, "gear-attn-min: out of memory\n");
        return 1;
    }
    gear_synth_kv(1, GEAR_KEY, H, T, d, k);
    gear_synth_kv(2, GEAR_VALUE, H, T, d, v);
    gear_synth_normal(3, (int)nq, q);
    gear_tensor tk, tv, tq, to;
    CHECK(gear_tensor_init(&tk, k, GEAR_F32, 3, H, T, d, 0));
    CHECK(gear_tensor_init(&tv, v, GEAR_F32, 3, H, T, d, 0));
    CHECK(gear_cache_append(c, 0, &tk, &tv));
    CHECK(gear_tensor_init(&tq, q, GEAR_F32, 3, H * G, 1, d, 0));
    CHECK(gear_tensor_init(&to, o, GEAR_F32, 3, H * G, 1, d, 0));
    double best = 1e30;
    for (int i = 0; i < calls; i++) {
        double t = bench_seconds();
        CHECK(gear_cache_attention(c, 0, &tq, 0.125f, &to));
        t = bench_seconds() - t;
        if (t < best) best = t;
    }
    printf("%s T %d d %d G %d threads %d backend %s: fastest of %d calls %.2f us, %.1f ns a pair a thread\n",
           preset, T, d, G, threads, gear_context_backend_name(ctx), calls, best * 1e6,
           best * 1e9 * threads / (H * (T / 64.0)));
    gear_cache_free(c);
    gear_context_free(ctx);
    free(k), free(v), free(q), free(o);
    return 0;
}
