"""The store's commits on PostgreSQL against SQLite, same run, alternating rounds:
the latency of a commit of one group (one new command and its audit record, as
``POST .../commands`` writes), and the throughput of groups when the store
actor has many pending (64 groups per transaction, as under load).

    .venv/bin/python bench/store_commit.py [--rounds 5] [--single 300] [--batches 40]
        [--postgres postgresql://postgres@127.0.0.1:5432/test]

Both are durable commits: SQLite in WAL mode with ``synchronous=FULL``,
PostgreSQL with its default ``synchronous_commit=on`` (the machine's cluster;
its WAL is on the same disk). PostgreSQL runs in a schema of its own, dropped
at the end.
"""

from __future__ import annotations

import argparse
import itertools
import secrets
import statistics
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg

from trioscope.domain.commands import Priority, new_command
from trioscope.domain.deployments import Deployment
from trioscope.store import AuditEntry, SaveCommand, SaveDeployment, StoreWriter, Write, open_writer

_ids = itertools.count()


def group() -> list[Write]:
    i = next(_ids)
    command = new_command(command_id=f"cmd_{i}", deployment_hash="h", tenant="t", type="restart",
                          parameters={"app_code": "web", "force": True}, priority=Priority.NORMAL, created_by="u",
                          now=time.time(), schedule_at=None, timeout_seconds=300, requires_confirmation=False,
                          sequence=i)
    return [SaveCommand(command, None),
            AuditEntry(at=time.time(), tenant="t", actor="user:u", action="command.create",
                       resource_type="command", resource_id=command.id, address="127.0.0.1",
                       details={"type": "restart"})]


def single_latency(writer: StoreWriter, count: int) -> tuple[float, float]:
    """Median and p95 seconds of a commit of one group."""
    times = []
    for _ in range(count):
        writes = group()
        started = time.perf_counter()
        [error] = writer.commit([writes])
        times.append(time.perf_counter() - started)
        assert error is None, error
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def group_throughput(writer: StoreWriter, batches: int, size: int = 64) -> float:
    """Groups committed per second, ``size`` groups per transaction."""
    pending = [[group() for _ in range(size)] for _ in range(batches)]
    started = time.perf_counter()
    for groups in pending:
        assert writer.commit(groups) == [None] * size
    return batches * size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--single", type=int, default=300, help="one-group commits per round")
    parser.add_argument("--batches", type=int, default=40, help="64-group commits per round")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.postgres, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
    url = f"{args.postgres}?options={urllib.parse.quote(f'-c search_path={schema}')}"
    try:
        with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as data:
            writers: dict[str, StoreWriter] = {"sqlite": open_writer(Path(data) / "db.sqlite3"),
                                               "postgresql": open_writer(url)}
            for writer in writers.values():
                deployment = Deployment(hash="h", tenant="t", user_id="u", created_at=1.0, enrollment_hash=None)
                assert writer.commit([[SaveDeployment(deployment)]]) == [None]
            results: dict[str, dict[str, list[float]]] = {name: {"p50": [], "p95": [], "groups": []}
                                                          for name in writers}
            for round_ in range(args.rounds):
                for name in (("sqlite", "postgresql") if round_ % 2 == 0 else ("postgresql", "sqlite")):
                    p50, p95 = single_latency(writers[name], args.single)
                    results[name]["p50"].append(p50)
                    results[name]["p95"].append(p95)
                    results[name]["groups"].append(group_throughput(writers[name], args.batches))
            for writer in writers.values():
                writer.close()
    finally:
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")

    for name, found in results.items():
        print(f"{name:<10}  one-group commit p50 {statistics.median(found['p50']) * 1e3:6.2f} ms"
              f"  p95 {statistics.median(found['p95']) * 1e3:6.2f} ms"
              f"   64-group commits {statistics.median(found['groups']):8,.0f} groups/s")
    ratios_latency = [pg / lite for pg, lite in zip(results["postgresql"]["p50"], results["sqlite"]["p50"],
                                                    strict=True)]
    ratios_groups = [pg / lite for pg, lite in zip(results["postgresql"]["groups"], results["sqlite"]["groups"],
                                                   strict=True)]
    print(f"postgresql/sqlite: one-group latency {statistics.median(ratios_latency):.2f}x,"
          f" group throughput {statistics.median(ratios_groups):.2f}x (median of {args.rounds} rounds)")


if __name__ == "__main__":
    main()
