#!/usr/bin/env python3
"""Times commands interleaved in one run and prints their medians and ratios.

On a shared machine one timing says little: another process may have had the
cores. So every command runs once per round, in turn, for several rounds, and
each one's median is compared with the first command's median (the baseline).

    python3 Benchmarks/interleave.py --rounds 3 \\
        --name keras --cmd 'python3 Benchmarks/keras_reference.py 1 Data/mnist' --seconds '\\(([0-9.]+) s\\)' \\
        --name fed --cmd '.build/release/fed bench train' --seconds 'threads: ([0-9.]+) s'

--seconds REGEX (one per command, optional) takes the time from the command's
output (the first group of the first match) instead of the wall time of the
whole command; use it to compare training times without start-up. --per N
divides a command's time by N (runs per command, e.g. --seeds). Prints every
round, then per command: the median, the range, and the baseline's median
divided by this one's (how many times as fast as the baseline).
"""
import argparse
import re
import shlex
import statistics
import subprocess
import sys
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--name", action="append", required=True)
    p.add_argument("--cmd", action="append", required=True)
    p.add_argument("--seconds", action="append", default=[])
    p.add_argument("--per", action="append", type=float, default=[])
    a = p.parse_args()
    if len(a.name) != len(a.cmd):
        sys.exit("one --name per --cmd")
    patterns = a.seconds + [""] * (len(a.cmd) - len(a.seconds))
    per = a.per + [1.0] * (len(a.cmd) - len(a.per))
    times = {name: [] for name in a.name}
    for r in range(a.rounds):
        for name, cmd, pattern, n in zip(a.name, a.cmd, patterns, per):
            start = time.perf_counter()
            out = subprocess.run(shlex.split(cmd), capture_output=True, text=True)
            wall = time.perf_counter() - start
            if out.returncode != 0:
                sys.exit(f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
            seconds = wall
            if pattern:
                m = re.search(pattern, out.stdout)
                if not m:
                    sys.exit(f"{name}: no match for {pattern!r} in:\n{out.stdout}")
                seconds = float(m.group(1))
            times[name].append(seconds / n)
            print(f"round {r + 1}: {name:>12} {seconds / n:8.2f} s", flush=True)
    base = statistics.median(times[a.name[0]])
    print(f"\n{'command':>12} {'median s':>9} {'min':>8} {'max':>8}  vs {a.name[0]}")
    for name in a.name:
        t = times[name]
        med = statistics.median(t)
        print(f"{name:>12} {med:9.2f} {min(t):8.2f} {max(t):8.2f}  {base / med:.2f}x as fast")


if __name__ == "__main__":
    main()
