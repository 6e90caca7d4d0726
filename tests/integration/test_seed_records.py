"""The command service's records and events as its seed names them
(stacker-command-service 3.3, 4.1), against a real server: the ``agent_status``
event ``{status, last_seen, metrics}``; the Agent ``{id, status: online |
offline, last_heartbeat, connection_info}`` and Deployment ``{id, agent_id,
last_seen_at}`` beside the fields of earlier versions; a command's
``metadata`` stored and shown; no result is 0 bytes; a 204 has no content type."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import quote

import attrs
import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh, setup
from tests.server_process import ServerProcess
from tests.waiting import eventually

pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


def rfc3339(text: Any) -> datetime:
    """``text`` as a time, if it is RFC 3339 in UTC (``...Z``); fails the test otherwise."""
    assert isinstance(text, str) and text.endswith("Z"), text
    return datetime.fromisoformat(text)


def user_socket(server: ServerProcess, operator: Operator) -> Any:
    token = operator.auth["Authorization"].removeprefix("Bearer ")
    url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}?token={token}"
    return open_websocket_url(url)


async def next_event(ws: Any, kind: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind:
                return event  # type: ignore[no-any-return]


async def deployment(client: httpx.AsyncClient, operator: Operator, deployment_hash: str,
                     query: str = "") -> dict[str, Any]:
    response = await client.get(operator.url(deployment_hash) + query, headers=operator.auth)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


# ---- agent_status events (3.3) --------------------------------------------------------------

async def test_agent_status_events_have_the_seeds_status_an_rfc3339_last_seen_and_metrics(
        server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        admin = Operator(server, fresh("user"), fresh("tenant"), "ADMIN")
        async with user_socket(server, admin) as ws:
            agent = await enroll(client, server, admin)
            enrolled = await next_event(ws, "agent_status")
            response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                         headers=admin.auth)
            assert response.status_code == 200, response.text
            retired = await next_event(ws, "agent_status")
    assert (enrolled["agent_id"], enrolled["status"], enrolled["enrollment_status"]) == (
        agent.agent_id, "online", "active")
    assert (retired["agent_id"], retired["status"], retired["enrollment_status"]) == (
        agent.agent_id, "offline", "decommissioned")
    for event in (enrolled, retired):
        assert event["deployment_hash"] == agent.deployment_hash
        assert event["metrics"] == {}
        rfc3339(event["last_seen"])
    assert rfc3339(retired["last_seen"]) >= rfc3339(enrolled["last_seen"])


async def test_the_user_socket_takes_a_bearer_token_in_its_query_string(server: ServerProcess) -> None:
    """"Bearer token in query string" (3.3): ``?token=Bearer <t>`` as well as ``?token=<t>``;
    a socket with none is told where a token may go."""
    operator = Operator(server, fresh("user"), fresh("tenant"), "OPERATOR")
    base = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}"
    async with open_websocket_url(f"{base}?token={quote(operator.auth['Authorization'])}") as ws:
        await next_event(ws, "initial_state")
    async with httpx.AsyncClient() as client:
        refused = await client.get(base.replace("ws://", "http://"), headers={
            "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert refused.status_code == 401 and "?token=" in refused.json()["error"]["message"], refused.text


# ---- Agent and Deployment records (4.1) -----------------------------------------------------

async def test_a_deployment_and_its_agent_carry_the_seeds_fields(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        answered: list[httpx.Response] = []

        async def hold() -> None:
            answered.append(await agent.wait(client, timeout=30))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold)

            async def held() -> dict[str, Any] | None:
                shown = (await deployment(client, operator, agent.deployment_hash))["agents"][0]
                return shown if shown["connection_info"]["transport"] == "long_poll" else None

            polling = await eventually(held, deadline=10)
            created = await operator.command(client, agent.deployment_hash)  # answers the poll
        body = await deployment(client, operator, agent.deployment_hash)
    assert answered[0].status_code == 200, answered[0].text
    assert (body["id"], body["deployment_hash"]) == (agent.deployment_hash, agent.deployment_hash)
    assert body["agent_id"] == agent.agent_id
    assert rfc3339(body["last_seen_at"]) == rfc3339(body["agents"][0]["last_heartbeat"])
    (shown,) = body["agents"]
    assert (shown["id"], shown["agent_id"]) == (agent.agent_id, agent.agent_id)
    assert (shown["status"], shown["enrollment_status"]) == ("online", "active")
    assert shown["last_heartbeat"] == shown["last_seen"] and rfc3339(shown["last_heartbeat"])
    assert polling["connection_info"] == {"transport": "long_poll", "ip_address": "127.0.0.1", "latency_ms": None,
                                          "last_command_id": None, "websockets": 0, "long_polls": 1}
    assert shown["connection_info"]["transport"] is None  # its poll was answered: it holds none now
    assert shown["connection_info"]["last_command_id"] == created["command_id"]


async def test_an_agent_on_its_socket_shows_its_pong_latency_and_the_command_sent_to_it() -> None:
    with ServerProcess(["--ws-ping-interval", "1s"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            async with agent.socket() as channel:
                await channel.message("ping")  # answered
                created = await operator.command(client, agent.deployment_hash)
                sent = await channel.message("command")
                assert sent["item"]["command_id"] == created["command_id"]

                async def shown() -> dict[str, Any] | None:
                    info = (await deployment(client, operator, agent.deployment_hash))["agents"][0]["connection_info"]
                    return info if info["latency_ms"] is not None and info["last_command_id"] else None

                info = await eventually(shown, deadline=10)
    assert info["transport"] == "websocket"
    assert isinstance(info["latency_ms"], float) and info["latency_ms"] >= 0
    assert info["last_command_id"] == created["command_id"]


async def test_a_retired_agent_is_offline_with_no_connection_and_its_deployment_has_no_agent(
        server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        admin = attrs.evolve(operator, role="ADMIN")
        response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                     headers=admin.auth)
        assert response.status_code == 200, response.text
        answered = response.json()
        body = await deployment(client, operator, agent.deployment_hash, "?retired=true")
        listed = (await client.get(operator.url(), headers=operator.auth)).json()["deployments"]
    (retired,) = body["retired_agents"]
    for shown in (answered, retired):
        assert (shown["id"], shown["status"], shown["enrollment_status"]) == (agent.agent_id, "offline",
                                                                             "decommissioned")
        assert shown["connection_info"] is None and "system_info" not in shown
        rfc3339(shown["last_heartbeat"])
    assert body["agents"] == [] and body["agent_id"] is None
    rfc3339(body["last_seen_at"])  # when its retired agent was last heard from
    assert [(d["id"], d["agent_id"]) for d in listed] == [(agent.deployment_hash, None)]


async def test_an_agent_silent_past_the_heartbeat_timeout_is_offline_and_online_again_when_heard() -> None:
    with ServerProcess(["--heartbeat-timeout", "1s"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)

            async def status() -> str:
                return (await deployment(client, operator, agent.deployment_hash))["agents"][0]["status"]  # type: ignore[no-any-return]

            async def offline() -> bool:
                return await status() == "offline"

            await eventually(offline, deadline=20)

            async def online() -> bool:
                return await status() == "online"

            async with trio.open_nursery() as nursery:
                nursery.start_soon(agent.wait, client, 30)  # heard from while its poll is held (1 s would pass)
                await eventually(online)
                nursery.cancel_scope.cancel()


# ---- a command's metadata (4.1) ---------------------------------------------------------------

async def test_a_commands_metadata_is_stored_and_shown(server: ServerProcess) -> None:
    metadata = {"rollback_on_failure": True, "estimated_duration": 60, "checkpoint_support": True}
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        created = await operator.command(client, agent.deployment_hash, type="backup", parameters={},
                                         metadata=metadata)
        plain = await operator.command(client, agent.deployment_hash, type="backup")
        shown = await operator.get(client, agent.deployment_hash, created["command_id"])
        listed = (await client.get(operator.url(agent.deployment_hash, "/commands"),
                                   headers=operator.auth)).json()["commands"]
        polled = await agent.poll(client, timeout=5)
        confirming = await operator.command(client, agent.deployment_hash,
                                            metadata={"requires_confirmation": True})
    assert shown["metadata"] == {"requires_confirmation": False, **metadata, "cancel_requested": False}
    assert {c["command_id"]: c["metadata"] for c in listed}[created["command_id"]] == shown["metadata"]
    assert {c["command_id"]: c["metadata"] for c in listed}[plain["command_id"]] == {
        "requires_confirmation": False, "rollback_on_failure": False, "estimated_duration": None,
        "checkpoint_support": False, "cancel_requested": False}
    assert polled is not None and polled.command_id == created["command_id"]
    assert confirming["status"] == "awaiting_confirmation"


@pytest.mark.parametrize(("metadata", "path"), [
    ({"estimated_duration": "60"}, "$.metadata.estimated_duration"),
    ({"estimated_duration": -1}, "$.metadata.estimated_duration"),
    ({"estimated_duration": 1.5}, "$.metadata.estimated_duration"),
    ({"rollback_on_failure": "true"}, "$.metadata.rollback_on_failure"),
    ({"checkpoint_support": 1}, "$.metadata.checkpoint_support"),
    ([], "$.metadata"),
])
async def test_bad_command_metadata_gets_400_naming_the_field(server: ServerProcess, metadata: Any,
                                                              path: str) -> None:
    async with httpx.AsyncClient() as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        created = await operator.create_deployment(client)
        response = await client.post(operator.url(created["deployment_hash"], "/commands"), headers=operator.auth,
                                     json={"type": "backup", "metadata": metadata})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_command" and [e["path"] for e in error["details"]["errors"]] == [path]
    assert path in error["message"]


async def test_a_confirmation_the_body_and_its_metadata_disagree_on_gets_400(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator = Operator(server, fresh("user"), fresh("tenant"))
        created = await operator.create_deployment(client)
        response = await client.post(operator.url(created["deployment_hash"], "/commands"), headers=operator.auth,
                                     json={"type": "backup", "requires_confirmation": True,
                                           "metadata": {"requires_confirmation": False}})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["details"]["errors"][0]["path"] == "$.metadata.requires_confirmation"


# ---- sizes and empty answers ------------------------------------------------------------------

async def test_a_command_without_a_result_has_no_result_bytes(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        queued = await operator.command(client, agent.deployment_hash)
        polled = await agent.poll(client, timeout=5)
        assert polled is not None and polled.command_id == queued["command_id"]
        answer = await agent.report(client, polled.command_id, "success")  # no result
        assert answer.status_code == 200, answer.text
        waiting = await operator.command(client, agent.deployment_hash)
        done = await operator.get(client, agent.deployment_hash, queued["command_id"])
        open_ = await operator.get(client, agent.deployment_hash, waiting["command_id"])
        listed = (await client.get(operator.url(agent.deployment_hash, "/commands"),
                                   headers=operator.auth)).json()["commands"]
    assert (done["status"], done["result"], done["result_bytes"]) == ("completed", None, 0)
    assert (open_["result"], open_["result_bytes"]) == (None, 0)
    assert {c["command_id"]: c["result_bytes"] for c in listed}[waiting["command_id"]] == 0


async def test_a_poll_answered_204_has_no_content_type(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        response = await agent.wait(client, timeout=1)
    assert response.status_code == 204 and response.content == b""
    assert "content-type" not in response.headers, dict(response.headers)
