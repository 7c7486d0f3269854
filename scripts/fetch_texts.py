#!/usr/bin/env python3
"""Fetch public-domain evaluation texts for examples/llm (gear-llm).

Source: the Debian package r-cran-janeaustenr ("Jane Austen's complete novels
for GNU R"; package MIT, Copyright 2016-2017 Julia Silge; the novels,
1811-1818, are in the public domain; the text is Project Gutenberg's).  The
package is fetched with `apt-get download` (no install, no R needed) and its
R lazy-load database data/Rdata.{rdx,rdb} is decoded here with the Python
standard library.  Each novel is written as UTF-8 text, one line per line of
the original (hard-wrapped as in the Gutenberg files), to

    ${GEAR_MODEL_CACHE:-$HOME/.cache/libgear}/texts/<name>.txt

Names: emma mansfieldpark northangerabbey persuasion prideprejudice
sensesensibility.  libgear uses prideprejudice for evaluation and
persuasion for calibration (different novels, so calibration never sees the
evaluation text).  Prints the paths written.

    scripts/fetch_texts.py [--deb FILE.deb] [--out DIR] [NAME ...]
"""
import argparse
import glob
import gzip
import os
import struct
import subprocess
import sys
import tempfile
import zlib

PACKAGE = "r-cran-janeaustenr"
DATA = "usr/lib/R/site-library/janeaustenr/data"


class RReader:
    """Just enough of R's XDR serialization (format 2 and 3) for the lazy-load
    index (lists of integer vectors with names) and character vectors."""

    def __init__(self, buf):
        self.b, self.i, self.refs = buf, 0, []

    def int(self):
        if self.i + 4 > len(self.b):
            raise ValueError("R data truncated")
        v = struct.unpack_from(">i", self.b, self.i)[0]
        self.i += 4
        return v

    def bytes(self, n):
        if n < 0 or self.i + n > len(self.b):
            raise ValueError("R data truncated")
        v = self.b[self.i:self.i + n]
        self.i += n
        return v

    def item(self):
        flags = self.int()
        t, has_attr, has_tag = flags & 0xFF, flags & (1 << 9), flags & (1 << 10)
        if t in (254, 242, 253, 251):  # NULL, empty env, global env, missing arg
            return None
        if t == 255:  # reference to an earlier symbol
            r = flags >> 8 or self.int()
            return self.refs[r - 1]
        if t == 1:  # symbol
            v = ("sym", self.item())
            self.refs.append(v)
            return v
        if t == 9:  # CHARSXP
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8")
        if t == 2:  # pairlist
            if has_attr:
                self.item()
            tag = self.item() if has_tag else None
            car, cdr = self.item(), self.item()
            return [(tag[1] if tag else None, car)] + (cdr or [])
        if t in (10, 13):  # logical, integer
            n = self.int()
            v = list(struct.unpack(">%di" % n, self.bytes(4 * n)))
        elif t == 14:  # double
            n = self.int()
            v = list(struct.unpack(">%dd" % n, self.bytes(8 * n)))
        elif t in (16, 19, 20):  # character vector, list, expression
            v = [self.item() for _ in range(self.int())]
        else:
            raise ValueError(f"R type {t} not handled")
        if has_attr:
            return v, dict(self.item())
        return v

    def top(self):
        if self.bytes(2) != b"X\n":
            raise ValueError("not XDR R serialization")
        version = self.int()
        self.int()
        self.int()
        if version == 3:
            self.bytes(self.int())  # native encoding
        return self.item()


def lazyload(rdx_path, rdb_path):
    """{name: object} of an R lazy-load database."""
    idx = RReader(gzip.decompress(open(rdx_path, "rb").read())).top()
    idx = dict(zip(idx[1]["names"], idx[0]))
    variables = idx["variables"]
    offsets, names = variables[0], variables[1]["names"]
    rdb = open(rdb_path, "rb").read()
    out = {}
    for (off, length), name in zip(offsets, names):
        blob = rdb[off:off + length]
        n = struct.unpack(">I", blob[:4])[0]
        raw = zlib.decompress(blob[4:])
        if len(raw) != n:
            raise ValueError(f"{name}: size mismatch")
        out[name] = RReader(raw).top()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deb", help="use this r-cran-janeaustenr .deb instead of apt-get download")
    ap.add_argument("--out", default=os.path.join(os.environ.get("GEAR_MODEL_CACHE") or
                                                  os.path.expanduser("~/.cache/libgear"), "texts"))
    ap.add_argument("names", nargs="*", default=["prideprejudice", "persuasion"])
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        deb = a.deb
        if not deb:
            subprocess.run(["apt-get", "download", PACKAGE], cwd=tmp, check=True,
                           stdout=sys.stderr)
            deb = glob.glob(os.path.join(tmp, PACKAGE + "_*.deb"))[0]
        subprocess.run(["dpkg-deb", "-x", deb, os.path.join(tmp, "x")], check=True)
        data = os.path.join(tmp, "x", DATA)
        novels = lazyload(os.path.join(data, "Rdata.rdx"), os.path.join(data, "Rdata.rdb"))
        for name in a.names:
            if name not in novels:
                sys.exit(f"fetch_texts.py: no novel '{name}' (have {', '.join(sorted(novels))})")
            lines = novels[name]
            lines = lines[0] if isinstance(lines, tuple) else lines
            path = os.path.join(a.out, name + ".txt")
            with open(path, "w", encoding="utf-8") as f:
                f.write("\n".join(line or "" for line in lines) + "\n")
            print(path)


if __name__ == "__main__":
    main()
