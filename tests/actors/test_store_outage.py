"""The store actor on a database server (PostgreSQL) that fails under it, with
a scripted writer and reader in its place: only a connection that broke is
an outage (reconnect, read back); any other commit error crashes the actor
as on SQLite; a store killed while it recovers still answers every commit
it took; a connection opened after the store stopped is closed."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
import trio
import trio.testing

from tests.waiting import eventually
from trioscope.actors import store as store_module
from trioscope.actors.store import Commit, OutcomeUnknown, Receipt, StoreActor, commit
from trioscope.domain.commands import Command, Priority, new_command
from trioscope.runtime import ActorSpec, ActorStopped, Backoff, SupervisorSpec, open_actor_system
from trioscope.store import SaveCommand, Unavailable, Write

DATABASE = "postgresql://trioscope@127.0.0.1:1/nowhere"
"""Never connected to: ``open_writer`` is scripted. A server's URL makes the actor treat it as one."""
LOST = "consuming input failed: server closed the connection unexpectedly"
"""What psycopg says when the server went away under a query."""
WAIT = 30.0
"""Seconds a scripted writer's thread waits for the test at most (never for ever)."""


def new(command_id: str) -> SaveCommand:
    return SaveCommand(new_command(command_id=command_id, deployment_hash="h", tenant="t", type="restart",
                                   parameters={}, priority=Priority.NORMAL, created_by="u", now=1.0,
                                   schedule_at=None, timeout_seconds=60, requires_confirmation=False,
                                   sequence=1), None)


class ScriptedWriter:
    """A writer whose commits do what ``commit`` says (raise, or answer)."""

    def __init__(self, commit: Callable[[Sequence[Sequence[Write]]], list[BaseException | None]]) -> None:
        self._commit = commit
        self.closed = False

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        return self._commit(groups)

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        return 0, 0

    def prune_idempotency_keys(self, before: float, batch: int) -> int:
        return 0

    def close(self) -> None:
        self.closed = True


class ScriptedReader:
    """Reads back ``stored``; records its closing."""

    def __init__(self, stored: dict[str, Command] | None = None) -> None:
        self.stored = stored or {}
        self.closed = trio.Event()

    async def commands(self, ids: Sequence[str]) -> dict[str, Command]:
        return {i: self.stored[i] for i in ids if i in self.stored}

    def close(self) -> None:
        self.closed.set()


class Opens:
    """``open_writer`` in the store's place: each call does the next of ``script``."""

    def __init__(self, *script: Callable[[], ScriptedWriter]) -> None:
        self.script = list(script)
        self.writers: list[ScriptedWriter] = []
        self.calls = 0

    def __call__(self, database: Any, *, origin: str | None = None) -> ScriptedWriter:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        writer = step()
        self.writers.append(writer)
        return writer


def store_spec(reader: ScriptedReader, **kwargs: Any) -> SupervisorSpec:
    spec = ActorSpec(name="store", factory=lambda: StoreActor(DATABASE, reader), **kwargs)  # type: ignore[arg-type]  # a scripted reader for StoreReader
    return SupervisorSpec(name="root", children=[spec])


def raising(error: Callable[[], BaseException]) -> Callable[[Sequence[Sequence[Write]]], list[BaseException | None]]:
    def commit(groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        raise error()
    return commit


def written(groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
    return [None] * len(groups)


@pytest.mark.parametrize("error", [
    lambda: TypeError("a value the driver cannot adapt"),  # a bug of ours
    lambda: psycopg.errors.StatementTooComplex("stack depth limit exceeded"),  # the server's, but not an outage
], ids=["bug", "not-an-outage"])
async def test_a_commit_error_that_is_not_a_lost_connection_crashes_the_store(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        error: Callable[[], BaseException]) -> None:
    opens = Opens(lambda: ScriptedWriter(raising(error)))
    monkeypatch.setattr(store_module, "open_writer", opens)
    async with open_actor_system(store_spec(ScriptedReader())) as system:
        with pytest.raises(type(error())):  # the error itself: nothing was written
            await commit(system.lookup("/root/store"), [new("cmd_1")])

        async def crashed() -> list[str]:
            return [r.actor for r in caplog.records if getattr(r, "event", None) == "crashed"]

        assert await eventually(crashed) == ["/root/store"]  # and its supervisor restarts it
    events = {getattr(r, "event", None) for r in caplog.records}
    assert not events & {"store_commit_failed", "store_database_lost"}  # not taken for the database going away


async def test_a_commit_whose_connection_broke_is_read_back_and_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    save = new("cmd_1")
    opens = Opens(lambda: ScriptedWriter(raising(lambda: psycopg.OperationalError(LOST))),
                  lambda: ScriptedWriter(written))
    monkeypatch.setattr(store_module, "open_writer", opens)
    reader = ScriptedReader({"cmd_1": save.command})  # it was written before the connection broke
    async with open_actor_system(store_spec(reader)) as system:
        await commit(system.lookup("/root/store"), [save])
    assert opens.calls == 2 and opens.writers[0].closed


async def test_a_store_killed_while_it_recovers_a_failed_commit_answers_it(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    under_way, cut = threading.Event(), threading.Event()

    def cut_when_told(groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        under_way.set()
        cut.wait(WAIT)
        raise psycopg.OperationalError(LOST)

    opens = Opens(lambda: ScriptedWriter(cut_when_told), lambda: ScriptedWriter(written))
    monkeypatch.setattr(store_module, "open_writer", opens)
    receipt = Receipt()

    async def killed() -> bool:
        return any(getattr(r, "event", None) == "killed" for r in caplog.records)

    async def cut_once_killed() -> None:
        await eventually(killed)
        cut.set()  # the connection breaks now: the store recovers in a cancelled scope

    async with trio.open_nursery() as nursery:
        async with open_actor_system(store_spec(ScriptedReader(), shutdown_timeout=0.1)) as system:
            # Sent, not ``commit``: that waits shielded, and would hang this test rather than fail it.
            await system.lookup("/root/store").send(Commit((new("cmd_1"),), receipt))

            async def is_under_way() -> bool:
                return under_way.is_set()

            await eventually(is_under_way)
            nursery.start_soon(cut_once_killed)
        # Stopped: the store outlived its shutdown timeout in the commit, and was cancelled.
    with trio.fail_after(10):
        await receipt.done.wait()
    assert receipt.result is not None
    with pytest.raises(OutcomeUnknown):  # the connection broke under it: written or not, nobody can tell
        receipt.result.unwrap()


async def test_a_connection_the_store_opened_after_it_stopped_is_closed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "RECONNECT", Backoff(initial=0.0, maximum=0.0))
    reconnecting, back = threading.Event(), threading.Event()

    def away() -> ScriptedWriter:
        raise Unavailable("cannot connect to the database: connection refused")

    def back_once_told() -> ScriptedWriter:
        reconnecting.set()
        back.wait(WAIT)
        return ScriptedWriter(written)

    opens = Opens(away, back_once_told)
    monkeypatch.setattr(store_module, "open_writer", opens)
    reader = ScriptedReader()

    async def back_after_the_store_stopped() -> None:
        await reader.closed.wait()  # on_stop has run
        back.set()

    async with trio.open_nursery() as nursery:
        async with open_actor_system(store_spec(reader)) as system:
            assert system.lookup("/root/store").alive

            async def is_reconnecting() -> bool:
                return reconnecting.is_set()

            await eventually(is_reconnecting)  # the database is away at the start: the store reconnects
            nursery.start_soon(back_after_the_store_stopped)
    [connection] = opens.writers
    assert connection.closed


async def test_a_commit_still_queued_when_the_store_stops_for_good_is_refused_not_waited_for_ever(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    under_way, release = threading.Event(), threading.Event()

    def slow(groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        under_way.set()
        release.wait(WAIT)
        return [None] * len(groups)

    monkeypatch.setattr(store_module, "open_writer", Opens(lambda: ScriptedWriter(slow)))
    outcomes: list[str] = []

    async def queued_behind(store: Any) -> None:
        try:
            await commit(store, [new("cmd_2")])
            outcomes.append("written")
        except ActorStopped:
            outcomes.append("refused: nothing written")

    async def killed() -> bool:
        return any(getattr(r, "event", None) == "killed" for r in caplog.records)

    async def release_once_killed() -> None:
        await eventually(killed)
        release.set()

    with trio.fail_after(WAIT):  # before, the queued commit's caller waited for ever (shielded)
        async with trio.open_nursery() as nursery:
            async with open_actor_system(store_spec(ScriptedReader(), shutdown_timeout=0.1)) as system:
                store = system.lookup("/root/store")
                await store.send(Commit((new("cmd_1"),), Receipt()))

                async def is_under_way() -> bool:
                    return under_way.is_set()

                await eventually(is_under_way)  # the writer is busy with cmd_1: cmd_2 waits in the mailbox
                nursery.start_soon(queued_behind, store)
                await trio.testing.wait_all_tasks_blocked()
                nursery.start_soon(release_once_killed)
            # The store outlived its shutdown timeout in cmd_1's commit: killed, its mailbox dropped.
    assert outcomes == ["refused: nothing written"]


async def test_why_commits_are_refused_is_published_while_the_database_is_away(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Readiness reads it (``GetAway``) without asking the store, which may be
    behind thousands of queued commits: a writer that cannot reconnect while
    the reads still can (a role out of connections) left the replica ready."""
    monkeypatch.setattr(store_module, "RECONNECT", Backoff(initial=0.0, maximum=0.0))
    back = threading.Event()

    def away() -> ScriptedWriter:
        if back.is_set():
            return ScriptedWriter(written)
        raise Unavailable("cannot connect to the database: connection refused")

    opens = Opens(lambda: ScriptedWriter(raising(lambda: psycopg.OperationalError(LOST))), away)
    monkeypatch.setattr(store_module, "open_writer", opens)
    async with open_actor_system(store_spec(ScriptedReader())) as system:
        store = system.lookup("/root/store")
        published = await store.ask(store_module.GetAway())
        assert published.value is None
        with pytest.raises(OutcomeUnknown):  # its connection broke under it, nothing to read back
            await commit(store, [new("cmd_1")])

        async def refused() -> bool:
            return published.value is not None

        await eventually(refused)
        assert "connection refused" in published.value or "closed the connection" in published.value
        back.set()

        async def taken() -> bool:
            return published.value is None

        await eventually(taken)
        await commit(store, [new("cmd_2")])
