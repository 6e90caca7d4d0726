"""What resets of the live views, and the diffs made for one client alone,
may cost, per client address and in all (``ResetBudget``): the rules, with
plain values; ``trioscope.actors.reset_turns`` waits by them."""

from __future__ import annotations

import collections
import math
from collections.abc import Hashable

import attrs


@attrs.define
class _Address:
    """What one client address costs in resets (``ResetBudget``)."""

    waiting: collections.deque[Hashable] = attrs.field(factory=collections.deque)
    """Tickets of its clients waiting for a turn, first come first."""
    building: bool = False
    """One of its clients has the address's turn."""
    light: bool = False
    """That turn is for diffs, made at once (``take``): not one of ``builds``."""
    last_reset: float = 0.0
    """Seconds of work of its last turn that was not light."""
    light_since: float = 0.0
    """Seconds of work of its light turns since."""
    not_before: float = float("-inf")
    """When its next turn may start at the earliest."""
    held: dict[int, int] = attrs.field(factory=dict)
    """Frames queued for its clients or being sent to them: how many of its clients hold each (by ``id``)."""
    held_bytes: int = 0
    """What those frames weigh, each counted once."""

    def idle(self, now: float) -> bool:
        return not (self.waiting or self.building or self.held) and now >= self.not_before


class ResetBudget:
    """What resets may cost, per client address and in all: the rules, with
    plain values (no clock, no waiting; ``ResetTurns`` waits by them).

    A reset is the costliest thing a client can ask for: the work of looking
    at every node of its view (a view with a filter, for each client), and
    the memory of the frame until the client has read it (the processes of
    300 hosts: 16 MB, as much again framed). ``ResetThrottle`` paces one
    client; this paces the clients of an address together, whatever their
    number, and all clients together:

    * Time: an address's resets are built one at a time (``ask``, then
      ``grant``), and after one that took ``took`` seconds of work the
      address's next turn starts no earlier than ``took * (1 / share - 1)``
      later, so its builds take at most ``share`` of the server's time. At
      most ``builds`` are under way in all; the addresses waiting go in turn.
    * Diffs: a client with a filter (or that may not see everything) is
      made diffs of its own each version, a few milliseconds of looking at
      what changed for each of its clients. They are made on the address's
      turns too, its *light* turns (``ask(light=True)``, or ``take`` when the
      address is free at once): charged to the same share of time, one at a
      time with its resets, but never counted in ``builds`` (made in one
      step, they add nothing to the event loop's turns, and an address's
      diffs must not wait for another address's resets). While both wait,
      its diffs go first until they have taken as long as its last reset
      (a filtered reset of 20,000 processes is ~100 ms, a diff ~1 ms): its
      clients that read get their diffs, rather than each falling behind
      into a reset of its own, and its new clients still get theirs.
    * Memory: the frames queued for an address's clients or being sent to
      them (``hold``; a frame several of them share counts once) weigh at
      most ``bytes_per_address``, and those of all clients ``total_bytes``:
      beyond either, no turn is granted, and a client may take a frame
      built already (``may_take``) only if it adds nothing. One more
      frame may always start when an address (or the server) holds none, so
      that a view larger than the limit is still served, one at a time.
    """

    def __init__(self, *, share: float, builds: int, bytes_per_address: int, total_bytes: int) -> None:
        if not 0 < share <= 1 or builds < 1 or bytes_per_address < 1 or total_bytes < 1:
            raise ValueError(f"invalid reset budget: share {share}, builds {builds}, "
                             f"bytes_per_address {bytes_per_address}, total_bytes {total_bytes}")
        self.share = share
        self.builds = builds
        self.bytes_per_address = bytes_per_address
        self.total_bytes = total_bytes
        self.building = 0
        """Turns granted and not yet done."""
        self.held_bytes = 0
        """What the frames held by any client weigh, each counted once."""
        self._held: dict[int, tuple[int, int]] = {}
        """Frames held (by ``id``): (how many addresses hold it, its bytes)."""
        self._addresses: dict[str, _Address] = {}
        """Addresses that cost something now, or must wait before their next turn."""
        self._queue: dict[str, None] = {}
        """Addresses with clients waiting, in the order they take turns."""
        self._prune_above = 64
        self._light: set[Hashable] = set()
        """Tickets waiting for a light turn."""

    def ask(self, address: str, ticket: Hashable, *, light: bool = False) -> None:
        """A client of ``address`` wants a turn to build a reset (``light``:
        to make its diffs); ``grant`` says when it has one, unless it
        ``cancel``s first."""
        self._address(address).waiting.append(ticket)
        self._queue.setdefault(address, None)
        if light:
            self._light.add(ticket)

    def take(self, address: str, now: float) -> bool:
        """A light turn for a client of ``address`` at once, if none of its
        clients waits or has a turn and its time has come (then ``done``
        once); False: it must ``ask``."""
        state = self._addresses.get(address)
        if state is not None and (state.waiting or state.building or now < state.not_before):
            return False
        state = self._address(address)
        state.building = state.light = True
        return True

    def cancel(self, address: str, ticket: Hashable, now: float) -> None:
        """The client waiting with ``ticket`` no longer does (no turn granted)."""
        state = self._addresses.get(address)
        self._light.discard(ticket)
        if state is not None and ticket in state.waiting:
            state.waiting.remove(ticket)
            if not state.waiting:
                self._queue.pop(address, None)
            self._forget_if_idle(address, state, now)

    def grant(self, now: float) -> list[Hashable]:
        """The tickets whose clients may start building at ``now``, each its
        address's turn (taken from the waiting; one ``done`` each)."""
        granted: list[Hashable] = []
        for address in list(self._queue):
            state = self._addresses[address]
            if state.building or now < state.not_before:
                continue
            ticket = self._next(state)
            light = ticket in self._light
            if not light and (self.building >= self.builds or not self._room(state)):
                continue
            state.waiting.remove(ticket)
            granted.append(ticket)
            state.building, state.light = True, light
            if light:
                self._light.discard(ticket)
            else:
                self.building += 1
            del self._queue[address]  # its next client goes after the others waiting now
            if state.waiting:
                self._queue[address] = None
        return granted

    def _next(self, state: _Address) -> Hashable:
        """The ticket of ``state``'s clients to go next: the first, or the
        first light one while its diffs have taken less than its last reset."""
        first = state.waiting[0]
        if first not in self._light and state.light_since < state.last_reset:
            return next((ticket for ticket in state.waiting if ticket in self._light), first)
        return first

    def wake_at(self, address: str, ticket: Hashable, now: float) -> float:
        """When ``grant`` may have a turn for ``ticket`` that no other event
        (a turn done, a frame released) brings: the address's time, if still
        to come, for the first of its clients waiting; else never."""
        state = self._addresses.get(address)
        if state is None or not state.waiting or state.waiting[0] != ticket or state.building:
            return math.inf
        return state.not_before if state.not_before > now else math.inf

    def first_waiting(self, address: str) -> Hashable | None:
        """The ticket of the first client of ``address`` waiting, if any."""
        state = self._addresses.get(address)
        return state.waiting[0] if state is not None and state.waiting else None

    def done(self, address: str, now: float, took: float) -> None:
        """The turn of ``address`` ended at ``now`` after ``took`` seconds of work."""
        state = self._addresses[address]
        assert state.building, f"{address}: no turn to end"
        state.building = False
        if state.light:
            state.light = False
            state.light_since += took
        else:
            self.building -= 1
            state.last_reset, state.light_since = took, 0.0
        state.not_before = now + took * (1 / self.share - 1)
        self._forget_if_idle(address, state, now)
        self._prune(now)

    def may_take(self, address: str, key: int) -> bool:
        """Whether a client of ``address`` may take the frame ``key`` (its
        ``id``), built already, without a turn: its address holds it, or
        it has room for it and the frame is held already or there is room."""
        state = self._addresses.get(address)
        if state is not None and key in state.held:
            return True
        return (state is None or self._room_of(state)) and (key in self._held or self._room_in_all())

    def hold(self, address: str, key: int, size: int) -> None:
        """A client of ``address`` was queued the frame ``key`` (its ``id``) of ``size`` bytes."""
        state = self._address(address)
        count = state.held.get(key, 0)
        state.held[key] = count + 1
        if count == 0:
            state.held_bytes += size
            addresses, _ = self._held.get(key, (0, size))
            if addresses == 0:
                self.held_bytes += size
            self._held[key] = (addresses + 1, size)

    def release(self, address: str, key: int, now: float) -> None:
        """A client of ``address`` has been sent the frame ``key``, or is gone."""
        state = self._addresses[address]
        count = state.held.pop(key)
        if count > 1:
            state.held[key] = count - 1
            return
        addresses, size = self._held.pop(key)
        state.held_bytes -= size
        if addresses > 1:
            self._held[key] = (addresses - 1, size)
        else:
            self.held_bytes -= size
        self._forget_if_idle(address, state, now)

    def holds(self, address: str) -> int:
        """Bytes of the frames the clients of ``address`` hold (each counted once)."""
        state = self._addresses.get(address)
        return state.held_bytes if state is not None else 0

    def _address(self, address: str) -> _Address:
        state = self._addresses.get(address)
        if state is None:
            state = self._addresses[address] = _Address()
        return state

    def _room(self, state: _Address) -> bool:
        return self._room_of(state) and self._room_in_all()

    def _room_of(self, state: _Address) -> bool:
        return state.held_bytes < self.bytes_per_address or not state.held

    def _room_in_all(self) -> bool:
        return self.held_bytes < self.total_bytes or not self._held

    def _forget_if_idle(self, address: str, state: _Address, now: float) -> None:
        if state.idle(now):
            del self._addresses[address]

    def _prune(self, now: float) -> None:
        """Forget the addresses that cost nothing any more, once there are
        twice as many as last time: one address's entry per client address
        seen, not one ever."""
        if len(self._addresses) > self._prune_above:
            for address in [a for a, state in self._addresses.items() if state.idle(now)]:
                del self._addresses[address]
            self._prune_above = max(64, 2 * len(self._addresses))
