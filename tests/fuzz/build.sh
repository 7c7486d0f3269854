#!/bin/sh
# tests/fuzz/build.sh - build the fuzz targets (see tests/fuzz/README.md).
#
#   tests/fuzz/build.sh OUTDIR                 libFuzzer targets (clang,
#                                              -fsanitize=fuzzer,address,undefined)
#   tests/fuzz/build.sh --standalone OUTDIR    the same targets with a main()
#                                              that runs the files named on its
#                                              command line (-DGEAR_FUZZ_STANDALONE):
#                                              for AFL++ (CC=afl-clang-fast) or for
#                                              replaying a corpus (CC=gcc, valgrind)
#
# CC (default clang) and SAN_FLAGS (the sanitizer flags) may be overridden.
# The library is compiled from lib/ straight into each target, with
# tests/fuzz/nocrc.c in place of lib/crc32c.c (see that file).  Also built:
# OUTDIR/make_seeds, which writes the seed corpora.  Needs no configure.
set -eu
mode=libfuzzer
if [ "${1:-}" = --standalone ]; then mode=standalone; shift; fi
[ $# -eq 1 ] || { echo "usage: $0 [--standalone] OUTDIR" >&2; exit 2; }
top=$(cd "$(dirname "$0")/../.." && pwd)
out=$1
mkdir -p "$out/obj"
out=$(cd "$out" && pwd)
CC=${CC:-clang}
if [ $mode = libfuzzer ]; then
    SAN_FLAGS=${SAN_FLAGS:--fsanitize=address,undefined -fno-sanitize-recover=all}
    obj_san="$SAN_FLAGS -fsanitize=fuzzer-no-link"
    link_san="$SAN_FLAGS -fsanitize=fuzzer"
    defs=
else
    SAN_FLAGS=${SAN_FLAGS--fsanitize=address,undefined -fno-sanitize-recover=all}
    obj_san=$SAN_FLAGS
    link_san=$SAN_FLAGS
    defs=-DGEAR_FUZZ_STANDALONE
fi
cflags="-g -O1 -Wall -Wextra -Wno-unused-parameter -fno-omit-frame-pointer -std=gnu11 -DGEAR_NO_CLONES -I$top/include -I$top/lib"

# the library (ref backend only), once
lib_objs=
for src in "$top"/lib/*.c "$top"/lib/ref/*.c "$top"/tests/fuzz/nocrc.c; do
    case $src in */lib/crc32c.c) continue ;; esac
    o=$out/obj/lib_$(basename "$src" .c).o
    $CC $cflags $obj_san -c "$src" -o "$o"
    lib_objs="$lib_objs $o"
done
libs="-ldl -lpthread -lm"

tool() { # tool NAME SOURCES... : compile and link one program
    name=$1; shift
    objs=
    for src in "$@"; do
        o=$out/obj/${name}_$(basename "$src" .c).o
        $CC $cflags $obj_san $defs -c "$src" -o "$o"
        objs="$objs $o"
    done
    $CC $link_san $objs $lib_objs $libs -o "$out/$name"
    echo "built $out/$name"
}
F=$top/tests/fuzz
tool fuzz_stream $F/fuzz_stream.c
tool fuzz_cache $F/fuzz_cache.c
tool fuzz_calib $F/fuzz_calib.c
tool fuzz_npy $F/fuzz_npy.c $top/tools/gear/npy.c
tool fuzz_safetensors $F/fuzz_safetensors.c $top/tools/gear/safetensors.c $top/tools/gear/json.c
E=$top/examples/llm
tool fuzz_gguf $F/fuzz_gguf.c $E/gguf.c $E/model.c $E/tokenizer.c $E/util.c

# the seed writer: an ordinary program (no fuzzer runtime) on the same library
seed_objs=
for src in $F/make_seeds.c $top/tools/gear/npy.c; do
    o=$out/obj/seeds_$(basename "$src" .c).o
    $CC $cflags $obj_san -c "$src" -o "$o"
    seed_objs="$seed_objs $o"
done
$CC $SAN_FLAGS $seed_objs $lib_objs $libs -o "$out/make_seeds"
echo "built $out/make_seeds"
