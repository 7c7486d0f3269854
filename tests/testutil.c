/*
 * testutil.c - helpers shared by the Check suites (see testutil.h).
 *
 * The "independent GEAR" below is written from the spec (DESIGN s2 and
 * docs/FORMAT.md), not from lib/: the suites compare the library with it.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "testutil.h"

/* ------------------------------------------------------------- running */

int tu_run(Suite *s, int nofork)
{
    SRunner *sr = srunner_create(s);
    if (nofork) srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_ENV);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

TCase *tu_tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, 120.0);
    return tc;
}

/* ------------------------------------------------------------- objects */

gear_context *tu_ctx(const char *backend)
{
    gear_context_params p;
    gear_context *ctx = NULL;
    gear_context_params_init(&p);
    p.backend = backend;
    TU_OK(gear_context_create(&p, &ctx));
    TU_CHECK((ctx) != NULL);
    return ctx;
}

gear_config tu_preset(const char *name, gear_kind kind)
{
    gear_config cfg;
    TU_OK(gear_config_preset(name, kind, &cfg));
    return cfg;
}

gear_config tu_cfg(gear_kind kind, unsigned bits, unsigned group, float ratio, unsigned rank,
                   unsigned iters, unsigned block)
{
    gear_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.kind = kind;
    cfg.bits = bits;
    cfg.group = group;
    cfg.outlier_ratio = ratio;
    cfg.rank = rank;
    cfg.iters = iters;
    cfg.block = block;
    cfg.seed = 0;
    return cfg;
}

/* ---------------------------------------------------------------- data */

uint64_t tu_rand_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double tu_rand01(uint64_t *s) { return (double)(tu_rand_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

void tu_fill_uniform(uint64_t seed, float *x, size_t n, float lo, float hi)
{
    uint64_t s = seed ^ 0x5eed5eedull;
    for (size_t i = 0; i < n; i++) x[i] = (float)(lo + (hi - lo) * tu_rand01(&s));
}

void tu_fill_normal(uint64_t seed, float *x, size_t n, float sigma)
{
    uint64_t s = seed ^ 0xabcdef12345ull;
    for (size_t i = 0; i < n; i++) {
        double u = tu_rand01(&s), v = tu_rand01(&s);
        if (u < 1e-300) u = 1e-300;
        x[i] = (float)(sigma * sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v));
    }
}

float *tu_alloc_f(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    TU_CHECK((p) != NULL);
    return p;
}

float *tu_synth(uint64_t seed, gear_kind kind, int H, int T, int d)
{
    float *x = tu_alloc_f((size_t)H * T * d);
    gear_synth_kv(seed, kind, H, T, d, x);
    for (size_t i = 0; i < (size_t)H * T * d; i++)
        TU_ASSERT(isfinite(x[i]) && fabsf(x[i]) <= 65504.0f, "synth value %zu = %g", i,
                      (double)x[i]);
    return x;
}

float tu_h(float x) { return gear_half_to_float(gear_float_to_half(x)); }
float tu_bf(float x) { return gear_bf16_to_float(gear_float_to_bf16(x)); }

/* --------------------------------------------------------- error measures */

double tu_rel_err(const float *a, const float *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)a[i] - (double)b[i];
        num += e * e;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

double tu_nmse(const float *a, const float *b, size_t n)
{
    double r = tu_rel_err(a, b, n);
    return r * r;
}

double tu_rel_err_d(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = a[i] - b[i];
        num += e * e;
        den += b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

double tu_max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)a[i] - (double)b[i]);
        if (!(e <= m)) m = e; /* NaN propagates */
    }
    return m;
}

size_t tu_count_diff_bits(const float *a, const float *b, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return c;
}

/* ------------------------------------------------------------ attention */

void tu_attention_dense(const float *q, int hq, int nq, const float *k, const float *v, int hkv,
                        int T, int d, float scale, double *out)
{
    int group = hq / hkv;
    double *p = malloc(sizeof *p * (size_t)T);
    TU_CHECK((p) != NULL);
    for (int h = 0; h < hq; h++) {
        int kh = h / group;
        const float *K = k + (size_t)kh * T * d, *V = v + (size_t)kh * T * d;
        for (int i = 0; i < nq; i++) {
            const float *qi = q + ((size_t)h * nq + i) * d;
            int last = T - nq + i;
            double mx = -INFINITY, sum = 0.0;
            for (int t = 0; t <= last; t++) {
                double s = 0.0;
                for (int c = 0; c < d; c++) s += (double)qi[c] * (double)K[(size_t)t * d + c];
                p[t] = s * (double)scale;
                if (p[t] > mx) mx = p[t];
            }
            for (int t = 0; t <= last; t++) {
                p[t] = exp(p[t] - mx);
                sum += p[t];
            }
            double *o = out + ((size_t)h * nq + i) * d;
            for (int c = 0; c < d; c++) o[c] = 0.0;
            for (int t = 0; t <= last; t++)
                for (int c = 0; c < d; c++) o[c] += p[t] / sum * (double)V[(size_t)t * d + c];
        }
    }
    free(p);
}

/* ------------------------------------------------------------ streams */

uint8_t *tu_compress(gear_context *ctx, const gear_config *cfg, const float *x, int H, int T,
                     int d, uint32_t layer, size_t *len)
{
    gear_tensor t;
    size_t bound = 0, written = 0;
    TU_OK(gear_tensor_init(&t, (void *)x, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_compress_bound(cfg, &t, &bound));
    uint8_t *buf = malloc(bound);
    TU_CHECK((buf) != NULL);
    gear_status st = gear_compress(ctx, cfg, &t, layer, buf, bound, &written);
    if (st) free(buf);
    TU_ASSERT(st == GEAR_OK, "gear_compress -> %s (%s)", gear_status_string(st),
                  gear_last_error_message());
    TU_EQ(written, bound);
    *len = written;
    return buf;
}

float *tu_decompress(gear_context *ctx, const uint8_t *s, size_t len, int H, int T, int d)
{
    gear_tensor t;
    float *out = tu_alloc_f((size_t)H * T * d);
    TU_OK(gear_tensor_init(&t, out, GEAR_F32, 3, H, T, d, 0));
    gear_status st = gear_decompress(ctx, s, len, &t);
    if (st) free(out);
    TU_ASSERT(st == GEAR_OK, "gear_decompress -> %s (%s)", gear_status_string(st),
                  gear_last_error_message());
    return out;
}

uint8_t *tu_cache_save(const gear_cache *c, size_t *len)
{
    size_t need = 0;
    gear_status st = gear_cache_save_mem(c, NULL, 0, &need);
    TU_ASSERT(st == GEAR_ERR_DST_TOO_SMALL, "save_mem(NULL) -> %s", gear_status_string(st));
    ck_assert_uint_gt(need, 0);
    uint8_t *buf = malloc(need);
    TU_CHECK((buf) != NULL);
    size_t got = 0;
    st = gear_cache_save_mem(c, buf, need, &got);
    if (st) free(buf);
    TU_ASSERT(st == GEAR_OK, "save_mem -> %s (%s)", gear_status_string(st),
                  gear_last_error_message());
    TU_EQ(got, need);
    *len = got;
    return buf;
}

gear_status tu_cache_append_rows(gear_cache *c, unsigned layer, const float *k, const float *v,
                                 int H, int Ttot, int d, int t0, int nt)
{
    gear_tensor tk, tv;
    gear_status st = gear_tensor_init(&tk, (void *)(k + (size_t)t0 * d), GEAR_F32, 3, H, nt, d, 0);
    if (st) return st;
    st = gear_tensor_init(&tv, (void *)(v + (size_t)t0 * d), GEAR_F32, 3, H, nt, d, 0);
    if (st) return st;
    /* heads are Ttot rows apart in the source */
    tk.strides[0] = tv.strides[0] = (int64_t)Ttot * d;
    return gear_cache_append(c, layer, &tk, &tv);
}

gear_status tu_cache_append(gear_cache *c, unsigned layer, const float *k, const float *v, int H,
                            int T, int d)
{
    return tu_cache_append_rows(c, layer, k, v, H, T, d, 0, T);
}

void tu_cache_decompress(gear_cache *c, unsigned layer, int H, int T, int d, float **k, float **v)
{
    gear_tensor tk, tv;
    *k = tu_alloc_f((size_t)H * T * d);
    *v = tu_alloc_f((size_t)H * T * d);
    TU_OK(gear_tensor_init(&tk, *k, GEAR_F32, 3, H, T, d, 0));
    TU_OK(gear_tensor_init(&tv, *v, GEAR_F32, 3, H, T, d, 0));
    gear_status st = gear_cache_decompress(c, layer, &tk, &tv);
    if (st) {
        free(*k);
        free(*v);
        *k = *v = NULL;
    }
    TU_ASSERT(st == GEAR_OK, "gear_cache_decompress -> %s (%s)", gear_status_string(st),
                  gear_last_error_message());
}

gear_status tu_cache_attention(gear_cache *c, unsigned layer, const float *q, int hq, int nq,
                               int d, float scale, float *out)
{
    gear_tensor tq, to;
    gear_status st = gear_tensor_init(&tq, (void *)q, GEAR_F32, 3, hq, nq, d, 0);
    if (!st) st = gear_tensor_init(&to, out, GEAR_F32, 3, hq, nq, d, 0);
    if (!st) st = gear_cache_attention(c, layer, &tq, scale, &to);
    return st;
}

/* ------------------------------------------- independent GEAR (the spec) */

unsigned tu_k(float ratio, unsigned m)
{
    double k = floor((double)ratio * (double)m / 2.0 + 0.5);
    unsigned half = m / 2;
    return k > (double)half ? half : (unsigned)k;
}

static size_t al16(size_t x) { return (x + 15) / 16 * 16; }

void tu_layout_make(tu_layout *L, gear_kind kind, unsigned n, unsigned d, unsigned bits,
                    unsigned group, float ratio, unsigned rank)
{
    memset(L, 0, sizeof *L);
    L->rows = kind == GEAR_KEY ? d : n;
    L->row_len = kind == GEAR_KEY ? n : d;
    L->group = group == 0 || group > L->row_len ? L->row_len : group;
    L->gpr = (L->row_len + L->group - 1) / L->group;
    L->tail = L->row_len - (L->gpr - 1) * L->group;
    L->k_full = tu_k(ratio, L->group);
    L->k_tail = tu_k(ratio, L->tail);
    L->n_out = L->rows * 2 * (L->k_full * (L->gpr - 1) + L->k_tail);
    L->row_bytes = (unsigned)((((size_t)L->row_len * bits + 7) / 8 + 3) / 4 * 4);
    size_t ng = (size_t)L->rows * L->gpr;
    L->off_codes = 32;
    L->off_scales = al16(L->off_codes + (size_t)L->rows * L->row_bytes);
    L->off_mins = al16(L->off_scales + 2 * ng);
    L->off_oidx = al16(L->off_mins + 2 * ng);
    L->off_oval = al16(L->off_oidx + 2 * (size_t)L->n_out);
    L->off_a = al16(L->off_oval + 2 * (size_t)L->n_out);
    L->off_b = al16(L->off_a + 2 * (size_t)n * rank);
    L->bytes = al16(L->off_b + 2 * (size_t)d * rank);
}

typedef struct tu_cand { float v; unsigned pos; } tu_cand;

static int cand_desc(const void *a, const void *b)
{
    const tu_cand *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int cand_asc(const void *a, const void *b)
{
    const tu_cand *x = a, *y = b;
    if (x->v < y->v) return -1;
    if (x->v > y->v) return 1;
    return (x->pos > y->pos) - (x->pos < y->pos);
}

static int uint_cmp(const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return (x > y) - (x < y);
}

void tu_quant_block(const float *x, unsigned n, unsigned d, gear_kind kind, unsigned bits,
                    unsigned group, float ratio, float *out, unsigned *codes,
                    unsigned char *is_out, uint16_t *scales, uint16_t *mins, uint16_t *oidx)
{
    tu_layout L;
    tu_layout_make(&L, kind, n, d, bits, group, ratio, 0);
    unsigned N = (1u << bits) - 1u;
    unsigned char *mask = calloc((size_t)n * d, 1);
    tu_cand *c = malloc(sizeof *c * L.row_len);
    unsigned *sel = malloc(sizeof *sel * L.row_len);
    TU_CHECK(mask && c && sel);
    size_t no = 0;
#define FLAT(r, p) (kind == GEAR_KEY ? (size_t)(p) * d + (r) : (size_t)(r) * d + (p))
    for (unsigned r = 0; r < L.rows; r++) {
        for (unsigned g = 0; g < L.gpr; g++) {
            unsigned lo = g * L.group, m = g + 1 == L.gpr ? L.tail : L.group;
            unsigned k = tu_k(ratio, m);
            /* outliers: the k largest, then the k smallest of the rest */
            for (unsigned i = 0; i < m; i++) {
                c[i].pos = lo + i;
                c[i].v = x[FLAT(r, lo + i)];
            }
            qsort(c, m, sizeof *c, cand_desc);
            qsort(c + k, m - k, sizeof *c, cand_asc);
            for (unsigned i = 0; i < 2 * k; i++) sel[i] = c[i].pos;
            qsort(sel, 2 * k, sizeof *sel, uint_cmp);
            for (unsigned i = 0; i < 2 * k; i++) {
                mask[FLAT(r, sel[i])] = 1;
                if (oidx) oidx[no] = (uint16_t)FLAT(r, sel[i]);
                no++;
            }
            /* min/max of the rest */
            float mn = 0.0f, mx = 0.0f;
            int any = 0;
            for (unsigned p = lo; p < lo + m; p++) {
                size_t f = FLAT(r, p);
                if (mask[f]) continue;
                if (!any || x[f] < mn) mn = x[f];
                if (!any || x[f] > mx) mx = x[f];
                any = 1;
            }
            float delta = (mx - mn) / (float)N;
            uint16_t mn_h = gear_float_to_half(mn), dl_h = gear_float_to_half(delta);
            if (dl_h == 0x7c00u) dl_h = 0x7bffu; /* 65504 */
            float mnf = gear_half_to_float(mn_h), dl = gear_half_to_float(dl_h);
            if (scales) scales[(size_t)r * L.gpr + g] = dl_h;
            if (mins) mins[(size_t)r * L.gpr + g] = mn_h;
            for (unsigned p = lo; p < lo + m; p++) {
                size_t f = FLAT(r, p);
                unsigned code = 0;
                if (mask[f]) {
                    out[f] = tu_h(x[f]);
                } else {
                    if (dl > 0.0f) {
                        float qv = rintf((x[f] - mnf) / dl);
                        code = qv < 0.0f ? 0u : qv > (float)N ? N : (unsigned)qv;
                    }
                    out[f] = fmaf((float)code, dl, mnf);
                }
                if (codes) codes[f] = code;
            }
        }
    }
#undef FLAT
    TU_EQ(no, L.n_out);
    if (is_out) memcpy(is_out, mask, (size_t)n * d);
    free(mask);
    free(c);
    free(sel);
}

static float half_sat(double v)
{
    if (v > 65504.0) v = 65504.0;
    if (v < -65504.0) v = -65504.0;
    return tu_h((float)v);
}

void tu_lowrank(const float *x, const float *xq, const unsigned char *is_out, unsigned n,
                unsigned d, unsigned r, unsigned iters, uint64_t key, float *A, float *B,
                float *out)
{
    size_t nd = (size_t)n * d;
    double *E = malloc(sizeof *E * nd), *Y = malloc(sizeof *Y * n * r),
           *P = malloc(sizeof *P * d * r);
    TU_CHECK(E && Y && P);
    for (size_t i = 0; i < nd; i++)
        E[i] = is_out && is_out[i] ? 0.0 : (double)((float)x[i] - (float)xq[i]);
    for (unsigned j = 0; j < d; j++)
        for (unsigned c = 0; c < r; c++) P[j * r + c] = gear_rng_uniform(key, j * r + c);
    for (unsigned it = 0; it < iters; it++) {
        for (unsigned t = 0; t < n; t++)
            for (unsigned c = 0; c < r; c++) {
                double s = 0.0;
                for (unsigned j = 0; j < d; j++) s += E[(size_t)t * d + j] * P[j * r + c];
                Y[t * r + c] = s;
            }
        /* modified Gram-Schmidt; a column that collapses becomes zero */
        for (unsigned c = 0; c < r; c++) {
            double before = 0.0;
            for (unsigned t = 0; t < n; t++) before += Y[t * r + c] * Y[t * r + c];
            for (unsigned p = 0; p < c; p++) {
                double dot = 0.0;
                for (unsigned t = 0; t < n; t++) dot += Y[t * r + p] * Y[t * r + c];
                for (unsigned t = 0; t < n; t++) Y[t * r + c] -= dot * Y[t * r + p];
            }
            double nrm = 0.0;
            for (unsigned t = 0; t < n; t++) nrm += Y[t * r + c] * Y[t * r + c];
            double inv = (nrm > 1e-24 && nrm > before * 1e-20) ? 1.0 / sqrt(nrm) : 0.0;
            for (unsigned t = 0; t < n; t++) Y[t * r + c] *= inv;
        }
        for (unsigned j = 0; j < d; j++)
            for (unsigned c = 0; c < r; c++) {
                double s = 0.0;
                for (unsigned t = 0; t < n; t++) s += E[(size_t)t * d + j] * Y[t * r + c];
                P[j * r + c] = s;
            }
    }
    float *a = A ? A : malloc(sizeof *a * n * r), *b = B ? B : malloc(sizeof *b * d * r);
    TU_CHECK(a && b);
    for (size_t i = 0; i < (size_t)n * r; i++) a[i] = half_sat(Y[i]);
    for (size_t i = 0; i < (size_t)d * r; i++) b[i] = half_sat(P[i]);
    if (out)
        for (unsigned t = 0; t < n; t++)
            for (unsigned j = 0; j < d; j++) {
                float s = 0.0f;
                for (unsigned c = 0; c < r; c++) s = fmaf(a[t * r + c], b[j * r + c], s);
                out[(size_t)t * d + j] += s;
            }
    if (!A) free(a);
    if (!B) free(b);
    free(E);
    free(Y);
    free(P);
}

void tu_gear_block(const float *x, unsigned n, unsigned d, const gear_config *cfg,
                   uint32_t layer, uint32_t head, uint32_t block, float *out)
{
    size_t nd = (size_t)n * d;
    if (cfg->bits == 0) {
        for (size_t i = 0; i < nd; i++) out[i] = tu_h(x[i]);
        return;
    }
    unsigned char *mask = malloc(nd);
    TU_CHECK((mask) != NULL);
    tu_quant_block(x, n, d, cfg->kind, cfg->bits, cfg->group, cfg->outlier_ratio, out, NULL,
                   mask, NULL, NULL, NULL);
    if (cfg->rank) {
        float *xq = tu_alloc_f(nd);
        memcpy(xq, out, nd * sizeof *xq);
        uint64_t key = gear_rng_key(cfg->seed, layer, head, block, (uint32_t)cfg->kind);
        tu_lowrank(x, xq, mask, n, d, cfg->rank, cfg->iters, key, NULL, NULL, out);
        free(xq);
    }
    free(mask);
}

void tu_gear_tensor(const float *x, int H, int T, int d, const gear_config *cfg, uint32_t layer,
                    float *out)
{
    int n = (int)cfg->block, nb = T / n;
    for (int h = 0; h < H; h++) {
        for (int b = 0; b < nb; b++) {
            size_t off = ((size_t)h * T + (size_t)b * n) * d;
            tu_gear_block(x + off, (unsigned)n, (unsigned)d, cfg, layer, (uint32_t)h,
                          (uint32_t)b, out + off);
        }
        size_t off = ((size_t)h * T + (size_t)nb * n) * d;
        memcpy(out + off, x + off, sizeof *out * (size_t)(T - nb * n) * d);
    }
}

/* ------------------------------------------------------------- files */

char *tu_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    size_t len = strlen(base) + 32;
    char *p = malloc(len);
    TU_CHECK((p) != NULL);
    snprintf(p, len, "%s/gear-test-XXXXXX", base);
    TU_ASSERT(mkdtemp(p) != NULL, "mkdtemp(%s) failed", p);
    return p;
}

void tu_rmtree(char *dir)
{
    if (!dir) return;
    DIR *dp = opendir(dir);
    if (dp) {
        struct dirent *de;
        while ((de = readdir(dp))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            size_t len = strlen(dir) + strlen(de->d_name) + 2;
            char *p = malloc(len);
            if (p) {
                snprintf(p, len, "%s/%s", dir, de->d_name);
                unlink(p);
                free(p);
            }
        }
        closedir(dp);
    }
    rmdir(dir);
    free(dir);
}

uint8_t *tu_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    TU_ASSERT(f != NULL, "cannot open %s", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    TU_CHECK((buf) != NULL);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            uint8_t *nb = realloc(buf, cap);
            TU_CHECK((nb) != NULL);
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        if (!got) break;
        n += got;
    }
    fclose(f);
    *len = n;
    return buf;
}
