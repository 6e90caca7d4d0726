"""The graph's indexes of endpoints: which agents claim each listening socket or
address, and which agents' connections looked each one up.

There is an entry per distinct far end of every agent's connections, and
nearly every entry has one agent: it is stored as that agent (and node) alone,
a collection only once a second one comes. A set or dict for each cost
~216-232 bytes, more than the rest of the connection (measured: ~700 bytes per
client connection to a distinct far end were these containers).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Readers(Generic[K]):
    """Key -> the agents that read it."""

    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[K, str | set[str]] = {}

    def of(self, key: K) -> Collection[str]:
        found = self._of.get(key)
        if found is None:
            return ()
        return (found,) if isinstance(found, str) else found

    def add(self, key: K, agent: str) -> None:
        found = self._of.get(key)
        if found is None:
            self._of[key] = agent
        elif isinstance(found, str):
            if found != agent:
                self._of[key] = {found, agent}
        else:
            found.add(agent)

    def discard(self, key: K, agent: str) -> None:
        found = self._of.get(key)
        if found is None:
            return
        if isinstance(found, str):
            if found == agent:
                del self._of[key]
            return
        found.discard(agent)
        if len(found) == 1:
            self._of[key] = next(iter(found))

    def __len__(self) -> int:
        return len(self._of)


class Claims(Generic[K]):
    """Key -> the agents that claim it, each with the node it names."""

    __slots__ = ("_of",)

    def __init__(self) -> None:
        self._of: dict[K, tuple[str, str] | dict[str, str]] = {}

    def sole(self, key: K) -> str | None:
        """The node claimed, if every agent that claims ``key`` names the same
        one: two agents reporting one host (a probe reinstalled beside the
        old one) agree on who listens there; agents naming different nodes
        (172.17.0.2 on every Docker host) make the key ambiguous."""
        found = self._of.get(key)
        if isinstance(found, tuple):
            return found[1]
        if found is None:
            return None
        nodes = iter(found.values())
        node = next(nodes)
        for other in nodes:  # stops at the first that differs: an ambiguous key may have a thousand claimants
            if other != node:
                return None
        return node

    def set(self, key: K, agent: str, node: str) -> None:
        found = self._of.get(key)
        if found is None or (isinstance(found, tuple) and found[0] == agent):
            self._of[key] = (agent, node)
        elif isinstance(found, tuple):
            self._of[key] = {found[0]: found[1], agent: node}
        else:
            found[agent] = node

    def remove(self, key: K, agent: str) -> None:
        found = self._of.get(key)
        if found is None:
            return
        if isinstance(found, tuple):
            if found[0] == agent:
                del self._of[key]
            return
        found.pop(agent, None)
        if len(found) == 1:
            self._of[key] = next(iter(found.items()))

    def __len__(self) -> int:
        return len(self._of)
