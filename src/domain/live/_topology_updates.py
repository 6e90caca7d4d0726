"""The ``topology_update`` frames: a client's reset (its whole view) and the
diffs that follow it, through its filter and what it may see."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice
from typing import Any

import orjson

from trioscope.domain.topology import (
    WHOLE_KINDS,
    Edge,
    Node,
    NodeKind,
    TopologyDiff,
    TopologySnapshot,
    View,
    edge_kind,
)
from trioscope.wire import rfc3339_seconds

from ._edge_index import EdgeIndex
from ._filter import Filter, SearchTexts
from ._frames import Frame, message, shared
from ._visibility import Visibility


def reset_frame(snapshot: TopologySnapshot, view: View | None, flt: Filter | None = None,
                visibility: Visibility | None = None) -> Frame:
    """The whole view (``payload.reset: true``), what a client starts from."""
    return shared(b"".join(reset_chunks(snapshot, view, flt, visibility=visibility)))


RESET_BATCH = 1024
"""Nodes or edges looked at per piece of a reset: a few milliseconds of work."""


def reset_chunks(snapshot: TopologySnapshot, view: View | None, flt: Filter | None = None,
                 batch: int = RESET_BATCH, *, visibility: Visibility | None = None) -> Iterator[bytes]:
    """``reset_frame`` in pieces that join into it, each the work of looking at
    ``batch`` nodes or edges (a piece may be empty: a filter that matches little
    still has every node to look at). A reset of a large view is the costliest
    thing a client can ask for: whoever builds it can stop between two pieces,
    when the client has gone, instead of finishing a frame nobody will read."""
    yield b'{"type":"topology_update","payload":'
    if (flt is None or flt.empty) and visibility is None:
        yield from snapshot.payload_chunks(view, batch, extra={"reset": True})
        yield b"}"
        return
    flt = flt or Filter()
    matched: set[str] = set()
    if visibility is not None:
        visibility.shown = matched  # what the client holds once this reset is read
    yield b'{"nodes":{'
    first = True
    nodes = snapshot.nodes(view)
    while batch_nodes := list(islice(nodes, batch)):
        entries = []
        for node in batch_nodes:
            if flt.matches(node) and (visibility is None or visibility.node(node)):
                matched.add(node.id)
                entries.append(node.entry())
        yield (b"" if first or not entries else b",") + b",".join(entries)
        first = first and not entries
    yield b'},"edges":{'
    first = True
    edges = snapshot.edges(view)
    while batch_edges := list(islice(edges, batch)):
        kept = [e for e in batch_edges if e.source in matched and e.target in matched]
        yield (b"" if first or not kept else b",") + orjson.dumps({e.id: e.json() for e in kept})[1:-1]
        first = first and not kept
    tail = {"timestamp": rfc3339_seconds(snapshot.timestamp), "version": snapshot.version,
            "view": view.value if view is not None else "all", "reset": True}  # as payload_chunks' (a GET's)
    yield b"}," + orjson.dumps(tail)[1:] + b"}"


def _kinds(view: View | None) -> set[NodeKind]:
    return {view.kind} if view is not None else set(WHOLE_KINDS)


def diff_frame(diff: TopologyDiff, view: View | None, flt: Filter | None = None,
               visibility: Visibility | None = None, *, snapshot: TopologySnapshot | None = None) -> Frame:
    """The diff as one client of ``view`` (with ``flt``) sees it. Sent even when
    it holds nothing for that view, so that every client's versions stay
    consecutive and a gap always means a lost update.

    A client with a filter, or one that may not see everything, holds part of
    the view, and its diff must take it from what it holds to what a reset at
    ``diff.version`` would give it. ``visibility`` says what it holds (and is
    brought up to date; ``Visibility()`` for a filter alone), and ``snapshot``,
    the version the diff leads to, has the edges the diff does not carry that
    join a node it starts or stops holding to one it holds. Without
    ``visibility`` the filter sees only the diff: a node that starts matching
    comes as an update, and the edges are those of the view, whatever the
    client holds."""
    if visibility is not None:
        return _held_diff_frame(diff, view, flt or Filter(), visibility, snapshot)
    kinds = _kinds(view)

    def node_ok(node: Node) -> bool:
        return node.kind in kinds and (flt is None or flt.matches(node))

    def id_ok(node_id: str) -> bool:
        return NodeKind(node_id.partition(":")[0]) in kinds

    def edge_ok(edge_id: str) -> bool:
        return edge_kind(edge_id) in kinds

    add_nodes = {i: n.json() for i, n in diff.nodes_added.items() if node_ok(n)}
    update_nodes = {i: n.json() for i, n in diff.nodes_updated.items() if node_ok(n)}
    remove_nodes = [i for i in diff.nodes_removed if id_ok(i)]
    if flt is not None and not flt.empty:
        # A node that stops matching leaves the client's view.
        remove_nodes += [i for i, n in diff.nodes_updated.items() if id_ok(i) and not flt.matches(n)]
    add_edges = {i: e.json() for i, e in diff.edges_added.items() if edge_ok(i)}
    update_edges = {i: e.json() for i, e in diff.edges_updated.items() if edge_ok(i)}
    remove_edges = [i for i in diff.edges_removed if edge_ok(i)]
    return _diff_message(diff, view, (add_nodes, add_edges), (update_nodes, update_edges), (remove_nodes, remove_edges))


def _held_diff_frame(diff: TopologyDiff, view: View | None, flt: Filter, held: Visibility,
                     snapshot: TopologySnapshot | None) -> Frame:
    kinds = _kinds(view)
    shown = held.shown
    texts = SearchTexts.of_version(snapshot) if snapshot is not None and flt.search else None
    add_nodes: dict[str, Any] = {}  # also the nodes the client starts holding with this diff
    update_nodes: dict[str, Any] = {}
    remove_nodes: list[str] = []
    for node in (*diff.nodes_added.values(), *diff.nodes_updated.values()):
        if node.kind not in kinds:
            continue
        if flt.matches(node, texts) and held.node(node):
            if node.id in shown:
                update_nodes[node.id] = node.json()
            else:
                add_nodes[node.id] = node.json()
                shown.add(node.id)
        elif node.id in shown:  # it stopped matching, or being the client's to see
            shown.discard(node.id)
            remove_nodes.append(node.id)
    for node_id in diff.nodes_removed:
        if node_id in shown:
            shown.discard(node_id)
            remove_nodes.append(node_id)
    left = set(remove_nodes)

    # An edge is the client's while it holds both ends: it has one before this
    # diff if the edge existed and it held both ends then, and one after if the
    # edge exists and it holds both ends now. Where the two differ the edge is
    # added or removed, whether or not the edge itself changed.
    def held_before(node_id: str) -> bool:
        return node_id in left or (node_id in shown and node_id not in add_nodes)

    add_edges: dict[str, Any] = {}
    update_edges: dict[str, Any] = {}
    remove_edges: list[str] = []

    def place(edge_id: str, edge: Edge) -> None:  # an edge there before and after this diff
        if edge.source in shown and edge.target in shown:
            if held_before(edge.source) and held_before(edge.target):
                update_edges[edge_id] = edge.json()
            else:
                add_edges[edge_id] = edge.json()
        elif held_before(edge.source) and held_before(edge.target):
            remove_edges.append(edge_id)

    for edge_id, edge in diff.edges_added.items():
        if edge.source in shown and edge.target in shown:
            add_edges[edge_id] = edge.json()
    for edge_id, edge in diff.edges_updated.items():
        place(edge_id, edge)
    for edge_id in diff.edges_removed:
        source, _, target = edge_id.partition("->")
        if held_before(source) and held_before(target):
            remove_edges.append(edge_id)
    if snapshot is not None and (add_nodes or left):
        # The edges that did not change are not in the diff; those of a node
        # the client starts or stops holding are in the snapshot.
        for edge in EdgeIndex.of_version(snapshot).edges(snapshot, add_nodes.keys() | left):
            edge_id = edge.id
            if edge_id not in diff.edges_added and edge_id not in diff.edges_updated:
                place(edge_id, edge)
    return _diff_message(diff, view, (add_nodes, add_edges), (update_nodes, update_edges), (remove_nodes, remove_edges))


def _diff_message(diff: TopologyDiff, view: View | None, add: tuple[Any, Any], update: tuple[Any, Any],
                  remove: tuple[Any, Any]) -> Frame:
    """The ``topology_update`` of ``diff``; ``add``, ``update`` and ``remove`` are (nodes, edges)."""
    return message("topology_update", {
        "version": diff.version,
        "previous_version": diff.previous_version,
        "view": view.value if view is not None else "all",
        "add": {"nodes": add[0], "edges": add[1]},
        "update": {"nodes": update[0], "edges": update[1]},
        "remove": {"nodes": remove[0], "edges": remove[1]},
    })
