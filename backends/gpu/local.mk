# backends/gpu/local.mk - the cuda and hip backend modules (gear-cuda.so,
# gear-hip.so), included from the top-level Makefile.am.  Both build the one
# kernel source in backends/gpu through a vendor header of name mappings;
# nvcc and hipcc run under libtool so the objects are ordinary libtool
# objects, and only these modules link a GPU runtime (never libgear).
#
# No FMA contraction (-fmad=false, -ffp-contract=off): codes and scales must
# come from exactly ref's operations; kernels fuse explicitly with fmaf.

gpu_kernel_headers = \
	backends/gpu/gpu_common.cuh \
	backends/gpu/gpu_compress.cuh \
	backends/gpu/gpu_attention.cuh \
	backends/gpu/gpu_host.cuh \
	backends/gpu/gpu_backend.cuh \
	backends/gpu/vendors/cuda.h \
	backends/gpu/vendors/hip.h
gpu_deps = $(gpu_kernel_headers:%=$(srcdir)/%) $(srcdir)/include/gear.h \
	$(srcdir)/include/gear/backend.h
gpu_cppflags = -I$(top_srcdir)/include -I$(top_srcdir)/backends/gpu
gpu_module_ldflags = -module -avoid-version -shared -no-undefined \
	-export-symbols-regex '^gear_backend_module_init$$'

GPU_BENCH_PROGS =
EXTRA_DIST += $(gpu_kernel_headers) backends/gpu/nvcc-libtool \
	bench/gpu_bench.cu bench/sdpa_baseline.py bench/gpu_run.sh \
	backends/cuda/gear_cuda.cu backends/hip/gear_hip.hip \
	backends/gpu/vendors/emu.h tests/check_gpu_emu.sh

if HAVE_CUDA
pkglib_LTLIBRARIES += gear-cuda.la
gear_cuda_la_SOURCES =
gear_cuda_la_LIBADD = backends/cuda/gear_cuda.lo $(CUDART_LIBS) -lstdc++ -lm
gear_cuda_la_DEPENDENCIES = backends/cuda/gear_cuda.lo
gear_cuda_la_LDFLAGS = $(gpu_module_ldflags) $(CUDA_LDFLAGS)
CLEANFILES += backends/cuda/gear_cuda.lo backends/cuda/gear_cuda.o

backends/cuda/gear_cuda.lo: $(srcdir)/backends/cuda/gear_cuda.cu $(gpu_deps)
	@$(MKDIR_P) backends/cuda
	$(AM_V_GEN)$(LIBTOOL) $(AM_V_lt) --tag=CC --mode=compile \
	  $(SHELL) $(srcdir)/backends/gpu/nvcc-libtool $(NVCC) $(NVCC_ARCH_FLAGS) -O3 -fmad=false \
	  $(gpu_cppflags) $(CUDA_CPPFLAGS) $(NVCCFLAGS) \
	  -c -o $@ $(srcdir)/backends/cuda/gear_cuda.cu

# `make bench' builds it; bench/gpu_run.sh (or make bench-gpu) runs it.
GPU_BENCH_PROGS += bench/gear-gpu-bench-cuda$(EXEEXT)
bench/gear-gpu-bench-cuda$(EXEEXT): $(srcdir)/bench/gpu_bench.cu $(gpu_deps) libgear-core.la
	@$(MKDIR_P) bench
	$(AM_V_GEN)$(NVCC) $(NVCC_ARCH_FLAGS) -O3 -fmad=false $(gpu_cppflags) $(CUDA_CPPFLAGS) \
	  $(NVCCFLAGS) -o $@ $(srcdir)/bench/gpu_bench.cu .libs/libgear-core.a $(GEAR_LIBS)
endif

if HAVE_HIP
pkglib_LTLIBRARIES += gear-hip.la
gear_hip_la_SOURCES =
gear_hip_la_LIBADD = backends/hip/gear_hip.lo $(HIP_LIBS) -lstdc++ -lm
gear_hip_la_DEPENDENCIES = backends/hip/gear_hip.lo
gear_hip_la_LDFLAGS = $(gpu_module_ldflags) $(HIP_LDFLAGS)
CLEANFILES += backends/hip/gear_hip.lo backends/hip/gear_hip.o

backends/hip/gear_hip.lo: $(srcdir)/backends/hip/gear_hip.hip $(gpu_deps)
	@$(MKDIR_P) backends/hip
	$(AM_V_GEN)$(LIBTOOL) $(AM_V_lt) --tag=CC --mode=compile \
	  $(HIPCC) -x hip $(HIP_ARCH_FLAGS) -O3 -ffp-contract=off \
	  $(gpu_cppflags) $(HIP_CPPFLAGS) $(HIPCCFLAGS) \
	  -c -o $@ $(srcdir)/backends/hip/gear_hip.hip

GPU_BENCH_PROGS += bench/gear-gpu-bench-hip$(EXEEXT)
bench/gear-gpu-bench-hip$(EXEEXT): $(srcdir)/bench/gpu_bench.cu $(gpu_deps) libgear-core.la
	@$(MKDIR_P) bench
	$(AM_V_GEN)$(HIPCC) -x hip $(HIP_ARCH_FLAGS) -O3 -ffp-contract=off $(gpu_cppflags) \
	  $(HIP_CPPFLAGS) $(HIPCCFLAGS) -o $@ $(srcdir)/bench/gpu_bench.cu -x none .libs/libgear-core.a \
	  $(HIP_LIBS) $(GEAR_LIBS)
endif
CLEANFILES += $(GPU_BENCH_PROGS)

# Run the GPU benches of this build (each skips itself without a device).
bench-gpu: $(GPU_BENCH_PROGS)
	@$(MKDIR_P) bench/results
	@for b in $(GPU_BENCH_PROGS); do \
	  n=`basename $$b $(EXEEXT)`; \
	  ./$$b --json bench/results/$$n.jsonl | tee bench/results/$$n.txt; \
	done
.PHONY: bench-gpu

clean-local: clean-gpu-objects
clean-gpu-objects:
	-rm -rf backends/cuda/.libs backends/hip/.libs
.PHONY: clean-gpu-objects

# The GPU suite: built with the other Check suites whatever was configured;
# it reports each GPU backend it cannot use as skipped, by name, and exits
# 77 (SKIP) when none is usable.  It never forks (see tests/check_gpu.c).
if HAVE_CHECK
check_PROGRAMS += tests/check_gpu
TESTS += tests/check_gpu
tests_check_gpu_SOURCES = tests/check_gpu.c
tests_check_gpu_CPPFLAGS = $(test_cppflags)
tests_check_gpu_CFLAGS = $(test_cflags)
tests_check_gpu_LDADD = $(test_ldadd_internal)

# The same suite on "gpuemu": the kernels of the cuda and hip modules built
# for a host emulation (vendors/emu.h), so they run here without a GPU.
if HAVE_GPU_EMU
check_LTLIBRARIES += gear-gpuemu.la
gear_gpuemu_la_SOURCES = backends/gpu/gear_gpuemu.cc
gear_gpuemu_la_CPPFLAGS = $(gpu_cppflags)
gear_gpuemu_la_CXXFLAGS = $(WARN_CFLAGS) -O2 -ffp-contract=off -pthread
gear_gpuemu_la_LDFLAGS = $(gpu_module_ldflags) -rpath $(abs_builddir) -pthread
TESTS += tests/check_gpu_emu.sh
endif
endif

# The GPU bench's own host logic under the emulation, on tiny shapes (its
# numbers mean nothing): `make bench-gpu-emu' before spending device time.
if HAVE_GPU_EMU
bench/gear-gpu-bench-emu$(EXEEXT): $(srcdir)/bench/gpu_bench.cu $(gpu_deps) \
		$(srcdir)/backends/gpu/vendors/emu.h libgear-core.la
	@$(MKDIR_P) bench
	$(AM_V_GEN)$(CXX) -std=c++14 -O2 -ffp-contract=off -DGEAR_GPU_BENCH_EMU $(gpu_cppflags) \
	  -x c++ $(srcdir)/bench/gpu_bench.cu -x none -o $@ .libs/libgear-core.a -pthread $(GEAR_LIBS)
bench-gpu-emu: bench/gear-gpu-bench-emu$(EXEEXT)
	./bench/gear-gpu-bench-emu$(EXEEXT) --quick
CLEANFILES += bench/gear-gpu-bench-emu$(EXEEXT)
endif
.PHONY: bench-gpu-emu
