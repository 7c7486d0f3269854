# examples/llm/local.mk - gear-llm, the LLM runner of DESIGN s9 (included
# from the top-level non-recursive Makefile.am; paths relative to the top).
noinst_PROGRAMS += examples/llm/gear-llm
examples_llm_gear_llm_SOURCES = \
	examples/llm/main.c \
	examples/llm/model.c examples/llm/model.h \
	examples/llm/gguf.c examples/llm/gguf.h \
	examples/llm/tokenizer.c examples/llm/tokenizer.h examples/llm/unicode_ranges.h \
	examples/llm/safetensors.c examples/llm/safetensors.h \
	examples/llm/util.c examples/llm/util.h
examples_llm_gear_llm_CFLAGS = $(AM_CFLAGS) $(OPENMP_CFLAGS) -I$(top_srcdir)/include
examples_llm_gear_llm_LDADD = libgear.la -lm
examples_llm_gear_llm_LDFLAGS = $(OPENMP_CFLAGS)
EXTRA_DIST += examples/llm/README.md examples/llm/fuzz_gguf.c examples/llm/fuzz_gguf.py examples/llm/make_tiny_gguf.py
