/*
 * kvset.c - K/V of several layers read from a safetensors dump (tensors
 * layer.<i>.k / layer.<i>.v or k.<i> / v.<i>), for `gear eval`, `gear demo`
 * and `gear calibrate`.
 */
#include <stdlib.h>
#include "kvset.h"

long kvset_layer_id(const kvset *s, unsigned l) { return s->ids ? s->ids[l] : (long)l; }

void kvset_free(kvset *s)
{
    for (unsigned l = 0; s->k && l < s->n_layer; l++) {
        free(s->k[l]);
        free(s->v[l]);
    }
    free(s->k);
    free(s->v);
    free(s->tokens);
    free(s->ids);
    memset(s, 0, sizeof *s);
}

int kvset_alloc(kvset *s, unsigned n_layer)
{
    s->n_layer = n_layer;
    s->tokens = calloc(n_layer, sizeof *s->tokens);
    s->k = calloc(n_layer, sizeof *s->k);
    s->v = calloc(n_layer, sizeof *s->v);
    return s->tokens && s->k && s->v ? 0 : -1;
}

/* "layer.<i>.k", "layer.<i>.v", "k.<i>", "v.<i>" -> i (and *is_v), else -1. */
static long layer_of(const char *name, int *is_v)
{
    const char *p = name, *digits;
    long id = 0;
    if (!strncmp(p, "layer.", 6)) p += 6;
    else if ((p[0] == 'k' || p[0] == 'v') && p[1] == '.') {
        *is_v = p[0] == 'v';
        p += 2;
    } else return -1;
    digits = p;
    while (*p >= '0' && *p <= '9' && p - digits < 9) id = id * 10 + (*p++ - '0');
    if (p == digits) return -1;
    if (digits == name + 6) { /* layer.<i>.k|v */
        if (p[0] != '.' || (p[1] != 'k' && p[1] != 'v') || p[2]) return -1;
        *is_v = p[1] == 'v';
        return id;
    }
    return *p ? -1 : id;
}

typedef struct layer_ref {
    long id;
    const st_tensor *t[2]; /* k, v */
} layer_ref;

static int cmp_layer(const void *a, const void *b)
{
    long x = ((const layer_ref *)a)->id, y = ((const layer_ref *)b)->id;
    return (x > y) - (x < y);
}

/* Find the layers, check their shapes, read them as float32. */
int kvset_load(const char *cmd, const char *path, st_file *sf, kvset *s, char *desc, size_t desc_cap)
{
    char err[256];
    layer_ref *L = calloc(sf->n ? sf->n : 1, sizeof *L);
    size_t nl = 0;
    int rc = CLI_FAIL;
    if (!L) {
        cli_error(cmd, "out of memory");
        return CLI_FAIL;
    }
    for (size_t i = 0; i < sf->n; i++) {
        int is_v = 0;
        long id = layer_of(sf->t[i].name, &is_v);
        if (id < 0) continue;
        size_t j = 0;
        while (j < nl && L[j].id != id) j++;
        if (j == nl) L[nl++].id = id;
        if (L[j].t[is_v]) {
            cli_error(cmd, "'%s': layer %ld has two %s tensors ('%s' and '%s')", path, id,
                      is_v ? "value" : "key", L[j].t[is_v]->name, sf->t[i].name);
            goto done;
        }
        L[j].t[is_v] = &sf->t[i];
    }
    if (!nl) {
        cli_error(cmd, "'%s': no KV tensors (expected names layer.<i>.k and layer.<i>.v, or "
                  "k.<i> and v.<i>; see 'gear eval --help')", path);
        goto done;
    }
    qsort(L, nl, sizeof *L, cmp_layer);
    if (kvset_alloc(s, (unsigned)nl) || !(s->ids = malloc(nl * sizeof *s->ids))) {
        cli_error(cmd, "out of memory");
        goto done;
    }
    for (size_t l = 0; l < nl; l++) s->ids[l] = L[l].id;
    for (size_t l = 0, at = 0; l < nl && at < desc_cap; l++) /* truncates */
        at += (size_t)snprintf(desc + at, desc_cap - at, "%s%ld",
                               l ? ", " : "layers ", L[l].id);
    for (size_t l = 0; l < nl; l++) {
        const st_tensor *k = L[l].t[0], *v = L[l].t[1];
        if (!k || !v) {
            cli_error(cmd, "'%s': layer %ld has no %s tensor", path, L[l].id, k ? "value" : "key");
            goto done;
        }
        for (int kv = 0; kv < 2; kv++) {
            const st_tensor *t = L[l].t[kv];
            if (strcmp(t->dtype, "F32") && strcmp(t->dtype, "F16") && strcmp(t->dtype, "BF16")) {
                cli_error(cmd, "'%s': tensor '%s' has dtype %s; need F32, F16 or BF16", path,
                          t->name, t->dtype);
                goto done;
            }
            if (t->ndim != 2 && t->ndim != 3) {
                cli_error(cmd, "'%s': tensor '%s' has %d dimensions; need [H, T, d] or [T, d]",
                          path, t->name, t->ndim);
                goto done;
            }
        }
        if (k->ndim != v->ndim || memcmp(k->shape, v->shape, (size_t)k->ndim * sizeof k->shape[0])) {
            cli_error(cmd, "'%s': '%s' and '%s' differ in shape", path, k->name, v->name);
            goto done;
        }
        uint64_t H = k->ndim == 3 ? k->shape[0] : 1, T = k->shape[k->ndim - 2],
                 d = k->shape[k->ndim - 1];
        if (!H || !T || !d || H > 65535 || d > 65535 || T > 0x7fffffffu) {
            cli_error(cmd, "'%s': tensor '%s' shape [%llu, %llu, %llu] is empty or too large",
                      path, k->name, (unsigned long long)H, (unsigned long long)T,
                      (unsigned long long)d);
            goto done;
        }
        if (l && (H != s->heads || d != s->head_dim)) {
            cli_error(cmd, "'%s': layer %ld has %llu heads x head_dim %llu, layer %ld has %u x "
                      "%u; all layers must agree", path, L[l].id, (unsigned long long)H,
                      (unsigned long long)d, L[0].id, s->heads, s->head_dim);
            goto done;
        }
        s->heads = (unsigned)H;
        s->head_dim = (unsigned)d;
        s->tokens[l] = (unsigned)T;
        if (T > s->max_tokens) s->max_tokens = (unsigned)T;
        if (k->count > SIZE_MAX / sizeof(float) ||
            !(s->k[l] = malloc((size_t)k->count * sizeof(float))) ||
            !(s->v[l] = malloc((size_t)v->count * sizeof(float)))) {
            cli_error(cmd, "out of memory reading layer %ld", L[l].id);
            goto done;
        }
        if (st_read_f32(sf, k, s->k[l], err, sizeof err) ||
            st_read_f32(sf, v, s->v[l], err, sizeof err)) {
            cli_error(cmd, "'%s': %s", path, err);
            goto done;
        }
    }
    rc = CLI_OK;
done:
    free(L);
    return rc;
}

