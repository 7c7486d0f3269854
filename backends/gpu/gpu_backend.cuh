/* gpu_backend.cuh - the backend table of a gpu module (cuda or hip, by the
 * vendor header included first): device memory, every primitive, the
 * fused compress (a batch of blocks in one launch) and the fused decode
 * attention.  Built once per vendor by backends/cuda and backends/hip. */
#ifndef GEAR_GPU_BACKEND_CUH
#define GEAR_GPU_BACKEND_CUH

#include "gpu_compress.cuh"
#include "gpu_attention.cuh"
#include "gpu_host.cuh"

/* ------------------------------------------------------- availability */

static char gpu_why[512];

static int gpu_score(const char **why)
{
#ifdef GPU_EMU
    if (!getenv("GEAR_GPU_EMU")) {
        if (why) *why = "host emulation of the GPU kernels for tests: set GEAR_GPU_EMU=1";
        return 0;
    }
    if (why) *why = "";
    return 2;
#endif
    int n = 0;
    gpuError_t e = gpuGetDeviceCount(&n);
    if (e != gpuSuccess) {
        snprintf(gpu_why, sizeof gpu_why, "no usable " GPU_RUNTIME " driver or device: %s",
                 gpuGetErrorString(e));
        (void)gpuGetLastError();
        n = 0;
    } else if (n == 0) {
        snprintf(gpu_why, sizeof gpu_why, "the " GPU_RUNTIME " runtime sees no device");
    }
    if (why) *why = n ? "" : gpu_why;
    return n ? 50 : 0; /* above cpu (<= 30) when a device is here */
}

static gear_status gpu_init_device(gpu_state *s, int dev)
{
    int count = 0, v = 0;
    GPU_TRY(s, gpuGetDeviceCount(&count), "counting devices");
    if (dev < 0 || dev >= count)
        return gpu_errf(s, GEAR_ERR_INVALID_ARG, "device %d requested, %d present", dev, count);
    s->device = dev;
    GPU_TRY(s, gpuSetDevice(dev), "selecting the device");
    GPU_TRY(s, gpuDeviceGetAttribute(&s->warp, gpuDevAttrWarpSize, dev), "warp size");
    GPU_TRY(s, gpuDeviceGetAttribute(&s->n_sm, gpuDevAttrMultiProcessorCount, dev), "SM count");
    GPU_TRY(s, gpuDeviceGetAttribute(&v, gpuDevAttrMaxSharedMemoryPerBlock, dev), "shared memory");
    s->smem_max = (size_t)v;
    GPU_TRY(s, gpuDeviceGetAttribute(&v, gpuDevAttrMaxSharedMemoryOptin, dev), "shared memory");
    s->smem_optin = (size_t)v > s->smem_max ? (size_t)v : s->smem_max;
    if (s->warp < 1 || s->warp > 64 || (s->warp & (s->warp - 1)) || GPU_THREADS % s->warp)
        return gpu_errf(s, GEAR_ERR_UNSUPPORTED, "warp size %d is not a power of two <= 64",
                        s->warp);
    /* fails when this module holds no code for the device's architecture */
    gpuFuncAttributes fa;
    GPU_TRY(s, gpuFuncGetAttributes(&fa, gpu_k_compress),
            "no kernel image for this device (rebuild with its architecture in --with-"
            GPU_NAME "-arch)");
    return GEAR_OK;
}

static gear_status gpu_init(const gear_backend_params *p, void **state)
{
    gpu_state *s = (gpu_state *)calloc(1, sizeof *s);
    if (!s) return GEAR_ERR_NO_MEMORY;
    gear_status st = gpu_init_device(s, p ? p->device : 0);
    if (st) {
        /* the core reads no state after a failed init: keep the reason */
        snprintf(gpu_why, sizeof gpu_why, "%s", s->err);
        free(s);
        return st;
    }
    pthread_mutex_init(&s->lock, NULL);
    *state = s;
    return GEAR_OK;
}

static void gpu_shutdown(void *state)
{
    gpu_state *s = (gpu_state *)state;
    if (!s) return;
    (void)gpuSetDevice(s->device);
    if (s->scratch) (void)gpuFree(s->scratch);
    for (unsigned i = 0; i < s->n_keep; i++) (void)gpuFree(s->keep[i].p);
    free(s->host);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static const char *gpu_last_error(void *state)
{
    return state ? ((gpu_state *)state)->err : gpu_why;
}

/* Every slot: the context's lock, its device on this thread. */
#define GPU_ENTER(s)                                           \
    gpu_state *s = (gpu_state *)state;                         \
    pthread_mutex_lock(&s->lock);                              \
    gpuError_t gpu_dev_e_ = gpuSetDevice(s->device);           \
    gear_status st = gpu_dev_e_ == gpuSuccess ? GEAR_OK        \
                   : gpu_fail(s, gpu_dev_e_, "selecting the device")
#define GPU_LEAVE(s) pthread_mutex_unlock(&s->lock); return st

/* ------------------------------------------------------------ memory */

static gear_status gpu_alloc_impl(gpu_state *s, size_t bytes, void **ptr)
{
    size_t n = bytes ? bytes : 16;
    *ptr = NULL;
    for (unsigned i = 0; n <= GPU_SMALL_MAX && i < s->n_keep; i++)
        if (s->keep[i].n == n) { /* reuse a kept buffer */
            *ptr = s->keep[i].p;
            s->keep[i] = s->keep[--s->n_keep];
            break;
        }
    if (!*ptr) {
        gpuError_t e = gpuMalloc(ptr, n);
        if (e != gpuSuccess) {
            *ptr = NULL;
            (void)gpuGetLastError();
            return gpu_errf(s, GEAR_ERR_NO_MEMORY, "device allocation of %zu bytes: %s", bytes,
                            gpuGetErrorString(e));
        }
    }
    if (n <= GPU_SMALL_MAX && s->n_live < GPU_LIVE) {
        s->live[s->n_live].p = *ptr;
        s->live[s->n_live++].n = n;
    }
    return GEAR_OK;
}

static gear_status gpu_alloc(void *state, size_t bytes, void **ptr)
{
    GPU_ENTER(s);
    if (!st) st = gpu_alloc_impl(s, bytes, ptr);
    else *ptr = NULL;
    GPU_LEAVE(s);
}

static void gpu_mem_free(void *state, void *ptr)
{
    gpu_state *s = (gpu_state *)state;
    if (!ptr) return;
    pthread_mutex_lock(&s->lock);
    for (unsigned i = s->n_live; i-- > 0;)
        if (s->live[i].p == ptr) {
            gpu_buf b = s->live[i];
            s->live[i] = s->live[--s->n_live];
            if (s->n_keep < GPU_KEEP) {
                s->keep[s->n_keep++] = b;
                pthread_mutex_unlock(&s->lock);
                return;
            }
            break;
        }
    if (gpuSetDevice(s->device) != gpuSuccess || gpuFree(ptr) != gpuSuccess)
        (void)gpuGetLastError(); /* nothing to report to: the slot returns void */
    pthread_mutex_unlock(&s->lock);
}

static gear_status gpu_copy_impl(gpu_state *s, void *dst, const void *src, size_t bytes,
                                 gear_copy_dir dir)
{
    if (!bytes) return GEAR_OK;
    if (dir == GEAR_COPY_H2H) {
        memmove(dst, src, bytes);
        return GEAR_OK;
    }
    static const char *what[] = {"copy host to device", "copy device to host",
                                 "copy device to device"};
    gpuMemcpyKind kind = dir == GEAR_COPY_H2D   ? gpuMemcpyHostToDevice
                         : dir == GEAR_COPY_D2H ? gpuMemcpyDeviceToHost
                                                : gpuMemcpyDeviceToDevice;
    GPU_TRY(s, gpuMemcpy(dst, src, bytes, kind), what[dir]);
    return GEAR_OK;
}

static gear_status gpu_copy(void *state, void *dst, const void *src, size_t bytes,
                            gear_copy_dir dir)
{
    GPU_ENTER(s);
    if (!st) st = gpu_copy_impl(s, dst, src, bytes, dir);
    GPU_LEAVE(s);
}

static gear_status gpu_sync(void *state)
{
    GPU_ENTER(s);
    if (!st) {
        gpuError_t e = gpuDeviceSynchronize();
        if (e != gpuSuccess) st = gpu_fail(s, e, "synchronizing");
    }
    GPU_LEAVE(s);
}

/* -------------------------------------------------------- primitives */

static unsigned gpu_grid(size_t items)
{
    size_t g = (items + GPU_THREADS - 1) / GPU_THREADS;
    return (unsigned)(g < 1 ? 1 : g > 65535 ? 65535 : g);
}

static gear_status gpu_need_codebook(gpu_state *s, const gear_block_layout *L)
{
    if (L->cq_dim && !L->codebook)
        return gpu_errf(s, GEAR_ERR_INVALID_ARG, "a Coupled Quantization layout without codebook");
    if (L->cq_dim > 32)
        return gpu_errf(s, GEAR_ERR_UNSUPPORTED, "CQ groups of %u channels (at most 32)", L->cq_dim);
    return GEAR_OK;
}

static gear_status gpu_outlier_impl(gpu_state *s, const gear_block_layout *L, const float *x,
                                    uint8_t *blk)
{
    GPU_LAUNCH(gpu_k_outliers, gpu_grid((size_t)L->rows * L->groups_per_row), GPU_THREADS, 0,
               *L, x, blk);
    GPU_LAUNCHED(s, "outlier kernel");
    return GEAR_OK;
}

static gear_status gpu_outlier_select(void *state, const gear_block_layout *L, const float *x,
                                      uint8_t *blk)
{
    GPU_ENTER(s);
    if (!st && L->n_outliers) st = gpu_outlier_impl(s, L, x, blk);
    GPU_LEAVE(s);
}

static gear_status gpu_quantize_impl(gpu_state *s, const gear_block_layout *L, const float *x,
                                     uint8_t *blk)
{
    gear_status st = gpu_need_codebook(s, L);
    if (st) return st;
    size_t code_bytes = L->cq_dim ? (size_t)L->n * L->cq_row_bytes : (size_t)L->rows * L->row_bytes;
    GPU_TRY(s, gpuMemset(blk + L->off_codes, 0, code_bytes), "clearing codes");
    size_t items = L->cq_dim ? (size_t)L->n * L->cq_groups : (size_t)L->rows * L->groups_per_row;
    GPU_LAUNCH(gpu_k_quantize, gpu_grid(items), GPU_THREADS, 0, *L, x, blk);
    GPU_LAUNCHED(s, "quantize kernel");
    return GEAR_OK;
}

static gear_status gpu_quantize(void *state, const gear_block_layout *L, const float *x,
                                uint8_t *blk)
{
    GPU_ENTER(s);
    if (!st) st = gpu_quantize_impl(s, L, x, blk);
    GPU_LEAVE(s);
}

static gear_status gpu_decode_impl(gpu_state *s, const gear_block_layout *L, const uint8_t *blk,
                                   float *out, int with_lowrank)
{
    gear_status st = gpu_need_codebook(s, L);
    if (st) return st;
    GPU_LAUNCH(gpu_k_reconstruct, gpu_grid((size_t)L->n * L->d), GPU_THREADS, 0, *L, blk, out,
               with_lowrank);
    GPU_LAUNCHED(s, "reconstruct kernel");
    return GEAR_OK;
}

static gear_status gpu_dequantize(void *state, const gear_block_layout *L, const uint8_t *blk,
                                  float *xq)
{
    GPU_ENTER(s);
    if (!st) st = gpu_decode_impl(s, L, blk, xq, 0);
    GPU_LEAVE(s);
}

static gear_status gpu_reconstruct(void *state, const gear_block_layout *L, const uint8_t *blk,
                                   float *out)
{
    GPU_ENTER(s);
    if (!st) st = gpu_decode_impl(s, L, blk, out, L->rank > 0);
    GPU_LEAVE(s);
}

static size_t gpu_scratch_bytes(const gear_block_layout *L)
{
    return ((size_t)L->n * L->d + (size_t)(L->n + L->d) * L->rank) * sizeof(double);
}

static gear_status gpu_lowrank_impl(gpu_state *s, const gear_block_layout *L,
                                    const gear_block_id *id, const float *x, const float *xq,
                                    uint8_t *blk)
{
    void *E;
    gear_status st = gpu_scratch(s, gpu_scratch_bytes(L), &E);
    if (st) return st;
    GPU_LAUNCH(gpu_k_lowrank, 1, GPU_THREADS, 0, *L, *id, x, xq, blk, (double *)E);
    GPU_LAUNCHED(s, "low-rank kernel");
    return GEAR_OK;
}

static gear_status gpu_lowrank_fit(void *state, const gear_block_layout *L,
                                   const gear_block_id *id, const float *x, const float *xq,
                                   uint8_t *blk)
{
    GPU_ENTER(s);
    if (!st && L->rank) st = gpu_lowrank_impl(s, L, id, x, xq, blk);
    GPU_LEAVE(s);
}

/* ------------------------------------------------------ fused slots */

/* Blocks per launch: bounded by the scratch (E, Y, P per block). */
#define GPU_SCRATCH_BUDGET ((size_t)256 << 20)

static gear_status gpu_compress_impl(gpu_state *s, const gear_block_layout *L, unsigned count,
                                     const gear_block_id *ids, const float *const *x,
                                     uint8_t *const *blk)
{
    size_t per = L->rank ? gpu_scratch_bytes(L) : 0;
    size_t chunk = per ? GPU_SCRATCH_BUDGET / per : count;
    chunk = chunk < 1 ? 1 : chunk > count ? count : chunk;
    size_t jobs_bytes = gpu_align(chunk * sizeof(gpu_job));
    void *dev = NULL, *host = NULL;
    gear_status st = gpu_scratch(s, jobs_bytes + chunk * per, &dev);
    if (!st) st = gpu_host_staging(s, chunk * sizeof(gpu_job), &host);
    if (st) return st;
    gpu_job *jobs = (gpu_job *)host;
    for (size_t c0 = 0; c0 < count; c0 += chunk) {
        unsigned m = (unsigned)(count - c0 < chunk ? count - c0 : chunk);
        for (unsigned i = 0; i < m; i++) {
            jobs[i].x = x[c0 + i];
            jobs[i].xq = NULL;
            jobs[i].blk = blk[c0 + i];
            jobs[i].id = ids[c0 + i];
        }
        GPU_TRY(s, gpuMemcpy(dev, jobs, m * sizeof(gpu_job), gpuMemcpyHostToDevice),
                "uploading the block list");
        GPU_LAUNCH(gpu_k_compress, m, GPU_THREADS, 0, *L, (const gpu_job *)dev,
                   (double *)((uint8_t *)dev + jobs_bytes));
        GPU_LAUNCHED(s, "compress kernel");
    }
    return GEAR_OK;
}

static gear_status gpu_compress_blocks(void *state, const gear_block_layout *L, unsigned count,
                                       const gear_block_id *ids, const float *const *x,
                                       uint8_t *const *blk)
{
    GPU_ENTER(s);
    if (!st && L->cq_dim) /* the core composes the primitives, which do CQ */
        st = gpu_errf(s, GEAR_ERR_UNSUPPORTED, "fused compress does not handle Coupled "
                      "Quantization layouts");
    if (!st && count) st = gpu_compress_impl(s, L, count, ids, x, blk);
    GPU_LEAVE(s);
}

/* Block tables that are a cache arena (base + b*sb + h*sh) need no upload. */
static int gpu_affine(const uint8_t *const *tab, unsigned nh, unsigned nb, ptrdiff_t *sb,
                      ptrdiff_t *sh)
{
    *sb = nb > 1 ? tab[1] - tab[0] : 0;
    *sh = nh > 1 ? tab[nb] - tab[0] : 0;
    for (unsigned h = 0; h < nh; h++)
        for (unsigned b = 0; b < nb; b++)
            if (tab[(size_t)h * nb + b] != tab[0] + (ptrdiff_t)b * *sb + (ptrdiff_t)h * *sh)
                return 0;
    return 1;
}

static gear_status gpu_attention_impl(gpu_state *s, const gear_attention_args *a)
{
    const gear_block_layout *lk = a->lk, *lv = a->lv;
    const unsigned H = a->n_head, nb = a->n_blocks, d = lk->d, R = a->n_group * a->n_qtok;
    if (lv->d != d || lv->n != lk->n)
        return gpu_errf(s, GEAR_ERR_UNSUPPORTED, "keys and values of different shapes");
    gear_status st = gpu_need_codebook(s, lk);
    if (!st) st = gpu_need_codebook(s, lv);
    if (st) return st;
    size_t smem = gpu_attn_smem_floats(lk->n, d, R) * sizeof(float);
    if (smem > s->smem_optin)
        return gpu_errf(s, GEAR_ERR_UNSUPPORTED, "attention tile of %zu bytes exceeds the %zu "
                        "bytes of shared memory", smem, s->smem_optin);
    if (smem > s->smem_max && smem > s->smem_set) { /* many query rows: opt in */
        GPU_TRY(s, gpuFuncSetMaxDynamicSmem(gpu_k_attention, smem), "shared memory opt-in");
        s->smem_set = smem;
    }
    gpu_attn_params P;
    memset(&P, 0, sizeof P);
    P.lk = *lk;
    P.lv = *lv;
    P.n_head = H;
    P.n_group = a->n_group;
    P.n_qtok = a->n_qtok;
    P.buf_stride = (size_t)a->n_buf * d;
    P.scale = a->scale;
    P.team = s->warp;
    gpu_attn_plan(&P, 1, nb + (a->n_buf ? 1u : 0u), s->n_sm);
    gpu_attn_seq seq;
    memset(&seq, 0, sizeof seq);
    seq.n_blocks = nb;
    seq.n_buf = a->n_buf;
    int kaff = nb ? gpu_affine(a->kblocks, H, nb, &seq.kstride_b, &seq.kstride_h) : 1;
    int vaff = nb ? gpu_affine(a->vblocks, H, nb, &seq.vstride_b, &seq.vstride_h) : 1;
    /* one upload: [seq | q | kbuf | vbuf | ktab | vtab], then out and partials */
    size_t qf = (size_t)H * R * d, bf = (size_t)H * a->n_buf * d, tb = (size_t)H * nb * sizeof(void *);
    size_t o_q = gpu_align(sizeof seq), o_kb = o_q + gpu_align(qf * 4), o_vb = o_kb + gpu_align(bf * 4);
    size_t o_kt = o_vb + gpu_align(bf * 4), o_vt = o_kt + (kaff ? 0 : gpu_align(tb));
    size_t up = o_vt + (vaff ? 0 : gpu_align(tb));
    size_t o_out = up, o_part = o_out + gpu_align(qf * 4);
    size_t total = o_part + gpu_attn_part_floats(&P, 1) * 4;
    void *dev = NULL, *host = NULL;
    st = gpu_scratch(s, total, &dev);
    if (!st) st = gpu_host_staging(s, up, &host);
    if (st) return st;
    uint8_t *D = (uint8_t *)dev, *Hs = (uint8_t *)host;
    memcpy(Hs + o_q, a->q, qf * 4);
    for (unsigned h = 0; h < H && a->n_buf; h++) {
        memcpy(Hs + o_kb + (size_t)h * a->n_buf * d * 4, a->kbuf + h * a->buf_stride, a->n_buf * d * 4);
        memcpy(Hs + o_vb + (size_t)h * a->n_buf * d * 4, a->vbuf + h * a->buf_stride, a->n_buf * d * 4);
    }
    if (nb && kaff) seq.kbase = a->kblocks[0];
    else if (nb) memcpy(Hs + o_kt, a->kblocks, tb), seq.ktab = (const uint8_t *const *)(D + o_kt);
    if (nb && vaff) seq.vbase = a->vblocks[0];
    else if (nb) memcpy(Hs + o_vt, a->vblocks, tb), seq.vtab = (const uint8_t *const *)(D + o_vt);
    seq.q = (const float *)(D + o_q);
    seq.kbuf = (const float *)(D + o_kb);
    seq.vbuf = (const float *)(D + o_vb);
    seq.out = (float *)(D + o_out);
    P.part = (float *)(D + o_part);
    memcpy(Hs, &seq, sizeof seq);
    GPU_TRY(s, gpuMemcpy(D, Hs, up, gpuMemcpyHostToDevice), "uploading attention inputs");
    GPU_LAUNCH(gpu_k_attention, dim3(P.n_split, H, 1), GPU_THREADS, smem, P,
               (const gpu_attn_seq *)D);
    GPU_LAUNCHED(s, "attention kernel");
    GPU_LAUNCH(gpu_k_attention_merge, dim3(H, 1), GPU_THREADS, 0, P, (const gpu_attn_seq *)D);
    GPU_LAUNCHED(s, "attention merge kernel");
    GPU_TRY(s, gpuMemcpy(a->out, D + o_out, qf * 4, gpuMemcpyDeviceToHost), "attention result");
    return GEAR_OK;
}

static gear_status gpu_attention(void *state, const gear_attention_args *a)
{
    GPU_ENTER(s);
    if (!st) st = gpu_attention_impl(s, a);
    GPU_LEAVE(s);
}

/* ------------------------------------------------------------- table */

static const struct gear_backend_i gpu_backend = {
    GEAR_BACKEND_ABI_VERSION,
    GPU_NAME,
    GPU_NAME ": " GPU_RUNTIME " kernels (fused compress, split-context decode attention)",
    gpu_score,
    gpu_init,
    gpu_shutdown,
    gpu_last_error,
    1, /* on_device */
    gpu_alloc,
    gpu_mem_free,
    gpu_copy,
    gpu_sync,
    gpu_outlier_select,
    gpu_quantize,
    gpu_dequantize,
    gpu_lowrank_fit,
    gpu_reconstruct,
    gpu_compress_blocks,
    gpu_attention,
    NULL, /* compress_blocks_f16: host memory only */
    NULL, /* reconstruct_blocks: one launch per block for now */
    NULL, /* reconstruct_blocks_f16: host memory only */
    NULL, /* compress_blocks_rows: host memory only */
};

extern "C" GEAR_API const struct gear_backend_i *gear_backend_module_init(uint32_t core_abi)
{
    return core_abi == GEAR_BACKEND_ABI_VERSION ? &gpu_backend : NULL;
}

#endif
