/* gear_hip.hip - the hip backend module: the gpu kernel source built with
 * the HIP names (no hipify step, no second copy of any kernel). */
#include "vendors/hip.h"
#include "gpu_backend.cuh"
