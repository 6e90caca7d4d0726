"""A table of the store locked by something else (a ``VACUUM FULL``, a
``REINDEX``, an operator's ``LOCK TABLE``): requests that meet it are refused
503 ``database_unavailable`` once the server's lock timeout passes, while the
lock is still held, not answered when it goes (87 s for a reviewer's lock)."""

from __future__ import annotations

import contextlib

import httpx
import psycopg
import pytest

from tests.integration.test_commands import Operator, fresh
from tests.replicas.conftest import replica


@pytest.mark.parametrize("table", ["rate_buckets", "commands"])  # every user's request; a listing
async def test_a_locked_table_is_503_while_it_is_locked_not_a_request_held_as_long(
        postgres_url: str, table: str) -> None:
    with replica(postgres_url) as server:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        async with httpx.AsyncClient(timeout=30) as client:  # the lock is held for longer than this
            deployment = await operator.create_deployment(client)
            url = operator.url(deployment["deployment_hash"], "/commands")
            with contextlib.closing(psycopg.connect(postgres_url)) as locker:
                locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # held until the rollback
                answer = await client.get(url, headers=operator.auth)
                assert answer.status_code == 503, answer.text
                assert answer.json()["error"]["code"] == "database_unavailable"
                assert answer.headers["Retry-After"] == "2"
                locker.rollback()
            listed = await client.get(url, headers=operator.auth)
            assert listed.status_code == 200, listed.text


async def test_a_queue_that_cannot_start_for_a_locked_table_is_503_database_unavailable(postgres_url: str) -> None:
    """A deployment's command queue reads its open commands as it starts: a
    start that met the lock is the database refusing for now (503
    ``database_unavailable``, said in one line), not a component restarting
    (``unavailable``) with a traceback in the log."""
    with replica(postgres_url) as server:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await operator.create_deployment(client)
            url = operator.url(deployment["deployment_hash"], "/commands")
            with contextlib.closing(psycopg.connect(postgres_url)) as locker:
                locker.execute("LOCK TABLE commands IN ACCESS EXCLUSIVE MODE")
                answer = await client.post(url, json={"type": "restart", "parameters": {}}, headers=operator.auth)
                locker.rollback()
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == "database_unavailable"
            assert answer.headers["Retry-After"] == "2"
            created = await client.post(url, json={"type": "restart", "parameters": {}}, headers=operator.auth)
            assert created.status_code == 202, created.text
        assert "Traceback" not in server.stderr()
