#!/bin/sh
# tests/fuzz/tsan.sh - ThreadSanitizer run of tests/check_threads.c (and
# tests/check_badinput.c) without configure: the core and the ref backend
# are compiled from lib/ with clang -fsanitize=thread straight into the
# test programs, so every access libgear makes is instrumented.
#
#   tests/fuzz/tsan.sh [OUTDIR]          (default ./tsan-out)
#
# Needs clang with the TSan runtime and Check (pkg-config check).  The
# backend modules (cpu: OpenMP) are not part of this build: libgomp is not
# instrumented, and TSan would report its synchronization as races.
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-tsan-out}
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)
CC=${CC:-clang}
san="-fsanitize=thread"
cflags="-g -O1 -std=gnu11 -DGEAR_NO_CLONES -DGEAR_MODULE_DIR=\"\" -I$top/include -I$top/lib $(pkg-config --cflags check)"
objs=
for src in "$top"/lib/*.c "$top"/lib/ref/*.c "$top"/tests/testutil.c "$top"/tools/gear/synth.c; do
    o=$out/obj/$(basename "$src" .c).o
    $CC $cflags $san -c "$src" -o "$o"
    objs="$objs $o"
done
status=0
for t in check_threads check_badinput; do
    $CC $cflags $san "$top/tests/$t.c" $objs $(pkg-config --libs check) -ldl -lpthread -lm -o "$out/$t"
    # no GEAR_BACKEND_PATH: ref only.  halt_on_error: a report fails the test.
    if GEAR_BACKEND_PATH= TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
        CK_FORK=no "$out/$t" >"$out/$t.log" 2>&1; then
        echo "tsan: $t passed, no reports ($(grep -c '' "$out/$t.log") log lines)"
    else
        echo "tsan: $t FAILED"
        tail -n 80 "$out/$t.log"
        status=1
    fi
done
exit $status
