"""One WebSocket client flooding ``{"type": "resync"}``: what it costs everyone else.

    .venv/bin/python bench/resync_flood.py [--hosts 175] [--rates 100,1000] [--seconds 8] [--rounds 3]
                                           [--search svc-17-]

Loads ``--hosts`` hosts (~115 nodes each: 175 hosts = ~20,000 nodes) into a real
`trioscope serve`, connects one client of the whole topology with a search filter
(``--search ''``: none, so that each reset is the whole topology), and then, per
round and rate, back to back:

* **baseline**: ``/health`` latency (one request at a time) for ``--seconds`` while
  the client is connected and quiet;
* **flood**: the same while the client sends ``resync`` at ``rate`` per second and
  reads everything it is sent (counting the resets);
* **after leaving**: the flooding client hangs up mid-flood (its last messages still
  queued at the server); the server's CPU seconds over the next ``--after``
  seconds, against the same span of the quiet baseline.

Prints p50/p95/max of ``/health`` per phase, the flood/baseline ratio of p50 and
p95 (median over rounds), resets received per second, the server's RSS growth,
and the CPU spent after the client left. The machine may be shared: the ratios
within one run are the figures to compare, not the absolute times.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson
import psutil
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from servers import free_port, stop, trioscope  # noqa: E402
from topology_scale import load  # noqa: E402

SEARCH = "svc-17-"
"""Matches a handful of containers: the filtered reset is small, the scan is not."""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def health_latencies(http: httpx.AsyncClient, seconds: float, server: psutil.Process,
                           peak: list[int] | None = None) -> list[float]:
    """``/health`` one request at a time for ``seconds``: each latency in ms
    (and the server's highest RSS between requests into ``peak``)."""
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        response = await http.get("/health")
        response.raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        if peak is not None:
            peak[0] = max(peak[0], server.memory_info().rss)
        await trio.sleep(0.01)
    return latencies


class Client:
    """The filtered client: reads everything, counts resets, and floods on demand."""

    def __init__(self, url: str, search: str) -> None:
        self.url = url
        self.search = search
        self.resets = 0
        self.rate = 0
        self.leave = trio.Event()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with open_websocket_url(self.url, message_queue_size=64, max_message_size=2**30) as ws:
            await ws.get_message()  # the reset it connects with
            if self.search:
                await ws.send_message(orjson.dumps({"type": "subscribe", "filter": {"search": self.search}}).decode())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, ws)
                nursery.start_soon(self._flood, ws)
                task_status.started()
                await self.leave.wait()
                # Gone without a close handshake, as a browser tab that is killed.
                await ws._stream.aclose()
                nursery.cancel_scope.cancel()

    async def _read(self, ws) -> None:
        try:
            while True:
                message = await ws.get_message()
                if '"reset":true' in message[:200] or '"reset":true' in message[-200:]:
                    self.resets += 1
        except ConnectionClosed:
            pass

    async def _flood(self, ws) -> None:
        sent = 0
        started = trio.current_time()
        while True:
            if not self.rate:
                sent, started = 0, trio.current_time()
                await trio.sleep(0.05)
                continue
            # Paced by the clock, not by sleeps, so that the rate holds under load.
            due = int((trio.current_time() - started) * self.rate)
            while sent < due:
                try:
                    await ws.send_message('{"type":"resync"}')
                except (ConnectionClosed, trio.ClosedResourceError, trio.BrokenResourceError):
                    return  # it is leaving
                sent += 1
            await trio.sleep(0.002)


def cpu_seconds(server: psutil.Process) -> float:
    times = server.cpu_times()
    return times.user + times.system


async def measure(args: argparse.Namespace) -> list[dict]:
    port = free_port()
    proc = trioscope(port, "--max-agents", str(args.hosts * 2), *args.server_flags)
    server = psutil.Process(proc.pid)
    base = f"http://127.0.0.1:{port}"
    url = f"ws://127.0.0.1:{port}/api/v1/ws"
    results: list[dict] = []
    try:
        await load(base, args.hosts)
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            with trio.fail_after(120):
                while True:
                    stats = (await http.get("/api/v1/query/stats")).json()["topology"]
                    if stats["nodes_by_type"]["host"] >= args.hosts:
                        break
                    await trio.sleep(0.2)
            print(f"topology: {stats['nodes']:,} nodes, {stats['edges']:,} edges; "
                  f"server RSS {server.memory_info().rss / 2**20:.0f} MiB", flush=True)
            for round_ in range(args.rounds):
                for rate in args.rates:
                    client = Client(url, args.search)
                    async with trio.open_nursery() as nursery:
                        await nursery.start(client.run)
                        await trio.sleep(1)  # its subscribe reset is out
                        rss_before = server.memory_info().rss
                        cpu_before = cpu_seconds(server)
                        quiet = await health_latencies(http, args.seconds, server)
                        quiet_cpu = (cpu_seconds(server) - cpu_before) / args.seconds * args.after
                        resets_before = client.resets
                        client.rate = rate
                        flood_started = time.perf_counter()
                        peak = [rss_before]
                        flooded = await health_latencies(http, args.seconds, server, peak)
                        resets = (client.resets - resets_before) / (time.perf_counter() - flood_started)
                        rss_peak = peak[0]
                        client.leave.set()
                    cpu_left = cpu_seconds(server)
                    after = await health_latencies(http, args.after, server)
                    cpu_after = cpu_seconds(server) - cpu_left
                    row = {
                        "round": round_, "rate": rate,
                        "quiet_p50": statistics.median(quiet), "quiet_p95": percentile(quiet, 0.95),
                        "quiet_max": max(quiet),
                        "flood_p50": statistics.median(flooded), "flood_p95": percentile(flooded, 0.95),
                        "flood_max": max(flooded), "resets_per_s": resets,
                        "rss_growth_mib": (rss_peak - rss_before) / 2**20,
                        "cpu_after_s": cpu_after, "cpu_quiet_s": quiet_cpu,
                        "after_p50": statistics.median(after),
                    }
                    results.append(row)
                    print(f"round {round_ + 1} {rate:>5}/s | /health quiet p50 {row['quiet_p50']:6.1f} p95 "
                          f"{row['quiet_p95']:6.1f} max {row['quiet_max']:6.1f} ms | flood p50 {row['flood_p50']:7.1f} "
                          f"p95 {row['flood_p95']:7.1f} max {row['flood_max']:7.1f} ms | {resets:6.1f} resets/s | "
                          f"peak RSS +{row['rss_growth_mib']:5.0f} MiB | CPU {cpu_after:5.2f} s in the "
                          f"{args.after:g} s after leaving (quiet: {quiet_cpu:4.2f} s)", flush=True)
    finally:
        stop(proc)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=175)
    parser.add_argument("--rates", default="100,1000", help="resyncs per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each baseline and flood phase")
    parser.add_argument("--after", type=float, default=5.0, help="seconds watched after the client leaves")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--search", default=SEARCH, help="the client's search filter ('' for none: whole resets)")
    parser.add_argument("server_flags", nargs="*", help="extra `trioscope serve` flags (after --)")
    args = parser.parse_args()
    args.rates = [int(r) for r in args.rates.split(",")]
    results = trio.run(measure, args)
    print(f"median of {args.rounds} rounds (shared machine: compare the ratios, measured back to back):")
    for rate in args.rates:
        rows = [r for r in results if r["rate"] == rate]
        med = {k: statistics.median(r[k] for r in rows) for k in rows[0] if k not in ("round", "rate")}
        print(f"{rate:>5} resyncs/s: /health p50 {med['quiet_p50']:.1f} -> {med['flood_p50']:.1f} ms "
              f"({statistics.median(r['flood_p50'] / r['quiet_p50'] for r in rows):.2f}x), p95 "
              f"{med['quiet_p95']:.1f} -> {med['flood_p95']:.1f} ms "
              f"({statistics.median(r['flood_p95'] / r['quiet_p95'] for r in rows):.2f}x), "
              f"max {med['flood_max']:.0f} ms; "
              f"{med['resets_per_s']:.1f} resets/s; peak RSS +{med['rss_growth_mib']:.0f} MiB; "
              f"CPU after leaving {med['cpu_after_s']:.2f} s in {args.after:g} s (quiet {med['cpu_quiet_s']:.2f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
