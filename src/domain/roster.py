"""Which probes the server tracks, least recently heard from first: whom to
forget when ``agents.max_agents`` is reached. Pure: the clock is passed in.

Each probe is tracked with the client address it was last heard from (its
source: the address, an IPv6 one's /64), so that no one address can keep the
places for itself: at the limit, a new unenrolled probe from an address holding
fewer probes than another takes the place of one of that other's
(``reclaimable``). Reports fed from the report stream carry the source of the
client that sent them to their replica; a probe heard from only without one
(reports through replicas of an earlier version) has none, and counts in no
share.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class _Tally:
    """How many probes each source holds, and a source holding the most, each in O(1).

    Of the sources holding the most, the one that came to hold that many
    first: the same on every replica that saw the same reports in the same
    order (a set's order would follow each process's string hashing)."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self._holding: dict[int, dict[str, None]] = {}
        """Count -> the sources holding that many, in the order they came to."""
        self._top = 0

    def add(self, source: str, delta: int) -> None:
        before = self.count.get(source, 0)
        after = before + delta
        if before:
            holding = self._holding[before]
            del holding[source]
            if not holding:
                del self._holding[before]
        if after:
            self.count[source] = after
            self._holding.setdefault(after, {})[source] = None
        else:
            del self.count[source]
        # Counts move by one: the largest is the one before, one above, or one below.
        self._top = max(self._top, after)
        while self._top and self._top not in self._holding:
            self._top -= 1

    def largest(self) -> str | None:
        return next(iter(self._holding[self._top])) if self._top else None


class AgentRoster:
    """Probe agent ids in the order they were last heard from (oldest first),
    with the sources of the unenrolled ones."""

    def __init__(self) -> None:
        self._heard: OrderedDict[str, float] = OrderedDict()
        self._source: dict[str, str] = {}
        """Agent id -> the address it was last heard from (none yet: absent)."""
        self._enrolled: set[str] = set()
        """Agents last heard from signed: never forgotten for another, so in no source's count."""
        self._of_source: dict[str, OrderedDict[str, None]] = {}
        """Source -> its unenrolled probes, least recently heard from first."""
        self._tally = _Tally()

    def __len__(self) -> int:
        return len(self._heard)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._heard

    def touch(self, agent_id: str, now: float, source: str | None = None, enrolled: bool | None = None) -> None:
        """``agent_id`` was heard from at ``now``, from ``source``, signed or
        not (``enrolled``); None for either: as it was last (if known).

        ``now`` may lie before other probes' times (a report replayed from the
        report stream is heard from when it was received, not when it is read
        back): the probe takes its place among them by time. An earlier time
        than the probe's own changes nothing of when it was last heard from."""
        at = max(now, self._heard.get(agent_id, now))
        self._heard.pop(agent_id, None)
        self._place(self._heard, agent_id, at, at)
        was_source, was_enrolled = self._source.get(agent_id), agent_id in self._enrolled
        counted = was_source is not None and not was_enrolled
        if source is None:
            source = was_source
        if enrolled is None:
            enrolled = was_enrolled
        if source is not None:
            self._source[agent_id] = source
        if enrolled:
            self._enrolled.add(agent_id)
        else:
            self._enrolled.discard(agent_id)
        if counted and (source != was_source or enrolled):
            assert was_source is not None
            self._uncount(agent_id, was_source)
            counted = False
        if source is None or enrolled:
            return
        members = self._of_source.setdefault(source, OrderedDict())
        members.pop(agent_id, None)
        self._place(members, agent_id, None, at)
        if not counted:
            self._tally.add(source, 1)

    def _place(self, order: OrderedDict[str, T], agent_id: str, value: T, at: float) -> None:
        """Put ``agent_id`` (absent from ``order``) into ``order``, least recently
        heard from first, as heard from at ``at``: at its end but for probes heard
        from later (a replayed report's time), usually none or a few."""
        later: list[tuple[str, T]] = []
        while order:
            last = next(reversed(order))
            if self._heard[last] <= at:
                break
            later.append((last, order.pop(last)))
        order[agent_id] = value
        for other, kept in reversed(later):
            order[other] = kept

    def forget(self, agent_id: str) -> None:
        self._heard.pop(agent_id, None)
        source = self._source.pop(agent_id, None)
        if agent_id in self._enrolled:
            self._enrolled.discard(agent_id)
        elif source is not None:
            self._uncount(agent_id, source)

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Forget every probe ``keep`` refuses (those no longer tracked)."""
        for agent_id in [a for a in self._heard if not keep(a)]:
            self.forget(agent_id)

    def source_of(self, agent_id: str) -> str | None:
        return self._source.get(agent_id)

    def held_by(self, source: str) -> int:
        """How many unenrolled probes ``source`` holds."""
        return self._tally.count.get(source, 0)

    def reclaimable(self, now: float, *, stale_after: float, enrolled: Callable[[str], bool],
                    for_enrolled: bool, source: str | None = None) -> str | None:
        """The probe to forget to make room for a new one from ``source``
        (touched already: it counts as one of its source's), or None.

        Enrolled probes (their reports signed; ``enrolled`` says which are now)
        are never forgotten for another. For a new enrolled probe, the
        unenrolled one heard from longest ago, stale or not: enrolled probes
        always have room while unenrolled ones take it. For a new unenrolled
        probe, an unenrolled one silent for ``stale_after`` seconds; else, when
        another source holds more unenrolled probes than ``source`` does, the
        one of that source heard from longest ago: so the places unenrolled
        probes may take end up shared evenly between the addresses that want
        them, and a client that makes up agent ids keeps at most its share."""
        for agent_id, heard in self._heard.items():
            if enrolled(agent_id):
                continue
            if for_enrolled or now - heard >= stale_after:
                return agent_id
            break  # the oldest unenrolled probe is fresh: every later one is fresher
        if for_enrolled or source is None:
            return None
        largest = self._tally.largest()
        if largest is None or largest == source or self.held_by(largest) <= self.held_by(source):
            return None  # ties: the source asking holds as many as any
        return next((a for a in self._of_source[largest] if not enrolled(a)), None)

    def _uncount(self, agent_id: str, source: str) -> None:
        members = self._of_source[source]
        del members[agent_id]
        if not members:
            del self._of_source[source]
        self._tally.add(source, -1)
