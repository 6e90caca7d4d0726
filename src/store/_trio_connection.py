"""psycopg's async connection run by Trio: no worker thread per query.

psycopg does every exchange with the server as a generator over libpq's
non-blocking calls, which says when it needs the socket readable or writable;
its ``AsyncConnection`` waits for that with asyncio. ``TrioConnection`` waits
with Trio instead (``wait``, the method every exchange of the connection goes
through), so a query costs the loop a socket wait, not a hop to a worker
thread and back (about 80 µs of CPU per query against 190 µs through
``trio.to_thread``, measured here). Used for the shared limits' one-statement
batches (``_shared_limits``: 0.68x the CPU per batch). Not for the writer,
whose group commits stay in the store actor's worker thread: when they were
pipelined transactions, psycopg's async cursor, pipeline and transaction cost
more per statement than the hop saved (1.10x per commit, bench/RESULTS.md,
pg-owner section); most are one statement now (session 29), not measured
on this connection since.

Rules that come with it: one task at a time per connection (psycopg's own
lock is asyncio's, never waited on here: the caller serialises), and a query
cancelled midway leaves the connection unusable, so callers shield their
queries and drop a connection after any error. Connecting blocks (libpq's
connect, DNS and all): it runs once per connection in a worker thread.
"""

from __future__ import annotations

import functools
import select
from typing import Any

import psycopg
import trio
from psycopg import pq
from psycopg.abc import PQGen, RV
from psycopg.rows import TupleRow
from psycopg.waiting import Ready, Wait

from ._postgres import CONNECT_TIMEOUT, configure


class TrioConnection(psycopg.AsyncConnection[TupleRow]):
    """An autocommit ``AsyncConnection`` whose waits are Trio's (see the module docstring)."""

    async def wait(self, gen: PQGen[RV], interval: float = 0.0, timeout: float | None = None) -> RV:
        fd = self.pgconn.socket
        try:
            state = next(gen)
            while True:
                state = gen.send(await _ready(fd, state))
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's own result

    def discard(self) -> None:
        """Close at once (after an error: its state is unknown)."""
        self.pgconn.finish()


async def _ready(fd: int, state: int) -> Ready:
    if state == Wait.R:
        await trio.lowlevel.wait_readable(fd)
        return Ready.R
    if state == Wait.W:
        await trio.lowlevel.wait_writable(fd)
        return Ready.W
    # Both (libpq flushing a pipeline while results come back): whichever comes first.
    readable, writable, _ = select.select([fd], [fd], [], 0)
    if readable or writable:
        return Ready((Ready.R if readable else 0) | (Ready.W if writable else 0))
    ready: list[Ready] = []
    async with trio.open_nursery() as nursery:
        async def one(wait: Any, value: Ready) -> None:
            await wait(fd)
            ready.append(value)
            nursery.cancel_scope.cancel(reason="the socket is ready")
        nursery.start_soon(one, trio.lowlevel.wait_readable, Ready.R)
        nursery.start_soon(one, trio.lowlevel.wait_writable, Ready.W)
    return ready[0]


def _connect_blocking(url: str) -> pq.abc.PGconn:
    pgconn = pq.PGconn.connect(psycopg.conninfo.make_conninfo(url, connect_timeout=int(CONNECT_TIMEOUT)).encode())
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.get_error_message()
        pgconn.finish()
        raise psycopg.OperationalError(message)
    pgconn.nonblocking = 1
    return pgconn


async def connect_trio(url: str) -> TrioConnection:
    """An autocommit connection whose queries Trio runs (connecting in a worker thread).

    Raises:
        psycopg.OperationalError: the server cannot be reached or refuses the login.
    """
    pgconn = await trio.to_thread.run_sync(functools.partial(_connect_blocking, url))
    connection = TrioConnection(pgconn)
    connection._autocommit = True  # as ``connect(autocommit=True)`` sets it: a new session is idle
    configure(connection)  # type: ignore[arg-type]  # only its adapters are touched
    return connection
