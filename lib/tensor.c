/* tensor.c - strided tensor views: checks, reads to fp32, writes from fp32. */
#include <math.h>
#include <string.h>
#include "internal.h"

size_t gear_dtype_size(gear_dtype t)
{
    switch (t) {
    case GEAR_F32: return 4;
    case GEAR_F16: case GEAR_BF16: return 2;
    }
    return 0;
}

gear_status gear_tensor_init(gear_tensor *t, void *data, gear_dtype dtype, int ndim,
                             int64_t d0, int64_t d1, int64_t d2, int64_t d3)
{
    int64_t dims[4] = {d0, d1, d2, d3};
    if (!t) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_tensor_init: t is NULL");
    if (ndim < 1 || ndim > 4)
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_tensor_init: ndim %d not in 1..4", ndim);
    if (!gear_dtype_size(dtype))
        return gear_fail(GEAR_ERR_INVALID_ARG, "gear_tensor_init: unknown dtype %d", (int)dtype);
    t->data = data;
    t->dtype = dtype;
    t->ndim = ndim;
    t->on_device = 0;
    int64_t stride = 1;
    for (int i = 3; i >= 0; i--) {
        t->shape[i] = i < ndim ? dims[i] : 1;
        t->strides[i] = stride;
        if (i < ndim) {
            if (dims[i] < 0)
                return gear_fail(GEAR_ERR_SHAPE, "gear_tensor_init: dimension %d is negative", i);
            if (dims[i] && stride > INT64_MAX / dims[i])
                return gear_fail(GEAR_ERR_OVERFLOW, "gear_tensor_init: size overflows");
            stride *= dims[i] ? dims[i] : 1;
        }
    }
    return GEAR_OK;
}

gear_status gear_view_check(const gear_tensor *x, const char *name, int64_t *h, int64_t *t,
                            int64_t *d)
{
    if (!x) return gear_fail(GEAR_ERR_INVALID_ARG, "%s is NULL", name);
    if (!gear_dtype_size(x->dtype))
        return gear_fail(GEAR_ERR_INVALID_ARG, "%s: unknown dtype %d", name, (int)x->dtype);
    if (x->ndim != 2 && x->ndim != 3)
        return gear_fail(GEAR_ERR_SHAPE, "%s: expected 2 or 3 dimensions, got %d", name, x->ndim);
    if (x->on_device)
        return gear_fail(GEAR_ERR_UNSUPPORTED,
                         "%s: device memory views are not supported by this call", name);
    int64_t s[3], st[3];
    if (x->ndim == 2) {
        s[0] = 1; st[0] = 0;
        s[1] = x->shape[0]; st[1] = x->strides[0];
        s[2] = x->shape[1]; st[2] = x->strides[1];
    } else {
        for (int i = 0; i < 3; i++) { s[i] = x->shape[i]; st[i] = x->strides[i]; }
    }
    int64_t span = 0;
    for (int i = 0; i < 3; i++) {
        if (s[i] <= 0)
            return gear_fail(GEAR_ERR_SHAPE, "%s: dimension %d is %lld (must be > 0)", name, i,
                             (long long)s[i]);
        if (s[i] > 1 && st[i] < 0)
            return gear_fail(GEAR_ERR_SHAPE, "%s: negative stride", name);
        /* the furthest element must be addressable: sum (s-1)*stride */
        if (s[i] > 1 && st[i] > (INT64_MAX / 8 - span) / (s[i] - 1))
            return gear_fail(GEAR_ERR_OVERFLOW, "%s: extent overflows", name);
        if (s[i] > 1) span += (s[i] - 1) * st[i];
    }
    if (s[0] > ((int64_t)1 << 40) / s[2] / s[1])
        return gear_fail(GEAR_ERR_OVERFLOW, "%s: more than 2^40 elements", name);
    if (!x->data) return gear_fail(GEAR_ERR_INVALID_ARG, "%s: data is NULL", name);
    /* Elements are read and written as float / uint16_t: a pointer not
     * aligned to its dtype would be undefined behaviour (and a fault on
     * some targets), so it is refused rather than read byte by byte. */
    if ((uintptr_t)x->data % gear_dtype_size(x->dtype))
        return gear_fail(GEAR_ERR_INVALID_ARG, "%s: data pointer %p is not aligned to its "
                         "%zu-byte elements", name, x->data, gear_dtype_size(x->dtype));
    if (x->ndim == 2 && *h > 1)
        return gear_fail(GEAR_ERR_SHAPE, "%s: 2-D view but %lld heads expected", name,
                         (long long)*h);
    int64_t *out[3] = {h, t, d};
    static const char *dn[3] = {"heads", "tokens", "head_dim"};
    for (int i = 0; i < 3; i++) {
        if (*out[i] && *out[i] != s[i])
            return gear_fail(GEAR_ERR_SHAPE, "%s: %s is %lld, expected %lld", name, dn[i],
                             (long long)s[i], (long long)*out[i]);
        *out[i] = s[i];
    }
    return GEAR_OK;
}

/* Element offset of (h, t, c) in a view already checked. */
static int64_t view_offset(const gear_tensor *x, int64_t h, int64_t t, int64_t c)
{
    if (x->ndim == 2) return t * x->strides[0] + c * x->strides[1];
    return h * x->strides[0] + t * x->strides[1] + c * x->strides[2];
}

/* Convert one row of d elements (element stride cs) to fp32. */
GEAR_CLONES
static void read_row(const gear_tensor *x, int64_t off, int64_t cs, int64_t d, float *dst)
{
    switch (x->dtype) {
    case GEAR_F32: {
        const float *p = (const float *)x->data + off;
        for (int64_t c = 0; c < d; c++) dst[c] = p[c * cs];
        break;
    }
    case GEAR_F16: {
        const uint16_t *p = (const uint16_t *)x->data + off;
        if (cs == 1) /* clang vectorizes this; GCC 12 does not (gear/backend.h) */
            for (int64_t c = 0; c < d; c++) dst[c] = gear_half_to_float(p[c]);
        else
            for (int64_t c = 0; c < d; c++) dst[c] = gear_half_to_float(p[c * cs]);
        break;
    }
    case GEAR_BF16: {
        const uint16_t *p = (const uint16_t *)x->data + off;
        if (cs == 1) /* vectorizes: a bf16 staged prefill spent most of its time here */
            for (int64_t c = 0; c < d; c++) dst[c] = gear_bf16_to_float(p[c]);
        else
            for (int64_t c = 0; c < d; c++) dst[c] = gear_bf16_to_float(p[c * cs]);
        break;
    }
    }
}

/* 1 if every |v| <= lim (NaN fails the comparison too); branch-free. */
GEAR_CLONES
static int row_in_range(const float *row, int64_t d, float lim)
{
    int ok = 1;
    for (int64_t c = 0; c < d; c++) ok &= fabsf(row[c]) <= lim;
    return ok;
}

int gear_view_rows_disjoint(const gear_tensor *x)
{
    int two = x->ndim == 2;
    int64_t H = two ? 1 : x->shape[0], T = two ? x->shape[0] : x->shape[1], D = two ? x->shape[1] : x->shape[2];
    int64_t hs = two ? 0 : x->strides[0], ts = two ? x->strides[0] : x->strides[1];
    int64_t cs = two ? x->strides[1] : x->strides[2];
    int64_t row = D > 1 ? (D - 1) * cs + 1 : 1; /* elements one row spans */
    if (T > 1 && ts < row) return 0;
    if (H > 1 && (T > 1 ? hs / T < ts : hs < row)) return 0; /* hs < T*ts without overflow */
    return 1;
}

int gear_view_host_rows(const gear_tensor *x, int64_t h, int64_t t0, const void **rows, size_t *ld)
{
    int64_t cs = x->ndim == 2 ? x->strides[1] : x->strides[2];
    int64_t ts = x->ndim == 2 ? x->strides[0] : x->strides[1];
    if (cs != 1 || x->on_device || ts < 0) return 0;
    *rows = (const char *)x->data + view_offset(x, h, t0, 0) * (int64_t)gear_dtype_size(x->dtype);
    *ld = (size_t)ts;
    return 1;
}

int gear_view_f16_rows(const gear_tensor *x, int64_t h, int64_t t0, const uint16_t **rows,
                       size_t *ld)
{
    const void *p;
    if (x->dtype != GEAR_F16 || !gear_view_host_rows(x, h, t0, &p, ld)) return 0;
    *rows = p;
    return 1;
}

/* Contiguous fp16 rows converted and range-checked in one pass; 0 when
 * the view is not such or a value is not finite (the general path then
 * finds and reports it). */
GEAR_CLONES
static int read_f16_rows(const gear_tensor *x, int64_t h, int64_t t0, int64_t nt, int64_t d,
                         float *dst)
{
    const uint16_t *p;
    size_t ld;
    return gear_view_f16_rows(x, h, t0, &p, &ld) &&
           gear_half_rows_to_floats_finite(p, ld, (size_t)nt, (size_t)d, dst);
}

gear_status gear_view_read(const gear_tensor *x, int64_t h, int64_t t0, int64_t nt, int64_t d,
                           float *dst, int check_range)
{
    if (read_f16_rows(x, h, t0, nt, d, dst)) return GEAR_OK;
    int64_t cs = x->ndim == 2 ? x->strides[1] : x->strides[2];
    const float lim = check_range ? 65504.0f : 3.4028235e38f;
    for (int64_t t = 0; t < nt; t++) {
        float *row = dst + t * d;
        const float *src = NULL;
        /* contiguous fp32 is checked where it lies: the copy just stored,
         * read back in wider loads, waited on the stores (6 % of an
         * attention call over one block per head) */
        if (x->dtype == GEAR_F32 && cs == 1) {
            src = (const float *)x->data + view_offset(x, h, t0 + t, 0);
            memcpy(row, src, sizeof(float) * (size_t)d);
        } else {
            read_row(x, view_offset(x, h, t0 + t, 0), cs, d, row);
        }
        if (row_in_range(src ? src : row, d, lim)) continue;
        for (int64_t c = 0; c < d; c++) {
            float v = row[c];
            if (!isfinite(v))
                return gear_fail(GEAR_ERR_NONFINITE, "non-finite value at head %lld token %lld "
                                 "channel %lld", (long long)h, (long long)(t0 + t), (long long)c);
            if (fabsf(v) > lim)
                return gear_fail(GEAR_ERR_RANGE, "value %g at head %lld token %lld channel %lld "
                                 "is outside the fp16 range", (double)v, (long long)h,
                                 (long long)(t0 + t), (long long)c);
        }
    }
    return GEAR_OK;
}

/* fp32 to bf16, saturated at bf16's largest finite value (rounding to
 * nearest would make Inf of a finite value above it). */
static inline uint16_t bf16_sat(float v)
{
    const float m = 3.38953139e38f; /* 0x7f7f */
    return gear_float_to_bf16(v > m ? m : v < -m ? -m : v);
}


/* Convert one row of d fp32 values into the view (element stride cs).
 * fp16 and bf16 saturate: a reconstruction may exceed the input's range
 * by its quantization and low-rank error (min + 3*step rounded up, at 2
 * bits, can be 65520 for data that reached 65504), and Inf there would
 * turn a finite input into a non-finite output. */
GEAR_CLONES
static void write_row(gear_tensor *x, int64_t off, int64_t cs, int64_t d, const float *src)
{
    switch (x->dtype) {
    case GEAR_F32: {
        float *p = (float *)x->data + off;
        for (int64_t c = 0; c < d; c++) p[c * cs] = src[c];
        break;
    }
    case GEAR_F16: {
        uint16_t *p = (uint16_t *)x->data + off;
        if (cs == 1 && gear_floats_to_halves_f16c(src, (size_t)d, 0x7bffu, p)) break;
        if (cs == 1) /* clang vectorizes this; GCC 12 does not (gear/backend.h) */
            for (int64_t c = 0; c < d; c++) p[c] = gear_half_sat(src[c]);
        else
            for (int64_t c = 0; c < d; c++) p[c * cs] = gear_half_sat(src[c]);
        break;
    }
    case GEAR_BF16: {
        uint16_t *p = (uint16_t *)x->data + off;
        for (int64_t c = 0; c < d; c++) p[c * cs] = bf16_sat(src[c]);
        break;
    }
    }
}

void gear_view_write(gear_tensor *x, int64_t h, int64_t t0, int64_t nt, int64_t d,
                     const float *src)
{
    int64_t cs = x->ndim == 2 ? x->strides[1] : x->strides[2];
    for (int64_t t = 0; t < nt; t++) write_row(x, view_offset(x, h, t0 + t, 0), cs, d, src + t * d);
}
