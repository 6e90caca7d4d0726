"""Hypercorn's per-connection task (its Trio ``TCPServer``), made to close its
socket when it decides to, and to fail alone.

* A response that leaves the request body unread (408 for a body too slow,
  413, a refusal before the body mattered) says ``Connection: close``, and
  Hypercorn closes the socket from inside the application's last ``send``.
  Quart-Trio cancels that task as soon as Hypercorn reports the stream
  closed, which it does just before closing the socket, so the close was
  cancelled at its first checkpoint: the socket stayed open, and a client
  that kept sending (or sent nothing) held the connection for as long as it
  liked. The close is shielded here; it does not block (shutdown, close).
* An exception in Hypercorn's protocol code went up to the server's
  nursery and stopped the whole server (one was found: frames sent during a
  refused WebSocket handshake, see ``_websocket_stream``). Now it ends that
  connection only, logged with its traceback.
* A finished connection is left in no reference cycle: Hypercorn's server
  holds its protocol, which holds the server's ``protocol_send``. Kept, the
  whole connection (protocol, streams, the application's handler and what it
  held) outlived it until the cyclic collector's oldest generation came by,
  rarely with ``server.tune_interpreter``'s thresholds, as a WebSocket
  lives long enough to get there. Dropped, it is freed at once.
* Nor is it kept by the socket errors it met (a client gone while a
  response was written, or before the close). From Python 3.12, an
  exception that passes through a ``@contextmanager`` is in a reference
  cycle with its ``__exit__`` frame (CPython gh-129280), and every Trio
  socket error does (``_translate_socket_errors_to_stream_errors``): the
  frames in its traceback, and the connection they held, waited for the
  cyclic collector. The errors caught here have their frames cleared
  (``_forget``).
* Bytes go out without the scheduler passes that move nothing. Hypercorn
  takes its send lock (``trio.Lock``: a checkpoint even when it is free)
  before every write, and writes the empty end of a response that has a
  length (what h11 makes of ``EndOfMessage``: no bytes, yet the lock and
  ``send_all``'s own checkpoint). A response was six passes of the event
  loop, each waiting behind every other runnable task: under report load
  (passes of 10-20 ms) most of a GET's time. Now a free lock is taken at
  once and nothing is written for no bytes: a response is two passes (each
  write still ends with ``send_all``'s checkpoint), and the lock still
  keeps writes in order when two tasks send at once (a WebSocket's pings
  and messages).
* An idle keep-alive connection is closed by one task per connection whose
  deadline moves (``_IdleWatch``). Hypercorn started a task for each idle
  spell and cancelled it when the next request came, each behind a lock:
  per request on a keep-alive connection (every report an agent posts) a
  task started and one cancelled, and four more passes of the loop: ~0.1 ms
  of CPU per request (bench/RESULTS.md, session 35). It closes a connection
  idle for ``keep_alive_timeout`` after a request as before its first,
  which Hypercorn's did not do here (tests/integration/test_transport_limits.py).
* A write waits for the client at most ``server.write_timeout``: Hypercorn
  shields every write and has no timeout, so a client that stopped reading
  held its connection, the response being sent (a topology version of its
  own: ~40 MB at 1,000 hosts) or its WebSocket for ever, and a WebSocket
  closed for lagging never closed (its close frame waited behind the write).
  Nor past the server's shutdown (``client_writes``): the shield kept out
  Hypercorn's cancelling its connections at the end of its graceful phase,
  and a second signal, so five WebSockets that read nothing held the process
  ``write_timeout`` (30 s) past a 4 s ``--shutdown-timeout``.
* HTTP/1.1 only: Hypercorn turns a plain connection into HTTP/2 when asked
  (``Upgrade: h2c``, or HTTP/2's preface), and every guard of the edge is
  built on h11's one request at a time (``_http11_only``).
* A request h11 cannot parse (a malformed request line or header, headers
  beyond ``h11_max_incomplete_size``, a transfer coding other than chunked)
  is answered before the application sees it, as everywhere else here: a JSON
  error that says what was wrong (``_ProtocolErrors``). Hypercorn answered
  with the bare status and an empty body.
* A client address holds at most ``limits.connections_per_address``
  connections at once, and all of them together stay ``FILE_RESERVE`` below
  the process's open-file limit (``ConnectionCounts``): a connection beyond
  either is closed as soon as it is accepted, before anything is read or
  started for it. Idle connections cost no request, so no rate budget saw
  them: one address held 14,000 descriptors in 4 s, and at a limit of 1,024
  new clients waited in the kernel's backlog while ``accept`` failed with
  EMFILE (logged with a traceback ten times a second: ``AcceptFailures``
  says it once a minute now).
* The responses being written to one client address's connections hold at
  most ``limits.unsent_bytes_per_address`` bytes (each distinct bytes once),
  but for a single one, which always goes: a response beyond is dropped and
  its connection closed (``_too_much_unsent``). Each connection's handler
  builds its own response and the write holds it until the client reads or
  ``server.write_timeout`` passes: 100 connections asking for a 9 MiB report
  and reading nothing held +900 MiB.
"""

from __future__ import annotations

import contextlib
import logging
import math
import select
import socket
import struct
import traceback
import weakref
from typing import Any

import h11
import hypercorn.trio.run
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.protocol.ws_stream import WSStream
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer

from trioscope.runtime import Cutoff

from ._access_log import headers_below
from ._connection_limits import (
    COUNTED_WRITE, AcceptFailures, Admission, ConnectionCounts, Held, Refused, Write, admission_of,
)
from ._errors import error_wire

log = logging.getLogger(__name__)

LINGER = 2.0
"""Seconds a connection closed by the server goes on reading (and dropping) what
its client still sends before the socket is closed (``GuardedTCPServer._read``)."""
CLOSE_TIMEOUT = 5.0
"""Seconds a socket's close may wait (TLS sends its close_notify) before it is closed forcefully."""
LINGER_BYTES = 16 * 1024 * 1024
"""Bytes dropped so at most: a body the size of the largest accepted, and more
(it costs reading only)."""
DEFAULT_WRITE_TIMEOUT = 30.0
"""Seconds one write may wait for the client to read (``server.write_timeout``;
this when the server's configuration does not say, as in a bare Hypercorn)."""


def _forget(error: BaseException) -> None:
    """Clear the finished frames of ``error``'s traceback, and of the errors
    it came from: the socket error a connection caught is in a reference
    cycle with them (the module's docstring), and they hold the connection."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # frames still running (the caller's) are skipped
        current = current.__cause__ or current.__context__


async def _http11_only(_request: Any) -> None:
    """``H11Protocol._check_protocol`` that turns no connection into HTTP/2:
    an ``Upgrade: h2c`` is answered in HTTP/1.1, as if it were not asked, and
    HTTP/2's preface (``PRI * HTTP/2.0``) is an HTTP/1.1 request for ``*``
    (a JSON 404), after which the client gives up. Hypercorn
    would switch either to HTTP/2, whose streams the edge's guards (one
    request at a time per connection, bounded streams, this server's writes)
    were never built for."""


MAX_REASON = 200
"""Characters of h11's reason for refusing a request kept in the answer."""
_PROTOCOL_ERROR_CODES = {400: "bad_request", 431: "request_header_fields_too_large", 501: "not_implemented"}


class _ProtocolErrors:
    """One connection's answers to requests h11 refused (the module's
    docstring): what h11 said is kept as it reads (``next_event``) and sent as
    the JSON error Hypercorn's ``_send_error_response`` sent without a body.

    Installed on the protocol and its h11 connection, it holds both weakly:
    held strongly, each would be in a reference cycle with it, and the whole
    connection would wait for the cyclic collector (the module's docstring)."""

    def __init__(self, protocol: H11Protocol) -> None:
        connection = protocol.connection
        self._protocol = weakref.ref(protocol)
        self._connection = weakref.ref(connection)
        self._reason = ""
        connection.next_event = self.next_event  # type: ignore[method-assign]  # this connection's alone
        protocol._send_error_response = self.send  # type: ignore[method-assign]  # this connection's alone

    def next_event(self) -> Any:
        connection = self._connection()
        assert connection is not None  # it is what calls this
        try:
            return type(connection).next_event(connection)  # type: ignore[arg-type]  # an h11.Connection (__init__)
        except h11.RemoteProtocolError as exc:
            # h11 quotes the offending line, which may be ~64 KB (or carry a credential).
            reason = str(exc)
            self._reason = reason if len(reason) <= MAX_REASON else reason[:MAX_REASON] + "..."
            raise

    async def send(self, status_code: int) -> None:
        protocol = self._protocol()
        assert protocol is not None  # it is what calls this
        if status_code == 431:
            message = (f"the request line and headers are too large (more than "
                       f"{protocol.config.h11_max_incomplete_size} bytes before their end)")
        elif status_code == 501:
            message = "a transfer coding this server does not implement (it reads chunked, or a Content-Length)"
        else:
            message = "not a valid HTTP/1.1 request"
        if self._reason:
            message = f"{message}: {self._reason}"
        body, content = error_wire(_PROTOCOL_ERROR_CODES.get(status_code, "bad_request"), message)
        headers = [*content, *headers_below(None), (b"connection", b"close"), *protocol.config.response_headers("h11")]
        await protocol._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await protocol._send_h11_event(h11.Data(data=body))
        await protocol._send_h11_event(h11.EndOfMessage())


class _IdleWatch:
    """What Hypercorn's ``TCPServer`` does with its ``idle_task`` (it calls
    ``restart`` when the connection turns idle, ``stop`` when a request
    begins), as one task whose deadline moves: the connection is closed once
    it has been idle for ``keep_alive_timeout``, or at once when the server
    stops while it is idle (once idle, if it is busy then), as Hypercorn's own
    ``_idle_timeout`` does.

    Not while a request has come: when the event loop was held up past the
    deadline (a metrics query held it 28 s), the request a client sent
    meanwhile was there unread, and the connection was reset under it. When
    bytes wait on its socket, or its reader took some since it turned idle
    (the reader and the watch wake in the same turn, in either order), it is
    given ``UNREAD_GRACE`` more, once per idle spell; a request that began by
    then makes it busy, watched again once idle."""

    def __init__(self, server: GuardedTCPServer) -> None:
        self._server = server
        self._scope = trio.CancelScope()
        self._deadline = math.inf
        """When the connection is closed unless a request begins (inf: busy)."""
        self._started = self._idle = self._stopping = self._ended = False
        self._graced = False
        self._reads_when_idle = 0
        """``GuardedTCPServer.reads`` when the connection turned idle: more by
        the deadline, and its reader took bytes (a request under way)."""

    async def restart(self, task_group: Any, _action: Any) -> None:
        """Idle from now (no checkpoint: nothing here waits)."""
        now = trio.current_time()
        self._idle = True
        self._graced = False
        self._reads_when_idle = self._server.reads
        self._move(now if self._stopping else now + self._server.config.keep_alive_timeout)
        if not self._started:
            self._started = True
            task_group._nursery.start_soon(self._watch)  # the connection's own nursery, where Hypercorn starts its

    async def stop(self) -> None:
        """A request began: busy until ``restart``."""
        self._idle = False
        self._move(math.inf)

    def end(self) -> None:
        """The connection is over (nothing is read from it any more): the watch ends, closing nothing."""
        self._ended = True
        self._scope.cancel()

    def _move(self, deadline: float) -> None:
        self._deadline = self._scope.deadline = deadline

    async def _watch(self) -> None:
        while True:
            with self._scope:
                await self._server.context.terminated.wait()
                self._stopping = True
                if not self._idle:
                    await trio.sleep_forever()  # until idle: ``restart`` moves the deadline to now
            if not (self._ended or self._stopping):
                # The reader may have woken in the same turn of the loop and be
                # between taking bytes and counting them, or beginning a request:
                # two turns more, and it has done either.
                await trio.lowlevel.checkpoint()
                await trio.lowlevel.checkpoint()
            if self._ended:
                return
            if self._stopping:
                break
            if trio.current_time() < self._deadline:  # busy since, or idle anew: watched from there
                self._scope = trio.CancelScope(deadline=self._deadline)
                continue
            arrived = self._server.reads != self._reads_when_idle or _unread(self._server.stream)
            if self._graced or not arrived:
                break
            self._graced = True  # a request came while the loop was held up: the reader takes it
            self._scope = trio.CancelScope()
            self._move(trio.current_time() + UNREAD_GRACE)
        with trio.CancelScope(shield=True):
            await self._server._initiate_server_close()


UNREAD_GRACE = 5.0
"""Seconds an idle connection past its deadline stays open while bytes wait
on its socket (``_IdleWatch``): its reader takes them at the loop's next turn."""


def _unread(stream: Any) -> bool:
    """Whether bytes (or the client's close) wait on the connection's socket, not yet read."""
    try:
        fd = _socket_of(stream).fileno()
    except (AttributeError, OSError):
        return False
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


_RESET = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on, for 0 s: a close resets the connection."""


def _socket_of(stream: Any) -> trio.socket.SocketType:
    """A connection's socket, TLS or not (an ``SSLStream`` before its handshake)."""
    sock: trio.socket.SocketType | None = getattr(stream, "socket", None)
    if sock is None:
        sock = stream.transport_stream.socket
    return sock


def _give_up_on_silent_peers(sock: Any, seconds: float) -> None:
    """Have the kernel end the connection once what was sent has gone
    unacknowledged for ``seconds`` (``TCP_USER_TIMEOUT``; Linux): a peer gone
    without a word (a cut network, a sleeping laptop) is let go then, rather
    than after TCP's own ~15 minutes of retransmissions. A live view's pings
    keep something in flight, so a view whose client answers none (the
    seeds' clients do not) is let go within a ping interval and this, and
    still holds no place of its address for long. A connection with nothing
    in flight (a held poll) is not concerned."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    if option is None or getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, option, int(seconds * 1000))


class GuardedTCPServer(TCPServer):
    """A Hypercorn ``TCPServer`` whose close is not cancelled, whose errors
    end only its own connection, and which lets go of it when it is over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.idle_task = _IdleWatch(self)  # type: ignore[assignment]  # the same two calls, cheaper (the module's docstring)
        self._reading: trio.CancelScope | None = None
        """The scope of the connection's reader while it reads (``_close``)."""
        self._reader: trio.lowlevel.Task | None = None
        self._handing: trio.CancelScope | None = None
        """The reader's scope while it hands data to the protocol."""
        self._lingering = False
        """Closed by the server: what the client still sends is dropped (``_read``)."""
        self.reads = 0
        """Reads that took bytes from the client (``_IdleWatch``)."""
        self._admission: Admission | None = None
        self._held: Held | None = None
        """How the connection was admitted (``_admit``); None: not counted (a bare Hypercorn)."""

    async def run(self) -> None:
        admission: Admission | None = None
        held: Held | None = None
        try:
            admission = self._admission = admission_of(self.app)
            if admission is not None:
                held = self._held = self._admit(admission)
                if held is None:
                    return
            await super().run()  # closes the socket however it ends
        except* Exception:
            log.exception("a connection failed inside Hypercorn; it was closed and the server goes on")
        finally:
            if admission is not None and held is not None:
                admission.counts.release(held)
            self.__dict__.pop("protocol", None)  # the cycle through protocol_send (the module's docstring)
            self.__dict__.pop("idle_task", None)  # and through the idle watch, which knows its server

    def _admit(self, admission: Admission) -> Held | None:
        """Count this connection (``ConnectionCounts``), or reset it at once,
        before anything is read or started for it (a TLS handshake included):
        None then. Reset, not closed: the client learns at once that it was
        refused, even with a request sent, and the server keeps no TIME_WAIT
        for it; and closed here, without the checkpoints of an ``aclose``: a
        client that reconnects as fast as it is refused costs an accept, a
        task and this."""
        sock = _socket_of(self.stream)
        try:
            name = sock.getpeername()
        except OSError:  # gone already
            admitted: Held | Refused | None = None
        else:
            admitted = admission.counts.admit(str(name[0]) if isinstance(name, tuple) else str(name))
            if isinstance(admitted, Held):
                _give_up_on_silent_peers(sock, self._write_timeout)
                return admitted
            admission.refused(admitted)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
        sock.close()
        return None

    async def _close(self) -> None:
        with trio.CancelScope(shield=True):
            try:
                await self.stream.send_eof()  # the response is whole: the client reads to its end, then the close
            except (trio.BrokenResourceError, AttributeError, trio.BusyResourceError, trio.ClosedResourceError) as exc:
                # Closed already (idle, a write timed out), or TLS, which has no
                # half-close: a client reading to the end would wait out a linger.
                _forget(exc)
                half_closed = False
            else:
                half_closed = True
            reading = self._reading
            if reading is None or not half_closed:
                with self._writes.scope(CLOSE_TIMEOUT):
                    await self.stream.aclose()  # TLS: its close_notify, which a client that reads nothing never takes
                    return
                await trio.aclose_forcefully(self.stream)
            elif not self._lingering:
                # The reader drops what the client still sends, for LINGER at
                # most; run() closes the socket after it (``_read``).
                self._lingering = True
                reading.deadline = min(reading.deadline, trio.current_time() + LINGER)
                handing = self._handing
                if handing is not None and trio.lowlevel.current_task() is not self._reader:
                    handing.cancel()  # parked in the protocol (waiting to read on): it reads, to drop

    async def _read_data(self) -> None:
        inner = getattr(self.protocol, "protocol", None)
        if isinstance(inner, H11Protocol):
            # HTTP/1.1 only (the module's docstring), as TLS connections are by ALPN.
            inner._check_protocol = _http11_only  # type: ignore[method-assign,assignment]  # this connection's alone
            _ProtocolErrors(inner)
        self._reader = trio.lowlevel.current_task()
        try:
            with trio.CancelScope() as self._reading:  # _close gives it a deadline (LINGER)
                await self._read()
        finally:
            self._reading = None
            self.idle_task.end()  # type: ignore[attr-defined]  # an _IdleWatch (__init__)

    async def _read(self) -> None:
        """Hypercorn's read loop (``TCPServer._read_data``), but for what the
        client sends once the server has closed the connection: read and
        dropped here, up to ``LINGER_BYTES`` (``_close`` gives it ``LINGER``),
        never handed to h11, which keeps what it cannot parse (a client went
        on sending after a malformed request: 1 GiB held in 2 s). Closed with
        bytes unread, a socket is reset, and a reset that reaches the client
        before it read the response destroys the response: a client still
        sending a body the server answered without reading (413, a GET that
        sent one) saw its connection reset, not its answer."""
        dropped = 0
        while True:
            try:
                with trio.fail_after(self.config.read_timeout or math.inf):
                    data = await self.stream.receive_some(MAX_RECV)
            except (trio.ClosedResourceError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                _forget(exc)
                break
            self.reads += 1
            if self._lingering:
                dropped += len(data)
                if not data or dropped > LINGER_BYTES:
                    break
                continue
            with trio.CancelScope() as self._handing:
                await self.protocol.handle(RawData(bytes(data)))
            self._handing = None
            if not data:
                break
        if not self._lingering:
            await self.protocol.handle(Closed())

    async def protocol_send(self, event: Event) -> None:
        if not isinstance(event, RawData):
            await super().protocol_send(event)
            return
        if not event.data:
            return  # the end of a response with a length: nothing to write (the module's docstring)
        lock = self.send_lock
        try:
            lock.acquire_nowait()
        except trio.WouldBlock:
            await lock.acquire()
        counts: ConnectionCounts | None = None
        write: Write | None = None
        try:  # from here as Hypercorn's own, but for the write timeout and what is unsent
            if len(event.data) >= COUNTED_WRITE and self._counts_writes():
                assert self._admission is not None and self._held is not None  # _counts_writes
                counts = self._admission.counts
                write = counts.start_write(self._held, id(event.data), len(event.data))
                if write is None:
                    await self._too_much_unsent(len(event.data))
                    return
            try:
                # A write is never cut halfway, but by its timeout or the server's shutdown (``client_writes``).
                with self._writes.scope(self._write_timeout, shield=True) as timer:
                    await self.stream.send_all(event.data)
                if timer.cancelled_caught:
                    with trio.CancelScope(shield=True):
                        await self._client_stopped_reading(cut=self._writes.reached)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                _forget(exc)
                await self.protocol.handle(Closed())
        finally:
            if counts is not None and write is not None:
                counts.end_write(write)
            lock.release()

    def _counts_writes(self) -> bool:
        """Whether this connection's writes count against its address's
        ``limits.unsent_bytes_per_address``: counted, not a trusted proxy's,
        not a WebSocket (whose resets have a budget of their own, which waits
        rather than closes)."""
        held = self._held
        if held is None or not held.per_address:
            return False
        return not isinstance(getattr(getattr(self.protocol, "protocol", None), "stream", None), WSStream)

    async def _too_much_unsent(self, size: int) -> None:
        """A response's bytes would take its address past
        ``limits.unsent_bytes_per_address``: they are dropped and the
        connection closed (its status may be sent already: no error can be
        answered), not held for ``server.write_timeout`` while its client
        reads nothing, a copy per connection (100 connections asking for a
        9 MiB report: +900 MiB)."""
        assert self._admission is not None and self._held is not None  # _counts_writes
        self._admission.unsent_refused(self._held.source, size)
        await trio.aclose_forcefully(self.stream)
        await self.protocol.handle(Closed())

    @property
    def _writes(self) -> Cutoff:
        return client_writes(self.config)

    @property
    def _write_timeout(self) -> float:
        return float(getattr(self.config, "trioscope_write_timeout", DEFAULT_WRITE_TIMEOUT))

    async def _client_stopped_reading(self, *, cut: bool) -> None:
        """A write waited ``server.write_timeout`` for the client to read, or
        until the server's shutdown cut it (``cut``: counted by
        ``client_writes``, said once for all): the connection is closed (a
        write cut halfway leaves nothing to go on with), and what it held (the
        response being sent, the version it was read from, a WebSocket's
        client) goes with it."""
        if not cut:
            if self._admission is not None and self._held is not None:
                self._admission.write_timed_out(self._held.source, self._write_timeout)
            else:
                log.info("closed a connection whose client read nothing for %g s (server.write_timeout)",
                         self._write_timeout, extra={"event": "write_timeout"})
        await trio.aclose_forcefully(self.stream)
        await self.protocol.handle(Closed())


def client_writes(config: Any) -> Cutoff:
    """The cutoff of every write to a client, and of every close that waits
    for one (TLS's close_notify), on the connections of the Hypercorn server
    ``config`` configures (made with its first use).

    A write is shielded (never cut halfway), so neither Hypercorn's
    cancelling its connections when its graceful phase ends nor a second
    signal reached it: a client that reads nothing held the process up to
    ``server.write_timeout`` past its shutdown. The server cuts them then
    (``Cutoff.cut``): their connections are closed, and ``Cutoff.cut_short``
    says how many."""
    writes: Cutoff | None = getattr(config, "trioscope_writes", None)
    if writes is None:
        writes = config.trioscope_writes = Cutoff()
    return writes


def install_guarded_tcp_server() -> None:
    """Make Hypercorn's Trio worker serve each connection with
    ``GuardedTCPServer`` (``worker_serve`` names ``TCPServer`` in its own
    module, and no setting chooses the class), and trio's accept loop log a
    failed accept once a minute (``AcceptFailures``). Idempotent."""
    hypercorn.trio.run.TCPServer = GuardedTCPServer  # type: ignore[attr-defined]  # replacing a name the module does not export, on purpose (see above)
    accepts = logging.getLogger("trio.serve_listeners")
    if not any(isinstance(f, AcceptFailures) for f in accepts.filters):
        accepts.addFilter(AcceptFailures())
