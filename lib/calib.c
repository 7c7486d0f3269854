/*
 * calib.c - calibration from sample K/V: Coupled Quantization codebooks by
 * weighted k-means (arXiv 2405.03917) and KV-head compression by PCA over
 * groups of heads (arXiv 2406.07056).  Single-threaded plain C, like the
 * rest of the core; the heavy loops are in kmeans.c and eigen.c.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"
#include "calib_math.h"

void gear_calib_params_init(gear_calib_params *p)
{
    if (!p) return;
    memset(p, 0, sizeof *p);
    p->kmeans_iters = 20;
    p->max_tokens = 2048;
}

gear_status gear_calib_params_cq(gear_calib_params *p, const char *preset)
{
    gear_config c;
    if (!p || !preset) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_params_cq: NULL argument");
    gear_status st = gear_config_preset(preset, GEAR_KEY, &c);
    if (st) return st;
    if (!c.cq_dim)
        return gear_fail(GEAR_ERR_UNKNOWN_PRESET, "'%s' is not a Coupled Quantization preset "
                         "(cq-<c>c<b>b)", preset);
    for (int kv = 0; kv < 2; kv++) p->cq_dim[kv] = c.cq_dim, p->cq_bits[kv] = c.bits;
    return GEAR_OK;
}

gear_status gear_calib_check(const gear_calib_params *p, unsigned n_layer, unsigned n_head,
                             unsigned d)
{
    if (!p) return gear_fail(GEAR_ERR_INVALID_ARG, "calibration params are NULL");
    if (!n_layer || !n_head || !d || n_layer > 65536 || n_head > 65536 || d > 65535)
        return gear_fail(GEAR_ERR_INVALID_ARG, "calibration shape %u layers x %u heads x %u "
                         "channels out of range", n_layer, n_head, d);
    unsigned sd = d;
    if (p->hc_group) {
        if (n_head % p->hc_group)
            return gear_fail(GEAR_ERR_INVALID_ARG, "hc_group %u does not divide %u KV heads",
                             p->hc_group, n_head);
        if ((uint64_t)p->hc_group * d > 8192)
            return gear_fail(GEAR_ERR_INVALID_ARG, "hc_group*head_dim = %u*%u exceeds 8192 "
                             "channels", p->hc_group, d);
        if (!p->hc_dim || p->hc_dim > p->hc_group * d)
            return gear_fail(GEAR_ERR_INVALID_ARG, "hc_dim %u not in 1..%u (hc_group*head_dim)",
                             p->hc_dim, p->hc_group * d);
        sd = p->hc_dim;
    } else if (p->hc_dim) {
        return gear_fail(GEAR_ERR_INVALID_ARG, "hc_dim %u given without hc_group", p->hc_dim);
    }
    for (int kv = 0; kv < 2; kv++) {
        unsigned c = p->cq_dim[kv], b = p->cq_bits[kv];
        if (!c && !b) continue;
        if (!c || c > GEAR_CQ_MAX_DIM || sd % c || b < 1 || b > 8)
            return gear_fail(GEAR_ERR_INVALID_ARG, "%s codebook: %u channels per code must be "
                             "1..%u and divide the stored head dim %u, bits %u must be 1..8",
                             kv ? "value" : "key", c, GEAR_CQ_MAX_DIM, sd, b);
    }
    if (!p->hc_group && !p->cq_dim[0] && !p->cq_dim[1])
        return gear_fail(GEAR_ERR_INVALID_ARG, "calibration learns nothing: set cq_dim/cq_bits "
                         "(e.g. gear_calib_params_cq) and/or hc_group with hc_dim");
    if (p->kmeans_iters < 1 || p->kmeans_iters > 1000)
        return gear_fail(GEAR_ERR_INVALID_ARG, "kmeans_iters %u not in 1..1000", p->kmeans_iters);
    if (p->max_tokens < 1 || p->max_tokens > (1u << 24))
        return gear_fail(GEAR_ERR_INVALID_ARG, "max_tokens %u not in 1..2^24", p->max_tokens);
    return GEAR_OK;
}

size_t gear_calib_hc_mean_floats(const gear_calib *cal)
{
    if (!cal->p.hc_group) return 0;
    return (size_t)cal->n_layer * cal->sh * cal->p.hc_group * cal->d;
}

size_t gear_calib_hc_u_floats(const gear_calib *cal)
{
    return gear_calib_hc_mean_floats(cal) * cal->p.hc_dim;
}

size_t gear_calib_cb_floats(const gear_calib *cal, int kv)
{
    return (size_t)cal->n_layer * cal->sh * cal->cb_head[kv];
}

gear_status gear_calib_alloc(const gear_calib_params *p, unsigned n_layer, unsigned n_head,
                             unsigned d, gear_calib **out)
{
    gear_status st = gear_calib_check(p, n_layer, n_head, d);
    if (st) return st;
    gear_calib *cal = calloc(1, sizeof *cal);
    if (!cal) return gear_fail(GEAR_ERR_NO_MEMORY, "calibration");
    cal->p = *p;
    cal->n_layer = n_layer;
    cal->n_head = n_head;
    cal->d = d;
    cal->sh = p->hc_group ? n_head / p->hc_group : n_head;
    cal->sd = p->hc_group ? p->hc_dim : d;
    int ok = 1;
    for (int kv = 0; kv < 2; kv++) {
        size_t nm = gear_calib_hc_mean_floats(cal);
        if (nm) {
            cal->hc_mean[kv] = calloc(nm, sizeof(float));
            cal->hc_u[kv] = calloc(nm * p->hc_dim, sizeof(float));
            ok &= cal->hc_mean[kv] && cal->hc_u[kv];
        }
        if (p->cq_dim[kv]) {
            cal->cb_head[kv] = (size_t)cal->sd * ((size_t)1 << p->cq_bits[kv]);
            cal->cb[kv] = calloc(gear_calib_cb_floats(cal, kv), sizeof(float));
            ok &= cal->cb[kv] != NULL;
        }
    }
    if (!ok) {
        gear_calib_free(cal);
        return gear_fail(GEAR_ERR_NO_MEMORY, "calibration tables");
    }
    *out = cal;
    return GEAR_OK;
}

static void free_samples(gear_calib *cal)
{
    for (unsigned l = 0; l < cal->n_layer; l++) {
        for (int kv = 0; kv < 2; kv++) free(cal->samp[kv] ? cal->samp[kv][l] : NULL);
        free(cal->wts ? cal->wts[l] : NULL);
    }
    for (int kv = 0; kv < 2; kv++) free(cal->samp[kv]), cal->samp[kv] = NULL;
    free(cal->wts);
    free(cal->n_samp);
    free(cal->cap_samp);
    cal->wts = NULL;
    cal->n_samp = NULL;
    cal->cap_samp = NULL;
}

void gear_calib_free(gear_calib *cal)
{
    if (!cal) return;
    free_samples(cal);
    for (int kv = 0; kv < 2; kv++) {
        free(cal->hc_mean[kv]);
        free(cal->hc_u[kv]);
        free(cal->cb[kv]);
    }
    free(cal);
}

gear_status gear_calib_create(const gear_calib_params *p, unsigned n_layer, unsigned n_head_kv,
                              unsigned head_dim, gear_calib **out)
{
    if (!out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_create: out is NULL");
    *out = NULL;
    gear_calib *cal;
    gear_status st = gear_calib_alloc(p, n_layer, n_head_kv, head_dim, &cal);
    if (st) return st;
    cal->samp[0] = calloc(n_layer, sizeof(float *));
    cal->samp[1] = calloc(n_layer, sizeof(float *));
    cal->wts = calloc(n_layer, sizeof(float *));
    cal->n_samp = calloc(n_layer, sizeof(unsigned));
    cal->cap_samp = calloc(n_layer, sizeof(unsigned));
    if (!cal->samp[0] || !cal->samp[1] || !cal->wts || !cal->n_samp || !cal->cap_samp) {
        gear_calib_free(cal);
        return gear_fail(GEAR_ERR_NO_MEMORY, "calibration samples");
    }
    *out = cal;
    return GEAR_OK;
}

gear_status gear_calib_add(gear_calib *cal, unsigned layer, const gear_tensor *k,
                           const gear_tensor *v, const float *weights)
{
    if (!cal || !k || !v) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_add: NULL argument");
    if (cal->fitted || !cal->n_samp)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_add: calibration already fitted");
    if (layer >= cal->n_layer)
        return gear_fail(GEAR_ERR_INVALID_ARG, "layer %u out of range (%u layers)", layer,
                         cal->n_layer);
    int64_t H = cal->n_head, T = 0, D = cal->d;
    gear_status st = gear_view_check(k, "k", &H, &T, &D);
    if (!st) st = gear_view_check(v, "v", &H, &T, &D);
    if (st) return st;
    for (int64_t t = 0; weights && t < T; t++)
        if (!(weights[t] >= 0.0f && weights[t] <= 3.0e38f))
            return gear_fail(GEAR_ERR_INVALID_ARG, "weight %lld is %g: weights must be finite "
                             "and >= 0", (long long)t, (double)weights[t]);
    size_t have = cal->n_samp[layer], room = cal->p.max_tokens - have;
    size_t take = (size_t)T < room ? (size_t)T : room, row = (size_t)H * cal->d;
    if (!take) return GEAR_OK;
    if (have + take > cal->cap_samp[layer]) { /* grow geometrically up to max_tokens */
        size_t cap = 2 * (size_t)cal->cap_samp[layer];
        cap = cap < have + take ? have + take : cap;
        cap = cap > cal->p.max_tokens ? cal->p.max_tokens : cap;
        for (int kv = 0; kv < 2; kv++) { /* on failure the old buffers stay valid */
            float *p = realloc(cal->samp[kv][layer], cap * row * sizeof(float));
            if (!p) return gear_fail(GEAR_ERR_NO_MEMORY, "calibration samples of layer %u", layer);
            cal->samp[kv][layer] = p;
        }
        float *w = realloc(cal->wts[layer], cap * sizeof(float));
        if (!w) return gear_fail(GEAR_ERR_NO_MEMORY, "calibration weights of layer %u", layer);
        cal->wts[layer] = w;
        cal->cap_samp[layer] = (unsigned)cap;
    }
    float *tmp = malloc(take * cal->d * sizeof(float));
    if (!tmp) return gear_fail(GEAR_ERR_NO_MEMORY, "calibration staging");
    const gear_tensor *src[2] = {k, v};
    for (int kv = 0; kv < 2 && !st; kv++)
        for (unsigned h = 0; h < cal->n_head && !st; h++) {
            st = gear_view_read(src[kv], h, 0, (int64_t)take, cal->d, tmp, 1);
            for (size_t t = 0; t < take && !st; t++)
                memcpy(cal->samp[kv][layer] + (have + t) * row + (size_t)h * cal->d,
                       tmp + t * cal->d, cal->d * sizeof(float));
        }
    free(tmp);
    if (st) return st; /* the count is unchanged: partial rows are never used */
    for (size_t t = 0; t < take; t++) cal->wts[layer][have + t] = weights ? weights[t] : 1.0f;
    cal->n_samp[layer] = (unsigned)(have + take);
    return GEAR_OK;
}

/* The projections are fmaf chains (exact on every machine, so a cache's
 * bytes do not depend on the CPU), cloned so that machines with FMA run them
 * as vector instructions instead of libm calls. */
GEAR_CLONES
void gear_hc_down(const float *U, unsigned D, unsigned m, const float *x, const float *mean,
                  float *y)
{
    for (unsigned c = 0; c < m; c++) y[c] = 0.0f;
    for (unsigned i = 0; i < D; i++) {
        float e = mean ? x[i] - mean[i] : x[i];
        const float *u = U + (size_t)i * m;
        for (unsigned c = 0; c < m; c++) y[c] = fmaf(e, u[c], y[c]);
    }
}

GEAR_CLONES
void gear_hc_up(const float *Ut, size_t ld, unsigned D, unsigned m, const float *y,
                const float *mean, float *x)
{
    for (unsigned i = 0; i < D; i++) x[i] = mean[i];
    for (unsigned c = 0; c < m; c++) {
        const float *u = Ut + (size_t)c * ld;
        for (unsigned i = 0; i < D; i++) x[i] = fmaf(u[i], y[c], x[i]);
    }
}

void gear_calib_project(const gear_calib *cal, unsigned l, int kv, const float *x, size_t T,
                        float *y)
{
    unsigned gd = cal->p.hc_group * cal->d, m = cal->sd;
    for (size_t t = 0; t < T; t++)
        for (unsigned j = 0; j < cal->sh; j++) {
            size_t grp = (size_t)l * cal->sh + j;
            gear_hc_down(cal->hc_u[kv] + grp * gd * m, gd, m, x + (t * cal->sh + j) * gd,
                         cal->hc_mean[kv] + grp * gd, y + (t * cal->sh + j) * m);
        }
}

/* PCA of one group's channels: weighted mean and covariance, top hc_dim
 * eigenvectors.  x: n samples of gd channels at stride `stride` floats.
 * Returns the kept fraction of the variance in *energy. */
static gear_status fit_pca(const float *x, size_t stride, const float *w, size_t n, unsigned gd,
                           unsigned m, float *mean, float *U, double *energy)
{
    double *mu = calloc(gd, sizeof *mu), *cov = calloc((size_t)gd * gd, sizeof *cov);
    double *ev = malloc(gd * sizeof *ev), *vec = malloc((size_t)gd * gd * sizeof *vec);
    double *e = malloc(gd * sizeof *e);
    gear_status st = GEAR_OK;
    if (!mu || !cov || !ev || !vec || !e) st = gear_fail(GEAR_ERR_NO_MEMORY, "PCA scratch");
    double wsum = 0.0;
    for (size_t t = 0; t < n && !st; t++) {
        wsum += w[t];
        for (unsigned i = 0; i < gd; i++) mu[i] += (double)w[t] * x[t * stride + i];
    }
    if (!st && !(wsum > 0.0)) st = gear_fail(GEAR_ERR_INVALID_ARG, "calibration weights sum to 0");
    if (!st) {
        for (unsigned i = 0; i < gd; i++) mu[i] /= wsum;
        for (size_t t = 0; t < n; t++) { /* upper triangle, then mirrored */
            for (unsigned i = 0; i < gd; i++) e[i] = (double)x[t * stride + i] - mu[i];
            for (unsigned i = 0; i < gd; i++) {
                double wi = w[t] * e[i];
                double *ci = cov + (size_t)i * gd;
                for (unsigned j = i; j < gd; j++) ci[j] += wi * e[j];
            }
        }
        for (unsigned i = 0; i < gd; i++)
            for (unsigned j = i; j < gd; j++)
                cov[(size_t)j * gd + i] = cov[(size_t)i * gd + j] /= wsum;
        st = gear_sym_eigen(cov, gd, ev, vec);
    }
    if (!st) {
        double kept = 0.0, total = 0.0;
        for (unsigned i = 0; i < gd; i++) {
            double lam = ev[i] > 0.0 ? ev[i] : 0.0;
            total += lam;
            if (i < m) kept += lam;
        }
        *energy = total > 0.0 ? kept / total : 1.0;
        for (unsigned i = 0; i < gd; i++) {
            mean[i] = (float)mu[i];
            for (unsigned c = 0; c < m; c++) U[(size_t)i * m + c] = (float)vec[(size_t)i * gd + c];
        }
    }
    free(mu); free(cov); free(ev); free(vec); free(e);
    return st;
}

/* k-means for every (stored head, channel group) of one layer and kind;
 * y: n samples [t][sh][sd].  Adds squared errors and norms to err/norm. */
static gear_status fit_codebooks(gear_calib *cal, unsigned l, int kv, const float *y,
                                 const float *w, size_t n, double *err, double *norm)
{
    unsigned c = cal->p.cq_dim[kv], K = 1u << cal->p.cq_bits[kv], sd = cal->sd;
    float *xs = malloc(n * c * sizeof(float));
    if (!xs) return gear_fail(GEAR_ERR_NO_MEMORY, "k-means samples");
    gear_status st = GEAR_OK;
    for (unsigned h = 0; h < cal->sh && !st; h++)
        for (unsigned j = 0; j < sd / c && !st; j++) {
            for (size_t t = 0; t < n; t++)
                memcpy(xs + t * c, y + (t * cal->sh + h) * sd + (size_t)j * c, c * sizeof(float));
            float *cb = cal->cb[kv] + ((size_t)l * cal->sh + h) * cal->cb_head[kv] +
                        (size_t)j * K * c;
            uint64_t seed = gear_rng_key(cal->p.seed, l, h, j, (uint32_t)kv);
            st = gear_kmeans(xs, w, n, c, K, cal->p.kmeans_iters, seed, cb, NULL);
            /* centroids are stored in fp16: learn, then round, then measure */
            for (size_t i = 0; i < (size_t)K * c && !st; i++) {
                cb[i] = gear_half_to_float(gear_float_to_half(cb[i]));
                if (!isfinite(cb[i])) /* possible on projected K/V: they are not fp16-bounded */
                    st = gear_fail(GEAR_ERR_RANGE, "layer %u %s head %u: a centroid leaves the fp16 "
                                   "range", l, kv ? "V" : "K", h);
            }
            for (size_t t = 0; t < n && !st; t++) {
                const float *xt = xs + t * c, *ct = cb + (size_t)gear_cq_nearest(xt, 0, cb, K, c) * c;
                for (unsigned i = 0; i < c; i++) {
                    double e = (double)xt[i] - ct[i];
                    err[0] += w[t] * e * e;
                    norm[0] += w[t] * (double)xt[i] * xt[i];
                }
            }
        }
    free(xs);
    return st;
}

gear_status gear_calib_fit(gear_calib *cal)
{
    if (!cal) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_fit: cal is NULL");
    if (cal->fitted || !cal->n_samp)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_fit: already fitted");
    unsigned need = 1;
    for (int kv = 0; kv < 2; kv++)
        if (cal->p.cq_dim[kv] && (1u << cal->p.cq_bits[kv]) > need) need = 1u << cal->p.cq_bits[kv];
    unsigned fewest = UINT32_MAX;
    for (unsigned l = 0; l < cal->n_layer; l++) {
        if (cal->n_samp[l] < need)
            return gear_fail(GEAR_ERR_INVALID_ARG, "layer %u has %u calibration tokens; at least "
                             "%u are needed", l, cal->n_samp[l], need);
        fewest = cal->n_samp[l] < fewest ? cal->n_samp[l] : fewest;
    }
    unsigned gd = cal->p.hc_group * cal->d;
    double energy[2] = {0, 0}, err[2] = {0, 0}, norm[2] = {0, 0};
    gear_status st = GEAR_OK;
    for (unsigned l = 0; l < cal->n_layer && !st; l++) {
        size_t n = cal->n_samp[l];
        const float *w = cal->wts[l];
        for (int kv = 0; kv < 2 && !st; kv++) {
            const float *x = cal->samp[kv][l];
            float *y = NULL;
            if (cal->p.hc_group) {
                for (unsigned j = 0; j < cal->sh && !st; j++) {
                    double e = 0.0;
                    size_t o = ((size_t)l * cal->sh + j) * gd;
                    st = fit_pca(x + (size_t)j * gd, (size_t)cal->n_head * cal->d, w, n, gd,
                                 cal->sd, cal->hc_mean[kv] + o, cal->hc_u[kv] + o * cal->sd, &e);
                    energy[kv] += e / ((double)cal->sh * cal->n_layer);
                }
                if (!st && cal->p.cq_dim[kv]) {
                    y = malloc(n * cal->sh * cal->sd * sizeof(float));
                    if (!y) st = gear_fail(GEAR_ERR_NO_MEMORY, "projected samples");
                    else gear_calib_project(cal, l, kv, x, n, y);
                }
            }
            if (!st && cal->p.cq_dim[kv])
                st = fit_codebooks(cal, l, kv, y ? y : x, w, n, &err[kv], &norm[kv]);
            free(y);
        }
    }
    if (st) return st;
    for (int kv = 0; kv < 2; kv++) {
        cal->hc_energy[kv] = cal->p.hc_group ? energy[kv] : 1.0;
        cal->cq_rel_err[kv] = cal->p.cq_dim[kv] && norm[kv] > 0 ? err[kv] / norm[kv] : 0.0;
    }
    cal->tokens = fewest;
    cal->fitted = 1;
    free_samples(cal);
    return GEAR_OK;
}

gear_status gear_calib_info_get(const gear_calib *cal, gear_calib_info *info)
{
    if (!cal || !info) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_info_get: NULL argument");
    memset(info, 0, sizeof *info);
    info->params = cal->p;
    info->n_layer = cal->n_layer;
    info->n_head_kv = cal->n_head;
    info->head_dim = cal->d;
    info->stored_heads = cal->sh;
    info->stored_dim = cal->sd;
    info->fitted = cal->fitted;
    info->tokens = cal->tokens;
    for (int kv = 0; kv < 2; kv++) {
        info->hc_energy[kv] = cal->hc_energy[kv];
        info->cq_rel_err[kv] = cal->cq_rel_err[kv];
    }
    if (cal->fitted) gear_calib_save_mem(cal, NULL, 0, &info->bytes);
    gear_clear_error();
    return GEAR_OK;
}
