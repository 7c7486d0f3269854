#!/usr/bin/env python3
"""sdpa_baseline.py - PyTorch's scaled_dot_product_attention on the decode
shapes of bench/gpu_bench.cu (one query token per sequence, 8 KV heads,
GQA 4, head_dim 128, fp16 K/V, 4k..128k tokens, batch 1..32), timed with
CUDA events in the same session, and the ratio to libgear's decode step
over compressed caches when --gear names gear-gpu-bench's JSON lines.

  python3 bench/sdpa_baseline.py [--json OUT.jsonl] [--gear gear.jsonl]

Exits 77 when torch or a GPU is missing.  GQA uses SDPA's enable_gqa
(torch >= 2.5); older torch repeats K/V per query head, which materializes
a copy and is reported as such ("gqa": "repeat")."""
import argparse
import json
import sys

TS = [4096, 16384, 65536, 131072]
BS = [1, 4, 16, 32]
HKV, GQA, D = 8, 4, 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--gear")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        print("SKIP: torch is not installed")
        return 77
    if not torch.cuda.is_available():  # also true for ROCm builds of torch
        print("SKIP: torch sees no GPU")
        return 77
    dev = torch.device("cuda")
    ver = tuple(int("".join(c for c in x if c.isdigit()) or 0)
                for x in torch.__version__.split(".")[:2])
    gqa_native = ver >= (2, 5)
    out = open(a.json, "w") if a.json else None
    name = torch.cuda.get_device_name(0)
    print(f"sdpa: torch {torch.__version__} on {name}; GQA "
          f"{'native (enable_gqa)' if gqa_native else 'by repeating K/V'}")
    res = {}
    free = torch.cuda.mem_get_info()[0]
    for T in TS:
        for B in BS:
            need = 2 * B * HKV * T * D * 2 * (1 if gqa_native else 1 + GQA)
            if need > 0.8 * free:
                continue
            q = torch.randn(B, HKV * GQA, 1, D, device=dev, dtype=torch.float16)
            k = torch.randn(B, HKV, T, D, device=dev, dtype=torch.float16)
            v = torch.randn(B, HKV, T, D, device=dev, dtype=torch.float16)

            def step():
                if gqa_native:
                    return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
                kr = k.repeat_interleave(GQA, dim=1)
                vr = v.repeat_interleave(GQA, dim=1)
                return F.scaled_dot_product_attention(q, kr, vr)

            step()
            torch.cuda.synchronize()
            times = []
            for _ in range(a.reps):
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                for _ in range(a.iters):
                    step()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1) * 1e3 / a.iters)
            times.sort()
            us = times[len(times) // 2]
            res[(T, B)] = us
            rec = {"bench": "sdpa", "device": name, "torch": torch.__version__, "T": T,
                   "batch": B, "kv_heads": HKV, "gqa": GQA if gqa_native else "repeat",
                   "head_dim": D, "us": round(us, 3)}
            if out:
                out.write(json.dumps(rec) + "\n")
            del q, k, v
            torch.cuda.empty_cache()
    print("%-8s" % "T \\ B" + "".join("%10d" % b for b in BS))
    for T in TS:
        print("%-8d" % T + "".join("%10.1f" % res[(T, B)] if (T, B) in res else "%10s" % "-"
                                   for B in BS))
    if a.gear:
        gear = {}
        for line in open(a.gear):
            r = json.loads(line)
            if r.get("bench") == "gpu_attn":
                gear[(r["preset"], r["T"], r["batch"])] = r["us"]
        for preset in sorted({p for p, _, _ in gear}):
            print(f"\n{preset}: SDPA time / libgear time (> 1: libgear faster)")
            print("%-8s" % "T \\ B" + "".join("%10d" % b for b in BS))
            for T in TS:
                row = []
                for B in BS:
                    g, s = gear.get((preset, T, B)), res.get((T, B))
                    row.append("%10.2f" % (s / g) if g and s else "%10s" % "-")
                    if g and s and out:
                        out.write(json.dumps({"bench": "gear_vs_sdpa", "preset": preset, "T": T,
                                              "batch": B, "gear_us": g, "sdpa_us": s,
                                              "sdpa_over_gear": round(s / g, 4)}) + "\n")
                print("%-8d" % T + "".join(row))
    if out:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
