"""When a client may be sent the costliest frames: its resets
(``ResetThrottle``), and its first view among the clients connecting at the
same time (``ViewAdmission``)."""

from __future__ import annotations

import attrs


@attrs.define
class ResetThrottle:
    """When one client may be sent its next reset.

    A reset (the whole view, through the client's filter) is the costliest frame
    there is, and a client asks for one with a few bytes: ``resync``, or a new
    view or filter. However often it asks, it is owed at most one. Its owner
    builds it only once the client has room for it, and, after the reset the
    client connected with, at most once per ``interval`` (or per the time the
    previous one took to build, if longer): requests in between coalesce into
    the one reset sent when the interval ends. None is ever dropped.
    """

    interval: float
    """Least seconds between two resets after the first."""
    owed: bool = False
    """The client is due a reset (it asked, missed an update, or lagged)."""
    not_before: float = float("-inf")
    """When the next reset may be built at the earliest."""

    def owe(self) -> None:
        self.owed = True

    def forget(self) -> None:
        """Nothing to reset any more (the client left the topology topic)."""
        self.owed = False

    def due(self, now: float) -> bool:
        """Whether the owed reset may be built at ``now`` (room permitting)."""
        return self.owed and now >= self.not_before

    def sent(self, now: float, *, took: float = 0.0, first: bool = False) -> None:
        """A reset went out at ``now`` after ``took`` seconds of building; the
        ``first`` one (on connecting) does not start an interval, so that the
        subscribe a browser sends right after connecting is answered at once."""
        self.owed = False
        if not first:
            self.not_before = now + max(self.interval, took)


class ViewAdmission:
    """Clients waiting for their first view (the whole view they connect with):
    at most ``max_waiting`` at once, and their views started at most ``rate``
    per second after a burst of ``burst``, in the order they came.

    A burst of connections (every browser reconnecting after a restart) then
    costs the server a bounded share of its time, and each waiting client is
    counted: one more is refused (503) rather than queued without bound. A
    client stops waiting once its first view has been written to it, or when
    it leaves. At most ``max_per_address`` of them wait from one client
    address: clients that never read their first view (each held until the
    server's write timeout) from a few addresses would otherwise fill the
    whole room, and every other live view would be refused meanwhile.
    """

    def __init__(self, rate: float, max_waiting: int, burst: int = 1, max_per_address: int | None = None) -> None:
        if rate <= 0 or max_waiting < 1 or burst < 1 or (max_per_address is not None and max_per_address < 1):
            raise ValueError(f"invalid admission: rate {rate}, max_waiting {max_waiting}, burst {burst}, "
                             f"max_per_address {max_per_address}")
        self.rate = rate
        self.max_waiting = max_waiting
        self.burst = burst
        self.max_per_address = max_per_address if max_per_address is not None else max_waiting
        self.waiting = 0
        """Clients admitted whose first view has not been written yet."""
        self._by_address: dict[str, int] = {}
        """Of them, how many from each address (none: absent)."""
        self._next = float("-inf")
        """When the next view would start at the steady rate (the bucket's
        "theoretical arrival time"); up to ``burst - 1`` may start before."""

    def enter(self, now: float, address: str = "") -> float | None:
        """Admit one client from ``address`` at ``now``: the time its first view
        may start (``now`` or later), or None when ``max_waiting`` clients are
        waiting already, or ``max_per_address`` from ``address`` (nothing is
        counted then; ``full_for`` says which)."""
        if self.full_for(address):
            return None
        self.waiting += 1
        self._by_address[address] = self._by_address.get(address, 0) + 1
        interval = 1.0 / self.rate
        start = max(now, self._next - (self.burst - 1) * interval)
        self._next = max(self._next, now) + interval
        return start

    def full_for(self, address: str) -> str | None:
        """Why a client from ``address`` would not be admitted now ("server" or "address"), or None."""
        if self.waiting >= self.max_waiting:
            return "server"
        if self._by_address.get(address, 0) >= self.max_per_address:
            return "address"
        return None

    def leave(self, address: str = "") -> None:
        """One admitted client from ``address`` has its first view, or left without it."""
        self.waiting = max(0, self.waiting - 1)
        left = self._by_address.get(address, 0) - 1
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)
