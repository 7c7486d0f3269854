/*
 * kmeans.c - weighted k-means for Coupled Quantization codebooks (DESIGN s7):
 * k-means++ initialisation from a counter-based stream, then Lloyd steps.
 *
 * The hot part is the assignment (n * k * c distance terms per step).  The
 * samples are transposed once (xt[j*n + i]) and processed in tiles of
 * KM_TILE; for each centroid the loop over the tile's samples is innermost,
 * computes the direct squared distance (no ||x||^2 - 2x.c + ||c||^2
 * cancellation) and keeps the running minimum with compare + select, which
 * the compiler vectorizes.  The channel count c is a compile-time constant
 * for c in {1, 2, 4, 8} so the per-sample channel loop is unrolled, and the
 * loops are compiled per x86-64 level (GEAR_CLONES).
 * Distances are fp32 (elementwise, no reductions across lanes), so the result
 * does not depend on the vector width; sums are double.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib_math.h"

/* No a*b+c -> fma contraction in this file: the AVX2/AVX-512 clones of the
 * assignment (GEAR_CLONES) must compute the same fp32 distances, hence the
 * same assignments and centroids, as the baseline build, so a codebook does
 * not depend on the machine that computed it. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#define KM_TILE 256 /* samples per assignment tile: the tile's xt, best and idx stay in L1 */

#if defined(__GNUC__)
#  define KM_INLINE static inline __attribute__((always_inline))
#else
#  define KM_INLINE static inline
#endif

/* Element i of the stream `key' as a double uniform in [0,1) with 53 random
 * bits (same counter construction as gear_rng_uniform, more bits: the
 * k-means++ draw picks among thousands of weighted samples). */
static double km_uniform(uint64_t key, uint64_t i)
{
    uint64_t z = gear_mix64(key ^ (0xd1b54a32d192ed03ull * (i + 1)));
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

/* Squared distances of nb transposed samples (xt[j*ld + i]) to centroid cm;
 * keeps in best/idx the smaller one.  first: initialise instead (centroid 0).
 * Only a strictly smaller distance replaces the best, so ties keep the lowest
 * index.  Written as selects so the loop vectorizes. */
KM_INLINE void km_tile_one(const float *restrict xt, size_t ld, size_t nb, unsigned c,
                           const float *restrict cm, int32_t m, float *restrict best,
                           int32_t *restrict idx)
{
    for (size_t i = 0; i < nb; i++) {
        float t = xt[i] - cm[0];
        float d = t * t;
        for (unsigned j = 1; j < c; j++) {
            t = xt[j * ld + i] - cm[j];
            d += t * t;
        }
        int lt = d < best[i];
        best[i] = lt ? d : best[i];
        idx[i] = lt ? m : idx[i];
    }
}

KM_INLINE void km_tile(const float *restrict xt, size_t ld, size_t nb, unsigned c,
                       const float *restrict cent, unsigned k, float *restrict best,
                       int32_t *restrict idx)
{
    /* centroid 0 initialises, so Inf distances (huge inputs) still give index 0 */
    for (size_t i = 0; i < nb; i++) {
        float t = xt[i] - cent[0];
        float d = t * t;
        for (unsigned j = 1; j < c; j++) {
            t = xt[j * ld + i] - cent[j];
            d += t * t;
        }
        best[i] = d;
        idx[i] = 0;
    }
    for (unsigned m = 1; m < k; m++)
        km_tile_one(xt, ld, nb, c, cent + (size_t)m * c, (int32_t)m, best, idx);
}

/* Nearest centroid of every sample.  idx holds the previous assignment on
 * entry (-1: none) and the new one on return; dist the fp32 squared distance.
 * Returns the number of samples whose assignment changed. */
GEAR_CLONES
static size_t km_assign(const float *xt, size_t n, unsigned c, const float *cent, unsigned k,
                        float *dist, int32_t *idx)
{
    float tb[KM_TILE];
    int32_t ti[KM_TILE];
    size_t changed = 0;
    for (size_t i0 = 0; i0 < n; i0 += KM_TILE) {
        size_t nb = n - i0 < KM_TILE ? n - i0 : KM_TILE;
        const float *xb = xt + i0;
        switch (c) { /* constant c: the channel loop unrolls */
        case 1: km_tile(xb, n, nb, 1, cent, k, tb, ti); break;
        case 2: km_tile(xb, n, nb, 2, cent, k, tb, ti); break;
        case 4: km_tile(xb, n, nb, 4, cent, k, tb, ti); break;
        case 8: km_tile(xb, n, nb, 8, cent, k, tb, ti); break;
        default: km_tile(xb, n, nb, c, cent, k, tb, ti); break;
        }
        for (size_t i = 0; i < nb; i++) {
            changed += ti[i] != idx[i0 + i];
            idx[i0 + i] = ti[i];
            dist[i0 + i] = tb[i];
        }
    }
    return changed;
}

/* k-means++: dmin[i] = min(dmin[i], |x_i - cm|^2) for a new centroid cm. */
GEAR_CLONES
static void km_nearer(const float *xt, size_t n, unsigned c, const float *cm, float *dmin)
{
    for (size_t i = 0; i < n; i++) {
        float t = xt[i] - cm[0];
        float d = t * t;
        for (unsigned j = 1; j < c; j++) {
            t = xt[j * n + i] - cm[j];
            d += t * t;
        }
        dmin[i] = d < dmin[i] ? d : dmin[i];
    }
}

/* Draw a sample with probability wd[i] * dm[i] / total (dm NULL: wd[i] / total),
 * total > 0 being that sum taken in the same order.  The last sample with a
 * positive share takes what rounding leaves over. */
static size_t km_pick(const double *wd, const float *dm, size_t n, double total, double u)
{
    double target = u * total, cum = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        double v = dm ? wd[i] * (double)dm[i] : wd[i];
        if (v > 0.0) {
            cum += v;
            last = i;
            if (cum > target) return i;
        }
    }
    return last;
}

static double km_share_sum(const double *wd, const float *dm, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double v = dm ? wd[i] * (double)dm[i] : wd[i];
        if (v > 0.0) s += v;
    }
    return s;
}

static void km_copy_sample(const float *x, size_t i, unsigned c, float *dst)
{
    memcpy(dst, x + i * c, c * sizeof *dst);
}

/* Per-cluster weight, positive-weight member count and weighted sums. */
static void km_accumulate(const float *x, const double *wd, const int32_t *idx, size_t n,
                          unsigned c, unsigned k, double *sums, double *wsum, uint32_t *cnt)
{
    memset(sums, 0, (size_t)k * c * sizeof *sums);
    memset(wsum, 0, (size_t)k * sizeof *wsum);
    memset(cnt, 0, (size_t)k * sizeof *cnt);
    for (size_t i = 0; i < n; i++) {
        if (!(wd[i] > 0.0)) continue;
        size_t m = (size_t)idx[i];
        const float *xi = x + i * c;
        double *s = sums + m * c;
        wsum[m] += wd[i];
        cnt[m]++;
        for (unsigned j = 0; j < c; j++) s[j] += wd[i] * (double)xi[j];
    }
}

/* Lloyd update: weighted means, after re-seeding empty clusters.  A cluster
 * with zero weight takes the positive-weight sample with the largest w * dist
 * among clusters that keep a member after losing it (so re-seeding never
 * empties another cluster); with no such sample at positive distance (fewer
 * distinct samples than k) the centroid repeats a sample and stays empty. */
static void km_update(const float *x, const double *wd, int32_t *idx, float *dist, size_t n,
                      unsigned c, unsigned k, float *cent, double *sums, double *wsum,
                      uint32_t *cnt)
{
    km_accumulate(x, wd, idx, n, c, k, sums, wsum, cnt);
    int moved = 0;
    for (unsigned m = 0; m < k; m++) {
        if (cnt[m]) continue;
        size_t best = SIZE_MAX, rep = SIZE_MAX;
        double bv = 0.0, rv = -1.0;
        for (size_t i = 0; i < n; i++) {
            if (!(wd[i] > 0.0)) continue;
            double v = wd[i] * (double)dist[i];
            if (v > rv) rv = v, rep = i;
            if (v > bv && cnt[idx[i]] >= 2) bv = v, best = i;
        }
        if (best != SIZE_MAX) {
            cnt[idx[best]]--;
            cnt[m] = 1;
            idx[best] = (int32_t)m;
            dist[best] = 0.0f;
            moved = 1;
        } else {
            /* rep exists: some sample has positive weight */
            km_copy_sample(x, rep, c, cent + (size_t)m * c);
        }
    }
    /* Sums again rather than subtracting the moved samples: no cancellation. */
    if (moved) km_accumulate(x, wd, idx, n, c, k, sums, wsum, cnt);
    for (unsigned m = 0; m < k; m++) {
        if (!(wsum[m] > 0.0)) continue;
        for (unsigned j = 0; j < c; j++)
            cent[(size_t)m * c + j] = (float)(sums[(size_t)m * c + j] / wsum[m]);
    }
}

/* Scratch bump allocation: offset of an array of count elements of size
 * elem, 8-aligned; 0 on overflow. */
static int km_reserve(size_t *off, size_t count, size_t elem, size_t *at)
{
    size_t bytes, end;
    *off = gear_align_up(*off, 8);
    if (!gear_mul_ok(count, elem, &bytes) || !gear_add_ok(*off, bytes, &end)) return 0;
    *at = *off;
    *off = end;
    return 1;
}

gear_status gear_kmeans(const float *x, const float *w, size_t n, unsigned c, unsigned k,
                        unsigned iters, uint64_t seed, float *centroids, double *inertia)
{
    if (!x || !centroids) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_kmeans: NULL x or centroids");
    if (n == 0 || c == 0 || k == 0)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_kmeans: n=%zu, c=%u, k=%u (all must be > 0)",
                         n, c, k);
    if (n > (size_t)INT32_MAX || k > (unsigned)INT32_MAX)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_kmeans: n=%zu or k=%u too large", n, k);
    size_t nc, kc;
    if (!gear_mul_ok(n, c, &nc) || !gear_mul_ok(k, c, &kc))
        return gear_fail(GEAR_ERR_OVERFLOW, "gear_kmeans: size overflows");
    for (size_t i = 0; i < nc; i++)
        if (!isfinite(x[i]))
            return gear_fail(GEAR_ERR_NONFINITE, "gear_kmeans: x[%zu] is not finite", i);
    int uniform = 1;
    if (w) {
        for (size_t i = 0; i < n; i++) {
            if (!isfinite(w[i]))
                return gear_fail(GEAR_ERR_NONFINITE, "gear_kmeans: w[%zu] is not finite", i);
            if (w[i] < 0.0f)
                return gear_fail(GEAR_ERR_INVALID_ARG, "gear_kmeans: w[%zu] = %g is negative", i,
                                 (double)w[i]);
            if (w[i] > 0.0f) uniform = 0;
        }
    }

    /* one scratch block for everything */
    size_t off = 0, o_wd, o_sums, o_wsum, o_xt, o_dist, o_idx, o_cnt;
    if (!km_reserve(&off, n, sizeof(double), &o_wd) ||
        !km_reserve(&off, kc, sizeof(double), &o_sums) ||
        !km_reserve(&off, k, sizeof(double), &o_wsum) ||
        !km_reserve(&off, nc, sizeof(float), &o_xt) ||
        !km_reserve(&off, n, sizeof(float), &o_dist) ||
        !km_reserve(&off, n, sizeof(int32_t), &o_idx) ||
        !km_reserve(&off, k, sizeof(uint32_t), &o_cnt))
        return gear_fail(GEAR_ERR_OVERFLOW, "gear_kmeans: scratch size overflows");
    unsigned char *mem = malloc(off);
    if (!mem) return gear_fail(GEAR_ERR_NO_MEMORY, "gear_kmeans: %zu bytes of scratch", off);
    double *wd = (double *)(void *)(mem + o_wd);
    double *sums = (double *)(void *)(mem + o_sums);
    double *wsum = (double *)(void *)(mem + o_wsum);
    float *xt = (float *)(void *)(mem + o_xt);
    float *dist = (float *)(void *)(mem + o_dist);
    int32_t *idx = (int32_t *)(void *)(mem + o_idx);
    uint32_t *cnt = (uint32_t *)(void *)(mem + o_cnt);

    for (size_t i = 0; i < n; i++) wd[i] = uniform ? 1.0 : (double)w[i];
    for (size_t i = 0; i < n; i++)
        for (unsigned j = 0; j < c; j++) xt[(size_t)j * n + i] = x[i * c + j];

    /* k-means++: first centroid by weight, then by weight * squared distance
     * to the nearest chosen one (dist holds that distance).  When every
     * positive-weight sample coincides with a chosen centroid the draw falls
     * back to weight alone, repeating samples. */
    uint64_t key = gear_mix64(seed ^ 0x6b6d65616e732b2bull), draw = 0;
    size_t pick = km_pick(wd, NULL, n, km_share_sum(wd, NULL, n), km_uniform(key, draw++));
    km_copy_sample(x, pick, c, centroids);
    for (size_t i = 0; i < n; i++) dist[i] = INFINITY;
    km_nearer(xt, n, c, centroids, dist);
    for (unsigned m = 1; m < k; m++) {
        double u = km_uniform(key, draw++);
        double tot = km_share_sum(wd, dist, n);
        if (tot > 0.0 && isfinite(tot))
            pick = km_pick(wd, dist, n, tot, u);
        else
            pick = km_pick(wd, NULL, n, km_share_sum(wd, NULL, n), u);
        float *cm = centroids + (size_t)m * c;
        km_copy_sample(x, pick, c, cm);
        km_nearer(xt, n, c, cm, dist);
    }

    /* Lloyd */
    for (size_t i = 0; i < n; i++) idx[i] = -1;
    km_assign(xt, n, c, centroids, k, dist, idx);
    for (unsigned it = 0; it < iters; it++) {
        km_update(x, wd, idx, dist, n, c, k, centroids, sums, wsum, cnt);
        if (km_assign(xt, n, c, centroids, k, dist, idx) == 0) break;
    }

    if (inertia) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) {
            const float *xi = x + i * c, *cm = centroids + (size_t)idx[i] * c;
            double d = 0.0;
            for (unsigned j = 0; j < c; j++) {
                double t = (double)xi[j] - (double)cm[j];
                d += t * t;
            }
            s += wd[i] * d;
        }
        *inertia = s;
    }
    free(mem);
    return GEAR_OK;
}
