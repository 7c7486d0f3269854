#!/bin/sh
# autogen.sh - generate ./configure from a git checkout.
# Needs autoconf >= 2.69, automake >= 1.14, libtool and pkg-config
# (Debian: apt-get install autoconf automake libtool pkg-config).
set -e
cd "$(dirname "$0")"
for tool in autoreconf aclocal automake libtoolize pkg-config; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "autogen.sh: '$tool' not found; install autoconf, automake, libtool and pkg-config" >&2
        exit 1
    fi
done
mkdir -p m4 build-aux
autoreconf --force --install --verbose "$@"
echo "Now run ./configure && make"
