"""Published, immutable topology versions and the differences between them."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping
from itertools import chain, islice
from typing import Any, TypeVar

import attrs
import orjson

from trioscope.wire import rfc3339_seconds

from ._edge_cache import EdgeCache
from ._model import WHOLE_KINDS, WHOLE_VIEWS, Edge, Node, NodeKind, View, edge_entries, node_entries


_KINDS = {kind.value: kind for kind in NodeKind}
_T = TypeVar("_T")


def kind_of(node_id: str) -> NodeKind:
    """The kind a node id names (ids are ``<kind>:<rest>``).

    Raises:
        ValueError: no such kind.
    """
    # A dict, not NodeKind(prefix): this runs twice per node of every merge,
    # and the enum's lookup costs ~4x more.
    kind = _KINDS.get(node_id.partition(":")[0])
    if kind is None:
        raise ValueError(f"{node_id[:80]!r} names no node kind")
    return kind


class TopologySnapshot:
    """One published version of the graph.

    Readers share it without copying: nothing in it ever changes. The JSON of
    each view is encoded on first request and cached, from the nodes' own
    cached fragments, so a version is encoded at most once per view.
    """

    __slots__ = ("version", "timestamp", "_nodes", "_edges", "_json", "_kept", "_edge_cache")

    def __init__(self, version: int, timestamp: float, nodes: Mapping[NodeKind, Mapping[str, Node]],
                 edges: Mapping[View, Mapping[tuple[str, str], Edge]], *,
                 edge_cache: EdgeCache | None = None) -> None:
        self.version = version
        self.timestamp = timestamp
        self._nodes = nodes
        self._edges = edges
        self._edge_cache = edge_cache
        """Where the edges' encodings are kept across versions (None: encoded per read)."""
        self._json: dict[View | None, bytes] = {}
        self._kept: dict[Hashable, Any] = {}

    @classmethod
    def empty(cls, timestamp: float = 0.0) -> TopologySnapshot:
        return cls(0, timestamp, {k: {} for k in NodeKind}, {v: {} for v in View})

    def node(self, node_id: str) -> Node | None:
        try:
            return self._nodes[kind_of(node_id)].get(node_id)
        except ValueError:
            return None

    def nodes(self, view: View | None = None) -> Iterator[Node]:
        """The nodes of ``view``; None: of the whole topology (``WHOLE_KINDS``)."""
        kinds = [view.kind] if view is not None else WHOLE_KINDS
        return chain.from_iterable(self._nodes[kind].values() for kind in kinds)

    def edges(self, view: View | None = None) -> Iterator[Edge]:
        for v in [view] if view is not None else WHOLE_VIEWS:
            yield from self._edges[v].values()

    def nodes_of(self, kind: NodeKind) -> Mapping[str, Node]:
        return self._nodes[kind]

    def edges_of(self, view: View) -> Mapping[tuple[str, str], Edge]:
        """The view's edges by (source, target)."""
        return self._edges[view]

    def counts(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "nodes": sum(len(self._nodes[k]) for k in WHOLE_KINDS),
            "edges": sum(len(self._edges[v]) for v in WHOLE_VIEWS),
            "nodes_by_type": {k.value: len(n) for k, n in self._nodes.items()},
            "edges_by_view": {v.value: len(e) for v, e in self._edges.items()},
        }

    def size(self, view: View | None = None) -> int:
        """Nodes and edges in ``view``."""
        kinds = [view.kind] if view is not None else WHOLE_KINDS
        views = [view] if view is not None else WHOLE_VIEWS
        return sum(len(self._nodes[k]) for k in kinds) + sum(len(self._edges[v]) for v in views)

    def chunks(self, view: View | None = None, batch: int = 4096,
               visible: Callable[[Node], bool] | None = None) -> Iterator[bytes]:
        """``{"topology": {"nodes", "edges", "timestamp", "version", "view"}}`` in
        pieces, joined from the nodes' and edges' cached entries: each node is
        encoded once, when it changes, whatever the number of versions and readers.
        ``visible``: only the nodes it accepts, and the edges between them."""
        yield b'{"topology":'
        yield from self.payload_chunks(view, batch, visible=visible)
        yield b"}"

    def payload_chunks(self, view: View | None = None, batch: int = 4096,
                       extra: Mapping[str, object] | None = None,
                       visible: Callable[[Node], bool] | None = None) -> Iterator[bytes]:
        """The object ``{"nodes", "edges", "timestamp", "version", "view", **extra}``
        in pieces (the topology itself, also the payload of a WebSocket reset)."""
        nodes, edges = self.nodes(view), self.edges(view)
        if visible is not None:
            nodes, edges = visible_part(nodes, edges, visible)
        yield b'{"nodes":{'
        yield from batched_node_entries(nodes, batch)
        yield b'},"edges":{'
        if self._edge_cache is not None and visible is None:
            yield from _without_first_comma(self._cached_edges(view))
        else:
            first = True
            while chunk := list(islice(edges, batch)):
                yield (b"" if first else b",") + edge_entries(chunk)
                first = False
        tail = {"timestamp": rfc3339_seconds(self.timestamp), "version": self.version,
                "view": view.value if view is not None else "all", **(extra or {})}
        yield b"}," + orjson.dumps(tail)[1:]

    def _cached_edges(self, view: View | None) -> Iterator[bytes]:
        """The edges of ``view`` (None: all) in runs kept by the edge cache, each after a comma."""
        assert self._edge_cache is not None
        for v in [view] if view is not None else WHOLE_VIEWS:
            yield from self._edge_cache.entries(v, self.version, self._edges[v])

    def kept(self, key: Hashable) -> Any | None:
        """What ``keep`` stored under ``key`` with this version, or None."""
        return self._kept.get(key)

    def keep(self, key: Hashable, value: _T) -> _T:
        """Store ``value``, derived from this version, with it: it lives as
        long as the version and is computed once for all its readers (listing
        orders, compressed bodies). Keys are to come from a small fixed set
        (per view, per encoding), never from a request's free values."""
        self._kept[key] = value
        return value

    def json(self, view: View | None = None) -> bytes:
        """The whole document as bytes, cached per view when it is small (large
        ones are better streamed with ``chunks``)."""
        cached = self._json.get(view)
        if cached is not None:
            return cached
        body = b"".join(self.chunks(view))
        if self.size(view) <= CACHE_LIMIT:
            self._json[view] = body
        return body


    def derived(self, key: Hashable, build: Callable[[], _T]) -> _T:
        """``kept(key)``, or ``build()`` kept under ``key`` if there is none yet:
        what is encoded from a version (a live view's first message, say) is
        then shared by every reader of that version, whoever asks first."""
        value = self._kept.get(key)
        if value is None:
            value = self.keep(key, build())
        return value


CACHE_LIMIT = 25_000
"""Views of at most this many nodes and edges keep their JSON bytes per version
(a hosts view of 1,000 hosts: under 1 MB). Larger ones are streamed."""


def visible_part(nodes: Iterator[Node], edges: Iterator[Edge],
                  visible: Callable[[Node], bool]) -> tuple[Iterator[Node], Iterator[Edge]]:
    """The nodes ``visible`` accepts and the edges between two of them. The
    edges are read after the nodes (``payload_chunks`` order), when ``shown``
    is complete."""
    shown: set[str] = set()

    def accepted() -> Iterator[Node]:
        for node in nodes:
            if visible(node):
                shown.add(node.id)
                yield node

    return accepted(), (e for e in edges if e.source in shown and e.target in shown)


def batched_node_entries(nodes: Iterator[Node], batch: int) -> Iterator[bytes]:
    """``"<id>":{...}`` of each node, comma-separated, in pieces of ``batch``."""
    # After the first piece, an empty first item: one join makes a piece with
    # its leading comma (not a join, then a copy of ~400 KB to prepend it).
    separator: list[bytes] = []
    while part := list(islice(nodes, batch)):
        yield b",".join(separator + node_entries(part))
        separator = [b""]


def _without_first_comma(pieces: Iterator[bytes]) -> Iterator[bytes]:
    """``pieces``, each with a leading comma, as the items of a JSON object:
    the first without its comma (the one piece copied)."""
    first = True
    for piece in pieces:
        yield piece[1:] if first else piece
        first = False


@attrs.frozen(kw_only=True)
class TopologyDiff:
    """What changed from ``previous_version`` to ``version``."""

    version: int
    previous_version: int
    nodes_added: Mapping[str, Node]
    nodes_updated: Mapping[str, Node]
    nodes_removed: tuple[str, ...]
    edges_added: Mapping[str, Edge]
    edges_updated: Mapping[str, Edge]
    edges_removed: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not (self.nodes_added or self.nodes_updated or self.nodes_removed
                    or self.edges_added or self.edges_updated or self.edges_removed)

    def then(self, later: TopologyDiff) -> TopologyDiff:
        """One diff from ``previous_version`` to ``later.version``: what a client
        that skipped the versions in between must apply.

        An id's category is decided by its first change (added stays added even if
        updated later; added then removed disappears), its value by its last.
        """
        if later.previous_version != self.version:
            raise ValueError(f"cannot compose diff {self.previous_version}->{self.version} "
                             f"with {later.previous_version}->{later.version}")
        nodes = _compose(self.nodes_added, self.nodes_updated, self.nodes_removed,
                         later.nodes_added, later.nodes_updated, later.nodes_removed)
        edges = _compose(self.edges_added, self.edges_updated, self.edges_removed,
                         later.edges_added, later.edges_updated, later.edges_removed)
        return TopologyDiff(version=later.version, previous_version=self.previous_version,
                            nodes_added=nodes[0], nodes_updated=nodes[1], nodes_removed=nodes[2],
                            edges_added=edges[0], edges_updated=edges[1], edges_removed=edges[2])

    def apply_to(self, nodes: dict[str, Any], edges: dict[str, Any]) -> None:
        """Apply to plain ``{id: as_dict()}`` maps (what a client holds); used by
        tests to check that diffs reproduce the next snapshot."""
        for node_id in self.nodes_removed:
            nodes.pop(node_id, None)
        for group in (self.nodes_added, self.nodes_updated):
            for node_id, node in group.items():
                nodes[node_id] = node.as_dict()
        for edge_id in self.edges_removed:
            edges.pop(edge_id, None)
        for egroup in (self.edges_added, self.edges_updated):
            for edge_id, edge in egroup.items():
                edges[edge_id] = edge.as_dict()


def _compose(added: Mapping[str, Any], updated: Mapping[str, Any], removed: tuple[str, ...],
             later_added: Mapping[str, Any], later_updated: Mapping[str, Any],
             later_removed: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, Any], tuple[str, ...]]:
    add, update, gone = dict(added), dict(updated), set(removed)
    for key in later_removed:
        if key in add:
            del add[key]  # born and gone in between: the client never needs to know
        else:
            update.pop(key, None)
            gone.add(key)
    for key, value in later_added.items():
        if key in gone:  # removed, then back: the client still holds the old one
            gone.discard(key)
            update[key] = value
        else:
            add[key] = value
    for key, value in later_updated.items():
        (add if key in add else update)[key] = value
    return add, update, tuple(sorted(gone))


def edge_kind(edge_id: str) -> NodeKind:
    """The kind of the nodes an edge joins (both ends are of one kind)."""
    return kind_of(edge_id.partition("->")[0])
