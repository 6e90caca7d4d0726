"""Following what other replicas commit: one dedicated PostgreSQL connection
that ``LISTEN``s on the changes channel (``_changes``), for as long as the
server runs, reconnecting by itself.

The connection is opened and ``LISTEN`` issued in a worker thread (libpq
blocks there); from then on it is only read, driven by Trio: the task waits
until its socket is readable, lets libpq consume the input and takes the
notifications it parsed, without a thread and without polling any table.

A notification is sent only to connections listening when its transaction
commits, so whatever was committed while the feed was not connected is not
announced: after every (re)connection the follower is told ``Connected`` and
must read again what it holds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import NoReturn

import psycopg
import trio
from psycopg import pq
from psycopg.conninfo import make_conninfo

from trioscope.config import hide_passwords
from trioscope.runtime import Backoff

from ._changes import CHANGES_CHANNEL, Connected, FeedEvent, decode_change, origin_prefix
from ._postgres import connection_options, describe

log = logging.getLogger(__name__)

RETRY = Backoff(initial=0.5, maximum=10.0)
"""Seconds before each attempt to connect again while connections are refused."""
APPLICATION_NAME = "trioscope change feed"
"""How the connection shows in ``pg_stat_activity`` (with the server's pid)."""
GATHER = 0.003
"""Seconds the feed lets notifications gather after the socket woke it, before
it reads them all. Every replica hears every change, its own too (skipped
unparsed): at one wake per notification the wakes, reads and hand-overs were
most of what following the other replicas cost (2 workers end to end: the feed
~10% of a worker's CPU). A few ms on a delivery that takes ~10 ms across
replicas (bench/replica_delivery.py) buys one wake for several changes."""


def _connect(database: str) -> psycopg.Connection[tuple[object, ...]]:
    # TCP keepalives (``connection_options``): a connection whose server vanished
    # without closing it is found dead within ~25 s, not hours later.
    connection = psycopg.connect(make_conninfo(database, **connection_options(database),
                                               application_name=f"{APPLICATION_NAME} {os.getpid()}"),
                                 autocommit=True)
    try:
        connection.execute(f"LISTEN {CHANGES_CHANNEL}")
    except BaseException:
        connection.close()
        raise
    return connection


async def follow_changes(database: str, origin: str, deliver: Callable[[FeedEvent], Awaitable[None]]) -> NoReturn:
    """Hand ``deliver`` the changes other replicas commit (not those of ``origin``,
    this replica), and ``Connected`` after each (re)connection, for ever.

    Error handling: a refused connection is retried with backoff (0.5 s
    doubling to 10 s), a lost one at once; each is one log line when the state
    changes (lost, failing, back), never one per attempt. A payload that is
    not a change is logged and skipped. Cancel the task to stop it.
    """
    connected_before = False
    refused = 0
    """Connections refused since the last one made."""
    while True:
        try:
            connection = await trio.to_thread.run_sync(_connect, database)
        except psycopg.Error as exc:
            if not refused:
                log.warning("change feed: cannot connect to %s (%s); retrying every %.1f-%.0f s",
                            describe(database), _reason(exc, database), RETRY.initial, RETRY.maximum,
                            extra={"event": "change_feed_down"})
            refused += 1
            await trio.sleep(RETRY.delay_for(refused))
            continue
        refused = 0
        try:
            log.info("change feed: %s on %s", "listening again" if connected_before else "listening",
                     describe(database), extra={"event": "change_feed_up", "again": connected_before})
            await deliver(Connected(again=connected_before))
            connected_before = True
            await _read(connection.pgconn, origin, deliver)
        except psycopg.OperationalError as exc:
            log.warning("change feed: lost the connection to %s (%s); reconnecting", describe(database), _reason(exc, database),
                        extra={"event": "change_feed_lost"})
        finally:
            connection.close()


async def _read(pgconn: pq.abc.PGconn, origin: str, deliver: Callable[[FeedEvent], Awaitable[None]]) -> None:
    """Until the connection breaks (``OperationalError``)."""
    fd = pgconn.socket
    own = origin_prefix(origin)
    while True:
        await trio.lowlevel.wait_readable(fd)
        await trio.sleep(GATHER)
        pgconn.consume_input()  # raises OperationalError once the server is gone
        if pgconn.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError("the connection is broken")
        changes = []
        while (notify := pgconn.notifies()) is not None:
            if notify.extra.startswith(own):
                continue  # this replica's own change: not even parsed
            try:
                changes.append(decode_change(notify.extra))
            except ValueError as exc:
                log.warning("change feed: skipped a notification: %s", exc)
        if changes:
            await deliver(changes)


def _reason(exc: BaseException, database: str) -> str:
    """The error's first line, without the database's password (libpq may quote it)."""
    return hide_passwords(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, database)
