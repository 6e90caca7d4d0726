"""The encoded edges kept across versions for big listings (``EdgeCache``):
the bytes are those of the uncached encoding, whatever changed in between;
what a report or an expiry changed is encoded again and the rest is not;
the bound holds."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.domain.test_topology_properties import reports
from tests.synthetic import host_report
from trioscope.domain.topology import EdgeCache, NodeKind, TopologyGraph, TopologySnapshot, View, WHOLE_VIEWS, edge_kind
from trioscope.wire import Report, decode_report

T0 = 1_760_000_000.0
RUN = 7
"""Short runs, so that a small topology has many of them."""
VIEWS: list[View | None] = [None, *View]


def uncached(snapshot: TopologySnapshot) -> TopologySnapshot:
    """The same version, its edges encoded per read."""
    return TopologySnapshot(snapshot.version, snapshot.timestamp, {k: snapshot.nodes_of(k) for k in NodeKind},
                            {v: snapshot.edges_of(v) for v in View})


def listing(snapshot: TopologySnapshot, view: View | None = None) -> bytes:
    return b"".join(snapshot.chunks(view, batch=5))


def report(index: int, when: float, peers: list[int], connections: int = 30) -> Report:
    return decode_report(host_report(index, timestamp=when, containers=3, processes=25, connections=connections,
                                     peers=peers))


def graph_of(hosts: int, cache: EdgeCache, connections: int = 30) -> TopologyGraph:
    graph = TopologyGraph(T0, edge_cache=cache)
    for index in range(1, hosts + 1):
        graph.apply(report(index, T0, [h for h in range(1, hosts + 1) if h != index], connections), T0)
    return graph


def test_a_listing_is_the_uncached_encoding_and_a_second_one_encodes_nothing() -> None:
    cache = EdgeCache(run=RUN)
    snapshot, _ = graph_of(6, cache).publish(T0)
    assert len(snapshot.edges_of(View.PROCESSES)) > 5 * RUN
    for view in VIEWS:
        assert listing(snapshot, view) == listing(uncached(snapshot), view)
    assert cache.stats().misses > 5
    misses = cache.stats().misses
    for view in VIEWS:
        assert listing(snapshot, view) == listing(uncached(snapshot), view)
    assert cache.stats().misses == misses
    document = orjson.loads(listing(snapshot))["topology"]
    assert set(document["edges"]) == {e.id for e in snapshot.edges()}


def test_a_report_changing_one_hosts_connections_is_encoded_again_and_only_its_runs() -> None:
    cache = EdgeCache(run=RUN)
    graph = graph_of(6, cache)
    before, _ = graph.publish(T0)
    listing(before, View.PROCESSES)
    first = cache.stats()
    # Host 1 now connects to host 2 only: its edges to the others go.
    graph.apply(report(1, T0 + 10, [2]), T0 + 10)
    after, diff = graph.publish(T0 + 10)
    assert diff is not None and diff.edges_removed
    assert listing(after, View.PROCESSES) == listing(uncached(after), View.PROCESSES)
    again = cache.stats()
    # A changed edge is in one run, which it may split in two, or join to the
    # next one (when it ended a run and no longer does): at most 2 runs each.
    changed = [e for e in (*diff.edges_added, *diff.edges_updated, *diff.edges_removed)
               if edge_kind(e) is NodeKind.PROCESS]
    assert 0 < again.misses - first.misses <= 2 * len(changed)
    assert again.hits > 0
    # What is kept is what a fresh cache keeps for the new version alone: the
    # runs of the removed edges went with the listing.
    fresh = EdgeCache(run=RUN)
    list(fresh.entries(View.PROCESSES, after.version, after.edges_of(View.PROCESSES)))
    assert (again.runs, again.bytes) == (fresh.stats().runs, fresh.stats().bytes)


def test_a_report_that_changes_no_connection_encodes_no_edge() -> None:
    cache = EdgeCache(run=RUN)
    graph = graph_of(4, cache)
    before, _ = graph.publish(T0)
    listing(before)
    misses = cache.stats().misses
    graph.apply(decode_report(host_report(2, timestamp=T0 + 10, containers=3, processes=25, connections=30,
                                          peers=[1, 3, 4], cpu=80.0)), T0 + 10)
    after, diff = graph.publish(T0 + 10)
    assert diff is not None and diff.nodes_updated and after.version > before.version
    assert listing(after) == listing(uncached(after))
    assert cache.stats().misses == misses


def test_an_expired_agents_edges_leave_the_listing_and_the_cache() -> None:
    cache = EdgeCache(run=RUN)
    graph = graph_of(4, cache)
    before, _ = graph.publish(T0)
    listing(before)
    graph.apply(report(2, T0 + 100, [1, 3, 4]), T0 + 100)
    graph.apply(report(3, T0 + 100, [1, 2, 4]), T0 + 100)
    graph.apply(report(4, T0 + 100, [1, 2, 3]), T0 + 100)
    assert graph.expire(T0 + 100, 60).agents == ("agent-1",)
    after, _ = graph.publish(T0 + 100)
    document = listing(after)
    assert document == listing(uncached(after))
    assert b"host-1" not in document
    fresh = EdgeCache(run=RUN)
    for view in WHOLE_VIEWS:  # what the full listing holds
        list(fresh.entries(view, after.version, after.edges_of(view)))
    assert (cache.stats().runs, cache.stats().bytes) == (fresh.stats().runs, fresh.stats().bytes)


def test_the_bound_holds_and_a_view_larger_than_it_keeps_its_first_runs() -> None:
    whole = EdgeCache(run=RUN)
    snapshot, _ = graph_of(4, whole).publish(T0)
    listing(snapshot, View.PROCESSES)
    limit = whole.stats().bytes // 2
    cache = EdgeCache(limit, run=RUN)
    bounded = TopologySnapshot(snapshot.version, snapshot.timestamp, {k: snapshot.nodes_of(k) for k in NodeKind},
                               {v: snapshot.edges_of(v) for v in View}, edge_cache=cache)
    for _ in range(3):
        assert listing(bounded, View.PROCESSES) == listing(snapshot, View.PROCESSES)
        assert 0 < cache.stats().bytes <= limit
    # Not every run is encoded again on every listing (a cache that let each
    # new run push out the oldest would keep only runs the next listing has
    # no use for any more).
    assert cache.stats().hits > 0
    assert cache.stats().misses < 3 * whole.stats().misses


def test_no_run_larger_than_the_bound_is_kept() -> None:
    cache = EdgeCache(limit=100, run=RUN)
    snapshot, _ = graph_of(4, cache).publish(T0)
    assert listing(snapshot) == listing(uncached(snapshot))
    assert cache.stats().bytes == cache.stats().runs == 0


@settings(max_examples=150, deadline=None)
@given(st.lists(reports(count=(1, 4)), min_size=1, max_size=5), st.lists(st.booleans(), min_size=5, max_size=5),
       st.sampled_from([2, 3, 5]))
def test_listings_of_every_version_are_the_uncached_encoding(batches: list[list[Report]], expiries: list[bool],
                                                             run: int) -> None:
    """Random topologies changing version by version (reports, expiries), the
    cache carried along: each version's listings are byte for byte those
    encoded without it, and it keeps what a fresh cache would for that version
    alone (nothing of the versions before)."""
    cache = EdgeCache(run=run)
    graph = TopologyGraph(edge_cache=cache)
    for step, (batch, expire) in enumerate(zip(batches, expiries)):
        now = T0 + 20_000 + step * 100
        for sequence_report in batch:
            graph.apply(sequence_report, now)
        if expire and step:
            graph.expire(now, 50)
        snapshot, _ = graph.publish(now)
        for view in VIEWS:
            assert listing(snapshot, view) == listing(uncached(snapshot), view)
            document: dict[str, Any] = orjson.loads(listing(snapshot, view))["topology"]
            assert document["edges"] == {e.id: e.as_dict() for e in snapshot.edges(view)}
            assert document["nodes"] == {n.id: n.as_dict() for n in snapshot.nodes(view)}
        fresh = EdgeCache(run=run)
        for view in View:
            list(fresh.entries(view, snapshot.version, snapshot.edges_of(view)))
        assert (cache.stats().runs, cache.stats().bytes) == (fresh.stats().runs, fresh.stats().bytes)
