/* lowrank_blas.c - GEAR's per-block power iteration with OpenBLAS sgemm
 * (see lowrank_blas.h).  The Gram-Schmidt step is the cpu module's (modified
 * Gram-Schmidt on the r columns, dots summed in double), written out here
 * column-major so that BLAS only replaces the two products. */
#include "lowrank_blas.h"

#ifdef GEAR_BENCH_OPENBLAS
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include "bench_util.h"

/* Columns of yt (r columns of n, contiguous) made orthonormal in turn. */
static void gram_schmidt(float *yt, unsigned n, unsigned r)
{
    for (unsigned c = 0; c < r; c++) {
        float *col = yt + (size_t)c * n;
        for (unsigned p = 0; p < c; p++) {
            const float *prev = yt + (size_t)p * n;
            double s = 0.0;
            for (unsigned i = 0; i < n; i++) s += (double)prev[i] * col[i];
            cblas_saxpy((int)n, (float)-s, prev, 1, col, 1);
        }
        double nn = 0.0;
        for (unsigned i = 0; i < n; i++) nn += (double)col[i] * col[i];
        cblas_sscal((int)n, nn > 1e-24 ? (float)(1.0 / sqrt(nn)) : 0.0f, col, 1);
    }
}

int lowrank_blas_available(void) { return 1; }

double lowrank_blas_seconds(unsigned n, unsigned d, unsigned r, unsigned iters, unsigned blocks, int reps)
{
    openblas_set_num_threads(1);
    size_t nd = (size_t)n * d;
    float *e = malloc(sizeof(float) * nd * blocks), *yt = malloc(sizeof(float) * (size_t)n * r);
    float *p = malloc(sizeof(float) * (size_t)r * d);
    double *t = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
    if (!e || !yt || !p || !t || reps < 1) {
        free(e), free(yt), free(p), free(t);
        return -1.0;
    }
    uint32_t s = 12345u;
    for (size_t i = 0; i < nd * blocks; i++) {
        s = s * 1664525u + 1013904223u;
        e[i] = (float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    for (int k = 0; k < reps; k++) {
        double t0 = bench_seconds();
        for (unsigned b = 0; b < blocks; b++) {
            const float *eb = e + nd * b;
            for (size_t i = 0; i < (size_t)r * d; i++) p[i] = (float)((i * 2654435761u) >> 8 & 0xffff) / 65536.0f;
            for (unsigned it = 0; it < iters; it++) {
                /* Y^T (r x n) = P (r x d) E^T, then P = Y^T E (r x d) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)r, (int)n, (int)d, 1.0f, p, (int)d, eb,
                            (int)d, 0.0f, yt, (int)n);
                gram_schmidt(yt, n, r);
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)r, (int)d, (int)n, 1.0f, yt, (int)n, eb,
                            (int)d, 0.0f, p, (int)d);
            }
        }
        t[k] = (bench_seconds() - t0) / blocks;
    }
    double med = bench_median(t, reps);
    free(e), free(yt), free(p), free(t);
    return med;
}

#else

int lowrank_blas_available(void) { return 0; }

double lowrank_blas_seconds(unsigned n, unsigned d, unsigned r, unsigned iters, unsigned blocks, int reps)
{
    (void)n, (void)d, (void)r, (void)iters, (void)blocks, (void)reps;
    return -1.0;
}

#endif
