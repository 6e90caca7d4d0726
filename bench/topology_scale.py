"""Topology queries and memory at scale, and merge cost as the graph grows.

    .venv/bin/python bench/topology_scale.py [--hosts 1000]

1. Loads ``--hosts`` hosts (10 containers, 100 processes, 200 connections to
   peers each: 1,000 hosts = 10,000 containers, 100,000 processes) into a real
   `trioscope serve` over HTTP, then measures client-side latency of
   ``GET /api/v1/query/topology?view=hosts`` and of the full topology, both when
   nothing changed (cached bytes) and right after a report (a new version:
   merge, publish, encode), and the server's RSS.
2. In-process: the time to merge one report into a graph of 100 hosts and into
   one of 1,000 hosts (same report shape), and their ratio.

Targets (issue 4): hosts view p95 < 100 ms, full topology p95 < 1 s, RSS < 500 MB,
merge cost at 1,000 hosts within 1.5x of 100 hosts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx
import psutil
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import PLACEHOLDER, report_template  # noqa: E402
from servers import free_port, stop, trioscope  # noqa: E402
from tests.synthetic import iso  # noqa: E402

from trioscope.domain.topology import TopologyGraph  # noqa: E402
from trioscope.wire import decode_report  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def body(index: int, when: float, hosts: int) -> bytes:
    """Host ``index + 1`` (host numbers start at 1: each has its own address)."""
    del hosts
    template = report_template(index + 1, compact=True)
    return template.replace(PLACEHOLDER.encode(), iso(when).encode())


async def load(base: str, hosts: int) -> float:
    started = time.perf_counter()
    limiter = trio.CapacityLimiter(16)
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:

        async def post(index: int) -> None:
            async with limiter:
                for _ in range(20):
                    response = await client.post("/api/v1/reports", content=body(index % hosts, time.time(), hosts),
                                                 headers={"Content-Type": "application/json"})
                    if response.status_code == 202:
                        return
                    await trio.sleep(0.5)  # 503: the server asked us to come back
                raise RuntimeError(f"report {index} refused: {response.status_code} {response.text}")

        async with trio.open_nursery() as nursery:
            for index in range(hosts):
                nursery.start_soon(post, index)
    return time.perf_counter() - started


def timed_get(client: httpx.Client, path: str) -> tuple[float, int]:
    started = time.perf_counter()
    response = client.get(path)
    response.raise_for_status()
    return time.perf_counter() - started, len(response.content)


def serve_and_query(hosts: int, rounds: int) -> dict:
    port = free_port()
    proc = trioscope(port, "--max-agents", str(hosts * 2))
    try:
        base = f"http://127.0.0.1:{port}"
        load_seconds = trio.run(load, base, hosts)
        results: dict = {"load_seconds": load_seconds}
        with httpx.Client(base_url=base, timeout=120) as client:
            stats = client.get("/api/v1/query/stats").json()["topology"]
            results["rss_loaded_mb"] = psutil.Process(proc.pid).memory_info().rss / 2**20
            results["nodes"] = stats["nodes_by_type"]
            results["edges"] = stats["edges_by_view"]
            for name, path, n in (("hosts view", "/api/v1/query/topology?view=hosts", rounds),
                                  ("full topology", "/api/v1/query/topology", max(10, rounds // 2))):
                cached = [timed_get(client, path) for _ in range(n)]
                changed = []
                for i in range(n):
                    client.post("/api/v1/reports", content=body(i % hosts, time.time(), hosts),
                                headers={"Content-Type": "application/json"}).raise_for_status()
                    changed.append(timed_get(client, path))
                results[name] = {
                    "bytes": cached[0][1],
                    "cached_p50_ms": 1000 * statistics.median(t for t, _ in cached),
                    "cached_p95_ms": 1000 * percentile([t for t, _ in cached], 0.95),
                    "changed_p50_ms": 1000 * statistics.median(t for t, _ in changed),
                    "changed_p95_ms": 1000 * percentile([t for t, _ in changed], 0.95),
                    "changed_max_ms": 1000 * max(t for t, _ in changed),
                }
        results["rss_mb"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        return results
    finally:
        stop(proc)


def merge_cost(hosts: int, samples: int = 200) -> float:
    """Median seconds to merge one report into a graph already holding ``hosts``."""
    graph = TopologyGraph()
    now = time.time()
    for index in range(hosts):
        graph.apply(decode_report(json.loads(body(index, now, hosts))), now)
    graph.publish(now)
    reports = [decode_report(json.loads(body(i % hosts, now + 1 + i, hosts))) for i in range(samples)]
    times = []
    for report in reports:
        started = time.perf_counter()
        graph.apply(report, now)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()

    small, large = merge_cost(100), merge_cost(1000)
    print(f"merge one report: {small * 1000:.2f} ms at 100 hosts, {large * 1000:.2f} ms at 1,000 hosts, "
          f"ratio {large / small:.2f}x (target <= 1.5x: {'met' if large / small <= 1.5 else 'MISSED'})", flush=True)

    r = serve_and_query(args.hosts, args.rounds)
    print(f"loaded {args.hosts} hosts over HTTP in {r['load_seconds']:.1f}s: nodes {r['nodes']}, edges {r['edges']}")
    for name, target in (("hosts view", 100), ("full topology", 1000)):
        q = r[name]
        verdict = "met" if max(q["cached_p95_ms"], q["changed_p95_ms"]) < target else "MISSED"
        print(f"{name:<14} {q['bytes'] / 1e6:6.2f} MB  cached p50 {q['cached_p50_ms']:7.1f} ms  p95 "
              f"{q['cached_p95_ms']:7.1f} ms | after a report p50 {q['changed_p50_ms']:7.1f} ms  p95 "
              f"{q['changed_p95_ms']:7.1f} ms  max {q['changed_max_ms']:7.1f} ms  (target p95 < {target} ms: {verdict})")
    print(f"server RSS {r['rss_loaded_mb']:.0f} MB once loaded, {r['rss_mb']:.0f} MB after the queries "
          f"(target < 500 MB: {'met' if r['rss_mb'] < 500 else 'MISSED'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
