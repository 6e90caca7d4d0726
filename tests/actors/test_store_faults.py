"""The store actor on an SQLite file whose disk fails under it, faults put in
at the sqlite3 layer (a connection that raises SQLite's own errors where a
failing disk does): an I/O error refuses commits (503 ``store_failing``) and
the file is opened again at a pace, never a crash; a failure at ``COMMIT``
itself (the log's fsync) is ``OutcomeUnknown``; a quota is a full disk (507);
a damaged file, or one deleted under the server, is refused until a restart."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import eventually
from trioscope.actors import store as store_module
from trioscope.actors.refusals import (COMMIT_FAILED, STORAGE_DAMAGED, OutcomeUnknown, StoreFailing, StoreFull)
from trioscope.actors.store import GetAway, StoreActor, commit
from trioscope.runtime import ActorRef, ActorSpec, ActorSystem, Backoff, SupervisorSpec, open_actor_system
from trioscope.store import AuditEntry, SqliteReader, _disk_room, _sqlite

NOW = 1_800_000_000.0
IOERR_WRITE = 778
IOERR_FSYNC = 1034
CORRUPT = 11


def sqlite_error(code: int, message: str = "disk I/O error") -> sqlite3.OperationalError:
    """An error as SQLite raises it (Python sets ``sqlite_errorcode`` on its own ones)."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    error.sqlite_errorname = {IOERR_WRITE: "SQLITE_IOERR_WRITE", IOERR_FSYNC: "SQLITE_IOERR_FSYNC",  # type: ignore[attr-defined]
                              CORRUPT: "SQLITE_CORRUPT"}.get(code, "SQLITE_IOERR")
    return error


class Disk:
    """What the disk does to the writer's statements: ``fail`` raises SQLite's
    error ``code`` at the statements starting with ``at``; at ``COMMIT`` with
    ``after`` it commits first (the commit record in the log, the fsync failing)."""

    def __init__(self) -> None:
        self.code: int | None = None
        self.at = "COMMIT"
        self.after = False
        self.opened = 0

    def fail(self, code: int, at: str = "COMMIT", *, after: bool = False) -> None:
        self.code, self.at, self.after = code, at, after

    def heal(self) -> None:
        self.code = None


class FailingConnection:
    """A real connection whose ``execute`` fails as ``disk`` says."""

    def __init__(self, connection: sqlite3.Connection, disk: Disk) -> None:
        self._connection = connection
        self._disk = disk

    def execute(self, sql: str, *args: Any) -> Any:
        disk = self._disk
        if disk.code is not None and sql.lstrip().upper().startswith(disk.at):
            if disk.after:
                self._connection.execute(sql, *args)
            raise sqlite_error(disk.code, "database disk image is malformed" if disk.code == CORRUPT
                               else "disk I/O error")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    disk = Disk()
    connect = _sqlite.connect

    def failing(path: Path) -> Any:
        disk.opened += 1
        return FailingConnection(connect(path), disk)

    monkeypatch.setattr(_sqlite, "connect", failing)
    monkeypatch.setattr(store_module, "REOPEN", Backoff(initial=0.01, maximum=0.05))
    yield disk


def entry(action: str) -> list[AuditEntry]:
    return [AuditEntry(at=NOW, tenant="t", actor="u", action=action)]


def audit_actions(path: Path) -> list[str]:
    reader = SqliteReader(path)
    try:
        records, _ = reader.audit("t", action=None, actor=None, since=None, until=None, limit=100, offset=0)
        return [r.entry.action for r in reversed(records)]
    finally:
        reader.close()


def store_node(system: ActorSystem) -> Any:
    return next(child for child in system.snapshot().root.children if child.path == "/root/store")


def events(caplog: pytest.LogCaptureFixture, event: str, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "event", None) == event and r.levelno >= level]


def spec_of(path: Path) -> SupervisorSpec:
    return SupervisorSpec(name="root", children=[ActorSpec(name="store", factory=lambda: StoreActor(path))])


@asynccontextmanager
async def store_at(path: Path) -> AsyncIterator[tuple[ActorSystem, ActorRef]]:
    """A tree of the store actor alone on the SQLite file ``path``, and the store."""
    async with open_actor_system(spec_of(path)) as system:
        yield system, system.lookup("/root/store")


async def test_an_io_error_refuses_commits_and_the_file_is_opened_again_once_it_writes(
        tmp_path: Path, disk: Disk, caplog: pytest.LogCaptureFixture) -> None:
    """A disk that fails writes (``EIO``; SQLite: ``disk I/O error``) crashed
    the store at each commit, 5 restarts in ~10 ms, and the root gave up: the
    process exited. Now each commit is refused (``StoreFailing``, 503; nothing
    written), readiness hears why, a warning is said once a minute however
    many fail, and the file is opened again at a pace, taken as back only
    once a write goes through."""
    caplog.set_level(logging.INFO, logger="trioscope")
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        await commit(store, entry("before"))
        away = await store.ask(GetAway())
        disk.fail(IOERR_WRITE)
        for _ in range(3):
            with pytest.raises(StoreFailing, match="storage is failing") as refused:
                await commit(store, entry("refused"))
            assert "disk I/O error" in refused.value.reason
        assert away.value is not None and "disk I/O error" in away.value
        opened = disk.opened

        async def tried_again() -> bool:
            return disk.opened >= opened + 2  # each opening fails its write check: not back

        await eventually(tried_again)
        assert away.value is not None
        disk.heal()

        async def back() -> bool:
            return away.value is None

        await eventually(back)
        await commit(store, entry("after"))
        assert store_node(system).restarts == 0
    assert audit_actions(path) == ["before", "after"]
    assert len(events(caplog, "store_file_failing")) == 1
    assert len(events(caplog, "store_file_back", logging.INFO)) == 1


async def test_a_failed_fsync_at_commit_is_answered_outcome_unknown(tmp_path: Path, disk: Disk) -> None:
    """The fsync of the log failed at ``COMMIT``: the request was answered 500
    (and the log said nothing was written), but the commit record was in the
    log, and after a ``kill -9`` the command existed. Neither 2xx nor a
    failure: ``OutcomeUnknown`` (504), for the client to check."""
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        disk.fail(IOERR_FSYNC, after=True)
        with pytest.raises(OutcomeUnknown) as unknown:
            await commit(store, entry("maybe"))
        assert str(unknown.value) == COMMIT_FAILED and "SQLITE_IOERR_FSYNC" in unknown.value.reason
        disk.heal()
        await eventually(lambda: _back(store))
    assert audit_actions(path) == ["maybe"]  # here it was written: the answer did not say otherwise


async def test_an_io_error_before_commit_refuses_with_nothing_written(tmp_path: Path, disk: Disk) -> None:
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        disk.fail(IOERR_WRITE, at="INSERT")
        with pytest.raises(StoreFailing):
            await commit(store, entry("refused"))
        disk.heal()
        await eventually(lambda: _back(store))
    assert audit_actions(path) == []


async def test_a_quota_is_a_full_disk(tmp_path: Path, disk: Disk, monkeypatch: pytest.MonkeyPatch,
                                      caplog: pytest.LogCaptureFixture) -> None:
    """Over a disk quota (``EDQUOT``) SQLite says only ``disk I/O error``: a
    probe beside the store finds the disk refusing room, and the write is
    refused as on a full disk (507), the writer kept."""
    real_pwrite = os.pwrite

    def over_quota(fd: int, data: bytes, offset: int) -> int:
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        disk.fail(IOERR_WRITE)
        monkeypatch.setattr(os, "pwrite", over_quota)
        with pytest.raises(StoreFull, match="storage is full"):
            await commit(store, entry("refused"))
        monkeypatch.setattr(os, "pwrite", real_pwrite)
        assert (await store.ask(GetAway())).value is None
        opened = disk.opened
        disk.heal()
        await commit(store, entry("after"))
        assert disk.opened == opened  # the same writer: a full disk is no failing one
    assert audit_actions(path) == ["after"]
    assert "disk is full" in caplog.text
    assert not list(tmp_path.glob(".trioscope-room-*"))


def test_the_room_probe_tells_a_quota_from_a_failing_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not _disk_room.room_refused(tmp_path)
    for code, refused in ((errno.EDQUOT, True), (errno.ENOSPC, True), (errno.EIO, False)):
        def failing(fd: int, data: bytes, offset: int, code: int = code) -> int:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "pwrite", failing)
        assert _disk_room.room_refused(tmp_path) is refused
    assert not list(tmp_path.iterdir())


async def test_a_damaged_file_is_said_once_and_refused_until_a_restart(
        tmp_path: Path, disk: Disk, caplog: pytest.LogCaptureFixture) -> None:
    """``database disk image is malformed`` was answered 503 "restarting a
    component", with a traceback per request. Now one line names the file and
    what to do, and writes are refused until an operator repaired it (never
    opened again: more writes may spread the damage)."""
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        disk.fail(CORRUPT, at="INSERT")
        opened = disk.opened
        for _ in range(3):
            with pytest.raises(StoreFailing) as refused:
                await commit(store, entry("refused"))
            assert str(refused.value) == STORAGE_DAMAGED
        assert disk.opened == opened
        assert "malformed" in (await store.ask(GetAway())).value
    said = events(caplog, "store_file_damaged")
    assert len(said) == 1 and str(path) in said[0].getMessage() and ".recover" in said[0].getMessage()
    assert "Traceback" not in caplog.text


async def test_a_database_file_deleted_under_the_server_refuses_writes(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file deleted (or another moved over it) while the server ran:
    writes were acknowledged into the deleted file, readiness said 200, and a
    second server started on the path. Now the next commit, or the look every
    few seconds, refuses writes and says so once."""
    monkeypatch.setattr(store_module, "LOOK_AT_FILE_EVERY", 0.05)
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        await commit(store, entry("before"))
        away = await store.ask(GetAway())
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

        async def refused() -> bool:
            return away.value is not None  # no write asked: the look found it

        await eventually(refused)
        assert "was deleted" in away.value
        with pytest.raises(StoreFailing):
            await commit(store, entry("into the void"))
    said = events(caplog, "store_file_moved")
    assert len(said) == 1 and "restarted" in said[0].getMessage()


async def test_a_database_file_replaced_is_refused_at_the_next_commit(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    async with store_at(path) as (system, store):
        await commit(store, entry("before"))
        (tmp_path / "other").write_bytes(path.read_bytes())
        os.replace(tmp_path / "other", path)
        with pytest.raises(StoreFailing) as refused:
            await commit(store, entry("into the old file"))
        assert "replaced" in refused.value.reason


async def _back(store: Any) -> bool:
    return (await store.ask(GetAway())).value is None and await _takes(store)


async def _takes(store: Any) -> bool:
    try:
        await commit(store, [])
    except StoreFailing:
        return False
    return True



async def test_a_file_gone_while_its_disk_failed_is_not_made_anew_when_opened_again(
        tmp_path: Path, disk: Disk) -> None:
    """A disk that vanished leaves its mount point, an empty directory on
    another disk: opened again after the I/O errors, the store was made anew
    there, empty, and took writes (acknowledged on the wrong disk, beside
    queues holding commands it lacked). It stays refused, said as moved."""
    data = tmp_path / "mount"
    data.mkdir()
    path = data / "db.sqlite3"
    async with store_at(path) as (system, store):
        await commit(store, entry("before"))
        away = await store.ask(GetAway())
        disk.fail(IOERR_WRITE)
        with pytest.raises(StoreFailing):
            await commit(store, entry("refused"))
        for name in os.listdir(data):  # the disk gone: its mount point empty
            os.unlink(data / name)
        disk.heal()

        async def said_gone() -> bool:
            return away.value is not None and "was deleted" in away.value

        await eventually(said_gone)
        with pytest.raises(StoreFailing) as refused:
            await commit(store, entry("after"))
        assert "was deleted" in refused.value.reason
    assert not path.exists()  # nothing made anew
