"""TLS mistakes as the probe meets them (real handshakes against small servers
on loopback): each is said with its reason and the fix, where the probe said
"ConnectError: no reason given" or "Connection reset by peer"."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from trioscope.wire import client_tls
from trioscope_probe._refusals import transport_problem

Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def _answer_400(stream: trio.abc.Stream) -> None:
    """What a plain HTTP server does with bytes it cannot parse (a TLS hello)."""
    try:
        await stream.receive_some(65536)
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    except trio.BrokenResourceError:
        pass
    finally:
        await stream.aclose()


async def _serve(nursery: trio.Nursery, tls: ssl.SSLContext | None) -> int:
    """A server on a free loopback port (TLS with ``tls``); its port."""
    listeners: list[Any] = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    if tls is not None:
        listeners = [trio.SSLListener(listener, tls, https_compatible=True) for listener in listeners]
    nursery.start_soon(trio.serve_listeners, _answer_400, listeners)
    return int(port)


def _server_tls(chain_pem: bytes, tmp_path: Path) -> ssl.SSLContext:
    path = tmp_path / "server.pem"
    path.write_bytes(chain_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(path))
    return context


async def _problem(url: str, verify: ssl.SSLContext, body: bytes = b"{}") -> str:
    """What the probe logs of a POST to ``url`` (as its reports are posted)."""
    async with httpx.AsyncClient(verify=verify, timeout=10.0) as client:
        with pytest.raises(httpx.TransportError) as failure:
            await client.post(url, content=body)
    return transport_problem(failure.value)


async def test_a_self_signed_server_without_ca_file_names_the_reason_and_the_flag(
        nursery: trio.Nursery, tmp_path: Path) -> None:
    authority = trustme.CA()  # its own certificate is self-signed: served as the server's
    port = await _serve(nursery, _server_tls(authority.private_key_pem.bytes() + authority.cert_pem.bytes(), tmp_path))
    said = await _problem(f"https://127.0.0.1:{port}/api/v1/reports", client_tls(None))
    assert said == ("ConnectError: certificate verify failed: self-signed certificate; "
                    "give the server's CA (or its self-signed certificate) with --ca-file")


async def test_a_private_ca_not_given_names_the_reason_and_the_flag(nursery: trio.Nursery, tmp_path: Path) -> None:
    issued = trustme.CA().issue_cert("127.0.0.1")
    port = await _serve(nursery, _server_tls(issued.private_key_and_cert_chain_pem.bytes(), tmp_path))
    said = await _problem(f"https://127.0.0.1:{port}/", client_tls(None))
    assert said.startswith("ConnectError: certificate verify failed: unable to get local issuer certificate; ")
    assert said.endswith("with --ca-file")


async def test_a_name_the_certificate_does_not_hold_says_so(nursery: trio.Nursery, tmp_path: Path) -> None:
    authority = trustme.CA()
    issued = authority.issue_cert("trioscope.example.com")
    port = await _serve(nursery, _server_tls(issued.private_key_and_cert_chain_pem.bytes(), tmp_path))
    ca = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(ca))
    said = await _problem(f"https://127.0.0.1:{port}/", client_tls(str(ca)))
    assert said == ("ConnectError: certificate verify failed: IP address mismatch, certificate is not valid for "
                    "'127.0.0.1'; use a --server name or address the certificate holds")


async def test_https_to_a_plain_server_says_it_does_not_speak_tls(nursery: trio.Nursery) -> None:
    port = await _serve(nursery, None)
    said = await _problem(f"https://127.0.0.1:{port}/", client_tls(None))
    assert said == "ConnectError: the server does not speak TLS at this address; use http://"


@pytest.mark.parametrize("body", [b"{}", b"x" * 200_000], ids=["small", "report-sized"])
async def test_http_to_a_tls_server_hints_that_it_may_want_https(
        nursery: trio.Nursery, tmp_path: Path, body: bytes) -> None:
    """The server drops a connection whose first bytes are no TLS hello: closed
    (a small request) or reset (a report it had not read)."""
    issued = trustme.CA().issue_cert("127.0.0.1")
    port = await _serve(nursery, _server_tls(issued.private_key_and_cert_chain_pem.bytes(), tmp_path))
    said = await _problem(f"http://127.0.0.1:{port}/api/v1/reports", client_tls(None), body)
    assert said.endswith("; if the server serves https, use an https:// --server"), said


def test_a_reset_over_https_or_a_refusal_gives_no_https_hint() -> None:
    request = httpx.Request("POST", "https://server/api/v1/reports")
    reset = httpx.ReadError("socket connection broken: [Errno 104] Connection reset by peer", request=request)
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert transport_problem(reset) == "ReadError: socket connection broken: [Errno 104] Connection reset by peer"
    refused = httpx.ConnectError("[Errno 111] Connection refused", request=httpx.Request("GET", "http://server/"))
    assert transport_problem(refused) == "ConnectError: [Errno 111] Connection refused"


def test_an_empty_error_says_the_first_cause_that_says_anything() -> None:
    error = httpx.ConnectError("")
    error.__cause__ = trio.BrokenResourceError()
    error.__cause__.__cause__ = OSError(113, "No route to host")
    assert transport_problem(error) == "ConnectError: [Errno 113] No route to host"


@pytest.mark.parametrize(("error", "said"), [
    (ssl.SSLError("handshake aborted"), "TLS handshake failed: handshake aborted"),
    (ssl.SSLCertVerificationError(1, "certificate verify failed"),
     "certificate verify failed: certificate verify failed"),
    (ssl.SSLEOFError(), "the server closed the connection during the TLS handshake (if it does not speak TLS at "
                        "this address, use http://)"),
])
def test_an_ssl_error_built_in_python_is_said_too(error: ssl.SSLError, said: str) -> None:
    """Only the ssl module sets ``reason`` and ``verify_code``: an error a
    library raises itself has neither, and was an AttributeError."""
    from trioscope_probe._refusals import tls_problem

    assert tls_problem(error) == said


async def test_a_plain_server_that_answered_then_drops_connections_gives_no_https_hint(
        nursery: trio.Nursery, caplog: pytest.LogCaptureFixture) -> None:
    """A plain http:// server restarting (SIGTERM) while an enrolled probe
    polled: "... Connection reset by peer; if the server serves https, use an
    https:// --server" (a reviewer's). It had answered: it speaks HTTP."""
    import logging

    from tests.waiting import eventually
    from trioscope_probe._agent import CommandAgent, Credentials

    connections = 0

    async def answer_once(stream: trio.abc.Stream) -> None:
        nonlocal connections
        connections += 1
        try:
            await stream.receive_some(65536)
            if connections == 1:  # then as if it stopped: connections closed unanswered
                await stream.send_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
        except trio.BrokenResourceError:
            pass
        finally:
            await stream.aclose()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, answer_once, listeners)
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
        agent = CommandAgent(client, Credentials("dep", "agent-1", "token-1"), docker_host=None)
        nursery.start_soon(agent._poll_loop)

        async def failed() -> list[str]:
            return [r.getMessage() for r in caplog.records if "command polling failed" in r.getMessage()]

        said = await eventually(failed, 30)
        nursery.cancel_scope.cancel()
    assert connections >= 2 and "https" not in said[0], said
