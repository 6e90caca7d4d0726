"""Where a worker of ``trioscope serve --bus --workers 2`` spends its CPU under
report load (issue 20): what consuming a report costs (reading the envelope,
the asyncio→Trio bridge, handing it on, merging) beside what receiving one
costs (HTTP, decoding, packing, publishing). Profiled with yappi (CPU clock,
every thread: nats-py runs in its own asyncio thread).

    .venv/bin/pip install yappi   # not a dependency of trioscope: the benchmark's own
    .venv/bin/python bench/profile_bus.py [--hosts 1000] [--connections 32] [--seconds 15] [--top 25]

A nats-server and a PostgreSQL database of the bench's own; a ``sitecustomize``
on ``PYTHONPATH`` installs yappi's start (SIGUSR1) and save (SIGUSR2) handlers
in every worker; every host reports once, then a steady stretch of
``--seconds`` is profiled. Printed per worker: CPU per report (yappi's overhead
included: compare only between parts of one run) split into the parts above,
and the functions that cost most on their own.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from ingest import UNLIMITED, Bus, database, drive, merged  # noqa: E402
from servers import free_port, start, stop  # noqa: E402

SITECUSTOMIZE = """
import os, signal
if os.environ.get("TRIOSCOPE_PROFILE_DIR"):
    import yappi
    yappi.set_clock_type("cpu")
    def _save(*_):
        yappi.stop()
        yappi.get_func_stats().save(os.path.join(os.environ["TRIOSCOPE_PROFILE_DIR"], f"{os.getpid()}.prof"),
                                    type="pstat")
    signal.signal(signal.SIGUSR1, lambda *_: yappi.start(builtins=False))
    signal.signal(signal.SIGUSR2, _save)
"""

PARTS = {
    "receive (POST /api/v1/reports, publish included)": [("_reports.py", "submit_report")],
    "feed: read the stream (bridge, fetch, envelopes)": [("report_feed.py", "ReportFeedActor._follow")],
    "  of which reading envelopes": [("_envelope.py", "unpack_report"), ("_envelope.py", "unpack_reports")],
    "  of which the bridge (asyncio thread side: nats-py)": [("_reader.py", "StreamReader.take"),
                                                             ("_reader.py", "StreamReader._pump")],
    "  publishing on the asyncio thread (nats-py)": [("_client.py", "ReportBus._publish")],
    "roster (hands each report on)": [("roster.py", "RosterActor.handle")],
    "topology (partition, merge, publish)": [("topology.py", "TopologyActor.handle")],
    "probes' actors": [("agent.py", "AgentActor.handle")],
    "hub (live diffs, report_update)": [("hub.py", "HubActor.handle")],
    "metrics (host series)": [("metrics.py", "MetricsActor.handle")],
}
"""Parts of a worker's CPU, as yappi's cumulative CPU time of these functions (file suffix, name)."""


def thread_cpu(process: psutil.Process) -> dict[int, float]:
    """CPU seconds of each of the process's threads, by thread id (the main thread's is the pid)."""
    return {t.id: t.user_time + t.system_time for t in process.threads()}


def reports(stats: dict) -> int:
    """Reports this worker merged in the profiled stretch: one ``MergeReport`` built per report handed on."""
    return sum(v[0] for k, v in stats.items() if k[2] == "MergeReport.__init__")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="trioscope-profile-bus-")
    site = os.path.join(work, "site")
    os.makedirs(site)
    Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
    bus = Bus()
    name = f"trioscope_profile_bus_{os.getpid()}"
    port = free_port()
    env = {**os.environ, "TRIOSCOPE_PROFILE_DIR": work, "PYTHONPATH": site}
    server = start([sys.executable, "-m", "trioscope", "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--log-level", "warning", "--local-probe", "false", *UNLIMITED, "--bus", bus.url,
                    "--workers", str(args.workers), "--database", database(name)], env)
    try:
        drive(port, args.connections, 600.0, first_agent=0, hosts=args.hosts, requests=args.hosts)
        merged(port, 3 * args.workers)
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/loadgen.py"), f"http://127.0.0.1:{port}/api/v1/reports",
             "--connections", str(args.connections), "--seconds", str(args.seconds + 4), "--hosts", str(args.hosts)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(2)
        workers = psutil.Process(server.pid).children()
        cpu = {w.pid: sum(w.cpu_times()[:2]) for w in workers}
        threads = {w.pid: thread_cpu(w) for w in workers}
        for worker in workers:
            os.kill(worker.pid, signal.SIGUSR1)
        time.sleep(args.seconds)
        for worker in workers:
            os.kill(worker.pid, signal.SIGUSR2)
        cpu = {w.pid: sum(w.cpu_times()[:2]) - cpu[w.pid] for w in workers}
        threads = {w.pid: {tid: spent - threads[w.pid].get(tid, 0.0) for tid, spent in thread_cpu(w).items()}
                   for w in workers}
        load.communicate()
    finally:
        stop(server)
        bus.close()
        database(name, drop_only=True)
    for worker in workers:
        path = os.path.join(work, f"{worker.pid}.prof")
        deadline = time.monotonic() + 10
        while not os.path.exists(path) and time.monotonic() < deadline:
            time.sleep(0.1)
        stats = pstats.Stats(path).stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
        count = max(1, reports(stats))
        total = sum(v[2] for v in stats.values())
        received = sum(v[0] for k, v in stats.items() if k[0].endswith("_reports.py") and k[2] == "submit_report")
        print(f"worker {worker.pid}: {count} reports merged, {received} received here; CPU {cpu[worker.pid]:.1f} s "
              f"({1000 * cpu[worker.pid] / count:.2f} ms per report merged); yappi total {total:.1f} s "
              f"({1000 * total / count:.2f} ms per report)")
        main_thread = threads[worker.pid].get(worker.pid, 0.0)
        others = sum(threads[worker.pid].values()) - main_thread
        print(f"  threads (psutil; yappi's own cost included): Trio's "
              f"{1000 * main_thread / count:.3f} ms per report merged, the others (nats-py's asyncio loop, "
              f"worker threads) {1000 * others / count:.3f} ms")
        for part, functions in PARTS.items():
            spent = sum(v[3] for k, v in stats.items() for f in functions if k[0].endswith(f[0]) and k[2] == f[1])
            print(f"  {part:55s} {1000 * spent / count:6.3f} ms per report  ({100 * spent / total:4.1f}%)")
        print("  on their own (tottime), per report merged:")
        top = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:args.top]
        for (file, line, func), (_, calls, tottime, cumtime, _) in top:
            print(f"    {1000 * tottime / count:6.3f} ms  cum {1000 * cumtime / count:6.3f}  {calls / count:6.1f} calls  "
                  f"{func}  ({Path(file).name}:{line})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
