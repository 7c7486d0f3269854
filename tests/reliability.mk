# tests/reliability.mk - bad input, threads and fuzzing (issue 6; included
# from the top-level Makefile.am).  See docs/RELIABILITY.md.
#
# check_badinput: the bad-input matrix and durable saves (links the core:
# it forges CRCs with the internal gear_crc32c).  check_threads: contexts
# and caches used from several threads at once.  The fuzz targets are not
# built by make: tests/fuzz/build.sh and tests/fuzz/run.sh need clang
# (libFuzzer); .ci/run runs them briefly when clang is present.

if HAVE_CHECK
check_PROGRAMS += tests/check_badinput tests/check_threads
TESTS += tests/check_badinput tests/check_threads
endif

tests_check_badinput_SOURCES = tests/check_badinput.c
tests_check_badinput_CPPFLAGS = $(test_cppflags)
tests_check_badinput_CFLAGS = $(test_cflags)
tests_check_badinput_LDADD = $(test_ldadd_internal)

tests_check_threads_SOURCES = tests/check_threads.c
tests_check_threads_CPPFLAGS = $(test_cppflags)
tests_check_threads_CFLAGS = $(test_cflags)
tests_check_threads_LDADD = $(test_ldadd_public) $(GEAR_LIBS)

EXTRA_DIST += \
	docs/RELIABILITY.md \
	tests/fuzz/README.md \
	tests/fuzz/build.sh \
	tests/fuzz/run.sh \
	tests/fuzz/tsan.sh \
	tests/fuzz/fuzz.h \
	tests/fuzz/fuzz_lib.h \
	tests/fuzz/memfile.h \
	tests/fuzz/nocrc.c \
	tests/fuzz/make_seeds.c \
	tests/fuzz/fuzz_stream.c \
	tests/fuzz/fuzz_cache.c \
	tests/fuzz/fuzz_calib.c \
	tests/fuzz/fuzz_npy.c \
	tests/fuzz/fuzz_safetensors.c \
	tests/fuzz/fuzz_gguf.c \
	tests/fuzz/seeds \
	tests/fuzz/regress
