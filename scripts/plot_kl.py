#!/usr/bin/env python3
"""Plot KL divergence against bits per entry, one point per preset, from the
JSON lines that `gear-llm ppl --json FILE` appends.  Writes a standalone SVG
by hand (no plotting library needed; the output is deterministic).

    scripts/plot_kl.py RESULTS.jsonl [MORE.jsonl ...] -o docs/kl-vs-bpe.svg \
        [--title TEXT] [--mode decode] [--table]

Each distinct (text, token window, mode) becomes one series.  Cache specs
with a calibration are shortened: "hc50+gear2" is gear2 on a cache with
head compression from hc50.gcal, "cq-4c8b+S+L" is CQ with GEAR's outliers
and low rank (outliers/group/rank overrides).  KL is drawn on a log axis; the fp16 baseline (KL 0) is left out.

--table also prints a Markdown table pooled over all series (windows): per
preset, perplexity from the summed log-likelihood (each window has tokens-1
scored next tokens), Delta-ppl against the pooled fp16 perplexity, and KL
and top-1 agreement weighted by tokens.  Every window must hold fp16.
"""
import argparse
import json
import math
import sys

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
MARKERS = ["circle", "square", "diamond", "triangle"]


def short(spec):
    """A readable name for a gear-llm cache spec: "cq-4c8b:outliers=0.02:group=64:rank=2:calib=cq.gcal"
    -> "cq-4c8b+S+L", "gear2:calib=hc50.gcal" -> "hc50+gear2", "fp16:calib=hc50.gcal" -> "hc50"."""
    parts = spec.split(":")
    base, rest = parts[0], parts[1:]
    calib = [p[6:] for p in rest if p.startswith("calib=")]
    knobs = [p for p in rest if not p.startswith("calib=")]
    stem = calib[0].rsplit("/", 1)[-1].rsplit(".", 1)[0] if calib else ""
    keys = {k.split("=")[0] for k in knobs}
    if base.startswith("cq-") and keys == {"outliers", "group", "rank"}:
        name = base + "+S+L"
    else:
        name = ":".join([base] + knobs)
    if stem.startswith("hc"):
        name = stem if name == "fp16" else f"{stem}+{name}"
    return name


def load(paths, mode):
    series = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                r = json.loads(line)
                if mode and r.get("mode") != mode:
                    continue
                skip, n = r.get("skip", 0), r.get("tokens", 0)
                key = f'{r.get("text", "?")} tokens {skip}-{skip + n}, {r.get("mode")}'
                series.setdefault(key, {})[short(r["preset"])] = r  # the last line of a preset wins
    return series


def pooled_table(series):
    """Markdown table pooled over the series (see --table)."""
    presets = []
    for s in series.values():
        for p in s:
            if p not in presets:
                presets.append(p)
    base_nll = sum(math.log(s["fp16"]["ppl"]) * (s["fp16"]["tokens"] - 1) for s in series.values())
    base_n = sum(s["fp16"]["tokens"] - 1 for s in series.values())
    base_ppl = math.exp(base_nll / base_n)
    rows = ["| preset | bpe | windows | tokens | ppl | Δppl % | KL | top-1 % |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in presets:
        rs = [s[p] for s in series.values() if p in s]
        nll = sum(math.log(r["ppl"]) * (r["tokens"] - 1) for r in rs)
        n1 = sum(r["tokens"] - 1 for r in rs)
        n = sum(r["tokens"] for r in rs)
        ppl = math.exp(nll / n1)
        kl = sum(r["kl"] * r["tokens"] for r in rs) / n
        top1 = sum(r["top1_pct"] * r["tokens"] for r in rs) / n
        rows.append(f"| {p} | {rs[0]['bpe']:.3f} | {len(rs)} | {n} | {ppl:.4f} | "
                    f"{100 * (ppl / base_ppl - 1):+.3f} | {kl:.5f} | {top1:.2f} |")
    return "\n".join(rows)


def marker(kind, x, y, color):
    if kind == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{color}"/>'
    if kind == "diamond":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y:.1f} {x:.1f},{y + 5:.1f} '
                f'{x - 5:.1f},{y:.1f}" fill="{color}"/>')
    if kind == "triangle":
        return (f'<polygon points="{x:.1f},{y - 5:.1f} {x + 5:.1f},{y + 4:.1f} {x - 5:.1f},{y + 4:.1f}" '
                f'fill="{color}"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{color}"/>'


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--title", default="SmolLM2-135M, KL(fp16 || preset) of next-token distributions")
    ap.add_argument("--mode", default=None, help="keep only this mode (decode or prefill)")
    ap.add_argument("--table", action="store_true", help="print a Markdown table pooled over the windows")
    a = ap.parse_args()
    series = load(a.inputs, a.mode)
    if a.table:
        print(pooled_table(series))
    series = {k: {p: r for p, r in s.items() if p != "fp16" and r.get("kl", 0) > 0} for k, s in series.items()}
    series = {k: s for k, s in series.items() if s}
    if not series:
        sys.exit("plot_kl.py: no points (need presets other than fp16 with KL > 0)")
    pts = [r for s in series.values() for r in s.values()]
    xmin = math.floor(min(r["bpe"] for r in pts)) - 0.5
    xmax = math.ceil(max(r["bpe"] for r in pts)) + 0.5
    ymin = 10 ** math.floor(math.log10(min(r["kl"] for r in pts)))
    ymax = 10 ** math.ceil(math.log10(max(r["kl"] for r in pts)))
    W, H, L, R, T, B = 640, 460, 70, 30, 40, 55
    pw, ph = W - L - R, H - T - B

    def sx(x):
        return L + (x - xmin) / (xmax - xmin) * pw

    def sy(y):
        return T + (math.log10(ymax) - math.log10(y)) / (math.log10(ymax) - math.log10(ymin)) * ph

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L + pw / 2:.0f}" y="22" text-anchor="middle" font-size="14">{a.title}</text>']
    x = math.ceil(xmin)
    while x <= xmax:
        o.append(f'<line x1="{sx(x):.1f}" y1="{T}" x2="{sx(x):.1f}" y2="{T + ph}" stroke="#ddd"/>')
        o.append(f'<text x="{sx(x):.1f}" y="{T + ph + 18}" text-anchor="middle">{x:g}</text>')
        x += 1
    e = int(math.log10(ymin))
    while 10 ** e <= ymax * 1.0001:
        y = 10 ** e
        o.append(f'<line x1="{L}" y1="{sy(y):.1f}" x2="{L + pw}" y2="{sy(y):.1f}" stroke="#ddd"/>')
        o.append(f'<text x="{L - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">1e{e}</text>')
        e += 1
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    o.append(f'<text x="{L + pw / 2:.0f}" y="{H - 14}" text-anchor="middle">bits per entry '
             f'(everything stored: codes, scales, outliers, low-rank factors, block header)</text>')
    o.append(f'<text x="16" y="{T + ph / 2:.0f}" text-anchor="middle" transform="rotate(-90 16 {T + ph / 2:.0f})">'
             f'mean KL divergence vs fp16 cache (nats, log scale)</text>')
    items = sorted(series.items())
    for i, (name, s) in enumerate(items):
        color, mk = COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]
        for preset, r in sorted(s.items(), key=lambda kv: kv[1]["bpe"]):
            o.append(marker(mk, sx(r["bpe"]), sy(r["kl"]), color))
        ly = T + ph - 12 - 18 * (len(items) - 1 - i)  # legend: bottom left, inside the frame
        o.append(marker(mk, L + 14, ly - 4, color))
        o.append(f'<text x="{L + 24}" y="{ly}" font-size="11">{name}</text>')
    # one label per preset, beside its highest point; presets that coincide
    # in every series (e.g. kivi4 and kcvt4 when head_dim = block = 64) share it
    names = sorted({p for s in series.values() for p in s})
    sig = {p: tuple((round(s[p]["bpe"], 6), round(s[p]["kl"], 12)) if p in s else None
                    for _, s in items) for p in names}
    groups = {}
    for p in names:
        groups.setdefault(sig[p], []).append(p)
    placed = []  # label boxes (x0, y0, x1, y1): a label that would overlap one moves down

    def free(box):
        return all(box[2] < b[0] or box[0] > b[2] or box[3] < b[1] or box[1] > b[3] for b in placed)

    for members in sorted(groups.values(), key=lambda m: -max(s[m[0]]["kl"] for _, s in items if m[0] in s)):
        pts_p = [s[members[0]] for _, s in items if members[0] in s]
        top = max(pts_p, key=lambda r: r["kl"])
        text = " = ".join(members)
        x, y = sx(top["bpe"]) + 8, sy(top["kl"]) - 7
        for _ in range(8):
            box = (x, y - 11, x + 6.6 * len(text), y + 2)
            if free(box):
                break
            y += 13
        placed.append((x, y - 11, x + 6.6 * len(text), y + 2))
        o.append(f'<text x="{x:.1f}" y="{y:.1f}">{text}</text>')
    o.append("</svg>")
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\n".join(o) + "\n")
    print(a.out)


if __name__ == "__main__":
    main()
