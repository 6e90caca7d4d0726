"""Abuse at the transport level, against a real server with raw clients: a
WebSocket message that never ends, and a request body that trickles in."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

import attrs
import h11
import httpx
import orjson
import psutil
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

from tests.integration.test_commands import setup
from tests.server_process import ServerProcess
from tests.waiting import eventually

MiB = 1024 * 1024
ATTACK = 100 * MiB
"""What the client tries to send as one never-finished message."""
FRAME = 64 * 1024
BODY_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--body-timeout", f"{BODY_TIMEOUT:g}s", "--rate-per-address", "100000"]) as process:
        yield process


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.base_url.removeprefix("http://").split(":")
    return host, int(port)


async def open_raw_websocket(server: ServerProcess, target: str, headers: dict[str, str] | None = None
                             ) -> tuple[trio.SocketStream, WSConnection]:
    """A TCP connection that completed the WebSocket handshake for ``target``,
    with the wsproto state that writes its frames."""
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=target, extra_headers=extra)))
    with trio.fail_after(10):
        while True:
            data = await stream.receive_some()
            assert data, f"the server hung up during the handshake for {target}"
            ws.receive_data(data)
            for event in ws.events():
                assert isinstance(event, AcceptConnection), f"handshake for {target} refused: {event}"
                return stream, ws


@attrs.define
class Attack:
    """What one never-finished message did."""

    sent: int = 0
    """Bytes of frames the connection took before it broke or was closed."""
    close_code: int | None = None
    """The close frame's code, if the client got one before the end."""
    ended: bool = False
    """The server ended the connection (EOF or reset) while the client still sent."""


async def send_endless_message(stream: trio.SocketStream, ws: WSConnection, total: int) -> Attack:
    """Send binary frames without FIN (one message that never finishes) until
    ``total`` bytes are out or the server ends the connection.

    Frames are made once by wsproto (masked, one key each) and sent again, so
    the client costs nothing but the sending."""
    attack = Attack()
    first = ws.send(BytesMessage(data=bytes(FRAME), message_finished=False))
    continuation = ws.send(BytesMessage(data=bytes(FRAME), message_finished=False))

    async def watch(cancel: trio.CancelScope) -> None:
        # A close frame alone is not the end: the server must stop reading.
        try:
            while data := await stream.receive_some():
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, CloseConnection):
                        attack.close_code = event.code
        except trio.BrokenResourceError:
            pass  # reset by the server
        attack.ended = True
        cancel.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch, nursery.cancel_scope)
        try:
            await stream.send_all(first)
            attack.sent += FRAME
            while attack.sent < total:
                await stream.send_all(continuation)
                attack.sent += FRAME
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            attack.ended = True
        nursery.cancel_scope.cancel()
    await stream.aclose()
    return attack


WebSocketTarget = Callable[[ServerProcess], Awaitable[tuple[str, dict[str, str]]]]


async def _live(server: ServerProcess) -> tuple[str, dict[str, str]]:
    return "/api/v1/ws", {}


async def _user(server: ServerProcess) -> tuple[str, dict[str, str]]:
    return f"/ws/user/alice?token={server.user_token('alice')}", {}


async def _agent(server: ServerProcess) -> tuple[str, dict[str, str]]:
    async with httpx.AsyncClient() as client:
        _, agent = await setup(server, client)
    return f"/ws/agent/{agent.deployment_hash}", agent.headers(b"")


@pytest.mark.parametrize("target", [_live, _user, _agent], ids=["live", "user", "agent"])
async def test_a_websocket_message_that_never_ends_is_cut_off_at_the_limit_and_its_memory_freed(
        server: ServerProcess, target: WebSocketTarget) -> None:
    warm_up, _ = await open_raw_websocket(server, *await target(server))
    await warm_up.aclose()
    before = rss_mib(server.pid)

    stream, ws = await open_raw_websocket(server, *await target(server))
    attack = await send_endless_message(stream, ws, ATTACK)

    # The server stopped reading soon after its limit (1 MiB + 64 KiB): what the
    # client got out beyond it sat in socket buffers when the connection ended.
    assert attack.ended, f"the server read all {attack.sent / MiB:.0f} MiB of one message"
    assert attack.sent <= 16 * MiB, f"the server took {attack.sent / MiB:.1f} MiB of one message"
    assert attack.close_code in (None, 1009)  # the close frame may be lost to the reset

    async def back_to_before() -> bool:
        return rss_mib(server.pid) <= before + 20

    try:
        await eventually(back_to_before, deadline=30)
    except trio.TooSlowError:
        pytest.fail(f"server RSS {rss_mib(server.pid):.0f} MiB after the attack, {before:.0f} MiB before")
    async with httpx.AsyncClient() as client:  # and the server still serves
        assert (await client.get(f"{server.base_url}/health")).status_code == 200


def vm_peak_mib(pid: int) -> float:
    """The process's peak RSS so far (VmHWM)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def deflated_message(size: int) -> bytes:
    """One masked client frame of ``size`` zero bytes compressed with
    permessage-deflate (RSV1 set): about 1/1000 of ``size`` on the wire."""
    deflate = PerMessageDeflate()
    deflate.finalize("permessage-deflate")  # as if the server had accepted the offer
    return FrameProtocol(client=True, extensions=[deflate]).send_data(bytes(size), fin=True)


async def test_a_compressed_message_cannot_inflate_in_the_server(server: ServerProcess) -> None:
    bomb = deflated_message(256 * MiB)
    assert len(bomb) < MiB
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    ws = WSConnection(ConnectionType.CLIENT)
    await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/api/v1/ws",
                                          extensions=[PerMessageDeflate()])))
    accepted = None
    with trio.fail_after(10):
        while accepted is None:
            data = await stream.receive_some()
            assert data
            ws.receive_data(data)
            accepted = next(iter(ws.events()), None)
    assert isinstance(accepted, AcceptConnection)
    assert accepted.extensions == []  # the offer of permessage-deflate is declined
    peak = vm_peak_mib(server.pid)

    with trio.fail_after(20):
        try:
            await stream.send_all(bomb)  # sent anyway
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
    await stream.aclose()
    assert vm_peak_mib(server.pid) <= peak + 20, f"peak RSS {peak:.0f} -> {vm_peak_mib(server.pid):.0f} MiB"


async def websocket_clients(server: ServerProcess) -> float:
    async with httpx.AsyncClient() as client:
        for line in (await client.get(f"{server.base_url}/metrics")).text.splitlines():
            if line.startswith("app_websocket_clients "):
                return float(line.split()[1])
    raise AssertionError("no app_websocket_clients gauge")


def early_frame() -> bytes:
    return FrameProtocol(client=True, extensions=[]).send_data('{"type": "ping"}', fin=True)


async def test_frames_sent_before_the_handshake_completes_leave_no_handler_behind(server: ServerProcess) -> None:
    host, port = address(server)
    before = await websocket_clients(server)
    for _ in range(5):
        stream = await trio.open_tcp_stream(host, port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/api/v1/ws")) + early_frame())
        with trio.fail_after(10):
            answer = await stream.receive_some()
        assert answer.startswith(b"HTTP/1.1 400 "), answer  # as Hypercorn answers a frame before its 101
        await stream.aclose()

    async def all_gone() -> bool:
        return await websocket_clients(server) <= before

    try:
        await eventually(all_gone, deadline=10)
    except trio.TooSlowError:
        pytest.fail(f"{await websocket_clients(server) - before:.0f} WebSocket handlers and actors left running")


async def test_frames_sent_while_the_server_refuses_the_handshake_do_not_stop_it(server: ServerProcess) -> None:
    host, port = address(server)
    for _ in range(30):
        try:
            stream = await trio.open_tcp_stream(host, port)
        except OSError:
            pytest.fail(f"the server stopped:\n{server.stderr()[-3000:]}")
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/ws/user/alice")))  # no token: 401
        try:
            with trio.fail_after(10):
                answer = await stream.receive_some()
            assert answer.startswith(b"HTTP/1.1 401 "), answer
            for _ in range(3):  # while the refusal is on its way
                await stream.send_all(early_frame())
        except trio.BrokenResourceError:
            pass  # the connection was closed already
        await stream.aclose()
    assert server.proc is not None and server.proc.poll() is None, server.stderr()[-3000:]
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{server.base_url}/health")).status_code == 200


async def _trickle(stream: trio.SocketStream) -> None:
    try:
        while True:
            await stream.send_all(b" ")
            await trio.sleep(0.25)  # the client's pace, not a wait for the server
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def _response_and_end(stream: trio.SocketStream, conn: h11.Connection) -> tuple[h11.Response, bytes, bool]:
    """The response, its body, and whether the server then closed the connection."""
    response: h11.Response | None = None
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            try:
                data = await stream.receive_some()
            except trio.BrokenResourceError:
                data = b""
            conn.receive_data(data)
            if not data and response is not None and conn.their_state is h11.DONE:
                return response, body, True
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            continue
        elif isinstance(event, h11.ConnectionClosed):
            assert response is not None
            return response, body, True


@pytest.mark.parametrize("path", ["/api/v1/reports", "/api/v1/agents/register"])
async def test_a_trickled_body_gets_408_and_its_connection_closes_after_the_body_timeout(
        server: ServerProcess, path: str) -> None:
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="POST", target=path, headers=[
        ("Host", f"{host}:{port}"), ("Content-Type", "application/json"),
        ("Content-Length", "400000")])))  # within both endpoints' limits (a probe's registration: 512 KiB)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_trickle, stream)
        with trio.fail_after(BODY_TIMEOUT + 20):  # generous: the machine is shared
            response, body, closed = await _response_and_end(stream, conn)
        nursery.cancel_scope.cancel()
    await stream.aclose()
    assert response.status_code == 408
    error = orjson.loads(body)["error"]
    assert error["code"] == "request_timeout"
    assert error["details"] == {"timeout_seconds": BODY_TIMEOUT, "setting": "server.body_timeout"}
    assert closed


async def test_a_body_refused_unread_closes_its_connection_even_if_the_client_stays_silent(
        server: ServerProcess) -> None:
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="POST", target="/api/v1/reports", headers=[
        ("Host", f"{host}:{port}"), ("Content-Type", "application/json"), ("Content-Length", str(64 * MiB))])))
    with trio.fail_after(20):  # the body never comes; the 413 does, then the end of the connection
        response, body, closed = await _response_and_end(stream, conn)
    await stream.aclose()
    assert response.status_code == 413
    assert orjson.loads(body)["error"]["code"] == "payload_too_large"
    assert closed


KEEP_ALIVE = 5.0
"""Hypercorn's ``keep_alive_timeout``, which the server keeps."""


async def _until_closed(stream: trio.SocketStream) -> bytes:
    """What the server still sends until it closes the connection."""
    received = b""
    while True:
        try:
            data = await stream.receive_some()
        except trio.BrokenResourceError:
            return received
        if not data:
            return received
        received += data


async def test_an_idle_keep_alive_connection_is_closed_and_a_busy_one_is_not(server: ServerProcess) -> None:
    host, port = address(server)
    idle = await trio.open_tcp_stream(host, port)
    conn = h11.Connection(h11.CLIENT)
    await idle.send_all(conn.send(h11.Request(method="GET", target="/health", headers=[("Host", host)])))
    await idle.send_all(conn.send(h11.EndOfMessage()))
    with trio.fail_after(KEEP_ALIVE + 20):  # generous: the machine is shared
        answered = await _until_closed(idle)  # the answer, then nothing from us: closed after the keep-alive timeout
    await idle.aclose()
    assert answered.startswith(b"HTTP/1.1 200 ")

    async with httpx.AsyncClient(timeout=KEEP_ALIVE + 30) as client:
        _, agent = await setup(server, client)
        # A request held longer than the keep-alive timeout is answered on its connection, which stays open.
        assert (await agent.wait(client, timeout=int(KEEP_ALIVE) + 2)).status_code == 204
        assert (await agent.wait(client, timeout=1)).status_code == 204


async def test_a_connection_that_never_sends_a_request_is_closed(server: ServerProcess) -> None:
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    with trio.fail_after(KEEP_ALIVE + 20):
        assert await _until_closed(stream) == b""
    await stream.aclose()


def test_plain_connections_stay_http_1_1(server: ServerProcess) -> None:
    """Neither HTTP/2's preface nor an ``Upgrade: h2c`` turns a connection into
    HTTP/2 (whose streams the edge's per-connection guards were not built for)."""
    with httpx.Client(http1=False, http2=True) as h2, pytest.raises(httpx.RemoteProtocolError):
        h2.get(f"{server.base_url}/health/ready")
    upgrade = httpx.get(f"{server.base_url}/health/ready", headers={
        "Upgrade": "h2c", "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})
    assert (upgrade.http_version, upgrade.status_code) == ("HTTP/1.1", 200)
    assert "Traceback" not in server.stderr()


@pytest.mark.parametrize(("request_bytes", "status", "code", "says"), [
    (b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "bad_request", "not a valid HTTP/1.1 request: "),
    # Not ended, and just over the limit: all of it read (a close with bytes unread would reset the
    # connection, the answer lost).
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 16_500, 431,
     "request_header_fields_too_large", "too large (more than 16384 bytes before their end)"),
    (b"POST /api/v1/reports HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501,
     "not_implemented", "transfer coding"),
])
async def test_a_request_h11_cannot_read_gets_a_json_error(server: ServerProcess, request_bytes: bytes, status: int,
                                                            code: str, says: str) -> None:
    """Refused before the application sees it (malformed, headers too large, an
    unknown transfer coding), it is still our JSON error, not an empty body."""
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(request_bytes)
    with trio.fail_after(30):
        answered = await _until_closed(stream)
    await stream.aclose()
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", host)]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(answered)
    response = conn.next_event()
    assert isinstance(response, h11.Response) and response.status_code == status
    headers = dict(response.headers)
    assert headers[b"content-type"] == b"application/json"
    # As every other answer: an id to quote in a report, and never read as a page.
    assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"x-request-id"]
    body = b""
    while isinstance(event := conn.next_event(), h11.Data):
        body += event.data
    error = orjson.loads(body)["error"]
    assert error["code"] == code and says in error["message"]
    assert "Traceback" not in server.stderr()


async def test_what_h11_quotes_of_a_bad_request_is_cut_short(server: ServerProcess) -> None:
    host, port = address(server)
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: " + b"a" * 5_000 + b"\r\n\r\n")
    with trio.fail_after(30):
        answered = await _until_closed(stream)
    await stream.aclose()
    assert answered.startswith(b"HTTP/1.1 400 ")
    message = orjson.loads(answered.partition(b"\r\n\r\n")[2])["error"]["message"]
    assert message.startswith("not a valid HTTP/1.1 request: ") and message.endswith("...")
    assert len(message) < 300


async def test_a_client_that_stops_reading_has_its_connection_closed_after_the_write_timeout() -> None:
    """A response larger than the sockets' buffers to a client that reads
    nothing: the write waits ``--write-timeout``, then the connection goes, and
    the response (a topology version of its own) with it."""
    from tests.synthetic import host_report

    with ServerProcess(["--write-timeout", "2s", "--rate-per-address", "100000", "--reports-per-address",
                        "100000"]) as slow_reader_server:
        async with httpx.AsyncClient(timeout=30) as client:
            for index in range(120):  # ~10 MB of full topology
                posted = await client.post(f"{slow_reader_server.base_url}/api/v1/reports",
                                           json=host_report(index, timestamp=time.time()))
                assert posted.status_code == 202, posted.text
        host, port = address(slow_reader_server)
        sock = trio.socket.socket()
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096)
        await sock.connect((host, port))
        stream = trio.SocketStream(sock)
        await stream.send_all(f"GET /api/v1/query/topology HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        client_port = sock.getsockname()[1]

        async def closed_by_the_server() -> bool:
            held = [c for c in psutil.Process(slow_reader_server.proc.pid).net_connections("tcp")  # type: ignore[union-attr]  # started
                    if c.raddr and c.raddr.port == client_port and c.status == psutil.CONN_ESTABLISHED]
            return not held and f"closed a connection from {host} whose client read nothing" in slow_reader_server.stderr()

        await eventually(closed_by_the_server, deadline=60.0)
        await stream.aclose()
        assert (await httpx.AsyncClient().get(f"{slow_reader_server.base_url}/health/ready")).status_code == 200


@pytest.mark.parametrize("opening", [
    b"GARBAGE\r\n\r\n",  # answered 400: h11 keeps, unparsed, whatever follows
    b"POST /api/v1/report HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",  # 404, its body unread
], ids=["after-a-malformed-request", "chunked-body-refused-unread"])
async def test_what_a_client_sends_after_the_server_closed_is_dropped_not_kept(
        server: ServerProcess, opening: bytes) -> None:
    """A connection the server closes reads on for a while (so that a client still
    sending reads its answer, not a reset), but drops what it reads, and not for
    ever: handed to h11, one client's bytes after a malformed request were kept
    (1 GiB in 2 s)."""
    before = rss_mib(server.proc.pid)
    stream = await trio.open_tcp_stream(*address(server))
    chunk = b"1\r\na\r\n" * 20_000 if b"chunked" in opening else b"x" * 120_000
    sent = 0
    with trio.fail_after(30):
        await stream.send_all(opening)
        try:
            while sent < 1024 * MiB:
                await stream.send_all(chunk)
                sent += len(chunk)
        except trio.BrokenResourceError:
            pass  # closed after LINGER_BYTES (16 MiB) or LINGER (2 s)
    await stream.aclose()
    assert sent < 256 * MiB
    assert rss_mib(server.proc.pid) - before < 64


@pytest.mark.parametrize("handshake", [
    b"GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99\r\n\r\n",
    b"GET /ws/user/alice HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    b"GET /api/v1/ws HTTP/1.0\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
], ids=["another version", "no key", "HTTP/1.0"])
async def test_a_handshake_hypercorn_refuses_gets_a_json_400_and_its_connection_closes(
        server: ServerProcess, handshake: bytes) -> None:
    """It was answered ``connection: close`` and held open for good: 20 of them
    took every connection of their address."""
    stream = await trio.open_tcp_stream(*address(server))
    await stream.send_all(handshake)
    with trio.fail_after(20):  # never, before
        answered = await _until_closed(stream)
    await stream.aclose()
    head, _, body = answered.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answered
    assert orjson.loads(body)["error"]["code"] == "invalid_websocket_handshake"
    assert b"\r\nx-content-type-options: nosniff\r\n" in head.lower() and b"\r\nx-request-id: " in head.lower()
