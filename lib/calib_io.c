/*
 * calib_io.c - the calibration file (docs/FORMAT.md s6): header, the head
 * projections in fp32 and the codebooks in fp16, each part CRC-32C checked;
 * loading validates every field before allocating and every value after.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "calib.h"

#define CALIB_MAGIC "GEARCALB"
#define CALIB_VERSION 1u
#define CALIB_HEADER 96u

/* Payload bytes implied by the shape and params (0 on overflow). */
static size_t payload_bytes(const gear_calib *cal)
{
    size_t hc = gear_calib_hc_mean_floats(cal), u = gear_calib_hc_u_floats(cal), t = 0, x;
    if (hc && (!gear_add_ok(hc, u, &x) || !gear_mul_ok(x, 8, &t))) return 0; /* K and V, fp32 */
    for (int kv = 0; kv < 2; kv++)
        if (!gear_mul_ok(gear_calib_cb_floats(cal, kv), 2, &x) || !gear_add_ok(t, x, &t)) return 0;
    return t;
}

/* Floats through a CRC-accumulating sink, in fp32 or fp16. */
static void put_floats(gear_sink *s, uint32_t *crc, const float *v, size_t n, int half)
{
    uint8_t buf[1024];
    size_t es = half ? 2 : 4, per = sizeof buf / es;
    for (size_t i = 0; i < n; i += per) {
        size_t m = n - i < per ? n - i : per;
        for (size_t j = 0; j < m; j++) {
            if (half) gear_put_u16(buf + 2 * j, gear_float_to_half(v[i + j]));
            else gear_put_u32(buf + 4 * j, gear_f32_bits(v[i + j]));
        }
        *crc = gear_crc32c(*crc, buf, m * es);
        gear_sink_put(s, buf, m * es);
    }
}

static gear_status write_calib(const void *obj, gear_sink *s)
{
    const gear_calib *cal = obj;
    if (!cal->fitted)
        return gear_fail(GEAR_ERR_INVALID_ARG, "calibration is not fitted (call gear_calib_fit)");
    uint8_t h[CALIB_HEADER];
    memset(h, 0, sizeof h);
    memcpy(h, CALIB_MAGIC, 8);
    gear_put_u32(h + 8, CALIB_VERSION);
    gear_put_u32(h + 12, CALIB_HEADER);
    gear_put_u32(h + 16, cal->n_layer);
    gear_put_u32(h + 20, cal->n_head);
    gear_put_u32(h + 24, cal->d);
    h[28] = (uint8_t)cal->p.cq_dim[0];
    h[29] = (uint8_t)cal->p.cq_dim[1];
    h[30] = (uint8_t)cal->p.cq_bits[0];
    h[31] = (uint8_t)cal->p.cq_bits[1];
    gear_put_u32(h + 32, cal->p.hc_group);
    gear_put_u32(h + 36, cal->p.hc_dim);
    gear_put_u32(h + 40, cal->p.kmeans_iters);
    gear_put_u32(h + 44, cal->tokens);
    gear_put_u64(h + 48, cal->p.seed);
    for (int kv = 0; kv < 2; kv++) {
        gear_put_u64(h + 56 + 8 * kv, gear_f64_bits(cal->hc_energy[kv]));
        gear_put_u64(h + 72 + 8 * kv, gear_f64_bits(cal->cq_rel_err[kv]));
    }
    gear_put_u32(h + 88, cal->p.max_tokens);
    gear_put_u32(h + 92, gear_crc32c(0, h, 92));
    gear_sink_put(s, h, sizeof h);
    uint32_t crc = 0;
    size_t nm = gear_calib_hc_mean_floats(cal);
    for (int kv = 0; kv < 2 && nm; kv++) {
        put_floats(s, &crc, cal->hc_mean[kv], nm, 0);
        put_floats(s, &crc, cal->hc_u[kv], gear_calib_hc_u_floats(cal), 0);
    }
    for (int kv = 0; kv < 2; kv++) put_floats(s, &crc, cal->cb[kv], gear_calib_cb_floats(cal, kv), 1);
    uint8_t t[4];
    gear_put_u32(t, crc);
    gear_sink_put(s, t, 4);
    return GEAR_OK;
}

gear_status gear_calib_save_mem(const gear_calib *cal, void *dst, size_t cap, size_t *size)
{
    if (!cal || !size) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_save_mem: NULL argument");
    return gear_save_mem(write_calib, cal, dst, cap, size);
}

gear_status gear_calib_save(const gear_calib *cal, const char *path)
{
    if (!cal || !path) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_save: NULL argument");
    if (!*path) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_save: empty path");
    return gear_save_file(write_calib, cal, path);
}

/* n floats from p (fp32 or fp16) into v; 0 if one is not finite or, for
 * a projection (bound > 0), larger than bound in magnitude. */
static int get_floats(const uint8_t *p, float *v, size_t n, int half, float bound)
{
    for (size_t i = 0; i < n; i++) {
        float f = half ? gear_half_to_float(gear_get_u16(p + 2 * i)) : gear_bits_f32(gear_get_u32(p + 4 * i));
        if (!isfinite(f) || (bound > 0.0f && fabsf(f) > bound)) return 0;
        v[i] = f;
    }
    return 1;
}

gear_status gear_calib_load_mem(const void *src_, size_t len, gear_calib **out)
{
    const uint8_t *src = src_;
    if (out) *out = NULL;
    if (!src || !out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_load_mem: NULL argument");
    if (len < 8 || memcmp(src, CALIB_MAGIC, 8))
        return gear_fail(len < 8 ? GEAR_ERR_FORMAT_TRUNCATED : GEAR_ERR_FORMAT_MAGIC,
                         "not a libgear calibration (magic %s expected)", CALIB_MAGIC);
    if (len < CALIB_HEADER)
        return gear_fail(GEAR_ERR_FORMAT_TRUNCATED, "calibration header needs %u bytes, %zu given",
                         CALIB_HEADER, len);
    if (gear_get_u32(src + 8) != CALIB_VERSION)
        return gear_fail(GEAR_ERR_FORMAT_VERSION, "calibration format version %u (this library "
                         "reads %u)", gear_get_u32(src + 8), CALIB_VERSION);
    if (gear_get_u32(src + 92) != gear_crc32c(0, src, 92))
        return gear_fail(GEAR_ERR_FORMAT_CRC, "calibration header CRC mismatch");
    if (gear_get_u32(src + 12) != CALIB_HEADER)
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "calibration header size %u", gear_get_u32(src + 12));
    gear_calib_params p;
    gear_calib_params_init(&p);
    for (int kv = 0; kv < 2; kv++) p.cq_dim[kv] = src[28 + kv], p.cq_bits[kv] = src[30 + kv];
    p.hc_group = gear_get_u32(src + 32);
    p.hc_dim = gear_get_u32(src + 36);
    p.kmeans_iters = gear_get_u32(src + 40);
    p.seed = gear_get_u64(src + 48);
    p.max_tokens = gear_get_u32(src + 88);
    gear_calib *cal;
    gear_status st = gear_calib_check(&p, gear_get_u32(src + 16), gear_get_u32(src + 20),
                                      gear_get_u32(src + 24));
    if (st) return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "calibration header: %s", gear_last_error_message());
    /* the size before anything is allocated */
    gear_calib shape;
    memset(&shape, 0, sizeof shape);
    shape.p = p;
    shape.n_layer = gear_get_u32(src + 16);
    shape.n_head = gear_get_u32(src + 20);
    shape.d = gear_get_u32(src + 24);
    shape.sh = p.hc_group ? shape.n_head / p.hc_group : shape.n_head;
    shape.sd = p.hc_group ? p.hc_dim : shape.d;
    for (int kv = 0; kv < 2; kv++)
        shape.cb_head[kv] = p.cq_dim[kv] ? (size_t)shape.sd << p.cq_bits[kv] : 0;
    size_t pay = payload_bytes(&shape);
    if (!pay || len - CALIB_HEADER < 4)
        return gear_fail(pay ? GEAR_ERR_FORMAT_TRUNCATED : GEAR_ERR_FORMAT_CORRUPT,
                         "calibration payload: %s", pay ? "missing" : "empty or too large");
    if (len - CALIB_HEADER - 4 != pay)
        return gear_fail(len - CALIB_HEADER - 4 < pay ? GEAR_ERR_FORMAT_TRUNCATED
                                                      : GEAR_ERR_FORMAT_CORRUPT,
                         "calibration of %zu bytes, header implies %zu", len,
                         pay + CALIB_HEADER + 4);
    const uint8_t *q = src + CALIB_HEADER;
    if (gear_get_u32(q + pay) != gear_crc32c(0, q, pay))
        return gear_fail(GEAR_ERR_FORMAT_CRC, "calibration payload CRC mismatch");
    st = gear_calib_alloc(&p, shape.n_layer, shape.n_head, shape.d, &cal);
    if (st) return st;
    size_t nm = gear_calib_hc_mean_floats(cal), nu = gear_calib_hc_u_floats(cal);
    int ok = 1;
    for (int kv = 0; kv < 2 && nm && ok; kv++) {
        /* columns of U are unit vectors: no entry above 1 (plus rounding) */
        ok = get_floats(q, cal->hc_mean[kv], nm, 0, 0.0f) &&
             get_floats(q + 4 * nm, cal->hc_u[kv], nu, 0, 1.001f);
        q += 4 * (nm + nu);
    }
    for (int kv = 0; kv < 2 && ok; kv++) {
        size_t nc = gear_calib_cb_floats(cal, kv);
        ok = get_floats(q, cal->cb[kv], nc, 1, 0.0f);
        q += 2 * nc;
    }
    for (int kv = 0; kv < 2 && ok; kv++) {
        cal->hc_energy[kv] = gear_bits_f64(gear_get_u64(src + 56 + 8 * kv));
        cal->cq_rel_err[kv] = gear_bits_f64(gear_get_u64(src + 72 + 8 * kv));
        ok = cal->hc_energy[kv] >= 0.0 && cal->hc_energy[kv] <= 1.0 + 1e-9 &&
             cal->cq_rel_err[kv] >= 0.0 && cal->cq_rel_err[kv] < 1e30;
    }
    if (!ok) {
        gear_calib_free(cal);
        return gear_fail(GEAR_ERR_FORMAT_CORRUPT, "calibration holds a non-finite or out-of-range value");
    }
    cal->tokens = gear_get_u32(src + 44);
    cal->fitted = 1;
    *out = cal;
    return GEAR_OK;
}

gear_status gear_calib_load(const char *path, gear_calib **out)
{
    if (out) *out = NULL;
    if (!path || !out) return gear_fail(GEAR_ERR_INVALID_ARG, "gear_calib_load: NULL argument");
    uint8_t *data;
    size_t len;
    gear_status st = gear_read_file(path, &data, &len);
    if (!st) st = gear_calib_load_mem(data, len, out);
    free(data);
    return st;
}

gear_status gear_calib_dup(const gear_calib *cal, gear_calib **out)
{
    size_t n;
    gear_status st = gear_calib_save_mem(cal, NULL, 0, &n);
    if (st != GEAR_ERR_DST_TOO_SMALL) return st ? st : gear_fail(GEAR_ERR_INTERNAL, "calib size");
    uint8_t *buf = malloc(n);
    if (!buf) return gear_fail(GEAR_ERR_NO_MEMORY, "calibration copy");
    st = gear_calib_save_mem(cal, buf, n, &n);
    if (!st) st = gear_calib_load_mem(buf, n, out);
    free(buf);
    return st;
}
