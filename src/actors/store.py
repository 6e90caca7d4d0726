"""The store actor: the single writer of the SQLite database, with group commit.

Writers ``await commit(store, writes)``; the actor collects every group that
arrives while it is busy and writes them all in one transaction when its mailbox
runs dry, then answers each. So a burst of N acknowledgements costs one fsync,
and nothing is acknowledged before it is on disk.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import outcome
import trio

from trioscope.runtime import Actor, ActorRef
from trioscope.store import SqliteWriter, StoreReader, Write

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


async def commit(store: ActorRef, writes: Sequence[Write]) -> None:
    """Write ``writes`` all-or-nothing and return once they are committed.

    Raises:
        Conflict: a compare-and-set write found the row changed (nothing written).
        sqlite3.Error: the database failed.
    """
    receipt = Receipt()
    await store.send(Commit(tuple(writes), receipt))
    # Shielded: once sent, the outcome must be waited for, or a cancelled caller
    # could not tell whether its writes landed. Commits take milliseconds.
    with trio.CancelScope(shield=True):
        await receipt.done.wait()
    assert receipt.result is not None
    receipt.result.unwrap()


class StoreActor(Actor):
    def __init__(self, path: Path, reader: StoreReader | None = None) -> None:
        self.path = path
        self.reader = reader
        """Closed when the store stops: it is the last actor to use the database."""
        self.writer: SqliteWriter | None = None
        self.pending: list[Commit] = []
        self.limiter = trio.CapacityLimiter(1)

    async def on_start(self) -> None:
        self.writer = await trio.to_thread.run_sync(SqliteWriter, self.path)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Commit):
            self.pending.append(message)
            return None
        return await super().handle(message)

    async def on_idle(self) -> None:
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
        batch, self.pending = self.pending, []
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
        for c, error in zip(batch, results, strict=True):
            c.receipt.settle(outcome.Value(None) if error is None else outcome.Error(error))
