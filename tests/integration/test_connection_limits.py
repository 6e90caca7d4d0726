"""Connections held open, against a real server: one client address holds at
most ``limits.connections_per_address`` (trusted proxies exempt), all of them
together stay below the process's open-file limit (raised to its hard limit at
start), and what is refused beyond is closed at once, counted and logged once;
the responses its clients do not read hold at most
``limits.unsent_bytes_per_address``.

Held connections are live-view WebSockets (each served its first view): an
idle connection would be closed by the keep-alive timer (5 s) meanwhile."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import orjson
import trio
from trio_websocket import WebSocketConnection, wrap_client_stream

from tests.integration.test_commands import fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

PER_ADDRESS = 64
"""``limits.connections_per_address`` of these tests' server (3,000 by default)."""


def _refused(metrics: str, reason: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(f'app_requests_refused_total{{reason="{reason}"}}'):
            return float(line.split()[-1])
    return 0.0


def _where(server: ServerProcess) -> tuple[str, int]:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


@asynccontextmanager
async def live_views(server: ServerProcess, count: int, source: str) -> AsyncIterator[list[WebSocketConnection]]:
    """``count`` live-view WebSockets from the client address ``source``
    (any 127.x.y.z), opened one after the other, each served its first view."""
    host, port = _where(server)
    sockets: list[WebSocketConnection] = []
    async with trio.open_nursery() as nursery:
        try:
            for _ in range(count):
                stream = await trio.open_tcp_stream(host, port, local_address=source)
                sockets.append(await wrap_client_stream(nursery, stream, host, "/api/v1/ws?view=hosts"))
                with trio.fail_after(30):
                    await sockets[-1].get_message()
            yield sockets
        finally:
            for ws in sockets:
                await ws.aclose()


async def get(server: ServerProcess, path: str, source: str) -> bytes:
    """What the server answers ``GET path`` on a new connection from
    ``source``: b"" when it closed or reset the connection unanswered."""
    host, port = _where(server)
    try:
        stream = await trio.open_tcp_stream(host, port, local_address=source)
    except OSError:
        return b""  # reset before connect() returned
    answer = b""
    try:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        with trio.fail_after(30):
            while chunk := await stream.receive_some():
                answer += chunk
    except trio.BrokenResourceError:
        return b""  # reset
    finally:
        await stream.aclose()
    return answer


def _ok(answer: bytes) -> bool:
    return answer.startswith(b"HTTP/1.1 200")


async def test_one_address_holds_at_most_its_connections_and_others_still_connect() -> None:
    """Idle connections cost no request, so no rate budget counted them: one
    address held 14,000 descriptors, and new clients waited behind them."""
    with ServerProcess(["--ws-max-clients-per-address", "1000",
                        "--max-connections-per-address", str(PER_ADDRESS)]) as server:
        async with live_views(server, PER_ADDRESS, "127.0.0.7") as held:
            refused = [await get(server, "/api/v1/ping", "127.0.0.7") for _ in range(5)]
            assert refused == [b""] * 5, refused[0][:200]  # closed as accepted: not a byte of an answer
            assert _ok(await get(server, "/api/v1/ping", "127.0.0.8"))  # another address is served

            await held.pop().aclose()  # a place goes back once the server has seen it close

            async def admitted() -> bool:
                return _ok(await get(server, "/api/v1/ping", "127.0.0.7"))

            await eventually(admitted)
        metrics = (await get(server, "/metrics", "127.0.0.8")).decode()
        assert _refused(metrics, "connections_per_address") >= 5
    lines = [line for line in server.stderr().splitlines() if "refused a connection from 127.0.0.7" in line]
    assert lines and "limits.connections_per_address" in lines[0]
    assert len(lines) < 5, lines  # said once, not per refusal


async def test_a_trusted_proxys_connections_are_not_capped_per_address() -> None:
    """Behind a proxy every connection comes from the proxy's address: capped,
    it would cut off every client at once."""
    with ServerProcess(["--max-connections-per-address", "4", "--trusted-proxies", "127.0.0.9/32"]) as server:
        async with live_views(server, 6, "127.0.0.9"), live_views(server, 4, "127.0.0.10"):
            assert _ok(await get(server, "/api/v1/ping", "127.0.0.9"))
            assert await get(server, "/api/v1/ping", "127.0.0.10") == b""


async def test_connections_stay_below_the_open_file_limit_raised_to_the_hard_one() -> None:
    """At a soft limit of 1,024 (many systems' default) 1,100 idle connections
    of one client made accept fail (EMFILE, ten tracebacks a second) and every
    new client wait. The soft limit is raised to the hard one at start, and
    connections are held ``FILE_RESERVE`` below it (a quarter, of a limit this
    small): 256 less 64."""
    room = 256 - 64
    server = ServerProcess()
    server.argv = ["prlimit", "--nofile=128:256", *server.argv]
    with server:
        lines = [line for line in server.stderr().splitlines() if "open files:" in line]
        assert lines and "at most 256" in lines[0] and "raised from 128" in lines[0], lines
        async with live_views(server, room // 2, "127.0.0.11"), live_views(server, room - room // 2, "127.0.0.12") \
                as last:
            assert await get(server, "/api/v1/ping", "127.0.0.13") == b""  # a third address: the server is full
            await last.pop().aclose()

            async def metrics() -> bytes:
                answer = await get(server, "/metrics", "127.0.0.13")
                return answer if _ok(answer) else b""

            assert _refused((await eventually(metrics)).decode(), "connections_total") >= 1
    log = server.stderr()
    assert "the server holds 192 connections" in log
    assert "EMFILE" not in log and "accepting a connection failed" not in log


DEFAULT_UNSENT = 128 * 1024 * 1024
"""``limits.unsent_bytes_per_address`` by default."""


def _large_report(agent_prefix: str) -> bytes:
    """A probe report of ~7 MB (6,000 processes with long command lines): its
    agent's latest report, as the query API answers it, is as large."""
    report = host_report(0, timestamp=time.time(), containers=0, processes=6000, connections=0,
                         agent_prefix=agent_prefix)
    for process in report["processes_info"]["processes"]:
        process["cmdline"] += " --padding=" + "x" * 1000
    return orjson.dumps(report)


async def _read_response(stream: trio.SocketStream) -> tuple[int, int]:
    """Read one response to its end or the connection's: (body bytes received,
    Content-Length), keeping none of it."""
    head = b""
    with trio.fail_after(120):
        try:
            while b"\r\n\r\n" not in head:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return 0, -1
                head += chunk
            head, _, body = head.partition(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:"))
            received = len(body)
            while received < length and (chunk := await stream.receive_some(1 << 20)):
                received += len(chunk)
        except trio.BrokenResourceError:
            return 0, -1  # reset
    return received, length


async def test_responses_an_address_does_not_read_hold_at_most_its_unsent_bytes() -> None:
    """Each request for an agent's latest report builds its own copy, and a
    connection whose client reads nothing held it for server.write_timeout:
    100 such connections from one address took +894 MiB. Beyond the address's
    unsent bytes a response is dropped and its connection closed."""
    flags = ["--agent-memory-budget", "64MiB", "--write-timeout", "10m"]  # no write gives up meanwhile
    with ServerProcess(flags) as server:
        prefix = fresh("large")
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60,
                                     transport=httpx.AsyncHTTPTransport(local_address="127.0.0.20")) as client:
            body = _large_report(prefix)
            posted = await client.post("/api/v1/reports", content=body, headers={"Content-Type": "application/json"})
            assert posted.status_code == 202, posted.text[:500]
        count = 2 * DEFAULT_UNSENT // len(body) + 2  # twice the budget, in responses nobody reads
        host, port = _where(server)
        streams = []
        for _ in range(count):
            sock = trio.socket.socket()
            # A window small enough that the kernel's buffers do not take a whole response, large enough
            # that reading it later is quick (below a segment, it crawls at the persist timer's pace).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            await sock.bind(("127.0.0.21", 0))
            await sock.connect((host, port))
            stream = trio.SocketStream(sock)
            await stream.send_all(f"GET /api/v1/query/agents/{prefix}-0/latest HTTP/1.1\r\nHost: {host}\r\n\r\n"
                                  .encode())
            streams.append(stream)

        async def refused() -> float:
            return _refused((await get(server, "/metrics", "127.0.0.22")).decode(), "unsent_bytes_per_address")

        assert await eventually(refused, deadline=60) >= 1
        whole = cut = 0
        for stream in streams:  # read now: what was not dropped arrives whole
            received, length = await _read_response(stream)
            whole += received == length
            cut += received != length
            await stream.aclose()
        assert whole >= 1 and cut >= count // 3, (whole, cut)
    lines = [line for line in server.stderr().splitlines() if "limits.unsent_bytes_per_address" in line]
    assert lines and "127.0.0.21" in lines[0] and len(lines) < cut, lines
