/*
 * cpu_backend.c - the cpu backend module: host memory, OpenMP threads,
 * fused compress and attention; the unfused primitives are the reference
 * ones (they define the semantics and are only used by callers that ask
 * for them piecewise).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "cpu.h"
#include "cpu_simd.h"

int gear_cpu_have_avx512;
#ifdef GEAR_CPU_AVX512
int gear_cpu_have_avx2;
int gear_cpu_have_avx512_compress;
int gear_cpu_have_avx512_bf16;
int gear_cpu_have_avx512_vnni;
#endif

static int cpu_score(const char **why)
{
    if (why) *why = "";
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 30;
    if (__builtin_cpu_supports("avx2")) return 20;
#endif
    return 10; /* portable build of the same loops: still beats ref */
}

static gear_status cpu_init(const gear_backend_params *p, void **state)
{
    cpu_state *s = calloc(1, sizeof *s);
    if (!s) return GEAR_ERR_NO_MEMORY;
    s->n_threads = p && p->n_threads > 0 ? p->n_threads : omp_get_max_threads();
    if (pthread_mutex_init(&s->ws_lock, NULL)) {
        free(s);
        return GEAR_ERR_NO_MEMORY;
    }
    *state = s;
    return GEAR_OK;
}

static void cpu_shutdown(void *state)
{
    cpu_state *s = state;
    if (!s) return;
    gear_cpu_ws_pool_free(s);
    pthread_mutex_destroy(&s->ws_lock);
    free(s);
}

static gear_status cpu_alloc(void *state, size_t bytes, void **ptr)
{
    (void)state;
    /* 64-byte alignment: whole cache lines, and AVX-512 loads */
    if (bytes > SIZE_MAX - 63) {
        *ptr = NULL;
        return GEAR_ERR_NO_MEMORY;
    }
    size_t sz = (bytes + 63) / 64 * 64;
    *ptr = aligned_alloc(64, sz ? sz : 64);
    return *ptr ? GEAR_OK : GEAR_ERR_NO_MEMORY;
}

static void cpu_free(void *state, void *ptr)
{
    (void)state;
    free(ptr);
}

/* Block i to fp32 (the thread's scratch xf) from its fp16 rows; 0 if a
 * value is Inf or NaN.  Cloned so the conversion vectorizes. */
GEAR_CLONES
static int rows_from_halves_generic(const uint16_t *x, size_t ld, unsigned n, unsigned d, float *xf)
{
    return gear_half_rows_to_floats_finite(x, ld, n, d, xf);
}

static int rows_from_halves(const uint16_t *x, size_t ld, unsigned n, unsigned d, float *xf)
{
#ifdef GEAR_CPU_AVX512
    int (*conv)(const uint16_t *, size_t, float *) =
        CPU_AVX512 ? gear_cpu_halves_finite_avx512 : CPU_AVX2 ? gear_cpu_halves_finite_avx2 : NULL;
    if (conv) {
        if (ld == d) return conv(x, (size_t)n * d, xf);
        int ok = 1;
        for (unsigned t = 0; t < n; t++) ok &= conv(x + (size_t)t * ld, d, xf + (size_t)t * d);
        return ok;
    }
#endif
    return rows_from_halves_generic(x, ld, n, d, xf);
}

/* Whether every value of a block of fp32 or bf16 rows (ld values apart)
 * is within fp16's range (NaN fails too), converted into xf unless they
 * are fp32 rows already packed (then read where they are).  Cloned so
 * that both loops vectorize. */
GEAR_CLONES
static int rows_in_range(const void *x, gear_dtype dt, size_t ld, unsigned n, unsigned d, float *xf)
{
    int ok = 1;
    if (dt == GEAR_F32 && ld == d) {
        const float *p = x;
        for (size_t i = 0; i < (size_t)n * d; i++) ok &= fabsf(p[i]) <= 65504.0f;
        return ok;
    }
    for (unsigned t = 0; t < n; t++) {
        float *o = xf + (size_t)t * d;
        if (dt == GEAR_BF16)
            for (unsigned c = 0; c < d; c++) o[c] = gear_bf16_to_float(((const uint16_t *)x)[t * ld + c]);
        else
            for (unsigned c = 0; c < d; c++) o[c] = ((const float *)x)[t * ld + c];
        for (unsigned c = 0; c < d; c++) ok &= fabsf(o[c]) <= 65504.0f;
    }
    return ok;
}

/* Why a block of rows_in_range failed (rare: the core then stages it and
 * reports where). */
static gear_status rows_fault(const void *x, gear_dtype dt, size_t ld, unsigned n, unsigned d)
{
    for (unsigned t = 0; t < n; t++)
        for (unsigned c = 0; c < d; c++) {
            float v = dt == GEAR_BF16 ? gear_bf16_to_float(((const uint16_t *)x)[t * ld + c])
                                      : ((const float *)x)[t * ld + c];
            if (!isfinite(v)) return GEAR_ERR_NONFINITE;
        }
    return GEAR_ERR_RANGE;
}

/* Ask for every cache line of a block's fp16 rows. */
static void prefetch_rows(const uint16_t *x, size_t ld, unsigned n, unsigned d)
{
    for (unsigned t = 0; t < n; t++)
        for (unsigned c = 0; c < d; c += 32) __builtin_prefetch(x + t * ld + c, 0, 3);
}

/* Blocks from fp32 rows (x32), fp16 rows ld apart (x16), or fp32 / bf16
 * rows ld apart to be checked (xr, of type rdt), spread over the threads;
 * each thread converts and checks its own blocks, so conversion and
 * compression overlap across threads and the rows are read once. */
static gear_status compress_many(cpu_state *s, const gear_block_layout *L, unsigned count,
                                 const gear_block_id *ids, const float *const *x32,
                                 const uint16_t *const *x16, const void *const *xr, gear_dtype rdt,
                                 size_t ld, uint8_t *const *blk)
{
    float *cbt = NULL; /* CQ: the head's codebook, centroid-major, shared by the threads */
    if (L->cq_dim) {
        if (!L->codebook) return GEAR_ERR_INVALID_ARG;
        cbt = malloc(sizeof(float) * L->cb_head_floats);
        if (!cbt) return GEAR_ERR_NO_MEMORY;
        gear_cpu_cq_transpose(L, L->codebook, cbt);
    }
    gear_status err = GEAR_OK;
    int threads = count < (unsigned)s->n_threads ? (int)count : s->n_threads;
    if (threads < 1) threads = 1;
    int direct = x16 && gear_cpu_compress_f16_direct(L);
    cpu_ws *ws = gear_cpu_ws_get(s, (unsigned)threads);
    if (!ws) {
        free(cbt);
        return GEAR_ERR_NO_MEMORY;
    }
#pragma omp parallel num_threads(threads)
    {
        int mode = gear_round_nearest(); /* this thread's, as ref in the caller's */
        cpu_thread_ws *tw = &ws->thr[omp_get_thread_num()];
        if (!tw->sc) tw->sc = calloc(1, sizeof(cpu_scratch));
        cpu_scratch *sc = tw->sc;
        if (sc) sc->cbt = cbt;
        /* fp16 blocks go straight to the fused compressor where it fits
         * them, else through an fp32 copy */
        int packed = xr && rdt == GEAR_F32 && ld == L->d; /* fp32 read where it lies */
        int conv = (x16 && !direct) || (xr && !packed); /* blocks converted into xf */
        float *xf = conv ? gear_cpu_buf(&tw->b[0], sizeof(float) * L->n * L->d) : NULL;
#pragma omp for schedule(static)
        for (unsigned i = 0; i < count; i++) {
            gear_status st = GEAR_OK;
            const float *in = x32 ? x32[i] : xf;
            if (!sc || (conv && !xf)) st = GEAR_ERR_NO_MEMORY;
            else if (x16 && !direct && !rows_from_halves(x16[i], ld, L->n, L->d, xf)) st = GEAR_ERR_NONFINITE;
            else if (xr && !rows_in_range(xr[i], rdt, ld, L->n, L->d, xf)) st = rows_fault(xr[i], rdt, ld, L->n, L->d);
            if (packed) in = xr[i]; /* checked where it lies */
            /* the next block's rows arrive while this one computes: spread
             * over the fused compressor's strips (256 prefetches at once
             * stalled on the misses in flight), else all at once */
            if (sc) sc->next = x16 && direct && i + 1 < count ? x16[i + 1] : NULL;
            if (sc) sc->after = x16 && direct && i + 2 < count ? x16[i + 2] : NULL;
            if (x16 && !direct && i + 1 < count) prefetch_rows(x16[i + 1], ld, L->n, L->d);
            if (!st && x16 && direct) st = gear_cpu_compress_one_f16(L, &ids[i], x16[i], ld, blk[i], sc);
            else if (!st) st = gear_cpu_compress_one(L, &ids[i], in, blk[i], sc);
            if (st) {
#pragma omp atomic write
                err = st;
            }
        }
        if (sc) sc->cbt = NULL;
        gear_round_restore(mode);
    }
    gear_cpu_ws_put(s, ws);
    free(cbt);
    return err;
}

static gear_status cpu_compress_blocks(void *state, const gear_block_layout *L, unsigned count,
                                       const gear_block_id *ids, const float *const *x,
                                       uint8_t *const *blk)
{
    return compress_many(state, L, count, ids, x, NULL, NULL, GEAR_F32, 0, blk);
}

static gear_status cpu_compress_blocks_f16(void *state, const gear_block_layout *L,
                                           unsigned count, const gear_block_id *ids,
                                           const uint16_t *const *x, size_t ld,
                                           uint8_t *const *blk)
{
    return compress_many(state, L, count, ids, NULL, x, NULL, GEAR_F16, ld, blk);
}

static gear_status cpu_compress_blocks_rows(void *state, const gear_block_layout *L, unsigned count,
                                            const gear_block_id *ids, const void *const *x, gear_dtype dtype,
                                            size_t ld, uint8_t *const *blk)
{
    if (dtype != GEAR_F32 && dtype != GEAR_BF16) return GEAR_ERR_UNSUPPORTED;
    return compress_many(state, L, count, ids, NULL, NULL, x, dtype, ld, blk);
}

/* Blocks spread over the threads, into fp32 (out) or fp16 rows ld apart
 * (out16): there each thread decodes a block into its own fp32 scratch (in
 * L1/L2) and converts it to the rows at once, instead of the core
 * converting a batch that other cores decoded (with two threads,
 * decompression into fp16 had run slower than with one). */
static gear_status reconstruct_many(cpu_state *s, const gear_block_layout *L, unsigned count,
                                    const uint8_t *const *blk, float *const *out, uint16_t *const *out16,
                                    size_t ld)
{
    gear_status err = GEAR_OK;
    int threads = count < (unsigned)s->n_threads ? (int)count : s->n_threads;
    if (threads < 1) threads = 1;
    cpu_ws *ws = gear_cpu_ws_get(s, (unsigned)threads);
    if (!ws) return GEAR_ERR_NO_MEMORY;
#pragma omp parallel num_threads(threads)
    {
        int mode = gear_round_nearest();
        cpu_thread_ws *tw = &ws->thr[omp_get_thread_num()];
        float *x = out16 ? gear_cpu_buf(&tw->b[1], sizeof(float) * L->n * L->d) : NULL;
#pragma omp for schedule(static)
        for (unsigned i = 0; i < count; i++) {
            float *dst = out16 ? x : out[i];
            gear_status st = dst ? gear_cpu_reconstruct_buf(L, blk[i], dst, &tw->b[0]) : GEAR_ERR_NO_MEMORY;
            if (!st && out16)
                for (unsigned t = 0; t < L->n; t++) gear_cpu_halves_sat(x + (size_t)t * L->d, L->d, out16[i] + t * ld);
            if (st) {
#pragma omp atomic write
                err = st;
            }
        }
        gear_round_restore(mode);
    }
    gear_cpu_ws_put(s, ws);
    return err;
}

static gear_status cpu_reconstruct_blocks(void *state, const gear_block_layout *L, unsigned count,
                                          const uint8_t *const *blk, float *const *out)
{
    return reconstruct_many(state, L, count, blk, out, NULL, 0);
}

static gear_status cpu_reconstruct_blocks_f16(void *state, const gear_block_layout *L, unsigned count,
                                              const uint8_t *const *blk, uint16_t *const *out, size_t ld)
{
    return reconstruct_many(state, L, count, blk, NULL, out, ld);
}

static struct gear_backend_i cpu_backend = {
    .abi_version = GEAR_BACKEND_ABI_VERSION,
    .name = "cpu",
    .description = "cpu: OpenMP threads, AVX-512/AVX2/SSE2 chosen at load time",
    .score = cpu_score,
    .init = cpu_init,
    .shutdown = cpu_shutdown,
    .on_device = 0,
    .mem_alloc = cpu_alloc,
    .mem_free = cpu_free,
    .compress_blocks = cpu_compress_blocks,
    .compress_blocks_f16 = cpu_compress_blocks_f16,
    .compress_blocks_rows = cpu_compress_blocks_rows,
    .reconstruct_blocks = cpu_reconstruct_blocks,
    .reconstruct_blocks_f16 = cpu_reconstruct_blocks_f16,
    .attention = gear_cpu_attention,
};

#if defined(GEAR_CPU_AVX512)
/* F16C from CPUID: clang before 16 has no "f16c" for
 * __builtin_cpu_supports (it fails to compile) */
static int cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}
#endif

GEAR_API const struct gear_backend_i *gear_backend_module_init(uint32_t core_abi)
{
    if (core_abi != GEAR_BACKEND_ABI_VERSION) return NULL;
    const struct gear_backend_i *ref = gear_backend_ref_table();
#if defined(GEAR_CPU_AVX512)
    __builtin_cpu_init();
    gear_cpu_have_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                           __builtin_cpu_supports("avx512vl") && getenv("GEAR_CPU_NO_AVX512") == NULL;
    gear_cpu_have_avx512_compress = gear_cpu_have_avx512 && __builtin_cpu_supports("avx512dq") &&
                                    __builtin_cpu_supports("avx512vbmi2");
    /* opt-in: the low-rank factors then follow ref's only to bf16's
     * precision (docs/DESIGN-NOTES.md) */
    gear_cpu_have_avx512_bf16 = gear_cpu_have_avx512_compress && __builtin_cpu_supports("avx512bf16") &&
                                getenv("GEAR_CPU_BF16") != NULL;
    gear_cpu_have_avx512_vnni = gear_cpu_have_avx512 && __builtin_cpu_supports("avx512vbmi") &&
                                __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512dq") &&
                                getenv("GEAR_CPU_NO_VNNI") == NULL;
    gear_cpu_have_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         cpu_has_f16c() && getenv("GEAR_CPU_NO_AVX2") == NULL;
#endif
    /* which kernels run here, for `gear backends` (gear_backend_description) */
    static char desc[256];
    int comp = 0, bf = 0, vnni = 0;
#if defined(GEAR_CPU_AVX512)
    comp = gear_cpu_have_avx512_compress, bf = gear_cpu_have_avx512_bf16, vnni = gear_cpu_have_avx512_vnni;
#endif
    snprintf(desc, sizeof desc, "cpu: OpenMP; compress %s%s, attention %s, decode %s, fp16 out %s",
             comp ? "AVX-512 fused" : CPU_AVX2_ONLY ? "fused with AVX2 kernels" : "portable fused", bf ? " (bf16 products: GEAR_CPU_BF16)" : "",
             vnni ? "AVX-512 VNNI fixed point" : CPU_AVX512 ? "AVX-512" : CPU_AVX2 ? "AVX2" : "portable",
             CPU_AVX512 ? "AVX-512" : "portable", CPU_AVX2 ? "F16C" : "portable");
    cpu_backend.description = desc;
    /* host memory like ref: its copy, sync and error slots serve as they are */
    cpu_backend.last_error = ref->last_error;
    cpu_backend.mem_copy = ref->mem_copy;
    cpu_backend.sync = ref->sync;
    cpu_backend.outlier_select = ref->outlier_select;
    cpu_backend.quantize = ref->quantize;
    cpu_backend.dequantize = ref->dequantize;
    cpu_backend.lowrank_fit = ref->lowrank_fit;
    cpu_backend.reconstruct = gear_cpu_reconstruct;
    return &cpu_backend;
}
