/*
 * eigen.c - eigen-decomposition of a symmetric matrix (PCA bases for KV-head
 * compression, DESIGN s7).
 *
 * 1. Householder reduction to tridiagonal form T = Q^T A Q, working on the
 *    full (symmetric) trailing block so every loop runs along a row.
 * 2. Q^T formed explicitly by multiplying the reflectors together.
 * 3. Implicit QL with Wilkinson shifts on T (the classic EISPACK tql2 scheme),
 *    the plane rotations applied to Q^T from the left: each rotation mixes
 *    two contiguous rows, so the O(n^3) part streams through memory and
 *    vectorizes.  The rows of the result are the eigenvectors.
 * The matrix is scaled by a power of two first (exact) so that the norms in
 * step 1 neither overflow nor underflow.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib_math.h"

#define EIG_MAX_ITER 60 /* QL iterations allowed per eigenvalue */

/* Step 1.  a: n x n symmetric, overwritten: row k (k < n-2) keeps the
 * reflector vector v_k in a[k][k+1..n-1] with tau[k] (H_k = I - tau v v^T on
 * indices k+1..n-1; tau 0 = identity).  d: diagonal, e[k]: T[k][k+1]. */
static void eig_tridiag(double *a, unsigned n, double *d, double *e, double *tau, double *p)
{
    for (unsigned k = 0; k + 2 < n; k++) {
        size_t m = n - k - 1; /* length of the column below the diagonal */
        double *v = a + (size_t)k * n + k + 1;
        double sigma = 0.0;
        for (size_t j = 1; j < m; j++) sigma += v[j] * v[j];
        d[k] = a[(size_t)k * n + k];
        if (sigma == 0.0) { /* column already reduced */
            e[k] = v[0];
            tau[k] = 0.0;
            continue;
        }
        double norm = sqrt(v[0] * v[0] + sigma);
        /* alpha of the opposite sign of v[0]: v[0] - alpha adds magnitudes */
        double alpha = v[0] >= 0.0 ? -norm : norm;
        v[0] -= alpha;
        double t = 2.0 / (v[0] * v[0] + sigma);
        e[k] = alpha;
        tau[k] = t;
        /* S <- H S H for the trailing block S = a[k+1.., k+1..]:
         * p = t S v, q = p - (t/2)(v.p) v, S -= v q^T + q v^T. */
        double *S = a + (size_t)(k + 1) * n + k + 1;
        double vp = 0.0;
        for (size_t i = 0; i < m; i++) {
            const double *Si = S + i * n;
            double s = 0.0;
            for (size_t j = 0; j < m; j++) s += Si[j] * v[j];
            p[i] = t * s;
            vp += v[i] * p[i];
        }
        double K = 0.5 * t * vp;
        for (size_t i = 0; i < m; i++) p[i] -= K * v[i];
        for (size_t i = 0; i < m; i++) {
            double *Si = S + i * n;
            double vi = v[i], qi = p[i];
            for (size_t j = 0; j < m; j++) Si[j] -= vi * p[j] + qi * v[j];
        }
    }
    if (n >= 2) {
        d[n - 2] = a[(size_t)(n - 2) * n + n - 2];
        e[n - 2] = a[(size_t)(n - 2) * n + n - 1];
    }
    d[n - 1] = a[(size_t)(n - 1) * n + n - 1];
    e[n - 1] = 0.0;
}

/* Step 2.  z = Q^T = H_{n-3} ... H_0, built as I H_{n-3} ... H_0: when H_k
 * is applied the product so far is the identity outside rows/columns >= k+2,
 * so only rows k+1.. and columns k+1.. change (z <- z - t (z v) v^T). */
static void eig_form_qt(const double *a, unsigned n, const double *tau, double *z)
{
    memset(z, 0, (size_t)n * n * sizeof *z);
    for (unsigned i = 0; i < n; i++) z[(size_t)i * n + i] = 1.0;
    for (unsigned k = n >= 2 ? n - 2 : 0; k-- > 0;) { /* k = n-3 .. 0 */
        if (tau[k] != 0.0) {
            size_t m = n - k - 1;
            const double *v = a + (size_t)k * n + k + 1;
            for (size_t i = k + 1; i < n; i++) {
                double *zi = z + i * n + k + 1;
                double s = 0.0;
                for (size_t j = 0; j < m; j++) s += zi[j] * v[j];
                s *= tau[k];
                for (size_t j = 0; j < m; j++) zi[j] -= s * v[j];
            }
        }
    }
}

/* Step 3.  Implicit QL on (d, e); z rows rotated along.  Returns 0 when an
 * eigenvalue needs more than EIG_MAX_ITER iterations. */
static int eig_ql(double *d, double *e, unsigned n, double *z)
{
    for (unsigned l = 0; l < n; l++) {
        unsigned iter = 0;
        for (;;) {
            /* first negligible off-diagonal at or below l splits the problem */
            unsigned m = l;
            while (m + 1 < n && !(fabs(e[m]) <= DBL_EPSILON * (fabs(d[m]) + fabs(d[m + 1]))))
                m++;
            if (m == l) break; /* d[l] has converged */
            if (++iter > EIG_MAX_ITER) return 0;
            /* Wilkinson shift: the eigenvalue of the leading 2x2 block
             * nearer d[l], folded into the first rotation's g. */
            double g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            double r = hypot(g, 1.0);
            g = d[m] - d[l] + e[l] / (g + (g >= 0.0 ? r : -r));
            double s = 1.0, c = 1.0, p = 0.0;
            int underflow = 0;
            /* chase the bulge from the bottom of the block up to l */
            for (unsigned i = m; i-- > l;) {
                double f = s * e[i], b = c * e[i];
                r = hypot(f, g);
                e[i + 1] = r;
                if (r == 0.0) { /* exact split: undo the shift and restart */
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    underflow = 1;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
                /* rows i and i+1 of z (eigenvector rows) */
                double *zi = z + (size_t)i * n, *zj = zi + n;
                for (size_t q = 0; q < n; q++) {
                    double h = zj[q];
                    zj[q] = s * zi[q] + c * h;
                    zi[q] = c * zi[q] - s * h;
                }
            }
            if (underflow) continue;
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    return 1;
}

gear_status gear_sym_eigen(const double *a, unsigned n, double *eval, double *evec)
{
    if (!a || !eval || !evec) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_sym_eigen: NULL pointer");
    if (n == 0) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_sym_eigen: n is 0");
    size_t nn, bytes;
    if (!gear_mul_ok(n, n, &nn) || !gear_add_ok(nn, 3 * (size_t)n, &bytes) ||
        !gear_mul_ok(bytes, sizeof(double), &bytes))
        return gear_fail(GEAR_ERR_NO_MEMORY, "gear_sym_eigen: n=%u too large", n);

    double amax = 0.0;
    for (size_t i = 0; i < nn; i++) {
        if (!isfinite(a[i]))
            return gear_fail(GEAR_ERR_INTERNAL, "gear_sym_eigen: a[%zu] is not finite", i);
        if (fabs(a[i]) > amax) amax = fabs(a[i]);
    }
    double *w = malloc(bytes);
    unsigned *perm = malloc((size_t)n * sizeof *perm);
    if (!w || !perm) {
        free(w);
        free(perm);
        return gear_fail(GEAR_ERR_NO_MEMORY, "gear_sym_eigen: n=%u", n);
    }
    double *d = w + nn, *e = d + n, *tau = e + n;

    /* power-of-two scale to max |a| in [0.5, 1): exact, undone on eval */
    int ex = 0;
    if (amax > 0.0) frexp(amax, &ex);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            w[i * n + j] = ldexp(0.5 * (a[i * n + j] + a[j * n + i]), -ex);

    /* evec holds Q^T, then the eigenvectors as rows; eval the scratch p */
    eig_tridiag(w, n, d, e, tau, eval);
    eig_form_qt(w, n, tau, evec);
    if (!eig_ql(d, e, n, evec)) {
        free(w);
        free(perm);
        return gear_fail(GEAR_ERR_INTERNAL,
                         "gear_sym_eigen: QL iteration did not converge (n=%u)", n);
    }

    /* descending order (stable selection on indices: deterministic) */
    for (unsigned i = 0; i < n; i++) perm[i] = i;
    for (unsigned i = 0; i < n; i++) {
        unsigned b = i;
        for (unsigned j = i + 1; j < n; j++)
            if (d[perm[j]] > d[perm[b]]) b = j;
        if (b != i) {
            unsigned t = perm[b];
            memmove(perm + i + 1, perm + i, (b - i) * sizeof *perm);
            perm[i] = t;
        }
    }
    /* rows of evec -> columns, sign: largest-magnitude component positive */
    memcpy(w, evec, nn * sizeof *w);
    for (unsigned j = 0; j < n; j++) {
        const double *v = w + (size_t)perm[j] * n;
        size_t big = 0;
        for (size_t i = 1; i < n; i++)
            if (fabs(v[i]) > fabs(v[big])) big = i;
        double sg = v[big] < 0.0 ? -1.0 : 1.0;
        for (size_t i = 0; i < n; i++) evec[i * n + j] = sg * v[i];
        eval[j] = ldexp(d[perm[j]], ex);
    }
    free(w);
    free(perm);
    return GEAR_OK;
}
