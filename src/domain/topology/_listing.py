"""Listings of a topology version for big views: one page at a time in node id
order, and nodes with only some of their fields."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import attrgetter
from typing import Any, TypeVar

import attrs
import orjson

from trioscope.domain.steps import Steps, at_once, sorted_in_steps
from trioscope.wire import rfc3339_seconds

from ._model import NODE_FIELDS, WHOLE_KINDS, WHOLE_VIEWS, Edge, Node, NodeKind, View, edge_entries
from ._snapshot import TopologySnapshot, batched_node_entries, visible_part, kind_of

SUMMARY_FIELDS = ("id", "type", "label", "parent", "metrics")
"""The node fields of ``summary=true``: enough to draw and colour a big graph."""

MAX_PAGE = 50_000
"""The largest page (nodes) a listing is cut into."""

_VIEW_OF = {view.kind: view for view in View}
_ID_ORDER = sorted(WHOLE_KINDS, key=lambda kind: kind.value)
"""Kinds in the order of their nodes' ids (``container:...`` < ``host:...`` < ...)."""
_SOURCE = attrgetter("source")
T = TypeVar("T")


@attrs.frozen
class IdOrder:
    """One kind's nodes in id order and its view's edges in source order, in
    one version: what pages are cut from, built once per version and kind
    when first asked for (for 100,000 processes and ~200,000 edges, about
    0.14 s of CPU, in steps between which the event loop serves others:
    ``id_order_steps``)."""

    ids: Sequence[str]
    edges: Sequence[Edge]
    sources: Sequence[str]
    """``edges``' sources, for bisection."""


def _order_key(kind: NodeKind) -> tuple[str, NodeKind]:
    return ("id order", kind)


ORDER_STEP = 16_384
"""Items sorted, or merged, between two yields of ``id_order_steps``."""


def id_order_steps(snapshot: TopologySnapshot, kind: NodeKind) -> Steps[IdOrder]:
    """Build (or find) the ``IdOrder`` of ``kind`` in ``snapshot``, yielding
    between steps (runs of at most ``ORDER_STEP`` items sorted, then sorted
    runs merged two by two in one pass each), so that a caller can let others
    run in between: one ``sorted()`` of 200,000 edges holds the CPU, and the
    GIL, for 60-120 ms; the longest step, the last merge, ~15 ms. Keeps it
    with the snapshot and returns it."""
    key = _order_key(kind)
    order = snapshot.kept(key)
    if order is None:
        ids = yield from sorted_in_steps(list(snapshot.nodes_of(kind)), None, ORDER_STEP)
        # Sorted by source alone: a stable sort, so ties keep the version's own
        # order and two pages of one version agree.
        edges = yield from sorted_in_steps(list(snapshot.edges_of(_VIEW_OF[kind]).values()), _SOURCE, ORDER_STEP)
        order = snapshot.keep(key, IdOrder(ids, edges, list(map(_SOURCE, edges))))
    return order


def visible_counts_steps(snapshot: TopologySnapshot, visible: Callable[[str, str | None], bool],
                         step: int = ORDER_STEP) -> Steps[dict[str, Any]]:
    """``TopologySnapshot.counts`` (without its version) over the nodes
    ``visible(node_id, agent_id)`` accepts, an edge counted when both its ends
    are; yields after every ``step`` nodes or edges (a topology of 100,000 nodes
    counted at once would hold the loop ~50 ms)."""
    def seen(node: Node | None) -> bool:
        return node is not None and visible(node.id, node.agent_id)

    by_type: dict[str, int] = {}
    for kind in NodeKind:
        count = 0
        for index, found in enumerate(snapshot.nodes_of(kind).values(), 1):
            count += seen(found)
            if index % step == 0:
                yield
        by_type[kind.value] = count
    by_view: dict[str, int] = {}
    for view in View:
        count = 0
        for index, (source, target) in enumerate(snapshot.edges_of(view), 1):
            count += seen(snapshot.node(source)) and seen(snapshot.node(target))
            if index % step == 0:
                yield
        by_view[view.value] = count
    return {"nodes": sum(by_type[kind.value] for kind in WHOLE_KINDS),
            "edges": sum(by_view[view.value] for view in WHOLE_VIEWS),
            "nodes_by_type": by_type, "edges_by_view": by_view}


def id_order(snapshot: TopologySnapshot, kind: NodeKind) -> IdOrder:
    """The ``IdOrder`` of ``kind`` in ``snapshot``, built at once on first use, then kept with it."""
    return at_once(id_order_steps(snapshot, kind))


class BadListing(ValueError):
    """A listing asked for with a parameter it cannot take."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        """The request's name for it (``limit``, ``fields``, ``cursor``)."""


class Listing:
    """The object ``{"nodes", "edges", "timestamp", "version", "view"}`` of one
    view (None: all of them) of a snapshot, in pieces, as ``TopologySnapshot.
    payload_chunks`` writes it, or a part of it.

    Args:
        limit: a page: at most ``limit`` nodes, the first in id order after
            the id ``after``, with the edges whose source is on the page (or,
            for a source that is not a node, sorts between this page's ``after``
            and its last id). A walk that follows ``next_after`` from page to page
            lists every node present all along exactly once, and every edge
            at most once, even when versions change in between (an order by
            position would skip or repeat nodes as others come and go).
            None: every node, in the snapshot's own order.
        fields: only these node keys (from ``NODE_FIELDS``), encoded per
            request; None: the whole nodes, from their cached encodings.
        visible: only the nodes it accepts, and the edges between two of them.
        batch: nodes or edges per piece: a piece is what is computed between
            two chances for the event loop to serve others.

    Raises:
        BadListing: ``after`` names no node kind of this view, or ``fields``
            an unknown field, or ``limit`` is out of 1..MAX_PAGE.
    """

    def __init__(self, snapshot: TopologySnapshot, view: View | None, *, limit: int | None = None,
                 after: str | None = None, fields: Sequence[str] | None = None,
                 visible: Callable[[Node], bool] | None = None, batch: int = 1024) -> None:
        self.snapshot, self.view, self.limit, self.after = snapshot, view, limit, after
        self.fields, self.visible, self.batch = fields, visible, batch
        self.kinds: list[NodeKind] = [view.kind] if view is not None else list(_ID_ORDER)
        if limit is not None and not 1 <= limit <= MAX_PAGE:
            raise BadListing("limit", f"must be 1 to {MAX_PAGE}")
        if fields is not None:
            unknown = [name for name in fields if name not in NODE_FIELDS]
            if unknown or not fields:
                raise BadListing("fields", f"unknown field {unknown[0]!r}" if unknown else "name at least one")
        if after is not None and _kind(after) not in self.kinds:
            raise BadListing("cursor", f"{after[:80]!r} is not a node id of this view")
        self.count = 0
        """Nodes listed so far."""
        self.next_after: str | None = None
        """Once the pieces are all read, for a page: the id the next page
        starts after; None when this was the last page."""

    @property
    def paged(self) -> bool:
        return self.limit is not None

    def unordered(self) -> list[NodeKind]:
        """Kinds whose ``IdOrder`` this page needs and the snapshot does not
        keep yet (to build them elsewhere first: ``id_order``)."""
        if not self.paged:
            return []
        return [kind for kind in self.kinds if self.snapshot.kept(_order_key(kind)) is None]

    def chunks(self) -> Iterator[bytes]:
        """The object in pieces of at most ``batch`` nodes or edges."""
        if not self.paged and self.fields is None:
            yield from self.snapshot.payload_chunks(self.view, self.batch, visible=self.visible)
            return
        yield b'{"nodes":{'
        if self.paged:
            segments: list[tuple[NodeKind, str | None, str | None]] = []
            yield from self._encoded(self._page(segments))
            yield b'},"edges":{'
            yield from self._edge_entries(self._page_edges(segments))
        else:
            nodes, edges = self.snapshot.nodes(self.view), self.snapshot.edges(self.view)
            if self.visible is not None:
                nodes, edges = visible_part(nodes, edges, self.visible)
            yield from self._encoded(self._counted(nodes))
            yield b'},"edges":{'
            yield from self._edge_entries(edges)
        tail = {"timestamp": rfc3339_seconds(self.snapshot.timestamp), "version": self.snapshot.version,
                "view": self.view.value if self.view is not None else "all"}
        yield b"}," + orjson.dumps(tail)[1:]

    def _counted(self, nodes: Iterable[Node]) -> Iterator[Node]:
        for node in nodes:
            self.count += 1
            yield node

    def _encoded(self, nodes: Iterator[Node]) -> Iterator[bytes]:
        """``"<id>":{...}`` of each node, comma-separated, in pieces."""
        if self.fields is None:
            yield from batched_node_entries(nodes, self.batch)
            return
        fields, first = self.fields, True
        while part := list(islice(nodes, self.batch)):
            yield (b"" if first else b",") + orjson.dumps({node.id: node.fields(fields) for node in part})[1:-1]
            first = False

    def _edge_entries(self, edges: Iterator[Edge]) -> Iterator[bytes]:
        first = True
        while part := list(islice(edges, self.batch)):
            yield (b"" if first else b",") + edge_entries(part)
            first = False

    def _page(self, segments: list[tuple[NodeKind, str | None, str | None]]) -> Iterator[Node]:
        """The page's nodes; ``segments`` gets, per kind it covers, the range
        of ids (after, up to and including; None: open) its edges come from."""
        assert self.limit is not None
        after, visible = self.after, self.visible
        kinds = self.kinds[self.kinds.index(kind_of(after)):] if after is not None else self.kinds
        for position, kind in enumerate(kinds):
            order, nodes = id_order(self.snapshot, kind), self.snapshot.nodes_of(kind)
            low = after if after is not None and position == 0 else None
            start = bisect_right(order.ids, low) if low is not None else 0
            last = None
            for index in range(start, len(order.ids)):
                node = nodes[order.ids[index]]
                if visible is not None and not visible(node):
                    continue
                self.count += 1
                last = node.id
                yield node
                if self.count == self.limit:
                    segments.append((kind, low, last))
                    more = index + 1 < len(order.ids) or any(
                        self.snapshot.nodes_of(k) for k in kinds[position + 1:])
                    self.next_after = last if more else None
                    return
            segments.append((kind, low, None))

    def _page_edges(self, segments: list[tuple[NodeKind, str | None, str | None]]) -> Iterator[Edge]:
        visible = self.visible
        for kind, low, high in segments:
            order, nodes = id_order(self.snapshot, kind), self.snapshot.nodes_of(kind)
            start = bisect_right(order.sources, low) if low is not None else 0
            stop = bisect_right(order.sources, high) if high is not None else len(order.sources)
            for edge in order.edges[start:stop]:
                if visible is None or (_accepts(visible, nodes.get(edge.source))
                                       and _accepts(visible, nodes.get(edge.target))):
                    yield edge


def _kind(node_id: str) -> NodeKind | None:
    try:
        return kind_of(node_id)
    except ValueError:
        return None


def _accepts(visible: Callable[[Node], bool], node: Node | None) -> bool:
    return node is not None and visible(node)
