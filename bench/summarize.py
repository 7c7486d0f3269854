#!/usr/bin/env python3
"""summarize.py JSONL - the README tables from gear-bench's JSON lines:
bandwidth baselines, codec throughput (cpu backend, per thread count) and
attention speed-ups over the fp16 baseline."""
import json, sys

def load_rows(path):
    """gear-bench's JSON lines; an incomplete line (a run still writing, or
    cut short) is skipped with a warning."""
    rows = []
    for n, l in enumerate(open(path), 1):
        try:
            rows.append(json.loads(l))
        except ValueError:
            print(f"{path}:{n}: incomplete line skipped", file=sys.stderr)
    return rows

def main(path):
    rows = load_rows(path)
    bw = [r for r in rows if r["bench"] == "bw"]
    print("| threads | read GB/s | memcpy GB/s |\n|---|---|---|")
    for r in bw:
        print(f"| {r['threads']} | {r['read_gbs']:.2f} | {r['memcpy_gbs']:.2f} |")
    codec = [r for r in rows if r["bench"] == "codec"]
    if codec:
        print("\n| backend | preset | threads | compress GB/s (K / V) | per thread | decompress GB/s (K / V) | decompress / read bw |")
        print("|---|---|---|---|---|---|---|")
        keyed = {}
        for r in codec:
            keyed.setdefault((r["backend"], r["preset"], r["threads"]), {})[r["kind"]] = r
        for (be, p, th), kv in keyed.items():
            k, v = kv.get("key"), kv.get("value")
            if not k or not v:
                continue
            print(f"| {be} | {p} | {th} | {k['compress_gbs']:.3f} / {v['compress_gbs']:.3f} | "
                  f"{k['compress_gbs_per_thread']:.3f} / {v['compress_gbs_per_thread']:.3f} | "
                  f"{k['decompress_gbs']:.3f} / {v['decompress_gbs']:.3f} | "
                  f"{k['decompress_over_read']:.3f} / {v['decompress_over_read']:.3f} |")
    att = [r for r in rows if r["bench"] == "attn"]
    if att:
        base = {(r["T"], r["d"], r["G"], r["threads"], r["layers"]): r for r in att if r["impl"] == "fp16_baseline"}
        print("\n| tokens | head_dim | G | layers | fp16 ms (GB/s, /read) | preset | ms | GB/s | /read | speed-up | out err |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for r in att:
            if r["impl"] != "libgear":
                continue
            b = base.get((r["T"], r["d"], r["G"], r["threads"], r["layers"]))
            bs = f"{b['step_ms']:.0f} ({b['gbs']:.1f}, {b['over_read']:.2f})" if b else "-"
            print(f"| {r['T']} | {r['d']} | {r['G']} | {r['layers']} | {bs} | {r['preset']} | {r['step_ms']:.0f} | "
                  f"{r['gbs']:.2f} | {r['over_read']:.2f} | {r['speedup_vs_fp16']:.2f}x | {r['out_rel_err_vs_fp16']:.3f} |")

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
