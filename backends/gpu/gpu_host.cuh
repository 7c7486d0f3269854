/* gpu_host.cuh - host side of a gpu module: per-context state, error
 * reporting with the driver's string, device scratch.  Every runtime call
 * goes through GPU_TRY, so no failure passes unchecked. */
#ifndef GEAR_GPU_HOST_CUH
#define GEAR_GPU_HOST_CUH

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The core allocates and frees a small staging buffer per block, and a
 * device free synchronizes the device: small buffers are kept for reuse
 * (exact size), up to GPU_KEEP of them. */
#define GPU_SMALL_MAX ((size_t)1 << 20)
#define GPU_LIVE 4096
#define GPU_KEEP 64
typedef struct gpu_buf { void *p; size_t n; } gpu_buf;

typedef struct gpu_state {
    int device;
    int warp;          /* the device's warp (wavefront) width */
    int n_sm;          /* multiprocessors (compute units) */
    size_t smem_max;   /* shared memory per workgroup without opt-in */
    size_t smem_optin; /* ... and after opting in (CUDA) */
    size_t smem_set;   /* the attention kernel's opt-in so far */
    pthread_mutex_t lock; /* one context may be used from several threads */
    void *scratch;     /* device scratch, grown on demand */
    size_t scratch_cap;
    void *host;        /* host staging, grown on demand */
    size_t host_cap;
    char err[512];
    gpu_buf live[GPU_LIVE]; /* small buffers handed out (untracked when full) */
    unsigned n_live;
    gpu_buf keep[GPU_KEEP];  /* small buffers freed, for reuse */
    unsigned n_keep;
} gpu_state;

static gear_status gpu_errf(gpu_state *s, gear_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return st;
}

static gear_status gpu_fail(gpu_state *s, gpuError_t e, const char *what)
{
    return gpu_errf(s, GEAR_ERR_BACKEND, "%s: %s (" GPU_RUNTIME " error %d)", what,
                    gpuGetErrorString(e), (int)e);
}

#define GPU_TRY(s, call, what)                         \
    do {                                               \
        gpuError_t gpu_e_ = (call);                    \
        if (gpu_e_ != gpuSuccess) return gpu_fail((s), gpu_e_, (what)); \
    } while (0)

/* A kernel launch: configuration errors show at once, faults at the next
 * synchronizing call (every slot that hands data back synchronizes). */
#define GPU_LAUNCHED(s, what) GPU_TRY((s), gpuGetLastError(), (what))

static size_t gpu_align(size_t x) { return (x + 255) & ~(size_t)255; }

static gear_status gpu_scratch(gpu_state *s, size_t bytes, void **p)
{
    if (bytes > s->scratch_cap) {
        if (s->scratch) GPU_TRY(s, gpuFree(s->scratch), "freeing scratch");
        s->scratch = NULL;
        s->scratch_cap = 0;
        size_t cap = gpu_align(bytes + bytes / 4);
        gpuError_t e = gpuMalloc(&s->scratch, cap);
        if (e != gpuSuccess) {
            s->scratch = NULL;
            (void)gpuGetLastError();
            return gpu_errf(s, GEAR_ERR_NO_MEMORY, "device scratch of %zu bytes: %s", cap,
                            gpuGetErrorString(e));
        }
        s->scratch_cap = cap;
    }
    *p = s->scratch;
    return GEAR_OK;
}

static gear_status gpu_host_staging(gpu_state *s, size_t bytes, void **p)
{
    if (bytes > s->host_cap) {
        void *h = realloc(s->host, bytes);
        if (!h) return gpu_errf(s, GEAR_ERR_NO_MEMORY, "host staging of %zu bytes", bytes);
        s->host = h;
        s->host_cap = bytes;
    }
    *p = s->host;
    return GEAR_OK;
}

#endif
