"""``ReportBus`` against nats-servers of the test's own, as an operator meets
them: one restarted with an empty store, one lost before the process stops,
one without JetStream, one that asks for a password; and a stream that
another replica made with other limits."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import nats
import pytest
import trio
from nats.js.api import StreamConfig

from tests.bus_server import HOST, OwnNatsServer, _wait_until_answers
from tests.free_port import free_port
from trioscope.bus import AsyncioThread, BusUnavailable, ReportBus
from trioscope.bus import _client

STREAM = "ops"
LOGGER = "trioscope.bus._client"


@pytest.fixture
def server(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


@asynccontextmanager
async def running_bus(url: str, retention: float = 3600.0, max_bytes: int = 64 * 1024**2,
                      connected: bool = True) -> AsyncIterator[ReportBus]:
    """A ``ReportBus`` connecting (and connected, if ``connected``) to ``url``, as ``open_report_bus`` runs it."""
    thread = AsyncioThread(name="nats-test")
    thread.start()
    bus = ReportBus(url, STREAM, retention, thread, max_bytes)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.keep_connecting)
            nursery.start_soon(bus.send_outbox)
            if connected:
                with trio.fail_after(20):
                    await bus.ready.wait()
            yield bus
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await bus.close()
        thread.stop()


async def publish_eventually(bus: ReportBus, deadline: float = 30.0) -> int:
    with trio.fail_after(deadline):
        while True:
            try:
                return await bus.publish("agent-1", b"report")
            except BusUnavailable:
                await trio.sleep(0.2)


def stream_limits(url: str) -> tuple[float, int]:
    async def read() -> tuple[float, int]:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            info = await nc.jetstream().stream_info(STREAM)
            return float(info.config.max_age or 0), int(info.config.max_bytes or -1)
        finally:
            await nc.close()

    return asyncio.run(read())


def make_stream(url: str, max_age: float, max_bytes: int) -> None:
    async def make() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"], max_age=max_age,
                                                         max_bytes=max_bytes))
        finally:
            await nc.close()

    asyncio.run(make())


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == LOGGER]


async def _attempts(caplog: pytest.LogCaptureFixture, count: int, start: str, deadline: float = 30.0) -> None:
    """Wait until ``count`` attempts to connect failed again (said at debug level, beginning with ``start``)."""
    with trio.fail_after(deadline):
        while sum(m.startswith(start) for m in messages(caplog)) < count:
            await trio.sleep(0.05)  # the next look at the condition


# ---- a server restarted with an empty store --------------------------------------------------------------


async def test_a_server_restarted_with_an_empty_store_gets_the_stream_again_and_publishing_works(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    async with running_bus(server.url) as bus:
        assert await bus.publish("agent-1", b"one") == 1
        server.stop()
        for entry in Path(server._store.name).iterdir():
            shutil.rmtree(entry)
        server.start()
        # A report that finds no stream (before the reconnection's check or after) has it made again.
        assert await publish_eventually(bus) == 1  # the first report of the new stream
        assert await bus.publish("agent-1", b"three") == 2
        assert bus.progress.streams_created == 1
        assert bus.progress.reconnects == 1
    said = [m for m in messages(caplog) if "was not on the bus" in m]
    assert len(said) == 1, messages(caplog)
    assert stream_limits(server.url)[0] == 3600.0  # made again as it was


# ---- stopping after the bus was lost ---------------------------------------------------------------------------


async def test_closing_after_the_bus_was_lost_raises_nothing(server: OwnNatsServer) -> None:
    async with running_bus(server.url) as bus:
        await bus.publish("agent-1", b"one")
        server.stop()
        with trio.fail_after(20):
            while bus.progress.connected:
                await trio.sleep(0.05)
    # the block's close ran without raising


async def test_a_close_that_fails_on_a_reset_connection_is_swallowed(
        caplog: pytest.LogCaptureFixture) -> None:
    """nats-py's close flushes to the socket of a connection already lost: ConnectionResetError."""
    caplog.set_level(logging.DEBUG, LOGGER)
    thread = AsyncioThread(name="nats-test")
    thread.start()
    bus = ReportBus("nats://u:secret@127.0.0.1:1", STREAM, 60.0, thread)

    class Lost:
        async def close(self) -> None:
            raise ConnectionResetError(104, "Connection reset by peer")

    bus._nc = Lost()  # type: ignore[assignment]  # a connection already lost, as nats-py leaves it
    try:
        await bus.close()
    finally:
        thread.stop()
    assert any("Connection reset by peer" in m for m in messages(caplog))


# ---- a stream made by a replica with other limits -------------------------------------------------------------


async def test_a_replica_with_a_shorter_retention_does_not_shorten_the_stream_and_says_so(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    make_stream(server.url, 3600.0, 64 * 1024**2)
    async with running_bus(server.url, retention=120.0, max_bytes=64 * 1024**2) as bus:
        assert await bus.publish("agent-1", b"one") == 1
    assert stream_limits(server.url) == (3600.0, 64 * 1024**2)
    (said,) = [m for m in messages(caplog) if "shorter than" in m]
    assert "storage.max_data_age" in said and "2m0s" in said and "1h0m0s" in said, said


async def test_a_replica_with_a_longer_retention_lengthens_the_stream_and_says_from_what_to_what(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)
    make_stream(server.url, 120.0, 64 * 1024**2)
    async with running_bus(server.url, retention=3600.0, max_bytes=32 * 1024**2):
        pass
    assert stream_limits(server.url) == (3600.0, 64 * 1024**2)  # longer age taken, larger size kept
    (said,) = [m for m in messages(caplog) if "now for" in m]
    assert "2m0s" in said and "1h0m0s" in said and "storage.max_data_age" in said, said


@pytest.mark.parametrize(("old", "wanted", "kept"), [
    ((3600.0, 100), (120.0, 100), (3600.0, 100)),
    ((120.0, 100), (3600.0, 50), (3600.0, 100)),
    ((0.0, -1), (120.0, 100), (0.0, -1)),  # unlimited stays so
    ((120.0, 100), (0.0, -1), (0.0, -1)),
    ((3600.0, 100), (3600.0000001, 100), (3600.0, 100)),  # the server's rounding is no change
])
def test_kept_limits_are_the_longer_of_each(old: tuple[float, int], wanted: tuple[float, int],
                                            kept: tuple[float, int]) -> None:
    assert _client._kept_limits(*old, *wanted) == kept


# ---- a server without JetStream, a server with a password ----------------------------------------------------


@contextmanager
def plain_nats_server(*args: str) -> Iterator[str]:
    """A nats-server of the test's own with ``args`` (no JetStream unless given), its URL without credentials."""
    binary = "/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server") else shutil.which("nats-server")
    if binary is None:
        pytest.skip("nats-server is not installed")
    port = free_port(HOST)
    process = subprocess.Popen([binary, "-a", HOST, "-p", str(port), *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_until_answers(port, process)
        yield f"{HOST}:{port}"
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()


async def test_a_server_without_jetstream_is_said_once_and_never_as_a_lost_bus(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with plain_nats_server() as address:
        async with running_bus(f"nats://{address}", connected=False) as bus:
            await _attempts(caplog, 2, "bus: connecting failed again")  # three attempts
            assert not bus.ready.is_set()
    said = messages(caplog)
    assert sum("JetStream is not enabled on the NATS server" in m and "-js" in m for m in said) == 1, said
    assert not any("lost the bus" in m or "ServiceUnavailableError" in m for m in said), said


async def test_a_bus_out_of_reach_is_said_once_an_outage_however_many_attempts(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    async with running_bus(f"nats://{HOST}:{free_port(HOST)}", connected=False) as bus:
        await _attempts(caplog, 3, "bus: ")
        assert not bus.ready.is_set()
    unreachable = [r for r in caplog.records if getattr(r, "event", None) == "bus_unreachable"]
    assert len(unreachable) == 1, messages(caplog)
    assert unreachable[0].levelno == logging.WARNING and "cannot reach the bus" in unreachable[0].getMessage()


async def test_the_bus_password_is_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with plain_nats_server("-js", "-sd", str(tmp_path), "--user", "opsuser", "--pass", "S3cretPW") as address:
        async with running_bus(f"nats://opsuser:WRONGpw@{address}", connected=False):
            await _attempts(caplog, 2, "bus: ")  # the first refusal said, and another
        async with running_bus(f"nats://opsuser:S3cretPW@{address}") as bus:
            assert await bus.publish("agent-1", b"one") == 1
    said = "\n".join(messages(caplog))
    # Refused, as such and once (not "cannot reach"), then connected: the password in neither.
    assert said.count("refused this replica's login") == 1
    assert "cannot reach the bus" not in said and "connected to the bus at nats://opsuser:***@" in said
    assert "S3cretPW" not in said and "WRONGpw" not in said
