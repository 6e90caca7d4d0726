"""One libpq connection whose statements Trio waits for: no worker thread, no cursor.

psycopg's ``pq`` module is its binding of libpq; a statement is sent with
libpq's non-blocking calls and Trio waits for the socket between them, so a
statement costs the loop a socket wait, not a hop to a worker thread and back.
psycopg's cursor (parameter adaptation, prepared-statement bookkeeping, row
makers) is left out on purpose: for the shared limits' one-statement batches
(``_shared_limits``), whose parameters are a few arrays of hex keys and numbers
and whose rows are four plain columns, it was half the CPU of a batch (a batch
of one replay id and one lease: ~330 µs through ``AsyncCursor.execute`` on this
connection's earlier form, ~160 µs here; bench/RESULTS.md, session 32).

So parameters go as text (``array_text`` builds an array literal of items that
need no quoting) and values come back as the text PostgreSQL sends (bytes, or
None for NULL). An error result raises psycopg's exception class for its
SQLSTATE, after the connection has read every result: it is then ready for the
next statement. A lost connection raises ``psycopg.OperationalError``.

Rules that come with it: one task at a time per connection (the caller
serialises), and a statement cancelled midway leaves the connection in an
unknown state, so callers shield their statements and drop a connection after
any error they do not expect. Connecting blocks (libpq's connect, DNS and all):
it runs once per connection in a worker thread.
"""

from __future__ import annotations

import functools
import select
from collections.abc import Iterable, Sequence

import psycopg
import psycopg.errors
import trio
from psycopg import pq

from ._postgres import connection_options

Row = tuple[bytes | None, ...]


class TrioConnection:
    """A connection in libpq's non-blocking mode (see the module docstring)."""

    def __init__(self, pgconn: pq.abc.PGconn) -> None:
        self._pgconn = pgconn
        self._prepared: set[bytes] = set()

    @property
    def backend_pid(self) -> int:
        return self._pgconn.backend_pid

    async def execute(self, sql: str, params: Sequence[bytes | None] = ()) -> list[Row]:
        """Run ``sql`` (placeholders ``$1``, ``$2``...) and return its rows."""
        self._pgconn.send_query_params(sql.encode(), params)
        return await self._answer()

    async def execute_prepared(self, name: bytes, sql: str, params: Sequence[bytes | None]) -> list[Row]:
        """As ``execute``, with ``sql`` prepared as ``name`` on this connection at its first use
        (PostgreSQL then parses and plans it once per connection, not per statement)."""
        if name not in self._prepared:
            self._pgconn.send_prepare(name, sql.encode())
            await self._answer()
            self._prepared.add(name)
        self._pgconn.send_query_prepared(name, params)
        return await self._answer()

    def discard(self) -> None:
        """Close at once (after an error: its state is unknown)."""
        self._pgconn.finish()

    def lost(self) -> bool:
        """Whether this idle connection is gone (its server restarted or closed it
        since its last statement), found without a round trip: an idle
        connection's socket has nothing to read, but the server's farewell (an
        error, or the end of the stream) when it went away. Read before a
        statement, so that one is not sent on a dead connection: whether it
        would have been carried out could not be told."""
        if self._pgconn.status != pq.ConnStatus.OK:
            return True  # found so before: libpq has let its socket go
        poller = select.poll()
        poller.register(self._pgconn.socket, select.POLLIN)
        # Its farewell (a notice) and the end of the stream may take a read each.
        for _ in range(4):
            if not poller.poll(0):
                break
            try:
                self._pgconn.consume_input()
            except psycopg.OperationalError:
                return True
        return self._pgconn.status != pq.ConnStatus.OK

    async def _answer(self) -> list[Row]:
        """Send what libpq holds, then read every result of the statement."""
        pgconn, fd = self._pgconn, self._pgconn.socket
        while pgconn.flush():  # a statement bigger than the socket's buffer: libpq sends it as it drains
            if await _ready(fd) & _READABLE:
                pgconn.consume_input()  # the server may answer (an error) before it read everything
        rows: list[Row] = []
        error: psycopg.Error | None = None
        while True:
            pgconn.consume_input()
            while pgconn.is_busy():
                await trio.lowlevel.wait_readable(fd)
                pgconn.consume_input()
            result = pgconn.get_result()
            if result is None:
                break
            if result.status == pq.ExecStatus.TUPLES_OK:
                columns = range(result.nfields)
                rows.extend(tuple(result.get_value(i, c) for c in columns) for i in range(result.ntuples))
            elif result.status != pq.ExecStatus.COMMAND_OK and error is None:
                error = _error(result, pgconn)
        if error is not None:
            raise error
        return rows


def array_text(items: Iterable[object]) -> bytes:
    """A PostgreSQL array literal of ``items`` as text: only for items whose text
    needs no quoting (hex digests, numbers)."""
    return ("{" + ",".join(map(str, items)) + "}").encode()


def _error(result: pq.abc.PGresult, pgconn: pq.abc.PGconn) -> psycopg.Error:
    """psycopg's exception for an error result (by its SQLSTATE), or for the connection's state."""
    message = (result.error_message or pgconn.error_message).decode(errors="replace").strip()
    sqlstate = result.error_field(pq.DiagnosticField.SQLSTATE)
    if sqlstate is None:
        return psycopg.OperationalError(message or "the connection to PostgreSQL was lost")
    try:
        cls = psycopg.errors.lookup(sqlstate.decode())
    except KeyError:
        cls = psycopg.DatabaseError
    return cls(message)


_READABLE = 1
_WRITABLE = 2


async def _ready(fd: int) -> int:
    """Whichever of readable and writable ``fd`` is first (both bits if both at once)."""
    # poll, not select: a server holding thousands of long-polls has descriptors beyond select's 1024.
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLOUT)
    ready = poller.poll(0)
    events = ready[0][1] if ready else 0
    if events & (select.POLLIN | select.POLLERR | select.POLLHUP):
        return _READABLE | (_WRITABLE if events & select.POLLOUT else 0)
    if events & select.POLLOUT:
        return _WRITABLE
    first: list[int] = []
    async with trio.open_nursery() as nursery:
        async def one(wait: object, value: int) -> None:
            await wait(fd)  # type: ignore[operator]  # one of trio's two socket waits
            first.append(value)
            nursery.cancel_scope.cancel(reason="the socket is ready")
        nursery.start_soon(one, trio.lowlevel.wait_readable, _READABLE)
        nursery.start_soon(one, trio.lowlevel.wait_writable, _WRITABLE)
    return first[0]


def _connect_blocking(url: str) -> pq.abc.PGconn:
    pgconn = pq.PGconn.connect(psycopg.conninfo.make_conninfo(url, **connection_options(url)).encode())
    if pgconn.status != pq.ConnStatus.OK:
        message = pgconn.get_error_message()
        pgconn.finish()
        raise psycopg.OperationalError(message)
    pgconn.nonblocking = 1
    return pgconn


async def connect_trio(url: str) -> TrioConnection:
    """A connection whose statements Trio runs (connecting in a worker thread).

    Raises:
        psycopg.OperationalError: the server cannot be reached or refuses the login.
    """
    return TrioConnection(await trio.to_thread.run_sync(functools.partial(_connect_blocking, url)))
