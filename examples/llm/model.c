/* model.c - see model.h. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#define LLM_PRAGMA(x) _Pragma(#x)
#else
#define LLM_PRAGMA(x)
#endif

#define MAX_DIM 65536 /* sanity bound on every model dimension */

/* ------------------------------------------------------------ loading */

static int get_dim(const gguf_file *f, const char *arch, const char *key, int *out, int dflt)
{
    char full[160];
    uint32_t v;
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!gguf_find(f, full)) {
        if (dflt < 0) return llm_fail("GGUF metadata '%s' is missing", full);
        *out = dflt;
        return 0;
    }
    if (gguf_get_u32(f, full, &v)) return -1;
    if (v == 0 || v > MAX_DIM) return llm_fail("GGUF %s = %u is out of range", full, v);
    *out = (int)v;
    return 0;
}

static int get_float(const gguf_file *f, const char *arch, const char *key, float *out, float dflt)
{
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    if (!gguf_find(f, full)) {
        if (dflt < 0) return llm_fail("GGUF metadata '%s' is missing", full);
        *out = dflt;
        return 0;
    }
    if (gguf_get_f32(f, full, out)) return -1;
    if (!(*out > 0.0f) || !isfinite(*out)) return llm_fail("GGUF %s = %g is not a positive number", full, *out);
    return 0;
}

/* Dequantize tensor `name` of shape [ne1][ne0] (ne1 = 1 for vectors) into
 * a new fp32 array. */
static float *load_tensor(const gguf_file *f, llm_model *m, const char *name, int ne0, int ne1)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t) {
        llm_fail("tensor '%s' is missing", name);
        return NULL;
    }
    int want_dims = ne1 > 1 ? 2 : 1;
    if (t->ne[0] != (uint64_t)ne0 || t->ne[1] != (uint64_t)ne1 || t->ne[2] != 1 || t->ne[3] != 1 ||
        (t->n_dims != (uint32_t)want_dims && !(t->n_dims == 2 && ne1 == 1))) {
        llm_fail("tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%d, %d]", name,
                 (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                 (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], ne0, ne1);
        return NULL;
    }
    float *w = llm_alloc((size_t)t->n_elem, sizeof(float), name);
    if (!w) return NULL;
    if (gguf_dequantize(t, 0, t->n_elem, w)) {
        free(w);
        return NULL;
    }
    for (uint64_t i = 0; i < t->n_elem; i++)
        if (!isfinite(w[i])) {
            llm_fail("tensor '%s' holds a non-finite value at element %llu", name, (unsigned long long)i);
            free(w);
            return NULL;
        }
    m->n_params += (size_t)t->n_elem;
    return w;
}

static void describe_types(const gguf_file *f, llm_model *m)
{
    static const uint32_t types[] = {GGML_F32, GGML_F16, GGML_BF16, GGML_Q4_0, GGML_Q4_1, GGML_Q8_0};
    size_t w = 0;
    m->weight_types[0] = '\0';
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        unsigned long long count = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++) count += f->tensors[i].type == types[k];
        if (!count || w >= sizeof m->weight_types) continue;
        int r = snprintf(m->weight_types + w, sizeof m->weight_types - w, "%s%s x%llu", w ? ", " : "",
                         ggml_type_name(types[k]), count);
        if (r > 0) w += (size_t)r;
    }
}

int llm_model_load(const gguf_file *f, llm_model **out)
{
    *out = NULL;
    gguf_str arch;
    if (gguf_get_str(f, "general.architecture", &arch)) return -1;
    if (!gguf_str_eq(arch, "llama"))
        return llm_fail("architecture '%.*s' not supported (this runner does 'llama')", (int)arch.n, arch.s);
    const char *a = "llama";
    llm_model *m = calloc(1, sizeof *m);
    if (!m) return llm_fail("out of memory");
    llm_hparams *hp = &m->hp;
    if (get_dim(f, a, "embedding_length", &hp->n_embd, -1) || get_dim(f, a, "block_count", &hp->n_layer, -1) ||
        get_dim(f, a, "feed_forward_length", &hp->n_ff, -1) ||
        get_dim(f, a, "attention.head_count", &hp->n_head, -1) ||
        get_dim(f, a, "attention.head_count_kv", &hp->n_head_kv, hp->n_head) ||
        get_dim(f, a, "context_length", &hp->n_ctx_train, 2048) ||
        get_float(f, a, "rope.freq_base", &hp->rope_base, 10000.0f) ||
        get_float(f, a, "attention.layer_norm_rms_epsilon", &hp->norm_eps, -1))
        goto fail;
    if (hp->n_embd % hp->n_head) {
        llm_fail("embedding %d is not a multiple of %d heads", hp->n_embd, hp->n_head);
        goto fail;
    }
    if (get_dim(f, a, "attention.key_length", &hp->head_dim, hp->n_embd / hp->n_head) ||
        get_dim(f, a, "rope.dimension_count", &hp->rope_dim, hp->head_dim))
        goto fail;
    int vlen = 0;
    if (get_dim(f, a, "attention.value_length", &vlen, hp->head_dim)) goto fail;
    if (vlen != hp->head_dim) {
        llm_fail("key length %d and value length %d differ", hp->head_dim, vlen);
        goto fail;
    }
    if (hp->n_head % hp->n_head_kv || hp->head_dim % 2 || hp->rope_dim % 2 || hp->rope_dim > hp->head_dim) {
        llm_fail("unsupported head layout: %d heads, %d KV heads, head_dim %d, rope_dim %d", hp->n_head,
                 hp->n_head_kv, hp->head_dim, hp->rope_dim);
        goto fail;
    }
    /* every product of dimensions used below must fit an int (MAX_DIM bounds
     * each factor, not their products) */
    if ((int64_t)hp->n_head * hp->head_dim > MAX_DIM || (int64_t)hp->n_head_kv * hp->head_dim > MAX_DIM) {
        llm_fail("%d heads x head_dim %d: projections too large", hp->n_head, hp->head_dim);
        goto fail;
    }
    gguf_str scaling;
    if (gguf_find(f, "llama.rope.scaling.type") && !gguf_get_str(f, "llama.rope.scaling.type", &scaling) &&
        !gguf_str_eq(scaling, "none")) {
        llm_fail("RoPE scaling '%.*s' not supported", (int)scaling.n, scaling.s);
        goto fail;
    }
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->ne[1] == 0 || emb->ne[1] > (uint64_t)INT32_MAX / 4) {
        llm_fail("tensor 'token_embd.weight' is missing or malformed");
        goto fail;
    }
    hp->n_vocab = (int)emb->ne[1];
    int E = hp->n_embd, QD = hp->n_head * hp->head_dim, KVD = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    if (!(m->tok_embd = load_tensor(f, m, "token_embd.weight", E, hp->n_vocab)) ||
        !(m->output_norm = load_tensor(f, m, "output_norm.weight", E, 1)))
        goto fail;
    if (gguf_find_tensor(f, "output.weight")) {
        if (!(m->output = load_tensor(f, m, "output.weight", E, hp->n_vocab))) goto fail;
    } else {
        m->output = m->tok_embd;
        m->tied = 1;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers) {
        llm_fail("out of memory");
        goto fail;
    }
    for (int l = 0; l < hp->n_layer; l++) {
        llm_layer *L = &m->layers[l];
        char n[9][64];
        static const char *const names[9] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                             "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
        for (int i = 0; i < 9; i++) snprintf(n[i], sizeof n[i], "blk.%d.%s.weight", l, names[i]);
        if (!(L->attn_norm = load_tensor(f, m, n[0], E, 1)) || !(L->wq = load_tensor(f, m, n[1], E, QD)) ||
            !(L->wk = load_tensor(f, m, n[2], E, KVD)) || !(L->wv = load_tensor(f, m, n[3], E, KVD)) ||
            !(L->wo = load_tensor(f, m, n[4], QD, E)) || !(L->ffn_norm = load_tensor(f, m, n[5], E, 1)) ||
            !(L->w_gate = load_tensor(f, m, n[6], E, F)) || !(L->w_up = load_tensor(f, m, n[7], E, F)) ||
            !(L->w_down = load_tensor(f, m, n[8], F, E)))
            goto fail;
    }
    m->inv_freq = llm_alloc((size_t)hp->rope_dim / 2, sizeof *m->inv_freq, "rope");
    if (!m->inv_freq) goto fail;
    for (int i = 0; i < hp->rope_dim / 2; i++)
        m->inv_freq[i] = pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);
    gguf_str name;
    if (gguf_find(f, "general.name") && !gguf_get_str(f, "general.name", &name))
        snprintf(m->name, sizeof m->name, "%.*s", (int)(name.n < 90 ? name.n : 90), name.s);
    describe_types(f, m);
    *out = m;
    return 0;
fail:
    llm_model_free(m);
    return -1;
}

void llm_model_free(llm_model *m)
{
    if (!m) return;
    for (int l = 0; m->layers && l < m->hp.n_layer; l++) {
        llm_layer *L = &m->layers[l];
        float *p[9] = {L->attn_norm, L->wq, L->wk, L->wv, L->wo, L->ffn_norm, L->w_gate, L->w_up, L->w_down};
        for (int i = 0; i < 9; i++) free(p[i]);
    }
    free(m->layers);
    if (!m->tied) free(m->output);
    free(m->tok_embd);
    free(m->output_norm);
    free(m->inv_freq);
    free(m);
}

/* ------------------------------------------------------------ kernels */

/* Builds for several x86-64 levels, picked at run time (never -march=native). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define LLM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
#endif
#ifndef LLM_CLONES
#define LLM_CLONES
#endif

/* out[r][o] for weight rows o0..o1: four rows of x share each weight load. */
LLM_CLONES
static void matmul_block(float *out, const float *x, const float *w, int R, int n_in, int n_out, int o0, int o1)
{
    int r = 0;
    for (; r + 4 <= R; r += 4) {
        const float *x0 = x + (size_t)r * n_in, *x1 = x0 + n_in, *x2 = x1 + n_in, *x3 = x2 + n_in;
        for (int o = o0; o < o1; o++) {
            const float *wr = w + (size_t)o * n_in;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            LLM_PRAGMA(omp simd reduction(+ : s0, s1, s2, s3))
            for (int i = 0; i < n_in; i++) {
                s0 += wr[i] * x0[i];
                s1 += wr[i] * x1[i];
                s2 += wr[i] * x2[i];
                s3 += wr[i] * x3[i];
            }
            out[(size_t)r * n_out + o] = s0;
            out[(size_t)(r + 1) * n_out + o] = s1;
            out[(size_t)(r + 2) * n_out + o] = s2;
            out[(size_t)(r + 3) * n_out + o] = s3;
        }
    }
    for (; r < R; r++) {
        const float *x0 = x + (size_t)r * n_in;
        for (int o = o0; o < o1; o++) {
            const float *wr = w + (size_t)o * n_in;
            float s0 = 0.0f;
            LLM_PRAGMA(omp simd reduction(+ : s0))
            for (int i = 0; i < n_in; i++) s0 += wr[i] * x0[i];
            out[(size_t)r * n_out + o] = s0;
        }
    }
}

/* out[r][o] = sum_i w[o][i] x[r][i], in tiles of 16 weight rows x 64 rows of x. */
static void matmul(float *out, const float *x, const float *w, int R, int n_in, int n_out)
{
    int n_ob = (n_out + 15) / 16;
    LLM_PRAGMA(omp parallel for schedule(static))
    for (int ob = 0; ob < n_ob; ob++) {
        int o0 = ob * 16, o1 = o0 + 16 < n_out ? o0 + 16 : n_out;
        for (int r0 = 0; r0 < R; r0 += 64)
            matmul_block(out + (size_t)r0 * n_out, x + (size_t)r0 * n_in, w, R - r0 < 64 ? R - r0 : 64, n_in,
                         n_out, o0, o1);
    }
}

static void rmsnorm(float *out, const float *x, const float *w, int R, int n, float eps)
{
    LLM_PRAGMA(omp parallel for schedule(static) if (R > 8))
    for (int r = 0; r < R; r++) {
        const float *xr = x + (size_t)r * n;
        double ss = 0.0;
        for (int i = 0; i < n; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (int i = 0; i < n; i++) out[(size_t)r * n + i] = xr[i] * scale * w[i];
    }
}

/* RoPE, GGUF "llama" convention (ggml's NORM mode): the pairs (2i, 2i+1) of
 * each head rotate by pos * base^(-2i/rope_dim).  (convert_hf_to_gguf.py
 * permutes the Q/K weights so that this equals HF's rotate_half form.) */
static void rope(const llm_model *m, float *v, int n_heads, int pos)
{
    const llm_hparams *hp = &m->hp;
    for (int i = 0; i < hp->rope_dim / 2; i++) {
        double ang = (double)pos * m->inv_freq[i];
        float c = (float)cos(ang), s = (float)sin(ang);
        for (int h = 0; h < n_heads; h++) {
            float *p = v + (size_t)h * hp->head_dim + 2 * i, x0 = p[0], x1 = p[1];
            p[0] = x0 * c - x1 * s;
            p[1] = x0 * s + x1 * c;
        }
    }
}

/* A [heads, nt, head_dim] view of rows that hold `heads` heads each. */
static gear_tensor head_view(float *data, int heads, int nt, int head_dim)
{
    gear_tensor t;
    memset(&t, 0, sizeof t);
    t.data = data;
    t.dtype = GEAR_F32;
    t.ndim = 3;
    t.shape[0] = heads;
    t.shape[1] = nt;
    t.shape[2] = head_dim;
    t.strides[0] = head_dim;
    t.strides[1] = (int64_t)heads * head_dim;
    t.strides[2] = 1;
    return t;
}

/* Append one lane's new K/V rows to its cache and attend. */
static void lane_attention(const llm_model *m, llm_lane *ln, unsigned layer, float *q, float *k, float *v,
                           float *att, int nt)
{
    const llm_hparams *hp = &m->hp;
    gear_tensor kt = head_view(k, hp->n_head_kv, nt, hp->head_dim);
    gear_tensor vt = head_view(v, hp->n_head_kv, nt, hp->head_dim);
    gear_tensor qt = head_view(q, hp->n_head, nt, hp->head_dim);
    gear_tensor ot = head_view(att, hp->n_head, nt, hp->head_dim);
    double t0 = llm_now();
    gear_status st = gear_cache_append(ln->cache, layer, &kt, &vt);
    if (!st) st = gear_cache_attention(ln->cache, layer, &qt, 1.0f / sqrtf((float)hp->head_dim), &ot);
    ln->t_gear += llm_now() - t0;
    if (st) {
        ln->st = st;
        snprintf(ln->err, sizeof ln->err, "layer %u: %s: %s", layer, gear_status_string(st),
                 gear_last_error_message());
    }
}

int llm_forward(const llm_model *m, llm_lane *lanes, int n_lanes, const int32_t *tokens, int nt, int pos0,
                float *hidden)
{
    const llm_hparams *hp = &m->hp;
    int E = hp->n_embd, QD = hp->n_head * hp->head_dim, KVD = hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    if (n_lanes < 1 || nt < 1 || pos0 < 0) return llm_fail("llm_forward: bad arguments");
    if ((size_t)n_lanes * (size_t)nt > (size_t)INT32_MAX) return llm_fail("llm_forward: too many rows");
    for (int i = 0; i < nt; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab) return llm_fail("token id %d out of range", tokens[i]);
    for (int ln = 0; ln < n_lanes; ln++) {
        unsigned have;
        if (gear_cache_tokens(lanes[ln].cache, 0, &have) || have != (unsigned)pos0)
            return llm_fail("lane %d: cache holds %u tokens, expected %d", ln, have, pos0);
        lanes[ln].st = GEAR_OK;
    }
    int R = n_lanes * nt;
    float *x = hidden, *xb = llm_alloc((size_t)R, sizeof(float) * (size_t)(E > QD ? E : QD), "activations"),
          *q = llm_alloc((size_t)R, sizeof(float) * (size_t)QD, "activations"),
          *k = llm_alloc((size_t)R, sizeof(float) * (size_t)KVD, "activations"),
          *v = llm_alloc((size_t)R, sizeof(float) * (size_t)KVD, "activations"),
          *att = llm_alloc((size_t)R, sizeof(float) * (size_t)QD, "activations"),
          *h1 = llm_alloc((size_t)R, sizeof(float) * (size_t)F, "activations"),
          *h2 = llm_alloc((size_t)R, sizeof(float) * (size_t)F, "activations");
    int rc = -1;
    if (!xb || !q || !k || !v || !att || !h1 || !h2) goto done;
    for (int r = 0; r < R; r++) memcpy(x + (size_t)r * E, m->tok_embd + (size_t)tokens[r % nt] * E, sizeof(float) * E);
    for (int l = 0; l < hp->n_layer; l++) {
        const llm_layer *L = &m->layers[l];
        rmsnorm(xb, x, L->attn_norm, R, E, hp->norm_eps);
        matmul(q, xb, L->wq, R, E, QD);
        matmul(k, xb, L->wk, R, E, KVD);
        matmul(v, xb, L->wv, R, E, KVD);
        for (int r = 0; r < R; r++) {
            rope(m, q + (size_t)r * QD, hp->n_head, pos0 + r % nt);
            rope(m, k + (size_t)r * KVD, hp->n_head_kv, pos0 + r % nt);
        }
        LLM_PRAGMA(omp parallel for schedule(dynamic) if (n_lanes > 1))
        for (int ln = 0; ln < n_lanes; ln++) {
            size_t r0 = (size_t)ln * nt;
            lane_attention(m, &lanes[ln], (unsigned)l, q + r0 * QD, k + r0 * KVD, v + r0 * KVD, att + r0 * QD, nt);
        }
        for (int ln = 0; ln < n_lanes; ln++)
            if (lanes[ln].st) {
                llm_fail("libgear failed in lane %d, %s", ln, lanes[ln].err);
                goto done;
            }
        matmul(xb, att, L->wo, R, QD, E);
        for (size_t i = 0; i < (size_t)R * E; i++) x[i] += xb[i];
        rmsnorm(xb, x, L->ffn_norm, R, E, hp->norm_eps);
        matmul(h1, xb, L->w_gate, R, E, F);
        matmul(h2, xb, L->w_up, R, E, F);
        for (size_t i = 0; i < (size_t)R * F; i++) h1[i] = h1[i] / (1.0f + expf(-h1[i])) * h2[i];
        matmul(xb, h1, L->w_down, R, F, E);
        for (size_t i = 0; i < (size_t)R * E; i++) x[i] += xb[i];
    }
    memcpy(xb, x, sizeof(float) * (size_t)R * E);
    rmsnorm(x, xb, m->output_norm, R, E, hp->norm_eps);
    rc = 0;
done:
    free(xb);
    free(q);
    free(k);
    free(v);
    free(att);
    free(h1);
    free(h2);
    return rc;
}

void llm_logits(const llm_model *m, const float *hidden, int rows, float *logits)
{
    matmul(logits, hidden, m->output, rows, m->hp.n_embd, m->hp.n_vocab);
}

/* Apply one "key=value" override to a config. */
static int apply_override(gear_config *c, const char *key, const char *val)
{
    char *end;
    double v = strtod(val, &end);
    if (!*val || *end || !(v >= 0.0) || v > 4294967295.0) return llm_fail("bad value in '%s=%s'", key, val);
    if (!strcmp(key, "outliers")) {
        c->outlier_ratio = (float)v;
        return 0;
    }
    if (v != floor(v)) return llm_fail("'%s' needs an integer", key);
    if (!strcmp(key, "bits")) c->bits = (unsigned)v;
    else if (!strcmp(key, "group")) c->group = (unsigned)v;
    else if (!strcmp(key, "rank")) c->rank = (unsigned)v;
    else if (!strcmp(key, "iters")) c->iters = (unsigned)v;
    else if (!strcmp(key, "block")) c->block = (unsigned)v;
    else if (!strcmp(key, "seed")) c->seed = (uint64_t)v;
    else return llm_fail("unknown knob '%s' (bits group outliers rank iters block seed)", key);
    return 0;
}

int llm_spec_parse(const char *spec, const llm_hparams *hp, llm_spec *out)
{
    char buf[256];
    size_t n = strlen(spec);
    memset(out, 0, sizeof *out);
    if (n >= sizeof buf) return llm_fail("cache spec too long");
    memcpy(buf, spec, n + 1);
    char *colon = strchr(buf, ':');
    if (colon) *colon = '\0';
    gear_config *ck = &out->ck, *cv = &out->cv;
    gear_status st = gear_config_preset(buf, GEAR_KEY, ck);
    if (!st) st = gear_config_preset(buf, GEAR_VALUE, cv);
    if (st) return llm_fail("preset '%s': %s", buf, gear_last_error_message());
    const char *calib = NULL;
    for (char *p = colon ? colon + 1 : NULL; p && *p;) {
        char *next = strchr(p, ':'), *eq;
        if (next) *next = '\0';
        if (!(eq = strchr(p, '='))) return llm_fail("override '%s' is not key=value", p);
        *eq = '\0';
        const char *key = p;
        int which = 3; /* 1 = keys, 2 = values, 3 = both */
        if (!strcmp(key, "calib")) {
            calib = eq + 1;
            p = next ? next + 1 : NULL;
            continue;
        }
        if (!strncmp(key, "k.", 2)) which = 1, key += 2;
        else if (!strncmp(key, "v.", 2)) which = 2, key += 2;
        if ((which & 1) && apply_override(ck, key, eq + 1)) return -1;
        if ((which & 2) && apply_override(cv, key, eq + 1)) return -1;
        p = next ? next + 1 : NULL;
    }
    out->heads = (unsigned)hp->n_head_kv;
    out->dim = (unsigned)hp->head_dim;
    if (calib) { /* head compression changes what the blocks hold */
        gear_calib_info info;
        st = gear_calib_load(calib, &out->cal);
        if (st) return llm_fail("calib=%s: %s: %s", calib, gear_status_string(st), gear_last_error_message());
        gear_calib_info_get(out->cal, &info);
        out->heads = info.stored_heads;
        out->dim = info.stored_dim;
    }
    if (gear_config_validate(ck, out->dim) || gear_config_validate(cv, out->dim)) {
        llm_fail("cache spec '%s': %s", spec, gear_last_error_message());
        llm_spec_free(out);
        return -1;
    }
    return 0;
}

void llm_spec_free(llm_spec *s)
{
    gear_calib_free(s->cal);
    s->cal = NULL;
}

int llm_cache_create(const llm_model *m, gear_context *ctx, const char *spec, unsigned max_tokens,
                     gear_cache **out)
{
    llm_spec s;
    if (llm_spec_parse(spec, &m->hp, &s)) return -1;
    gear_status st = gear_cache_create_calibrated(ctx, &s.ck, &s.cv, s.cal, (unsigned)m->hp.n_layer,
                                                  (unsigned)m->hp.n_head_kv, (unsigned)m->hp.head_dim,
                                                  max_tokens, out);
    llm_spec_free(&s);
    if (st) return llm_fail("cache '%s': %s: %s", spec, gear_status_string(st), gear_last_error_message());
    return 0;
}
