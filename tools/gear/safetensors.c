/* safetensors.c - strict safetensors reader (see safetensors.h). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _FILE_OFFSET_BITS
#define _FILE_OFFSET_BITS 64
#endif
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include "cli.h"
#include "json.h"
#include "safetensors.h"

static const struct { const char *name; size_t size; } dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
    {"I8", 1},  {"U64", 8}, {"U32", 4}, {"U16", 2},  {"U8", 1},  {"BOOL", 1},
    {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

static void free_tensors(st_file *sf)
{
    for (size_t i = 0; i < sf->n; i++) free(sf->t[i].name);
    free(sf->t);
    sf->t = NULL;
    sf->n = 0;
}

/* One entry {"dtype": "...", "shape": [...], "data_offsets": [b, e]}. */
static int parse_entry(const char *name, const json_value *v, uint64_t data_size, st_tensor *t,
                       char *err, size_t errlen)
{
    if (v->type != JSON_OBJECT) return cli_set_err(err, errlen, "tensor '%.80s': entry is not an object", name);
    for (size_t i = 0; i < v->n; i++)
        if (strcmp(v->keys[i], "dtype") && strcmp(v->keys[i], "shape") &&
            strcmp(v->keys[i], "data_offsets"))
            return cli_set_err(err, errlen, "tensor '%.80s': unexpected field '%.40s'", name, v->keys[i]);
    const json_value *dt = json_get(v, "dtype"), *sh = json_get(v, "shape"),
                     *off = json_get(v, "data_offsets");
    if (!dt || dt->type != JSON_STRING)
        return cli_set_err(err, errlen, "tensor '%.80s': missing or non-string 'dtype'", name);
    t->elem = 0;
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (!strcmp(dt->str, dtypes[i].name)) {
            strcpy(t->dtype, dtypes[i].name);
            t->elem = dtypes[i].size;
        }
    if (!t->elem) return cli_set_err(err, errlen, "tensor '%.80s': unknown dtype '%.16s'", name, dt->str);
    if (!sh || sh->type != JSON_ARRAY)
        return cli_set_err(err, errlen, "tensor '%.80s': missing or non-array 'shape'", name);
    if (sh->n > ST_MAX_DIM)
        return cli_set_err(err, errlen, "tensor '%.80s': %zu dimensions (max %d)", name, sh->n, ST_MAX_DIM);
    t->ndim = (int)sh->n;
    t->count = 1;
    for (size_t i = 0; i < sh->n; i++) {
        const json_value *d = &sh->items[i];
        if (d->type != JSON_NUMBER || !d->is_uint)
            return cli_set_err(err, errlen, "tensor '%.80s': shape[%zu] is not a non-negative integer",
                           name, i);
        t->shape[i] = d->uint;
        if (d->uint && t->count > UINT64_MAX / d->uint)
            return cli_set_err(err, errlen, "tensor '%.80s': shape overflows", name);
        t->count *= d->uint;
    }
    if (t->count > UINT64_MAX / t->elem)
        return cli_set_err(err, errlen, "tensor '%.80s': byte size overflows", name);
    if (!off || off->type != JSON_ARRAY || off->n != 2 || off->items[0].type != JSON_NUMBER ||
        !off->items[0].is_uint || off->items[1].type != JSON_NUMBER || !off->items[1].is_uint)
        return cli_set_err(err, errlen, "tensor '%.80s': 'data_offsets' is not [begin, end]", name);
    t->begin = off->items[0].uint;
    t->end = off->items[1].uint;
    if (t->begin > t->end || t->end > data_size)
        return cli_set_err(err, errlen, "tensor '%.80s': data_offsets [%llu, %llu] outside the %llu "
                       "bytes of data", name, (unsigned long long)t->begin,
                       (unsigned long long)t->end, (unsigned long long)data_size);
    if (t->end - t->begin != t->count * t->elem)
        return cli_set_err(err, errlen, "tensor '%.80s': data_offsets span %llu bytes but %s x shape "
                       "needs %llu", name, (unsigned long long)(t->end - t->begin), t->dtype,
                       (unsigned long long)(t->count * t->elem));
    return 0;
}

static int cmp_begin(const void *a, const void *b)
{
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* The tensors must tile [0, data_size) without gaps or overlap. */
static int check_tiling(const st_file *sf, uint64_t data_size, char *err, size_t errlen)
{
    if (!sf->n) {
        if (data_size) return cli_set_err(err, errlen, "%llu data bytes but no tensors",
                                      (unsigned long long)data_size);
        return 0;
    }
    const st_tensor **order = malloc(sf->n * sizeof *order);
    if (!order) return cli_set_err(err, errlen, "out of memory");
    for (size_t i = 0; i < sf->n; i++) order[i] = &sf->t[i];
    qsort(order, sf->n, sizeof *order, cmp_begin);
    uint64_t at = 0;
    int rc = 0;
    for (size_t i = 0; i < sf->n && !rc; i++) {
        if (order[i]->begin != at)
            rc = cli_set_err(err, errlen, "tensor '%.80s': data starts at %llu, expected %llu (tensors "
                         "%s)", order[i]->name, (unsigned long long)order[i]->begin,
                         (unsigned long long)at, order[i]->begin < at ? "overlap" : "leave a gap");
        at = order[i]->end;
    }
    if (!rc && at != data_size)
        rc = cli_set_err(err, errlen, "tensors end at byte %llu of a %llu-byte data section",
                     (unsigned long long)at, (unsigned long long)data_size);
    free(order);
    return rc;
}

int st_parse_header(const char *text, size_t len, uint64_t data_size, st_file *sf, char *err,
                    size_t errlen)
{
    json_value *root;
    sf->n = 0;
    sf->t = NULL;
    if (json_parse(text, len, &root, err, errlen)) return -1;
    int rc = 0;
    if (root->type != JSON_OBJECT) {
        rc = cli_set_err(err, errlen, "header is not a JSON object");
        goto done;
    }
    sf->t = calloc(root->n ? root->n : 1, sizeof *sf->t);
    if (!sf->t) {
        rc = cli_set_err(err, errlen, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < root->n && !rc; i++) {
        const char *name = root->keys[i];
        if (!strcmp(name, "__metadata__")) { /* free-form strings; not used */
            if (root->items[i].type != JSON_OBJECT)
                rc = cli_set_err(err, errlen, "'__metadata__' is not an object");
            continue;
        }
        for (size_t j = 0; j < sf->n && !rc; j++)
            if (!strcmp(sf->t[j].name, name))
                rc = cli_set_err(err, errlen, "tensor '%.80s' appears twice", name);
        if (rc) break;
        st_tensor *t = &sf->t[sf->n];
        rc = parse_entry(name, &root->items[i], data_size, t, err, errlen);
        if (rc) break;
        t->name = malloc(strlen(name) + 1);
        if (!t->name) {
            rc = cli_set_err(err, errlen, "out of memory");
            break;
        }
        strcpy(t->name, name);
        sf->n++;
    }
    if (!rc) rc = check_tiling(sf, data_size, err, errlen);
done:
    json_free(root);
    if (rc) free_tensors(sf);
    return rc;
}

int st_open(const char *path, st_file **out, char *err, size_t errlen)
{
    struct stat sb;
    unsigned char len8[8];
    *out = NULL;
    st_file *sf = calloc(1, sizeof *sf);
    if (!sf) return cli_set_err(err, errlen, "out of memory");
    sf->f = fopen(path, "rb");
    if (!sf->f) {
        cli_set_err(err, errlen, "cannot open: %s", strerror(errno));
        free(sf);
        return -1;
    }
    if (fstat(fileno(sf->f), &sb) || !S_ISREG(sb.st_mode)) {
        st_close(sf);
        return cli_set_err(err, errlen, "not a regular file");
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fread(len8, 1, 8, sf->f) != 8) {
        st_close(sf);
        return cli_set_err(err, errlen, "not a safetensors file (shorter than 8 bytes)");
    }
    uint64_t hlen = cli_le64(len8);
    if (hlen > ST_MAX_HEADER || hlen > fsize - 8) {
        st_close(sf);
        return cli_set_err(err, errlen, "not a safetensors file or truncated: header length %llu, "
                       "file %llu bytes", (unsigned long long)hlen, (unsigned long long)fsize);
    }
    char *h = malloc(hlen + 1);
    if (!h) {
        st_close(sf);
        return cli_set_err(err, errlen, "out of memory");
    }
    if (fread(h, 1, hlen, sf->f) != hlen) {
        free(h);
        st_close(sf);
        return cli_set_err(err, errlen, "truncated header");
    }
    sf->data_start = 8 + hlen;
    sf->data_size = fsize - sf->data_start;
    int rc = st_parse_header(h, hlen, sf->data_size, sf, err, errlen);
    free(h);
    if (rc) {
        st_close(sf);
        return -1;
    }
    *out = sf;
    return 0;
}

void st_close(st_file *sf)
{
    if (!sf) return;
    free_tensors(sf);
    if (sf->f) fclose(sf->f);
    free(sf);
}

const st_tensor *st_find(const st_file *sf, const char *name)
{
    for (size_t i = 0; i < sf->n; i++)
        if (!strcmp(sf->t[i].name, name)) return &sf->t[i];
    return NULL;
}

int st_read_f32(st_file *sf, const st_tensor *t, float *out, char *err, size_t errlen)
{
    int kind = !strcmp(t->dtype, "F32") ? 0 : !strcmp(t->dtype, "F16") ? 1
             : !strcmp(t->dtype, "BF16") ? 2 : -1;
    if (kind < 0)
        return cli_set_err(err, errlen, "tensor '%.80s' has dtype %s (need F32, F16 or BF16)", t->name,
                       t->dtype);
    if (sf->data_start + t->begin > (uint64_t)INT64_MAX ||
        fseeko(sf->f, (off_t)(sf->data_start + t->begin), SEEK_SET))
        return cli_set_err(err, errlen, "tensor '%.80s': seek failed: %s", t->name, strerror(errno));
    unsigned char buf[4096];
    uint64_t done = 0;
    while (done < t->count) {
        size_t m = sizeof buf / t->elem;
        if (t->count - done < m) m = (size_t)(t->count - done);
        if (fread(buf, t->elem, m, sf->f) != m)
            return cli_set_err(err, errlen, "tensor '%.80s': file ends early (changed while reading?)",
                           t->name);
        for (size_t i = 0; i < m; i++) {
            const unsigned char *p = buf + i * t->elem;
            float v;
            if (kind == 0) {
                uint32_t u = cli_le32(p);
                memcpy(&v, &u, 4);
            } else {
                v = kind == 1 ? cli_half_to_float(cli_le16(p)) : cli_bf16_to_float(cli_le16(p));
            }
            out[done + i] = v;
        }
        done += m;
    }
    return 0;
}
