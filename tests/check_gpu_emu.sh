#!/bin/sh
# check_gpu_emu.sh - tests/check_gpu on "gpuemu": the very kernels of the
# cuda and hip modules, built for a host emulation of a GPU
# (backends/gpu/vendors/emu.h), against ref.  Once with a 64-wide warp (AMD
# CDNA) and once, for attention (where the shuffles are), 32-wide (NVIDIA).
# Says nothing about speed or real devices: tests/check_gpu does that where
# a GPU is present.
set -e
: "${top_builddir:=.}"
if [ ! -f "$top_builddir/.libs/gear-gpuemu.so" ]; then
    echo "SKIP: the gpuemu test module was not built"
    exit 77
fi
GEAR_GPU_EMU=1
GEAR_GPU_TEST_BACKENDS=gpuemu
export GEAR_GPU_EMU GEAR_GPU_TEST_BACKENDS
GEAR_GPU_EMU_WARP=64 "$top_builddir/tests/check_gpu"
GEAR_GPU_EMU_WARP=32 CK_RUN_CASE=attention "$top_builddir/tests/check_gpu"
