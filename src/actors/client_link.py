"""What a WebSocket's handler and the actor that serves it share (``ClientLink``):
the small bounded queue of frames the handler's writer sends (``Outbox``), what
has been sent of it, and the close code once either decides to close; and the
WebSocket close codes they close with. The live views' client actors
(``client``), the users' event clients (``notifier``) and the agents' command
sockets use it."""

from __future__ import annotations

from collections.abc import Callable

import trio

from trioscope.domain.live import Frame

POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
GOING_AWAY = 1001
INTERNAL_ERROR = 1011


class Outbox:
    """The frames queued for one socket, at most ``size``, taken in order by
    its one writer. A trio memory channel's job without what one writer and
    many sockets do not need (two channel ends with a task set each, two
    parking lots, a deque's first block): ~1.5 KiB less per client.

    The actor's frames are counted as the writer takes them (``taken``): the
    actor's positions (how many frames it queued) are in that count. A frame
    the handler answers by itself (``send_aside``: an ``auth`` renewal's
    answer) takes a place in the queue but no position: counted, it would
    make each of the actor's later frames look sent one frame early (a
    reset still queued, sent)."""

    __slots__ = ("_frames", "_size", "_writer", "taken", "_popped", "_aside")

    def __init__(self, size: int) -> None:
        self._frames: list[Frame] = []  # a few at most, mostly none: popping the first costs nothing
        self._size = size
        self._writer = trio.lowlevel.ParkingLot()
        self.taken = 0
        """The frames queued with ``send_nowait`` that the writer has taken."""
        self._popped = 0
        """Every frame the writer has taken, those queued aside too."""
        self._aside: list[int] | None = None
        """The aside frames still queued, by the ``_popped`` each is taken at
        (made at the first: most sockets never have one)."""

    def __len__(self) -> int:
        return len(self._frames)

    def send_nowait(self, frame: Frame) -> None:
        """Queue ``frame``, or raise ``trio.WouldBlock`` when ``size`` are queued."""
        if len(self._frames) >= self._size:
            raise trio.WouldBlock
        self._frames.append(frame)
        self._writer.unpark()

    def send_aside(self, frame: Frame) -> None:
        """Queue ``frame`` as ``send_nowait`` does, but not counted in ``taken``
        once it is taken: a frame that is none of the actor's."""
        self.send_nowait(frame)
        if self._aside is None:
            self._aside = []
        self._aside.append(self._popped + len(self._frames))

    async def receive(self) -> Frame:
        """The oldest frame, waiting for one; cancelled, it takes nothing."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._frames:
            await self._writer.park()
        frame = self._frames.pop(0)
        # Counted as it is popped, not once returned: a frame queued aside
        # meanwhile (at the checkpoint below) has its place from what is left.
        self._popped += 1
        if self._aside and self._aside[0] == self._popped:
            del self._aside[0]
        else:
            self.taken += 1
        await trio.lowlevel.cancel_shielded_checkpoint()
        return frame


class ClientLink:
    """What the WebSocket handler and the client actor share: the outbox, and the
    close code once the actor (or the server) decides to close, or the handler
    ends (the socket is gone: the actor stops working for it)."""

    def __init__(self, buffer: int, on_first_view: Callable[[], None] | None = None) -> None:
        self.outbox = Outbox(buffer)
        self.buffer = buffer
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = trio.Event()
        self.delivered = 0
        """Frames the actor queued that the writer has finished sending (not
        those queued aside, ``Outbox.send_aside``): what its positions count."""
        self._drain_waiter: tuple[int, trio.Event] | None = None
        self._on_first_view = on_first_view
        self._first_view_position: int | None = None
        self._close_scope: trio.CancelScope | None = None
        self._holds: list[tuple[int, Callable[[], None]]] = []
        """(position, release) of the resets queued and not yet sent."""
        self._ended = False
        """The socket's handler is done (``handler_ended``)."""

    @property
    def frames(self) -> _Frames:
        """What the writer sends, in order (``async for frame in link.frames``).
        Made on each use rather than kept: a link holding the iterator that
        holds it would be a reference cycle, and a closed client's link (with
        what its outbox still held) would wait for the cyclic collector."""
        return _Frames(self, self.outbox)

    def first_view_queued(self, position: int) -> None:
        """The client's first view is the ``position``-th frame queued (or it
        wants none: the frames queued so far): ``on_first_view`` is called
        once the writer has sent that many."""
        self._first_view_position = position
        if self.delivered >= position:
            self.first_view_done()

    def first_view_done(self) -> None:
        """Call ``on_first_view``, once (also when the socket ends without it)."""
        callback, self._on_first_view = self._on_first_view, None
        if callback is not None:
            callback()

    def hold_until_sent(self, position: int, release: Callable[[], None]) -> None:
        """Call ``release()`` once the first ``position`` frames queued have
        been sent, or the handler has ended (at once if either is so already):
        a reset counts against its client's address until then (``ResetTurns.hold``)."""
        self._holds.append((position, release))
        self._release_sent()

    def handler_ended(self) -> None:
        """The socket's handler is done: nothing queued will be sent, and the
        frame it was writing (a write waits up to ``server.write_timeout``,
        closed or not) is let go. What was held against the address goes now,
        not at the close, while the handler still held it."""
        self._ended = True
        self._release_sent()

    def _release_sent(self) -> None:
        if not self._holds:
            return
        ended = self._ended
        sent = [release for position, release in self._holds if ended or self.delivered >= position]
        if sent:
            self._holds = [(p, r) for p, r in self._holds if not (ended or self.delivered >= p)]
            for release in sent:
                release()

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self.closed.set()
            if self._close_scope is not None:
                self._close_scope.cancel()

    def cancel_on_close(self, scope: trio.CancelScope) -> None:
        """``close`` cancels ``scope`` (at once if closed already): the handler
        writes in it, in its own task, rather than waiting for ``closed`` while
        another task writes (a task per client less). The handler's nursery's
        own scope, not one of its own: a scope per client less too."""
        self._close_scope = scope
        if self.closed.is_set():
            scope.cancel()

    @property
    def queued(self) -> int:
        return len(self.outbox)

    def drained(self, position: int) -> bool:
        """Whether the first ``position`` frames queued have been sent and at most
        half the outbox is in use: room for a large frame."""
        return self.delivered >= position and self.queued <= self.buffer // 2

    def when_drained(self, position: int) -> trio.Event:
        """Set once ``drained(position)`` (at once if it is already). One waiter
        at a time: a later call replaces the earlier one."""
        event = trio.Event()
        if self.drained(position):
            event.set()
        else:
            self._drain_waiter = (position, event)
        return event

    def _writer_ready(self) -> None:
        # The writer is back for more: whatever it took before has been sent.
        self.delivered = self.outbox.taken
        self._release_sent()
        if self._first_view_position is not None and self.delivered >= self._first_view_position:
            self.first_view_done()
        waiter = self._drain_waiter
        if waiter is not None and self.drained(waiter[0]):
            self._drain_waiter = None
            waiter[1].set()


class _Frames:
    """The outbox as the writer reads it, noting what has been sent: a reset is
    not built while the previous one is still queued or being written."""

    def __init__(self, link: ClientLink, outbox: Outbox) -> None:
        self._link = link
        self._outbox = outbox

    def __aiter__(self) -> _Frames:
        return self

    async def __anext__(self) -> Frame:
        self._link._writer_ready()
        return await self._outbox.receive()
