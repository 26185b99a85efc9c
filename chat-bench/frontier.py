#!/usr/bin/env python3
"""roomcast and socketioxide side by side on W1, interleaved, in one invocation.

W1 (issue 17): 10 rooms x 50 clients over 2 server instances and one private Redis, every
client sending 128-byte bodies at RATE messages a second. Each round runs every rate and, for
each rate, every variant (their order rotates from round to round, as this host drifts by
about 10% within the hour). One markdown table at the end.

Usage:
  python3 chat-bench/frontier.py [--rounds 3] [--rates 10,20,40] [--seconds 3]
      [--rooms 10] [--phases random|even] [--no-peer] [--no-defaults] [--keep-limits]
      [--jsonl FILE]
      ['label|ENV=a,ENV2=b|args' ...]

--rooms N runs N rooms of 50 (W1 is 10): fewer rooms keep each connection's traffic (and so
what batching can gain per write) the same while the box has cores to spare, which is how a
host with more cores than this one sees W1.

--phases: where each roomcast sender's messages fall within the period. `random` (the default)
is what the peer's client does (sio-client draws each client's offset at random), so both
servers meet the same arrivals: a connection's frames sometimes come microseconds apart.
`even` spreads the senders evenly (chat-bench's own default: each connection's frames come
evenly spaced, which a flush tick cannot merge at 10/s); until session 15 the roomcast runs
used it, the peer's random.

Variants:
  roomcast default      chat-bench fanout with the servers' defaults
  roomcast 0/0          WRITE_COALESCE_MS=0 WRITE_COALESCE_MAX_MS=0 (no flush tick)
  socketioxide          sio-server x2 + socketioxide-redis on a private redis-server, driven by
                        sio-client (bench-peers/socketioxide)
  'label|ENV|args'      more roomcast variants: environment for chat-bench and the servers it
                        starts, and extra chat-bench arguments (as in ab.py)

Above 20/s per client (the servers' default per-user limit is 20/s, burst 40) the roomcast runs
get USER_MESSAGES_PER_SECOND, USER_MESSAGES_BURST, FRAME_RATE_PER_SECOND and FRAME_BURST
raised to twice (bursts four times) the rate, unless --keep-limits: then refusals show up
under "rejected". Binaries: BENCH (default target/release/chat-bench), the servers it starts
(chat-bench's --server-bin default), SIO_SERVER and SIO_CLIENT (default
bench-peers/socketioxide/sio-*/target/release/), REDIS_SERVER_BIN (default redis-server).

Columns: deliveries per server CPU-second (all instances, user + kernel; Redis not included),
server user-space µs per delivery, end-to-end latency p50/p99 (ranges over the rounds), lost
deliveries that nobody was told about (roomcast: of messages that were not refused; the
peer has no acks, so all its loss is silent), messages refused with an error frame (roomcast
only), duplicates, and the load generator's own CPU: per second of the window and per
delivery. A second table sets each roomcast variant against socketioxide round by round
(runs of one round are minutes apart, and this host drifts): deliveries per server
CPU-second as a multiple of socketioxide's, and the p99 difference in ms. Each roomcast run's
line (on stderr, as it finishes) also gives the servers' context switches per 1,000 deliveries.
"""

import json
import os
import shlex
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
BENCH = os.environ.get("BENCH", os.path.join(ROOT, "target", "release", "chat-bench"))
SIO = os.path.join(ROOT, "bench-peers", "socketioxide")
SIO_SERVER = os.environ.get("SIO_SERVER", os.path.join(SIO, "sio-server", "target", "release", "sio-server"))
SIO_CLIENT = os.environ.get("SIO_CLIENT", os.path.join(SIO, "sio-client", "target", "release", "sio-client"))
REDIS = os.environ.get("REDIS_SERVER_BIN", "redis-server")

ROOMS, PER_ROOM, INSTANCES, BODY = 10, 50, 2, 128


def usage(msg=None):
    if msg:
        print(msg, file=sys.stderr)
    sys.exit(__doc__)


def parse_args(argv):
    opts = {"rooms": ROOMS, "rounds": 3, "rates": [10, 20, 40], "seconds": 3.0, "peer": True,
            "defaults": True, "keep_limits": False, "jsonl": None, "variants": [],
            "phases": "random"}
    it = iter(argv)
    for a in it:
        if a in ("-h", "--help"):
            usage()
        elif a == "--rooms":
            opts["rooms"] = int(next(it))
        elif a == "--rounds":
            opts["rounds"] = int(next(it))
        elif a == "--rates":
            opts["rates"] = [float(x) for x in next(it).split(",") if x]
        elif a == "--seconds":
            opts["seconds"] = float(next(it))
        elif a == "--phases":
            opts["phases"] = next(it)
            if opts["phases"] not in ("random", "even"):
                usage("--phases is random or even")
        elif a == "--no-peer":
            opts["peer"] = False
        elif a == "--no-defaults":
            opts["defaults"] = False
        elif a == "--keep-limits":
            opts["keep_limits"] = True
        elif a == "--jsonl":
            opts["jsonl"] = next(it)
        elif a.startswith("--"):
            usage(f"unknown flag {a}")
        else:
            label, env, args = (a.split("|") + ["", ""])[:3]
            extra = dict(p.partition("=")[::2] for p in env.split(",") if p)
            opts["variants"].append(("roomcast", label, extra, shlex.split(args)))
    variants = []
    if opts["defaults"]:
        variants.append(("roomcast", "roomcast default", {}, []))
        variants.append(("roomcast", "roomcast 0/0",
                         {"WRITE_COALESCE_MS": "0", "WRITE_COALESCE_MAX_MS": "0"}, []))
    variants += opts["variants"]
    if opts["peer"]:
        variants.append(("sio", "socketioxide", {}, []))
    if not variants:
        usage("nothing to run")
    opts["variants"] = variants
    return opts


def fmt_rate(rate):
    return f"{rate:g}"


def messages_for(rate, seconds):
    return max(1, round(rate * seconds))


def limits_env(rate):
    """The per-user and per-connection limits raised above `rate` (demo-server's env names)."""
    r = int(rate)
    return {
        "USER_MESSAGES_PER_SECOND": str(2 * r),
        "USER_MESSAGES_BURST": str(4 * r),
        "FRAME_RATE_PER_SECOND": str(max(50, 2 * r)),
        "FRAME_BURST": str(max(100, 4 * r)),
    }


def run_roomcast(extra, args, rate, opts):
    env = dict(os.environ)
    if rate > 20 and not opts["keep_limits"]:
        env.update(limits_env(rate))
    env.update(extra)
    bench = env.pop("BENCH", BENCH)
    argv = [bench, "fanout", "--redis", "--instances", str(INSTANCES),
            "--rooms", str(opts["rooms"]), "--clients", str(opts["rooms"] * PER_ROOM),
            "--body-bytes", str(BODY), "--rate", fmt_rate(rate),
            "--messages", str(messages_for(rate, opts["seconds"])),
            "--phases", opts["phases"], *args, "--json"]
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write(out.stderr[-2000:])
        return None
    rep = json.loads(out.stdout)
    t = rep["traffic"]
    return {
        "per_cpu": rep.get("delivered_per_server_cpu_s") or 0.0,
        "user_us": 1e6 / (rep.get("delivered_per_server_user_cpu_s") or float("inf")),
        "p50": t["latency"]["p50_us"] / 1000,
        "p99": t["latency"]["p99_us"] / 1000,
        "lost": t["lost_deliveries"],
        "rejected": sum(t["rejected"].values()),
        "dup": t["duplicates"],
        "reordered": t["reordered"],
        "bench_per_s": rep.get("bench_cpu_s", 0.0) / max(rep.get("window_s", 0.0), 1e-9),
        "bench_us": rep.get("bench_cpu_s", 0.0) * 1e6 / max(t["delivered"], 1),
        "switches_per_1k": rep.get("server_switches_per_1000_deliveries"),
        "notes": ([f"closed {t['closed']}"] if t["closed"] else [])
        + (["drain timed out"] if t["drain_timed_out"] else [])
        + ([f"{t['unanswered']} unanswered"] if t["unanswered"] else [])
        + ([f"rejected {t['rejected']}"] if t["rejected"] else [])
        + ([f"{t['refused_delivered']} copies of refused messages delivered"]
           if t.get("refused_delivered") else [])
        + ([f"{t['reordered']} reordered"] if t["reordered"] else [])
        + ([f"{t['foreign']} foreign"] if t["foreign"] else []),
        "raw": rep,
    }


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on {port}")


def run_sio(rate, opts):
    procs = []
    tmp = os.environ.get("TMPDIR", "/tmp")
    try:
        rp = free_port()
        redis = subprocess.Popen([REDIS, "--port", str(rp), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no", "--protected-mode", "no"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(redis)
        wait_port(rp, redis, "redis-server")
        url = f"redis://127.0.0.1:{rp}/?protocol=resp3"
        ports, pids = [], []
        for i in range(INSTANCES):
            p = free_port()
            log = open(os.path.join(tmp, f"frontier-sio-{os.getpid()}-{i}.log"), "w")
            srv = subprocess.Popen([SIO_SERVER, str(p), url], stdout=subprocess.DEVNULL, stderr=log)
            procs.append(srv)
            wait_port(p, srv, "sio-server")
            ports.append(str(p))
            pids.append(str(srv.pid))
        time.sleep(0.5)
        argv = [SIO_CLIENT, "fanout", "--ports", ",".join(ports), "--pids", ",".join(pids),
                "--redis-pid", str(redis.pid), "--clients", str(opts["rooms"] * PER_ROOM),
                "--rooms", str(opts["rooms"]),
                "--messages", str(messages_for(rate, opts["seconds"])), "--rate", fmt_rate(rate),
                "--body-bytes", str(BODY), "--json"]
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stderr[-2000:])
            return None
        rep = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
    notes = []
    if rep["conn_errors"] or rep["joined"] != opts["rooms"] * PER_ROOM:
        notes.append(f"joined {rep['joined']}, {rep['conn_errors']} connect errors")
    if rep["echoes"] or rep["wrong_room"]:
        notes.append(f"echoes {rep['echoes']}, wrong room {rep['wrong_room']}")
    if rep["drain_timed_out"]:
        notes.append("drain timed out")
    return {
        "per_cpu": rep["delivered_per_server_cpu_s"],
        "user_us": 1e6 / rep["delivered_per_server_user_cpu_s"] if rep["delivered_per_server_user_cpu_s"] else 0.0,
        "p50": rep["latency_ms"]["p50"],
        "p99": rep["latency_ms"]["p99"],
        "lost": rep["lost_deliveries"],
        "rejected": None,
        "dup": rep["duplicates"],
        "reordered": None,
        "bench_per_s": rep["bench_cpu_per_s"],
        "bench_us": rep["bench_cpu_s"] * 1e6 / max(rep["delivered"], 1),
        "notes": notes,
        "raw": rep,
    }


def span(xs, fmt):
    lo, hi = min(xs), max(xs)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}–{fmt(hi)}"


def main():
    opts = parse_args(sys.argv[1:])
    variants = opts["variants"]
    results = {}
    jsonl = open(opts["jsonl"], "a") if opts["jsonl"] else None
    for r in range(opts["rounds"]):
        for rate in opts["rates"]:
            # Rotate the order each round: no variant always runs first (or after the peer).
            shift = r % len(variants)
            for kind, label, extra, args in variants[shift:] + variants[:shift]:
                try:
                    row = run_sio(rate, opts) if kind == "sio" else run_roomcast(extra, args, rate, opts)
                except Exception as e:  # a failed run is reported, the others go on
                    print(f"round {r + 1} {label} {fmt_rate(rate)}/s: {e}", file=sys.stderr)
                    row = None
                key = (label, rate)
                if row is None:
                    print(f"round {r + 1} {label} {fmt_rate(rate)}/s: failed", file=sys.stderr)
                    results.setdefault(key, [])
                    continue
                if jsonl:
                    jsonl.write(json.dumps({"round": r + 1, "variant": label, "rate": rate,
                                            "report": row["raw"]}) + "\n")
                    jsonl.flush()
                del row["raw"]
                row["round"] = r + 1
                results.setdefault(key, []).append(row)
                print(f"round {r + 1} {label} {fmt_rate(rate)}/s: {row['per_cpu'] / 1000:.0f}k/CPU-s "
                      f"user {row['user_us']:.2f} µs p50 {row['p50']:.1f} p99 {row['p99']:.1f} ms "
                      f"lost {row['lost']} rejected {row['rejected']} dup {row['dup']} "
                      f"bench {row['bench_per_s']:.2f} CPU-s/s {row['bench_us']:.2f} µs/delivery "
                      + (f"server switches {row['switches_per_1k']:.1f}/1k deliveries "
                         if row.get("switches_per_1k") is not None else "")
                      + f"{' '.join(row['notes'])}",
                      file=sys.stderr, flush=True)
    shape = "W1" if opts["rooms"] == ROOMS else "W1's per-room shape"
    print(f"{shape}: {opts['rooms']} rooms x {PER_ROOM} clients, {INSTANCES} instances + Redis, "
          f"{BODY}-byte bodies, ~{opts['seconds']:g} s of sending per run, {opts['rounds']} round(s), "
          f"roomcast senders' phases {opts['phases']} (the peer's client: random)")
    print()
    print("| variant | rate/s | runs | deliveries per server CPU-s | server user µs/delivery "
          "| p50 ms | p99 ms | lost (silent) | rejected (reported) | dup | bench CPU-s per s "
          "| bench µs per delivery |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for rate in opts["rates"]:
        for _, label, _, _ in variants:
            rows = results.get((label, rate), [])
            if not rows:
                print(f"| {label} | {fmt_rate(rate)} | 0 | failed | | | | | | | | |")
                continue
            c = {k: [row[k] for row in rows] for k in rows[0]}
            rejected = "n/a" if c["rejected"][0] is None else str(sum(c["rejected"]))
            notes = sorted({n for row in rows for n in row["notes"]})
            print(f"| {label} | {fmt_rate(rate)} | {len(rows)} "
                  f"| {span(c['per_cpu'], lambda x: f'{x / 1000:.0f}k')} "
                  f"| {span(c['user_us'], lambda x: f'{x:.2f}')} "
                  f"| {span(c['p50'], lambda x: f'{x:.1f}')} | {span(c['p99'], lambda x: f'{x:.1f}')} "
                  f"| {sum(c['lost'])} | {rejected} | {sum(c['dup'])} "
                  f"| {span(c['bench_per_s'], lambda x: f'{x:.2f}')} "
                  f"| {span(c['bench_us'], lambda x: f'{x:.2f}')} |"
                  + (f" {'; '.join(notes)}" if notes else ""))
    print_against_peer(opts, results)


def print_against_peer(opts, results):
    """Each roomcast variant against socketioxide in the same round: issue 17's two goals
    (at least 1.3x the deliveries per server CPU-second, p99 at most socketioxide's + 1 ms)."""
    peer = [label for kind, label, _, _ in opts["variants"] if kind == "sio"]
    if not peer:
        return
    print()
    print("Against socketioxide, round by round (issue 17: at least 1.3x, p99 at most "
          "socketioxide's + 1 ms):")
    print()
    print("| variant | rate/s | deliveries per server CPU-s, × socketioxide's | "
          "p99 − socketioxide's p99, ms |")
    print("|---|---|---|---|")
    for rate in opts["rates"]:
        theirs = {row["round"]: row for row in results.get((peer[0], rate), [])}
        for kind, label, _, _ in opts["variants"]:
            if kind == "sio":
                continue
            pairs = [(row, theirs[row["round"]]) for row in results.get((label, rate), [])
                     if row["round"] in theirs]
            if not pairs:
                continue
            ratios = ", ".join(f"{ours['per_cpu'] / peer_row['per_cpu']:.2f}"
                               for ours, peer_row in pairs)
            gaps = ", ".join(f"{ours['p99'] - peer_row['p99']:+.1f}" for ours, peer_row in pairs)
            print(f"| {label} | {fmt_rate(rate)} | {ratios} | {gaps} |")


if __name__ == "__main__":
    main()
