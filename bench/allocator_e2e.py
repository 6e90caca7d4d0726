"""Commands end to end (create, deliver, report) per server CPU-second with the
server on each allocator, in the same run.

    .venv/bin/python bench/allocator_e2e.py [--allocators pymalloc,jemalloc] [--copies 2] [--cycles 8]

``--copies`` servers per allocator (SQLite, one process each, started with
``TRIOSCOPE_SERVER_ALLOCATOR``) are driven by bench/poll_holder.py's
``interleave`` mode: each server gets the load in turn for ``--slice`` seconds
per cycle, so a machine that slows down or speeds up (these are shared, noisy
machines) weighs on every allocator alike. Prints each server's commands per
server CPU-second per cycle and each allocator's median against the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from workers import HOLDER, PYTHON, Server, enroll, write_agents  # noqa: E402


def started(allocator: str) -> Server:
    os.environ["TRIOSCOPE_SERVER_ALLOCATOR"] = allocator
    try:
        return Server(f"sqlite-{allocator}")
    finally:
        del os.environ["TRIOSCOPE_SERVER_ALLOCATOR"]


async def main_async(args: argparse.Namespace) -> int:
    allocators = args.allocators.split(",")
    servers = [started(a) for _ in range(args.copies) for a in allocators]
    try:
        work = tempfile.mkdtemp(prefix="trioscope-bench-allocator-")
        files = [write_agents(work, await enroll(s.port, args.clients), f"agents-{i}.json")
                 for i, s in enumerate(servers)]
        argv = [PYTHON, HOLDER, "interleave", "--workers", str(args.clients // args.drivers), "--slice",
                str(args.slice), "--settle", "1", "--cycles", str(args.cycles)]
        for server, agents in zip(servers, files, strict=True):
            argv += ["--target", f"e2e:{server.port}:{server.pid}:{agents}"]
        per_driver = args.clients // args.drivers
        # Each driver its own clients' agents: an agent holds one poll at a time, as a real one does.
        drivers = [subprocess.Popen([*argv, "--first-index", str(d * per_driver)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, cwd=ROOT)
                   for d in range(args.drivers)]
        outputs = [d.communicate(timeout=3 * (args.cycles + 1) * args.slice * len(servers) + 120) for d in drivers]
        for d, (_, err) in zip(drivers, outputs, strict=True):
            if d.returncode != 0:
                raise RuntimeError(f"interleave failed:\n{err[-3000:]}")
        parts = [json.loads(out)["targets"] for out, _ in outputs]
        per_cpu: dict[str, list[float]] = {a: [] for a in allocators}
        for i, server in enumerate(servers):
            # Each driver counts its own commands; CPU is the server's over the same windows.
            rates = [sum(part[i]["rates"][k] for part in parts) for k in range(args.cycles)]
            cpu = parts[0][i]["server_cpu"]
            values = [r / c for r, c in zip(rates, cpu, strict=True) if c]
            per_cpu[server.kind.removeprefix("sqlite-")] += values
            print(f"{server.kind:<16} commands/s {' '.join(f'{r:6.1f}' for r in rates)}")
            print(f"{'':<16} per CPU-s  {' '.join(f'{v:6.1f}' for v in values)}")
        base = statistics.median(per_cpu[allocators[0]])
        for allocator, values in per_cpu.items():
            median = statistics.median(values)
            print(f"{allocator}: median {median:.1f} commands per server CPU-second, "
                  f"{median / base:.2f}x {allocators[0]}")
        return 0
    finally:
        for s in servers:
            s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--allocators", default="pymalloc,jemalloc", help="comma-separated; ratios against the first")
    parser.add_argument("--copies", type=int, default=2, help="servers per allocator")
    parser.add_argument("--clients", type=int, default=64, help="concurrent client tasks (one agent each)")
    parser.add_argument("--drivers", type=int, default=2, help="load-generator processes sharing the clients")
    parser.add_argument("--slice", type=float, default=4.0, help="seconds per server in each cycle")
    parser.add_argument("--cycles", type=int, default=8, help="counted cycles (after a warm-up cycle)")
    raise SystemExit(trio.run(main_async, parser.parse_args()))


if __name__ == "__main__":
    main()
