# tests/realkv.mk - quality tests on the real KV sample in tests/data, and
# the check of the bench's fp16 baseline
# (included from the top-level Makefile.am, after the tests section).
# check_realkv reads tests/data/smollm2-135m-persuasion-kv.safetensors
# through $abs_top_srcdir (AM_TESTS_ENVIRONMENT exports it) with the
# strict safetensors reader of the gear tool compiled in.

if HAVE_CHECK
check_PROGRAMS += tests/check_realkv
TESTS += tests/check_realkv
endif

tests_check_realkv_SOURCES = tests/check_realkv.c \
	tools/gear/safetensors.c tools/gear/safetensors.h \
	tools/gear/json.c tools/gear/json.h tools/gear/cli.h
tests_check_realkv_CPPFLAGS = $(test_cppflags)
tests_check_realkv_CFLAGS = $(test_cflags)
tests_check_realkv_LDADD = $(test_ldadd_public)

# check_fp16_baseline: the bench's fp16-cache attention (the baseline of
# every speed-up) against a direct double-precision attention; OpenMP, as
# the bench.
if HAVE_CHECK
if HAVE_OPENMP
check_PROGRAMS += tests/check_fp16_baseline
TESTS += tests/check_fp16_baseline
endif
endif
tests_check_fp16_baseline_SOURCES = tests/check_fp16_baseline.c bench/fp16_attention.c bench/fp16_attention.h
tests_check_fp16_baseline_CPPFLAGS = $(test_cppflags)
tests_check_fp16_baseline_CFLAGS = $(test_cflags) $(OPENMP_CFLAGS)
tests_check_fp16_baseline_LDFLAGS = $(OPENMP_CFLAGS)
tests_check_fp16_baseline_LDADD = $(test_ldadd_public)
