"""What reading a report costs the request path: the body parsed (``parse_json``,
with its check for integers orjson would not keep exact) and decoded into the
report models (``decode_report``), against ``orjson.loads`` of the same body
alone, measured in the same run.

    .venv/bin/python bench/report_decode.py [--rounds 7] [--reports 200]
    PYTHONPATH=<a git archive of an older src, as trioscope> .venv/bin/python bench/report_decode.py   # older code

The body is bench/ingest.py's (bench/loadgen.py's compact host report: 10
containers, 100 processes, 200 connections, ~36 KB). Times are this process's
CPU time (``time.process_time``), the median of the rounds' per-report means.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from loadgen import PLACEHOLDER, report_template  # noqa: E402

from tests.synthetic import iso  # noqa: E402
from trioscope.http._bodies import parse_json  # noqa: E402
from trioscope.wire import decode_report  # noqa: E402


def per_report(work: Callable[[], Any], reports: int) -> float:
    """CPU seconds per call of ``work``, over ``reports`` calls."""
    started = time.process_time()
    for _ in range(reports):
        work()
    return (time.process_time() - started) / reports


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reports", type=int, default=200)
    args = parser.parse_args()
    body = report_template(5, compact=True).replace(PLACEHOLDER.encode(), iso(time.time()).encode())
    decode_report(parse_json(body))  # hooks built, caches warm
    loads, parse, decode = [], [], []
    for _ in range(args.rounds):
        loads.append(per_report(lambda: orjson.loads(body), args.reports))
        parse.append(per_report(lambda: parse_json(body), args.reports))
        decode.append(per_report(lambda: decode_report(orjson.loads(body)), args.reports))
    base, parsed, decoded = (statistics.median(x) * 1e6 for x in (loads, parse, decode))
    print(f"body {len(body)} bytes, median of {args.rounds} rounds of {args.reports} reports, CPU per report:")
    print(f"  orjson.loads alone          {base:8.1f} us (baseline)")
    print(f"  parse_json                  {parsed:8.1f} us  ratio {parsed / base:.2f}x")
    print(f"  loads + decode_report       {decoded:8.1f} us  ratio {decoded / base:.2f}x")
    print(f"  parse_json + decode_report  {parsed + decoded - base:8.1f} us (the request path's reading of a report)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
