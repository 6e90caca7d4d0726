"""Resets (whole views) are held against their client's address, against a real
server: while the clients of one address have not read what they were sent,
a new reset for that address waits (``--ws-max-reset-bytes-per-address``),
and the clients of other addresses are served as ever."""

from __future__ import annotations

import base64
import os
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

HOSTS = 150
PROCESSES = 180
"""Each host's: 27,000 processes, so that the processes view and the whole
topology are beyond ``CACHE_LIMIT`` (a smaller view's reset is kept with its
version and weighs on no address), and ~10 MB, more than a socket's buffers take."""


def _address(server: ServerProcess) -> tuple[str, int]:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


@asynccontextmanager
async def live_socket(server: ServerProcess, path: str, source: str) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket to ``path`` from the client address ``source`` (any 127.x.y.z)."""
    host, port = _address(server)
    async with trio.open_nursery() as nursery:
        stream = await trio.open_tcp_stream(host, port, local_address=source)
        ws = await wrap_client_stream(nursery, stream, host, path, max_message_size=256 * 1024 * 1024)
        try:
            yield ws
        finally:
            await ws.aclose()


async def open_unread(server: ServerProcess, path: str, source: str) -> trio.socket.SocketType:
    """A WebSocket from ``source`` that takes the handshake's answer and the
    first bytes of what follows, and then reads nothing: its receive buffer
    is a few KiB, so the server's send of a large frame never ends."""
    host, port = _address(server)
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: the window it offers
    await sock.bind((source, 0))
    await sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    await sock.send((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    received = b""
    with trio.fail_after(10):
        while b"\r\n\r\n" not in received:
            chunk = await sock.recv(4096)
            assert chunk, received
            received += chunk
        assert received.startswith(b"HTTP/1.1 101"), received
        while len(received.partition(b"\r\n\r\n")[2]) < 2:  # the start of its first view: being sent
            received += await sock.recv(2)
    return sock


async def next_message(ws: WebSocketConnection) -> dict[str, Any]:
    with trio.fail_after(30):
        while True:
            message = orjson.loads(await ws.get_message())
            if message["type"] != "ping":
                return message  # type: ignore[no-any-return]


async def load_hosts(server: ServerProcess, hosts: int, processes: int) -> None:
    """``hosts`` synthetic hosts of ``processes`` processes each, reported and merged."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        for host in range(1, hosts + 1):
            report = host_report(host, timestamp=time.time(), containers=2, processes=processes, connections=0)
            assert (await http.post("/api/v1/reports", json=report)).status_code == 202

        async def loaded() -> bool:
            stats = (await http.get("/api/v1/query/stats")).json()["topology"]
            return bool(stats["nodes_by_type"].get("host") == hosts)

        await eventually(loaded)


async def test_a_reset_an_address_has_not_read_holds_back_its_next_one_and_no_other_address() -> None:
    with ServerProcess(["--ws-ping-interval", "60s", "--ws-max-reset-bytes-per-address", "1MiB"]) as server:
        await load_hosts(server, HOSTS, PROCESSES)
        unread = await open_unread(server, "/api/v1/ws", "127.0.0.2")
        try:
            async with live_socket(server, "/api/v1/ws?view=processes", "127.0.0.2") as same, \
                    live_socket(server, "/api/v1/ws?view=processes", "127.0.0.3") as other:
                view = await next_message(other)  # another address: its view at once
                assert view["type"] == "topology_update" and view["payload"]["reset"]
                # The same address holds more than its room (the whole topology
                # being sent): this client's view waits, while the rest of its socket works.
                await same.send_message('{"type":"ping"}')
                assert (await next_message(same))["type"] == "pong"
                unread.close()  # it goes (as the server's write timeout would make it): room again
                view = await next_message(same)
                assert view["type"] == "topology_update" and view["payload"]["reset"]
                assert len(view["payload"]["nodes"]) == HOSTS * PROCESSES
        finally:
            unread.close()
