"""Big maps of the live graph held in shards (one dict per host), so that a
version shares every shard with the version before except those written since.

At 1,000 hosts the processes are 100,000 nodes and the processes view's edges
~200,000. A version was a copy of each (``dict(...)``: 4-6 ms for the nodes,
12-22 ms for the edges on these machines), although a version follows the last
by a quarter of a second and a few dozen hosts' reports: a read that wants the
newest version (a GET under report load) waited for the copies, and a burst of
reports from new hosts, which touches edges in every version, held the event
loop for them in every version (the copy grew with the graph, not with what
changed). Now a version copies the outer dict (one entry per shard) and each
shard written since the last version copies its own entries, once (copy on write).

A process id is ``process:<hostname>:<pid>``; its shard is everything before
the last colon (``shard_of``), which every process a host reports shares. An
edge's shard is its source's (``edge_shard``): a host's processes' edges are
in that host's shard, a host's process groups' in its groups' shard; in the
views whose node ids name no host (hosts, containers, pods, services) every
edge is in one shard of that kind, copied whole when one of them changes, as
before.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, ItemsView, Iterator, Mapping, MutableMapping, ValuesView
from itertools import chain
from typing import Any, Generic, TypeVar

from ._model import Edge, Node

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def shard_of(process_id: str) -> str:
    """``process:<hostname>`` of ``process:<hostname>:<pid>``."""
    return process_id.rpartition(":")[0]


def host_shard(hostname: str) -> str:
    """The shard of every process of host ``hostname`` (``process_id(hostname, pid)``'s)."""
    return f"process:{hostname}"


def edge_shard(key: tuple[str, str]) -> str:
    """The shard of the edge ``(source, target)``: its source node's."""
    return key[0].rpartition(":")[0]


class Sharded(Mapping[K, V], Generic[K, V]):
    """A published version of a sharded map: read only, and each shard is never
    written again once a version holds it (``LiveShards`` copies it first)."""

    __slots__ = ("_shards", "_length", "_shard")

    def __init__(self, shards: dict[str, dict[K, V]], length: int, shard: Callable[[K], str]) -> None:
        self._shards = shards
        self._length = length
        self._shard = shard

    def __getitem__(self, key: K) -> V:
        shard = self._shards.get(self._shard(key))
        if shard is None:
            raise KeyError(key)
        return shard[key]

    def get(self, key: K, default: Any = None) -> Any:
        shard = self._shards.get(self._shard(key))
        return shard.get(key, default) if shard is not None else default

    def __contains__(self, key: object) -> bool:
        try:
            shard = self._shards.get(self._shard(key))  # type: ignore[arg-type]  # any key: absent if not a K
        except (AttributeError, TypeError, IndexError):
            return False
        return shard is not None and key in shard

    def __iter__(self) -> Iterator[K]:
        return chain.from_iterable(self._shards.values())

    def __len__(self) -> int:
        return self._length

    def values(self) -> ValuesView[V]:
        return _Values(self)

    def items(self) -> ItemsView[K, V]:
        return _Items(self)


class _Values(ValuesView[V]):
    """Shard by shard, at C speed (``Mapping``'s own looks each key up again)."""

    _mapping: Sharded[Any, V]

    def __iter__(self) -> Iterator[V]:
        return chain.from_iterable(shard.values() for shard in self._mapping._shards.values())


class _Items(ItemsView[K, V]):
    _mapping: Sharded[K, Any]

    def __iter__(self) -> Iterator[tuple[K, V]]:
        return chain.from_iterable(shard.items() for shard in self._mapping._shards.values())


class LiveShards(MutableMapping[K, V], Generic[K, V]):
    """A live map, by shard; ``published()`` is a version's view of it. A shard
    a published version holds is copied on its first write after
    (``writable``), never changed under the readers' feet."""

    __slots__ = ("_shards", "_held", "_shard")

    def __init__(self, shard: Callable[[K], str]) -> None:
        self._shards: dict[str, dict[K, V]] = {}
        self._held: set[str] = set()
        """Shards whose dict the last published version holds."""
        self._shard = shard

    def writable(self, shard: str) -> dict[K, V]:
        """Shard ``shard``'s dict, to write into (made, or copied from the published one)."""
        entries = self._shards.get(shard)
        if entries is None:
            entries = self._shards[shard] = {}
        elif shard in self._held:
            self._held.discard(shard)
            entries = self._shards[shard] = dict(entries)
        return entries

    def __setitem__(self, key: K, value: V) -> None:
        self.writable(self._shard(key))[key] = value

    def __delitem__(self, key: K) -> None:
        shard = self._shard(key)
        if key not in self._shards.get(shard, ()):
            raise KeyError(key)  # before ``writable``, which would make or copy the shard for nothing
        entries = self.writable(shard)
        del entries[key]
        if not entries:
            del self._shards[shard]
            self._held.discard(shard)

    def __getitem__(self, key: K) -> V:
        entries = self._shards.get(self._shard(key))
        if entries is None:
            raise KeyError(key)
        return entries[key]

    def get(self, key: K, default: Any = None) -> Any:
        entries = self._shards.get(self._shard(key))
        return entries.get(key, default) if entries is not None else default

    def __iter__(self) -> Iterator[K]:
        return chain.from_iterable(self._shards.values())

    def __len__(self) -> int:
        return sum(map(len, self._shards.values()))

    def copy(self) -> LiveShards[K, V]:
        """Another live map of the same entries, sharing nothing with this one."""
        copied: LiveShards[K, V] = LiveShards(self._shard)
        copied._shards = {shard: dict(entries) for shard, entries in self._shards.items()}
        return copied

    def published(self) -> Sharded[K, V]:
        """The map as it is now, for a version: shares every shard."""
        self._held = set(self._shards)
        return Sharded(dict(self._shards), len(self), self._shard)


def live_processes() -> LiveShards[str, Node]:
    """The live graph's processes by id, in shards by host."""
    return LiveShards(shard_of)


def live_edges() -> LiveShards[tuple[str, str], Edge]:
    """One view's edges by (source, target), in shards by their source's host."""
    return LiveShards(edge_shard)
