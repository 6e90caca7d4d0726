"""The edges of one version by node (``EdgeIndex``): what a filtered client's
diff looks up for the nodes that start or stop matching."""

from __future__ import annotations

from collections.abc import Iterator

from trioscope.domain.topology import Edge, TopologyDiff, TopologySnapshot, View, edge_kind, kind_of


_VIEW_OF_KIND = {view.kind: view for view in View}
"""The view of each kind's nodes: the one the edges between them are in."""


SCANS_BEFORE_INDEX = 8
"""Lookups of one view's edges by node at a version with no index to follow
(``EdgeIndex``) that scan the view before one is built for the rest."""

EdgeKey = tuple[str, str]
_ByNode = dict[str, dict[str, tuple[EdgeKey, ...]]]
"""A view's edges by node: shard (``_shard``) -> node id -> the (source,
target) of its edges."""


class EdgeIndex:
    """The edges of one version by node, per view: what a client with a
    filter looks up for the nodes that start or stop matching (their edges
    that did not change are in no diff). Made once per version and view, on
    first use, and shared by every client of that version (``of_version``).

    Where the hub has the index of the version before (``follow``), it is
    made from that one and the diff between them: the shards the diff's
    added and removed edges touch are copied, the others shared, so a
    version costs what changed, not what the view holds (a scan of the
    processes view's 39,000 edges at 200 hosts took ~15 ms, and the first
    lookups of each version scanned it once per client). Without one, the
    first ``SCANS_BEFORE_INDEX`` lookups scan, and then the index is built
    from the version's edges, once.

    Shards as ``TopologySnapshot``'s: a process's edges are kept under its
    host (``process:<hostname>``), so a host's report copies that host's part.
    """

    __slots__ = ("_base", "_diff", "_views", "_scans")

    def __init__(self, base: EdgeIndex | None = None, diff: TopologyDiff | None = None) -> None:
        self._base = base
        """The previous version's (None: nothing to follow)."""
        self._diff = diff
        """From the previous version to this one."""
        self._views: dict[View, _ByNode] = {}
        self._scans: dict[View, int] = {}

    @staticmethod
    def of_version(snapshot: TopologySnapshot) -> EdgeIndex:
        """The index of ``snapshot``'s version (made, without one to follow, if it has none)."""
        return snapshot.derived(_EDGE_INDEX, EdgeIndex)

    @staticmethod
    def follow(previous: TopologySnapshot, diff: TopologyDiff, snapshot: TopologySnapshot) -> EdgeIndex:
        """The index of ``snapshot``, made when first used from the one of
        ``previous`` (``diff`` leads from it to ``snapshot``). Each index holds
        the one before it until the next is made: at most two are followed back."""
        index = snapshot.kept(_EDGE_INDEX)
        if index is None and diff.previous_version == previous.version and diff.version == snapshot.version:
            base = EdgeIndex.of_version(previous)
            if base._base is not None:
                base._base._base = base._base._diff = None
            index = snapshot.keep(_EDGE_INDEX, EdgeIndex(base, diff))
        return index if index is not None else EdgeIndex.of_version(snapshot)

    def edges(self, snapshot: TopologySnapshot, node_ids: set[str]) -> Iterator[Edge]:
        """The edges in ``snapshot`` (this index's version) with an end in ``node_ids``, each once."""
        by_view: dict[View, set[str]] = {}
        for node_id in node_ids:
            by_view.setdefault(_VIEW_OF_KIND[kind_of(node_id)], set()).add(node_id)
        for view, ids in by_view.items():
            index = self._followed(view)
            if index is None:
                if self._base is None:
                    scans = self._scans[view] = self._scans.get(view, 0) + 1
                    if scans <= SCANS_BEFORE_INDEX:
                        # An edge joins two nodes of its view's kind: each is found once.
                        yield from (e for e in snapshot.edges(view) if e.source in ids or e.target in ids)
                        continue
                index = self._views[view] = _indexed(snapshot, view)
            edges = snapshot.edges_of(view)
            seen: set[EdgeKey] = set()
            for node_id in ids:
                for key in index.get(_shard(node_id), {}).get(node_id, ()):
                    if key not in seen:
                        seen.add(key)
                        edge = edges.get(key)
                        if edge is not None:
                            yield edge

    def _followed(self, view: View) -> _ByNode | None:
        """The index of ``view``, if made, or made from the previous version's."""
        index = self._views.get(view)
        if index is None and self._base is not None and self._diff is not None:
            before = self._base._followed(view)
            if before is not None:
                index = self._views[view] = _carried(before, self._diff, view)
        return index


_EDGE_INDEX = ("live edge index",)


def _shard(node_id: str) -> str:
    return node_id.rpartition(":")[0]


def _indexed(snapshot: TopologySnapshot, view: View) -> _ByNode:
    """The edges of ``view`` in ``snapshot`` by node."""
    lists: dict[str, dict[str, list[EdgeKey]]] = {}
    for key in snapshot.edges_of(view):
        source, target = key
        lists.setdefault(_shard(source), {}).setdefault(source, []).append(key)
        if target != source:
            lists.setdefault(_shard(target), {}).setdefault(target, []).append(key)
    return {shard: {node: tuple(keys) for node, keys in nodes.items()} for shard, nodes in lists.items()}


def _carried(before: _ByNode, diff: TopologyDiff, view: View) -> _ByNode:
    """``before`` after ``diff``'s edges of ``view`` were added and removed
    (an edge updated was there before and is after: nothing to do)."""
    kind = view.kind
    changes: dict[str, list[tuple[EdgeKey, bool]]] = {}
    for edge_id in diff.edges_removed:
        if edge_kind(edge_id) is kind:
            source, _, target = edge_id.partition("->")
            _note(changes, (source, target), False)
    for edge_id, edge in diff.edges_added.items():
        if edge_kind(edge_id) is kind:
            _note(changes, (edge.source, edge.target), True)
    if not changes:
        return before
    after = dict(before)
    copied: set[str] = set()
    for node_id, node_changes in changes.items():
        shard = _shard(node_id)
        if shard not in copied:
            copied.add(shard)
            after[shard] = dict(after.get(shard, {}))
        nodes = after[shard]
        keys = dict.fromkeys(nodes.get(node_id, ()))
        for key, present in node_changes:
            if present:
                keys[key] = None
            else:
                keys.pop(key, None)
        if keys:
            nodes[node_id] = tuple(keys)
        else:
            nodes.pop(node_id, None)
    for shard in copied:
        if not after[shard]:
            del after[shard]
    return after


def _note(changes: dict[str, list[tuple[EdgeKey, bool]]], key: EdgeKey, present: bool) -> None:
    changes.setdefault(key[0], []).append((key, present))
    if key[1] != key[0]:
        changes.setdefault(key[1], []).append((key, present))
