# tests/realkv.mk - quality tests on the real KV sample in tests/data
# (included from the top-level Makefile.am).
