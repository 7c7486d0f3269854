#!/bin/sh
# check_cpu_portable.sh - tests/check_xbackend with the cpu module's AVX-512
# kernels turned off (GEAR_CPU_NO_AVX512=1), so that on an AVX-512 machine
# the portable (GEAR_CLONES) paths are compared with ref too.
set -e
: "${top_builddir:=.}"
if [ ! -x "$top_builddir/tests/check_xbackend" ]; then
    echo "SKIP: tests/check_xbackend was not built"
    exit 77
fi
GEAR_CPU_NO_AVX512=1
export GEAR_CPU_NO_AVX512
"$top_builddir/tests/check_xbackend"
