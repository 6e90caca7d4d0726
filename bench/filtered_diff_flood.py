"""Many live-view clients of one address, each with a filter of its own: what
they cost everyone else, on the code before and after a change, in one run.

    .venv/bin/python bench/filtered_diff_flood.py [--hosts 200] [--clients 100] [--rate 15]
                                                  [--seconds 10] [--rounds 2] [--base REV] [--quick]

Per round and target (``base``: ``src`` as at ``--base``, default HEAD;
``new``: the working tree), back to back, a fresh `trioscope serve` each:

* probes: ``--hosts`` hosts (``tests.synthetic.host_report``, 100 processes
  each: 200 hosts = ~23,000 nodes) report once, then re-report at ``--rate``
  per second in all, every process's CPU changing each time;
* **quiet**: ``/health`` latency (one request at a time) and the server's CPU
  for ``--seconds``, no live-view client connected;
* **flood**: ``--clients`` WebSocket clients from 127.0.0.2 subscribe the
  processes view, each with its own filter (``{"search": <2 characters>,
  "min_metrics": {"cpu_percent": <0-10>}}``) and read everything; once
  connected, the same measures for ``--seconds``, and the diffs they received.

Prints per round and target p50/p95/max of ``/health`` quiet and flooded,
the server's CPU (percent of one core) quiet and flooded, and the filtered
clients' diffs per second; then per target the median over rounds and the
new/base ratios. The machine may be shared: compare within one run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psutil
import trio
import trio_websocket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from servers import free_port, start, stop  # noqa: E402

from tests.synthetic import host_report  # noqa: E402

CLIENT_ADDRESS = "127.0.0.2"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def base_source(ref: str, into: Path) -> Path:
    """``src`` as at ``ref``, importable as ``trioscope`` from the result. The
    whole of it: a base made of a few files of ``ref`` laid over the working
    tree broke once a module became a package (the package shadowed the file)."""
    checkout = into / "checkout"
    checkout.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(checkout)], input=archive, check=True)
    (into / "path").mkdir()
    (into / "path" / "trioscope").symlink_to(checkout / "src")
    return into / "path"


def server(port: int, hosts: int, source: Path | None, data: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": str(data)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", "--max-agents", str(hosts * 2)], env)


def report(index: int, hosts: int) -> bytes:
    body = host_report(1 + index % hosts, timestamp=time.time(), processes=100,
                       peers=[1 + (index + 1) % hosts, 1 + (index + 7) % hosts], cpu=random.random() * 100)
    for process in body["processes_info"]["processes"]:
        process["cpu_percent"] = random.random() * 50
    return orjson.dumps(body)


async def probes(base: str, hosts: int, rate: float, loaded: trio.Event) -> None:
    """Every host once (16 at a time), then re-reports at ``rate`` per second, until cancelled."""
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def post(index: int) -> None:
            body = await trio.to_thread.run_sync(report, index, hosts)
            try:
                await http.post("/api/v1/reports", content=body, headers={"Content-Type": "application/json"})
            except httpx.HTTPError:
                pass

        limiter = trio.CapacityLimiter(16)

        async def first(index: int) -> None:
            async with limiter:
                await post(index)

        async with trio.open_nursery() as nursery:
            for index in range(hosts):
                nursery.start_soon(first, index)
        loaded.set()
        index = 0
        async with trio.open_nursery() as nursery:
            while True:
                nursery.start_soon(post, index)
                index += 1
                await trio.sleep(1 / rate)


class Clients:
    """``count`` filtered clients of the processes view from ``CLIENT_ADDRESS``, reading everything."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.open = 0
        self.diffs = 0
        self.resets = 0

    async def run(self, stop: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(self.count):
                nursery.start_soon(self._one, stop)
                await trio.sleep(0.005)
            await stop.wait()
            nursery.cancel_scope.cancel()

    async def _one(self, stop: trio.Event) -> None:
        while not stop.is_set():
            try:
                await self._session()
            except* (trio_websocket.ConnectionClosed, trio_websocket.HandshakeError, OSError):
                pass  # refused while too many of the address wait for their first view: again
            await trio.sleep(1)

    async def _session(self) -> None:
        async with trio.open_nursery() as nursery:
            sock = trio.socket.socket()
            await sock.bind((CLIENT_ADDRESS, 0))
            await sock.connect(("127.0.0.1", self.port))
            ws = await trio_websocket.wrap_client_stream(
                nursery, trio.SocketStream(sock), "127.0.0.1", "/api/v1/ws?view=processes",
                max_message_size=2**31)
            search = "".join(random.choice("abcdefghij0123456789") for _ in range(2))
            await ws.send_message(orjson.dumps({"type": "subscribe", "topics": ["topology"],
                                                "view": "processes", "filter": {
                                                    "search": search,
                                                    "min_metrics": {"cpu_percent": random.random() * 10}}}
                                               ).decode())
            self.open += 1
            try:
                while True:
                    message = await ws.get_message()
                    if message.startswith('{"type":"ping"'):
                        await ws.send_message('{"type":"pong"}')
                    elif '"reset":true' in message:
                        self.resets += 1
                    elif message.startswith('{"type":"topology_update"'):
                        self.diffs += 1
            finally:
                self.open -= 1


async def health(http: httpx.AsyncClient, seconds: float) -> list[float]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        (await http.get("/health")).raise_for_status()
        latencies.append((time.perf_counter() - started) * 1000)
        await trio.sleep(0.02)
    return latencies


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


async def measured(http: httpx.AsyncClient, process: psutil.Process, seconds: float) -> tuple[list[float], float]:
    """``/health`` latencies over ``seconds`` and the server's CPU (percent of one core) meanwhile."""
    cpu, began = cpu_seconds(process), time.perf_counter()
    latencies = await health(http, seconds)
    return latencies, 100 * (cpu_seconds(process) - cpu) / (time.perf_counter() - began)


async def one(args: argparse.Namespace, source: Path | None, data: Path) -> dict[str, float]:
    port = free_port()
    proc = server(port, args.hosts, source, data)
    process = psutil.Process(proc.pid)
    base = f"http://127.0.0.1:{port}"
    try:
        async with trio.open_nursery() as nursery, httpx.AsyncClient(base_url=base, timeout=60) as http:
            loaded = trio.Event()
            nursery.start_soon(probes, base, args.hosts, args.rate, loaded)
            await loaded.wait()
            await trio.sleep(3)
            quiet, quiet_cpu = await measured(http, process, args.seconds)
            clients, stop_clients = Clients(port, args.clients), trio.Event()
            nursery.start_soon(clients.run, stop_clients)
            with trio.move_on_after(60):
                while clients.open < args.clients:
                    await trio.sleep(0.2)
            await trio.sleep(3)
            diffs, resets = clients.diffs, clients.resets
            flood, flood_cpu = await measured(http, process, args.seconds)
            row = {"quiet_p50": statistics.median(quiet), "quiet_p95": percentile(quiet, 0.95), "quiet_max": max(quiet),
                   "flood_p50": statistics.median(flood), "flood_p95": percentile(flood, 0.95), "flood_max": max(flood),
                   "quiet_cpu": quiet_cpu, "flood_cpu": flood_cpu, "open": clients.open,
                   "diffs_per_s": (clients.diffs - diffs) / args.seconds,
                   "resets_per_s": (clients.resets - resets) / args.seconds}
            stop_clients.set()
            nursery.cancel_scope.cancel()
    finally:
        stop(proc)
    return row


async def measure(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    results: dict[str, list[dict[str, float]]] = {"base": [], "new": []}
    with tempfile.TemporaryDirectory() as work:
        source = base_source(args.base, Path(work))
        for round_ in range(args.rounds):
            for name, path in (("base", source), ("new", None)):
                data = Path(work) / f"data-{name}-{round_}"
                data.mkdir()
                row = await one(args, path, data)
                results[name].append(row)
                print(f"round {round_ + 1} {name:>4} | /health quiet p50 {row['quiet_p50']:6.1f} p95 "
                      f"{row['quiet_p95']:6.1f} max {row['quiet_max']:6.0f} ms, CPU {row['quiet_cpu']:3.0f}% | "
                      f"{row['open']:.0f} filtered clients: p50 {row['flood_p50']:6.1f} p95 {row['flood_p95']:6.1f} "
                      f"max {row['flood_max']:6.0f} ms, CPU {row['flood_cpu']:3.0f}%, "
                      f"{row['diffs_per_s']:.0f} diffs/s, {row['resets_per_s']:.1f} resets/s received", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rate", type=float, default=15.0, help="reports per second, in all")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--base", default="HEAD", help="revision of src for the base target")
    parser.add_argument("--quick", action="store_true", help="20 hosts, 20 clients, 4 s, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.hosts, args.clients, args.seconds, args.rounds = 20, 20, 4.0, 1
    results = trio.run(measure, args)
    print(f"median of {args.rounds} rounds (shared machine: compare within the run):")
    medians = {}
    for name, rows in results.items():
        med = medians[name] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
        print(f"{name:>4}: /health p50 {med['quiet_p50']:.1f} -> {med['flood_p50']:.1f} ms, p95 {med['quiet_p95']:.1f} "
              f"-> {med['flood_p95']:.1f} ms, max {med['flood_max']:.0f} ms; CPU {med['quiet_cpu']:.0f}% -> "
              f"{med['flood_cpu']:.0f}%; {med['diffs_per_s']:.0f} diffs/s and "
              f"{med['resets_per_s']:.1f} resets/s to the filtered clients")
    base, new = medians["base"], medians["new"]
    print(f"new/base with the clients: /health p50 {new['flood_p50'] / base['flood_p50']:.2f}x, "
          f"p95 {new['flood_p95'] / base['flood_p95']:.2f}x, CPU {new['flood_cpu'] / max(base['flood_cpu'], 1):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
