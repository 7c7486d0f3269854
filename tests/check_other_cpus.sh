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
# Run from the build tree after `make check` (CI does; it takes about 4 +
# 8 minutes under TCG, too long for make check).  Exit 77 without qemu.
set -e
: "${top_builddir:=.}"
bin="$top_builddir/tests/.libs/check_xbackend"
if ! command -v qemu-x86_64 >/dev/null 2>&1; then
    echo "SKIP: qemu-x86_64 not found (Debian: qemu-user)"
    exit 77
fi
if [ ! -x "$bin" ]; then
    echo "SKIP: $bin was not built"
    exit 77
fi
libs=$(cd "$top_builddir/.libs" && pwd)
for spec in Haswell:20 qemu64:10; do
    cpu=${spec%%:*} score=${spec##*:}
    log=$(mktemp)
    echo "== qemu-x86_64 -cpu $cpu"
    if ! LD_LIBRARY_PATH="$libs" GEAR_BACKEND_PATH="$libs/gear" qemu-x86_64 -cpu "$cpu" "$bin" >"$log" 2>&1; then
        grep -v "TCG doesn't support" "$log" || true
        rm -f "$log"
        echo "FAIL: check_xbackend under -cpu $cpu" >&2
        exit 1
    fi
    grep -v "TCG doesn't support" "$log" || true
    # the emulated CPU must really have reached the module (its score)
    if ! grep -q "CHECK cpu (.*score $score)" "$log"; then
        rm -f "$log"
        echo "FAIL: under -cpu $cpu the cpu module did not report score $score" >&2
        exit 1
    fi
    rm -f "$log"
    # a libtool wrapper puts the real program in .libs; else it is linked as is
    bad="$top_builddir/tests/.libs/check_badinput"
    [ -x "$bad" ] || bad="$top_builddir/tests/check_badinput"
    if [ -x "$bad" ]; then
        log=$(mktemp)
        echo "== qemu-x86_64 -cpu $cpu: check_badinput"
        rc=0
        LD_LIBRARY_PATH="$libs" GEAR_BACKEND_PATH="$libs/gear" qemu-x86_64 -cpu "$cpu" "$bad" >"$log" 2>&1 || rc=$?
        grep -v "TCG doesn't support" "$log" || true
        rm -f "$log"
        if [ "$rc" != 0 ]; then
            echo "FAIL: check_badinput under -cpu $cpu" >&2
            exit 1
        fi
    fi
done
