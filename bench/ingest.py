"""Report ingest throughput of `trioscope serve` against a no-op Quart-Trio POST
handler under the same Hypercorn settings, measured in the same run.

    .venv/bin/python bench/ingest.py [--connections 32] [--seconds 10] [--rounds 3]
    .venv/bin/python bench/ingest.py --hosts 1000 --target 0.25   # issue 20: distinct hosts rotating

Each round starts a fresh server (baseline, then trioscope), drives it from a
separate load-generator process (bench/loadgen.py: one keep-alive connection per
agent, each request a realistic report with a fresh timestamp), and counts 202s
per second. Target (issue 4): trioscope >= 0.7x the baseline; the seed asks for
50 reports/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop, trioscope  # noqa: E402
PYTHON = sys.executable


def drive(port: int, connections: int, seconds: float, first_agent: int, hosts: int = 0,
          requests: int | None = None) -> dict:
    out = subprocess.run(
        [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports",
         "--connections", str(connections), "--seconds", str(seconds), "--first-agent", str(first_agent),
         "--hosts", str(hosts), *(["--requests", str(requests)] if requests is not None else [])],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout)


def merged(port: int) -> None:
    """Wait until the server has no report left to merge."""
    deadline = time.monotonic() + 120
    while httpx.get(f"http://127.0.0.1:{port}/api/v1/query/stats").json()["topology"]["pending_reports"]:
        if time.monotonic() > deadline:
            raise RuntimeError("reports still pending after 120 s")
        time.sleep(0.1)


def cpu_seconds(proc: subprocess.Popen[str]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def measure(kind: str, connections: int, seconds: float, round_no: int, hosts: int) -> tuple[float, float, dict]:
    """Reports accepted per second, and per second of the server's CPU time."""
    port = free_port()
    if kind == "baseline":
        proc = start([PYTHON, str(ROOT / "bench/noop_server.py"), str(port)])
    else:
        proc = trioscope(port)
    try:
        first = 10_000 * round_no
        if hosts > connections:  # warm-up: every host once (what follows is each host's next report)
            drive(port, connections, 600.0, first_agent=first, hosts=hosts, requests=hosts)
        else:
            drive(port, connections, 2.0, first_agent=first)
        if kind != "baseline":
            merged(port)  # the warm-up's merges are not the measured rounds'
        cpu = cpu_seconds(proc)
        result = drive(port, connections, seconds, first_agent=first, hosts=hosts)
        if kind != "baseline":
            merged(port)  # the reports accepted are merged too before the CPU time is read
        cpu = cpu_seconds(proc) - cpu
    finally:
        stop(proc)
    accepted = result["statuses"].get("202", 0)
    return accepted / result["elapsed"], accepted / cpu, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=0,
                        help="distinct hosts sent in turn over the connections (issue 20: 1,000); default one "
                             "per connection")
    parser.add_argument("--target", type=float, default=0.7)
    args = parser.parse_args()
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
