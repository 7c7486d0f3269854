/* fp16_attention.c - see fp16_attention.h.  One clone of the chunk
 * kernel per x86-64 level (AVX-512, AVX2, baseline), with every helper
 * inlined into it: fp16 rows go through the branch-free converter (it
 * vectorizes; GCC 12 does not vectorize _Float16 casts), dot products are
 * OpenMP simd reductions (vectorized without -ffast-math), and the softmax
 * uses the same fast exp as the cpu backend (gear_exp_neg), so neither
 * side wins on libm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <gear/backend.h>
#include "fp16_attention.h"


typedef uint16_t f16;
#define F16_TO_F32(x) gear_half_to_float(x)
#define INLINE static inline __attribute__((always_inline))

#define CHUNK 256 /* tokens per work item */

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

INLINE float softmax_row(float *s, unsigned n, float *mx_out)
{
    float mx = -INFINITY, sum = 0.0f;
    for (unsigned j = 0; j < n; j++) mx = s[j] > mx ? s[j] : mx;
    for (unsigned j = 0; j < n; j++) {
        s[j] = gear_exp_neg(s[j] - mx);
        sum += s[j];
    }
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

int fp16_attention(const uint16_t *k, const uint16_t *v, unsigned n_head, unsigned T, unsigned d,
                   const float *q, unsigned G, float scale, float *out, int threads)
{
    unsigned chunks = (T + CHUNK - 1) / CHUNK;
    size_t items = (size_t)n_head * chunks;
    float *m = malloc(sizeof(float) * items * G), *l = malloc(sizeof(float) * items * G);
    float *o = malloc(sizeof(float) * items * G * d);
    int failed = !m || !l || !o;
    if (!failed) {
#pragma omp parallel num_threads(threads)
        {
            float *s = malloc(sizeof(float) * G * CHUNK), *row = malloc(sizeof(float) * d);
#pragma omp for schedule(static)
            for (size_t it = 0; it < items; it++) {
                if (!s || !row) continue;
                unsigned h = (unsigned)(it / chunks), c = (unsigned)(it % chunks);
                unsigned t0 = c * CHUNK, n = T - t0 < CHUNK ? T - t0 : CHUNK;
                size_t off = ((size_t)h * T + t0) * d;
                chunk((const f16 *)k + off, (const f16 *)v + off, n, d, q + (size_t)h * G * d, G,
                      scale, s, row, m + it * G, l + it * G, o + it * G * d);
            }
            if (!s || !row) {
#pragma omp atomic write
                failed = 1;
            }
            free(s);
            free(row);
        }
    }
    /* merge the chunks of each head */
    for (unsigned h = 0; h < n_head && !failed; h++)
        for (unsigned g = 0; g < G; g++) {
            float mx = -INFINITY, sum = 0.0f;
            for (unsigned c = 0; c < chunks; c++) {
                float mc = m[((size_t)h * chunks + c) * G + g];
                mx = mc > mx ? mc : mx;
            }
            float *dst = out + ((size_t)h * G + g) * d;
            memset(dst, 0, sizeof(float) * d);
            for (unsigned c = 0; c < chunks; c++) {
                size_t it = (size_t)h * chunks + c;
                float w = gear_exp_neg(m[it * G + g] - mx);
                sum += w * l[it * G + g];
                axpy(dst, w, o + (it * G + g) * d, d);
            }
            for (unsigned x = 0; x < d; x++) dst[x] /= sum;
        }
    free(m);
    free(l);
    free(o);
    return failed ? -1 : 0;
}
