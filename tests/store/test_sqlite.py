"""The SQLite store: groups of writes fail alone, whatever makes them fail; pages
of commands come newest first, as summaries that never read a result and stop at
a byte budget; a large result is read in exact parts. (Migrations: test_migrations.py.)"""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from trioscope.domain.commands import Command, CommandEvent, Priority, new_command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment
from trioscope.store import ForgetAgents, Rejected, SaveAgent, SaveCommand, SaveDeployment, SqliteReader, SqliteWriter


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
    assert isinstance(results[0], Rejected) and isinstance(results[0].__cause__, orjson.JSONEncodeError)
    assert results[1] is None
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
            pages = [reader.command_summaries("h1", status=status, since=None, until=None, limit=7, offset=offset,
                                              max_bytes=2**20, error_bytes=0)
                     for offset in range(0, 35, 7)]
            assert [s.command.id for page, _ in pages for s in page] == expected
            assert {total for _, total in pages} == {len(expected)}
    finally:
        reader.close()


MIB = 1024 * 1024


def finished(i: int, *, result: Any = None, error: Any = None, deployment_hash: str = "h1") -> Command:
    """A command the agent completed (failed, with ``error``)."""
    queued = new_command(command_id=f"cmd_{i}", deployment_hash=deployment_hash, tenant="t", type="logs",
                         parameters={"tail": i}, priority=Priority.NORMAL, created_by="u", now=float(i),
                         schedule_at=None, timeout_seconds=60, requires_confirmation=False, sequence=i)
    sent = queued.apply(CommandEvent.DELIVER, i + 0.5)
    if error is not None:
        return sent.apply(CommandEvent.FAIL, i + 0.7, {"error": error}, result=result, error=error)
    return sent.apply(CommandEvent.COMPLETE, i + 0.7, {"agent_id": "a"}, result=result)


def test_summaries_read_no_results_and_stop_at_their_byte_budget(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    writer.commit([[deployment("h1", {})]])
    commands = [finished(i, result={"log": "r" * MIB}, error="short" if i % 2 else "E" * 10_000) for i in range(12)]
    writer.commit([[SaveCommand(c, None)] for c in commands])
    writer.close()
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        tracemalloc.start()
        try:
            page, total = reader.command_summaries("h1", status=None, since=None, until=None, limit=50, offset=0,
                                                   max_bytes=MIB, error_bytes=4096)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < MIB  # twelve results of 1 MiB each were not read
        assert total == 12 and [s.command.id for s in page] == [c.id for c in reversed(commands)]
        for stored, command in zip(page, reversed(commands), strict=True):
            assert stored.command.result is None and not stored.result_included and not stored.history_included
            assert stored.result_bytes == len(orjson.dumps(command.result))
            assert stored.error_included is (command.error == "short")
            assert stored.command.error == (command.error if stored.error_included else None)
            assert stored.command.updated_at == command.updated_at and stored.command.parameters == command.parameters
        # Two documents of about 520 bytes fit in 1250 bytes, not a third; one always comes.
        small, _ = reader.command_summaries("h1", status=None, since=None, until=None, limit=50, offset=3,
                                            max_bytes=1250, error_bytes=0)
        assert [s.command.id for s in small] == ["cmd_8", "cmd_7"]
        one, _ = reader.command_summaries("h1", status=None, since=None, until=None, limit=50, offset=0,
                                          max_bytes=1, error_bytes=0)
        assert len(one) == 1
    finally:
        reader.close()


def test_a_command_is_read_whole_or_capped_and_its_result_in_exact_parts(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    writer.commit([[deployment("h1", {})]])
    large, small = finished(1, result={"log": "é" * MIB}), finished(2, error={"why": "no such container"})
    writer.commit([[SaveCommand(large, None), SaveCommand(small, None)]])
    writer.close()
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        assert reader.command("cmd_1") == large and reader.command("cmd_2") == small
        capped = reader.stored_command("cmd_1", inline_bytes=MIB)
        assert capped is not None and capped.command.result is None and not capped.result_included
        assert capped.command.history == large.history and capped.history_included
        encoded = orjson.dumps(large.result)
        assert capped.result_bytes == len(encoded) > MIB
        whole = reader.stored_command("cmd_2", inline_bytes=MIB)
        assert whole is not None and whole.error_included and whole.result_included
        # The error as stored, written out again without being parsed (an orjson.Fragment).
        assert orjson.dumps(whole.command.error) == orjson.dumps(small.error)
        assert attrs.evolve(whole.command, error=small.error) == small

        parts = [reader.command_part("cmd_1", "result", offset, 300_000) for offset in range(0, len(encoded), 300_000)]
        assert b"".join(p.data for p in parts if p) == encoded
        assert {(p.total, p.deployment_hash) for p in parts if p} == {(len(encoded), "h1")}
        past_end = reader.command_part("cmd_1", "result", len(encoded), 10)
        assert past_end is not None and past_end.data == b""
        error = reader.command_part("cmd_2", "error", 3, 1000)
        assert error is not None and error.data == orjson.dumps(small.error)[3:]
        assert reader.command_part("cmd_missing", "result", 0, 10) is None
    finally:
        reader.close()


def test_forgotten_agents_are_deleted(tmp_path: Path) -> None:
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    agents = [AgentRecord(id=f"a{i}", deployment_hash="h1", token_hash=f"t{i}", status=AgentStatus.ACTIVE,
                          created_at=float(i)) for i in range(3)]
    writer.commit([[deployment("h1", {}), *(SaveAgent(a) for a in agents)], [ForgetAgents(("a0", "a2"))]])
    writer.close()
    reader = SqliteReader(tmp_path / "db.sqlite3")
    try:
        assert [a.id for a in reader.agents()] == ["a1"]
    finally:
        reader.close()


def test_pruning_large_results_takes_little_room_of_its_own(tmp_path: Path) -> None:
    """SQLite built to overwrite freed pages (Debian's) wrote each page of a
    deleted result to the write-ahead log first: pruning 630 MB of old results
    grew it by 604 MiB, and kept it, so a prune on a nearly full disk could
    never finish. Freed pages are left as they are now, and the log is cut
    back after a checkpoint."""
    writer = SqliteWriter(tmp_path / "db.sqlite3")
    try:
        writer.commit([[deployment("h", {})]])
        for i in range(40):
            queued = new_command(command_id=f"cmd_{i}", deployment_hash="h", tenant="t", type="restart",
                                 parameters={}, priority=Priority.NORMAL, created_by="u", now=10.0, schedule_at=None,
                                 timeout_seconds=60, requires_confirmation=False, sequence=i)
            done = queued.apply(CommandEvent.CANCEL, 11.0)
            done = attrs.evolve(done, result={"output": f"{i}" * 1_000_000})
            writer.commit([[SaveCommand(done, None)]])
        writer.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        wal = tmp_path / "db.sqlite3-wal"
        while writer.prune(100.0, 10) != (0, 0):
            pass
        assert wal.stat().st_size < 4 * 2**20, wal.stat().st_size  # the 40 MB of results: 20 MB before
    finally:
        writer.close()
