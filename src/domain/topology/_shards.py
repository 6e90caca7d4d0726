"""Processes by id, held in one dict per host, so that a version shares every
host's dict with the version before except the hosts whose processes changed.

At 1,000 hosts the processes are 100,000 nodes. A version was a copy of all
of them (``dict(...)``: 4-6 ms on these machines) although a version follows
the last by a quarter of a second and a few dozen hosts' reports; a read that
wants the newest version (a GET under report load) waited for that copy, and
with a few reads a second it was a tenth of a core. Now a version copies the
outer dict (one entry per host) and each host written since the last version
copies its own hundred entries, once (copy on write).

A process id is ``process:<hostname>:<pid>``; its shard is everything before
the last colon (``shard_of``), which every process a host reports shares.
"""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, Mapping, MutableMapping, ValuesView
from itertools import chain
from typing import Any

from ._model import Node


def shard_of(process_id: str) -> str:
    """``process:<hostname>`` of ``process:<hostname>:<pid>``."""
    return process_id.rpartition(":")[0]


def host_shard(hostname: str) -> str:
    """The shard of every process of host ``hostname`` (``process_id(hostname, pid)``'s)."""
    return f"process:{hostname}"


class ShardedNodes(Mapping[str, Node]):
    """A published version's processes: read only, and each shard is never
    written again once a version holds it (``LiveShards`` copies it first)."""

    __slots__ = ("_shards", "_length")

    def __init__(self, shards: dict[str, dict[str, Node]], length: int) -> None:
        self._shards = shards
        self._length = length

    def __getitem__(self, node_id: str) -> Node:
        shard = self._shards.get(shard_of(node_id))
        if shard is None:
            raise KeyError(node_id)
        return shard[node_id]

    def get(self, node_id: str, default: Any = None) -> Any:
        shard = self._shards.get(shard_of(node_id))
        return shard.get(node_id, default) if shard is not None else default

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, str):
            return False
        shard = self._shards.get(shard_of(node_id))
        return shard is not None and node_id in shard

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._shards.values())

    def __len__(self) -> int:
        return self._length

    def values(self) -> ValuesView[Node]:
        return _Values(self)

    def items(self) -> ItemsView[str, Node]:
        return _Items(self)


class _Values(ValuesView[Node]):
    """Shard by shard, at C speed (``Mapping``'s own looks each key up again)."""

    _mapping: ShardedNodes

    def __iter__(self) -> Iterator[Node]:
        return chain.from_iterable(shard.values() for shard in self._mapping._shards.values())


class _Items(ItemsView[str, Node]):
    _mapping: ShardedNodes

    def __iter__(self) -> Iterator[tuple[str, Node]]:
        return chain.from_iterable(shard.items() for shard in self._mapping._shards.values())


class LiveShards(MutableMapping[str, Node]):
    """The live graph's processes, by shard; ``published()`` is the version's
    view of them. A shard a published version holds is copied on its first
    write after (``writable``), never changed under the readers' feet."""

    __slots__ = ("_shards", "_held")

    def __init__(self) -> None:
        self._shards: dict[str, dict[str, Node]] = {}
        self._held: set[str] = set()
        """Shards whose dict the last published version holds."""

    def writable(self, shard: str) -> dict[str, Node]:
        """Shard ``shard``'s dict, to write into (made, or copied from the published one)."""
        nodes = self._shards.get(shard)
        if nodes is None:
            nodes = self._shards[shard] = {}
        elif shard in self._held:
            self._held.discard(shard)
            nodes = self._shards[shard] = dict(nodes)
        return nodes

    def __setitem__(self, node_id: str, node: Node) -> None:
        self.writable(shard_of(node_id))[node_id] = node

    def __delitem__(self, node_id: str) -> None:
        shard = shard_of(node_id)
        nodes = self.writable(shard)
        del nodes[node_id]
        if not nodes:
            del self._shards[shard]
            self._held.discard(shard)

    def __getitem__(self, node_id: str) -> Node:
        nodes = self._shards.get(shard_of(node_id))
        if nodes is None:
            raise KeyError(node_id)
        return nodes[node_id]

    def __iter__(self) -> Iterator[str]:
        return chain.from_iterable(self._shards.values())

    def __len__(self) -> int:
        return sum(map(len, self._shards.values()))

    def published(self) -> ShardedNodes:
        """The processes as they are now, for a version: shares every shard."""
        self._held = set(self._shards)
        return ShardedNodes(dict(self._shards), len(self))
