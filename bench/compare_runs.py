#!/usr/bin/env python3
"""compare_runs.py [--fast GBPS] A.jsonl,A2.jsonl,... B.jsonl,B2.jsonl,...

Attention speed-ups over the fp16 baseline of two sets of gear-bench runs
(say, before and after a change, run interleaved), cell by cell, each set
split by the read bandwidth measured right before the repeat: some VMs
switch between a calm state and a fast-read one (here 31-38 against
45-63 GB/s) in which the compressed kernels run slower, so that a median
over runs in different states says more about the weather than about the
change.  Prints, per (tokens, head dim, G, preset), the median speed-up
and the number of runs of each set in each state (--fast: the read GB/s
from which a run counts as fast, default 42)."""
import json, statistics, sys


def cells(paths, fast):
    out = {}
    for path in paths:
        for line in open(path):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("bench") != "attn" or "preset" not in r:
                continue
            state = "fast" if r["read_gbs"] >= fast else "calm"
            key = (r["T"], r["d"], r["G"], r["preset"])
            out.setdefault(key, {}).setdefault(state, []).append(r["speedup_vs_fp16"])
    return out


def show(v):
    return f"{statistics.median(v):5.2f} (n{len(v)})" if v else "    -    "


def main(argv):
    fast = 42.0
    if len(argv) > 1 and argv[0] == "--fast":
        fast, argv = float(argv[1]), argv[2:]
    if len(argv) != 2:
        sys.exit(__doc__)
    a, b = (cells(x.split(","), fast) for x in argv)
    print(f"runs: A {argv[0]}\n      B {argv[1]}\nfast: read >= {fast} GB/s\n")
    print("tokens  d    G  preset   A calm      B calm      A fast      B fast")
    for key in sorted(set(a) | set(b)):
        ca, cb = a.get(key, {}), b.get(key, {})
        print("%-7d %-4d %d  %-7s " % key
              + "  ".join(show(c.get(s, [])) for s in ("calm", "fast") for c in (ca, cb)))


if __name__ == "__main__":
    main(sys.argv[1:])
