/* vendors/cuda.h - the gpu kernel source's vendor names mapped to CUDA.
 * Only names: the kernels and host code in backends/gpu use the gpu*
 * spellings and never a vendor's directly (no hipify step). */
#ifndef GEAR_GPU_VENDOR_CUDA_H
#define GEAR_GPU_VENDOR_CUDA_H

#include <cuda_runtime.h>

#define GPU_NAME "cuda"
#define GPU_RUNTIME "CUDA"

typedef cudaError_t gpuError_t;
typedef cudaEvent_t gpuEvent_t;
typedef cudaStream_t gpuStream_t;
typedef cudaMemcpyKind gpuMemcpyKind;
#define gpuSuccess cudaSuccess
#define gpuGetErrorString cudaGetErrorString
#define gpuGetLastError cudaGetLastError
#define gpuGetDeviceCount cudaGetDeviceCount
#define gpuSetDevice cudaSetDevice
#define gpuDeviceGetAttribute cudaDeviceGetAttribute
#define gpuDevAttrWarpSize cudaDevAttrWarpSize
#define gpuDevAttrMultiProcessorCount cudaDevAttrMultiProcessorCount
#define gpuDevAttrMaxSharedMemoryPerBlock cudaDevAttrMaxSharedMemoryPerBlock
/* shared memory a kernel may use after opting in (above the 48 KiB default) */
#define gpuDevAttrMaxSharedMemoryOptin cudaDevAttrMaxSharedMemoryPerBlockOptin
#define gpuFuncSetMaxDynamicSmem(fn, bytes) \
    cudaFuncSetAttribute((const void *)(fn), cudaFuncAttributeMaxDynamicSharedMemorySize, (int)(bytes))
#define gpuFuncAttributes cudaFuncAttributes
#define gpuFuncGetAttributes(attr, fn) cudaFuncGetAttributes((attr), (const void *)(fn))
#define gpuMalloc cudaMalloc
#define gpuMemGetInfo cudaMemGetInfo
#define gpuFree cudaFree
#define gpuMemcpy cudaMemcpy
#define gpuMemcpyAsync cudaMemcpyAsync
#define gpuMemset cudaMemset
#define gpuMemsetAsync cudaMemsetAsync
#define gpuMemcpyHostToDevice cudaMemcpyHostToDevice
#define gpuMemcpyDeviceToHost cudaMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice cudaMemcpyDeviceToDevice
#define gpuMemcpyHostToHost cudaMemcpyHostToHost
#define gpuDeviceSynchronize cudaDeviceSynchronize
#define gpuStreamSynchronize cudaStreamSynchronize
#define gpuEventCreate cudaEventCreate
#define gpuEventDestroy cudaEventDestroy
#define gpuEventRecord cudaEventRecord
#define gpuEventSynchronize cudaEventSynchronize
#define gpuEventElapsedTime cudaEventElapsedTime
#define gpuGetDeviceName(buf, len, dev) gpu_cuda_device_name((buf), (len), (dev))

static inline gpuError_t gpu_cuda_device_name(char *buf, size_t len, int dev)
{
    struct cudaDeviceProp p;
    gpuError_t e = cudaGetDeviceProperties(&p, dev);
    if (e == cudaSuccess && len) {
        size_t i = 0;
        for (; i + 1 < len && p.name[i]; i++) buf[i] = p.name[i];
        buf[i] = 0;
    }
    return e;
}

/* A shuffle inside a team of `width` lanes (a power of two no larger than
 * the warp).  Callers pass the width explicitly; on CUDA every lane of the
 * 32-wide warp takes part. */
#define GPU_SHFL_XOR(v, mask, width) __shfl_xor_sync(0xffffffffu, (v), (mask), (width))

/* Kernel launch and the workgroup's dynamic shared memory. */
#define GPU_LAUNCH(kernel, grid, block, smem, ...) kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#define GPU_DYNAMIC_SHARED(type, name) extern __shared__ type name[]

#endif
