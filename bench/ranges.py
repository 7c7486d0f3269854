#!/usr/bin/env python3
"""ranges.py RUN.jsonl [RUN.jsonl ...] - README's summary tables from
several gear-bench runs: each cell is the range (lowest-highest) over the
runs, and for attention also over the shapes at 16k tokens and more.

  codec: cpu backend, compress GB/s of fp16 per thread (K / V) and its ratio
         to the q4_0 baseline of the same run, at 1 thread; decompression
         into fp16 at 1 and at 2 threads.
  attn:  per preset and G (query heads per KV head): speed-up over the fp16
         cache step run beside each repeat, and compressed GB/s over the
         read bandwidth of the pass before it (/read).
  cache: attention in cache on one thread (--only cache): per head dim,
         G and cache, ns a (KV head, 64-token) pair, over the instruction
         floor (/floor), and the fp16 cache's ns over it (fp16/).
  --split-read GBS: the attention table twice, for the cells whose read
         passes ran below GBS and for the rest (these VMs switch between a
         calm state and one with faster reads and slower kernels)."""
import sys
from summarize import load_rows  # bench/summarize.py, next to this script

MIN_T = 16384


def span(xs, fmt):
    if not xs:
        return "-"
    lo, hi = min(xs), max(xs)
    a, b = fmt.format(lo), fmt.format(hi)
    return a if a == b else f"{a}–{b}"


def codec_table(runs):
    cells = {}  # (preset, kind) -> lists
    order = []
    for rows in runs:
        q4 = [r["quantize_gbs"] for r in rows if r["bench"] == "q4_0"]
        for r in rows:
            if r["bench"] != "codec" or r["backend"] != "cpu":
                continue
            key = (r["preset"], r["kind"])
            if key not in cells:
                cells[key] = {"c1": [], "q": [], "d1": [], "d2": []}
                order.append(key)
            c = cells[key]
            if r["threads"] == 1:
                c["c1"].append(r["compress_gbs_per_thread"])
                if q4:
                    c["q"].append(r["compress_gbs_per_thread"] / q4[0])
                c["d1"].append(r["decompress_gbs"])
            elif r["threads"] == 2:
                c["d2"].append(r["decompress_gbs"])
    if not order:
        return
    print("| preset | K/V | compress GB/s, 1 thread | ÷ q4_0 | decompress GB/s, 1 thread | 2 threads |")
    print("|---|---|---|---|---|---|")
    for p, kind in order:
        c = cells[(p, kind)]
        print(f"| {p} | {kind} | {span(c['c1'], '{:.2f}')} | {span(c['q'], '{:.2f}')} | "
              f"{span(c['d1'], '{:.2f}')} | {span(c['d2'], '{:.2f}')} |")


def attn_table(runs, keep=lambda r: True, title=""):
    cells, presets, groups = {}, [], []
    for rows in runs:
        for r in rows:
            if r["bench"] != "attn" or r["impl"] != "libgear":
                continue
            # columns in the runs' order, whichever cells the filter keeps
            if r["preset"] not in presets:
                presets.append(r["preset"])
            if r["T"] < MIN_T or not keep(r):
                continue
            key = (r["preset"], r["G"])
            if r["G"] not in groups:
                groups.append(r["G"])
            c = cells.setdefault(key, {"sp": [], "rd": []})
            c["sp"].append(r["speedup_vs_fp16"])
            c["rd"].append(r["over_read"])
    if not cells:
        return
    base = []
    for rows in runs:
        base += [r["over_read"] for r in rows
                 if r["bench"] == "attn" and r["impl"] == "fp16_baseline" and r["T"] >= MIN_T and keep(r)]
    print(f"\nattention at {MIN_T // 1024}k tokens and more{title}: ×fp16 (/read); "
          f"the fp16 baseline's /read {span(base, '{:.2f}')}\n")
    print("| | " + " | ".join(presets) + " |")
    print("|---|" + "---|" * len(presets))
    for g in sorted(groups):
        row = []
        for p in presets:
            c = cells.get((p, g))
            row.append(f"{span(c['sp'], '{:.1f}')}× ({span(c['rd'], '{:.2f}')})" if c else "-")
        print(f"| G = {g} | " + " | ".join(row) + " |")


def cache_table(runs):
    cells, order = {}, []
    for rows in runs:
        for r in rows:
            if r["bench"] != "incache":
                continue
            key = (r["d"], r["G"], r.get("preset", "fp16*"))
            if key not in cells:
                cells[key] = {"ns": [], "fl": [], "x": []}
                order.append(key)
            c = cells[key]
            # null: no figure (the repeats spread wider than their median,
            # or no floor measured for that kernel)
            for name, field in (("ns", "ns_pair"), ("fl", "over_floor"), ("x", "fp16_over")):
                if r.get(field) is not None and r[field] > 0:
                    c[name].append(r[field])
    if not order:
        return
    print("\nattention in cache, one thread\n")
    print("| d | G | cache | ns a pair | /floor | fp16/ |")
    print("|---|---|---|---|---|---|")
    for d, g, p in order:
        c = cells[(d, g, p)]
        print(f"| {d} | {g} | {p} | {span(c['ns'], '{:.0f}')} | {span(c['fl'], '{:.2f}')} | "
              f"{span(c['x'], '{:.2f}')} |")


def main(args):
    split = None
    if len(args) >= 2 and args[0] == "--split-read":
        split, args = float(args[1]), args[2:]
    if not args:
        sys.exit(__doc__)
    runs = [load_rows(p) for p in args]
    codec_table(runs)
    cache_table(runs)
    if split is None:
        attn_table(runs)
    else:
        attn_table(runs, lambda r: r["read_gbs"] < split, f", read passes below {split:g} GB/s")
        attn_table(runs, lambda r: r["read_gbs"] >= split, f", read passes at {split:g} GB/s and more")


if __name__ == "__main__":
    main(sys.argv[1:])
