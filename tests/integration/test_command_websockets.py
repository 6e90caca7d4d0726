"""The command service's WebSockets against a real server: users hear of their
commands and agents; agents take commands and send results over one socket."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

import attrs
import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, open_websocket_url

from tests.integration.test_commands import Operator, fresh, setup
from tests.server_process import ServerProcess
from tests.waiting import eventually


pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def server(database):
    with ServerProcess() as process:
        yield process


def ws_url(server: ServerProcess, path: str) -> str:
    return server.base_url.replace("http://", "ws://") + path


async def next_event(ws: Any, kind: str) -> dict[str, Any]:
    with trio.fail_after(10):
        while True:
            event = json.loads(await ws.get_message())
            if event["type"] == kind:
                return event


async def test_users_hear_of_their_commands_and_no_one_else_does(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        intruder = Operator(server, fresh("user"), fresh("tenant"), "ADMIN")
        owner_url = ws_url(server, f"/ws/user/{operator.user_id}?token={operator.auth['Authorization'][7:]}")
        intruder_url = ws_url(server, f"/ws/user/{intruder.user_id}?token={intruder.auth['Authorization'][7:]}")
        async with open_websocket_url(owner_url) as mine, open_websocket_url(intruder_url) as theirs:
            created = await operator.command(client, agent.deployment_hash)
            queued = await next_event(mine, "command_progress")
            assert (queued["command_id"], queued["status"]) == (created["command_id"], "queued")
            polled = await agent.poll(client, timeout=5)
            assert polled is not None
            assert (await next_event(mine, "command_progress"))["status"] == "sent"
            await agent.report(client, polled.command_id, "success", result={"ok": True})
            done = await next_event(mine, "command_completed")
            assert (done["status"], done["result"]) == ("completed", {"ok": True})
            await theirs.send_message('{"type":"ping"}')
            assert json.loads(await theirs.get_message()) == {"type": "initial_state", "deployments": []}
            assert json.loads(await theirs.get_message()) == {"type": "pong"}  # nothing of the other tenant


async def test_user_sockets_need_a_valid_token(server: ServerProcess) -> None:
    for query in ("", "?token=nonsense"):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(ws_url(server, f"/ws/user/alice{query}")):
                pass
        assert rejected.value.status_code == 401


async def test_a_browser_can_offer_the_token_as_a_subprotocol_instead_of_in_the_url(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        token = operator.auth["Authorization"][7:]
        url = ws_url(server, f"/ws/user/{operator.user_id}")
        async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
            assert ws.subprotocol == "trioscope"
            created = await operator.command(client, agent.deployment_hash)
            assert (await next_event(ws, "command_progress"))["command_id"] == created["command_id"]
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url, subprotocols=["trioscope", "bearer.nonsense"]):
            pass
    assert rejected.value.status_code == 401


async def test_an_agent_takes_commands_and_reports_over_one_socket(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket(token_in_url=False) as ws:  # the token in the Authorization header
            first = await operator.command(client, agent.deployment_hash, priority="low")
            message = await ws.message("command")
            assert message["item"]["command_id"] == first["command_id"]
            body = agent.report_body(first["command_id"], "success", result={"exit_code": 0})
            assert (await ws.report(body))["status"] == "accepted"
            forged = {**ws.signed(body), "signature": "A" * 43 + "="}
            await ws.ws.send_message(json.dumps(forged))
            refused = await ws.message("ack")
            assert refused["status"] == "rejected" and refused["error"]["code"] == "invalid_signature"
            await ws.ws.send_message('{"type":"ping"}')
            await ws.message("pong")
        command = await operator.get(client, agent.deployment_hash, first["command_id"])
        assert command["status"] == "completed" and command["result"] == {"exit_code": 0}


async def test_agent_sockets_need_the_agents_token(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket_url(ws_url(server, f"/ws/agent/{agent.deployment_hash}?token=wrong")):
                pass
        assert rejected.value.status_code == 401


async def test_a_decommissioned_agents_socket_closes_at_once_and_gets_no_more_commands(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws:
            first = await operator.command(client, agent.deployment_hash)
            assert (await ws.message("command"))["item"]["command_id"] == first["command_id"]
            admin = attrs.evolve(operator, role="ADMIN")
            response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                         headers=admin.auth)
            assert response.status_code == 200, response.text
            with pytest.raises(ConnectionClosed) as closed:
                await ws.message("command", deadline=10)  # not at the next command, nor the 60 s poll cycle
            assert (closed.value.reason.code, closed.value.reason.reason) == (4410, "agent_decommissioned")
        later = await operator.command(client, agent.deployment_hash)
        assert (await operator.get(client, agent.deployment_hash, later["command_id"]))["status"] == "queued"


@pytest.mark.parametrize("retired_by", ["decommission", "replacement"])
async def test_a_retired_agents_socket_closes_at_once_while_a_command_waits_for_its_acknowledgement(
        server: ServerProcess, retired_by: str) -> None:
    """The socket waits for the command's ``received`` then, not for a poll:
    it closed only at the acknowledgement's deadline (10 s), taking the
    retired agent's log lines to users meanwhile."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket(acknowledge=False) as ws:
            first = await operator.command(client, agent.deployment_hash)
            assert (await ws.message("command"))["item"]["command_id"] == first["command_id"]
            if retired_by == "decommission":
                admin = attrs.evolve(operator, role="ADMIN")
                response = await client.post(
                    admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"), headers=admin.auth)
                assert response.status_code == 200, response.text
            else:
                token = await client.post(operator.url(agent.deployment_hash, "/enrollment"), headers=operator.auth)
                response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                    "deployment_hash": agent.deployment_hash, "enrollment_token": token.json()["enrollment_token"]})
                assert response.status_code == 201, response.text
            with pytest.raises(ConnectionClosed) as closed:
                await ws.message("command", deadline=5)  # half the acknowledgement's deadline
            assert (closed.value.reason.code, closed.value.reason.reason) == (4410, "agent_decommissioned")


async def test_a_replaced_agents_socket_closes_as_its_requests_are_refused(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws:
            token = await client.post(operator.url(agent.deployment_hash, "/enrollment"), headers=operator.auth)
            registered = await client.post(f"{server.base_url}/api/v1/agent/register", json={
                "deployment_hash": agent.deployment_hash, "enrollment_token": token.json()["enrollment_token"]})
            assert registered.status_code == 201, registered.text
            with pytest.raises(ConnectionClosed) as closed:
                await ws.message("command", deadline=10)
        refused = await agent.wait(client, timeout=1)
        assert closed.value.reason.code == 4000 + refused.status_code
        assert closed.value.reason.reason == refused.json()["error"]["code"]


async def test_an_agent_holds_two_sockets_at_most_and_a_third_replaces_the_oldest(server: ServerProcess) -> None:
    """Each socket is a descriptor held for as long as it answers pings: one
    agent opening sockets without end must not take them all. A newer one is
    never refused (a reconnect before the server saw the last one die)."""
    async with httpx.AsyncClient() as client:
        _operator, agent = await setup(server, client)
        async with agent.socket() as first, agent.socket() as second:
            for ws in (first, second):
                await ws.ws.send_message('{"type":"ping"}')
                await ws.message("pong")
            async with agent.socket() as third:
                with pytest.raises(ConnectionClosed) as closed:
                    await first.message("command")
                assert (closed.value.reason.code, closed.value.reason.reason) == (4409, "replaced_by_a_newer_socket")
                for ws in (second, third):
                    await ws.ws.send_message('{"type":"ping"}')
                    await ws.message("pong")


async def test_a_command_the_socket_does_not_acknowledge_goes_to_the_next_poll(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket(acknowledge=False) as silent:
            created = await operator.command(client, agent.deployment_hash)
            assert (await silent.message("command"))["item"]["command_id"] == created["command_id"]
            polled = await agent.poll(client, timeout=30)  # the socket's ack deadline is 10 s
            assert polled is not None and polled.command_id == created["command_id"]
            with pytest.raises(ConnectionClosed) as closed:
                await silent.message("command")
            assert closed.value.reason.code == 1008
        command = await operator.get(client, agent.deployment_hash, created["command_id"])
        returned = [h for h in command["history"] if h["status"] == "queued"][1:]
        assert [h["detail"]["reason"] for h in returned] == ["not acknowledged by the agent socket"]
        assert command["status"] == "sent"


async def test_an_agent_socket_that_stops_answering_pings_is_closed() -> None:
    with ServerProcess(["--ws-ping-interval", "1s"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            async with agent.socket(answer_pings=False) as deaf, agent.socket() as alive:
                await deaf.message("ping")
                await deaf.ws.send_message('{"type":"pong"}')  # it answers pings: it is held to answering them
                taken: list[dict[str, Any]] = []

                async def take_a_command() -> None:  # answering pings meanwhile
                    taken.append(await alive.message("command", deadline=60))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(take_a_command)
                    with pytest.raises(ConnectionClosed) as closed:
                        await deaf.message("command", deadline=30)
                    assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "no pong to two pings")
                    # The socket that answers is still there, and takes commands.
                    created = await operator.command(client, agent.deployment_hash)
                assert taken[0]["item"]["command_id"] == created["command_id"]


async def test_an_agent_that_never_answers_pings_but_sends_heartbeats_keeps_its_socket() -> None:
    """The seed's agents send heartbeats and answer no pings: their sockets
    stay (they were closed every third ping interval)."""
    with ServerProcess(["--ws-ping-interval", "1s"]) as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            async with agent.socket(answer_pings=False) as seed_agent:
                for _ in range(5):  # a heartbeat each ping: 5 pings, none answered
                    await seed_agent.message("ping")
                    await seed_agent.ws.send_message('{"type":"heartbeat"}')
                created = await operator.command(client, agent.deployment_hash)
                assert (await seed_agent.message("command", deadline=30))["item"]["command_id"] == created["command_id"]


async def test_an_agent_result_over_64_kib_is_answered_not_cut_off(server: ServerProcess) -> None:
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws:
            created = await operator.command(client, agent.deployment_hash)
            await ws.message("command")
            body = agent.report_body(created["command_id"], "success", result={"log": "x" * 200_000})
            assert (await ws.report(body))["status"] == "accepted"
            too_large = await ws.report(b'"' + b"y" * (1024 * 1024) + b'"')
            assert (too_large["status"], too_large["error"]["code"]) == ("rejected", "message_too_large")
        command = await operator.get(client, agent.deployment_hash, created["command_id"])
        assert len(command["result"]["log"]) == 200_000


async def test_an_agent_result_with_an_integer_beyond_64_bits_is_refused_as_over_http(server: ServerProcess) -> None:
    """Not stored as a float (1e+23): refused naming the field, as POST .../commands/report refuses it."""
    async with httpx.AsyncClient() as client:
        operator, agent = await setup(server, client)
        async with agent.socket() as ws:
            created = await operator.command(client, agent.deployment_hash)
            await ws.message("command")
            refused = await ws.report(agent.report_body(created["command_id"], "success", result={"n": 10**23}))
            assert (refused["status"], refused["error"]["code"]) == ("rejected", "invalid_number"), refused
            assert "$.result.n" in refused["error"]["message"] and "close" not in refused
            assert (await ws.report(agent.report_body(created["command_id"], "success", result={"n": 1})))[
                "status"] == "accepted"
        command = await operator.get(client, agent.deployment_hash, created["command_id"])
        assert command["result"] == {"n": 1}


async def _abort_handshake(server: ServerProcess, path: str, after: float) -> None:
    """Send a WebSocket upgrade request and reset the connection ``after`` seconds later."""
    host, port = server.base_url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        key = base64.b64encode(os.urandom(16)).decode()
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        # A spread of delays, not a wait for a state: which phase of the handshake each
        # reset meets is chance (a fuzz); 120 of them cover reading and starting the stream.
        await trio.sleep(after)
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset


async def test_clients_that_hang_up_in_the_handshake_leave_no_stream_behind() -> None:
    with ServerProcess(["--ws-max-clients", "5", "--rate-per-address", "100000"]) as server:
        for i in range(120):  # some while the server is still reading, some while it starts the stream
            await _abort_handshake(server, "/api/v1/ws", after=(0, 0.0005, 0.001, 0.002)[i % 4])
        async with httpx.AsyncClient() as client:

            async def no_clients_left() -> bool:  # every aborted stream's actor is gone (the gauge counts them)
                metrics = (await client.get(f"{server.base_url}/metrics")).text
                return "app_websocket_clients 0.0" in metrics.splitlines()

            await eventually(no_clients_left, deadline=10)
        for _ in range(5):  # and the limit is there for real clients
            async with open_websocket_url(ws_url(server, "/api/v1/ws")) as ws:
                assert json.loads(await ws.get_message())["type"] == "topology_update"


@pytest.mark.parametrize(("message", "request_id"), [
    ({"type": ["report"], "request_id": "r-1"}, "r-1"),
    ({"type": {"a": 1}}, None),
    ({"type": "nonsense", "request_id": json.loads("[" * 300 + "]" * 300)}, None),
], ids=["type a list", "type a map", "request_id nested 300 deep"])
async def test_a_message_of_odd_shape_is_refused_and_the_socket_goes_on(server: ServerProcess, message: dict[str, Any],
                                                                        request_id: Any) -> None:
    """Each crashed the socket's handler (a traceback, the socket closed 1000 unanswered)."""
    async with httpx.AsyncClient() as client:
        _operator, agent = await setup(server, client)
        async with agent.socket() as ws:
            await ws.ws.send_message(json.dumps(message))
            refused = await ws.message("ack")
            assert (refused["status"], refused["error"]["status"], refused["request_id"]) == (
                "rejected", 400, request_id), refused
            await ws.ws.send_message('{"type":"ping"}')
            await ws.message("pong")
    assert "Traceback" not in server.stderr()


async def test_the_agent_socket_takes_a_bearer_token_in_its_query_string(server: ServerProcess) -> None:
    """"Bearer token in query string" (the seed's 3.3), as the user socket takes it."""
    async with httpx.AsyncClient() as client:
        _operator, agent = await setup(server, client)
        async with agent.socket(bearer_in_url=True) as ws:
            await ws.ws.send_message('{"type":"ping"}')
            await ws.message("pong")
