/*
 * check_calibmath.c - the calibration numerics (lib/calib_math.h): weighted
 * k-means and the symmetric eigen-decomposition.  Expected values are
 * hand-computed (weighted means, diagonal matrices, the -1 2 -1 matrix whose
 * eigenvalues are known in closed form) or checked by independent identities
 * (A v = lambda v, V^T V = I, trace and Frobenius norm).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "testutil.h"
#include "internal.h"
#include "calib_math.h"

#define PI_D 3.14159265358979323846
#define SQRT1_2_D 0.70710678118654752440

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    TU_CHECK(p != NULL);
    return p;
}

/* ----------------------------------------------------------------- k-means */

static double sqdist_f(const float *a, const float *b, unsigned c)
{
    double s = 0.0;
    for (unsigned j = 0; j < c; j++) {
        double t = (double)a[j] - (double)b[j];
        s += t * t;
    }
    return s;
}

static void check_all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) TU_ASSERT(isfinite(v[i]), "value %zu is %g", i, (double)v[i]);
}

/* 16 well-separated centres in 4-D (a 2x2x2x2 grid, spacing 10, plus a
 * jitter), 200 points each with sigma 0.05: every centre is found to well
 * under the noise level, one centroid per centre. */
START_TEST(test_kmeans_recovers_clusters)
{
    enum { C = 4, K = 16, PER = 200, N = K * PER };
    float centers[K * C];
    uint64_t s = 1234;
    for (unsigned m = 0; m < K; m++)
        for (unsigned j = 0; j < C; j++)
            centers[m * C + j] = (float)(10.0 * ((m >> j) & 1) + tu_rand01(&s) - 0.5);
    float *x = xmalloc(N * C * sizeof *x), *noise = xmalloc(N * C * sizeof *noise);
    tu_fill_normal(99, noise, N * C, 0.05f);
    /* interleave the clusters so no cluster sits in one contiguous block */
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < C; j++) x[i * C + j] = centers[(i % K) * C + j] + noise[i * C + j];
    for (uint64_t seed = 0; seed < 6; seed++) {
        float cent[K * C];
        double inertia = -1.0;
        TU_OK(gear_kmeans(x, NULL, N, C, K, 50, seed, cent, &inertia));
        check_all_finite(cent, K * C);
        int used[K] = {0};
        for (unsigned m = 0; m < K; m++) {
            unsigned best = 0;
            for (unsigned q = 1; q < K; q++)
                if (sqdist_f(centers + m * C, cent + q * C, C) <
                    sqdist_f(centers + m * C, cent + best * C, C))
                    best = q;
            double err = sqrt(sqdist_f(centers + m * C, cent + best * C, C));
            TU_ASSERT(err < 0.02, "seed %u: centre %u found at distance %g", (unsigned)seed, m, err);
            TU_ASSERT(!used[best], "seed %u: centroid %u matches two centres", (unsigned)seed, best);
            used[best] = 1;
        }
        /* inertia ~ N * C * sigma^2 = 32 */
        TU_ASSERT(inertia > 20.0 && inertia < 45.0, "inertia %g", inertia);
    }
    free(x);
    free(noise);
}
END_TEST

/* Weighted means, computed by hand. */
START_TEST(test_kmeans_weights)
{
    float cent[4];
    double inertia = -1.0;
    /* 2 points weighted 1 and 3, k = 1: 0.75 of the way */
    const float x1[2] = {0.0f, 1.0f}, w1[2] = {1.0f, 3.0f};
    TU_OK(gear_kmeans(x1, w1, 2, 1, 1, 10, 7, cent, &inertia));
    TU_CHECK(fabsf(cent[0] - 0.75f) < 1e-7f);
    TU_CHECK(fabs(inertia - (1.0 * 0.75 * 0.75 + 3.0 * 0.25 * 0.25)) < 1e-12);
    /* the same in 2-D, between (0,0) and (4,8): (3,6) */
    const float x2[4] = {0.0f, 0.0f, 4.0f, 8.0f};
    TU_OK(gear_kmeans(x2, w1, 2, 2, 1, 10, 7, cent, &inertia));
    TU_CHECK(fabsf(cent[0] - 3.0f) < 1e-6f && fabsf(cent[1] - 6.0f) < 1e-6f);
    TU_CHECK(fabs(inertia - (1.0 * 45.0 + 3.0 * 5.0)) < 1e-9);
    /* no weights: the plain mean */
    TU_OK(gear_kmeans(x1, NULL, 2, 1, 1, 10, 7, cent, &inertia));
    TU_CHECK(cent[0] == 0.5f);
    TU_CHECK(fabs(inertia - 0.5) < 1e-12);
    /* all-zero weights: uniform */
    const float wz[2] = {0.0f, 0.0f};
    TU_OK(gear_kmeans(x1, wz, 2, 1, 1, 10, 7, cent, &inertia));
    TU_CHECK(cent[0] == 0.5f);
    /* a zero-weight sample pulls nothing (and adds nothing to the inertia) */
    const float w0[2] = {2.0f, 0.0f};
    TU_OK(gear_kmeans(x1, w0, 2, 1, 1, 10, 7, cent, &inertia));
    TU_CHECK(cent[0] == 0.0f);
    TU_CHECK(inertia == 0.0);
    /* two clusters, weights shift each: {0 (w1), 1 (w3)} and {10 (w1), 12 (w1)} */
    const float x3[4] = {0.0f, 1.0f, 10.0f, 12.0f}, w3[4] = {1.0f, 3.0f, 1.0f, 1.0f};
    for (uint64_t seed = 0; seed < 8; seed++) {
        TU_OK(gear_kmeans(x3, w3, 4, 1, 2, 10, seed, cent, &inertia));
        float lo = fminf(cent[0], cent[1]), hi = fmaxf(cent[0], cent[1]);
        TU_ASSERT(fabsf(lo - 0.75f) < 1e-6f && fabsf(hi - 11.0f) < 1e-6f,
                  "seed %u: %g %g", (unsigned)seed, (double)cent[0], (double)cent[1]);
        TU_CHECK(fabs(inertia - (0.75 + 2.0)) < 1e-9);
    }
    /* heavy samples attract the draw: a far-off point of weight 0 never
     * becomes a centroid of its own when k = number of weighted points */
    const float x4[3] = {0.0f, 5.0f, 1000.0f}, w4[3] = {1.0f, 1.0f, 0.0f};
    for (uint64_t seed = 0; seed < 8; seed++) {
        TU_OK(gear_kmeans(x4, w4, 3, 1, 2, 10, seed, cent, NULL));
        float lo = fminf(cent[0], cent[1]), hi = fmaxf(cent[0], cent[1]);
        TU_CHECK(lo == 0.0f && hi == 5.0f);
    }
}
END_TEST

/* k above the number of distinct samples: no NaN, every distinct point is a
 * centroid, every centroid is a sample, inertia 0. */
START_TEST(test_kmeans_few_distinct)
{
    enum { C = 3, D = 5, REP = 10, N = D * REP };
    float pts[D * C];
    tu_fill_uniform(5, pts, D * C, -3.0f, 3.0f);
    float x[N * C];
    for (unsigned i = 0; i < N; i++) memcpy(x + i * C, pts + (i % D) * C, C * sizeof(float));
    const unsigned ks[] = {5, 6, 8, 40, 50, 77};
    for (unsigned t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        unsigned k = ks[t];
        float *cent = xmalloc((size_t)k * C * sizeof *cent);
        for (uint64_t seed = 0; seed < 4; seed++) {
            double inertia = -1.0;
            TU_OK(gear_kmeans(x, NULL, N, C, k, 20, seed, cent, &inertia));
            check_all_finite(cent, (size_t)k * C);
            TU_ASSERT(inertia == 0.0, "k=%u: inertia %g", k, inertia);
            for (unsigned p = 0; p < D; p++) {
                int found = 0;
                for (unsigned m = 0; m < k; m++)
                    found |= memcmp(cent + m * C, pts + p * C, C * sizeof(float)) == 0;
                TU_ASSERT(found, "k=%u: point %u is no centroid", k, p);
            }
            for (unsigned m = 0; m < k; m++) {
                int found = 0;
                for (unsigned p = 0; p < D; p++)
                    found |= memcmp(cent + m * C, pts + p * C, C * sizeof(float)) == 0;
                TU_ASSERT(found, "k=%u: centroid %u is no sample", k, m);
            }
        }
        free(cent);
    }
    /* k > n, and a single sample */
    float cent[10 * C];
    TU_OK(gear_kmeans(pts, NULL, 3, C, 10, 5, 1, cent, NULL));
    check_all_finite(cent, 10 * C);
    TU_OK(gear_kmeans(pts, NULL, 1, C, 10, 5, 1, cent, NULL));
    for (unsigned m = 0; m < 10; m++) TU_CHECK(memcmp(cent + m * C, pts, C * sizeof(float)) == 0);
}
END_TEST

/* With more distinct samples than k, a converged run leaves no centroid
 * without a (positive-weight) sample: empty clusters get re-seeded.  Clumpy
 * data (a few tight blobs, k much larger than the blob count) makes empty
 * clusters likely during the iterations. */
START_TEST(test_kmeans_no_unused_centroid)
{
    enum { C = 2, N = 2048, K = 256 };
    float *x = xmalloc(N * C * sizeof *x), *w = xmalloc(N * sizeof *w);
    tu_fill_normal(3, x, N * C, 0.01f);
    uint64_t s = 77;
    for (unsigned i = 0; i < N; i++) {
        unsigned blob = (unsigned)(tu_rand01(&s) * 4);
        x[i * C] += (float)blob;
        x[i * C + 1] += (float)(blob * blob);
        w[i] = i % 7 == 0 ? 0.0f : (float)(0.5 + tu_rand01(&s));
    }
    float *cent = xmalloc(K * C * sizeof *cent);
    for (int weighted = 0; weighted < 2; weighted++) {
        TU_OK(gear_kmeans(x, weighted ? w : NULL, N, C, K, 1000, 11, cent, NULL));
        check_all_finite(cent, K * C);
        int used[K] = {0};
        for (unsigned i = 0; i < N; i++) {
            if (weighted && w[i] == 0.0f) continue;
            unsigned b = 0;
            double bd = sqdist_f(x + i * C, cent, C);
            for (unsigned m = 1; m < K; m++) {
                double d = sqdist_f(x + i * C, cent + m * C, C);
                if (d < bd) bd = d, b = m;
            }
            used[b] = 1;
        }
        for (unsigned m = 0; m < K; m++) TU_ASSERT(used[m], "weighted=%d: centroid %u unused", weighted, m);
    }
    free(x);
    free(w);
    free(cent);
}
END_TEST

/* Clusters empty out during Lloyd only rarely (with k-means++ seeds every
 * centroid starts on its own sample); this sweep of small heavy-tailed
 * problems, k up to 0.6 n, contains a few runs where one does (c = 1: runs
 * 4857, 12926, 14258; c = 2: 13560, 15605 at the time of writing).  Every
 * run must end with each centroid the nearest one (to fp32 rounding) of some
 * sample. */
static double mix01(uint64_t *s)
{
    *s = gear_mix64(*s);
    return (double)(*s >> 11) * (1.0 / 9007199254740992.0);
}

START_TEST(test_kmeans_reseed_sweep)
{
    static float x[110 * 2], cent[70 * 2];
    for (unsigned c = 1; c <= 2; c++) {
        uint64_t s = 1;
        unsigned runs = c == 1 ? 15000 : 16000;
        for (unsigned t = 0; t < runs; t++) {
            unsigned n = 10 + (unsigned)(mix01(&s) * 100), k = 2 + (unsigned)(mix01(&s) * (n * 0.6));
            for (unsigned i = 0; i < n * c; i++) x[i] = (float)tan(3.0 * (mix01(&s) - 0.5));
            double in;
            TU_OK(gear_kmeans(x, NULL, n, c, k, 1000, t, cent, &in));
            TU_ASSERT(in >= 0.0 && isfinite(in), "c=%u run %u: inertia %g", c, t, in);
            /* a centroid is used when it is within fp32 rounding of some
             * sample's nearest distance */
            unsigned char used[70] = {0};
            double d[70];
            for (unsigned i = 0; i < n; i++) {
                double best = INFINITY;
                for (unsigned q = 0; q < k; q++) {
                    d[q] = sqdist_f(x + i * c, cent + q * c, c);
                    if (d[q] < best) best = d[q];
                }
                for (unsigned q = 0; q < k; q++) used[q] |= d[q] <= best * (1.0 + 1e-5) + 1e-30;
            }
            for (unsigned m = 0; m < k; m++)
                TU_ASSERT(used[m], "c=%u run %u (n=%u k=%u): centroid %u unused", c, t, n, k, m);
        }
    }
}
END_TEST

START_TEST(test_kmeans_deterministic)
{
    enum { C = 4, N = 3000, K = 64 };
    float *x = xmalloc(N * C * sizeof *x), *w = xmalloc(N * sizeof *w);
    tu_fill_normal(8, x, N * C, 1.0f);
    tu_fill_uniform(9, w, N, 0.0f, 2.0f);
    float *a = xmalloc(K * C * sizeof *a), *b = xmalloc(K * C * sizeof *b);
    double ia, ib;
    TU_OK(gear_kmeans(x, w, N, C, K, 15, 42, a, &ia));
    TU_OK(gear_kmeans(x, w, N, C, K, 15, 42, b, &ib));
    TU_CHECK(memcmp(a, b, K * C * sizeof *a) == 0);
    TU_CHECK(memcmp(&ia, &ib, sizeof ia) == 0);
    /* another seed: another (but valid) result */
    TU_OK(gear_kmeans(x, w, N, C, K, 15, 43, b, &ib));
    check_all_finite(b, K * C);
    TU_CHECK(memcmp(a, b, K * C * sizeof *a) != 0);
    /* the generic channel count path (c = 3, 5) is deterministic too */
    TU_OK(gear_kmeans(x, w, N * C / 5, 5, 32, 10, 1, a, &ia));
    TU_OK(gear_kmeans(x, w, N * C / 5, 5, 32, 10, 1, b, &ib));
    TU_CHECK(memcmp(a, b, 32 * 5 * sizeof *a) == 0 && ia == ib);
    free(x);
    free(w);
    free(a);
    free(b);
}
END_TEST

/* Lloyd never increases the objective: with the same seed, more iterations
 * give an inertia no larger (up to fp32 assignment rounding). */
START_TEST(test_kmeans_inertia_monotone)
{
    const unsigned cs[] = {2, 3, 4, 8};
    for (unsigned t = 0; t < 4; t++) {
        unsigned c = cs[t], n = 2000, k = 48;
        float *x = xmalloc((size_t)n * c * sizeof *x), *w = xmalloc(n * sizeof *w);
        float *cent = xmalloc((size_t)k * c * sizeof *cent);
        tu_fill_normal(20 + t, x, (size_t)n * c, 1.0f);
        for (unsigned i = 0; i < n; i++) x[i * c] *= 3.0f; /* anisotropic */
        tu_fill_uniform(30 + t, w, n, 0.1f, 3.0f);
        const unsigned its[] = {0, 1, 2, 3, 5, 8, 13, 20, 50};
        double prev = INFINITY;
        for (unsigned q = 0; q < sizeof its / sizeof its[0]; q++) {
            double in;
            TU_OK(gear_kmeans(x, w, n, c, k, its[q], 5, cent, &in));
            TU_ASSERT(in <= prev * (1.0 + 1e-6), "c=%u iters=%u: inertia %.9g > %.9g", c, its[q],
                      in, prev);
            prev = in;
        }
        free(x);
        free(w);
        free(cent);
    }
}
END_TEST

START_TEST(test_kmeans_bad_args)
{
    float x[8] = {0, 1, 2, 3, 4, 5, 6, 7}, w[4] = {1, 1, 1, 1}, cent[8];
    TU_STATUS(gear_kmeans(x, NULL, 0, 2, 1, 5, 0, cent, NULL), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_kmeans(x, NULL, 4, 0, 1, 5, 0, cent, NULL), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_kmeans(x, NULL, 4, 2, 0, 5, 0, cent, NULL), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_kmeans(NULL, NULL, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_kmeans(x, NULL, 4, 2, 1, 5, 0, NULL, NULL), GEAR_ERR_INVALID_ARG);
    w[2] = -1.0f;
    TU_STATUS(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_INVALID_ARG);
    w[2] = NAN;
    TU_STATUS(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_NONFINITE);
    w[2] = INFINITY;
    TU_STATUS(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_NONFINITE);
    w[2] = 1.0f;
    x[5] = NAN;
    TU_STATUS(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_NONFINITE);
    x[5] = -INFINITY;
    TU_STATUS(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL), GEAR_ERR_NONFINITE);
    x[5] = 5.0f;
    TU_OK(gear_kmeans(x, w, 4, 2, 1, 5, 0, cent, NULL));
    TU_CHECK(cent[0] == 3.0f && cent[1] == 4.0f);
    /* iters = 0: the k-means++ seeds, which are samples */
    TU_OK(gear_kmeans(x, w, 4, 2, 2, 0, 0, cent, NULL));
    for (unsigned m = 0; m < 2; m++) {
        int found = 0;
        for (unsigned i = 0; i < 4; i++) found |= memcmp(cent + 2 * m, x + 2 * i, 8) == 0;
        TU_CHECK(found);
    }
}
END_TEST

/* The calibration workload: n = 4096, k = 256, 20 iterations (timing
 * printed; the bound only catches pathologies, e.g. under valgrind). */
START_TEST(test_kmeans_timing)
{
    enum { N = 4096, K = 256 };
    const unsigned cs[] = {2, 4, 8};
    for (unsigned t = 0; t < 3; t++) {
        unsigned c = cs[t];
        float *x = xmalloc((size_t)N * c * sizeof *x), *cent = xmalloc((size_t)K * c * sizeof *cent);
        tu_fill_normal(50 + t, x, (size_t)N * c, 1.0f);
        double t0 = now_s(), in;
        TU_OK(gear_kmeans(x, NULL, N, c, K, 20, 1, cent, &in));
        double dt = now_s() - t0;
        check_all_finite(cent, (size_t)K * c);
        fprintf(stderr, "check_calibmath: gear_kmeans n=%d c=%u k=%d iters=20: %.2f ms\n", N, c, K,
                1e3 * dt);
        TU_ASSERT(dt < 60.0, "gear_kmeans took %g s", dt);
        free(x);
        free(cent);
    }
}
END_TEST

/* ------------------------------------------------------------------ eigen */

/* random symmetric n x n, entries ~ U(-1, 1) */
static double *rand_sym(uint64_t seed, unsigned n)
{
    double *a = xmalloc((size_t)n * n * sizeof *a);
    uint64_t s = seed;
    for (unsigned i = 0; i < n; i++)
        for (unsigned j = 0; j <= i; j++)
            a[(size_t)i * n + j] = a[(size_t)j * n + i] = 2.0 * tu_rand01(&s) - 1.0;
    return a;
}

static double frob(const double *a, size_t nn)
{
    double s = 0.0;
    for (size_t i = 0; i < nn; i++) s += a[i] * a[i];
    return sqrt(s);
}

/* Residuals and structure of (eval, evec) for a: max_j ||A v_j - l_j v_j||
 * and max |V^T V - I| relative to tol * ||A||_F resp. tol; descending order,
 * sign convention, trace and Frobenius identities. */
static void check_eigen(const double *a, unsigned n, const double *eval, const double *evec,
                        double tol)
{
    double an = frob(a, (size_t)n * n), scale = an > 0.0 ? an : 1.0;
    double *av = xmalloc(n * sizeof *av);
    double tr = 0.0, lsum = 0.0, l2 = 0.0;
    for (unsigned i = 0; i < n; i++) tr += a[(size_t)i * n + i];
    for (unsigned j = 0; j < n; j++) {
        TU_ASSERT(isfinite(eval[j]), "eval[%u] = %g", j, eval[j]);
        if (j) TU_ASSERT(eval[j] <= eval[j - 1], "eval %u not descending", j);
        lsum += eval[j];
        l2 += eval[j] * eval[j];
        double r = 0.0;
        for (unsigned i = 0; i < n; i++) {
            double s = 0.0;
            for (unsigned q = 0; q < n; q++) s += a[(size_t)i * n + q] * evec[(size_t)q * n + j];
            av[i] = s - eval[j] * evec[(size_t)i * n + j];
            r += av[i] * av[i];
        }
        TU_ASSERT(sqrt(r) <= tol * scale, "n=%u: |A v - l v| = %g for eigenpair %u (|A| %g)", n,
                  sqrt(r), j, an);
        /* sign: the largest-magnitude component is positive */
        unsigned big = 0;
        for (unsigned i = 1; i < n; i++)
            if (fabs(evec[(size_t)i * n + j]) > fabs(evec[(size_t)big * n + j])) big = i;
        TU_ASSERT(evec[(size_t)big * n + j] > 0.0, "n=%u: vector %u has a negative largest entry",
                  n, j);
    }
    for (unsigned j = 0; j < n; j++)
        for (unsigned q = 0; q <= j; q++) {
            double s = 0.0;
            for (unsigned i = 0; i < n; i++) s += evec[(size_t)i * n + j] * evec[(size_t)i * n + q];
            double want = j == q ? 1.0 : 0.0;
            TU_ASSERT(fabs(s - want) <= tol, "n=%u: v%u . v%u = %.17g", n, j, q, s);
        }
    TU_ASSERT(fabs(tr - lsum) <= tol * scale * n, "n=%u: trace %g vs sum %g", n, tr, lsum);
    TU_ASSERT(fabs(sqrt(l2) - an) <= tol * scale, "n=%u: |A|_F %g vs |l| %g", n, an, sqrt(l2));
    free(av);
}

START_TEST(test_eigen_diagonal)
{
    const double dg[5] = {3.0, -1.0, 5.0, 0.0, 2.0};
    const double want[5] = {5.0, 3.0, 2.0, 0.0, -1.0};
    const unsigned where[5] = {2, 0, 4, 3, 1}; /* row of the 1 in column j */
    double a[25] = {0}, ev[5], V[25];
    for (unsigned i = 0; i < 5; i++) a[i * 5 + i] = dg[i];
    TU_OK(gear_sym_eigen(a, 5, ev, V));
    for (unsigned j = 0; j < 5; j++) {
        TU_CHECK(ev[j] == want[j]);
        for (unsigned i = 0; i < 5; i++) TU_CHECK(V[i * 5 + j] == (i == where[j] ? 1.0 : 0.0));
    }
    /* a is not modified */
    for (unsigned i = 0; i < 5; i++)
        for (unsigned j = 0; j < 5; j++) TU_CHECK(a[i * 5 + j] == (i == j ? dg[i] : 0.0));
    /* identity and zero matrices: all eigenvalues equal, V orthonormal */
    for (unsigned i = 0; i < 25; i++) a[i] = 0.0;
    TU_OK(gear_sym_eigen(a, 5, ev, V));
    check_eigen(a, 5, ev, V, 1e-14);
    for (unsigned j = 0; j < 5; j++) TU_CHECK(ev[j] == 0.0);
    for (unsigned i = 0; i < 5; i++) a[i * 5 + i] = 1.0;
    TU_OK(gear_sym_eigen(a, 5, ev, V));
    check_eigen(a, 5, ev, V, 1e-14);
    for (unsigned j = 0; j < 5; j++) TU_CHECK(ev[j] == 1.0);
}
END_TEST

START_TEST(test_eigen_small_known)
{
    double ev[2], V[4];
    /* n = 1 */
    double one = -2.5;
    TU_OK(gear_sym_eigen(&one, 1, ev, V));
    TU_CHECK(ev[0] == -2.5 && V[0] == 1.0);
    /* [[2,1],[1,2]]: 3 with (1,1)/sqrt2, 1 with +-(1,-1)/sqrt2 */
    const double a2[4] = {2.0, 1.0, 1.0, 2.0};
    TU_OK(gear_sym_eigen(a2, 2, ev, V));
    TU_CHECK(fabs(ev[0] - 3.0) < 1e-15 && fabs(ev[1] - 1.0) < 1e-15);
    TU_CHECK(fabs(V[0] - SQRT1_2_D) < 1e-15 && fabs(V[2] - SQRT1_2_D) < 1e-15);
    TU_CHECK(fabs(fabs(V[1]) - SQRT1_2_D) < 1e-15 && fabs(V[1] + V[3]) < 1e-15);
    check_eigen(a2, 2, ev, V, 1e-14);
    /* the -1 2 -1 matrix: eigenvalues 2 - 2 cos(k pi / (n + 1)) */
    enum { N = 40 };
    double *a = xmalloc(N * N * sizeof *a), *e = xmalloc(N * sizeof *e), *W = xmalloc(N * N * sizeof *W);
    memset(a, 0, N * N * sizeof *a);
    for (unsigned i = 0; i < N; i++) {
        a[i * N + i] = 2.0;
        if (i + 1 < N) a[i * N + i + 1] = a[(i + 1) * N + i] = -1.0;
    }
    TU_OK(gear_sym_eigen(a, N, e, W));
    for (unsigned j = 0; j < N; j++) {
        double want = 2.0 - 2.0 * cos((double)(N - j) * PI_D / (N + 1));
        TU_ASSERT(fabs(e[j] - want) < 1e-13, "eval %u = %.17g, want %.17g", j, e[j], want);
    }
    check_eigen(a, N, e, W, 1e-12);
    free(a);
    free(e);
    free(W);
}
END_TEST

START_TEST(test_eigen_random)
{
    const unsigned ns[] = {2, 3, 4, 7, 16, 50, 101};
    for (unsigned t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        unsigned n = ns[t];
        double *a = rand_sym(1000 + n, n), *e = xmalloc(n * sizeof *e),
               *V = xmalloc((size_t)n * n * sizeof *V);
        TU_OK(gear_sym_eigen(a, n, e, V));
        check_eigen(a, n, e, V, 1e-10);
        /* deterministic */
        double *e2 = xmalloc(n * sizeof *e2), *V2 = xmalloc((size_t)n * n * sizeof *V2);
        TU_OK(gear_sym_eigen(a, n, e2, V2));
        TU_CHECK(memcmp(e, e2, n * sizeof *e) == 0);
        TU_CHECK(memcmp(V, V2, (size_t)n * n * sizeof *V) == 0);
        /* scaled by 2^+-600: same vectors, scaled eigenvalues (no overflow) */
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            for (size_t i = 0; i < (size_t)n * n; i++) a[i] = ldexp(a[i], sgn * 600);
            TU_OK(gear_sym_eigen(a, n, e2, V2));
            for (unsigned j = 0; j < n; j++) TU_CHECK(ldexp(e2[j], -sgn * 600) == e[j]);
            TU_CHECK(memcmp(V, V2, (size_t)n * n * sizeof *V) == 0);
            for (size_t i = 0; i < (size_t)n * n; i++) a[i] = ldexp(a[i], -sgn * 600);
        }
        free(a);
        free(e);
        free(V);
        free(e2);
        free(V2);
    }
    /* a PSD covariance-like matrix (the PCA use): X^T X of correlated data */
    enum { N = 64, R = 500 };
    double *X = xmalloc(R * N * sizeof *X), *C = xmalloc(N * N * sizeof *C);
    double *e = xmalloc(N * sizeof *e), *V = xmalloc(N * N * sizeof *V);
    uint64_t s = 5;
    for (unsigned r = 0; r < R; r++)
        for (unsigned j = 0; j < N; j++)
            X[r * N + j] = (tu_rand01(&s) - 0.5) * (j < 4 ? 100.0 : 1.0) + (j ? X[r * N] * 0.3 : 0.0);
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++) {
            double acc = 0.0;
            for (unsigned r = 0; r < R; r++) acc += X[r * N + i] * X[r * N + j];
            C[i * N + j] = acc / R;
        }
    TU_OK(gear_sym_eigen(C, N, e, V));
    check_eigen(C, N, e, V, 1e-10);
    TU_CHECK(e[N - 1] > 0.0);
    free(X);
    free(C);
    free(e);
    free(V);
}
END_TEST

/* A = Q diag(l) Q^T with repeated l and a random orthogonal Q. */
START_TEST(test_eigen_repeated)
{
    enum { N = 12 };
    const double l[N] = {2, 2, 2, 1, 1, -3, 0, 0, 0, 0, 5, 2};
    double Q[N * N], A[N * N], e[N], V[N * N];
    uint64_t s = 17;
    for (unsigned i = 0; i < N * N; i++) Q[i] = tu_rand01(&s) - 0.5;
    /* Gram-Schmidt (twice) on the columns */
    for (unsigned pass = 0; pass < 2; pass++)
        for (unsigned j = 0; j < N; j++) {
            for (unsigned q = 0; q < j; q++) {
                double d = 0.0;
                for (unsigned i = 0; i < N; i++) d += Q[i * N + j] * Q[i * N + q];
                for (unsigned i = 0; i < N; i++) Q[i * N + j] -= d * Q[i * N + q];
            }
            double nr = 0.0;
            for (unsigned i = 0; i < N; i++) nr += Q[i * N + j] * Q[i * N + j];
            nr = sqrt(nr);
            for (unsigned i = 0; i < N; i++) Q[i * N + j] /= nr;
        }
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++) {
            double acc = 0.0;
            for (unsigned q = 0; q < N; q++) acc += Q[i * N + q] * l[q] * Q[j * N + q];
            A[i * N + j] = acc;
        }
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < i; j++) A[i * N + j] = A[j * N + i] = 0.5 * (A[i * N + j] + A[j * N + i]);
    TU_OK(gear_sym_eigen(A, N, e, V));
    const double want[N] = {5, 2, 2, 2, 2, 1, 1, 0, 0, 0, 0, -3};
    for (unsigned j = 0; j < N; j++)
        TU_ASSERT(fabs(e[j] - want[j]) < 1e-13, "eval %u = %.17g want %g", j, e[j], want[j]);
    check_eigen(A, N, e, V, 1e-12);
    /* the eigenspace of 2 is spanned: V_2 V_2^T = Q_2 Q_2^T */
    const unsigned qi[4] = {0, 1, 2, 11};
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = 0; j < N; j++) {
            double p1 = 0.0, p2 = 0.0;
            for (unsigned t = 0; t < 4; t++) {
                p1 += V[i * N + 1 + t] * V[j * N + 1 + t];
                p2 += Q[i * N + qi[t]] * Q[j * N + qi[t]];
            }
            TU_CHECK(fabs(p1 - p2) < 1e-12);
        }
}
END_TEST

START_TEST(test_eigen_timing)
{
    const unsigned ns[] = {300, 512};
    for (unsigned t = 0; t < 2; t++) {
        unsigned n = ns[t];
        double *a = rand_sym(7 + n, n), *e = xmalloc(n * sizeof *e), *V = xmalloc((size_t)n * n * sizeof *V);
        double t0 = now_s();
        TU_OK(gear_sym_eigen(a, n, e, V));
        double dt = now_s() - t0;
        fprintf(stderr, "check_calibmath: gear_sym_eigen n=%u: %.1f ms\n", n, 1e3 * dt);
        TU_ASSERT(dt < 60.0, "n=%u took %g s", n, dt);
        if (n == 300) check_eigen(a, n, e, V, 1e-10);
        free(a);
        free(e);
        free(V);
    }
}
END_TEST

START_TEST(test_eigen_bad_args)
{
    double a[9] = {1, 0, 0, 0, 2, 0, 0, 0, 3}, e[3], V[9];
    TU_STATUS(gear_sym_eigen(a, 0, e, V), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_sym_eigen(NULL, 3, e, V), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_sym_eigen(a, 3, NULL, V), GEAR_ERR_INVALID_ARG);
    TU_STATUS(gear_sym_eigen(a, 3, e, NULL), GEAR_ERR_INVALID_ARG);
    a[5] = NAN;
    TU_STATUS(gear_sym_eigen(a, 3, e, V), GEAR_ERR_INTERNAL);
    a[5] = INFINITY;
    TU_STATUS(gear_sym_eigen(a, 3, e, V), GEAR_ERR_INTERNAL);
    a[5] = 0.0;
    a[0] = -INFINITY;
    TU_STATUS(gear_sym_eigen(a, 3, e, V), GEAR_ERR_INTERNAL);
    a[0] = 1.0;
    TU_OK(gear_sym_eigen(a, 3, e, V));
    TU_CHECK(e[0] == 3.0 && e[1] == 2.0 && e[2] == 1.0);
}
END_TEST

static Suite *calibmath_suite(void)
{
    Suite *s = suite_create("calibmath");
    TCase *tc = tu_tcase("kmeans");
    tcase_add_test(tc, test_kmeans_recovers_clusters);
    tcase_add_test(tc, test_kmeans_weights);
    tcase_add_test(tc, test_kmeans_few_distinct);
    tcase_add_test(tc, test_kmeans_no_unused_centroid);
    tcase_add_test(tc, test_kmeans_reseed_sweep);
    tcase_add_test(tc, test_kmeans_deterministic);
    tcase_add_test(tc, test_kmeans_inertia_monotone);
    tcase_add_test(tc, test_kmeans_bad_args);
    tcase_add_test(tc, test_kmeans_timing);
    suite_add_tcase(s, tc);
    tc = tu_tcase("eigen");
    tcase_add_test(tc, test_eigen_diagonal);
    tcase_add_test(tc, test_eigen_small_known);
    tcase_add_test(tc, test_eigen_random);
    tcase_add_test(tc, test_eigen_repeated);
    tcase_add_test(tc, test_eigen_timing);
    tcase_add_test(tc, test_eigen_bad_args);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return tu_run(calibmath_suite(), 0); }
