#!/usr/bin/env python3
"""Interleaved A/B runs of chat-bench: this host drifts by about 10% within an hour, so
variants are compared round by round (A, B, A, B, ...) rather than one after the other.

Usage:
  python3 chat-bench/ab.py ROUNDS 'label|ENV=a,ENV2=b|bench args' ['label2|...|...' ...]

Each variant is `label|environment|arguments`: the environment is given to chat-bench (the
servers it starts inherit it, e.g. WRITE_COALESCE_MAX_MS=16) and the arguments follow
`chat-bench`, e.g. `fanout --redis` (BENCH=path in the environment runs another chat-bench
build). `--server-bin NAME` may name a binary from
BINS=name=path,name2=path2 to compare two builds. Prints one markdown row per variant:
deliveries per server CPU-second (min-max), server user-space µs per delivery, p50 and
p99 ranges, bench CPU, loss.
"""

import json
import os
import shlex
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.environ.get("BENCH", os.path.join(HERE, "..", "target", "release", "chat-bench"))


def parse_variant(spec):
    label, env, args = (spec.split("|") + ["", ""])[:3]
    extra = {}
    for pair in filter(None, env.split(",")):
        k, _, v = pair.partition("=")
        extra[k] = v
    argv = shlex.split(args)
    bins = dict(b.split("=", 1) for b in filter(None, os.environ.get("BINS", "").split(",")))
    if "--server-bin" in argv:
        i = argv.index("--server-bin") + 1
        argv[i] = bins.get(argv[i], argv[i])
    return label, extra, argv


def run(extra, argv):
    env = dict(os.environ, **extra)
    bench = env.pop("BENCH", BENCH)
    out = subprocess.run([bench, *argv, "--json"], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return None
    return json.loads(out.stdout)


def span(xs, fmt):
    return fmt(min(xs)) if min(xs) == max(xs) else f"{fmt(min(xs))}–{fmt(max(xs))}"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    variants = [parse_variant(s) for s in sys.argv[2:]]
    results = {label: [] for label, _, _ in variants}
    for r in range(rounds):
        for label, extra, argv in variants:
            rep = run(extra, argv)
            if rep is None:
                print(f"round {r + 1} {label}: failed", file=sys.stderr)
                continue
            t = rep["traffic"]
            row = (
                rep["delivered_per_server_cpu_s"],
                t["latency"]["p50_us"] / 1000,
                t["latency"]["p99_us"] / 1000,
                rep.get("bench_cpu_s", 0.0),
                t["lost_deliveries"] + t["duplicates"] + t["reordered"],
                1e6 / (rep.get("delivered_per_server_user_cpu_s") or float("inf")),
            )
            results[label].append(row)
            print(
                f"round {r + 1} {label}: {row[0] / 1000:.0f}k/CPU-s p50 {row[1]:.1f} "
                f"p99 {row[2]:.1f} ms bench {row[3]:.2f} s bad {row[4]} user {row[5]:.2f} µs",
                file=sys.stderr,
                flush=True,
            )
    print(
        "| variant | deliveries per server CPU-s | server user space, µs per delivery "
        "| p50 (ms) | p99 (ms) | bench CPU-s | lost+dup+reordered |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, rows in results.items():
        if not rows:
            print(f"| {label} | failed | | | | | |")
            continue
        cols = list(zip(*rows))
        print(
            f"| {label} | {span(cols[0], lambda x: f'{x / 1000:.0f}k')} "
            f"| {span(cols[5], lambda x: f'{x:.2f}')} "
            f"| {span(cols[1], lambda x: f'{x:.1f}')} | {span(cols[2], lambda x: f'{x:.1f}')} "
            f"| {span(cols[3], lambda x: f'{x:.2f}')} | {sum(cols[4])} |"
        )


if __name__ == "__main__":
    main()
