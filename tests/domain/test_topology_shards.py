"""Processes held by host (``_shards``): a published version reads as the
dict of the processes it was published with, whatever is written after it,
and shares with the version before it every host that was not written."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.synthetic import host_report
from trioscope.domain.topology import NodeKind, TopologyGraph, report_shape
from trioscope.domain.topology._model import Node, process_id
from trioscope.domain.topology._shards import LiveShards, ShardedNodes, host_shard, shard_of
from trioscope.wire import decode_report

T0 = 1_760_000_000.0


def _node(host: str, pid: int, cpu: float) -> Node:
    return Node(id=process_id(host, pid), kind=NodeKind.PROCESS, label="p", parent=None, host=f"host:{host}",
                agent_id="a", status="running", last_seen=T0, metrics={"cpu_percent": cpu})


def _reads_as(view: ShardedNodes, model: dict[str, Node]) -> None:
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
    live, model = LiveShards(), {}
    published: list[tuple[ShardedNodes, dict[str, Node]]] = []
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
    assert isinstance(before, ShardedNodes) and isinstance(after, ShardedNodes)
    host_1, host_2 = host_shard("host-1"), host_shard("host-2")
    assert after._shards[host_2] is before._shards[host_2]  # not reported again: shared
    assert after._shards[host_1] is not before._shards[host_1]
    # The earlier version still reads as it was published; the new one has the new metrics.
    assert {n.metrics["cpu_percent"] for n in before.values() if shard_of(n.id) == host_1} == {1.0}
    assert {n.metrics["cpu_percent"] for n in after.values() if shard_of(n.id) == host_1} == {5.0}
    assert dict(after) == {k: v for k, v in graph.nodes.items() if v.kind is NodeKind.PROCESS}
