/*
 * gear/backend.h - the backend module ABI of libgear (for backend authors).
 *
 * A backend is a table of function pointers.  The core owns the algorithm's
 * definition and the byte layout of a block (gear_block_layout below and
 * docs/FORMAT.md); a backend decides only where blocks live and how fast the
 * primitives run.  Slots marked OPTIONAL may be NULL: the core then composes
 * the result from the required primitives.
 *
 * A module is a shared object named gear-<name>.so exporting one symbol:
 *     const struct gear_backend_i *gear_backend_module_init(uint32_t core_abi);
 * It returns NULL when it cannot serve core_abi.
 *
 * Everything here is plain C99 and header-only so that CUDA/HIP kernels can
 * include it (GEAR_HD marks functions usable on host and device).
 */
#ifndef GEAR_BACKEND_H
#define GEAR_BACKEND_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <gear.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GEAR_BACKEND_ABI_VERSION 5u

#if defined(__CUDACC__) || defined(__HIPCC__)
#  define GEAR_HD __host__ __device__ static inline
#else
#  define GEAR_HD static inline
#endif

/* Block header: fixed 32 bytes, little-endian.  See docs/FORMAT.md. */
#define GEAR_BLOCK_HEADER_BYTES 32u
#define GEAR_BLOCK_ALIGN 16u
#define GEAR_BLOCK_MAX_ENTRIES 65536u   /* n*d: outlier indices are u16 */

/* Block flags (header byte 11). */
#define GEAR_BLOCK_RAW 0x01u            /* uncompressed block: raw dtype data */
#define GEAR_BLOCK_DTYPE_SHIFT 1        /* raw blocks: gear_dtype in bits 1..2 */

/* Where each section of a compressed block lies, in bytes from the block
 * start, and the shape facts every backend needs.  Computed by the core
 * (gear_block_layout_init) from a config and head_dim; identical on every
 * backend. */
typedef struct gear_block_layout {
    unsigned kind;        /* GEAR_KEY / GEAR_VALUE */
    unsigned n, d;        /* tokens, channels */
    unsigned bits;        /* 0 = raw */
    unsigned raw_dtype;   /* raw blocks: gear_dtype of the data */
    unsigned rank, iters;
    float ratio;          /* outlier ratio s (recorded in the header) */
    /* Quantization rows: keys: d rows (channels) of n tokens;
     * values: n rows (tokens) of d channels. */
    unsigned rows, row_len;
    unsigned group;            /* effective group size (<= row_len) */
    unsigned groups_per_row;   /* ceil(row_len / group) */
    unsigned k_full;           /* outliers per side in a full group */
    unsigned k_tail;           /* outliers per side in the last, shorter group */
    unsigned tail_len;         /* length of the last group (== group if none) */
    unsigned outliers_per_row; /* 2*(k_full*(groups_per_row-1) + k_tail) */
    unsigned n_outliers;       /* rows * outliers_per_row */
    unsigned row_bytes;        /* packed code bytes per row (multiple of 4) */
    size_t off_codes, off_scales, off_mins, off_oidx, off_oval, off_a, off_b, off_raw;
    size_t bytes;              /* whole block */
    /* Coupled quantization (cq_dim > 0).  The codes section then holds n
     * token rows of cq_groups codes (code j of token t: channels
     * [j*cq_dim, (j+1)*cq_dim), bits [j*bits, (j+1)*bits) of the row); there
     * are no scales or minima.  rows/row_len/group above still describe
     * the outlier groups. */
    unsigned cq_dim;           /* c: channels per code; 0 = uniform quantizer */
    unsigned cq_groups;        /* d / c codes per token */
    unsigned cq_row_bytes;     /* packed code bytes per token (multiple of 4) */
    size_t cb_head_floats;     /* centroids of one KV head: cq_groups * 2^bits * c */
    /* Set by the core for each call, NULL unless cq_dim: the centroids,
     * fp32 (values exact in fp16), in backend memory, laid out
     * [code group j][centroid k][channel i].  In the per-block slots
     * (quantize, dequantize, lowrank_fit, reconstruct, compress_blocks) it is
     * the codebook of the blocks' KV head (the core passes blocks of one head
     * per compress_blocks call); in attention it is KV head 0's and head h's
     * starts at codebook + h*cb_head_floats. */
    const float *codebook;
} gear_block_layout;

/* ------------------------------------------------ fp16 / bf16 conversion */

/* Exact and branch-free: the exponent-mantissa field is moved into place
 * and rescaled by 2^112, which also normalizes subnormals.  Clang 14-15
 * vectorize loops of this and of the converters below; GCC 12 vectorizes
 * none of them (-fopt-info-vec on lib/convert.c and on scratch loops),
 * so the cpu backend's hot paths convert with F16C or AVX-512
 * instructions instead. */
GEAR_HD float gear_half_to_float(uint16_t h)
{
    union { uint32_t u; float f; } v, m;
    uint32_t em = (uint32_t)(h & 0x7fffu) << 13;
    v.u = em;
    m.u = 0x77800000u; /* 2^112 */
    v.f *= m.f;
    if (em >= 0x0f800000u) v.u = em | 0x7f800000u; /* Inf, NaN */
    v.u |= (uint32_t)(h & 0x8000u) << 16;
    return v.f;
}

/* Round to nearest even, whatever the caller's rounding mode; what
 * rounds beyond 65504 (Inf included) becomes ovf (0x7c00: Inf; 0x7bff:
 * saturate at 65504), NaN the quiet NaN 0x7e00 (with the sign).
 * Branch-free (selects only), so that a compiler may vectorize it (see
 * gear_half_to_float), and on the integer bits only: the subnormal range
 * once rounded by a float addition of 0.5, which followed the caller's
 * mode, where vcvtps2ph (the F16C writer, the AVX-512 kernels) always
 * rounds to nearest (a helper's review: under FE_UPWARD a decode gave
 * other halves in a strided view).
 * Checked against vcvtps2ph on all 2^32 inputs, in every rounding mode. */
GEAR_HD uint16_t gear_float_to_half_ovf(float f, uint32_t ovf)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    uint32_t sign = (v.u >> 16) & 0x8000u, ax = v.u & 0x7fffffffu;
    uint32_t nrm = ((ax + 0x0fffu + ((ax >> 13) & 1u)) >> 13) - (112u << 10);
    /* below 2^-14: |f| / 2^-24 = m * 2^(e - 126), m with its implicit bit;
     * the shift is clamped to [14, 25] for every input (25 already
     * rounds all of m away) */
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | (e ? 0x800000u : 0u);
    uint32_t sh = e >= 112u ? 14u : e < 101u ? 25u : 126u - e;
    uint32_t q = m >> sh, rem = m & ((1u << sh) - 1u), half = 1u << (sh - 1u);
    uint32_t sub = q + ((rem > half) | ((rem == half) & q & 1u));
    uint32_t r = ax < 0x38800000u ? sub : nrm;  /* below 2^-14: subnormal half */
    r = ax >= 0x477ff000u ? ovf : r;            /* rounds to >= 65520, or Inf */
    r = ax > 0x7f800000u ? 0x7e00u : r;         /* NaN */
    return (uint16_t)(sign | r);
}

/* fp16 of f: overflow gives +-Inf. */
GEAR_HD uint16_t gear_float_to_half(float f) { return gear_float_to_half_ovf(f, 0x7c00u); }

GEAR_HD float gear_bf16_to_float(uint16_t h)
{
    union { uint32_t u; float f; } v;
    v.u = (uint32_t)h << 16;
    return v.f;
}

GEAR_HD uint16_t gear_float_to_bf16(float f)
{
    union { float f; uint32_t u; } v;
    v.f = f;
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);
    uint32_t r = v.u + 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(r >> 16);
}

/* dst = fp32 of m contiguous fp16 values; returns 0 if one of them is
 * Inf or NaN (every finite fp16 value is in range).  Inlined into callers
 * compiled per instruction set (vectorized there by clang, not by GCC
 * 12). */
GEAR_HD int gear_halves_to_floats_finite(const uint16_t *p, size_t m, float *dst)
{
    unsigned bad = 0;
    for (size_t i = 0; i < m; i++) {
        dst[i] = gear_half_to_float(p[i]);
        bad |= (p[i] & 0x7c00u) == 0x7c00u;
    }
    return !bad;
}

/* The same for n rows of d halves, rows ld halves apart, into n x d. */
GEAR_HD int gear_half_rows_to_floats_finite(const uint16_t *p, size_t ld, size_t n, size_t d,
                                            float *dst)
{
    if (ld == d) return gear_halves_to_floats_finite(p, n * d, dst);
    int ok = 1;
    for (size_t t = 0; t < n; t++) ok &= gear_halves_to_floats_finite(p + t * ld, d, dst + t * d);
    return ok;
}

/* A quantization group's fp16 minimum and step from the range [lo, hi] of
 * its entries other than the outliers (DESIGN s2): the step is
 * (hi - lo)/levels rounded to fp16, saturated at 65504.  A zero minimum or
 * step is stored as +0 whichever signed zero the group held first, so
 * that every backend writes the same bytes (decoding cannot tell them
 * apart: mn + 0 * step is +0 either way). */
GEAR_HD void gear_group_params(float lo, float hi, unsigned levels, uint16_t *mn_h, uint16_t *dl_h)
{
    uint16_t m = gear_float_to_half(lo);
    uint16_t s = gear_float_to_half((hi - lo) / (float)levels);
    if ((s & 0x7fffu) == 0x7c00u) s = 0x7bffu; /* saturate at 65504 */
    *mn_h = m == 0x8000u ? (uint16_t)0 : m;
    *dl_h = s == 0x8000u ? (uint16_t)0 : s;
}

/* fp16 of v, saturated at +-65504 (low-rank factors never become Inf);
 * NaN stays NaN.  Selects on the bits, like gear_float_to_half: clamping
 * the float first (two compares on a float that may be NaN) had kept
 * output loops scalar (fp16 output of gear_decompress ran at 0.95 GB/s
 * where fp32 and bf16 ran at 2.3).  Clang vectorizes loops of this form;
 * GCC 12 does not either. */
GEAR_HD uint16_t gear_half_sat(float v) { return gear_float_to_half_ovf(v, 0x7bffu); }

/* The power iteration's orthonormalization (DESIGN s2): modified
 * Gram-Schmidt on the r columns of Y (n x r, row-major), in double; a
 * column that kept only rounding noise of its norm becomes zero.  Shared so
 * that every backend that follows ref's factors bit for bit runs the same
 * arithmetic. */
GEAR_HD void gear_orthonormalize(double *Y, unsigned n, unsigned r)
{
    for (unsigned c = 0; c < r; c++) {
        double orig = 0.0;
        for (unsigned i = 0; i < n; i++) orig += Y[i * r + c] * Y[i * r + c];
        for (unsigned p = 0; p < c; p++) {
            double dot = 0.0;
            for (unsigned i = 0; i < n; i++) dot += Y[i * r + p] * Y[i * r + c];
            for (unsigned i = 0; i < n; i++) Y[i * r + c] -= dot * Y[i * r + p];
        }
        double nrm = 0.0;
        for (unsigned i = 0; i < n; i++) nrm += Y[i * r + c] * Y[i * r + c];
        int dead = !(nrm > 1e-24) || nrm <= orig * 1e-20;
        double inv = dead ? 0.0 : 1.0 / sqrt(nrm);
        for (unsigned i = 0; i < n; i++) Y[i * r + c] *= inv;
    }
}

/* ----------------------------------------- counter-based start matrix */

/* SplitMix64 finalizer: a bijective 64-bit mixer. */
GEAR_HD uint64_t gear_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Key of one block's stream: (seed, layer, head, block index, K/V). */
GEAR_HD uint64_t gear_rng_key(uint64_t seed, uint32_t layer, uint32_t head,
                              uint32_t block, uint32_t kind)
{
    uint64_t k = gear_mix64(seed);
    k = gear_mix64(k ^ ((uint64_t)layer << 32 | head));
    k = gear_mix64(k ^ ((uint64_t)block << 1 | (kind & 1u)));
    return k;
}

/* Element i of the stream as a float uniform in [0,1) with 24 random bits:
 * exact and identical on every backend. */
GEAR_HD float gear_rng_uniform(uint64_t key, uint32_t i)
{
    uint64_t z = gear_mix64(key ^ (0xd1b54a32d192ed03ull * (uint64_t)(i + 1)));
    return (float)(uint32_t)(z >> 40) * (1.0f / 16777216.0f);
}

/* ------------------------------------------ Coupled Quantization codes */

/* Index of the centroid nearest to the c values x among K centroids cb
 * ([K][c]); channel i is skipped when bit i of skip is set (an outlier,
 * stored exactly).  The squared distance is summed in channel order with
 * fmaf and ties go to the lower index: every backend must use exactly this
 * arithmetic so that codes match `ref` bit for bit (a backend may evaluate
 * several k at once, each in this order). */
GEAR_HD unsigned gear_cq_nearest(const float *x, uint32_t skip, const float *cb, unsigned K,
                                 unsigned c)
{
    unsigned best = 0;
    float bd = INFINITY;
    for (unsigned k = 0; k < K; k++) {
        float dist = 0.0f;
        for (unsigned i = 0; i < c; i++) {
            float e = (skip >> i & 1u) ? 0.0f : x[i] - cb[(size_t)k * c + i];
            dist = fmaf(e, e, dist);
        }
        if (dist < bd) bd = dist, best = k;
    }
    return best;
}

/* GEAR_CLONES: compile a hot function for several x86-64 levels (AVX-512,
 * AVX2, baseline), picked at load time (GCC >= 12 function multi-versioning
 * with ifunc).  libgear's configure tests that the compiler and the C
 * library support it and then defines GEAR_HAVE_TARGET_CLONES; elsewhere
 * the functions are compiled once, for the baseline.  Not with clang: it
 * names the dispatcher of an extern cloned function differently, so calls
 * from another file do not link (clang 14).
 * GEAR_CLONES_NO_V4 (a build made with CPPFLAGS=-DGEAR_CLONES_NO_V4) leaves
 * out the AVX-512 clones, so that with GEAR_CPU_NO_AVX512=1 an AVX-512
 * machine runs what an AVX2-only CPU would (the CPU picks the clones, not
 * that variable; README's AVX2 figures are measured this way). */
#if defined(GEAR_HAVE_TARGET_CLONES) && !defined(GEAR_NO_CLONES) && !defined(__clang__)
#  ifdef GEAR_CLONES_NO_V4
#    define GEAR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#  else
#    define GEAR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#  endif
#else
#  define GEAR_CLONES
#endif

/* e^x for x <= 0, the argument range of a softmax after subtracting the
 * running maximum; relative error about 2e-7, and 0 for x < -87 or -inf.
 * NaN in gives NaN out.  Branch-free (selects only), so loops over it
 * vectorize without libm;
 * shared by the host backends and the benchmarks' fp16 baseline. */
GEAR_HD float gear_exp_neg(float x)
{
    float xc = x < -87.0f ? -87.0f : x;
    xc = xc == xc ? xc : 0.0f; /* NaN (from Inf - Inf): k must stay a number; NaN comes back below */
    float k = rintf(xc * 1.44269504f);
    float r = fmaf(k, -0.693145752f, xc);
    r = fmaf(k, -1.42860677e-6f, r);
    float p = 1.38888889e-3f;
    p = fmaf(p, r, 8.33333333e-3f);
    p = fmaf(p, r, 4.16666667e-2f);
    p = fmaf(p, r, 1.66666667e-1f);
    p = fmaf(p, r, 0.5f);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    union { float f; int32_t i; } u;
    u.i = ((int32_t)k + 127) << 23;
    return x < -87.0f ? 0.0f : x == x ? p * u.f : x;
}

/* Where a block came from: keys the start matrix. */
typedef struct gear_block_id {
    uint64_t seed;
    uint32_t layer, head, block;
} gear_block_id;

/* ------------------------------------------------------- backend table */

typedef enum gear_copy_dir {
    GEAR_COPY_H2D = 0, GEAR_COPY_D2H = 1, GEAR_COPY_D2D = 2, GEAR_COPY_H2H = 3
} gear_copy_dir;

typedef struct gear_backend_params {
    int device;
    int n_threads;
} gear_backend_params;

/* Decode attention over every KV head of one layer.  Blocks are in the
 * backend's memory; buffers, q and out are host fp32.  Query rows are
 * ordered [kv head][query head in its group][query token]: row
 * (h, g, i) is q[((h*n_group + g)*n_qtok + i)*d].  Query token i sits at
 * position T - n_qtok + i (T = n_blocks*n + n_buf) and sees positions up to
 * that one (causal). */
typedef struct gear_attention_args {
    const gear_block_layout *lk, *lv;
    unsigned n_head;                 /* KV heads */
    unsigned n_blocks;               /* compressed blocks per head */
    const uint8_t *const *kblocks;   /* [h*n_blocks + b] -> K block */
    const uint8_t *const *vblocks;   /* [h*n_blocks + b] -> V block */
    const float *kbuf, *vbuf;        /* head h's buffer at h*buf_stride: n_buf x d */
    size_t buf_stride;
    unsigned n_buf;
    const float *q;
    unsigned n_group, n_qtok;        /* query heads per KV head, query tokens */
    float scale;
    float *out;                      /* same layout as q */
} gear_attention_args;

struct gear_backend_i {
    uint32_t abi_version;            /* GEAR_BACKEND_ABI_VERSION */
    const char *name;
    const char *description;

    /* 0 = unusable here (then *why says why); higher = preferred by "auto".
     * Must not create a device context. */
    int (*score)(const char **why);
    gear_status (*init)(const gear_backend_params *p, void **state);
    void (*shutdown)(void *state);
    /* Detail of the backend's last failure (e.g. a driver error string). */
    const char *(*last_error)(void *state);

    /* Memory where blocks live.  on_device: 0 = host memory. */
    int on_device;
    gear_status (*mem_alloc)(void *state, size_t bytes, void **ptr);
    void (*mem_free)(void *state, void *ptr);
    gear_status (*mem_copy)(void *state, void *dst, const void *src, size_t bytes,
                            gear_copy_dir dir);
    gear_status (*sync)(void *state);

    /* ---- primitives (required).  x, xq, resid: n x d fp32, row-major
     * (token-major), in backend memory; blk: one block per layout L. */
    /* Select the outliers of every group; write the oidx/oval sections. */
    gear_status (*outlier_select)(void *state, const gear_block_layout *L,
                                  const float *x, uint8_t *blk);
    /* Quantize x, skipping the outliers already in blk; write codes,
     * scales and minima. */
    gear_status (*quantize)(void *state, const gear_block_layout *L,
                            const float *x, uint8_t *blk);
    /* xq = dequantized codes with the outliers restored (Q^ + S). */
    gear_status (*dequantize)(void *state, const gear_block_layout *L,
                              const uint8_t *blk, float *xq);
    /* Power iteration on E = x - xq (zero at outliers) from the start
     * matrix keyed by id; write A and B. */
    gear_status (*lowrank_fit)(void *state, const gear_block_layout *L,
                               const gear_block_id *id, const float *x,
                               const float *xq, uint8_t *blk);
    /* out = Q^ + S + A B^T (n x d fp32). */
    gear_status (*reconstruct)(void *state, const gear_block_layout *L,
                               const uint8_t *blk, float *out);

    /* ---- OPTIONAL fused slots. */
    /* Compress count blocks of one layout: x[i] (n x d fp32, backend
     * memory) into blk[i] (zero-filled by the core; the core writes the
     * header and CRC afterwards).  Batched so a backend can spread blocks
     * over threads or one kernel launch. */
    gear_status (*compress_blocks)(void *state, const gear_block_layout *L, unsigned count,
                                   const gear_block_id *ids, const float *const *x,
                                   uint8_t *const *blk);
    /* May return GEAR_ERR_UNSUPPORTED for a shape it does not handle; the
     * core then runs its own attention from the primitives. */
    gear_status (*attention)(void *state, const gear_attention_args *a);
    /* compress_blocks from fp16 rows in host memory, for host backends (ABI 3):
     * block i is n rows of d halves from x[i], rows ld halves apart.  The
     * backend converts them next to its compute (in its threads, while the
     * data is in cache) instead of the core staging fp32 serially.  Returns
     * GEAR_ERR_NONFINITE if a value is Inf or NaN (the core then finds and
     * reports it; blk contents are then unspecified), GEAR_ERR_UNSUPPORTED
     * for a layout it does not handle. */
    gear_status (*compress_blocks_f16)(void *state, const gear_block_layout *L, unsigned count,
                                       const gear_block_id *ids, const uint16_t *const *x,
                                       size_t ld, uint8_t *const *blk);
    /* Reconstruct count blocks of one layout, out[i] = Q^ + S + A B^T of
     * blk[i] (n x d fp32; both in backend memory), batched so a backend
     * can spread them over threads (ABI 3).  Without it the core calls
     * reconstruct once per block. */
    gear_status (*reconstruct_blocks)(void *state, const gear_block_layout *L, unsigned count,
                                      const uint8_t *const *blk, float *const *out);
    /* reconstruct_blocks into fp16 rows in host memory, for host backends
     * (ABI 4): block i to n rows of d halves at out[i], rows ld halves
     * apart, each value gear_half_sat of the fp32 reconstruction (what the
     * core would write into an fp16 tensor).  The backend converts in its
     * threads, next to the decode, instead of the core converting every
     * batch serially from an fp32 staging buffer (which another core
     * wrote).  GEAR_ERR_UNSUPPORTED for a layout it does not handle (the
     * core then stages fp32 itself). */
    gear_status (*reconstruct_blocks_f16)(void *state, const gear_block_layout *L, unsigned count,
                                          const uint8_t *const *blk, uint16_t *const *out, size_t ld);
    /* compress_blocks from fp32 or bf16 rows in host memory, for host
     * backends (ABI 5): block i is n rows of d values of type dtype
     * (GEAR_F32 or GEAR_BF16) from x[i], rows ld values apart (ld may be
     * anything, 0 included: rows may overlap; x[i] is aligned to its
     * element size only).  The backend reads, converts and checks them in
     * its threads, next to its compute, instead of the core staging and
     * checking fp32 rows serially.  The core calls it only for layouts
     * with codes (bits > 0; CQ with its codebook), in round-to-nearest,
     * with blk zero-filled, and writes headers and CRCs afterwards.
     * Returns GEAR_ERR_NONFINITE or GEAR_ERR_RANGE if a value is Inf or
     * NaN, or beyond fp16's largest finite value, 65504 (which of the two
     * when a batch holds both kinds is unspecified: the core then stages
     * and reports the first; blk contents are then unspecified), and
     * GEAR_ERR_UNSUPPORTED for a layout or type it does not handle. */
    gear_status (*compress_blocks_rows)(void *state, const gear_block_layout *L, unsigned count,
                                        const gear_block_id *ids, const void *const *x, gear_dtype dtype,
                                        size_t ld, uint8_t *const *blk);
};

/* The built-in reference backend's table, exported by libgear so that a
 * module can fall back to the reference primitives for slots it does not
 * accelerate (they run on host memory). */
GEAR_API const struct gear_backend_i *gear_backend_ref_table(void);

typedef const struct gear_backend_i *(*gear_backend_module_init_fn)(uint32_t core_abi);
#define GEAR_BACKEND_MODULE_SYMBOL "gear_backend_module_init"

#if !defined(__CUDACC__) && !defined(__HIPCC__)
#include <fenv.h>
/* Compression and reconstruction compute in round-to-nearest whatever mode
 * the caller's thread has set, so that their bytes and decodes are the
 * same on every backend (ref runs in the caller's thread, a module in
 * threads of its own; an inference engine may round otherwise).  The core
 * sets it around every codec call; a module sets it in each of its own
 * threads: m = gear_round_nearest(); ...; gear_round_restore(m). */
static inline int gear_round_nearest(void)
{
    int m = fegetround();
    if (m != FE_TONEAREST) fesetround(FE_TONEAREST);
    return m;
}
static inline void gear_round_restore(int m)
{
    if (m != FE_TONEAREST) fesetround(m);
}
#endif

#ifdef __cplusplus
}
#endif
#endif /* GEAR_BACKEND_H */
