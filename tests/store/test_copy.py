"""``trioscope store copy``: every row of an SQLite store copied into PostgreSQL
and back, read back through ``StoreReader`` and compared; a target holding
data is refused unless told; bad arguments and unreachable stores are clear
errors."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio

from tests.postgres import with_lock_timeout
from tests.server_process import ServerProcess, run_cli
from trioscope.domain.commands import CommandEvent
from trioscope.domain.deployments import AgentStatus, DeploymentStatus
from trioscope.domain.idempotency import KeptAnswer
from trioscope.store import (
    AuditEntry,
    CopyRefused,
    SaveAgent,
    SaveAppStatus,
    SaveCommand,
    SaveDeployment,
    SaveIdempotencyKey,
    StoreReader,
    copy_store,
    open_writer,
)
from trioscope.store import _copy

from .test_app_statuses import app
from .test_protocol import agent, command, completed, deployment, entry, failed, saved


def fill(database: Path | str) -> None:
    """A store with a bit of everything: deployments suspended and spent, agents
    live and retired, commands in each kind of state, and audit records whose
    ids have gaps (pruned ones)."""
    writer = open_writer(database)
    try:
        writer.commit([[
            SaveDeployment(deployment("h1", metadata={"env": "prod", "nested": {"é": [1, 2.5, None]}})),
            SaveDeployment(deployment("h2", tenant="other", enrollment_hash=None, status=DeploymentStatus.SUSPENDED)),
            SaveAgent(agent("a1", capabilities=("docker",), version="1.2", system_info={"os": "linux"})),
            SaveAgent(agent("a2", deployment_hash="h2", status=AgentStatus.DECOMMISSIONED, decommissioned_at=5.0)),
        ]])
        writer.commit([[SaveAppStatus(app(f"app-{i}", deployment_hash="h1" if i % 3 else "h2", at=100.0 + i))
                        for i in range(7)]])
        made = []
        for i in range(12):
            c = command(i, deployment_hash="h1" if i % 3 else "h2", confirm=i == 4)
            if i % 4 == 1:
                c = completed(c, 120.0 + i, {"log": "é" * 300, "n": i})
            elif i % 4 == 2:
                c = failed(c, 120.0 + i, {"why": "no such container"})
            elif i == 3:
                c = c.apply(CommandEvent.DELIVER, 121.0).apply(CommandEvent.PROGRESS, 122.0, {"percent": 50})
            made.append(c)
        writer.commit([[SaveCommand(c, None) for c in made]])
        writer.commit([[entry(i, tenant=[None, "acme", "other"][i % 3], details={"i": i, "x": ["é", None]})
                        for i in range(20)]])
        # Keys of several users and tenants, one of them beyond ASCII, one made long ago (kept until pruned).
        writer.commit([[SaveIdempotencyKey(key(i), replaces_before=0.0)] for i in range(KEYS)])
        writer.prune(105.0, 1000)  # audit 0..4: ids 1-5 gone
        writer.commit([[AuditEntry(at=200.0, tenant="acme", actor="agent:a1", action="command.report",
                                   resource_type="command", resource_id="cmd_1", outcome="ok", address="10.0.0.1",
                                   user_agent="status/0.2")]])
    finally:
        writer.close()


KEYS = 7


def key(i: int) -> KeptAnswer:
    return KeptAnswer(tenant=["acme", "other"][i % 2], user_id=["alice", "bob", "zoë"][i % 3], key=f"key-{i}",
                      fingerprint=f"{i:064x}", command_id=f"cmd_{i}", status=201 if i % 2 else 200,
                      body=b'{"command_id": "cmd_%d"}' % i, created_at=1_000.0 * (i + 1))


async def everything(database: Path | str) -> dict[str, Any]:
    """Every row of the store, as ``StoreReader`` reads it."""
    reader = StoreReader(database)
    try:
        deployments = {d.hash: d for d in await reader.deployments()}
        commands = {}
        for h in deployments:
            page, total = await reader.command_summaries(h, status=None, since=None, until=None, limit=1000,
                                                         offset=0, max_bytes=2**30, error_bytes=2**20)
            assert len(page) == total
            for summary in page:
                commands[summary.command.id] = await reader.command(summary.command.id)
        audit, total = await reader.audit(None, action=None, actor=None, since=None, until=None, limit=10_000,
                                          offset=0, every_tenant=True)
        assert len(audit) == total
        return {"deployments": deployments, "agents": {a.id: a for a in await reader.agents()},
                "commands": commands, "audit": audit,
                "apps": {h: await reader.app_statuses(h) for h in deployments},
                "open": sorted(await reader.deployments_with_open_commands()),
                "keys": [await reader.idempotency_key(k.tenant, k.user_id, k.key) for k in map(key, range(KEYS))]}
    finally:
        reader.close()


async def test_a_copy_to_postgresql_and_back_reads_back_every_row(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_copy, "COPY_BATCH", 5)  # several batches of each
    source = tmp_path / "source.sqlite3"
    fill(source)
    original = await everything(source)
    assert len(original["commands"]) == 12 and len(original["audit"]) == 16  # the test is about something
    assert original["keys"] == [key(i) for i in range(KEYS)]

    counts = await trio.to_thread.run_sync(copy_store, source, postgres_url)
    assert attrs.astuple(counts) == (2, 2, 12, 16, 7, KEYS)
    assert await everything(postgres_url) == original

    back = tmp_path / "back.sqlite3"
    await trio.to_thread.run_sync(copy_store, postgres_url, f"sqlite:{back}")
    assert await everything(back) == original

    # Records written after the copy are numbered after the copied ones.
    for database in (postgres_url, back):
        writer = open_writer(database)
        try:
            writer.commit([[entry(99)]])
        finally:
            writer.close()
        newest = (await everything(database))["audit"][0]
        assert newest.entry == entry(99) and newest.id == original["audit"][0].id + 1


async def test_the_cli_copies_refuses_a_non_empty_target_unless_told_and_copies_again(
        tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "source.sqlite3"
    fill(source)
    original = await everything(source)

    copied = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", postgres_url])
    assert copied.returncode == 0, copied.stderr
    assert copied.stdout.startswith("copied 2 deployments, 2 agents, 12 commands, 16 audit records, 7 app statuses, "
                                    "7 idempotency keys from ")
    assert await everything(postgres_url) == original

    again = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", postgres_url])
    assert again.returncode == 1
    assert "already holds trioscope data; give --into-non-empty" in again.stderr and "Traceback" not in again.stderr

    newer = app("app-1", at=500.0, status="stopped")  # the target's own, newer than the source's
    writer = open_writer(postgres_url)
    try:
        assert writer.commit([[SaveAppStatus(newer)]]) == [None]
    finally:
        writer.close()
    forced = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", postgres_url, "--into-non-empty"])
    assert forced.returncode == 0, forced.stderr
    assert await everything(postgres_url) == {
        **original, "apps": {**original["apps"], "h1": [newer if a.app_code == "app-1" else a
                                                      for a in original["apps"]["h1"]]}}


def test_bad_arguments_and_unusable_stores_are_one_clear_line(tmp_path: Path, postgres: str) -> None:
    cases = [
        (["--from", "mysql://x/y", "--to", f"sqlite:{tmp_path / 'a'}"], 2, "--from: names no known database"),
        (["--from", f"sqlite:{tmp_path / 'missing.sqlite3'}", "--to", f"sqlite:{tmp_path / 'b'}"], 1,
         "no database at"),
        (["--from", f"sqlite:{tmp_path / 'missing.sqlite3'}"], 2, "--to"),
    ]
    fill(tmp_path / "real.sqlite3")
    cases += [
        (["--from", f"sqlite:{tmp_path / 'real.sqlite3'}", "--to", f"sqlite:{tmp_path / 'real.sqlite3'}"], 1,
         "the same database"),
        (["--from", f"sqlite:{tmp_path / 'real.sqlite3'}", "--to", "postgresql://postgres:pw-secret@127.0.0.1:1/x"],
         1, "cannot connect to postgresql://127.0.0.1:1/x"),
    ]
    for args, code, message in cases:
        result = run_cli(["store", "copy", *args])
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert "pw-secret" not in result.stderr


def test_the_same_file_by_another_name_is_refused(tmp_path: Path) -> None:
    fill(tmp_path / "db.sqlite3")
    with pytest.raises(CopyRefused, match="same database"):
        copy_store(tmp_path / "db.sqlite3", f"sqlite:{tmp_path}/./db.sqlite3")


def test_a_store_a_server_uses_is_not_copied_from_or_into(tmp_path: Path) -> None:
    """The README says "servers stopped"; nothing checked it: a copy of a store
    that changed under it was of no one state."""
    data = tmp_path / "data"
    other = tmp_path / "other.sqlite3"
    with ServerProcess(["--local-probe", "false"], env={"TRIOSCOPE_STORAGE_DATA_DIR": str(data)}):
        used = data / "trioscope.sqlite3"
        for source, target in ((used, other), (other, used)):
            if not other.exists():
                open_writer(other).close()  # a store of its own: a source without trioscope data is refused first
            result = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", f"sqlite:{target}"])
            assert result.returncode != 0 and f"a trioscope server uses {used}: stop it before copying" in result.stderr
    copied = run_cli(["store", "copy", "--from", f"sqlite:{data / 'trioscope.sqlite3'}", "--to", f"sqlite:{other}",
                      "--into-non-empty"])
    assert copied.returncode == 0, copied.stderr


def test_a_source_of_an_earlier_schema_is_upgraded_only_when_asked(tmp_path: Path, postgres_url: str) -> None:
    """The copy upgraded its source silently: the trioscope that wrote it, the
    way back an operator kept, refused it afterwards (a newer schema). And a
    source of a later trioscope, refused, left an empty target behind."""
    source = tmp_path / "old.sqlite3"
    script = Path(__file__).parent / "schemas" / "4-784eb92.sql"
    with contextlib.closing(sqlite3.connect(source)) as db:
        db.executescript(script.read_text())
        db.execute("PRAGMA user_version = 4")
    before = source.read_bytes()
    copy = ["store", "copy", "--from", f"sqlite:{source}", "--to", postgres_url]
    refused = run_cli(copy)
    assert refused.returncode == 1, refused.stderr
    assert "has schema version 4, older than this trioscope's" in refused.stderr and "--upgrade-source" in refused.stderr
    assert source.read_bytes() == before  # untouched
    copied = run_cli([*copy, "--upgrade-source"])
    assert copied.returncode == 0, copied.stderr
    assert "(schema " in copied.stdout  # which schema of the database it went to
    with contextlib.closing(sqlite3.connect(source)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] > 4

    newer = tmp_path / "newer.sqlite3"
    with contextlib.closing(sqlite3.connect(newer)) as db:
        db.execute("PRAGMA user_version = 999")
    target = tmp_path / "target" / "trioscope.sqlite3"
    result = run_cli(["store", "copy", "--from", f"sqlite:{newer}", "--to", f"sqlite:{target}"])
    assert result.returncode == 1 and "newer than this trioscope knows" in result.stderr, result.stderr
    assert not target.exists() and not target.parent.exists()


def test_a_source_of_another_program_is_one_line(tmp_path: Path) -> None:
    foreign = tmp_path / "notes.db"
    with contextlib.closing(sqlite3.connect(foreign)) as db:
        db.execute("CREATE TABLE notes (x)")
    result = run_cli(["store", "copy", "--from", f"sqlite:{foreign}", "--to", f"sqlite:{tmp_path / 'to' / 'x.db'}"])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "is not trioscope's (its tables: notes)" in result.stderr and not (tmp_path / "to").exists()


def _tables(url: str) -> list[str]:
    with contextlib.closing(psycopg.connect(url)) as db:
        return [row[0] for row in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")]


def test_a_source_without_trioscope_data_is_refused_and_left_as_it_was(tmp_path: Path, postgres_url: str) -> None:
    """A mistyped source that exists but is empty (a file, a database) was
    "copied 0 deployments, ..." with exit 0, and made a trioscope store."""
    empty = tmp_path / "afile"
    empty.write_bytes(b"")
    target = tmp_path / "to" / "out.db"
    result = run_cli(["store", "copy", "--from", f"sqlite:{empty}", "--to", f"sqlite:{target}"])
    assert result.returncode == 1 and result.stdout == "", result.stdout
    assert result.stderr == (f"trioscope store copy: {empty} holds no trioscope data: is --from the server's "
                             "database?\n")
    assert empty.read_bytes() == b"" and not target.parent.exists()

    result = run_cli(["store", "copy", "--from", postgres_url, "--to", f"sqlite:{target}"])
    assert result.returncode == 1 and "holds no trioscope data" in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert _tables(postgres_url) == [] and not target.parent.exists()


def test_a_file_that_is_no_database_is_one_line_naming_it(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("hello\n")
    store = tmp_path / "store.sqlite3"
    fill(store)
    cases = [
        (f"sqlite:{text}", f"sqlite:{tmp_path / 'out.db'}", f"cannot use the source {text}: file is not a database"),
        (f"sqlite:{store}", f"sqlite:{text}", f"cannot use the target {text}: file is not a database"),
        (f"sqlite:{store}", f"sqlite:{text}/x.db", f"cannot use the target {text}/x.db: {text} is a file, "
                                                    "not a directory"),
    ]
    for source, target, line in cases:
        result = run_cli(["store", "copy", "--from", source, "--to", target])
        assert result.returncode == 1, result.stderr
        assert result.stderr == f"trioscope store copy: {line}\n"
        assert text.read_text() == "hello\n"
    assert not (tmp_path / "out.db").exists()


def test_ctrl_c_during_a_copy_says_what_was_copied_and_how_to_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A traceback, and then a refused copy again ("already holds trioscope
    data") with no word that an earlier one had been interrupted."""
    from trioscope import cli

    source, target = tmp_path / "source.sqlite3", tmp_path / "target.sqlite3"
    fill(source)

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(_copy, "_restore", interrupted)  # Ctrl-C as the first commands are written
        try:
            cli.main(["store", "copy", "--from", f"sqlite:{source}", "--to", f"sqlite:{target}"])
        except SystemExit as exc:
            assert exc.code == 130
        except KeyboardInterrupt:
            pytest.fail("Ctrl-C was a traceback")
    assert capsys.readouterr().err == (
        "trioscope store copy: interrupted; the target may hold part of the source (copied at least 2 deployments, "
        "2 agents, 0 commands, 0 audit records, 7 app statuses, 0 idempotency keys): run the copy again with "
        "--into-non-empty to finish it (rows of the same key are replaced)\n")
    again = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", f"sqlite:{target}", "--into-non-empty"])
    assert again.returncode == 0, again.stderr


def test_sigterm_during_a_copy_says_what_was_copied_and_how_to_finish(tmp_path: Path, postgres_url: str) -> None:
    """As Ctrl-C does (``test_ctrl_c_during_a_copy_...``): SIGTERM ended the
    copy with 143 and "received SIGTERM; stopped", not a word of the part of
    the source left in the target. The copy is held, deterministically, on a
    lock of the target's audit table that this test takes: the commands are
    copied, the audit records wait for it."""
    source = tmp_path / "source.sqlite3"
    fill(source)
    open_writer(postgres_url).close()  # the target's tables, empty, to lock one of them
    target = with_lock_timeout(postgres_url, "10min")  # the copy waits for the lock, not refused after 5 s
    with contextlib.closing(psycopg.connect(postgres_url)) as locker:
        locker.execute("LOCK TABLE audit IN SHARE MODE")  # read (the copy's "is it empty?"), not written
        copy = subprocess.Popen([sys.executable, "-m", "trioscope", "store", "copy", "--from", f"sqlite:{source}",
                                 "--to", target], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not _waits_for(locker, "audit"):
                assert copy.poll() is None, copy.communicate()
                assert time.monotonic() < deadline, "the copy never waited for the audit table"
                time.sleep(0.05)  # the next look at the locks, not a wait for the copy
            os.kill(copy.pid, signal.SIGTERM)
            out, err = copy.communicate(timeout=30)
        finally:
            if copy.poll() is None:
                copy.kill()
                copy.wait()
        locker.rollback()
    assert (copy.returncode, out, err) == (143, "", (
        "trioscope store copy: received SIGTERM; the target may hold part of the source (copied at least 2 "
        "deployments, 2 agents, 12 commands, 0 audit records, 7 app statuses, 0 idempotency keys): run the copy "
        "again with --into-non-empty to finish it (rows of the same key are replaced)\n"))
    again = run_cli(["store", "copy", "--from", f"sqlite:{source}", "--to", postgres_url, "--into-non-empty"])
    assert again.returncode == 0, again.stderr


def _waits_for(db: psycopg.Connection, table: str) -> bool:
    """Whether a session waits for a lock of ``table`` (of the connection's search path)."""
    row = db.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
                     (table,)).fetchone()
    return row is not None and row[0] > 0
