/*
 * calib_math.h - numerical routines used by calibration (not installed):
 * weighted k-means (Coupled Quantization codebooks, DESIGN s7) and the
 * eigen-decomposition of a symmetric matrix (PCA for KV-head compression).
 * Both are plain C99 without BLAS or OpenMP and run on one thread.
 */
#ifndef GEAR_CALIB_MATH_H
#define GEAR_CALIB_MATH_H

#include <stddef.h>
#include <stdint.h>
#include "internal.h"

/* Weighted k-means of n samples x[i*c .. i*c+c) (fp32) into k centroids
 * (out: centroids[k*c], fp32).  w: n non-negative weights or NULL (all 1).
 * Init: k-means++ (D^2 * w sampling) driven by a counter-based stream from
 * seed (gear_mix64, so results are deterministic and platform independent
 * given the same fp arithmetic).  Then up to iters Lloyd steps (assignment:
 * nearest centroid by squared distance, ties -> lowest index; update:
 * weighted mean), stopping early when no assignment changes.
 * Empty clusters (zero total weight) are re-seeded in the update step with
 * the sample that currently has the largest weighted squared distance to its
 * centroid (and that sample is then moved to it), so no centroid is left
 * unused while samples remain.  (The assignment after the last allowed update
 * is not followed by another update, so when iters runs out a cluster may
 * have lost its last member there; its centroid is still a finite mean.)
 * Fewer distinct samples than k: the extra centroids repeat existing samples
 * (no NaN, no failure).
 * n == 0 or k == 0 or c == 0, NULL x or centroids, a negative weight:
 * GEAR_ERR_INVALID_ARG.  NaN/Inf in x or w: GEAR_ERR_NONFINITE.  All-zero
 * weights: treated as uniform.  Samples of weight 0 are assigned but pull
 * no centroid.
 * inertia (may be NULL): final sum of w * squared distance to the assigned
 * centroid.  Sums are accumulated in double. */
gear_status gear_kmeans(const float *x, const float *w, size_t n, unsigned c, unsigned k,
                        unsigned iters, uint64_t seed, float *centroids, double *inertia);

/* Eigen-decomposition of a symmetric n x n matrix a (row-major, double, not
 * modified; only (a + a^T)/2 is used): eval[n] in descending order, evec[n*n]
 * row-major with column j the unit eigenvector of eval[j] (evec[i*n + j]).
 * Householder tridiagonalization + implicit QL with Wilkinson shifts, O(n^3).
 * Sign convention: the largest-magnitude component of each eigenvector
 * (lowest index on ties) is positive.
 * GEAR_ERR_INVALID_ARG for n == 0 or NULL pointers; GEAR_ERR_NO_MEMORY;
 * GEAR_ERR_INTERNAL if the QL iteration fails to converge (60 iterations per
 * eigenvalue) or the input has non-finite values. */
gear_status gear_sym_eigen(const double *a, unsigned n, double *eval, double *evec);

#endif
