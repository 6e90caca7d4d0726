"""A request still handled when the server's graceful phase ends is answered
what became of it, not with Hypercorn's empty 500: a command whose write was
under way may be stored (504 ``outcome_unknown``: check before sending it
again), a request whose body had not all come was not acted on (503
``shutting_down``: send it again)."""

from __future__ import annotations

import contextlib
import json
import signal
import sqlite3
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, fresh
from tests.server_process import ServerProcess
from tests.waiting import eventually
from trioscope.http._quart_app import _answer_cut

ARGS = ("--shutdown-timeout", "4s")  # graceful phase 2 s: requests cut at 1.6 s


async def _request(server: ServerProcess, head: str, body: bytes) -> trio.SocketStream:
    """A connection on which ``head`` and ``body`` were sent."""
    parts = urlsplit(server.base_url)
    assert parts.hostname is not None and parts.port is not None
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    await stream.send_all(head.encode() + body)
    return stream


async def _answer(stream: trio.SocketStream) -> tuple[int, dict[str, str], dict]:
    received = b""
    with trio.fail_after(20):
        while chunk := await stream.receive_some():
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, json.loads(body)


async def test_a_command_being_stored_when_the_server_stops_is_504_and_is_there_after(tmp_path) -> None:
    # SQLite whatever the environment names: the test holds the store's write lock.
    with ServerProcess(ARGS, env={"TRIOSCOPE_DATABASE": ""}) as server:
        assert isinstance(server.database, type(tmp_path)), server.database
        operator = Operator(server, fresh("user"), fresh("tenant"))
        async with httpx.AsyncClient(timeout=30) as client:
            deployment = await operator.create_deployment(client)
        path = urlsplit(operator.url(deployment["deployment_hash"], "/commands")).path
        body = b'{"type":"restart","parameters":{}}'
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Authorization: {operator.auth['Authorization']}\r\nContent-Length: {len(body)}\r\n\r\n")
        with contextlib.closing(sqlite3.connect(server.database, isolation_level=None)) as locker:
            locker.execute("BEGIN EXCLUSIVE")  # the command's write waits for it (busy_timeout 30 s)
            stream = await _request(server, head, body)
            await eventually(lambda: _queue_started(server, deployment["deployment_hash"]))  # the request is in
            server.send_signal(signal.SIGTERM)
            status, headers, answer = await _answer(stream)
            locker.execute("ROLLBACK")
        assert (status, answer["error"]["code"]) == (504, "outcome_unknown"), answer
        assert headers["connection"] == "close"
        assert server.wait() == 0
        data_dir = server.data_dir
        with ServerProcess(ARGS, env={"TRIOSCOPE_DATABASE": "", "TRIOSCOPE_STORAGE_DATA_DIR": data_dir}) as again:
            operator = Operator(again, operator.user_id, operator.tenant)
            async with httpx.AsyncClient(timeout=30) as client:
                listed = await client.get(operator.url(deployment["deployment_hash"], "/commands"),
                                          headers=operator.auth)
            assert [c["status"] for c in listed.json()["commands"]] == ["queued"], listed.text


async def _queue_started(server: ServerProcess, deployment_hash: str) -> bool:
    """Whether the deployment's command queue runs (the POST reached it: it waits for the store)."""
    admin = {"Authorization": f"Bearer {server.user_token('root', 'ops', 'ADMIN')}"}
    async with httpx.AsyncClient(timeout=10) as client:
        runtime = await client.get(f"{server.base_url}/api/v1/runtime", headers=admin)
    return f"/root/queues/{deployment_hash}" in runtime.text


class _Sent:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.messages.append(message)


@pytest.mark.parametrize(("method", "body_received", "status", "code"), [
    ("POST", True, 504, "outcome_unknown"),  # its work under way: check before sending it again
    ("POST", False, 503, "shutting_down"),  # its body never all came: nothing was done
    ("GET", True, 503, "shutting_down"),  # a read: send it again
])
async def test_a_cut_request_is_answered_by_what_became_of_it(method: str, body_received: bool, status: int,
                                                               code: str) -> None:
    sent = _Sent()
    await _answer_cut(sent, method, body_received)
    start, body = sent.messages
    assert start["status"] == status and (b"connection", b"close") in start["headers"]
    assert json.loads(body["body"])["error"]["code"] == code
    assert ((b"retry-after", b"1") in start["headers"]) == (status == 503)
