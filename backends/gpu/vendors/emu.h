/* vendors/emu.h - the gpu kernel source's vendor names mapped to a host
 * emulation, for tests only: each workgroup runs as GPU_THREADS host
 * threads with real barriers, and shuffles exchange values inside a team of
 * the emulated warp width (GEAR_GPU_EMU_WARP, default 64 as on AMD CDNA;
 * 32 as on NVIDIA).  It lets `make check' run the very kernels of the cuda
 * and hip modules, arithmetic included, on a machine without a GPU; it says
 * nothing about speed, memory models or compilers of real devices. */
#ifndef GEAR_GPU_VENDOR_EMU_H
#define GEAR_GPU_VENDOR_EMU_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <vector>

#define GPU_NAME "gpuemu"
#define GPU_RUNTIME "emulated GPU"
/* available only when asked for (GEAR_GPU_EMU=1), and never preferred */
#define GPU_EMU 1
/* as in gpu_common.cuh (an identical redefinition): the pool's size */
#define GPU_THREADS 256

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(n)

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

/* The emulated multiprocessor: GPU_THREADS host threads created once, that
 * run every workgroup of a launch in turn.  A launch is one job; its
 * workgroups are separated by a barrier (shared memory is per workgroup). */
struct gpu_emu_sm {
    pthread_mutex_t launch;   /* one launch at a time */
    pthread_barrier_t start, done, all;
    std::vector<pthread_barrier_t> teams;
    std::vector<float> xchg;
    std::vector<double> smem;
    unsigned warp;
    void (*run)(void *job, unsigned lane);
    void *job;
};

static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
static thread_local float *gpu_emu_smem;

static unsigned gpu_emu_warp(void)
{
    const char *e = getenv("GEAR_GPU_EMU_WARP");
    return e && atoi(e) == 32 ? 32u : 64u;
}

static gpu_emu_sm *gpu_emu_get(void);

static inline void __syncthreads(void) { pthread_barrier_wait(&gpu_emu_get()->all); }

static inline unsigned atomicOr(uint32_t *p, uint32_t v)
{
    return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}

/* Exchange inside the caller's team; every lane of the team calls. */
static inline float gpu_emu_shfl_xor(float v, int mask, int width)
{
    gpu_emu_sm *g = gpu_emu_get();
    unsigned tid = threadIdx.x, team = tid / g->warp;
    if ((unsigned)width != g->warp) abort(); /* the kernels shuffle whole warps */
    g->xchg[tid] = v;
    pthread_barrier_wait(&g->teams[team]);
    float r = g->xchg[tid ^ (unsigned)mask];
    pthread_barrier_wait(&g->teams[team]);
    return r;
}
#define GPU_SHFL_XOR(v, mask, width) gpu_emu_shfl_xor((v), (mask), (width))

/* the kernels' one dynamic shared array is gpu_smem: the workgroup's buffer */
#define GPU_DYNAMIC_SHARED(type, name) \
    static inline type *name##_emu_base(void) { return (type *)gpu_emu_smem; }
#define gpu_smem gpu_smem_emu_base()

static void *gpu_emu_worker(void *arg)
{
    gpu_emu_sm *g = (gpu_emu_sm *)arg;
    static unsigned next;
    unsigned lane = __atomic_fetch_add(&next, 1u, __ATOMIC_RELAXED);
    for (;;) {
        pthread_barrier_wait(&g->start);
        g->run(g->job, lane);
        pthread_barrier_wait(&g->done);
    }
    return NULL;
}

static gpu_emu_sm *gpu_emu_get(void)
{
    static gpu_emu_sm *sm;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, [] {
        gpu_emu_sm *g = new gpu_emu_sm;
        const unsigned n = GPU_THREADS;
        g->warp = gpu_emu_warp();
        pthread_mutex_init(&g->launch, NULL);
        pthread_barrier_init(&g->start, NULL, n + 1);
        pthread_barrier_init(&g->done, NULL, n + 1);
        pthread_barrier_init(&g->all, NULL, n);
        g->teams.resize(n / g->warp);
        for (auto &b : g->teams) pthread_barrier_init(&b, NULL, g->warp);
        g->xchg.assign(n, 0.0f);
        sm = g;
        for (unsigned i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, gpu_emu_worker, g)) abort();
            pthread_detach(t);
        }
    });
    return sm;
}

template <typename F>
static void gpu_emu_call(void *job, unsigned lane) { (*(F *)job)(lane); }

template <typename K, typename... A>
static void gpu_emu_launch(K kernel, dim3 grid, dim3 block, size_t smem, A... args)
{
    gpu_emu_sm *g = gpu_emu_get();
    if (block.x != GPU_THREADS || block.y != 1 || block.z != 1) abort();
    pthread_mutex_lock(&g->launch);
    g->smem.assign(smem / sizeof(double) + 1, 0.0);
    auto body = [&](unsigned lane) {
        threadIdx = dim3(lane), blockDim = block, gridDim = grid;
        gpu_emu_smem = (float *)g->smem.data();
        for (unsigned z = 0; z < grid.z; z++)
            for (unsigned y = 0; y < grid.y; y++)
                for (unsigned x = 0; x < grid.x; x++) {
                    blockIdx = dim3(x, y, z);
                    kernel(args...);
                    pthread_barrier_wait(&g->all); /* the workgroup ends */
                }
    };
    g->run = gpu_emu_call<decltype(body)>;
    g->job = &body;
    pthread_barrier_wait(&g->start);
    pthread_barrier_wait(&g->done);
    pthread_mutex_unlock(&g->launch);
}
#define GPU_LAUNCH(kernel, grid, block, smem, ...) \
    gpu_emu_launch(kernel, dim3(grid), dim3(block), (smem), __VA_ARGS__)

/* ---- runtime: host memory stands in for device memory */
typedef int gpuError_t;
typedef int gpuMemcpyKind;
typedef struct { int unused; } gpuFuncAttributes;
#define gpuSuccess 0
#define gpuMemcpyHostToDevice 1
#define gpuMemcpyDeviceToHost 2
#define gpuMemcpyDeviceToDevice 3
#define gpuMemcpyHostToHost 0
enum { gpuDevAttrWarpSize, gpuDevAttrMultiProcessorCount, gpuDevAttrMaxSharedMemoryPerBlock,
       gpuDevAttrMaxSharedMemoryOptin };
#define gpuFuncSetMaxDynamicSmem(fn, bytes) ((void)(fn), (void)(bytes), 0)

static inline const char *gpuGetErrorString(gpuError_t e) { return e ? "emulation failure" : "no error"; }
static inline gpuError_t gpuGetLastError(void) { return 0; }
static inline gpuError_t gpuGetDeviceCount(int *n) { *n = 1; return 0; }
static inline gpuError_t gpuSetDevice(int d) { return d ? 1 : 0; }
static inline gpuError_t gpuDeviceGetAttribute(int *v, int attr, int dev)
{
    (void)dev;
    *v = attr == gpuDevAttrWarpSize ? (int)gpu_emu_warp()
       : attr == gpuDevAttrMultiProcessorCount ? 2
       : attr == gpuDevAttrMaxSharedMemoryOptin ? 96 * 1024 : 48 * 1024;
    return 0;
}
#define gpuFuncGetAttributes(attr, fn) ((void)(attr), (void)(fn), 0)
static inline gpuError_t gpuMalloc(void **p, size_t n)
{
    return posix_memalign(p, 256, n ? n : 16) ? 2 : 0;
}
static inline gpuError_t gpuFree(void *p) { free(p); return 0; }
static inline gpuError_t gpuMemcpy(void *d, const void *s, size_t n, int kind)
{
    (void)kind;
    memmove(d, s, n);
    return 0;
}
static inline gpuError_t gpuMemset(void *d, int v, size_t n) { memset(d, v, n); return 0; }
static inline gpuError_t gpuDeviceSynchronize(void) { return 0; }

/* for the bench's own smoke test (bench/gpu_bench.cu built on the host) */
typedef double *gpuEvent_t;
static inline gpuError_t gpuEventCreate(gpuEvent_t *e) { *e = new double(0); return 0; }
static inline gpuError_t gpuEventDestroy(gpuEvent_t e) { delete e; return 0; }
static inline gpuError_t gpuEventRecord(gpuEvent_t e, int stream)
{
    struct timespec ts;
    (void)stream;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *e = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
    return 0;
}
static inline gpuError_t gpuEventSynchronize(gpuEvent_t e) { (void)e; return 0; }
static inline gpuError_t gpuEventElapsedTime(float *ms, gpuEvent_t a, gpuEvent_t b)
{
    *ms = (float)(*b - *a);
    return 0;
}
static inline gpuError_t gpuMemGetInfo(size_t *fr, size_t *tot)
{
    *fr = *tot = (size_t)4 << 30;
    return 0;
}
static inline gpuError_t gpuGetDeviceName(char *buf, size_t len, int dev)
{
    (void)dev;
    snprintf(buf, len, "host emulation");
    return 0;
}

#endif
