"""What a filtered client's diff costs per version: the edges of the nodes
that start or stop matching come from one index per version, made from the
last version's by what changed (``EdgeIndex.follow``, as the hub links its
updates) and shared by every client; a filter's search looks at each changed
node's text made once per version (``SearchTexts``). The diffs stay exactly
right: a client that applies them holds what a fresh reset gives."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import trioscope.domain.live._edge_index
from tests.domain.test_live_held import HOST_FILTERS, Client, _versions, host_reports, payload
from trioscope.domain.live import EdgeIndex, Filter, SearchTexts, Visibility, diff_frame, reset_frame
from trioscope.domain.topology import TopologyDiff, TopologySnapshot, View
from trioscope.wire import Report


def _linked(versions: list[tuple[TopologySnapshot, TopologyDiff | None]]) -> list[tuple[TopologySnapshot, TopologyDiff]]:
    """The versions after the first, each index following the last one's (what the hub does)."""
    linked = []
    for (before, _), (after, diff) in pairwise(versions):
        assert diff is not None
        EdgeIndex.follow(before, diff, after)
        linked.append((after, diff))
    return linked


def _scan(snapshot: TopologySnapshot, node_ids: set[str]) -> set[Any]:
    return {e for v in View for e in snapshot.edges(v) if e.source in node_ids or e.target in node_ids}


@settings(max_examples=200, deadline=None)
@given(sequence=host_reports(), publish_after=st.lists(st.booleans(), min_size=10, max_size=10))
def test_the_followed_index_gives_the_edges_a_scan_finds_at_every_version(
        sequence: list[Report], publish_after: list[bool]) -> None:
    versions = _versions(sequence, publish_after)
    for snapshot, _ in _linked(versions):
        ids = {node.id for node in snapshot.nodes(None)}
        index = EdgeIndex.of_version(snapshot)
        for node_id in ids:
            assert set(index.edges(snapshot, {node_id})) == _scan(snapshot, {node_id})
        assert sorted(index.edges(snapshot, ids), key=lambda e: e.id) == sorted(_scan(snapshot, ids), key=lambda e: e.id)


@settings(max_examples=200, deadline=None)
@given(sequence=host_reports(), publish_after=st.lists(st.booleans(), min_size=10, max_size=10),
       view=st.sampled_from([None, View.HOSTS, View.CONTAINERS, View.PROCESSES]), flt=st.sampled_from(HOST_FILTERS))
def test_a_filtered_client_applying_its_diffs_holds_a_fresh_filtered_reset_after_every_version(
        sequence: list[Report], publish_after: list[bool], view: View | None, flt: Filter) -> None:
    versions = _versions(sequence, publish_after)
    held = Visibility()
    client = Client(payload(reset_frame(versions[0][0], view, flt, held)))
    for snapshot, diff in _linked(versions):
        client.apply(payload(diff_frame(diff, view, flt, held, snapshot=snapshot)))
        fresh = Client(payload(reset_frame(snapshot, view, flt, Visibility())))
        assert (client.version, client.held) == (fresh.version, fresh.held)


def test_many_clients_over_many_versions_scan_the_edges_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """50 clients whose hosts cross their filter every version: the view's
    edges are read into an index once (the first version), never scanned by
    a client, and every later version's index is made from the last one's."""
    from tests.domain.test_topology_properties import T0
    from tests.synthetic import host_report
    from trioscope.domain.topology import TopologyGraph
    from trioscope.wire import decode_report

    indexed = [0]
    build = trioscope.domain.live._edge_index._indexed

    def counting(*args: Any) -> Any:
        indexed[0] += 1
        return build(*args)

    monkeypatch.setattr(trioscope.domain.live._edge_index, "_indexed", counting)
    scanned = [0]
    edges = TopologySnapshot.edges

    def counting_edges(self: TopologySnapshot, view: View | None = None) -> Any:
        scanned[0] += 1
        return edges(self, view)

    graph = TopologyGraph()
    for index in range(1, 5):
        graph.apply(decode_report(host_report(index, timestamp=T0, peers=[p for p in range(1, 5) if p != index],
                                              cpu=10.0)), T0)
    snapshot, _ = graph.publish(T0)
    filters = [Filter(min_metrics={"cpu_usage": 50}) for _ in range(50)]
    clients = [(flt, Visibility()) for flt in filters]
    states = [Client(payload(reset_frame(snapshot, View.HOSTS, flt, held))) for flt, held in clients]
    monkeypatch.setattr(TopologySnapshot, "edges", counting_edges)
    for version in range(1, 22):  # ends with every host matching
        before = snapshot
        for index in range(1, 5):  # every host crosses the threshold, up or down
            graph.apply(decode_report(host_report(index, timestamp=T0 + version, cpu=90.0 if version % 2 else 10.0,
                                                  peers=[p for p in range(1, 5) if p != index])), T0 + version)
        snapshot, diff = graph.publish(T0 + version)
        assert diff is not None
        EdgeIndex.follow(before, diff, snapshot)
        for (flt, held), state in zip(clients, states, strict=True):
            state.apply(payload(diff_frame(diff, View.HOSTS, flt, held, snapshot=snapshot)))
    assert indexed[0] == 1
    assert scanned[0] == 0
    fresh = Client(payload(reset_frame(snapshot, View.HOSTS, filters[0], Visibility())))
    assert all(state.held == fresh.held for state in states)
    assert fresh.held["edges"]  # the hosts are connected: there were edges to look up


@pytest.mark.parametrize("search", ["host", "HOST-1", "worker", "10.0", "x\x00y", "nothing"])
def test_a_search_over_the_versions_texts_matches_as_a_search_over_the_node(search: str) -> None:
    from tests.domain.test_topology_properties import T0
    from tests.synthetic import host_report
    from trioscope.domain.topology import TopologyGraph
    from trioscope.wire import decode_report

    graph = TopologyGraph()
    graph.apply(decode_report(host_report(1, timestamp=T0, containers=2, processes=4)), T0)
    snapshot, _ = graph.publish(T0)
    texts = SearchTexts.of_version(snapshot)
    flt = Filter(search=search)
    for node in snapshot.nodes(None):
        assert flt.matches(node, texts) == flt.matches(node)
