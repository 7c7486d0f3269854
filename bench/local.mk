# bench/local.mk - `make bench` (included from the top-level Makefile.am).
# gear-bench is built only on demand (EXTRA_PROGRAMS) and run against the
# modules of this build tree.  Results: a table on stdout and JSON lines in
# bench/results/bench.jsonl; bench/plot_attention.py turns them into an SVG.

EXTRA_DIST += bench/plot_attention.py bench/summarize.py bench/compare_runs.py bench/ranges.py

# attention of a backend against ref on data that stresses the arithmetic
# (bench/attn_accuracy.c); run from the source tree for the real-data case
EXTRA_PROGRAMS = bench/gear-bench bench/gear-attn-accuracy
bench_gear_attn_accuracy_SOURCES = bench/attn_accuracy.c tools/gear/synth.c tools/gear/synth.h \
	tools/gear/safetensors.c tools/gear/safetensors.h tools/gear/json.c tools/gear/json.h
bench_gear_attn_accuracy_LDADD = libgear.la $(LIBM)
# the fastest of many attention calls in cache, for A/B of kernel changes
# on VMs whose medians drift (bench/attn_min.c)
EXTRA_PROGRAMS += bench/gear-attn-min
bench_gear_attn_min_SOURCES = bench/attn_min.c bench/bench_util.h tools/gear/synth.c tools/gear/synth.h
bench_gear_attn_min_LDADD = libgear.la $(LIBM)
CLEANFILES += bench/gear-attn-accuracy$(EXEEXT) bench/gear-bench$(EXEEXT) bench/gear-attn-min$(EXEEXT)

# (the bench and its fp16 baseline use OpenMP; without it gear-bench is a
# program that says so, so that building it directly fails nowhere)
if HAVE_OPENMP
bench_gear_bench_SOURCES = bench/gear_bench.c bench/bench_util.h bench/fp16_attention.c bench/fp16_attention.h \
	bench/q4_0_baseline.c bench/q4_0_baseline.h bench/isa_floor.c bench/isa_floor.h \
	bench/lowrank_blas.c bench/lowrank_blas.h bench/read_bw.c bench/read_bw.h \
	tools/gear/synth.c tools/gear/synth.h
bench_gear_bench_CFLAGS = $(AM_CFLAGS) $(OPENMP_CFLAGS) $(LOOP_ALIGN_CFLAGS) $(NOTRAP_CFLAGS)
bench_gear_bench_LDADD = libgear.la $(LIBM)
# the lowrank section's OpenBLAS baseline (only the bench links it)
if HAVE_OPENBLAS
bench_gear_bench_CFLAGS += -DGEAR_BENCH_OPENBLAS $(OPENBLAS_CFLAGS)
bench_gear_bench_LDADD += $(OPENBLAS_LIBS)
endif
bench_gear_bench_LDFLAGS = $(OPENMP_CFLAGS)

GEAR_BENCH_FLAGS =
bench: bench/gear-bench$(EXEEXT) $(pkglib_LTLIBRARIES) $(GPU_BENCH_PROGS)
	$(MKDIR_P) bench/results
	GEAR_BACKEND_PATH='$(abs_top_builddir)/.libs' OMP_PROC_BIND=close \
	  ./bench/gear-bench$(EXEEXT) --json bench/results/bench.jsonl $(GEAR_BENCH_FLAGS) \
	  | tee bench/results/bench.txt
	-$(PYTHON3) $(srcdir)/bench/plot_attention.py bench/results/bench.jsonl bench/results/attention-speedup.svg
	@test -z "$(GPU_BENCH_PROGS)" || echo "GPU benches built ($(GPU_BENCH_PROGS)): run them with make bench-gpu, or bench/gpu_run.sh"

else
bench_gear_bench_SOURCES = bench/no_openmp.c
bench:
	@echo "make bench needs OpenMP (configure found none)"; exit 1
endif
.PHONY: bench
