"""The command service seed's socket messages against a real server
(stacker-command-service §5.3, §14): its agent speaks ``/ws/agent`` with
``heartbeat``, ``command_progress`` and ``log_entry``, taken as its own agents'
requests, unsigned as the seed sends them on the socket its signed handshake
opened; ``/ws/user`` opens with ``initial_state`` (``connect_user``), the
user's deployments as ``GET .../deployments`` lists them, before any event."""

from __future__ import annotations

import json

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh, setup
from tests.integration.test_live_logs import entry, follow, until_pong, user_socket
from tests.server_process import ServerProcess

pytestmark = pytest.mark.usefixtures("database")


@pytest.fixture(scope="module")
def server(database):
    with ServerProcess() as process:
        yield process


async def test_command_progress_moves_the_command_and_reaches_its_user(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws, user_socket(server, operator) as events:
            created = await operator.command(client, agent.deployment_hash)
            command_id = (await ws.message("command"))["item"]["command_id"]
            assert command_id == created["command_id"]
            await ws.ws.send_message(json.dumps({"type": "heartbeat"}))  # not answered: the agent is heard
            await ws.ws.send_message(json.dumps({"type": "command_progress", "command_id": command_id,
                                                 "progress": 40, "stage": "pulling", "request_id": "r1"}))
            ack = await ws.message("ack")
            assert (ack["request_id"], ack["status"]) == ("r1", "accepted"), ack
            progress = [e for e in await until_pong(events) if e["type"] == "command_progress"]
            assert (progress[-1]["status"], progress[-1]["progress"], progress[-1]["stage"]) == (
                "executing", 40, "pulling")
            command = await operator.get(client, agent.deployment_hash, command_id)
            assert (command["status"], command["progress"]) == ("executing", {"percent": 40.0, "stage": "pulling"})


@pytest.mark.parametrize(("message", "says"), [
    ({"progress": 10}, "$.command_id"),
    ({"command_id": "c", "progress": 140}, "$.progress"),
    ({"command_id": "c", "progress": 10, "status": "completed"}, "$.status: not a field of command_progress"),
    ({"command_id": "c"}, "$.progress: a command_progress names progress, stage or both"),
], ids=["no-command", "progress-over-100", "an-outcome", "nothing-to-say"])
async def test_a_bad_command_progress_is_refused_naming_the_field(server: ServerProcess, message, says) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        _, agent = await setup(server, client)
        async with agent.socket() as ws:
            await ws.ws.send_message(json.dumps({"type": "command_progress", **message}))
            ack = await ws.message("ack")
            assert ack["status"] == "rejected" and ack["error"]["status"] == 400, ack
            assert ack["error"]["message"].startswith(says), ack
            await ws.ws.send_message('{"type":"ping"}')
            await ws.message("pong")  # the socket stays open


async def test_a_log_entry_of_a_follow_reaches_the_user_following_it(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws, user_socket(server, operator) as events:
            created = await follow(client, operator, agent.deployment_hash)
            assert created.status_code == 202, created.text
            command_id = (await ws.message("command"))["item"]["command_id"]
            await ws.ws.send_message(json.dumps({"type": "log_entry", "command_id": command_id, **entry("hello")}))
            assert (await ws.message("ack"))["status"] == "accepted"
            lines = [e for e in await until_pong(events) if e["type"] == "log_entry"]
            assert [(e["message"], e["command_id"]) for e in lines] == [("hello", command_id)]
            # The seed's entry names no follow: refused, saying what it lacks.
            await ws.ws.send_message(json.dumps({"type": "log_entry", **entry("lost")}))
            refused = await ws.message("ack")
            assert refused["status"] == "rejected" and refused["error"]["message"].startswith("$.command_id"), refused
            await ws.ws.send_message(json.dumps({"type": "log_entry", "command_id": command_id,
                                                 **entry("x"), "level": 7}))
            refused = await ws.message("ack")
            assert refused["error"]["message"].startswith("$.level"), refused


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
