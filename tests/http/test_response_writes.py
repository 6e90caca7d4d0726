"""How a connection's bytes go out (``GuardedTCPServer.protocol_send``): a
response with a length costs two passes of the event loop, not six, and
writes still go out whole and in order when two tasks send at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import hypercorn
import trio
import trio.testing
from hypercorn.events import Closed, Event, RawData

from trioscope.http._tcp_server import GuardedTCPServer


class _Protocol:
    """What Hypercorn's protocol hears back from the server."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def handle(self, event: Event) -> None:
        self.events.append(event)


def _server(stream: trio.abc.Stream) -> GuardedTCPServer:
    """A connection's server around ``stream``, with only what ``protocol_send`` uses."""
    server = GuardedTCPServer.__new__(GuardedTCPServer)
    server.send_lock = trio.Lock()
    server.stream = stream  # type: ignore[assignment]  # any trio stream (a socket pair in these tests)
    server.protocol = _Protocol()  # type: ignore[assignment]  # records what the server tells it
    server.config = hypercorn.Config()  # the write timeout's default
    return server


class _Steps(trio.abc.Instrument):
    """How many times the scheduler ran each task."""

    def __init__(self) -> None:
        self.steps: dict[trio.lowlevel.Task, int] = {}

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task] = self.steps.get(task, 0) + 1


async def _steps_of(work: Callable[[], Awaitable[Any]]) -> int:
    """The scheduler steps ``work`` took, run as a task of its own."""
    instrument = _Steps()
    found: list[trio.lowlevel.Task] = []

    async def task() -> None:
        found.append(trio.lowlevel.current_task())
        await work()

    trio.lowlevel.add_instrument(instrument)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(task)
    finally:
        trio.lowlevel.remove_instrument(instrument)
    return instrument.steps[found[0]]


def _socket_pair() -> tuple[trio.SocketStream, trio.socket.SocketType]:
    """The server's end of a connected pair of sockets, as Hypercorn gets it, and the client's."""
    ours, theirs = trio.socket.socketpair()
    return trio.SocketStream(ours), theirs


async def _received(client: trio.socket.SocketType, length: int) -> bytes:
    data = b""
    with trio.fail_after(5):
        while len(data) < length:
            data += await client.recv(65536)
    return data


async def test_a_response_with_a_length_is_written_in_two_passes() -> None:
    stream, client = _socket_pair()
    server = _server(stream)
    response = [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"ok",
                b""]  # what h11 makes of the end of a response with a length

    async def respond() -> None:
        for data in response:
            await server.protocol_send(RawData(data))

    # Its first step, and one after each write (Hypercorn's own: seven, the
    # lock's checkpoint before each write and the empty write at the end).
    assert await _steps_of(respond) == 3
    assert await _received(client, 40) == b"".join(response)
    assert not server.send_lock.locked()


async def test_a_write_waits_for_one_under_way_and_goes_out_after_it() -> None:
    stream, client = _socket_pair()
    server = _server(stream)
    async with trio.open_nursery() as nursery:
        await server.send_lock.acquire()  # another task's write under way
        nursery.start_soon(server.protocol_send, RawData(b"second"))
        await trio.testing.wait_all_tasks_blocked()
        await stream.send_all(b"first")  # before the waiting write: it waits for the lock
        server.send_lock.release()
    assert await _received(client, 11) == b"firstsecond"
    assert not server.send_lock.locked()


async def test_a_write_to_a_closed_stream_tells_the_protocol_and_frees_the_lock() -> None:
    stream, client = _socket_pair()
    server = _server(stream)
    await stream.aclose()
    await server.protocol_send(RawData(b"late"))
    assert [type(event) for event in server.protocol.events] == [Closed]  # type: ignore[attr-defined]  # the test's _Protocol
    assert not server.send_lock.locked()
    client.close()
