"""A ``tls://`` bus URL is TLS or no connection: a server that does not do
TLS is refused before the client sends anything, its password included
(``trioscope.bus._tls``); one that does is still upgraded to TLS."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import trio

from tests.bus.test_client_operations import LOGGER, plain_nats_server, running_bus

PASSWORD = "S3cretPW"


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and getattr(r, "event", None) == "bus_tls_refused"]


async def wait_for_refusal(caplog: pytest.LogCaptureFixture, deadline: float = 20.0) -> logging.LogRecord:
    with trio.fail_after(deadline):
        while not refusals(caplog):
            await trio.sleep(0.05)  # the next look at the condition
    return refusals(caplog)[0]


async def test_a_tls_url_refuses_a_nats_server_without_tls_and_says_why(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with plain_nats_server("-js", "-sd", str(tmp_path), "--user", "opsuser", "--pass", PASSWORD) as address:
        async with running_bus(f"tls://opsuser:{PASSWORD}@{address}", connected=False) as bus:
            said = await wait_for_refusal(caplog)
            assert not bus.ready.is_set() and not bus.progress.connected
    text = said.getMessage()
    assert said.levelno == logging.ERROR
    assert "does not do TLS" in text and "tls://opsuser:***@" in text and address in text, text
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert PASSWORD not in everything
    assert not any("connected to the bus" in r.getMessage() for r in caplog.records)
    assert len(refusals(caplog)) == 1  # said once, not at every attempt


class FakeNatsServer:
    """Says ``info`` to whoever connects and records what each connection sends until it closes."""

    def __init__(self, info: dict[str, object]) -> None:
        self.info = info
        self.received: list[bytes] = []
        """What each connection sent, once it closed (or went quiet for ``QUIET`` seconds)."""
        self.closed = trio.Event()
        """Set once the first connection is recorded."""
        self.port = 0

    QUIET = 5.0

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._one, listeners)

    async def _one(self, stream: trio.SocketStream) -> None:
        got = b""
        async with stream:
            await stream.send_all(b"INFO " + json.dumps(self.info).encode() + b"\r\n")
            with trio.move_on_after(self.QUIET):
                while chunk := await stream.receive_some():
                    got += chunk
        self.received.append(got)
        self.closed.set()


async def test_a_tls_url_sends_nothing_to_a_server_that_says_no_tls(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    fake = FakeNatsServer({"server_id": "FAKE", "version": "2.9.10", "proto": 1, "headers": True,
                           "max_payload": 1048576, "auth_required": True})
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        async with running_bus(f"tls://opsuser:{PASSWORD}@127.0.0.1:{fake.port}", connected=False):
            await wait_for_refusal(caplog)
            with trio.fail_after(10):
                await fake.closed.wait()  # the refused connection was closed by the client
        nursery.cancel_scope.cancel()
    assert fake.received[0] == b"", fake.received  # not even CONNECT
    assert all(PASSWORD.encode() not in got and b"CONNECT" not in got for got in fake.received), fake.received


async def test_a_tls_url_still_upgrades_a_server_that_requires_tls(caplog: pytest.LogCaptureFixture) -> None:
    """The refusal leaves nats-py's upgrade alone: after an INFO with
    ``tls_required``, the client starts a TLS handshake (a TLS record, 0x16)."""
    caplog.set_level(logging.DEBUG, LOGGER)
    fake = FakeNatsServer({"server_id": "FAKE", "version": "2.9.10", "proto": 1, "headers": True,
                           "max_payload": 1048576, "auth_required": True, "tls_required": True})
    fake.QUIET = 1.0
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        async with running_bus(f"tls://opsuser:{PASSWORD}@127.0.0.1:{fake.port}", connected=False):
            with trio.fail_after(15):
                await fake.closed.wait()
        nursery.cancel_scope.cancel()
    first = fake.received[0]
    assert first[:1] == b"\x16", first[:40]  # a TLS handshake record, the ClientHello
    assert PASSWORD.encode() not in first and b"CONNECT" not in first
    assert not refusals(caplog)
