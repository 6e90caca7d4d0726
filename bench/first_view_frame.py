"""What making a large view's first view into the WebSocket frame its clients
are sent costs on the event loop: from its pieces (``reset_chunks``) straight
into the frame (``PreFramed``, what a client's actor builds now) against the
way before (the pieces joined, decoded to a ``str``, then framed from its
encoding: ``shared`` and ``wire_frame``), alternated in the same run on the
processes view of ``--hosts`` hosts of 100 processes each (2,000: ~80 MB).

    .venv/bin/python bench/first_view_frame.py [--hosts 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.synthetic import host_report  # noqa: E402
from trioscope.domain.live import PreFramed, reset_chunks, shared  # noqa: E402
from trioscope.domain.topology import TopologyGraph, View  # noqa: E402
from trioscope.http._websocket_stream import wire_frame  # noqa: E402
from trioscope.wire import decode_report  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = time.time()
    graph = TopologyGraph(now=now)
    for index in range(args.hosts):
        graph.apply(decode_report(host_report(index, timestamp=now, containers=2, connections=0)), now)
    snapshot, _ = graph.publish(now)
    pieces = list(reset_chunks(snapshot, View.PROCESSES, None))
    size = sum(map(len, pieces))
    before_ms, now_ms = [], []
    for round_no in range(args.rounds):
        started = time.perf_counter()
        wire = wire_frame(shared(b"".join(pieces)))
        before = time.perf_counter() - started
        del wire
        started = time.perf_counter()
        framed = PreFramed(pieces)
        after = time.perf_counter() - started
        del framed
        before_ms.append(1000 * before)
        now_ms.append(1000 * after)
        print(f"round {round_no + 1}: joined, decoded and framed {1000 * before:.0f} ms; framed from its pieces "
              f"{1000 * after:.0f} ms ({size / 1e6:.1f} MB, {len(pieces)} pieces)", flush=True)
    print(f"median: {statistics.median(before_ms):.0f} ms -> {statistics.median(now_ms):.0f} ms, "
          f"{statistics.median(now_ms) / statistics.median(before_ms):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
