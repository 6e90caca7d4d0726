"""The SQLite store: groups of writes fail alone, whatever makes them fail; pages
of commands come newest first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from trioscope.domain.commands import Priority, new_command
from trioscope.domain.deployments import Deployment
from trioscope.store import SaveCommand, SaveDeployment, SqliteReader, SqliteWriter


def deployment(name: str, metadata: dict[str, Any]) -> SaveDeployment:
    return SaveDeployment(Deployment(hash=name, tenant="t", user_id="u", created_at=1.0, enrollment_hash=None,
                                     metadata=metadata))


def test_a_group_that_cannot_be_encoded_fails_alone(tmp_path: Path) -> None:
    deep: Any = []
    for _ in range(300):  # beyond what orjson encodes
        deep = [deep]
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    try:
        results = writer.commit([[deployment("bad", {"x": deep})], [deployment("good", {"x": 1})]])
    finally:
        writer.close()
    assert isinstance(results[0], orjson.JSONEncodeError) and results[1] is None
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        assert [d.hash for d in reader.deployments()] == ["good"]
    finally:
        reader.close()


def test_pages_of_commands_are_newest_first_and_cover_each_once(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    writer.commit([[deployment("h1", {})], [deployment("h2", {})]])
    commands = [new_command(command_id=f"cmd_{i}", deployment_hash=f"h{1 + i % 2}", tenant="t", type="restart",
                            parameters={}, priority=Priority.NORMAL, created_by="u", now=float(i), schedule_at=None,
                            timeout_seconds=60, requires_confirmation=i % 3 == 0, sequence=i)
                for i in range(60)]
    writer.commit([[SaveCommand(c, None)] for c in commands])
    writer.close()
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        for status in (None, "queued", "awaiting_confirmation"):
            expected = [c.id for c in reversed(commands)
                        if c.deployment_hash == "h1" and (status is None or c.status.value == status)]
            pages = [reader.commands("h1", status=status, since=None, until=None, limit=7, offset=offset)
                     for offset in range(0, 35, 7)]
            assert [c.id for page, _ in pages for c in page] == expected
            assert {total for _, total in pages} == {len(expected)}
    finally:
        reader.close()
