/* fp16_attention.c - see fp16_attention.h.  Where the CPU has AVX-512
 * (with F16C and FMA), chunk_avx512 below (chunk_avx2, the same eight
 * lanes wide, where it has AVX2 only): fp16 rows converted by
 * vcvtph2ps once for every query row, the scores of 16 tokens reduced
 * together, values accumulated 64 channels x 4 query rows in registers.
 * Elsewhere (and for chunks that are not a multiple of 16 tokens) one
 * clone of the generic chunk kernel per x86-64 level (AVX-512, AVX2,
 * baseline), with every helper inlined into it: fp16 rows go through the
 * branch-free converter (it vectorizes; GCC 12 does not vectorize
 * _Float16 casts), dot products are OpenMP simd reductions (vectorized
 * without -ffast-math).  The softmax uses the same fast exp as the cpu
 * backend (gear_exp_neg), so neither side wins on libm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <gear/backend.h>
#include "fp16_attention.h"


typedef uint16_t f16;
#define F16_TO_F32(x) gear_half_to_float(x)
#define INLINE static inline __attribute__((always_inline))

/* Tokens per work item: at most CHUNK_MAX, halved (down to CHUNK_MIN)
 * until every thread has 4 items.  Long items read keys and values in
 * long sequential runs, which the hardware prefetchers follow best: at
 * 16k tokens, G = 4, 4096 took 25 % less time than 256 on the Zen 4
 * machine of README. */
#define CHUNK_MAX 4096
#define CHUNK_MIN 256

INLINE void row_f32(const f16 *src, unsigned d, float *dst)
{
    for (unsigned c = 0; c < d; c++) dst[c] = F16_TO_F32(src[c]);
}

/* omp simd reduction: vectorized with a proper horizontal sum, and
 * without -ffast-math (OpenMP allows the reassociation here only). */
INLINE float dot(const float *a, const float *b, unsigned n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (unsigned i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Three omp simd loops: the max and the sum are reductions, which GCC
 * vectorizes only when OpenMP allows the reassociation; the exponentials
 * vectorize once apart from the sum.  clang 14 and 15 cannot vectorize
 * the max in any form tried and warn (an error under --enable-werror), so
 * they get it scalar. */
#ifdef __clang__
#define SIMD_MAX_MX
#else
#define SIMD_MAX_MX _Pragma("omp simd reduction(max : mx)")
#endif
INLINE float softmax_row(float *s, unsigned n, float *mx_out)
{
    float mx = -INFINITY, sum = 0.0f;
    SIMD_MAX_MX
    for (unsigned j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
#pragma omp simd
    for (unsigned j = 0; j < n; j++) s[j] = gear_exp_neg(s[j] - mx);
#pragma omp simd reduction(+ : sum)
    for (unsigned j = 0; j < n; j++) sum += s[j];
    *mx_out = mx;
    return sum;
}

INLINE void axpy(float *y, float a, const float *x, unsigned n)
{
    for (unsigned i = 0; i < n; i++) y[i] += a * x[i];
}

/* One chunk of n tokens of one KV head for its G query rows: scores, a
 * local softmax (max m, sum l) and the unnormalized output o. */
GEAR_CLONES
static void chunk(const f16 *k, const f16 *v, unsigned n, unsigned d, const float *q, unsigned G,
                  float scale, float *s, float *row, float *m, float *l, float *o)
{
    for (unsigned j = 0; j < n; j++) {
        row_f32(k + (size_t)j * d, d, row);
        for (unsigned g = 0; g < G; g++) s[g * n + j] = dot(q + g * d, row, d) * scale;
    }
    for (unsigned g = 0; g < G; g++) l[g] = softmax_row(s + g * n, n, &m[g]);
    memset(o, 0, sizeof(float) * G * d);
    for (unsigned j = 0; j < n; j++) {
        row_f32(v + (size_t)j * d, d, row);
        for (unsigned g = 0; g < G; g++) axpy(o + g * d, s[g * n + j], row, d);
    }
}

/* CALL(R) for R = left rows (1, 2, 3 or 4 and more), R a constant in each
 * case, so that the kernels' loops over rows unroll. */
#define BY_ROWS(left, CALL)         \
    switch (left) {                 \
    case 1: CALL(1); break;         \
    case 2: CALL(2); break;         \
    case 3: CALL(3); break;         \
    default: CALL(4); break;        \
    }

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define T512 __attribute__((target("avx512f,fma,f16c")))
#define I512 static inline __attribute__((always_inline, target("avx512f,fma,f16c")))
#define HAVE_CHUNK512 1

/* out lane j = the sum of the lanes of v[j], j < 16.  (The compressor's
 * power iteration has the same reduction, cpu_avx512_compress.c; the
 * baseline keeps its own, so that it owes nothing to the library it is
 * measured against.) */
I512 __m512 hsum16(const __m512 *v)
{
    __m512 t[8], u[4];
    for (unsigned i = 0; i < 8; i++)
        t[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (unsigned i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[2 * i]), b = _mm512_castps_pd(t[2 * i + 1]);
        u[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
    }
    __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88), _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88), _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

/* o[r][c0..c0+16W) += sum_j s[r][j] v_j[c0..] for R (constant) rows and
 * tokens [j0, j1), W = 4 (64 channels) or, at the end of a head dim that
 * is not a multiple of 64, 1 to 3: WR accumulators in registers. */
I512 void values64(const f16 *v, unsigned d, unsigned c0, unsigned j0, unsigned j1, const float *s, unsigned n,
                   unsigned R, unsigned W, float *o)
{
    __m512 acc[4][4];
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < W; i++) acc[r][i] = _mm512_loadu_ps(o + (size_t)r * d + c0 + 16 * i);
    for (unsigned j = j0; j < j1; j++) {
        const f16 *vr = v + (size_t)j * d + c0;
        __m512 x[4];
        for (unsigned i = 0; i < W; i++) x[i] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(vr + 16 * i)));
        for (unsigned r = 0; r < R; r++) {
            __m512 w = _mm512_set1_ps(s[(size_t)r * n + j]);
            for (unsigned i = 0; i < W; i++) acc[r][i] = _mm512_fmadd_ps(w, x[i], acc[r][i]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < W; i++) _mm512_storeu_ps(o + (size_t)r * d + c0 + 16 * i, acc[r][i]);
}

/* Lane partials of q_r . k_j for R (constant) query rows and the 16/R'
 * tokens from j0 (R' = R rounded up to 1, 2 or 4): R*16/R' accumulators,
 * each key chunk converted once for all rows.  part[r][j - jb]. */
I512 void key_partials(const f16 *k, unsigned d, const float *q, unsigned R, unsigned j0, unsigned jb,
                       __m512 part[4][16])
{
    const unsigned TQ = R == 1 ? 16 : R == 2 ? 8 : 4;
    __m512 acc[4][16];
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < TQ; j++) acc[r][j] = _mm512_setzero_ps();
    for (unsigned c = 0; c < d; c += 16) {
        __m512 x[16];
        for (unsigned j = 0; j < TQ; j++)
            x[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(k + (size_t)(j0 + j) * d + c)));
        for (unsigned r = 0; r < R; r++) {
            __m512 qr = _mm512_loadu_ps(q + (size_t)r * d + c);
            for (unsigned j = 0; j < TQ; j++) acc[r][j] = _mm512_fmadd_ps(qr, x[j], acc[r][j]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < TQ; j++) part[r][j0 - jb + j] = acc[r][j];
}

/* Scores of up to 4 rows (R constant) for tokens [jb, jb+16). */
I512 void key_scores16(const f16 *k, unsigned d, const float *q, unsigned R, unsigned jb, float scale, float *s,
                       unsigned n)
{
    const unsigned TQ = R == 1 ? 16 : R == 2 ? 8 : 4;
    __m512 part[4][16];
    for (unsigned t = 0; t < 16; t += TQ) key_partials(k, d, q, R, jb + t, jb, part);
    for (unsigned r = 0; r < R; r++)
        _mm512_storeu_ps(s + (size_t)r * n + jb, _mm512_mul_ps(hsum16(part[r]), _mm512_set1_ps(scale)));
}

I512 void prefetch_rows(const f16 *x, unsigned rows, unsigned d)
{
    for (size_t b = 0; b < (size_t)rows * d * 2; b += 64) _mm_prefetch((const char *)x + b, _MM_HINT_T0);
}

/* Key rows [j, j + 16) of a chunk of n, or of the next chunk (next_k,
 * or NULL) from j = n on. */
I512 void prefetch_keys16(const f16 *k, unsigned n, unsigned d, unsigned j, const f16 *next_k)
{
    if (j + 16 <= n)
        prefetch_rows(k + (size_t)j * d, 16, d);
    else if (next_k)
        prefetch_rows(next_k + (size_t)(j - n) * d, 16, d);
}

/* chunk() for n a multiple of 16 and d a multiple of 16, on AVX-512.
 * With pf_keys, the key loop fetches the key rows 16 ahead (into the next
 * chunk's, next_k, or NULL). */
T512 static void chunk_avx512(const f16 *k, const f16 *v, unsigned n, unsigned d, const float *q, unsigned G,
                              float scale, float *s, float *m, float *l, float *o, const f16 *next_k, int pf_keys)
{
    for (unsigned jb = 0; jb < n; jb += 16) {
        if (pf_keys) prefetch_keys16(k, n, d, jb + 16, next_k);
#define KEYS16(R) key_scores16(k, d, q + (size_t)g * d, R, jb, scale, s + (size_t)g * n, n)
        for (unsigned g = 0; g < G; g += 4) BY_ROWS(G - g, KEYS16)
#undef KEYS16
    }
    for (unsigned g = 0; g < G; g++) l[g] = softmax_row(s + (size_t)g * n, n, &m[g]);
    memset(o, 0, sizeof(float) * G * d);
    /* 64 tokens at a time (16 KB of values at d = 128, in L1 for every
     * 64-channel pass), up to 4 query rows a pass */
    for (unsigned j0 = 0; j0 < n; j0 += 64) {
        unsigned j1 = j0 + 64 < n ? j0 + 64 : n;
#define VALUES64(R) values64(v, d, c0, j0, j1, s + (size_t)g * n, n, R, 4, o + (size_t)g * d)
#define VALUES_TAIL(R)                                                                        \
    do {                                                                                      \
        float *o_ = o + (size_t)g * d;                                                        \
        const float *s_ = s + (size_t)g * n;                                                  \
        if (d - c0 == 16)                                                                     \
            values64(v, d, c0, j0, j1, s_, n, R, 1, o_);                                      \
        else if (d - c0 == 32)                                                                \
            values64(v, d, c0, j0, j1, s_, n, R, 2, o_);                                      \
        else                                                                                  \
            values64(v, d, c0, j0, j1, s_, n, R, 3, o_);                                      \
    } while (0)
        for (unsigned g = 0; g < G; g += 4) {
            unsigned c0 = 0;
            for (; c0 + 64 <= d; c0 += 64) BY_ROWS(G - g, VALUES64);
            if (c0 < d) BY_ROWS(G - g, VALUES_TAIL); /* head dims 80, 96, 112, ... */
        }
#undef VALUES_TAIL
#undef VALUES64
    }
}

/* The same kernel eight lanes wide, for CPUs with AVX2, FMA and F16C but
 * no AVX-512 (and where GEAR_CPU_NO_AVX512 is set, as the cpu module
 * reads it, so that both sides of the comparison run what an AVX2-only
 * CPU would).  16 ymm registers: up to 8 accumulators a pass. */
#define T256 __attribute__((target("avx2,fma,f16c")))
#define I256 static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* out lane j = the sum of the lanes of v[j], j < 8. */
I256 __m256 hsum8(const __m256 *v)
{
    __m256 t[4], u[2];
    for (unsigned i = 0; i < 4; i++)
        t[i] = _mm256_add_ps(_mm256_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm256_unpackhi_ps(v[2 * i], v[2 * i + 1]));
    for (unsigned i = 0; i < 2; i++) {
        __m256d a = _mm256_castps_pd(t[2 * i]), b = _mm256_castps_pd(t[2 * i + 1]);
        u[i] = _mm256_add_ps(_mm256_castpd_ps(_mm256_unpacklo_pd(a, b)), _mm256_castpd_ps(_mm256_unpackhi_pd(a, b)));
    }
    return _mm256_add_ps(_mm256_permute2f128_ps(u[0], u[1], 0x20), _mm256_permute2f128_ps(u[0], u[1], 0x31));
}

/* o[r][c0..c0+8*NC) += sum_j s[r][j] v_j[c0..] for R (constant) rows and
 * tokens [j0, j1): R*NC accumulators (NC = 4 for one or two rows, 2 for
 * three or four). */
I256 void values_v8(const f16 *v, unsigned d, unsigned c0, unsigned j0, unsigned j1, const float *s, unsigned n,
                    unsigned R, unsigned NC, float *o)
{
    __m256 acc[4][4];
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < NC; i++) acc[r][i] = _mm256_loadu_ps(o + (size_t)r * d + c0 + 8 * i);
    for (unsigned j = j0; j < j1; j++) {
        const f16 *vr = v + (size_t)j * d + c0;
        __m256 x[4];
        for (unsigned i = 0; i < NC; i++) x[i] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(vr + 8 * i)));
        for (unsigned r = 0; r < R; r++) {
            __m256 w = _mm256_broadcast_ss(s + (size_t)r * n + j);
            for (unsigned i = 0; i < NC; i++) acc[r][i] = _mm256_fmadd_ps(w, x[i], acc[r][i]);
        }
    }
    for (unsigned r = 0; r < R; r++)
        for (unsigned i = 0; i < NC; i++) _mm256_storeu_ps(o + (size_t)r * d + c0 + 8 * i, acc[r][i]);
}

/* Scores of up to 4 rows (R constant) for tokens [jb, jb+8): lane
 * partials of R*TQ dot products at a time (TQ = 8, 4, 2 tokens for 1, 2,
 * 3-4 rows), each key chunk converted once for all rows. */
I256 void key_scores8(const f16 *k, unsigned d, const float *q, unsigned R, unsigned jb, float scale, float *s,
                      unsigned n)
{
    const unsigned TQ = R == 1 ? 8 : R == 2 ? 4 : 2;
    __m256 part[4][8];
    for (unsigned t = 0; t < 8; t += TQ) {
        __m256 acc[4][8];
        for (unsigned r = 0; r < R; r++)
            for (unsigned j = 0; j < TQ; j++) acc[r][j] = _mm256_setzero_ps();
        for (unsigned c = 0; c < d; c += 8) {
            __m256 x[8];
            for (unsigned j = 0; j < TQ; j++)
                x[j] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(k + (size_t)(jb + t + j) * d + c)));
            for (unsigned r = 0; r < R; r++) {
                __m256 qr = _mm256_loadu_ps(q + (size_t)r * d + c);
                for (unsigned j = 0; j < TQ; j++) acc[r][j] = _mm256_fmadd_ps(qr, x[j], acc[r][j]);
            }
        }
        for (unsigned r = 0; r < R; r++)
            for (unsigned j = 0; j < TQ; j++) part[r][t + j] = acc[r][j];
    }
    for (unsigned r = 0; r < R; r++)
        _mm256_storeu_ps(s + (size_t)r * n + jb, _mm256_mul_ps(hsum8(part[r]), _mm256_set1_ps(scale)));
}

/* chunk() for n a multiple of 16 and d a multiple of 64, on AVX2; the
 * key prefetches as chunk_avx512's. */
T256 static void chunk_avx2(const f16 *k, const f16 *v, unsigned n, unsigned d, const float *q, unsigned G,
                            float scale, float *s, float *m, float *l, float *o, const f16 *next_k, int pf_keys)
{
    for (unsigned jb = 0; jb < n; jb += 8) {
        if (pf_keys && jb % 16 == 0) {
            const f16 *nx = jb + 16 < n ? k + (size_t)(jb + 16) * d : next_k; /* rows [jb+16, jb+32) */
            if (nx)
                for (size_t b = 0; b < (size_t)16 * d * 2; b += 64) _mm_prefetch((const char *)nx + b, _MM_HINT_T0);
        }
#define KEYS8(R) key_scores8(k, d, q + (size_t)g * d, R, jb, scale, s + (size_t)g * n, n)
        for (unsigned g = 0; g < G; g += 4) BY_ROWS(G - g, KEYS8)
#undef KEYS8
    }
    for (unsigned g = 0; g < G; g++) l[g] = softmax_row(s + (size_t)g * n, n, &m[g]);
    memset(o, 0, sizeof(float) * G * d);
    for (unsigned j0 = 0; j0 < n; j0 += 64) {
        unsigned j1 = j0 + 64 < n ? j0 + 64 : n;
/* 32 channels a pass for one or two rows, 16 for three or four */
#define VALUES8(R)                                                                                          \
    for (unsigned c0 = 0; c0 < d; c0 += (R) <= 2 ? 32 : 16)                                                 \
    values_v8(v, d, c0, j0, j1, s + (size_t)g * n, n, R, (R) <= 2 ? 4 : 2, o + (size_t)g * d)
        for (unsigned g = 0; g < G; g += 4) BY_ROWS(G - g, VALUES8)
#undef VALUES8
    }
}
#endif

int fp16_attention_generic = 0;

#ifdef HAVE_CHUNK512
/* F16C from CPUID: clang before 16 has no "f16c" for __builtin_cpu_supports */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

/* 2: chunk_avx512, 1: chunk_avx2, 0: the generic chunk. */
static int fast_kernel(unsigned d)
{
#ifdef HAVE_CHUNK512
    if (d % 16 || !__builtin_cpu_supports("fma") || !has_f16c()) return 0;
    if (__builtin_cpu_supports("avx512f") && getenv("GEAR_CPU_NO_AVX512") == NULL) return 2;
    return __builtin_cpu_supports("avx2") && d % 64 == 0 ? 1 : 0;
#else
    (void)d;
    return 0;
#endif
}

const char *fp16_attention_kernel(unsigned d)
{
    int f = fast_kernel(d);
    return f == 2 ? "avx512" : f == 1 ? "avx2" : "generic";
}

/* The chunk length for n_head heads of T tokens on this many threads. */
static unsigned chunk_len(unsigned n_head, unsigned T, int threads)
{
    size_t want = 4 * (size_t)(threads > 1 ? threads : 1);
    unsigned c = CHUNK_MAX;
    while (c > CHUNK_MIN && (size_t)n_head * ((T + c - 1) / c) < want) c /= 2;
    return c;
}

/* Row hg = h * G + g of the output: the chunks of head h merged. */
static void merge_row(const float *m, const float *l, const float *o, unsigned chunks, unsigned G, unsigned d,
                      size_t hg, float *dst)
{
    size_t h = hg / G, g = hg % G;
    float mx = -INFINITY, sum = 0.0f;
    for (unsigned c = 0; c < chunks; c++) {
        float mc = m[(h * chunks + c) * G + g];
        mx = mc > mx ? mc : mx;
    }
    memset(dst, 0, sizeof(float) * d);
    for (unsigned c = 0; c < chunks; c++) {
        size_t it = h * chunks + c;
        float w = gear_exp_neg(m[it * G + g] - mx);
        sum += w * l[it * G + g];
        axpy(dst, w, o + (it * G + g) * d, d);
    }
    for (unsigned x = 0; x < d; x++) dst[x] /= sum;
}

int fp16_attention(const uint16_t *k, const uint16_t *v, unsigned n_head, unsigned T, unsigned d,
                   const float *q, unsigned G, float scale, float *out, int threads)
{
    int fast = fp16_attention_generic ? 0 : fast_kernel(d);
    /* Software prefetch of the keys with one or two query rows only:
     * there the key loop reads a row faster than the hardware prefetchers
     * bring one in (16k tokens, head dim 128, G = 1, 2 threads: 40 % less
     * time).  With more rows they keep up, and prefetching the keys (or
     * the values, during the key loop) made the step slower. */
    int pf_keys = G <= 2;
    const unsigned CHUNK = chunk_len(n_head, T, threads);
    /* chunks of whole groups of 16 tokens, then the rest (T % 16) as one
     * more: the fast kernels take multiples of 16 only, and a context of
     * 1087 tokens, one chunk a head, ran all of it through the generic
     * kernel (2.8x the time of 1024 tokens; head dim 128, G = 4) */
    const unsigned aligned = T & ~15u, rest = T - aligned;
    unsigned chunks = (aligned + CHUNK - 1) / CHUNK + (rest ? 1 : 0);
    size_t items = (size_t)n_head * chunks;
    float *m = malloc(sizeof(float) * items * G), *l = malloc(sizeof(float) * items * G);
    float *o = malloc(sizeof(float) * items * G * d);
    int failed = !m || !l || !o;
    if (!failed) {
#pragma omp parallel num_threads(threads)
        {
            float *s = malloc(sizeof(float) * G * CHUNK), *row = malloc(sizeof(float) * d);
            if (!s || !row) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (size_t it = 0; it < items; it++) {
                if (!s || !row) continue;
                unsigned h = (unsigned)(it / chunks), c = (unsigned)(it % chunks);
                unsigned t0 = c * CHUNK, n = aligned - t0 < CHUNK ? aligned - t0 : CHUNK;
                if (rest && c + 1 == chunks) t0 = aligned, n = rest;
                size_t off = ((size_t)h * T + t0) * d;
#ifdef HAVE_CHUNK512
                if (fast && n % 16 == 0) {
                    /* the next item of a static schedule: the next chunk, its keys right after these */
                    const f16 *nk = it + 1 < items ? (const f16 *)k + off + (size_t)n * d : NULL;
                    (fast == 2 ? chunk_avx512 : chunk_avx2)((const f16 *)k + off, (const f16 *)v + off, n, d,
                                                            q + (size_t)h * G * d, G, scale, s, m + it * G,
                                                            l + it * G, o + it * G * d, nk, pf_keys);
                    continue;
                }
#endif
                chunk((const f16 *)k + off, (const f16 *)v + off, n, d, q + (size_t)h * G * d, G,
                      scale, s, row, m + it * G, l + it * G, o + it * G * d);
            }
            free(s);
            free(row);
            /* the for loop's barrier has passed: every chunk is done */
            int bad;
#pragma omp atomic read
            bad = failed;
            /* merge the chunks of each head, a row at a time */
#pragma omp for schedule(static)
            for (size_t hg = 0; hg < (size_t)n_head * G; hg++)
                if (!bad) merge_row(m, l, o, chunks, G, d, hg, out + hg * d);
        }
    }
    free(m);
    free(l);
    free(o);
    return failed ? -1 : 0;
}
