#!/usr/bin/env python3
"""Mutation fuzzing of gear-llm's GGUF reader, model loader and tokenizer.

Writes mutated copies of a small GGUF file (truncations, random bytes and
runs of 0x00/0xff/0x7f/0x80/0x40 over 8 bytes, mostly in the header and
metadata) and feeds them, in batches, to fuzz_gguf (fuzz_gguf.c built with
AddressSanitizer and UBSan), which parses, loads and tokenizes each one.
Any sanitizer report or crash fails the run.

    python3 examples/llm/make_tiny_gguf.py /tmp/tiny.gguf
    gcc -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \\
        -Iexamples/llm -Iinclude examples/llm/fuzz_gguf.c examples/llm/gguf.c \\
        examples/llm/model.c examples/llm/tokenizer.c examples/llm/util.c \\
        -L.libs -lgear -Wl,-rpath,$PWD/.libs -lm -o /tmp/fuzz_gguf
    python3 examples/llm/fuzz_gguf.py /tmp/tiny.gguf /tmp/fuzz_gguf --seeds 1-8 --n 3000
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("harness")
    ap.add_argument("--seeds", default="1-8")
    ap.add_argument("--n", type=int, default=3000, help="files per seed")
    a = ap.parse_args()
    lo, _, hi = a.seeds.partition("-")
    src = open(a.gguf, "rb").read()
    head = min(len(src), 12000)  # header + metadata of the tiny model
    bad = 0
    for seed in range(int(lo), int(hi or lo) + 1):
        rnd = random.Random(seed)
        with tempfile.TemporaryDirectory() as tmp:
            files = []
            for i in range(a.n):
                b = bytearray(src)
                if rnd.random() < 0.2:
                    b = b[:rnd.randrange(len(b))]
                else:
                    for _ in range(rnd.randint(1, 8)):
                        p = rnd.randrange(head if rnd.random() < 0.8 else len(b))
                        if rnd.random() < 0.5:
                            b[p] = rnd.randrange(256)
                        else:
                            b[p:p + 8] = bytes([rnd.choice([0, 1, 0xff, 0x7f, 0x80, 0x40])] * 8)
                fn = os.path.join(tmp, f"{i}.gguf")
                with open(fn, "wb") as f:
                    f.write(b)
                files.append(fn)
            r = subprocess.run([a.harness] + files, capture_output=True, text=True)
            print(f"seed {seed}: {a.n} files, exit {r.returncode}")
            if r.returncode:
                print(r.stderr[-4000:])
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
