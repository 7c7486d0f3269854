/* gear_gpuemu.cc - the gpu kernel source built for a host emulation of a
 * GPU (vendors/emu.h): a test-only module (`make check'), so that the
 * kernels of the cuda and hip modules run and are compared with ref on
 * machines without a GPU. */
#include "vendors/emu.h"
#include "gpu_backend.cuh"
