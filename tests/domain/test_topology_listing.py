"""Listings of big views: pages in id order, some node fields only, per reader."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.synthetic import host_report
from trioscope.domain.topology import (
    NODE_FIELDS,
    SUMMARY_FIELDS,
    BadListing,
    Listing,
    Node,
    NodeKind,
    TopologyGraph,
    TopologySnapshot,
    View,
    id_order,
    id_order_steps,
    visible_counts_steps,
)
from trioscope.domain.steps import at_once
from trioscope.domain.topology import _listing
from trioscope.wire import decode_report

T0 = 1_760_000_000.0
HOSTS = 12


def graph_of(hosts: range, now: float = T0) -> TopologyGraph:
    graph = TopologyGraph()
    for index in hosts:
        peers = [h for h in (index + 1, index + 2) if h in hosts]
        graph.apply(decode_report(host_report(index, timestamp=now, containers=3, processes=25, connections=30,
                                              peers=peers)), now)
    return graph


@pytest.fixture(scope="module")
def snapshot() -> TopologySnapshot:
    snapshot, _ = graph_of(range(1, HOSTS + 1)).publish(T0)
    return snapshot


def document(listing: Listing) -> dict[str, Any]:
    return orjson.loads(b"".join(listing.chunks()))  # type: ignore[no-any-return]


def walk(snapshot: TopologySnapshot, view: View | None, limit: int, **options: Any) -> list[dict[str, Any]]:
    pages, after = [], None
    while True:
        listing = Listing(snapshot, view, limit=limit, after=after, **options)
        pages.append(document(listing))
        assert listing.count == len(pages[-1]["nodes"]) <= limit
        after = listing.next_after
        if after is None:
            return pages
        assert listing.count == limit  # only the last page may be short


@pytest.mark.parametrize("view", [View.PROCESSES, View.HOSTS, None], ids=["processes", "hosts", "all"])
@pytest.mark.parametrize("limit", [1, 7, 100, 50_000])
def test_a_walk_lists_every_node_and_edge_exactly_once_in_id_order(snapshot, view, limit):
    whole = orjson.loads(snapshot.json(view))["topology"]
    if limit == 1 and view is None:
        limit = 13  # one node per page would make ~500 pages: enough with 7 for processes
    pages = walk(snapshot, view, limit)
    node_ids = [node_id for page in pages for node_id in page["nodes"]]
    edge_ids = [edge_id for page in pages for edge_id in page["edges"]]
    assert len(node_ids) == len(set(node_ids)) and set(node_ids) == set(whole["nodes"])
    assert node_ids == sorted(node_ids)
    assert len(edge_ids) == len(set(edge_ids)) and set(edge_ids) == set(whole["edges"])
    assert len(whole["edges"]) > (0 if view is View.HOSTS else 100)  # the fixture has edges to page
    for page in pages:
        assert page["version"] == whole["version"] and page["view"] == whole["view"]
        assert all(page["nodes"][n] == whole["nodes"][n] for n in page["nodes"])
        assert all(page["edges"][e] == whole["edges"][e] for e in page["edges"])
        # an edge is on the page of its source
        assert all(edge["source"] in page["nodes"] for edge in page["edges"].values())


def test_a_walk_across_versions_lists_the_nodes_present_all_along_exactly_once():
    graph = graph_of(range(1, HOSTS + 1))
    first, _ = graph.publish(T0)
    listing = Listing(first, View.PROCESSES, limit=120)
    seen = list(document(listing)["nodes"])
    # Hosts come and go between two pages: ids before and after the cursor shift.
    assert graph.remove_agent("agent-1") > 0
    graph.apply(decode_report(host_report(0, timestamp=T0 + 1, containers=3, processes=25)), T0 + 1)
    graph.apply(decode_report(host_report(99, timestamp=T0 + 1, containers=3, processes=25)), T0 + 1)
    second, _ = graph.publish(T0 + 1)
    assert second.version > first.version
    after = listing.next_after
    while after is not None:
        listing = Listing(second, View.PROCESSES, limit=120, after=after)
        seen += list(document(listing)["nodes"])
        after = listing.next_after
    both = set(first.nodes_of(NodeKind.PROCESS)) & set(second.nodes_of(NodeKind.PROCESS))
    assert len(seen) == len(set(seen))
    assert both <= set(seen)


def test_fields_show_only_those_keys_of_each_node(snapshot):
    listed = document(Listing(snapshot, View.PROCESSES, fields=("label", "parent", "metrics")))
    whole = orjson.loads(snapshot.json(View.PROCESSES))["topology"]
    assert set(listed["nodes"]) == set(whole["nodes"])
    assert all(node == {k: whole["nodes"][i][k] for k in ("label", "parent", "metrics")}
               for i, node in listed["nodes"].items())
    assert listed["edges"] == whole["edges"]
    assert {k: listed[k] for k in ("timestamp", "version", "view")} == \
        {k: whole[k] for k in ("timestamp", "version", "view")}


def test_summary_fields_in_a_page(snapshot):
    page = document(Listing(snapshot, None, limit=40, fields=SUMMARY_FIELDS))
    assert len(page["nodes"]) == 40
    assert all(list(node) == list(SUMMARY_FIELDS) for node in page["nodes"].values())


def test_node_fields_are_the_listing_keys():
    node = next(iter(graph_of(range(1, 3)).publish(T0)[0].nodes(View.CONTAINERS)))
    assert list(node.as_dict()) == list(NODE_FIELDS)
    assert node.fields(NODE_FIELDS) == node.as_dict()
    assert node.fields(["metrics", "id"]) == {"metrics": node.metrics, "id": node.id}


def test_a_reader_pages_through_its_own_nodes_only(snapshot):
    def visible(node: Node) -> bool:
        return node.agent_id in ("agent-2", "agent-3")

    pages = walk(snapshot, View.PROCESSES, 10, visible=visible)
    nodes = {n for page in pages for n in page["nodes"]}
    assert nodes == {n.id for n in snapshot.nodes(View.PROCESSES) if visible(n)}
    edges = [edge for page in pages for edge in page["edges"].values()]
    assert edges and all(e["source"] in nodes and e["target"] in nodes for e in edges)
    assert len(edges) == sum(1 for e in snapshot.edges(View.PROCESSES) if e.source in nodes and e.target in nodes)


def test_pieces_hold_at_most_a_batch_of_nodes(snapshot):
    listing = Listing(snapshot, View.PROCESSES, limit=100, batch=8, fields=("label",))
    pieces = list(listing.chunks())
    node_pieces = pieces[1:pieces.index(b'},"edges":{')]
    assert len(node_pieces) == 13 and all(piece.count(b'"label"') <= 8 for piece in node_pieces)


def test_the_order_is_built_once_per_version():
    snapshot, _ = graph_of(range(1, 4)).publish(T0)
    listing = Listing(snapshot, View.PODS, limit=5)
    assert listing.unordered() == [NodeKind.POD]
    order = id_order(snapshot, NodeKind.POD)
    assert listing.unordered() == [] and id_order(snapshot, NodeKind.POD) is order
    assert Listing(snapshot, View.PODS).unordered() == []  # a whole listing needs no order


def test_the_order_is_built_in_small_steps_and_is_a_stable_sort(monkeypatch):
    snapshot, _ = graph_of(range(1, 6)).publish(T0)
    monkeypatch.setattr(_listing, "ORDER_STEP", 7)
    steps = id_order_steps(snapshot, NodeKind.PROCESS)
    yields = 0
    while True:
        try:
            next(steps)
            yields += 1
        except StopIteration as done:
            order = done.value
            break
    edges = list(snapshot.edges_of(View.PROCESSES).values())
    assert yields > (len(edges) + len(snapshot.nodes_of(NodeKind.PROCESS))) / 7  # at most 7 sorted per step
    assert list(order.ids) == sorted(snapshot.nodes_of(NodeKind.PROCESS))
    assert list(order.edges) == sorted(edges, key=lambda edge: edge.source)  # stable: ties in version order
    assert list(order.sources) == [edge.source for edge in order.edges]
    assert id_order(snapshot, NodeKind.PROCESS) is order


@pytest.mark.parametrize(("options", "message"), [
    ({"limit": 0}, "limit"),
    ({"limit": 50_001}, "limit"),
    ({"fields": ("label", "colour")}, "fields: unknown field 'colour'"),
    ({"fields": ()}, "fields"),
    ({"limit": 5, "after": "host:host-1"}, "cursor"),
    ({"limit": 5, "after": "rack:1"}, "cursor: 'rack:1'"),
])
def test_bad_options_are_refused_naming_them(snapshot, options, message):
    with pytest.raises(BadListing, match=message) as refused:
        Listing(snapshot, View.PROCESSES, **options)
    assert refused.value.parameter == message.partition(":")[0]


def test_visible_counts_count_what_the_reader_sees_in_steps(snapshot: TopologySnapshot) -> None:
    everyone = snapshot.counts()
    steps = visible_counts_steps(snapshot, lambda node_id, agent_id: True, step=50)
    pauses = 0
    while True:
        try:
            next(steps)
            pauses += 1
        except StopIteration as done:
            counts = done.value
            break
    assert pauses >= everyone["nodes"] // 50 > 0
    assert counts == {key: everyone[key] for key in ("nodes", "edges", "nodes_by_type", "edges_by_view")}

    one = sorted({node.agent_id for node in snapshot.nodes_of(NodeKind.HOST).values()})[0]
    own = at_once(visible_counts_steps(snapshot, lambda node_id, agent_id: agent_id == one))
    assert own["nodes_by_type"]["host"] == 1
    assert 0 < own["nodes"] < everyone["nodes"]
    # An edge counts only when both its ends are seen: none to the other hosts' nodes.
    for view in View:
        ends = [(s, t) for s, t in snapshot.edges_of(view)
                if all(getattr(snapshot.node(n), "agent_id", None) == one for n in (s, t))]
        assert own["edges_by_view"][view.value] == len(ends)
