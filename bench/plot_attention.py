#!/usr/bin/env python3
"""plot_attention.py JSONL [JSONL ...] SVG - attention speed-up over the
fp16 cache against context length, one panel per (head_dim, query heads
per KV head), one line per preset, from gear-bench's JSON lines.  Given
several runs, each point is the median of the runs' speed-ups.  Plain
SVG, no plotting library needed."""
import math, statistics, sys
from summarize import load_rows  # bench/summarize.py, next to this script

def main(srcs, dst):
    runs = {}
    for src in srcs:
        for r in load_rows(src):
            if r.get("bench") == "attn" and r.get("impl") == "libgear":
                runs.setdefault((r["preset"], r["T"], r["d"], r["G"]), []).append(r)
    if not runs:
        sys.exit("plot_attention.py: no attention rows in " + ", ".join(srcs))
    att = [dict(rs[0], speedup_vs_fp16=statistics.median(r["speedup_vs_fp16"] for r in rs)) for rs in runs.values()]
    panels = sorted({(r["d"], r["G"]) for r in att})
    presets = sorted({r["preset"] for r in att}, key=lambda p: ["kivi2", "gear2", "kivi4", "gear4"].index(p)
                     if p in ["kivi2", "gear2", "kivi4", "gear4"] else 9)
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    Ts = sorted({r["T"] for r in att})
    ymax = max(2.0, max(r["speedup_vs_fp16"] for r in att) * 1.1)
    pw, ph, m = 300, 220, 50
    W = m + len(panels) * (pw + m)
    H = ph + 2 * m + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W/2}" y="18" text-anchor="middle" font-size="13">Decode attention over the compressed cache: '
           f'speed-up vs fp16 cache (cpu backend, {att[0]["threads"]} threads, 8 KV heads)</text>']
    lx0, lx1 = math.log2(Ts[0]), math.log2(Ts[-1])
    for i, (d, G) in enumerate(panels):
        x0, y0 = m + i * (pw + m), m
        X = lambda T: x0 + (math.log2(T) - lx0) / max(lx1 - lx0, 1e-9) * pw
        Y = lambda s: y0 + ph - s / ymax * ph
        out.append(f'<rect x="{x0}" y="{y0}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        out.append(f'<text x="{x0 + pw/2}" y="{y0 - 6}" text-anchor="middle">head_dim {d}, {G} query head(s) per KV head</text>')
        for s in range(0, int(ymax) + 1):
            out.append(f'<line x1="{x0}" x2="{x0+pw}" y1="{Y(s)}" y2="{Y(s)}" stroke="#eee"/>')
            out.append(f'<text x="{x0-6}" y="{Y(s)+4}" text-anchor="end">{s}x</text>')
        out.append(f'<line x1="{x0}" x2="{x0+pw}" y1="{Y(1)}" y2="{Y(1)}" stroke="#444" stroke-dasharray="4,3"/>')
        for T in Ts:
            out.append(f'<text x="{X(T)}" y="{y0+ph+14}" text-anchor="middle">{f"{T // 1024}k" if T >= 1024 else T}</text>')
        out.append(f'<text x="{x0+pw/2}" y="{y0+ph+30}" text-anchor="middle">context tokens</text>')
        for j, p in enumerate(presets):
            pts = sorted((r["T"], r["speedup_vs_fp16"]) for r in att if r["preset"] == p and r["d"] == d and r["G"] == G)
            if not pts:
                continue
            c = colors[j % len(colors)]
            out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' %
                       (c, " ".join(f"{X(T):.1f},{Y(s):.1f}" for T, s in pts)))
            for T, s in pts:
                out.append(f'<circle cx="{X(T):.1f}" cy="{Y(s):.1f}" r="3" fill="{c}"/>')
    for j, p in enumerate(presets):
        x = m + j * 90
        out.append(f'<rect x="{x}" y="{H-22}" width="12" height="12" fill="{colors[j % len(colors)]}"/>')
        out.append(f'<text x="{x+16}" y="{H-12}">{p}</text>')
    out.append(f'<text x="{m + len(presets)*90 + 10}" y="{H-12}">dashed: fp16 cache (1x)</text>')
    out.append("</svg>")
    open(dst, "w").write("\n".join(out) + "\n")

if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1:-1], sys.argv[-1])
