#!/usr/bin/env python3
"""Summarize several runs of `cargo bench -p sim --bench ops` (divan text output).

Usage: python3 sim/benches/summarize_ops.py run1.txt run2.txt ...
Prints, per benchmark, the per-run divan medians (GFLOP/s, items = FLOPs) and their median over runs,
the SGEMM peak (best per-run median among the sgemm_peak shapes, then the median over runs) and each
conv op's fraction of that peak (per run, then the median of those fractions).
"""
import re
import statistics
import sys

UNIT = {"item/s": 1e-9, "Kitem/s": 1e-6, "Mitem/s": 1e-3, "Gitem/s": 1.0, "Titem/s": 1e3}
TUNIT = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def parse(path):
    out = {}
    stack = []
    lines = open(path, encoding="utf-8").read().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^([│ ]*)[├╰]─ (\S+)\s*(.*)$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 3
        name = m.group(2)
        stack = stack[:depth] + [name]
        cells = [c.strip() for c in m.group(3).split("│")]
        if len(cells) < 4 or not cells[0]:
            continue
        tm = re.match(r"([\d.]+) (\S+)", cells[2])
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        tcells = [c.strip() for c in nxt.split("│") if c.strip()]
        gf = None
        for c in tcells:
            pass
        thr = re.findall(r"([\d.]+) ((?:[KMGT])?item/s)", nxt)
        if len(thr) >= 3:
            v, u = thr[2]
            gf = float(v) * UNIT[u]
        out["/".join(stack)] = (float(tm.group(1)) * TUNIT[tm.group(2)], gf)
    return out


runs = [parse(p) for p in sys.argv[1:]]
names = sorted(set().union(*[r.keys() for r in runs]))
print("| benchmark | median time per run (ms) | GFLOP/s per run | median GFLOP/s |")
print("|---|---|---|---|")
for n in names:
    ts = [r[n][0] for r in runs if n in r]
    gs = [r[n][1] for r in runs if n in r and r[n][1] is not None]
    print(f"| {n} | {', '.join(f'{t:.3g}' for t in ts)} | {', '.join(f'{g:.0f}' for g in gs)} | "
          f"{statistics.median(gs):.0f} |" if gs else f"| {n} | {ts} | | |")
peaks = []
for r in runs:
    p = max((v[1], k) for k, v in r.items() if k.startswith("sgemm_peak/"))
    peaks.append(p)
print()
print("peak per run (GFLOP/s, shape):", ", ".join(f"{g:.0f} ({k.split('/')[-1]})" for g, k in peaks))
peak_med = statistics.median(g for g, _ in peaks)
print(f"median peak: {peak_med:.0f} GFLOP/s")
print()
print("| conv op | fraction of same-run peak, per run | median |")
print("|---|---|---|")
for n in names:
    if not n.startswith("conv_"):
        continue
    fr = [r[n][1] / p[0] for r, p in zip(runs, peaks) if n in r]
    print(f"| {n} | {', '.join(f'{f:.0%}' for f in fr)} | {statistics.median(fr):.0%} |")
