"""psycopg's async connection run by Trio (``_trio_connection``): queries,
pipelines and transactions without a worker thread, and what a lost
connection does to the shared limits that use it."""

from __future__ import annotations

import psycopg
import pytest
import trio

from trioscope.store._postgres_migrations import migrate
from trioscope.store._shared_limits import SharedLimits, SharedReplayIds
from trioscope.store._trio_connection import connect_trio


async def test_queries_and_a_pipelined_transaction_run_without_a_worker_thread(postgres_url: str,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    db = await connect_trio(postgres_url)
    try:
        monkeypatch.setattr(trio.to_thread, "run_sync", lambda *_, **__: pytest.fail("a worker thread was used"))
        assert await (await db.execute("SELECT %s::int + 1", (41,))).fetchone() == (42,)
        await db.execute("CREATE TEMPORARY TABLE t (n int, s text)")
        big = "x" * 100_000  # several socket buffers' worth in one pipeline: libpq waits to read and write at once
        async with db.pipeline(), db.transaction():
            for n in range(50):
                await db.execute("INSERT INTO t VALUES (%s, %s)", (n, big))
        assert await (await db.execute("SELECT count(*), sum(length(s)) FROM t")).fetchone() == (50, 5_000_000)
        assert db.pgconn.transaction_status == psycopg.pq.TransactionStatus.IDLE
    finally:
        db.discard()


async def test_a_limits_connection_lost_fails_its_batch_and_the_next_one_connects_again(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        migrate(admin)
        limits = SharedLimits(postgres_url)
        try:
            replay = SharedReplayIds(limits, 600.0)
            assert await replay.first_use("agent/1")
            [connection] = limits._idle
            admin.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
            with pytest.raises(psycopg.OperationalError):
                await replay.first_use("agent/2")
            assert limits._idle == []  # dropped, not handed to the next batch
            assert await replay.first_use("agent/3")
            assert not await replay.first_use("agent/1")
        finally:
            limits.close()
