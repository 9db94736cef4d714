#!/usr/bin/env python3
"""Paired accuracy of two builds of `fed` on the same seeds.

Runs `A bench train --seeds N ARGS...` and the same with B, takes each seed's
test accuracy from the lines `seed S: 0.xxxx`, and prints both per seed, the
paired differences (B - A) in points, their mean, standard deviation and
range, and whether the mean is within --within points (default 0.3).

    python3 Benchmarks/paired_accuracy.py /tmp/fed-old .build/release/fed --seeds 12 --data Data/mnist
"""
import argparse
import re
import statistics
import subprocess
import sys


def accuracies(fed, seeds, extra):
    out = subprocess.run([fed, "bench", "train", "--seeds", str(seeds)] + extra, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{fed} failed:\n{out.stdout}\n{out.stderr}")
    found = {int(s): float(a) for s, a in re.findall(r"seed (\d+): ([0-9.]+)\s*$", out.stdout, re.M)}
    if len(found) != seeds:
        sys.exit(f"{fed}: expected {seeds} seeds, found {len(found)}:\n{out.stdout}")
    return found


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--seeds", type=int, default=12)
    p.add_argument("--within", type=float, default=0.3)
    p.add_argument("--data")
    args = p.parse_args()
    extra = ["--data", args.data] if args.data else []
    a = accuracies(args.a, args.seeds, extra)
    b = accuracies(args.b, args.seeds, extra)
    diffs = []
    print(f"{'seed':>5} {'A':>8} {'B':>8} {'B-A (points)':>13}")
    for s in sorted(a):
        d = 100 * (b[s] - a[s])
        diffs.append(d)
        print(f"{s:>5} {a[s]:8.4f} {b[s]:8.4f} {d:13.2f}")
    mean = statistics.mean(diffs)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    print(f"A: mean {100 * statistics.mean(a.values()):.2f}%  B: mean {100 * statistics.mean(b.values()):.2f}%")
    print(f"paired difference B - A over {len(diffs)} seeds: mean {mean:+.3f} points, sd {sd:.3f}, "
          f"range {min(diffs):+.2f} .. {max(diffs):+.2f}; within {args.within}: {'yes' if abs(mean) <= args.within else 'NO'}")


if __name__ == "__main__":
    main()
