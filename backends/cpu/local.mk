# backends/cpu/local.mk - the cpu backend module gear-cpu.so (included from
# the top-level Makefile.am).  OpenMP stays inside this module; libgear
# itself never links it.

if BUILD_CPU_BACKEND
pkglib_LTLIBRARIES += gear-cpu.la
gear_cpu_la_SOURCES = backends/cpu/cpu.h backends/cpu/cpu_workspace.h backends/cpu/cpu_simd.h backends/cpu/cpu_attn.h \
	backends/cpu/cpu_top2.h \
	backends/cpu/cpu_backend.c backends/cpu/cpu_workspace.c backends/cpu/cpu_compress.c backends/cpu/cpu_decompress.c \
	backends/cpu/cpu_cq.c backends/cpu/cpu_attention.c backends/cpu/cpu_attention_cq.c
gear_cpu_la_CPPFLAGS = $(AM_CPPFLAGS) $(CPU_SIMD_CPPFLAGS)
gear_cpu_la_CFLAGS = $(AM_CFLAGS) $(OPENMP_CFLAGS) $(NOTRAP_CFLAGS) $(LOOP_ALIGN_CFLAGS)
gear_cpu_la_LDFLAGS = -module -avoid-version -shared -no-undefined \
	-export-symbols-regex '^gear_backend_module_init$$' $(OPENMP_CFLAGS)
gear_cpu_la_LIBADD = libgear.la -lm
if HAVE_AVX512_FLAGS
# Kernels compiled for AVX-512 only; called after a run-time CPU check.
noinst_LTLIBRARIES += libgear-cpu-avx512.la
libgear_cpu_avx512_la_SOURCES = backends/cpu/cpu_avx512_half.h backends/cpu/cpu_avx512.c \
	backends/cpu/cpu_avx512_compress.c backends/cpu/cpu_avx512_rows.h backends/cpu/cpu_avx512_bf16.c \
	backends/cpu/cpu_avx512_attn.c backends/cpu/cpu_avx512_cq.c
libgear_cpu_avx512_la_CPPFLAGS = $(AM_CPPFLAGS) $(CPU_SIMD_CPPFLAGS)
libgear_cpu_avx512_la_CFLAGS = $(AM_CFLAGS) $(AVX512_CFLAGS) $(LOOP_ALIGN_CFLAGS) $(NOVTA_CFLAGS)
gear_cpu_la_LIBADD += libgear-cpu-avx512.la
# Kernels for CPUs with AVX2, FMA and F16C but no AVX-512, the same way.
noinst_LTLIBRARIES += libgear-cpu-avx2.la
libgear_cpu_avx2_la_SOURCES = backends/cpu/cpu_avx2.c backends/cpu/cpu_avx2_compress.c
libgear_cpu_avx2_la_CPPFLAGS = $(AM_CPPFLAGS) $(CPU_SIMD_CPPFLAGS)
libgear_cpu_avx2_la_CFLAGS = $(AM_CFLAGS) $(AVX2_CFLAGS) $(LOOP_ALIGN_CFLAGS)
gear_cpu_la_LIBADD += libgear-cpu-avx2.la
# the portable paths, which the AVX-512 kernels hide on this machine
TESTS += tests/check_cpu_portable.sh
endif
EXTRA_DIST += tests/check_cpu_portable.sh tests/check_other_cpus.sh
endif
