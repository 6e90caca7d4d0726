"""A stream that nats-server gives another creation time without making it
again: the server restarted, the stream's limits updated (as a replica with
a longer retention does), the server restarted again (nats-server 2.9.10
then reports the last restart's time as the stream's ``created``). The reader reads on from where it was, not the whole
stream again; a stream made again under it is still read from its start."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from tests.bus.test_reader_server_loss import STREAM, publish, take_some, with_reader
from tests.bus_server import OwnNatsServer
from trioscope.bus._reader import Fetched, StreamReader

LOGGER = "trioscope.bus._reader"


@pytest.fixture
def server(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


def restart(server: OwnNatsServer) -> None:
    """A routine restart: SIGTERM (the server shuts down cleanly), started again on its store."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGTERM)
    server.process.wait(timeout=30)
    server.process = None
    server.start()


async def lengthen(url: str, max_age: float) -> float:
    """The stream's ``max_age`` set to ``max_age`` (a replica with a longer retention's ``update_stream``);
    its creation time as the server says it then."""
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        await js.update_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"], max_age=max_age))
        info = await js.stream_info(STREAM)
        assert info.created is not None
        return info.created.timestamp()
    finally:
        await nc.close()


async def created(url: str) -> float:
    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        assert info.created is not None
        return info.created.timestamp()
    finally:
        await nc.close()


async def publish_when_back(js: JetStreamContext, prefix: str, count: int) -> None:
    """``publish`` once the connection is back from a restart (one at a time: none twice)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    for n in range(1, count + 1):
        while True:
            try:
                await js.publish(f"{STREAM}.agent-{n % 7}", f"{prefix}{n}".encode(), stream=STREAM)
                break
            except (nats.errors.Error, nats.js.errors.Error):
                assert loop.time() < deadline, "the server did not take a report within 30 s of its restart"
                await asyncio.sleep(0.1)  # the next attempt, while nats-py reconnects


async def purge_when_back(js: JetStreamContext) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        try:
            await js.purge_stream(STREAM)
            return
        except (nats.errors.Error, nats.js.errors.Error):
            assert loop.time() < deadline, "the server did not purge within 30 s of its restart"
            await asyncio.sleep(0.1)  # the next attempt, while nats-py reconnects


async def read_to(reader: StreamReader, after: int, until: int) -> list[Fetched]:
    got: list[Fetched] = []
    while after < until:
        taken, _ = await take_some(reader, after)
        got += taken
        after = taken[-1].sequence
    return got


def test_a_stream_updated_and_its_server_restarted_is_read_on_not_again(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, LOGGER)

    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        await read_to(reader, 0, 300)
        restart(server)
        await lengthen(server.url, 7200.0)
        before = await created(server.url)
        restart(server)
        assert await created(server.url) != before  # nats-server's behaviour this guards against
        await publish_when_back(js, "later ", 20)
        got = await read_to(reader, 300, 320)
        assert [f.sequence for f in got] == list(range(301, 321)), [f.sequence for f in got][:5]
        assert reader.recreations == 0

    with_reader(server.url, 300, body)
    said = [r for r in caplog.records if r.name == LOGGER]
    assert not any(getattr(r, "event", None) == "bus_stream_recreated" for r in said), [r.getMessage() for r in said]


def test_a_stream_whose_read_reports_aged_out_across_such_a_restart_is_read_on(
        server: OwnNatsServer, caplog: pytest.LogCaptureFixture) -> None:
    """The newest report read is gone, and the stream starts past it: the
    normal end of a report (``max_age``), no stream made again."""
    caplog.set_level(logging.INFO, LOGGER)

    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        await read_to(reader, 0, 50)
        restart(server)
        await lengthen(server.url, 7200.0)
        await purge_when_back(js)  # every report read gone, the stream starting at 51
        before = await created(server.url)
        restart(server)
        assert await created(server.url) != before
        await publish_when_back(js, "later ", 10)
        got = await read_to(reader, 50, 60)
        assert [f.sequence for f in got] == list(range(51, 61))
        assert reader.recreations == 0

    with_reader(server.url, 50, body)
    said = [r for r in caplog.records if r.name == LOGGER]
    assert not any(getattr(r, "event", None) == "bus_stream_recreated" for r in said), [r.getMessage() for r in said]
    assert any(getattr(r, "event", None) == "bus_stream_kept" and "aged out" in r.getMessage() for r in said), [r.getMessage() for r in said]


def test_a_stream_made_again_with_as_many_reports_across_a_restart_is_read_again(
        server: OwnNatsServer) -> None:
    """Deleted and made again with more reports than were read, then the
    server restarted: the creation time changed, and the report at the
    sequence read is another one."""
    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        await read_to(reader, 0, 30)
        await js.delete_stream(STREAM)
        await js.add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"]))
        await publish(js, "new ", 40)
        restart(server)
        got = await read_to(reader, 30, 40)
        assert [f.sequence for f in got] == list(range(1, 41)) and reader.recreations == 1
        assert got[0].data.startswith(b"new ")

    with_reader(server.url, 30, body)
