"""Live-update fan-out: 100 to 1,000 WebSocket clients, one changing report per second.

    .venv/bin/python bench/live.py [--clients 100,500,1000] [--rounds 10]

For trioscope (clients on the hosts view) and, in the same run, a no-op
Quart-Trio broadcast of a message of the same size under the same Hypercorn
settings (bench/noop_broadcast.py), measures:

* latency from posting the report (or the broadcast) to each client receiving
  the update: p50, p95, max over all clients and rounds;
* server memory per connected idle client (RSS growth / clients);
* server CPU per update (CPU seconds over the rounds / rounds).

Targets (issue 5, DESIGN.md): latency p95 within 1.3x of the no-op broadcast at
1,000 clients; < 64 KiB per idle client; encoding must not grow with clients.
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
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from servers import free_port, start, stop, trioscope  # noqa: E402
sys.path.insert(0, str(ROOT))
from tests.synthetic import host_report  # noqa: E402


class Fleet:
    """Many WebSocket clients in this process, recording when each saw a round."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.key = key  # "version" for trioscope, "round" for the baseline
        self.seen: list[dict[int, float]] = []
        self.ready = 0

    async def client(self, index: int, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        seen: dict[int, float] = {}
        self.seen.append(seen)
        async with open_websocket_url(self.url, message_queue_size=64) as ws:
            if self.key == "version":
                await ws.get_message()  # the initial reset
            task_status.started()
            while True:
                message = orjson.loads(await ws.get_message())
                payload = message.get("payload", message)
                if self.key in payload:
                    seen.setdefault(payload[self.key], time.perf_counter())

    def received(self, mark: int) -> int:
        return sum(1 for seen in self.seen if any(k >= mark for k in seen))


async def run(kind: str, counts: list[int], rounds: int) -> dict[int, dict]:
    port = free_port()
    if kind == "baseline":
        proc = start([sys.executable, str(ROOT / "bench/noop_broadcast.py"), str(port)])
        url, key = f"ws://127.0.0.1:{port}/ws", "round"
    else:
        proc = trioscope(port, "--ws-max-clients", "5000", "--ws-max-waiting-clients-per-address", "5000")
        url, key = f"ws://127.0.0.1:{port}/api/v1/ws?view=hosts", "version"
    base = f"http://127.0.0.1:{port}"
    server = psutil.Process(proc.pid)
    results: dict[int, dict] = {}
    fleet = Fleet(url, key)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as http, trio.open_nursery() as nursery:
            if kind == "trioscope":  # a host for the clients to watch
                await http.post("/api/v1/reports", json=host_report(1, timestamp=time.time(), connections=0))
            idle_rss = server.memory_info().rss
            connected = 0
            mark = 0
            for count in counts:
                limiter = trio.CapacityLimiter(50)
                async with trio.open_nursery() as connecting:
                    for index in range(connected, count):
                        async def connect(i: int = index, limiter: trio.CapacityLimiter = limiter) -> None:
                            async with limiter:
                                await nursery.start(fleet.client, i)
                        connecting.start_soon(connect)
                connected = count
                rss = server.memory_info().rss
                latencies: list[float] = []
                cpu_before = sum(server.cpu_times()[:2])
                for r in range(rounds):
                    mark += 1
                    # Both timed from just before the POST: the broadcast reaches
                    # clients before its own 202 does, a report's diff after it.
                    accepted = time.perf_counter()
                    if kind == "trioscope":
                        report = host_report(1, timestamp=time.time(), connections=0, cpu=float(r % 90 + 1))
                        await http.post("/api/v1/reports", json=report)
                        target = (await http.get("/api/v1/query/stats")).json()["topology"]["version"]
                    else:
                        body = orjson.dumps({"round": mark, "padding": "x" * 900})
                        await http.post("/broadcast", content=body)
                        target = mark
                    with trio.fail_after(120):
                        while fleet.received(target) < count:
                            await trio.sleep(0.01)
                    latencies += [min(t for k, t in seen.items() if k >= target) - accepted for seen in fleet.seen]
                    await trio.sleep(max(0.0, 1.0 - (time.perf_counter() - accepted)))
                cpu = sum(server.cpu_times()[:2]) - cpu_before
                ordered = sorted(latencies)
                results[count] = {
                    "p50": statistics.median(ordered) * 1000,
                    "p95": ordered[int(0.95 * (len(ordered) - 1))] * 1000,
                    "max": ordered[-1] * 1000,
                    "kib_per_client": (rss - idle_rss) / count / 1024,
                    "cpu_per_update_ms": cpu / rounds * 1000,
                }
                print(f"{kind:<9} {count:>5} clients: latency p50 {results[count]['p50']:7.1f} ms  p95 "
                      f"{results[count]['p95']:7.1f} ms  max {results[count]['max']:7.1f} ms | "
                      f"{results[count]['kib_per_client']:5.1f} KiB/client | server CPU "
                      f"{results[count]['cpu_per_update_ms']:6.1f} ms/update", flush=True)
            nursery.cancel_scope.cancel()
    finally:
        stop(proc)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,500,1000")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3, help="baseline/trioscope pairs, alternated")
    args = parser.parse_args()
    counts = [int(c) for c in args.clients.split(",")]
    pairs = []
    for _ in range(args.repeat):
        pairs.append((trio.run(run, "baseline", counts, args.rounds), trio.run(run, "trioscope", counts, args.rounds)))
    top = counts[-1]
    ratio = statistics.median(ours[top]["p95"] / base[top]["p95"] for base, ours in pairs)
    memory = statistics.median(ours[top]["kib_per_client"] for _, ours in pairs)
    print(f"median of {args.repeat} alternated pairs:")
    print(f"p95 at {top} clients: {ratio:.2f}x the no-op broadcast (target <= 1.3x: {'met' if ratio <= 1.3 else 'MISSED'})")
    print(f"memory per idle client: {memory:.1f} KiB (target < 64 KiB: {'met' if memory < 64 else 'MISSED'})")
    print("server CPU per update relative to the no-op broadcast, by clients: " + ", ".join(
        f"{c}: {statistics.median(o[c]['cpu_per_update_ms'] / max(b[c]['cpu_per_update_ms'], 10.0) for b, o in pairs):.2f}x"
        for c in counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
