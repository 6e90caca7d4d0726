"""App statuses across replicas: one kept through A is told to the users on B
and shown by B; statuses of new apps posted through both at once stop at the
deployment's limit, as through one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import events_until, on, operator_on, user_events
from tests.replicas.conftest import two_replicas
from tests.server_process import ServerProcess

MAX_APPS = 3


@pytest.fixture
def replicas(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_replicas(request, postgres_url, "--max-apps-per-deployment", str(MAX_APPS)) as both:
        yield both


async def test_a_status_kept_through_a_is_told_to_users_on_b_and_apps_stop_at_the_limit_across_both(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        async with user_events(b, operator) as heard_on_b:
            response = await agent.update_app_status(client, "web", "stopped", ["exited"])
            assert response.status_code == 200, response.text
            events = await events_until(heard_on_b, lambda e: e["type"] == "app_status")
        assert {k: events[-1][k] for k in ("deployment_hash", "app_code", "status")} == {
            "deployment_hash": agent.deployment_hash, "app_code": "web", "status": "stopped"}
        via_b = operator_on(operator, b)
        shown = (await client.get(via_b.url(agent.deployment_hash), headers=via_b.auth)).json()["apps"]
        assert [(app["app_code"], app["status"], app["logs"]) for app in shown] == [("web", "stopped", ["exited"])]

        answers: list[int] = []

        async def post(server: ServerProcess, app_code: str) -> None:
            answers.append((await on(agent, server).update_app_status(client, app_code)).status_code)

        async with trio.open_nursery() as nursery:
            for i in range(4):
                for name, server in (("a", a), ("b", b)):
                    nursery.start_soon(post, server, f"app-{name}-{i}")
        assert sorted(answers) == [200] * (MAX_APPS - 1) + [409] * (8 - MAX_APPS + 1)
        shown = (await client.get(via_b.url(agent.deployment_hash), headers=via_b.auth)).json()["apps"]
        assert len(shown) == MAX_APPS
