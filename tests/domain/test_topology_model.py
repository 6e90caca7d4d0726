"""What a topology's nodes and edges are as objects: kept out of the cyclic
garbage collector (a graph of 1,000 hosts holds ~130,000 nodes and ~250,000
edges, and every collection that tracked them walked them all), compared by
value without their cached encoding, and encoded as before."""

from __future__ import annotations

import gc

import orjson

from tests.synthetic import host_report
from trioscope.domain.topology import Edge, Node, NodeKind, TopologyGraph, View
from trioscope.domain.topology._model import edge_entries, node_entries
from trioscope.wire import decode_report

T0 = 1_760_000_000.0


def _node(**changes: object) -> Node:
    fields: dict = {"id": "process:h:1", "kind": NodeKind.PROCESS, "label": "nginx", "parent": "host:h",
                    "host": "host:h", "agent_id": "a", "status": "running", "last_seen": T0,
                    "metadata": {"pid": 1, "ports": ["80/tcp"]}, "metrics": {"cpu_percent": 1.5}}
    return Node(**{**fields, **changes})


def test_a_merged_graphs_nodes_and_edges_are_not_tracked_by_the_garbage_collector() -> None:
    graph = TopologyGraph(T0)
    for index in range(3):
        graph.apply(decode_report(host_report(index, timestamp=T0, peers=[(index + 1) % 3])), T0)
    snapshot, _ = graph.publish(T0)
    nodes = list(snapshot.nodes())
    edges = list(snapshot.edges(View.PROCESSES)) + list(snapshot.edges(View.HOSTS))
    assert len(nodes) > 300 and edges
    assert not any(map(gc.is_tracked, nodes))
    assert not any(map(gc.is_tracked, edges))
    # A node seen again (a metrics-only report) is a new node, untracked too.
    assert not gc.is_tracked(nodes[0].seen(T0 + 10, {"cpu_percent": 2.0}))


def test_a_nodes_cached_encoding_is_not_part_of_its_value() -> None:
    encoded, fresh = _node(), _node()
    encoded.entry()
    assert encoded == fresh and not encoded != fresh
    assert _node(status="sleeping") != fresh and not _node(status="sleeping") == fresh
    assert _node(metrics={"cpu_percent": 2.0}) != fresh
    assert fresh != ("process:h:1",)


def test_a_node_changed_or_seen_again_is_encoded_afresh() -> None:
    node = _node()
    before = orjson.loads(b"{" + node.entry() + b"}")["process:h:1"]
    moved = node.evolve(status="sleeping")
    seen = node.seen(T0 + 60, {"cpu_percent": 9.0})
    assert orjson.loads(b"{" + moved.entry() + b"}")["process:h:1"]["status"] == "sleeping"
    assert orjson.loads(b"{" + seen.entry() + b"}")["process:h:1"]["metrics"] == {"cpu_percent": 9.0}
    assert before["status"] == "running" and node_entries([node]) == [node.entry()]
    assert seen.metadata is node.metadata  # shared, not copied


def test_edges_encode_as_the_listing_shows_them() -> None:
    edges = [Edge("process:a:1", "process:b:2", 3), Edge("host:a", "host:b", 1)]
    assert orjson.loads(b"{" + edge_entries(edges) + b"}") == {
        "process:a:1->process:b:2": {"id": "process:a:1->process:b:2", "source": "process:a:1",
                                     "target": "process:b:2", "type": "connection", "connections": 3},
        "host:a->host:b": {"id": "host:a->host:b", "source": "host:a", "target": "host:b", "type": "connection",
                           "connections": 1},
    }
    assert edges[0] == Edge("process:a:1", "process:b:2", 3) and edges[0].id == "process:a:1->process:b:2"


def test_a_node_seen_at_a_time_rfc_3339_cannot_write_is_shown_at_the_nearest_end() -> None:
    # The edge refuses such reports; one published onto the report stream by
    # hand made every view that showed it fail (year 10000 is out of range).
    assert _node(last_seen=253_402_300_800.0).as_dict()["last_seen"] == "9999-12-31T23:59:59Z"
    assert _node(last_seen=1e300).as_dict()["last_seen"] == "9999-12-31T23:59:59Z"
    assert _node(last_seen=float("nan")).as_dict()["last_seen"] == "9999-12-31T23:59:59Z"
    assert _node(last_seen=-1e20).as_dict()["last_seen"] == "0001-01-01T00:00:00Z"
    assert _node(last_seen=T0).as_dict()["last_seen"] == "2025-10-09T08:53:20Z"
