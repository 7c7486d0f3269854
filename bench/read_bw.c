/*
 * read_bw.c - gear-bench's read-bandwidth baseline: one read of every byte
 * of a buffer on T threads, by the fastest of a few loops on this CPU.
 *
 * Why several loops: until the twenty-fourth session the baseline was a
 * plain sum of 64-bit words, which GCC builds with 16-byte SSE2 loads for
 * the baseline ISA.  On the Zen 4 VM that loop is bound by its own
 * instructions at about 31 GB/s a core, while 512-bit loads with a software
 * prefetch read 52-57 GB/s on one core and 100-128 on two: the "read
 * bandwidth" had been half of what the memory gives, and every /read
 * figure measured against it twice too high in that state.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "bench_util.h"
#include "read_bw.h"

/* Prefetch distance of the prefetching loops: 8 KiB ahead measured best
 * of 0, 2 and 8 KiB on the Zen 4 VM (128 MB, two threads: 121-128 GB/s
 * against 101-115 without). */
#define PF_BYTES 8192

typedef uint64_t (*read_fn)(const uint64_t *p, size_t n, int pf);

/* Four independent accumulators, so the adds never wait on each other. */
static uint64_t read_scalar(const uint64_t *p, size_t n, int pf)
{
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        if (pf) __builtin_prefetch(p + i + PF_BYTES / 8, 0, 0);
        s0 += p[i] + p[i + 4];
        s1 += p[i + 1] + p[i + 5];
        s2 += p[i + 2] + p[i + 6];
        s3 += p[i + 3] + p[i + 7];
    }
    for (; i < n; i++) s0 += p[i];
    return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_READ 1
/* Four accumulators of W-byte vectors (GCC vector extensions, built for
 * the ISA named in TARGET): 4*W bytes an iteration, a prefetch per line. */
#define READ_WIDE(NAME, TARGET, W)                                                         \
    __attribute__((target(TARGET))) static uint64_t NAME(const uint64_t *p, size_t n, int pf) \
    {                                                                                      \
        typedef uint64_t vec __attribute__((vector_size(W)));                              \
        const size_t L = W / 8; /* words a vector */                                       \
        vec a0 = {0}, a1 = a0, a2 = a0, a3 = a0, x;                                        \
        size_t i = 0;                                                                      \
        for (; i + 4 * L <= n; i += 4 * L) {                                               \
            if (pf)                                                                        \
                for (size_t l = 0; l < 4 * L; l += 8) __builtin_prefetch(p + i + l + PF_BYTES / 8, 0, 3); \
            memcpy(&x, p + i, W), a0 += x;                                                 \
            memcpy(&x, p + i + L, W), a1 += x;                                             \
            memcpy(&x, p + i + 2 * L, W), a2 += x;                                         \
            memcpy(&x, p + i + 3 * L, W), a3 += x;                                         \
        }                                                                                  \
        a0 += a1 + a2 + a3;                                                                \
        uint64_t s = 0;                                                                    \
        for (size_t l = 0; l < L; l++) s += a0[l];                                         \
        /* GCC leaves the upper halves dirty around the call below: clean \
         * them, or the timed code after a pass pays for it on Intel */   \
        __builtin_ia32_vzeroupper();                                                       \
        return s + read_scalar(p + i, n - i, 0);                                           \
    }
READ_WIDE(read_avx512, "avx512f", 64)
READ_WIDE(read_avx2, "avx2", 32)
#undef READ_WIDE
#endif

static const struct {
    const char *name;
    read_fn fn;
    int pf;
    int isa; /* 2: AVX-512F, 1: AVX2, 0: any */
} loops[] = {
#ifdef HAVE_X86_READ
    {"avx512", read_avx512, 0, 2}, {"avx512+prefetch", read_avx512, 1, 2},
    {"avx2", read_avx2, 0, 1},     {"avx2+prefetch", read_avx2, 1, 1},
#endif
    {"scalar", read_scalar, 0, 0}, {"scalar+prefetch", read_scalar, 1, 0},
};
#define N_LOOPS (sizeof loops / sizeof loops[0])

/* The ISA the bench's kernels use: GEAR_CPU_NO_AVX512 switches them (and
 * so this baseline) to what an AVX2-only CPU would run. */
static int isa_level(void)
{
#ifdef HAVE_X86_READ
    if (__builtin_cpu_supports("avx512f") && !getenv("GEAR_CPU_NO_AVX512")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

/* One pass of loop k over p[0, n) on `threads` threads, contiguous
 * line-aligned pieces; seconds. */
static double pass(unsigned k, const uint64_t *p, size_t n, int threads)
{
    uint64_t sum = 0;
    double t0 = bench_seconds();
#pragma omp parallel num_threads(threads) reduction(+ : sum)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        size_t per = ((n + nt - 1) / nt + 7) / 8 * 8, a = per * t, b = a + per < n ? a + per : n;
        if (a < n) sum += loops[k].fn(p + a, b - a, loops[k].pf);
    }
    double dt = bench_seconds() - t0;
    volatile uint64_t sink = sum; /* the reads must happen */
    (void)sink;
    return dt;
}

unsigned read_bw_choose(const uint64_t *p, size_t n, int threads)
{
    int isa = isa_level();
    const char *force = getenv("GEAR_BENCH_READ_LOOP");
    if (force) {
        for (unsigned k = 0; k < N_LOOPS; k++)
            if (!strcmp(force, loops[k].name) && loops[k].isa <= isa) return k;
        fprintf(stderr, "gear-bench: GEAR_BENCH_READ_LOOP=%s is not a loop this CPU runs (", force);
        for (unsigned k = 0; k < N_LOOPS; k++)
            if (loops[k].isa <= isa) fprintf(stderr, "%s%s", k ? ", " : "", loops[k].name);
        fprintf(stderr, "); choosing one\n");
    }
    unsigned best = N_LOOPS;
    double best_t = 0.0;
    for (unsigned k = 0; k < N_LOOPS; k++) {
        /* the widest loads only: when latency bounds a core, the lines in
         * flight are what count, and narrower loads fit fewer in the
         * out-of-order window (two threads, within one run: 512-bit
         * passes 90-97 GB/s, 256-bit ones 50-53) */
        if (loops[k].isa != isa) continue;
        double t[5];
        for (unsigned r = 0; r < 5; r++) t[r] = pass(k, p, n, threads);
        double med = bench_median(t, 5);
        if (best == N_LOOPS || med < best_t) best = k, best_t = med;
    }
    return best;
}

const char *read_bw_name(unsigned loop) { return loop < N_LOOPS ? loops[loop].name : "?"; }

double read_bw_pass(unsigned loop, const uint64_t *p, size_t n, int threads)
{
    return pass(loop < N_LOOPS ? loop : N_LOOPS - 2, p, n, threads);
}
