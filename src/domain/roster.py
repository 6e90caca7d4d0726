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

A signed probe (enrolled: its reports signed by an enrolled agent) counts in
no share and is never forgotten for another, but only while it is the probe id
its agent reports under: an agent reports under one probe id at a time (the
directory's ``attach_reporter``), so when it signs a report of another id, the
one before is superseded: it counts as enrolled no more, and it is the first
to make room for any new probe. Where the signer is not known (a report from
the report stream, published by another replica), no more probes signed by
agents not named count as enrolled than there are enrolled agents: the least
recently heard of them beyond that count as unenrolled, and a new enrolled
probe takes one of their places first. So an enrolled agent that makes up
probe ids holds one place, or (through replicas) no more than there are
agents, not every place.
"""

from __future__ import annotations

import enum
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


class _Standing(enum.Enum):
    """What a tracked probe counts as, besides its place in the order heard from."""

    UNENROLLED = "unenrolled"
    """In its source's share (if it has a source)."""
    ENROLLED = "enrolled"
    """Its agent's current probe id: in no share, never forgotten for another."""
    SUPERSEDED = "superseded"
    """Its agent signed another probe id since: in no share, the first to make room."""
    SURPLUS = "surplus"
    """Signed by an agent not named, beyond the number of agents: in its source's
    share, and the first, after the superseded ones, to make room for a new enrolled probe."""


class AgentRoster:
    """Probe agent ids in the order they were last heard from (oldest first),
    with the sources of the unenrolled ones and the signers of the enrolled ones."""

    def __init__(self) -> None:
        self._heard: OrderedDict[str, float] = OrderedDict()
        self._source: dict[str, str] = {}
        """Agent id -> the address it was last heard from (none yet: absent)."""
        self._signer: dict[str, str | None] = {}
        """Enrolled probe -> the enrolled agent that signed it (None: one not named):
        never forgotten for another, so in no source's count."""
        self._reporter: dict[str, str] = {}
        """Enrolled agent -> the probe id it signed last (the one it counts as enrolled for)."""
        self._unnamed: OrderedDict[str, None] = OrderedDict()
        """Enrolled probes whose signer is not named, least recently heard from first."""
        self._superseded: OrderedDict[str, None] = OrderedDict()
        """Probes whose agent signed another probe id since, least recently heard from first."""
        self._surplus: OrderedDict[str, None] = OrderedDict()
        """Probes signed by agents not named beyond the number of agents, least recently heard from first."""
        self._of_source: dict[str, OrderedDict[str, None]] = {}
        """Source -> its unenrolled probes, least recently heard from first."""
        self._tally = _Tally()

    def __len__(self) -> int:
        return len(self._heard)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._heard

    def touch(self, agent_id: str, now: float, source: str | None = None, enrolled: bool | None = None, *,
              signer: str | None = None, signers: int | None = None) -> None:
        """``agent_id`` was heard from at ``now``, from ``source``, signed or
        not (``enrolled``); None for either: as it was last (if known).

        ``signer``: the enrolled agent that signed it, when known: the probe id
        that agent signed before is superseded (see the module docstring).
        Signed by an agent not named (``signer`` None), it counts as enrolled
        while no more than ``signers`` (the number of enrolled agents; None:
        no bound) such probes were heard from since, unless its agent had
        superseded it here (a report from before that, read late from the
        stream, does not make it current again).

        ``now`` may lie before other probes' times (a report replayed from the
        report stream is heard from when it was received, not when it is read
        back): the probe takes its place among them by time. An earlier time
        than the probe's own changes nothing of when it was last heard from."""
        at = max(now, self._heard.get(agent_id, now))
        standing, was_signer = self._release(agent_id)
        self._heard.pop(agent_id, None)
        self._place(self._heard, agent_id, at, at)
        if source is not None:
            self._source[agent_id] = source
        if enrolled is None:
            self._restore(agent_id, standing, was_signer, at)
        elif not enrolled:
            self._count(agent_id, at)
        elif signer is not None:
            self._enroll(agent_id, signer)
        elif standing is _Standing.SUPERSEDED:
            self._place(self._superseded, agent_id, None, at)
        else:
            self._enroll_unnamed(agent_id, at, signers)

    def _release(self, agent_id: str) -> tuple[_Standing, str | None]:
        """Take ``agent_id`` out of every order but the one heard from; what it counted as, and its signer."""
        if agent_id in self._signer:
            signer = self._signer.pop(agent_id)
            if signer is None:
                del self._unnamed[agent_id]
            else:
                del self._reporter[signer]
            return _Standing.ENROLLED, signer
        if agent_id in self._superseded:
            del self._superseded[agent_id]
            return _Standing.SUPERSEDED, None
        source = self._source.get(agent_id)
        if source is not None:
            self._uncount(agent_id, source)
        if agent_id in self._surplus:
            del self._surplus[agent_id]
            return _Standing.SURPLUS, None
        return _Standing.UNENROLLED, None

    def _restore(self, agent_id: str, standing: _Standing, signer: str | None, at: float) -> None:
        """Put ``agent_id`` back as it was (``_release``), heard from at ``at``."""
        if standing is _Standing.ENROLLED:
            self._signer[agent_id] = signer
            if signer is None:
                self._place(self._unnamed, agent_id, None, at)
            else:
                self._reporter[signer] = agent_id
        elif standing is _Standing.SUPERSEDED:
            self._place(self._superseded, agent_id, None, at)
        else:
            self._count(agent_id, at)
            if standing is _Standing.SURPLUS:
                self._place(self._surplus, agent_id, None, at)

    def _enroll(self, agent_id: str, signer: str) -> None:
        previous = self._reporter.get(signer)
        if previous is not None:
            del self._signer[previous]
            self._place(self._superseded, previous, None, self._heard[previous])
        self._reporter[signer] = agent_id
        self._signer[agent_id] = signer

    def _enroll_unnamed(self, agent_id: str, at: float, signers: int | None) -> None:
        self._signer[agent_id] = None
        self._place(self._unnamed, agent_id, None, at)
        while signers is not None and len(self._unnamed) > max(signers, 1):
            oldest = next(iter(self._unnamed))
            del self._unnamed[oldest], self._signer[oldest]
            self._count(oldest, self._heard[oldest])
            self._place(self._surplus, oldest, None, self._heard[oldest])

    def _count(self, agent_id: str, at: float) -> None:
        """Count unenrolled ``agent_id``, heard from at ``at``, in its source's share (if it has a source)."""
        source = self._source.get(agent_id)
        if source is None:
            return
        self._place(self._of_source.setdefault(source, OrderedDict()), agent_id, None, at)
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
        if agent_id not in self._heard:
            return
        self._release(agent_id)
        del self._heard[agent_id]
        self._source.pop(agent_id, None)

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Forget every probe ``keep`` refuses (those no longer tracked)."""
        for agent_id in [a for a in self._heard if not keep(a)]:
            self.forget(agent_id)

    def source_of(self, agent_id: str) -> str | None:
        return self._source.get(agent_id)

    def superseded(self, agent_id: str) -> bool:
        """Whether the agent that signed ``agent_id`` signs another probe id now."""
        return agent_id in self._superseded

    def enrolled_unnamed(self, agent_id: str) -> bool:
        """Whether ``agent_id`` counts as enrolled, signed by an agent not named (see ``touch``)."""
        return agent_id in self._signer and self._signer[agent_id] is None

    def held_by(self, source: str) -> int:
        """How many unenrolled probes ``source`` holds."""
        return self._tally.count.get(source, 0)

    def reclaimable(self, now: float, *, stale_after: float, enrolled: Callable[[str], bool],
                    for_enrolled: bool, source: str | None = None, newcomer: str | None = None) -> str | None:
        """The probe to forget to make room for a new one from ``source``
        (touched already: it counts as one of its source's), or None.

        ``newcomer``: the new probe, not touched (a look that changes
        nothing, as a replica takes before publishing a report on the report
        stream): it counts as one of ``source``'s all the same, and is never
        the probe found. Whether one is found is then what it would be once
        touched, for a newcomer unenrolled or signed by an agent named (only
        which one may differ: the probe id its agent signed before would be
        the first superseded).

        Enrolled probes (their reports signed; ``enrolled`` says which are now)
        are never forgotten for another. First, for any new probe, a superseded
        one (its agent signs another probe id now), heard from longest ago. For
        a new enrolled probe, then one signed by an agent not named beyond the
        number of agents (as likely superseded, where the signer is not known),
        else the unenrolled one heard from longest ago, stale or not: enrolled
        probes always have room while unenrolled ones take it.
        For a new unenrolled probe, an unenrolled one silent for ``stale_after``
        seconds; else, when another source holds more unenrolled probes than
        ``source`` does, the one of that source heard from longest ago: so the
        places unenrolled probes may take end up shared evenly between the
        addresses that want them, and a client that makes up agent ids keeps
        at most its share."""
        def kept(agent_id: str) -> bool:
            """Never the probe found: enrolled, or the newcomer itself."""
            return agent_id == newcomer or enrolled(agent_id)

        for first in (self._superseded, self._surplus if for_enrolled else ()):
            found = next((a for a in first if not kept(a)), None)
            if found is not None:
                return found
        for agent_id, heard in self._heard.items():
            if kept(agent_id):
                continue
            if for_enrolled or now - heard >= stale_after:
                return agent_id
            break  # the oldest unenrolled probe is fresh: every later one is fresher
        if for_enrolled or source is None:
            return None
        held = self.held_by(source)
        if newcomer is not None and newcomer not in self._of_source.get(source, ()):
            held += 1  # as touched (counted in its source's share)
        largest = self._tally.largest()
        if largest is None or largest == source or self.held_by(largest) <= held:
            return None  # ties: the source asking holds as many as any
        return next((a for a in self._of_source[largest] if not kept(a)), None)

    def _uncount(self, agent_id: str, source: str) -> None:
        members = self._of_source[source]
        del members[agent_id]
        if not members:
            del self._of_source[source]
        self._tally.add(source, -1)
