"""Reads that fail for want of the database stand failed, for readiness,
until a read of every table they use works: a read of another table working
says nothing of the locked one, and a replica out of a balancer's rotation
gets no reads that would find them working again."""

from __future__ import annotations

import contextlib

import psycopg
import pytest
import trio

from tests.postgres import with_lock_timeout
from trioscope.domain.rates import StandingFailure
from trioscope.store import StoreReader, database_busy, open_writer


async def test_reads_of_a_locked_table_fail_until_a_look_at_every_table_finds_it_answering(
        postgres_url: str) -> None:
    open_writer(postgres_url).close()
    reader = StoreReader(with_lock_timeout(postgres_url, "100ms"))
    reader._failing = StandingFailure(0.0)  # every ask looks again (READS_RECHECK apart in a server)
    try:
        assert await reader.reads_failing() is None
        with contextlib.closing(psycopg.connect(postgres_url)) as locker:
            locker.execute("LOCK TABLE audit IN ACCESS EXCLUSIVE MODE")  # held until the rollback
            with pytest.raises(psycopg.Error) as refused:
                await reader.audit("t", action=None, actor=None, since=None, until=None, limit=10, offset=0)
            assert database_busy(refused.value)
            assert await reader.deployments() == []  # another table answers: the failure stands
            with trio.fail_after(10):
                failing = await reader.reads_failing()  # the look at every table finds audit locked
            assert failing is not None and "lock timeout" in failing and "audit" in failing
            locker.rollback()
        assert await reader.reads_failing() is None  # the look finds every table answering
        assert await reader.reads_failing() is None
    finally:
        reader.close()


async def test_a_read_cut_short_by_its_statement_timeout_leaves_reads_working(postgres_url: str) -> None:
    """One slow read past its ``statement_timeout`` (or cancelled: its client
    went away) says nothing of the others: a client asking such reads must not
    take the replica out of a balancer's rotation."""
    open_writer(postgres_url).close()
    url = with_lock_timeout(with_lock_timeout(postgres_url, "30s"), "100ms", setting="statement_timeout")
    reader = StoreReader(url)
    reader._failing = StandingFailure(0.0)
    try:
        with contextlib.closing(psycopg.connect(postgres_url)) as locker:
            locker.execute("LOCK TABLE audit IN ACCESS EXCLUSIVE MODE")  # the read waits past its statement_timeout
            with pytest.raises(psycopg.Error) as cut:
                await reader.audit("t", action=None, actor=None, since=None, until=None, limit=10, offset=0)
            assert cut.value.sqlstate == "57014"
            assert await reader.reads_failing() is None
            locker.rollback()
    finally:
        reader.close()
