"""What the operations edge (request ids, the CORS check, the access log's
middleware; issue 22) costs on the busiest route: report ingest, against the
code of a commit before it, measured in the same run.

    .venv/bin/python bench/edge_overhead.py --baseline-ref 2d317c0 [--connections 16] [--seconds 8] [--rounds 3]

Each round starts, one after another, a fresh server of the baseline code, of
this code with the defaults (access log off), and of this code with
``--access-log true`` (its lines to /dev/null), drives each from a separate
load generator (bench/loadgen.py: keep-alive connections, realistic ~20 KB
reports) and counts 202s per second. Ratios are per round, medians printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from ingest import drive  # noqa: E402
from listing_memory import baseline_source  # noqa: E402
from servers import free_port, start, stop  # noqa: E402


def measure(source: Path | None, flags: list[str], connections: int, seconds: float, round_no: int) -> float:
    port = free_port()
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": tempfile.mkdtemp(prefix="edge-bench-")}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    proc = start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--local-probe", "false", *flags], env)
    try:
        drive(port, connections, 2.0, first_agent=10_000 * round_no)  # warm-up
        result = drive(port, connections, seconds, first_agent=10_000 * round_no)
    finally:
        stop(proc)
    return result["statuses"].get("202", 0) / result["elapsed"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-ref", required=True)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        baseline = baseline_source(args.baseline_ref, Path(scratch))
        rates: dict[str, list[float]] = {"baseline": [], "defaults": [], "access log": []}
        for round_no in range(args.rounds):
            rates["baseline"].append(measure(baseline, ["--log-level", "warning"], args.connections, args.seconds, round_no))
            rates["defaults"].append(measure(None, ["--log-level", "warning"], args.connections, args.seconds, round_no))
            rates["access log"].append(measure(None, ["--access-log", "true"], args.connections, args.seconds, round_no))
            print(f"round {round_no + 1}: " + "  ".join(f"{name} {values[-1]:.1f}/s" for name, values in rates.items()),
                  flush=True)
    for name in ("defaults", "access log"):
        ratios = [ours / base for ours, base in zip(rates[name], rates["baseline"], strict=True)]
        print(f"{name}: median {statistics.median(rates[name]):.1f} reports/s vs baseline "
              f"{statistics.median(rates['baseline']):.1f}: ratio {statistics.median(ratios):.2f} "
              f"(rounds {', '.join(f'{r:.2f}' for r in ratios)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
