"""The stream read ahead in the asyncio thread (``StreamReader``), against a
real nats-server with a stream of the test's own."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import nats
import pytest
from nats.js.api import StreamConfig

from trioscope.bus import _reader
from trioscope.bus._reader import Fetched, StreamReader


def with_stream(url: str, stream: str, reports: int,
                body: Callable[[StreamReader], Awaitable[None]]) -> None:
    """``body`` with a reader of ``stream`` holding ``reports`` messages (data: their number)."""
    async def run() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        js = nc.jetstream()
        await js.add_stream(StreamConfig(name=stream, subjects=[f"{stream}.>"]))
        for number in range(1, reports + 1):
            await js.publish(f"{stream}.agent-{number % 7}", str(number).encode())
        reader = StreamReader(js, stream)
        try:
            await asyncio.wait_for(body(reader), 60)
        finally:
            await reader.close()
            await nc.close()

    asyncio.run(run())


async def first_batch(reader: StreamReader) -> tuple[list[Fetched], int]:
    """The first reports a take hands out: one take waits FETCH_WAIT at most,
    which a loaded machine may need more than."""
    while True:
        taken, pending = await reader.take(0)
        if taken:
            return taken, pending


async def read_all(reader: StreamReader, after: int, until: int) -> list[Fetched]:
    out: list[Fetched] = []
    while not out or out[-1].sequence < until:
        taken, _ = await reader.take(out[-1].sequence if out else after)
        out += taken
    return out


def test_the_reader_hands_out_every_report_in_order_in_batches_and_says_how_many_are_left(
        nats_url: str, stream: str) -> None:
    async def body(reader: StreamReader) -> None:
        first, pending = await first_batch(reader)
        assert first[0].sequence == 1 and pending == 600 - first[-1].sequence
        rest = await read_all(reader, first[-1].sequence, 600)
        got = first + rest
        assert [f.sequence for f in got] == list(range(1, 601))
        assert [f.data for f in got] == [str(n).encode() for n in range(1, 601)]
        assert len(rest) < 600 - 1  # batches, not one report a take
        assert await reader.take(600) == ([], 0)  # nothing more within FETCH_WAIT

    with_stream(nats_url, stream, 600, body)


def test_asked_from_another_place_the_reader_starts_there_with_a_new_consumer(nats_url: str, stream: str) -> None:
    async def body(reader: StreamReader) -> None:
        await read_all(reader, 0, 50)
        again = await read_all(reader, 9, 50)  # a feed restarted from where it had handed on
        assert [f.sequence for f in again] == list(range(10, 51))
        assert reader.consumer_restarts == 1

    with_stream(nats_url, stream, 50, body)


def test_the_reader_reads_ahead_no_more_than_its_buffer(nats_url: str, stream: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reader, "BUFFER", 40)
    monkeypatch.setattr(_reader, "FETCH_BATCH", 16)

    async def body(reader: StreamReader) -> None:
        first, _ = await first_batch(reader)

        async def waiting_for_room() -> None:
            # The pump clears ``_room`` once it finds the buffer full, then waits on it.
            while len(reader._buffer) < 40 or reader._room.is_set():
                await asyncio.sleep(0.01)
        await asyncio.wait_for(waiting_for_room(), 30)  # the pump filled the buffer while nobody took
        assert len(reader._buffer) == 40  # and asked for no more before it stopped to wait
        taken, pending = await reader.take(first[-1].sequence)
        assert len(taken) == 40 and pending == 300 - taken[-1].sequence
        rest = await read_all(reader, taken[-1].sequence, 300)
        assert [f.sequence for f in first + taken + rest] == list(range(1, 301))

    with_stream(nats_url, stream, 300, body)


def test_a_reader_whose_consumer_the_server_dropped_reads_on_with_a_new_one(nats_url: str, stream: str) -> None:
    async def body(reader: StreamReader) -> None:
        await read_all(reader, 0, 30)
        subscription = reader._subscription
        assert subscription is not None
        await reader.js.delete_consumer(stream, (await subscription.consumer_info()).name)
        await reader.js.publish(f"{stream}.agent-1", b"31")
        rest = await read_all(reader, 30, 31)  # found by the idle check: reports wait that nobody delivers
        assert [f.data for f in rest] == [b"31"] and reader.consumer_restarts == 1

    with_stream(nats_url, stream, 30, body)


def test_stopping_the_pump_outlasts_a_swallowed_cancellation_and_keeps_the_callers_own() -> None:
    """nats-py's fetch waits in asyncio.wait_for, which before Python 3.12 can
    swallow a cancellation that comes as its timeout fires: a pump that goes on
    after one is cancelled again, and a caller cancelled while it waits is not
    kept waiting (a test once hung for its whole timeout on both)."""
    async def run() -> None:
        reader = StreamReader(None, "no-stream")  # type: ignore[arg-type]  # no server: the pump is a stand-in
        ended = asyncio.Event()

        async def pump(swallow: int) -> None:
            while True:
                try:
                    await ended.wait()
                    return
                except asyncio.CancelledError:
                    if swallow == 0:
                        raise
                    swallow -= 1  # as wait_for does when the cancellation meets its timeout

        reader._task = asyncio.get_running_loop().create_task(pump(swallow=1))
        stopping = asyncio.get_running_loop().create_task(reader._stop())
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert stopping in done and stopping.exception() is None and reader._task is None

        stubborn = asyncio.get_running_loop().create_task(pump(swallow=10**9))
        reader._task = stubborn
        stopping = asyncio.get_running_loop().create_task(reader._stop())
        await asyncio.sleep(0)  # it is waiting for the pump
        stopping.cancel()
        done, _ = await asyncio.wait({stopping}, timeout=10)
        assert stopping in done and stopping.cancelled()
        ended.set()
        await asyncio.wait({stubborn}, timeout=10)
        assert stubborn.done()

    asyncio.run(run())


def consumers(reader: StreamReader) -> Awaitable[int]:
    """How many consumers the server holds on the reader's stream."""
    async def count() -> int:
        return int((await reader.js.stream_info(reader.stream)).state.consumer_count)

    return count()


def test_a_replaced_consumer_is_deleted_from_the_server(nats_url: str, stream: str) -> None:
    """Not left there for ``CONSUMER_IDLE``: a reader that replaced its
    consumer every 0.5 s made the server hold one more each time."""
    async def body(reader: StreamReader) -> None:
        await read_all(reader, 0, 50)
        await read_all(reader, 9, 50)
        await read_all(reader, 19, 50)
        assert reader.consumer_restarts == 2
        assert await consumers(reader) == 1

    with_stream(nats_url, stream, 50, body)


def test_a_stream_whose_last_reports_were_deleted_is_read_to_its_end_with_none_left(
        nats_url: str, stream: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What an operator does to remove bad messages (``js.delete_msg``): the
    stream still ends at their sequence, but they are no reports to read. A
    reader said 2 were left for ever and replaced its consumer at every idle
    check until the next report came."""
    monkeypatch.setattr(_reader, "FETCH_WAIT", 0.1)

    async def body(reader: StreamReader) -> None:
        for sequence in (29, 30):
            await reader.js.delete_msg(stream, sequence)
        looks = 0
        stream_info = reader.js.stream_info

        async def counted(name: str) -> Any:
            nonlocal looks
            looks += 1
            return await stream_info(name)

        monkeypatch.setattr(reader.js, "stream_info", counted)
        got = await read_all(reader, 0, 28)
        assert [f.sequence for f in got] == list(range(1, 29))
        seen = looks
        while looks < seen + 3:  # the reader looked at the stream again while idle, three times
            assert await reader.take(28) == ([], 0)
        assert reader.lag == 0 and reader.consumer_restarts == 0
        monkeypatch.setattr(reader.js, "stream_info", stream_info)
        assert await consumers(reader) == 1
        await reader.js.publish(f"{stream}.agent-1", b"31")  # and the next report comes as any
        assert [f.data for f in await read_all(reader, 28, 31)] == [b"31"]

    with_stream(nats_url, stream, 30, body)

