"""The stream reader against a nats-server of the test's own that goes away
(``OwnNatsServer``): killed while the reader catches up, or its stream made
again from nothing while the reader runs."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js import JetStreamContext
from nats.js.api import StreamConfig

from tests.bus_server import OwnNatsServer
from trioscope.bus import _reader
from trioscope.bus._reader import Fetched, StreamReader

STREAM = "reports"


@pytest.fixture
def server(own_nats: OwnNatsServer) -> OwnNatsServer:
    return own_nats  # tests/conftest.py


async def publish(js: JetStreamContext, prefix: str, count: int) -> None:
    # 500 at once: nats-py's default 1 s for each acknowledgement is too short on a loaded machine.
    await asyncio.gather(*(js.publish(f"{STREAM}.agent-{n % 7}", f"{prefix}{n}".encode(), stream=STREAM, timeout=30)
                           for n in range(1, count + 1)))


def with_reader(url: str, reports: int, body: Callable[[StreamReader, JetStreamContext], Awaitable[None]]) -> None:
    """``body`` with a reader of a stream of ``reports`` messages, on a
    connection that reconnects (and invalidates the reader) as ``ReportBus``'s does."""
    async def run() -> None:
        reader: StreamReader | None = None

        async def reconnected() -> None:
            if reader is not None:
                reader.invalidate()

        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=True, reconnect_time_wait=0.2,
                                max_reconnect_attempts=-1, ping_interval=1, max_outstanding_pings=2,
                                reconnected_cb=reconnected)
        js = nc.jetstream(timeout=1.0)
        await js.add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"]))
        for start in range(0, reports, 500):
            await publish(js, "", min(500, reports - start))
        reader = StreamReader(js, STREAM)
        try:
            await asyncio.wait_for(body(reader, js), 90)
        finally:
            await reader.close()
            await nc.close()

    asyncio.run(run())


def wipe(server: OwnNatsServer) -> None:
    """The stopped server's store emptied: it starts again without the stream."""
    for entry in Path(server._store.name).iterdir():
        shutil.rmtree(entry)


async def take_some(reader: StreamReader, after: int) -> tuple[list[Fetched], int]:
    while True:
        try:
            taken, pending = await reader.take(after)
        except nats.errors.Error:
            await asyncio.sleep(0.1)  # the bus is away: read again, as the feed does
            continue
        if taken:
            return taken, pending


def test_a_reader_whose_server_is_killed_while_it_catches_up_never_says_it_reached_the_end(
        server: OwnNatsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reader, "BUFFER", 50)

    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        after = 0
        while after < 200:
            taken, pending = await take_some(reader, after)
            after = taken[-1].sequence
        assert pending > 0
        server.stop()  # kill -9, its store kept
        said: list[object] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 4.0
        while loop.time() < deadline:
            try:
                taken, pending = await reader.take(after)
            except nats.errors.Error as exc:
                said.append(type(exc).__name__)
                await asyncio.sleep(0.1)
                continue
            said.append((len(taken), pending))
            assert taken or pending > 0, said  # a read that came back empty never says the end was reached
            if taken:
                after = taken[-1].sequence
        assert reader.lag is None, said
        server.start()
        while after < 3000:
            taken, pending = await take_some(reader, after)
            assert taken[0].sequence == after + 1
            after = taken[-1].sequence
        assert pending == 0

    with_reader(server.url, 3000, body)


def test_a_stream_made_again_from_an_empty_store_is_read_again_from_its_first_report(
        server: OwnNatsServer) -> None:
    """The server restarted with its store wiped, and the stream created
    anew (by another replica's start) with fewer reports than were read here."""
    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        after = 0
        while after < 300:
            taken, _ = await take_some(reader, after)
            after = taken[-1].sequence
        server.stop()
        wipe(server)
        server.start()
        nc = await nats.connect(server.url, connect_timeout=2, allow_reconnect=False)
        try:
            other = nc.jetstream()
            await other.add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"]))
            for n in range(1, 22):
                await other.publish(f"{STREAM}.agent-{n}", f"new {n}".encode(), stream=STREAM)
        finally:
            await nc.close()
        got: list[Fetched] = []
        while len(got) < 21:
            taken, pending = await take_some(reader, got[-1].sequence if got else after)
            got += taken
        assert [f.data for f in got] == [f"new {n}".encode() for n in range(1, 22)]
        assert pending == 0 and reader.recreations == 1

    with_reader(server.url, 300, body)


def test_a_stream_deleted_and_made_again_with_more_reports_than_were_read_is_read_from_its_start(
        server: OwnNatsServer) -> None:
    async def body(reader: StreamReader, js: JetStreamContext) -> None:
        after = 0
        while after < 20:
            taken, _ = await take_some(reader, after)
            after = taken[-1].sequence
        await js.delete_stream(STREAM)
        await js.add_stream(StreamConfig(name=STREAM, subjects=[f"{STREAM}.>"]))
        await publish(js, "new ", 60)
        got: list[Fetched] = []
        while not got or got[-1].sequence < 60:
            taken, _ = await take_some(reader, got[-1].sequence if got else after)
            got += taken
        assert [f.sequence for f in got] == list(range(1, 61)) and reader.recreations == 1

    with_reader(server.url, 20, body)
