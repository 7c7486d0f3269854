#!/usr/bin/env python3
"""How much of the K/V variance KV-head compression keeps, with keys after
RoPE (what a KV cache holds and libgear compresses) and before it.

Reads a `gear-llm dump-kv --layers all` safetensors file, undoes the rotary
embedding on the keys (ggml's interleaved-pair convention, positions
skip..skip+T-1, base from the file's metadata), and for every layer runs the
same mean-centred PCA over groups of G KV heads that `gear calibrate` runs,
on the first half of the tokens; it reports the variance kept on the second
half (held out), per layer and pooled, for keys after RoPE, keys before
RoPE, and values.

    scripts/rope_pca.py DUMP.safetensors --group 3 --keep 96 48
"""
import argparse
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    meta = head.pop("__metadata__", {})
    out = {}
    for name, t in head.items():
        if t["dtype"] != "F16":
            sys.exit(f"{name}: dtype {t['dtype']} (expected F16)")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float16).reshape(t["shape"]).astype(np.float64)
    return out, meta


def unrope(k, base, pos0):
    """k: [H, T, d] after RoPE (pairs 2i, 2i+1 rotated by pos * base^(-2i/d))."""
    H, T, d = k.shape
    inv = base ** (-np.arange(0, d, 2) / d)
    ang = np.outer(np.arange(pos0, pos0 + T), inv)  # [T, d/2]
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = k[..., 0::2], k[..., 1::2]
    out = np.empty_like(k)
    out[..., 0::2] = x0 * c + x1 * s   # rotation by -angle
    out[..., 1::2] = -x0 * s + x1 * c
    return out


def kept(x, group, keeps):
    """x: [H, T, d].  Fit PCA on the first half of the tokens, measure the
    variance kept on the second half.  Returns {keep: (kept, total)}."""
    H, T, d = x.shape
    res = {m: [0.0, 0.0] for m in keeps}
    half = T // 2
    for j in range(H // group):
        g = x[j * group:(j + 1) * group]                        # [G, T, d]
        rows = g.transpose(1, 0, 2).reshape(T, group * d)        # [T, G*d]
        fit, test = rows[:half], rows[half:]
        mu = fit.mean(0)
        w, v = np.linalg.eigh(np.cov((fit - mu).T, bias=True))
        v = v[:, ::-1]
        e = test - mu
        total = float((e * e).sum())
        for m in keeps:
            p = e @ v[:, :m]
            res[m][0] += float((p * p).sum())
            res[m][1] += total
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dump")
    ap.add_argument("--group", type=int, default=3)
    ap.add_argument("--keep", type=int, nargs="+", default=[96, 48])
    a = ap.parse_args()
    t, meta = read_safetensors(a.dump)
    shape = meta.get("model_shape", "")
    base = float(shape.split("rope base")[1]) if "rope base" in shape else 10000.0
    skip = int(meta.get("skip_tokens", "0"))
    layers = sorted(int(n.split(".")[1]) for n in t if n.endswith(".k"))
    pooled = {}
    print(f"# {a.dump}: {len(layers)} layers, rope base {base:g}, heads per group {a.group}; "
          "PCA on the first half of the tokens, variance kept on the second half")
    print("layer " + " ".join(f"{w}@{m:<4}" for m in a.keep for w in ("Kpost", "Kpre ", "V    ")))
    for l in layers:
        k, v = t[f"layer.{l}.k"], t[f"layer.{l}.v"]
        sets = {"Kpost": k, "Kpre ": unrope(k, base, skip), "V    ": v}
        cols = []
        for m in a.keep:
            for name, x in sets.items():
                r = kept(x, a.group, [m])[m]
                acc = pooled.setdefault((name, m), [0.0, 0.0])
                acc[0] += r[0]
                acc[1] += r[1]
                cols.append(f"{r[0] / r[1]:10.4f}")
        print(f"{l:5d} " + " ".join(cols))
    print("pooled " + " ".join(f"{name.strip()}@{m}={v[0] / v[1]:.4f}" for (name, m), v in pooled.items()))


if __name__ == "__main__":
    main()
