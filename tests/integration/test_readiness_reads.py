"""``/health/ready`` says not ready while the reads fail for want of the
database, not only while a trivial read does: with a table locked past
``lock_timeout`` (a ``VACUUM FULL``, an operator's ``LOCK TABLE``), every read
of it was answered 503 ``database_unavailable`` while readiness said ready
(its ``SELECT 1`` touches no table), so a load balancer kept sending the
replica traffic it could not serve. Ready again, by itself, once the table
answers, with no request but the probes."""

from __future__ import annotations

import contextlib

import httpx
import psycopg
import trio

from tests.integration.test_commands import Operator
from tests.postgres import with_lock_timeout
from tests.server_process import ServerProcess


async def test_ready_is_503_naming_failing_reads_of_a_locked_table_and_200_once_it_answers(
        postgres_url: str) -> None:
    with ServerProcess(["--database", with_lock_timeout(postgres_url, "300ms")]) as server:
        server.wait_ready()
        operator = Operator(server, "kim", "acme")
        async with httpx.AsyncClient(timeout=20) as client:
            deployment = (await operator.create_deployment(client))["deployment_hash"]
            listing = operator.url(deployment, "/commands")
            assert (await client.get(listing, headers=operator.auth)).status_code == 200

            with contextlib.closing(psycopg.connect(postgres_url)) as locker:
                locker.execute("LOCK TABLE commands IN ACCESS EXCLUSIVE MODE")  # held until the rollback
                refused = await client.get(listing, headers=operator.auth)
                assert refused.status_code == 503, refused.text
                assert refused.json()["error"]["code"] == "database_unavailable"

                ready = await client.get(f"{server.base_url}/health/ready")
                assert ready.status_code == 503, ready.text
                body = ready.json()
                assert body["status"] == "not_ready" and body["services"]["store"] == "unavailable"
                assert "store: reads fail" in body["reason"] and "lock timeout" in body["reason"], body
                assert ready.headers["Retry-After"] == "5"
                # Still liveness: the process needs no restart.
                assert (await client.get(f"{server.base_url}/health")).status_code == 200
                locker.rollback()

            with trio.fail_after(30):  # the next look at the tables, at most every 5 s, finds them answering
                while (ready := await client.get(f"{server.base_url}/health/ready")).status_code != 200:
                    assert "store: reads fail" in ready.json()["reason"], ready.text
                    await trio.sleep(0.2)  # the next probe, as a balancer polls
            assert ready.json()["status"] == "ready"
            assert (await client.get(listing, headers=operator.auth)).status_code == 200
