"""Live views at scale: 1,000 and 5,000 WebSocket clients on a 1,000-host hosts view.

    .venv/bin/python bench/live_scale.py [--clients 100,1000,5000] [--processes 4] [--rounds 5] [--repeat 1]
                                         [--baseline-ref COMMIT]

Loads 1,000 hosts (10 containers, 100 processes, 200 connections each) into a
real ``trioscope serve`` and, per client count, in the same run and back to
back, measures it and a no-op Quart-Trio broadcast server under the same
Hypercorn settings (bench/noop_broadcast.py, no view to send, so its connect
figures are the framework's floor):

* connect: the clients (split over ``--processes`` client processes) all open
  ``/api/v1/ws?view=hosts`` at once; connected count, time until all have their
  first message (trioscope: the whole view; no-op: the handshake's answer, as
  it sends nothing first), p95 of that per client,
  refusals (503, retried after Retry-After as a browser does), and the
  server's peak RSS during the connections against its RSS before;
* steady state: server RSS growth per connected client, 3 s and 10 s after the
  last one connected (the second past the allocator's decay: jemalloc gives
  back the pages the burst of first views freed 5 s after, ``src/allocator``);
* fan-out: ``--rounds`` reports (trioscope: one host's report, whose diff goes
  to every client; no-op: a broadcast of a message of the diff's size), each
  ``--spacing`` seconds after the previous one has reached every client, so
  that each report is outside the ``--ws-max-rate`` window and flushed at
  once: latency from just before the POST to each client's receipt, p50/p95
  per report (medians over the reports), and server CPU per report;
* after disconnect: server RSS 5 s and 15 s after every client has gone
  (the second past ``server.memory_trim_interval``'s default of 10 s), against
  before they came.

With ``--baseline-ref``, the code of that commit is measured too, after the
other two, under the same client count.

The server's and the clients' file-descriptor limits are raised to the hard
limit. Client timestamps are ``time.perf_counter`` (CLOCK_MONOTONIC, one clock
for every process of this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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
from trio_websocket import ConnectionRejected, open_websocket_url

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from listing_memory import baseline_source  # noqa: E402
from servers import free_port, start, stop, trioscope  # noqa: E402
from topology_scale import body, load  # noqa: E402

HOSTS = 1000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


# ---- client processes -----------------------------------------------------------------------

async def worker(url: str, count: int, key: str, deadline: float) -> None:
    """``count`` clients of ``url``; commands on stdin, JSON answers on stdout."""
    seen: list[dict[int, float]] = [{} for _ in range(count)]
    connect_times: list[float] = []
    refused = [0]

    async def client(index: int, started: float) -> None:
        while time.perf_counter() < started + deadline:
            try:
                async with open_websocket_url(url, message_queue_size=4, connect_timeout=deadline) as ws:
                    if key == "round":  # the no-op server sends nothing first: connected is its floor
                        connect_times.append(time.perf_counter() - started)
                    first = key == "version"
                    while True:
                        message = await ws.get_message()
                        now = time.perf_counter()
                        if first:
                            connect_times.append(now - started)
                            first = False
                            continue  # the whole view
                        payload = orjson.loads(message)
                        payload = payload.get("payload", payload)
                        if key in payload:
                            seen[index].setdefault(payload[key], now)
            except ConnectionRejected as exc:
                refused[0] += 1
                retry = int((dict(exc.headers or []).get(b"retry-after") or b"1").decode())
                await trio.sleep(retry)
            except Exception:  # noqa: BLE001 - closed by the server or timed out: counted as not connected
                return

    async with trio.open_nursery() as nursery:
        started = time.perf_counter()
        for index in range(count):
            nursery.start_soon(client, index, started)
        async for line in trio.wrap_file(sys.stdin):
            command = json.loads(line)
            if command["do"] == "status":
                print(json.dumps({"connected": len(connect_times), "refused": refused[0],
                                  "connect_times": connect_times}), flush=True)
            elif command["do"] == "latencies":
                out = []
                for target, sent in command["marks"]:
                    out.append([min((t for k, t in s.items() if k >= target), default=float("nan")) - sent
                                for s in seen])
                print(json.dumps({"latencies": out}), flush=True)
            elif command["do"] == "received":
                target = command["mark"]
                print(json.dumps({"received": sum(1 for s in seen if any(k >= target for k in s))}), flush=True)
            elif command["do"] == "leave":
                nursery.cancel_scope.cancel()
                return


class Workers:
    """The client processes, driven over their stdin/stdout."""

    def __init__(self, url: str, total: int, processes: int, key: str, deadline: float) -> None:
        shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
        self.procs = [subprocess.Popen([sys.executable, __file__, "--worker", url, str(n), key, str(deadline)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for n in shares if n]

    def ask(self, command: dict) -> list[dict]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            answers.append(json.loads(proc.stdout.readline()))
        return answers

    def leave(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps({"do": "leave"}) + "\n")
            proc.stdin.flush()
        for proc in self.procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---- one server, one client count -----------------------------------------------------------

def measure(kind: str, clients: int, processes: int, rounds: int, spacing: float, diff_bytes: int,
            source: Path | None = None) -> dict:
    """``kind``: noop, trioscope, or baseline (trioscope importable from ``source``)."""
    port = free_port()
    if kind == "noop":
        proc = start([sys.executable, str(ROOT / "noop_broadcast.py"), str(port)])
        url, key = f"ws://127.0.0.1:{port}/ws", "round"
    else:
        # Every client comes from 127.0.0.1: the per-address budgets would refuse (429/503) and pace them.
        flags = ("--ws-max-clients", "100000", "--ws-max-clients-per-address", "100000", "--max-connections-per-address", "100000", "--ws-max-waiting-clients-per-address", "100000",
                 "--rate-per-address", "1000000")
        if kind == "baseline":
            assert source is not None
            proc = start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                          "--log-level", "warning", "--local-probe", "false", *flags],
                         env={**os.environ, "PYTHONPATH": str(source)})
        else:
            proc = trioscope(port, *flags)
        url, key = f"ws://127.0.0.1:{port}/api/v1/ws?view=hosts", "version"
    base = f"http://127.0.0.1:{port}"
    server = psutil.Process(proc.pid)
    result: dict = {"kind": kind, "clients": clients}
    try:
        http = httpx.Client(base_url=base, timeout=120)
        if kind != "noop":
            trio.run(load, base, HOSTS)
            settle(http)
            result["view_bytes"] = len(http.get("/api/v1/query/topology?view=hosts").content)
        time.sleep(2)
        before = server.memory_info().rss
        peak = before
        started = time.perf_counter()
        workers = Workers(url, clients, processes, key, deadline=180)
        status: list[dict] = []
        connected = 0
        while time.perf_counter() - started < 180:
            peak = max(peak, server.memory_info().rss)
            status = workers.ask({"do": "status"})
            connected = sum(s["connected"] for s in status)
            if connected >= clients:
                break
            time.sleep(0.05)
        times = [t for s in status for t in s["connect_times"]]
        result.update(connected=connected, refused=sum(s["refused"] for s in status),
                      connect_all_s=max(times, default=float("nan")), connect_p95_s=percentile(times, 0.95),
                      rss_before_mib=before / 2**20, rss_peak_mib=peak / 2**20, peak_ratio=peak / before)
        time.sleep(3)
        early = server.memory_info().rss
        time.sleep(7)
        steady = server.memory_info().rss
        result["kib_per_client_3s"] = (early - before) / max(1, connected) / 1024
        result["kib_per_client"] = (steady - before) / max(1, connected) / 1024
        marks: list[tuple[int, float]] = []
        cpu_before = sum(server.cpu_times()[:2])
        for r in range(1, rounds + 1):
            sent = time.perf_counter()
            if kind != "noop":
                http.post("/api/v1/reports", content=body(r % HOSTS, time.time(), HOSTS),
                          headers={"Content-Type": "application/json"}).raise_for_status()
                target = http.get("/api/v1/query/stats").json()["topology"]["version"]
            else:
                http.post("/broadcast", content=orjson.dumps({"round": r, "padding": "x" * diff_bytes}))
                target = r
            marks.append((target, sent))
            while time.perf_counter() - sent < 60:
                if sum(a["received"] for a in workers.ask({"do": "received", "mark": target})) >= connected:
                    break
                time.sleep(0.02)
            time.sleep(spacing)
        cpu = sum(server.cpu_times()[:2]) - cpu_before
        per_worker = workers.ask({"do": "latencies", "marks": marks})
        p50s, p95s = [], []
        for i in range(len(marks)):
            lat = [x * 1000 for w in per_worker for x in w["latencies"][i] if x == x]
            p50s.append(percentile(lat, 0.5))
            p95s.append(percentile(lat, 0.95))
        result.update(delivery_p50_ms=statistics.median(p50s), delivery_p95_ms=statistics.median(p95s),
                      cpu_ms_per_report=cpu / rounds * 1000)
        workers.leave()
        time.sleep(5)
        after_5s = server.memory_info().rss
        time.sleep(10)
        after = server.memory_info().rss
        result.update(rss_steady_mib=steady / 2**20, rss_after_5s_mib=after_5s / 2**20, rss_after_mib=after / 2**20,
                      after_5s_ratio=after_5s / before, after_ratio=after / before)
        http.close()
    finally:
        stop(proc)
    return result


def settle(http: httpx.Client) -> None:
    """Wait until every loaded report is merged: on a busy machine the merges
    run on after the last 202, and RSS "before" would be measured mid-load
    (seen: 263 reports still pending, a baseline 10% low)."""
    last = None
    while True:
        topology = http.get("/api/v1/query/stats").json()["topology"]
        if topology["agents"] == HOSTS and topology.get("pending_reports", 0) == 0 and topology["version"] == last:
            return
        last = topology["version"]
        time.sleep(2)


def diff_size() -> int:
    """The size of the diff frame one host's report makes on the hosts view, as
    a client receives it (measured on a small server)."""
    port = free_port()
    proc = trioscope(port)
    try:
        base = f"http://127.0.0.1:{port}"

        async def run() -> int:
            async with httpx.AsyncClient(base_url=base) as http:
                for index in range(3):
                    await http.post("/api/v1/reports", content=body(index, time.time(), HOSTS),
                                    headers={"Content-Type": "application/json"})
                async with open_websocket_url(f"ws://127.0.0.1:{port}/api/v1/ws?view=hosts") as ws:
                    await ws.get_message()
                    await http.post("/api/v1/reports", content=body(1, time.time() + 1, HOSTS),
                                    headers={"Content-Type": "application/json"})
                    while True:
                        message = await ws.get_message()
                        if '"topology_update"' in message[:40]:
                            return len(message.encode())

        return trio.run(run)
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="100,1000,5000")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--spacing", type=float, default=1.0, help="seconds between a report's last receipt "
                        "and the next report (> 1 / --ws-max-rate)")
    parser.add_argument("--repeat", type=int, default=1, help="no-op/trioscope pairs per client count")
    parser.add_argument("--baseline-ref", help="a commit whose code to measure too (RSS after leaving, mostly)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by the servers and client processes
    if args.worker:
        url, count, key, deadline = args.worker
        trio.run(worker, url, int(count), key, float(deadline))
        return 0
    source = None
    if args.baseline_ref:
        source = baseline_source(args.baseline_ref, Path(tempfile.mkdtemp(prefix="live-scale-")))
    size = diff_size()
    print(f"a host's diff on the hosts view: {size} bytes; the no-op broadcast sends as many", flush=True)
    for clients in [int(c) for c in args.clients.split(",")]:
        for _ in range(args.repeat):
            kinds = ("noop", "trioscope", "baseline") if source is not None else ("noop", "trioscope")
            pair = {kind: measure(kind, clients, args.processes, args.rounds, args.spacing, size, source)
                    for kind in kinds}
            for kind, r in pair.items():
                print(json.dumps(r), flush=True)
            noop, ours = pair["noop"], pair["trioscope"]
            print(f"{clients:>5} clients | connected {ours['connected']}/{clients} (no-op {noop['connected']}) "
                  f"in {ours['connect_all_s']:.1f}s, p95 {ours['connect_p95_s']:.1f}s (no-op {noop['connect_all_s']:.1f}s) "
                  f"| peak RSS {ours['peak_ratio']:.2f}x loaded | {ours['kib_per_client']:.0f} KiB/client "
                  f"({ours['kib_per_client_3s']:.0f} at 3 s) "
                  f"| delivery p50 {ours['delivery_p50_ms']:.0f} / p95 {ours['delivery_p95_ms']:.0f} ms "
                  f"(no-op {noop['delivery_p50_ms']:.0f} / {noop['delivery_p95_ms']:.0f}: "
                  f"{ours['delivery_p95_ms'] / noop['delivery_p95_ms']:.2f}x) "
                  f"| CPU/report {ours['cpu_ms_per_report']:.0f} ms (no-op {noop['cpu_ms_per_report']:.0f}) "
                  f"| RSS after leaving {ours['after_5s_ratio']:.2f}x before at 5 s, {ours['after_ratio']:.2f}x at 15 s",
                  flush=True)
            for kind, r in pair.items():
                print(f"  {kind:<9}: rss before {r['rss_before_mib']:.0f} MiB, peak {r['rss_peak_mib']:.0f} MiB, "
                      f"after leaving {r['rss_after_5s_mib']:.0f} MiB at 5 s ({r['after_5s_ratio']:.2f}x before), "
                      f"{r['rss_after_mib']:.0f} MiB at 15 s ({r['after_ratio']:.2f}x)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
