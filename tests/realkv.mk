# tests/realkv.mk - quality tests on the real KV sample in tests/data
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
