/*
 * internal.h - declarations shared inside libgear's core (not installed).
 * Tests include it to reach core pieces directly.
 */
#ifndef GEAR_INTERNAL_H
#define GEAR_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <gear.h>
#include <gear/backend.h>

#if defined(__GNUC__)
#  define GEAR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#  define GEAR_PRINTF(a, b)
#endif

/* GEAR_CLONES (hot loops per x86-64 level) comes from gear/backend.h. */

/* ---- status.c: errors and logging */
/* Record the detail of a failure for gear_last_error_message(); returns s. */
gear_status gear_fail(gear_status s, const char *fmt, ...) GEAR_PRINTF(2, 3);
void gear_clear_error(void);
void gear_log(gear_log_level level, const char *fmt, ...) GEAR_PRINTF(2, 3);

/* ---- memory that kernels stream with vector loads (queries, outputs,
 * the full-precision buffers): 64-byte aligned, freed with free().  With
 * malloc's 16 bytes, where the heap put a query decided whether the cpu
 * module's 64-byte loads split cache lines: kivi2's attention ran 2 %
 * slower in cache after a longer build path moved the heap (thirtieth
 * session).  NULL for 0 bytes or no memory. */
void *gear_alloc64(size_t bytes);

/* ---- checked size arithmetic: return 0 on overflow */
static inline int gear_mul_ok(size_t a, size_t b, size_t *r)
{
    if (b && a > SIZE_MAX / b) return 0;
    *r = a * b;
    return 1;
}
static inline int gear_add_ok(size_t a, size_t b, size_t *r)
{
    if (a > SIZE_MAX - b) return 0;
    *r = a + b;
    return 1;
}
static inline size_t gear_align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* ---- IEEE bit patterns */
static inline uint32_t gear_f32_bits(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    return v.u;
}
static inline float gear_bits_f32(uint32_t u)
{
    union { float f; uint32_t u; } v;
    v.u = u;
    return v.f;
}
static inline uint64_t gear_f64_bits(double d)
{
    union { double d; uint64_t u; } v;
    v.d = d;
    return v.u;
}
static inline double gear_bits_f64(uint64_t u)
{
    union { double d; uint64_t u; } v;
    v.u = u;
    return v.d;
}

/* ---- little-endian field access */
static inline void gear_put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void gear_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void gear_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint16_t gear_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t gear_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t gear_get_u64(const uint8_t *p)
{
    return (uint64_t)gear_get_u32(p) | (uint64_t)gear_get_u32(p + 4) << 32;
}

/* ---- convert.c: n 16-bit little-endian fields (fp16, or bf16 when bf16
 * is set) to fp32 and back; vectorized. */
void gear_halves_to_floats(const uint8_t *src, size_t n, int bf16, float *dst);
void gear_floats_to_halves(const float *src, size_t n, int bf16, uint8_t *dst);
/* dst[i] = gear_float_to_half_ovf(src[i], ovf) (ovf 0x7c00: Inf, 0x7bff:
 * saturate) through F16C where the CPU has it and AVX2; 0, nothing
 * written, where it does not. */
int gear_floats_to_halves_f16c(const float *src, size_t n, uint16_t ovf, uint16_t *dst);
/* n fp32 little-endian fields from and to floats. */
void gear_floats_load_le(const uint8_t *src, size_t n, float *dst);
void gear_floats_store_le(const float *src, size_t n, uint8_t *dst);
/* n native fp16 values as little-endian fields, unchanged; 0 (dst partly
 * written) if one is Inf or NaN. */
int gear_halves_store_finite(const uint16_t *src, size_t n, uint8_t *dst);

/* ---- crc32c.c */
uint32_t gear_crc32c(uint32_t crc, const void *data, size_t len);

/* ---- fileio.c: serialized objects */
/* Output to memory (buf/cap; pos counts even past cap, for size queries)
 * or to a FILE. */
typedef struct gear_sink {
    uint8_t *buf;
    size_t cap, pos;
    FILE *f;
    int failed;
} gear_sink;
void gear_sink_put(gear_sink *s, const void *p, size_t n);
typedef gear_status (*gear_writer)(const void *obj, gear_sink *s);
/* *size = bytes written; GEAR_ERR_DST_TOO_SMALL when dst is NULL or short. */
gear_status gear_save_mem(gear_writer write, const void *obj, void *dst, size_t cap, size_t *size);
/* Written to PATH.tmp.XXXXXX, flushed, fsynced, renamed over path. */
gear_status gear_save_file(gear_writer write, const void *obj, const char *path);
/* The whole file into *data (malloc'ed). */
gear_status gear_read_file(const char *path, uint8_t **data, size_t *len);

/* ---- config.c */
#define GEAR_CQ_MAX_DIM 16u   /* channels per CQ code */
/* Effective group size of cfg for rows of row_len entries. */
unsigned gear_config_group(const gear_config *cfg, unsigned row_len);
/* Outliers per side in a group of m entries: round(s*m/2), at most m/2. */
unsigned gear_outliers_per_side(float ratio, unsigned m);

/* ---- layout.c: the block format */
/* Layout of a compressed (or, bits == 0, raw fp16) block for cfg and d. */
gear_status gear_block_layout_init(gear_block_layout *L, const gear_config *cfg, unsigned d);
/* Layout of a raw block of n tokens holding data of dtype. */
gear_status gear_block_layout_raw(gear_block_layout *L, gear_kind kind, unsigned n, unsigned d,
                                  gear_dtype dtype);
/* Write the 32-byte header of a block whose sections are filled, and its
 * CRC.  blk is host memory. */
void gear_block_seal(const gear_block_layout *L, uint8_t *blk);
/* Parse and check an untrusted block header at src (len bytes available):
 * fills L and checks size, CRC and every section's content (outlier
 * indices in their groups, sorted).  GEAR_ERR_FORMAT_* on defects. */
gear_status gear_block_parse(const uint8_t *src, size_t len, gear_block_layout *L);
/* Fill sections from a raw fp32 n x d block (raw layouts). */
void gear_block_pack_raw(const gear_block_layout *L, const float *x, uint8_t *blk);
void gear_block_unpack_raw(const gear_block_layout *L, const uint8_t *blk, float *x);
/* A raw fp16 block's rows copied as they are to out, rows ld halves apart
 * (what unpacking to fp32 and saturating back gives: its halves are
 * finite). */
void gear_block_raw_f16_rows(const gear_block_layout *L, const uint8_t *blk, uint16_t *out, size_t ld);

/* Serialized config: GEAR_CONFIG_BYTES little-endian bytes (FORMAT.md). */
#define GEAR_CONFIG_BYTES 32u
void gear_config_write(const gear_config *cfg, uint8_t *p);
/* Parse and validate for head_dim d; GEAR_ERR_FORMAT_CORRUPT if invalid. */
gear_status gear_config_read(const uint8_t *p, unsigned d, gear_config *cfg);

/* Packed b-bit code access (row-relative, little-endian bit order). */
static inline unsigned gear_code_get(const uint8_t *row, unsigned bits, unsigned j)
{
    size_t bit = (size_t)j * bits;
    unsigned sh = (unsigned)(bit & 7), v = row[bit >> 3];
    if (sh + bits > 8) v |= (unsigned)row[(bit >> 3) + 1] << 8; /* code spans two bytes */
    return (v >> sh) & ((1u << bits) - 1u);
}

/* ---- tensor.c: views */
size_t gear_dtype_size(gear_dtype t);
/* Check a view's dtype, ndim, shape, strides; expect its logical shape to
 * be [h, t, d] (ndim 3) or [t, d] (ndim 2, only if h == 1). name is used in
 * the error message.  Any of h, t, d given as 0 is taken from the view. */
gear_status gear_view_check(const gear_tensor *x, const char *name, int64_t *h, int64_t *t,
                            int64_t *d);
/* 1 if no two of the view's (head, token) rows share an element (strides
 * at least the extent below them), so that threads may write rows at once. */
int gear_view_rows_disjoint(const gear_tensor *x);
/* Contiguous fp16 rows of head h from token t0 (rows ld halves apart,
 * ld >= 0) of a checked view in host memory: 1 and the pointer, or 0 for
 * any other view. */
int gear_view_f16_rows(const gear_tensor *x, int64_t h, int64_t t0, const uint16_t **rows,
                       size_t *ld);
/* Rows of head h from token t0 of a checked view in host memory whose
 * channels are contiguous (any dtype; rows ld elements apart): 1 and the
 * pointer, or 0 for any other view. */
int gear_view_host_rows(const gear_tensor *x, int64_t h, int64_t t0, const void **rows, size_t *ld);
/* Read rows [t0, t0+nt) of head h as fp32 into dst (nt x d, contiguous).
 * Checks every value is finite and within fp16 range when check_range. */
gear_status gear_view_read(const gear_tensor *x, int64_t h, int64_t t0, int64_t nt, int64_t d,
                           float *dst, int check_range);
/* Write fp32 rows into the view at head h, rows [t0, t0+nt). */
void gear_view_write(gear_tensor *x, int64_t h, int64_t t0, int64_t nt, int64_t d,
                     const float *src);

/* ---- registry.c: backends */
int gear_registry_count(void);
const struct gear_backend_i *gear_registry_get(int i);
/* Backend by name ("auto" = best available); GEAR_ERR_NO_BACKEND if none. */
gear_status gear_registry_find(const char *name, const struct gear_backend_i **be);

/* ---- context.c */
struct gear_context {
    const struct gear_backend_i *be;
    void *state;
    int device;
    int n_threads;
};

/* A fused backend slot's failure as the caller's error: st, with a message
 * naming the backend and its own detail (its last_error).  GEAR_OK and
 * GEAR_ERR_UNSUPPORTED (the core then takes over) pass unchanged. */
gear_status gear_backend_failed(const gear_context *ctx, gear_status st, const char *what);

/* ---- pipeline.c: one block through the backend */
/* Compress n x d fp32 host rows x into a block at blk (backend memory). */
gear_status gear_pipeline_compress(gear_context *ctx, const gear_block_layout *L,
                                   const gear_block_id *id, const float *x, uint8_t *blk);
/* Compress count blocks: x[i] (host) into blk[i] (backend memory). */
gear_status gear_pipeline_compress_batch(gear_context *ctx, const gear_block_layout *L,
                                         unsigned count, const gear_block_id *ids,
                                         const float *const *x, uint8_t *const *blk);
/* Reconstruct count blocks (backend memory) into host fp32, block i at
 * out + i*n*d: through the backend's reconstruct_blocks where a host
 * backend has it, else one block at a time. */
gear_status gear_pipeline_reconstruct_batch(gear_context *ctx, const gear_block_layout *L,
                                            unsigned count, const uint8_t *const *blk, float *out);
/* Reconstruct count blocks (host backend memory) straight into fp16 rows
 * out[i], ld halves apart, each value gear_half_sat: the fp16 preset's rows
 * copied, other layouts through the backend's reconstruct_blocks_f16;
 * GEAR_ERR_UNSUPPORTED on a device backend, or where the backend has no
 * such slot or does not take the layout (the caller then stages fp32). */
gear_status gear_pipeline_reconstruct_f16(gear_context *ctx, const gear_block_layout *L,
                                          unsigned count, const uint8_t *const *blk,
                                          uint16_t *const *out, size_t ld);
/* Whether gear_pipeline_reconstruct_f16 can take blocks of this layout. */
int gear_pipeline_has_f16_out(const gear_context *ctx, const gear_block_layout *L);
/* Reconstruct a block (backend memory) into host fp32 n x d. */
gear_status gear_pipeline_reconstruct(gear_context *ctx, const gear_block_layout *L,
                                      const uint8_t *blk, float *out);

/* The same with the blocks in host memory: count blocks one after another
 * from hblk (copied from the backend in one transfer if it has its own). */
gear_status gear_pipeline_compress_host(gear_context *ctx, const gear_block_layout *L,
                                        unsigned count, const gear_block_id *ids,
                                        const float *const *x, uint8_t *hblk);
/* Compress count blocks straight from fp16 rows (x[i], ld halves apart)
 * through the backend's compress_blocks_f16, host backends only (blk[i]
 * in host memory); raw fp16 blocks are the halves themselves, copied by
 * the core for any host backend.  GEAR_ERR_UNSUPPORTED (no message) where that slot is
 * missing or declines, GEAR_ERR_NONFINITE (no message) where an input is
 * not finite: the caller then stages fp32 rows, which reports it. */
gear_status gear_pipeline_compress_f16(gear_context *ctx, const gear_block_layout *L,
                                       unsigned count, const gear_block_id *ids,
                                       const uint16_t *const *x, size_t ld, uint8_t *const *blk);
/* The same from fp32 or bf16 rows (x[i], ld values of dtype apart)
 * through the backend's compress_blocks_rows, host backends and layouts
 * with codes only: GEAR_ERR_UNSUPPORTED (no message) where that slot is
 * missing or declines, GEAR_ERR_NONFINITE or GEAR_ERR_RANGE (no message)
 * for a bad input, which the caller's staging then reports. */
gear_status gear_pipeline_compress_rows(gear_context *ctx, const gear_block_layout *L, unsigned count,
                                        const gear_block_id *ids, const void *const *x, gear_dtype dtype,
                                        size_t ld, uint8_t *const *blk);
gear_status gear_pipeline_reconstruct_host(gear_context *ctx, const gear_block_layout *L,
                                           const uint8_t *hblk, float *out);
/* Same shape and content description (everything but the CRC). */
int gear_block_layout_equal(const gear_block_layout *a, const gear_block_layout *b);

/* ---- attention.c: core attention over a layer's KV heads */
gear_status gear_attention_layer(gear_context *ctx, const gear_attention_args *a);

#endif /* GEAR_INTERNAL_H */
