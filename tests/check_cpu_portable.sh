#!/bin/sh
# check_cpu_portable.sh - tests/check_xbackend with the cpu module's faster
# paths turned off one level at a time, so that on a machine that has them
# the paths other CPUs take are compared with ref too:
#   GEAR_CPU_NO_VNNI=1    the fp32 AVX-512 attention kernel (no VBMI/VNNI)
#   GEAR_CPU_NO_AVX512=1  the AVX2 kernels (cpu_avx2.c) where the CPU has
#                         AVX2, FMA and F16C, else the portable paths
#   ... and GEAR_CPU_NO_AVX2=1  the portable (GEAR_CLONES) paths
# and tests/check_badinput under the last two, since those paths have their
# own checks of the input (fp16 rows to fp32, NaN and Inf).
set -e
: "${top_builddir:=.}"
if [ ! -x "$top_builddir/tests/check_xbackend" ]; then
    echo "SKIP: tests/check_xbackend was not built"
    exit 77
fi
echo "== GEAR_CPU_NO_VNNI=1"
GEAR_CPU_NO_VNNI=1 "$top_builddir/tests/check_xbackend"
echo "== GEAR_CPU_NO_AVX512=1"
GEAR_CPU_NO_AVX512=1 "$top_builddir/tests/check_xbackend"
echo "== GEAR_CPU_NO_AVX512=1 GEAR_CPU_NO_AVX2=1"
GEAR_CPU_NO_AVX512=1 GEAR_CPU_NO_AVX2=1 "$top_builddir/tests/check_xbackend"
if [ -x "$top_builddir/tests/check_badinput" ]; then
    echo "== check_badinput, GEAR_CPU_NO_AVX512=1"
    GEAR_CPU_NO_AVX512=1 "$top_builddir/tests/check_badinput"
    echo "== check_badinput, GEAR_CPU_NO_AVX512=1 GEAR_CPU_NO_AVX2=1"
    GEAR_CPU_NO_AVX512=1 GEAR_CPU_NO_AVX2=1 "$top_builddir/tests/check_badinput"
fi
