"""Where one server process spends its CPU on the e2e command round (create ->
poll -> report, bench/poll_holder.py's ``e2e``), on SQLite or on PostgreSQL
with one worker, profiled with yappi (CPU clock, every thread: the database
calls run in worker threads, which cProfile does not see).

    .venv/bin/pip install yappi   # not a dependency of trioscope: the benchmark's own
    .venv/bin/python bench/profile_e2e.py [--clients 32] [--seconds 15] [--top 30]
    .venv/bin/python bench/profile_e2e.py --two-workers [--clients 32] [--seconds 15]

Each backend in turn: a server is started and ``--clients`` agents enrolled,
then it is started again under this script (``serve`` mode), the load runs,
and only a steady stretch of ``--seconds`` is profiled (SIGUSR1 starts yappi,
SIGUSR2 stops it and saves the stats), not start-up. Printed: the server's
CPU per command in that stretch (yappi's overhead included, so only the
ratio between the backends means anything), and the functions whose CPU per
command differs most between PostgreSQL and SQLite.

With ``--two-workers``: one PostgreSQL server with ``--workers 2``, each worker
profiled (a ``sitecustomize`` on ``PYTHONPATH`` installs the same signal
handlers in every process), and the share of each worker's CPU that following
the other worker's changes takes (the change feed, its decoding, and the
messages it sends to the queues and the notifier).
"""

from __future__ import annotations

import argparse
import os
import pstats
import runpy
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import psycopg
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from commands import SECRET, TRIOSCOPE_FLAGS, enroll, write_agents  # noqa: E402
from servers import free_port, stop  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def serve_profiled(argv: list[str], out: str) -> None:
    """``trioscope serve argv`` in this process; SIGUSR1/SIGUSR2 start and save a profile."""
    import yappi

    yappi.set_clock_type("cpu")

    def begin(*_: object) -> None:
        yappi.start(builtins=False)

    def save(*_: object) -> None:
        yappi.stop()
        yappi.get_func_stats().save(out, type="pstat")

    signal.signal(signal.SIGUSR1, begin)
    signal.signal(signal.SIGUSR2, save)
    sys.argv = ["trioscope", "serve", *argv]
    runpy.run_module("trioscope", run_name="__main__", alter_sys=True)


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
FEED = (("_listen.py", "_read"), ("change_feed.py", "ChangeFeedActor.handle"))
"""The change feed's path, with what it calls (reading the socket, decoding, publishing events, sending to the
queue owner); ``OWNER`` also forwards this worker's own requests, so counting it gives an upper bound."""
OWNER = ("queue_owner.py", "QueueOwnerActor.handle")


def creates(stats: dict[tuple[str, int, str], tuple[int, int, float, float, object]]) -> int:
    """Commands created in a profile: one ``CreateCommand`` built per create
    (whatever the wire decoder's structure functions are called)."""
    return sum(v[0] for k, v in stats.items() if k[2] == "CreateCommand.__init__")


def two_workers(args: argparse.Namespace, work: str) -> None:
    name = f"trioscope_profile2_{os.getpid()}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        db.execute(f"CREATE DATABASE {name}")
    site = os.path.join(work, "site")
    os.makedirs(site)
    Path(site, "sitecustomize.py").write_text(SITECUSTOMIZE)
    port = free_port()
    flags = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *TRIOSCOPE_FLAGS, "--workers", "2",
             "--database", f"postgresql://postgres@127.0.0.1:5432/{name}"]
    env = {**os.environ, "TRIOSCOPE_AUTH_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": work,
           "TRIOSCOPE_PROFILE_DIR": work, "PYTHONPATH": site}
    try:
        server = _start([sys.executable, "-m", "trioscope", "serve", *flags], env)
        agents = write_agents(work, trio.run(enroll, port, args.clients), "agents.json")
        stop(server)  # again: every worker loads every agent
        server = _start([sys.executable, "-m", "trioscope", "serve", *flags], env)
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/poll_holder.py"), "e2e", "--port", str(port), "--agents", agents,
             "--workers", str(args.clients), "--seconds", str(args.seconds + 6), "--warmup", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)
        workers = psutil.Process(server.pid).children()
        for worker in workers:
            os.kill(worker.pid, signal.SIGUSR1)
        time.sleep(args.seconds)
        for worker in workers:
            os.kill(worker.pid, signal.SIGUSR2)
        load.communicate()
        stop(server)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    for worker in workers:
        stats = pstats.Stats(os.path.join(work, f"{worker.pid}.prof")).stats  # type: ignore[attr-defined]
        commands = max(1, creates(stats))
        total = sum(v[2] for v in stats.values())
        def cumulative(where: tuple[str, str]) -> float:
            return sum(v[3] for k, v in stats.items() if k[0].endswith(where[0]) and k[2] == where[1])
        feed = sum(map(cumulative, FEED))
        owner = cumulative(OWNER)
        print(f"worker {worker.pid}: {commands} commands of its own, {1000 * total / commands:.1f} ms per command "
              f"(yappi); following the other worker: {100 * feed / total:.1f}% of its CPU, "
              f"{100 * (feed + owner) / total:.1f}% counting the queue owner (an upper bound)")


def _start(argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("trioscope listening on"):
            return proc
    raise RuntimeError(f"did not start: {argv}")


def profile(kind: str, args: argparse.Namespace, work: str) -> tuple[str, float, int]:
    """(stats file, server CPU seconds, commands) of one profiled stretch."""
    database = ""
    name = f"trioscope_profile_{os.getpid()}"
    if kind == "postgresql":
        with psycopg.connect(PG_ADMIN, autocommit=True) as db:
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            db.execute(f"CREATE DATABASE {name}")
        database = f"postgresql://postgres@127.0.0.1:5432/{name}"
    port = free_port()
    data = tempfile.mkdtemp(dir=work)
    out = os.path.join(work, f"{kind}.prof")
    flags = ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *TRIOSCOPE_FLAGS,
             *(["--database", database] if database else [])]
    env = {**os.environ, "TRIOSCOPE_AUTH_SECRET": SECRET, "TRIOSCOPE_STORAGE_DATA_DIR": data}
    try:
        server = _start([sys.executable, "-m", "trioscope", "serve", *flags], env)
        agents = write_agents(data, trio.run(enroll, port, args.clients), "agents.json")
        stop(server)
        server = _start([sys.executable, __file__, "serve", out, *flags], env)
        load = subprocess.Popen(
            [sys.executable, str(ROOT / "bench/poll_holder.py"), "e2e", "--port", str(port), "--agents", agents,
             "--workers", str(args.clients), "--seconds", str(args.seconds + 6), "--warmup", "2"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(4)  # past the warm-up
        process = psutil.Process(server.pid)
        cpu_before = sum(process.cpu_times()[:2])
        os.kill(server.pid, signal.SIGUSR1)
        time.sleep(args.seconds)
        os.kill(server.pid, signal.SIGUSR2)
        cpu = sum(process.cpu_times()[:2]) - cpu_before
        load.communicate()
        stop(server)
    finally:
        if database:
            with psycopg.connect(PG_ADMIN, autocommit=True) as db:
                db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    stats = pstats.Stats(out).stats  # type: ignore[attr-defined]  # pstats keeps its table untyped
    # One command is one create: count the creates the handler decoded.
    commands = creates(stats)
    return out, cpu, commands


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--two-workers", action="store_true", help="profile both workers of --workers 2 instead")
    if len(sys.argv) > 2 and sys.argv[1] == "serve":
        serve_profiled(sys.argv[3:], sys.argv[2])
        return
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="trioscope-profile-")
    if args.two_workers:
        two_workers(args, work)
        return
    runs = {kind: profile(kind, args, work) for kind in ("sqlite", "postgresql")}
    per: dict[str, dict[tuple[str, int, str], tuple[float, float]]] = {}
    for kind, (out, cpu, commands) in runs.items():
        print(f"{kind}: {commands} commands profiled, server CPU {1000 * cpu / max(commands, 1):.1f} ms per "
              "command (yappi's overhead included)")
        stats = pstats.Stats(out).stats  # type: ignore[attr-defined]
        per[kind] = {k: (v[2] * 1000 / max(commands, 1), v[3] * 1000 / max(commands, 1)) for k, v in stats.items()}
    pg, sq = per["postgresql"], per["sqlite"]
    print(f"ratio PostgreSQL / SQLite, CPU per command: "
          f"{(runs['postgresql'][1] / max(runs['postgresql'][2], 1)) / (runs['sqlite'][1] / max(runs['sqlite'][2], 1)):.2f}x")
    print("functions by CPU per command, PostgreSQL minus SQLite (ms: own, then with callees; yappi-inflated):")
    keys = sorted(set(pg) | set(sq), key=lambda k: pg.get(k, (0, 0))[0] - sq.get(k, (0, 0))[0], reverse=True)
    for key in keys[:args.top]:
        (pg_own, pg_all), (sq_own, sq_all) = pg.get(key, (0.0, 0.0)), sq.get(key, (0.0, 0.0))
        where = key[0].split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        print(f"  {pg_own:6.3f} {sq_own:6.3f}   {pg_all:6.3f} {sq_all:6.3f}  {where}:{key[1]} {key[2]}")


if __name__ == "__main__":
    main()
