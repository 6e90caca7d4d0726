"""How many reports are left on the stream (``StreamReader.lag``,
``BusProgress.lag``) is known only from what the server said while it
answered: never 0 for a reader cut off from the server, so no replica
concludes it read the stream to its end. Driven with a stand-in for
JetStream (no server, short waits)."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

import nats.errors
import nats.js.errors
import pytest

from trioscope.bus import BusProgress
from trioscope.bus import _reader
from trioscope.bus._reader import Fetched, LagUnknown, StreamReader

API_TIMEOUT = 0.3
"""Seconds the stand-in takes to time out a request while out of reach (JetStream's 5 s, shortened)."""


class FakeStream:
    """A JetStream stream as a ``StreamReader`` sees it: its reports, when it
    was created, and whether the server answers (``reachable``)."""

    def __init__(self, reports: int) -> None:
        self.reports: list[bytes] = [str(n).encode() for n in range(1, reports + 1)]
        self.first = 1
        self.created = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
        self.reachable = True
        self.api_timeout = API_TIMEOUT
        self.generation = 0
        """Bumped when the stream is made again: the consumers of the one before are gone."""

    def make_again(self, reports: int) -> None:
        self.reports = [f"new {n}".encode() for n in range(1, reports + 1)]
        self.created += datetime.timedelta(hours=1)
        self.generation += 1

    def publish(self, data: bytes) -> None:
        self.reports.append(data)

    def time_of(self, sequence: int) -> datetime.datetime:
        """When the stream stored the report of ``sequence`` (its own time, as ``StreamReader`` keeps it)."""
        return self.created + datetime.timedelta(milliseconds=10 * sequence)

    @property
    def last(self) -> int:
        return len(self.reports)

    async def no_answer(self, timeout: float) -> None:
        await asyncio.sleep(timeout)
        raise nats.errors.TimeoutError


class FakeConsumer:
    def __init__(self, stream: FakeStream, start: int) -> None:
        self.stream, self.position, self.generation = stream, start, stream.generation

    @property
    def pending(self) -> int:
        return max(0, self.stream.last - self.position + 1)

    async def fetch(self, batch: int, timeout: float) -> list[Any]:
        stream = self.stream
        if not stream.reachable or self.generation != stream.generation or self.position > stream.last:
            await stream.no_answer(timeout)
        out = []
        for sequence in range(self.position, min(stream.last, self.position + batch - 1) + 1):
            metadata = SimpleNamespace(sequence=SimpleNamespace(stream=sequence), num_pending=stream.last - sequence,
                                       timestamp=stream.time_of(sequence))
            out.append(SimpleNamespace(metadata=metadata, data=stream.reports[sequence - 1]))
        self.position += len(out)
        return out

    async def consumer_info(self) -> Any:
        if not self.stream.reachable:
            await self.stream.no_answer(self.stream.api_timeout)
        if self.generation != self.stream.generation:
            raise nats.js.errors.NotFoundError
        return SimpleNamespace(num_pending=self.pending)

    async def unsubscribe(self) -> None:
        pass


class FakeJetStream:
    def __init__(self, stream: FakeStream) -> None:
        self.stream = stream
        self.infos = 0
        self.consumers: dict[str, FakeConsumer] = {}

    async def stream_info(self, name: str) -> Any:
        if not self.stream.reachable:
            await self.stream.no_answer(self.stream.api_timeout)
        self.infos += 1
        stream = self.stream
        state = SimpleNamespace(first_seq=stream.first if stream.reports else 0, last_seq=stream.last,
                                messages=len(stream.reports), num_deleted=None)
        return SimpleNamespace(state=state, created=stream.created)

    async def get_msg(self, name: str, seq: int) -> Any:
        if not self.stream.reachable:
            await self.stream.no_answer(self.stream.api_timeout)
        stream = self.stream
        if not stream.first <= seq <= stream.last:
            raise nats.js.errors.NotFoundError
        return SimpleNamespace(seq=seq, time=stream.time_of(seq), data=stream.reports[seq - 1])

    async def add_consumer(self, stream: str, config: Any) -> Any:
        if not self.stream.reachable:
            await self.stream.no_answer(self.stream.api_timeout)
        consumer = self.consumers[config.name] = FakeConsumer(self.stream, int(config.opt_start_seq))
        return SimpleNamespace(num_pending=consumer.pending)

    async def pull_subscribe_bind(self, consumer: str, stream: str) -> FakeConsumer:
        return self.consumers[consumer]

    async def delete_consumer(self, stream: str, consumer: str) -> bool:
        if not self.stream.reachable:
            await self.stream.no_answer(self.stream.api_timeout)
        del self.consumers[consumer]
        return True


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_reader, "FETCH_WAIT", 0.05)
    monkeypatch.setattr(_reader, "UNKNOWN_WAIT", 1.0)
    monkeypatch.setattr(_reader, "BUFFER", 10)
    monkeypatch.setattr(_reader, "FETCH_BATCH", 4)


def run(stream: FakeStream, body: Callable[[StreamReader], Awaitable[None]]) -> None:
    async def main() -> None:
        reader = StreamReader(FakeJetStream(stream), "reports")  # type: ignore[arg-type]  # a stand-in for JetStream
        try:
            await asyncio.wait_for(body(reader), 30)
        finally:
            await reader.close()

    asyncio.run(main())


async def until(condition: Callable[[], bool]) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not within 10 s")


async def take_some(reader: StreamReader, after: int) -> tuple[list[Fetched], int]:
    """The next reports handed out (a take may hand out none yet)."""
    while True:
        taken, pending = await reader.take(after)
        if taken:
            return taken, pending


async def read_to(reader: StreamReader, last: int) -> int:
    """Take reports from the start until sequence ``last``; the count pending then."""
    after, pending = 0, -1
    while after < last:
        taken, pending = await take_some(reader, after)
        after = taken[-1].sequence
    return pending


async def takes_while_out_of_reach(reader: StreamReader, after: int, seconds: float) -> list[object]:
    """What each take said for ``seconds``: (reports, pending) or the error it raised."""
    said: list[object] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        try:
            taken, pending = await reader.take(after)
        except nats.errors.Error as exc:
            said.append(exc)
            await asyncio.sleep(0.05)
            continue
        said.append(([f.sequence for f in taken], pending))
        if taken:
            after = taken[-1].sequence
    return said


def test_a_reader_cut_off_while_it_catches_up_never_says_it_reached_the_end() -> None:
    """The bus dropped while a replica rebuilt from the stream: the pulls that
    time out then say nothing, and the count stays as the server last said."""
    stream = FakeStream(300)

    async def body(reader: StreamReader) -> None:
        first, pending = await take_some(reader, 0)
        assert pending == 300 - first[-1].sequence and reader.lag == pending
        await until(lambda: len(reader._buffer) == 10 and not reader._room.is_set())  # full: the pump waits
        stream.reachable = False
        said = await takes_while_out_of_reach(reader, first[-1].sequence, 2.0)
        counts = [entry[1] for entry in said if isinstance(entry, tuple)]
        assert counts and all(count == 300 - 20 for count in counts[:1]), said  # the buffered ten, as last said
        assert 0 not in counts, said
        assert any(isinstance(entry, nats.errors.Error) for entry in said), said  # and then: cannot be read
        assert reader.lag is None
        stream.reachable = True
        after = 20
        while after < 300:  # back: read on to the end, where the count is 0 again
            taken, pending = await take_some(reader, after)
            assert taken[0].sequence == after + 1
            after = taken[-1].sequence
        assert pending == 0 and reader.lag == 0

    run(stream, body)


def test_a_reader_whose_server_does_not_answer_from_the_start_says_nothing_is_known() -> None:
    stream = FakeStream(50)
    stream.reachable = False

    async def body(reader: StreamReader) -> None:
        with pytest.raises(nats.errors.Error):
            await reader.take(0)
        assert reader.lag is None

    run(stream, body)


def test_a_reader_that_read_to_the_end_then_lost_the_server_has_its_lag_unknown() -> None:
    """A partition (or a pause) cuts a caught-up replica off: its lag is not
    0 but unknown, while reports go on arriving on the stream without it."""
    stream = FakeStream(20)

    async def body(reader: StreamReader) -> None:
        after = 20
        assert await read_to(reader, after) == 0 and reader.lag == 0
        stream.reachable = False
        for n in range(5):
            stream.publish(f"unseen {n}".encode())
        said = await takes_while_out_of_reach(reader, after, 2.0)
        assert reader.lag is None
        assert isinstance(said[-1], nats.errors.Error), said
        stream.reachable = True
        taken, pending = await take_some(reader, after)
        assert taken[0].data == b"unseen 0"

    run(stream, body)


def test_a_take_with_nothing_to_hand_out_while_the_count_is_unknown_raises_lag_unknown() -> None:
    stream = FakeStream(5)

    async def body(reader: StreamReader) -> None:
        taken, _ = await take_some(reader, 0)
        while taken[-1].sequence < 5:
            more, _ = await take_some(reader, taken[-1].sequence)
            taken += more
        stream.reachable, stream.api_timeout = False, 60.0  # longer than a take waits to know
        reader.invalidate()  # a reconnection: the server may have lost our consumer and said nothing since
        assert reader.lag is None
        with pytest.raises(LagUnknown, match="not known"):
            await reader.take(5)

    run(stream, body)


def test_a_stream_made_again_with_fewer_reports_than_were_read_is_read_again_from_its_start(
        caplog: pytest.LogCaptureFixture) -> None:
    """The server's store wiped and the stream created anew by another
    replica's start: its sequence starts again from 1."""
    stream = FakeStream(50)

    async def body(reader: StreamReader) -> None:
        after = 50
        await read_to(reader, after)
        stream.make_again(21)
        got: list[Fetched] = []
        while len(got) < 21:
            taken, pending = await take_some(reader, got[-1].sequence if got else after)
            got += taken
        assert [f.sequence for f in got] == list(range(1, 22))
        assert [f.data for f in got] == [f"new {n}".encode() for n in range(1, 22)]
        assert pending == 0 and reader.lag == 0 and reader.recreations == 1

    with caplog.at_level("WARNING", logger=_reader.__name__):
        run(stream, body)
    assert sum("was made again" in r.getMessage() for r in caplog.records) == 1


def test_a_stream_made_again_with_more_reports_than_were_read_is_known_by_its_creation_time() -> None:
    stream = FakeStream(10)

    async def body(reader: StreamReader) -> None:
        after = 10
        await read_to(reader, after)
        stream.make_again(30)
        got: list[Fetched] = []
        while not got or got[-1].sequence < 30:
            taken, _ = await take_some(reader, got[-1].sequence if got else after)
            got += taken
        assert [f.sequence for f in got] == list(range(1, 31)) and reader.recreations == 1

    run(stream, body)


def test_the_progress_shows_the_lag_only_while_it_is_known_and_the_bus_connected() -> None:
    progress = BusProgress()
    assert progress.lag is None and progress.as_dict()["lag"] is None  # nothing read yet
    progress.connected = True
    assert progress.lag is None
    progress.pending = 0
    assert progress.lag == 0 and progress.as_dict()["lag"] == 0
    progress.pending = 7
    assert progress.lag == 7
    progress.pending_unknown()
    assert progress.lag is None and progress.pending == 7  # the last count kept, shown as unknown
    progress.pending = 3
    progress.connected = False
    assert progress.lag is None and progress.as_dict()["lag"] is None
