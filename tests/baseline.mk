# tests/baseline.mk - check_fp16_baseline: the bench's fp16-cache attention
# (the baseline of every speed-up in README) against a direct
# double-precision attention.  Needs Check and OpenMP, as the bench does.
# (included from the top-level Makefile.am, after the tests section)
if HAVE_CHECK
if HAVE_OPENMP
check_PROGRAMS += tests/check_fp16_baseline
TESTS += tests/check_fp16_baseline
endif
endif
tests_check_fp16_baseline_SOURCES = tests/check_fp16_baseline.c bench/fp16_attention.c bench/fp16_attention.h
tests_check_fp16_baseline_CPPFLAGS = $(test_cppflags)
tests_check_fp16_baseline_CFLAGS = $(test_cflags) $(OPENMP_CFLAGS) $(NOTRAP_CFLAGS)
tests_check_fp16_baseline_LDFLAGS = $(OPENMP_CFLAGS)
tests_check_fp16_baseline_LDADD = $(test_ldadd_public)
