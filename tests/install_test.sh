#!/bin/sh
# install_test.sh - install the built tree into a scratch directory and build
# a small client against it with `pkg-config --cflags --libs gear', as a user
# would, then run it.
#
# Run by `make check' (also under `make distcheck': read-only srcdir, VPATH
# build).  The tree is installed with `make install DESTDIR=<tmp>' (what
# packagers do; libtool handles DESTDIR itself), and pkg-config is pointed at
# the staged files by redefining the .pc variables.
#
# Environment (set by AM_TESTS_ENVIRONMENT in Makefile.am): top_builddir,
# GEAR_TEST_MAKE, GEAR_TEST_CC, GEAR_TEST_PKG_CONFIG, GEAR_TEST_VERSION,
# GEAR_TEST_LIBDIR, GEAR_TEST_INCLUDEDIR, GEAR_TEST_BINDIR,
# GEAR_TEST_MODULEDIR.
# Exit: 0 pass, 1 fail, 77 skip (no C compiler or no pkg-config).

set -u

me=install_test
fail() { echo "$me: FAIL: $*" >&2; exit 1; }
skip() { echo "$me: SKIP: $*"; exit 77; }

: "${top_builddir:=$(pwd)}"
make_cmd=${GEAR_TEST_MAKE:-${MAKE:-make}}
cc_cmd=${GEAR_TEST_CC:-${CC:-cc}}
pkg_config=${GEAR_TEST_PKG_CONFIG:-pkg-config}
version=${GEAR_TEST_VERSION:-}
libdir=${GEAR_TEST_LIBDIR:-}
includedir=${GEAR_TEST_INCLUDEDIR:-}
bindir=${GEAR_TEST_BINDIR:-}
moduledir=${GEAR_TEST_MODULEDIR:-}

[ -n "$libdir" ] && [ -n "$includedir" ] ||
    fail "GEAR_TEST_LIBDIR/GEAR_TEST_INCLUDEDIR not set (run me through make check)"
[ -f "$top_builddir/libgear.la" ] || fail "$top_builddir/libgear.la not built"

# first word of a command, for the skip test
set -- $cc_cmd
command -v "$1" >/dev/null 2>&1 || skip "no C compiler ($cc_cmd)"
set -- $pkg_config
command -v "${1:-pkg-config}" >/dev/null 2>&1 || skip "no pkg-config"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gear-install-test.XXXXXX") || fail "mktemp"
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
dest=$tmp/dest

# ---------------------------------------------------------------- install
# A nested make of the tree that is running this test: drop the parent's
# make flags (its jobserver is not ours to use).
echo "$me: make install DESTDIR=$dest"
if ! (unset MAKEFLAGS MFLAGS MAKELEVEL; cd "$top_builddir" &&
      $make_cmd install DESTDIR="$dest") >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log" >&2
    fail "make install DESTDIR=$dest failed"
fi

for f in "$includedir/gear.h" "$includedir/gear/backend.h" \
         "$libdir/pkgconfig/gear.pc" "$bindir/gear"; do
    [ -f "$dest$f" ] || fail "not installed: $f"
done
# a shared libgear, or (--disable-shared) only the static one
shared=no
for f in "$dest$libdir"/libgear.so* "$dest$libdir"/libgear*.dylib; do
    [ -f "$f" ] && shared=yes
done
[ $shared = yes ] || [ -f "$dest$libdir/libgear.a" ] || fail "libgear not installed in $libdir"
# internal headers stay private
[ ! -e "$dest$includedir/internal.h" ] || fail "lib/internal.h was installed"

# --------------------------------------------------------------- pkg-config
# Only the staged gear.pc is visible; its libdir and includedir are
# redefined to the staged copies (this also holds when configure was given
# an absolute --libdir or --includedir).
pc_get() {
    env PKG_CONFIG_PATH="$dest$libdir/pkgconfig" PKG_CONFIG_LIBDIR="$dest$libdir/pkgconfig" \
        $pkg_config --define-variable=libdir="$dest$libdir" \
                    --define-variable=includedir="$dest$includedir" "$@" gear
}
pc_version=$(pc_get --modversion) || fail "pkg-config cannot read gear.pc"
[ -z "$version" ] || [ "$pc_version" = "$version" ] ||
    fail "gear.pc says version $pc_version, expected $version"
pc_moduledir=$(pc_get --variable=moduledir) || fail "pkg-config --variable=moduledir gear"
# (moduledir is ${libdir}/gear, so it follows the redefined libdir)
[ -z "$moduledir" ] || [ "$pc_moduledir" = "$dest$moduledir" ] ||
    fail "gear.pc moduledir is '$pc_moduledir', expected '$dest$moduledir'"
cflags=$(pc_get --cflags) || fail "pkg-config --cflags gear"
if [ $shared = yes ]; then
    libs=$(pc_get --libs) || fail "pkg-config --libs gear"
else
    libs=$(pc_get --libs --static) || fail "pkg-config --libs --static gear"
fi
echo "$me: pkg-config gear $pc_version: $cflags $libs"
case " $cflags " in *" -I$dest$includedir "*) ;; *) fail "cflags '$cflags' miss -I$dest$includedir" ;; esac
case " $libs " in *" -lgear "*) ;; *) fail "libs '$libs' miss -lgear" ;; esac
for bad in cuda cudart amdhip64 openblas fopenmp gomp; do
    case " $cflags $libs " in *"$bad"*) fail "gear.pc mentions $bad: $cflags $libs" ;; esac
done

# ------------------------------------------------------------- client app
cat >"$tmp/app.c" <<'EOF'
#include <gear.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(call)                                                          \
    do {                                                                     \
        gear_status s_ = (call);                                             \
        if (s_ != GEAR_OK) {                                                 \
            fprintf(stderr, "%s failed: %s (%s)\n", #call,                   \
                    gear_status_string(s_), gear_last_error_message());      \
            return 1;                                                        \
        }                                                                    \
    } while (0)

int main(void)
{
    enum { H = 2, T = 128, D = 64 };
    static float x[H * T * D], y[H * T * D];
    gear_context_params p;
    gear_context *ctx = NULL;
    gear_config cfg;
    gear_tensor tx, ty;
    size_t bound = 0, written = 0;
    unsigned char *buf;
    double err = 0.0, ref = 0.0;
    unsigned seed = 12345u;

    printf("version %s\n", gear_version_string());
    if (strcmp(gear_version_string(), GEAR_VERSION_STRING_EXPECTED) != 0 ||
        gear_version_number() != GEAR_VERSION_NUMBER) {
        fprintf(stderr, "header/library version mismatch\n");
        return 1;
    }

    for (int i = 0; i < H * T * D; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = ((float)(seed >> 8) / 16777216.0f - 0.5f) * ((i % D) == 3 ? 8.0f : 1.0f);
    }

    gear_context_params_init(&p);
    p.backend = "ref";
    CHECK(gear_context_create(&p, &ctx));
    printf("backend %s\n", gear_context_backend_name(ctx));

    CHECK(gear_config_preset("gear2", GEAR_KEY, &cfg));
    CHECK(gear_tensor_init(&tx, x, GEAR_F32, 3, H, T, D, 0));
    CHECK(gear_compress_bound(&cfg, &tx, &bound));
    buf = malloc(bound);
    if (!buf) return 1;
    CHECK(gear_compress(ctx, &cfg, &tx, 0, buf, bound, &written));
    CHECK(gear_tensor_init(&ty, y, GEAR_F32, 3, H, T, D, 0));
    CHECK(gear_decompress(ctx, buf, written, &ty));

    for (int i = 0; i < H * T * D; i++) {
        err += (double)(x[i] - y[i]) * (x[i] - y[i]);
        ref += (double)x[i] * x[i];
    }
    printf("bytes %zu of %zu (fp32), bpe %.2f, nmse %.3g\n", written,
           sizeof x, 8.0 * written / (H * T * D), err / ref);
    free(buf);
    gear_context_free(ctx);
    if (!(err / ref < 0.2) || written >= sizeof x / 4) {
        fprintf(stderr, "round trip out of bounds\n");
        return 1;
    }
    /* "auto": the best backend the installed library finds; with the cpu
     * module installed next to it (libdir/gear) that is cpu */
    p.backend = "auto";
    CHECK(gear_context_create(&p, &ctx));
    printf("auto %s\n", gear_context_backend_name(ctx));
    gear_context_free(ctx);
    printf("ok\n");
    return 0;
}
EOF

echo "$me: $cc_cmd app.c $cflags $libs"
# shellcheck disable=SC2086
if ! (cd "$tmp" && $cc_cmd -o app app.c -DGEAR_VERSION_STRING_EXPECTED="\"$pc_version\"" \
        $cflags $libs) >"$tmp/cc.log" 2>&1; then
    cat "$tmp/cc.log" >&2
    fail "could not build a client with pkg-config --cflags --libs gear"
fi

# Run it against the staged library only (no build tree on any path).
out=$(unset GEAR_BACKEND GEAR_DEVICE GEAR_BACKEND_PATH
      LD_LIBRARY_PATH="$dest$libdir" DYLD_LIBRARY_PATH="$dest$libdir" "$tmp/app" 2>&1)
rc=$?
echo "$out" | sed "s/^/$me: app: /"
[ $rc -eq 0 ] || fail "client exited with status $rc"
echo "$out" | grep -q "^version $pc_version\$" || fail "client did not print version $pc_version"
echo "$out" | grep -q '^backend ref$' || fail "client did not run on backend ref"
echo "$out" | grep -q '^ok$' || fail "client did not finish"

# The client must have loaded the staged libgear, not another one.
if [ $shared = yes ] && command -v ldd >/dev/null 2>&1; then
    so=$(LD_LIBRARY_PATH="$dest$libdir" ldd "$tmp/app" 2>/dev/null | sed -n 's/.*libgear[^ ]* => \([^ ]*\).*/\1/p')
    case $so in
        "$dest$libdir"/*) ;;
        *) fail "client resolved libgear to '$so', not the staged $dest$libdir" ;;
    esac
fi

# An installed backend module is found and loaded by the installed library
# (searched in gear/ next to libgear: the staged tree, not the build tree).
if [ -n "$moduledir" ] && [ -f "$dest$moduledir/gear-cpu.so" ]; then
    echo "$out" | grep -q '^auto cpu$' || fail "installed gear-cpu.so was not chosen by \"auto\""
    mod_out=$(unset GEAR_BACKEND GEAR_DEVICE GEAR_BACKEND_PATH
              LD_LIBRARY_PATH="$dest$libdir" "$dest$bindir/gear" backends 2>&1)
    echo "$mod_out" | grep "^cpu " | grep -q "$dest$moduledir/gear-cpu.so" ||
        fail "installed 'gear backends' does not load the staged cpu module: $mod_out"
    echo "$me: installed cpu module loaded by the installed library"
fi

# The installed tool runs against the staged library too.
tool_out=$(LD_LIBRARY_PATH="$dest$libdir" "$dest$bindir/gear" backends 2>&1) ||
    fail "installed gear backends failed: $tool_out"
echo "$tool_out" | grep -q ref || fail "installed 'gear backends' does not list ref: $tool_out"

echo "$me: PASS"
exit 0
