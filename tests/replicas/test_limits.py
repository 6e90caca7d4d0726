"""The replay window and the per-agent rate limit hold across replicas."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.conftest import two_replicas
from tests.server_process import ServerProcess

PER_AGENT = 6
"""Requests a minute: a burst of 10, then one every 10 s (nothing refills during the test)."""
BURST = 10


@pytest.fixture
def limited(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_replicas(request, postgres_url, "--rate-per-agent", str(PER_AGENT)) as both:
        yield both


async def test_a_signed_request_replayed_to_the_other_replica_is_refused(
        limited: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = limited
    async with httpx.AsyncClient(timeout=30) as client:
        agent = await enroll(client, a, Operator(a, fresh("user"), fresh("tenant")))
        headers = agent.headers(b"")
        first = await client.get(f"{a.base_url}/api/v1/agent/config", headers=headers)
        assert first.status_code == 200, first.text
        replayed = await client.get(f"{b.base_url}/api/v1/agent/config", headers=headers)
        assert replayed.status_code == 401 and replayed.json()["error"]["code"] == "replayed_request", replayed.text
        fresh_request = await client.get(f"{b.base_url}/api/v1/agent/config", headers=agent.headers(b""))
        assert fresh_request.status_code == 200, fresh_request.text


async def test_an_agents_rate_limit_is_not_multiplied_by_the_replicas(
        limited: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = limited
    async with httpx.AsyncClient(timeout=30) as client:
        agent = await enroll(client, a, Operator(a, fresh("user"), fresh("tenant")))
        answers = []
        for n in range(3 * BURST):  # alternately to each replica, as a load balancer would send them
            server = (a, b)[n % 2]
            response = await client.get(f"{server.base_url}/api/v1/agent/config", headers=agent.headers(b""))
            answers.append(response.status_code)
        assert set(answers) <= {200, 429}
        # One budget per replica would let 2 x 10 through; shared, the burst
        # (and one more if the test took 10 s) is all.
        assert BURST <= answers.count(200) <= BURST + 1, answers
        assert answers[:BURST] == [200] * BURST, answers
