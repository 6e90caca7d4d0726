"""The restarts of the actors that need the database (the store, the
directory), as the server's supervision tree sets them: on PostgreSQL a crash
for want of the database, or on SQLite for its disk failing, is paced and
never makes the root give up; any other crash counts against the root's
intensity, so a store that crashes for a bug makes the server exit."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest
import trio

from tests.conftest import settings_in
from trioscope.actors import store as store_module
from trioscope.actors.store import commit
from trioscope.runtime import ActorSpec, RestartIntensityExceeded, SupervisorSpec, open_actor_system
from trioscope.store import AuditEntry, StoreReader, Unavailable, Write
from trioscope.system import STORE, STORE_BACKOFF, supervision_tree

DISK_FULL = "database or disk is full"


class FullDisk:
    """The real SQLite writer, but every commit fails as on a full disk."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        raise sqlite3.OperationalError(DISK_FULL)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


def database_actors(tree: SupervisorSpec) -> list[ActorSpec]:
    found = [c for c in tree.children if isinstance(c, ActorSpec) and c.name in ("store", "directory")]
    assert len(found) == 2
    return found


async def test_a_store_that_cannot_write_its_sqlite_file_makes_the_root_give_up(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = store_module.open_writer
    monkeypatch.setattr(store_module, "open_writer", lambda *args, **kwargs: FullDisk(real(*args, **kwargs)))
    with pytest.RaisesGroup(RestartIntensityExceeded, flatten_subgroups=True):
        async with open_actor_system(supervision_tree(settings_in(tmp_path))) as system:
            store = system.lookup(STORE)
            for _ in range(6):  # the root's intensity is 5 restarts: the sixth crash is one too many
                with pytest.raises(sqlite3.OperationalError, match=DISK_FULL):
                    await commit(store, [AuditEntry(at=time.time(), tenant="t", actor="user:u", action="x")])
            with trio.fail_after(10):  # given up already: no restart at the store's own pace
                await trio.sleep_forever()


def disk_io_error() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = 778  # type: ignore[attr-defined]  # SQLITE_IOERR_WRITE, as SQLite sets it
    return error


def test_on_sqlite_only_a_failing_disk_is_paced(tmp_path: Path) -> None:
    """A failing disk under the SQLite file (an I/O error) restarted the store
    5 times in ~10 ms, and the root gave up: the process exited. Any other
    crash restarts as any other actor's."""
    for spec in database_actors(supervision_tree(settings_in(tmp_path))):
        assert spec.paced(disk_io_error()) is STORE_BACKOFF
        assert spec.paced(RuntimeError("a bug")) is None
        assert spec.paced(sqlite3.OperationalError(DISK_FULL)) is None


def test_on_postgresql_only_a_database_away_or_busy_is_paced(tmp_path: Path, postgres_url: str) -> None:
    reader = StoreReader(postgres_url)
    try:
        settings = settings_in(tmp_path)
        settings = attrs.evolve(settings, store=attrs.evolve(settings.store, database=postgres_url))
        tree = supervision_tree(settings, reader=reader)
        for spec in database_actors(tree):
            assert spec.paced(psycopg.OperationalError("server closed the connection unexpectedly")) is STORE_BACKOFF
            assert spec.paced(Unavailable("cannot connect")) is STORE_BACKOFF
            assert spec.paced(psycopg.errors.QueryCanceled("canceling statement due to statement timeout")) \
                is STORE_BACKOFF
            # A bug, or a server that will not heal by waiting: counted, so the root may give up.
            assert spec.paced(TypeError("not a write here")) is None
            assert spec.paced(psycopg.errors.StatementTooComplex("stack depth limit exceeded")) is None
    finally:
        reader.close()
