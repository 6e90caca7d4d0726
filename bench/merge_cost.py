"""What merging a report costs the topology actor when only its metrics changed,
against a full merge of the same report, measured in the same run.

    .venv/bin/python bench/merge_cost.py [--hosts 100] [--rounds 7] [--profile]
    PYTHONPATH=<a git archive of an older src, as trioscope> .venv/bin/python bench/merge_cost.py   # older code

A graph of ``--hosts`` hosts (10 containers, 100 processes, 200 connections to
peers each: tests/synthetic.py) is loaded; then each round merges every host's
report twice, as the actor does (a batch of reports, then one publish):

* full: a report whose structure changed (one connection more or fewer than the
  host's last report), so everything is built and merged again;
* metrics only: the same report again with other metrics and a later time.

Each is timed as the actor's work per report: ``TopologyGraph.apply`` (the
partition built from the decoded report), recording the nodes' metrics in their
history, and the batch's ``publish`` (groups settled, diff, snapshot) divided by
the batch. Reports are decoded ``--pending`` at a time, each group just before
it is merged, as in the server: a report is decoded in its request and merged
by the actor's next merge, at most ``MERGE_EVERY`` (50 ms) later, behind the
reports accepted meanwhile (~20-30 at 400-600 reports/s; ``MAX_PENDING`` caps
them at 256). Up to session 41 a round decoded both its batches first, so the
metrics-only reports waited behind the full batch's thousand merges, read back
cold from memory: at 1,000 hosts that made their merge 0.92 ms, and 0.43 ms
decoded as the server does (session 42).
Decoding is not merging and is left out (it happens in the request),
and so is the report's shape digest (``report_shape``), found in the request
beside the decode since session 30 and handed to ``apply`` (with a bus, by the
publishing replica, once for every replica that merges the report).
The garbage collector is tuned as the server tunes it.
Times are this process's CPU time (``time.process_time``): on a machine shared
with other work, time spent waiting for a core is not the merge's.
Target (issue 20): metrics only <= 0.25x full, median of the rounds.

``--profile``: cProfile of the metrics-only batches, top functions by own time.

``--memory``: instead, the processes' metric history of ``--hosts`` hosts of 100
processes after 15 minutes of reports (60 buckets, the actor's process
retention), measured with tracemalloc: per report rows (``BlockHistory``, the
actor's since the metrics-merge branch) against a series per process
(``MetricHistory``), in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.synthetic import host_report  # noqa: E402

from trioscope.domain.timeseries import MetricHistory  # noqa: E402

try:  # processes' history in rows per report, since the metrics-merge branch
    from trioscope.domain.block_history import BlockHistory
except ImportError:
    BlockHistory = None
from trioscope.domain.topology import NodeKind, TopologyGraph  # noqa: E402

try:  # found in the request and handed to the merge, since session 30
    from trioscope.domain.topology import report_shape
except ImportError:
    report_shape = None
from trioscope.server import tune_interpreter  # noqa: E402
from trioscope.wire import Report, decode_report  # noqa: E402

T0 = 1_760_000_000.0


def document(index: int, when: float, load: float, fewer: bool) -> dict[str, Any]:
    """Host ``index``'s report; ``load`` moves every metric, ``fewer`` drops its last connection."""
    doc = host_report(index + 1, timestamp=when, peers=[index + 2, index + 3], cpu=20.0 + load,
                      container_load=load)
    for c in doc["docker_info"]["containers"]:
        c["created"] = "2025-10-01T00:00:00Z"  # the generator's moves with the report's time; a container's does not
    for p in doc["processes_info"]["processes"]:
        p["cpu_percent"] += load
        p["memory_rss_bytes"] += int(load) * 4096
    if fewer:
        doc["network_info"]["connections"].pop()
    return doc


PHASES = ("apply", "record", "settle", "publish")


def decoded(documents: list[dict[str, Any]], pending: int) -> Iterator[tuple[Report, bytes | None]]:
    """Each of ``documents`` decoded, with its shape, ``pending`` at a time
    (what the request does, untimed), a group just before it is merged."""
    for first in range(0, len(documents), pending):
        batch = [decode_report(doc) for doc in documents[first:first + pending]]
        yield from [(report, report_shape(report) if report_shape is not None else None) for report in batch]


def merge_batch(graph: TopologyGraph, history: MetricHistory, documents: list[dict[str, Any]], now: float,
                process_history: Any = None, pending: int = 32) -> dict[str, float]:
    """CPU seconds per report of each phase of merging ``documents``' reports as the topology actor does."""
    clock = time.process_time
    spent = dict.fromkeys(PHASES, 0.0)
    gc.collect()
    for report, shape in decoded(documents, pending):
        started = clock()
        if shape is None:
            graph.apply(report, now)
        else:
            graph.apply(report, now, shape=shape)
        applied = clock()
        at = report.timestamp.timestamp()
        nodes = graph.partitions[report.agent_id].nodes
        if process_history is not None:  # as the actor records them since the metrics-merge branch
            process = NodeKind.PROCESS
            processes = [node for node in nodes.values() if node.kind is process]
            process_history.record(report.agent_id, at, tuple(node.id for node in processes),
                                   [node.metrics for node in processes])
            history.record_many(at, [(node.id, node.metrics) for node in nodes.values()
                                     if node.kind is not process and node.metrics])
        elif hasattr(history, "record_many"):  # as the actor records them since the merge branch
            history.record_many(at, [(node_id, node.metrics) for node_id, node in nodes.items() if node.metrics])
        else:
            for node_id, node in nodes.items():
                if node.metrics:
                    history.record(node_id, at, node.metrics)
        spent["apply"] += applied - started
        spent["record"] += clock() - applied
    started = clock()
    if hasattr(graph, "settle"):  # code before the short path settled groups in apply
        graph.settle()
    settled = clock()
    graph.publish(now)
    spent["settle"] += settled - started
    spent["publish"] += clock() - settled
    return {phase: seconds / len(documents) for phase, seconds in spent.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--pending", type=int, default=32,
                        help="reports decoded before the first of them is merged (default 32)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--memory", action="store_true")
    args = parser.parse_args()
    if args.memory:
        return memory(args.hosts)

    # The collector as the server tunes it (``trioscope.server``): with
    # CPython's default thresholds its young collections would be a share of
    # every phase here that the server does not pay.
    tune_interpreter()
    graph = TopologyGraph(T0)
    history = MetricHistory(3600.0)
    process_history = BlockHistory(900.0) if BlockHistory is not None else None
    loaded = [document(i, T0, 0.0, fewer=False) for i in range(args.hosts)]
    merge_batch(graph, history, loaded, T0, process_history, args.pending)
    profile = cProfile.Profile() if args.profile else None
    rounds: list[tuple[dict[str, float], dict[str, float]]] = []
    for round_no in range(1, args.rounds + 1):
        when = T0 + 30 * round_no
        fewer = round_no % 2 == 1  # alternately one connection fewer and as loaded: a new structure each round
        structural = [document(i, when, round_no, fewer) for i in range(args.hosts)]
        metrics_only = [document(i, when + 15, round_no + 0.5, fewer) for i in range(args.hosts)]
        full = merge_batch(graph, history, structural, when, process_history, args.pending)
        if profile is not None:
            profile.enable()
        short = merge_batch(graph, history, metrics_only, when + 15, process_history, args.pending)
        if profile is not None:
            profile.disable()
        rounds.append((full, short))
        print(f"round {round_no}: full {_line(full)} | metrics only {_line(short)} | "
              f"ratio {sum(short.values()) / sum(full.values()):.3f}, merge ratio {_merge(short) / _merge(full):.3f}",
              flush=True)
    full_ms = statistics.median(sum(f.values()) for f, _ in rounds) * 1e3
    short_ms = statistics.median(sum(s.values()) for _, s in rounds) * 1e3
    ratio = statistics.median(sum(s.values()) / sum(f.values()) for f, s in rounds)
    merge_ratio = statistics.median(_merge(s) / _merge(f) for f, s in rounds)
    print(f"median: full {full_ms:.3f} ms, metrics only {short_ms:.3f} ms per report (CPU), ratio {ratio:.3f}x; "
          f"merge alone (apply + settle) ratio {merge_ratio:.3f}x ({args.hosts} hosts, {args.rounds} rounds, "
          f"{args.pending} reports decoded at a time)")
    print(f"target <= 0.25x: {'met' if ratio <= 0.25 else 'MISSED'} (all of it), "
          f"{'met' if merge_ratio <= 0.25 else 'MISSED'} (merge alone)")
    nodes = sum(1 for node in graph.nodes.values() if node.kind is NodeKind.PROCESS)
    print(f"graph: {len(graph.nodes)} nodes ({nodes} processes), version {graph.version}")
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


def memory(hosts: int) -> int:
    """Bytes of the processes' history after 15 minutes, rows against series."""
    import tracemalloc

    keys = [tuple(f"process:host-{h}:{1000 + p}" for p in range(100)) for h in range(hosts)]
    kinds: list[tuple[str, Any]] = [("series per process (MetricHistory)", MetricHistory(900.0))]
    if BlockHistory is not None:
        kinds.insert(0, ("rows per report (BlockHistory)", BlockHistory(900.0)))
    for name, history in kinds:
        gc.collect()
        tracemalloc.start()
        for bucket in range(60):
            at = T0 + 15.0 * bucket
            for host, ids in enumerate(keys):
                values = [{"cpu_percent": float(bucket + p), "memory_mb": 64.0 + host} for p in range(100)]
                if isinstance(history, MetricHistory):
                    history.record_many(at, list(zip(ids, values, strict=True)))
                else:
                    history.record(f"agent-{host}", at, ids, values)
        size, _peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"{name}: {size / 2**20:.1f} MiB for {hosts} hosts x 100 processes x 60 buckets "
              f"({size / (hosts * 100):.0f} B a process)")
    return 0


def _merge(phases: dict[str, float]) -> float:
    return phases["apply"] + phases["settle"]


def _line(phases: dict[str, float]) -> str:
    return f"{sum(phases.values()) * 1e3:.3f} ms (" + " ".join(f"{k} {v * 1e3:.3f}" for k, v in phases.items()) + ")"


if __name__ == "__main__":
    raise SystemExit(main())
