/* vendors/hip.h - the gpu kernel source's vendor names mapped to HIP
 * (ROCm).  Only names: see vendors/cuda.h. */
#ifndef GEAR_GPU_VENDOR_HIP_H
#define GEAR_GPU_VENDOR_HIP_H

#include <hip/hip_runtime.h>

#define GPU_NAME "hip"
#define GPU_RUNTIME "HIP"

typedef hipError_t gpuError_t;
typedef hipEvent_t gpuEvent_t;
typedef hipStream_t gpuStream_t;
typedef hipMemcpyKind gpuMemcpyKind;
#define gpuSuccess hipSuccess
#define gpuGetErrorString hipGetErrorString
#define gpuGetLastError hipGetLastError
#define gpuGetDeviceCount hipGetDeviceCount
#define gpuSetDevice hipSetDevice
#define gpuDeviceGetAttribute hipDeviceGetAttribute
#define gpuDevAttrWarpSize hipDeviceAttributeWarpSize
#define gpuDevAttrMultiProcessorCount hipDeviceAttributeMultiprocessorCount
#define gpuDevAttrMaxSharedMemoryPerBlock hipDeviceAttributeMaxSharedMemoryPerBlock
/* AMD has no opt-in: the whole LDS (64 KiB) is available to a workgroup */
#define gpuDevAttrMaxSharedMemoryOptin hipDeviceAttributeMaxSharedMemoryPerBlock
#define gpuFuncSetMaxDynamicSmem(fn, bytes) ((void)(fn), (void)(bytes), hipSuccess)
#define gpuFuncAttributes hipFuncAttributes
#define gpuFuncGetAttributes(attr, fn) hipFuncGetAttributes((attr), (const void *)(fn))
#define gpuMalloc hipMalloc
#define gpuMemGetInfo hipMemGetInfo
#define gpuFree hipFree
#define gpuMemcpy hipMemcpy
#define gpuMemcpyAsync hipMemcpyAsync
#define gpuMemset hipMemset
#define gpuMemsetAsync hipMemsetAsync
#define gpuMemcpyHostToDevice hipMemcpyHostToDevice
#define gpuMemcpyDeviceToHost hipMemcpyDeviceToHost
#define gpuMemcpyDeviceToDevice hipMemcpyDeviceToDevice
#define gpuMemcpyHostToHost hipMemcpyHostToHost
#define gpuDeviceSynchronize hipDeviceSynchronize
#define gpuStreamSynchronize hipStreamSynchronize
#define gpuEventCreate hipEventCreate
#define gpuEventDestroy hipEventDestroy
#define gpuEventRecord hipEventRecord
#define gpuEventSynchronize hipEventSynchronize
#define gpuEventElapsedTime hipEventElapsedTime
#define gpuGetDeviceName(buf, len, dev) gpu_hip_device_name((buf), (len), (dev))

static inline gpuError_t gpu_hip_device_name(char *buf, size_t len, int dev)
{
    hipDeviceProp_t p;
    gpuError_t e = hipGetDeviceProperties(&p, dev);
    if (e == hipSuccess && len) {
        size_t i = 0;
        for (; i + 1 < len && p.name[i]; i++) buf[i] = p.name[i];
        buf[i] = 0;
    }
    return e;
}

/* A shuffle inside a team of `width` lanes; AMD wavefronts are 64 wide on
 * CDNA and 32 on RDNA, so the width always comes from the caller. */
#define GPU_SHFL_XOR(v, mask, width) __shfl_xor((v), (mask), (width))

/* Kernel launch and the workgroup's dynamic shared memory. */
#define GPU_LAUNCH(kernel, grid, block, smem, ...) kernel<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#define GPU_DYNAMIC_SHARED(type, name) extern __shared__ type name[]

#endif
