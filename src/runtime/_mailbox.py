"""Bounded mailboxes, owned by supervisors so that they outlive actor restarts."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from typing import Any

import trio

from ._exceptions import ActorStopped, MailboxFull


class MailboxClosed(Exception):
    """Internal: the mailbox was closed and everything in it has been taken."""


class _Keyed:
    """A keyed message where it waits in the queue (``Mailbox.put_keyed_nowait``)."""

    __slots__ = ("key", "item")

    def __init__(self, key: Hashable, item: Any) -> None:
        self.key = key
        self.item = item


class Mailbox:
    """A bounded FIFO queue with one consumer (the actor) and many producers.

    Why not a trio memory channel: the supervisor must keep the queue across
    restarts, read its depth cheaply, and drain it when the actor terminates;
    closing a channel's last receive end would discard what is buffered.

    ``put_nowait`` never blocks (``MailboxFull`` instead); ``put`` waits for room.
    After ``close()`` nothing new is accepted (``ActorStopped``) but queued items
    can still be taken, so a graceful stop processes what was accepted.

    Keyed items (``put_keyed_nowait``) have a capacity of their own
    (``keyed_capacity``): one waits at most once per key, the newest replacing
    the one queued where it waits, so a producer of values that supersede each
    other (the latest sample of a series) fills the mailbox only with as many
    items as there are keys, however long the consumer is busy.
    """

    __slots__ = (
        "_items",
        "_capacity",
        "_keyed",
        "_keyed_capacity",
        "_owner",
        "_closed",
        "_receiver",
        "_senders",
        "high_water",
        "accepted",
        "replaced",
    )

    def __init__(self, capacity: int, owner: str, keyed_capacity: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"invalid mailbox capacity: {capacity}")
        if keyed_capacity < 0:
            raise ValueError(f"invalid keyed capacity: {keyed_capacity}")
        self._items: deque[Any] = deque()
        self._capacity = capacity
        self._keyed: dict[Hashable, _Keyed] = {}
        """The keyed items waiting, by key (each also in ``_items``, where it was first queued)."""
        self._keyed_capacity = keyed_capacity
        self._owner = owner
        self._closed = False
        self._receiver = trio.lowlevel.ParkingLot()
        self._senders = trio.lowlevel.ParkingLot()
        #: Most messages ever queued at once.
        self.high_water = 0
        #: Messages accepted since the mailbox was created.
        self.accepted = 0
        #: Keyed messages that replaced one of their key still waiting.
        self.replaced = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        """Queue ``item`` or raise ``MailboxFull`` / ``ActorStopped`` at once."""
        if self._closed:
            raise ActorStopped(self._owner)
        items = self._items
        if len(items) - len(self._keyed) >= self._capacity:
            raise MailboxFull(self._owner, self._capacity)
        self._append(item)

    def put_keyed_nowait(self, key: Hashable, item: Any) -> None:
        """Queue ``item`` under ``key``: if an item of that key still waits,
        ``item`` takes its place (and its turn); else it is queued last.

        Raises:
            MailboxFull: ``keyed_capacity`` keys wait already (0: no keyed items at all).
            ActorStopped: the mailbox is closed.
        """
        if self._closed:
            raise ActorStopped(self._owner)
        waiting = self._keyed.get(key)
        if waiting is not None:
            waiting.item = item
            self.accepted += 1
            self.replaced += 1
            return
        if len(self._keyed) >= self._keyed_capacity:
            raise MailboxFull(self._owner, self._keyed_capacity)
        keyed = self._keyed[key] = _Keyed(key, item)
        self._append(keyed)

    def _append(self, item: Any) -> None:
        items = self._items
        items.append(item)
        self.accepted += 1
        if len(items) > self.high_water:
            self.high_water = len(items)
        if self._receiver:
            self._receiver.unpark()

    async def put(self, item: Any) -> None:
        """Queue ``item``, waiting while the mailbox is full."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while len(self._items) - len(self._keyed) >= self._capacity and not self._closed:
            await self._senders.park()
        self.put_nowait(item)
        await trio.lowlevel.cancel_shielded_checkpoint()

    def get_nowait(self) -> Any:
        """Take the oldest item; ``trio.WouldBlock`` if empty, ``MailboxClosed`` if
        closed and empty."""
        if not self._items:
            if self._closed:
                raise MailboxClosed
            raise trio.WouldBlock
        item = self._items.popleft()
        if type(item) is _Keyed:
            del self._keyed[item.key]
            return item.item  # its room is the keyed capacity's: no plain sender waits for it
        if self._senders:
            self._senders.unpark()
        return item

    async def get(self) -> Any:
        """Take the oldest item, waiting for one.

        Cancellation-safe: an item is removed only on the way out, after the last
        point where this call can be cancelled, so a cancelled ``get`` loses nothing.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                return self.get_nowait()
            except trio.WouldBlock:
                pass
            await self._receiver.park()  # outside the except: a suspended handler keeps its exception alive

    async def wait(self) -> None:
        """Return once an item may be available, the mailbox is closed, or
        ``interrupt`` was called. Takes nothing, so cancelling it loses nothing."""
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
        else:
            await self._receiver.park()

    def interrupt(self) -> None:
        """Wake the consumer blocked in ``wait`` so it can look at its stop flag."""
        self._receiver.unpark_all()

    def close(self) -> None:
        """Refuse new items from now on; wake everyone waiting."""
        self._closed = True
        self._receiver.unpark_all()
        self._senders.unpark_all()

    def take_all(self) -> list[Any]:
        """Remove and return everything queued (used when an actor terminates)."""
        items = [item.item if type(item) is _Keyed else item for item in self._items]
        self._items.clear()
        self._keyed.clear()
        self._senders.unpark_all()
        return items
