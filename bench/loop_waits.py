"""Where a hosts-view GET waits while reports come in: one ``trioscope serve``
process (SQLite, no bus) run with a Trio instrument and the collector's
callbacks, loaded with ``--hosts`` hosts, then reports at ``--rate`` per second
while bench/bus_ingest.py's ``watch_views`` runs its GET loops and WebSocket
clients. A diagnosis, not a target: issue 20's GET p95 figure is bench/bus_ingest.py's.

    .venv/bin/python bench/loop_waits.py [--rate 100] [--hosts 1000] [--seconds 18]

Printed, for the loaded window only (the counters are reset once the load
runs): the GETs' p50/p95 as the client saw them; the scheduler's batches
(p50/p90/p99/max); each collection's CPU time by generation; the slowest GETs'
steps on the server (wall, steps, their own CPU, the waits between steps); the
topology actor's answers to ``GetSnapshot`` (wall, CPU, reports pending then);
the tasks and actors that ran longest.

``--serve`` is how the script runs the server (the instrument goes into its
``trio.run``); ``--read-at-least N`` sets the topology actor's ``READ_AT_LEAST``
there, to try another value.

``--alternate-writes S``: an A/B of how a connection's bytes go out, in one
server under one load (this machine's swings, 2x between runs of the same
code, drowned the difference between two servers run in turn): every ``S``
seconds the server switches between its own ``protocol_send`` and Hypercorn's,
and prints for the GETs started under each how long until their body was
written (the server's side of what the client waits for).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
PYTHON = sys.executable
TOPOLOGY_GET = "/api/v1/query/topology"


def serve(argv: list[str], summary: str, read_at_least: int | None, alternate: float | None) -> int:
    """``trioscope serve argv`` with the instrument; SIGUSR2 starts counting, SIGUSR1 writes ``summary``."""
    import trio

    import trioscope.actors.topology as topology

    counting = [False]
    batches: list[float] = []
    steps: collections.Counter[str] = collections.Counter()
    longest: collections.Counter[str] = collections.Counter()
    tasks: dict[Any, list[Any]] = {}
    gets: list[tuple[float, int, float, list[float]]] = []
    delivered: dict[str, list[float]] = {"ours": [], "hypercorn": []}
    reads: list[tuple[float, float, int]] = []
    collections_cpu: dict[int, list[float]] = collections.defaultdict(list)
    started_gc = [0.0]

    def name_of(task: Any) -> str:
        name = task.name.split(" ")[0]
        if name.endswith("ActorCell.run"):
            try:
                path = str(task.coro.cr_frame.f_locals["self"].path)
            except (AttributeError, KeyError):
                return name
            parts = path.split("/")
            return "actor " + ("/".join(parts[:3]) + "/*" if parts[2:3] in (["agents"], ["clients"]) else path)
        return name

    def suspended_at(task: Any) -> str:
        """Where the task waits now: the innermost of its coroutines' frames in the project or Quart/Hypercorn."""
        coro, where = task.coro, ""
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None and "/trio/" not in frame.f_code.co_filename:
                where = f"{frame.f_code.co_name}:{frame.f_lineno}"
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        return where

    class Instrument(trio.abc.Instrument):
        def __init__(self) -> None:
            self.batch_started: float | None = None
            self.step_started = 0.0

        def before_io_wait(self, timeout: float) -> None:
            if self.batch_started is not None and counting[0]:
                batches.append(time.perf_counter() - self.batch_started)
            self.batch_started = None

        def after_io_wait(self, timeout: float) -> None:
            self.batch_started = time.perf_counter()

        def before_task_step(self, task: Any) -> None:
            now = self.step_started = time.perf_counter()
            if task.name.endswith("task_group._handle"):  # hypercorn's task for the application
                state = tasks.get(task)
                if state is None:
                    try:
                        path = task.coro.cr_frame.f_locals["scope"]["path"]
                    except (AttributeError, KeyError, TypeError):
                        path = ""
                    tasks[task] = [now, 0, 0.0, path, now, [], []]
                else:
                    state[5].append(now - state[4])

        def after_task_step(self, task: Any) -> None:
            now = time.perf_counter()
            spent = now - self.step_started
            state = tasks.get(task)
            if state is not None:
                state[1] += 1
                state[2] += spent
                state[4] = now
                state[6].append(suspended_at(task))
            if counting[0]:
                name = name_of(task)
                steps[name] += spent
                longest[name] = max(longest[name], spent)

        def task_exited(self, task: Any) -> None:
            state = tasks.pop(task, None)
            if state is not None and state[3] == TOPOLOGY_GET and counting[0]:
                gets.append((state[4] - state[0], state[1], state[2], state[5], state[6]))

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started_gc[0] = time.thread_time()
        elif counting[0]:
            collections_cpu[info["generation"]].append(time.thread_time() - started_gc[0])

    gc.callbacks.append(collected)
    handle = topology.TopologyActor.handle

    async def timed_handle(self: Any, message: Any) -> Any:
        if not (isinstance(message, topology.GetSnapshot) and counting[0]):
            return await handle(self, message)
        wall, cpu, pending = time.perf_counter(), time.thread_time(), len(self.pending)
        try:
            return await handle(self, message)
        finally:
            reads.append((time.perf_counter() - wall, time.thread_time() - cpu, pending))

    topology.TopologyActor.handle = timed_handle  # type: ignore[method-assign]
    if alternate is not None:
        from hypercorn.events import RawData
        from hypercorn.trio.tcp_server import TCPServer

        from trioscope.http._tcp_server import GuardedTCPServer

        variants = {"ours": GuardedTCPServer.protocol_send, "hypercorn": TCPServer.protocol_send}

        def variant_at(moment: float) -> str:
            return "ours" if int(moment / alternate) % 2 == 0 else "hypercorn"

        async def either(self: Any, event: Any) -> None:
            state = tasks.get(trio.lowlevel.current_task())
            began = state[0] if state is not None else time.perf_counter()  # a GET: all its writes one way
            variant = variant_at(began)
            await variants[variant](self, event)
            if (state is not None and state[3] == TOPOLOGY_GET and counting[0] and isinstance(event, RawData)
                    and len(event.data) > 4096):  # the body
                delivered[variant].append(time.perf_counter() - began)

        GuardedTCPServer.protocol_send = either  # type: ignore[method-assign]
    if read_at_least is not None:
        topology.READ_AT_LEAST = read_at_least

    def start_counting(*_: Any) -> None:
        for kept in (batches, gets, reads, *delivered.values()):
            kept.clear()
        steps.clear()
        longest.clear()
        collections_cpu.clear()
        counting[0] = True

    def write_summary(*_: Any) -> None:
        Path(summary).write_text(json.dumps({
            "batches": sorted(batches), "gets": sorted(gets, reverse=True)[:10],
            "reads": sorted(reads, reverse=True), "collections": collections_cpu,
            "delivered": {variant: sorted(times) for variant, times in delivered.items()},
            "steps": [(name, spent, longest[name]) for name, spent in steps.most_common(12)]}))

    signal.signal(signal.SIGUSR2, start_counting)
    signal.signal(signal.SIGUSR1, write_summary)
    run = trio.run

    def instrumented(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("instruments", []).append(Instrument())
        return run(*args, **kwargs)

    trio.run = instrumented  # type: ignore[assignment]
    sys.argv = ["trioscope", "serve", *argv]
    from trioscope.cli import main

    return main()


def pct(values: list[float], q: float) -> float:
    return 1000 * values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=18.0)
    parser.add_argument("--ws-clients", type=int, default=20)
    parser.add_argument("--getters", type=int, default=4)
    parser.add_argument("--read-at-least", type=int, default=None)
    parser.add_argument("--alternate-writes", type=float, default=None, metavar="S",
                        help="switch between our response writes and Hypercorn's every S seconds (A/B)")
    parser.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        return serve(args.serve, args.summary, args.read_at_least, args.alternate_writes)

    import trio
    from bus_ingest import watch_views
    from ingest import UNLIMITED, drive
    from servers import free_port, stop

    port = free_port()
    data = tempfile.mkdtemp(prefix="trioscope-loop-waits-")
    summary = os.path.join(data, "summary.json")
    extra = ["--read-at-least", str(args.read_at_least)] if args.read_at_least is not None else []
    if args.alternate_writes is not None:
        extra += ["--alternate-writes", str(args.alternate_writes)]
    server = subprocess.Popen(
        [PYTHON, __file__, *extra, "--summary", summary, "--serve", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--local-probe", "false", *UNLIMITED],
        env={**os.environ, "TRIOSCOPE_STORAGE_DATA_DIR": data}, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert server.stdout is not None
        for line in server.stdout:
            if line.startswith("trioscope listening on"):
                break
        # One report per host first: the measured reports are later ones, as in bus_ingest's views.
        drive(port, 32, 600.0, first_agent=90_000, hosts=args.hosts, requests=args.hosts)
        load = subprocess.Popen(
            [PYTHON, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports", "--connections",
             str(max(1, min(32, int(args.rate)))), "--seconds", str(args.seconds + 4), "--first-agent", "90000",
             "--hosts", str(args.hosts), "--rate", f"{args.rate:.1f}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        assert load.stderr is not None
        load.stderr.readline()  # "ready"
        time.sleep(1.0)
        server.send_signal(signal.SIGUSR2)
        views = trio.run(watch_views, port, args.seconds, args.ws_clients, args.getters)
        server.send_signal(signal.SIGUSR1)
        out, _ = load.communicate()
        deadline = time.monotonic() + 30
        while not os.path.exists(summary) and time.monotonic() < deadline:
            time.sleep(0.1)
        found = json.loads(Path(summary).read_text())
    finally:
        stop(server)
    sent = json.loads(out)
    accepted = sent["statuses"].get("202", 0) / sent["elapsed"]
    batches = found["batches"]
    print(f"reports at {args.rate:.0f}/s asked ({accepted:.1f}/s accepted), {args.hosts} hosts; GETs seen by the "
          f"client: p50 {views['p50_ms']:.1f} ms, p95 {views['p95_ms']:.1f} ms, max {views['max_ms']:.1f} ms over "
          f"{views['gets']}; WebSocket diffs per client min {views['diffs_min']}")
    print(f"scheduler batches: {len(batches)}, p50 {pct(batches, 0.5):.1f} ms, p90 {pct(batches, 0.9):.1f}, "
          f"p99 {pct(batches, 0.99):.1f}, max {pct(batches, 1.0):.1f}")
    for generation, cpu in sorted(found["collections"].items()):
        print(f"collections, generation {generation}: {len(cpu)}, CPU {sum(cpu):.2f} s, longest {1000 * max(cpu):.0f} ms")
    print("slowest GETs on the server (wall ms, steps, own CPU ms, waits between steps ms):")
    for wall, count, own, waits, where in found["gets"][:6]:
        print(f"  {1000 * wall:6.0f} {count:3d} {1000 * own:6.1f}  {[round(1000 * w) for w in waits]}")
        print(f"         suspended at: {where}")
    for variant, times in found["delivered"].items():
        if times:
            print(f"GETs started with {variant} writes: {len(times)}, body written after p50 {pct(times, 0.5):.1f} ms, "
                  f"p90 {pct(times, 0.9):.1f}, p95 {pct(times, 0.95):.1f} (the server's side)")
    reads = found["reads"]
    print(f"topology actor's answers to GetSnapshot: {len(reads)}, slowest (wall ms, CPU ms, pending): "
          f"{[(round(1000 * w), round(1000 * c), p) for w, c, p in reads[:6]]}")
    print("longest-running tasks (CPU s, longest step ms):")
    for name, spent, step in found["steps"]:
        print(f"  {spent:6.2f} {1000 * step:6.1f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
