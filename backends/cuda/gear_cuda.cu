/* gear_cuda.cu - the cuda backend module: the gpu kernel source built with
 * the CUDA names (no hipify step, no second copy of any kernel). */
#include "vendors/cuda.h"
#include "gpu_backend.cuh"
