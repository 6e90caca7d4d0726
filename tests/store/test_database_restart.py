"""The shared limits' connections when their PostgreSQL server restarts (a
cluster of the test's own, stopped as by a crash): idle connections left dead
are found before a batch is sent on one, and replaced."""

from __future__ import annotations

import psycopg
import trio

from tests.store.own_postgres import OwnPostgres, own_postgres
from trioscope.store._postgres_migrations import migrate
from trioscope.store._shared_limits import SharedLimits
from trioscope.store._trio_connection import connect_trio

__all__ = ["own_postgres"]  # the fixture


async def test_an_idle_connection_whose_server_restarted_is_found_lost_without_a_round_trip(
        own_postgres: OwnPostgres) -> None:
    db = await connect_trio(own_postgres.url)
    try:
        assert await db.execute("SELECT 1") == [(b"1",)]
        assert not db.lost()
        own_postgres.stop()
        own_postgres.start()
        assert db.lost()
    finally:
        db.discard()


async def test_the_first_check_after_a_database_restart_succeeds_on_a_new_connection(
        own_postgres: OwnPostgres) -> None:
    with psycopg.connect(own_postgres.url, autocommit=True) as setup:
        migrate(setup)
    limits = SharedLimits(own_postgres.url)
    try:
        # Four checks at once: four connections, idle afterwards.
        async with trio.open_nursery() as nursery:
            for n in range(4):
                nursery.start_soon(limits.first_use, f"before-{n}", 600.0)
        own_postgres.stop()
        own_postgres.start()
        assert await limits.first_use("after", 600.0)
        assert not await limits.first_use("after", 600.0)  # recorded once, on the new connection
    finally:
        limits.close()
