"""How far this replica has read the report stream: shared by the feed that
reads it and the edge that shows it (``/health/ready``, stats, ``/metrics``)."""

from __future__ import annotations

from collections import OrderedDict

import attrs
import trio

REFUSED_KEPT = 4096
"""Sequences of reports the roster refused here kept for their publishers' answers
(``refused_here``): more than the reports a 202 can wait for at once."""


@attrs.define
class BusProgress:
    connected: bool = False
    """Connected to the bus now."""
    merged: int = 0
    """Stream sequence of the last report handed to the topology here."""
    _caught_up: bool = attrs.field(default=False, alias="caught_up")
    reconnects: int = 0
    consumer_restarts: int = 0
    """Times the stream reader was recreated (after a reconnection or a consumer the server dropped)."""
    skipped: int = 0
    """Messages on the stream left out, each logged: not report envelopes
    this version reads (``bus_bad_message``), or reports whose handing on
    failed here (``bus_report_failed``)."""
    streams_created: int = 0
    """Times this process found the stream gone from the bus (a server back with
    an empty store) and created it again (with nats-server 2.10 or later, only
    the replica whose call made it counts; an earlier one tells every replica
    that asked at once that it did)."""
    _refused: OrderedDict[int, None] = attrs.field(factory=OrderedDict, init=False, repr=False)
    _pending: int = attrs.field(default=0, init=False)
    _pending_known: bool = attrs.field(default=False, init=False)
    _advanced: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    _reached_end: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if self._caught_up:
            self._reached_end.set()

    @property
    def caught_up(self) -> bool:
        """Read the stream to its end at least once since this process started: the
        topology and history are rebuilt. Until then the replica is not ready.
        Once set it stays set (``wait_caught_up`` returns from then on)."""
        return self._caught_up

    @caught_up.setter
    def caught_up(self, value: bool) -> None:
        self._caught_up = value
        if value:
            self._reached_end.set()

    async def wait_caught_up(self) -> None:
        """Wait until ``caught_up`` (a worker of ``--workers`` started beside a
        serving one takes no connections before: ``trioscope.server.serve``)."""
        await self._reached_end.wait()

    @property
    def pending(self) -> int:
        """Reports on the stream this replica has not read yet, as the stream
        reader last knew (0 before it knew). Setting it is learning it: ``lag``
        shows it from then on, until ``pending_unknown``."""
        return self._pending

    @pending.setter
    def pending(self, value: int) -> None:
        self._pending = value
        self._pending_known = True

    def pending_unknown(self) -> None:
        """A read of the stream failed: how many reports are left is not known
        (``lag`` None) until the next read that says; ``pending`` keeps the last count."""
        self._pending_known = False

    @property
    def lag(self) -> int | None:
        """``pending`` while it is known and the bus connected; None otherwise
        (before the first read, after a read that failed, while disconnected):
        a replica out of reach of the bus cannot tell how far behind it is."""
        return self._pending if self._pending_known and self.connected else None

    def refused(self, sequences: tuple[int, ...]) -> None:
        """The roster left out the reports of ``sequences`` here for want of a
        place for a new agent (``agents.max_agents``), as it would have refused
        them posted without a bus."""
        for sequence in sequences:
            self._refused[sequence] = None
        while len(self._refused) > REFUSED_KEPT:
            self._refused.popitem(last=False)

    def refused_here(self, sequence: int) -> bool:
        """Whether the report of ``sequence`` was left out here (``refused``):
        the 202 its publisher would give is a 503 then, as without a bus."""
        return sequence in self._refused

    def handed_on(self, sequence: int) -> None:
        """The feed handed the report of ``sequence`` to the roster here."""
        self.merged = sequence
        self._advanced.set()
        self._advanced = trio.Event()

    async def wait_handed_on(self, sequence: int, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until the report of ``sequence`` is
        handed to the roster here; whether it was."""
        with trio.move_on_after(timeout):
            while self.merged < sequence:
                await self._advanced.wait()
        return self.merged >= sequence

    def as_dict(self) -> dict[str, int | bool | None]:
        """The figures ``/api/v1/query/stats`` and ``/health`` show: ``lag`` is null while not known."""
        return {"connected": self.connected, "caught_up": self.caught_up, "merged_sequence": self.merged,
                "lag": self.lag, "reconnects": self.reconnects, "consumer_restarts": self.consumer_restarts,
                "skipped_messages": self.skipped, "streams_created": self.streams_created}
