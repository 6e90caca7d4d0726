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
