"""CPU of the report path and the listing path under Python's allocator
(pymalloc) and under C allocators serving every object (``PYTHONMALLOC=malloc``:
glibc's malloc, mimalloc or jemalloc preloaded), in the same run.

    .venv/bin/python bench/allocator_cpu.py [--hosts 1000] [--rounds 5]
                                            [--allocators pymalloc,malloc,mimalloc,jemalloc]

Each round runs a fresh interpreter per allocator, in a rotating order, and times in it:

* report path: decode (JSON, strict cattrs) and merge 200 reports into a graph
  already holding ``--hosts`` hosts, then publish the new version;
* listing path: encode the whole processes view of that version (100,000
  processes at 1,000 hosts) from its nodes, as a streamed GET does;

each the mean of two batches after a first one that is not timed (until
2026-12-02 the first was timed: it faults in fresh memory, which a server
running for a while does not, and under jemalloc that made the listing look
1.32x dearer than at steady state, where it measured 1.00x);

and the process's RSS once loaded, and after the graph is dropped (what the
allocator gives back). Prints per round and the median ratio of each allocator
to pymalloc. An allocator whose library is missing is left out (said so).
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

ROOT = Path(__file__).resolve().parent


def measure(hosts: int) -> dict[str, float]:
    sys.path.insert(0, str(ROOT.parent))
    sys.path.insert(0, str(ROOT))
    from topology_scale import body

    from trioscope.allocator import resident_bytes
    from trioscope.domain.topology import TopologyGraph, View
    from trioscope.server import tune_interpreter
    from trioscope.wire import decode_report

    tune_interpreter()  # as the server does: the default thresholds add young collections it does not pay
    graph = TopologyGraph()
    now = time.time()
    for index in range(hosts):
        graph.apply(decode_report(json.loads(body(index, now, hosts))), now)
    graph.publish(now)
    loaded = resident_bytes()
    # Round 0 warms up (the first listing and the first batch after loading
    # fault their memory in, which a running server did long ago); rounds 1-2
    # are timed: a server's steady state.
    report = listing = 0.0
    for batch in range(3):
        when = now + 1 + batch
        bodies = [body(i % hosts, when + i, hosts) for i in range(200)]
        started = time.process_time()
        for raw in bodies:
            graph.apply(decode_report(json.loads(raw)), when)
        snapshot, _ = graph.publish(when)
        elapsed = time.process_time() - started
        started = time.process_time()
        size = sum(len(piece) for piece in snapshot.chunks(View.PROCESSES))
        if batch:
            report += elapsed / len(bodies) / 2
            listing += (time.process_time() - started) / 2
    del graph, snapshot, bodies
    gc.collect()
    time.sleep(2)  # past mimalloc's and jemalloc's delays before they give freed pages back
    return {"report_ms": report * 1000, "listing_ms": listing * 1000, "listing_mb": size / 1e6,
            "rss_loaded_mib": loaded / 2**20, "rss_dropped_mib": resident_bytes() / 2**20}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--allocators", default="pymalloc,malloc,mimalloc,jemalloc",
                        help="comma-separated, compared with pymalloc (always measured)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.hosts)))
        return 0
    sys.path.insert(0, str(ROOT))
    from servers import allocator_env

    names = ["pymalloc", *(a for a in args.allocators.split(",") if a and a != "pymalloc")]
    envs = {}
    for name in names:
        env = allocator_env(name)
        if env is None:
            print(f"{name}: its library is not installed, left out")
        else:
            envs[name] = env
    keys = ("report_ms", "listing_ms", "rss_loaded_mib", "rss_dropped_mib")
    ratios: dict[str, dict[str, list[float]]] = {name: {key: [] for key in keys} for name in envs if name != "pymalloc"}
    for r in range(args.rounds):
        runs = {}
        order = list(envs)
        for name in order[r % len(order):] + order[:r % len(order)]:
            out = subprocess.run([sys.executable, __file__, "--measure", "--hosts", str(args.hosts)], check=True,
                                 capture_output=True, text=True, env={**os.environ, **envs[name]})
            runs[name] = json.loads(out.stdout)
        for name, by_key in ratios.items():
            for key in keys:
                by_key[key].append(runs[name][key] / runs["pymalloc"][key])
        print(f"round {r + 1}:", flush=True)
        for name, v in runs.items():
            print(f"  {name:<9} report {v['report_ms']:.2f} ms, listing {v['listing_ms']:.0f} ms "
                  f"({v['listing_mb']:.0f} MB), RSS loaded {v['rss_loaded_mib']:.0f} MiB, "
                  f"after the graph is dropped {v['rss_dropped_mib']:.0f} MiB", flush=True)
    for name, by_key in ratios.items():
        print(f"{name} / pymalloc, median over rounds: " + ", ".join(
            f"{key} {statistics.median(values):.2f}x" for key, values in by_key.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
