"""Abuse at the transport level, against a real server with raw clients: a
WebSocket message that never ends, and a request body that trickles in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import attrs
import httpx
import pytest
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

from tests.integration.test_commands import setup
from tests.server_process import ServerProcess
from tests.waiting import eventually

MiB = 1024 * 1024
ATTACK = 100 * MiB
"""What the client tries to send as one never-finished message."""
FRAME = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--rate-per-address", "100000"]) as process:
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
