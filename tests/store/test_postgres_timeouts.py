"""Every connection the server makes to PostgreSQL bounds how long a statement
waits for a lock (``LOCK_TIMEOUT``) and how long it runs
(``STATEMENT_TIMEOUT``), unless the URL (or the role, ``PGOPTIONS``) set its
own: a locked table or a slow statement is refused for now (503
``database_unavailable``), not a request held for as long as it lasts.
Migrations are exempt (each step's transaction lifts both)."""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from trioscope.store import database_busy
from trioscope.store._postgres import LOCK_TIMEOUT, STATEMENT_TIMEOUT, connect
from trioscope.store._postgres_reader import PostgresReader
from trioscope.store._shared_limits import SharedLimits


def _timeouts(db: psycopg.Connection) -> tuple[str, str]:
    lock = db.execute("SHOW lock_timeout").fetchone()
    statement = db.execute("SHOW statement_timeout").fetchone()
    assert lock is not None and statement is not None
    return lock[0], statement[0]


def test_the_writer_and_the_readers_connect_with_both_timeouts(postgres_url: str) -> None:
    with contextlib.closing(connect(postgres_url)) as writer:
        assert _timeouts(writer) == (LOCK_TIMEOUT, STATEMENT_TIMEOUT)
    reader = PostgresReader(postgres_url, pool_size=1)
    try:
        with reader.pool.connection() as pooled:
            assert _timeouts(pooled) == (LOCK_TIMEOUT, STATEMENT_TIMEOUT)
    finally:
        reader.close()


async def test_the_shared_limits_connect_with_both_timeouts(postgres_url: str) -> None:
    limits = SharedLimits(postgres_url, pool_size=1)
    db = await limits._connect()
    try:
        assert [bytes(row[0]).decode() for row in await db.execute("SHOW lock_timeout")] == [LOCK_TIMEOUT]
        assert [bytes(row[0]).decode() for row in await db.execute("SHOW statement_timeout")] == [STATEMENT_TIMEOUT]
    finally:
        db.discard()
        limits.close()


def test_a_urls_own_timeouts_are_kept(postgres_url: str) -> None:
    separator = "&" if "?" in postgres_url else "?"
    own = f"{postgres_url}{separator}options=-c%20statement_timeout%3D2min%20-c%20lock_timeout%3D1s"
    if "options=" in postgres_url:  # a scratch schema's search_path is given as options already
        own = postgres_url.replace("options=", "options=-c%20statement_timeout%3D2min%20-c%20lock_timeout%3D1s%20", 1)
    with contextlib.closing(connect(own)) as db:
        assert _timeouts(db) == ("1s", "2min")


def test_a_statement_past_its_time_is_the_database_refusing_for_now(postgres_url: str) -> None:
    with contextlib.closing(connect(postgres_url)) as db:
        db.execute("SET statement_timeout = '50ms'")  # as STATEMENT_TIMEOUT, shorter
        with pytest.raises(psycopg.Error) as refused:
            db.execute("SELECT pg_sleep(5)")
        assert database_busy(refused.value)
