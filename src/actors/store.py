"""The store actor: the single writer of the database, with group commit.

Writers ``await commit(store, writes)``; the actor collects every group that
arrives while it is busy and writes them all in one transaction when its mailbox
runs dry, then answers each. So a burst of N acknowledgements costs one fsync,
and nothing is acknowledged before it is on disk. Under steady load (a commit
finished moments ago) it first waits ``GATHER`` for more groups to join.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import outcome
import trio

from trioscope.config import format_duration
from trioscope.runtime import Actor, ActorRef, MailboxFull
from trioscope.store import Database, StoreReader, StoreWriter, Write, open_writer

log = logging.getLogger(__name__)


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
        Exception: the database failed (its own error type, as the store raised it).
    """
    receipt = Receipt()
    await store.send(Commit(tuple(writes), receipt))
    # Shielded: once sent, the outcome must be waited for, or a cancelled caller
    # could not tell whether its writes landed. Commits take milliseconds.
    with trio.CancelScope(shield=True):
        await receipt.done.wait()
    assert receipt.result is not None
    receipt.result.unwrap()


GATHER = 0.003
"""Seconds a commit waits for company when the writer was busy moments ago
(``BUSY``). Each commit is a transaction, a flush to disk, a hand-over to the
writer's thread and, on PostgreSQL, a round trip and a notification to every
replica, whatever it carries; under steady load the groups that arrive while one
commit runs are few (with 2 workers on PostgreSQL each sees half the requests),
so the fixed cost was paid for one or two groups at a time. Waiting a few ms
(once per commit, not per group) costs a write that much latency and gave
2 workers on PostgreSQL 1.10x the commands per CPU-second (2 ms 1.11x, 4 ms 1.19x
but the clients waiting more; SQLite's one process 1.00x: bench/RESULTS.md)."""
BUSY = 0.02
"""A commit this soon after the last one ended waits ``GATHER``; one that comes
to an idle writer (a lone request) is written at once."""
PRUNE_INTERVAL = 3600.0
"""Seconds between deletions of history older than the retention."""
PRUNE_BATCH = 5000
"""Rows of each kind deleted per transaction: commits wait for the writer meanwhile."""


@attrs.frozen
class Prune:
    """Delete finished commands and audit records older than the retention."""


class StoreActor(Actor):
    def __init__(self, database: Database, reader: StoreReader | None = None, *, retention: float | None = None,
                 clock: Callable[[], float] = time.time, origin: str | None = None) -> None:
        self.database = database
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
        self.limiter = trio.CapacityLimiter(1)
        self.pruned = (0, 0)
        """Commands and audit records deleted by the current round of batches."""

    async def on_start(self) -> None:
        self.writer = await trio.to_thread.run_sync(functools.partial(open_writer, self.database, origin=self.origin))
        if self.retention is not None:
            self.context.every(PRUNE_INTERVAL, Prune(), first=0.0)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Commit):
            self.pending.append(message)
            return None
        if isinstance(message, Record):
            self.pending.append(Commit(message.writes, Receipt()))  # a receipt nobody reads
            return None
        if isinstance(message, Prune):
            await self._flush()
            return await self._prune()
        return await super().handle(message)

    async def _prune(self) -> tuple[int, int]:
        """One batch of each; another ``Prune`` goes to the back of the mailbox
        while there may be more, so commits that arrived meanwhile go first.
        Answers how many commands and audit records this batch deleted."""
        assert self.writer is not None and self.retention is not None
        commands, audit = await trio.to_thread.run_sync(
            self.writer.prune, self.clock() - self.retention, PRUNE_BATCH, limiter=self.limiter)
        self.pruned = (self.pruned[0] + commands, self.pruned[1] + audit)
        if max(commands, audit) == PRUNE_BATCH:
            try:
                self.context.ref.tell(Prune())
                return commands, audit
            except MailboxFull:
                pass  # the timer comes back to the rest
        if any(self.pruned):
            log.info("pruned %d finished commands and %d audit records older than %s", *self.pruned,
                     format_duration(self.retention),
                     extra={"event": "prune", "commands": self.pruned[0], "audit": self.pruned[1]})
        self.pruned = (0, 0)
        return commands, audit

    async def on_idle(self) -> None:
        if self.pending and not self.gathered and trio.current_time() - self.last_flush < BUSY:
            self.gathered = True
            await trio.sleep(GATHER)
            if self.context.backlog:
                return  # what arrived meanwhile joins this batch: on_idle comes again after it
        await self._flush()

    async def on_stop(self) -> None:
        await self._flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.reader is not None:
            self.reader.close()

    async def _flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending, self.gathered = self.pending, [], False
        writer = self.writer
        assert writer is not None
        try:
            with trio.CancelScope(shield=True):
                results = await trio.to_thread.run_sync(
                    writer.commit, [c.writes for c in batch], limiter=self.limiter)
        except BaseException as exc:
            for c in batch:
                c.receipt.settle(outcome.Error(exc if isinstance(exc, Exception) else RuntimeError("store stopped")))
            raise
        self.last_flush = trio.current_time()
        for c, error in zip(batch, results, strict=True):
            c.receipt.settle(outcome.Value(None) if error is None else outcome.Error(error))
