/*
 * gear_bench.c - `make bench`: libgear's speed as ratios against baselines
 * measured in the same run, on the same machine (medians of repeats):
 *
 *   bw     memcpy and read bandwidth (1 thread and all threads);
 *   codec  gear_compress / gear_decompress throughput per preset, backend
 *          and thread count, in GB/s of fp16 KV, and as a ratio to memcpy
 *          and read bandwidth, and compression per thread against
 *          llama.cpp's q4_0 quantizer on one thread (bench/q4_0_baseline.c);
 *   attn   one decode step (attention of one query token in every layer)
 *          over a compressed cache vs over an fp16 cache (bench/
 *          fp16_attention.c), 8 KV heads, head_dim 64/128, 1 and 4 query
 *          heads per KV head, 1k..32k tokens, with as many layers as it
 *          takes for the *compressed* kivi2 cache to exceed the last-level
 *          cache several times over (3x by default, --llc-mult): every
 *          step streams from DRAM.  Every timed repeat has a read pass
 *          (4x the LLC) right before it and, for a compressed cache, an
 *          fp16 step right after it: /read and the speed-up are medians
 *          of these per-repeat ratios, since the machine's bandwidth can
 *          drift within a run.
 *
 * Output: a table on stdout and JSON lines (--json FILE).  Absolute times
 * appear only next to the ratio they feed.
 */
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <gear.h>
#include <gear/backend.h>
#include "bench_util.h"
#include "fp16_attention.h"
#include "isa_floor.h"
#include "lowrank_blas.h"
#include "q4_0_baseline.h"
#include "read_bw.h"
#include "../tools/gear/synth.h"

#define MAX_REP 15

static FILE *jf; /* JSON lines, or NULL */
static int reps = 7;
static double llc_mult = 3.0; /* the kivi2 cache is this many times the LLC */
static double q4_gbs;         /* the q4_0 baseline of this run, GB/s of fp32 */

static void *xmalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        fprintf(stderr, "gear-bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void check(gear_status st, const char *what)
{
    if (st != GEAR_OK) {
        fprintf(stderr, "gear-bench: %s: %s (%s)\n", what, gear_status_string(st),
                gear_last_error_message());
        exit(1);
    }
}

/* A preset name, or one with overrides after colons: gear2:r4 (rank 4),
 * gear2:s0.05 (outlier ratio 0.05), gear2:r4:s0.05, for the layouts the
 * presets do not name (--only layouts); not on CQ presets, whose caches
 * are calibrated by name. */
static gear_status spec_config(const char *spec, gear_kind kind, gear_config *cfg)
{
    char name[32];
    const char *c = strchr(spec, ':');
    size_t n = c ? (size_t)(c - spec) : strlen(spec);
    if (n >= sizeof name) return GEAR_ERR_UNKNOWN_PRESET;
    memcpy(name, spec, n);
    name[n] = 0;
    gear_status st = gear_config_preset(name, kind, cfg);
    if (!st && c && cfg->cq_dim) return GEAR_ERR_INVALID_ARG;
    while (!st && c) {
        const char *o = c + 1;
        char *end;
        c = strchr(o, ':');
        if (*o == 'r') {
            long r = strtol(o + 1, &end, 10);
            if (end == o + 1 || (*end && *end != ':') || r < 0 || r > 255) return GEAR_ERR_INVALID_ARG;
            cfg->rank = (unsigned)r;
            if (r && !cfg->iters) cfg->iters = 3;
        } else if (*o == 's') {
            double x = strtod(o + 1, &end);
            if (end == o + 1 || (*end && *end != ':')) return GEAR_ERR_INVALID_ARG;
            cfg->outlier_ratio = (float)x;
        } else {
            return GEAR_ERR_INVALID_ARG;
        }
    }
    return st ? st : gear_config_validate(cfg, 128);
}

/* ------------------------------------------------------------ bandwidth */

/* Read one small sysfs file of CPU 0's cache index i; 0 if absent. */
static int cache_attr(int i, const char *name, char *buf, size_t len)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/%s", i, name);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    int ok = fgets(buf, (int)len, f) != NULL;
    fclose(f);
    return ok;
}

/* The largest unified cache of level 3 or more that CPU 0 reports in
 * sysfs: the cache its cores can use; 0 when there is none (an L2 is not
 * taken for the LLC, or the baselines would fit in a real L3).  glibc's
 * _SC_LEVEL3_CACHE_SIZE is only the fallback, because on AMD EPYC it
 * reports the L3 of the whole package (384 MiB on a 12-CCD Zen 5 part,
 * while one core reaches its CCD's 32 MiB). */
static size_t sysfs_llc_bytes(void)
{
    size_t best = 0;
    for (int i = 0; i < 16; i++) {
        char level[16], type[32], size[32];
        if (!cache_attr(i, "level", level, sizeof level) || atoi(level) < 3) continue;
        if (!cache_attr(i, "type", type, sizeof type) || strncmp(type, "Unified", 7)) continue;
        if (!cache_attr(i, "size", size, sizeof size)) continue;
        char *end;
        unsigned long v = strtoul(size, &end, 10);
        size_t bytes = v;
        if (*end == 'K' || *end == 'k') bytes = (size_t)v << 10;
        else if (*end == 'M') bytes = (size_t)v << 20;
        else if (*end == 'G') bytes = (size_t)v << 30;
        if (bytes > best) best = bytes;
    }
    return best;
}

static size_t llc_bytes(void)
{
    size_t s = sysfs_llc_bytes();
    if (s >= ((size_t)1 << 20)) return s;
    long v = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    v = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return v > 0 ? (size_t)v : (size_t)32 << 20;
}

static void memcpy_par(char *dst, const char *src, size_t n, int threads)
{
#pragma omp parallel num_threads(threads)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        size_t per = ((n + (size_t)nt - 1) / (size_t)nt + 63) / 64 * 64, a = per * (size_t)t;
        if (a < n) memcpy(dst + a, src + a, a + per < n ? per : n - a);
    }
}

/* One timed read of a buffer on `threads` threads: the read-bandwidth
 * baseline (bench/read_bw.c: the fastest reading loop, chosen per thread
 * count by measure_bw).  The attention bench runs one over 4x the LLC
 * right before every timed repeat: on this shared VM the bandwidth drifts
 * by tens of percent within a run, so each repeat is set against its own
 * pass. */
typedef struct reader { const uint64_t *p; size_t n; int threads; } reader;

#define MAX_THREADS_READ 1024
static unsigned read_loop[MAX_THREADS_READ + 1]; /* by thread count; 0 until chosen */
static int read_loop_set[MAX_THREADS_READ + 1];

static unsigned loop_for(const reader *rd)
{
    int th = rd->threads;
    if (th < 1 || th > MAX_THREADS_READ) th = 1;
    if (!read_loop_set[th]) {
        read_loop[th] = read_bw_choose(rd->p, rd->n, rd->threads);
        read_loop_set[th] = 1;
    }
    return read_loop[th];
}

static double read_pass(const reader *rd) { return read_bw_pass(loop_for(rd), rd->p, rd->n, rd->threads); }

typedef struct bw { double read_gbs, memcpy_gbs; } bw;

static bw measure_bw(size_t bytes, int threads)
{
    char *a = xmalloc(bytes), *b = xmalloc(bytes);
    memset(a, 1, bytes);
    memset(b, 2, bytes);
    double tr[MAX_REP], tc[MAX_REP];
    const reader rd = {(const uint64_t *)a, bytes / 8, threads};
    (void)loop_for(&rd); /* the reading loop for this thread count, chosen over this buffer */
    for (int r = 0; r < reps; r++) {
        tr[r] = read_pass(&rd);
        double t0 = bench_seconds();
        memcpy_par(b, a, bytes, threads);
        tc[r] = bench_seconds() - t0;
    }
    free(a);
    free(b);
    /* memcpy: bytes copied per second (each byte is read and written) */
    return (bw){bytes / bench_median(tr, reps) / 1e9, bytes / bench_median(tc, reps) / 1e9};
}

/* ---------------------------------------------------------------- data */

/* Synthetic KV of one layer, fp16 [H][T][d] (keys and values). */
static uint16_t *make_kv(gear_kind kind, int H, int T, int d, uint64_t seed)
{
    size_t n = (size_t)H * T * d;
    float *f = xmalloc(n * sizeof(float));
    gear_synth_kv(seed, kind, H, T, d, f);
    uint16_t *h = xmalloc(n * sizeof(uint16_t));
    for (size_t i = 0; i < n; i++) h[i] = gear_float_to_half(f[i]);
    free(f);
    return h;
}

static gear_context *make_ctx(const char *backend, int threads)
{
    gear_context_params p;
    gear_context_params_init(&p);
    p.backend = backend;
    p.n_threads = threads;
    gear_context *c = NULL;
    return gear_context_create(&p, &c) == GEAR_OK ? c : NULL;
}

/* ---------------------------------------------------------------- codec */

/* Each repeat compresses its own copy of the input, and the copies
 * together exceed twice the LLC, written oldest first: the input of every
 * repeat comes from DRAM, like the bandwidth baselines it is compared with. */
static void **input_copies(const void *src, size_t bytes, size_t llc, int *ncopies)
{
    size_t want = (2 * llc + bytes - 1) / bytes;
    int n = want > (size_t)reps ? (int)want : reps;
    void **c = xmalloc(sizeof(*c) * (size_t)n);
    for (int i = 0; i < n; i++) {
        c[i] = xmalloc(bytes);
        memcpy(c[i], src, bytes);
    }
    *ncopies = n;
    return c;
}

static void free_copies(void **c, int n)
{
    for (int i = 0; i < n; i++) free(c[i]);
    free(c);
}

/* One codec row: the table line and its JSON line (kind_json: the JSON
 * value of "kind", and any fields after it); in = fp16 bytes, cg and dg
 * GB/s of them. */
static void codec_report(const char *backend, const char *preset, const char *kind, const char *kind_json,
                         int threads, int H, int T, int d, size_t in, size_t len, double cg, double dg, bw base)
{
    printf("%-6s %-14s %-2s %2d   %8.3f %8.3f %7.3f %6.2f   %8.3f %7.3f %7.3f\n", backend, preset, kind, threads, cg,
           cg / threads, cg / base.memcpy_gbs, cg / threads / q4_gbs, dg, dg / base.memcpy_gbs, dg / base.read_gbs);
    if (jf)
        fprintf(jf,
                "{\"bench\":\"codec\",\"backend\":\"%s\",\"preset\":\"%s\",\"kind\":%s,"
                "\"threads\":%d,\"H\":%d,\"T\":%d,\"d\":%d,\"fp16_bytes\":%zu,\"compressed_bytes\":%zu,"
                "\"compress_gbs\":%.4f,\"compress_gbs_per_thread\":%.4f,\"decompress_gbs\":%.4f,"
                "\"compress_over_memcpy\":%.4f,\"compress_over_read\":%.4f,\"compress_per_thread_over_q4_0\":%.4f,"
                "\"decompress_over_memcpy\":%.4f,\"decompress_over_read\":%.4f}\n",
                backend, preset, kind_json, threads, H, T, d, in, len, cg, cg / threads, dg, cg / base.memcpy_gbs,
                cg / base.read_gbs, cg / threads / q4_gbs, dg / base.memcpy_gbs, dg / base.read_gbs);
}

static void bench_codec(const char *backend, int threads, const char *preset, const uint16_t *kv[2],
                        int H, int T, int d, bw base, size_t llc)
{
    gear_context *ctx = make_ctx(backend, threads);
    if (!ctx) return;
    for (int kind = 0; kind < 2; kind++) {
        gear_config cfg;
        check(spec_config(preset, (gear_kind)kind, &cfg), "preset");
        gear_tensor x, y;
        size_t cap, len = 0, in = (size_t)H * T * d * 2;
        int ncopies;
        void **copies = input_copies(kv[kind], in, llc, &ncopies);
        check(gear_tensor_init(&x, copies[0], GEAR_F16, 3, H, T, d, 0), "tensor");
        check(gear_compress_bound(&cfg, &x, &cap), "bound");
        void *dst = xmalloc(cap);
        uint16_t *out = xmalloc(in);
        check(gear_tensor_init(&y, out, GEAR_F16, 3, H, T, d, 0), "tensor");
        double tc[MAX_REP], td[MAX_REP];
        for (int r = 0; r < reps; r++) {
            x.data = copies[r]; /* the oldest copies: evicted from the LLC */
            double t0 = bench_seconds();
            check(gear_compress(ctx, &cfg, &x, 0, dst, cap, &len), "compress");
            tc[r] = bench_seconds() - t0;
            t0 = bench_seconds();
            check(gear_decompress(ctx, dst, len, &y), "decompress");
            td[r] = bench_seconds() - t0;
        }
        codec_report(backend, preset, kind ? "V" : "K", kind ? "\"value\"" : "\"key\"", threads, H, T, d, in, len,
                     in / bench_median(tc, reps) / 1e9, in / bench_median(td, reps) / 1e9, base);
        free(dst);
        free(out);
        free_copies(copies, ncopies);
    }
    gear_context_free(ctx);
}

/* CQ presets through a calibrated cache (streams carry no codebook, so
 * gear_compress refuses them): each repeat appends K and V (fp16, from
 * copies evicted from the LLC) to a fresh one-layer cache and decompresses
 * them back; GB/s of fp16 K+V.  The codebooks are fitted once, outside the
 * timing, on the same data (as bench_attn does). */
static gear_calib *cq_calib(const char *preset, int L, const gear_tensor *k, const gear_tensor *v);
static void bench_codec_cq(int threads, const char *preset, const uint16_t *kv[2], int H, int T, int d, bw base,
                           size_t llc)
{
    gear_context *ctx = make_ctx("cpu", threads);
    if (!ctx) return;
    size_t in = (size_t)H * T * d * 2;
    int nk, nv;
    void **ck = input_copies(kv[0], in, llc, &nk), **cv = input_copies(kv[1], in, llc, &nv);
    gear_tensor tk, tv, yk, yv;
    uint16_t *ok = xmalloc(in), *ov = xmalloc(in);
    check(gear_tensor_init(&tk, ck[0], GEAR_F16, 3, H, T, d, 0), "tensor");
    check(gear_tensor_init(&tv, cv[0], GEAR_F16, 3, H, T, d, 0), "tensor");
    check(gear_tensor_init(&yk, ok, GEAR_F16, 3, H, T, d, 0), "tensor");
    check(gear_tensor_init(&yv, ov, GEAR_F16, 3, H, T, d, 0), "tensor");
    gear_config cfk, cfv;
    check(gear_config_preset(preset, GEAR_KEY, &cfk), "preset");
    check(gear_config_preset(preset, GEAR_VALUE, &cfv), "preset");
    gear_calib *cal = cq_calib(preset, 1, &tk, &tv);
    double tc[MAX_REP], td[MAX_REP];
    size_t len = 0;
    for (int r = 0; r < reps; r++) {
        gear_cache *c = NULL;
        check(gear_cache_create_calibrated(ctx, &cfk, &cfv, cal, 1, (unsigned)H, (unsigned)d, (unsigned)T, &c),
              "cache");
        tk.data = ck[r];
        tv.data = cv[r];
        double t0 = bench_seconds();
        check(gear_cache_append(c, 0, &tk, &tv), "append");
        tc[r] = bench_seconds() - t0;
        t0 = bench_seconds();
        check(gear_cache_decompress(c, 0, &yk, &yv), "decompress");
        td[r] = bench_seconds() - t0;
        gear_cache_stats st;
        check(gear_cache_stats_get(c, &st), "stats");
        len = (size_t)st.compressed_bytes;
        gear_cache_free(c);
    }
    codec_report("cpu", preset, "KV", "\"kv\",\"path\":\"cache\"", threads, H, T, d, 2 * in, len,
                 2.0 * in / bench_median(tc, reps) / 1e9, 2.0 * in / bench_median(td, reps) / 1e9, base);
    gear_calib_free(cal);
    free(ok);
    free(ov);
    free_copies(ck, nk);
    free_copies(cv, nv);
    gear_context_free(ctx);
}

/* ---------------------------------------------------------------- prefill */

/* A prefill: a fresh one-layer cache takes [H, T, d] K and V in one
 * append, per input type: fp16 and bf16 ([H, T, d]), fp32 [H, T, d], and
 * fp32 token-major ([T, H, d] behind a strided view, the way an engine's
 * projections come out), each repeat from its own copies (evicted from
 * the LLC).  Timed: the append, with the cache's first allocation and page
 * faults (a new sequence's cache).  GB/s of fp16-equivalent KV (2 bytes an
 * element, so that every input type does the same work per byte), and
 * that over memcpy at the same thread count. */
static void bench_prefill(int threads, const char *preset, const uint16_t *kv[2], int H, int T, int d, bw base,
                          size_t llc)
{
    gear_context *ctx = make_ctx("cpu", threads);
    if (!ctx) return;
    gear_config cfk, cfv;
    check(gear_config_preset(preset, GEAR_KEY, &cfk), "preset");
    check(gear_config_preset(preset, GEAR_VALUE, &cfv), "preset");
    size_t n = (size_t)H * T * d, fp16_bytes = 2 * n * 2;
    static const char *names[] = {"f16", "bf16", "f32", "f32-TH"};
    for (int ty = 0; ty < 4; ty++) {
        size_t esz = ty < 2 ? 2 : 4;
        void *in[2];
        for (int kind = 0; kind < 2; kind++) { /* the same values in the input type and layout */
            in[kind] = xmalloc(n * esz);
            for (int h = 0; h < H; h++)
                for (int t = 0; t < T; t++)
                    for (int c = 0; c < d; c++) {
                        size_t from = ((size_t)h * T + t) * d + c, to = ty == 3 ? ((size_t)t * H + h) * d + c : from;
                        float x = gear_half_to_float(kv[kind][from]);
                        if (ty == 0) ((uint16_t *)in[kind])[to] = kv[kind][from];
                        else if (ty == 1) ((uint16_t *)in[kind])[to] = gear_float_to_bf16(x);
                        else ((float *)in[kind])[to] = x;
                    }
        }
        int nk, nv;
        void **ck = input_copies(in[0], n * esz, llc, &nk), **cv = input_copies(in[1], n * esz, llc, &nv);
        gear_dtype dt = ty == 0 ? GEAR_F16 : ty == 1 ? GEAR_BF16 : GEAR_F32;
        gear_tensor tk, tv;
        check(gear_tensor_init(&tk, ck[0], dt, 3, H, T, d, 0), "tensor");
        check(gear_tensor_init(&tv, cv[0], dt, 3, H, T, d, 0), "tensor");
        if (ty == 3) {
            tk.strides[0] = tv.strides[0] = d;
            tk.strides[1] = tv.strides[1] = (int64_t)H * d;
        }
        double ta[MAX_REP];
        for (int r = 0; r < reps; r++) {
            gear_cache *c = NULL;
            check(gear_cache_create(ctx, &cfk, &cfv, 1, (unsigned)H, (unsigned)d, (unsigned)T, &c), "cache");
            tk.data = ck[r];
            tv.data = cv[r];
            double t0 = bench_seconds();
            check(gear_cache_append(c, 0, &tk, &tv), "append");
            ta[r] = bench_seconds() - t0;
            gear_cache_free(c);
        }
        double g = fp16_bytes / bench_median(ta, reps) / 1e9;
        printf("%-7s %-6s %2d   %8.3f %8.3f\n", preset, names[ty], threads, g, g / base.memcpy_gbs);
        if (jf)
            fprintf(jf,
                    "{\"bench\":\"prefill\",\"backend\":\"cpu\",\"preset\":\"%s\",\"input\":\"%s\",\"threads\":%d,"
                    "\"H\":%d,\"T\":%d,\"d\":%d,\"fp16_bytes\":%zu,\"gbs\":%.4f,\"over_memcpy\":%.4f}\n",
                    preset, names[ty], threads, H, T, d, fp16_bytes, g, g / base.memcpy_gbs);
        free_copies(ck, nk);
        free_copies(cv, nv);
        free(in[0]);
        free(in[1]);
    }
    gear_context_free(ctx);
}

/* The compress target's baseline: llama.cpp's q4_0 quantizer (ggml's CPU
 * reference, bench/q4_0_baseline.c) on one thread over the same key
 * tensor as fp32, each repeat on its own copy from DRAM.  Returns GB/s of
 * fp32 input; prints it with the reconstruction error (the check that the
 * work was done). */
static double bench_q4_0(const uint16_t *k16, int H, int T, int d, size_t llc)
{
    size_t n = (size_t)H * T * d, in = n * sizeof(float);
    float *x = xmalloc(in);
    for (size_t i = 0; i < n; i++) x[i] = gear_half_to_float(k16[i]);
    int ncopies;
    void **copies = input_copies(x, in, llc, &ncopies);
    uint8_t *q = xmalloc(n / Q4_0_BLOCK * Q4_0_BYTES);
    double t[MAX_REP];
    for (int r = 0; r < reps; r++) {
        double t0 = bench_seconds();
        q4_0_quantize(copies[r], n, q);
        t[r] = bench_seconds() - t0;
    }
    double e2 = 0, x2 = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)x[i] - q4_0_value(q + i / Q4_0_BLOCK * Q4_0_BYTES, (unsigned)(i % Q4_0_BLOCK));
        e2 += e * e;
        x2 += (double)x[i] * x[i];
    }
    double g = in / bench_median(t, reps) / 1e9;
    printf("baseline: llama.cpp q4_0 quantizer (ggml CPU reference), 1 thread: %.3f GB/s of fp32 "
           "(rel. error %.3f)\n", g, sqrt(e2 / x2));
    if (jf)
        fprintf(jf, "{\"bench\":\"q4_0\",\"threads\":1,\"H\":%d,\"T\":%d,\"d\":%d,\"fp32_bytes\":%zu,"
                    "\"quantize_gbs\":%.4f,\"rel_error\":%.4f}\n", H, T, d, in, g, sqrt(e2 / x2));
    free_copies(copies, ncopies);
    free(q);
    free(x);
    return g;
}

/* ------------------------------------------------------------ attention */

typedef struct attn_shape { int T, d, G; } attn_shape;

/* Repeat times t and their read passes tr, for `bytes` read per repeat. */
typedef struct paced { double t, read_gbs, over_read; } paced;

static paced pace(double *t, double *tr, double bytes, const reader *rd)
{
    double g[MAX_REP], ratio[MAX_REP];
    for (int r = 0; r < reps; r++) {
        g[r] = (double)rd->n * 8 / tr[r] / 1e9;
        ratio[r] = bytes / t[r] / 1e9 / g[r];
    }
    return (paced){bench_median(t, reps), bench_median(g, reps), bench_median(ratio, reps)};
}

/* The fp16 cache of one shape: L layers of [H][T][d] keys and values. */
typedef struct fp16_cache { uint16_t *const *k, *const *v; int L, H, T, d, G, threads; } fp16_cache;

/* One decode step over every layer of an fp16 cache: seconds. */
static double fp16_step(const fp16_cache *c, const float *q, float *out)
{
    double t0 = bench_seconds();
    for (int l = 0; l < c->L; l++)
        if (fp16_attention(c->k[l], c->v[l], (unsigned)c->H, (unsigned)c->T, (unsigned)c->d, q, (unsigned)c->G,
                           1.0f / sqrtf((float)c->d), out, c->threads)) {
            fprintf(stderr, "gear-bench: fp16 attention: out of memory\n");
            exit(1);
        }
    return bench_seconds() - t0;
}

/* fp16 decode steps, each repeat after a read pass. */
static paced time_fp16(const fp16_cache *c, const float *q, float *out, const reader *rd, double bytes)
{
    double t[MAX_REP], tr[MAX_REP];
    for (int r = -1; r < reps; r++) {
        if (r >= 0) tr[r] = read_pass(rd);
        double dt = fp16_step(c, q, out);
        if (r >= 0) t[r] = dt;
    }
    return pace(t, tr, bytes, rd);
}

static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : 0;
}

/* The fp16 baseline's fast kernel against its generic one (the plain
 * loops of fp16_attention.c) on small shapes, before any timing: a fast
 * baseline that computed something else would make every speed-up a lie.
 * Exits on a relative error above 1e-5 (the two only differ in summation
 * order and fp16 conversion path, both exact or fp32-rounded). */
static void check_fp16_baseline(int threads)
{
    const int H = 2, T = 512 + 80; /* a short last chunk too (a value pass of 16) */
    double worst = 0;
    for (int d = 64; d <= 128; d += 64)
        for (int G = 1; G <= 5; G += 4) { /* 5: a quad and a single row */
            uint16_t *k = make_kv(GEAR_KEY, H, T, d, 7), *v = make_kv(GEAR_VALUE, H, T, d, 8);
            size_t nq = (size_t)H * G * d;
            float *q = xmalloc(nq * sizeof(float)), *a = xmalloc(nq * sizeof(float)), *b = xmalloc(nq * sizeof(float));
            for (size_t i = 0; i < nq; i++) q[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
            float sc = 1.0f / sqrtf((float)d);
            fp16_attention_generic = 0;
            int e1 = fp16_attention(k, v, H, T, d, q, G, sc, a, threads);
            fp16_attention_generic = 1;
            int e2 = fp16_attention(k, v, H, T, d, q, G, sc, b, threads);
            fp16_attention_generic = 0;
            if (e1 || e2) {
                fprintf(stderr, "gear-bench: fp16 attention: out of memory\n");
                exit(1);
            }
            double e = rel_err(a, b, nq);
            worst = e > worst ? e : worst;
            free(k), free(v), free(q), free(a), free(b);
        }
    printf("fp16 baseline: its %s kernel (head dim 64, 128) against the generic one, largest relative error %.1e\n",
           fp16_attention_kernel(64), worst);
    if (!(worst <= 1e-5)) {
        fprintf(stderr, "gear-bench: the fp16 baseline's kernels disagree (%.3g)\n", worst);
        exit(1);
    }
}

/* A calibration for a cq-* preset from the first tokens of k and v, the
 * same for every layer; few k-means iterations: the bench times attention,
 * not codebook quality. */
static gear_calib *cq_calib(const char *preset, int L, const gear_tensor *k, const gear_tensor *v)
{
    gear_calib_params p;
    gear_calib_params_init(&p);
    check(gear_calib_params_cq(&p, preset), "calib preset");
    p.kmeans_iters = 2;
    p.max_tokens = 512;
    gear_calib *cal = NULL;
    check(gear_calib_create(&p, (unsigned)L, (unsigned)k->shape[0], (unsigned)k->shape[2], &cal), "calib");
    for (int l = 0; l < L; l++) check(gear_calib_add(cal, (unsigned)l, k, v, NULL), "calib add");
    check(gear_calib_fit(cal), "calib fit");
    return cal;
}

static void bench_attn(const attn_shape *s, const char *const *presets, int np, int threads, size_t llc)
{
    size_t rbytes = 4 * llc / 64 * 64;
    uint64_t *rbuf = xmalloc(rbytes);
    memset(rbuf, 1, rbytes);
    const reader rd = {rbuf, rbytes / 8, threads};
    const int H = 8, T = s->T, d = s->d, G = s->G;
    /* layers: the kivi2 cache llc_mult times the LLC (and at least 2 layers) */
    gear_config ck, cv;
    gear_block_info bi;
    check(gear_config_preset("kivi2", GEAR_KEY, &ck), "preset");
    check(gear_block_info_get(&ck, (unsigned)d, &bi), "block info");
    double kivi_layer = 2.0 * H * T * d * bi.bpe / 8.0;
    int L = (int)ceil(llc_mult * (double)llc / kivi_layer);
    if (L < 2) L = 2;
    size_t per = (size_t)H * T * d;
    uint16_t *k0 = make_kv(GEAR_KEY, H, T, d, 11), *v0 = make_kv(GEAR_VALUE, H, T, d, 12);
    uint16_t **k = xmalloc(sizeof(*k) * (size_t)L), **v = xmalloc(sizeof(*v) * (size_t)L);
    for (int l = 0; l < L; l++) { /* separate copies: the step really streams L layers */
        k[l] = xmalloc(per * 2);
        v[l] = xmalloc(per * 2);
        memcpy(k[l], k0, per * 2);
        memcpy(v[l], v0, per * 2);
    }
    float *q = xmalloc(sizeof(float) * (size_t)H * G * d), *ref = xmalloc(sizeof(float) * (size_t)H * G * d);
    float *out = xmalloc(sizeof(float) * (size_t)H * G * d);
    gear_synth_normal(13, H * G * d, q);
    double fp16_bytes = 2.0 * (double)per * 2.0 * L;
    const fp16_cache c16 = {k, v, L, H, T, d, G, threads};
    paced p16 = time_fp16(&c16, q, ref, &rd, fp16_bytes);
    double t16 = p16.t;
    printf("%6d %4d %2d %4d %8.1f  %-7s %8.3f %7.2f %7.3f           %6.2f\n", T, d, G, L, fp16_bytes / 1e6,
           "fp16*", t16 * 1e3, fp16_bytes / t16 / 1e9, p16.over_read, p16.read_gbs);
    if (jf)
        fprintf(jf,
                "{\"bench\":\"attn\",\"impl\":\"fp16_baseline\",\"T\":%d,\"d\":%d,\"G\":%d,\"H_kv\":%d,"
                "\"layers\":%d,\"threads\":%d,\"bytes\":%.0f,\"step_ms\":%.4f,\"gbs\":%.4f,\"over_read\":%.4f,"
                "\"read_gbs\":%.4f}\n",
                T, d, G, H, L, threads, fp16_bytes, t16 * 1e3, fp16_bytes / t16 / 1e9, p16.over_read,
                p16.read_gbs);
    gear_context *ctx = make_ctx("cpu", threads);
    const char *be = "cpu";
    if (!ctx) {
        ctx = make_ctx("auto", threads);
        be = ctx ? gear_context_backend_name(ctx) : "none";
    }
    if (!ctx) check(GEAR_ERR_BACKEND, "no backend");
    gear_tensor tq, to, tk, tv;
    check(gear_tensor_init(&tq, q, GEAR_F32, 3, H * G, 1, d, 0), "tensor");
    check(gear_tensor_init(&to, out, GEAR_F32, 3, H * G, 1, d, 0), "tensor");
    check(gear_tensor_init(&tk, k0, GEAR_F16, 3, H, T, d, 0), "tensor");
    check(gear_tensor_init(&tv, v0, GEAR_F16, 3, H, T, d, 0), "tensor");
    for (int p = 0; p < np; p++) {
        check(spec_config(presets[p], GEAR_KEY, &ck), "preset");
        check(spec_config(presets[p], GEAR_VALUE, &cv), "preset");
        gear_cache *c = NULL;
        if (ck.cq_dim) { /* CQ: codebooks fitted on this (synthetic) data */
            gear_calib *cal = cq_calib(presets[p], L, &tk, &tv);
            check(gear_cache_create_calibrated(ctx, &ck, &cv, cal, (unsigned)L, H, (unsigned)d,
                                               (unsigned)T, &c), "cache");
            gear_calib_free(cal);
        } else
            check(gear_cache_create(ctx, &ck, &cv, (unsigned)L, H, (unsigned)d, (unsigned)T, &c), "cache");
        for (int l = 0; l < L; l++) check(gear_cache_append(c, (unsigned)l, &tk, &tv), "append");
        gear_cache_stats st;
        check(gear_cache_stats_get(c, &st), "stats");
        /* each repeat: a read pass, the step over this cache, and an fp16
         * step right after it, for a speed-up under the same conditions */
        double bytes = (double)st.compressed_bytes + (double)st.buffer_bytes, t[MAX_REP], tr[MAX_REP], sp[MAX_REP];
        for (int r = -1; r < reps; r++) {
            if (r >= 0) tr[r] = read_pass(&rd);
            double t0 = bench_seconds();
            for (int l = 0; l < L; l++)
                check(gear_cache_attention(c, (unsigned)l, &tq, 1.0f / sqrtf((float)d), &to), "attention");
            if (r >= 0) {
                t[r] = bench_seconds() - t0;
                sp[r] = fp16_step(&c16, q, ref) / t[r];
            }
        }
        double speedup = bench_median(sp, reps);
        paced pc = pace(t, tr, bytes, &rd);
        double tm = pc.t, err = rel_err(out, ref, (size_t)H * G * d);
        printf("%6d %4d %2d %4d %8.1f  %-7s %8.3f %7.2f %7.3f  %6.2fx  %6.2f  %.4f\n", T, d, G, L, bytes / 1e6,
               presets[p], tm * 1e3, bytes / tm / 1e9, pc.over_read, speedup, pc.read_gbs, err);
        if (jf)
            fprintf(jf,
                    "{\"bench\":\"attn\",\"impl\":\"libgear\",\"backend\":\"%s\",\"preset\":\"%s\","
                    "\"T\":%d,\"d\":%d,\"G\":%d,\"H_kv\":%d,\"layers\":%d,\"threads\":%d,\"bytes\":%.0f,"
                    "\"bpe\":%.4f,\"step_ms\":%.4f,\"gbs\":%.4f,\"over_read\":%.4f,"
                    "\"speedup_vs_fp16\":%.4f,\"speedup_unpaired\":%.4f,\"out_rel_err_vs_fp16\":%.5f,\"read_gbs\":%.4f}\n",
                    be, presets[p], T, d, G, H, L, threads, bytes, st.bpe, tm * 1e3, bytes / tm / 1e9,
                    pc.over_read, speedup, t16 / tm, err, pc.read_gbs);
        gear_cache_free(c);
    }
    gear_context_free(ctx);
    for (int l = 0; l < L; l++) {
        free(k[l]);
        free(v[l]);
    }
    free(k);
    free(v);
    free(k0);
    free(v0);
    free(q);
    free(ref);
    free(out);
    free(rbuf);
}

/* ---------------------------------------------- attention in cache */

/* Seconds that a call of f(b) takes more than a call of f(a), in cache:
 * batches of calls that take about 20 ms, a's and b's alternating so that
 * both see the same machine; the median over the repeats, or NaN where it
 * is not positive or the repeats spread wider than it (the VM changed
 * speed during the measurement: the figure would mean nothing). */
static double extra_per_call(void (*f)(void *), void *a, void *b)
{
    int n = 1;
    for (;;) {
        double t0 = bench_seconds();
        for (int i = 0; i < n; i++) f(b);
        if (bench_seconds() - t0 > 0.02 || n >= 1 << 20) break;
        n *= 2;
    }
    double t[MAX_REP], lo = 0, hi = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = bench_seconds();
        for (int i = 0; i < n; i++) f(a);
        double t1 = bench_seconds();
        for (int i = 0; i < n; i++) f(b);
        t[r] = ((bench_seconds() - t1) - (t1 - t0)) / n;
        lo = r == 0 || t[r] < lo ? t[r] : lo;
        hi = r == 0 || t[r] > hi ? t[r] : hi;
    }
    double m = bench_median(t, reps);
    return m > 0 && hi - lo <= m ? m : NAN;
}

/* x with fmt into buf (cols wide), or "?" / "-" (no figure: NaN / 0);
 * json: the number, or null. */
static const char *fig(char *buf, size_t len, double x, const char *fmt, int cols)
{
    if (isnan(x))
        snprintf(buf, len, "%*s", cols, "?");
    else if (x == 0)
        snprintf(buf, len, "%*s", cols, "-");
    else
        snprintf(buf, len, fmt, cols, x);
    return buf;
}
static const char *jfig(char *buf, size_t len, double x)
{
    if (isfinite(x) && x != 0)
        snprintf(buf, len, "%.4f", x);
    else
        snprintf(buf, len, "null");
    return buf;
}

/* Whether the cpu module runs its fixed-point (VNNI) attention here, as
 * it describes itself once loaded (the same tests and GEAR_CPU_* switches
 * as its kernels). */
static int cpu_fixed_point(void)
{
    for (int i = 0; i < gear_backend_count(); i++)
        if (!strcmp(gear_backend_name(i), "cpu")) {
            const char *d = gear_backend_description(i);
            return d && strstr(d, "VNNI fixed point");
        }
    return 0;
}

typedef struct cache_call { gear_cache *c; const gear_tensor *q; gear_tensor *o; float scale; } cache_call;
static void call_cache(void *p)
{
    const cache_call *a = p;
    check(gear_cache_attention(a->c, 0, a->q, a->scale, a->o), "attention");
}

typedef struct f16_call { const uint16_t *k, *v; int H, T, d, G; const float *q; float *o; } f16_call;
static void call_f16(void *p)
{
    const f16_call *a = p;
    if (fp16_attention(a->k, a->v, (unsigned)a->H, (unsigned)a->T, (unsigned)a->d, a->q, (unsigned)a->G,
                       1.0f / sqrtf((float)a->d), a->o, 1)) {
        fprintf(stderr, "gear-bench: fp16 attention: out of memory\n");
        exit(1);
    }
}

/* One thread, one layer of 8 KV heads, in cache (L2 and L3: at the
 * longer length a kivi2 layer at head dim 128 is 1.3 MB, gear2 2.4 MB):
 * the time per (KV head, 64-token) pair is the difference between two
 * context lengths over the pairs added, so that a call's fixed costs
 * (threads, merge) drop out, and those per work item (4 blocks) are
 * spread over its pairs.  What compute alone allows, against the
 * instruction floors measured in this run. */
static void bench_incache(const char *const *presets, int np, const int *ds, int nd, int quick)
{
    const int H = 8, T1 = 1024, T2 = 2048;
    double ns_dp = isa_ns_vpdpbusd(), ns_fma = isa_ns_fma512();
    gear_context *ctx = make_ctx("cpu", 1);
    int fixed = ns_dp > 0 && ctx && cpu_fixed_point();
    printf("\nattention in cache: one thread, one layer of %d KV heads; ns/pair = the time a (KV head, 64-token)\n"
           "  pair adds between %d and %d tokens (fp16 cache: 16384/d tokens down to a multiple of 64, and\n"
           "  twice that; its %s kernel); /floor = ns/pair over the pair's 4*G*d vpdpbusd (the fixed-point kernels' dot\n"
           "  products; %.3f ns each here) or, for the fp16 cache, its 8*G*d vfmadd231ps (%.3f ns each),\n"
           "  512-bit (-: not measured, or another kernel runs); fp16/ = the fp16 pair's ns over this one:\n"
           "  the speed-up compute alone allows; ?: the repeats spread wider than their median\n",
           H, T1, T2, fp16_attention_kernel(128), ns_dp, ns_fma);
    if (jf)
        fprintf(jf, "{\"bench\":\"isa\",\"vpdpbusd_zmm_ns\":%.5f,\"vfmadd231ps_zmm_ns\":%.5f}\n", ns_dp, ns_fma);
    printf("   d  G  cache             ns/pair   /floor   fp16/\n");
    if (!ctx) {
        printf("  (no cpu backend: skipped)\n");
        return;
    }
    static const int Gs[] = {1, 4};
    char b1[32], b2[32], b3[32], j1[32], j2[32], j3[32];
    for (int di = 0; di < nd; di++) {
        /* the keys and values of both lengths, for every G and cache:
         * fp16 at F1 and F2 tokens (1 MiB at F2 for d = 64, 128), the
         * caches' input at T1 and T2 */
        int d = ds[di], F1 = 16384 / d / 64 * 64, F2 = 2 * F1, len[4] = {F1, F2, T1, T2};
        uint16_t *k[4], *v[4];
        for (int i = 0; i < 4; i++) {
            k[i] = make_kv(GEAR_KEY, H, len[i], d, 11);
            v[i] = make_kv(GEAR_VALUE, H, len[i], d, 12);
        }
        for (int gi = 0; gi < 2; gi++) {
            int G = Gs[gi];
            float *q = xmalloc(sizeof(float) * (size_t)H * G * d), *o = xmalloc(sizeof(float) * (size_t)H * G * d);
            gear_synth_normal(13, (size_t)H * G * d, q);
            f16_call f[2];
            for (int i = 0; i < 2; i++) f[i] = (f16_call){k[i], v[i], H, len[i], d, G, q, o};
            double dt16 = extra_per_call(call_f16, &f[0], &f[1]);
            int avx16 = !strcmp(fp16_attention_kernel((unsigned)d), "avx512");
            double ns16 = dt16 / ((double)H * (F2 - F1) / 64) * 1e9;
            double fl16 = ns_fma > 0 && avx16 ? ns16 / (8.0 * G * d * ns_fma) : 0;
            printf("%4d %2d  %-14s %s   %s\n", d, G, "fp16*", fig(b1, sizeof b1, ns16, "%*.1f", 10),
                   fig(b2, sizeof b2, fl16, "%*.2f", 6));
            if (jf)
                fprintf(jf, "{\"bench\":\"incache\",\"impl\":\"fp16_baseline\",\"d\":%d,\"G\":%d,\"ns_pair\":%s,"
                            "\"over_floor\":%s}\n", d, G, jfig(j1, sizeof j1, ns16), jfig(j2, sizeof j2, fl16));
            gear_tensor tq, to;
            check(gear_tensor_init(&tq, q, GEAR_F32, 3, H * G, 1, d, 0), "tensor");
            check(gear_tensor_init(&to, o, GEAR_F32, 3, H * G, 1, d, 0), "tensor");
            for (int p = 0; p < (quick && np > 2 ? 2 : np); p++) {
                gear_config ck, cv;
                check(spec_config(presets[p], GEAR_KEY, &ck), "preset");
                check(spec_config(presets[p], GEAR_VALUE, &cv), "preset");
                if (ck.cq_dim) continue; /* calibrated caches: not timed here */
                cache_call a[2];
                for (int i = 0; i < 2; i++) {
                    gear_tensor tk, tv;
                    check(gear_tensor_init(&tk, k[2 + i], GEAR_F16, 3, H, len[2 + i], d, 0), "tensor");
                    check(gear_tensor_init(&tv, v[2 + i], GEAR_F16, 3, H, len[2 + i], d, 0), "tensor");
                    a[i] = (cache_call){NULL, &tq, &to, 1.0f / sqrtf((float)d)};
                    check(gear_cache_create(ctx, &ck, &cv, 1, H, (unsigned)d, (unsigned)len[2 + i], &a[i].c), "cache");
                    check(gear_cache_append(a[i].c, 0, &tk, &tv), "append");
                }
                double dt = extra_per_call(call_cache, &a[0], &a[1]);
                for (int i = 0; i < 2; i++) gear_cache_free(a[i].c);
                double ns = dt / ((double)H * (T2 - T1) / 64) * 1e9;
                /* the fixed-point kernels: 2 or 4 bits, head dims 64 to 256 in steps of 16 */
                int fx = fixed && (ck.bits == 2 || ck.bits == 4) && d % 16 == 0 && d >= 64 && d <= 256;
                double fl = fx ? ns / (4.0 * G * d * ns_dp) : 0, x = ns16 / ns;
                printf("%4d %2d  %-14s %s   %s  %s\n", d, G, presets[p], fig(b1, sizeof b1, ns, "%*.1f", 10),
                       fig(b2, sizeof b2, fl, "%*.2f", 6), fig(b3, sizeof b3, x, "%*.2f", 6));
                if (jf)
                    fprintf(jf, "{\"bench\":\"incache\",\"impl\":\"libgear\",\"preset\":\"%s\",\"d\":%d,\"G\":%d,"
                                "\"ns_pair\":%s,\"over_floor\":%s,\"fp16_over\":%s}\n",
                            presets[p], d, G, jfig(j1, sizeof j1, ns), jfig(j2, sizeof j2, fl), jfig(j3, sizeof j3, x));
            }
            free(q);
            free(o);
            fflush(stdout);
        }
        for (int i = 0; i < 4; i++) {
            free(k[i]);
            free(v[i]);
        }
    }
    gear_context_free(ctx);
}

/* The low-rank step of compression in the cpu module against the same
 * power iteration with OpenBLAS's sgemm (bench/lowrank_blas.c), one
 * thread each, per block: the module's time is gear_compress of gear2
 * values at rank r less the same at rank 0 (the residual, the iteration,
 * the factors' conversion), OpenBLAS's the products and Gram-Schmidt
 * alone, which favours OpenBLAS. */
static void bench_lowrank(int quick)
{
    static const unsigned shp[][2] = {{64, 128}, {256, 128}, {512, 128}, {64, 64}, {1024, 64}}, rk[] = {2, 4, 8};
    printf("\nlowrank: the power iteration of one block (n tokens x d, rank r), one thread: module = gear2\n"
           "  values compressed at rank r less at rank 0, per block; openblas = its products by sgemm (plus\n"
           "  the same Gram-Schmidt); openblas/module > 1: the module is faster\n");
    if (!lowrank_blas_available()) {
        printf("  (OpenBLAS not found by configure: skipped)\n");
        return;
    }
    gear_context *ctx = make_ctx("cpu", 1);
    if (!ctx) {
        printf("  (no cpu backend: skipped)\n");
        return;
    }
    printf("     n    d  r   module us   openblas us   openblas/module\n");
    for (size_t si = 0; si < (quick ? 1 : sizeof shp / sizeof shp[0]); si++) {
        const int H = 8, T = 4096, n = (int)shp[si][0], d = (int)shp[si][1];
        uint16_t *x16 = make_kv(GEAR_VALUE, H, T, d, 2);
        gear_tensor x;
        check(gear_tensor_init(&x, x16, GEAR_F16, 3, H, T, d, 0), "tensor");
        unsigned blocks = (unsigned)(H * T / n);
        double t0 = 0.0;
        for (int ri = -1; ri < 3; ri++) {
            gear_config cfg;
            check(spec_config("gear2", GEAR_VALUE, &cfg), "preset");
            cfg.block = (unsigned)n;
            cfg.rank = ri < 0 ? 0 : rk[ri];
            size_t cap, len;
            check(gear_compress_bound(&cfg, &x, &cap), "bound");
            void *dst = xmalloc(cap);
            double t[MAX_REP];
            for (int r = 0; r < reps; r++) {
                double s = bench_seconds();
                check(gear_compress(ctx, &cfg, &x, 0, dst, cap, &len), "compress");
                t[r] = bench_seconds() - s;
            }
            free(dst);
            double tm = bench_median(t, reps) / blocks;
            if (ri < 0) {
                t0 = tm;
                continue;
            }
            double mod = tm - t0, blas = lowrank_blas_seconds((unsigned)n, (unsigned)d, cfg.rank, cfg.iters,
                                                              blocks < 64 ? blocks : 64, reps);
            if (!(mod > 0) || !(blas > 0)) { /* noise above the difference, or no memory */
                printf("%6d %4d %2u   (not measurable: module %.2f us, openblas %.2f us)\n", n, d, cfg.rank,
                       mod * 1e6, blas * 1e6);
                continue;
            }
            printf("%6d %4d %2u   %9.2f   %11.2f   %15.2f\n", n, d, cfg.rank, mod * 1e6, blas * 1e6, blas / mod);
            if (jf)
                fprintf(jf, "{\"bench\":\"lowrank\",\"n\":%d,\"d\":%d,\"rank\":%u,\"iters\":%u,"
                            "\"module_us\":%.4f,\"openblas_us\":%.4f,\"openblas_over_module\":%.4f}\n",
                        n, d, cfg.rank, cfg.iters, mod * 1e6, blas * 1e6, blas / mod);
        }
        free(x16);
        fflush(stdout);
    }
    gear_context_free(ctx);
}

/* ----------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f, "Usage: gear-bench [--json FILE] [--threads N] [--reps R] [--quick]\n"
               "                  [--only bw|codec|layouts|lowrank|prefill|attn|cache|dims] [--shape T,d,G]\n"
               "                  [--llc-mult M]\n"
               "                  [--presets P1,P2,...]\n"
               "Medians of R repeats (default 7).  --quick: fewer shapes, for a smoke run.\n"
               "--presets: the compressed caches of the attention bench (default\n"
               "kivi2,gear2,kivi4,gear4,cq-4c8b); the fp16 baseline always runs.  A\n"
               "preset may carry overrides: gear2:r4 (rank 4), gear2:s0.05 (outlier ratio).\n"
               "--only cache: attention in cache on one thread against the instruction\n"
               "floors of this CPU (what compute alone allows).\n"
               "--only layouts: gear2 at other ranks and outlier ratios, compression\n"
               "and attention in cache.  --only lowrank: the power iteration in the\n"
               "cpu module against OpenBLAS (when configure found it).  --only dims:\n"
               "head dims 80, 96 and 256, compression and attention in cache.\n");
}

int main(int argc, char **argv)
{
    int threads = omp_get_max_threads(), quick = 0;
    const char *only = NULL;
    attn_shape one = {0, 0, 0};
    static const char *ap[8] = {"kivi2", "gear2", "kivi4", "gear4", "cq-4c8b"};
    int nap = 5;
    char *plist = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            jf = fopen(argv[++i], "w");
            if (!jf) {
                fprintf(stderr, "gear-bench: %s: %s\n", argv[i], strerror(errno));
                return 1;
            }
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--llc-mult") && i + 1 < argc) {
            llc_mult = atof(argv[++i]);
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d,%d,%d", &one.T, &one.d, &one.G) != 3 || one.T < 64 || one.d < 8 ||
                one.G < 1) {
                fprintf(stderr, "gear-bench: --shape wants T,d,G (e.g. 16384,128,4)\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--presets") && i + 1 < argc) {
            plist = argv[++i];
            nap = 0;
            for (char *t = strtok(plist, ","); t && nap < 8; t = strtok(NULL, ",")) {
                gear_config c;
                if (spec_config(t, GEAR_KEY, &c) != GEAR_OK) {
                    fprintf(stderr,
                            "gear-bench: --presets: %s is not a preset, or a preset with valid overrides "
                            "(:rN rank, :sX outlier ratio; none on CQ presets)\n", t);
                    return 2;
                }
                ap[nap++] = t;
            }
            if (!nap) {
                usage(stderr);
                return 2;
            }
        } else if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
            only = argv[++i];
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (threads < 1 || reps < 1 || reps > MAX_REP || !(llc_mult > 0)) {
        fprintf(stderr, "gear-bench: --threads must be >= 1 and --reps 1..%d\n", MAX_REP);
        return 2;
    }
    size_t llc = llc_bytes();
    printf("gear-bench: libgear %s, %d threads, last-level cache %zu MiB, medians of %d\n",
           gear_version_string(), threads, llc >> 20, reps);
    /* the variables that choose the module's code paths, so that a saved
     * run says which ones it timed */
    static const char *paths[] = {"GEAR_BACKEND", "GEAR_CPU_BF16", "GEAR_CPU_NO_VNNI", "GEAR_CPU_NO_AVX512",
                                  "GEAR_CPU_NO_AVX2"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (getenv(paths[i])) {
            printf("environment: %s=%s\n", paths[i], getenv(paths[i]));
            if (jf) fprintf(jf, "{\"bench\":\"env\",\"name\":\"%s\",\"value\":\"%s\"}\n", paths[i], getenv(paths[i]));
        }

    /* baselines over 2 x 8 LLC of buffers, so they measure DRAM: a VM may
     * report one L3 where its cores sit on two (the Zen 4 VM: 32 MiB
     * reported, two cores 380 ns apart a round trip), and passes back to
     * back over 4x the reported size then read some of it from those
     * caches (111-117 GB/s on two threads, against 91-95 for a pass after
     * a sweep of 640 MB) */
    bw b1 = measure_bw(8 * llc, 1), bn = measure_bw(8 * llc, threads);
    printf("\nbandwidth   threads   read GB/s   memcpy GB/s (bytes copied)   read loop\n");
    printf("            %7d   %9.2f   %11.2f                  %s\n", 1, b1.read_gbs, b1.memcpy_gbs,
           read_bw_name(read_loop[1]));
    printf("            %7d   %9.2f   %11.2f                  %s\n", threads, bn.read_gbs, bn.memcpy_gbs,
           read_bw_name(read_loop[threads > 0 && threads <= MAX_THREADS_READ ? threads : 1]));
    if (jf) {
        fprintf(jf, "{\"bench\":\"bw\",\"threads\":1,\"read_gbs\":%.4f,\"memcpy_gbs\":%.4f,\"llc_bytes\":%zu,"
                "\"read_loop\":\"%s\"}\n", b1.read_gbs, b1.memcpy_gbs, llc, read_bw_name(read_loop[1]));
        fprintf(jf, "{\"bench\":\"bw\",\"threads\":%d,\"read_gbs\":%.4f,\"memcpy_gbs\":%.4f,\"llc_bytes\":%zu,"
                "\"read_loop\":\"%s\"}\n", threads, bn.read_gbs, bn.memcpy_gbs, llc,
                read_bw_name(read_loop[threads > 0 && threads <= MAX_THREADS_READ ? threads : 1]));
    }

    static const char *all[] = {"fp16", "kivi2", "kivi4", "kcvt4", "gear2", "gearl2", "gear4", "gearl4"};
    if (!only || !strcmp(only, "codec")) {
        /* 8 KV heads x 4096 tokens x 128: 8 MiB of fp16 per tensor */
        const int H = 8, T = quick ? 1024 : 4096, d = 128;
        const uint16_t *kv[2] = {make_kv(GEAR_KEY, H, T, d, 1), make_kv(GEAR_VALUE, H, T, d, 2)};
        printf("\ncodec: [%d,%d,%d] fp16 in/out; GB/s of fp16 KV; ratios to memcpy / read bandwidth "
               "at the same thread count;\n  /q4_0 = compress GB/s (fp16 in) per thread over the q4_0 "
               "baseline's GB/s (fp32 in), the units of the compress target\n", H, T, d);
        q4_gbs = bench_q4_0(kv[0], H, T, d, llc);
        printf("backend preset        kv th   comp GB/s /thread /memcpy  /q4_0   dec GB/s /memcpy   /read\n");
        for (int p = 0; p < 8; p++) {
            bench_codec("cpu", 1, all[p], kv, H, T, d, b1, llc);
            if (threads > 1) bench_codec("cpu", threads, all[p], kv, H, T, d, bn, llc);
        }
        /* CQ through calibrated caches (K and V together), cpu only */
        static const char *cq[] = {"cq-2c8b", "cq-4c8b", "cq-8c8b"};
        for (int p = 0; p < 3 && !quick; p++) {
            bench_codec_cq(1, cq[p], kv, H, T, d, b1, llc);
            if (threads > 1) bench_codec_cq(threads, cq[p], kv, H, T, d, bn, llc);
        }
        /* ref, the scalar oracle, on a quarter of the data (it is slow) */
        for (int p = 0; p < 8 && !quick; p++) bench_codec("ref", 1, all[p], kv, H, T / 4, d, b1, llc);
        free((void *)kv[0]);
        free((void *)kv[1]);
    }
    if (!only || !strcmp(only, "layouts")) {
        /* gear2 at other ranks and outlier ratios: compression on one
         * thread (against q4_0, as the codec section) and attention in
         * cache (against the fp16 cache, as the cache section) */
        static const char *lay[] = {"gear2", "gear2:r1", "gear2:r4", "gear2:r8", "gear2:s0.05", "gear2:s0.1",
                                    "gear2:r4:s0.05"};
        const int nl = quick ? 3 : 7, H = 8, T = quick ? 1024 : 4096, d = 128;
        const uint16_t *kv[2] = {make_kv(GEAR_KEY, H, T, d, 1), make_kv(GEAR_VALUE, H, T, d, 2)};
        if (!(q4_gbs > 0)) q4_gbs = bench_q4_0(kv[0], H, T, d, llc);
        printf("\nlayouts: gear2 with rank rN and outlier ratio sX (the preset: r2, s0.02); compression of\n"
               "  [%d,%d,%d] fp16 on one thread, as in codec\n", H, T, d);
        printf("backend preset        kv th   comp GB/s /thread /memcpy  /q4_0   dec GB/s /memcpy   /read\n");
        for (int p = 0; p < nl; p++) bench_codec("cpu", 1, lay[p], kv, H, T, d, b1, llc);
        free((void *)kv[0]);
        free((void *)kv[1]);
        static const int dl[] = {64, 128};
        bench_incache(lay, nl, dl, 2, quick);
    }
    if (!only || !strcmp(only, "lowrank")) bench_lowrank(quick);
    if (!only || !strcmp(only, "prefill")) {
        const int H = 8, T = quick ? 1024 : 4096, d = 128;
        const uint16_t *kv[2] = {make_kv(GEAR_KEY, H, T, d, 1), make_kv(GEAR_VALUE, H, T, d, 2)};
        printf("\nprefill: one append of [%d,%d,%d] K and V into a fresh cache, by input type (f32-TH: fp32\n"
               "  token-major behind a strided view); GB/s of fp16-equivalent KV; ratio to memcpy\n",
               H, T, d);
        printf("preset  input  th   GB/s     /memcpy\n");
        static const char *pp[] = {"kivi2", "gear2", "fp16"}; /* fp16: the uncompressed cache */
        for (int p = 0; p < 3; p++) bench_prefill(threads, pp[p], kv, H, T, d, bn, llc);
        free((void *)kv[0]);
        free((void *)kv[1]);
    }
    static const int d_common[] = {64, 128}, d_other[] = {80, 96, 256};
    if (!only || !strcmp(only, "cache")) bench_incache(ap, nap, d_common, 2, quick);
    if (!only || !strcmp(only, "dims")) {
        /* head dims beside 64 and 128 (Phi-2 80, Phi-3 96, Gemma 256):
         * compression on one thread as in codec, attention in cache */
        static const char *dp[] = {"kivi2", "gear2", "kivi4", "gear4"};
        const int H = 8, T = quick ? 1024 : 4096;
        if (!(q4_gbs > 0)) {
            uint16_t *k128 = make_kv(GEAR_KEY, H, T, 128, 1);
            q4_gbs = bench_q4_0(k128, H, T, 128, llc);
            free(k128);
        }
        printf("\ndims: head dims 80, 96, 256; compression of [%d,%d,d] fp16 on one thread, as in codec\n", H, T);
        printf("backend preset        kv th   comp GB/s /thread /memcpy  /q4_0   dec GB/s /memcpy   /read\n");
        for (int di = 0; di < 3; di++) {
            int d = d_other[di];
            const uint16_t *kv[2] = {make_kv(GEAR_KEY, H, T, d, 1), make_kv(GEAR_VALUE, H, T, d, 2)};
            printf("d = %d\n", d);
            for (int p = 0; p < (quick ? 2 : 4); p++) bench_codec("cpu", 1, dp[p], kv, H, T, d, b1, llc);
            free((void *)kv[0]);
            free((void *)kv[1]);
        }
        bench_incache(dp, quick ? 2 : 4, d_other, quick ? 1 : 3, quick);
    }
    if (!only || !strcmp(only, "attn")) {
        printf("\nattention: one decode step over all layers (8 KV heads, G query heads each), %d threads;\n"
               "  MB = bytes read (compressed blocks + buffer); GB/s = MB/time; /read = median over the repeats\n"
               "  of GB/s over the read bandwidth of a pass over 4x LLC right before the repeat (its median: read);\n"
               "  speed-up = median over the repeats of (an fp16-cache step run right after the repeat) / (the\n"
               "  repeat); err = output rel. error vs the fp16 cache\n",
               threads);
        check_fp16_baseline(threads);
        printf("     T    d  G    L       MB  cache     ms/step   GB/s   /read  speedup    read  err\n");
        static const int Ts[] = {1024, 4096, 16384, 32768}, ds[] = {64, 128}, Gs[] = {1, 4};
        if (one.T) {
            bench_attn(&one, ap, nap, threads, llc);
            if (jf) fclose(jf);
            return 0;
        }
        for (int ti = quick ? 1 : 0; ti < 4; ti += quick ? 2 : 1)
            for (int di = 0; di < 2; di++)
                for (int gi = 0; gi < 2; gi++) {
                    attn_shape s = {Ts[ti], ds[di], Gs[gi]};
                    bench_attn(&s, ap, quick ? (nap < 2 ? nap : 2) : nap, threads, llc);
                    fflush(stdout);
                }
    }
    if (jf) fclose(jf);
    return 0;
}
