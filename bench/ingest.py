"""Report ingest throughput of `trioscope serve` against a no-op Quart-Trio POST
handler under the same Hypercorn settings, measured in the same run.

    .venv/bin/python bench/ingest.py [--connections 32] [--seconds 10] [--rounds 3]

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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop, trioscope  # noqa: E402
PYTHON = sys.executable


def drive(port: int, connections: int, seconds: float, first_agent: int) -> dict:
    out = subprocess.run(
        [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports",
         "--connections", str(connections), "--seconds", str(seconds), "--first-agent", str(first_agent)],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )
    return json.loads(out.stdout)


def measure(kind: str, connections: int, seconds: float, round_no: int) -> tuple[float, dict]:
    port = free_port()
    if kind == "baseline":
        proc = start([PYTHON, str(ROOT / "bench/noop_server.py"), str(port)])
    else:
        proc = trioscope(port)
    try:
        drive(port, connections, 2.0, first_agent=10_000 * round_no)  # warm-up
        result = drive(port, connections, seconds, first_agent=10_000 * round_no)
    finally:
        stop(proc)
    accepted = result["statuses"].get("202", 0)
    return accepted / result["elapsed"], result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ratios, base_rates, our_rates = [], [], []
    for round_no in range(args.rounds):
        base, _ = measure("baseline", args.connections, args.seconds, round_no)
        ours, detail = measure("trioscope", args.connections, args.seconds, round_no)
        base_rates.append(base)
        our_rates.append(ours)
        ratios.append(ours / base)
        print(f"round {round_no + 1}: baseline {base:7.1f}/s  trioscope {ours:7.1f}/s  ratio {ours / base:.2f}  "
              f"statuses {detail['statuses']}  body {detail['body_bytes']} B", flush=True)
    ratio = statistics.median(ratios)
    print(f"median: baseline {statistics.median(base_rates):.1f} reports/s, trioscope "
          f"{statistics.median(our_rates):.1f} reports/s, ratio {ratio:.2f}x "
          f"({args.connections} connections, {args.seconds:g}s per round)")
    print(f"target >= 0.7x: {'met' if ratio >= 0.7 else 'MISSED'}; seed's 50 reports/s: "
          f"{'met' if statistics.median(our_rates) >= 50 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
