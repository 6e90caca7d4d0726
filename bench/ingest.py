"""Report ingest throughput of `trioscope serve` against a no-op Quart-Trio POST
handler under the same Hypercorn settings, measured in the same run.

    .venv/bin/python bench/ingest.py [--connections 32] [--seconds 10] [--rounds 3]
    .venv/bin/python bench/ingest.py --hosts 1000 --target 0.25   # issue 20: distinct hosts rotating
    .venv/bin/python bench/ingest.py --hosts 1000 --bus --workers 2  # issue 20: the report bus

With ``--bus`` each round also measures ``trioscope serve --bus --workers N``
(a nats-server of the bench's own on a free port, a PostgreSQL database of its
own) beside a no-op Quart-Trio POST served by as many processes on one socket;
server CPU is the process tree (parent and workers), nats-server's and the load
generator's CPU are stated beside it. A bus round counts a report once every
worker has merged it (the stream's lag 0 everywhere) before the CPU is read.

Each round starts a fresh server (baseline, then trioscope), drives it from a
separate load-generator process (bench/loadgen.py: one keep-alive connection per
agent, each request a realistic report with a fresh timestamp), and counts 202s
per second. Target (issue 4): trioscope >= 0.7x the baseline; the seed asks for
50 reports/s.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop, trioscope  # noqa: E402
PYTHON = sys.executable


NATS_SERVER = "/usr/sbin/nats-server"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
UNLIMITED = ("--reports-per-address", "10000000")
"""One load generator is one client address: its budget must not be what is measured."""


def drive(port: int, connections: int, seconds: float, first_agent: int, hosts: int = 0,
          requests: int | None = None) -> dict:
    out = subprocess.run(
        [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports",
         "--connections", str(connections), "--seconds", str(seconds), "--first-agent", str(first_agent),
         "--hosts", str(hosts), *(["--requests", str(requests)] if requests is not None else [])],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout)


def merged(port: int, answers: int = 1) -> None:
    """Wait until the server has no report left to merge (with a bus: nothing
    left on the stream either) in ``answers`` answers in a row: each GET is a
    new connection, which the kernel hands to any of the workers."""
    deadline = time.monotonic() + 300
    in_a_row = 0
    while in_a_row < answers:
        stats = httpx.get(f"http://127.0.0.1:{port}/api/v1/query/stats").json()
        done = not stats["topology"]["pending_reports"] and not stats.get("bus", {}).get("lag")
        in_a_row = in_a_row + 1 if done else 0
        if time.monotonic() > deadline:
            raise RuntimeError("reports still pending after 300 s")
        if not done:
            time.sleep(0.1)


def cpu_seconds(proc: subprocess.Popen[str] | int) -> float:
    """CPU time of a process and its children (the workers)."""
    root = psutil.Process(proc if isinstance(proc, int) else proc.pid)
    times = [p.cpu_times() for p in (root, *root.children(recursive=True))]
    return sum(t.user + t.system for t in times)


def children_cpu() -> float:
    """CPU time of the waited-for children (the load generators) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Bus:
    """A nats-server of the bench's own (JetStream, store in a temporary directory)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = tempfile.mkdtemp(prefix="trioscope-bench-nats-")
        self.proc = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", self.store],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.close)  # also when it or a server on it fails to start and the bench stops there
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("nats-server did not start") from None
                time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)


def database(name: str, drop_only: bool = False) -> str:
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        if not drop_only:
            db.execute(f"CREATE DATABASE {name}")
            atexit.register(database, name, drop_only=True)  # dropped again at exit: a no-op if it was
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


def measure(kind: str, connections: int, seconds: float, round_no: int, hosts: int,
            workers: int = 1) -> tuple[float, float, dict]:
    """Reports accepted per second, and per second of the server's CPU time.
    ``kind``: baseline (no-op POST), trioscope (today's path), or bus
    (``--bus --workers``); ``detail`` has the load generator's and nats-server's CPU."""
    port = free_port()
    bus: Bus | None = None
    name = f"bench_ingest_{os.getpid()}_{round_no}"
    if kind == "baseline":
        proc = start([PYTHON, str(ROOT / "bench/noop_server.py"), str(port),
                      *(["--workers", str(workers)] if workers > 1 else [])])
    elif kind == "bus":
        bus = Bus()
        proc = trioscope(port, *UNLIMITED, "--bus", bus.url, "--workers", str(workers), "--database", database(name))
    else:
        proc = trioscope(port, *UNLIMITED)
    answers = 3 * workers if kind == "bus" else 1
    try:
        first = 10_000 * round_no
        if hosts > connections:  # warm-up: every host once (what follows is each host's next report)
            drive(port, connections, 600.0, first_agent=first, hosts=hosts, requests=hosts)
        else:
            drive(port, connections, 2.0, first_agent=first)
        if kind != "baseline":
            merged(port, answers)  # the warm-up's merges are not the measured rounds'
        cpu = cpu_seconds(proc)
        nats_cpu = cpu_seconds(bus.proc.pid) if bus is not None else 0.0
        loadgen_cpu = children_cpu()
        result = drive(port, connections, seconds, first_agent=first, hosts=hosts)
        result["loadgen_cpu"] = children_cpu() - loadgen_cpu
        if kind != "baseline":
            merged(port, answers)  # the reports accepted are merged too before the CPU time is read
        cpu = cpu_seconds(proc) - cpu
        result["nats_cpu"] = cpu_seconds(bus.proc.pid) - nats_cpu if bus is not None else 0.0
        result["server_cpu"] = cpu
    finally:
        stop(proc)
        if bus is not None:
            bus.close()
            database(name, drop_only=True)
    accepted = result["statuses"].get("202", 0)
    return accepted / result["elapsed"], accepted / cpu, result


def bus_rounds(args: argparse.Namespace) -> int:
    """Per round: no-op POST and today's path with one process; no-op POST and
    ``--bus`` with ``--workers`` processes. Ratios within each round, medians printed."""
    rows: dict[str, list[float]] = {k: [] for k in ("one", "one_cpu", "bus", "bus_cpu", "one_vs_noop", "bus_vs_noop",
                                                   "bus_vs_one", "cpu_vs_one")}
    for round_no in range(args.rounds):
        base1, base1_cpu, _ = measure("baseline", args.connections, args.seconds, round_no, args.hosts)
        one, one_cpu, one_detail = measure("trioscope", args.connections, args.seconds, round_no, args.hosts)
        base_n, base_n_cpu, _ = measure("baseline", args.connections, args.seconds, round_no, args.hosts, args.workers)
        bus, bus_cpu, bus_detail = measure("bus", args.connections, args.seconds, round_no, args.hosts, args.workers)
        for key, value in (("one", one), ("one_cpu", one_cpu), ("bus", bus), ("bus_cpu", bus_cpu),
                           ("one_vs_noop", one / base1), ("bus_vs_noop", bus / base_n), ("bus_vs_one", bus / one),
                           ("cpu_vs_one", bus_cpu / one_cpu)):
            rows[key].append(value)
        print(f"round {round_no + 1}: no-op x1 {base1:7.1f}/s  one process {one:7.1f}/s ({one / base1:.2f}x)  "
              f"| no-op x{args.workers} {base_n:7.1f}/s  --bus --workers {args.workers} {bus:7.1f}/s "
              f"({bus / base_n:.2f}x of its no-op, {bus / one:.2f}x one process)  "
              f"| reports per server CPU-second: one {one_cpu:6.1f}  bus {bus_cpu:6.1f} ({bus_cpu / one_cpu:.2f}x)  "
              f"| CPU s: server one {one_detail['server_cpu']:.1f} bus {bus_detail['server_cpu']:.1f}, "
              f"nats-server {bus_detail['nats_cpu']:.1f}, load generator one {one_detail['loadgen_cpu']:.1f} "
              f"bus {bus_detail['loadgen_cpu']:.1f}  statuses one {one_detail['statuses']} bus {bus_detail['statuses']}",
              flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"median ({args.connections} connections, {args.hosts or args.connections} hosts, {args.seconds:g}s per "
          f"measure): one process {med['one']:.1f}/s = {med['one_vs_noop']:.2f}x its no-op (target >= 0.25: "
          f"{'met' if med['one_vs_noop'] >= 0.25 else 'MISSED'}); --bus --workers {args.workers} {med['bus']:.1f}/s = "
          f"{med['bus_vs_noop']:.2f}x its no-op, {med['bus_vs_one']:.2f}x one process (target >= 1.5: "
          f"{'met' if med['bus_vs_one'] >= 1.5 else 'MISSED'}); reports per server CPU-second "
          f"{med['cpu_vs_one']:.2f}x one process (target >= 0.8: {'met' if med['cpu_vs_one'] >= 0.8 else 'MISSED'})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=0,
                        help="distinct hosts sent in turn over the connections (issue 20: 1,000); default one "
                             "per connection")
    parser.add_argument("--target", type=float, default=0.7)
    parser.add_argument("--bus", action="store_true",
                        help="also measure --bus with --workers processes (issue 20), each beside its no-op POST")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.bus:
        return bus_rounds(args)
    ratios, base_rates, our_rates, cpu_ratios = [], [], [], []
    for round_no in range(args.rounds):
        base, base_cpu, _ = measure("baseline", args.connections, args.seconds, round_no, args.hosts)
        ours, our_cpu, detail = measure("trioscope", args.connections, args.seconds, round_no, args.hosts)
        base_rates.append(base)
        our_rates.append(ours)
        ratios.append(ours / base)
        cpu_ratios.append(our_cpu / base_cpu)
        print(f"round {round_no + 1}: baseline {base:7.1f}/s  trioscope {ours:7.1f}/s  ratio {ours / base:.2f}  "
              f"| per server CPU-second: baseline {base_cpu:7.1f}  trioscope {our_cpu:7.1f}  ratio "
              f"{our_cpu / base_cpu:.2f}  statuses {detail['statuses']}  body {detail['body_bytes']} B", flush=True)
    print(f"median per server CPU-second ratio {statistics.median(cpu_ratios):.2f}x (what the machine's other "
          f"load does not change: time waiting for a core is no server's work)")
    ratio = statistics.median(ratios)
    print(f"median: baseline {statistics.median(base_rates):.1f} reports/s, trioscope "
          f"{statistics.median(our_rates):.1f} reports/s, ratio {ratio:.2f}x "
          f"({args.connections} connections, {args.hosts or args.connections} hosts, {args.seconds:g}s per round)")
    print(f"target >= {args.target:g}x: {'met' if ratio >= args.target else 'MISSED'}; seed's 50 reports/s: "
          f"{'met' if statistics.median(our_rates) >= 50 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
