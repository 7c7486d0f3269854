/*
 * gear.h - libgear public API.
 *
 * libgear compresses the key/value cache of transformer inference with GEAR
 * (arXiv 2403.05527): X ~ Q + S + L, where Q is a low-bit group quantization,
 * S a few exact outliers and L a low-rank fit of the remaining error; and it
 * computes decode attention straight from the compressed cache.  KIVI, KCVT
 * and plain quantization are the same pipeline with parts switched off.
 *
 * Conventions
 *  - Every call that can fail returns gear_status: GEAR_OK (0) or a negative
 *    error (*_free, the name and count getters cannot fail).  No call
 *    aborts the process on bad input.  gear_status_string() names a status;
 *    gear_last_error_message() gives the detail of the last failure on the
 *    calling thread.
 *  - Objects are opaque and come in create/free pairs; every *_free accepts
 *    NULL.
 *  - Tensors are non-owning strided views (gear_tensor).
 *  - A context may be shared by any number of threads, and calls on
 *    different caches run concurrently.  One cache may be read (attention,
 *    decompress, tokens, stats, save) from several threads at once, but
 *    gear_cache_append and gear_cache_free need that cache to themselves:
 *    no other call on it may run meanwhile.  See README "Threads".
 *  - A failed call leaves its cache as it was and its output buffers
 *    unwritten; a failed *_create or *_load sets its object pointer to NULL.
 */
#ifndef GEAR_H
#define GEAR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define GEAR_API
#elif defined(__GNUC__) && __GNUC__ >= 4
#  define GEAR_API __attribute__((visibility("default")))
#else
#  define GEAR_API
#endif

/* ---------------------------------------------------------------- version */

#define GEAR_VERSION_MAJOR 0
#define GEAR_VERSION_MINOR 1
#define GEAR_VERSION_PATCH 0
#define GEAR_VERSION_NUMBER \
    (GEAR_VERSION_MAJOR * 10000 + GEAR_VERSION_MINOR * 100 + GEAR_VERSION_PATCH)

/** Version of the library actually loaded, as MAJOR*10000+MINOR*100+PATCH. */
GEAR_API unsigned gear_version_number(void);
/** Version of the library actually loaded, e.g. "0.1.0". */
GEAR_API const char *gear_version_string(void);

/* ----------------------------------------------------------------- status */

typedef enum gear_status {
    GEAR_OK = 0,
    GEAR_ERR_INVALID_ARG = -1,    /* NULL pointer, bad enum, bad knob value */
    GEAR_ERR_NO_MEMORY = -2,      /* allocation failed */
    GEAR_ERR_UNSUPPORTED = -3,    /* valid request this build/backend cannot do */
    GEAR_ERR_NO_BACKEND = -4,     /* named backend unknown or not usable here */
    GEAR_ERR_BACKEND = -5,        /* backend failed (driver error, ...) */
    GEAR_ERR_SHAPE = -6,          /* shapes or strides do not fit */
    GEAR_ERR_OVERFLOW = -7,       /* a size computation would overflow */
    GEAR_ERR_CAPACITY = -8,       /* cache full (max_tokens) */
    GEAR_ERR_DST_TOO_SMALL = -9,  /* output buffer smaller than needed */
    GEAR_ERR_UNKNOWN_PRESET = -10,/* preset name not known */
    GEAR_ERR_NONFINITE = -11,     /* NaN or Inf in input data */
    GEAR_ERR_RANGE = -12,         /* finite value outside the fp16 range, or
                                     attention scores that overflow fp32 */
    GEAR_ERR_IO = -13,            /* file could not be opened/read/written */
    GEAR_ERR_FORMAT_MAGIC = -20,  /* serialized data: wrong magic */
    GEAR_ERR_FORMAT_VERSION = -21,/* serialized data: unknown format version */
    GEAR_ERR_FORMAT_TRUNCATED = -22, /* serialized data ends early */
    GEAR_ERR_FORMAT_CORRUPT = -23,/* serialized data: bad sizes/fields/indices */
    GEAR_ERR_FORMAT_CRC = -24,    /* serialized data: checksum mismatch */
    GEAR_ERR_INTERNAL = -99       /* a bug in libgear: please report */
} gear_status;

/** Static name of a status, e.g. "GEAR_ERR_SHAPE: shape mismatch". */
GEAR_API const char *gear_status_string(gear_status s);

/** Detail of the most recent failure on the calling thread (never NULL;
 *  "" when there was none).  Valid until the next libgear call on that
 *  thread. */
GEAR_API const char *gear_last_error_message(void);

/* --------------------------------------------------------------- logging */

typedef enum gear_log_level {
    GEAR_LOG_ERROR = 0, GEAR_LOG_WARN = 1, GEAR_LOG_INFO = 2, GEAR_LOG_DEBUG = 3
} gear_log_level;

typedef void (*gear_log_fn)(gear_log_level level, const char *msg, void *user);

/** Route libgear's log lines to fn (NULL restores the default, which writes
 *  lines at or below GEAR_LOG_LEVEL, default WARN, to stderr). */
GEAR_API void gear_log_set(gear_log_fn fn, void *user);

/* ---------------------------------------------------------------- tensors */

typedef enum gear_dtype {
    GEAR_F32 = 0, GEAR_F16 = 1, GEAR_BF16 = 2
} gear_dtype;

/** A non-owning view of a tensor of up to 4 dimensions.  shape[0] is the
 *  outermost dimension; strides are in elements (not bytes), may be any
 *  non-negative value, and are ignored for dimensions of size 1.
 *  on_device != 0 means data is in the memory of the context's device.
 *  Outputs in f16 or bf16 get the fp32 result rounded to nearest and
 *  saturated at the type's largest finite value: a reconstruction can
 *  pass +-65504 by its quantization and low-rank error when the input
 *  came near that limit, and it stays finite. */
typedef struct gear_tensor {
    void *data;
    gear_dtype dtype;
    int ndim;                 /* 1..4 */
    int64_t shape[4];
    int64_t strides[4];
    int on_device;
} gear_tensor;

/** Fill a view of a contiguous row-major tensor.  ndim 1..4; dims beyond
 *  ndim are ignored. */
GEAR_API gear_status gear_tensor_init(gear_tensor *t, void *data, gear_dtype dtype,
                                      int ndim, int64_t d0, int64_t d1,
                                      int64_t d2, int64_t d3);

/* ---------------------------------------------------------------- context */

typedef struct gear_context gear_context;

typedef struct gear_context_params {
    const char *backend;      /* "auto" (default; NULL and "" mean auto), "ref", "cpu", "cuda", "hip" */
    int device;               /* device index for GPU backends (default 0; host backends ignore it) */
    int n_threads;            /* 0 = backend default; a call uses at most as many as it has work items */
} gear_context_params;

/** Defaults: backend "auto", device 0, n_threads 0.  The environment
 *  variables GEAR_BACKEND and GEAR_DEVICE refine "auto" (pick its backend
 *  and device); a backend named here always wins over them. */
GEAR_API void gear_context_params_init(gear_context_params *p);

/** Create a context on a backend.  p may be NULL for defaults. */
GEAR_API gear_status gear_context_create(const gear_context_params *p, gear_context **out);
GEAR_API void gear_context_free(gear_context *ctx);
/** Name of the backend the context runs on. */
GEAR_API const char *gear_context_backend_name(const gear_context *ctx);

/* --------------------------------------------------------------- backends */

/** Number of backends known (built in or found as modules). */
GEAR_API int gear_backend_count(void);
/** Name of backend i (0 <= i < count), or NULL. */
GEAR_API const char *gear_backend_name(int i);
/** 1 if backend i can be used on this machine, else 0.  When 0, *why (if
 *  not NULL) receives a static reason. */
GEAR_API int gear_backend_available(int i, const char **why);
/** Priority of backend i ("auto" picks the highest available). */
GEAR_API int gear_backend_score(int i);
/** Where backend i came from: "built-in" or a module path. */
GEAR_API const char *gear_backend_origin(int i);
/** One line on backend i, as it describes itself once loaded: for the cpu
 *  module, the kernels it chose on this CPU (SIMD level per operation, and
 *  whether the opt-in bf16 products are on); NULL if i is out of range. */
GEAR_API const char *gear_backend_description(int i);

/* ------------------------------------------------------------ compression */

typedef enum gear_kind { GEAR_KEY = 0, GEAR_VALUE = 1 } gear_kind;

/** How one of K or V is compressed.  Start from gear_config_preset() and
 *  override fields.  Grouping follows KIVI: keys are quantized per channel
 *  (a group is `group` consecutive tokens of one channel), values per token
 *  (a group is `group` consecutive channels of one token). */
typedef struct gear_config {
    gear_kind kind;       /* selects the grouping axis */
    unsigned bits;        /* 0 = store fp16 (no compression); 1, 2, 3, 4, 8.
                           * 1 bit of min/max quantization is coarse: on
                           * N(0,1) data its error exceeds that of storing
                           * zeros; CQ (cq_dim) is the 1-bit method.  The
                           * step is stored in fp16: at 1 bit, a group
                           * spanning more than 65504 (values near both
                           * fp16 limits) gets step 65504, so its top code
                           * decodes below the group's maximum */
    unsigned group;       /* group size; 0 = the whole axis (KCVT) */
    float outlier_ratio;  /* s: k = round(s*g/2) largest and smallest per group; 0 = none */
    unsigned rank;        /* r of the low-rank correction; 0 = none */
    unsigned iters;       /* power iterations (>= 1 when rank > 0) */
    unsigned block;       /* tokens per block n (1..65535, n*head_dim <= 65536) */
    uint64_t seed;        /* seed of the power-iteration start matrix */
    unsigned cq_dim;      /* Coupled Quantization (arXiv 2405.03917): c > 0 codes
                           * every c consecutive channels of a token jointly as
                           * the index of one of 2^bits learned centroids (b/c
                           * bits per channel); 0 = uniform min/max quantizer.
                           * Needs a calibration with a matching codebook
                           * (gear_cache_create_calibrated).  With outliers or
                           * rank, CQ is GEAR's backbone (CQ + S + L); `group`
                           * then only groups the outliers. */
} gear_config;

/** Fill cfg with preset `name` for keys or values.  Names: fp16, kivi2,
 *  kivi4, kcvt4, gear2, gearl2, gear4, gearl4, and cq-<c>c<b>b for Coupled
 *  Quantization of c channels with b-bit codes (c in 1..16 dividing the head
 *  dim, b in 1..8; cq-2c8b, cq-4c8b and cq-8c8b are listed).  Unknown name:
 *  GEAR_ERR_UNKNOWN_PRESET. */
GEAR_API gear_status gear_config_preset(const char *name, gear_kind kind, gear_config *cfg);
/** Number of presets and their names, for listings. */
GEAR_API int gear_preset_count(void);
GEAR_API const char *gear_preset_name(int i);
/** Check cfg for a head dimension; GEAR_OK or GEAR_ERR_INVALID_ARG with a
 *  message saying which field is wrong. */
GEAR_API gear_status gear_config_validate(const gear_config *cfg, unsigned head_dim);

/** Layout facts of one compressed block of cfg->block tokens x head_dim. */
typedef struct gear_block_info {
    size_t bytes;            /* whole block, header included */
    size_t header_bytes;     /* header and section alignment padding */
    unsigned n, d, group, groups_per_row, rows;
    unsigned outliers;       /* stored outliers per block */
    double bpe;              /* 8*bytes/(n*d): everything stored */
    double bpe_formula;      /* DESIGN s2 formula without the header term */
    double outlier_fraction; /* outliers/(n*d) */
} gear_block_info;

GEAR_API gear_status gear_block_info_get(const gear_config *cfg, unsigned head_dim,
                                         gear_block_info *info);

/** Upper bound of gear_compress output bytes for a tensor of this shape
 *  ([T,d] or [H,T,d]). */
GEAR_API gear_status gear_compress_bound(const gear_config *cfg, const gear_tensor *x,
                                         size_t *bound);

/** Compress x ([T,d] or [H,T,d]; f32/f16/bf16; any strides) into a
 *  self-describing stream: every head in blocks of cfg->block tokens; a tail
 *  of T mod block tokens is stored uncompressed in its input dtype.  layer
 *  is mixed into the power-iteration seed.  cap below the stream's size:
 *  GEAR_ERR_DST_TOO_SMALL, nothing written and *written 0 (size dst with
 *  gear_compress_bound).  Streams, and the values every decompression
 *  gives, do not depend on the calling thread's floating-point rounding
 *  mode: codecs compute in round-to-nearest and restore the caller's mode
 *  (attention follows the mode only within its error bounds). */
GEAR_API gear_status gear_compress(gear_context *ctx, const gear_config *cfg,
                                   const gear_tensor *x, uint32_t layer,
                                   void *dst, size_t cap, size_t *written);

/** Read the shape ([H,T,d], with H=1 for 2-D input) and config of a
 *  gear_compress stream without decoding it.  Validates the whole stream. */
GEAR_API gear_status gear_stream_info(const void *src, size_t len, int64_t shape[3],
                                      gear_config *cfg);

/** Decompress a stream into out (f32/f16/bf16, shape [H,T,d] or [T,d]
 *  matching the stream).  Untrusted input is checked: every defect gives a
 *  GEAR_ERR_FORMAT_* status and out is left untouched. */
GEAR_API gear_status gear_decompress(gear_context *ctx, const void *src, size_t len,
                                     gear_tensor *out);

/* ------------------------------------------------------------ calibration */

/** A calibration learned from sample K/V of a model (DESIGN s7):
 *  - Coupled Quantization codebooks (arXiv 2405.03917): per layer, K/V,
 *    stored KV head and group of cq_dim channels, 2^cq_bits centroids from
 *    weighted k-means (k-means++ seeding, empty clusters re-seeded);
 *  - KV-head compression (arXiv 2406.07056): per layer, K/V and group of
 *    hc_group KV heads, the mean and the top hc_dim principal directions of
 *    their hc_group*head_dim channels.  A cache then stores hc_dim channels
 *    per group (as n_head_kv/hc_group heads of hc_dim) and attention
 *    projects the query instead of reconstructing keys.  Keys are taken as
 *    the cache receives them, i.e. after RoPE.
 *  With both, the codebooks are learned on the projected K/V.
 *  Use: create, add samples (any number of calls per layer), fit, then
 *  gear_cache_create_calibrated() or save to a file. */
typedef struct gear_calib gear_calib;

typedef struct gear_calib_params {
    unsigned cq_dim[2];     /* [GEAR_KEY], [GEAR_VALUE]: channels per code, 0 = no codebook */
    unsigned cq_bits[2];    /* code bits, 1..8 */
    unsigned hc_group;      /* KV heads merged per group, 0 = no head compression */
    unsigned hc_dim;        /* channels kept per group (K and V), 1..hc_group*head_dim (equal: a lossless rotation) */
    unsigned kmeans_iters;  /* Lloyd iterations (default 20) */
    unsigned max_tokens;    /* samples kept per layer (default 2048; later ones are ignored) */
    uint64_t seed;          /* k-means++ seeding */
} gear_calib_params;

/** Defaults: nothing enabled, kmeans_iters 20, max_tokens 2048, seed 0. */
GEAR_API void gear_calib_params_init(gear_calib_params *p);
/** Parse "cq-<c>c<b>b" into p->cq_dim[kind] and cq_bits[kind] for both
 *  kinds (GEAR_ERR_UNKNOWN_PRESET if it is not such a name). */
GEAR_API gear_status gear_calib_params_cq(gear_calib_params *p, const char *preset);

GEAR_API gear_status gear_calib_create(const gear_calib_params *p, unsigned n_layer,
                                       unsigned n_head_kv, unsigned head_dim, gear_calib **out);
GEAR_API void gear_calib_free(gear_calib *cal);
/** Add calibration tokens of one layer: k and v are [n_head_kv, T,
 *  head_dim] (or [T, head_dim] for one head), any dtype; weights (T
 *  non-negative finite floats, e.g. importance of each token) or NULL for
 *  1.  Tokens beyond max_tokens per layer are ignored. */
GEAR_API gear_status gear_calib_add(gear_calib *cal, unsigned layer, const gear_tensor *k,
                                    const gear_tensor *v, const float *weights);
/** Learn everything from the samples (every layer needs at least one
 *  token, and k-means at least 2^cq_bits); frees the samples. */
GEAR_API gear_status gear_calib_fit(gear_calib *cal);

typedef struct gear_calib_info {
    gear_calib_params params;
    unsigned n_layer, n_head_kv, head_dim;
    unsigned stored_heads, stored_dim; /* what a cache stores per layer */
    unsigned tokens;                   /* calibration tokens per layer (fewest over layers) */
    int fitted;
    double hc_energy[2];   /* K, V: fraction of the calibration variance head compression
                            * keeps (mean over layers); 1 without it */
    double cq_rel_err[2];  /* K, V: sum |x - centroid|^2 / sum |x|^2 on the calibration
                            * samples (projected under head compression); 0 without CQ */
    size_t bytes;          /* serialized size (codebooks in fp16, projections in fp32) */
} gear_calib_info;

GEAR_API gear_status gear_calib_info_get(const gear_calib *cal, gear_calib_info *info);

/** Save a fitted calibration (format: docs/FORMAT.md s6; CRC-checked) /
 *  load one, validating every byte. */
GEAR_API gear_status gear_calib_save(const gear_calib *cal, const char *path);
GEAR_API gear_status gear_calib_load(const char *path, gear_calib **out);
GEAR_API gear_status gear_calib_save_mem(const gear_calib *cal, void *dst, size_t cap,
                                         size_t *size);
GEAR_API gear_status gear_calib_load_mem(const void *src, size_t len, gear_calib **out);

/* ------------------------------------------------------------------ cache */

typedef struct gear_cache gear_cache;

/** A KV cache of n_layer layers, n_head_kv KV heads of head_dim channels,
 *  holding up to max_tokens tokens per layer.  Keys and values each keep
 *  their newest tokens (fewer than one block) in a full-precision buffer;
 *  when it fills, the block is compressed once and never again. */
GEAR_API gear_status gear_cache_create(gear_context *ctx, const gear_config *cfg_k,
                                       const gear_config *cfg_v, unsigned n_layer,
                                       unsigned n_head_kv, unsigned head_dim,
                                       unsigned max_tokens, gear_cache **out);
/** The same with a fitted calibration (copied into the cache): configs with
 *  cq_dim use its codebooks (cq_dim and bits must match it), and with head
 *  compression the cache stores the projected K/V; the configs then apply
 *  to blocks of hc_dim channels.  Shapes passed to every other cache call
 *  stay [n_head_kv, T, head_dim].  The projected K/V must stay in the fp16
 *  range, as every cached value does (else GEAR_ERR_RANGE).  cal NULL =
 *  gear_cache_create. */
GEAR_API gear_status gear_cache_create_calibrated(gear_context *ctx, const gear_config *cfg_k,
                                                  const gear_config *cfg_v, const gear_calib *cal,
                                                  unsigned n_layer, unsigned n_head_kv,
                                                  unsigned head_dim, unsigned max_tokens,
                                                  gear_cache **out);
GEAR_API void gear_cache_free(gear_cache *c);

/** Append T new tokens to a layer: k and v are [n_head_kv, T, head_dim]
 *  (or [T, head_dim] when n_head_kv == 1).  Every full block is compressed.
 *  On any error the cache is left exactly as it was.  With the cpu
 *  backend, whole blocks of host tensors whose channels are contiguous (any
 *  dtype, any head and token strides, e.g. a token-major [T, n_head_kv,
 *  head_dim] buffer) are read where they lie by its threads; other views
 *  are copied by the library first, which is slower. */
GEAR_API gear_status gear_cache_append(gear_cache *c, unsigned layer,
                                       const gear_tensor *k, const gear_tensor *v);

/** Decode attention over everything cached in a layer.  q is [n_head_q,
 *  nq, head_dim] with n_head_q a multiple of n_head_kv (grouped-query:
 *  query head h reads KV head h / (n_head_q/n_head_kv)).  The nq queries
 *  are the newest nq tokens of the layer: query i attends causally to
 *  positions 0 .. T-nq+i.  out (f32/f16/bf16) has q's shape.  scale
 *  multiplies q.k (typically 1/sqrt(head_dim)).  Non-finite q or scale:
 *  GEAR_ERR_NONFINITE.  Finite q so large that the scores overflow fp32:
 *  GEAR_ERR_RANGE with out untouched, on every backend alike: queries
 *  large enough that an fp32 kernel could overflow (max(1, |scale|) *
 *  sum |q| * 2^18 > 2^120, some 30 orders of magnitude above real ones)
 *  take the core's double-precision path, which is ref's. */
GEAR_API gear_status gear_cache_attention(gear_cache *c, unsigned layer,
                                          const gear_tensor *q, float scale,
                                          gear_tensor *out);

/** Write the reconstruction of a layer's K and V (each [n_head_kv, T,
 *  head_dim], any dtype) where T = gear_cache_tokens().  k or v may be NULL. */
GEAR_API gear_status gear_cache_decompress(gear_cache *c, unsigned layer,
                                           gear_tensor *k, gear_tensor *v);

/** Tokens cached in a layer. */
GEAR_API gear_status gear_cache_tokens(const gear_cache *c, unsigned layer, unsigned *n);

typedef struct gear_cache_stats {
    uint64_t tokens;            /* summed over layers */
    uint64_t blocks;            /* compressed blocks, K and V, all heads */
    uint64_t compressed_bytes;  /* bytes of compressed blocks */
    uint64_t compressed_entries;/* K and V entries the compressed blocks represent (of
                                 * the [n_head_kv, T, head_dim] K/V, so head
                                 * compression's saving shows in bpe) */
    uint64_t buffer_bytes;      /* full-precision buffer bytes in use (fp32) */
    uint64_t buffer_entries;    /* entries in the buffers */
    uint64_t fp16_bytes;        /* what an fp16 cache of the same tokens takes */
    double bpe;                 /* 8*compressed_bytes/compressed_entries (0 if none) */
    uint64_t calib_bytes;       /* codebooks and projections held in memory (fp32; fixed,
                                 * not per token); their file is about half for codebooks */
} gear_cache_stats;

GEAR_API gear_status gear_cache_stats_get(const gear_cache *c, gear_cache_stats *s);

/** Save a cache to a file (written to a temporary name, flushed, then
 *  renamed) / load one.  Load validates everything it reads. */
GEAR_API gear_status gear_cache_save(const gear_cache *c, const char *path);
GEAR_API gear_status gear_cache_load(gear_context *ctx, const char *path, gear_cache **out);
/** The same to and from memory: *size gets the bytes needed when dst is
 *  NULL or too small (then GEAR_ERR_DST_TOO_SMALL). */
GEAR_API gear_status gear_cache_save_mem(const gear_cache *c, void *dst, size_t cap,
                                         size_t *size);
GEAR_API gear_status gear_cache_load_mem(gear_context *ctx, const void *src, size_t len,
                                         gear_cache **out);

#ifdef __cplusplus
}
#endif
#endif /* GEAR_H */
