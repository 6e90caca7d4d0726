"""The store actor: pruning (finished commands and audit records older than the
retention go, in batches; open commands stay whatever their age; idempotency
keys go after their window) and the gathering of commits under load."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from tests.waiting import eventually
from trioscope.actors import store as store_module
from trioscope.actors.store import Prune, StoreActor, commit
from trioscope.domain.commands import CommandEvent, Priority, new_command
from trioscope.domain.deployments import Deployment
from trioscope.domain.idempotency import WINDOW, KeptAnswer
from trioscope.runtime import ActorSpec, ActorStats, ActorSystem, SupervisorSpec, open_actor_system
from trioscope.store import AuditEntry, SaveCommand, SaveDeployment, SaveIdempotencyKey, SqliteReader

DAY = 86400.0
NOW = 1_800_000_000.0


def command(i: int, created: float, finished: bool) -> SaveCommand:
    queued = new_command(command_id=f"cmd_{i}", deployment_hash="h", tenant="t", type="restart", parameters={},
                         priority=Priority.NORMAL, created_by="u", now=created, schedule_at=None,
                         timeout_seconds=60, requires_confirmation=False, sequence=i)
    return SaveCommand(queued.apply(CommandEvent.CANCEL, created + 1) if finished else queued, None)


async def test_old_history_goes_in_batches_and_open_commands_stay(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PRUNE_BATCH", 3)
    path = tmp_path / "db.sqlite3"
    spec = ActorSpec(name="store", factory=lambda: StoreActor(path, retention=30 * DAY, clock=lambda: NOW))
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        await commit(store, [SaveDeployment(Deployment(hash="h", tenant="t", user_id="u", created_at=1.0,
                                                       enrollment_hash=None))])
        old, recent = NOW - 40 * DAY, NOW - 1 * DAY
        await commit(store, [command(i, old, finished=True) for i in range(7)]
                     + [command(10, old, finished=False), command(11, recent, finished=True)]
                     + [AuditEntry(at=old, tenant="t", actor="u", action="x") for _ in range(4)]
                     + [AuditEntry(at=recent, tenant="t", actor="u", action="y")])
        assert await store.ask(Prune()) == (3, 3)  # one batch; the rest follow through the mailbox
        reader = SqliteReader(path)
        try:
            async def pruned() -> tuple[set[str], list[str]] | None:
                commands = {s.command.id for s in reader.command_summaries(
                    "h", status=None, since=None, until=None, limit=50, offset=0, max_bytes=2**20, error_bytes=0)[0]}
                audit = [row.entry.action for row in reader.audit("t", action=None, actor=None, since=None, until=None,
                                                               limit=50, offset=0)[0]]
                return (commands, audit) if len(commands) + len(audit) <= 3 else None

            # The old open command and the recent finished one stay; so does the recent audit record.
            assert await eventually(pruned) == ({"cmd_10", "cmd_11"}, ["y"])
        finally:
            reader.close()


async def test_idempotency_keys_go_after_their_window_whatever_the_retention(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    spec = ActorSpec(name="store", factory=lambda: StoreActor(path, retention=30 * DAY, clock=lambda: NOW))
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        await commit(store, [SaveDeployment(Deployment(hash="h", tenant="t", user_id="u", created_at=1.0,
                                                       enrollment_hash=None))])
        for i, made in enumerate((NOW - WINDOW - 1, NOW - WINDOW + 60)):
            key = KeptAnswer(tenant="t", user_id="u", key=f"k{i}", fingerprint="f", command_id=f"cmd_{i}",
                             status=202, body=b"{}", created_at=made)
            await commit(store, [command(i, made, finished=False), SaveIdempotencyKey(key, made - WINDOW)])
        await store.ask(Prune())
        reader = SqliteReader(path)
        try:
            assert reader.idempotency_key("t", "u", "k0") is None  # a day old: gone, its command kept
            assert reader.idempotency_key("t", "u", "k1") is not None
            assert reader.command("cmd_0") is not None
        finally:
            reader.close()


class CountingWriter:
    """The real writer, recording how many groups each of its transactions carried."""

    def __init__(self, writer: object, transactions: list[int]) -> None:
        self.writer = writer
        self.transactions = transactions

    def commit(self, groups):  # type: ignore[no-untyped-def]
        self.transactions.append(len(groups))
        return self.writer.commit(groups)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.writer, name)


def counted_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, transactions: list[int]) -> ActorSpec:
    """A store actor whose writer appends each transaction's group count to ``transactions``."""
    real = store_module.open_writer
    monkeypatch.setattr(store_module, "open_writer",
                        lambda *args, **kwargs: CountingWriter(real(*args, **kwargs), transactions))
    return ActorSpec(name="store", factory=lambda: StoreActor(tmp_path / "db.sqlite3", clock=lambda: NOW))


async def test_under_steady_load_a_commit_waits_for_company_and_a_lone_one_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock) -> None:
    # The clock stands still unless jumped: a commit that waited for company would never end by itself.
    transactions: list[int] = []
    spec = counted_store(tmp_path, monkeypatch, transactions)
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action="lone")])  # an idle writer: at once
        assert transactions == [1]
        # Moments after a commit ended (the clock has not moved): the next one waits GATHER for others.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(commit, store, [AuditEntry(at=NOW, tenant="t", actor="u", action="first")])
            await trio.testing.wait_all_tasks_blocked()  # the store is waiting for company, not committing
            for action in ("second", "third"):
                nursery.start_soon(commit, store, [AuditEntry(at=NOW, tenant="t", actor="u", action=action)])
            await trio.testing.wait_all_tasks_blocked()
            assert transactions == [1]
            mock_clock.jump(store_module.GATHER)
        assert transactions == [1, 3]
        mock_clock.jump(store_module.BUSY)  # idle again: the next one goes at once
        await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action="later")])
        assert transactions == [1, 3, 1]


async def test_a_lone_writer_going_commit_after_commit_is_not_held_for_company(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mock_clock: trio.testing.MockClock) -> None:
    # The clock stands still unless jumped: a commit that waited for company would never end by itself.
    # One task writing group after group (a deployment's queue taking a burst of creates) is the only
    # writer: nobody else wrote during its last commit nor since, so nobody is coming.
    transactions: list[int] = []
    spec = counted_store(tmp_path, monkeypatch, transactions)
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        for i in range(5):
            await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action=f"serial {i}")])
        assert transactions == [1] * 5
        # Another writer moments later: the commits wait for company again.
        async with trio.open_nursery() as nursery:
            for action in ("other", "another"):
                nursery.start_soon(commit, store, [AuditEntry(at=NOW, tenant="t", actor="u", action=action)])
                await trio.testing.wait_all_tasks_blocked()
            assert transactions == [1] * 5
            mock_clock.jump(store_module.GATHER)
        assert transactions == [1] * 5 + [2]

        async def writer() -> None:
            for action in ("after", "alone again"):
                await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action=action)])

        # After a commit of two writers, a third waits once (either might come back), then goes alone.
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.testing.wait_all_tasks_blocked()
            assert transactions == [1] * 5 + [2]
            mock_clock.jump(store_module.GATHER)
        assert transactions == [1] * 5 + [2, 1, 1]


async def test_a_full_disk_refuses_commits_and_prunes_and_the_store_goes_on(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's "database or disk is full" (here: the file at its page limit)
    refused the commit by crashing the store, every time: the root gave up and
    the server ended, and so again after each restart; a prune on it raised
    "cannot rollback - no transaction is active" in place of the reason. Now
    both are refused (``StoreFull``: 507), said in the log, and the store takes
    the next commit that fits."""
    import sqlite3

    from trioscope.actors.refusals import DatabaseUnavailable, StoreFull
    from trioscope.store import _sqlite

    connect = _sqlite.connect
    pages: list[sqlite3.Connection] = []

    def limited(path: Path) -> sqlite3.Connection:
        connection = connect(path)
        pages.append(connection)
        return connection

    monkeypatch.setattr(_sqlite, "connect", limited)
    path = tmp_path / "db.sqlite3"
    spec = ActorSpec(name="store", factory=lambda: StoreActor(path, retention=30 * DAY, clock=lambda: NOW))
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        await commit(store, [SaveDeployment(Deployment(hash="h", tenant="t", user_id="u", created_at=1.0,
                                                       enrollment_hash=None))])
        used = pages[0].execute("PRAGMA page_count").fetchone()[0]
        for connection in pages:
            connection.execute(f"PRAGMA max_page_count = {used + 4}")
        big = [AuditEntry(at=NOW, tenant="t", actor="u", action="x", details={"blob": "x" * 200_000})]
        for _ in range(3):
            with pytest.raises(StoreFull, match="storage is full") as refused:
                await commit(store, big)
            assert isinstance(refused.value, DatabaseUnavailable)  # refused as the database away is, by every actor
        assert await store.ask(Prune()) == (0, 0)
        await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action="small")])
        node = next(child for child in system.snapshot().root.children if child.path == "/root/store")
        assert node.restarts == 0 and node.failed == 0
    assert "disk is full" in caplog.text and "cannot rollback" not in caplog.text


async def test_a_commit_the_database_holds_up_is_given_up_at_the_systems_cutoff_never_reported_done(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Another program kept the store locked (an sqlite3 shell, a backup tool):
    the commit's thread waited SQLite's busy_timeout (30 s), shielded, past the
    server's whole shutdown budget, and a second signal did not reach it. At
    the system's cutoff (the budget's end) the wait is given up: its writer
    is told the outcome is unknown, whatever the thread does after."""
    import contextlib
    import sqlite3

    from trioscope.actors.refusals import OutcomeUnknown

    path = tmp_path / "db.sqlite3"
    spec = ActorSpec(name="store", factory=lambda: StoreActor(path, clock=lambda: NOW))
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action="before")])
        taken = _processed(system)

        async def cut_once_committing() -> None:
            async def committing() -> bool:
                return _processed(system) > taken

            await eventually(committing)
            system.cutoff.cut(trio.current_time())

        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as locker:
            locker.execute("BEGIN EXCLUSIVE")  # held until the cutoff has come
            async with trio.open_nursery() as nursery:
                nursery.start_soon(cut_once_committing)
                with pytest.raises(OutcomeUnknown, match="server stopped while this was being written"):
                    await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action="held up")])
            locker.execute("ROLLBACK")  # the thread left alone may commit it now: nobody was told it did
    assert "may or may not have been written" in caplog.text


def _processed(system: ActorSystem) -> int:
    """Messages the store has handled (its groups of writes among them)."""
    [stats] = [child for child in system.snapshot().root.children if child.path == "/root/store"]
    assert isinstance(stats, ActorStats)
    return stats.processed


async def test_every_commit_is_timed_and_a_slow_one_said_once_a_minute(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """A disk whose fsync took seconds made every write wait with nothing said:
    each commit's time is in ``app_store_commit_seconds`` (``GetCommitTimes``),
    one past ``SLOW_COMMIT`` a warning (at debug level within the minute)."""
    import logging

    from trioscope.actors.store import GetCommitTimes

    caplog.set_level(logging.DEBUG, logger="trioscope.actors.store")
    monkeypatch.setattr(store_module, "SLOW_COMMIT", 0.0)  # every commit is slow here
    spec = ActorSpec(name="store", factory=lambda: StoreActor(tmp_path / "db.sqlite3", clock=lambda: NOW))
    async with open_actor_system(SupervisorSpec(name="root", children=[spec])) as system:
        store = system.lookup("/root/store")
        for n in range(3):
            await commit(store, [AuditEntry(at=NOW, tenant="t", actor="u", action=f"a{n}")])
        times = await store.ask(GetCommitTimes())
    assert times.count >= 3 and times.total > 0  # (its start's write check is a commit of its own)
    said = [r for r in caplog.records if getattr(r, "event", None) == "store_commit_slow"]
    assert len(said) >= 3 and [r.levelno for r in said[:2]] == [logging.WARNING, logging.DEBUG]
    assert "every request writing waited for it: the database's disk is slow" in said[0].getMessage()
