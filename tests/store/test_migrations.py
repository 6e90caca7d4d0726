"""Databases written by every earlier version open with the current code: their
rows read back as they were written, and their schema becomes exactly that of a
new database. A database of a later version is refused before anything in it
changes."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import orjson
import pytest

from trioscope.domain.commands import Command, CommandEvent, Priority, command_document, new_command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment, DeploymentStatus
from trioscope.store import NewerSchema, StoreReader, open_writer
from trioscope.store import _migrations as migrations
from trioscope.store._command_rows import finished_at, split_document
from trioscope.store._sqlite import SCHEMA, connect

SCHEMAS = sorted((Path(__file__).parent / "schemas").glob("*.sql"))
"""``<user_version>-<commit>.sql``: the schema script of each version that
changed it, as that commit had it."""


def schema_version_of(script: Path) -> int:
    return int(script.name.split("-")[0])


def test_every_earlier_schema_version_has_a_script() -> None:
    """A new version copies the schema it replaces here, named for its version
    and the last commit that had it."""
    versions = {schema_version_of(s) for s in SCHEMAS}
    assert versions == set(range(migrations.SCHEMA_VERSION))


DEPLOYMENTS = [
    Deployment(hash="h1", tenant="acme", user_id="u1", created_at=1.0, enrollment_hash="e" * 64,
               metadata={"env": "prod", "nested": {"list": [1, 2.5, None, "é"]}}),
    Deployment(hash="h2", tenant="other", user_id="u2", created_at=2.0, enrollment_hash=None,
               status=DeploymentStatus.SUSPENDED),
]
SYSTEM_INFO = {"os": "linux", "blob": "s" * 20_000}
AGENTS = [
    AgentRecord(id="agent_live", deployment_hash="h1", token_hash="t1", status=AgentStatus.ACTIVE, created_at=3.0,
                capabilities=("docker", "logs"), version="1.2", system_info=SYSTEM_INFO),
    AgentRecord(id="agent_gone", deployment_hash="h1", token_hash="t2", status=AgentStatus.DECOMMISSIONED,
                created_at=1.5, capabilities=("docker",), version="1.0", system_info=SYSTEM_INFO,
                decommissioned_at=3.0),
]
AUDIT = [
    {"at": 4.0, "tenant": "acme", "actor": "user:u1", "action": "command.create", "resource_type": "command",
     "resource_id": "cmd_0", "outcome": "ok", "address": "10.0.0.1", "user_agent": "curl/8",
     "details": {"type": "logs"}},
    {"at": 5.0, "tenant": None, "actor": "anonymous", "action": "auth.failure", "resource_type": None,
     "resource_id": None, "outcome": "denied", "address": "10.0.0.2", "user_agent": None, "details": {}},
]


def commands() -> list[Command]:
    """One of each kind of life: open (queued, awaiting confirmation, sent),
    finished (completed with a large result, failed with an error, cancelled),
    in two deployments, more of them than one migration batch; one finished
    long after it was made."""
    made: list[Command] = []
    for i in range(11):
        c = new_command(command_id=f"cmd_{i}", deployment_hash="h1" if i % 4 else "h2", tenant="acme", type="logs",
                        parameters={"tail": i}, priority=Priority.NORMAL, created_by="u1", now=10.0 + i,
                        schedule_at=None, timeout_seconds=60, requires_confirmation=i % 5 == 1, sequence=100 + i,
                        target_agent="agent_live" if i == 3 else None)
        if i % 5 != 1 and i % 3:
            c = c.apply(CommandEvent.DELIVER, 10.5 + i)
            if i % 3 == 1:
                c = c.apply(CommandEvent.COMPLETE, 500.0 if i == 7 else 10.7 + i, {"agent_id": "agent_live"},
                            result={"n": i, "log": "x" * 5000})
            elif i % 2:
                c = c.apply(CommandEvent.FAIL, 10.7 + i, {"error": "boom"}, result=None, error={"why": "boom"})
        elif i == 6:
            c = c.apply(CommandEvent.CANCEL, 10.6 + i, {"by": "u1"})
        made.append(c)
    return made


def write_rows(db: sqlite3.Connection, version: int, written: list[Command]) -> None:
    """The rows as that version's code wrote them (from version 1 on, retired
    agents without their system info)."""
    db.executemany("INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(d.hash, d.tenant, d.user_id, d.created_at, d.enrollment_hash, d.status.value,
                     orjson.dumps(d.metadata).decode()) for d in DEPLOYMENTS])
    db.executemany("INSERT INTO agents VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(a.id, a.deployment_hash, a.token_hash, a.status.value, a.created_at, a.decommissioned_at,
                     orjson.dumps({"capabilities": list(a.capabilities), "version": a.version,
                                   "system_info": {} if version and a.decommissioned_at else a.system_info}).decode())
                    for a in AGENTS])
    for c in written:
        document = command_document(c)
        if c.target_agent is None:
            del document["target_agent"]  # a field later versions added
        head = (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at, len(c.history))
        if version == 0:  # the whole command in its document
            db.execute("INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*head, orjson.dumps(document)))
        elif version == 1:
            db.execute("INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*head, *split_document(document)))
        else:  # when it finished, too
            db.execute("INSERT INTO commands VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (*head, *split_document(document), finished_at(c)))
    db.executemany("INSERT INTO audit (at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                   " user_agent, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   [(e["at"], e["tenant"], e["actor"], e["action"], e["resource_type"], e["resource_id"], e["outcome"],
                     e["address"], e["user_agent"], orjson.dumps(e["details"]).decode()) for e in AUDIT])


def create_at(path: Path, script: Path, written: list[Command]) -> None:
    version = schema_version_of(script)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.executescript(script.read_text())
        db.execute("BEGIN")
        write_rows(db, version, written)
        db.execute("COMMIT")
        db.execute(f"PRAGMA user_version = {version}")
    finally:
        db.close()


def schema(path: Path) -> tuple[int, list[tuple[Any, ...]], dict[str, list[tuple[Any, ...]]]]:
    """The version, ``sqlite_master`` with each statement's comments and layout
    taken out, and each table's columns as SQLite reads them."""
    db = sqlite3.connect(path)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        master = [(kind, name, table, normalized(sql)) for kind, name, table, sql in
                  db.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")]
        columns = {table: db.execute(f"PRAGMA table_xinfo({table})").fetchall()
                   for kind, table, _, _ in master if kind == "table"}
    finally:
        db.close()
    return version, master, columns


def normalized(sql: str | None) -> str | None:
    if sql is None:
        return None
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql)
    return re.sub(r"\s*([(),])\s*", r"\1", sql).strip()


@pytest.mark.parametrize("script", SCHEMAS, ids=lambda s: s.stem)
async def test_a_database_of_each_version_keeps_its_rows_and_gets_the_current_schema(
        tmp_path: Path, script: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(migrations, "MIGRATION_BATCH", 3)  # several batches
    caplog.set_level(logging.INFO, "trioscope.store")
    written = commands()
    path = tmp_path / "old.sqlite3"
    create_at(path, script, written)
    for _ in range(2):  # the second open finds nothing left to do
        open_writer(path).close()
        await assert_current(path, written, tmp_path)
    # The upgrade is said once, from the version it found (an upgrade said nothing, and the earlier
    # trioscope then refused the store with no trace of why).
    upgrades = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "schema_upgrade"]
    assert upgrades == [f"store: upgrading the SQLite schema from version {schema_version_of(script)} to "
                        f"{migrations.SCHEMA_VERSION} (a trioscope of version {schema_version_of(script)} cannot "
                        "open it after; a backup taken before is the way back)"], upgrades


class Crash(Exception):
    pass


@attrs.frozen
class CrashingBefore:
    """A connection that dies just before running a statement containing ``marker``."""

    db: sqlite3.Connection
    marker: str

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        if self.marker in sql:
            raise Crash(sql)
        return self.db.execute(sql, *args)

    def executescript(self, sql: str) -> sqlite3.Cursor:
        if self.marker in sql:
            raise Crash(sql)
        return self.db.executescript(sql)

    @property
    def in_transaction(self) -> bool:
        return self.db.in_transaction


@pytest.mark.parametrize("marker", [
    "UPDATE agents",  # step 1, its commands split
    "PRAGMA user_version = 1",  # step 1 done
    "UPDATE commands SET finished_at",  # step 2, its column added
    "DROP INDEX IF EXISTS commands_created",  # step 2, its rows filled
    "PRAGMA user_version = 2",  # step 2 done
    "INSERT INTO tenant_usage (tenant, command_bytes) SELECT",  # step 3, in its one transaction
    "PRAGMA user_version = 3",  # step 3 done
    "CREATE TRIGGER IF NOT EXISTS idempotency_keys_usage_deleted",  # step 4, in its one transaction
    "PRAGMA user_version = 4",  # step 4 done
    "CREATE TABLE IF NOT EXISTS app_statuses",  # step 5
    "PRAGMA user_version = 5",  # step 5 done
])
async def test_a_migration_cut_off_anywhere_is_finished_by_the_next_open(
        tmp_path: Path, marker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(migrations, "MIGRATION_BATCH", 3)
    written = commands()
    path = tmp_path / "old.sqlite3"
    create_at(path, SCHEMAS[0], written)
    db = connect(path)
    try:
        with pytest.raises(Crash):
            migrations.migrate(CrashingBefore(db, marker), SCHEMA)  # type: ignore[arg-type]  # a stand-in
    finally:
        db.close()
    open_writer(path).close()
    await assert_current(path, written, tmp_path)


async def assert_current(path: Path, written: list[Command], tmp_path: Path) -> None:
    """The database at ``path`` has the current schema and the rows ``write_rows`` wrote."""
    fresh = tmp_path / "fresh.sqlite3"
    if not fresh.exists():
        open_writer(fresh).close()
    assert schema(path) == schema(fresh)
    assert schema(path)[0] == migrations.SCHEMA_VERSION
    reader = StoreReader(path)
    try:
        assert await reader.deployments() == DEPLOYMENTS
        agents = {a.id: a for a in await reader.agents()}
        assert agents["agent_live"] == AGENTS[0]
        assert agents["agent_gone"] == attrs.evolve(AGENTS[1], system_info={})  # retired: none (version 1)
        assert [await reader.command(c.id) for c in written] == written
        for deployment_hash in ("h1", "h2"):
            mine = [c for c in written if c.deployment_hash == deployment_hash]
            page, total = await reader.command_summaries(deployment_hash, status=None, since=None, until=None,
                                                         limit=50, offset=0, max_bytes=2**20, error_bytes=100)
            assert total == len(mine) and [s.command.id for s in page] == [c.id for c in reversed(mine)]
            assert [s.result_bytes for s in page] == [len(orjson.dumps(c.result)) for c in reversed(mine)]
            assert await reader.open_commands(deployment_hash) == [c for c in mine if not c.status.terminal]
        assert sorted(await reader.deployments_with_open_commands()) == ["h1", "h2"]
        assert await reader.app_statuses("h1") == []  # none before version 5
        entries, total = await reader.audit(None, action=None, actor=None, since=None, until=None, limit=10,
                                            offset=0, every_tenant=True)
        assert total == 2 and [attrs.asdict(r.entry) for r in reversed(entries)] == AUDIT
        # Each tenant's bytes of stored commands, counted from its rows (version 3).
        assert await reader.tenant_command_bytes("acme") == stored_bytes(path) > 0
        assert await reader.tenant_command_bytes("other") == 0
    finally:
        reader.close()

    # Finished commands are pruned by when they finished (version 2): a copy,
    # so the caller may open the database again.
    pruned = tmp_path / "pruned.sqlite3"
    source, target = sqlite3.connect(path), sqlite3.connect(pruned)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    writer = open_writer(pruned)
    try:
        while writer.prune(100.0, 1000) != (0, 0):
            pass
    finally:
        writer.close()
    reader = StoreReader(pruned)
    try:
        kept = [c for c in written if not c.status.terminal or c.id == "cmd_7"]
        assert [await reader.command(c.id) for c in written] == [c if c in kept else None for c in written]
        # What the prune deleted is given back.
        assert await reader.tenant_command_bytes("acme") == stored_bytes(pruned) < stored_bytes(path)
    finally:
        reader.close()
        pruned.unlink()


def stored_bytes(path: Path) -> int:
    """What the commands at ``path`` take, counted from their rows (every tenant's)."""
    db = sqlite3.connect(path)
    try:
        return int(db.execute("SELECT coalesce(sum(length(document) + length(error) + length(history)"
                              " + length(result)), 0) FROM commands").fetchone()[0])
    finally:
        db.close()


def test_a_database_of_a_later_version_is_refused_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    open_writer(path).close()
    later = migrations.SCHEMA_VERSION + 1
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP INDEX audit_at")  # as a later version might: the current schema script would put it back
    db.execute(f"PRAGMA user_version = {later}")
    db.close()
    before = schema(path)

    with pytest.raises(NewerSchema, match=f"schema version {later}, newer than this trioscope knows"):
        open_writer(path)
    with pytest.raises(NewerSchema):
        StoreReader(path)
    assert schema(path) == before
