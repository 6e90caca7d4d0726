"""Which probes the server tracks, least recently heard from first: whom to
forget when ``agents.max_agents`` is reached. Pure: the clock is passed in."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable


class AgentRoster:
    """Probe agent ids in the order they were last heard from (oldest first)."""

    def __init__(self) -> None:
        self._heard: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._heard)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._heard

    def touch(self, agent_id: str, now: float) -> None:
        """``agent_id`` was heard from at ``now``."""
        self._heard.pop(agent_id, None)
        self._heard[agent_id] = now

    def forget(self, agent_id: str) -> None:
        self._heard.pop(agent_id, None)

    def retain(self, keep: Callable[[str], bool]) -> None:
        """Forget every probe ``keep`` refuses (those no longer tracked)."""
        for agent_id in [a for a in self._heard if not keep(a)]:
            del self._heard[agent_id]

    def reclaimable(self, now: float, *, stale_after: float, enrolled: Callable[[str], bool],
                    for_enrolled: bool) -> str | None:
        """The probe to forget to make room for a new one, or None.

        Enrolled probes (their reports signed) are never forgotten for another.
        For a new unenrolled probe, only an unenrolled one silent for
        ``stale_after`` seconds makes room; for a new enrolled probe, the
        unenrolled one heard from longest ago, stale or not: enrolled probes
        always have room while unenrolled ones take it."""
        for agent_id, heard in self._heard.items():
            if enrolled(agent_id):
                continue
            if for_enrolled or now - heard >= stale_after:
                return agent_id
            return None  # the oldest unenrolled probe is fresh: every later one is fresher
        return None
