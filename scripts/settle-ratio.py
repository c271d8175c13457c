#!/usr/bin/env python3
"""Time `epsim eval` under several settles side by side (issue 19's inference bar), the way
BENCHMARKS.md's settling rows were measured.

Every round runs each flag set in turn (`epsim --threads THREADS -q eval --model M --data D` plus
the set's flags); after ROUNDS rounds it prints, per flag set, the free-phase steps per image and
the accuracy (the same in every round: the runs are deterministic, and a difference is reported as
an error), every round's img/s, the median, and the steps and speed ratios against the first set.

Example (the first set is the reference: the model's plain T1):
  scripts/settle-ratio.py --model M --data fashion-mnist:test --rounds 3 \\
      "" "--tol 1e-2" "--tol 3e-3" "--steps 20"
"""

import argparse
import re
import shlex
import statistics
import subprocess

LINE = re.compile(
    r"(?:T = (?P<t>[0-9]+): |(?P<steps>[0-9.]+) steps per image: )accuracy (?P<acc>[0-9.]+) "
    r"\((?P<ips>[0-9.]+) img/s\)"
)


def run(args, flags):
    cmd = [args.epsim, "--threads", str(args.threads), "-q", "eval", "--model", args.model,
           "--data", args.data]
    if args.subset:
        cmd += ["--subset", str(args.subset)]
    cmd += shlex.split(flags)
    p = subprocess.run(cmd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    m = LINE.search(out)
    if p.returncode != 0 or not m:
        raise SystemExit(f"`{shlex.join(cmd)}` failed (exit {p.returncode}):\n{out}")
    return m.group("steps") or m.group("t"), m.group("acc"), float(m.group("ips")), out.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epsim", default="target/release/epsim")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--subset", type=int, default=0, help="first N images (0: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("flags", nargs="+", help='flag sets, e.g. "" "--tol 1e-2" (the first is the reference)')
    args = ap.parse_args()

    res = {f: [] for f in args.flags}
    seen = {}
    for r in range(args.rounds):
        for f in args.flags:
            steps, acc, ips, line = run(args, f)
            if f in seen and seen[f] != (steps, acc):
                raise SystemExit(f"flags {f!r}: round {r + 1} gave {steps} steps, accuracy {acc}; "
                                 f"earlier {seen[f]}")
            seen[f] = (steps, acc)
            res[f].append(ips)
            print(f"round {r + 1} [{f or 'plain T1'}] {line}", flush=True)

    ref = args.flags[0]
    ref_ips = statistics.median(res[ref])
    ref_steps = float(seen[ref][0]) if seen[ref][0] else None
    print("\n| flags | steps / image | accuracy | img/s (rounds) | median | vs first |")
    print("| --- | ---: | ---: | --- | ---: | --- |")
    for f in args.flags:
        steps, acc = seen[f]
        med = statistics.median(res[f])
        fewer = ""
        if steps and ref_steps:
            fewer = f"{ref_steps / float(steps):.2f}× fewer steps, "
        rounds = ", ".join(f"{v:.1f}" for v in res[f])
        print(f"| {f or '(plain T1)'} | {steps or '–'} | {acc} | {rounds} | {med:.1f} | "
              f"{fewer}{med / ref_ips:.2f}× speed |")


if __name__ == "__main__":
    main()
