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
# A level whose kernels are the ones an earlier run took (the cpu
# module's description in `gear backends' says which run) is not run
# again: on an AVX2 host without AVX-512 the first two levels are the
# native run, which check_xbackend itself makes, and they cost make check
# some five minutes of its 2-core CI machine.
set -e
: "${top_builddir:=.}"
if [ ! -x "$top_builddir/tests/check_xbackend" ]; then
    echo "SKIP: tests/check_xbackend was not built"
    exit 77
fi
# kernels [ENV...]: the cpu module's description under those settings
# (none: the native run's), or the settings themselves where the tool
# cannot say (every level runs)
kernels() {
    k=
    if [ -n "${GEAR_BIN:-}" ] && [ -x "$GEAR_BIN" ]; then
        k=$(env "$@" "$GEAR_BIN" backends 2>/dev/null | sed -n '/^cpu /{n;s/^ *//;p;}')
    fi
    echo "${k:-$*}"
}
seen=$(kernels)
echo "native: $seen"
# level ENV...: check_xbackend (and check_badinput where the input checks
# may differ, i.e. below AVX-512) under ENV, unless those kernels ran
level() {
    k=$(kernels "$@")
    if printf '%s\n' "$seen" | grep -qxF "$k"; then
        echo "== $*: not run again, the kernels of an earlier run ($k)"
        return 0
    fi
    seen=$(printf '%s\n%s' "$seen" "$k")
    echo "== $*: $k"
    env "$@" "$top_builddir/tests/check_xbackend"
    case $* in
    *NO_AVX512*)
        if [ -x "$top_builddir/tests/check_badinput" ]; then
            echo "== check_badinput, $*"
            env "$@" "$top_builddir/tests/check_badinput"
        fi
        ;;
    esac
}
level GEAR_CPU_NO_VNNI=1
level GEAR_CPU_NO_AVX512=1
level GEAR_CPU_NO_AVX512=1 GEAR_CPU_NO_AVX2=1
