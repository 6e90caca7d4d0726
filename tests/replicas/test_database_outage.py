"""A replica whose PostgreSQL goes away for a few seconds (stopped as by a
crash, a cluster of the test's own) and comes back: it stays up, answers
what needs the database with 503 ``database_unavailable`` and Retry-After
meanwhile (never 500), reconnects by itself (one log line each way), and
the first requests after the database is back succeed, also when nothing
touched its connections while the database was away."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh
from tests.replicas.conftest import REPLICA_ARGS
from tests.server_process import ServerProcess
from tests.store.own_postgres import OwnPostgres, own_postgres
from tests.waiting import eventually

__all__ = ["own_postgres"]  # the fixture

OUTAGE_ANSWERS = {(503, "database_unavailable"), (504, "outcome_unknown")}
"""The first write on a connection the outage cut may have been under way: it is
not sent again blindly (``outcome_unknown``); the others are refused at once."""


@pytest.fixture
def replica(own_postgres: OwnPostgres) -> Iterator[ServerProcess]:
    with ServerProcess(["--database", own_postgres.url, *REPLICA_ARGS]) as server:
        yield server


def _code(response: httpx.Response) -> tuple[int, str | None]:
    return response.status_code, response.json().get("error", {}).get("code") if response.status_code >= 400 else None


async def test_a_database_outage_gets_503_keeps_the_process_and_heals_by_itself(
        replica: ServerProcess, own_postgres: OwnPostgres) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator = Operator(replica, fresh("user"), fresh("tenant"))
        deployment = (await operator.create_deployment(client))["deployment_hash"]
        await operator.command(client, deployment)
        commands = operator.url(deployment, "/commands")

        await trio.to_thread.run_sync(own_postgres.stop)
        answers: list[tuple[int, str | None]] = []

        async def refused_at_once() -> bool:
            response = await client.post(commands, json={"type": "restart"}, headers=operator.auth)
            answers.append(_code(response))
            return _code(response) == (503, "database_unavailable") and response.headers.get("Retry-After") == "2"

        await eventually(refused_at_once, deadline=30)
        for _ in range(10):  # a burst of refusals: more than the root's restart intensity ever allowed
            await refused_at_once()
        listing = await client.get(commands, headers=operator.auth)
        answers.append(_code(listing))
        assert set(answers) <= OUTAGE_ANSWERS, answers
        assert _code(listing) == (503, "database_unavailable") and listing.headers["Retry-After"] == "2"
        assert replica.proc is not None and replica.proc.poll() is None, replica.stderr()[-3000:]

        await trio.to_thread.run_sync(own_postgres.start)

        async def accepted() -> bool:
            response = await client.post(commands, json={"type": "restart"}, headers=operator.auth)
            assert _code(response) in {(202, None), *OUTAGE_ANSWERS}, response.text
            return response.status_code == 202

        await eventually(accepted, deadline=30)
        log = replica.stderr()
        assert log.count("store: lost the database") == 1, log[-3000:]
        assert log.count("store: connected to the database") == 1, log[-3000:]
        # The requests refused meanwhile: one warning of them, the rest at debug level (a
        # role out of connections refused reads alone, and only a debug line said why).
        refusals = [line for line in log.splitlines() if "the database is unavailable" in line]
        assert len(refusals) == 1 and " WARNING " in refusals[0], refusals
        assert "the root supervisor gave up" not in log and "Traceback" not in log, log[-3000:]


async def test_the_first_requests_after_an_unnoticed_outage_succeed(
        replica: ServerProcess, own_postgres: OwnPostgres) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator = Operator(replica, fresh("user"), fresh("tenant"))
        deployment = (await operator.create_deployment(client))["deployment_hash"]
        first = await operator.command(client, deployment)
        # Nothing asks the database while it is away: every connection the
        # replica holds is dead when it comes back, unknown to it.
        await trio.to_thread.run_sync(own_postgres.stop)
        await trio.to_thread.run_sync(own_postgres.start)

        created = await client.post(operator.url(deployment, "/commands"), json={"type": "restart"},
                                    headers=operator.auth)
        assert created.status_code == 202, created.text
        listing = await client.get(operator.url(deployment, "/commands"), headers=operator.auth)
        assert listing.status_code == 200, listing.text
        ids = {item["id"] for item in listing.json()["commands"]}
        assert ids == {first["command_id"], created.json()["command_id"]}  # written once, not twice
        assert "the root supervisor gave up" not in replica.stderr()
