"""The store actor: the single writer of the database, with group commit.

Writers ``await commit(store, writes)``; the actor collects every group that
arrives while it is busy and writes them all in one transaction when its mailbox
runs dry, then answers each. So a burst of N acknowledgements costs one fsync,
and nothing is acknowledged before it is on disk. Under steady load (a commit
finished moments ago) it first waits ``GATHER`` for more groups to join.

A database served over the network (PostgreSQL) may go away and come back. The
actor does not crash for it: while the database is away every commit is refused
at once with ``DatabaseUnavailable`` (nothing written) and the actor reconnects
by itself (``RECONNECT``), one log line when it lost the database, one when it
is back. A commit whose connection failed under it may have been written or
not: it is never sent again blindly. Once a new connection is open, each group
that changes commands is read back: written as sent (answered as committed),
not written (sent once more, on the new connection), or else ``OutcomeUnknown``;
groups that cannot be read back (deployments, agents, audit records alone) get
``OutcomeUnknown``. Only a connection that cannot be made or broke is taken
for the database going away (``database_down``): any other failing commit (a
bug, a statement the server refused) crashes the actor, and its supervisor
decides.

An SQLite file whose disk fails under it (``store_failing``: an I/O error, a
failed fsync, a vanished disk) is handled alike: commits are refused
(``StoreFailing``, 503) and the file is opened again at a pace (``REOPEN``),
each opening checked by a write (``open_writer``), a warning once a minute.
A commit that failed at its ``COMMIT`` (``MaybeCommitted``: the log's fsync)
is ``OutcomeUnknown``: its commit record may be in the log, replayed at the
next opening. A damaged file, or one deleted or replaced under the server
(``store_damaged``; the file's place is looked at every
``LOOK_AT_FILE_EVERY`` too, and whether a read met it damaged, at a page no
write reaches: ``StoreReader.damaged``), is never opened again: commits are
refused until an operator repaired it and restarted the server. A full disk (or quota) is
none of these: the commit is refused (``StoreFull``, 507) and the next tried.
Any other failing commit crashes the actor. Why commits are refused
meanwhile is published (``GetAway``): readiness says it without asking the
actor, which may be in the middle of a commit.

A commit is waited for to its end, a kill past the actor's shutdown timeout
notwithstanding, but not past the end of the server's shutdown (the system's
cutoff): a database another program keeps locked (SQLite's ``busy_timeout``,
30 s) held the process that long past its budget, and a second signal did not
stop it. Then the commit's thread is left to end alone, with the connection
(never closed from here: that would wait for it), and its groups are answered
``OutcomeUnknown``, as their writers' waits are (``commit``): nothing reports
a commit done that nobody saw end. SQLite's journal keeps the transaction
whole, or not at all, when the process exits under it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
import outcome
import trio

from trioscope.config import format_duration
from trioscope.domain.commands import Command
from trioscope.runtime import Actor, ActorRef, ActorStopped, Backoff, Published, WorkAbandoned
from trioscope.domain.histogram import Histogram
from trioscope.domain.idempotency import WINDOW as IDEMPOTENCY_WINDOW
from trioscope.domain.rates import Lull
from trioscope.store import (AuditEntry, Database, MaybeCommitted, SaveCommand, SaveIdempotencyKey,
                             StoreMoved, StoreReader, StoreWriter, Unavailable, Write, database_down, describe_database,
                             open_writer, postgres_url, store_damaged, store_failing, store_full)

from .refusals import (COMMIT_FAILED, CONNECTION_FAILED, STOPPED_WHILE_WRITING, STORAGE_DAMAGED, DatabaseUnavailable,
                       OutcomeUnknown, StoreFailing, StoreFull)

log = logging.getLogger(__name__)

T = TypeVar("T")


@attrs.define(eq=False)
class Receipt:
    """Where the actor answers one group, after its transaction."""

    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome[None] | None = None

    def settle(self, result: outcome.Outcome[None]) -> None:
        self.result = result
        self.done.set()


@attrs.frozen
class Commit:
    writes: tuple[Write, ...]
    receipt: Receipt
    writer: int | None = None
    """Which task waits for it (``id`` of the task): a group from the only
    writer of the last commit waits for no company (see ``GATHER``). None:
    not known, taken for a writer of its own."""


@attrs.frozen
class Record:
    """Write ``writes`` with the next group, answering nobody: for what may be
    lost when the store is swamped (the audit record of a refused request),
    where the sender must not wait. Told, never asked."""

    writes: tuple[Write, ...]


async def commit(store: ActorRef, writes: Sequence[Write]) -> None:
    """Write ``writes`` all-or-nothing and return once they are committed.

    Raises:
        Conflict: a compare-and-set write found the row changed (nothing written).
        Rejected: the database refused a value (nothing written).
        DatabaseUnavailable: the database server is away (nothing written): send it again shortly.
            ``StoreFull``, one of them: the database's disk is full (nothing written).
        OutcomeUnknown: the connection broke under the commit and what it wrote
            could not be read back, or the server's shutdown ended before the
            commit did (the system's cutoff): check before sending it again.
        ActorStopped: the store stopped for good, or its incarnation ended,
            before it wrote them (nothing written).
        Exception: the database failed (its own error type, as the store raised it).
    """
    receipt = Receipt()
    await store.send(Commit(tuple(writes), receipt, id(trio.lowlevel.current_task())))
    # Shielded: once sent, the outcome must be waited for, or a cancelled caller
    # could not tell whether its writes landed. Commits take milliseconds. A
    # store that terminates (its supervisor gave up, or shutdown killed it)
    # drops what its mailbox still held: that group was never written. Only
    # the end of the server's shutdown gives the wait up (the module's docstring).
    with store.shielded() as shield:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_when_stopped, store, nursery.cancel_scope)
            await receipt.done.wait()
            nursery.cancel_scope.cancel()
    if receipt.result is None:
        if shield.cancelled_caught:
            raise OutcomeUnknown("the server's shutdown ended before the store answered", STOPPED_WHILE_WRITING)
        raise ActorStopped(store.path)
    receipt.result.unwrap()


async def _cancel_when_stopped(store: ActorRef, scope: trio.CancelScope) -> None:
    await store.wait_stopped()
    scope.cancel()


GATHER = 0.003
"""Seconds a commit waits for company when the writer was busy moments ago
(``BUSY``). Each commit is a transaction, a flush to disk, a hand-over to the
writer's thread and, on PostgreSQL, a round trip and a notification to every
replica, whatever it carries; under steady load the groups that arrive while one
commit runs are few (with 2 workers on PostgreSQL each sees half the requests),
so the fixed cost was paid for one or two groups at a time. Waiting a few ms
(once per commit, not per group) costs a write that much latency and gave
2 workers on PostgreSQL 1.10x the commands per CPU-second (2 ms 1.11x, 4 ms 1.19x
but the clients waiting more; SQLite's one process 1.00x: bench/RESULTS.md).

Not when every group waiting is from the one task the last commit answered
(``Commit.writer``): nobody else wrote during that commit nor since, so nobody
is coming. That is a writer going one commit after another, such as a
deployment's queue taking a burst of creates one at a time (and handing each to
the waiting poll): each of its commits waited 3 ms for nobody, and 360 creates
to one deployment at once were answered in twice the time (p95 3.1 s against
1.6 s; bench/command_burst.py --spread one)."""
BUSY = 0.02
"""A commit this soon after the last one ended waits ``GATHER``; one that comes
to an idle writer (a lone request) is written at once."""
FULL_SAID_EVERY = 60.0
"""Seconds between two warnings that the database's disk is full."""
PRUNE_INTERVAL = 3600.0
"""Seconds between deletions of history older than the retention."""
PRUNE_BATCH = 5000
"""Rows of each kind deleted per transaction: commits wait for the writer meanwhile."""
RECONNECT = Backoff(initial=0.25, maximum=1.0)
"""Seconds between attempts to connect again to a database that went away: at
most a second, as the report bus's client, so that commits (refused at once
meanwhile) are taken again within a second of its return; an attempt on a
server that refuses connections costs next to nothing."""
REOPEN = Backoff(initial=0.5, maximum=5.0)
"""Seconds between attempts to open again an SQLite file whose disk failed
(``store_failing``): each attempt writes and syncs, so a disk that still
fails is not taken for back; 5 restarts of the actor in 10 ms made the root
supervisor give up, and the process exit."""
FAILING_SAID_EVERY = 60.0
"""Seconds between two warnings that the SQLite file's disk fails."""
LOOK_AT_FILE_EVERY = 5.0
"""Seconds between two looks at whether the SQLite file is still at its path
(``StoreWriter.moved``; every commit looks too): readiness says it without a write."""
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of ``app_store_commit_seconds``: an fsync on a
local SSD takes a millisecond, a network disk or a busy database server seconds."""
SLOW_COMMIT = 1.0
"""Seconds a commit may take before it is said (every write of its batch waited
for it): a disk or database server that slow is why requests are slow."""
SLOW_SAID_EVERY = 60.0
"""Seconds between two warnings of a slow commit (at debug level between)."""


@attrs.frozen
class Prune:
    """Delete finished commands and audit records older than the retention,
    and idempotency keys older than their window."""


@attrs.frozen
class LookAtFile:
    """Whether the SQLite file is still the one at its path, and no read met
    it damaged (``LOOK_AT_FILE_EVERY``)."""


@attrs.frozen
class GetCommitTimes:
    """Answered with the ``Histogram`` of how long commits take (``/metrics``);
    the same object across restarts of the actor when it is given one."""


@attrs.frozen
class GetAway:
    """Answered with the ``Published[str | None]`` of why commits are refused
    for the database away (None: they are not); the same object across
    restarts of the actor when it is given one."""


class StoreActor(Actor):
    def __init__(self, database: Database, reader: StoreReader | None = None, *, retention: float | None = None,
                 clock: Callable[[], float] = time.time, origin: str | None = None,
                 away: Published[str | None] | None = None,
                 opened: Published[tuple[int, int] | None] | None = None,
                 commit_times: Histogram | None = None) -> None:
        """``opened``: the SQLite file the first incarnation opened (its
        device and inode), kept for the actor's restarts: every later opening
        must find that file at the path, never make a new one there."""
        self.database = database
        self.opened: Published[tuple[int, int] | None] = opened if opened is not None else Published(None)
        self.origin = origin
        """Names this replica in the database's change notifications (PostgreSQL)."""
        self.reader = reader
        """Closed when the store stops: it is the last actor to use the database."""
        self.retention = retention
        """Seconds finished commands and audit records are kept (None: for ever)."""
        self.clock = clock
        self.writer: StoreWriter | None = None
        self.pending: list[Commit] = []
        self.gathered = False
        """This batch waited ``GATHER`` already."""
        self.last_flush = -math.inf
        """When the last commit ended (``trio.current_time()``)."""
        self.last_writers: frozenset[int | None] = frozenset()
        """The ``Commit.writer`` of the groups of the last commit."""
        self.limiter = trio.CapacityLimiter(1)
        self.pruned = (0, 0)
        """Commands and audit records deleted by the current round of batches."""
        self.pruned_keys = 0
        """Idempotency keys deleted by it (their window over)."""
        self._full_said = Lull(FULL_SAID_EVERY)
        """How often the disk is said full at warning level (``_say_full``)."""
        self.networked = postgres_url(database) is not None
        """A database server that may go away and come back (see the module docstring)."""
        self.away: Published[str | None] = away if away is not None else Published(None)
        self.away.publish(None)  # a restarted incarnation connects anew (``on_start``)
        self.for_good = False
        """The SQLite file is damaged or moved (``store_damaged``): never opened again by this incarnation."""
        self.reopening = False
        """``_reconnect`` runs."""
        self._failing_said = Lull(FAILING_SAID_EVERY)
        self._back_said = Lull(FAILING_SAID_EVERY)
        self.commit_times = commit_times if commit_times is not None else Histogram(COMMIT_BUCKETS)
        """How long each commit took, however it ended (``GetCommitTimes``)."""
        self._slow_said = Lull(SLOW_SAID_EVERY)

    async def on_start(self) -> None:
        # However this incarnation ends (a stop, a crash, killed past its
        # shutdown timeout): a connection that ``_reconnect`` was still opening
        # when ``on_stop`` ran is only set once its thread returns, after that.
        self.context.at_end(self._drop_writer)
        # Groups taken but not yet written when this incarnation ends (a kill
        # while it gathered company): nothing of them was written.
        self.context.at_end(self._refuse_pending)
        try:
            self.writer = await self._open()
        except Exception as exc:
            # A restart while the database is away or its file failing: refuse
            # commits until it is back, rather than fail to start again and
            # again. (At the server's start the store was just opened: this is
            # a restart, or a moment's bad luck.)
            if self.networked and database_down(exc):
                self._lose(_one_line(exc))
            elif not self.networked and store_failing(exc):
                self._file_failed(exc)
            else:
                raise
        if self.retention is not None:
            self.prunes = self.context.sweep(PRUNE_INTERVAL, Prune(), first=0.0)
        if not self.networked:
            self.context.every(LOOK_AT_FILE_EVERY, LookAtFile())

    @property
    def lost(self) -> str | None:
        """Why the database is away (None: it is not), while ``writer`` is None."""
        return self.away.value

    @lost.setter
    def lost(self, reason: str | None) -> None:
        if reason != self.away.value:
            self.away.publish(reason)

    async def _open(self) -> StoreWriter:
        if self.networked:
            return await trio.to_thread.run_sync(functools.partial(open_writer, self.database, origin=self.origin))
        writer = await trio.to_thread.run_sync(functools.partial(open_writer, self.database,
                                                                 expected=self.opened.value))
        if self.opened.value is None:
            self.opened.publish(writer.identity)
        return writer

    def _lose(self, reason: str) -> None:
        """The database went away: refuse commits and reconnect in the background."""
        if self.lost is not None:
            return
        self.lost = reason
        log.warning("store: lost the database %s (%s); commits are refused until it is back, reconnecting every "
                    "%g-%g s", describe_database(self.database), reason, RECONNECT.initial, RECONNECT.maximum,
                    extra={"event": "store_database_lost"})
        self.context.start_soon(self._reconnect, name=f"{self.context.path} reconnect")

    async def _reconnect(self) -> None:
        self.reopening = True
        try:
            for wait in (RECONNECT if self.networked else REOPEN).delays():
                await trio.sleep(wait)
                if self.for_good:  # found damaged meanwhile (a read): never opened again
                    return
                try:
                    writer = await self._open()
                except Exception as exc:
                    if self.networked and database_down(exc):
                        self.lost = _one_line(exc)
                        continue
                    if not self.networked and store_failing(exc):
                        if store_damaged(exc):
                            self._file_failed(exc)  # said, and never opened again
                            return
                        self.lost = _one_line(exc)
                        continue
                    raise  # not the database being away (a newer schema): the actor crashes
                self.writer, self.lost = writer, None
                if self.networked:
                    log.info("store: connected to the database %s again", describe_database(self.database),
                             extra={"event": "store_database_back"})
                else:
                    log.log(logging.INFO if self._back_said.due(time.monotonic()) is not None else logging.DEBUG,
                            "store: the database file %s works again: writes are taken", self.database,
                            extra={"event": "store_file_back"})
                return
        finally:
            self.reopening = False

    def _file_failed(self, error: BaseException) -> None:
        """The SQLite file or its disk failed (``store_failing``): refuse
        commits, and open it again at a pace, unless it is damaged or moved
        (``store_damaged``): then until an operator repaired it. Said once a
        minute, at debug level between."""
        self._drop_writer()
        self.lost = reason = _one_line(error)
        if store_damaged(error):
            # Once: nothing is tried again, so nothing fails again.
            self.for_good = True
            if isinstance(error, StoreMoved):
                log.error("store: %s: writes are refused (503 store_failing) until the server is restarted, which "
                          "opens the file at the path (acknowledged writes would go into a file nobody opens again)",
                          error, extra={"event": "store_file_moved"})
            else:
                log.error("store: the database file %s is damaged (%s): writes are refused (503 store_failing) "
                          "until it is repaired: stop the server, restore a backup (or recover what is readable: "
                          "sqlite3 %s '.recover' | sqlite3 recovered.sqlite3, and put that in its place), and start "
                          "it again", self.database, reason, self.database, extra={"event": "store_file_damaged"})
            return
        level = self._failing_said.level(time.monotonic())
        log.log(level, "store: the database file %s failed (%s): writes are refused (503 store_failing) until it "
                "works again; opening it again every %g-%g s", self.database, reason, REOPEN.initial,
                REOPEN.maximum, extra={"event": "store_file_failing"})
        if not self.reopening and not self.for_good:
            self.reopening = True  # at once: another failure before it starts must not start a second
            self.context.start_soon(self._reconnect, name=f"{self.context.path} reopen")

    def _refusal(self) -> DatabaseUnavailable | ActorStopped:
        """Why a commit is refused while there is no writer."""
        if self.lost is None:
            # A commit given up at the end of the shutdown took the writer with it.
            return ActorStopped(self.context.path)
        if self.networked:
            return DatabaseUnavailable(self.lost)
        return StoreFailing(self.lost, STORAGE_DAMAGED) if self.for_good else StoreFailing(self.lost)

    def _refuse_pending(self) -> None:
        pending, self.pending = self.pending, []
        _fail([c for c in pending if not c.receipt.done.is_set()], ActorStopped(self.context.path))

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Commit):
            self.pending.append(message)
            return None
        if isinstance(message, Record):
            self.pending.append(Commit(message.writes, Receipt()))  # a receipt nobody reads
            return None
        if isinstance(message, GetAway):
            return self.away
        if isinstance(message, GetCommitTimes):
            return self.commit_times
        if isinstance(message, LookAtFile):
            await self._look_at_file()
            return None
        if isinstance(message, Prune):
            await self._flush()
            if self.writer is None:
                return 0, 0  # the database is away: the next round prunes
            return await self._prune()
        return await super().handle(message)

    async def _prune(self) -> tuple[int, int]:
        """One batch of each; another ``Prune`` goes to the back of the mailbox
        while there may be more, so commits that arrived meanwhile go first.
        Answers how many commands and audit records this batch deleted."""
        assert self.writer is not None and self.retention is not None
        try:
            commands, audit = await self._in_thread(self.writer.prune, self.clock() - self.retention, PRUNE_BATCH,
                                                    what="pruning")
            # Idempotency keys have a window of their own, whatever the retention.
            assert self.writer is not None  # (given up, it raised)
            keys = await self._in_thread(self.writer.prune_idempotency_keys, self.clock() - IDEMPOTENCY_WINDOW,
                                         PRUNE_BATCH, what="pruning")
        except WorkAbandoned:
            return 0, 0  # the end of the shutdown: nothing to answer for
        except Exception as exc:
            if not self.networked and store_failing(exc):
                self._file_failed(exc)  # the next round tries again, on the file opened again
                return 0, 0
            if not store_full(exc):
                raise
            self._say_full(exc)  # the next round tries again (deletions take a little room of their own)
            return 0, 0
        self.pruned = (self.pruned[0] + commands, self.pruned[1] + audit)
        self.pruned_keys += keys
        if max(commands, audit, keys) == PRUNE_BATCH and self.prunes.again():  # no room: the timer comes back
            return commands, audit
        if any(self.pruned) or self.pruned_keys:
            log.info("pruned %d finished commands and %d audit records older than %s, %d idempotency keys",
                     *self.pruned, format_duration(self.retention), self.pruned_keys,
                     extra={"event": "prune", "commands": self.pruned[0], "audit": self.pruned[1],
                            "idempotency_keys": self.pruned_keys})
        self.pruned = (0, 0)
        self.pruned_keys = 0
        return commands, audit

    async def on_idle(self) -> None:
        if (self.pending and not self.gathered and trio.current_time() - self.last_flush < BUSY
                and not self._alone()):
            self.gathered = True
            await trio.sleep(GATHER)
            if self.context.backlog:
                return  # what arrived meanwhile joins this batch: on_idle comes again after it
        await self._flush()

    def _alone(self) -> bool:
        """Every group waiting is from the one writer of the last commit (see ``GATHER``)."""
        if len(self.last_writers) != 1:
            return False
        (writer,) = self.last_writers
        return writer is not None and all(c.writer == writer for c in self.pending)

    async def on_stop(self) -> None:
        await self._flush()
        # The writer is closed at the end of the incarnation (``on_start``).
        if self.reader is not None:
            self.reader.close()

    async def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending, self.gathered = self.pending, [], False
        if self.writer is None:
            # The database away or its file failing; or a commit given up at the
            # end of the shutdown took the writer with it (``_in_thread``):
            # nothing more is written.
            _fail(batch, self._refusal())
            return
        try:
            results = await self._commit(batch)
        except WorkAbandoned as exc:
            _unknown(batch, str(exc), STOPPED_WHILE_WRITING)
            # The shutdown's end cancels the actor too: it stops here, rather than
            # refuse the groups behind (their writers' waits end with this one).
            await trio.lowlevel.checkpoint()
            return
        except Exception as exc:
            if store_full(exc):
                # Rolled back, the writer fine: refused (507) until room is made,
                # never a crash (on SQLite, the root gave up and the server ended).
                self._say_full(exc)
                _fail(batch, StoreFull(_one_line(exc)))
                return
            if not self.networked and store_failing(exc):
                # The file or its disk, not the writes: refused (or unknown, at
                # the commit itself) and the file opened again, never a crash
                # (5 restarts in 10 ms, the root gave up and the server ended).
                if isinstance(exc, MaybeCommitted):
                    _unknown(batch, _one_line(exc), COMMIT_FAILED)
                else:
                    _fail(batch, self._file_refusal(exc))
                self._file_failed(exc)
                return
            if not (self.networked and database_down(exc)):
                # A bug, a server that refuses for another reason: the actor
                # crashes (its supervisor decides), and nothing was written
                # (the transaction was rolled back).
                _fail(batch, exc)
                raise
            failed = exc
        except BaseException:
            _fail(batch, RuntimeError("store stopped"))
            raise
        else:
            self.last_flush = trio.current_time()
            self.last_writers = frozenset(c.writer for c in batch)
            _settle(batch, results)
            return
        await self._commit_failed(batch, failed)

    @staticmethod
    def _file_refusal(error: BaseException) -> StoreFailing:
        reason = _one_line(error)
        return StoreFailing(reason, STORAGE_DAMAGED) if store_damaged(error) else StoreFailing(reason)

    async def _look_at_file(self) -> None:
        """Refuse commits from now if the SQLite file is no longer at its path,
        or if a read met it damaged (``StoreReader.damaged``: a page no write
        reached), as when a commit meets it (``LOOK_AT_FILE_EVERY``)."""
        if self.reader is not None and self.reader.damaged is not None and not self.for_good:
            self._file_failed(self.reader.damaged)  # before the flush: nothing more into a damaged file
            return
        await self._flush()  # what waits is written first (each commit looks too)
        writer = self.writer  # (the flush may have dropped it)
        if writer is None:
            return
        try:
            why = await self._in_thread(writer.moved, what="a look at the database file")
        except WorkAbandoned:
            return
        if why is not None:
            self._file_failed(StoreMoved(why))

    def _say_full(self, error: Exception) -> None:
        """The database's disk is full: warned once a minute, at debug level between."""
        log.log(self._full_said.level(time.monotonic()),
                "the database's disk is full (%s): writes are refused (507 insufficient_storage) until room is made; "
                "shorten storage.history_retention or free the disk", _one_line(error),
                extra={"event": "store_full"})

    async def _commit(self, batch: Sequence[Commit]) -> list[BaseException | None]:
        assert self.writer is not None
        started = trio.current_time()
        try:
            return await self._in_thread(self.writer.commit, [c.writes for c in batch], what=f"a commit of "
                                         f"{len(batch)} group(s) of writes")
        finally:
            self._timed(trio.current_time() - started, len(batch))

    def _timed(self, seconds: float, groups: int) -> None:
        """A commit took ``seconds``: recorded, and said if slow (once a minute at warning level)."""
        self.commit_times.observe(seconds)
        if seconds >= SLOW_COMMIT:
            log.log(self._slow_said.level(time.monotonic()),
                    "store: a commit of %d group(s) of writes took %.1f s, and every request writing waited for "
                    "it: the database's %s is slow (app_store_commit_seconds in /metrics)", groups, seconds,
                    "server" if self.networked else "disk", extra={"event": "store_commit_slow",
                                                                   "seconds": round(seconds, 3), "groups": groups})

    async def _in_thread(self, work: Callable[..., T], *args: Any, what: str) -> T:
        """``work(*args)`` with the writer, in its thread, waited for to its
        end but for the end of the shutdown (the module's docstring).

        Raises:
            WorkAbandoned: given up then; the thread keeps the writer, which
                this actor uses no more.
        """
        try:
            return await self.context.in_thread(work, *args, limiter=self.limiter, what=what)
        except WorkAbandoned:
            self.writer = None  # closed in the thread's place it would wait for the thread
            raise

    def _drop_writer(self) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            with contextlib.suppress(Exception):  # a broken connection may fail to close: it is gone either way
                writer.close()

    async def _commit_failed(self, batch: list[Commit], error: Exception) -> None:
        """The connection failed under ``batch`` (see the module docstring)."""
        reason = _one_line(error)
        try:
            await self._recover(batch, error, reason)
        except BaseException:
            # Cancelled (the actor killed past its shutdown timeout while it
            # reconnected or read back) or crashed: every group not answered
            # yet is answered now, or its writer would wait for ever (``commit``).
            _unknown([c for c in batch if not c.receipt.done.is_set()], reason)
            raise

    async def _recover(self, batch: list[Commit], error: Exception, reason: str) -> None:
        self._drop_writer()
        if isinstance(error, Unavailable):  # the writer could not even connect: nothing was sent
            _fail(batch, DatabaseUnavailable(reason))
            self._lose(reason)
            return
        log.warning("store: a commit of %d group(s) failed (%s); reading back what it wrote", len(batch), reason,
                    extra={"event": "store_commit_failed"})
        try:
            self.writer = await self._open()
            again, unknown = await self._read_back(batch)
        except Exception as exc:
            if not database_down(exc):
                raise
            # Away still, or the read failed: nobody can tell what was written.
            _unknown(batch, reason)
            self._drop_writer()
            self._lose(_one_line(exc))
            return
        _unknown(unknown, reason)
        if not again:
            return
        try:
            results = await self._commit(again)
        except WorkAbandoned as exc:
            _unknown(again, str(exc), STOPPED_WHILE_WRITING)
            return
        except Exception as exc:
            if not database_down(exc):
                _fail(again, exc)  # read back as not written, and refused again: nothing was written
                raise
            # Failed twice running: left to the client, never a third time.
            _unknown(again, _one_line(exc))
            self._drop_writer()
            self._lose(_one_line(exc))
            return
        self.last_flush = trio.current_time()
        _settle(again, results)

    async def _read_commands(self, ids: Sequence[str]) -> dict[str, Command]:
        if self.reader is None or not ids:
            return {}
        for _ in range(READ_BACK_TRIES - 1):
            try:
                return await self.reader.commands(ids)
            except Exception:  # tried again; the last try's error is raised
                log.debug("store: reading back a failed commit failed; trying again", exc_info=True)
        return await self.reader.commands(ids)

    async def _read_back(self, batch: list[Commit]) -> tuple[list[Commit], list[Commit]]:
        """Settle the groups of ``batch`` found written as sent; answer those
        found not written (to send again) and those that cannot be told."""
        writes = {id(c): _command_writes(c.writes) if self.reader is not None else [] for c in batch}
        ids = [w.command.id for c in batch for w in writes[id(c)]]
        stored = await self._read_commands(ids)
        again: list[Commit] = []
        unknown: list[Commit] = []
        for c in batch:
            saves = writes[id(c)]
            if saves and all(_written(stored.get(w.command.id), w.command) for w in saves):
                c.receipt.settle(outcome.Value(None))
            elif saves and all(_unwritten(stored.get(w.command.id), w) for w in saves):
                again.append(c)
            else:
                unknown.append(c)
        return again, unknown

READ_BACK_TRIES = 3
"""Reads of what a failed commit wrote: reads change nothing, and each that
finds a pooled connection the outage left dead drops it (the reader's pool
may hold several)."""


def _fail(batch: Sequence[Commit], error: Exception) -> None:
    for c in batch:
        c.receipt.settle(outcome.Error(error))


def _unknown(batch: Sequence[Commit], reason: str, message: str = CONNECTION_FAILED) -> None:
    """``batch`` answered ``OutcomeUnknown`` (a 504 ``outcome_unknown``; its
    ``message`` for clients), and said: each is a client's request that may or
    may not have taken effect."""
    if not batch:
        return
    _fail(batch, OutcomeUnknown(reason, message))
    log.warning("store: %d group(s) of writes may or may not have been written (%s): their requests are answered "
                "504 outcome_unknown, for their clients to check before sending them again", len(batch), reason,
                extra={"event": "store_outcome_unknown", "groups": len(batch)})


def _settle(batch: Sequence[Commit], results: Sequence[BaseException | None]) -> None:
    for c, error in zip(batch, results, strict=True):
        c.receipt.settle(outcome.Value(None) if error is None else outcome.Error(error))


def _one_line(error: BaseException) -> str:
    name = getattr(error, "sqlite_errorname", None)  # SQLite's own says which I/O error (SQLITE_IOERR_FSYNC)
    return f"{type(error).__name__}: {' '.join(str(error).split())}" + (f" ({name})" if name else "")


def _command_writes(writes: Sequence[Write]) -> list[SaveCommand]:
    """The command writes of a group, if reading them back tells whether it
    was written: a group of command writes with audit records and idempotency
    keys (which go in the same transaction); none otherwise (it cannot be told)."""
    if not all(isinstance(w, SaveCommand | AuditEntry | SaveIdempotencyKey) for w in writes):
        return []
    return [w for w in writes if isinstance(w, SaveCommand)]


def _written(stored: Command | None, sent: Command) -> bool:
    """``sent`` is what is stored: its version, with its last step (a version
    another writer wrote instead would differ in the step's time or event)."""
    return (stored is not None and len(stored.history) == len(sent.history)
            and stored.history[-1:] == sent.history[-1:])


def _unwritten(stored: Command | None, write: SaveCommand) -> bool:
    """The stored row is still the one ``write`` expected to change (none, for a new command)."""
    if write.expected_version is None:
        return stored is None
    return stored is not None and len(stored.history) == write.expected_version
