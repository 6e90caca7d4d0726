"""What one agent's very large reports cost everyone else: latency of
``GET /health`` while an agent sends reports near the body limit back to back.

    .venv/bin/python bench/large_reports.py [--seconds 20] [--processes 25000] [--connections 25000]

Two phases against one `trioscope serve`, in the same run:

1. baseline: ``/health`` every 20 ms from one client, nothing else going on;
2. loaded: the same, while another client posts a ~9.5 MB report (25,000
   processes, 25,000 connections, 100 containers; the default body limit is
   10 MB) as fast as the server takes them.

Prints p50 / p99 / max of ``/health`` in both phases, the loaded/baseline ratio
of p99 and max, and how many large reports were accepted. Before reports were
decoded and partitioned off the event loop, every such report stalled all
requests for the whole decode + partition (~0.5 s here).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, stop, trioscope  # noqa: E402
from tests.synthetic import host_report, iso  # noqa: E402

PLACEHOLDER = "2000-01-01T00:00:00Z"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def health_latencies(base: str, seconds: float) -> list[float]:
    latencies = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get("/health")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            await trio.sleep(0.02)
    return latencies


async def post_large_reports(base: str, template: bytes, stop_after: trio.Event, accepted: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        while not stop_after.is_set():
            body = template.replace(PLACEHOLDER.encode(), iso(time.time()).encode())
            response = await client.post("/api/v1/reports", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code in (202, 503), response.text[:300]
            accepted[0] += response.status_code == 202


def summary(name: str, latencies: list[float]) -> tuple[float, float]:
    p50, p99, worst = (percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, max(latencies) * 1e3)
    print(f"{name:>9}: {len(latencies)} requests, p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    return p99, worst


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--processes", type=int, default=25_000)
    parser.add_argument("--connections", type=int, default=25_000)
    args = parser.parse_args()
    document = host_report(1, timestamp=time.time(), containers=100, processes=args.processes, connections=args.connections,
                           peers=[2, 3], agent_prefix="big")
    document["timestamp"] = PLACEHOLDER
    template = orjson.dumps(document)
    print(f"report: {len(template) / 1e6:.1f} MB, {args.processes} processes, {args.connections} connections")

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as data:
        # Far over the memory budget per agent (~160 MiB estimated): let them in, they are what is measured.
        server = trioscope(port, "--data-dir", data, "--agent-memory-budget", "1GiB")
        try:
            base = f"http://127.0.0.1:{port}"
            baseline = await health_latencies(base, args.seconds)
            accepted = [0]
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_large_reports, base, template, done, accepted)
                loaded = await health_latencies(base, args.seconds)
                done.set()
        finally:
            stop(server)
    base_p99, base_max = summary("baseline", baseline)
    load_p99, load_max = summary("loaded", loaded)
    print(f"large reports accepted: {accepted[0]} in {args.seconds:.0f} s")
    print(f"ratio loaded/baseline: p99 {load_p99 / base_p99:.1f}x, max {load_max / base_max:.1f}x; "
          f"loaded median {statistics.median(loaded) * 1e3:.1f} ms")


if __name__ == "__main__":
    trio.run(main)
