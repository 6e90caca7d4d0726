"""What publishing a version costs the topology actor on a big graph, when the
version follows the last by a few reports (as under report load: a version
every quarter second, and one for each read that wants the newest).

    .venv/bin/python bench/publish_cost.py [--hosts 1000] [--reports 10] [--versions 30] [--base REV]

A graph of ``--hosts`` hosts (10 containers, 100 processes, 200 connections
each: tests/synthetic.py; 1,000 hosts = 100,000 processes) is loaded and
published; then ``--versions`` times: ``--reports`` hosts' reports with new
metrics are merged (and the groups settled), and the version published. The
publish's CPU time (``time.process_time``) is printed, p50 and p90, beside the
merge of the same reports. With ``--base REV`` the same is measured on that
revision's ``src`` (``git archive``, run in a process of its own) and the ratio
printed: this code's publish p50 / the base's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def measure(hosts: int, reports: int, versions: int) -> dict[str, float]:
    from merge_cost import T0, document

    from trioscope.domain.topology import TopologyGraph, report_shape
    from trioscope.server import tune_interpreter
    from trioscope.wire import decode_report

    tune_interpreter()
    graph = TopologyGraph(now=T0)
    for index in range(hosts):
        report = decode_report(document(index, T0, 0.0, False))
        graph.apply(report, T0, shape=report_shape(report))
    graph.publish(T0)
    publish: list[float] = []
    merge: list[float] = []
    when = T0
    for version in range(versions):
        when += 1.0
        first = (version * reports) % hosts
        batch = [decode_report(document((first + i) % hosts, when, float(1 + version % 5), False))
                 for i in range(reports)]
        shapes = [report_shape(report) for report in batch]
        gc.collect()
        started = time.process_time()
        for report, shape in zip(batch, shapes, strict=True):
            graph.apply(report, when, shape=shape)
        graph.settle()
        merged = time.process_time()
        graph.publish(when)
        publish.append(time.process_time() - merged)
        merge.append(merged - started)
    publish.sort()
    return {"publish_p50": statistics.median(publish), "publish_p90": publish[int(0.9 * (len(publish) - 1))],
            "merge_p50": statistics.median(merge)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--reports", type=int, default=10, help="reports merged between two versions")
    parser.add_argument("--versions", type=int, default=30)
    parser.add_argument("--base", default=None, help="also measure this git revision's code")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    found = measure(args.hosts, args.reports, args.versions)
    if args.json:
        print(json.dumps(found))
        return 0

    def line(label: str, figures: dict[str, float]) -> str:
        return (f"{label}: publish p50 {1000 * figures['publish_p50']:.2f} ms, p90 {1000 * figures['publish_p90']:.2f} ms"
                f" per version; merging the {args.reports} reports before it {1000 * figures['merge_p50']:.2f} ms")

    print(f"{args.hosts} hosts, a version after every {args.reports} reports, {args.versions} versions (CPU time)")
    print(line("this code", found))
    if args.base:
        from bus_ingest import base_tree

        tree = base_tree(args.base)
        out = subprocess.run([sys.executable, __file__, "--json", "--hosts", str(args.hosts), "--reports",
                              str(args.reports), "--versions", str(args.versions)],
                             env={**os.environ, "PYTHONPATH": tree}, capture_output=True, text=True, check=True)
        base = json.loads(out.stdout)
        print(line(f"base {args.base}", base))
        print(f"publish p50, this code / base: {found['publish_p50'] / base['publish_p50']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
