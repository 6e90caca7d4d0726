"""Listing a deployment's commands when it holds many: the first page and one
near the end, in the same run (their ratio should stay near 1).

    .venv/bin/python bench/command_listing.py [--commands 200000]

Rows are inserted straight into a fresh SQLite store (finished commands of one
deployment), then ``SqliteReader.command_summaries`` is timed for ``limit=500`` at
offset 0 and at ``commands - 1000``, with and without a status filter.
Before the (deployment, sequence) indexes every page sorted all of the
deployment's rows: 1.1 s at offset 0 and 1.6 s deep, for 200,000 commands.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from trioscope.domain.commands import Priority, command_document, new_command
from trioscope.domain.deployments import Deployment
from trioscope.store import SaveDeployment, SqliteReader, SqliteWriter
from trioscope.store._command_rows import split_document


def timed(reader: SqliteReader, offset: int, status: str | None) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        page, _ = reader.command_summaries("h", status=status, since=None, until=None, limit=500, offset=offset,
                                           max_bytes=2**30, error_bytes=4096)
        runs.append(time.perf_counter() - started)
        assert len(page) == 500
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="trioscope-bench-") as data:
        path = Path(data) / "db.sqlite3"
        writer = SqliteWriter(path)
        writer.commit([[SaveDeployment(Deployment(hash="h", tenant="t", user_id="u", created_at=1.0,
                                                  enrollment_hash=None))]])
        template = command_document(new_command(
            command_id="x", deployment_hash="h", tenant="t", type="restart", parameters={"a": "b" * 200},
            priority=Priority.NORMAL, created_by="u", now=1.0, schedule_at=None, timeout_seconds=300,
            requires_confirmation=False, sequence=1))
        rows = []
        for i in range(args.commands):
            document = {**template, "id": f"cmd_{i}", "sequence": i, "status": "completed"}
            rows.append((f"cmd_{i}", "h", "t", i, "completed", 1.0 + i, 1, *split_document(document)))
        writer.connection.execute("BEGIN")
        writer.connection.executemany("INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        writer.connection.execute("COMMIT")
        writer.close()
        reader = SqliteReader(path)
        try:
            deep = args.commands - 1000
            for status in (None, "completed"):
                first, last = timed(reader, 0, status), timed(reader, deep, status)
                print(f"status={status}: page at offset 0 {first * 1e3:.1f} ms, at offset {deep} "
                      f"{last * 1e3:.1f} ms (ratio {last / first:.2f}x)")
        finally:
            reader.close()


if __name__ == "__main__":
    main()
