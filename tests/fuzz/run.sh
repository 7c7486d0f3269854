#!/bin/sh
# tests/fuzz/run.sh - build the libFuzzer targets, write the seed corpora
# and fuzz every target for SECONDS (default 60) each; fails on any crash,
# hang, leak or sanitizer report.  Used by .ci/run with a short time.
#
#   tests/fuzz/run.sh [SECONDS [OUTDIR [TARGET...]]]
#
# OUTDIR (default ./fuzz-out) keeps the build, the growing corpora
# (OUTDIR/corpus/TARGET, reused by the next run) and any crash inputs
# (OUTDIR/artifacts).  JOBS=n runs n targets at once (default 1).
set -eu
secs=${1:-60}
top=$(cd "$(dirname "$0")/../.." && pwd)
out=${2:-fuzz-out}
[ $# -ge 2 ] && shift 2 || shift $#
targets=${*:-stream cache calib npy safetensors gguf}
jobs=${JOBS:-1}
mkdir -p "$out"
out=$(cd "$out" && pwd)
"$top/tests/fuzz/build.sh" "$out/bin" >"$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
rm -rf "$out/seeds"
"$out/bin/make_seeds" "$out/seeds" >/dev/null
mkdir -p "$out/seeds/gguf" "$out/artifacts"
cp "$top/tests/fuzz/seeds/tiny.gguf" "$out/seeds/gguf/"

run_one() {
    t=$1
    mkdir -p "$out/corpus/$t"
    # -rss_limit_mb: the targets bound their own work; the readers must not
    # allocate what a hostile header asks for without checking it first.
    "$out/bin/fuzz_$t" -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 -artifact_prefix="$out/artifacts/$t-" \
        "$out/corpus/$t" "$out/seeds/$t" >"$out/$t.log" 2>&1 && rc=0 || rc=$?
    echo $rc >"$out/$t.rc"
}
status=0
# first the inputs of past findings (tests/fuzz/regress/TARGET): each once
for t in $targets; do
    [ -d "$top/tests/fuzz/regress/$t" ] || continue
    if ! "$out/bin/fuzz_$t" "$top/tests/fuzz/regress/$t"/* >"$out/$t-regress.log" 2>&1; then
        echo "fuzz_$t: a regression input fails again (log: $out/$t-regress.log)"
        tail -n 40 "$out/$t-regress.log"
        status=1
    fi
done
running=0

for t in $targets; do
    run_one "$t" &

    running=$((running + 1))
    if [ $running -ge "$jobs" ]; then wait; running=0; fi
done
wait || true
for t in $targets; do
    ex=$(sed -n 's/^stat::number_of_executed_units: *//p' "$out/$t.log" | tail -n1)
    rc=$(cat "$out/$t.rc" 2>/dev/null || echo missing)
    if [ "$rc" != 0 ] || [ -z "$ex" ] ||
       grep -q -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|SUMMARY: (Address|Undefined|Leak)Sanitizer|runtime error:' "$out/$t.log"; then
        echo "fuzz_$t: FAILED (exit $rc; log: $out/$t.log)"
        tail -n 60 "$out/$t.log"
        status=1
    else
        echo "fuzz_$t: ${ex} executions in ${secs} s, corpus $(ls "$out/corpus/$t" | wc -l) files, no findings"
    fi
done
exit $status
