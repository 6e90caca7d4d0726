"""A tenant's and a deployment's quotas count what every replica holds: creates
racing through both replicas are refused past the limit as through one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh
from tests.replicas.cluster import operator_on
from tests.replicas.conftest import two_replicas
from tests.server_process import ServerProcess

OPEN = 5
DEPLOYMENTS = 3


@pytest.fixture
def replicas(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_replicas(request, postgres_url, "--max-queued-commands", str(OPEN),
                      "--max-deployments", str(DEPLOYMENTS)) as both:
        yield both


async def _at_once(posts: list[tuple[str, dict[str, str], dict[str, object]]]) -> list[httpx.Response]:
    answers: list[httpx.Response] = []
    async with httpx.AsyncClient(timeout=30) as client:
        async def post(url: str, headers: dict[str, str], body: dict[str, object]) -> None:
            answers.append(await client.post(url, json=body, headers=headers))

        async with trio.open_nursery() as nursery:
            for url, headers, body in posts:
                nursery.start_soon(post, url, headers, body)
    return answers


def _codes(answers: list[httpx.Response]) -> list[int]:
    for response in answers:
        if response.status_code == 403:
            assert response.json()["error"]["code"] == "quota_exceeded", response.text
    return sorted(response.status_code for response in answers)


async def test_commands_created_through_both_replicas_at_once_stop_at_the_deployments_quota(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    operator = Operator(a, fresh("user"), fresh("tenant"))
    async with httpx.AsyncClient(timeout=30) as client:
        deployment_hash = (await operator.create_deployment(client))["deployment_hash"]
    sides = [operator_on(operator, server) for server in (a, b)]
    answers = await _at_once([(side.url(deployment_hash, "/commands"), side.auth, {"type": "restart"})
                              for _ in range(8) for side in sides])
    assert _codes(answers) == [202] * OPEN + [403] * (16 - OPEN)
    async with httpx.AsyncClient(timeout=30) as client:
        for side in sides:
            listed = await client.get(side.url(deployment_hash, "/commands"), headers=side.auth)
            assert len(listed.json()["commands"]) == OPEN


async def test_deployments_created_through_both_replicas_at_once_stop_at_the_tenants_quota(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    operator = Operator(a, fresh("user"), fresh("tenant"))
    sides = [operator_on(operator, server) for server in (a, b)]
    answers = await _at_once([(side.url(), side.auth, {}) for _ in range(4) for side in sides])
    assert _codes(answers) == [201] * DEPLOYMENTS + [403] * (8 - DEPLOYMENTS)


async def test_commands_through_both_replicas_stop_at_the_parameter_bytes_quota_with_403s(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    """Refused by the database's count, the bytes in use came back as a Decimal
    (PostgreSQL's sum of a bigint) and the refusal as a 500 (a reviewer's)."""
    with two_replicas(request, postgres_url, "--max-open-parameter-bytes", "64KiB") as (a, b):
        operator = Operator(a, fresh("user"), fresh("tenant"))
        async with httpx.AsyncClient(timeout=30) as client:
            deployment_hash = (await operator.create_deployment(client))["deployment_hash"]
        sides = [operator_on(operator, server) for server in (a, b)]
        body = {"type": "restart", "parameters": {"pad": "x" * 12_000}}  # ~12 KB: 5 fit in 64 KiB
        answers = await _at_once([(side.url(deployment_hash, "/commands"), side.auth, body)
                                  for _ in range(8) for side in sides])
        assert _codes(answers) == [202] * 5 + [403] * 11
        refused = next(r.json()["error"] for r in answers if r.status_code == 403)
        assert refused["details"]["setting"] == "commands.max_open_parameter_bytes"


async def test_commands_through_both_replicas_stop_at_the_tenants_stored_bytes(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    """What a tenant's commands take is the database's count, shared by both
    replicas: creates racing through both are refused once it is reached, as
    through one (a tenant filled the disk for every tenant: a reviewer's)."""
    with two_replicas(request, postgres_url, "--max-tenant-command-bytes", "64KiB") as (a, b):
        operator = Operator(a, fresh("user"), fresh("tenant"))
        async with httpx.AsyncClient(timeout=30) as client:
            hashes = [(await operator.create_deployment(client))["deployment_hash"] for _ in range(2)]
        sides = [operator_on(operator, server) for server in (a, b)]
        # ~15.8 KB a command as stored: four take 63 KB, under 64 KiB; the fifth takes it over.
        body = {"type": "restart", "parameters": {"pad": "x" * 15_000}}
        answers = await _at_once([(side.url(deployment_hash, "/commands"), side.auth, body)
                                  for _ in range(4) for side in sides for deployment_hash in hashes])
        assert _codes(answers) == [202] * 5 + [403] * 11
        refused = next(r.json()["error"] for r in answers if r.status_code == 403)
        assert refused["details"]["setting"] == "tenants.max_command_bytes"
