"""Issue 20's replica figures in one run: report ingest of ``trioscope serve
--bus --workers N`` beside one process on today's path, each beside a no-op
Quart-Trio POST with the same process count, then the views while reports
come at 80% of the bus's measured maximum.

    .venv/bin/python bench/bus_ingest.py [--hosts 1000] [--rounds 3] [--seconds 10] [--workers 2]
                                         [--base REV] [--view-seconds 20] [--ws-clients 20]

Per round, each a fresh server (bench/ingest.py's ``measure`` protocol: every
host reports once, then ``--seconds`` measured over 32 connections, 1,000
distinct hosts rotating; a bus figure counts once every worker has merged
everything): no-op POST one process, ``trioscope serve`` one process, no-op
POST ``--workers N``, ``--bus --workers N`` on a nats-server and a PostgreSQL
database of the bench's own, and with ``--base REV`` the same bus server run
from that revision's ``src`` (``git archive`` on ``PYTHONPATH`` as
``trioscope``), so a change is compared with its base in the same run.
Printed: reports/s, reports per server CPU-second (the process tree), the
nats-server's and the load generator's CPU.

Then, once: ``--bus --workers N`` again, the views with no report coming
(the same GETs: what the load adds), then reports sent at ``--load-share`` of
the median bus rate (a steady rate, bench/loadgen.py ``--rate``), and while
they come: hosts-view GETs (``/api/v1/query/topology?view=hosts``, a new
connection each, so every worker answers some) with their p50/p95, and
``--ws-clients`` WebSocket clients on the hosts view counting the diffs
(``topology_update`` that is not a reset) each receives; then a new replica
(one process) started on that stream: seconds until ready (every report of
the window replayed), this code and ``--base``'s. Targets (issue 20):
bus >= 1.5x one process, per server CPU-second >= 0.8x one process, GET p95
< 100 ms, every WebSocket client receiving diffs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from trio_websocket import open_websocket_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from ingest import UNLIMITED, Bus, children_cpu, cpu_seconds, database, drive, merged  # noqa: E402
from servers import free_port, start, stop  # noqa: E402

PYTHON = sys.executable


def base_tree(rev: str) -> str:
    """A directory holding ``trioscope``: ``rev``'s ``src`` (for ``PYTHONPATH``)."""
    where = tempfile.mkdtemp(prefix="trioscope-base-")
    os.makedirs(os.path.join(where, "trioscope"))
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "--strip-components=1", "-C", os.path.join(where, "trioscope")], input=archive,
                   check=True)
    return where


def serve(port: int, flags: list[str], pythonpath: str | None) -> subprocess.Popen[str]:
    env = {**os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {})}
    return start([PYTHON, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                  "--log-level", "warning", "--local-probe", "false", *UNLIMITED, *flags], env)


class Server:
    """One server of a measure: a no-op POST, ``trioscope serve`` one process,
    or ``--bus --workers N`` with its nats-server and database."""

    def __init__(self, kind: str, workers: int, tag: str, pythonpath: str | None = None) -> None:
        self.kind = kind
        self.workers = workers
        self.port = free_port()
        self.bus: Bus | None = None
        self.name = f"bench_bus_ingest_{os.getpid()}_{tag}"
        if kind == "noop":
            self.proc = start([PYTHON, str(ROOT / "bench/noop_server.py"), str(self.port),
                               *(["--workers", str(workers)] if workers > 1 else [])])
        elif kind == "bus":
            self.bus = Bus()
            self.database = database(self.name)
            self.proc = serve(self.port, ["--bus", self.bus.url, "--workers", str(workers),
                                          "--database", self.database], pythonpath)
        else:
            self.proc = serve(self.port, [], pythonpath)

    def settle(self) -> None:
        if self.kind != "noop":
            merged(self.port, 3 * self.workers if self.kind == "bus" else 1)

    def close(self) -> None:
        stop(self.proc)
        if self.bus is not None:
            self.bus.close()
            database(self.name, drop_only=True)


def measure(server: Server, args: argparse.Namespace, first_agent: int) -> dict[str, Any]:
    """Reports accepted per second and per server CPU-second, with the load
    generator's and nats-server's CPU over the measured stretch."""
    drive(server.port, args.connections, 600.0, first_agent=first_agent, hosts=args.hosts, requests=args.hosts)
    server.settle()  # the warm-up's merges are not the measured stretch's
    cpu, loadgen = cpu_seconds(server.proc), children_cpu()
    nats = cpu_seconds(server.bus.proc.pid) if server.bus is not None else 0.0
    result = drive(server.port, args.connections, args.seconds, first_agent=first_agent, hosts=args.hosts)
    loadgen = children_cpu() - loadgen
    server.settle()  # what was accepted is merged too before the CPU is read
    cpu = cpu_seconds(server.proc) - cpu
    nats = cpu_seconds(server.bus.proc.pid) - nats if server.bus is not None else 0.0
    accepted = result["statuses"].get("202", 0)
    return {"rate": accepted / result["elapsed"], "per_cpu": accepted / cpu, "server_cpu": cpu, "nats_cpu": nats,
            "loadgen_cpu": loadgen, "statuses": result["statuses"]}


def one(kind: str, workers: int, args: argparse.Namespace, round_no: int, tag: str,
        pythonpath: str | None = None) -> dict[str, Any]:
    server = Server(kind, workers, f"{round_no}_{tag}", pythonpath)
    try:
        return measure(server, args, first_agent=10_000 * round_no)
    finally:
        server.close()


async def watch_views(port: int, seconds: float, ws_clients: int, getters: int) -> dict[str, Any]:
    """Hosts-view GET latencies and WebSocket diffs received for ``seconds``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    diffs = [0] * ws_clients
    resets = [0] * ws_clients
    url = f"http://127.0.0.1:{port}/api/v1/query/topology"

    async def get_loop() -> None:
        async with httpx.AsyncClient(timeout=30, headers={"Connection": "close"}) as client:
            while True:
                started = time.perf_counter()
                response = await client.get(url, params={"view": "hosts"})
                await response.aread()
                latencies.append(time.perf_counter() - started)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                await trio.sleep(0.2)

    async def ws_client(index: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        ws_url = f"ws://127.0.0.1:{port}/api/v1/ws?view=hosts"
        async with open_websocket_url(ws_url, max_message_size=256 * 1024 * 1024) as ws:
            task_status.started()
            while True:
                message = orjson.loads(await ws.get_message())
                if message.get("type") == "topology_update":
                    if message["payload"].get("reset"):
                        resets[index] += 1
                    else:
                        diffs[index] += 1

    async with trio.open_nursery() as nursery:
        for index in range(ws_clients):
            await nursery.start(ws_client, index)
        for _ in range(getters):
            nursery.start_soon(get_loop)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()
    ordered = sorted(latencies)
    return {"gets": len(ordered), "get_statuses": statuses,
            "p50_ms": 1000 * statistics.median(ordered) if ordered else None,
            "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))] if ordered else None,
            "max_ms": 1000 * ordered[-1] if ordered else None,
            "diffs_min": min(diffs), "diffs_median": statistics.median(diffs), "diffs_total": sum(diffs),
            "resets_after_first": sum(max(0, r - 1) for r in resets)}


def catch_up(server: Server, pythonpath: str | None) -> dict[str, Any]:
    """A new replica (one process) on ``server``'s bus and database: seconds
    from listening to ready (the stream read to its end: every report of the
    window replayed), and its CPU meanwhile."""
    assert server.bus is not None
    port = free_port()
    stream = httpx.get(f"http://127.0.0.1:{server.port}/api/v1/query/stats").json()["bus"]["merged_sequence"]
    started = time.perf_counter()
    proc = serve(port, ["--bus", server.bus.url, "--database", server.database], pythonpath)
    listening = time.perf_counter()
    try:
        while httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code != 200:
            if time.perf_counter() - started > 600:
                raise RuntimeError("the new replica was not ready after 600 s")
            time.sleep(0.05)
        ready = time.perf_counter()
        cpu = cpu_seconds(proc)
    finally:
        stop(proc)
    return {"reports": stream, "seconds": ready - listening, "start_seconds": listening - started, "cpu": cpu}


def views_under_load(rate: float, args: argparse.Namespace, base: str | None) -> dict[str, Any]:
    """``--bus --workers N`` with reports at ``rate`` per second; the views
    meanwhile; then a new replica's catch-up on that stream (and the base
    revision's, with ``--base``)."""
    server = Server("bus", args.workers, "views")
    try:
        drive(server.port, args.connections, 600.0, first_agent=90_000, hosts=args.hosts, requests=args.hosts)
        server.settle()
        # The same views with no report coming: what the load adds.
        quiet = trio.run(watch_views, server.port, min(args.view_seconds, 10.0), 2, args.getters)
        cpu = cpu_seconds(server.proc)
        assert server.bus is not None
        nats = cpu_seconds(server.bus.proc.pid)
        load = subprocess.Popen(
            [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{server.port}/api/v1/reports",
             # Fewer connections at a low rate: one idle past Hypercorn's 5 s keep-alive is closed.
             "--connections", str(max(1, min(args.connections, int(rate)))), "--seconds", str(args.view_seconds + 2),
             "--first-agent",
             "90000", "--hosts", str(args.hosts), "--rate", f"{rate:.1f}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert load.stderr is not None
        load.stderr.readline()  # "ready": its reports are built, it sends from now on
        views = trio.run(watch_views, server.port, args.view_seconds, args.ws_clients, args.getters)
        out, _ = load.communicate()
        result = json.loads(out)
        server.settle()
        views["sent_rate"] = result["statuses"].get("202", 0) / result["elapsed"]
        views["report_statuses"] = result["statuses"]
        views["server_cpu"] = cpu_seconds(server.proc) - cpu
        views["nats_cpu"] = cpu_seconds(server.bus.proc.pid) - nats
        views["quiet"] = quiet
        views["catch_up"] = catch_up(server, None)
        if base is not None:
            views["catch_up_base"] = catch_up(server, base)
        return views
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--base", default=None, help="also measure the bus server of this git revision, each round")
    parser.add_argument("--load-share", type=float, default=0.8)
    parser.add_argument("--view-seconds", type=float, default=20.0)
    parser.add_argument("--ws-clients", type=int, default=20)
    parser.add_argument("--getters", type=int, default=4, help="GET loops (one request each 0.2 s plus its time)")
    parser.add_argument("--views-at", type=float, default=None,
                        help="skip the rounds: the views at this many reports/s")
    args = parser.parse_args()
    base = base_tree(args.base) if args.base else None
    rows: dict[str, list[float]] = {}

    def note(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    for round_no in range(args.rounds if args.views_at is None else 0):
        noop1 = one("noop", 1, args, round_no, "noop1")
        single = one("trioscope", 1, args, round_no, "one")
        noop_n = one("noop", args.workers, args, round_no, "noopn")
        bus = one("bus", args.workers, args, round_no, "bus")
        old = one("bus", args.workers, args, round_no, "base", base) if base else None
        note("one", single["rate"])
        note("one_cpu", single["per_cpu"])
        note("bus", bus["rate"])
        note("bus_cpu", bus["per_cpu"])
        note("one_vs_noop", single["rate"] / noop1["rate"])
        note("bus_vs_noop", bus["rate"] / noop_n["rate"])
        note("bus_vs_one", bus["rate"] / single["rate"])
        note("cpu_vs_one", bus["per_cpu"] / single["per_cpu"])
        line = (f"round {round_no + 1}: no-op x1 {noop1['rate']:.1f}/s | one process {single['rate']:.1f}/s "
                f"({single['rate'] / noop1['rate']:.2f}x its no-op), {single['per_cpu']:.1f}/CPU-s | no-op "
                f"x{args.workers} {noop_n['rate']:.1f}/s | --bus --workers {args.workers} {bus['rate']:.1f}/s "
                f"({bus['rate'] / noop_n['rate']:.2f}x its no-op, {bus['rate'] / single['rate']:.2f}x one process), "
                f"{bus['per_cpu']:.1f}/CPU-s ({bus['per_cpu'] / single['per_cpu']:.2f}x one process)")
        if old is not None:
            note("bus_vs_base", bus["rate"] / old["rate"])
            note("cpu_vs_base", bus["per_cpu"] / old["per_cpu"])
            note("base_cpu_vs_one", old["per_cpu"] / single["per_cpu"])
            line += (f" | base {args.base} bus {old['rate']:.1f}/s, {old['per_cpu']:.1f}/CPU-s "
                     f"({old['per_cpu'] / single['per_cpu']:.2f}x one process; this/base "
                     f"{bus['rate'] / old['rate']:.2f}x rate, {bus['per_cpu'] / old['per_cpu']:.2f}x per CPU-s)")
        base_cpu = f" base {old['server_cpu']:.1f}" if old is not None else ""
        line += (f" | CPU s: server one {single['server_cpu']:.1f} bus {bus['server_cpu']:.1f}{base_cpu}, "
                 f"nats-server {bus['nats_cpu']:.2f}, "
                 f"load generator one {single['loadgen_cpu']:.1f} bus {bus['loadgen_cpu']:.1f} | statuses one "
                 f"{single['statuses']} bus {bus['statuses']}")
        print(line, flush=True)
    if rows:
        med = {k: statistics.median(v) for k, v in rows.items()}
        print(f"median ({args.connections} connections, {args.hosts} hosts, {args.seconds:g} s per measure): one "
              f"process {med['one']:.1f}/s ({med['one_vs_noop']:.2f}x its no-op); --bus --workers {args.workers} "
              f"{med['bus']:.1f}/s ({med['bus_vs_noop']:.2f}x its no-op), {med['bus_vs_one']:.2f}x one process "
              f"(target >= 1.5: {'met' if med['bus_vs_one'] >= 1.5 else 'MISSED'}); per server CPU-second "
              f"{med['cpu_vs_one']:.2f}x one process (target >= 0.8: {'met' if med['cpu_vs_one'] >= 0.8 else 'MISSED'})"
              + (f"; base {args.base}: {med['base_cpu_vs_one']:.2f}x one process per CPU-s, this / base "
                 f"{med['bus_vs_base']:.2f}x rate, {med['cpu_vs_base']:.2f}x per CPU-s" if base else ""), flush=True)
    if args.view_seconds <= 0:
        return 0  # the rounds only (--view-seconds 0)
    rate = args.views_at if args.views_at is not None else args.load_share * statistics.median(rows["bus"])
    views = views_under_load(rate, args, base)
    p95 = views["p95_ms"]
    print(f"views while reports come at {rate:.1f}/s asked ({views['sent_rate']:.1f}/s accepted, statuses "
          f"{views['report_statuses']}): hosts-view GET p50 {views['p50_ms']:.1f} ms, p95 {p95:.1f} ms, max "
          f"{views['max_ms']:.1f} ms over {views['gets']} GETs {views['get_statuses']} (target p95 < 100 ms: "
          f"{'met' if p95 is not None and p95 < 100 else 'MISSED'}); WebSocket diffs per client over "
          f"{args.view_seconds:g} s: min {views['diffs_min']}, median {views['diffs_median']}, "
          f"{args.ws_clients} clients, resets after the first {views['resets_after_first']} (target every client "
          f"receives diffs: {'met' if views['diffs_min'] > 0 else 'MISSED'}); CPU s: server "
          f"{views['server_cpu']:.1f}, nats-server {views['nats_cpu']:.2f}", flush=True)
    quiet = views["quiet"]
    print(f"the same views with no report coming: GET p50 {quiet['p50_ms']:.1f} ms, p95 {quiet['p95_ms']:.1f} ms "
          f"over {quiet['gets']} GETs", flush=True)
    for key, label in (("catch_up", "this code"), ("catch_up_base", f"base {args.base}")):
        if key in views:
            found = views[key]
            print(f"catch-up of a new replica ({label}): {found['reports']} reports on the stream replayed in "
                  f"{found['seconds']:.1f} s ({found['reports'] / found['seconds']:.0f}/s) after {found['start_seconds']:.1f} s "
                  f"of start, {found['cpu']:.1f} s of its CPU", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
