"""Processes and edges held by host (``_shards``): a published version reads
as the dict it was published with, whatever is written after it, and shares
with the version before it every host that was not written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.synthetic import host_report
from trioscope.domain.topology import NodeKind, TopologyGraph, View, report_shape
from trioscope.domain.topology._model import Node, process_id
from trioscope.domain.topology._shards import Sharded, edge_shard, host_shard, live_processes, shard_of
from trioscope.wire import decode_report

T0 = 1_760_000_000.0


def _node(host: str, pid: int, cpu: float) -> Node:
    return Node(id=process_id(host, pid), kind=NodeKind.PROCESS, label="p", parent=None, host=f"host:{host}",
                agent_id="a", status="running", last_seen=T0, metrics={"cpu_percent": cpu})


def _reads_as(view: Sharded, model: dict[str, Node]) -> None:
    assert dict(view) == model
    assert len(view) == len(model)
    assert sorted(view) == sorted(model)
    assert sorted(node.id for node in view.values()) == sorted(model)
    assert dict(view.items()) == model
    for node_id, node in model.items():
        assert view[node_id] is node and view.get(node_id) is node and node_id in view
    assert 7 not in view
    for absent in ("process:nowhere:1", "process:h0:999", "process", "process:"):
        assert absent not in view
        assert view.get(absent) is None
    with pytest.raises(KeyError):
        view["process:h0:999"]


operations = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(["h0", "h1", "h2:x"]), st.integers(1, 4), st.integers(0, 9)),
    st.tuples(st.just("del"), st.sampled_from(["h0", "h1", "h2:x"]), st.integers(1, 4), st.just(0)),
    st.tuples(st.just("publish"), st.just(""), st.just(0), st.just(0)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_a_published_version_reads_as_the_processes_it_was_published_with(ops: list[tuple[str, str, int, int]]) -> None:
    live, model = live_processes(), {}
    published: list[tuple[Sharded, dict[str, Node]]] = []
    for op, host, pid, cpu in ops:
        node_id = process_id(host, pid)
        if op == "set":
            node = _node(host, pid, float(cpu))
            live[node_id] = model[node_id] = node
        elif op == "del" and node_id in model:
            del live[node_id], model[node_id]
        elif op == "publish":
            published.append((live.published(), dict(model)))
        assert len(live) == len(model)
    published.append((live.published(), dict(model)))
    for view, then in published:
        _reads_as(view, then)


def test_a_shard_is_everything_before_the_last_colon() -> None:
    assert shard_of(process_id("web-1", 42)) == host_shard("web-1") == "process:web-1"
    assert shard_of(process_id("odd:name", 7)) == host_shard("odd:name")


def _report(index: int, when: float, cpu: float) -> Any:
    doc: dict[str, Any] = host_report(index, timestamp=when, peers=[], cpu=cpu, container_load=cpu)
    for process in doc["processes_info"]["processes"]:
        process["cpu_percent"] = cpu
    for container in doc["docker_info"]["containers"]:
        container["created"] = "2025-10-01T00:00:00Z"  # the generator's moves with the report's time
    return decode_report(doc)


def test_a_version_copies_only_the_hosts_reported_since_the_last() -> None:
    graph = TopologyGraph(now=T0)
    for index in (1, 2):
        report = _report(index, T0, 1.0)
        graph.apply(report, T0, shape=report_shape(report))
    first, _ = graph.publish(T0)
    again = _report(1, T0 + 1, 5.0)  # host 1's metrics only
    graph.apply(again, T0 + 1, shape=report_shape(again))
    second, diff = graph.publish(T0 + 1)
    assert diff is not None and second.version == first.version + 1

    before, after = first.nodes_of(NodeKind.PROCESS), second.nodes_of(NodeKind.PROCESS)
    assert isinstance(before, Sharded) and isinstance(after, Sharded)
    host_1, host_2 = host_shard("host-1"), host_shard("host-2")
    assert after._shards[host_2] is before._shards[host_2]  # not reported again: shared
    assert after._shards[host_1] is not before._shards[host_1]
    # The earlier version still reads as it was published; the new one has the new metrics.
    assert {n.metrics["cpu_percent"] for n in before.values() if shard_of(n.id) == host_1} == {1.0}
    assert {n.metrics["cpu_percent"] for n in after.values() if shard_of(n.id) == host_1} == {5.0}
    assert dict(after) == {k: v for k, v in graph.nodes.items() if v.kind is NodeKind.PROCESS}


def _peers_report(index: int, peers: list[int], when: float) -> Any:
    report = decode_report(host_report(index, timestamp=when, peers=peers, processes=20, connections=40))
    return report, report_shape(report)


def test_a_version_copies_only_the_edges_of_hosts_reported_since_the_last() -> None:
    """A new host's edges are written into its own shard; every other host's
    edges are the last version's, shared (a version of new hosts once copied
    every edge of the processes view: 200,000 at 1,000 hosts)."""
    graph = TopologyGraph(now=T0)
    for index in (1, 2):
        report, shape = _peers_report(index, [3 - index], T0)
        graph.apply(report, T0, shape=shape)
    first, _ = graph.publish(T0)
    report, shape = _peers_report(3, [1], T0 + 1)
    graph.apply(report, T0 + 1, shape=shape)
    second, diff = graph.publish(T0 + 1)
    assert diff is not None and diff.edges_added

    before, after = first.edges_of(View.PROCESSES), second.edges_of(View.PROCESSES)
    assert isinstance(before, Sharded) and isinstance(after, Sharded)
    assert after._shards[host_shard("host-2")] is before._shards[host_shard("host-2")]
    assert host_shard("host-3") in after._shards and host_shard("host-3") not in before._shards
    assert {edge_shard((e.source, e.target)) for e in after.values()} == set(after._shards)
    # Every edge the diff added is in the new version, none in the old one.
    added = {(e.source, e.target) for e in diff.edges_added.values() if e.source.startswith("process:")}
    assert added and all(key in after and key not in before for key in added)
    assert len(after) == len(list(after)) == len(before) + len(added)


def test_publishing_in_steps_gives_what_publish_gives() -> None:
    """The same reports merged into two graphs: one published at once, the
    other in steps of 50 (it yields between them); the versions and diffs are equal."""
    whole, stepped = TopologyGraph(now=T0), TopologyGraph(now=T0)
    for graph in (whole, stepped):
        for index in range(1, 5):
            report, shape = _peers_report(index, [index % 4 + 1], T0)
            graph.apply(report, T0, shape=shape)
    expected = whole.publish(T0)
    steps = stepped.publishing(T0, step=50)
    yielded = 0
    while True:
        try:
            next(steps)
            yielded += 1
        except StopIteration as done:
            got = done.value
            break
    assert yielded >= 4  # ~100 nodes and as many edges, 50 at a time
    assert got[1] == expected[1]
    assert dict(got[0].nodes_of(NodeKind.PROCESS)) == dict(expected[0].nodes_of(NodeKind.PROCESS))
    for view in View:
        assert dict(got[0].edges_of(view)) == dict(expected[0].edges_of(view))


def test_a_copy_shares_nothing_and_a_missing_key_changes_nothing() -> None:
    live = live_processes()
    node = _node("h0", 1, 1.0)
    live[node.id] = node
    version = live.published()
    copied = live.copy()
    copied[_node("h0", 2, 2.0).id] = _node("h0", 2, 2.0)
    assert len(live) == 1 and len(copied) == 2 and len(version) == 1
    with pytest.raises(KeyError):
        del live[process_id("h0", 9)]
    with pytest.raises(KeyError):
        del live[process_id("elsewhere", 9)]
    assert live._shards[host_shard("h0")] is version._shards[host_shard("h0")]  # not copied for nothing
    assert host_shard("elsewhere") not in live._shards
