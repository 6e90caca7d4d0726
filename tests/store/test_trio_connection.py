"""A libpq connection run by Trio (``_trio_connection``): statements,
prepared statements and errors without a worker thread, and what a lost
connection does to the shared limits that use it."""

from __future__ import annotations

import os
import resource
import time

import psycopg
import psycopg.errors
import pytest
import trio

from tests.waiting import eventually
from trioscope.store._postgres_migrations import migrate
from trioscope.store._shared_limits import SharedLimits, SharedReplayIds
from trioscope.store._trio_connection import array_text, connect_trio


async def test_statements_run_without_a_worker_thread_and_rows_come_back_as_text(
        postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    db = await connect_trio(postgres_url)
    try:
        monkeypatch.setattr(trio.to_thread, "run_sync", lambda *_, **__: pytest.fail("a worker thread was used"))
        assert await db.execute("SELECT $1::int + 1, NULL::text, true", [b"41"]) == [(b"42", None, b"t")]
        await db.execute("CREATE TEMPORARY TABLE t (n int, s text)")
        big = b"x" * 30_000_000  # many socket buffers' worth in one statement: libpq sends it as the socket drains
        assert await db.execute("INSERT INTO t VALUES ($1::int, $2::text) RETURNING n", [b"1", big]) == [(b"1",)]
        sql = "SELECT sum(n), count(*) FROM unnest($1::int[]) AS a(n)"
        for numbers in ([1, 2, 3], [], [7]):
            rows = await db.execute_prepared(b"sum", sql, [array_text(numbers)])
            assert rows == [(str(sum(numbers)).encode() if numbers else None, str(len(numbers)).encode())]
        assert await db.execute("SELECT length(s) FROM t") == [(b"30000000",)]
    finally:
        db.discard()


async def test_a_connection_numbered_beyond_select_s_limit_sends_a_big_statement(postgres_url: str) -> None:
    """A server holding thousands of long-polls opens its PostgreSQL connections on descriptors above 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"this process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        db = await connect_trio(postgres_url)
        try:
            assert db._pgconn.socket > 1024
            big = b"y" * 30_000_000  # more than the socket takes at once: the send waits for it to drain
            assert await db.execute("SELECT length($1::text)", [big]) == [(b"30000000",)]
        finally:
            db.discard()
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_an_error_raises_its_psycopg_class_and_the_connection_serves_the_next_statement(
        postgres_url: str) -> None:
    db = await connect_trio(postgres_url)
    try:
        with pytest.raises(psycopg.errors.DivisionByZero, match="division by zero"):
            await db.execute("SELECT 1 / 0")
        with pytest.raises(psycopg.errors.UndefinedTable):
            await db.execute_prepared(b"missing", "SELECT * FROM no_such_table", [])
        assert await db.execute("SELECT 2") == [(b"2",)]
    finally:
        db.discard()


async def test_a_limits_connection_lost_while_idle_is_dropped_and_the_batch_goes_on_a_new_one(
        postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        migrate(admin)
        limits = SharedLimits(postgres_url)
        try:
            replay = SharedReplayIds(limits, 600.0)
            assert await replay.first_use("agent/1", time.time())
            [connection] = limits._idle
            admin.execute("SELECT pg_terminate_backend(%s)", (connection.backend_pid,))
            await eventually(lambda: _now(connection.lost()), deadline=10)  # its server's farewell arrived
            assert await replay.first_use("agent/2", time.time())  # not sent on the dead one: it was found gone first
            assert limits._idle != [connection] and len(limits._idle) == 1
            assert not await replay.first_use("agent/1", time.time())
        finally:
            limits.close()


async def _now(value: bool) -> bool:
    return value
