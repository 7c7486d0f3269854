#!/bin/sh
# bench/gpu_run.sh [OUTDIR] - everything a session with a GPU runs, in one
# go, from the source tree: build for one architecture (sm_90 by default),
# run the GPU test suites, run the GPU bench at the issue's shapes and the
# PyTorch SDPA baseline, and keep every log and result in OUTDIR
# (default bench/results-gpu/<date>).
#
#   GEAR_GPU=cuda|hip     which module (default cuda)
#   GEAR_GPU_ARCH=LIST    architectures (default sm_90 for cuda, gfx942 for hip)
#   JOBS=N                make -j (default: the CPU count)
#
# Needs nvcc (or hipcc), a C compiler, Check (libcheck) for the tests, and
# autoconf/automake/libtool unless ./configure was generated beforehand (a
# machine without network access cannot install them: generate configure
# here first and bring it along).  PyTorch is optional (the SDPA baseline
# is skipped without it).
#
# Exit status: that of the tests (the bench's failures are reported in its
# log); results are written even when a step fails.
set -u
cd "$(dirname "$0")/.."
gpu=${GEAR_GPU:-cuda}
case $gpu in
    cuda) arch=${GEAR_GPU_ARCH:-sm_90}; conf="--enable-cuda=yes --with-cuda-arch=$arch --disable-hip" ;;
    hip) arch=${GEAR_GPU_ARCH:-gfx942}; conf="--enable-hip=yes --with-hip-arch=$arch --disable-cuda" ;;
    *) echo "GEAR_GPU must be cuda or hip" >&2; exit 2 ;;
esac
out=${1:-bench/results-gpu/$(date +%Y%m%d-%H%M%S)}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 4)}
mkdir -p "$out"
log() { echo "== $*" | tee -a "$out/run.log"; }

log "device"
{ nvidia-smi || rocm-smi || true; } > "$out/device.txt" 2>&1
log "build ($gpu, $arch)"
# shellcheck disable=SC2086
{ { [ -x configure ] || ./autogen.sh; } && ./configure $conf; } > "$out/configure.log" 2>&1 ||
    { log "configure FAILED (see configure.log)"; exit 1; }
make -j"$jobs" > "$out/build.log" 2>&1 || { log "build FAILED (see build.log)"; exit 1; }
make -j"$jobs" "bench/gear-gpu-bench-$gpu" >> "$out/build.log" 2>&1 ||
    { log "bench build FAILED (see build.log)"; exit 1; }
./tools/gear/gear backends > "$out/backends.txt" 2>&1

log "tests: check_gpu (the GPU against ref) and check_xbackend (every backend)"
make -j"$jobs" check TESTS="tests/check_gpu tests/check_xbackend" > "$out/check.log" 2>&1
rc=$?
cp tests/check_gpu.log tests/check_xbackend.log "$out/" 2>/dev/null
grep -E "^(PASS|FAIL|SKIP|ERROR):" "$out/check.log" | tee -a "$out/run.log"

log "bench: codec and decode attention"
GEAR_BACKEND_PATH="$PWD/.libs" "./bench/gear-gpu-bench-$gpu" --json "$out/gpu_bench.jsonl" \
    > "$out/gpu_bench.txt" 2>&1 || log "gear-gpu-bench exited $?"
cat "$out/gpu_bench.txt"
log "bench: PyTorch SDPA on the same shapes, and the ratios"
python3 bench/sdpa_baseline.py --json "$out/sdpa.jsonl" --gear "$out/gpu_bench.jsonl" \
    > "$out/sdpa.txt" 2>&1 || log "sdpa_baseline.py exited $? (torch missing?)"
cat "$out/sdpa.txt"
log "results in $out (tests: exit $rc)"
exit $rc
