"""Agent request signatures against a real server: the RFC 9421 scheme the probe
uses covers method, path, query, agent id, body, time and request id, so a
captured request cannot be sent again under a new request id; the status
agent's body-only scheme stays accepted unless turned off."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent, signature
from trioscope.wire import request_signing
from trioscope_probe._agent import Credentials, signed_request


pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


@pytest.fixture(scope="module")
def strict_server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess(["--accept-body-only-signatures", "false"]) as process:
        yield process


async def _agent(server: ServerProcess, client: httpx.AsyncClient) -> StatusAgent:
    return await enroll(client, server, Operator(server, fresh("user"), fresh("tenant")))


def _credentials(agent: StatusAgent) -> Credentials:
    return Credentials(agent.deployment_hash, agent.agent_id, agent.token)


def _wait_path(agent: StatusAgent, timeout: int = 1) -> str:
    return f"/api/v1/agent/commands/wait/{agent.deployment_hash}?timeout={timeout}"


def _report_body(agent: StatusAgent) -> bytes:
    return agent.report_body("cmd_none", "executing")


def _with_nonce(signature_input: str, nonce: str) -> str:
    start = signature_input.index('nonce="') + len('nonce="')
    return signature_input[:start] + nonce + signature_input[signature_input.index('"', start):]


async def test_a_request_signed_over_the_whole_request_is_accepted(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        response = await client.send(signed_request(client, "GET", _wait_path(agent), _credentials(agent)))
        assert response.status_code == 204, response.text


async def test_a_captured_request_under_a_new_request_id_is_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        captured = signed_request(client, "POST", "/api/v1/agent/commands/report", _credentials(agent),
                                  _report_body(agent), headers={"Content-Type": "application/json"})
        first = await client.send(captured)
        assert first.status_code == 404, first.text  # signature fine: the command does not exist

        again = await client.send(captured)
        assert (again.status_code, again.json()["error"]["code"]) == (401, "replayed_request")

        forged = signed_request(client, "POST", "/api/v1/agent/commands/report", _credentials(agent),
                                _report_body(agent), headers={"Content-Type": "application/json"})
        forged.headers["Signature-Input"] = _with_nonce(captured.headers["Signature-Input"], str(uuid.uuid4()))
        forged.headers["Signature"] = captured.headers["Signature"]
        forged.headers["Content-Digest"] = captured.headers["Content-Digest"]
        refused = await client.send(forged)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "invalid_signature")


async def test_a_signature_does_not_carry_over_to_another_path_or_query(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        signed = signed_request(client, "GET", _wait_path(agent, 1), _credentials(agent))
        moved = client.build_request("GET", _wait_path(agent, 120), headers=dict(signed.headers))
        response = await client.send(moved)
        assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")


async def test_a_body_changed_under_the_signature_is_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        agent = await _agent(server, client)
        signed = signed_request(client, "POST", "/api/v1/agent/commands/report", _credentials(agent),
                                _report_body(agent), headers={"Content-Type": "application/json"})
        tampered = client.build_request("POST", "/api/v1/agent/commands/report",
                                        content=_report_body(agent).replace(b"executing", b"completed"),
                                        headers={k: v for k, v in signed.headers.items() if k != "content-length"})
        response = await client.send(tampered)
        assert (response.status_code, response.json()["error"]["code"]) == (401, "invalid_signature")


async def test_body_only_signatures_are_replayable_under_a_new_request_id_where_accepted(
        server: ServerProcess) -> None:
    """Why the scheme can be turned off: the risk the README states."""
    async with httpx.AsyncClient() as client:
        agent = await _agent(server, client)
        body = _report_body(agent)
        first = await agent.report(client, "cmd_none", body=body)
        assert first.status_code == 404, first.text
        replayed = await agent.report(client, "cmd_none", body=body, **{"X-Request-Id": str(uuid.uuid4())})
        assert replayed.status_code == 404, replayed.text  # accepted again (the command just does not exist)


async def test_request_ids_are_compared_as_uuids(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        agent = await _agent(server, client)
        request_id = uuid.uuid4()
        first = await agent.wait(client, timeout=1, **{"X-Request-Id": str(request_id)})
        assert first.status_code == 204, first.text
        for spelling in (str(request_id).upper(), f"{{{request_id}}}", request_id.urn, request_id.hex):
            again = await agent.wait(client, timeout=1, **{"X-Request-Id": spelling})
            assert (again.status_code, again.json()["error"]["code"]) == (401, "replayed_request"), spelling


async def test_body_only_signatures_can_be_turned_off(strict_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=strict_server.base_url) as client:
        agent = await _agent(strict_server, client)
        refused = await agent.wait(client, timeout=1)
        assert (refused.status_code, refused.json()["error"]["code"]) == (401, "signature_scheme_refused")
        accepted = await client.send(signed_request(client, "GET", _wait_path(agent), _credentials(agent)))
        assert accepted.status_code == 204, accepted.text


async def test_agent_socket_messages_can_be_signed_over_the_whole_message(strict_server: ServerProcess) -> None:
    """With only RFC 9421 accepted, the /ws/agent handshake (a GET) and each
    report on it are signed that way; a body-only report is refused, alone."""
    async with httpx.AsyncClient(base_url=strict_server.base_url) as client:
        agent = await _agent(strict_server, client)
    path = f"/ws/agent/{agent.deployment_hash}"
    query = f"token={agent.token}"
    handshake: dict[str, str] = {"X-Agent-Id": agent.agent_id}
    request_signing.sign("GET", request_signing.target(path, query), handshake, b"", agent_id=agent.agent_id,
                         token=agent.token, now=time.time(), nonce=str(uuid.uuid4()))
    url = strict_server.base_url.replace("http://", "ws://") + f"{path}?{query}"
    async with open_websocket_url(url, extra_headers=[(k.encode(), v.encode()) for k, v in handshake.items()]) as ws:
        body = _report_body(agent)
        signed: dict[str, str] = {"X-Agent-Id": agent.agent_id}
        request_id = str(uuid.uuid4())
        request_signing.sign("POST", request_signing.target(path, ""), signed, body, agent_id=agent.agent_id,
                             token=agent.token, now=time.time(), nonce=request_id)
        await ws.send_message(json.dumps({
            "type": "report", "request_id": request_id, "body": body.decode(),
            "signature_input": signed["Signature-Input"], "signature": signed["Signature"],
            "content_digest": signed["Content-Digest"]}))
        answer = await _ack(ws)
        assert answer["error"]["code"] == "command_not_found"  # signature fine: no such command
        await ws.send_message(json.dumps({
            "type": "report", "request_id": str(uuid.uuid4()), "timestamp": int(time.time()),
            "signature": signature(agent.token, body), "body": body.decode()}))
        assert (await _ack(ws))["error"]["code"] == "signature_scheme_refused"
        await ws.send_message('{"type": "ping"}')
        with trio.fail_after(10):
            while json.loads(await ws.get_message())["type"] != "pong":
                pass


async def _ack(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            message = json.loads(await ws.get_message())
            if message["type"] == "ack":
                return message  # type: ignore[no-any-return]
