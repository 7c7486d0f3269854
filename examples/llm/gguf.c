/* gguf.c - see gguf.h.  Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md */
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define GGUF_MAX_DIMS 4
#define GGUF_MAX_DEPTH 4 /* nesting of arrays of arrays we accept */

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

static size_t left(const cursor *c) { return (size_t)(c->end - c->p); }

static uint64_t rd_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int take(cursor *c, size_t n, const uint8_t **out, const char *what)
{
    if (left(c) < n) return llm_fail("GGUF truncated while reading %s", what);
    *out = c->p;
    c->p += n;
    return 0;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    const uint8_t *p = NULL;
    if (take(c, 4, &p, what)) return -1;
    *v = (uint32_t)rd_le(p, 4);
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    const uint8_t *p = NULL;
    if (take(c, 8, &p, what)) return -1;
    *v = rd_le(p, 8);
    return 0;
}

static int rd_str(cursor *c, gguf_str *s, const char *what)
{
    uint64_t n;
    const uint8_t *p = NULL;
    if (rd_u64(c, &n, what)) return -1;
    if (n > left(c)) return llm_fail("GGUF %s: string length %llu exceeds the file", what,
                                     (unsigned long long)n);
    if (take(c, (size_t)n, &p, what)) return -1;
    s->s = (const char *)p;
    s->n = n;
    return 0;
}

/* Size of a scalar value type, 0 for string/array/unknown. */
static size_t scalar_size(uint32_t t)
{
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

/* Skip over one value of type t, checking every length. */
static int skip_value(cursor *c, uint32_t t, int depth, uint32_t *arr_type, uint64_t *arr_n)
{
    size_t sz = scalar_size(t);
    const uint8_t *p = NULL;
    if (sz) return take(c, sz, &p, "value");
    if (t == GGUF_STRING) {
        gguf_str s;
        return rd_str(c, &s, "string value");
    }
    if (t != GGUF_ARRAY) return llm_fail("GGUF: unknown value type %u", t);
    if (depth >= GGUF_MAX_DEPTH) return llm_fail("GGUF: arrays nested too deeply");
    uint32_t et;
    uint64_t n;
    if (rd_u32(c, &et, "array type") || rd_u64(c, &n, "array length")) return -1;
    if (arr_type) *arr_type = et;
    if (arr_n) *arr_n = n;
    size_t esz = scalar_size(et);
    if (esz) {
        if (n > left(c) / esz) return llm_fail("GGUF: array of %llu elements exceeds the file",
                                               (unsigned long long)n);
        return take(c, (size_t)n * esz, &p, "array");
    }
    if (et != GGUF_STRING && et != GGUF_ARRAY) return llm_fail("GGUF: unknown array type %u", et);
    /* every string or array element takes at least 8 bytes */
    if (n > left(c) / 8) return llm_fail("GGUF: array of %llu elements exceeds the file",
                                         (unsigned long long)n);
    for (uint64_t i = 0; i < n; i++)
        if (skip_value(c, et, depth + 1, NULL, NULL)) return -1;
    return 0;
}

static size_t type_block(uint32_t t)
{
    switch (t) {
    case GGML_F32: case GGML_F16: case GGML_BF16: return 1;
    case GGML_Q4_0: case GGML_Q4_1: case GGML_Q8_0: return 32;
    default: return 0;
    }
}

static size_t type_bytes(uint32_t t)
{
    switch (t) {
    case GGML_F32: return 4;
    case GGML_F16: case GGML_BF16: return 2;
    case GGML_Q4_0: return 18;
    case GGML_Q4_1: return 20;
    case GGML_Q8_0: return 34;
    default: return 0;
    }
}

const char *ggml_type_name(uint32_t t)
{
    switch (t) {
    case GGML_F32: return "F32";
    case GGML_F16: return "F16";
    case GGML_BF16: return "BF16";
    case GGML_Q4_0: return "Q4_0";
    case GGML_Q4_1: return "Q4_1";
    case GGML_Q8_0: return "Q8_0";
    default: return "unsupported";
    }
}

int gguf_str_eq(gguf_str a, const char *b)
{
    size_t n = strlen(b);
    return a.n == n && memcmp(a.s, b, n) == 0;
}

static int parse_tensor(cursor *c, gguf_tensor *t, uint64_t idx)
{
    if (rd_str(c, &t->name, "tensor name")) return -1;
    if (rd_u32(c, &t->n_dims, "tensor dims")) return -1;
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return llm_fail("GGUF tensor %llu: %u dimensions (1..%d allowed)", (unsigned long long)idx,
                        t->n_dims, GGUF_MAX_DIMS);
    uint64_t n_elem = 1;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        if (rd_u64(c, &t->ne[d], "tensor shape")) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT32_MAX)
            return llm_fail("GGUF tensor '%.*s': dimension %u is %llu", (int)t->name.n, t->name.s, d,
                            (unsigned long long)t->ne[d]);
        if (n_elem > UINT64_MAX / t->ne[d])
            return llm_fail("GGUF tensor '%.*s': element count overflows", (int)t->name.n, t->name.s);
        n_elem *= t->ne[d];
    }
    if (rd_u32(c, &t->type, "tensor type") || rd_u64(c, &t->offset, "tensor offset")) return -1;
    size_t bs = type_block(t->type), tb = type_bytes(t->type);
    if (!bs) return llm_fail("GGUF tensor '%.*s': ggml type %u is not supported by this reader",
                             (int)t->name.n, t->name.s, t->type);
    if (t->ne[0] % bs)
        return llm_fail("GGUF tensor '%.*s': row of %llu elements is not a multiple of the %s block %zu",
                        (int)t->name.n, t->name.s, (unsigned long long)t->ne[0],
                        ggml_type_name(t->type), bs);
    if (n_elem / bs > SIZE_MAX / tb)
        return llm_fail("GGUF tensor '%.*s': byte size overflows", (int)t->name.n, t->name.s);
    t->n_elem = n_elem;
    t->n_bytes = (size_t)(n_elem / bs) * tb;
    return 0;
}

int gguf_parse(const uint8_t *buf, size_t size, gguf_file *f)
{
    memset(f, 0, sizeof *f);
    cursor c = {buf, buf + size};
    uint32_t magic;
    if (rd_u32(&c, &magic, "magic")) return -1;
    if (magic != GGUF_MAGIC) return llm_fail("not a GGUF file (bad magic)");
    if (rd_u32(&c, &f->version, "version")) return -1;
    if (f->version != 2 && f->version != 3)
        return llm_fail("GGUF version %u not supported (2 and 3 are)", f->version);
    if (rd_u64(&c, &f->n_tensors, "tensor count") || rd_u64(&c, &f->n_kv, "metadata count"))
        return -1;
    /* a kv takes >= 8+4+1 bytes and a tensor info >= 8+4+8+4+8: bound the
     * counts by the file size before allocating anything */
    if (f->n_kv > left(&c) / 13 || f->n_tensors > left(&c) / 32)
        return llm_fail("GGUF counts (%llu kv, %llu tensors) exceed the file",
                        (unsigned long long)f->n_kv, (unsigned long long)f->n_tensors);
    f->kv = calloc(f->n_kv ? (size_t)f->n_kv : 1, sizeof *f->kv);
    f->tensors = calloc(f->n_tensors ? (size_t)f->n_tensors : 1, sizeof *f->tensors);
    if (!f->kv || !f->tensors) {
        gguf_close(f);
        return llm_fail("out of memory parsing GGUF");
    }
    f->alignment = 32;
    for (uint64_t i = 0; i < f->n_kv; i++) {
        gguf_kv *kv = &f->kv[i];
        if (rd_str(&c, &kv->key, "metadata key") || rd_u32(&c, &kv->type, "metadata type"))
            goto fail;
        const uint8_t *start = c.p;
        if (skip_value(&c, kv->type, 0, &kv->arr_type, &kv->arr_n)) goto fail;
        kv->data = start;
        kv->size = (size_t)(c.p - start);
        if (kv->type == GGUF_ARRAY) { /* data: past the element type and count */
            kv->data = start + 12;
            kv->size -= 12;
        }
        if (gguf_str_eq(kv->key, "general.alignment")) {
            if (kv->type != GGUF_U32) {
                llm_fail("GGUF general.alignment has type %u, not u32", kv->type);
                goto fail;
            }
            uint32_t a = (uint32_t)rd_le(kv->data, 4);
            if (a == 0 || (a & (a - 1)) || a > 65536) {
                llm_fail("GGUF general.alignment %u is not a power of two <= 65536", a);
                goto fail;
            }
            f->alignment = a;
        }
    }
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (parse_tensor(&c, &f->tensors[i], i)) goto fail;
    size_t pos = (size_t)(c.p - buf), pad = (f->alignment - pos % f->alignment) % f->alignment;
    if (pad > left(&c) && f->n_tensors) {
        llm_fail("GGUF truncated before the tensor data");
        goto fail;
    }
    f->data_offset = pos + pad;
    for (uint64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset % f->alignment) {
            llm_fail("GGUF tensor '%.*s': offset %llu not aligned to %u", (int)t->name.n, t->name.s,
                     (unsigned long long)t->offset, f->alignment);
            goto fail;
        }
        size_t avail = size - f->data_offset;
        if (t->offset > avail || t->n_bytes > avail - t->offset) {
            llm_fail("GGUF tensor '%.*s': %zu bytes at offset %llu lie beyond the end of the file",
                     (int)t->name.n, t->name.s, t->n_bytes, (unsigned long long)t->offset);
            goto fail;
        }
        t->data = buf + f->data_offset + t->offset;
        for (uint64_t j = 0; j < i; j++)
            if (f->tensors[j].name.n == t->name.n && !memcmp(f->tensors[j].name.s, t->name.s, t->name.n)) {
                llm_fail("GGUF: duplicate tensor name '%.*s'", (int)t->name.n, t->name.s);
                goto fail;
            }
    }
    return 0;
fail:
    gguf_close(f);
    return -1;
}

int gguf_open(const char *path, gguf_file *f)
{
    char *data;
    size_t size;
    memset(f, 0, sizeof *f);
    if (llm_read_file(path, &data, &size)) return -1;
    if (gguf_parse((const uint8_t *)data, size, f)) {
        free(data);
        return -1;
    }
    f->buf = (uint8_t *)data;
    return 0;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    free(f->kv);
    free(f->tensors);
    free(f->buf);
    memset(f, 0, sizeof *f);
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key)
{
    for (uint64_t i = 0; i < f->n_kv; i++)
        if (gguf_str_eq(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    for (uint64_t i = 0; i < f->n_tensors; i++)
        if (gguf_str_eq(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

/* Integer value of a scalar of type t at p. */
static int int_value(uint32_t t, const uint8_t *p, int64_t *out, int *is_unsigned_big)
{
    *is_unsigned_big = 0;
    switch (t) {
    case GGUF_U8: case GGUF_BOOL: *out = p[0]; return 0;
    case GGUF_I8: *out = (int8_t)p[0]; return 0;
    case GGUF_U16: *out = (int64_t)rd_le(p, 2); return 0;
    case GGUF_I16: *out = (int16_t)rd_le(p, 2); return 0;
    case GGUF_U32: *out = (int64_t)rd_le(p, 4); return 0;
    case GGUF_I32: *out = (int32_t)rd_le(p, 4); return 0;
    case GGUF_U64: {
        uint64_t v = rd_le(p, 8);
        if (v > INT64_MAX) *is_unsigned_big = 1;
        *out = (int64_t)v;
        return 0;
    }
    case GGUF_I64: *out = (int64_t)rd_le(p, 8); return 0;
    default: return -1;
    }
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return llm_fail("GGUF metadata '%s' is missing", key);
    int64_t v;
    int big;
    if (int_value(kv->type, kv->data, &v, &big)) return llm_fail("GGUF metadata '%s' is not an integer", key);
    if (big || v < 0 || v > UINT32_MAX) return llm_fail("GGUF metadata '%s' = %lld is out of range", key, (long long)v);
    *out = (uint32_t)v;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return llm_fail("GGUF metadata '%s' is missing", key);
    if (kv->type == GGUF_F32) {
        uint32_t b = (uint32_t)rd_le(kv->data, 4);
        memcpy(out, &b, 4);
    } else if (kv->type == GGUF_F64) {
        uint64_t b = rd_le(kv->data, 8);
        double d;
        memcpy(&d, &b, 8);
        *out = (float)d;
    } else {
        return llm_fail("GGUF metadata '%s' is not a float", key);
    }
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return llm_fail("GGUF metadata '%s' is missing", key);
    if (kv->type != GGUF_BOOL) return llm_fail("GGUF metadata '%s' is not a bool", key);
    *out = kv->data[0] != 0;
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return llm_fail("GGUF metadata '%s' is missing", key);
    if (kv->type != GGUF_STRING) return llm_fail("GGUF metadata '%s' is not a string", key);
    out->n = rd_le(kv->data, 8);
    out->s = (const char *)kv->data + 8;
    return 0;
}

int gguf_str_array(const gguf_kv *kv, gguf_str *out)
{
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING)
        return llm_fail("GGUF metadata '%.*s' is not a string array", (int)kv->key.n, kv->key.s);
    cursor c = {kv->data, kv->data + kv->size}; /* already validated by the parser */
    for (uint64_t i = 0; i < kv->arr_n; i++)
        if (rd_str(&c, &out[i], "string array")) return -1;
    return 0;
}

int gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out)
{
    if (kv->type != GGUF_ARRAY) return llm_fail("GGUF metadata is not an array");
    size_t esz = scalar_size(kv->arr_type);
    int big;
    if (!esz || kv->arr_type == GGUF_F32 || kv->arr_type == GGUF_F64)
        return llm_fail("GGUF array '%.*s' is not an integer array", (int)kv->key.n, kv->key.s);
    if (i >= kv->arr_n) return llm_fail("GGUF array index out of range");
    if (int_value(kv->arr_type, kv->data + i * esz, out, &big) || big)
        return llm_fail("GGUF array '%.*s': bad element", (int)kv->key.n, kv->key.s);
    return 0;
}

int gguf_dequantize(const gguf_tensor *t, uint64_t first, uint64_t n, float *out)
{
    size_t bs = type_block(t->type), tb = type_bytes(t->type);
    if (!bs) return llm_fail("tensor type %u not supported", t->type);
    if (first % bs || n % bs || first > t->n_elem || n > t->n_elem - first)
        return llm_fail("dequantize: range %llu+%llu does not fit tensor '%.*s'",
                        (unsigned long long)first, (unsigned long long)n, (int)t->name.n, t->name.s);
    const uint8_t *p = t->data + (size_t)(first / bs) * tb;
    switch (t->type) {
    case GGML_F32:
        for (uint64_t i = 0; i < n; i++) {
            uint32_t b = (uint32_t)rd_le(p + 4 * i, 4);
            memcpy(&out[i], &b, 4);
        }
        break;
    case GGML_F16:
        for (uint64_t i = 0; i < n; i++) out[i] = llm_f16_to_f32((uint16_t)rd_le(p + 2 * i, 2));
        break;
    case GGML_BF16:
        for (uint64_t i = 0; i < n; i++) out[i] = llm_bf16_to_f32((uint16_t)rd_le(p + 2 * i, 2));
        break;
    case GGML_Q4_0: /* d (f16), 16 bytes: low nibbles are elements 0..15, high 16..31 */
        for (uint64_t b = 0; b < n / 32; b++, p += 18, out += 32) {
            float d = llm_f16_to_f32((uint16_t)rd_le(p, 2));
            for (int j = 0; j < 16; j++) {
                out[j] = (float)((p[2 + j] & 0x0f) - 8) * d;
                out[j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case GGML_Q4_1: /* d, m (f16), 16 bytes of nibbles: x = q*d + m */
        for (uint64_t b = 0; b < n / 32; b++, p += 20, out += 32) {
            float d = llm_f16_to_f32((uint16_t)rd_le(p, 2)), m = llm_f16_to_f32((uint16_t)rd_le(p + 2, 2));
            for (int j = 0; j < 16; j++) {
                out[j] = (float)(p[4 + j] & 0x0f) * d + m;
                out[j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
        break;
    case GGML_Q8_0: /* d (f16), 32 int8 */
        for (uint64_t b = 0; b < n / 32; b++, p += 34, out += 32) {
            float d = llm_f16_to_f32((uint16_t)rd_le(p, 2));
            for (int j = 0; j < 32; j++) out[j] = (float)(int8_t)p[2 + j] * d;
        }
        break;
    default: return llm_fail("tensor type %u not supported", t->type);
    }
    return 0;
}
