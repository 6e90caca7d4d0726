"""What writing and reading one report's bus envelope costs (issue 20): the
envelope as ``trioscope.bus`` packs it now against the previous way of the
same layout (msgpack frame; the wire form made with cattrs and orjson, read
back with orjson and the HTTP edge's strict cattrs decoder), in the same run,
alternating, on the load generator's typical report (~36 KB of JSON); and
what the report feed reads, the same envelope with its connections left
undecoded until used (``PendingConnections``), against reading it whole.

    .venv/bin/python bench/bus_envelope.py [--rounds 5] [--reports 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import PLACEHOLDER, report_template  # noqa: E402

from tests.synthetic import iso  # noqa: E402
from trioscope.bus import pack_report, unpack_report  # noqa: E402
from trioscope.wire import decode_report, encode  # noqa: E402


def previous_pack(report: Any, received_at: float, enrolled: bool) -> bytes:
    packed = zlib.compress(orjson.dumps(encode(report)), 1)
    return msgspec.msgpack.encode({"format": 1, "report": packed, "received_at": received_at, "enrolled": enrolled})


def previous_unpack(data: bytes) -> Any:
    message = msgspec.msgpack.decode(data)
    return decode_report(orjson.loads(zlib.decompress(message["report"])))


def per_call(work: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        work()
    return (time.perf_counter() - started) / count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reports", type=int, default=300)
    args = parser.parse_args()
    body = report_template(7, compact=True).replace(PLACEHOLDER.encode(), iso(time.time()).encode())
    report = decode_report(orjson.loads(body))
    data, _ = pack_report(report, time.time(), False)
    old = previous_pack(report, time.time(), False)
    assert unpack_report(old).report == report == previous_unpack(old)  # the current reader reads the previous layout
    deferred = unpack_report(data, defer_connections=True).report
    assert deferred == report  # what the report feed reads: the same report, its connections decoded when used
    ratios: dict[str, list[float]] = {"write": [], "read": [], "deferred": []}
    for round_no in range(args.rounds):
        write_old = per_call(lambda: previous_pack(report, 1.0, False), args.reports)
        write_new = per_call(lambda: pack_report(report, 1.0, False), args.reports)
        read_old = per_call(lambda: previous_unpack(old), args.reports)
        read_new = per_call(lambda: unpack_report(data), args.reports)
        read_deferred = per_call(lambda: unpack_report(data, defer_connections=True), args.reports)
        ratios["write"].append(write_new / write_old)
        ratios["read"].append(read_new / read_old)
        ratios["deferred"].append(read_deferred / read_new)
        print(f"round {round_no + 1}: write {1000 * write_old:.3f} -> {1000 * write_new:.3f} ms, read "
              f"{1000 * read_old:.3f} -> {1000 * read_new:.3f} ms, read with its connections deferred "
              f"{1000 * read_deferred:.3f} ms per report ({len(body)} B of JSON, envelope {len(data)} B)", flush=True)
    print(f"median, this / previous: write {statistics.median(ratios['write']):.2f}x, read "
          f"{statistics.median(ratios['read']):.2f}x; read with the connections deferred (the report feed's) / "
          f"read whole: {statistics.median(ratios['deferred']):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
