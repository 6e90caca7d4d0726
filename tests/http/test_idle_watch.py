"""An idle keep-alive connection is closed after ``keep_alive_timeout``, but
not while a request it sent waits unread on its socket: when the event loop
was held up past the deadline, the reader had not taken it yet, and the
connection was reset under it (a 28 s metrics query did that to every
keep-alive client that sent a request meanwhile)."""

from __future__ import annotations

from types import SimpleNamespace

import trio

from trioscope.http._tcp_server import UNREAD_GRACE, _IdleWatch

KEEP_ALIVE = 5.0


class _Server:
    """What the watch uses of its ``GuardedTCPServer``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.config = SimpleNamespace(keep_alive_timeout=KEEP_ALIVE)
        self.context = SimpleNamespace(terminated=trio.Event())
        self.stream = stream
        self.reads = 0
        self.closed_at: float | None = None

    async def read(self) -> None:
        """What its reader does: take what came (a checkpoint after the read, as trio's sockets have)."""
        await self.stream.receive_some(1024)
        self.reads += 1

    async def _initiate_server_close(self) -> None:
        self.closed_at = trio.current_time()


async def _watched(nursery: trio.Nursery) -> tuple[_IdleWatch, _Server, trio.socket.SocketType]:
    ours, client = trio.socket.socketpair()
    server = _Server(trio.SocketStream(ours))
    watch = _IdleWatch(server)  # type: ignore[arg-type]  # the parts of a server it uses
    await watch.restart(SimpleNamespace(_nursery=nursery), None)  # idle from now
    return watch, server, client


async def test_an_idle_connection_is_closed_at_its_deadline(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        _watch, server, _client = await _watched(nursery)
        await trio.sleep(KEEP_ALIVE + 1)
        assert server.closed_at == started + KEEP_ALIVE


async def test_a_request_waiting_unread_at_the_deadline_is_given_time_to_be_read(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        watch, server, client = await _watched(nursery)
        await client.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # nobody reads it: the loop is held up
        await trio.sleep(KEEP_ALIVE + 1)
        assert server.closed_at is None
        await server.read()  # the reader takes it: a request begins, then is answered
        await watch.stop()
        await trio.sleep(60)
        assert server.closed_at is None  # busy: never closed for idleness
        answered = trio.current_time()
        await watch.restart(SimpleNamespace(_nursery=nursery), None)
        await trio.sleep(KEEP_ALIVE + 1)
        assert server.closed_at == answered + KEEP_ALIVE
        assert answered > started + KEEP_ALIVE + UNREAD_GRACE


async def test_bytes_left_unread_past_the_grace_do_not_keep_the_connection(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        started = trio.current_time()
        _watch, server, client = await _watched(nursery)
        await client.send(b"GET")
        await trio.sleep(KEEP_ALIVE + UNREAD_GRACE + 1)
        assert server.closed_at == started + KEEP_ALIVE + UNREAD_GRACE


async def test_a_request_taken_by_its_reader_as_the_deadline_passes_keeps_its_connection(
        autojump_clock: trio.abc.Clock) -> None:
    """The reader and the watch wake in the same turn of the loop, in either
    order: when the reader takes the request first, nothing waits unread, but
    the connection is busy, not idle. Twenty connections: each order comes."""
    async with trio.open_nursery() as nursery:
        watched = [await _watched(nursery) for _ in range(20)]
        deadline = trio.current_time() + KEEP_ALIVE
        for _watch, _server, client in watched:
            await client.send(b"GET /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")

        async def read_at_deadline(watch: _IdleWatch, server: _Server) -> None:
            await trio.sleep_until(deadline)
            await server.read()
            await watch.stop()

        async with trio.open_nursery() as readers:
            for watch, server, _client in watched:
                readers.start_soon(read_at_deadline, watch, server)
        await trio.sleep(UNREAD_GRACE + 60)
        assert [server.closed_at for _watch, server, _client in watched] == [None] * 20
        nursery.cancel_scope.cancel()
