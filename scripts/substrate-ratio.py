#!/usr/bin/env python3
"""Time `epsim eval` on a substrate against the digital engine (issue 21's speed bar), the way
BENCHMARKS.md's substrate rows were measured.

Two modes, both printing every round's img/s, the medians and the ratios:

  alternate  each binary in turn (`--substrate SUB`), then the digital engine of the last binary,
             ROUNDS times, with THREADS threads: issue 21's own command
             (`epsim --threads 2 eval --model M --data fashion-mnist:test --subset 2000`).
  paired     two runs at the same time, one thread each, pinned to cores 0 and 1 (`taskset`),
             cores swapped every round, so that both see the same load on a shared machine:
             `A` and `B` are BIN (substrate SUB) or BIN@digital.

Examples:
  scripts/substrate-ratio.py alternate --rounds 9 target/release/epsim /tmp/epsim-old
  scripts/substrate-ratio.py paired --rounds 8 target/release/epsim@digital target/release/epsim
"""

import argparse
import re
import statistics
import subprocess


def command(exe, args, threads, substrate, cpu=None):
    cmd = [] if cpu is None else ["taskset", "-c", str(cpu)]
    cmd += [exe, "--threads", str(threads), "-q", "eval", "--model", args.model,
            "--data", args.data, "--subset", str(args.subset)]
    if substrate != "digital":
        cmd += ["--substrate", substrate]
    return cmd


def img_per_s(out, cmd):
    m = re.search(r"\(([0-9.]+) img/s\)", out)
    if not m:
        raise SystemExit(f"no img/s in the output of {' '.join(cmd)}:\n{out}")
    return float(m.group(1))


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    return img_per_s(p.stdout + p.stderr, cmd)


def spec(s, args):
    exe, _, sub = s.partition("@")
    return exe, sub or args.substrate


def alternate(args):
    names = args.binaries + [args.binaries[-1] + "@digital"]
    res = {n: [] for n in names}
    for _ in range(args.rounds):
        for n in names:
            exe, sub = spec(n, args)
            res[n].append(run(command(exe, args, args.threads, sub)))
    for n, v in res.items():
        print(f"{n}: median {statistics.median(v):.1f} img/s  rounds {v}")
    d = statistics.median(res[names[-1]])
    for n in args.binaries:
        print(f"{n} on {args.substrate} / digital: {d / statistics.median(res[n]):.3f}x")


def paired(args):
    if len(args.binaries) != 2:
        raise SystemExit("paired takes two runs, A and B")
    a, b = (spec(s, args) for s in args.binaries)
    ra, rb = [], []
    for r in range(args.rounds):
        ca, cb = (0, 1) if r % 2 == 0 else (1, 0)
        cmds = [command(a[0], args, 1, a[1], ca), command(b[0], args, 1, b[1], cb)]
        ps = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for c in cmds]
        outs = [p.communicate()[0] for p in ps]
        ra.append(img_per_s(outs[0], cmds[0]))
        rb.append(img_per_s(outs[1], cmds[1]))
    ratios = [x / y for x, y in zip(ra, rb)]
    print(f"A {args.binaries[0]}: median {statistics.median(ra):.1f} img/s  {ra}")
    print(f"B {args.binaries[1]}: median {statistics.median(rb):.1f} img/s  {rb}")
    print(f"A/B img/s: median {statistics.median(ratios):.3f}  {[round(x, 3) for x in ratios]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["alternate", "paired"])
    ap.add_argument("binaries", nargs="+", help="epsim binaries (paired: A B, BIN or BIN@digital)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2, help="alternate mode only")
    ap.add_argument("--model", default="models/quickstart-epcnn.safetensors")
    ap.add_argument("--data", default="fashion-mnist:test")
    ap.add_argument("--subset", type=int, default=2000)
    ap.add_argument("--substrate", default="netlist:pcm")
    args = ap.parse_args()
    (alternate if args.mode == "alternate" else paired)(args)


if __name__ == "__main__":
    main()
