#!/bin/sh
# check_other_cpus.sh - tests/check_xbackend on other x86-64 CPUs, emulated
# by qemu-user, so that the cpu module's paths this machine never takes on
# its own (the GCC clones are chosen by CPUID, not by GEAR_CPU_NO_*) run
# the cross-backend suite too:
#   Haswell  AVX2, FMA, F16C, no AVX-512: the AVX2 kernels and the
#            x86-64-v3 clones (module score 20)
#   qemu64   SSE2 only: the baseline clones (score 10), the claim that the
#            module runs on any x86-64
# and tests/check_badinput on both, since those paths check their input
# themselves (fp16 rows to fp32: NaN and Inf).
# Run from the build tree after `make check` (CI does; emulation is too
# slow for make check).  Exit 77 without qemu.
#
# Under TCG each pass is some twenty times slower than native, and on a
# 2-core Zen 3 VM the two CPUs at three thread counts took over an hour.
# So, unless the caller says otherwise:
#   - check_xbackend runs at one thread count, GEAR_XB_THREADS=2 (the
#     native make check covers 1, 2 and 3; splitting work among threads
#     is the same code on every CPU, the clones are not);
#   - a CPU whose path the native make check already took (its log,
#     tests/check_xbackend.log, shows the cpu module at that score: an
#     AVX2 host without AVX-512 takes the Haswell path) is not emulated
#     again.  GEAR_EMULATE_ALL=1 emulates both anyway.
set -e
: "${top_builddir:=.}"
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
    echo "SKIP: qemu-x86_64 not found (Debian: qemu-user)"
    exit 77
fi
libs=$(cd "$top_builddir/.libs" && pwd)

# The program itself: a libtool wrapper puts it in tests/.libs.
prog() {
    if [ -x "$top_builddir/tests/.libs/$1" ]; then
        echo "$top_builddir/tests/.libs/$1"
    elif [ -x "$top_builddir/tests/$1" ]; then
        echo "$top_builddir/tests/$1"
    fi
}

# emulate CPU PROGRAM LOG: run it under that CPU with this build's library
# and modules, output (less TCG's warnings) shown and kept in LOG; fails
# when the program does.
emulate() {
    echo "== qemu-x86_64 -cpu $1: $(basename "$2")"
    rc=0
    GEAR_XB_THREADS="${GEAR_XB_THREADS:-2}" \
        LD_LIBRARY_PATH="$libs" GEAR_BACKEND_PATH="$libs/gear" qemu-x86_64 -cpu "$1" "$2" >"$3.raw" 2>&1 || rc=$?
    grep -v "TCG doesn't support" "$3.raw" >"$3" || true
    rm -f "$3.raw"
    cat "$3"
    return $rc
}

xb=$(prog check_xbackend)
bad=$(prog check_badinput)
if [ -z "$xb" ]; then
    echo "SKIP: check_xbackend was not built"
    exit 77
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
native_log="$top_builddir/tests/check_xbackend.log"
for spec in Haswell:20 qemu64:10; do
    cpu=${spec%%:*} score=${spec##*:}
    if [ "${GEAR_EMULATE_ALL:-0}" != 1 ] && [ -f "$native_log" ] &&
        grep -q "CHECK cpu (.*score $score)" "$native_log"; then
        echo "== -cpu $cpu not emulated: the native run ($native_log) took that path (cpu module at score $score)"
        continue
    fi
    if ! emulate "$cpu" "$xb" "$log"; then
        echo "FAIL: check_xbackend under -cpu $cpu" >&2
        exit 1
    fi
    # the emulated CPU must really have reached the module (its score)
    if ! grep -q "CHECK cpu (.*score $score)" "$log"; then
        echo "FAIL: under -cpu $cpu the cpu module did not report score $score" >&2
        exit 1
    fi
    if [ -n "$bad" ] && ! emulate "$cpu" "$bad" "$log"; then
        echo "FAIL: check_badinput under -cpu $cpu" >&2
        exit 1
    fi
done
