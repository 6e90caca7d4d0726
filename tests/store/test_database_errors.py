"""Which database errors mean the database is away (``database_down``: the
connection is gone) or refusing statements for now (``database_busy``), and
which are neither (a bug, a server that will not heal by waiting): the
errors PostgreSQL and psycopg really raise, and the classes around them."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import psycopg
import pytest
from psycopg_pool import PoolTimeout

from trioscope.store import Unavailable, database_busy, database_down

e = psycopg.errors

DOWN: list[Callable[[], BaseException]] = [
    lambda: Unavailable("cannot connect to postgresql://127.0.0.1:5432/test: connection refused"),
    lambda: psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
    lambda: e.ConnectionTimeout("connection timeout expired"),
    lambda: PoolTimeout("couldn't get a connection after 10.00 sec"),
    lambda: e.ConnectionFailure("connection failure"),
    lambda: e.AdminShutdown("terminating connection due to administrator command"),
    lambda: e.CrashShutdown("terminating connection because of crash of another server process"),
    lambda: e.CannotConnectNow("the database system is starting up"),
    lambda: e.IdleSessionTimeout("terminating connection due to idle-session timeout"),
]
BUSY: list[Callable[[], BaseException]] = [
    lambda: e.QueryCanceled("canceling statement due to statement timeout"),
    lambda: e.LockNotAvailable("canceling statement due to lock timeout"),
    lambda: e.DeadlockDetected("deadlock detected"),
    lambda: e.SerializationFailure("could not serialize access due to concurrent update"),
    lambda: e.TooManyConnections("sorry, too many clients already"),
    lambda: e.DiskFull("could not extend file: No space left on device"),
]
NEITHER: list[Callable[[], BaseException]] = [
    lambda: TypeError("not a write here"),
    lambda: sqlite3.OperationalError("database or disk is full"),  # SQLite is a file of this process
    lambda: e.StatementTooComplex("stack depth limit exceeded"),
    lambda: e.InvalidPassword("password authentication failed"),  # after a connection: never heals by waiting
    lambda: e.IoError("could not read block"),
    lambda: e.PipelineAborted("pipeline aborted"),
    lambda: e.UndefinedTable('relation "commands" does not exist'),
]


@pytest.mark.parametrize("error", DOWN)
def test_a_connection_that_cannot_be_made_or_broke_is_down(error: Callable[[], BaseException]) -> None:
    assert database_down(error()) and not database_busy(error())


@pytest.mark.parametrize("error", BUSY)
def test_a_statement_refused_for_now_is_busy_not_down(error: Callable[[], BaseException]) -> None:
    assert database_busy(error()) and not database_down(error())


@pytest.mark.parametrize("error", NEITHER)
def test_other_errors_are_neither(error: Callable[[], BaseException]) -> None:
    assert not database_down(error()) and not database_busy(error())


def test_what_postgresql_really_raises(postgres_url: str) -> None:
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect("postgresql://trioscope@127.0.0.1:1/nowhere", connect_timeout=2)
    assert database_down(refused.value)
    with psycopg.connect(postgres_url, autocommit=True) as db, psycopg.connect(postgres_url, autocommit=True) as admin:
        db.execute("SET statement_timeout = 1")
        with pytest.raises(psycopg.OperationalError) as timed_out:
            db.execute("SELECT pg_sleep(1)")
        assert database_busy(timed_out.value) and not database_down(timed_out.value)
        admin.execute("SELECT pg_terminate_backend(%s)", (db.info.backend_pid,))
        with pytest.raises(psycopg.OperationalError) as cut:
            db.execute("SELECT 1")
        assert database_down(cut.value)
        with pytest.raises(psycopg.OperationalError) as closed:
            db.execute("SELECT 1")
        assert database_down(closed.value)
