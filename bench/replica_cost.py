"""What a replica spends on a report it received and on one it did not
(issue 20: the arithmetic behind the per-CPU-second target).

    .venv/bin/python bench/replica_cost.py [--hosts 1000] [--seconds 10] [--rounds 3] [--connections 32]

Per round, bench/ingest.py's protocol (every host reports once, then
``--seconds`` over ``--connections`` with ``--hosts`` distinct hosts rotating;
CPU read once everything is merged): first ``trioscope serve`` as one process
on today's path (C1, CPU a report), then two ``trioscope serve --bus``
processes on one stream (a nats-server of the bench's own) and one PostgreSQL
database, each on a port of its own, every report posted to replica A:

* A: a report received (HTTP, validation, publishing, reading it back, merging);
  X = A - C1 is what the bus adds where a report arrives;
* B: a report it did not receive (F: reading the stream, decoding the envelope,
  merging);
* each replica's asyncio thread (nats-py) apart, and nats-server's CPU.

Printed per round and as medians, with C1 / (A + B): two replicas' reports per
CPU-second against one process, the figure bench/bus_ingest.py's target (0.8x)
is about, with the split between the replicas that ``--workers 2`` hides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from bus_ingest import serve  # noqa: E402
from ingest import Bus, cpu_seconds, database, drive, merged  # noqa: E402
from servers import free_port, stop  # noqa: E402


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of ``pid`` so far."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def asyncio_thread(before: dict[int, float], after: dict[int, float], main: int) -> float:
    """The busiest thread's CPU over the stretch besides the main (Trio's):
    nats-py's asyncio thread (Trio's worker threads stay idle here)."""
    return max((cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != main), default=0.0)


def one_process(args: argparse.Namespace, first: int) -> float:
    port = free_port()
    proc = serve(port, [], None)
    try:
        drive(port, args.connections, 600.0, first_agent=first, hosts=args.hosts, requests=args.hosts)
        merged(port)
        cpu = cpu_seconds(proc)
        result = drive(port, args.connections, args.seconds, first_agent=first, hosts=args.hosts)
        merged(port)
        cpu = cpu_seconds(proc) - cpu
    finally:
        stop(proc)
    return cpu / result["statuses"].get("202", 1)


def two_replicas(args: argparse.Namespace, first: int, round_no: int) -> dict[str, float]:
    bus = Bus()
    name = f"bench_replica_cost_{os.getpid()}_{round_no}"
    url = database(name)
    ports = free_port(), free_port()
    replicas = [serve(port, ["--bus", bus.url, "--database", url], None) for port in ports]
    try:
        drive(ports[0], args.connections, 600.0, first_agent=first, hosts=args.hosts, requests=args.hosts)
        for port in ports:
            merged(port)
        cpu = [cpu_seconds(r) for r in replicas]
        threads = [thread_cpu(r.pid) for r in replicas]
        nats = cpu_seconds(bus.proc.pid)
        result = drive(ports[0], args.connections, args.seconds, first_agent=first, hosts=args.hosts)
        for port in ports:
            merged(port)
        cpu = [cpu_seconds(r) - c for r, c in zip(replicas, cpu, strict=True)]
        bridge = [asyncio_thread(t, thread_cpu(r.pid), r.pid) for r, t in zip(replicas, threads, strict=True)]
        nats = cpu_seconds(bus.proc.pid) - nats
    finally:
        for replica in replicas:
            stop(replica)
        bus.close()
        database(name, drop_only=True)
    reports = result["statuses"].get("202", 1)
    return {"a": cpu[0] / reports, "b": cpu[1] / reports, "a_bridge": bridge[0] / reports,
            "b_bridge": bridge[1] / reports, "nats": nats / reports}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows: dict[str, list[float]] = {k: [] for k in ("c1", "a", "b", "x", "ratio", "a_bridge", "b_bridge", "nats")}
    for round_no in range(args.rounds):
        first = 10_000 * round_no
        c1 = one_process(args, first)
        found = two_replicas(args, first, round_no)
        found.update(c1=c1, x=found["a"] - c1, ratio=c1 / (found["a"] + found["b"]))
        for key, value in found.items():
            rows[key].append(value)
        print(f"round {round_no + 1}: one process C1 {1000 * c1:.3f} ms a report | A (received) "
              f"{1000 * found['a']:.3f} ms, X = A - C1 {1000 * found['x']:.3f} ms | B (not received) F "
              f"{1000 * found['b']:.3f} ms | asyncio thread A {1000 * found['a_bridge']:.3f} ms, B "
              f"{1000 * found['b_bridge']:.3f} ms | nats-server {1000 * found['nats']:.3f} ms | "
              f"C1 / (A + B) {found['ratio']:.2f}x", flush=True)
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"median of {args.rounds} ({args.hosts} hosts, {args.connections} connections, {args.seconds:g} s): "
          f"C1 {1000 * med['c1']:.3f} ms, X {1000 * med['x']:.3f} ms, F {1000 * med['b']:.3f} ms a report; "
          f"two replicas' reports per CPU-second {med['ratio']:.2f}x one process "
          f"(bench/bus_ingest.py's target for --workers 2: 0.8x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
