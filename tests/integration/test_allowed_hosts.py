"""DNS rebinding: a web page whose name was pointed at a server listening on
loopback read its topology, ``/metrics`` and live view from the operator's
browser (same-origin requests; a WebSocket whose ``Origin`` matched the
``Host`` it was sent to). The server now answers only the names it is known by."""

from __future__ import annotations

import httpx
import pytest
import trio

from tests.server_process import ServerProcess

REBOUND = "attacker.example"


async def _websocket(server: ServerProcess, host: str) -> int:
    """The status of a live-view handshake naming ``host`` (Host and Origin, as
    a rebinding page's browser sends them), written by hand: a client library
    sends the Host it connects to."""
    port = int(server.base_url.rpartition(":")[2])
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET /api/v1/ws?view=hosts HTTP/1.1\r\nHost: {host}:{port}\r\nOrigin: http://{host}:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode())
        answer = b""
        while b"\r\n" not in answer:
            chunk = await stream.receive_some(4096)
            assert chunk, answer
            answer += chunk
    return int(answer.split(b" ", 2)[1])


async def test_a_loopback_server_refuses_a_page_of_another_name() -> None:
    with ServerProcess(["--local-probe", "false"]) as server:  # the harness listens on 127.0.0.1
        port = server.base_url.rpartition(":")[2]
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            refused = await client.get("/api/v1/query/topology", headers={"Host": f"{REBOUND}:{port}"})
            assert refused.status_code == 421, refused.text
            error = refused.json()["error"]
            assert error["code"] == "host_not_allowed" and "--allowed-hosts" in error["message"]
            assert (await client.get("/metrics", headers={"Host": REBOUND})).status_code == 421
            for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
                assert (await client.get("/api/v1/query/topology", headers={"Host": host})).status_code == 200
        with trio.fail_after(30):
            assert await _websocket(server, REBOUND) == 421
            assert await _websocket(server, "localhost") == 101


@pytest.mark.parametrize(("flags", "answered"), [
    (["--allowed-hosts", f"ops.example,.{REBOUND}"], {"ops.example": 200, REBOUND: 200, "other.example": 421}),
    (["--trusted-proxies", "127.0.0.1/32"], {REBOUND: 200}),  # a name the server cannot know, passed on
    # Names listed: a trusted proxy's requests are checked too (nginx's default server answers any name, and
    # the proxy's machine is trusted: a rebound name came through, a page on that machine straight in).
    (["--trusted-proxies", "127.0.0.1/32", "--allowed-hosts", "ops.example"], {"ops.example": 200, REBOUND: 421}),
])
async def test_listed_names_and_trusted_proxies_are_answered(flags: list[str], answered: dict[str, int]) -> None:
    with ServerProcess(["--local-probe", "false", *flags]) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for host, status in answered.items():
                response = await client.get("/health", headers={"Host": host})
                assert response.status_code == status, (host, response.text)


async def test_a_trusted_proxy_refused_for_its_host_is_said_once() -> None:
    """A proxy passing its upstream's name (nginx's default Host) is refused on every
    request once names are listed: the log says so once, naming the name and the fix."""
    flags = ["--local-probe", "false", "--trusted-proxies", "127.0.0.1/32", "--allowed-hosts", "ops.example"]
    with ServerProcess(flags) as server:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            for _ in range(3):
                assert (await client.get("/health", headers={"Host": "trioscope_upstream"})).status_code == 421
    said = [line for line in server.stderr().splitlines() if "trioscope_upstream" in line and "$http_host" in line]
    assert len(said) == 1, said
