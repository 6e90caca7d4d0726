"""``/ws/user`` opens with the command service seed's ``initial_state``
(stacker-command-service §5.3 ``connect_user``): the user's deployments as
``GET .../deployments`` lists them, before any event."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh, setup
from tests.integration.test_live_logs import user_socket
from tests.server_process import ServerProcess

pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture(scope="module")
def server(database):
    with ServerProcess() as process:
        yield process


async def test_the_first_frame_is_the_users_deployments_as_listed(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        listed = await client.get(f"{server.base_url}/api/v1/users/{operator.user_id}/deployments",
                                  headers=operator.auth)
        assert listed.status_code == 200, listed.text
        async with user_socket(server, operator) as ws:
            with trio.fail_after(10):
                first = json.loads(await ws.get_message())
            assert first["type"] == "initial_state"
            hashes = [d["deployment_hash"] for d in first["deployments"]]
            assert hashes == [d["deployment_hash"] for d in listed.json()["deployments"]] == [agent.deployment_hash]
            # Events follow it.
            created = await operator.command(client, agent.deployment_hash)
            with trio.fail_after(10):
                event = json.loads(await ws.get_message())
            assert (event["type"], event["command_id"]) == ("command_progress", created["command_id"])


async def test_a_user_with_no_deployment_is_told_so_first(server: ServerProcess) -> None:
    newcomer = Operator(server, fresh("user"), fresh("tenant"))
    async with user_socket(server, newcomer) as ws:
        with trio.fail_after(10):
            assert json.loads(await ws.get_message()) == {"type": "initial_state", "deployments": []}
